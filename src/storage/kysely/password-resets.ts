import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type PasswordResetTable } from '../schema.ts';
import type { PasswordReset, PasswordResetRepository } from '../repositories/password-resets.ts';
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
        const updated = await trx
          .updateTable('users')
          .set({ password_hash: passwordHash, updated_at: now })
          .where('id', '=', userId)
          .where('disabled_at', 'is', null)
          .executeTakeFirst();
        return updated.numUpdatedRows > 0n;
      });
    },
  };
}
