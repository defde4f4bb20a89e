import type { ApiKeyService } from './api-keys.ts';
import type { ClientRegistry } from './clients.ts';
import { credentialsRequired, invalidToken, malformedCredentials } from './errors.ts';
import { heldScopes } from './scopes.ts';
import type { KeyStore } from './tokens/keys.ts';
import { grantEnd } from './tokens/refresh.ts';
import { verifyAccessToken, type VerifiedAccessToken } from './tokens/verify.ts';
import type { ApiKeyRepository } from '../storage/repositories/api-keys.ts';
import type { Client } from '../storage/repositories/clients.ts';
import type { Grant, GrantRepository } from '../storage/repositories/grants.ts';
import type { RevocationRepository } from '../storage/repositories/revocations.ts';
import type { User, UserRepository } from '../storage/repositories/users.ts';

/** Who calls a Gatehouse API with a token: a user through a client, a client alone, or an API key. */
export interface Caller {
  kind: 'user' | 'client' | 'api_key';
  /** The user, or the client for client tokens and API keys. */
  sub: string;
  clientId: string;
  scopes: string[];
  /** Set on project tokens. */
  project: string | undefined;
  /** RFC 8693 §4.1: who acts on the subject's behalf. */
  act: Record<string, unknown> | undefined;
  /** The grant the token was issued under, passed on to the tokens derived from it (project tokens, delegation). */
  grantId: string | undefined;
  /** The API key presented (kind `api_key`), or those the token was derived from, passed on to the tokens derived from it. */
  apiKeyIds: string[];
  /**
   * The `jti` of the access token presented and those of the tokens it was derived from (none for
   * an API key), passed on to the tokens derived from it: revoking any of them (RFC 7009) ends it
   * and what was derived from it.
   */
  lineage: string[];
  /** When the credential stops working (API keys without expiry: undefined); never after its grant's end. */
  expiresAt: number | undefined;
  /**
   * When the grant the token was issued under ends (see grantEnd): nothing derived from the token
   * outlives it, even where the application could renew the token itself.
   */
  grantEndsAt: number | undefined;
  /**
   * Whether the application can get another credential like this one at will, without the user:
   * its own token (client credentials), or a user's token of a grant that lasts beyond it (one
   * with refresh tokens), while the application still holds that grant type. Not an API key, nor a
   * token of a grant that ends with it, nor one acting for someone (impersonation, delegation).
   */
  renewable: boolean;
  /** The user's record, read while checking that they may still use the token (kind `user` only). */
  user: User | undefined;
}

export interface CallerServices {
  keys: KeyStore;
  config: { issuer: string; tokens: { audience: string; refreshTokenMaxLifetimeSeconds: number } };
  revocations: RevocationRepository;
  apiKeys: ApiKeyService;
  clients: ClientRegistry;
  storage: { users: Pick<UserRepository, 'findById'>; grants: Pick<GrantRepository, 'find'>; apiKeys: Pick<ApiKeyRepository, 'findById'> };
}

export type CredentialScheme = 'bearer' | 'apikey';

const NO_CREDENTIALS = 'send an access token (Authorization: Bearer ...) or an API key (Authorization: ApiKey ...)';

/**
 * The credential of an `Authorization` header among `schemes`: RFC 6750 §2.1 `Bearer <token>`, or
 * Gatehouse's `ApiKey <key>`. No header, or another scheme, is a request without credentials (bare
 * challenge); a known scheme with anything but one token after it (`Bearer a b`) is malformed.
 */
export function credentialOf(
  authorization: string | undefined,
  schemes: readonly CredentialScheme[] = ['bearer', 'apikey'],
  required = schemes.length === 1 ? 'send an access token (Authorization: Bearer ...)' : NO_CREDENTIALS,
): { scheme: CredentialScheme; value: string } {
  if (authorization === undefined || authorization === '') throw credentialsRequired(required);
  const space = authorization.indexOf(' ');
  const scheme = (space < 0 ? authorization : authorization.slice(0, space)).toLowerCase() as CredentialScheme;
  if (!schemes.includes(scheme)) throw credentialsRequired(required);
  const value = space < 0 ? '' : authorization.slice(space + 1).replace(/^ +/, '');
  if (!/^\S+$/.test(value)) throw malformedCredentials(`the Authorization header must be "${scheme === 'bearer' ? 'Bearer <token>' : 'ApiKey <key>'}"`);
  return { scheme, value };
}

/**
 * How much earlier than its client's registration a token may say it was signed: the clocks of two
 * instances may differ a little. One signed earlier still was signed for another client of that id.
 */
const REGISTRATION_SKEW_SECONDS = 60;

/**
 * Whether the holders of an access token still exist: its client (the registry's cache, DESIGN §6:
 * no database read on the hot path) and, when it was issued for a user, that user — neither deleted
 * nor disabled. RFC 7662 §2.2: a token is active only while it "has not been revoked by the resource
 * owner" and is otherwise valid; the admin API promises that deleting a client or user stops what it
 * holds. One indexed read for a user token, none for a client's own (`sub` = `client_id`).
 *
 * A client deleted and registered again under its id — the developer portal derives an
 * application's id from its creation form, which a browser sends again on Reload — is another
 * client: a token signed before it was registered (`issuedAt`) was the deleted one's, and stays
 * ended with it.
 */
async function tokenHolders(services: Pick<CallerServices, 'clients' | 'storage'>, clientId: string, sub: string, issuedAt: number | undefined): Promise<Omit<TokenHolders, 'grant'> | undefined> {
  if (clientId === '') return undefined;
  const [entry, user] = await Promise.all([services.clients.get(clientId), sub === clientId ? undefined : services.storage.users.findById(sub)]);
  if (!entry) return undefined;
  if (issuedAt !== undefined && issuedAt + REGISTRATION_SKEW_SECONDS < entry.client.createdAt) return undefined;
  if (sub !== clientId && (!user || user.disabledAt !== null)) return undefined;
  return { client: entry.client, user };
}

export interface TokenHolders {
  client: Client;
  user: User | undefined;
  /** The grant the token was issued under, when it names one. */
  grant: Grant | undefined;
}

/**
 * Whether an access token Gatehouse signed may still be used, beyond its signature and expiry:
 * `revoked` when its `jti`, or that of a token it was derived from (`derived_from`: a project token's
 * maker, an exchange's subject and actor tokens), was revoked (RFC 7009), or the grant it was issued under is revoked,
 * expired or gone (consent withdrawn, a refresh token or code replayed, RFC 7009 revocation of the
 * refresh token, an operator's revocation: RFC 7009 §2.1 "SHOULD also invalidate all access tokens
 * based on the same authorization grant"), or the API key it was minted with is revoked, expired or
 * gone; undefined when its client or user is gone (see tokenHolders), or, for a delegated token,
 * the client of the grant it names; otherwise the holders. The reads run at once: for a client's
 * own token one, for a user's three, each by primary key (the revoked `jti`s in one read) (and the registry's cached entries of the
 * grant's client and of the prior actors after them for a delegated token).
 */
export async function accessTokenHolders(services: Pick<CallerServices, 'clients' | 'storage' | 'revocations' | 'config'>, verified: VerifiedAccessToken, now: number): Promise<TokenHolders | 'revoked' | undefined> {
  const { payload, jti, grantId, apiKeyIds, derivedFrom } = verified;
  const clientId = typeof payload.client_id === 'string' ? payload.client_id : '';
  const sub = typeof payload.sub === 'string' ? payload.sub : clientId;
  const [revoked, grant, apiKeys, holders] = await Promise.all([
    derivedFrom.length > 0 ? services.revocations.isAnyJtiRevoked([jti, ...derivedFrom]) : services.revocations.isJtiRevoked(jti),
    grantId ? services.storage.grants.find(grantId) : undefined,
    Promise.all(apiKeyIds.map((id) => services.storage.apiKeys.findById(id))),
    tokenHolders(services, clientId, sub, payload.iat),
  ]);
  if (revoked) return 'revoked';
  // Past the grant's end, its lifetime bound included: a token signed before access tokens were
  // capped at that end, or before the bound was shortened, ends there all the same.
  if (grantId && (!grant || grant.revokedAt !== null || grantEnd(grant, services.config.tokens.refreshTokenMaxLifetimeSeconds) <= now)) return 'revoked';
  // A key of the token's client, or of an earlier actor of a token delegated from that actor's (act).
  const keyHolders = apiKeys.length > 0 ? [clientId, ...actingClients(payload.act)] : [];
  if (apiKeys.some((key) => !key || !keyHolders.includes(key.clientId) || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now))) return 'revoked';
  // A delegated token names the grant of its subject token, issued to another client: it ends when
  // that token does (RFC 8693 delegation cannot outlast what it acts on), so while that client is
  // suspended with its developer, as its deletion, which takes its grants, already ends it.
  if (holders && grant && grant.clientId !== clientId && !(await services.clients.get(grant.clientId))) return undefined;
  // A token acting for a user (RFC 8693 §4.1 act: impersonation, delegation, and the project tokens
  // minted with them) ends once its client may no longer act for users, as a scope taken away does;
  // and so does one delegated from a token another client acted with, which ends with that token.
  if (holders && payload.act !== undefined && !(await actorsMayAct(services, holders.client, payload.act, payload.iat))) return undefined;
  return holders && { ...holders, grant };
}

/** The clients an `act` claim names (RFC 8693 §4.1): the current actor, then the prior ones. */
function actingClients(act: unknown): string[] {
  const ids: string[] = [];
  for (let actor = act; typeof actor === 'object' && actor !== null; actor = (actor as { act?: unknown }).act) {
    const clientId = (actor as { client_id?: unknown }).client_id;
    if (typeof clientId === 'string') ids.push(clientId);
  }
  return ids;
}

/**
 * Whether every client an `act` claim names may still act for users: registered (as the client it
 * was when the token was signed, see tokenHolders), not suspended, and holding the privilege. The
 * token's own client is `client`; the prior actors are read from the registry's cache.
 */
async function actorsMayAct(services: Pick<CallerServices, 'clients'>, client: Client, act: unknown, issuedAt: number | undefined): Promise<boolean> {
  const actors = await Promise.all([...new Set(actingClients(act))].map(async (id) => (id === client.id ? client : (await services.clients.get(id))?.client)));
  return actors.every((actor) => actor !== undefined && actor.allowImpersonation && (issuedAt === undefined || issuedAt + REGISTRATION_SKEW_SECONDS >= actor.createdAt));
}

/**
 * Authenticates `Authorization: Bearer <access token>` (RFC 6750) or `Authorization: ApiKey <key>`.
 * No credential is a bare 401 challenge, a malformed one `invalid_request` (400); anything expired,
 * revoked, or whose client or user is gone or disabled, `invalid_token` (401). `required` is what the
 * 401 says to send when no credential came: an API that takes only some callers names them.
 */
export async function authenticateCaller(services: CallerServices, authorization: string | undefined, now: number, required?: string): Promise<Caller> {
  const { scheme, value } = credentialOf(authorization, undefined, required);

  if (scheme === 'apikey') {
    // The key service refuses a key whose application is gone.
    const found = await services.apiKeys.authenticate(value, now);
    if (!found) throw invalidToken('the API key is invalid, expired or revoked');
    return {
      kind: 'api_key',
      sub: found.client.id,
      clientId: found.client.id,
      scopes: found.key.scopes,
      project: undefined,
      act: undefined,
      grantId: undefined,
      apiKeyIds: [found.key.id],
      lineage: [],
      expiresAt: found.key.expiresAt ?? undefined,
      grantEndsAt: undefined,
      renewable: false,
      user: undefined,
    };
  }

  const verified = await verifyAccessToken(services.keys, { issuer: services.config.issuer, audience: services.config.tokens.audience }, value, now);
  if (!verified) throw invalidToken('the access token is invalid or has expired');
  const holders = await accessTokenHolders(services, verified, now);
  if (holders === 'revoked') throw invalidToken('the access token has been revoked');
  if (!holders) throw invalidToken('the access token is invalid or has expired');
  const { payload } = verified;
  const { client, user, grant } = holders;
  const ends = grant && grantEnd(grant, services.config.tokens.refreshTokenMaxLifetimeSeconds);
  const act = typeof payload.act === 'object' && payload.act !== null ? (payload.act as Record<string, unknown>) : undefined;
  return {
    kind: user ? 'user' : 'client',
    sub: user?.id ?? client.id,
    clientId: client.id,
    grantId: verified.grantId,
    apiKeyIds: verified.apiKeyIds,
    lineage: [verified.jti, ...verified.derivedFrom],
    scopes: heldScopes(verified.scopes, client),
    project: typeof payload.project === 'string' ? payload.project : undefined,
    act,
    expiresAt: ends === undefined ? payload.exp : Math.min(payload.exp ?? ends, ends),
    grantEndsAt: ends,
    renewable: act === undefined && (user ? grant !== undefined && grant.expiresAt === null && client.grantTypes.includes('refresh_token') : client.grantTypes.includes('client_credentials')),
    user,
  };
}
