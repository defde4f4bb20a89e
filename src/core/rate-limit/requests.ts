import type { RedisLink } from './redis-link.ts';

export interface RequestLimiter {
  /** Takes one request from `key`'s budget: 0 when allowed, else the seconds until the next window. */
  take(key: string, now: number): number | Promise<number>;
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
 * The slice of a budget an instance (or a worker) leases at a time: small enough that the others
 * find most of the budget left, large enough that a busy key rarely waits for the next slice.
 */
export const leaseSize = (limit: number): number => Math.max(1, Math.floor(limit / 50));

/**
 * A fixed-window request budget per key, in process, handed out in slices of `leaseSize(limit)`:
 * the primary's count of a budget that the workers of `serve --workers N` lease from it (see
 * primaryLeasedRequestLimiter). A slice leased is gone from the budget whether or not its holder
 * uses it, so the slices in all never exceed the limit, whatever becomes of a worker.
 */
export function inProcessBudgetLeases(limit: number, windowSeconds: number, maxKeys = 100_000) {
  const size = leaseSize(limit);
  const windows = new Map<string, { window: number; leased: number }>();
  return {
    /** Leases the next slice of `key`'s budget in the window of `now`: how many requests it holds, 0 when the budget is spent. */
    lease(key: string, now: number): number {
      const window = Math.floor(now / windowSeconds);
      let entry = windows.get(key);
      if (!entry || entry.window !== window) {
        if (!entry && windows.size >= maxKeys) windows.delete(windows.keys().next().value!);
        entry = { window, leased: 0 };
        windows.set(key, entry);
      }
      const granted = Math.max(0, Math.min(size, limit - entry.leased));
      entry.leased += granted;
      return granted;
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
  const lease = leaseSize(limit);
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
        // The window is in the key's name, and the key is read only within it: an expiry set again
        // at every lease keeps it at most two windows past its own, when nothing reads it any more.
        const total = await link.run(async (redis) => {
          const [leased] = await redis.multi().incrBy(k, lease).expire(k, windowSeconds * 2).exec();
          return Number(leased);
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
