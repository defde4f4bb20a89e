/**
 * One page of a long list, oldest first: at most `limit` records, those created after `after`
 * (keyset pagination on creation time and id, so pages stay stable while records are added).
 */
export interface Page {
  after?: { createdAt: number; id: string };
  limit: number;
}
