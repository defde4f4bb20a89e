import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, decodeJwt, type JWTPayload } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const PASSWORD = 'correct horse battery staple';

/**
 * RFC 9068 §2.2: an access token carries `iss exp aud sub client_id iat jti`. One signed with
 * Gatehouse's own key that lacks any of them, or carries an empty `sub`, `client_id` or `jti`, is
 * not one Gatehouse issued: inactive at /introspect and refused by every endpoint that takes a
 * Bearer token — where, read leniently, a token without `sub` would stand for its client, one
 * without `exp` never expire, and one without `jti` escape revocation.
 */
for (const dialect of DIALECTS) {
  describe(`access tokens without a claim RFC 9068 requires (${dialect})`, () => {
    let server: TestServer;
    let api: { id: string; secret: string };
    let app: { id: string; secret: string };
    let admin: { id: string; secret: string };

    before(async () => {
      server = await startTestServer(dialect);
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'] });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients'], isAdmin: true });
      await server.user('claims@example.com', PASSWORD);
    });
    after(() => server.close());

    const token = async (client: { id: string; secret: string }, form: Record<string, string>) => {
      const res = await post(`${server.url}/token`, form, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token as string;
    };
    /** The claims of a real token, changed (undefined removes one) and signed again with the instance's own access-token key. */
    const resign = (real: string, changes: Record<string, unknown>) => {
      const claims: JWTPayload = { ...decodeJwt(real) };
      for (const [name, value] of Object.entries(changes)) {
        if (value === undefined) delete claims[name];
        else claims[name] = value;
      }
      const own = server.gatehouse.keys.signingKey('access');
      return new SignJWT(claims).setProtectedHeader({ alg: own.alg, kid: own.kid, typ: 'at+jwt' }).sign(own.key);
    };
    const introspect = async (value: string) => (await post(`${server.url}/introspect`, { token: value }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const bearer = (value: string, path: string, init: RequestInit = {}) => fetch(`${server.url}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${value}` } });
    const mint = (value: string) =>
      bearer(value, '/projects/p1/access-tokens', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date(Date.now() + 600_000).toISOString(), scopes: ['model:read'] }),
      });

    const CHANGES: [string, Record<string, unknown>][] = [
      ['without sub', { sub: undefined }],
      ['with an empty sub', { sub: '' }],
      ['without client_id', { client_id: undefined }],
      ['with an empty client_id', { client_id: '' }],
      ['without exp', { exp: undefined }],
      ['without iat', { iat: undefined }],
      ['without jti', { jti: undefined }],
      ['with an empty jti', { jti: '' }],
      ['with a numeric jti', { jti: 7 }],
    ];

    it('accepts the re-signed token unchanged, so the refusals below are the missing claims\'', async () => {
      const own = await resign(await token(app, { grant_type: 'client_credentials', scope: 'model:read' }), {});
      assert.equal((await introspect(own)).active, true);
      assert.equal((await mint(own)).status, 201);
    });

    for (const [what, changes] of CHANGES) {
      it(`refuses a client's token ${what} at /introspect, /projects and the token endpoint`, async () => {
        const forged = await resign(await token(app, { grant_type: 'client_credentials', scope: 'model:read' }), changes);
        assert.deepEqual(await introspect(forged), { active: false });
        const minted = await mint(forged);
        assert.equal(minted.status, 401);
        assert.equal(((await minted.json()) as { error: string }).error, 'invalid_token');
        const exchanged = await post(`${server.url}/token`, { grant_type: EXCHANGE, subject_token: forged, subject_token_type: ACCESS_TOKEN, audience: 'project:p1' }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(exchanged.status, 400, JSON.stringify(exchanged.body));
        assert.equal(exchanged.body.error, 'invalid_grant');
      });

      it(`refuses a user's token ${what} at /userinfo`, async () => {
        const forged = await resign(await token(app, { grant_type: 'password', username: 'claims@example.com', password: PASSWORD, scope: 'openid model:read' }), changes);
        const res = await bearer(forged, '/userinfo');
        assert.equal(res.status, 401, await res.text());
        assert.deepEqual(await introspect(forged), { active: false });
      });

      it(`refuses an admin token ${what} at the admin API`, async () => {
        const forged = await resign(await token(admin, { grant_type: 'client_credentials' }), changes);
        const res = await bearer(forged, '/admin/v1/clients');
        assert.equal(res.status, 401, await res.text());
      });
    }
  });
}
