import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeProtectedHeader } from 'jose';
import pino from 'pino';
import { deleteClient, rotateClientSecret } from '../../src/core/applications.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Two instances on one PostgreSQL database, each with its own in-process caches (DESIGN §6): what
 * one changes, the other sees at once or within the time docs/operators.md states. Client records
 * are cached for half a second here, and the keys re-read only once an hour, so that a test that
 * passes proves the change was picked up without waiting for a reload.
 */
describe('two instances on one PostgreSQL database', () => {
  const CACHE_MS = 500;
  let first: TestServer;
  let second: { url: string; gatehouse: Gatehouse; app: FastifyInstance };
  let api: { id: string; secret: string };

  before(async () => {
    first = await startTestServer('postgres', { config: { clients: { cacheTtlSeconds: CACHE_MS / 1000 }, keys: { reloadIntervalSeconds: 3600 } } });
    const gatehouse = await createGatehouse({ ...first.config, port: await freePort() }, { logger: pino({ level: 'silent' }) });
    const app = buildApp(gatehouse);
    await app.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
    second = { url: `http://127.0.0.1:${gatehouse.config.port}`, gatehouse, app };
    api = await first.client({ name: 'Platform API', isResourceServer: true });
  });
  after(async () => {
    await second.app.close();
    await second.gatehouse.close();
    await first.close();
  });

  const clientToken = (url: string, client: { id: string; secret: string }) =>
    post(`${url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) } });
  const introspect = async (url: string, token: string): Promise<boolean> =>
    (await post(`${url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body.active;

  it('accepts at once the tokens another instance signs after two rotations it has not re-read the keys since', async () => {
    const client = await first.client({});
    const before = (await clientToken(second.url, client)).body.access_token;
    await first.gatehouse.keys.rotate(first.gatehouse.clock(), { force: true });
    await first.gatehouse.keys.rotate(first.gatehouse.clock(), { force: true });
    const after = (await clientToken(first.url, client)).body.access_token;
    assert.notEqual(decodeProtectedHeader(after).kid, decodeProtectedHeader(before).kid);

    // The second instance last read the keys before the key that signs now was made.
    assert.equal(await introspect(second.url, after), true, 'introspection');
    const jwks = (await (await fetch(`${second.url}/jwks.json`)).json()) as { keys: { kid: string }[] };
    assert.ok(jwks.keys.some((key) => key.kid === decodeProtectedHeader(after).kid), 'the JWKS publishes the key that signs');
    assert.equal(await introspect(second.url, before), true, 'a token of the retired key stays active');
  });

  it('refuses a client deleted through the other instance within clients.cacheTtlSeconds: its secret and its tokens', async () => {
    const client = await first.client({});
    const token = (await clientToken(second.url, client)).body.access_token;
    assert.equal(await introspect(second.url, token), true);
    await deleteClient(first.gatehouse, client.id);
    assert.equal(await introspect(first.url, token), false, 'at once on the instance that deleted it');
    await sleep(CACHE_MS + 100);
    assert.equal(await introspect(second.url, token), false);
    assert.equal((await clientToken(second.url, client)).status, 401);
  });

  it('refuses a secret rotated away through the other instance within clients.cacheTtlSeconds, and takes the new one from then', async () => {
    const client = await first.client({});
    assert.equal((await clientToken(second.url, client)).status, 200);
    const secret = await rotateClientSecret(first.gatehouse, client.id, first.gatehouse.clock());
    await sleep(CACHE_MS + 100);
    assert.equal((await clientToken(second.url, client)).status, 401);
    assert.equal((await clientToken(second.url, { id: client.id, secret })).status, 200);
  });
});
