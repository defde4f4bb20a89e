import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countRows, DIALECTS } from '../support/databases.ts';
import { codeThrough, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';

/**
 * application/x-www-form-urlencoded bodies whose percent-encoding is malformed (`%zz`, a lone `%`,
 * `a%2`) or decodes to no UTF-8 (`%ff`). The WHATWG parser keeps such an escape as literal text; a
 * server that did would read another code, secret or token than the client meant. The protocol
 * endpoints refuse the request with invalid_request (RFC 6749 §3.2, §5.2) and act on nothing in it.
 */
for (const dialect of DIALECTS) {
  describe(`form bodies with malformed percent-encoding (${dialect})`, () => {
    let server: TestServer;
    let web: { id: string; secret: string };
    let api: { id: string; secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery' };
    const MALFORMED = ['%zz', '%', 'a%2', '%ff', '%c3%28', '%e2%82'];

    before(async () => {
      server = await startTestServer(dialect);
      web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token', 'client_credentials'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [CALLBACK], firstParty: true });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      await server.user(user.email, user.password);
    });
    after(() => server.close());

    const form = (body: string, authorization?: string) => post(`${server.url}/token`, body, authorization ? { headers: { authorization } } : {});
    const assertMalformed = (answer: { status: number; body: any; headers: Headers }, what: string) => {
      assert.equal(answer.status, 400, what);
      assert.equal(answer.body.error, 'invalid_request', what);
      assert.match(answer.body.error_description, /percent-encod/, what);
      assert.equal(answer.headers.get('cache-control'), 'no-store', what);
    };

    it('refuses a code exchange carrying a malformed escape in any parameter, and leaves the code unspent', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const code = await codeThrough(browser, server.url, web.id, CALLBACK);
      const valid = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK }).toString();
      for (const bad of MALFORMED) {
        assertMalformed(await form(`${valid}&extra=${bad}`, basic(web.id, web.secret)), `extra=${bad}`);
        assertMalformed(await form(`${valid}&${bad}=1`, basic(web.id, web.secret)), `a name ${bad}`);
      }
      assertMalformed(await form(`${valid.replace(/code=[^&]+/, `code=${code}%zz`)}`, basic(web.id, web.secret)), 'the code');
      assert.equal(await countRows(server.database, 'grants'), 0, 'no grant was made');
      const exchanged = await form(valid, basic(web.id, web.secret));
      assert.equal(exchanged.status, 200, 'the code was not spent by the refused requests');
    });

    it('refuses a malformed client_id or client_secret with invalid_request, not as a wrong credential', async () => {
      for (const bad of MALFORMED) {
        assertMalformed(await form(`grant_type=client_credentials&client_id=${web.id}${bad}&client_secret=${web.secret}`), `client_id ${bad}`);
        assertMalformed(await form(`grant_type=client_credentials&client_id=${web.id}&client_secret=${web.secret}${bad}`), `client_secret ${bad}`);
      }
      assertMalformed(await form('%'), 'a lone %');
      // Well-formed escapes are decoded as before.
      const ok = await form(`grant_type=client%5Fcredentials&client_id=${encodeURIComponent(web.id)}&client_secret=${encodeURIComponent(web.secret)}&scope=objects%3Aread`);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
    });

    it('refuses introspection and revocation of a malformed token, and revokes nothing', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const code = await codeThrough(browser, server.url, web.id, CALLBACK);
      const tokens = await form(new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK }).toString(), basic(web.id, web.secret));
      const refresh = tokens.body.refresh_token as string;
      for (const bad of MALFORMED) {
        assertMalformed(await post(`${server.url}/introspect`, `token=${refresh}${bad}`, { headers: { authorization: basic(api.id, api.secret) } }), `introspect ${bad}`);
        assertMalformed(await post(`${server.url}/revoke`, `token=${refresh}&token_type_hint=${bad}`, { headers: { authorization: basic(web.id, web.secret) } }), `revoke ${bad}`);
      }
      assertMalformed(await post(`${server.url}/userinfo`, `access_token=${tokens.body.access_token}%zz`), 'userinfo');
      const introspected = await post(`${server.url}/introspect`, `token=${refresh}`, { headers: { authorization: basic(api.id, api.secret) } });
      assert.equal(introspected.body.active, true, 'the refresh token was not revoked');
    });
  });
}
