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
        // Instances racing at first start may each have published a next key: promote the oldest one
        // and retire the others with the active keys, so one rotation leaves one active and one next.
        const next = await trx
          .selectFrom('signing_keys')
          .select('kid')
          .where('use', '=', use)
          .where('state', '=', 'next')
          .orderBy('created_at')
          .orderBy('kid')
          .limit(1)
          .executeTakeFirst();
        if (!next) return false;
        // Conditional, so that of two overlapping rotations only one promotes this key.
        const promoted = await trx
          .updateTable('signing_keys')
          .set({ state: 'active', activated_at: now })
          .where('kid', '=', next.kid)
          .where('state', '=', 'next')
          .executeTakeFirst();
        if (promoted.numUpdatedRows === 0n) return false;
        await trx
          .updateTable('signing_keys')
          .set({ state: 'retired', retired_at: now, expires_at: retiredExpiresAt })
          .where('use', '=', use)
          .where('state', 'in', ['active', 'next'])
          .where('kid', '!=', next.kid)
          .execute();
        await trx.insertInto('signing_keys').values(toRow(newNext)).execute();
        return true;
      });
    },
  };
}
