import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { updateClient } from '../../src/core/applications.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';

for (const dialect of DIALECTS) {
  describe(`token endpoint over HTTP (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };
    let admin: { id: string; secret: string };
    let firstParty: { id: string; secret: string };
    let unprivileged: { id: string; secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery staple' };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect);
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials'], scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read'] });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
      firstParty = await server.client({ name: 'First party', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read'] });
      unprivileged = await server.client({ name: 'Third party', grantTypes: ['client_credentials', 'refresh_token'], scopes: ['objects:read'] });
      userId = (await server.user(user.email, user.password)).id;
    });
    after(() => server.close());

    const jwks = async () => createLocalJWKSet((await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet);
    const verify = async (token: string) => jwtVerify(token, await jwks(), { issuer: server.config.issuer, audience: server.config.tokens.audience, typ: 'at+jwt' });
    const passwordGrant = () =>
      post(`${server.url}/access_token`, { grant_type: 'password', client_id: firstParty.id, client_secret: firstParty.secret, username: user.email, password: user.password }, { json: true });

    describe('the requests of the Bindeo reference, as JSON to /access_token', () => {
      it('answers client_credentials with exactly token_type, expires_in and access_token', async () => {
        const res = await post(`${server.url}/access_token`, { grant_type: 'client_credentials', client_id: app.id, client_secret: app.secret }, { json: true });
        assert.equal(res.status, 200);
        assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'token_type']);
        assert.equal(res.body.token_type, 'Bearer');
        assert.equal(res.body.expires_in, 3600);
        assert.equal(res.headers.get('cache-control'), 'no-store');
      });

      it('answers password with exactly token_type, expires_in, access_token and refresh_token', async () => {
        const res = await passwordGrant();
        assert.equal(res.status, 200);
        assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type']);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        const { payload } = await verify(res.body.access_token);
        assert.equal(payload.sub, userId);
        assert.equal(payload.client_id, firstParty.id);
      });

      it('answers refresh_token with exactly the same four fields and a new refresh token', async () => {
        const first = await passwordGrant();
        const res = await post(
          `${server.url}/access_token`,
          { grant_type: 'refresh_token', client_id: firstParty.id, client_secret: firstParty.secret, refresh_token: first.body.refresh_token },
          { json: true },
        );
        assert.equal(res.status, 200);
        assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type']);
        assert.notEqual(res.body.refresh_token, first.body.refresh_token);
        assert.equal((await verify(res.body.access_token)).payload.sub, userId);
      });
    });

    describe('the same grants as form bodies to /token', () => {
      it('issues client_credentials, password and refresh_token tokens', async () => {
        const cc = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: app.id, client_secret: app.secret });
        assert.equal(cc.status, 200);
        const pw = await post(`${server.url}/token`, { grant_type: 'password', client_id: firstParty.id, client_secret: firstParty.secret, username: user.email, password: user.password });
        assert.equal(pw.status, 200);
        const rt = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: pw.body.refresh_token }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(rt.status, 200);
        assert.ok(rt.body.refresh_token);
      });

      it('accepts a charset parameter on the content type', async () => {
        const res = await post(`${server.url}/token`, `grant_type=client_credentials&client_id=${app.id}&client_secret=${app.secret}`, {
          headers: { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' },
        });
        assert.equal(res.status, 200);
      });
    });

    describe('authorization code exchange, as a form or JSON, at /token and /access_token', () => {
      const CALLBACK = 'https://web.example/callback';
      let web: { id: string; secret: string };
      let spa: { id: string; secret: string };
      const browser = new HttpBrowser();
      before(async () => {
        // First-party: no consent page, so a signed-in browser gets the code straight away.
        const scopes = ['objects:read', 'objects:download'];
        web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK], firstParty: true });
        spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK], firstParty: true });
        await signedInBrowser(server.url, user.email, user.password, browser);
      });

      const verifier = randomBytes(32).toString('base64url');
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      async function codeFor(client: { id: string }, extra: Record<string, string> = {}): Promise<string> {
        const res = await browser.request(`${server.url}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.id, redirect_uri: CALLBACK, scope: 'objects:read objects:download', state: 'st', ...extra })}`);
        const location = res.location ?? '';
        assert.ok(location.startsWith(CALLBACK), `expected a redirect to the client, got ${res.status}: ${res.text.slice(0, 300)}`);
        const code = new URL(location).searchParams.get('code');
        assert.ok(code, location);
        return code;
      }

      /** A user-delegated token response for the user, with a refresh token. */
      async function assertUserTokens(res: Awaited<ReturnType<typeof post>>, client: { id: string }, how: string) {
        assert.equal(res.status, 200, `${how}: ${JSON.stringify(res.body)}`);
        assert.equal(res.headers.get('cache-control'), 'no-store', how);
        assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type'], how);
        assert.equal(res.body.token_type, 'Bearer', how);
        assert.match(res.body.refresh_token, /^gate_rt_/, how);
        const { payload } = await verify(res.body.access_token);
        assert.equal(payload.sub, userId, how);
        assert.equal(payload.client_id, client.id, how);
        assert.equal(payload.scope, 'objects:read objects:download', how);
      }

      it('exchanges a code sent as JSON with the secret in the body, at /token and at /access_token, once', async () => {
        for (const path of ['/token', '/access_token']) {
          const exchange = { grant_type: 'authorization_code', code: await codeFor(web), redirect_uri: CALLBACK, client_id: web.id, client_secret: web.secret };
          await assertUserTokens(await post(`${server.url}${path}`, exchange, { json: true }), web, `JSON to ${path}`);
          const again = await post(`${server.url}${path}`, exchange, { json: true });
          assert.equal(again.status, 400, `JSON to ${path}, again`);
          assert.equal(again.body.error, 'invalid_grant');
        }
      });

      it('exchanges a code sent as a form to /access_token, with the secret in the Basic header', async () => {
        const res = await post(`${server.url}/access_token`, { grant_type: 'authorization_code', code: await codeFor(web), redirect_uri: CALLBACK }, { headers: { authorization: basic(web.id, web.secret) } });
        await assertUserTokens(res, web, 'form to /access_token');
      });

      it('exchanges a public client\'s PKCE code sent as JSON to /access_token, and refuses a wrong code_verifier', async () => {
        const exchange = (code: string, code_verifier: string) =>
          post(`${server.url}/access_token`, { grant_type: 'authorization_code', client_id: spa.id, code, redirect_uri: CALLBACK, code_verifier }, { json: true });
        const pkce = { code_challenge: challenge, code_challenge_method: 'S256' };
        const wrong = await exchange(await codeFor(spa, pkce), randomBytes(32).toString('base64url'));
        assert.equal(wrong.status, 400);
        assert.equal(wrong.body.error, 'invalid_grant');
        await assertUserTokens(await exchange(await codeFor(spa, pkce), verifier), spa, 'PKCE, JSON to /access_token');
      });

      it('takes a public client named in a Basic header with an empty password, as requests-oauthlib sends it, and no other secret there', async () => {
        const pkce = { code_challenge: challenge, code_challenge_method: 'S256' };
        // requests-oauthlib's fetch_token without client_secret: HTTPBasicAuth(client_id, '').
        const emptyPassword = `Basic ${Buffer.from(`${spa.id}:`).toString('base64')}`;
        const exchange = { grant_type: 'authorization_code', redirect_uri: CALLBACK, code_verifier: verifier };
        const res = await post(`${server.url}/token`, { ...exchange, code: await codeFor(spa, pkce) }, { headers: { authorization: emptyPassword } });
        await assertUserTokens(res, spa, 'public client in a Basic header');
        const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: res.body.refresh_token }, { headers: { authorization: emptyPassword } });
        assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));

        const withSecret = await post(`${server.url}/token`, { ...exchange, code: await codeFor(spa, pkce) }, { headers: { authorization: basic(spa.id, web.secret) } });
        assert.equal(withSecret.status, 401);
        assert.equal(withSecret.body.error, 'invalid_client');
        // A confidential client is never authenticated without its secret.
        const confidential = await post(`${server.url}/token`, { grant_type: 'authorization_code', code: await codeFor(web), redirect_uri: CALLBACK }, { headers: { authorization: `Basic ${Buffer.from(`${web.id}:`).toString('base64')}` } });
        assert.equal(confidential.status, 401);
        assert.equal(confidential.body.error, 'invalid_client');
        assert.match(confidential.headers.get('www-authenticate') ?? '', /^Basic /);
        // Introspection still needs a client that authenticates (RFC 7662 §2.1).
        const introspection = await post(`${server.url}/introspect`, { token: res.body.access_token }, { headers: { authorization: emptyPassword } });
        assert.equal(introspection.status, 401);
        assert.equal(introspection.body.error, 'invalid_client');
        assert.match(introspection.headers.get('www-authenticate') ?? '', /^Basic /);
      });

      it('refuses with invalid_scope a code carrying a scope taken from its client since it was issued, and consumes nothing', async () => {
        const shrinking = await server.client({ name: 'Shrinking web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['objects:read', 'objects:download'], redirectUris: [CALLBACK], firstParty: true });
        const code = await codeFor(shrinking);
        await updateClient(server.gatehouse, shrinking.id, { scopes: ['objects:read'] }, server.gatehouse.clock());

        const refused = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(shrinking.id, shrinking.secret) } });
        assert.equal(refused.status, 400, JSON.stringify(refused.body));
        assert.equal(refused.body.error, 'invalid_scope');
        assert.equal(refused.body.access_token, undefined);
        assert.equal((await server.gatehouse.storage.codes.find(digestOf(code)))?.consumedAt, null);
        assert.deepEqual(await server.gatehouse.storage.grants.list({ clientId: shrinking.id }), [], 'no grant was made');
      });
    });

    describe('client authentication (BIMobject reference)', () => {
      it('accepts the secret in the body and in the Basic header', async () => {
        const body = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: app.id, client_secret: app.secret });
        const header = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(body.status, 200);
        assert.equal(header.status, 200);
      });

      it('refuses a wrong secret with 401 invalid_client, with WWW-Authenticate when the header was used', async () => {
        const wrong = app.secret.slice(0, -1) + (app.secret.endsWith('A') ? 'B' : 'A');
        const viaHeader = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.id, wrong) } });
        assert.equal(viaHeader.status, 401);
        assert.equal(viaHeader.body.error, 'invalid_client');
        assert.match(viaHeader.headers.get('www-authenticate') ?? '', /^Basic /);
        const viaBody = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: app.id, client_secret: wrong });
        assert.equal(viaBody.status, 401);
        assert.equal(viaBody.body.error, 'invalid_client');
      });

      it('refuses an unknown client exactly like a wrong secret', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: 'app_000000000000000000000000', client_secret: app.secret });
        assert.equal(res.status, 401);
        assert.deepEqual(res.body, { error: 'invalid_client', error_description: 'client authentication failed' });
      });

      it('refuses two authentication methods in one request as invalid_request', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_secret: app.secret }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'invalid_request');
      });

      it('decodes form-encoded Basic credentials (RFC 6749 §2.3.1)', async () => {
        const encoded = `Basic ${Buffer.from(`${app.id}:${app.secret.replace(/-/g, '%2D')}`).toString('base64')}`;
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: encoded } });
        assert.equal(res.status, 200);
      });
    });

    describe('client credentials tokens', () => {
      it('are RFC 9068 JWTs that verify against /jwks.json', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read model:read' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 200);
        assert.equal(res.body.scope, 'objects:read model:read');
        const header = decodeProtectedHeader(res.body.access_token);
        assert.equal(header.typ, 'at+jwt');
        assert.equal(header.alg, 'ES256');
        const { payload } = await verify(res.body.access_token);
        assert.equal(payload.iss, server.config.issuer);
        assert.equal(payload.sub, app.id);
        assert.equal(payload.client_id, app.id);
        assert.equal(payload.scope, 'objects:read model:read');
        assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 3600);
        assert.ok(typeof payload.jti === 'string' && payload.jti.length > 0);
        assert.equal(res.body.refresh_token, undefined);
      });

      it('never carry a user-only scope: the defaults leave it out and asking for it is invalid_scope', async () => {
        const defaults = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal((await verify(defaults.body.access_token)).payload.scope, 'objects:read');
        const asked = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read objects:download' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(asked.status, 400);
        assert.equal(asked.body.error, 'invalid_scope');
        assert.match(asked.body.error_description, /objects:download/);
      });

      it('refuse unknown scopes and scopes the client is not allowed', async () => {
        for (const scope of ['nope:read', 'bcf:write', 'objects:read%20x']) {
          const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope }, { headers: { authorization: basic(app.id, app.secret) } });
          assert.equal(res.status, 400, scope);
          assert.equal(res.body.error, 'invalid_scope', scope);
        }
      });
    });

    describe('admin clients', () => {
      it('get tokens that carry only admin scopes', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } });
        assert.equal(res.status, 200);
        assert.equal((await verify(res.body.access_token)).payload.scope, 'admin:clients admin:users');
      });

      it('get only admin scopes with the secret in a form or JSON body, at /token and /access_token, and are refused a non-admin scope there too', async () => {
        for (const path of ['/token', '/access_token']) {
          for (const json of [false, true]) {
            const how = `${json ? 'JSON' : 'form'} to ${path}`;
            const credentials = { grant_type: 'client_credentials', client_id: admin.id, client_secret: admin.secret };
            const res = await post(`${server.url}${path}`, credentials, { json });
            assert.equal(res.status, 200, how);
            assert.equal(res.body.refresh_token, undefined, how);
            const { payload } = await verify(res.body.access_token);
            assert.equal(payload.client_id, admin.id, how);
            assert.equal(payload.scope, 'admin:clients admin:users', how);
            for (const scope of ['objects:read', 'admin:users objects:read', 'objects:download']) {
              const refused = await post(`${server.url}${path}`, { ...credentials, scope }, { json });
              assert.equal(refused.status, 400, `${scope}, ${how}`);
              assert.equal(refused.body.error, 'invalid_scope', `${scope}, ${how}`);
            }
          }
        }
      });

      it('are refused non-admin scopes', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:clients objects:read' }, { headers: { authorization: basic(admin.id, admin.secret) } });
        assert.equal(res.body.error, 'invalid_scope');
      });

      it('are the only clients granted admin scopes', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:clients' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'invalid_scope');
      });

      it('cannot be registered with non-admin scopes', async () => {
        await assert.rejects(server.client({ isAdmin: true, scopes: ['admin:users', 'objects:read'] }), { code: 'ERR_VALIDATION', field: 'scopes' });
        await assert.rejects(server.client({ isAdmin: false, scopes: ['admin:users'] }), { code: 'ERR_VALIDATION', field: 'scopes' });
      });
    });

    describe('password grant', () => {
      it('answers a wrong password and an unknown user with the same invalid_grant', async () => {
        const wrongPassword = await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: 'not the password' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        const unknownUser = await post(`${server.url}/token`, { grant_type: 'password', username: 'nobody@example.com', password: 'not the password' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(wrongPassword.status, 400);
        assert.deepEqual(wrongPassword.body, unknownUser.body);
        assert.equal(wrongPassword.body.error, 'invalid_grant');
      });

      it('matches the username case-insensitively', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'password', username: user.email.toUpperCase(), password: user.password }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(res.status, 200);
      });

      it('refuses a client without the privilege with unauthorized_client', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password }, { headers: { authorization: basic(unprivileged.id, unprivileged.secret) } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'unauthorized_client');
      });

      it('requires username and password', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'password', username: user.email }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(res.body.error, 'invalid_request');
      });

      it('grants a user-only scope, since a user is present', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'objects:download' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
        assert.equal(res.status, 200);
        assert.equal((await verify(res.body.access_token)).payload.scope, 'objects:download');
      });
    });

    describe('refresh token rotation', () => {
      const refresh = (token: string, client = firstParty, extra: Record<string, string> = {}) =>
        post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token, ...extra }, { headers: { authorization: basic(client.id, client.secret) } });

      it('refuses a refresh token used twice and revokes the token its first use returned', async () => {
        const issued = (await passwordGrant()).body.refresh_token;
        const first = await refresh(issued);
        assert.equal(first.status, 200);
        const replay = await refresh(issued);
        assert.equal(replay.status, 400);
        assert.equal(replay.body.error, 'invalid_grant');
        const successor = await refresh(first.body.refresh_token);
        assert.equal(successor.status, 400);
        assert.equal(successor.body.error, 'invalid_grant');
      });

      it('lets only the client it was issued to use it, without consuming it', async () => {
        const issued = (await passwordGrant()).body.refresh_token;
        const stolen = await refresh(issued, unprivileged);
        assert.equal(stolen.status, 400);
        assert.equal(stolen.body.error, 'invalid_grant');
        assert.equal((await refresh(issued)).status, 200);
      });

      it('narrows scope on request but never widens it', async () => {
        const issued = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'objects:read model:read' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body.refresh_token;
        const wider = await refresh(issued, firstParty, { scope: 'objects:read objects:download' });
        assert.equal(wider.body.error, 'invalid_scope');
        const narrower = await refresh(issued, firstParty, { scope: 'model:read' });
        assert.equal(narrower.status, 200);
        assert.equal(narrower.body.scope, 'model:read');
      });

      it('narrows only the new access token: the new refresh token keeps the original scope (RFC 6749 §6)', async () => {
        const issued = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'objects:read model:read' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body.refresh_token;
        const narrower = await refresh(issued, firstParty, { scope: 'model:read' });
        assert.equal(narrower.status, 200);
        assert.equal((await verify(narrower.body.access_token)).payload.scope, 'model:read');
        // §6: "If a new refresh token is issued, the refresh token scope MUST be identical to that of the refresh token included by the client in the request."
        const introspected = (await post(`${server.url}/introspect`, { token: narrower.body.refresh_token }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body;
        assert.deepEqual(introspected.scope.split(' ').sort(), ['model:read', 'objects:read']);
        // §6: a scope left out "is treated as equal to the scope originally granted by the resource owner".
        const whole = await refresh(narrower.body.refresh_token);
        assert.equal(whole.status, 200);
        assert.deepEqual(String((await verify(whole.body.access_token)).payload.scope).split(' ').sort(), ['model:read', 'objects:read']);
      });

      it('refuses a refresh by a client no longer allowed the refresh_token grant with unauthorized_client, and consumes nothing', async () => {
        const revoked = await server.client({ name: 'No longer refreshing', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'] });
        const issued = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password }, { headers: { authorization: basic(revoked.id, revoked.secret) } })).body.refresh_token;
        await updateClient(server.gatehouse, revoked.id, { grantTypes: ['password'] }, server.gatehouse.clock());

        const refused = await refresh(issued, revoked);
        assert.equal(refused.status, 400);
        assert.equal(refused.body.error, 'unauthorized_client');
        assert.equal((await server.gatehouse.storage.refreshTokens.find(digestOf(issued)))?.token.consumedAt, null);
        // Allowed the grant again, the client refreshes with the same token.
        await updateClient(server.gatehouse, revoked.id, { grantTypes: ['password', 'refresh_token'] }, server.gatehouse.clock());
        assert.equal((await refresh(issued, revoked)).status, 200);
      });

      it('refuses malformed and unknown refresh tokens with invalid_grant', async () => {
        for (const token of ['nonsense', 'gate_rt_' + 'A'.repeat(49), (await passwordGrant()).body.refresh_token.slice(0, -1) + 'x']) {
          const res = await refresh(token);
          assert.equal(res.body.error, 'invalid_grant', token);
        }
      });

      it('stops working for a disabled user', async () => {
        const other = await server.user('grace@example.com', 'another long password');
        const issued = (await post(`${server.url}/token`, { grant_type: 'password', username: other.email, password: 'another long password' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body.refresh_token;
        await server.gatehouse.storage.users.setDisabled(other.id, server.gatehouse.clock(), server.gatehouse.clock());
        assert.equal((await refresh(issued)).body.error, 'invalid_grant');
        // The refusal consumed nothing: enabled again, the user's token works once more.
        await server.gatehouse.storage.users.setDisabled(other.id, null, server.gatehouse.clock());
        assert.equal((await refresh(issued)).status, 200);
      });

      it('refuses a token carrying a scope its client was since denied with invalid_scope, and consumes nothing', async () => {
        const shrinking = await server.client({ name: 'Shrinking', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'model:read'] });
        const issued = (
          await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'objects:read model:read' }, { headers: { authorization: basic(shrinking.id, shrinking.secret) } })
        ).body.refresh_token;
        await updateClient(server.gatehouse, shrinking.id, { scopes: ['objects:read'] }, server.gatehouse.clock());

        const refused = await refresh(issued, shrinking);
        assert.equal(refused.status, 400);
        assert.equal(refused.body.error, 'invalid_scope');
        assert.equal((await server.gatehouse.storage.refreshTokens.find(digestOf(issued)))?.token.consumedAt, null);
        // Asking for what is still allowed works, from the same token.
        const narrowed = await refresh(issued, shrinking, { scope: 'objects:read' });
        assert.equal(narrowed.status, 200);
        assert.equal(narrowed.body.scope, 'objects:read');
      });

      it('refuses a token of a revoked grant and stores no successor', async () => {
        const issued = (await passwordGrant()).body.refresh_token;
        const found = await server.gatehouse.storage.refreshTokens.find(digestOf(issued));
        await server.gatehouse.storage.grants.revoke(found!.grant.id, server.gatehouse.clock());
        const refused = await refresh(issued);
        assert.equal(refused.status, 400);
        assert.equal(refused.body.error, 'invalid_grant');
        assert.equal((await server.gatehouse.storage.refreshTokens.find(digestOf(issued)))?.token.consumedAt, null);
      });
    });

    describe('request errors (RFC 6749 §5.2)', () => {
      it('answers an unknown grant type with unsupported_grant_type', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'urn:example:magic' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'unsupported_grant_type');
      });

      it('keeps every error_description within the characters RFC 6749 §5.2 allows, even where it quotes what the client sent', async () => {
        const ALLOWED = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;
        const answers = [
          await post(`${server.url}/token`, { grant_type: 'urn:"quoted"\\back\u00e4\u2028' }, { headers: { authorization: basic(app.id, app.secret) } }),
          await post(`${server.url}/token`, { grant_type: 'authorization_code' }, { headers: { authorization: basic(unprivileged.id, unprivileged.secret) } }),
          await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'no-such-scope' }, { headers: { authorization: basic(app.id, app.secret) } }),
          await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: `Basic ${Buffer.from(`${app.id}:%zz`).toString('base64')}` } }),
          await post(`${server.url}/userinfo`, {}),
        ];
        for (const res of answers) {
          assert.equal(typeof res.body.error_description, 'string', JSON.stringify(res.body));
          assert.match(res.body.error_description, ALLOWED, JSON.stringify(res.body));
        }
        assert.equal(answers[0]!.body.error_description, "the grant type 'urn:'quoted'/back??' is not supported");
      });

      it('answers a missing grant type and a repeated parameter with invalid_request', async () => {
        assert.equal((await post(`${server.url}/token`, { client_id: app.id })).body.error, 'invalid_request');
        const repeated = await post(`${server.url}/token`, `grant_type=client_credentials&scope=objects:read&scope=model:read`, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(repeated.body.error, 'invalid_request');
      });

      it('refuses a parameter repeated in a JSON body with invalid_request naming it, as in a form body (RFC 6749 §3.2)', async () => {
        const auth = { authorization: basic(app.id, app.secret) };
        for (const path of ['/token', '/access_token']) {
          const res = await post(`${server.url}${path}`, '{"grant_type":"client_credentials","scope":"objects:read","scope":"model:read"}', { json: true, headers: auth });
          assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.error, 'invalid_request');
          assert.equal(res.body.error_description, 'the parameter scope is included more than once');
          assert.equal(res.headers.get('cache-control'), 'no-store');
        }
        // The same name written with an escape is the same parameter.
        const escaped = await post(`${server.url}/token`, '{"grant_type":"client_credentials","scope":"objects:read","sc\\u006fpe":"model:read"}', { json: true, headers: auth });
        assert.equal(escaped.status, 400);
        assert.equal(escaped.body.error_description, 'the parameter scope is included more than once');
        const username = await post(
          `${server.url}/token`,
          JSON.stringify({ grant_type: 'password', username: user.email, password: user.password }).replace('"password":', '"username":"someone@example.com","password":'),
          { json: true, headers: { authorization: basic(firstParty.id, firstParty.secret) } },
        );
        assert.equal(username.status, 400);
        assert.equal(username.body.error_description, 'the parameter username is included more than once');
        assert.equal(username.body.access_token, undefined);
      });

      it('takes a JSON body whose values repeat names or hold text that looks like a member', async () => {
        const body =
          '{"grant_type":"client_credentials","note":"\\"scope\\":\\"model:read\\", \\\\","extra":{"scope":"model:read","scope":"x"},' +
          '"list":[{"scope":1,"scope":2},"\\"scope\\":"],"scope":"objects:read"}';
        const res = await post(`${server.url}/token`, body, { json: true, headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(res.body.scope, 'objects:read');
      });

      it('still refuses a JSON body that is not an object, malformed JSON and __proto__ members with invalid_request', async () => {
        const auth = { authorization: basic(app.id, app.secret) };
        for (const [body, description] of [
          ['[{"grant_type":"client_credentials","grant_type":"client_credentials"}]', 'the body must be a set of parameters'],
          ['"grant_type"', 'the body must be a set of parameters'],
          ['{"grant_type":"client_credentials",', 'the body is not valid JSON'],
          ['{"grant_type":"client_credentials","__proto__":{"scope":"model:read"}}', 'the body is not valid JSON'],
          ['{"grant_type":"client_credentials","constructor":{"prototype":{"scope":"model:read"}}}', 'the body is not valid JSON'],
          ['', 'the JSON body is empty'],
        ]) {
          const res = await post(`${server.url}/token`, body!, { json: true, headers: auth });
          assert.equal(res.status, 400, body);
          assert.deepEqual(res.body, { error: 'invalid_request', error_description: description }, body);
        }
      });

      it('answers a grant type the client is not registered for with unauthorized_client', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: 'x' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.body.error, 'unauthorized_client');
      });

      it('answers a wrong content type with invalid_request', async () => {
        const res = await post(`${server.url}/token`, 'grant_type=client_credentials', { headers: { 'content-type': 'text/plain', authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'invalid_request');
      });

      it('answers a body over 64 KiB with 413 and an RFC error body', async () => {
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', padding: 'x'.repeat(70 * 1024) }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 413);
        assert.equal(res.body.error, 'invalid_request');
        assert.equal(res.headers.get('cache-control'), 'no-store');
      });

      it('answers GET with 405 and Allow: POST', async () => {
        const res = await fetch(`${server.url}/token`);
        assert.equal(res.status, 405);
        assert.equal(res.headers.get('allow'), 'POST');
      });
    });

    describe('discovery', () => {
      it('lists the endpoints, grants, scopes and authentication methods actually supported', async () => {
        const metadata: any = await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json();
        assert.equal(metadata.issuer, server.config.issuer);
        assert.equal(metadata.token_endpoint, `${server.config.issuer}/token`);
        assert.equal(metadata.jwks_uri, `${server.config.issuer}/jwks.json`);
        assert.deepEqual(metadata.grant_types_supported.sort(), ['authorization_code', 'client_credentials', 'password', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange']);
        assert.equal(metadata.introspection_endpoint, `${server.config.issuer}/introspect`);
        assert.equal(metadata.revocation_endpoint, `${server.config.issuer}/revoke`);
        assert.deepEqual(metadata.response_types_supported, ['code'], 'implicit is off unless the operator enables it');
        assert.deepEqual(metadata.token_endpoint_auth_methods_supported.sort(), ['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt']);
        assert.ok(metadata.scopes_supported.includes('objects:download'));
        const oidc: any = await (await fetch(`${server.url}/.well-known/openid-configuration`)).json();
        assert.equal(oidc.issuer, server.config.issuer);
        assert.deepEqual(oidc.id_token_signing_alg_values_supported, ['RS256']);
      });

      it('publishes the access-token and ID-token keys, with the next key of each before it signs', async () => {
        const { keys } = (await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet;
        assert.equal(keys.filter((k) => k.alg === 'ES256').length, 2);
        assert.equal(keys.filter((k) => k.alg === 'RS256').length, 2);
        for (const key of keys) assert.equal(key.d, undefined, 'no private parts');
      });
    });

    describe('CORS for browser apps', () => {
      it('answers a preflight for the token endpoint and lets any origin read token responses', async () => {
        const preflight = await fetch(`${server.url}/token`, { method: 'OPTIONS', headers: { origin: 'https://spa.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
        assert.equal(preflight.status, 204);
        assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
        assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /content-type/);
        const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { origin: 'https://spa.example', authorization: basic(app.id, app.secret) } });
        assert.equal(res.headers.get('access-control-allow-origin'), '*');
        assert.equal(res.headers.get('access-control-allow-credentials'), null, 'never with credentials');
      });

      it('answers the preflight of every protocol endpoint, and of no page, admin route or unknown address', async () => {
        const preflight = (path: string) =>
          fetch(`${server.url}${path}`, { method: 'OPTIONS', headers: { origin: 'https://spa.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
        for (const path of ['/token', '/access_token', '/userinfo', '/introspect', '/revoke', '/projects/p1/access-tokens', '/jwks.json', '/.well-known/openid-configuration']) {
          const answer = await preflight(path);
          assert.equal(answer.status, 204, path);
          assert.equal(answer.headers.get('access-control-allow-origin'), '*', path);
        }
        // Their answers are not readable from other origins: a preflight must not say they may be called.
        for (const path of ['/authorize', '/login', '/consent', '/account/name', '/logout', '/developers/new', '/admin/v1/clients', '/nowhere', '/static/gatehouse.css']) {
          const answer = await preflight(path);
          assert.ok(answer.status >= 400, `${path} answered ${answer.status}`);
          assert.equal(answer.headers.get('access-control-allow-origin'), null, path);
          assert.equal(answer.headers.get('access-control-allow-methods'), null, path);
        }
      });
    });

    describe('health', () => {
      it('answers /healthz and /readyz', async () => {
        assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
        assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
      });
    });
  });
}
