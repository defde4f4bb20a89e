import type { RefreshToken, Storage } from '../../storage/repositories.ts';
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
