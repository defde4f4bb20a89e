import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import type { FastifyInstance } from 'fastify';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('rate limits on the token endpoint (in process)', () => {
  let server: TestServer;
  let client: { id: string; secret: string };

  before(async () => {
    server = await startTestServer('sqlite', { config: { rateLimits: { tokenRequestsPerClient: 5, clientAuthFailures: 3, windowSeconds: 60 }, tokens: { clientCredentialsReuseSeconds: 0 } } });
    client = await server.client({});
  });
  after(() => server.close());

  it('answers a client over its request budget with 429, Retry-After and an RFC error body', async () => {
    const request = () => post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) } });
    for (let i = 0; i < 5; i++) assert.equal((await request()).status, 200);
    const limited = await request();
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal(limited.body.error, 'temporarily_unavailable');
    assert.equal(limited.headers.get('cache-control'), 'no-store');
  });

  it('throttles guessing a client secret per client id and address, even once the right secret comes', async () => {
    const other = await server.client({});
    for (let i = 0; i < 3; i++) {
      assert.equal((await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(other.id, 'gate_cs_wrong') } })).status, 401);
    }
    const blocked = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(other.id, other.secret) } });
    assert.equal(blocked.status, 429);
  });
});

describe('probing emails through sign-up (in process)', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer('sqlite', { config: { login: { maxFailuresPerAccount: 5, maxFailuresPerAddress: 3, windowSeconds: 60 } } });
    for (const name of ['taken.1', 'taken.2', 'taken.3']) await server.user(`${name}@example.com`, 'a long enough password');
  });
  after(() => server.close());

  async function signUp(email: string) {
    const browser = new HttpBrowser();
    const form = await browser.request(`${server.url}/signup`);
    return browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'Prober', password: 'a long enough password' } });
  }

  it('counts each "email taken" answer against the address, then answers 429 with Retry-After and creates nothing', async () => {
    for (const name of ['taken.1', 'taken.2', 'taken.3']) {
      const refused = await signUp(`${name}@example.com`);
      assert.equal(refused.status, 400);
      assert.match(refused.text, /This email cannot be used to create an account/);
    }
    const throttled = await signUp('someone.new@example.com');
    assert.equal(throttled.status, 429);
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
    assert.match(throttled.text, /Too many attempts/);
    assert.equal(await server.gatehouse.storage.users.findByEmail('someone.new@example.com'), undefined, 'no account was created');
    assert.equal((await signUp('taken.1@example.com')).status, 429, 'and no email is told apart meanwhile');
  });

  it('does not count accounts created', async () => {
    const other = await startTestServer('sqlite', { config: { login: { maxFailuresPerAccount: 5, maxFailuresPerAddress: 2, windowSeconds: 60 } } });
    try {
      for (let i = 0; i < 4; i++) {
        const browser = new HttpBrowser();
        const form = await browser.request(`${other.url}/signup`);
        const created = await browser.request(`${other.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email: `new.${i}@example.com`, name: 'New', password: 'a long enough password' } });
        assert.equal(created.status, 303);
      }
    } finally {
      await other.close();
    }
  });
});

describe('rate limits shared across instances through Redis', () => {
  let first: TestServer;
  let second: { gatehouse: Gatehouse; app: FastifyInstance; url: string };
  const email = `${randomBytes(6).toString('hex')}@example.com`;
  let client: { id: string; secret: string };

  before(async () => {
    const settings = { login: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 60 } };
    first = await startTestServer('postgres', { env: { REDIS_URL }, config: settings });
    const gatehouse = await createGatehouse({ ...first.config, port: await freePort() }, { logger: pino({ level: 'silent' }) });
    const app = buildApp(gatehouse);
    await app.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
    second = { gatehouse, app, url: `http://127.0.0.1:${gatehouse.config.port}` };
    client = await first.client({ grantTypes: ['password'], scopes: ['objects:read'] });
    await first.user(email, 'the right password');
  });
  after(async () => {
    await second.app.close();
    await second.gatehouse.close();
    await first.close();
  });

  it('counts failed sign-ins of one account on every instance', async () => {
    const attempt = (url: string, password: string) =>
      post(`${url}/token`, { grant_type: 'password', username: email, password }, { headers: { authorization: basic(client.id, client.secret) } });
    assert.equal((await attempt(first.url, 'wrong 1')).status, 400);
    assert.equal((await attempt(second.url, 'wrong 2')).status, 400);
    assert.equal((await attempt(first.url, 'wrong 3')).status, 400);
    const throttled = await attempt(second.url, 'the right password');
    assert.equal(throttled.status, 429, 'the fourth attempt, on the other instance, is throttled');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
  });
});
