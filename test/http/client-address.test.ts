import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { sendRaw } from '../support/raw-http.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * The client address every per-address limit and audit event sees, with the test standing in for
 * the proxy: the server is reached from 127.0.0.1, and X-Forwarded-For holds what a client wrote
 * followed by what the proxy appended.
 */

/** The address the token endpoint recorded for a refused request that carried `forwardedFor`. */
async function recordedAddress(server: TestServer, forwardedFor: string): Promise<unknown> {
  const clientId = `probe-${randomBytes(6).toString('hex')}`;
  const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: 'gate_cs_wrong' }).toString();
  const answer = await sendRaw(server.url, {
    path: '/token',
    headers: { host: new URL(server.url).host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), 'x-forwarded-for': forwardedFor },
    body,
  });
  assert.equal(answer.status, 401, answer.text);
  await server.gatehouse.audit.flush();
  const [event] = await server.gatehouse.storage.audit.query({ kind: 'token.refused', clientId });
  assert.ok(event, 'the refusal was audited');
  return event.data.address;
}

/** The names of the cookies the sign-in page sets for a request that says it came over `proto`. */
async function cookiesFor(server: TestServer, proto: string): Promise<string[]> {
  const answer = await new HttpBrowser().request(`${server.url}/login`, { headers: { 'x-forwarded-proto': proto } });
  assert.equal(answer.status, 200);
  return answer.headers.getSetCookie().map((cookie) => `${cookie.split('=')[0]}${/;\s*secure/i.test(cookie) ? ' (Secure)' : ''}`);
}

describe('GATEHOUSE_TRUST_PROXY=true: one reverse proxy in front', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer('sqlite', { env: { GATEHOUSE_TRUST_PROXY: 'true' }, config: { login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 3, windowSeconds: 600 } } });
  });
  after(() => server.close());

  /** A failed sign-in on the page, through the proxy, with the X-Forwarded-For it passes on. */
  async function failSignIn(forwardedFor: string) {
    const browser = new HttpBrowser();
    const headers = { 'x-forwarded-for': forwardedFor };
    const form = await browser.request(`${server.url}/login`, { headers });
    const email = `nobody.${randomBytes(4).toString('hex')}@example.com`;
    return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password: 'not the password' }, headers });
  }

  it('throttles sign-in failures of one proxy-given address together, whatever the client wrote before it', async () => {
    for (let i = 1; i <= 3; i++) assert.equal((await failSignIn(`198.51.100.${i}, 10.20.30.40`)).status, 401, `failure ${i}`);
    const throttled = await failSignIn('198.51.100.99, 10.20.30.40');
    assert.equal(throttled.status, 429, 'a new forged leftmost address does not escape the limit');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
    assert.equal((await failSignIn('10.20.30.40')).status, 429, 'nor does sending none');
    assert.equal((await failSignIn('198.51.100.1, 10.20.30.41')).status, 401, 'another address the proxy gives has its own budget');
  });

  it('records the address the proxy appended, not the one the client wrote', async () => {
    assert.equal(await recordedAddress(server, '203.0.113.7, 10.9.8.7'), '10.9.8.7');
    assert.equal(await recordedAddress(server, '10.9.8.6'), '10.9.8.6');
  });

  it('believes the proxy about HTTPS: the cookies are Secure and __Host-', async () => {
    assert.deepEqual(await cookiesFor(server, 'https'), ['__Host-gatehouse_csrf (Secure)']);
    assert.deepEqual(await cookiesFor(server, 'http'), ['gatehouse_csrf']);
  });
});

describe('GATEHOUSE_TRUST_PROXY as a list of proxy addresses', () => {
  const servers: TestServer[] = [];
  const start = async (trusted: string) => {
    const server = await startTestServer('sqlite', { env: { GATEHOUSE_TRUST_PROXY: trusted } });
    servers.push(server);
    return server;
  };
  after(async () => {
    for (const server of servers) await server.close();
  });

  it('keeps the connection address of a peer that is not a listed proxy, and ignores its X-Forwarded-Proto', async () => {
    const server = await start('10.0.0.0/8, 192.168.1.1');
    assert.equal(await recordedAddress(server, '10.1.1.1'), '127.0.0.1');
    assert.equal(await recordedAddress(server, '203.0.113.9, 192.168.1.1'), '127.0.0.1');
    assert.deepEqual(await cookiesFor(server, 'https'), ['gatehouse_csrf']);
  });

  it('takes, behind a listed proxy, the nearest address that is not one', async () => {
    const loopback = await start('127.0.0.1');
    assert.equal(await recordedAddress(loopback, '203.0.113.5, 10.1.1.1'), '10.1.1.1');
    assert.deepEqual(await cookiesFor(loopback, 'https'), ['__Host-gatehouse_csrf (Secure)']);

    const chain = await start('loopback, 10.0.0.0/8');
    assert.equal(await recordedAddress(chain, '203.0.113.5, 10.1.1.1'), '203.0.113.5', 'through two listed proxies');
    assert.equal(await recordedAddress(chain, '203.0.113.5, 198.51.100.4, 10.1.1.1'), '198.51.100.4', 'and no further than the first address not listed');
  });
});

describe('GATEHOUSE_TRUST_PROXY as a number of hops', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer('sqlite', { env: { GATEHOUSE_TRUST_PROXY: '2' } });
  });
  after(() => server.close());

  it('takes the address the farthest of that many proxies appended', async () => {
    assert.equal(await recordedAddress(server, '203.0.113.5, 198.51.100.4, 10.1.1.1'), '198.51.100.4');
    assert.equal(await recordedAddress(server, '10.1.1.1'), '10.1.1.1', 'a shorter chain gives its leftmost');
  });
});
