import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * Users and applications read a page at a time in creation order (the admin API's lists, see
 * onePage): through these indexes a page is read in order and the read stops after it. Without them
 * every page sorted the whole table, 30 to 235 ms for 200k users. Both tables are written rarely.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('users_created').on('users').columns(['created_at', 'id']).execute();
  await db.schema.createIndex('clients_created').on('clients').columns(['created_at', 'id']).execute();
}
