import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { addClientSecret, createClient } from '../../src/core/applications.ts';
import { hashPassword } from '../../src/core/passwords.ts';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { issueRefreshToken } from '../../src/core/tokens/refresh.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { sendRaw, type RawAnswer as Answer } from '../support/raw-http.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { startMailServer, type TestMailServer } from '../support/smtp.ts';
import { HOSTILE_STRINGS } from '../support/hostile-strings.ts';

/*
 * Issue 6, "Abuse": property-based fuzzing (fast-check) of the inputs of every endpoint over real
 * HTTP — the token endpoint, /authorize (GET and POST), sign-in, sign-up, consent, sign-out,
 * withdrawal of consent, the account's password, name and other browsers, userinfo, introspection, revocation, project tokens, discovery and the
 * JWKS, the admin API and the developer portal, the protocol endpoints by the methods they refuse
 * and by their CORS preflights,
 * the static assets, the metrics, and every GET route by HEAD. Which routes the fuzzed requests
 * reached is read from the server's own count of its requests by route (its latency histogram), and
 * a route the app registers that none reached fails the suite, naming it. Most inputs are valid requests changed in up to
 * three places (a parameter dropped, repeated, truncated, replaced with junk, an unknown or
 * prototype-polluting one added), so that they get past the first checks; the rest are anything
 * at all. Junk is unicode, NULs, lone surrogates, injections, huge values; bodies come in odd
 * content types and encodings, with odd headers. Refresh tokens, codes, waiting requests,
 * applications and users are minted fresh for each request, so valid requests really succeed.
 *
 * Properties, for every request:
 *   - never a 5xx, never a stack trace;
 *   - a well-formed answer: the protocol endpoints answer JSON, with an `error` string on a 4xx
 *     (the admin API an RFC 9457 problem); the pages answer HTML with their security headers, and
 *     redirect only to this server or to an address registered for the client (no open redirect),
 *     with `iss` in every authorization response and never a token in a query string;
 *   - a refused request changes nothing stored: every table but the audit log is read before and
 *     after, through a read-only connection of its own (SQLite); a HEAD changes nothing at all.
 *
 * The seed is fixed, so a run is repeatable (FUZZ_SEED and FUZZ_RUNS explore further, locally).
 */

// FUZZ_SEED and FUZZ_RUNS let a longer local run explore further; the suite runs with these fixed values.
const SEED = Number(process.env.FUZZ_SEED ?? 0) || 0x9700;
const RUNS = Number(process.env.FUZZ_RUNS ?? 0) || undefined;
const runs = (n: number): number => RUNS ?? n;
const HEAD_RUNS = runs(80);
const OTHER_METHOD_RUNS = runs(70);

const CALLBACK = 'https://app.example/callback';
const LOOPBACK = 'http://127.0.0.1:8080/native';
const LEGACY_CALLBACK = 'https://legacy.example/callback';
const LOGGED_OUT = 'https://app.example/logged-out';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * Placeholders the runner replaces just before sending, with values that exist per request: a
 * fresh refresh token, code, waiting authorization request, application or user, so that valid
 * requests can succeed (and replays of earlier runs cannot mix in). Plain ASCII, so they survive
 * every encoding; minted before the "before" snapshot.
 */
const P = {
  csrf: 'PH-csrf-7f3a',
  refresh: 'PH-refresh-7f3a',
  code: 'PH-code-7f3a',
  spaCode: 'PH-spacode-7f3a',
  access: 'PH-access-7f3a',
  pendingLogin: 'PH-pendinglogin-7f3a',
  pendingConsent: 'PH-pendingconsent-7f3a',
  ownApp: 'PH-ownapp-7f3a',
  ownSecret: 'PH-ownsecret-7f3a',
  ownKey: 'PH-ownkey-7f3a',
  spareClient: 'PH-spareclient-7f3a',
  spareSecret: 'PH-sparesecret-7f3a',
  spareKey: 'PH-sparekey-7f3a',
  spareUser: 'PH-spareuser-7f3a',
  spareGrant: 'PH-sparegrant-7f3a',
  consented: 'PH-consented-7f3a',
  unique: 'PH-unique-7f3a',
  grantsCursor: 'PH-grantscursor-7f3a',
  auditCursor: 'PH-auditcursor-7f3a',
  resetLink: 'PH-resetlink-7f3a',
  verifyLink: 'PH-verifylink-7f3a',
} as const;

const VERIFIER = randomBytes(32).toString('base64url');
const CHALLENGE = createHash('sha256').update(VERIFIER).digest('base64url');

// --- arbitrary input ---------------------------------------------------------------------------

const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'a[b]', 'a.b', '', ' ', 'grant_type[]', 'client_id '];

/** Strings of every kind; `huge` adds a few thousand characters now and then. */
const junk = (huge = false): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
    { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
    { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double()).map(String) },
    { weight: huge ? 1 : 0, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 2000, maxLength: 6000 }) },
    { weight: huge ? 1 : 0, arbitrary: fc.string({ unit: 'grapheme', minLength: 300, maxLength: 1200 }) },
  );

type Value = string | string[];
type Entries = [string, Value][];

/**
 * Parameters for an endpoint: each known name absent or present — mostly with a value that makes
 * sense, sometimes junk, sometimes repeated — plus a few unknown names.
 */
function paramsArb(spec: Record<string, fc.Arbitrary<string>>, huge = false): fc.Arbitrary<Entries> {
  const fields = Object.entries(spec).map(([name, valid]) =>
    fc.option(
      fc.oneof(
        { weight: 6, arbitrary: valid.map((v): [string, Value] => [name, v]) },
        { weight: 2, arbitrary: junk(huge).map((v): [string, Value] => [name, v]) },
        { weight: 1, arbitrary: fc.array(fc.oneof(valid, junk()), { minLength: 2, maxLength: 3 }).map((vs): [string, Value] => [name, vs]) },
      ),
      { freq: 4 },
    ),
  );
  const extra = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...ODD_KEYS), junk()), fc.oneof(junk(huge), fc.array(junk(), { minLength: 2, maxLength: 2 }))), { maxLength: 3 });
  return fc.tuple(fc.tuple(...fields), extra).map(([known, more]) => [...known.filter((e): e is [string, Value] => e !== null), ...(more as [string, Value][])]);
}

// Lone surrogates cannot be percent-encoded; they go as U+FFFD, as a browser would send them.
const enc = (value: string): string => encodeURIComponent(value.toWellFormed());
const pairs = (entries: Entries): [string, string][] => entries.flatMap(([k, v]) => (Array.isArray(v) ? v.map((x): [string, string] => [k, x]) : [[k, v] as [string, string]]));
const formEncode = (entries: Entries): string => pairs(entries).map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');
// Written by hand, so that repeated and `__proto__` keys reach the server as they are.
const jsonEncode = (entries: Entries): string => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
/** Any junk made fit for a request line: what cannot be sent raw is percent-encoded, malformed escapes stay. */
const rawQuery = (text: string): string => text.replace(/[^\x21-\x7e]|#/g, (c) => [...Buffer.from(c.toWellFormed())].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));

const ODD_TYPES = [
  'text/plain',
  'multipart/form-data; boundary=xyz',
  'application/xml',
  'application/octet-stream',
  'APPLICATION/JSON',
  'application/json; charset=utf-16',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'Application/X-WWW-Form-Urlencoded',
  'application/json, text/plain',
  'application/jsonx',
  'application/*',
  'x/x; a=b; a=c',
  ';',
  '',
];

interface Body {
  type: string | undefined;
  body: string | Buffer;
}

/** A request body carrying `entries`, in the standard encodings and in odd ones. */
function bodyArb(entries: fc.Arbitrary<Entries>): fc.Arbitrary<Body> {
  return fc.oneof(
    { weight: 12, arbitrary: entries.map((e): Body => ({ type: 'application/x-www-form-urlencoded', body: formEncode(e) })) },
    { weight: 4, arbitrary: entries.map((e): Body => ({ type: 'application/json', body: jsonEncode(e) })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.option(fc.constantFrom(...ODD_TYPES), { freq: 5 }), entries, fc.constantFrom('form', 'json'))
        .map(([type, e, as]): Body => ({ type: type ?? undefined, body: as === 'form' ? formEncode(e) : jsonEncode(e) })),
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v): Body => ({ type: 'application/json', body: JSON.stringify(v) ?? 'null' })) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain'), fc.uint8Array({ maxLength: 300 })).map(([type, bytes]): Body => ({ type, body: Buffer.from(bytes) })) },
    { weight: 1, arbitrary: fc.constantFrom<Body>({ type: 'application/json', body: '' }, { type: 'application/json', body: '{' }, { type: 'application/x-www-form-urlencoded', body: '' }) },
    // Over the 64 KiB limit.
    { weight: 1, arbitrary: fc.constantFrom<Body>({ type: 'application/x-www-form-urlencoded', body: `a=${'x'.repeat(70 * 1024)}` }, { type: 'application/json', body: JSON.stringify({ a: 'y'.repeat(70 * 1024) }) }) },
  );
}

/** One change an attacker (or a broken client) makes to a request that would otherwise be valid. */
type Mutation = { op: 'drop' | 'junk' | 'dup' | 'truncate' | 'pad' | 'upper' | 'array' | 'empty'; at: number; value: string } | { op: 'add'; key: string; value: Value };

const mutationArb = (plausible: fc.Arbitrary<string>): fc.Arbitrary<Mutation> =>
  fc.oneof(
    fc.record({ op: fc.constantFrom('drop', 'junk', 'junk', 'dup', 'truncate', 'pad', 'upper', 'array', 'empty'), at: fc.nat(), value: fc.oneof(junk(true), plausible) }),
    fc.record({ op: fc.constant('add'), key: fc.oneof(fc.constantFrom(...ODD_KEYS), junk()), value: fc.oneof(junk(), plausible, fc.array(plausible, { minLength: 2, maxLength: 2 })) }),
  ) as fc.Arbitrary<Mutation>;

function mutate(entries: Entries, mutations: readonly Mutation[]): Entries {
  const result: Entries = entries.map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]);
  for (const m of mutations) {
    if (m.op === 'add') {
      result.push([m.key, m.value]);
      continue;
    }
    if (result.length === 0) continue;
    const i = m.at % result.length;
    const [key, value] = result[i]!;
    const text = Array.isArray(value) ? (value[0] ?? '') : value;
    switch (m.op) {
      case 'drop':
        result.splice(i, 1);
        break;
      case 'junk':
        result[i] = [key, m.value];
        break;
      case 'dup':
        result[i] = [key, [text, m.value.length % 2 ? text : m.value]];
        break;
      case 'truncate':
        result[i] = [key, text.slice(0, -1 - (m.value.length % 3))];
        break;
      case 'pad':
        result[i] = [key, ` ${text}\t`];
        break;
      case 'upper':
        result[i] = m.value.length % 2 ? [key.toUpperCase(), value] : [key, text.toUpperCase()];
        break;
      case 'array':
        result[i] = [key, [text]];
        break;
      case 'empty':
        result[i] = [key, ''];
        break;
    }
  }
  return result;
}

/** Valid requests (from `templates`), changed in up to three places; now and then, anything at all (from `spec`). */
function requestsArb(templates: fc.Arbitrary<Entries>, spec: Record<string, fc.Arbitrary<string>>, plausible: fc.Arbitrary<string>): fc.Arbitrary<Entries> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.tuple(templates, fc.array(mutationArb(plausible), { maxLength: 3 })).map(([entries, mutations]) => mutate(entries, mutations)) },
    { weight: 1, arbitrary: paramsArb(spec, true) },
  );
}

/** Header values as Node can send them (visible Latin-1, no line breaks). */
const headerSafe = (value: string): string => value.toWellFormed().replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');

const ODD_HEADERS = fc.dictionary(
  fc.constantFrom('accept', 'accept-encoding', 'accept-language', 'if-none-match', 'if-modified-since', 'range', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'origin', 'referer', 'user-agent', 'x-http-method-override', 'expect-ct'),
  junk().map(headerSafe),
  { maxKeys: 3 },
);

// --- sending and reading -----------------------------------------------------------------------

interface Case {
  method: string;
  path: string;
  query?: string;
  body?: Body;
  headers?: Record<string, string>;
  /** Whose session the browser carries, if any (a fresh one per request). */
  session?: 'victim' | 'developer' | null;
  /** Whether the browser carries its CSRF cookie. */
  csrfCookie?: boolean;
  /** The password reset link the browser holds in its cookie, if any (a placeholder, or junk). */
  resetCookie?: string;
  /** The email verification link the browser holds in its cookie, if any (a placeholder, or junk). */
  verifyCookie?: string;
}

function send(baseUrl: string, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Answer> {
  const all: http.OutgoingHttpHeaders = { ...headers };
  if (body !== undefined) all['content-length'] = body.length;
  return sendRaw(baseUrl, { method, path, headers: all, body });
}

const STACK_TRACE = /\n\s+at |\bat [\w$.<>]+ \(|\(?(file:\/\/)?\/[\w.-]+\/[\w./-]+:\d+:\d+|node_modules|\.ts:\d+|FST_ERR|\bTypeError\b|\bSyntaxError\b/;

// --- what is stored ------------------------------------------------------------------------------

/**
 * Every table but the audit log, through a read-only connection of its own. API keys' last-use
 * times are left out: like the audit log, they record that a valid key was presented.
 */
function observer(server: TestServer) {
  const db = new DatabaseSync(join(server.database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'audit_events' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  const statements = tables.map((table) => [table, db.prepare(`SELECT * FROM "${table}"`)] as const);
  return {
    tables,
    snapshot(): Map<string, string> {
      const result = new Map<string, string>();
      for (const [table, statement] of statements) {
        const rows = statement.all().map((row) => {
          const copy: Record<string, unknown> = { ...row };
          if (table === 'api_keys') delete copy.last_used_at;
          return JSON.stringify(copy);
        });
        result.set(table, rows.sort().join('\n'));
      }
      return result;
    },
    close: () => db.close(),
  };
}

function differences(before_: Map<string, string>, after_: Map<string, string>): string[] {
  const changed: string[] = [];
  for (const [table, rows] of after_) {
    if (before_.get(table) === rows) continue;
    const lines = (text: string | undefined) => (text ? text.split('\n') : []);
    const old = new Set(lines(before_.get(table)));
    const now = new Set(lines(rows));
    const added = [...now].filter((r) => !old.has(r));
    const removed = [...old].filter((r) => !now.has(r));
    changed.push(`${table}: +${added.length} −${removed.length} ${[...added.map((r) => `+${r.slice(0, 200)}`), ...removed.map((r) => `-${r.slice(0, 200)}`)].slice(0, 4).join(' ')}`);
  }
  return changed;
}

// --- the routes ----------------------------------------------------------------------------------

/**
 * Every method and route the app registers ("POST /token", "GET /developers/applications/:clientId"),
 * read from Fastify's own listing of its router (printRoutes, one line per route, each indented
 * under the route it extends). A line this cannot read fails the test rather than being skipped.
 */
function registeredRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const parents: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    if (line === '') continue;
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+) \(([A-Z]+(?:, [A-Z]+)*)\)$/.exec(line);
    if (!match) throw new Error(`a line of printRoutes this test cannot read: ${line}`);
    const depth = match[1]!.length / 4;
    parents.length = depth;
    const url = [...parents, match[2]!].join('');
    parents.push(match[2]!);
    for (const method of match[3]!.split(', ')) {
      assert.ok(app.hasRoute({ method: method as 'GET', url }), `printRoutes lists ${method} ${url}, which the app does not route`);
      routes.push(`${method} ${url}`);
    }
  }
  return [...new Set(routes)].sort();
}

// --- the fixture ---------------------------------------------------------------------------------

interface Client {
  id: string;
  secret: string;
}

interface Fixture {
  server: TestServer;
  issuer: string;
  victimId: string;
  developerId: string;
  /** The user whose password the fuzzed reset links reset. */
  forgetfulId: string;
  /** The SMTP server password reset links are sent through. */
  mail: TestMailServer;
  victim: { email: string; password: string };
  /** A session of the victim's that lives through the whole test (to make waiting requests). */
  victimSession: string;
  /** Its sid, which the account page's per-session Sign out of another account must never end. */
  victimSid: string;
  web: Client;
  spa: Client;
  legacy: Client;
  /** A client the victim never consents to for good: requests of its wait for consent. */
  pending: Client;
  firstParty: Client;
  machine: Client;
  resourceServer: Client;
  admin: Client;
  tokens: { userAccess: string; machineAccess: string; adminAccess: string; idToken: string; apiKey: string; projectToken: string };
  csrf: { cookie: string; token: string };
  /** The password hash of the users minted per request. */
  spareHash: string;
  /** Every method and route the app registers ("GET /admin/v1/users/:userId"). */
  routes: string[];
  /** What the server had answered before the fuzzing began (answeredRequests). */
  answeredBefore: Map<string, number>;
  /** A JWK Set of one public RSA key, as a developer pastes it for private_key_jwt. */
  jwks: string;
}

describe('property-based fuzzing of every endpoint (fast-check, SQLite)', () => {
  const f = {} as Fixture;
  let db: ReturnType<typeof observer>;
  const stats = new Map<string, Map<number, number>>();
  let unique = 0;

  before(async () => {
    f.mail = await startMailServer();
    const server = await startTestServer('sqlite', {
      env: { GATEHOUSE_SMTP_URL: f.mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' },
      // The sweep of expired rows would delete, between two snapshots, codes minted ten minutes
      // earlier: a longer run (FUZZ_RUNS) would blame that on whatever request was in flight.
      background: false,
      config: {
        implicit: { enabled: true },
        // High limits, so that the fuzzing reaches the code behind them (the limits have tests of their own).
        login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 100_000 },
        signup: { maxAccountsPerAddress: 1_000_000 },
        rateLimits: { clientAuthFailures: 1_000_000, authorizationRequestsPerAddress: 1_000_000 },
        passwordReset: { maxRequestsPerAccount: 1000, maxRequestsPerAddress: 1_000_000 },
      },
    });
    f.server = server;
    f.issuer = server.config.issuer;
    const { gatehouse } = server;
    f.victim = { email: 'victim@example.com', password: 'correct horse battery staple' };
    f.victimId = (await server.user(f.victim.email, f.victim.password)).id;
    f.developerId = (await server.user('developer@example.com', 'another long password')).id;
    // Verified: the portal creates credentials only for a verified address while mail is on, and the fuzzing is to reach the code behind that.
    await gatehouse.storage.users.update(f.developerId, { emailVerified: true }, gatehouse.clock());
    // Whose password the reset links minted per request reset: no one else's changes.
    f.forgetfulId = (await server.user('forgetful@example.com', 'a forgotten long password')).id;
    f.victimSession = (await gatehouse.sessions.start(f.victimId, gatehouse.clock(), { address: '127.0.0.1', userAgent: undefined }))!;
    f.victimSid = (await gatehouse.storage.sessions.find(digestOf(f.victimSession)))!.sid!;
    f.spareHash = await hashPassword('spare user password');
    f.jwks = JSON.stringify({ keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' }), kid: 'fuzz-key', use: 'sig', alg: 'RS256' }] });
    const scopes = ['openid', 'profile', 'email', 'objects:read', 'model:read'];
    f.web = await server.client({ name: 'Web', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK, LOOPBACK], postLogoutRedirectUris: [LOGGED_OUT] });
    f.spa = await server.client({ name: 'SPA', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK] });
    f.legacy = await server.client({ name: 'Legacy', grantTypes: ['implicit', 'authorization_code'], scopes, redirectUris: [LEGACY_CALLBACK], firstParty: true });
    f.pending = await server.client({ name: 'Waiting', grantTypes: ['authorization_code'], scopes, redirectUris: [CALLBACK] });
    f.firstParty = await server.client({ name: 'First party', grantTypes: ['password', 'refresh_token'], scopes, firstParty: true });
    f.machine = await server.client({ name: 'Machine', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read', 'bcf:read'] });
    f.resourceServer = await server.client({ name: 'API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    f.admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users', 'admin:tokens'], isAdmin: true });
    // Grants of the victim's, so that a list of them has a second page for its cursor (P.grantsCursor).
    for (let i = 0; i < 2; i++) {
      const now = gatehouse.clock();
      await gatehouse.storage.grants.create({ id: randomUUID(), clientId: f.web.id, userId: f.victimId, kind: 'authorization_code', scopes: ['openid'], authTime: now, createdAt: now, expiresAt: null, revokedAt: null });
    }

    const token = async (client: Client, params: Record<string, string>) => {
      const res = await post(`${server.url}/token`, params, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    const userTokens = await token(f.firstParty, { grant_type: 'password', username: f.victim.email, password: f.victim.password, scope: 'openid email objects:read model:read' });
    const machineToken = (await token(f.machine, { grant_type: 'client_credentials' })).access_token;
    const machineClient = (await gatehouse.storage.clients.find(f.machine.id))!;
    const project = await fetch(`${server.url}/projects/p1/access-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${machineToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }),
    });
    f.tokens = {
      userAccess: userTokens.access_token,
      machineAccess: machineToken,
      adminAccess: (await token(f.admin, { grant_type: 'client_credentials' })).access_token,
      idToken: userTokens.id_token,
      apiKey: (await gatehouse.apiKeys.create(machineClient, { name: 'fuzz key', scopes: ['model:read'] }, gatehouse.clock())).value,
      projectToken: ((await project.json()) as { access_token: string }).access_token,
    };
    assert.ok(f.tokens.idToken && f.tokens.projectToken);

    const browser = new HttpBrowser();
    const page = await browser.request(`${server.url}/login`);
    f.csrf = { cookie: browser.cookies.get('gatehouse_csrf')!, token: hiddenField(page.text, 'csrf') };
    f.routes = registeredRoutes(server.app);
    f.answeredBefore = await answeredRequests();
    db = observer(server);
  });

  after(async () => {
    db?.close();
    await f.server?.close();
    await f.mail?.close();
  });

  // --- which routes the fuzzing reached -------------------------------------------------------------

  /**
   * Requests the runner makes for itself (a CSRF token, a waiting request, a cursor, the metrics),
   * by method and route: taken off what the server counted, so that only fuzzed requests count.
   */
  const helperRequests = new Map<string, number>();
  function helperFetch(route: string, url: string, init?: RequestInit): Promise<Response> {
    helperRequests.set(route, (helperRequests.get(route) ?? 0) + 1);
    return fetch(url, init);
  }

  /**
   * Requests the server answered so far, by method and route pattern, as its latency histogram
   * counts them: not this one, which it counts once answered (so a later reading has it as a helper's).
   */
  async function answeredRequests(): Promise<Map<string, number>> {
    const text = await (await fetch(`${f.server.url}/metrics`)).text();
    helperRequests.set('GET /metrics', (helperRequests.get('GET /metrics') ?? 0) + 1);
    const counts = new Map<string, number>();
    for (const [, labels, value] of text.matchAll(/^gatehouse_http_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm)) {
      const label = (name: string) => new RegExp(`(?:^|,)${name}="([^"]*)"`).exec(labels!)?.[1];
      const key = `${label('method')} ${label('route')}`;
      counts.set(key, (counts.get(key) ?? 0) + Number(value));
    }
    return counts;
  }

  // --- credentials minted per request ---------------------------------------------------------------

  /** Values for the placeholders in `text`: each made fresh, before the request's "before" snapshot. */
  /** The CSRF token of a page shown to the browser with the fixture's CSRF cookie and `session`. */
  async function csrfTokenFor(session: string): Promise<string> {
    const page = await helperFetch('GET /login', `${f.server.url}/login`, { headers: { cookie: `gatehouse_csrf=${f.csrf.cookie}; gatehouse_session=${session}` } });
    return hiddenField(await page.text(), 'csrf');
  }

  async function mint(text: string): Promise<Map<string, string>> {
    const { gatehouse } = f.server;
    const { storage, config } = gatehouse;
    const now = gatehouse.clock();
    const values = new Map<string, string>();
    const wants = (...names: string[]) => names.some((name) => text.includes(name));
    if (wants(P.csrf)) values.set(P.csrf, f.csrf.token);
    if (wants(P.unique)) values.set(P.unique, `u${++unique}`);
    if (wants(P.refresh)) {
      const grantId = randomUUID();
      await storage.grants.create({ id: grantId, clientId: f.firstParty.id, userId: f.victimId, kind: 'password', scopes: ['openid', 'objects:read'], authTime: now, createdAt: now, expiresAt: null, revokedAt: null });
      values.set(P.refresh, await issueRefreshToken(storage, grantId, f.firstParty.id, ['openid', 'objects:read'], now, config.tokens.refreshTokenTtlSeconds));
    }
    for (const [name, client] of [[P.code, f.web], [P.spaCode, f.spa]] as const) {
      if (!wants(name)) continue;
      const code = createOpaqueToken('ac');
      await storage.codes.insert({
        digest: digestOf(code),
        clientId: client.id,
        userId: f.victimId,
        redirectUri: CALLBACK,
        redirectUriExplicit: true,
        scopes: ['openid', 'objects:read'],
        codeChallenge: CHALLENGE,
        codeChallengeMethod: 'S256',
        nonce: 'n-1',
        authTime: now,
        grantId: null,
        accessTokenJti: null,
        accessTokenExpiresAt: null,
        createdAt: now,
        expiresAt: now + 600,
        consumedAt: null,
      });
      values.set(name, code);
    }
    if (wants(P.access)) values.set(P.access, (await gatehouse.accessTokens.issue({ sub: f.victimId, clientId: f.firstParty.id, scopes: ['openid', 'email', 'objects:read'] }, now)).token);
    for (const [name, session] of [[P.pendingLogin, undefined], [P.pendingConsent, f.victimSession]] as const) {
      if (!wants(name)) continue;
      const query = new URLSearchParams({ response_type: 'code', client_id: f.pending.id, redirect_uri: CALLBACK, scope: 'openid email', state: 'waiting', prompt: 'consent' });
      // Begun by the browser whose CSRF cookie the cases carry: only it may sign in for the request and decide it.
      const cookie = [`gatehouse_csrf=${f.csrf.cookie}`, ...(session ? [`gatehouse_session=${session}`] : [])].join('; ');
      const res = await helperFetch('GET /authorize', `${f.server.url}/authorize?${query}`, { redirect: 'manual', headers: { cookie } });
      const id = new URL(res.headers.get('location')!, f.server.url).searchParams.get('request');
      assert.ok(id, `no waiting request: ${res.status} ${res.headers.get('location')}`);
      values.set(name, id);
    }
    if (wants(P.ownApp, P.ownSecret, P.ownKey)) {
      const { client } = await createClient(gatehouse, { name: 'Own app', type: 'confidential', ownerUserId: f.developerId, grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'], redirectUris: [CALLBACK] }, now);
      await addClientSecret(gatehouse, client.id, now);
      const key = await gatehouse.apiKeys.create(client, { name: 'own key', scopes: ['objects:read'] }, now);
      values.set(P.ownApp, client.id).set(P.ownSecret, (await storage.clients.listSecrets(client.id))[0]!.id).set(P.ownKey, key.key.id);
    }
    if (wants(P.spareClient, P.spareSecret, P.spareKey)) {
      const { client } = await createClient(gatehouse, { name: 'Spare', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'] }, now);
      const key = await gatehouse.apiKeys.create(client, { name: 'spare key', scopes: ['objects:read'] }, now);
      values.set(P.spareClient, client.id).set(P.spareSecret, (await storage.clients.listSecrets(client.id))[0]!.id).set(P.spareKey, key.key.id);
    }
    if (wants(P.spareUser)) {
      const id = randomUUID();
      // Stored directly (a password hash of a fixed value): hashing one per request would be slow.
      await storage.users.create({ id, email: `spare-${id}@example.com`, name: '', passwordHash: f.spareHash, emailVerified: false, disabledAt: null }, now);
      values.set(P.spareUser, id);
    }
    if (wants(P.consented)) {
      // The victim's consent to the web client, there to be withdrawn (or left alone).
      await storage.consents.save({ userId: f.victimId, clientId: f.web.id, scopes: ['openid', 'objects:read'], createdAt: now, updatedAt: now });
      values.set(P.consented, f.web.id);
    }
    for (const [name, list, query] of [[P.grantsCursor, 'grants', `user_id=${f.victimId}&limit=1`], [P.auditCursor, 'audit-events', 'kind=token.issued&limit=1']] as const) {
      if (!wants(name)) continue;
      // A cursor as the admin API hands it out, for the filters the cases ask with.
      const res = await helperFetch(`GET /admin/v1/${list}`, `${f.server.url}/admin/v1/${list}?${query}`, { headers: { authorization: `Bearer ${f.tokens.adminAccess}` } });
      const cursor = ((await res.json()) as { next_cursor: string | null }).next_cursor;
      assert.ok(cursor, `no second page of ${list}`);
      values.set(name, cursor);
    }
    if (wants(P.resetLink)) {
      const link = createOpaqueToken('pr');
      assert.ok(await storage.passwordResets.issue({ digest: digestOf(link), userId: f.forgetfulId, createdAt: now, expiresAt: now + config.passwordReset.tokenTtlSeconds }));
      values.set(P.resetLink, link);
    }
    if (wants(P.verifyLink)) {
      // A user of its own per link: one verified by an earlier request has nothing left to verify.
      const id = randomUUID();
      const email = `unverified-${id}@example.com`;
      await storage.users.create({ id, email, name: '', passwordHash: f.spareHash, emailVerified: false, disabledAt: null }, now);
      const link = createOpaqueToken('ev');
      assert.ok(await storage.emailVerifications.issue({ digest: digestOf(link), userId: id, email, createdAt: now, expiresAt: now + config.emailVerification.tokenTtlSeconds }));
      values.set(P.verifyLink, link);
    }
    if (wants(P.spareGrant)) {
      const id = randomUUID();
      await storage.grants.create({ id, clientId: f.firstParty.id, userId: f.victimId, kind: 'password', scopes: ['objects:read'], authTime: now, createdAt: now, expiresAt: null, revokedAt: null });
      values.set(P.spareGrant, id);
    }
    return values;
  }

  // --- the runner --------------------------------------------------------------------------------

  /** What an endpoint answers: RFC 6749 JSON, HTML pages, RFC 9457 problems; `head` nothing but headers; `other` what its own check says. */
  type Kind = 'json' | 'page' | 'admin' | 'head' | 'other';
  interface Endpoint {
    name: string;
    kind: Kind;
    numRuns: number;
    cases: () => fc.Arbitrary<Case>;
    /** True when this answer is a success that may change stored state; anything else must leave it as it was. */
    mayChange: (answer: Answer, c: Case) => boolean;
    /** Checks of its own. */
    check?: (answer: Answer, c: Case) => string[];
    /** What its cases need not meet: a refusal (discovery and the assets take nothing worth refusing) or a success (methods not taken). */
    never?: 'refused' | 'succeeded';
  }

  const sameOrigin = (location: string): boolean => {
    if (location.startsWith('/') && !location.startsWith('//') && !location.startsWith('/\\')) return true;
    return URL.parse(location)?.origin === f.server.url;
  };

  /** An authorization response may go to a registered redirect URI only (loopback: any port). */
  const registeredRedirect = (location: string): boolean => {
    const url = URL.parse(location);
    if (!url) return false;
    const base = `${url.origin}${url.pathname}`;
    if (base === CALLBACK || base === LEGACY_CALLBACK) return true;
    return url.protocol === 'http:' && url.hostname === '127.0.0.1' && url.pathname === '/native' && !url.username;
  };

  function checkAuthorizationResponse(location: string): string[] {
    const problems: string[] = [];
    const url = new URL(location);
    const params = url.hash ? new URLSearchParams(url.hash.slice(1)) : url.searchParams;
    if (params.getAll('iss').join() !== f.issuer) problems.push(`iss is ${JSON.stringify(params.getAll('iss'))}`);
    for (const name of ['access_token', 'id_token', 'refresh_token']) if (url.searchParams.has(name)) problems.push(`${name} in the query string`);
    if (!params.has('code') && !params.has('error') && !params.has('access_token') && !params.has('id_token')) problems.push('an authorization response without code, token or error');
    return problems;
  }

  /** A page redirects within this server, or answers the client at a registered address, with `iss`. */
  function checkPageRedirect(answer: Answer): string[] {
    const location = String(answer.headers.location ?? '');
    if (!location || sameOrigin(location)) return [];
    return registeredRedirect(location) ? checkAuthorizationResponse(location) : [`open redirect to ${location}`];
  }

  function wellFormed(endpoint: Endpoint, answer: Answer): string[] {
    const problems: string[] = [];
    const { status, headers, text } = answer;
    const type = String(headers['content-type'] ?? '');
    if (status >= 500) problems.push(`status ${status}`);
    if (STACK_TRACE.test(text)) problems.push(`looks like a stack trace: ${text.slice(0, 200)}`);
    // RFC 9110 §9.3.2: HEAD is answered as GET would be, without the content.
    if (endpoint.kind === 'head') return text === '' ? problems : [...problems, `HEAD answered with a body: ${text.slice(0, 120)}`];
    if (endpoint.kind === 'other') return problems;
    // Refused by the HTTP parser (headers too large, framing): an RFC error, or the error page when
    // the request for a page arrived whole and so shows its path (app.ts, answerClientError).
    if (status === 431 || status === 408) {
      if (endpoint.kind === 'page' && /^text\/html/.test(type)) return headers['x-frame-options'] === 'DENY' ? problems : [...problems, `parser refusal ${status} as a page without its security headers`];
      if (!/^application\/json/.test(type) || typeof JSON.parse(text).error !== 'string') problems.push(`parser refusal ${status} is not an RFC error: ${text.slice(0, 120)}`);
      return problems;
    }
    if (endpoint.kind === 'page') {
      if (status >= 300 && status < 400) {
        if (!headers.location) problems.push(`redirect ${status} without Location`);
      } else {
        if (!/^text\/html/.test(type)) problems.push(`page answered ${type} (${status}): ${text.slice(0, 120)}`);
        if (!/frame-ancestors 'none'/.test(String(headers['content-security-policy']))) problems.push('no frame-ancestors');
        if (headers['x-frame-options'] !== 'DENY') problems.push('no X-Frame-Options');
        if (headers['referrer-policy'] !== 'no-referrer') problems.push('no Referrer-Policy');
      }
      return problems;
    }
    if (status === 204 || (status === 200 && text === '')) return problems;
    if (endpoint.kind === 'admin' && status >= 400) {
      if (!/^application\/problem\+json/.test(type)) problems.push(`admin error as ${type}: ${text.slice(0, 120)}`);
    } else if (!/^application\/(json|jwk-set\+json)/.test(type)) problems.push(`answered ${type} (${status}): ${text.slice(0, 120)}`);
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      problems.push(`not JSON (${status}): ${text.slice(0, 120)}`);
      return problems;
    }
    if (status >= 400) {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) problems.push('error body is not an object');
      else if (endpoint.kind === 'admin') {
        if (typeof body.title !== 'string' || body.status !== status) problems.push(`not an RFC 9457 problem: ${text.slice(0, 160)}`);
      } else if (typeof body.error !== 'string' || body.error === '') problems.push(`no error string: ${text.slice(0, 160)}`);
      // RFC 6750 §3: a resource refusing a token says why in WWW-Authenticate.
      if (status === 401 && !headers['www-authenticate'] && ['userinfo', 'projects', 'admin API'].includes(endpoint.name)) problems.push('401 without WWW-Authenticate');
    }
    return problems;
  }

  async function fuzz(endpoint: Endpoint, seedOffset: number): Promise<void> {
    const counts = new Map<number, number>();
    stats.set(endpoint.name, counts);
    const { gatehouse } = f.server;
    await fc.assert(
      fc.asyncProperty(endpoint.cases(), async (c) => {
        const session = c.session ? await gatehouse.sessions.start(c.session === 'victim' ? f.victimId : f.developerId, gatehouse.clock(), { address: '127.0.0.1', userAgent: undefined }) : undefined;
        try {
          const minted = await mint(JSON.stringify(c));
          // A form's token is bound to the session it was shown with: the one this request carries.
          if (session && minted.has(P.csrf)) minted.set(P.csrf, await csrfTokenFor(session));
          const fill = (text: string) => {
            for (const [placeholder, value] of minted) text = text.replaceAll(placeholder, value);
            return text;
          };
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(c.headers ?? {})) headers[name] = headerSafe(fill(value));
          const cookies = [
            ...(c.csrfCookie ? [`gatehouse_csrf=${f.csrf.cookie}`] : []),
            ...(session ? [`gatehouse_session=${session}`] : []),
            ...(c.resetCookie !== undefined ? [`gatehouse_reset=${headerSafe(fill(c.resetCookie))}`] : []),
            ...(c.verifyCookie !== undefined ? [`gatehouse_verify=${headerSafe(fill(c.verifyCookie))}`] : []),
          ];
          if (cookies.length > 0) headers.cookie = cookies.join('; ');
          if (c.body?.type !== undefined) headers['content-type'] = c.body.type;
          const body = c.body === undefined ? undefined : Buffer.isBuffer(c.body.body) ? c.body.body : Buffer.from(fill(c.body.body), 'utf8');
          const path = fill(c.query === undefined ? c.path : `${c.path}?${c.query}`);

          await gatehouse.audit.flush();
          const before_ = db.snapshot();
          const answer = await send(f.server.url, c.method, path, headers, body);
          counts.set(answer.status, (counts.get(answer.status) ?? 0) + 1);
          // A reset or verification link asked for is stored and sent after the answer: counted with its request.
          await gatehouse.passwordResets.settled();
          await gatehouse.emailVerifications.settled();
          await gatehouse.audit.flush();
          const after_ = db.snapshot();

          const problems = [...wellFormed(endpoint, answer), ...(endpoint.check?.(answer, c) ?? [])];
          if (!endpoint.mayChange(answer, c)) {
            const changed = differences(before_, after_);
            if (changed.length > 0) problems.push(`a refused request (${answer.status}) changed stored state: ${changed.join('; ')}`);
          }
          const shown = `${c.method} ${path.slice(0, 300)} ${body ? `[${headers['content-type']}] ${body.toString('utf8').slice(0, 300)}` : ''}`;
          assert.deepEqual(problems, [], `${shown} → ${answer.status} ${String(answer.headers.location ?? '').slice(0, 200)} ${answer.text.slice(0, 200)}`);
        } finally {
          if (session) await gatehouse.sessions.end(session);
        }
      }),
      { seed: SEED + seedOffset, numRuns: endpoint.numRuns, endOnFailure: true },
    );
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    assert.equal(total, endpoint.numRuns, 'every run sent a request');
  }

  // --- value pools ---------------------------------------------------------------------------------

  const pick = <T,>(...values: T[]) => fc.constantFrom(...values);
  const clientIds = () => pick(f.web.id, f.spa.id, f.legacy.id, f.firstParty.id, f.machine.id, f.resourceServer.id, f.admin.id, 'app_unknown');
  const secrets = () => pick(f.web.secret, f.firstParty.secret, f.machine.secret, f.resourceServer.secret, createOpaqueToken('cs'), f.tokens.machineAccess);
  /** Values that mean something somewhere: what a mutation puts where it does not belong. */
  const plausible = () =>
    pick(
      f.web.id,
      f.spa.id,
      f.machine.id,
      f.machine.secret,
      f.web.secret,
      f.tokens.userAccess,
      f.tokens.machineAccess,
      f.tokens.idToken,
      f.tokens.apiKey,
      f.tokens.projectToken,
      P.refresh,
      P.code,
      P.csrf,
      P.pendingConsent,
      createOpaqueToken('rt'),
      createOpaqueToken('ac'),
      CALLBACK,
      LOOPBACK,
      VERIFIER,
      CHALLENGE,
      'openid',
      'objects:read objects:download',
      'admin:clients',
      f.victim.email,
      f.victim.password,
      'S256',
      'plain',
      'code',
      'token',
      'client_credentials',
      'refresh_token',
    );
  const scopesArb = () => fc.subarray(['openid', 'profile', 'email', 'objects:read', 'objects:download', 'model:read', 'admin:clients', 'offline_access', 'bogus'], { minLength: 0, maxLength: 4 }).map((list) => list.join(' '));
  const authorizationArb = () =>
    fc.oneof(
      { weight: 3, arbitrary: fc.constant(undefined) },
      { weight: 2, arbitrary: pick(basic(f.machine.id, f.machine.secret), basic(f.resourceServer.id, f.resourceServer.secret), basic(f.web.id, f.web.secret), basic(f.firstParty.id, f.firstParty.secret)) },
      { weight: 1, arbitrary: fc.tuple(junk(), junk()).map(([id, secret]) => basic(id.toWellFormed(), secret.toWellFormed())) },
      { weight: 1, arbitrary: junk().map((j) => `Basic ${Buffer.from(j).toString('base64')}`) },
      { weight: 2, arbitrary: pick(f.tokens.userAccess, f.tokens.machineAccess, f.tokens.adminAccess, f.tokens.projectToken, f.tokens.idToken, P.access).map((t) => `Bearer ${t}`) },
      { weight: 1, arbitrary: pick(`ApiKey ${f.tokens.apiKey}`, `ApiKey ${createOpaqueToken('ak')}`, `apikey  ${f.tokens.apiKey}`, `Bearer ${f.tokens.apiKey}`) },
      { weight: 1, arbitrary: junk().map((j) => `Bearer ${j}`) },
      { weight: 1, arbitrary: junk() },
    );
  /** The template's credentials mostly, any others now and then. */
  const authOf = (usual: string | undefined) => fc.oneof({ weight: 5, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: authorizationArb() });
  const withAuthorization = (authorization: string | undefined, extra: Record<string, string> = {}) => ({ ...extra, ...(authorization === undefined ? {} : { authorization }) });
  const csrfCookieArb = () => fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
  const formBody = (entries: fc.Arbitrary<Entries>) => fc.oneof({ weight: 5, arbitrary: entries.map((e): Body => ({ type: 'application/x-www-form-urlencoded', body: formEncode(e) })) }, { weight: 1, arbitrary: bodyArb(entries) });
  type Tpl = { auth?: string | undefined; entries: Entries };
  const tpl = <T = Tpl,>(...templates: T[]): fc.Arbitrary<T> => fc.constantFrom(...templates);

  // --- the endpoints -------------------------------------------------------------------------------

  const tokenSpec = () => ({
    grant_type: pick('client_credentials', 'password', 'refresh_token', 'authorization_code', EXCHANGE, 'implicit'),
    client_id: clientIds(),
    client_secret: secrets(),
    scope: scopesArb(),
    username: pick(f.victim.email, 'nobody@example.com'),
    password: pick(f.victim.password, 'wrong password!'),
    refresh_token: pick(P.refresh, createOpaqueToken('rt')),
    code: pick(P.code, createOpaqueToken('ac')),
    redirect_uri: pick(CALLBACK, LOOPBACK, 'https://evil.example/cb'),
    code_verifier: pick(VERIFIER, 'short'),
    subject_token: pick(f.tokens.userAccess, f.tokens.machineAccess, f.tokens.projectToken),
    subject_token_type: pick(ACCESS_TOKEN_TYPE),
    resource: pick('project:p1', 'https://evil.example'),
  });

  const authorizeSpec = () => ({
    response_type: pick('code', 'token', 'id_token', 'id_token token', 'code id_token', 'none'),
    client_id: clientIds(),
    redirect_uri: pick(CALLBACK, LOOPBACK, 'http://127.0.0.1:9999/native', LEGACY_CALLBACK, 'https://evil.example/cb', `${CALLBACK}/../x`),
    scope: scopesArb(),
    state: junk(),
    nonce: junk(),
    code_challenge: pick(CHALLENGE, VERIFIER, 'short'),
    code_challenge_method: pick('S256', 'plain', 's256'),
    response_mode: pick('query', 'fragment', 'form_post', 'web_message'),
    prompt: pick('none', 'login', 'consent', 'none login', 'select_account'),
    max_age: pick('0', '60', '-1', '99999999999'),
    login_hint: pick(f.victim.email, 'x'.repeat(400)),
  });

  /**
   * Each of `values` in turn, round and round, where a random pick could leave one out: for the
   * endpoints that must reach every one of a list of routes in `numRuns` runs.
   */
  const eachInTurn = <T,>(values: readonly T[], numRuns: number): fc.Arbitrary<T> => {
    assert.ok(values.length <= numRuns, `${values.length} routes to reach in ${numRuns} runs`);
    let next = 0;
    return fc.constant(null).map(() => values[next++ % values.length]!);
  };

  /** The developer portal's application in a path: the developer's own mostly, another's or junk now and then. */
  const portalApp = () => fc.oneof({ weight: 6, arbitrary: fc.constant(P.ownApp) }, { weight: 1, arbitrary: pick(f.web.id, 'app_unknown') }, { weight: 1, arbitrary: junk() });

  /** Portal requests from [method, path, fields] templates: mostly the developer's session, a form body for a POST, the query for a GET. */
  const portalCases = (routes: fc.Arbitrary<[string, string, Entries]>, spec: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<Case> =>
    fc
      .tuple(routes, fc.constantFrom<'developer' | 'victim' | null>('developer', 'developer', 'developer', 'developer', 'victim', null), csrfCookieArb())
      .chain(([[method, path, entries], session, csrfCookie]) =>
        requestsArb(fc.constant(entries), spec, plausible()).chain((params) =>
          (method === 'POST' ? formBody(fc.constant(params)) : fc.constant(undefined)).map((body): Case => ({ method, path: path.split('/').map((segment) => (segment.startsWith('PH-') ? segment : enc(segment))).join('/'), ...(method === 'POST' ? { body: body! } : { query: formEncode(params) }), session, csrfCookie })),
        ),
      );
  /**
   * Requests to the pages of a link sent by email, from [method, path, fields] templates: a form body
   * for a POST, the query for a GET, signed in as `sessions` draws, and where `cookie.sentTo` says the
   * page reads it, the link's cookie `cookie.name`: the live link mostly, none or another now and then.
   */
  const emailedLinkCases = (
    routes: fc.Arbitrary<[string, string, Entries]>,
    spec: Record<string, fc.Arbitrary<string>>,
    sessions: fc.Arbitrary<'victim' | null>,
    cookie: { name: 'resetCookie' | 'verifyCookie'; link: string; kind: 'pr' | 'ev'; sentTo: (method: string, path: string) => boolean },
  ): fc.Arbitrary<Case> => {
    const linkCookie = fc.oneof({ weight: 4, arbitrary: fc.constant<string | undefined>(cookie.link) }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.oneof(pick(createOpaqueToken(cookie.kind)), junk()) });
    return fc
      .tuple(routes, csrfCookieArb(), sessions, linkCookie)
      .chain(([[method, path, entries], csrfCookie, session, value]) =>
        requestsArb(fc.constant(entries), spec, plausible()).chain((params) =>
          (method === 'POST' ? formBody(fc.constant(params)) : fc.constant(undefined)).map(
            (body): Case => ({
              method,
              path,
              ...(method === 'POST' ? { body: body! } : { query: formEncode(params) }),
              csrfCookie,
              session,
              ...(cookie.sentTo(method, path) && value !== undefined ? { [cookie.name]: value } : {}),
            }),
          ),
        ),
      );
  };
  const portalMayChange = (answer: Answer, c: Case): boolean => c.method === 'POST' && (answer.status === 200 || (answer.status === 303 && !String(answer.headers.location).startsWith('/login')));
  const localRedirectsOnly = (answer: Answer): string[] => {
    const location = String(answer.headers.location ?? '');
    return !location || sameOrigin(location) ? [] : [`redirect to ${location}`];
  };

  /**
   * Admin API requests from [method, path, fields] templates: the admin token mostly, a JSON body
   * (now and then another) for what is not a GET, a placeholder in the path now and then junk.
   * `bodiless`: no fields is mostly no body (`{}` is refused where no body is taken).
   */
  const adminCases = (routes: fc.Arbitrary<[string, string, Entries]>, spec: Record<string, fc.Arbitrary<string>>, { bodiless = false } = {}): fc.Arbitrary<Case> =>
    fc
      .tuple(routes, fc.oneof({ weight: 8, arbitrary: fc.constant(`Bearer ${f.tokens.adminAccess}`) }, { weight: 1, arbitrary: authorizationArb() }), fc.nat(19), fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: junk() }))
      .chain(([[method, path, entries], authorization, encoding, pathJunk]) =>
        requestsArb(fc.constant(entries), spec, plausible()).map((params): Case => {
          const finalPath = `/admin/v1${pathJunk === null ? path : path.replace(/PH-[a-z]+-7f3a/, enc(pathJunk))}`;
          if (method === 'GET') return { method, path: finalPath, query: formEncode(params), headers: withAuthorization(authorization) };
          const body: Body | undefined =
            bodiless && params.length === 0 && encoding < 15 ? undefined : encoding < 15 ? { type: 'application/json', body: jsonEncode(params) } : encoding < 17 ? { type: 'application/x-www-form-urlencoded', body: formEncode(params) } : encoding < 18 ? undefined : { type: 'application/json', body: '[1,2]' };
          return { method, path: finalPath, ...(body ? { body } : {}), headers: withAuthorization(authorization) };
        }),
      );

  const endpoints: Endpoint[] = [
    {
      name: 'token',
      kind: 'json',
      numRuns: runs(200),
      cases: () => {
        const templates = tpl<Tpl>(
          { auth: basic(f.machine.id, f.machine.secret), entries: [['grant_type', 'client_credentials'], ['scope', 'objects:read model:read']] },
          { entries: [['grant_type', 'client_credentials'], ['client_id', f.machine.id], ['client_secret', f.machine.secret]] },
          { auth: basic(f.firstParty.id, f.firstParty.secret), entries: [['grant_type', 'password'], ['username', f.victim.email], ['password', f.victim.password], ['scope', 'openid objects:read']] },
          { auth: basic(f.firstParty.id, f.firstParty.secret), entries: [['grant_type', 'refresh_token'], ['refresh_token', P.refresh]] },
          { entries: [['grant_type', 'refresh_token'], ['refresh_token', P.refresh], ['client_id', f.firstParty.id], ['client_secret', f.firstParty.secret], ['scope', 'objects:read']] },
          { auth: basic(f.web.id, f.web.secret), entries: [['grant_type', 'authorization_code'], ['code', P.code], ['redirect_uri', CALLBACK], ['code_verifier', VERIFIER]] },
          { entries: [['grant_type', 'authorization_code'], ['client_id', f.spa.id], ['code', P.spaCode], ['redirect_uri', CALLBACK], ['code_verifier', VERIFIER]] },
          { auth: basic(f.machine.id, f.machine.secret), entries: [['grant_type', EXCHANGE], ['subject_token', f.tokens.machineAccess], ['subject_token_type', ACCESS_TOKEN_TYPE], ['resource', 'project:p1'], ['scope', 'model:read']] },
        );
        return fc
          .tuple(
            pick('/token', '/access_token'),
            fc.oneof({ weight: 15, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: pick('GET', 'PUT', 'DELETE', 'PATCH') }),
            templates.chain((t) => fc.tuple(authOf(t.auth), bodyArb(requestsArb(fc.constant(t.entries), tokenSpec(), plausible())))),
            ODD_HEADERS,
          )
          .map(([path, method, [authorization, body], headers]): Case => ({ method, path, ...(method === 'GET' ? {} : { body }), headers: withAuthorization(authorization, headers) }));
      },
      mayChange: (answer) => answer.status === 200,
      check: (answer) => {
        const problems = answer.headers['cache-control'] === 'no-store' || answer.status === 431 ? [] : ['token endpoint answer without Cache-Control: no-store'];
        if (answer.status === 200) {
          const body = JSON.parse(answer.text);
          if (typeof body.access_token !== 'string' || body.token_type !== 'Bearer') problems.push('a 200 without a Bearer access token');
        }
        return problems;
      },
    },
    {
      name: 'authorize',
      kind: 'page',
      numRuns: runs(200),
      cases: () => {
        const common: Entries = [['redirect_uri', CALLBACK], ['scope', 'openid objects:read'], ['state', 'st'], ['nonce', 'n']];
        const templates = tpl<Tpl>(
          { entries: [['response_type', 'code'], ['client_id', f.web.id], ...common, ['code_challenge', CHALLENGE], ['code_challenge_method', 'S256']] },
          { entries: [['response_type', 'code'], ['client_id', f.web.id], ['redirect_uri', 'http://127.0.0.1:50000/native'], ['scope', 'openid'], ['state', 'st']] },
          { entries: [['response_type', 'code'], ['client_id', f.spa.id], ...common, ['code_challenge', CHALLENGE], ['code_challenge_method', 'S256']] },
          { entries: [['response_type', 'code'], ['client_id', f.pending.id], ...common, ['prompt', 'consent']] },
          { entries: [['response_type', 'token'], ['client_id', f.legacy.id], ['redirect_uri', LEGACY_CALLBACK], ['scope', 'objects:read'], ['state', 'st']] },
          { entries: [['response_type', 'id_token token'], ['client_id', f.legacy.id], ['redirect_uri', LEGACY_CALLBACK], ['scope', 'openid email'], ['state', 'st'], ['nonce', 'n']] },
          { entries: [['response_type', 'code'], ['client_id', f.legacy.id], ['redirect_uri', LEGACY_CALLBACK], ['scope', 'openid'], ['response_mode', 'form_post'], ['state', 'st']] },
        );
        return fc
          .tuple(pick('GET', 'GET', 'POST'), requestsArb(templates.map((t) => t.entries), authorizeSpec(), plausible()), fc.constantFrom<'victim' | null>('victim', 'victim', null), csrfCookieArb(), fc.nat(9))
          .map(([method, params, session, csrfCookie, odd]): Case => {
            if (method === 'GET') return { method, path: '/authorize', query: formEncode(params), session, csrfCookie };
            // POST: the form mostly, sometimes JSON or an odd content type.
            const body: Body = odd < 7 ? { type: 'application/x-www-form-urlencoded', body: formEncode(params) } : odd < 9 ? { type: 'application/json', body: jsonEncode(params) } : { type: 'text/plain', body: formEncode(params) };
            return { method, path: '/authorize', body, session, csrfCookie };
          });
      },
      mayChange: (answer) => answer.status < 400 && !/[?&#]error=/.test(String(answer.headers.location ?? '')) && !/name="error"/.test(answer.text),
      check: (answer) => {
        const location = String(answer.headers.location ?? '');
        if (answer.status >= 300 && answer.status < 400) {
          // A POST without the session cookie comes back as the same request by GET, which carries it.
          if (answer.status === 303 && location.startsWith('/authorize?')) return [];
          if (sameOrigin(location)) return /^\/(login|consent)\?request=[A-Za-z0-9_-]{32}$/.test(location) ? [] : [`unexpected local redirect ${location}`];
          return checkPageRedirect(answer);
        }
        if (answer.status === 200 && /id="form-post"/.test(answer.text)) {
          const action = /<form method="post" action="([^"]*)"/.exec(answer.text)?.[1]?.replace(/&amp;/g, '&') ?? '';
          const problems = registeredRedirect(action) ? [] : [`form_post to ${action}`];
          if (!answer.text.includes(`name="iss" value="${f.issuer}"`)) problems.push('form_post without iss');
          return problems;
        }
        return answer.status >= 400 && location ? ['an error page that redirects'] : [];
      },
    },
    {
      name: 'login',
      kind: 'page',
      numRuns: runs(150),
      cases: () => {
        const credentials: Entries = [['csrf', P.csrf], ['email', f.victim.email], ['password', f.victim.password]];
        const templates = tpl<Entries>(credentials, [...credentials, ['request', P.pendingLogin]], [...credentials, ['next', '/developers/new']], [['request', P.pendingLogin]], [['next', '/account']]);
        const spec = { csrf: pick(P.csrf, 'x'.repeat(43)), email: pick(f.victim.email, 'nobody@example.com'), password: pick(f.victim.password, 'wrong password!'), request: pick(P.pendingLogin), next: pick('/account', '//evil.example', 'https://evil.example', '/\\evil.example') };
        return fc
          .tuple(pick('GET', 'POST', 'POST', 'POST'), requestsArb(templates, spec, plausible()), csrfCookieArb(), fc.constantFrom<'victim' | null>('victim', null, null))
          .chain(([method, params, csrfCookie, session]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case => (method === 'GET' ? { method, path: '/login', query: formEncode(params), csrfCookie, session } : { method, path: '/login', body: body!, csrfCookie, session })),
          );
      },
      mayChange: (answer, c) => c.method === 'POST' && answer.status === 303,
      check: checkPageRedirect,
    },
    {
      name: 'signup',
      kind: 'page',
      numRuns: runs(120),
      cases: () => {
        const fields: Entries = [['csrf', P.csrf], ['email', `new-${P.unique}@example.com`], ['name', 'New person'], ['password', 'a long enough password']];
        const templates = tpl<Entries>(fields, [...fields, ['request', P.pendingLogin]], [...fields, ['next', '/developers']]);
        const spec = { csrf: pick(P.csrf), email: fc.oneof(pick(f.victim.email, 'not-an-email'), fc.emailAddress()), name: junk(true), password: pick('a long enough password', 'short'), request: pick(P.pendingLogin), next: pick('//evil.example') };
        return fc
          .tuple(pick('GET', 'POST', 'POST', 'POST'), requestsArb(templates, spec, plausible()), csrfCookieArb())
          .chain(([method, params, csrfCookie]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case => (method === 'GET' ? { method, path: '/signup', query: formEncode(params), csrfCookie } : { method, path: '/signup', body: body!, csrfCookie })),
          );
      },
      mayChange: (answer, c) => c.method === 'POST' && answer.status === 303,
      check: checkPageRedirect,
    },
    {
      name: 'consent',
      kind: 'page',
      numRuns: runs(150),
      cases: () => {
        const templates = tpl<Entries>([['csrf', P.csrf], ['request', P.pendingConsent], ['decision', 'allow']], [['csrf', P.csrf], ['request', P.pendingConsent], ['decision', 'deny']], [['request', P.pendingConsent]]);
        const spec = { csrf: pick(P.csrf), request: pick(P.pendingConsent, P.pendingLogin), decision: pick('allow', 'deny', 'ALLOW') };
        return fc
          .tuple(pick('GET', 'POST', 'POST'), requestsArb(templates, spec, plausible()), csrfCookieArb(), fc.constantFrom<'victim' | 'developer' | null>('victim', 'victim', 'victim', 'developer', null))
          .chain(([method, params, csrfCookie, session]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case => (method === 'GET' ? { method, path: '/consent', query: formEncode(params), csrfCookie, session } : { method, path: '/consent', body: body!, csrfCookie, session })),
          );
      },
      // Allow and Deny are both answers the person gave: a redirect (or a form_post page) back to the client.
      mayChange: (answer, c) => c.method === 'POST' && ((answer.status >= 300 && answer.status < 400 && !sameOrigin(String(answer.headers.location))) || /id="form-post"/.test(answer.text)),
      check: checkPageRedirect,
    },
    {
      name: 'logout',
      kind: 'page',
      numRuns: runs(150),
      cases: () => {
        const templates = tpl<Entries>(
          [['id_token_hint', f.tokens.idToken], ['post_logout_redirect_uri', LOGGED_OUT], ['state', 'bye']],
          [['client_id', f.web.id], ['post_logout_redirect_uri', LOGGED_OUT], ['state', 'bye']],
          [['confirm', 'yes'], ['csrf', P.csrf], ['client_id', f.web.id], ['post_logout_redirect_uri', LOGGED_OUT], ['state', 'bye']],
          [['confirm', 'yes'], ['csrf', P.csrf]],
        );
        const spec = { id_token_hint: pick(f.tokens.idToken, f.tokens.userAccess, `${f.tokens.idToken.slice(0, -4)}AAAA`), post_logout_redirect_uri: pick(LOGGED_OUT, 'https://evil.example/bye', CALLBACK), client_id: clientIds(), state: junk(), confirm: pick('yes'), csrf: pick(P.csrf) };
        return fc
          .tuple(pick('GET', 'POST'), requestsArb(templates, spec, plausible()), csrfCookieArb(), fc.constantFrom<'victim' | 'developer' | null>('victim', 'victim', 'developer', null))
          .map(([method, params, csrfCookie, session]): Case =>
            method === 'GET' ? { method, path: '/logout', query: formEncode(params), csrfCookie, session } : { method, path: '/logout', body: { type: 'application/x-www-form-urlencoded', body: formEncode(params) }, csrfCookie, session },
          );
      },
      mayChange: (answer) => answer.status < 400,
      check: (answer) => {
        const location = String(answer.headers.location ?? '');
        if (!location || sameOrigin(location)) return [];
        const url = URL.parse(location);
        return url && `${url.origin}${url.pathname}` === LOGGED_OUT ? [] : [`sign-out redirected to ${location}`];
      },
    },
    {
      name: 'account',
      kind: 'page',
      numRuns: runs(120),
      cases: () => {
        const templates = tpl<Entries>([['csrf', P.csrf], ['client_id', P.consented]], [['csrf', P.csrf], ['client_id', f.pending.id], ['x', P.consented]], [['withdrawn', '1'], ['x', P.consented]]);
        return fc
          .tuple(pick('GET', 'POST', 'POST'), requestsArb(templates, { csrf: pick(P.csrf), client_id: pick(P.consented, f.web.id, f.pending.id), withdrawn: pick('1') }, plausible()), csrfCookieArb(), fc.constantFrom<'victim' | null>('victim', 'victim', null))
          .chain(([method, params, csrfCookie, session]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case =>
              method === 'GET' ? { method, path: '/account', query: formEncode(params), csrfCookie, session } : { method, path: '/account/applications/withdraw', body: body!, csrfCookie, session },
            ),
          );
      },
      mayChange: (answer, c) => c.method === 'POST' && answer.status === 303 && String(answer.headers.location).startsWith('/account'),
      check: (answer) => {
        const location = String(answer.headers.location ?? '');
        return !location || sameOrigin(location) ? [] : [`redirect to ${location}`];
      },
    },
    {
      name: 'userinfo',
      kind: 'json',
      numRuns: runs(120),
      cases: () =>
        fc
          .tuple(
            pick('GET', 'POST'),
            authOf(`Bearer ${P.access}`),
            bodyArb(requestsArb(tpl<Entries>([['access_token', P.access]], []), { access_token: pick(P.access, f.tokens.machineAccess, f.tokens.idToken) }, plausible())),
            fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: paramsArb({ access_token: pick(P.access) }) }),
            fc.boolean(),
          )
          .map(([method, authorization, body, query, withBody]): Case => ({
            method,
            path: '/userinfo',
            ...(query ? { query: formEncode(query) } : {}),
            ...(method === 'POST' && withBody ? { body } : {}),
            headers: withAuthorization(method === 'POST' && withBody && authorization === `Bearer ${P.access}` ? undefined : authorization),
          })),
      mayChange: () => false,
    },
    {
      name: 'introspect',
      kind: 'json',
      numRuns: runs(150),
      cases: () => {
        const token = pick(f.tokens.userAccess, f.tokens.machineAccess, f.tokens.apiKey, f.tokens.projectToken, f.tokens.idToken, P.refresh, P.access, createOpaqueToken('rt'), createOpaqueToken('ak'));
        return fc
          .tuple(
            token,
            authOf(basic(f.resourceServer.id, f.resourceServer.secret)),
            fc.option(pick('access_token', 'refresh_token', 'api_key', 'bogus'), { freq: 2 }),
          )
          .chain(([value, authorization, hint]) =>
            bodyArb(
              requestsArb(
                fc.constant<Entries>([['token', value], ...(hint ? [['token_type_hint', hint] as [string, Value]] : [])]),
                { token: token, token_type_hint: pick('access_token', 'refresh_token'), client_id: clientIds(), client_secret: secrets() },
                plausible(),
              ),
            ).map((body): Case => ({ method: 'POST', path: '/introspect', body, headers: withAuthorization(authorization) })),
          );
      },
      // Introspection reads; it never changes anything.
      mayChange: () => false,
      check: (answer) => {
        if (answer.status !== 200) return [];
        const body = JSON.parse(answer.text);
        return typeof body.active === 'boolean' ? [] : ['introspection without active'];
      },
    },
    {
      name: 'projects',
      kind: 'json',
      numRuns: runs(150),
      cases: () => {
        const inAnHour = new Date(Date.now() + 3600_000).toISOString();
        return fc
          .tuple(
            fc.oneof({ weight: 5, arbitrary: pick('p1', 'proj-42') }, { weight: 1, arbitrary: junk() }),
            authOf(`Bearer ${f.tokens.machineAccess}`).chain((a) => fc.oneof(fc.constant(a), pick(`ApiKey ${f.tokens.apiKey}`, `Bearer ${f.tokens.userAccess}`, `Bearer ${f.tokens.projectToken}`))),
            fc.oneof(
              {
                weight: 5,
                arbitrary: requestsArb(
                  tpl<Entries>([['expires_at', inAnHour], ['scopes', ['model:read']]], [['expires_at', inAnHour], ['scopes', ['model:read', 'bcf:read']]]),
                  { expires_at: pick(inAnHour, new Date(Date.now() - 3600_000).toISOString(), new Date(Date.now() + 400 * 86400_000).toISOString(), '2030-02-30T00:00:00Z'), scopes: pick('model:read', 'objects:download') },
                  plausible(),
                ).map((e): Body => ({ type: 'application/json', body: jsonEncode(e) })),
              },
              {
                weight: 1,
                arbitrary: fc
                  .record({ expires_at: fc.oneof(fc.constant(inAnHour), fc.integer(), fc.jsonValue({ maxDepth: 1 })), scopes: fc.oneof(fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }), fc.jsonValue({ maxDepth: 1 })) }, { requiredKeys: [] })
                  .map((r): Body => ({ type: 'application/json', body: JSON.stringify(r) })),
              },
              { weight: 1, arbitrary: bodyArb(paramsArb({ expires_at: pick(inAnHour), scopes: pick('model:read') })) },
            ),
          )
          .map(([project, authorization, body]): Case => ({ method: 'POST', path: `/projects/${enc(project)}/access-tokens`, body, headers: withAuthorization(authorization) }));
      },
      mayChange: () => false,
      check: (answer) => (answer.status === 201 && typeof JSON.parse(answer.text).access_token !== 'string' ? ['201 without a token'] : []),
    },
    {
      name: 'discovery',
      kind: 'json',
      numRuns: runs(120),
      cases: () =>
        fc
          .tuple(
            pick('/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks.json', '/healthz', '/readyz'),
            pick('GET', 'GET', 'GET', 'HEAD', 'OPTIONS'),
            fc.oneof(fc.constant(undefined), paramsArb({ issuer: pick('https://evil.example'), kid: junk(), format: pick('pem') }).map(formEncode), junk().map(rawQuery)),
            ODD_HEADERS,
          )
          .map(([path, method, query, headers]): Case => ({ method, path, ...(query === undefined ? {} : { query }), headers })),
      mayChange: () => false,
      never: 'refused',
      check: (answer, c) => {
        if (c.method !== 'GET' || answer.status === 431) return [];
        if (answer.status !== 200) return [`${c.path} answered ${answer.status}`];
        const body = JSON.parse(answer.text);
        if (c.path === '/jwks.json') return Array.isArray(body.keys) && body.keys.length > 0 && body.keys.every((k: Record<string, unknown>) => !('d' in k) && !('p' in k)) ? [] : ['a JWKS without keys, or with a private part'];
        if (c.path.startsWith('/.well-known')) return body.issuer === f.issuer ? [] : [`issuer ${body.issuer}`];
        return [];
      },
    },
    {
      name: 'developer portal',
      kind: 'page',
      numRuns: runs(200),
      cases: () => {
        const app = portalApp();
        const id = (own: string) => fc.oneof({ weight: 6, arbitrary: fc.constant(own) }, { weight: 1, arbitrary: junk() });
        const routes = fc.oneof(
          pick<[string, string, Entries]>(
            ['GET', '/developers', []],
            ['GET', '/developers/new', []],
            ['POST', '/developers/applications', [['csrf', P.csrf], ['name', 'Fuzzed app'], ['description', ''], ['type', 'confidential'], ['base_url', 'https://app.example'], ['redirect_uris', 'https://portal.example/cb\nhttp://127.0.0.1:3000/cb']]],
          ),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}`, [['notice', 'secret-deleted']]]),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}/api-keys`, []]),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}/delete`, []]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/secrets`, [['csrf', P.csrf]]]),
          fc.tuple(app, id(P.ownSecret)).map(([a, r]): [string, string, Entries] => ['POST', `/developers/applications/${a}/secrets/${r}/delete`, [['csrf', P.csrf]]]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/api-keys`, [['csrf', P.csrf], ['name', 'ci'], ['expires_on', '2099-01-01'], ['scopes', ['objects:read', 'model:read']]]]),
          fc.tuple(app, id(P.ownKey)).map(([a, r]): [string, string, Entries] => ['POST', `/developers/applications/${a}/api-keys/${r}/revoke`, [['csrf', P.csrf]]]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/delete`, [['csrf', P.csrf]]]),
        );
        const spec = {
          csrf: pick(P.csrf),
          name: junk(true),
          description: junk(true),
          type: pick('confidential', 'public', 'admin'),
          base_url: pick('https://app.example', 'javascript:alert(1)'),
          redirect_uris: pick('https://portal.example/cb', 'http://evil.example/cb', 'com.example.app:/cb', 'javascript:alert(1)'),
          expires_on: pick('2099-01-01', '2000-01-01', '2099-02-30'),
          scopes: pick('objects:read', 'objects:download', 'admin:clients'),
          admin: pick('on'),
          grant_types: pick('password'),
        };
        return portalCases(routes, spec);
      },
      mayChange: portalMayChange,
      check: localRedirectsOnly,
    },
    {
      name: 'admin API',
      kind: 'admin',
      numRuns: runs(200),
      cases: () => {
        const soon = new Date(Date.now() + 86400_000).toISOString();
        const routes = pick<[string, string, Entries]>(
          ['GET', '/clients', []],
          ['POST', '/clients', [['name', 'Fuzzed'], ['type', 'confidential'], ['grant_types', ['client_credentials']], ['scopes', ['objects:read']], ['redirect_uris', ['https://x.example/cb']]]],
          ['GET', `/clients/${P.spareClient}`, []],
          ['PATCH', `/clients/${P.spareClient}`, [['name', 'Renamed'], ['scopes', ['objects:read']]]],
          ['DELETE', `/clients/${P.spareClient}`, []],
          ['GET', `/clients/${P.spareClient}/secrets`, []],
          ['POST', `/clients/${P.spareClient}/secrets`, [['expires_at', soon]]],
          ['DELETE', `/clients/${P.spareClient}/secrets/${P.spareSecret}`, []],
          ['GET', `/clients/${P.spareClient}/api-keys`, []],
          ['POST', `/clients/${P.spareClient}/api-keys`, [['name', 'k'], ['scopes', ['objects:read']], ['expires_at', soon]]],
          ['DELETE', `/clients/${P.spareClient}/api-keys/${P.spareKey}`, []],
          ['GET', '/users', []],
          ['POST', '/users', [['email', `made-${P.unique}@example.com`], ['password', 'a long enough password'], ['name', 'Made']]],
          ['GET', `/users/${P.spareUser}`, []],
          ['DELETE', `/users/${P.spareUser}`, []],
          ['POST', `/users/${P.spareUser}/disable`, []],
          ['POST', `/users/${P.spareUser}/enable`, []],
          ['POST', `/users/${P.spareUser}/password`, [['password', 'another long password']]],
          ['GET', '/grants', [['user_id', f.victimId], ['limit', '5']]],
          ['POST', `/grants/${P.spareGrant}/revoke`, []],
          ['GET', '/keys', []],
          ['GET', '/audit-events', [['limit', '10'], ['kind', 'token.issued']]],
        );
        const spec = {
          name: junk(true),
          type: pick('confidential', 'public'),
          email: fc.oneof(fc.emailAddress(), junk()),
          password: pick('a long enough password', 'short'),
          expires_at: pick(soon, '2000-01-01T00:00:00Z', 'tomorrow'),
          owner_user_id: pick(f.developerId, 'nobody'),
          limit: pick('1', '0', '-1', '1000000', 'x'),
          since: pick('2020-01-01', 'x'),
        };
        return adminCases(routes, spec);
      },
      mayChange: (answer) => answer.status >= 200 && answer.status < 300,
    },
    // Last among the protocol endpoints: it revokes what it is given.
    {
      name: 'revoke',
      kind: 'json',
      numRuns: runs(150),
      cases: () => {
        const token = pick(P.refresh, P.access, f.tokens.projectToken, f.tokens.idToken, createOpaqueToken('rt'), createOpaqueToken('ak'));
        return fc
          .tuple(token, authOf(basic(f.firstParty.id, f.firstParty.secret)), fc.option(pick('access_token', 'refresh_token', 'bogus'), { freq: 2 }))
          .chain(([value, authorization, hint]) =>
            bodyArb(
              requestsArb(fc.constant<Entries>([['token', value], ...(hint ? [['token_type_hint', hint] as [string, Value]] : [])]), { token, client_id: clientIds(), client_secret: secrets() }, plausible()),
            ).map((body): Case => ({ method: 'POST', path: '/revoke', body, headers: withAuthorization(authorization) })),
          );
      },
      mayChange: (answer) => answer.status === 200,
    },
    {
      // Last, so that the endpoints before it draw the cases they drew before it came (their seed is their place).
      // The developer's own account: their sessions may all end here (never the victim's long-lived one),
      // and a right current password sets the same password again, so it stays the one the fixture knows.
      name: 'account settings',
      kind: 'page',
      numRuns: runs(120),
      cases: () => {
        const own = 'another long password';
        const templates = tpl<Entries>(
          [['csrf', P.csrf], ['current_password', own], ['new_password', own], ['confirm_password', own]],
          [['csrf', P.csrf], ['current_password', 'wrong password!'], ['new_password', own], ['confirm_password', own]],
          [['csrf', P.csrf], ['name', 'Dev Eloper']],
          [['csrf', P.csrf]],
        );
        const spec = { csrf: pick(P.csrf), current_password: pick(own, 'wrong password!'), new_password: pick(own, 'short'), confirm_password: pick(own, 'other long password'), name: junk(true) };
        return fc
          .tuple(
            pick('GET', 'POST', 'POST'),
            pick('/account/password', '/account/name', '/account/sign-out-elsewhere'),
            requestsArb(templates, spec, plausible()),
            csrfCookieArb(),
            fc.constantFrom<'developer' | null>('developer', 'developer', null),
          )
          .chain(([method, path, params, csrfCookie, session]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case =>
              method === 'GET' ? { method, path, query: formEncode(params), csrfCookie, session } : { method, path, body: body!, csrfCookie, session },
            ),
          );
      },
      mayChange: (answer, c) => c.method === 'POST' && answer.status === 303 && String(answer.headers.location).startsWith('/account?'),
      check: (answer) => {
        const location = String(answer.headers.location ?? '');
        return !location || sameOrigin(location) ? [] : [`redirect to ${location}`];
      },
    },
    {
      // The portal's forms added after the endpoint above: settings, public keys (private_key_jwt), and the pages they lead to.
      name: 'developer portal: settings and public keys',
      kind: 'page',
      numRuns: runs(100),
      cases: () => {
        const app = portalApp();
        const routes = fc.oneof(
          pick<[string, string, Entries]>(['GET', '/developers/applications', []]),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}/secrets`, []]),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}/settings`, []]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/settings`, [['csrf', P.csrf], ['name', 'Renamed app'], ['description', 'Changed'], ['base_url', 'https://app.example'], ['redirect_uris', `${CALLBACK}\nhttp://127.0.0.1:3000/cb`]]]),
          app.map((a): [string, string, Entries] => ['GET', `/developers/applications/${a}/keys`, []]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/keys`, [['csrf', P.csrf], ['jwks', f.jwks]]]),
          app.map((a): [string, string, Entries] => ['POST', `/developers/applications/${a}/keys/delete`, [['csrf', P.csrf]]]),
        );
        const privateKey = JSON.stringify({ keys: [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' })] });
        const spec = {
          csrf: pick(P.csrf),
          name: junk(true),
          description: junk(true),
          base_url: pick('https://app.example', 'javascript:alert(1)', 'http://app.example'),
          redirect_uris: pick(CALLBACK, 'http://evil.example/cb', 'com.example.app:/cb', 'javascript:alert(1)', `${CALLBACK}#frag`),
          was: junk(),
          jwks: fc.oneof(pick(f.jwks, privateKey, '{"keys":[]}', 'null', '[]', '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}'), junk(true)),
        };
        return portalCases(routes, spec);
      },
      mayChange: portalMayChange,
      check: localRedirectsOnly,
    },
    {
      // The admin API's routes added after the endpoint above: a user's changes and sign-out, key rotation, a user by email, the next pages of grants and the audit log.
      name: 'admin API: users, key rotation, filters and cursors',
      kind: 'admin',
      numRuns: runs(100),
      cases: () => {
        const routes = fc.oneof(
          {
            weight: 15,
            arbitrary: pick<[string, string, Entries]>(
              ['PATCH', `/users/${P.spareUser}`, [['name', 'Renamed'], ['email', `moved-${P.unique}@example.com`]]],
              ['POST', `/users/${P.spareUser}/sign-out`, []],
              ['GET', '/users', [['email', f.victim.email], ['limit', '5']]],
              ['GET', '/grants', [['user_id', f.victimId], ['limit', '1'], ['cursor', P.grantsCursor]]],
              ['GET', '/audit-events', [['kind', 'token.issued'], ['limit', '1'], ['cursor', P.auditCursor]]],
            ),
          },
          // Each rotation makes two key pairs (one RSA): now and then only.
          { weight: 1, arbitrary: fc.constant<[string, string, Entries]>(['POST', '/keys/rotate', []]) },
          // Withdrawing a key the instance signs with would end every token the fuzzing holds: kids it has not.
          { weight: 1, arbitrary: pick<[string, string, Entries]>(['POST', '/keys/no-such-kid/withdraw', []], ['POST', '/keys/%00/withdraw', []], ['POST', `/keys/${'k'.repeat(300)}/withdraw`, []]) },
        );
        const spec = {
          name: junk(true),
          email: fc.oneof(fc.emailAddress(), pick(f.victim.email, 'VICTIM@example.com'), junk()),
          email_verified: pick('true', 'false'),
          user_id: pick(f.victimId, f.developerId, 'nobody'),
          client_id: pick(f.firstParty.id, 'app_unknown'),
          kind: pick('token.issued', 'admin.refused', 'no.such.kind'),
          limit: pick('1', '0', '1000', '1001', 'x'),
          cursor: fc.oneof(pick(P.grantsCursor, P.auditCursor, 'nonsense', Buffer.from('1:x').toString('base64url'), Buffer.from('grants:AAAAAAAAAAA:1:\u0000').toString('base64url')), junk()),
        };
        return adminCases(routes, spec, { bodiless: true });
      },
      mayChange: (answer) => answer.status >= 200 && answer.status < 300,
    },
    {
      // RFC 9110 §15.5.6: the protocol endpoints asked with a method they do not take (the token endpoint's now and then above).
      name: 'protocol endpoints by other methods',
      kind: 'json',
      numRuns: OTHER_METHOD_RUNS,
      cases: () => {
        const refused = [
          ...['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks.json'].flatMap((path) => ['POST', 'PUT', 'DELETE', 'PATCH'].map((method) => [method, path] as const)),
          ...['/revoke', '/introspect', '/projects/p1/access-tokens'].flatMap((path) => ['GET', 'PUT', 'DELETE', 'PATCH'].map((method) => [method, path] as const)),
          ...['PUT', 'DELETE', 'PATCH'].map((method) => [method, '/userinfo'] as const),
          ...['/token', '/access_token'].flatMap((path) => ['GET', 'PUT', 'DELETE', 'PATCH'].map((method) => [method, path] as const)),
        ];
        const token = pick(P.refresh, P.access, f.tokens.apiKey);
        return fc
          .tuple(eachInTurn(refused, OTHER_METHOD_RUNS), authOf(basic(f.resourceServer.id, f.resourceServer.secret)), fc.option(bodyArb(requestsArb(fc.constant<Entries>([['token', P.refresh]]), { token, client_id: clientIds(), client_secret: secrets() }, plausible())), { freq: 3 }), ODD_HEADERS)
          .map(([[method, path], authorization, body, headers]): Case => ({ method, path, ...(body === null ? {} : { body }), headers: withAuthorization(authorization, headers) }));
      },
      mayChange: () => false,
      never: 'succeeded',
      check: (answer) => (answer.status === 405 && !answer.headers.allow ? ['405 without Allow'] : []),
    },
    {
      // What takes no parameters: the root, the stylesheet and scripts, the metrics, the admin API's documentation.
      name: 'root, static assets, metrics and documentation',
      kind: 'other',
      numRuns: runs(50),
      cases: () =>
        fc
          .tuple(
            pick('/', '/static/gatehouse.css', '/static/form-post.js', '/static/favicon.svg', '/static/portal.js', '/metrics', '/admin/v1/openapi.json', '/admin/v1/docs'),
            fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: paramsArb({ format: pick('json'), v: junk() }).map(formEncode) }, { weight: 1, arbitrary: junk().map(rawQuery) }),
            ODD_HEADERS,
            fc.constantFrom<'victim' | null>('victim', null),
          )
          .map(([path, query, headers, session]): Case => ({ method: 'GET', path, ...(query === undefined ? {} : { query }), headers, session })),
      mayChange: () => false,
      never: 'refused',
      check: (answer, c) => {
        const { status, headers } = answer;
        const type = String(headers['content-type'] ?? '');
        if (status === 431) return [];
        if (c.path === '/') return status === 302 && headers.location === '/account' ? [] : [`/ answered ${status} ${String(headers.location)}`];
        // The admin API refuses a query parameter an operation does not take, with a problem; the
        // pages refuse a NUL anywhere in the request, with the readable page (nul.ts).
        if (status === 400) return (c.path.startsWith('/admin/') ? /^application\/problem\+json/ : /^text\/html/).test(type) ? [] : [`a refusal as ${type}`];
        if (status !== 200 && status !== 304) return [`${c.path} answered ${status}`];
        const expected = { css: /^text\/css/, js: /^(text|application)\/javascript/, svg: /^image\/svg\+xml/, metrics: /^text\/plain/, json: /^application\/json/, docs: /^text\/html/ }[c.path.split(/[./]/).at(-1)!];
        return status === 304 || expected?.test(type) ? [] : [`${c.path} answered ${type}`];
      },
    },
    {
      // RFC 9110 §9.3.2: every route that answers GET answers HEAD too (Fastify derives it), without
      // the content and without changing anything; made from the routes the app registers, so a GET
      // route added later is fuzzed here at once.
      name: 'HEAD of every GET route',
      kind: 'head',
      numRuns: HEAD_RUNS,
      cases: () => {
        const developers = (url: string) => url.startsWith('/developers');
        const valueFor = (url: string, name: string): string => {
          const value = url.startsWith('/admin/') ? { clientId: P.spareClient, userId: P.spareUser, grantId: P.spareGrant }[name] : developers(url) ? { clientId: P.ownApp }[name] : { projectId: 'p1' }[name];
          if (value === undefined) throw new Error(`no value for :${name} in ${url}: teach the HEAD fuzzing one`);
          return value;
        };
        const paths = f.routes.filter((route) => route.startsWith('GET ')).map((route) => route.slice(4)).map((url) => ({ url, path: url.replace(/:(\w+)/g, (_, name: string) => valueFor(url, name)) }));
        return fc
          .tuple(
            eachInTurn(paths, HEAD_RUNS),
            fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: paramsArb({ limit: pick('1', 'x'), notice: pick('updated'), request: junk(), client_id: clientIds() }).map(formEncode) }),
            fc.boolean(),
            fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: authorizationArb() }),
          )
          .map(([{ url, path }, query, signedIn, authorization]): Case => ({
            method: 'HEAD',
            path,
            ...(query === undefined ? {} : { query }),
            headers: withAuthorization(url.startsWith('/admin/') && authorization === undefined ? `Bearer ${f.tokens.adminAccess}` : authorization),
            session: signedIn ? (developers(url) ? 'developer' : 'victim') : null,
            csrfCookie: true,
          }));
      },
      mayChange: () => false,
    },
    {
      // Added after the endpoint above, so that the endpoints before it draw the cases they drew.
      name: 'password reset by email',
      kind: 'page',
      numRuns: runs(120),
      cases: () => {
        const routes = pick<[string, string, Entries]>(
          ['GET', '/password/forgot', []],
          ['POST', '/password/forgot', [['csrf', P.csrf], ['email', 'forgetful@example.com']]],
          ['GET', '/password/sent', []],
          ['GET', '/password/reset', [['token', P.resetLink]]],
          ['GET', '/password/reset', []],
          ['POST', '/password/reset', [['csrf', P.csrf], ['new_password', 'a new long password'], ['confirm_password', 'a new long password']]],
        );
        const spec = {
          csrf: pick(P.csrf, 'x'.repeat(43)),
          email: fc.oneof(pick('forgetful@example.com', 'FORGETFUL@example.com', f.victim.email, 'nobody@example.com', 'not-an-email'), fc.emailAddress(), junk(true)),
          token: fc.oneof(pick(P.resetLink, createOpaqueToken('pr'), createOpaqueToken('ss')), junk()),
          new_password: pick('a new long password', 'short', ''),
          confirm_password: pick('a new long password', 'another long password'),
        };
        return emailedLinkCases(routes, spec, fc.constantFrom<'victim' | null>('victim', null, null), {
          name: 'resetCookie',
          link: P.resetLink,
          kind: 'pr',
          sentTo: (_, path) => path === '/password/reset',
        });
      },
      // A link asked for is stored (303 to "Check your email"); a password set with one (303 to sign in).
      mayChange: (answer, c) => c.method === 'POST' && (c.path === '/password/forgot' || c.path === '/password/reset') && answer.status === 303,
      check: localRedirectsOnly,
    },
    {
      // Added last, so that the endpoints before it draw the cases they drew.
      name: 'email verification',
      kind: 'page',
      numRuns: runs(100),
      cases: () => {
        const routes = pick<[string, string, Entries]>(
          ['GET', '/email/verify', [['token', P.verifyLink]]],
          ['GET', '/email/verify', []],
          ['POST', '/email/verify', [['csrf', P.csrf]]],
          ['POST', '/email/resend', [['csrf', P.csrf]]],
        );
        const spec = {
          csrf: pick(P.csrf, 'x'.repeat(43)),
          token: fc.oneof(pick(P.verifyLink, createOpaqueToken('ev'), createOpaqueToken('pr')), junk()),
        };
        return emailedLinkCases(routes, spec, fc.constantFrom<'victim' | null>('victim', 'victim', null), {
          name: 'verifyCookie',
          link: P.verifyLink,
          kind: 'ev',
          sentTo: (_, path) => path === '/email/verify',
        });
      },
      // A link sent again is stored (303 to the account page); an address verified with one, confirmed (200). Following a link changes nothing.
      mayChange: (answer, c) => c.method === 'POST' && ((c.path === '/email/resend' && answer.status === 303) || (c.path === '/email/verify' && answer.status === 200)),
      check: localRedirectsOnly,
    },
    {
      // Added last, so that the endpoints before it draw the cases they drew. The developer signs out
      // one browser: the victim's session (another account's), a sid of nobody's, junk — each refused
      // with nothing ended, the victim's long-lived session above all.
      name: 'account page: signing out one browser',
      kind: 'page',
      numRuns: runs(60),
      cases: () => {
        const templates = tpl<Entries>([['csrf', P.csrf], ['session', 'victim']], [['csrf', P.csrf], ['session', 'nobody']], [['csrf', P.csrf]]);
        const spec = { csrf: pick(P.csrf, 'x'.repeat(43)), session: fc.oneof(pick('victim', 'nobody', randomBytes(16).toString('hex')), junk(true)) };
        return fc
          .tuple(pick('GET', 'POST', 'POST'), requestsArb(templates, spec, plausible()), csrfCookieArb(), fc.constantFrom<'developer' | null>('developer', 'developer', null))
          .chain(([method, params, csrfCookie, session]) => {
            const named = params.map(([name, value]): [string, Value] => [name, name === 'session' && value === 'victim' ? f.victimSid : name === 'session' && value === 'nobody' ? '0123456789abcdef0123456789abcdef' : value]);
            return (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(named))).map((body): Case =>
              method === 'GET' ? { method, path: '/account/sessions/sign-out', query: formEncode(named), csrfCookie, session } : { method, path: '/account/sessions/sign-out', body: body!, csrfCookie, session },
            );
          });
      },
      mayChange: () => false,
      check: (answer) => {
        const location = String(answer.headers.location ?? '');
        return (!location || sameOrigin(location) ? [] : [`redirect to ${location}`]).concat(answer.status === 303 && location.startsWith('/account?') ? ['a browser was signed out'] : []);
      },
    },
    {
      // Added last, as the one above. The developer's account: deleting it or changing its address,
      // with a wrong password only (and no link of an email change in hand), so each is refused and
      // nothing changes: the account, its address, its sessions and applications stay.
      name: 'account page: deletion and email change',
      kind: 'page',
      numRuns: runs(80),
      cases: () => {
        const templates = tpl<Entries>(
          [['csrf', P.csrf], ['password', 'wrong password!'], ['confirm', 'delete']],
          [['csrf', P.csrf], ['password', 'wrong password!']],
          [['csrf', P.csrf], ['email', 'new-address@example.com'], ['current_password', 'wrong password!']],
          [['csrf', P.csrf], ['token', 'link']],
          [['csrf', P.csrf]],
        );
        const spec = {
          csrf: pick(P.csrf, 'x'.repeat(43)),
          password: fc.oneof(pick('wrong password!', ''), junk(true)),
          current_password: fc.oneof(pick('wrong password!', ''), junk(true)),
          confirm: fc.oneof(pick('delete', 'on', ''), junk(true)),
          email: fc.oneof(pick('new-address@example.com', f.victim.email, 'NEW-ADDRESS@example.com', 'not-an-email'), fc.emailAddress(), junk(true)),
          token: fc.oneof(pick(createOpaqueToken('ec'), createOpaqueToken('ev')), junk()),
        };
        return fc
          .tuple(
            pick('GET', 'POST', 'POST'),
            pick('/account/delete', '/account/email', '/email/change'),
            requestsArb(templates, spec, plausible()),
            csrfCookieArb(),
            fc.constantFrom<'developer' | null>('developer', 'developer', null),
          )
          .chain(([method, path, params, csrfCookie, session]) =>
            (method === 'GET' ? fc.constant(undefined) : formBody(fc.constant(params))).map((body): Case =>
              method === 'GET' ? { method, path, query: formEncode(params), csrfCookie, session } : { method, path, body: body!, csrfCookie, session },
            ),
          );
      },
      mayChange: () => false,
      check: localRedirectsOnly,
    },
    {
      // Added last, as the one above. An operator reads a user's sessions and ends one: never one of
      // the fixture's (another user's sid, a sid of nobody's, junk), so each end is refused and
      // nothing changes, the victim's long-lived session above all.
      name: "admin API: a user's sessions",
      kind: 'admin',
      numRuns: runs(40),
      cases: () => {
        const routes = pick<[string, string, Entries]>(
          ['GET', `/users/${f.victimId}/sessions`, []],
          ['GET', '/users/nobody/sessions', []],
          ['DELETE', `/users/${f.developerId}/sessions/${f.victimSid}`, []],
          ['DELETE', `/users/${P.spareUser}/sessions/0123456789abcdef0123456789abcdef`, []],
          ['DELETE', `/users/${f.victimId}/sessions/${'s'.repeat(300)}`, []],
        );
        return adminCases(routes, { limit: pick('1', 'x') }, { bodiless: true });
      },
      mayChange: () => false,
    },
    {
      // Added last, as the one above. The CORS preflights browser apps send before calling a protocol
      // endpoint, each OPTIONS route the app registers in turn, from the routes it lists.
      name: 'CORS preflights of the protocol endpoints',
      kind: 'other',
      numRuns: runs(40),
      cases: () => {
        const paths = f.routes.filter((route) => route.startsWith('OPTIONS ')).map((route) => route.slice(8).replace(/:projectId/, 'p1'));
        return fc
          .tuple(eachInTurn(paths, runs(40)), fc.boolean(), pick('POST', 'GET', 'DELETE'), ODD_HEADERS)
          .map(([path, cross, requested, headers]): Case => ({
            method: 'OPTIONS',
            path,
            headers: cross ? { ...headers, origin: 'https://spa.example', 'access-control-request-method': requested, 'access-control-request-headers': 'authorization, content-type' } : headers,
          }));
      },
      mayChange: () => false,
      never: 'refused',
      check: (answer, c) => {
        if (answer.status === 431) return [];
        if (answer.status !== 204) return [`${c.path} answered ${answer.status}`];
        return c.headers?.origin === 'https://spa.example' && answer.headers['access-control-allow-origin'] !== '*' ? [`${c.path}: a preflight without Access-Control-Allow-Origin`] : [];
      },
    },
  ];

  for (const [i, endpoint] of endpoints.entries()) {
    it(`${endpoint.name}: never a 5xx, always a well-formed answer, and a refused request changes nothing stored`, async (t) => {
      await fuzz(endpoint, i);
      const counts = stats.get(endpoint.name)!;
      t.diagnostic(`${endpoint.numRuns} runs: ${[...counts].sort(([a], [b]) => a - b).map(([s, n]) => `${n}×${s}`).join(', ')}`);
      // The fuzzing reached past the first checks: successes as well as refusals (but where `never` says otherwise).
      if (endpoint.never !== 'succeeded') assert.ok([...counts.keys()].some((s) => s < 400), `${endpoint.name}: no request succeeded`);
      if (endpoint.never !== 'refused') assert.ok([...counts.keys()].some((s) => s >= 400), `${endpoint.name}: no request was refused`);
    });
  }

  /**
   * Routes with nothing to fuzz, each with the reason. Every other method and route the app
   * registers must have been reached by the fuzzing above, as the server counted its requests.
   */
  const NOT_FUZZED: Record<string, string> = {};

  it('fuzzed every method of every route the app registers', async () => {
    const helpers = new Map(helperRequests);
    const answered = await answeredRequests();
    const fuzzed = (route: string) => (answered.get(route) ?? 0) - (f.answeredBefore.get(route) ?? 0) - (helpers.get(route) ?? 0) > 0;
    assert.deepEqual(f.routes.filter((route) => !fuzzed(route) && !Object.hasOwn(NOT_FUZZED, route)), [], 'routes no fuzzed request reached');
    assert.deepEqual(Object.keys(NOT_FUZZED).filter((route) => !f.routes.includes(route)), [], 'exclusions of routes the app no longer has');
    assert.ok(f.routes.length > 50, `only ${f.routes.length} routes read`);
  });

  it('let no request pollute Object.prototype', () => {
    const builtIn = ['constructor', '__defineGetter__', '__defineSetter__', 'hasOwnProperty', '__lookupGetter__', '__lookupSetter__', 'isPrototypeOf', 'propertyIsEnumerable', 'toString', 'valueOf', '__proto__', 'toLocaleString'];
    assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).filter((name) => !builtIn.includes(name)), []);
  });

  it('still serves the fixture’s users and clients normally afterwards', async () => {
    const res = await post(`${f.server.url}/token`, { grant_type: 'password', username: f.victim.email, password: f.victim.password }, { headers: { authorization: basic(f.firstParty.id, f.firstParty.secret) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const cc = await post(`${f.server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(f.machine.id, f.machine.secret) } });
    assert.equal(cc.status, 200);
  });
});
