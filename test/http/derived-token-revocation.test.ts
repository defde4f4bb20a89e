import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { sweepExpiredRows, sweepPolicyOf } from '../../src/core/housekeeping.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const API_KEY = 'urn:gatehouse:token-type:api_key';
const PASSWORD = 'correct horse battery staple';

/**
 * RFC 7009 §2.1: revoking an access token by itself (its `jti`) ends what was derived from it too —
 * the project tokens minted with it and the tokens exchanged for it (RFC 8693 delegation, with it as
 * subject or actor token; impersonation, with it as the client's own subject token), and what was
 * derived from those in turn — at /introspect, /userinfo, the project-token endpoint and the token
 * endpoint, on every instance (the revocation is stored). Its grant, its refresh token and the other
 * tokens of its grant go on.
 */
for (const dialect of DIALECTS) {
  describe(`tokens derived from a revoked access token (${dialect})`, () => {
    let server: TestServer;
    type Party = { id: string; secret: string };
    let api: Party;
    let app: Party;
    let backOffice: Party;
    let users = 0;
    let now = Math.floor(Date.now() / 1000);

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, config: { tokens: { clientCredentialsReuseSeconds: 0 } } });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password', 'refresh_token', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'] });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'], allowImpersonation: true });
    });
    after(() => server.close());

    const issued = async (client: Party, form: Record<string, string>) => {
      const res = await post(`${server.url}/token`, form, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body as { access_token: string; refresh_token?: string };
    };
    const signIn = async () => {
      const email = `derived.${++users}@example.com`;
      await server.user(email, PASSWORD);
      return issued(app, { grant_type: 'password', username: email, password: PASSWORD, scope: 'openid model:read objects:read' });
    };
    const revoke = async (client: Party, token: string) => {
      const res = await post(`${server.url}/revoke`, { token }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };
    const introspect = async (token: string) => (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const mintProjectToken = async (token: string, hours = 1) => {
      const response = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date((now + hours * 3600) * 1000).toISOString(), scopes: ['model:read'] }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const projectToken = async (token: string, hours = 1) => {
      const minted = await mintProjectToken(token, hours);
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      return minted.body.access_token as string;
    };
    const delegate = (subject: string, actor: string) =>
      issued(backOffice, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN, scope: 'openid model:read objects:read' }).then((body) => body.access_token);
    const userinfoStatus = async (token: string) => (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;

    async function assertActive(token: string, what: string) {
      assert.equal((await introspect(token)).active, true, `${what} is active`);
    }
    /** Inactive at /introspect, refused at /userinfo and at the project-token endpoint, and exchanged for nothing. */
    async function assertEnded(token: string, what: string) {
      assert.deepEqual(await introspect(token), { active: false }, `${what} at /introspect`);
      assert.equal(await userinfoStatus(token), 401, `${what} at /userinfo`);
      const minted = await mintProjectToken(token);
      assert.equal(minted.status, 401, `${what} at /projects: ${JSON.stringify(minted.body)}`);
      assert.equal(minted.body.error, 'invalid_token', `${what} at /projects`);
      const exchanged = await post(`${server.url}/token`, { grant_type: EXCHANGE, subject_token: token, subject_token_type: ACCESS_TOKEN, audience: 'project:p2' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(exchanged.status, 400, `${what} at /token`);
    }

    it("ends the project tokens minted with a user's token and the tokens delegated from it, not its grant", async () => {
      const signedIn = await signIn();
      const sibling = await issued(app, { grant_type: 'refresh_token', refresh_token: signedIn.refresh_token! });
      const minted = await projectToken(signedIn.access_token);
      const exchanged = (await issued(app, { grant_type: EXCHANGE, subject_token: signedIn.access_token, subject_token_type: ACCESS_TOKEN, audience: 'project:p1' })).access_token;
      const actor = (await issued(backOffice, { grant_type: 'client_credentials' })).access_token;
      const delegated = await delegate(signedIn.access_token, actor);
      const mintedFromDelegated = await projectToken(delegated);
      for (const [token, what] of [[minted, 'the project token'], [exchanged, 'the exchanged project token'], [delegated, 'the delegated token'], [mintedFromDelegated, 'the project token minted with the delegated token']] as const) {
        await assertActive(token, what);
      }

      await revoke(app, signedIn.access_token);
      assert.deepEqual(await introspect(signedIn.access_token), { active: false });
      assert.deepEqual(await introspect(minted), { active: false }, 'the project token');
      assert.deepEqual(await introspect(exchanged), { active: false }, 'the exchanged project token');
      await assertEnded(delegated, 'the delegated token');
      assert.deepEqual(await introspect(mintedFromDelegated), { active: false }, 'the project token minted with the delegated token');
      // The revocation was of one access token, not of its grant.
      await assertActive(sibling.access_token, 'another access token of its grant');
      await assertActive(actor, "the back office's own token");
      await projectToken(sibling.access_token);
      await issued(app, { grant_type: 'refresh_token', refresh_token: sibling.refresh_token! });
    });

    it('ends the tokens delegated with a revoked actor token, and the impersonation made with a revoked subject token of the client', async () => {
      const signedIn = await signIn();
      const actor = (await issued(backOffice, { grant_type: 'client_credentials' })).access_token;
      const delegated = await delegate(signedIn.access_token, actor);
      const user = decodeJwt(signedIn.access_token).sub!;
      const impersonation = (await issued(backOffice, { grant_type: EXCHANGE, requested_subject: user, subject_token: actor, subject_token_type: ACCESS_TOKEN, scope: 'openid objects:read' })).access_token;
      await assertActive(delegated, 'the delegated token');
      await assertActive(impersonation, 'the impersonation token');

      await revoke(backOffice, actor);
      await assertEnded(delegated, 'the delegated token');
      await assertEnded(impersonation, 'the impersonation token');
      await assertActive(signedIn.access_token, "the user's own token");
    });

    it('ends the tokens delegated with an actor API key, and the impersonation made with one, once the key is revoked', async () => {
      const record = (await server.gatehouse.storage.clients.find(backOffice.id))!;
      const key = await server.gatehouse.apiKeys.create(record, { name: 'back office', scopes: ['objects:read'] }, now);
      const signedIn = await signIn();
      const delegated = (await issued(backOffice, { grant_type: EXCHANGE, subject_token: signedIn.access_token, subject_token_type: ACCESS_TOKEN, actor_token: key.value, actor_token_type: API_KEY, scope: 'openid model:read objects:read' })).access_token;
      const impersonation = (await issued(backOffice, { grant_type: EXCHANGE, requested_subject: decodeJwt(signedIn.access_token).sub!, subject_token: key.value, subject_token_type: API_KEY, scope: 'openid objects:read' })).access_token;
      const minted = await projectToken(delegated);
      await assertActive(delegated, 'the delegated token');
      await assertActive(impersonation, 'the impersonation token');

      await revoke(backOffice, key.value);
      await assertEnded(delegated, 'the delegated token');
      await assertEnded(impersonation, 'the impersonation token');
      assert.deepEqual(await introspect(minted), { active: false }, 'the project token minted with the delegated token');
      await assertActive(signedIn.access_token, "the user's own token");
    });

    it("keeps a token delegated from another client's impersonation made with an API key, with or without an actor API key, until either key is revoked", async () => {
      const support = await server.client({ name: 'Support desk', grantTypes: ['client_credentials', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'], allowImpersonation: true });
      const apiKey = async (client: Party) => (await server.gatehouse.apiKeys.create((await server.gatehouse.storage.clients.find(client.id))!, { name: 'key', scopes: ['objects:read'] }, now)).value;
      const [supportKey, backOfficeKey] = [await apiKey(support), await apiKey(backOffice)];
      const userId = decodeJwt((await signIn()).access_token).sub!;
      const impersonation = (await issued(support, { grant_type: EXCHANGE, requested_subject: userId, subject_token: supportKey, subject_token_type: API_KEY, scope: 'model:read' })).access_token;
      const delegateWith = (actor: string, actorType: string) =>
        issued(backOffice, { grant_type: EXCHANGE, subject_token: impersonation, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: actorType, scope: 'model:read' }).then((body) => body.access_token);
      const withActorToken = await delegateWith((await issued(backOffice, { grant_type: 'client_credentials' })).access_token, ACCESS_TOKEN);
      const withActorKey = await delegateWith(backOfficeKey, API_KEY);
      const withActorKeyToo = await delegateWith(backOfficeKey, API_KEY);
      await assertActive(withActorToken, 'delegated with an actor token');
      await assertActive(withActorKey, 'delegated with an actor API key');

      await revoke(support, supportKey);
      await assertEnded(impersonation, 'the impersonation');
      await assertEnded(withActorToken, 'delegated with an actor token');
      await assertEnded(withActorKey, 'delegated with an actor API key');

      await revoke(backOffice, backOfficeKey);
      await assertEnded(withActorKeyToo, 'delegated with the revoked actor API key');
    });

    it('ends the project tokens minted with a revoked delegated token, and leaves the token it was delegated from', async () => {
      const signedIn = await signIn();
      const delegated = await delegate(signedIn.access_token, (await issued(backOffice, { grant_type: 'client_credentials' })).access_token);
      const minted = await projectToken(delegated);
      await revoke(backOffice, delegated);
      await assertEnded(delegated, 'the delegated token');
      assert.deepEqual(await introspect(minted), { active: false }, 'the project token');
      await assertActive(signedIn.access_token, "the user's own token");
    });

    it("ends a client's project token that outlives the revoked client token it was minted with, past that token's expiry and the sweep", async () => {
      const own = (await issued(app, { grant_type: 'client_credentials' })).access_token;
      const viewer = await projectToken(own, 12);
      const untouched = await projectToken((await issued(app, { grant_type: 'client_credentials' })).access_token, 12);
      assert.ok(decodeJwt(viewer).exp! > decodeJwt(own).exp! + 3600, 'the viewer token outlives the token it was minted with');
      await revoke(app, own);
      assert.deepEqual(await introspect(viewer), { active: false });

      const start = now;
      try {
        now += 2 * 3600;
        await sweepExpiredRows(server.gatehouse.storage, now, sweepPolicyOf(server.config));
        assert.deepEqual(await introspect(viewer), { active: false }, 'still ended once its maker has expired and been swept');
        await assertActive(untouched, 'a project token minted with another client token');
      } finally {
        now = start;
      }
    });
  });
}

/**
 * A token derived from an access token may outlive it: a project token by up to
 * projectTokens.maxTtlSeconds, a delegated token by up to tokens.accessTokenTtlSeconds. Revoking the
 * parent after it expired, while something derived from it may still live, ends what was derived
 * (RFC 7009 §2.1); a parent expired for longer than that has nothing left to end and is ignored.
 */
for (const dialect of DIALECTS) {
  describe(`revoking an expired access token (${dialect})`, () => {
    let server: TestServer;
    type Party = { id: string; secret: string };
    let app: Party;
    let api: Party;
    let backOffice: Party;
    let now = Math.floor(Date.now() / 1000);
    // Short-lived access tokens; project tokens live longer, up to 30 minutes.
    const ACCESS_TTL = 120;
    const PROJECT_MAX_TTL = 1800;

    before(async () => {
      server = await startTestServer(dialect, {
        clock: () => now,
        config: { tokens: { accessTokenTtlSeconds: ACCESS_TTL, clientCredentialsReuseSeconds: 0 }, projectTokens: { maxTtlSeconds: PROJECT_MAX_TTL } },
      });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', EXCHANGE], scopes: ['model:read', 'objects:read'] });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', 'password', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'], allowImpersonation: true });
    });
    after(() => server.close());

    const clientToken = async (client: Party) => {
      const res = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return (res.body as { access_token: string }).access_token;
    };
    const revoke = async (client: Party, token: string) => {
      const res = await post(`${server.url}/revoke`, { token }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    };
    const introspect = async (token: string) => (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const projectToken = async (token: string, seconds: number) => {
      const response = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date((now + seconds) * 1000).toISOString(), scopes: ['model:read'] }),
      });
      const body = (await response.json()) as Record<string, unknown>;
      assert.equal(response.status, 201, JSON.stringify(body));
      return body.access_token as string;
    };
    const mintStatus = async (token: string) =>
      (
        await fetch(`${server.url}/projects/p2/access-tokens`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ expires_at: new Date((now + 60) * 1000).toISOString(), scopes: ['model:read'] }),
        })
      ).status;
    const userinfoStatus = async (token: string) => (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;
    const atTime = async (at: number, run: () => Promise<void>) => {
      const start = now;
      now = at;
      try {
        await run();
      } finally {
        now = start;
      }
    };

    it('ends the project token minted with an access token revoked after it expired, past the sweep', async () => {
      const own = await clientToken(app);
      const viewer = await projectToken(own, PROJECT_MAX_TTL);
      const untouched = await projectToken(await clientToken(app), PROJECT_MAX_TTL);
      const parentExpiry = decodeJwt(own).exp!;
      await atTime(parentExpiry + 600, async () => {
        assert.equal((await introspect(viewer)).active, true, 'the project token outlives the token it was minted with');
        await revoke(app, own);
        assert.deepEqual(await introspect(viewer), { active: false }, 'the project token at /introspect');
        assert.equal(await mintStatus(viewer), 401, 'the project token at /projects');
        await sweepExpiredRows(server.gatehouse.storage, now, sweepPolicyOf(server.config));
        assert.deepEqual(await introspect(viewer), { active: false }, 'still ended after the sweep');
        assert.equal((await introspect(untouched)).active, true, 'a project token minted with another token');
      });
    });

    it('ends the impersonation made with a client token revoked after it expired', async () => {
      // An impersonation lives tokens.accessTokenTtlSeconds from its exchange, past its subject token.
      const user = await server.user('expired-parent@example.com', 'correct horse battery staple');
      const own = await clientToken(backOffice);
      const parentExpiry = decodeJwt(own).exp!;
      let impersonation = '';
      await atTime(parentExpiry - 10, async () => {
        const res = await post(`${server.url}/token`, { grant_type: EXCHANGE, requested_subject: user.id, subject_token: own, subject_token_type: ACCESS_TOKEN, scope: 'openid objects:read' }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        impersonation = (res.body as { access_token: string }).access_token;
      });
      await atTime(parentExpiry + 60, async () => {
        assert.equal((await introspect(impersonation)).active, true, 'the impersonation outlives the token it was made with');
        await revoke(backOffice, own);
        assert.deepEqual(await introspect(impersonation), { active: false });
        assert.equal(await userinfoStatus(impersonation), 401);
      });
    });

    it('records nothing for an access token expired longer ago than anything derived from it may live', async () => {
      const own = await clientToken(app);
      const jti = decodeJwt(own).jti!;
      await atTime(decodeJwt(own).exp! + PROJECT_MAX_TTL + 1, async () => {
        await revoke(app, own);
        assert.equal(await server.gatehouse.storage.revocations.isJtiRevoked(jti), false);
      });
    });
  });
}

/**
 * An exchanged token lives tokens.accessTokenTtlSeconds from its exchange, so it outlives the client
 * token it was made with by up to that long: where that is longer than projectTokens.maxTtlSeconds,
 * the revocation of that client token is kept, and honoured after it expired, for that long.
 */
for (const dialect of DIALECTS) {
  describe(`revoking a client token whose exchanged tokens outlive it by more than a project token may (${dialect})`, () => {
    let server: TestServer;
    let api: { id: string; secret: string };
    let backOffice: { id: string; secret: string };
    let userId = '';
    let now = Math.floor(Date.now() / 1000);
    const ACCESS_TTL = 600;
    const PROJECT_MAX_TTL = 120;

    before(async () => {
      server = await startTestServer(dialect, {
        clock: () => now,
        config: { tokens: { accessTokenTtlSeconds: ACCESS_TTL, clientCredentialsReuseSeconds: 0 }, projectTokens: { maxTtlSeconds: PROJECT_MAX_TTL, defaultTtlSeconds: PROJECT_MAX_TTL } },
      });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', EXCHANGE], scopes: ['openid', 'objects:read'], allowImpersonation: true });
      userId = (await server.user('impersonated@example.com', PASSWORD)).id;
    });
    after(() => server.close());

    const introspect = async (token: string) => (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const call = async (form: Record<string, string>) => {
      const res = await post(`${server.url}/token`, form, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return (res.body as { access_token?: string }).access_token;
    };
    /** The back office's token, and an impersonation made with it just before it expires. */
    const madeJustBeforeExpiry = async () => {
      const own = (await call({ grant_type: 'client_credentials' }))!;
      const expiry = decodeJwt(own).exp!;
      const start = now;
      now = expiry - 10;
      try {
        const impersonation = (await call({ grant_type: EXCHANGE, requested_subject: userId, subject_token: own, subject_token_type: ACCESS_TOKEN, scope: 'openid objects:read' }))!;
        return { own, expiry, impersonation };
      } finally {
        now = start;
      }
    };
    const userinfoStatus = async (token: string) => (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token}` } })).status;

    it('keeps the revocation of a live client token past the sweep while the impersonation made with it lives', async () => {
      const { own, expiry, impersonation } = await madeJustBeforeExpiry();
      const start = now;
      try {
        now = expiry - 5;
        assert.equal((await post(`${server.url}/revoke`, { token: own }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } })).status, 200);
        now = expiry + PROJECT_MAX_TTL + 60;
        await sweepExpiredRows(server.gatehouse.storage, now, sweepPolicyOf(server.config));
        assert.deepEqual(await introspect(impersonation), { active: false }, 'the impersonation after the sweep');
        assert.equal(await userinfoStatus(impersonation), 401);
      } finally {
        now = start;
      }
    });

    it('ends the impersonation when its client token is revoked longer after its expiry than a project token may live', async () => {
      const { own, expiry, impersonation } = await madeJustBeforeExpiry();
      const start = now;
      try {
        now = expiry + PROJECT_MAX_TTL + 60;
        assert.equal((await introspect(impersonation)).active, true, 'the impersonation outlives its client token');
        const res = await post(`${server.url}/revoke`, { token: own }, { headers: { authorization: basic(backOffice.id, backOffice.secret) } });
        assert.equal(res.status, 200);
        assert.deepEqual(await introspect(impersonation), { active: false });
      } finally {
        now = start;
      }
    });
  });
}
