import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type ApiKeyTable, type Database } from '../schema.ts';
import type { ApiKey, ApiKeyRepository } from '../repositories/api-keys.ts';
import { fromJsonList, toJson } from './json.ts';
import { insertForClient, storedState } from './powers.ts';

const toApiKey = (row: Selectable<ApiKeyTable>): ApiKey => ({
  id: row.id,
  clientId: row.client_id,
  name: row.name,
  digest: row.digest,
  prefix: row.prefix,
  scopes: fromJsonList(row.scopes),
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  revokedAt: row.revoked_at,
  lastUsedAt: row.last_used_at,
});

export function kyselyApiKeys(db: Kysely<Database>): ApiKeyRepository {
  return {
    async create(key, expected) {
      const insert = (into: Kysely<Database>) =>
        into
          .insertInto('api_keys')
          .values({
            id: key.id,
            client_id: key.clientId,
            name: key.name,
            digest: key.digest,
            prefix: key.prefix,
            scopes: toJson(key.scopes),
            created_at: key.createdAt,
            expires_at: key.expiresAt,
            revoked_at: key.revokedAt,
            last_used_at: key.lastUsedAt,
          })
          .execute();
      return insertForClient(db, key.clientId, expected, insert);
    },
    async findByDigest(digest) {
      const row = await db.selectFrom('api_keys').select(COLUMNS.api_keys).where('digest', '=', digest).executeTakeFirst();
      return row && toApiKey(row);
    },
    async findById(id) {
      const row = await db.selectFrom('api_keys').select(COLUMNS.api_keys).where('id', '=', id).executeTakeFirst();
      return row && toApiKey(row);
    },
    async listForClient(clientId) {
      return (await db.selectFrom('api_keys').select(COLUMNS.api_keys).where('client_id', '=', clientId).orderBy('created_at', 'desc').orderBy('id').execute()).map(toApiKey);
    },
    async revoke(clientId, id, now, expected) {
      let revocation = db.updateTable('api_keys').set({ revoked_at: now }).where('client_id', '=', clientId).where('id', '=', id).where('revoked_at', 'is', null);
      if (expected) revocation = revocation.where(({ exists, selectFrom }) => exists(selectFrom('clients').select('id').where('id', '=', clientId).where((eb) => eb.and(storedState(expected)))));
      const result = await revocation.executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
    async recordUse(uses) {
      for (const [id, at] of uses) {
        await db
          .updateTable('api_keys')
          .set({ last_used_at: at })
          .where('id', '=', id)
          .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', at)]))
          .execute();
      }
    },
  };
}
