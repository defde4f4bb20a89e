import { createHash } from 'node:crypto';
import { invalidField } from './problems.ts';

// The admin API's lists answer a page at a time: `limit` records at most, and `next_cursor`, an
// opaque position to pass as `cursor` for the next page (null after the last). Cursors are keyset
// positions (a time and an id), so pages stay stable while records are added: each record that
// was there when the walk began is on exactly one page. Only what this API handed out is accepted:
// the unpadded base64url of `<list>:<filters digest>:<time>:<id>`, with an id as the list's records
// have them (see FilteredList.parseId); anything else is a 400. The NUL check of the raw input
// cannot see inside the encoding, and PostgreSQL refuses a NUL in text ("invalid byte sequence for
// encoding UTF8: 0x00"), which would be a 500; bytes that are not UTF-8 would be compared as
// something else.

/** The querystring of a paged list: how many records, and where the page starts. */
export const pageQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100, description: 'Records on the page, at most.' },
    cursor: { type: 'string', minLength: 1, maxLength: 400, description: 'Where the page starts: the `next_cursor` of the page before.' },
  },
} as const;

/** The querystring of a paged list with filters: the filters, then `limit` and `cursor`. */
export function filteredPageQuery<F extends Record<string, object>>(filters: F) {
  const cursor = { ...pageQuery.properties.cursor, description: 'Where the page starts: the `next_cursor` of the page before, asked for with the same filters (400 otherwise).' } as const;
  return { type: 'object', properties: { ...filters, limit: pageQuery.properties.limit, cursor } } as const;
}

/** The response of a paged list: the records under `name`, and where the next page starts (null after the last). */
export function pageOf(name: string, item: object, order = 'oldest first') {
  return {
    description: `One page of the list, ${order}.`,
    type: 'object',
    required: [name, 'next_cursor'],
    properties: { [name]: { type: 'array', items: item }, next_cursor: { type: ['string', 'null'], description: 'Pass as `cursor` for the next page; null on the last page.' } },
  };
}

/** A list (oldest or newest first, with filters or none), and how its records' positions read in a cursor. */
export interface FilteredList<Record, Id extends string | number> {
  /** Names the list in its cursors, so that one list's cursor is refused by another. */
  name: string;
  /** An id as a cursor may carry it (textId, integerId); undefined for anything else. */
  parseId(text: string): Id | undefined;
  positionOf(record: Record): { time: number; id: Id };
}

/** A record's id as the text primary keys are (clients, users, grants): at most 200 characters, as path ids, and no control character. */
export const textId = (text: string): string | undefined => (/^[^\x00-\x1f\x7f]{1,200}$/u.test(text) ? text : undefined);

/** A record's id as the audit log's integer keys are: a positive integer a JavaScript number holds. */
export const integerId = (text: string): number | undefined => (/^[1-9]\d{0,15}$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : undefined);

/**
 * One page of a list (`pageQuery`, with filters or none), and the cursor of the next page. Besides
 * the position, a cursor names its list and carries a digest of the filters it was handed out with:
 * one brought to another list, or with other filters, would start a page at a position that means
 * nothing there (a user's grants from the place reached in another's, the users from a client's
 * registration time), and is refused with a 400.
 * `read` gets the last record of the page before, and lists those after it in the list's order.
 */
export async function listFilteredPage<Record, Id extends string | number>(
  list: FilteredList<Record, Id>,
  { limit, cursor }: { limit: number; cursor?: string },
  filters: { [name: string]: string | number | undefined },
  read: (after: { time: number; id: Id } | undefined, limit: number) => Promise<Record[]>,
): Promise<{ page: Record[]; nextCursor: string | null }> {
  const digest = filtersDigest(filters);
  let after: { time: number; id: Id } | undefined;
  if (cursor !== undefined) {
    const match = /^([a-z_]+):([\w-]{11}):(\d{1,15}):(.*)$/su.exec(decoded(cursor));
    const id = match && match[1] === list.name ? list.parseId(match[4]!) : undefined;
    if (id === undefined) throw notHandedOut();
    if (match![2] !== digest) throw invalidField('cursor', 'cursor was handed out for other filters: ask for the next page with the filters of the first');
    after = { time: Number(match![3]), id };
  }
  const records = await read(after, limit + 1);
  if (records.length <= limit) return { page: records, nextCursor: null };
  const { time, id } = list.positionOf(records[limit - 1]!);
  return { page: records.slice(0, limit), nextCursor: Buffer.from(`${list.name}:${digest}:${time}:${id}`).toString('base64url') };
}

/** 66 bits of the SHA-256 of the filters given: a check of consistency, not a secret. */
function filtersDigest(filters: { [name: string]: string | number | undefined }): string {
  const given = Object.entries(filters)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return createHash('sha256').update(JSON.stringify(given)).digest('base64url').slice(0, 11);
}

/** The text of a cursor; '' (matched by nothing) unless it is the canonical unpadded base64url of valid UTF-8. */
function decoded(cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  // Re-encoding gives the cursor back only if it was canonical base64url of valid UTF-8.
  return Buffer.from(text).toString('base64url') === cursor ? text : '';
}

const notHandedOut = () => invalidField('cursor', 'cursor is not one this API handed out');
