import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { startMailServer, type TestMailServer } from '../support/smtp.ts';

const START = 1_750_000_000;
const PASSWORD = 'correct horse battery staple';
const CALLBACK = 'https://app.example/callback';

/*
 * What an operator reading the audit log after an attack on accounts needs: which account was
 * tried, from which address (the browser's, as the trusted proxy gives it), and that the limit
 * stopped the rest; and, for what a session in someone else's hands did with the account, from
 * which address each thing was done.
 */
for (const dialect of DIALECTS) {
  describe(`sign-ins in the audit log (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let now = START;
    let ada: { id: string; email: string };

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => now,
        env: { GATEHOUSE_TRUST_PROXY: 'true', GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' },
        // Unverified accounts may use the portal: its changes are what is checked here.
        config: { login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 2, windowSeconds: 600 }, signup: { verifyEmail: false } },
      });
      ada = await server.user('ada@example.com', PASSWORD);
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

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

    it('records a sign-up with the address it came from', async () => {
      const browser = new HttpBrowser();
      const headers = { 'x-forwarded-for': '203.0.113.9' };
      const form = await browser.request(`${server.url}/signup`, { headers });
      const answer = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email: 'grace@example.com', password: PASSWORD, name: 'Grace' }, headers });
      assert.equal(answer.status, 303, answer.text.slice(0, 300));
      const grace = await server.gatehouse.storage.users.findByEmail('grace@example.com');
      assert.deepEqual(await eventsOf('user.signed_up'), [{ at: now, kind: 'user.signed_up', outcome: 'success', clientId: null, userId: grace!.id, data: { address: '203.0.113.9' } }]);
    });

    it('records a failed password grant with its client, the account and the address', async () => {
      const app = await server.client({ grantTypes: ['password'], scopes: ['objects:read'] });
      const answer = await post(`${server.url}/token`, { grant_type: 'password', username: ada.email, password: 'not the password' }, { headers: { authorization: basic(app.id, app.secret), 'x-forwarded-for': '192.0.2.44' } });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      const failures = await eventsOf('login.failed');
      assert.deepEqual(failures.at(-1), { at: now, kind: 'login.failed', outcome: 'failure', clientId: app.id, userId: ada.id, data: { grant: 'password', address: '192.0.2.44' } });
    });

    it('records the address of what a signed-in person does: portal changes, consents, authorizations, account changes, sign-out and a reset link asked for', async () => {
      const browser = await signedInBrowser(server.url, ada.email, PASSWORD);
      const headers = { 'x-forwarded-for': '192.0.2.70' };
      const open = (path: string, form?: Record<string, string> | [string, string][]) => browser.request(`${server.url}${path}`, { headers, ...(form && { form }) });
      const csrf = hiddenField((await open('/developers/new')).text, 'csrf');
      now += 60;
      const since = now;

      assert.equal((await open('/developers/applications', { csrf, name: 'Sync tool', type: 'confidential', redirect_uris: CALLBACK, api_key: 'on' })).status, 200);
      const [application] = await server.gatehouse.storage.clients.listForOwner(ada.id);
      const path = `/developers/applications/${application!.id}`;
      assert.equal((await open(`${path}/settings`, { csrf, name: 'Sync tool 2', redirect_uris: CALLBACK })).status, 303);
      assert.equal((await open(`${path}/secrets`, { csrf })).status, 200);
      const [oldest] = await server.gatehouse.storage.clients.listSecrets(application!.id);
      assert.equal((await open(`${path}/secrets/${oldest!.id}/delete`, { csrf })).status, 303);
      const { publicKey } = await generateKeyPair('ES256', { extractable: true });
      assert.equal((await open(`${path}/keys`, { csrf, jwks: JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'laptop' }] }) })).status, 303);
      assert.equal((await open(`${path}/keys/delete`, { csrf })).status, 303);
      assert.equal((await open(`${path}/api-keys`, [['csrf', csrf], ['name', 'Viewer'], ['scopes', 'objects:read']])).status, 200);
      const created = (await server.gatehouse.storage.apiKeys.listForClient(application!.id)).find((key) => key.name === 'Viewer');
      assert.equal((await open(`${path}/api-keys/${created!.id}/revoke`, { csrf })).status, 303);
      assert.equal((await open(`${path}/delete`, { csrf })).status, 303);

      const web = await server.client({ grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [CALLBACK] });
      for (const decision of ['allow', 'deny']) {
        const query = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'objects:read', state: 's', prompt: 'consent' });
        const consent = await open((await open(`/authorize?${query}`)).location!);
        assert.equal(consent.status, 200, consent.text.slice(0, 300));
        assert.equal((await open('/consent', { csrf, request: hiddenField(consent.text, 'request'), decision })).status, 303);
      }
      assert.equal((await open('/account/applications/withdraw', { csrf, client_id: web.id })).status, 303);
      assert.equal((await open('/account/name', { csrf, name: 'Ada L.' })).status, 303);

      assert.equal((await open('/logout', { csrf, confirm: 'yes' })).status, 200);
      const forgot = await open('/password/forgot');
      assert.equal((await open('/password/forgot', { csrf: hiddenField(forgot.text, 'csrf'), email: ada.email })).status, 303);
      await server.gatehouse.passwordResets.settled();

      await server.gatehouse.audit.flush();
      const events = await server.gatehouse.storage.audit.query({ userId: ada.id, since, oldestFirst: true });
      assert.deepEqual(
        events.map((event) => [event.kind, event.data.address]),
        [
          ['portal.client.created', '192.0.2.70'],
          ['portal.api_key.created', '192.0.2.70'],
          ['portal.client.updated', '192.0.2.70'],
          ['portal.secret.added', '192.0.2.70'],
          ['portal.secret.deleted', '192.0.2.70'],
          ['portal.client.keys_saved', '192.0.2.70'],
          ['portal.client.keys_removed', '192.0.2.70'],
          ['portal.api_key.created', '192.0.2.70'],
          ['portal.api_key.revoked', '192.0.2.70'],
          ['portal.client.deleted', '192.0.2.70'],
          ['consent.granted', '192.0.2.70'],
          ['authorization.granted', '192.0.2.70'],
          ['consent.denied', '192.0.2.70'],
          ['consent.withdrawn', '192.0.2.70'],
          ['user.name_changed', '192.0.2.70'],
          ['logout', '192.0.2.70'],
          ['user.password_reset_requested', '192.0.2.70'],
        ],
      );
    });
  });
}
