import type { AuditEvent, AuditRepository } from '../storage/repositories.ts';

/**
 * Audit events are buffered and written in batches off the request path, so recording an event
 * never adds a database round trip to a token response. `flush()` runs on shutdown.
 */
export class AuditTrail {
  #repository: AuditRepository;
  #buffer: AuditEvent[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #onError: (error: unknown) => void;

  constructor(repository: AuditRepository, onError: (error: unknown) => void) {
    this.#repository = repository;
    this.#onError = onError;
  }

  record(event: Omit<AuditEvent, 'id' | 'data'> & { data?: Record<string, unknown> }): void {
    this.#buffer.push({ ...event, data: event.data ?? {} });
    if (this.#buffer.length >= 200) void this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => void this.flush(), 250);
      this.#timer.unref();
    }
  }

  flush(): Promise<void> {
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
