import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ROOT, writeConfig } from '../cli/support.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';
import {
  assertOAuthError,
  authorizationCode,
  basic,
  canConnect,
  clientCredentials,
  createFixtures,
  exchangeCode,
  freePort,
  introspect,
  logSummary,
  ownerOfConnection,
  PASSWORD,
  passwordGrant,
  refreshGrant,
  sleep,
  startCli,
  startInstance,
  startNginx,
  startPrivatePostgres,
  tally,
  waitFor,
  type Answer,
  type Fixtures,
  type Instance,
  type Nginx,
  type Party,
  type PrivatePostgres,
} from './support.ts';

/**
 * What happens to Gatehouse when things break: the database goes away and comes back, an instance
 * is killed in the middle of its work, SQLite loses its process mid-write, an operator stops a
 * process with requests in flight.
 */

/** The migrations the code ships, by file name: what a database must record as applied. */
const MIGRATIONS = readdirSync(join(ROOT, 'src/storage/migrations'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort();

/** Status and error (or the title of an HTML error page), short: for messages. */
const brief = (answer: Answer): string =>
  `${answer.status} ${typeof answer.body === 'string' ? (/<title>([^<]*)<\/title>/.exec(answer.body)?.[1] ?? answer.body.slice(0, 80)) : (answer.body?.error ?? answer.body?.network ?? JSON.stringify(answer.body))}`;

/** A request that failed before any answer (connection reset or refused, timeout). */
const networkFailure = (error: unknown): Answer => ({ status: 0, headers: new Headers(), body: { network: String((error as Error).cause ?? error) }, upstream: '' });

const QUERY_TIMEOUT_SECONDS = 2;

describe('PostgreSQL stopped and restarted during a load', { timeout: 150_000 }, () => {
  let cluster: PrivatePostgres;
  let instances: Instance[] = [];
  let fixtures: Fixtures;

  before(async () => {
    // A cluster of this test's own: stopping the machine's PostgreSQL would break the other tests.
    cluster = await startPrivatePostgres();
    const ports = [await freePort(), await freePort()];
    // A short query timeout, so that the test of a database that hangs does not take long.
    const config = writeConfig(cluster.dir, { database: { queryTimeoutSeconds: QUERY_TIMEOUT_SECONDS } });
    const env = { DATABASE_URL: cluster.databaseUrl, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: `http://127.0.0.1:${ports[0]}`, GATEHOUSE_CONFIG: config };
    instances.push(await startInstance('instance 1', env, { port: ports[0]! }));
    instances.push(await startInstance('instance 2', env, { port: ports[1]! }));
    fixtures = await createFixtures(env, 1);
  });

  after(async () => {
    for (const instance of instances) await instance.stop();
    await cluster?.destroy();
  });

  // A clean stop (`pg_ctl -m fast`: sessions are told and closed), then a crash (`-m immediate`:
  // no goodbye, recovery on the next start). The first outage outlasts the client cache (5 s), so
  // client credentials meet the missing database too.
  for (const [mode, downMs] of [['fast', 6000], ['immediate', 3000]] as const) {
    it(`answers 503 temporarily_unavailable while it is down (pg_ctl stop -m ${mode}), never dies, and comes back by itself`, async (t) => {
      type Phase = 'up' | 'stopping' | 'down' | 'starting' | 'back';
      let phase: Phase = 'up';
      interface Outcome {
        phase: Phase;
        /** The phase the request ended in (a request may straddle a change). */
        endPhase: Phase;
        kind: 'client_credentials' | 'password';
        instance: string;
        answer: Answer;
        at: number;
      }
      const outcomes: Outcome[] = [];
      const readiness: { phase: Phase; instance: string; status: number }[] = [];
      const startedAt = Date.now();
      let restartedAt = 0;
      const email = fixtures.users[0]!.email;
      /** Has every instance issued a password-grant token since the restart? */
      const recovered = () => instances.every((i) => outcomes.some((o) => o.phase === 'back' && o.kind === 'password' && o.instance === i.name && o.answer.status === 200));
      const deadline = () => Date.now() - startedAt > 40_000 || (phase === 'back' && (recovered() || Date.now() - restartedAt > 20_000) && Date.now() - restartedAt > 1500);

      // Four loops of client credentials and password grants over both instances, until it is over.
      const loop = async (n: number) => {
        for (let i = 0; !deadline() && i < 2000; i++) {
          const instance = instances[(n + i) % instances.length]!;
          const kind = i % 2 === 0 ? 'client_credentials' : 'password';
          const at = Date.now();
          const begun = phase;
          const answer = await (kind === 'client_credentials' ? clientCredentials(instance.url, fixtures.machine) : passwordGrant(instance.url, fixtures.firstParty, email)).catch(networkFailure);
          outcomes.push({ phase: begun, endPhase: phase, kind, instance: instance.name, answer, at: at - startedAt });
          await sleep(20);
        }
      };
      const load = Promise.all([0, 1, 2, 3].map(loop));
      // Awaited below; a failure meanwhile is reported there, not as an unhandled rejection.
      load.catch(() => {});

      await sleep(1500);
      phase = 'stopping';
      await cluster.stop(mode);
      phase = 'down';
      await sleep(downMs);
      for (const instance of instances) {
        const response = await fetch(`${instance.url}/readyz`, { signal: AbortSignal.timeout(10_000) }).catch((error: Error) => assert.fail(`/readyz: ${error.message}\n${instance.describe()}`));
        readiness.push({ phase, instance: instance.name, status: response.status });
        await response.arrayBuffer();
      }
      phase = 'starting';
      await cluster.start();
      restartedAt = Date.now();
      phase = 'back';
      await load;

      const summary = (list: Outcome[]) => JSON.stringify(tally(list, (o) => `${o.kind} ${o.answer.status}${o.answer.body?.error ? ` ${o.answer.body.error}` : ''}`));
      const context = `outcomes by phase: ${['up', 'stopping', 'down', 'starting', 'back'].map((p) => `${p} ${summary(outcomes.filter((o) => o.phase === p))}`).join('; ')}`;

      t.diagnostic(context);
      for (const instance of instances) t.diagnostic(`${instance.name} logged ${JSON.stringify(logSummary(instance.stdout()))}`);
      // Only 200 and 503: no 500, no connection dropped by a crashing process.
      const unexpected = outcomes.filter((o) => o.answer.status !== 200 && o.answer.status !== 503);
      assert.deepEqual(
        unexpected.map((o) => `${o.at} ms ${o.phase} ${o.kind} on ${o.instance}: ${o.answer.status} ${JSON.stringify(o.answer.body)}`),
        [],
        `${context}\n${instances.map((i) => i.describe()).join('\n')}`,
      );
      // Every 503 is an RFC 6749 §5.2 error that says to come back.
      for (const outcome of outcomes.filter((o) => o.answer.status === 503)) {
        assertOAuthError(outcome.answer, 503, 'temporarily_unavailable', `${outcome.phase} ${outcome.kind}:`);
        assert.ok(outcome.answer.headers.get('retry-after'), 'a 503 says when to retry');
      }
      const down = outcomes.filter((o) => o.phase === 'down' && o.endPhase === 'down');
      assert.ok(down.some((o) => o.kind === 'password' && o.answer.status === 503), `password grants got 503 while the database was down: ${context}`);
      assert.ok(!down.some((o) => o.kind === 'password' && o.answer.status === 200), `no password grant can succeed without the database: ${context}`);
      assert.ok(outcomes.some((o) => o.phase === 'up' && o.answer.status === 200), `it worked before: ${context}`);
      assert.deepEqual(readiness.map((r) => r.status), [503, 503], '/readyz says not ready while the database is down');

      // Back by itself: no restart of any Gatehouse process.
      assert.ok(recovered(), `every instance issued tokens again within 20 s of the restart: ${context}`);
      for (const instance of instances) {
        assert.equal(instance.exitedAlready(), false, `no process died:\n${instance.describe()}`);
        await waitFor(`${instance.name} /readyz`, async () => {
          const response = await fetch(`${instance.url}/readyz`, { signal: AbortSignal.timeout(5000) });
          await response.arrayBuffer();
          return response.status === 200 ? true : undefined;
        }, 10_000);
        const answer = await passwordGrant(instance.url, fixtures.firstParty, email);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        const refreshed = await refreshGrant(instance.url, fixtures.firstParty, answer.body.refresh_token);
        assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
        const fatal = instance.stdout().split('\n').filter((line) => /"level":60/.test(line));
        assert.deepEqual(fatal, [], `${instance.name} logged nothing fatal`);
      }
    });
  }

  it('answers 503 within seconds while PostgreSQL hangs (every process stopped with SIGSTOP), never dies, and comes back by itself', async (t) => {
    const email = fixtures.users[0]!.email;
    for (const instance of instances) assert.equal((await passwordGrant(instance.url, fixtures.firstParty, email)).status, 200, 'it works before');

    // More requests than an instance has connections (10): the first wait on statements that never
    // end, the others on a connection from the pool.
    cluster.freeze();
    let answers: { instance: string; ms: number; answer: Answer }[];
    const readiness: number[] = [];
    try {
      answers = await Promise.all(
        instances.flatMap((instance) =>
          Array.from({ length: 12 }, async () => {
            const at = Date.now();
            const answer = await passwordGrant(instance.url, fixtures.firstParty, email, AbortSignal.timeout(30_000)).catch(networkFailure);
            return { instance: instance.name, ms: Date.now() - at, answer };
          }),
        ),
      );
      for (const instance of instances) {
        const response = await fetch(`${instance.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
        readiness.push(response.status);
        await response.arrayBuffer();
      }
    } finally {
      cluster.thaw();
    }
    t.diagnostic(`while it hung: ${JSON.stringify(tally(answers, (a) => `${a.answer.status} within ${Math.ceil(a.ms / 1000)} s`))}`);

    // Each answered, 503 with an RFC 6749 error, within the query timeout plus the pool's wait for a
    // connection (5 s), not when the client gave up.
    for (const { instance, ms, answer } of answers) {
      assertOAuthError(answer, 503, 'temporarily_unavailable', `${instance} after ${ms} ms:`);
      assert.ok(answer.headers.get('retry-after'), 'a 503 says when to retry');
      assert.ok(ms < (QUERY_TIMEOUT_SECONDS + 5 + 3) * 1000, `${instance} answered after ${ms} ms`);
    }
    assert.deepEqual(readiness, [503, 503], '/readyz says not ready while the database hangs');

    // Back by itself once the database answers again: the connections stuck on it were dropped.
    for (const instance of instances) {
      await waitFor(`${instance.name} to issue tokens again`, async () => ((await passwordGrant(instance.url, fixtures.firstParty, email)).status === 200 ? true : undefined), 20_000, 200);
      assert.equal(instance.exitedAlready(), false, `no process died:\n${instance.describe()}`);
    }
  });
});

// Once with the default (no grace window: a refresh token is single use, full stop), once with a
// grace window, the setting that lets a client retry a refresh whose answer it never received.
for (const grace of [0, 60]) {
  describe(`an instance killed with SIGKILL during a load of authorization-code and refresh flows (refresh grace window ${grace} s)`, { timeout: 150_000 }, () => {
    let database: TestDatabase;
    let nginx: Nginx;
    let instances: Instance[] = [];
    let fixtures: Fixtures;
    let env: Record<string, string>;

    before(async () => {
      database = await createTestDatabase('postgres');
      const ports = [await freePort(), await freePort()];
      nginx = await startNginx(ports);
      env = { DATABASE_URL: database.databaseUrl!, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: nginx.url };
      if (grace > 0) env.GATEHOUSE_CONFIG = writeConfig(database.dataDir, { tokens: { refreshTokenReuseGraceSeconds: grace } });
      instances.push(await startInstance('instance 1', env, { port: ports[0]! }));
      instances.push(await startInstance('instance 2', env, { port: ports[1]! }));
      fixtures = await createFixtures(env, 6);
    });

    after(async () => {
      for (const instance of instances) await instance.stop();
      await nginx?.stop();
      await database?.drop();
    });

    it('every token handed to a client before or while the instance died still works afterwards', async (t) => {
      /** One client's session: the access tokens it got, the refresh token it holds, and whether its last use of it got lost. */
      interface Chain {
        /** When the client got its first tokens, in ms from the start of the load. */
        startedAt: number;
        accessTokens: string[];
        refreshToken: string;
        /** The last refresh request failed without an answer: the client does not know whether it was used. */
        inDoubt: boolean;
      }
      const chains: Chain[] = [];
      const failures: string[] = [];
      const lostCodes: string[] = [];
      const startedAt = Date.now();
      let killedAt = 0;
      const over = () => Date.now() - startedAt > 5000;

      const worker = async (n: number) => {
        const user = fixtures.users[n]!;
        for (let flows = 0; !over() && flows < 30; flows++) {
          let code: { code: string; verifier: string };
          try {
            code = await authorizationCode(nginx.url, fixtures.webApp, user.email);
          } catch (error) {
            // The person's part failed (a page answered 502 as the instance died): no token was handed out.
            failures.push(`flow: ${(error as Error).message.split('\n')[0]}`);
            continue;
          }
          let tokens = await exchangeCode(nginx.url, fixtures.webApp, code).catch(networkFailure);
          if (tokens.status !== 200) {
            failures.push(`exchange: ${brief(tokens)}`);
            // A client retries once. The code may have been used by the request that died with the
            // instance: then it is spent (single use), and nothing was handed out.
            tokens = await exchangeCode(nginx.url, fixtures.webApp, code).catch(networkFailure);
            if (tokens.status !== 200) {
              assertOAuthError(tokens, 400, 'invalid_grant', 'a retried exchange either works or finds the code spent:');
              lostCodes.push(code.code);
              continue;
            }
          }
          const chain: Chain = { startedAt: Date.now() - startedAt, accessTokens: [tokens.body.access_token], refreshToken: tokens.body.refresh_token, inDoubt: false };
          chains.push(chain);
          for (let r = 0; r < 3 && !over(); r++) {
            const refreshed = await refreshGrant(nginx.url, fixtures.webApp, chain.refreshToken).catch(networkFailure);
            if (refreshed.status !== 200) {
              failures.push(`refresh: ${brief(refreshed)}`);
              chain.inDoubt = true;
              break;
            }
            chain.accessTokens.push(refreshed.body.access_token);
            chain.refreshToken = refreshed.body.refresh_token;
          }
        }
      };
      const load = Promise.all(fixtures.users.map((_, n) => worker(n)));
      // Awaited below; a failure meanwhile is reported there, not as an unhandled rejection.
      load.catch(() => {});
      await sleep(2500);
      const victim = instances[1]!;
      victim.child.kill('SIGKILL');
      killedAt = Date.now() - startedAt;
      await load;
      assert.deepEqual(await victim.exited, { code: null, signal: 'SIGKILL' });

      const context = `${chains.length} sessions, killed at ${killedAt} ms; requests caught in the kill: ${JSON.stringify(failures)}`;
      assert.ok(chains.some((c) => c.startedAt < killedAt) && chains.some((c) => c.startedAt > killedAt + 500), `sessions began before and after the kill: ${context}`);
      // Only requests in flight on the victim can have failed: nginx sends the rest to the survivor.
      for (const failure of failures) assert.match(failure, /^(flow|exchange|refresh): /, context);
      assert.ok(failures.length <= 12, `few requests were caught in the kill: ${context}`);

      // The victim comes back on its port, so the checks run on both a survivor and a fresh process.
      instances[1] = await startInstance('instance 2 (restarted)', env, { port: victim.port });

      // Every access token handed out verifies (introspection by a resource server).
      const accessTokens = chains.flatMap((c) => c.accessTokens);
      const verdicts = await Promise.all(accessTokens.map((token) => introspect(nginx.url, fixtures.resourceServer, token)));
      const inactive = verdicts.filter((v) => v.status !== 200 || v.body.active !== true);
      assert.equal(inactive.length, 0, `all ${accessTokens.length} access tokens are active: ${JSON.stringify(inactive.slice(0, 3).map((v) => v.body))}; ${context}`);

      // Every refresh token a client holds refreshes once. When its last use got no answer (the
      // request died with the instance), the rotation either did not happen, or happened whole: the
      // token consumed and its successor stored in one transaction, the successor lost with the
      // response. Then the grace window decides: within it the client's retry gets a sibling token;
      // with none (the default) the retry is a replay, refused.
      const db = new pg.Client({ connectionString: database.databaseUrl });
      await db.connect();
      let lostWithResponse = 0;
      const refreshedChains: Chain[] = [];
      try {
        for (const chain of chains) {
          let consumed: { consumed_at: unknown; grant_id: string } | undefined;
          if (chain.inDoubt) {
            const row = await db.query('SELECT consumed_at, grant_id FROM refresh_tokens WHERE digest = $1', [digestOf(chain.refreshToken)]);
            consumed = row.rows[0];
            assert.ok(consumed, 'the refresh token is stored');
            if (consumed!.consumed_at !== null) {
              lostWithResponse += 1;
              const successors = await db.query('SELECT count(*)::int AS n FROM refresh_tokens WHERE grant_id = $1 AND created_at = $2', [consumed!.grant_id, consumed!.consumed_at]);
              assert.ok(successors.rows[0].n >= 1, 'a consumed refresh token has its successor: rotation is all or nothing');
            }
          }
          const refreshed = await refreshGrant(nginx.url, fixtures.webApp, chain.refreshToken);
          if (consumed && consumed.consumed_at !== null && grace === 0) {
            assertOAuthError(refreshed, 400, 'invalid_grant', 'without a grace window, a token used by a request that died is spent:');
          } else {
            assert.equal(refreshed.status, 200, `a held refresh token refreshes${chain.inDoubt ? ' (its last use got no answer)' : ''}: ${JSON.stringify(refreshed.body)}; ${context}`);
            refreshedChains.push(chain);
          }
        }
      } finally {
        await db.end();
      }
      assert.ok(lostWithResponse <= failures.length, context);
      // Refreshing revoked nothing: the access tokens of those sessions are all still active.
      const stillActive = await Promise.all(refreshedChains.flatMap((c) => c.accessTokens).map((token) => introspect(nginx.url, fixtures.resourceServer, token)));
      assert.ok(stillActive.every((v) => v.body.active === true), 'access tokens stay active after their session refreshed');
      t.diagnostic(
        `${chains.length} sessions with ${accessTokens.length} access tokens; killed at ${killedAt} ms; ${failures.length} requests caught in the kill (${failures.join(', ') || 'none'}); ` +
          `${chains.filter((c) => c.inDoubt).length} refresh tokens in doubt, ${lostWithResponse} of them used by the request that died; ${lostCodes.length} codes spent by it`,
      );
      assert.equal(instances[0]!.exitedAlready(), false, instances[0]!.describe());
    });
  });
}

describe('SQLite killed mid-write', { timeout: 120_000 }, () => {
  let database: TestDatabase;
  let instance: Instance | undefined;
  let fixtures: Fixtures;
  let env: Record<string, string>;
  let port: number;

  before(async () => {
    database = await createTestDatabase('sqlite');
    port = await freePort();
    // The sign-ups below all come from this machine's address: its budget of accounts is lifted.
    const config = writeConfig(database.dataDir, { signup: { maxAccountsPerAddress: 0 } });
    env = { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`, GATEHOUSE_CONFIG: config };
    fixtures = await createFixtures(env, 4);
  });

  after(async () => {
    await instance?.stop();
    await database?.drop();
  });

  const sqlitePath = () => join(database.dataDir, 'gatehouse.sqlite');

  /** Opens the file read-only, as a bystander would, and checks it. */
  const inspect = () => {
    const db = new DatabaseSync(sqlitePath(), { readOnly: true });
    try {
      const integrity = db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[];
      const foreignKeys = db.prepare('PRAGMA foreign_key_check').all();
      const migrations = (db.prepare('SELECT name FROM kysely_migration ORDER BY name').all() as { name: string }[]).map((r) => r.name);
      const users = (db.prepare('SELECT email FROM users').all() as { email: string }[]).map((r) => r.email);
      const clients = (db.prepare('SELECT id FROM clients').all() as { id: string }[]).map((r) => r.id);
      return { integrity: integrity.map((r) => r.integrity_check), foreignKeys, migrations, users, clients };
    } finally {
      db.close();
    }
  };

  it('is consistent after a SIGKILL in the middle of writes, and everything acknowledged is there', async (t) => {
    instance = await startInstance('sqlite instance', env, { port });
    const served = instance;
    const handed: { accessToken: string; refreshToken: string }[] = [];
    const signedUp: string[] = [];
    const cliClients: Party[] = [];
    const cliUsers: string[] = [];
    let killed = false;
    const startedAt = Date.now();
    const over = () => killed || Date.now() - startedAt > 8000;

    // Writers in the server: password grants (grant, refresh token, audit) and sign-ups (user, session).
    const grants = async (n: number) => {
      for (let i = 0; !over() && i < 200; i++) {
        const answer = await passwordGrant(served.url, fixtures.firstParty, fixtures.users[n]!.email).catch(networkFailure);
        if (answer.status === 200) handed.push({ accessToken: answer.body.access_token, refreshToken: answer.body.refresh_token });
        else if (!killed) assert.fail(`a password grant failed before the kill: ${answer.status} ${JSON.stringify(answer.body)}`);
      }
    };
    const signups = async (n: number) => {
      for (let i = 0; !over() && i < 200; i++) {
        const email = `signup-${n}-${i}-${Date.now()}@example.com`;
        try {
          const browser = new HttpBrowser();
          const page = await browser.request(`${served.url}/signup`);
          const done = await browser.request(`${served.url}/signup`, { form: { csrf: hiddenField(page.text, 'csrf'), email, name: 'New person', password: PASSWORD } });
          if (done.status === 303) signedUp.push(email);
          else if (!killed) assert.fail(`a sign-up failed before the kill: ${done.status} ${done.text.slice(0, 300)}`);
        } catch (error) {
          if (!killed) throw error;
        }
      }
    };
    // Writers in other processes on the same file: the CLI creating clients and users; the ones
    // running at the moment of the kill are killed too.
    const running = new Set<ReturnType<typeof startCli>>();
    let cliKilled = 0;
    const cli = async (n: number) => {
      for (let i = 0; !over() && i < 50; i++) {
        const args = (i + n) % 2 === 0 ? ['client', 'create', '--name', `CLI ${n}-${i}`, '--scope', 'objects:read', '--json'] : ['user', 'create', '--email', `cli-${n}-${i}@example.com`, '--password', PASSWORD, '--json'];
        const run = startCli(args, env);
        running.add(run);
        const result = await run.result;
        running.delete(run);
        if (result.code === 0) {
          const printed = JSON.parse(result.stdout);
          if (args[0] === 'client') cliClients.push({ id: printed.client_id, secret: printed.client_secret });
          else cliUsers.push(printed.email);
        } else if (result.signal === 'SIGKILL') {
          cliKilled += 1;
        } else {
          assert.fail(`gatehouse ${args.join(' ')} failed: ${result.stderr}`);
        }
      }
    };
    const load = Promise.all([grants(0), grants(1), grants(2), signups(0), signups(1), cli(0), cli(1)]);
    // Awaited below; a failure meanwhile is reported there, not as an unhandled rejection.
    load.catch(() => {});

    await sleep(3000);
    assert.ok(handed.length > 0 && signedUp.length > 0, `the load was writing before the kill: ${handed.length} grants, ${signedUp.length} sign-ups`);
    served.child.kill('SIGKILL');
    for (const run of running) run.child.kill('SIGKILL');
    killed = true;
    await load;
    assert.deepEqual(await served.exited, { code: null, signal: 'SIGKILL' });

    // The file as the dead process left it, read by a bystander.
    const crashed = inspect();
    assert.deepEqual(crashed.integrity, ['ok'], 'PRAGMA integrity_check');
    assert.deepEqual(crashed.foreignKeys, [], 'PRAGMA foreign_key_check');
    assert.deepEqual(crashed.migrations, MIGRATIONS, 'every migration is recorded, once');

    // It starts again on the same folder.
    instance = await startInstance('sqlite instance (restarted)', env, { port });
    const after = inspect();
    assert.deepEqual(after.integrity, ['ok']);
    assert.deepEqual(after.migrations, MIGRATIONS);

    // Everything acknowledged before the kill is there and works.
    const context = `${handed.length} token pairs, ${signedUp.length} sign-ups, ${cliClients.length} CLI clients, ${cliUsers.length} CLI users, ${cliKilled} CLI processes killed`;
    t.diagnostic(context);
    for (const email of [...signedUp, ...cliUsers]) assert.ok(after.users.includes(email), `user ${email} is stored (${context})`);
    for (const client of cliClients) assert.ok(after.clients.includes(client.id), `client ${client.id} is stored (${context})`);
    for (const { accessToken, refreshToken } of handed) {
      const verdict = await introspect(instance.url, fixtures.resourceServer, accessToken);
      assert.equal(verdict.body.active, true, `an access token handed out before the kill is active: ${JSON.stringify(verdict.body)}`);
      const refreshed = await refreshGrant(instance.url, fixtures.firstParty, refreshToken);
      assert.equal(refreshed.status, 200, `a refresh token handed out before the kill refreshes: ${JSON.stringify(refreshed.body)}`);
    }
    for (const email of signedUp.slice(-3)) {
      const answer = await passwordGrant(instance.url, fixtures.firstParty, email);
      assert.equal(answer.status, 200, `${email} signed up before the kill and can sign in: ${JSON.stringify(answer.body)}`);
    }
    for (const client of cliClients.slice(-3)) {
      const answer = await clientCredentials(instance.url, client);
      assert.equal(answer.status, 200, `a client the CLI created before the kill works: ${JSON.stringify(answer.body)}`);
    }
    assert.ok(handed.length >= 5, context);
  });
});

describe('graceful shutdown on SIGTERM', { timeout: 90_000 }, () => {
  let database: TestDatabase;
  let instance: Instance;
  let fixtures: Fixtures;

  before(async () => {
    database = await createTestDatabase('sqlite');
    const port = await freePort();
    const env = { GATEHOUSE_DATA_DIR: database.dataDir, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: `http://127.0.0.1:${port}` };
    fixtures = await createFixtures(env, 1);
    instance = await startInstance('instance', env, { port });
  });

  after(async () => {
    await instance?.stop();
    await database?.drop();
  });

  /**
   * A password grant on a connection of its own. `split`: the headers and half the body now, the
   * rest when `finish` is called, so until then the request is certainly in flight.
   */
  const rawPasswordGrant = (port: number, split: boolean) => {
    const body = new URLSearchParams({ grant_type: 'password', username: fixtures.users[0]!.email, password: PASSWORD, scope: 'objects:read' }).toString();
    const socket: Socket = connect({ port, host: '127.0.0.1' });
    let data = '';
    let answeredAt = 0;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answeredAt ||= Date.now();
      data += chunk;
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => {});
    const headers = [
      'POST /token HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      `Authorization: ${basic(fixtures.firstParty.id, fixtures.firstParty.secret)}`,
      'Content-Type: application/x-www-form-urlencoded',
      `Content-Length: ${body.length}`,
      'Connection: close',
    ];
    const half = split ? Math.floor(body.length / 2) : body.length;
    const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`${headers.join('\r\n')}\r\n\r\n${body.slice(0, half)}`);
    return {
      /** Resolves once the server process holds the connection (it accepted it). */
      accepted: async (pid: number) => {
        await connected;
        const localPort = socket.localPort!;
        // Answered already: accepted, obviously.
        await waitFor('the server to accept the connection', async () => (answeredAt || ownerOfConnection(port, localPort, [pid]) === pid ? true : undefined), 5000, 2);
      },
      finish: () => socket.write(body.slice(half)),
      /** The status and body, once the server has answered and closed. */
      answer: async () => {
        await Promise.race([closed, sleep(15_000)]);
        socket.destroy();
        return { status: Number(data.slice(9, 12)), text: data.slice(data.indexOf('\r\n\r\n') + 4), at: answeredAt };
      },
    };
  };

  it('finishes the requests in flight, refuses new connections, and exits 0', async (t) => {
    // Slow requests: the headers and half the body are there; the rest comes after SIGTERM.
    const slow = Array.from({ length: 6 }, () => rawPasswordGrant(instance.port, true));
    await sleep(300);
    // Whole password grants fired just before the signal (argon2 keeps each busy for tens of ms),
    // the signal sent as soon as the server has accepted their connections.
    const quick = Array.from({ length: 4 }, () => rawPasswordGrant(instance.port, false));
    for (const request of quick) await request.accepted(instance.pid);
    const signalledAt = Date.now();
    instance.child.kill('SIGTERM');
    await waitFor('the shutdown to begin', async () => (instance.stdout().includes('SIGTERM: finishing requests in flight') ? true : undefined), 10_000);
    assert.equal(await canConnect(instance.port), false, 'a new connection is refused once shutting down');
    assert.equal(instance.exitedAlready(), false, 'it waits for the requests in flight');

    for (const request of slow) request.finish();
    const answers = await Promise.all([...slow, ...quick].map((r) => r.answer()));
    for (const answer of answers) {
      assert.equal(answer.status, 200, `a request in flight at SIGTERM completes: ${answer.text}\n${instance.describe()}`);
      assert.ok(JSON.parse(answer.text).access_token);
    }
    for (const answer of answers.slice(0, slow.length)) assert.ok(answer.at > signalledAt, 'the slow ones were answered after the signal');
    t.diagnostic(`${answers.filter((a) => a.at > signalledAt).length} of ${answers.length} requests were answered after SIGTERM`);

    assert.deepEqual(await instance.exited, { code: 0, signal: null }, instance.describe());
    assert.equal(await canConnect(instance.port), false);
  });
});

