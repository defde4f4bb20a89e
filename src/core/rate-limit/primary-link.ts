/**
 * Under `gatehouse serve --workers N` without Redis, the security limits are counted once, by the
 * primary process, and the workers reach it over the cluster's IPC channel (see primary-counts.ts
 * for the primary's side): a limit the operators' guide promises holds for the whole server, not N
 * times over. A failure counter's check before every request stays in the worker, on the keys the
 * primary announced as blocked, so that a request that fails nothing costs no round trip; so does
 * most of a request budget leased from it in slices (the token endpoint's, taken on every token
 * request). While the primary does not answer, a worker counts in process, as an instance does
 * while Redis is away.
 */
import { inProcessFailureCounter, type AttemptOutcome, type FailureCounter } from './failures.ts';
import { inProcessRequestLimiter, type RequestLimiter } from './requests.ts';

/** The `type` of every message of the shared limits, both ways. */
export const LIMITS_MESSAGE = 'gatehouse:limits';

/** What a worker asks the primary; `now` is the worker's clock (seconds), as the counters take it. */
export type LimitsRequest =
  | { op: 'blocked' }
  | { op: 'fail' | 'reset' | 'admit'; name: string; key: string; now: number }
  | { op: 'settle'; name: string; key: string; now: number; outcome: AttemptOutcome }
  | { op: 'take' | 'lease'; name: string; key: string; now: number };

/** A key the primary blocks until `until` (seconds, the clock of the request that blocked it). */
export type Block = [name: string, key: string, until: number];

export type LimitsMessage =
  | { type: typeof LIMITS_MESSAGE; id: number; request: LimitsRequest }
  | { type: typeof LIMITS_MESSAGE; id: number; answer: unknown }
  | { type: typeof LIMITS_MESSAGE; blocks: Block[] }
  | { type: typeof LIMITS_MESSAGE; unblock: [name: string, key: string] };

export const isLimitsMessage = (message: unknown): message is LimitsMessage =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === LIMITS_MESSAGE;

/** How long a worker waits for the primary's answer before it counts in process instead. */
const PRIMARY_TIMEOUT_MS = 250;
/** How long a worker leaves the primary alone after it did not answer. */
const PRIMARY_PAUSE_MS = 5_000;
/** An admission may wait its turn at the primary (see FailureCounter.admit: 2 s); this on top. */
const ADMIT_TIMEOUT_MS = 2_000 + PRIMARY_TIMEOUT_MS;
/** The most keys a worker remembers as blocked; the oldest go first. */
const MAX_BLOCKED_KEYS = 100_000;

type Warn = (message: string, error?: unknown) => void;

export const PRIMARY_UNREACHABLE = 'the primary process does not answer: rate limits are counted in each worker until it does';

/**
 * The IPC channel to the primary as the limiters use it. A request the primary does not answer
 * within its deadline (or that cannot be sent) pauses the link: meanwhile `call` answers undefined
 * at once and the limiters count in process, so a primary that hangs costs a request at most one
 * deadline per pause.
 */
export class PrimaryLink {
  #send: (message: LimitsMessage) => void;
  #warn: Warn;
  #nextId = 0;
  #pausedUntil = 0;
  #pending = new Map<number, { resolve(answer: unknown): void; timer: NodeJS.Timeout; late?: (answer: unknown) => void }>();
  /** Answers that came after their deadline, for requests that must be undone then (see `call`). */
  #late = new Map<number, (answer: unknown) => void>();
  /** Blocks the primary announced: name → key → until. */
  readonly blocks = new Map<string, Map<string, number>>();

  constructor(send: (message: LimitsMessage) => void, warn: Warn) {
    this.#send = send;
    this.#warn = warn;
  }

  /** Takes a message from the primary; false when it is none of the limits'. */
  receive(message: unknown): boolean {
    if (!isLimitsMessage(message)) return false;
    if ('blocks' in message) for (const [name, key, until] of message.blocks) this.block(name, key, until);
    else if ('unblock' in message) this.blocks.get(message.unblock[0])?.delete(message.unblock[1]);
    else if ('answer' in message) {
      const waiting = this.#pending.get(message.id);
      if (waiting) {
        this.#pending.delete(message.id);
        clearTimeout(waiting.timer);
        waiting.resolve(message.answer);
      } else {
        const late = this.#late.get(message.id);
        this.#late.delete(message.id);
        late?.(message.answer);
      }
    }
    return true;
  }

  block(name: string, key: string, until: number): void {
    let keys = this.blocks.get(name);
    if (!keys) this.blocks.set(name, (keys = new Map()));
    keys.delete(key);
    if (keys.size >= MAX_BLOCKED_KEYS) keys.delete(keys.keys().next().value!);
    keys.set(key, until);
  }

  /** Seconds `key` of `name` is blocked for, as the primary announced; 0 when it is not. */
  blockedFor(name: string, key: string, now: number): number {
    const keys = this.blocks.get(name);
    const until = keys?.get(key);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    keys!.delete(key);
    return 0;
  }

  /**
   * The primary's answer to `request`, or undefined while the link is paused, or when the answer did
   * not come in time. `late` receives an answer that came after its deadline (to undo what the
   * primary did for a request the worker no longer waits for). A request that gives back what the
   * primary holds for this worker is sent `evenIfPaused`: the primary acts on it once it reads it.
   */
  call<T>(request: LimitsRequest, options: { timeoutMs?: number; late?: (answer: T) => void; evenIfPaused?: boolean } = {}): Promise<T | undefined> {
    const { timeoutMs = PRIMARY_TIMEOUT_MS, late, evenIfPaused = false } = options;
    if (!evenIfPaused && Date.now() < this.#pausedUntil) return Promise.resolve(undefined);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        if (late) this.#remember(id, late as (answer: unknown) => void);
        this.#pause(new Error(`no answer within ${timeoutMs} ms`));
        resolve(undefined);
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (answer: unknown) => void, timer });
      try {
        this.#send({ type: LIMITS_MESSAGE, id, request });
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(id);
        this.#pause(error);
        resolve(undefined);
      }
    });
  }

  close(): void {
    for (const { timer, resolve } of this.#pending.values()) {
      clearTimeout(timer);
      resolve(undefined);
    }
    this.#pending.clear();
    this.#late.clear();
  }

  #remember(id: number, late: (answer: unknown) => void): void {
    if (this.#late.size >= 10_000) this.#late.delete(this.#late.keys().next().value!);
    this.#late.set(id, late);
  }

  #pause(error: unknown): void {
    this.#pausedUntil = Date.now() + PRIMARY_PAUSE_MS;
    this.#warn(PRIMARY_UNREACHABLE, error);
  }
}

/**
 * Failures counted by the primary. `blockedFor` answers from the blocks the primary announced, and
 * from the failures counted in this worker while the primary did not answer; it sends nothing.
 */
export function primaryFailureCounter(link: PrimaryLink, name: string, limit: number, windowSeconds: number): FailureCounter {
  const local = inProcessFailureCounter(limit, windowSeconds);
  /** Attempts of each key admitted in this worker because the primary did not answer. */
  const admittedHere = new Map<string, number>();
  const blockedFor = (key: string, now: number): number => Math.max(link.blockedFor(name, key, now), local.blockedFor(key, now) as number);
  const fail = async (key: string, now: number) => {
    const until = await link.call<number>({ op: 'fail', name, key, now });
    if (until === undefined) await local.fail(key, now);
    else if (until > now) link.block(name, key, until);
  };
  return {
    blockedFor,
    fail,
    async reset(key, now) {
      await local.reset(key, now);
      await link.call({ op: 'reset', name, key, now });
    },
    async admit(key, now) {
      const wait = blockedFor(key, now);
      if (wait > 0) return wait;
      // An admission the primary grants after this worker gave up on it is given back at once.
      const answer = await link.call<number | 'busy'>(
        { op: 'admit', name, key, now },
        { timeoutMs: ADMIT_TIMEOUT_MS, late: (late) => late === 0 && void link.call({ op: 'settle', name, key, now, outcome: 'withdrawn' }, { evenIfPaused: true }) },
      );
      if (answer !== undefined) return answer;
      const here = await local.admit(key, now);
      if (here === 0) admittedHere.set(key, (admittedHere.get(key) ?? 0) + 1);
      return here;
    },
    async settle(key, outcome, now) {
      const here = admittedHere.get(key) ?? 0;
      if (here > 0) {
        if (here === 1) admittedHere.delete(key);
        else admittedHere.set(key, here - 1);
        return local.settle(key, outcome, now);
      }
      const until = await link.call<number>({ op: 'settle', name, key, now, outcome }, { evenIfPaused: true });
      // No answer in time: the failure counts here as well (the primary settles the attempt once it
      // reads the request, or gives its place back when this worker exits).
      if (until === undefined && outcome === 'failed') await local.fail(key, now);
      else if (until !== undefined && until > now) link.block(name, key, until);
    },
  };
}

/** A request budget counted by the primary; in this worker while the primary does not answer. */
export function primaryRequestLimiter(link: PrimaryLink, name: string, limit: number, windowSeconds: number): RequestLimiter {
  const fallback = inProcessRequestLimiter(limit, windowSeconds);
  return {
    async take(key, now) {
      if (limit === 0) return 0;
      const wait = await link.call<number>({ op: 'take', name, key, now });
      return wait ?? fallback.take(key, now);
    },
  };
}

/**
 * A request budget the primary hands out in slices (see inProcessBudgetLeases), as
 * redisRequestLimiter leases from Redis: a worker asks the primary only when its slice of a key is
 * used up, so most requests are answered here, at once; the workers together never exceed the
 * limit, and a worker started in place of one that died finds the budget as the primary leased it
 * out. While the primary does not answer, this worker holds every key to the whole budget on its own.
 */
export function primaryLeasedRequestLimiter(link: PrimaryLink, name: string, limit: number, windowSeconds: number, maxKeys = 100_000): RequestLimiter {
  type Slice = { window: number; remaining: number; exhausted: boolean; leasing?: Promise<boolean> };
  const slices = new Map<string, Slice>();
  const fallback = inProcessRequestLimiter(limit, windowSeconds);
  const sliceOf = (key: string, window: number): Slice => {
    let slice = slices.get(key);
    if (!slice || slice.window !== window) {
      if (!slice && slices.size >= maxKeys) slices.delete(slices.keys().next().value!);
      slice = { window, remaining: 0, exhausted: false };
      slices.set(key, slice);
    }
    return slice;
  };
  /** One request taken from `slice` (0), the seconds until the next window when the budget is spent, or undefined when the slice is used up. */
  const takeFrom = (slice: Slice, now: number): number | undefined => {
    if (slice.remaining > 0) {
      slice.remaining -= 1;
      return 0;
    }
    return slice.exhausted ? (slice.window + 1) * windowSeconds - now : undefined;
  };
  /**
   * Leases the next slice, then takes from it. The requests of a key that arrive meanwhile wait for
   * the same lease rather than each leasing one: a burst would otherwise lease a slice per request,
   * taking the budget of the other workers.
   */
  const leaseThenTake = async (key: string, now: number, window: number): Promise<number> => {
    for (;;) {
      const slice = sliceOf(key, window);
      const taken = takeFrom(slice, now);
      if (taken !== undefined) return taken;
      slice.leasing ??= link.call<number>({ op: 'lease', name, key, now }).then((granted) => {
        slice.leasing = undefined;
        if (granted === undefined) return false;
        slice.remaining += granted;
        slice.exhausted = granted === 0;
        return true;
      });
      if (!(await slice.leasing)) return fallback.take(key, now);
    }
  };
  return {
    take(key, now) {
      if (limit === 0) return 0;
      const window = Math.floor(now / windowSeconds);
      // Synchronous while the slice lasts: the token endpoint then waits for nothing.
      return takeFrom(sliceOf(key, window), now) ?? leaseThenTake(key, now, window);
    },
  };
}
