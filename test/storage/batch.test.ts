import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { batching } from '../../src/storage/batch.ts';

/** A statement over many items whose batches the test sees and finishes when it wants. */
function controlledStatement() {
  const batches: { items: number[]; finish(results?: string[]): void; fail(error: Error): void }[] = [];
  const run = (items: number[]) =>
    new Promise<string[]>((resolve, reject) => {
      batches.push({ items, finish: (results) => resolve(results ?? items.map((item) => `#${item}`)), fail: reject });
    });
  return { batches, run };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('batching', () => {
  it('sends the calls of one turn together and answers each caller its own result', async () => {
    const { batches, run } = controlledStatement();
    const call = batching(run, { concurrency: 1, maxSize: 10 });

    const answers = Promise.all([call(1), call(2), call(3)]);
    await nextTurn();
    assert.deepEqual(batches.map((batch) => batch.items), [[1, 2, 3]]);
    batches[0]!.finish();
    assert.deepEqual(await answers, ['#1', '#2', '#3']);
  });

  it('holds calls made while the batches allowed are in flight, then sends them together', async () => {
    const { batches, run } = controlledStatement();
    const call = batching(run, { concurrency: 2, maxSize: 10 });

    const first = call(1);
    await nextTurn();
    const second = call(2);
    await nextTurn();
    const waiting = [call(3), call(4), call(5)];
    await nextTurn();
    assert.deepEqual(batches.map((batch) => batch.items), [[1], [2]], 'two in flight, the rest waits');

    batches[1]!.finish();
    assert.equal(await second, '#2');
    await nextTurn();
    assert.deepEqual(batches.map((batch) => batch.items), [[1], [2], [3, 4, 5]]);
    batches[0]!.finish();
    batches[2]!.finish();
    assert.equal(await first, '#1');
    assert.deepEqual(await Promise.all(waiting), ['#3', '#4', '#5']);
  });

  it('puts at most maxSize items in one batch', async () => {
    const { batches, run } = controlledStatement();
    const call = batching(run, { concurrency: 1, maxSize: 2 });

    const answers = Promise.all([1, 2, 3, 4, 5].map((item) => call(item)));
    await nextTurn();
    for (let sent = 0; sent < 3; sent++) {
      batches[sent]!.finish();
      await nextTurn();
    }
    assert.deepEqual(batches.map((batch) => batch.items), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(await answers, ['#1', '#2', '#3', '#4', '#5']);
  });

  it('fails the callers of a failed batch only, and goes on with the next', async () => {
    const { batches, run } = controlledStatement();
    const call = batching(run, { concurrency: 1, maxSize: 10 });

    const failing = [call(1), call(2)];
    await nextTurn();
    const later = call(3);
    batches[0]!.fail(new Error('connection lost'));
    for (const answer of failing) await assert.rejects(answer, /connection lost/);
    await nextTurn();
    batches[1]!.finish();
    assert.equal(await later, '#3');
  });

  it('fails every caller of a batch that answers a wrong number of results', async () => {
    const { batches, run } = controlledStatement();
    const call = batching(run, { concurrency: 1, maxSize: 10 });

    const answers = [call(1), call(2)];
    await nextTurn();
    batches[0]!.finish(['#1']);
    for (const answer of answers) await assert.rejects(answer, /a batch of 2 answered 1 results/);
  });
});
