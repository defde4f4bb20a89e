import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { codeThrough, HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { basic, post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, waitFor, writeConfig, type Env, type ServeProcess } from './support.ts';

/** Short, so a change made by the CLI reaches the running server's client cache quickly. */
const CLIENT_CACHE_TTL_SECONDS = 0.5;

const lines = (text: string): any[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));

describe('gatehouse client update and client secret against a running server (sqlite)', { timeout: 420_000 }, () => {
  let database: TestDatabase;
  let server: ServeProcess;
  let env: Env;

  before(async () => {
    database = await createTestDatabase('sqlite');
    env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { clients: { cacheTtlSeconds: CLIENT_CACHE_TTL_SECONDS } }) };
    server = await startServe(env);
  });

  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const clientCredentials = (id: string, secret: string) => post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(id, secret) } });
  /** The status the server settles on for `request`, once its client cache has caught up: `expected`. */
  const settlesOn = (what: string, expected: number, request: () => Promise<{ status: number }>) => waitFor(what, async () => ((await request()).status === expected ? true : undefined));
  const show = (id: string) => cliJson(['client', 'show', id], env);
  const auditOf = async (id: string) => lines((await runCli(['audit', 'tail', '--limit', '200', '--json'], env)).stdout).filter((e) => e.client_id === id);
  const webApp = (name: string) =>
    cliJson<{ client_id: string; client_secret: string }>(
      [
        'client', 'create', '--name', name, '--grant', 'authorization_code', '--grant', 'refresh_token', '--scope', 'openid objects:read',
        '--redirect-uri', 'https://app.example/one', '--post-logout-redirect-uri', 'https://app.example/bye',
        '--base-url', 'https://app.example', '--description', 'The web app', '--first-party',
      ],
      env,
    );

  it('changes only what is given, a list given replacing the list, prints the client as client show does, and is audited', async () => {
    const { client_id: id } = await webApp('Web app');
    const before = await show(id);

    const updated = await cliJson(['client', 'update', id, '--name', 'Renamed app', '--redirect-uri', 'https://app.example/two', '--redirect-uri', 'https://app.example/three'], env);
    assert.deepEqual(updated, await show(id), 'printed as client show prints it');
    assert.deepEqual(
      { ...updated, updated_at: undefined },
      { ...before, name: 'Renamed app', redirect_uris: ['https://app.example/two', 'https://app.example/three'], updated_at: undefined },
      'nothing else changed',
    );

    const flagsOff = await cliJson(['client', 'update', id, '--no-first-party', '--no-base-url', '--no-post-logout-redirect-uri', '--scope', 'openid'], env);
    assert.equal(flagsOff.first_party, false);
    assert.equal(flagsOff.base_url, null);
    assert.deepEqual(flagsOff.post_logout_redirect_uris, []);
    assert.deepEqual(flagsOff.scopes, ['openid']);
    assert.deepEqual(flagsOff.default_scopes, ['openid'], 'the defaults narrowed with the scopes, as the admin API narrows them');
    assert.equal(flagsOff.name, 'Renamed app');
    assert.equal(flagsOff.description, 'The web app');
    assert.equal((await cliJson(['client', 'update', id, '--first-party'], env)).first_party, true);

    const human = await runCli(['client', 'update', id, '--description', 'Still the web app'], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^client_id\s+app_\w+\nname\s+Renamed app\ndescription\s+Still the web app\n/);

    assert.deepEqual(
      (await auditOf(id)).filter((e) => e.kind === 'client.updated').map((e) => e.data),
      [
        { fields: ['name', 'redirect_uris'], by: 'cli' },
        { fields: ['scopes', 'post_logout_redirect_uris', 'base_url', 'first_party'], by: 'cli' },
        { fields: ['first_party'], by: 'cli' },
        { fields: ['description'], by: 'cli' },
      ],
    );
  });

  it('sends /authorize to the redirect URIs the update registered, and refuses the one it replaced', async () => {
    const { client_id: id } = await webApp('Redirecting app');
    const authorize = (redirectUri: string) =>
      new HttpBrowser().request(
        `${server.url}/authorize?${new URLSearchParams({ response_type: 'code', client_id: id, redirect_uri: redirectUri, scope: 'openid objects:read', state: 'st', code_challenge: 'A'.repeat(43), code_challenge_method: 'S256' })}`,
      );
    // Accepted, the request goes on to sign-in (no one is signed in): a 302 to the login page.
    const accepted = async (redirectUri: string) => {
      const page = await authorize(redirectUri);
      return page.status === 302 && page.location?.startsWith('/login?request=') === true;
    };
    assert.equal(await accepted('https://app.example/one'), true);
    assert.equal((await authorize('https://app.example/new')).status, 400);

    await cliJson(['client', 'update', id, '--redirect-uri', 'https://app.example/new'], env);
    await waitFor('the new redirect URI to be accepted', async () => ((await accepted('https://app.example/new')) ? true : undefined));
    const refused = await authorize('https://app.example/one');
    assert.equal(refused.status, 400);
    assert.equal(refused.location, undefined);
    assert.match(refused.text, /not registered/);
  });

  it('gives a client made confidential its first secret, printed once, which authenticates; made public again, it loses it', async () => {
    const spa = await cliJson<{ client_id: string }>(['client', 'create', '--name', 'Single-page app', '--type', 'public', '--grant', 'refresh_token'], env);
    const made = await cliJson(['client', 'update', spa.client_id, '--type', 'confidential', '--grant', 'client_credentials', '--scope', 'objects:read'], env);
    assert.equal(made.type, 'confidential');
    assert.match(made.client_secret, /^gate_cs_/);
    assert.equal(made.secrets.length, 1);
    assert.equal(made.client_secret.endsWith(made.secrets[0].hint.slice(1)), true);
    assert.equal((await show(spa.client_id)).client_secret, undefined, 'shown once');
    await settlesOn('the new secret to authenticate', 200, () => clientCredentials(spa.client_id, made.client_secret));

    const madePublic = await cliJson(['client', 'update', spa.client_id, '--type', 'public', '--grant', 'refresh_token'], env);
    assert.deepEqual(madePublic.secrets, []);
    await settlesOn('the secret of a public client to be refused', 401, () => clientCredentials(spa.client_id, made.client_secret));
  });

  it('refuses what the admin API refuses, with one line naming the field and exit 1, and changes nothing', async () => {
    const { client_id: id } = await webApp('Refused app');
    const before = await show(id);
    const cases: [string[], RegExp][] = [
      [['--redirect-uri', 'http://app.example/cb'], /^gatehouse: redirect_uris: .*"http:\/\/app\.example\/cb" must use https/],
      [['--redirect-uri', 'https://app.example/ok', '--redirect-uri', 'https://*.example/cb'], /redirect_uris: .*wildcard/],
      [['--redirect-uri', 'https://app.example\\@evil.example/cb'], /redirect_uris: .*must not hold a backslash/],
      [['--no-redirect-uri'], /redirect_uris: authorization_code and implicit need at least one redirect URI/],
      [['--type', 'public', '--grant', 'client_credentials'], /grant_types: a public client cannot use client_credentials/],
      [['--type', 'secretive'], /type: type must be confidential or public/],
      [['--grant', 'magic'], /grant_types: unknown grant type "magic"/],
      [['--scope', 'objects:read no:such:scope'], /scopes: unknown scope "no:such:scope"/],
      [['--admin'], /scopes: /],
      [['--default-scope', 'bcf:read'], /default_scopes: the default scope "bcf:read"/],
      [['--name', '  '], /name: a client needs a name/],
      [['--description', 'x'.repeat(2001)], /description: the description is longer than 2000 characters/],
      [['--base-url', `https://app.example/${'x'.repeat(2000)}`], /base_url: the base URL is longer than 2000 characters/],
      [['--name', 'Trusted\u202eApp'], /name: .*U\+202E/],
      [['--base-url', 'javascript:alert(1)'], /base_url: .*forbidden scheme/],
      [['--jwks', '/no/such/keys.json'], /jwks: cannot read \/no\/such\/keys\.json: ENOENT/],
    ];
    for (const [options, expected] of cases) {
      const result = await runCli(['client', 'update', id, ...options], env);
      assert.equal(result.code, 1, `update ${options.join(' ')}: exit ${result.code}\n${result.stderr}`);
      assert.match(oneLine(result), expected, options.join(' '));
      assert.equal(result.stdout, '');
    }
    const unknown = await runCli(['client', 'update', 'app_does_not_exist', '--name', 'x'], env);
    assert.equal(unknown.code, 1);
    assert.match(oneLine(unknown), /no client app_does_not_exist/);
    assert.deepEqual(await show(id), before, 'nothing changed');
    assert.deepEqual((await auditOf(id)).filter((e) => e.kind === 'client.updated'), [], 'no change audited');
  });

  it('adds a second secret that authenticates while the first still does, then revokes the first: a rotation without downtime', async () => {
    const { client_id: id, client_secret: first } = await cliJson(['client', 'create', '--name', 'Rotated app', '--scope', 'objects:read'], env);
    assert.equal((await clientCredentials(id, first)).status, 200);
    const [firstSecret] = await cliJson<{ id: string; hint: string; expires_at: string | null }[]>(['client', 'secret', 'list', id], env);
    assert.equal(first.endsWith(firstSecret!.hint.slice(1)), true);
    assert.equal(firstSecret!.expires_at, null);

    const expiry = new Date(Date.now() + 30 * 86_400_000);
    expiry.setUTCMilliseconds(0);
    const added = await cliJson(['client', 'secret', 'add', id, '--expires-at', expiry.toISOString()], env);
    assert.deepEqual(Object.keys(added), ['id', 'hint', 'created_at', 'expires_at', 'client_secret']);
    assert.match(added.client_secret, /^gate_cs_/);
    assert.equal(added.expires_at, expiry.toISOString());
    const listed = await cliJson<{ id: string }[]>(['client', 'secret', 'list', id], env);
    assert.deepEqual(listed.map((s) => s.id), [firstSecret!.id, added.id]);
    assert.equal(JSON.stringify(listed).includes(added.client_secret), false, 'a secret is never listed');
    await settlesOn('the added secret to authenticate', 200, () => clientCredentials(id, added.client_secret));
    assert.equal((await clientCredentials(id, first)).status, 200, 'the first secret still works');

    const revoked = await cliJson(['client', 'secret', 'revoke', id, firstSecret!.id], env);
    assert.deepEqual(revoked, { revoked: firstSecret!.id, secrets_left: 1 });
    await settlesOn('the revoked secret to be refused', 401, () => clientCredentials(id, first));
    assert.equal((await clientCredentials(id, added.client_secret)).status, 200, 'the added secret still works');
    assert.deepEqual((await cliJson<{ id: string }[]>(['client', 'secret', 'list', id], env)).map((s) => s.id), [added.id]);

    assert.deepEqual(
      (await auditOf(id)).filter((e) => e.kind.startsWith('client_secret.')).map((e) => ({ kind: e.kind, data: e.data })),
      [
        { kind: 'client_secret.created', data: { secret_id: added.id, by: 'cli' } },
        { kind: 'client_secret.deleted', data: { secret_id: firstSecret!.id, by: 'cli' } },
      ],
    );

    const human = await runCli(['client', 'secret', 'revoke', id, added.id], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^revoked ${added.id}: .*\\n${id} has no secret left`));
  });

  it('refuses an unknown client or secret, and a secret for a public client, with one line and exit 1, and changes nothing', async () => {
    const { client_id: id } = await cliJson(['client', 'create', '--name', 'Kept secrets', '--scope', 'objects:read'], env);
    const spa = await cliJson<{ client_id: string }>(['client', 'create', '--name', 'Public secrets', '--type', 'public', '--grant', 'refresh_token'], env);
    const before = await cliJson(['client', 'secret', 'list', id], env);
    const cases: [string[], RegExp][] = [
      [['list', 'app_does_not_exist'], /no client app_does_not_exist/],
      [['add', 'app_does_not_exist'], /no client app_does_not_exist/],
      [['revoke', 'app_does_not_exist', before[0].id], /no client app_does_not_exist/],
      [['revoke', id, '00000000-0000-0000-0000-000000000000'], new RegExp(`client ${id} has no secret 00000000-0000-0000-0000-000000000000`)],
      [['revoke', spa.client_id, before[0].id], new RegExp(`client ${spa.client_id} has no secret`)],
      [['add', spa.client_id], /is a public client: it has no secrets/],
    ];
    for (const [args, expected] of cases) {
      const result = await runCli(['client', 'secret', ...args], env);
      assert.equal(result.code, 1, `client secret ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
      assert.match(oneLine(result), expected, args.join(' '));
      assert.equal(result.stdout, '');
    }
    assert.deepEqual(await cliJson(['client', 'secret', 'list', id], env), before);
    assert.deepEqual(await cliJson(['client', 'secret', 'list', spa.client_id], env), []);
  });

  it('refuses a secret beyond the five a client may hold, with one line and exit 1, storing nothing', async () => {
    const { client_id: id } = await cliJson(['client', 'create', '--name', 'Many secrets', '--scope', 'objects:read'], env);
    for (let i = 1; i < 5; i++) await cliJson(['client', 'secret', 'add', id], env);
    const before = await cliJson<{ id: string }[]>(['client', 'secret', 'list', id], env);
    assert.equal(before.length, 5);
    const refused = await runCli(['client', 'secret', 'add', id], env);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(oneLine(refused), new RegExp(`${id} holds at most 5 secrets, expired ones included: revoke one`));
    assert.equal(refused.stdout, '');
    assert.deepEqual(await cliJson(['client', 'secret', 'list', id], env), before);
  });

  it('sets and clears a back-channel logout URI, and user sign-out and set-password tell the client through it', async () => {
    const received: JWTPayload[] = [];
    const jwks = createRemoteJWKSet(new URL(`${server.url}/jwks.json`));
    const issuer = ((await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as { issuer: string }).issuer;
    // The command line signs as the server does when it has the server's settings (the issuer comes from PORT here).
    const sameSettings = { ...env, PORT: String(server.port) };
    const receiver = createServer(async (request, response) => {
      let body = '';
      for await (const chunk of request) body += chunk;
      const token = new URLSearchParams(body).get('logout_token') ?? '';
      received.push((await jwtVerify(token, jwks, { issuer, typ: 'logout+jwt' })).payload);
      response.end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const logoutUri = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/logout`;
    try {
      const { client_id: id, client_secret: secret } = await webApp('Told app');
      const set = await cliJson(['client', 'update', id, '--backchannel-logout-uri', logoutUri, '--backchannel-logout-session-required'], env);
      assert.equal(set.backchannel_logout_uri, logoutUri);
      assert.equal(set.backchannel_logout_session_required, true);
      const refused = await runCli(['client', 'update', id, '--backchannel-logout-uri', 'https://app.example/logout#here'], env);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(oneLine(refused), /backchannel_logout_uri/);
      assert.equal((await show(id)).backchannel_logout_uri, logoutUri, 'a refused URI changes nothing');
      const created = await cliJson(['client', 'create', '--name', 'Told at birth', '--backchannel-logout-uri', 'https://rp.example/logout'], env);
      assert.equal((await show(created.client_id)).backchannel_logout_uri, 'https://rp.example/logout');

      const email = `told-${Date.now()}@example.com`;
      const user = await cliJson<{ id: string }>(['user', 'create', '--email', email, '--password', 'correct horse battery staple'], env);
      /** A browser signed in with the user's session, and the sid of the ID token the app got through it. */
      const signedInToApp = async (password: string) => {
        const browser = await signedInBrowser(server.url, email, password);
        const code = await codeThrough(browser, server.url, id, 'https://app.example/two', 'openid');
        const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: 'https://app.example/two' }, { headers: { authorization: basic(id, secret) } });
        assert.equal(tokens.status, 200);
        return decodeJwt(tokens.body.id_token).sid;
      };
      await cliJson(['client', 'update', id, '--redirect-uri', 'https://app.example/two'], env);

      const sid = await signedInToApp('correct horse battery staple');
      assert.equal((await runCli(['user', 'sign-out', email], sameSettings)).code, 0);
      // The command line waits for its deliveries before it exits.
      assert.deepEqual(received.map((claims) => [claims.sub, claims.aud, claims.sid]), [[user.id, id, sid]]);

      const again = await signedInToApp('correct horse battery staple');
      assert.equal((await runCli(['user', 'set-password', email, '--password', 'another good passphrase'], sameSettings)).code, 0);
      assert.deepEqual(received.map((claims) => claims.sid), [sid, again]);

      const cleared = await cliJson(['client', 'update', id, '--no-backchannel-logout-uri', '--no-backchannel-logout-session-required'], env);
      assert.equal(cleared.backchannel_logout_uri, null);
      assert.equal(cleared.backchannel_logout_session_required, false);
    } finally {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
