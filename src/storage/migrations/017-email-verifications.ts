import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * Email verification links: the SHA-256 digest of each link's token (never the token), whose address
 * it verifies and which address it was sent to, until when, and when it was used. A table of their
 * own rather than password_resets with a purpose column: a verification names an address and is
 * void once that is no longer its user's, lives a day rather than minutes, and must survive a
 * change of password that deletes every reset link; sharing the table would put a purpose condition
 * in each of those statements and in the indexes. A user's links go with the user (the key cascades,
 * on SQLite too). The expiry index serves the sweep, the user index the deletion of a user's earlier
 * links when a new one is issued or the address changes.
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';
  await db.schema
    .createTable('email_verifications')
    .addColumn('digest', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('expires_at', time, (c) => c.notNull())
    .addColumn('consumed_at', time)
    .execute();
  await db.schema.createIndex('email_verifications_user').on('email_verifications').column('user_id').execute();
  await db.schema.createIndex('email_verifications_expiry').on('email_verifications').column('expires_at').execute();
}
