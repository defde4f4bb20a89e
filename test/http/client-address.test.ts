import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { sendRaw } from '../support/raw-http.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * The client address every per-address limit and audit event sees, with the test standing in for
 * the proxy: the server is reached from 127.0.0.1, and X-Forwarded-For holds what a client wrote
 * followed by what the proxy appended.
 */

/** Request budgets are kept per fixed window: a sequence that must fall in one waits for the next window if this one is about to end. */
async function startOfWindowIfNear(windowSeconds: number, marginSeconds = 10): Promise<void> {
  const left = windowSeconds - ((Date.now() / 1000) % windowSeconds);
  if (left < marginSeconds) await sleep(left * 1000 + 50);
}

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

describe('IPv6 clients: one /64 is one client address to every per-address limit', () => {
  let server: TestServer;
  /** A /64 of its own for each test; the rest of the address varies from request to request. */
  const aNetwork = (): string => `2001:db8:${randomBytes(2).toString('hex')}:${randomBytes(2).toString('hex')}`;
  const anAddressIn = (network: string): string => `${network}:${[...Array(4)].map(() => randomBytes(2).toString('hex')).join(':')}`;

  before(async () => {
    // The addresses come as the one trusted proxy passes them on: a test cannot send from many IPv6
    // source addresses of its own without changing the machine's interfaces.
    server = await startTestServer('sqlite', {
      env: { GATEHOUSE_TRUST_PROXY: 'true' },
      config: {
        login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 3, windowSeconds: 600 },
        rateLimits: { clientAuthFailures: 3, authorizationRequestsPerAddress: 2, windowSeconds: 600 },
        signup: { enabled: true, maxAccountsPerAddress: 2, windowSeconds: 3600 },
      },
    });
  });
  after(() => server.close());

  async function failSignIn(address: string) {
    const browser = new HttpBrowser();
    const headers = { 'x-forwarded-for': address };
    const form = await browser.request(`${server.url}/login`, { headers });
    const email = `nobody.${randomBytes(4).toString('hex')}@example.com`;
    return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password: 'not the password' }, headers });
  }

  it('throttles sign-in failures from addresses of one /64 together, and no other /64', async () => {
    const network = aNetwork();
    for (const address of [`${network}::1`, `${network}:0:0:0:2`, anAddressIn(network)]) assert.equal((await failSignIn(address)).status, 401, address);
    const throttled = await failSignIn(anAddressIn(network));
    assert.equal(throttled.status, 429, 'a fresh address of the same /64 does not escape the limit');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
    assert.equal((await failSignIn(`${network.toUpperCase()}::ffff`)).status, 429, 'however it is written');
    assert.equal((await failSignIn(anAddressIn(aNetwork()))).status, 401, 'another /64 has its own budget');
  });

  it('throttles client-authentication failures of one client id from one /64 together, and records each full address', async () => {
    const network = aNetwork();
    const clientId = `app-${randomBytes(6).toString('hex')}`;
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: 'gate_cs_wrong' }).toString();
    const attempt = (address: string) =>
      sendRaw(server.url, {
        path: '/token',
        headers: { host: new URL(server.url).host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), 'x-forwarded-for': address },
        body,
      });
    const addresses = [anAddressIn(network), anAddressIn(network), anAddressIn(network)];
    for (const address of addresses) assert.equal((await attempt(address)).status, 401, address);
    assert.equal((await attempt(anAddressIn(network))).status, 429);
    assert.equal((await attempt(anAddressIn(aNetwork()))).status, 401, 'another /64 is not blocked');
    await server.gatehouse.audit.flush();
    const recorded = (await server.gatehouse.storage.audit.query({ kind: 'token.refused', clientId, limit: 1000 })).map((event) => event.data.address);
    for (const address of addresses) assert.ok(recorded.includes(address), `the audit log keeps ${address} as it came: ${JSON.stringify(recorded)}`);
  });

  it('counts accounts created from one /64 against one sign-up budget', async () => {
    const network = aNetwork();
    const signUp = async (address: string) => {
      const browser = new HttpBrowser();
      const headers = { 'x-forwarded-for': address };
      const form = await browser.request(`${server.url}/signup`, { headers });
      const email = `new.${randomBytes(6).toString('hex')}@example.com`;
      return browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'New person', password: 'a long enough password' }, headers });
    };
    await startOfWindowIfNear(3600);
    for (let i = 0; i < 2; i++) assert.equal((await signUp(anAddressIn(network))).status, 303);
    assert.equal((await signUp(anAddressIn(network))).status, 429);
    assert.equal((await signUp(anAddressIn(aNetwork()))).status, 303, 'another /64 has its own budget');
  });

  it('counts authorization requests left waiting from one /64 against one budget', async () => {
    const spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: ['https://app.example/callback'] });
    const network = aNetwork();
    const authorize = (address: string) => {
      const query = new URLSearchParams({
        response_type: 'code',
        client_id: spa.id,
        redirect_uri: 'https://app.example/callback',
        scope: 'openid',
        code_challenge: randomBytes(32).toString('base64url'),
        code_challenge_method: 'S256',
      });
      return new HttpBrowser().request(`${server.url}/authorize?${query}`, { headers: { 'x-forwarded-for': address } });
    };
    await startOfWindowIfNear(600);
    for (let i = 0; i < 2; i++) assert.match((await authorize(anAddressIn(network))).location ?? '', /^\/login\?request=/);
    assert.equal((await authorize(anAddressIn(network))).status, 429);
    assert.match((await authorize(anAddressIn(aNetwork()))).location ?? '', /^\/login\?request=/, 'another /64 has its own budget');
  });
});
