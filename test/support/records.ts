// Storage records, built directly for the storage tests. Every call makes fresh ids, so tests
// sharing a database never collide. Times are a frozen clock in epoch seconds.
import { randomUUID } from 'node:crypto';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import type { NewClient } from '../../src/storage/repositories/clients.ts';
import type { AuthorizationCode } from '../../src/storage/repositories/codes.ts';
import type { Grant } from '../../src/storage/repositories/grants.ts';
import type { KeyState, KeyUse, SigningKeyRecord } from '../../src/storage/repositories/keys.ts';
import type { RefreshToken } from '../../src/storage/repositories/refresh-tokens.ts';
import type { User } from '../../src/storage/repositories/users.ts';

export const NOW = 1_750_000_000;
export const HOUR = 3600;

export const aClient = (overrides: Partial<NewClient> = {}): NewClient => ({
  id: randomUUID(),
  jwks: null,
  name: 'Billing service',
  description: 'Reads invoices',
  ownerUserId: null,
  type: 'confidential',
  baseUrl: null,
  redirectUris: [],
  postLogoutRedirectUris: [],
  grantTypes: ['client_credentials'],
  scopes: ['invoices:read'],
  defaultScopes: [],
  isAdmin: false,
  firstParty: false,
  allowImpersonation: false,
  isResourceServer: false,
  backchannelLogoutUri: null,
  backchannelLogoutSessionRequired: false,
  ...overrides,
});

export const aUser = (overrides: Partial<Omit<User, 'createdAt' | 'updatedAt'>> = {}): Omit<User, 'createdAt' | 'updatedAt'> => ({
  id: randomUUID(),
  email: `ada.${randomUUID()}@example.com`,
  name: 'Ada Lovelace',
  passwordHash: '$scrypt$placeholder',
  emailVerified: false,
  disabledAt: null,
  ...overrides,
});

export const aGrant = (clientId: string, userId: string | null, overrides: Partial<Grant> = {}): Grant => ({
  id: randomUUID(),
  clientId,
  userId,
  kind: userId === null ? 'client_credentials' : 'authorization_code',
  scopes: ['openid', 'invoices:read'],
  authTime: userId === null ? null : NOW - 60,
  createdAt: NOW,
  expiresAt: null,
  revokedAt: null,
  ...overrides,
});

export const aRefreshToken = (grant: Grant, overrides: Partial<RefreshToken> = {}): RefreshToken => ({
  digest: digestOf(createOpaqueToken('rt')),
  grantId: grant.id,
  clientId: grant.clientId,
  scopes: grant.scopes,
  createdAt: NOW,
  expiresAt: NOW + 30 * 24 * HOUR,
  consumedAt: null,
  ...overrides,
});

/** What `rotate` is told to store in place of a token, rotated at `now`. */
export const successorAt = (digest: string, now: number) => ({ digest, expiresAt: now + 30 * 24 * HOUR });

/** The token `rotate` stores in place of `previous`. */
export const successorOf = (previous: RefreshToken, digest: string, now: number): RefreshToken => ({
  ...previous,
  digest,
  createdAt: now,
  expiresAt: now + 30 * 24 * HOUR,
  consumedAt: null,
});

/** What redeeming `code` would make: a grant of its client and user, and the access token's id. */
export const exchangeOf = (code: AuthorizationCode) => ({
  grant: aGrant(code.clientId, code.userId, { scopes: code.scopes, authTime: code.authTime, createdAt: NOW }),
  accessTokenJti: randomUUID(),
  accessTokenExpiresAt: NOW + HOUR,
});

export const aCode = (clientId: string, userId: string, overrides: Partial<AuthorizationCode> = {}): AuthorizationCode => ({
  digest: digestOf(createOpaqueToken('ac')),
  clientId,
  userId,
  redirectUri: 'https://app.example.com/callback',
  scopes: ['openid', 'profile'],
  codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  codeChallengeMethod: 'S256',
  nonce: 'n-0S6_WzA2Mj',
  authTime: NOW - 30,
  redirectUriExplicit: true,
  grantId: null,
  accessTokenJti: null,
  accessTokenExpiresAt: null,
  createdAt: NOW,
  expiresAt: NOW + 60,
  consumedAt: null,
  ...overrides,
});

/** Signing keys with placeholder key material: the repository stores the text without parsing it. */
export const aKey = (use: KeyUse, state: KeyState, overrides: Partial<SigningKeyRecord> = {}): SigningKeyRecord => {
  const kid = randomUUID();
  return {
    kid,
    use,
    alg: use === 'access' ? 'ES256' : 'RS256',
    state,
    publicJwk: `{"kty":"placeholder","kid":"${kid}"}`,
    privateJwk: `placeholder.jwe.${kid}`,
    createdAt: NOW - 10 * 24 * HOUR,
    activatedAt: state === 'next' ? null : NOW - 10 * 24 * HOUR,
    retiredAt: null,
    expiresAt: null,
    ...overrides,
  };
};

export const anEvent = (overrides: Partial<AuditEvent>): AuditEvent => ({
  at: NOW,
  kind: 'token.issued',
  outcome: 'success',
  clientId: null,
  userId: null,
  data: {},
  ...overrides,
});
