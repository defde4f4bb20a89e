import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * Email change links: the SHA-256 digest of each link's token (never the token), the account it
 * changes, the address the account had when it was asked for (`from_email`) and the one it is to
 * have (`to_email`), to which it was sent; until when it works, when it was used and when its mail
 * was accepted (null while it is being sent, as 020 has it for the other links). A table of its own
 * rather than email_verifications with a second address: a verification proves the address the
 * account has, a change sets one it has not, and every statement of each would need to tell them
 * apart. A user's links go with the user (the key cascades, on SQLite too). The expiry index serves
 * the sweep, the user index the deletion of a user's other links when a new one is mailed, or the
 * address or the password changes.
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';
  await db.schema
    .createTable('email_changes')
    .addColumn('digest', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('from_email', 'text', (c) => c.notNull())
    .addColumn('to_email', 'text', (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('expires_at', time, (c) => c.notNull())
    .addColumn('consumed_at', time)
    .addColumn('mailed_at', time)
    .execute();
  await db.schema.createIndex('email_changes_user').on('email_changes').column('user_id').execute();
  await db.schema.createIndex('email_changes_expiry').on('email_changes').column('expires_at').execute();
}
