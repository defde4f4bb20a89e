import { domainToUnicode } from 'node:url';
/**
 * Narrow repository interfaces, one per record kind. The protocol core depends on these only;
 * `kysely/` implements them once for SQLite and PostgreSQL. Times are epoch seconds.
 */

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

/**
 * One page of a long list, oldest first: at most `limit` records, those created after `after`
 * (keyset pagination on creation time and id, so pages stay stable while records are added).
 */
export interface Page {
  after?: { createdAt: number; id: string };
  limit: number;
}

export interface ClientRepository {
  create(client: NewClient, now: number): Promise<Client>;
  find(id: string): Promise<Client | undefined>;
  /** The client and its secrets in one read: what client authentication needs. */
  findWithSecrets(id: string): Promise<{ client: Client; secrets: ClientSecret[] } | undefined>;
  /** Every client, oldest first; or one page of them. */
  list(page?: Page): Promise<Client[]>;
  /** The clients a user registered (in the developer portal), oldest first. */
  listForOwner(userId: string): Promise<Client[]>;
  /**
   * Changes the fields in `patch`. With `expected`, only if the client still has exactly these
   * powers (the same admin flag, the same scopes in the same order, the same impersonation and
   * resource-server flags) and, where `expected` names one, the same owner, in
   * one conditional write: a change allowed for a client as it was read must not land on one that a
   * concurrent change made admin, able to impersonate or a resource server, or gave to another owner.
   * Undefined when there is no such client, or it is no longer as `expected`.
   */
  update(id: string, patch: Partial<Omit<NewClient, 'id'>>, now: number, expected?: ExpectedClient): Promise<Client | undefined>;
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
   * the client is not as expected, or not there.
   */
  addSecret(secret: ClientSecret, expected?: ExpectedClient): Promise<boolean>;
  listSecrets(clientId: string): Promise<ClientSecret[]>;
  /** Deletes a secret of the client; with `expected`, only while the client is as expected, as `update`. */
  deleteSecret(clientId: string, secretId: string, expected?: ExpectedClient): Promise<boolean>;
  /**
   * Records the `jti` of an accepted client assertion until `expiresAt`: false when the client used
   * it before (a replay), on any instance.
   */
  recordAssertion(clientId: string, jti: string, expiresAt: number): Promise<boolean>;
}

export interface User {
  id: string;
  email: string;
  name: string;
  passwordHash: string;
  emailVerified: boolean;
  disabledAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/**
 * The form an email is stored and compared in, so that every way of typing one address names one
 * account: without surrounding spaces, lower-cased (by JavaScript, so SQLite and PostgreSQL compare
 * alike), in Unicode Normalization Form C (RFC 6532 §3.1), as what looks like "josé" may arrive
 * composed (é) or decomposed (e and a combining accent), depending on the keyboard or the system;
 * and with an internationalized domain name in its Unicode form (UTS #46), as browsers send the
 * email fields of a form with the domain in its ASCII form: "bücher.example" as "xn--bcher-kva.example".
 * A domain that is no valid IDN is kept as it is.
 */
export function normalizeEmail(email: string): string {
  const folded = email.trim().toLowerCase().normalize('NFC');
  const at = folded.lastIndexOf('@');
  if (at < 0) return folded;
  const domain = domainToUnicode(folded.slice(at + 1));
  return domain === '' ? folded : `${folded.slice(0, at + 1)}${domain}`;
}

export interface UserRepository {
  /** Fails with `EmailTakenError` when the email, normalized (normalizeEmail), is registered already. */
  create(user: Omit<User, 'createdAt' | 'updatedAt'>, now: number): Promise<User>;
  findById(id: string): Promise<User | undefined>;
  /** The user whose email is `email` once both are normalized (normalizeEmail). */
  findByEmail(email: string): Promise<User | undefined>;
  /**
   * Every user, oldest first; or one page of them. With `filter.email`, only the user whose email
   * it is once both are normalized (normalizeEmail): none or one, read through the email's unique index.
   */
  list(page?: Page, filter?: { email?: string }): Promise<User[]>;
  /**
   * Writes the fields in `changes` and `now` as the update time; with `expected`, only while the
   * user's email is still `expected.email` (a change decided on the email read must not land on
   * another). The user as stored then; undefined for an unknown user, or one whose email is no
   * longer the one expected. Fails with `EmailTakenError`, storing nothing, when `changes.email`,
   * normalized, is another user's.
   */
  update(id: string, changes: UserChanges, now: number, expected?: { email: string }): Promise<User | undefined>;
  setDisabled(id: string, disabledAt: number | null, now: number): Promise<boolean>;
  /**
   * Stores a new password hash and `now` as the update time; with `expected`, only while the stored
   * hash is still `expected`, so that a change decided on the password just checked does not replace
   * one an operator set meanwhile. False for an unknown user, or a hash no longer the one expected.
   * Every password reset link of the user is deleted with the change, in its transaction: a link
   * asked for before the password was set no longer works. Every way a password is set but a link's
   * own redemption goes through here.
   */
  setPasswordHash(id: string, passwordHash: string, now: number, expected?: string): Promise<boolean>;
  /**
   * Replaces the hash `previous` with `next`, the same password hashed as passwords are hashed
   * today, if the user's hash is still `previous` (a password changed meanwhile stays). `updatedAt`
   * stays too: the user's information did not change (OpenID Connect's `updated_at`).
   */
  rehashPassword(id: string, previous: string, next: string): Promise<boolean>;
  /**
   * Deletes the user with their sessions, consents, grants, refresh tokens and codes, and the
   * applications they own (developer portal) with everything issued to those. Undefined for an
   * unknown user, and for one a concurrent deletion took: of two, exactly one deletes.
   */
  delete(id: string): Promise<{ clientIds: string[]; sessions: EndedSession[] } | undefined>;
}

/** What an operator may change about a user (admin API). */
export type UserChanges = Partial<Pick<User, 'name' | 'email' | 'emailVerified'>>;

export class EmailTakenError extends Error {
  override name = 'EmailTakenError';
  readonly code = 'ERR_EMAIL_TAKEN';
}

export type KeyUse = 'access' | 'id';
export type KeyState = 'next' | 'active' | 'retired';

export interface SigningKeyRecord {
  kid: string;
  use: KeyUse;
  alg: string;
  state: KeyState;
  publicJwk: string;
  privateJwk: string;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  expiresAt: number | null;
}

export interface SigningKeyRepository {
  /** Keys in the JWKS at `now`: next, active, and retired ones that have not yet expired. */
  listPublished(now: number): Promise<SigningKeyRecord[]>;
  listAll(): Promise<SigningKeyRecord[]>;
  /** Publishes a key; false (storing nothing) when the use already has a key in that state. */
  insert(key: SigningKeyRecord): Promise<boolean>;
  /**
   * Rotation for one use, in one transaction: the `next` key becomes `active`, the active key
   * becomes `retired` until `retiredExpiresAt`, and `newNext` is published. Returns false (changing
   * nothing) when another rotation won the race.
   */
  rotate(use: KeyUse, newNext: SigningKeyRecord, now: number, retiredExpiresAt: number): Promise<boolean>;
  /**
   * Replaces the `next` key of `newNext.use` with `newNext` when the next key is of another
   * algorithm (the configured one changed). The replaced key never signed anything: it is deleted.
   * Returns false (changing nothing) when the next key has the algorithm already, or another
   * instance replaced it first.
   */
  replaceNextOfOtherAlgorithm(newNext: SigningKeyRecord): Promise<boolean>;
}

export interface Grant {
  id: string;
  clientId: string;
  userId: string | null;
  kind: string;
  scopes: string[];
  authTime: number | null;
  /** The OpenID Connect session (`sid`) the grant was authorized in; absent for one made without a browser session. */
  sid?: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface GrantRepository {
  create(grant: Grant): Promise<void>;
  find(id: string): Promise<Grant | undefined>;
  /** Revokes the grant, and so every refresh token issued from it. */
  revoke(id: string, now: number): Promise<boolean>;
  /**
   * Grants matching every given filter, newest first (of one second, by id); at most `limit`
   * (default 100, never over 1001: a page of 1000 and one to tell whether another follows), those
   * listed after `after` when given — the last grant of the page before (keyset pagination, so
   * pages stay stable while grants are added).
   */
  list(filter: { userId?: string; clientId?: string; after?: { createdAt: number; id: string }; limit?: number }): Promise<Grant[]>;
}

export interface RefreshToken {
  digest: string;
  grantId: string;
  clientId: string;
  scopes: string[];
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

/** What a refresh token is looked up with: the token, its grant, and the grant's user if it has one. */
export interface FoundRefreshToken {
  token: RefreshToken;
  grant: Grant;
  /** The user of the grant; undefined for a client's own grant, or when the user no longer exists. */
  user: User | undefined;
}

/** The token stored in place of the consumed one: same grant, client and scopes. */
export interface RefreshTokenSuccessor {
  digest: string;
  expiresAt: number;
}

export type RotationResult =
  /** The presented token was live and is now consumed; its successor is stored. (The caller read the grant already.) */
  | { outcome: 'rotated'; previous: RefreshToken }
  /** The presented token had been consumed before: a replay (or a concurrent retry). */
  | { outcome: 'reused'; previous: RefreshToken; grant: Grant }
  /** The token's grant is revoked. */
  | { outcome: 'revoked'; previous: RefreshToken; grant: Grant }
  | { outcome: 'not_found' };

export interface RefreshTokenRepository {
  insert(token: RefreshToken): Promise<void>;
  /** One read: the token with its grant and user (on PostgreSQL, one read for the lookups that arrive together). */
  find(digest: string): Promise<FoundRefreshToken | undefined>;
  /**
   * Consumes `digest` and stores its successor (created `now`) atomically, with one conditional
   * `UPDATE … WHERE consumed_at IS NULL` that also requires the grant to be live: of concurrent
   * callers, on any instance, exactly one gets `rotated`; the others get `reused`. Nothing is stored
   * unless the outcome is `rotated`. On PostgreSQL the rotations that arrive together are one
   * statement (one round trip, one commit).
   */
  rotate(digest: string, successor: RefreshTokenSuccessor, now: number): Promise<RotationResult>;
}

export interface AuthorizationCode {
  digest: string;
  clientId: string;
  userId: string;
  redirectUri: string;
  scopes: string[];
  codeChallenge: string | null;
  codeChallengeMethod: string | null;
  nonce: string | null;
  authTime: number;
  /** The OpenID Connect session (`sid`) the code was issued in; absent for a code stored before sessions had one. */
  sid?: string;
  /** The authorization request named the redirect URI, so the exchange must repeat it (RFC 6749 §4.1.3). */
  redirectUriExplicit: boolean;
  grantId: string | null;
  /** The access token issued from this code: revoked if the code is presented again. */
  accessTokenJti: string | null;
  accessTokenExpiresAt: number | null;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

export interface AuthorizationCodeRepository {
  insert(code: AuthorizationCode): Promise<void>;
  find(digest: string): Promise<AuthorizationCode | undefined>;
  /**
   * Redeems the code, atomically: marks it consumed with the grant made from it and the access token
   * about to be issued, and stores that grant — one conditional update, so exactly one concurrent
   * caller gets the code back. A code consumed before is reported as `reused` with the grant and the
   * access token of its first use, both already stored, so a replay can revoke them (RFC 6749 §4.1.2).
   * Nothing is stored unless the outcome is `consumed`.
   */
  consume(digest: string, exchange: CodeExchange, now: number): Promise<{ outcome: 'consumed'; code: AuthorizationCode } | { outcome: 'reused'; code: AuthorizationCode } | { outcome: 'not_found' }>;
}

/** What the redemption of a code makes: the grant, and the `jti` and expiry of the access token to be signed. */
export interface CodeExchange {
  grant: Grant;
  accessTokenJti: string;
  accessTokenExpiresAt: number;
}

export interface RevocationRepository {
  /** Records a revoked access-token `jti` until the token would have expired anyway. */
  revokeJti(jti: string, expiresAt: number): Promise<void>;
  isJtiRevoked(jti: string): Promise<boolean>;
}

export interface AuditEvent {
  id?: number;
  at: number;
  /** e.g. `token.issued`, `token.refused`, `refresh_token.reuse`, `keys.rotated`, `client.created` */
  kind: string;
  outcome: 'success' | 'failure';
  clientId: string | null;
  userId: string | null;
  data: Record<string, unknown>;
}

export interface AuditRepository {
  append(events: AuditEvent[]): Promise<void>;
  /**
   * Events matching every given filter (`since` included, `until` excluded), newest first by time
   * and, within one second, by id; at most `limit` (default 100, never over 1001: a page of 1000
   * and one to tell whether another follows), those listed after `after` when given — the last
   * event of the page before (keyset pagination: however many events share a second, each is on
   * exactly one page).
   */
  query(filter: { since?: number; until?: number; clientId?: string; userId?: string; kind?: string; after?: { at: number; id: number }; limit?: number }): Promise<AuditEvent[]>;
}

export interface Session {
  /** SHA-256 of the session id in the cookie. */
  digest: string;
  /**
   * The OpenID Connect session id (`sid`, Back-Channel Logout 1.0 §2.1): random and not secret,
   * nothing to do with the cookie. Null only for a session an instance older than it started.
   */
  sid: string | null;
  userId: string;
  authTime: number;
  createdAt: number;
  /** Set when the session starts and never moved: the codes issued through it expire by then at the latest. */
  expiresAt: number;
}

/** A session that ended, with the clients the authorization endpoint answered through it. */
export interface EndedSession {
  sid: string | null;
  userId: string;
  clientIds: string[];
}

export interface SessionRepository {
  create(session: Session): Promise<void>;
  find(digest: string): Promise<Session | undefined>;
  /**
   * Records that the authorization endpoint answers `clientId` through the session, once however
   * often, and stores `code`, issued through it, in the same transaction — only while the session
   * exists: false, with nothing stored, once it has ended. Ending the session waits for this, so a
   * code stored is voided with it and its client told (Back-Channel Logout 1.0 §2.5); the record
   * goes with the session.
   */
  addClient(digest: string, clientId: string, code?: AuthorizationCode): Promise<boolean>;
  /** Ends the session; what ended, or undefined when there was none (ended already, or never). */
  delete(digest: string): Promise<EndedSession | undefined>;
  /**
   * Ends every session of a user (password reset), or every one but the session whose digest is
   * `exceptDigest` (the browser in which the user changed their password, or signed out everywhere
   * else). The sessions it ended.
   */
  deleteForUser(userId: string, exceptDigest?: string): Promise<EndedSession[]>;
}

export interface Consent {
  userId: string;
  clientId: string;
  scopes: string[];
  createdAt: number;
  updatedAt: number;
}

export interface ConsentRepository {
  find(userId: string, clientId: string): Promise<Consent | undefined>;
  /** Creates or replaces the user's consent for the client. */
  save(consent: Consent): Promise<void>;
  /**
   * Withdraws the consent, revokes every grant of the user to the client (so their refresh tokens
   * stop working) and deletes the codes issued to the client for the user and not yet exchanged (a
   * code exchanged afterwards would start a grant the user can no longer see or withdraw). Returns
   * whether there was anything to withdraw.
   */
  withdraw(userId: string, clientId: string, now: number): Promise<boolean>;
  listForUser(userId: string): Promise<Consent[]>;
}

/** A validated authorization request waiting for the person to sign in or consent. */
export interface PendingAuthorization {
  id: string;
  clientId: string;
  request: Record<string, unknown>;
  createdAt: number;
  expiresAt: number;
}

export interface PendingAuthorizationRepository {
  create(pending: PendingAuthorization): Promise<void>;
  find(id: string): Promise<PendingAuthorization | undefined>;
  /** Removes the request once answered; false when another request answered it first. */
  take(id: string): Promise<boolean>;
}

export interface ApiKey {
  id: string;
  clientId: string;
  name: string;
  digest: string;
  prefix: string;
  scopes: string[];
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

export interface ApiKeyRepository {
  /**
   * Stores a key of `key.clientId`; with `expected`, only while the client is as expected
   * (ClientRepository.addSecret). False (nothing stored) when it is not, or not there.
   */
  create(key: ApiKey, expected?: ExpectedClient): Promise<boolean>;
  findByDigest(digest: string): Promise<ApiKey | undefined>;
  findById(id: string): Promise<ApiKey | undefined>;
  listForClient(clientId: string): Promise<ApiKey[]>;
  /**
   * Revokes a key of the given client; with `expected`, only while the client is as expected
   * (ClientRepository.update). False when there is no such live key, or the client is no longer
   * as `expected`.
   */
  revoke(clientId: string, id: string, now: number, expected?: ExpectedClient): Promise<boolean>;
  /** Records when keys were last used, in one batch (uses are collected in memory between batches). */
  recordUse(uses: ReadonlyMap<string, number>): Promise<void>;
}

/** A "forgot your password?" link: its token's digest, for whom, and until when it works. */
export interface PasswordReset {
  /** SHA-256 of the token in the link. */
  digest: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

export interface PasswordResetRepository {
  /**
   * Stores a reset of `reset.userId` and deletes every earlier one of the user, used or not, in one
   * transaction that holds the user's row: only the newest link works, however many are asked for at
   * once, on any instance. False (nothing stored) when the user is gone.
   */
  issue(reset: Omit<PasswordReset, 'consumedAt'>): Promise<boolean>;
  find(digest: string): Promise<PasswordReset | undefined>;
  /**
   * Consumes the reset and sets its user's password hash (and `now` as their update time), in one
   * transaction: only while the reset is unused and unexpired at `now` (one conditional `UPDATE …
   * WHERE consumed_at IS NULL`, so of concurrent redemptions exactly one wins) and its user is not
   * disabled. The user's id; undefined when it is none of these, and then nothing changed.
   */
  redeem(digest: string, passwordHash: string, now: number): Promise<string | undefined>;
}

/** An email verification link: its token's digest, whose address it verifies, the address it was sent to, and until when it works. */
export interface EmailVerification {
  /** SHA-256 of the token in the link. */
  digest: string;
  userId: string;
  /** The address the link was sent to: it verifies that address, and no other the user has later. */
  email: string;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

export interface EmailVerificationRepository {
  /**
   * Stores a link of `link.userId` and deletes every earlier one of the user, in one transaction that
   * holds the user's row, only while `link.email` is the user's address: only the newest link works.
   * False (nothing stored) when the user is gone or has another address.
   */
  issue(link: Omit<EmailVerification, 'consumedAt'>): Promise<boolean>;
  find(digest: string): Promise<EmailVerification | undefined>;
  /**
   * Consumes the link and marks its user's address verified (and `now` as their update time), in one
   * transaction: only while the link is unused and unexpired at `now` (of concurrent redemptions
   * exactly one wins), its user not disabled and their address still the one the link was sent to.
   * The user's id; undefined when it is none of these, and then nothing changed.
   */
  redeem(digest: string, now: number): Promise<string | undefined>;
}

/** What the sweep deletes besides rows past their `expires_at`. */
export interface SweepPolicy {
  /**
   * A grant whose last refresh token is deleted ends this long after, when the last access token it
   * issued has expired, and is deleted on a later sweep (a grant that never had a refresh token was
   * given its end when it was created).
   */
  accessTokenTtlSeconds: number;
  /** Audit events older than this are deleted; 0 keeps them forever. */
  auditRetentionSeconds: number;
  /**
   * `tokens.refreshTokenMaxLifetimeSeconds`: the refresh tokens of a grant made longer ago are
   * deleted (see grantRefreshEnd), as are those of a revoked or ended grant; 0 or undefined, no bound.
   */
  refreshTokenMaxLifetimeSeconds?: number;
}

export interface Storage {
  clients: ClientRepository;
  users: UserRepository;
  keys: SigningKeyRepository;
  grants: GrantRepository;
  refreshTokens: RefreshTokenRepository;
  codes: AuthorizationCodeRepository;
  revocations: RevocationRepository;
  audit: AuditRepository;
  sessions: SessionRepository;
  consents: ConsentRepository;
  pendingAuthorizations: PendingAuthorizationRepository;
  apiKeys: ApiKeyRepository;
  passwordResets: PasswordResetRepository;
  emailVerifications: EmailVerificationRepository;
  /** Connections of the PostgreSQL pool; undefined for SQLite. */
  poolStats(): { total: number; idle: number; waiting: number } | undefined;
  /** Throws when the database does not answer. */
  ping(): Promise<void>;
  /**
   * Deletes up to `limit` expired rows per table (see SweepPolicy) — refresh tokens of no more use,
   * grants once they have ended and no refresh token of theirs is left — and returns how many went. On
   * PostgreSQL one instance sweeps at a time: while another is sweeping, this deletes nothing (on an
   * engine without advisory locks every instance sweeps).
   */
  sweepExpired(now: number, limit: number, policy: SweepPolicy): Promise<number>;
  close(): Promise<void>;
  readonly dialect: 'sqlite' | 'postgres';
}
