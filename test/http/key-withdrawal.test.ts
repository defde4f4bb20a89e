import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeProtectedHeader } from 'jose';
import pino from 'pino';
import { createAuthenticator, ResourceError } from 'gatehouse/resource';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

const RELOAD_SECONDS = 0.2;

/**
 * A signing key that leaked must stop being trusted at once, not when the last token it signed
 * expires: `POST /admin/v1/keys/{kid}/withdraw` takes it out of the JWKS, stops it signing and makes
 * every token it signed fail verification, here at once and on the other instances at their next
 * reload of the keys.
 */
for (const dialect of DIALECTS) {
  describe(`withdrawing a signing key (${dialect})`, { timeout: 120_000 }, () => {
    let first: TestServer;
    let second: { url: string; gatehouse: Gatehouse; app: FastifyInstance };
    let app: { id: string; secret: string };
    let api: { id: string; secret: string };
    let admin: { id: string; secret: string };
    const user = { email: 'lee@example.com', password: 'correct horse battery' };

    before(async () => {
      first = await startTestServer(dialect, { config: { keys: { reloadIntervalSeconds: RELOAD_SECONDS } } });
      // A second instance on the same database, re-reading the keys every RELOAD_SECONDS.
      const gatehouse = await createGatehouse({ ...first.config, port: await freePort() }, { logger: pino({ level: 'silent' }) });
      const secondApp = buildApp(gatehouse);
      await secondApp.listen({ port: gatehouse.config.port, host: '127.0.0.1' });
      second = { url: `http://127.0.0.1:${gatehouse.config.port}`, gatehouse, app: secondApp };
      app = await first.client({ name: 'Mobile app', grantTypes: ['password'], scopes: ['openid', 'profile', 'objects:read'], firstParty: true });
      api = await first.client({ name: 'BIM API', scopes: ['objects:read'], isResourceServer: true });
      await first.user(user.email, user.password);
      admin = await first.client({ name: 'Back office', scopes: ['admin:tokens'], isAdmin: true });
    });
    after(async () => {
      await second?.app.close();
      await second?.gatehouse.close();
      await first?.close();
    });

    const userToken = async (url: string): Promise<string> => {
      const issued = await post(`${url}/token`, { grant_type: 'password', username: user.email, password: user.password, scope: 'openid profile objects:read' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(issued.status, 200, JSON.stringify(issued.body));
      return issued.body.access_token;
    };
    const introspect = async (url: string, token: string): Promise<boolean> => {
      const answer = await post(`${url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body.active;
    };
    const userinfo = async (url: string, token: string): Promise<number> => (await fetch(`${url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;
    const published = async (url: string): Promise<string[]> => ((await (await fetch(`${url}/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
    const withdraw = async (kid: string) => {
      // A token of its own each time: one signed by a key withdrawn before is refused too.
      const adminToken = (await post(`${first.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } })).body.access_token;
      const response = await fetch(`${first.url}/admin/v1/keys/${encodeURIComponent(kid)}/withdraw`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      return { status: response.status, body: (await response.json()) as any };
    };
    const kidOf = (token: string) => decodeProtectedHeader(token).kid!;
    const waitFor = async (what: string, probe: () => Promise<boolean>) => {
      const deadline = Date.now() + 10_000;
      while (!(await probe())) {
        if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };

    it('takes the active key out of the JWKS, stops it signing, and every token it signed is refused by introspection, userinfo and the SDK', async () => {
      const token = await userToken(first.url);
      const onSecond = await userToken(second.url);
      const leaked = kidOf(token);
      assert.equal(kidOf(onSecond), leaked);
      const next = (await first.gatehouse.storage.keys.listAll()).find((key) => key.use === 'access' && key.state === 'next')!;
      for (const url of [first.url, second.url]) {
        assert.equal(await introspect(url, token), true);
        assert.equal(await userinfo(url, token), 200);
      }

      const answer = await withdraw(leaked);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.keys.some((key: { kid: string }) => key.kid === leaked), false, 'the answer lists the keys still published');
      assert.equal(answer.body.keys.find((key: { kid: string }) => key.kid === next.kid)?.state, 'active', 'the next key took over at once');

      // On the instance that withdrew it: at once.
      assert.equal((await published(first.url)).includes(leaked), false, 'gone from the JWKS');
      assert.equal(await introspect(first.url, token), false, 'introspection');
      assert.equal(await introspect(first.url, onSecond), false, 'introspection of a token another instance signed with it');
      assert.equal(await userinfo(first.url, token), 401, 'userinfo');
      const sdk = createAuthenticator({ issuer: first.url, audience: first.config.tokens.audience });
      await assert.rejects(sdk.authenticate({ headers: { authorization: `Bearer ${token}` } }), (error: unknown) => error instanceof ResourceError && error.error === 'invalid_token', 'an API verifying with the JWKS');

      // It signs nothing more; the former next key signs, and its tokens are accepted.
      const fresh = await userToken(first.url);
      assert.equal(kidOf(fresh), next.kid);
      assert.equal(await introspect(first.url, fresh), true);
      assert.equal(await userinfo(first.url, fresh), 200);
      assert.equal((await sdk.authenticate({ headers: { authorization: `Bearer ${fresh}` } })).clientId, app.id);

      // On the other instance: from its next reload of the keys.
      await waitFor('the other instance to re-read the keys', async () => !(await published(second.url)).includes(leaked));
      assert.equal(await introspect(second.url, token), false);
      assert.equal(await userinfo(second.url, token), 401);
      assert.equal(kidOf(await userToken(second.url)), next.kid, 'the other instance signs with the key that took over');

      // A new next key is published; the audit trail says who withdrew which key.
      const keys = await first.gatehouse.storage.keys.listPublished(first.gatehouse.clock());
      assert.equal(keys.filter((key) => key.use === 'access' && key.state === 'next').length, 1);
      assert.ok(!keys.some((key) => key.kid === leaked));
      await first.gatehouse.audit.flush();
      const events = await first.gatehouse.storage.audit.query({ kind: 'admin.keys.withdrawn' });
      assert.equal(events.length, 1);
      assert.deepEqual({ kid: events[0]!.data.kid, use: events[0]!.data.use, state: events[0]!.data.state, via: events[0]!.data.via }, { kid: leaked, use: 'access', state: 'active', via: 'admin_api' });
    });

    it('withdraws a retired key: the tokens it signed are refused, and the active key goes on signing', async () => {
      const token = await userToken(first.url);
      const retired = kidOf(token);
      await first.gatehouse.keys.rotate(first.gatehouse.clock(), { force: true });
      const signing = first.gatehouse.keys.signingKey('access').kid;
      assert.equal(await introspect(first.url, token), true, 'a retired key still verifies its tokens');

      const answer = await withdraw(retired);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(await introspect(first.url, token), false);
      assert.equal(await userinfo(first.url, token), 401);
      assert.equal((await published(first.url)).includes(retired), false);
      assert.equal(first.gatehouse.keys.signingKey('access').kid, signing);
    });

    it('withdraws a next key before it ever signs, publishing another in its place', async () => {
      const next = (await first.gatehouse.storage.keys.listAll()).find((key) => key.use === 'id' && key.state === 'next')!;
      const answer = await withdraw(next.kid);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const keys = await published(first.url);
      assert.equal(keys.includes(next.kid), false);
      const replacement = (await first.gatehouse.storage.keys.listPublished(first.gatehouse.clock())).find((key) => key.use === 'id' && key.state === 'next');
      assert.ok(replacement && replacement.kid !== next.kid && keys.includes(replacement.kid));
    });

    it('answers 404 for a key that is not published, and changes nothing', async () => {
      const stored = await first.gatehouse.storage.keys.listAll();
      const withdrawn = stored.find((key) => key.state === 'retired' && key.expiresAt! <= first.gatehouse.clock())!;
      for (const kid of ['no-such-kid', withdrawn.kid]) {
        const answer = await withdraw(kid);
        assert.equal(answer.status, 404, JSON.stringify(answer.body));
        assert.match(answer.body.detail, /no published signing key/);
      }
      assert.deepEqual(await first.gatehouse.storage.keys.listAll(), stored);
    });
  });
}
