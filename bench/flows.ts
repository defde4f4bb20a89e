// The Gatehouse flows measured over HTTP beyond client_credentials, each on an instance and a
// database of its own: refresh (SQLite and PostgreSQL), the authorization endpoint for a signed-in
// browser, and introspection of a JWT and of an API key. Set-up goes through the command line and
// the login page, as for a real deployment; only the measured requests come from autocannon.
import { createHash, randomBytes } from 'node:crypto';
import { HttpBrowser, hiddenField } from '../test/support/browser.ts';
import { createInstance } from './gatehouse.ts';
import type { CpuUsage, GatehouseInstance } from './gatehouse.ts';
import { runLoad } from './load.ts';
import type { LoadRequest, LoadResult } from './load.ts';
import type { BenchOptions, FlowName } from './options.ts';
import { childFailure } from './processes.ts';

export type HttpFlowName = Exclude<FlowName, 'sdk-verify' | 'memory'>;

export interface FlowResult extends LoadResult {
  flow: FlowName;
  /** The status every answer must have: 200, or 302 for the authorization endpoint. */
  expectedStatus: number;
  /** Microseconds of the Gatehouse process's CPU (all threads) per request measured, where /proc tells. */
  cpuMicrosPerRequest?: number;
  /** Measured in the servers' rounds: requests/s in each round (the figures above are the median round's). */
  rounds?: number[];
  /**
   * On a PostgreSQL of this machine, microseconds of CPU of the backends serving the instance's
   * database per request measured: the other half of what a request costs the machine.
   */
  databaseCpuMicrosPerRequest?: number;
}

export interface CreatedClient {
  client_id: string;
  client_secret: string;
}

interface PreparedFlow {
  instance: GatehouseInstance;
  expectedStatus: number;
  /** The load for one run; the refresh flows get fresh refresh tokens for each run. */
  request(connections: number): Promise<LoadRequest>;
}

export const SCOPE = 'objects:read';
const FORM = 'application/x-www-form-urlencoded';
const EMAIL = 'bench@bench.example';
/** Never contacted: the authorization endpoint only names it in its redirect. */
const REDIRECT_URI = 'http://127.0.0.1:9/callback';

/** A flow set up on an instance of its own, ready to be measured once or in rounds. */
export interface FlowUnderTest {
  name: HttpFlowName;
  /**
   * Loads the flow for `seconds` on fresh connections (fresh refresh tokens, prepared before the
   * clock starts). Every answer must be the expected one, in a warm-up as in a measurement.
   */
  measure(seconds: number, connections: number, run: 'warm-up' | 'measurement'): Promise<FlowResult>;
  /** Stops the instance and removes its database. */
  stop(): Promise<void>;
}

export async function startFlow(name: HttpFlowName, core: number | undefined): Promise<FlowUnderTest> {
  const flow = await prepare(name, core);
  return {
    name,
    async measure(seconds, connections, run) {
      const request = await flow.request(connections);
      const before = await flow.instance.cpuUsage();
      const load = await runLoad(request, { durationSeconds: seconds, connections });
      const after = await flow.instance.cpuUsage();
      expectEveryRequestSucceeded(name, flow, load, run);
      return { flow: name, expectedStatus: flow.expectedStatus, ...load, ...cpuPerRequest(before, after, load.totalRequests) };
    },
    stop: () => flow.instance.stop(),
  };
}

export async function measureHttpFlow(
  name: HttpFlowName,
  options: BenchOptions,
  core: number | undefined,
  log: (message: string) => void,
): Promise<FlowResult> {
  log('setting up');
  const flow = await startFlow(name, core);
  try {
    if (options.warmupSeconds > 0) {
      log(`warming up for ${options.warmupSeconds} s`);
      await flow.measure(options.warmupSeconds, options.connections, 'warm-up');
    }
    log(`measuring for ${options.durationSeconds} s`);
    return await flow.measure(options.durationSeconds, options.connections, 'measurement');
  } finally {
    await flow.stop();
  }
}

async function prepare(name: HttpFlowName, core: number | undefined): Promise<PreparedFlow> {
  const instance = await createInstance(name, name === 'refresh-postgres' ? 'postgres' : 'sqlite');
  try {
    switch (name) {
      case 'refresh-sqlite':
      case 'refresh-postgres':
        return await prepareRefresh(instance, core);
      case 'authorization-code':
        return await prepareAuthorizationCode(instance, core);
      case 'introspection':
      case 'api-key-introspection':
        return await prepareIntrospection(instance, core, name === 'api-key-introspection' ? 'api_key' : 'access_token');
    }
  } catch (error) {
    await instance.stop();
    throw error;
  }
}

/**
 * RFC 6749 §6 with rotation: every refresh consumes the token it presents, so each connection starts
 * from a refresh token of its own (from the password grant) and sends the token of each answer with
 * its next request.
 */
async function prepareRefresh(instance: GatehouseInstance, core: number | undefined): Promise<PreparedFlow> {
  const client = await instance.cli<CreatedClient>([
    'client', 'create', '--name', 'bench-refresh', '--type', 'confidential', '--grant', 'password', '--grant', 'refresh_token', '--scope', SCOPE,
  ]);
  const password = randomBytes(18).toString('base64url');
  // `--password=…` in one argument: one base64url password in 64 starts with '-', which the
  // command line would otherwise take for an option.
  await instance.cli(['user', 'create', '--email', EMAIL, `--password=${password}`]);
  await instance.serve(core);

  const tokenUrl = `${instance.url}/token`;
  const authorization = basic(client);
  const passwordGrant = async (): Promise<string> => {
    const answer = await postForm(instance, tokenUrl, authorization, { grant_type: 'password', username: EMAIL, password, scope: SCOPE });
    if (typeof answer.refresh_token !== 'string') throw failure(instance, `the password grant answered no refresh_token: ${JSON.stringify(answer)}`);
    return answer.refresh_token;
  };

  return {
    instance,
    expectedStatus: 200,
    async request(connections) {
      const tokens = await Promise.all(Array.from({ length: connections }, passwordGrant));
      return {
        url: tokenUrl,
        method: 'POST',
        headers: { authorization, 'content-type': FORM },
        perConnection() {
          let token = tokens.pop();
          return {
            next: () => ({ body: `grant_type=refresh_token&refresh_token=${encodeURIComponent(token ?? '')}` }),
            onResponse(status, body) {
              token = status === 200 ? (JSON.parse(body) as { refresh_token?: string }).refresh_token : undefined;
            },
          };
        },
        check: (status, body) => status === 200 && body.includes('"refresh_token"'),
      };
    },
  };
}

/**
 * The authorization endpoint for a person who is signed in already, with a first-party client (no
 * consent): every request answers 302 to the redirect URI with a fresh code (RFC 6749 §4.1.2).
 */
async function prepareAuthorizationCode(instance: GatehouseInstance, core: number | undefined): Promise<PreparedFlow> {
  const client = await instance.cli<CreatedClient>([
    'client', 'create', '--name', 'bench-web', '--type', 'confidential', '--grant', 'authorization_code', '--grant', 'refresh_token',
    '--redirect-uri', REDIRECT_URI, '--scope', `openid profile ${SCOPE}`, '--first-party',
  ]);
  const password = randomBytes(18).toString('base64url');
  await instance.cli(['user', 'create', '--email', EMAIL, `--password=${password}`]);
  await instance.serve(core);

  const verifier = randomBytes(32).toString('base64url');
  const authorizePath = `/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT_URI,
    scope: `openid ${SCOPE}`,
    state: 'bench',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  })}`;

  // Signs in once through the login page, as a browser would; the session cookie is then reused.
  const browser = new HttpBrowser();
  const login = await browser.follow(`${instance.url}${authorizePath}`, instance.url);
  if (!('url' in login) || login.status !== 200 || new URL(login.url).pathname !== '/login') {
    throw failure(instance, `/authorize did not lead to the login page (${login.status}): ${login.text.slice(0, 500)}`);
  }
  const signedIn = await browser.follow(`${instance.url}/login`, instance.url, {
    form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), email: EMAIL, password },
  });
  const codeFrom = (location: string | undefined) => (location?.startsWith(`${REDIRECT_URI}?`) ? new URL(location).searchParams.get('code') : null);
  const firstCode = codeFrom(signedIn.location);
  if (!firstCode) throw failure(instance, `signing in did not redirect to the client with a code (${signedIn.status} ${signedIn.location ?? ''})`);
  // The codes are real: the first one buys tokens.
  const exchanged = await postForm(instance, `${instance.url}/token`, basic(client), {
    grant_type: 'authorization_code', code: firstCode, redirect_uri: REDIRECT_URI, code_verifier: verifier,
  });
  if (typeof exchanged.access_token !== 'string') throw failure(instance, `the first code bought no access token: ${JSON.stringify(exchanged)}`);

  const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  const codePrefix = `${REDIRECT_URI}?code=gate_ac_`;
  return {
    instance,
    expectedStatus: 302,
    request: async () => ({
      url: `${instance.url}${authorizePath}`,
      method: 'GET',
      headers: { cookie },
      check: (status, _body, headers) => status === 302 && String(header(headers, 'location')).startsWith(codePrefix),
    }),
  };
}

/**
 * RFC 7662 by a resource server: a JWT access token (verified against the signing keys, checked
 * against the revocation list) or an API key (looked up by digest).
 */
async function prepareIntrospection(instance: GatehouseInstance, core: number | undefined, kind: 'access_token' | 'api_key'): Promise<PreparedFlow> {
  const api = await instance.cli<CreatedClient>(['client', 'create', '--name', 'bench-api', '--type', 'confidential', '--resource-server']);
  const app = await instance.cli<CreatedClient>(['client', 'create', '--name', 'bench-app', '--grant', 'client_credentials', '--scope', SCOPE]);
  const apiKey = kind === 'api_key' ? (await instance.cli<{ api_key: string }>(['apikey', 'create', app.client_id, '--name', 'bench', '--scope', SCOPE])).api_key : undefined;
  await instance.serve(core);

  let token = apiKey;
  if (token === undefined) {
    const answer = await postForm(instance, `${instance.url}/token`, basic(app), { grant_type: 'client_credentials', scope: SCOPE });
    if (typeof answer.access_token !== 'string') throw failure(instance, `client_credentials answered no access_token: ${JSON.stringify(answer)}`);
    token = answer.access_token;
  }
  const request: LoadRequest = {
    url: `${instance.url}/introspect`,
    method: 'POST',
    headers: { authorization: basic(api), 'content-type': FORM },
    body: new URLSearchParams({ token, token_type_hint: kind }).toString(),
    check: (status, body) => status === 200 && body.includes('"active":true'),
  };
  const first = await postForm(instance, request.url, basic(api), { token, token_type_hint: kind });
  if (first.active !== true) throw failure(instance, `introspection of the ${kind} answered ${JSON.stringify(first)}`);
  return { instance, expectedStatus: 200, request: async () => request };
}

/**
 * CPU per request from two readings around the measurement. A database backend that appeared in
 * between counts whole; one that ended in between is missed (Gatehouse's pool keeps its connections
 * while it is busy, so neither happens under load).
 */
function cpuPerRequest(before: CpuUsage, after: CpuUsage, requests: number): Pick<FlowResult, 'cpuMicrosPerRequest' | 'databaseCpuMicrosPerRequest'> {
  if (requests === 0) return {};
  const result: Pick<FlowResult, 'cpuMicrosPerRequest' | 'databaseCpuMicrosPerRequest'> = {};
  if (before.server !== undefined && after.server !== undefined) result.cpuMicrosPerRequest = (after.server - before.server) / requests;
  if (before.backends !== undefined && after.backends !== undefined) {
    let used = 0;
    for (const [pid, micros] of after.backends) used += micros - (before.backends.get(pid) ?? 0);
    result.databaseCpuMicrosPerRequest = used / requests;
  }
  return result;
}

/** A server that answers errors fast would look fast: any unexpected answer voids the run. */
function expectEveryRequestSucceeded(name: FlowName, flow: PreparedFlow, load: LoadResult, run: string): void {
  const expected = load.statusCodes[flow.expectedStatus] ?? 0;
  if (load.totalRequests > 0 && expected === load.totalRequests && load.errors === 0 && !load.mismatches) return;
  const codes = Object.entries(load.statusCodes).map(([code, count]) => `${code}: ${count}`).join(', ');
  throw failure(
    flow.instance,
    `${name} (${run}): ${load.totalRequests} requests, ${load.totalRequests - expected} not ${flow.expectedStatus}, ` +
      `${load.mismatches ?? 0} with an unexpected answer, ${load.errors} errors (${load.timeouts} timeouts); status codes ${codes || 'none'}`,
  );
}

export function basic({ client_id, client_secret }: CreatedClient): string {
  // RFC 6749 §2.3.1: each part is form-urlencoded before being joined and base64-encoded.
  return `Basic ${Buffer.from(`${encodeURIComponent(client_id)}:${encodeURIComponent(client_secret)}`).toString('base64')}`;
}

/** A form POST during set-up; fails loudly on anything but 200 with JSON. */
export async function postForm(instance: GatehouseInstance, url: string, authorization: string, params: Record<string, string>): Promise<Record<string, unknown>> {
  const response = await fetch(url, { method: 'POST', headers: { authorization, 'content-type': FORM }, body: new URLSearchParams(params).toString() });
  const text = await response.text();
  if (response.status !== 200) throw failure(instance, `${new URL(url).pathname} (${params.grant_type ?? params.token_type_hint}) answered ${response.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

export function failure(instance: GatehouseInstance, message: string): Error {
  return instance.child ? childFailure(instance.child, `${instance.label}: ${message}`) : new Error(`${instance.label}: ${message}`);
}

function header(headers: Record<string, unknown>, name: string): unknown {
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}
