import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * A client's codes and waiting authorization requests found by the client: deleting a client (or
 * the user who owns it) deletes them (see deleteClient), and its key cascades to them on both
 * dialects. Without these indexes each of those statements read the table whole (the codes through
 * the index of codes by user and client, which does not lead with the client), once for the
 * statement and once more for the cascade. Written with each code and each request that waits for
 * a person; no other index is needed by what deletes users, clients, grants, consents, sessions,
 * secrets or API keys, or by the sweep.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('authorization_codes_client').on('authorization_codes').column('client_id').execute();
  await db.schema.createIndex('authorization_requests_client').on('authorization_requests').column('client_id').execute();
}
