import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * A user's grants read newest first, a page at a time (the admin API's list): through this index
 * the read goes in that order and stops after the page. Without it every page read and sorted all of
 * the user's grants — a service account on the password grant makes one per token request: 95 to
 * 520 ms a page for 50k grants of 400k. It takes the place of the index on (user_id, client_id):
 * what reads grants by user (the user's deletion, the check of the key from `grants` to `users`)
 * reads its first column just as well, and a consent's withdrawal, which revokes the user's grants
 * to one client, reads all of the user's grants (a few, but for such an account) instead of only
 * those to that client (see ConsentRepository.withdraw). The number of indexes written with a grant
 * does not change.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('grants_user_created').on('grants').columns(['user_id', 'created_at desc', 'id']).execute();
  await db.schema.dropIndex('grants_user').execute();
}
