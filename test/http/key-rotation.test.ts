import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeProtectedHeader } from 'jose';
import pino from 'pino';
import { sweepExpiredRows, sweepPolicyOf } from '../../src/core/housekeeping.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

const HOUR = 3600;

/**
 * The JWKS keeps a retired key for every token it can have signed: instances share one database but
 * learn of a rotation only when they re-read the keys, every `keys.reloadIntervalSeconds`, and sign
 * with the retired key until then.
 */
for (const dialect of DIALECTS) {
  describe(`signing keys retired while another instance still signs with them (${dialect})`, () => {
    let now = Math.floor(Date.now() / 1000);
    let first: TestServer;
    let second: { url: string; gatehouse: Gatehouse; app: FastifyInstance };
    let client: { id: string; secret: string };
    const user = { email: 'kim@example.com', password: 'correct horse battery' };

    before(async () => {
      // Every token lives an hour at most, and instances re-read the keys once an hour.
      first = await startTestServer(dialect, { clock: () => now, background: false, config: { keys: { reloadIntervalSeconds: HOUR }, projectTokens: { maxTtlSeconds: HOUR, defaultTtlSeconds: HOUR } } });
      const gatehouse = await createGatehouse({ ...first.config, port: await freePort() }, { clock: () => now, background: false, logger: pino({ level: 'silent' }) });
      const app = buildApp(gatehouse);
      await app.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
      second = { url: `http://127.0.0.1:${gatehouse.config.port}`, gatehouse, app };
      client = await first.client({ name: 'First party', grantTypes: ['password'], scopes: ['openid', 'profile'] });
      await first.user(user.email, user.password);
    });
    after(async () => {
      await second.app.close();
      await second.gatehouse.close();
      await first.close();
    });

    it('publishes the retired key until a token the other instance signed with it before re-reading the keys has expired: userinfo answers it to the end', async () => {
      const signedBefore = decodeProtectedHeader((await post(`${second.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'openid profile' }, { headers: { authorization: basic(client.id, client.secret) } })).body.access_token).kid;
      await first.gatehouse.keys.rotate(now, { force: true });

      // Within its reload interval the second instance has not read the rotation yet.
      now += 50 * 60;
      const issued = await post(`${second.url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'openid profile' }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(issued.status, 200);
      const token: string = issued.body.access_token;
      assert.equal(decodeProtectedHeader(token).kid, signedBefore, 'signed with the key retired 50 minutes ago');

      // 59 minutes into the token's hour: both instances have re-read the keys since.
      now += 59 * 60;
      await first.gatehouse.keys.reload(now);
      await second.gatehouse.keys.reload(now);
      const jwks = (await (await fetch(`${first.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.ok(jwks.keys.some((key) => key.kid === signedBefore), 'the key that signed a token still valid is published');
      for (const url of [first.url, second.url]) {
        const answer = await fetch(`${url}/userinfo`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(answer.status, 200, `${url}: ${answer.headers.get('www-authenticate')}`);
      }

      // Once every token it can have signed has expired, and can no longer be revoked to end a token
      // derived from it (a project token, an hour longer here), it goes.
      now += 2 * HOUR;
      await first.gatehouse.keys.reload(now);
      const later = (await (await fetch(`${first.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.equal(later.keys.some((key) => key.kid === signedBefore), false);
    });
  });
}

/**
 * Revoking an access token ends the tokens derived from it, also once it has expired, for as long as
 * one of them may live (RFC 7009; see revoke): a project token minted with a one-hour token lives up
 * to projectTokens.maxTtlSeconds longer. The revocation verifies the token, so the key that signed it
 * stays published while that is so, a rotation in between or not.
 */
for (const dialect of DIALECTS) {
  describe(`a key retired while a token it signed can still be revoked (${dialect})`, () => {
    let now = Math.floor(Date.now() / 1000);
    let server: TestServer;
    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, background: false, config: { tokens: { clientCredentialsReuseSeconds: 0 } } });
    });
    after(() => server?.close());

    it('stays published until the project tokens minted with such a token have expired, so that revoking it ends them', async () => {
      const { accessTokenTtlSeconds } = server.config.tokens;
      const { maxTtlSeconds } = server.config.projectTokens;
      const backend = await server.client({ name: 'Viewer backend', scopes: ['model:read'] });
      const issued = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(backend.id, backend.secret) } });
      const parent: string = issued.body.access_token;
      await server.gatehouse.keys.rotate(now, { force: true });

      // A viewer token minted in the parent's last second, for as long as a project token may live.
      now += accessTokenTtlSeconds - 1;
      const minted = await post(`${server.url}/projects/p1/access-tokens`, JSON.stringify({ expires_at: new Date((now + maxTtlSeconds) * 1000).toISOString(), scopes: ['model:read'] }), { json: true, headers: { authorization: `Bearer ${parent}` } });
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      const viewer: string = minted.body.access_token;

      // A minute before the viewer token expires, the keys re-read and the expired rows swept.
      now += maxTtlSeconds - 60;
      await server.gatehouse.keys.reload(now);
      await sweepExpiredRows(server.gatehouse.storage, now, sweepPolicyOf(server.config));
      const jwks = (await (await fetch(`${server.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.ok(jwks.keys.some((key) => key.kid === decodeProtectedHeader(parent).kid), 'the key that signed the parent is still published');
      const revoked = await post(`${server.url}/revoke`, { token: parent }, { headers: { authorization: basic(backend.id, backend.secret) } });
      assert.equal(revoked.status, 200);
      const introspected = await post(`${server.url}/introspect`, { token: viewer }, { headers: { authorization: basic(backend.id, backend.secret) } });
      assert.deepEqual(introspected.body, { active: false }, 'the viewer token ends with the token it was minted with');
    });
  });
}

/**
 * While the master secret changes, an instance still given only the old one cannot decrypt a next
 * key stored under the new one: it stops at start-up, not at the rotation that makes that key sign.
 */
for (const dialect of DIALECTS) {
  describe(`an instance left with the old master secret while it changes (${dialect})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(dialect, { background: false });
    });
    after(() => server?.close());

    it('stops at start-up once the next key is stored under the new secret', async () => {
      const changed = await createGatehouse(
        { ...server.config, secret: 'the-new-master-secret-after-the-change-0123456789', previousSecrets: [server.config.secret] },
        { background: false, logger: pino({ level: 'silent' }) },
      );
      await changed.keys.rotate(Math.floor(Date.now() / 1000), { force: true });
      await changed.close();
      const next = (await server.gatehouse.storage.keys.listAll()).filter((key) => key.state === 'next').map((key) => key.kid);
      await assert.rejects(
        createGatehouse(server.config, { background: false, logger: pino({ level: 'silent' }) }),
        new RegExp(`signing key (${next.join('|')}) cannot be decrypted: GATEHOUSE_SECRET is not the secret it was stored under`),
      );
    });
  });
}

/**
 * An instance started with another master secret cannot sign, and must not write a key the others
 * cannot decrypt: one they promoted at the next rotation would stop every instance signing.
 */
for (const dialect of DIALECTS) {
  describe(`an instance started with the wrong master secret (${dialect})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer(dialect, { background: false });
    });
    after(() => server?.close());

    it('stops before it writes any key, even for a changed algorithm, and the next rotation signs with a key the others can use', async () => {
      const stored = await server.gatehouse.storage.keys.listAll();
      const wrong = { ...server.config, secret: 'another-secret-that-is-also-long-enough-0123456789', tokens: { ...server.config.tokens, idTokenAlgorithm: 'ES256' as const } };
      await assert.rejects(createGatehouse(wrong, { background: false, logger: pino({ level: 'silent' }) }), /cannot be decrypted: GATEHOUSE_SECRET is not the secret it was stored under/);
      assert.deepEqual(await server.gatehouse.storage.keys.listAll(), stored, 'no key replaced nor added');

      const next = stored.find((key) => key.use === 'id' && key.state === 'next')!;
      await server.gatehouse.keys.rotate(Math.floor(Date.now() / 1000), { force: true });
      assert.equal(server.gatehouse.keys.signingKey('id').kid, next.kid);
    });
  });
}

/**
 * A key signs only once resource servers can have fetched it: instances serve it from their next
 * reload on, and resource servers keep the JWKS for its max-age (60 s). Two rotations in a row
 * would otherwise make a key sign seconds after it was first published.
 */
for (const dialect of DIALECTS) {
  describe(`a rotation whose next key was published moments ago (${dialect})`, () => {
    let now = Math.floor(Date.now() / 1000);
    let server: TestServer;
    let token: string;
    const RELOAD = 10;
    const MINIMUM_AGE = RELOAD + 60;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, background: false, config: { keys: { reloadIntervalSeconds: RELOAD } } });
      const admin = await server.client({ name: 'Back office', scopes: ['admin:tokens'], isAdmin: true });
      const issued = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      assert.equal(issued.status, 200, JSON.stringify(issued.body));
      token = issued.body.access_token;
    });
    after(() => server?.close());

    const rotate = async (body?: unknown) => {
      const response = await fetch(`${server.url}/admin/v1/keys/rotate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: response.status, body: (await response.json()) as any };
    };
    const signingKid = async () => decodeProtectedHeader(token).kid;
    const nextOf = async (use: string) => (await server.gatehouse.storage.keys.listAll()).find((k) => k.use === use && k.state === 'next')!;

    it('refuses it with 409 and changes nothing, until the next key has been published for the reload interval plus the JWKS cache time', async () => {
      assert.ok(await signingKid());
      const stored = await server.gatehouse.storage.keys.listAll();
      const jwks = await (await fetch(`${server.url}/jwks.json`)).text();

      // The next keys were published at the first start, moments ago.
      now += MINIMUM_AGE - 1;
      const refused = await rotate();
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.match(refused.body.detail, new RegExp(`may sign only once resource servers can have fetched it, ${MINIMUM_AGE} s after it was published`));
      assert.match(refused.body.detail, /"force": true/);
      assert.deepEqual(await server.gatehouse.storage.keys.listAll(), stored, 'no key promoted, retired nor added');
      assert.equal(await (await fetch(`${server.url}/jwks.json`)).text(), jwks);

      now += 1;
      const next = await nextOf('access');
      const rotated = await rotate();
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      assert.equal(server.gatehouse.keys.signingKey('access').kid, next.kid, 'the key published long enough signs');
    });

    it('refuses a second rotation right after the first, since its next key was published by the first', async () => {
      const stored = await server.gatehouse.storage.keys.listAll();
      const signing = server.gatehouse.keys.signingKey('access').kid;
      now += 5;
      const refused = await rotate({});
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.match(refused.body.detail, /was published 5 s ago/);
      assert.deepEqual(await server.gatehouse.storage.keys.listAll(), stored);
      assert.equal(server.gatehouse.keys.signingKey('access').kid, signing, 'the active key still signs');
    });

    it('rotates at once when forced, for an emergency, and records that it was forced', async () => {
      const next = await nextOf('access');
      const idNext = await nextOf('id');
      const rotated = await rotate({ force: true });
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
      assert.equal(server.gatehouse.keys.signingKey('access').kid, next.kid);
      assert.equal(server.gatehouse.keys.signingKey('id').kid, idNext.kid);
      await server.gatehouse.audit.flush();
      const events = await server.gatehouse.storage.audit.query({ kind: 'admin.keys.rotated', limit: 10 });
      assert.deepEqual(events.map((e) => e.data.forced ?? false), [true, false], 'the forced rotation, then the one before (newest first)');
      assert.equal((await rotate({ force: 'yes' })).status, 400, 'force is a boolean');
    });
  });
}
