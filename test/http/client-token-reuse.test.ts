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
    await server.gatehouse.keys.rotate(now);
    const after = await token('model:read');
    assert.notEqual(after.body.access_token, before.body.access_token);
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
