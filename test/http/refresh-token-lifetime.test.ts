import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { sweepExpiredRows, sweepPolicyOf } from '../../src/core/housekeeping.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { newRefreshToken } from '../../src/core/tokens/refresh.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const DAY = 86_400;
const START = 1_750_000_000;
const PASSWORD = 'correct horse battery staple';
const SCOPE = 'objects:read model:read';
/** The default of tokens.refreshTokenMaxLifetimeSeconds. */
const MAX_LIFETIME = 365 * DAY;

/**
 * A grant's refresh tokens rotate, each living tokens.refreshTokenTtlSeconds, but the grant itself
 * has an absolute lifetime (Auth0's "absolute lifetime", Okta's "expire after", Keycloak's client
 * session max): a grant used every month ends all the same, a year after it was made.
 */
for (const dialect of DIALECTS) {
  describe(`the maximum lifetime of a grant's refresh tokens (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };
    let now = START;
    let users = 0;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, background: false, config: { tokens: { refreshTokenReuseGraceSeconds: 5 } } });
      app = await server.client({ name: 'Field app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'model:read'] });
    });
    after(() => server.close());

    const token = (form: Record<string, string>) => post(`${server.url}/token`, form, { headers: { authorization: basic(app.id, app.secret) } });
    const refresh = (refreshToken: string) => token({ grant_type: 'refresh_token', refresh_token: refreshToken });
    const introspect = async (value: string) => (await post(`${server.url}/introspect`, { token: value }, { headers: { authorization: basic(app.id, app.secret) } })).body as Record<string, unknown>;
    /** A new user's password grant, made now: its refresh token and grant id. */
    const signIn = async () => {
      const email = `lifetime.${++users}@example.com`;
      await server.user(email, PASSWORD);
      const res = await token({ grant_type: 'password', username: email, password: PASSWORD, scope: SCOPE });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return { refreshToken: res.body.refresh_token as string, grantId: decodeJwt(res.body.access_token).grant_id as string };
    };
    const refreshed = async (refreshToken: string, what: string) => {
      const res = await refresh(refreshToken);
      assert.equal(res.status, 200, `${what}: ${JSON.stringify(res.body)}`);
      return res.body.refresh_token as string;
    };
    /** A grant made now and refreshed every 29 days since, for 348 days: its current refresh token. */
    const usedMonthly = async (made: number) => {
      const signedIn = await signIn();
      let current = signedIn.refreshToken;
      for (let month = 1; month <= 12; month++) {
        now = made + month * 29 * DAY;
        current = await refreshed(current, `month ${month}`);
      }
      return { refreshToken: current, grantId: signedIn.grantId };
    };
    const assertEnded = async (refreshToken: string, what: string) => {
      const res = await refresh(refreshToken);
      assert.equal(res.status, 400, what);
      assert.deepEqual(res.body, { error: 'invalid_grant', error_description: 'the grant has reached its maximum lifetime; the user must sign in again' }, what);
    };

    it('keeps a grant refreshed every month alive until a year after it was made, and not a second longer', async () => {
      const made = now;
      let current = (await usedMonthly(made)).refreshToken;
      now = made + MAX_LIFETIME - 1;
      current = await refreshed(current, 'the last second');
      now = made + MAX_LIFETIME;
      await assertEnded(current, 'at the end of its lifetime');
      assert.equal((await server.gatehouse.storage.refreshTokens.find(digestOf(current)))?.token.consumedAt, null, 'the refusal consumed nothing');
    });

    it('gives each new refresh token the end of its grant when that comes before its own lifetime, and introspection reports it', async () => {
      const made = now;
      const { refreshToken } = await usedMonthly(made);
      now = made + 350 * DAY;
      const successor = await refreshed(refreshToken, 'a rotation 15 days before the end');
      assert.equal((await server.gatehouse.storage.refreshTokens.find(digestOf(successor)))?.token.expiresAt, made + MAX_LIFETIME);
      const answer = await introspect(successor);
      assert.equal(answer.active, true);
      assert.equal(answer.exp, made + MAX_LIFETIME);

      // A concurrent retry within the grace window gets a token of its own, capped the same.
      now += 2;
      const sibling = await refreshed(refreshToken, 'a retry within the grace window');
      assert.notEqual(sibling, successor);
      assert.equal((await introspect(sibling)).exp, made + MAX_LIFETIME);
    });

    it('lets a refresh token stored before the bound existed work up to the end of its grant, not to its own expiry', async () => {
      const made = now;
      const { grantId } = await signIn();
      // As a rotation 350 days in by a version without the bound stored it: 30 days from then.
      const legacy = newRefreshToken(grantId, app.id, SCOPE.split(' '), made + 350 * DAY, 30 * DAY);
      await server.gatehouse.storage.refreshTokens.insert(legacy.record);

      now = made + 360 * DAY;
      const answer = await introspect(legacy.value);
      assert.equal(answer.active, true);
      assert.equal(answer.exp, made + MAX_LIFETIME, 'introspection reports the end of the grant');
      now = made + MAX_LIFETIME;
      assert.deepEqual(await introspect(legacy.value), { active: false });
      await assertEnded(legacy.value, 'a stored token past the end of its grant');
    });

    it('sweeps a refresh token stored before the bound existed once its grant has reached the bound, not at its own expiry', async () => {
      const made = now;
      const { grantId } = await signIn();
      // As a rotation 350 days in by a version without the bound stored it: 30 days from then.
      const legacy = newRefreshToken(grantId, app.id, SCOPE.split(' '), made + 350 * DAY, 30 * DAY);
      await server.gatehouse.storage.refreshTokens.insert(legacy.record);
      const policy = sweepPolicyOf(server.config);
      const stored = async () => (await server.gatehouse.storage.refreshTokens.find(legacy.record.digest)) !== undefined;

      await sweepExpiredRows(server.gatehouse.storage, made + MAX_LIFETIME - 1, policy);
      assert.equal(await stored(), true, 'it works until the end of its grant');
      await sweepExpiredRows(server.gatehouse.storage, made + MAX_LIFETIME, policy);
      assert.equal(await stored(), false, 'swept 15 days before its own expiry');
      assert.equal((await server.gatehouse.storage.grants.find(grantId))?.expiresAt, made + MAX_LIFETIME + server.config.tokens.accessTokenTtlSeconds);
    });

    it('issues no access token that outlives its grant: one refreshed near the end expires at the end, with expires_in to match, and is inactive from then (as Keycloak caps it at the session maximum)', async () => {
      const made = now;
      const { refreshToken, grantId } = await usedMonthly(made);
      now = made + MAX_LIFETIME - 100;
      const res = await refresh(refreshToken);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.expires_in, 100);
      assert.equal(decodeJwt(res.body.access_token).exp, made + MAX_LIFETIME);
      now = made + MAX_LIFETIME - 1;
      assert.equal((await introspect(res.body.access_token)).active, true);
      now = made + MAX_LIFETIME;
      assert.deepEqual(await introspect(res.body.access_token), { active: false });

      // One signed before the cap existed, running past the end of its grant, is inactive past it too.
      now = made + MAX_LIFETIME - 100;
      const earlier = await server.gatehouse.accessTokens.issue({ sub: decodeJwt(res.body.access_token).sub!, clientId: app.id, scopes: SCOPE.split(' '), grantId }, now, 3600);
      now = made + MAX_LIFETIME - 1;
      assert.equal((await introspect(earlier.token)).active, true);
      now = made + MAX_LIFETIME;
      assert.deepEqual(await introspect(earlier.token), { active: false });
      const userinfo = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${earlier.token}` } });
      assert.equal(userinfo.status, 401);
    });

    it('answers introspection of an access token signed to outlive its grant (before the bound was configured or shortened) with the end of the grant as exp, as the refresh token\'s', async () => {
      const made = now;
      const { refreshToken, grantId } = await usedMonthly(made);
      now = made + MAX_LIFETIME - 100;
      const sub = String(decodeJwt((await refresh(refreshToken)).body.access_token).sub);
      const earlier = await server.gatehouse.accessTokens.issue({ sub, clientId: app.id, scopes: SCOPE.split(' '), grantId }, now, 3600);
      assert.equal(decodeJwt(earlier.token).exp, made + MAX_LIFETIME - 100 + 3600);
      // RFC 7662 §2.2 exp: a resource server may cache the answer until then, and the token stops
      // working when its grant ends.
      const answer = await introspect(earlier.token);
      assert.equal(answer.active, true);
      assert.equal(answer.exp, made + MAX_LIFETIME);
      // A token that ends before its grant keeps its own exp.
      const within = await server.gatehouse.accessTokens.issue({ sub, clientId: app.id, scopes: SCOPE.split(' '), grantId }, now, 60);
      assert.equal((await introspect(within.token)).exp, made + MAX_LIFETIME - 40);
    });

    it('ends the grant once its last refresh token has expired with it, so that the sweep removes it', async () => {
      const made = now;
      const { refreshToken, grantId } = await usedMonthly(made);
      now = made + 364 * DAY;
      await refreshed(refreshToken, 'a rotation a day before the end');
      const policy = { accessTokenTtlSeconds: server.config.tokens.accessTokenTtlSeconds, auditRetentionSeconds: 0 };
      const storage = server.gatehouse.storage;

      await storage.sweepExpired(made + MAX_LIFETIME + 1, 500, policy);
      // Its last access token, issued a day before the end, may still be used until this.
      assert.equal((await storage.grants.find(grantId))?.expiresAt, made + MAX_LIFETIME + 1 + policy.accessTokenTtlSeconds);
      await storage.sweepExpired(made + MAX_LIFETIME + 2 + policy.accessTokenTtlSeconds, 500, policy);
      assert.equal(await storage.grants.find(grantId), undefined);
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`access tokens under a grant whose lifetime bound is shorter than theirs (${dialect})`, () => {
    let server: TestServer;
    let now = START;
    const BOUND = 1800;

    before(async () => {
      server = await startTestServer(dialect, {
        clock: () => now,
        background: false,
        config: { tokens: { accessTokenTtlSeconds: 3600, refreshTokenTtlSeconds: 900, refreshTokenMaxLifetimeSeconds: BOUND }, implicit: { enabled: true } },
      });
      await server.user('bounded@example.com', PASSWORD);
    });
    after(() => server.close());

    it("gives the access token of a password grant, and the ones derived from it, no more than the grant's bound", async () => {
      const app = await server.client({ name: 'Short sessions', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read', 'model:read'] });
      const auth = { headers: { authorization: basic(app.id, app.secret) } };
      const made = now;
      const res = await post(`${server.url}/token`, { grant_type: 'password', username: 'bounded@example.com', password: PASSWORD, scope: 'model:read' }, auth);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.expires_in, BOUND);
      assert.equal(decodeJwt(res.body.access_token).exp, made + BOUND);

      now = made + 800;
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: res.body.refresh_token }, auth);
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.equal(refreshed.body.expires_in, BOUND - 800);

      // A project token minted with it ends with the grant too, though the user's token is renewable.
      const project = await fetch(`${server.url}/projects/7/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${refreshed.body.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ scopes: ['model:read'], expires_at: new Date((now + 3000) * 1000).toISOString() }),
      });
      const minted = (await project.json()) as Record<string, unknown>;
      assert.equal(project.status, 201, JSON.stringify(minted));
      assert.equal(minted.expires_at, new Date((made + BOUND) * 1000).toISOString());
      assert.equal(decodeJwt(minted.access_token as string).exp, made + BOUND);
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`refresh tokens without a maximum lifetime (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };
    let now = START;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, background: false, config: { tokens: { refreshTokenMaxLifetimeSeconds: 0 } } });
      app = await server.client({ name: 'Kiosk', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'] });
      await server.user('unbounded@example.com', PASSWORD);
    });
    after(() => server.close());

    it('keeps a grant used every month alive past a year when tokens.refreshTokenMaxLifetimeSeconds is 0', async () => {
      const token = (form: Record<string, string>) => post(`${server.url}/token`, form, { headers: { authorization: basic(app.id, app.secret) } });
      const made = now;
      let res = await token({ grant_type: 'password', username: 'unbounded@example.com', password: PASSWORD });
      for (let month = 1; month <= 14; month++) {
        now = made + month * 29 * DAY;
        res = await token({ grant_type: 'refresh_token', refresh_token: res.body.refresh_token });
        assert.equal(res.status, 200, `month ${month}: ${JSON.stringify(res.body)}`);
      }
      const answer = (await post(`${server.url}/introspect`, { token: res.body.refresh_token }, { headers: { authorization: basic(app.id, app.secret) } })).body;
      assert.equal(answer.exp, now + server.config.tokens.refreshTokenTtlSeconds);
    });
  });
}
