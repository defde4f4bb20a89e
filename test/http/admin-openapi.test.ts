import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { DIALECTS, tableSnapshots } from '../support/databases.ts';
import { answerViolations, schemaViolations, type Answer, type OpenApi } from '../support/openapi-check.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * The admin API does what its OpenAPI document says: every operation the document lists is called,
 * on its success paths and on every failure its shape allows, and every answer must be one the
 * operation documents, with the documented content type and a body that fits the documented
 * schema. Every refused request must leave the database as it was.
 */

type Scope = 'admin:clients' | 'admin:users' | 'admin:tokens';
const ADMIN_SCOPES: Scope[] = ['admin:clients', 'admin:users', 'admin:tokens'];
const PREFIX = '/admin/v1';

/** One request of the walk, and the status it must get. */
interface Call {
  label: string;
  method: string;
  /** As the document writes it, with `{name}` for path parameters. */
  path: string;
  /** Values of the path parameters; `query` is appended as given. */
  params?: Record<string, string>;
  query?: string;
  /** Authorization header; the token of every admin scope when left out, none when null. */
  auth?: string | null;
  body?: unknown;
  /** Sent as is, with `contentType` (application/json when not given). */
  raw?: string;
  contentType?: string;
  expect: number;
}

// Documented answers that only concurrent requests can produce: admin-concurrency.test.ts has them.
const RACES: Record<string, number[]> = {
  updateClient: [409],
  deleteClient: [409],
  deleteClientSecret: [409],
  createApiKey: [409],
  revokeApiKey: [409],
  rotateSigningKeys: [409],
  withdrawSigningKey: [409],
};

// Answered only while the database does not answer: the walk of an outage below provokes it (PostgreSQL).
const OUTAGE = 503;

/** A body each operation accepts, for the failures that spoil one thing of it. */
const VALID_BODIES: Record<string, unknown> = {
  createClient: { name: 'Never stored' },
  updateClient: { name: 'Never renamed' },
  addClientSecret: { expires_at: null },
  createApiKey: { name: 'Never stored' },
  createUser: { email: 'never@example.com', password: 'a long enough password' },
  resetUserPassword: { password: 'never set password' },
  updateUser: { name: 'Never renamed', email: 'never-moved@example.com', email_verified: true },
  rotateSigningKeys: { force: false },
};

for (const dialect of DIALECTS) {
  describe(`admin API as its OpenAPI document says (${dialect})`, { timeout: 300_000 }, () => {
    let server: TestServer;
    let document: OpenApi;
    const auth: Record<string, string> = {};
    let mobile: { id: string; secret: string };

    const token = async (id: string, secret: string, scope?: string): Promise<string> => {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, { headers: { authorization: basic(id, secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return `Bearer ${res.body.access_token}`;
    };

    const send = async (call: Call): Promise<Answer & { body: any }> => {
      const path = call.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(call.params?.[name] ?? assert.fail(`${call.label}: no value for ${name}`)));
      const headers: Record<string, string> = {};
      const authorization = call.auth === undefined ? auth.all : call.auth;
      if (authorization) headers.authorization = authorization;
      let body: string | undefined;
      if (call.raw !== undefined || call.body !== undefined) {
        headers['content-type'] = call.contentType ?? 'application/json';
        body = call.raw ?? JSON.stringify(call.body);
      }
      const response = await fetch(`${server.url}${PREFIX}${path}${call.query ? `?${call.query}` : ''}`, { method: call.method, headers, body });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = text;
      }
      return { status: response.status, contentType: response.headers.get('content-type'), headers: response.headers, text, body: parsed };
    };

    /** A client, with a secret and an API key, and a signed-in user, that refused requests aim at: a hole in a check would show as a change to them. */
    const bystanders = async () => {
      const client = await server.client({ name: 'Bystander', grantTypes: ['client_credentials'], scopes: ['objects:read', 'model:read'], defaultScopes: ['model:read'] });
      const record = (await server.gatehouse.storage.clients.find(client.id))!;
      const key = (await server.gatehouse.apiKeys.create(record, { name: 'Bystander key' }, server.gatehouse.clock())).key;
      const secretId = (await server.gatehouse.storage.clients.listSecrets(client.id))[0]!.id;
      const user = await server.user(`bystander-${client.id}@example.com`, 'a long enough password');
      const grantId = await grantOf(user.email);
      const now = server.gatehouse.clock();
      await server.gatehouse.storage.sessions.create({ digest: `bystander-${user.id}`, sid: `bystander-${user.id}`, userId: user.id, authTime: now, createdAt: now, expiresAt: now + 3600, address: null, device: null, lastUsedAt: null });
      // The next ID-token key: withdrawing the active access key would end the walk's own tokens.
      const kid = (await server.gatehouse.storage.keys.listAll()).find((k) => k.use === 'id' && k.state === 'next')!.kid;
      return { clientId: client.id, secretId, keyId: key.id, userId: user.id, sid: `bystander-${user.id}`, grantId, kid };
    };

    /** Signs `email` in through the password grant; the id of the grant that made. */
    const grantOf = async (email: string): Promise<string> => {
      const res = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: email, password: 'a long enough password' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const user = (await server.gatehouse.storage.users.findByEmail(email))!;
      return (await server.gatehouse.storage.grants.list({ userId: user.id, clientId: mobile.id }))[0]!.id;
    };

    before(async () => {
      server = await startTestServer(dialect, { background: false });
      const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ADMIN_SCOPES, isAdmin: true });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'], firstParty: true });
      auth.all = await token(admin.id, admin.secret);
      for (const scope of ADMIN_SCOPES) auth[`without ${scope}`] = await token(admin.id, admin.secret, ADMIN_SCOPES.filter((s) => s !== scope).join(' '));
      const res = await fetch(`${server.url}${PREFIX}/openapi.json`);
      document = (await res.json()) as OpenApi;
    });
    after(() => server.close());

    /** The requests that succeed, or fail in ways only this operation can, for each operation. */
    const OWN_CALLS: Record<string, () => Promise<Call[]>> = {
      async listClients() {
        await server.client({ name: 'Paged A' });
        await server.client({ name: 'Paged B' });
        const first = await send({ label: '', method: 'GET', path: '/clients', query: 'limit=1', expect: 200 });
        const all = await send({ label: '', method: 'GET', path: '/clients', query: 'limit=1000', expect: 200 });
        const last = all.body.clients.at(-1);
        // The cursor of the last record, as the list writes its cursors (its name and filters, then the position): an empty last page.
        const list = Buffer.from(first.body.next_cursor, 'base64url').toString().split(':').slice(0, 2).join(':');
        const lastCursor = Buffer.from(`${list}:${Date.parse(last.created_at) / 1000}:${last.client_id}`).toString('base64url');
        return [
          { label: 'the first page', method: 'GET', path: '/clients', expect: 200 },
          { label: 'one record', method: 'GET', path: '/clients', query: 'limit=1', expect: 200 },
          { label: 'the largest page', method: 'GET', path: '/clients', query: 'limit=1000', expect: 200 },
          { label: 'the next page', method: 'GET', path: '/clients', query: `limit=1&cursor=${first.body.next_cursor}`, expect: 200 },
          { label: 'after the last', method: 'GET', path: '/clients', query: `cursor=${lastCursor}`, expect: 200 },
          { label: 'a cursor not handed out', method: 'GET', path: '/clients', query: 'cursor=nonsense', expect: 400 },
        ];
      },
      async createClient() {
        return [
          { label: 'a confidential client', method: 'POST', path: '/clients', body: { name: 'Walked', scopes: ['objects:read'] }, expect: 201 },
          { label: 'a public client', method: 'POST', path: '/clients', body: { name: 'Walked SPA', type: 'public', grant_types: ['authorization_code'], redirect_uris: ['https://spa.example/cb'] }, expect: 201 },
          { label: 'an unknown scope', method: 'POST', path: '/clients', body: { name: 'Walked', scopes: ['no:such:scope'] }, expect: 400 },
          { label: 'an admin client beyond the token', method: 'POST', path: '/clients', auth: auth['without admin:users'], body: { name: 'Walked admin', admin: true, scopes: ['admin:users'] }, expect: 403 },
        ];
      },
      async getClient() {
        return [{ label: 'a client', method: 'GET', path: '/clients/{clientId}', params: { clientId: (await server.client({ name: 'Shown' })).id }, expect: 200 }];
      },
      async updateClient() {
        const { id } = await server.client({ name: 'Changed' });
        const spa = await server.client({ name: 'Made confidential', type: 'public', grantTypes: ['authorization_code'], redirectUris: ['https://spa.example/cb'] });
        return [
          { label: 'a new name', method: 'PATCH', path: '/clients/{clientId}', params: { clientId: id }, body: { name: 'Renamed' }, expect: 200 },
          { label: 'nothing', method: 'PATCH', path: '/clients/{clientId}', params: { clientId: id }, body: {}, expect: 200 },
          { label: 'made confidential: a first secret', method: 'PATCH', path: '/clients/{clientId}', params: { clientId: spa.id }, body: { type: 'confidential' }, expect: 200 },
        ];
      },
      async deleteClient() {
        const { id } = await server.client({ name: 'Deleted' });
        return [
          { label: 'a client', method: 'DELETE', path: '/clients/{clientId}', params: { clientId: id }, expect: 204 },
          { label: 'the same client again', method: 'DELETE', path: '/clients/{clientId}', params: { clientId: id }, expect: 404 },
        ];
      },
      async listClientSecrets() {
        return [{ label: 'the secrets', method: 'GET', path: '/clients/{clientId}/secrets', params: { clientId: (await server.client({ name: 'With secrets' })).id }, expect: 200 }];
      },
      async addClientSecret() {
        const { id } = await server.client({ name: 'Rotating' });
        const spa = await server.client({ name: 'Public', type: 'public', grantTypes: ['authorization_code'], redirectUris: ['https://spa.example/cb'] });
        return [
          { label: 'no body', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: id }, expect: 201 },
          { label: 'an empty body', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: id }, raw: '', expect: 201 },
          { label: 'an expiry', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: id }, body: { expires_at: '2999-01-01T00:00:00Z' }, expect: 201 },
          { label: 'no expiry', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: id }, body: { expires_at: null }, expect: 201 },
          { label: 'a past expiry', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: id }, body: { expires_at: '2000-01-01T00:00:00Z' }, expect: 400 },
          { label: 'a public client', method: 'POST', path: '/clients/{clientId}/secrets', params: { clientId: spa.id }, expect: 409 },
        ];
      },
      async deleteClientSecret() {
        const { id } = await server.client({ name: 'Losing a secret' });
        const secretId = (await server.gatehouse.storage.clients.listSecrets(id))[0]!.id;
        return [
          { label: 'a secret', method: 'DELETE', path: '/clients/{clientId}/secrets/{secretId}', params: { clientId: id, secretId }, expect: 204 },
          { label: 'the same secret again', method: 'DELETE', path: '/clients/{clientId}/secrets/{secretId}', params: { clientId: id, secretId }, expect: 404 },
        ];
      },
      async listApiKeys() {
        const { clientId } = await bystanders();
        return [{ label: 'the keys', method: 'GET', path: '/clients/{clientId}/api-keys', params: { clientId }, expect: 200 }];
      },
      async createApiKey() {
        const { id } = await server.client({ name: 'Keyed', scopes: ['objects:read'], defaultScopes: ['objects:read'] });
        return [
          { label: 'a key', method: 'POST', path: '/clients/{clientId}/api-keys', params: { clientId: id }, body: { name: 'Script' }, expect: 201 },
          { label: 'a key with scopes and an expiry', method: 'POST', path: '/clients/{clientId}/api-keys', params: { clientId: id }, body: { name: 'Script', scopes: ['objects:read'], expires_at: '2999-01-01T00:00:00Z' }, expect: 201 },
          { label: 'a scope the client lacks', method: 'POST', path: '/clients/{clientId}/api-keys', params: { clientId: id }, body: { name: 'Script', scopes: ['model:write'] }, expect: 400 },
        ];
      },
      async revokeApiKey() {
        const { clientId, keyId } = await bystanders();
        return [
          { label: 'a key', method: 'DELETE', path: '/clients/{clientId}/api-keys/{keyId}', params: { clientId, keyId }, expect: 204 },
          { label: 'the same key again', method: 'DELETE', path: '/clients/{clientId}/api-keys/{keyId}', params: { clientId, keyId }, expect: 404 },
        ];
      },
      async listUsers() {
        await server.user('paged-a@example.com', 'a long enough password');
        await server.user('paged-b@example.com', 'a long enough password');
        const first = await send({ label: '', method: 'GET', path: '/users', query: 'limit=1', expect: 200 });
        return [
          { label: 'the first page', method: 'GET', path: '/users', expect: 200 },
          { label: 'the next page', method: 'GET', path: '/users', query: `limit=1&cursor=${first.body.next_cursor}`, expect: 200 },
          { label: 'an email', method: 'GET', path: '/users', query: `email=${encodeURIComponent('PAGED-A@example.com')}`, expect: 200 },
          { label: 'an email no user has', method: 'GET', path: '/users', query: 'email=nobody%40example.com&limit=1', expect: 200 },
        ];
      },
      async createUser() {
        await server.user('taken@example.com', 'a long enough password');
        return [
          { label: 'a user', method: 'POST', path: '/users', body: { email: 'walked@example.com', password: 'a long enough password', name: 'Walked' }, expect: 201 },
          { label: 'a taken email', method: 'POST', path: '/users', body: { email: 'taken@example.com', password: 'a long enough password' }, expect: 409 },
          { label: 'a bad email', method: 'POST', path: '/users', body: { email: 'not an email', password: 'a long enough password' }, expect: 400 },
        ];
      },
      async getUser() {
        return [{ label: 'a user', method: 'GET', path: '/users/{userId}', params: { userId: (await server.user('shown@example.com', 'a long enough password')).id }, expect: 200 }];
      },
      async updateUser() {
        const { id } = await server.user('changed@example.com', 'a long enough password');
        await server.user('taken-by-another@example.com', 'a long enough password');
        return [
          { label: 'a new name and email', method: 'PATCH', path: '/users/{userId}', params: { userId: id }, body: { name: 'Changed', email: 'changed.again@example.com' }, expect: 200 },
          { label: 'a verified email', method: 'PATCH', path: '/users/{userId}', params: { userId: id }, body: { email_verified: true }, expect: 200 },
          { label: 'nothing', method: 'PATCH', path: '/users/{userId}', params: { userId: id }, body: {}, expect: 200 },
          { label: 'a bad email', method: 'PATCH', path: '/users/{userId}', params: { userId: id }, body: { email: 'not an email' }, expect: 400 },
          { label: 'another user’s email', method: 'PATCH', path: '/users/{userId}', params: { userId: id }, body: { email: 'Taken-By-Another@example.com', email_verified: true }, expect: 409 },
        ];
      },
      async signOutUser() {
        const { id } = await server.user('signed-out@example.com', 'a long enough password');
        const now = server.gatehouse.clock();
        await server.gatehouse.storage.sessions.create({ digest: `walk-${id}`, sid: `walk-${id}`, userId: id, authTime: now, createdAt: now, expiresAt: now + 3600, address: null, device: null, lastUsedAt: null });
        return [
          { label: 'a signed-in user', method: 'POST', path: '/users/{userId}/sign-out', params: { userId: id }, expect: 204 },
          { label: 'the same user again', method: 'POST', path: '/users/{userId}/sign-out', params: { userId: id }, expect: 204 },
        ];
      },
      async listUserSessions() {
        const { userId } = await bystanders();
        const { id } = await server.user('never-signed-in@example.com', 'a long enough password');
        return [
          { label: 'a signed-in user', method: 'GET', path: '/users/{userId}/sessions', params: { userId }, expect: 200 },
          { label: 'a user with no session', method: 'GET', path: '/users/{userId}/sessions', params: { userId: id }, expect: 200 },
        ];
      },
      async endUserSession() {
        const { userId, sid } = await bystanders();
        const other = await bystanders();
        return [
          { label: 'another user’s session', method: 'DELETE', path: '/users/{userId}/sessions/{sid}', params: { userId, sid: other.sid }, expect: 404 },
          { label: 'a session', method: 'DELETE', path: '/users/{userId}/sessions/{sid}', params: { userId, sid }, expect: 204 },
          { label: 'the same session again', method: 'DELETE', path: '/users/{userId}/sessions/{sid}', params: { userId, sid }, expect: 404 },
        ];
      },
      async deleteUser() {
        const { id } = await server.user('deleted@example.com', 'a long enough password');
        return [
          { label: 'a user', method: 'DELETE', path: '/users/{userId}', params: { userId: id }, expect: 204 },
          { label: 'the same user again', method: 'DELETE', path: '/users/{userId}', params: { userId: id }, expect: 404 },
        ];
      },
      async disableUser() {
        const { id } = await server.user('disabled@example.com', 'a long enough password');
        return [
          { label: 'a user', method: 'POST', path: '/users/{userId}/disable', params: { userId: id }, expect: 200 },
          { label: 'the same user again', method: 'POST', path: '/users/{userId}/disable', params: { userId: id }, expect: 200 },
        ];
      },
      async enableUser() {
        const { id } = await server.user('enabled@example.com', 'a long enough password');
        return [
          { label: 'a user who is not disabled', method: 'POST', path: '/users/{userId}/enable', params: { userId: id }, expect: 200 },
          { label: 'a disabled user', method: 'POST', path: '/users/{userId}/enable', params: { userId: id }, expect: 200 },
        ];
      },
      async resetUserPassword() {
        const { id } = await server.user('reset@example.com', 'a long enough password');
        return [
          { label: 'a new password', method: 'POST', path: '/users/{userId}/password', params: { userId: id }, body: { password: 'another long password' }, expect: 204 },
          { label: 'a short password', method: 'POST', path: '/users/{userId}/password', params: { userId: id }, body: { password: 'short' }, expect: 400 },
        ];
      },
      async listGrants() {
        const { userId } = await bystanders();
        const first = await send({ label: '', method: 'GET', path: '/grants', query: 'limit=1', expect: 200 });
        assert.ok(first.body.next_cursor, 'more than one grant');
        return [
          { label: 'every grant', method: 'GET', path: '/grants', expect: 200 },
          { label: 'the next page', method: 'GET', path: '/grants', query: `limit=1&cursor=${first.body.next_cursor}`, expect: 200 },
          { label: 'a cursor not handed out', method: 'GET', path: '/grants', query: 'cursor=nonsense', expect: 400 },
          { label: 'a cursor of other filters', method: 'GET', path: '/grants', query: `user_id=${userId}&cursor=${first.body.next_cursor}`, expect: 400 },
          { label: 'a user’s', method: 'GET', path: '/grants', query: `user_id=${userId}`, expect: 200 },
          { label: 'a client’s, one', method: 'GET', path: '/grants', query: `client_id=${mobile.id}&limit=1`, expect: 200 },
          { label: 'a user’s with a client', method: 'GET', path: '/grants', query: `user_id=${userId}&client_id=${mobile.id}&limit=1000`, expect: 200 },
        ];
      },
      async revokeGrant() {
        const { grantId } = await bystanders();
        return [
          { label: 'a grant', method: 'POST', path: '/grants/{grantId}/revoke', params: { grantId }, expect: 200 },
          { label: 'the same grant again', method: 'POST', path: '/grants/{grantId}/revoke', params: { grantId }, expect: 200 },
        ];
      },
      async listSigningKeys() {
        return [{ label: 'the keys', method: 'GET', path: '/keys', expect: 200 }];
      },
      async rotateSigningKeys() {
        return [
          { label: 'a rotation of next keys published moments ago', method: 'POST', path: '/keys/rotate', expect: 409 },
          { label: 'a forced rotation', method: 'POST', path: '/keys/rotate', body: { force: true }, expect: 200 },
          { label: 'force no boolean', method: 'POST', path: '/keys/rotate', body: { force: 'yes' }, expect: 400 },
        ];
      },
      async withdrawSigningKey() {
        const { kid } = await bystanders();
        return [
          { label: 'a next key', method: 'POST', path: '/keys/{kid}/withdraw', params: { kid }, expect: 200 },
          { label: 'the same key again', method: 'POST', path: '/keys/{kid}/withdraw', params: { kid }, expect: 404 },
        ];
      },
      async listAuditEvents() {
        const first = await send({ label: '', method: 'GET', path: '/audit-events', query: 'limit=1', expect: 200 });
        return [
          { label: 'the latest', method: 'GET', path: '/audit-events', expect: 200 },
          { label: 'the next page', method: 'GET', path: '/audit-events', query: `limit=1&cursor=${first.body.next_cursor}`, expect: 200 },
          { label: 'a cursor not handed out', method: 'GET', path: '/audit-events', query: 'cursor=nonsense', expect: 400 },
          { label: 'filtered', method: 'GET', path: '/audit-events', query: `since=2000-01-01T00:00:00Z&until=${Math.floor(Date.now() / 1000) + 3600}&client_id=${mobile.id}&kind=token.issued&limit=5`, expect: 200 },
          { label: 'until before since', method: 'GET', path: '/audit-events', query: 'since=2020-01-02&until=2020-01-01', expect: 400 },
          { label: 'since no time', method: 'GET', path: '/audit-events', query: 'since=yesterday', expect: 400 },
        ];
      },
      async getOpenApiDocument() {
        return [{ label: 'the document', method: 'GET', path: '/openapi.json', auth: null, expect: 200 }];
      },
      async getReferencePage() {
        return [{ label: 'the page', method: 'GET', path: '/docs', auth: null, expect: 200 }];
      },
    };

    /** The failures every operation of its shape can meet, made from what the document says of it. */
    const shapeCalls = (method: string, path: string, op: OpenApi['paths'][string][string], params: Record<string, string>): Call[] => {
      const calls: Call[] = [];
      const base = { method, path, params };
      const scope = op.security?.flatMap((s) => Object.values(s).flat())[0] as Scope | undefined;
      const valid = VALID_BODIES[op.operationId];
      if (scope) {
        calls.push({ ...base, label: 'no token', auth: null, body: valid, expect: 401 });
        calls.push({ ...base, label: 'a token without its scope', auth: auth[`without ${scope}`], body: valid, expect: 403 });
        calls.push({ ...base, label: 'a query parameter it does not take', query: 'colour=blue', body: valid, expect: 400 });
      }
      for (const name of Object.keys(params)) {
        calls.push({ ...base, label: `an overlong ${name}`, params: { ...params, [name]: 'x'.repeat(201) }, body: valid, expect: 400 });
        calls.push({ ...base, label: `an unknown ${name}`, params: { ...params, [name]: 'no-such-id' }, body: valid, expect: 404 });
      }
      for (const parameter of (op.parameters ?? []).filter((p) => p.in === 'query') as { name: string; schema: Record<string, number | string> }[]) {
        const { type, minimum, maximum, minLength, maxLength } = parameter.schema;
        const bad = [
          ...(type === 'integer' ? ['ten', '1.5'] : []),
          ...(typeof minimum === 'number' ? [String(minimum - 1)] : []),
          ...(typeof maximum === 'number' ? [String(maximum + 1)] : []),
          ...(typeof minLength === 'number' && minLength > 0 ? [''] : []),
          ...(typeof maxLength === 'number' ? ['x'.repeat(maxLength + 1)] : []),
        ];
        for (const value of bad) calls.push({ ...base, label: `${parameter.name}=${value.slice(0, 10)}`, query: `${parameter.name}=${value}`, expect: 400 });
        calls.push({ ...base, label: `${parameter.name} twice`, query: `${parameter.name}=1&${parameter.name}=2`, expect: 400 });
      }
      if (op.requestBody) {
        const schema = (op.requestBody.content as Record<string, { schema: { $ref?: string; properties?: Record<string, { type: string | string[] }> } }>)['application/json']!.schema;
        const properties = schema.properties ?? document.components.schemas[schema.$ref?.split('/').pop() ?? '']?.properties ?? {};
        const [first, firstSchema] = Object.entries(properties)[0]!;
        const wrong = [firstSchema.type].flat().includes('string') ? 12345 : 'text';
        calls.push({ ...base, label: 'a body that is not JSON', raw: '{"', body: valid, expect: 400 });
        calls.push({ ...base, label: 'an unknown member', body: { ...(valid as object), colour: 'blue' }, expect: 400 });
        calls.push({ ...base, label: `a ${first} of the wrong type`, body: { ...(valid as object), [first]: wrong }, expect: 400 });
        calls.push({ ...base, label: 'an array for a body', body: [valid], expect: 400 });
        if (op.requestBody.required) calls.push({ ...base, label: 'no body', expect: 400 });
        calls.push({ ...base, label: 'a JSON body sent as text', raw: JSON.stringify(valid), contentType: 'text/plain', expect: 415 });
        calls.push({ ...base, label: 'a form', raw: 'name=x', contentType: 'application/x-www-form-urlencoded', expect: 415 });
        calls.push({ ...base, label: 'a body over 64 KiB', body: { ...(valid as object), [first]: 'x'.repeat(70 * 1024) }, expect: 413 });
      } else if (method !== 'GET') {
        calls.push({ ...base, label: 'a body where none is taken', body: { reason: 'none' }, expect: 400 });
        calls.push({ ...base, label: 'text where no body is taken', raw: 'none', contentType: 'text/plain', expect: 415 });
        calls.push({ ...base, label: 'a form where no body is taken', raw: 'reason=none', contentType: 'application/x-www-form-urlencoded', expect: 415 });
        calls.push({ ...base, label: 'a body over 64 KiB where none is taken', body: { reason: 'x'.repeat(70 * 1024) }, expect: 413 });
      }
      return calls;
    };

    it('answers every documented operation, on its success and failure paths, only as documented; a refused request changes nothing stored', async (t) => {
      const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path: path.slice(PREFIX.length), method: method.toUpperCase(), op })));
      assert.deepEqual(operations.map(({ op }) => op.operationId).sort(), Object.keys(OWN_CALLS).sort(), 'every documented operation has calls of its own, and no other');
      const seen = new Map<string, Set<number>>();
      const problems: string[] = [];
      // The audit log is left out: a refusal of a valid credential is audited on purpose.
      const stored = await tableSnapshots(server.database, ['audit_events']);
      t.after(() => stored.close());
      for (const { path, method, op } of operations) {
        const targets = await bystanders();
        const params = Object.fromEntries([...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => [name!, (targets as Record<string, string>)[name!]!]));
        const calls = [...(await OWN_CALLS[op.operationId]!()), ...shapeCalls(method, path, op, params)];
        for (const call of calls) {
          const label = `${op.operationId} (${method} ${path}) with ${call.label}`;
          assert.equal(call.method, method, label);
          assert.equal(call.path, path, label);
          const refused = call.expect >= 400;
          const before = refused ? await stored.take() : '';
          const answer = await send(call);
          if (answer.status !== call.expect) problems.push(`${label}: ${answer.status} where ${call.expect} was expected: ${answer.text.slice(0, 200)}`);
          for (const violation of answerViolations(document, method, `${PREFIX}${path}`, answer)) problems.push(`${label}: ${violation}`);
          if (refused && answer.status >= 400 && (await stored.take()) !== before) problems.push(`${label}: refused with ${answer.status}, yet the database changed`);
          const statuses = seen.get(op.operationId) ?? new Set();
          seen.set(op.operationId, statuses.add(answer.status));
        }
        for (const status of Object.keys(op.responses).map(Number)) {
          if (!seen.get(op.operationId)!.has(status) && !RACES[op.operationId]?.includes(status) && status !== OUTAGE) problems.push(`${op.operationId}: the documented ${status} never came back in the walk`);
        }
      }
      assert.deepEqual(problems, []);
    });

    it('has a checker that finds what is wrong with an answer', () => {
      const user = { id: 'u1', email: 'a@example.com', name: '', email_verified: false, disabled: false, disabled_at: null, created_at: '2025-01-01T00:00:00.000Z', updated_at: '2025-01-01T00:00:00.000Z' };
      const ok = (status: number, body: unknown, contentType = 'application/json; charset=utf-8'): Answer => ({ status, contentType, text: body === undefined ? '' : JSON.stringify(body) });
      const problem = { type: 'http://x/docs#problem-not-found', title: 'Not found', status: 404, detail: 'there is no user u9', instance: '/admin/v1/users/u9' };
      const check = (method: string, path: string, answer: Answer) => answerViolations(document, method, `${PREFIX}${path}`, answer);

      assert.deepEqual(check('GET', '/users/{userId}', ok(200, user)), []);
      assert.deepEqual(check('GET', '/users/{userId}', ok(404, problem, 'application/problem+json')), []);
      assert.deepEqual(check('DELETE', '/users/{userId}', ok(204, undefined)), []);
      assert.deepEqual(check('GET', '/users', ok(200, { users: [user], next_cursor: null })), []);

      const { email: _, ...withoutEmail } = user;
      const key = { kid: 'k', use: 'access', alg: 'ES256', state: 'active', created_at: user.created_at, activated_at: null, retired_at: null, expires_at: null };
      for (const [what, method, path, answer, found] of [
        ['a missing member', 'GET', '/users/{userId}', ok(200, withoutEmail), /required member "email"/],
        ['a member of the wrong type', 'GET', '/users/{userId}', ok(200, { ...user, disabled: 'no' }), /\$\.disabled: a string/],
        ['a null where none is allowed', 'GET', '/users/{userId}', ok(200, { ...user, created_at: null }), /\$\.created_at: null/],
        ['a date that is no date-time', 'GET', '/users/{userId}', ok(200, { ...user, created_at: '2025-01-01' }), /date-time/],
        ['an undocumented member', 'GET', '/users/{userId}', ok(200, { ...user, password_hash: 'x' }), /"password_hash" is not in the document/],
        ['a bad item of a list', 'GET', '/users', ok(200, { users: [{ ...user, id: 7 }], next_cursor: null }), /\$\.users\[0\]\.id/],
        ['a list without its cursor', 'GET', '/users', ok(200, { users: [] }), /required member "next_cursor"/],
        ['a value outside an enum', 'GET', '/keys', ok(200, { keys: [{ ...key, use: 'refresh' }] }), /"refresh" is not one of/],
        ['an undocumented status', 'GET', '/users/{userId}', ok(418, problem, 'application/problem+json'), /418 is not among the documented answers/],
        ['a problem sent as plain JSON', 'GET', '/users/{userId}', ok(404, problem), /comes as application\/json, documented as application\/problem\+json/],
        ['a success sent as a problem', 'GET', '/users/{userId}', ok(200, user, 'application/problem+json'), /documented as application\/json/],
        ['a problem without its detail', 'GET', '/users/{userId}', ok(404, { ...problem, detail: undefined }, 'application/problem+json'), /required member "detail"/],
        ['a body where none is documented', 'DELETE', '/users/{userId}', ok(204, {}), /without a body/],
        ['a refusal without its challenge', 'GET', '/users/{userId}', { ...ok(403, { ...problem, status: 403, error: 'insufficient_scope' }, 'application/problem+json'), headers: new Headers() }, /without the header WWW-Authenticate/],
        ['an outage without when to come back', 'GET', '/users/{userId}', { ...ok(503, { ...problem, status: 503 }, 'application/problem+json'), headers: new Headers() }, /503 comes without the header Retry-After/],
        ['a body that is not JSON', 'GET', '/users/{userId}', { status: 200, contentType: 'application/json', text: '{"id":' }, /not JSON/],
      ] as const) {
        const violations = check(method, path, answer);
        assert.ok(violations.some((v) => found.test(v)), `${what}: ${JSON.stringify(violations)}`);
      }
      assert.throws(() => schemaViolations({ oneOf: [{ type: 'string' }] }, 'x', document), /does not know the keyword "oneOf"/);
    });
  });
}

/*
 * While the database does not answer, every operation that needs it answers 503 with Retry-After,
 * as an RFC 9457 problem, as the document says; those that do not need it answer as ever. Every table
 * is locked by a transaction of the test's own, and the instance's query timeout is short: its
 * queries go unanswered, as when PostgreSQL hangs (test/production/faults.test.ts), on the
 * machine's own PostgreSQL and without stopping it. One operation at a time, so that the few
 * connections left waiting on the locks are let go at once.
 */
describe('admin API as its OpenAPI document says, while the database does not answer (postgres)', { timeout: 120_000 }, () => {
  let server: TestServer;
  let document: OpenApi;
  let authorization: string;
  const ids: Record<string, string> = {};

  before(async () => {
    server = await startTestServer('postgres', { background: false, config: { database: { queryTimeoutSeconds: 0.5 } } });
    const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ADMIN_SCOPES, isAdmin: true });
    const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    authorization = `Bearer ${res.body.access_token}`;
    document = (await (await fetch(`${server.url}${PREFIX}/openapi.json`)).json()) as OpenApi;
    const { gatehouse } = server;
    const now = gatehouse.clock();
    const client = await server.client({ name: 'Target' });
    const record = (await gatehouse.storage.clients.find(client.id))!;
    const user = await server.user('target@example.com', 'a long enough password');
    const grantId = 'a2c1d0e4-5f6a-4b7c-8d9e-0f1a2b3c4d5e';
    await gatehouse.storage.grants.create({ id: grantId, clientId: client.id, userId: user.id, kind: 'password', scopes: ['objects:read'], authTime: now, createdAt: now, expiresAt: null, revokedAt: null });
    const sid = `target-${user.id}`;
    await gatehouse.storage.sessions.create({ digest: sid, sid, userId: user.id, authTime: now, createdAt: now, expiresAt: now + 3600, address: null, device: null, lastUsedAt: null });
    Object.assign(ids, {
      clientId: client.id,
      secretId: (await gatehouse.storage.clients.listSecrets(client.id))[0]!.id,
      keyId: (await gatehouse.apiKeys.create(record, { name: 'Target key' }, now)).key.id,
      userId: user.id,
      sid,
      grantId,
      kid: (await gatehouse.storage.keys.listAll()).find((k) => k.use === 'id' && k.state === 'next')!.kid,
    });
  });
  after(() => server?.close());

  /** Runs `call` while every table of the instance's database is locked by another transaction. */
  async function withTablesLocked<T>(call: () => Promise<T>): Promise<T> {
    const locker = new pg.Client({ connectionString: server.database.databaseUrl });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      const { rows } = await locker.query<{ name: string }>("SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = current_schema()");
      await locker.query(`LOCK TABLE ${rows.map((row) => row.name).join(', ')} IN ACCESS EXCLUSIVE MODE`);
      return await call();
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
    }
  }

  it('answers 503 with Retry-After, as documented, from every operation that needs the database, and as ever from the others', async () => {
    const problems: string[] = [];
    const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));
    for (const { path, method, op } of operations) {
      const url = `${server.url}${path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(ids[name] ?? assert.fail(`no value for ${name}`)))}`;
      const body = VALID_BODIES[op.operationId];
      const answer = await withTablesLocked(async () => {
        const response = await fetch(url, {
          method,
          headers: { ...(op.security?.length ? { authorization } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        return { status: response.status, contentType: response.headers.get('content-type'), headers: response.headers, text: await response.text() };
      });
      const label = `${op.operationId} (${method} ${path})`;
      const documented = Object.hasOwn(op.responses, String(OUTAGE));
      if (answer.status === OUTAGE) {
        if (!answer.headers.get('retry-after')) problems.push(`${label}: 503 without Retry-After`);
      } else if (documented) problems.push(`${label}: documents 503, and answered ${answer.status} while the database did not answer: ${answer.text.slice(0, 200)}`);
      for (const violation of answerViolations(document, method, path, answer)) problems.push(`${label}: ${violation}`);
    }
    assert.deepEqual(problems, []);
    // The instance is itself again once the database answers.
    const res = await fetch(`${server.url}${PREFIX}/users/${ids.userId}`, { headers: { authorization } });
    assert.equal(res.status, 200, await res.text());
  });
});
