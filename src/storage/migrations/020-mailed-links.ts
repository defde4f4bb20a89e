import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * When the mail of each emailed link (password reset, email verification) was accepted by the mail
 * server; null while it is being sent. A new link is stored beside the user's earlier ones and
 * replaces those only once its mail is accepted, so that a mail the server refuses leaves the
 * earlier link working: a link being sent is not replaced by another mailed meanwhile. Every link
 * stored before was mailed when it was stored.
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';
  for (const table of ['password_resets', 'email_verifications']) {
    await db.schema.alterTable(table).addColumn('mailed_at', time).execute();
    await db.updateTable(table).set((eb) => ({ mailed_at: eb.ref('created_at') })).execute();
  }
}
