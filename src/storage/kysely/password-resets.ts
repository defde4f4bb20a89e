import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type PasswordResetTable } from '../schema.ts';
import type { PasswordReset, PasswordResetRepository } from '../repositories.ts';

const toReset = (row: Selectable<PasswordResetTable>): PasswordReset => ({
  digest: row.digest,
  userId: row.user_id,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

/** Thrown inside a redemption's transaction to undo the consumption when the user cannot have their password reset. */
const NOT_REDEEMED = new Error('the password reset was not redeemed');

export function kyselyPasswordResets(db: Kysely<Database>): PasswordResetRepository {
  return {
    async issue(reset) {
      return db.transaction().execute(async (trx) => {
        // Claimed by a write that changes nothing, as a user's deletion does: two links asked for at
        // once take turns, so the second deletes the first and exactly one stays live.
        const claim = await trx
          .updateTable('users')
          .set((eb) => ({ updated_at: eb.ref('updated_at') }))
          .where('id', '=', reset.userId)
          .executeTakeFirst();
        if (claim.numUpdatedRows === 0n) return false;
        await trx.deleteFrom('password_resets').where('user_id', '=', reset.userId).execute();
        await trx
          .insertInto('password_resets')
          .values({ digest: reset.digest, user_id: reset.userId, created_at: reset.createdAt, expires_at: reset.expiresAt, consumed_at: null })
          .execute();
        return true;
      });
    },
    async find(digest) {
      const row = await db.selectFrom('password_resets').select(COLUMNS.password_resets).where('digest', '=', digest).executeTakeFirst();
      return row && toReset(row);
    },
    async redeem(digest, passwordHash, now) {
      try {
        return await db.transaction().execute(async (trx) => {
          const consumed = await trx
            .updateTable('password_resets')
            .set({ consumed_at: now })
            .where('digest', '=', digest)
            .where('consumed_at', 'is', null)
            .where('expires_at', '>', now)
            .returning('user_id')
            .executeTakeFirst();
          if (!consumed) return undefined;
          const updated = await trx
            .updateTable('users')
            .set({ password_hash: passwordHash, updated_at: now })
            .where('id', '=', consumed.user_id)
            .where('disabled_at', 'is', null)
            .executeTakeFirst();
          if (updated.numUpdatedRows === 0n) throw NOT_REDEEMED;
          return consumed.user_id;
        });
      } catch (error) {
        if (error === NOT_REDEEMED) return undefined;
        throw error;
      }
    },
  };
}
