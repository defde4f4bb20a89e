import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createClient } from 'redis';
import { loadConfig } from '../../src/core/config.ts';
import { createLimits } from '../../src/rate-limiters.ts';
import { startDroppingProxy } from '../support/redis.ts';
import { TEST_SECRET } from '../support/server.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

type Limits = Awaited<ReturnType<typeof createLimits>>;

/** Every request budget an instance keeps, each shared through Redis the same way. */
const BUDGETS = ['tokenRequests', 'pendingAuthorizations', 'signupsPerAddress', 'passwordResetsPerAccount', 'passwordResetsPerAddress', 'emailVerificationsPerAccount', 'emailVerificationsPerAddress', 'emailsPerRecipient'] as const;

/**
 * A count in Redis without an expiry is there for ever: a count of sign-ins being checked that
 * never comes down holds places of its account for good, and counts kept per window pile up in
 * Redis's memory. Each count must come with its expiry, whatever stops the limiter between two
 * commands.
 */
describe('counts the rate limiters keep in Redis', () => {
  // The test's own connection, to look at what the limiters left; their keys are the test's own by a marker in each.
  const redis = createClient({ url: REDIS_URL });
  before(() => redis.connect());
  after(() => redis.close());

  const keysOf = async (marker: string): Promise<string[]> => {
    const keys: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `gatehouse:*${marker}*`, COUNT: 1000 })) keys.push(...batch);
    return keys;
  };
  /** Each key of `marker` in Redis with its TTL (-1: no expiry). */
  const ttlsOf = async (marker: string): Promise<Record<string, number>> =>
    Object.fromEntries(await Promise.all((await keysOf(marker)).map(async (key) => [key, await redis.ttl(key)] as const)));
  const assertEveryOneExpires = (ttls: Record<string, number>, expected: RegExp[]) => {
    for (const pattern of expected) assert.ok(Object.keys(ttls).some((key) => pattern.test(key)), `a key ${pattern} in Redis, among ${JSON.stringify(ttls)}`);
    assert.deepEqual(
      Object.entries(ttls).filter(([, ttl]) => ttl <= 0),
      [],
      'every key the limiters left in Redis expires',
    );
  };
  const limitsReaching = (url: string) => createLimits(loadConfig({ GATEHOUSE_SECRET: TEST_SECRET, REDIS_URL: url }), pino({ level: 'silent' }));

  /**
   * The limiters as an instance makes them, reaching Redis through a connection that drops right
   * after a command `picks` has been carried out, then `scenario`: what it left in Redis, each key
   * with its TTL.
   */
  async function leftAfterDrop(picks: (command: string[]) => boolean, scenario: (limits: Limits, marker: string, now: number) => Promise<unknown>): Promise<Record<string, number>> {
    const marker = randomBytes(6).toString('hex');
    const proxy = await startDroppingProxy(REDIS_URL, picks);
    const limits = await limitsReaching(proxy.url);
    try {
      await scenario(limits, marker, Math.floor(Date.now() / 1000));
      assert.equal(proxy.dropped, 1, 'the connection dropped once, right after the command');
      return await ttlsOf(marker);
    } finally {
      await limits.close();
      await proxy.close();
      const keys = await keysOf(marker);
      if (keys.length > 0) await redis.del(keys);
    }
  }
  const increment = ([name]: string[]) => name?.toUpperCase() === 'INCRBY';

  describe('when the connection drops right after a count changed', () => {
    it('leaves a failed client authentication counted with its expiry', async () => {
      const left = await leftAfterDrop(increment, (limits, marker, now) => limits.clientAuthFailures.fail(`app_${marker}|203.0.113.7`, now));
      assertEveryOneExpires(left, [/^gatehouse:failures:client-auth:/]);
    });

    it('leaves a failed sign-in counted with its expiry', async () => {
      const failureCount = ([name, key]: string[]) => name?.toUpperCase() === 'INCRBY' && key!.startsWith('gatehouse:failures:');
      const left = await leftAfterDrop(failureCount, async (limits, marker, now) => {
        const account = `account:${marker}@example.com`;
        assert.equal(await limits.loginPerAccount.admit(account, now), 0);
        await limits.loginPerAccount.settle(account, 'failed', now);
      });
      assertEveryOneExpires(left, [/^gatehouse:failures:login-account:/]);
    });

    it('leaves the count of sign-in attempts being checked with its expiry', async () => {
      const left = await leftAfterDrop(increment, async (limits, marker, now) => {
        const account = `account:${marker}@example.com`;
        assert.equal(await limits.loginPerAccount.admit(account, now), 0);
        await limits.loginPerAccount.settle(account, 'passed', now);
      });
      assertEveryOneExpires(left, [/^gatehouse:checking:login-account:/]);
    });

    it('leaves no count of attempts being checked without an expiry when an attempt leaves after the count expired', async () => {
      const leaving = ([name, , by]: string[]) => name?.toUpperCase() === 'INCRBY' && by === '-1';
      const left = await leftAfterDrop(leaving, async (limits, marker, now) => {
        const account = `account:${marker}@example.com`;
        assert.equal(await limits.loginPerAccount.admit(account, now), 0);
        // The attempt took longer than its count lives (a database that did not answer for a minute).
        await redis.del(await keysOf(marker));
        await limits.loginPerAccount.settle(account, 'passed', now);
      });
      assertEveryOneExpires(left, [/^gatehouse:checking:login-account:/]);
    });

    for (const budget of BUDGETS) {
      it(`leaves a slice leased of ${budget}'s budget with its expiry`, async () => {
        const left = await leftAfterDrop(increment, (limits, marker, now) => Promise.resolve(limits[budget].take(`${marker}`, now)));
        assertEveryOneExpires(left, [/^gatehouse:requests:/]);
      });
    }
  });

  it("clears a key's failures in the window of the instance's clock, not of the machine's", async () => {
    const marker = randomBytes(6).toString('hex');
    const limits = await limitsReaching(REDIS_URL);
    try {
      // An instance's clock (injected, as in tests, or frozen) is what its counts are kept by.
      const now = Math.floor(Date.now() / 1000) - 86_400;
      const account = `account:${marker}@example.com`;
      const { maxFailuresPerAccount } = loadConfig({ GATEHOUSE_SECRET: TEST_SECRET }).login;
      for (let i = 0; i < maxFailuresPerAccount - 1; i++) await limits.loginPerAccount.fail(account, now);
      await limits.loginPerAccount.reset(account, now);
      await limits.loginPerAccount.fail(account, now);
      assert.equal(await limits.loginPerAccount.blockedFor(account, now), 0, 'the success cleared the failures before it');
      assert.deepEqual(Object.keys(await ttlsOf(marker)).filter((key) => key.startsWith('gatehouse:failures:')).length, 1);
    } finally {
      await limits.close();
      const keys = await keysOf(marker);
      if (keys.length > 0) await redis.del(keys);
    }
  });

  it('gives every count an expiry in normal operation: failures, attempts being checked, budgets, and again after a success', async () => {
    const marker = randomBytes(6).toString('hex');
    const limits = await limitsReaching(REDIS_URL);
    try {
      const now = Math.floor(Date.now() / 1000);
      const account = `account:${marker}@example.com`;
      const address = `address:${marker}`;
      for (const outcome of ['failed', 'failed', 'passed'] as const) {
        assert.equal(await limits.loginPerAccount.admit(account, now), 0);
        assert.equal(await limits.loginPerAddress.admit(address, now), 0);
        if (outcome === 'passed') await limits.loginPerAccount.reset(account, now);
        await Promise.all([limits.loginPerAccount.settle(account, outcome, now), limits.loginPerAddress.settle(address, outcome, now)]);
      }
      await limits.loginPerAddress.fail(address, now);
      await limits.clientAuthFailures.fail(`app_${marker}|203.0.113.7`, now);
      await limits.clientAuthFailures.fail(`app_${marker}|203.0.113.7`, now);
      for (const budget of BUDGETS) for (let i = 0; i < 3; i++) await limits[budget].take(`${marker}`, now);
      assertEveryOneExpires(await ttlsOf(marker), [
        /^gatehouse:checking:login-account:/,
        /^gatehouse:checking:login-address:/,
        /^gatehouse:failures:login-address:/,
        /^gatehouse:failures:client-auth:/,
        /^gatehouse:requests:/,
      ]);
      assert.equal(Object.keys(await ttlsOf(marker)).filter((key) => key.startsWith('gatehouse:requests:')).length, BUDGETS.length, 'one budget key per limiter');
    } finally {
      await limits.close();
      const keys = await keysOf(marker);
      if (keys.length > 0) await redis.del(keys);
    }
  });
});
