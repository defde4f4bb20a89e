import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countRows, DIALECTS } from '../support/databases.ts';
import { codeThrough, HttpBrowser, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';
const SIGNED_OUT = 'https://app.example/signed-out';
/** What a request to the authorization or sign-out endpoint can leave behind. */
const TABLES = ['authorization_codes', 'authorization_requests', 'session_clients', 'sessions', 'consents', 'grants', 'audit_events'];

/**
 * RFC 9110 §9.3.2: HEAD is safe, as GET should be. /authorize and /logout act when asked by GET (a
 * code, a waiting request, an ended session): a HEAD, which a link checker or a prefetching proxy
 * sends without a person behind it, does none of it and is answered 405 with Allow.
 */
for (const dialect of DIALECTS) {
  describe(`HEAD requests to pages that act (${dialect})`, () => {
    let server: TestServer;
    let firstParty: { id: string; secret: string };
    let consented: { id: string; secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery' };

    before(async () => {
      server = await startTestServer(dialect);
      firstParty = await server.client({ name: 'First party', grantTypes: ['authorization_code'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], postLogoutRedirectUris: [SIGNED_OUT], firstParty: true });
      consented = await server.client({ name: 'Consented', grantTypes: ['authorization_code'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK] });
      await server.user(user.email, user.password);
    });
    after(() => server.close());

    // The audit trail is written in batches: what came before is written out before rows are counted.
    const stored = async () => {
      await server.gatehouse.audit.flush();
      return Object.fromEntries(await Promise.all(TABLES.map(async (table) => [table, await countRows(server.database, table)] as const)));
    };
    const authorizeUrl = (params: Record<string, string>) =>
      `${server.url}/authorize?${new URLSearchParams({ response_type: 'code', redirect_uri: CALLBACK, scope: 'openid profile', state: 's', ...params })}`;

    /** A HEAD that must be refused, leaving every table as it was. */
    async function assertHeadRefused(browser: HttpBrowser, url: string) {
      const before = await stored();
      const answer = await browser.request(url, { method: 'HEAD' });
      assert.equal(answer.status, 405, url);
      assert.equal(answer.headers.get('allow'), 'GET, POST', url);
      assert.equal(answer.location, undefined, `${url}: no redirect, no code`);
      assert.match(answer.headers.get('content-type') ?? '', /^text\/html/, url);
      assert.match(answer.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, 'the pages’ security headers');
      assert.deepEqual(await stored(), before, `${url}: nothing stored changed`);
    }

    it('issues no code to a HEAD of /authorize from a signed-in browser, for a first-party application, with prompt=none or without', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      await assertHeadRefused(browser, authorizeUrl({ client_id: firstParty.id, prompt: 'none' }));
      await assertHeadRefused(browser, authorizeUrl({ client_id: firstParty.id }));
      // The same GET still answers with a code.
      assert.ok(await codeThrough(browser, server.url, firstParty.id, CALLBACK));
    });

    it('issues no code to a HEAD of /authorize for an application the person consented to', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      await server.gatehouse.storage.consents.save({ userId: (await server.gatehouse.storage.users.findByEmail(user.email))!.id, clientId: consented.id, scopes: ['openid', 'profile'], createdAt: 0, updatedAt: 0 });
      await assertHeadRefused(browser, authorizeUrl({ client_id: consented.id, prompt: 'none' }));
      assert.ok(await codeThrough(browser, server.url, consented.id, CALLBACK));
    });

    it('stores no waiting request for a HEAD of /authorize from a browser that is not signed in', async () => {
      await assertHeadRefused(new HttpBrowser(), authorizeUrl({ client_id: firstParty.id }));
    });

    it('ends no session on a HEAD of /logout with an ID token of the current session', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const code = await codeThrough(browser, server.url, firstParty.id, CALLBACK);
      const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
      assert.equal(tokens.status, 200);
      const logout = `${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.body.id_token, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' })}`;
      await assertHeadRefused(browser, logout);
      assert.equal((await browser.request(`${server.url}/account`)).status, 200, 'still signed in');
      // The same GET signs out at once.
      assert.equal((await browser.request(logout)).location, `${SIGNED_OUT}?state=bye`);
      assert.equal((await browser.request(`${server.url}/account`)).status, 302);
    });

    it('answers HEAD as GET on pages that only show something', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      for (const path of ['/account', '/login', '/developers', '/static/gatehouse.css']) {
        const get = await browser.request(`${server.url}${path}`);
        const head = await browser.request(`${server.url}${path}`, { method: 'HEAD' });
        assert.equal(head.status, get.status, path);
        assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), path);
        assert.equal(head.text, '', path);
      }
    });
  });
}
