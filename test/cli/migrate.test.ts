import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, DIALECTS, tableSnapshots, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';
import { databaseEnv, oneLine, runCli, startCli, waitFor, type Env } from './support.ts';

/** The names recorded in kysely_migration, read on a connection of its own. */
async function recordedMigrations(database: TestDatabase): Promise<string[]> {
  if (database.dialect === 'sqlite') {
    const db = new DatabaseSync(join(database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
    try {
      return (db.prepare('SELECT name FROM kysely_migration ORDER BY name').all() as { name: string }[]).map((row) => row.name);
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: database.databaseUrl });
  await client.connect();
  try {
    return (await client.query<{ name: string }>('SELECT name FROM kysely_migration ORDER BY name')).rows.map((row) => row.name);
  } finally {
    await client.end();
  }
}

/** Records `name` as applied, as a newer release that shipped that migration would have. */
async function recordMigration(database: TestDatabase, name: string): Promise<void> {
  const timestamp = new Date().toISOString();
  if (database.dialect === 'sqlite') {
    const db = new DatabaseSync(join(database.dataDir, 'gatehouse.sqlite'));
    try {
      db.prepare('INSERT INTO kysely_migration (name, timestamp) VALUES (?, ?)').run(name, timestamp);
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: database.databaseUrl });
  await client.connect();
  try {
    await client.query('INSERT INTO kysely_migration (name, timestamp) VALUES ($1, $2)', [name, timestamp]);
  } finally {
    await client.end();
  }
}

for (const dialect of DIALECTS) {
  describe(`gatehouse on a database a newer release migrated (${dialect})`, { timeout: 120_000 }, () => {
    let database: TestDatabase;
    let env: Env;

    before(async () => {
      database = await createTestDatabase(dialect);
      env = databaseEnv(database);
      const migrated = await runCli(['migrate'], env);
      assert.equal(migrated.code, 0, migrated.stderr);
      // A rollback: a newer release ran its migration 900-…, then this one is started on its database.
      await recordMigration(database, '900-from-a-newer-release');
    });

    after(async () => {
      await database?.drop();
    });

    it('refuses to start or migrate it, saying so in one line, and changes nothing', async () => {
      const snapshots = await tableSnapshots(database);
      try {
        const before = await snapshots.take();
        const commands = [['serve'], ['serve', '--workers', '2'], ['migrate'], ['client', 'list']];
        const results = await Promise.all(commands.map((args) => runCli(args, { ...env, PORT: '0' }, 30_000)));
        for (const [i, result] of results.entries()) {
          const command = `gatehouse ${commands[i]!.join(' ')}`;
          assert.equal(result.signal, null, `${command} had to be killed: it started\n${result.stdout}`);
          assert.equal(result.code, 1, `${command}: ${result.stderr}`);
          assert.match(oneLine(result), /^gatehouse: (DATABASE_URL|GATEHOUSE_DATA_DIR): the database( \S+)? was migrated by a newer release of Gatehouse \(it records migration 900-from-a-newer-release, which this release does not have\): run that release or a later one$/);
          assert.equal(result.stdout.includes('listening'), false, result.stdout);
        }
        assert.equal(await snapshots.take(), before, 'nothing stored changed');
      } finally {
        await snapshots.close();
      }
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`gatehouse migrate run by several operators at once (${dialect})`, { timeout: 120_000 }, () => {
    let database: TestDatabase;
    let env: Env;

    before(async () => {
      database = await createTestDatabase(dialect);
      // The master secret is given: the processes below race for the database, not for generating it.
      env = { ...databaseEnv(database), GATEHOUSE_SECRET: TEST_SECRET };
    });

    after(async () => {
      await database?.drop();
    });

    it('applies every migration once when three run at once on an empty database', async () => {
      const results = await Promise.all([1, 2, 3].map(() => runCli(['migrate'], env)));
      for (const result of results) assert.deepEqual([result.code, result.stderr], [0, ''], result.stdout);
      const recorded = await recordedMigrations(database);
      assert.equal(recorded[0], '001-foundation');
      assert.deepEqual(recorded, [...new Set(recorded)], 'each migration is recorded once');
    });
  });
}

describe('gatehouse migrate on a new SQLite file another process is setting up', { timeout: 60_000 }, () => {
  it('waits for the other process instead of failing with "database is locked"', async () => {
    const database = await createTestDatabase('sqlite');
    const file = join(database.dataDir, 'gatehouse.sqlite');
    // The other process, caught as it sets the new file up: a write lock, in the journal mode a new file starts in.
    const other = new DatabaseSync(file);
    try {
      other.exec('BEGIN IMMEDIATE');
      const run = startCli(['migrate'], { ...databaseEnv(database), GATEHOUSE_SECRET: TEST_SECRET }, { timeoutMs: 30_000 });
      const pid = run.child.pid!;
      const opened = () => {
        try {
          return readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`) === file);
        } catch {
          return false;
        }
      };
      let exited = false;
      void run.result.then(() => (exited = true));
      await waitFor('gatehouse migrate to open the file', async () => (opened() || exited ? true : undefined), 20_000, 10);
      // It meets the lock as soon as it opens the file; the other process finishes a moment later.
      await new Promise((resolve) => setTimeout(resolve, 500));
      other.exec('ROLLBACK');
      const result = await run.result;
      assert.deepEqual([result.code, result.stderr], [0, ''], result.stdout);
      assert.equal((await recordedMigrations(database))[0], '001-foundation');
    } finally {
      other.close();
      await database.drop();
    }
  });
});
