import type { RedisLike, RedisLink } from './redis-link.ts';

export interface FailureCounter {
  /** Seconds until `key` may try again, or 0 when it is not blocked (in process: no promise to wait for). */
  blockedFor(key: string, now: number): number | Promise<number>;
  fail(key: string, now: number): Promise<void>;
  /** Clears the failures `key` has counted in the window of `now` (a success). */
  reset(key: string, now: number): Promise<void>;
  /**
   * Admits one attempt of `key` to be checked: 0, the seconds to wait while the key is blocked, or
   * 'busy' when its turn did not come within a few seconds (the attempts ahead of it are slow to
   * settle: a database that does not answer). No more attempts of a key are checked at once than it
   * has failures left before its limit; the others wait until one of them settles. Otherwise
   * guesses sent all at once would each be checked against a count that none of them has raised
   * yet. An admitted attempt must be settled.
   */
  admit(key: string, now: number): Promise<number | 'busy'>;
  /**
   * Ends an admitted attempt; a failed one counts. One that could not be decided (the check itself
   * failed: a database that does not answer) counts nothing, and the attempts waiting for their
   * turn are answered 'busy' rather than sent after it.
   */
  settle(key: string, outcome: AttemptOutcome, now: number): Promise<void>;
}

/** 'withdrawn': given up before it was checked (another limit refused it); counts nothing, like 'passed'. */
export type AttemptOutcome = 'failed' | 'passed' | 'withdrawn' | 'undecided';

/**
 * The attempts of each key being checked at this moment in this process, held to the failures the
 * key has left: an attempt that finds no room waits until one of them leaves, then looks again (the
 * count may have grown, or been cleared by a success).
 */
class Checking {
  #limit: number;
  #keys = new Map<string, { checking: number; waiting: Array<(woken: 'again' | 'busy') => void> }>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * True when `key` took a place; otherwise a promise of 'again' when a place may have come free,
   * or 'busy' when an attempt ahead could not be decided.
   */
  enter(key: string, failures: number): true | Promise<'again' | 'busy'> {
    let entry = this.#keys.get(key);
    if (!entry) this.#keys.set(key, (entry = { checking: 0, waiting: [] }));
    if (failures + entry.checking < this.#limit) {
      entry.checking += 1;
      return true;
    }
    const { waiting } = entry;
    return new Promise((resolve) => waiting.push(resolve));
  }

  leave(key: string, woken: 'again' | 'busy' = 'again'): void {
    const entry = this.#keys.get(key);
    if (!entry) return;
    entry.checking -= 1;
    const waiting = entry.waiting;
    entry.waiting = [];
    if (entry.checking === 0) this.#keys.delete(key);
    for (const resolve of waiting) resolve(woken);
  }

  /** An attempt that looked and gave up (the key is blocked) leaves no trace. */
  forget(key: string): void {
    const entry = this.#keys.get(key);
    if (entry && entry.checking === 0 && entry.waiting.length === 0) this.#keys.delete(key);
  }
}

/** How long an attempt waits for its turn to be checked (see FailureCounter.admit). */
const TURN_WAIT_MS = 2_000;

/** Admits an attempt through `checking` given how the key stands now, waiting until `deadline` at most (see FailureCounter.admit). */
async function admitted(checking: Checking, key: string, deadline: number, standing: () => Promise<{ wait: number; failures: number }>): Promise<number | 'busy'> {
  for (;;) {
    const { wait, failures } = await standing();
    if (wait > 0) {
      checking.forget(key);
      return wait;
    }
    const entered = checking.enter(key, failures);
    if (entered === true) return 0;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), 'late')));
    const woken = await Promise.race([entered, late]);
    clearTimeout(timer);
    if (woken !== 'again') {
      checking.forget(key);
      return 'busy';
    }
  }
}

/** Failures per key in fixed windows, in process. */
function failureWindows(limit: number, windowSeconds: number, maxKeys: number) {
  const windows = new Map<string, { start: number; failures: number }>();
  const current = (key: string, now: number) => {
    const window = windows.get(key);
    if (window && now - window.start < windowSeconds) return window;
    windows.delete(key);
    return undefined;
  };
  /**
   * Makes room for a key. A key that is blocking goes last: otherwise failures under many invented
   * client ids or accounts would push out the very key they are guessing for, lifting its block.
   * The oldest entries are looked at first (a bounded number of them).
   */
  const evictOne = (now: number): void => {
    let looked = 0;
    for (const [key, window] of windows) {
      if (now - window.start >= windowSeconds || window.failures < limit) {
        windows.delete(key);
        return;
      }
      if (++looked >= 1000) break;
    }
    windows.delete(windows.keys().next().value!);
  };
  return {
    blockedFor(key: string, now: number): number {
      const window = current(key, now);
      return window && window.failures >= limit ? window.start + windowSeconds - now : 0;
    },
    failures: (key: string, now: number): number => current(key, now)?.failures ?? 0,
    fail(key: string, now: number): void {
      const window = current(key, now);
      if (window) window.failures += 1;
      else {
        if (windows.size >= maxKeys) evictOne(now);
        windows.set(key, { start: now, failures: 1 });
      }
    },
    reset(key: string): void {
      windows.delete(key);
    },
  };
}

export function inProcessFailureCounter(limit: number, windowSeconds: number, maxKeys = 100_000): FailureCounter {
  const windows = failureWindows(limit, windowSeconds, maxKeys);
  const checking = new Checking(limit);
  return {
    blockedFor: windows.blockedFor,
    async fail(key, now) {
      windows.fail(key, now);
    },
    async reset(key) {
      windows.reset(key);
    },
    admit: (key, now) => admitted(checking, key, Date.now() + TURN_WAIT_MS, async () => ({ wait: windows.blockedFor(key, now), failures: windows.failures(key, now) })),
    async settle(key, outcome, now) {
      if (outcome === 'failed') windows.fail(key, now);
      checking.leave(key, outcome === 'undecided' ? 'busy' : 'again');
    },
  };
}

/**
 * How long a count of attempts being checked outlives its last change in Redis (an instance that
 * died mid-check leaves one behind). Its name has no window, one count per key for good: its
 * expiry is set anew at every change, joining and leaving alike.
 */
const CHECKING_TTL_SECONDS = 60;

/**
 * Failures counted in Redis per fixed window, so every instance sees every failure. Failures that
 * could not reach Redis are counted in process, and block the key there until their window ends.
 * The attempts being checked are held to the failures left both in this process and, through a
 * count in Redis, across the instances: an attempt that finds no room there looks again every
 * `pollMs`, until its turn's wait is over.
 */
export function redisFailureCounter(link: RedisLink, name: string, limit: number, windowSeconds: number, pollMs = 50): FailureCounter {
  const keyOf = (key: string, now: number) => `gatehouse:failures:${name}:${Math.floor(now / windowSeconds)}:${key}`;
  const checkingKeyOf = (key: string) => `gatehouse:checking:${name}:${key}`;
  const local = failureWindows(limit, windowSeconds, 100_000);
  const checking = new Checking(limit);
  /** Attempts of each key admitted here that are in the count in Redis (one taken while Redis was away is not). */
  const counted = new Map<string, number>();
  const windowLeft = (now: number) => windowSeconds - (now % windowSeconds);

  /** The failures of `key` counted here (while Redis was away) and in Redis, and the seconds it must wait. */
  const standing = async (key: string, now: number) => {
    const stored = Number((await link.run((redis) => redis.get(keyOf(key, now)))) ?? 0);
    const failures = local.failures(key, now) + stored;
    return { wait: local.blockedFor(key, now) || (failures >= limit ? windowLeft(now) : 0), failures };
  };
  // A key blocked here needs no word from Redis.
  const blockedFor = async (key: string, now: number): Promise<number> => local.blockedFor(key, now) || (await standing(key, now)).wait;
  /**
   * Joins the count in Redis when failures and attempts there leave room: 'joined', 'full' (look
   * again later), the seconds to wait when the key became blocked, or undefined while Redis is away.
   */
  const joinShared = (key: string, now: number) =>
    link.run(async (redis): Promise<'joined' | 'full' | number> => {
      const k = checkingKeyOf(key);
      const [checkingNow, , stored] = await redis.multi().incrBy(k, 1).expire(k, CHECKING_TTL_SECONDS).get(keyOf(key, now)).exec();
      const failures = Number(stored ?? 0) + local.failures(key, now);
      if (failures + Number(checkingNow) <= limit) return 'joined';
      await leaveShared(redis, k);
      return failures >= limit ? windowLeft(now) : 'full';
    });
  const leaveShared = async (redis: RedisLike, k: string) => {
    const [checkingNow] = await redis.multi().incrBy(k, -1).expire(k, CHECKING_TTL_SECONDS).exec();
    // Below zero only when the count expired meanwhile (an attempt that outlived it): deleted, so that
    // it makes no room for an attempt too many; should the DEL not arrive, it goes with its expiry.
    if (Number(checkingNow) < 0) await redis.del(k);
  };

  const fail = async (key: string, now: number): Promise<void> => {
    const k = keyOf(key, now);
    // The window is in the key's name, and the key is read only within it: an expiry set again at
    // every failure keeps it at most one window past its own, when nothing reads it any more.
    const stored = await link.run(async (redis) => {
      await redis.multi().incrBy(k, 1).expire(k, windowSeconds).exec();
      return true;
    });
    if (stored === undefined) local.fail(key, now);
  };

  return {
    blockedFor,
    fail,
    async reset(key, now) {
      local.reset(key);
      await link.run((redis) => redis.del(keyOf(key, now)));
    },
    async admit(key, now) {
      const deadline = Date.now() + TURN_WAIT_MS;
      const wait = await admitted(checking, key, deadline, () => standing(key, now));
      if (wait !== 0) return wait;
      for (;;) {
        const joined = await joinShared(key, now);
        if (joined === 'joined') counted.set(key, (counted.get(key) ?? 0) + 1);
        if (joined === 'joined' || joined === undefined) return 0;
        if (typeof joined === 'number' || Date.now() >= deadline) {
          checking.leave(key);
          return typeof joined === 'number' ? joined : 'busy';
        }
        await new Promise((resolve) => setTimeout(resolve, pollMs));
      }
    },
    async settle(key, outcome, now) {
      // The failure is counted before the attempt leaves, so failures + attempts never dips meanwhile.
      if (outcome === 'failed') await fail(key, now);
      const joined = counted.get(key) ?? 0;
      if (joined > 0) {
        if (joined === 1) counted.delete(key);
        else counted.set(key, joined - 1);
        await link.run((redis) => leaveShared(redis, checkingKeyOf(key)));
      }
      checking.leave(key, outcome === 'undecided' ? 'busy' : 'again');
    },
  };
}
