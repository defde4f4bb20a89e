import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * The admin API's rule (a token manages an admin client, or one that may impersonate users, only if
 * it holds the client's admin scopes, and admin:users for impersonation) holds when requests race:
 * each test holds one request between its check and its write until a second request has changed
 * the client, which is the interleaving that two concurrent requests can always hit.
 */
for (const dialect of DIALECTS) {
  describe(`admin API under concurrent changes (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    /** Authorization header values: a token with admin:clients only, and one with admin:users too. */
    let clientsOnly: string;
    let clientsAndUsers: string;

    const clientToken = async (id: string, secret: string, scope: string): Promise<string> => {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope }, { headers: { authorization: basic(id, secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return `Bearer ${res.body.access_token}`;
    };
    const api = async (method: string, path: string, authorization: string, body?: unknown): Promise<{ status: number; body: any }> => {
      const response = await fetch(`${server.url}/admin/v1${path}`, {
        method,
        headers: { authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
    };
    const plainClient = async (name: string): Promise<{ id: string; secret: string }> => {
      const res = await api('POST', '/clients', clientsOnly, { name, grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'], scopes: ['objects:read'] });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { id: res.body.client_id, secret: res.body.client_secret };
    };
    const powersOf = async (id: string) => {
      const client = (await server.gatehouse.storage.clients.find(id))!;
      return { isAdmin: client.isAdmin, scopes: client.scopes, allowImpersonation: client.allowImpersonation };
    };

    /**
     * Makes the `nth` call of `method` on `target` for the client `clientId` wait until `release` is
     * called; `reached` settles when that call is made.
     */
    function holdCall<T extends object>(t: TestContext, target: T, method: keyof T & string, clientId: string, nth: number) {
      const original = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
      const reached = Promise.withResolvers<void>();
      const released = Promise.withResolvers<void>();
      let calls = 0;
      t.mock.method(target, method as never, async (...args: unknown[]) => {
        const forClient = args[0] === clientId || (typeof args[0] === 'object' && (args[0] as { clientId?: string }).clientId === clientId);
        if (forClient && ++calls === nth) {
          reached.resolve();
          await released.promise;
        }
        return original(...args);
      });
      return { reached: reached.promise, release: () => released.resolve() };
    }

    before(async () => {
      server = await startTestServer(dialect);
      const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users'], isAdmin: true });
      clientsOnly = await clientToken(admin.id, admin.secret, 'admin:clients');
      clientsAndUsers = await clientToken(admin.id, admin.secret, 'admin:clients admin:users');
    });
    after(() => server.close());

    it('does not let admin:clients give a client admin:users in two concurrent changes: the change is checked against the record it is merged into', async (t) => {
      const target = await plainClient('Two-step escalation');
      // The change's first read (its check) sees a plain client; its second waits for the other change.
      const held = holdCall(t, server.gatehouse.storage.clients, 'find', target.id, 2);
      const widen = api('PATCH', `/clients/${target.id}`, clientsOnly, { scopes: ['admin:users'] });
      await held.reached;
      const promote = await api('PATCH', `/clients/${target.id}`, clientsOnly, { admin: true, scopes: ['admin:clients'] });
      assert.equal(promote.status, 200, 'an admin client with the scopes the token holds: allowed');
      held.release();
      const widened = await widen;
      t.mock.restoreAll();

      assert.equal(widened.status, 403, JSON.stringify(widened.body));
      assert.equal(widened.body.error, 'insufficient_scope');
      assert.ok(widened.body.detail.includes('admin:users'), widened.body.detail);
      assert.deepEqual(await powersOf(target.id), { isAdmin: true, scopes: ['admin:clients'], allowImpersonation: false });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(target.id, target.secret) } });
      assert.equal(token.status, 400, 'the client’s secret gets no admin:users token');
      assert.equal(token.body.error, 'invalid_scope');
    });

    it('writes a change only while the client has the powers it was checked with: one that lost the race is checked again, and neither lands on nor undoes the other', async (t) => {
      const target = await plainClient('Renamed while promoted');
      const held = holdCall(t, server.gatehouse.storage.clients, 'update', target.id, 1);
      const rename = api('PATCH', `/clients/${target.id}`, clientsOnly, { name: 'Renamed by admin:clients' });
      await held.reached;
      const promote = await api('PATCH', `/clients/${target.id}`, clientsAndUsers, { admin: true, scopes: ['admin:users'] });
      assert.equal(promote.status, 200, JSON.stringify(promote.body));
      held.release();
      const renamed = await rename;
      t.mock.restoreAll();

      assert.equal(renamed.status, 403, JSON.stringify(renamed.body));
      assert.ok(renamed.body.detail.includes('admin:users'), renamed.body.detail);
      assert.deepEqual(await powersOf(target.id), { isAdmin: true, scopes: ['admin:users'], allowImpersonation: false }, 'the promotion stands');
      assert.equal((await server.gatehouse.storage.clients.find(target.id))!.name, 'Renamed while promoted');

      // Changes that do not touch each other's powers both land.
      const other = await plainClient('Renamed while described');
      const heldAgain = holdCall(t, server.gatehouse.storage.clients, 'update', other.id, 1);
      const renameOther = api('PATCH', `/clients/${other.id}`, clientsOnly, { name: 'Renamed' });
      await heldAgain.reached;
      assert.equal((await api('PATCH', `/clients/${other.id}`, clientsOnly, { scopes: ['objects:read', 'model:read'] })).status, 200);
      heldAgain.release();
      assert.equal((await renameOther).status, 200);
      t.mock.restoreAll();
      const stored = (await server.gatehouse.storage.clients.find(other.id))!;
      assert.deepEqual([stored.name, stored.scopes], ['Renamed', ['objects:read', 'model:read']], 'the rename was merged into the widened client, not over it');
    });

    it('withdraws a secret added for a client that a concurrent change made an admin client, which the token could not manage', async (t) => {
      const target = await plainClient('Secret during promotion');
      const before = await server.gatehouse.storage.clients.listSecrets(target.id);
      const held = holdCall(t, server.gatehouse.storage.clients, 'addSecret', target.id, 1);
      const added = api('POST', `/clients/${target.id}/secrets`, clientsOnly, {});
      await held.reached;
      assert.equal((await api('PATCH', `/clients/${target.id}`, clientsAndUsers, { admin: true, scopes: ['admin:users'] })).status, 200);
      held.release();
      const res = await added;
      t.mock.restoreAll();

      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.equal(res.body.client_secret, undefined);
      assert.ok(res.body.detail.includes('admin:users'), res.body.detail);
      assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(target.id), before, 'the secret was withdrawn');
    });

    it('withdraws an API key created for a client that a concurrent change allowed to impersonate users', async (t) => {
      const target = await plainClient('Key during impersonation');
      const held = holdCall(t, server.gatehouse.storage.apiKeys, 'create', target.id, 1);
      const created = api('POST', `/clients/${target.id}/api-keys`, clientsOnly, { name: 'Script' });
      await held.reached;
      assert.equal((await api('PATCH', `/clients/${target.id}`, clientsAndUsers, { impersonation: true })).status, 200);
      held.release();
      const res = await created;
      t.mock.restoreAll();

      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.equal(res.body.api_key, undefined);
      assert.ok(res.body.detail.includes('admin:users'), res.body.detail);
      const keys = await server.gatehouse.storage.apiKeys.listForClient(target.id);
      assert.ok(keys.every((key) => key.revokedAt !== null), 'the key was withdrawn');
    });
  });
}
