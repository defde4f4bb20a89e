import type { FastifyInstance, FastifyReply } from 'fastify';
import type { JSONWebKeySet } from 'jose';
import { addClientSecret, AlreadyCreatedError, ClientChangedError, updateClient } from '../../core/applications.ts';
import { holdsPrivateKeyMaterial } from '../../core/client-jwks.ts';
import { hintOf } from '../../core/tokens/opaque.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { TooManySecretsError, type Client } from '../../storage/repositories/clients.ts';
import { field } from './context.ts';
import { CHANGED_MEANWHILE, showApplication, showChangedMeanwhile } from './developers-application.ts';
import {
  applicationHeader,
  applicationNotFound,
  applicationPageOf,
  authorizePortalChange,
  MAX_PORTAL_SECRETS,
  NotManageableError,
  portalRequest,
  RECORD_ID,
  recordPortalChange,
  sentence,
  writeToOwnApplication,
  type PortalForm,
  type WriteRefused,
} from './developers-context.ts';
import { formIdOf, type FormRecordIds } from './developers-once.ts';

const TOO_MANY_SECRETS = `An application holds at most ${MAX_PORTAL_SECRETS} client secrets, so no secret was added. Delete one you no longer use, then add a new one.`;
const SECRET_NOT_ADDED = 'The application was changed meanwhile, so no secret was added. Review it as it is now, and add one again.';
const SECRET_NOT_DELETED = 'The application was changed meanwhile, so the secret was not deleted. Review it as it is now, and delete it again.';

/** A write refused by writeToOwnApplication: the 409 page with `message`, or the 404 of an application that is not the developer's (any more). */
const refusedWrite = (reply: FastifyReply, gatehouse: Gatehouse, developerId: string, applicationId: string, refused: WriteRefused, message: string): Promise<FastifyReply> | FastifyReply =>
  refused === 'changed' ? showChangedMeanwhile(reply, gatehouse, developerId, applicationId, { error: message }) : applicationNotFound(reply);

/** Keys pasted into the form, as a page may show them again: never with a private key pasted by mistake. */
function keysShownAgain(posted: string): string {
  try {
    return holdsPrivateKeyMaterial(JSON.parse(posted)) ? '' : posted;
  } catch {
    return posted;
  }
}

/**
 * The application page's credentials: its client secrets (added for rotation, deleted) and the
 * public keys it authenticates with by private_key_jwt. Each form is answered with the page.
 */
export async function credentialRoutes(portal: FastifyInstance, gatehouse: Gatehouse, ids: FormRecordIds): Promise<void> {
  /** The forms of the application page, shown again after their CSRF token went stale (see PortalForm). */
  const keysForm: PortalForm = {
    page: applicationPageOf,
    again: (request, reply, message) => {
      const { application } = portalRequest(request);
      const data = application.type === 'confidential' ? { keys: { jwks: keysShownAgain(field(request.body, 'jwks') ?? ''), error: message } } : { error: message };
      return showApplication(reply, gatehouse, application, data, 403);
    },
  };
  /** A button (add or delete a secret, remove the keys): the page again, with the message on top. */
  const buttonForm: PortalForm = {
    page: applicationPageOf,
    again: (request, reply, message) => showApplication(reply, gatehouse, portalRequest(request).application, { error: message }, 403),
  };

  // The address the public-keys forms post to: typed in or bookmarked, it leads to the application.
  portal.get('/developers/applications/:clientId/keys', async (request, reply) => reply.redirect(applicationHeader(portalRequest(request).application).path, 302));

  /**
   * The public keys of `private_key_jwt` (RFC 7523), pasted as a JWK Set: they replace the keys
   * registered before. The core checks them as for the admin API and the command line (public
   * signing keys only, 1 to 10, RSA of 2048 to 4096 bits with e = 65537); a refused set changes nothing.
   */
  portal.post('/developers/applications/:clientId/keys', { config: { portalForm: keysForm, portalGivesCredentials: true } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    if (application.type !== 'confidential') return showApplication(reply, gatehouse, application, { error: 'A public application cannot authenticate, so it has no keys.' }, 400);
    let posted = field(request.body, 'jwks') ?? '';
    const refuse = (message: string) => showApplication(reply, gatehouse, application, { keys: { jwks: posted, error: sentence(message) } }, 400);
    if (posted.trim() === '') return refuse('paste the public keys as a JWK Set: {"keys": [ … ]}');
    let jwks: unknown;
    try {
      jwks = JSON.parse(posted);
    } catch {
      return refuse('the keys are not valid JSON: paste a JWK Set, {"keys": [ … ]}');
    }
    // To the core, null means "no keys"; here, removing them is the other form's job.
    if (jwks === null) return refuse('the keys must be a JWK Set: {"keys": [ … ]}, with one JWK per key');
    // A private key pasted by mistake is refused by the core's checks, and not sent back in the page.
    if (holdsPrivateKeyMaterial(jwks)) posted = '';
    const now = gatehouse.clock();
    let updated;
    try {
      updated = await updateClient(gatehouse, application.id, { jwks: jwks as JSONWebKeySet }, now, authorizePortalChange(developer.user.id), 'developer');
    } catch (error) {
      if (error instanceof ClientChangedError) return showChangedMeanwhile(reply, gatehouse, developer.user.id, application.id, { keys: { jwks: posted, error: CHANGED_MEANWHILE } });
      if (error instanceof NotManageableError) return applicationNotFound(reply);
      if (!(error instanceof ValidationError)) throw error;
      return refuse(error.message);
    }
    if (!updated) return applicationNotFound(reply);
    const kids = (updated.client.jwks as JSONWebKeySet).keys.map((key) => key.kid ?? null);
    recordPortalChange(gatehouse, request, { at: now, kind: 'portal.client.keys_saved', clientId: application.id, data: { kids } });
    return reply.redirect(`${applicationHeader(application).path}?notice=keys-saved`, 303);
  });

  portal.post('/developers/applications/:clientId/keys/delete', { config: { portalForm: buttonForm } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    if (application.jwks !== null) {
      const now = gatehouse.clock();
      let removed;
      try {
        removed = await updateClient(gatehouse, application.id, { jwks: null }, now, authorizePortalChange(developer.user.id), 'developer');
      } catch (error) {
        if (error instanceof NotManageableError) return applicationNotFound(reply);
        if (!(error instanceof ClientChangedError)) throw error;
        return showChangedMeanwhile(reply, gatehouse, developer.user.id, application.id, { error: CHANGED_MEANWHILE });
      }
      if (!removed) return applicationNotFound(reply);
      recordPortalChange(gatehouse, request, { at: now, kind: 'portal.client.keys_removed', clientId: application.id, data: {} });
    }
    return reply.redirect(`${applicationHeader(application).path}?notice=keys-removed`, 303);
  });

  // The address the Add-a-secret form posts to: typed in or bookmarked, it leads to the application.
  portal.get('/developers/applications/:clientId/secrets', async (request, reply) => reply.redirect(applicationHeader(portalRequest(request).application).path, 302));

  /**
   * Rotation without downtime: a second secret works alongside the first until the first is
   * deleted. Stored only while the application is as checked (writeToOwnApplication): a secret
   * never reaches one an operator made an admin client or gave to someone else meanwhile.
   */
  portal.post('/developers/applications/:clientId/secrets', { config: { portalForm: buttonForm, portalGivesCredentials: true } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const publicRefused = (client: Client) => showApplication(reply, gatehouse, client, { error: 'A public application has no client secret.' }, 400);
    if (application.type !== 'confidential') return publicRefused(application);
    // The form sent again (Reload on the page that showed the secret) names the secret it added.
    const madeWith = ids.credential('secret', application.id, formIdOf(request.body));
    const id = madeWith[0]!;
    const addedBefore = () => reply.redirect(`${applicationHeader(application).path}?notice=secret-added-before`, 303);
    if ((await gatehouse.storage.clients.listSecrets(application.id)).some((secret) => madeWith.includes(secret.id))) return addedBefore();
    const now = gatehouse.clock();
    let written;
    try {
      written = await writeToOwnApplication(gatehouse, developer.user.id, application, (current, expected) =>
        current.type === 'confidential' ? addClientSecret(gatehouse, current.id, now, null, expected, id, MAX_PORTAL_SECRETS) : Promise.resolve(undefined),
      );
    } catch (error) {
      if (error instanceof AlreadyCreatedError) return addedBefore();
      if (error instanceof TooManySecretsError) return showApplication(reply, gatehouse, application, { error: TOO_MANY_SECRETS }, 409);
      throw error;
    }
    if ('refused' in written) return refusedWrite(reply, gatehouse, developer.user.id, application.id, written.refused, SECRET_NOT_ADDED);
    const secret = written.done;
    // Nothing written, to the application as checked: it was made public meanwhile.
    if (secret === undefined) return publicRefused(written.application);
    recordPortalChange(gatehouse, request, { at: now, kind: 'portal.secret.added', clientId: application.id, data: { hint: hintOf(secret) } });
    return showApplication(reply, gatehouse, written.application, {
      notice: 'A new secret was added. The other secrets keep working until you delete them.',
      revealed: [{ label: 'New client secret', value: secret }],
    });
  });

  portal.post<{ Params: { clientId: string; secretId: string } }>('/developers/applications/:clientId/secrets/:secretId/delete', { config: { portalForm: buttonForm } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const secretId = request.params.secretId;
    const secrets = await gatehouse.storage.clients.listSecrets(application.id);
    const secret = RECORD_ID.test(secretId) ? secrets.find((s) => s.id === secretId) : undefined;
    if (!secret) return applicationNotFound(reply);
    // Like GitHub's OAuth apps: the last secret stays until another replaces it, so a click cannot lock the application out.
    if (secrets.length === 1) return showApplication(reply, gatehouse, application, { error: 'Add a new secret before you delete the last one.' }, 400);
    const written = await writeToOwnApplication(gatehouse, developer.user.id, application, async (_current, expected) =>
      (await gatehouse.storage.clients.deleteSecret(application.id, secret.id, expected)) || undefined,
    );
    if ('refused' in written) return refusedWrite(reply, gatehouse, developer.user.id, application.id, written.refused, SECRET_NOT_DELETED);
    if (written.done) {
      // At once on this instance; other instances' client caches follow within clients.cacheTtlSeconds.
      gatehouse.clients.invalidate(application.id);
      recordPortalChange(gatehouse, request, { at: gatehouse.clock(), kind: 'portal.secret.deleted', clientId: application.id, data: { secretId: secret.id, hint: secret.hint } });
    }
    return reply.redirect(`${applicationHeader(application).path}?notice=secret-deleted`, 303);
  });
}
