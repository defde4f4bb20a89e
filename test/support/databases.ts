import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';

/**
 * A fresh, empty database per call: a SQLite file in a new temporary folder, or a new PostgreSQL
 * database on the server at TEST_POSTGRES_URL. PostgreSQL is required, never skipped: a test run
 * without it fails.
 */
export type TestDialect = 'sqlite' | 'postgres';
export const DIALECTS: readonly TestDialect[] = ['sqlite', 'postgres'];

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  dialect: TestDialect;
  /** DATABASE_URL for PostgreSQL; undefined for SQLite. */
  databaseUrl: string | undefined;
  /** A data dir of its own (SQLite file, generated secret). */
  dataDir: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(dialect: TestDialect): Promise<TestDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  if (dialect === 'sqlite') {
    return { dialect, databaseUrl: undefined, dataDir, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
  const name = `gatehouse_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    dialect,
    databaseUrl: url.toString(),
    dataDir,
    async drop() {
      rmSync(dataDir, { recursive: true, force: true });
      await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`PostgreSQL is required for the tests and does not answer at ${ADMIN_URL} (set TEST_POSTGRES_URL): ${(error as Error).message}`);
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** How many rows `table` holds now, read on a connection of its own (what a request stored, whatever the server caches). */
export async function countRows(database: TestDatabase, table: string): Promise<number> {
  if (database.dialect === 'sqlite') {
    const db = new DatabaseSync(join(database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
    try {
      return Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: database.databaseUrl });
  await client.connect();
  try {
    return (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
  } finally {
    await client.end();
  }
}

/**
 * Every row of every table but `except`, read on a connection of its own, as one string that two
 * takes can compare: what the database stores, whatever the server caches. Rows are sorted, so an
 * order the database picks differently twice does not read as a change. One connection serves
 * every take until `close`.
 */
export async function tableSnapshots(database: TestDatabase, except: readonly string[] = []): Promise<{ take(): Promise<string>; close(): Promise<void> }> {
  const keep = (name: string) => !except.includes(name);
  if (database.dialect === 'sqlite') {
    const db = new DatabaseSync(join(database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
    return {
      async take() {
        const names = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all() as { name: string }[]).map((row) => row.name).filter(keep);
        return JSON.stringify(Object.fromEntries(names.map((name) => [name, db.prepare(`SELECT * FROM "${name}"`).all().map((row) => JSON.stringify(row)).sort()])));
      },
      async close() {
        db.close();
      },
    };
  }
  const client = new pg.Client({ connectionString: database.databaseUrl });
  await client.connect();
  return {
    async take() {
      const names = (await client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`)).rows.map((row) => row.table_name as string).filter(keep);
      // One statement for every table: each table's rows as JSON text.
      const { rows } = await client.query(names.map((name, i) => `SELECT ${i} AS t, row_to_json(r)::text AS row FROM "${name}" r`).join(' UNION ALL '));
      const tables: Record<string, string[]> = Object.fromEntries(names.map((name) => [name, []]));
      for (const row of rows as { t: number; row: string }[]) tables[names[row.t]!]!.push(row.row);
      for (const list of Object.values(tables)) list.sort();
      return JSON.stringify(tables);
    },
    async close() {
      await client.end();
    },
  };
}
