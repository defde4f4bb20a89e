// Gatehouse instances for the flows beyond client_credentials. Each gets a database of its own — a
// SQLite file in a temporary data dir, or a new PostgreSQL database that is dropped afterwards — is
// set up through the command line as an operator would (`--json`), and then served alone on the
// server core. Whatever happens, stop() leaves no process, database or directory behind.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SERVER_NODE_OPTIONS } from '../src/cli/runtime.ts';
import { cpuMicros, findFreePort, runToCompletion, startChild, waitUntilReady } from './processes.ts';
import type { Child } from './processes.ts';
import { withoutGatehouseSettings } from './servers.ts';

export type DatabaseKind = 'sqlite' | 'postgres';

const HOST = '127.0.0.1';
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cli = join(repoRoot, 'dist', 'cli', 'main.js');
/** Where new databases are created; the brief's server by default. */
const POSTGRES_ADMIN_URL = process.env.BENCH_POSTGRES_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/postgres';

export interface GatehouseInstance {
  /** Names the instance in logs and failure messages. */
  readonly label: string;
  /** `http://127.0.0.1:PORT`: the address, the issuer and the audience of its tokens. */
  readonly url: string;
  readonly database: DatabaseKind;
  /** The SQLite file (undefined on PostgreSQL). */
  readonly sqlitePath: string | undefined;
  /** The serving process, once serve() has started it. */
  readonly child: Child | undefined;
  /** `gatehouse ARGS… --json` against the instance's database; returns what it printed, parsed. */
  cli<T>(args: readonly string[]): Promise<T>;
  /** Starts `gatehouse serve --workers 1` pinned to `core` and waits until /healthz answers. */
  serve(core: number | undefined): Promise<Child>;
  /** CPU time used so far by the serving process and by the database's server processes (see CpuUsage). */
  cpuUsage(): Promise<CpuUsage>;
  /** Stops the server, then drops the database and removes the data dir. Safe to call again. */
  stop(): Promise<void>;
}

/** Microseconds of CPU used so far, all threads (see cpuMicros); undefined where /proc does not tell. */
export interface CpuUsage {
  server: number | undefined;
  /**
   * On a PostgreSQL of this machine: each backend connected to the instance's database, by pid (the
   * server's own background processes, the WAL writer and the like, are not in it). Undefined on
   * SQLite, which runs inside the server process, and on a PostgreSQL elsewhere.
   */
  backends: Map<number, number> | undefined;
}

const instances = new Set<GatehouseInstance>();

/** Stops every instance still running (on error or interrupt). */
export async function stopAllInstances(): Promise<void> {
  await Promise.all([...instances].map((instance) => instance.stop()));
}

export async function createInstance(label: string, database: DatabaseKind): Promise<GatehouseInstance> {
  if (!existsSync(cli)) throw new Error(`${cli} does not exist: build first (npm run bench does)`);
  const port = await findFreePort(HOST);
  const url = `http://${HOST}:${port}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'));
  let databaseName: string | undefined;

  let child: Child | undefined;
  let stopped: Promise<void> | undefined;
  const cleanUp = async () => {
    await child?.stop();
    const problems: unknown[] = [];
    if (databaseName !== undefined) await dropDatabase(databaseName).catch((error: unknown) => problems.push(error));
    await rm(dataDir, { recursive: true, force: true }).catch((error: unknown) => problems.push(error));
    if (problems.length > 0) throw new Error(`${label}: clean-up failed: ${problems.map(String).join('; ')}`);
  };

  const instance: GatehouseInstance = {
    label,
    url,
    database,
    sqlitePath: database === 'sqlite' ? join(dataDir, 'gatehouse.sqlite') : undefined,
    get child() {
      return child;
    },
    async cli<T>(args: readonly string[]): Promise<T> {
      const stdout = await runToCompletion(process.execPath, [cli, ...args, '--json'], { cwd: repoRoot, env });
      return parseJsonOutput(stdout, `gatehouse ${args.join(' ')}`) as T;
    },
    async serve(core) {
      if (child !== undefined) throw new Error(`${label}: already serving`);
      child = startChild(label, process.execPath, [...SERVER_NODE_OPTIONS, cli, 'serve', '--workers', '1'], { cwd: repoRoot, env, core });
      await waitUntilReady(child, `${url}/healthz`);
      return child;
    },
    async cpuUsage() {
      const server = cpuMicros(child?.process.pid);
      if (databaseName === undefined || !postgresIsLocal()) return { server, backends: undefined };
      const { rows } = await withAdmin((client) =>
        client.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [databaseName]),
      );
      const backends = new Map<number, number>();
      for (const { pid } of rows) {
        const used = cpuMicros(pid);
        if (used !== undefined) backends.set(pid, used);
      }
      return { server, backends };
    },
    stop() {
      instances.delete(instance);
      stopped ??= cleanUp();
      return stopped;
    },
  };
  instances.add(instance);

  let env: NodeJS.ProcessEnv;
  try {
    // The shipped configuration with the per-client token budget lifted (as for the client_credentials
    // comparison: the load comes from a handful of clients); nothing else differs.
    const shipped = JSON.parse(await readFile(join(repoRoot, 'config', 'gatehouse.json'), 'utf8')) as Record<string, unknown>;
    const configPath = join(dataDir, 'bench-config.json');
    await writeFile(configPath, JSON.stringify({ ...shipped, rateLimits: { tokenRequestsPerClient: 0 } }));
    if (database === 'postgres') databaseName = await createDatabase();
    env = {
      ...withoutGatehouseSettings(process.env),
      PORT: String(port),
      HOST,
      GATEHOUSE_ISSUER: url,
      GATEHOUSE_DATA_DIR: dataDir,
      GATEHOUSE_LOG_LEVEL: 'warn',
      GATEHOUSE_CONFIG: configPath,
      // As in production: a secret of the operator's (required with PostgreSQL), no demo data.
      GATEHOUSE_SECRET: randomBytes(32).toString('base64url'),
      GATEHOUSE_DEMO: 'false',
      ...(databaseName !== undefined && { DATABASE_URL: databaseUrl(databaseName) }),
    };
  } catch (error) {
    await instance.stop();
    throw error;
  }
  return instance;
}

/** The one JSON value a `--json` command printed, tolerating anything printed before it. */
function parseJsonOutput(stdout: string, command: string): unknown {
  const text = stdout.trim();
  for (let start = 0; start >= 0 && start < text.length; start = text.indexOf('\n', start + 1)) {
    const candidate = text.slice(start).trim();
    if (!candidate.startsWith('{') && !candidate.startsWith('[')) continue;
    try {
      return JSON.parse(candidate);
    } catch {
      // not where the JSON starts
    }
  }
  throw new Error(`${command} printed no JSON:\n${stdout}`);
}

/** Whether the PostgreSQL server runs on this machine, where its processes' CPU time can be read. */
function postgresIsLocal(): boolean {
  const { hostname } = new URL(POSTGRES_ADMIN_URL);
  return ['', 'localhost', '127.0.0.1', '[::1]'].includes(hostname);
}

function databaseUrl(name: string): string {
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function createDatabase(): Promise<string> {
  const name = `gatehouse_bench_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin((client) => client.query(`CREATE DATABASE ${name}`));
  return name;
}

async function dropDatabase(name: string): Promise<void> {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    const where = new URL(POSTGRES_ADMIN_URL);
    throw new Error(
      `PostgreSQL does not answer at ${where.host} as ${where.username || 'the default user'} (set BENCH_POSTGRES_URL): ${(error as Error).message}`,
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
