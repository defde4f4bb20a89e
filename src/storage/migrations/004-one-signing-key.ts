import { sql, type Kysely } from 'kysely';

/**
 * At most one active and one next key per use, enforced by the database: instances that start
 * together on an empty database cannot each publish keys of their own (the losers' inserts fail and
 * they load the winner's keys). Partial unique indexes exist in SQLite and PostgreSQL alike.
 */
export async function up(db: Kysely<any>): Promise<void> {
  for (const state of ['active', 'next']) {
    await db.schema.createIndex(`signing_keys_one_${state}`).on('signing_keys').column('use').unique().where(sql<boolean>`state = ${sql.lit(state)}`).execute();
  }
}
