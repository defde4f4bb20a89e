import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type ApiKeyTable, type Database } from '../schema.ts';
import { TooManyApiKeysError, type ApiKey, type ApiKeyRepository } from '../repositories/api-keys.ts';
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
    async create(key, expected, limit) {
      const insert = async (into: Kysely<Database>) => {
        if (limit !== undefined) {
          const held = await into
            .selectFrom('api_keys')
            .select((eb) => eb.fn.countAll().as('count'))
            .where('client_id', '=', key.clientId)
            .where('revoked_at', 'is', null)
            .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', key.createdAt)]))
            .executeTakeFirstOrThrow();
          if (Number(held.count) >= limit) throw new TooManyApiKeysError(`the client ${key.clientId} holds ${limit} live API keys already`);
        }
        await into
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
      };
      // A limit is counted after the claim of the client's row, which concurrent additions wait for.
      return insertForClient(db, key.clientId, expected, insert, limit !== undefined);
    },
    async findByDigest(digest) {
      const row = await db.selectFrom('api_keys').select(COLUMNS.api_keys).where('digest', '=', digest).executeTakeFirst();
      return row && toApiKey(row);
    },
    async findById(id) {
      const row = await db.selectFrom('api_keys').select(COLUMNS.api_keys).where('id', '=', id).executeTakeFirst();
      return row && toApiKey(row);
    },
    async listForClient(clientId, page) {
      let query = db.selectFrom('api_keys').select(COLUMNS.api_keys).where('client_id', '=', clientId);
      if (page?.after !== undefined) {
        // Older, or as old with a greater id: the order of the index (client_id, created_at desc, id),
        // as for grants (kyselyGrants.list). The first condition bounds the read of the index.
        const { createdAt, id } = page.after;
        query = query.where('created_at', '<=', createdAt).where((eb) => eb.or([eb('created_at', '<', createdAt), eb('id', '>', id)]));
      }
      if (page !== undefined) query = query.limit(page.limit);
      return (await query.orderBy('created_at', 'desc').orderBy('id').execute()).map(toApiKey);
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
