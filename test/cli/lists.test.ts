import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createClient } from '../../src/core/applications.ts';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';
import { databaseEnv, runCli, type Env } from './support.ts';

/*
 * `gatehouse user list` and `client list` print a page at a time, oldest first, with the cursor of
 * the next page after it: with 100,000 users, one table of every row was neither readable nor quick.
 */

const NEXT_PAGE = /^next page: gatehouse (user|client) list --cursor (\S+)(?: --limit (\d+))?$/m;

for (const dialect of DIALECTS) {
  describe(`the command line's lists of users and clients (${dialect})`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let env: Env;
    const emails: string[] = [];
    const clientIds: string[] = [];

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_SECRET: TEST_SECRET };
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      try {
        // Five of each within one second: the pages are ordered by id among records of one second.
        const now = gatehouse.clock();
        for (let i = 0; i < 5; i++) {
          const email = `list-${i}@example.com`;
          await gatehouse.storage.users.create({ id: randomUUID(), email, name: `User ${i}`, passwordHash: 'unused', emailVerified: false, disabledAt: null }, now);
          emails.push(email);
          const { client } = await createClient(gatehouse, { name: `Client ${i}`, type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'] }, now);
          clientIds.push(client.id);
        }
      } finally {
        await gatehouse.close();
      }
    });
    after(() => database?.drop());

    it('prints every user a page at a time, each once, with the next page’s command after each page but the last', async () => {
      const seen: string[] = [];
      let args = ['user', 'list', '--limit', '2'];
      for (let pages = 1; ; pages++) {
        assert.ok(pages <= 3, 'three pages of two');
        const result = await runCli(args, env);
        assert.equal(result.code, 0, result.stderr);
        seen.push(...emails.filter((email) => result.stdout.includes(email)));
        const next = NEXT_PAGE.exec(result.stdout);
        if (pages === 3) {
          assert.equal(next, null, 'no next page after the last');
          break;
        }
        assert.ok(next, result.stdout);
        assert.equal(next[3], '2', 'the next page is asked for with the same limit');
        args = ['user', 'list', '--cursor', next[2]!, '--limit', '2'];
      }
      assert.deepEqual(seen.sort(), [...emails].sort());
    });

    it('prints every record on one page under the default of 100, and no next page', async () => {
      const result = await runCli(['user', 'list'], env);
      assert.equal(result.code, 0, result.stderr);
      for (const email of emails) assert.ok(result.stdout.includes(email), email);
      assert.doesNotMatch(result.stdout, /next page/);
    });

    it('prints a page of clients with --json as the array it was, the next page’s command on stderr', async () => {
      const first = await runCli(['client', 'list', '--limit', '3', '--json'], env);
      assert.equal(first.code, 0, first.stderr);
      const page = JSON.parse(first.stdout) as { client_id: string }[];
      assert.equal(page.length, 3);
      const next = NEXT_PAGE.exec(first.stderr);
      assert.ok(next, first.stderr);
      const rest = await runCli(['client', 'list', '--limit', '3', '--cursor', next[2]!, '--json'], env);
      assert.equal(rest.code, 0, rest.stderr);
      assert.equal(rest.stderr, '');
      const all = [...page, ...(JSON.parse(rest.stdout) as { client_id: string }[])].map((c) => c.client_id);
      assert.deepEqual([...all].sort(), [...clientIds].sort(), 'each client once');
    });

    it('refuses a limit out of range and a cursor it did not print, or printed for the other list, with the usage and exit 2', async () => {
      const clientCursor = NEXT_PAGE.exec((await runCli(['client', 'list', '--limit', '1'], env)).stdout)![2]!;
      const cases: [string[], RegExp][] = [
        [['user', 'list', '--limit', '0'], /--limit must be a number from 1 to 1000/],
        [['user', 'list', '--limit', '1001'], /--limit must be a number from 1 to 1000/],
        [['client', 'list', '--limit', '0x10'], /--limit must be a number from 1 to 1000/],
        [['user', 'list', '--cursor', 'not-a-cursor'], /--cursor must be one that a users list printed/],
        [['user', 'list', '--cursor', clientCursor], /--cursor must be one that a users list printed/],
        [['client', 'list', '--cursor', Buffer.from('clients:12:\u001b[2J').toString('base64url')], /--cursor must be one that a clients list printed/],
      ];
      for (const [args, expected] of cases) {
        const result = await runCli(args, env);
        assert.equal(result.code, 2, `gatehouse ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.match(result.stderr, expected, args.join(' '));
        assert.equal(result.stdout, '');
      }
    });
  });
}
