/**
 * Rate limits — failure counters (failures.ts: sign-in, client authentication) and request budgets
 * (requests.ts: token endpoint, per client) — count in process by default; shared across instances
 * through Redis when REDIS_URL is set. While Redis is down or does not answer, each instance counts
 * in process and says so in the log: an unreachable cache must neither take the authorization server
 * down with it nor lift the limits that stop password guessing (they hold per instance until Redis
 * is back).
 */
import { withDeadline } from '../deadline.ts';

/**
 * The few Redis commands the shared limiters need (node-redis's client satisfies it). A count is
 * changed only in a transaction that also sets its expiry: as two commands, a connection that drops,
 * a deadline that fires or an instance killed between them would leave a count that lives for ever.
 * One of sign-ins being checked would hold a place of its account or address for good (as many of
 * them as its limit, and none of its sign-ins is checked again until someone deletes it by hand);
 * one kept per window, of failures or of a budget, would stay in Redis's memory. The expiry is set
 * again at every change (EXPIRE's NX, to set it on a new key only, is Redis 7's; the limiters work
 * with Redis 6 too), so each count says why that is harmless.
 */
export interface RedisLike {
  get(key: string): Promise<string | null>;
  del(key: string | string[]): Promise<number>;
  /** MULTI … EXEC: the commands queued go in one round trip and run together — all of them, or none when the connection drops first. */
  multi(): RedisTransaction;
}

/** The commands the limiters queue in a transaction; exec answers their replies in order. */
export interface RedisTransaction {
  incrBy(key: string, increment: number): RedisTransaction;
  expire(key: string, seconds: number): RedisTransaction;
  get(key: string): RedisTransaction;
  exec(): Promise<unknown[]>;
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
