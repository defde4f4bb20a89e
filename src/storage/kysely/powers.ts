import type { Kysely, Transaction } from 'kysely';
import type { ExpectedClient } from '../repositories/clients.ts';
import type { Database } from '../schema.ts';
import { flag, toJson } from './json.ts';

/**
 * A client as its row stores it when it is as expected (the same admin flag, the same scopes in the
 * same order, the same impersonation and resource-server flags, and the owner where one is
 * expected): what a conditional write on a client, or on one of its credentials, compares in the
 * statement that makes it (ExpectedClient). Scopes are stored as toJson writes them, so the same
 * list is the same text in both dialects. An owner left out is not compared (Kysely drops an
 * undefined member); a null one is compared with IS NULL.
 */
export const storedState = (expected: ExpectedClient) => ({
  is_admin: flag(expected.isAdmin),
  scopes: toJson(expected.scopes),
  allow_impersonation: flag(expected.allowImpersonation),
  is_resource_server: flag(expected.isResourceServer),
  owner_user_id: expected.owner,
});

/**
 * Claims the client's row inside the caller's transaction, with a write that changes nothing, if it
 * is there (and, with `expected`, as expected); false otherwise. On PostgreSQL (read committed) a
 * concurrent change or deletion of the client waits for the transaction, and one that committed
 * first is seen (the row is read again), so what the transaction writes next is written to the
 * client as it was checked. A write, not SELECT … FOR UPDATE, which SQLite lacks; and it leaves the
 * client's key alone, so rows issued to the client meanwhile (whose foreign key shares its row) are
 * not held up.
 */
export async function claimClient(trx: Transaction<Database>, id: string, expected?: ExpectedClient): Promise<boolean> {
  let claim = trx
    .updateTable('clients')
    .set((eb) => ({ updated_at: eb.ref('updated_at') }))
    .where('id', '=', id);
  if (expected) claim = claim.where((eb) => eb.and(storedState(expected)));
  return (await claim.executeTakeFirst()).numUpdatedRows > 0n;
}

/**
 * Stores a credential of client `clientId` with `insert`: at once without `expected`; with it, only
 * while the client is as expected (claimClient, in one transaction). With `serialized`, the client's
 * row is claimed even without `expected`, so that concurrent insertions for it take turns (one that
 * counts the client's credentials first reads those before it). False when it was not stored.
 */
export async function insertForClient(
  db: Kysely<Database>,
  clientId: string,
  expected: ExpectedClient | undefined,
  insert: (into: Kysely<Database>) => Promise<unknown>,
  serialized = false,
): Promise<boolean> {
  if (!expected && !serialized) {
    await insert(db);
    return true;
  }
  return db.transaction().execute(async (trx) => {
    if (!(await claimClient(trx, clientId, expected))) return false;
    await insert(trx);
    return true;
  });
}
