import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { rotateClientSecret } from '../../src/core/applications.ts';
import { ClientRegistry } from '../../src/core/clients.ts';
import { createOpaqueToken, digestOf, hintOf } from '../../src/core/tokens/opaque.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * A secret that matched is remembered with the cached client for a few seconds, so a client asking
 * again is not hashed again: what that memory must never change is who gets in.
 */
describe('client secrets remembered between requests', () => {
  let server: TestServer;
  let client: { id: string; secret: string };
  /** A second secret, as after a rotation with overlap: it expires in 10 s. */
  let expiring: string;
  let now = 1_900_000_000;

  before(async () => {
    server = await startTestServer('sqlite', { clock: () => now, config: { tokens: { clientCredentialsReuseSeconds: 0 } } });
    client = await server.client({});
    expiring = createOpaqueToken('cs');
    await server.gatehouse.storage.clients.addSecret({ id: randomUUID(), clientId: client.id, digest: digestOf(expiring), hint: hintOf(expiring), createdAt: now, expiresAt: now + 10 });
    server.gatehouse.clients.invalidate(client.id);
  });
  after(() => server.close());

  const token = (secret: string) => post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, secret) } });

  it('accepts each live secret again and again', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await token(client.secret)).status, 200);
      assert.equal((await token(expiring)).status, 200);
    }
  });

  it('refuses a wrong secret after the right ones were accepted, whatever it shares with them', async () => {
    // The last character changed to another (never to itself: one secret in 64 ends in 'A').
    const lastChanged = `${client.secret.slice(0, -1)}${client.secret.endsWith('A') ? 'B' : 'A'}`;
    const wrong = [createOpaqueToken('cs'), lastChanged, client.secret.slice(0, -1), `${client.secret} `, expiring.toUpperCase()];
    assert.ok(!wrong.includes(client.secret) && !wrong.includes(expiring));
    for (const secret of wrong) {
      const answer = await token(secret);
      assert.equal(answer.status, 401, secret);
      assert.equal(answer.body.error, 'invalid_client');
    }
  });

  it('refuses a remembered secret once it has expired, and keeps accepting the other', async () => {
    assert.equal((await token(expiring)).status, 200);
    now += 11;
    const answer = await token(expiring);
    assert.equal(answer.status, 401);
    assert.equal(answer.body.error, 'invalid_client');
    assert.equal((await token(client.secret)).status, 200);
  });

  it('holds a remembered Basic header to the rules of the request it comes with', async () => {
    assert.equal((await token(client.secret)).status, 200);
    const headers = { authorization: basic(client.id, client.secret) };
    // RFC 6749 §2.3: one authentication method per request, and a body client_id that agrees.
    const twoMethods = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_secret: client.secret }, { headers });
    assert.equal(twoMethods.status, 400);
    assert.equal(twoMethods.body.error, 'invalid_request');
    const otherId = await post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: 'app_other' }, { headers });
    assert.equal(otherId.status, 400);
    assert.equal(otherId.body.error, 'invalid_request');
    assert.equal((await token(client.secret)).status, 200);
  });

  it('refuses a remembered Basic header once its secret is rotated away, and accepts the new one', async () => {
    const old = client.secret;
    assert.equal((await token(old)).status, 200);
    const fresh = await rotateClientSecret(server.gatehouse, client.id, now);
    const refused = await token(old);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_client');
    assert.equal((await token(fresh)).status, 200);
    assert.equal((await token(old)).status, 401);
    client = { ...client, secret: fresh };
  });

  it('keeps the readings of Basic headers per client, forgets them with the client, and holds a bounded number', () => {
    const registry = new ClientRegistry(server.gatehouse.storage, 5, 2);
    const reading = (clientId: string) => ({ clientId, secret: createOpaqueToken('cs') });
    const [a, b, c] = [reading('app_a'), reading('app_b'), reading('app_c')];
    registry.rememberBasic('Basic a', a);
    registry.rememberBasic('Basic b', b);
    // A header remembered again (its client's cached entry was reloaded) takes no other's place.
    registry.rememberBasic('Basic b', b);
    assert.deepEqual([registry.knownBasic('Basic a'), registry.knownBasic('Basic b')], [a, b]);
    registry.invalidate('app_a');
    assert.equal(registry.knownBasic('Basic a'), undefined);
    assert.equal(registry.knownBasic('Basic b'), b);
    registry.rememberBasic('Basic a', a);
    registry.rememberBasic('Basic c', c);
    assert.equal(registry.knownBasic('Basic b'), undefined, 'the oldest reading goes first');
    assert.deepEqual([registry.knownBasic('Basic a'), registry.knownBasic('Basic c')], [a, c]);
  });
});
