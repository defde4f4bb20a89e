import type { Kysely, Selectable } from 'kysely';
import type { Database, GrantTable, RefreshTokenTable } from '../schema.ts';
import type { Grant, GrantRepository, RefreshToken, RefreshTokenRepository } from '../repositories.ts';
import { fromJsonList, toJson } from './json.ts';

export const toGrant = (row: Selectable<GrantTable>): Grant => ({
  id: row.id,
  clientId: row.client_id,
  userId: row.user_id,
  kind: row.kind,
  scopes: fromJsonList(row.scopes),
  authTime: row.auth_time,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  revokedAt: row.revoked_at,
});

const toRefreshToken = (row: Selectable<RefreshTokenTable>): RefreshToken => ({
  digest: row.digest,
  grantId: row.grant_id,
  clientId: row.client_id,
  scopes: fromJsonList(row.scopes),
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

const refreshTokenRow = (token: RefreshToken): RefreshTokenTable => ({
  digest: token.digest,
  grant_id: token.grantId,
  client_id: token.clientId,
  scopes: toJson(token.scopes),
  created_at: token.createdAt,
  expires_at: token.expiresAt,
  consumed_at: token.consumedAt,
});

export function kyselyGrants(db: Kysely<Database>): GrantRepository {
  return {
    async create(grant) {
      await db
        .insertInto('grants')
        .values({
          id: grant.id,
          client_id: grant.clientId,
          user_id: grant.userId,
          kind: grant.kind,
          scopes: toJson(grant.scopes),
          auth_time: grant.authTime,
          created_at: grant.createdAt,
          expires_at: grant.expiresAt,
          revoked_at: grant.revokedAt,
        })
        .execute();
    },
    async find(id) {
      const row = await db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toGrant(row);
    },
    async revoke(id, now) {
      const result = await db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
    async listForUser(userId) {
      const rows = await db.selectFrom('grants').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').execute();
      return rows.map(toGrant);
    },
    async list(filter) {
      let query = db.selectFrom('grants').selectAll();
      if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
      if (filter.clientId !== undefined) query = query.where('client_id', '=', filter.clientId);
      const limit = Math.max(1, Math.min(filter.limit ?? 100, 1000));
      return (await query.orderBy('created_at', 'desc').orderBy('id').limit(limit).execute()).map(toGrant);
    },
  };
}

export function kyselyRefreshTokens(db: Kysely<Database>): RefreshTokenRepository {
  const findGrant = async (executor: Kysely<Database>, id: string) => {
    const row = await executor.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toGrant(row);
  };
  return {
    async insert(token) {
      await db.insertInto('refresh_tokens').values(refreshTokenRow(token)).execute();
    },
    async find(digest) {
      const row = await db.selectFrom('refresh_tokens').selectAll().where('digest', '=', digest).executeTakeFirst();
      if (!row) return undefined;
      const grant = await findGrant(db, row.grant_id);
      return grant && { token: toRefreshToken(row), grant };
    },
    async rotate(digest, successor, now) {
      return db.transaction().execute(async (trx) => {
        const consumed = await trx
          .updateTable('refresh_tokens')
          .set({ consumed_at: now })
          .where('digest', '=', digest)
          .where('consumed_at', 'is', null)
          .returningAll()
          .executeTakeFirst();
        if (!consumed) {
          const row = await trx.selectFrom('refresh_tokens').selectAll().where('digest', '=', digest).executeTakeFirst();
          if (!row) return { outcome: 'not_found' as const };
          return { outcome: 'reused' as const, previous: toRefreshToken(row), grant: await findGrant(trx, row.grant_id) };
        }
        const previous = toRefreshToken(consumed);
        const grant = await findGrant(trx, previous.grantId);
        if (!grant) return { outcome: 'not_found' as const };
        await trx.insertInto('refresh_tokens').values(refreshTokenRow(successor(previous))).execute();
        return { outcome: 'rotated' as const, previous, grant };
      });
    },
  };
}
