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

/** What a user's live grants give one client (GrantRepository.liveClientsOf). */
export interface LiveClientGrants {
  clientId: string;
  scopes: string[];
  since: number;
}

export interface GrantRepository {
  /**
   * Stores the grant; false, storing nothing, when its user or client no longer exists (deleted
   * since the caller read them, on this instance or another) or its user is disabled at that moment
   * (checked in the same statement as the insert, so a user disabled since they were read gets no grant).
   */
  create(grant: Grant): Promise<boolean>;
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
  /**
   * The clients that hold a grant of the user that has neither been revoked nor expired, other than
   * an impersonation (the user never gave that one): each once, with the scopes of those grants and
   * when the oldest of them was made. A grant lasting past its last refresh token counts as live.
   */
  liveClientsOf(userId: string, now: number): Promise<LiveClientGrants[]>;
}
