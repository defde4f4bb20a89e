import { parseArgs } from 'node:util';
import type { Page } from '../storage/repositories/page.ts';
import { exactly, UsageError } from './output.ts';

/**
 * `user list` and `client list` print a page at a time, as the admin API's lists answer: with
 * 100,000 users, one table of every row was neither readable nor quick. Oldest first, keyset on the
 * creation time and id (Page), so that records added meanwhile move no page; the position of the
 * next page is printed as a cursor to pass to --cursor.
 */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface PagedListOptions {
  page: Page;
  json: boolean;
}

/** The options of `gatehouse <list>`: --limit (1–1000, 100 unless given), --cursor (one this list printed), --json. */
export function pagedListOptions(command: string, list: string, args: string[]): PagedListOptions {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { limit: { type: 'string' }, cursor: { type: 'string' }, json: { type: 'boolean' } } });
  exactly(command, positionals, []);
  const limit = values.limit === undefined ? DEFAULT_PAGE_SIZE : /^\d{1,4}$/.test(values.limit) ? Number(values.limit) : NaN;
  if (!(limit >= 1 && limit <= MAX_PAGE_SIZE)) throw new UsageError(`--limit must be a number from 1 to ${MAX_PAGE_SIZE}`);
  const after = values.cursor === undefined ? undefined : parseCursor(list, values.cursor);
  return { page: { after, limit }, json: values.json ?? false };
}

/**
 * One page of `list`, read with one record more than asked for, so that the next page's cursor is
 * printed only when there is a next page.
 */
export async function readPage<R extends { createdAt: number; id: string }>(list: string, page: Page, read: (page: Page) => Promise<R[]>): Promise<{ records: R[]; next: string | null }> {
  const records = await read({ ...page, limit: page.limit + 1 });
  if (records.length <= page.limit) return { records, next: null };
  const last = records[page.limit - 1]!;
  return { records: records.slice(0, page.limit), next: Buffer.from(`${list}:${last.createdAt}:${last.id}`).toString('base64url') };
}

/** What tells how to ask for the next page: `gatehouse user list --cursor …` with the same limit. */
export function nextPageLine(command: string, page: Page, next: string): string {
  return `next page: gatehouse ${command} --cursor ${next}${page.limit === DEFAULT_PAGE_SIZE ? '' : ` --limit ${page.limit}`}`;
}

/** The position a cursor of `list` holds; a usage error for anything this command did not print. */
function parseCursor(list: string, cursor: string): { createdAt: number; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  // Re-encoding gives the cursor back only if it was canonical base64url of valid UTF-8.
  const match = Buffer.from(text).toString('base64url') === cursor ? /^([a-z]+):(\d{1,15}):([^\x00-\x1f\x7f]{1,200})$/u.exec(text) : null;
  if (!match || match[1] !== list) throw new UsageError(`--cursor must be one that a ${list} list printed, not "${cursor}"`);
  return { createdAt: Number(match[2]), id: match[3]! };
}
