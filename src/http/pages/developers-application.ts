import type { FastifyInstance, FastifyReply } from 'fastify';
import { addClientSecret, updateClient, ValidationError } from '../../core/applications.ts';
import { hintOf } from '../../core/tokens/opaque.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client } from '../../storage/repositories.ts';
import { applicationHeader, applicationNotFound, day, minute, noticeFrom, portalRequest, RECORD_ID } from './developers-context.ts';
import { checkApplicationDetails, formError, readApplicationDetails, type ApplicationDetailsForm, type FieldErrors } from './developers-form.ts';
import { renderPage } from './render.ts';

/** A credential shown once, on the response to the request that made it; never stored in plain text. */
export interface Revealed {
  label: string;
  value: string;
  /** How to use it, shown under it. */
  usage?: string;
}

const NOTICES = {
  'secret-deleted': 'The secret was deleted. It no longer works.',
  updated: 'The application was saved.',
};

/** The settings form as the application is now. */
const detailsOf = (client: Client): ApplicationDetailsForm => ({
  name: client.name,
  description: client.description,
  base_url: client.baseUrl ?? '',
  redirect_uris: client.redirectUris.join('\n'),
});

/** The application page: its client_id, its secrets (with rotation), its settings and endpoints. */
export async function showApplication(
  reply: FastifyReply,
  gatehouse: Gatehouse,
  client: Client,
  data: {
    notice?: string | undefined;
    error?: string | undefined;
    revealed?: Revealed | undefined;
    /** The settings form as posted, with its errors; by default, the application as it is. */
    form?: { values: ApplicationDetailsForm; errors: FieldErrors } | undefined;
  } = {},
  status = 200,
): Promise<FastifyReply> {
  const secrets = client.type === 'confidential' ? await gatehouse.storage.clients.listSecrets(client.id) : [];
  const issuer = gatehouse.config.issuer;
  return renderPage(
    reply,
    'developers-application',
    {
      title: client.name,
      app: applicationHeader(client),
      tab: 'overview',
      notice: data.notice,
      error: data.error,
      revealed: data.revealed,
      form: data.form ?? { values: detailsOf(client), errors: {} },
      // Newest first: after a rotation the secret to keep is on top, the one to delete below.
      secrets: secrets
        .toSorted((a, b) => b.createdAt - a.createdAt)
        .map((secret) => ({ id: secret.id, hint: secret.hint, created: minute(secret.createdAt), expires: secret.expiresAt === null ? undefined : day(secret.expiresAt) })),
      settings: {
        grantTypes: client.grantTypes,
        scopes: client.scopes,
      },
      endpoints: [
        ['Discovery', `${issuer}/.well-known/openid-configuration`],
        ['Authorization', `${issuer}/authorize`],
        ['Token', `${issuer}/token`],
      ],
    },
    status,
  );
}

export async function applicationRoutes(portal: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  portal.get('/developers/applications/:clientId', async (request, reply) => {
    const { application } = portalRequest(request);
    return showApplication(reply, gatehouse, application, { notice: noticeFrom(request, NOTICES) });
  });

  // The address the settings form posts to: typed in or bookmarked, it leads to the application.
  portal.get('/developers/applications/:clientId/settings', async (request, reply) => reply.redirect(applicationHeader(portalRequest(request).application).path, 302));

  /**
   * Name, description, base URL and redirect URIs, checked as on creation. Only those fields are
   * read: the access type, grant types, scopes and privileged flags stay as they are, whatever is
   * posted. updateClient invalidates the client cache, so /authorize sees new redirect URIs at once.
   */
  portal.post('/developers/applications/:clientId/settings', async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const values = readApplicationDetails(request.body);
    const errors: FieldErrors = {};
    const details = checkApplicationDetails(values, errors);
    if (!details) return showApplication(reply, gatehouse, application, { form: { values, errors } }, 400);
    const now = gatehouse.clock();
    let updated;
    try {
      updated = await updateClient(gatehouse, application.id, details, now);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      return showApplication(reply, gatehouse, application, { form: { values, errors: formError(error) } }, 400);
    }
    if (!updated) return applicationNotFound(reply);
    const before = detailsOf(application);
    const after = detailsOf(updated.client);
    const changed = (Object.keys(after) as (keyof ApplicationDetailsForm)[]).filter((key) => before[key] !== after[key]);
    gatehouse.audit.record({ at: now, kind: 'portal.client.updated', outcome: 'success', clientId: application.id, userId: developer.user.id, data: { name: updated.client.name, changed } });
    return reply.redirect(`${applicationHeader(updated.client).path}?notice=updated`, 303);
  });

  // The address the Add-a-secret form posts to: typed in or bookmarked, it leads to the application.
  portal.get('/developers/applications/:clientId/secrets', async (request, reply) => reply.redirect(applicationHeader(portalRequest(request).application).path, 302));

  // Rotation without downtime: a second secret works alongside the first until the first is deleted.
  portal.post('/developers/applications/:clientId/secrets', async (request, reply) => {
    const { developer, application } = portalRequest(request);
    if (application.type !== 'confidential') return showApplication(reply, gatehouse, application, { error: 'A public application has no client secret.' }, 400);
    const now = gatehouse.clock();
    const secret = await addClientSecret(gatehouse, application.id, now);
    gatehouse.audit.record({ at: now, kind: 'portal.secret.added', outcome: 'success', clientId: application.id, userId: developer.user.id, data: { hint: hintOf(secret) } });
    return showApplication(reply, gatehouse, application, {
      notice: 'A new secret was added. The other secrets keep working until you delete them.',
      revealed: { label: 'New client secret', value: secret },
    });
  });

  portal.post<{ Params: { clientId: string; secretId: string } }>('/developers/applications/:clientId/secrets/:secretId/delete', async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const secretId = request.params.secretId;
    const secrets = await gatehouse.storage.clients.listSecrets(application.id);
    const secret = RECORD_ID.test(secretId) ? secrets.find((s) => s.id === secretId) : undefined;
    if (!secret) return applicationNotFound(reply);
    // Like GitHub's OAuth apps: the last secret stays until another replaces it, so a click cannot lock the application out.
    if (secrets.length === 1) return showApplication(reply, gatehouse, application, { error: 'Add a new secret before you delete the last one.' }, 400);
    if (await gatehouse.storage.clients.deleteSecret(application.id, secret.id)) {
      // At once on this instance; other instances' client caches follow within clients.cacheTtlSeconds.
      gatehouse.clients.invalidate(application.id);
      gatehouse.audit.record({ at: gatehouse.clock(), kind: 'portal.secret.deleted', outcome: 'success', clientId: application.id, userId: developer.user.id, data: { secretId: secret.id, hint: secret.hint } });
    }
    return reply.redirect(`${applicationHeader(application).path}?notice=secret-deleted`, 303);
  });
}
