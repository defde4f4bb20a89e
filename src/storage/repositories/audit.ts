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
   * exactly one page). With `oldestFirst`, the same events oldest first, `after` then being the
   * newest of the page before: a span of time read in order, a page at a time.
   */
  query(filter: { since?: number; until?: number; clientId?: string; userId?: string; kind?: string; after?: { at: number; id: number }; limit?: number; oldestFirst?: boolean }): Promise<AuditEvent[]>;
}
