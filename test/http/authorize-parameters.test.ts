import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { countRows } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://viewer.example/callback';
const user = { email: 'margaret@example.com', password: 'a long enough password' };

/** Where an authorization answer put its parameters: the query, the fragment, or a posted form. */
type Answer = { mode: 'query' | 'fragment' | 'form_post'; params: URLSearchParams };

function answerOf(page: { status: number; location?: string | undefined; text: string }): Answer {
  if (page.status === 200 && page.text.includes('<form method="post"')) {
    const params = new URLSearchParams();
    for (const [, name] of page.text.matchAll(/<input type="hidden" name="([^"]+)"/g)) if (name !== 'csrf') params.set(name!, hiddenField(page.text, name!));
    return { mode: 'form_post', params };
  }
  assert.ok(page.location?.startsWith(CALLBACK), `expected an answer at the redirect URI, got ${page.status} ${page.location ?? page.text.slice(0, 300)}`);
  const url = new URL(page.location!);
  if (url.hash) {
    assert.equal(url.search, '', 'nothing in the query when the answer is in the fragment');
    return { mode: 'fragment', params: new URLSearchParams(url.hash.slice(1)) };
  }
  return { mode: 'query', params: url.searchParams };
}

const signedIn = (server: TestServer): Promise<HttpBrowser> => signedInBrowser(server.url, user.email, user.password);

describe('authorization request parameters sent without a value, and how errors are answered', () => {
  let server: TestServer;
  let plain: TestServer;
  let viewer: { id: string; secret: string };
  let plainViewer: { id: string; secret: string };

  before(async () => {
    server = await startTestServer('sqlite', { config: { implicit: { enabled: true } } });
    plain = await startTestServer('sqlite');
    const client = { name: 'Viewer', grantTypes: ['authorization_code', 'implicit', 'refresh_token'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK], firstParty: true };
    viewer = await server.client(client);
    plainViewer = await plain.client({ ...client, grantTypes: ['authorization_code', 'refresh_token'] });
    await server.user(user.email, user.password);
  });
  after(async () => {
    await server.close();
    await plain.close();
  });

  const authorizeUrl = (target: TestServer, params: Record<string, string>) => `${target.url}/authorize?${new URLSearchParams(params)}`;

  // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted from the request."
  const EMPTY = ['state', 'nonce', 'prompt', 'max_age', 'response_mode', 'code_challenge', 'code_challenge_method', 'login_hint', 'id_token_hint', 'claims', 'request', 'request_uri', 'registration'];

  for (const method of ['GET', 'POST'] as const) {
    it(`takes every parameter sent without a value for one left out, by ${method}: no empty state is sent back`, async () => {
      const browser = await signedIn(server);
      const params = { response_type: 'code', client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', ...Object.fromEntries(EMPTY.map((name) => [name, ''])) };
      const page = method === 'GET' ? await browser.request(authorizeUrl(server, params)) : await browser.follow(`${server.url}/authorize`, server.url, { form: params });
      const { mode, params: answer } = answerOf(page);
      assert.equal(mode, 'query');
      assert.match(answer.get('code') ?? '', /^gate_ac_/, answer.toString());
      assert.equal(answer.has('state'), false, 'no state= in the answer');
      assert.equal(answer.get('iss'), server.config.issuer);

      // An empty scope is a scope left out: the client's default scopes.
      const defaults = answerOf(await browser.request(authorizeUrl(server, { ...params, scope: '' })));
      assert.ok(defaults.params.get('code'), defaults.params.toString());
    });
  }

  it('answers an error without an empty state too, and still needs a nonce sent empty for an ID token', async () => {
    const browser = await signedIn(server);
    const refused = answerOf(await browser.request(authorizeUrl(server, { response_type: 'code', client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', response_mode: 'nonsense', state: '' })));
    assert.equal(refused.params.get('error'), 'invalid_request');
    assert.equal(refused.params.has('state'), false);
    const noNonce = answerOf(await browser.request(authorizeUrl(server, { response_type: 'id_token', client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', nonce: '', state: 's' })));
    assert.equal(noNonce.mode, 'fragment');
    assert.equal(noNonce.params.get('error'), 'invalid_request');
    assert.match(noNonce.params.get('error_description')!, /nonce is required/);
  });

  it('takes token request parameters sent without a value for ones left out (RFC 6749 §3.2): client_secret beside Basic, code_verifier, redirect_uri, scope', async () => {
    const browser = await signedIn(server);
    // Not an OpenID Connect request, which must name its redirect_uri (OpenID Connect Core §3.1.2.1):
    // left out here, the exchange may leave it out too, and sending it empty is leaving it out.
    const { params } = answerOf(await browser.request(authorizeUrl(server, { response_type: 'code', client_id: viewer.id, scope: 'objects:read' })));
    const auth = { headers: { authorization: basic(viewer.id, viewer.secret) } };
    const exchanged = await post(`${server.url}/token`, { grant_type: 'authorization_code', code: params.get('code')!, redirect_uri: '', code_verifier: '', client_secret: '', scope: '' }, auth);
    assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
    for (const json of [false, true]) {
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: exchanged.body.refresh_token, scope: '', client_id: '', client_secret: '', client_assertion: '', client_assertion_type: '' }, { ...auth, json });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.equal(refreshed.body.scope, undefined, 'no scope was asked for, so none is echoed');
      exchanged.body.refresh_token = refreshed.body.refresh_token;
    }
    for (const endpoint of ['/introspect', '/revoke']) {
      const res = await post(`${server.url}${endpoint}`, { token: exchanged.body.refresh_token, token_type_hint: '', client_secret: '' }, auth);
      assert.equal(res.status, 200, `${endpoint}: ${JSON.stringify(res.body)}`);
    }
    const missing = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: '' }, auth);
    assert.deepEqual(missing.body, { error: 'invalid_request', error_description: 'refresh_token is required' });
  });

  it('answers an error in the response mode the client asked for, where that mode is valid (OpenID Connect Core §3.1.2.6, Form Post Response Mode §2)', async () => {
    const browser = await signedIn(server);
    const cases: [Record<string, string>, Answer['mode'], string][] = [
      [{ response_type: 'unknown', response_mode: 'form_post' }, 'form_post', 'unsupported_response_type'],
      [{ response_type: 'unknown', response_mode: 'fragment' }, 'fragment', 'unsupported_response_type'],
      [{ response_mode: 'form_post' }, 'form_post', 'invalid_request'],
      // Hybrid types are not supported; their answers belong in the fragment (Multiple Response Types §5).
      [{ response_type: 'code id_token' }, 'fragment', 'unsupported_response_type'],
      [{ response_type: 'code token' }, 'fragment', 'unsupported_response_type'],
      [{ response_type: 'code id_token', response_mode: 'query' }, 'fragment', 'unsupported_response_type'],
      [{ response_type: 'code id_token', response_mode: 'form_post' }, 'form_post', 'unsupported_response_type'],
      // An invalid response mode gets the response type's default.
      [{ response_type: 'token', response_mode: 'nonsense' }, 'fragment', 'invalid_request'],
      [{ response_type: 'unknown', response_mode: 'nonsense' }, 'query', 'unsupported_response_type'],
      [{ response_type: 'token', response_mode: 'query' }, 'fragment', 'invalid_request'],
    ];
    for (const [params, mode, error] of cases) {
      const label = JSON.stringify(params);
      const answer = answerOf(await browser.request(authorizeUrl(server, { client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', nonce: 'n', state: 'st-2', ...params })));
      assert.equal(answer.mode, mode, label);
      assert.equal(answer.params.get('error'), error, label);
      assert.equal(answer.params.get('state'), 'st-2', label);
      assert.equal(answer.params.get('iss'), server.config.issuer, label);
    }
  });

  it('answers an implicit request, while the operator has the implicit flow off, in the fragment', async () => {
    const browser = new HttpBrowser();
    for (const responseType of ['token', 'id_token', 'id_token token']) {
      const answer = answerOf(await browser.request(authorizeUrl(plain, { response_type: responseType, client_id: plainViewer.id, redirect_uri: CALLBACK, scope: 'openid', nonce: 'n', state: 'st-3' })));
      assert.equal(answer.mode, 'fragment', responseType);
      assert.equal(answer.params.get('error'), 'unsupported_response_type', responseType);
      assert.equal(answer.params.get('state'), 'st-3', responseType);
      assert.equal(answer.params.get('iss'), plain.config.issuer, responseType);
    }
  });

  it('answers a response type named like a property every object has (toString, constructor, __proto__) with unsupported_response_type, never a 500', async () => {
    const browser = await signedIn(server);
    for (const responseType of ['toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf']) {
      for (const method of ['GET', 'POST'] as const) {
        const params = { response_type: responseType, client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-6' };
        const page = method === 'GET' ? await browser.request(authorizeUrl(server, params)) : await browser.request(`${server.url}/authorize`, { form: params });
        const label = `${method} ${responseType}`;
        const answer = answerOf(page);
        assert.equal(answer.mode, 'query', label);
        assert.equal(answer.params.get('error'), 'unsupported_response_type', label);
        assert.equal(answer.params.get('state'), 'st-6', label);
        assert.equal(answer.params.get('iss'), server.config.issuer, label);
      }
    }
  });

  it('takes a plain challenge (the verifier itself, 43 to 128 characters) where the operator allows plain, a challenge without its method counting as plain, and an S256 one only as a digest', async () => {
    const allowing = await startTestServer('sqlite', { config: { pkce: { allowPlain: true } } });
    try {
      const app = await allowing.client({ name: 'Viewer', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK], firstParty: true });
      await allowing.user(user.email, user.password);
      const browser = await signedIn(allowing);
      const discovery = (await (await fetch(`${allowing.url}/.well-known/openid-configuration`)).json()) as { code_challenge_methods_supported: string[] };
      assert.deepEqual(discovery.code_challenge_methods_supported, ['S256', 'plain']);
      const ask = (params: Record<string, string>) => browser.request(authorizeUrl(allowing, { response_type: 'code', client_id: app.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-5', ...params }));

      // RFC 7636 §4.2, §4.3: plain is the verifier as it is, and the method when none is named.
      const verifier = `~.${randomBytes(96).toString('base64url').slice(0, 126)}`;
      for (const params of [{ code_challenge: verifier, code_challenge_method: 'plain' }, { code_challenge: verifier }] as Record<string, string>[]) {
        const { params: answer } = answerOf(await ask(params));
        const code = answer.get('code');
        assert.ok(code, answer.toString());
        const exchanged = await post(`${allowing.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK, code_verifier: verifier }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
      }
      for (const params of [
        { code_challenge: verifier.slice(0, 42), code_challenge_method: 'plain' },
        { code_challenge: `${verifier}A` },
        { code_challenge: `${verifier.slice(0, 42)}+`, code_challenge_method: 'plain' },
        { code_challenge: verifier.slice(0, 44), code_challenge_method: 'S256' },
      ] as Record<string, string>[]) {
        const { params: answer } = answerOf(await ask(params));
        assert.equal(answer.get('error'), 'invalid_request', JSON.stringify(params));
        assert.equal(answer.get('state'), 'st-5');
      }
    } finally {
      await allowing.close();
    }
  });

  it('answers registration, which it does not support, with registration_not_supported (OpenID Connect Core §6), in the response mode asked for, storing nothing', async () => {
    const browser = new HttpBrowser();
    const waiting = await countRows(server.database, 'authorization_requests');
    for (const [params, mode] of [
      [{ response_type: 'code' }, 'query'],
      [{ response_type: 'code', response_mode: 'form_post' }, 'form_post'],
      [{ response_type: 'id_token', nonce: 'n' }, 'fragment'],
    ] as const) {
      const answer = answerOf(await browser.request(authorizeUrl(server, { client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-4', registration: '{"client_name":"x"}', ...params })));
      assert.equal(answer.mode, mode);
      assert.equal(answer.params.get('error'), 'registration_not_supported');
      assert.equal(answer.params.get('state'), 'st-4');
      assert.equal(answer.params.get('iss'), server.config.issuer);
    }
    assert.equal(await countRows(server.database, 'authorization_requests'), waiting);
  });

  // RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once." A form
  // keeps a repeat; JSON.parse keeps only the last value, so the parser must see it.
  it('refuses a JSON body that names a parameter twice with the 400 page, neither redirecting nor issuing a code', async () => {
    const browser = await signedIn(server);
    const codes = await countRows(server.database, 'authorization_codes');
    const once = JSON.stringify({ response_type: 'code', client_id: viewer.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-5' });
    for (const [path, body] of [
      ['/authorize', once.replace('"state":', '"state":"st-6","state":')],
      ['/authorize', once.replace('"redirect_uri":', '"redirect_uri":"https://evil.example/callback","redirect_uri":')],
      ['/logout', JSON.stringify({ client_id: viewer.id, state: 'st-7' }).replace('"state":', '"state":"st-8","state":')],
    ]) {
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
        body,
        redirect: 'manual',
      });
      assert.equal(response.status, 400, body);
      assert.equal(response.headers.get('location'), null, body);
      assert.match(await response.text(), /included more than once/, body);
    }
    assert.equal(await countRows(server.database, 'authorization_codes'), codes);
  });
});
