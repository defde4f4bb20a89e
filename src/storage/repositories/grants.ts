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
  /** Revokes every grant of the client not revoked yet; the grants it revoked (their ids and users). */
  revokeForClient(clientId: string, now: number): Promise<{ id: string; userId: string | null }[]>;
  /**
   * Grants matching every given filter, newest first (of one second, by id); at most `limit`
   * (default 100, never over 1001: a page of 1000 and one to tell whether another follows), those
   * listed after `after` when given — the last grant of the page before (keyset pagination, so
   * pages stay stable while grants are added).
   */
  list(filter: { userId?: string; clientId?: string; after?: { createdAt: number; id: string }; limit?: number }): Promise<Grant[]>;
}
