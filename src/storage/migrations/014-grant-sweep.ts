import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * The sweep deletes the refresh tokens of revoked grants and of grants past their lifetime bound
 * (see sweepRefreshTokens), reading those grants through these indexes a batch at a time. Both hold
 * only grants without an end (`expires_at` null): the grants that may still have refresh tokens. A
 * grant the sweep has emptied is given its end and leaves them, so that the next batch does not read
 * it again while it waits to be deleted; without that condition, a thousand grants revoked at once
 * (a consent withdrawn from a popular application) were read on every sweep for an hour. A revoked
 * grant is written into the first index once; the second is written with each grant that has a
 * refresh token, beside the five indexes such a grant already has.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema
    .createIndex('grants_revoked_unended')
    .on('grants')
    .column('revoked_at')
    .where(sql.ref('revoked_at'), 'is not', null)
    .where(sql.ref('expires_at'), 'is', null)
    .execute();
  await db.schema.createIndex('grants_unended_created').on('grants').column('created_at').where(sql.ref('expires_at'), 'is', null).execute();
}
