import type { FastifyInstance, FastifyReply } from 'fastify';
import { AlreadyCreatedError } from '../../core/applications.ts';
import { ValidationError } from '../../core/validation.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import { TooManyApiKeysError, type ApiKey } from '../../storage/repositories/api-keys.ts';
import type { Client } from '../../storage/repositories/clients.ts';
import { field } from './context.ts';
import {
  applicationHeader,
  applicationNotFound,
  applicationPageOf,
  day,
  fieldList,
  MAX_PORTAL_API_KEYS,
  mayManage,
  minute,
  noticeFrom,
  portalRequest,
  RECORD_ID,
  recordPortalChange,
  sentence,
  writeToOwnApplication,
  type PortalForm,
  type WriteRefused,
} from './developers-context.ts';
import type { Revealed } from './developers-application.ts';
import { collect, type FieldErrors } from './developers-form.ts';
import { formIdOf, newFormId, type FormRecordIds } from './developers-once.ts';
import { renderPage } from './render.ts';

/** Shown under a new API key. */
export const API_KEY_USAGE = 'Send it in the header “Authorization: ApiKey <key>”. It acts as this application, with the scopes listed under API keys.';

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const NOTICES = {
  revoked: 'The API key was revoked. It no longer works.',
  'created-before': 'This form was sent again, and the API key had been created the first time, so nothing more was created. It was shown only then: if you did not copy it, revoke it and create another.',
};
const KEY_NOT_CREATED = 'The application was changed meanwhile, so no API key was created. Review its scopes as they are now, and create the key again.';
const TOO_MANY_KEYS = `An application holds at most ${MAX_PORTAL_API_KEYS} live API keys, so no key was created. Revoke one you no longer use, then create a new one.`;
const KEY_NOT_REVOKED = 'The application was changed meanwhile, so the API key was not revoked. Review the keys as they are now, and revoke it again.';

interface KeyForm {
  name: string;
  expires_on: string;
  scopes: string[];
}

/** Scopes an API key of this application may carry: its own, never one that needs a user. */
function keyScopes(gatehouse: Gatehouse, client: Client) {
  return client.scopes
    .map((name) => ({ name, definition: gatehouse.scopes.definition(name) }))
    .filter(({ definition }) => definition !== undefined && !definition.userOnly && definition.admin === client.isAdmin)
    .map(({ name, definition }) => ({ name, description: definition!.description }));
}

function keyStatus(key: ApiKey, now: number): { label: string; live: boolean } {
  if (key.revokedAt !== null) return { label: 'Revoked', live: false };
  if (key.expiresAt !== null && key.expiresAt <= now) return { label: 'Expired', live: false };
  return { label: 'Active', live: true };
}

/**
 * API keys of a confidential application (`Authorization: ApiKey <key>`): created with a name, an
 * optional expiry and scopes among the application's; shown once; listed by name, prefix, creation
 * and last use; revocable at once.
 */
export async function apiKeyRoutes(portal: FastifyInstance, gatehouse: Gatehouse, ids: FormRecordIds): Promise<void> {
  const showKeys = async (
    reply: FastifyReply,
    client: Client,
    data: { form?: KeyForm; errors?: Partial<Record<string, string>>; notice?: string | undefined; revealed?: Revealed[] } = {},
    status = 200,
  ) => {
    if (client.type !== 'confidential') return showNoApiKeys(reply, client);
    // Last-use times are batched in memory (ApiKeyService); write this instance's now so the list is current.
    await gatehouse.apiKeys.flush().catch((error) => gatehouse.logger.warn({ err: error }, 'API key use times could not be written'));
    const now = gatehouse.clock();
    const keys = (await gatehouse.storage.apiKeys.listForClient(client.id)).map((key) => ({ key, status: keyStatus(key, now) }));
    return renderPage(
      reply,
      'developers-api-keys',
      {
        title: `API keys · ${client.name}`,
        app: applicationHeader(client),
        tab: 'api-keys',
        notice: data.notice,
        revealed: data.revealed,
        formId: newFormId(),
        form: data.form ?? { name: '', expires_on: '', scopes: [] },
        errors: data.errors ?? {},
        scopeChoices: keyScopes(gatehouse, client),
        today: day(now),
        keys: keys.map(({ key, status }) => ({
          id: key.id,
          name: key.name,
          prefix: key.prefix,
          scopes: key.scopes,
          created: minute(key.createdAt),
          lastUsed: key.lastUsedAt === null ? 'never' : minute(key.lastUsedAt),
          expires: key.expiresAt === null ? 'never' : minute(key.expiresAt),
          status,
        })),
        full: keys.filter(({ status }) => status.live).length >= MAX_PORTAL_API_KEYS,
        maxKeys: MAX_PORTAL_API_KEYS,
      },
      status,
    );
  };

  /**
   * A write refused by writeToOwnApplication: the keys page of the application as it is now with
   * `message` (409), or the 404 of an application that is not the developer's (any more).
   */
  const refusedWrite = async (reply: FastifyReply, developerId: string, applicationId: string, refused: WriteRefused, message: string, form?: KeyForm) => {
    const current = refused === 'changed' ? await gatehouse.storage.clients.find(applicationId) : undefined;
    if (!current || !mayManage(current, developerId)) return applicationNotFound(reply);
    return showKeys(reply, current, { ...(form && { form }), errors: { form: message } }, 409);
  };

  const keyFormOf = (body: unknown): KeyForm => ({ name: field(body, 'name')?.trim() ?? '', expires_on: field(body, 'expires_on')?.trim() ?? '', scopes: fieldList(body, 'scopes') });
  /** The forms of the keys page, shown again after their CSRF token went stale (see PortalForm): the creation form as typed. */
  const keysPageForm = (typed: boolean): PortalForm => ({
    page: (request) => `${applicationPageOf(request)}/api-keys`,
    again: (request, reply, message) => showKeys(reply, portalRequest(request).application, { ...(typed && { form: keyFormOf(request.body) }), errors: { form: message } }, 403),
  });

  portal.get('/developers/applications/:clientId/api-keys', async (request, reply) => {
    const { application } = portalRequest(request);
    return showKeys(reply, application, { notice: noticeFrom(request, NOTICES) });
  });

  portal.post('/developers/applications/:clientId/api-keys', { config: { portalForm: keysPageForm(true), portalGivesCredentials: true } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    if (application.type !== 'confidential') return showNoApiKeys(reply, application);
    const form = keyFormOf(request.body);
    // The form sent again (Reload on the page that showed the key) names the key it made.
    const madeWith = ids.credential('api-key', application.id, formIdOf(request.body));
    const id = madeWith[0]!;
    const createdBefore = () => reply.redirect(`${applicationHeader(application).path}/api-keys?notice=created-before`, 303);
    if ((await Promise.all(madeWith.map((made) => gatehouse.storage.apiKeys.findById(made)))).some((key) => key?.clientId === application.id)) return createdBefore();
    // What the form alone shows wrong, all at once; the core checks the rest (a scope the key may not carry, a past expiry).
    const errors: FieldErrors = {};
    collect(errors, () => {
      if (!form.name) throw new ValidationError('name', 'an API key needs a name');
    });
    collect(errors, () => {
      if (form.scopes.length === 0) throw new ValidationError('scopes', 'choose at least one scope');
    });
    const expiresAt = collect(errors, () => expiryFrom(form.expires_on));
    if (expiresAt === undefined || Object.keys(errors).length > 0) return showKeys(reply, application, { form, errors: formErrors(errors) }, 400);
    const now = gatehouse.clock();
    try {
      const input = { name: form.name, scopes: form.scopes, expiresAt, id };
      // Stored only while the application is as checked: a key never reaches one an operator made an admin client or gave to someone else meanwhile.
      const written = await writeToOwnApplication(gatehouse, developer.user.id, application, (current, expected) => gatehouse.apiKeys.create(current, input, now, expected, MAX_PORTAL_API_KEYS));
      if ('refused' in written) return refusedWrite(reply, developer.user.id, application.id, written.refused, KEY_NOT_CREATED, form);
      // Not stored, yet the application is as checked: an operator changed it and back meanwhile.
      if (written.done === undefined) return refusedWrite(reply, developer.user.id, application.id, 'changed', KEY_NOT_CREATED, form);
      const { key, value } = written.done;
      recordPortalChange(gatehouse, request, { at: now, kind: 'portal.api_key.created', clientId: application.id, data: { keyId: key.id, name: key.name, prefix: key.prefix, scopes: key.scopes, expiresAt: key.expiresAt } });
      return showKeys(reply, written.application, { notice: `The API key “${key.name}” was created.`, revealed: [{ label: 'API key', value, usage: API_KEY_USAGE }] });
    } catch (error) {
      if (error instanceof AlreadyCreatedError) return createdBefore();
      if (error instanceof TooManyApiKeysError) return showKeys(reply, application, { form, errors: { form: TOO_MANY_KEYS } }, 409);
      if (!(error instanceof ValidationError)) throw error;
      return showKeys(reply, application, { form, errors: formErrors({ [error.field]: sentence(error.message) }) }, 400);
    }
  });

  portal.post<{ Params: { clientId: string; keyId: string } }>('/developers/applications/:clientId/api-keys/:keyId/revoke', { config: { portalForm: keysPageForm(false) } }, async (request, reply) => {
    const { developer, application } = portalRequest(request);
    const keyId = request.params.keyId;
    const key = RECORD_ID.test(keyId) ? await gatehouse.storage.apiKeys.findById(keyId) : undefined;
    if (key?.clientId !== application.id) return applicationNotFound(reply);
    const now = gatehouse.clock();
    // Scoped to the application too, so a key of another application is never touched; and only while it is as checked.
    const written = await writeToOwnApplication(gatehouse, developer.user.id, application, async (_current, expected) =>
      (await gatehouse.storage.apiKeys.revoke(application.id, keyId, now, expected)) || undefined,
    );
    if ('refused' in written) return refusedWrite(reply, developer.user.id, application.id, written.refused, KEY_NOT_REVOKED);
    if (written.done) {
      recordPortalChange(gatehouse, request, { at: now, kind: 'portal.api_key.revoked', clientId: application.id, data: { keyId } });
    }
    return reply.redirect(`${applicationHeader(application).path}/api-keys?notice=revoked`, 303);
  });
}

/**
 * The API keys address of a public application (its tab is not shown: typed in, or kept from when
 * it was confidential): why it has none, and no form that would always refuse. 404, as the
 * application has no API keys to show or add to.
 */
const showNoApiKeys = (reply: FastifyReply, client: Client): FastifyReply =>
  renderPage(reply, 'developers-no-api-keys', { title: `API keys · ${client.name}`, app: applicationHeader(client), tab: 'api-keys' }, 404);

/** Errors by the form's field names: the core's expires_at is the form's expires_on. */
const formErrors = ({ expires_at, ...errors }: FieldErrors): FieldErrors => (expires_at === undefined ? errors : { ...errors, expires_on: expires_at });

/** The key works through the chosen day (UTC) and stops at the midnight that ends it. */
function expiryFrom(value: string): number | null {
  if (value === '') return null;
  const start = DATE.test(value) ? Date.parse(`${value}T00:00:00Z`) : Number.NaN;
  if (Number.isNaN(start) || new Date(start).toISOString().slice(0, 10) !== value) throw new ValidationError('expires_at', 'enter the expiry as a date (YYYY-MM-DD)');
  return Math.floor(start / 1000) + 86_400;
}
