import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { createClient } from '../../src/core/applications.ts';
import type { ClientInput } from '../../src/core/client-validation.ts';
import { createUser } from '../../src/core/users.ts';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { freePort, spawnGatehouse, startCli as startCliProcess, waitFor, type Env, type GatehouseProcess } from '../cli/support.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { basic, post } from '../support/server.ts';

/**
 * Helpers for the production tests: real `gatehouse serve` processes, a real nginx in front of
 * them, a private PostgreSQL cluster that may be stopped at will, and the client side of the flows.
 * Everything listens on 127.0.0.1 only, and everything started here is stopped by its owner.
 */

export { basic, freePort, post, waitFor };

export const REDIRECT_URI = 'https://rp.example.com/callback';
export const PASSWORD = 'correct horse battery staple';

/** No request of these tests may take longer. */
export const REQUEST_TIMEOUT_MS = 20_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export { sleep };

/** Children get the parent's environment without any Gatehouse setting, nor REDIS_URL. */
const DROP_ENV = ['REDIS_URL'];

/** The last `lines` lines of a process's output, each cut to 400 characters, for failure messages. */
export const tail = (text: string, lines = 30): string =>
  text
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line))
    .join('\n');

/**
 * The warnings and errors in a process's JSON log, counted by message, error code and error
 * message: for failure messages that say what went wrong without pages of stack traces.
 */
export function logSummary(stdout: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { level: number; msg?: string; err?: { code?: string; message?: string } };
      if (entry.level < 40) continue;
      const key = `${entry.level} ${entry.msg ?? ''}${entry.err ? ` [${entry.err.code ?? '-'}] ${entry.err.message ?? ''}` : ''}`;
      counts[key] = (counts[key] ?? 0) + 1;
    } catch {
      // not a log line
    }
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// gatehouse serve
// ---------------------------------------------------------------------------------------------

export interface Instance extends GatehouseProcess {
  name: string;
  /** http://127.0.0.1:PORT, the instance itself (not the load balancer). */
  url: string;
  port: number;
  pid: number;
  /** Both outputs, trimmed to their ends: for assertion messages. */
  describe(): string;
}

/** Starts `gatehouse serve ARGS…` on a free (or given) port; resolves once it answers /healthz and printed its banner. */
export async function startInstance(name: string, env: Env, options: { args?: string[]; port?: number; timeoutMs?: number } = {}): Promise<Instance> {
  const port = options.port ?? (await freePort());
  const spawned = spawnGatehouse(['serve', ...(options.args ?? [])], { ...env, PORT: String(port), HOST: '127.0.0.1' }, { dropEnv: DROP_ENV });
  const { child, stdout, stderr } = spawned;
  const url = `http://127.0.0.1:${port}`;
  const instance: Instance = {
    ...spawned,
    name,
    url,
    port,
    pid: child.pid!,
    describe: () =>
      `${name} (pid ${child.pid}, port ${port})\n--- warnings and errors logged ---\n${JSON.stringify(logSummary(stdout()), null, 1)}\n--- stdout ---\n${tail(stdout(), 12)}\n--- stderr ---\n${tail(stderr())}`,
  };
  try {
    const outcome = await waitFor(
      `${name} to answer /healthz`,
      async () => {
        if (instance.exitedAlready()) return 'exited';
        const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
        await response.arrayBuffer();
        return response.status === 200 && stdout().includes('Gatehouse is listening') ? 'ready' : undefined;
      },
      options.timeoutMs ?? 60_000,
      100,
    );
    if (outcome === 'exited') throw new Error(`it exited with ${JSON.stringify(await instance.exited)}`);
  } catch (error) {
    await instance.stop(2000);
    throw new Error(`gatehouse serve (${name}) did not start: ${(error as Error).message}\n${instance.describe()}`);
  }
  return instance;
}

/** `gatehouse ARGS…` in a child process of its own, which the caller may kill; bounded by `timeoutMs`. */
export const startCli = (args: string[], env: Env, timeoutMs = 60_000) => startCliProcess(args, env, { timeoutMs, dropEnv: DROP_ENV });

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

export interface Nginx {
  url: string;
  port: number;
  dir: string;
  /** The access log: one line per request, `METHOD URI STATUS UPSTREAM_ADDR UPSTREAM_STATUS`. */
  accessLog(): string;
  errorLog(): string;
  stop(): Promise<void>;
}

/** The nginx binary, or a failure that says how to get it (never a skip). */
export function nginxBinary(): string {
  for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) if (existsSync(candidate)) return candidate;
  assert.fail('nginx is required for the many-instance tests: apt-get install -y nginx (.ci/run installs it)');
}

/**
 * A real nginx, round robin over `upstreams` (ports on 127.0.0.1), on a free loopback port, with
 * a configuration, pid file, logs and temp folders of its own in a new temp dir: the system's nginx
 * service is never touched. Each answer carries `X-Upstream: <the instance that served it>`, so a
 * test can see where every request landed.
 */
export async function startNginx(upstreams: number[]): Promise<Nginx> {
  const binary = nginxBinary();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-nginx-'));
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  const config = `# Generated by test/production/support.ts
daemon off;
master_process on;
worker_processes 2;
${isRoot ? 'user root root;\n' : ''}pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 2048; }
http {
  log_format upstreams '$request_method $uri $status $upstream_addr $upstream_status';
  access_log ${dir}/access.log upstreams;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream gatehouse {
    # Shared by both worker processes, so the rotation is one rotation.
    zone gatehouse 64k;
${upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=5s;`).join('\n')}
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://gatehouse;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_cache off;
      add_header X-Upstream $upstream_addr always;
    }
  }
}
`;
  const configPath = join(dir, 'nginx.conf');
  writeFileSync(configPath, config);
  // `-e`: even the errors met before the configuration is read go to our folder, not /var/log/nginx.
  const child = spawn(binary, ['-e', join(dir, 'error.log'), '-c', configPath, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  let hasExited = false;
  const exited = new Promise<void>((resolve) => child.on('exit', () => ((hasExited = true), resolve())));
  const read = (name: string) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : '');
  const nginx: Nginx = {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    accessLog: () => read('access.log'),
    errorLog: () => read('error.log'),
    async stop() {
      if (!hasExited) {
        // SIGQUIT: graceful; the whole process group (master and workers) if it lingers.
        child.kill('SIGQUIT');
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // gone already
          }
        }, 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(
      'nginx to listen',
      async () => {
        if (hasExited) throw new Error(`nginx exited: ${output}\n${read('error.log')}`);
        return (await canConnect(port)) ? true : undefined;
      },
      10_000,
    );
  } catch (error) {
    await nginx.stop();
    throw new Error(`nginx did not start (${(error as Error).message})\nconfig:\n${config}`);
  }
  return nginx;
}

/** Does anything accept a TCP connection on 127.0.0.1:port? */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The instance (`127.0.0.1:PORT`) nginx says served a response; the last one when it tried several. */
export const upstreamOf = (headers: Headers): string => (headers.get('x-upstream') ?? '').split(',').pop()!.trim();

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL cluster
// ---------------------------------------------------------------------------------------------

export interface PrivatePostgres {
  port: number;
  /** DATABASE_URL of the `gatehouse` database in it. */
  databaseUrl: string;
  dir: string;
  log(): string;
  start(): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** SIGSTOP to the server and every process it started: connections stay open and nothing answers. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** Stops it if it runs and deletes its folder. */
  destroy(): Promise<void>;
}

function run(file: string, args: string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** The bin folder of the newest PostgreSQL server installed, or a failure that says what is missing. */
export function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))) : [];
  if (versions.length === 0) assert.fail(`a private PostgreSQL cluster needs initdb and pg_ctl under ${base}/<version>/bin: apt-get install -y postgresql`);
  versions.sort((a, b) => Number(b) - Number(a));
  return join(base, versions[0]!, 'bin');
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) assert.fail('a private PostgreSQL cluster runs as the `postgres` user, and there is none on this machine (apt-get install -y postgresql creates it)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** The postmaster of the cluster in `data`, then every process it started. */
function clusterProcesses(data: string): number[] {
  const postmaster = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return [postmaster, ...childrenOf(postmaster)];
}

/**
 * A PostgreSQL cluster of this test's own (initdb into a temp dir, trust auth, TCP on 127.0.0.1
 * only, its socket in the temp dir), so stopping it harms no other test. Runs as `postgres`.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  if (process.getuid?.() !== 0) assert.fail('the private PostgreSQL cluster is started through runuser, which needs root');
  const bin = postgresBin();
  const { uid, gid } = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const port = await freePort();
  const asPostgres = (tool: string, args: string[], timeoutMs?: number) => run('/usr/sbin/runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], timeoutMs);
  let running = false;
  const cluster: PrivatePostgres = {
    port,
    databaseUrl: `postgres://postgres@127.0.0.1:${port}/gatehouse`,
    dir,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    async start() {
      const options = `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c max_connections=100`;
      await asPostgres('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '60', 'start'], 90_000);
      running = true;
    },
    async stop(mode = 'fast') {
      await asPostgres('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], 90_000);
      running = false;
    },
    freeze() {
      // The postmaster first, so that it starts no process after the others were listed.
      for (const pid of clusterProcesses(data)) process.kill(pid, 'SIGSTOP');
    },
    thaw() {
      for (const pid of clusterProcesses(data).reverse()) process.kill(pid, 'SIGCONT');
    },
    async destroy() {
      if (existsSync(join(data, 'postmaster.pid'))) cluster.thaw();
      if (running || existsSync(join(data, 'postmaster.pid'))) await cluster.stop('immediate').catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions'], 120_000);
    await cluster.start();
    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE gatehouse');
    } finally {
      await admin.end();
    }
  } catch (error) {
    const log = cluster.log();
    await cluster.destroy();
    throw new Error(`the private PostgreSQL cluster did not start: ${(error as Error).message}\n${log}`);
  }
  return cluster;
}

// ---------------------------------------------------------------------------------------------
// Clients, users and tokens
// ---------------------------------------------------------------------------------------------

export interface Party {
  id: string;
  secret: string;
}

export interface Fixtures {
  /** client_credentials. */
  machine: Party;
  /** A first-party app with the password and refresh_token grants. */
  firstParty: Party;
  /** A confidential web app: authorization code + refresh. */
  webApp: Party;
  /** A resource server that may introspect. */
  resourceServer: Party;
  users: { id: string; email: string }[];
}

/**
 * Creates the clients and users a test needs, in process, on the database the instances use (the
 * same settings they get, so the same secret).
 */
export async function createFixtures(env: Env, userCount = 1): Promise<Fixtures> {
  const config = loadConfig({ ...env, PORT: '0' });
  const gatehouse = await createGatehouse(config, { background: false, logger: pino({ level: 'silent' }) });
  try {
    const now = gatehouse.clock();
    const make = async (input: Partial<ClientInput> & { name: string }): Promise<Party> => {
      const { client, secret } = await createClient(gatehouse, { type: 'confidential', grantTypes: [], scopes: [], ...input } as ClientInput, now);
      return { id: client.id, secret: secret ?? '' };
    };
    const machine = await make({ name: 'Machine', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
    const firstParty = await make({ name: 'First party', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'profile'], firstParty: true });
    const webApp = await make({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [REDIRECT_URI] });
    const resourceServer = await make({ name: 'Resource server', isResourceServer: true });
    const users: { id: string; email: string }[] = [];
    for (let i = 0; i < userCount; i++) {
      const user = await createUser(gatehouse.storage, { email: `person${i}-${randomBytes(3).toString('hex')}@example.com`, password: PASSWORD, name: `Person ${i}` }, now);
      users.push({ id: user.id, email: user.email });
    }
    return { machine, firstParty, webApp, resourceServer, users };
  } finally {
    await gatehouse.close();
  }
}

export interface Answer {
  status: number;
  headers: Headers;
  body: any;
  /** The instance nginx sent it to, when it went through nginx. */
  upstream: string;
}

/** A token request authenticated with HTTP Basic (RFC 6749 §2.3.1). */
export function tokenRequest(base: string, client: Party, form: Record<string, string>, signal?: AbortSignal): Promise<Answer> {
  return tokenRequestTo(`${base}/token`, client, form, signal);
}

export const clientCredentials = (base: string, client: Party, signal?: AbortSignal) => tokenRequest(base, client, { grant_type: 'client_credentials', scope: 'objects:read' }, signal);
export const passwordGrant = (base: string, client: Party, email: string, signal?: AbortSignal) =>
  tokenRequest(base, client, { grant_type: 'password', username: email, password: PASSWORD, scope: 'objects:read' }, signal);
export const refreshGrant = (base: string, client: Party, refreshToken: string, signal?: AbortSignal) => tokenRequest(base, client, { grant_type: 'refresh_token', refresh_token: refreshToken }, signal);

/** RFC 7662 introspection by a resource server: the `active` member and the rest. */
export async function introspect(base: string, resourceServer: Party, token: string): Promise<Answer> {
  return tokenRequestTo(`${base}/introspect`, resourceServer, { token });
}

/** A form POST to `url` authenticated with HTTP Basic; the body parsed when it is JSON. */
async function tokenRequestTo(url: string, client: Party, form: Record<string, string>, signal?: AbortSignal): Promise<Answer> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(client.id, client.secret) },
    body: new URLSearchParams(form).toString(),
    // Every request is bounded: a hung one fails the test instead of hanging it.
    signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the assertion to show
  }
  return { status: response.status, headers: response.headers, body, upstream: upstreamOf(response.headers) };
}

/** An RFC 6749 §5.2 error body: a JSON object whose `error` is one of the registered codes. */
export function assertOAuthError(answer: { status: number; body: any; headers: Headers }, status: number, error: string, context = ''): void {
  assert.equal(answer.status, status, `${context} expected ${status} ${error}, got ${answer.status}: ${JSON.stringify(answer.body)}`);
  assert.match(answer.headers.get('content-type') ?? '', /^application\/json/, `${context} an error body is JSON`);
  assert.equal(typeof answer.body, 'object', `${context} body: ${JSON.stringify(answer.body)}`);
  assert.equal(answer.body.error, error, `${context} body: ${JSON.stringify(answer.body)}`);
  if (answer.body.error_description !== undefined) assert.equal(typeof answer.body.error_description, 'string');
}

// ---------------------------------------------------------------------------------------------
// The person in the browser: authorization code with PKCE, step by step
// ---------------------------------------------------------------------------------------------

export type Step = 'authorize' | 'login-page' | 'login' | 'consent-page' | 'consent' | 'redirect';

export interface CodeFlowOptions {
  /** Called before each request of the person's part; may send requests of its own (to steer nginx). */
  before?: (step: Step) => Promise<void>;
  /** Called with each response of the person's part. */
  after?: (step: Step, response: { status: number; headers: Headers }) => void;
  scope?: string;
}

/**
 * Plays the person at `base` (through whatever is there: nginx or one instance): authorization
 * request with PKCE (S256) and state, sign-in, consent; returns the code and its verifier.
 */
export async function authorizationCode(base: string, client: Party, email: string, options: CodeFlowOptions = {}): Promise<{ code: string; verifier: string; iss: string | null }> {
  const browser = new HttpBrowser();
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(8).toString('hex');
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: client.id,
    redirect_uri: REDIRECT_URI,
    scope: options.scope ?? 'openid profile objects:read',
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  });
  const request = async (step: Step, url: string, form?: Record<string, string>) => {
    await options.before?.(step);
    const response = await browser.request(url, form ? { form } : {});
    options.after?.(step, response);
    return response;
  };
  let current = `${base}/authorize?${query}`;
  let response = await request('authorize', current);
  for (let hops = 0; hops < 12; hops++) {
    if (response.location) {
      const next = new URL(response.location, current);
      if (next.href.startsWith(REDIRECT_URI)) {
        assert.equal(next.searchParams.get('state'), state, 'the state comes back');
        const code = next.searchParams.get('code');
        assert.ok(code, `a code comes back: ${next.href}`);
        return { code, verifier, iss: next.searchParams.get('iss') };
      }
      assert.ok(next.href.startsWith(base), `a redirect stays at ${base}: ${next.href}`);
      current = next.href;
      const path = next.pathname;
      response = await request(path === '/login' ? 'login-page' : path === '/consent' ? 'consent-page' : 'redirect', current);
      continue;
    }
    const path = new URL(current).pathname;
    assert.equal(response.status, 200, `${path} answered ${response.status}: ${response.text.slice(0, 800)}`);
    if (path === '/login') {
      response = await request('login', `${base}/login`, { csrf: hiddenField(response.text, 'csrf'), request: hiddenField(response.text, 'request'), email, password: PASSWORD });
      current = `${base}/login`;
    } else if (path === '/consent') {
      response = await request('consent', `${base}/consent`, { csrf: hiddenField(response.text, 'csrf'), request: hiddenField(response.text, 'request'), decision: 'allow' });
      current = `${base}/consent`;
    } else {
      assert.fail(`unexpected page ${current}: ${response.text.slice(0, 800)}`);
    }
  }
  assert.fail('the authorization flow did not come back to the client within 12 steps');
}

export const exchangeCode = (base: string, client: Party, code: { code: string; verifier: string }, signal?: AbortSignal) =>
  tokenRequest(base, client, { grant_type: 'authorization_code', code: code.code, redirect_uri: REDIRECT_URI, code_verifier: code.verifier }, signal);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/**
 * The workers of a `serve --workers N` primary, as seen over a test: `current()` lists the live ones
 * and remembers every one ever seen, which `killAll()` ends — a worker outliving its primary would
 * be a leak.
 */
export function workerTracker(primaryPid: () => number): { current(): number[]; killAll(): void } {
  const seen = new Set<number>();
  return {
    current() {
      const pids = childrenOf(primaryPid());
      for (const pid of pids) seen.add(pid);
      return pids;
    },
    killAll() {
      for (const pid of seen) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone, as it should be
        }
      }
    },
  };
}

/** The ids of the live child processes of `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses, so read after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/**
 * Which of `pids` holds the server side of the TCP connection between 127.0.0.1:`serverPort` and
 * 127.0.0.1:`clientPort`: the kernel's socket table (/proc/net/tcp) gives its inode, the processes'
 * descriptors (/proc/PID/fd) say who has it open.
 */
export function ownerOfConnection(serverPort: number, clientPort: number, pids: number[]): number | undefined {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const local = `0100007F:${hex(serverPort)}`;
  const remote = `0100007F:${hex(clientPort)}`;
  let inode: string | undefined;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[2] === remote) inode = fields[9];
  }
  if (!inode || inode === '0') return undefined;
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

export interface RawRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Sends one HTTP/1.1 request on a connection of its own and, while the connection is still open,
 * asks /proc which of `pids` serves it; the answer's headers by their names in lower case. Bounded:
 * fails after `timeoutMs`.
 */
export function requestAndFindOwner(
  port: number,
  request: RawRequest,
  pids: number[],
  timeoutMs = 5000,
): Promise<{ status: number; headers: Record<string, string>; body: string; owner: number | undefined }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${request.method ?? 'GET'} ${request.path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      const body = request.body ?? '';
      const headers = { host: `127.0.0.1:${port}`, connection: 'keep-alive', ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...request.headers };
      socket.write(`${request.method ?? 'GET'} ${request.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
    });
    socket.on('data', (chunk: string) => {
      data += chunk;
      const headerEnd = data.indexOf('\r\n\r\n');
      if (headerEnd === -1) return;
      const length = Number(/content-length: (\d+)/i.exec(data.slice(0, headerEnd))?.[1] ?? 0);
      if (Buffer.byteLength(data) < Buffer.byteLength(data.slice(0, headerEnd + 4)) + length) return;
      clearTimeout(timer);
      const status = Number(data.slice(9, 12));
      const owner = ownerOfConnection(port, socket.localPort!, pids);
      socket.destroy();
      const headers: Record<string, string> = {};
      for (const line of data.slice(0, headerEnd).split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers, body: data.slice(headerEnd + 4), owner });
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** A tally of statuses, for messages: `{"200": 12, "503": 4}`. */
export function tally<T>(items: T[], key: (item: T) => string | number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[String(key(item))] = (counts[String(key(item))] ?? 0) + 1;
  return counts;
}

/** The value of a Prometheus counter line in a /metrics text, 0 when absent. */
export function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Waits until the primary of `serve --workers 2` has started a worker in place of `victim`, beside `survivor`: the two workers' pids. */
export function replacementOf(workers: () => number[], victim: number, survivor: number): Promise<number[]> {
  return waitFor(
    'a replacement worker',
    async () => {
      const now = workers();
      return now.length === 2 && !now.includes(victim) && now.includes(survivor) ? now : undefined;
    },
    20_000,
    100,
  );
}
