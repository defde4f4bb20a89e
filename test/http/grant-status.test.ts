import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DIALECTS } from '../support/databases.ts';
import { aGrant, aRefreshToken } from '../support/records.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * What the admin API says of a grant's state is what the token endpoint acts on: a grant past its
 * maximum lifetime (tokens.refreshTokenMaxLifetimeSeconds) or past its own end has ended, though
 * nothing was written to it; one revoked is revoked.
 */

const MAX_LIFETIME = 90 * 86400;

for (const dialect of DIALECTS) {
  describe(`the state of a grant in the admin API (${dialect})`, { timeout: 60_000 }, () => {
    let server: TestServer;
    let admin: { id: string; secret: string };
    let app: { id: string; secret: string };
    let userId: string;

    before(async () => {
      server = await startTestServer(dialect, { config: { tokens: { refreshTokenMaxLifetimeSeconds: MAX_LIFETIME } } });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:tokens'], isAdmin: true });
      app = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid'], redirectUris: ['https://app.example/cb'] });
      userId = (await server.user(`status-${dialect}@example.com`, 'correct horse battery staple')).id;
    });
    after(() => server.close());

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
