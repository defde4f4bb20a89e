import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * curl, with the requests of every page in /work/shared/reference/ as the pages write them: only
 * the host is replaced by the test server's URL and the placeholders by real credentials. Where a
 * page describes a request without printing it (BIMobject, Procore), the request is the plainest
 * curl that does what the page says. The responses must have the shapes the pages show.
 *
 * curl runs with execFile, never spawnSync: the server lives in this process, and a synchronous
 * child would block the event loop that has to answer it.
 */
const USER = { email: 'mary@example.com', password: 'correct-horse-battery-staple', name: 'Mary Jackson' };
const REDIRECT_URI = 'https://integrator.example.com/procore/callback';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** The scopes BIMData lists for a ProjectAccessToken. */
const PROJECT_SCOPES = ['bcf:read', 'bcf:write', 'document:read', 'document:write', 'model:read', 'model:write'];

/**
 * A command as a page prints it, split into arguments as a POSIX shell would: backslash-newline
 * continues the line, '…' is literal, "…" honours \" and \\.
 */
function shellWords(command: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === '\\' && command[i + 1] === '\n') {
      i++;
    } else if (c === ' ' || c === '\n' || c === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'") {
      const end = command.indexOf("'", i + 1);
      assert.ok(end > i, `unterminated ' in ${command}`);
      word = (word ?? '') + command.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      word ??= '';
      for (i++; command[i] !== '"'; i++) {
        assert.ok(i < command.length, `unterminated " in ${command}`);
        if (command[i] === '\\' && (command[i + 1] === '"' || command[i + 1] === '\\')) i++;
        word += command[i];
      }
    } else if (c === '\\') {
      word = (word ?? '') + command[++i];
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** Replaces each key by its value, and checks every key occurred (so a page's placeholder is never left in). */
function fill(template: string, values: Record<string, string>): string {
  let filled = template;
  for (const [placeholder, value] of Object.entries(values)) {
    assert.ok(filled.includes(placeholder), `${placeholder} is not in ${template}`);
    filled = filled.split(placeholder).join(value);
  }
  return filled;
}

interface CurlResponse {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

/**
 * Runs a printed curl command. Only output options are added (--silent --show-error, and
 * --dump-header - to see the status and headers); the request is the command's own.
 */
function curl(command: string): Promise<CurlResponse> {
  const [program, ...args] = shellWords(command);
  assert.equal(program, 'curl');
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
    execFile('curl', [...args, '--silent', '--show-error', '--dump-header', '-'], { env, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`curl failed: ${error.message}\n${stderr}\n${command}`));
      const split = stdout.indexOf('\r\n\r\n');
      const head = stdout.slice(0, split).split('\r\n');
      const text = stdout.slice(split + 4);
      const headers = new Headers();
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text for the assertion to show
      }
      resolve({ status: Number(head[0]!.split(' ')[1]), headers, text, body });
    });
  });
}

/** The Bindeo shapes: exactly these members, Bearer, an hour. */
function assertBindeoShape(response: CurlResponse, members: string[]) {
  assert.equal(response.status, 200, response.text);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(response.headers.get('cache-control'), 'no-store');
  assert.deepEqual(Object.keys(response.body).sort(), [...members].sort(), response.text);
  assert.equal(response.body.token_type, 'Bearer');
  assert.equal(response.body.expires_in, 3600);
  assert.equal(typeof response.body.access_token, 'string');
  if (members.includes('refresh_token')) assert.match(response.body.refresh_token, /^gate_rt_/);
}

for (const dialect of DIALECTS) {
  describe(`the reference pages' requests, sent with curl (${dialect})`, () => {
    let server: TestServer;
    let userId: string;
    let jwks: ReturnType<typeof createRemoteJWKSet>;
    /** Moves Gatehouse's clock, for the code expiry; reset after each use. */
    let clockOffset = 0;

    before(async () => {
      server = await startTestServer(dialect, {
        clock: () => Math.floor(Date.now() / 1000) + clockOffset,
        // Procore documents the implicit grant; Gatehouse offers it only when the operator enables it.
        config: { implicit: { enabled: true } },
      });
      userId = (await server.user(USER.email, USER.password)).id;
      jwks = createRemoteJWKSet(new URL(`${server.url}/jwks.json`));
    });
    after(() => server.close());

    const verify = async (token: string) =>
      (await jwtVerify(token, jwks, { issuer: server.url, audience: server.config.tokens.audience, typ: 'at+jwt' })).payload as Record<string, any>;

    /** Plays the person at /authorize: signs in, then allows or denies on the consent page; returns where the browser is sent. */
    async function person(authorizeUrl: string, decision: 'allow' | 'deny' = 'allow'): Promise<URL> {
      const browser = new HttpBrowser();
      let page = await browser.follow(authorizeUrl, server.url);
      for (let step = 0; step < 4 && 'url' in page && page.url; step++) {
        assert.equal(page.status, 200, page.text.slice(0, 500));
        const path = new URL(page.url).pathname;
        if (path === '/login') {
          page = await browser.follow(`${server.url}/login`, server.url, {
            form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: USER.email, password: USER.password },
          });
        } else if (path === '/consent') {
          assert.match(page.text, /Allow/);
          assert.match(page.text, /Deny/);
          page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision } });
        } else {
          break;
        }
      }
      if (!page.location?.startsWith(REDIRECT_URI)) assert.fail(`expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 500)}`);
      return new URL(page.location);
    }

    describe('bindeo-authentication.md: JSON bodies to /access_token', () => {
      // The three shell examples, verbatim.
      const CLIENT_CREDENTIALS = `curl --request POST \\
  --url https://api.bindeo.com/access_token \\
  --header 'content-type: application/json' \\
  --data '{"grant_type":"client_credentials","client_id":"YOUR CLIENT ID","client_secret":"YOUR CLIENT SECRET"}'`;
      const PASSWORD = `curl --request POST \\
  --url https://api.bindeo.com/access_token \\
  --header 'content-type: application/json' \\
  --data '{"grant_type":"password","client_id":"YOUR CLIENT ID","client_secret":"YOUR CLIENT SECRET","username":"USERNAME","password":"USER PASSWORD"}'`;
      const REFRESH = `curl --request POST \\
  --url https://api.bindeo.com/access_token \\
  --header 'content-type: application/json' \\
  --data '{"grant_type":"refresh_token","client_id":"YOUR CLIENT ID","client_secret":"YOUR CLIENT SECRET","refresh_token":"YOUR VALID REFRESH TOKEN"}'`;

      let machine: { id: string; secret: string };
      let trusted: { id: string; secret: string };
      before(async () => {
        machine = await server.client({ name: 'Bindeo machine', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
        // "Those clients will need to ask for special privileges": the password grant is an operator's privilege.
        trusted = await server.client({ name: 'Bindeo trusted app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'objects:download'] });
      });
      const host = () => ({ 'https://api.bindeo.com': server.url });

      it('client credentials: {token_type, expires_in, access_token}', async () => {
        const response = await curl(fill(CLIENT_CREDENTIALS, { ...host(), 'YOUR CLIENT ID': machine.id, 'YOUR CLIENT SECRET': machine.secret }));
        assertBindeoShape(response, ['token_type', 'expires_in', 'access_token']);
        const claims = await verify(response.body.access_token);
        assert.equal(claims.sub, machine.id);
        assert.equal(claims.scope, 'objects:read');
      });

      it('password, then refresh_token: {token_type, expires_in, access_token, refresh_token} both times', async () => {
        const password = await curl(fill(PASSWORD, { ...host(), 'YOUR CLIENT ID': trusted.id, 'YOUR CLIENT SECRET': trusted.secret, USERNAME: USER.email, 'USER PASSWORD': USER.password }));
        assertBindeoShape(password, ['token_type', 'expires_in', 'access_token', 'refresh_token']);
        assert.equal((await verify(password.body.access_token)).sub, userId);

        const values = { ...host(), 'YOUR CLIENT ID': trusted.id, 'YOUR CLIENT SECRET': trusted.secret, 'YOUR VALID REFRESH TOKEN': password.body.refresh_token };
        const refreshed = await curl(fill(REFRESH, values));
        assertBindeoShape(refreshed, ['token_type', 'expires_in', 'access_token', 'refresh_token']);
        assert.notEqual(refreshed.body.refresh_token, password.body.refresh_token);
        const claims = await verify(refreshed.body.access_token);
        assert.equal(claims.sub, userId);
        assert.equal(claims.scope, 'objects:read objects:download');

        // The token goes in `Authorization: Bearer YOURTOKEN` on every call.
        const userinfo = await curl(`curl --header 'Authorization: Bearer ${refreshed.body.access_token}' ${server.url}/userinfo`);
        // The trusted app's token has no openid scope: Gatehouse's own /userinfo refuses it, with an RFC 6750 challenge.
        assert.equal(userinfo.status, 403, userinfo.text);
        assert.match(userinfo.headers.get('www-authenticate') ?? '', /^Bearer .*error="insufficient_scope"/);

        // The refresh token was rotated: the old one, presented again, is refused.
        const replay = await curl(fill(REFRESH, values));
        assert.equal(replay.status, 400);
        assert.equal(replay.body.error, 'invalid_grant');
      });

      it('errors come back as JSON: a wrong secret is 401 invalid_client, a wrong password 400 invalid_grant', async () => {
        const wrongSecret = await curl(fill(CLIENT_CREDENTIALS, { ...host(), 'YOUR CLIENT ID': machine.id, 'YOUR CLIENT SECRET': 'gate_cs_wrong' }));
        assert.equal(wrongSecret.status, 401);
        assert.equal(wrongSecret.body.error, 'invalid_client');
        const wrongPassword = await curl(fill(PASSWORD, { ...host(), 'YOUR CLIENT ID': trusted.id, 'YOUR CLIENT SECRET': trusted.secret, USERNAME: USER.email, 'USER PASSWORD': 'not-the-password' }));
        assert.equal(wrongPassword.status, 400);
        assert.equal(wrongPassword.body.error, 'invalid_grant');
        const notPrivileged = await curl(fill(PASSWORD, { ...host(), 'YOUR CLIENT ID': machine.id, 'YOUR CLIENT SECRET': machine.secret, USERNAME: USER.email, 'USER PASSWORD': USER.password }));
        assert.equal(notPrivileged.status, 400);
        assert.equal(notPrivileged.body.error, 'unauthorized_client');
      });
    });

    describe('bimobject-authorization-flows.md: client credentials, in the body or a Base64 Authorization header', () => {
      const IN_BODY = `curl --request POST \\
  --url https://accounts.bimobject.com/token \\
  --header 'Content-Type: application/x-www-form-urlencoded' \\
  --data grant_type=client_credentials \\
  --data client_id=YOUR_CLIENT_ID \\
  --data client_secret=YOUR_CLIENT_SECRET`;
      const IN_HEADER = `curl --request POST \\
  --url https://accounts.bimobject.com/token \\
  --header 'Authorization: Basic BASE64_CLIENT_ID_COLON_SECRET' \\
  --header 'Content-Type: application/x-www-form-urlencoded' \\
  --data grant_type=client_credentials`;
      const WITH_SCOPE = `curl --request POST \\
  --url https://accounts.bimobject.com/token \\
  --header 'Authorization: Basic BASE64_CLIENT_ID_COLON_SECRET' \\
  --data grant_type=client_credentials \\
  --data scope=SCOPE`;

      let app: { id: string; secret: string };
      let admin: { id: string; secret: string };
      before(async () => {
        app = await server.client({ name: 'BIMobject integration', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
        admin = await server.client({ name: 'BIMobject back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
      });
      const base64 = (client: { id: string; secret: string }) => Buffer.from(`${client.id}:${client.secret}`).toString('base64');

      it('issues the same token response for the secret in the body and in the Basic header', async () => {
        const inBody = await curl(fill(IN_BODY, { 'https://accounts.bimobject.com': server.url, YOUR_CLIENT_ID: app.id, YOUR_CLIENT_SECRET: app.secret }));
        const inHeader = await curl(fill(IN_HEADER, { 'https://accounts.bimobject.com': server.url, BASE64_CLIENT_ID_COLON_SECRET: base64(app) }));
        for (const response of [inBody, inHeader]) {
          assert.equal(response.status, 200, response.text);
          assert.equal(response.headers.get('cache-control'), 'no-store');
          assert.deepEqual(Object.keys(response.body).sort(), ['access_token', 'expires_in', 'token_type']);
          assert.equal(response.body.token_type, 'Bearer');
          const claims = await verify(response.body.access_token);
          assert.equal(claims.sub, app.id);
          assert.equal(claims.scope, 'objects:read');
        }
      });

      it('cannot be used for downloading binary content: objects:download is invalid_scope', async () => {
        const response = await curl(fill(WITH_SCOPE, { 'https://accounts.bimobject.com': server.url, BASE64_CLIENT_ID_COLON_SECRET: base64(app), SCOPE: 'objects:download' }));
        assert.equal(response.status, 400, response.text);
        assert.equal(response.body.error, 'invalid_scope');
      });

      it('for admin: an admin client gets admin scopes only, and no other client gets them', async () => {
        const response = await curl(fill(IN_HEADER, { 'https://accounts.bimobject.com': server.url, BASE64_CLIENT_ID_COLON_SECRET: base64(admin) }));
        assert.equal(response.status, 200, response.text);
        assert.equal((await verify(response.body.access_token)).scope, 'admin:clients admin:users');
        const refused = await curl(fill(WITH_SCOPE, { 'https://accounts.bimobject.com': server.url, BASE64_CLIENT_ID_COLON_SECRET: base64(app), SCOPE: 'admin:clients' }));
        assert.equal(refused.status, 400, refused.text);
        assert.equal(refused.body.error, 'invalid_scope');
      });

      it('for admin, with the secret in the body: admin scopes only, and a non-admin scope is invalid_scope', async () => {
        const values = { 'https://accounts.bimobject.com': server.url, YOUR_CLIENT_ID: admin.id, YOUR_CLIENT_SECRET: admin.secret };
        const response = await curl(fill(IN_BODY, values));
        assert.equal(response.status, 200, response.text);
        assert.equal(response.headers.get('cache-control'), 'no-store');
        assert.deepEqual(Object.keys(response.body).sort(), ['access_token', 'expires_in', 'token_type']);
        const claims = await verify(response.body.access_token);
        assert.equal(claims.sub, admin.id);
        assert.equal(claims.scope, 'admin:clients admin:users');

        for (const scope of ['objects:read', 'admin:users objects:read']) {
          const refused = await curl(`${fill(IN_BODY, values)} \\\n  --data-urlencode 'scope=${scope}'`);
          assert.equal(refused.status, 400, `${scope}: ${refused.text}`);
          assert.equal(refused.body.error, 'invalid_scope', scope);
        }
      });

      it('a wrong secret in the Basic header is 401 invalid_client with a Basic challenge', async () => {
        const response = await curl(fill(IN_HEADER, { 'https://accounts.bimobject.com': server.url, BASE64_CLIENT_ID_COLON_SECRET: base64({ id: app.id, secret: 'gate_cs_wrong' }) }));
        assert.equal(response.status, 401);
        assert.equal(response.body.error, 'invalid_client');
        assert.match(response.headers.get('www-authenticate') ?? '', /^Basic/);
      });

      it('authorization code with proof key: a native app exchanges the code with its code_verifier, no secret', async () => {
        const native = await server.client({ name: 'BIMobject desktop', type: 'public', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token'], scopes: ['objects:read', 'objects:download'] });
        const verifier = randomBytes(32).toString('base64url');
        const challenge = createHash('sha256').update(verifier).digest('base64url');
        const callback = await person(
          `${server.url}/authorize?response_type=code&client_id=${native.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&scope=objects%3Adownload&state=xyz&code_challenge=${challenge}&code_challenge_method=S256`,
        );
        const code = callback.searchParams.get('code')!;
        const EXCHANGE = `curl --request POST \\
  --url https://accounts.bimobject.com/token \\
  --data grant_type=authorization_code \\
  --data client_id=YOUR_CLIENT_ID \\
  --data-urlencode redirect_uri=REDIRECT_URI \\
  --data code=AUTHORIZATION_CODE \\
  --data code_verifier=CODE_VERIFIER`;
        const values = { 'https://accounts.bimobject.com': server.url, YOUR_CLIENT_ID: native.id, REDIRECT_URI, AUTHORIZATION_CODE: code, CODE_VERIFIER: verifier };
        const wrongVerifier = await curl(fill(EXCHANGE, { ...values, CODE_VERIFIER: randomBytes(32).toString('base64url') }));
        assert.equal(wrongVerifier.status, 400);
        assert.equal(wrongVerifier.body.error, 'invalid_grant');

        const callbackAgain = await person(
          `${server.url}/authorize?response_type=code&client_id=${native.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&scope=objects%3Adownload&state=xyz&code_challenge=${challenge}&code_challenge_method=S256`,
        );
        const response = await curl(fill(EXCHANGE, { ...values, AUTHORIZATION_CODE: callbackAgain.searchParams.get('code')! }));
        assert.equal(response.status, 200, response.text);
        assert.equal(response.body.token_type, 'Bearer');
        assert.match(response.body.refresh_token, /^gate_rt_/);
        const claims = await verify(response.body.access_token);
        assert.equal(claims.sub, userId);
        assert.equal(claims.scope, 'objects:download', 'a user-delegated token may download');

        // "You can use refresh tokens to extend the validity of the access token": the page prints no
        // request for it, so the plainest one, RFC 6749 §6 for a public client.
        const REFRESH = `curl --request POST \\
  --url https://accounts.bimobject.com/token \\
  --data grant_type=refresh_token \\
  --data client_id=YOUR_CLIENT_ID \\
  --data refresh_token=REFRESH_TOKEN`;
        const first = { 'https://accounts.bimobject.com': server.url, YOUR_CLIENT_ID: native.id, REFRESH_TOKEN: response.body.refresh_token };
        const refreshed = await curl(fill(REFRESH, first));
        assert.equal(refreshed.status, 200, refreshed.text);
        assert.match(refreshed.body.refresh_token, /^gate_rt_/);
        assert.notEqual(refreshed.body.refresh_token, response.body.refresh_token, 'the refresh token is rotated');
        const extended = await verify(refreshed.body.access_token);
        assert.equal(extended.sub, userId);
        assert.equal(extended.scope, 'objects:download', 'the refreshed token may still download');
        assert.ok(extended.exp > claims.exp || extended.jti !== claims.jti, 'a new access token');
        const replayed = await curl(fill(REFRESH, first));
        assert.equal(replayed.status, 400);
        assert.equal(replayed.body.error, 'invalid_grant');
      });
    });

    describe('bimdata-authentication.md: an application’s ApiKey, and project access tokens for the viewer', () => {
      /*
       * The page's ApiKey example calls the platform's API (POST https://api.bimdata.io/cloud), not
       * the authorization server. Against Gatehouse the same request, with the same headers
       * (Content-Type: application/json, Authorization: ApiKey …), goes to the Gatehouse API that
       * takes an API key: POST /projects/{id}/access-tokens, with the body the page describes for a
       * ProjectAccessToken (expires_at 12 hours ahead, as the page recommends; scopes ["model:read"],
       * the minimum for the viewer) instead of {"name": "My First Cloud"}.
       */
      const API_KEY_CALL = `curl --request POST 'https://api.bimdata.io/cloud' \\
 --header 'Content-Type: application/json' \\
 --header 'Authorization: ApiKey YOUR_API_KEY' \\
 --data '{"name": "My First Cloud"}'`;

      let application: { id: string; secret: string };
      let apiKey: string;
      before(async () => {
        // "The access type must be set to Confidential. Even if base_url and redirect_uri won't be used, you must set values."
        application = await server.client({
          name: 'BIMData backend',
          type: 'confidential',
          baseUrl: 'https://backend.example.com',
          redirectUris: ['https://backend.example.com/callback'],
          grantTypes: ['client_credentials'],
          scopes: ['objects:read', 'model:read', 'bcf:read'],
        });
        // "Once created, you'll be given a client_id, a client_secret and an ApiKey."
        const client = (await server.gatehouse.storage.clients.find(application.id))!;
        apiKey = (await server.gatehouse.apiKeys.create(client, { name: 'backend' }, server.gatehouse.clock())).value;
      });

      const twelveHoursAhead = () => new Date(Date.now() + 12 * 3600_000).toISOString();
      const projectTokenCall = (authorization: string, project: string, expiresAt: string, scopes = '["model:read"]') =>
        curl(
          API_KEY_CALL.replace('https://api.bimdata.io/cloud', `${server.url}/projects/${project}/access-tokens`)
            .replace('ApiKey YOUR_API_KEY', authorization)
            .replace('{"name": "My First Cloud"}', `{"expires_at": "${expiresAt}", "scopes": ${scopes}}`),
        );

      /**
       * The ProjectAccessToken response, and a token bound to the project with exactly the scopes
       * asked for, on behalf of whoever held the credential (the application unless told otherwise).
       */
      async function assertProjectToken(
        response: CurlResponse,
        project: string,
        expiresAt: string,
        { scopes = ['model:read'], sub = application.id, clientId = sub }: { scopes?: string[]; sub?: string; clientId?: string } = {},
      ) {
        assert.equal(response.status, 201, response.text);
        assert.equal(response.headers.get('cache-control'), 'no-store');
        assert.deepEqual(Object.keys(response.body).sort(), ['access_token', 'expires_at', 'project', 'scopes', 'token_type']);
        assert.equal(response.body.token_type, 'Bearer');
        assert.deepEqual([...response.body.scopes].sort(), [...scopes].sort());
        assert.equal(response.body.project, project);
        assert.equal(Date.parse(response.body.expires_at), Math.floor(Date.parse(expiresAt) / 1000) * 1000);
        const claims = await verify(response.body.access_token);
        assert.equal(claims.project, project);
        assert.deepEqual(claims.scope.split(' ').sort(), [...scopes].sort());
        assert.equal(claims.sub, sub);
        assert.equal(claims.client_id, clientId);
        assert.equal(claims.exp, Math.floor(Date.parse(expiresAt) / 1000));
      }

      it('the ApiKey call, Authorization: ApiKey …, creates a 12-hour project access token with model:read', async () => {
        const expiresAt = twelveHoursAhead();
        await assertProjectToken(await projectTokenCall(`ApiKey ${apiKey}`, '42', expiresAt), '42', expiresAt);
      });

      it('client_credentials first, then the same call with the Bearer token', async () => {
        const token = await curl(`curl --request POST --url ${server.url}/token --user ${application.id}:${application.secret} --data grant_type=client_credentials`);
        assert.equal(token.status, 200, token.text);
        const expiresAt = twelveHoursAhead();
        await assertProjectToken(await projectTokenCall(`Bearer ${token.body.access_token}`, 'p-7', expiresAt), 'p-7', expiresAt);
      });

      it('creates a project access token with each scope the page lists, by ApiKey and by Bearer, and with all six at once', async () => {
        const viewerBackend = await server.client({
          name: 'BIMData viewer backend',
          type: 'confidential',
          baseUrl: 'https://viewer.example.com',
          redirectUris: ['https://viewer.example.com/callback'],
          grantTypes: ['client_credentials'],
          scopes: PROJECT_SCOPES,
        });
        const client = (await server.gatehouse.storage.clients.find(viewerBackend.id))!;
        const key = (await server.gatehouse.apiKeys.create(client, { name: 'viewer' }, server.gatehouse.clock())).value;
        const token = await curl(`curl --request POST --url ${server.url}/token --user ${viewerBackend.id}:${viewerBackend.secret} --data grant_type=client_credentials --data-urlencode 'scope=${PROJECT_SCOPES.join(' ')}'`);
        assert.equal(token.status, 200, token.text);

        for (const scope of PROJECT_SCOPES) {
          for (const authorization of [`ApiKey ${key}`, `Bearer ${token.body.access_token}`]) {
            const expiresAt = twelveHoursAhead();
            const response = await projectTokenCall(authorization, 'viewer-1', expiresAt, JSON.stringify([scope]));
            await assertProjectToken(response, 'viewer-1', expiresAt, { scopes: [scope], sub: viewerBackend.id });
          }
        }
        const expiresAt = twelveHoursAhead();
        const all = await projectTokenCall(`ApiKey ${key}`, 'viewer-1', expiresAt, JSON.stringify(PROJECT_SCOPES));
        await assertProjectToken(all, 'viewer-1', expiresAt, { scopes: PROJECT_SCOPES, sub: viewerBackend.id });
      });

      it('takes an ISO 8601 expires_at with an offset from UTC, and with fractional seconds, as the instant it names', async () => {
        // A whole second twelve hours ahead, written as the wall-clock time at an offset, with a fraction after it.
        const instant = (Math.floor(Date.now() / 1000) + 12 * 3600) * 1000;
        const at = (offsetMinutes: number, fraction: string) => {
          const wallClock = new Date(instant + offsetMinutes * 60_000).toISOString().slice(0, 19);
          const hours = String(Math.floor(Math.abs(offsetMinutes) / 60)).padStart(2, '0');
          const minutes = String(Math.abs(offsetMinutes) % 60).padStart(2, '0');
          return `${wallClock}${fraction}${offsetMinutes < 0 ? '-' : '+'}${hours}:${minutes}`;
        };
        for (const expiresAt of [at(60, ''), at(60, '.250'), at(-210, '.123456789'), at(330, '.5')]) {
          const response = await projectTokenCall(`ApiKey ${apiKey}`, '42', expiresAt);
          await assertProjectToken(response, '42', expiresAt);
          assert.equal((await verify(response.body.access_token)).exp, instant / 1000, `${expiresAt} names the same instant, the fraction dropped`);
          assert.equal(Date.parse(response.body.expires_at), instant, expiresAt);
        }
      });

      it('a user’s Bearer token from the authorization code flow creates a project token for that user, within that token’s scopes', async () => {
        // The application may ask for model:write, but this user's token was not given it. It keeps its
        // users signed in (refresh tokens), so it may renew their token at will and the viewer token
        // may last the recommended 12 hours; one whose grant ends with the token gets no longer.
        const webApp = await server.client({ name: 'BIMData web app', type: 'confidential', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token'], scopes: ['model:read', 'model:write', 'bcf:read'] });
        const callback = await person(`${server.url}/authorize?response_type=code&client_id=${webApp.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&scope=model%3Aread%20bcf%3Aread&state=viewer`);
        const code = callback.searchParams.get('code')!;
        const tokens = await curl(
          `curl --request POST --url ${server.url}/token --user ${webApp.id}:${webApp.secret} --data grant_type=authorization_code --data code=${code} --data-urlencode redirect_uri=${REDIRECT_URI}`,
        );
        assert.equal(tokens.status, 200, tokens.text);
        const userToken = `Bearer ${tokens.body.access_token}`;

        const expiresAt = twelveHoursAhead();
        const response = await projectTokenCall(userToken, 'p-9', expiresAt, '["model:read", "bcf:read"]');
        await assertProjectToken(response, 'p-9', expiresAt, { scopes: ['model:read', 'bcf:read'], sub: userId, clientId: webApp.id });

        const beyond = await projectTokenCall(userToken, 'p-9', twelveHoursAhead(), '["model:write"]');
        assert.equal(beyond.status, 403, beyond.text);
        assert.equal(beyond.body.error, 'insufficient_scope');
      });

      it('refuses scopes the key does not hold, and non-project scopes', async () => {
        const notHeld = await projectTokenCall(`ApiKey ${apiKey}`, '42', twelveHoursAhead(), '["model:write"]');
        assert.equal(notHeld.status, 403, notHeld.text);
        assert.equal(notHeld.body.error, 'insufficient_scope');
        const notProject = await projectTokenCall(`ApiKey ${apiKey}`, '42', twelveHoursAhead(), '["objects:read"]');
        assert.equal(notProject.status, 400, notProject.text);
        assert.equal(notProject.body.error, 'invalid_scope');
      });

      it('the ApiKey has no expiry and works until it is revoked, then it is refused', async () => {
        const client = (await server.gatehouse.storage.clients.find(application.id))!;
        const key = (await server.gatehouse.apiKeys.create(client, { name: 'to revoke', scopes: ['model:read'] }, server.gatehouse.clock())).value;
        const introspected = await curl(`curl --request POST --url ${server.url}/introspect --user ${application.id}:${application.secret} --data token=${key}`);
        assert.equal(introspected.body.active, true, introspected.text);
        assert.equal(introspected.body.token_type, 'ApiKey');
        assert.equal(introspected.body.exp, undefined, 'no expire date');
        assert.equal((await projectTokenCall(`ApiKey ${key}`, '42', twelveHoursAhead())).status, 201);

        const revoked = await curl(`curl --request POST --url ${server.url}/revoke --user ${application.id}:${application.secret} --data token=${key}`);
        assert.equal(revoked.status, 200);
        const refused = await projectTokenCall(`ApiKey ${key}`, '42', twelveHoursAhead());
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error, 'invalid_token');
        assert.match(refused.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      });

      /*
       * "OpenID Connect allows you to impersonate users with your app": the page prints no request.
       * Gatehouse does it with RFC 8693 token exchange, for an application the operator trusted
       * with impersonation; the plainest curl for it names the user as requested_subject.
       */
      const IMPERSONATE = `curl --request POST \\
  --url https://connect.bimdata.io/token \\
  --user YOUR_CLIENT_ID:YOUR_CLIENT_SECRET \\
  --data grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
  --data requested_subject=USER_ID \\
  --data-urlencode 'scope=SCOPES'`;

      it('impersonation: a trusted application gets a token naming the user as subject and itself as actor', async () => {
        const backOffice = await server.client({ name: 'BIMData back office', grantTypes: [TOKEN_EXCHANGE], scopes: ['objects:read', 'objects:download', 'model:read'], allowImpersonation: true });
        const values = { 'https://connect.bimdata.io': server.url, YOUR_CLIENT_ID: backOffice.id, YOUR_CLIENT_SECRET: backOffice.secret, USER_ID: userId, SCOPES: 'objects:read objects:download' };
        const response = await curl(fill(IMPERSONATE, values));
        assert.equal(response.status, 200, response.text);
        assert.equal(response.headers.get('cache-control'), 'no-store');
        assert.equal(response.body.token_type, 'Bearer');
        assert.equal(response.body.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
        assert.equal(response.body.refresh_token, undefined);
        const claims = await verify(response.body.access_token);
        assert.equal(claims.sub, userId, 'the user is the subject');
        assert.deepEqual(claims.act, { sub: backOffice.id, client_id: backOffice.id }, 'the application is the actor');
        assert.equal(claims.client_id, backOffice.id);
        assert.equal(claims.scope, 'objects:read objects:download', 'user-only scopes too, since it acts for a user');

        // The same request from an application without the privilege is refused.
        const untrusted = await server.client({ name: 'BIMData untrusted app', grantTypes: [TOKEN_EXCHANGE], scopes: ['objects:read', 'objects:download'] });
        const refused = await curl(fill(IMPERSONATE, { ...values, YOUR_CLIENT_ID: untrusted.id, YOUR_CLIENT_SECRET: untrusted.secret }));
        assert.equal(refused.status, 400, refused.text);
        assert.equal(refused.body.error, 'unauthorized_client');
      });
    });

    describe('procore-choosing-a-grant-type.md: /authorize, consent, single-use code, /token with the client secret', () => {
      const TOKEN = `curl --request POST \\
  --url https://login.procore.com/token \\
  --header 'Content-Type: application/x-www-form-urlencoded' \\
  --data grant_type=authorization_code \\
  --data code=AUTHORIZATION_CODE \\
  --data client_id=YOUR_CLIENT_ID \\
  --data client_secret=YOUR_CLIENT_SECRET \\
  --data-urlencode redirect_uri=YOUR_REDIRECT_URI`;

      let webServerApp: { id: string; secret: string };
      before(async () => {
        webServerApp = await server.client({ name: 'Procore web server app', type: 'confidential', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token'], scopes: ['objects:read', 'objects:download'] });
      });
      const authorizeUrl = (state: string, extra = '') =>
        `${server.url}/authorize?response_type=code&client_id=${webServerApp.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&state=${state}${extra}`;
      const exchange = (code: string) =>
        curl(fill(TOKEN, { 'https://login.procore.com': server.url, AUTHORIZATION_CODE: code, YOUR_CLIENT_ID: webServerApp.id, YOUR_CLIENT_SECRET: webServerApp.secret, YOUR_REDIRECT_URI: REDIRECT_URI }));

      it('allow: the code comes back with the state, and /token answers with the access token; the code works once', async () => {
        const state = 'af0ifjsldkj42';
        const callback = await person(authorizeUrl(state));
        assert.equal(callback.origin + callback.pathname, REDIRECT_URI);
        assert.equal(callback.searchParams.get('state'), state, 'the state is returned as it was sent');
        assert.equal(callback.searchParams.get('iss'), server.url);
        const code = callback.searchParams.get('code')!;
        assert.match(code, /^gate_ac_/);

        const response = await exchange(code);
        assert.equal(response.status, 200, response.text);
        assert.equal(response.headers.get('cache-control'), 'no-store');
        assert.deepEqual(Object.keys(response.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'scope', 'token_type']);
        assert.equal(response.body.token_type, 'Bearer');
        assert.equal(response.body.expires_in, 3600);
        assert.equal(response.body.scope, 'objects:read objects:download');
        const claims = await verify(response.body.access_token);
        assert.equal(claims.sub, userId, 'on behalf of the user');
        assert.equal(claims.client_id, webServerApp.id);

        // "can only be used once"
        const again = await exchange(code);
        assert.equal(again.status, 400);
        assert.equal(again.body.error, 'invalid_grant');
      });

      it('deny: access_denied comes back to the application, with the state', async () => {
        const callback = await person(authorizeUrl('deny-state', '&prompt=consent'), 'deny');
        assert.equal(callback.searchParams.get('error'), 'access_denied');
        assert.equal(callback.searchParams.get('state'), 'deny-state');
        assert.equal(callback.searchParams.get('code'), null);
      });

      it('the code expires after 10 minutes', async () => {
        const inTime = (await person(authorizeUrl('in-time')).then((url) => url.searchParams.get('code')))!;
        const late = (await person(authorizeUrl('late')).then((url) => url.searchParams.get('code')))!;
        try {
          clockOffset = 590;
          assert.equal((await exchange(inTime)).status, 200, 'still valid just before 10 minutes');
          clockOffset = 601;
          const response = await exchange(late);
          assert.equal(response.status, 400, response.text);
          assert.equal(response.body.error, 'invalid_grant');
        } finally {
          clockOffset = 0;
        }
      });

      it('the exchange needs the client secret: a wrong one is 401 invalid_client', async () => {
        const code = (await person(authorizeUrl('secret')).then((url) => url.searchParams.get('code')))!;
        const response = await curl(fill(TOKEN, { 'https://login.procore.com': server.url, AUTHORIZATION_CODE: code, YOUR_CLIENT_ID: webServerApp.id, YOUR_CLIENT_SECRET: 'gate_cs_wrong', YOUR_REDIRECT_URI: REDIRECT_URI }));
        assert.equal(response.status, 401);
        assert.equal(response.body.error, 'invalid_client');
      });

      it('implicit: the access token comes back in the hash fragment, without the secret', async () => {
        const spa = await server.client({ name: 'Procore SPA', type: 'public', redirectUris: [REDIRECT_URI], grantTypes: ['implicit'], scopes: ['objects:read'] });
        const callback = await person(`${server.url}/authorize?response_type=token&client_id=${spa.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&state=spa-state`);
        assert.equal(callback.search, '', 'nothing in the query string');
        const fragment = new URLSearchParams(callback.hash.slice(1));
        assert.equal(fragment.get('token_type'), 'Bearer');
        assert.equal(fragment.get('state'), 'spa-state');
        assert.equal(fragment.get('expires_in'), '3600');
        const claims = await verify(fragment.get('access_token')!);
        assert.equal(claims.sub, userId);
        assert.equal(claims.client_id, spa.id);
      });

      it('implicit, deny: access_denied and the state come back in the hash fragment, with no token', async () => {
        const spa = await server.client({ name: 'Procore SPA, refused', type: 'public', redirectUris: [REDIRECT_URI], grantTypes: ['implicit'], scopes: ['objects:read'] });
        const callback = await person(`${server.url}/authorize?response_type=token&client_id=${spa.id}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&state=spa-deny`, 'deny');
        assert.equal(callback.origin + callback.pathname, REDIRECT_URI);
        assert.equal(callback.search, '', 'nothing in the query string');
        const fragment = new URLSearchParams(callback.hash.slice(1));
        assert.equal(fragment.get('error'), 'access_denied');
        assert.equal(fragment.get('state'), 'spa-deny');
        assert.equal(fragment.get('iss'), server.url);
        assert.equal(fragment.get('access_token'), null);
      });

      it('client credentials for a service account: a JSON response with the access token', async () => {
        const service = await server.client({ name: 'Procore service account', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
        const response = await curl(`curl --request POST --url ${server.url}/token --data grant_type=client_credentials --data client_id=${service.id} --data client_secret=${service.secret}`);
        assert.equal(response.status, 200, response.text);
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(decodeJwt(response.body.access_token).sub, service.id);
      });
    });
  });
}
