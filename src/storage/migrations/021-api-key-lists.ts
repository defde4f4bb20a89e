import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * A client's API keys read newest first, a page at a time (the admin API's list): through this
 * index the read goes in that order and stops after the page. Without it every page read and
 * sorted all of the client's keys, revoked ones included, which are kept: 9 ms a page for 20k keys
 * of one client. It takes the place of the index on `client_id` alone: what reads keys by client
 * (the portal's list, a client's deletion, the check of the key from `api_keys` to `clients`) reads
 * its first column just as well. Keys are written when made, revoked or used (in batches).
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('api_keys_client_created').on('api_keys').columns(['client_id', 'created_at desc', 'id']).execute();
  await db.schema.dropIndex('api_keys_client').execute();
}
