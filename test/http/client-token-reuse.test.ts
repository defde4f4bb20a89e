import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

describe('client-credentials token reuse window', () => {
  let server: TestServer;
  let client: { id: string; secret: string };
  let now = 1_900_000_000;

  before(async () => {
    server = await startTestServer('sqlite', { clock: () => now, config: { tokens: { clientCredentialsReuseSeconds: 5 } } });
    client = await server.client({ scopes: ['objects:read', 'model:read'] });
  });
  after(() => server.close());

  const token = (scope?: string) =>
    post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(client.id, client.secret) } });

  it('hands identical requests within the window the same token, with expires_in counting down', async () => {
    const first = await token('objects:read');
    now += 3;
    const second = await token('objects:read');
    assert.equal(second.body.access_token, first.body.access_token);
    assert.equal(first.body.expires_in, 3600);
    assert.equal(second.body.expires_in, 3597);
    assert.equal(decodeJwt(second.body.access_token).exp, now - 3 + 3600);
  });

  it('signs a new token once the window has passed', async () => {
    const first = await token('objects:read');
    now += 5;
    const second = await token('objects:read');
    assert.notEqual(second.body.access_token, first.body.access_token);
    assert.equal(second.body.expires_in, 3600);
  });

  it('never hands a token of one scope set to a request for another', async () => {
    const narrow = await token('objects:read');
    const wide = await token('objects:read model:read');
    assert.notEqual(wide.body.access_token, narrow.body.access_token);
    assert.equal(decodeJwt(wide.body.access_token).scope, 'objects:read model:read');
  });

  it('signs a new token after a key rotation', async () => {
    const before = await token('model:read');
    await server.gatehouse.keys.rotate(now, { force: true });
    const after = await token('model:read');
    assert.notEqual(after.body.access_token, before.body.access_token);
  });

  it('hands out a token revoked by another instance for at most one second, then signs a new one', async () => {
    now += 5;
    const first = await token('objects:read');
    // Revoked elsewhere: the shared revocation store knows, this instance's memory does not.
    const { jti, exp } = decodeJwt(first.body.access_token);
    await server.gatehouse.storage.revocations.revokeJti(jti!, exp!);
    assert.equal((await token('objects:read')).body.access_token, first.body.access_token, 'within the second it was last confirmed in');
    now += 1;
    const fresh = await token('objects:read');
    assert.notEqual(fresh.body.access_token, first.body.access_token);
    assert.equal(fresh.body.expires_in, 3600);
    assert.equal((await token('objects:read')).body.access_token, fresh.body.access_token, 'the new token is reused in turn');
  });

  it('asks the revocation store once a second per reused token, however many requests share it', async (t) => {
    now += 5;
    const first = await token('objects:read');
    const revocations = server.gatehouse.storage.revocations;
    const asked = t.mock.method(revocations, 'isJtiRevoked');
    for (let i = 0; i < 3; i++) assert.equal((await token('objects:read')).body.access_token, first.body.access_token);
    assert.equal(asked.mock.callCount(), 0, 'not within the second the token was signed in');
    now += 1;
    const answers = await Promise.all(Array.from({ length: 10 }, () => token('objects:read')));
    for (const answer of answers) assert.equal(answer.body.access_token, first.body.access_token);
    assert.equal((await token('objects:read')).body.access_token, first.body.access_token);
    assert.equal(asked.mock.callCount(), 1);
  });

  it('signs a new token, without failing the request, when the revocation store cannot confirm the reused one', async (t) => {
    now += 5;
    const first = await token('objects:read');
    t.mock.method(server.gatehouse.storage.revocations, 'isJtiRevoked', async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    });
    now += 1;
    const second = await token('objects:read');
    assert.equal(second.status, 200);
    assert.notEqual(second.body.access_token, first.body.access_token);
  });

  it('signs a new token rather than wait out a revocation store that does not answer', async (t) => {
    now += 5;
    const first = await token('objects:read');
    t.mock.method(server.gatehouse.storage.revocations, 'isJtiRevoked', () => new Promise<boolean>(() => {}));
    now += 1;
    const hung = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the token endpoint waited on the revocation store')), 5000).unref());
    const second = await Promise.race([token('objects:read'), hung]);
    assert.equal(second.status, 200);
    assert.notEqual(second.body.access_token, first.body.access_token);
  });

  it('answers what a response hook adds to each answer, with the headers of any token answer', async () => {
    let answered = 0;
    server.gatehouse.tokenEndpoint.addResponseHook((context, response) => {
      if (context.client.id === client.id) Object.assign(response, { answer_number: ++answered });
    });
    const first = await token('objects:read');
    const second = await token('objects:read');
    assert.equal(second.body.access_token, first.body.access_token);
    assert.deepEqual([first.body.answer_number, second.body.answer_number], [1, 2]);
    for (const answer of [first, second]) {
      assert.equal(answer.headers.get('content-type'), 'application/json; charset=utf-8');
      assert.equal(answer.headers.get('cache-control'), 'no-store');
      assert.equal(answer.headers.get('pragma'), 'no-cache');
      assert.equal(answer.headers.get('x-content-type-options'), 'nosniff');
    }
  });
});
