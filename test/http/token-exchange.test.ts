import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import pg from 'pg';
import { updateClient } from '../../src/core/applications.ts';
import { MAX_ACTOR_DEPTH } from '../../src/core/grants/token-exchange.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

type Client = { id: string; secret: string };

/**
 * Every table but the audit log, as sorted rows: what a refused request must leave as it was.
 * API keys' last-use times are left out: they record that a valid key was presented.
 */
async function storedState(server: TestServer): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  const add = (table: string, rows: Record<string, unknown>[]) =>
    state.set(
      table,
      rows
        .map(({ last_used_at: _lastUse, ...row }) => JSON.stringify(row))
        .sort()
        .join('\n'),
    );
  if (server.database.databaseUrl === undefined) {
    const db = new DatabaseSync(join(server.database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'audit_events'").all() as { name: string }[];
      for (const { name } of tables) add(name, db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[]);
    } finally {
      db.close();
    }
    return state;
  }
  const client = new pg.Client({ connectionString: server.database.databaseUrl });
  await client.connect();
  try {
    const tables = await client.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'audit_events'");
    for (const { table_name: name } of tables.rows) add(name, (await client.query(`SELECT * FROM "${name}"`)).rows);
  } finally {
    await client.end();
  }
  return state;
}

for (const dialect of DIALECTS) {
  describe(`token exchange (RFC 8693) at the token endpoint (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let admin: Client;
    let viewer: Client;
    let firstParty: Client;
    let backOffice: Client;
    let relay: Client;
    let userCount = 0;

    before(async () => {
      server = await startTestServer(dialect, { background: false });
      admin = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:users', 'admin:clients'], isAdmin: true });
      viewer = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password', EXCHANGE], scopes: ['objects:read', 'model:read', 'model:write', 'bcf:read'] });
      firstParty = await server.client({ name: 'First party', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'objects:download', 'model:read'] });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'objects:download', 'model:read'], allowImpersonation: true });
      relay = await server.client({ name: 'Relay', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read'], allowImpersonation: true });
    });
    after(() => server.close());

    const token = (client: Client, body: Record<string, string>) => post(`${server.url}/token`, body, { headers: { authorization: basic(client.id, client.secret) } });
    const clientToken = async (client: Client, scope?: string): Promise<string> => {
      const res = await token(client, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token;
    };
    /** A fresh user, so that disabling or deleting one leaves the other tests alone. */
    const newUser = async () => {
      const credentials = { email: `user${++userCount}@example.com`, password: 'correct horse battery staple' };
      return { ...credentials, id: (await server.user(credentials.email, credentials.password)).id };
    };
    const userToken = async (user: { email: string; password: string }, client = firstParty, scope = 'objects:read model:read'): Promise<string> => {
      const res = await token(client, { grant_type: 'password', username: user.email, password: user.password, scope });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token;
    };
    const delegate = async (client: Client, subject: string, extra: Record<string, string> = {}) =>
      token(client, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token: await clientToken(client), actor_token_type: ACCESS_TOKEN, ...extra });
    const projectExchange = (client: Client, subject: string, extra: Record<string, string>) =>
      token(client, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, ...extra });
    /** Whether introspection, asked by the client the token was issued to, finds the token active. */
    const active = async (client: Client, accessToken: string) => (await post(`${server.url}/introspect`, { token: accessToken }, { headers: { authorization: basic(client.id, client.secret) } })).body.active as boolean;
    const adminCall = async (method: string, path: string) => {
      const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${await clientToken(admin)}` } });
      assert.ok(response.status < 300, `${method} ${path}: ${response.status} ${await response.text()}`);
    };
    const successes = async () => {
      await server.gatehouse.audit.flush();
      const events = await server.gatehouse.storage.audit.query({ limit: 10_000 });
      return events.filter((e) => e.outcome === 'success' && (e.kind === 'token.exchanged' || e.kind === 'project_token.issued')).length;
    };

    /** Sends a request that must be refused with `status` and `error`, and checks it issued, recorded and stored nothing. */
    const assertRefusedUnchanged = async (send: () => Promise<{ status: number; body: any; headers: Headers }>, status: number, error: string) => {
      const stateBefore = await storedState(server);
      const successesBefore = await successes();
      const res = await send();
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal(res.body.error, error, JSON.stringify(res.body));
      assert.equal(typeof res.body.error_description, 'string');
      assert.equal(res.body.access_token, undefined);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.deepEqual(await storedState(server), stateBefore, 'nothing stored changed');
      assert.equal(await successes(), successesBefore, 'no exchange was recorded as successful');
      return res;
    };

    describe('delegation', () => {
      it('refuses with 400 invalid_grant a subject token whose user has since been disabled, also one delegated before, and works again once enabled', async () => {
        const user = await newUser();
        const subject = await userToken(user);
        const earlier = await delegate(backOffice, subject);
        assert.equal(earlier.status, 200, JSON.stringify(earlier.body));

        await adminCall('POST', `/users/${user.id}/disable`);
        await assertRefusedUnchanged(() => delegate(backOffice, subject), 400, 'invalid_grant');
        // Re-exchanging a token delegated while the user was active would keep the access alive.
        await assertRefusedUnchanged(() => delegate(backOffice, earlier.body.access_token), 400, 'invalid_grant');
        await assertRefusedUnchanged(() => delegate(relay, earlier.body.access_token), 400, 'invalid_grant');

        await adminCall('POST', `/users/${user.id}/enable`);
        const again = await delegate(backOffice, subject);
        assert.equal(again.status, 200, JSON.stringify(again.body));
        assert.equal(decodeJwt(again.body.access_token).sub, user.id);
      });

      it('refuses with 400 invalid_grant a subject token whose user has been deleted', async () => {
        const user = await newUser();
        const subject = await userToken(user);
        await adminCall('DELETE', `/users/${user.id}`);
        await assertRefusedUnchanged(() => delegate(backOffice, subject), 400, 'invalid_grant');
      });

      it('refuses with 400 invalid_grant a subject token whose client has been deleted', async () => {
        const user = await newUser();
        const doomed = await server.client({ name: 'Doomed app', grantTypes: ['password'], scopes: ['objects:read', 'model:read'] });
        const subject = await userToken(user, doomed);
        assert.equal((await delegate(backOffice, subject)).status, 200, 'accepted while the client exists');
        await adminCall('DELETE', `/clients/${doomed.id}`);
        await assertRefusedUnchanged(() => delegate(backOffice, subject), 400, 'invalid_grant');
      });

      it('refuses with 400 invalid_grant a project token as subject token, which would shed its project binding', async () => {
        const user = await newUser();
        const own = await userToken(user, viewer, 'model:read');
        const project = await projectExchange(viewer, own, { resource: 'project:p1', scope: 'model:read' });
        assert.equal(project.status, 200, JSON.stringify(project.body));
        await assertRefusedUnchanged(() => delegate(backOffice, project.body.access_token), 400, 'invalid_grant');
      });

      it('nests the prior actor in act when the subject token was delegated already (RFC 8693 §4.1)', async () => {
        const user = await newUser();
        const first = await delegate(backOffice, await userToken(user));
        assert.equal(first.status, 200, JSON.stringify(first.body));
        assert.deepEqual(decodeJwt(first.body.access_token).act, { sub: backOffice.id, client_id: backOffice.id });

        const second = await delegate(relay, first.body.access_token, { scope: 'model:read' });
        assert.equal(second.status, 200, JSON.stringify(second.body));
        const claims = decodeJwt(second.body.access_token);
        assert.equal(claims.sub, user.id);
        assert.equal(claims.client_id, relay.id);
        assert.equal(claims.scope, 'model:read');
        assert.deepEqual(claims.act, { sub: relay.id, client_id: relay.id, act: { sub: backOffice.id, client_id: backOffice.id } });

        // A project token derived from a delegated token keeps the whole chain.
        const project = await projectExchange(relay, second.body.access_token, { audience: 'project:p9' });
        assert.equal(project.status, 200, JSON.stringify(project.body));
        assert.deepEqual(decodeJwt(project.body.access_token).act, claims.act);
      });

      it('ends a token delegated from one another client acted with, and the project token made with it, while that client may not act for users and once it is deleted, as it ends that token', async () => {
        const earlier = await server.client({ name: 'Earlier actor', grantTypes: ['client_credentials', EXCHANGE], scopes: ['objects:read', 'model:read'], allowImpersonation: true });
        const first = (await delegate(earlier, await userToken(await newUser()))).body.access_token as string;
        const second = await delegate(relay, first, { scope: 'model:read' });
        assert.equal(second.status, 200, JSON.stringify(second.body));
        const project = await projectExchange(relay, second.body.access_token, { audience: 'project:p9' });
        assert.equal(project.status, 200, JSON.stringify(project.body));
        const derived = [['the token delegated from it', second.body.access_token], ['the project token made with that', project.body.access_token]] as const;
        const assertDerived = async (expected: boolean, when: string) => {
          for (const [what, token] of derived) assert.equal(await active(relay, token), expected, `${what}, ${when}`);
        };
        await assertDerived(true, 'at first');

        await updateClient(server.gatehouse, earlier.id, { allowImpersonation: false }, server.gatehouse.clock());
        assert.equal(await active(earlier, first), false, 'the earlier delegated token, its privilege taken away');
        await assertDerived(false, 'its privilege taken away');
        await assertRefusedUnchanged(() => delegate(backOffice, second.body.access_token, { scope: 'model:read' }), 400, 'invalid_grant');

        await updateClient(server.gatehouse, earlier.id, { allowImpersonation: true }, server.gatehouse.clock());
        await assertDerived(true, 'its privilege given back');
        await adminCall('DELETE', `/clients/${earlier.id}`);
        await assertDerived(false, 'the earlier actor deleted');
        assert.equal(await active(relay, await clientToken(relay)), true, "the client's own token acts for no one and goes on");
      });

      it(`refuses with 400 invalid_grant to delegate past ${MAX_ACTOR_DEPTH} actors, so tokens cannot grow without end`, async () => {
        const user = await newUser();
        let subject = await userToken(user);
        for (let depth = 1; depth <= MAX_ACTOR_DEPTH; depth++) {
          const res = await delegate(depth % 2 ? backOffice : relay, subject, { scope: 'model:read' });
          assert.equal(res.status, 200, `delegation ${depth}: ${JSON.stringify(res.body)}`);
          subject = res.body.access_token;
          let actors = 0;
          for (let act = decodeJwt(subject).act as { act?: unknown } | undefined; act; act = act.act as { act?: unknown } | undefined) actors++;
          assert.equal(actors, depth);
        }
        await assertRefusedUnchanged(() => delegate(backOffice, subject, { scope: 'model:read' }), 400, 'invalid_grant');
      });

      it('issues a delegated token that expires no later than its subject token', async () => {
        const user = await newUser();
        const subject = await userToken(user);
        // A full lifetime from now would end after the subject token, which was issued earlier.
        await new Promise((resolve) => setTimeout(resolve, 1100));
        const first = await delegate(backOffice, subject);
        const second = await delegate(relay, first.body.access_token);
        const subjectExp = decodeJwt(subject).exp!;
        for (const res of [first, second]) {
          assert.equal(res.status, 200, JSON.stringify(res.body));
          const claims = decodeJwt(res.body.access_token);
          assert.equal(claims.exp, subjectExp);
          assert.equal(res.body.expires_in, subjectExp - claims.iat!);
        }
      });
    });

    describe('project tokens', () => {
      it('refuses a scope the subject token does not hold with 400 invalid_scope', async () => {
        const subject = await clientToken(viewer, 'model:read');
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:42', scope: 'model:write' }), 400, 'invalid_scope');
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:42', scope: 'objects:read' }), 400, 'invalid_scope');
        // Nothing requested, and nothing the subject holds may go into a project token.
        const holdsNoProjectScope = await clientToken(viewer, 'objects:read');
        await assertRefusedUnchanged(() => projectExchange(viewer, holdsNoProjectScope, { resource: 'project:42' }), 400, 'invalid_scope');
      });

      it('refuses a project token as subject token with 400 invalid_grant', async () => {
        const res = await projectExchange(viewer, await clientToken(viewer), { resource: 'project:42', scope: 'model:read' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        await assertRefusedUnchanged(() => projectExchange(viewer, res.body.access_token, { resource: 'project:42', scope: 'model:read' }), 400, 'invalid_grant');
        await assertRefusedUnchanged(() => projectExchange(viewer, res.body.access_token, { resource: 'project:43' }), 400, 'invalid_grant');
      });

      it('refuses a subject token whose user has since been disabled with 400 invalid_grant', async () => {
        const user = await newUser();
        const subject = await userToken(user, viewer, 'model:read');
        await adminCall('POST', `/users/${user.id}/disable`);
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:42', scope: 'model:read' }), 400, 'invalid_grant');
      });

      it('answers 400 invalid_target for a resource or audience that names no project, or a malformed one', async () => {
        const subject = await clientToken(viewer);
        // An empty one is one left out (RFC 6749 §3.2), not a target: see the token endpoint's tests.
        for (const target of ['https://api.example.com', 'urn:example:other', 'project:', 'project:a b', `project:${'x'.repeat(129)}`, `${server.url}/elsewhere/1`]) {
          for (const name of ['resource', 'audience']) {
            await assertRefusedUnchanged(() => projectExchange(viewer, subject, { [name]: target, scope: 'model:read' }), 400, 'invalid_target');
          }
        }
        // A delegation asking for a target is no different.
        const userSubject = await userToken(await newUser());
        await assertRefusedUnchanged(() => delegate(backOffice, userSubject, { audience: 'https://api.example.com' }), 400, 'invalid_target');
      });

      it('refuses resource and audience naming different projects with 400 invalid_target, and accepts both naming the same one', async () => {
        const subject = await clientToken(viewer);
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:1', audience: 'project:2', scope: 'model:read' }), 400, 'invalid_target');
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: `${server.url}/projects/1`, audience: 'project:2', scope: 'model:read' }), 400, 'invalid_target');
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:1', audience: 'https://api.example.com', scope: 'model:read' }), 400, 'invalid_target');

        const same = await projectExchange(viewer, subject, { resource: `${server.url}/projects/1`, audience: 'project:1', scope: 'model:read' });
        assert.equal(same.status, 200, JSON.stringify(same.body));
        assert.equal(decodeJwt(same.body.access_token).project, '1');
      });

      it('answers 400 invalid_target, not invalid_request, to resource or audience sent twice (RFC 8693 §2.1 lets a client ask for several targets; Gatehouse issues for one)', async () => {
        const subject = await clientToken(viewer);
        const twice = (name: string, first: string, second: string, json = false) => {
          const pairs: [string, string][] = [['grant_type', EXCHANGE], ['subject_token', subject], ['subject_token_type', ACCESS_TOKEN], ['scope', 'model:read'], [name, first], [name, second]];
          const body = json ? JSON.stringify({ ...Object.fromEntries(pairs), [name]: [first, second] }) : new URLSearchParams(pairs).toString();
          return post(`${server.url}/token`, body, { json, headers: { authorization: basic(viewer.id, viewer.secret) } });
        };
        for (const name of ['resource', 'audience']) {
          await assertRefusedUnchanged(() => twice(name, 'project:1', 'project:2'), 400, 'invalid_target');
          await assertRefusedUnchanged(() => twice(name, 'project:1', 'project:1'), 400, 'invalid_target');
          await assertRefusedUnchanged(() => twice(name, 'project:1', 'project:2', true), 400, 'invalid_target');
        }
        // Any other parameter sent twice is still malformed (RFC 6749 §3.2).
        const scopeTwice = new URLSearchParams([['grant_type', EXCHANGE], ['subject_token', subject], ['subject_token_type', ACCESS_TOKEN], ['resource', 'project:1'], ['scope', 'model:read'], ['scope', 'model:read']]);
        await assertRefusedUnchanged(() => post(`${server.url}/token`, scopeTwice.toString(), { headers: { authorization: basic(viewer.id, viewer.secret) } }), 400, 'invalid_request');
      });

      it('refuses actor_token_type without actor_token with 400 invalid_request, for every kind of exchange (RFC 8693 §2.1: "MUST NOT be included otherwise")', async () => {
        const subject = await clientToken(viewer);
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:42', scope: 'model:read', actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request');
        const user = await newUser();
        await assertRefusedUnchanged(() => token(backOffice, { grant_type: EXCHANGE, requested_subject: user.id, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request');
        await assertRefusedUnchanged(() => token(backOffice, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request');
      });

      it('refuses with 400 invalid_request a parameter the exchange would leave out: requested_subject or actor_token with a project target, actor_token with requested_subject', async () => {
        const subject = await clientToken(viewer);
        const user = await newUser();
        await assertRefusedUnchanged(() => projectExchange(viewer, subject, { resource: 'project:42', scope: 'model:read', requested_subject: user.id }), 400, 'invalid_request');
        await assertRefusedUnchanged(() => projectExchange(backOffice, subject, { audience: 'project:42', requested_subject: user.id }), 400, 'invalid_request');
        const own = await clientToken(backOffice);
        await assertRefusedUnchanged(() => projectExchange(backOffice, own, { resource: 'project:42', actor_token: own, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request');
        await assertRefusedUnchanged(() => token(backOffice, { grant_type: EXCHANGE, requested_subject: user.id, actor_token: own, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request');
        // Without them, the same requests are answered.
        assert.equal((await projectExchange(backOffice, own, { resource: 'project:42' })).status, 200);
        assert.equal((await token(backOffice, { grant_type: EXCHANGE, requested_subject: user.id })).status, 200);
      });

      it('keeps answering 403 insufficient_scope at POST /projects/{id}/access-tokens, a protected resource (RFC 6750)', async () => {
        const call = (authorization: string, scopes: string[]) =>
          fetch(`${server.url}/projects/p1/access-tokens`, {
            method: 'POST',
            headers: { authorization, 'content-type': 'application/json' },
            body: JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes }),
          });
        const lacking = await call(`Bearer ${await clientToken(viewer, 'model:read')}`, ['model:write']);
        assert.equal(lacking.status, 403);
        assert.equal(((await lacking.json()) as { error: string }).error, 'insufficient_scope');
        const minted = await call(`Bearer ${await clientToken(viewer)}`, ['model:read']);
        assert.equal(minted.status, 201);
        const fromProject = await call(`Bearer ${((await minted.json()) as { access_token: string }).access_token}`, ['model:read']);
        assert.equal(fromProject.status, 403);
        assert.equal(((await fromProject.json()) as { error: string }).error, 'insufficient_scope');
      });
    });

    describe('impersonation', () => {
      it('refuses with 400 invalid_grant a user deleted while the request was checked, and issues nor stores anything for them', async (t: TestContext) => {
        const user = await newUser();
        const users = server.gatehouse.storage.users;
        const findById = users.findById.bind(users);
        t.mock.method(users, 'findById', async (id: string) => {
          const found = await findById(id);
          if (id === user.id && found) await users.delete(id);
          return found;
        });
        const successesBefore = await successes();
        const res = await token(backOffice, { grant_type: EXCHANGE, requested_subject: user.id });
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.equal(res.body.error, 'invalid_grant');
        assert.equal(res.body.access_token, undefined);
        assert.deepEqual(await server.gatehouse.storage.grants.list({ userId: user.id }), []);
        assert.equal(await successes(), successesBefore, 'no exchange was recorded as successful');
      });
    });
  });
}
