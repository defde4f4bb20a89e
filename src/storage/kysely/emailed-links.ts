import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.ts';

/**
 * What the tables of single-use links sent by email (password_resets, email_verifications,
 * email_changes) share:
 * a link is stored as its token's digest, with its user, expiry and use; a new one of a user is
 * stored beside their earlier ones and replaces them only once its mail was accepted (a mail that
 * fails takes its link away, and leaves the earlier ones working), and redeeming one spends it in
 * the transaction that changes the user.
 */
type LinkTable = 'password_resets' | 'email_verifications' | 'email_changes';

/** Thrown inside a redemption's transaction to undo the link's consumption when its user cannot be changed. */
const NOT_REDEEMED = new Error('the link was not redeemed');

/**
 * What a link is issued on: the user's address it was asked from, or is mailed to (a change of the
 * address deletes the links of the old one, so one issued after it must not go there), and the
 * password hash it was asked with (a change of the password deletes the links asked for with the
 * old one, so one issued after it must not be either).
 */
export interface LinkCondition {
  email?: string;
  passwordHash?: string;
}

/**
 * Holds the user's row by a write that changes nothing, as a user's deletion does: an issue waits
 * for a disabling or a change of the address or the password in progress. Only while the user is
 * not disabled (disabling deletes their links: one issued after would outlive it), and only while
 * what `expected` names is still the user's (see LinkCondition). False when there is no such user.
 */
async function claimUser(trx: Transaction<Database>, userId: string, expected: LinkCondition): Promise<boolean> {
  let claim = trx
    .updateTable('users')
    .set((eb) => ({ updated_at: eb.ref('updated_at') }))
    .where('id', '=', userId)
    .where('disabled_at', 'is', null);
  if (expected.email !== undefined) claim = claim.where('email', '=', expected.email);
  if (expected.passwordHash !== undefined) claim = claim.where('password_hash', '=', expected.passwordHash);
  return (await claim.executeTakeFirst()).numUpdatedRows > 0n;
}

/**
 * Stores a link of `userId` through `insert`, beside their earlier links in `table`: those keep
 * working until the new one's mail is accepted (markLinkMailed). False, storing nothing, when
 * the user is gone, disabled or no longer as `expected` (see claimUser).
 */
export function issueLink(
  db: Kysely<Database>,
  table: LinkTable,
  userId: string,
  expected: LinkCondition,
  insert: (trx: Transaction<Database>) => Promise<unknown>,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (!(await claimUser(trx, userId, expected))) return false;
    // Null mailed_at: being sent, it replaces nothing yet (markLinkMailed).
    await insert(trx);
    return true;
  });
}

/**
 * Marks the link `digest` of `table` mailed at `now` and deletes every other link of its user that
 * was mailed, used or not: its mail was accepted last, so it is the one that works now. Links still
 * being sent stay, each replacing this one in turn when its mail is accepted, or deleted when not
 * (discardLink): of links asked for at once, the one whose mail was accepted last is left. The
 * user's row is held first, as every other write to a user's links holds it. Nothing when the link
 * is gone (the user was disabled or deleted, or their password or address changed, meanwhile).
 */
export function markLinkMailed(db: Kysely<Database>, table: LinkTable, digest: string, now: number): Promise<void> {
  return db.transaction().execute(async (trx) => {
    // A link's user never changes: read without a lock, it names the row to hold first.
    const link = await trx.selectFrom(table as 'password_resets').select('user_id').where('digest', '=', digest).executeTakeFirst();
    if (!link) return;
    await trx
      .updateTable('users')
      .set((eb) => ({ updated_at: eb.ref('updated_at') }))
      .where('id', '=', link.user_id)
      .execute();
    const marked = await trx.updateTable(table as 'password_resets').set({ mailed_at: now }).where('digest', '=', digest).executeTakeFirst();
    if (marked.numUpdatedRows === 0n) return;
    await trx
      .deleteFrom(table as 'password_resets')
      .where('user_id', '=', link.user_id)
      .where('mailed_at', 'is not', null)
      .where('digest', '<>', digest)
      .execute();
  });
}

/** Deletes the link `digest` of `table`: its mail was not sent, so nobody can use it. */
export async function discardLink(db: Kysely<Database>, table: LinkTable, digest: string): Promise<void> {
  await db.deleteFrom(table as 'password_resets').where('digest', '=', digest).execute();
}

/**
 * Spends the link `digest` of `table` and applies it to its user through `apply`, in one
 * transaction: only while the link is unused and unexpired at `now` (one conditional `UPDATE … WHERE
 * consumed_at IS NULL`, so of concurrent redemptions exactly one wins) and `apply` changed the user.
 * What `apply` answered; undefined, with nothing changed, when it answered undefined or the link
 * could not be spent.
 *
 * The user's row is held before the link's, the order in which an issue, a link marked mailed, a
 * disabling, a deletion and a change of the password or the address take them: taken the other way
 * round, a redemption meeting one of those would deadlock with it on PostgreSQL. A link deleted while the redemption
 * waited for the user is then not found.
 */
export async function redeemLink<T>(
  db: Kysely<Database>,
  table: LinkTable,
  digest: string,
  now: number,
  apply: (trx: Transaction<Database>, userId: string) => Promise<T | undefined>,
): Promise<T | undefined> {
  try {
    return await db.transaction().execute(async (trx) => {
      // A link's user never changes: read without a lock, it names the row to hold first.
      const link = await trx.selectFrom(table as 'password_resets').select('user_id').where('digest', '=', digest).executeTakeFirst();
      if (!link) return undefined;
      const held = await trx
        .updateTable('users')
        .set((eb) => ({ updated_at: eb.ref('updated_at') }))
        .where('id', '=', link.user_id)
        .executeTakeFirst();
      if (held.numUpdatedRows === 0n) return undefined;
      const consumed = await trx
        .updateTable(table as 'password_resets')
        .set({ consumed_at: now })
        .where('digest', '=', digest)
        .where('consumed_at', 'is', null)
        .where('expires_at', '>', now)
        .where('user_id', '=', link.user_id)
        .returning('user_id')
        .executeTakeFirst();
      if (!consumed) return undefined;
      const applied = await apply(trx, consumed.user_id);
      if (applied === undefined) throw NOT_REDEEMED;
      return applied;
    });
  } catch (error) {
    if (error === NOT_REDEEMED) return undefined;
    throw error;
  }
}
