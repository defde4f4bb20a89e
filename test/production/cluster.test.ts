import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { cliJson, spawnGatehouse } from '../cli/support.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { SERVER_NODE_OPTIONS } from '../../src/cli/runtime.ts';
import { TEST_SECRET } from '../support/server.ts';
import {
  assertOAuthError,
  authorizationCode,
  basic,
  childrenOf,
  clientCredentials,
  createFixtures,
  exchangeCode,
  freePort,
  introspect,
  metricValue,
  passwordGrant,
  post,
  refreshGrant,
  replacementOf,
  REQUEST_TIMEOUT_MS,
  requestAndFindOwner,
  sleep,
  startInstance,
  startNginx,
  tally,
  upstreamOf,
  waitFor,
  workerTracker,
  type Answer,
  type Fixtures,
  type Instance,
  type Nginx,
  type Step,
} from './support.ts';

/**
 * Gatehouse as it runs in production on many machines: three `gatehouse serve` processes on one
 * PostgreSQL database, behind a real nginx doing round robin, with the load balancer's address as
 * the issuer. nginx tags every answer with the instance that served it (X-Upstream), so each test
 * knows where each request landed, and the instances' own /metrics confirm it.
 */
describe('three instances on one PostgreSQL behind nginx', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let nginx: Nginx;
  let instances: Instance[] = [];
  let fixtures: Fixtures;
  /** What the instances were started with, for fixtures made later on their database. */
  let env: Record<string, string>;
  /** `127.0.0.1:PORT` of each instance, in the order nginx rotates through them. */
  let rotation: string[] = [];

  before(async () => {
    database = await createTestDatabase('postgres');
    const ports = [await freePort(), await freePort(), await freePort()];
    nginx = await startNginx(ports);
    // nginx is the one proxy in front: it appends the address it was reached from to X-Forwarded-For.
    env = { DATABASE_URL: database.databaseUrl!, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: nginx.url, GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_TRUST_PROXY: 'true' };
    // All three at once on the empty database, as an orchestrator starts them: they race for the
    // migrations, the signing keys and the demo set-up.
    const started = await Promise.allSettled(ports.map((port, i) => startInstance(`instance ${i + 1}`, env, { port })));
    instances = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failures = started.flatMap((s) => (s.status === 'rejected' ? [(s.reason as Error).message] : []));
    if (failures.length > 0) assert.fail(`not every instance started:\n${failures.join('\n')}`);
    fixtures = await createFixtures(env, 4);
  });

  after(async () => {
    for (const instance of instances) await instance.stop();
    await nginx?.stop();
    await database?.drop();
  });

  const byAddress = (address: string): Instance => {
    const instance = instances.find((i) => `127.0.0.1:${i.port}` === address);
    assert.ok(instance, `nginx named an upstream that is none of the instances: "${address}"`);
    return instance;
  };

  /** Fails with every instance's output when one of them died. */
  const assertAllAlive = () => {
    for (const instance of instances) assert.equal(instance.exitedAlready(), false, `an instance exited:\n${instance.describe()}`);
  };

  /** A cheap request through nginx; returns the instance that answered it. */
  const probe = async (): Promise<string> => {
    const response = await fetch(`${nginx.url}/healthz`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    await response.arrayBuffer();
    assert.equal(response.status, 200);
    return upstreamOf(response.headers);
  };

  /**
   * Makes the next request through nginx land on `target`: with nothing else going on, round robin
   * hands requests out in a fixed rotation, so cheap probes advance it to the instance before.
   */
  const steerTo = async (target: string): Promise<void> => {
    const before = rotation[(rotation.indexOf(target) + rotation.length - 1) % rotation.length];
    for (let i = 0; i < rotation.length + 1; i++) if ((await probe()) === before) return;
    assert.fail(`could not steer nginx to ${target}`);
  };

  it('starts all three on the same empty database at once: each accepts the tokens of the others at once', async () => {
    assertAllAlive();
    // Straight to each instance (not through nginx): a token signed by each, checked by each.
    const tokens = await Promise.all(instances.map((i) => clientCredentials(i.url, fixtures.machine)));
    for (const [n, token] of tokens.entries()) {
      assert.equal(token.status, 200, `${instances[n]!.name}: ${JSON.stringify(token.body)}`);
      for (const checker of instances) {
        const verdict = await introspect(checker.url, fixtures.resourceServer, token.body.access_token);
        const kid = JSON.parse(Buffer.from(token.body.access_token.split('.')[0], 'base64url').toString()).kid;
        assert.equal(verdict.body.active, true, `${checker.name} accepts a token of ${instances[n]!.name} (kid ${kid}), though they raced to create the signing keys`);
      }
    }
  });

  it('publishes one JWKS on every instance from the start, though they raced to create the keys', async () => {
    const kids = async (instance: Instance) => JSON.stringify(((await (await fetch(`${instance.url}/jwks.json`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort());
    const sets = await Promise.all(instances.map(kids));
    // One active and one next key per use (access tokens, ID tokens), enforced by unique indexes.
    assert.equal(JSON.parse(sets[0]!).length, 4, `keys published: ${sets[0]}`);
    assert.ok(sets.every((s) => s === sets[0]), `every instance publishes the same keys: ${sets.join(' ')}`);
  });

  it('spreads requests round robin: nginx and the instances\' own metrics agree', async () => {
    // The rotation, as nginx reports it: period three, every instance in it.
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) seen.push(await probe());
    rotation = seen.slice(0, 3);
    assert.equal(new Set(rotation).size, 3, `three consecutive requests reach three instances: ${seen.join(' ')}`);
    assert.deepEqual(seen.slice(3), rotation, `round robin repeats: ${seen.join(' ')}`);
    for (const address of rotation) byAddress(address);

    const metricsOf = async (instance: Instance) => metricValue(await (await fetch(`${instance.url}/metrics`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).text(), 'gatehouse_tokens_issued_total', 'grant_type="client_credentials"');
    const before = await Promise.all(instances.map(metricsOf));
    const answers: Answer[] = [];
    for (let i = 0; i < 30; i++) answers.push(await clientCredentials(nginx.url, fixtures.machine));
    assert.deepEqual(tally(answers, (a) => a.status), { 200: 30 });
    const perUpstream = tally(answers, (a) => a.upstream);
    assert.deepEqual(Object.values(perUpstream), [10, 10, 10], `nginx: ${JSON.stringify(perUpstream)}`);
    const afterwards = await Promise.all(instances.map(metricsOf));
    // Each instance counted, itself, exactly the requests nginx says it sent there.
    instances.forEach((instance, i) => assert.equal(afterwards[i]! - before[i]!, perUpstream[`127.0.0.1:${instance.port}`], `${instance.name} counted its own token requests`));
  });

  it('client credentials: a token from one instance is accepted by the other two', async () => {
    await steerTo(rotation[0]!);
    const token = await clientCredentials(nginx.url, fixtures.machine);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal(token.upstream, rotation[0]);
    const verdicts = [await introspect(nginx.url, fixtures.resourceServer, token.body.access_token), await introspect(nginx.url, fixtures.resourceServer, token.body.access_token)];
    assert.deepEqual(verdicts.map((v) => v.upstream), [rotation[1], rotation[2]], 'introspected on the other two instances');
    for (const verdict of verdicts) {
      assert.equal(verdict.status, 200, JSON.stringify(verdict.body));
      assert.equal(verdict.body.active, true, `${verdict.upstream} accepts a token signed by ${token.upstream}: ${JSON.stringify(verdict.body)}`);
      assert.equal(verdict.body.client_id, fixtures.machine.id);
      assert.equal(verdict.body.iss, nginx.url, 'the issuer is the load balancer');
    }
  });

  it('client credentials: a token revoked at one instance is handed out by none a second later, though each reuses its tokens', async () => {
    // A machine of its own: no token of it from an earlier test is in any instance's reuse window.
    const { machine } = await createFixtures(env, 0);
    const [a, b] = [instances[0]!, instances[1]!];
    const first = await clientCredentials(a.url, machine);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal((await clientCredentials(a.url, machine)).body.access_token, first.body.access_token, `${a.name} hands identical requests the same token`);
    const revoked = await post(`${b.url}/revoke`, { token: first.body.access_token }, { headers: { authorization: basic(machine.id, machine.secret) } });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    // The documented bound: at most one second after a revocation on another instance.
    await sleep(1100);
    const again = await clientCredentials(a.url, machine);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.notEqual(again.body.access_token, first.body.access_token, `${a.name} handed out the token revoked at ${b.name}`);
    assert.deepEqual((await introspect(a.url, fixtures.resourceServer, first.body.access_token)).body, { active: false });
    assert.equal((await introspect(a.url, fixtures.resourceServer, again.body.access_token)).body.active, true);
  });

  it('password and refresh: every rotation on another instance than the one before', async () => {
    const email = fixtures.users[0]!.email;
    let answer = await passwordGrant(nginx.url, fixtures.firstParty, email);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const path = [answer.upstream];
    for (let i = 0; i < 6; i++) {
      const previous = answer;
      answer = await refreshGrant(nginx.url, fixtures.firstParty, previous.body.refresh_token);
      assert.equal(answer.status, 200, `refresh ${i + 1} on ${answer.upstream} of a token from ${previous.upstream}: ${JSON.stringify(answer.body)}`);
      assert.notEqual(answer.body.refresh_token, previous.body.refresh_token, 'rotated');
      path.push(answer.upstream);
    }
    assert.equal(new Set(path).size, 3, `the chain went through all three: ${path.join(' → ')}`);
    for (let i = 1; i < path.length; i++) assert.notEqual(path[i], path[i - 1], `consecutive requests on different instances: ${path.join(' → ')}`);
    const verdict = await introspect(nginx.url, fixtures.resourceServer, answer.body.access_token);
    assert.equal(verdict.body.active, true, JSON.stringify(verdict.body));
    assert.equal(verdict.body.sub, fixtures.users[0]!.id);
  });

  it('authorization code: sign-in on one instance, consent on another, exchange on a third', async () => {
    const [signIn, consent, exchange] = rotation as [string, string, string];
    const landed: Partial<Record<Step, string>> = {};
    const code = await authorizationCode(nginx.url, fixtures.webApp, fixtures.users[1]!.email, {
      before: async (step) => {
        if (step === 'login') await steerTo(signIn);
        if (step === 'consent') await steerTo(consent);
      },
      after: (step, response) => {
        landed[step] = upstreamOf(response.headers);
      },
    });
    assert.equal(landed.login, signIn, 'the sign-in form was posted to the first instance');
    assert.equal(landed.consent, consent, 'the consent form was posted to the second instance');
    assert.equal(code.iss, nginx.url, 'RFC 9207 iss is the load balancer');

    await steerTo(exchange);
    const tokens = await exchangeCode(nginx.url, fixtures.webApp, code);
    assert.equal(tokens.upstream, exchange, 'the code was exchanged at the third instance');
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.ok(tokens.body.id_token, 'an ID token (openid)');
    assert.ok(tokens.body.refresh_token);
    assert.equal(new Set([landed.login, landed.consent, tokens.upstream]).size, 3);

    // The tokens work on every instance.
    for (const target of rotation) {
      await steerTo(target);
      const response = await fetch(`${nginx.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.body.access_token}` }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const text = await response.text();
      assert.equal(upstreamOf(response.headers), target);
      assert.equal(response.status, 200, `userinfo at ${target}: ${text}`);
      assert.equal((JSON.parse(text) as { sub: string }).sub, fixtures.users[1]!.id);
    }
    const refreshed = await refreshGrant(nginx.url, fixtures.webApp, tokens.body.refresh_token);
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  });

  /** Fires `count` copies of a request at once through nginx and sorts the answers. */
  const race = async (count: number, send: () => Promise<Answer>) => {
    const answers = await Promise.all(Array.from({ length: count }, () => send()));
    const won = answers.filter((a) => a.status === 200);
    const summary = `statuses ${JSON.stringify(tally(answers, (a) => a.status))}, errors ${JSON.stringify(tally(answers, (a) => a.body?.error ?? '-'))}, instances ${JSON.stringify(tally(answers, (a) => a.upstream))}`;
    assert.equal(answers.filter((a) => a.status >= 500).length, 0, `no 5xx: ${summary}`);
    assert.equal(won.length, 1, `exactly one of ${count} wins: ${summary}`);
    for (const answer of answers) if (answer.status !== 200) assertOAuthError(answer, 400, 'invalid_grant', summary);
    assert.equal(Object.keys(tally(answers, (a) => a.upstream)).length, 3, `the ${count} requests reached all three instances: ${summary}`);
    return won[0]!;
  };

  it('50 concurrent uses of one refresh token across the instances: exactly one succeeds, the rest invalid_grant, no 5xx', async () => {
    const start = await passwordGrant(nginx.url, fixtures.firstParty, fixtures.users[2]!.email);
    assert.equal(start.status, 200, JSON.stringify(start.body));
    const winner = await race(50, () => refreshGrant(nginx.url, fixtures.firstParty, start.body.refresh_token));
    // The losers were replays (RFC 9700 §4.14.2): the grant is revoked, the winner's successor with it.
    const successor = await refreshGrant(nginx.url, fixtures.firstParty, winner.body.refresh_token);
    assertOAuthError(successor, 400, 'invalid_grant', 'after a replay the grant is revoked:');
    assertAllAlive();
  });

  it('50 concurrent exchanges of one authorization code across the instances: exactly one succeeds, and its grant is revoked', async () => {
    const code = await authorizationCode(nginx.url, fixtures.webApp, fixtures.users[3]!.email);
    const winner = await race(50, () => exchangeCode(nginx.url, fixtures.webApp, code));
    // The losers were replays (RFC 6749 §4.1.2): the grant made from the code is revoked, however
    // early a loser came — the winner's refresh token with it.
    const refreshed = await refreshGrant(nginx.url, fixtures.webApp, winner.body.refresh_token);
    assertOAuthError(refreshed, 400, 'invalid_grant', 'after a replay of the code its grant is revoked:');
    assertAllAlive();
  });

  it('takes the client address nginx appended, not the X-Forwarded-For the client sent', async () => {
    const clientId = `forger-${randomBytes(6).toString('hex')}`;
    const response = await fetch(`${nginx.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(clientId, 'gate_cs_wrong'), 'x-forwarded-for': '203.0.113.99' },
      body: 'grant_type=client_credentials',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    assert.equal(response.status, 401, await response.text());
    const db = new pg.Client({ connectionString: database.databaseUrl });
    await db.connect();
    try {
      // Audit events are written in batches, a moment after the answer.
      const data = await waitFor('the refusal in the audit log', async () => {
        const { rows } = await db.query<{ data: string }>("SELECT data FROM audit_events WHERE kind = 'token.refused' AND client_id = $1", [clientId]);
        return rows[0] ? (JSON.parse(rows[0].data) as { address: string }) : undefined;
      });
      assert.equal(data.address, '127.0.0.1', 'nginx reached the instance from 127.0.0.1 for a client at 127.0.0.1');
    } finally {
      await db.end();
    }
  });

  it('logged no server error anywhere', () => {
    assertAllAlive();
    for (const instance of instances) {
      const errors = instance.stdout().split('\n').filter((line) => /"level":(50|60)/.test(line));
      assert.deepEqual(errors, [], `${instance.name} logged errors`);
    }
    assert.doesNotMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/, `nginx error log:\n${nginx.errorLog()}`);
  });
});

/**
 * A client-credentials request of the demo application (from the banner of `primary`) on a
 * connection of its own; returns which of `pids` served it.
 */
async function demoToken(primary: Instance, pids: number[]): Promise<number | undefined> {
  const match = /Demo application \(client credentials\)\s+client_id:\s+(\S+)\s+client_secret:\s+(\S+)/.exec(primary.stdout());
  assert.ok(match, `the banner shows the demo application:\n${primary.stdout()}`);
  const body = new URLSearchParams({ grant_type: 'client_credentials', scope: 'objects:read' }).toString();
  const answer = await requestAndFindOwner(primary.port, { method: 'POST', path: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(match[1]!, match[2]!) }, body }, pids);
  assert.equal(answer.status, 200, answer.body);
  assert.ok(JSON.parse(answer.body).access_token);
  return answer.owner;
}

/**
 * `gatehouse serve --workers 2`: node:cluster, one port, two worker processes. Which worker served
 * a connection is read from the kernel: the socket's inode in /proc/net/tcp, and which worker holds
 * it in /proc/PID/fd.
 */
describe('serve --workers 2 on SQLite', { timeout: 90_000 }, () => {
  let database: TestDatabase;
  let primary: Instance;
  const tracker = workerTracker(() => primary.pid);
  const workers = () => tracker.current();

  before(async () => {
    database = await createTestDatabase('sqlite');
    const port = await freePort();
    primary = await startInstance('primary', { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_SECRET: TEST_SECRET }, { port, args: ['--workers', '2'] });
  });

  after(async () => {
    await primary?.stop();
    tracker.killAll();
    await database?.drop();
  });


  /** Opens `count` connections one after the other; returns which worker served each. */
  const owners = async (count: number, pids: number[]) => {
    const served: number[] = [];
    for (let i = 0; i < count; i++) {
      const { status, owner } = await requestAndFindOwner(primary.port, { path: '/healthz' }, pids);
      assert.equal(status, 200);
      assert.ok(owner !== undefined, `connection ${i + 1} is held by one of the workers ${pids.join(', ')}`);
      served.push(owner);
    }
    return served;
  };

  const token = (pids: number[]) => demoToken(primary, pids);

  it('runs two workers that both answer', async () => {
    assert.match(primary.stdout(), /2 workers/);
    const pids = await waitFor('two workers', async () => (workers().length === 2 ? workers() : undefined), 10_000);
    const served = await owners(8, pids);
    assert.deepEqual(new Set(served), new Set(pids), `both workers served connections: ${served.join(' ')}`);
    const tokensBy = new Set([await token(pids), await token(pids)]);
    assert.deepEqual(tokensBy, new Set(pids), 'both workers issue tokens');
    // V8 sizes its young generation at start-up only: each worker is started with the server's options.
    for (const pid of pids) {
      const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      for (const option of SERVER_NODE_OPTIONS) assert.ok(commandLine.includes(option), `worker ${pid} runs with ${option}: ${commandLine.join(' ')}`);
    }
  });

  it('answers /metrics for the whole server: whichever worker takes a scrape, it counts the tokens of both', async () => {
    const pids = workers();
    const scrape = async () => {
      const answer = await requestAndFindOwner(primary.port, { path: '/metrics' }, pids);
      assert.equal(answer.status, 200, answer.body);
      assert.ok(answer.owner !== undefined);
      return { owner: answer.owner, issued: metricValue(answer.body, 'gatehouse_tokens_issued_total', 'grant_type="client_credentials"'), body: answer.body };
    };
    const before = (await scrape()).issued;
    const issuedBy = new Set<number | undefined>();
    for (let i = 0; i < 6; i++) issuedBy.add(await token(pids));
    assert.deepEqual(issuedBy, new Set(pids), 'both workers issued tokens');
    const scrapes = [];
    for (let i = 0; i < 6; i++) scrapes.push(await scrape());
    assert.deepEqual(new Set(scrapes.map((s) => s.owner)), new Set(pids), 'both workers took scrapes');
    for (const { owner, issued } of scrapes) assert.equal(issued - before, 6, `the scrape taken by worker ${owner} counts every token`);
    assert.match(scrapes[0]!.body, /gatehouse_http_request_duration_seconds_count\{route="\/token",method="POST",status="2xx"\} \d+/);
  });

  it('replaces a worker killed with SIGKILL; the other one answers meanwhile', async () => {
    const [victim, survivor] = workers() as [number, number];
    process.kill(victim, 'SIGKILL');
    await waitFor('the primary to notice', async () => (/worker exited \(SIGKILL\); starting another/.test(primary.stderr()) ? true : undefined), 10_000).catch((error: Error) =>
      assert.fail(`${error.message}\n${primary.describe()}`),
    );
    // From the moment the primary knows, every new connection is answered: by the survivor until the replacement listens.
    for (let i = 0; i < 4; i++) {
      const owner = await token([survivor, ...workers()]);
      assert.ok(owner !== victim && owner !== undefined);
    }
    const pids = await replacementOf(workers, victim, survivor).catch((error: Error) => assert.fail(`${error.message}\n${primary.describe()}`));
    // The replacement takes connections once it listens.
    await waitFor(
      'the replacement to serve connections',
      async () => {
        const served = await owners(4, pids);
        return new Set(served).size === 2 ? served : undefined;
      },
      20_000,
      200,
    );
    const tokensBy = new Set([await token(pids), await token(pids)]);
    assert.deepEqual(tokensBy, new Set(pids), 'both workers issue tokens, the replacement too');
    assert.equal(primary.exitedAlready(), false);
  });

  it('stops every worker on SIGTERM', async () => {
    const pids = workers();
    await primary.stop();
    assert.deepEqual(await primary.exited, { code: 0, signal: null }, primary.describe());
    await waitFor('the workers to exit', async () => (pids.every((pid) => !childAlive(pid)) ? true : undefined), 10_000);
  });
});

describe('serve --workers 2 whose workers cannot start', { timeout: 90_000 }, () => {
  it('stops with an error after five workers in a row exited without serving, waiting longer before each new one, instead of forking for ever', async () => {
    const database = await createTestDatabase('sqlite');
    // The port is someone else's: every worker fails to listen, as a single process would.
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    const env = { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_SECRET: TEST_SECRET, PORT: String(port), HOST: '127.0.0.1' };
    const primary = spawnGatehouse(['serve', '--workers', '2'], env, { dropEnv: ['REDIS_URL'] });
    try {
      const startedAt = Date.now();
      const exited = await Promise.race([primary.exited, sleep(45_000).then(() => 'still running')]);
      const stderr = primary.stderr();
      assert.deepEqual(exited, { code: 1, signal: null }, stderr);
      assert.match(stderr, /the workers exited 5 times in a row without ever serving \(their errors are above\); stopping/);
      assert.match(stderr, /EADDRINUSE/, 'the workers say why');
      assert.equal(stderr.match(/worker exited/g)?.length, 4, stderr);
      for (const wait of ['0.5', '1', '2']) assert.match(stderr, new RegExp(`starting another in ${wait.replace('.', '\\.')} s`), stderr);
      assert.ok(Date.now() - startedAt >= 3_500, 'it waited between the workers');
      assert.equal(primary.stdout().includes('Gatehouse is listening'), false);
      // Its secrets are printed once, when the workers serve: made now, they would never be shown.
      assert.deepEqual(await cliJson(['client', 'list'], env), [], 'no demo set-up was made that nobody saw');
    } finally {
      await primary.stop();
      taken.close();
      await database.drop();
    }
  });
});

/**
 * `GATEHOUSE_METRICS_PORT`: /metrics leaves the public port for a port of its own — served by the
 * one process, or under `--workers 2` by the primary, with the sum over the workers.
 */
for (const workers of [1, 2]) {
  describe(`the metrics port (serve${workers > 1 ? ` --workers ${workers}` : ''})`, { timeout: 90_000 }, () => {
    let database: TestDatabase;
    let primary: Instance;
    let metricsUrl: string;

    before(async () => {
      database = await createTestDatabase('sqlite');
      const [port, metricsPort] = [await freePort(), await freePort()];
      metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
      primary = await startInstance(
        'primary',
        { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_METRICS_PORT: String(metricsPort) },
        { port, args: ['--workers', String(workers)] },
      );
    });

    after(async () => {
      await primary?.stop();
      await database?.drop();
    });

    const get = async (url: string) => {
      const response = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      return { status: response.status, headers: response.headers, body: await response.text() };
    };

    it('serves /metrics there and nowhere else, counting the tokens of every process', async () => {
      assert.ok(primary.stdout().includes(`metrics: ${metricsUrl}`), `the banner names the metrics address:\n${primary.stdout()}`);
      assert.doesNotMatch(primary.stderr(), /Deprecation|Warning/, 'starts without warnings');
      const onPublicPort = await get(`${primary.url}/metrics`);
      assert.equal(onPublicPort.status, 404, 'the public port has no /metrics');
      assert.doesNotMatch(onPublicPort.body, /gatehouse_/);

      const before = metricValue((await get(metricsUrl)).body, 'gatehouse_tokens_issued_total', 'grant_type="client_credentials"');
      const pids = workers > 1 ? await waitFor('the workers', async () => (childrenOf(primary.pid).length === workers ? childrenOf(primary.pid) : undefined), 10_000) : [primary.pid];
      const issuedBy = new Set<number | undefined>();
      for (let i = 0; i < 6; i++) issuedBy.add(await demoToken(primary, pids));
      assert.deepEqual(issuedBy, new Set(pids), 'every process issued tokens');

      const scrape = await get(metricsUrl);
      assert.equal(scrape.status, 200, scrape.body);
      assert.match(scrape.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      assert.equal(scrape.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(metricValue(scrape.body, 'gatehouse_tokens_issued_total', 'grant_type="client_credentials"') - before, 6);
      assert.match(scrape.body, /gatehouse_http_request_duration_seconds_count\{route="\/token",method="POST",status="2xx"\} \d+/);
      // The metrics port serves nothing of the rest of Gatehouse.
      for (const path of ['/healthz', '/.well-known/openid-configuration', '/admin/v1/clients']) {
        assert.equal((await get(`http://127.0.0.1:${new URL(metricsUrl).port}${path}`)).status, 404, path);
      }
    });

    if (workers > 1) {
      it('answers 503 with Retry-After while a worker cannot be asked, and the sum again once it can; nothing stops', async () => {
        const [stopped] = childrenOf(primary.pid) as [number];
        process.kill(stopped, 'SIGSTOP');
        let scrape;
        try {
          scrape = await get(metricsUrl);
        } finally {
          process.kill(stopped, 'SIGCONT');
        }
        assert.equal(scrape.status, 503, scrape.body);
        assert.equal(scrape.headers.get('retry-after'), '5');
        assert.equal(scrape.body, 'metrics are unavailable for a moment\n');
        // The primary's log reaches this process through a pipe, maybe after the answer.
        await waitFor('the warning in the log', async () => (/"msg":"metrics could not be gathered"/.test(primary.stdout()) ? true : undefined), 5_000);

        const again = await waitFor('a whole scrape again', async () => {
          const answer = await get(metricsUrl);
          return answer.status === 200 ? answer : undefined;
        }, 20_000, 200);
        assert.match(again.body, /gatehouse_tokens_issued_total\{grant_type="client_credentials"\} \d+/);
        assert.deepEqual(new Set(childrenOf(primary.pid)).has(stopped), true, 'the worker was not replaced');
        assert.equal(primary.exitedAlready(), false);
      });
    }

    it('stops on SIGTERM with the metrics port', async () => {
      await primary.stop();
      assert.deepEqual(await primary.exited, { code: 0, signal: null }, primary.describe());
      await assert.rejects(fetch(metricsUrl, { signal: AbortSignal.timeout(2000) }));
    });
  });
}

/** Is `pid` a live process (a zombie waiting for its parent to read its status is not)? */
function childAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
