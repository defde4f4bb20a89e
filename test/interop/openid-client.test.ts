import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  allowInsecureRequests,
  AuthorizationResponseError,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  buildEndSessionUrl,
  calculatePKCECodeChallenge,
  clientCredentialsGrant,
  ClientSecretBasic,
  ClientSecretPost,
  discovery,
  enableNonRepudiationChecks,
  fetchUserInfo,
  implicitAuthentication,
  None,
  PrivateKeyJwt,
  randomNonce,
  randomPKCECodeVerifier,
  randomState,
  refreshTokenGrant,
  ResponseBodyError,
  useIdTokenResponseType,
  WWWAuthenticateChallengeError,
  type Configuration,
} from 'openid-client';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { createClient } from '../../src/core/applications.ts';
import { createUser } from '../../src/core/users.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * openid-client (panva), unmodified, as the relying party: it discovers Gatehouse, sends the person
 * to /authorize with PKCE, state and nonce, checks the authorization response (state, RFC 9207
 * `iss`), exchanges the code, validates the ID token strictly, reads userinfo and refreshes. The
 * person's part (sign-in and consent) is played over real HTTP by HttpBrowser.
 */
const REDIRECT_URI = 'https://rp.example.com/callback';
const SIGNED_OUT_URI = 'https://rp.example.com/signed-out';
const USER = { email: 'grace@example.com', password: 'correct horse battery staple', name: 'Grace Hopper' };
const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'];

/** openid-client wraps oauth4webapi's error, whose message names the `iss` parameter. */
const issRejected = (error: Error): boolean => /"iss"/.test(String((error.cause as Error | undefined)?.message));

/** OpenID Connect Core §3.1.3.6: base64url of the left half of SHA-256 of the access token (RS256). */
const atHash = (accessToken: string): string => createHash('sha256').update(accessToken, 'ascii').digest().subarray(0, 16).toString('base64url');

for (const dialect of DIALECTS) {
  describe(`openid-client as a relying party (${dialect})`, () => {
    let server: TestServer;
    let confidential: { id: string; secret: string };
    let publicClient: { id: string; secret: string };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect);
      confidential = await server.client({
        name: 'Relying party',
        type: 'confidential',
        redirectUris: [REDIRECT_URI],
        postLogoutRedirectUris: [SIGNED_OUT_URI],
        grantTypes: ['authorization_code', 'refresh_token'],
        scopes: OIDC_SCOPES,
      });
      publicClient = await server.client({
        name: 'Single-page app',
        type: 'public',
        redirectUris: [REDIRECT_URI],
        grantTypes: ['authorization_code', 'refresh_token'],
        scopes: OIDC_SCOPES,
      });
      userId = (await createUser(server.gatehouse.storage, USER, server.gatehouse.clock())).id;
    });
    after(() => server.close());

    /**
     * openid-client configured from discovery. http on loopback needs allowInsecureRequests; with
     * enableNonRepudiationChecks it also verifies the ID token signatures from the token endpoint
     * against the JWKS (which it would otherwise leave to TLS, OpenID Connect Core §3.1.3.7).
     */
    const discover = (clientId: string, secret?: string, auth?: Parameters<typeof discovery>[3]) =>
      discovery(new URL(server.url), clientId, secret, auth, { execute: [allowInsecureRequests, enableNonRepudiationChecks] });

    /**
     * Plays the person: follows the authorization URL, signs in and answers the consent page as
     * they appear, and returns the last response: a redirect to the client, or the page that posts
     * the response to it (form_post).
     */
    async function personUntilClient(browser: HttpBrowser, authorizationUrl: URL, decision: 'allow' | 'deny' = 'allow') {
      let page = await browser.follow(authorizationUrl.href, server.url);
      for (let step = 0; step < 4; step++) {
        if (!('url' in page) || !page.url || page.text.includes('id="form-post"')) break;
        const path = new URL(page.url).pathname;
        if (path === '/login') {
          assert.equal(page.status, 200, page.text.slice(0, 500));
          page = await browser.follow(`${server.url}/login`, server.url, {
            form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: USER.email, password: USER.password },
          });
        } else if (path === '/consent') {
          assert.equal(page.status, 200, page.text.slice(0, 500));
          page = await browser.follow(`${server.url}/consent`, server.url, {
            form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision },
          });
        } else {
          break;
        }
      }
      return page;
    }

    /** As personUntilClient, for a redirect: the URL the browser is sent to at the client. */
    async function person(browser: HttpBrowser, authorizationUrl: URL, decision: 'allow' | 'deny' = 'allow'): Promise<URL> {
      const page = await personUntilClient(browser, authorizationUrl, decision);
      if (!page.location?.startsWith(REDIRECT_URI)) assert.fail(`expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 500)}`);
      return new URL(page.location);
    }

    /** The authorization request openid-client builds, with PKCE, state and nonce. */
    async function authorizationRequest(config: Configuration, scope = 'openid profile email offline_access') {
      const pkceCodeVerifier = randomPKCECodeVerifier();
      const state = randomState();
      const nonce = randomNonce();
      const url = buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope,
        code_challenge: await calculatePKCECodeChallenge(pkceCodeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      });
      /** What openid-client checks in the authorization response and the ID token. */
      const checks = { pkceCodeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true };
      return { url, state, nonce, checks };
    }

    describe('discovery', () => {
      it('serves /.well-known/openid-configuration with everything openid-client needs', async () => {
        const response = await fetch(`${server.url}/.well-known/openid-configuration`);
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
        const metadata = (await response.json()) as Record<string, unknown>;
        assert.equal(metadata.issuer, server.url);
        assert.equal(metadata.authorization_endpoint, `${server.url}/authorize`);
        assert.equal(metadata.token_endpoint, `${server.url}/token`);
        assert.equal(metadata.userinfo_endpoint, `${server.url}/userinfo`);
        assert.equal(metadata.jwks_uri, `${server.url}/jwks.json`);
        assert.ok((metadata.response_types_supported as string[]).includes('code'));
        assert.deepEqual(metadata.subject_types_supported, ['public']);
        assert.ok((metadata.id_token_signing_alg_values_supported as string[]).includes('RS256'));
        assert.ok((metadata.code_challenge_methods_supported as string[]).includes('S256'));
        assert.ok(!(metadata.code_challenge_methods_supported as string[]).includes('plain'));
        for (const grant of ['authorization_code', 'refresh_token']) assert.ok((metadata.grant_types_supported as string[]).includes(grant), grant);
        for (const method of ['client_secret_basic', 'client_secret_post', 'none']) assert.ok((metadata.token_endpoint_auth_methods_supported as string[]).includes(method), method);
        for (const scope of ['openid', 'profile', 'email', 'offline_access']) assert.ok((metadata.scopes_supported as string[]).includes(scope), scope);
        for (const claim of ['sub', 'auth_time', 'nonce', 'at_hash', 'name', 'email']) assert.ok((metadata.claims_supported as string[]).includes(claim), claim);
        // c_hash is only in ID tokens of the hybrid flow, which is not offered.
        assert.ok(!(metadata.response_types_supported as string[]).some((type) => type.includes('code') && type.includes(' ')));
        assert.ok(!(metadata.claims_supported as string[]).includes('c_hash'));
        assert.equal(metadata.authorization_response_iss_parameter_supported, true);

        const jwks = (await (await fetch(metadata.jwks_uri as string)).json()) as { keys: Record<string, unknown>[] };
        assert.ok(jwks.keys.some((key) => key.alg === 'RS256' && key.kty === 'RSA' && typeof key.kid === 'string' && key.use === 'sig'));
      });

      it('is accepted by openid-client discovery, which checks the issuer against the URL it was given', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const metadata = config.serverMetadata();
        assert.equal(metadata.issuer, server.url);
        assert.equal(metadata.token_endpoint, `${server.url}/token`);
        assert.equal(metadata.supportsPKCE(), true);
        assert.equal(metadata.authorization_response_iss_parameter_supported, true);
      });

      it('is accepted through RFC 8414 /.well-known/oauth-authorization-server as well', async () => {
        const config = await discovery(new URL(server.url), confidential.id, confidential.secret, undefined, { execute: [allowInsecureRequests, enableNonRepudiationChecks], algorithm: 'oauth2' });
        assert.equal(config.serverMetadata().issuer, server.url);
        const request = await authorizationRequest(config);
        const tokens = await authorizationCodeGrant(config, await person(new HttpBrowser(), request.url), request.checks);
        assert.equal(tokens.claims()?.sub, userId);
      });
    });

    describe('authorization code with PKCE, confidential client', () => {
      it('signs in, exchanges the code (client_secret_basic), validates the ID token, reads userinfo and refreshes', async () => {
        const config = await discover(confidential.id, confidential.secret, ClientSecretBasic(confidential.secret));
        const request = await authorizationRequest(config);
        const callback = await person(new HttpBrowser(), request.url);
        assert.equal(callback.searchParams.get('iss'), server.url, 'RFC 9207: the response names the issuer');
        assert.equal(callback.searchParams.get('state'), request.state);

        const startedAt = Math.floor(Date.now() / 1000);
        const tokens = await authorizationCodeGrant(config, callback, request.checks);
        assert.equal(tokens.token_type.toLowerCase(), 'bearer');
        assert.ok(tokens.access_token);
        assert.ok(tokens.refresh_token);
        assert.ok(tokens.id_token);
        assert.equal(tokens.scope, 'openid profile email offline_access');

        const claims = tokens.claims();
        assert.ok(claims);
        assert.equal(claims.iss, server.url);
        assert.equal(claims.sub, userId);
        assert.equal(claims.aud, confidential.id);
        assert.equal(claims.nonce, request.nonce);
        assert.equal(typeof claims.auth_time, 'number');
        assert.ok(Math.abs((claims.auth_time as number) - startedAt) < 60, 'auth_time is when the person signed in');
        assert.equal(claims.at_hash, atHash(tokens.access_token));

        const userinfo = await fetchUserInfo(config, tokens.access_token, claims.sub);
        assert.equal(userinfo.sub, userId);
        assert.equal(userinfo.email, USER.email);
        assert.equal(userinfo.email_verified, false);
        assert.equal(userinfo.name, USER.name);
        assert.equal(userinfo.preferred_username, USER.email);

        const refreshed = await refreshTokenGrant(config, tokens.refresh_token!);
        assert.ok(refreshed.access_token);
        assert.notEqual(refreshed.access_token, tokens.access_token);
        assert.ok(refreshed.refresh_token);
        assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
        // OpenID Connect Core §12.2: Gatehouse sends a fresh ID token, which openid-client validated.
        assert.ok(refreshed.id_token);
        const again = refreshed.claims()!;
        assert.equal(again.sub, userId);
        assert.equal(again.iss, server.url);
        assert.equal(again.auth_time, claims.auth_time);
        assert.equal(again.nonce, undefined);
        assert.equal(again.at_hash, atHash(refreshed.access_token));
        const afterRefresh = await fetchUserInfo(config, refreshed.access_token, userId);
        assert.equal(afterRefresh.sub, userId);
        assert.equal(afterRefresh.email, USER.email);
      });

      it('works with client_secret_post, which is openid-client’s default for a client with a secret', async () => {
        for (const config of [await discover(confidential.id, confidential.secret), await discover(confidential.id, confidential.secret, ClientSecretPost(confidential.secret))]) {
          const request = await authorizationRequest(config);
          const callback = await person(new HttpBrowser(), request.url);
          const tokens = await authorizationCodeGrant(config, callback, request.checks);
          assert.equal(tokens.claims()?.sub, userId);
          const refreshed = await refreshTokenGrant(config, tokens.refresh_token!);
          assert.ok(refreshed.access_token);
        }
      });

      it('refuses a wrong client secret with invalid_client, which openid-client reports for Basic and post', async () => {
        for (const auth of [ClientSecretBasic('cs_wrong'), ClientSecretPost('cs_wrong')]) {
          const config = await discover(confidential.id, undefined, auth);
          const request = await authorizationRequest(config);
          const callback = await person(new HttpBrowser(), request.url);
          await assert.rejects(
            authorizationCodeGrant(config, callback, request.checks),
            (error: unknown) => {
              // RFC 6749 §5.2: 401 with a Basic challenge when the client used Basic; a JSON error otherwise.
              if (error instanceof WWWAuthenticateChallengeError) return error.status === 401 && error.cause[0]?.scheme === 'basic';
              return error instanceof ResponseBodyError && error.error === 'invalid_client';
            },
          );
        }
      });

      it('authenticates with private_key_jwt: clientCredentialsGrant signs an assertion Gatehouse accepts once per request', async () => {
        const { privateKey, publicKey } = await generateKeyPair('ES256');
        const { client } = await createClient(
          server.gatehouse,
          { name: 'Key-signed service', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'svc-1' }] } },
          server.gatehouse.clock(),
        );
        const config = await discover(client.id, undefined, PrivateKeyJwt({ key: privateKey, kid: 'svc-1' }));
        for (let i = 0; i < 2; i++) {
          const tokens = await clientCredentialsGrant(config, { scope: 'objects:read' });
          assert.equal(tokens.token_type, 'bearer');
          assert.equal(decodeJwt(tokens.access_token).client_id, client.id);
        }
        const stranger = await discover(client.id, undefined, PrivateKeyJwt((await generateKeyPair('ES256')).privateKey));
        await assert.rejects(clientCredentialsGrant(stranger, { scope: 'objects:read' }), (error: unknown) => error instanceof ResponseBodyError && error.error === 'invalid_client');
      });

      it('releases claims per scope: email only with email, name only with profile', async () => {
        const config = await discover(confidential.id, confidential.secret);
        for (const [scope, expectEmail, expectName] of [
          ['openid email', true, false],
          ['openid profile', false, true],
          ['openid', false, false],
        ] as const) {
          const request = await authorizationRequest(config, scope);
          const callback = await person(new HttpBrowser(), request.url);
          const tokens = await authorizationCodeGrant(config, callback, request.checks);
          const userinfo = await fetchUserInfo(config, tokens.access_token, userId);
          assert.equal(userinfo.sub, userId, scope);
          assert.equal(userinfo.email, expectEmail ? USER.email : undefined, scope);
          assert.equal(userinfo.name, expectName ? USER.name : undefined, scope);
        }
      });

      it('honours max_age: auth_time is checked by openid-client', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const request = await authorizationRequest(config);
        request.url.searchParams.set('max_age', '300');
        const callback = await person(new HttpBrowser(), request.url);
        const tokens = await authorizationCodeGrant(config, callback, { ...request.checks, maxAge: 300 });
        assert.equal(typeof tokens.claims()?.auth_time, 'number');
      });
    });

    describe('authorization code with PKCE, public client', () => {
      it('exchanges the code without a secret (none), validates the ID token, reads userinfo and refreshes', async () => {
        const config = await discover(publicClient.id, undefined, None());
        const request = await authorizationRequest(config);
        const callback = await person(new HttpBrowser(), request.url);
        const tokens = await authorizationCodeGrant(config, callback, request.checks);
        const claims = tokens.claims()!;
        assert.equal(claims.sub, userId);
        assert.equal(claims.aud, publicClient.id);
        assert.equal(claims.nonce, request.nonce);
        assert.equal(typeof claims.auth_time, 'number');
        assert.equal(claims.at_hash, atHash(tokens.access_token));

        const userinfo = await fetchUserInfo(config, tokens.access_token, userId);
        assert.equal(userinfo.email, USER.email);
        assert.equal(userinfo.name, USER.name);

        const refreshed = await refreshTokenGrant(config, tokens.refresh_token!);
        assert.ok(refreshed.access_token);
        assert.equal((await fetchUserInfo(config, refreshed.access_token, userId)).sub, userId);
      });

      it('is refused by Gatehouse with a wrong code_verifier, which openid-client reports', async () => {
        const config = await discover(publicClient.id, undefined, None());
        const request = await authorizationRequest(config);
        const callback = await person(new HttpBrowser(), request.url);
        await assert.rejects(
          authorizationCodeGrant(config, callback, { ...request.checks, pkceCodeVerifier: randomPKCECodeVerifier() }),
          (error: Error & { error?: string }) => error.error === 'invalid_grant',
        );
      });
    });

    describe('RFC 9207 iss in the authorization response', () => {
      it('is checked by openid-client: a response with another issuer or none is refused', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const request = await authorizationRequest(config);
        const callback = await person(new HttpBrowser(), request.url);
        assert.equal(callback.searchParams.get('iss'), server.url);
        const { checks } = request;

        const forged = new URL(callback);
        forged.searchParams.set('iss', 'https://attacker.example');
        await assert.rejects(authorizationCodeGrant(config, forged, checks), issRejected);
        const missing = new URL(callback);
        missing.searchParams.delete('iss');
        await assert.rejects(authorizationCodeGrant(config, missing, checks), issRejected);

        // The genuine response still works: the rejected attempts never reached the token endpoint.
        const tokens = await authorizationCodeGrant(config, callback, checks);
        assert.equal(tokens.claims()?.sub, userId);
      });

      it('is on error responses too: Deny arrives as access_denied with state and iss', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const request = await authorizationRequest(config, 'openid profile email');
        // Consent to these scopes may already be remembered; prompt=consent asks again.
        request.url.searchParams.set('prompt', 'consent');
        const callback = await person(new HttpBrowser(), request.url, 'deny');
        assert.equal(callback.searchParams.get('iss'), server.url);
        assert.equal(callback.searchParams.get('state'), request.state);
        await assert.rejects(
          authorizationCodeGrant(config, callback, request.checks),
          (error: unknown) => error instanceof AuthorizationResponseError && error.error === 'access_denied',
        );
      });
    });
    describe('response modes, userinfo errors, single sign-on and logout', () => {
      it('answers with response_mode=form_post, which openid-client reads from the POST body', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const request = await authorizationRequest(config);
        request.url.searchParams.set('response_mode', 'form_post');
        const page = await personUntilClient(new HttpBrowser(), request.url);
        assert.equal(page.status, 200);
        assert.match(page.text, new RegExp(`<form method="post" action="${REDIRECT_URI}"`));
        const body = new URLSearchParams({ code: hiddenField(page.text, 'code'), state: hiddenField(page.text, 'state'), iss: hiddenField(page.text, 'iss') });
        assert.equal(body.get('iss'), server.url);
        const callback = new Request(REDIRECT_URI, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
        const tokens = await authorizationCodeGrant(config, callback, request.checks);
        assert.equal(tokens.claims()?.sub, userId);
      });

      it('refuses userinfo for an invalid token with a Bearer challenge openid-client understands', async () => {
        const config = await discover(confidential.id, confidential.secret);
        await assert.rejects(fetchUserInfo(config, 'not-a-token', userId), (error: unknown) => {
          assert.ok(error instanceof WWWAuthenticateChallengeError, String(error));
          assert.equal(error.status, 401);
          assert.equal(error.cause[0]?.scheme, 'bearer');
          assert.equal(error.cause[0]?.parameters.error, 'invalid_token');
          return true;
        });
      });

      it('signs the person in once for several authorizations, then out through the end-session endpoint', async () => {
        const config = await discover(confidential.id, confidential.secret);
        const browser = new HttpBrowser();
        const first = await authorizationRequest(config);
        const firstTokens = await authorizationCodeGrant(config, await person(browser, first.url), first.checks);

        // Signed in and consent remembered: prompt=none answers at once, with the same auth_time.
        const silent = await authorizationRequest(config);
        silent.url.searchParams.set('prompt', 'none');
        const silentTokens = await authorizationCodeGrant(config, await person(browser, silent.url), silent.checks);
        assert.equal(silentTokens.claims()?.auth_time, firstTokens.claims()?.auth_time);

        const state = randomState();
        const endSession = buildEndSessionUrl(config, { id_token_hint: firstTokens.id_token!, post_logout_redirect_uri: SIGNED_OUT_URI, state });
        assert.equal(endSession.origin + endSession.pathname, `${server.url}/logout`);
        const out = await browser.follow(endSession.href, server.url);
        assert.ok(out.location, `expected a redirect after sign-out, got ${out.status}`);
        const back = new URL(out.location);
        assert.equal(back.origin + back.pathname, SIGNED_OUT_URI);
        assert.equal(back.searchParams.get('state'), state);

        // Signed out: prompt=none now comes back as login_required, with iss, through openid-client.
        const after = await authorizationRequest(config);
        after.url.searchParams.set('prompt', 'none');
        const callback = await person(browser, after.url);
        await assert.rejects(
          authorizationCodeGrant(config, callback, after.checks),
          (error: unknown) => error instanceof AuthorizationResponseError && error.error === 'login_required',
        );
      });
    });
  });

  describe(`openid-client with the implicit flow enabled (${dialect})`, () => {
    let server: TestServer;
    let spa: { id: string; secret: string };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect, { config: { implicit: { enabled: true } } });
      spa = await server.client({ name: 'Legacy SPA', type: 'public', redirectUris: [REDIRECT_URI], grantTypes: ['implicit'], scopes: ['openid', 'profile', 'email'] });
      userId = (await createUser(server.gatehouse.storage, USER, server.gatehouse.clock())).id;
    });
    after(() => server.close());

    it('returns an ID token in the fragment that implicitAuthentication accepts (response_type=id_token)', async () => {
      const config = await discovery(new URL(server.url), spa.id, undefined, None(), { execute: [allowInsecureRequests, useIdTokenResponseType] });
      assert.ok(config.serverMetadata().response_types_supported?.includes('id_token'));
      const state = randomState();
      const nonce = randomNonce();
      const url = buildAuthorizationUrl(config, { redirect_uri: REDIRECT_URI, scope: 'openid profile email', state, nonce });
      assert.equal(url.searchParams.get('response_type'), 'id_token');

      const browser = new HttpBrowser();
      let page = await browser.follow(url.href, server.url);
      page = await browser.follow(`${server.url}/login`, server.url, {
        form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: USER.email, password: USER.password },
      });
      page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      if (!page.location?.startsWith(REDIRECT_URI)) assert.fail(`expected a redirect to the client, got ${page.status}`);
      const callback = new URL(page.location);
      assert.equal(callback.search, '', 'nothing in the query string');

      const claims = await implicitAuthentication(config, callback, nonce, { expectedState: state });
      assert.equal(claims.iss, server.url);
      assert.equal(claims.sub, userId);
      assert.equal(claims.aud, spa.id);
      assert.equal(claims.nonce, nonce);
      assert.equal(typeof claims.auth_time, 'number');
      assert.equal(claims.email, USER.email);
      assert.equal(claims.name, USER.name);
    });
  });
}
