import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID, X509Certificate, type JsonWebKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import pino from 'pino';
import { createClient, updateClient } from '../../src/core/applications.ts';
import { ValidationError } from '../../src/core/validation.ts';
import { loadConfig } from '../../src/core/config.ts';
import { createGatehouse } from '../../src/gatehouse.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, TEST_SECRET, type TestServer } from '../support/server.ts';

const PASSWORD = 'correct horse battery';
const CALLBACK = 'https://app.example/cb';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * A self-signed certificate for a P-256 key, DER in base64 (RFC 7517 §4.7). Only the certificate
 * is kept: its public key is all these tests need, and no private key sits in the repository.
 */
const CERTIFICATE =
  'MIIBlzCCAT2gAwIBAgIUQJDX6ak74HIjoh2qimXn1mwu2RswCgYIKoZIzj0EAwIwIDEeMBwGA1UEAwwVR2F0ZWhvdXNlIHRlc3QgY2xpZW50MCAXDTI2MTIwNTExNTMwOFoYDzIxMjYxMTExMTE1MzA4WjAgMR4wHAYDVQQDDBVHYXRlaG91c2UgdGVzdCBjbGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARbe9z7ArLkV1nszVjor1e2LQxRu2Yd1Cmxq20ae8JXD2lltC9p26fSUkjjKEmDEaxtEPdqAVqV3xY8wN1T9eEIo1MwUTAdBgNVHQ4EFgQUzbi/PsnDBgfphrcHrk/tngCnVS4wHwYDVR0jBBgwFoAUzbi/PsnDBgfphrcHrk/tngCnVS4wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAoiRuiBCCSMEmm9Ql2IMTC3aEejRRzOPYU8D4IcIyI/sCIFCEZ33S3GG/QYxiwQtKTFkDINQxD2G0ONxK1vTptAwf';
/** The certificate's own key as a JWK, which x5c must match. */
const certificateJwk = (): JWK => new X509Certificate(Buffer.from(CERTIFICATE, 'base64')).publicKey.export({ format: 'jwk' }) as JWK;

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

for (const dialect of DIALECTS) {
  describe(`client registration checks (${dialect})`, { timeout: 120_000 }, () => {
    /** The implicit flow is off here, as it is by default. */
    let server: TestServer;
    /** The same configuration with the implicit flow turned on. */
    let implicitOn: TestServer;
    const tokens = new Map<TestServer, string>();
    let publicJwk: JWK;
    let privateKey: CryptoKey;

    before(async () => {
      [server, implicitOn] = await Promise.all([startTestServer(dialect), startTestServer(dialect, { config: { implicit: { enabled: true } } })]);
      for (const s of [server, implicitOn]) {
        const admin = await s.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients'], isAdmin: true });
        const res = await post(`${s.url}/token`, { grant_type: 'client_credentials', scope: 'admin:clients' }, { headers: { authorization: basic(admin.id, admin.secret) } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        tokens.set(s, `Bearer ${res.body.access_token}`);
      }
      ({ privateKey } = await generateKeyPair('ES256', { extractable: true }));
      const { d: _d, ...publicPart } = await exportJWK(privateKey);
      publicJwk = { ...publicPart, kid: 'key-1' };
    });
    after(() => Promise.all([server?.close(), implicitOn?.close()]));

    /** A new developer signed in to the portal, with a CSRF token for its forms. */
    async function signedInDeveloper() {
      const developer = await server.user(`dev-${randomUUID()}@example.com`, PASSWORD);
      const browser = await signedInBrowser(server.url, developer.email, PASSWORD);
      return { developer, browser, csrf: hiddenField((await browser.request(`${server.url}/developers/new`)).text, 'csrf') };
    }

    async function api(method: string, path: string, body?: unknown, on: TestServer = server): Promise<Answer> {
      const response = await fetch(`${on.url}/admin/v1${path}`, {
        method,
        headers: { authorization: tokens.get(on)!, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      return { status: response.status, headers: response.headers, body: text === '' ? undefined : JSON.parse(text) };
    }

    /** A 400 problem whose `errors` names `field` with a detail matching `detail`. */
    function assertRefused(res: Answer, field: string, detail: RegExp, label = ''): void {
      assert.equal(res.status, 400, `${label} ${JSON.stringify(res.body)}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      const named = (res.body.errors as { field: string; detail: string }[]).find((e) => e.field === field);
      assert.ok(named, `${label}: the problem names ${field}: ${JSON.stringify(res.body)}`);
      assert.match(named.detail, detail, label);
    }

    /** Everything stored about clients: what a refused registration must leave as it was. */
    async function snapshot(on: TestServer = server): Promise<string> {
      const clients = await on.gatehouse.storage.clients.list();
      const secrets = await Promise.all(clients.map((c) => on.gatehouse.storage.clients.listSecrets(c.id)));
      return JSON.stringify({ clients, secrets });
    }

    const register = (body: Record<string, unknown>, on: TestServer = server) => api('POST', '/clients', { name: 'Partner app', scopes: ['objects:read'], ...body }, on);

    describe('back-channel logout URI (OpenID Connect Back-Channel Logout 1.0 §2.2)', () => {
      it('registers, shows and changes a back-channel logout URI and whether it needs sid, and removes it with null', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], backchannel_logout_uri: 'https://app.example/backchannel?tenant=1' });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal(created.body.backchannel_logout_uri, 'https://app.example/backchannel?tenant=1');
        assert.equal(created.body.backchannel_logout_session_required, false, 'false unless asked');
        const id = created.body.client_id as string;
        const changed = await api('PATCH', `/clients/${id}`, { backchannel_logout_uri: 'http://127.0.0.1:8080/logout', backchannel_logout_session_required: true });
        assert.equal(changed.status, 200, JSON.stringify(changed.body));
        const shown = (await api('GET', `/clients/${id}`)).body;
        assert.equal(shown.backchannel_logout_uri, 'http://127.0.0.1:8080/logout');
        assert.equal(shown.backchannel_logout_session_required, true);
        assert.equal((await api('PATCH', `/clients/${id}`, { name: 'Renamed' })).body.backchannel_logout_uri, 'http://127.0.0.1:8080/logout', 'kept when left out');
        assert.equal((await api('PATCH', `/clients/${id}`, { backchannel_logout_uri: null })).body.backchannel_logout_uri, null);
      });

      it('refuses a relative URI, a fragment, plain http off loopback, another scheme or a user name, on creation and on change, storing nothing', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], backchannel_logout_uri: 'https://app.example/bcl' });
        const refused: [string, RegExp][] = [
          ['/logout', /absolute/],
          ['https://app.example/bcl#', /fragment/],
          ['https://app.example/bcl#top', /fragment/],
          ['http://app.example/bcl', /https/],
          ['javascript:alert(1)//', /https/],
          ['com.example.app:/logout', /https/],
          ['ftp://app.example/bcl', /https/],
          ['https://user:pw@app.example/bcl', /user name/],
          ['', /absolute/],
        ];
        const before = await snapshot();
        for (const [uri, detail] of refused) {
          assertRefused(await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], backchannel_logout_uri: uri }), 'backchannel_logout_uri', detail, uri);
          assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { backchannel_logout_uri: uri }), 'backchannel_logout_uri', detail, uri);
        }
        assert.equal((await api('PATCH', `/clients/${created.body.client_id}`, { backchannel_logout_session_required: 'yes' })).status, 400);
        assert.equal(await snapshot(), before);
      });
    });

    describe('redirect URIs (RFC 6749 §3.1.2: no fragment)', () => {
      it('refuses a redirect URI or post-logout redirect URI with a fragment, an empty one too, and stores nothing', async () => {
        const before = await snapshot();
        for (const uri of [`${CALLBACK}#`, `${CALLBACK}#section`, `${CALLBACK}?a=1#`, 'com.example.app:/cb#']) {
          assertRefused(await register({ grant_types: ['authorization_code'], redirect_uris: [uri] }), 'redirect_uris', /fragment/, uri);
          assertRefused(await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], post_logout_redirect_uris: [uri] }), 'post_logout_redirect_uris', /fragment/, uri);
        }
        assert.equal(await snapshot(), before);
      });

      it('refuses a change that adds a fragment, and the client keeps its URIs', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], post_logout_redirect_uris: ['https://app.example/bye'] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const before = await snapshot();
        assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { redirect_uris: [CALLBACK, `${CALLBACK}#`] }), 'redirect_uris', /fragment/);
        assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { post_logout_redirect_uris: ['https://app.example/bye#'] }), 'post_logout_redirect_uris', /fragment/);
        assert.equal(await snapshot(), before);
        const shown = (await api('GET', `/clients/${created.body.client_id}`)).body;
        assert.deepEqual(shown.redirect_uris, [CALLBACK]);
        assert.deepEqual(shown.post_logout_redirect_uris, ['https://app.example/bye']);
      });

      it('refuses an empty fragment in the developer portal, shows why next to the field, and registers nothing', async () => {
        const { developer, browser, csrf } = await signedInDeveloper();
        const before = await snapshot();
        const page = await browser.request(`${server.url}/developers/applications`, {
          form: { csrf, name: 'Sync tool', description: '', type: 'confidential', base_url: '', redirect_uris: `${CALLBACK}#` },
        });
        assert.equal(page.status, 400);
        assert.match(page.text, /<p class="field-error" id="app-redirect-uris-error">[^<]*must not have a fragment/);
        assert.equal(await snapshot(), before);
        assert.deepEqual(await server.gatehouse.storage.clients.listForOwner(developer.id), []);
      });
    });

    describe('redirect URIs: one rule for the admin API, the command line and the portal (RFC 8252 §7, RFC 9700 §2.1)', () => {
      /** Refused, with what the detail must say; each detail names the URI too. */
      const REFUSED: [string, RegExp][] = [
        ['http://evil.example/cb', /must use https \(plain http is only for 127\.0\.0\.1, \[::1\] and localhost\)/],
        ['http://127.0.0.1.evil.example/cb', /must use https/],
        ['ftp://x/', /must use https, http on the loopback address, or a private-use scheme/],
        ['blob:https://a.example/x', /private-use scheme/],
        ['myapp:/callback', /private-use scheme/],
        ['javascript:alert(1)', /private-use scheme/],
        ['https://user:pw@a.example/cb', /user name or password/],
        ['https://user@a.example/cb', /user name or password/],
        ['https://@a.example/cb', /user name or password/],
        ['http://user@127.0.0.1:8080/cb', /user name or password/],
        ['com.example.app://user@callback/', /user name or password/],
        ['https://*.example.com/cb', /wildcard/],
        ['https://*/cb', /wildcard/],
        ['https://app.*.example.com/cb', /wildcard/],
        ['https://%2A.example.com/cb', /wildcard/],
        ['com.example.app://*.example.com/cb', /wildcard/],
        // Browsers read a backslash in an http or https URI as "/", and find the host after any run of
        // slashes: each of these is registered as one address and redirects to another.
        ['https://app.example\\@evil.example/cb', /backslash/],
        ['https://evil.example\\.app.example/cb', /backslash/],
        ['https:\\\\app.example/cb', /backslash/],
        ['http://127.0.0.1:8080\\cb', /backslash/],
        ['com.example.app:\\callback', /backslash/],
        ['https:app.example/cb', /host right after "https:\/\/"/],
        ['https:/app.example/cb', /host right after "https:\/\/"/],
        ['https:///app.example/cb', /host right after "https:\/\/"/],
        ['http:127.0.0.1:8080/cb', /host right after "http:\/\/"/],
        // Browsers drop invisible characters from a host and read look-alikes as the letters they
        // resemble (UTS #46): these too are registered as one address and redirect to another.
        ['https://app.exa\u200bmple/cb', /must be written in ASCII.*U\+200B/],
        ['https://app.exa\u00admple/cb', /must be written in ASCII.*U\+00AD/],
        ['https://app.example\u3002evil.example/cb', /must be written in ASCII.*U\+3002/],
        ['https://\uff41pp.example/cb', /must be written in ASCII.*U\+FF41/],
        ['https://app.example/c\u00a0b', /must be written in ASCII.*U\+00A0/],
        ['com.example.app:/c\u202eb', /must be written in ASCII.*U\+202E/],
        // Browsers decode a percent-encoded host, then read it as a host written in Unicode: the same
        // look-alikes and invisible characters, written in ASCII.
        ['https://app.example%E3%80%82evil.example/cb', /must not percent-encode its host/],
        ['https://app.example%2eevil.example/cb', /must not percent-encode its host/],
        ['https://app.exa%E2%80%8Bmple/cb', /must not percent-encode its host/],
        ['https://%EF%BD%81pp.example/cb', /must not percent-encode its host/],
        ['http://%6cocalhost:3000/cb', /must not percent-encode its host/],
        ['com.example.app://c%61llback/', /must not percent-encode its host/],
      ];

      function assertRefusedNaming(res: Answer, field: string, uri: string, detail: RegExp): void {
        assertRefused(res, field, detail, uri);
        const named = (res.body.errors as { field: string; detail: string }[]).find((e) => e.field === field)!;
        assert.ok(named.detail.includes(`"${uri}"`), `the detail names ${uri}: ${named.detail}`);
      }

      it('refuses plain http away from loopback, any scheme but https or a private-use one, userinfo, a wildcard host, a backslash, a host not right after // and what is not ASCII, as redirect or post-logout redirect URI, and stores nothing', async () => {
        const before = await snapshot();
        for (const [uri, detail] of REFUSED) {
          assertRefusedNaming(await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK, uri] }), 'redirect_uris', uri, detail);
          assertRefusedNaming(await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK], post_logout_redirect_uris: [uri] }), 'post_logout_redirect_uris', uri, detail);
        }
        assert.equal(await snapshot(), before);
      });

      it('refuses such a URI on a change too, and the client keeps its URIs', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const before = await snapshot();
        for (const [uri, detail] of REFUSED) {
          assertRefusedNaming(await api('PATCH', `/clients/${created.body.client_id}`, { redirect_uris: [uri] }), 'redirect_uris', uri, detail);
          assertRefusedNaming(await api('PATCH', `/clients/${created.body.client_id}`, { post_logout_redirect_uris: [uri] }), 'post_logout_redirect_uris', uri, detail);
        }
        assert.equal(await snapshot(), before);
      });

      it('accepts https, plain http on 127.0.0.1, [::1] and localhost, and private-use schemes in reverse-domain form', async () => {
        const accepted = [
          'https://app.example/cb',
          'https://app.example:8443/cb?tenant=1',
          'https://app.example/cb/*',
          'http://127.0.0.1:8080/cb',
          'http://[::1]/cb',
          'http://localhost:3000/cb',
          'com.example.app:/callback',
          'com.example.app://callback',
          'https://xn--bcher-kva.example/caf%C3%A9',
        ];
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: accepted, post_logout_redirect_uris: accepted });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.deepEqual(created.body.redirect_uris, accepted);
        assert.deepEqual(created.body.post_logout_redirect_uris, accepted);
      });

      it('lets a client stored with a URI the rule now refuses keep working and its other fields editable, and checks every URI added', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const id = created.body.client_id as string;
        const legacy = 'http://legacy.example/cb';
        const legacyLogout = 'https://*.legacy.example/bye';
        // Stored as an earlier version that did not check these accepted them.
        await server.gatehouse.storage.clients.update(id, { redirectUris: [legacy], postLogoutRedirectUris: [legacyLogout] }, Math.floor(Date.now() / 1000));
        server.gatehouse.clients.invalidate(id);

        const signIn = await new HttpBrowser().follow(`${server.url}/authorize?${new URLSearchParams({ client_id: id, redirect_uri: legacy, response_type: 'code', scope: 'objects:read', state: 's' })}`, server.url);
        assert.equal(signIn.status, 200, 'the stored URI still leads to sign-in');
        assert.match(signIn.text, /name="password"/);

        // Other changes go through (a leaked key removed, a rename), the held URIs with them.
        const renamed = await api('PATCH', `/clients/${id}`, { name: 'Renamed', jwks: null });
        assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
        assert.deepEqual([renamed.body.redirect_uris, renamed.body.post_logout_redirect_uris], [[legacy], [legacyLogout]]);
        const before = await snapshot();
        assertRefusedNaming(await api('PATCH', `/clients/${id}`, { redirect_uris: [legacy, 'http://other.example/cb'] }), 'redirect_uris', 'http://other.example/cb', /must use https/);
        assertRefusedNaming(await api('PATCH', `/clients/${id}`, { post_logout_redirect_uris: [legacyLogout, 'https://*.other.example/bye'] }), 'post_logout_redirect_uris', 'https://*.other.example/bye', /wildcard/);
        assert.equal(await snapshot(), before);
        const fixed = await api('PATCH', `/clients/${id}`, { redirect_uris: [CALLBACK], post_logout_redirect_uris: ['https://legacy.example/bye'] });
        assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
        assert.deepEqual(fixed.body.redirect_uris, [CALLBACK]);
      });

      it('refuses a wildcard host, userinfo, a backslash, a host not right after // or what is not ASCII in the developer portal too, next to the field, and registers nothing', async () => {
        const { developer, browser, csrf } = await signedInDeveloper();
        const before = await snapshot();
        for (const [uri, detail] of [
          ['https://*.example.com/cb', /must not have a wildcard/],
          ['https://user:pw@app.example/cb', /must not hold a user name or password/],
          ['ftp://app.example/cb', /must use https/],
          ['https://app.example\\@evil.example/cb', /must not hold a backslash/],
          ['https:///app.example/cb', /must name its host right after/],
          ['https://app.exa\u200bmple/cb', /must be written in ASCII/],
          ['https://app.example%E3%80%82evil.example/cb', /must not percent-encode its host/],
        ] as const) {
          const page = await browser.request(`${server.url}/developers/applications`, {
            form: { csrf, name: 'Sync tool', description: '', type: 'confidential', base_url: '', redirect_uris: `${CALLBACK}\n${uri}` },
          });
          assert.equal(page.status, 400, uri);
          const error = /<p class="field-error" id="app-redirect-uris-error">([^<]*)</.exec(page.text)?.[1] ?? '';
          assert.match(error, detail, uri);
          assert.ok(error.includes(uri.replaceAll('&', '&amp;')), `${uri}: ${error}`);
        }
        assert.equal(await snapshot(), before);
        assert.deepEqual(await server.gatehouse.storage.clients.listForOwner(developer.id), []);
      });
    });

    describe('public keys for private_key_jwt (RFC 7517, RFC 7523)', () => {
      const keyClient = (jwks: unknown) => register({ grant_types: ['client_credentials'], jwks });

      it('refuses keys that could never verify a client assertion, says why, and stores nothing', async () => {
        const base64url = CERTIFICATE.replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
        assert.notEqual(base64url, CERTIFICATE, 'the fixture has characters that base64url spells otherwise');
        const cases: [string, Record<string, unknown>, RegExp][] = [
          ['key_ops not an array', { key_ops: 'verify' }, /key_ops must be an array of strings/],
          ['key_ops of other things than strings', { key_ops: ['verify', 1] }, /key_ops must be an array of strings/],
          ['key_ops without verify', { key_ops: ['sign'] }, /key_ops must include "verify"/],
          ['empty key_ops', { key_ops: [] }, /key_ops must include "verify"/],
          ['key_ops with an operation twice', { key_ops: ['verify', 'verify'] }, /twice/],
          ['key_ops with an operation a public key cannot do', { key_ops: ['verify', 'sign'] }, /only "verify"/],
          ['ext not a boolean', { ext: 'yes' }, /ext must be true or false/],
          ['x5c not an array', { x5c: CERTIFICATE }, /x5c must be an array of base64-encoded certificates/],
          ['x5c of numbers', { x5c: [1] }, /x5c must be an array of base64-encoded certificates/],
          ['empty x5c', { x5c: [] }, /x5c must be an array/],
          ['x5c in base64url', { x5c: [base64url] }, /not base64/],
          ['x5c with line breaks', { x5c: [CERTIFICATE.replace(/(.{64})/g, '$1\n')] }, /not base64/],
          ['x5c that is not a certificate', { x5c: [Buffer.from('not a certificate').toString('base64')] }, /not a DER-encoded X\.509 certificate/],
          ['x5c for another key', { x5c: [CERTIFICATE] }, /another key/],
        ];
        const before = await snapshot();
        for (const [label, members, detail] of cases) {
          assertRefused(await keyClient({ keys: [{ ...publicJwk, ...members }] }), 'jwks', detail, label);
          // A good key next to it does not make the set acceptable.
          assertRefused(await keyClient({ keys: [publicJwk, { ...publicJwk, kid: 'key-2', ...members }] }), 'jwks', /key 2/, `${label}, as the second key`);
        }
        assert.equal(await snapshot(), before);
      });

      it('refuses such keys on a change too, and the client keeps the keys it had', async () => {
        const created = await keyClient({ keys: [publicJwk] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const before = await snapshot();
        assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { jwks: { keys: [{ ...publicJwk, key_ops: ['sign'] }] } }), 'jwks', /verify/);
        assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { jwks: { keys: [{ ...publicJwk, x5c: [1] }] } }), 'jwks', /x5c/);
        assert.equal(await snapshot(), before);
      });

      it('accepts key_ops ["verify"] and an x5c whose first certificate holds the key, and the key then authenticates the client', async () => {
        assert.equal((await keyClient({ keys: [{ ...certificateJwk(), kid: 'cert', x5c: [CERTIFICATE] }] })).status, 201);
        const created = await keyClient({ keys: [{ ...publicJwk, key_ops: ['verify'], use: 'sig', alg: 'ES256', ext: true }] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const id = created.body.client_id as string;
        const now = Math.floor(Date.now() / 1000);
        const assertion = await new SignJWT({ iss: id, sub: id, aud: `${server.url}/token`, iat: now, exp: now + 60, jti: randomUUID() })
          .setProtectedHeader({ alg: 'ES256', kid: 'key-1' })
          .sign(privateKey);
        const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion });
        assert.equal(token.status, 200, JSON.stringify(token.body));
      });

      /** The public half of a fresh key pair of the given type, as a JWK. */
      const publicJwkOf = (generate: () => { publicKey: { export(options: { format: 'jwk' }): JsonWebKey } }): Record<string, unknown> =>
        generate().publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
      /** Keys that no algorithm Gatehouse accepts for client assertions could verify with, and what the refusal says. */
      const unusableKeys = (): [string, Record<string, unknown>, RegExp][] => {
        const rsa = publicJwkOf(() => generateKeyPairSync('rsa', { modulusLength: 2048 }));
        const p384 = publicJwkOf(() => generateKeyPairSync('ec', { namedCurve: 'P-384' }));
        const ed25519 = publicJwkOf(() => generateKeyPairSync('ed25519'));
        return [
          ['an X25519 key (key agreement)', { kty: 'OKP', crv: 'X25519', x: 'hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo' }, /an OKP key on the curve "X25519" verifies none of the algorithms accepted/],
          ['an Ed448 key', publicJwkOf(() => generateKeyPairSync('ed448')), /an OKP key on the curve "Ed448" verifies none/],
          ['a secp256k1 key', publicJwkOf(() => generateKeyPairSync('ec', { namedCurve: 'secp256k1' })), /an EC key on the curve "secp256k1" verifies none/],
          ['an RSA key with alg ES256', { ...rsa, alg: 'ES256' }, /alg "ES256" does not fit an RSA key, which verifies RS256, RS384, RS512, PS256, PS384, PS512/],
          ['a P-384 key with alg ES256', { ...p384, alg: 'ES256' }, /alg "ES256" does not fit an EC key on the curve "P-384", which verifies ES384/],
          ['a P-256 key with alg EdDSA', { ...publicJwk, alg: 'EdDSA' }, /alg "EdDSA" does not fit an EC key on the curve "P-256", which verifies ES256/],
          ['an Ed25519 key with alg ES256', { ...ed25519, alg: 'ES256' }, /alg "ES256" does not fit an OKP key on the curve "Ed25519", which verifies EdDSA, Ed25519/],
          ['a key for encryption', { ...publicJwk, use: 'enc' }, /use must be "sig"/],
        ];
      };

      it('refuses a key that no accepted algorithm can verify with, an alg that does not fit the key, or a use other than sig, naming the key by kid or position, and stores nothing', async () => {
        const before = await snapshot();
        for (const [label, key, detail] of unusableKeys()) {
          const { kid: _kid, ...withoutKid } = key;
          assertRefused(await keyClient({ keys: [withoutKid] }), 'jwks', new RegExp(`^key 1: ${detail.source}`), label);
          assertRefused(await keyClient({ keys: [publicJwk, { ...withoutKid, kid: 'backup' }] }), 'jwks', new RegExp(`^key 2 \\(kid "backup"\\): ${detail.source}`), `${label}, as the second key`);
        }
        assert.equal(await snapshot(), before);
        // The repro from the field: an X25519 key in the smallest body the admin API takes.
        const repro = await api('POST', '/clients', { name: 'a', jwks: { keys: [{ kty: 'OKP', crv: 'X25519', x: 'hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo' }] } });
        assertRefused(repro, 'jwks', /X25519/);
      });

      it('accepts each key type with the algorithms it can verify, with or without alg', async () => {
        const rsa = publicJwkOf(() => generateKeyPairSync('rsa', { modulusLength: 2048 }));
        const p384 = publicJwkOf(() => generateKeyPairSync('ec', { namedCurve: 'P-384' }));
        const p521 = publicJwkOf(() => generateKeyPairSync('ec', { namedCurve: 'P-521' }));
        const ed25519 = publicJwkOf(() => generateKeyPairSync('ed25519'));
        const keys = [
          { ...rsa, kid: 'rsa', alg: 'PS256', use: 'sig' },
          { ...rsa, kid: 'rsa-any' },
          { ...publicJwk, alg: 'ES256' },
          { ...p384, kid: 'p384', alg: 'ES384' },
          { ...p521, kid: 'p521', alg: 'ES512' },
          { ...ed25519, kid: 'ed-eddsa', alg: 'EdDSA' },
          { ...ed25519, kid: 'ed-ed25519', alg: 'Ed25519' },
          { ...ed25519, kid: 'ed-any' },
        ];
        const created = await keyClient({ keys });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal(created.body.jwks.keys.length, keys.length);
      });

      /**
       * RSA public keys beyond the bounds that client assertions are verified with, and what the
       * refusal says. A public key is all registration needs, so the over-large and the
       * modulus-long exponents are written by hand rather than generated (an 8192-bit key takes seconds).
       */
      const rsaOutOfBounds = (): [string, Record<string, unknown>, RegExp][] => {
        const rsa = publicJwkOf(() => generateKeyPairSync('rsa', { modulusLength: 2048 }));
        const base64url = (value: bigint) => Buffer.from(value.toString(16).padStart(Math.ceil(value.toString(16).length / 2) * 2, '0'), 'hex').toString('base64url');
        const modulus8192 = randomBytes(1024);
        modulus8192[0]! |= 0x80;
        modulus8192[1023]! |= 1;
        const n = BigInt(`0x${Buffer.from(rsa.n as string, 'base64url').toString('hex')}`);
        return [
          ['an 8192-bit modulus', { ...rsa, n: modulus8192.toString('base64url') }, /RSA keys may have at most 4096 bits \(this one has 8192\)/],
          ['the public exponent 3', publicJwkOf(() => generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 })), /RSA keys must have the public exponent 65537/],
          ['the public exponent 2^31 - 1', { ...rsa, e: base64url(2n ** 31n - 1n) }, /RSA keys must have the public exponent 65537/],
          ['an exponent as long as the modulus', { ...rsa, e: base64url(n - 2n) }, /RSA keys must have the public exponent 65537/],
        ];
      };

      it('refuses an RSA key over 4096 bits or with a public exponent other than 65537, on creation and on change, naming the key, and stores nothing', async () => {
        const created = await keyClient({ keys: [publicJwk] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const before = await snapshot();
        for (const [label, key, detail] of rsaOutOfBounds()) {
          const { kid: _kid, ...withoutKid } = key;
          assertRefused(await keyClient({ keys: [withoutKid] }), 'jwks', new RegExp(`^key 1: ${detail.source}`), label);
          assertRefused(await keyClient({ keys: [publicJwk, { ...withoutKid, kid: 'big' }] }), 'jwks', new RegExp(`^key 2 \\(kid "big"\\): ${detail.source}`), `${label}, as the second key`);
          assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { jwks: { keys: [publicJwk, withoutKid] } }), 'jwks', detail, `${label}, on change`);
        }
        assert.equal(await snapshot(), before);
        const within = [2048, 3072, 4096].map((modulusLength) => ({ ...publicJwkOf(() => generateKeyPairSync('rsa', { modulusLength })), kid: `rsa-${modulusLength}` }));
        const accepted = await keyClient({ keys: within });
        assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
      });

      /** A developer signed in to the portal, with an application of theirs registered there. */
      async function portalApplication() {
        const { developer, browser, csrf } = await signedInDeveloper();
        const created = await browser.request(`${server.url}/developers/applications`, {
          form: { csrf, name: 'Key tool', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK },
        });
        assert.equal(created.status, 200, created.text.slice(0, 1000));
        const [application] = await server.gatehouse.storage.clients.listForOwner(developer.id);
        return { browser, csrf, application: application! };
      }

      it('refuses keys of the wrong type or algorithm pasted in the developer portal, naming the key, and the application keeps none', async () => {
        const { browser, csrf, application } = await portalApplication();
        const before = await snapshot();
        for (const [label, key, detail] of unusableKeys()) {
          const page = await browser.request(`${server.url}/developers/applications/${application.id}/keys`, { form: { csrf, jwks: JSON.stringify({ keys: [{ ...key, kid: 'laptop' }] }) } });
          assert.equal(page.status, 400, label);
          const error = (/<p class="field-error" id="app-jwks-error">([^<]*)</.exec(page.text)?.[1] ?? '').replaceAll('&quot;', '"');
          assert.match(error, new RegExp(`^Key 1 \\(kid "laptop"\\): ${detail.source}`), label);
          assert.doesNotMatch(page.text, /keys were saved/, label);
        }
        assert.equal(await snapshot(), before);
        assert.equal((await server.gatehouse.storage.clients.find(application.id))!.jwks, null);
      });

      it('refuses an RSA key over 4096 bits or with a public exponent other than 65537 pasted in the developer portal, naming the key, and lists one stored before as no longer accepted', async () => {
        const { browser, csrf, application } = await portalApplication();
        const before = await snapshot();
        for (const [label, key, detail] of rsaOutOfBounds()) {
          const page = await browser.request(`${server.url}/developers/applications/${application.id}/keys`, { form: { csrf, jwks: JSON.stringify({ keys: [{ ...key, kid: 'laptop' }] }) } });
          assert.equal(page.status, 400, label);
          const error = (/<p class="field-error" id="app-jwks-error">([^<]*)</.exec(page.text)?.[1] ?? '').replaceAll('&quot;', '"');
          assert.match(error, new RegExp(`^Key 1 \\(kid "laptop"\\): ${detail.source}`), label);
        }
        assert.equal(await snapshot(), before);
        assert.equal((await server.gatehouse.storage.clients.find(application.id))!.jwks, null);

        // One stored as an earlier version that did not check these bounds accepted it: listed, and said to be no longer accepted.
        const [, held] = rsaOutOfBounds()[0]!;
        await server.gatehouse.storage.clients.update(application.id, { jwks: { keys: [{ ...held, kid: 'held' }, publicJwk] } }, Math.floor(Date.now() / 1000));
        const page = await browser.request(`${server.url}/developers/applications/${application.id}`);
        const listed = [...page.text.matchAll(/<li class="row"><span class="row-main"><code>([^<]*)<\/code>.*?<\/li>/g)].map(([row, kid]) => [kid, /No longer accepted: RSA keys must have 2048 to 4096 bits and the public exponent 65537/.test(row)]);
        assert.deepEqual(listed, [['held', true], ['key-1', false]], page.text.slice(0, 3000));
      });

      it('refuses such keys pasted in the developer portal, and the application keeps none', async () => {
        const { browser, csrf, application } = await portalApplication();
        const before = await snapshot();
        for (const members of [{ key_ops: 'verify' }, { key_ops: ['sign'] }, { x5c: [1] }]) {
          const page = await browser.request(`${server.url}/developers/applications/${application.id}/keys`, { form: { csrf, jwks: JSON.stringify({ keys: [{ ...publicJwk, ...members }] }) } });
          assert.equal(page.status, 400, JSON.stringify(members));
          assert.match(page.text, /key_ops|x5c/);
        }
        assert.equal(await snapshot(), before);
        assert.equal((await server.gatehouse.storage.clients.find(application.id))!.jwks, null);
      });

      it('refuses a JWK Set nested thousands of levels deep with 400, from the admin API and the portal, and stores nothing', async () => {
        // Written as text: nested this deep, JSON.stringify cannot write it (the server could not either).
        const deep = (levels: number) => `{"keys":[{"kty":"EC","crv":${'['.repeat(levels)}${']'.repeat(levels)}}]}`;
        const { browser, csrf, application } = await portalApplication();
        const before = await snapshot();
        const asAdmin = async (method: string, path: string, body: string): Promise<Answer> => {
          const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers: { authorization: tokens.get(server)!, 'content-type': 'application/json' }, body });
          return { status: response.status, headers: response.headers, body: await response.json() };
        };
        const registration = `{"name":"Partner app","scopes":["objects:read"],"grant_types":["client_credentials"],"jwks":${deep(30_000)}}`;
        assertRefused(await asAdmin('POST', '/clients', registration), 'jwks', /nested/, 'registration');
        assertRefused(await asAdmin('PATCH', `/clients/${application.id}`, `{"jwks":${deep(30_000)}}`), 'jwks', /nested/, 'change');
        // A form percent-encodes each bracket in three characters: 10,000 levels fill most of 64 KiB.
        const page = await browser.request(`${server.url}/developers/applications/${application.id}/keys`, { form: { csrf, jwks: deep(10_000) } });
        assert.equal(page.status, 400, page.text.slice(0, 500));
        assert.match(/<p class="field-error" id="app-jwks-error">([^<]*)</.exec(page.text)?.[1] ?? '', /nested/);
        assert.equal(await snapshot(), before);
        assert.equal((await server.gatehouse.storage.clients.find(application.id))!.jwks, null);
      });
    });

    describe('length limits: the core’s, whoever registers (the command line and the portal reach it without the admin API’s schema)', () => {
      const long = (length: number, prefix = '') => prefix + 'x'.repeat(length - prefix.length);
      /** What each limit refuses, one character over it, with the field and the message the core gives. */
      const OVER: [string, Record<string, unknown>, string, RegExp][] = [
        ['a description', { description: long(2001) }, 'description', /^the description is longer than 2000 characters$/],
        ['a base URL', { baseUrl: long(2001, 'https://app.example/') }, 'base_url', /^the base URL is longer than 2000 characters$/],
        ['a redirect URI', { redirectUris: [long(2001, 'https://app.example/')] }, 'redirect_uris', /^the redirect URI is longer than 2000 characters$/],
        ['a post-logout redirect URI', { postLogoutRedirectUris: [long(2001, 'https://app.example/')] }, 'post_logout_redirect_uris', /^the post-logout redirect URI is longer than 2000 characters$/],
        ['101 redirect URIs', { redirectUris: Array.from({ length: 101 }, (_, i) => `https://app.example/cb${i}`) }, 'redirect_uris', /^a client has at most 100 redirect URIs$/],
        ['101 post-logout redirect URIs', { postLogoutRedirectUris: Array.from({ length: 101 }, (_, i) => `https://app.example/bye${i}`) }, 'post_logout_redirect_uris', /^a client has at most 100 post-logout redirect URIs$/],
      ];
      const web = { name: 'Long app', type: 'confidential' as const, grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [CALLBACK] };
      const refusal = (field: string, message: RegExp) => (error: unknown) => error instanceof ValidationError && error.field === field && message.test(error.message);

      it('refuses one character or entry over each limit on creation and on change, with the field and why, and stores nothing', async () => {
        const { client } = await createClient(server.gatehouse, web, server.gatehouse.clock());
        const before = await snapshot();
        for (const [label, over, field, message] of OVER) {
          await assert.rejects(createClient(server.gatehouse, { ...web, ...over }, server.gatehouse.clock()), refusal(field, message), `${label} on creation`);
          await assert.rejects(updateClient(server.gatehouse, client.id, over, server.gatehouse.clock()), refusal(field, message), `${label} on change`);
        }
        assert.equal(await snapshot(), before);
      });

      it('lets a client holding values over the limits from before keep them while other fields change, and refuses adding to them', async () => {
        const { client } = await createClient(server.gatehouse, web, server.gatehouse.clock());
        const held = { description: long(2500), baseUrl: long(2500, 'https://app.example/'), redirectUris: Array.from({ length: 120 }, (_, i) => `https://app.example/cb${i}`) };
        await server.gatehouse.storage.clients.update(client.id, held, server.gatehouse.clock());
        const renamed = await updateClient(server.gatehouse, client.id, { name: 'Renamed long app' }, server.gatehouse.clock());
        assert.equal(renamed?.client.name, 'Renamed long app');
        assert.deepEqual([renamed?.client.description, renamed?.client.baseUrl, renamed?.client.redirectUris], [held.description, held.baseUrl, held.redirectUris]);
        const fewer = await updateClient(server.gatehouse, client.id, { redirectUris: held.redirectUris.slice(1) }, server.gatehouse.clock());
        assert.equal(fewer?.client.redirectUris.length, 119);
        await assert.rejects(
          updateClient(server.gatehouse, client.id, { redirectUris: [...held.redirectUris.slice(1), 'https://app.example/new'] }, server.gatehouse.clock()),
          refusal('redirect_uris', /at most 100 redirect URIs/),
        );
        await assert.rejects(updateClient(server.gatehouse, client.id, { description: `${held.description}!` }, server.gatehouse.clock()), refusal('description', /longer than 2000/));
      });

      it('takes each value at its limit', async () => {
        const { client } = await createClient(
          server.gatehouse,
          {
            ...web,
            description: long(2000),
            baseUrl: long(2000, 'https://app.example/'),
            redirectUris: [long(2000, 'https://app.example/'), ...Array.from({ length: 99 }, (_, i) => `https://app.example/cb${i}`)],
            postLogoutRedirectUris: Array.from({ length: 100 }, (_, i) => `https://app.example/bye${i}`),
          },
          server.gatehouse.clock(),
        );
        assert.equal(client.description.length, 2000);
        assert.equal(client.redirectUris.length, 100);
      });
    });

    describe('the implicit grant (RFC 6749 §4.2) and the implicit.enabled setting', () => {
      const spa = { type: 'public', grant_types: ['implicit'], redirect_uris: [CALLBACK] };

      it('refuses to give a client the implicit grant while the operator has the flow turned off, says how to turn it on, and stores nothing', async () => {
        const before = await snapshot();
        assertRefused(await register(spa), 'grant_types', /implicit flow is turned off on this server.*implicit\.enabled/);
        assertRefused(await register({ grant_types: ['authorization_code', 'implicit'], redirect_uris: [CALLBACK] }), 'grant_types', /implicit\.enabled/);
        assert.equal(await snapshot(), before);
        // What /authorize would have answered such a client.
        const metadata = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as { response_types_supported: string[] };
        assert.deepEqual(metadata.response_types_supported, ['code']);
      });

      it('refuses to add the implicit grant to a client while the flow is off, and the client stays as it was', async () => {
        const created = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK] });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const before = await snapshot();
        assertRefused(await api('PATCH', `/clients/${created.body.client_id}`, { grant_types: ['authorization_code', 'implicit'] }), 'grant_types', /implicit\.enabled/);
        assert.equal(await snapshot(), before);
        assert.deepEqual((await api('GET', `/clients/${created.body.client_id}`)).body.grant_types, ['authorization_code']);
      });

      it('gives the implicit grant once the operator turned the flow on', async () => {
        const created = await register(spa, implicitOn);
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.deepEqual(created.body.grant_types, ['implicit']);
        const changed = await register({ grant_types: ['authorization_code'], redirect_uris: [CALLBACK] }, implicitOn);
        const patched = await api('PATCH', `/clients/${changed.body.client_id}`, { grant_types: ['authorization_code', 'implicit'] }, implicitOn);
        assert.equal(patched.status, 200, JSON.stringify(patched.body));
        assert.deepEqual(patched.body.grant_types, ['authorization_code', 'implicit']);
      });

      it('lets a client registered while the flow was on keep it, and be edited, after the operator turned it off; once dropped it cannot come back', async () => {
        // The same database, as the server was configured before the operator turned the flow off.
        const earlier = await createGatehouse(
          loadConfig(
            {
              GATEHOUSE_ISSUER: server.url,
              GATEHOUSE_DATA_DIR: server.database.dataDir,
              GATEHOUSE_SECRET: TEST_SECRET,
              ...(server.database.databaseUrl ? { DATABASE_URL: server.database.databaseUrl } : {}),
            },
            { implicit: { enabled: true } },
          ),
          { logger: pino({ level: 'silent' }), background: false },
        );
        let id: string;
        try {
          ({
            client: { id },
          } = await createClient(earlier, { name: 'Legacy viewer', type: 'public', grantTypes: ['implicit', 'authorization_code'], scopes: ['objects:read'], redirectUris: [CALLBACK] }, earlier.clock()));
        } finally {
          await earlier.close();
        }

        const renamed = await api('PATCH', `/clients/${id}`, { name: 'Legacy viewer (read only)', redirect_uris: [CALLBACK, 'https://app.example/cb2'] });
        assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
        assert.equal(renamed.body.name, 'Legacy viewer (read only)');
        assert.deepEqual(renamed.body.grant_types, ['implicit', 'authorization_code']);
        const restated = await api('PATCH', `/clients/${id}`, { grant_types: ['implicit', 'authorization_code'] });
        assert.equal(restated.status, 200, JSON.stringify(restated.body));

        const dropped = await api('PATCH', `/clients/${id}`, { grant_types: ['authorization_code'] });
        assert.equal(dropped.status, 200, JSON.stringify(dropped.body));
        const before = await snapshot();
        assertRefused(await api('PATCH', `/clients/${id}`, { grant_types: ['authorization_code', 'implicit'] }), 'grant_types', /implicit\.enabled/);
        assert.equal(await snapshot(), before);
      });
    });
  });
}
