import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startMailServer, type TestMailServer } from '../support/smtp.ts';

const START = 1_750_000_000;
const PASSWORD = 'correct horse battery staple';

/*
 * Every page a limit guards records the requests it refuses, with the address they came from (as
 * the trusted proxy gives it): a run of sign-ups, reset links or authorization requests from one
 * network is on record, not only in a 429 that nobody saw. Refusals come in floods, so each is
 * written as refused token requests are: the first at once, its repeats in the minute as one count.
 */
for (const dialect of DIALECTS) {
  describe(`requests refused by a limit in the audit log (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let now = START;

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => now,
        env: { GATEHOUSE_TRUST_PROXY: 'true', GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' },
        config: {
          login: { maxFailuresPerAccount: 2, maxFailuresPerAddress: 2, windowSeconds: 600 },
          signup: { maxAccountsPerAddress: 1 },
          passwordReset: { maxRequestsPerAddress: 1 },
          emailVerification: { maxRequestsPerAccount: 1 },
          rateLimits: { authorizationRequestsPerAddress: 1 },
        },
      });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    /** Fills the form at `formPath` and posts it to `path`, from the browser at `address` (behind the proxy). */
    async function submit(browser: HttpBrowser, address: string, formPath: string, path: string, form: Record<string, string>) {
      const headers = { 'x-forwarded-for': address };
      const page = await browser.request(`${server.url}${formPath}`, { headers });
      return browser.request(`${server.url}${path}`, { form: { csrf: hiddenField(page.text, 'csrf'), ...form }, headers });
    }
    const signUp = (browser: HttpBrowser, address: string) =>
      submit(browser, address, '/signup', '/signup', { email: `new.${randomBytes(6).toString('hex')}@example.com`, name: 'New person', password: PASSWORD });

    async function eventsOf(kind: string): Promise<Omit<AuditEvent, 'id'>[]> {
      now += 60;
      await server.gatehouse.audit.flush();
      return (await server.gatehouse.storage.audit.query({ kind, limit: 1000 })).reverse().map(({ id: _id, ...event }) => event);
    }
    const refused = (kind: string, at: number, data: Record<string, unknown>, userId: string | null = null) => [
      { at, kind, outcome: 'failure', clientId: null, userId, data },
      { at, kind, outcome: 'failure', clientId: null, userId, data: { ...data, repeated: 1, window_start: at, window_end: at + 60 } },
    ];

    it('records sign-ups refused for the accounts an address made, and for its failed sign-ins', async () => {
      const at = now;
      assert.equal((await signUp(new HttpBrowser(), '203.0.113.1')).status, 303);
      for (let i = 0; i < 2; i++) assert.equal((await signUp(new HttpBrowser(), '203.0.113.1')).status, 429);
      for (let i = 0; i < 2; i++) assert.equal((await submit(new HttpBrowser(), '203.0.113.2', '/login', '/login', { email: 'nobody@example.com', password: 'guess' })).status, 401);
      for (let i = 0; i < 2; i++) assert.equal((await signUp(new HttpBrowser(), '203.0.113.2')).status, 429);
      const [accounts, repeatedAccounts] = refused('signup.throttled', at, { limit: 'accounts', address: '203.0.113.1' });
      const [failures, repeatedFailures] = refused('signup.throttled', at, { limit: 'address', address: '203.0.113.2' });
      assert.deepEqual(await eventsOf('signup.throttled'), [accounts, failures, repeatedAccounts, repeatedFailures]);
    });

    it('records refused password reset links', async () => {
      const at = now;
      for (const status of [303, 429, 429]) assert.equal((await submit(new HttpBrowser(), '203.0.113.3', '/password/forgot', '/password/forgot', { email: 'someone@example.com' })).status, status);
      assert.deepEqual(await eventsOf('password_reset.throttled'), refused('password_reset.throttled', at, { address: '203.0.113.3' }));
    });

    it('records refused authorization requests', async () => {
      const at = now;
      const spa = await server.client({ type: 'public', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: ['https://app.example/callback'] });
      const authorize = () => {
        const query = new URLSearchParams({ response_type: 'code', client_id: spa.id, redirect_uri: 'https://app.example/callback', scope: 'openid', code_challenge: randomBytes(32).toString('base64url'), code_challenge_method: 'S256' });
        return new HttpBrowser().request(`${server.url}/authorize?${query}`, { headers: { 'x-forwarded-for': '203.0.113.4' } });
      };
      for (const status of [302, 429, 429]) assert.equal((await authorize()).status, status);
      assert.deepEqual(await eventsOf('authorization.throttled'), refused('authorization.throttled', at, { address: '203.0.113.4' }));
    });

    it('records refused verification links and current passwords on the account pages, naming the account', async () => {
      const browser = new HttpBrowser();
      assert.equal((await signUp(browser, '203.0.113.5')).status, 303);
      const userId = (await server.gatehouse.sessions.resolve(browser.cookies.get('gatehouse_session')!, now))!.user.id;

      let at = now;
      for (const status of [303, 429, 429]) assert.equal((await submit(browser, '203.0.113.5', '/account', '/email/resend', {})).status, status);
      assert.deepEqual(await eventsOf('email_verification.throttled'), refused('email_verification.throttled', at, { address: '203.0.113.5' }, userId));

      at = now;
      const guess = { current_password: 'not the password', new_password: 'another long password', confirm_password: 'another long password' };
      for (const status of [400, 400, 429, 429]) assert.equal((await submit(browser, '203.0.113.6', '/account/password', '/account/password', guess)).status, status);
      const throttled = (await eventsOf('login.throttled')).filter((event) => event.userId === userId);
      assert.deepEqual(throttled, refused('login.throttled', at, { via: 'account_page', address: '203.0.113.6', limit: 'account' }, userId));
    });
  });
}
