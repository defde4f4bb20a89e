import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeProtectedHeader } from 'jose';
import pino from 'pino';
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
      await first.gatehouse.keys.rotate(now);

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

      // Once every token it can have signed has expired, it goes.
      now += HOUR;
      await first.gatehouse.keys.reload(now);
      const later = (await (await fetch(`${first.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.equal(later.keys.some((key) => key.kid === signedBefore), false);
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
      await server.gatehouse.keys.rotate(Math.floor(Date.now() / 1000));
      assert.equal(server.gatehouse.keys.signingKey('id').kid, next.kid);
    });
  });
}
