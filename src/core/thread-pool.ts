import { availableParallelism } from 'node:os';

/**
 * libuv's thread pool runs Argon2id, every WebCrypto signature and verification (each token the
 * token endpoint signs), name lookups (getaddrinfo) and file reads, first come first served. A job
 * that holds a thread long holds every job queued behind it: 50 queued password hashes held one
 * ES256 signature for 0.66 s, and a lookup at a DNS server that does not answer holds its thread for
 * the resolver's timeout (5 s a try). The two users that can hold threads long are therefore
 * bounded, so that two threads are always left for the rest: the name lookups of Logout Token
 * deliveries (backchannel-logout.ts) and password hashes (passwords.ts).
 *
 * With libuv's default of 4 threads, one lookup and one hash run at once. A larger pool
 * (UV_THREADPOOL_SIZE) runs more of each, but costs memory: glibc gives each thread that hashes an
 * arena of its own, which keeps Argon2id's 19 MiB once freed (RSS after 60 hashes, one at a time:
 * 187 MB with 4 threads, 433 MB with 16).
 */
export const THREAD_POOL_SIZE = Math.max(1, Math.min(1024, Math.floor(Number(process.env.UV_THREADPOOL_SIZE)) || 4));

/** Name lookups run at once, at most: each delivery in flight makes at most one (8 deliveries at once). */
export const LOOKUP_THREADS = Math.max(1, Math.min(8, THREAD_POOL_SIZE - 3));

/** Passwords hashed at once, at most: half the cores at most, for the event loop's sake, and what the lookups leave. */
export const HASHING_THREADS = Math.max(1, Math.min(Math.ceil(availableParallelism() / 2), THREAD_POOL_SIZE - 2 - LOOKUP_THREADS));

/**
 * At most `concurrency` tasks at once, and `maxWaiting` waiting for a turn, in order; beyond that
 * `busy()` is thrown at once, and the task is not run.
 */
export class BoundedWork {
  readonly concurrency: number;
  readonly maxWaiting: number;
  #busy: () => Error;
  #running = 0;
  #waiting: Array<() => void> = [];

  constructor(concurrency: number, maxWaiting: number, busy: () => Error) {
    this.concurrency = concurrency;
    this.maxWaiting = maxWaiting;
    this.#busy = busy;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.maxWaiting) throw this.#busy();
      await new Promise<void>((turn) => this.#waiting.push(turn));
    } else {
      this.#running += 1;
    }
    try {
      return await task();
    } finally {
      // The turn passes straight to the next in line, so a newcomer cannot slip in ahead of it.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}
