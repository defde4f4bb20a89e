import type { Transaction } from 'kysely';
import type { ExpectedClient } from '../repositories/clients.ts';
import type { Database } from '../schema.ts';
import { claimClient } from './powers.ts';

/**
 * Deletes what was issued to a client or to a user — refresh tokens, codes, consents and grants —
 * inside the caller's transaction. Explicit rather than ON DELETE CASCADE, which SQLite only
 * honours with a pragma.
 */
export async function deleteIssued(trx: Transaction<Database>, owner: 'client_id' | 'user_id', id: string): Promise<void> {
  const grants = trx.selectFrom('grants').select('id').where(owner, '=', id);
  await trx.deleteFrom('refresh_tokens').where('grant_id', 'in', grants).execute();
  await trx.deleteFrom('authorization_codes').where(owner, '=', id).execute();
  await trx.deleteFrom('consents').where(owner, '=', id).execute();
  await trx.deleteFrom('grants').where(owner, '=', id).execute();
}

/**
 * Deletes a client with everything issued to it, inside the caller's transaction; with `expected`,
 * only while it is as expected. False (deleting nothing) when there is no such client or it is not.
 *
 * The client's row is claimed first (claimClient), so a client is deleted once, and only as it was
 * checked. Taking the row before anything issued to it also keeps two deletions that meet (of the
 * client, of its owner) from locking each other's rows in opposite orders.
 */
export async function deleteClient(trx: Transaction<Database>, id: string, expected?: ExpectedClient): Promise<boolean> {
  if (!(await claimClient(trx, id, expected))) return false;
  await deleteIssued(trx, 'client_id', id);
  await trx.deleteFrom('authorization_requests').where('client_id', '=', id).execute();
  await trx.deleteFrom('client_secrets').where('client_id', '=', id).execute();
  await trx.deleteFrom('api_keys').where('client_id', '=', id).execute();
  const result = await trx.deleteFrom('clients').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}
