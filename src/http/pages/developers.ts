import type { FastifyInstance, FastifyReply } from 'fastify';
import { createClient, deleteClient, ValidationError, type ClientInput } from '../../core/applications.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { ClientType } from '../../storage/repositories.ts';
import { field, type Pages } from './context.ts';
import { apiKeyRoutes } from './developers-api-keys.ts';
import { applicationRoutes, showApplication } from './developers-application.ts';
import { applicationHeader, day, developerOf, guardPortal, noticeFrom, portalRequest, sentence } from './developers-context.ts';
import { renderPage } from './render.ts';

const MAX_REDIRECT_URIS = 20;
const MAX_URL_LENGTH = 2000;
const MAX_DESCRIPTION_LENGTH = 1000;
const LOOPBACK_HOSTS = ['127.0.0.1', '[::1]', 'localhost'];
/** Form fields that can carry a message; anything else the core refuses is shown above the form. */
const FORM_FIELDS = ['name', 'description', 'type', 'base_url', 'redirect_uris'] as const;

/**
 * The developer portal (`/developers`): people register their own applications, rotate client
 * secrets and manage API keys. Everything here is self-service, so nothing here can set a
 * privileged flag (admin, first-party, password, implicit, impersonation, resource server): those
 * stay with operators. Each route is one encapsulated plugin behind `guardPortal`.
 */
export async function developerPortalRoutes(app: FastifyInstance, pages: Pages): Promise<void> {
  await app.register(async (portal) => {
    guardPortal(portal, pages);
    await listRoutes(portal, pages.gatehouse);
    await applicationRoutes(portal, pages.gatehouse);
    await apiKeyRoutes(portal, pages.gatehouse);
  });
}

const LIST_NOTICES = { deleted: 'The application was deleted. Its secrets and API keys no longer work.' };

interface ApplicationForm {
  name: string;
  description: string;
  type: string;
  base_url: string;
  redirect_uris: string;
}

async function listRoutes(portal: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  portal.get('/developers', async (request, reply) => {
    const developer = developerOf(request);
    const clients = await gatehouse.storage.clients.listForOwner(developer.user.id);
    return renderPage(reply, 'developers', {
      title: 'Developer portal',
      email: developer.user.email,
      applications: clients.map((client) => ({ ...applicationHeader(client), created: day(client.createdAt) })),
      notice: noticeFrom(request, LIST_NOTICES),
    });
  });

  const showForm = (reply: FastifyReply, values: ApplicationForm, errors: Partial<Record<string, string>> = {}, status = 200) =>
    renderPage(reply, 'developers-new', { title: 'New application', values, errors }, status);

  portal.get('/developers/new', async (_request, reply) =>
    showForm(reply, { name: '', description: '', type: 'confidential', base_url: '', redirect_uris: '' }),
  );

  // The address a creation form posts to: typed in or bookmarked, it leads to the list.
  portal.get('/developers/applications', async (_request, reply) => reply.redirect('/developers', 302));

  portal.post('/developers/applications', async (request, reply) => {
    const developer = developerOf(request);
    const body = request.body;
    const values: ApplicationForm = {
      name: field(body, 'name')?.trim() ?? '',
      description: field(body, 'description')?.trim() ?? '',
      type: field(body, 'type') ?? '',
      base_url: field(body, 'base_url')?.trim() ?? '',
      redirect_uris: field(body, 'redirect_uris') ?? '',
    };
    const checked = applicationInput(gatehouse, developer.user.id, values);
    if ('errors' in checked) return showForm(reply, values, checked.errors, 400);
    try {
      const now = gatehouse.clock();
      const { client, secret } = await createClient(gatehouse, checked.input, now);
      gatehouse.audit.record({ at: now, kind: 'portal.client.created', outcome: 'success', clientId: client.id, userId: developer.user.id, data: { name: client.name, type: client.type } });
      return showApplication(reply, gatehouse, client, {
        notice: 'Application created.',
        revealed: secret ? { label: 'Client secret', value: secret } : undefined,
      });
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      const key = (FORM_FIELDS as readonly string[]).includes(error.field) ? error.field : 'form';
      return showForm(reply, values, { [key]: sentence(error.message) }, 400);
    }
  });

  portal.get('/developers/applications/:clientId/delete', async (request, reply) => {
    const { application } = portalRequest(request);
    const minutes = Math.ceil(gatehouse.config.tokens.accessTokenTtlSeconds / 60);
    return renderPage(reply, 'developers-delete', { title: `Delete ${application.name}`, app: applicationHeader(application), tokenMinutes: minutes });
  });

  portal.post('/developers/applications/:clientId/delete', async (request, reply) => {
    const { developer, application } = portalRequest(request);
    // Secrets, API keys, grants, refresh tokens and codes go with it (ClientRepository.delete).
    if (await deleteClient(gatehouse, application.id)) {
      gatehouse.audit.record({ at: gatehouse.clock(), kind: 'portal.client.deleted', outcome: 'success', clientId: application.id, userId: developer.user.id, data: { name: application.name } });
    }
    return reply.redirect('/developers?notice=deleted', 303);
  });
}

/**
 * What a portal application is: fixed grant types per access type, every non-admin scope of the
 * catalogue. Built field by field from the form, so whatever else was posted (`admin=on`,
 * `grant_types=password`, …) is never read. Every field is checked, so the form shows all its
 * problems at once.
 */
function applicationInput(gatehouse: Gatehouse, ownerUserId: string, values: ApplicationForm): { input: ClientInput } | { errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const check = <T>(work: () => T): T | undefined => {
    try {
      return work();
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors[error.field] ??= sentence(error.message);
      return undefined;
    }
  };
  check(() => {
    if (!values.name) throw new ValidationError('name', 'give the application a name');
    if (values.name.length > 200) throw new ValidationError('name', 'the name is longer than 200 characters');
  });
  check(() => {
    if (values.description.length > MAX_DESCRIPTION_LENGTH) throw new ValidationError('description', `the description is longer than ${MAX_DESCRIPTION_LENGTH} characters`);
  });
  const type = check((): ClientType => {
    if (values.type !== 'confidential' && values.type !== 'public') throw new ValidationError('type', 'choose Confidential or Public');
    return values.type;
  });
  const baseUrl = check(() => (values.base_url ? checkBaseUrl(values.base_url) : null));
  const redirectUris = check(() => {
    const uris = [...new Set(values.redirect_uris.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== ''))];
    if (uris.length === 0) throw new ValidationError('redirect_uris', 'enter at least one redirect URI');
    if (uris.length > MAX_REDIRECT_URIS) throw new ValidationError('redirect_uris', `enter at most ${MAX_REDIRECT_URIS} redirect URIs`);
    uris.forEach(checkRedirectUri);
    return uris;
  });
  if (type === undefined || baseUrl === undefined || redirectUris === undefined || Object.keys(errors).length > 0) return { errors };

  const catalogue = Object.entries(gatehouse.scopes.catalogue).filter(([, definition]) => !definition.admin);
  return {
    input: {
      name: values.name,
      description: values.description,
      type,
      ownerUserId,
      baseUrl,
      redirectUris,
      // RFC 6749 §4.4: only a client that can keep a secret may use client credentials.
      grantTypes: type === 'confidential' ? ['client_credentials', 'authorization_code', 'refresh_token'] : ['authorization_code', 'refresh_token'],
      scopes: catalogue.map(([name]) => name),
      // With no scope requested, client credentials and API keys get these: nothing that needs a user.
      defaultScopes: catalogue.filter(([, definition]) => !definition.userOnly).map(([name]) => name),
    },
  };
}

function checkBaseUrl(value: string): string {
  if (value.length > MAX_URL_LENGTH) throw new ValidationError('base_url', 'the base URL is too long');
  const url = URL.parse(value);
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) throw new ValidationError('base_url', 'the base URL must be an http or https address, such as https://app.example.com');
  return value;
}

/**
 * Self-service redirect URIs (RFC 9700 §2.1, RFC 8252 §7): https; http only on the loopback
 * interface, for development and native apps; or a private-use scheme in reverse-domain form
 * (`com.example.app:/callback`) for native apps. The core then checks absoluteness and fragments.
 */
function checkRedirectUri(value: string): void {
  if (value.length > MAX_URL_LENGTH) throw new ValidationError('redirect_uris', 'a redirect URI is too long');
  const url = URL.parse(value);
  if (!url) throw new ValidationError('redirect_uris', `"${value}" is not an absolute URL`);
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:') {
    if (LOOPBACK_HOSTS.includes(url.hostname)) return;
    throw new ValidationError('redirect_uris', `"${value}" must use https (plain http is only for 127.0.0.1, [::1] and localhost)`);
  }
  if (/^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/.test(url.protocol)) return;
  throw new ValidationError('redirect_uris', `"${value}" must use https, http on the loopback address, or a private-use scheme such as com.example.app:/callback`);
}
