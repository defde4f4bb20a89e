import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createTestDatabase, DIALECTS, tableSnapshots, type TestDatabase } from '../support/databases.ts';
import { databaseEnv, oneLine, runCli, type Env } from './support.ts';

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
