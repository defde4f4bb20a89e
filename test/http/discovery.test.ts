import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import type { FileConfig } from '../../src/core/config.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** The client key that signs each client-assertion algorithm a client could pick from the metadata. */
const ASSERTION_KEY: Record<string, string> = { RS256: 'rsa', RS384: 'rsa', RS512: 'rsa', PS256: 'rsa', PS384: 'rsa', PS512: 'rsa', ES256: 'P-256', ES384: 'P-384', ES512: 'P-521', EdDSA: 'ed25519', Ed25519: 'ed25519' };
const generateClientKey = (kind: string): KeyObject =>
  kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey : kind === 'ed25519' ? generateKeyPairSync('ed25519').privateKey : generateKeyPairSync('ec', { namedCurve: kind }).privateKey;

/** Each setting that changes what the metadata says. */
const CONFIGURATIONS: [string, Partial<FileConfig>][] = [
  ['the defaults', {}],
  ['implicit and plain PKCE enabled, EdDSA access and ES256 ID tokens', { implicit: { enabled: true }, pkce: { allowPlain: true }, tokens: { accessTokenAlgorithm: 'EdDSA', idTokenAlgorithm: 'ES256' } }],
  ['RS256 access and EdDSA ID tokens', { tokens: { accessTokenAlgorithm: 'RS256', idTokenAlgorithm: 'EdDSA' } }],
];

type Metadata = Record<string, any>;

/**
 * Discovery is a promise to clients, which pick from it what they send: every value it lists is
 * exercised here against the endpoint it describes, under each configuration that changes it.
 */
for (const dialect of DIALECTS) {
  for (const [label, config] of CONFIGURATIONS) {
    describe(`discovery under ${label} (${dialect})`, () => {
      let server: TestServer;
      let metadata: Metadata;
      let oidc: Metadata;
      let web: { id: string; secret: string };
      let spa: { id: string };
      const assertionKeys = new Map<string, KeyObject>();
      const user = { email: 'ada@example.com', password: 'correct horse battery' };

      before(async () => {
        server = await startTestServer(dialect, { config });
        metadata = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Metadata;
        oidc = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as Metadata;
        const publicKeys = [];
        for (const kind of new Set(Object.values(ASSERTION_KEY))) {
          const privateKey = generateClientKey(kind);
          assertionKeys.set(kind, privateKey);
          const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = await exportJWK(privateKey);
          publicKeys.push({ ...publicJwk, kid: kind });
        }
        const flows = ['authorization_code', 'refresh_token', 'client_credentials', 'password', 'urn:ietf:params:oauth:grant-type:token-exchange', ...(server.config.implicit.enabled ? ['implicit'] : [])];
        const scopes = ['openid', 'profile', 'email', 'offline_access', 'objects:read'];
        web = await server.client({ name: 'Web app', grantTypes: flows, scopes, redirectUris: [CALLBACK], firstParty: true, allowImpersonation: true, jwks: { keys: publicKeys } });
        spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK], firstParty: true });
        await server.user(user.email, user.password);
      });
      after(() => server?.close());

      const signedIn = () => signedInBrowser(server.url, user.email, user.password);
      const authorize = (browser: HttpBrowser, params: Record<string, string>) =>
        browser.request(`${server.url}/authorize?${new URLSearchParams({ client_id: web.id, redirect_uri: CALLBACK, state: 'st', scope: 'openid profile email', ...params })}`);
      /** The authorization response's parameters, wherever the response mode put them. */
      const answer = (response: { status: number; location?: string | undefined; text: string }): URLSearchParams => {
        if (response.status === 200) return new URLSearchParams(['code', 'access_token', 'id_token', 'error', 'iss', 'state'].flatMap((name): [string, string][] => (response.text.includes(`name="${name}"`) ? [[name, hiddenField(response.text, name)]] : [])));
        const location = new URL(response.location!);
        return location.hash ? new URLSearchParams(location.hash.slice(1)) : location.searchParams;
      };
      const jwks = async () => (await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet;
      /** A client assertion signed with `alg`, for this server (its issuer as audience). */
      const assertion = (alg: string) =>
        new SignJWT({ iss: web.id, sub: web.id, aud: server.config.issuer, exp: Math.floor(Date.now() / 1000) + 60, jti: randomUUID() })
          .setProtectedHeader({ alg, kid: ASSERTION_KEY[alg]! })
          .sign(assertionKeys.get(ASSERTION_KEY[alg]!)!);
      /** The parameters and header that authenticate `web` (or `spa`, for `none`) with each method. */
      const credentials = async (method: string): Promise<{ params: Record<string, string>; headers: Record<string, string> }> => {
        switch (method) {
          case 'client_secret_basic':
            return { params: {}, headers: { authorization: basic(web.id, web.secret) } };
          case 'client_secret_post':
            return { params: { client_id: web.id, client_secret: web.secret }, headers: {} };
          case 'private_key_jwt':
            return { params: { client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion('ES256') }, headers: {} };
          case 'none':
            return { params: { client_id: spa.id }, headers: {} };
          default:
            throw new Error(`no credentials for ${method}`);
        }
      };

      it('has the fields OpenID Connect Discovery §3 and RFC 8414 §2 require, the same in both documents, with every endpoint under the issuer and answering', async () => {
        for (const field of ['issuer', 'authorization_endpoint', 'token_endpoint', 'jwks_uri', 'response_types_supported']) assert.ok(metadata[field], field);
        for (const field of ['userinfo_endpoint', 'scopes_supported', 'claims_supported', 'subject_types_supported', 'id_token_signing_alg_values_supported']) assert.ok(oidc[field], field);
        for (const [field, value] of Object.entries(metadata)) assert.deepEqual(oidc[field], value, `${field} is the same in both documents`);
        assert.equal(metadata.issuer, server.url);
        const endpoints = Object.entries(oidc).filter(([field]) => field.endsWith('_endpoint') || field === 'jwks_uri');
        assert.deepEqual(endpoints.map(([field]) => field).sort(), ['authorization_endpoint', 'end_session_endpoint', 'introspection_endpoint', 'jwks_uri', 'revocation_endpoint', 'token_endpoint', 'userinfo_endpoint']);
        for (const [field, url] of endpoints) {
          assert.ok(url.startsWith(`${metadata.issuer}/`), `${field}: ${url}`);
          // Each answers its method, even refusing what it was sent: none is missing.
          const method = ['token_endpoint', 'introspection_endpoint', 'revocation_endpoint'].includes(field) ? 'POST' : 'GET';
          const response = await fetch(url, { method, redirect: 'manual' });
          assert.ok(response.status !== 404 && response.status !== 405 && response.status < 500, `${field} answered ${method} with ${response.status}`);
        }
        assert.deepEqual(metadata.scopes_supported, Object.keys(server.config.scopes));
      });

      it('may be cached no longer than the JWKS: it lists the algorithm of the next ID-token key, which a rotation may make sign once the JWKS cache time has passed', async () => {
        const maxAge = async (path: string) => Number(/^public, max-age=(\d+)$/.exec((await fetch(`${server.url}${path}`)).headers.get('cache-control') ?? '')?.[1]);
        const jwksMaxAge = await maxAge('/jwks.json');
        assert.ok(jwksMaxAge > 0);
        for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
          const documentMaxAge = await maxAge(path);
          assert.ok(documentMaxAge > 0 && documentMaxAge <= jwksMaxAge, `${path}: max-age=${documentMaxAge}`);
        }
      });

      it('accepts every response type in every response mode it may be returned in, and refuses the types not listed', async () => {
        const browser = await signedIn();
        for (const responseType of metadata.response_types_supported as string[]) {
          for (const mode of metadata.response_modes_supported as string[]) {
            // Multiple Response Types §5: tokens are never returned in the query.
            if (mode === 'query' && responseType !== 'code') continue;
            const pkce: Record<string, string> = responseType === 'code' ? { code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'), code_challenge_method: 'S256' } : {};
            const params = answer(await authorize(browser, { response_type: responseType, response_mode: mode, nonce: 'n', ...pkce }));
            const label = `${responseType} in ${mode}: ${params}`;
            assert.equal(params.get('error'), null, label);
            for (const artifact of responseType.split(' ')) assert.ok(params.get(artifact === 'token' ? 'access_token' : artifact), label);
            assert.equal(params.get('iss'), metadata.issuer, label);
          }
        }
        for (const responseType of ['code', 'token', 'id_token', 'id_token token', 'code id_token', 'code token', 'none']) {
          if ((metadata.response_types_supported as string[]).includes(responseType)) continue;
          const params = answer(await authorize(browser, { response_type: responseType, nonce: 'n' }));
          assert.equal(params.get('error'), 'unsupported_response_type', responseType);
        }
        const flows = metadata.grant_types_supported as string[];
        assert.equal(flows.includes('implicit'), (metadata.response_types_supported as string[]).includes('token'), 'implicit is listed as a grant exactly when its response type is');
      });

      it('takes every listed PKCE method end to end, refuses the others, and issues tokens whose iss, alg, kid and claims the metadata and JWKS describe', async () => {
        const verifier = randomUUID() + randomUUID();
        const challenges: Record<string, string> = { S256: createHash('sha256').update(verifier).digest('base64url'), plain: verifier };
        for (const method of Object.keys(challenges)) {
          const params = answer(await authorize(await signedIn(), { response_type: 'code', code_challenge: challenges[method]!, code_challenge_method: method }));
          if (!(metadata.code_challenge_methods_supported as string[]).includes(method)) {
            assert.equal(params.get('error'), 'invalid_request', method);
            continue;
          }
          assert.equal(params.get('iss'), metadata.issuer);
          const exchanged = await post(metadata.token_endpoint, { grant_type: 'authorization_code', code: params.get('code')!, redirect_uri: CALLBACK, code_verifier: verifier }, { headers: { authorization: basic(web.id, web.secret) } });
          assert.equal(exchanged.status, 200, `${method}: ${JSON.stringify(exchanged.body)}`);
          const keys = await jwks();
          for (const [token, algorithms] of [
            [exchanged.body.access_token as string, undefined],
            [exchanged.body.id_token as string, oidc.id_token_signing_alg_values_supported as string[]],
          ] as const) {
            const { alg, kid } = decodeProtectedHeader(token);
            const key = keys.keys.find((candidate) => candidate.kid === kid);
            assert.ok(key, `${kid} is published`);
            assert.equal(key.alg, alg);
            assert.equal(key.use, 'sig');
            if (algorithms) assert.ok(algorithms.includes(alg!), `${alg} is listed`);
            const { payload } = await jwtVerify(token, createLocalJWKSet(keys), { issuer: metadata.issuer });
            assert.equal(payload.iss, metadata.issuer);
          }
          assert.equal(decodeProtectedHeader(exchanged.body.access_token).alg, server.config.tokens.accessTokenAlgorithm);
          const userinfo = (await (await fetch(oidc.userinfo_endpoint, { headers: { authorization: `Bearer ${exchanged.body.access_token}` } })).json()) as Record<string, unknown>;
          for (const claim of [...Object.keys(decodeJwt(exchanged.body.id_token)), ...Object.keys(userinfo)]) {
            assert.ok((oidc.claims_supported as string[]).includes(claim), `${claim} is listed`);
          }
        }
      });

      it('lists after a key rotation the algorithm of the key that signs ID tokens, and publishes both new keys with their alg', async () => {
        await server.gatehouse.keys.rotate(Math.floor(Date.now() / 1000), { force: true });
        const issued = await post(metadata.token_endpoint, { grant_type: 'password', username: user.email, password: user.password, scope: 'openid' }, { headers: { authorization: basic(web.id, web.secret) } });
        assert.equal(issued.status, 200, JSON.stringify(issued.body));
        const advertised = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as Metadata;
        const keys = await jwks();
        for (const token of [issued.body.access_token, issued.body.id_token]) {
          const { alg, kid } = decodeProtectedHeader(token);
          assert.deepEqual(
            keys.keys.filter((key) => key.kid === kid).map(({ alg, use }) => ({ alg, use })),
            [{ alg, use: 'sig' }],
          );
        }
        assert.ok(advertised.id_token_signing_alg_values_supported.includes(decodeProtectedHeader(issued.body.id_token).alg));
      });

      it('knows every listed grant type at the token endpoint, and no other', async () => {
        const auth = { authorization: basic(web.id, web.secret) };
        for (const grant of metadata.grant_types_supported as string[]) {
          if (grant === 'implicit') continue; // returned by the authorization endpoint
          const refused = await post(metadata.token_endpoint, { grant_type: grant }, { headers: auth });
          assert.notEqual(refused.body.error, 'unsupported_grant_type', grant);
          assert.notEqual(refused.body.error, 'unauthorized_client', grant);
        }
        const unknown = await post(metadata.token_endpoint, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'x' }, { headers: auth });
        assert.equal(unknown.body.error, 'unsupported_grant_type');
      });

      it('authenticates a client with every method listed for the token, introspection and revocation endpoints, and refuses at each the methods it does not list', async () => {
        const issued = await post(metadata.token_endpoint, { grant_type: 'client_credentials', scope: 'objects:read' }, { headers: { authorization: basic(web.id, web.secret) } });
        const cases: [string, string, Record<string, string>][] = [
          ['token_endpoint', 'token_endpoint_auth_methods_supported', { grant_type: 'refresh_token', refresh_token: 'nonsense' }],
          ['introspection_endpoint', 'introspection_endpoint_auth_methods_supported', { token: issued.body.access_token }],
          ['revocation_endpoint', 'revocation_endpoint_auth_methods_supported', { token: 'nonsense' }],
        ];
        for (const [endpoint, field, params] of cases) {
          for (const method of ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']) {
            const presented = await credentials(method);
            const response = await post(metadata[endpoint], { ...params, ...presented.params }, { headers: presented.headers });
            const label = `${method} at ${endpoint}: ${response.status} ${JSON.stringify(response.body)}`;
            if ((metadata[field] as string[]).includes(method)) assert.notEqual(response.body.error, 'invalid_client', label);
            else assert.equal(response.body.error, 'invalid_client', label);
          }
        }
      });

      it('accepts a client assertion signed with every algorithm listed, the same at the three endpoints', async () => {
        const algorithms = metadata.token_endpoint_auth_signing_alg_values_supported as string[];
        assert.deepEqual(metadata.introspection_endpoint_auth_signing_alg_values_supported, algorithms);
        assert.deepEqual(metadata.revocation_endpoint_auth_signing_alg_values_supported, algorithms);
        for (const alg of algorithms) {
          const response = await post(metadata.token_endpoint, { grant_type: 'client_credentials', scope: 'objects:read', client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(alg) });
          assert.equal(response.status, 200, `${alg}: ${JSON.stringify(response.body)}`);
        }
      });

      it('accepts every listed prompt value', async () => {
        const browser = await signedIn();
        for (const prompt of oidc.prompt_values_supported as string[]) {
          const response = await authorize(browser, { response_type: 'code', code_challenge: createHash('sha256').update('v'.repeat(43)).digest('base64url'), code_challenge_method: 'S256', prompt });
          // A code at once, or the sign-in page that login and select_account ask for.
          const next = new URL(response.location ?? '', server.url);
          if (next.href.startsWith(CALLBACK)) assert.equal(answer(response).get('error'), null, prompt);
          else assert.equal(next.pathname, '/login', `${prompt}: ${response.status} ${response.location}`);
        }
      });
    });
  }
}
