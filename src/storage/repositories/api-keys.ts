import type { ExpectedClient } from './clients.ts';

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
   * (ClientRepository.addSecret). False (nothing stored) when it is not, or not there. With `limit`,
   * only while the client holds fewer live keys (neither revoked nor expired at `key.createdAt`)
   * than that, counted after the client's row is claimed, as ClientRepository.addSecret counts:
   * TooManyApiKeysError otherwise.
   */
  create(key: ApiKey, expected?: ExpectedClient, limit?: number): Promise<boolean>;
  findByDigest(digest: string): Promise<ApiKey | undefined>;
  findById(id: string): Promise<ApiKey | undefined>;
  /**
   * The client's keys, newest first (of one second, by id); with `page`, at most its limit, those
   * after `page.after` in that order.
   */
  listForClient(clientId: string, page?: { after?: { createdAt: number; id: string } | undefined; limit: number }): Promise<ApiKey[]>;
  /**
   * Revokes a key of the given client; with `expected`, only while the client is as expected
   * (ClientRepository.update). False when there is no such live key, or the client is no longer
   * as `expected`.
   */
  revoke(clientId: string, id: string, now: number, expected?: ExpectedClient): Promise<boolean>;
  /** Records when keys were last used, in one batch (uses are collected in memory between batches). */
  recordUse(uses: ReadonlyMap<string, number>): Promise<void>;
}

/** A key was to be added to a client that holds as many live keys as it may (ApiKeyRepository.create's `limit`). */
export class TooManyApiKeysError extends Error {
  override name = 'TooManyApiKeysError';
  readonly code = 'ERR_TOO_MANY_API_KEYS';
}
