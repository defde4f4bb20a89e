import type { FastifyInstance, FastifyReply } from 'fastify';
import { AlreadyCreatedError, createClient, deleteClient } from '../../core/applications.ts';
import type { ClientInput } from '../../core/client-validation.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { ApiKey } from '../../storage/repositories/api-keys.ts';
import { TooManyClientsError, type Client, type ClientType } from '../../storage/repositories/clients.ts';
import { field, type Pages } from './context.ts';
import { API_KEY_USAGE, apiKeyRoutes } from './developers-api-keys.ts';
import { applicationRoutes, showApplication, type Revealed } from './developers-application.ts';
import { credentialRoutes } from './developers-credentials.ts';
import { applicationHeader, applicationNotFound, applicationPageOf, applicationPath, day, developerOf, guardPortal, MAX_PORTAL_APPLICATIONS, mayCreateCredentials, mayManage, noticeFrom, portalRequest, recordPortalChange, writeToOwnApplication, type PortalForm } from './developers-context.ts';
import { checkApplicationDetails, collect, formError, readApplicationDetails, type ApplicationDetailsForm, type FieldErrors } from './developers-form.ts';
import { formIdOf, formRecordIds, newFormId, type FormRecordIds } from './developers-once.ts';
import { renderPage } from './render.ts';

/**
 * The developer portal (`/developers`): people register their own applications, rotate client
 * secrets and manage API keys. Everything here is self-service, so nothing here can set a
 * privileged flag (admin, first-party, password, implicit, impersonation, resource server): those
 * stay with operators. Each route is one encapsulated plugin behind `guardPortal`.
 */
export async function developerPortalRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  await app.register(async (portal) => {
    guardPortal(portal, pages);
    const ids = formRecordIds(pages.gatehouse.config.secret, pages.gatehouse.config.previousSecrets);
    await listRoutes(portal, pages.gatehouse, ids);
    await applicationRoutes(portal, pages.gatehouse);
    await credentialRoutes(portal, pages.gatehouse, ids);
    await apiKeyRoutes(portal, pages.gatehouse, ids);
  });
}

const TOO_MANY_APPLICATIONS = `You can register at most ${MAX_PORTAL_APPLICATIONS} applications, so this one was not registered. Delete one you no longer use, then register it again.`;
const LIST_NOTICES = { deleted: 'The application was deleted. Its secrets and API keys no longer work.' };

interface ApplicationForm extends ApplicationDetailsForm {
  type: string;
  /** Whether a confidential application gets an API key with it, as BIMData's portal hands one out. */
  api_key: boolean;
}

async function listRoutes(portal: FastifyInstance, gatehouse: Gatehouse, ids: FormRecordIds): Promise<void> {
  portal.get('/developers', async (request, reply) => {
    const developer = developerOf(request);
    const owned = await gatehouse.storage.clients.listForOwner(developer.user.id);
    const clients = owned.filter((client) => mayManage(client, developer.user.id));
    return renderPage(reply, 'developers', {
      title: 'Developer portal',
      email: developer.user.email,
      applications: clients.map((client) => ({ ...applicationHeader(client), created: day(client.createdAt) })),
      full: owned.length >= MAX_PORTAL_APPLICATIONS,
      maxApplications: MAX_PORTAL_APPLICATIONS,
      notice: noticeFrom(request, LIST_NOTICES),
      verifyFirst: !mayCreateCredentials(gatehouse, developer),
    });
  });

  const showForm = (reply: FastifyReply, values: ApplicationForm, errors: Partial<Record<string, string>> = {}, status = 200) =>
    renderPage(reply, 'developers-new', { title: 'New application', values, errors, formId: newFormId() }, status);

  portal.get('/developers/new', { config: { portalGivesCredentials: true } }, async (_request, reply) =>
    showForm(reply, { name: '', description: '', type: 'confidential', base_url: '', redirect_uris: '', backchannel_logout_uri: '', backchannel_logout_session_required: false, api_key: true }),
  );

  // The address a creation form posts to: typed in or bookmarked, it leads to the list.
  portal.get('/developers/applications', async (_request, reply) => reply.redirect('/developers', 302));

  const applicationFormOf = (body: unknown): ApplicationForm => ({ ...readApplicationDetails(body), type: field(body, 'type') ?? '', api_key: field(body, 'api_key') === 'on' });
  const creationForm: PortalForm = {
    page: () => '/developers/new',
    again: (request, reply, message) => showForm(reply, applicationFormOf(request.body), { form: message }, 403),
  };

  portal.post('/developers/applications', { config: { portalForm: creationForm, portalGivesCredentials: true } }, async (request, reply) => {
    const developer = developerOf(request);
    const body = request.body;
    const values = applicationFormOf(body);
    // The form sent again (Reload on the page that showed the secret) finds the application it made.
    const madeWith = ids.client(developer.user.id, formIdOf(body));
    const id = madeWith[0]!;
    const sentAgain = (made: Client | undefined) =>
      made && mayManage(made, developer.user.id) ? reply.redirect(`${applicationPath(made.id)}?notice=created-before`, 303) : applicationNotFound(reply);
    const existing = (await Promise.all(madeWith.map((made) => gatehouse.storage.clients.find(made)))).find((made) => made !== undefined);
    if (existing) return sentAgain(existing);
    const checked = applicationInput(gatehouse, developer.user.id, values);
    if ('errors' in checked) return showForm(reply, values, checked.errors, 400);
    try {
      const now = gatehouse.clock();
      let made;
      try {
        made = await createClient(gatehouse, checked.input, now, id, 'developer', MAX_PORTAL_APPLICATIONS);
      } catch (error) {
        if (error instanceof AlreadyCreatedError) return sentAgain(await gatehouse.storage.clients.find(id));
        if (error instanceof TooManyClientsError) return showForm(reply, values, { form: TOO_MANY_APPLICATIONS }, 409);
        throw error;
      }
      const { client, secret } = made;
      const revealed: Revealed[] = secret ? [{ label: 'Client secret', value: secret }] : [];
      let apiKey: ApiKey | undefined;
      if (secret && values.api_key) {
        // With the application's default scopes: those that need no user (an API key acts as the application).
        try {
          const created = await gatehouse.apiKeys.create(client, { name: 'Default' }, now);
          apiKey = created.key;
          revealed.push({ id: 'revealed-api-key', label: 'API key', value: created.value, usage: API_KEY_USAGE });
        } catch (error) {
          // A refused form stores nothing: the application goes again, its secret never shown.
          await deleteClient(gatehouse, client.id);
          throw error;
        }
      }
      recordPortalChange(gatehouse, request, { at: now, kind: 'portal.client.created', clientId: client.id, data: { name: client.name, type: client.type } });
      if (apiKey) recordPortalChange(gatehouse, request, { at: now, kind: 'portal.api_key.created', clientId: client.id, data: { keyId: apiKey.id } });
      return showApplication(reply, gatehouse, client, { notice: 'Application created.', revealed });
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return showForm(reply, values, formError(error), 400);
    }
  });

  const showDeletion = (reply: FastifyReply, application: Client, error?: string, status = 200) => {
    const minutes = Math.ceil(gatehouse.config.tokens.accessTokenTtlSeconds / 60);
    return renderPage(reply, 'developers-delete', { title: `Delete ${application.name}`, app: applicationHeader(application), tokenMinutes: minutes, error }, status);
  };

  portal.get('/developers/applications/:clientId/delete', async (request, reply) => showDeletion(reply, portalRequest(request).application));

  const deletionForm: PortalForm = {
    page: (request) => `${applicationPageOf(request)}/delete`,
    again: (request, reply, message) => showDeletion(reply, portalRequest(request).application, message, 403),
  };

  portal.post('/developers/applications/:clientId/delete', { config: { portalForm: deletionForm } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    // Secrets, API keys, grants, refresh tokens and codes go with it (ClientRepository.delete); only
    // while it is as checked, so that an application an operator took over meanwhile stays.
    const written = await writeToOwnApplication(gatehouse, developer.user.id, application, async (_current, expected) => (await deleteClient(gatehouse, application.id, expected)) || undefined);
    if ('refused' in written) {
      // Of two deletions (a double click), the second finds it gone: deleted all the same.
      if (written.refused === 'gone') return reply.redirect('/developers?notice=deleted', 303);
      const current = written.refused === 'changed' ? await gatehouse.storage.clients.find(application.id) : undefined;
      if (!current || !mayManage(current, developer.user.id)) return applicationNotFound(reply);
      return showDeletion(reply, current, 'The application was changed meanwhile, so it was not deleted. Review it as it is now, and delete it again if you still want to.', 409);
    }
    if (written.done) recordPortalChange(gatehouse, request, { at: gatehouse.clock(), kind: 'portal.client.deleted', clientId: application.id, data: { name: application.name } });
    return reply.redirect('/developers?notice=deleted', 303);
  });
}

/**
 * What a portal application is: fixed grant types per access type, every non-admin scope of the
 * catalogue. Built field by field from the form, so whatever else was posted (`admin=on`,
 * `grant_types=password`, …) is never read. Every field is checked, so the form shows all its
 * problems at once.
 */
function applicationInput(gatehouse: Gatehouse, ownerUserId: string, values: ApplicationForm): { input: ClientInput } | { errors: FieldErrors } {
  const errors: FieldErrors = {};
  const details = checkApplicationDetails(values, errors);
  const type = collect(errors, (): ClientType => {
    if (values.type !== 'confidential' && values.type !== 'public') throw new ValidationError('type', 'choose Confidential or Public');
    return values.type;
  });
  if (details === undefined || type === undefined) return { errors };

  const catalogue = Object.entries(gatehouse.scopes.catalogue).filter(([, definition]) => !definition.admin);
  return {
    input: {
      ...details,
      type,
      ownerUserId,
      // RFC 6749 §4.4: only a client that can keep a secret may use client credentials.
      grantTypes: type === 'confidential' ? ['client_credentials', 'authorization_code', 'refresh_token'] : ['authorization_code', 'refresh_token'],
      scopes: catalogue.map(([name]) => name),
      // With no scope requested, client credentials and API keys get these: nothing that needs a user.
      defaultScopes: catalogue.filter(([, definition]) => !definition.userOnly).map(([name]) => name),
    },
  };
}
