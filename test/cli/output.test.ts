import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createClient } from '../../src/core/applications.ts';
import { loadConfig } from '../../src/core/config.ts';
import { hashPassword } from '../../src/core/passwords.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';
import { databaseEnv, runCli, type Env } from './support.ts';

/*
 * What the command line prints for people, of text stored before today's rules refused it at entry
 * (a user's name, an application's name or description holding ESC or a line break): the terminal
 * shows it, it does not act on it.
 */

/** Any character a terminal acts on or does not show, but the line breaks between lines. */
const HIDDEN = /(?![\n\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const JOINED = '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u{1f469}\u200d\u{1f4bb}';

for (const dialect of DIALECTS) {
  describe(`the command line's tables and records for people (${dialect})`, { timeout: 120_000 }, () => {
    let database: TestDatabase;
    let env: Env;
    const name = 'Ada\u001b[2J\u001b]0;owned\u0007\nforged-row  Mallory  active\u202e';
    let userId: string;
    let clientId: string;

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_SECRET: TEST_SECRET };
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      try {
        const now = gatehouse.clock();
        // Stored as they were before names were checked: straight into storage.
        await gatehouse.storage.users.create({ id: randomUUID(), email: `joined-${dialect}@example.com`, name: JOINED, passwordHash: await hashPassword('a long enough password'), emailVerified: false, disabledAt: null }, now);
        userId = (await gatehouse.storage.users.create({ id: randomUUID(), email: `stored-${dialect}@example.com`, name, passwordHash: await hashPassword('a long enough password'), emailVerified: false, disabledAt: null }, now)).id;
        const { client } = await createClient(gatehouse, { name: 'Plain', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'] }, now);
        await gatehouse.storage.clients.update(client.id, { name, description: name }, now);
        clientId = client.id;
      } finally {
        await gatehouse.close();
      }
    });
    after(() => database?.drop());

    for (const args of [['user', 'list'], ['user', 'show', 'USER'], ['client', 'list'], ['client', 'show', 'CLIENT']]) {
      it(`${args.slice(0, 2).join(' ')} prints a stored name's control and invisible characters as escapes, one line a row or field`, async () => {
        const result = await runCli(args.map((a) => (a === 'USER' ? userId : a === 'CLIENT' ? clientId : a)), env);
        assert.equal(result.code, 0, result.stderr);
        assert.doesNotMatch(result.stdout, HIDDEN, JSON.stringify(result.stdout));
        assert.ok(result.stdout.includes('Ada\\u001b[2J\\u001b]0;owned\\u0007\\u000aforged-row  Mallory  active\\u202e'), result.stdout);
        assert.equal(result.stdout.split('\n').filter((line) => line.includes('forged-row')).length, args[1] === 'show' && args[0] === 'client' ? 2 : 1);
      });
    }

    it('prints the joiners a name in Persian or an emoji sequence needs as they are', async () => {
      const result = await runCli(['user', 'list'], env);
      assert.ok(result.stdout.includes(JOINED), result.stdout);
    });

    it('keeps --json as stored', async () => {
      assert.equal(JSON.parse((await runCli(['user', 'show', userId, '--json'], env)).stdout).name, name);
    });
  });
}
