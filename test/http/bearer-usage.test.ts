import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

const BARE_CHALLENGE = 'Bearer realm="gatehouse"';

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the assertion to show
  }
  return { status: response.status, headers: response.headers, body };
}

/** RFC 6750 §3.1: a request with no credentials gets a challenge without an error code; the body still says why. */
function assertBareChallenge(res: Answer, what: string): void {
  assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.headers.get('www-authenticate'), BARE_CHALLENGE, what);
  assert.equal(typeof res.body.error, 'string', what);
}

/** RFC 6750 §3.1: `invalid_request` (400) with its challenge. */
function assertInvalidRequest(res: Answer, what: string): void {
  assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.error, 'invalid_request', what);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="invalid_request", error_description="[^"]+"$/, what);
}

/** RFC 9110 §15.5.6 with an RFC 6749-style body, as the token endpoint answers. */
function assertMethodNotAllowed(res: Answer, allow: string, what: string): void {
  assert.equal(res.status, 405, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.headers.get('allow'), allow, what);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, what);
  assert.equal(res.body.error, 'invalid_request', what);
  assert.equal(typeof res.body.error_description, 'string', what);
  assert.equal(res.headers.get('cache-control'), 'no-store', what);
}

for (const dialect of DIALECTS) {
  describe(`Bearer token usage (RFC 6750) and methods of the protocol endpoints (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };
    let api: { id: string; secret: string };
    let userToken: string;
    let noOpenidToken: string;
    let machineToken: string;

    before(async () => {
      server = await startTestServer(dialect);
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password'], scopes: ['openid', 'email', 'model:read', 'objects:read'] });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      await server.user('ada@example.com', 'correct horse battery staple');
      const password = async (scope: string) => {
        const res = await post(`${server.url}/token`, { grant_type: 'password', username: 'ada@example.com', password: 'correct horse battery staple', scope }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.access_token as string;
      };
      userToken = await password('openid email model:read');
      noOpenidToken = await password('model:read');
      const cc = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'model:read' }, { headers: { authorization: basic(app.id, app.secret) } });
      machineToken = cc.body.access_token;
    });
    after(() => server.close());

    const userinfo = (init: RequestInit & { query?: string } = {}) => call(`${server.url}/userinfo${init.query ?? ''}`, init);
    const form = (body: string, headers: Record<string, string> = {}): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
    const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    const projectToken = (authorization: string | undefined) =>
      call(`${server.url}/projects/p1/access-tokens`, json({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }, authorization === undefined ? {} : { authorization }));

    describe('userinfo', () => {
      it('takes the token in the Authorization header (GET and POST) or in a form or JSON body', async () => {
        for (const [label, init] of [
          ['GET with the header', { headers: { authorization: `Bearer ${userToken}` } }],
          ['POST with the header', { method: 'POST', headers: { authorization: `Bearer ${userToken}` } }],
          ['lower-case scheme', { headers: { authorization: `bearer ${userToken}` } }],
          ['form body', form(`access_token=${userToken}`)],
          ['JSON body', json({ access_token: userToken })],
        ] as const) {
          const res = await userinfo(init);
          assert.equal(res.status, 200, `${label}: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.email, 'ada@example.com', label);
          assert.equal(res.headers.get('cache-control'), 'no-store', label);
        }
      });

      it('answers a request without credentials with 401 and a challenge carrying no error code', async () => {
        for (const [label, init] of [
          ['GET without anything', {}],
          ['POST with an empty form', form('')],
          ['POST with an empty access_token', form('access_token=')],
          ['an empty Authorization header', { headers: { authorization: '' } }],
          // RFC 6750 §3.1: "attempted using an unsupported authentication method".
          ['a token in the query, which is not taken (RFC 9700 §2.5)', { query: `?access_token=${userToken}` }],
          ['HTTP Basic', { headers: { authorization: basic(app.id, app.secret) } }],
          ['an API key', { headers: { authorization: 'ApiKey gate_ak_anything' } }],
        ] as const) {
          assertBareChallenge(await userinfo(init), label);
        }
      });

      it('refuses a token sent twice, one that is not a string, a malformed header, or a token sent in two ways with 400 invalid_request', async () => {
        for (const [label, init] of [
          ['the form parameter twice', form(`access_token=${userToken}&access_token=${userToken}`)],
          ['a number in a JSON body', json({ access_token: 42 })],
          ['an array in a JSON body', json({ access_token: [userToken] })],
          ['an object in a JSON body', json({ access_token: { token: userToken } })],
          ['null in a JSON body', json({ access_token: null })],
          ['two words after Bearer', { headers: { authorization: 'Bearer a b' } }],
          ['Bearer without a token', { headers: { authorization: 'Bearer' } }],
          ['a body token with a space', form('access_token=a%20b')],
          ['the header and a form body', form(`access_token=${userToken}`, { authorization: `Bearer ${userToken}` })],
          ['the header and a JSON body', json({ access_token: userToken }, { authorization: `Bearer ${userToken}` })],
        ] as const) {
          assertInvalidRequest(await userinfo(init), label);
        }
      });

      it('refuses an invalid token with 401 invalid_token', async () => {
        for (const init of [{ headers: { authorization: 'Bearer not-a-token' } }, form('access_token=not-a-token')]) {
          const res = await userinfo(init);
          assert.equal(res.status, 401);
          assert.equal(res.body.error, 'invalid_token');
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="invalid_token"/);
        }
      });

      it('answers a token without openid with 403 insufficient_scope and a challenge naming the scope', async () => {
        const res = await userinfo({ headers: { authorization: `Bearer ${noOpenidToken}` } });
        assert.equal(res.status, 403);
        assert.equal(res.body.error, 'insufficient_scope');
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="insufficient_scope", error_description="[^"]+", scope="openid"$/);
      });

      it('answers PUT, DELETE and PATCH with 405 and Allow: GET, POST', async () => {
        for (const method of ['PUT', 'DELETE', 'PATCH']) {
          assertMethodNotAllowed(await userinfo({ method, headers: { authorization: `Bearer ${userToken}` } }), 'GET, POST', `${method} /userinfo`);
        }
      });
    });

    describe('project tokens (a Bearer caller)', () => {
      it('answers a request without credentials, or with another scheme, with 401 and a challenge carrying no error code', async () => {
        assertBareChallenge(await projectToken(undefined), 'no Authorization header');
        assertBareChallenge(await projectToken(basic(app.id, app.secret)), 'HTTP Basic');
      });

      it('refuses a malformed Authorization header with 400 invalid_request', async () => {
        for (const authorization of ['Bearer a b', 'Bearer', 'ApiKey gate_ak_a gate_ak_b']) {
          assertInvalidRequest(await projectToken(authorization), authorization);
        }
      });

      it('still refuses an invalid token with 401 invalid_token and mints with a valid one', async () => {
        const res = await projectToken('Bearer not-a-token');
        assert.equal(res.status, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse", error="invalid_token"/);
        assert.equal((await projectToken(`Bearer ${machineToken}`)).status, 201);
      });
    });

    describe('the admin API (a Bearer caller)', () => {
      it('answers a request without credentials with 401 and a challenge carrying no error code', async () => {
        const res = await call(`${server.url}/admin/v1/clients`);
        assert.equal(res.status, 401, JSON.stringify(res.body));
        assert.equal(res.headers.get('www-authenticate'), BARE_CHALLENGE);
        assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      });
    });

    describe('introspection and revocation', () => {
      it('answer GET, PUT, DELETE, PATCH and HEAD with 405 and Allow: POST', async () => {
        for (const path of ['/introspect', '/revoke']) {
          for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
            assertMethodNotAllowed(await call(`${server.url}${path}?token=${machineToken}`, { method, headers: { authorization: basic(api.id, api.secret) } }), 'POST', `${method} ${path}`);
          }
          const head = await fetch(`${server.url}${path}`, { method: 'HEAD' });
          assert.equal(head.status, 405, `HEAD ${path}`);
          assert.equal(head.headers.get('allow'), 'POST', `HEAD ${path}`);
        }
      });

      it('and every other protocol endpoint answer the methods they do not take with 405 and Allow', async () => {
        const cases: [string, string, string[]][] = [
          ['/token', 'POST', ['GET', 'PUT', 'DELETE', 'PATCH']],
          ['/access_token', 'POST', ['GET', 'PUT', 'DELETE', 'PATCH']],
          ['/projects/p1/access-tokens', 'POST', ['GET', 'PUT', 'DELETE', 'PATCH']],
          ['/jwks.json', 'GET', ['POST', 'PUT', 'DELETE', 'PATCH']],
          ['/.well-known/openid-configuration', 'GET', ['POST', 'PUT', 'DELETE', 'PATCH']],
          ['/.well-known/oauth-authorization-server', 'GET', ['POST', 'PUT', 'DELETE', 'PATCH']],
        ];
        for (const [path, allow, methods] of cases) {
          for (const method of methods) assertMethodNotAllowed(await call(`${server.url}${path}`, { method }), allow, `${method} ${path}`);
        }
        assert.equal((await fetch(`${server.url}/jwks.json`)).status, 200);
        assert.equal((await fetch(`${server.url}/.well-known/openid-configuration`, { method: 'HEAD' })).status, 200);
      });

      it('still answer POST', async () => {
        const res = await post(`${server.url}/introspect`, { token: machineToken }, { headers: { authorization: basic(api.id, api.secret) } });
        assert.equal(res.status, 200);
        assert.equal(res.body.active, true);
        assert.equal((await post(`${server.url}/revoke`, { token: 'unknown' }, { headers: { authorization: basic(api.id, api.secret) } })).status, 200);
      });
    });
  });
}
