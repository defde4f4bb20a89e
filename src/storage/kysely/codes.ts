import { CompiledQuery, type Insertable, type Kysely, type Selectable } from 'kysely';
import type { Dialect } from '../database.ts';
import { COLUMNS, type AuthorizationCodeTable, type Database } from '../schema.ts';
import type { AuthorizationCode, AuthorizationCodeRepository } from '../repositories/codes.ts';
import { insertGrant } from './grants.ts';
import { fromJsonList, toJson } from './json.ts';

const toCode = (row: Selectable<AuthorizationCodeTable>): AuthorizationCode => ({
  digest: row.digest,
  clientId: row.client_id,
  userId: row.user_id,
  redirectUri: row.redirect_uri,
  scopes: fromJsonList(row.scopes),
  codeChallenge: row.code_challenge,
  codeChallengeMethod: row.code_challenge_method,
  nonce: row.nonce,
  authTime: row.auth_time,
  ...(row.sid !== null && { sid: row.sid }),
  redirectUriExplicit: row.redirect_uri_explicit === 1,
  grantId: row.grant_id,
  accessTokenJti: row.access_token_jti,
  accessTokenExpiresAt: row.access_token_expires_at,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

/** A code's row as stored. */
function codeRow(code: AuthorizationCode): Insertable<AuthorizationCodeTable> {
  return {
    digest: code.digest,
    client_id: code.clientId,
    user_id: code.userId,
    redirect_uri: code.redirectUri,
    scopes: toJson(code.scopes),
    code_challenge: code.codeChallenge,
    code_challenge_method: code.codeChallengeMethod,
    nonce: code.nonce,
    auth_time: code.authTime,
    sid: code.sid ?? null,
    redirect_uri_explicit: code.redirectUriExplicit ? 1 : 0,
    grant_id: code.grantId,
    access_token_jti: code.accessTokenJti,
    access_token_expires_at: code.accessTokenExpiresAt,
    created_at: code.createdAt,
    expires_at: code.expiresAt,
    consumed_at: code.consumedAt,
  };
}

async function insertCode(db: Kysely<Database>, code: AuthorizationCode): Promise<void> {
  await db.insertInto('authorization_codes').values(codeRow(code)).execute();
}

/** A code's columns, and those that hold numbers. */
const CODE_COLUMNS = COLUMNS.authorization_codes;
const NUMERIC_CODE_COLUMNS = new Set(['auth_time', 'redirect_uri_explicit', 'access_token_expires_at', 'created_at', 'expires_at', 'consumed_at']);

/**
 * The statement of insertCodeWhileSession, written once per dialect: the values selected typed,
 * since an `insert … select` has no column to give its parameters their types, and the session's
 * digest the last parameter.
 */
const insertWhileSession = (dialect: Dialect): string => {
  const parameter = (n: number) => (dialect === 'postgres' ? `$${n}` : '?');
  const values = CODE_COLUMNS.map((column, i) => `cast(${parameter(i + 1)} as ${NUMERIC_CODE_COLUMNS.has(column) ? 'bigint' : 'text'})`);
  return (
    `insert into authorization_codes (${CODE_COLUMNS.map((column) => `"${column}"`).join(', ')}) ` +
    `select ${values.join(', ')} from sessions where digest = ${parameter(CODE_COLUMNS.length + 1)}${dialect === 'postgres' ? ' for key share' : ''}`
  );
};
const INSERT_WHILE_SESSION = { sqlite: insertWhileSession('sqlite'), postgres: insertWhileSession('postgres') };

/**
 * Stores a new code only while the browser session `sessionDigest` exists, in one statement, and
 * says whether it did. On PostgreSQL the session's row is held (a key-share lock, which conflicts with
 * no other write to it) until the code is stored, so a sign-out that locks the row (endSessions)
 * either comes after and voids the code, or came first and leaves no session to store it under. On
 * SQLite each statement holds the one writer's lock. Compiled once: on every authorization with a
 * session, assembling it anew cost more than SQLite spends running it.
 */
export async function insertCodeWhileSession(db: Kysely<Database>, dialect: Dialect, sessionDigest: string, code: AuthorizationCode): Promise<boolean> {
  const row = codeRow(code);
  const result = await db.executeQuery(CompiledQuery.raw(INSERT_WHILE_SESSION[dialect], [...CODE_COLUMNS.map((column) => row[column]), sessionDigest]));
  return (result.numAffectedRows ?? 0n) > 0n;
}

export function kyselyCodes(db: Kysely<Database>, dialect: Dialect): AuthorizationCodeRepository {
  return {
    async insert(code) {
      await insertCode(db, code);
    },
    async find(digest) {
      const row = await db.selectFrom('authorization_codes').select(COLUMNS.authorization_codes).where('digest', '=', digest).executeTakeFirst();
      return row && toCode(row);
    },
    async consume(digest, { grant, accessTokenJti, accessTokenExpiresAt }, now) {
      // One transaction: a concurrent caller that loses the race reads the code only once the grant
      // it names is stored, so revoking that grant always finds it.
      const consumed = await db.transaction().execute(async (trx) => {
        const row = await trx
          .updateTable('authorization_codes')
          .set({ consumed_at: now, grant_id: grant.id, access_token_jti: accessTokenJti, access_token_expires_at: accessTokenExpiresAt })
          .where('digest', '=', digest)
          .where('consumed_at', 'is', null)
          // Only while its user is enabled: one disabled since the exchange read them (an operator,
          // another instance) gets no grant. On PostgreSQL the user's row is held, so a disabling
          // under way is waited for and its outcome read.
          .where(({ exists, selectFrom }) => {
            const user = selectFrom('users').select('users.id').whereRef('users.id', '=', 'authorization_codes.user_id').where('users.disabled_at', 'is', null);
            return exists(dialect === 'postgres' ? user.forShare() : user);
          })
          .returning(COLUMNS.authorization_codes)
          .executeTakeFirst();
        if (row) await insertGrant(trx, grant);
        return row;
      });
      if (consumed) return { outcome: 'consumed', code: toCode(consumed) };
      const row = await db.selectFrom('authorization_codes').select(COLUMNS.authorization_codes).where('digest', '=', digest).executeTakeFirst();
      // Left unconsumed: its user is disabled or gone, and the code is worth nothing now.
      if (!row || row.consumed_at === null) return { outcome: 'not_found' };
      return { outcome: 'reused', code: toCode(row) };
    },
  };
}
