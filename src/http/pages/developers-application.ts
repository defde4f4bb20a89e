import type { FastifyInstance, FastifyReply } from 'fastify';
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from 'jose';
import { ClientChangedError, updateClient } from '../../core/applications.ts';
import { isWithinBounds, RSA_KEY_BOUNDS } from '../../core/client-auth/assertion.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { Client } from '../../storage/repositories/clients.ts';
import { field } from './context.ts';
import { applicationHeader, applicationNotFound, applicationPageOf, authorizePortalChange, day, MAX_PORTAL_SECRETS, mayManage, minute, NotManageableError, noticeFrom, portalRequest, recordPortalChange, type PortalForm } from './developers-context.ts';
import { checkApplicationDetails, encodeFormBase, formError, readApplicationDetails, readFormBase, type ApplicationDetails, type ApplicationDetailsForm, type FieldErrors } from './developers-form.ts';
import { newFormId } from './developers-once.ts';
import { renderPage } from './render.ts';

/** A credential shown once, on the response to the request that made it; never stored in plain text. */
export interface Revealed {
  /** The id of the field that shows it (`revealed-value` unless a page shows two). */
  id?: string;
  label: string;
  value: string;
  /** How to use it, shown under it. */
  usage?: string;
}

const NOTICES = {
  'secret-deleted': 'The secret was deleted. It no longer works.',
  updated: 'The application was saved.',
  'created-before':
    'This form was sent again, and the application had been created the first time, so nothing more was created. A client secret or API key made with it was shown only then: if you did not copy it, add a new secret (then delete the old one) or create a new API key.',
  'secret-added-before': 'This form was sent again, and the secret had been added the first time: nothing more was added. It was shown only then; if you did not copy it, add another and delete this one.',
  'keys-saved': 'The public keys were saved. Client assertions signed with their private keys now authenticate the application.',
  'keys-removed': 'The public keys were removed. Client assertions no longer authenticate the application.',
};

/**
 * What a save that lost the race to concurrent changes says (updateClient's ClientChangedError: an
 * operator kept changing the application's scopes or flags meanwhile). Nothing was saved.
 */
export const CHANGED_MEANWHILE = 'The application was changed meanwhile, so nothing was saved. Review it as it is now, and save again.';
const FORM_DAMAGED = 'The form was damaged, so nothing was saved. Reload the page and save again.';
/** The settings form's fields, by the names the change messages use. */
const FIELD_LABELS: Record<keyof ApplicationDetailsForm, string> = {
  name: 'name',
  description: 'description',
  base_url: 'base URL',
  redirect_uris: 'redirect URIs',
  backchannel_logout_uri: 'back-channel logout URI',
  backchannel_logout_session_required: 'session requirement of back-channel logout',
};

/**
 * The application page again, as the application is now, after a save that changed nothing because
 * the application kept changing meanwhile (409): with what was posted, so nothing typed is lost.
 * The application is read again, and no longer shown if it has gone, or is no longer the developer's.
 */
export async function showChangedMeanwhile(reply: FastifyReply, gatehouse: Gatehouse, developerId: string, applicationId: string, data: Parameters<typeof showApplication>[3]): Promise<FastifyReply> {
  const current = await gatehouse.storage.clients.find(applicationId);
  if (!current || !mayManage(current, developerId)) return applicationNotFound(reply);
  return showApplication(reply, gatehouse, current, data, 409);
}

/**
 * A registered public key as the page lists it: its kid, type, algorithm and RFC 7638 thumbprint,
 * and why it is no longer accepted when it was registered before the bounds it is outside of.
 */
async function describeKey(jwk: JWK): Promise<{ kid: string | undefined; type: string; alg: string | undefined; thumbprint: string; refused: string | undefined }> {
  const type = jwk.kty === 'RSA' ? `RSA ${Buffer.from(jwk.n ?? '', 'base64url').length * 8}-bit` : `${jwk.kty} ${jwk.crv ?? ''}`.trim();
  const refused = isWithinBounds(jwk as Record<string, unknown>) ? undefined : `No longer accepted: ${RSA_KEY_BOUNDS}. Register a new key.`;
  return { kid: jwk.kid, type, alg: jwk.alg, thumbprint: await calculateJwkThumbprint(jwk), refused };
}

/** The settings form as the application is now. */
const detailsOf = (client: Pick<Client, 'name' | 'description' | 'baseUrl' | 'redirectUris' | 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>): ApplicationDetailsForm => ({
  name: client.name,
  description: client.description,
  base_url: client.baseUrl ?? '',
  redirect_uris: client.redirectUris.join('\n'),
  backchannel_logout_uri: client.backchannelLogoutUri ?? '',
  backchannel_logout_session_required: client.backchannelLogoutSessionRequired,
});

/**
 * What a save of the settings form writes: the fields the developer typed over (posted differently
 * from `base`, what the form was filled in with), each only if it is still as the form showed it
 * (or already as typed). A field typed over that someone else changed meanwhile is a conflict; the
 * fields not typed over are left as they are now, whatever the form showed.
 */
function editsOver(base: ApplicationDetailsForm, posted: ApplicationDetails, current: ApplicationDetailsForm): { changes: Partial<ApplicationDetails>; conflicts: (keyof ApplicationDetailsForm)[] } {
  const typed = detailsOf(posted);
  const written: Record<keyof ApplicationDetailsForm, Partial<ApplicationDetails>> = {
    name: { name: posted.name },
    description: { description: posted.description },
    base_url: { baseUrl: posted.baseUrl },
    redirect_uris: { redirectUris: posted.redirectUris },
    backchannel_logout_uri: { backchannelLogoutUri: posted.backchannelLogoutUri },
    backchannel_logout_session_required: { backchannelLogoutSessionRequired: posted.backchannelLogoutSessionRequired },
  };
  const changes: Partial<ApplicationDetails> = {};
  const conflicts: (keyof ApplicationDetailsForm)[] = [];
  for (const name of Object.keys(written) as (keyof ApplicationDetailsForm)[]) {
    if (typed[name] === base[name] || typed[name] === current[name]) continue;
    if (current[name] === base[name]) Object.assign(changes, written[name]);
    else conflicts.push(name);
  }
  return { changes, conflicts };
}

/**
 * What a settings form without `was` (from before it had one) writes: every field, save the
 * back-channel ones when it did not have them either, which then stay as they are.
 */
function withoutUnposted(details: ApplicationDetails, body: unknown): Partial<ApplicationDetails> {
  if (field(body, 'backchannel_logout_uri') !== undefined) return details;
  const { backchannelLogoutUri: _uri, backchannelLogoutSessionRequired: _required, ...older } = details;
  return older;
}

/** The application page: its client_id, its secrets (with rotation), its settings and endpoints. */
export async function showApplication(
  reply: FastifyReply,
  gatehouse: Gatehouse,
  client: Client,
  data: {
    notice?: string | undefined;
    error?: string | undefined;
    revealed?: Revealed[] | undefined;
    /**
     * The settings form as posted, with its errors, and the details it was filled in with (`base`,
     * sent back with it); by default, the application as it is.
     */
    form?: { values: ApplicationDetailsForm; errors: FieldErrors; base?: ApplicationDetailsForm | undefined } | undefined;
    /** The public keys as posted, refused for `error`; by default, an empty field. */
    keys?: { jwks: string; error: string } | undefined;
  } = {},
  status = 200,
): Promise<FastifyReply> {
  const secrets = client.type === 'confidential' ? await gatehouse.storage.clients.listSecrets(client.id) : [];
  const publicKeys = await Promise.all(((client.jwks as JSONWebKeySet | null)?.keys ?? []).map(describeKey));
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
      formId: newFormId(),
      form: { values: data.form?.values ?? detailsOf(client), errors: data.form?.errors ?? {}, base: encodeFormBase(data.form?.base ?? detailsOf(client)) },
      keys: { registered: publicKeys, jwks: data.keys?.jwks ?? '', error: data.keys?.error, audience: `${issuer.replace(/\/+$/, '')}/token` },
      // Newest first: after a rotation the secret to keep is on top, the one to delete below.
      maxSecrets: MAX_PORTAL_SECRETS,
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

/** The application page and its settings form (its secrets and public keys: developers-credentials.ts). */
export async function applicationRoutes(portal: FastifyInstance, gatehouse: Gatehouse): Promise<void> {
  /** The settings form, shown again after its CSRF token went stale (see PortalForm). */
  const settingsForm: PortalForm = {
    page: applicationPageOf,
    again: (request, reply, message) => {
      const base = readFormBase(request.body);
      const form = { values: readApplicationDetails(request.body), errors: { form: message }, base: base === 'malformed' ? undefined : base };
      return showApplication(reply, gatehouse, portalRequest(request).application, { form }, 403);
    },
  };

  portal.get('/developers/applications/:clientId', async (request, reply) => {
    const { application } = portalRequest(request);
    return showApplication(reply, gatehouse, application, { notice: noticeFrom(request, NOTICES) });
  });

  // The address the settings form posts to: typed in or bookmarked, it leads to the application.
  portal.get('/developers/applications/:clientId/settings', async (request, reply) => reply.redirect(applicationHeader(portalRequest(request).application).path, 302));

  /**
   * Name, description, base URL, redirect URIs and back-channel logout, checked as on creation.
   * Only those fields are read: the access type, grant types, scopes and privileged flags stay as
   * they are, whatever is posted. Only the fields typed over are written (see editsOver), so a change an operator made to
   * another one while the form was open stays. updateClient invalidates the client cache, so
   * /authorize sees new redirect URIs at once.
   */
  portal.post('/developers/applications/:clientId/settings', { config: { portalForm: settingsForm } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const values = readApplicationDetails(request.body);
    const base = readFormBase(request.body);
    if (base === 'malformed') return showApplication(reply, gatehouse, application, { form: { values, errors: { form: FORM_DAMAGED } } }, 400);
    const errors: FieldErrors = {};
    const details = checkApplicationDetails(values, errors, application);
    if (!details) return showApplication(reply, gatehouse, application, { form: { values, errors, base } }, 400);
    const edits = base === undefined ? { changes: withoutUnposted(details, request.body), conflicts: [] } : editsOver(base, details, detailsOf(application));
    if (edits.conflicts.length > 0) {
      const message = `The ${edits.conflicts.map((name) => FIELD_LABELS[name]).join(' and ')} of the application changed meanwhile, so nothing was saved. Review the application as it is now, and save again.`;
      return showChangedMeanwhile(reply, gatehouse, developer.user.id, application.id, { form: { values, errors: { form: message } } });
    }
    if (Object.keys(edits.changes).length === 0) return reply.redirect(`${applicationHeader(application).path}?notice=updated`, 303);
    const now = gatehouse.clock();
    let updated;
    try {
      updated = await updateClient(gatehouse, application.id, edits.changes, now, authorizePortalChange(developer.user.id), 'developer');
    } catch (error) {
      if (error instanceof ClientChangedError) return showChangedMeanwhile(reply, gatehouse, developer.user.id, application.id, { form: { values, errors: { form: CHANGED_MEANWHILE } } });
      if (error instanceof NotManageableError) return applicationNotFound(reply);
      if (!(error instanceof ValidationError)) throw error;
      return showApplication(reply, gatehouse, application, { form: { values, errors: formError(error) } }, 400);
    }
    if (!updated) return applicationNotFound(reply);
    const before = detailsOf(application);
    const after = detailsOf(updated.client);
    const changed = (Object.keys(after) as (keyof ApplicationDetailsForm)[]).filter((key) => before[key] !== after[key]);
    recordPortalChange(gatehouse, request, { at: now, kind: 'portal.client.updated', clientId: application.id, data: { name: updated.client.name, changed } });
    return reply.redirect(`${applicationHeader(updated.client).path}?notice=updated`, 303);
  });
}
