import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { loadConfig, type FileConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';

/*
 * The periodic reload of the signing keys and shutdown: closing a Gatehouse waits for the reload in
 * flight (at most database.queryTimeoutSeconds) and only then closes the database, so that no reload
 * runs on a closed pool; a reload that fails once the shutdown began is not reported. On PostgreSQL, where a reload's query waits on the
 * database (here, on the keys' table another connection holds locked).
 */

describe('the reload of the signing keys at shutdown (postgres)', { timeout: 60_000 }, () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('postgres');
  });
  after(() => database?.drop());

  /** A Gatehouse that reloads its keys every 50 ms, with what it logs. */
  const startGatehouse = async (file: Partial<FileConfig> = {}) => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const config = loadConfig(
      { GATEHOUSE_ISSUER: 'http://127.0.0.1:1', GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_SECRET: TEST_SECRET, DATABASE_URL: database.databaseUrl! },
      { ...file, keys: { reloadIntervalSeconds: 0.05 } },
    );
    const gatehouse = await createGatehouse(config, { logger, sweepIntervalMs: 3_600_000 });
    return { gatehouse, lines };
  };
  /** Holds the signing keys' table locked from another connection until the returned function is called. */
  const lockKeys = async () => {
    const client = new pg.Client({ connectionString: database.databaseUrl });
    await client.connect();
    await client.query('BEGIN');
    await client.query('LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE');
    return async () => {
      await client.query('COMMIT');
      await client.end();
    };
  };
  /** Waits until a reload waits for the lock on the keys' table. */
  const reloadWaiting = async () => {
    const admin = new pg.Client({ connectionString: database.databaseUrl });
    await admin.connect();
    try {
      for (let tries = 0; tries < 200; tries++) {
        const { rows } = await admin.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%from "signing_keys"%'`,
        );
        if (rows.length > 0) return;
        await sleep(25);
      }
      throw new Error('no reload waited on signing_keys');
    } finally {
      await admin.end();
    }
  };

  it('waits for the reload in flight, then closes the database: nothing fails, before the close or after it', async () => {
    const { gatehouse, lines } = await startGatehouse();
    const unlock = await lockKeys();
    let closed = false;
    let closing: Promise<unknown> | undefined;
    try {
      await reloadWaiting();
      closing = gatehouse.close().then(() => (closed = true));
      await sleep(500);
      assert.equal(closed, false, 'the close waits for the reload');
    } finally {
      await unlock();
    }
    await closing;
    await sleep(300);
    assert.deepEqual(lines.filter((line) => line.level >= 40).map((line) => line.msg), [], 'no reload failed, before the close or after it');
  });

  it('waits no longer than a statement may take (database.queryTimeoutSeconds), then closes the database all the same', async () => {
    const { gatehouse, lines } = await startGatehouse({ database: { queryTimeoutSeconds: 1 } });
    const unlock = await lockKeys();
    try {
      await reloadWaiting();
      const started = performance.now();
      await gatehouse.close();
      const took = performance.now() - started;
      assert.ok(took < 5_000, `closed in ${took} ms`);
      const count = lines.length;
      await sleep(1_500);
      assert.equal(lines.length, count, 'nothing is logged after the close');
      assert.deepEqual(lines.filter((line) => line.msg === 'signing keys could not be reloaded'), [], 'a reload the shutdown stopped waiting for is not reported');
    } finally {
      await unlock();
    }
  });
});
