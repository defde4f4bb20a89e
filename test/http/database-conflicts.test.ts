import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const PASSWORD = 'correct horse battery staple';

/**
 * PostgreSQL aborting a transaction for a conflict with another — a deadlock it broke (40P01), a
 * serialization failure (40001) — says nothing wrong of the request: the same request a moment
 * later succeeds. Every endpoint answers it as a database that is briefly unavailable: 503 with
 * Retry-After, never a 500. PostgreSQL raises the real errors here from a trigger on the tables a
 * sign-in writes, for as long as the test arms it.
 */
describe('PostgreSQL aborting a transaction for a conflict (deadlock, serialization failure)', { timeout: 60_000 }, () => {
  let server: TestServer;
  let db: pg.Client;
  let app: { id: string; secret: string };
  let user: { email: string };

  before(async () => {
    server = await startTestServer('postgres');
    app = await server.client({ name: 'Mobile', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'] });
    user = await server.user('conflict@example.com', PASSWORD);
    db = new pg.Client({ connectionString: server.database.databaseUrl });
    await db.connect();
    await db.query(`create function gatehouse_test_conflict() returns trigger language plpgsql as $$
      begin raise exception 'conflict' using errcode = tg_argv[0]; end $$`);
  });
  after(async () => {
    await db?.end();
    await server?.close();
  });

  /** Makes every insert into `table` fail with SQLSTATE `code` while `run` runs. */
  const conflicting = async <T>(table: string, code: string, run: () => Promise<T>): Promise<T> => {
    await db.query(`create trigger gatehouse_test_conflict before insert on ${table} for each row execute function gatehouse_test_conflict('${code}')`);
    try {
      return await run();
    } finally {
      await db.query(`drop trigger gatehouse_test_conflict on ${table}`);
    }
  };

  for (const code of ['40P01', '40001']) {
    it(`answers the token endpoint 503 temporarily_unavailable with Retry-After for ${code}, and the same request then succeeds`, async () => {
      const ask = () => post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: PASSWORD, scope: 'objects:read' }, { headers: { authorization: basic(app.id, app.secret) } });
      const refused = await conflicting('grants', code, ask);
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.body.error, 'temporarily_unavailable');
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal((await ask()).status, 200);
    });

    it(`answers the sign-in page 503 with Retry-After for ${code}, and the same sign-in then succeeds`, async () => {
      const signIn = async () => {
        const browser = new HttpBrowser();
        const form = await browser.request(`${server.url}/login`);
        return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email: user.email, password: PASSWORD } });
      };
      const refused = await conflicting('sessions', code, signIn);
      assert.equal(refused.status, 503, refused.text.slice(0, 300));
      assert.match(refused.headers.get('content-type') ?? '', /^text\/html/);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal((await signIn()).status, 303);
    });
  }
});
