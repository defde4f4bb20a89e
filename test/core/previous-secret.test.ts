import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';

/*
 * GATEHOUSE_SECRET_PREVIOUS left set after `gatehouse keys reencrypt`: start-up says it can go, as a
 * secret that leaked stays good for decrypting a copy of the database until it is removed everywhere.
 */

const OLD_SECRET = 'the-old-master-secret-that-leaked-0123456789';
const NEW_SECRET = 'the-new-master-secret-that-replaced-it-98765';

for (const dialect of DIALECTS) {
  describe(`a previous master secret at start-up (${dialect})`, { timeout: 60_000 }, () => {
    let database: TestDatabase;
    before(async () => {
      database = await createTestDatabase(dialect);
    });
    after(() => database?.drop());

    /** A Gatehouse under `secret` (and `previous`), with what it logged at start-up. */
    const start = async (secret: string, previous?: string) => {
      const lines: { level: number; msg: string }[] = [];
      const text: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void (text.push(line), lines.push(JSON.parse(line))) });
      const env = {
        GATEHOUSE_ISSUER: 'http://127.0.0.1:1',
        GATEHOUSE_DATA_DIR: database.dataDir,
        GATEHOUSE_SECRET: secret,
        ...(previous ? { GATEHOUSE_SECRET_PREVIOUS: previous } : {}),
        ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
      };
      const gatehouse = await createGatehouse(loadConfig(env), { logger, background: false });
      return { gatehouse, lines, text };
    };
    const warnings = (lines: { level: number; msg: string }[]) => lines.filter((line) => line.level === 40 && /GATEHOUSE_SECRET_PREVIOUS/.test(line.msg));

    it('warns, naming no secret, once no signing key is stored under a previous secret, and not before', async () => {
      const first = await start(OLD_SECRET);
      await first.gatehouse.close();

      const during = await start(NEW_SECRET, OLD_SECRET);
      assert.deepEqual(warnings(during.lines), [], 'the keys are still under the old secret: it is needed');
      assert.ok((await during.gatehouse.keys.reencrypt()) > 0);
      await during.gatehouse.close();

      const afterwards = await start(NEW_SECRET, OLD_SECRET);
      await afterwards.gatehouse.close();
      const [warning, ...more] = warnings(afterwards.lines);
      assert.ok(warning, JSON.stringify(afterwards.lines));
      assert.equal(more.length, 0);
      assert.match(warning.msg, /no signing key is stored under a previous master secret/);
      for (const line of afterwards.text) {
        assert.ok(!line.includes(OLD_SECRET) && !line.includes(NEW_SECRET), 'no secret is logged');
      }

      const alone = await start(NEW_SECRET);
      await alone.gatehouse.close();
      assert.deepEqual(warnings(alone.lines), []);
    });
  });
}
