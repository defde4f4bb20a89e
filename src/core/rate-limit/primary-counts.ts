/**
 * The primary's side of the limits shared by the workers of `gatehouse serve --workers N` without
 * Redis (see primary-link.ts): the one count of every limit, answering the workers over IPC. A key
 * that becomes blocked is announced to every worker, and to a worker that starts later when it
 * asks; the attempts a worker had admitted and not settled are given back when it exits.
 */
import cluster, { type Worker } from 'node:cluster';
import { inProcessFailureCounter, type FailureCounter } from './failures.ts';
import { isLimitsMessage, LIMITS_MESSAGE, type Block, type LimitsMessage, type LimitsRequest } from './primary-link.ts';
import { inProcessBudgetLeases, inProcessRequestLimiter, type RequestLimiter } from './requests.ts';

/**
 * A limit as configured, per window: failures that block a key, requests in a budget taken one at
 * a time, or a budget the workers lease in slices (see primaryLeasedRequestLimiter).
 */
export interface LimitSetting {
  kind: 'failures' | 'requests' | 'leases';
  limit: number;
  windowSeconds: number;
}

/** The most blocked keys the primary keeps to tell a new worker; the oldest go first. */
const MAX_BLOCKED_KEYS = 100_000;

export function countForWorkers(settings: Record<string, LimitSetting>): { close(): void } {
  const failures = new Map<string, FailureCounter>();
  const requests = new Map<string, RequestLimiter>();
  const leases = new Map<string, ReturnType<typeof inProcessBudgetLeases>>();
  for (const [name, { kind, limit, windowSeconds }] of Object.entries(settings)) {
    if (kind === 'failures') failures.set(name, inProcessFailureCounter(limit, windowSeconds));
    else if (kind === 'leases') leases.set(name, inProcessBudgetLeases(limit, windowSeconds));
    else requests.set(name, inProcessRequestLimiter(limit, windowSeconds));
  }
  /** Keys blocked now, as announced: `${name}\n${key}` → the block. */
  const blocked = new Map<string, Block>();
  /** Workers that exited (ids are never reused): an attempt admitted for one after that is withdrawn at once. */
  const exited = new Set<number>();
  /** Attempts admitted for each worker and not settled yet: worker id → `${name}\n${key}` → count. */
  const admitted = new Map<number, Map<string, number>>();

  const sendTo = (worker: Worker, message: LimitsMessage) => {
    // A worker that is going away misses the message; its replacement asks for the blocks.
    if (!worker.isConnected()) return;
    try {
      worker.send(message, undefined, () => {});
    } catch {
      // disconnected meanwhile
    }
  };
  const everyWorker = (message: LimitsMessage) => {
    for (const worker of Object.values(cluster.workers ?? {})) if (worker) sendTo(worker, message);
  };

  /** Announces `key` when it is blocked now; answers until when (0: it is not). */
  const announceIfBlocked = async (name: string, counter: FailureCounter, key: string, now: number): Promise<number> => {
    const wait = await counter.blockedFor(key, now);
    if (wait <= 0) return 0;
    const block: Block = [name, key, now + wait];
    const id = `${name}\n${key}`;
    blocked.delete(id);
    if (blocked.size >= MAX_BLOCKED_KEYS) blocked.delete(blocked.keys().next().value!);
    blocked.set(id, block);
    everyWorker({ type: LIMITS_MESSAGE, blocks: [block] });
    return block[2];
  };

  const count = (workerId: number, id: string, change: 1 | -1): boolean => {
    let attempts = admitted.get(workerId);
    if (!attempts) admitted.set(workerId, (attempts = new Map()));
    const now = (attempts.get(id) ?? 0) + change;
    if (now < 0) return false;
    if (now === 0) attempts.delete(id);
    else attempts.set(id, now);
    return true;
  };

  const answer = async (workerId: number, request: LimitsRequest): Promise<unknown> => {
    if (request.op === 'blocked') {
      const now = Math.floor(Date.now() / 1000);
      const blocks = [...blocked.values()].filter(([, , until]) => until > now);
      return blocks;
    }
    const { name, key, now } = request;
    if (request.op === 'take') return (await requests.get(name)?.take(key, now)) ?? 0;
    // A slice leased to a worker that dies is not given back: its replacement leases from what is left.
    if (request.op === 'lease') return leases.get(name)?.lease(key, now) ?? 0;
    const counter = failures.get(name);
    if (!counter) return 0;
    switch (request.op) {
      case 'fail':
        await counter.fail(key, now);
        return announceIfBlocked(name, counter, key, now);
      case 'reset':
        await counter.reset(key, now);
        if (blocked.delete(`${name}\n${key}`)) everyWorker({ type: LIMITS_MESSAGE, unblock: [name, key] });
        return 0;
      case 'admit': {
        const wait = await counter.admit(key, now);
        if (wait !== 0) return wait;
        // Its turn came after the worker exited (it waited for one): nobody will settle it.
        if (exited.has(workerId)) await counter.settle(key, 'withdrawn', now);
        else count(workerId, `${name}\n${key}`, 1);
        return wait;
      }
      case 'settle':
        // Only an attempt this worker holds here: one given back already (the worker exited) is not settled twice.
        if (!count(workerId, `${name}\n${key}`, -1)) return 0;
        await counter.settle(key, request.outcome, now);
        return request.outcome === 'failed' ? announceIfBlocked(name, counter, key, now) : 0;
    }
  };

  const onMessage = (worker: Worker, message: unknown) => {
    if (!isLimitsMessage(message) || !('request' in message)) return;
    const { id, request } = message;
    answer(worker.id, request).then(
      (result) => sendTo(worker, { type: LIMITS_MESSAGE, id, answer: result }),
      // Left unanswered, the worker counts on its own after its deadline.
      () => {},
    );
  };
  const onExit = (worker: Worker) => {
    exited.add(worker.id);
    const attempts = admitted.get(worker.id);
    admitted.delete(worker.id);
    if (!attempts) return;
    const now = Math.floor(Date.now() / 1000);
    for (const [id, held] of attempts) {
      const cut = id.indexOf('\n');
      const name = id.slice(0, cut);
      const key = id.slice(cut + 1);
      for (let i = 0; i < held; i++) void failures.get(name)?.settle(key, 'withdrawn', now);
    }
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return {
    close() {
      cluster.off('message', onMessage);
      cluster.off('exit', onExit);
    },
  };
}
