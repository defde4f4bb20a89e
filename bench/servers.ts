// The three servers under test, each started the way it would run in production on one core, and
// each checked with one real token request before any load is put on it.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_OPTIONS } from '../src/cli/runtime.ts';
import { childFailure, findFreePort, runToCompletion, startChild, stopAllChildren, waitUntilReady } from './processes.ts';
import type { Child } from './processes.ts';

export const SERVER_NAMES = ['floor', 'oidc-provider', 'gatehouse'] as const;
export type ServerName = (typeof SERVER_NAMES)[number];

const HOST = '127.0.0.1';
const SCOPE = 'objects:read';
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const benchDir = fileURLToPath(new URL('.', import.meta.url));

/** The one request every server is measured with: RFC 6749 §4.4 with HTTP Basic (§2.3.1). */
export interface TokenRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
}

export interface RunningServer {
  name: ServerName;
  tokenRequest: TokenRequest;
  /** Output of the server process, for failure messages. */
  child: Child;
  stop(): Promise<void>;
}

const started = new Set<RunningServer>();

/** Stops whatever is still running and removes its files (on error or interrupt). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...started].map((server) => server.stop()));
  await stopAllChildren();
}

export async function startServer(name: ServerName, core: number | undefined): Promise<RunningServer> {
  switch (name) {
    case 'floor':
      return startFloor(core);
    case 'oidc-provider':
      return startOidcProvider(core);
    case 'gatehouse':
      return startGatehouse(core);
  }
}

async function startFloor(core: number | undefined): Promise<RunningServer> {
  const port = await findFreePort(HOST);
  const child = startChild('floor', process.execPath, [join(benchDir, 'floor-server.ts')], {
    cwd: repoRoot,
    env: { ...process.env, PORT: String(port), HOST },
    core,
  });
  const { url, ...init } = tokenRequest(port, 'floor', 'floor');
  const server = running('floor', child, { url, ...init });
  await becomeReady(server, () => waitUntilReady(child, url, init));
  return server;
}

async function startOidcProvider(core: number | undefined): Promise<RunningServer> {
  const port = await findFreePort(HOST);
  const clientId = 'bench';
  const clientSecret = randomBytes(32).toString('base64url');
  const child = startChild('oidc-provider', process.execPath, [join(benchDir, 'oidc-provider-server.ts')], {
    cwd: repoRoot,
    env: { ...process.env, PORT: String(port), HOST, BENCH_CLIENT_ID: clientId, BENCH_CLIENT_SECRET: clientSecret },
    core,
  });
  const server = running('oidc-provider', child, tokenRequest(port, clientId, clientSecret));
  await becomeReady(server, async () => {
    await waitUntilReady(child, `http://${HOST}:${port}/.well-known/openid-configuration`);
    await expectSignedToken(server);
  });
  return server;
}

async function startGatehouse(core: number | undefined): Promise<RunningServer> {
  const cli = join(repoRoot, 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) throw new Error(`${cli} does not exist: build first (npm run bench does)`);

  const port = await findFreePort(HOST);
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-'));
  // The shipped configuration, with one change: the per-client token budget (a runaway-client guard,
  // 120,000 a minute by default) is lifted, since the load comes from one client. Nothing else differs.
  const shipped = JSON.parse(await readFile(join(repoRoot, 'config', 'gatehouse.json'), 'utf8')) as Record<string, unknown>;
  const configPath = join(dataDir, 'bench-config.json');
  await writeFile(configPath, JSON.stringify({ ...shipped, rateLimits: { tokenRequestsPerClient: 0 } }));
  const env = {
    ...withoutGatehouseSettings(process.env),
    PORT: String(port),
    HOST,
    GATEHOUSE_DATA_DIR: dataDir,
    GATEHOUSE_LOG_LEVEL: 'warn',
    GATEHOUSE_CONFIG: configPath,
  };
  const removeDataDir = () => rm(dataDir, { recursive: true, force: true });

  let child: Child;
  let clientId: string;
  let clientSecret: string;
  try {
    const created = await runToCompletion(
      process.execPath,
      [cli, 'client', 'create', '--name', 'bench', '--type', 'confidential', '--grant', 'client_credentials', '--scope', SCOPE, '--json'],
      { cwd: repoRoot, env },
    );
    ({ clientId, clientSecret } = parseCreatedClient(created));
    child = startChild('gatehouse', process.execPath, [...SERVER_NODE_OPTIONS, cli, 'serve'], { cwd: repoRoot, env, core });
  } catch (error) {
    await removeDataDir();
    throw error;
  }

  const server = running('gatehouse', child, tokenRequest(port, clientId, clientSecret), removeDataDir);
  await becomeReady(server, async () => {
    await waitUntilReady(child, `http://${HOST}:${port}/healthz`);
    await expectSignedToken(server);
  });
  return server;
}

function running(name: ServerName, child: Child, request: TokenRequest, cleanUp?: () => Promise<void>): RunningServer {
  const server: RunningServer = {
    name,
    tokenRequest: request,
    child,
    async stop() {
      started.delete(server);
      await child.stop();
      await cleanUp?.();
    },
  };
  started.add(server);
  return server;
}

/** Stops the server again if it never gets ready, so a failed start leaves nothing behind. */
async function becomeReady(server: RunningServer, check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (error) {
    await server.stop();
    throw error;
  }
}

function tokenRequest(port: number, clientId: string, clientSecret: string): TokenRequest {
  // RFC 6749 §2.3.1: each part is form-urlencoded before being joined and base64-encoded.
  const credentials = `${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`;
  return {
    url: `http://${HOST}:${port}/token`,
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(credentials).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: SCOPE }).toString(),
  };
}

/**
 * The comparison only means something if both servers do the same work, so the reference and
 * Gatehouse must each hand out an ES256-signed JWT before they are measured.
 */
async function expectSignedToken(server: RunningServer): Promise<void> {
  const { url, ...init } = server.tokenRequest;
  const response = await fetch(url, init);
  const text = await response.text();
  const fail = (why: string) => childFailure(server.child, `${server.name}: the token request ${why}\n${response.status} ${text}`);
  if (response.status !== 200) throw fail('did not answer 200');

  let accessToken: unknown;
  try {
    accessToken = (JSON.parse(text) as { access_token?: unknown }).access_token;
  } catch {
    throw fail('did not answer JSON');
  }
  if (typeof accessToken !== 'string') throw fail('answered no access_token');

  const [encodedHeader, payload, signature] = accessToken.split('.');
  let header: { alg?: unknown } | undefined;
  try {
    header = encodedHeader && payload && signature ? JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8')) : undefined;
  } catch {
    header = undefined;
  }
  if (header === undefined) throw fail('answered an access_token that is not a JWS');
  if (header.alg !== 'ES256') throw fail(`answered a JWT signed with ${String(header.alg)}, not ES256`);
}

function parseCreatedClient(stdout: string): { clientId: string; clientSecret: string } {
  // Tolerates anything printed before a one-line JSON, such as a first-run notice.
  const candidates = [stdout.trim(), ...stdout.trim().split('\n').reverse()];
  for (const candidate of candidates) {
    try {
      const parsed = JSON.parse(candidate) as { client_id?: unknown; client_secret?: unknown };
      if (typeof parsed.client_id === 'string' && typeof parsed.client_secret === 'string') {
        return { clientId: parsed.client_id, clientSecret: parsed.client_secret };
      }
    } catch {
      // not the JSON line
    }
  }
  throw new Error(`gatehouse client create printed no {"client_id","client_secret"} JSON:\n${stdout}`);
}

/**
 * The benchmark measures the embedded default; settings from the developer's shell (a DATABASE_URL
 * above all) would change what is measured and could write the bench client into a real database.
 */
export function withoutGatehouseSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(([key]) => !key.startsWith('GATEHOUSE_') && key !== 'DATABASE_URL'),
  );
}
