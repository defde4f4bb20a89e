import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { writeConfig } from '../cli/support.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';
import { basic, createFixtures, freePort, PASSWORD, replacementOf, requestAndFindOwner, sleep, waitFor, type Fixtures, type Instance, startInstance, tally, workerTracker } from './support.ts';

const MAX_FAILURES_PER_ACCOUNT = 4;
const CLIENT_AUTH_FAILURES = 4;
const TOKEN_REQUESTS_PER_CLIENT = 20;

/**
 * `gatehouse serve --workers 2` without Redis: the security limits and the token budget per client
 * hold for the whole server, not per worker. Every request goes on a connection of its own, which
 * the kernel hands to either worker; which one served it is read from /proc, and each test checks
 * that both did.
 */
describe('serve --workers 2 without Redis: the limits hold across the workers', { timeout: 120_000 }, () => {
  const cluster = workersWithoutRedis({
    login: { maxFailuresPerAccount: MAX_FAILURES_PER_ACCOUNT, maxFailuresPerAddress: 1000, windowSeconds: 600 },
    rateLimits: { clientAuthFailures: CLIENT_AUTH_FAILURES, windowSeconds: 600 },
  });
  const { workers, tokenRequest } = cluster;
  let primary: Instance;
  let fixtures: Fixtures;
  before(() => {
    primary = cluster.primary;
    fixtures = cluster.fixtures;
  });

  it('refuses sign-ins of an account after login.maxFailuresPerAccount failures in all, whichever worker counted them', async () => {
    const { firstParty } = fixtures;
    const email = fixtures.users[0]!.email;
    const signIn = (password: string) => tokenRequest(firstParty.id, firstParty.secret, { grant_type: 'password', username: email, password, scope: 'objects:read' });
    const failures = [];
    for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) failures.push(await signIn(`wrong ${i}`));
    assert.deepEqual(
      failures.map((f) => f.error),
      Array(MAX_FAILURES_PER_ACCOUNT).fill('invalid_grant'),
    );
    assert.deepEqual(new Set(failures.map((f) => f.owner)), new Set(workers()), 'both workers counted failures');
    // Enough connections that both workers answer; none of them may check the password again.
    const refusals = [];
    for (let i = 0; i < 8; i++) refusals.push(await signIn(i % 2 ? PASSWORD : `wrong again ${i}`));
    assert.deepEqual(new Set([...failures, ...refusals].map((r) => r.owner)), new Set(workers()), 'both workers answered');
    for (const refusal of refusals) assert.equal(refusal.status, 429, `refused by worker ${refusal.owner}: ${JSON.stringify(refusals)}`);
    // Another account is not blocked.
    const other = await tokenRequest(firstParty.id, firstParty.secret, { grant_type: 'password', username: fixtures.users[1]!.email, password: PASSWORD, scope: 'objects:read' });
    assert.equal(other.status, 200);
  });

  it('refuses a client after rateLimits.clientAuthFailures failed authentications in all, on both workers, the correct secret too', async () => {
    const { machine } = fixtures;
    const form = { grant_type: 'client_credentials', scope: 'objects:read' };
    const failures = [];
    for (let i = 0; i < CLIENT_AUTH_FAILURES; i++) failures.push(await tokenRequest(machine.id, `wrong-${i}`, form));
    assert.deepEqual(
      failures.map((f) => f.status),
      Array(CLIENT_AUTH_FAILURES).fill(401),
    );
    assert.deepEqual(new Set(failures.map((f) => f.owner)), new Set(workers()), 'both workers counted failures');
    const refusals = [];
    for (let i = 0; i < 8; i++) refusals.push(await tokenRequest(machine.id, i % 2 ? machine.secret : 'wrong-again', form));
    assert.deepEqual(new Set([...failures, ...refusals].map((r) => r.owner)), new Set(workers()), 'both workers answered');
    for (const refusal of refusals) assert.equal(refusal.status, 429, `refused by worker ${refusal.owner}: ${JSON.stringify(refusals)}`);
  });

  it('a worker started in place of one that died refuses what the others refuse', async () => {
    const { machine } = fixtures;
    const { pids, answers } = await replaceAWorker(workers, () => tokenRequest(machine.id, machine.secret, { grant_type: 'client_credentials', scope: 'objects:read' }));
    assert.deepEqual(new Set(answers.map((a) => a.owner)), new Set(pids));
    for (const answer of answers) assert.equal(answer.status, 429, `worker ${answer.owner}: ${JSON.stringify(answers)}`);
  });

  it('gives back the sign-ins a worker was checking when it dies: the account is not held for good', async () => {
    const { firstParty } = fixtures;
    const email = fixtures.users[3]!.email;
    const signIn = () => tokenRequest(firstParty.id, firstParty.secret, { grant_type: 'password', username: email, password: PASSWORD, scope: 'objects:read' });
    // Only login.maxFailuresPerAccount sign-ins of an account are checked at once: many sent
    // together, and a worker killed while it checks some of them, whose places it never gives back.
    const [victim, survivor] = workers() as [number, number];
    const together = Array.from({ length: 24 }, () => signIn().catch((error: Error) => ({ status: 0, error: error.message, owner: 0 })));
    await new Promise((resolve) => setTimeout(resolve, 40));
    process.kill(victim, 'SIGKILL');
    const answers = await Promise.all(together);
    assert.ok(
      answers.some((a) => a.status === 0),
      `some sign-ins were cut off by the kill: ${JSON.stringify(answers)}`,
    );
    await replacementOf(workers, victim, survivor);
    // Each worker signs the account in, the replacement once it listens: nothing holds its places.
    const after = await untilBothAnswer(signIn);
    for (const answer of after) assert.equal(answer.status, 200, JSON.stringify(after));
  });

  it('answers sign-ins when the primary does not answer: the worker counts them itself meanwhile', async () => {
    const { firstParty } = fixtures;
    const email = fixtures.users[2]!.email;
    // A connection held open to one worker: the primary hands out new connections, and it is stopped.
    const connection = await keepAlive(primary.port);
    const signIn = (password: string) =>
      connection.send('/token', basic(firstParty.id, firstParty.secret), new URLSearchParams({ grant_type: 'password', username: email, password, scope: 'objects:read' }).toString());
    // Answered by a worker before the primary stops: the primary has handed the connection over.
    assert.equal((await connection.send('/healthz', 'Basic Og==', '')).status >= 400, true);
    process.kill(primary.pid, 'SIGSTOP');
    try {
      const answers = [];
      for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT + 1; i++) answers.push(await signIn(`wrong ${i}`));
      // The first waits for the primary's deadline; the limit still holds, in this worker.
      assert.deepEqual(
        answers.map((a) => a.status),
        [...Array(MAX_FAILURES_PER_ACCOUNT).fill(400), 429],
      );
      assert.ok(answers.slice(1).every((a) => a.ms < 1_000), `after the first, no sign-in waits for the primary: ${JSON.stringify(answers.map((a) => a.ms))}`);
    } finally {
      process.kill(primary.pid, 'SIGCONT');
    }
    connection.close();
    assert.match(primary.stdout(), /the primary process does not answer: rate limits are counted in each worker until it does/);
    // The primary serves again.
    const { machine } = fixtures;
    const answer = await tokenRequest(machine.id, `wrong-after`, { grant_type: 'client_credentials', scope: 'objects:read' });
    assert.equal(answer.status, 429, 'the client blocked before is blocked still');
  });
});

describe('serve --workers 2 without Redis: the token budget per client holds across the workers', { timeout: 120_000 }, () => {
  // An hour's window, and both tests in one: budgets are counted per fixed window (epoch seconds ÷
  // its length), and a count reset halfway by the clock would grant a second budget.
  const WINDOW_SECONDS = 3600;
  const cluster = workersWithoutRedis({ rateLimits: { tokenRequestsPerClient: TOKEN_REQUESTS_PER_CLIENT, windowSeconds: WINDOW_SECONDS } });
  const { workers, tokenRequest } = cluster;
  const clientCredentials = () => tokenRequest(cluster.fixtures.machine.id, cluster.fixtures.machine.secret, { grant_type: 'client_credentials', scope: 'objects:read' });

  it('grants a client rateLimits.tokenRequestsPerClient token requests in all, whichever worker serves them, then 429 with Retry-After', async () => {
    const left = WINDOW_SECONDS - ((Date.now() / 1000) % WINDOW_SECONDS);
    if (left < 60) await sleep(left * 1000 + 50);
    // Twice the budget, one connection each: served by both workers in turn, each of which would
    // grant the whole budget if it counted on its own.
    const answers = [];
    for (let i = 0; i < 2 * TOKEN_REQUESTS_PER_CLIENT; i++) answers.push(await clientCredentials());
    assert.deepEqual(tally(answers, (a) => a.status), { 200: TOKEN_REQUESTS_PER_CLIENT, 429: TOKEN_REQUESTS_PER_CLIENT }, JSON.stringify(answers.map((a) => [a.status, a.owner])));
    const granted = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 429);
    assert.deepEqual(new Set(granted.map((a) => a.owner)), new Set(workers()), 'both workers granted requests from the one budget');
    assert.deepEqual(new Set(refused.map((a) => a.owner)), new Set(workers()), 'both workers refused once it was spent');
    for (const refusal of refused) {
      assert.equal(refusal.error, 'temporarily_unavailable');
      const retryAfter = Number(refusal.retryAfter);
      assert.ok(retryAfter >= 1 && retryAfter <= WINDOW_SECONDS, `Retry-After within the window: ${refusal.retryAfter}`);
    }
    // Another client has a budget of its own.
    const { firstParty, users } = cluster.fixtures;
    const other = await tokenRequest(firstParty.id, firstParty.secret, { grant_type: 'password', username: users[0]!.email, password: PASSWORD, scope: 'objects:read' });
    assert.equal(other.status, 200);
  });

  it('a worker started in place of one that died grants nothing of a budget spent already', async () => {
    const { pids, answers } = await replaceAWorker(workers, clientCredentials);
    assert.deepEqual(new Set(answers.map((a) => a.owner)), new Set(pids));
    for (const answer of answers) assert.equal(answer.status, 429, `worker ${answer.owner}: ${JSON.stringify(answers)}`);
  });
});

/**
 * `gatehouse serve --workers 2` on SQLite without Redis, with `settings` in its configuration file,
 * started before the tests of the describe it is called in and stopped after them; `primary` and
 * `fixtures` are there once it started.
 */
function workersWithoutRedis(settings: Record<string, Record<string, unknown>>) {
  let database: TestDatabase | undefined;
  const cluster = {
    primary: undefined as unknown as Instance,
    fixtures: undefined as unknown as Fixtures,
    workers: () => tracker.current(),
    /** A token request on a connection of its own: its status, error, Retry-After and the worker that served it. */
    async tokenRequest(clientId: string, secret: string, form: Record<string, string>) {
      const body = new URLSearchParams(form).toString();
      const headers = { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(clientId, secret) };
      const answer = await requestAndFindOwner(cluster.primary.port, { method: 'POST', path: '/token', headers, body }, cluster.workers());
      assert.ok(answer.owner !== undefined, 'a worker served the connection');
      return { status: answer.status, error: (JSON.parse(answer.body) as { error?: string }).error, retryAfter: answer.headers['retry-after'], owner: answer.owner };
    },
  };
  const tracker = workerTracker(() => cluster.primary.pid);

  before(async () => {
    database = await createTestDatabase('sqlite');
    const port = await freePort();
    const config = writeConfig(database.dataDir, settings);
    const env = { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_CONFIG: config };
    cluster.fixtures = await createFixtures(env, 4);
    cluster.primary = await startInstance('primary', env, { port, args: ['--workers', '2'] });
    await waitFor('two workers', async () => (cluster.workers().length === 2 ? true : undefined), 10_000);
  });

  after(async () => {
    await cluster.primary?.stop();
    tracker.killAll();
    await database?.drop();
  });

  return cluster;
}

/** A keep-alive HTTP/1.1 connection: requests one after the other, each answer with its status and how long it took. */
async function keepAlive(port: number): Promise<{ send(path: string, authorization: string, body: string): Promise<{ status: number; ms: number }>; close(): void }> {
  const socket: Socket = connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.setEncoding('utf8');
  let data = '';
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk: string) => {
    data += chunk;
    waiting?.();
  });
  return {
    async send(path, authorization, body) {
      const startedAt = Date.now();
      data = '';
      socket.write(
        `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: keep-alive\r\ncontent-type: application/x-www-form-urlencoded\r\n` +
          `authorization: ${authorization}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      for (;;) {
        const headerEnd = data.indexOf('\r\n\r\n');
        const length = headerEnd === -1 ? -1 : Number(/content-length: (\d+)/i.exec(data.slice(0, headerEnd))?.[1] ?? 0);
        if (headerEnd !== -1 && Buffer.byteLength(data) >= Buffer.byteLength(data.slice(0, headerEnd + 4)) + length) break;
        await Promise.race([
          new Promise<void>((resolve) => (waiting = resolve)),
          new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`no answer to POST ${path} within 10 s: ${data}`)), 10_000).unref()),
        ]);
      }
      return { status: Number(data.slice(9, 12)), ms: Date.now() - startedAt };
    },
    close: () => socket.destroy(),
  };
}

/**
 * Kills one of the two workers with SIGKILL and waits until the primary has started another in its
 * place, then sends `request` until both workers have answered: the workers' pids and those answers.
 */
async function replaceAWorker<Answer extends { owner: number | undefined }>(workers: () => number[], request: () => Promise<Answer>): Promise<{ pids: number[]; answers: Answer[] }> {
  const [victim, survivor] = workers() as [number, number];
  process.kill(victim, 'SIGKILL');
  const pids = await replacementOf(workers, victim, survivor);
  return { pids, answers: await untilBothAnswer(request) };
}

/**
 * Six of `request` (each on a connection of its own), again until both workers answered some: a
 * worker just started takes connections only once it listens.
 */
function untilBothAnswer<Answer extends { owner: number | undefined }>(request: () => Promise<Answer>): Promise<Answer[]> {
  return waitFor(
    'both workers to answer',
    async () => {
      const seen = [];
      for (let i = 0; i < 6; i++) seen.push(await request());
      return new Set(seen.map((s) => s.owner)).size === 2 ? seen : undefined;
    },
    20_000,
    200,
  );
}
