import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/**
 * `private_key_jwt` (RFC 7523): a client's public keys, and the `jti` of every client assertion
 * accepted, kept until the assertion expires so that none is accepted twice (RFC 7523 §3 item 7).
 */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';

  await db.schema.alterTable('clients').addColumn('jwks', 'text').execute();

  await db.schema
    .createTable('client_assertions')
    .addColumn('client_id', 'text', (c) => c.notNull().references('clients.id').onDelete('cascade'))
    .addColumn('jti', 'text', (c) => c.notNull())
    .addColumn('expires_at', time, (c) => c.notNull())
    .addPrimaryKeyConstraint('client_assertions_pk', ['client_id', 'jti'])
    .execute();
  await db.schema.createIndex('client_assertions_expiry').on('client_assertions').column('expires_at').execute();
}
