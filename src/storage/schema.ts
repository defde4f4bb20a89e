import type { Generated } from 'kysely';

/**
 * The tables, as Kysely sees them. Portable across SQLite and PostgreSQL: times are integer epoch
 * seconds, flags are 0/1 integers, lists are JSON text. Secrets and tokens are stored only as their
 * SHA-256 digest (base64url).
 */
export interface Database {
  clients: ClientTable;
  client_secrets: ClientSecretTable;
  users: UserTable;
  signing_keys: SigningKeyTable;
  grants: GrantTable;
  refresh_tokens: RefreshTokenTable;
  authorization_codes: AuthorizationCodeTable;
  revoked_tokens: RevokedTokenTable;
  audit_events: AuditEventTable;
  sessions: SessionTable;
  session_clients: SessionClientTable;
  consents: ConsentTable;
  authorization_requests: AuthorizationRequestTable;
  api_keys: ApiKeyTable;
  client_assertions: ClientAssertionTable;
  password_resets: PasswordResetTable;
  email_verifications: EmailVerificationTable;
  email_changes: EmailChangeTable;
}

/** A password reset link (migration 015): only the digest of its token is stored; `mailed_at` (020) null while its mail is being sent. */
export interface PasswordResetTable {
  digest: string;
  user_id: string;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
  mailed_at: number | null;
}

/** An email verification link (migration 017): the digest of its token and the address it was sent to; `mailed_at` (020) null while its mail is being sent. */
export interface EmailVerificationTable {
  digest: string;
  user_id: string;
  email: string;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
  mailed_at: number | null;
}

/** An email change link (migration 022): only the digest of its token is stored; `to_email` is the address it sets, and was sent to. */
export interface EmailChangeTable {
  digest: string;
  user_id: string;
  from_email: string;
  to_email: string;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
  mailed_at: number | null;
}

export interface ApiKeyTable {
  id: string;
  client_id: string;
  name: string;
  digest: string;
  prefix: string;
  scopes: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

export interface SessionTable {
  digest: string;
  /** The OpenID Connect session id: random, not secret. Null only for a row an instance older than migration 013 wrote. */
  sid: string | null;
  user_id: string;
  auth_time: number;
  created_at: number;
  expires_at: number;
  /** Migration 024: the client address the session signed in from, a short name of its browser and system, when it was last used; null for an older row. */
  address: string | null;
  device: string | null;
  last_used_at: number | null;
}

/** A client the authorization endpoint answered through a session: told when the session ends (Back-Channel Logout 1.0). */
export interface SessionClientTable {
  session_digest: string;
  client_id: string;
}

export interface ConsentTable {
  user_id: string;
  client_id: string;
  scopes: string;
  created_at: number;
  updated_at: number;
}

export interface AuthorizationRequestTable {
  id: string;
  client_id: string;
  /** The validated request as JSON. */
  request: string;
  created_at: number;
  expires_at: number;
}

export interface ClientTable {
  id: string;
  name: string;
  description: string;
  owner_user_id: string | null;
  /** 'confidential' | 'public' */
  type: string;
  base_url: string | null;
  redirect_uris: string;
  post_logout_redirect_uris: string;
  grant_types: string;
  scopes: string;
  default_scopes: string;
  is_admin: number;
  first_party: number;
  allow_impersonation: number;
  is_resource_server: number;
  /** The client's public keys for `private_key_jwt`, a JWK Set as JSON; null when it has none. */
  jwks: string | null;
  backchannel_logout_uri: string | null;
  backchannel_logout_session_required: Generated<number>;
  created_at: number;
  updated_at: number;
}

export interface ClientAssertionTable {
  client_id: string;
  jti: string;
  expires_at: number;
}

export interface ClientSecretTable {
  id: string;
  client_id: string;
  digest: string;
  /** The last characters of the secret, so a person can tell two secrets apart. */
  hint: string;
  created_at: number;
  expires_at: number | null;
}

export interface UserTable {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  email_verified: number;
  disabled_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface SigningKeyTable {
  kid: string;
  /** 'access' | 'id' */
  use: string;
  alg: string;
  /** 'next' (published, not signing) | 'active' (signing) | 'retired' (published until expires_at) */
  state: string;
  public_jwk: string;
  /** The private JWK as a JWE (dir, A256GCM) under the master secret. */
  private_jwk: string;
  created_at: number;
  activated_at: number | null;
  retired_at: number | null;
  /** When a retired key leaves the JWKS: after the last token it signed has expired. */
  expires_at: number | null;
}

export interface GrantTable {
  id: string;
  client_id: string;
  user_id: string | null;
  /** The grant type that created the grant: 'password' | 'authorization_code' | … */
  kind: string;
  scopes: string;
  auth_time: number | null;
  /** The OpenID Connect session the grant was authorized in; null for one made without a browser session. */
  sid: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface RefreshTokenTable {
  digest: string;
  grant_id: string;
  client_id: string;
  scopes: string;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
}

export interface AuthorizationCodeTable {
  digest: string;
  client_id: string;
  user_id: string;
  redirect_uri: string;
  scopes: string;
  code_challenge: string | null;
  code_challenge_method: string | null;
  nonce: string | null;
  auth_time: number;
  /** The OpenID Connect session the code was issued in. */
  sid: string | null;
  /** Whether the authorization request named the redirect URI (then the exchange must repeat it). */
  redirect_uri_explicit: number;
  /** The grant created when the code was exchanged; revoked when the code is presented again. */
  grant_id: string | null;
  /** The access token issued from the code, revoked if the code is presented again. */
  access_token_jti: string | null;
  access_token_expires_at: number | null;
  created_at: number;
  expires_at: number;
  consumed_at: number | null;
}

export interface RevokedTokenTable {
  jti: string;
  expires_at: number;
}

export interface AuditEventTable {
  id: Generated<number>;
  at: number;
  kind: string;
  outcome: string;
  client_id: string | null;
  user_id: string | null;
  data: string;
}

/** The columns of a table, as Kysely names them; the record type makes the compiler insist on every one. */
const columns = <Table>(names: { [Column in keyof Table & string]: true }): readonly (keyof Table & string)[] =>
  Object.keys(names) as (keyof Table & string)[];

/**
 * Every column of each table, for the statements that read whole rows. They name their columns
 * rather than `select *`: on PostgreSQL a prepared `*` changes its result type when a newer
 * instance's migration adds a column during a rolling upgrade, and the server then refuses it
 * ("cached plan must not change result type"), inside a transaction failing the whole request.
 */
export const COLUMNS = {
  clients: columns<ClientTable>({
    id: true, name: true, description: true, owner_user_id: true, type: true, base_url: true, redirect_uris: true,
    post_logout_redirect_uris: true, grant_types: true, scopes: true, default_scopes: true, is_admin: true, first_party: true,
    allow_impersonation: true, is_resource_server: true, jwks: true, backchannel_logout_uri: true, backchannel_logout_session_required: true,
    created_at: true, updated_at: true,
  }),
  client_secrets: columns<ClientSecretTable>({ id: true, client_id: true, digest: true, hint: true, created_at: true, expires_at: true }),
  users: columns<UserTable>({
    id: true, email: true, name: true, password_hash: true, email_verified: true, disabled_at: true, created_at: true, updated_at: true,
  }),
  signing_keys: columns<SigningKeyTable>({
    kid: true, use: true, alg: true, state: true, public_jwk: true, private_jwk: true, created_at: true, activated_at: true,
    retired_at: true, expires_at: true,
  }),
  grants: columns<GrantTable>({
    id: true, client_id: true, user_id: true, kind: true, scopes: true, auth_time: true, sid: true, created_at: true, expires_at: true, revoked_at: true,
  }),
  refresh_tokens: columns<RefreshTokenTable>({
    digest: true, grant_id: true, client_id: true, scopes: true, created_at: true, expires_at: true, consumed_at: true,
  }),
  authorization_codes: columns<AuthorizationCodeTable>({
    digest: true, client_id: true, user_id: true, redirect_uri: true, scopes: true, code_challenge: true, code_challenge_method: true,
    nonce: true, auth_time: true, sid: true, redirect_uri_explicit: true, grant_id: true, access_token_jti: true, access_token_expires_at: true,
    created_at: true, expires_at: true, consumed_at: true,
  }),
  audit_events: columns<AuditEventTable>({ id: true, at: true, kind: true, outcome: true, client_id: true, user_id: true, data: true }),
  sessions: columns<SessionTable>({ digest: true, sid: true, user_id: true, auth_time: true, created_at: true, expires_at: true, address: true, device: true, last_used_at: true }),
  consents: columns<ConsentTable>({ user_id: true, client_id: true, scopes: true, created_at: true, updated_at: true }),
  authorization_requests: columns<AuthorizationRequestTable>({ id: true, client_id: true, request: true, created_at: true, expires_at: true }),
  password_resets: columns<PasswordResetTable>({ digest: true, user_id: true, created_at: true, expires_at: true, consumed_at: true, mailed_at: true }),
  email_verifications: columns<EmailVerificationTable>({ digest: true, user_id: true, email: true, created_at: true, expires_at: true, consumed_at: true, mailed_at: true }),
  email_changes: columns<EmailChangeTable>({ digest: true, user_id: true, from_email: true, to_email: true, created_at: true, expires_at: true, consumed_at: true, mailed_at: true }),
  api_keys: columns<ApiKeyTable>({
    id: true, client_id: true, name: true, digest: true, prefix: true, scopes: true, created_at: true, expires_at: true,
    revoked_at: true, last_used_at: true,
  }),
} as const;
