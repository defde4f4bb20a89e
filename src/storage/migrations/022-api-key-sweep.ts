import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * The sweep deletes API keys revoked or expired longer ago than `apiKeys.retentionDays` (see
 * sweepOtherTables), reading them through these indexes a batch at a time; without them every sweep
 * read the whole table. Each holds only the keys with that end: a key is written into the first
 * once, when it is revoked, and into the second when it is made with an expiry.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('api_keys_revoked').on('api_keys').column('revoked_at').where(sql.ref('revoked_at'), 'is not', null).execute();
  await db.schema.createIndex('api_keys_expires').on('api_keys').column('expires_at').where(sql.ref('expires_at'), 'is not', null).execute();
}
