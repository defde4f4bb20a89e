import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT, UnsecuredJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createClient, updateClient } from '../../src/core/applications.ts';
import { ValidationError } from '../../src/core/validation.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

for (const dialect of DIALECTS) {
  describe(`private_key_jwt client authentication, RFC 7523 (${dialect})`, () => {
    let server: TestServer;
    let clientId: string;
    let clientSecret: string;
    let privateKey: CryptoKey;
    let otherKey: CryptoKey;
    let publicJwk: JWK;

    before(async () => {
      server = await startTestServer(dialect);
      ({ privateKey } = await generateKeyPair('ES256', { extractable: true }));
      ({ privateKey: otherKey } = await generateKeyPair('ES256'));
      const { d: _d, ...publicPart } = await exportJWK(privateKey);
      publicJwk = { ...publicPart, kid: 'client-key-1', use: 'sig', alg: 'ES256' };
      const { client, secret } = await createClient(
        server.gatehouse,
        { name: 'Key client', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [publicJwk] } },
        server.gatehouse.clock(),
      );
      clientId = client.id;
      clientSecret = secret!;
    });

    after(() => server.close());

    /** A client assertion as a client library would make it; `claims` replaces or (undefined) removes claims. */
    function assertion(claims: Record<string, unknown> = {}, key: CryptoKey = privateKey, kid = 'client-key-1'): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      const payload = Object.fromEntries(
        Object.entries({ iss: clientId, sub: clientId, aud: `${server.url}/token`, iat: now, exp: now + 60, jti: randomUUID(), ...claims }).filter(([, v]) => v !== undefined),
      );
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
    }

    const tokenRequest = (params: Record<string, string>, headers: Record<string, string> = {}) =>
      post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read', client_assertion_type: ASSERTION_TYPE, ...params }, { headers });

    it('is advertised in the metadata with the algorithms it accepts', async () => {
      const metadata = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as Record<string, string[]>;
      assert.ok(metadata.token_endpoint_auth_methods_supported!.includes('private_key_jwt'));
      assert.ok(metadata.introspection_endpoint_auth_methods_supported!.includes('private_key_jwt'));
      assert.ok(metadata.token_endpoint_auth_signing_alg_values_supported!.includes('ES256'));
      assert.ok(!metadata.token_endpoint_auth_signing_alg_values_supported!.some((alg) => alg === 'none' || alg.startsWith('HS')));
    });

    it('issues a token to a client that signs an assertion for the token endpoint, with or without client_id', async () => {
      const withoutId = await tokenRequest({ client_assertion: await assertion() });
      assert.equal(withoutId.status, 200, JSON.stringify(withoutId.body));
      const claims = JSON.parse(Buffer.from(withoutId.body.access_token.split('.')[1], 'base64url').toString());
      assert.equal(claims.client_id, clientId);
      const withId = await tokenRequest({ client_id: clientId, client_assertion: await assertion() });
      assert.equal(withId.status, 200);
    });

    it('accepts the issuer identifier as audience, alone or in a list', async () => {
      assert.equal((await tokenRequest({ client_assertion: await assertion({ aud: server.gatehouse.config.issuer }) })).status, 200);
      assert.equal((await tokenRequest({ client_assertion: await assertion({ aud: ['https://elsewhere.example', server.gatehouse.config.issuer] }) })).status, 200);
    });

    it('accepts an assertion once: a replayed jti is invalid_client', async () => {
      const once = await assertion();
      assert.equal((await tokenRequest({ client_assertion: once })).status, 200);
      const replay = await tokenRequest({ client_assertion: once });
      assert.equal(replay.status, 401);
      assert.equal(replay.body.error, 'invalid_client');
      assert.match(replay.body.error_description, /used before/);
    });

    it('refuses wrong audience, expiry, lifetime, issuer and missing jti with invalid_client, and a refusal uses up nothing', async () => {
      const jti = randomUUID();
      const now = Math.floor(Date.now() / 1000);
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ aud: 'https://other-server.example/token', jti }, /aud/],
        [{ aud: `${server.url}/userinfo`, jti }, /aud/],
        [{ exp: now - 120, jti }, /expired/],
        [{ exp: now + 2 * 3600, jti }, /expire within/],
        [{ iss: 'someone-else', jti }, /iss/],
        [{ jti: undefined }, /jti/],
      ];
      for (const [claims, description] of cases) {
        const res = await tokenRequest({ client_assertion: await assertion(claims) });
        assert.equal(res.status, 401, JSON.stringify(claims));
        assert.equal(res.body.error, 'invalid_client');
        assert.match(res.body.error_description, description);
      }
      // None of the refused assertions recorded its jti.
      assert.equal((await tokenRequest({ client_assertion: await assertion({ jti }) })).status, 200);
    });

    it('refuses an assertion signed with another key, an unsecured one and an HMAC one', async () => {
      const now = Math.floor(Date.now() / 1000);
      const claims = { iss: clientId, sub: clientId, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() };
      const forged = [
        await assertion({}, otherKey),
        new UnsecuredJWT(claims).encode(),
        // Signed with the public key's x coordinate as an HMAC secret: the classic algorithm confusion.
        await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'client-key-1' }).sign(Buffer.from(publicJwk.x!, 'base64url')),
      ];
      for (const jwt of forged) {
        const res = await tokenRequest({ client_assertion: jwt });
        assert.equal(res.status, 401, jwt);
        assert.equal(res.body.error, 'invalid_client');
      }
    });

    it('refuses two authentication methods in one request with invalid_request', async () => {
      const withBasic = await tokenRequest({ client_assertion: await assertion() }, { authorization: basic(clientId, clientSecret) });
      assert.equal(withBasic.status, 400);
      assert.equal(withBasic.body.error, 'invalid_request');
      const withSecret = await tokenRequest({ client_assertion: await assertion(), client_id: clientId, client_secret: clientSecret });
      assert.equal(withSecret.body.error, 'invalid_request');
    });

    it('refuses an unknown assertion type, a client_id that is not the assertion’s and garbage with invalid_client', async () => {
      const wrongType = await tokenRequest({ client_assertion: await assertion(), client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer' });
      assert.equal(wrongType.body.error, 'invalid_client');
      const otherId = await tokenRequest({ client_assertion: await assertion(), client_id: 'app_someone_else' });
      assert.equal(otherId.body.error, 'invalid_client');
      const garbage = await tokenRequest({ client_assertion: 'not.a.jwt' });
      assert.equal(garbage.body.error, 'invalid_client');
      const missing = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE });
      assert.equal(missing.body.error, 'invalid_request');
    });

    it('tries each registered key that could have signed an assertion without kid, as during a key rotation', async () => {
      const pairs = await Promise.all([generateKeyPair('ES256', { extractable: true }), generateKeyPair('ES256', { extractable: true })]);
      const publicJwks = await Promise.all(pairs.map(async ({ publicKey }) => exportJWK(publicKey)));
      // Once with keys named by kid, once with keys that have none: either way the client may sign without one.
      for (const keys of [publicJwks.map((jwk, i) => ({ ...jwk, kid: `rotation-${i}` })), publicJwks]) {
        const { client } = await createClient(
          server.gatehouse,
          { name: 'Rotating keys', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys } },
          server.gatehouse.clock(),
        );
        const now = Math.floor(Date.now() / 1000);
        const sign = (key: CryptoKey) => new SignJWT({ iss: client.id, sub: client.id, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).sign(key);
        for (const { privateKey: key } of pairs) {
          const res = await tokenRequest({ client_assertion: await sign(key) });
          assert.equal(res.status, 200, JSON.stringify(res.body));
        }
        const stranger = await tokenRequest({ client_assertion: await sign(otherKey) });
        assert.equal(stranger.status, 401);
        assert.equal(stranger.body.error, 'invalid_client');
      }
    });

    it('takes exp, nbf and iat that are not whole seconds (RFC 7519 §2 NumericDate), once', async () => {
      const now = Math.floor(Date.now() / 1000);
      const once = await assertion({ exp: now + 60.5, nbf: now - 0.5, iat: now - 0.25 });
      const res = await tokenRequest({ client_assertion: once });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const replay = await tokenRequest({ client_assertion: once });
      assert.equal(replay.status, 401);
      assert.match(replay.body.error_description, /used before/);
    });

    it('refuses a jti holding a NUL character with invalid_client, on either database', async () => {
      const res = await tokenRequest({ client_assertion: await assertion({ jti: 'a\u0000b' }) });
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.error, 'invalid_client');
      assert.match(res.body.error_description, /jti/);
    });

    it('refuses with invalid_client, not a server error, the assertions of a client deleted through another instance while this one still holds it', async () => {
      const { client } = await createClient(
        server.gatehouse,
        { name: 'Deleted elsewhere', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [publicJwk] } },
        server.gatehouse.clock(),
      );
      const now = Math.floor(Date.now() / 1000);
      const sign = () => new SignJWT({ iss: client.id, sub: client.id, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'client-key-1' }).sign(privateKey);
      assert.equal((await tokenRequest({ client_assertion: await sign() })).status, 200);
      // Deleted in storage alone, as another instance or the CLI deletes it: this instance's registry still holds the client.
      assert.equal(await server.gatehouse.storage.clients.delete(client.id), true);
      const token = await tokenRequest({ client_assertion: await sign() });
      const introspection = await post(`${server.url}/introspect`, { token: 'x', client_assertion_type: ASSERTION_TYPE, client_assertion: await sign() });
      for (const res of [token, introspection]) {
        assert.equal(res.status, 401, JSON.stringify(res.body));
        assert.equal(res.body.error, 'invalid_client');
        assert.doesNotMatch(res.body.error_description, /used before/);
      }
    });

    it('refuses an assertion from a client without registered keys', async () => {
      const plain = await server.client({ name: 'Secret-only client' });
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({ iss: plain.id, sub: plain.id, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
      const res = await tokenRequest({ client_assertion: jwt });
      assert.equal(res.status, 401);
      assert.match(res.body.error_description, /no keys/);
    });

    it('authenticates the client at the introspection endpoint too', async () => {
      const token = (await tokenRequest({ client_assertion: await assertion() })).body.access_token;
      const res = await post(`${server.url}/introspect`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
      assert.equal(res.status, 200);
      assert.equal(res.body.active, true);
    });

    it('accepts an assertion addressed to the introspection or revocation endpoint it is sent to', async () => {
      const token = (await tokenRequest({ client_assertion: await assertion() })).body.access_token;
      const introspection = await post(`${server.url}/introspect`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion({ aud: `${server.url}/introspect` }) });
      assert.equal(introspection.status, 200);
      assert.equal(introspection.body.active, true);
      const revocation = await post(`${server.url}/revoke`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion({ aud: `${server.url}/revoke` }) });
      assert.equal(revocation.status, 200);
      const after = await post(`${server.url}/introspect`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion() });
      assert.equal(after.body.active, false);
    });

    it('stops accepting the keys once they are removed', async () => {
      const { client } = await createClient(
        server.gatehouse,
        { name: 'Removable keys', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [publicJwk] } },
        server.gatehouse.clock(),
      );
      const now = Math.floor(Date.now() / 1000);
      const sign = () => new SignJWT({ iss: client.id, sub: client.id, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'client-key-1' }).sign(privateKey);
      assert.equal((await tokenRequest({ client_assertion: await sign() })).status, 200);
      await updateClient(server.gatehouse, client.id, { jwks: null }, server.gatehouse.clock());
      assert.equal((await tokenRequest({ client_assertion: await sign() })).status, 401);
    });

    /** An RSA key pair whose public half is a JWK named `kid`, for assertions signed with the private half. */
    function rsaKeyPair(kid: string, options: { modulusLength: number; publicExponent?: number }): { jwk: JWK; privateKey: KeyObject } {
      const pair = generateKeyPairSync('rsa', options);
      return { jwk: { ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid }, privateKey: pair.privateKey };
    }

    /** An assertion for `id` signed with `key` under `alg`, naming the key by `kid` when one is given. */
    function signedFor(id: string, key: KeyObject | CryptoKey, alg: string, kid?: string): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: id, sub: id, aud: `${server.url}/token`, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg, ...(kid !== undefined && { kid }) }).sign(key);
    }

    it('verifies assertions with RSA keys of 2048 and 4096 bits and the public exponent 65537', async () => {
      const keys = [rsaKeyPair('rsa-2048', { modulusLength: 2048 }), rsaKeyPair('rsa-4096', { modulusLength: 4096 })];
      const { client } = await createClient(
        server.gatehouse,
        { name: 'RSA keys', type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: keys.map(({ jwk }) => jwk) } },
        server.gatehouse.clock(),
      );
      for (const { jwk, privateKey: key } of keys) {
        for (const alg of ['RS256', 'PS256']) {
          for (const kid of [jwk.kid, undefined]) {
            const res = await tokenRequest({ client_assertion: await signedFor(client.id, key, alg, kid) });
            assert.equal(res.status, 200, `${jwk.kid} ${alg} ${kid ? 'with' : 'without'} kid: ${JSON.stringify(res.body)}`);
          }
        }
      }
    });

    it('never verifies with an RSA key stored before the bounds (over 4096 bits, or an exponent other than 65537): invalid_client, saying why, while the other keys still work', async () => {
      const over = rsaKeyPair('rsa-4160', { modulusLength: 4160 });
      const smallExponent = rsaKeyPair('rsa-e3', { modulusLength: 2048, publicExponent: 3 });
      const register = async (name: string, keys: JWK[]) => {
        const { client } = await createClient(
          server.gatehouse,
          { name, type: 'confidential', grantTypes: ['client_credentials'], scopes: ['objects:read'], jwks: { keys: [publicJwk] } },
          server.gatehouse.clock(),
        );
        // Stored as an earlier version that did not check these bounds accepted them.
        await server.gatehouse.storage.clients.update(client.id, { jwks: { keys: keys as Array<Record<string, unknown>> } }, server.gatehouse.clock());
        server.gatehouse.clients.invalidate(client.id);
        return client.id;
      };
      const mixed = await register('Keys from before', [publicJwk, over.jwk, smallExponent.jwk]);
      for (const { jwk, privateKey: key } of [over, smallExponent]) {
        for (const kid of [jwk.kid, undefined]) {
          const res = await tokenRequest({ client_assertion: await signedFor(mixed, key, 'RS256', kid) });
          assert.equal(res.status, 401, `${jwk.kid} ${kid ? 'with' : 'without'} kid: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.error, 'invalid_client');
          assert.match(res.body.error_description, /2 of the client's registered keys are no longer accepted: RSA keys must have 2048 to 4096 bits and the public exponent 65537/);
        }
      }
      assert.equal((await tokenRequest({ client_assertion: await signedFor(mixed, privateKey, 'ES256', 'client-key-1') })).status, 200, 'the key within the bounds still works');

      const only = await register('Only a key from before', [smallExponent.jwk]);
      const res = await tokenRequest({ client_assertion: await signedFor(only, smallExponent.privateKey, 'RS256', smallExponent.jwk.kid) });
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.error, 'invalid_client');
      assert.match(res.body.error_description, /one of the client's registered keys is no longer accepted/);
    });

    it('refuses to register private key material, weak RSA keys, and keys for a public client', async () => {
      // jose will not even make a key this weak; node:crypto will.
      const weakPublic = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
      const privateJwk = await exportJWK(privateKey);
      const register = (jwks: unknown, type: 'confidential' | 'public' = 'confidential') =>
        createClient(server.gatehouse, { name: 'Bad keys', type, grantTypes: ['authorization_code'], redirectUris: ['https://app.example/cb'], scopes: ['objects:read'], jwks: jwks as never }, server.gatehouse.clock());
      const cases: Array<[unknown, RegExp, ('confidential' | 'public')?]> = [
        [{ keys: [privateJwk] }, /private or secret key material/],
        [{ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, /private or secret key material/],
        [{ keys: [weakPublic] }, /2048 bits/],
        [{ keys: [] }, /1 to 10 keys/],
        [{ keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] }, /not a valid public key/],
        [[publicJwk], /JWK Set/],
        [{ keys: [publicJwk, publicJwk] }, /used twice/],
        [{ keys: [publicJwk] }, /public client/, 'public'],
      ];
      const before = (await server.gatehouse.storage.clients.list()).length;
      for (const [jwks, message, type] of cases) {
        await assert.rejects(register(jwks, type), (error: unknown) => error instanceof ValidationError && error.field === 'jwks' && message.test(error.message), JSON.stringify(jwks).slice(0, 80));
      }
      assert.equal((await server.gatehouse.storage.clients.list()).length, before, 'nothing was registered');
    });
  });
}
