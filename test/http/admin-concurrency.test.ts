import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/**
 * The admin API's rule (a token manages an admin client, one that may impersonate users, or a
 * resource server only if it holds the client's admin scopes, admin:users for impersonation and
 * admin:tokens for a resource server) holds when requests race:
 * each test holds one request between its check and its write until a second request has changed
 * the client, which is the interleaving that two concurrent requests can always hit. Deletions
 * that meet each other delete once: one 204, the others 404.
 */
for (const dialect of DIALECTS) {
  describe(`admin API under concurrent changes (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    /** Authorization header values: a token with admin:clients only, and one with admin:users too. */
    let clientsOnly: string;
    let clientsAndUsers: string;
    /** A token with every admin scope: admin:tokens too. */
    let allScopes: string;

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
      const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:clients', 'admin:users', 'admin:tokens'], isAdmin: true });
      clientsOnly = await clientToken(admin.id, admin.secret, 'admin:clients');
      clientsAndUsers = await clientToken(admin.id, admin.secret, 'admin:clients admin:users');
      allScopes = await clientToken(admin.id, admin.secret, 'admin:clients admin:users admin:tokens');
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

    it('loses neither of two concurrent changes of different fields: a field one leaves out keeps the value the other gave it', async (t) => {
      const target = await plainClient('Described while renamed');
      const held = holdCall(t, server.gatehouse.storage.clients, 'update', target.id, 1);
      const rename = api('PATCH', `/clients/${target.id}`, clientsOnly, { name: 'Renamed' });
      await held.reached;
      const describe = await api('PATCH', `/clients/${target.id}`, clientsOnly, { description: 'Described', redirect_uris: ['https://app.example/cb'] });
      assert.equal(describe.status, 200, JSON.stringify(describe.body));
      held.release();
      const renamed = await rename;
      t.mock.restoreAll();

      assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
      assert.deepEqual([renamed.body.name, renamed.body.description, renamed.body.redirect_uris], ['Renamed', 'Described', ['https://app.example/cb']], 'the answer is the client as stored');
      const stored = (await server.gatehouse.storage.clients.find(target.id))!;
      assert.deepEqual([stored.name, stored.description, stored.redirectUris], ['Renamed', 'Described', ['https://app.example/cb']], 'the rename was merged into the described client, not written over it');
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

    it('does not let a change or a secret checked against a plain client land on one that a concurrent change made a resource server', async (t) => {
      const target = await plainClient('Made a resource server');
      const held = holdCall(t, server.gatehouse.storage.clients, 'update', target.id, 1);
      const rename = api('PATCH', `/clients/${target.id}`, clientsOnly, { name: 'Renamed by admin:clients' });
      await held.reached;
      const promote = await api('PATCH', `/clients/${target.id}`, allScopes, { resource_server: true });
      assert.equal(promote.status, 200, JSON.stringify(promote.body));
      held.release();
      const renamed = await rename;
      t.mock.restoreAll();
      assert.equal(renamed.status, 403, JSON.stringify(renamed.body));
      assert.ok(renamed.body.detail.includes('admin:tokens'), renamed.body.detail);
      const stored = (await server.gatehouse.storage.clients.find(target.id))!;
      assert.deepEqual([stored.name, stored.isResourceServer], ['Made a resource server', true], 'the promotion stands, the rename did not land');

      const other = await plainClient('Secret while made a resource server');
      const before = await server.gatehouse.storage.clients.listSecrets(other.id);
      const heldSecret = holdCall(t, server.gatehouse.storage.clients, 'addSecret', other.id, 1);
      const added = api('POST', `/clients/${other.id}/secrets`, clientsOnly, {});
      await heldSecret.reached;
      assert.equal((await api('PATCH', `/clients/${other.id}`, allScopes, { resource_server: true })).status, 200);
      heldSecret.release();
      const res = await added;
      t.mock.restoreAll();
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.equal(res.body.client_secret, undefined);
      assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(other.id), before, 'the secret was withdrawn');
    });

    it('does not delete a client that a concurrent change made an admin client the token cannot manage; one still within reach is deleted', async (t) => {
      const target = await plainClient('Deleted during promotion');
      const held = holdCall(t, server.gatehouse.storage.clients, 'delete', target.id, 1);
      const deleted = api('DELETE', `/clients/${target.id}`, clientsOnly);
      await held.reached;
      assert.equal((await api('PATCH', `/clients/${target.id}`, clientsAndUsers, { admin: true, scopes: ['admin:users'] })).status, 200);
      held.release();
      const res = await deleted;
      t.mock.restoreAll();

      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.equal(res.body.error, 'insufficient_scope');
      assert.ok(res.body.detail.includes('admin:users'), res.body.detail);
      assert.deepEqual(await powersOf(target.id), { isAdmin: true, scopes: ['admin:users'], allowImpersonation: false }, 'the client is still there');
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(target.id, target.secret) } });
      assert.equal(token.status, 200, 'and so are its secret and powers');

      // A change that leaves the client within the token's reach does not stand in the way: checked again, deleted.
      const other = await plainClient('Deleted while widened');
      const heldAgain = holdCall(t, server.gatehouse.storage.clients, 'delete', other.id, 1);
      const deletedAgain = api('DELETE', `/clients/${other.id}`, clientsOnly);
      await heldAgain.reached;
      assert.equal((await api('PATCH', `/clients/${other.id}`, clientsOnly, { scopes: ['objects:read', 'model:read'] })).status, 200);
      heldAgain.release();
      assert.equal((await deletedAgain).status, 204);
      t.mock.restoreAll();
      assert.equal(await server.gatehouse.storage.clients.find(other.id), undefined);
    });

    it('answers 409, deleting nothing, when concurrent changes keep altering the client’s powers', async (t) => {
      const target = await plainClient('Kept changing');
      const clients = server.gatehouse.storage.clients;
      const remove = clients.delete.bind(clients);
      const update = clients.update.bind(clients);
      // Every delete meets a change of the client's scopes, made just before it.
      t.mock.method(clients, 'delete', async (id: string, expected?: Parameters<typeof remove>[1]) => {
        const current = (await clients.find(id))!;
        await update(id, { scopes: current.scopes.includes('model:read') ? ['objects:read'] : ['objects:read', 'model:read'] }, server.gatehouse.clock());
        return remove(id, expected);
      });
      const res = await api('DELETE', `/clients/${target.id}`, clientsOnly);
      t.mock.restoreAll();
      assert.equal(res.status, 409, JSON.stringify(res.body));
      assert.match(res.body.detail, /changed meanwhile/);
      assert.ok(await clients.find(target.id), 'the client is still there');
    });

    it('does not delete a secret, or revoke an API key, of a client that a concurrent change made one the token cannot manage', async (t) => {
      const target = await plainClient('Credentials during promotion');
      const [secret] = await server.gatehouse.storage.clients.listSecrets(target.id);
      const key = await api('POST', `/clients/${target.id}/api-keys`, clientsOnly, { name: 'Script' });
      assert.equal(key.status, 201, JSON.stringify(key.body));

      const heldSecret = holdCall(t, server.gatehouse.storage.clients, 'deleteSecret', target.id, 1);
      const secretDeleted = api('DELETE', `/clients/${target.id}/secrets/${secret!.id}`, clientsOnly);
      const heldKey = holdCall(t, server.gatehouse.storage.apiKeys, 'revoke', target.id, 1);
      const keyRevoked = api('DELETE', `/clients/${target.id}/api-keys/${key.body.id}`, clientsOnly);
      await Promise.all([heldSecret.reached, heldKey.reached]);
      assert.equal((await api('PATCH', `/clients/${target.id}`, clientsAndUsers, { impersonation: true })).status, 200);
      heldSecret.release();
      heldKey.release();
      const [secretRes, keyRes] = await Promise.all([secretDeleted, keyRevoked]);
      t.mock.restoreAll();

      for (const res of [secretRes, keyRes]) {
        assert.equal(res.status, 403, JSON.stringify(res.body));
        assert.ok(res.body.detail.includes('admin:users'), res.body.detail);
      }
      assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(target.id), [secret], 'the secret stays');
      assert.equal((await server.gatehouse.storage.apiKeys.findById(key.body.id))!.revokedAt, null, 'the key stays live');
    });

    it('decides whether a user’s email is new on the email it writes over: a change that meets another of the email is decided again, and never unverifies what that one verified', async (t) => {
      const user = await server.user(`moving-${Date.now()}@example.com`, 'correct horse battery');
      const email = `moved-${Date.now()}@example.com`;
      // The first change read the old email, so the address it sets is new to it, and unverified.
      const held = holdCall(t, server.gatehouse.storage.users, 'update', user.id, 1);
      const moved = api('PATCH', `/users/${user.id}`, clientsAndUsers, { email });
      await held.reached;
      const verified = await api('PATCH', `/users/${user.id}`, clientsAndUsers, { email, email_verified: true });
      assert.deepEqual([verified.status, verified.body.email_verified], [200, true], JSON.stringify(verified.body));
      held.release();
      const res = await moved;
      t.mock.restoreAll();
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual([res.body.email, res.body.email_verified], [email, true], 'the address was no longer new when written');
      assert.equal((await server.gatehouse.storage.users.findById(user.id))!.emailVerified, true);
    });

    it('answers 409, changing nothing, when concurrent changes keep changing the user’s email', async (t) => {
      const user = await server.user(`restless-${Date.now()}@example.com`, 'correct horse battery');
      const users = server.gatehouse.storage.users;
      const update = users.update.bind(users);
      let moves = 0;
      // Every write meets a change of the user's email, made just before it.
      t.mock.method(users, 'update', async (...args: Parameters<typeof update>) => {
        await update(args[0], { email: `restless-${Date.now()}-${++moves}@example.com` }, server.gatehouse.clock());
        return update(...args);
      });
      const res = await api('PATCH', `/users/${user.id}`, clientsAndUsers, { name: 'Renamed', email_verified: true });
      t.mock.restoreAll();
      assert.equal(res.status, 409, JSON.stringify(res.body));
      assert.match(res.body.detail, /changed meanwhile/);
      const stored = (await users.findById(user.id))!;
      assert.deepEqual([stored.name, stored.emailVerified], ['', false], 'neither the name nor the verification landed');
    });

    it('answers two DELETEs of one client, secret, API key or user 204 and 404, never 500, however they interleave', async (t) => {
      // One held between its check and its delete while the other deletes.
      const target = await plainClient('Deleted twice');
      const held = holdCall(t, server.gatehouse.storage.clients, 'delete', target.id, 1);
      const first = api('DELETE', `/clients/${target.id}`, clientsOnly);
      await held.reached;
      const second = await api('DELETE', `/clients/${target.id}`, clientsOnly);
      held.release();
      assert.deepEqual([(await first).status, second.status], [404, 204]);
      t.mock.restoreAll();

      // Sent at once, several of each.
      const burst = async (path: string, authorization = clientsOnly) => {
        const answers = await Promise.all(Array.from({ length: 6 }, () => api('DELETE', path, authorization)));
        assert.deepEqual(answers.map((answer) => answer.status).sort(), [204, 404, 404, 404, 404, 404], `${path}: ${JSON.stringify(answers.map((answer) => answer.body))}`);
      };
      const client = await plainClient('Deleted at once');
      const key = await api('POST', `/clients/${client.id}/api-keys`, clientsOnly, { name: 'Script' });
      const [secret] = await server.gatehouse.storage.clients.listSecrets(client.id);
      await burst(`/clients/${client.id}/secrets/${secret!.id}`);
      await burst(`/clients/${client.id}/api-keys/${key.body.id}`);
      await burst(`/clients/${client.id}`);

      // A user deleted while their applications are: each thing goes once, and nothing fails.
      for (let round = 0; round < 5; round++) {
        const owner = await server.user(`owner-${round}-${Date.now()}@example.com`, 'correct horse battery');
        const apps = await Promise.all(['One', 'Two', 'Three'].map((name) => server.client({ name, ownerUserId: owner.id })));
        const answers = await Promise.all([
          ...apps.flatMap((app) => [api('DELETE', `/clients/${app.id}`, clientsAndUsers), api('DELETE', `/clients/${app.id}`, clientsAndUsers)]),
          api('DELETE', `/users/${owner.id}`, clientsAndUsers),
          api('DELETE', `/users/${owner.id}`, clientsAndUsers),
        ]);
        const statuses = answers.map((answer) => answer.status);
        assert.ok(statuses.every((status) => status === 204 || status === 404), JSON.stringify(answers));
        assert.deepEqual(statuses.slice(-2).sort(), [204, 404], 'the user was deleted once');
        for (let i = 0; i < apps.length; i++) assert.ok(statuses.slice(2 * i, 2 * i + 2).filter((status) => status === 204).length <= 1, 'each application at most once');
        assert.equal(await server.gatehouse.storage.users.findById(owner.id), undefined);
        for (const app of apps) assert.equal(await server.gatehouse.storage.clients.find(app.id), undefined);
      }

      const user = await server.user(`twice-${Date.now()}@example.com`, 'correct horse battery');
      for (const name of ['Portal app 1', 'Portal app 2']) await server.client({ name, ownerUserId: user.id });
      await burst(`/users/${user.id}`, clientsAndUsers);
      assert.equal(await server.gatehouse.storage.users.findById(user.id), undefined);
      assert.deepEqual(await server.gatehouse.storage.clients.listForOwner(user.id), []);
    });
  });
}
