import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { HttpBrowser, ProxiedBrowser, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * A user's sessions in the admin API, as Keycloak's admin console shows them: each browser signed
 * in, newest first, with when, from where and with what it signed in and was last used, never its
 * cookie; and any one ended by its sid, as a sign-out in it would.
 */

const PASSWORD = 'correct horse battery staple';
const FIREFOX_ON_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
const SAFARI_ON_IOS = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1';
const START = 1_900_000_000;
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

interface Answer {
  status: number;
  contentType: string | null;
  text: string;
  body: any;
}

for (const dialect of DIALECTS) {
  describe(`a user's sessions in the admin API (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let now = START;
    let counter = 0;
    let admin: { id: string; secret: string };
    let viewer: { id: string; secret: string };
    let mobile: { id: string; secret: string };
    /** Authorization header values, by who holds them. */
    const auth: Record<string, string> = {};

    const clientToken = async (id: string, secret: string, scope?: string): Promise<string> => {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(id, secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return `Bearer ${res.body.access_token}`;
    };

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, env: { GATEHOUSE_TRUST_PROXY: 'true' } });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users', 'admin:tokens'], isAdmin: true });
      viewer = await server.client({ name: 'Viewer', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password'], scopes: ['objects:read'], firstParty: true });
    });
    // Tokens of the clock's present: a test moves it past their lifetime.
    beforeEach(async () => {
      auth.users = await clientToken(admin.id, admin.secret, 'admin:users');
      auth.tokensOnly = await clientToken(admin.id, admin.secret, 'admin:tokens');
      auth.nonAdminClient = await clientToken(viewer.id, viewer.secret);
    });
    after(() => server.close());

    const api = async (method: string, path: string, authorization = auth.users!, address = '198.51.100.200'): Promise<Answer> => {
      const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers: { authorization, 'x-forwarded-for': address } });
      const text = await response.text();
      return { status: response.status, contentType: response.headers.get('content-type'), text, body: text === '' ? undefined : JSON.parse(text) };
    };
    const assertProblem = (answer: Answer, status: number) => {
      assert.equal(answer.status, status, answer.text);
      assert.match(answer.contentType ?? '', /^application\/problem\+json/);
      assert.equal(answer.body.status, status);
    };
    const aUser = () => server.user(`admin-sessions-${++counter}-${dialect}@example.com`, PASSWORD);
    const signIn = (email: string, address: string, userAgent: string) => signedInBrowser(server.url, email, PASSWORD, new ProxiedBrowser(address, userAgent));
    const isSignedIn = async (browser: HttpBrowser) => {
      const page = await browser.request(`${server.url}/account`);
      assert.ok(page.status === 200 || page.status === 302, `status ${page.status}`);
      return page.status === 200;
    };
    const cookieOf = (browser: HttpBrowser) => browser.cookies.get('gatehouse_session')!;
    const sidOf = async (browser: HttpBrowser) => (await server.gatehouse.storage.sessions.find(digestOf(cookieOf(browser))))!.sid!;
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    it('lists the user’s live sessions newest first, with their times, address and browser, and never their cookie or its digest', async () => {
      const user = await aUser();
      const laptop = await signIn(user.email, '203.0.113.7', FIREFOX_ON_LINUX);
      const laptopAt = now;
      now += 120;
      const phone = await signIn(user.email, '2001:db8::42', SAFARI_ON_IOS);
      const phoneAt = now;
      now += 600;
      assert.ok(await isSignedIn(laptop), 'a use, recorded');
      const other = await aUser();
      await signIn(other.email, '203.0.113.99', FIREFOX_ON_LINUX);

      const answer = await api('GET', `/users/${user.id}/sessions`);
      assert.equal(answer.status, 200, answer.text);
      const ttl = server.gatehouse.sessions.ttlSeconds;
      assert.deepEqual(answer.body, {
        sessions: [
          { sid: await sidOf(phone), created_at: iso(phoneAt), auth_time: iso(phoneAt), last_used_at: iso(phoneAt), expires_at: iso(phoneAt + ttl), address: '2001:db8::42', device: 'Safari on iOS' },
          { sid: await sidOf(laptop), created_at: iso(laptopAt), auth_time: iso(laptopAt), last_used_at: iso(now), expires_at: iso(laptopAt + ttl), address: '203.0.113.7', device: 'Firefox on Linux' },
        ],
      });
      for (const browser of [laptop, phone]) {
        assert.ok(!answer.text.includes(cookieOf(browser)) && !answer.text.includes(digestOf(cookieOf(browser))), 'neither the cookie nor its digest');
      }
      assert.ok(!answer.text.includes('rv:133.0'), 'not the User-Agent header');

      // An expired session is not listed; a user without sessions has an empty list.
      now = laptopAt + ttl;
      const later = await api('GET', `/users/${user.id}/sessions`, await clientToken(admin.id, admin.secret, 'admin:users'));
      assert.deepEqual(later.body.sessions.map((s: { address: string }) => s.address), ['2001:db8::42'], later.text);
      now = phoneAt + ttl;
      assert.deepEqual((await api('GET', `/users/${user.id}/sessions`, await clientToken(admin.id, admin.secret, 'admin:users'))).body, { sessions: [] });
    });

    it('answers a 404 problem for an unknown user', async () => {
      assertProblem(await api('GET', '/users/no-such-user/sessions'), 404);
      assertProblem(await api('DELETE', '/users/no-such-user/sessions/0123456789abcdef0123456789abcdef'), 404);
    });

    it('ends one session as a sign-out in it would: its cookie no longer works, the others stay; audited with the admin client and address', async () => {
      const user = await aUser();
      const laptop = await signIn(user.email, '203.0.113.9', FIREFOX_ON_LINUX);
      now += 1;
      const phone = await signIn(user.email, '2001:db8::43', SAFARI_ON_IOS);
      const sid = await sidOf(laptop);
      const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD });
      assert.equal(token.status, 200);

      const ended = await api('DELETE', `/users/${user.id}/sessions/${sid}`, auth.users, '198.51.100.77');
      assert.equal(ended.status, 204, ended.text);
      assert.equal(ended.text, '');
      assert.equal(await isSignedIn(laptop), false, 'its cookie no longer works');
      assert.equal(await isSignedIn(phone), true, 'the other session stays');
      assert.deepEqual((await api('GET', `/users/${user.id}/sessions`)).body.sessions.map((s: { sid: string }) => s.sid), [await sidOf(phone)]);
      const events = await eventsOf(user.id, 'admin.user.session_signed_out');
      assert.equal(events.length, 1);
      assert.equal(events[0]!.clientId, admin.id);
      assert.deepEqual(events[0]!.data, { admin_client_id: admin.id, via: 'admin_api', address: '198.51.100.77', user_id: user.id, sid });

      // Sent again: it has ended, and nothing else is.
      assertProblem(await api('DELETE', `/users/${user.id}/sessions/${sid}`), 404);
      assert.equal(await isSignedIn(phone), true);
      assert.equal((await eventsOf(user.id, 'admin.user.session_signed_out')).length, 1);
      assert.equal((await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD })).status, 200, 'the password stays');
    });

    it('ends nothing for an unknown sid, a digest, another user’s sid, or a caller without admin:users', async () => {
      const user = await aUser();
      const other = await aUser();
      const mine = await signIn(user.email, '203.0.113.10', FIREFOX_ON_LINUX);
      const theirs = await signIn(other.email, '203.0.113.11', SAFARI_ON_IOS);
      const sessions = await countRows(server.database, 'sessions');
      const userToken = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD });
      assert.equal(userToken.status, 200);

      for (const sid of ['0123456789abcdef0123456789abcdef', digestOf(cookieOf(mine)), await sidOf(theirs)]) {
        assertProblem(await api('DELETE', `/users/${user.id}/sessions/${encodeURIComponent(sid)}`), 404);
      }
      for (const [who, authorization] of [
        ['a user', `Bearer ${userToken.body.access_token}`],
        ['a non-admin client', auth.nonAdminClient!],
        ['an admin token without admin:users', auth.tokensOnly!],
      ] as const) {
        assertProblem(await api('GET', `/users/${user.id}/sessions`, authorization), 403);
        const refused = await api('DELETE', `/users/${user.id}/sessions/${await sidOf(mine)}`, authorization);
        assertProblem(refused, 403);
        assert.equal(refused.body.error, 'insufficient_scope', who);
      }
      assertProblem(await api('GET', `/users/${user.id}/sessions`, 'Bearer not-a-token'), 401);

      assert.equal(await countRows(server.database, 'sessions'), sessions);
      for (const browser of [mine, theirs]) assert.equal(await isSignedIn(browser), true);
      assert.deepEqual(await eventsOf(user.id, 'admin.user.session_signed_out'), []);
      assert.deepEqual(await eventsOf(other.id, 'admin.user.session_signed_out'), []);
    });
  });
}
