/**
 * Rate limits: failure counters (sign-in, client authentication) and request budgets (token
 * endpoint, per client). In process by default; shared across instances through Redis when
 * REDIS_URL is set. While Redis is down or does not answer, each instance counts in process and
 * says so in the log: an unreachable cache must neither take the authorization server down with it
 * nor lift the limits that stop password guessing (they hold per instance until Redis is back).
 */
import { withDeadline } from './deadline.ts';

export interface FailureCounter {
  /** Seconds until `key` may try again, or 0 when it is not blocked (in process: no promise to wait for). */
  blockedFor(key: string, now: number): number | Promise<number>;
  fail(key: string, now: number): Promise<void>;
  reset(key: string): Promise<void>;
}

export interface RequestLimiter {
  /** Takes one request from `key`'s budget: 0 when allowed, else the seconds until the next window. */
  take(key: string, now: number): number | Promise<number>;
}

/** The few Redis commands the shared limiters need (node-redis's client satisfies it). */
export interface RedisLike {
  incrBy(key: string, increment: number): Promise<number>;
  expire(key: string, seconds: number): Promise<number | boolean>;
  get(key: string): Promise<string | null>;
  del(key: string | string[]): Promise<number>;
}

type Warn = (message: string, error: unknown) => void;

export const REDIS_UNREACHABLE = 'Redis is unreachable: rate limits are counted in each instance until it is back';

/**
 * Redis as the shared limiters reach it. A command that fails, or gets no answer within
 * `timeoutMs` (a hung Redis: the client's own timeout stops at sending), pauses Redis for `pauseMs`:
 * meanwhile `run` answers undefined at once and the limiters count in process, so a Redis that is
 * down or hangs costs an endpoint at most one timeout per pause instead of one per request.
 */
export class RedisLink {
  #redis: RedisLike;
  #timeoutMs: number;
  #pauseMs: number;
  #warn: Warn;
  #pausedUntil = 0;

  constructor(redis: RedisLike, options: { timeoutMs: number; pauseMs: number }, warn: Warn) {
    this.#redis = redis;
    this.#timeoutMs = options.timeoutMs;
    this.#pauseMs = options.pauseMs;
    this.#warn = warn;
  }

  /** What `command` answered, or undefined when Redis is paused, the command failed or took too long. */
  async run<T>(command: (redis: RedisLike) => Promise<T>): Promise<T | undefined> {
    if (Date.now() < this.#pausedUntil) return undefined;
    try {
      return await withDeadline(command(this.#redis), this.#timeoutMs, `Redis did not answer within ${this.#timeoutMs} ms`);
    } catch (error) {
      this.#pausedUntil = Date.now() + this.#pauseMs;
      this.#warn(REDIS_UNREACHABLE, error);
      return undefined;
    }
  }
}

export function inProcessFailureCounter(limit: number, windowSeconds: number, maxKeys = 100_000): FailureCounter {
  const windows = new Map<string, { start: number; failures: number }>();
  const current = (key: string, now: number) => {
    const window = windows.get(key);
    if (window && now - window.start < windowSeconds) return window;
    windows.delete(key);
    return undefined;
  };
  const blockedFor = (key: string, now: number): number => {
    const window = current(key, now);
    return window && window.failures >= limit ? window.start + windowSeconds - now : 0;
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
  const fail = (key: string, now: number): void => {
    const window = current(key, now);
    if (window) window.failures += 1;
    else {
      if (windows.size >= maxKeys) evictOne(now);
      windows.set(key, { start: now, failures: 1 });
    }
  };
  return {
    blockedFor,
    async fail(key, now) {
      fail(key, now);
    },
    async reset(key) {
      windows.delete(key);
    },
  };
}

/**
 * Failures counted in Redis per fixed window, so every instance sees every failure. Failures that
 * could not reach Redis are counted in process, and block the key there until their window ends.
 */
export function redisFailureCounter(link: RedisLink, name: string, limit: number, windowSeconds: number): FailureCounter {
  const keyOf = (key: string, now: number) => `gatehouse:failures:${name}:${Math.floor(now / windowSeconds)}:${key}`;
  const local = inProcessFailureCounter(limit, windowSeconds);
  return {
    async blockedFor(key, now) {
      const locally = await local.blockedFor(key, now);
      if (locally > 0) return locally;
      const failures = await link.run((redis) => redis.get(keyOf(key, now)));
      return Number(failures ?? 0) >= limit ? windowSeconds - (now % windowSeconds) : 0;
    },
    async fail(key, now) {
      const k = keyOf(key, now);
      const counted = await link.run(async (redis) => {
        if ((await redis.incrBy(k, 1)) === 1) await redis.expire(k, windowSeconds);
        return true;
      });
      if (counted === undefined) await local.fail(key, now);
    },
    async reset(key) {
      await local.reset(key);
      await link.run((redis) => redis.del(keyOf(key, Math.floor(Date.now() / 1000))));
    },
  };
}

/** A fixed-window request budget per key, in process. `limit` 0 turns it off. */
export function inProcessRequestLimiter(limit: number, windowSeconds: number, maxKeys = 100_000): RequestLimiter {
  const windows = new Map<string, { window: number; used: number }>();
  return {
    take(key, now) {
      if (limit === 0) return 0;
      const window = Math.floor(now / windowSeconds);
      let entry = windows.get(key);
      if (!entry || entry.window !== window) {
        if (!entry && windows.size >= maxKeys) windows.delete(windows.keys().next().value!);
        entry = { window, used: 0 };
        windows.set(key, entry);
      }
      if (entry.used >= limit) return (window + 1) * windowSeconds - now;
      entry.used += 1;
      return 0;
    },
  };
}

/**
 * A fixed-window request budget shared through Redis. Each instance leases a slice of the budget
 * (one INCRBY per slice, not per request), so the token endpoint's hot path rarely waits on Redis;
 * the instances together never exceed the limit. While Redis cannot be reached, each instance
 * holds every key to the whole budget on its own.
 */
export function redisRequestLimiter(link: RedisLink, name: string, limit: number, windowSeconds: number): RequestLimiter {
  const lease = Math.max(1, Math.floor(limit / 50));
  const local = new Map<string, { window: number; remaining: number; exhausted: boolean }>();
  const fallback = inProcessRequestLimiter(limit, windowSeconds);
  return {
    async take(key, now) {
      if (limit === 0) return 0;
      const window = Math.floor(now / windowSeconds);
      let entry = local.get(key);
      if (!entry || entry.window !== window) {
        if (local.size >= 100_000) local.clear();
        entry = { window, remaining: 0, exhausted: false };
        local.set(key, entry);
      }
      if (entry.remaining === 0 && !entry.exhausted) {
        const k = `gatehouse:requests:${name}:${window}:${key}`;
        const total = await link.run(async (redis) => {
          const leased = await redis.incrBy(k, lease);
          if (leased === lease) await redis.expire(k, windowSeconds * 2);
          return leased;
        });
        if (total === undefined) return fallback.take(key, now);
        entry.remaining = Math.max(0, Math.min(lease, limit - (total - lease)));
        entry.exhausted = entry.remaining === 0;
      }
      if (entry.remaining === 0) return (window + 1) * windowSeconds - now;
      entry.remaining -= 1;
      return 0;
    },
  };
}
