import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { afterEach, describe, it } from 'node:test';
import { inProcessFailureCounter } from '../../src/core/rate-limit/failures.ts';
import { countForWorkers } from '../../src/core/rate-limit/primary-counts.ts';
import { PRIMARY_UNREACHABLE, PrimaryLink, primaryLeasedRequestLimiter } from '../../src/core/rate-limit/primary-link.ts';
import type { RequestLimiter } from '../../src/core/rate-limit/requests.ts';

const NOW = 1_800_000_000;

describe('failure counter in process', () => {
  it('keeps a blocking key when full: failures under invented keys push out the others first', async () => {
    const counter = inProcessFailureCounter(2, 60, 3);
    await counter.fail('app_victim|203.0.113.7', NOW);
    await counter.fail('app_victim|203.0.113.7', NOW);
    assert.equal(counter.blockedFor('app_victim|203.0.113.7', NOW), 60);
    for (let i = 0; i < 50; i++) await counter.fail(`invented-${i}|203.0.113.7`, NOW);
    assert.equal(counter.blockedFor('app_victim|203.0.113.7', NOW + 1), 59, 'still blocked');
  });
});

describe('attempts being checked at once', () => {
  it('holds them to the failures left; a passed attempt counts nothing, a failed one counts', async () => {
    const counter = inProcessFailureCounter(2, 60);
    assert.equal(await counter.admit('account:a', NOW), 0);
    assert.equal(await counter.admit('account:a', NOW), 0);
    let third: number | string | undefined;
    const waiting = counter.admit('account:a', NOW).then((wait) => (third = wait));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(third, undefined, 'a third attempt waits while two are checked');

    await counter.settle('account:a', 'passed', NOW);
    await waiting;
    assert.equal(third, 0, 'admitted once one settled without counting');

    await counter.settle('account:a', 'failed', NOW);
    assert.equal(counter.blockedFor('account:a', NOW), 0);
    let fourth: number | string | undefined;
    const last = counter.admit('account:a', NOW).then((wait) => (fourth = wait));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(fourth, undefined, 'one failure and one attempt in check leave no room');
    await counter.settle('account:a', 'failed', NOW);
    await last;
    assert.equal(fourth, 60, 'the second failure blocks the key, and the waiting attempt is told so');
  });

  it('lets a waiting attempt through once a success clears the failures', async () => {
    const counter = inProcessFailureCounter(2, 60);
    await counter.fail('account:b', NOW);
    assert.equal(await counter.admit('account:b', NOW), 0);
    let next: number | string | undefined;
    const waiting = counter.admit('account:b', NOW).then((wait) => (next = wait));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(next, undefined);
    await counter.reset('account:b', NOW);
    await counter.settle('account:b', 'passed', NOW);
    await waiting;
    assert.equal(next, 0);
  });
});

describe('an attempt whose turn does not come', () => {
  it('is answered busy after a few seconds, and counts nothing', async () => {
    const counter = inProcessFailureCounter(1, 60);
    assert.equal(await counter.admit('account:c', NOW), 0, 'one attempt that never settles (a database that does not answer)');
    const started = Date.now();
    assert.equal(await counter.admit('account:c', NOW), 'busy');
    assert.ok(Date.now() - started >= 1_900);
    await counter.settle('account:c', 'undecided', NOW);
    assert.equal(await counter.admit('account:c', NOW), 0, 'the next attempt is checked at once');
  });

  it('is answered busy at once when an attempt ahead could not be decided, which counts nothing', async () => {
    const counter = inProcessFailureCounter(1, 60);
    assert.equal(await counter.admit('account:d', NOW), 0);
    const waiting = counter.admit('account:d', NOW);
    await new Promise((resolve) => setImmediate(resolve));
    await counter.settle('account:d', 'undecided', NOW);
    assert.equal(await waiting, 'busy');
    assert.equal(counter.blockedFor('account:d', NOW), 0);
    assert.equal(await counter.admit('account:d', NOW), 0);
  });
});

/**
 * The token endpoint's budget per client under `serve --workers N` without Redis: each worker leases
 * it from the primary a slice at a time. The workers here are PrimaryLinks in this process, and the
 * primary is countForWorkers, reached through the cluster's events as a real primary is.
 */
describe('a request budget leased from the primary', () => {
  const WINDOW = 60;
  let primary: { close(): void } | undefined;
  afterEach(() => primary?.close());

  /** The primary counting a budget of `limit`; `worker()` starts a worker, `asked()` counts the leases asked for. */
  function primaryWithBudget(limit: number) {
    primary = countForWorkers({ token: { kind: 'leases', limit, windowSeconds: WINDOW } });
    let asked = 0;
    let nextId = 1;
    const worker = (options: { answered?: () => boolean; warn?: (message: string) => void } = {}) => {
      const { answered = () => true, warn = () => {} } = options;
      const process = {
        id: nextId++,
        isConnected: () => true,
        send(message: unknown, _handle: unknown, callback?: () => void) {
          setImmediate(() => link.receive(message));
          callback?.();
          return true;
        },
      } as unknown as Worker;
      const link = new PrimaryLink((message) => {
        if (!answered()) return;
        if ('request' in message && message.request.op === 'lease') asked += 1;
        setImmediate(() => cluster.emit('message', process, message));
      }, warn);
      return { limiter: primaryLeasedRequestLimiter(link, 'token', limit, WINDOW), exit: () => cluster.emit('exit', process) };
    };
    return { worker, asked: () => asked };
  }
  const takeAll = async (limiter: RequestLimiter, count: number, key = 'app_a', now = NOW) => {
    const waits = [];
    for (let i = 0; i < count; i++) waits.push(await limiter.take(key, now));
    return waits;
  };
  const granted = (waits: number[]) => waits.filter((wait) => wait === 0).length;

  it('grants the limit in all across the workers, leasing slices of limit/50, then the seconds to the next window', async () => {
    const budget = primaryWithBudget(100);
    const [a, b] = [budget.worker().limiter, budget.worker().limiter];
    const waits = [];
    for (let i = 0; i < 80; i++) waits.push(await a.take('app_a', NOW), await b.take('app_a', NOW));
    assert.equal(granted(waits), 100);
    assert.deepEqual(new Set(waits.slice(100)), new Set([WINDOW - (NOW % WINDOW)]), 'refused until the next window');
    assert.ok(budget.asked() <= 100 / 2 + 2, `a lease of 2 requests at a time, and one more per worker to find the budget spent: ${budget.asked()} leases`);
    assert.equal(granted(await takeAll(a, 5, 'app_b')), 5, 'another client has a budget of its own');
    assert.equal(granted(await takeAll(b, 100, 'app_a', NOW + WINDOW)), 100, 'the next window has the whole budget');
  });

  it('answers from the slice in hand at once, without asking the primary', async () => {
    const budget = primaryWithBudget(100);
    const { limiter } = budget.worker();
    assert.equal(await limiter.take('app_a', NOW), 0);
    assert.equal(limiter.take('app_a', NOW), 0, 'the second request of the slice is answered synchronously');
    assert.equal(budget.asked(), 1);
  });

  it('leases once for the requests of a key that arrive together, rather than a slice each', async () => {
    const budget = primaryWithBudget(100);
    const { limiter } = budget.worker();
    const waits = await Promise.all(Array.from({ length: 10 }, () => limiter.take('app_a', NOW)));
    assert.deepEqual(waits, Array(10).fill(0));
    assert.equal(budget.asked(), 5, 'ten requests, five slices of two');
  });

  it('gives a worker started in place of one that died only what the primary has not leased out', async () => {
    const budget = primaryWithBudget(100);
    const first = budget.worker();
    assert.equal(granted(await takeAll(first.limiter, 99)), 99, 'the last slice leased, one request of it unused');
    first.exit();
    const { limiter } = budget.worker();
    assert.deepEqual(await takeAll(limiter, 3), Array(3).fill(WINDOW - (NOW % WINDOW)));
  });

  it('holds each key to the whole budget in the worker while the primary does not answer, and says so', async () => {
    const budget = primaryWithBudget(10);
    let answering = true;
    const warnings: string[] = [];
    const { limiter } = budget.worker({ answered: () => answering, warn: (message) => warnings.push(message) });
    assert.equal(await limiter.take('app_a', NOW), 0, 'a slice of one, leased');
    answering = false;
    // The first waits for the primary's deadline, then the worker counts on its own: the whole budget.
    const waits = await takeAll(limiter, 11);
    assert.equal(granted(waits), 10);
    assert.equal(waits[10], WINDOW - (NOW % WINDOW));
    assert.deepEqual(warnings, [PRIMARY_UNREACHABLE]);
  });
});
