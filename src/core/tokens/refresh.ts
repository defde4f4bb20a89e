import type { FoundRefreshToken, RefreshToken, Storage } from '../../storage/repositories.ts';
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
 * Why a stored refresh token may not be used now — its grant revoked, it or its grant expired, the
 * grant's user deleted or disabled — or undefined. Whether it was consumed is the caller's concern.
 */
export function refreshTokenRefusal({ token, grant, user }: FoundRefreshToken, now: number): string | undefined {
  if (grant.revokedAt !== null) return 'the refresh token has been revoked';
  if (token.expiresAt <= now || (grant.expiresAt !== null && grant.expiresAt <= now)) return 'the refresh token has expired';
  if (grant.userId !== null && (!user || user.disabledAt !== null)) return 'the refresh token is invalid';
  return undefined;
}
