import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * When browser sessions end, the codes issued through them and not yet exchanged are voided, found
 * by the session id they carry (see endSessions): without this index every sign-out would read
 * every live code.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('authorization_codes_sid').on('authorization_codes').column('sid').execute();
}
