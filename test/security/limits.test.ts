import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp, HTTP_LIMITS, type HttpLimits } from '../../src/http/app.ts';
import type { FastifyInstance } from 'fastify';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { sendRaw, type RawAnswer as Answer } from '../support/raw-http.ts';
import { basic, freePort, post, startTestServer, TEST_SECRET, type TestServer } from '../support/server.ts';

/*
 * Issue 6, "Abuse": limits on header and body size and on slow clients. A body over 64 KiB is
 * refused with 413 (an RFC 6749 error on the protocol endpoints, a readable page on the pages, a
 * problem on the admin API); headers over 16 KiB with 431; a client that sends its request too
 * slowly (slowloris) is cut off within the configured timeout while everyone else is served.
 */

const KIB = 1024;

/** Raw bytes over a socket; resolves with what came back once the server closes (or after `waitMs`). */
function rawExchange(url: string, payload: string | Buffer, waitMs = 5000): Promise<{ text: string; closedByServer: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    const received: Buffer[] = [];
    let closedByServer = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(received).toString('latin1'), closedByServer });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => (closedByServer = true));
    socket.on('close', () => {
      closedByServer = true;
      finish();
    });
    socket.on('error', finish);
    socket.on('connect', () => socket.write(payload));
  });
}

function assertRfcError(answer: Answer, status: number, label: string): any {
  assert.equal(answer.status, status, `${label}: ${answer.status} ${answer.text.slice(0, 200)}`);
  assert.match(String(answer.headers['content-type']), /^application\/json/, label);
  const body = JSON.parse(answer.text);
  assert.equal(body.error, 'invalid_request', label);
  assert.equal(typeof body.error_description, 'string', label);
  return body;
}

function assertPage(answer: Answer, status: number, label: string): void {
  assert.equal(answer.status, status, `${label}: ${answer.status} ${answer.text.slice(0, 200)}`);
  assert.match(String(answer.headers['content-type']), /^text\/html/, label);
  assert.match(answer.text, /<!doctype html>/i, label);
  assert.doesNotMatch(answer.text, /FST_ERR|node_modules|\n\s+at /, label);
}

describe('limits on body and header size', () => {
  let server: TestServer;
  let machine: { id: string; secret: string };
  let admin: { id: string; secret: string };
  let adminToken: string;
  let csrf: { cookie: string; token: string };

  before(async () => {
    server = await startTestServer('sqlite');
    machine = await server.client({ name: 'Limits machine', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
    admin = await server.client({ name: 'Limits back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
    adminToken = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } })).body.access_token;
    assert.ok(adminToken);
    const browser = new HttpBrowser();
    const page = await browser.request(`${server.url}/login`);
    csrf = { cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; '), token: hiddenField(page.text, 'csrf') };
  });
  after(() => server?.close());

  it('runs its HTTP server with the configured limits', () => {
    const http_ = server.app.server as http.Server & { maxHeaderSize?: number };
    assert.equal(http_.headersTimeout, HTTP_LIMITS.headersTimeoutMs);
    assert.equal(http_.requestTimeout, HTTP_LIMITS.requestTimeoutMs);
    assert.equal(http_.keepAliveTimeout, HTTP_LIMITS.keepAliveTimeoutMs);
    assert.equal(http_.timeout, HTTP_LIMITS.idleTimeoutMs);
    assert.equal(http_.maxHeaderSize, HTTP_LIMITS.maxHeaderSize);
    // Sane production values: a slowloris is cut within seconds, not minutes.
    assert.ok(HTTP_LIMITS.headersTimeoutMs <= 15_000 && HTTP_LIMITS.headersTimeoutMs <= HTTP_LIMITS.requestTimeoutMs);
    assert.ok(HTTP_LIMITS.timeoutCheckIntervalMs <= 2_000);
    assert.equal(HTTP_LIMITS.bodyLimit, 64 * KIB);
  });

  it('refuses a 70 KiB body at the token endpoint with 413 and an RFC 6749 error, form or JSON', async () => {
    const form = `grant_type=client_credentials&client_id=${machine.id}&client_secret=${machine.secret}&scope=${'a'.repeat(70 * KIB)}`;
    for (const path of ['/token', '/access_token']) {
      const answer = await sendRaw(server.url, { path, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) }, body: form });
      const body = assertRfcError(answer, 413, `form ${path}`);
      assert.match(body.error_description, /64 KiB/);
      assert.equal(answer.headers['cache-control'], 'no-store');
      assert.ok(!answer.text.includes(machine.secret));
    }
    const json = JSON.stringify({ grant_type: 'client_credentials', client_id: machine.id, client_secret: machine.secret, scope: 'b'.repeat(70 * KIB) });
    assertRfcError(await sendRaw(server.url, { path: '/token', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }, body: json }), 413, 'json');
    // Nothing was issued: the machine can still get a token normally.
    assert.equal((await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).status, 200);
  });

  it('refuses a 70 KiB body at the other protocol endpoints with 413 and an RFC error', async () => {
    const big = 'x'.repeat(70 * KIB);
    const form = `token=${big}`;
    for (const path of ['/introspect', '/revoke']) {
      assertRfcError(
        await sendRaw(server.url, { path, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': form.length, authorization: basic(machine.id, machine.secret) }, body: form }),
        413,
        path,
      );
    }
    const json = JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'], padding: big });
    const token = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).body.access_token;
    assertRfcError(
      await sendRaw(server.url, { path: '/projects/p1/access-tokens', headers: { 'content-type': 'application/json', 'content-length': json.length, authorization: `Bearer ${token}` }, body: json }),
      413,
      'project token',
    );
    const userinfo = `access_token=${big}`;
    const answer = await sendRaw(server.url, { path: '/userinfo', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': userinfo.length }, body: userinfo });
    assertRfcError(answer, 413, 'userinfo');
  });

  it('refuses a 70 KiB form on every page with a readable 413 page', async () => {
    const form = `csrf=${encodeURIComponent(csrf.token)}&email=a%40example.com&password=${'p'.repeat(70 * KIB)}`;
    for (const path of ['/login', '/signup', '/consent', '/logout', '/account/applications/withdraw', '/account/password', '/account/email', '/email/change', '/account/name', '/account/sign-out-elsewhere', '/authorize', '/developers/applications']) {
      const answer = await sendRaw(server.url, { path, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': form.length, cookie: csrf.cookie }, body: form });
      assertPage(answer, 413, path);
      assert.match(answer.text, /too large/, path);
      assert.match(String(answer.headers['content-security-policy']), /frame-ancestors 'none'/, path);
    }
  });

  it('refuses a 70 KiB body on the admin API with a 413 problem', async () => {
    const json = JSON.stringify({ name: 'n'.repeat(70 * KIB), type: 'confidential', grant_types: ['client_credentials'], scopes: ['objects:read'] });
    const answer = await sendRaw(server.url, { path: '/admin/v1/clients', headers: { 'content-type': 'application/json', 'content-length': json.length, authorization: `Bearer ${adminToken}` }, body: json });
    assert.equal(answer.status, 413, answer.text.slice(0, 200));
    assert.match(String(answer.headers['content-type']), /^application\/problem\+json/);
    assert.equal(JSON.parse(answer.text).status, 413);
  });

  it('refuses a declared Content-Length over the limit before reading the body', async () => {
    const started = Date.now();
    // Headers only: the body of 10 MB never comes, and the server does not wait for it.
    const { text, closedByServer } = await rawExchange(
      server.url,
      `POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${10 * 1024 * KIB}\r\nConnection: close\r\n\r\ngrant_type=`,
    );
    assert.match(text, /^HTTP\/1\.1 413 /, text.slice(0, 200));
    assert.match(text, /"error":"invalid_request"/);
    assert.ok(closedByServer);
    assert.ok(Date.now() - started < 3000, 'answered at once');
  });

  it('refuses headers over 16 KiB with 431 and closes the connection', async () => {
    for (const path of ['/token', '/userinfo', '/admin/v1/clients']) {
      const { text, closedByServer } = await rawExchange(server.url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: junk=${'c'.repeat(17 * KIB)}\r\n\r\n`);
      assert.match(text, /^HTTP\/1\.1 431 /, `${path}: ${text.slice(0, 120)}`);
      const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
      assert.deepEqual(Object.keys(body), ['error', 'error_description']);
      assert.equal(body.error, 'invalid_request');
      assert.ok(closedByServer, path);
    }
    // Many headers that add up to more than the limit are refused the same way.
    const many = Array.from({ length: 400 }, (_, i) => `X-Filler-${i}: ${'f'.repeat(40)}\r\n`).join('');
    const { text } = await rawExchange(server.url, `POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}Content-Length: 0\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 431 /);
    // An Authorization header carrying a secret does not come back in the answer.
    const withSecret = await rawExchange(server.url, `POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic(machine.id, machine.secret)}\r\nX-Pad: ${'p'.repeat(17 * KIB)}\r\n\r\n`);
    assert.match(withSecret.text, /^HTTP\/1\.1 431 /);
    assert.ok(!withSecret.text.includes(machine.secret) && !withSecret.text.includes(basic(machine.id, machine.secret).slice(6)));
  });

  it('answers an address or headers over 16 KiB under a page path with a readable 431 page and the pages\' security headers; the protocol endpoints and the admin API keep their JSON', async () => {
    /** The status line, headers and body of a raw answer. */
    const parse = (text: string) => {
      const [head, ...rest] = text.split('\r\n\r\n');
      const [statusLine, ...lines] = head!.split('\r\n');
      const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
      return { statusLine: statusLine!, headers, body: rest.join('\r\n\r\n') };
    };
    const long = 'a'.repeat(100 * KIB);
    const cookie = `Cookie: junk=${'c'.repeat(17 * KIB)}\r\n`;
    const pages: [string, string][] = [
      [`/authorize?response_type=code&client_id=x&state=${long}`, ''],
      [`/login?next=${long}`, ''],
      [`/signup?${long}`, ''],
      [`/consent?request=${long}`, ''],
      [`/account?${long}`, ''],
      [`/logout?state=${long}`, ''],
      [`/developers/applications/app_x?${long}`, ''],
      [`/developers?${long}`, ''],
      ['/login', cookie],
      ['/developers', cookie],
    ];
    for (const [path, extra] of pages) {
      const label = `${path.slice(0, 40)}${extra ? ' with oversized cookies' : ''}`;
      const { text } = await rawExchange(server.url, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`);
      const answer = parse(text);
      assert.match(answer.statusLine, /^HTTP\/1\.1 431 /, `${label}: ${text.slice(0, 200)}`);
      assert.match(answer.headers['content-type'] ?? '', /^text\/html/, label);
      assert.match(answer.body, /<!doctype html>/i, label);
      assert.match(answer.body, /Request too large/, label);
      assert.match(answer.body, /longer than this server accepts \(16 KiB\)/, label);
      assert.doesNotMatch(answer.body, /aaaaaaaaaa|cccccccccc/, `${label}: nothing sent is echoed`);
      assert.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body, 'latin1'), label);
      assert.match(answer.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/, label);
      assert.equal(answer.headers['x-frame-options'], 'DENY', label);
      assert.equal(answer.headers['cache-control'], 'no-store', label);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff', label);
      assert.equal(answer.headers.connection, 'close', label);
    }
    const endpoints: [string, string][] = [
      ['POST', `/token?${long}`],
      ['POST', `/introspect?${long}`],
      ['POST', `/revoke?${long}`],
      ['GET', `/userinfo?${long}`],
      ['GET', `/.well-known/openid-configuration?${long}`],
      ['GET', `/admin/v1/clients?${long}`],
    ];
    for (const [method, path] of endpoints) {
      const { text } = await rawExchange(server.url, `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`);
      const answer = parse(text);
      assert.match(answer.statusLine, /^HTTP\/1\.1 431 /, `${path.slice(0, 30)}: ${text.slice(0, 200)}`);
      assert.match(answer.headers['content-type'] ?? '', /^application\/json/, path.slice(0, 30));
      const body = JSON.parse(answer.body);
      assert.equal(body.error, 'invalid_request');
      assert.match(body.error_description, /too large \(at most 16 KiB\)/);
    }
  });

  it('accepts headers under the limit as usual', async () => {
    const answer = await sendRaw(server.url, { method: 'POST', path: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-pad': 'p'.repeat(12 * KIB), authorization: basic(machine.id, machine.secret) }, body: 'grant_type=client_credentials' });
    assert.equal(answer.status, 200, answer.text);
  });

  it('refuses a path parameter over the length limit in the format of the part of the server addressed', async () => {
    const long = 'p'.repeat(HTTP_LIMITS.maxParamLength + 50);
    const token = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).body.access_token;
    const json = JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] });
    const project = await sendRaw(server.url, { path: `/projects/${long}/access-tokens`, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: json });
    const body = assertRfcError(project, 414, 'project');
    assert.doesNotMatch(project.text, /FST_ERR/);
    assert.ok(body.error_description.length < 100, 'the path is not echoed');

    const page = await sendRaw(server.url, { method: 'GET', path: `/developers/applications/${long}`, headers: {} });
    assertPage(page, 404, 'portal');

    const problem = await sendRaw(server.url, { method: 'GET', path: `/admin/v1/clients/${long}`, headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(problem.status, 400, problem.text);
    assert.match(String(problem.headers['content-type']), /^application\/problem\+json/);

    // Malformed percent-encoding in a path parameter.
    const bad = await sendRaw(server.url, { path: '/projects/%E0%A4%A/access-tokens', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: json });
    assertRfcError(bad, 400, 'bad url');
  });

  it('answers a malformed percent-encoding in the path of a page with an error page and the pages\' security headers', async () => {
    for (const path of ['/authorize%ff', '/login%E0%A4%A', '/consent%zz?request=x', '/account/%ff']) {
      const page = await sendRaw(server.url, { method: 'GET', path, headers: {} });
      assertPage(page, 400, path);
      assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/, path);
      assert.equal(page.headers['x-frame-options'], 'DENY', path);
      assert.equal(page.headers['cache-control'], 'no-store', path);
    }
    assertRfcError(await sendRaw(server.url, { method: 'POST', path: '/token%ff', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }), 400, 'token endpoint');
  });
});

/** A server of its own with short timeouts, so that the slow clients below are cut within seconds. */
async function startShortTimeoutServer(limits: Partial<HttpLimits>): Promise<{ url: string; gatehouse: Gatehouse; app: FastifyInstance; database: TestDatabase; close(): Promise<void> }> {
  const database = await createTestDatabase('sqlite');
  const port = await freePort();
  const config = loadConfig({ PORT: String(port), GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_SECRET: TEST_SECRET });
  const gatehouse = await createGatehouse(config, { logger: pino({ level: 'silent' }) });
  const app = buildApp(gatehouse, { limits });
  await app.listen({ port, host: '127.0.0.1' });
  return {
    url: `http://127.0.0.1:${port}`,
    gatehouse,
    app,
    database,
    async close() {
      await app.close();
      await gatehouse.close();
      await database.drop();
    },
  };
}

interface SlowResult {
  /** When the server closed the connection, in ms after it was opened; undefined if the client gave up first. */
  closedAfterMs: number | undefined;
  bytesSent: number;
  received: string;
}

/**
 * A slow client: writes `payload` one byte every `intervalMs`, for at most `giveUpMs`. Bounded:
 * the client always stops by itself.
 */
function slowClient(url: string, payload: string, intervalMs: number, giveUpMs: number): Promise<SlowResult> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const opened = Date.now();
    const socket = net.connect({ host: hostname, port: Number(port) });
    const received: Buffer[] = [];
    let sent = 0;
    let closedAfterMs: number | undefined;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(ticker);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ closedAfterMs, bytesSent: sent, received: Buffer.concat(received).toString('latin1') });
    };
    const ticker = setInterval(() => {
      if (sent < payload.length && socket.writable) socket.write(payload[sent++]!);
    }, intervalMs);
    const giveUp = setTimeout(finish, giveUpMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('close', () => {
      closedAfterMs = Date.now() - opened;
      finish();
    });
    socket.on('error', () => {
      closedAfterMs ??= Date.now() - opened;
      finish();
    });
  });
}

describe('slow clients', () => {
  const limits = { headersTimeoutMs: 1500, requestTimeoutMs: 3000, timeoutCheckIntervalMs: 250 };
  let server: Awaited<ReturnType<typeof startShortTimeoutServer>>;
  let machine: { id: string; secret: string };

  before(async () => {
    server = await startShortTimeoutServer(limits);
    const { createClient } = await import('../../src/core/applications.ts');
    const { client, secret } = await createClient(server.gatehouse, { name: 'Patient machine', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'] }, server.gatehouse.clock());
    machine = { id: client.id, secret: secret! };
  });
  after(() => server?.close());

  it('cuts off clients that send their headers byte by byte (slowloris) within the headers timeout, serving everyone else meanwhile', async () => {
    // Headers long enough that, at one byte every 100 ms, they would take over a minute to arrive.
    const payload = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ${'slow'.repeat(200)}\r\n\r\n`;
    const attackers = Array.from({ length: 30 }, () => slowClient(server.url, payload, 100, 10_000));

    // Meanwhile, ordinary requests are answered promptly, one after another.
    const latencies: number[] = [];
    const deadline = Date.now() + 2500;
    while (Date.now() < deadline) {
      const started = Date.now();
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } });
      assert.equal(res.status, 200);
      latencies.push(Date.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const results = await Promise.all(attackers);
    for (const result of results) {
      assert.ok(result.closedAfterMs !== undefined, `a slow client was never disconnected (sent ${result.bytesSent} bytes)`);
      // Cut after the headers timeout (plus one check interval and some slack), never before it.
      assert.ok(result.closedAfterMs >= limits.headersTimeoutMs - 100, `disconnected too early: ${result.closedAfterMs} ms`);
      assert.ok(result.closedAfterMs <= limits.headersTimeoutMs + limits.timeoutCheckIntervalMs + 2000, `disconnected late: ${result.closedAfterMs} ms`);
      assert.ok(result.bytesSent < payload.length, 'the headers were never complete');
      assert.match(result.received, /^HTTP\/1\.1 408 /);
      assert.match(result.received, /"error":"invalid_request"/);
    }
    assert.ok(latencies.length >= 5, `only ${latencies.length} requests were answered while the slow clients were connected`);
    const slowest = Math.max(...latencies);
    assert.ok(slowest < 2000, `a request took ${slowest} ms while slow clients were connected`);
  });

  it('cuts off a client that trickles its body within the request timeout', async () => {
    const head = `POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: ${basic(machine.id, machine.secret)}\r\nContent-Length: 400\r\n\r\n`;
    const { hostname, port } = new URL(server.url);
    const started = Date.now();
    const result = await new Promise<SlowResult>((resolve) => {
      const socket = net.connect({ host: hostname, port: Number(port) }, () => socket.write(head));
      const received: Buffer[] = [];
      let sent = 0;
      const ticker = setInterval(() => {
        if (sent < 399 && socket.writable) socket.write('a', () => sent++);
      }, 100);
      const finish = (closedAfterMs: number | undefined) => {
        clearInterval(ticker);
        clearTimeout(giveUp);
        socket.destroy();
        resolve({ closedAfterMs, bytesSent: sent, received: Buffer.concat(received).toString('latin1') });
      };
      const giveUp = setTimeout(() => finish(undefined), 10_000);
      socket.on('data', (d: Buffer) => received.push(d));
      socket.on('close', () => finish(Date.now() - started));
      socket.on('error', () => finish(Date.now() - started));
    });
    assert.ok(result.closedAfterMs !== undefined, 'the slow body was never cut off');
    assert.ok(result.closedAfterMs >= limits.requestTimeoutMs - 100 && result.closedAfterMs <= limits.requestTimeoutMs + limits.timeoutCheckIntervalMs + 2000, `${result.closedAfterMs} ms`);
    assert.match(result.received, /^HTTP\/1\.1 408 /);
  });

  it('cuts off a connection that never sends a byte', async () => {
    const result = await slowClient(server.url, '', 100, 10_000);
    assert.ok(result.closedAfterMs !== undefined && result.closedAfterMs <= limits.headersTimeoutMs + limits.timeoutCheckIntervalMs + 2000, `${result.closedAfterMs}`);
  });

  it('keeps an idle keep-alive connection between two requests open past the headers timeout', async () => {
    // The headers timeout applies to a request being received, not to a browser's idle keep-alive connection.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = () =>
        new Promise<{ status: number; socketReused: boolean }>((resolve, reject) => {
          const request = http.get(`${server.url}/healthz`, { agent }, (response) => {
            response.resume();
            response.on('end', () => resolve({ status: response.statusCode ?? 0, socketReused: request.reusedSocket }));
          });
          request.on('error', reject);
        });
      assert.equal((await get()).status, 200);
      await new Promise((resolve) => setTimeout(resolve, limits.headersTimeoutMs + limits.timeoutCheckIntervalMs + 500));
      const second = await get();
      assert.equal(second.status, 200);
      assert.equal(second.socketReused, true);
    } finally {
      agent.destroy();
    }
  });
});
