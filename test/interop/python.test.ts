import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * Python's standard OAuth clients, unmodified, from Debian's packages (python3-authlib,
 * python3-requests-oauthlib; .ci/run installs them): client credentials, resource owner password
 * and refresh, with the secret in an HTTP Basic header (client_secret_basic) and in the body
 * (client_secret_post). The scripts in python/ run Debian's /usr/bin/python3 (not whatever
 * python3 comes first on PATH) against a real Gatehouse and print JSON that is asserted on here.
 *
 * They run with execFile, not spawnSync: the server lives in this process, and a synchronous child
 * would block the event loop that has to answer it.
 */
const PYTHON = '/usr/bin/python3';
const SCRIPTS = fileURLToPath(new URL('./python/', import.meta.url));
const USER = { email: 'dorothy@example.com', password: 'correct horse battery staple', name: 'Dorothy Vaughan' };
const METHODS = ['client_secret_basic', 'client_secret_post'] as const;

type Json = Record<string, any>;

/** Runs one script with the endpoints and credentials as its argument; resolves with its JSON output. */
function runScript(script: string, config: Json): Promise<Json> {
  // The libraries refuse http unless told the transport is a test's loopback; oauthlib is made strict
  // about token_type and never relaxed about scope changes.
  const env: Record<string, string | undefined> = {
    ...process.env,
    AUTHLIB_INSECURE_TRANSPORT: '1',
    OAUTHLIB_INSECURE_TRANSPORT: '1',
    OAUTHLIB_STRICT_TOKEN_TYPE: '1',
    OAUTHLIB_RELAX_TOKEN_SCOPE: undefined,
    PYTHONPATH: undefined,
    PYTHONHOME: undefined,
    // The scripts import harness.py from their folder: no __pycache__ left in the checkout.
    PYTHONDONTWRITEBYTECODE: '1',
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
  };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  return new Promise((resolve, reject) => {
    execFile(PYTHON, [`${SCRIPTS}${script}`, JSON.stringify(config)], { env, timeout: 60_000, maxBuffer: 4 << 20 }, (error, stdout, stderr) => {
      if (error) {
        const hint = /No module named/.test(stderr) ? ' (install python3-authlib python3-requests-oauthlib: see .ci/run)' : '';
        reject(new Error(`${script} failed${hint}: ${error.message}\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as Json);
      } catch {
        reject(new Error(`${script} printed no JSON:\n${stdout}\n${stderr}`));
      }
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`Python clients: authlib and requests-oauthlib (${dialect})`, () => {
    let server: TestServer;
    let machine: { id: string; secret: string };
    let firstParty: { id: string; secret: string };
    let userId: string;
    let config: Json;
    let jwks: ReturnType<typeof createRemoteJWKSet>;

    before(async () => {
      server = await startTestServer(dialect);
      machine = await server.client({ name: 'Python integration', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
      firstParty = await server.client({ name: 'Python first party', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'email', 'objects:read', 'objects:download'] });
      userId = (await server.user(USER.email, USER.password)).id;
      jwks = createRemoteJWKSet(new URL(`${server.url}/jwks.json`));
      config = {
        token_url: `${server.url}/token`,
        userinfo_url: `${server.url}/userinfo`,
        revocation_url: `${server.url}/revoke`,
        machine,
        first_party: firstParty,
        user: { username: USER.email, password: USER.password },
      };
    });
    after(() => server.close());

    /** An RFC 9068 access token, verified against the JWKS; resolves with its claims. */
    const verify = async (token: string) =>
      (await jwtVerify(token, jwks, { issuer: server.url, audience: server.config.tokens.audience, typ: 'at+jwt' })).payload as Json;

    /**
     * The token response as the reference pages show it: Bearer, 3600 s, a string access token.
     * Identical client-credentials requests within tokens.clientCredentialsReuseSeconds get the same
     * token with expires_in counting down, so that is "3600, or a few seconds less".
     */
    function assertTokenResponse(token: Json, withRefresh: boolean) {
      assert.equal(token.token_type, 'Bearer');
      assert.ok(Number.isInteger(token.expires_in) && token.expires_in <= 3600 && token.expires_in >= 3600 - server.config.tokens.clientCredentialsReuseSeconds - 1, String(token.expires_in));
      assert.equal(typeof token.access_token, 'string');
      if (withRefresh) assert.match(token.refresh_token, /^gate_rt_/);
      else assert.equal(token.refresh_token, undefined);
    }

    /** A password grant followed by a refresh, as both scripts report it. */
    async function assertPasswordRefresh(result: Json) {
      assert.ok(result.first, JSON.stringify(result));
      assertTokenResponse(result.first, true);
      const claims = await verify(result.first.access_token);
      assert.equal(claims.sub, userId);
      assert.equal(claims.client_id, firstParty.id);
      assert.deepEqual(String(claims.scope).split(' ').sort(), ['email', 'objects:read', 'openid']);
      // The token works at a protected resource (Gatehouse's own /userinfo) through the library's session.
      assert.equal(result.userinfo.sub, userId);
      assert.equal(result.userinfo.email, USER.email);

      assertTokenResponse(result.refreshed, true);
      assert.notEqual(result.refreshed.access_token, result.first.access_token);
      assert.notEqual(result.refreshed.refresh_token, result.first.refresh_token, 'refresh tokens rotate');
      assert.equal((await verify(result.refreshed.access_token)).sub, userId);
      assert.equal(result.userinfo_after_refresh.sub, userId);
      // The rotated-out refresh token no longer works.
      assert.equal(result.replay.error, 'invalid_grant', JSON.stringify(result.replay));
    }

    describe('authlib (OAuth2Session)', () => {
      let results: Json;
      before(async () => {
        results = await runScript('authlib_client.py', config);
      });

      it('is Debian’s authlib', () => {
        assert.equal(results.library.name, 'authlib');
        assert.match(results.library.version, /^\d+\.\d+/);
      });

      for (const method of METHODS) {
        it(`client credentials with ${method}: fetch_token(url, grant_type='client_credentials')`, async () => {
          const result = results[`client_credentials_${method}`];
          assert.ok(result.token, JSON.stringify(result));
          assertTokenResponse(result.token, false);
          const claims = await verify(result.token.access_token);
          assert.equal(claims.sub, machine.id);
          assert.equal(claims.client_id, machine.id);
          assert.equal(claims.scope, 'objects:read');

          const byDefault = results[`client_credentials_default_scope_${method}`];
          assert.ok(byDefault.token, JSON.stringify(byDefault));
          assert.equal((await verify(byDefault.token.access_token)).scope, 'objects:read model:read', 'without scope, the client’s default scopes');
        });

        it(`client credentials with ${method}: a wrong secret is invalid_client`, () => {
          const result = results[`client_credentials_wrong_secret_${method}`];
          assert.equal(result.token, undefined);
          assert.equal(result.error, 'invalid_client', JSON.stringify(result));
        });

        it(`password with ${method}, then refresh_token: rotated, and the old refresh token refused`, async () => {
          await assertPasswordRefresh(results[`password_refresh_${method}`]);
        });
      }

      it('password: a wrong password is invalid_grant', () => {
        assert.equal(results.password_wrong_password.error, 'invalid_grant', JSON.stringify(results.password_wrong_password));
      });

      it('refreshes an expired token by itself before a request (token_endpoint + update_token)', async () => {
        const result = results.automatic_refresh;
        assert.ok(result.issued, JSON.stringify(result));
        assert.equal(result.updates.length, 1, JSON.stringify(result));
        const [update] = result.updates;
        assertTokenResponse(update, true);
        assert.notEqual(update.access_token, result.issued.access_token);
        assert.notEqual(update.refresh_token, result.issued.refresh_token);
        assert.equal(result.userinfo.sub, userId);
      });

      it('revokes a refresh token with revoke_token (RFC 7009), which then no longer refreshes', () => {
        const result = results.revoke_then_refresh;
        assert.equal(result.revocation_status, 200, JSON.stringify(result));
        assert.equal(result.refresh_after_revocation.error, 'invalid_grant', JSON.stringify(result));
      });
    });

    describe('requests-oauthlib (OAuth2Session on oauthlib)', () => {
      let results: Json;
      before(async () => {
        results = await runScript('requests_oauthlib_client.py', config);
      });

      it('is Debian’s requests-oauthlib', () => {
        assert.equal(results.library.name, 'requests-oauthlib');
        assert.match(results.library.version, /^\d+\.\d+/);
      });

      for (const method of METHODS) {
        it(`client credentials with BackendApplicationClient, ${method}`, async () => {
          const result = results[`backend_${method}`];
          assert.ok(result.token, JSON.stringify(result));
          assertTokenResponse(result.token, false);
          const claims = await verify(result.token.access_token);
          assert.equal(claims.sub, machine.id);
          assert.equal(claims.scope, 'objects:read');
        });

        it(`client credentials with BackendApplicationClient, ${method}: a wrong secret is invalid_client`, () => {
          const result = results[`backend_wrong_secret_${method.replace('client_secret_', '')}`];
          assert.equal(result.token, undefined);
          assert.equal(result.error, 'invalid_client', JSON.stringify(result));
        });

        it(`password with LegacyApplicationClient, ${method}, then refresh`, async () => {
          await assertPasswordRefresh(results[`legacy_${method}`]);
        });
      }

      it('client credentials without a scope: the client’s default scopes', async () => {
        const result = results.backend_default_scope;
        assert.ok(result.token, JSON.stringify(result));
        assert.equal((await verify(result.token.access_token)).scope, 'objects:read model:read');
      });

      it('password: a wrong password is invalid_grant', () => {
        assert.equal(results.legacy_wrong_password.error, 'invalid_grant', JSON.stringify(results.legacy_wrong_password));
      });
    });
  });
}
