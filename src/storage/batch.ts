export interface BatchOptions {
  /** Batches in flight at once; calls made meanwhile wait for the next one. */
  concurrency: number;
  /** Items in one batch at most. */
  maxSize: number;
}

/**
 * Turns a statement over many items into a function of one: calls made in the same turn of the event
 * loop, or while `concurrency` batches are already in flight, go to the database together as one
 * statement — one round trip, one plan, one commit for all of them. When the database is idle a call
 * waits for nothing but the end of the current turn. `run` answers one result per item, in order;
 * if it fails, every caller of that batch gets its error.
 */
export function batching<Item, Result>(run: (items: Item[]) => Promise<Result[]>, options: BatchOptions): (item: Item) => Promise<Result> {
  interface Waiting {
    item: Item;
    resolve(result: Result): void;
    reject(error: unknown): void;
  }
  let queue: Waiting[] = [];
  let inFlight = 0;
  let scheduled = false;

  const flush = () => {
    scheduled = false;
    while (queue.length > 0 && inFlight < options.concurrency) {
      const batch = queue.length <= options.maxSize ? queue : queue.slice(0, options.maxSize);
      queue = batch === queue ? [] : queue.slice(options.maxSize);
      inFlight += 1;
      void runBatch(batch);
    }
  };

  const runBatch = async (batch: Waiting[]) => {
    try {
      const results = await run(batch.map((waiting) => waiting.item));
      if (results.length !== batch.length) throw new Error(`a batch of ${batch.length} answered ${results.length} results`);
      batch.forEach((waiting, index) => waiting.resolve(results[index]!));
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    } finally {
      inFlight -= 1;
      flush();
    }
  };

  return (item) =>
    new Promise<Result>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!scheduled && inFlight < options.concurrency) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}
