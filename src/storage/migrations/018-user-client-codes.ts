import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * Codes found by user and client: withdrawing consent deletes the user's unexchanged codes for the
 * client in the transaction that revokes its grants (see ConsentRepository.withdraw), and without
 * this index that read every live code. Leading with the user, it also serves the cascade of a
 * user's deletion, which PostgreSQL checked the same way.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('authorization_codes_user_client').on('authorization_codes').columns(['user_id', 'client_id']).execute();
}
