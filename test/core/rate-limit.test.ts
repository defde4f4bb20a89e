import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inProcessFailureCounter } from '../../src/core/rate-limit/failures.ts';

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
