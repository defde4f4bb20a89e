import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { SignJWT } from 'jose';
import { createClient } from '../../src/core/applications.ts';
import { createUser } from '../../src/core/users.ts';
import { loadConfig, type GatehouseConfig } from '../../src/core/config.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { createLogger, loggableUrl } from '../../src/logging.ts';
import { buildApp } from '../../src/http/app.ts';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { basic, freePort, post } from '../support/server.ts';
import { resetLinkIn, startMailServer, verifyLinkIn, type TestMailServer } from '../support/smtp.ts';

/*
 * Issue 6, "Observability": structured logs in which no secret or token ever appears. A server
 * logs at `trace`, with Fastify's per-request logging on, into memory, through the logger
 * Gatehouse builds for itself (createLogger: REDACTED_PATHS and the request serializer). A whole
 * session runs against it — every grant, the browser flows, API keys, project tokens,
 * introspection, revocation, the portal and the admin API, errors and forced 500s — and every
 * secret and token it handled is then looked for in everything that was logged, and in the audit
 * log it left.
 */

const CALLBACK = 'https://app.example/callback';
const LOGGED_OUT = 'https://app.example/bye';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

interface LoggedServer {
  url: string;
  config: GatehouseConfig;
  gatehouse: Gatehouse;
  app: FastifyInstance;
  database: TestDatabase;
  lines: string[];
  close(): Promise<void>;
}

async function startLoggedServer(masterSecret: string, env: Record<string, string> = {}, requestLogging = true): Promise<LoggedServer> {
  const database = await createTestDatabase('sqlite');
  const port = await freePort();
  const config = loadConfig({
    PORT: String(port),
    GATEHOUSE_ISSUER: `http://127.0.0.1:${port}`,
    GATEHOUSE_DATA_DIR: database.dataDir,
    GATEHOUSE_SECRET: masterSecret,
    GATEHOUSE_LOG_LEVEL: 'trace',
    ...env,
  });
  const lines: string[] = [];
  // An in-memory destination: pino writes each JSON line here, synchronously.
  const logger = createLogger('trace', { write: (line: string) => void lines.push(line) });
  const gatehouse = await createGatehouse(config, { logger });
  const app = buildApp(gatehouse, { requestLogging });
  await app.listen({ port, host: '127.0.0.1' });
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    gatehouse,
    app,
    database,
    lines,
    async close() {
      await app.close();
      await gatehouse.close();
      await database.drop();
    },
  };
}

/** Everything a secret could look like in a log line: as is, URL- or form-encoded, JSON-escaped, or in part. */
function needlesOf(secret: string): string[] {
  const needles = new Set([secret, encodeURIComponent(secret), new URLSearchParams({ x: secret }).toString().slice(2), JSON.stringify(secret).slice(1, -1)]);
  const parts = secret.split('.');
  // A JWT: its signature alone identifies it (its claims are shared with other tokens of the same user).
  if (parts.length === 3 && parts[2]!.length >= 20) needles.add(parts[2]!);
  // An opaque value (gate_xx_…): 20 characters from the middle of its random part.
  else if (/^gate_[a-z]{2}_/.test(secret)) needles.add(secret.slice(16, 36));
  // Anything else long enough (passwords, the master secret): its middle.
  else if (secret.length >= 32) needles.add(secret.slice(Math.floor(secret.length / 2) - 10, Math.floor(secret.length / 2) + 10));
  return [...needles].filter((needle) => needle.length >= 8);
}

/** Binary values a serializer may have written (Buffers as {"type":"Buffer","data":[…]}), decoded, so that they are searched too. */
function decodedBuffers(text: string): string {
  const decoded: string[] = [];
  for (const match of text.matchAll(/\{"type":"Buffer","data":\[([0-9,]*)\]\}/g)) {
    decoded.push(Buffer.from(match[1]!.split(',').filter(Boolean).map(Number)).toString('latin1'));
  }
  return decoded.join('\n');
}

describe('no secret or token in the logs', () => {
  const masterSecret = `log-secrecy-master-${randomBytes(24).toString('base64url')}`;
  let server: LoggedServer;
  /** Every secret and token this session handled, by what it is. */
  const secrets = new Map<string, string>();
  const keep = (label: string, value: unknown): string => {
    assert.equal(typeof value, 'string', `${label} is not a string: ${JSON.stringify(value)}`);
    assert.ok((value as string).length >= 8, `${label} is too short to look for`);
    secrets.set(value as string, label);
    return value as string;
  };

  let machine: { id: string; secret: string };
  let firstParty: { id: string; secret: string };
  let web: { id: string; secret: string };
  let spa: { id: string };
  let resourceServer: { id: string; secret: string };
  let backOffice: { id: string; secret: string };
  let admin: { id: string; secret: string };
  const user = { email: 'logged@example.com', password: `pw-${randomBytes(12).toString('base64url')}` };

  let mail: TestMailServer;

  before(async () => {
    mail = await startMailServer();
    server = await startLoggedServer(masterSecret, { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' });
    keep('master secret', masterSecret);
    keep('SMTP password', mail.password);
    keep('SMTP URL', mail.url);
    keep('user password', user.password);
    const { gatehouse } = server;
    const make = async (label: string, input: Parameters<typeof createClient>[1]) => {
      const { client, secret } = await createClient(gatehouse, input, gatehouse.clock());
      if (secret) keep(`${label} client secret`, secret);
      return { id: client.id, secret: secret ?? '' };
    };
    machine = await make('machine', { name: 'Machine', type: 'confidential', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read', 'bcf:read'] });
    firstParty = await make('first party', { name: 'First party', type: 'confidential', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'email', 'objects:read', 'model:read'] });
    web = await make('web', {
      name: 'Web',
      type: 'confidential',
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['openid', 'profile', 'email', 'objects:read'],
      redirectUris: [CALLBACK],
      postLogoutRedirectUris: [LOGGED_OUT],
    });
    spa = await make('spa', { name: 'SPA', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK] });
    resourceServer = await make('resource server', { name: 'API', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    backOffice = await make('back office', { name: 'Back office', type: 'confidential', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'objects:download'], defaultScopes: ['objects:read'], allowImpersonation: true });
    admin = await make('admin', { name: 'Admin', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users', 'admin:tokens'], isAdmin: true });
    // Verified, as the developer portal creates credentials only for a verified address while mail is on.
    const created = await createUser(gatehouse.storage, user, gatehouse.clock());
    await gatehouse.storage.users.update(created.id, { emailVerified: true }, gatehouse.clock());
  });
  after(async () => {
    await server?.close();
    await mail?.close();
  });

  const token = (params: Record<string, string>, client?: { id: string; secret: string }, json = false) =>
    post(`${server.url}/token`, params, { json, ...(client ? { headers: { authorization: basic(client.id, client.secret) } } : {}) });
  /** Each secret or token of the session that `haystack` holds, with what surrounds it. */
  const leaksIn = (haystack: string): string[] => {
    const leaks: string[] = [];
    for (const [secret, label] of secrets) {
      for (const needle of needlesOf(secret)) {
        const at = haystack.indexOf(needle);
        if (at >= 0) {
          leaks.push(`${label} (${needle.slice(0, 12)}…): …${haystack.slice(Math.max(0, at - 120), at + 40)}…`);
          break;
        }
      }
    }
    // Basic credentials as sent: the base64 of client_id:client_secret.
    for (const client of [machine, firstParty, web, resourceServer, backOffice, admin]) {
      if (haystack.includes(basic(client.id, client.secret).slice(6))) leaks.push(`Basic credentials of ${client.id}`);
    }
    return leaks;
  };
  const keepTokens = (label: string, body: any) => {
    if (body.access_token) keep(`${label} access token`, body.access_token);
    if (body.refresh_token) keep(`${label} refresh token`, body.refresh_token);
    if (body.id_token) keep(`${label} ID token`, body.id_token);
    return body;
  };
  const keepBrowser = (label: string, browser: HttpBrowser, html?: string) => {
    for (const [name, value] of browser.cookies) keep(`${label} cookie ${name}`, value);
    if (html && html.includes('name="csrf"')) keep(`${label} CSRF token`, hiddenField(html, 'csrf'));
  };

  it('runs a whole session: every grant, the browser flows, API keys, project tokens, introspection, revocation, portal, admin API', async () => {
    // Client credentials: Basic, body (form and JSON).
    const cc = keepTokens('client credentials', (await token({ grant_type: 'client_credentials', scope: 'objects:read model:read' }, machine)).body);
    assert.ok(cc.access_token);
    keepTokens('client credentials (post)', (await token({ grant_type: 'client_credentials', client_id: machine.id, client_secret: machine.secret })).body);
    keepTokens('client credentials (json)', (await token({ grant_type: 'client_credentials', client_id: machine.id, client_secret: machine.secret, scope: 'bcf:read' }, undefined, true)).body);

    // private_key_jwt: a signed assertion, accepted once, then replayed (refused).
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyClient = await createClient(server.gatehouse, { name: 'Keys', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [publicKey.export({ format: 'jwk' }) as Record<string, unknown>] } }, server.gatehouse.clock());
    keep('key client secret', keyClient.secret!);
    const assertion = keep(
      'client assertion',
      await new SignJWT({ iss: keyClient.client.id, sub: keyClient.client.id, aud: server.gatehouse.config.issuer, exp: Math.floor(Date.now() / 1000) + 60, jti: randomBytes(16).toString('hex') })
        .setProtectedHeader({ alg: 'ES256' })
        .sign(privateKey),
    );
    const assertionParams = { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion };
    assert.equal(keepTokens('private_key_jwt', (await token(assertionParams)).body).token_type, 'Bearer');
    assert.equal((await token(assertionParams)).status, 401);

    // Resource owner password, then refresh with rotation.
    const pw = keepTokens('password', (await token({ grant_type: 'password', username: user.email, password: user.password, scope: 'openid email objects:read model:read' }, firstParty)).body);
    assert.ok(pw.refresh_token, JSON.stringify(pw));
    const refreshed = keepTokens('refresh', (await token({ grant_type: 'refresh_token', refresh_token: pw.refresh_token }, firstParty)).body);
    assert.ok(refreshed.refresh_token);

    // Authorization code with sign-in and consent, in a browser; PKCE for the public client.
    const browser = new HttpBrowser();
    const verifier = keep('PKCE verifier', randomBytes(32).toString('base64url'));
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const authorizeUrl = (clientId: string, extra: Record<string, string> = {}) =>
      `${server.url}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: CALLBACK, scope: 'openid email objects:read', state: 'state-1', nonce: 'nonce-1', ...extra })}`;
    let page = await browser.follow(authorizeUrl(web.id), server.url);
    keepBrowser('login page', browser, page.text);
    // A wrong password first, then the right one.
    const wrongPassword = keep('wrong password', `wrong-${randomBytes(12).toString('base64url')}`);
    const refused = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: user.email, password: wrongPassword } });
    assert.equal(refused.status, 401);
    page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: user.email, password: user.password } });
    keepBrowser('consent page', browser, page.text);
    assert.match(page.text, /name="decision"/);
    page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
    const code = keep('authorization code', new URL(page.location!).searchParams.get('code'));
    const web_ = keepTokens('authorization code', (await token({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, web)).body);
    assert.ok(web_.id_token);
    // Userinfo: header and body.
    assert.equal((await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${web_.access_token}` } })).status, 200);
    assert.equal((await post(`${server.url}/userinfo`, { access_token: web_.access_token })).status, 200);

    let spaPage = await browser.follow(authorizeUrl(spa.id, { scope: 'openid objects:read', code_challenge: challenge, code_challenge_method: 'S256' }), server.url);
    if (spaPage.text.includes('name="decision"')) {
      keepBrowser('consent page (spa)', browser, spaPage.text);
      spaPage = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(spaPage.text, 'csrf'), request: hiddenField(spaPage.text, 'request'), decision: 'allow' } });
    }
    const spaCode = keep('authorization code (spa)', new URL(spaPage.location!).searchParams.get('code'));
    const spaTokens = keepTokens('spa', (await token({ grant_type: 'authorization_code', client_id: spa.id, code: spaCode, redirect_uri: CALLBACK, code_verifier: verifier })).body);
    assert.ok(spaTokens.access_token, JSON.stringify(spaTokens));
    keepTokens('spa refresh', (await token({ grant_type: 'refresh_token', client_id: spa.id, refresh_token: spaTokens.refresh_token })).body);

    // API keys: created, used for a project token, introspected, revoked.
    const machineClient = (await server.gatehouse.storage.clients.find(machine.id))!;
    const apiKey = keep('API key', (await server.gatehouse.apiKeys.create(machineClient, { name: 'script', scopes: ['model:read'] }, server.gatehouse.clock())).value);
    const inAnHour = new Date(Date.now() + 3600_000).toISOString();
    const projectByKey = await fetch(`${server.url}/projects/p1/access-tokens`, { method: 'POST', headers: { authorization: `ApiKey ${apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ expires_at: inAnHour, scopes: ['model:read'] }) });
    assert.equal(projectByKey.status, 201);
    keep('project token (API key)', ((await projectByKey.json()) as any).access_token);
    const projectByToken = await fetch(`${server.url}/projects/p2/access-tokens`, { method: 'POST', headers: { authorization: `Bearer ${cc.access_token}`, 'content-type': 'application/json' }, body: JSON.stringify({ expires_at: inAnHour, scopes: ['model:read'] }) });
    assert.equal(projectByToken.status, 201);
    const projectToken = keep('project token', ((await projectByToken.json()) as any).access_token);

    // Token exchange (delegation) with the user's token.
    const actor = keepTokens('back office', (await token({ grant_type: 'client_credentials' }, backOffice)).body).access_token;
    const exchanged = await token({ grant_type: EXCHANGE, subject_token: pw.access_token, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN, scope: 'objects:read' }, backOffice);
    assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
    keepTokens('token exchange', exchanged.body);

    // Introspection and revocation of everything.
    const introspect = (value: string, hint?: string) => post(`${server.url}/introspect`, { token: value, ...(hint ? { token_type_hint: hint } : {}) }, { headers: { authorization: basic(resourceServer.id, resourceServer.secret) } });
    for (const value of [cc.access_token, refreshed.refresh_token, apiKey, projectToken, web_.access_token]) assert.equal((await introspect(value)).status, 200);
    assert.equal((await introspect(refreshed.refresh_token, 'refresh_token')).status, 200);
    assert.equal((await post(`${server.url}/revoke`, { token: refreshed.refresh_token, token_type_hint: 'refresh_token' }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).status, 200);
    assert.equal((await post(`${server.url}/revoke`, { token: apiKey }, { headers: { authorization: basic(machine.id, machine.secret) } })).status, 200);
    assert.equal((await post(`${server.url}/revoke`, { token: cc.access_token, client_id: machine.id, client_secret: machine.secret })).status, 200);

    // The developer portal: a new application (its secret shown once) and an API key.
    page = await browser.follow(`${server.url}/developers/new`, server.url);
    keepBrowser('portal', browser, page.text);
    const created = await browser.request(`${server.url}/developers/applications`, {
      form: { csrf: hiddenField(page.text, 'csrf'), name: 'Portal app', description: '', type: 'confidential', base_url: '', redirect_uris: 'https://portal.example/cb' },
    });
    assert.equal(created.status, 200, created.text.slice(0, 300));
    keep('portal client secret', /gate_cs_[A-Za-z0-9_-]{49}/.exec(created.text)?.[0]);
    const portalAppPath = /action="(\/developers\/applications\/[^"/]+)\/api-keys"/.exec(created.text)?.[1] ?? /href="(\/developers\/applications\/[^"/]+)\/api-keys"/.exec(created.text)?.[1];
    assert.ok(portalAppPath, 'the application page links to its API keys');
    const keysPage = await browser.request(`${server.url}${portalAppPath}/api-keys`);
    const keyPage = await browser.request(`${server.url}${portalAppPath}/api-keys`, { form: [['csrf', hiddenField(keysPage.text, 'csrf')], ['name', 'ci'], ['expires_on', ''], ['scopes', 'objects:read']] });
    assert.equal(keyPage.status, 200, keyPage.text.slice(0, 300));
    keep('portal API key', /gate_ak_[A-Za-z0-9_-]{49}/.exec(keyPage.text)?.[0]);

    // The admin API: a user with a password, a new client secret.
    const adminToken = keepTokens('admin', (await token({ grant_type: 'client_credentials' }, admin)).body).access_token;
    const adminPassword = keep('admin-created password', `adm-${randomBytes(12).toString('base64url')}`);
    const adminHeaders = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    assert.equal((await fetch(`${server.url}/admin/v1/users`, { method: 'POST', headers: adminHeaders, body: JSON.stringify({ email: 'made@example.com', password: adminPassword }) })).status, 201);
    const rotated = await fetch(`${server.url}/admin/v1/clients/${machine.id}/secrets`, { method: 'POST', headers: adminHeaders, body: '{}' });
    assert.equal(rotated.status, 201);
    keep('rotated client secret', ((await rotated.json()) as any).client_secret);
    assert.equal((await fetch(`${server.url}/admin/v1/clients`, { headers: { authorization: `Bearer ${adminToken}` } })).status, 200);

    // The code again: a replay, refused (and the tokens issued from it revoked).
    assert.equal((await token({ grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, web)).status, 400);

    // RP-initiated logout with the ID token in the query string.
    const logout = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: web_.id_token, post_logout_redirect_uri: LOGGED_OUT, state: 'bye' })}`);
    assert.equal(logout.status, 303, logout.text.slice(0, 300));

    // Sign-up with a new password.
    const fresh = new HttpBrowser();
    const signup = await fresh.request(`${server.url}/signup`);
    keepBrowser('signup', fresh, signup.text);
    const signupPassword = keep('signup password', `su-${randomBytes(12).toString('base64url')}`);
    assert.equal((await fresh.request(`${server.url}/signup`, { form: { csrf: hiddenField(signup.text, 'csrf'), email: 'new@example.com', name: 'New', password: signupPassword } })).status, 303);
    keepBrowser('signed up', fresh);

    // The account page: a second browser of the same person, a change of password (a wrong current
    // one, a mismatched confirmation, then right), of name, and the other browsers signed out.
    const second = await signedInBrowser(server.url, 'new@example.com', signupPassword);
    keepBrowser('second browser', second);
    const changedPassword = keep('changed password', `cp-${randomBytes(12).toString('base64url')}`);
    const wrongCurrent = keep('wrong current password', `wc-${randomBytes(12).toString('base64url')}`);
    const changePassword = async (current: string, confirmation: string) => {
      const form = await fresh.request(`${server.url}/account/password`);
      keepBrowser('password form', fresh, form.text);
      return fresh.request(`${server.url}/account/password`, { form: { csrf: hiddenField(form.text, 'csrf'), current_password: current, new_password: changedPassword, confirm_password: confirmation } });
    };
    assert.equal((await changePassword(wrongCurrent, changedPassword)).status, 400);
    assert.equal((await changePassword(signupPassword, `${changedPassword}x`)).status, 400);
    assert.equal((await changePassword(signupPassword, changedPassword)).status, 303);
    assert.equal((await second.request(`${server.url}/account`)).status, 302, 'the second browser was signed out');
    const nameForm = await fresh.request(`${server.url}/account/name`);
    assert.equal((await fresh.request(`${server.url}/account/name`, { form: { csrf: hiddenField(nameForm.text, 'csrf'), name: 'Renamed' } })).status, 303);
    const account = await fresh.request(`${server.url}/account`);
    keepBrowser('account page', fresh, account.text);
    assert.equal((await fresh.request(`${server.url}/account/sign-out-elsewhere`, { form: { csrf: hiddenField(account.text, 'csrf') } })).status, 303);
    assert.equal((await fresh.request(`${server.url}/account/password`, { form: { current_password: changedPassword, new_password: wrongCurrent, confirm_password: wrongCurrent } })).status, 403);
  });

  it('handles errors that carry secrets: wrong credentials, replays, a token in the wrong place, CSRF failures, oversized headers', async () => {
    const wrongSecret = keep('wrong client secret', `gate_cs_${randomBytes(32).toString('base64url')}AAAAAA`);
    assert.equal((await token({ grant_type: 'client_credentials' }, { id: machine.id, secret: wrongSecret })).status, 401);
    assert.equal((await token({ grant_type: 'client_credentials', client_id: machine.id, client_secret: wrongSecret })).status, 401);
    const forgedRefresh = keep('unknown refresh token', `gate_rt_${randomBytes(32).toString('base64url')}BBBBBB`);
    assert.equal((await token({ grant_type: 'refresh_token', refresh_token: forgedRefresh }, firstParty)).status, 400);
    // The password grant with a wrong password; introspection and revocation with a wrong secret.
    const wrongGrantPassword = keep('wrong password (password grant)', `wpg-${randomBytes(12).toString('base64url')}`);
    assert.equal((await token({ grant_type: 'password', username: user.email, password: wrongGrantPassword }, firstParty)).status, 400);
    assert.equal((await post(`${server.url}/introspect`, { token: forgedRefresh }, { headers: { authorization: basic(resourceServer.id, wrongSecret) } })).status, 401);
    assert.equal((await post(`${server.url}/revoke`, { token: forgedRefresh, client_id: machine.id, client_secret: wrongSecret })).status, 401);
    const pw = keepTokens('password (errors)', (await token({ grant_type: 'password', username: user.email, password: user.password }, firstParty)).body);
    // Refresh-token replay: rotation, then the old one again.
    keepTokens('rotated', (await token({ grant_type: 'refresh_token', refresh_token: pw.refresh_token }, firstParty)).body);
    assert.equal((await token({ grant_type: 'refresh_token', refresh_token: pw.refresh_token }, firstParty)).status, 400);
    // An access token offered as client credentials.
    assert.equal((await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: `Bearer ${pw.access_token}` } })).status, 401);
    // Malformed JSON carrying a secret.
    assert.equal((await post(`${server.url}/token`, `{"grant_type":"password","password":"${user.password}"`, { json: true })).status, 400);
    // Form-encoded bytes under a JSON content type: JSON.parse's message quotes the start of the body.
    assert.equal((await post(`${server.url}/token`, `client_secret=${machine.secret}&grant_type=client_credentials`, { json: true })).status, 400);
    // Login with a wrong password, without CSRF token.
    const browser = new HttpBrowser();
    await browser.request(`${server.url}/login`);
    keepBrowser('csrf-less', browser);
    assert.equal((await browser.request(`${server.url}/login`, { form: { email: user.email, password: user.password } })).status, 403);
    // Userinfo with a token in the query string (not supported; must not be logged either).
    assert.equal((await fetch(`${server.url}/userinfo?access_token=${pw.access_token}`)).status, 401);
    // Oversized headers carrying credentials: refused by the HTTP parser.
    const { hostname, port } = new URL(server.url);
    const answer = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: hostname, port: Number(port) }, () =>
        socket.write(`POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic(machine.id, machine.secret)}\r\nCookie: gatehouse_session=${pw.refresh_token}\r\nX-Pad: ${'p'.repeat(17 * 1024)}\r\n\r\ngrant_type=password&password=${user.password}`),
      );
      let text = '';
      socket.on('data', (d) => (text += d));
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
      setTimeout(() => socket.destroy(), 3000);
    });
    assert.match(answer, /^HTTP\/1\.1 431/);
    // Broken framing after valid credentials.
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host: hostname, port: Number(port) }, () =>
        socket.write(`POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic(machine.id, machine.secret)}\r\nContent-Length: abc\r\n\r\nclient_secret=${machine.secret}`),
      );
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
      setTimeout(() => socket.destroy(), 2000);
    });
  });

  it('handles forced server errors without logging the request that caused them', async () => {
    const { gatehouse } = server;
    // The token endpoint: the database fails while a refresh token and a client secret are in hand.
    const pw = keepTokens('password (500)', (await token({ grant_type: 'password', username: user.email, password: user.password }, firstParty)).body);
    const find = gatehouse.storage.refreshTokens.find;
    gatehouse.storage.refreshTokens.find = async () => {
      throw new Error('the database is on fire');
    };
    try {
      const res = await token({ grant_type: 'refresh_token', refresh_token: pw.refresh_token, client_id: firstParty.id, client_secret: firstParty.secret });
      assert.equal(res.status, 500);
      assert.equal(res.body.error, 'server_error');
    } finally {
      gatehouse.storage.refreshTokens.find = find;
    }
    // A page: sign-in fails inside.
    const login = gatehouse.login.login;
    gatehouse.login.login = async () => {
      throw new TypeError('cannot read the password store');
    };
    try {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      keepBrowser('500 page', browser, form.text);
      const res = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email: user.email, password: user.password } });
      assert.equal(res.status, 500);
      assert.doesNotMatch(res.text, /password store/);
    } finally {
      gatehouse.login.login = login;
    }
    // The account page: storing a new password fails after both passwords were read.
    const setPasswordHash = gatehouse.storage.users.setPasswordHash;
    gatehouse.storage.users.setPasswordHash = async () => {
      throw new Error('the users table is locked');
    };
    try {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const passwordForm = await browser.request(`${server.url}/account/password`);
      keepBrowser('password form (500)', browser, passwordForm.text);
      const next = keep('new password (500)', `np5-${randomBytes(12).toString('base64url')}`);
      const res = await browser.request(`${server.url}/account/password`, { form: { csrf: hiddenField(passwordForm.text, 'csrf'), current_password: user.password, new_password: next, confirm_password: next } });
      assert.equal(res.status, 500);
      assert.doesNotMatch(res.text, /users table/);
    } finally {
      gatehouse.storage.users.setPasswordHash = setPasswordHash;
    }
    // The admin API: creating a user fails after the body (with its password) was read.
    const adminToken = keepTokens('admin (500)', (await token({ grant_type: 'client_credentials' }, admin)).body).access_token;
    const createUser_ = gatehouse.storage.users.create;
    gatehouse.storage.users.create = async () => {
      throw new Error('disk full');
    };
    try {
      const password = keep('admin password (500)', `adm5-${randomBytes(12).toString('base64url')}`);
      const res = await fetch(`${server.url}/admin/v1/users`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ email: 'fails@example.com', password }) });
      assert.equal(res.status, 500);
    } finally {
      gatehouse.storage.users.create = createUser_;
    }
  });

  it('sends password reset links, the mail server refusing the log-in first, and resets a password with one', async () => {
    const resetting = { email: 'forgetful@example.com', password: keep('forgetful password', `pw-${randomBytes(12).toString('base64url')}`) };
    await createUser(server.gatehouse.storage, resetting, server.gatehouse.clock());
    const ask = async () => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/password/forgot`);
      keepBrowser('forgot password page', browser, form.text);
      const answer = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email: resetting.email } });
      assert.equal(answer.status, 303);
      await server.gatehouse.passwordResets.settled();
    };
    mail.refuseLogins = true;
    await ask();
    assert.ok(mail.refusedLogins > 0, 'the mail server refused the log-in');
    assert.ok(server.lines.some((line) => line.includes('a password reset link could not be sent') && line.includes('EAUTH')), 'the failure is logged, with why');
    mail.refuseLogins = false;
    await ask();
    const link = resetLinkIn(mail.received.at(-1)!);
    keep('password reset link token', new URL(link).searchParams.get('token'));
    const browser = new HttpBrowser();
    assert.equal((await browser.request(link)).status, 303);
    const form = await browser.request(`${server.url}/password/reset`);
    keepBrowser('reset password page', browser, form.text);
    const next = keep('reset password', `new-${randomBytes(12).toString('base64url')}`);
    const done = await browser.request(`${server.url}/password/reset`, { form: { csrf: hiddenField(form.text, 'csrf'), new_password: next, confirm_password: next } });
    assert.equal(done.status, 303);
    // Followed again, the link is refused: its token in a logged URL is redacted too.
    assert.equal((await new HttpBrowser().request(link)).status, 400);
  });

  it('sends email verification links at sign-up, the mail server refusing the log-in first, and verifies an address with one', async () => {
    const signUp = async (email: string) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      keepBrowser('sign-up page (verification)', browser, form.text);
      const password = keep('signed-up password (verification)', `pw-${randomBytes(12).toString('base64url')}`);
      const answer = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
      assert.equal(answer.status, 303);
      keepBrowser('signed-up browser (verification)', browser, '');
      await server.gatehouse.emailVerifications.settled();
      return browser;
    };
    mail.refuseLogins = true;
    const browser = await signUp('unverified@example.com');
    assert.ok(server.lines.some((line) => line.includes('an email verification link could not be sent') && line.includes('EAUTH')), 'the failure is logged, with why');
    mail.refuseLogins = false;
    const account = await browser.request(`${server.url}/account`);
    assert.equal((await browser.request(`${server.url}/email/resend`, { form: { csrf: hiddenField(account.text, 'csrf') } })).status, 303);
    await server.gatehouse.emailVerifications.settled();
    const link = verifyLinkIn(mail.received.at(-1)!);
    keep('email verification link token', new URL(link).searchParams.get('token'));
    // Opened signed out it asks to sign in first; the browser signed in to the account confirms.
    const signedOut = new HttpBrowser();
    assert.equal((await signedOut.request(link)).status, 303);
    keepBrowser('email verification link, signed out', signedOut, (await signedOut.request(`${server.url}/email/verify`)).text);
    const follower = browser;
    assert.equal((await follower.request(link)).status, 303);
    const confirmation = await follower.request(`${server.url}/email/verify`);
    assert.equal(confirmation.status, 200);
    keepBrowser('email verification page', follower, confirmation.text);
    assert.equal((await follower.request(`${server.url}/email/verify`, { form: { csrf: hiddenField(confirmation.text, 'csrf') } })).status, 200);
    // Followed again, the link is refused: its token in a logged URL is redacted too.
    assert.equal((await new HttpBrowser().request(link)).status, 400);
  });

  it('logged the session at trace level, with request lines and the errors, and no secret or token anywhere', async (t) => {
    await server.gatehouse.audit.flush();
    const log = server.lines.join('');
    const entries = server.lines.map((line) => JSON.parse(line) as { level: number; msg?: string; req?: { url?: string }; err?: unknown });
    // The log is not empty: request logging was on, and the failures were logged with their errors.
    assert.ok(entries.filter((e) => e.msg === 'incoming request').length >= 40, 'request lines were logged');
    assert.ok(entries.some((e) => e.msg === 'request failed' && e.err), 'the token endpoint failure was logged');
    assert.ok(entries.some((e) => e.msg === 'page failed' && e.err), 'the page failure was logged');
    assert.ok(entries.some((e) => e.msg === 'admin request failed' && e.err), 'the admin failure was logged');
    assert.ok(entries.some((e) => e.req?.url?.startsWith('/logout?') && e.req.url.includes('id_token_hint=[redacted]')), 'the logout URL was logged, its ID token redacted');
    assert.ok(entries.some((e) => e.req?.url?.startsWith('/authorize?') && e.req.url.includes('state=state-1')), 'ordinary query parameters stay readable');

    const haystack = `${log}\n${decodedBuffers(log)}`;
    assert.ok(secrets.size >= 40, `only ${secrets.size} secrets were collected`);
    const leaks = leaksIn(haystack);
    t.diagnostic(`${server.lines.length} log lines searched for ${secrets.size} secrets and tokens`);
    assert.deepEqual(leaks, [], `${leaks.length} secrets appear in the logs:\n${leaks.join('\n')}`);
  });

  it('stored no secret or token in the audit log, which recorded the session', async (t) => {
    await server.gatehouse.audit.flush();
    const events: AuditEvent[] = [];
    for (let page = await server.gatehouse.storage.audit.query({ limit: 1000 }); page.length > 0; ) {
      events.push(...page);
      const last = page.at(-1)!;
      page = await server.gatehouse.storage.audit.query({ after: { at: last.at, id: last.id! }, limit: 1000 });
    }
    const kinds = new Set(events.map((event) => event.kind));
    for (const kind of ['token.issued', 'token.refused', 'login.failed', 'token.revoked', 'authorization_code.reused', 'introspection.refused', 'revocation.refused', 'portal.api_key.created', 'admin.client_secret.created', 'user.password_changed']) assert.ok(kinds.has(kind), `the session left a ${kind} event`);
    const leaks = leaksIn(JSON.stringify(events));
    t.diagnostic(`${events.length} audit events searched for ${secrets.size} secrets and tokens`);
    assert.deepEqual(leaks, [], `${leaks.length} secrets appear in the audit log:\n${leaks.join('\n')}`);
  });

  it('redacts the master secrets, current and previous, and the SMTP URL of a configuration logged as an object', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(line) });
    const master = `master-${randomBytes(24).toString('base64url')}`;
    const previous = `previous-${randomBytes(24).toString('base64url')}`;
    logger.info({ config: { secret: master, previousSecrets: [previous], smtpUrl: `smtp://mailer:${previous}@mail.example` } }, 'configuration');
    assert.equal(lines.length, 1);
    for (const needle of [master, previous]) assert.ok(!lines[0]!.includes(needle), lines[0]);
  });

  it('redacts secret query parameters from logged URLs, and only those', () => {
    assert.equal(loggableUrl('/logout?id_token_hint=eyJ.x.y&state=s'), '/logout?id_token_hint=[redacted]&state=s');
    assert.equal(loggableUrl('/userinfo?Access_Token=abc'), '/userinfo?Access_Token=[redacted]');
    assert.equal(loggableUrl('/x?%63ode=abc&code_challenge=c'), '/x?%63ode=[redacted]&code_challenge=c');
    assert.equal(loggableUrl('/authorize?client_id=a&redirect_uri=https%3A%2F%2Fa&login_hint=ada%40example.com'), '/authorize?client_id=a&redirect_uri=https%3A%2F%2Fa&login_hint=[redacted]');
    assert.equal(loggableUrl('/healthz'), '/healthz');
    assert.equal(loggableUrl(`/x?a=${'b'.repeat(5000)}`).length, 2000);
  });
});

describe('a log line for each server error, as a server logs by default (no request logging)', () => {
  let server: LoggedServer;
  before(async () => {
    server = await startLoggedServer(`log-5xx-master-${randomBytes(24).toString('base64url')}`, {}, false);
  });
  after(() => server?.close());

  /** The lines logged while `run` ran, parsed. */
  const loggedDuring = async (run: () => Promise<void>) => {
    const from = server.lines.length;
    await run();
    return server.lines.slice(from).map((line) => JSON.parse(line) as { level: number; msg: string; req?: { method?: string; url?: string }; err?: { message?: string }; reason?: string });
  };

  it('names the request that failed — method and address, secrets redacted — next to the error, on every part of the server', async () => {
    const { gatehouse } = server;
    const admin = await createClient(gatehouse, { name: 'Admin', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true }, gatehouse.clock());
    const adminToken = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.client.id, admin.secret!) } })).body.access_token as string;
    const handle = gatehouse.tokenEndpoint.handle;
    const fail = (error: Error) => {
      gatehouse.tokenEndpoint.handle = async () => {
        throw error;
      };
    };
    try {
      // The protocol endpoints: a bug (500), and a database that does not answer (503).
      const failed = await loggedDuring(async () => {
        fail(new Error('the token table is on fire'));
        assert.equal((await post(`${server.url}/token?access_token=query-secret-1234`, { grant_type: 'client_credentials' })).status, 500);
        fail(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
        assert.equal((await post(`${server.url}/access_token`, { grant_type: 'client_credentials' })).status, 503);
      });
      const error = failed.find((line) => line.msg === 'request failed');
      assert.equal(error?.err?.message, 'the token table is on fire');
      assert.deepEqual([error?.req?.method, error?.req?.url], ['POST', '/token?access_token=[redacted]']);
      const unavailable = failed.find((line) => line.msg === 'database unavailable');
      assert.deepEqual([unavailable?.req?.method, unavailable?.req?.url], ['POST', '/access_token']);
    } finally {
      gatehouse.tokenEndpoint.handle = handle;
    }

    // A page.
    const login = gatehouse.login.login;
    gatehouse.login.login = async () => {
      throw new TypeError('cannot read the password store');
    };
    try {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const failed = await loggedDuring(async () => {
        const res = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email: 'someone@example.com', password: 'a password of theirs' } });
        assert.equal(res.status, 500);
      });
      const error = failed.find((line) => line.msg === 'page failed');
      assert.equal(error?.err?.message, 'cannot read the password store');
      assert.deepEqual([error?.req?.method, error?.req?.url], ['POST', '/login']);
    } finally {
      gatehouse.login.login = login;
    }

    // The admin API.
    const create = gatehouse.storage.users.create;
    gatehouse.storage.users.create = async () => {
      throw new Error('disk full');
    };
    try {
      const failed = await loggedDuring(async () => {
        const res = await fetch(`${server.url}/admin/v1/users`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ email: 'fails@example.com', password: 'a long enough password' }) });
        assert.equal(res.status, 500);
      });
      const error = failed.find((line) => line.msg === 'admin request failed');
      assert.equal(error?.err?.message, 'disk full');
      assert.deepEqual([error?.req?.method, error?.req?.url], ['POST', '/admin/v1/users']);
    } finally {
      gatehouse.storage.users.create = create;
    }
    assert.doesNotMatch(server.lines.join(''), /query-secret-1234|a password of theirs|a long enough password/);
  });
});
