import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * A NUL character is no part of any input Gatehouse takes, and PostgreSQL text cannot hold one:
 * every part of the server refuses it with its own kind of 400 before anything reaches the database.
 */
for (const dialect of DIALECTS) {
  describe(`inputs holding a NUL character (${dialect})`, () => {
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
  });
}
