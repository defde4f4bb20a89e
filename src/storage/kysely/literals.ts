import { sql, type RawBuilder } from 'kysely';
import type { Dialect } from '../database.ts';

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
