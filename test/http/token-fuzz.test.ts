import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { createOpaqueToken } from '../../src/core/tokens/opaque.ts';
import { DIALECTS } from '../support/databases.ts';
import { sendRaw, type RawAnswer as Answer } from '../support/raw-http.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { HOSTILE_STRINGS, SQL_INJECTIONS } from '../support/hostile-strings.ts';

/*
 * Issue 2, "Done when": hundreds of malformed requests to the token endpoint over real HTTP. None
 * gets a 5xx; each gets an RFC 6749 §5.2 JSON error with `Cache-Control: no-store`, without a stack
 * trace or an echoed secret; nothing stored changes (every table but the audit log is compared
 * before and after, through a connection of its own); and the one valid refresh token that every
 * fuzz request could have touched still works afterwards.
 */

const RFC_ERRORS = ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope', 'invalid_target'];
const ALLOWED_STATUSES = [400, 401, 405, 413];
const BODY_LIMIT = 64 * 1024;

// --- what is sent -------------------------------------------------------------------------------

interface Expectation {
  status?: number;
  /** The RFC error code, or the codes one of which is acceptable. */
  error?: string | readonly string[];
}

interface FuzzCase {
  name: string;
  method?: string;
  path?: string;
  headers: Record<string, string | string[]>;
  body?: Buffer;
  /** Values that must not come back in the response. */
  secrets: string[];
  expect?: Expectation;
}

interface Options {
  auth?: string;
  headers?: Record<string, string | string[]>;
  path?: string;
  expect?: Expectation;
  secrets?: string[];
}

type Params = Record<string, unknown> | [string, string][];

// Lone surrogates cannot be percent-encoded; they go as U+FFFD, as a browser would send them.
const enc = (value: string): string => encodeURIComponent(value.toWellFormed());
const basicOf = (id: string, secret: string): string => basic(id.toWellFormed(), secret.toWellFormed());
const formEncode = (params: Params): string =>
  (Array.isArray(params) ? params : Object.entries(params).map(([k, v]) => [k, String(v)] as [string, string])).map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');

/** The values of parameters that carry secrets, for the no-echo check. */
function secretsIn(params: Params | unknown): string[] {
  const entries: [string, unknown][] = Array.isArray(params)
    ? (params as unknown[]).filter((p): p is [string, unknown] => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string')
    : params !== null && typeof params === 'object'
      ? Object.entries(params)
      : [];
  return entries.filter(([k, v]) => ['client_secret', 'password', 'refresh_token'].includes(k) && typeof v === 'string').map(([, v]) => v as string);
}

function secretOfBasic(header: string | undefined): string[] {
  if (!header || !/^basic /i.test(header)) return [];
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return [];
  const raw = decoded.slice(colon + 1);
  let plain = raw;
  try {
    plain = decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    // kept raw
  }
  return [raw, plain];
}

function make(name: string, contentType: string | undefined, body: string | Buffer | undefined, options: Options, paramSecrets: string[]): FuzzCase {
  const headers: Record<string, string | string[]> = {};
  if (contentType !== undefined) headers['content-type'] = contentType;
  if (options.auth !== undefined) headers.authorization = options.auth;
  Object.assign(headers, options.headers);
  return {
    name,
    ...(options.path ? { path: options.path } : {}),
    headers,
    ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8') }),
    secrets: [...paramSecrets, ...secretOfBasic(options.auth), ...(options.secrets ?? [])],
    ...(options.expect ? { expect: options.expect } : {}),
  };
}

const form = (name: string, params: Params, options: Options = {}): FuzzCase =>
  make(name, 'application/x-www-form-urlencoded', formEncode(params), options, secretsIn(params));
const json = (name: string, value: unknown, options: Options = {}): FuzzCase => make(name, 'application/json', JSON.stringify(value), options, secretsIn(value));
const raw = (name: string, contentType: string | undefined, body: string | Buffer | undefined, options: Options = {}): FuzzCase =>
  make(name, contentType, body, options, options.secrets ?? []);

// Basic credentials exactly as given (no form-encoding), for malformed ones.
const basicRaw = (decoded: string | Buffer): string => `Basic ${Buffer.from(decoded).toString('base64')}`;

// --- a deterministic PRNG (mulberry32) ----------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(length: number): Buffer {
    const buffer = Buffer.alloc(length);
    for (let i = 0; i < length; i++) buffer[i] = this.int(256);
    return buffer;
  }
  string(length: number, alphabet: string): string {
    const chars = [...alphabet];
    let out = '';
    for (let i = 0; i < length; i++) out += this.pick(chars);
    return out;
  }
}


const GRANTS = ['client_credentials', 'password', 'refresh_token'];
const JUNK_GRANTS = [
  'implicit',
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  'urn:ietf:params:oauth:grant-type:device_code',
  'CLIENT_CREDENTIALS',
  'Password',
  ' client_credentials',
  'client_credentials ',
  'client credentials',
  'refresh-token',
  '__proto__',
  'constructor',
  'hasOwnProperty',
  'toString',
  '*',
  'x'.repeat(500),
];

// --- the server side: one instance per dialect ---------------------------------------------------

interface Fixture {
  server: TestServer;
  cc: { id: string; secret: string };
  admin: { id: string; secret: string };
  pw: { id: string; secret: string };
  other: { id: string; secret: string };
  pub: { id: string; secret: string };
  user: { email: string; password: string };
  refreshToken: string;
}

function send(baseUrl: string, fuzz: FuzzCase): Promise<Answer> {
  const headers: http.OutgoingHttpHeaders = { ...fuzz.headers };
  if (fuzz.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length' || h.toLowerCase() === 'transfer-encoding')) {
    headers['content-length'] = fuzz.body.length;
  }
  return sendRaw(baseUrl, { method: fuzz.method ?? 'POST', path: fuzz.path ?? '/token', headers, body: fuzz.body });
}

const STACK_TRACE = /\n\s+at |\bat [\w$.<>]+ \(|\(?(file:\/\/)?\/[\w.-]+\/[\w./-]+:\d+:\d+|node_modules|\.ts:\d+|\bError: /;

/** Every rule a response to a malformed token request must satisfy; returns the ones it broke. */
function problemsOf(fuzz: FuzzCase, response: Answer, knownSecrets: readonly string[]): string[] {
  const problems: string[] = [];
  const { status, headers, text } = response;
  if (status >= 500) problems.push(`status ${status}`);
  else if (!ALLOWED_STATUSES.includes(status)) problems.push(`status ${status} is not one of ${ALLOWED_STATUSES.join(', ')}`);
  if (!/^application\/json\b/.test(headers['content-type'] ?? '')) problems.push(`content-type ${headers['content-type']}`);
  if (headers['cache-control'] !== 'no-store') problems.push(`cache-control ${headers['cache-control']}`);
  if (headers['set-cookie'] !== undefined) problems.push('a cookie was set');
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    problems.push(`body is not JSON: ${text.slice(0, 120)}`);
  }
  if (body !== undefined) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) problems.push('body is not a JSON object');
    else {
      if (typeof body.error !== 'string' || !RFC_ERRORS.includes(body.error)) problems.push(`error ${JSON.stringify(body.error)} is not an RFC 6749 §5.2 code`);
      if (typeof body.error_description !== 'string' || body.error_description === '') problems.push('no error_description string');
      if ('access_token' in body || 'refresh_token' in body) problems.push('a token was issued');
      if (body.error === 'invalid_client') {
        if (status !== 401) problems.push(`invalid_client with status ${status}`);
        const authorization = [fuzz.headers.authorization ?? []].flat()[0];
        if (authorization !== undefined && authorization.trim() !== '' && !headers['www-authenticate']) problems.push('invalid_client over the Authorization header without WWW-Authenticate');
      }
    }
  }
  if (STACK_TRACE.test(text)) problems.push(`body looks like a stack trace: ${text.slice(0, 200)}`);
  for (const secret of new Set([...knownSecrets, ...fuzz.secrets])) {
    if (secret.length >= 8 && text.includes(secret)) problems.push(`body echoes the secret ${secret.slice(0, 12)}…`);
  }
  const { expect } = fuzz;
  if (expect?.status !== undefined && status !== expect.status) problems.push(`expected status ${expect.status}, got ${status}`);
  if (expect?.error !== undefined) {
    const wanted = [expect.error].flat();
    if (!wanted.includes(body?.error)) problems.push(`expected ${wanted.join(' or ')}, got ${body?.error}`);
  }
  return problems;
}

// --- the handcrafted adversarial cases ------------------------------------------------------------

function adversarialCases(f: Fixture): FuzzCase[] {
  const { cc, admin, pw, other, pub, user, refreshToken: rt } = f;
  const cases: FuzzCase[] = [];
  const add = (...more: FuzzCase[]) => cases.push(...more);
  const ccCreds = { client_id: cc.id, client_secret: cc.secret };
  const pwCreds = { client_id: pw.id, client_secret: pw.secret };
  const wrongSecret = createOpaqueToken('cs'); // well formed, checksum right, belongs to nobody
  const flip = (value: string, at: number) => value.slice(0, at) + (value[at] === 'A' ? 'B' : 'A') + value.slice(at + 1);
  const badChecksum = flip(rt, rt.length - 1);
  const wrongPrefix = rt.replace('gate_rt_', 'gate_ac_');
  const unknownRt = createOpaqueToken('rt');
  const invalidRequest = { status: 400, error: 'invalid_request' } as const;
  const invalidClient = { status: 401, error: 'invalid_client' } as const;
  const invalidGrant = { status: 400, error: 'invalid_grant' } as const;
  const invalidScope = { status: 400, error: 'invalid_scope' } as const;
  const unauthorized = { status: 400, error: 'unauthorized_client' } as const;
  const unsupported = { status: 400, error: 'unsupported_grant_type' } as const;
  // Refused as a content type, or read and then refused at client authentication: never a token.
  const EITHER_CLIENT: Expectation = { error: ['invalid_request', 'invalid_client'] };

  // Missing and empty parameters.
  add(
    raw('empty form body', 'application/x-www-form-urlencoded', '', { expect: invalidRequest }),
    raw('empty JSON body', 'application/json', '', { expect: invalidRequest }),
    raw('no content type, no body', undefined, undefined, { expect: invalidRequest }),
    json('empty JSON object', {}, { expect: invalidRequest }),
    form('only separators', [['', '']], { expect: invalidRequest }),
    raw('&&&&', 'application/x-www-form-urlencoded', '&&&&', { expect: invalidRequest }),
    raw('=&=&=', 'application/x-www-form-urlencoded', '=&=&=', { expect: invalidRequest }),
    form('empty grant_type', { grant_type: '', ...ccCreds }, { expect: invalidRequest }),
    form('no grant_type', ccCreds, { expect: invalidRequest }),
    raw('grant_type without "="', 'application/x-www-form-urlencoded', `grant_type&client_id=${cc.id}&client_secret=${cc.secret}`, { expect: invalidRequest, secrets: [cc.secret] }),
    form('client_credentials without client authentication', { grant_type: 'client_credentials' }, { expect: invalidClient }),
    form('client_credentials with client_id only', { grant_type: 'client_credentials', client_id: cc.id }, { expect: invalidClient }),
    form('client_credentials with an empty client_id', { grant_type: 'client_credentials', client_id: '', client_secret: cc.secret }, { expect: invalidClient }),
    form('client_credentials with an empty client_secret', { grant_type: 'client_credentials', client_id: cc.id, client_secret: '' }, { expect: invalidClient }),
    json('client_credentials with a secret and no client_id', { grant_type: 'client_credentials', client_secret: cc.secret }, { expect: invalidClient }),
    form('password without username', { grant_type: 'password', ...pwCreds, password: user.password }, { expect: invalidRequest }),
    form('password without password', { grant_type: 'password', ...pwCreds, username: user.email }, { expect: invalidRequest }),
    json('password with empty username', { grant_type: 'password', ...pwCreds, username: '', password: user.password }, { expect: invalidRequest }),
    json('password with empty password', { grant_type: 'password', ...pwCreds, username: user.email, password: '' }, { expect: invalidRequest }),
    form('refresh_token without refresh_token', { grant_type: 'refresh_token', ...pwCreds }, { expect: invalidRequest }),
    json('refresh_token with an empty refresh_token', { grant_type: 'refresh_token', ...pwCreds, refresh_token: '' }, { expect: invalidRequest }),
    form('client credentials in the query string only', [], { path: `/token?grant_type=client_credentials&client_id=${cc.id}&client_secret=${wrongSecret}`, expect: invalidRequest }),
  );

  // Duplicated parameters (RFC 6749 §3.2).
  for (const [name, value] of [
    ['grant_type', 'client_credentials'],
    ['client_id', cc.id],
    ['client_secret', cc.secret],
    ['scope', 'objects:read'],
  ] as const) {
    const params: [string, string][] = [['grant_type', 'client_credentials'], ['client_id', cc.id], ['client_secret', cc.secret], ['scope', 'objects:read']];
    add(form(`duplicated ${name} with the same value`, [...params, [name, value]], { expect: invalidRequest }));
    add(form(`duplicated ${name}, the second empty`, [...params, [name, '']], { expect: invalidRequest }));
  }
  add(
    form('duplicated grant_type with different values', [['grant_type', 'password'], ['grant_type', 'client_credentials'], ['client_id', cc.id], ['client_secret', cc.secret]], { expect: invalidRequest }),
    form('duplicated refresh_token', [['grant_type', 'refresh_token'], ['client_id', pw.id], ['client_secret', pw.secret], ['refresh_token', rt], ['refresh_token', rt]], { expect: invalidRequest }),
    form('duplicated username', [['grant_type', 'password'], ['client_id', pw.id], ['client_secret', pw.secret], ['username', user.email], ['username', user.email], ['password', user.password]], { expect: invalidRequest }),
    form('duplicated password', [['grant_type', 'password'], ['client_id', pw.id], ['client_secret', pw.secret], ['username', user.email], ['password', user.password], ['password', user.password]], { expect: invalidRequest }),
    json('a parameter as an array (JSON)', { grant_type: ['client_credentials'], ...ccCreds }, { expect: invalidRequest }),
    json('client_secret as an array of two (JSON)', { grant_type: 'client_credentials', client_id: cc.id, client_secret: [cc.secret, cc.secret] }, { expect: invalidRequest, secrets: [cc.secret] }),
    json('refresh_token as an array (JSON)', { grant_type: 'refresh_token', ...pwCreds, refresh_token: [rt] }, { expect: invalidRequest, secrets: [rt] }),
    // RFC 6749 §3.2: repeated, whichever copy is right.
    raw('duplicated JSON keys, the last one wrong', 'application/json', `{"grant_type":"client_credentials","client_id":"${cc.id}","client_secret":"${cc.secret}","client_secret":"${wrongSecret}"}`, {
      expect: invalidRequest,
      secrets: [cc.secret, wrongSecret],
    }),
    raw('duplicated JSON keys, the first one wrong', 'application/json', `{"grant_type":"client_credentials","client_id":"${cc.id}","client_secret":"${wrongSecret}","client_secret":"${cc.secret}"}`, {
      expect: invalidRequest,
      secrets: [cc.secret, wrongSecret],
    }),
  );

  // Huge values, many parameters, bodies at and over the limit.
  const huge = (n: number) => 'A'.repeat(n);
  add(
    form('grant_type of 8193 characters', { grant_type: huge(8193), ...ccCreds }, { expect: invalidRequest }),
    form('unknown grant_type of 8000 characters', { grant_type: huge(8000), ...ccCreds }, { expect: unsupported }),
    form('client_id of 300 characters', { grant_type: 'client_credentials', client_id: huge(300), client_secret: cc.secret }, { expect: invalidClient }),
    form('client_id of 8192 characters', { grant_type: 'client_credentials', client_id: huge(8192), client_secret: cc.secret }, { expect: invalidClient }),
    form('client_id of 8193 characters', { grant_type: 'client_credentials', client_id: huge(8193), client_secret: cc.secret }, { expect: invalidRequest }),
    form('client_secret of 8000 characters', { grant_type: 'client_credentials', client_id: cc.id, client_secret: huge(8000) }, { expect: invalidClient }),
    form('client_secret of 20000 characters', { grant_type: 'client_credentials', client_id: cc.id, client_secret: huge(20000) }, { expect: invalidRequest }),
    form('scope of 5000 characters', { grant_type: 'client_credentials', ...ccCreds, scope: huge(5000) }, { expect: invalidScope }),
    form('scope of 400 scope tokens', { grant_type: 'client_credentials', ...ccCreds, scope: Array(400).fill('objects:read').join(' ') }, { expect: invalidScope }),
    form('scope of 2000 scope tokens', { grant_type: 'client_credentials', ...ccCreds, scope: Array(2000).fill('objects:read').join(' ') }, { expect: invalidRequest }),
    form('username of 10000 characters', { grant_type: 'password', ...pwCreds, username: `${huge(10000)}@example.com`, password: 'irrelevant-password' }, { expect: invalidRequest }),
    form('username of 400 characters', { grant_type: 'password', ...pwCreds, username: `${huge(388)}@example.com`, password: 'irrelevant-password' }, { expect: invalidGrant }),
    form('password of 8192 characters', { grant_type: 'password', ...pwCreds, username: user.email, password: huge(8192) }, { expect: invalidGrant }),
    form('refresh_token of 8000 characters', { grant_type: 'refresh_token', ...pwCreds, refresh_token: `gate_rt_${huge(7992)}` }, { expect: invalidGrant }),
    raw('5000 junk parameters', 'application/x-www-form-urlencoded', Array.from({ length: 5000 }, (_, i) => `p${i}=${i}`).join('&'), { expect: invalidRequest }),
    raw('60 KiB in one junk parameter, with bad credentials', 'application/x-www-form-urlencoded', `grant_type=client_credentials&client_id=${cc.id}&client_secret=${wrongSecret}&junk=${huge(60 * 1024)}`, {
      expect: invalidClient,
    }),
    raw('body of 64 KiB + 1 byte', 'application/x-www-form-urlencoded', `grant_type=client_credentials&client_id=${cc.id}&client_secret=${cc.secret}&junk=`.padEnd(BODY_LIMIT + 1, 'A'), {
      expect: { status: 413, error: 'invalid_request' },
      secrets: [cc.secret],
    }),
    raw('body of 1 MiB', 'application/x-www-form-urlencoded', Buffer.alloc(1024 * 1024, 'a'), { expect: { status: 413, error: 'invalid_request' } }),
    raw('JSON body of 100 KiB', 'application/json', JSON.stringify({ grant_type: 'client_credentials', junk: huge(100 * 1024) }), { expect: { status: 413, error: 'invalid_request' } }),
    raw('text body of 70 KiB', 'text/plain', huge(70 * 1024), { expect: { status: 413, error: 'invalid_request' } }),
    raw('JSON nested 20000 levels deep', 'application/json', `${'['.repeat(20000)}${']'.repeat(20000)}`, { expect: invalidRequest }),
    raw('JSON objects nested 5000 levels deep', 'application/json', `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`, { expect: invalidRequest }),
  );

  // Unknown grant types, and grants a client is not allowed.
  // A grant the server supports but this client was not registered for.
  add(form('authorization_code for a client-credentials client', { grant_type: 'authorization_code', code: 'x', ...ccCreds }, { expect: { status: 400, error: 'unauthorized_client' } }));
  add(form('token exchange for a client-credentials client', { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: 'x', ...ccCreds }, { expect: { status: 400, error: 'unauthorized_client' } }));
  for (const grantType of JUNK_GRANTS) add(form(`unsupported grant_type ${JSON.stringify(grantType.slice(0, 40))}`, { grant_type: grantType, ...ccCreds }, { expect: unsupported }));
  add(
    json('unsupported grant_type with a NUL byte', { grant_type: 'client_credentials\u0000', ...ccCreds }, { expect: { status: 400, error: ['invalid_request', 'unsupported_grant_type'] } }),
    form('client_credentials by the password client', { grant_type: 'client_credentials', ...pwCreds }, { expect: unauthorized }),
    form('password by the client-credentials client', { grant_type: 'password', ...ccCreds, username: user.email, password: user.password }, { expect: unauthorized }),
    form('refresh_token by the client-credentials client', { grant_type: 'refresh_token', ...ccCreds, refresh_token: rt }, { expect: unauthorized }),
    form('password by the admin client', { grant_type: 'password', client_id: admin.id, client_secret: admin.secret, username: user.email, password: user.password }, { expect: unauthorized }),
    form('client_credentials by the public client', { grant_type: 'client_credentials', client_id: pub.id }, { expect: unauthorized }),
    form('password by the public client', { grant_type: 'password', client_id: pub.id, username: user.email, password: user.password }, { expect: unauthorized }),
  );

  // Wrong credentials and wrong fields for every grant.
  add(
    form('client_credentials with a wrong well-formed secret', { grant_type: 'client_credentials', client_id: cc.id, client_secret: wrongSecret }, { expect: invalidClient }),
    form('client_credentials with a broken secret checksum', { grant_type: 'client_credentials', client_id: cc.id, client_secret: flip(cc.secret, cc.secret.length - 2) }, { expect: invalidClient }),
    form('client_credentials with the secret of another client', { grant_type: 'client_credentials', client_id: cc.id, client_secret: admin.secret }, { expect: invalidClient }),
    form('client_credentials with the secret in upper case', { grant_type: 'client_credentials', client_id: cc.id, client_secret: cc.secret.toUpperCase() }, { expect: invalidClient }),
    form('client_credentials with the secret and a trailing space', { grant_type: 'client_credentials', client_id: cc.id, client_secret: `${cc.secret} ` }, { expect: invalidClient }),
    form('client_credentials with the client id in upper case', { grant_type: 'client_credentials', client_id: cc.id.toUpperCase(), client_secret: cc.secret }, { expect: invalidClient }),
    form('client_credentials for an unknown client', { grant_type: 'client_credentials', client_id: 'app_000000000000000000000000', client_secret: cc.secret }, { expect: invalidClient }),
    form('client_credentials asking a user-only scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objects:download' }, { expect: invalidScope }),
    form('client_credentials asking an admin scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'admin:clients' }, { expect: invalidScope }),
    form('client_credentials asking an unknown scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objects:read everything' }, { expect: invalidScope }),
    form('client_credentials with a double space in scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objects:read  model:read' }, { expect: invalidScope }),
    form('client_credentials with a quoted scope', { grant_type: 'client_credentials', ...ccCreds, scope: '"objects:read"' }, { expect: invalidScope }),
    form('client_credentials with a backslash scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objects\\read' }, { expect: invalidScope }),
    form('client_credentials with a tab in scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objects:read\tmodel:read' }, { expect: invalidScope }),
    form('client_credentials with a unicode scope', { grant_type: 'client_credentials', ...ccCreds, scope: 'objécts:read' }, { expect: invalidScope }),
    form('client_credentials with a scope in SQL', { grant_type: 'client_credentials', ...ccCreds, scope: "objects:read';DROP_TABLE_users;--" }, { expect: invalidScope }),
    form('client_credentials with scope __proto__', { grant_type: 'client_credentials', ...ccCreds, scope: '__proto__ constructor toString' }, { expect: invalidScope }),
    form('admin client asking a non-admin scope', { grant_type: 'client_credentials', client_id: admin.id, client_secret: admin.secret, scope: 'objects:read' }, { expect: invalidScope }),
    form('password with a wrong password', { grant_type: 'password', ...pwCreds, username: user.email, password: 'wrong password, long enough' }, { expect: invalidGrant }),
    form('password for an unknown user', { grant_type: 'password', ...pwCreds, username: 'nobody@example.com', password: user.password }, { expect: invalidGrant }),
    form('password with the user password and a wrong client secret', { grant_type: 'password', client_id: pw.id, client_secret: wrongSecret, username: user.email, password: user.password }, { expect: invalidClient }),
    form('password with the user password and no client secret', { grant_type: 'password', client_id: pw.id, username: user.email, password: user.password }, { expect: invalidClient }),
    form('password with the user password and an admin scope', { grant_type: 'password', ...pwCreds, username: user.email, password: user.password, scope: 'admin:users' }, { expect: invalidScope }),
    form('password with the user password and an unknown scope', { grant_type: 'password', ...pwCreds, username: user.email, password: user.password, scope: 'root' }, { expect: invalidScope }),
    form('password with the username padded', { grant_type: 'password', ...pwCreds, username: ` ${user.email} x`, password: user.password }, { expect: invalidGrant }),
    form('password with the password in upper case', { grant_type: 'password', ...pwCreds, username: user.email, password: user.password.toUpperCase() }, { expect: invalidGrant }),
    form('password with the password and a trailing NUL', { grant_type: 'password', ...pwCreds, username: user.email, password: `${user.password}\u0000` }, { expect: { status: 400, error: ['invalid_request', 'invalid_grant'] } }),
    json('password with the username as a number', { grant_type: 'password', ...pwCreds, username: 42, password: user.password }, { expect: invalidRequest }),
    json('password with the password as true', { grant_type: 'password', ...pwCreds, username: user.email, password: true }, { expect: invalidRequest }),
    json('password with a MongoDB-style operator', { grant_type: 'password', ...pwCreds, username: user.email, password: { $ne: null } }, { expect: invalidRequest }),
    form('refresh_token with a broken checksum', { grant_type: 'refresh_token', ...pwCreds, refresh_token: badChecksum }, { expect: invalidGrant }),
    form('refresh_token with the wrong prefix', { grant_type: 'refresh_token', ...pwCreds, refresh_token: wrongPrefix }, { expect: invalidGrant }),
    form('refresh_token with the client-secret prefix', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt.replace('gate_rt_', 'gate_cs_') }, { expect: invalidGrant }),
    form('refresh_token truncated by one', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt.slice(0, -1) }, { expect: invalidGrant }),
    form('refresh_token with one character more', { grant_type: 'refresh_token', ...pwCreds, refresh_token: `${rt}A` }, { expect: invalidGrant }),
    form('refresh_token in upper case', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt.toUpperCase() }, { expect: invalidGrant }),
    form('refresh_token with spaces around it', { grant_type: 'refresh_token', ...pwCreds, refresh_token: ` ${rt} ` }, { expect: invalidGrant }),
    form('refresh_token well formed but unknown', { grant_type: 'refresh_token', ...pwCreds, refresh_token: unknownRt }, { expect: invalidGrant }),
    form('refresh_token that is a client secret', { grant_type: 'refresh_token', ...pwCreds, refresh_token: pw.secret }, { expect: invalidGrant }),
    form('refresh_token with SQL', { grant_type: 'refresh_token', ...pwCreds, refresh_token: "gate_rt_' OR 1=1 --" }, { expect: invalidGrant }),
    form('valid refresh_token presented by another client', { grant_type: 'refresh_token', client_id: other.id, client_secret: other.secret, refresh_token: rt }, { expect: invalidGrant }),
    json('valid refresh_token presented by another client (JSON, /access_token)', { grant_type: 'refresh_token', client_id: other.id, client_secret: other.secret, refresh_token: rt }, { path: '/access_token', expect: invalidGrant }),
    form('valid refresh_token presented by another client over Basic', { grant_type: 'refresh_token', refresh_token: rt }, { auth: basic(other.id, other.secret), expect: invalidGrant }),
    form('valid refresh_token presented by the public client', { grant_type: 'refresh_token', client_id: pub.id, refresh_token: rt }, { expect: invalidGrant }),
    form('valid refresh_token with a wrong client secret', { grant_type: 'refresh_token', client_id: pw.id, client_secret: wrongSecret, refresh_token: rt }, { expect: invalidClient }),
    form('valid refresh_token without client authentication', { grant_type: 'refresh_token', refresh_token: rt }, { expect: invalidClient }),
    form('valid refresh_token asking a wider scope', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt, scope: 'objects:read model:read' }, { expect: invalidScope }),
    form('valid refresh_token asking an admin scope', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt, scope: 'admin:tokens' }, { expect: invalidScope }),
    form('valid refresh_token with a malformed scope', { grant_type: 'refresh_token', ...pwCreds, refresh_token: rt, scope: ' objects:read' }, { expect: invalidScope }),
    form('valid refresh_token under grant_type password', { grant_type: 'password', ...pwCreds, refresh_token: rt }, { expect: invalidRequest }),
    form('valid refresh_token under an unknown grant type', { grant_type: 'refresh', ...pwCreds, refresh_token: rt }, { expect: unsupported }),
    json('valid refresh_token as an object', { grant_type: 'refresh_token', ...pwCreds, refresh_token: { token: rt } }, { expect: invalidRequest, secrets: [rt] }),
    form('valid refresh_token with the client secret twice', [['grant_type', 'refresh_token'], ['client_id', pw.id], ['client_secret', pw.secret], ['client_secret', pw.secret], ['refresh_token', rt]], { expect: invalidRequest }),
  );

  // Invalid UTF-8 and percent-encoding, NUL bytes, CRLF.
  const ccTail = `client_id=${cc.id}&client_secret=${wrongSecret}`;
  for (const [label, value] of [
    ['%ZZ', '%ZZ'],
    ['lone %', '%'],
    ['truncated %4', '%4'],
    ['overlong %C0%AF', '%C0%AF'],
    ['overlong %E0%80%AF', '%E0%80%AF'],
    ['overlong NUL %C0%80', '%C0%80'],
    ['surrogate %ED%A0%80', '%ED%A0%80'],
    ['%FF%FE', '%FF%FE'],
    ['encoded NUL %00', '%00'],
    ['encoded CRLF', '%0D%0ASet-Cookie:%20pwned=1'],
    ['%u0041 (not a form encoding)', '%u0041'],
    ['double-encoded %2525', '%2525'],
  ] as const) {
    add(raw(`grant_type ${label}`, 'application/x-www-form-urlencoded', `grant_type=${value}&${ccTail}`, { expect: { status: 400 } }));
    // A malformed escape, or one that is not UTF-8, is refused as it is parsed: no client is looked up.
    const wellEncoded = ['%00', '%0D%0ASet-Cookie:%20pwned=1', '%2525'].includes(value);
    add(raw(`client_id ${label}`, 'application/x-www-form-urlencoded', `grant_type=client_credentials&client_id=${value}&client_secret=${wrongSecret}`, { expect: value === '%00' || !wellEncoded ? invalidRequest : invalidClient }));
  }
  add(
    raw('grant_type client%00_credentials', 'application/x-www-form-urlencoded', `grant_type=client%00_credentials&${ccTail}`, { expect: { status: 400 } }),
    raw('NUL byte in the client_id with a valid secret', 'application/x-www-form-urlencoded', `grant_type=client_credentials&client_id=${cc.id}%00&client_secret=${cc.secret}`, {
      expect: { error: ['invalid_request', 'invalid_client'] },
      secrets: [cc.secret],
    }),
    json('NUL byte as the client_id (JSON)', { grant_type: 'client_credentials', client_id: '\u0000', client_secret: cc.secret }, { expect: { error: ['invalid_request', 'invalid_client'] } }),
    json('NUL byte inside the username', { grant_type: 'password', ...pwCreds, username: `ada\u0000@example.com`, password: 'irrelevant-password' }, { expect: { error: ['invalid_request', 'invalid_grant'] } }),
    json('lone surrogate client_id (JSON)', { grant_type: 'client_credentials', client_id: '\ud800', client_secret: wrongSecret }, { expect: invalidClient }),
    json('lone surrogate username (JSON)', { grant_type: 'password', ...pwCreds, username: '\udfff@example.com', password: 'irrelevant-password' }, { expect: invalidGrant }),
    raw('percent-encoded key grant%5Ftype with a wrong secret', 'application/x-www-form-urlencoded', `grant%5Ftype=client_credentials&${ccTail}`, { expect: invalidClient }),
    raw('encoded "=" inside the key', 'application/x-www-form-urlencoded', `grant_type%3Dclient_credentials&${ccTail}`, { expect: invalidRequest }),
    raw('";" as the separator', 'application/x-www-form-urlencoded', `grant_type=client_credentials;client_id=${cc.id};client_secret=${cc.secret}`, { expect: unsupported, secrets: [cc.secret] }),
    raw('"+" inside the client id', 'application/x-www-form-urlencoded', `grant_type=client_credentials&client_id=${cc.id}+&client_secret=${cc.secret}`, { expect: invalidClient, secrets: [cc.secret] }),
    raw('raw invalid UTF-8 bytes in a form body', 'application/x-www-form-urlencoded', Buffer.concat([Buffer.from('grant_type='), Buffer.from([0xff, 0xfe, 0xc0, 0xaf, 0xed, 0xa0, 0x80]), Buffer.from(`&${ccTail}`)]), {
      expect: unsupported,
    }),
    raw('raw invalid UTF-8 bytes in a JSON string', 'application/json', Buffer.concat([Buffer.from('{"grant_type":"'), Buffer.from([0xc0, 0xaf, 0xff]), Buffer.from('"}')]), { expect: { status: 400 } }),
    raw('UTF-8 BOM before a form body', 'application/x-www-form-urlencoded', `\ufeffgrant_type=client_credentials&${ccTail}`, { expect: invalidRequest }),
    raw('UTF-8 BOM before a JSON body', 'application/json', `\ufeff{"grant_type":"client_credentials","client_id":"${cc.id}","client_secret":"${wrongSecret}"}`, { expect: { error: ['invalid_request', 'invalid_client'] } }),
    raw('raw NUL bytes in a form body', 'application/x-www-form-urlencoded', `grant_type=client_credentials\u0000&client_id=${cc.id}\u0000&client_secret=x`, { expect: { status: 400 } }),
    raw('raw CRLF in a form body', 'application/x-www-form-urlencoded', `grant_type=client_credentials\r\nSet-Cookie: pwned=1\r\n&${ccTail}`, { expect: unsupported }),
    raw('UTF-16 body labelled as JSON', 'application/json', Buffer.from(`{"grant_type":"client_credentials","client_id":"${cc.id}"}`, 'utf16le'), { expect: invalidRequest }),
  );

  // SQL injection.
  for (const injection of SQL_INJECTIONS) {
    add(form(`client_id ${injection}`, { grant_type: 'client_credentials', client_id: injection, client_secret: cc.secret }, { expect: invalidClient }));
    add(form(`username ${injection}`, { grant_type: 'password', ...pwCreds, username: injection, password: injection }, { expect: invalidGrant }));
    add(form(`Basic client id ${injection}`, { grant_type: 'client_credentials' }, { auth: basic(injection, cc.secret), expect: invalidClient }));
  }
  add(
    json('client_secret in SQL', { grant_type: 'client_credentials', client_id: cc.id, client_secret: "' OR '1'='1" }, { expect: invalidClient }),
    json('username in SQL with a wildcard', { grant_type: 'password', ...pwCreds, username: '%@example.com', password: user.password }, { expect: invalidGrant }),
    json('username LIKE-wildcard _', { grant_type: 'password', ...pwCreds, username: '___@example.com', password: user.password }, { expect: invalidGrant }),
  );

  // Prototype pollution through form and JSON bodies.
  add(
    raw('form __proto__[grant_type]', 'application/x-www-form-urlencoded', `__proto__[grant_type]=client_credentials&${ccTail}`, { expect: invalidRequest }),
    raw('form __proto__=x', 'application/x-www-form-urlencoded', `__proto__=x&grant_type=client_credentials&${ccTail}`, { expect: invalidClient }),
    raw('form __proto__ as grant_type source', 'application/x-www-form-urlencoded', `__proto__=grant_type&${ccTail}`, { expect: invalidRequest }),
    raw('form constructor[prototype][polluted]', 'application/x-www-form-urlencoded', `constructor[prototype][polluted]=1&grant_type=client_credentials&${ccTail}`, { expect: invalidClient }),
    raw('form constructor.prototype.polluted', 'application/x-www-form-urlencoded', `constructor.prototype.polluted=1&grant_type=password&${ccTail}`, { expect: invalidClient }),
    raw('form hasOwnProperty=1', 'application/x-www-form-urlencoded', `hasOwnProperty=1&grant_type=client_credentials&${ccTail}`, { expect: invalidClient }),
    raw('JSON __proto__ carrying grant_type', 'application/json', `{"__proto__":{"grant_type":"client_credentials"},"client_id":"${cc.id}","client_secret":"${cc.secret}"}`, { expect: invalidRequest, secrets: [cc.secret] }),
    raw('JSON __proto__ carrying polluted', 'application/json', '{"__proto__":{"polluted":"yes"},"grant_type":"client_credentials"}', { expect: invalidRequest }),
    raw('JSON constructor.prototype', 'application/json', '{"constructor":{"prototype":{"polluted":"yes"}},"grant_type":"client_credentials"}', { expect: invalidRequest }),
    raw('JSON nested __proto__', 'application/json', `{"grant_type":"client_credentials","client_id":{"__proto__":{"polluted":1}}}`, { expect: invalidRequest }),
    json('JSON key "constructor" as a string', { constructor: 'x', grant_type: 'client_credentials', client_id: cc.id, client_secret: wrongSecret }, { expect: { error: ['invalid_request', 'invalid_client'] } }),
    json('JSON key "toString"', { toString: 'x', grant_type: 'client_credentials', client_id: cc.id, client_secret: wrongSecret }, { expect: invalidClient }),
  );

  // JSON bodies that are not an object of strings.
  add(
    raw('JSON array', 'application/json', '[]', { expect: invalidRequest }),
    raw('JSON array holding the parameters', 'application/json', JSON.stringify([{ grant_type: 'client_credentials', ...ccCreds }]), { expect: invalidRequest, secrets: [cc.secret] }),
    raw('JSON string', 'application/json', '"client_credentials"', { expect: invalidRequest }),
    raw('JSON number', 'application/json', '42', { expect: invalidRequest }),
    raw('JSON huge number', 'application/json', '1e99999', { expect: invalidRequest }),
    raw('JSON null', 'application/json', 'null', { expect: invalidRequest }),
    raw('JSON true', 'application/json', 'true', { expect: invalidRequest }),
    json('grant_type as a number', { grant_type: 1, ...ccCreds }, { expect: invalidRequest }),
    json('grant_type as null', { grant_type: null, ...ccCreds }, { expect: invalidRequest }),
    json('grant_type as an object', { grant_type: { type: 'client_credentials' }, ...ccCreds }, { expect: invalidRequest }),
    json('client_id as a number', { grant_type: 'client_credentials', client_id: 123, client_secret: cc.secret }, { expect: invalidRequest }),
    json('client_secret as true', { grant_type: 'client_credentials', client_id: cc.id, client_secret: true }, { expect: invalidRequest }),
    json('client_secret as an object', { grant_type: 'client_credentials', client_id: cc.id, client_secret: { value: cc.secret } }, { expect: invalidRequest, secrets: [cc.secret] }),
    json('scope as an array', { grant_type: 'client_credentials', ...ccCreds, scope: ['objects:read'] }, { expect: invalidRequest }),
    json('scope as a number', { grant_type: 'client_credentials', ...ccCreds, scope: 0 }, { expect: invalidRequest }),
    json('username as null', { grant_type: 'password', ...pwCreds, username: null, password: user.password }, { expect: invalidRequest }),
    json('an unknown parameter as a deep object', { grant_type: 'client_credentials', client_id: cc.id, client_secret: wrongSecret, extra: { a: { b: { c: [1, 2, { d: null }] } } } }, { expect: invalidClient }),
  );

  // Malformed JSON.
  for (const [label, text] of [
    ['an open brace', '{'],
    ['a missing value', '{"grant_type":}'],
    ['single quotes', "{'grant_type':'client_credentials'}"],
    ['a trailing comma', '{"grant_type":"client_credentials",}'],
    ['NaN', '{"grant_type":NaN}'],
    ['two documents', '{"grant_type":"password"}{"grant_type":"client_credentials"}'],
    ['a comment', '{"grant_type":"client_credentials" /* hi */}'],
    ['an unterminated string', '{"grant_type":"client_credentials'],
    ['a bad escape', '{"grant_type":"\\x41"}'],
    ['a raw control character', '{"grant_type":"client\u0001credentials"}'],
    ['unquoted keys', '{grant_type:"client_credentials"}'],
    ['form text', `grant_type=client_credentials&${ccTail}`],
  ] as const) {
    add(raw(`malformed JSON: ${label}`, 'application/json', text, { expect: invalidRequest }));
  }

  // Wrong, missing and odd content types.
  const ccForm = formEncode({ grant_type: 'client_credentials', client_id: cc.id, client_secret: cc.secret });
  const ccJson = JSON.stringify({ grant_type: 'client_credentials', client_id: cc.id, client_secret: cc.secret });
  for (const contentType of [
    'text/plain',
    'text/plain; charset=utf-8',
    'multipart/form-data; boundary=xyz',
    'multipart/form-data',
    'application/xml',
    'text/xml',
    'application/octet-stream',
    'application/x-www-form-urlencodedx',
    'application/jsonx',
    'application/json-patch+json',
    'text/json',
    '*/*',
    'application/*',
    'application',
    ';;;',
    'x'.repeat(1000),
  ]) {
    add(raw(`content type ${contentType.slice(0, 40)}`, contentType, ccForm, { expect: invalidRequest, secrets: [cc.secret] }));
  }
  add(
    raw('no content type with a form body', undefined, ccForm, { expect: invalidRequest, secrets: [cc.secret] }),
    raw('empty content type with a form body', '', ccForm, { expect: invalidRequest, secrets: [cc.secret] }),
    raw('JSON body labelled as a form', 'application/x-www-form-urlencoded', ccJson, { expect: { status: 400 }, secrets: [cc.secret] }),
    raw('form body labelled as JSON', 'application/json', ccForm, { expect: invalidRequest, secrets: [cc.secret] }),
    raw('a real multipart body', 'multipart/form-data; boundary=XX', `--XX\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nclient_credentials\r\n--XX--\r\n`, { expect: invalidRequest }),
    raw('an XML body', 'application/xml', '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><grant_type>&e;</grant_type>', { expect: invalidRequest }),
    raw('form with charset=utf-16 and bad credentials', 'application/x-www-form-urlencoded; charset=utf-16', `grant_type=client_credentials&${ccTail}`, { expect: EITHER_CLIENT }),
    raw('form with charset=iso-8859-1 and bad credentials', 'application/x-www-form-urlencoded; charset=iso-8859-1', `grant_type=client_credentials&${ccTail}`, { expect: EITHER_CLIENT }),
    raw('form with a broken charset parameter', 'application/x-www-form-urlencoded; charset="', `grant_type=client_credentials&${ccTail}`, { expect: EITHER_CLIENT }),
    raw('form with junk parameters in the content type', 'application/x-www-form-urlencoded;;a=b;c', `grant_type=client_credentials&${ccTail}`, { expect: EITHER_CLIENT }),
    raw('JSON with charset=latin1 and no grant type', 'application/json; charset=latin1', '{"client_id":"x"}', { expect: { status: 400 } }),
    raw('JSON with charset=utf-16le and UTF-16 bytes', 'application/json; charset=utf-16le', Buffer.from('{"grant_type":"client_credentials"}', 'utf16le'), { expect: { status: 400 } }),
    raw('JSON in upper-case content type, bad credentials', 'APPLICATION/JSON', JSON.stringify({ grant_type: 'client_credentials', client_id: cc.id, client_secret: wrongSecret }), { expect: { status: 401 } }),
    raw('two content types', 'application/json, application/x-www-form-urlencoded', ccForm, { expect: invalidRequest, secrets: [cc.secret] }),
    raw('content-type header twice', undefined, ccForm, { headers: { 'content-type': ['text/plain', 'application/x-www-form-urlencoded'] }, expect: { status: 400 }, secrets: [cc.secret] }),
  );

  // Malformed Authorization headers.
  const ccBody = { grant_type: 'client_credentials' };
  for (const [label, header, expect] of [
    ['non-base64 Basic', 'Basic !!!not-base64!!!', invalidClient],
    ['base64url Basic', `Basic ${Buffer.from(`${cc.id}:${cc.secret}`).toString('base64url')}_-`, invalidClient],
    ['Basic without a colon', basicRaw(cc.id + cc.secret), invalidClient],
    ['Basic with an empty id', basicRaw(`:${cc.secret}`), invalidClient],
    ['Basic with an empty secret', basicRaw(`${cc.id}:`), invalidClient],
    ['Basic with both parts empty', basicRaw(':'), invalidClient],
    ['Basic with nothing after the scheme', 'Basic', invalidClient],
    ['Basic with padding only', 'Basic ====', invalidClient],
    ['Basic with bad percent-encoding', basicRaw(`%ZZ:${cc.secret}`), invalidClient],
    ['Basic with a percent-encoded NUL', basicRaw(`%00:${cc.secret}`), { error: ['invalid_client', 'invalid_request'] }],
    ['Basic with a raw NUL in the id', basicRaw(`${cc.id}\u0000:${cc.secret}`), { error: ['invalid_client', 'invalid_request'] }],
    ['Basic with a NUL id', basicRaw(`\u0000:x`), { error: ['invalid_client', 'invalid_request'] }],
    ['Basic with invalid UTF-8', basicRaw(Buffer.from([0xc0, 0xaf, 0x3a, 0xff, 0xfe])), invalidClient],
    ['Basic with unicode credentials', basicRaw('ĉĝ😀:ŝŭ'), invalidClient],
    ['Basic with raw unicode (latin1 bytes)', Buffer.from('Basic café:naïve', 'utf8').toString('latin1'), invalidClient],
    ['Basic with an extra colon', basicRaw(`${cc.id}:${cc.secret}:extra`), invalidClient],
    ['Basic with spaces inside the base64', `Basic ${basicRaw(`${cc.id}:${cc.secret}`).slice(6, 20)} ${basicRaw(`${cc.id}:${cc.secret}`).slice(20)}`, invalidClient],
    ['Basic of 14 KiB', `Basic ${'QUFB'.repeat(3500)}`, invalidClient],
    ['Basic of 14 KiB with a colon', basicRaw(`${'a'.repeat(5000)}:${'b'.repeat(5000)}`), invalidClient],
    ['Bearer with the refresh token', `Bearer ${rt}`, invalidClient],
    ['Bearer with junk', 'Bearer abc.def.ghi', invalidClient],
    ['Digest', 'Digest username="x", realm="y"', invalidClient],
    ['ApiKey', 'ApiKey gate_ak_x', invalidClient],
    ['an unknown scheme', 'Negotiate YII=', invalidClient],
    ['only spaces in the credentials', 'Basic      ', invalidClient],
    ['a scheme without a space', `Basic:${cc.secret}`, invalidClient],
    ['lower-case basic with a wrong secret', `basic ${Buffer.from(`${cc.id}:${wrongSecret}`).toString('base64')}`, invalidClient],
    ['BASIC with SQL', basicRaw("' OR 1=1 --:' OR 1=1 --"), invalidClient],
    ['Basic with CRLF inside the decoded id', basicRaw(`a\r\nSet-Cookie: x=1:${cc.secret}`), invalidClient],
    ['Basic with the public client and a secret', basic(pub.id, wrongSecret), invalidClient],
    // An empty password presents no secret, as an empty client_secret in the body: the public client asks for client_credentials.
    ['Basic with the public client and an empty secret', basic(pub.id, ''), unauthorized],
    ['Basic with the id of the client and the secret of another', basic(cc.id, admin.secret), invalidClient],
  ] as const) {
    add(form(`Authorization: ${label}`, ccBody, { auth: header, expect: expect as Expectation, secrets: [cc.secret, rt] }));
  }

  // Two client authentication methods at once; header and body disagreeing.
  add(
    form('Basic and client_secret in the body', { grant_type: 'client_credentials', client_secret: cc.secret }, { auth: basic(cc.id, cc.secret), expect: invalidRequest }),
    form('Basic and client_id + client_secret in the body', { grant_type: 'client_credentials', ...ccCreds }, { auth: basic(cc.id, cc.secret), expect: invalidRequest }),
    json('Basic and client_secret in a JSON body', { grant_type: 'client_credentials', client_secret: cc.secret }, { auth: basic(cc.id, cc.secret), expect: invalidRequest }),
    form('Basic for one client, client_id of another in the body', { grant_type: 'client_credentials', client_id: admin.id }, { auth: basic(cc.id, cc.secret), expect: invalidRequest }),
    json('Basic for one client, client_id of another in JSON', { grant_type: 'client_credentials', client_id: admin.id }, { auth: basic(cc.id, cc.secret), expect: invalidRequest }),
    form('Basic for the password client, refresh token, body client_id of another', { grant_type: 'refresh_token', client_id: other.id, refresh_token: rt }, { auth: basic(pw.id, pw.secret), expect: invalidRequest }),
    form('Bearer and client_secret_post', { grant_type: 'client_credentials', ...ccCreds }, { auth: `Bearer ${rt}`, expect: invalidClient }),
    form('public client id with a secret', { grant_type: 'refresh_token', client_id: pub.id, client_secret: wrongSecret, refresh_token: rt }, { expect: invalidClient }),
    // RFC 6749 §3.2: an empty client_secret is none, so the public client is known by its id alone (an
    // empty client_secret or client_id beside Basic is no second method either: see authorize-parameters.test.ts).
    form('public client id with an empty secret', { grant_type: 'refresh_token', client_id: pub.id, client_secret: '', refresh_token: rt }, { expect: invalidGrant }),
    json('public client id with the secret of a confidential client', { grant_type: 'refresh_token', client_id: pub.id, client_secret: pw.secret, refresh_token: rt }, { expect: invalidClient }),
    form('refresh_token with Basic for the password client and its secret in the body too', { grant_type: 'refresh_token', client_secret: pw.secret, refresh_token: rt }, { auth: basic(pw.id, pw.secret), expect: invalidRequest }),
  );

  // Methods other than POST.
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
    add({ ...form(`${method} with a valid body`, { grant_type: 'client_credentials', ...ccCreds }), method, expect: { status: 405, error: 'invalid_request' } });
  }
  return cases;
}

// --- the random cases ---------------------------------------------------------------------------

function randomCases(f: Fixture, count: number, seed: number): FuzzCase[] {
  const r = new Random(seed);
  const { cc, admin, pw, other, pub, user, refreshToken: rt } = f;
  const clients = [cc, admin, pw, other, pub];
  const mutate = (value: string): string => {
    const at = r.int(value.length);
    switch (r.int(5)) {
      case 0:
        return value.slice(0, at) + r.pick(['A', 'z', '0', '-', '_']) + value.slice(at + 1);
      case 1:
        return value.slice(0, at) + value.slice(at + 1);
      case 2:
        return `${value}${r.pick(['=', ' ', '\n', '\u0000', 'x'])}`;
      case 3:
        return value.replace(/^gate_(..)_/, `gate_${r.pick(['rt', 'cs', 'ac', 'ak', 'ss', 'xx'])}_`);
      default:
        return value.toUpperCase();
    }
  };
  const junk = (): string => {
    switch (r.int(9)) {
      case 0:
        return '';
      case 1:
        return r.string(1 + r.int(40), 'abcdefghijklmnopqrstuvwxyz0123456789_-.:@');
      case 2:
        return r.string(1 + r.int(9000), 'A');
      case 3:
        return r.string(1 + r.int(30), 'ĉĝĥĵŝŭ😀🔥日本語\u202e\u0301\ufeff');
      case 4:
        return r.string(1 + r.int(20), '\u0000\u0001\r\n\t\u007f\u0085\u2028');
      case 5:
        return r.string(1 + r.int(30), '%ZC0AFED80%%+=&;');
      case 6:
        return r.pick(HOSTILE_STRINGS);
      case 7:
        return String(r.int(2 ** 31) * (r.chance(0.5) ? -1 : 1));
      default:
        return createOpaqueToken(r.pick(['rt', 'cs', 'ac', 'ak', 'ss']));
    }
  };
  const grantType = () => (r.chance(0.7) ? r.pick(GRANTS) : r.chance(0.5) ? r.pick(JUNK_GRANTS) : junk());
  const clientId = () => (r.chance(0.75) ? r.pick(clients).id : junk());
  // Never the right secret for the right client: a random request must not be able to succeed.
  const secretFor = (id: string) => {
    const others = clients.filter((c) => c.id !== id && c.secret !== '');
    return r.pick([() => mutate(r.pick(clients.filter((c) => c.secret !== '')).secret), () => r.pick(others).secret, () => createOpaqueToken('cs'), junk])();
  };
  const refreshToken = () => r.pick([() => rt, () => mutate(rt), () => createOpaqueToken('rt'), junk])();
  const username = () => r.pick([() => user.email, () => user.email.toUpperCase(), () => `${junk()}@example.com`, junk])();
  const password = () => r.pick([() => mutate(user.password), junk, () => 'correct horse battery stapler'])();
  const jsonValue = (depth = 0): unknown =>
    r.pick([() => junk(), () => r.int(1000), () => r.chance(0.5), () => null, () => (depth < 3 ? [jsonValue(depth + 1)] : 'x'), () => (depth < 3 ? { [junk()]: jsonValue(depth + 1) } : 1)])();
  const extraKeys = ['__proto__', 'constructor', 'constructor[prototype][polluted]', '__proto__[polluted]', 'prototype', 'scope', 'code', 'redirect_uri', 'code_verifier', 'assertion', 'client_assertion', 'client_assertion_type', 'audience', 'toString', ''];

  const cases: FuzzCase[] = [];
  for (let i = 0; i < count; i++) {
    const params: [string, string | unknown][] = [];
    let auth: string | undefined;
    const grant = r.chance(0.9) ? grantType() : undefined;
    if (grant !== undefined) params.push(['grant_type', grant]);
    const id = clientId();
    switch (r.int(7)) {
      case 0:
        break;
      case 1:
        params.push(['client_id', id]);
        break;
      case 2:
        params.push(['client_id', id], ['client_secret', secretFor(id)]);
        break;
      case 3:
        auth = basicOf(id, secretFor(id));
        break;
      case 4:
        auth = basicOf(id, secretFor(id));
        params.push(r.chance(0.5) ? ['client_secret', secretFor(id)] : ['client_id', clientId()]);
        break;
      case 5:
        auth = r.pick([`Bearer ${refreshToken()}`, `Basic ${r.bytes(1 + r.int(60)).toString('base64')}`, `Basic ${junk().replace(/[^\x20-\x7e]/g, '')}`, `${junk().replace(/[^\x21-\x7e]/g, '')} x`]);
        if (r.chance(0.5)) params.push(['client_id', id]);
        break;
      default:
        params.push(['client_id', id], ['client_secret', secretFor(id)]);
        break;
    }
    if (grant === 'password' || r.chance(0.15)) {
      if (r.chance(0.9)) params.push(['username', username()]);
      if (r.chance(0.9)) params.push(['password', password()]);
    }
    if (grant === 'refresh_token' || r.chance(0.15)) if (r.chance(0.9)) params.push(['refresh_token', refreshToken()]);
    if (r.chance(0.4)) params.push(['scope', r.pick(['objects:read', 'objects:download', 'admin:clients', 'model:read objects:read', junk()])]);
    for (let extra = r.int(3); extra > 0; extra--) params.push([r.pick(extraKeys), junk()]);
    if (r.chance(0.2) && params.length > 0) params.push(r.pick(params)); // a duplicate
    for (let k = params.length - 1; k > 0; k--) {
      const j = r.int(k + 1);
      [params[k], params[j]] = [params[j]!, params[k]!];
    }

    // What an HTTP client can put in a header (latin1, no CR/LF/NUL), kept under Node's 16 KiB limit.
    if (auth !== undefined) auth = auth.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?').slice(0, 12_000);
    const path = r.chance(0.5) ? '/token' : '/access_token';
    const options: Options = { path, ...(auth !== undefined ? { auth } : {}) };
    const kind = r.int(10);
    const name = `random #${i}`;
    if (kind < 6) {
      let body = params.map(([k, v]) => `${enc(k)}=${enc(String(v))}`).join('&');
      // Sprinkle broken percent-encoding and separators into some bodies.
      for (let n = r.chance(0.3) ? 1 + r.int(4) : 0; n > 0; n--) {
        const at = r.int(body.length + 1);
        body = body.slice(0, at) + r.pick(['%', '%Z', '%C0%AF', '%00', '&', '=', '+', '%E0%80%AF', '%ED%A0%80', '%FF']) + body.slice(at);
      }
      cases.push(raw(name, r.pick(['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=UTF-8', 'application/x-www-form-urlencoded;charset=latin1']), body, { ...options, secrets: secretsIn(params as [string, string][]) }));
    } else if (kind < 9) {
      const object: Record<string, unknown> = {};
      for (const [k, v] of params) object[k] = r.chance(0.15) ? jsonValue() : v;
      let body = JSON.stringify(object);
      if (r.chance(0.2)) body = r.pick([`[${body}]`, body.slice(0, -1), `${body}}`, body.replace(/"/, "'"), JSON.stringify(body), `${body}garbage`]);
      cases.push(raw(name, 'application/json', body, { ...options, secrets: secretsIn(object) }));
    } else {
      const body = r.chance(0.5) ? r.bytes(r.int(2000)) : Buffer.from(params.map(([k, v]) => `${k}=${String(v)}`).join('&'));
      cases.push(raw(name, r.pick(['application/x-www-form-urlencoded', 'application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=b']), body, options));
    }
  }
  return cases;
}

// --- broken HTTP, over a raw socket ------------------------------------------------------------------

/** Writes raw bytes, then reads whatever comes back until the server closes or `waitMs` passes. */
function rawExchange(baseUrl: string, chunks: (string | Buffer)[], waitMs = 1500): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    const received: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(received).toString('latin1'));
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('close', finish);
    socket.on('error', finish);
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}

function brokenHttpCases(f: Fixture): { name: string; chunks: (string | Buffer)[] }[] {
  const body = `grant_type=client_credentials&client_id=${f.cc.id}&client_secret=${createOpaqueToken('cs')}`;
  const head = (extra: string) => `POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n${extra}\r\n`;
  return [
    { name: 'content-length larger than the body', chunks: [head(`Content-Length: ${body.length + 50}\r\n`), body] },
    { name: 'content-length smaller than the body', chunks: [head(`Content-Length: 5\r\n`), body] },
    { name: 'negative content-length', chunks: [head('Content-Length: -1\r\n'), body] },
    { name: 'non-numeric content-length', chunks: [head('Content-Length: abc\r\n'), body] },
    { name: 'content-length with a huge value', chunks: [head('Content-Length: 99999999999999999999\r\n'), body] },
    { name: 'two different content-lengths', chunks: [head(`Content-Length: ${body.length}\r\nContent-Length: 3\r\n`), body] },
    { name: 'content-length and chunked together', chunks: [head(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`), body] },
    { name: 'broken chunk size', chunks: [head('Transfer-Encoding: chunked\r\n'), `zz\r\n${body}\r\n0\r\n\r\n`] },
    { name: 'chunk longer than announced', chunks: [head('Transfer-Encoding: chunked\r\n'), `3\r\n${body}\r\n0\r\n\r\n`] },
    { name: 'chunked without a final chunk', chunks: [head('Transfer-Encoding: chunked\r\n'), `${body.length.toString(16)}\r\n${body}\r\n`] },
    { name: 'chunked body over 64 KiB', chunks: [head('Transfer-Encoding: chunked\r\n'), ...Array.from({ length: 20 }, () => `1000\r\n${'a'.repeat(0x1000)}\r\n`), '0\r\n\r\n'] },
    { name: 'unknown transfer-encoding', chunks: [head('Transfer-Encoding: gzip\r\n'), body] },
    { name: 'a bare LF inside a header value', chunks: [head(`Authorization: Basic abc\ndef\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'a NUL inside a header value', chunks: [head(`Authorization: Basic \u0000abc\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'a CR inside a header value', chunks: [head(`Authorization: Basic a\rInjected: 1\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'an obsolete folded header', chunks: [head(`Authorization: Basic\r\n abc\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'a header without a colon', chunks: [head(`NoColonHere\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'a space before the colon', chunks: [head(`Content-Length : ${body.length}\r\n`), body] },
    { name: 'a header over 16 KiB', chunks: [head(`Authorization: Basic ${'A'.repeat(20_000)}\r\nContent-Length: ${body.length}\r\n`), body] },
    { name: 'a garbage request line', chunks: ['POST /token HTTP/9.9 extra\r\n\r\n'] },
    { name: 'an HTTP/0.9 request', chunks: ['POST /token\r\n\r\n'] },
    { name: 'an HTTP/2 preface', chunks: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'] },
    { name: 'binary garbage', chunks: [Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 73 + 11) % 256))] },
    { name: 'headers that never end', chunks: ['POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n'] },
    { name: 'a pipelined valid-looking and broken request', chunks: [head(`Content-Length: ${body.length}\r\n`).replace('Connection: close\r\n', '') + body + 'POST /token HTTP/1.1\r\nContent-Length: x\r\n\r\n'] },
    { name: 'an absolute-form target to another host', chunks: [head(`Content-Length: ${body.length}\r\n`).replace('POST /token', 'POST http://evil.example/token') + body] },
    { name: 'a target with a NUL', chunks: [head(`Content-Length: ${body.length}\r\n`).replace('POST /token', 'POST /to\u0000ken') + body] },
  ];
}

// --- "nothing stored changes": every table but the audit log, through a connection of our own --------

function readOnlySqlite(path: string) {
  const sqlite = new DatabaseSync(path, { readOnly: true });
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      const statement = sqlite.prepare(sql);
      return {
        reader: statement.columns().length > 0,
        all: (parameters: ReadonlyArray<unknown>) => statement.all(...(parameters as any[])),
        run: (parameters: ReadonlyArray<unknown>) => statement.run(...(parameters as any[])),
        iterate: (parameters: ReadonlyArray<unknown>) => statement.iterate(...(parameters as any[])),
      };
    },
  };
}

function observer(server: TestServer): Kysely<any> {
  const { database } = server;
  if (database.dialect === 'sqlite') return new Kysely<any>({ dialect: new SqliteDialect({ database: readOnlySqlite(join(database.dataDir, 'gatehouse.sqlite')) }) });
  return new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.databaseUrl, max: 1 }) }) });
}

type Snapshot = Record<string, string[]>;

async function snapshot(db: Kysely<any>): Promise<Snapshot> {
  const tables = (await db.introspection.getTables({ withInternalKyselyTables: true })).filter((t) => !t.isView && t.name !== 'audit_events').map((t) => t.name);
  const result: Snapshot = {};
  for (const table of tables.sort()) {
    const rows = await db.selectFrom(table).selectAll().execute();
    result[table] = rows.map((row) => JSON.stringify(Object.fromEntries(Object.entries(row).sort(([a], [b]) => (a < b ? -1 : 1))), (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).sort();
  }
  return result;
}

// --- the tests ---------------------------------------------------------------------------------------

for (const dialect of DIALECTS) {
  describe(`token endpoint under fuzzing (${dialect})`, () => {
    const f = {} as Fixture;
    let db: Kysely<any>;
    let before_: Snapshot;
    let knownSecrets: string[];

    before(async () => {
      const server = await startTestServer(dialect);
      f.server = server;
      f.cc = await server.client({ name: 'Fuzz machine', grantTypes: ['client_credentials'], scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read'] });
      f.admin = await server.client({ name: 'Fuzz back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
      f.pw = await server.client({ name: 'Fuzz first party', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'objects:download', 'model:read'], defaultScopes: ['objects:read'], firstParty: true });
      f.other = await server.client({ name: 'Fuzz other first party', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'model:read'] });
      f.pub = await server.client({ name: 'Fuzz public', type: 'public', grantTypes: ['refresh_token'], scopes: ['objects:read'] });
      f.user = { email: 'fuzz@example.com', password: 'correct horse battery staple' };
      await server.user(f.user.email, f.user.password);
      const issued = await post(`${server.url}/token`, { grant_type: 'password', client_id: f.pw.id, client_secret: f.pw.secret, username: f.user.email, password: f.user.password });
      assert.equal(issued.status, 200, JSON.stringify(issued.body));
      f.refreshToken = issued.body.refresh_token;
      assert.match(f.refreshToken, /^gate_rt_/);
      knownSecrets = [f.cc.secret, f.admin.secret, f.pw.secret, f.other.secret, f.user.password, f.refreshToken];
      db = observer(server);
      before_ = await snapshot(db);
    });

    after(async () => {
      await db?.destroy();
      await f.server?.close();
    });

    it('answers at least 250 malformed requests each with an RFC 6749 error, never a 5xx', async (t) => {
      const handcrafted = adversarialCases(f);
      const cases = [...handcrafted, ...randomCases(f, 160, dialect === 'sqlite' ? 0x5eed : 0xfeed)];
      assert.ok(cases.length >= 250, `only ${cases.length} cases`);
      const failures: string[] = [];
      const statuses = new Map<number, number>();
      for (const [i, fuzz] of cases.entries()) {
        // The handcrafted cases alternate between the two addresses of the endpoint.
        const withPath = fuzz.path ? fuzz : { ...fuzz, path: i % 2 === 0 ? '/token' : '/access_token' };
        let response: Answer;
        try {
          response = await send(f.server.url, withPath);
        } catch (error) {
          failures.push(`${fuzz.name}: no answer (${(error as Error).message})`);
          continue;
        }
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const problems = problemsOf(withPath, response, knownSecrets);
        if (problems.length > 0) failures.push(`${fuzz.name} [${withPath.method ?? 'POST'} ${withPath.path}] → ${response.status} ${response.text.slice(0, 160)}\n      ${problems.join('\n      ')}`);
      }
      t.diagnostic(`${cases.length} requests (${handcrafted.length} handcrafted, ${cases.length - handcrafted.length} random): ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${n}×${s}`).join(', ')}`);
      assert.deepEqual(failures, [], `${failures.length} of ${cases.length} requests were answered wrongly:\n  ${failures.join('\n  ')}`);
      // Every status class the brief allows was actually exercised.
      for (const status of ALLOWED_STATUSES) assert.ok(statuses.has(status), `no request got ${status}`);
    });

    it('survives broken HTTP framing without a 5xx and keeps serving', async (t) => {
      const failures: string[] = [];
      const seen = new Map<number, number>();
      let answered = 0;
      const broken_ = brokenHttpCases(f);
      for (const broken of broken_) {
        const answer = await rawExchange(f.server.url, broken.chunks);
        const statuses = [...answer.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
        for (const status of statuses) seen.set(status, (seen.get(status) ?? 0) + 1);
        if (statuses.length > 0) answered++;
        if (statuses.some((s) => s >= 500)) failures.push(`${broken.name}: ${statuses.join(', ')}`);
        if (/\n\s+at |node_modules|\.ts:\d+/.test(answer)) failures.push(`${broken.name}: stack trace in ${answer.slice(0, 200)}`);
      }
      t.diagnostic(`${broken_.length} broken requests, ${answered} answered by the server: ${[...seen].map(([s, n]) => `${n}×${s}`).join(', ')}`);
      assert.deepEqual(failures, []);
      // Most are refused by the HTTP layer at once; a few (a body or headers that never end) get no answer.
      assert.ok(answered >= broken_.length - 4, `only ${answered} of ${broken_.length} broken requests were answered`);
      // The process is alive and still answers protocol requests normally.
      const check = await post(`${f.server.url}/token`, { grant_type: 'client_credentials', client_id: f.cc.id, client_secret: createOpaqueToken('cs') });
      assert.equal(check.status, 401);
      assert.equal(check.body.error, 'invalid_client');
    });

    it('let no request pollute Object.prototype', () => {
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).filter((name) => ['polluted', 'grant_type', 'x'].includes(name)), []);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    it('changed nothing stored, except the audit log', async () => {
      // Audit events are written in the background; wait for them, so no write is still in flight.
      await f.server.gatehouse.audit.flush();
      const after_ = await snapshot(db);
      assert.deepEqual(Object.keys(after_), Object.keys(before_));
      assert.ok(Object.keys(after_).includes('refresh_tokens') && Object.keys(after_).includes('clients'));
      for (const table of Object.keys(before_)) assert.deepEqual(after_[table], before_[table], `table ${table} changed`);
    });

    it('left the valid refresh token unconsumed: it still works once', async () => {
      const res = await post(`${f.server.url}/token`, { grant_type: 'refresh_token', client_id: f.pw.id, client_secret: f.pw.secret, refresh_token: f.refreshToken });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.match(res.body.refresh_token, /^gate_rt_/);
      assert.notEqual(res.body.refresh_token, f.refreshToken);
    });
  });
}
