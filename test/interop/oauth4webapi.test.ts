import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  allowInsecureRequests,
  AuthorizationResponseError,
  authorizationCodeGrantRequest,
  calculatePKCECodeChallenge,
  ClientSecretBasic,
  ClientSecretPost,
  clientCredentialsGrantRequest,
  discoveryRequest,
  generateRandomCodeVerifier,
  generateRandomNonce,
  generateRandomState,
  getValidatedIdTokenClaims,
  introspectionRequest,
  None,
  processAuthorizationCodeResponse,
  processClientCredentialsResponse,
  processDiscoveryResponse,
  processIntrospectionResponse,
  processRefreshTokenResponse,
  processRevocationResponse,
  processUserInfoResponse,
  refreshTokenGrantRequest,
  ResponseBodyError,
  revocationRequest,
  userInfoRequest,
  validateApplicationLevelSignature,
  validateAuthResponse,
  validateJwtAccessToken,
  WWWAuthenticateChallengeError,
  type AuthorizationServer,
  type Client,
  type ClientAuth,
} from 'oauth4webapi';
import { createUser } from '../../src/core/users.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * oauth4webapi (panva), unmodified, with its strict checks: the discovery document must name the
 * issuer it was fetched for; token responses must be JSON with a string `access_token`, a
 * `token_type`, a positive `expires_in`; ID tokens must carry the right `iss`, `aud`, `nonce`,
 * `iat` and `exp`; authorization responses must carry the RFC 9207 `iss`. Requests go over http on
 * loopback, which each call allows explicitly with `[allowInsecureRequests]`. The person's part
 * (sign-in and consent) is played over real HTTP by HttpBrowser.
 */
const REDIRECT_URI = 'https://rp.example.com/callback';
const USER = { email: 'katherine@example.com', password: 'correct horse battery staple', name: 'Katherine Johnson' };
const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access', 'objects:read', 'objects:download'];
/** Every request below goes to http://127.0.0.1: allowed explicitly, one call at a time. */
const INSECURE = { [allowInsecureRequests]: true } as const;

/** OpenID Connect Core §3.1.3.6: base64url of the left half of SHA-256 of the access token (RS256). */
const atHash = (accessToken: string): string => createHash('sha256').update(accessToken, 'ascii').digest().subarray(0, 16).toString('base64url');

for (const dialect of DIALECTS) {
  describe(`oauth4webapi as a client (${dialect})`, () => {
    let server: TestServer;
    let as: AuthorizationServer;
    let machine: { id: string; secret: string };
    let webApp: { id: string; secret: string };
    let spa: { id: string; secret: string };
    let resourceServer: { id: string; secret: string };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect);
      machine = await server.client({ name: 'Integration', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
      webApp = await server.client({
        name: 'Web app',
        type: 'confidential',
        redirectUris: [REDIRECT_URI],
        grantTypes: ['authorization_code', 'refresh_token'],
        scopes: OIDC_SCOPES,
      });
      spa = await server.client({ name: 'Native app', type: 'public', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token'], scopes: OIDC_SCOPES });
      resourceServer = await server.client({ name: 'Platform API', isResourceServer: true, grantTypes: [], scopes: [] });
      userId = (await createUser(server.gatehouse.storage, USER, server.gatehouse.clock())).id;
      as = await processDiscoveryResponse(new URL(server.url), await discoveryRequest(new URL(server.url), { algorithm: 'oidc', ...INSECURE }));
    });
    after(() => server.close());

    /** Plays the person: follows the authorization URL, signs in and consents; returns the redirect to the client. */
    async function person(authorizationUrl: URL, decision: 'allow' | 'deny' = 'allow', browser = new HttpBrowser()): Promise<URL> {
      let page = await browser.follow(authorizationUrl.href, server.url);
      for (let step = 0; step < 4 && 'url' in page && page.url; step++) {
        const path = new URL(page.url).pathname;
        assert.equal(page.status, 200, page.text.slice(0, 500));
        if (path === '/login') {
          page = await browser.follow(`${server.url}/login`, server.url, {
            form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), email: USER.email, password: USER.password },
          });
        } else if (path === '/consent') {
          page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision } });
        } else {
          break;
        }
      }
      if (!page.location?.startsWith(REDIRECT_URI)) assert.fail(`expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 500)}`);
      return new URL(page.location);
    }

    /** The authorization request as oauth4webapi's documentation builds it: PKCE S256, state, nonce. */
    async function authorizationRequest(client: Client, scope = 'openid profile email offline_access objects:download') {
      const codeVerifier = generateRandomCodeVerifier();
      const state = generateRandomState();
      const nonce = generateRandomNonce();
      const url = new URL(as.authorization_endpoint!);
      url.searchParams.set('client_id', client.client_id);
      url.searchParams.set('redirect_uri', REDIRECT_URI);
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('scope', scope);
      url.searchParams.set('code_challenge', await calculatePKCECodeChallenge(codeVerifier));
      url.searchParams.set('code_challenge_method', 'S256');
      url.searchParams.set('state', state);
      url.searchParams.set('nonce', nonce);
      return { url, codeVerifier, state, nonce };
    }

    /** The whole code flow through oauth4webapi: validated callback, code exchange, ID token checks. */
    async function codeFlow(client: Client, auth: ClientAuth, scope?: string) {
      const request = await authorizationRequest(client, scope);
      const callback = await person(request.url);
      const params = validateAuthResponse(as, client, callback, request.state);
      const response = await authorizationCodeGrantRequest(as, client, auth, params, REDIRECT_URI, request.codeVerifier, INSECURE);
      const tokens = await processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true });
      return { request, callback, tokens, response };
    }

    describe('discovery', () => {
      it('passes processDiscoveryResponse for OpenID Connect discovery and RFC 8414 metadata', async () => {
        assert.equal(as.issuer, server.url);
        assert.equal(as.token_endpoint, `${server.url}/token`);
        assert.equal(as.authorization_endpoint, `${server.url}/authorize`);
        assert.equal(as.introspection_endpoint, `${server.url}/introspect`);
        assert.equal(as.revocation_endpoint, `${server.url}/revoke`);
        assert.equal(as.userinfo_endpoint, `${server.url}/userinfo`);
        assert.equal(as.jwks_uri, `${server.url}/jwks.json`);
        assert.equal(as.authorization_response_iss_parameter_supported, true);
        assert.deepEqual(as.code_challenge_methods_supported, ['S256']);

        const oauth2 = await processDiscoveryResponse(new URL(server.url), await discoveryRequest(new URL(server.url), { algorithm: 'oauth2', ...INSECURE }));
        assert.equal(oauth2.issuer, server.url);
        assert.equal(oauth2.token_endpoint, as.token_endpoint);
      });

      it('is refused by processDiscoveryResponse for any other expected issuer', async () => {
        const response = await discoveryRequest(new URL(server.url), INSECURE);
        await assert.rejects(processDiscoveryResponse(new URL('https://other.example.com'), response), /issuer/);
      });

      it('is refused over http unless the caller allows it', async () => {
        await assert.rejects(discoveryRequest(new URL(server.url)), /https/i);
      });
    });

    describe('client credentials', () => {
      for (const [method, auth] of [
        ['client_secret_basic', () => ClientSecretBasic(machine.secret)],
        ['client_secret_post', () => ClientSecretPost(machine.secret)],
      ] as const) {
        it(`issues a token that passes processClientCredentialsResponse (${method}) and validateJwtAccessToken`, async () => {
          const client: Client = { client_id: machine.id };
          const response = await clientCredentialsGrantRequest(as, client, auth(), { scope: 'objects:read' }, INSECURE);
          assert.equal(response.headers.get('cache-control'), 'no-store');
          const tokens = await processClientCredentialsResponse(as, client, response);
          assert.equal(tokens.token_type, 'bearer');
          assert.equal(typeof tokens.access_token, 'string');
          // An hour; identical requests within tokens.clientCredentialsReuseSeconds share a token whose expires_in counts down.
          assert.ok(tokens.expires_in! <= 3600 && tokens.expires_in! >= 3600 - server.config.tokens.clientCredentialsReuseSeconds - 1, String(tokens.expires_in));
          assert.equal(tokens.refresh_token, undefined, 'no refresh token for client credentials');

          // RFC 9068, checked as a resource server would: signature from the JWKS, typ at+jwt, iss, aud, exp.
          const claims = await validateJwtAccessToken(
            as,
            new Request(`${server.url}/objects`, { headers: { authorization: `Bearer ${tokens.access_token}` } }),
            server.config.tokens.audience,
            INSECURE,
          );
          assert.equal(claims.iss, server.url);
          assert.equal(claims.sub, machine.id);
          assert.equal(claims.client_id, machine.id);
          assert.equal(claims.scope, 'objects:read');
        });
      }

      it('refuses a wrong secret in a way processClientCredentialsResponse reports (invalid_client)', async () => {
        const client: Client = { client_id: machine.id };
        for (const auth of [ClientSecretBasic('gate_cs_wrong'), ClientSecretPost('gate_cs_wrong')]) {
          const response = await clientCredentialsGrantRequest(as, client, auth, {}, INSECURE);
          await assert.rejects(processClientCredentialsResponse(as, client, response), (error: unknown) => {
            if (error instanceof WWWAuthenticateChallengeError) return error.status === 401 && error.cause[0]?.scheme === 'basic';
            return error instanceof ResponseBodyError && error.error === 'invalid_client' && error.status === 401;
          });
        }
      });

      it('refuses a user-only scope with invalid_scope (client credentials cannot download)', async () => {
        const client: Client = { client_id: machine.id };
        const response = await clientCredentialsGrantRequest(as, client, ClientSecretBasic(machine.secret), { scope: 'objects:download' }, INSECURE);
        await assert.rejects(processClientCredentialsResponse(as, client, response), (error: unknown) => error instanceof ResponseBodyError && error.error === 'invalid_scope');
      });
    });

    describe('authorization code with PKCE', () => {
      it('confidential client: validateAuthResponse (RFC 9207 iss), code exchange, ID token, userinfo, refresh', async () => {
        const client: Client = { client_id: webApp.id };
        const startedAt = Math.floor(Date.now() / 1000);
        const { request, callback, tokens, response } = await codeFlow(client, ClientSecretBasic(webApp.secret));
        assert.equal(callback.searchParams.get('iss'), server.url);
        assert.equal(callback.searchParams.get('state'), request.state);

        assert.equal(tokens.token_type, 'bearer');
        assert.equal(tokens.expires_in, 3600);
        assert.equal(tokens.scope, 'openid profile email offline_access objects:download');
        assert.ok(tokens.refresh_token);
        // The signature of the ID token, which oauth4webapi leaves to TLS unless asked (non-repudiation).
        await validateApplicationLevelSignature(as, response, INSECURE);
        const claims = getValidatedIdTokenClaims(tokens);
        assert.ok(claims);
        assert.equal(claims.iss, server.url);
        assert.equal(claims.sub, userId);
        assert.equal(claims.aud, webApp.id);
        assert.equal(claims.nonce, request.nonce);
        assert.equal(typeof claims.auth_time, 'number');
        assert.ok(Math.abs(claims.auth_time! - startedAt) < 60);
        assert.equal(claims.at_hash, atHash(tokens.access_token));

        const userinfo = await processUserInfoResponse(as, client, claims.sub, await userInfoRequest(as, client, tokens.access_token, INSECURE));
        assert.equal(userinfo.sub, userId);
        assert.equal(userinfo.email, USER.email);
        assert.equal(userinfo.email_verified, false);
        assert.equal(userinfo.name, USER.name);
        assert.equal(userinfo.preferred_username, USER.email);

        const refreshResponse = await refreshTokenGrantRequest(as, client, ClientSecretBasic(webApp.secret), tokens.refresh_token, INSECURE);
        const refreshed = await processRefreshTokenResponse(as, client, refreshResponse);
        assert.equal(refreshed.token_type, 'bearer');
        assert.notEqual(refreshed.access_token, tokens.access_token);
        assert.ok(refreshed.refresh_token);
        assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
        // OpenID Connect Core §12.2: the new ID token names the same person and sign-in.
        await validateApplicationLevelSignature(as, refreshResponse, INSECURE);
        const again = getValidatedIdTokenClaims(refreshed);
        assert.ok(again);
        assert.equal(again.sub, userId);
        assert.equal(again.auth_time, claims.auth_time);
        assert.equal((await processUserInfoResponse(as, client, userId, await userInfoRequest(as, client, refreshed.access_token, INSECURE))).sub, userId);

        // The rotated-out refresh token is refused (and, as a replay, ends the grant).
        const replay = await refreshTokenGrantRequest(as, client, ClientSecretBasic(webApp.secret), tokens.refresh_token, INSECURE);
        await assert.rejects(processRefreshTokenResponse(as, client, replay), (error: unknown) => error instanceof ResponseBodyError && error.error === 'invalid_grant');
      });

      it('confidential client with client_secret_post', async () => {
        const client: Client = { client_id: webApp.id };
        const { tokens } = await codeFlow(client, ClientSecretPost(webApp.secret));
        assert.equal(getValidatedIdTokenClaims(tokens)?.sub, userId);
        const refreshed = await processRefreshTokenResponse(as, client, await refreshTokenGrantRequest(as, client, ClientSecretPost(webApp.secret), tokens.refresh_token!, INSECURE));
        assert.ok(refreshed.access_token);
      });

      it('public client (none): PKCE alone, then refresh', async () => {
        const client: Client = { client_id: spa.id, token_endpoint_auth_method: 'none' };
        const { request, tokens } = await codeFlow(client, None());
        const claims = getValidatedIdTokenClaims(tokens)!;
        assert.equal(claims.aud, spa.id);
        assert.equal(claims.nonce, request.nonce);
        const refreshed = await processRefreshTokenResponse(as, client, await refreshTokenGrantRequest(as, client, None(), tokens.refresh_token!, INSECURE));
        assert.ok(refreshed.access_token);
      });

      it('a wrong code_verifier comes back as invalid_grant', async () => {
        const client: Client = { client_id: spa.id, token_endpoint_auth_method: 'none' };
        const request = await authorizationRequest(client);
        const params = validateAuthResponse(as, client, await person(request.url), request.state);
        const response = await authorizationCodeGrantRequest(as, client, None(), params, REDIRECT_URI, generateRandomCodeVerifier(), INSECURE);
        await assert.rejects(processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce }), (error: unknown) => error instanceof ResponseBodyError && error.error === 'invalid_grant');
      });

      it('validateAuthResponse refuses a response with another iss, or none, and a wrong state', async () => {
        const client: Client = { client_id: webApp.id };
        const request = await authorizationRequest(client);
        const callback = await person(request.url);
        const forged = new URL(callback);
        forged.searchParams.set('iss', 'https://attacker.example');
        assert.throws(() => validateAuthResponse(as, client, forged, request.state), /"iss"/);
        const missing = new URL(callback);
        missing.searchParams.delete('iss');
        assert.throws(() => validateAuthResponse(as, client, missing, request.state), /"iss"/);
        assert.throws(() => validateAuthResponse(as, client, callback, generateRandomState()), /"state"/);
        // The genuine response still works.
        const params = validateAuthResponse(as, client, callback, request.state);
        const response = await authorizationCodeGrantRequest(as, client, ClientSecretBasic(webApp.secret), params, REDIRECT_URI, request.codeVerifier, INSECURE);
        assert.equal(getValidatedIdTokenClaims(await processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce }))?.sub, userId);
      });

      it('processAuthorizationCodeResponse refuses an ID token whose nonce is not the one sent', async () => {
        const client: Client = { client_id: webApp.id };
        const request = await authorizationRequest(client);
        const params = validateAuthResponse(as, client, await person(request.url), request.state);
        const response = await authorizationCodeGrantRequest(as, client, ClientSecretBasic(webApp.secret), params, REDIRECT_URI, request.codeVerifier, INSECURE);
        await assert.rejects(processAuthorizationCodeResponse(as, client, response, { expectedNonce: generateRandomNonce() }), /nonce/);
      });

      it('Deny arrives as access_denied, with state and iss, through validateAuthResponse', async () => {
        const client: Client = { client_id: webApp.id };
        const request = await authorizationRequest(client, 'openid email');
        request.url.searchParams.set('prompt', 'consent');
        const callback = await person(request.url, 'deny');
        assert.throws(
          () => validateAuthResponse(as, client, callback, request.state),
          (error: unknown) => error instanceof AuthorizationResponseError && error.error === 'access_denied',
        );
      });
    });

    describe('introspection and revocation', () => {
      it('a resource server introspects access and refresh tokens (processIntrospectionResponse)', async () => {
        const client: Client = { client_id: webApp.id };
        const { tokens } = await codeFlow(client, ClientSecretBasic(webApp.secret));
        const rs: Client = { client_id: resourceServer.id };

        const access = await processIntrospectionResponse(as, rs, await introspectionRequest(as, rs, ClientSecretBasic(resourceServer.secret), tokens.access_token, INSECURE));
        assert.equal(access.active, true);
        assert.equal(access.client_id, webApp.id);
        assert.equal(access.sub, userId);
        assert.equal(access.iss, server.url);
        assert.equal(access.token_type, 'Bearer');
        assert.equal(access.scope, 'openid profile email offline_access objects:download');
        assert.equal(typeof access.exp, 'number');

        const refresh = await processIntrospectionResponse(
          as,
          rs,
          await introspectionRequest(as, rs, ClientSecretPost(resourceServer.secret), tokens.refresh_token!, { ...INSECURE, additionalParameters: { token_type_hint: 'refresh_token' } }),
        );
        assert.equal(refresh.active, true);
        assert.equal(refresh.client_id, webApp.id);
        assert.equal(refresh.sub, userId);

        const unknown = await processIntrospectionResponse(as, rs, await introspectionRequest(as, rs, ClientSecretBasic(resourceServer.secret), 'not-a-token', INSECURE));
        assert.deepEqual(unknown, { active: false });

        const ccResponse = await clientCredentialsGrantRequest(as, { client_id: machine.id }, ClientSecretBasic(machine.secret), {}, INSECURE);
        const cc = await processClientCredentialsResponse(as, { client_id: machine.id }, ccResponse);
        const machineToken = await processIntrospectionResponse(as, rs, await introspectionRequest(as, rs, ClientSecretBasic(resourceServer.secret), cc.access_token, INSECURE));
        assert.equal(machineToken.active, true);
        assert.equal(machineToken.sub, machine.id);
        assert.equal(machineToken.client_id, machine.id);
      });

      it('revokes a refresh token (processRevocationResponse): the grant ends, introspection says inactive', async () => {
        const client: Client = { client_id: webApp.id };
        const { tokens } = await codeFlow(client, ClientSecretBasic(webApp.secret));
        const rs: Client = { client_id: resourceServer.id };

        const revoked = await processRevocationResponse(
          await revocationRequest(as, client, ClientSecretBasic(webApp.secret), tokens.refresh_token!, { ...INSECURE, additionalParameters: { token_type_hint: 'refresh_token' } }),
        );
        assert.equal(revoked, undefined);
        const afterRevoke = await processIntrospectionResponse(as, rs, await introspectionRequest(as, rs, ClientSecretBasic(resourceServer.secret), tokens.refresh_token!, INSECURE));
        assert.equal(afterRevoke.active, false);
        const refresh = await refreshTokenGrantRequest(as, client, ClientSecretBasic(webApp.secret), tokens.refresh_token!, INSECURE);
        await assert.rejects(processRefreshTokenResponse(as, client, refresh), (error: unknown) => error instanceof ResponseBodyError && error.error === 'invalid_grant');

        // RFC 7009 §2.2: an unknown token is answered with 200 too.
        assert.equal(await processRevocationResponse(await revocationRequest(as, client, ClientSecretPost(webApp.secret), 'gate_rt_unknown', INSECURE)), undefined);
      });

      it('revokes an access token: introspection and userinfo refuse it afterwards', async () => {
        const client: Client = { client_id: webApp.id };
        const { tokens } = await codeFlow(client, ClientSecretPost(webApp.secret));
        const rs: Client = { client_id: resourceServer.id };
        await processRevocationResponse(await revocationRequest(as, client, ClientSecretPost(webApp.secret), tokens.access_token, { ...INSECURE, additionalParameters: { token_type_hint: 'access_token' } }));
        const introspected = await processIntrospectionResponse(as, rs, await introspectionRequest(as, rs, ClientSecretBasic(resourceServer.secret), tokens.access_token, INSECURE));
        assert.equal(introspected.active, false);
        await assert.rejects(processUserInfoResponse(as, client, userId, await userInfoRequest(as, client, tokens.access_token, INSECURE)), (error: unknown) => {
          assert.ok(error instanceof WWWAuthenticateChallengeError, String(error));
          assert.equal(error.status, 401);
          assert.equal(error.cause[0]?.scheme, 'bearer');
          assert.equal(error.cause[0]?.parameters.error, 'invalid_token');
          return true;
        });
      });
    });

    describe('userinfo', () => {
      it('releases claims per scope and names the expected subject (processUserInfoResponse)', async () => {
        const client: Client = { client_id: webApp.id };
        for (const [scope, expectEmail, expectName] of [
          ['openid email', true, false],
          ['openid profile', false, true],
          ['openid', false, false],
        ] as const) {
          const { tokens } = await codeFlow(client, ClientSecretBasic(webApp.secret), scope);
          const userinfo = await processUserInfoResponse(as, client, userId, await userInfoRequest(as, client, tokens.access_token, INSECURE));
          assert.equal(userinfo.sub, userId, scope);
          assert.equal(userinfo.email, expectEmail ? USER.email : undefined, scope);
          assert.equal(userinfo.name, expectName ? USER.name : undefined, scope);
        }
      });

      it('is refused by processUserInfoResponse when the subject is not the ID token’s', async () => {
        const client: Client = { client_id: webApp.id };
        const { tokens } = await codeFlow(client, ClientSecretBasic(webApp.secret), 'openid');
        await assert.rejects(processUserInfoResponse(as, client, 'someone-else', await userInfoRequest(as, client, tokens.access_token, INSECURE)), /sub/);
      });
    });
  });
}
