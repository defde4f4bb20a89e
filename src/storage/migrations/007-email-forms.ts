import { domainToUnicode } from 'node:url';
import type { Kysely } from 'kysely';

const BATCH = 1000;

/**
 * Emails are stored in Unicode Normalization Form C, their domain in its Unicode form (normalizeEmail
 * in repositories/users.ts; a copy here, as a migration must keep doing what it did when it shipped).
 * Before, they were only trimmed and lower-cased, so an email typed decomposed (e and a combining
 * accent), or sent by a browser with its domain in ASCII (xn--…), was stored so and could no longer
 * be found once sign-in normalizes what is typed: such emails are normalized here. When the
 * normalized form belongs to another account already (two accounts that look the same, which the
 * previous version allowed), the other one is left as it is, for the operator to resolve by its id.
 */
export async function up(db: Kysely<any>): Promise<void> {
  let after = '';
  for (;;) {
    const rows: { id: string; email: string }[] = await db.selectFrom('users').select(['id', 'email']).where('id', '>', after).orderBy('id').limit(BATCH).execute();
    for (const { id, email } of rows) {
      const normalized = normalizeEmail(email);
      if (normalized === email) continue;
      await db
        .updateTable('users')
        .set({ email: normalized })
        .where('id', '=', id)
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('users as taken').select('taken.id').where('taken.email', '=', normalized))))
        .execute();
    }
    if (rows.length < BATCH) return;
    after = rows[rows.length - 1]!.id;
  }
}

function normalizeEmail(email: string): string {
  const folded = email.trim().toLowerCase().normalize('NFC');
  const at = folded.lastIndexOf('@');
  if (at < 0) return folded;
  const domain = domainToUnicode(folded.slice(at + 1));
  return domain === '' ? folded : `${folded.slice(0, at + 1)}${domain}`;
}
