import type { Page } from './page.ts';

export type ClientType = 'confidential' | 'public';

export interface Client {
  id: string;
  name: string;
  description: string;
  ownerUserId: string | null;
  type: ClientType;
  baseUrl: string | null;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  /** Grant types the client may use; `password` and `implicit` are operator-granted privileges. */
  grantTypes: string[];
  /** Scopes the client may be granted. */
  scopes: string[];
  /** Scopes granted when a request names none. */
  defaultScopes: string[];
  isAdmin: boolean;
  /** Trusted by the operator: skips the consent page. */
  firstParty: boolean;
  allowImpersonation: boolean;
  /** A protected API of the platform: may introspect tokens of every client. Operator-granted. */
  isResourceServer: boolean;
  /** Public keys the client signs `private_key_jwt` assertions with (RFC 7523); null when none. */
  jwks: JsonWebKeySet | null;
  /** Where Logout Tokens are posted when a session the client was answered in ends (Back-Channel Logout 1.0 §2.2); null for none. */
  backchannelLogoutUri: string | null;
  /** The client needs `sid` in Logout Tokens (§2.2). Gatehouse always sends it. */
  backchannelLogoutSessionRequired: boolean;
  createdAt: number;
  updatedAt: number;
}

/** A JWK Set (RFC 7517 §5) of public keys. */
export interface JsonWebKeySet {
  keys: Array<Record<string, unknown>>;
}

/** A client to store; without Back-Channel Logout fields it has none (null, false). */
export type NewClient = Omit<Client, 'createdAt' | 'updatedAt' | 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'> &
  Partial<Pick<Client, 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>>;

/** What a client may do that only a token holding its scopes may manage: the admin API's rule is checked against these. */
export interface ClientPowers {
  isAdmin: boolean;
  scopes: readonly string[];
  allowImpersonation: boolean;
  /** May introspect every client's tokens: the power of admin:tokens. */
  isResourceServer: boolean;
}

/**
 * The state a conditional write on a client, or on one of its credentials, expects the client in
 * when it is made: exactly these powers, and, where `owner` is given, this owner (a user id; null
 * for a client of the operator's). The developer portal acts only on an application of the
 * developer's: one an operator gave to someone else meanwhile must keep what it would have taken.
 */
export interface ExpectedClient extends ClientPowers {
  owner?: string | null;
}

export interface ClientSecret {
  id: string;
  clientId: string;
  /** SHA-256 of the secret, base64url. */
  digest: string;
  hint: string;
  createdAt: number;
  expiresAt: number | null;
}

export interface ClientRepository {
  /**
   * Stores a new client. With `limit`, only while its owner holds fewer clients than that, counted
   * after the owner's row is claimed, so that concurrent registrations cannot pass it together:
   * TooManyClientsError otherwise.
   */
  create(client: NewClient, now: number, limit?: number): Promise<Client>;
  find(id: string): Promise<Client | undefined>;
  /** The client and its secrets in one read: what client authentication needs. */
  findWithSecrets(id: string): Promise<{ client: Client; secrets: ClientSecret[] } | undefined>;
  /** Every client, oldest first; or one page of them. */
  list(page?: Page): Promise<Client[]>;
  /** The clients a user registered (in the developer portal), oldest first. */
  listForOwner(userId: string): Promise<Client[]>;
  /**
   * Changes the fields in `patch`. With `expected` (the client as it was read), only if the client
   * is still exactly as read — every field, its powers and owner among them, and when it last
   * changed — in one conditional write: a change allowed for a client as it was read must not land
   * on one that a concurrent change made admin, able to impersonate or a resource server, or gave to
   * another owner; nor may a change merged into the client as read write back the fields it left
   * out over what a concurrent change gave them. Undefined when there is no such client, or it is
   * no longer as `expected`.
   */
  update(id: string, patch: Partial<Omit<NewClient, 'id'>>, now: number, expected?: Client): Promise<Client | undefined>;
  /**
   * Deletes the client with its secrets, grants, refresh tokens and codes; with `expected`, only if
   * it is still as expected, as `update`. False when there is no such client (a concurrent
   * deletion took it: of two, exactly one deletes), or it is no longer as `expected`.
   */
  delete(id: string, expected?: ExpectedClient): Promise<boolean>;
  /**
   * Stores a secret of `secret.clientId`; with `expected`, only while the client is as expected (as
   * `update`), checked in the transaction that stores it: a secret made for a client as it was read
   * must not reach one made admin or given to another owner meanwhile. False (nothing stored) when
   * the client is not as expected, or not there. With `limit`, only while the client holds fewer
   * secrets than that, counted in the same transaction after the client's row is claimed, so that
   * concurrent additions cannot pass it together: TooManySecretsError otherwise.
   */
  addSecret(secret: ClientSecret, expected?: ExpectedClient, limit?: number): Promise<boolean>;
  listSecrets(clientId: string): Promise<ClientSecret[]>;
  /** Deletes a secret of the client; with `expected`, only while the client is as expected, as `update`. */
  deleteSecret(clientId: string, secretId: string, expected?: ExpectedClient): Promise<boolean>;
  /**
   * Records the `jti` of an accepted client assertion until `expiresAt`: `replayed` when the client
   * used it before, on any instance; `no client` (nothing recorded) when the client is not there.
   */
  recordAssertion(clientId: string, jti: string, expiresAt: number): Promise<'recorded' | 'replayed' | 'no client'>;
}

/** A secret was to be added to a client that holds as many as it may (ClientRepository.addSecret's `limit`). */
export class TooManySecretsError extends Error {
  override name = 'TooManySecretsError';
  readonly code = 'ERR_TOO_MANY_SECRETS';
}

/** A client was to be registered for an owner who holds as many as they may (ClientRepository.create's `limit`). */
export class TooManyClientsError extends Error {
  override name = 'TooManyClientsError';
  readonly code = 'ERR_TOO_MANY_CLIENTS';
}
