import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { createClient } from '../../src/core/applications.ts';
import type { NameLookup } from '../../src/core/backchannel-logout.ts';
import type { ClientInput } from '../../src/core/client-validation.ts';
import { createUser } from '../../src/core/users.ts';
import type { Clock } from '../../src/core/clock.ts';
import { loadConfig, type FileConfig, type GatehouseConfig } from '../../src/core/config.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import { createTestDatabase, type TestDatabase, type TestDialect } from './databases.ts';

export const TEST_SECRET = 'test-master-secret-that-is-long-enough-0123456789';

export interface TestServer {
  url: string;
  gatehouse: Gatehouse;
  app: FastifyInstance;
  config: GatehouseConfig;
  database: TestDatabase;
  /** Creates a client; returns its id and (for confidential clients) secret. */
  client(input: Partial<ClientInput>): Promise<{ id: string; secret: string }>;
  user(email: string, password: string): Promise<{ id: string; email: string }>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  clock?: Clock;
  /** Replaces parts of the shipped configuration file. */
  config?: Partial<FileConfig>;
  env?: Record<string, string>;
  /** False: no key reloading and no sweeping of expired rows, for tests that compare stored state over minutes. */
  background?: boolean;
  /** Where the instance logs (nowhere unless told). */
  logger?: Logger;
  /** How many mails may wait for the mail server at once. */
  maxMailsWaiting?: number;
  /** How many Logout Tokens may wait to be posted at once. */
  maxLogoutsWaiting?: number;
  /** How Logout Token deliveries look names up. */
  lookup?: NameLookup;
}

/** A real Gatehouse on a free loopback port, on a fresh database of the given dialect. */
export async function startTestServer(dialect: TestDialect, options: TestServerOptions = {}): Promise<TestServer> {
  const database = await createTestDatabase(dialect);
  // The issuer must be the address clients reach, so the port is chosen before the config is made.
  const port = await freePort();
  const config = loadConfig(
    {
      PORT: String(port),
      GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`,
      GATEHOUSE_DATA_DIR: database.dataDir,
      GATEHOUSE_SECRET: TEST_SECRET,
      ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
      ...options.env,
    },
    options.config,
  );
  const gatehouse = await createGatehouse(config, {
    logger: options.logger ?? pino({ level: 'silent' }),
    ...(options.maxMailsWaiting !== undefined ? { maxMailsWaiting: options.maxMailsWaiting } : {}),
    ...(options.maxLogoutsWaiting !== undefined ? { maxLogoutsWaiting: options.maxLogoutsWaiting } : {}),
    ...(options.lookup ? { lookup: options.lookup } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.background === false ? { background: false } : {}),
  });
  const app = buildApp(gatehouse);
  await app.listen({ port, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    gatehouse,
    app,
    config,
    database,
    async client(input) {
      const { client, secret } = await createClient(
        gatehouse,
        { name: 'Test client', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], ...input },
        gatehouse.clock(),
      );
      return { id: client.id, secret: secret ?? '' };
    },
    async user(email, password) {
      const user = await createUser(gatehouse.storage, { email, password }, gatehouse.clock());
      return { id: user.id, email: user.email };
    },
    async close() {
      await app.close();
      await gatehouse.close();
      await database.drop();
    },
  };
}

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** POSTs to a Gatehouse endpoint as a form or as JSON and returns status, headers and parsed body. */
export async function post(
  url: string,
  body: Record<string, string> | string,
  options: { json?: boolean; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const isJson = options.json ?? false;
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': isJson ? 'application/json' : 'application/x-www-form-urlencoded', ...options.headers },
    body: typeof body === 'string' ? body : isJson ? JSON.stringify(body) : new URLSearchParams(body).toString(),
    ...(options.signal && { signal: options.signal }),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the assertion to show
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** RFC 6749 §2.3.1: form-encode, then Base64. */
export const basic = (id: string, secret: string): string =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
