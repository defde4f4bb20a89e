import type { Grant } from './grants.ts';
import type { User } from './users.ts';

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
