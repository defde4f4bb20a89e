import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countRows } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** What a request to a page can leave behind. */
const TABLES = ['sessions', 'users', 'clients', 'authorization_requests', 'audit_events'];

/**
 * RFC 9110 §15.5.6: a page asked with a method it does not take (OPTIONS, PUT, DELETE, PATCH) is
 * answered 405 with `Allow`, as the protocol endpoints and the admin API answer, and with a
 * readable page; an address with no page at all stays a 404.
 */
describe('methods a page does not take', () => {
  let server: TestServer;
  const user = { email: 'ada@example.com', password: 'correct horse battery' };

  before(async () => {
    server = await startTestServer('sqlite');
    await server.user(user.email, user.password);
  });
  after(() => server.close());

  /** What is stored, the audit events written in batches included: one an earlier request left waiting would count as this one's. */
  const stored = async () => {
    await server.gatehouse.audit.flush();
    return Object.fromEntries(await Promise.all(TABLES.map(async (table) => [table, await countRows(server.database, table)] as const)));
  };

  it('answers OPTIONS, PUT, DELETE and PATCH to a page with 405, the methods it takes in Allow, and a page saying so', async () => {
    const browser = await signedInBrowser(server.url, user.email, user.password);
    const pages: [string, string][] = [
      ['/login', 'GET, HEAD, POST'],
      ['/signup', 'GET, HEAD, POST'],
      ['/account', 'GET, HEAD'],
      ['/account/delete', 'GET, HEAD, POST'],
      ['/account/sessions/sign-out', 'GET, HEAD, POST'],
      ['/account/email', 'GET, HEAD, POST'],
      ['/email/change', 'GET, HEAD, POST'],
      ['/developers', 'GET, HEAD'],
      ['/developers/applications/app_0123456789abcdef01234567', 'GET, HEAD'],
      // HEAD acts there as GET would, and is refused as well (RFC 9110 §9.3.2).
      ['/authorize', 'GET, POST'],
      ['/logout', 'GET, POST'],
      ['/static/gatehouse.css', 'GET, HEAD'],
      ['/', 'GET, HEAD'],
    ];
    for (const [path, allow] of pages) {
      for (const method of ['OPTIONS', 'PUT', 'DELETE', 'PATCH']) {
        const answer = await browser.request(`${server.url}${path}`, { method });
        assert.equal(answer.status, 405, `${method} ${path}`);
        assert.equal(answer.headers.get('allow'), allow, `${method} ${path}`);
        assert.match(answer.headers.get('content-type') ?? '', /^text\/html/, `${method} ${path}`);
        assert.match(answer.text, /Method not allowed/, `${method} ${path}`);
        assert.match(answer.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, 'the pages’ security headers');
        // Not a CORS preflight's answer: the pages' answers are not for other origins.
        assert.equal(answer.headers.get('access-control-allow-origin'), null, `${method} ${path}`);
      }
    }
  });

  it('signs no one in and creates no account for a PUT of the sign-in or sign-up form', async () => {
    const browser = new HttpBrowser();
    const before = await stored();
    const login = await browser.request(`${server.url}/login`);
    const csrf = hiddenField(login.text, 'csrf');
    for (const path of ['/login', '/signup']) {
      const answer = await browser.request(`${server.url}${path}`, { method: 'PUT', form: { csrf, email: path === '/login' ? user.email : 'new@example.com', name: 'New', password: user.password } });
      assert.equal(answer.status, 405, path);
      assert.equal(answer.headers.getSetCookie().some((cookie) => /session/.test(cookie) && !/max-age=0/i.test(cookie)), false, path);
    }
    assert.deepEqual(await stored(), before);
  });

  it('answers an address with no page 404, whatever the method', async () => {
    for (const method of ['GET', 'OPTIONS', 'PUT', 'DELETE']) {
      const answer = await fetch(`${server.url}/nowhere`, { method });
      assert.equal(answer.status, 404, method);
      assert.equal(answer.headers.get('allow'), null, method);
      assert.match(answer.headers.get('content-type') ?? '', /^text\/html/, method);
    }
  });
});
