import { sql, type ExpressionBuilder, type Kysely, type Transaction } from 'kysely';
import type { Dialect } from '../database.ts';
import { enabledUser, typedLiterals } from './literals.ts';
import { COLUMNS, type Database, type SessionTable } from '../schema.ts';
import type { ConsentRepository, Withdrawal } from '../repositories/consents.ts';
import type { PendingAuthorizationRepository } from '../repositories/pending-authorizations.ts';
import type { EndedSession, Session, SessionRepository } from '../repositories/sessions.ts';
import { insertCodeWhileSession } from './codes.ts';
import { isForeignKeyViolation } from './constraints.ts';
import { fromJsonList, toJson } from './json.ts';

/** How many (session, client) pairs an instance remembers having recorded (see addClient). */
const REMEMBERED_SESSION_CLIENTS = 10_000;

const toSession = (row: SessionTable): Session => ({
  digest: row.digest,
  sid: row.sid,
  userId: row.user_id,
  authTime: row.auth_time,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  address: row.address,
  device: row.device,
  lastUsedAt: row.last_used_at,
});

export function kyselySessions(db: Kysely<Database>, dialect: Dialect): SessionRepository {
  /**
   * Pairs this instance recorded in session_clients: such a row goes only with its session, so while
   * the session lasts it is there, and when the session has ended the code stored next to it is
   * refused anyway. Oldest forgotten first; forgetting costs one more write, never a lost record.
   */
  const recorded = new Set<string>();
  const remember = (key: string) => {
    recorded.add(key);
    if (recorded.size > REMEMBERED_SESSION_CLIENTS) recorded.delete(recorded.values().next().value!);
  };
  return {
    async create(session) {
      // Only for a user who is enabled, in one statement (see enabledUser): a user disabled after the
      // password was checked has had their sessions ended, and one started after that would outlive
      // the disabling.
      const { time, text } = typedLiterals(dialect);
      const user = enabledUser(db, dialect, session.userId).select([
        text(session.digest).as('digest'),
        text(session.sid).as('sid'),
        'users.id as user_id',
        time(session.authTime).as('auth_time'),
        time(session.createdAt).as('created_at'),
        time(session.expiresAt).as('expires_at'),
        text(session.address).as('address'),
        text(session.device).as('device'),
        time(session.lastUsedAt).as('last_used_at'),
      ]);
      try {
        const stored = await db
          .insertInto('sessions')
          .columns(['digest', 'sid', 'user_id', 'auth_time', 'created_at', 'expires_at', 'address', 'device', 'last_used_at'])
          .expression(user)
          .returning('digest')
          .executeTakeFirst();
        return stored !== undefined;
      } catch (error) {
        if (isForeignKeyViolation(error)) return false;
        throw error;
      }
    },
    async find(digest) {
      const row = await db.selectFrom('sessions').select(COLUMNS.sessions).where('digest', '=', digest).executeTakeFirst();
      return row && toSession(row);
    },
    async recordUse(digest, at, staleBefore) {
      await db
        .updateTable('sessions')
        .set({ last_used_at: at })
        .where('digest', '=', digest)
        .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', staleBefore)]))
        .execute();
    },
    async listForUser(userId, now, limit) {
      // Through the index of (user_id, created_at), read backwards; the digest orders those of one second.
      const rows = await db
        .selectFrom('sessions')
        .select(COLUMNS.sessions)
        .where('user_id', '=', userId)
        .where('expires_at', '>', now)
        .orderBy('created_at', 'desc')
        .orderBy('digest', 'desc')
        .limit(limit)
        .execute();
      return rows.map(toSession);
    },
    /**
     * The client first, then the code, each in one statement that writes only while the session
     * exists. A sign-out between the two has read the client (it is told) and voids the code, or
     * finds no code to void because the code then finds no session; one before both leaves nothing
     * to write. PostgreSQL: the client's row checks its key to the session, which takes the lock
     * on the session's row that endSessions waits for; the code takes it explicitly.
     */
    async addClient(digest, clientId, code) {
      const key = `${digest} ${clientId}`;
      if (!recorded.has(key)) {
        try {
          const result = await db
            .insertInto('session_clients')
            .columns(['session_digest', 'client_id'])
            .expression(db.selectFrom('sessions').select(['digest', sql<string>`cast(${clientId} as text)`.as('client_id')]).where('digest', '=', digest))
            .onConflict((oc) => oc.columns(['session_digest', 'client_id']).doNothing())
            .executeTakeFirst();
          // Nothing written: the session has ended, or the pair was there already (then it stays).
          if (result.numInsertedOrUpdatedRows === 0n && !(await db.selectFrom('session_clients').select('client_id').where('session_digest', '=', digest).where('client_id', '=', clientId).executeTakeFirst())) return false;
        } catch (error) {
          // PostgreSQL: the session ended between the read and the key's check (foreign_key_violation).
          if ((error as { code?: unknown } | null)?.code === '23503') return false;
          throw error;
        }
        remember(key);
      } else if (code === undefined) {
        // Tokens without a code (the implicit flow): only while the session lasts.
        return (await db.selectFrom('sessions').select('digest').where('digest', '=', digest).executeTakeFirst()) !== undefined;
      }
      return code === undefined || insertCodeWhileSession(db, dialect, digest, code);
    },
    /**
     * On PostgreSQL the session is locked first, as endSessions locks it: a client recorded through
     * the old digest meanwhile (addClient) waits, then finds it gone and is refused, rather than
     * being left behind on a row this deletes.
     */
    async renew(digest, renewal) {
      return db.transaction().execute(async (trx) => {
        const read = trx.selectFrom('sessions').select(COLUMNS.sessions).where('digest', '=', digest);
        const row = await (dialect === 'postgres' ? read.forUpdate() : read).executeTakeFirst();
        if (!row) return undefined;
        // Signed in now, from where and with what the person signs in again.
        const renewed = {
          digest: renewal.digest,
          sid: row.sid,
          userId: row.user_id,
          authTime: renewal.authTime,
          createdAt: row.created_at,
          expiresAt: renewal.expiresAt,
          address: renewal.address,
          device: renewal.device,
          lastUsedAt: renewal.authTime,
        };
        await trx
          .insertInto('sessions')
          .values({
            digest: renewed.digest,
            sid: renewed.sid,
            user_id: renewed.userId,
            auth_time: renewed.authTime,
            created_at: renewed.createdAt,
            expires_at: renewed.expiresAt,
            address: renewed.address,
            device: renewed.device,
            last_used_at: renewed.lastUsedAt,
          })
          .execute();
        await trx.updateTable('session_clients').set({ session_digest: renewed.digest }).where('session_digest', '=', digest).execute();
        await trx.deleteFrom('sessions').where('digest', '=', digest).execute();
        return renewed;
      });
    },
    async delete(digest) {
      return (await db.transaction().execute((trx) => endSessions(trx, dialect, { digest })))[0];
    },
    async deleteBySid(userId, sid) {
      return (await db.transaction().execute((trx) => endSessions(trx, dialect, { userId, sid })))[0];
    },
    async deleteForUser(userId, exceptDigest) {
      return db.transaction().execute((trx) => endSessions(trx, dialect, { userId, exceptDigest }));
    },
  };
}

/** One session, by its digest or by its user and sid, or a user's (all of them, or all but one). */
type SessionFilter = { digest: string } | { userId: string; sid: string } | { userId: string; exceptDigest?: string | undefined };

const selecting = (filter: SessionFilter) => (eb: ExpressionBuilder<Database, 'sessions'>) =>
  'digest' in filter
    ? eb('sessions.digest', '=', filter.digest)
    : 'sid' in filter
      ? eb.and([eb('sessions.user_id', '=', filter.userId), eb('sessions.sid', '=', filter.sid)])
      : eb.and([eb('sessions.user_id', '=', filter.userId), ...(filter.exceptDigest === undefined ? [] : [eb('sessions.digest', '<>', filter.exceptDigest)])]);

/**
 * Deletes the sessions `which` selects, inside the caller's transaction, and says which ended, with
 * the clients each was answered for (read before the key's cascade deletes them); the codes issued
 * through them and not yet exchanged go with them. On PostgreSQL the sessions are locked first: a
 * client recorded meanwhile (addClient) then waits, and finds its session gone, rather than being
 * deleted unread.
 */
export async function endSessions(trx: Transaction<Database>, dialect: Dialect, which: SessionFilter): Promise<EndedSession[]> {
  const read = trx.selectFrom('sessions').select(['digest', 'sid', 'user_id']).where(selecting(which));
  const sessions = await (dialect === 'postgres' ? read.forUpdate() : read).execute();
  if (sessions.length === 0) return [];
  const clients = await trx
    .selectFrom('session_clients')
    .innerJoin('sessions', 'sessions.digest', 'session_clients.session_digest')
    .select(['session_clients.session_digest', 'session_clients.client_id'])
    .where(selecting(which))
    .execute();
  // The clients are sent the Logout Token for these sids once this commits (§2.5): a code issued
  // through one of these sessions and not yet exchanged would give them an ID token and tokens for
  // a session they were told has ended, so it is voided (node-oidc-provider refuses a code whose
  // session is gone). A code being exchanged meanwhile holds its row until its grant is stored
  // (codes.ts), so on PostgreSQL this waits for it and then leaves it: the grant then exists before
  // the Logout Token is sent. Read through the sessions, the statement is the same for any number.
  await trx
    .deleteFrom('authorization_codes')
    .where('sid', 'in', trx.selectFrom('sessions').select('sid').where(selecting(which)))
    .where('consumed_at', 'is', null)
    .execute();
  await trx.deleteFrom('sessions').where(selecting(which)).execute();
  return sessions.map((session) => ({
    sid: session.sid,
    userId: session.user_id,
    clientIds: clients.filter((client) => client.session_digest === session.digest).map((client) => client.client_id),
  }));
}

/**
 * Withdraws what `userId` authorized `clientId` to do — or every client, without one — inside the
 * caller's transaction: deletes the consent, the codes issued and not yet exchanged, and revokes the
 * grants (so their refresh tokens stop working, and Gatehouse refuses their access tokens).
 */
export async function withdrawAuthorizations(trx: Transaction<Database>, userId: string, clientId: string | undefined, now: number): Promise<Withdrawal> {
  let consents = trx.deleteFrom('consents').where('user_id', '=', userId);
  if (clientId !== undefined) consents = consents.where('client_id', '=', clientId);
  const deleted = await consents.returning('client_id').execute();
  // Codes first: a code being exchanged meanwhile holds its row until its grant is stored, so this
  // waits for it, and the grants below are read after — on PostgreSQL (read committed) each
  // statement sees what committed before it began, and the other order would miss that grant.
  let codes = trx.deleteFrom('authorization_codes').where('user_id', '=', userId);
  if (clientId !== undefined) codes = codes.where('client_id', '=', clientId);
  const voided = await codes.where('consumed_at', 'is', null).executeTakeFirst();
  // The user's grants (a few) are read through the index of users' grants and checked for the
  // client: the one plan made for every user and client intersected that index with the one of
  // clients' grants, and so read every grant of a client that has many (310 ms for 160k).
  // Appending '' hides the column from the clients' index and changes no answer.
  let grants = trx.updateTable('grants').set({ revoked_at: now }).where('user_id', '=', userId);
  if (clientId !== undefined) grants = grants.where(sql<boolean>`client_id || '' = ${clientId}`);
  const revoked = await grants.where('revoked_at', 'is', null).returning(['id', 'client_id']).execute();
  return {
    consents: deleted.map((row) => row.client_id),
    grants: revoked.map((row) => ({ id: row.id, clientId: row.client_id })),
    codes: Number(voided.numDeletedRows),
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
      const withdrawn = await db.transaction().execute((trx) => withdrawAuthorizations(trx, userId, clientId, now));
      return withdrawn.consents.length > 0 || withdrawn.grants.length > 0 || withdrawn.codes > 0;
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
