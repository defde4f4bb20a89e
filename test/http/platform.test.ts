import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { updateClient } from '../../src/core/applications.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

for (const dialect of DIALECTS) {
  describe(`API keys, project tokens, introspection, revocation and token exchange (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };
    let other: { id: string; secret: string };
    let api: { id: string; secret: string };
    let backOffice: { id: string; secret: string };
    let firstParty: { id: string; secret: string };
    let userId: string;
    const user = { email: 'ada@example.com', password: 'correct horse battery' };

    before(async () => {
      server = await startTestServer(dialect);
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read', 'model:write', 'bcf:read'] });
      other = await server.client({ name: 'Other', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read'], allowImpersonation: true });
      firstParty = await server.client({ name: 'First party', grantTypes: ['password', 'refresh_token', EXCHANGE], scopes: ['openid', 'objects:read', 'objects:download', 'model:read'] });
      userId = (await server.user(user.email, user.password)).id;
    });
    after(() => server.close());

    const clientToken = async (client: { id: string; secret: string }, scope?: string) =>
      (await post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(client.id, client.secret) } })).body.access_token as string;
    const userTokens = async (scope = 'objects:read objects:download model:read') =>
      (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body;
    /** An API key of the client; expiring `expiresInSeconds` after the moment it is created, when given. */
    const apiKey = async (clientId: string, scopes?: string[], expiresInSeconds?: number) => {
      const client = (await server.gatehouse.storage.clients.find(clientId))!;
      // One reading of the clock for both: read apart, a second could pass between them and the expiry be now.
      const now = server.gatehouse.clock();
      return (await server.gatehouse.apiKeys.create(client, { name: 'script', scopes, expiresAt: expiresInSeconds === undefined ? undefined : now + expiresInSeconds }, now)).value;
    };
    const projectToken = (authorization: string, project: string, body: unknown) =>
      fetch(`${server.url}/projects/${project}/access-tokens`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const introspect = (token: string, client = api, hint?: string) =>
      post(`${server.url}/introspect`, { token, ...(hint ? { token_type_hint: hint } : {}) }, { headers: { authorization: basic(client.id, client.secret) } });
    const revoke = (token: string, client = app, hint?: string) =>
      post(`${server.url}/revoke`, { token, ...(hint ? { token_type_hint: hint } : {}) }, { headers: { authorization: basic(client.id, client.secret) } });
    const inHours = (hours: number) => new Date(Date.now() + hours * 3600_000).toISOString();
    /** A POST whose path goes out exactly as written. */
    const rawPost = (path: string, authorization: string, body: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const { hostname, port } = new URL(server.url);
        const request = httpRequest({ hostname, port, path, method: 'POST', headers: { authorization, 'content-type': 'application/json' } }, (response) => {
          let text = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        });
        request.on('error', reject).end(body);
      });

    describe('API keys (BIMData: Authorization: ApiKey …)', () => {
      it('act as their application with their scopes, until revoked', async () => {
        const key = await apiKey(app.id, ['model:read']);
        assert.match(key, /^gate_ak_/);
        const ok = await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] });
        assert.equal(ok.status, 201);
        const active = await introspect(key);
        assert.deepEqual({ active: active.body.active, client_id: active.body.client_id, scope: active.body.scope, token_type: active.body.token_type }, { active: true, client_id: app.id, scope: 'model:read', token_type: 'ApiKey' });
        assert.equal(active.body.exp, undefined, 'no expiry unless one was set');

        assert.equal((await revoke(key)).status, 200);
        const refused = await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] });
        assert.equal(refused.status, 401);
        assert.match(refused.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_token"/);
        assert.deepEqual((await introspect(key)).body, { active: false });
      });

      it('never carry a user-only scope', async () => {
        const client = (await server.gatehouse.storage.clients.find(backOffice.id))!;
        await assert.rejects(server.gatehouse.apiKeys.create(client, { name: 'x', scopes: ['objects:download'] }, server.gatehouse.clock()), { code: 'ERR_VALIDATION', field: 'scopes' });
      });

      it('lose a scope taken from their application, at introspection and when minting project tokens', async () => {
        const shrinking = await server.client({ name: 'Shrinking', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read', 'model:write'] });
        const key = await apiKey(shrinking.id, ['model:read', 'model:write']);
        assert.equal((await introspect(key)).body.scope, 'model:read model:write');

        await updateClient(server.gatehouse, shrinking.id, { scopes: ['objects:read', 'model:read'] }, server.gatehouse.clock());

        const introspected = await introspect(key);
        assert.equal(introspected.body.active, true);
        assert.equal(introspected.body.scope, 'model:read');
        const refused = await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:write'] });
        assert.equal(refused.status, 403);
        assert.equal(((await refused.json()) as { error: string }).error, 'insufficient_scope');
        assert.equal((await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] })).status, 201);
      });

      it('end the project tokens minted with them when revoked, and cap their lifetime by their own expiry', async () => {
        const key = await apiKey(app.id, ['model:read']);
        const minted = await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(12), scopes: ['model:read'] });
        assert.equal(minted.status, 201);
        const viewer = ((await minted.json()) as { access_token: string }).access_token;
        assert.equal((await introspect(viewer)).body.active, true);
        assert.equal((await revoke(key)).status, 200);
        assert.deepEqual((await introspect(viewer)).body, { active: false }, 'the project token of a revoked key');
        const refused = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${viewer}` } });
        assert.equal(refused.status, 401);

        const expiring = await apiKey(app.id, ['model:read'], 600);
        const { expiresAt } = (await server.gatehouse.storage.apiKeys.findByDigest(digestOf(expiring)))!;
        const capped = await projectToken(`ApiKey ${expiring}`, 'p1', { expires_at: inHours(12), scopes: ['model:read'] });
        assert.equal(capped.status, 201);
        const body = (await capped.json()) as { access_token: string; expires_at: string };
        assert.equal(Date.parse(body.expires_at) / 1000, expiresAt);
        assert.equal(decodeJwt(body.access_token).exp, expiresAt);
      });

      it('are refused to a public application, and revoked when their application becomes public', async () => {
        const web = await server.client({ name: 'Going public', grantTypes: ['authorization_code'], scopes: ['objects:read', 'model:read'], redirectUris: ['https://app.example/callback'] });
        const key = await apiKey(web.id, ['model:read']);
        assert.equal((await introspect(key)).body.active, true);

        const changed = await updateClient(server.gatehouse, web.id, { type: 'public' }, server.gatehouse.clock());
        assert.equal(changed?.client.type, 'public');

        assert.deepEqual((await introspect(key)).body, { active: false });
        assert.equal((await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] })).status, 401);
        const listed = await server.gatehouse.storage.apiKeys.listForClient(web.id);
        assert.ok(listed.every((k) => k.revokedAt !== null), 'revoked, as the portal shows no keys for a public application');
        await assert.rejects(apiKey(web.id, ['model:read']), { code: 'ERR_VALIDATION', field: 'type' });
      });

      it('stop working once expired', async () => {
        const key = await apiKey(app.id, ['model:read'], 1);
        await new Promise((resolve) => setTimeout(resolve, 2100));
        assert.equal((await projectToken(`ApiKey ${key}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] })).status, 401);
      });
    });

    describe('project tokens (BIMData: POST /projects/{id}/access-tokens)', () => {
      it('mints a 12-hour model:read token bound to the project, that introspects with only that scope', async () => {
        const res = await projectToken(`Bearer ${await clientToken(app)}`, 'proj-42', { expires_at: inHours(12), scopes: ['model:read'] });
        assert.equal(res.status, 201);
        const body = (await res.json()) as Record<string, unknown>;
        assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_at', 'project', 'scopes', 'token_type']);
        assert.equal(body.token_type, 'Bearer');
        assert.deepEqual(body.scopes, ['model:read']);
        assert.equal(body.project, 'proj-42');
        const introspected = await introspect(body.access_token as string);
        assert.equal(introspected.body.active, true);
        assert.equal(introspected.body.scope, 'model:read');
        assert.equal(introspected.body.project, 'proj-42');
        assert.ok(Math.abs((introspected.body.exp as number) - Date.parse(body.expires_at as string) / 1000) <= 1);
        // The application renews its own token at will: the viewer token may outlive it.
        assert.ok(Date.parse(body.expires_at as string) - Date.now() > 11 * 3600_000, body.expires_at as string);
      });

      it('refuses a scope the caller lacks with 403 insufficient_scope and a Bearer challenge naming it (RFC 6750 §3.1)', async () => {
        const res = await projectToken(`Bearer ${await clientToken(app, 'model:read')}`, 'p1', { expires_at: inHours(1), scopes: ['model:write'] });
        assert.equal(res.status, 403);
        assert.equal(((await res.json()) as { error: string }).error, 'insufficient_scope');
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="insufficient_scope", .*scope="model:write"/);
      });

      it('refuses a scope that may not go into project tokens', async () => {
        const res = await projectToken(`Bearer ${await clientToken(app)}`, 'p1', { expires_at: inHours(1), scopes: ['objects:read'] });
        assert.equal(res.status, 400);
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_scope');
      });

      it('are refused a scope taken from the application since its access token was issued, as its API keys are: through POST /projects and token exchange, and at introspection and userinfo', async () => {
        const shrinking = await server.client({ name: 'Shrinking', grantTypes: ['client_credentials', 'password', 'refresh_token', EXCHANGE], scopes: ['openid', 'objects:read', 'model:read', 'model:write'] });
        const own = await clientToken(shrinking, 'model:read model:write');
        const { access_token: signedIn, refresh_token: refreshToken } = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'openid model:read' }, { headers: { authorization: basic(shrinking.id, shrinking.secret) } })).body as { access_token: string; refresh_token: string };
        assert.equal((await introspect(own)).body.scope, 'model:read model:write');
        assert.equal((await introspect(refreshToken)).body.scope, 'openid model:read');
        assert.equal((await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${signedIn}` } })).status, 200);

        await updateClient(server.gatehouse, shrinking.id, { scopes: ['objects:read', 'model:read'] }, server.gatehouse.clock());

        const minted = await projectToken(`Bearer ${own}`, 'p1', { expires_at: inHours(20), scopes: ['model:write'] });
        assert.equal(minted.status, 403);
        assert.equal(((await minted.json()) as { error: string }).error, 'insufficient_scope');
        const exchange = (scope?: string) =>
          post(`${server.url}/token`, { grant_type: EXCHANGE, subject_token: own, subject_token_type: ACCESS_TOKEN, resource: 'project:p1', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(shrinking.id, shrinking.secret) } });
        const exchanged = await exchange('model:write');
        assert.equal(exchanged.status, 400);
        assert.equal(exchanged.body.error, 'invalid_scope');
        assert.equal(decodeJwt((await exchange()).body.access_token).scope, 'model:read', 'every project scope the token still holds');

        const introspected = await introspect(own);
        assert.equal(introspected.body.active, true);
        assert.equal(introspected.body.scope, 'model:read');
        assert.equal((await introspect(signedIn)).body.scope, 'model:read');
        assert.equal((await introspect(refreshToken)).body.scope, 'model:read', 'a refresh token too carries only what its client still holds');
        const userinfo = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${signedIn}` } });
        assert.equal(userinfo.status, 403, 'openid was taken from the application');
        assert.match(userinfo.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
        assert.equal((await projectToken(`Bearer ${own}`, 'p1', { expires_at: inHours(20), scopes: ['model:read'] })).status, 201, 'the scopes it keeps keep working');
      });

      it('mints one from a user\'s access token (password grant): on behalf of the user, bound to the project, within that token\'s scopes', async () => {
        const { access_token } = await userTokens('objects:read model:read');
        const res = await projectToken(`Bearer ${access_token}`, 'p-user', { expires_at: inHours(12), scopes: ['model:read'] });
        assert.equal(res.status, 201);
        const body = (await res.json()) as { access_token: string; scopes: string[]; project: string };
        assert.deepEqual(body.scopes, ['model:read']);
        assert.equal(body.project, 'p-user');
        const introspected = await introspect(body.access_token);
        assert.deepEqual(
          { active: introspected.body.active, sub: introspected.body.sub, client_id: introspected.body.client_id, scope: introspected.body.scope, project: introspected.body.project },
          { active: true, sub: userId, client_id: firstParty.id, scope: 'model:read', project: 'p-user' },
        );
        // The grant has refresh tokens: the application could renew the user's token at will.
        assert.ok((introspected.body.exp as number) - decodeJwt(access_token).exp! > 10 * 3600, 'not capped by a renewable token');

        // The client may hold model:read, but this user's token was not given it.
        const narrow = (await userTokens('objects:read')).access_token;
        const refused = await projectToken(`Bearer ${narrow}`, 'p-user', { expires_at: inHours(12), scopes: ['model:read'] });
        assert.equal(refused.status, 403);
        assert.equal(((await refused.json()) as { error: string }).error, 'insufficient_scope');
      });

      it('ends no later than a user\'s token that the application cannot renew: one without a refresh token, an impersonation', async () => {
        const once = await server.client({ name: 'No refresh', grantTypes: ['password'], scopes: ['model:read'] });
        const single = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'model:read' }, { headers: { authorization: basic(once.id, once.secret) } })).body;
        assert.equal(single.refresh_token, undefined);
        const impersonated = (await post(`${server.url}/token`, { grant_type: EXCHANGE, requested_subject: userId, scope: 'model:read' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } })).body;
        for (const [what, accessToken] of [['without a refresh token', single.access_token], ['an impersonation', impersonated.access_token]] as const) {
          const res = await projectToken(`Bearer ${accessToken}`, 'p-capped', { expires_at: inHours(12), scopes: ['model:read'] });
          assert.equal(res.status, 201, what);
          const body = (await res.json()) as { access_token: string; expires_at: string };
          assert.equal(Date.parse(body.expires_at) / 1000, decodeJwt(accessToken).exp, what);
          assert.equal(decodeJwt(body.access_token).exp, decodeJwt(accessToken).exp, what);
        }
      });

      it('ends no later than a token the application can no longer renew, its grant type taken away: client credentials, refresh tokens', async () => {
        const cutOff = await server.client({ name: 'Cut off', grantTypes: ['client_credentials', 'password', 'refresh_token'], scopes: ['model:read'] });
        const own = await clientToken(cutOff);
        const signedIn = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'model:read' }, { headers: { authorization: basic(cutOff.id, cutOff.secret) } })).body;
        assert.ok(signedIn.refresh_token);
        await updateClient(server.gatehouse, cutOff.id, { grantTypes: ['password'] }, server.gatehouse.clock());
        assert.equal((await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: signedIn.refresh_token }, { headers: { authorization: basic(cutOff.id, cutOff.secret) } })).body.error, 'unauthorized_client');

        for (const [what, accessToken] of [['its own token', own], ["a user's token", signedIn.access_token]] as const) {
          const res = await projectToken(`Bearer ${accessToken}`, 'p-cut', { expires_at: inHours(12), scopes: ['model:read'] });
          assert.equal(res.status, 201, what);
          const body = (await res.json()) as { access_token: string; expires_at: string };
          assert.equal(decodeJwt(body.access_token).exp, decodeJwt(accessToken).exp, what);
          assert.equal(Date.parse(body.expires_at) / 1000, decodeJwt(accessToken).exp, what);
        }
      });

      it('refuses an expires_at in the past, beyond the maximum, or malformed, with 400', async () => {
        const token = await clientToken(app);
        for (const expires_at of [inHours(-1), inHours(48), 'tomorrow', 12, null]) {
          const res = await projectToken(`Bearer ${token}`, 'p1', { expires_at, scopes: ['model:read'] });
          assert.equal(res.status, 400, String(expires_at));
          assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
        }
      });

      it('refuses the project ids . and .., which name no project but a path step to an API that puts the id in a path', async () => {
        const token = await clientToken(app);
        // Sent as written: fetch would resolve the dot segments, as a browser does.
        for (const encoded of ['%2E', '%2E%2E', '.%2E']) {
          const res = await rawPost(`/projects/${encoded}/access-tokens`, `Bearer ${token}`, JSON.stringify({ expires_at: inHours(1), scopes: ['model:read'] }));
          assert.equal(res.status, 400, encoded);
          assert.equal(JSON.parse(res.body).error, 'invalid_request', encoded);
        }
        for (const project of ['.', '..']) {
          const res = await post(
            `${server.url}/token`,
            { grant_type: EXCHANGE, subject_token: token, subject_token_type: ACCESS_TOKEN, resource: `project:${project}`, scope: 'model:read' },
            { headers: { authorization: basic(app.id, app.secret) } },
          );
          assert.equal(res.status, 400, project);
          assert.equal(res.body.error, 'invalid_target', project);
        }
        const fine = await projectToken(`Bearer ${token}`, 'v1.2..3', { expires_at: inHours(1), scopes: ['model:read'] });
        assert.equal(fine.status, 201, 'dots within an id are fine');
      });

      it('refuses a missing or invalid token with 401, and a project token minting another with 403', async () => {
        assert.equal((await projectToken('', 'p1', { expires_at: inHours(1), scopes: ['model:read'] })).status, 401);
        assert.equal((await projectToken('Bearer not-a-token', 'p1', { expires_at: inHours(1), scopes: ['model:read'] })).status, 401);
        const res = await projectToken(`Bearer ${await clientToken(app)}`, 'p1', { expires_at: inHours(1), scopes: ['model:read'] });
        const derived = ((await res.json()) as { access_token: string }).access_token;
        assert.equal((await projectToken(`Bearer ${derived}`, 'p1', { expires_at: inHours(0.5), scopes: ['model:read'] })).status, 403);
      });

      it('are also available through token exchange (RFC 8693), resource = the project', async () => {
        const subject = await clientToken(app);
        const res = await post(
          `${server.url}/token`,
          { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, resource: 'project:p7', scope: 'model:read' },
          { headers: { authorization: basic(app.id, app.secret) } },
        );
        assert.equal(res.status, 200);
        assert.equal(res.body.issued_token_type, ACCESS_TOKEN);
        assert.equal(res.body.token_type, 'Bearer');
        const claims = decodeJwt(res.body.access_token);
        assert.equal(claims.project, 'p7');
        assert.equal(claims.scope, 'model:read');
      });
    });

    describe('introspection (RFC 7662)', () => {
      it('describes an access token to a resource server', async () => {
        const token = await clientToken(app, 'objects:read');
        const res = await introspect(token);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        assert.equal(res.body.active, true);
        assert.equal(res.body.client_id, app.id);
        assert.equal(res.body.sub, app.id);
        assert.equal(res.body.scope, 'objects:read');
        assert.equal(res.body.token_type, 'Bearer');
        assert.equal(typeof res.body.exp, 'number');
        assert.equal(typeof res.body.iat, 'number');
      });

      it('describes a refresh token, whatever the hint says', async () => {
        const { refresh_token } = await userTokens();
        for (const hint of [undefined, 'refresh_token', 'access_token', 'nonsense']) {
          const res = await introspect(refresh_token, api, hint);
          assert.equal(res.body.active, true, String(hint));
          assert.equal(res.body.sub, userId);
          assert.equal(res.body.token_type, 'refresh_token');
        }
      });

      it('answers active:false for a refresh token whose user is disabled, and true again once enabled', async () => {
        const { refresh_token } = await userTokens();
        const { storage, clock } = server.gatehouse;
        await storage.users.setDisabled(userId, clock(), clock());
        try {
          assert.deepEqual((await introspect(refresh_token, api)).body, { active: false });
        } finally {
          await storage.users.setDisabled(userId, null, clock());
        }
        assert.equal((await introspect(refresh_token, api)).body.active, true);
      });

      it('answers active:false for a refresh token whose client is no longer allowed the refresh_token grant, as the token endpoint refuses it, and true again once it is', async () => {
        const cutOff = await server.client({ name: 'Refresh taken away', grantTypes: ['password', 'refresh_token'], scopes: ['model:read'] });
        const { refresh_token } = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'model:read' }, { headers: { authorization: basic(cutOff.id, cutOff.secret) } })).body;
        await updateClient(server.gatehouse, cutOff.id, { grantTypes: ['password'] }, server.gatehouse.clock());
        const refused = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token }, { headers: { authorization: basic(cutOff.id, cutOff.secret) } });
        assert.equal(refused.body.error, 'unauthorized_client');
        assert.deepEqual((await introspect(refresh_token, api)).body, { active: false });
        assert.deepEqual((await introspect(refresh_token, cutOff)).body, { active: false }, 'to the client itself too');

        await updateClient(server.gatehouse, cutOff.id, { grantTypes: ['password', 'refresh_token'] }, server.gatehouse.clock());
        assert.equal((await introspect(refresh_token, api)).body.active, true);
      });

      it('answers active:false for unknown, malformed and foreign-signed tokens', async () => {
        for (const token of ['x', 'gate_rt_' + 'A'.repeat(49), 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', (await clientToken(app)).slice(0, -4) + 'AAAA']) {
          assert.deepEqual((await introspect(token)).body, { active: false }, token);
        }
      });

      it('shows a client its own tokens but not another client\'s', async () => {
        const token = await clientToken(other);
        assert.equal((await introspect(token, other)).body.active, true);
        assert.deepEqual((await introspect(token, app)).body, { active: false });
      });

      it('refuses a request without a token, or with an empty one (RFC 6749 §3.1: a parameter without a value is omitted), with 400 invalid_request', async () => {
        for (const [body, json] of [[{}, false], [{ token: '' }, false], [{ token: '', token_type_hint: 'access_token' }, true]] as const) {
          const res = await post(`${server.url}/introspect`, body, { json, headers: { authorization: basic(api.id, api.secret) } });
          assert.equal(res.status, 400, JSON.stringify(body));
          assert.deepEqual(res.body, { error: 'invalid_request', error_description: 'token is required' });
          assert.equal(res.headers.get('cache-control'), 'no-store');
        }
      });

      it('shows a client its own API keys, and another client\'s as inactive without counting that as a use of the key', async () => {
        const key = await apiKey(app.id, ['model:read']);
        const { apiKeys, storage } = server.gatehouse;
        const stored = async () => (await storage.apiKeys.listForClient(app.id)).find((k) => k.prefix === key.slice(0, 12))!;
        assert.deepEqual((await introspect(key, other)).body, { active: false });
        await apiKeys.flush();
        assert.equal((await stored()).lastUsedAt, null, 'introspected by a client that may not see it: not a use');
        assert.equal((await introspect(key, app)).body.active, true);
        await apiKeys.flush();
        assert.equal(typeof (await stored()).lastUsedAt, 'number', 'its own client (or a resource server) checking it is');
      });

      it('requires client authentication', async () => {
        const res = await post(`${server.url}/introspect`, { token: await clientToken(app) });
        assert.equal(res.status, 401);
        assert.equal(res.body.error, 'invalid_client');
      });

      it('refuses a token repeated in a JSON body with invalid_request, at /introspect and at /revoke, which then revokes neither', async () => {
        const [first, second] = [await clientToken(app, 'model:read'), await clientToken(app, 'model:write')];
        const body = `{"token":"${first}","token_type_hint":"access_token","token":"${second}"}`;
        for (const [path, client] of [['/introspect', api], ['/revoke', app]] as const) {
          const res = await post(`${server.url}${path}`, body, { json: true, headers: { authorization: basic(client.id, client.secret) } });
          assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
          assert.deepEqual(res.body, { error: 'invalid_request', error_description: 'the parameter token is included more than once' }, path);
        }
        for (const token of [first, second]) assert.equal((await introspect(token)).body.active, true);
      });
    });

    describe('revocation (RFC 7009)', () => {
      it('revokes an access token by its jti, so introspection turns it inactive', async () => {
        const token = await clientToken(app, 'bcf:read');
        assert.equal((await revoke(token, app, 'access_token')).status, 200);
        assert.deepEqual((await introspect(token)).body, { active: false });
        const fresh = await clientToken(app, 'bcf:read');
        assert.notEqual(fresh, token, 'a revoked token is never handed out again by the reuse window');
        assert.equal((await introspect(fresh)).body.active, true);
      });

      it('revokes a refresh token and its whole grant, even with a wrong hint', async () => {
        const { refresh_token } = await userTokens();
        assert.equal((await post(`${server.url}/revoke`, { token: refresh_token, token_type_hint: 'access_token' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).status, 200);
        const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(refreshed.body.error, 'invalid_grant');
      });

      it('refuses a request without a token, or with an empty one, with 400 invalid_request rather than a 200 that says it was revoked', async () => {
        const token = await clientToken(app, 'bcf:read');
        for (const [body, json] of [[{}, false], [{ token: '' }, false], [{ token: '', token_type_hint: 'access_token' }, true]] as const) {
          const res = await post(`${server.url}/revoke`, body, { json, headers: { authorization: basic(app.id, app.secret) } });
          assert.equal(res.status, 400, JSON.stringify(body));
          assert.deepEqual(res.body, { error: 'invalid_request', error_description: 'token is required' });
        }
        assert.equal((await introspect(token)).body.active, true);
      });

      it('answers 200 for unknown tokens and changes nothing', async () => {
        for (const token of ['unknown', 'gate_rt_' + 'B'.repeat(49)]) assert.equal((await revoke(token)).status, 200);
      });

      it('refuses to revoke another client\'s token, which keeps working', async () => {
        const token = await clientToken(other);
        const res = await revoke(token, app);
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'unauthorized_client');
        assert.equal((await introspect(token)).body.active, true);
      });
    });

    describe('impersonation and delegation (RFC 8693)', () => {
      it('is refused to a client without the privilege, and audited', async () => {
        const res = await post(
          `${server.url}/token`,
          { grant_type: EXCHANGE, requested_subject: userId, subject_token: await clientToken(firstParty, 'objects:read').catch(() => 'x'), subject_token_type: ACCESS_TOKEN },
          { headers: { authorization: basic(firstParty.id, firstParty.secret) } },
        );
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'unauthorized_client');
      });

      it('impersonates a user for a privileged back office: the token names the user as subject and the client as actor', async () => {
        const res = await post(`${server.url}/token`, { grant_type: EXCHANGE, requested_subject: userId, scope: 'objects:download' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(res.status, 200);
        const claims = decodeJwt(res.body.access_token);
        assert.equal(claims.sub, userId);
        assert.deepEqual(claims.act, { sub: backOffice.id, client_id: backOffice.id });
        assert.equal(claims.scope, 'objects:download');
        await server.gatehouse.audit.flush();
        const events = await server.gatehouse.storage.audit.query({ kind: 'token.exchanged', clientId: backOffice.id });
        assert.ok(events.some((e) => e.outcome === 'success' && e.userId === userId));
      });

      it('delegates with a user\'s subject_token and the client\'s own actor_token, within the user\'s scopes', async () => {
        const subject = (await userTokens('objects:read model:read')).access_token;
        const actor = await clientToken(backOffice);
        const grant = { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN };
        const res = await post(`${server.url}/token`, grant, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(res.status, 200);
        const claims = decodeJwt(res.body.access_token);
        assert.equal(claims.sub, userId);
        assert.equal((claims.act as { sub: string }).sub, backOffice.id);
        const wider = await post(`${server.url}/token`, { ...grant, scope: 'objects:download' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(wider.body.error, 'invalid_scope');
      });

      it('stops at once, at Gatehouse\'s endpoints, the tokens a client acts with for users once its privilege is taken away, and the project tokens minted with them', async () => {
        const acting = await server.client({ name: 'Acting', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read'], allowImpersonation: true });
        const exchange = (body: Record<string, string>) => post(`${server.url}/token`, { grant_type: EXCHANGE, ...body }, { headers: { authorization: basic(acting.id, acting.secret) } });
        const impersonated = (await exchange({ requested_subject: userId, scope: 'model:read' })).body.access_token as string;
        const subject = (await userTokens('objects:read model:read')).access_token;
        const delegated = (await exchange({ subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token: await clientToken(acting), actor_token_type: ACCESS_TOKEN })).body.access_token as string;
        const minted = await projectToken(`Bearer ${impersonated}`, 'p-acting', { expires_at: inHours(0.5), scopes: ['model:read'] });
        assert.equal(minted.status, 201);
        const project = ((await minted.json()) as { access_token: string }).access_token;
        const own = await clientToken(acting);
        for (const token of [impersonated, delegated, project, own]) assert.equal((await introspect(token)).body.active, true);

        await updateClient(server.gatehouse, acting.id, { allowImpersonation: false }, server.gatehouse.clock());

        for (const [what, token] of [['impersonation', impersonated], ['delegation', delegated], ['project token of the impersonation', project]] as const) {
          assert.equal((await introspect(token)).body.active, false, what);
          const again = await projectToken(`Bearer ${token}`, 'p-acting', { expires_at: inHours(0.25), scopes: ['model:read'] });
          assert.equal(again.status, 401, what);
        }
        assert.equal((await introspect(own)).body.active, true, 'its own token acts for no one and keeps working');
        assert.equal((await introspect(subject)).body.active, true, "the user's own token keeps working");
      });

      it('refuses an actor token of another client and an unknown subject', async () => {
        const subject = (await userTokens()).access_token;
        const foreign = await post(
          `${server.url}/token`,
          { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token: await clientToken(app), actor_token_type: ACCESS_TOKEN },
          { headers: { authorization: basic(backOffice.id, backOffice.secret) } },
        );
        assert.equal(foreign.body.error, 'invalid_grant');
        const unknown = await post(`${server.url}/token`, { grant_type: EXCHANGE, requested_subject: 'nobody' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(unknown.body.error, 'invalid_grant');
      });
    });
  });
}
