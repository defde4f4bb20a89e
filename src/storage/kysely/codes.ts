import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type AuthorizationCodeTable, type Database } from '../schema.ts';
import type { AuthorizationCode, AuthorizationCodeRepository } from '../repositories.ts';
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

/** Stores a new code, on its own or inside the caller's transaction (see SessionRepository.addClient). */
export async function insertCode(db: Kysely<Database>, code: AuthorizationCode): Promise<void> {
  await db
    .insertInto('authorization_codes')
    .values({
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
    })
    .execute();
}

export function kyselyCodes(db: Kysely<Database>): AuthorizationCodeRepository {
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
          .returning(COLUMNS.authorization_codes)
          .executeTakeFirst();
        if (row) await insertGrant(trx, grant);
        return row;
      });
      if (consumed) return { outcome: 'consumed', code: toCode(consumed) };
      const row = await db.selectFrom('authorization_codes').select(COLUMNS.authorization_codes).where('digest', '=', digest).executeTakeFirst();
      return row ? { outcome: 'reused', code: toCode(row) } : { outcome: 'not_found' };
    },
  };
}
