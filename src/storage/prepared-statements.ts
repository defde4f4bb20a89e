import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';

/** Distinct statements that get a name; the rest (one-off DDL, long `in (…)` lists) stay unnamed. */
const MAX_NAMED_STATEMENTS = 200;
/** A statement is named once it has run this often: migrations and one-off queries never are. */
const RUNS_BEFORE_NAMING = 2;
/** How many distinct statements are counted at most, so that counting itself stays bounded. */
const MAX_COUNTED_STATEMENTS = 2_000;

/**
 * The pool Kysely sees: the same connections, with every statement that repeats sent as a named
 * prepared statement. Kysely produces the same SQL text for the same query shape, so the hot paths
 * (the token endpoint's lookups and rotations) are parsed and planned by PostgreSQL once per
 * connection instead of on every request — on a small machine that was most of the database's CPU.
 *
 * A prepared statement whose result changes shape under it — a `select *` after a newer instance's
 * migration added a column — fails with "cached plan must not change result type": it is then run
 * again unnamed, and the connection is closed on release, so the pool opens a fresh one without
 * stale statements. Inside a transaction the retry cannot help (the transaction is aborted), which
 * is why the repositories name their columns (COLUMNS in schema.ts): a column added by a newer
 * release changes the shape of none of their statements.
 */
export function preparedStatementPool(pool: pg.Pool, options: { queryTimeoutMs?: number | undefined } = {}): PostgresPool {
  const { queryTimeoutMs } = options;
  const runs = new Map<string, number>();
  const names = new Map<string, string>();

  const nameFor = (text: string): string | undefined => {
    const name = names.get(text);
    if (name !== undefined || names.size >= MAX_NAMED_STATEMENTS) return name;
    const count = (runs.get(text) ?? 0) + 1;
    if (count < RUNS_BEFORE_NAMING) {
      if (runs.size < MAX_COUNTED_STATEMENTS) runs.set(text, count);
      return undefined;
    }
    runs.delete(text);
    const named = `gatehouse_${names.size}`;
    names.set(text, named);
    return named;
  };

  const wrappers = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    let stale = false;
    // A statement that timed out may still be running, or its answer may never come: the connection
    // is no use any more. Whatever else the caller sends on it fails at once (a transaction's
    // rollback, say), and it is closed on release.
    let timedOut: unknown;
    const send = (config: pg.QueryConfig) => client.query(queryTimeoutMs === undefined ? config : { ...config, query_timeout: queryTimeoutMs } as pg.QueryConfig);
    const attempt = async (text: string, values: unknown[]) => {
      const name = stale ? undefined : nameFor(text);
      if (name === undefined) return send({ text, values });
      try {
        return await send({ name, text, values });
      } catch (error) {
        if (!isStalePlan(error)) throw error;
        stale = true;
        return send({ text, values });
      }
    };
    const run = async (text: string, values: unknown[]) => {
      if (timedOut !== undefined) throw timedOut;
      try {
        return await attempt(text, values);
      } catch (error) {
        if (isQueryTimeout(error)) timedOut = error;
        throw error;
      }
    };
    // Kysely's streaming passes a cursor instead of SQL text: that goes through untouched.
    const query = (textOrCursor: unknown, values?: readonly unknown[]) =>
      typeof textOrCursor === 'string' ? run(textOrCursor, [...(values ?? [])]) : client.query(textOrCursor as pg.Submittable);
    return {
      query: query as unknown as PostgresPoolClient['query'],
      release: () => client.release(stale || timedOut !== undefined),
    };
  };

  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

/** PostgreSQL's 0A000 "cached plan must not change result type", after a table changed shape. */
function isStalePlan(error: unknown): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan');
}

/** pg's own error for a statement unanswered within `query_timeout`. */
export function isQueryTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === QUERY_TIMEOUT_MESSAGE;
}
const QUERY_TIMEOUT_MESSAGE = 'Query read timeout';
