import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inProcessFailureCounter } from '../../src/core/rate-limit.ts';

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

  it('counts an attempt and refuses the one over the limit in the same step, and takes back a success', async () => {
    const counter = inProcessFailureCounter(2, 60);
    const attempts = await Promise.all([1, 2, 3, 4].map(() => counter.attempt('account:ada@example.com', NOW)));
    assert.deepEqual(attempts, [0, 0, 60, 60]);
    await counter.forgive('account:ada@example.com', NOW);
    assert.equal(await counter.attempt('account:ada@example.com', NOW), 0, 'one taken back: one more may go');
  });
});
