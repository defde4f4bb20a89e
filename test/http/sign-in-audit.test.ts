import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const START = 1_750_000_000;
const PASSWORD = 'correct horse battery staple';

/*
 * What an operator reading the audit log after an attack on accounts needs: which account was
 * tried, from which address (the browser's, as the trusted proxy gives it), and that the limit
 * stopped the rest.
 */
for (const dialect of DIALECTS) {
  describe(`sign-ins in the audit log (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let now = START;
    let ada: { id: string; email: string };

    before(async () => {
      server = await startTestServer(dialect, {
        clock: () => now,
        env: { GATEHOUSE_TRUST_PROXY: 'true' },
        config: { login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 2, windowSeconds: 600 } },
      });
      ada = await server.user('ada@example.com', PASSWORD);
    });
    after(() => server.close());

    /** Signs in on the page from the browser at `address` (behind the proxy). */
    async function signIn(address: string, email: string, password: string) {
      const browser = new HttpBrowser();
      const headers = { 'x-forwarded-for': address };
      const form = await browser.request(`${server.url}/login`, { headers });
      return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password }, headers });
    }

    async function eventsOf(kind: string): Promise<Omit<AuditEvent, 'id'>[]> {
      await server.gatehouse.audit.flush();
      return (await server.gatehouse.storage.audit.query({ kind, limit: 1000 })).reverse().map(({ id: _id, ...event }) => event);
    }

    it('records a failed sign-in with the address it came from and the account its email names', async () => {
      assert.equal((await signIn('203.0.113.1', 'ADA@example.com', 'not the password')).status, 401);
      assert.equal((await signIn('203.0.113.2', 'nobody@example.com', 'not the password')).status, 401);
      assert.deepEqual(await eventsOf('login.failed'), [
        { at: now, kind: 'login.failed', outcome: 'failure', clientId: null, userId: ada.id, data: { via: 'page', address: '203.0.113.1' } },
        { at: now, kind: 'login.failed', outcome: 'failure', clientId: null, userId: null, data: { via: 'page', address: '203.0.113.2' } },
      ]);
    });

    it('records a sign-in with the address it came from', async () => {
      assert.equal((await signIn('203.0.113.3', ada.email, PASSWORD)).status, 303);
      assert.deepEqual(await eventsOf('login.succeeded'), [{ at: now, kind: 'login.succeeded', outcome: 'success', clientId: null, userId: ada.id, data: { address: '203.0.113.3' } }]);
    });

    it('records sign-ins refused by the limit: the first at once, its repeats in the minute as one event with their count', async () => {
      for (const account of ['ada@example.com', 'grace@example.com']) assert.equal((await signIn('198.51.100.7', account, 'guess')).status, 401);
      const opened = now;
      for (let i = 0; i < 3; i++) assert.equal((await signIn('198.51.100.7', `victim${i}@example.com`, 'guess')).status, 429);
      const throttled = { kind: 'login.throttled', outcome: 'failure', clientId: null, userId: null } as const;
      assert.deepEqual(await eventsOf('login.throttled'), [{ ...throttled, at: opened, data: { via: 'page', address: '198.51.100.7', limit: 'address' } }]);

      now += 60;
      assert.deepEqual(await eventsOf('login.throttled'), [
        { ...throttled, at: opened, data: { via: 'page', address: '198.51.100.7', limit: 'address' } },
        { ...throttled, at: opened, data: { via: 'page', address: '198.51.100.7', limit: 'address', repeated: 2, window_start: opened, window_end: opened + 60 } },
      ]);
    });

    it('records a failed password grant with its client, the account and the address', async () => {
      const app = await server.client({ grantTypes: ['password'], scopes: ['objects:read'] });
      const answer = await post(`${server.url}/token`, { grant_type: 'password', username: ada.email, password: 'not the password' }, { headers: { authorization: basic(app.id, app.secret), 'x-forwarded-for': '192.0.2.44' } });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      const failures = await eventsOf('login.failed');
      assert.deepEqual(failures.at(-1), { at: now, kind: 'login.failed', outcome: 'failure', clientId: app.id, userId: ada.id, data: { grant: 'password', address: '192.0.2.44' } });
    });
  });
}
