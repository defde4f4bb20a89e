// Resident memory of one Gatehouse process (VmRSS from /proc): at idle on an empty database, once
// 100,000 clients and 100,000 users exist, and after client_credentials for 10,000 distinct clients
// (the client cache full, a reusable token cached for each). The rows are written straight into
// the SQLite file by this process, through the storage layer's own database and migrations, in
// large transactions; every user shares one Argon2id hash, since hashing 100,000 passwords would
// measure Argon2, not Gatehouse.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Insertable } from 'kysely';
import { hashPassword } from '../src/core/passwords.ts';
import { createOpaqueToken, digestOf, hintOf } from '../src/core/tokens/opaque.ts';
import { migrate, openDatabase } from '../src/storage/database.ts';
import type { ClientSecretTable, ClientTable, UserTable } from '../src/storage/schema.ts';
import { basic, failure, postForm, SCOPE } from './flows.ts';
import { createInstance } from './gatehouse.ts';
import type { GatehouseInstance } from './gatehouse.ts';
import { runLoad } from './load.ts';
import type { LoadResult } from './load.ts';
import type { BenchOptions } from './options.ts';

const CLIENTS = 100_000;
const USERS = 100_000;
/** Clients that fetch tokens in the load: as many as the client cache holds. */
const LOADED_CLIENTS = 10_000;
/** Each loaded client asks twice: once from the database, once from the caches. */
const REQUESTS_PER_LOADED_CLIENT = 2;
const TARGET_MB = 250;
/** Rows per INSERT statement and per transaction. */
const ROWS_PER_STATEMENT = 500;
const ROWS_PER_TRANSACTION = 10_000;
const SETTLE_MS = 1_000;

export interface MemoryResult {
  clients: number;
  users: number;
  loadedClients: number;
  /** VmRSS in MB (2^20 bytes) at each point, and the peak (VmHWM) at the end. */
  idleMb: number;
  withRowsMb: number;
  afterLoadMb: number;
  peakMb: number;
  targetMb: number;
  /** Whether every VmRSS reading stayed under the target. */
  met: boolean;
  insertSeconds: number;
  load: LoadResult;
}

export async function measureMemory(options: BenchOptions, core: number | undefined, log: (message: string) => void): Promise<MemoryResult> {
  log('setting up');
  const instance = await createInstance('memory', 'sqlite');
  try {
    const child = await instance.serve(core);
    const pid = child.process.pid;
    if (pid === undefined) throw failure(instance, 'the server process has no pid');
    await expectGatehouseProcess(instance, pid);

    await sleep(2 * SETTLE_MS);
    const idle = await residentMb(pid);
    log(`idle: ${idle.rss.toFixed(1)} MB; inserting ${CLIENTS.toLocaleString('en')} clients and ${USERS.toLocaleString('en')} users`);

    const started = performance.now();
    const loaded = await insertRows(instance);
    const insertSeconds = (performance.now() - started) / 1000;
    await sleep(SETTLE_MS);
    const withRows = await residentMb(pid);
    log(`${withRows.rss.toFixed(1)} MB after ${insertSeconds.toFixed(1)} s of inserts; client_credentials for ${LOADED_CLIENTS.toLocaleString('en')} clients`);

    // Every loaded client works before the load (the first through a real request).
    await postForm(instance, `${instance.url}/token`, loaded[0]!, { grant_type: 'client_credentials', scope: SCOPE });
    let next = 0;
    const load = await runLoad(
      {
        url: `${instance.url}/token`,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: SCOPE }).toString(),
        perConnection: () => ({
          next: () => ({ headers: { authorization: loaded[next++ % loaded.length]! } }),
          onResponse() {},
        }),
        check: (status, body) => status === 200 && body.includes('"access_token"'),
      },
      { durationSeconds: options.durationSeconds, connections: options.connections, amount: LOADED_CLIENTS * REQUESTS_PER_LOADED_CLIENT },
    );
    const ok = load.statusCodes[200] ?? 0;
    if (ok !== load.totalRequests || load.totalRequests < LOADED_CLIENTS || load.errors > 0 || load.mismatches) {
      const codes = Object.entries(load.statusCodes).map(([code, count]) => `${code}: ${count}`).join(', ');
      throw failure(instance, `the load over ${LOADED_CLIENTS} clients: ${load.totalRequests} requests, ${load.errors} errors, ${load.mismatches ?? 0} mismatches; status codes ${codes || 'none'}`);
    }
    await sleep(SETTLE_MS);
    const afterLoad = await residentMb(pid);
    log(`${afterLoad.rss.toFixed(1)} MB after ${load.totalRequests.toLocaleString('en')} token requests in ${load.durationSeconds} s`);

    const readings = [idle.rss, withRows.rss, afterLoad.rss];
    return {
      clients: CLIENTS,
      users: USERS,
      loadedClients: LOADED_CLIENTS,
      idleMb: idle.rss,
      withRowsMb: withRows.rss,
      afterLoadMb: afterLoad.rss,
      peakMb: afterLoad.peak,
      targetMb: TARGET_MB,
      met: Math.max(...readings) < TARGET_MB,
      insertSeconds,
      load,
    };
  } finally {
    await instance.stop();
  }
}

/**
 * Writes the clients (each with one secret) and the users into the instance's SQLite file while it
 * serves; returns the HTTP Basic headers of the first LOADED_CLIENTS clients.
 */
async function insertRows(instance: GatehouseInstance): Promise<string[]> {
  if (instance.sqlitePath === undefined) throw new Error('memory: the rows go into a SQLite database');
  const passwordHash = await hashPassword(randomBytes(16).toString('base64url'));
  const now = Math.floor(Date.now() / 1000);
  const authorizations: string[] = [];

  const handle = openDatabase({ sqlitePath: instance.sqlitePath });
  try {
    await migrate(handle);
    const { db } = handle;
    for (let first = 0; first < CLIENTS; first += ROWS_PER_TRANSACTION) {
      const clients: Insertable<ClientTable>[] = [];
      const secrets: Insertable<ClientSecretTable>[] = [];
      for (let i = first; i < Math.min(first + ROWS_PER_TRANSACTION, CLIENTS); i++) {
        const id = `app_${randomBytes(12).toString('hex')}`;
        const secret = createOpaqueToken('cs');
        clients.push({
          id,
          name: `Bench application ${i}`,
          description: `Application ${i} of the memory benchmark`,
          owner_user_id: null,
          type: 'confidential',
          base_url: null,
          redirect_uris: JSON.stringify([`https://app-${i}.bench.example/callback`]),
          post_logout_redirect_uris: '[]',
          grant_types: JSON.stringify(['client_credentials', 'authorization_code', 'refresh_token']),
          scopes: JSON.stringify(['openid', 'profile', SCOPE]),
          default_scopes: JSON.stringify([SCOPE]),
          is_admin: 0,
          first_party: 0,
          allow_impersonation: 0,
          is_resource_server: 0,
          created_at: now,
          updated_at: now,
        });
        secrets.push({ id: randomUUID(), client_id: id, digest: digestOf(secret), hint: hintOf(secret), created_at: now, expires_at: null });
        if (i < LOADED_CLIENTS) authorizations.push(basic({ client_id: id, client_secret: secret }));
      }
      await db.transaction().execute(async (trx) => {
        for (const rows of chunks(clients)) await trx.insertInto('clients').values(rows).execute();
        for (const rows of chunks(secrets)) await trx.insertInto('client_secrets').values(rows).execute();
      });
    }
    for (let first = 0; first < USERS; first += ROWS_PER_TRANSACTION) {
      const users: Insertable<UserTable>[] = [];
      for (let i = first; i < Math.min(first + ROWS_PER_TRANSACTION, USERS); i++) {
        users.push({
          id: randomUUID(),
          email: `user-${i}@bench.example`,
          name: `Bench User ${i}`,
          password_hash: passwordHash,
          email_verified: 1,
          disabled_at: null,
          created_at: now,
          updated_at: now,
        });
      }
      await db.transaction().execute(async (trx) => {
        for (const rows of chunks(users)) await trx.insertInto('users').values(rows).execute();
      });
    }
    const count = async (table: 'clients' | 'users') =>
      Number((await db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const [clients, users] = [await count('clients'), await count('users')];
    if (clients < CLIENTS || users < USERS) throw new Error(`memory: the database holds ${clients} clients and ${users} users after the inserts`);
  } finally {
    await handle.close();
  }
  return authorizations;
}

function* chunks<T>(rows: readonly T[]): Generator<T[]> {
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) yield rows.slice(i, i + ROWS_PER_STATEMENT);
}

/** VmRSS and VmHWM of a process, in MB. */
async function residentMb(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kilobytes = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(match[1]) / 1024;
  };
  return { rss: kilobytes('VmRSS'), peak: kilobytes('VmHWM') };
}

/** The pid must be Gatehouse itself, not the taskset that started it (taskset execs, so it is). */
async function expectGatehouseProcess(instance: GatehouseInstance, pid: number): Promise<void> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
  if (!argv.includes('serve') || argv[0]?.endsWith('taskset')) {
    throw failure(instance, `process ${pid} is not the Gatehouse server (${argv.join(' ')})`);
  }
}
