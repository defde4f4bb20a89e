import type { Kysely, Selectable, Transaction } from 'kysely';
import { COLUMNS, type Database, type PasswordResetTable } from '../schema.ts';
import type { ApplicationTakenBack, PasswordReset, PasswordResetRepository } from '../repositories/password-resets.ts';
import { withdrawAuthorizations } from './browser.ts';
import { discardLink, issueLink, markLinkMailed, redeemLink } from './emailed-links.ts';

const toReset = (row: Selectable<PasswordResetTable>): PasswordReset => ({
  digest: row.digest,
  userId: row.user_id,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
  mailedAt: row.mailed_at,
});

export function kyselyPasswordResets(db: Kysely<Database>): PasswordResetRepository {
  return {
    issue(reset) {
      return issueLink(db, 'password_resets', reset.userId, { email: reset.email }, (trx) =>
        trx
          .insertInto('password_resets')
          .values({ digest: reset.digest, user_id: reset.userId, created_at: reset.createdAt, expires_at: reset.expiresAt, consumed_at: null, mailed_at: null })
          .execute(),
      );
    },
    markMailed(digest, now) {
      return markLinkMailed(db, 'password_resets', digest, now);
    },
    discard(digest) {
      return discardLink(db, 'password_resets', digest);
    },
    async find(digest) {
      const row = await db.selectFrom('password_resets').select(COLUMNS.password_resets).where('digest', '=', digest).executeTakeFirst();
      return row && toReset(row);
    },
    redeem(digest, passwordHash, now) {
      return redeemLink(db, 'password_resets', digest, now, async (trx, userId) => {
        // The update holds the user's row: whether the address was verified is read as it is once
        // a concurrent change (a verification, an operator's) has committed, not before.
        const updated = await trx
          .updateTable('users')
          .set({ password_hash: passwordHash, updated_at: now })
          .where('id', '=', userId)
          .where('disabled_at', 'is', null)
          .returning('email_verified')
          .executeTakeFirst();
        if (!updated) return undefined;
        // A change of the address asked for with the password replaced here (by whoever knew it)
        // must not move the account away from the person who just proved they read its mail.
        await trx.deleteFrom('email_changes').where('user_id', '=', userId).execute();
        if (updated.email_verified === 1) return { userId, emailWasVerified: true, withdrawn: { consents: [], grants: [], codes: 0 }, applications: [] };
        // The link went to the address, which a change of it would have voided: it is proved now.
        // Until then the account may have been made by someone else with that address, and what
        // they authorized would outlive their sessions: it is withdrawn with them.
        await trx.updateTable('users').set({ email_verified: 1 }).where('id', '=', userId).execute();
        const withdrawn = await withdrawAuthorizations(trx, userId, undefined, now);
        return { userId, emailWasVerified: false, withdrawn, applications: await takeBackApplications(trx, userId, now) };
      });
    },
  };
}

/**
 * Takes back the credentials of every application `userId` owns, and every grant given to it: what
 * the account's maker registered, or was given, before the address was proven — whoever holds a
 * secret, key or refresh token of it may not be its owner. A portal write to the application that
 * meets this one finds it changed (its update time moves) and stores nothing.
 */
async function takeBackApplications(trx: Transaction<Database>, userId: string, now: number): Promise<ApplicationTakenBack[]> {
  const owned = await trx.selectFrom('clients').select(['id', 'jwks']).where('owner_user_id', '=', userId).orderBy('id').execute();
  const takenBack: ApplicationTakenBack[] = [];
  for (const { id, jwks } of owned) {
    // The client's row first: a concurrent addition of a secret or key, which holds it, is waited for.
    await trx.updateTable('clients').set({ jwks: null, updated_at: now }).where('id', '=', id).execute();
    const secrets = await trx.deleteFrom('client_secrets').where('client_id', '=', id).executeTakeFirst();
    const keys = await trx.updateTable('api_keys').set({ revoked_at: now }).where('client_id', '=', id).where('revoked_at', 'is', null).returning('id').execute();
    await trx.deleteFrom('consents').where('client_id', '=', id).execute();
    await trx.deleteFrom('authorization_codes').where('client_id', '=', id).where('consumed_at', 'is', null).execute();
    const grants = await trx.updateTable('grants').set({ revoked_at: now }).where('client_id', '=', id).where('revoked_at', 'is', null).returning(['id', 'user_id']).execute();
    takenBack.push({
      clientId: id,
      secretsDeleted: Number(secrets.numDeletedRows),
      apiKeysRevoked: keys.map((key) => key.id),
      keysRemoved: jwks !== null,
      grants: grants.map((grant) => ({ id: grant.id, userId: grant.user_id })),
    });
  }
  return takenBack;
}
