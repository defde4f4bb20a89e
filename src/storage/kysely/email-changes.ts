import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type EmailChangeTable } from '../schema.ts';
import type { EmailChange, EmailChangeRepository } from '../repositories/email-changes.ts';
import { discardLink, issueLink, markLinkMailed, redeemLink } from './emailed-links.ts';

const toEmailChange = (row: Selectable<EmailChangeTable>): EmailChange => ({
  digest: row.digest,
  userId: row.user_id,
  from: row.from_email,
  to: row.to_email,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
  mailedAt: row.mailed_at,
});

/** Thrown inside a redemption's transaction to undo the link's consumption when its address is another user's. */
const TAKEN = new Error('the address is another user’s');

export function kyselyEmailChanges(db: Kysely<Database>): EmailChangeRepository {
  const takenByAnother = async (userId: string, email: string) =>
    (await db.selectFrom('users').select('id').where('email', '=', email).where('id', '<>', userId).executeTakeFirst()) !== undefined;
  return {
    issue(link, asked) {
      return issueLink(db, 'email_changes', link.userId, { email: link.from, passwordHash: asked.passwordHash }, (trx) =>
        trx
          .insertInto('email_changes')
          .values({
            digest: link.digest,
            user_id: link.userId,
            from_email: link.from,
            to_email: link.to,
            created_at: link.createdAt,
            expires_at: link.expiresAt,
            consumed_at: null,
            mailed_at: null,
          })
          .execute(),
      );
    },
    markMailed(digest, now) {
      return markLinkMailed(db, 'email_changes', digest, now);
    },
    discard(digest) {
      return discardLink(db, 'email_changes', digest);
    },
    async find(digest) {
      const row = await db.selectFrom('email_changes').select(COLUMNS.email_changes).where('digest', '=', digest).executeTakeFirst();
      return row && toEmailChange(row);
    },
    async redeem(digest, now) {
      let attempted: { userId: string; to: string } | undefined;
      try {
        return await redeemLink(db, 'email_changes', digest, now, async (trx, userId) => {
          const link = (await trx.selectFrom('email_changes').select(['from_email', 'to_email']).where('digest', '=', digest).executeTakeFirst())!;
          attempted = { userId, to: link.to_email };
          // Checked before the write: on PostgreSQL a unique violation would abort the transaction.
          // The unique index still settles a race with a sign-up or another change (below).
          if (await trx.selectFrom('users').select('id').where('email', '=', link.to_email).where('id', '<>', userId).executeTakeFirst()) throw TAKEN;
          // The link changes the address it was asked for from, and only that one: an address changed
          // since (the links are then deleted, but a change and a redemption may cross) stays.
          const updated = await trx
            .updateTable('users')
            .set({ email: link.to_email, email_verified: 1, updated_at: now })
            .where('id', '=', userId)
            .where('disabled_at', 'is', null)
            .where('email', '=', link.from_email)
            .executeTakeFirst();
          if (updated.numUpdatedRows === 0n) return undefined;
          // What was mailed to the old address, or asked for from it, proves nothing of the new one
          // (as UserRepository.update deletes them); the link used stays until it expires, so that
          // following it again says it was used.
          await trx.deleteFrom('email_verifications').where('user_id', '=', userId).execute();
          await trx.deleteFrom('password_resets').where('user_id', '=', userId).execute();
          await trx.deleteFrom('email_changes').where('user_id', '=', userId).where('digest', '<>', digest).execute();
          return { userId, from: link.from_email, to: link.to_email };
        });
      } catch (error) {
        if (error === TAKEN) return 'taken';
        if (attempted !== undefined && (await takenByAnother(attempted.userId, attempted.to))) return 'taken';
        throw error;
      }
    },
  };
}
