import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * Grants read newest first, of every client or of one (the admin API's list): through these indexes
 * the read goes in that order and stops after the limit. Without them the list sorted every grant,
 * or every grant of the client, however few it returned: 60 to 480 ms over 400k grants, 160k of them
 * one client's. The index of one client's grants takes the place of the one on `client_id` alone:
 * what read grants by client (a client's deletion, the check of the key from `grants` to `clients`)
 * reads its first column just as well. Grants are written on sign-ins and consents, not on refreshes.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('grants_created').on('grants').columns(['created_at desc', 'id']).execute();
  await db.schema.createIndex('grants_client_created').on('grants').columns(['client_id', 'created_at desc', 'id']).execute();
  await db.schema.dropIndex('grants_client').execute();
}
