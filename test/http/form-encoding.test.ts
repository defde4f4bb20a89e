import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countRows, DIALECTS } from '../support/databases.ts';
import { codeThrough, hiddenField, HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';

/**
 * application/x-www-form-urlencoded bodies whose percent-encoding is malformed (`%zz`, a lone `%`,
 * `a%2`) or decodes to no UTF-8 (`%ff`). The WHATWG parser keeps such an escape as literal text; a
 * server that did would read another code, secret or token than the client meant. The protocol
 * endpoints refuse the request with invalid_request (RFC 6749 §3.2, §5.2) and act on nothing in it;
 * the pages answer the 400 page, and change nothing. A browser never sends such a form: it encodes
 * what was typed, a `%` as `%25`.
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

    /** A form of a page, posted as raw text with the page's CSRF token first. */
    const postRaw = async (browser: HttpBrowser, path: string, rest: string) => {
      const page = await browser.request(`${server.url}${path}`);
      const csrf = hiddenField(page.text, 'csrf');
      const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
      const answer = await fetch(`${server.url}${path}`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie }, body: `csrf=${encodeURIComponent(csrf)}&${rest}` });
      return { status: answer.status, type: answer.headers.get('content-type') ?? '', csp: answer.headers.get('content-security-policy') ?? '', text: await answer.text() };
    };
    const assertPageRefused = (answer: { status: number; type: string; csp: string; text: string }, what: string) => {
      assert.equal(answer.status, 400, what);
      assert.match(answer.type, /^text\/html/, what);
      assert.match(answer.csp, /frame-ancestors 'none'/, what);
      assert.match(answer.text, /percent-encoded/, what);
    };

    it('refuses a page form with a malformed escape with the 400 page, and stores nothing of it', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const before = await server.gatehouse.storage.users.findByEmail(user.email);
      for (const bad of MALFORMED) assertPageRefused(await postRaw(browser, '/account/name', `name=Ada${bad}`), `name Ada${bad}`);
      assert.equal((await server.gatehouse.storage.users.findByEmail(user.email))!.name, before!.name, 'the name is unchanged');

      const clients = await countRows(server.database, 'clients');
      assertPageRefused(await postRaw(browser, '/developers/new', 'name=App%zz&type=confidential&redirect_uris=https%3A%2F%2Fapp.example%2Fcb'), 'a new application');
      assert.equal(await countRows(server.database, 'clients'), clients, 'no application was made');

      // The audit trail is written in batches: what came before is in it before it is counted.
      await server.gatehouse.audit.flush();
      const events = await countRows(server.database, 'audit_events');
      assertPageRefused(await postRaw(new HttpBrowser(), '/login', `email=${encodeURIComponent(user.email)}&password=%zz`), 'a sign-in');
      await server.gatehouse.audit.flush();
      assert.equal(await countRows(server.database, 'audit_events'), events, 'no failed sign-in was recorded');

      // A `%` typed into a form arrives as %25, and is kept.
      const renamed = await postRaw(browser, '/account/name', 'name=Ada%2520%25');
      assert.equal(renamed.status, 303);
      assert.equal((await server.gatehouse.storage.users.findByEmail(user.email))!.name, 'Ada%20%');
    });
  });
}
