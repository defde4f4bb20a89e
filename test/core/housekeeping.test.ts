import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { loadConfig, type FileConfig } from '../../src/core/config.ts';
import { SWEEP_BATCH_SIZE } from '../../src/core/housekeeping.ts';
import { createUser } from '../../src/core/users.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';

/*
 * The background sweep of expired rows and shutdown: closing a Gatehouse waits for the sweep in
 * flight, which stops after the batch it is in, and only then closes the database, so that no sweep
 * runs on a closed pool nor warns after the close. On PostgreSQL, where a sweep's statements wait on
 * the database (here, on a table another connection holds locked); SQLite's statements run to their
 * end before anything else does, so a sweep is never caught halfway by a close there.
 */

describe('the sweep of expired rows at shutdown (postgres)', { timeout: 60_000 }, () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('postgres');
  });
  after(() => database?.drop());

  /** A Gatehouse that sweeps every `sweepIntervalMs`, with what it logs. */
  const startGatehouse = async (sweepIntervalMs: number, file: Partial<FileConfig> = {}) => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const config = loadConfig({
      GATEHOUSE_ISSUER: 'http://127.0.0.1:1',
      GATEHOUSE_DATA_DIR: database.dataDir,
      GATEHOUSE_SECRET: TEST_SECRET,
      DATABASE_URL: database.databaseUrl!,
    }, file);
    const gatehouse = await createGatehouse(config, { logger, sweepIntervalMs });
    return { gatehouse, lines };
  };
  const withClient = async <T>(use: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: database.databaseUrl });
    await client.connect();
    try {
      return await use(client);
    } finally {
      await client.end();
    }
  };
  /** Holds `table` locked from another connection until the returned function is called. */
  const lockTable = async (table: string) => {
    const client = new pg.Client({ connectionString: database.databaseUrl });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    return async () => {
      await client.query('COMMIT');
      await client.end();
    };
  };
  /** Waits until a sweep waits for the lock on `table`. */
  const sweepWaitingOn = async (table: string) => {
    const admin = new pg.Client({ connectionString: database.databaseUrl });
    await admin.connect();
    try {
      for (let tries = 0; tries < 200; tries++) {
        const { rows } = await admin.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE $1`,
          [`delete from "${table}"%`],
        );
        if (rows.length > 0) return;
        await sleep(25);
      }
      throw new Error(`no sweep waited on ${table}`);
    } finally {
      await admin.end();
    }
  };

  it('waits for the sweep in flight, which stops after its batch, then closes the database: nothing fails, before the close or after it', async () => {
    // More expired sessions than one batch takes, stored before a Gatehouse sweeps: the sweep would go on to a second batch.
    const setup = await createGatehouse(loadConfig({ GATEHOUSE_ISSUER: 'http://127.0.0.1:1', GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_SECRET: TEST_SECRET, DATABASE_URL: database.databaseUrl! }), {
      background: false,
      logger: pino({ level: 'silent' }),
    });
    const user = await createUser(setup.storage, { email: 'swept@example.com', password: 'correct horse battery staple' }, 1);
    await setup.close();
    const expired = SWEEP_BATCH_SIZE + 100;
    await withClient((client) =>
      client.query(`INSERT INTO sessions (digest, sid, user_id, auth_time, created_at, expires_at) SELECT 'd' || n, 's' || n, $1, 1, 1, 2 FROM generate_series(1, ${expired}) AS n`, [user.id]),
    );

    const unlock = await lockTable('sessions');
    const { gatehouse, lines } = await startGatehouse(20);
    await sweepWaitingOn('sessions');
    let closed = false;
    const closing = gatehouse.close().then(() => (closed = true));
    await sleep(500);
    assert.equal(closed, false, 'the close waits for the sweep');
    await unlock();
    await closing;
    await sleep(300);
    assert.deepEqual(lines.filter((line) => line.level >= 40).map((line) => line.msg), [], 'no sweep failed, before the close or after it');
    const left = await withClient(async (client) => Number((await client.query('SELECT count(*) AS n FROM sessions')).rows[0].n));
    assert.equal(left, expired - SWEEP_BATCH_SIZE, 'the sweep ended with the batch it was in');
  });

  it('waits no longer than a statement may take (database.queryTimeoutSeconds), then closes the database all the same', async () => {
    const { gatehouse, lines } = await startGatehouse(20, { database: { queryTimeoutSeconds: 1 } });
    const unlock = await lockTable('sessions');
    try {
      await sweepWaitingOn('sessions');
      const started = performance.now();
      await gatehouse.close();
      const took = performance.now() - started;
      assert.ok(took < 5_000, `closed in ${took} ms`);
      const count = lines.length;
      await sleep(1_500);
      assert.equal(lines.length, count, 'nothing is logged after the close');
    } finally {
      await unlock();
    }
  });
});
