import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { createAuthenticator, expressGatehouse, fastifyGatehouse, ResourceError, type Authenticator, type AuthenticatorOptions, type Principal } from 'gatehouse/resource';
import { createOpaqueToken } from '../../src/core/tokens/opaque.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 6750 §3: the challenge of a request that carried a credential and was refused. */
const challenge = (error: string, scope?: string) =>
  new RegExp(`^Bearer realm="api", error="${error}", error_description="[^"]+"${scope ? `, scope="${scope}"` : ''}$`);

/** The ResourceError a promise rejects with; fails if it resolves or rejects with anything else. */
async function refusal(promise: Promise<unknown>, error: ResourceError['error']): Promise<ResourceError> {
  let outcome: unknown;
  try {
    outcome = await promise;
  } catch (thrown) {
    assert.ok(thrown instanceof ResourceError, `expected a ResourceError, got ${String(thrown)}`);
    assert.equal(thrown.error, error, thrown.message);
    assert.equal(thrown.status, { invalid_request: 400, invalid_token: 401, insufficient_scope: 403 }[error]);
    assert.equal(thrown.code, `ERR_${error.toUpperCase()}`);
    return thrown;
  }
  assert.fail(`expected ${error}, but the request was authenticated as ${JSON.stringify(outcome)}`);
}

/** Counts the requests the SDK makes, by path, without changing them. */
function countRequests(t: TestContext): (path: string) => number {
  const counts = new Map<string, number>();
  const real = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    return real(input, init);
  };
  t.after(() => {
    globalThis.fetch = real;
  });
  return (path) => counts.get(path) ?? 0;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('resource-server SDK (gatehouse/resource) against a real Gatehouse', () => {
  let server: TestServer;
  let options: AuthenticatorOptions;
  let authenticator: Authenticator;
  let machine: { id: string; secret: string };
  let other: { id: string; secret: string };
  let firstParty: { id: string; secret: string };
  let backOffice: { id: string; secret: string };
  let resourceServer: { id: string; secret: string };
  let userId: string;
  const user = { email: 'ada@example.com', password: 'correct horse battery' };

  before(async () => {
    server = await startTestServer('sqlite');
    machine = await server.client({ name: 'Integration', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'] });
    other = await server.client({ name: 'Other integration', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
    firstParty = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'objects:read', 'objects:download'], firstParty: true });
    backOffice = await server.client({ name: 'Support desk', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'objects:download'], defaultScopes: ['objects:read'], allowImpersonation: true });
    resourceServer = await server.client({ name: 'BIM API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    userId = (await server.user(user.email, user.password)).id;
    options = { issuer: server.url, audience: server.config.tokens.audience, introspection: { clientId: resourceServer.id, clientSecret: resourceServer.secret }, cacheTtlSeconds: 1 };
    authenticator = createAuthenticator(options);
  });
  after(() => server.close());

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const apiKeyHeader = (key: string) => ({ headers: { authorization: `ApiKey ${key}` } });
  const tokenFor = async (client: { id: string; secret: string }, body: Record<string, string>): Promise<Record<string, string>> => {
    const res = await post(`${server.url}/token`, body, { headers: { authorization: basic(client.id, client.secret) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  };
  const clientToken = async (client = machine, scope?: string) => (await tokenFor(client, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) })).access_token!;
  const userTokens = (scope = 'objects:read objects:download') => tokenFor(firstParty, { grant_type: 'password', username: user.email, password: user.password, scope });
  const apiKey = async (client: { id: string }, scopes: string[]) => {
    const record = (await server.gatehouse.storage.clients.find(client.id))!;
    return server.gatehouse.apiKeys.create(record, { name: 'sdk test', scopes }, server.gatehouse.clock());
  };
  /** The claims of a real token, re-signed (by Gatehouse's own access-token key unless told otherwise). */
  const resign = async (token: string, changes: JWTPayload, signer?: { key: Parameters<SignJWT['sign']>[0]; kid: string }) => {
    const own = server.gatehouse.keys.signingKey('access');
    return new SignJWT({ ...decodeJwt(token), ...changes })
      .setProtectedHeader({ alg: own.alg, kid: signer?.kid ?? own.kid, typ: 'at+jwt' })
      .sign(signer?.key ?? own.key);
  };
  const foreignKey = async (kid: string) => ({ key: (await generateKeyPair('ES256')).privateKey, kid });

  describe('Bearer JWTs, verified locally', () => {
    it('names a client on its own: kind client, the client as subject, the granted scopes', async () => {
      const principal = await authenticator.authenticate(bearer(await clientToken(machine, 'objects:read model:read')));
      assert.equal(principal.kind, 'client');
      assert.equal(principal.subject, machine.id);
      assert.equal(principal.clientId, machine.id);
      assert.deepEqual(principal.scopes, ['objects:read', 'model:read']);
      assert.equal(principal.project, undefined);
      assert.equal(principal.actor, undefined);
      assert.ok(principal.expiresAt! > Date.now() / 1000);
    });

    it('names the user as subject of a user-delegated token, and the client that holds it', async () => {
      const principal = await authenticator.authenticate(bearer((await userTokens()).access_token!));
      assert.deepEqual(
        { kind: principal.kind, subject: principal.subject, clientId: principal.clientId, scopes: principal.scopes, actor: principal.actor },
        { kind: 'user', subject: userId, clientId: firstParty.id, scopes: ['objects:read', 'objects:download'], actor: undefined },
      );
    });

    it('carries the project a project token is bound to', async () => {
      const res = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await clientToken(machine)}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }),
      });
      assert.equal(res.status, 201);
      const { access_token } = (await res.json()) as { access_token: string };
      const principal = await authenticator.authenticate(bearer(access_token));
      assert.deepEqual({ kind: principal.kind, subject: principal.subject, scopes: principal.scopes, project: principal.project }, { kind: 'client', subject: machine.id, scopes: ['model:read'], project: 'p1' });
    });

    it('names the impersonated user as subject and the client as actor (RFC 8693 §4.1)', async () => {
      const { access_token } = await tokenFor(backOffice, { grant_type: EXCHANGE, requested_subject: userId, scope: 'objects:download' });
      const principal = await authenticator.authenticate(bearer(access_token!));
      assert.equal(principal.kind, 'user');
      assert.equal(principal.subject, userId);
      assert.equal(principal.clientId, backOffice.id);
      assert.deepEqual(principal.scopes, ['objects:download']);
      assert.deepEqual(principal.actor, { sub: backOffice.id, client_id: backOffice.id });
    });

    it('accepts a token re-signed with Gatehouse\'s key unchanged (so the refusals below are for the reason they name)', async () => {
      const principal = await authenticator.authenticate(bearer(await resign(await clientToken(), {})));
      assert.equal(principal.subject, machine.id);
    });

    it('refuses expired, garbage, wrong-audience and foreign-signed tokens with 401 invalid_token', async () => {
      const real = await clientToken();
      const now = Math.floor(Date.now() / 1000);
      const cases: Record<string, string> = {
        // Beyond the 30 s of clock tolerance.
        expired: await resign(real, { iat: now - 7200, exp: now - 60 }),
        garbage: 'not-a-token',
        'three garbage segments': 'aaa.bbb.ccc',
        'unsigned (alg none)': `${Buffer.from('{"alg":"none","typ":"at+jwt"}').toString('base64url')}.${Buffer.from(JSON.stringify(decodeJwt(real))).toString('base64url')}.`,
        'tampered payload': `${real.split('.')[0]}.${Buffer.from(JSON.stringify({ ...decodeJwt(real), scope: 'objects:download' })).toString('base64url')}.${real.split('.')[2]}`,
        'wrong audience': await resign(real, { aud: 'https://another-api.example' }),
        'wrong issuer': await resign(real, { iss: 'https://another-issuer.example' }),
        'foreign-signed, with Gatehouse\'s kid': await resign(real, {}, await foreignKey(decodeProtectedHeader(real).kid!)),
        'foreign-signed, with an unknown kid': await resign(real, {}, await foreignKey('unknown-kid')),
        'an ID token (typ JWT, audience the client)': (await userTokens('openid objects:read')).id_token!,
      };
      for (const [name, token] of Object.entries(cases)) {
        const error = await refusal(authenticator.authenticate(bearer(token)), 'invalid_token');
        assert.match(error.wwwAuthenticate, challenge('invalid_token'), name);
        assert.deepEqual(Object.keys(error.toJSON()), ['error', 'error_description'], name);
      }
    });

    it('tolerates clock skew up to five minutes when told, and refuses to be told more (that would accept expired tokens), or to cache API keys for over an hour', async () => {
      const real = await clientToken();
      const now = Math.floor(Date.now() / 1000);
      const lenient = createAuthenticator({ ...options, clockToleranceSeconds: 300 });
      assert.equal((await lenient.authenticate(bearer(await resign(real, { iat: now - 3800, exp: now - 200 })))).clientId, machine.id);
      await refusal(lenient.authenticate(bearer(await resign(real, { iat: now - 4000, exp: now - 400 }))), 'invalid_token');
      for (const clockToleranceSeconds of [301, 86_400, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        assert.throws(() => createAuthenticator({ ...options, clockToleranceSeconds }), RangeError, String(clockToleranceSeconds));
      }
      for (const cacheTtlSeconds of [3601, 86_400, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        assert.throws(() => createAuthenticator({ ...options, cacheTtlSeconds }), RangeError, String(cacheTtlSeconds));
      }
    });

    it('fails with an ordinary error, not invalid_token, while the JWKS cannot be fetched (the middleware answers 503)', async (t) => {
      // An issuer whose discovery works and whose JWKS endpoint is down.
      const issuer = Fastify();
      t.after(() => issuer.close());
      let jwksStatus = 500;
      issuer.get('/.well-known/oauth-authorization-server', async () => ({ issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks.json` }));
      issuer.get('/jwks.json', async (_request, reply) => reply.code(jwksStatus).send(jwksStatus === 200 ? server.gatehouse.keys.jwksJson : { error: 'down' }));
      const issuerUrl = await issuer.listen({ port: 0, host: '127.0.0.1' });
      const stranded = createAuthenticator({ issuer: issuerUrl, audience: options.audience });
      const token = await resign(await clientToken(), { iss: issuerUrl });
      await assert.rejects(stranded.authenticate(bearer(token)), (error) => !(error instanceof ResourceError));

      const api = Fastify();
      t.after(() => api.close());
      api.get('/objects', { preHandler: fastifyGatehouse(stranded).requireScope('objects:read') }, async () => ({ ok: true }));
      const res = await api.inject({ url: '/objects', headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['www-authenticate'], undefined, 'no challenge: the token was not judged');

      jwksStatus = 200;
      t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 5_100 });
      assert.equal((await stranded.authenticate(bearer(token))).subject, machine.id, 'works once the JWKS is back (and 5 s have passed)');
    });

    it('asks a failing JWKS endpoint again at most every 5 s, however many tokens with unknown kids arrive', async (t) => {
      const issuer = Fastify();
      t.after(() => issuer.close());
      let jwksStatus = 200;
      let fetches = 0;
      issuer.get('/.well-known/oauth-authorization-server', async () => ({ issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks.json` }));
      issuer.get('/jwks.json', async (_request, reply) => {
        fetches++;
        return reply.code(jwksStatus).send(jwksStatus === 200 ? server.gatehouse.keys.jwksJson : { error: 'down' });
      });
      const issuerUrl = await issuer.listen({ port: 0, host: '127.0.0.1' });
      const api = createAuthenticator({ issuer: issuerUrl, audience: options.audience });
      const real = await resign(await clientToken(), { iss: issuerUrl });
      const forged = async (i: number) => resign(real, {}, await foreignKey(`forged-${i}`));
      const unavailable = (promise: Promise<unknown>) => assert.rejects(promise, (error) => !(error instanceof ResourceError));

      assert.equal((await api.authenticate(bearer(real))).subject, machine.id);
      assert.equal(fetches, 1);

      // Past the 30 s cooldown an unknown kid may refetch; the JWKS endpoint now fails.
      jwksStatus = 500;
      const start = Date.now();
      t.mock.timers.enable({ apis: ['Date'], now: start + 31_000 });
      for (let i = 0; i < 5; i++) await unavailable(api.authenticate(bearer(await forged(i))));
      assert.equal(fetches, 2, 'one attempt, not one per forged kid');
      assert.equal((await api.authenticate(bearer(real))).subject, machine.id, 'known keys still verify');

      // 5 s later, one more attempt; once it succeeds, unknown kids are refused as before.
      t.mock.timers.setTime(start + 36_100);
      jwksStatus = 200;
      await refusal(api.authenticate(bearer(await forged(5))), 'invalid_token');
      assert.equal(fetches, 3);

      // A first fetch that fails is not retried by every request either.
      jwksStatus = 500;
      const starting = createAuthenticator({ issuer: issuerUrl, audience: options.audience });
      for (let i = 0; i < 5; i++) await unavailable(starting.authenticate(bearer(real)));
      assert.equal(fetches, 4);
      t.mock.timers.setTime(start + 41_200);
      jwksStatus = 200;
      assert.equal((await starting.authenticate(bearer(real))).subject, machine.id);
      assert.equal(fetches, 5);
    });

    it('asks a failing discovery endpoint again at most every 5 s', async (t) => {
      const issuer = Fastify();
      t.after(() => issuer.close());
      let status = 500;
      let fetches = 0;
      issuer.get('/.well-known/oauth-authorization-server', async (_request, reply) => {
        fetches++;
        return reply.code(status).send(status === 200 ? { issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks.json` } : { error: 'down' });
      });
      issuer.get('/jwks.json', async () => server.gatehouse.keys.jwksJson);
      const issuerUrl = await issuer.listen({ port: 0, host: '127.0.0.1' });
      const api = createAuthenticator({ issuer: issuerUrl, audience: options.audience });
      const real = await resign(await clientToken(), { iss: issuerUrl });

      const start = Date.now();
      t.mock.timers.enable({ apis: ['Date'], now: start });
      for (let i = 0; i < 5; i++) await assert.rejects(api.authenticate(bearer(real)), (error) => !(error instanceof ResourceError));
      assert.equal(fetches, 1, 'one attempt, not one per request');

      t.mock.timers.setTime(start + 5_100);
      status = 200;
      assert.equal((await api.authenticate(bearer(real))).subject, machine.id);
      assert.equal(fetches, 2);
    });

    it('refuses a bearer token that is no JWT with invalid_token even while Gatehouse cannot be reached (no 503 inviting a retry)', async (t) => {
      const closed = Fastify();
      const issuerUrl = await closed.listen({ port: 0, host: '127.0.0.1' });
      await closed.close();
      const stranded = createAuthenticator({ issuer: issuerUrl, audience: options.audience });
      const requests = countRequests(t);
      const real = await clientToken();
      await refusal(stranded.authenticate(bearer('not-a-token')), 'invalid_token');
      assert.equal(requests('/.well-known/oauth-authorization-server'), 0, 'not worth asking Gatehouse');
      // A token of three parts is decoded only once the keys cannot be had (Gatehouse is asked once,
      // then not again for a few seconds).
      for (const token of ['aaa.bbb.ccc', `${real.split('.')[0]}.e30`, `${real.split('.')[0]}.bm90IGpzb24.${real.split('.')[2]}`]) {
        await refusal(stranded.authenticate(bearer(token)), 'invalid_token');
      }
      assert.ok(requests('/.well-known/oauth-authorization-server') <= 1, 'Gatehouse is not asked for every token');
      await assert.rejects(stranded.authenticate(bearer(real)), (error) => !(error instanceof ResourceError), 'a well-formed token still needs the keys');
    });

    it('refuses a token signed by Gatehouse\'s key that lacks a claim RFC 9068 §2.2 requires, or holds it as another type, with 401 invalid_token', async () => {
      const real = await clientToken();
      const cases: Record<string, JWTPayload> = {
        'no exp (it would never expire)': { exp: undefined },
        'no sub': { sub: undefined },
        'no client_id': { client_id: undefined },
        'no iat': { iat: undefined },
        'no jti': { jti: undefined },
        'sub not a string': { sub: 42 as unknown as string },
        'client_id not a string': { client_id: ['a', 'b'] },
        'jti not a string': { jti: 7 as unknown as string },
        'sub empty': { sub: '' },
        'client_id empty': { client_id: '' },
      };
      for (const [name, changes] of Object.entries(cases)) {
        const error = await refusal(authenticator.authenticate(bearer(await resign(real, changes))), 'invalid_token').catch((e: unknown) => assert.fail(`${name}: ${String(e)}`));
        assert.match(error.wwwAuthenticate, challenge('invalid_token'), name);
      }
    });

    it('refuses an ID token and a Logout Token with 401 invalid_token, even made out for the API\'s audience', async () => {
      const { id_token } = await userTokens('openid objects:read');
      const idKey = server.gatehouse.keys.signingKey('id');
      const aud = server.config.tokens.audience;
      const signedAsIdTokens = (claims: JWTPayload, typ: string) => new SignJWT(claims).setProtectedHeader({ alg: idKey.alg, kid: idKey.kid, typ }).sign(idKey.key);
      const now = Math.floor(Date.now() / 1000);
      const cases: Record<string, string> = {
        'an ID token for the API\'s audience': await signedAsIdTokens({ ...decodeJwt(id_token!), aud }, 'JWT'),
        'a Logout Token for the API\'s audience': await signedAsIdTokens({ iss: server.url, aud, sub: userId, iat: now, exp: now + 120, jti: 'l1', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }, 'logout+jwt'),
        // Its claims, typed and signed as an access token: it names no client.
        'an ID token\'s claims as an access token': await resign(id_token!, { aud }),
      };
      for (const [name, token] of Object.entries(cases)) {
        await refusal(authenticator.authenticate(bearer(token)), 'invalid_token').catch((e: unknown) => assert.fail(`${name}: ${String(e)}`));
      }
    });

    it('refuses a valid token at an API that expects another audience', async () => {
      const elsewhere = createAuthenticator({ ...options, audience: 'https://another-api.example' });
      await refusal(elsewhere.authenticate(bearer(await clientToken())), 'invalid_token');
    });
  });

  describe('the Authorization header', () => {
    it('answers a request without credentials with invalid_token and a bare challenge (RFC 6750 §3.1)', async () => {
      const error = await refusal(authenticator.authenticate({ headers: {} }), 'invalid_token');
      assert.equal(error.wwwAuthenticate, 'Bearer realm="api"');
      assert.equal(error.toJSON().error, 'invalid_token');
    });

    it('answers another authentication scheme as a request without credentials (RFC 6750 §3.1: "an unsupported authentication method")', async () => {
      for (const authorization of ['Basic dXNlcjpwYXNz', 'Token abc', 'Bearerx abc', 'DPoP abc']) {
        const error = await refusal(authenticator.authenticate({ headers: { authorization } }), 'invalid_token');
        assert.equal(error.wwwAuthenticate, 'Bearer realm="api"', authorization);
      }
    });

    it('answers a malformed header with 400 invalid_request', async () => {
      for (const authorization of ['Bearer', 'Bearer ', 'ApiKey', 'Bearer two tokens', `Bearer ${'a'.repeat(9000)}`, ['Bearer a', 'Bearer b']]) {
        const error = await refusal(authenticator.authenticate({ headers: { authorization } }), 'invalid_request');
        assert.match(error.wwwAuthenticate, challenge('invalid_request'), String(authorization).slice(0, 40));
      }
    });

    it('accepts the scheme in any case (RFC 7235 §2.1)', async () => {
      const principal = await authenticator.authenticate({ headers: { authorization: `bearer ${await clientToken()}` } });
      assert.equal(principal.clientId, machine.id);
    });
  });

  describe('API keys, through introspection', () => {
    it('authenticate as their application, with the key\'s scopes and no expiry', async () => {
      const { value } = await apiKey(machine, ['objects:read']);
      const principal = await authenticator.authenticate(apiKeyHeader(value));
      assert.deepEqual(principal, { kind: 'api_key', subject: machine.id, clientId: machine.id, scopes: ['objects:read'], project: undefined, actor: undefined, expiresAt: undefined } satisfies Principal);
    });

    it('are cached for cacheTtlSeconds: a revoked key still works until then, and is refused after', async (t) => {
      const requests = countRequests(t);
      const { key, value } = await apiKey(machine, ['model:read']);
      assert.equal((await authenticator.authenticate(apiKeyHeader(value))).clientId, machine.id);
      assert.equal(requests('/introspect'), 1);

      assert.ok(await server.gatehouse.storage.apiKeys.revoke(machine.id, key.id, server.gatehouse.clock()));
      assert.equal((await authenticator.authenticate(apiKeyHeader(value))).clientId, machine.id, 'within the cache TTL the revocation is not seen yet');
      assert.equal(requests('/introspect'), 1, 'answered from the cache');

      await sleep(1100);
      const error = await refusal(authenticator.authenticate(apiKeyHeader(value)), 'invalid_token');
      assert.match(error.wwwAuthenticate, challenge('invalid_token'));
      assert.equal(requests('/introspect'), 2);
    });

    it('are cached no longer than the key\'s expiry (RFC 7662 §4: "MUST NOT be cached beyond the time indicated")', async (t) => {
      const requests = countRequests(t);
      const longCache = createAuthenticator({ ...options, cacheTtlSeconds: 600 });
      const record = (await server.gatehouse.storage.clients.find(machine.id))!;
      const expiresAt = server.gatehouse.clock() + 2;
      const { value } = await server.gatehouse.apiKeys.create(record, { name: 'short-lived', scopes: ['objects:read'], expiresAt }, server.gatehouse.clock());
      assert.equal((await longCache.authenticate(apiKeyHeader(value))).expiresAt, expiresAt);
      assert.equal(requests('/introspect'), 1);

      await sleep(expiresAt * 1000 - Date.now() + 100);
      await refusal(longCache.authenticate(apiKeyHeader(value)), 'invalid_token');
      assert.equal(requests('/introspect'), 2, 'asked again once the key had expired');
    });

    it('refuses an unknown key with 401 invalid_token', async () => {
      await refusal(authenticator.authenticate(apiKeyHeader(`gate_ak_${'A'.repeat(43)}`)), 'invalid_token');
      await refusal(authenticator.authenticate(apiKeyHeader('not-a-key')), 'invalid_token');
    });

    it('refuses a key Gatehouse cannot have issued without asking it: guessed keys cost Gatehouse nothing', async (t) => {
      const requests = countRequests(t);
      const { value } = await apiKey(machine, ['objects:read']);
      const last = value.at(-1) === 'A' ? 'B' : 'A';
      const forged = [
        'not-a-key',
        `gate_ak_${'A'.repeat(49)}`,
        `${value.slice(0, -1)}${last}`, // a checksum that does not match
        value.replace('gate_ak_', 'gate_rt_'), // another kind of credential
        `${value}x`,
      ];
      for (const key of forged) await refusal(authenticator.authenticate(apiKeyHeader(key)), 'invalid_token');
      assert.equal(requests('/introspect'), 0);
      assert.equal((await authenticator.authenticate(apiKeyHeader(value))).clientId, machine.id);
      assert.equal(requests('/introspect'), 1);
    });

    it('introspect a key once for all the requests that bring it at the same time', async (t) => {
      const requests = countRequests(t);
      const { value } = await apiKey(machine, ['objects:read']);
      const fresh = createAuthenticator(options);
      const principals = await Promise.all(Array.from({ length: 20 }, () => fresh.authenticate(apiKeyHeader(value))));
      for (const principal of principals) assert.equal(principal.clientId, machine.id);
      assert.equal(requests('/introspect'), 1);
      // A well-formed key Gatehouse does not know: one introspection too, and every request refused.
      const unknown = createOpaqueToken('ak');
      const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => fresh.authenticate(apiKeyHeader(unknown))));
      for (const outcome of outcomes) assert.ok(outcome.status === 'rejected' && outcome.reason instanceof ResourceError && outcome.reason.error === 'invalid_token');
      assert.equal(requests('/introspect'), 2);
    });

    it('are invisible to an introspection client that is not a resource server, unless they are its own', async () => {
      const asOther = createAuthenticator({ ...options, introspection: { clientId: other.id, clientSecret: other.secret } });
      const own = await apiKey(other, ['objects:read']);
      assert.equal((await asOther.authenticate(apiKeyHeader(own.value))).clientId, other.id);
      const foreign = await apiKey(machine, ['objects:read']);
      await refusal(asOther.authenticate(apiKeyHeader(foreign.value)), 'invalid_token');
    });

    it('are refused when the API has no introspection credentials', async () => {
      const { value } = await apiKey(machine, ['objects:read']);
      const { introspection: _, ...withoutIntrospection } = options;
      await refusal(createAuthenticator(withoutIntrospection).authenticate(apiKeyHeader(value)), 'invalid_token');
    });

    it('are refused with 401, not 503, by an API without introspection credentials while Gatehouse cannot be reached', async () => {
      const closed = Fastify();
      const issuerUrl = await closed.listen({ port: 0, host: '127.0.0.1' });
      await closed.close();
      const { value } = await apiKey(machine, ['objects:read']);
      await refusal(createAuthenticator({ issuer: issuerUrl, audience: options.audience }).authenticate(apiKeyHeader(value)), 'invalid_token');
    });

    it('fail with an ordinary error, not the caller\'s fault, when introspection refuses the API\'s credentials', async () => {
      const { value } = await apiKey(machine, ['objects:read']);
      const misconfigured = createAuthenticator({ ...options, introspection: { clientId: resourceServer.id, clientSecret: 'wrong secret' } });
      await assert.rejects(misconfigured.authenticate(apiKeyHeader(value)), (error) => !(error instanceof ResourceError) && /introspection answered 401/.test((error as Error).message));
    });

    it('fail with an ordinary error within 5 s, not hang, while discovery or introspection does not answer (the middleware answers 503)', async (t) => {
      // An issuer that accepts connections and never answers the path named `silent`.
      let silent = '/introspect';
      const issuer = Fastify({ forceCloseConnections: true });
      t.after(() => issuer.close());
      issuer.get('/.well-known/oauth-authorization-server', async () => (silent === '/.well-known/oauth-authorization-server' ? new Promise(() => {}) : { issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks.json`, introspection_endpoint: `${issuerUrl}/introspect` }));
      issuer.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => done(null, body));
      issuer.post('/introspect', () => new Promise(() => {}));
      const issuerUrl = await issuer.listen({ port: 0, host: '127.0.0.1' });
      const { value } = await apiKey(machine, ['objects:read']);

      for (const path of ['/introspect', '/.well-known/oauth-authorization-server']) {
        silent = path;
        const stranded = createAuthenticator({ ...options, issuer: issuerUrl });
        const started = Date.now();
        const outcome = await Promise.race([stranded.authenticate(apiKeyHeader(value)).then(
          () => 'authenticated',
          (error: unknown) => (error instanceof ResourceError ? `refused: ${error.error}` : 'failed'),
        ), sleep(8000).then(() => 'still waiting')]);
        assert.equal(outcome, 'failed', path);
        assert.ok(Date.now() - started < 6000, `${path}: gave up after ${Date.now() - started} ms`);
      }
    });
  });

  describe('requireScopes', () => {
    it('throws 403 insufficient_scope naming the scopes needed', async () => {
      const principal = await authenticator.authenticate(bearer(await clientToken(machine, 'objects:read')));
      authenticator.requireScopes(principal, ['objects:read']);
      assert.throws(
        () => authenticator.requireScopes(principal, ['objects:read', 'objects:download']),
        (error) => error instanceof ResourceError && error.status === 403 && error.error === 'insufficient_scope' && challenge('insufficient_scope', 'objects:read objects:download').test(error.wwwAuthenticate),
      );
    });
  });

  /** What a protected route of either framework answers. */
  interface Answer {
    status: number;
    header: (name: string) => string | undefined;
    body: any;
  }

  /** The same checks for both frameworks: 401 and 403 per RFC 6750, the principal on success. */
  function middlewareBehaviour(call: (path: string, authorization?: string) => Promise<Answer>) {
    const assertRefused = (answer: Answer, status: number, error: string, wwwAuthenticate: RegExp) => {
      assert.equal(answer.status, status);
      assert.match(answer.header('www-authenticate') ?? '', wwwAuthenticate);
      assert.equal(answer.header('cache-control'), 'no-store');
      assert.equal(answer.body.error, error);
      assert.equal(typeof answer.body.error_description, 'string');
    };

    it('answers 401 invalid_token without credentials (bare challenge) and for a bad token', async () => {
      assertRefused(await call('/objects'), 401, 'invalid_token', /^Bearer realm="api"$/);
      assertRefused(await call('/objects', 'Bearer not-a-token'), 401, 'invalid_token', challenge('invalid_token'));
      assertRefused(await call('/objects', `ApiKey gate_ak_${'B'.repeat(43)}`), 401, 'invalid_token', challenge('invalid_token'));
    });

    it('answers 400 invalid_request for a malformed Authorization header, and another scheme with the bare challenge', async () => {
      assertRefused(await call('/objects', 'Bearer two tokens'), 400, 'invalid_request', challenge('invalid_request'));
      assertRefused(await call('/objects', 'Basic dXNlcjpwYXNz'), 401, 'invalid_token', /^Bearer realm="api"$/);
    });

    it('answers 403 insufficient_scope naming every scope the route needs', async () => {
      assertRefused(await call('/download', `Bearer ${await clientToken(machine, 'objects:read')}`), 403, 'insufficient_scope', challenge('insufficient_scope', 'objects:read objects:download'));
    });

    it('sets the principal for the handler on success', async () => {
      const answer = await call('/objects', `Bearer ${(await userTokens()).access_token}`);
      assert.equal(answer.status, 200);
      assert.deepEqual({ kind: answer.body.kind, subject: answer.body.subject, clientId: answer.body.clientId }, { kind: 'user', subject: userId, clientId: firstParty.id });
      const download = await call('/download', `Bearer ${(await userTokens()).access_token}`);
      assert.equal(download.status, 200);
    });

    it('answers 503 when Gatehouse cannot vouch for an API key (introspection refused the API\'s credentials)', async () => {
      const { value } = await apiKey(machine, ['objects:read']);
      const answer = await call('/misconfigured', `ApiKey ${value}`);
      assert.equal(answer.status, 503);
      assert.equal(answer.header('retry-after'), '5');
      assert.equal(answer.body.error, 'temporarily_unavailable');
    });
  }

  describe('Fastify middleware (fastifyGatehouse)', () => {
    const app = Fastify();
    before(async () => {
      const gatehouse = fastifyGatehouse(authenticator);
      const misconfigured = fastifyGatehouse(createAuthenticator({ ...options, introspection: { clientId: resourceServer.id, clientSecret: 'wrong secret' } }));
      app.get('/objects', { preHandler: gatehouse.requireScope('objects:read') }, async (request) => request.principal);
      app.get('/download', { preHandler: gatehouse.requireScope('objects:read', 'objects:download') }, async (request) => request.principal);
      app.get('/misconfigured', { preHandler: misconfigured.requireScope('objects:read') }, async (request) => request.principal);
      await app.ready();
    });
    after(() => app.close());

    middlewareBehaviour(async (url, authorization) => {
      const res = await app.inject({ method: 'GET', url, headers: authorization ? { authorization } : {} });
      const header = res.headers;
      return { status: res.statusCode, header: (name) => header[name] as string | undefined, body: res.json() };
    });
  });

  describe('Express middleware (expressGatehouse)', () => {
    let url: string;
    let close: () => Promise<void>;
    before(async () => {
      const gatehouse = expressGatehouse(authenticator);
      const misconfigured = expressGatehouse(createAuthenticator({ ...options, introspection: { clientId: resourceServer.id, clientSecret: 'wrong secret' } }));
      const app = express();
      const principalOf = (request: express.Request) => (request as express.Request & { principal?: Principal }).principal;
      app.get('/objects', gatehouse.requireScope('objects:read'), (request, response) => void response.json(principalOf(request)));
      app.get('/download', gatehouse.requireScope('objects:read', 'objects:download'), (request, response) => void response.json(principalOf(request)));
      app.get('/misconfigured', misconfigured.requireScope('objects:read'), (request, response) => void response.json(principalOf(request)));
      const listening = app.listen(0, '127.0.0.1');
      await new Promise<void>((resolve, reject) => listening.once('listening', resolve).once('error', reject));
      url = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
      close = () => new Promise((resolve) => listening.close(() => resolve()));
    });
    after(() => close());

    middlewareBehaviour(async (path, authorization) => {
      const res = await fetch(`${url}${path}`, { headers: authorization ? { authorization } : {} });
      return { status: res.status, header: (name) => res.headers.get(name) ?? undefined, body: await res.json() };
    });
  });

  // Last: the rotations here activate keys the authenticators above have not fetched yet.
  describe('signing key rotation', () => {
    it('just works: tokens of the new key verify without restarting the authenticator, and earlier ones still do', async () => {
      const earlier = (await userTokens()).access_token!;
      await authenticator.authenticate(bearer(earlier));
      await server.gatehouse.keys.rotate(server.gatehouse.clock(), { force: true });
      const later = (await userTokens()).access_token!;
      assert.notEqual(decodeProtectedHeader(later).kid, decodeProtectedHeader(earlier).kid, 'the new token is signed by another key');
      assert.equal((await authenticator.authenticate(bearer(later))).subject, userId);
      assert.equal((await authenticator.authenticate(bearer(earlier))).subject, userId);
    });

    it('refetches the JWKS for an unknown kid once, and at most once every 30 s', async (t) => {
      const requests = countRequests(t);
      const fresh = createAuthenticator(options);
      await fresh.authenticate(bearer((await userTokens()).access_token!));
      assert.equal(requests('/jwks.json'), 1);

      // Unknown kids right after a fetch: refused without asking Gatehouse again.
      for (let i = 0; i < 3; i++) await refusal(fresh.authenticate(bearer(await resign(await clientToken(), {}, await foreignKey(`forged-${i}`)))), 'invalid_token');
      assert.equal(requests('/jwks.json'), 1, 'no refetch within the cooldown');

      // Two rotations activate a key made after the authenticator's fetch, so it has never seen it.
      await server.gatehouse.keys.rotate(server.gatehouse.clock(), { force: true });
      await server.gatehouse.keys.rotate(server.gatehouse.clock(), { force: true });
      const unseen = (await userTokens()).access_token!;
      t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 31_000 });
      assert.equal((await fresh.authenticate(bearer(unseen))).subject, userId);
      assert.equal(requests('/jwks.json'), 2, 'one refetch for the unknown kid');

      for (let i = 0; i < 3; i++) await refusal(fresh.authenticate(bearer(await resign(unseen, {}, await foreignKey(`forged-again-${i}`)))), 'invalid_token');
      assert.equal(requests('/jwks.json'), 2, 'forged kids cannot make the API hammer Gatehouse');
    });
  });
});
