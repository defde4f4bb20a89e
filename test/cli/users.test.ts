import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createClient } from '../../src/core/applications.ts';
import { loadConfig } from '../../src/core/config.ts';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { basic, post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, waitFor, writeConfig, type CliResult, type Env, type ServeProcess } from './support.ts';

const FIREFOX_ON_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
const SAFARI_ON_IOS = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1';

/** A browser that sends `userAgent` on every request. */
class UserAgentBrowser extends HttpBrowser {
  readonly #userAgent: string;
  constructor(userAgent: string) {
    super();
    this.#userAgent = userAgent;
  }
  override request(url: string, init: Parameters<HttpBrowser['request']>[1] = {}) {
    return super.request(url, { ...init, headers: { 'user-agent': this.#userAgent, ...init.headers } });
  }
}

/** Short, so a change made by the CLI reaches the running server's client cache quickly. */
const CLIENT_CACHE_TTL_SECONDS = 0.5;

for (const dialect of DIALECTS) {
  describe(`gatehouse user commands against a running server (${dialect})`, { timeout: 420_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;
    let env: Env;
    let app: { client_id: string; client_secret: string };

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { clients: { cacheTtlSeconds: CLIENT_CACHE_TTL_SECONDS } }) };
      server = await startServe(env);
      app = await cliJson(['client', 'create', '--name', 'User commands app', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'objects:read'], env);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    const passwordGrant = (username: string, password: string) =>
      post(`${server.url}/token`, { grant_type: 'password', client_id: app.client_id, client_secret: app.client_secret, username, password });
    const refreshGrant = (refreshToken: string) => post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: app.client_id, client_secret: app.client_secret, refresh_token: refreshToken });
    const newUser = (email: string, password: string) => cliJson<{ id: string; email: string }>(['user', 'create', '--email', email, '--password', password], env);
    /** A browser signed in on the login page, with the session that makes. */
    const signedIn = async (email: string, password: string): Promise<HttpBrowser> => {
      const browser = await signedInBrowser(server.url, email, password);
      assert.equal((await browser.request(`${server.url}/account`)).status, 200);
      return browser;
    };
    const hasSession = async (browser: HttpBrowser) => (await browser.request(`${server.url}/account`)).status === 200;
    const noPasswordIn = (result: CliResult, ...passwords: string[]) => {
      for (const password of passwords) assert.equal(`${result.stdout}${result.stderr}`.includes(password), false, 'no password in the output');
    };

    it('shows a user by email or id, as the admin API shows one, never with the password hash', async () => {
      const { id } = await cliJson(['user', 'create', '--email', 'Shown@Example.com', '--password', 'a long enough password', '--name', 'Shown'], env);
      const shown = await cliJson(['user', 'show', 'shown@example.com'], env);
      assert.deepEqual(Object.keys(shown), ['id', 'email', 'name', 'email_verified', 'disabled', 'disabled_at', 'created_at', 'updated_at']);
      assert.deepEqual({ ...shown, created_at: undefined, updated_at: undefined }, { id, email: 'shown@example.com', name: 'Shown', email_verified: false, disabled: false, disabled_at: null, created_at: undefined, updated_at: undefined });
      assert.match(shown.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      assert.deepEqual(await cliJson(['user', 'show', id], env), shown);
      assert.deepEqual(await cliJson(['user', 'show', ' SHOWN@example.com '], env), shown, 'an email as sign-in matches it');

      const human = await runCli(['user', 'show', id], env);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^id\s+\S+\nemail\s+shown@example\.com\nname\s+Shown\n/);
      assert.match(human.stdout, /\ndisabled_at\s+-\n/);
      assert.equal(/argon2|password/i.test(human.stdout + JSON.stringify(shown)), false);
    });

    it('lists a user’s sessions by email or id, newest first, as the admin API shows them, never their cookie, and escapes what a terminal would act on', async () => {
      const password = 'a sessions password';
      const user = await newUser('sessions@example.com', password);
      assert.deepEqual(await cliJson(['user', 'sessions', user.email], env), []);
      const none = await runCli(['user', 'sessions', user.id], env);
      assert.equal(none.code, 0, none.stderr);
      assert.equal(none.stdout, 'sessions@example.com is signed in nowhere\n');

      const browsers: HttpBrowser[] = [];
      for (const userAgent of [FIREFOX_ON_LINUX, SAFARI_ON_IOS]) browsers.push(await signedInBrowser(server.url, user.email, password, new UserAgentBrowser(userAgent)));
      const sessions = await cliJson<{ sid: string; created_at: string; device: string; address: string; last_used_at: string; auth_time: string; expires_at: string }[]>(['user', 'sessions', user.id], env);
      assert.equal(sessions.length, 2);
      assert.deepEqual(Object.keys(sessions[0]!), ['sid', 'created_at', 'auth_time', 'last_used_at', 'expires_at', 'address', 'device']);
      assert.deepEqual(sessions.map((s) => s.device).sort(), ['Firefox on Linux', 'Safari on iOS']);
      assert.ok(sessions.every((s) => s.address === '127.0.0.1' && /^[0-9a-f]{32}$/.test(s.sid)));
      assert.ok(sessions[0]!.created_at >= sessions[1]!.created_at, 'newest first');
      const human = await runCli(['user', 'sessions', user.email], env);
      assert.equal(human.code, 0, human.stderr);
      const lines = human.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^SID\s+DEVICE\s+ADDRESS\s+SIGNED IN\s+LAST USED\s+EXPIRES$/);
      for (const session of sessions) assert.ok(lines.some((line) => line.startsWith(session.sid) && line.includes(session.device) && line.includes(session.created_at)), session.sid);
      for (const browser of browsers) {
        const cookie = browser.cookies.get('gatehouse_session')!;
        assert.ok(!`${human.stdout}${JSON.stringify(sessions)}`.includes(cookie) && !human.stdout.includes(digestOf(cookie)), 'neither the cookie nor its digest');
      }

      // A stored value with a terminal's escape: the table shows it as text.
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      try {
        const now = Math.floor(Date.now() / 1000) + 60;
        await gatehouse.storage.sessions.create({ digest: digestOf(createOpaqueToken('ss')), sid: 'sid\u001b[2J', userId: user.id, authTime: now, createdAt: now, expiresAt: now + 3600, address: null, device: 'Evil\u001b]0;owned\u0007', lastUsedAt: null });
      } finally {
        await gatehouse.close();
      }
      const escaped = await runCli(['user', 'sessions', user.id], env);
      assert.equal(escaped.code, 0, escaped.stderr);
      assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(escaped.stdout), 'no control character reaches the terminal');
      assert.match(escaped.stdout.split('\n')[1]!, /^sid\\u001b\[2J\s+Evil\\u001b\]0;owned\\u0007\s+-\s/);
    });

    it('enables a user disabled from the shell: they sign in and refresh again', async () => {
      const password = 'an enabled password';
      const user = await newUser('enabled@example.com', password);
      const first = await passwordGrant(user.email, password);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      // Links mailed before (a password reset, an email verification), as the services store them.
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      const now = Math.floor(Date.now() / 1000);
      const [reset, verification] = [digestOf(createOpaqueToken('pr')), digestOf(createOpaqueToken('ev'))];
      try {
        assert.equal(await gatehouse.storage.passwordResets.issue({ digest: reset, userId: user.id, createdAt: now, expiresAt: now + 1800 }), true);
        assert.equal(await gatehouse.storage.emailVerifications.issue({ digest: verification, userId: user.id, email: user.email, createdAt: now, expiresAt: now + 86_400 }), true);
      } finally {
        await gatehouse.close();
      }
      await cliJson(['user', 'disable', user.email], env);
      assert.equal((await passwordGrant(user.email, password)).body.error, 'invalid_grant');
      assert.equal((await cliJson(['user', 'show', user.id], env)).disabled, true);

      assert.deepEqual(await cliJson(['user', 'enable', user.id], env), { id: user.id, email: user.email, disabled: false });
      const shown = await cliJson(['user', 'show', user.email], env);
      assert.equal(shown.disabled, false);
      assert.equal(shown.disabled_at, null);
      assert.equal((await passwordGrant(user.email, password)).status, 200);
      assert.equal((await refreshGrant(first.body.refresh_token)).status, 200, 'the grant given before works again');
      // The links mailed before the disabling do not come back with the user.
      const reopened = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      try {
        assert.equal(await reopened.storage.passwordResets.find(reset), undefined);
        assert.equal(await reopened.storage.emailVerifications.find(verification), undefined);
      } finally {
        await reopened.close();
      }
      // Enabling an enabled user changes nothing and is no error.
      assert.deepEqual(await cliJson(['user', 'enable', user.email], env), { id: user.id, email: user.email, disabled: false });
      const human = await runCli(['user', 'disable', user.email], env);
      assert.match(human.stdout, /^disabled enabled@example\.com: /);
      assert.match((await runCli(['user', 'enable', user.email], env)).stdout, /^enabled enabled@example\.com: it can sign in again/);
    });

    it('sets a password with set-password, from the command line or standard input, and signs the user out everywhere; grants stay', async () => {
      const [old, fromArgument, fromStdin] = ['the old password', 'the password from an argument', 'the password from stdin'];
      const user = await newUser('reset@example.com', old);
      const token = await passwordGrant(user.email, old);
      assert.equal(token.status, 200);
      const [laptop, phone] = [await signedIn(user.email, old), await signedIn(user.email, old)];
      const other = await newUser('bystander@example.com', 'a bystander password');
      const bystander = await signedIn(other.email, 'a bystander password');

      const set = await runCli(['user', 'set-password', user.email, '--password', fromArgument, '--json'], env);
      assert.equal(set.code, 0, set.stderr);
      assert.deepEqual(JSON.parse(set.stdout), { id: user.id, email: user.email, signed_out: true });
      noPasswordIn(set, old, fromArgument);
      assert.equal(await hasSession(laptop), false, 'the session ended');
      assert.equal(await hasSession(phone), false, 'every session ended');
      assert.equal(await hasSession(bystander), true, 'another user stays signed in');
      assert.equal((await passwordGrant(user.email, old)).body.error, 'invalid_grant', 'the old password signs in no more');
      assert.equal((await passwordGrant(user.email, fromArgument)).status, 200);
      assert.equal((await refreshGrant(token.body.refresh_token)).status, 200, 'grants stay');

      const tablet = await signedIn(user.email, fromArgument);
      const piped = await runCli(['user', 'set-password', user.id, '--password-stdin'], env, 60_000, `${fromStdin}\n`);
      assert.equal(piped.code, 0, piped.stderr);
      assert.match(piped.stdout, /^set the password of reset@example\.com, and signed them out everywhere/);
      noPasswordIn(piped, fromArgument, fromStdin);
      assert.equal(await hasSession(tablet), false);
      assert.equal((await passwordGrant(user.email, fromArgument)).status, 400);
      assert.equal((await passwordGrant(user.email, fromStdin)).status, 200);
    });

    it('refuses set-password for an unknown user, without a password, with both or with a weak one, and changes nothing', async () => {
      const password = 'the password that stays';
      const user = await newUser('kept-password@example.com', password);
      const browser = await signedIn(user.email, password);
      const cases: { args: string[]; input?: string; code: number; message: RegExp }[] = [
        { args: ['nobody@example.com', '--password', 'a long enough password'], code: 1, message: /^gatehouse: no user nobody@example\.com$/ },
        { args: [user.email], code: 2, message: /^gatehouse: user set-password needs --password PASSWORD or --password-stdin\n\nUsage:/ },
        { args: [user.email, '--password', 'a long enough password', '--password-stdin'], input: 'another long password\n', code: 2, message: /^gatehouse: user set-password takes --password or --password-stdin, not both\n\nUsage:/ },
        { args: [user.email, '--password', 'short'], code: 1, message: /^gatehouse: password: the password must be at least 8 characters long$/ },
        { args: [user.email, '--password-stdin'], input: 'short\n', code: 1, message: /^gatehouse: password: / },
        { args: [user.email, '--password-stdin'], input: '\n', code: 2, message: /^gatehouse: --password-stdin read no password/ },
        { args: [user.email, '--password'], code: 2, message: /^gatehouse: .*--password/ },
        { args: ['--password', 'a long enough password'], code: 2, message: /^gatehouse: user set-password needs USER_ID\|EMAIL/ },
        { args: [user.email, 'other@example.com', '--password', 'a long enough password'], code: 2, message: /^gatehouse: user set-password takes USER_ID\|EMAIL, not also "other@example\.com"/ },
      ];
      for (const { args, input, code, message } of cases) {
        const result = await runCli(['user', 'set-password', ...args], env, 60_000, input);
        const what = `user set-password ${args.join(' ')}`;
        assert.equal(result.code, code, `${what}: exit ${result.code}\n${result.stderr}`);
        assert.match(code === 1 ? oneLine(result) : result.stderr, message, what);
        assert.equal(result.stdout, '', what);
        assert.equal(/\n\s+at /.test(result.stderr), false, `${what}: no stack trace`);
        noPasswordIn(result, 'a long enough password', 'another long password');
      }
      assert.equal((await passwordGrant(user.email, password)).status, 200, 'the password stays');
      assert.equal(await hasSession(browser), true, 'the session stays');
    });

    it('signs a user out everywhere with sign-out, and only that: their password and grants stay', async () => {
      const password = 'a signed-out password';
      const user = await newUser('signed-out@example.com', password);
      const token = await passwordGrant(user.email, password);
      const [laptop, phone] = [await signedIn(user.email, password), await signedIn(user.email, password)];
      const other = await newUser('still-in@example.com', 'a password kept signed in');
      const bystander = await signedIn(other.email, 'a password kept signed in');

      assert.deepEqual(await cliJson(['user', 'sign-out', user.email], env), { id: user.id, email: user.email, signed_out: true });
      assert.equal(await hasSession(laptop), false);
      assert.equal(await hasSession(phone), false);
      assert.equal(await hasSession(bystander), true, 'another user stays signed in');
      assert.equal((await passwordGrant(user.email, password)).status, 200, 'the password stays');
      assert.equal((await refreshGrant(token.body.refresh_token)).status, 200, 'grants stay');
      // A user with no session: nothing to end, and no error.
      const again = await runCli(['user', 'sign-out', user.id], env);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /^signed signed-out@example\.com out everywhere/);
    });

    it('deletes a user with their grants and the applications they registered, which stop working', async () => {
      const password = 'a deleted password';
      const user = await newUser('deleted@example.com', password);
      const token = await passwordGrant(user.email, password);
      const browser = await signedIn(user.email, password);
      // An application the user registered, as the developer portal registers one.
      const gatehouse = await createGatehouse(loadConfig(env), { background: false, logger: pino({ level: 'silent' }) });
      const owned = await createClient(gatehouse, { name: 'Owned tool', type: 'confidential', ownerUserId: user.id, grantTypes: ['client_credentials'], scopes: ['objects:read'] }, Math.floor(Date.now() / 1000)).finally(() => gatehouse.close());
      const ownedToken = () => post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(owned.client.id, owned.secret!) } });
      assert.equal((await ownedToken()).status, 200);

      assert.deepEqual(await cliJson(['user', 'delete', user.email], env), { deleted: user.id, email: user.email, client_ids: [owned.client.id] });
      assert.equal(await hasSession(browser), false);
      assert.equal((await passwordGrant(user.email, password)).body.error, 'invalid_grant');
      assert.equal((await refreshGrant(token.body.refresh_token)).body.error, 'invalid_grant');
      await waitFor('the deleted user’s application to be refused', async () => ((await ownedToken()).status === 401 ? true : undefined));
      assert.equal((await cliJson<{ client_id: string }[]>(['client', 'list'], env)).some((c) => c.client_id === owned.client.id), false);
      assert.equal((await cliJson<{ id: string }[]>(['user', 'list'], env)).some((u) => u.id === user.id), false);

      for (const args of [['show', user.email], ['show', user.id], ['delete', user.id], ['enable', user.email], ['sign-out', user.id]]) {
        const result = await runCli(['user', ...args], env);
        assert.equal(result.code, 1, `user ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.equal(oneLine(result), `gatehouse: no user ${args[1]}`);
        assert.equal(result.stdout, '');
      }

      const human = await runCli(['user', 'delete', (await newUser('deleted-too@example.com', password)).id], env);
      assert.equal(human.code, 0, human.stderr);
      assert.equal(human.stdout, 'deleted deleted-too@example.com with their sessions, consents, grants and refresh tokens\n');
    });

    it('refuses a missing, extra or unknown argument with the usage and exit 2, and does nothing: delete --dry-run deletes no one', async () => {
      const user = await newUser('usage@example.com', 'a usage password');
      const browser = await signedIn(user.email, 'a usage password');
      const refused = async (...commands: string[][]) => {
        for (const args of commands) {
          const result = await runCli(['user', ...args], env);
          assert.equal(result.code, 2, `user ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
          assert.match(result.stderr, /^gatehouse: .*\n\nUsage:\n/);
          assert.ok(result.stderr.includes('gatehouse user set-password USER_ID|EMAIL (--password PASSWORD | --password-stdin)'), 'the usage lists the user commands');
          assert.equal(result.stdout, '');
        }
      };
      await refused(['show'], ['show', user.email, 'other@example.com'], ['sign-out', user.email, 'other@example.com'], ['sign-out', user.email, '--password', 'a long enough password'], ['delete', user.email, '--dry-run'], ['delete']);
      assert.equal(await hasSession(browser), true, 'sign-out ended nothing');
      // Disabling ends the user's sessions (their applications are told), so the refused enables come after.
      await cliJson(['user', 'disable', user.email], env);
      await refused(['enable'], ['enable', user.email, '--dry-run']);
      const shown = await cliJson(['user', 'show', user.id], env);
      assert.equal(shown.disabled, true, 'enable enabled no one');
      await cliJson(['user', 'enable', user.id], env);
      assert.equal((await cliJson(['user', 'show', user.id], env)).disabled, false);
    });
  });
}
