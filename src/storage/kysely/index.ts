import { sql } from 'kysely';
import { migrate, openDatabase, type DatabaseOptions } from '../database.ts';
import type { Storage } from '../repositories.ts';
import { kyselyApiKeys } from './api-keys.ts';
import { kyselyAudit, kyselyRevocations } from './audit.ts';
import { kyselyConsents, kyselyPendingAuthorizations, kyselySessions } from './browser.ts';
import { kyselyClients } from './clients.ts';
import { kyselyCodes } from './codes.ts';
import { kyselyGrants, kyselyRefreshTokens } from './grants.ts';
import { kyselyKeys } from './keys.ts';
import { kyselyUsers } from './users.ts';

/** Opens the database, applies pending migrations and returns the repositories over it. */
export async function createStorage(options: DatabaseOptions): Promise<Storage> {
  const handle = openDatabase(options);
  try {
    await migrate(handle);
  } catch (error) {
    await handle.close();
    throw error;
  }
  const { db } = handle;
  return {
    dialect: handle.dialect,
    clients: kyselyClients(db),
    users: kyselyUsers(db),
    keys: kyselyKeys(db),
    grants: kyselyGrants(db),
    refreshTokens: kyselyRefreshTokens(db, handle.dialect),
    codes: kyselyCodes(db),
    revocations: kyselyRevocations(db),
    audit: kyselyAudit(db),
    sessions: kyselySessions(db),
    consents: kyselyConsents(db),
    pendingAuthorizations: kyselyPendingAuthorizations(db),
    apiKeys: kyselyApiKeys(db),
    poolStats: () => (handle.pool ? { total: handle.pool.totalCount, idle: handle.pool.idleCount, waiting: handle.pool.waitingCount } : undefined),
    async ping() {
      await sql`select 1`.execute(db);
    },
    async sweepExpired(now, limit) {
      let swept = 0;
      // Small batches keep each statement short, so sweeping never stalls the token endpoint.
      const batches = [
        db.deleteFrom('refresh_tokens').where('digest', 'in', db.selectFrom('refresh_tokens').select('digest').where('expires_at', '<', now).limit(limit)),
        db.deleteFrom('authorization_codes').where('digest', 'in', db.selectFrom('authorization_codes').select('digest').where('expires_at', '<', now).limit(limit)),
        db.deleteFrom('revoked_tokens').where('jti', 'in', db.selectFrom('revoked_tokens').select('jti').where('expires_at', '<', now).limit(limit)),
        db.deleteFrom('sessions').where('digest', 'in', db.selectFrom('sessions').select('digest').where('expires_at', '<', now).limit(limit)),
        db
          .deleteFrom('client_assertions')
          .where(sql<boolean>`(client_id, jti) in (${db.selectFrom('client_assertions').select(['client_id', 'jti']).where('expires_at', '<', now).limit(limit)})`),
        db.deleteFrom('authorization_requests').where('id', 'in', db.selectFrom('authorization_requests').select('id').where('expires_at', '<', now).limit(limit)),
        db.deleteFrom('signing_keys').where('kid', 'in', db.selectFrom('signing_keys').select('kid').where('state', '=', 'retired').where('expires_at', '<', now).limit(limit)),
      ];
      for (const batch of batches) swept += Number((await batch.executeTakeFirst()).numDeletedRows);
      return swept;
    },
    close: () => handle.close(),
  };
}
