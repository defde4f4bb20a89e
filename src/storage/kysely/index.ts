import { sql, type Kysely, type SelectQueryBuilder, type Transaction } from 'kysely';
import { migrate, openDatabase, type DatabaseOptions, type Dialect } from '../database.ts';
import type { Storage, SweepPolicy } from '../repositories.ts';
import type { Database } from '../schema.ts';
import { kyselyApiKeys } from './api-keys.ts';
import { kyselyAudit, kyselyRevocations } from './audit.ts';
import { kyselyConsents, kyselyPendingAuthorizations, kyselySessions } from './browser.ts';
import { kyselyClients } from './clients.ts';
import { kyselyCodes } from './codes.ts';
import { kyselyGrants, kyselyRefreshTokens } from './grants.ts';
import { kyselyKeys } from './keys.ts';
import { kyselyPasswordResets } from './password-resets.ts';
import { kyselyEmailChanges } from './email-changes.ts';
import { kyselyEmailVerifications } from './email-verifications.ts';
import { kyselyUsers } from './users.ts';

/** Opens the database, applies pending migrations and returns the repositories over it. */
export async function createStorage(options: DatabaseOptions): Promise<Storage> {
  // Migrations have no query timeout (one may rewrite a large table): on PostgreSQL with a timeout
  // they run through a connection of their own.
  const migrations = options.databaseUrl && options.queryTimeoutMs !== undefined ? openDatabase({ ...options, queryTimeoutMs: undefined, poolSize: 1 }) : undefined;
  const handle = openDatabase(options);
  try {
    await migrate(migrations ?? handle);
  } catch (error) {
    await handle.close();
    throw error;
  } finally {
    await migrations?.close();
  }
  const { db } = handle;
  /** False once the database turned out to have no advisory locks (see sweepExpired). */
  let advisoryLocks = handle.dialect === 'postgres';
  return {
    dialect: handle.dialect,
    clients: kyselyClients(db),
    users: kyselyUsers(db, handle.dialect),
    keys: kyselyKeys(db),
    grants: kyselyGrants(db, handle.dialect),
    refreshTokens: kyselyRefreshTokens(db, handle.dialect),
    codes: kyselyCodes(db, handle.dialect),
    revocations: kyselyRevocations(db),
    audit: kyselyAudit(db, handle.dialect),
    sessions: kyselySessions(db, handle.dialect),
    consents: kyselyConsents(db),
    pendingAuthorizations: kyselyPendingAuthorizations(db),
    apiKeys: kyselyApiKeys(db),
    passwordResets: kyselyPasswordResets(db),
    emailVerifications: kyselyEmailVerifications(db),
    emailChanges: kyselyEmailChanges(db),
    poolStats: () => (handle.pool ? { total: handle.pool.totalCount, idle: handle.pool.idleCount, waiting: handle.pool.waitingCount } : undefined),
    async ping() {
      await sql`select 1`.execute(db);
    },
    async sweepExpired(now, limit, policy) {
      if (advisoryLocks) {
        // One instance sweeps at a time: two deleting the same rows would only wait on each other, or
        // deadlock. The others sweep nothing and try again next time.
        try {
          return await db.transaction().execute(async (trx) => {
            const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${SWEEP_LOCK}::bigint) as locked`.execute(trx).catch((error: unknown) => {
              throw lacksAdvisoryLocks(error) ? NO_ADVISORY_LOCKS : error;
            });
            if (rows[0]?.locked !== true) return 0;
            return (await sweepRefreshTokens(trx, now, limit, policy, handle.dialect)) + (await sweepOtherTables(trx, now, limit, policy));
          });
        } catch (error) {
          if (error !== NO_ADVISORY_LOCKS) throw error;
          // A PostgreSQL-compatible engine without them (older CockroachDB releases, YugabyteDB without
          // its advisory-lock flag): from now on every instance sweeps, as on SQLite below.
          advisoryLocks = false;
        }
      }
      // Each table its own transaction, so the endpoints' writes interleave (SQLite has one writer anyway).
      const tokens = await db.transaction().execute((trx) => sweepRefreshTokens(trx, now, limit, policy, handle.dialect));
      return tokens + (await sweepOtherTables(db, now, limit, policy));
    },
    close: () => handle.close(),
  };
}

/**
 * The key of the PostgreSQL advisory lock held by the instance that sweeps: a bigint (the form
 * every engine with advisory locks takes), the bytes of "gatehous".
 */
export const SWEEP_LOCK = '7449363237540164979';

/** Thrown inside the sweep's transaction when the database has no advisory locks. */
const NO_ADVISORY_LOCKS = new Error('the database has no advisory locks');

/** undefined_function (the function does not exist) or feature_not_supported (it exists and refuses). */
const lacksAdvisoryLocks = (error: unknown): boolean => ['42883', '0A000'].includes((error as { code?: unknown } | null)?.code as string);

/**
 * Refresh tokens that can no longer be used, at most `limit`, and the end of each grant left without
 * one: no refresh token can make another access token, so the grant ends when the last one it made
 * expires. In one transaction, so that no grant is ever left without refresh tokens and without an
 * end. A token is of no more use once it has expired, or its grant was revoked, ended, or is past
 * `refreshTokenMaxLifetimeSeconds` (the token endpoint refuses them all: refreshTokenRefusal); a
 * consumed token of a live grant stays until it expires, since presented again it revokes the grant
 * (RFC 9700 §4.14.2). Each source is read through an index in a branch of its own, and every branch,
 * and the grants it starts from, stops at the batch: `union all` under the limit runs the branches in
 * turn and stops once the batch is full, and no plan collects more than a batch (one branch per
 * source instead of one join over all grants, which PostgreSQL's generic plan ran as a hash join of
 * every refresh token).
 */
export async function sweepRefreshTokens(trx: Transaction<Database>, now: number, limit: number, policy: SweepPolicy, dialect: Dialect): Promise<number> {
  const size = batchOf(limit);
  const maxLifetime = policy.refreshTokenMaxLifetimeSeconds ?? 0;
  const tokensOf = (grants: SelectQueryBuilder<Database, 'grants', { id: string }>) =>
    trx.selectFrom(grants.limit(size).as('g')).innerJoin('refresh_tokens as t', 't.grant_id', 'g.id').select('t.digest').limit(size);
  const branches = [
    trx.selectFrom('refresh_tokens').select('digest').where('expires_at', '<', now).limit(size),
    // Through grants_revoked_unended (migration 014): the revoked grants that may still have tokens.
    tokensOf(trx.selectFrom('grants').select('id').where('revoked_at', '<=', now).where('revoked_at', 'is not', null).where('expires_at', 'is', null)),
    tokensOf(trx.selectFrom('grants').select('id').where('expires_at', '<', now)),
  ];
  if (maxLifetime > 0) {
    // Through grants_unended_created (migration 014); grantRefreshEnd is created_at + the bound.
    branches.push(tokensOf(trx.selectFrom('grants').select('id').where('expires_at', 'is', null).where('created_at', '<=', now - maxLifetime)));
  }
  // Each branch a derived table, so that its limit stays its own.
  const [first, ...rest] = branches.map((branch, i) => trx.selectFrom(branch.as(`s${i}`)).select('digest'));
  const sweepable = rest.reduce((union, branch) => union.unionAll(branch), first!);
  const deleted = await trx
    .deleteFrom('refresh_tokens')
    .where('digest', 'in', trx.selectFrom(sweepable.as('s')).select('s.digest').limit(size))
    .returning('grant_id')
    .execute();
  const grantIds = [...new Set(deleted.map((row) => row.grant_id))];
  if (grantIds.length > 0) {
    await trx
      .updateTable('grants')
      .set({ expires_at: now + policy.accessTokenTtlSeconds })
      // On PostgreSQL one array parameter, so that every batch is the same statement (see preparedStatementPool).
      .where(dialect === 'postgres' ? sql<boolean>`id = any(${grantIds}::text[])` : sql<boolean>`id in (${sql.join(grantIds)})`)
      .where('expires_at', 'is', null)
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select('refresh_tokens.digest').whereRef('refresh_tokens.grant_id', '=', 'grants.id'))))
      .execute();
  }
  return deleted.length;
}

/**
 * A sweep's batch size as a literal in the statement, not a parameter: PostgreSQL plans a named
 * statement once, generically, and a generic plan takes `limit $n` for a tenth of the rows that
 * match. Over a table with many expired rows it then collected all of them (a bitmap of the whole
 * expiry range, or a hash of the audit log's every id) to delete 500: 0.4 s for 1M refresh tokens,
 * 1.6 s for 2M audit events. With the number in the text, the plan reads the expiry index in order
 * and stops after the batch. The size is the same on every sweep, so the statement still is one.
 */
function batchOf(limit: number) {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`a sweep's batch size must be a positive integer, not ${limit}`);
  return sql.lit(limit);
}

/** The other tables' expired rows, at most `limit` per table; small batches keep each statement short. */
export async function sweepOtherTables(db: Kysely<Database>, now: number, limit: number, { auditRetentionSeconds, apiKeyRetentionSeconds = 0 }: SweepPolicy): Promise<number> {
  const size = batchOf(limit);
  const batches = [
    // Of the first ended grants, those whose refresh tokens are gone (swept above, a batch at a time),
    // so that no deletion cascades to more than a batch; their tokens go first, in the next batches.
    db
      .deleteFrom('grants')
      .where(
        'id',
        'in',
        db
          .selectFrom(db.selectFrom('grants').select('id').where('expires_at', '<', now).limit(size).as('e'))
          .select('e.id')
          .where(({ not, exists, selectFrom }) => not(exists(selectFrom('refresh_tokens').select('refresh_tokens.digest').whereRef('refresh_tokens.grant_id', '=', 'e.id')))),
      ),
    db.deleteFrom('authorization_codes').where('digest', 'in', db.selectFrom('authorization_codes').select('digest').where('expires_at', '<', now).limit(size)),
    db.deleteFrom('revoked_tokens').where('jti', 'in', db.selectFrom('revoked_tokens').select('jti').where('expires_at', '<', now).limit(size)),
    db.deleteFrom('sessions').where('digest', 'in', db.selectFrom('sessions').select('digest').where('expires_at', '<', now).limit(size)),
    db
      .deleteFrom('client_assertions')
      .where(sql<boolean>`(client_id, jti) in (${db.selectFrom('client_assertions').select(['client_id', 'jti']).where('expires_at', '<', now).limit(size)})`),
    db.deleteFrom('authorization_requests').where('id', 'in', db.selectFrom('authorization_requests').select('id').where('expires_at', '<', now).limit(size)),
    // A used link stays until it expires, so that following it again says it was used.
    db.deleteFrom('password_resets').where('digest', 'in', db.selectFrom('password_resets').select('digest').where('expires_at', '<', now).limit(size)),
    db.deleteFrom('email_verifications').where('digest', 'in', db.selectFrom('email_verifications').select('digest').where('expires_at', '<', now).limit(size)),
    db.deleteFrom('email_changes').where('digest', 'in', db.selectFrom('email_changes').select('digest').where('expires_at', '<', now).limit(size)),
    db.deleteFrom('signing_keys').where('kid', 'in', db.selectFrom('signing_keys').select('kid').where('state', '=', 'retired').where('expires_at', '<', now).limit(size)),
  ];
  if (auditRetentionSeconds > 0) {
    batches.push(db.deleteFrom('audit_events').where('id', 'in', db.selectFrom('audit_events').select('id').where('at', '<', now - auditRetentionSeconds).limit(size)));
  }
  if (apiKeyRetentionSeconds > 0) {
    // A key ended at its revocation or its expiry, whichever came first: each read through its own
    // index (migration 022) in a branch of its own, under the batch, as sweepRefreshTokens reads.
    const before = now - apiKeyRetentionSeconds;
    const ended = db
      .selectFrom(db.selectFrom('api_keys').select('id').where('revoked_at', '<', before).limit(size).as('r'))
      .select('r.id')
      .unionAll(db.selectFrom(db.selectFrom('api_keys').select('id').where('expires_at', '<', before).limit(size).as('x')).select('x.id'));
    batches.push(db.deleteFrom('api_keys').where('id', 'in', db.selectFrom(ended.as('e')).select('e.id').limit(size)));
  }
  let swept = 0;
  for (const batch of batches) swept += Number((await batch.executeTakeFirst()).numDeletedRows);
  return swept;
}
