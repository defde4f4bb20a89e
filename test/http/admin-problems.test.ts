import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { serverError, temporarilyUnavailable, tooManyRequests } from '../../src/core/errors.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * An OAuthError the core throws below an admin route keeps its status in the admin API's problem:
 * a limit reached is a 429 and an outage a 503, each with when to come back (RFC 9110 §10.2.3),
 * not a 400 that tells a back office its request was wrong. The core reached here is the session
 * service behind POST /users/{userId}/sign-out, made to fail as a limit or an outage would.
 */
for (const dialect of DIALECTS) {
  describe(`admin API problems from the core (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let authorization: string;
    let userId: string;

    const signOut = async (): Promise<{ status: number; headers: Headers; body: any }> => {
      const response = await fetch(`${server.url}/admin/v1/users/${userId}/sign-out`, { method: 'POST', headers: { authorization } });
      return { status: response.status, headers: response.headers, body: JSON.parse(await response.text()) };
    };

    before(async () => {
      server = await startTestServer(dialect);
      const admin = await server.client({ name: 'Back office', scopes: ['admin:users'], isAdmin: true });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      authorization = `Bearer ${token.body.access_token}`;
      userId = (await server.user('ada@example.com', 'correct horse battery staple')).id;
    });
    after(() => server?.close());

    it('answers a limit reached with 429, its Retry-After and a problem document', async (t) => {
      t.mock.method(server.gatehouse.sessions, 'endForUser', async () => {
        throw tooManyRequests('too many sign-outs; try again later', 30);
      });
      const res = await signOut();
      assert.equal(res.status, 429, JSON.stringify(res.body));
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.headers.get('retry-after'), '30');
      assert.equal(res.body.type, `${server.url}/admin/v1/docs#problem-too-many-requests`);
      assert.equal(res.body.status, 429);
      assert.equal(res.body.detail, 'too many sign-outs; try again later');
      assert.equal(res.body.error, 'temporarily_unavailable');
      assert.equal(res.body.instance, `/admin/v1/users/${userId}/sign-out`);
    });

    it('answers an outage with 503 and the error’s own Retry-After', async (t) => {
      t.mock.method(server.gatehouse.sessions, 'endForUser', async () => {
        throw temporarilyUnavailable('the sessions cannot be reached; try again shortly', { 'retry-after': '5' });
      });
      const res = await signOut();
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.headers.get('retry-after'), '5');
      assert.equal(res.body.type, `${server.url}/admin/v1/docs#problem-unavailable`);
      assert.equal(res.body.status, 503);
      assert.equal(res.body.detail, 'the sessions cannot be reached; try again shortly');
    });

    it('answers an outage that says not when to come back with 503 and Retry-After: 1, as the reference documents every 503', async (t) => {
      t.mock.method(server.gatehouse.sessions, 'endForUser', async () => {
        throw temporarilyUnavailable('the sessions cannot be reached');
      });
      const res = await signOut();
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.headers.get('retry-after'), '1');
      assert.equal(res.body.type, `${server.url}/admin/v1/docs#problem-unavailable`);
    });

    it('answers a server_error as a 500 problem that does not repeat what failed', async (t) => {
      t.mock.method(server.gatehouse.sessions, 'endForUser', async () => {
        throw serverError('the session store answered nonsense');
      });
      const res = await signOut();
      assert.equal(res.status, 500, JSON.stringify(res.body));
      assert.equal(res.body.type, `${server.url}/admin/v1/docs#problem-server-error`);
      assert.equal(res.body.detail, 'the server could not complete the request');
    });

    it('explains the 429 problem on the reference page', async () => {
      const html = await (await fetch(`${server.url}/admin/v1/docs`)).text();
      assert.ok(html.includes('id="problem-too-many-requests"'));
    });

    it('still signs the user out once the core answers again', async () => {
      const response = await fetch(`${server.url}/admin/v1/users/${userId}/sign-out`, { method: 'POST', headers: { authorization } });
      assert.equal(response.status, 204);
    });
  });
}
