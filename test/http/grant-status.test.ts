import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { aGrant, aRefreshToken } from '../support/records.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * What the admin API says of a grant's state is what the token endpoint acts on: a grant past its
 * maximum lifetime (tokens.refreshTokenMaxLifetimeSeconds) or past its own end has ended, though
 * nothing was written to it; one revoked is revoked; one whose user is disabled, or whose client is
 * suspended with its developer's account, is refused until they are enabled again.
 */

const MAX_LIFETIME = 90 * 86400;

for (const dialect of DIALECTS) {
  describe(`the state of a grant in the admin API (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let admin: { id: string; secret: string };
    let accessToken: string;
    let app: { id: string; secret: string };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect, { config: { tokens: { refreshTokenMaxLifetimeSeconds: MAX_LIFETIME } } });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:tokens', 'admin:users'], isAdmin: true });
      app = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid'], redirectUris: ['https://app.example/cb'] });
      userId = (await server.user(`status-${dialect}@example.com`, 'correct horse battery staple')).id;
    });
    after(() => server.close());

    const adminToken = async () =>
      (accessToken ??= (await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:tokens admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } })).body.access_token);
    const adminCall = async (method: string, path: string) => {
      const response = await fetch(`${server.url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${await adminToken()}` } });
      assert.equal(response.status, 200, path);
      return response.json() as Promise<Record<string, unknown>>;
    };
    const statusOf = async (grantId: string, userId: string) =>
      ((await adminCall('GET', `/grants?user_id=${userId}`)) as { grants: { id: string; status: string }[] }).grants.find((g) => g.id === grantId)?.status;
    const refresh = (client: { id: string; secret: string }, refreshToken: string) => post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { headers: { authorization: basic(client.id, client.secret) } });
    const tokenOf = async (grant: ReturnType<typeof aGrant>) => {
      const value = createOpaqueToken('rt');
      await server.gatehouse.storage.refreshTokens.insert(aRefreshToken(grant, { digest: digestOf(value), createdAt: grant.createdAt, expiresAt: server.gatehouse.clock() + 3600 }));
      return value;
    };

    it('says user_disabled while the grant’s user is disabled, as the token endpoint refuses its refresh, and active once enabled', async () => {
      const now = server.gatehouse.clock();
      const ada = await server.user(`disabled-${dialect}@example.com`, 'correct horse battery staple');
      const grant = aGrant(app.id, ada.id, { createdAt: now - 60, scopes: ['openid'] });
      await server.gatehouse.storage.grants.create(grant);
      const [first, second] = [await tokenOf(grant), await tokenOf(grant)];
      assert.equal(await statusOf(grant.id, ada.id), 'active');

      await adminCall('POST', `/users/${ada.id}/disable`);
      assert.equal(await statusOf(grant.id, ada.id), 'user_disabled');
      const refused = await refresh(app, first);
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error, 'invalid_grant');

      await adminCall('POST', `/users/${ada.id}/enable`);
      assert.equal(await statusOf(grant.id, ada.id), 'active');
      const refreshed = await refresh(app, second);
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    });

    it('says client_suspended while the grant’s client is suspended with its developer’s account, as the token endpoint refuses it, and active once enabled', async () => {
      const now = server.gatehouse.clock();
      const developer = await server.user(`developer-${dialect}@example.com`, 'correct horse battery staple');
      const owned = await server.client({ name: 'Portal app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid'], redirectUris: ['https://portal-app.example/cb'], ownerUserId: developer.id });
      const grant = aGrant(owned.id, userId, { createdAt: now - 60, scopes: ['openid'] });
      await server.gatehouse.storage.grants.create(grant);
      const refreshToken = await tokenOf(grant);
      assert.equal(await statusOf(grant.id, userId), 'active');

      await adminCall('POST', `/users/${developer.id}/disable`);
      assert.equal(await statusOf(grant.id, userId), 'client_suspended');
      const refused = await refresh(owned, refreshToken);
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error, 'invalid_client');

      await adminCall('POST', `/users/${developer.id}/enable`);
      assert.equal(await statusOf(grant.id, userId), 'active');
      const refreshed = await refresh(owned, refreshToken);
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    });

    it('says active, revoked or ended, as the token endpoint would act, and when the grant ends', async () => {
      const now = server.gatehouse.clock();
      const { storage } = server.gatehouse;
      const grants = {
        active: aGrant(app.id, userId, { createdAt: now - 60 }),
        pastMaxLifetime: aGrant(app.id, userId, { createdAt: now - MAX_LIFETIME - 60 }),
        pastItsEnd: aGrant(app.id, userId, { createdAt: now - 7200, expiresAt: now - 3600 }),
        revoked: aGrant(app.id, userId, { createdAt: now - 60, revokedAt: now - 30 }),
      };
      for (const grant of Object.values(grants)) await storage.grants.create(grant);
      const lifetimeToken = aRefreshToken(grants.pastMaxLifetime, { createdAt: now - 60, expiresAt: now + 3600 });
      await storage.refreshTokens.insert(lifetimeToken);

      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:tokens' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const listed = await fetch(`${server.url}/admin/v1/grants?user_id=${userId}`, { headers: { authorization: `Bearer ${token.body.access_token}` } });
      assert.equal(listed.status, 200);
      const byId = new Map(((await listed.json()) as { grants: { id: string; status: string; ends_at: string | null }[] }).grants.map((g) => [g.id, g]));
      const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
      assert.deepEqual(byId.get(grants.active.id), { ...byId.get(grants.active.id), status: 'active', ends_at: iso(grants.active.createdAt + MAX_LIFETIME) });
      assert.deepEqual(byId.get(grants.pastMaxLifetime.id), { ...byId.get(grants.pastMaxLifetime.id), status: 'ended', ends_at: iso(grants.pastMaxLifetime.createdAt + MAX_LIFETIME) });
      assert.deepEqual(byId.get(grants.pastItsEnd.id), { ...byId.get(grants.pastItsEnd.id), status: 'ended', ends_at: iso(now - 3600) });
      assert.equal(byId.get(grants.revoked.id)?.status, 'revoked');

      const revoked = await fetch(`${server.url}/admin/v1/grants/${grants.active.id}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${token.body.access_token}` } });
      assert.equal(((await revoked.json()) as { status: string }).status, 'revoked');
    });
  });
}
