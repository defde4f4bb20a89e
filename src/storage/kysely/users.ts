import type { Kysely, Selectable } from 'kysely';
import type { Dialect } from '../database.ts';
import { endSessions } from './browser.ts';
import { deleteClient, deleteIssued } from './deletion.ts';
import { COLUMNS, type Database, type UserTable } from '../schema.ts';
import { EmailTakenError, normalizeEmail, type User, type UserRepository } from '../repositories/users.ts';
import { flag } from './json.ts';
import { onePage } from './pages.ts';

export const toUser = (row: Selectable<UserTable>): User => ({
  id: row.id,
  email: row.email,
  name: row.name,
  passwordHash: row.password_hash,
  emailVerified: row.email_verified === 1,
  disabledAt: row.disabled_at,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
});

export function kyselyUsers(db: Kysely<Database>, dialect: Dialect): UserRepository {
  const findById = async (id: string) => {
    const row = await db.selectFrom('users').select(COLUMNS.users).where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  };
  return {
    async create(user, now) {
      const email = normalizeEmail(user.email);
      const taken = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
      if (taken) throw new EmailTakenError(`a user with the email ${email} exists already`);
      try {
        await db
          .insertInto('users')
          .values({
            id: user.id,
            email,
            name: user.name,
            password_hash: user.passwordHash,
            email_verified: flag(user.emailVerified),
            disabled_at: user.disabledAt,
            created_at: now,
            updated_at: now,
          })
          .execute();
      } catch (error) {
        // The unique index settles a race between two sign-ups with one email.
        if (await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst()) {
          throw new EmailTakenError(`a user with the email ${email} exists already`);
        }
        throw error;
      }
      return (await findById(user.id))!;
    },
    findById,
    async findByEmail(email) {
      const row = await db.selectFrom('users').select(COLUMNS.users).where('email', '=', normalizeEmail(email)).executeTakeFirst();
      return row && toUser(row);
    },
    async list(page, filter = {}) {
      let query = db.selectFrom('users').select(COLUMNS.users);
      if (filter.email !== undefined) query = query.where('email', '=', normalizeEmail(filter.email));
      return (await onePage(query.orderBy('created_at').orderBy('id'), page).execute()).map(toUser);
    },
    async update(id, changes, now, expected) {
      const email = changes.email === undefined ? undefined : normalizeEmail(changes.email);
      const takenByAnother = async () =>
        email !== undefined && (await db.selectFrom('users').select('id').where('email', '=', email).where('id', '<>', id).executeTakeFirst()) !== undefined;
      if (await takenByAnother()) throw new EmailTakenError(`a user with the email ${email} exists already`);
      try {
        const updated = await db.transaction().execute(async (trx) => {
          let query = trx
            .updateTable('users')
            .set({
              ...(changes.name !== undefined ? { name: changes.name } : {}),
              ...(email !== undefined ? { email } : {}),
              ...(changes.emailVerified !== undefined ? { email_verified: flag(changes.emailVerified) } : {}),
              updated_at: now,
            })
            .where('id', '=', id);
          if (expected) query = query.where('email', '=', expected.email);
          if (expected?.passwordHash !== undefined) query = query.where('password_hash', '=', expected.passwordHash).where('disabled_at', 'is', null);
          if ((await query.executeTakeFirst()).numUpdatedRows === 0n) return false;
          if (email !== undefined) {
            // A verification link names the address it was sent to: once the user has another, the
            // links sent to the old one prove nothing (the redemption checks the address as well).
            await trx.deleteFrom('email_verifications').where('user_id', '=', id).where('email', '<>', email).execute();
            // A password reset link went to the old address, which may be why it was changed (a
            // mailbox lost, or someone else's now): whoever reads it must not set the password.
            await trx.deleteFrom('password_resets').where('user_id', '=', id).execute();
            // An email change link works only from the address it was asked from (and whoever
            // asked for it may be why the address was changed).
            await trx.deleteFrom('email_changes').where('user_id', '=', id).execute();
          }
          return true;
        });
        if (!updated) return undefined;
      } catch (error) {
        // The unique index settles a race between two changes (or a change and a sign-up) to one email.
        if (await takenByAnother()) throw new EmailTakenError(`a user with the email ${email} exists already`);
        throw error;
      }
      return findById(id);
    },
    async setDisabled(id, disabledAt, now) {
      return db.transaction().execute(async (trx) => {
        const result = await trx.updateTable('users').set({ disabled_at: disabledAt, updated_at: now }).where('id', '=', id).executeTakeFirst();
        if (result.numUpdatedRows === 0n || disabledAt === null) return result.numUpdatedRows > 0n;
        // The user's row is held, as a link's issue holds it (and a link is issued only to a user
        // not disabled): one issued meanwhile is deleted here, or refused after.
        await trx.deleteFrom('password_resets').where('user_id', '=', id).execute();
        await trx.deleteFrom('email_verifications').where('user_id', '=', id).execute();
        await trx.deleteFrom('email_changes').where('user_id', '=', id).execute();
        return true;
      });
    },
    async setPasswordHash(id, passwordHash, now, expected) {
      return db.transaction().execute(async (trx) => {
        let update = trx.updateTable('users').set({ password_hash: passwordHash, updated_at: now }).where('id', '=', id);
        if (expected !== undefined) update = update.where('password_hash', '=', expected);
        const result = await update.executeTakeFirst();
        if (result.numUpdatedRows === 0n) return false;
        // A "forgot your password?" link asked for before the password was set (by its user on the
        // account page, or by an operator) would otherwise undo the change, in the hands of whoever
        // reads the mail. The user's row is held, as a link's issue holds it: one issued meanwhile
        // is deleted here, or issued after the change and left.
        await trx.deleteFrom('password_resets').where('user_id', '=', id).execute();
        // So is a change of the address asked for with the old password: whoever knew that password
        // must not move the account to their own address after its owner replaced it. One being
        // issued meanwhile is deleted here, or refused after (it is issued only on that password).
        await trx.deleteFrom('email_changes').where('user_id', '=', id).execute();
        return true;
      });
    },
    async rehashPassword(id, previous, next) {
      const result = await db.updateTable('users').set({ password_hash: next }).where('id', '=', id).where('password_hash', '=', previous).executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
    async delete(id, confirmed) {
      return db.transaction().execute(async (trx) => {
        // Claimed by a write that changes nothing, as a client is (deletion.ts): a concurrent deletion
        // of the user waits for this one and then finds no user, so of two, one deletes. A concurrent
        // password change or disabling waits too, or is waited for, and is then seen by the claim.
        let claim = trx
          .updateTable('users')
          .set((eb) => ({ updated_at: eb.ref('updated_at') }))
          .where('id', '=', id);
        if (confirmed) claim = claim.where('password_hash', '=', confirmed.passwordHash).where('disabled_at', 'is', null);
        const claimed = await claim.executeTakeFirst();
        if (claimed.numUpdatedRows === 0n) return undefined;
        // Applications registered in the developer portal belong to their developer and go with them.
        const owned = await trx.selectFrom('clients').select('id').where('owner_user_id', '=', id).orderBy('id').execute();
        for (const client of owned) await deleteClient(trx, client.id);
        await deleteIssued(trx, 'user_id', id);
        const sessions = await endSessions(trx, dialect, { userId: id });
        await trx.deleteFrom('users').where('id', '=', id).execute();
        return { clientIds: owned.map((client) => client.id), sessions };
      });
    },
  };
}
