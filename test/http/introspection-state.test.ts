import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * RFC 7662 §2.2 and the admin API's promise: once a client is deleted, or a user deleted or
 * disabled, the access tokens they hold are inactive at /introspect and refused by every endpoint
 * that takes a Bearer token (/projects, /userinfo), without waiting for the tokens to expire; and
 * the applications a disabled developer registered are suspended with them.
 */
for (const dialect of DIALECTS) {
  describe(`access tokens of deleted clients and of deleted or disabled users (${dialect})`, () => {
    let server: TestServer;
    let api: { id: string; secret: string };
    let admin: { id: string; secret: string };
    let adminToken: string;
    let users = 0;

    before(async () => {
      // Cached for an hour: what is shown below is the invalidation on the instance that deleted.
      server = await startTestServer(dialect, { config: { clients: { cacheTtlSeconds: 3600 } } });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
      adminToken = await clientToken(admin);
    });
    after(() => server.close());

    async function clientToken(client: { id: string; secret: string }, scope?: string): Promise<string> {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token;
    }
    /** A client of its own for a test (password grant, for user tokens), and a fresh user with a token from it. */
    const userWithToken = async (scope = 'openid model:read') => {
      const app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password'], scopes: ['openid', 'email', 'model:read', 'objects:read'] });
      const email = `user${++users}@example.com`;
      const user = await server.user(email, 'correct horse battery staple');
      const res = await post(`${server.url}/token`, { grant_type: 'password', username: email, password: 'correct horse battery staple', scope }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return { app, userId: user.id, token: res.body.access_token as string };
    };
    const introspect = async (token: string) =>
      (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as { active: boolean } & Record<string, unknown>;
    const projectToken = async (authorization: string) => {
      const response = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }),
      });
      return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
    };
    const userinfo = (token: string) => fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } });
    const adminCall = async (method: string, path: string) => {
      const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${adminToken}` } });
      assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.text()}`);
    };
    const assertRefused = (res: { status: number; headers: Headers; body: Record<string, unknown> }, what: string) => {
      assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error, 'invalid_token', what);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="invalid_token"/, what);
    };

    it('turns a deleted client\'s access token inactive and stops it minting project tokens', async () => {
      const doomed = await server.client({ name: 'Doomed', grantTypes: ['client_credentials'], scopes: ['model:read'] });
      const token = await clientToken(doomed);
      assert.equal((await introspect(token)).active, true);
      assert.equal((await projectToken(`Bearer ${token}`)).status, 201);

      await adminCall('DELETE', `/clients/${doomed.id}`);
      assert.deepEqual(await introspect(token), { active: false });
      assertRefused(await projectToken(`Bearer ${token}`), 'project token from a deleted client\'s token');
    });

    it('refuses the API keys of a deleted client, at /projects and at /introspect', async () => {
      const doomed = await server.client({ name: 'Doomed with a key', grantTypes: ['client_credentials'], scopes: ['model:read'] });
      const client = (await server.gatehouse.storage.clients.find(doomed.id))!;
      const key = (await server.gatehouse.apiKeys.create(client, { name: 'script', scopes: ['model:read'] }, server.gatehouse.clock())).value;
      assert.equal((await introspect(key)).active, true);
      assert.equal((await projectToken(`ApiKey ${key}`)).status, 201);

      await adminCall('DELETE', `/clients/${doomed.id}`);
      assert.deepEqual(await introspect(key), { active: false });
      assertRefused(await projectToken(`ApiKey ${key}`), 'project token from a deleted client\'s API key');
    });

    it('turns a user\'s access token inactive once the client it was issued to is deleted', async () => {
      const { app, token } = await userWithToken();
      assert.equal((await introspect(token)).active, true);

      await adminCall('DELETE', `/clients/${app.id}`);
      assert.deepEqual(await introspect(token), { active: false });
      assertRefused(await projectToken(`Bearer ${token}`), 'project token');
      assert.equal((await userinfo(token)).status, 401);
    });

    it('turns a disabled user\'s access token, and the project tokens minted from it, inactive until the user is enabled again', async () => {
      const { userId, token } = await userWithToken();
      const minted = await projectToken(`Bearer ${token}`);
      assert.equal(minted.status, 201);
      const project = minted.body.access_token as string;
      assert.equal((await introspect(token)).active, true);
      assert.equal((await introspect(project)).active, true);

      await adminCall('POST', `/users/${userId}/disable`);
      assert.deepEqual(await introspect(token), { active: false });
      assert.deepEqual(await introspect(project), { active: false });
      assertRefused(await projectToken(`Bearer ${token}`), 'project token of a disabled user');
      assert.equal((await userinfo(token)).status, 401);

      await adminCall('POST', `/users/${userId}/enable`);
      const active = await introspect(token);
      assert.equal(active.active, true);
      assert.equal(active.sub, userId);
      assert.equal((await introspect(project)).active, true);
      assert.equal((await projectToken(`Bearer ${token}`)).status, 201);
      assert.equal((await userinfo(token)).status, 200);
    });

    it('suspends the applications of a disabled developer (client authentication, tokens, API keys) until the developer is enabled again', async () => {
      const developer = await server.user(`developer${++users}@example.com`, 'correct horse battery staple');
      const app = await server.client({ name: 'Portal app', grantTypes: ['client_credentials'], scopes: ['model:read'], ownerUserId: developer.id });
      const bystander = await server.client({ name: 'Another developer’s app', grantTypes: ['client_credentials'], scopes: ['model:read'] });
      const token = await clientToken(app);
      const client = (await server.gatehouse.storage.clients.find(app.id))!;
      const key = (await server.gatehouse.apiKeys.create(client, { name: 'script', scopes: ['model:read'] }, server.gatehouse.clock())).value;
      assert.equal((await introspect(token)).active, true);
      assert.equal((await introspect(key)).active, true);

      await adminCall('POST', `/users/${developer.id}/disable`);
      const refused = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error, 'invalid_client');
      assert.deepEqual(await introspect(token), { active: false });
      assert.deepEqual(await introspect(key), { active: false });
      assertRefused(await projectToken(`Bearer ${token}`), 'project token from a suspended application\'s token');
      assertRefused(await projectToken(`ApiKey ${key}`), 'project token from a suspended application\'s API key');
      assert.equal((await introspect(await clientToken(bystander))).active, true, 'other applications are untouched');

      await adminCall('POST', `/users/${developer.id}/enable`);
      assert.equal((await introspect(token)).active, true);
      assert.equal((await introspect(key)).active, true);
      assert.equal((await projectToken(`ApiKey ${key}`)).status, 201);
      assert.equal((await introspect(await clientToken(app))).active, true);
    });

    it('turns the refresh tokens of a suspended application inactive until its developer is enabled again', async () => {
      const developer = await server.user(`developer${++users}@example.com`, 'correct horse battery staple');
      const app = await server.client({ name: 'Portal app', grantTypes: ['password', 'refresh_token'], scopes: ['model:read'], ownerUserId: developer.id });
      const email = `user${++users}@example.com`;
      await server.user(email, 'correct horse battery staple');
      const res = await post(`${server.url}/token`, { grant_type: 'password', username: email, password: 'correct horse battery staple', scope: 'model:read' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const refreshToken = res.body.refresh_token as string;
      assert.equal((await introspect(refreshToken)).active, true);

      await adminCall('POST', `/users/${developer.id}/disable`);
      assert.deepEqual(await introspect(res.body.access_token), { active: false });
      assert.deepEqual(await introspect(refreshToken), { active: false }, 'a refresh token is a token of the application like its access tokens');

      await adminCall('POST', `/users/${developer.id}/enable`);
      assert.equal((await introspect(refreshToken)).active, true);
    });

    it('ends a token delegated from a user\'s token with the application that token was issued to: while it is suspended with its developer, and once it is deleted', async () => {
      const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
      const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
      const backOffice = await server.client({ name: 'Support desk', grantTypes: ['client_credentials', exchange], scopes: ['openid', 'model:read'], allowImpersonation: true });
      const developer = await server.user(`developer${++users}@example.com`, 'correct horse battery staple');
      const app = await server.client({ name: 'Portal app', grantTypes: ['password'], scopes: ['openid', 'model:read'], ownerUserId: developer.id });
      const email = `user${++users}@example.com`;
      await server.user(email, 'correct horse battery staple');
      const signedIn = await post(`${server.url}/token`, { grant_type: 'password', username: email, password: 'correct horse battery staple', scope: 'openid model:read' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(signedIn.status, 200, JSON.stringify(signedIn.body));
      const exchanged = await post(
        `${server.url}/token`,
        { grant_type: exchange, subject_token: signedIn.body.access_token, subject_token_type: accessTokenType, actor_token: await clientToken(backOffice), actor_token_type: accessTokenType },
        { headers: { authorization: basic(backOffice.id, backOffice.secret) } },
      );
      assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
      const delegated = exchanged.body.access_token as string;
      assert.equal((await introspect(delegated)).active, true);

      await adminCall('POST', `/users/${developer.id}/disable`);
      assert.deepEqual(await introspect(signedIn.body.access_token), { active: false }, 'the subject token');
      assert.deepEqual(await introspect(delegated), { active: false }, 'the token delegated from it');
      assert.equal((await userinfo(delegated)).status, 401);
      assertRefused(await projectToken(`Bearer ${delegated}`), 'project token from the delegated token');

      await adminCall('POST', `/users/${developer.id}/enable`);
      assert.equal((await introspect(delegated)).active, true, 'back with its application');
      assert.equal((await userinfo(delegated)).status, 200);

      await adminCall('DELETE', `/clients/${app.id}`);
      assert.deepEqual(await introspect(delegated), { active: false }, 'the application deleted');
      assert.equal((await userinfo(delegated)).status, 401);
    });

    it('turns a deleted user\'s access token inactive and refuses it everywhere', async () => {
      const { userId, token } = await userWithToken();
      assert.equal((await introspect(token)).active, true);

      await adminCall('DELETE', `/users/${userId}`);
      assert.deepEqual(await introspect(token), { active: false });
      assertRefused(await projectToken(`Bearer ${token}`), 'project token of a deleted user');
      const res = await userinfo(token);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    });

    it('reads no user for a client\'s own token and one indexed user read for a user\'s token', async () => {
      const own = await server.client({ name: 'Machine', grantTypes: ['client_credentials'], scopes: ['model:read'] });
      const machineToken = await clientToken(own);
      const { token } = await userWithToken();
      const { users, clients } = server.gatehouse.storage;
      const reads = { users: 0, clients: 0 };
      const findById = users.findById;
      const findWithSecrets = clients.findWithSecrets;
      users.findById = (id) => (reads.users++, findById(id));
      clients.findWithSecrets = (id) => (reads.clients++, findWithSecrets(id));
      try {
        // The registry has seen both clients and the caller (their grants): only the user is read.
        assert.equal((await introspect(machineToken)).active, true);
        assert.deepEqual(reads, { users: 0, clients: 0 }, 'a client\'s own token: the client registry only');
        assert.equal((await introspect(token)).active, true);
        assert.deepEqual(reads, { users: 1, clients: 0 }, 'a user\'s token: one read of the user');
      } finally {
        users.findById = findById;
        clients.findWithSecrets = findWithSecrets;
      }
    });
  });
}
