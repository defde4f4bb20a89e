import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * OpenID Connect session ids and Back-Channel Logout 1.0. Each browser session gets a `sid`: random,
 * not secret, and unrelated to the cookie (the ID tokens of the session carry it, §2.1), and
 * sessions made before this get one here. A code and the grant made from it remember the `sid`, so
 * that an ID token from a refresh carries it too (OpenID Connect Core §12.2). `session_clients`
 * names the clients each session was answered for, to be told when it ends (§2.5); it goes with its
 * session (the key cascades, on SQLite too: its connections turn foreign keys on). A client's rows
 * are not tied to the client: one deleted is skipped when its session ends, and its rows go with the
 * session. Clients get their `backchannel_logout_uri` and `backchannel_logout_session_required` (§2.2).
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('sid', 'text').execute();
  const random = dialect === 'postgres' ? sql`replace(gen_random_uuid()::text, '-', '')` : sql`lower(hex(randomblob(16)))`;
  await db.updateTable('sessions').set({ sid: random }).where('sid', 'is', null).execute();
  await db.schema.alterTable('authorization_codes').addColumn('sid', 'text').execute();
  await db.schema.alterTable('grants').addColumn('sid', 'text').execute();

  await db.schema
    .createTable('session_clients')
    .addColumn('session_digest', 'text', (c) => c.notNull().references('sessions.digest').onDelete('cascade'))
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('session_clients_pk', ['session_digest', 'client_id'])
    .execute();

  await db.schema.alterTable('clients').addColumn('backchannel_logout_uri', 'text').execute();
  await db.schema
    .alterTable('clients')
    .addColumn('backchannel_logout_session_required', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}
