import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS, tableSnapshots } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * A NUL character is no part of any input Gatehouse takes, and PostgreSQL text cannot hold one:
 * every part of the server refuses it with its own kind of 400 before anything reaches the database.
 * So it does a lone surrogate, which only a JSON body can carry.
 */
for (const dialect of DIALECTS) {
  describe(`inputs holding a NUL character or a lone surrogate (${dialect})`, () => {
    let server: TestServer;
    let admin: string;

    before(async () => {
      server = await startTestServer(dialect);
      const backOffice = await server.client({ name: 'Back office', isAdmin: true, scopes: ['admin:clients', 'admin:users', 'admin:tokens'] });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
      admin = `Bearer ${token.body.access_token}`;
    });
    after(() => server.close());

    const adminCall = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${server.url}/admin/v1${path}`, {
        method,
        headers: { authorization: admin, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as { type?: string; errors?: { field: string }[] } };
    };

    it('the admin API answers a problem naming the field, and creates nothing', async () => {
      const clientsBefore = (await server.gatehouse.storage.clients.list()).length;
      const usersBefore = (await server.gatehouse.storage.users.list()).length;
      const cases: [string, string, unknown, string][] = [
        ['POST', '/clients', { name: 'a\u0000b', scopes: ['objects:read'] }, 'name'],
        ['POST', '/clients', { name: 'ok', scopes: ['objects:read'], description: 'x\u0000' }, 'description'],
        ['POST', '/clients', { name: 'ok', grant_types: ['authorization_code'], scopes: ['objects:read'], redirect_uris: ['https://a.example/\u0000'] }, 'redirect_uris[0]'],
        ['POST', '/users', { email: 'c\u0000@example.com', password: 'long enough password' }, 'email'],
        ['POST', '/users', { email: 'c@example.com', password: 'long enough\u0000password' }, 'password'],
        ['GET', '/clients/%00', undefined, 'clientId'],
        ['DELETE', '/clients/%00', undefined, 'clientId'],
        ['GET', '/users/%00', undefined, 'userId'],
        ['GET', '/grants?user_id=%00', undefined, 'user_id'],
        ['GET', '/audit-events?kind=%00', undefined, 'kind'],
      ];
      for (const [method, path, body, field] of cases) {
        const res = await adminCall(method, path, body);
        assert.equal(res.status, 400, `${method} ${path}`);
        assert.match(res.type ?? '', /application\/problem\+json/);
        assert.deepEqual(res.body.errors?.map((e) => e.field), [field], `${method} ${path}`);
      }
      assert.equal((await server.gatehouse.storage.clients.list()).length, clientsBefore);
      assert.equal((await server.gatehouse.storage.users.list()).length, usersBefore);
    });

    it('the pages answer a readable 400 page', async () => {
      const browser = new HttpBrowser();
      for (const path of ['/authorize?client_id=%00&response_type=code', '/logout?client_id=%00', '/consent?request=%00', '/login?request=%00']) {
        const page = await browser.request(`${server.url}${path}`);
        assert.equal(page.status, 400, path);
        assert.match(page.headers.get('content-type') ?? '', /text\/html/);
        assert.match(page.text, /not allowed/, path);
      }
      const form = await browser.request(`${server.url}/login`);
      const page = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email: 'ada\u0000@example.com', password: 'whatever it is' } });
      assert.equal(page.status, 400);
      assert.match(page.text, /not allowed/);
    });

    it('the account page’s forms answer a readable 400 page, changing nothing', async () => {
      const user = await server.user(`nul-${dialect}@example.com`, 'correct horse battery staple');
      const browser = await signedInBrowser(server.url, user.email, 'correct horse battery staple');
      const before = await server.gatehouse.storage.users.findById(user.id);
      const account = await browser.request(`${server.url}/account`);
      const csrf = hiddenField(account.text, 'csrf');
      const cases: [string, Record<string, string>][] = [
        ['/account/name', { csrf, name: 'Ada\u0000Lovelace' }],
        ['/account/password', { csrf, current_password: 'correct horse battery staple', new_password: 'new\u0000password', confirm_password: 'new\u0000password' }],
        ['/account/password', { csrf, current_password: 'correct horse\u0000battery staple', new_password: 'a new password', confirm_password: 'a new password' }],
      ];
      for (const [path, form] of cases) {
        const page = await browser.request(`${server.url}${path}`, { form });
        assert.equal(page.status, 400, path);
        assert.match(page.text, /not allowed/, path);
      }
      assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
    });

    // A JSON body can carry a lone surrogate (`"\ud800"`), which no form or query string can: not
    // text, so each database stores U+FFFD in its place, and a URL carries it as that.
    const postJson = (browser: HttpBrowser, path: string, body: string) =>
      fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
        body,
        redirect: 'manual',
      });

    it('the authorization endpoint refuses a JSON body holding a lone surrogate with the 400 page, never sending back another state', async (t) => {
      const callback = 'https://app.example/callback';
      const web = await server.client({ name: 'Web app', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [callback], firstParty: true });
      const user = await server.user(`lone-${dialect}@example.com`, 'correct horse battery staple');
      const browser = await signedInBrowser(server.url, user.email, 'correct horse battery staple');
      const stored = await tableSnapshots(server.database, ['audit_events']);
      t.after(() => stored.close());
      const before = await stored.take();
      // Each value as it is written inside the JSON text.
      const cases: [string, string][] = [['state', 's\\ud800'], ['nonce', '\\udc00n'], ['redirect_uri', `${callback}\\ud83d`]];
      for (const [name, value] of cases) {
        const params: Record<string, string> = { client_id: web.id, response_type: 'code', redirect_uri: callback, scope: 'openid', state: 's', [name]: '' };
        const body = JSON.stringify(params).replace(`"${name}":""`, `"${name}":"${value}"`);
        const response = await postJson(browser, '/authorize', body);
        assert.equal(response.status, 400, name);
        assert.equal(response.headers.get('location'), null, name);
        assert.match(await response.text(), /not allowed/, name);
      }
      assert.equal(await stored.take(), before);
    });

    it('the account page refuses a JSON body holding a lone surrogate, changing nothing', async () => {
      const user = await server.user(`lone-name-${dialect}@example.com`, 'correct horse battery staple');
      const browser = await signedInBrowser(server.url, user.email, 'correct horse battery staple');
      const before = await server.gatehouse.storage.users.findById(user.id);
      const csrf = hiddenField((await browser.request(`${server.url}/account`)).text, 'csrf');
      const response = await postJson(browser, '/account/name', `{"csrf":${JSON.stringify(csrf)},"name":"Ada \\udfffLovelace"}`);
      assert.equal(response.status, 400);
      assert.match(await response.text(), /not allowed/);
      assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
    });
  });
}
