import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { createGatehouse } from '../../src/gatehouse.ts';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const START = 1_750_000_000;
const UNKNOWN_GRANT = 'urn:example:no-such-grant';

/** Sends `count` requests, `parallel` at a time, and returns their statuses. */
async function flood(count: number, parallel: number, send: (i: number) => Promise<{ status: number }>): Promise<number[]> {
  const statuses: number[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        statuses[i] = (await send(i)).status;
      }
    }),
  );
  return statuses;
}

/** The `token.refused` rows of one client id as presented, oldest first (all of them, written or not yet). */
async function refusalsOf(server: TestServer, clientId: string): Promise<AuditEvent[]> {
  await server.gatehouse.audit.flush();
  return refusalRows(server, clientId);
}

async function refusalRows(server: TestServer, clientId: string): Promise<AuditEvent[]> {
  return (await server.gatehouse.storage.audit.query({ kind: 'token.refused', clientId, limit: 1000 })).reverse();
}

const unknownGrant = (server: TestServer, clientId: string) => post(`${server.url}/token`, { grant_type: UNKNOWN_GRANT, client_id: clientId });

for (const dialect of DIALECTS) {
  describe(`refused token requests in the audit log (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let now = START;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now });
    });
    after(() => server.close());

    const scrape = async () => (await fetch(`${server.url}/metrics`)).text();
    const errorsCounted = (text: string, error: string) => Number(new RegExp(`^gatehouse_oauth_errors_total\\{error="${error}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

    it('writes the first of 200 identical refusals at once and the other 199 as one row when the minute is over; metrics count all 200', async () => {
      const metricsBefore = await scrape();
      const opened = now;
      const statuses = await flood(200, 16, () => unknownGrant(server, 'flooding-app'));
      assert.deepEqual(new Set(statuses), new Set([400]));
      assert.equal(errorsCounted(await scrape(), 'unsupported_grant_type') - errorsCounted(metricsBefore, 'unsupported_grant_type'), 200, 'every refusal is counted in the metrics');

      const first = await refusalsOf(server, 'flooding-app');
      assert.equal(first.length, 1, 'one row while the minute lasts');
      assert.deepEqual(first[0]!.data, { error: 'unsupported_grant_type', grant_type: UNKNOWN_GRANT, address: '127.0.0.1' });
      assert.equal(first[0]!.at, opened);

      now += 59;
      assert.equal((await refusalsOf(server, 'flooding-app')).length, 1, 'the minute is not over yet');

      now += 1;
      const rows = await refusalsOf(server, 'flooding-app');
      assert.equal(rows.length, 2);
      const { id: _id, ...aggregated } = rows[1]!;
      assert.deepEqual(aggregated, {
        at: opened,
        kind: 'token.refused',
        outcome: 'failure',
        clientId: 'flooding-app',
        userId: null,
        data: { error: 'unsupported_grant_type', grant_type: UNKNOWN_GRANT, address: '127.0.0.1', repeated: 199, window_start: opened, window_end: opened + 60 },
      });
    });

    it('gives each client id, error and grant type rows of their own', async () => {
      now += 1;
      const app = await server.client({});
      for (let i = 0; i < 3; i++) {
        await unknownGrant(server, 'first-caller');
        await unknownGrant(server, 'second-caller');
        await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: 'second-caller', client_secret: 'gate_cs_wrong' });
        await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: app.id, client_secret: app.secret, refresh_token: 'gate_rt_nothing' });
        await post(`${server.url}/token`, { grant_type: 'password', client_id: app.id, client_secret: app.secret, username: 'a', password: 'b' });
      }
      const written = async () => [...(await refusalsOf(server, 'first-caller')), ...(await refusalsOf(server, 'second-caller')), ...(await refusalsOf(server, app.id))].map((e) => [e.clientId, e.data.error, e.data.grant_type, e.data.repeated]);
      assert.deepEqual(await written(), [
        ['first-caller', 'unsupported_grant_type', UNKNOWN_GRANT, undefined],
        ['second-caller', 'unsupported_grant_type', UNKNOWN_GRANT, undefined],
        ['second-caller', 'invalid_client', 'client_credentials', undefined],
        [app.id, 'unauthorized_client', 'refresh_token', undefined],
        [app.id, 'unauthorized_client', 'password', undefined],
      ]);
      now += 60;
      assert.deepEqual(await written(), [
        ['first-caller', 'unsupported_grant_type', UNKNOWN_GRANT, undefined],
        ['first-caller', 'unsupported_grant_type', UNKNOWN_GRANT, 2],
        ['second-caller', 'unsupported_grant_type', UNKNOWN_GRANT, undefined],
        ['second-caller', 'invalid_client', 'client_credentials', undefined],
        ['second-caller', 'unsupported_grant_type', UNKNOWN_GRANT, 2],
        ['second-caller', 'invalid_client', 'client_credentials', 2],
        [app.id, 'unauthorized_client', 'refresh_token', undefined],
        [app.id, 'unauthorized_client', 'password', undefined],
        [app.id, 'unauthorized_client', 'refresh_token', 2],
        [app.id, 'unauthorized_client', 'password', 2],
      ]);
    });

    it('aggregates throttled refusals (429) like the others, and never records the secret guessed', async () => {
      now += 1;
      const app = await server.client({});
      const guess = 'gate_cs_guessed-secret-never-audited';
      // One at a time: failures in flight together could all pass the check before any is counted.
      const statuses = await flood(200, 1, () => post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(app.id, guess) } }));
      const limit = server.config.rateLimits.clientAuthFailures;
      assert.equal(statuses.filter((s) => s === 429).length, 200 - limit, 'the failures beyond the limit were throttled');
      assert.deepEqual(
        (await refusalsOf(server, app.id)).map((e) => e.data.error),
        ['invalid_client', 'temporarily_unavailable'],
      );
      now += 60;
      const rows = await refusalsOf(server, app.id);
      assert.deepEqual(
        rows.map((e) => [e.data.error, e.data.repeated]),
        [
          ['invalid_client', undefined],
          ['temporarily_unavailable', undefined],
          ['invalid_client', limit - 1],
          ['temporarily_unavailable', 200 - limit - 1],
        ],
      );
      assert.ok(!JSON.stringify(rows).includes('guessed-secret'), 'the secret is in no row');
    });

    it('records refused introspection and revocation requests as it records refused token requests: guessed secrets, another client’s token', async () => {
      now += 1;
      const opened = now;
      const app = await server.client({});
      const other = await server.client({});
      const othersToken: string = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(other.id, other.secret) } })).body.access_token;
      const guess = 'gate_cs_guessed-at-introspection-never-audited';
      for (let i = 0; i < 3; i++) {
        assert.equal((await post(`${server.url}/introspect`, { token: othersToken }, { headers: { authorization: basic(app.id, guess) } })).status, 401);
        assert.equal((await post(`${server.url}/revoke`, { token: othersToken }, { headers: { authorization: basic(app.id, guess) } })).status, 401);
        assert.equal((await post(`${server.url}/revoke`, { token: othersToken }, { headers: { authorization: basic(app.id, app.secret) } })).status, 400);
      }
      now += 60;
      await server.gatehouse.audit.flush();
      const rows = async (kind: string) => (await server.gatehouse.storage.audit.query({ kind, clientId: app.id })).reverse();
      const refused = (kind: string, error: string) => ({ at: opened, kind, outcome: 'failure', clientId: app.id, userId: null, data: { error, address: '127.0.0.1' } });
      const repeats = (event: ReturnType<typeof refused>) => ({ ...event, data: { ...event.data, repeated: 2, window_start: opened, window_end: opened + 60 } });
      const introspections = refused('introspection.refused', 'invalid_client');
      assert.deepEqual((await rows('introspection.refused')).map(({ id: _id, ...event }) => event), [introspections, repeats(introspections)]);
      const guesses = refused('revocation.refused', 'invalid_client');
      const notItsOwn = refused('revocation.refused', 'unauthorized_client');
      assert.deepEqual((await rows('revocation.refused')).map(({ id: _id, ...event }) => event), [guesses, notItsOwn, repeats(guesses), repeats(notItsOwn)]);
      const written = JSON.stringify([...(await rows('introspection.refused')), ...(await rows('revocation.refused'))]);
      assert.ok(!written.includes('guessed-at-introspection') && !written.includes(othersToken), 'neither the secret nor the token is in a row');
    });

    it('opens a new window when a key comes back after its minute, after writing the count of the old one', async () => {
      now += 1;
      const opened = now;
      for (let i = 0; i < 5; i++) await unknownGrant(server, 'returning-caller');
      now += 61;
      await unknownGrant(server, 'returning-caller');
      assert.deepEqual(
        (await refusalsOf(server, 'returning-caller')).map((e) => [e.at, e.data.repeated, e.data.window_start]),
        [
          [opened, undefined, undefined],
          [opened, 4, opened],
          [opened + 61, undefined, undefined],
        ],
      );
    });

    it('writes the count of a window that has ended by itself, with no request and no flush', async () => {
      now += 1;
      for (let i = 0; i < 3; i++) await unknownGrant(server, 'quiet-after-flood');
      await server.gatehouse.audit.flush();
      now += 60;
      const deadline = Date.now() + 10_000;
      let rows = await refusalRows(server, 'quiet-after-flood');
      while (rows.length < 2 && Date.now() < deadline) {
        await sleep(200);
        rows = await refusalRows(server, 'quiet-after-flood');
      }
      assert.deepEqual(
        rows.map((e) => e.data.repeated),
        [undefined, 2],
      );
    });
  });

  describe(`the refusals being counted are bounded (${dialect})`, { timeout: 180_000 }, () => {
    let server: TestServer;
    let now = START;
    const KEYS = 10_000;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, background: false });
    });
    after(() => server.close());

    it('tracks 10,000 keys at most and counts refusals of further keys in one overflow row per window', async () => {
      const before_ = await countRows(server.database, 'audit_events');
      const statuses = await flood(KEYS + 300, 64, (i) => unknownGrant(server, `caller-${i}`));
      assert.deepEqual(new Set(statuses), new Set([400]));
      // Keys already tracked are still counted as themselves.
      for (let i = 0; i < 5; i++) await unknownGrant(server, 'caller-0');
      await server.gatehouse.audit.flush();
      assert.equal((await countRows(server.database, 'audit_events')) - before_, KEYS, 'one row for each key tracked, none for the rest yet');

      // Once their minute is over, the keys tracked make room: a new key has a row of its own again.
      now += 60;
      await unknownGrant(server, 'after-the-flood');
      await server.gatehouse.audit.flush();
      assert.equal((await countRows(server.database, 'audit_events')) - before_, KEYS + 3);
      assert.equal((await refusalRows(server, 'after-the-flood')).length, 1);
      const overflow = (await server.gatehouse.storage.audit.query({ kind: 'token.refused', limit: 10 })).filter((e) => e.data.overflow === true);
      assert.equal(overflow.length, 1);
      const { id: _id, ...row } = overflow[0]!;
      assert.deepEqual(row, { at: START, kind: 'token.refused', outcome: 'failure', clientId: null, userId: null, data: { overflow: true, repeated: 300, window_start: START, window_end: START + 60 } });
      assert.deepEqual(
        (await refusalRows(server, 'caller-0')).map((e) => e.data.repeated),
        [undefined, 5],
      );
    });
  });

  describe(`refusals still being counted at shutdown (${dialect})`, { timeout: 60_000 }, () => {
    it('are written when the server stops', async () => {
      const now = START;
      const server = await startTestServer(dialect, { clock: () => now, background: false });
      try {
        for (let i = 0; i < 10; i++) await unknownGrant(server, 'caller-at-shutdown');
        await server.app.close();
        await server.gatehouse.close();
        const reopened = await createGatehouse(server.config, { background: false, logger: pino({ level: 'silent' }) });
        try {
          const rows = (await reopened.storage.audit.query({ kind: 'token.refused', clientId: 'caller-at-shutdown' })).reverse();
          assert.deepEqual(
            rows.map((e) => e.data),
            [
              { error: 'unsupported_grant_type', grant_type: UNKNOWN_GRANT, address: '127.0.0.1' },
              { error: 'unsupported_grant_type', grant_type: UNKNOWN_GRANT, address: '127.0.0.1', repeated: 9, window_start: START, window_end: START },
            ],
          );
        } finally {
          await reopened.close();
        }
      } finally {
        await server.database.drop();
      }
    });
  });
}
