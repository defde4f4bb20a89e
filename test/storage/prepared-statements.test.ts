import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { openDatabase, migrate, type DatabaseHandle } from '../../src/storage/database.ts';
import { createStorage, sweepOtherTables, sweepRefreshTokens } from '../../src/storage/kysely/index.ts';
import { isQueryTimeout } from '../../src/storage/prepared-statements.ts';
import { isUnavailable } from '../../src/http/oauth/errors.ts';
import { kyselyApiKeys } from '../../src/storage/kysely/api-keys.ts';
import { kyselyAudit, kyselyRevocations } from '../../src/storage/kysely/audit.ts';
import { kyselyConsents, kyselyPendingAuthorizations, kyselySessions } from '../../src/storage/kysely/browser.ts';
import { kyselyClients } from '../../src/storage/kysely/clients.ts';
import { kyselyCodes } from '../../src/storage/kysely/codes.ts';
import { kyselyGrants, kyselyRefreshTokens } from '../../src/storage/kysely/grants.ts';
import { kyselyPasswordResets } from '../../src/storage/kysely/password-resets.ts';
import { kyselyUsers } from '../../src/storage/kysely/users.ts';
import { COLUMNS } from '../../src/storage/schema.ts';
import type { Storage } from '../../src/storage/repositories.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { aClient, aCode, aGrant, aKey, anEvent, aRefreshToken, aUser, exchangeOf, NOW, successorAt } from '../support/records.ts';

/** Statements the server has prepared on its connections, read through a connection of its own. */
async function preparedStatements(handle: DatabaseHandle): Promise<string[]> {
  const { rows } = await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(handle.db);
  return rows.map((row) => row.statement);
}

/**
 * A fresh database for a suite, opened on one connection: every query of the suite sees the
 * statements the earlier ones prepared, and the server's view of them is that connection's.
 */
function oneConnection(): { database: TestDatabase; handle: DatabaseHandle } {
  const one = {} as { database: TestDatabase; handle: DatabaseHandle };
  before(async () => {
    one.database = await createTestDatabase('postgres');
    one.handle = openDatabase({ databaseUrl: one.database.databaseUrl, poolSize: 1 });
    await migrate(one.handle);
  });
  after(async () => {
    await one.handle.close();
    await one.database.drop();
  });
  return one;
}

describe('PostgreSQL prepared statements', () => {
  const one = oneConnection();

  it('prepares a statement once it repeats, and never a one-off', async () => {
    const lookup = () => one.handle.db.selectFrom('users').select('id').where('email', '=', 'nobody@example.com').execute();
    await lookup();
    assert.ok(!(await preparedStatements(one.handle)).some((text) => text.includes('"email" = $1')), 'a statement run once stays unnamed');
    await lookup();
    await lookup();
    const prepared = (await preparedStatements(one.handle)).filter((text) => text.includes('"email" = $1'));
    assert.equal(prepared.length, 1, 'the repeated statement is prepared once');
  });

  it('plans a prepared statement once for the connection, not on every run', async () => {
    const lookup = () => one.handle.db.selectFrom('refresh_tokens').select('digest').where('grant_id', '=', 'g-none').where('client_id', '=', 'c-none').execute();
    for (let run = 0; run < 10; run++) await lookup();
    const { rows } = await sql<{ generic_plans: string; custom_plans: string }>`
      select generic_plans, custom_plans from pg_prepared_statements where statement like '%"grant_id" = $1 and "client_id" = $2%'`.execute(one.handle.db);
    assert.equal(rows.length, 1);
    assert.equal(Number(rows[0]!.custom_plans), 0);
    assert.equal(Number(rows[0]!.generic_plans), 9, 'the plan of each run after the first (which was unnamed) is the generic one');
  });

  it('compiles no statement to machine code, not even a scan costed as ruled out', async () => {
    // With sequential scans ruled out, a scan of a table of four rows is costed far above the JIT
    // thresholds, and PostgreSQL compiled each run of the key store's reload for 40 ms or more.
    const explain = () => sql`explain (analyze, format json) select kid from signing_keys where state <> 'retired' or expires_at > 0 order by created_at`.execute(one.handle.db);
    for (let run = 0; run < 3; run++) {
      const { rows } = await explain();
      const plan = JSON.stringify(rows);
      assert.match(plan, /Seq Scan/, 'the statement scans the table');
      assert.doesNotMatch(plan, /"JIT"/);
    }
  });

  it('answers with the same rows whether a statement is prepared or not', async () => {
    await one.handle.db.insertInto('users').values({ id: 'u1', email: 'ada@example.com', name: 'Ada', password_hash: 'x', email_verified: 0, disabled_at: null, created_at: 1, updated_at: 1 }).execute();
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await one.handle.db.selectFrom('users').selectAll().where('id', '=', 'u1').execute());
    for (const rows of results) assert.deepEqual(rows, results[0]);
    assert.equal(results[0]![0]!.email, 'ada@example.com');
  });

  it('keeps answering when a newer instance changes a table under a prepared `select *`', async () => {
    const read = () => one.handle.db.selectFrom('users').selectAll().where('id', '=', 'u1').executeTakeFirstOrThrow();
    await read();
    await read();
    // Another instance's migration, on a connection of its own.
    const other = new pg.Client({ connectionString: one.database.databaseUrl });
    await other.connect();
    try {
      await other.query('alter table users add column nickname text');
    } finally {
      await other.end();
    }
    const row = (await read()) as Record<string, unknown>;
    assert.equal(row.email, 'ada@example.com');
    assert.equal(row.nickname, null);
    // The connection with the stale statement was replaced: the next reads are prepared afresh.
    assert.equal(((await read()) as Record<string, unknown>).nickname, null);
    assert.equal(((await read()) as Record<string, unknown>).nickname, null);
  });

  it('runs transactions through the same statements', async () => {
    await one.handle.db.transaction().execute(async (trx) => {
      await trx.updateTable('users').set({ name: 'Ada L.' }).where('id', '=', 'u1').execute();
      await trx.updateTable('users').set({ name: 'Ada Lovelace' }).where('id', '=', 'u1').execute();
    });
    const row = await one.handle.db.selectFrom('users').select('name').where('id', '=', 'u1').executeTakeFirstOrThrow();
    assert.equal(row.name, 'Ada Lovelace');
  });
});

/**
 * Whether an EXPLAIN output reads one of Gatehouse's tables other than by key: a sequential scan, or
 * an index scan without an index condition (the whole index in order). The catalog, which only the
 * migrator reads, does not count.
 */
function planScansTables(plan: string[]): boolean {
  return plan.some((line, at) => {
    const scan = /(Seq Scan|Index Scan|Index Only Scan|Bitmap Index Scan)( using \w+)? on (\w+)/.exec(line);
    if (!scan || scan[3]!.startsWith('pg_')) return false;
    if (scan[1] === 'Seq Scan') return true;
    // The node's own lines, up to the next node.
    const details = plan.slice(at + 1).findIndex((next) => next.includes('->'));
    const own = plan.slice(at + 1, details === -1 ? undefined : at + 1 + details);
    return !own.some((detail) => detail.trim().startsWith('Index Cond:'));
  });
}

describe('PostgreSQL statements that go unanswered', () => {
  let database: TestDatabase;
  let handle: DatabaseHandle;
  before(async () => {
    database = await createTestDatabase('postgres');
    handle = openDatabase({ databaseUrl: database.databaseUrl, poolSize: 1, queryTimeoutMs: 300 });
  });
  after(async () => {
    await handle.close();
    await database.drop();
  });
  const backend = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(handle.db)).rows[0]!.pid;

  it('fail once the query timeout has passed, and their connection is closed instead of handed out again', async () => {
    const before = await backend();
    const started = Date.now();
    await assert.rejects(sql`select pg_sleep(5)`.execute(handle.db), (error: Error) => isQueryTimeout(error) && isUnavailable(error));
    assert.ok(Date.now() - started < 3000, 'the statement failed at the timeout, not when it ended');
    // The pool's one connection is still busy with the sleep: the next statement gets a new one, at once.
    const started2 = Date.now();
    assert.notEqual(await backend(), before);
    assert.ok(Date.now() - started2 < 3000);
  });

  it('fail a transaction at the timeout, and the pool goes on with a new connection', async () => {
    const started = Date.now();
    await assert.rejects(
      handle.db.transaction().execute(async (trx) => {
        await sql`select 1`.execute(trx);
        await sql`select pg_sleep(5)`.execute(trx);
      }),
      (error: Error) => isQueryTimeout(error),
    );
    assert.ok(Date.now() - started < 3000, `failed after ${Date.now() - started} ms`);
    assert.equal(typeof (await backend()), 'number', 'the pool goes on with a new connection');
  });
});

describe('PostgreSQL plans of the protocol endpoints’ statements', () => {
  const one = oneConnection();

  it('reads every table by key, even in plans made while the tables are all but empty (a new deployment)', async () => {
    // A prepared statement is planned once for its connection; a plan that scans a table that is
    // small now would scan it for as long as the connection lives, however large it grows.
    const { db } = one.handle;
    const users = kyselyUsers(db, 'postgres');
    const clients = kyselyClients(db);
    const grants = kyselyGrants(db, 'postgres');
    const refreshTokens = kyselyRefreshTokens(db, 'postgres');
    const codes = kyselyCodes(db, 'postgres');
    const revocations = kyselyRevocations(db);
    const audit = kyselyAudit(db, 'postgres');
    const sessions = kyselySessions(db, 'postgres');
    const consents = kyselyConsents(db);
    const pending = kyselyPendingAuthorizations(db);
    const apiKeys = kyselyApiKeys(db);

    // Each use of the token, authorization, introspection, revocation and userinfo endpoints, three
    // times (a statement is named on its second run).
    for (let run = 0; run < 3; run++) {
      const user = await users.create(aUser(), NOW);
      const client = await clients.create(aClient({ grantTypes: ['authorization_code', 'refresh_token'] }), NOW);
      assert.ok(await users.findById(user.id));
      assert.ok(await users.findByEmail(user.email));
      assert.ok(await clients.find(client.id));
      assert.ok(await clients.findWithSecrets(client.id));
      assert.equal(await clients.recordAssertion(client.id, randomUUID(), NOW + 60), 'recorded');

      const code = aCode(client.id, user.id);
      await codes.insert(code);
      assert.ok(await codes.find(code.digest));
      const exchange = exchangeOf(code);
      assert.equal((await codes.consume(code.digest, exchange, NOW)).outcome, 'consumed');
      assert.ok(await grants.find(exchange.grant.id));

      const token = aRefreshToken(exchange.grant);
      await refreshTokens.insert(token);
      assert.ok(await refreshTokens.find(token.digest));
      assert.equal((await refreshTokens.rotate(token.digest, successorAt(digestOf(createOpaqueToken('rt')), NOW), NOW)).outcome, 'rotated');
      assert.equal(await grants.revoke(exchange.grant.id, NOW), true);

      const jti = randomUUID();
      await revocations.revokeJti(jti, NOW + 60);
      assert.equal(await revocations.isJtiRevoked(jti), true);
      assert.equal(await revocations.isAnyJtiRevoked([randomUUID(), jti]), true);
      await audit.append([anEvent({ clientId: client.id, userId: user.id })]);

      const session = { digest: digestOf(createOpaqueToken('ss')), sid: randomUUID(), userId: user.id, authTime: NOW, createdAt: NOW, expiresAt: NOW + 3600, address: null, device: null, lastUsedAt: null };
      await sessions.create(session);
      assert.ok(await sessions.find(session.digest));
      // A sign-out, which voids the session's unexchanged codes too.
      assert.equal((await sessions.delete(session.digest))?.sid, session.sid);
      await consents.save({ userId: user.id, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
      assert.ok(await consents.find(user.id, client.id));
      const request = { id: randomUUID(), clientId: client.id, request: { scope: 'openid' }, createdAt: NOW, expiresAt: NOW + 600 };
      await pending.create(request);
      assert.ok(await pending.find(request.id));
      assert.equal(await pending.take(request.id), true);

      const value = createOpaqueToken('ak');
      await apiKeys.create({ id: randomUUID(), clientId: client.id, name: 'CI', digest: digestOf(value), prefix: value.slice(0, 12), scopes: ['invoices:read'], createdAt: NOW, expiresAt: null, revokedAt: null, lastUsedAt: null });
      assert.ok(await apiKeys.findByDigest(digestOf(value)));
    }

    const { rows: statements } = await sql<{ name: string; statement: string; parameters: number }>`
      select name, statement, cardinality(parameter_types) as parameters from pg_prepared_statements`.execute(db);
    assert.ok(statements.length >= 20, `the uses above prepared ${statements.length} statements`);
    const scans: string[] = [];
    for (const { name, statement, parameters } of statements) {
      // The connection plans generically: EXPLAIN shows the plan every run of the statement uses.
      const nulls = parameters > 0 ? `(${Array(parameters).fill('null').join(', ')})` : '';
      const { rows } = await sql<{ 'QUERY PLAN': string }>`explain execute ${sql.raw(name + nulls)}`.execute(db);
      const plan = rows.map((row) => row['QUERY PLAN']);
      if (planScansTables(plan)) scans.push(`${statement}\n${plan.join('\n')}`);
    }
    assert.deepEqual(scans, []);
  });
});

/**
 * The plan of every prepared statement whose text matches `pattern`, as the connection runs it
 * (generically: EXPLAIN without ANALYZE, any parameters), one string per statement.
 */
async function plansOf(db: DatabaseHandle['db'], pattern: string): Promise<{ statement: string; plan: string }[]> {
  const { rows: statements } = await sql<{ name: string; statement: string; parameters: number }>`
    select name, statement, cardinality(parameter_types) as parameters from pg_prepared_statements where statement like ${pattern}`.execute(db);
  const plans = [];
  for (const { name, statement, parameters } of statements) {
    const nulls = parameters > 0 ? `(${Array(parameters).fill('null').join(', ')})` : '';
    const { rows } = await sql<{ 'QUERY PLAN': string }>`explain execute ${sql.raw(name + nulls)}`.execute(db);
    plans.push({ statement, plan: rows.map((row) => row['QUERY PLAN']).join('\n') });
  }
  return plans;
}

/**
 * The statements `work` runs on SQLite through the repositories it makes over the database it is
 * given, each with its plan (EXPLAIN QUERY PLAN with the parameters it ran with, one line a step;
 * the keys' cascades are steps of the statement that deletes the parent), in the order they ran.
 */
async function sqlitePlansOf(db: DatabaseHandle['db'], work: (recorded: DatabaseHandle['db']) => Promise<unknown>): Promise<{ statement: string; plan: string }[]> {
  const executor = db.getExecutor();
  const run: CompiledQuery[] = [];
  await work(
    db.withPlugin({
      transformQuery({ node, queryId }) {
        run.push(executor.compileQuery(node, queryId));
        return node;
      },
      transformResult: async ({ result }) => result,
    }),
  );
  const plans = [];
  for (const { sql: statement, parameters } of run) {
    const { rows } = await db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${statement}`, [...parameters]));
    plans.push({ statement, plan: rows.map((row) => row.detail).join('\n') });
  }
  return plans;
}

describe('PostgreSQL plans of the sweep of expired rows', () => {
  const one = oneConnection();

  it('reads each table’s expired rows in expiry order and stops after the batch, however many have expired', async () => {
    // The tables of a server whose sweeps fell behind: most rows expired, the statistics up to date.
    await sql`insert into clients (id, name, type, created_at, updated_at) values ('c1', 'App', 'confidential', 0, 0)`.execute(one.handle.db);
    await sql`insert into users (id, email, password_hash, created_at, updated_at) values ('u1', 'ada@example.com', 'x', 0, 0)`.execute(one.handle.db);
    // Half of the grants ended, one in ten revoked, all past the lifetime bound below.
    await sql`insert into grants (id, client_id, user_id, kind, scopes, created_at, expires_at, revoked_at)
      select 'g' || i, 'c1', 'u1', 'authorization_code', '[]', i, case when i % 2 = 0 then ${NOW} - i end, case when i % 10 = 1 then ${NOW} - i end
      from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into refresh_tokens (digest, grant_id, client_id, scopes, created_at, expires_at, consumed_at)
      select 'r' || i, 'g' || (1 + i % 20000), 'c1', '[]', i, ${NOW} - 50000 + i, i from generate_series(1, 60000) i`.execute(one.handle.db);
    await sql`insert into audit_events (at, kind, outcome, client_id, user_id, data)
      select ${NOW} - i, 'token.issued', 'success', 'c1', 'u1', '{}' from generate_series(1, 60000) i`.execute(one.handle.db);
    await sql`insert into sessions (digest, user_id, auth_time, created_at, expires_at)
      select 's' || i, 'u1', 0, 0, ${NOW} - 30000 + i from generate_series(1, 40000) i`.execute(one.handle.db);
    await sql`insert into revoked_tokens (jti, expires_at) select 'j' || i, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into authorization_codes (digest, client_id, user_id, redirect_uri, scopes, auth_time, created_at, expires_at)
      select 'a' || i, 'c1', 'u1', 'https://app.example/cb', '[]', 0, 0, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into client_assertions (client_id, jti, expires_at) select 'c1', 'j' || i, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into authorization_requests (id, client_id, request, created_at, expires_at)
      select 'q' || i, 'c1', '{}', 0, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into password_resets (digest, user_id, created_at, expires_at)
      select 'p' || i, 'u1', 0, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into email_verifications (digest, user_id, email, created_at, expires_at)
      select 'v' || i, 'u1', 'ada@example.com', 0, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into email_changes (digest, user_id, from_email, to_email, created_at, expires_at)
      select 'e' || i, 'u1', 'ada@example.com', 'ada@example.org', 0, ${NOW} - 10000 + i from generate_series(1, 20000) i`.execute(one.handle.db);
    // API keys: one in four revoked, one in four expired, all long ago; the rest live.
    await sql`insert into api_keys (id, client_id, name, digest, prefix, scopes, created_at, expires_at, revoked_at)
      select 'k' || i, 'c1', 'Key', 'kd' || i, 'gate_ak_', '[]', 0, case when i % 4 = 1 then ${NOW} - 10000000 + i end, case when i % 4 = 2 then ${NOW} - 10000000 + i end
      from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);

    const policy = { accessTokenTtlSeconds: 3600, auditRetentionSeconds: 86_400, apiKeyRetentionSeconds: 30 * 86_400, refreshTokenMaxLifetimeSeconds: 365 * 86_400 };
    // Twice, so that the sweep's statements are named (a statement is named on its second run).
    for (let run = 0; run < 2; run++) {
      await one.handle.db.transaction().execute((trx) => sweepRefreshTokens(trx, NOW, 500, policy, 'postgres'));
      await sweepOtherTables(one.handle.db, NOW, 500, policy);
    }
    // The signing keys are a handful of rows, read whole (see openDatabase).
    const plans = (await plansOf(one.handle.db, 'delete from%')).filter(({ statement }) => !statement.startsWith('delete from "signing_keys"'));
    assert.equal(plans.length, 12, 'one statement per table swept');
    for (const { statement, plan } of plans) {
      const expiry = /Index Scan using (\w+_expiry|audit_events_at|api_keys_revoked) on/.exec(plan);
      assert.ok(expiry, `reads the expiry index in order:\n${statement}\n${plan}`);
      assert.doesNotMatch(plan, /Bitmap|Hash (Semi )?Join/, `collects no more than the batch:\n${statement}\n${plan}`);
      assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
    }
    // The refresh tokens of revoked, ended and too old grants, and the ended grants themselves: each
    // read from a batch of grants, taken through an index (see sweepRefreshTokens).
    const startsFrom = (index: string) => new RegExp(`Limit .*\\n\\s+->  Index Scan using ${index} on grants`);
    const tokens = plans.find(({ statement }) => statement.startsWith('delete from "refresh_tokens"'))!;
    for (const index of ['grants_revoked_unended', 'grants_expiry', 'grants_unended_created']) assert.match(tokens.plan, startsFrom(index), `${tokens.statement}\n${tokens.plan}`);
    const grants = plans.find(({ statement }) => statement.startsWith('delete from "grants"'))!;
    assert.match(grants.plan, startsFrom('grants_expiry'), `${grants.statement}\n${grants.plan}`);
  });
});

describe('PostgreSQL plans of the admin API’s lists', () => {
  const one = oneConnection();

  it('reads the audit log of one kind through an index on kind and time, newest first', async () => {
    // A log of 20,000 events of sixteen kinds, one in a hundred of the kind asked for.
    await sql`insert into audit_events (at, kind, outcome, client_id, user_id, data)
      select ${NOW} - i, case when i % 100 = 0 then 'refresh_token.reused' else 'kind.' || (i % 15) end, 'success', 'c' || (i % 50), 'u' || (i % 500), '{}'
      from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`analyze audit_events`.execute(one.handle.db);
    const audit = kyselyAudit(one.handle.db, 'postgres');
    for (let run = 0; run < 3; run++) {
      const events = await audit.query({ kind: 'refresh_token.reused', limit: 10 });
      assert.deepEqual(events.map((event) => event.at), [...Array(10).keys()].map((n) => NOW - 100 * (n + 1)));
    }
    const plans = await plansOf(one.handle.db, '%from "audit_events" where "kind" = $1 order by%');
    assert.equal(plans.length, 1);
    for (const { statement, plan } of plans) {
      assert.match(plan, /Index Scan Backward using audit_events_kind on audit_events/, `${statement}\n${plan}`);
      assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
    }
  });

  it('reads the next page of a rare kind through the index on kind and time, planned for the kind asked for', async () => {
    // 40,000 events, 200 a second, of sixteen kinds; one in 2,000 of the kind asked for.
    await sql`insert into audit_events (at, kind, outcome, client_id, user_id, data)
      select ${NOW} - i / 200, case when i % 2000 = 0 then 'admin.refused' else 'kind.' || (i % 15) end, 'success', 'c' || (i % 50), 'u' || (i % 500), '{}'
      from generate_series(1, 40000) i`.execute(one.handle.db);
    await sql`analyze audit_events`.execute(one.handle.db);
    const audit = kyselyAudit(one.handle.db, 'postgres');
    let after = { at: 0, id: 0 };
    for (let run = 0; run < 3; run++) {
      const first = await audit.query({ kind: 'admin.refused', limit: 2 });
      after = { at: first.at(-1)!.at, id: first.at(-1)!.id! };
      const next = await audit.query({ kind: 'admin.refused', after, limit: 2 });
      assert.deepEqual(next.map((event) => event.at), [NOW - 30, NOW - 40]);
    }
    const { rows } = await sql<{ name: string; statement: string }>`
      select name, statement from pg_prepared_statements where statement like '%from "audit_events" where "kind" = $1 and (at, id) <%'`.execute(one.handle.db);
    assert.equal(rows.length, 1);
    // As the repository runs it: planned for the values (see kyselyAudit).
    const plan = await one.handle.db.transaction().execute(async (trx) => {
      await sql`set local plan_cache_mode = force_custom_plan`.execute(trx);
      const explained = await sql<{ 'QUERY PLAN': string }>`explain execute ${sql.raw(`${rows[0]!.name}('admin.refused', ${after.at}, ${after.id}, 3)`)}`.execute(trx);
      return explained.rows.map((row) => row['QUERY PLAN']).join('\n');
    });
    assert.match(plan, /Index Scan Backward using audit_events_kind on audit_events/, `${rows[0]!.statement}\n${plan}`);
    assert.equal(planScansTables(plan.split('\n')), false, plan);
  });

  it('reads a page of users or of applications in creation order through an index, stopping after the page', async () => {
    await sql`insert into users (id, email, password_hash, created_at, updated_at)
      select md5('u' || i), 'user' || i || '@example.com', 'x', ${NOW} - i / 2, 0 from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`insert into clients (id, name, type, created_at, updated_at)
      select md5('c' || i), 'App', 'confidential', ${NOW} - i / 2, 0 from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const lists = { users: kyselyUsers(one.handle.db, 'postgres'), clients: kyselyClients(one.handle.db) };
    for (const [table, list] of Object.entries(lists)) {
      // The first page and the next, each three times (a statement is named on its second run).
      for (let run = 0; run < 3; run++) {
        const first = await list.list({ limit: 101 });
        const last = first.at(-1)!;
        const next = await list.list({ after: { createdAt: last.createdAt, id: last.id }, limit: 101 });
        const all = [...first, ...next].map(({ createdAt, id }) => ({ createdAt, id }));
        assert.deepEqual(all, [...all].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)));
        assert.equal(new Set(all.map(({ id }) => id)).size, 202);
      }
      const plans = await plansOf(one.handle.db, `%from "${table}"%order by "created_at", "id" limit%`);
      assert.equal(plans.length, 2, `the first page and the next of ${table}`);
      for (const { statement, plan } of plans) {
        assert.match(plan, new RegExp(`^Limit .*\\n  ->  Index Scan using ${table}_created on ${table}`), `${statement}\n${plan}`);
        assert.doesNotMatch(plan, /Sort|Seq Scan|Bitmap/, `${statement}\n${plan}`);
      }
    }
  });

  it('finds a user by email through the email’s unique index, not by reading the users in order', async () => {
    const users = kyselyUsers(one.handle.db, 'postgres');
    const user = await users.create(aUser(), NOW);
    // Three times: a statement is named on its second run, and then planned generically.
    for (let run = 0; run < 3; run++) assert.deepEqual(await users.list({ limit: 101 }, { email: user.email }), [user]);
    const plans = await plansOf(one.handle.db, 'select % from "users" where "email" = $1 order by%');
    assert.equal(plans.length, 1);
    assert.match(plans[0]!.plan, /Index Scan using users_email_key on users/);
    assert.match(plans[0]!.plan, /Index Cond: \(email = \$1\)/);
  });

  it('reads the newest grants, of all, of one client or of one user, a page at a time, through an index in that order, stopping after the page', async () => {
    // 20,000 grants, two in five of one client; the other 2,999 clients have a handful each.
    await sql`insert into clients (id, name, type, created_at, updated_at) select 'grantee' || i, 'App', 'confidential', 0, 0 from generate_series(0, 2999) i`.execute(one.handle.db);
    await sql`insert into users (id, email, password_hash, created_at, updated_at) select 'grantor' || i, 'grantor' || i || '@example.com', 'x', 0, 0 from generate_series(0, 4999) i`.execute(one.handle.db);
    await sql`insert into grants (id, client_id, user_id, kind, scopes, created_at)
      select md5('g' || i), 'grantee' || case when i % 5 < 2 then 1 else i % 3000 end, 'grantor' || (i % 5000), 'authorization_code', '[]', ${NOW} - i / 2
      from generate_series(1, 20000) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const grants = kyselyGrants(one.handle.db, 'postgres');
    const newestFirst = (list: { createdAt: number; id: string }[]) =>
      assert.deepEqual(list.map(({ createdAt, id }) => ({ createdAt, id })), [...list].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1)).map(({ createdAt, id }) => ({ createdAt, id })));
    for (let run = 0; run < 3; run++) {
      for (const filter of [{}, { clientId: 'grantee1' }, { userId: 'grantor7' }]) {
        const first = await grants.list({ ...filter, limit: 2 });
        assert.equal(first.length, 2);
        const last = first.at(-1)!;
        const next = await grants.list({ ...filter, after: { createdAt: last.createdAt, id: last.id }, limit: 2 });
        assert.equal(next.length, 2);
        newestFirst([...first, ...next]);
      }
    }
    const plans = await plansOf(one.handle.db, '%from "grants" %order by "created_at" desc, "id" limit%');
    assert.equal(plans.length, 6, 'the first page and the next of all grants, of one client’s and of one user’s');
    for (const { statement, plan } of plans) {
      const index = statement.includes('"client_id" = $1') ? 'grants_client_created' : statement.includes('"user_id" = $1') ? 'grants_user_created' : 'grants_created';
      assert.match(plan, new RegExp(`^Limit .*\\n  ->  Index Scan using ${index} on grants`), `${statement}\n${plan}`);
      assert.doesNotMatch(plan, /Sort|Seq Scan|Bitmap/, `${statement}\n${plan}`);
    }
  });

  it('reads the audit log of a user with one client through the user’s events, however many the client has', async () => {
    // 40,000 events of 5,000 users, two in five of one client.
    await sql`insert into audit_events (at, kind, outcome, client_id, user_id, data)
      select ${NOW} - i, 'token.issued', 'success', case when i % 5 < 2 then 'busy' else 'app' || (i % 3000) end, 'member' || (i % 5000), '{}'
      from generate_series(1, 40000) i`.execute(one.handle.db);
    await sql`analyze audit_events`.execute(one.handle.db);
    const audit = kyselyAudit(one.handle.db, 'postgres');
    for (let run = 0; run < 3; run++) {
      const events = await audit.query({ userId: 'member7', clientId: 'busy', limit: 100 });
      assert.deepEqual(events.map((event) => event.at), [...Array(40000 / 5000).keys()].map((n) => NOW - 7 - 5000 * n).filter((at) => (NOW - at) % 5 < 2));
    }
    const plans = await plansOf(one.handle.db, '%from "audit_events" where %client_id% and "user_id" = %');
    assert.equal(plans.length, 1);
    for (const { statement, plan } of plans) {
      assert.match(plan, /Index Scan.* (using|on) audit_events_user\b/, `reads the user’s events:\n${statement}\n${plan}`);
      assert.doesNotMatch(plan, /audit_events_client|BitmapAnd/, `and not the client’s:\n${statement}\n${plan}`);
      assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
    }
  });
});

describe('PostgreSQL plans of a client’s deletion', () => {
  const one = oneConnection();
  // 5,000 users and 2,000 clients.
  before(async () => {
    await sql`insert into users (id, email, password_hash, created_at, updated_at) select 'u' || i, 'u' || i || '@example.com', 'x', 0, 0 from generate_series(0, 4999) i`.execute(one.handle.db);
    await sql`insert into clients (id, name, type, created_at, updated_at) select 'c' || i, 'App', 'confidential', 0, 0 from generate_series(0, 1999) i`.execute(one.handle.db);
  });

  it('finds the consents given to the client through an index on the client, not by walking every consent', async () => {
    // 20,000 consents of the 5,000 users to the 2,000 clients.
    await sql`insert into consents (user_id, client_id, scopes, created_at, updated_at)
      select 'u' || (i / 4), 'c' || (i % 2000), '[]', 0, 0 from generate_series(0, 19999) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const clients = kyselyClients(one.handle.db);
    for (const id of ['c1', 'c2', 'c3']) assert.equal(await clients.delete(id), true);
    assert.equal(Number((await sql<{ n: string }>`select count(*) as n from consents`.execute(one.handle.db)).rows[0]!.n), 20000 - 3 * 10);
    const plans = await plansOf(one.handle.db, 'delete from "consents" where "client_id" = $1');
    assert.equal(plans.length, 1);
    for (const { statement, plan } of plans) {
      assert.match(plan, /Index Scan (using|on) consents_client\b/, `${statement}\n${plan}`);
      assert.doesNotMatch(plan, /consents_pk/, `${statement}\n${plan}`);
    }
  });

  it('finds the client’s codes and waiting authorization requests through an index on the client, in its statements and in its keys’ cascades', async () => {
    // 20,000 codes of the 5,000 users, one in two exchanged, and 20,000 authorization requests waiting
    // for a person, ten of each to every client (of those the test above left).
    await sql`insert into authorization_codes (digest, client_id, user_id, redirect_uri, scopes, auth_time, created_at, expires_at, consumed_at)
      select md5('code' || i), c.id, 'u' || (i / 4), 'https://app.example/cb', '[]', ${NOW}, ${NOW}, ${NOW} + 600, case when i % 2 = 0 then ${NOW}::bigint end
      from generate_series(0, 19999) i join clients c on c.id = 'c' || (i % 2000)`.execute(one.handle.db);
    await sql`insert into authorization_requests (id, client_id, request, created_at, expires_at)
      select md5('request' || i), c.id, '{}', ${NOW}, ${NOW} + 1800 from generate_series(0, 19999) i join clients c on c.id = 'c' || (i % 2000)`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const count = async (table: string) => Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(one.handle.db)).rows[0]!.n);
    const before = { authorization_codes: await count('authorization_codes'), authorization_requests: await count('authorization_requests') };
    const clients = kyselyClients(one.handle.db);
    // Three times: a statement is named on its second run, and then planned generically.
    for (const id of ['c4', 'c5', 'c6']) assert.equal(await clients.delete(id), true);
    for (const table of ['authorization_codes', 'authorization_requests'] as const) {
      assert.equal(await count(table), before[table] - 3 * 10);
      const plans = await plansOf(one.handle.db, `delete from "${table}" where "client_id" = $1`);
      assert.equal(plans.length, 1);
      // The key's cascade runs this statement for each client deleted (in PostgreSQL's own words), planned as the connection plans.
      await sql`prepare cascade (text) as delete from only ${sql.table(table)} where $1 operator(pg_catalog.=) client_id`.execute(one.handle.db);
      const { rows } = await sql<{ 'QUERY PLAN': string }>`explain execute cascade (null)`.execute(one.handle.db);
      await sql`deallocate cascade`.execute(one.handle.db);
      plans.push({ statement: `the cascade of clients' key to ${table}`, plan: rows.map((row) => row['QUERY PLAN']).join('\n') });
      for (const { statement, plan } of plans) {
        assert.match(plan, new RegExp(`Index Scan (using|on) ${table}_client\\b`), `${statement}\n${plan}`);
        assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
      }
    }
  });
});

describe('SQLite plans of a user’s and a client’s deletion', () => {
  let database: TestDatabase;
  let handle: DatabaseHandle;
  before(async () => {
    database = await createTestDatabase('sqlite');
    handle = openDatabase({ sqlitePath: join(database.dataDir, 'gatehouse.sqlite') });
    await migrate(handle);
  });
  after(async () => {
    await handle.close();
    await database.drop();
  });

  it('reads every table by key, in the statements and in the keys’ cascades, the client’s codes and waiting authorization requests through an index on the client', async () => {
    const { db } = handle;
    const user = await kyselyUsers(db, 'sqlite').create(aUser(), NOW);
    const other = await kyselyUsers(db, 'sqlite').create(aUser(), NOW);
    const client = await kyselyClients(db).create(aClient({ ownerUserId: user.id, grantTypes: ['authorization_code', 'refresh_token'] }), NOW);
    // What is issued to the user, and to their application for another user.
    const code = aCode(client.id, other.id);
    await kyselyCodes(db, 'sqlite').insert(code);
    await kyselyCodes(db, 'sqlite').insert(aCode(client.id, user.id));
    await kyselyPendingAuthorizations(db).create({ id: randomUUID(), clientId: client.id, request: { scope: 'openid' }, createdAt: NOW, expiresAt: NOW + 600 });
    for (const grant of [aGrant(client.id, other.id), aGrant(client.id, user.id)]) {
      await kyselyGrants(db, 'sqlite').create(grant);
      await kyselyRefreshTokens(db, 'sqlite').insert(aRefreshToken(grant));
      await kyselyConsents(db).save({ userId: grant.userId!, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
    }
    const session = { digest: digestOf(createOpaqueToken('ss')), sid: randomUUID(), userId: user.id, authTime: NOW, createdAt: NOW, expiresAt: NOW + 3600, address: null, device: null, lastUsedAt: null };
    await kyselySessions(db, 'sqlite').create(session);
    // The user's deletion deletes the application they own, as a client's deletion does.
    const plans = await sqlitePlansOf(db, async (recorded) =>
      assert.deepEqual(await kyselyUsers(recorded, 'sqlite').delete(user.id), { clientIds: [client.id], sessions: [{ sid: session.sid, userId: user.id, clientIds: [] }] }),
    );
    assert.equal(await kyselyCodes(db, 'sqlite').find(code.digest), undefined);
    const planOf = (statement: string) => plans.find((plan) => plan.statement === statement)?.plan ?? assert.fail(`${statement} was not run`);
    const search = (table: string) => new RegExp(`^SEARCH ${table} USING (COVERING )?INDEX ${table}_client \\(client_id=\\?\\)$`, 'm');
    for (const table of ['authorization_codes', 'authorization_requests']) {
      assert.match(planOf(`delete from "${table}" where "client_id" = ?`), search(table));
      assert.match(planOf('delete from "clients" where "id" = ?'), search(table), 'the cascade of the clients’ key');
    }
    assert.deepEqual(plans.filter(({ plan }) => /^SCAN /m.test(plan)).map(({ statement, plan }) => `${statement}\n${plan}`), []);
  });
});

describe('PostgreSQL plans of a withdrawn consent', () => {
  const one = oneConnection();

  it('finds the user’s unexchanged codes for the client through an index, not by walking every code', async () => {
    // 20,000 codes of 5,000 users to 2,000 clients, one in two exchanged.
    await sql`insert into users (id, email, password_hash, created_at, updated_at) select 'u' || i, 'u' || i || '@example.com', 'x', 0, 0 from generate_series(0, 4999) i`.execute(one.handle.db);
    await sql`insert into clients (id, name, type, created_at, updated_at) select 'c' || i, 'App', 'confidential', 0, 0 from generate_series(0, 1999) i`.execute(one.handle.db);
    await sql`insert into authorization_codes (digest, client_id, user_id, redirect_uri, scopes, auth_time, created_at, expires_at, consumed_at)
      select md5('code' || i), 'c' || (i % 2000), 'u' || (i / 4), 'https://app.example/cb', '[]', ${NOW}, ${NOW}, ${NOW} + 600, case when i % 2 = 0 then ${NOW}::bigint end
      from generate_series(0, 19999) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const consents = kyselyConsents(one.handle.db);
    // Three times: a statement is named on its second run, and then planned generically.
    for (const i of [1, 3, 5]) assert.equal(await consents.withdraw(`u${i / 4 | 0}`, `c${i}`, NOW), true);
    assert.equal(Number((await sql<{ n: string }>`select count(*) as n from authorization_codes`.execute(one.handle.db)).rows[0]!.n), 20000 - 3);
    const plans = await plansOf(one.handle.db, 'delete from "authorization_codes" where "user_id" = $1 and "client_id" = $2%');
    assert.equal(plans.length, 1);
    for (const { statement, plan } of plans) {
      assert.match(plan, /Index Scan (using|on) authorization_codes_user_client\b/, `${statement}\n${plan}`);
      assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
    }
  });

  it('finds every consent, unexchanged code and grant of a user through an index when a password reset withdraws them all', async () => {
    // Besides the codes above: 20,000 grants and consents of the 5,000 users to the 2,000 clients.
    await sql`insert into grants (id, client_id, user_id, kind, scopes, created_at)
      select 'g' || i, 'c' || (i % 2000), 'u' || (i / 4), 'authorization_code', '[]', ${NOW} from generate_series(0, 19999) i`.execute(one.handle.db);
    await sql`insert into consents (user_id, client_id, scopes, created_at, updated_at)
      select 'u' || (i / 4), 'c' || (i % 2000), '[]', 0, 0 from generate_series(0, 19999) i`.execute(one.handle.db);
    await sql`analyze`.execute(one.handle.db);
    const resets = kyselyPasswordResets(one.handle.db);
    // Three times: a statement is named on its second run, and then planned generically.
    for (const userId of ['u100', 'u101', 'u102']) {
      const digest = digestOf(createOpaqueToken('pr'));
      assert.equal(await resets.issue({ digest, userId, createdAt: NOW, expiresAt: NOW + 1800 }), true);
      const redeemed = await resets.redeem(digest, '$new-hash', NOW + 1);
      assert.equal(redeemed?.withdrawn.grants.length, 4);
      assert.equal(redeemed.withdrawn.consents.length, 4);
    }
    for (const [pattern, index] of [
      ['delete from "consents" where "user_id" = $1 returning%', 'consents_pk'],
      ['delete from "authorization_codes" where "user_id" = $1 and "consumed_at" is null%', 'authorization_codes_user_client'],
      ['update "grants" set "revoked_at" = $1 where "user_id" = $2 and "revoked_at" is null%', 'grants_user_created'],
    ]) {
      const plans = await plansOf(one.handle.db, pattern!);
      assert.equal(plans.length, 1, pattern);
      for (const { statement, plan } of plans) {
        assert.match(plan, new RegExp(`Index Scan (using|on) ${index}\\b`), `${statement}\n${plan}`);
        assert.equal(planScansTables(plan.split('\n')), false, `${statement}\n${plan}`);
      }
    }
  });
});

describe('PostgreSQL prepared statements during a rolling upgrade', () => {
  let database: TestDatabase;
  let storage: Storage;
  let upgrades = 0;

  before(async () => {
    database = await createTestDatabase('postgres');
    // One connection: every statement below runs on the connection that prepared it.
    storage = await createStorage({ databaseUrl: database.databaseUrl, poolSize: 1 });
    await storage.keys.insert(aKey('access', 'next'));
  });

  after(async () => {
    await storage.close();
    await database.drop();
  });

  /** A newer release's migration, from a connection of its own: a column more in every table. */
  async function addColumnEverywhere(): Promise<void> {
    const other = new pg.Client({ connectionString: database.databaseUrl });
    await other.connect();
    try {
      upgrades++;
      for (const table of Object.keys(COLUMNS)) await other.query(`alter table ${table} add column added_by_release_${upgrades} text`);
    } finally {
      await other.end();
    }
  }

  const aUserAndClient = async () => {
    const user = await storage.users.create(aUser(), NOW);
    const client = await storage.clients.create(aClient({ ownerUserId: user.id, grantTypes: ['authorization_code', 'refresh_token'] }), NOW);
    return { user, client };
  };

  /** Each transaction of the repositories: set-up that runs before, and the transaction itself. */
  const transactions: [string, () => Promise<() => Promise<void>>][] = [
    ['a code exchange', async () => {
      const { user, client } = await aUserAndClient();
      const code = aCode(client.id, user.id);
      await storage.codes.insert(code);
      return async () => assert.equal((await storage.codes.consume(code.digest, exchangeOf(code), NOW)).outcome, 'consumed');
    }],
    ['a key rotation', async () => async () => assert.equal(await storage.keys.rotate('access', aKey('access', 'next'), NOW, NOW + 3600), true)],
    ['the deletion of a user and their applications', async () => {
      const { user, client } = await aUserAndClient();
      return async () => assert.deepEqual(await storage.users.delete(user.id), { clientIds: [client.id], sessions: [] });
    }],
    ['the deletion of an application', async () => {
      const { client } = await aUserAndClient();
      return async () => assert.equal(await storage.clients.delete(client.id), true);
    }],
    ['a password reset by email that withdraws what an account with an unverified address authorized', async () => {
      const { user, client } = await aUserAndClient();
      await storage.consents.save({ userId: user.id, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
      await storage.grants.create(aGrant(client.id, user.id));
      const digest = digestOf(createOpaqueToken('pr'));
      await storage.passwordResets.issue({ digest, userId: user.id, createdAt: NOW, expiresAt: NOW + 1800 });
      return async () => assert.equal((await storage.passwordResets.redeem(digest, '$new-hash', NOW + 1))?.withdrawn.grants.length, 1);
    }],
    ['the withdrawal of a consent', async () => {
      const { user, client } = await aUserAndClient();
      await storage.consents.save({ userId: user.id, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
      await storage.grants.create(aGrant(client.id, user.id));
      return async () => assert.equal(await storage.consents.withdraw(user.id, client.id, NOW), true);
    }],
  ];

  for (const [name, prepare] of transactions) {
    it(`keeps ${name} working when it is the first to run after a newer release added columns`, async () => {
      const runs = [await prepare(), await prepare(), await prepare()];
      // Twice before, so that its statements are prepared (a statement is named on its second run).
      await runs[0]!();
      await runs[1]!();
      await addColumnEverywhere();
      await runs[2]!();
    });
  }

  it('keeps every lookup and the refresh working after a newer release added columns', async () => {
    const { user, client } = await aUserAndClient();
    const grant = aGrant(client.id, user.id);
    await storage.grants.create(grant);
    const tokens = [aRefreshToken(grant), aRefreshToken(grant), aRefreshToken(grant)];
    for (const token of tokens) await storage.refreshTokens.insert(token);
    const useEveryLookup = async (token: (typeof tokens)[number]) => {
      assert.equal((await storage.users.findById(user.id))?.email, user.email);
      assert.equal((await storage.users.findByEmail(user.email))?.id, user.id);
      assert.equal((await storage.clients.findWithSecrets(client.id))?.client.name, client.name);
      assert.equal((await storage.grants.find(grant.id))?.id, grant.id);
      assert.equal((await storage.refreshTokens.find(token.digest))?.grant.id, grant.id);
      const successor = digestOf(createOpaqueToken('rt'));
      assert.equal((await storage.refreshTokens.rotate(token.digest, successorAt(successor, NOW), NOW)).outcome, 'rotated');
      await storage.audit.append([anEvent({ clientId: client.id })]);
      assert.ok((await storage.audit.query({ clientId: client.id })).length > 0);
    };
    await useEveryLookup(tokens[0]!);
    await useEveryLookup(tokens[1]!);
    await addColumnEverywhere();
    await useEveryLookup(tokens[2]!);
  });
});
