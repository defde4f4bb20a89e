import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { countRows, createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { post, startTestServer, TEST_SECRET } from '../support/server.ts';
import { CLI, cliJson, databaseEnv, ROOT, runCli, waitFor, type Env } from './support.ts';

interface EventLine {
  id: number;
  at: string;
  kind: string;
  outcome: string;
  client_id: string | null;
  user_id: string | null;
  data: Record<string, unknown>;
}

const lines = (stdout: string): EventLine[] =>
  stdout
    .trimEnd()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as EventLine);

for (const dialect of DIALECTS) {
  describe(`gatehouse audit tail (${dialect})`, { timeout: 240_000 }, () => {
    let database: TestDatabase;
    let env: Env;
    const now = Math.floor(Date.now() / 1000);

    /** Writes audit events straight into the database, as a running server would. */
    const writeEvents = async (events: Omit<AuditEvent, 'id'>[]) => {
      const gatehouse = await createGatehouse(loadConfig({ ...env, GATEHOUSE_SECRET: TEST_SECRET }), { background: false, logger: pino({ level: 'silent' }) });
      try {
        for (const event of events) gatehouse.audit.record(event);
      } finally {
        await gatehouse.close();
      }
    };

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_SECRET: TEST_SECRET };
      await writeEvents([
        { at: now - 300, kind: 'token.issued', outcome: 'success', clientId: 'app_one', userId: null, data: { grant: 'client_credentials' } },
        { at: now - 200, kind: 'login.failed', outcome: 'failure', clientId: null, userId: null, data: { via: 'page' } },
        { at: now - 100, kind: 'admin.client.created', outcome: 'success', clientId: 'app_admin', userId: null, data: { client_id: 'app_two' } },
      ]);
    });
    after(() => database?.drop());

    it('prints the latest events oldest first, one JSON object a line', async () => {
      const result = await runCli(['audit', 'tail', '--json'], env);
      assert.equal(result.code, 0, result.stderr);
      const events = lines(result.stdout);
      assert.deepEqual(
        events.map((e) => e.kind),
        ['token.issued', 'login.failed', 'admin.client.created'],
      );
      assert.deepEqual(events[0], {
        id: events[0]!.id,
        at: new Date((now - 300) * 1000).toISOString(),
        kind: 'token.issued',
        outcome: 'success',
        client_id: 'app_one',
        user_id: null,
        data: { grant: 'client_credentials' },
      });
    });

    it('prints the last N with --limit, and those since a time with --since', async () => {
      assert.deepEqual(
        lines((await runCli(['audit', 'tail', '--limit', '2', '--json'], env)).stdout).map((e) => e.kind),
        ['login.failed', 'admin.client.created'],
      );
      const since = new Date((now - 250) * 1000).toISOString();
      assert.deepEqual(
        lines((await runCli(['audit', 'tail', '--since', since, '--json'], env)).stdout).map((e) => e.kind),
        ['login.failed', 'admin.client.created'],
      );
      assert.deepEqual(lines((await runCli(['audit', 'tail', '--since', String(now - 150), '--json'], env)).stdout).map((e) => e.kind), ['admin.client.created']);
    });

    it('prints a line per event for people', async () => {
      const result = await runCli(['audit', 'tail'], env);
      assert.equal(result.code, 0, result.stderr);
      const printed = result.stdout.trimEnd().split('\n');
      assert.equal(printed.length, 3);
      assert.match(printed[2]!, /^\S+Z\s+admin\.client\.created\s+success\s+client=app_admin user=- {2}\{"client_id":"app_two"\}$/);
    });

    it('prints what a client presented with the characters a terminal would act on or hide escaped', async () => {
      // Anyone may send /token a client_id of their choosing; its refusal is audited as presented.
      const server = await startTestServer(dialect);
      try {
        const clientId = 'app\u001b[2J\u001b]0;owned\u0007\nforged line\u202e\u0085';
        const refused = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: clientId, client_secret: 'not the secret' });
        assert.equal(refused.status, 401, JSON.stringify(refused.body));
        await server.gatehouse.audit.flush();
        const serverEnv = { ...databaseEnv(server.database), GATEHOUSE_SECRET: TEST_SECRET };
        const result = await runCli(['audit', 'tail'], serverEnv);
        assert.equal(result.code, 0, result.stderr);
        const printed = result.stdout.trimEnd().split('\n');
        assert.equal(printed.length, 1, JSON.stringify(result.stdout));
        assert.doesNotMatch(result.stdout, /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}](?<!\n)/u);
        assert.match(printed[0]!, /client=app\\u001b\[2J\\u001b\]0;owned\\u0007\\u000aforged line\\u202e\\u0085 user=- /);
        const [event] = lines((await runCli(['audit', 'tail', '--json'], serverEnv)).stdout);
        assert.equal(event!.client_id, clientId, '--json keeps it as it is');
      } finally {
        await server.close();
      }
    });

    it('refuses a bad --since or --limit with the usage (exit 2)', async () => {
      for (const args of [
        ['--since', 'yesterday'],
        ['--limit', '0'],
        ['--limit', 'lots'],
        ['--since', '2020-01-01', '--limit', '5'],
      ]) {
        const result = await runCli(['audit', 'tail', ...args], env);
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, /^gatehouse: .*\n\nUsage:/);
      }
      const unknown = await runCli(['audit', 'nothing'], env);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /^gatehouse: unknown audit command "nothing"/);
    });

    it('follows new events with --follow until interrupted', async () => {
      const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_') && !['DATABASE_URL', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS'].includes(key)));
      const child = spawn(process.execPath, [CLI, 'audit', 'tail', '--limit', '1', '--follow', '--json'], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        await waitFor('the tail', async () => (lines(stdout).length === 1 ? true : undefined));
        assert.equal(lines(stdout)[0]!.kind, 'admin.client.created');
        await writeEvents([{ at: Math.floor(Date.now() / 1000), kind: 'keys.rotated', outcome: 'success', clientId: null, userId: null, data: { by: 'test' } }]);
        await waitFor('the new event', async () => (lines(stdout).length === 2 ? true : undefined));
        assert.deepEqual(
          lines(stdout).map((e) => e.kind),
          ['admin.client.created', 'keys.rotated'],
        );
      } finally {
        child.kill('SIGINT');
      }
      assert.equal(await exited, 0, stderr);
      assert.equal(lines(stdout).length, 2, 'nothing printed twice');
    });

    it('records what user create, disable, enable, set-password, sign-out and delete did, named as the admin API names them, and never the password', async () => {
      const [password, reset] = ['an audited password', 'an audited new password'];
      const { id } = await cliJson<{ id: string }>(['user', 'create', '--email', 'audited@example.com', '--password', password], env);
      await cliJson(['user', 'show', 'audited@example.com'], env);
      await cliJson(['user', 'disable', 'audited@example.com'], env);
      await cliJson(['user', 'enable', id], env);
      await cliJson(['user', 'set-password', id, '--password', reset], env);
      await cliJson(['user', 'sign-out', id], env);
      await cliJson(['user', 'delete', id], env);
      // Refused: nothing recorded.
      assert.equal((await runCli(['user', 'set-password', 'audited@example.com', '--password', 'short'], env)).code, 1);

      const tail = await runCli(['audit', 'tail', '--limit', '100', '--json'], env);
      assert.equal(tail.stdout.includes(password) || tail.stdout.includes(reset), false);
      const events = lines(tail.stdout).filter((e) => e.user_id === id);
      assert.deepEqual(
        events.map((e) => ({ kind: e.kind, outcome: e.outcome, client_id: e.client_id, data: e.data })),
        [
          { kind: 'user.created', outcome: 'success', client_id: null, data: { by: 'cli' } },
          { kind: 'user.disabled', outcome: 'success', client_id: null, data: { by: 'cli' } },
          { kind: 'user.enabled', outcome: 'success', client_id: null, data: { by: 'cli' } },
          { kind: 'user.password_reset', outcome: 'success', client_id: null, data: { by: 'cli' } },
          { kind: 'user.signed_out', outcome: 'success', client_id: null, data: { by: 'cli' } },
          { kind: 'user.deleted', outcome: 'success', client_id: null, data: { client_ids: [], by: 'cli' } },
        ],
      );
    });

    it('records what client create, set-jwks, rotate-secret and delete did, named as the admin API names the same actions', async () => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwksFile = join(database.dataDir, 'audited-keys.json');
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1' }] }));
      const { client_id: id } = await cliJson<{ client_id: string }>(['client', 'create', '--name', 'Audited app', '--scope', 'objects:read'], env);
      const [first] = (await cliJson<{ secrets: { id: string }[] }>(['client', 'show', id], env)).secrets;
      await cliJson(['client', 'set-jwks', id, jwksFile], env);
      await cliJson(['client', 'set-jwks', id, '--none'], env);
      await cliJson(['client', 'rotate-secret', id], env);
      const [second] = (await cliJson<{ secrets: { id: string }[] }>(['client', 'show', id], env)).secrets;
      await cliJson(['client', 'delete', id], env);

      const events = lines((await runCli(['audit', 'tail', '--limit', '100', '--json'], env)).stdout).filter((e) => e.client_id === id);
      assert.deepEqual(
        events.map((e) => ({ kind: e.kind, outcome: e.outcome, user_id: e.user_id, data: e.data })),
        [
          { kind: 'client.created', outcome: 'success', user_id: null, data: { name: 'Audited app', admin: false, by: 'cli' } },
          { kind: 'client.updated', outcome: 'success', user_id: null, data: { fields: ['jwks'], by: 'cli' } },
          { kind: 'client.updated', outcome: 'success', user_id: null, data: { fields: ['jwks'], by: 'cli' } },
          { kind: 'client_secret.created', outcome: 'success', user_id: null, data: { secret_id: second!.id, by: 'cli' } },
          { kind: 'client_secret.deleted', outcome: 'success', user_id: null, data: { secret_id: first!.id, by: 'cli' } },
          { kind: 'client.deleted', outcome: 'success', user_id: null, data: { by: 'cli' } },
        ],
      );
    });

    it('prints every event since a time with --since, oldest first, however many there are', async () => {
      const start = now - 3 * 86400;
      // More than two pages of 1,000: 2,500 events three days ago, three in each second.
      await writeEvents(Array.from({ length: 2500 }, (_, i) => ({ at: start + Math.floor(i / 3), kind: 'token.issued', outcome: 'success' as const, clientId: 'app_busy', userId: null, data: { i } })));
      const result = await runCli(['audit', 'tail', '--since', String(start), '--json'], env);
      assert.equal(result.code, 0, result.stderr);
      const printed = lines(result.stdout);
      assert.deepEqual(printed.slice(0, 2500).map((e) => e.data.i), Array.from({ length: 2500 }, (_, i) => i));
      // Then the events of the last minutes (and any the tests above recorded), the earliest first.
      assert.deepEqual(printed.slice(2500, 2503).map((e) => e.kind), ['token.issued', 'login.failed', 'admin.client.created']);
      assert.equal(printed.length, await countRows(database, 'audit_events'), 'and the others, every one of them later');
    });
  });
}
