import { sql, type Kysely, type Selectable } from 'kysely';
import type { Dialect } from '../database.ts';
import { enabledUser, typedLiterals } from './literals.ts';
import { COLUMNS, type Database, type GrantTable, type RefreshTokenTable } from '../schema.ts';
import type { Grant, GrantRepository, LiveClientGrants } from '../repositories/grants.ts';
import type { FoundRefreshToken, RefreshToken, RefreshTokenRepository, RefreshTokenSuccessor, RotationResult } from '../repositories/refresh-tokens.ts';
import { batching } from '../batch.ts';
import { isForeignKeyViolation } from './constraints.ts';
import { fromJsonList, toJson } from './json.ts';
import { toUser } from './users.ts';

export const toGrant = (row: Selectable<GrantTable>): Grant => ({
  id: row.id,
  clientId: row.client_id,
  userId: row.user_id,
  kind: row.kind,
  scopes: fromJsonList(row.scopes),
  authTime: row.auth_time,
  ...(row.sid !== null && { sid: row.sid }),
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  revokedAt: row.revoked_at,
});

const toRefreshToken = (row: Selectable<RefreshTokenTable>): RefreshToken => ({
  digest: row.digest,
  grantId: row.grant_id,
  clientId: row.client_id,
  scopes: fromJsonList(row.scopes),
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

const refreshTokenRow = (token: RefreshToken): RefreshTokenTable => ({
  digest: token.digest,
  grant_id: token.grantId,
  client_id: token.clientId,
  scopes: toJson(token.scopes),
  created_at: token.createdAt,
  expires_at: token.expiresAt,
  consumed_at: token.consumedAt,
});

export async function insertGrant(db: Kysely<Database>, grant: Grant): Promise<void> {
  await db
    .insertInto('grants')
    .values({
      id: grant.id,
      client_id: grant.clientId,
      user_id: grant.userId,
      kind: grant.kind,
      scopes: toJson(grant.scopes),
      auth_time: grant.authTime,
      sid: grant.sid ?? null,
      created_at: grant.createdAt,
      expires_at: grant.expiresAt,
      revoked_at: grant.revokedAt,
    })
    .execute();
}

/**
 * Stores a grant of a user only while that user is enabled, in one statement (see enabledUser).
 * True when stored.
 */
async function insertGrantWhileUserEnabled(db: Kysely<Database>, dialect: Dialect, grant: Grant & { userId: string }): Promise<boolean> {
  const { time, text } = typedLiterals(dialect);
  const user = enabledUser(db, dialect, grant.userId).select([
    text(grant.id).as('id'),
    text(grant.clientId).as('client_id'),
    'users.id as user_id',
    text(grant.kind).as('kind'),
    text(toJson(grant.scopes)).as('scopes'),
    time(grant.authTime).as('auth_time'),
    text(grant.sid ?? null).as('sid'),
    time(grant.createdAt).as('created_at'),
    time(grant.expiresAt).as('expires_at'),
    time(grant.revokedAt).as('revoked_at'),
  ]);
  const stored = await db
    .insertInto('grants')
    .columns(['id', 'client_id', 'user_id', 'kind', 'scopes', 'auth_time', 'sid', 'created_at', 'expires_at', 'revoked_at'])
    .expression(user)
    .returning('id')
    .executeTakeFirst();
  return stored !== undefined;
}

export function kyselyGrants(db: Kysely<Database>, dialect: Dialect): GrantRepository {
  return {
    async create(grant) {
      try {
        if (grant.userId !== null) return await insertGrantWhileUserEnabled(db, dialect, { ...grant, userId: grant.userId });
        await insertGrant(db, grant);
        return true;
      } catch (error) {
        // Its user or client was deleted since the caller read them (the key cascades from both).
        if (isForeignKeyViolation(error)) return false;
        throw error;
      }
    },
    async find(id) {
      const row = await db.selectFrom('grants').select(COLUMNS.grants).where('id', '=', id).executeTakeFirst();
      return row && toGrant(row);
    },
    async revoke(id, now) {
      const result = await db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },
    async revokeForClient(clientId, now) {
      const rows = await db
        .updateTable('grants')
        .set({ revoked_at: now })
        .where('client_id', '=', clientId)
        .where('revoked_at', 'is', null)
        .returning(['id', 'user_id'])
        .execute();
      return rows.map((row) => ({ id: row.id, userId: row.user_id }));
    },
    async list(filter) {
      let query = db.selectFrom('grants').select(COLUMNS.grants);
      if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
      if (filter.clientId !== undefined) query = query.where('client_id', '=', filter.clientId);
      if (filter.after !== undefined) {
        // Older, or as old with a greater id: the order of the indexes (created_at desc, id), which a
        // row value comparison cannot say. The first condition bounds the read of the index.
        const { createdAt, id } = filter.after;
        query = query.where('created_at', '<=', createdAt).where((eb) => eb.or([eb('created_at', '<', createdAt), eb('id', '>', id)]));
      }
      const limit = Math.max(1, Math.min(filter.limit ?? 100, 1001));
      return (await query.orderBy('created_at', 'desc').orderBy('id').limit(limit).execute()).map(toGrant);
    },
    async liveClientsOf(userId, now) {
      // Grouped by scope set too: a person's grants to a client are many (one per password sign-in)
      // but of few scope sets, so only those few rows are read back and decoded.
      const rows = await db
        .selectFrom('grants')
        .select(['client_id', 'scopes', (eb) => eb.fn.min('created_at').as('since')])
        .where('user_id', '=', userId)
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .where('kind', '<>', 'impersonation')
        .groupBy(['client_id', 'scopes'])
        .execute();
      const byClient = new Map<string, LiveClientGrants>();
      for (const row of rows) {
        const since = Number(row.since);
        const known = byClient.get(row.client_id);
        const scopes = fromJsonList(row.scopes);
        if (!known) byClient.set(row.client_id, { clientId: row.client_id, scopes, since });
        else byClient.set(row.client_id, { clientId: row.client_id, scopes: [...new Set([...known.scopes, ...scopes])], since: Math.min(known.since, since) });
      }
      return [...byClient.values()].sort((a, b) => b.since - a.since);
    },
  };
}

/** The refresh token's own columns in the lookup below, named rather than `t.*` (see COLUMNS). */
const TOKEN_COLUMNS = sql.raw(COLUMNS.refresh_tokens.map((column) => `t.${column}`).join(', '));

/** Concurrent refreshes on PostgreSQL share their round trips (see batching): at most this many per statement. */
const REFRESH_BATCH = { concurrency: 2, maxSize: 64 };

export function kyselyRefreshTokens(db: Kysely<Database>, dialect: Dialect): RefreshTokenRepository {
  /** The tokens among `digests` that exist, each with its grant and user, by digest. */
  const findMany = async (digests: readonly string[]): Promise<Map<string, FoundRefreshToken>> => {
    // Plain SQL: the query builder spent longer assembling 24 aliased columns than SQLite spends running this.
    // On PostgreSQL one array parameter, so that every batch size is the same statement.
    const presented = dialect === 'postgres' ? sql`t.digest = any(${[...digests]}::text[])` : sql`t.digest in (${sql.join(digests)})`;
    const { rows } = await sql<FoundRow>`
      select ${TOKEN_COLUMNS}, g.id as g_id, g.client_id as g_client_id, g.user_id as g_user_id, g.kind as g_kind, g.scopes as g_scopes,
        g.auth_time as g_auth_time, g.sid as g_sid, g.created_at as g_created_at, g.expires_at as g_expires_at, g.revoked_at as g_revoked_at,
        u.id as u_id, u.email as u_email, u.name as u_name, u.password_hash as u_password_hash, u.email_verified as u_email_verified,
        u.disabled_at as u_disabled_at, u.created_at as u_created_at, u.updated_at as u_updated_at
      from refresh_tokens t join grants g on g.id = t.grant_id left join users u on u.id = g.user_id
      where ${presented}`.execute(db);
    return new Map(rows.map((row) => [row.digest, foundOf(row)]));
  };

  /** Why a token was not rotated: unknown, consumed before, or its grant revoked. */
  const refused = async (digest: string): Promise<RotationResult> => {
    const found = (await findMany([digest])).get(digest);
    if (!found) return { outcome: 'not_found' };
    const { token: previous, grant } = found;
    if (previous.consumedAt !== null) return { outcome: 'reused', previous, grant };
    if (grant.revokedAt !== null) return { outcome: 'revoked', previous, grant };
    // Unconsumed with a live grant, yet not rotated: only a grant revoked and then restored between
    // the two reads, which never happens. Refused all the same.
    return { outcome: 'not_found' };
  };

  if (dialect === 'postgres') {
    const find = batching(async (digests: string[]) => {
      const found = await findMany([...new Set(digests)]);
      return digests.map((digest) => found.get(digest));
    }, REFRESH_BATCH);
    const rotate = batching((rotations: Rotation[]) => rotateOnPostgres(db, rotations, refused), REFRESH_BATCH);
    return {
      insert: (token) => insertRefreshToken(db, token),
      find,
      rotate: (digest, successor, now) => rotate({ digest, successor, now }),
    };
  }

  return {
    insert: (token) => insertRefreshToken(db, token),
    find: async (digest) => (await findMany([digest])).get(digest),
    async rotate(digest, successor, now) {
      const rotated = await db.transaction().execute(async (trx) => {
        const consumed = await trx
          .updateTable('refresh_tokens')
          .set({ consumed_at: now })
          .where('digest', '=', digest)
          .where('consumed_at', 'is', null)
          .where(({ exists, selectFrom }) =>
            exists(selectFrom('grants').select('grants.id').whereRef('grants.id', '=', 'refresh_tokens.grant_id').where('grants.revoked_at', 'is', null)),
          )
          .returning(COLUMNS.refresh_tokens)
          .executeTakeFirst();
        if (!consumed) return undefined;
        const previous = toRefreshToken(consumed);
        await trx
          .insertInto('refresh_tokens')
          .values(refreshTokenRow({ ...previous, digest: successor.digest, createdAt: now, expiresAt: successor.expiresAt, consumedAt: null }))
          .execute();
        return { outcome: 'rotated' as const, previous };
      });
      return rotated ?? refused(digest);
    },
  };
}

async function insertRefreshToken(db: Kysely<Database>, token: RefreshToken): Promise<void> {
  await db.insertInto('refresh_tokens').values(refreshTokenRow(token)).execute();
}

interface Rotation {
  digest: string;
  successor: RefreshTokenSuccessor;
  now: number;
}

/**
 * Rotations on PostgreSQL, any number in one statement (one round trip, one implicit transaction):
 * each presented token is consumed if it is live and its grant too, and its successor stored. A
 * token presented twice in one batch is consumed by the first; the second, like every token not
 * consumed, is then answered by `refused` (reused, revoked or unknown). Should two batches from two
 * instances deadlock on shared rows, each rotation is retried in a statement of its own.
 */
async function rotateOnPostgres(db: Kysely<Database>, rotations: Rotation[], refused: (digest: string) => Promise<RotationResult>): Promise<RotationResult[]> {
  const first = new Map<string, Rotation>();
  for (const rotation of rotations) if (!first.has(rotation.digest)) first.set(rotation.digest, rotation);
  const batch = [...first.values()];
  let rows: Selectable<RefreshTokenTable>[];
  try {
    ({ rows } = await sql<Selectable<RefreshTokenTable>>`
      with presented as (
        select * from unnest(${batch.map((r) => r.digest)}::text[], ${batch.map((r) => r.successor.digest)}::text[],
          ${batch.map((r) => r.successor.expiresAt)}::bigint[], ${batch.map((r) => r.now)}::bigint[]) as p(digest, successor, successor_expires_at, at)
      ), consumed as (
        update refresh_tokens t set consumed_at = p.at
        from presented p
        where t.digest = p.digest and t.consumed_at is null
          and exists (select 1 from grants g where g.id = t.grant_id and g.revoked_at is null)
        returning t.*, p.successor, p.successor_expires_at
      ), successor as (
        insert into refresh_tokens (digest, grant_id, client_id, scopes, created_at, expires_at, consumed_at)
        select successor, grant_id, client_id, scopes, consumed_at, successor_expires_at, null from consumed
      )
      select digest, grant_id, client_id, scopes, created_at, expires_at, consumed_at from consumed`.execute(db));
  } catch (error) {
    if (batch.length === 1 || !isDeadlock(error)) throw error;
    return Promise.all(rotations.map((rotation) => rotateOnPostgres(db, [rotation], refused).then(([result]) => result!)));
  }
  const consumed = new Map(rows.map((row) => [row.digest, toRefreshToken(row)]));
  return Promise.all(
    rotations.map(async (rotation): Promise<RotationResult> => {
      const previous = first.get(rotation.digest) === rotation ? consumed.get(rotation.digest) : undefined;
      return previous ? { outcome: 'rotated', previous } : refused(rotation.digest);
    }),
  );
}

const isDeadlock = (error: unknown): boolean => (error as { code?: unknown } | null)?.code === '40P01';

const foundOf = (row: FoundRow): FoundRefreshToken => ({
  token: toRefreshToken(row),
  grant: grantOf(row),
  user:
    row.u_id === null
      ? undefined
      : toUser({
          id: row.u_id,
          email: row.u_email!,
          name: row.u_name!,
          password_hash: row.u_password_hash!,
          email_verified: row.u_email_verified!,
          disabled_at: row.u_disabled_at,
          created_at: row.u_created_at!,
          updated_at: row.u_updated_at!,
        }),
});

/** A token with its grant's and its user's columns, prefixed `g_` and `u_` (the user's null without one). */
type FoundRow = Selectable<RefreshTokenTable> &
  PrefixedGrant & {
    u_id: string | null;
    u_email: string | null;
    u_name: string | null;
    u_password_hash: string | null;
    u_email_verified: number | null;
    u_disabled_at: number | null;
    u_created_at: number | null;
    u_updated_at: number | null;
  };

/** A grant's columns, prefixed `g_` where they are read beside a token's. */
interface PrefixedGrant {
  g_id: string;
  g_client_id: string;
  g_user_id: string | null;
  g_kind: string;
  g_scopes: string;
  g_auth_time: number | null;
  g_sid: string | null;
  g_created_at: number;
  g_expires_at: number | null;
  g_revoked_at: number | null;
}

const grantOf = (row: PrefixedGrant): Grant =>
  toGrant({
    id: row.g_id,
    client_id: row.g_client_id,
    user_id: row.g_user_id,
    kind: row.g_kind,
    scopes: row.g_scopes,
    auth_time: row.g_auth_time,
    sid: row.g_sid,
    created_at: row.g_created_at,
    expires_at: row.g_expires_at,
    revoked_at: row.g_revoked_at,
  });
