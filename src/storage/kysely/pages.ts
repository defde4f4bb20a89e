import { sql, type SelectQueryBuilder } from 'kysely';
import type { Page } from '../repositories/page.ts';

/**
 * One page of a list ordered by creation time and id (Page): the rows after the page's key, at most
 * its limit. A row value comparison, which SQLite and PostgreSQL both know; without a page, every row.
 */
export function onePage<DB, TB extends keyof DB, O>(query: SelectQueryBuilder<DB, TB, O>, page: Page | undefined): SelectQueryBuilder<DB, TB, O> {
  if (!page) return query;
  const after = page.after ? query.where(sql<boolean>`(created_at, id) > (${page.after.createdAt}, ${page.after.id})`) : query;
  return after.limit(page.limit);
}
