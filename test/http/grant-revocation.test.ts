import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { authorizationCode, exchangeCode, PASSWORD, REDIRECT_URI } from '../production/support.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const SCOPE = 'openid model:read objects:read';

/**
 * RFC 7009 §2.1: revoking a refresh token "SHOULD also invalidate all access tokens based on the
 * same authorization grant"; RFC 9700 §4.14.2 asks the same of a replayed refresh token. Whichever
 * way a grant ends — its refresh token revoked or replayed, consent withdrawn, an operator's
 * revocation — Gatehouse's own endpoints refuse every access token issued under it, and the tokens
 * derived from them (project tokens, delegation), at once; tokens of other grants keep working.
 */
for (const dialect of DIALECTS) {
  describe(`access tokens of a revoked grant (${dialect})`, () => {
    let server: TestServer;
    type Party = { id: string; secret: string };
    let api: Party;
    let app: Party;
    let backOffice: Party;
    let users = 0;

    before(async () => {
      server = await startTestServer(dialect, { config: { implicit: { enabled: true } } });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      app = await server.client({ name: 'Viewer', grantTypes: ['client_credentials', 'password', 'refresh_token'], scopes: ['openid', 'model:read', 'objects:read'] });
      backOffice = await server.client({ name: 'Back office', grantTypes: ['client_credentials', EXCHANGE], scopes: ['openid', 'model:read', 'objects:read'], allowImpersonation: true });
    });
    after(() => server.close());

    const token = async (client: Party, form: Record<string, string>) => post(`${server.url}/token`, form, { headers: { authorization: basic(client.id, client.secret) } });
    const issued = async (client: Party, form: Record<string, string>) => {
      const res = await token(client, form);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body as { access_token: string; refresh_token?: string };
    };
    const newUser = async () => {
      const email = `revoked.grant.${++users}@example.com`;
      await server.user(email, PASSWORD);
      return email;
    };
    const signIn = (email: string) => issued(app, { grant_type: 'password', username: email, password: PASSWORD, scope: SCOPE });
    const refresh = (refreshToken: string) => issued(app, { grant_type: 'refresh_token', refresh_token: refreshToken });
    const introspect = async (accessToken: string) => (await post(`${server.url}/introspect`, { token: accessToken }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const userinfo = async (accessToken: string) => {
      const response = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } });
      return { status: response.status, challenge: response.headers.get('www-authenticate') ?? '' };
    };
    const projectToken = async (accessToken: string) => {
      const response = await fetch(`${server.url}/projects/p1/access-tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ expires_at: new Date(Date.now() + 600_000).toISOString(), scopes: ['model:read'] }),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };

    async function assertActive(accessToken: string, what: string) {
      assert.equal((await introspect(accessToken)).active, true, `${what} is active`);
    }
    /** Inactive at /introspect, refused at /userinfo as revoked, and no project token minted from it. */
    async function assertRevoked(accessToken: string, what: string) {
      assert.deepEqual(await introspect(accessToken), { active: false }, `${what} at /introspect`);
      const info = await userinfo(accessToken);
      assert.equal(info.status, 401, `${what} at /userinfo`);
      assert.match(info.challenge, /error="invalid_token", error_description="the access token has been revoked"/, `${what} at /userinfo`);
      const minted = await projectToken(accessToken);
      assert.equal(minted.status, 401, `${what} at /projects: ${JSON.stringify(minted.body)}`);
      assert.equal(minted.body.error, 'invalid_token', `${what} at /projects`);
    }

    it('names its grant in every access token issued under one, and in none of a client alone', async () => {
      const first = await signIn(await newUser());
      const grantId = decodeJwt(first.access_token).grant_id;
      assert.equal(typeof grantId, 'string');
      assert.ok(await server.gatehouse.storage.grants.find(grantId as string), 'the claim names a stored grant');
      assert.equal(decodeJwt((await refresh(first.refresh_token!)).access_token).grant_id, grantId, 'a refresh keeps the grant');
      assert.equal(decodeJwt((await issued(app, { grant_type: 'client_credentials' })).access_token).grant_id, undefined);
      // Introspection answers what RFC 7662 names; the grant's id stays Gatehouse's own.
      assert.equal((await introspect(first.access_token)).grant_id, undefined);
    });

    it('revoking a refresh token (RFC 7009) revokes every access token of its grant, and only of that grant', async () => {
      const email = await newUser();
      const first = await signIn(email);
      const second = await refresh(first.refresh_token!);
      const otherGrant = await signIn(email);
      const clientAlone = await issued(app, { grant_type: 'client_credentials' });
      await assertActive(first.access_token, 'the first access token');
      await assertActive(second.access_token, 'the refreshed access token');
      assert.equal((await userinfo(second.access_token)).status, 200);

      const revoked = await post(`${server.url}/revoke`, { token: second.refresh_token!, token_type_hint: 'refresh_token' }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(revoked.status, 200);

      await assertRevoked(first.access_token, 'the first access token');
      await assertRevoked(second.access_token, 'the refreshed access token');
      await assertActive(otherGrant.access_token, 'an access token of another grant of the same user and client');
      assert.equal((await userinfo(otherGrant.access_token)).status, 200);
      await assertActive(clientAlone.access_token, "the client's own token");
      const renewed = await token(app, { grant_type: 'refresh_token', refresh_token: otherGrant.refresh_token! });
      assert.equal(renewed.status, 200, 'the other grant still refreshes');
    });

    it('a replayed refresh token (RFC 9700 §4.14.2) revokes the access tokens of its grant, the one from the winning refresh too', async () => {
      const first = await signIn(await newUser());
      const second = await refresh(first.refresh_token!);
      await assertActive(second.access_token, 'the refreshed access token');

      const replay = await token(app, { grant_type: 'refresh_token', refresh_token: first.refresh_token! });
      assert.equal(replay.status, 400);
      assert.equal(replay.body.error, 'invalid_grant');
      await assertRevoked(first.access_token, 'the access token issued with the replayed refresh token');
      await assertRevoked(second.access_token, 'the access token issued by the refresh');
    });

    it("an operator's revocation through the admin API revokes the grant's access tokens", async () => {
      const admin = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:tokens'], isAdmin: true });
      const adminToken = (await issued(admin, { grant_type: 'client_credentials' })).access_token;
      const first = await signIn(await newUser());
      const grantId = decodeJwt(first.access_token).grant_id as string;
      const response = await fetch(`${server.url}/admin/v1/grants/${grantId}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(response.status, 200, await response.text());
      await assertRevoked(first.access_token, 'the access token of the revoked grant');
      await assertActive(adminToken, "the operator's own token");
    });

    it('an application made public loses its grants: a refresh token issued to it with a secret is not redeemed with its id alone', async () => {
      const admin = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:clients'], isAdmin: true });
      const adminToken = (await issued(admin, { grant_type: 'client_credentials' })).access_token;
      const mobile = await server.client({ name: 'Going public', grantTypes: ['authorization_code', 'password', 'refresh_token'], scopes: ['openid', 'model:read', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const email = await newUser();
      const held = await issued(mobile, { grant_type: 'password', username: email, password: PASSWORD, scope: SCOPE });
      const elsewhere = await signIn(email);

      const changed = await fetch(`${server.url}/admin/v1/clients/${mobile.id}`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'public', grant_types: ['authorization_code', 'refresh_token'] }),
      });
      assert.equal(changed.status, 200, await changed.text());

      const redeemed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: held.refresh_token!, client_id: mobile.id });
      assert.equal(redeemed.status, 400, JSON.stringify(redeemed.body));
      assert.equal(redeemed.body.error, 'invalid_grant');
      await assertRevoked(held.access_token, 'the access token of the application made public');
      await assertActive(elsewhere.access_token, "another application's access token for the same user");
      assert.equal(typeof (await refresh(elsewhere.refresh_token!)).access_token, 'string', "another application's grant goes on");
      await server.gatehouse.audit.flush();
      const events = await server.gatehouse.storage.audit.query({ kind: 'grant.revoked', clientId: mobile.id });
      assert.deepEqual(events.map((event) => [event.data.grant_id, event.data.reason]), [[decodeJwt(held.access_token).grant_id, 'client_made_public']]);
    });

    it('tokens derived from a user’s access token end with its grant: project tokens and delegated tokens', async () => {
      const first = await signIn(await newUser());
      const minted = await projectToken(first.access_token);
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      const project = minted.body.access_token as string;
      const actor = (await issued(backOffice, { grant_type: 'client_credentials' })).access_token;
      const delegated = (await issued(backOffice, { grant_type: EXCHANGE, subject_token: first.access_token, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN, scope: 'openid objects:read' })).access_token;
      await assertActive(project, 'the project token');
      await assertActive(delegated, 'the delegated token');
      assert.equal(decodeJwt(project).grant_id, decodeJwt(first.access_token).grant_id);
      assert.equal(decodeJwt(delegated).grant_id, decodeJwt(first.access_token).grant_id);

      await post(`${server.url}/revoke`, { token: first.refresh_token! }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.deepEqual(await introspect(project), { active: false }, 'the project token');
      await assertRevoked(delegated, 'the delegated token');
      await assertActive(actor, "the back office's own token");
      const again = await token(backOffice, { grant_type: EXCHANGE, subject_token: first.access_token, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN });
      assert.equal(again.status, 400, 'no token is exchanged for a revoked one');
      assert.equal(again.body.error, 'invalid_grant');
    });

    it('an impersonation is a grant of its own, listed with the user’s grants: an operator who revokes it ends its token and the tokens derived from it', async () => {
      const admin = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:tokens'], isAdmin: true });
      const adminToken = (await issued(admin, { grant_type: 'client_credentials' })).access_token;
      const email = await newUser();
      const user = await server.gatehouse.storage.users.findByEmail(email);
      const own = await signIn(email);
      const impersonation = (await issued(backOffice, { grant_type: EXCHANGE, requested_subject: user!.id, scope: SCOPE })).access_token;
      const { grant_id: grantId, exp } = decodeJwt(impersonation);
      assert.equal(typeof grantId, 'string', 'the impersonation token names a grant');
      const grant = await server.gatehouse.storage.grants.find(grantId as string);
      assert.deepEqual({ kind: grant?.kind, userId: grant?.userId, clientId: grant?.clientId, expiresAt: grant?.expiresAt }, { kind: 'impersonation', userId: user!.id, clientId: backOffice.id, expiresAt: exp }, 'it ends with its one token');
      const listed = await fetch(`${server.url}/admin/v1/grants?user_id=${user!.id}`, { headers: { authorization: `Bearer ${adminToken}` } });
      const grants = ((await listed.json()) as { grants: { id: string; kind: string }[] }).grants;
      assert.deepEqual(grants.find((g) => g.id === grantId)?.kind, 'impersonation', 'the operator finds it among the user’s grants');
      await server.gatehouse.audit.flush();
      const [exchanged] = await server.gatehouse.storage.audit.query({ kind: 'token.exchanged', userId: user!.id });
      assert.equal(exchanged?.data.grant_id, grantId, 'and in the audit event of the exchange');

      const minted = await projectToken(impersonation);
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      const project = minted.body.access_token as string;
      const actor = (await issued(backOffice, { grant_type: 'client_credentials' })).access_token;
      const delegated = (await issued(backOffice, { grant_type: EXCHANGE, subject_token: impersonation, subject_token_type: ACCESS_TOKEN, actor_token: actor, actor_token_type: ACCESS_TOKEN, scope: 'openid objects:read' })).access_token;
      await assertActive(impersonation, 'the impersonation token');
      await assertActive(project, 'the project token minted with it');
      await assertActive(delegated, 'the token delegated from it');

      const response = await fetch(`${server.url}/admin/v1/grants/${grantId}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(response.status, 200, await response.text());
      await assertRevoked(impersonation, 'the impersonation token');
      assert.deepEqual(await introspect(project), { active: false }, 'the project token minted with it');
      await assertRevoked(delegated, 'the token delegated from it');
      await assertActive(own.access_token, 'the user’s own token');
      await assertActive(actor, "the back office's own token");
    });

    async function withdraw(browser: HttpBrowser, client: Party, name: RegExp) {
      const account = await browser.request(`${server.url}/account`);
      assert.match(account.text, name);
      const withdrawn = await browser.request(`${server.url}/account/applications/withdraw`, { form: { csrf: hiddenField(account.text, 'csrf'), client_id: client.id } });
      assert.equal(withdrawn.status, 303);
    }

    it('withdrawing consent on the account page revokes the access tokens the application holds', async () => {
      const web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const email = await newUser();
      const tokens = (await exchangeCode(server.url, web, await authorizationCode(server.url, web, email))).body as { access_token: string; refresh_token: string };
      await assertActive(tokens.access_token, 'the access token from the code');

      await withdraw(await signedInBrowser(server.url, email, PASSWORD), web, /Web app/);

      await assertRevoked(tokens.access_token, 'the access token from the code');
      const renewed = await token(web, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
      assert.equal(renewed.status, 400);
      assert.equal(renewed.body.error, 'invalid_grant');
    });

    it('withdrawing consent voids the codes issued to the application and not yet exchanged, for that user only', async () => {
      const web = await server.client({ name: 'Slow web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const email = await newUser();
      const pending = await authorizationCode(server.url, web, email);
      const otherUsers = await authorizationCode(server.url, web, await newUser());

      await withdraw(await signedInBrowser(server.url, email, PASSWORD), web, /Slow web app/);

      const exchanged = await exchangeCode(server.url, web, pending);
      assert.equal(exchanged.status, 400, JSON.stringify(exchanged.body));
      assert.equal((exchanged.body as { error?: string }).error, 'invalid_grant');
      const user = await server.gatehouse.storage.users.findByEmail(email);
      assert.deepEqual(await server.gatehouse.storage.grants.list({ userId: user!.id, clientId: web.id }), [], 'no grant started after the withdrawal');
      assert.equal((await exchangeCode(server.url, web, otherUsers)).status, 200, "another user's code for the application still works");
    });

    it('a grant without a refresh token ends with its access token and is swept then; one with refresh tokens goes on', async () => {
      const once = await server.client({ name: 'One-off report', grantTypes: ['authorization_code'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const web = await server.client({ name: 'Long-running app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const email = await newUser();
      const single = (await exchangeCode(server.url, once, await authorizationCode(server.url, once, email))).body as { access_token: string; refresh_token?: string };
      const lasting = (await exchangeCode(server.url, web, await authorizationCode(server.url, web, email))).body as { access_token: string; refresh_token?: string };
      assert.equal(single.refresh_token, undefined);
      const { grant_id: singleGrant, exp } = decodeJwt(single.access_token);
      const lastingGrant = decodeJwt(lasting.access_token).grant_id as string;
      assert.equal((await server.gatehouse.storage.grants.find(singleGrant as string))?.expiresAt, exp);
      assert.equal((await server.gatehouse.storage.grants.find(lastingGrant))?.expiresAt, null);
      await assertActive(single.access_token, 'the access token of a grant without refresh token');

      await server.gatehouse.storage.sweepExpired(exp!, 500, { accessTokenTtlSeconds: 3600, auditRetentionSeconds: 0 });
      assert.ok(await server.gatehouse.storage.grants.find(singleGrant as string), 'kept while its token may be used');
      await server.gatehouse.storage.sweepExpired(exp! + 1, 500, { accessTokenTtlSeconds: 3600, auditRetentionSeconds: 0 });
      assert.equal(await server.gatehouse.storage.grants.find(singleGrant as string), undefined);
      assert.ok(await server.gatehouse.storage.grants.find(lastingGrant), 'its refresh token has 30 days to go');
      await assertActive(lasting.access_token, 'the access token of the grant with a refresh token');
    });

    it('a password grant without refresh token is a grant too: it ends with its one token, and an operator can revoke that token', async () => {
      const kiosk = await server.client({ name: 'Kiosk app', grantTypes: ['password'], scopes: ['openid', 'objects:read'] });
      const email = await newUser();
      const tokens = await issued(kiosk, { grant_type: 'password', username: email, password: PASSWORD, scope: 'openid objects:read' });
      assert.equal(tokens.refresh_token, undefined);
      const { grant_id: grantId, exp } = decodeJwt(tokens.access_token);
      const grant = await server.gatehouse.storage.grants.find(grantId as string);
      assert.equal(grant?.kind, 'password');
      assert.equal(grant.expiresAt, exp, 'the grant ends with its one token');
      await assertActive(tokens.access_token, 'the access token of the password grant');

      const admin = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:tokens'], isAdmin: true });
      const adminToken = (await issued(admin, { grant_type: 'client_credentials' })).access_token;
      const response = await fetch(`${server.url}/admin/v1/grants/${grantId}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(response.status, 200, await response.text());
      await assertRevoked(tokens.access_token, 'the access token of the password grant');
    });

    it('withdrawing consent revokes an access token of the implicit flow too', async () => {
      const legacy = await server.client({ name: 'Legacy viewer', grantTypes: ['implicit'], scopes: ['openid', 'objects:read'], redirectUris: [REDIRECT_URI] });
      const email = await newUser();
      const browser = await signedInBrowser(server.url, email, PASSWORD);
      const authorize = await browser.request(`${server.url}/authorize?${new URLSearchParams({ response_type: 'token', client_id: legacy.id, redirect_uri: REDIRECT_URI, scope: 'openid objects:read', state: 's' })}`);
      const consent = await browser.request(new URL(authorize.location!, server.url).href);
      assert.equal(consent.status, 200, consent.text.slice(0, 500));
      const allowed = await browser.request(`${server.url}/consent`, { form: { csrf: hiddenField(consent.text, 'csrf'), request: hiddenField(consent.text, 'request'), decision: 'allow' } });
      const accessToken = new URLSearchParams(new URL(allowed.location!).hash.slice(1)).get('access_token');
      assert.ok(accessToken, allowed.location);
      const grantId = decodeJwt(accessToken).grant_id as string;
      const grant = await server.gatehouse.storage.grants.find(grantId);
      assert.equal(grant?.kind, 'implicit');
      assert.equal(grant.expiresAt, decodeJwt(accessToken).exp, 'the grant ends with its one token');
      await assertActive(accessToken, 'the access token of the implicit flow');

      await withdraw(browser, legacy, /Legacy viewer/);
      await assertRevoked(accessToken, 'the access token of the implicit flow');
    });
  });

  describe(`a retry within the refresh grace window of a grant revoked meanwhile (${dialect})`, () => {
    let server: TestServer;
    let app: { id: string; secret: string };

    before(async () => {
      server = await startTestServer(dialect, { config: { tokens: { refreshTokenReuseGraceSeconds: 10 } } });
      app = await server.client({ name: 'Field app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'] });
      await server.user('grace.retry@example.com', PASSWORD);
    });
    after(() => server.close());

    const token = (form: Record<string, string>) => post(`${server.url}/token`, form, { headers: { authorization: basic(app.id, app.secret) } });

    it('is refused, as a rotation is, when the grant is revoked between the lookup of its token and the retry being answered, and stores nothing', async (t) => {
      const signedIn = await token({ grant_type: 'password', username: 'grace.retry@example.com', password: PASSWORD });
      const rotated = await token({ grant_type: 'refresh_token', refresh_token: signedIn.body.refresh_token });
      assert.equal(rotated.status, 200, JSON.stringify(rotated.body));

      // A revocation (consent withdrawn, RFC 7009, a replay detected elsewhere) that lands while the retry is answered.
      const tokens = server.gatehouse.storage.refreshTokens;
      const find = tokens.find.bind(tokens);
      t.mock.method(tokens, 'find', async (digest: string) => {
        const found = await find(digest);
        if (found) await server.gatehouse.storage.grants.revoke(found.grant.id, server.gatehouse.clock());
        return found;
      });
      const inserted = t.mock.method(tokens, 'insert');

      const retry = await token({ grant_type: 'refresh_token', refresh_token: signedIn.body.refresh_token });
      assert.equal(retry.status, 400, JSON.stringify(retry.body));
      assert.deepEqual(retry.body, { error: 'invalid_grant', error_description: 'the refresh token has been revoked' });
      assert.equal(inserted.mock.callCount(), 0, 'no refresh token is stored for the revoked grant');
    });
  });
}
