import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Dialect } from '../database.ts';
import type { Database } from '../schema.ts';

/**
 * Values selected as the columns of an `insert … select` (a row written only while another row
 * exists): PostgreSQL types a bare parameter there as text, so each is cast to its column's type;
 * SQLite takes a time as it is.
 */
export function typedLiterals(dialect: Dialect) {
  return {
    time: <T extends number | null>(value: T): RawBuilder<T> => (dialect === 'postgres' ? sql<T>`cast(${value} as bigint)` : sql<T>`${value}`),
    text: <T extends string | null>(value: T): RawBuilder<T> => sql<T>`cast(${value} as text)`,
  };
}

/**
 * The row of the user `userId` while that user exists and is not disabled, as the source of an
 * `insert … select`: a grant or a session is written for an enabled user only, in one statement, so
 * one disabled (by an operator, on another instance) after the caller read them gets none. On
 * PostgreSQL the row is held (`for share`): a disabling under way is waited for and its outcome read,
 * rather than the row as it was before it. The caller selects the values to insert from it.
 */
export function enabledUser(db: Kysely<Database>, dialect: Dialect, userId: string) {
  const user = db.selectFrom('users').where('users.id', '=', userId).where('users.disabled_at', 'is', null);
  return dialect === 'postgres' ? user.forShare() : user;
}
