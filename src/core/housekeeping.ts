import type { Storage, SweepPolicy } from '../storage/repositories.ts';
import type { GatehouseConfig } from './config.ts';

/** Rows deleted per table and statement: each statement stays short, so the endpoints never wait on one. */
export const SWEEP_BATCH_SIZE = 500;
/** Batches in one sweep at most; a sweep runs every minute on every instance. */
export const SWEEP_MAX_BATCHES = 20;

/** What the sweep deletes under `config`, besides rows past their own end (see SweepPolicy). */
export function sweepPolicyOf(config: Pick<GatehouseConfig, 'tokens' | 'audit' | 'apiKeys'>): SweepPolicy {
  return {
    accessTokenTtlSeconds: config.tokens.accessTokenTtlSeconds,
    auditRetentionSeconds: config.audit.retentionDays * 86_400,
    apiKeyRetentionSeconds: config.apiKeys.retentionDays * 86_400,
    refreshTokenMaxLifetimeSeconds: config.tokens.refreshTokenMaxLifetimeSeconds,
  };
}

/**
 * One sweep of expired rows (see Storage.sweepExpired): batch after batch while a batch comes back
 * full, so that a busy server's expired rows do not pile up faster than one batch a minute takes
 * them, and at most `maxBatches`, so that one sweep never holds the database for long; none after
 * `stop` is aborted (a shutdown: the rest waits for the next sweep, on any instance). Returns how
 * many rows went.
 */
export async function sweepExpiredRows(
  storage: Storage,
  now: number,
  policy: SweepPolicy,
  batchSize = SWEEP_BATCH_SIZE,
  maxBatches = SWEEP_MAX_BATCHES,
  stop?: AbortSignal,
): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < maxBatches && !stop?.aborted; batch++) {
    const swept = await storage.sweepExpired(now, batchSize, policy);
    total += swept;
    // Fewer rows than one table's batch: no table had more expired rows waiting.
    if (swept < batchSize) break;
  }
  return total;
}
