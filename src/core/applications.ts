import { randomBytes, randomUUID } from 'node:crypto';
import type { Storage } from '../storage/repositories.ts';
import type { Client, ClientPowers, ExpectedClient } from '../storage/repositories/clients.ts';
import type { AuditTrail } from './audit.ts';
import type { ClientRegistry } from './clients.ts';
import { validateClient, type ClientInput, type Registrant } from './client-validation.ts';
import type { GatehouseConfig } from './config.ts';
import type { ScopePolicy } from './scopes.ts';
import { createOpaqueToken, digestOf, hintOf } from './tokens/opaque.ts';

interface Services {
  storage: Storage;
  audit: Pick<AuditTrail, 'record'>;
  scopes: ScopePolicy;
  clients: ClientRegistry;
  /** What the operator turned on: a client is not given a flow the server refuses. */
  config: Pick<GatehouseConfig, 'implicit'>;
}

/**
 * A record was to be made with an id that is taken: an id given by the caller (the portal derives
 * one from a form, so that the form sent twice makes one record), so it was made before.
 */
export class AlreadyCreatedError extends Error {
  override name = 'AlreadyCreatedError';
  readonly code = 'ERR_ALREADY_CREATED';
}

/**
 * Writes a record with `insert`; if that fails because a record with its id is there (`exists`),
 * fails with AlreadyCreatedError instead, as a unique index settles two writes sent at once.
 */
export async function insertOnce<T>(insert: () => Promise<T>, exists: () => Promise<boolean>, what: string): Promise<T> {
  try {
    return await insert();
  } catch (error) {
    if (await exists()) throw new AlreadyCreatedError(`${what} was created already`);
    throw error;
  }
}

/**
 * Registers a client; a confidential client gets its first secret, returned once in plain text.
 * `id` is a new random one unless given; one that is taken fails with AlreadyCreatedError. With
 * `limit`, only while its owner holds fewer clients than that: TooManyClientsError otherwise.
 */
export async function createClient(
  services: Services,
  input: ClientInput,
  now: number,
  id = `app_${randomBytes(12).toString('hex')}`,
  registrant: Registrant = 'operator',
  limit?: number,
): Promise<{ client: Client; secret: string | undefined }> {
  const client = validateClient(services, { ...input, id }, registrant);
  const created = await insertOnce(() => services.storage.clients.create(client, now, limit), async () => (await services.storage.clients.find(id)) !== undefined, `the client ${id}`);
  const secret = created.type === 'confidential' ? await addClientSecret(services, created.id, now) : undefined;
  return { client: created, secret };
}

/**
 * The secrets a client holds at most, however they are added (the developer portal, the admin API,
 * the command line): enough to rotate (two at once) with room to spare. Every authentication with a
 * secret compares it with each one the client holds, so secrets added without end would make the
 * token endpoint's work for the client, asked for by anyone with its client_id, grow without end.
 * Expired secrets count until deleted; replacing them all (rotate-secret) leaves one.
 */
export const MAX_CLIENT_SECRETS = 5;

/**
 * Adds a secret to a client (the old ones keep working until deleted: rotation without downtime).
 * With `expected`, only while the client is as expected (ClientRepository.addSecret): undefined,
 * and nothing stored, when it is not. `id` is the secret's: a new random one unless given; one
 * that is taken fails with AlreadyCreatedError. With `limit`, only while the client holds fewer
 * secrets than that: TooManySecretsError otherwise.
 */
export async function addClientSecret(services: Services, clientId: string, now: number, expiresAt?: number | null): Promise<string>;
export async function addClientSecret(services: Services, clientId: string, now: number, expiresAt: number | null, expected: ExpectedClient | undefined, id?: string, limit?: number): Promise<string | undefined>;
export async function addClientSecret(
  services: Services,
  clientId: string,
  now: number,
  expiresAt: number | null = null,
  expected?: ExpectedClient,
  id: string = randomUUID(),
  limit?: number,
): Promise<string | undefined> {
  const secret = createOpaqueToken('cs');
  const exists = async () => (await services.storage.clients.listSecrets(clientId)).some((stored) => stored.id === id);
  const stored = await insertOnce(
    () => services.storage.clients.addSecret({ id, clientId, digest: digestOf(secret), hint: hintOf(secret), createdAt: now, expiresAt }, expected, limit),
    exists,
    `the secret ${id}`,
  );
  services.clients.invalidate(clientId);
  return stored ? secret : undefined;
}

/** Replaces every secret of a client with one new secret. */
export async function rotateClientSecret(services: Services, clientId: string, now: number): Promise<string> {
  const old = await services.storage.clients.listSecrets(clientId);
  const secret = await addClientSecret(services, clientId, now);
  for (const s of old) await services.storage.clients.deleteSecret(clientId, s.id);
  services.clients.invalidate(clientId);
  return secret;
}

/**
 * Deletes a client with everything it holds; with `expected`, only while it is still as expected:
 * these powers, and the owner if `expected` names one (ClientRepository.delete). False when there
 * is no such client, or it is not as expected now.
 */
export async function deleteClient(services: Services, clientId: string, expected?: ExpectedClient): Promise<boolean> {
  const deleted = await services.storage.clients.delete(clientId, expected && { ...powersOf(expected), owner: expected.owner });
  services.clients.invalidate(clientId);
  return deleted;
}

/** A change to a client: any field or flag; those left out keep their value. */
export type ClientPatch = Partial<ClientInput>;

/** A change to a client lost the race to concurrent ones twice: the caller reads the client again and decides anew. */
export class ClientChangedError extends Error {
  override name = 'ClientChangedError';
  readonly code = 'ERR_CLIENT_CHANGED';
}

/**
 * Whether a change may be made to a client (`current`, as it is stored) that will give it `next`'s
 * powers; throws if not. Called before the change is validated, with the very record it is merged into.
 */
export type AuthorizeClientChange = (current: Client, next: ClientPowers) => void;

const powersOf = (client: ClientPowers): ClientPowers => ({ isAdmin: client.isAdmin, scopes: client.scopes, allowImpersonation: client.allowImpersonation, isResourceServer: client.isResourceServer });

/**
 * Changes a client, validated exactly as a new one is, except that a grant or redirect URI the client
 * already holds is kept even if the operator has since turned its flow off, or a later rule refuses
 * the URI (so its other fields stay editable). A
 * client that becomes public loses its secrets and API keys (it cannot keep one), and its grants are
 * revoked (their refresh tokens were issued to a client with a secret); one that becomes confidential
 * gets a first secret, returned once. Undefined when there is no such client.
 *
 * The change is merged into the stored record, checked by `authorize` against that record, and
 * written only if the client is still as it was read (ClientRepository.update): otherwise a
 * concurrent change came between, and the patch is merged into the new record and checked again,
 * once; if it loses again, ClientChangedError. So a change allowed for a plain client never lands
 * on one that was made admin (or able to impersonate, or a resource server) or given to another
 * owner meanwhile, nor undoes such a change; and the fields a change leaves out keep what a
 * concurrent change gave them, rather than being written back as they were read.
 */
export async function updateClient(
  services: Services,
  clientId: string,
  patch: ClientPatch,
  now: number,
  authorize: AuthorizeClientChange = () => {},
  registrant: Registrant = 'operator',
): Promise<{ client: Client; secret: string | undefined } | undefined> {
  const given = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined)) as ClientPatch;
  for (let attempt = 1; ; attempt++) {
    const current = await services.storage.clients.find(clientId);
    if (!current) return undefined;
    const scopes = given.scopes ?? current.scopes;
    const merged: ClientInput = {
      name: current.name,
      description: current.description,
      type: current.type,
      ownerUserId: current.ownerUserId,
      baseUrl: current.baseUrl,
      redirectUris: current.redirectUris,
      postLogoutRedirectUris: current.postLogoutRedirectUris,
      grantTypes: current.grantTypes,
      scopes,
      // Kept defaults must stay within the (possibly narrowed) scopes.
      defaultScopes: current.defaultScopes.filter((scope) => scopes.includes(scope)),
      isAdmin: current.isAdmin,
      firstParty: current.firstParty,
      allowImpersonation: current.allowImpersonation,
      isResourceServer: current.isResourceServer,
      jwks: current.jwks,
      backchannelLogoutUri: current.backchannelLogoutUri,
      backchannelLogoutSessionRequired: current.backchannelLogoutSessionRequired,
      ...given,
    };
    authorize(current, { isAdmin: merged.isAdmin ?? false, scopes: merged.scopes, allowImpersonation: merged.allowImpersonation ?? false, isResourceServer: merged.isResourceServer ?? false });
    const { id: _id, ...changes } = validateClient(services, { ...merged, id: clientId }, registrant, current);
    // A client made confidential gets its first secret before the conditional write, so that the
    // secret exists only if the write (checked with the powers it was authorized for) does.
    const secret = changes.type === 'confidential' && current.type === 'public' ? await addClientSecret(services, clientId, now) : undefined;
    const updated = await services.storage.clients.update(clientId, changes, now, current);
    if (!updated) {
      if (secret !== undefined) await removeSecret(services, clientId, secret);
      services.clients.invalidate(clientId);
      if (attempt === 2) throw new ClientChangedError(`the client ${clientId} changed meanwhile: read it and try again`);
      continue;
    }
    if (updated.type === 'public' && current.type !== 'public') {
      for (const old of await services.storage.clients.listSecrets(clientId)) await services.storage.clients.deleteSecret(clientId, old.id);
      for (const key of await services.storage.apiKeys.listForClient(clientId)) if (key.revokedAt === null) await services.storage.apiKeys.revoke(clientId, key.id, now);
      // Its refresh tokens were issued to a client that proved itself with a secret; as a public
      // client's they would be redeemed with its id alone, so a token leaked from the confidential
      // back end (logs, a database) would work. They end, with their grants, as a code issued
      // without PKCE can no longer be redeemed by it (RFC 9700 §2.1.1, §4.14.2).
      for (const grant of await services.storage.grants.revokeForClient(clientId, now)) {
        services.audit.record({ at: now, kind: 'grant.revoked', outcome: 'success', clientId, userId: grant.userId, data: { grant_id: grant.id, reason: 'client_made_public' } });
      }
    }
    services.clients.invalidate(clientId);
    return { client: updated, secret };
  }
}

async function removeSecret(services: Services, clientId: string, secret: string): Promise<void> {
  const stored = (await services.storage.clients.listSecrets(clientId)).find((s) => s.digest === digestOf(secret));
  if (stored) await services.storage.clients.deleteSecret(clientId, stored.id);
}

/** A client as the admin API and the command line show it (snake_case, times in ISO 8601; never a secret). */
export function describeClient(c: Client) {
  const iso = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString();
  return {
    client_id: c.id,
    name: c.name,
    description: c.description,
    type: c.type,
    base_url: c.baseUrl,
    redirect_uris: c.redirectUris,
    post_logout_redirect_uris: c.postLogoutRedirectUris,
    grant_types: c.grantTypes,
    scopes: c.scopes,
    default_scopes: c.defaultScopes,
    admin: c.isAdmin,
    first_party: c.firstParty,
    impersonation: c.allowImpersonation,
    resource_server: c.isResourceServer,
    jwks: c.jwks,
    backchannel_logout_uri: c.backchannelLogoutUri,
    backchannel_logout_session_required: c.backchannelLogoutSessionRequired,
    owner_user_id: c.ownerUserId,
    created_at: iso(c.createdAt),
    updated_at: iso(c.updatedAt),
  };
}
