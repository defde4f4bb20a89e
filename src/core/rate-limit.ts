/**
 * Counts failures per key in a fixed window. In process for now; the interface lets a shared
 * store (Redis) take over when several instances must agree.
 */
export interface FailureCounter {
  /** Seconds until `key` may try again, or 0 when it is not blocked. */
  blockedFor(key: string, now: number): number;
  fail(key: string, now: number): void;
  reset(key: string): void;
}

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
    fail(key, now) {
      const window = current(key, now);
      if (window) window.failures += 1;
      else {
        if (windows.size >= maxKeys) windows.delete(windows.keys().next().value!);
        windows.set(key, { start: now, failures: 1 });
      }
    },
    reset(key) {
      windows.delete(key);
    },
  };
}
