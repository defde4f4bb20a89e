import type { AuditEvent, AuditRepository } from '../storage/repositories/audit.ts';
import { RepeatedEvents, type RecordedEvent } from './audit-aggregation.ts';
import type { Clock } from './clock.ts';

/** A key's repeats within this many seconds of its first event are written as one event. */
const REPEAT_WINDOW_SECONDS = 60;
/** Keys whose repeats are counted at once (each ≈ 1 kB at most: a 256-character client id and an address). */
const MAX_REPEATED_KEYS = 10_000;

/**
 * Audit events are buffered and written in batches off the request path, so recording an event
 * never adds a database round trip to a token response. `close()` runs on shutdown.
 */
export class AuditTrail {
  #repository: AuditRepository;
  #clock: Clock;
  #buffer: AuditEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #onError: (error: unknown) => void;
  #repeated: RepeatedEvents;

  constructor(repository: AuditRepository, clock: Clock, onError: (error: unknown) => void) {
    this.#repository = repository;
    this.#clock = clock;
    this.#onError = onError;
    this.#repeated = new RepeatedEvents((event) => this.record(event), clock, { windowSeconds: REPEAT_WINDOW_SECONDS, maxKeys: MAX_REPEATED_KEYS, sweepIntervalMs: 5_000 });
  }

  record(event: Omit<AuditEvent, 'id' | 'data'> & { data?: Record<string, unknown> }): void {
    this.#buffer.push({ ...event, data: event.data ?? {} });
    if (this.#buffer.length >= 200) void this.#write();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => void this.#write(), 250);
      this.#timer.unref();
    }
  }

  /**
   * Records an event that an attacker can repeat thousands of times a second (a refused token
   * request): the first of its `key` in a minute is written as `record()` would, the repeats are
   * counted and written as one event with `repeated: n` once the minute is over (see RepeatedEvents).
   */
  recordRepeatable(key: string, event: RecordedEvent): void {
    this.#repeated.record(key, event);
  }

  /** Writes the events recorded so far, with the counts of repeats whose minute is over. */
  flush(): Promise<void> {
    this.#repeated.endWindows(this.#clock());
    return this.#write();
  }

  /** Writes everything, the counts of repeats still being counted too: on shutdown. */
  close(): Promise<void> {
    this.#repeated.endAll(this.#clock());
    return this.#write();
  }

  #write(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#buffer;
    this.#buffer = [];
    if (batch.length > 0) {
      this.#flushing = this.#flushing.then(() => this.#repository.append(batch)).catch(this.#onError);
    }
    return this.#flushing;
  }
}
