import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { sql } from 'kysely';
import { openDatabase } from '../../src/storage/database.ts';
import { codeThrough, HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * A code carries the `sid` of the browser session it was issued through. When that session ends
 * before the code is exchanged, its clients have already been sent the Logout Token for that `sid`
 * (Back-Channel Logout 1.0 §2.5): the code is void, so that nobody gets an ID token or tokens for a
 * session that has ended and that they will never hear about again. Nor does a code outlive its
 * session's expiry: it stands for that sign-in (the ID token of its exchange carries the session's
 * `sid` and `auth_time`), which no longer counts once the session has expired.
 */

const PASSWORD = 'correct horse battery staple';
const CALLBACK = 'https://app.example/callback';

for (const dialect of DIALECTS) {
  describe(`codes of ended sessions (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let web: { id: string; secret: string };
    let admin: { id: string; secret: string };
    let counter = 0;

    before(async () => {
      server = await startTestServer(dialect);
      web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], firstParty: true });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
    });
    after(() => server.close());

    const aUser = () => server.user(`ended-${++counter}-${dialect}@example.com`, PASSWORD);

    const signedIn = (email: string) => signedInBrowser(server.url, email, PASSWORD);

    /** A code for the web app issued through the browser's session, not yet exchanged. */
    const aCode = (browser: HttpBrowser) => codeThrough(browser, server.url, web.id, CALLBACK);

    const exchange = (code: string) => post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(web.id, web.secret) } });

    const adminApi = async (path: string, body?: Record<string, string>) => {
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const response = await fetch(`${server.url}/admin/v1${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token.body.access_token}`, ...(body && { 'content-type': 'application/json' }) },
        ...(body && { body: JSON.stringify(body) }),
      });
      return response.status;
    };

    async function assertRefused(code: string, userId: string): Promise<void> {
      const answer = await exchange(code);
      assert.equal(answer.status, 400, `answered ${answer.status}, ${answer.body.error ?? 'with tokens'}`);
      assert.equal(answer.body.error, 'invalid_grant');
      assert.equal(answer.body.access_token, undefined);
      assert.deepEqual(await server.gatehouse.storage.grants.list({ userId }), [], 'no grant for the ended session');
    }

    it('refuses a code whose session ended by sign-out (RP-initiated logout) before the exchange, and stores no grant', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const code = await aCode(browser);
      const account = await browser.request(`${server.url}/account`);
      const signedOut = await browser.request(`${server.url}/logout`, { form: { csrf: hiddenField(account.text, 'csrf'), confirm: 'yes' } });
      assert.equal(signedOut.status, 200);
      await assertRefused(code, user.id);
    });

    it('refuses the codes of the sessions the account page signs out elsewhere, and keeps those of the session that stays', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const elsewhere = await signedIn(user.email);
      const codeHere = await aCode(here);
      const codeElsewhere = await aCode(elsewhere);
      const account = await here.request(`${server.url}/account`);
      const signedOut = await here.request(`${server.url}/account/sign-out-elsewhere`, { form: { csrf: hiddenField(account.text, 'csrf') } });
      assert.equal(signedOut.status, 303);

      await assertRefused(codeElsewhere, user.id);
      const tokens = await exchange(codeHere);
      assert.equal(tokens.status, 200, tokens.body.error);
      assert.ok(decodeJwt(tokens.body.id_token).sid);
    });

    for (const [action, path, body] of [
      ['signs the user out', '/sign-out', undefined],
      ['resets the password', '/password', { password: 'a password set by an operator' }],
    ] as const) {
      it(`refuses the codes of every session of a user when the admin API ${action}`, async () => {
        const user = await aUser();
        const codes = [await aCode(await signedIn(user.email)), await aCode(await signedIn(user.email))];
        const bystander = await aUser();
        const theirs = await aCode(await signedIn(bystander.email));
        assert.equal(await adminApi(`/users/${user.id}${path}`, body), 204);

        for (const code of codes) await assertRefused(code, user.id);
        assert.equal((await exchange(theirs)).status, 200, 'another person’s session goes on');
      });
    }

    it('refuses as invalid, not as a reused code, a code whose session ends between its checks and its exchange', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const code = await aCode(browser);
      const { storage } = server.gatehouse;
      const find = storage.codes.find;
      // The sign-out lands while the token endpoint checks the code it has read.
      storage.codes.find = async (digest) => {
        storage.codes.find = find;
        const found = await find(digest);
        await server.gatehouse.sessions.endForUser(user.id);
        return found;
      };
      try {
        const answer = await exchange(code);
        assert.equal(answer.status, 400);
        assert.deepEqual([answer.body.error, answer.body.error_description], ['invalid_grant', 'the authorization code is invalid']);
      } finally {
        storage.codes.find = find;
      }
      await server.gatehouse.audit.flush();
      assert.deepEqual(await storage.audit.query({ userId: user.id, kind: 'authorization_code.reused' }), []);
      assert.deepEqual(await storage.grants.list({ userId: user.id }), []);
    });

    for (const prompt of [undefined, 'none'] as const) {
      it(`issues no code when the session ends between the authorization endpoint reading it and storing the code, and ${prompt ? 'answers login_required to prompt=none' : 'sends the person to sign in again, the request kept'}`, async () => {
        const user = await aUser();
        const browser = await signedIn(user.email);
        const { storage } = server.gatehouse;
        const find = storage.consents.find;
        // The sign-out lands after the endpoint has read the session, before it answers the client.
        storage.consents.find = async (...args) => {
          storage.consents.find = find;
          await server.gatehouse.sessions.endForUser(user.id);
          return find(...args);
        };
        const query = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid profile', state: 's', ...(prompt && { prompt }) });
        let answer;
        try {
          answer = await browser.request(`${server.url}/authorize?${query}`);
        } finally {
          storage.consents.find = find;
        }
        assert.equal(answer.status, 302, answer.text.slice(0, 300));
        const location = new URL(answer.location!, server.url);
        assert.equal(location.searchParams.get('code'), null, 'no code for a session that has ended');
        if (prompt) {
          assert.equal(`${location.origin}${location.pathname}`, CALLBACK);
          assert.equal(location.searchParams.get('error'), 'login_required');
        } else {
          assert.equal(location.pathname, '/login');
          // Signing in again goes on with the request: a code of the new session, which works.
          const form = await browser.request(location.href);
          const signedInAgain = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), request: hiddenField(form.text, 'request'), email: user.email, password: PASSWORD } });
          assert.equal(signedInAgain.status, 303, signedInAgain.text.slice(0, 300));
          const code = new URL(signedInAgain.location!).searchParams.get('code');
          assert.ok(code, signedInAgain.location);
          assert.equal((await exchange(code)).status, 200);
        }
        const handle = openDatabase({ databaseUrl: server.database.databaseUrl, sqlitePath: join(server.database.dataDir, 'gatehouse.sqlite') });
        try {
          const { rows } = await sql<{ n: number | string }>`select count(*) as n from authorization_codes where user_id = ${user.id} and consumed_at is null`.execute(handle.db);
          assert.equal(Number(rows[0]!.n), 0, 'no code of the ended session stored');
        } finally {
          await handle.close();
        }
      });
    }

    it('keeps the grant of a code exchanged before its session ended', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const tokens = await exchange(await aCode(browser));
      assert.equal(tokens.status, 200);
      const account = await browser.request(`${server.url}/account`);
      await browser.request(`${server.url}/logout`, { form: { csrf: hiddenField(account.text, 'csrf'), confirm: 'yes' } });
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token }, { headers: { authorization: basic(web.id, web.secret) } });
      assert.equal(refreshed.status, 200, 'signing out of Gatehouse leaves what an application was granted');
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`codes of expired sessions (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let web: { id: string; secret: string };
    let now = Math.floor(Date.now() / 1000);
    let counter = 0;

    before(async () => {
      // Sessions of a minute; no sweep, so that an expired session is still stored when its code is presented.
      server = await startTestServer(dialect, { clock: () => now, background: false, config: { sessions: { ttlSeconds: 60 } } });
      web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], firstParty: true });
    });
    after(() => server.close());

    /** A code issued through a session signed in to 30 seconds before (of the minute it lasts), and its user. */
    async function aCodeHalfwayThroughItsSession(): Promise<{ code: string; userId: string }> {
      const user = await server.user(`expired-${++counter}-${dialect}@example.com`, PASSWORD);
      const browser = await signedInBrowser(server.url, user.email, PASSWORD);
      now += 30;
      return { code: await codeThrough(browser, server.url, web.id, CALLBACK), userId: user.id };
    }

    const exchange = (code: string) => post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(web.id, web.secret) } });

    it('refuses a code whose session has expired before the exchange, though the code had minutes left, and stores no grant', async () => {
      const { code, userId } = await aCodeHalfwayThroughItsSession();
      now += 30;
      const answer = await exchange(code);
      assert.equal(answer.status, 400, `answered ${answer.status}, ${answer.body.error ?? 'with tokens'}`);
      assert.equal(answer.body.error, 'invalid_grant');
      assert.equal(answer.body.access_token, undefined);
      assert.deepEqual(await server.gatehouse.storage.grants.list({ userId }), []);
    });

    it('exchanges a code until the last second of its session', async () => {
      const { code, userId } = await aCodeHalfwayThroughItsSession();
      now += 29;
      const tokens = await exchange(code);
      assert.equal(tokens.status, 200, tokens.body.error_description);
      assert.equal(decodeJwt(tokens.body.id_token).sub, userId);
    });
  });
}
