import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { signedInBrowser } from '../support/browser.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { buildApp } from '../../src/http/app.ts';

type Scope = 'admin:clients' | 'admin:users' | 'admin:tokens';
/** The admin API's routes that write a client or its credentials, as the OpenAPI document names them. */
const CLIENT_WRITES = [
  ['/clients', 'post'],
  ['/clients/{clientId}', 'patch'],
  ['/clients/{clientId}', 'delete'],
  ['/clients/{clientId}/secrets', 'post'],
  ['/clients/{clientId}/secrets/{secretId}', 'delete'],
  ['/clients/{clientId}/api-keys', 'post'],
  ['/clients/{clientId}/api-keys/{keyId}', 'delete'],
] as const;

/** What the admin API could change about `target`: every client, its secrets and API keys (use times aside). */
const clientsAndCredentials = async (server: TestServer, target: string): Promise<string> =>
  JSON.stringify({
    clients: await server.gatehouse.storage.clients.list(),
    secrets: await server.gatehouse.storage.clients.listSecrets(target),
    keys: (await server.gatehouse.storage.apiKeys.listForClient(target)).map((k) => ({ ...k, lastUsedAt: null })),
  });

const ADMIN_SCOPES: Scope[] = ['admin:clients', 'admin:users', 'admin:tokens'];

/** Every admin operation, with a body that would be accepted: the refusal matrix below tries each. */
const ENDPOINTS: { method: string; path: string; scope: Scope; body?: Record<string, unknown> }[] = [
  { method: 'GET', path: '/clients', scope: 'admin:clients' },
  { method: 'POST', path: '/clients', scope: 'admin:clients', body: { name: 'Should not exist', scopes: ['objects:read'] } },
  { method: 'GET', path: '/clients/{clientId}', scope: 'admin:clients' },
  { method: 'PATCH', path: '/clients/{clientId}', scope: 'admin:clients', body: { name: 'Renamed by nobody' } },
  { method: 'DELETE', path: '/clients/{clientId}', scope: 'admin:clients' },
  { method: 'GET', path: '/clients/{clientId}/secrets', scope: 'admin:clients' },
  { method: 'POST', path: '/clients/{clientId}/secrets', scope: 'admin:clients' },
  { method: 'DELETE', path: '/clients/{clientId}/secrets/{secretId}', scope: 'admin:clients' },
  { method: 'GET', path: '/clients/{clientId}/api-keys', scope: 'admin:clients' },
  { method: 'POST', path: '/clients/{clientId}/api-keys', scope: 'admin:clients', body: { name: 'Should not exist' } },
  { method: 'DELETE', path: '/clients/{clientId}/api-keys/{keyId}', scope: 'admin:clients' },
  { method: 'GET', path: '/users', scope: 'admin:users' },
  { method: 'POST', path: '/users', scope: 'admin:users', body: { email: 'nobody@example.com', password: 'long enough password' } },
  { method: 'GET', path: '/users/{userId}', scope: 'admin:users' },
  { method: 'DELETE', path: '/users/{userId}', scope: 'admin:users' },
  { method: 'POST', path: '/users/{userId}/disable', scope: 'admin:users' },
  { method: 'POST', path: '/users/{userId}/enable', scope: 'admin:users' },
  { method: 'POST', path: '/users/{userId}/password', scope: 'admin:users', body: { password: 'taken over by nobody' } },
  { method: 'PATCH', path: '/users/{userId}', scope: 'admin:users', body: { email: 'taken-over@example.com', email_verified: true } },
  { method: 'POST', path: '/users/{userId}/sign-out', scope: 'admin:users' },
  { method: 'GET', path: '/users/{userId}/sessions', scope: 'admin:users' },
  { method: 'DELETE', path: '/users/{userId}/sessions/{sid}', scope: 'admin:users' },
  { method: 'GET', path: '/grants', scope: 'admin:tokens' },
  { method: 'POST', path: '/grants/{grantId}/revoke', scope: 'admin:tokens' },
  { method: 'GET', path: '/keys', scope: 'admin:tokens' },
  { method: 'POST', path: '/keys/rotate', scope: 'admin:tokens' },
  { method: 'POST', path: '/keys/{kid}/withdraw', scope: 'admin:tokens' },
  { method: 'GET', path: '/audit-events', scope: 'admin:tokens' },
];

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

for (const dialect of DIALECTS) {
  describe(`admin API (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let admin: { id: string; secret: string };
    let viewer: { id: string; secret: string };
    let mobile: { id: string; secret: string };
    const ada = { email: 'ada@example.com', password: 'correct horse battery staple' };
    let adaId: string;
    /** Authorization header values, by who holds them. */
    const auth: Record<string, string> = {};

    const clientToken = async (id: string, secret: string, scope?: string): Promise<string> => {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(id, secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token;
    };
    const passwordGrant = (username: string, password: string) =>
      post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username, password });

    const api = async (method: string, path: string, options: { auth?: string; body?: unknown; raw?: string } = {}): Promise<Answer> => {
      const headers: Record<string, string> = {};
      if (options.auth) headers.authorization = options.auth;
      let body: string | undefined;
      if (options.raw !== undefined || options.body !== undefined) {
        headers['content-type'] = 'application/json';
        body = options.raw ?? JSON.stringify(options.body);
      }
      const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers, body });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        // HTML or plain text: kept for the assertion to show
      }
      return { status: response.status, headers: response.headers, body: parsed };
    };
    /** As the admin client, with a token holding only `scope`. */
    const as = (scope: Scope) => ({ auth: auth[scope]! });
    /** What managing a client that may impersonate users takes: admin:users besides admin:clients. */
    const asUserAdmin = () => ({ auth: auth.clientsAndUsers! });
    /** What managing `created` (it may impersonate users and is a resource server) takes: admin:users and admin:tokens besides admin:clients. */
    const asPartnerManager = () => ({ auth: auth.allAdmin! });

    /** Signs `who` in in a new browser; the sid of the session that started. */
    const signedInSid = async (who: { email: string; password: string }): Promise<string> => {
      const browser = await signedInBrowser(server.url, who.email, who.password);
      return (await server.gatehouse.storage.sessions.find(digestOf(browser.cookies.get('gatehouse_session')!)))!.sid!;
    };

    const assertProblem = (res: Answer, status: number, field?: string) => {
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.body.status, status);
      assert.equal(typeof res.body.type, 'string');
      assert.equal(typeof res.body.title, 'string');
      assert.equal(typeof res.body.detail, 'string');
      if (field !== undefined) {
        assert.ok(
          res.body.errors?.some((e: { field: string; detail: string }) => e.field === field && typeof e.detail === 'string' && e.detail.length > 0),
          `the problem names the field ${field}: ${JSON.stringify(res.body)}`,
        );
      }
    };

    before(async () => {
      server = await startTestServer(dialect);
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ADMIN_SCOPES, isAdmin: true });
      viewer = await server.client({ name: 'Viewer', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'], firstParty: true });
      adaId = (await server.user(ada.email, ada.password)).id;

      for (const scope of ADMIN_SCOPES) auth[scope] = `Bearer ${await clientToken(admin.id, admin.secret, scope)}`;
      auth.allAdmin = `Bearer ${await clientToken(admin.id, admin.secret)}`;
      auth.clientsAndUsers = `Bearer ${await clientToken(admin.id, admin.secret, 'admin:clients admin:users')}`;
      auth.nonAdminClient = `Bearer ${await clientToken(viewer.id, viewer.secret)}`;
      const userToken = await passwordGrant(ada.email, ada.password);
      assert.equal(userToken.status, 200, JSON.stringify(userToken.body));
      auth.user = `Bearer ${userToken.body.access_token}`;
      const viewerClient = (await server.gatehouse.storage.clients.find(viewer.id))!;
      auth.apiKey = `ApiKey ${(await server.gatehouse.apiKeys.create(viewerClient, { name: 'Script' }, server.gatehouse.clock())).value}`;
      // Credentials that do carry admin scopes, but are not an admin client's own token.
      const adminClient = (await server.gatehouse.storage.clients.find(admin.id))!;
      auth.adminApiKey = `ApiKey ${(await server.gatehouse.apiKeys.create(adminClient, { name: 'Admin script', scopes: ADMIN_SCOPES }, server.gatehouse.clock())).value}`;
      const adminApp = await server.client({ name: 'Admin app with users', grantTypes: ['password'], scopes: ADMIN_SCOPES, isAdmin: true });
      const adminUserToken = await post(`${server.url}/token`, { grant_type: 'password', client_id: adminApp.id, client_secret: adminApp.secret, username: ada.email, password: ada.password });
      assert.equal(adminUserToken.status, 200, JSON.stringify(adminUserToken.body));
      assert.equal(adminUserToken.body.scope ?? ADMIN_SCOPES.join(' '), ADMIN_SCOPES.join(' '));
      auth.adminUser = `Bearer ${adminUserToken.body.access_token}`;
    });
    after(() => server.close());

    describe('who may call it', () => {
      it('lists in its refusal matrix every operation the OpenAPI document says needs a token', async () => {
        const doc = (await api('GET', '/openapi.json')).body;
        const documented = Object.entries(doc.paths as Record<string, Record<string, { security: Record<string, string[]>[] }>>)
          .flatMap(([path, operations]) => Object.entries(operations).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path.replace('/admin/v1', '')}`, scopes: op.security.flatMap((s) => Object.values(s).flat()) })))
          .filter((op) => op.scopes.length > 0);
        assert.deepEqual(documented.map((op) => op.key).sort(), ENDPOINTS.map((e) => `${e.method} ${e.path}`).sort());
        for (const op of documented) assert.deepEqual(op.scopes, [ENDPOINTS.find((e) => `${e.method} ${e.path}` === op.key)!.scope], op.key);
      });

      it('refuses every endpoint without a token (401), and with the token of a user, a non-admin client, an API key or an admin token without the scope (403); nothing changes', async () => {
        // Real targets, so that a hole in the checks would show as a change.
        const secretId = (await server.gatehouse.storage.clients.listSecrets(viewer.id))[0]!.id;
        const keyId = (await server.gatehouse.storage.apiKeys.listForClient(viewer.id))[0]!.id;
        const grantId = (await server.gatehouse.storage.grants.list({ userId: adaId }))[0]!.id;
        const kid = (await server.gatehouse.storage.keys.listAll()).find((k) => k.state === 'active')!.kid;
        const sid = (await server.gatehouse.sessions.listForUser(adaId, server.gatehouse.clock()))[0]?.sid ?? (await signedInSid(ada));
        const ids: Record<string, string> = { clientId: viewer.id, secretId, keyId, userId: adaId, sid, grantId, kid };
        const snapshot = async () =>
          JSON.stringify({
            clients: await server.gatehouse.storage.clients.list(),
            secrets: await server.gatehouse.storage.clients.listSecrets(viewer.id),
            keys: (await server.gatehouse.storage.apiKeys.listForClient(viewer.id)).map((k) => ({ ...k, lastUsedAt: null })),
            users: await server.gatehouse.storage.users.list(),
            grants: await server.gatehouse.storage.grants.list({ userId: adaId }),
            signingKeys: await server.gatehouse.storage.keys.listAll(),
            sessions: (await server.gatehouse.sessions.listForUser(adaId, server.gatehouse.clock())).map((session) => ({ ...session, lastUsedAt: null })),
          });
        const before = await snapshot();

        for (const endpoint of ENDPOINTS) {
          const path = endpoint.path.replace(/\{(\w+)\}/g, (_, name: string) => ids[name]!);
          const label = `${endpoint.method} ${endpoint.path}`;
          for (const authorization of [undefined, 'Bearer not-a-token', 'Basic YWRtaW46YWRtaW4=']) {
            const res = await api(endpoint.method, path, { body: endpoint.body, ...(authorization ? { auth: authorization } : {}) });
            assertProblem(res, 401);
            assert.equal(res.body.error, 'invalid_token', label);
            // RFC 6750 §3.1: without credentials (none, or another scheme) the challenge carries no error code.
            const challenge = res.headers.get('www-authenticate') ?? '';
            if (authorization?.startsWith('Bearer ')) assert.match(challenge, /^Bearer realm="gatehouse", error="invalid_token"/, label);
            else {
              assert.equal(challenge, 'Bearer realm="gatehouse"', label);
              // It says what the admin API takes: not an API key, which it refuses (403 below).
              assert.match(res.body.detail, /admin client/, label);
              assert.doesNotMatch(res.body.detail, /ApiKey/, label);
            }
          }
          const lacking = `Bearer ${await clientToken(admin.id, admin.secret, ADMIN_SCOPES.filter((s) => s !== endpoint.scope).join(' '))}`;
          for (const [who, authorization] of [
            ['a user', auth.user],
            ['a non-admin client', auth.nonAdminClient],
            ['an API key', auth.apiKey],
            ['an admin client’s API key with admin scopes', auth.adminApiKey],
            ['a user’s token with admin scopes, through an admin client', auth.adminUser],
            ['an admin token without the scope', lacking],
          ] as const) {
            const res = await api(endpoint.method, path, { auth: authorization, body: endpoint.body });
            assertProblem(res, 403);
            assert.equal(res.body.error, 'insufficient_scope', `${label} with ${who}`);
            assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/, `${label} with ${who}`);
          }
        }
        assert.equal(await snapshot(), before);
        const refusals = (await api('GET', '/audit-events?kind=admin.refused&limit=1000', as('admin:tokens'))).body.events as { client_id: string; user_id: string | null; data: Record<string, unknown> }[];
        assert.equal(refusals.length, ENDPOINTS.length * 6, 'every refusal of a valid credential is audited');
        assert.ok(refusals.every((e) => e.data.address === '127.0.0.1'), 'with the address the request came from');
        assert.ok(refusals.some((e) => e.client_id === mobile.id && e.user_id === adaId && e.data.credential === 'user'));
        assert.ok(refusals.some((e) => e.client_id === viewer.id && e.data.credential === 'api_key' && e.data.route === 'DELETE /admin/v1/clients/:clientId'));
      });

      it('accepts an admin token that holds every admin scope', async () => {
        for (const path of ['/clients', '/users', '/grants', '/keys', '/audit-events']) assert.equal((await api('GET', path, { auth: auth.allAdmin })).status, 200, path);
      });

      it('answers an unknown route with a 404 problem', async () => {
        assertProblem(await api('GET', '/nothing-here', as('admin:clients')), 404);
      });

      it('answers a method a route does not take with a 405 problem and Allow (RFC 9110 §15.5.6), and HEAD as GET without a body, behind the same token', async () => {
        for (const [method, path, allow] of [
          ['PUT', '/clients', 'GET, POST, HEAD'],
          ['DELETE', '/clients', 'GET, POST, HEAD'],
          ['POST', `/clients/${viewer.id}`, 'GET, PATCH, DELETE, HEAD'],
          ['GET', `/clients/${viewer.id}/secrets/some-secret`, 'DELETE'],
          ['GET', '/keys/rotate', 'POST'],
          ['PUT', `/users/${adaId}/disable`, 'POST'],
          ['POST', '/openapi.json', 'GET, HEAD'],
        ] as const) {
          const res = await api(method, path, as('admin:clients'));
          assertProblem(res, 405);
          assert.equal(res.headers.get('allow'), allow, `${method} ${path}`);
        }
        assert.equal((await server.gatehouse.storage.clients.find(viewer.id))?.id, viewer.id);

        const anonymous = await api('HEAD', '/clients');
        assert.equal(anonymous.status, 401);
        assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="gatehouse"');
        const head = await api('HEAD', '/clients', as('admin:clients'));
        assert.equal(head.status, 200);
        assert.match(head.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(head.body, undefined);
        assert.equal((await api('HEAD', '/clients/app_nobody', as('admin:clients'))).status, 404);
        assert.equal((await api('HEAD', '/openapi.json')).status, 200);
      });
    });

    describe('clients (admin:clients)', () => {
      let created: any;

      it('registers a client with every field and flag, shows its secret once, and the secret works at once', async () => {
        const fields = {
          name: 'Partner portal',
          description: 'Reads objects for the partner portal',
          type: 'confidential',
          base_url: 'https://partner.example.com',
          redirect_uris: ['https://partner.example.com/callback'],
          post_logout_redirect_uris: ['https://partner.example.com/bye'],
          grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
          scopes: ['objects:read', 'model:read', 'openid'],
          default_scopes: ['objects:read'],
          first_party: true,
          impersonation: true,
          resource_server: true,
          jwks: { keys: [{ ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'partner-1' }] },
          backchannel_logout_uri: 'https://partner.example.com/backchannel-logout',
          backchannel_logout_session_required: true,
          owner_user_id: adaId,
        };
        // May impersonate users and introspect every token: registering it takes admin:users and
        // admin:tokens too (a token hands out only what it holds).
        const refused = await api('POST', '/clients', { ...as('admin:clients'), body: fields });
        assertProblem(refused, 403);
        assert.match(refused.headers.get('www-authenticate') ?? '', /error="insufficient_scope".*scope="admin:users"/);
        const refusedAgain = await api('POST', '/clients', { ...asUserAdmin(), body: fields });
        assertProblem(refusedAgain, 403);
        assert.match(refusedAgain.headers.get('www-authenticate') ?? '', /error="insufficient_scope".*scope="admin:tokens"/);
        const res = await api('POST', '/clients', { ...asPartnerManager(), body: fields });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        created = res.body;
        assert.match(created.client_id, /^app_/);
        assert.match(created.client_secret, /^gate_cs_/);
        assert.equal(res.headers.get('location'), `/admin/v1/clients/${created.client_id}`);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        assert.deepEqual(
          { ...created, client_id: undefined, client_secret: undefined, created_at: undefined, updated_at: undefined },
          // Every field as registered, and not an admin client.
          { client_id: undefined, client_secret: undefined, created_at: undefined, updated_at: undefined, ...fields, admin: false },
        );
        assert.equal((await clientToken(created.client_id, created.client_secret, 'model:read')).split('.').length, 3);

        const shown = await api('GET', `/clients/${created.client_id}`, asPartnerManager());
        assert.equal(shown.status, 200);
        assert.equal(shown.body.client_secret, undefined);
        assert.equal(shown.body.name, 'Partner portal');
        const listed = await api('GET', '/clients', as('admin:clients'));
        assert.ok(listed.body.clients.some((c: { client_id: string }) => c.client_id === created.client_id));
        assert.ok(!JSON.stringify(listed.body).includes('gate_cs_'), 'no secret in the list');
      });

      it('refuses a private key offered as a client key, and keeps the keys it had', async () => {
        const privateJwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
        const res = await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { jwks: { keys: [privateJwk] } } });
        assertProblem(res, 400);
        assert.match(JSON.stringify(res.body), /private or secret key material/);
        assert.equal((await api('GET', `/clients/${created.client_id}`, asPartnerManager())).body.jwks.keys[0].kid, 'partner-1');
        const removed = await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { jwks: null } });
        assert.equal(removed.status, 200, JSON.stringify(removed.body));
        assert.equal(removed.body.jwks, null);
      });

      it('refuses, at once, the still-valid token of a client that is no longer an admin client', async () => {
        const demoted = await api('POST', '/clients', { auth: auth.allAdmin, body: { name: 'Old back office', admin: true, scopes: ['admin:users'] } });
        assert.equal(demoted.status, 201, JSON.stringify(demoted.body));
        const token = `Bearer ${await clientToken(demoted.body.client_id, demoted.body.client_secret)}`;
        assert.equal((await api('GET', '/users', { auth: token })).status, 200);
        const patched = await api('PATCH', `/clients/${demoted.body.client_id}`, { auth: auth.allAdmin, body: { admin: false, scopes: ['objects:read'] } });
        assert.equal(patched.status, 200, JSON.stringify(patched.body));
        const refused = await api('GET', '/users', { auth: token });
        assertProblem(refused, 403);
        assert.equal(refused.body.error, 'insufficient_scope');
      });

      it('refuses, at once, an admin scope taken from a client, though its still-valid token carries it; the scopes it keeps keep working', async () => {
        const reduced = await api('POST', '/clients', { auth: auth.allAdmin, body: { name: 'Reduced back office', admin: true, scopes: ADMIN_SCOPES } });
        assert.equal(reduced.status, 201, JSON.stringify(reduced.body));
        const token = `Bearer ${await clientToken(reduced.body.client_id, reduced.body.client_secret)}`;
        assert.equal((await api('GET', '/users', { auth: token })).status, 200);
        const patched = await api('PATCH', `/clients/${reduced.body.client_id}`, { auth: auth.allAdmin, body: { scopes: ['admin:tokens'] } });
        assert.equal(patched.status, 200, JSON.stringify(patched.body));

        for (const [method, path, body, scope] of [
          ['GET', '/users', undefined, 'admin:users'],
          ['POST', '/users', { email: 'after-the-change@example.com', password: 'long enough password' }, 'admin:users'],
          ['GET', '/clients', undefined, 'admin:clients'],
        ] as const) {
          const refused = await api(method, path, { auth: token, body });
          assertProblem(refused, 403);
          assert.equal(refused.body.error, 'insufficient_scope', `${method} ${path}`);
          assert.match(refused.headers.get('www-authenticate') ?? '', new RegExp(`error="insufficient_scope".*scope="${scope}"`), `${method} ${path}`);
        }
        assert.equal(await server.gatehouse.storage.users.findByEmail('after-the-change@example.com'), undefined, 'nothing was created');
        assert.equal((await api('GET', '/audit-events', { auth: token })).status, 200, 'the scope the client kept still works');
      });

      it('registers an admin client with admin scopes, and a public client without a secret', async () => {
        const adminClient = await api('POST', '/clients', { auth: auth.allAdmin, body: { name: 'Second back office', admin: true, scopes: ['admin:users'] } });
        assert.equal(adminClient.status, 201, JSON.stringify(adminClient.body));
        assert.equal(adminClient.body.admin, true);
        assert.deepEqual(adminClient.body.grant_types, ['client_credentials']);
        const spa = await api('POST', '/clients', {
          ...as('admin:clients'),
          body: { name: 'SPA', type: 'public', grant_types: ['authorization_code'], redirect_uris: ['https://spa.example.com/cb'], scopes: ['openid'] },
        });
        assert.equal(spa.status, 201, JSON.stringify(spa.body));
        assert.equal(spa.body.client_secret, undefined);
        assert.deepEqual((await api('GET', `/clients/${spa.body.client_id}/secrets`, as('admin:clients'))).body, { secrets: [] });
        assertProblem(await api('POST', `/clients/${spa.body.client_id}/secrets`, as('admin:clients')), 409);

        // Made confidential, it gets a first secret (shown once); made public again, it loses it.
        const confidential = await api('PATCH', `/clients/${spa.body.client_id}`, { ...as('admin:clients'), body: { type: 'confidential', grant_types: ['authorization_code', 'client_credentials'], scopes: ['objects:read'] } });
        assert.equal(confidential.status, 200, JSON.stringify(confidential.body));
        assert.match(confidential.body.client_secret, /^gate_cs_/);
        await clientToken(spa.body.client_id, confidential.body.client_secret);
        const publicAgain = await api('PATCH', `/clients/${spa.body.client_id}`, { ...as('admin:clients'), body: { type: 'public', grant_types: ['authorization_code'] } });
        assert.equal(publicAgain.status, 200, JSON.stringify(publicAgain.body));
        assert.equal(publicAgain.body.client_secret, undefined);
        assert.deepEqual((await api('GET', `/clients/${spa.body.client_id}/secrets`, as('admin:clients'))).body, { secrets: [] });
      });

      it('lets a token register, change or delete an admin client, or add or remove its credentials, only if it holds every admin scope that client has or will have', async () => {
        const privileged = await api('POST', '/clients', { auth: auth.allAdmin, body: { name: 'Privileged back office', admin: true, scopes: ADMIN_SCOPES } });
        assert.equal(privileged.status, 201, JSON.stringify(privileged.body));
        const target = privileged.body.client_id as string;
        const secretId = (await server.gatehouse.storage.clients.listSecrets(target))[0]!.id;
        const key = await api('POST', `/clients/${target}/api-keys`, { auth: auth.allAdmin, body: { name: 'Back-office script' } });
        assert.equal(key.status, 201, JSON.stringify(key.body));
        const ownScopes = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Clients-only back office', admin: true, scopes: ['admin:clients'] } });
        assert.equal(ownScopes.status, 201, 'an admin client with only scopes the token holds: allowed');
        const plain = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Plain service', scopes: ['objects:read'] } });
        assert.equal(plain.status, 201, JSON.stringify(plain.body));
        const publicKey = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'escalation-1' };
        const snapshot = () => clientsAndCredentials(server, target);
        const before = await snapshot();

        const clientsAndUsers = `Bearer ${await clientToken(admin.id, admin.secret, 'admin:clients admin:users')}`;
        for (const [label, method, path, body, authorization, missing] of [
          ['register an admin client with more admin scopes', 'POST', '/clients', { name: 'Escalate', admin: true, scopes: ['admin:users', 'admin:tokens'] }, auth['admin:clients'], 'admin:users'],
          ['widen an admin client', 'PATCH', `/clients/${ownScopes.body.client_id}`, { scopes: ['admin:clients', 'admin:users'] }, auth['admin:clients'], 'admin:users'],
          ['make a client an admin client', 'PATCH', `/clients/${plain.body.client_id}`, { admin: true, scopes: ['admin:tokens'] }, auth['admin:clients'], 'admin:tokens'],
          ['rename a more privileged admin client', 'PATCH', `/clients/${target}`, { name: 'Taken over' }, auth['admin:clients'], 'admin:users'],
          ['give it keys for private_key_jwt', 'PATCH', `/clients/${target}`, { jwks: { keys: [publicKey] } }, auth['admin:clients'], 'admin:users'],
          ['narrow it', 'PATCH', `/clients/${target}`, { scopes: ['admin:clients'] }, auth['admin:clients'], 'admin:users'],
          ['add it a secret', 'POST', `/clients/${target}/secrets`, {}, auth['admin:clients'], 'admin:users'],
          ['delete its secret', 'DELETE', `/clients/${target}/secrets/${secretId}`, undefined, auth['admin:clients'], 'admin:users'],
          ['create it an API key', 'POST', `/clients/${target}/api-keys`, { name: 'Escalate' }, auth['admin:clients'], 'admin:users'],
          ['revoke its API key', 'DELETE', `/clients/${target}/api-keys/${key.body.id}`, undefined, auth['admin:clients'], 'admin:users'],
          ['delete it', 'DELETE', `/clients/${target}`, undefined, auth['admin:clients'], 'admin:users'],
          ['add it a secret, holding all but one of its scopes', 'POST', `/clients/${target}/secrets`, {}, clientsAndUsers, 'admin:tokens'],
        ] as const) {
          const res = await api(method, path, { auth: authorization, body });
          assertProblem(res, 403);
          assert.equal(res.body.error, 'insufficient_scope', label);
          assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`error="insufficient_scope".*scope="${missing}"`), label);
          assert.ok(res.body.detail.includes(missing), `${label}: the problem names ${missing}`);
        }
        assert.equal(await snapshot(), before, 'nothing changed');
        const refusals = (await api('GET', `/audit-events?kind=admin.refused&client_id=${admin.id}&limit=1000`, as('admin:tokens'))).body.events as { data: Record<string, unknown> }[];
        assert.ok(refusals.some((e) => e.data.target_client_id === target && e.data.scope === 'admin:users' && e.data.route === 'POST /admin/v1/clients/:clientId/secrets' && e.data.address === '127.0.0.1'), 'refusals are audited');

        // Reading needs only admin:clients; a token holding every scope of the client may do it all.
        for (const path of [`/clients/${target}`, `/clients/${target}/secrets`, `/clients/${target}/api-keys`]) assert.equal((await api('GET', path, as('admin:clients'))).status, 200, path);
        const secret = await api('POST', `/clients/${target}/secrets`, { auth: auth.allAdmin });
        assert.equal(secret.status, 201, JSON.stringify(secret.body));
        await clientToken(target, secret.body.client_secret, 'admin:tokens');
        assert.equal((await api('PATCH', `/clients/${target}`, { auth: auth.allAdmin, body: { scopes: ['admin:clients'] } })).status, 200);
        assert.equal((await api('PATCH', `/clients/${target}`, { ...as('admin:clients'), body: { name: 'Now within reach' } })).status, 200, 'narrowed to what the token holds');
        assert.equal((await api('DELETE', `/clients/${target}`, as('admin:clients'))).status, 204);

        const doc = (await api('GET', '/openapi.json')).body;
        for (const [path, method] of CLIENT_WRITES) {
          assert.match(doc.paths[`/admin/v1${path}`][method].description, /every admin scope the client has or will have/, `the document states the rule on ${method} ${path}`);
        }
      });

      it('changes any field or flag, validated as on creation, and the running server applies it at once', async () => {
        const res = await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { name: 'Partner portal v2', scopes: ['objects:read'], first_party: false, base_url: null } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(res.body.name, 'Partner portal v2');
        assert.deepEqual(res.body.scopes, ['objects:read']);
        assert.deepEqual(res.body.default_scopes, ['objects:read']);
        assert.equal(res.body.first_party, false);
        assert.equal(res.body.base_url, null);
        assert.equal(res.body.impersonation, true, 'left-out flags keep their value');
        assert.deepEqual(res.body.redirect_uris, ['https://partner.example.com/callback']);
        // The client cache was invalidated: a scope just taken away is refused on the next request.
        const refused = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'model:read' }, { headers: { authorization: basic(created.client_id, created.client_secret) } });
        assert.equal(refused.status, 400);
        assert.equal(refused.body.error, 'invalid_scope');

        assertProblem(await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { type: 'public' } }), 400, 'grant_types');
        assertProblem(await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { scopes: ['admin:clients'] } }), 400, 'scopes');
        assertProblem(await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { default_scopes: ['model:read'] } }), 400, 'default_scopes');
        assertProblem(await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { redirect_uris: ['https://x.example.com/#frag'] } }), 400, 'redirect_uris');
        assertProblem(await api('PATCH', `/clients/${created.client_id}`, { ...asPartnerManager(), body: { owner_user_id: 'no-such-user' } }), 400, 'owner_user_id');
        assertProblem(await api('PATCH', '/clients/app_missing', { ...as('admin:clients'), body: { name: 'x' } }), 404);
        assert.equal((await api('GET', `/clients/${created.client_id}`, asPartnerManager())).body.name, 'Partner portal v2', 'refused changes changed nothing');
      });

      it('refuses an empty owner_user_id, which would suspend the client; null removes the owner, and the client keeps working throughout', async () => {
        const owned = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Owned service', scopes: ['objects:read'], owner_user_id: adaId } });
        assert.equal(owned.status, 201, JSON.stringify(owned.body));
        const id = owned.body.client_id as string;
        await clientToken(id, owned.body.client_secret);

        assertProblem(await api('PATCH', `/clients/${id}`, { ...as('admin:clients'), body: { owner_user_id: '' } }), 400, 'owner_user_id');
        assert.equal((await api('GET', `/clients/${id}`, as('admin:clients'))).body.owner_user_id, adaId, 'the refused change changed nothing');
        await clientToken(id, owned.body.client_secret);

        const removed = await api('PATCH', `/clients/${id}`, { ...as('admin:clients'), body: { owner_user_id: null } });
        assert.equal(removed.status, 200, JSON.stringify(removed.body));
        assert.equal(removed.body.owner_user_id, null);
        await clientToken(id, owned.body.client_secret);
      });

      it('lets a token allow a client to impersonate users, or manage the credentials of one that may, only if it holds admin:users', async () => {
        const plain = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Support desk', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'], scopes: ['objects:read'] } });
        assert.equal(plain.status, 201, JSON.stringify(plain.body));
        const id = plain.body.client_id as string;
        for (const [label, method, path, body] of [
          ['allow it to impersonate', 'PATCH', `/clients/${id}`, { impersonation: true }],
          ['add a secret to a client that may impersonate', 'POST', `/clients/${created.client_id}/secrets`, {}],
          ['give keys to a client that may impersonate', 'PATCH', `/clients/${created.client_id}`, { jwks: null }],
          ['delete a client that may impersonate', 'DELETE', `/clients/${created.client_id}`, undefined],
        ] as const) {
          const res = await api(method, path, { ...as('admin:clients'), ...(body ? { body } : {}) });
          assertProblem(res, 403);
          assert.match(res.headers.get('www-authenticate') ?? '', /scope="admin:users"/, label);
        }
        assert.equal((await api('GET', `/clients/${id}`, as('admin:clients'))).body.impersonation, false, 'the refused change changed nothing');
        assert.equal((await api('GET', `/clients/${created.client_id}`, as('admin:clients'))).status, 200, 'reading needs admin:clients only');
        const allowed = await api('PATCH', `/clients/${id}`, { ...asUserAdmin(), body: { impersonation: true } });
        assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
        assert.equal(allowed.body.impersonation, true);
      });

      it('lets a token make a client a resource server, or manage one, only if it holds admin:tokens', async () => {
        const clientsAndUsers = asUserAdmin().auth;
        const gateway = await api('POST', '/clients', { auth: auth.allAdmin, body: { name: 'Models API', scopes: ['objects:read'], resource_server: true } });
        assert.equal(gateway.status, 201, JSON.stringify(gateway.body));
        const target = gateway.body.client_id as string;
        const secretId = (await server.gatehouse.storage.clients.listSecrets(target))[0]!.id;
        const keyOfIt = await api('POST', `/clients/${target}/api-keys`, { auth: auth.allAdmin, body: { name: 'Gateway' } });
        assert.equal(keyOfIt.status, 201, JSON.stringify(keyOfIt.body));
        const plain = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Reports API', scopes: ['objects:read'] } });
        assert.equal(plain.status, 201, JSON.stringify(plain.body));
        const publicKey = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'gateway-1' };
        const snapshot = () => clientsAndCredentials(server, target);
        const before = await snapshot();

        for (const [label, method, path, body] of [
          ['register a resource server', 'POST', '/clients', { name: 'Introspect all', scopes: ['objects:read'], resource_server: true }],
          ['make a client a resource server', 'PATCH', `/clients/${plain.body.client_id}`, { resource_server: true }],
          ['rename a resource server', 'PATCH', `/clients/${target}`, { name: 'Taken over' }],
          ['stop it being one', 'PATCH', `/clients/${target}`, { resource_server: false }],
          ['give it keys for private_key_jwt', 'PATCH', `/clients/${target}`, { jwks: { keys: [publicKey] } }],
          ['add it a secret', 'POST', `/clients/${target}/secrets`, {}],
          ['delete its secret', 'DELETE', `/clients/${target}/secrets/${secretId}`, undefined],
          ['create it an API key', 'POST', `/clients/${target}/api-keys`, { name: 'Introspector' }],
          ['revoke its API key', 'DELETE', `/clients/${target}/api-keys/${keyOfIt.body.id}`, undefined],
          ['delete it', 'DELETE', `/clients/${target}`, undefined],
        ] as const) {
          for (const authorization of [auth['admin:clients'], clientsAndUsers]) {
            const res = await api(method, path, { auth: authorization, ...(body ? { body } : {}) });
            assertProblem(res, 403);
            assert.equal(res.body.error, 'insufficient_scope', label);
            assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope".*scope="admin:tokens"/, label);
            assert.ok(res.body.detail.includes('admin:tokens'), `${label}: the problem names admin:tokens`);
          }
        }
        assert.equal(await snapshot(), before, 'nothing changed');
        const refusals = (await api('GET', `/audit-events?kind=admin.refused&client_id=${admin.id}&limit=1000`, as('admin:tokens'))).body.events as { data: Record<string, unknown> }[];
        assert.ok(refusals.some((e) => e.data.target_client_id === target && e.data.scope === 'admin:tokens' && e.data.route === 'DELETE /admin/v1/clients/:clientId'), 'refusals are audited');

        // Reading needs only admin:clients; a token that holds admin:tokens too may do it all.
        assert.equal((await api('GET', `/clients/${target}`, as('admin:clients'))).body.resource_server, true);
        const made = await api('PATCH', `/clients/${plain.body.client_id}`, { auth: auth.allAdmin, body: { resource_server: true } });
        assert.equal(made.status, 200, JSON.stringify(made.body));
        assert.equal(made.body.resource_server, true);
        const secret = await api('POST', `/clients/${target}/secrets`, { auth: auth.allAdmin });
        assert.equal(secret.status, 201, JSON.stringify(secret.body));
        assert.equal((await api('DELETE', `/clients/${target}`, { auth: auth.allAdmin })).status, 204);

        const doc = (await api('GET', '/openapi.json')).body;
        for (const [path, method] of CLIENT_WRITES) {
          assert.match(doc.paths[`/admin/v1${path}`][method].description, /resource server .* admin:tokens/, `the document states the rule on ${method} ${path}`);
        }
      });

      it('lets an admin client introspect every client\'s tokens only if it holds admin:tokens, so that a token with admin:clients cannot register a back office that reads them', async () => {
        const registered = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Clients desk', admin: true, scopes: ['admin:clients'], grant_types: ['client_credentials'] } });
        assert.equal(registered.status, 201, JSON.stringify(registered.body));
        const desk = { id: registered.body.client_id as string, secret: registered.body.client_secret as string };
        const introspect = (token: string, client: { id: string; secret: string }) => post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(client.id, client.secret) } });
        const viewerKey = auth.apiKey!.slice('ApiKey '.length);
        const refreshToken = (await passwordGrant(ada.email, ada.password)).body.refresh_token as string;

        for (const [what, token] of [['an access token', await clientToken(viewer.id, viewer.secret)], ['an API key', viewerKey], ['a refresh token', refreshToken]] as const) {
          assert.deepEqual((await introspect(token, desk)).body, { active: false }, `${what} of another client, to an admin client without admin:tokens`);
          assert.equal((await introspect(token, admin)).body.active, true, `${what} of another client, to an admin client with admin:tokens`);
        }
        assert.equal((await introspect(await clientToken(desk.id, desk.secret), desk)).body.active, true, 'its own token');
      });

      it('gives an admin client no owner, since an owner manages its secrets in the developer portal', async () => {
        const all = { auth: auth.allAdmin! };
        assertProblem(await api('POST', '/clients', { ...all, body: { name: 'Owned back office', admin: true, scopes: ['admin:users'], owner_user_id: adaId } }), 400, 'owner_user_id');
        const owned = await api('POST', '/clients', { ...all, body: { name: 'Owned service 2', scopes: ['objects:read'], owner_user_id: adaId } });
        assert.equal(owned.status, 201, JSON.stringify(owned.body));
        assertProblem(await api('PATCH', `/clients/${owned.body.client_id}`, { ...all, body: { admin: true, scopes: ['admin:users'] } }), 400, 'owner_user_id');
        assert.equal((await api('GET', `/clients/${owned.body.client_id}`, all)).body.admin, false, 'the refused change changed nothing');
      });

      it('adds a second secret, deletes the first, and lists secrets without their values', async () => {
        const listed = await api('GET', `/clients/${created.client_id}/secrets`, asPartnerManager());
        assert.equal(listed.status, 200);
        assert.equal(listed.body.secrets.length, 1);
        const [first] = listed.body.secrets;
        assert.deepEqual(Object.keys(first).sort(), ['created_at', 'expires_at', 'hint', 'id']);
        assert.ok(!JSON.stringify(listed.body).includes(created.client_secret));

        const added = await api('POST', `/clients/${created.client_id}/secrets`, { ...asPartnerManager(), body: { expires_at: new Date(Date.now() + 86_400_000).toISOString() } });
        assert.equal(added.status, 201, JSON.stringify(added.body));
        assert.match(added.body.client_secret, /^gate_cs_/);
        assert.notEqual(added.body.expires_at, null);
        await clientToken(created.client_id, added.body.client_secret);
        await clientToken(created.client_id, created.client_secret);

        assert.equal((await api('DELETE', `/clients/${created.client_id}/secrets/${first.id}`, asPartnerManager())).status, 204);
        const old = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(created.client_id, created.client_secret) } });
        assert.equal(old.status, 401, 'the deleted secret stops working at once');
        await clientToken(created.client_id, added.body.client_secret);
        assertProblem(await api('DELETE', `/clients/${created.client_id}/secrets/${first.id}`, asPartnerManager()), 404);
        assertProblem(await api('POST', `/clients/${created.client_id}/secrets`, { ...asPartnerManager(), body: { expires_at: '2001-01-01T00:00:00Z' } }), 400, 'expires_at');
        created.client_secret = added.body.client_secret;
      });

      it('refuses a secret beyond the five a client may hold with a 409 problem, storing nothing, until one is deleted', async () => {
        // Every authentication with a secret is compared with each one the client holds.
        const service = await server.client({ name: 'Many secrets', scopes: ['objects:read'] });
        for (let i = 1; i < 5; i++) assert.equal((await api('POST', `/clients/${service.id}/secrets`, as('admin:clients'))).status, 201);
        const refused = await api('POST', `/clients/${service.id}/secrets`, as('admin:clients'));
        assertProblem(refused, 409);
        assert.match(refused.body.detail, /at most 5 secrets/);
        const held = (await api('GET', `/clients/${service.id}/secrets`, as('admin:clients'))).body.secrets;
        assert.equal(held.length, 5, 'nothing was stored');
        await clientToken(service.id, service.secret);
        assert.equal((await api('DELETE', `/clients/${service.id}/secrets/${held[0].id}`, as('admin:clients'))).status, 204);
        assert.equal((await api('POST', `/clients/${service.id}/secrets`, as('admin:clients'))).status, 201);
      });

      it('lists a client’s API keys a page at a time, newest first, each once, and refuses a bad limit or a cursor of another list with a 400 problem', async () => {
        const owner = await server.client({ name: 'Many keys', scopes: ['objects:read'] });
        const other = await server.client({ name: 'Other keys', scopes: ['objects:read'] });
        for (const client of [owner, other, owner, owner, other, owner, owner]) {
          assert.equal((await api('POST', `/clients/${client.id}/api-keys`, { ...as('admin:clients'), body: { name: 'Script' } })).status, 201);
        }
        const all = await server.gatehouse.storage.apiKeys.listForClient(owner.id);
        assert.equal(all.length, 5);
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const res: Answer = await api('GET', `/clients/${owner.id}/api-keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`, as('admin:clients'));
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.ok(res.body.api_keys.length <= 2);
          seen.push(...res.body.api_keys.map((key: { id: string }) => key.id));
          cursor = res.body.next_cursor;
          pages += 1;
        } while (cursor && pages < 10);
        assert.deepEqual(seen, all.map((key) => key.id), 'every key once, newest first');
        assert.equal(pages, 3);
        const whole = await api('GET', `/clients/${owner.id}/api-keys`, as('admin:clients'));
        assert.deepEqual([whole.body.api_keys.length, whole.body.next_cursor], [5, null], 'under the default page size of 100 there is one page');

        for (const limit of ['0', '1001', '-1', 'many']) assertProblem(await api('GET', `/clients/${owner.id}/api-keys?limit=${limit}`, as('admin:clients')), 400, 'limit');
        const first = await api('GET', `/clients/${owner.id}/api-keys?limit=1`, as('admin:clients'));
        const clients = await api('GET', '/clients?limit=1', as('admin:clients'));
        for (const [path, foreign] of [
          [`/clients/${other.id}/api-keys`, first.body.next_cursor],
          [`/clients/${owner.id}/api-keys`, clients.body.next_cursor],
          [`/clients/${owner.id}/api-keys`, 'nonsense'],
        ]) {
          assertProblem(await api('GET', `${path}?cursor=${foreign}`, as('admin:clients')), 400, 'cursor');
        }
      });

      it('creates, lists and revokes API keys', async () => {
        const res = await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { name: 'Nightly sync', scopes: ['objects:read'], expires_at: '2999-01-01T00:00:00Z' } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        assert.match(res.body.api_key, /^gate_ak_/);
        assert.deepEqual(res.body.scopes, ['objects:read']);
        assert.equal(res.body.expires_at, '2999-01-01T00:00:00.000Z');
        assert.ok(await server.gatehouse.apiKeys.authenticate(res.body.api_key, server.gatehouse.clock()));

        const listed = await api('GET', `/clients/${created.client_id}/api-keys`, asPartnerManager());
        assert.deepEqual(Object.keys(listed.body.api_keys[0]).sort(), ['created_at', 'expires_at', 'id', 'last_used_at', 'name', 'prefix', 'revoked_at', 'scopes']);
        assert.ok(!JSON.stringify(listed.body).includes(res.body.api_key));

        assert.equal((await api('DELETE', `/clients/${created.client_id}/api-keys/${res.body.id}`, asPartnerManager())).status, 204);
        assert.equal(await server.gatehouse.apiKeys.authenticate(res.body.api_key, server.gatehouse.clock()), undefined, 'revoked at once');
        assert.notEqual((await api('GET', `/clients/${created.client_id}/api-keys`, asPartnerManager())).body.api_keys[0].revoked_at, null);
        assertProblem(await api('DELETE', `/clients/${created.client_id}/api-keys/${res.body.id}`, asPartnerManager()), 404);

        assertProblem(await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { name: 'Downloads', scopes: ['objects:download'] } }), 400, 'scopes');
        assertProblem(await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { name: 'Old', expires_at: '2001-01-01T00:00:00Z' } }), 400, 'expires_at');
        assertProblem(await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { name: 'Soon', expires_at: 'tomorrow' } }), 400, 'expires_at');
        assertProblem(await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { scopes: ['objects:read'] } }), 400, 'name');
        // An empty list is not "the defaults": that is what leaving scopes out means.
        assertProblem(await api('POST', `/clients/${created.client_id}/api-keys`, { ...asPartnerManager(), body: { name: 'Nothing', scopes: [] } }), 400, 'scopes');
        assertProblem(await api('POST', '/clients/app_missing/api-keys', { ...as('admin:clients'), body: { name: 'x' } }), 404);
      });

      it('deletes a client with everything it holds', async () => {
        assert.equal((await api('DELETE', `/clients/${created.client_id}`, asPartnerManager())).status, 204);
        assertProblem(await api('GET', `/clients/${created.client_id}`, asPartnerManager()), 404);
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(created.client_id, created.client_secret) } });
        assert.equal(res.status, 401);
        assertProblem(await api('DELETE', `/clients/${created.client_id}`, asPartnerManager()), 404);
      });

      it('records every change in the audit log, naming the acting admin client and the target', async () => {
        const events = (await api('GET', `/audit-events?client_id=${admin.id}&limit=1000`, as('admin:tokens'))).body.events as { kind: string; client_id: string; data: Record<string, unknown> }[];
        const about = events.filter((e) => e.data.client_id === created.client_id);
        for (const kind of ['admin.client.created', 'admin.client.updated', 'admin.client_secret.created', 'admin.client_secret.deleted', 'admin.api_key.created', 'admin.api_key.revoked', 'admin.client.deleted']) {
          const event = about.find((e) => e.kind === kind);
          assert.ok(event, `an event ${kind}`);
          assert.equal(event.client_id, admin.id);
          assert.equal(event.data.admin_client_id, admin.id);
          assert.equal(event.data.address, '127.0.0.1', `${kind}: the address the request came from`);
        }
      });
    });

    describe('users (admin:users)', () => {
      const grace = { email: 'grace@example.com', password: 'a long first password' };
      let graceId: string;

      it('lists users and clients a page at a time, oldest first, each record once, however many there are', async () => {
        for (let i = 0; i < 5; i++) {
          await server.user(`paged${i}@example.com`, 'a long enough password');
          await server.client({ name: `Paged ${i}` });
        }
        for (const [path, name, scope, all] of [
          ['/users', 'users', 'admin:users', await server.gatehouse.storage.users.list()],
          ['/clients', 'clients', 'admin:clients', await server.gatehouse.storage.clients.list()],
        ] as const) {
          const id = (record: Record<string, string>) => record.id ?? record.client_id;
          const seen: string[] = [];
          let cursor: string | null = null;
          let pages = 0;
          do {
            const res = await api('GET', `${path}?limit=2${cursor ? `&cursor=${cursor}` : ''}`, as(scope));
            assert.equal(res.status, 200, JSON.stringify(res.body));
            assert.ok(res.body[name].length <= 2);
            seen.push(...res.body[name].map(id));
            cursor = res.body.next_cursor;
            pages += 1;
          } while (cursor && pages < 100);
          assert.deepEqual(seen, all.map((record) => record.id), `${path}: every record once, in order`);
          assert.equal(pages, Math.ceil(all.length / 2) || 1);
          const whole = await api('GET', path, as(scope));
          assert.equal(whole.body.next_cursor, null, 'under the default page size of 100 there is one page');
          assert.equal(whole.body[name].length, all.length);
          for (const bad of ['nonsense', Buffer.from('x:y').toString('base64url'), '%00']) {
            assertProblem(await api('GET', `${path}?cursor=${bad}`, as(scope)), 400);
          }
          assertProblem(await api('GET', `${path}?limit=0`, as(scope)), 400);
          assertProblem(await api('GET', `${path}?limit=1001`, as(scope)), 400);
        }
      });

      it('refuses a cursor it did not hand out — a NUL or control character, an overlong id, a time that is no number, bytes that are not UTF-8 — with a 400 problem naming cursor', async () => {
        const cursors = [
          Buffer.from('1:\0').toString('base64url'),
          Buffer.from('1:app_\0x').toString('base64url'),
          Buffer.from('1:a\nb').toString('base64url'),
          Buffer.from(`1:${'a'.repeat(201)}`).toString('base64url'),
          Buffer.from('1e3:app_x').toString('base64url'),
          Buffer.from('-1:app_x').toString('base64url'),
          Buffer.concat([Buffer.from('1:'), Buffer.from([0xff, 0xfe])]).toString('base64url'),
          `${Buffer.from('1:app_x').toString('base64url')}==`,
        ];
        for (const [path, scope] of [['/clients', 'admin:clients'], ['/users', 'admin:users']] as const) {
          for (const cursor of cursors) {
            const res = await api('GET', `${path}?cursor=${encodeURIComponent(cursor)}`, as(scope));
            assertProblem(res, 400, 'cursor');
            assert.equal(res.body.detail, 'cursor is not one this API handed out', `${path} with ${JSON.stringify(Buffer.from(cursor, 'base64url').toString())}`);
          }
          const first = await api('GET', `${path}?limit=1`, as(scope));
          assert.equal((await api('GET', `${path}?limit=1&cursor=${first.body.next_cursor}`, as(scope))).status, 200, 'a cursor it handed out still works');
        }
      });

      it('refuses with a 400 problem naming cursor a cursor handed out by another list, or for other filters', async () => {
        await server.user('cursor.one@example.com', 'a long enough password');
        await server.user('cursor.two@example.com', 'a long enough password');
        await server.client({ name: 'Cursor one' });
        await server.client({ name: 'Cursor two' });
        const cursorOf = async (path: string, scope: Scope) => {
          const res = await api('GET', `${path}${path.includes('?') ? '&' : '?'}limit=1`, as(scope));
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.ok(res.body.next_cursor, `${path} has a next page`);
          return res.body.next_cursor as string;
        };
        const lists = [
          ['/clients', 'admin:clients'],
          ['/users', 'admin:users'],
          ['/grants', 'admin:tokens'],
          ['/audit-events', 'admin:tokens'],
        ] as const;
        for (const [from, fromScope] of lists) {
          const cursor = await cursorOf(from, fromScope);
          for (const [to, toScope] of lists) {
            if (to === from) continue;
            const res = await api('GET', `${to}?cursor=${cursor}`, as(toScope));
            assertProblem(res, 400, 'cursor');
          }
        }
        const users = await cursorOf('/users', 'admin:users');
        const res = await api('GET', `/users?email=${encodeURIComponent('cursor.two@example.com')}&cursor=${users}`, as('admin:users'));
        assertProblem(res, 400, 'cursor');
        assert.match(res.body.detail, /other filters/);
      });

      it('creates a user who can sign in at once, and shows users without their password hash', async () => {
        const res = await api('POST', '/users', { ...as('admin:users'), body: { ...grace, name: 'Grace' } });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        graceId = res.body.id;
        assert.deepEqual(Object.keys(res.body).sort(), ['created_at', 'disabled', 'disabled_at', 'email', 'email_verified', 'id', 'name', 'updated_at']);
        assert.equal(res.body.name, 'Grace');
        assert.equal(res.body.disabled, false);
        assert.equal((await passwordGrant(grace.email, grace.password)).status, 200);
        assert.equal((await api('GET', `/users/${graceId}`, as('admin:users'))).body.email, grace.email);
        const listed = await api('GET', '/users', as('admin:users'));
        assert.ok(listed.body.users.some((u: { id: string }) => u.id === graceId));
        assert.ok(!JSON.stringify(listed.body).includes('argon2'), 'no password hash');
        assertProblem(await api('POST', '/users', { ...as('admin:users'), body: { ...grace, email: 'GRACE@example.com' } }), 409, 'email');
      });

      it('disables and enables a user', async () => {
        const disabled = await api('POST', `/users/${graceId}/disable`, as('admin:users'));
        assert.equal(disabled.status, 200);
        assert.equal(disabled.body.disabled, true);
        assert.notEqual(disabled.body.disabled_at, null);
        assert.equal((await passwordGrant(grace.email, grace.password)).status, 400);
        // An empty body sent as JSON (curl -X POST -H 'Content-Type: application/json') is no body.
        const enabled = await api('POST', `/users/${graceId}/enable`, { ...as('admin:users'), raw: '' });
        assert.equal(enabled.status, 200, JSON.stringify(enabled.body));
        assert.equal(enabled.body.disabled, false);
        assert.equal(enabled.body.disabled_at, null);
        assert.equal((await passwordGrant(grace.email, grace.password)).status, 200);
      });

      it('resets a password and signs the user out everywhere', async () => {
        const browser = await signedInBrowser(server.url, grace.email, grace.password);
        assert.equal((await browser.request(`${server.url}/account`)).status, 200, 'signed in before the reset');
        assertProblem(await api('POST', `/users/${graceId}/password`, { ...as('admin:users'), body: { password: 'short' } }), 400, 'password');
        assertProblem(await api('POST', `/users/${graceId}/password`, { ...as('admin:users'), body: {} }), 400, 'password');
        assert.equal((await api('POST', `/users/${graceId}/password`, { ...as('admin:users'), body: { password: 'a brand new password' } })).status, 204);
        assert.equal((await passwordGrant(grace.email, 'a brand new password')).status, 200);
        assert.equal((await passwordGrant(grace.email, grace.password)).status, 400);
        const after = await browser.request(`${server.url}/account`);
        assert.equal(after.status, 302, 'the session ended with the reset');
        assert.equal(after.location, '/login');
      });

      it('finds a user by email as sign-in matches it (case, spaces, Unicode form, an IDN’s ASCII form), as a page of none or one', async () => {
        const found = async (email: string) => {
          const res = await api('GET', `/users?email=${encodeURIComponent(email)}`, as('admin:users'));
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.equal(res.body.next_cursor, null);
          return res.body.users.map((u: { id: string }) => u.id);
        };
        const josé = await api('POST', '/users', { ...as('admin:users'), body: { email: 'José.Finder@bücher.example'.normalize('NFD'), password: 'a long enough password' } });
        assert.equal(josé.status, 201, JSON.stringify(josé.body));
        for (const typed of [josé.body.email, ` JOSÉ.FINDER@XN--BCHER-KVA.EXAMPLE `.normalize('NFD'), 'josé.finder@BÜCHER.example'.normalize('NFC')]) {
          assert.deepEqual(await found(typed), [josé.body.id], JSON.stringify(typed));
        }
        assert.deepEqual(await found(ada.email), [adaId]);
        assert.deepEqual(await found('nobody.at.all@example.com'), []);
        assert.deepEqual(await found('not an email'), [], 'an exact match: no user has it');
        assert.deepEqual(await found('jose.finder@bücher.example'), [], 'no accent folding: another address');
        const first = await api('GET', `/users?email=${encodeURIComponent(ada.email)}&limit=1`, as('admin:users'));
        assert.deepEqual([first.body.users.length, first.body.next_cursor], [1, null]);
        assertProblem(await api('GET', '/users?email=', as('admin:users')), 400, 'email');
        assertProblem(await api('GET', `/users?email=${'x'.repeat(321)}`, as('admin:users')), 400, 'email');
        assertProblem(await api('GET', '/users?email=a%00@example.com', as('admin:users')), 400, 'email');
      });

      it('changes a user’s name and email, validated as on creation; a new email is not verified unless the body says so; sign-in and userinfo follow at once', async (t) => {
        const created = await api('POST', '/users', { ...as('admin:users'), body: { email: 'hedy@example.com', password: 'a long enough password', name: 'Hedy' } });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const id = created.body.id as string;
        const app = await server.client({ name: 'Profile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'profile', 'email'], firstParty: true });
        const signIn = (username: string) => post(`${server.url}/token`, { grant_type: 'password', client_id: app.id, client_secret: app.secret, username, password: 'a long enough password', scope: 'openid profile email' });
        const token = await signIn('hedy@example.com');
        assert.equal(token.status, 200, JSON.stringify(token.body));
        const userinfo = async (): Promise<Record<string, unknown>> => (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token.body.access_token}` } })).json() as Promise<Record<string, unknown>>;
        assert.deepEqual(await userinfo(), { sub: id, name: 'Hedy', preferred_username: 'hedy@example.com', email: 'hedy@example.com', email_verified: false, updated_at: Date.parse(created.body.updated_at) / 1000 });

        const clock = server.gatehouse.clock;
        t.mock.method(server.gatehouse, 'clock', () => clock() + 60);
        const verified = await api('PATCH', `/users/${id}`, { ...as('admin:users'), body: { email_verified: true } });
        assert.equal(verified.status, 200, JSON.stringify(verified.body));
        assert.deepEqual([verified.body.email, verified.body.email_verified, verified.body.name], ['hedy@example.com', true, 'Hedy']);
        assert.ok(Date.parse(verified.body.updated_at) > Date.parse(created.body.updated_at), 'updated_at set');

        const moved = await api('PATCH', `/users/${id}`, { ...as('admin:users'), body: { name: '  Hedy Lamarr ', email: ' Hedy.Lamarr@EXAMPLE.com' } });
        assert.equal(moved.status, 200, JSON.stringify(moved.body));
        assert.deepEqual([moved.body.email, moved.body.email_verified, moved.body.name], ['hedy.lamarr@example.com', false, 'Hedy Lamarr'], 'stored normalized, trimmed, and no longer verified');
        t.mock.restoreAll();
        assert.deepEqual(await api('GET', `/users/${id}`, as('admin:users')).then((res) => res.body), moved.body);
        // The access token issued before the change reads the user as they are now.
        const info = await userinfo();
        assert.deepEqual([info.sub, info.email, info.email_verified, info.name], [id, 'hedy.lamarr@example.com', false, 'Hedy Lamarr']);
        assert.equal((await signIn('hedy@example.com')).status, 400, 'the old email signs in no more');
        assert.equal((await signIn('HEDY.LAMARR@example.com')).status, 200);
        const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: app.id, client_secret: app.secret, refresh_token: token.body.refresh_token });
        assert.equal(refreshed.status, 200, 'grants stay');

        const both = await api('PATCH', `/users/${id}`, { ...as('admin:users'), body: { email: 'hedy@lamarr.example', email_verified: true } });
        assert.deepEqual([both.status, both.body.email, both.body.email_verified], [200, 'hedy@lamarr.example', true], 'verified when the body says so');
        const same = await api('PATCH', `/users/${id}`, { ...as('admin:users'), body: { email: 'HEDY@Lamarr.example' } });
        assert.deepEqual([same.status, same.body.email_verified], [200, true], 'the same email in another case is no new email');
        const nothing = await api('PATCH', `/users/${id}`, { ...as('admin:users'), body: {} });
        assert.deepEqual(nothing.body, same.body, 'an empty change changes nothing, not even updated_at');

        const events = (await api('GET', `/audit-events?user_id=${id}&kind=admin.user.updated`, as('admin:tokens'))).body.events as { client_id: string; data: Record<string, unknown> }[];
        assert.equal(events.length, 5);
        assert.ok(events.every((e) => e.client_id === admin.id && e.data.user_id === id && e.data.via === 'admin_api'));
        assert.ok(events.some((e) => JSON.stringify(e.data.fields) === JSON.stringify(['name', 'email'])));
      });

      it('refuses a change it cannot make, naming the field, and changes nothing: an unknown user, a malformed body, an email another user has', async () => {
        const created = await api('POST', '/users', { ...as('admin:users'), body: { email: 'unchanged@example.com', password: 'a long enough password', name: 'Unchanged' } });
        const id = created.body.id as string;
        const before = await server.gatehouse.storage.users.findById(id);
        const change = (body: unknown, raw?: string) => api('PATCH', `/users/${id}`, { ...as('admin:users'), ...(raw !== undefined ? { raw } : { body }) });
        for (const [body, field] of [
          [{ email: 'not-an-email' }, 'email'],
          [{ email: 'two@at@example.com' }, 'email'],
          [{ email: 'zero​width@example.com' }, 'email'],
          [{ email: 42 }, 'email'],
          [{ email: null }, 'email'],
          [{ name: 'x'.repeat(201) }, 'name'],
          [{ name: 'Renamed', email_verified: 'yes' }, 'email_verified'],
          [{ name: 'Renamed', password: 'a new long password' }, 'password'],
          [{ name: 'Renamed', disabled: true }, 'disabled'],
          [[{ name: 'Renamed' }], 'body'],
        ] as const) {
          assertProblem(await change(body), 400, field);
        }
        assertProblem(await change(undefined, '{"name": "Renamed",'), 400, 'body');
        for (const taken of [ada.email, ` ${ada.email.toUpperCase()} `]) {
          const res = await change({ name: 'Renamed', email: taken, email_verified: true });
          assertProblem(res, 409, 'email');
        }
        assertProblem(await api('PATCH', '/users/no-such-user', { ...as('admin:users'), body: { name: 'Renamed' } }), 404);
        assert.deepEqual(await server.gatehouse.storage.users.findById(id), before);
        assert.equal((await server.gatehouse.storage.users.findByEmail(ada.email))!.id, adaId, 'Ada keeps her email');
        const kinds = (await api('GET', `/audit-events?user_id=${id}`, as('admin:tokens'))).body.events.map((e: { kind: string }) => e.kind);
        assert.ok(!kinds.includes('admin.user.updated'), 'nothing recorded as changed');
      });

      it('signs a user out everywhere, leaving their password, grants and other users’ sessions', async () => {
        const hopper = { email: 'grace.hopper@example.com', password: 'a long enough password' };
        const { id } = await server.user(hopper.email, hopper.password);
        const signedIn = async (who: { email: string; password: string }) => {
          const browser = await signedInBrowser(server.url, who.email, who.password);
          assert.equal((await browser.request(`${server.url}/account`)).status, 200);
          return browser;
        };
        const laptop = await signedIn(hopper);
        const phone = await signedIn(hopper);
        const other = await signedIn(ada);
        const token = await passwordGrant(hopper.email, hopper.password);
        assert.equal(token.status, 200);

        assertProblem(await api('POST', `/users/${id}/sign-out`, { ...as('admin:users'), body: { reason: 'lost laptop' } }), 400);
        assertProblem(await api('POST', '/users/no-such-user/sign-out', as('admin:users')), 404);
        assert.equal((await laptop.request(`${server.url}/account`)).status, 200, 'a refused request ends nothing');

        const res = await api('POST', `/users/${id}/sign-out`, as('admin:users'));
        assert.equal(res.status, 204, JSON.stringify(res.body));
        assert.equal(res.body, undefined);
        for (const browser of [laptop, phone]) {
          const page = await browser.request(`${server.url}/account`);
          assert.equal(page.status, 302, 'the session ended');
          assert.equal(page.location, '/login');
        }
        assert.equal((await other.request(`${server.url}/account`)).status, 200, 'another user stays signed in');
        assert.equal((await passwordGrant(hopper.email, hopper.password)).status, 200, 'the password stays');
        const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: mobile.id, client_secret: mobile.secret, refresh_token: token.body.refresh_token });
        assert.equal(refreshed.status, 200, 'grants stay');
        assert.equal((await api('POST', `/users/${id}/sign-out`, as('admin:users'))).status, 204, 'a user with no session: nothing to end');
        const events = (await api('GET', `/audit-events?user_id=${id}&kind=admin.user.signed_out`, as('admin:tokens'))).body.events;
        assert.equal(events.length, 2);
        assert.equal(events[0].client_id, admin.id);
      });

      it('deletes a user, and the applications they registered stop working at once', async () => {
        const app = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Grace’s tool', grant_types: ['client_credentials'], scopes: ['objects:read'], owner_user_id: graceId } });
        assert.equal(app.status, 201, JSON.stringify(app.body));
        await clientToken(app.body.client_id, app.body.client_secret);

        assert.equal((await api('DELETE', `/users/${graceId}`, as('admin:users'))).status, 204);
        assertProblem(await api('GET', `/clients/${app.body.client_id}`, as('admin:clients')), 404);
        const refused = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.body.client_id, app.body.client_secret) } });
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error, 'invalid_client');
        const deletion = (await api('GET', `/audit-events?user_id=${graceId}`, as('admin:tokens'))).body.events.find((e: { kind: string }) => e.kind === 'admin.user.deleted');
        assert.deepEqual(deletion.data.client_ids, [app.body.client_id]);

        assertProblem(await api('GET', `/users/${graceId}`, as('admin:users')), 404);
        assertProblem(await api('POST', `/users/${graceId}/disable`, as('admin:users')), 404);
        assertProblem(await api('DELETE', `/users/${graceId}`, as('admin:users')), 404);
        const kinds = (await api('GET', `/audit-events?user_id=${graceId}`, as('admin:tokens'))).body.events.map((e: { kind: string }) => e.kind);
        for (const kind of ['admin.user.created', 'admin.user.disabled', 'admin.user.enabled', 'admin.user.password_reset', 'admin.user.deleted']) assert.ok(kinds.includes(kind), kind);
      });
    });

    describe('grants (admin:tokens)', () => {
      it('lists grants by user and by client, and revokes one with its refresh tokens', async () => {
        const signedIn = await passwordGrant(ada.email, ada.password);
        assert.equal(signedIn.status, 200);
        const grantId = (await server.gatehouse.storage.refreshTokens.find(digestOf(signedIn.body.refresh_token)))!.grant.id;
        const byUser = await api('GET', `/grants?user_id=${adaId}`, as('admin:tokens'));
        assert.equal(byUser.status, 200);
        assert.ok(byUser.body.grants.length >= 2);
        const grant = byUser.body.grants.find((g: { id: string }) => g.id === grantId);
        assert.deepEqual(Object.keys(grant).sort(), ['client_id', 'created_at', 'ends_at', 'expires_at', 'id', 'kind', 'revoked_at', 'scopes', 'status', 'user_id']);
        assert.equal(grant.user_id, adaId);
        assert.equal(grant.client_id, mobile.id);
        assert.equal(grant.kind, 'password');
        assert.equal(grant.revoked_at, null);
        const byClient = await api('GET', `/grants?client_id=${mobile.id}&limit=1`, as('admin:tokens'));
        assert.equal(byClient.body.grants.length, 1);
        assert.equal((await api('GET', `/grants?client_id=${viewer.id}`, as('admin:tokens'))).body.grants.length, 0);

        const revoked = await api('POST', `/grants/${grant.id}/revoke`, as('admin:tokens'));
        assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
        assert.notEqual(revoked.body.revoked_at, null);
        const refresh = await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: mobile.id, client_secret: mobile.secret, refresh_token: signedIn.body.refresh_token });
        assert.equal(refresh.status, 400);
        assert.equal(refresh.body.error, 'invalid_grant');
        const again = await api('POST', `/grants/${grant.id}/revoke`, as('admin:tokens'));
        assert.equal(again.body.revoked_at, revoked.body.revoked_at, 'revoking twice changes nothing');
        assertProblem(await api('POST', '/grants/no-such-grant/revoke', as('admin:tokens')), 404);
        assertProblem(await api('GET', '/grants?limit=0', as('admin:tokens')), 400, 'limit');
        assertProblem(await api('GET', '/grants?limit=many', as('admin:tokens')), 400, 'limit');
      });

      it('lists a user’s grants a page at a time, newest first, each once, however many share a second, and keeps its filters across pages', async () => {
        const storage = server.gatehouse.storage;
        const grace = await server.user('grace.paged@example.com', 'a long enough password');
        const now = Math.floor(Date.now() / 1000);
        // 25 grants, 12 of them in one second, to two clients; Ada's grants of the same seconds in between.
        for (let i = 0; i < 25; i++) {
          const createdAt = i < 12 ? now - 5 : now - 5 - i;
          await storage.grants.create({ id: randomUUID(), clientId: i % 2 === 0 ? mobile.id : viewer.id, userId: grace.id, kind: 'password', scopes: ['objects:read'], authTime: createdAt, createdAt, expiresAt: null, revokedAt: null });
          await storage.grants.create({ id: randomUUID(), clientId: mobile.id, userId: adaId, kind: 'password', scopes: ['objects:read'], authTime: createdAt, createdAt, expiresAt: null, revokedAt: null });
        }
        const walk = async (filters: string, limit: number): Promise<{ id: string; client_id: string; user_id: string }[]> => {
          const seen = [];
          let cursor: string | null = null;
          let pages = 0;
          do {
            const res: Answer = await api('GET', `/grants?${filters}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, as('admin:tokens'));
            assert.equal(res.status, 200, JSON.stringify(res.body));
            assert.ok(res.body.grants.length <= limit);
            seen.push(...res.body.grants);
            cursor = res.body.next_cursor;
            pages += 1;
          } while (cursor && pages < 100);
          return seen;
        };
        const ids = (grants: { id: string }[]) => grants.map((grant) => grant.id);
        const stored = await storage.grants.list({ userId: grace.id, limit: 1000 });
        assert.equal(stored.length, 25);
        for (const limit of [1, 5, 1000]) assert.deepEqual(ids(await walk(`user_id=${grace.id}`, limit)), ids(stored), `${limit} a page: every grant once, in order`);
        const toMobile = await walk(`user_id=${grace.id}&client_id=${mobile.id}`, 4);
        assert.deepEqual(ids(toMobile), ids(stored.filter((grant) => grant.clientId === mobile.id)), 'the filters hold on every page');
        const last = await api('GET', `/grants?user_id=${grace.id}&limit=25`, as('admin:tokens'));
        assert.equal(last.body.next_cursor, null, 'none after the last page');
      });

      it('refuses a grants cursor that is malformed, of another list or of other filters, with a 400 problem naming cursor', async () => {
        const before = JSON.stringify(await server.gatehouse.storage.grants.list({ limit: 1000 }));
        const first = await api('GET', `/grants?user_id=${adaId}&limit=1`, as('admin:tokens'));
        const cursor = first.body.next_cursor as string;
        assert.ok(cursor, 'Ada has more than one grant');
        const users = await api('GET', '/users?limit=1', as('admin:users'));
        const events = await api('GET', '/audit-events?limit=1', as('admin:tokens'));
        const decoded = Buffer.from(cursor, 'base64url').toString();
        for (const [bad, detail] of [
          ['nonsense', 'not one this API handed out'],
          ['%00', 'NUL'],
          [users.body.next_cursor, 'not one this API handed out'],
          [events.body.next_cursor, 'not one this API handed out'],
          [Buffer.from(decoded.replace(/:[^:]*$/, ':a\0b')).toString('base64url'), 'not one this API handed out'],
          [Buffer.from(decoded.replace(/^grants:/, 'audit:')).toString('base64url'), 'not one this API handed out'],
          [`${cursor}==`, 'not one this API handed out'],
        ] as const) {
          const res = await api('GET', `/grants?user_id=${adaId}&cursor=${bad}`, as('admin:tokens'));
          assertProblem(res, 400, 'cursor');
          assert.match(res.body.detail, new RegExp(detail), String(bad));
        }
        for (const filters of [`user_id=${mobile.id}`, `user_id=${adaId}&client_id=${mobile.id}`, `client_id=${mobile.id}`, '']) {
          const res = await api('GET', `/grants?${filters}&cursor=${cursor}`, as('admin:tokens'));
          assertProblem(res, 400, 'cursor');
          assert.match(res.body.detail, /other filters/, filters);
        }
        assert.equal(JSON.stringify(await server.gatehouse.storage.grants.list({ limit: 1000 })), before, 'nothing changed');
        assert.equal((await api('GET', `/grants?user_id=${adaId}&limit=5&cursor=${cursor}`, as('admin:tokens'))).status, 200, 'with its own filters, and any limit, it works');
      });
    });

    describe('signing keys (admin:tokens)', () => {
      it('lists the published keys without private parts, and rotates them', async () => {
        const listed = await api('GET', '/keys', as('admin:tokens'));
        assert.equal(listed.status, 200);
        for (const key of listed.body.keys) assert.deepEqual(Object.keys(key).sort(), ['activated_at', 'alg', 'created_at', 'expires_at', 'kid', 'retired_at', 'state', 'use']);
        const next = listed.body.keys.find((k: { use: string; state: string }) => k.use === 'access' && k.state === 'next');
        const active = listed.body.keys.find((k: { use: string; state: string }) => k.use === 'access' && k.state === 'active');

        // The next keys were published at start-up, moments ago: resource servers may not have them yet.
        const stored = await server.gatehouse.storage.keys.listAll();
        const early = await api('POST', '/keys/rotate', as('admin:tokens'));
        assertProblem(early, 409);
        assert.match(early.body.detail, /rotate after .*"force": true/);
        assert.deepEqual(await server.gatehouse.storage.keys.listAll(), stored, 'nothing rotated');

        const rotated = await api('POST', '/keys/rotate', { ...as('admin:tokens'), body: { force: true } });
        assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
        const state = (kid: string) => rotated.body.keys.find((k: { kid: string }) => k.kid === kid)?.state;
        assert.equal(state(next.kid), 'active');
        assert.equal(state(active.kid), 'retired');
        assert.ok(!JSON.stringify(rotated.body).includes('private'));
        // Tokens signed before the rotation still work (the retired key stays published), new ones too.
        assert.equal((await api('GET', '/keys', as('admin:tokens'))).status, 200);
        const fresh = await clientToken(admin.id, admin.secret, 'admin:tokens');
        assert.equal((await api('GET', '/keys', { auth: `Bearer ${fresh}` })).status, 200);
        const events = (await api('GET', '/audit-events?kind=admin.keys.rotated', as('admin:tokens'))).body.events;
        assert.equal(events.length, 1);
        assert.equal(events[0].client_id, admin.id);
      });
    });

    describe('audit events (admin:tokens)', () => {
      it('queries by time (ISO or epoch seconds), client, user, kind and limit, newest first', async () => {
        const all = (await api('GET', '/audit-events?limit=1000', as('admin:tokens'))).body.events as { id: number; at: string; kind: string; client_id: string | null; user_id: string | null }[];
        assert.ok(all.length > 10);
        for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.at >= all[i]!.at, 'newest first');
        assert.deepEqual(Object.keys(all[0]!).sort(), ['at', 'client_id', 'data', 'id', 'kind', 'outcome', 'user_id']);

        assert.equal((await api('GET', '/audit-events?limit=2', as('admin:tokens'))).body.events.length, 2);
        const kind = (await api('GET', '/audit-events?kind=token.issued', as('admin:tokens'))).body.events as { kind: string }[];
        assert.ok(kind.length > 0 && kind.every((e) => e.kind === 'token.issued'));
        const byUser = (await api('GET', `/audit-events?user_id=${adaId}`, as('admin:tokens'))).body.events as { user_id: string }[];
        assert.ok(byUser.length > 0 && byUser.every((e) => e.user_id === adaId));
        const byClient = (await api('GET', `/audit-events?client_id=${mobile.id}`, as('admin:tokens'))).body.events as { client_id: string }[];
        assert.ok(byClient.length > 0 && byClient.every((e) => e.client_id === mobile.id));

        const future = Math.floor(Date.now() / 1000) + 3600;
        assert.deepEqual((await api('GET', `/audit-events?since=${future}`, as('admin:tokens'))).body.events, []);
        assert.deepEqual((await api('GET', `/audit-events?since=${new Date(future * 1000).toISOString()}`, as('admin:tokens'))).body.events, []);
        assert.equal((await api('GET', `/audit-events?until=2000-01-01T00:00:00Z`, as('admin:tokens'))).body.events.length, 0);
        assert.ok((await api('GET', `/audit-events?since=2000-01-01&until=${future}`, as('admin:tokens'))).body.events.length > 0);

        assertProblem(await api('GET', '/audit-events?since=yesterday', as('admin:tokens')), 400, 'since');
        assertProblem(await api('GET', '/audit-events?until=soon', as('admin:tokens')), 400, 'until');
        assertProblem(await api('GET', '/audit-events?since=2020-01-02&until=2020-01-01', as('admin:tokens')), 400, 'until');
        assertProblem(await api('GET', '/audit-events?limit=1001', as('admin:tokens')), 400, 'limit');
      });

      it('walks the audit log a page at a time, each event once and in order, however many share a second, with every filter', async () => {
        const audit = server.gatehouse.storage.audit;
        const at = Math.floor(Date.now() / 1000) - 7200;
        const client = randomUUID();
        // 40 events in one second (more than a page), in two batches, and some in the seconds around it.
        const event = (i: number, time: number) => ({ at: time, kind: i % 3 === 0 ? 'paged.refused' : 'paged.issued', outcome: 'success' as const, clientId: client, userId: i % 2 === 0 ? adaId : null, data: { i } });
        await audit.append(Array.from({ length: 20 }, (_, i) => event(i, at)));
        await audit.append([event(40, at + 1), event(41, at - 1), ...Array.from({ length: 20 }, (_, i) => event(20 + i, at))]);
        const walk = async (filters: string, limit: number): Promise<{ id: number; at: string; data: { i: number } }[]> => {
          const seen = [];
          let cursor: string | null = null;
          let pages = 0;
          do {
            const res: Answer = await api('GET', `/audit-events?${filters}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, as('admin:tokens'));
            assert.equal(res.status, 200, JSON.stringify(res.body));
            assert.ok(res.body.events.length <= limit);
            seen.push(...res.body.events);
            cursor = res.body.next_cursor;
            pages += 1;
          } while (cursor && pages < 200);
          return seen;
        };
        const ours = await walk(`client_id=${client}`, 3);
        assert.equal(ours.length, 42);
        assert.equal(new Set(ours.map((e) => e.id)).size, 42, 'each event once');
        for (let n = 1; n < ours.length; n++) assert.ok(ours[n - 1]!.at > ours[n]!.at || (ours[n - 1]!.at === ours[n]!.at && ours[n - 1]!.id > ours[n]!.id), 'newest first, then by id');
        assert.deepEqual(ours.map((e) => e.id), (await audit.query({ clientId: client, limit: 1000 })).map((e) => e.id));
        const second = `since=${at}&until=${new Date((at + 1) * 1000).toISOString()}`;
        assert.deepEqual((await walk(`${second}&client_id=${client}`, 7)).map((e) => e.data.i).sort((a, b) => a - b), [...Array(40).keys()], 'the 40 of the second, every one');
        const refused = await walk(`client_id=${client}&kind=paged.refused&user_id=${adaId}`, 2);
        assert.deepEqual(refused.map((e) => e.id), ours.filter((e) => e.data.i % 3 === 0 && e.data.i % 2 === 0).map((e) => e.id), 'the filters hold on every page');
        const whole = await walk('', 1000);
        assert.ok(whole.length > 42);
        assert.deepEqual(whole.filter((e) => ours.some((o) => o.id === e.id)).map((e) => e.id), ours.map((e) => e.id));
      });

      it('refuses an audit cursor that is malformed, of another list or of other filters, with a 400 problem naming cursor', async () => {
        const first = await api('GET', `/audit-events?until=${Math.floor(Date.now() / 1000) + 60}&limit=1`, as('admin:tokens'));
        const cursor = first.body.next_cursor as string;
        assert.ok(cursor);
        const grants = await api('GET', `/grants?user_id=${adaId}&limit=1`, as('admin:tokens'));
        const decoded = Buffer.from(cursor, 'base64url').toString();
        for (const bad of [
          'nonsense',
          grants.body.next_cursor,
          Buffer.from(decoded.replace(/:\d+$/, ':12a')).toString('base64url'),
          Buffer.from(decoded.replace(/:\d+$/, ':99999999999999999')).toString('base64url'),
          Buffer.from(decoded.replace(/:\d+$/, ':0')).toString('base64url'),
          Buffer.from(decoded.replace(/:\d+$/, ':1\0')).toString('base64url'),
        ]) {
          const res = await api('GET', `/audit-events?until=${Math.floor(Date.now() / 1000) + 60}&cursor=${bad}`, as('admin:tokens'));
          assertProblem(res, 400, 'cursor');
          assert.equal(res.body.detail, 'cursor is not one this API handed out', String(bad));
        }
        for (const filters of ['', `until=${Math.floor(Date.now() / 1000) + 61}`, `until=${Math.floor(Date.now() / 1000) + 60}&kind=token.issued`]) {
          const res = await api('GET', `/audit-events?${filters}&cursor=${cursor}`, as('admin:tokens'));
          assertProblem(res, 400, 'cursor');
          assert.match(res.body.detail, /other filters/, filters);
        }
      });
    });

    describe('bad input', () => {
      const createClient = (body: unknown, raw?: string) => api('POST', '/clients', { ...as('admin:clients'), ...(raw !== undefined ? { raw } : { body }) });

      it('refuses a body sent to an operation that takes none, and changes nothing', async () => {
        const user = await api('POST', '/users', { ...as('admin:users'), body: { email: 'bodyless@example.com', password: 'long enough password' } });
        assert.equal(user.status, 201);
        assertProblem(await api('POST', `/users/${user.body.id}/disable`, { ...as('admin:users'), body: { reason: 'spam' } }), 400);
        assert.equal((await server.gatehouse.storage.users.findById(user.body.id))!.disabledAt, null);
        assert.equal((await api('POST', `/users/${user.body.id}/disable`, { ...as('admin:users'), body: {} })).status, 200, 'an empty object is no body');
        assert.equal((await api('POST', `/users/${user.body.id}/enable`, as('admin:users'))).status, 200);
      });

      it('answers a problem naming the field, and stores nothing', async () => {
        const count = (await server.gatehouse.storage.clients.list()).length;
        const cases: [unknown, string][] = [
          [{ scopes: ['objects:read'] }, 'name'],
          [{ name: '   ' }, 'name'],
          [{ name: 42 }, 'name'],
          [{ name: 'x'.repeat(201) }, 'name'],
          [{ name: 'App', colour: 'blue' }, 'colour'],
          [{ name: 'App', type: 'secret' }, 'type'],
          [{ name: 'App', grant_types: ['magic'] }, 'grant_types'],
          [{ name: 'App', grant_types: 'client_credentials password' }, 'grant_types'],
          [{ name: 'App', type: 'public', grant_types: ['client_credentials'] }, 'grant_types'],
          [{ name: 'App', grant_types: ['authorization_code'] }, 'redirect_uris'],
          [{ name: 'App', grant_types: ['authorization_code'], redirect_uris: ['not a url'] }, 'redirect_uris'],
          [{ name: 'App', grant_types: ['authorization_code'], redirect_uris: ['javascript:alert(1)'] }, 'redirect_uris'],
          [{ name: 'App', redirect_uris: [{ uri: 'https://x.example.com' }] }, 'redirect_uris'],
          [{ name: 'App', post_logout_redirect_uris: ['/relative'] }, 'post_logout_redirect_uris'],
          [{ name: 'App', base_url: 'partner.example.com' }, 'base_url'],
          [{ name: 'App', scopes: ['no:such:scope'] }, 'scopes'],
          [{ name: 'App', scopes: ['admin:users'] }, 'scopes'],
          [{ name: 'App', admin: true, scopes: ['objects:read'] }, 'scopes'],
          [{ name: 'App', scopes: ['objects:read'], default_scopes: ['model:read'] }, 'default_scopes'],
          [{ name: 'App', admin: 'sometimes' }, 'admin'],
          [{ name: 'App', owner_user_id: 'nobody' }, 'owner_user_id'],
          [{ name: 'App', owner_user_id: '' }, 'owner_user_id'],
          [[{ name: 'App' }], 'body'],
          ['App', 'body'],
        ];
        for (const [body, field] of cases) assertProblem(await createClient(body), 400, field);
        assertProblem(await createClient(undefined, '{"name": "App",'), 400, 'body');
        assertProblem(await createClient(undefined, ''), 400, 'body');
        assertProblem(await createClient(undefined, '{"name": "App", "__proto__": {"admin": true}}'), 400, 'body');
        assertProblem(await api('POST', '/clients', as('admin:clients')), 400, 'body');
        assert.equal((await server.gatehouse.storage.clients.list()).length, count);
      });

      it('refuses a redirect URI or base URL holding a space or a control character, which the URL parser would drop and redirect elsewhere than registered; stores nothing', async () => {
        const count = (await server.gatehouse.storage.clients.list()).length;
        const code = { name: 'App', grant_types: ['authorization_code'] };
        for (const [body, field] of [
          [{ ...code, redirect_uris: ['https://app.exa\tmple/cb'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: ['https://app.example/cb\n'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: [' https://app.example/cb'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: ['https://app.example/c b'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: ['https://app.example/cb\u001b'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: ['https://app.example/cb\u0085'] }, 'redirect_uris'],
          [{ ...code, redirect_uris: ['https://app.example/cb'], post_logout_redirect_uris: ['https://app.example/\r\n'] }, 'post_logout_redirect_uris'],
          [{ name: 'App', base_url: 'https://app.example/\n' }, 'base_url'],
        ] as const) {
          assertProblem(await createClient(body), 400, field);
        }
        assert.equal((await server.gatehouse.storage.clients.list()).length, count);

        const created = await createClient({ ...code, redirect_uris: ['https://app.example/cb', 'https://app.example/cb', 'https://app.example/other'] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.deepEqual(created.body.redirect_uris, ['https://app.example/cb', 'https://app.example/other'], 'a URI listed twice is registered once');
        const changed = await api('PATCH', `/clients/${created.body.client_id}`, { ...as('admin:clients'), body: { redirect_uris: ['https://app.example/other', 'https://app.example/other'] } });
        assert.equal(changed.status, 200, JSON.stringify(changed.body));
        assert.deepEqual(changed.body.redirect_uris, ['https://app.example/other']);
        assert.equal((await api('DELETE', `/clients/${created.body.client_id}`, as('admin:clients'))).status, 204);
      });

      it('refuses a client or API key name holding a control character, which the command line would print into the operator’s terminal, and a description holding one other than a tab or line break', async () => {
        const count = (await server.gatehouse.storage.clients.list()).length;
        for (const [body, field] of [
          [{ name: 'App\u001b[2J\u001b]0;pwned\u0007' }, 'name'],
          [{ name: 'App\nCLIENT_ID  forged' }, 'name'],
          [{ name: 'App\u009b31m' }, 'name'],
          [{ name: 'App', description: 'Fine\u001b[31m' }, 'description'],
        ] as const) {
          assertProblem(await createClient(body), 400, field);
        }
        assert.equal((await server.gatehouse.storage.clients.list()).length, count);
        const created = await createClient({ name: 'Described app', description: 'First line\r\n\tsecond line' });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal(created.body.description, 'First line\r\n\tsecond line');
        assertProblem(await api('PATCH', `/clients/${created.body.client_id}`, { ...as('admin:clients'), body: { name: 'Re\rnamed' } }), 400, 'name');
        assertProblem(await api('POST', `/clients/${created.body.client_id}/api-keys`, { ...as('admin:clients'), body: { name: 'Key\u001b[1A' } }), 400, 'name');
        assert.deepEqual((await api('GET', `/clients/${created.body.client_id}/api-keys`, as('admin:clients'))).body.api_keys, []);
        assert.equal((await api('GET', `/clients/${created.body.client_id}`, as('admin:clients'))).body.name, 'Described app');
        assert.equal((await api('DELETE', `/clients/${created.body.client_id}`, as('admin:clients'))).status, 204);
      });

      it('refuses a string holding a lone surrogate (\\ud800 in the JSON), which no UTF-8 can store, naming the field, and stores nothing', async () => {
        const snapshot = async () => JSON.stringify({ clients: await server.gatehouse.storage.clients.list(), users: await server.gatehouse.storage.users.list() });
        const before = await snapshot();
        const user = (await server.gatehouse.storage.users.list())[0]!;
        // Sent as written: JSON.stringify would escape the lone surrogate just the same.
        for (const [method, path, raw, field] of [
          ['POST', '/clients', '{"name":"App \\ud800"}', 'name'],
          ['POST', '/clients', '{"name":"App","description":"\\udfff described"}', 'description'],
          ['POST', '/clients', '{"name":"App","grant_types":["authorization_code"],"redirect_uris":["https://app.example/cb\\ud83d"]}', 'redirect_uris'],
          ['PATCH', `/clients/${viewer.id}`, '{"name":"\\ude00 Viewer"}', 'name'],
          ['POST', '/users', '{"email":"lone@example.com","password":"long enough password","name":"\\ud800"}', 'name'],
          ['POST', '/users', '{"email":"lone@example.com","password":"\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800"}', 'password'],
          ['PATCH', `/users/${user.id}`, '{"name":"Ada \\udbff"}', 'name'],
        ] as const) {
          const scope: Scope = path.startsWith('/users') ? 'admin:users' : 'admin:clients';
          const res = await api(method, path, { ...as(scope), raw });
          assertProblem(res, 400);
          assert.deepEqual(res.body.errors.map((e: { field: string }) => e.field.replace(/\[\d+\]$/, '')), [field], raw);
        }
        assert.equal(await snapshot(), before);
        // A surrogate pair is one character, as any other.
        const paired = await createClient({ name: 'App \ud83d\ude00' });
        assert.equal(paired.status, 201, JSON.stringify(paired.body));
        assert.equal(paired.body.name, 'App 😀');
        assert.equal((await api('DELETE', `/clients/${paired.body.client_id}`, as('admin:clients'))).status, 204);
      });

      it('refuses a query parameter an operation does not take, naming it: a misspelt filter never lists every record', async () => {
        for (const [path, scope, field] of [
          [`/grants?user=${adaId}`, 'admin:tokens', 'user'],
          [`/grants?user_id=${adaId}&clientId=${mobile.id}`, 'admin:tokens', 'clientId'],
          ['/audit-events?type=admin.refused', 'admin:tokens', 'type'],
          ['/clients?page=2', 'admin:clients', 'page'],
          ['/keys?use=access', 'admin:tokens', 'use'],
          [`/users/${adaId}?fields=email`, 'admin:users', 'fields'],
        ] as const) {
          const res = await api('GET', path, as(scope));
          assertProblem(res, 400, field);
        }
        const user = await api('POST', `/users/${adaId}/disable?reason=spam`, as('admin:users'));
        assertProblem(user, 400, 'reason');
        assert.equal((await server.gatehouse.storage.users.findById(adaId))!.disabledAt, null);
        assert.equal((await api('GET', `/grants?user_id=${adaId}&client_id=${mobile.id}&limit=5`, as('admin:tokens'))).status, 200);
        assert.equal((await api('GET', '/openapi.json?v=2')).status, 200, 'the public documentation takes any');
      });

      it('checks user input the same way', async () => {
        const count = (await server.gatehouse.storage.users.list()).length;
        for (const [body, field] of [
          [{ email: 'not-an-email', password: 'long enough password' }, 'email'],
          [{ email: 'x@example.com', password: 'short' }, 'password'],
          [{ email: 'x@example.com' }, 'password'],
          [{ password: 'long enough password' }, 'email'],
          [{ email: 'x@example.com', password: 'long enough password', role: 'admin' }, 'role'],
        ] as const) {
          assertProblem(await api('POST', '/users', { ...as('admin:users'), body }), 400, field);
        }
        assert.equal((await server.gatehouse.storage.users.list()).length, count);
      });

      it('refuses a body that is not JSON with a 415 problem, and a body over 64 KiB with a 413 problem', async () => {
        const count = (await server.gatehouse.storage.users.list()).length;
        const json = JSON.stringify({ email: 'typed@example.com', password: 'long enough password' });
        for (const [path, contentType, body] of [
          ['/users', 'application/x-www-form-urlencoded', 'email=x%40example.com'],
          ['/users', 'text/plain', json],
          ['/users', 'text/plain;charset=UTF-8', json],
          [`/users/${adaId}/disable`, 'text/plain', 'spam'],
        ] as const) {
          const res = await fetch(`${server.url}/admin/v1${path}`, { method: 'POST', headers: { authorization: auth['admin:users']!, 'content-type': contentType }, body });
          assertProblem({ status: res.status, headers: res.headers, body: await res.json() }, 415);
        }
        assert.equal((await server.gatehouse.storage.users.list()).length, count);
        assert.equal((await server.gatehouse.storage.users.findById(adaId))!.disabledAt, null);
        const big = await api('POST', '/clients', { ...as('admin:clients'), body: { name: 'Big', description: 'x'.repeat(70 * 1024) } });
        assertProblem(big, 413);
      });
    });

    describe('OpenAPI document and reference page', () => {
      let doc: any;

      it('serves a valid OpenAPI 3.1 document without a token', async () => {
        const res = await api('GET', '/openapi.json');
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
        doc = res.body;
        assert.match(doc.openapi, /^3\.1\.\d+$/);
        assert.equal(typeof doc.info.title, 'string');
        assert.equal(typeof doc.info.version, 'string');
        assert.equal(typeof doc.paths, 'object');
        assert.equal(doc.components.securitySchemes.adminToken.type, 'oauth2');
        assert.deepEqual(Object.keys(doc.components.securitySchemes.adminToken.flows.clientCredentials.scopes).sort(), [...ADMIN_SCOPES].sort());

        const operationIds = new Set<string>();
        const refs: string[] = [];
        const collectRefs = (value: unknown): void => {
          if (Array.isArray(value)) value.forEach(collectRefs);
          else if (value && typeof value === 'object') {
            for (const [key, child] of Object.entries(value)) {
              if (key === '$ref') refs.push(child as string);
              else collectRefs(child);
            }
          }
        };
        collectRefs(doc);
        for (const ref of refs) {
          assert.match(ref, /^#\/components\/(schemas|responses)\//);
          const [, , section, name] = ref.split('/');
          assert.ok(doc.components[section!][name!], `${ref} resolves`);
        }

        for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
          assert.match(path, /^\/admin\/v1\//);
          const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
          for (const [method, op] of Object.entries(operations)) {
            assert.ok(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'].includes(method), method);
            assert.equal(typeof op.operationId, 'string');
            assert.ok(!operationIds.has(op.operationId), `operationId ${op.operationId} is unique`);
            operationIds.add(op.operationId);
            assert.ok(op.responses && Object.keys(op.responses).length > 0, `${method} ${path} has responses`);
            for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
              assert.match(status, /^[1-5]\d\d$/);
              assert.ok(response.$ref || typeof response.description === 'string', `${method} ${path} ${status} has a description`);
            }
            assert.ok(Array.isArray(op.security), `${method} ${path} states its security`);
            for (const requirement of op.security) for (const name of Object.keys(requirement)) assert.ok(doc.components.securitySchemes[name], name);
            const pathParameters = (op.parameters ?? []).filter((p: { in: string }) => p.in === 'path');
            assert.deepEqual(pathParameters.map((p: { name: string }) => p.name).sort(), templated, `${method} ${path} declares its path parameters`);
            for (const p of pathParameters) assert.equal(p.required, true);
            if (op.requestBody) assert.ok(op.requestBody.content['application/json'].schema, `${method} ${path} body schema`);
            if (op.security.length > 0) {
              assert.ok(op.responses['401'] && op.responses['403'], `${method} ${path} documents 401 and 403`);
            }
            // Every request of these methods may carry a body, which each such operation reads: too
            // large, not JSON, or where none is taken.
            if (['post', 'patch', 'delete'].includes(method)) {
              for (const status of ['400', '413', '415']) assert.ok(op.responses[status], `${method} ${path} documents ${status}`);
            }
          }
        }
        // Both refusals carry the RFC 6750 challenge, a 403 naming the scope needed.
        for (const name of ['InvalidToken', 'InsufficientScope']) assert.equal(doc.components.responses[name].headers['WWW-Authenticate'].required, true, name);
        // The document describes itself as what it is: a JSON object, not a string.
        assert.equal(doc.paths['/admin/v1/openapi.json'].get.responses['200'].content['application/json'].schema.type, 'object');
        assert.equal(doc.paths['/admin/v1/docs'].get.responses['200'].content['text/html'].schema.type, 'string');
        assert.ok(doc.paths['/admin/v1/clients'].post.requestBody.content['application/json'].schema.properties.redirect_uris);
        assert.equal(doc.paths['/admin/v1/clients'].post.requestBody.content['application/json'].schema.additionalProperties, false);
      });

      it('describes exactly the routes Fastify registered under /admin/v1', async () => {
        // A second app on the same Gatehouse, watched from its root as it registers its routes.
        const app = buildApp(server.gatehouse);
        const registered: string[] = [];
        const heads: string[] = [];
        app.addHook('onRoute', (route) => {
          // HEAD goes with GET (RFC 9110 §9.3.2): implied by it, not documented as an operation of its own.
          if (route.url.startsWith('/admin/v1')) for (const method of [route.method].flat()) (method === 'HEAD' ? heads : registered).push(`${method} ${route.url}`);
        });
        try {
          await app.ready();
          const res = await app.inject({ method: 'GET', url: '/admin/v1/openapi.json' });
          const document = res.json() as { paths: Record<string, Record<string, unknown>> };
          const documented = Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`));
          assert.deepEqual([...new Set(documented)].sort(), [...new Set(registered)].sort());
          assert.equal(documented.length, registered.length, 'no route twice');
          assert.ok(registered.length >= ENDPOINTS.length + 2);
          assert.deepEqual(heads.sort(), registered.filter((route) => route.startsWith('GET ')).map((route) => route.replace(/^GET/, 'HEAD')).sort());
        } finally {
          await app.close();
        }
      });

      it('serves a readable reference page with a strict Content-Security-Policy and no script', async () => {
        const res = await fetch(`${server.url}/admin/v1/docs`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
        const csp = res.headers.get('content-security-policy') ?? '';
        assert.match(csp, /default-src 'none'/);
        assert.match(csp, /frame-ancestors 'none'/);
        const html = await res.text();
        assert.ok(!/<script/i.test(html));
        assert.ok(!/ style=/i.test(html), 'no inline style');
        for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, { operationId: string }>>)) {
          for (const [method, op] of Object.entries(operations)) {
            assert.ok(html.includes(`id="op-${op.operationId}"`), `the page shows ${op.operationId}`);
            assert.ok(html.includes(`<span class="badge">${method.toUpperCase()}</span> <code>${path}</code>`), `${method} ${path}`);
          }
        }
        for (const scope of ADMIN_SCOPES) assert.ok(html.includes(`Scope: <code>${scope}</code>`), scope);
        assert.ok(html.includes('<code>redirect_uris</code>'), 'body fields are listed');
        assert.ok(html.includes('id="problem-invalid-request"'), 'problem types are explained');
      });

      it('gives each problem a type that points at the reference page', async () => {
        const res = await api('GET', '/audit-events?since=never', as('admin:tokens'));
        assert.equal(res.body.type, `${server.url}/admin/v1/docs#problem-invalid-request`);
      });
    });
  });
}
