/**
 * Rate limits: failure counters (sign-in, client authentication) and request budgets (token
 * endpoint, per client). In process by default; shared across instances through Redis when
 * REDIS_URL is set. A limiter that cannot reach Redis lets requests through and says so in the
 * log: an unreachable cache must not take the authorization server down with it.
 */
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

export function inProcessFailureCounter(limit: number, windowSeconds: number, maxKeys = 100_000): FailureCounter {
  const windows = new Map<string, { start: number; failures: number }>();
  const current = (key: string, now: number) => {
    const window = windows.get(key);
    if (window && now - window.start < windowSeconds) return window;
    windows.delete(key);
    return undefined;
  };
  return {
    blockedFor(key, now) {
      const window = current(key, now);
      return window && window.failures >= limit ? window.start + windowSeconds - now : 0;
    },
    async fail(key, now) {
      const window = current(key, now);
      if (window) window.failures += 1;
      else {
        if (windows.size >= maxKeys) windows.delete(windows.keys().next().value!);
        windows.set(key, { start: now, failures: 1 });
      }
    },
    async reset(key) {
      windows.delete(key);
    },
  };
}

/** Failures counted in Redis per fixed window, so every instance sees every failure. */
export function redisFailureCounter(redis: RedisLike, name: string, limit: number, windowSeconds: number, warn: Warn): FailureCounter {
  const keyOf = (key: string, now: number) => `gatehouse:failures:${name}:${Math.floor(now / windowSeconds)}:${key}`;
  return {
    async blockedFor(key, now) {
      try {
        const failures = Number((await redis.get(keyOf(key, now))) ?? 0);
        return failures >= limit ? windowSeconds - (now % windowSeconds) : 0;
      } catch (error) {
        warn('rate limit store unreachable: not throttling', error);
        return 0;
      }
    },
    async fail(key, now) {
      try {
        const k = keyOf(key, now);
        if ((await redis.incrBy(k, 1)) === 1) await redis.expire(k, windowSeconds);
      } catch (error) {
        warn('rate limit store unreachable: failure not counted', error);
      }
    },
    async reset(key) {
      const now = Math.floor(Date.now() / 1000);
      try {
        await redis.del(keyOf(key, now));
      } catch (error) {
        warn('rate limit store unreachable', error);
      }
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
 * the instances together never exceed the limit.
 */
export function redisRequestLimiter(redis: RedisLike, name: string, limit: number, windowSeconds: number, warn: Warn): RequestLimiter {
  const lease = Math.max(1, Math.floor(limit / 50));
  const local = new Map<string, { window: number; remaining: number; exhausted: boolean }>();
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
        try {
          const k = `gatehouse:requests:${name}:${window}:${key}`;
          const total = await redis.incrBy(k, lease);
          if (total === lease) await redis.expire(k, windowSeconds * 2);
          entry.remaining = Math.max(0, Math.min(lease, limit - (total - lease)));
          entry.exhausted = entry.remaining === 0;
        } catch (error) {
          warn('rate limit store unreachable: not throttling', error);
          return 0;
        }
      }
      if (entry.remaining === 0) return (window + 1) * windowSeconds - now;
      entry.remaining -= 1;
      return 0;
    },
  };
}
