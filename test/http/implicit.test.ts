import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://legacy.example/callback';

describe('implicit flow and response modes', () => {
  let server: TestServer;
  let legacy: { id: string };
  const user = { email: 'grace@example.com', password: 'another long password' };

  before(async () => {
    server = await startTestServer('sqlite', { config: { implicit: { enabled: true } } });
    legacy = await server.client({ name: 'Legacy viewer', grantTypes: ['implicit', 'authorization_code'], scopes: ['openid', 'profile', 'email', 'objects:read'], redirectUris: [CALLBACK], firstParty: true });
    await server.user(user.email, user.password);
  });
  after(() => server.close());

  const signedIn = () => signedInBrowser(server.url, user.email, user.password);
  const authorize = (browser: HttpBrowser, params: Record<string, string>) =>
    browser.request(`${server.url}/authorize?${new URLSearchParams({ client_id: legacy.id, redirect_uri: CALLBACK, state: 's-9', ...params })}`);
  const fragment = (location: string | undefined) => new URLSearchParams(new URL(location!).hash.slice(1));

  it('lists the implicit response types in discovery once enabled', async () => {
    const metadata = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as { response_types_supported: string[] };
    assert.deepEqual(metadata.response_types_supported, ['code', 'token', 'id_token', 'id_token token']);
  });

  it('returns the access token in the fragment, never in the query', async () => {
    const res = await authorize(await signedIn(), { response_type: 'token', scope: 'objects:read' });
    const location = new URL(res.location!);
    assert.equal(location.search, '');
    const params = fragment(res.location);
    assert.equal(params.get('token_type'), 'Bearer');
    assert.equal(params.get('expires_in'), '3600');
    assert.equal(params.get('scope'), 'objects:read');
    assert.equal(params.get('state'), 's-9');
    assert.equal(params.get('iss'), server.config.issuer);
    const jwks = createLocalJWKSet((await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet);
    const { payload } = await jwtVerify(params.get('access_token')!, jwks, { issuer: server.config.issuer, typ: 'at+jwt' });
    assert.equal(payload.client_id, legacy.id);
  });

  it('answers a client not allowed the flow it asked for with unauthorized_client in the response mode it asked for', async () => {
    const tokensOnly = await server.client({ name: 'Tokens only', grantTypes: ['implicit'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK], firstParty: true });
    const browser = await signedIn();
    const posted = await authorize(browser, { client_id: tokensOnly.id, response_type: 'code', scope: 'objects:read', response_mode: 'form_post' });
    assert.equal(posted.status, 200);
    assert.equal(hiddenField(posted.text, 'error'), 'unauthorized_client');
    assert.equal(hiddenField(posted.text, 'state'), 's-9');
    assert.equal(hiddenField(posted.text, 'iss'), server.config.issuer);
    const inFragment = await authorize(browser, { client_id: tokensOnly.id, response_type: 'code', scope: 'objects:read', response_mode: 'fragment' });
    assert.equal(new URL(inFragment.location!).search, '');
    assert.equal(fragment(inFragment.location).get('error'), 'unauthorized_client');
  });

  it('refuses response_mode=query for tokens', async () => {
    const res = await authorize(await signedIn(), { response_type: 'token', scope: 'objects:read', response_mode: 'query' });
    assert.equal(fragment(res.location).get('error'), 'invalid_request');
  });

  it('returns an ID token with the nonce and at_hash for id_token token', async () => {
    const res = await authorize(await signedIn(), { response_type: 'id_token token', scope: 'openid email', nonce: 'n-42' });
    const params = fragment(res.location);
    const jwks = createLocalJWKSet((await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet);
    const { payload, protectedHeader } = await jwtVerify(params.get('id_token')!, jwks, { issuer: server.config.issuer, audience: legacy.id });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.nonce, 'n-42');
    assert.equal(typeof payload.auth_time, 'number');
    const hash = createHash('sha256').update(params.get('access_token')!).digest();
    assert.equal(payload.at_hash, hash.subarray(0, 16).toString('base64url'));
  });

  it('puts the user claims in an ID token returned alone, and requires a nonce for it', async () => {
    const browser = await signedIn();
    const params = fragment((await authorize(browser, { response_type: 'id_token', scope: 'openid email', nonce: 'n-1' })).location);
    const claims = JSON.parse(Buffer.from(params.get('id_token')!.split('.')[1]!, 'base64url').toString());
    assert.equal(claims.email, user.email);
    assert.equal(params.get('access_token'), null);
    const missingNonce = fragment((await authorize(browser, { response_type: 'id_token', scope: 'openid' })).location);
    assert.equal(missingNonce.get('error'), 'invalid_request');
  });

  it('posts the response with response_mode=form_post, through a page without inline script', async () => {
    const res = await authorize(await signedIn(), { response_type: 'code', scope: 'openid', response_mode: 'form_post' });
    assert.equal(res.status, 200);
    assert.match(res.text, new RegExp(`<form method="post" action="${CALLBACK}"`));
    assert.match(hiddenField(res.text, 'code'), /^gate_ac_/);
    assert.equal(hiddenField(res.text, 'state'), 's-9');
    assert.match(res.text, /<script src="\/static\/form-post.js"><\/script>/);
    assert.doesNotMatch(res.text, /<script>/);
  });

  it('issues no token, and stores no grant, for a user disabled while the request was answered', async (t: TestContext) => {
    const email = 'disabled.during.implicit@example.com';
    const disabled = await server.user(email, 'a long enough password');
    const browser = await signedInBrowser(server.url, email, 'a long enough password');
    // The operator's disabling is stored right after the session was read and recorded, before its
    // sessions are ended (another instance, at the same moment).
    const sessions = server.gatehouse.storage.sessions;
    const addClient = sessions.addClient.bind(sessions);
    t.mock.method(sessions, 'addClient', async (...args: Parameters<typeof addClient>) => {
      const recorded = await addClient(...args);
      await server.gatehouse.storage.users.setDisabled(disabled.id, server.gatehouse.clock(), server.gatehouse.clock());
      return recorded;
    });
    const res = await authorize(browser, { response_type: 'token', scope: 'objects:read' });
    assert.doesNotMatch(res.location ?? '', /access_token/);
    assert.doesNotMatch(res.text ?? '', /access_token/);
    assert.deepEqual(await server.gatehouse.storage.grants.list({ userId: disabled.id }), []);
  });
});
