import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/** The longest an access token may live (`tokens.accessTokenTtlSeconds` is at most a day). */
const MAX_ACCESS_TOKEN_TTL_SECONDS = 86_400;

/**
 * Grants end, and are swept once they have (see Storage.sweepExpired): `expires_at` is indexed, and
 * a grant stored before this without a refresh token — an authorization code exchanged without one,
 * an implicit authorization, or a grant whose refresh tokens have all been swept — is given the end
 * of the longest-lived access token it may have issued. Grants created in the last minute are left
 * alone: an instance still running the previous version may be about to store their refresh token.
 */
export async function up(db: Kysely<any>, _dialect: Dialect): Promise<void> {
  await db.schema.createIndex('grants_expiry').on('grants').column('expires_at').execute();
  const now = Math.floor(Date.now() / 1000);
  await db
    .updateTable('grants')
    .set({ expires_at: sql`created_at + ${MAX_ACCESS_TOKEN_TTL_SECONDS}` })
    .where('expires_at', 'is', null)
    .where('created_at', '<', now - 60)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select('refresh_tokens.digest').whereRef('refresh_tokens.grant_id', '=', 'grants.id'))))
    .execute();
}
