import type { Kysely, Selectable } from 'kysely';
import { COLUMNS, type Database, type SigningKeyTable } from '../schema.ts';
import type { KeyState, KeyUse, SigningKeyRecord, SigningKeyRepository } from '../repositories/keys.ts';

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
        .select(COLUMNS.signing_keys)
        .where((eb) => eb.or([eb('state', '!=', 'retired'), eb('expires_at', '>', now)]))
        .orderBy('created_at')
        .orderBy('kid')
        .execute();
      return rows.map(toKey);
    },
    async listAll() {
      return (await db.selectFrom('signing_keys').select(COLUMNS.signing_keys).orderBy('created_at').orderBy('kid').execute()).map(toKey);
    },
    async insert(key) {
      try {
        await db.insertInto('signing_keys').values(toRow(key)).execute();
        return true;
      } catch (error) {
        // Another instance published the key of this use and state first (a unique index says so).
        if ((await db.selectFrom('signing_keys').select('kid').where('use', '=', key.use).where('state', '=', key.state).executeTakeFirst()) !== undefined) return false;
        throw error;
      }
    },
    async rotate(use, newNext, now, retiredExpiresAt, publishedBefore = Number.POSITIVE_INFINITY) {
      try {
        return await db.transaction().execute(async (trx) => {
          const next = await trx.selectFrom('signing_keys').select(['kid', 'created_at']).where('use', '=', use).where('state', '=', 'next').executeTakeFirst();
          // A next key published moments ago is the one another rotation just made.
          if (!next || next.created_at > publishedBefore) return false;
          // Retire first: the database allows one active key per use at a time.
          await trx
            .updateTable('signing_keys')
            .set({ state: 'retired', retired_at: now, expires_at: retiredExpiresAt })
            .where('use', '=', use)
            .where('state', '=', 'active')
            .execute();
          // Conditional, so that of two overlapping rotations only one promotes this key.
          const promoted = await trx.updateTable('signing_keys').set({ state: 'active', activated_at: now }).where('kid', '=', next.kid).where('state', '=', 'next').executeTakeFirst();
          if (promoted.numUpdatedRows === 0n) throw new LostRotation();
          await trx.insertInto('signing_keys').values(toRow(newNext)).execute();
          return true;
        });
      } catch (error) {
        // The other rotation won; this one's changes were rolled back.
        if (error instanceof LostRotation) return false;
        throw error;
      }
    },
    async withdraw(kid, state, newNext, now) {
      try {
        return await db.transaction().execute(async (trx) => {
          const withdrawn = await trx
            .updateTable('signing_keys')
            // A retired key keeps the time it retired; one that signed or was to sign retires now.
            .set(state === 'retired' ? { expires_at: now } : { state: 'retired', retired_at: now, expires_at: now })
            .where('kid', '=', kid)
            .where('state', '=', state)
            .where((eb) => eb.or([eb('state', '!=', 'retired'), eb('expires_at', '>', now)]))
            .executeTakeFirst();
          if (withdrawn.numUpdatedRows === 0n) return false;
          if (state === 'active') {
            const promoted = await trx.updateTable('signing_keys').set({ state: 'active', activated_at: now }).where('use', '=', newNext!.use).where('state', '=', 'next').executeTakeFirst();
            if (promoted.numUpdatedRows === 0n) throw new LostRotation();
          }
          if (newNext) await trx.insertInto('signing_keys').values(toRow(newNext)).execute();
          return true;
        });
      } catch (error) {
        // A rotation changed the keys of this use meanwhile; this withdrawal was rolled back.
        if (error instanceof LostRotation) return false;
        throw error;
      }
    },
    async replaceNextOfOtherAlgorithm(newNext) {
      try {
        return await db.transaction().execute(async (trx) => {
          // Of instances starting at once, one deletes the key; the others wait for it, then find none.
          const replaced = await trx
            .deleteFrom('signing_keys')
            .where('use', '=', newNext.use)
            .where('state', '=', 'next')
            .where('alg', '!=', newNext.alg)
            .executeTakeFirst();
          if (replaced.numDeletedRows === 0n) return false;
          await trx.insertInto('signing_keys').values(toRow(newNext)).execute();
          return true;
        });
      } catch (error) {
        // Another instance published its replacement first (one next key per use, says a unique index).
        if ((await db.selectFrom('signing_keys').select('alg').where('use', '=', newNext.use).where('state', '=', 'next').executeTakeFirst())?.alg === newNext.alg) return false;
        throw error;
      }
    },
    async replacePrivateParts(changes) {
      return db.transaction().execute(async (trx) => {
        let changed = 0;
        for (const { kid, from, to } of changes) {
          const result = await trx.updateTable('signing_keys').set({ private_jwk: to }).where('kid', '=', kid).where('private_jwk', '=', from).executeTakeFirst();
          changed += Number(result.numUpdatedRows);
        }
        return changed;
      });
    },
  };
}

class LostRotation extends Error {}
