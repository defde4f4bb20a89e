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
});
