import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import { buildExampleApi } from '../../examples/bim-api/app.ts';
import { DIALECTS } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * Issue 5's "done when": every flow the reference pages describe, from a client through Gatehouse
 * to the example BIM API, which knows Gatehouse only through the resource-server SDK.
 */

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const WEB_CALLBACK = 'https://bim-app.example/callback';
const NATIVE_CALLBACK = 'com.example.bimviewer:/oauth/callback';
const SPA_CALLBACK = 'https://viewer.example/callback';
const PASSWORD = 'correct horse battery';
/** The example API's introspection cache, i.e. how long a revoked API key may still work there. */
const API_KEY_CACHE_SECONDS = 1;

/** Every route of the example API, with a body for the writes. */
const ROUTES: readonly { method: 'GET' | 'POST'; path: string }[] = [
  { method: 'GET', path: '/me' },
  { method: 'GET', path: '/objects' },
  { method: 'GET', path: '/objects/door-01' },
  { method: 'GET', path: '/objects/door-01/download' },
  ...['models', 'documents', 'topics'].flatMap((collection) => [
    { method: 'GET' as const, path: `/projects/p1/${collection}` },
    { method: 'POST' as const, path: `/projects/p1/${collection}` },
  ]),
  { method: 'GET', path: '/admin/stats' },
];

type Client = { id: string; secret: string };

for (const dialect of DIALECTS) {
  describe(`every flow through Gatehouse and the example BIM API (${dialect})`, () => {
    let server: TestServer;
    let api: FastifyInstance;
    let apiUrl: string;
    let resourceServer: Client;
    let integration: Client;
    let admin: Client;
    let web: Client;
    let native: Client;
    let spa: Client;
    let mobile: Client;
    let backOffice: Client;
    let userId: string;
    const user = { email: 'ada@example.com', password: PASSWORD };

    before(async () => {
      server = await startTestServer(dialect, { config: { implicit: { enabled: true } } });
      resourceServer = await server.client({ name: 'BIM API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      integration = await server.client({ name: 'ERP integration', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read', 'model:write', 'document:read'], defaultScopes: ['objects:read'] });
      admin = await server.client({ name: 'Back-office admin', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users', 'admin:tokens'], isAdmin: true });
      const userScopes = ['openid', 'profile', 'objects:read', 'objects:download'];
      web = await server.client({ name: 'BIM web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: userScopes, redirectUris: [WEB_CALLBACK] });
      native = await server.client({ name: 'BIM desktop viewer', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes: userScopes, redirectUris: [NATIVE_CALLBACK] });
      spa = await server.client({ name: 'Legacy web viewer', type: 'public', grantTypes: ['implicit'], scopes: userScopes, redirectUris: [SPA_CALLBACK] });
      mobile = await server.client({ name: 'BIM mobile', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'objects:download'], firstParty: true });
      backOffice = await server.client({ name: 'Support desk', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'objects:download'], defaultScopes: ['objects:read'], allowImpersonation: true });
      userId = (await server.user(user.email, user.password)).id;

      api = buildExampleApi({
        issuer: server.url,
        audience: server.config.tokens.audience,
        introspection: { clientId: resourceServer.id, clientSecret: resourceServer.secret },
        cacheTtlSeconds: API_KEY_CACHE_SECONDS,
      });
      apiUrl = await api.listen({ port: await freePort(), host: '127.0.0.1' });
    });
    after(async () => {
      await api?.close();
      await server?.close();
    });

    /** Calls the example API; the body is parsed when it is JSON. */
    async function call(method: 'GET' | 'POST', path: string, authorization?: string) {
      const headers: Record<string, string> = authorization ? { authorization } : {};
      const init: RequestInit = { method, headers };
      if (method === 'POST') {
        headers['content-type'] = 'application/json';
        init.body = JSON.stringify({ name: 'From the e2e suite', title: 'From the e2e suite' });
      }
      const res = await fetch(`${apiUrl}${path}`, init);
      const bytes = Buffer.from(await res.arrayBuffer());
      const json = res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(bytes.toString()) : undefined;
      return { status: res.status, headers: res.headers, bytes, json };
    }
    const get = (path: string, authorization?: string) => call('GET', path, authorization);

    /** RFC 6750 §3.1: the status, the error in the challenge and in the body. */
    function assertRefused(res: Awaited<ReturnType<typeof call>>, status: 401 | 403, error: 'invalid_token' | 'insufficient_scope', what: string) {
      assert.equal(res.status, status, `${what}: ${res.bytes.toString().slice(0, 300)}`);
      assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`^Bearer realm="api", error="${error}"`), what);
      assert.equal(res.json?.error, error, what);
    }

    function assertDownloaded(res: Awaited<ReturnType<typeof call>>) {
      assert.equal(res.status, 200, res.bytes.toString().slice(0, 300));
      assert.equal(res.headers.get('content-type'), 'application/x-step');
      assert.equal(res.headers.get('content-disposition'), 'attachment; filename="door-01.ifc"');
      assert.match(res.bytes.toString(), /^ISO-10303-21;[\s\S]*IFCDOOR[\s\S]*END-ISO-10303-21;\n$/);
    }

    const tokenRequest = (client: Client, body: Record<string, string>) => post(`${server.url}/token`, body, { headers: { authorization: basic(client.id, client.secret) } });

    /**
     * Signs in and answers the consent page in a fresh browser, the way a person would; returns
     * where Gatehouse sends the browser back to the client.
     */
    async function authorize(params: Record<string, string>): Promise<URL> {
      const browser = new HttpBrowser();
      let page = await browser.follow(`${server.url}/authorize?${new URLSearchParams({ state: 'af0ifjsldkj', ...params })}`, server.url);
      if (page.text.includes('name="password"')) {
        page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
      }
      if (page.text.includes('name="decision"')) {
        page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      }
      assert.ok(page.location, `expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 300)}`);
      return new URL(page.location);
    }

    it('client credentials: objects are listed, the download is refused with 403 insufficient_scope', async () => {
      // BIMobject: the secret in the body or in a Basic header; Bindeo: a JSON body at /access_token.
      const requests = [
        post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: integration.id, client_secret: integration.secret }),
        tokenRequest(integration, { grant_type: 'client_credentials' }),
        post(`${server.url}/access_token`, { grant_type: 'client_credentials', client_id: integration.id, client_secret: integration.secret }, { json: true }),
      ];
      for (const [index, request] of requests.entries()) {
        const token = await request;
        assert.equal(token.status, 200, JSON.stringify(token.body));
        assert.equal(token.body.token_type, 'Bearer');
        assert.equal(token.body.refresh_token, undefined, 'no refresh token without a user');
        const listed = await get('/objects', `Bearer ${token.body.access_token}`);
        assert.equal(listed.status, 200, `request style ${index}`);
        assert.deepEqual(listed.json.objects.map((o: { id: string }) => o.id), ['door-01', 'window-07']);
        assert.equal((await get('/objects/door-01', `Bearer ${token.body.access_token}`)).json.format, 'ifc');
        const download = await get('/objects/door-01/download', `Bearer ${token.body.access_token}`);
        assertRefused(download, 403, 'insufficient_scope', `download, request style ${index}`);
        assert.match(download.headers.get('www-authenticate')!, /scope="objects:download"/);
      }
    });

    it('admin client: the admin route works and every other route is refused', async () => {
      const token = await tokenRequest(admin, { grant_type: 'client_credentials' });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      assert.deepEqual(String(decodeJwt(token.body.access_token).scope).split(' ').sort(), ['admin:clients', 'admin:tokens', 'admin:users'], 'admin scopes only');
      const authorization = `Bearer ${token.body.access_token}`;
      for (const { method, path } of ROUTES) {
        const res = await call(method, path, authorization);
        if (path === '/admin/stats') {
          assert.equal(res.status, 200);
          assert.equal(res.json.objects, 2);
        } else {
          assertRefused(res, 403, 'insufficient_scope', `${method} ${path}`);
        }
      }
      // And the admin route refuses everyone else.
      const ordinary = await tokenRequest(integration, { grant_type: 'client_credentials', scope: 'objects:read model:read model:write document:read' });
      assertRefused(await get('/admin/stats', `Bearer ${ordinary.body.access_token}`), 403, 'insufficient_scope', 'admin route, ordinary client');
      const anonymous = await get('/admin/stats');
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="api"');
    });

    describe('authorization code: the user-delegated token downloads the file', () => {
      const verifier = () => randomBytes(32).toString('base64url');
      const challengeOf = (v: string) => createHash('sha256').update(v).digest('base64url');
      const scope = 'openid objects:read objects:download';

      it('confidential web app, without PKCE', async () => {
        const callback = await authorize({ response_type: 'code', client_id: web.id, redirect_uri: WEB_CALLBACK, scope });
        assert.equal(callback.searchParams.get('state'), 'af0ifjsldkj');
        const token = await tokenRequest(web, { grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: WEB_CALLBACK });
        assert.equal(token.status, 200, JSON.stringify(token.body));
        assert.ok(token.body.refresh_token, 'BIMobject: refresh tokens extend the access');
        assertDownloaded(await get('/objects/door-01/download', `Bearer ${token.body.access_token}`));
        assert.equal((await get('/me', `Bearer ${token.body.access_token}`)).json.subject, userId);
      });

      it('confidential web app, with PKCE', async () => {
        const v = verifier();
        const callback = await authorize({ response_type: 'code', client_id: web.id, redirect_uri: WEB_CALLBACK, scope, code_challenge: challengeOf(v), code_challenge_method: 'S256' });
        const token = await tokenRequest(web, { grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: WEB_CALLBACK, code_verifier: v });
        assert.equal(token.status, 200, JSON.stringify(token.body));
        assertDownloaded(await get('/objects/door-01/download', `Bearer ${token.body.access_token}`));
      });

      it('public native app, with PKCE and no secret', async () => {
        const v = verifier();
        const callback = await authorize({ response_type: 'code', client_id: native.id, redirect_uri: NATIVE_CALLBACK, scope, code_challenge: challengeOf(v), code_challenge_method: 'S256' });
        assert.equal(callback.protocol, 'com.example.bimviewer:');
        const token = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: native.id, code: callback.searchParams.get('code')!, redirect_uri: NATIVE_CALLBACK, code_verifier: v });
        assert.equal(token.status, 200, JSON.stringify(token.body));
        assertDownloaded(await get('/objects/door-01/download', `Bearer ${token.body.access_token}`));
      });
    });

    it('implicit: the access token from the fragment works on the API', async () => {
      const callback = await authorize({ response_type: 'token', client_id: spa.id, redirect_uri: SPA_CALLBACK, scope: 'objects:read' });
      assert.equal(callback.search, '', 'never in the query');
      const fragment = new URLSearchParams(callback.hash.slice(1));
      assert.equal(fragment.get('token_type'), 'Bearer');
      assert.equal(fragment.get('state'), 'af0ifjsldkj');
      const listed = await get('/objects', `Bearer ${fragment.get('access_token')}`);
      assert.equal(listed.status, 200);
      assert.equal(listed.json.objects.length, 2);
      assertRefused(await get('/objects/door-01/download', `Bearer ${fragment.get('access_token')}`), 403, 'insufficient_scope', 'download without the scope');
    });

    it('password + refresh (Bindeo\'s JSON requests): works, and the rotated-out refresh token no longer does', async () => {
      const credentials = { client_id: mobile.id, client_secret: mobile.secret };
      const first = await post(`${server.url}/access_token`, { grant_type: 'password', ...credentials, username: user.email, password: user.password }, { json: true });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      for (const field of ['token_type', 'expires_in', 'access_token', 'refresh_token']) assert.ok(field in first.body, field);
      assert.equal((await get('/objects', `Bearer ${first.body.access_token}`)).status, 200);

      const refreshed = await post(`${server.url}/access_token`, { grant_type: 'refresh_token', ...credentials, refresh_token: first.body.refresh_token }, { json: true });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.notEqual(refreshed.body.refresh_token, first.body.refresh_token, 'the refresh token is rotated');
      assert.equal((await get('/objects', `Bearer ${refreshed.body.access_token}`)).status, 200);
      assertDownloaded(await get('/objects/door-01/download', `Bearer ${refreshed.body.access_token}`));
      const me = await get('/me', `Bearer ${refreshed.body.access_token}`);
      assert.deepEqual({ kind: me.json.kind, subject: me.json.subject, client_id: me.json.client_id }, { kind: 'user', subject: userId, client_id: mobile.id });

      const replayed = await post(`${server.url}/access_token`, { grant_type: 'refresh_token', ...credentials, refresh_token: first.body.refresh_token }, { json: true });
      assert.equal(replayed.status, 400);
      assert.equal(replayed.body.error, 'invalid_grant');
      // RFC 9700 §4.14.2: a replayed refresh token means it leaked, so its whole grant is revoked.
      const successor = await post(`${server.url}/access_token`, { grant_type: 'refresh_token', ...credentials, refresh_token: refreshed.body.refresh_token }, { json: true });
      assert.equal(successor.body.error, 'invalid_grant');
    });

    it(`API key (created and revoked in the developer portal): works on objects until revoked, then 401 within the ${API_KEY_CACHE_SECONDS} s cache delay`, async () => {
      // A developer signs in, registers an application and creates a key, as BIMData describes.
      const developer = await server.user('dev@example.com', PASSWORD);
      const browser = await signedInBrowser(server.url, developer.email, PASSWORD);
      const newApp = await browser.request(`${server.url}/developers/new`);
      const created = await browser.request(`${server.url}/developers/applications`, {
        form: { csrf: hiddenField(newApp.text, 'csrf'), name: 'Model sync script', description: '', type: 'confidential', base_url: 'https://sync.example', redirect_uris: 'https://sync.example/callback' },
      });
      assert.equal(created.status, 200, created.text.slice(0, 500));
      const appId = /value="(app_[0-9a-f]+)"/.exec(created.text)?.[1];
      assert.ok(appId, 'the page shows the client_id');
      assert.equal((await server.gatehouse.storage.clients.find(appId))?.ownerUserId, developer.id);

      const keysPage = `${server.url}/developers/applications/${appId}/api-keys`;
      const keyForm = await browser.request(keysPage);
      const made = await browser.request(keysPage, { form: [['csrf', hiddenField(keyForm.text, 'csrf')], ['name', 'nightly sync'], ['scopes', 'objects:read']] });
      assert.equal(made.status, 200, made.text.slice(0, 500));
      const key = /value="(gate_ak_[A-Za-z0-9_-]+)"/.exec(made.text)?.[1];
      assert.ok(key, 'the key is shown once');

      // BIMData: `Authorization: ApiKey …`, straight to the API.
      const listed = await get('/objects', `ApiKey ${key}`);
      assert.equal(listed.status, 200);
      assert.equal(listed.json.objects.length, 2);
      assertRefused(await get('/objects/door-01/download', `ApiKey ${key}`), 403, 'insufficient_scope', 'API keys never download');

      const list = await browser.request(keysPage);
      const revokeAction = /action="([^"]*\/api-keys\/[^"/]+\/revoke)"/.exec(list.text)?.[1];
      assert.ok(revokeAction, 'the key has a Revoke button');
      const revoked = await browser.request(new URL(revokeAction, server.url).toString(), { form: { csrf: hiddenField(list.text, 'csrf') } });
      assert.equal(revoked.status, 303);
      const revokedAt = Date.now();

      let res = await get('/objects', `ApiKey ${key}`);
      while (res.status === 200 && Date.now() - revokedAt < 5000) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        res = await get('/objects', `ApiKey ${key}`);
      }
      assertRefused(res, 401, 'invalid_token', 'revoked API key');
      assert.ok(Date.now() - revokedAt <= API_KEY_CACHE_SECONDS * 1000 + 1500, `refused ${Date.now() - revokedAt} ms after the revocation`);
    });

    it('project token with model:read: reads its project\'s models, refused on another project and on writes', async () => {
      const app = await tokenRequest(integration, { grant_type: 'client_credentials', scope: 'model:read model:write' });
      const minted = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${app.body.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date(Date.now() + 12 * 3600_000).toISOString(), scopes: ['model:read'] }),
      });
      assert.equal(minted.status, 201);
      const { access_token } = (await minted.json()) as { access_token: string };
      const viewer = `Bearer ${access_token}`;

      const models = await get('/projects/p1/models', viewer);
      assert.equal(models.status, 200);
      assert.equal(models.json.project, 'p1');
      assert.ok(models.json.models.length >= 1);
      assertRefused(await get('/projects/p2/models', viewer), 403, 'insufficient_scope', 'another project');
      assertRefused(await call('POST', '/projects/p1/models', viewer), 403, 'insufficient_scope', 'a write');
      assertRefused(await get('/projects/p1/documents', viewer), 403, 'insufficient_scope', 'another scope');
      assertRefused(await get('/objects', viewer), 403, 'insufficient_scope', 'objects');

      // The write itself works for a token that holds model:write: the refusal above is the project token's.
      const written = await call('POST', '/projects/p1/models', `Bearer ${app.body.access_token}`);
      assert.equal(written.status, 201);
      assert.equal(written.json.name, 'From the e2e suite');
    });

    it('impersonation: the API sees the user as subject and the client as actor', async () => {
      const token = await tokenRequest(backOffice, { grant_type: EXCHANGE, requested_subject: userId, scope: 'objects:read objects:download' });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      const me = await get('/me', `Bearer ${token.body.access_token}`);
      assert.equal(me.status, 200);
      assert.deepEqual(me.json, {
        kind: 'user',
        subject: userId,
        client_id: backOffice.id,
        scopes: ['objects:read', 'objects:download'],
        project: null,
        actor: { sub: backOffice.id, client_id: backOffice.id },
      });
      assertDownloaded(await get('/objects/door-01/download', `Bearer ${token.body.access_token}`));
    });

    it('refuses a call without a credential (bare challenge), with an unsigned token or with an unknown API key, with 401', async () => {
      const none = await get('/objects');
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="api"', 'RFC 6750 §3.1: no error code without credentials');
      assertRefused(await get('/objects', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'), 401, 'invalid_token', 'unsigned token');
      assertRefused(await get('/objects', `ApiKey gate_ak_${'C'.repeat(43)}`), 401, 'invalid_token', 'unknown API key');
    });

    it('the example server script (what `npm run example` starts) serves the API against this Gatehouse', async () => {
      const port = await freePort();
      const script = fileURLToPath(new URL('../../examples/bim-api/server.ts', import.meta.url));
      const child = spawn(process.execPath, ['--conditions=source', script], {
        env: { ...process.env, GATEHOUSE_ISSUER: server.url, GATEHOUSE_AUDIENCE: server.config.tokens.audience, EXAMPLE_PORT: String(port), EXAMPLE_CLIENT_ID: resourceServer.id, EXAMPLE_CLIENT_SECRET: resourceServer.secret },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        let output = '';
        child.stderr.on('data', (chunk) => (output += chunk));
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`the example did not start: ${output}`)), 10_000);
          child.stdout.on('data', (chunk) => {
            output += chunk;
            if (output.includes('Example BIM API on')) {
              clearTimeout(timer);
              resolve();
            }
          });
          child.once('exit', (code) => reject(new Error(`the example exited with ${code}: ${output}`)));
        });
        const token = await tokenRequest(integration, { grant_type: 'client_credentials' });
        const res = await fetch(`http://127.0.0.1:${port}/objects`, { headers: { authorization: `Bearer ${token.body.access_token}` } });
        assert.equal(res.status, 200);
      } finally {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const [code] = await exited;
        assert.equal(code, 0, 'it shuts down cleanly on SIGTERM');
      }
    });
  });
}
