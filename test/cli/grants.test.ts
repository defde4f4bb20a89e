import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { createStorage } from '../../src/storage/kysely/index.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { aGrant, aRefreshToken } from '../support/records.ts';
import { post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, type Env, type ServeProcess } from './support.ts';

const lines = (text: string): any[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));

for (const dialect of DIALECTS) {
  describe(`gatehouse grant list and revoke against a running server (${dialect})`, { timeout: 300_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;
    let env: Env;
    let app: { client_id: string; client_secret: string };
    let other: { client_id: string; client_secret: string };

    before(async () => {
      database = await createTestDatabase(dialect);
      env = databaseEnv(database);
      server = await startServe(env);
      const passwordClient = ['--grant', 'password', '--grant', 'refresh_token', '--scope', 'objects:read bcf:read'];
      app = await cliJson(['client', 'create', '--name', 'Grants app', ...passwordClient], env);
      other = await cliJson(['client', 'create', '--name', 'Other grants app', ...passwordClient], env);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    /** A grant made by the password grant, and its refresh token. */
    const signIn = async (client: typeof app, username: string, password: string) => {
      const response = await post(`${server.url}/token`, { grant_type: 'password', client_id: client.client_id, client_secret: client.client_secret, username, password, scope: 'objects:read' });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body.refresh_token as string;
    };
    const refresh = (client: typeof app, refreshToken: string) =>
      post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: client.client_id, client_secret: client.client_secret, refresh_token: refreshToken });
    const newUser = (email: string) => cliJson<{ id: string; email: string }>(['user', 'create', '--email', email, '--password', 'a grants password'], env);

    if (dialect === 'sqlite') {
      it('lists grants newest first, as the admin API shows them, by user (id or email) and by client, at most --limit', async () => {
        const ada = await newUser('ada@example.com');
        const bob = await newUser('bob@example.com');
        await signIn(app, ada.email, 'a grants password');
        await signIn(other, ada.email, 'a grants password');
        await signIn(app, bob.email, 'a grants password');

        const all = await cliJson<any[]>(['grant', 'list'], env);
        assert.deepEqual(Object.keys(all[0]), ['id', 'client_id', 'user_id', 'kind', 'scopes', 'created_at', 'expires_at', 'revoked_at', 'ends_at', 'status']);
        const made = [
          [app.client_id, ada.id],
          [other.client_id, ada.id],
          [app.client_id, bob.id],
        ];
        assert.deepEqual(all.map((g) => [g.client_id, g.user_id]).sort(), made.sort());
        assert.ok(all.every((g) => g.kind === 'password' && g.scopes.join(' ') === 'objects:read' && g.revoked_at === null));
        // Newest first, and of one second by id, as the admin API pages them (GrantRepository.list).
        const newestFirst = [...all].sort((a, b) => b.created_at.localeCompare(a.created_at) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        assert.deepEqual(all, newestFirst);
        const of = (test: (g: any) => boolean) => all.filter(test);
        const adas = await cliJson<any[]>(['grant', 'list', '--user', 'ADA@example.com'], env);
        assert.deepEqual(adas, of((g) => g.user_id === ada.id), 'by email, matched as sign-in matches it');
        assert.deepEqual(await cliJson(['grant', 'list', '--user', ada.id], env), adas, 'by id');
        assert.deepEqual(await cliJson(['grant', 'list', '--client', app.client_id], env), of((g) => g.client_id === app.client_id));
        assert.deepEqual(await cliJson(['grant', 'list', '--user', ada.email, '--client', other.client_id], env), of((g) => g.user_id === ada.id && g.client_id === other.client_id));
        assert.deepEqual(await cliJson(['grant', 'list', '--limit', '2'], env), all.slice(0, 2));

        const human = await runCli(['grant', 'list', '--limit', '1'], env);
        assert.equal(human.code, 0, human.stderr);
        const printed = human.stdout.trimEnd().split('\n');
        assert.match(printed[0]!, /^ID\s+CLIENT_ID\s+USER_ID\s+KIND\s+SCOPES\s+CREATED\s+STATUS$/);
        assert.match(printed[1]!, new RegExp(`^${all[0].id}\\s+${all[0].client_id}\\s+${all[0].user_id}\\s+password\\s+objects:read\\s+\\S+\\s+active$`));
        assert.match(printed[2]!, /^\(the latest 1; there are more/);
        assert.equal((await runCli(['grant', 'list', '--client', other.client_id, '--user', bob.id], env)).stdout, 'no grants\n');
      });

      it('refuses an unknown grant, user or client with one line and exit 1, and changes nothing', async () => {
        const before = await cliJson(['grant', 'list'], env);
        const cases: [string[], RegExp][] = [
          [['revoke', 'no-such-grant'], /no grant no-such-grant/],
          [['list', '--user', 'nobody@example.com'], /no user nobody@example\.com/],
          [['list', '--client', 'app_does_not_exist'], /no client app_does_not_exist/],
        ];
        for (const [args, expected] of cases) {
          const result = await runCli(['grant', ...args], env);
          assert.equal(result.code, 1, `grant ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
          assert.match(oneLine(result), expected);
          assert.equal(result.stdout, '');
        }
        assert.deepEqual(await cliJson(['grant', 'list'], env), before);
      });
    }

    it('shows a grant past its maximum lifetime or its end as ended, one revoked as revoked, as the token endpoint acts on them and the admin API says', async () => {
      const dave = await newUser('dave@example.com');
      const storage = await createStorage({ databaseUrl: database.databaseUrl, sqlitePath: join(database.dataDir, 'gatehouse.sqlite') });
      // The shipped configuration bounds a grant's refresh tokens to a year from its creation.
      const year = 365 * 86400;
      try {
        // The server's minute sweep deletes ended grants: one that came between the two listings
        // below is told by a grant gone from the database, and the grants are made again.
        for (let attempt = 1; ; attempt++) {
          const now = Math.floor(Date.now() / 1000);
          const grants = {
            active: aGrant(app.client_id, dave.id, { createdAt: now - 60 }),
            pastMaxLifetime: aGrant(app.client_id, dave.id, { createdAt: now - year - 60 }),
            pastItsEnd: aGrant(app.client_id, dave.id, { createdAt: now - 7200, expiresAt: now - 3600 }),
            revoked: aGrant(app.client_id, dave.id, { createdAt: now - 30, revokedAt: now - 10 }),
          };
          for (const grant of Object.values(grants)) await storage.grants.create(grant);
          await storage.refreshTokens.insert(aRefreshToken(grants.pastMaxLifetime, { createdAt: now - 60, expiresAt: now + 3600 }));
          const listed = new Map((await cliJson<any[]>(['grant', 'list', '--user', dave.id], env)).map((g) => [g.id, g]));
          const human = await runCli(['grant', 'list', '--user', dave.id], env);
          const swept = (await Promise.all(Object.values(grants).map((g) => storage.grants.find(g.id)))).some((found) => found === undefined);
          if (swept && attempt < 3) continue;

          assert.deepEqual([...Object.values(grants)].map((g) => listed.get(g.id)?.status), ['active', 'ended', 'ended', 'revoked']);
          assert.equal(listed.get(grants.pastMaxLifetime.id).ends_at, new Date((grants.pastMaxLifetime.createdAt + year) * 1000).toISOString());
          assert.equal(human.code, 0, human.stderr);
          const statusOf = (id: string) => new RegExp(`^${id}\\s.*\\s(\\S+)$`, 'm').exec(human.stdout)?.[1];
          assert.deepEqual(Object.values(grants).map((g) => statusOf(g.id)), ['active', 'ended', 'ended', 'revoked']);
          break;
        }
      } finally {
        await storage.close();
      }
    });

    it('shows the grants of a disabled user as user_disabled, as the token endpoint refuses their refresh, and active once the user is enabled', async () => {
      const erin = await newUser('erin@example.com');
      const refreshToken = await signIn(app, erin.email, 'a grants password');
      const statuses = async () => (await cliJson<any[]>(['grant', 'list', '--user', erin.id], env)).map((g) => g.status);
      assert.deepEqual(await statuses(), ['active']);
      assert.equal((await runCli(['user', 'disable', erin.id], env)).code, 0);
      assert.deepEqual(await statuses(), ['user_disabled']);
      assert.equal((await refresh(app, refreshToken)).body.error, 'invalid_grant');
      const human = await runCli(['grant', 'list', '--user', erin.id], env);
      assert.match(human.stdout, /\suser_disabled$/m);
      assert.equal((await runCli(['user', 'enable', erin.id], env)).code, 0);
      assert.deepEqual(await statuses(), ['active']);
      assert.equal((await refresh(app, refreshToken)).status, 200);
    });

    it('revokes a grant: its refresh token is refused at once, other grants go on; audited once, and a second revoke changes nothing', async () => {
      const carol = await newUser('carol@example.com');
      const revokedToken = await signIn(app, carol.email, 'a grants password');
      const keptToken = await signIn(other, carol.email, 'a grants password');
      const [grant] = await cliJson<any[]>(['grant', 'list', '--user', carol.email, '--client', app.client_id], env);

      const revoked = await cliJson(['grant', 'revoke', grant.id], env);
      assert.deepEqual({ ...revoked, revoked_at: undefined, status: undefined }, { ...grant, revoked_at: undefined, status: undefined });
      assert.equal(revoked.status, 'revoked');
      assert.match(revoked.revoked_at, /^\d{4}-\d\d-\d\dT/);
      const refused = await refresh(app, revokedToken);
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error, 'invalid_grant');
      assert.equal((await refresh(other, keptToken)).status, 200, "the user's other grant goes on");
      assert.equal((await cliJson<any[]>(['grant', 'list', '--user', carol.id, '--client', app.client_id], env))[0].revoked_at, revoked.revoked_at);

      const again = await runCli(['grant', 'revoke', grant.id], env);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout, `${grant.id} was revoked already, at ${revoked.revoked_at}: nothing changed\n`);

      const events = lines((await runCli(['audit', 'tail', '--limit', '200', '--json'], env)).stdout).filter((e) => e.kind === 'grant.revoked');
      assert.deepEqual(
        events.map((e) => ({ client_id: e.client_id, user_id: e.user_id, outcome: e.outcome, data: e.data })),
        [{ client_id: app.client_id, user_id: carol.id, outcome: 'success', data: { grant_id: grant.id, by: 'cli' } }],
      );
    });
  });
}
