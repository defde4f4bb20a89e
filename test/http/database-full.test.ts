import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createOpaqueToken } from '../../src/core/tokens/opaque.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const CALLBACK = 'https://app.example/callback';

/**
 * PostgreSQL that refuses new connections because it has as many as it takes (SQLSTATE 53300,
 * "sorry, too many clients already", when `max_connections` is smaller than the instances' pools
 * together): an outage as much as a database that is down, so every endpoint answers 503 with
 * Retry-After, never a 500. Reproduced with a role limited to one connection, which Gatehouse's
 * pool holds already, so that each connection more it opens for a burst of requests is refused.
 */
describe('PostgreSQL refusing new connections (too many clients)', { timeout: 60_000 }, () => {
  let admin: pg.Client;
  let database: TestDatabase;
  let server: TestServer;
  let role: string;
  let spa: { id: string };
  let machine: { id: string; secret: string };
  let adminClient: { id: string; secret: string };

  before(async () => {
    admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    role = `gatehouse_limited_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    database = await createTestDatabase('postgres');
    const url = new URL(database.databaseUrl!);
    await admin.query(`ALTER DATABASE ${url.pathname.slice(1)} OWNER TO ${role}`);
    url.username = role;
    server = await startTestServer('postgres', { env: { DATABASE_URL: url.toString() } });
    spa = await server.client({ name: 'SPA', type: 'public', grantTypes: ['authorization_code'], redirectUris: [CALLBACK], scopes: ['openid'] });
    machine = await server.client({});
    adminClient = await server.client({ name: 'Back office', scopes: ['admin:users'], isAdmin: true });
  });
  after(async () => {
    await server?.close();
    await database?.drop();
    await admin?.query(`DROP ROLE IF EXISTS ${role}`);
    await admin?.end();
  });

  /** Sends `count` requests at once while the role may hold one connection; their answers. */
  const burst = async <T>(count: number, send: () => Promise<T>): Promise<T[]> => {
    await admin.query(`ALTER ROLE ${role} CONNECTION LIMIT 1`);
    try {
      return await Promise.all(Array.from({ length: count }, send));
    } finally {
      await admin.query(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
    }
  };

  it('answers 503 with Retry-After on the pages, the protocol endpoints and the admin API, never a 500', async () => {
    const adminToken = (await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(adminClient.id, adminClient.secret) } })).body.access_token as string;
    const authorize = () => {
      const query = new URLSearchParams({ response_type: 'code', client_id: spa.id, redirect_uri: CALLBACK, scope: 'openid', state: 's', code_challenge: randomBytes(32).toString('base64url'), code_challenge_method: 'S256' });
      return fetch(`${server.url}/authorize?${query}`, { redirect: 'manual' }).then(async (res) => ({ where: 'page', status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() }));
    };
    const exchange = () =>
      post(`${server.url}/token`, { grant_type: 'authorization_code', code: createOpaqueToken('ac'), client_id: spa.id, redirect_uri: CALLBACK, code_verifier: 'v'.repeat(43) }).then((res) => ({
        where: 'token',
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        body: JSON.stringify(res.body),
      }));
    const listUsers = () =>
      fetch(`${server.url}/admin/v1/users`, { headers: { authorization: `Bearer ${adminToken}` } }).then(async (res) => ({ where: 'admin', status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() }));
    const senders = [authorize, exchange, listUsers];
    let turn = 0;
    // Which requests of a burst need a connection the pool does not have yet depends on timing: the
    // token endpoint's lookups that arrive together share one statement (see batching), and so may
    // need none. A few bursts, until each part of the server met a refusal.
    const answers: Awaited<ReturnType<(typeof senders)[number]>>[] = [];
    const wheres = ['page', 'token', 'admin'];
    for (let attempt = 0; attempt < 5; attempt++) {
      answers.push(...(await burst(45, () => senders[turn++ % senders.length]!())));
      if (wheres.every((where) => answers.some((answer) => answer.where === where && answer.status >= 500))) break;
    }

    const refused = answers.filter((answer) => answer.status >= 500);
    for (const where of wheres) {
      assert.ok(
        refused.some((answer) => answer.where === where),
        `the burst needed more connections than the role may open, at the ${where} too: ${answers.map((a) => `${a.where} ${a.status}`).join(', ')}`,
      );
    }
    for (const answer of refused) {
      assert.equal(answer.status, 503, `${answer.where}: ${answer.body.slice(0, 300)}`);
      assert.equal(answer.retryAfter !== null && Number(answer.retryAfter) >= 1, true, `${answer.where} says when to come back`);
    }
    assert.equal(JSON.parse(refused.find((a) => a.where === 'token')!.body).error, 'temporarily_unavailable');
    assert.match(refused.find((a) => a.where === 'admin')!.body, /problem-unavailable/);
    // And served as before once connections are to be had.
    assert.equal((await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).status, 200);
    assert.equal((await authorize()).status, 302);
  });
});
