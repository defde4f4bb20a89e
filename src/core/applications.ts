import { createPublicKey, randomBytes, randomUUID, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { normalizeEmail, type Client, type ClientPowers, type ClientType, type ExpectedClient, type JsonWebKeySet, type NewClient, type Storage, type User, type UserChanges } from '../storage/repositories.ts';
import { assertionAlgorithmsFor, CLIENT_ASSERTION_ALGORITHMS } from './client-auth/assertion.ts';
import { internalRange } from './addresses.ts';
import type { ClientRegistry } from './clients.ts';
import type { GatehouseConfig } from './config.ts';
import { hashPassword } from './passwords.ts';
import type { ScopePolicy } from './scopes.ts';
import type { SessionService } from './sessions.ts';
import { createOpaqueToken, digestOf, hintOf } from './tokens/opaque.ts';

/** Grant types a client can be registered for. */
export const GRANT_TYPES = [
  'client_credentials',
  'authorization_code',
  'refresh_token',
  'password',
  'implicit',
  'urn:ietf:params:oauth:grant-type:token-exchange',
] as const;

/** A request to register or change a client was refused; `field` names what was wrong. */
export class ValidationError extends Error {
  override name = 'ValidationError';
  readonly code = 'ERR_VALIDATION';
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

export interface ClientInput {
  name: string;
  description?: string;
  type: ClientType;
  ownerUserId?: string | null;
  baseUrl?: string | null;
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  grantTypes: string[];
  scopes: string[];
  /** Defaults to all of `scopes`. */
  defaultScopes?: string[];
  isAdmin?: boolean;
  firstParty?: boolean;
  allowImpersonation?: boolean;
  isResourceServer?: boolean;
  /** Public keys for `private_key_jwt` (RFC 7523); null removes them. Confidential clients only. */
  jwks?: JsonWebKeySet | null;
  /** Where Logout Tokens are posted (Back-Channel Logout 1.0 §2.2); null removes it. */
  backchannelLogoutUri?: string | null;
  backchannelLogoutSessionRequired?: boolean;
}

/**
 * Who registers or changes a client. Operators (admin API, command line) run the server and are
 * trusted with its network; a developer in the portal is anyone with an account, and the
 * back-channel logout URI they register is one Gatehouse's own server posts to (see
 * checkBackchannelLogoutUri).
 */
export type Registrant = 'operator' | 'developer';

interface Services {
  storage: Storage;
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
 * `id` is a new random one unless given; one that is taken fails with AlreadyCreatedError.
 */
export async function createClient(
  services: Services,
  input: ClientInput,
  now: number,
  id = `app_${randomBytes(12).toString('hex')}`,
  registrant: Registrant = 'operator',
): Promise<{ client: Client; secret: string | undefined }> {
  const client = validateClient(services, { ...input, id }, registrant);
  const created = await insertOnce(() => services.storage.clients.create(client, now), async () => (await services.storage.clients.find(id)) !== undefined, `the client ${id}`);
  const secret = created.type === 'confidential' ? await addClientSecret(services, created.id, now) : undefined;
  return { client: created, secret };
}

/**
 * Adds a secret to a client (the old ones keep working until deleted: rotation without downtime).
 * With `expected`, only while the client is as expected (ClientRepository.addSecret): undefined,
 * and nothing stored, when it is not. `id` is the secret's: a new random one unless given; one
 * that is taken fails with AlreadyCreatedError.
 */
export async function addClientSecret(services: Services, clientId: string, now: number, expiresAt?: number | null): Promise<string>;
export async function addClientSecret(services: Services, clientId: string, now: number, expiresAt: number | null, expected: ExpectedClient, id?: string): Promise<string | undefined>;
export async function addClientSecret(services: Services, clientId: string, now: number, expiresAt: number | null = null, expected?: ExpectedClient, id: string = randomUUID()): Promise<string | undefined> {
  const secret = createOpaqueToken('cs');
  const exists = async () => (await services.storage.clients.listSecrets(clientId)).some((stored) => stored.id === id);
  const stored = await insertOnce(() => services.storage.clients.addSecret({ id, clientId, digest: digestOf(secret), hint: hintOf(secret), createdAt: now, expiresAt }, expected), exists, `the secret ${id}`);
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
 * client that becomes public loses its secrets and API keys (it cannot keep one); one that becomes confidential
 * gets a first secret, returned once. Undefined when there is no such client.
 *
 * The change is merged into the stored record, checked by `authorize` against that record, and
 * written only if the client still has the powers and the owner it was checked with
 * (ClientRepository.update): otherwise a concurrent change came between, and the patch is merged
 * into the new record and checked again, once; if it loses again, ClientChangedError. So a change
 * allowed for a plain client never lands on one that was made admin (or able to impersonate, or a
 * resource server) or given to another owner meanwhile, nor undoes such a change (the merged
 * record carries the owner it was read with).
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
    const updated = await services.storage.clients.update(clientId, changes, now, { ...powersOf(current), owner: current.ownerUserId });
    if (!updated) {
      if (secret !== undefined) await removeSecret(services, clientId, secret);
      services.clients.invalidate(clientId);
      if (attempt === 2) throw new ClientChangedError(`the client ${clientId} changed meanwhile: read it and try again`);
      continue;
    }
    if (updated.type === 'public' && current.type !== 'public') {
      for (const old of await services.storage.clients.listSecrets(clientId)) await services.storage.clients.deleteSecret(clientId, old.id);
      for (const key of await services.storage.apiKeys.listForClient(clientId)) if (key.revokedAt === null) await services.storage.apiKeys.revoke(clientId, key.id, now);
    }
    services.clients.invalidate(clientId);
    return { client: updated, secret };
  }
}

async function removeSecret(services: Services, clientId: string, secret: string): Promise<void> {
  const stored = (await services.storage.clients.listSecrets(clientId)).find((s) => s.digest === digestOf(secret));
  if (stored) await services.storage.clients.deleteSecret(clientId, stored.id);
}

/**
 * Characters that are not seen but change how the text around them reads: control characters,
 * line and paragraph separators, and format characters — bidi overrides, embeddings and isolates
 * (U+202A–U+202E, U+2066–U+2069), direction marks, zero-width spaces. A client's name and
 * description are shown on the consent page, where "Trusted App" followed by U+202E would show
 * "wants to access your account" reversed, and a zero-width space makes a look-alike of a known
 * name (Unicode TR #36 §2). The zero-width non-joiner and joiner stay: Persian and Indic writing and
 * emoji sequences need them. A description may have line breaks and tabs.
 */
export const HIDDEN_IN_NAME = /(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const HIDDEN_IN_DESCRIPTION = /(?![\u200C\u200D\t\n\r])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function checkVisible(field: 'name' | 'description', value: string, hidden: RegExp): void {
  const found = hidden.exec(value)?.[0];
  if (found === undefined) return;
  const code = `U+${found.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
  throw new ValidationError(field, `the ${field} contains an invisible or control character (${code}), which could disguise it on the consent page`);
}

/**
 * The longest values a client takes, whoever registers it (the admin API's schema states them too,
 * for its document; the command line and the portal reach only these). Each is shown on a page or
 * kept in every cached copy of the client, and a URI is compared on every authorization request.
 */
export const CLIENT_LIMITS = { name: 200, description: 2000, url: 2000, uris: 100 } as const;

/** `held`: what the client has now, on a change (nothing for a new client): kept even where today's rules would refuse it. */
function validateClient(
  { scopes, config }: Pick<Services, 'scopes' | 'config'>,
  input: ClientInput & { id: string },
  registrant: Registrant,
  held: Pick<Client, 'grantTypes' | 'redirectUris' | 'postLogoutRedirectUris' | 'name' | 'description' | 'baseUrl' | 'backchannelLogoutUri'> = {
    grantTypes: [],
    redirectUris: [],
    postLogoutRedirectUris: [],
    name: '',
    description: '',
    baseUrl: null,
    backchannelLogoutUri: null,
  },
): NewClient {
  const name = input.name?.trim();
  if (!name) throw new ValidationError('name', 'a client needs a name');
  if (name.length > CLIENT_LIMITS.name) throw new ValidationError('name', `the name is longer than ${CLIENT_LIMITS.name} characters`);
  if (name !== held.name) checkVisible('name', name, HIDDEN_IN_NAME);
  const description = input.description?.trim() ?? '';
  if (description !== held.description) {
    if (description.length > CLIENT_LIMITS.description) throw new ValidationError('description', `the description is longer than ${CLIENT_LIMITS.description} characters`);
    checkVisible('description', description, HIDDEN_IN_DESCRIPTION);
  }
  if (input.type !== 'confidential' && input.type !== 'public') throw new ValidationError('type', 'type must be confidential or public');

  const grantTypes = [...new Set(input.grantTypes)];
  for (const grantType of grantTypes) {
    if (!(GRANT_TYPES as readonly string[]).includes(grantType)) throw new ValidationError('grant_types', `unknown grant type "${grantType}"`);
  }
  if (input.type === 'public') {
    // RFC 6749 §4.4 and §4.3: these grants authenticate the client, which a public client cannot do.
    for (const grantType of ['client_credentials', 'password']) {
      if (grantTypes.includes(grantType)) throw new ValidationError('grant_types', `a public client cannot use ${grantType}`);
    }
  }
  // With the flow off, /authorize answers response_type=token with unsupported_response_type
  // (RFC 6749 §4.2.2.1) whatever the client holds: say so now, not to the developer's first user.
  if (grantTypes.includes('implicit') && !config.implicit.enabled && !held.grantTypes.includes('implicit')) {
    throw new ValidationError(
      'grant_types',
      'the implicit flow is turned off on this server; an operator turns it on with "implicit": {"enabled": true} (implicit.enabled) in the configuration file',
    );
  }

  const isAdmin = input.isAdmin ?? false;
  // A developer manages the secrets and keys of the applications they own in the portal: owning a
  // back office would hand its admin scopes to whoever can sign in as its owner.
  if (isAdmin && input.ownerUserId) throw new ValidationError('owner_user_id', 'an admin client has no owner: back offices are managed by operators, not in the developer portal');
  const allowed = [...new Set(input.scopes)];
  const scopeProblem = scopes.checkClientScopes(allowed, isAdmin);
  if (scopeProblem) throw new ValidationError('scopes', scopeProblem);
  const defaultScopes = [...new Set(input.defaultScopes ?? allowed)];
  const notAllowed = defaultScopes.find((s) => !allowed.includes(s));
  if (notAllowed) throw new ValidationError('default_scopes', `the default scope "${notAllowed}" is not among the client's scopes`);

  // A URI the client already holds is kept as it is, as a held grant type is: one stored before the
  // current rule keeps working, and does not stand in the way of other changes (removing a leaked
  // key, narrowing scopes). Every URI added is checked.
  // A URI listed twice is registered once, as a repeated grant type or scope is.
  const redirectUris = checkUriCount('redirect_uris', [...new Set(input.redirectUris ?? [])], held.redirectUris).map((uri) =>
    held.redirectUris.includes(uri) ? uri : checkRedirectUri('redirect_uris', uri),
  );
  const postLogoutRedirectUris = checkUriCount('post_logout_redirect_uris', [...new Set(input.postLogoutRedirectUris ?? [])], held.postLogoutRedirectUris).map((uri) =>
    held.postLogoutRedirectUris.includes(uri) ? uri : checkRedirectUri('post_logout_redirect_uris', uri),
  );
  if ((grantTypes.includes('authorization_code') || grantTypes.includes('implicit')) && redirectUris.length === 0) {
    throw new ValidationError('redirect_uris', 'authorization_code and implicit need at least one redirect URI');
  }
  const baseUrl = !input.baseUrl ? null : input.baseUrl === held.baseUrl ? input.baseUrl : checkUrl('base_url', input.baseUrl);
  const backchannelLogoutUri =
    input.backchannelLogoutUri === undefined || input.backchannelLogoutUri === null || input.backchannelLogoutUri === held.backchannelLogoutUri
      ? (input.backchannelLogoutUri ?? null)
      : checkBackchannelLogoutUri(input.backchannelLogoutUri, registrant);
  const jwks = checkJwks(input.jwks);
  if (jwks && input.type === 'public') throw new ValidationError('jwks', 'a public client cannot authenticate, so it has no keys');

  return {
    id: input.id,
    name,
    description,
    ownerUserId: input.ownerUserId ?? null,
    type: input.type,
    baseUrl,
    redirectUris,
    postLogoutRedirectUris,
    grantTypes,
    scopes: allowed,
    defaultScopes,
    isAdmin,
    firstParty: input.firstParty ?? false,
    allowImpersonation: input.allowImpersonation ?? false,
    isResourceServer: input.isResourceServer ?? false,
    jwks,
    backchannelLogoutUri,
    backchannelLogoutSessionRequired: input.backchannelLogoutSessionRequired ?? false,
  };
}

/**
 * The one rule for back-channel logout URIs, wherever a client is registered or changed. Back-Channel
 * Logout 1.0 §2.2: "an absolute URI ... MAY contain port, path, and query parameter components.
 * However, it MUST NOT include a fragment component." Checked as a redirect URI is (https; plain
 * http on loopback only; no user name, no wildcard, no fragment), save that only http and https
 * will do: Gatehouse itself posts to it, where a private-use scheme means nothing.
 *
 * Gatehouse's server makes that request, from inside its network: a URI registered by a developer
 * in the portal must not turn it against that network (server-side request forgery, OWASP API7).
 * For them it must be https, and its host must not be `localhost` or a name under `.localhost`
 * (RFC 6761 §6.3: they resolve to loopback) nor an IP literal in a loopback, private, shared,
 * link-local, unique-local or other internal range (see internalRange), IPv4-mapped IPv6
 * included. The WHATWG URL parser has already read `https://2130706433/` or `https://0x7f.1/` as
 * 127.0.0.1. A DNS name that resolves to such an address is not caught here, since what it
 * resolves to may change: it is resolved and judged when a Logout Token is posted
 * (BackChannelLogout).
 */
export function checkBackchannelLogoutUri(uri: string, registrant: Registrant): string {
  const field = 'backchannel_logout_uri';
  const what = 'the back-channel logout URI';
  if (uri.length > CLIENT_LIMITS.url) throw new ValidationError(field, `${what} is longer than ${CLIENT_LIMITS.url} characters`);
  const url = URL.parse(uri);
  if (url && url.protocol !== 'https:' && (url.protocol !== 'http:' || registrant === 'developer')) {
    const http = registrant === 'developer' ? '' : ' (plain http is only for 127.0.0.1, [::1] and localhost)';
    throw new ValidationError(field, `${what} "${uri}" must use https${http}`);
  }
  checkRedirectUri(field, uri);
  if (registrant === 'developer' && url) {
    const host = url.hostname.replace(/\.$/, '');
    if (host === 'localhost' || host.endsWith('.localhost')) {
      throw new ValidationError(field, `${what} "${uri}" must not be on localhost: Gatehouse's server posts to it, and would post to itself`);
    }
    const range = internalRange(host);
    if (range !== undefined) {
      const address = range === 'this host' ? 'an address of this host' : `a ${range} address`;
      throw new ValidationError(field, `${what} "${uri}" must not be on ${address}: Gatehouse's server posts to it, and would post into its own network`);
    }
  }
  return uri;
}

// Members that carry private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const isPrivateJwk = (key: unknown): boolean => typeof key === 'object' && key !== null && PRIVATE_MEMBERS.some((member) => Object.hasOwn(key, member));

/** Whether a would-be JWK Set carries private or secret key material in any key (so it must not be shown again). */
export function holdsPrivateKeyMaterial(jwks: unknown): boolean {
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  return Array.isArray(keys) && keys.some(isPrivateJwk);
}

/**
 * A client's JWK Set for `private_key_jwt`: 1–10 public signing keys (RSA of 2048 bits or more, EC
 * on P-256, P-384 or P-521, OKP on Ed25519), each one able to verify the client's assertions with an
 * algorithm this server accepts (assertionAlgorithmsFor): a key that never could is refused here,
 * not found out at the token endpoint. A private key pasted by mistake is refused, never stored.
 */
function checkJwks(value: unknown): JsonWebKeySet | null {
  if (value === undefined || value === null) return null;
  const fail = (message: string) => new ValidationError('jwks', message);
  const keys = (value as { keys?: unknown }).keys;
  if (typeof value !== 'object' || Array.isArray(value) || !Array.isArray(keys)) throw fail('jwks must be a JWK Set: {"keys": [ … ]}');
  if (keys.length === 0 || keys.length > 10) throw fail('a JWK Set for client authentication holds 1 to 10 keys');
  if (JSON.stringify(value).length > 32 * 1024) throw fail('the JWK Set is larger than 32 KiB');
  const kids = new Set<unknown>();
  keys.forEach((key: unknown, i) => {
    if (typeof key !== 'object' || key === null || Array.isArray(key)) throw fail(`key ${i + 1} is not a JWK`);
    const jwk = key as Record<string, unknown>;
    // Named by its kid too where it has a sensible one: that is how its owner knows it.
    const which = typeof jwk.kid === 'string' && jwk.kid !== '' && jwk.kid.length <= 200 ? `key ${i + 1} (kid "${jwk.kid}")` : `key ${i + 1}`;
    if (isPrivateJwk(jwk)) {
      throw fail(`${which} holds private or secret key material: register the public key only, and keep the private key with the client`);
    }
    if (!['RSA', 'EC', 'OKP'].includes(String(jwk.kty))) throw fail(`${which}: kty must be RSA, EC or OKP`);
    if (jwk.use !== undefined && jwk.use !== 'sig') throw fail(`${which}: use must be "sig"`);
    if (jwk.alg !== undefined && !(CLIENT_ASSERTION_ALGORITHMS as readonly unknown[]).includes(jwk.alg)) {
      throw fail(`${which}: alg must be one of ${CLIENT_ASSERTION_ALGORITHMS.join(', ')}`);
    }
    if (jwk.kid !== undefined) {
      if (typeof jwk.kid !== 'string' || jwk.kid === '' || jwk.kid.length > 200) throw fail(`${which}: kid must be a string of 1 to 200 characters`);
      if (kids.has(jwk.kid)) throw fail(`${which}: the kid "${jwk.kid}" is used twice`);
      kids.add(jwk.kid);
    }
    if (jwk.key_ops !== undefined) {
      const ops: unknown = jwk.key_ops;
      // RFC 7517 §4.3: an array of strings, none of them twice.
      if (!Array.isArray(ops) || !ops.every((op) => typeof op === 'string')) throw fail(`${which}: key_ops must be an array of strings, such as ["verify"]`);
      if (new Set(ops).size !== ops.length) throw fail(`${which}: key_ops lists an operation twice`);
      // The key verifies the client's assertions (RFC 7523 §2.2); a key whose key_ops leaves that out
      // is never used for it. And a public key does nothing else here: WebCrypto, which verifies,
      // refuses to load a public signing key declared for any other operation.
      if (!ops.includes('verify')) throw fail(`${which}: key_ops must include "verify", or the key can never verify the client's assertions`);
      const other = ops.find((op) => op !== 'verify');
      if (other !== undefined) throw fail(`${which}: key_ops may hold only "verify" (not "${other}"): a public key that authenticates a client only verifies`);
    }
    // The Web Cryptography API's JsonWebKey member: a key with any other value is never selected.
    if (jwk.ext !== undefined && typeof jwk.ext !== 'boolean') throw fail(`${which}: ext must be true or false`);
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch {
      throw fail(`${which} is not a valid public key`);
    }
    if (jwk.kty === 'RSA' && (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw fail(`${which}: RSA keys must have at least 2048 bits`);
    // jose picks a key for an assertion by its alg header, and only a key of the matching type and
    // curve — and of that alg, when the key names one (RFC 7517 §4.4) — is ever tried.
    const usable = assertionAlgorithmsFor(jwk);
    const kind = jwk.kty === 'RSA' ? 'an RSA key' : `an ${String(jwk.kty)} key on the curve ${JSON.stringify(jwk.crv)}`;
    if (usable.length === 0) throw fail(`${which}: ${kind} verifies none of the algorithms accepted for client assertions (${CLIENT_ASSERTION_ALGORITHMS.join(', ')})`);
    if (jwk.alg !== undefined && !(usable as readonly unknown[]).includes(jwk.alg)) {
      throw fail(`${which}: alg "${String(jwk.alg)}" does not fit ${kind}, which verifies ${usable.join(', ')}`);
    }
    if (jwk.x5c !== undefined) checkCertificateChain(jwk.x5c, publicKey, (message) => fail(`${which}: ${message}`));
  });
  return { keys: keys as Array<Record<string, unknown>> };
}

// RFC 4648 §4 base64, padded: the alphabet of x5c, where base64url's - and _ have no place.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * RFC 7517 §4.7: x5c is a non-empty array of base64 (not base64url) DER certificates, and "the key
 * in the first certificate MUST match the public key represented by other members of the JWK".
 */
function checkCertificateChain(x5c: unknown, publicKey: KeyObject, fail: (message: string) => ValidationError): void {
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((value) => typeof value === 'string')) {
    throw fail('x5c must be an array of base64-encoded certificates (strings)');
  }
  x5c.forEach((value: string, i) => {
    const which = `certificate ${i + 1} of x5c`;
    if (value === '' || !BASE64.test(value)) throw fail(`${which} is not base64 (x5c uses base64 with + and /, not base64url, and no line breaks)`);
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(Buffer.from(value, 'base64'));
    } catch {
      throw fail(`${which} is not a DER-encoded X.509 certificate`);
    }
    if (i === 0 && !certificate.publicKey.equals(publicKey)) throw fail('the first certificate of x5c holds another key than the JWK');
  });
}

const LOOPBACK_HOSTS = ['127.0.0.1', '[::1]', 'localhost'];
// RFC 8252 §7.1: "a URI scheme based on a domain name under their control, expressed in reverse
// order", such as com.example.app — a dot is what tells it from a scheme some other app may claim.
const PRIVATE_USE_SCHEME = /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/;

/**
 * The one rule for redirect URIs and post-logout redirect URIs, wherever a client is registered or
 * changed — admin API, command line, developer portal. A post-logout redirect URI sends the browser
 * back to the client just as a redirect URI does (RP-Initiated Logout 1.0 §3.1: it "SHOULD use the
 * https scheme"), so it gets no more leeway. Returns the URI as given: it is compared as an exact string.
 *
 * - https; plain http only on the loopback interface (RFC 8252 §7.3), where nothing crosses a
 *   network; or a private-use scheme in reverse-domain form for native apps (RFC 8252 §7.1). Any
 *   other scheme (ftp:, blob:, javascript:, …) has no business receiving an authorization response.
 * - No userinfo: `https://app.example@evil.example/` reads as one host and sends to another.
 * - No `*` in the host: redirect URIs are matched exactly (RFC 9700 §2.1, §4.1.3), so a wildcard
 *   is never a pattern, and a URI that looks like one only misleads whoever reads the registration.
 * - No space or control character (see checkNoSpaceOrControl): the URI registered is the one redirected to.
 * - RFC 6749 §3.1.2: it "MUST NOT include a fragment component". Any '#' is refused, an empty
 *   fragment too: URL.hash is '' for a bare '#', which would be stored and compared as given.
 *
 * A client stored before this rule keeps its URIs and keeps working, and its other fields stay
 * editable: validateClient checks only the URIs a change adds.
 */
export function checkRedirectUri(field: string, uri: string): string {
  const what = field === 'post_logout_redirect_uris' ? 'the post-logout redirect URI' : field === 'backchannel_logout_uri' ? 'the back-channel logout URI' : 'the redirect URI';
  if (uri.length > CLIENT_LIMITS.url) throw new ValidationError(field, `${what} is longer than ${CLIENT_LIMITS.url} characters`);
  const url = URL.parse(uri);
  if (!url) throw new ValidationError(field, `"${uri}" is not an absolute URL`);
  checkNoSpaceOrControl(field, what, uri);
  if (uri.includes('#')) throw new ValidationError(field, `${what} "${uri}" must not have a fragment (no "#")`);
  if (url.protocol === 'http:') {
    if (!LOOPBACK_HOSTS.includes(url.hostname)) {
      throw new ValidationError(field, `${what} "${uri}" must use https (plain http is only for 127.0.0.1, [::1] and localhost)`);
    }
  } else if (url.protocol !== 'https:' && !PRIVATE_USE_SCHEME.test(url.protocol)) {
    throw new ValidationError(field, `${what} "${uri}" must use https, http on the loopback address, or a private-use scheme such as com.example.app:/callback`);
  }
  // The authority as written, not as parsed: `https://@host/` has an empty userinfo that URL drops.
  // (For http and https, URL takes any run of slashes and backslashes to open the authority.)
  const special = url.protocol === 'https:' || url.protocol === 'http:';
  const authority = (special ? /^[^:]*:[/\\]*([^/\\?#]*)/ : /^[^:]*:\/\/([^/?#]*)/).exec(uri)?.[1] ?? '';
  if (url.username !== '' || url.password !== '' || authority.includes('@')) {
    throw new ValidationError(field, `${what} "${uri}" must not hold a user name or password (nothing before "@" in the host)`);
  }
  // A non-special scheme keeps its host percent-encoded, so %2A is a star too.
  if (/\*|%2a/i.test(url.host)) throw new ValidationError(field, `${what} "${uri}" must not have a wildcard ("*") in the host: redirect URIs are matched exactly`);
  return uri;
}

/**
 * RFC 3986 §2 leaves no room in a URI for a space or a control character, and the WHATWG URL
 * parser, which builds the redirect, drops tabs and line breaks anywhere and spaces and controls at
 * either end: `https://app.exa\tmple/cb` would be registered and shown as one thing and send the
 * browser to `https://app.example/cb`, and `https://app.example/cb\n` is not what a client sends.
 */
function checkNoSpaceOrControl(field: string, what: string, uri: string): void {
  if (/[\x00-\x20\x7f-\x9f]/.test(uri)) throw new ValidationError(field, `${what} ${JSON.stringify(uri)} must not hold a space or a control character`);
}

/** At most CLIENT_LIMITS.uris of a kind; a client holding more from before may keep them, or drop some, but add none. */
function checkUriCount(field: 'redirect_uris' | 'post_logout_redirect_uris', uris: string[], held: readonly string[]): string[] {
  if (uris.length > CLIENT_LIMITS.uris && uris.some((uri) => !held.includes(uri))) {
    throw new ValidationError(field, `a client has at most ${CLIENT_LIMITS.uris} ${field === 'redirect_uris' ? 'redirect URIs' : 'post-logout redirect URIs'}`);
  }
  return uris;
}

function checkUrl(field: string, value: string): string {
  if (value.length > CLIENT_LIMITS.url) throw new ValidationError(field, `the ${field === 'base_url' ? 'base URL' : 'URL'} is longer than ${CLIENT_LIMITS.url} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ValidationError(field, `"${value}" is not an absolute URL`);
  }
  checkNoSpaceOrControl(field, 'the URL', value);
  if (['javascript:', 'data:', 'vbscript:', 'file:'].includes(url.protocol)) throw new ValidationError(field, `"${value}" uses a forbidden scheme`);
  return value;
}

export interface UserInput {
  email: string;
  password: string;
  name?: string;
}

// Deliberately loose: one @, something on each side, no spaces. The mailbox decides the rest. Nor
// control, invisible formatting (zero-width, bidirectional overrides, soft hyphens), private-use or
// unassigned characters (\p{C}): no address has them, and they make one email look like another.
const EMAIL = /^[^\s@\p{C}]{1,64}@[^\s@\p{C}]{1,255}$/u;

/** The longest name of a user, wherever it is set (admin API, command line, sign-up, account page). */
export const MAX_NAME_LENGTH = 200;

/** Throws a ValidationError when `input` cannot make a user, before anything costly (hashing the password) is done. */
export function checkNewUser(input: UserInput): void {
  checkEmail(input.email);
  checkNewPassword(input.password);
  if (input.name !== undefined) checkUserName(input.name);
}

/** The name as stored: trimmed, and at most MAX_NAME_LENGTH characters (it may be empty). */
function checkUserName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length > MAX_NAME_LENGTH) throw new ValidationError('name', `the name is longer than ${MAX_NAME_LENGTH} characters`);
  return trimmed;
}

/** The email in the form it is stored in (normalizeEmail); a ValidationError when it is none. */
function checkEmail(value: unknown): string {
  const email = typeof value === 'string' ? normalizeEmail(value) : '';
  if (!email || !EMAIL.test(email)) throw new ValidationError('email', 'a valid email address is required');
  return email;
}

export async function createUser(storage: Storage, input: UserInput, now: number): Promise<User> {
  checkNewUser(input);
  const email = normalizeEmail(input.email);
  return storage.users.create(
    { id: randomUUID(), email, name: input.name?.trim() ?? '', passwordHash: await hashPassword(input.password), emailVerified: false, disabledAt: null },
    now,
  );
}

/** A change to a user: any of these; those left out keep their value. */
export interface UserPatch {
  name?: string;
  email?: string;
  emailVerified?: boolean;
}

/** A change to a user lost the race to concurrent changes of their email twice: the caller reads the user again and decides anew. */
export class UserChangedError extends Error {
  override name = 'UserChangedError';
  readonly code = 'ERR_USER_CHANGED';
}

/**
 * Changes a user's name, email or whether their email is verified, validated as on creation.
 * A new email is not verified unless the patch says it is, as Auth0's Management API has it: that
 * an operator (or the user) proved the old address says nothing of the new one. Undefined when
 * there is no such user; EmailTakenError when the email is another user's.
 *
 * Whether the email changes, and so whether it stays verified, is decided on the email read, and
 * written only while the user still has it (UserRepository.update): otherwise a concurrent change
 * came between, and the patch is decided again on the user as it is now, once; if it loses again,
 * UserChangedError. So a verification meant for one address never lands on another. A patch that
 * changes nothing writes nothing, and `updatedAt` stays (OpenID Connect's `updated_at`: when the
 * user's information last changed).
 */
export async function updateUser(storage: Storage, userId: string, patch: UserPatch, now: number): Promise<User | undefined> {
  const email = patch.email === undefined ? undefined : checkEmail(patch.email);
  const name = patch.name === undefined ? undefined : checkUserName(patch.name);
  for (let attempt = 1; ; attempt++) {
    const current = await storage.users.findById(userId);
    if (!current) return undefined;
    const newEmail = email !== undefined && email !== current.email;
    const emailVerified = patch.emailVerified ?? (newEmail ? false : current.emailVerified);
    const changes: UserChanges = {
      ...(name !== undefined && name !== current.name ? { name } : {}),
      ...(newEmail ? { email } : {}),
      ...(emailVerified !== current.emailVerified ? { emailVerified } : {}),
    };
    if (Object.keys(changes).length === 0) return current;
    const updated = await storage.users.update(userId, changes, now, { email: current.email });
    if (updated) return updated;
    if (attempt === 2) throw new UserChangedError(`the user ${userId} changed meanwhile: read them and try again`);
  }
}

/** What ends a user's sessions, telling the applications answered through them (Back-Channel Logout). */
interface SessionServices {
  storage: Storage;
  sessions: SessionService;
}

/**
 * Signs a user out everywhere: every browser session ends, and the applications answered through
 * them are told (Back-Channel Logout). Their password and grants stay. How many sessions ended.
 */
export function signOutUser(services: SessionServices, userId: string): Promise<number> {
  return services.sessions.endForUser(userId);
}

/**
 * Sets a new password and signs the user out everywhere: a password is reset because it may be
 * known to someone else, who may hold a session too. Grants given to applications stay. False when
 * there is no such user.
 */
export async function resetUserPassword(services: SessionServices, userId: string, password: string, now: number): Promise<boolean> {
  checkNewPassword(password);
  if (!(await services.storage.users.setPasswordHash(userId, await hashPassword(password), now))) return false;
  await signOutUser(services, userId);
  return true;
}

/**
 * Disables a user (or enables them again): they cannot sign in, their refresh tokens and access
 * tokens are refused, and so are the applications they registered in the developer portal (see
 * ClientRegistry), until they are enabled. Their sessions end, and the applications answered
 * through them are told (Back-Channel Logout): a session refused only while the user is disabled
 * would come back with them, after its applications were told it had ended. A user disabled
 * already keeps the time it happened.
 */
export async function setUserDisabled(services: Pick<Services, 'storage' | 'clients'> & SessionServices, user: User, disabled: boolean, now: number): Promise<void> {
  await services.storage.users.setDisabled(user.id, disabled ? (user.disabledAt ?? now) : null, now);
  if (disabled) await signOutUser(services, user.id);
  for (const client of await services.storage.clients.listForOwner(user.id)) services.clients.invalidate(client.id);
}

/**
 * Deletes a user with their sessions, consents, grants and refresh tokens, and the applications they
 * registered in the developer portal with everything issued to those (UserRepository.delete); the
 * client registry forgets those applications at once. Undefined when there is no such user.
 */
export async function deleteUser(services: Pick<Services, 'storage' | 'clients'> & SessionServices, userId: string): Promise<{ clientIds: string[] } | undefined> {
  const deleted = await services.storage.users.delete(userId);
  if (!deleted) return undefined;
  for (const clientId of deleted.clientIds) services.clients.invalidate(clientId);
  services.sessions.ended(deleted.sessions);
  return { clientIds: deleted.clientIds };
}

/** Throws a ValidationError when `password` cannot be a user's password: as at sign-up, wherever a password is set. */
export function checkNewPassword(password: unknown): asserts password is string {
  // Characters are code points (NIST SP 800-63B §5.1.1.2), as the admin API's schema counts them: an
  // emoji is one character, not the two UTF-16 units of its .length. The longest is counted in
  // UTF-16 units, as sign-in counts it (LoginService), so that every password set can be signed in with.
  if (typeof password !== 'string' || [...password].length < 8) throw new ValidationError('password', 'the password must be at least 8 characters long');
  if (password.length > 1024) throw new ValidationError('password', 'the password is longer than 1024 characters');
}

/** A user as the admin API shows them (snake_case, times in ISO 8601; never the password hash). */
export function describeUser(u: User) {
  const iso = (epochSeconds: number | null) => (epochSeconds === null ? null : new Date(epochSeconds * 1000).toISOString());
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    email_verified: u.emailVerified,
    disabled: u.disabledAt !== null,
    disabled_at: iso(u.disabledAt),
    created_at: iso(u.createdAt),
    updated_at: iso(u.updatedAt),
  };
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
