import type { Clock } from './clock.ts';
import type { AuditEvent } from '../storage/repositories/audit.ts';

/** An audit event as recorded, before storage gives it an id. */
export type RecordedEvent = Omit<AuditEvent, 'id'>;

export interface RepeatedEventsOptions {
  /** How long, from the first event of a key, its repeats are counted before they are written as one. */
  windowSeconds: number;
  /** Keys counted at once; beyond them, events of new keys are counted together, one count per kind. */
  maxKeys: number;
  /** How often (ms, real time) windows that have ended are written when no event of their key comes. */
  sweepIntervalMs: number;
}

interface Window {
  /** The first event of the window, written at once; its repeats are written as a copy of it. */
  first: RecordedEvent;
  start: number;
  last: number;
  repeated: number;
}

interface Overflow {
  outcome: AuditEvent['outcome'];
  start: number;
  last: number;
  repeated: number;
}

/**
 * Audit events that come in floods (refused token requests), aggregated the way Okta and Auth0 keep
 * their logs readable under attack: the first event of a key in a window is written at once, its
 * repeats in that window are only counted, and written as one event carrying `repeated`,
 * `window_start` and `window_end` when the window ends — when the key is next seen, at the next
 * sweep, at `flush()` (for what has ended) or at `close()` (for everything). At most `maxKeys` keys
 * are tracked: events of further keys are folded into one `overflow` event per kind and window, so
 * memory stays bounded and a flood is still on record with its size.
 *
 * Windows are kept in the order they opened (a key seen again after its window is reinserted), so
 * the ended ones are at the front: a sweep stops at the first that is still open.
 */
export class RepeatedEvents {
  readonly #write: (event: RecordedEvent) => void;
  readonly #clock: Clock;
  readonly #windowSeconds: number;
  readonly #maxKeys: number;
  readonly #sweepIntervalMs: number;
  #windows = new Map<string, Window>();
  /** By kind: a handful of constants in the code, never a value from a request. */
  #overflows = new Map<string, Overflow>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(write: (event: RecordedEvent) => void, clock: Clock, options: RepeatedEventsOptions) {
    this.#write = write;
    this.#clock = clock;
    this.#windowSeconds = options.windowSeconds;
    this.#maxKeys = options.maxKeys;
    this.#sweepIntervalMs = options.sweepIntervalMs;
  }

  /** Records `event` under `key`: written now if it opens a window, counted if its key has one open. */
  record(key: string, event: RecordedEvent): void {
    const now = event.at;
    const open = this.#windows.get(key);
    if (open) {
      if (now < open.start + this.#windowSeconds) {
        open.repeated += 1;
        if (now > open.last) open.last = now;
        return;
      }
      this.#windows.delete(key);
      this.#end(open, open.start + this.#windowSeconds);
    } else if (this.#windows.size >= this.#maxKeys) {
      // Room is made by windows that have ended; the oldest tells at once whether there are any.
      const oldest = this.#windows.values().next().value!;
      if (oldest.start + this.#windowSeconds <= now) this.endWindows(now);
      if (this.#windows.size >= this.#maxKeys) return this.#overflow(event);
    }
    this.#windows.set(key, { first: event, start: now, last: now, repeated: 0 });
    this.#write(event);
    this.#startSweeping();
  }

  /** Writes the counts of the windows that have ended by `now`, and forgets their keys. */
  endWindows(now: number): void {
    for (const [key, window] of this.#windows) {
      const end = window.start + this.#windowSeconds;
      if (end > now) break;
      this.#windows.delete(key);
      this.#end(window, end);
    }
    for (const [kind, overflow] of this.#overflows) {
      const end = overflow.start + this.#windowSeconds;
      if (end > now) continue;
      this.#overflows.delete(kind);
      this.#endOverflow(kind, overflow, end);
    }
    if (this.#windows.size === 0 && this.#overflows.size === 0) this.#stopSweeping();
  }

  /** Writes every count now, open windows ending at `now` (shutdown): nothing counted is lost. */
  endAll(now: number): void {
    for (const window of this.#windows.values()) this.#end(window, Math.min(now, window.start + this.#windowSeconds));
    for (const [kind, overflow] of this.#overflows) this.#endOverflow(kind, overflow, Math.min(now, overflow.start + this.#windowSeconds));
    this.#windows.clear();
    this.#overflows.clear();
    this.#stopSweeping();
  }

  #end(window: Window, end: number): void {
    if (window.repeated === 0) return;
    const { first } = window;
    this.#write({ ...first, at: window.last, data: { ...first.data, repeated: window.repeated, window_start: window.start, window_end: end } });
  }

  #overflow(event: RecordedEvent): void {
    const now = event.at;
    const overflow = this.#overflows.get(event.kind);
    if (overflow && now < overflow.start + this.#windowSeconds) {
      overflow.repeated += 1;
      if (now > overflow.last) overflow.last = now;
      return;
    }
    if (overflow) this.#endOverflow(event.kind, overflow, overflow.start + this.#windowSeconds);
    this.#overflows.set(event.kind, { outcome: event.outcome, start: now, last: now, repeated: 1 });
    this.#startSweeping();
  }

  #endOverflow(kind: string, overflow: Overflow, end: number): void {
    this.#write({
      at: overflow.last,
      kind,
      outcome: overflow.outcome,
      clientId: null,
      userId: null,
      data: { overflow: true, repeated: overflow.repeated, window_start: overflow.start, window_end: end },
    });
  }

  #startSweeping(): void {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => this.endWindows(this.#clock()), this.#sweepIntervalMs);
    this.#sweeper.unref();
  }

  #stopSweeping(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}
