import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { createTestDatabase, DIALECTS, tableSnapshots, type TestDatabase } from '../support/databases.ts';
import { post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, type Env, type ServeProcess } from './support.ts';

describe('gatehouse user update called wrongly', { timeout: 120_000 }, () => {
  const parent = mkdtempSync(join(tmpdir(), 'gatehouse-user-update-'));
  after(() => rmSync(parent, { recursive: true, force: true }));

  it('answers with the message and the usage, exit 2, before the database is opened', async () => {
    const cases: [string[], RegExp][] = [
      [['ada@example.com'], /^gatehouse: user update needs something to change, such as --name NAME or --email-verified\n\nUsage:\n/],
      [['ada@example.com', '--json'], /^gatehouse: user update needs something to change/],
      [['ada@example.com', '--email-verified', '--no-email-verified'], /^gatehouse: user update takes --email-verified or --no-email-verified, not both\n/],
      [['--name', 'Ada'], /^gatehouse: user update needs USER_ID\|EMAIL\n/],
      [['ada@example.com', 'bob@example.com', '--name', 'Ada'], /^gatehouse: user update takes USER_ID\|EMAIL, not also "bob@example\.com"\n/],
      [['ada@example.com', '--name'], /^gatehouse: .*--name/],
      [['ada@example.com', '--name', 'Ada', '--password', 'a long enough password'], /^gatehouse: .*--password/],
    ];
    for (const [i, [args, message]] of cases.entries()) {
      const dataDir = join(parent, `data-${i}`);
      const result = await runCli(['user', 'update', ...args], { GATEHOUSE_DATA_DIR: dataDir });
      const what = `gatehouse user update ${args.join(' ')}`;
      assert.equal(result.code, 2, `${what}: exit ${result.code}\n${result.stderr}`);
      assert.match(result.stderr, message, what);
      assert.match(result.stderr, /\n\nUsage:\n[^]*gatehouse user update USER_ID\|EMAIL \[--name NAME\] \[--email EMAIL\] \[--email-verified \| --no-email-verified\] \[--json\]/, what);
      assert.equal(result.stdout, '', what);
      assert.equal(existsSync(dataDir), false, `${what} created ${dataDir} (the SQLite file or the master secret)`);
    }
  });
});

for (const dialect of DIALECTS) {
  describe(`gatehouse user update (${dialect})`, { timeout: 300_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;
    let env: Env;
    let app: { client_id: string; client_secret: string };

    before(async () => {
      database = await createTestDatabase(dialect);
      env = databaseEnv(database);
      server = await startServe(env);
      app = await cliJson(['client', 'create', '--name', 'Profile reader', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'openid profile email'], env);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    const newUser = (email: string, name = '') => cliJson<{ id: string; email: string }>(['user', 'create', '--email', email, '--password', 'a long enough password', '--name', name], env);
    const show = (key: string) => cliJson(['user', 'show', key], env);
    const update = (key: string, ...args: string[]) => cliJson(['user', 'update', key, ...args], env);
    /** The `user.updated` events of the user, as `audit tail` prints them. */
    const updateEvents = async (userId: string) => {
      const tail = await runCli(['audit', 'tail', '--limit', '1000', '--json'], env);
      assert.equal(tail.code, 0, tail.stderr);
      return tail.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as { kind: string; outcome: string; user_id: string | null; client_id: string | null; data: unknown })
        .filter((event) => event.kind === 'user.updated' && event.user_id === userId)
        .map(({ outcome, client_id, data }) => ({ outcome, client_id, data }));
    };

    it('changes the name, the email and email_verified, each alone, and prints the user as user show does', async () => {
      const user = await newUser('ada@example.com', 'Ada');
      const before = await show(user.id);

      const named = await update(user.email, '--name', '  Ada Lovelace ');
      assert.deepEqual({ ...named, updated_at: undefined }, { ...before, name: 'Ada Lovelace', updated_at: undefined }, 'the name, trimmed as on creation; nothing else');
      assert.deepEqual(await show(user.id), named);

      const verified = await update(user.id, '--email-verified');
      assert.deepEqual({ ...verified, updated_at: undefined }, { ...named, email_verified: true, updated_at: undefined });

      const moved = await update(user.id, '--email', ' Ada.Lovelace@Example.com ');
      assert.deepEqual({ ...moved, updated_at: undefined }, { ...verified, email: 'ada.lovelace@example.com', email_verified: false, updated_at: undefined }, 'a new email is not verified unless the same call says so');
      assert.deepEqual(await show('ada.lovelace@example.com'), moved);
      assert.equal((await runCli(['user', 'show', 'ada@example.com'], env)).code, 1, 'the old email names no one');

      const movedVerified = await update('ada.lovelace@example.com', '--email', 'ada.l@example.com', '--email-verified');
      assert.deepEqual([movedVerified.email, movedVerified.email_verified], ['ada.l@example.com', true]);
      const sameEmail = await update(user.id, '--email', 'ADA.L@example.com');
      assert.equal(sameEmail.email_verified, true, 'the same email, as sign-in matches it, stays verified');

      const unverified = await update(user.id, '--no-email-verified');
      assert.deepEqual({ ...unverified, updated_at: undefined }, { ...movedVerified, email_verified: false, updated_at: undefined });
      const cleared = await update(user.id, '--name', '');
      assert.equal(cleared.name, '', 'an empty name, as on creation');

      const human = await runCli(['user', 'update', user.id, '--name', 'Countess'], env);
      assert.equal(human.code, 0, human.stderr);
      const shownHuman = await runCli(['user', 'show', user.id], env);
      assert.equal(human.stdout, shownHuman.stdout, 'printed as user show prints it');
      assert.match(human.stdout, /^id\s+\S+\nemail\s+ada\.l@example\.com\nname\s+Countess\nemail_verified\s+false\n/);

      assert.deepEqual(await updateEvents(user.id), [
        { outcome: 'success', client_id: null, data: { fields: ['name'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['email_verified'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['email'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['email', 'email_verified'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['email'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['email_verified'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['name'], by: 'cli' } },
        { outcome: 'success', client_id: null, data: { fields: ['name'], by: 'cli' } },
      ]);
    });

    it('refuses an unknown user, a taken, invalid or missing email and a name too long, with one line and exit 1, and changes nothing stored', async () => {
      const user = await newUser('kept@example.com', 'Kept');
      const other = await newUser('other@example.com');
      const snapshots = await tableSnapshots(database);
      try {
        const stored = await snapshots.take();
        const cases: [string[], string][] = [
          [['nobody@example.com', '--name', 'Nobody'], 'gatehouse: no user nobody@example.com'],
          [[user.id, '--email', other.email], 'gatehouse: a user with the email other@example.com exists already'],
          [[user.email, '--email', ' OTHER@example.com', '--email-verified'], 'gatehouse: a user with the email other@example.com exists already'],
          [[user.email, '--email', 'not an email'], 'gatehouse: email: a valid email address is required'],
          [[user.email, '--email', ''], 'gatehouse: email: a valid email address is required'],
          [[user.email, '--name', 'n'.repeat(201)], 'gatehouse: name: the name is longer than 200 characters'],
          [[user.email, '--name', 'n'.repeat(201), '--email', 'renamed@example.com'], 'gatehouse: name: the name is longer than 200 characters'],
        ];
        for (const [args, message] of cases) {
          const result = await runCli(['user', 'update', ...args], env);
          const what = `user update ${args.join(' ')}`;
          assert.equal(result.code, 1, `${what}: exit ${result.code}\n${result.stderr}`);
          assert.equal(oneLine(result), message, what);
          assert.equal(result.stdout, '', what);
        }
        assert.equal(await snapshots.take(), stored, 'nothing stored changed, not even the audit log');
      } finally {
        await snapshots.close();
      }
      assert.deepEqual(await updateEvents(user.id), []);
    });

    it('voids the links sent to the old address when the email changes, and only then', async () => {
      const user = await newUser('linked@example.com');
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      try {
        const now = Math.floor(Date.now() / 1000);
        const digest = randomBytes(32).toString('base64url');
        assert.equal(await gatehouse.storage.emailVerifications.issue({ digest, userId: user.id, email: user.email, createdAt: now, expiresAt: now + 3600 }), true);
        await update(user.id, '--name', 'Linked');
        assert.notEqual(await gatehouse.storage.emailVerifications.find(digest), undefined, 'a change of name leaves the link');
        await update(user.id, '--email', 'moved@example.com');
        assert.equal(await gatehouse.storage.emailVerifications.find(digest), undefined, 'the link to the old address is gone');
        assert.equal(await gatehouse.storage.emailVerifications.redeem(digest, now + 1), undefined);
        assert.equal((await gatehouse.storage.users.findById(user.id))!.emailVerified, false);
      } finally {
        await gatehouse.close();
      }
    });

    it('is what the running server says at once: userinfo answers the token issued before with the new name and email; sub stays', async () => {
      const user = await newUser('reader@example.com', 'Reader');
      const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: app.client_id, client_secret: app.client_secret, username: user.email, password: 'a long enough password', scope: 'openid profile email' });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      const userinfo = async () => {
        const response = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token.body.access_token}` } });
        assert.equal(response.status, 200);
        const claims = (await response.json()) as Record<string, unknown>;
        return [claims.sub, claims.email, claims.email_verified, claims.name];
      };
      assert.deepEqual(await userinfo(), [user.id, 'reader@example.com', false, 'Reader']);

      await update(user.id, '--email', 'new.reader@example.com', '--name', 'New Reader', '--email-verified');
      assert.deepEqual(await userinfo(), [user.id, 'new.reader@example.com', true, 'New Reader']);
      await update(user.id, '--email', 'newer.reader@example.com');
      assert.deepEqual(await userinfo(), [user.id, 'newer.reader@example.com', false, 'New Reader']);
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: app.client_id, client_secret: app.client_secret, refresh_token: token.body.refresh_token });
      assert.equal(refreshed.status, 200, 'the grant stays');
      assert.equal(decodeJwt(refreshed.body.id_token).sub, user.id);
    });
  });
}
