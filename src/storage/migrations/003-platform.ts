import type { Kysely } from 'kysely';
import type { Dialect } from '../database.ts';

/** API keys of applications, and the resource-server privilege (introspecting any client's tokens). */
export async function up(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const time = dialect === 'postgres' ? 'bigint' : 'integer';

  await db.schema.alterTable('clients').addColumn('is_resource_server', 'integer', (c) => c.notNull().defaultTo(0)).execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull().references('clients.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull().unique())
    /** The first characters of the key, shown in lists so a person can recognize it. */
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('expires_at', time)
    .addColumn('revoked_at', time)
    .addColumn('last_used_at', time)
    .execute();
  await db.schema.createIndex('api_keys_client').on('api_keys').column('client_id').execute();
}
