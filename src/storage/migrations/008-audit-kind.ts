import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * The audit log read by kind, newest first (the admin API's `kind` filter). Through the index on
 * time alone, a query for a rare kind (`refresh_token.reused`, `admin.refused`) walked the whole
 * log backwards: 7 to 16 s over 2M events, past the query timeout.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('audit_events_kind').on('audit_events').columns(['kind', 'at']).execute();
}
