import { sql, type Kysely } from 'kysely';
import { COLUMNS, type Database } from '../schema.ts';
import type { ConsentRepository, PendingAuthorizationRepository, SessionRepository } from '../repositories.ts';
import { fromJsonList, toJson } from './json.ts';

export function kyselySessions(db: Kysely<Database>): SessionRepository {
  return {
    async create(session) {
      await db
        .insertInto('sessions')
        .values({ digest: session.digest, user_id: session.userId, auth_time: session.authTime, created_at: session.createdAt, expires_at: session.expiresAt })
        .execute();
    },
    async find(digest) {
      const row = await db.selectFrom('sessions').select(COLUMNS.sessions).where('digest', '=', digest).executeTakeFirst();
      return row && { digest: row.digest, userId: row.user_id, authTime: row.auth_time, createdAt: row.created_at, expiresAt: row.expires_at };
    },
    async delete(digest) {
      await db.deleteFrom('sessions').where('digest', '=', digest).execute();
    },
    async deleteForUser(userId, exceptDigest) {
      let query = db.deleteFrom('sessions').where('user_id', '=', userId);
      if (exceptDigest !== undefined) query = query.where('digest', '<>', exceptDigest);
      const result = await query.executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export function kyselyConsents(db: Kysely<Database>): ConsentRepository {
  const toConsent = (row: { user_id: string; client_id: string; scopes: string; created_at: number; updated_at: number }) => ({
    userId: row.user_id,
    clientId: row.client_id,
    scopes: fromJsonList(row.scopes),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
  return {
    async find(userId, clientId) {
      const row = await db.selectFrom('consents').select(COLUMNS.consents).where('user_id', '=', userId).where('client_id', '=', clientId).executeTakeFirst();
      return row && toConsent(row);
    },
    async save(consent) {
      await db
        .insertInto('consents')
        .values({ user_id: consent.userId, client_id: consent.clientId, scopes: toJson(consent.scopes), created_at: consent.createdAt, updated_at: consent.updatedAt })
        .onConflict((oc) => oc.columns(['user_id', 'client_id']).doUpdateSet({ scopes: toJson(consent.scopes), updated_at: consent.updatedAt }))
        .execute();
    },
    async withdraw(userId, clientId, now) {
      return db.transaction().execute(async (trx) => {
        const deleted = await trx.deleteFrom('consents').where('user_id', '=', userId).where('client_id', '=', clientId).executeTakeFirst();
        // Codes first: a code being exchanged meanwhile holds its row until its grant is stored, so
        // this waits for it, and the grants below are read after — on PostgreSQL (read committed)
        // each statement sees what committed before it began, and the other order would miss that grant.
        const voided = await trx
          .deleteFrom('authorization_codes')
          .where('user_id', '=', userId)
          .where('client_id', '=', clientId)
          .where('consumed_at', 'is', null)
          .executeTakeFirst();
        // The user's grants (a few) are read through the index of users' grants and checked for the
        // client: the one plan made for every user and client intersected that index with the one of
        // clients' grants, and so read every grant of a client that has many (310 ms for 160k).
        // Appending '' hides the column from the clients' index and changes no answer.
        const revoked = await trx
          .updateTable('grants')
          .set({ revoked_at: now })
          .where('user_id', '=', userId)
          .where(sql<boolean>`client_id || '' = ${clientId}`)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        return deleted.numDeletedRows > 0n || revoked.numUpdatedRows > 0n || voided.numDeletedRows > 0n;
      });
    },
    async listForUser(userId) {
      return (await db.selectFrom('consents').select(COLUMNS.consents).where('user_id', '=', userId).orderBy('updated_at', 'desc').execute()).map(toConsent);
    },
  };
}

export function kyselyPendingAuthorizations(db: Kysely<Database>): PendingAuthorizationRepository {
  return {
    async create(pending) {
      await db
        .insertInto('authorization_requests')
        .values({ id: pending.id, client_id: pending.clientId, request: JSON.stringify(pending.request), created_at: pending.createdAt, expires_at: pending.expiresAt })
        .execute();
    },
    async find(id) {
      const row = await db.selectFrom('authorization_requests').select(COLUMNS.authorization_requests).where('id', '=', id).executeTakeFirst();
      return row && { id: row.id, clientId: row.client_id, request: JSON.parse(row.request) as Record<string, unknown>, createdAt: row.created_at, expiresAt: row.expires_at };
    },
    async take(id) {
      const result = await db.deleteFrom('authorization_requests').where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
  };
}
