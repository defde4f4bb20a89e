import type { Kysely, Selectable } from 'kysely';
import type { Database, SigningKeyTable } from '../schema.ts';
import type { KeyState, KeyUse, SigningKeyRecord, SigningKeyRepository } from '../repositories.ts';

const toKey = (row: Selectable<SigningKeyTable>): SigningKeyRecord => ({
  kid: row.kid,
  use: row.use as KeyUse,
  alg: row.alg,
  state: row.state as KeyState,
  publicJwk: row.public_jwk,
  privateJwk: row.private_jwk,
  createdAt: row.created_at,
  activatedAt: row.activated_at,
  retiredAt: row.retired_at,
  expiresAt: row.expires_at,
});

const toRow = (key: SigningKeyRecord): SigningKeyTable => ({
  kid: key.kid,
  use: key.use,
  alg: key.alg,
  state: key.state,
  public_jwk: key.publicJwk,
  private_jwk: key.privateJwk,
  created_at: key.createdAt,
  activated_at: key.activatedAt,
  retired_at: key.retiredAt,
  expires_at: key.expiresAt,
});

export function kyselyKeys(db: Kysely<Database>): SigningKeyRepository {
  return {
    async listPublished(now) {
      const rows = await db
        .selectFrom('signing_keys')
        .selectAll()
        .where((eb) => eb.or([eb('state', '!=', 'retired'), eb('expires_at', '>', now)]))
        .orderBy('created_at')
        .orderBy('kid')
        .execute();
      return rows.map(toKey);
    },
    async listAll() {
      return (await db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute()).map(toKey);
    },
    async insert(key) {
      await db.insertInto('signing_keys').values(toRow(key)).execute();
    },
    async rotate(use, newNext, now, retiredExpiresAt) {
      return db.transaction().execute(async (trx) => {
        const next = await trx
          .updateTable('signing_keys')
          .set({ state: 'active', activated_at: now })
          .where('use', '=', use)
          .where('state', '=', 'next')
          .returning('kid')
          .execute();
        if (next.length !== 1) return false;
        await trx
          .updateTable('signing_keys')
          .set({ state: 'retired', retired_at: now, expires_at: retiredExpiresAt })
          .where('use', '=', use)
          .where('state', '=', 'active')
          .where('kid', '!=', next[0]!.kid)
          .execute();
        await trx.insertInto('signing_keys').values(toRow(newNext)).execute();
        return true;
      });
    },
  };
}
