import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * "Forgot your password?" links: the SHA-256 digest of each link's token (never the token), whose
 * password it resets, until when, and when it was used. A user's links go with the user (the key
 * cascades, on SQLite too: its connections turn foreign keys on). The expiry index serves the sweep,
 * the user index the deletion of a user's earlier links when a new one is issued.
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';
  await db.schema
    .createTable('password_resets')
    .addColumn('digest', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('expires_at', time, (c) => c.notNull())
    .addColumn('consumed_at', time)
    .execute();
  await db.schema.createIndex('password_resets_user').on('password_resets').column('user_id').execute();
  await db.schema.createIndex('password_resets_expiry').on('password_resets').column('expires_at').execute();
}
