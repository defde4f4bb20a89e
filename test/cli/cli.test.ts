import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, SignJWT } from 'jose';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { basic, post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, waitFor, writeConfig, type Env, type ServeProcess } from './support.ts';

/** Short, so a change made by the CLI reaches the running server's client cache quickly. */
const CLIENT_CACHE_TTL_SECONDS = 0.5;

for (const dialect of DIALECTS) {
  describe(`gatehouse CLI against a running server (${dialect})`, { timeout: 600_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;
    let env: Env;

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { clients: { cacheTtlSeconds: CLIENT_CACHE_TTL_SECONDS } }) };
      server = await startServe(env);
      env.PORT = String(server.port);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    const clientCredentials = (id: string, secret: string, scope?: string) =>
      post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(id, secret) } });
    const passwordGrant = (id: string, secret: string, username: string, password: string) =>
      post(`${server.url}/access_token`, { grant_type: 'password', client_id: id, client_secret: secret, username, password }, { json: true });
    const refreshGrant = (id: string, secret: string, refreshToken: string) =>
      post(`${server.url}/access_token`, { grant_type: 'refresh_token', client_id: id, client_secret: secret, refresh_token: refreshToken }, { json: true });

    it('prints exactly {client_id, client_secret} for a confidential client, usable by the running server at once', async () => {
      const created = await cliJson(['client', 'create', '--name', 'Nightly export', '--scope', 'objects:read bcf:read'], env);
      assert.deepEqual(Object.keys(created).sort(), ['client_id', 'client_secret']);
      assert.match(created.client_id, /^app_/);
      assert.match(created.client_secret, /^gate_cs_/);

      // No waiting: an unknown client is never cached, so the first request already sees it.
      const response = await clientCredentials(created.client_id, created.client_secret, 'bcf:read');
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.token_type, 'Bearer');
      assert.equal(response.body.scope, 'bcf:read');
      assert.equal(response.body.refresh_token, undefined);
      const claims = decodeJwt(response.body.access_token);
      assert.equal(claims.client_id, created.client_id);
      assert.equal(claims.scope, 'bcf:read');
    });

    it('prints only {client_id} for a public client', async () => {
      const created = await cliJson(
        ['client', 'create', '--name', 'Single-page app', '--type', 'public', '--grant', 'authorization_code', '--redirect-uri', 'https://spa.example.com/callback', '--scope', 'openid profile'],
        env,
      );
      assert.deepEqual(Object.keys(created), ['client_id']);
      const shown = await cliJson(['client', 'show', created.client_id], env);
      assert.equal(shown.type, 'public');
      assert.deepEqual(shown.secrets, []);
      assert.deepEqual(shown.redirect_uris, ['https://spa.example.com/callback']);
    });

    it('creates a password-grant client and a user that get tokens and refresh at once', async () => {
      const client = await cliJson(
        ['client', 'create', '--name', 'First-party mobile app', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'objects:read', '--first-party'],
        env,
      );
      const user = await cliJson(['user', 'create', '--email', 'Ada@Example.com', '--password', 'correct horse battery', '--name', 'Ada'], env);
      assert.deepEqual(Object.keys(user).sort(), ['email', 'id']);
      assert.equal(user.email, 'ada@example.com');

      const first = await passwordGrant(client.client_id, client.client_secret, 'ada@example.com', 'correct horse battery');
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.match(first.body.refresh_token, /^gate_rt_/);
      const claims = decodeJwt(first.body.access_token);
      assert.equal(claims.sub, user.id);
      assert.equal(claims.scope, 'objects:read');

      const refreshed = await refreshGrant(client.client_id, client.client_secret, first.body.refresh_token);
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.notEqual(refreshed.body.refresh_token, first.body.refresh_token);
      assert.equal(decodeJwt(refreshed.body.access_token).sub, user.id);
    });

    it('generates and prints a password when user create is given none', async () => {
      const client = await cliJson(['client', 'create', '--name', 'Generated-password app', '--grant', 'password', '--scope', 'objects:read'], env);
      const user = await cliJson(['user', 'create', '--email', 'generated@example.com'], env);
      assert.deepEqual(Object.keys(user).sort(), ['email', 'id', 'password']);
      assert.ok(user.password.length >= 12);
      const response = await passwordGrant(client.client_id, client.client_secret, user.email, user.password);
      assert.equal(response.status, 200, JSON.stringify(response.body));
      // The client has no refresh_token grant: no refresh token.
      assert.equal(response.body.refresh_token, undefined);
    });

    it('takes the password from standard input with --password-stdin, keeping it off the command line', async () => {
      const client = await cliJson(['client', 'create', '--name', 'Stdin-password app', '--grant', 'password', '--scope', 'objects:read'], env);
      const password = 'a password nobody saw in ps';
      const created = await runCli(['user', 'create', '--email', 'stdin@example.com', '--password-stdin', '--json'], env, 60_000, `${password}\n`);
      assert.equal(created.code, 0, created.stderr);
      const user = JSON.parse(created.stdout);
      assert.deepEqual(Object.keys(user).sort(), ['email', 'id'], 'the password is not printed');
      assert.equal((await passwordGrant(client.client_id, client.client_secret, user.email, password)).status, 200);

      for (const [args, input, message] of [
        [['--password', 'x', '--password-stdin'], `${password}\n`, /not both/],
        [['--password-stdin'], '\n', /no password/],
        [['--password-stdin'], 'first line\nsecond line\n', /one line/],
      ] as const) {
        const refused = await runCli(['user', 'create', '--email', 'refused-stdin@example.com', ...args], env, 60_000, input);
        assert.equal(refused.code, 2, refused.stderr);
        assert.match(refused.stderr, message);
      }
      assert.equal((await cliJson<any[]>(['user', 'list'], env)).some((u) => u.email === 'refused-stdin@example.com'), false, 'nothing stored');
    });

    it('lists and shows clients as JSON', async () => {
      const created = await cliJson(
        ['client', 'create', '--name', 'Listed app', '--scope', 'objects:read model:read', '--default-scope', 'model:read', '--description', 'shown in the list'],
        env,
      );
      const list = await cliJson<any[]>(['client', 'list'], env);
      assert.ok(Array.isArray(list));
      // The demo clients seeded by the first start are there too.
      assert.ok(list.some((c) => c.name === 'Demo application'));
      const listed = list.find((c) => c.client_id === created.client_id);
      assert.ok(listed, 'the new client is listed');
      assert.equal(listed.name, 'Listed app');
      assert.equal(listed.type, 'confidential');
      assert.deepEqual(listed.grant_types, ['client_credentials']);
      assert.deepEqual(listed.scopes, ['objects:read', 'model:read']);
      assert.deepEqual(listed.default_scopes, ['model:read']);
      assert.equal(listed.admin, false);
      assert.equal(JSON.stringify(list).includes('gate_cs_'), false, 'no secret in the list');

      const shown = await cliJson(['client', 'show', created.client_id], env);
      assert.equal(shown.client_id, created.client_id);
      assert.equal(shown.description, 'shown in the list');
      assert.equal(shown.secrets.length, 1);
      assert.equal(shown.secrets[0].hint, `…${created.client_secret.slice(-4)}`);
      assert.equal(JSON.stringify(shown).includes(created.client_secret), false, 'the secret itself is never shown again');
      // A secret without expiry: null, as the admin API and client secret list print it, for scripts to test.
      assert.equal(shown.secrets[0].expires_at, null);
      const human = await runCli(['client', 'show', created.client_id], env);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^secrets\s+\[\{.*"expires_at":"-"\}\]$/m, 'the human form keeps its dash');

      // The human form is a table with a header row.
      const table = await runCli(['client', 'list'], env);
      assert.equal(table.code, 0);
      assert.match(table.stdout, /^CLIENT_ID\s+NAME\s+TYPE\s+GRANTS\s+FLAGS/);
      assert.ok(table.stdout.includes(created.client_id));
    });

    it('registers client keys from a file: the client signs in with private_key_jwt until set-jwks --none', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwksFile = join(database.dataDir, 'client-keys.json');
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1' }] }));
      const created = await cliJson(['client', 'create', '--name', 'Key app', '--scope', 'objects:read', '--jwks', jwksFile], env);
      // As a client library does: the audience is the token endpoint the server's metadata names.
      const { token_endpoint: audience } = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as { token_endpoint: string };
      const signIn = async () => {
        const now = Math.floor(Date.now() / 1000);
        const assertion = await new SignJWT({ iss: created.client_id, sub: created.client_id, aud: audience, exp: now + 60, jti: randomUUID() })
          .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
          .sign(privateKey);
        return post(`${server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
      };
      assert.equal((await signIn()).status, 200);
      assert.deepEqual(await cliJson(['client', 'set-jwks', created.client_id, '--none'], env), { client_id: created.client_id, keys: 0 });
      await waitFor('the removed keys to stop working', async () => ((await signIn()).status === 401 ? true : undefined));

      // A private key is refused with the field named, exit 1, and nothing changes.
      writeFileSync(jwksFile, JSON.stringify({ keys: [privateKey.export({ format: 'jwk' })] }));
      const refused = await runCli(['client', 'set-jwks', created.client_id, jwksFile], env);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /jwks: .*private or secret key material/);
      assert.equal((await cliJson(['client', 'show', created.client_id], env)).jwks, null);

      // So is an RSA key with a public exponent other than 65537, which costs more to verify with.
      const exponent3 = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey.export({ format: 'jwk' });
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...exponent3, kid: 'e3' }] }));
      const slowKey = await runCli(['client', 'set-jwks', created.client_id, jwksFile], env);
      assert.equal(slowKey.code, 1);
      assert.match(oneLine(slowKey), /^gatehouse: jwks: key 1 \(kid "e3"\): RSA keys must have the public exponent 65537/);
      assert.equal((await cliJson(['client', 'show', created.client_id], env)).jwks, null);
    });

    it('refuses a key file holding null, as any other JSON that is not a JWK Set, with one line and exit 1: only --none removes keys', async () => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwksFile = join(database.dataDir, 'kept-keys.json');
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'kept' }] }));
      const created = await cliJson(['client', 'create', '--name', 'Kept keys', '--scope', 'objects:read', '--jwks', jwksFile], env);
      const before = (await cliJson<any[]>(['client', 'list'], env)).length;
      for (const content of ['null', '"str"', '[1]']) {
        writeFileSync(jwksFile, content);
        for (const args of [
          ['client', 'set-jwks', created.client_id, jwksFile],
          ['client', 'create', '--name', 'Null keys', '--scope', 'objects:read', '--jwks', jwksFile],
        ]) {
          const refused = await runCli(args, env);
          assert.equal(refused.code, 1, `${content}: gatehouse ${args.join(' ')}: exit ${refused.code}\n${refused.stdout}${refused.stderr}`);
          assert.match(oneLine(refused), /^gatehouse: jwks: .*JWK Set/, content);
          assert.equal(refused.stdout, '');
        }
      }
      assert.deepEqual((await cliJson(['client', 'show', created.client_id], env)).jwks.keys.map((k: { kid: string }) => k.kid), ['kept']);
      assert.equal((await cliJson<any[]>(['client', 'list'], env)).length, before, 'no client was created');
    });

    it('rotate-secret gives a new secret and the old one stops working against the running server', async () => {
      const created = await cliJson(['client', 'create', '--name', 'Rotating app', '--scope', 'objects:read'], env);
      // Warm the server's client cache with the old secret.
      assert.equal((await clientCredentials(created.client_id, created.client_secret)).status, 200);

      const rotated = await cliJson(['client', 'rotate-secret', created.client_id], env);
      assert.deepEqual(Object.keys(rotated).sort(), ['client_id', 'client_secret']);
      assert.equal(rotated.client_id, created.client_id);
      assert.match(rotated.client_secret, /^gate_cs_/);
      assert.notEqual(rotated.client_secret, created.client_secret);

      // The server sees the change once its cache entry expires (clients.cacheTtlSeconds).
      await waitFor('the rotated secret to replace the old one', async () => {
        const [oldSecret, newSecret] = await Promise.all([clientCredentials(created.client_id, created.client_secret), clientCredentials(created.client_id, rotated.client_secret)]);
        return oldSecret.status === 401 && newSecret.status === 200 ? true : undefined;
      });
      const refused = await clientCredentials(created.client_id, created.client_secret);
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error, 'invalid_client');
      assert.equal((await clientCredentials(created.client_id, rotated.client_secret)).status, 200);

      const shown = await cliJson(['client', 'show', created.client_id], env);
      assert.equal(shown.secrets.length, 1);
      assert.equal(shown.secrets[0].hint, `…${rotated.client_secret.slice(-4)}`);
    });

    it('delete removes a client: its credentials stop working and show no longer finds it', async () => {
      const created = await cliJson(['client', 'create', '--name', 'Doomed app', '--scope', 'objects:read'], env);
      assert.equal((await clientCredentials(created.client_id, created.client_secret)).status, 200);

      assert.deepEqual(await cliJson(['client', 'delete', created.client_id], env), { deleted: created.client_id });
      await waitFor('the deleted client to be refused', async () => ((await clientCredentials(created.client_id, created.client_secret)).status === 401 ? true : undefined));
      assert.equal((await clientCredentials(created.client_id, created.client_secret)).body.error, 'invalid_client');

      const list = await cliJson<any[]>(['client', 'list'], env);
      assert.equal(list.some((c) => c.client_id === created.client_id), false);
      const show = await runCli(['client', 'show', created.client_id], env);
      assert.equal(show.code, 1);
      assert.ok(oneLine(show).includes(created.client_id));
      const again = await runCli(['client', 'delete', created.client_id], env);
      assert.equal(again.code, 1);
      assert.ok(oneLine(again).includes(created.client_id));
    });

    it('manages a resource server with an operator’s full power, as any other client: keys, a new secret, deletion', async () => {
      const created = await cliJson(['client', 'create', '--name', 'Models API', '--scope', 'objects:read', '--resource-server'], env);
      assert.equal((await cliJson(['client', 'show', created.client_id], env)).resource_server, true);
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwksFile = join(database.dataDir, 'api-keys.json');
      writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'api-1' }] }));
      assert.deepEqual(await cliJson(['client', 'set-jwks', created.client_id, jwksFile], env), { client_id: created.client_id, keys: 1 });
      const rotated = await cliJson(['client', 'rotate-secret', created.client_id], env);
      assert.match(rotated.client_secret, /^gate_cs_/);
      assert.deepEqual(await cliJson(['client', 'delete', created.client_id], env), { deleted: created.client_id });
    });

    it('lists users, and a disabled user can neither sign in nor refresh', async () => {
      const client = await cliJson(['client', 'create', '--name', 'Disable test app', '--grant', 'password', '--grant', 'refresh_token', '--scope', 'objects:read'], env);
      const user = await cliJson(['user', 'create', '--email', 'grace@example.com', '--password', 'a long enough password', '--name', 'Grace'], env);
      const signedIn = await passwordGrant(client.client_id, client.client_secret, user.email, 'a long enough password');
      assert.equal(signedIn.status, 200, JSON.stringify(signedIn.body));

      let users = await cliJson<any[]>(['user', 'list'], env);
      const listed = users.find((u) => u.id === user.id);
      assert.deepEqual({ ...listed, created_at: undefined }, { id: user.id, email: 'grace@example.com', name: 'Grace', disabled: false, created_at: undefined });
      assert.equal(JSON.stringify(users).includes('argon2'), false, 'no password hash in the list');

      assert.deepEqual(await cliJson(['user', 'disable', 'grace@example.com'], env), { id: user.id, email: user.email, disabled: true });
      users = await cliJson<any[]>(['user', 'list'], env);
      assert.equal(users.find((u) => u.id === user.id).disabled, true);

      const refused = await passwordGrant(client.client_id, client.client_secret, user.email, 'a long enough password');
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error, 'invalid_grant');
      const refresh = await refreshGrant(client.client_id, client.client_secret, signedIn.body.refresh_token);
      assert.equal(refresh.status, 400);
      assert.equal(refresh.body.error, 'invalid_grant');

      // By id works as well as by email.
      const byId = await runCli(['user', 'disable', user.id, '--json'], env);
      assert.equal(byId.code, 0, byId.stderr);
      const unknown = await runCli(['user', 'disable', 'nobody@example.com'], env);
      assert.equal(unknown.code, 1);
      assert.ok(oneLine(unknown).includes('nobody@example.com'));
    });

    it('keys list shows the active and next key of each use, all published in /jwks.json', async () => {
      const keys = await cliJson<any[]>(['keys', 'list'], env);
      const jwks = (await (await fetch(`${server.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
      for (const [use, alg] of [['access', 'ES256'], ['id', 'RS256']] as const) {
        const ofUse = keys.filter((k) => k.use === use);
        assert.deepEqual(ofUse.map((k) => k.state).sort(), ['active', 'next'], `${use} keys`);
        for (const key of ofUse) {
          assert.equal(key.alg, alg);
          assert.ok(jwks.keys.some((k) => k.kid === key.kid), `${key.kid} is published`);
        }
      }
      assert.equal(JSON.stringify(keys).includes('"d"'), false, 'no private key material');
      // What has not happened is null in JSON, as the admin API says it, and a dash only in the table.
      const next = keys.find((k) => k.use === 'access' && k.state === 'next');
      assert.deepEqual([next.activated_at, next.retired_at, next.published_until], [null, null, null]);
      const human = await runCli(['keys', 'list'], env);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, new RegExp(`^${next.kid}\\s+access\\s+ES256\\s+next\\s+\\S+\\s+-$`, 'm'));
    });

    it('exits with 2 and the usage on a usage error', async () => {
      const cases = [
        ['frobnicate'],
        ['client'],
        ['client', 'frobnicate'],
        ['client', 'create'],
        ['client', 'create', '--name', 'x', '--bogus'],
        ['client', 'create', '--name', 'x', '--grant'],
        ['client', 'show'],
        ['client', 'delete'],
        ['client', 'rotate-secret'],
        ['user', 'create'],
        ['user', 'create', '--email', 'usage@example.com', '--admin'],
        ['user', 'disable'],
        ['user', 'frobnicate'],
        ['keys', 'frobnicate'],
        ['client', 'list', '--limit'],
        ['client', 'show', 'app_one', 'app_two'],
        ['client', 'rotate-secret', 'app_one', '--keep-old'],
        ['user', 'list', '--disabled'],
        ['user', 'disable', 'usage@example.com', 'other@example.com'],
        ['keys', 'list', '--all'],
        ['keys', 'rotate', 'now'],
        ['apikey', 'list', 'app_one', '--name', 'x'],
        ['apikey', 'revoke', 'app_one', 'key_one', 'key_two'],
      ];
      for (const args of cases) {
        const result = await runCli(args, env);
        assert.equal(result.code, 2, `gatehouse ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.match(result.stderr, /^gatehouse: /, args.join(' '));
        assert.ok(result.stderr.includes('Usage:'), `gatehouse ${args.join(' ')} prints the usage`);
        assert.equal(result.stdout, '');
      }
    });

    it('refuses an option or argument a command does not take with exit 2, and does nothing: delete --dry-run deletes nothing, disable --dry-run disables no one', async () => {
      const created = await cliJson<{ client_id: string }>(['client', 'create', '--name', 'Kept'], env);
      await cliJson(['user', 'create', '--email', 'kept@example.com', '--password', 'long enough password'], env);
      for (const args of [
        ['client', 'delete', created.client_id, '--dry-run'],
        ['client', 'delete', created.client_id, 'app_another'],
        ['user', 'disable', 'kept@example.com', '--dry-run'],
      ]) {
        const result = await runCli(args, env);
        assert.equal(result.code, 2, `gatehouse ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.match(result.stderr, /^gatehouse: /);
        assert.equal(result.stdout, '');
      }
      assert.equal((await cliJson<{ client_id: string }>(['client', 'show', created.client_id], env)).client_id, created.client_id);
      assert.equal((await cliJson<{ email: string; disabled: boolean }[]>(['user', 'list'], env)).find((u) => u.email === 'kept@example.com')!.disabled, false);
      // --json may come anywhere.
      assert.deepEqual(await cliJson(['client', 'delete', '--json', created.client_id], env), { deleted: created.client_id });
    });

    it('exits with 1 and one line naming the problem on a validation error, and creates nothing', async () => {
      const before = (await cliJson<any[]>(['client', 'list'], env)).length;
      const usersBefore = (await cliJson<any[]>(['user', 'list'], env)).length;
      const cases: [string[], RegExp][] = [
        [['client', 'create', '--name', 'x', '--scope', 'objects:read no:such:scope'], /scopes: unknown scope "no:such:scope"/],
        [['client', 'create', '--name', 'x', '--admin', '--scope', 'admin:clients objects:read'], /scopes: .*admin.*"objects:read"/],
        [['client', 'create', '--name', 'x', '--scope', 'admin:users'], /scopes: .*"admin:users".*admin/],
        [['client', 'create', '--name', 'x', '--type', 'public', '--grant', 'client_credentials'], /grant_types: .*public.*client_credentials/],
        [['client', 'create', '--name', 'x', '--type', 'public', '--grant', 'password'], /grant_types: .*public.*password/],
        [['client', 'create', '--name', 'x', '--type', 'secretive'], /type: .*confidential or public/],
        [['client', 'create', '--name', 'x', '--grant', 'magic'], /grant_types: .*"magic"/],
        [['client', 'create', '--name', 'x', '--grant', 'authorization_code', '--scope', 'openid'], /redirect_uris: /],
        [['client', 'create', '--name', 'x', '--grant', 'authorization_code', '--redirect-uri', 'not a url'], /redirect_uris: .*"not a url"/],
        [['client', 'create', '--name', 'x', '--grant', 'authorization_code', '--redirect-uri', 'http://app.example/cb'], /redirect_uris: .*"http:\/\/app\.example\/cb" must use https/],
        [['client', 'create', '--name', 'x', '--grant', 'authorization_code', '--redirect-uri', 'https://*.example.com/cb'], /redirect_uris: .*"https:\/\/\*\.example\.com\/cb" .*wildcard/],
        [
          ['client', 'create', '--name', 'x', '--grant', 'authorization_code', '--redirect-uri', 'https://app.example/cb', '--post-logout-redirect-uri', 'https://user:pw@app.example/'],
          /post_logout_redirect_uris: .*"https:\/\/user:pw@app\.example\/" .*user name or password/,
        ],
        [['client', 'create', '--name', 'x', '--scope', 'objects:read', '--default-scope', 'bcf:read'], /default_scopes: .*"bcf:read"/],
        [['user', 'create', '--email', 'not-an-email', '--password', 'long enough password'], /email: /],
        [['user', 'create', '--email', 'zero\u200bwidth@example.com', '--password', 'long enough password'], /email: /],
        [['user', 'create', '--email', 'bell\u0007@example.com', '--password', 'long enough password'], /email: /],
        [['user', 'create', '--email', 'short@example.com', '--password', 'short'], /password: .*8 characters/],
        [['user', 'create', '--email', 'named@example.com', '--password', 'long enough password', '--name', 'x'.repeat(201)], /name: the name is longer than 200 characters/],
        [['client', 'show', 'app_does_not_exist'], /app_does_not_exist/],
        [['client', 'rotate-secret', 'app_does_not_exist'], /app_does_not_exist/],
      ];
      for (const [args, expected] of cases) {
        const result = await runCli(args, env);
        assert.equal(result.code, 1, `gatehouse ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.match(oneLine(result), expected, args.join(' '));
        assert.equal(result.stdout, '');
      }

      // A taken email and a public client's secret are refused the same way.
      await cliJson(['user', 'create', '--email', 'taken@example.com', '--password', 'long enough password'], env);
      const taken = await runCli(['user', 'create', '--email', 'Taken@example.com', '--password', 'long enough password'], env);
      assert.equal(taken.code, 1);
      assert.match(oneLine(taken), /taken@example\.com/i);
      // One address however its accents are composed: é, or e and a combining accent.
      await cliJson(['user', 'create', '--email', 'josé@example.com'.normalize('NFC'), '--password', 'long enough password'], env);
      const decomposed = await runCli(['user', 'create', '--email', 'JOSÉ@example.com'.normalize('NFD'), '--password', 'long enough password'], env);
      assert.equal(decomposed.code, 1);
      assert.match(oneLine(decomposed), /exists already/);
      const spa = await cliJson(['client', 'create', '--name', 'Public', '--type', 'public', '--grant', 'refresh_token'], env);
      const noSecret = await runCli(['client', 'rotate-secret', spa.client_id], env);
      assert.equal(noSecret.code, 1);
      assert.match(oneLine(noSecret), /public client/);

      assert.equal((await cliJson<any[]>(['client', 'list'], env)).length, before + 1, 'only the valid public client was created');
      assert.equal((await cliJson<any[]>(['user', 'list'], env)).length, usersBefore + 2, 'only the valid users were created');
    });
  });
}
