import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * What the account page lists of each browser session (as Keycloak's device activity, Google's and
 * GitHub's session lists do): the client address it signed in from, a short name of its browser
 * and system ("Firefox on Linux", never the User-Agent header itself), and when it was last used,
 * recorded a few minutes apart at most. All three are null for a session started before this (or
 * by an older instance meanwhile): the page says "unknown". A user's sessions are listed newest
 * first, and ended all together: the index of their user and start serves both, and replaces
 * 002's of their user alone.
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';
  await db.schema.alterTable('sessions').addColumn('address', 'text').execute();
  await db.schema.alterTable('sessions').addColumn('device', 'text').execute();
  await db.schema.alterTable('sessions').addColumn('last_used_at', time).execute();
  await db.schema.createIndex('sessions_user_created').on('sessions').columns(['user_id', 'created_at']).execute();
  await db.schema.dropIndex('sessions_user').execute();
}
