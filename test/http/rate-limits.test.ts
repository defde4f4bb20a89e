import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import pino from 'pino';
import { createClient as createRedisClient } from 'redis';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import type { FileConfig } from '../../src/core/config.ts';
import { withDeadline } from '../../src/core/deadline.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis.ts';
import { basic, freePort, post, startTestServer, type TestServer, type TestServerOptions } from '../support/server.ts';
import { startMailServer, type TestMailServer } from '../support/smtp.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const CALLBACK = 'https://app.example/callback';
/** The proxy in front passes on the browser's address (GATEHOUSE_TRUST_PROXY), so a test can come from several. */
const BEHIND_PROXY = { GATEHOUSE_TRUST_PROXY: 'true' };
/** An address of its own for each caller, so that budgets shared through Redis never carry over from an earlier run. */
const anAddress = (): string => `10.${[...randomBytes(3)].join('.')}`;

/** An authorization request of a public client (PKCE), from someone not signed in, as the browser at `address` sends it. */
function authorizeFrom(url: string, clientId: string, address: string, extra: Record<string, string> = {}) {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: CALLBACK,
    scope: 'openid',
    state: randomBytes(8).toString('hex'),
    code_challenge: randomBytes(32).toString('base64url'),
    code_challenge_method: 'S256',
    ...extra,
  });
  return new HttpBrowser().request(`${url}/authorize?${query}`, { headers: { 'x-forwarded-for': address } });
}

/**
 * Budgets and shared failure counts are kept per fixed window (epoch seconds ÷ window length): a
 * sequence that must fall in one window waits, if it would start in the last `marginSeconds` of
 * one, for the next, so that its count is not reset halfway by the clock.
 */
async function startOfWindowIfNear(windowSeconds: number, marginSeconds = 10): Promise<void> {
  const left = windowSeconds - ((Date.now() / 1000) % windowSeconds);
  if (left < marginSeconds) await sleep(left * 1000 + 50);
}

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
    await startOfWindowIfNear(60);
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

  it('throttles guessing a client secret at /introspect and /revoke too, sharing the one budget with /token', async () => {
    for (const path of ['/introspect', '/revoke']) {
      const other = await server.client({});
      const token = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(other.id, other.secret) } })).body.access_token as string;
      for (let i = 0; i < 2; i++) assert.equal((await post(`${server.url}${path}`, { token }, { headers: { authorization: basic(other.id, 'gate_cs_wrong') } })).status, 401, path);
      assert.equal((await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(other.id, 'gate_cs_wrong') } })).status, 401, path);
      for (const target of [path, '/token']) {
        const blocked = await post(`${server.url}${target}`, target === '/token' ? { grant_type: 'client_credentials' } : { token }, { headers: { authorization: basic(other.id, other.secret) } });
        assert.equal(blocked.status, 429, `${path}, then ${target}`);
        assert.equal(blocked.body.error, 'temporarily_unavailable');
      }
      // Blocked before anything was looked at: the token was not revoked.
      assert.equal(await server.gatehouse.storage.revocations.isJtiRevoked(decodeJwt(token).jti!), false, path);
    }
  });

  it('keys failures of an overlong client id by its first 256 characters, so none costs kilobytes of memory', async () => {
    const long = 'x'.repeat(256);
    const attempt = (suffix: string) => post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: `${long}${suffix}`, client_secret: 'gate_cs_wrong' });
    for (const suffix of ['a', 'b', 'c']) assert.equal((await attempt(suffix.repeat(7000))).status, 401);
    assert.equal((await attempt('d')).status, 429, 'one key for every id sharing those characters');
  });
});

describe('sign-in guesses sent all at once (in process)', () => {
  let server: TestServer;
  let client: { id: string; secret: string };
  const PASSWORD = 'the right password';

  before(async () => {
    server = await startTestServer('sqlite', { config: { login: { maxFailuresPerAccount: 5, maxFailuresPerAddress: 1000, windowSeconds: 60 } } });
    client = await server.client({ grantTypes: ['password'], scopes: ['objects:read'] });
  });
  after(() => server.close());

  const attempt = (username: string, password: string) =>
    post(`${server.url}/token`, { grant_type: 'password', username, password }, { headers: { authorization: basic(client.id, client.secret) } });

  it('checks no more guesses of an account than its limit, however many arrive together', async () => {
    const email = `${randomBytes(6).toString('hex')}@example.com`;
    await server.user(email, PASSWORD);
    await startOfWindowIfNear(60, 20);
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => attempt(email, `wrong ${i}`)));
    const statuses = answers.map((answer) => answer.status);
    assert.equal(statuses.filter((status) => status === 400).length, 5, 'five guesses checked');
    assert.equal(statuses.filter((status) => status === 429).length, 35, 'the others throttled');
    assert.equal((await attempt(email, PASSWORD)).status, 429, 'the account stays blocked for the window');
  });

  it('keys failures of an overlong email by its first 320 characters, so none costs kilobytes of memory', async () => {
    // No account has a longer email; without the bound every guess would keep its whole username
    // (8 KiB here, 64 KiB at the sign-in page) in the counter, and each new one a new key.
    const long = `${randomBytes(8).toString('hex')}${'x'.repeat(320)}`;
    for (let i = 0; i < 5; i++) assert.equal((await attempt(`${long}${String(i).repeat(7000)}@example.com`, 'wrong')).status, 400);
    assert.equal((await attempt(`${long}-another@example.com`, 'wrong')).status, 429, 'one key for every email sharing those characters');
  });

  it('lets correct sign-ins of one account sent together all through, more of them than the limit', async () => {
    const email = `${randomBytes(6).toString('hex')}@example.com`;
    await server.user(email, PASSWORD);
    const answers = await Promise.all(Array.from({ length: 12 }, () => attempt(email, PASSWORD)));
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array(12).fill(200),
    );
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

for (const dialect of DIALECTS) {
  describe(`authorization requests left waiting for a person, per address (${dialect})`, () => {
    let server: TestServer;
    let spa: { id: string; secret: string };

    before(async () => {
      server = await startTestServer(dialect, { env: BEHIND_PROXY, config: { rateLimits: { authorizationRequestsPerAddress: 3, windowSeconds: 60 } } });
      spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK] });
    });
    after(() => server.close());

    it('answers the 429 page with Retry-After past the budget of an address, stores nothing more, and serves other addresses', async () => {
      const address = anAddress();
      await startOfWindowIfNear(60);
      const stored = await countRows(server.database, 'authorization_requests');
      for (let i = 0; i < 3; i++) assert.match((await authorizeFrom(server.url, spa.id, address)).location ?? '', /^\/login\?request=/, 'sent to sign in');

      const throttled = await authorizeFrom(server.url, spa.id, address);
      assert.equal(throttled.status, 429);
      assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
      assert.equal(throttled.location, undefined);
      assert.match(throttled.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(throttled.text, /Too many sign-in requests/);
      // A form post too large to be sent again as a GET is answered as it came: throttled as well.
      const posted = await new HttpBrowser().request(`${server.url}/authorize`, {
        form: { response_type: 'code', client_id: spa.id, redirect_uri: CALLBACK, scope: 'openid', code_challenge: randomBytes(32).toString('base64url'), code_challenge_method: 'S256', padding: 'x'.repeat(9000) },
        headers: { 'x-forwarded-for': address },
      });
      assert.equal(posted.status, 429);
      assert.equal(await countRows(server.database, 'authorization_requests'), stored + 3, 'nothing stored past the budget');

      assert.match((await authorizeFrom(server.url, spa.id, anAddress())).location ?? '', /^\/login\?request=/, 'another address is not throttled');
      assert.equal(await countRows(server.database, 'authorization_requests'), stored + 4);
    });

    it('counts only the requests it stores: one refused at the redirect URI takes nothing from the budget', async () => {
      const address = anAddress();
      await startOfWindowIfNear(60);
      for (let i = 0; i < 5; i++) {
        const refused = await authorizeFrom(server.url, spa.id, address, { code_challenge_method: 'plain' });
        assert.equal(new URL(refused.location!).searchParams.get('error'), 'invalid_request');
      }
      for (let i = 0; i < 3; i++) assert.match((await authorizeFrom(server.url, spa.id, address)).location ?? '', /^\/login\?request=/);
      assert.equal((await authorizeFrom(server.url, spa.id, address)).status, 429);
    });
  });
}

/** Creates an account at /signup, as the browser at `address` does. */
async function signUpFrom(url: string, address: string, email: string, password = 'a long enough password') {
  const browser = new HttpBrowser();
  const headers = { 'x-forwarded-for': address };
  const form = await browser.request(`${url}/signup`, { headers });
  return browser.request(`${url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'New person', password }, headers });
}

for (const dialect of DIALECTS) {
  describe(`accounts created per address (${dialect})`, () => {
    let server: TestServer;
    const unique = () => `new.${randomBytes(6).toString('hex')}@example.com`;

    before(async () => {
      server = await startTestServer(dialect, { env: BEHIND_PROXY, config: { signup: { enabled: true, maxAccountsPerAddress: 2, windowSeconds: 3600 } } });
    });
    after(() => server.close());

    it('answers 429 with Retry-After once an address has created its budget of accounts, creates nothing more, and lets other addresses sign up', async () => {
      const address = anAddress();
      await startOfWindowIfNear(3600);
      for (let i = 0; i < 2; i++) assert.equal((await signUpFrom(server.url, address, unique())).status, 303, 'created and signed in');
      const [users, sessions] = [await countRows(server.database, 'users'), await countRows(server.database, 'sessions')];

      const email = unique();
      const throttled = await signUpFrom(server.url, address, email);
      assert.equal(throttled.status, 429);
      assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
      assert.match(throttled.text, /Too many accounts were created from your network/);
      assert.ok(!throttled.headers.getSetCookie().some((cookie) => cookie.startsWith('gatehouse_session=')), 'not signed in');
      assert.equal(await server.gatehouse.storage.users.findByEmail(email), undefined);
      assert.equal(await countRows(server.database, 'users'), users, 'no user stored');
      assert.equal(await countRows(server.database, 'sessions'), sessions, 'no session stored');

      assert.equal((await signUpFrom(server.url, anAddress(), email)).status, 303, 'another address is not throttled');
    });

    it('takes nothing from the budget for a form that cannot make an account', async () => {
      const address = anAddress();
      await startOfWindowIfNear(3600);
      for (let i = 0; i < 3; i++) assert.equal((await signUpFrom(server.url, address, unique(), 'short')).status, 400);
      for (let i = 0; i < 2; i++) assert.equal((await signUpFrom(server.url, address, unique())).status, 303);
      assert.equal((await signUpFrom(server.url, address, unique())).status, 429);
    });
  });
}

/** Two instances on one PostgreSQL database, sharing their limits through the Redis at `redisUrl`; `env` and `clock` for both. */
async function twoInstances(
  redisUrl: string,
  config: Partial<FileConfig>,
  options: Pick<TestServerOptions, 'env' | 'clock'> = {},
): Promise<{ first: TestServer; second: { url: string; gatehouse: Gatehouse }; close(): Promise<void> }> {
  const first = await startTestServer('postgres', { ...options, env: { REDIS_URL: redisUrl, ...BEHIND_PROXY, ...options.env }, config });
  const gatehouse = await createGatehouse({ ...first.config, port: await freePort() }, { logger: pino({ level: 'silent' }), ...(options.clock ? { clock: options.clock } : {}) });
  const app = buildApp(gatehouse);
  await app.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
  return {
    first,
    second: { url: `http://127.0.0.1:${gatehouse.config.port}`, gatehouse },
    async close() {
      await app.close();
      await gatehouse.close();
      await first.close();
    },
  };
}

describe('rate limits shared across instances through Redis', () => {
  let instances: Awaited<ReturnType<typeof twoInstances>>;
  const email = `${randomBytes(6).toString('hex')}@example.com`;
  let client: { id: string; secret: string };

  before(async () => {
    instances = await twoInstances(REDIS_URL, { login: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 60 }, rateLimits: { authorizationRequestsPerAddress: 3, windowSeconds: 60 }, signup: { enabled: true, maxAccountsPerAddress: 2 } });
    client = await instances.first.client({ grantTypes: ['password'], scopes: ['objects:read'] });
    await instances.first.user(email, 'the right password');
  });
  after(() => instances.close());

  it('counts the authorization requests an address leaves waiting on every instance', async () => {
    const { first, second } = instances;
    const spa = await first.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK] });
    const address = anAddress();
    await startOfWindowIfNear(60);
    for (const url of [first.url, second.url, first.url]) assert.match((await authorizeFrom(url, spa.id, address)).location ?? '', /^\/login\?request=/);
    const throttled = await authorizeFrom(second.url, spa.id, address);
    assert.equal(throttled.status, 429, 'the fourth request, on the other instance, is throttled');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
  });

  it('counts the accounts an address creates on every instance', async () => {
    const { first, second } = instances;
    const address = anAddress();
    const unique = () => `new.${randomBytes(6).toString('hex')}@example.com`;
    await startOfWindowIfNear(3600);
    assert.equal((await signUpFrom(first.url, address, unique())).status, 303);
    assert.equal((await signUpFrom(second.url, address, unique())).status, 303);
    const throttled = await signUpFrom(first.url, address, unique());
    assert.equal(throttled.status, 429, 'the third account, on the first instance again, is refused');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
  });

  it('counts failed sign-ins of one account on every instance', async () => {
    const { first, second } = instances;
    const attempt = (url: string, password: string) =>
      post(`${url}/token`, { grant_type: 'password', username: email, password }, { headers: { authorization: basic(client.id, client.secret) } });
    await startOfWindowIfNear(60);
    assert.equal((await attempt(first.url, 'wrong 1')).status, 400);
    assert.equal((await attempt(second.url, 'wrong 2')).status, 400);
    assert.equal((await attempt(first.url, 'wrong 3')).status, 400);
    const throttled = await attempt(second.url, 'the right password');
    assert.equal(throttled.status, 429, 'the fourth attempt, on the other instance, is throttled');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
  });

  it('gives every count it keeps in Redis an expiry: sign-ins, failed client authentications, the token budget', async () => {
    const { first, second } = instances;
    const someone = `${randomBytes(6).toString('hex')}@example.com`;
    await first.user(someone, 'the right password');
    const own = await first.client({ grantTypes: ['password', 'client_credentials'], scopes: ['objects:read'] });
    const address = anAddress();
    const request = (url: string, body: Record<string, string>, secret = own.secret) => post(`${url}/token`, body, { headers: { authorization: basic(own.id, secret), 'x-forwarded-for': address } });
    assert.equal((await request(first.url, { grant_type: 'password', username: someone, password: 'the right password' })).status, 200);
    assert.equal((await request(second.url, { grant_type: 'password', username: someone, password: 'wrong' })).status, 400);
    assert.equal((await request(first.url, { grant_type: 'client_credentials' }, 'gate_cs_wrong')).status, 401);
    assert.equal((await request(second.url, { grant_type: 'client_credentials' })).status, 200);

    const redis = createRedisClient({ url: REDIS_URL });
    await redis.connect();
    try {
      const ttls: Record<string, number> = {};
      for await (const keys of redis.scanIterator({ MATCH: 'gatehouse:*', COUNT: 1000 })) {
        for (const key of keys) if (key.includes(someone) || key.includes(own.id) || key.endsWith(`:${address}`)) ttls[key] = await redis.ttl(key);
      }
      const kinds = ['checking:login-account', 'checking:login-address', 'failures:login-account', 'failures:login-address', 'failures:client-auth', 'requests:token'];
      for (const kind of kinds) assert.ok(Object.keys(ttls).some((key) => key.startsWith(`gatehouse:${kind}:`)), `a ${kind} count among ${JSON.stringify(ttls)}`);
      assert.deepEqual(
        Object.entries(ttls).filter(([, ttl]) => ttl <= 0),
        [],
        'every count of the run expires',
      );
    } finally {
      redis.destroy();
    }
  });

  it('checks no more guesses of an account than its limit when they arrive together on every instance', async () => {
    const { first, second } = instances;
    const target = `${randomBytes(6).toString('hex')}@example.com`;
    await first.user(target, 'the right password');
    const attempt = (url: string, password: string) =>
      post(`${url}/token`, { grant_type: 'password', username: target, password }, { headers: { authorization: basic(client.id, client.secret) } });
    await startOfWindowIfNear(60, 20);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => attempt(i % 2 ? first.url : second.url, `wrong ${i}`)));
    const statuses = answers.map((answer) => answer.status);
    assert.equal(statuses.filter((status) => status === 400).length, 3, 'three guesses checked, across both instances');
    assert.equal(statuses.filter((status) => status === 429).length, 27);
  });

  it('lets correct sign-ins of one account sent together to every instance all through', async () => {
    const { first, second } = instances;
    const someone = `${randomBytes(6).toString('hex')}@example.com`;
    await first.user(someone, 'the right password');
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        post(`${i % 2 ? first.url : second.url}/token`, { grant_type: 'password', username: someone, password: 'the right password' }, { headers: { authorization: basic(client.id, client.secret) } }),
      ),
    );
    assert.deepEqual(
      answers.map((answer) => answer.status),
      Array(10).fill(200),
    );
  });
});

/**
 * The limits on links sent by email — password reset links asked for, email verification links sent
 * again — through Redis as in process. The same requests go to one instance counting in process and,
 * in turn, to two instances sharing Redis, at one frozen instant (so that Retry-After compares
 * exactly); the two instances must count them together, and answer what the one instance answers.
 */
describe('limits on links sent by email, shared across instances through Redis as in process', { timeout: 120_000 }, () => {
  const PASSWORD = 'correct horse battery staple';
  const LIMITS: Partial<FileConfig> = {
    passwordReset: { maxRequestsPerAccount: 2, maxRequestsPerAddress: 5, windowSeconds: 3600 },
    emailVerification: { maxRequestsPerAccount: 2, maxRequestsPerAddress: 3, windowSeconds: 3600 },
  };
  // Frozen, so one window holds every request; the keys in Redis are the run's own all the same, by
  // their fresh accounts, emails and addresses.
  const at = Math.floor(Date.now() / 1000);
  let mail: TestMailServer;
  let alone: TestServer;
  let shared: Awaited<ReturnType<typeof twoInstances>>;
  /** Where the requests go (two instances, or the one twice), what makes users there, and what waits for their mail. */
  interface Deployment {
    name: string;
    urls: [string, string];
    user(email: string): Promise<unknown>;
    settled(): Promise<void>;
  }
  const deployments: Deployment[] = [];

  before(async () => {
    mail = await startMailServer();
    const env = { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' };
    alone = await startTestServer('postgres', { env: { ...env, ...BEHIND_PROXY }, config: LIMITS, clock: () => at });
    shared = await twoInstances(REDIS_URL, LIMITS, { env, clock: () => at });
    const settled = (...gatehouses: Gatehouse[]) => async () => {
      for (const gatehouse of gatehouses) await Promise.all([gatehouse.passwordResets.settled(), gatehouse.emailVerifications.settled()]);
    };
    deployments.push(
      { name: 'in process', urls: [alone.url, alone.url], user: (email) => alone.user(email, PASSWORD), settled: settled(alone.gatehouse) },
      { name: 'through Redis', urls: [shared.first.url, shared.second.url], user: (email) => shared.first.user(email, PASSWORD), settled: settled(shared.first.gatehouse, shared.second.gatehouse) },
    );
  });
  after(async () => {
    await shared?.close();
    await alone?.close();
    await mail?.close();
  });

  const anEmail = (what: string) => `${what}.${randomBytes(6).toString('hex')}@example.com`;
  const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email)).length;
  /** What a person is answered: the status, where to, Retry-After and the message on the page. */
  const answerOf = (answer: { status: number; location?: string; headers: Headers; text: string }) => ({
    status: answer.status,
    location: answer.location ?? null,
    retryAfter: answer.headers.get('retry-after'),
    message: /role="alert"[^>]*>([^<]*)</.exec(answer.text)?.[1] ?? null,
  });
  /** Asks for a password reset link for `email` from the forgot-password page of `url`, as the browser at `address`. */
  const askForLink = async (url: string, address: string, email: string) => {
    const browser = new HttpBrowser();
    const headers = { 'x-forwarded-for': address };
    const form = await browser.request(`${url}/password/forgot`, { headers });
    return answerOf(await browser.request(`${url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email }, headers }));
  };
  /** Asks for the verification link again from the account page of `url`, as `browser` at `address`. */
  const resend = async (url: string, browser: HttpBrowser, address: string) => {
    const headers = { 'x-forwarded-for': address };
    const page = await browser.request(`${url}/account`, { headers });
    assert.equal(page.status, 200, page.text.slice(0, 300));
    return answerOf(await browser.request(`${url}/email/resend`, { form: { csrf: hiddenField(page.text, 'csrf') }, headers }));
  };
  /** Runs `scenario` on each deployment; what it saw, the same on both. */
  const onEach = async <T>(scenario: (deployment: Deployment) => Promise<T>): Promise<T> => {
    const [single, pair] = deployments as [Deployment, Deployment];
    const [inProcess, throughRedis] = [await scenario(single), await scenario(pair)];
    assert.deepEqual(throughRedis, inProcess, `${pair.name}, across two instances, the answers are those of one instance counting ${single.name}`);
    return inProcess;
  };
  const retryAfter = String(3600 - (at % 3600));

  it('counts the reset links asked for one account on every instance: one instance reaches the limit, the other refuses', async () => {
    const seen = await onEach(async ({ urls: [first, second], user, settled }) => {
      const email = anEmail('forgetful');
      await user(email);
      // Each from an address of its own: only the account's budget counts.
      const answers = [await askForLink(first, anAddress(), email), await askForLink(first, anAddress(), email.toUpperCase()), await askForLink(second, anAddress(), email), await askForLink(first, anAddress(), email)];
      await settled();
      return { answers, mails: mailsTo(email) };
    });
    const asked = { status: 303, location: '/password/sent', retryAfter: null, message: null };
    const refused = { status: 429, location: null, retryAfter, message: `Too many links were asked for. Try again in ${Math.ceil(Number(retryAfter) / 60)} minute(s).` };
    assert.deepEqual(seen, { answers: [asked, asked, refused, refused], mails: 2 });
  });

  it('counts the reset links asked from one address on every instance, for any account', async () => {
    const seen = await onEach(async ({ urls: [first, second], settled }) => {
      const address = anAddress();
      const answers = [];
      for (let i = 0; i < 7; i++) answers.push(await askForLink(i % 2 ? second : first, address, anEmail('nobody')));
      await settled();
      return answers.map((answer) => answer.status);
    });
    assert.deepEqual(seen, [303, 303, 303, 303, 303, 429, 429]);
  });

  it('counts the verification links an account has sent again on every instance: one instance reaches the limit, the other refuses', async () => {
    const seen = await onEach(async ({ urls: [first, second], user, settled }) => {
      const email = anEmail('unverified');
      await user(email);
      const browser = await signedInBrowser(first, email, PASSWORD);
      const answers = [await resend(first, browser, anAddress()), await resend(first, browser, anAddress()), await resend(second, browser, anAddress()), await resend(first, browser, anAddress())];
      await settled();
      return { answers, mails: mailsTo(email) };
    });
    const sent = { status: 303, location: '/account?sent=verification', retryAfter: null, message: null };
    const refused = {
      status: 429,
      location: null,
      retryAfter,
      message: `Too many links were asked for. Try again in ${Math.ceil(Number(retryAfter) / 60)} minute(s); the newest link we sent still works until it expires.`,
    };
    assert.deepEqual(seen, { answers: [sent, sent, refused, refused], mails: 2 });
  });

  it('counts the verification links sent again from one address on every instance, for any account', async () => {
    const seen = await onEach(async ({ urls: [first, second], user, settled }) => {
      const address = anAddress();
      const browsers = [];
      for (let i = 0; i < 3; i++) {
        const email = anEmail('unverified');
        await user(email);
        browsers.push({ email, browser: await signedInBrowser(first, email, PASSWORD) });
      }
      const answers = [];
      for (const [i, { browser }] of [...browsers, browsers[0]!, browsers[1]!].entries()) answers.push((await resend(i % 2 ? second : first, browser, address)).status);
      await settled();
      return { answers, mails: browsers.map(({ email }) => mailsTo(email)) };
    });
    assert.deepEqual(seen, { answers: [303, 303, 303, 429, 429], mails: [1, 1, 1] });
  });
});

describe('rate limits while Redis fails', { timeout: 120_000 }, () => {
  let redis: PrivateRedis;
  let instances: Awaited<ReturnType<typeof twoInstances>>;
  const PASSWORD = 'the right password';
  const settings: Partial<FileConfig> = {
    login: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 60 },
    // A budget this small leases one request at a time: every token request asks Redis.
    rateLimits: { tokenRequestsPerClient: 5, clientAuthFailures: 1000, windowSeconds: 60 },
    tokens: { clientCredentialsReuseSeconds: 0 },
  };

  before(async () => {
    redis = await startPrivateRedis();
    instances = await twoInstances(redis.url, settings);
  });
  after(async () => {
    await instances?.close();
    await redis?.stop();
  });

  // A hang fails the test instead of stalling it: no answer may wait on a Redis that is gone or stuck.
  const ANSWER_WITHIN_MS = 5_000;
  const signIn = (url: string, { email, client }: Account, password: string) =>
    post(`${url}/token`, { grant_type: 'password', username: email, password }, { headers: { authorization: basic(client.id, client.secret) }, signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  const clientCredentials = (url: string, client: { id: string; secret: string }) =>
    post(`${url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) }, signal: AbortSignal.timeout(ANSWER_WITHIN_MS) });
  /** A user, and a client of its own to sign in with (the token budget above counts per client). */
  interface Account {
    email: string;
    client: { id: string; secret: string };
  }
  const anAccount = async (): Promise<Account> => {
    const email = `${randomBytes(6).toString('hex')}@example.com`;
    await instances.first.user(email, PASSWORD);
    return { email, client: await instances.first.client({ grantTypes: ['password'], scopes: ['objects:read'] }) };
  };

  const withinMs = <T>(ms: number, what: string, promise: Promise<T>): Promise<T> => withDeadline(promise, ms, `${what} took longer than ${ms} ms`);

  /** Another instance starts, serves a throttled sign-in, and stops, without waiting on Redis. */
  async function assertStartsAndStops(): Promise<void> {
    const gatehouse = await withinMs(10_000, 'starting', createGatehouse({ ...instances.first.config, port: await freePort() }, { logger: pino({ level: 'silent' }) }));
    const app = buildApp(gatehouse);
    try {
      await app.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
      await assertSignInThrottledLocally(`http://127.0.0.1:${gatehouse.config.port}`);
    } finally {
      await app.close();
      await withinMs(10_000, 'stopping', gatehouse.close());
    }
  }

  /** Three failed sign-ins, then the right password: throttled on the instance that counted them. */
  async function assertSignInThrottledLocally(url: string): Promise<void> {
    const account = await anAccount();
    for (const wrong of ['wrong 1', 'wrong 2', 'wrong 3']) assert.equal((await signIn(url, account, wrong)).status, 400);
    const throttled = await signIn(url, account, PASSWORD);
    assert.equal(throttled.status, 429, 'failures are still counted, in the instance');
    assert.ok(Number(throttled.headers.get('retry-after')) >= 1);
  }

  /** Five token requests within the budget, then 429: the budget still holds, in the instance. */
  async function assertTokenBudgetHoldsLocally(url: string): Promise<void> {
    const client = await instances.first.client({});
    await startOfWindowIfNear(60);
    for (let i = 0; i < 5; i++) assert.equal((await clientCredentials(url, client)).status, 200);
    const limited = await clientCredentials(url, client);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error, 'temporarily_unavailable');
  }

  it('goes on throttling in each instance while Redis is down, and shares the counts again once it is back', async () => {
    await redis.kill();
    await assertSignInThrottledLocally(instances.first.url);
    await assertTokenBudgetHoldsLocally(instances.second.url);
    await assertStartsAndStops();

    await redis.restart();
    // Back by itself: failures on one instance count on the other again (within half a minute).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const account = await anAccount();
      const { first, second } = instances;
      for (const [url, wrong] of [[first.url, 'wrong 1'], [second.url, 'wrong 2'], [first.url, 'wrong 3']] as const) {
        assert.equal((await signIn(url, account, wrong)).status, 400);
      }
      if ((await signIn(second.url, account, PASSWORD)).status === 429) break;
      assert.ok(Date.now() < deadline, 'the instances share their counts again once Redis is back');
      await sleep(1_000);
    }
  });

  it('answers without waiting on a Redis that hangs, and goes on throttling in each instance', async () => {
    redis.freeze();
    try {
      await assertSignInThrottledLocally(instances.second.url);
      await assertTokenBudgetHoldsLocally(instances.first.url);
      await assertStartsAndStops();
    } finally {
      redis.thaw();
    }
  });
});
