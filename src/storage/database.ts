import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration, type MigrationProvider } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { preparedStatementPool } from './prepared-statements.ts';
import * as foundation from './migrations/001-foundation.ts';
import * as browser from './migrations/002-browser.ts';
import * as platform from './migrations/003-platform.ts';
import * as oneSigningKey from './migrations/004-one-signing-key.ts';
import * as clientKeys from './migrations/005-client-keys.ts';
import * as grantExpiry from './migrations/006-grant-expiry.ts';
import * as emailForms from './migrations/007-email-forms.ts';
import * as auditKind from './migrations/008-audit-kind.ts';
import * as listOrder from './migrations/009-list-order.ts';
import * as grantLists from './migrations/010-grant-lists.ts';
import * as consentsClient from './migrations/011-consents-client.ts';
import * as userGrants from './migrations/012-user-grants.ts';
import * as backchannelLogout from './migrations/013-backchannel-logout.ts';
import * as grantSweep from './migrations/014-grant-sweep.ts';
import * as passwordResets from './migrations/015-password-resets.ts';
import * as sessionCodes from './migrations/016-session-codes.ts';
import * as emailVerifications from './migrations/017-email-verifications.ts';
import * as userClientCodes from './migrations/018-user-client-codes.ts';
import * as clientDeletion from './migrations/019-client-deletion.ts';
import * as mailedLinks from './migrations/020-mailed-links.ts';
import * as apiKeyLists from './migrations/021-api-key-lists.ts';
import * as apiKeySweep from './migrations/022-api-key-sweep.ts';
import * as emailChanges from './migrations/023-email-changes.ts';
import * as sessionDevices from './migrations/024-session-devices.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface DatabaseHandle {
  db: Kysely<Database>;
  dialect: Dialect;
  pool?: pg.Pool;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `postgres://…`; unset for SQLite at `sqlitePath`. */
  databaseUrl?: string | undefined;
  sqlitePath?: string;
  /** PostgreSQL pool size. */
  poolSize?: number;
  /** PostgreSQL: a statement unanswered for this long fails, and its connection is dropped (see preparedStatementPool). */
  queryTimeoutMs?: number | undefined;
}

export function openDatabase(options: DatabaseOptions): DatabaseHandle {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: 5000,
      // Times are epoch seconds in bigint columns; they fit a JavaScript number.
      types: { getTypeParser: (oid: number, format?: any) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format)) } as any,
    });
    // An idle client losing its connection (a database restart) must not kill the process.
    pool.on('error', () => {});
    // Nor a client in use: pg emits 'error' on it as well as failing its query, and the pool listens
    // only to idle clients. The query's own error answers the request (503); the pool drops the client.
    pool.on('connect', (client) => {
      client.on('error', () => {});
      // A named statement is planned once per connection instead of on every run: planning was half
      // of PostgreSQL's work for a refresh (and PostgreSQL's own choice, `auto`, keeps planning the
      // statements with an array parameter every time). A plan made while a table is nearly empty (a
      // new deployment) would scan it for as long as the connection lives, however large it grows:
      // Gatehouse reads its tables by key or through an index, so sequential scans are ruled out and
      // a plan uses the index whatever the size of the table then (a statement with no index to use
      // still scans; the test of prepared statements holds every statement of the protocol
      // endpoints to reading by key). That makes the few statements that do scan (the key store's
      // reload every few seconds, a sweep) look costly beyond PostgreSQL's JIT thresholds, and it
      // compiled each of their runs to machine code: 40 to 260 ms of the database's CPU for a
      // statement that takes a millisecond. Gatehouse's statements are all short, so JIT is off.
      // Queued before the pool hands the connection out; a server too old for the settings keeps its defaults.
      client.query('set plan_cache_mode = force_generic_plan; set enable_seqscan = off; set jit = off').catch(() => {});
    });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: preparedStatementPool(pool, { queryTimeoutMs: options.queryTimeoutMs }) }) });
    return { db, dialect: 'postgres', pool, close: () => db.destroy() };
  }
  if (!options.sqlitePath) throw new Error('openDatabase: sqlitePath is required without databaseUrl');
  if (options.sqlitePath !== ':memory:') createOwnerOnly(options.sqlitePath);
  const sqlite = new DatabaseSync(options.sqlitePath);
  sqlite.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  useWriteAheadLog(sqlite);
  sqlite.exec('PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: adaptNodeSqlite(sqlite) }) });
  return { db, dialect: 'sqlite', close: () => db.destroy() };
}

/** How long a statement waits for another process's lock on the SQLite file before failing. */
const SQLITE_BUSY_TIMEOUT_MS = 5000;
const SQLITE_BUSY = 5;

/**
 * Switches the file to WAL (persistent: done once per file). Changing the journal mode fails at
 * once while another connection holds a lock, without waiting the busy timeout: on a new file,
 * another process setting it up at the same moment (a CLI command as the server starts, two
 * operators running `gatehouse migrate`) would make this one fail with "database is locked". So the
 * switch is retried for as long as the busy timeout.
 */
function useWriteAheadLog(sqlite: DatabaseSync): void {
  const deadline = Date.now() + SQLITE_BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      sqlite.exec('PRAGMA journal_mode = WAL');
      return;
    } catch (error) {
      if ((error as { errcode?: number }).errcode !== SQLITE_BUSY || Date.now() >= deadline) throw error;
      // Opening a database is synchronous: wait without returning to the event loop.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/**
 * The SQLite file and its folder, created for their owner only (0600, 0700) whatever the umask:
 * the database holds every account, client and signing key. SQLite would create the file 0644
 * under the usual umask; it gives its `-wal` and `-shm` files the mode of the database file, so
 * those follow. An existing file keeps the mode it has.
 */
function createOwnerOnly(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // An empty file is an empty database to SQLite.
    closeSync(openSync(path, 'wx', 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * Kysely's SQLite dialect expects a better-sqlite3-shaped database; `node:sqlite` differs only in
 * taking parameters spread and in how it tells a reader. Prepared statements are cached by SQL text:
 * Kysely produces the same text for the same query shape, so the hot paths prepare once.
 */
function adaptNodeSqlite(sqlite: DatabaseSync) {
  const cache = new Map<string, { statement: StatementSync; reader: boolean }>();
  const prepare = (sql: string) => {
    let entry = cache.get(sql);
    if (!entry) {
      const statement = sqlite.prepare(sql);
      entry = { statement, reader: statement.columns().length > 0 };
      if (cache.size >= 500) cache.delete(cache.keys().next().value!);
      cache.set(sql, entry);
    }
    return entry;
  };
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      const { statement, reader } = prepare(sql);
      return {
        reader,
        all: (parameters: ReadonlyArray<unknown>) => statement.all(...(parameters as any[])),
        run: (parameters: ReadonlyArray<unknown>) => statement.run(...(parameters as any[])),
        iterate: (parameters: ReadonlyArray<unknown>) => statement.iterate(...(parameters as any[])),
      };
    },
  };
}

const migrations: Record<string, { up: (db: Kysely<any>, dialect: Dialect) => Promise<void> }> = {
  '001-foundation': foundation,
  '002-browser': browser,
  '003-platform': platform,
  '004-one-signing-key': oneSigningKey,
  '005-client-keys': clientKeys,
  '006-grant-expiry': grantExpiry,
  '007-email-forms': emailForms,
  '008-audit-kind': auditKind,
  '009-list-order': listOrder,
  '010-grant-lists': grantLists,
  '011-consents-client': consentsClient,
  '012-user-grants': userGrants,
  '013-backchannel-logout': backchannelLogout,
  '014-grant-sweep': grantSweep,
  '015-password-resets': passwordResets,
  '016-session-codes': sessionCodes,
  '017-email-verifications': emailVerifications,
  '018-user-client-codes': userClientCodes,
  '019-client-deletion': clientDeletion,
  '020-mailed-links': mailedLinks,
  '021-api-key-lists': apiKeyLists,
  '022-api-key-sweep': apiKeySweep,
  '023-email-changes': emailChanges,
  '024-session-devices': sessionDevices,
};

/** The database records migrations this code does not have: a newer release migrated it. */
export class NewerSchemaError extends Error {
  readonly unknownMigrations: string[];
  constructor(unknownMigrations: string[]) {
    super(`the database records migrations this release does not have: ${unknownMigrations.join(', ')}`);
    this.name = 'NewerSchemaError';
    this.unknownMigrations = unknownMigrations;
  }
}

async function recordedMigrations(handle: DatabaseHandle): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from kysely_migration`.execute(handle.db);
  return rows.map((row) => row.name).sort();
}

/**
 * Applies every pending migration; safe to call from several instances at once. Throws
 * NewerSchemaError, changing nothing, on a database a newer release migrated.
 */
export async function migrate(handle: DatabaseHandle): Promise<string[]> {
  const provider: MigrationProvider = {
    async getMigrations() {
      const result: Record<string, Migration> = {};
      for (const [name, migration] of Object.entries(migrations)) {
        result[name] = { up: (db) => migration.up(db, handle.dialect) };
      }
      return result;
    },
  };
  const migrator = new Migrator({ db: handle.db, provider });
  // On PostgreSQL, Kysely runs the migrations in one transaction under an advisory lock. On SQLite it
  // runs them bare, statement by statement: a process stopped partway (SIGTERM during the first start,
  // a crash) would leave tables no migration is recorded for, and every later start would fail on
  // them. SQLite's DDL is transactional, so they run in one transaction of ours, taken IMMEDIATE: a
  // second process (a CLI command as the server starts) waits for it (busy_timeout) rather than
  // interleaving its own run of the same migrations.
  if (handle.dialect === 'sqlite') await sql`begin immediate`.execute(handle.db);
  const { error, results } = await migrator.migrateToLatest();
  if (handle.dialect === 'sqlite') await sql.raw(error ? 'rollback' : 'commit').execute(handle.db);
  if (error) {
    // Kysely refuses a database that records a migration it was not given, before applying anything
    // ("corrupted migrations"). It is no corruption: a newer release migrated it (a rollback), and
    // that is what the operator must be told.
    const unknown = await recordedMigrations(handle).then(
      (names) => names.filter((name) => !Object.hasOwn(migrations, name)),
      () => [],
    );
    if (unknown.length > 0) throw new NewerSchemaError(unknown);
    throw error;
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
