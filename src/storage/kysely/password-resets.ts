import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type PasswordResetTable } from '../schema.ts';
import type { PasswordReset, PasswordResetRepository } from '../repositories/password-resets.ts';
import { withdrawAuthorizations } from './browser.ts';
import { issueLink, redeemLink } from './emailed-links.ts';

const toReset = (row: Selectable<PasswordResetTable>): PasswordReset => ({
  digest: row.digest,
  userId: row.user_id,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

export function kyselyPasswordResets(db: Kysely<Database>): PasswordResetRepository {
  return {
    issue(reset) {
      return issueLink(db, 'password_resets', reset.userId, undefined, (trx) =>
        trx
          .insertInto('password_resets')
          .values({ digest: reset.digest, user_id: reset.userId, created_at: reset.createdAt, expires_at: reset.expiresAt, consumed_at: null })
          .execute(),
      );
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
        if (updated.email_verified === 1) return { userId, emailWasVerified: true, withdrawn: { consents: [], grants: [], codes: 0 } };
        // The link went to the address, which a change of it would have voided: it is proved now.
        // Until then the account may have been made by someone else with that address, and what
        // they authorized would outlive their sessions: it is withdrawn with them.
        await trx.updateTable('users').set({ email_verified: 1 }).where('id', '=', userId).execute();
        return { userId, emailWasVerified: false, withdrawn: await withdrawAuthorizations(trx, userId, undefined, now) };
      });
    },
  };
}
