import type { Storage } from '../../storage/repositories.ts';
import type { Grant } from '../../storage/repositories/grants.ts';
import type { FoundRefreshToken, RefreshToken } from '../../storage/repositories/refresh-tokens.ts';
import type { TokenSettings } from '../config.ts';
import { createOpaqueToken, digestOf } from './opaque.ts';

/** A new refresh token for a grant: the plain value for the client, the record to store. */
export function newRefreshToken(grantId: string, clientId: string, scopes: readonly string[], now: number, ttlSeconds: number): { value: string; record: RefreshToken } {
  const value = createOpaqueToken('rt');
  return {
    value,
    record: { digest: digestOf(value), grantId, clientId, scopes: [...scopes], createdAt: now, expiresAt: now + ttlSeconds, consumedAt: null },
  };
}

export async function issueRefreshToken(storage: Storage, grantId: string, clientId: string, scopes: readonly string[], now: number, ttlSeconds: number): Promise<string> {
  const { value, record } = newRefreshToken(grantId, clientId, scopes, now, ttlSeconds);
  await storage.refreshTokens.insert(record);
  return value;
}

/**
 * When the refresh tokens of `grant` stop working, however often they were rotated:
 * `maxLifetimeSeconds` after the grant was made, or never (0). The grant's creation, not the user's
 * authentication (`authTime`), is the anchor: a refresh token continues the grant — what the user
 * authorized — and Auth0's absolute lifetime, Okta's "expire after" and Keycloak's client session
 * max all count from its first token. An application authorized through a browser session signed
 * in to two weeks before does not get a grant two weeks shorter; how recent a sign-in must be is
 * the business of `max_age` and the `auth_time` of the ID tokens a refresh returns. Every grant has
 * had its `created_at` from the first migration on, so grants made before the bound existed are
 * bounded too, with nothing rewritten.
 */
export function grantRefreshEnd(grant: Pick<Grant, 'createdAt'>, maxLifetimeSeconds: number): number {
  return maxLifetimeSeconds === 0 ? Number.POSITIVE_INFINITY : grant.createdAt + maxLifetimeSeconds;
}

/**
 * When `grant` ends for every token issued under it: at its own end (`expires_at`, set for a grant
 * that ends with its one access token, or once its last refresh token has gone) or at the end of its
 * refresh lifetime bound, whichever comes first. RFC 6749 §1.5: an access token stands for the
 * authorization the grant represents, and cannot outlast it.
 */
export function grantEnd(grant: Pick<Grant, 'createdAt' | 'expiresAt'>, maxLifetimeSeconds: number): number {
  return Math.min(grant.expiresAt ?? Number.POSITIVE_INFINITY, grantRefreshEnd(grant, maxLifetimeSeconds));
}

/**
 * The lifetime of an access token issued `now` under `grant` (for a grant made with it, pass
 * `{ createdAt: now, expiresAt: null }`): the configured one, cut short by the grant's end, as
 * Keycloak caps an access token's lifespan at its session's maximum.
 */
export function accessTokenTtl(grant: Pick<Grant, 'createdAt' | 'expiresAt'>, now: number, tokens: Pick<TokenSettings, 'accessTokenTtlSeconds' | 'refreshTokenMaxLifetimeSeconds'>): number {
  return Math.min(tokens.accessTokenTtlSeconds, grantEnd(grant, tokens.refreshTokenMaxLifetimeSeconds) - now);
}

/** The expiry of a refresh token of `grant` issued `now`: its own lifetime, cut short by the grant's end. */
export function refreshTokenExpiry(grant: Grant, now: number, tokens: TokenSettings): number {
  return Math.min(now + tokens.refreshTokenTtlSeconds, grantRefreshEnd(grant, tokens.refreshTokenMaxLifetimeSeconds));
}

/**
 * When a stored refresh token stops working: its expiry, or its grant's end if that comes first —
 * as it does for a token stored before the bound was configured or shortened.
 */
export function refreshTokenEnd({ token, grant }: FoundRefreshToken, maxLifetimeSeconds: number): number {
  return Math.min(token.expiresAt, grantRefreshEnd(grant, maxLifetimeSeconds));
}

/**
 * Why a stored refresh token may not be used now — its grant revoked or past its maximum lifetime,
 * it or its grant expired, the grant's user deleted or disabled — or undefined. Whether it was
 * consumed is the caller's concern.
 */
export function refreshTokenRefusal({ token, grant, user }: FoundRefreshToken, now: number, maxLifetimeSeconds: number): string | undefined {
  if (grant.revokedAt !== null) return 'the refresh token has been revoked';
  if (grantRefreshEnd(grant, maxLifetimeSeconds) <= now) return 'the grant has reached its maximum lifetime; the user must sign in again';
  if (token.expiresAt <= now || (grant.expiresAt !== null && grant.expiresAt <= now)) return 'the refresh token has expired';
  if (grant.userId !== null && (!user || user.disabledAt !== null)) return 'the refresh token is invalid';
  return undefined;
}
