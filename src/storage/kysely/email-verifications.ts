import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type EmailVerificationTable } from '../schema.ts';
import type { EmailVerification, EmailVerificationRepository } from '../repositories/email-verifications.ts';
import { discardLink, issueLink, markLinkMailed, redeemLink } from './emailed-links.ts';

const toVerification = (row: Selectable<EmailVerificationTable>): EmailVerification => ({
  digest: row.digest,
  userId: row.user_id,
  email: row.email,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
  mailedAt: row.mailed_at,
});

export function kyselyEmailVerifications(db: Kysely<Database>): EmailVerificationRepository {
  return {
    issue(link) {
      return issueLink(db, 'email_verifications', link.userId, { email: link.email }, (trx) =>
        trx
          .insertInto('email_verifications')
          .values({ digest: link.digest, user_id: link.userId, email: link.email, created_at: link.createdAt, expires_at: link.expiresAt, consumed_at: null, mailed_at: null })
          .execute(),
      );
    },
    markMailed(digest, now) {
      return markLinkMailed(db, 'email_verifications', digest, now);
    },
    discard(digest) {
      return discardLink(db, 'email_verifications', digest);
    },
    async find(digest) {
      const row = await db.selectFrom('email_verifications').select(COLUMNS.email_verifications).where('digest', '=', digest).executeTakeFirst();
      return row && toVerification(row);
    },
    redeem(digest, now) {
      return redeemLink(db, 'email_verifications', digest, now, async (trx, userId) => {
        // The link proves the address it was sent to, and only that one: an address changed since
        // (the links are then deleted, but a change and a redemption may cross) is not verified.
        const updated = await trx
          .updateTable('users')
          .set({ email_verified: 1, updated_at: now })
          .where('id', '=', userId)
          .where('disabled_at', 'is', null)
          .where('email', '=', (eb) => eb.selectFrom('email_verifications').select('email').where('digest', '=', digest))
          .executeTakeFirst();
        return updated.numUpdatedRows > 0n ? userId : undefined;
      });
    },
  };
}
