import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { hostname } from 'node:os';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRemoteJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { internalRange } from '../../src/core/addresses.ts';
import { createClient } from '../../src/core/applications.ts';
import { BACKCHANNEL_LOGOUT_CONCURRENCY, BACKCHANNEL_LOGOUT_EVENT, BACKCHANNEL_LOGOUT_PER_CLIENT, type NameLookup } from '../../src/core/backchannel-logout.ts';
import { LOOKUP_THREADS } from '../../src/core/thread-pool.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { codeThrough, HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * OpenID Connect session ids and Back-Channel Logout 1.0: ID tokens carry the session's `sid`, and
 * whenever sessions end, each client answered through them that registered a
 * `backchannel_logout_uri` is sent a Logout Token there — and no other client.
 */

const PASSWORD = 'correct horse battery staple';
const CALLBACK = 'https://app.example/callback';

/** What a receiver got: the verified claims and header of each Logout Token, by the path it was posted to. */
interface Received {
  path: string;
  contentType: string | undefined;
  claims: JWTPayload;
  typ: string | undefined;
}

/** A relying party's back-channel logout endpoint on loopback: records, verifies with Gatehouse's JWKS, answers as told. */
class Receiver {
  server: Server;
  received: Received[] = [];
  /** Paths that answer 500, and that never answer. */
  failing = new Set<string>();
  hanging = new Set<string>();
  /** Paths that answer 307, sending the request on to another path. */
  redirecting = new Map<string, string>();
  /** Paths that answer after a moment; how many requests were open at once at most. */
  slow = new Set<string>();
  mostAtOnce = 0;
  #atOnce = 0;
  #open = new Set<ServerResponse>();
  url = '';

  #jwks: ReturnType<typeof createRemoteJWKSet>;
  #issuer: string;

  constructor(jwks: ReturnType<typeof createRemoteJWKSet>, issuer: string) {
    this.#jwks = jwks;
    this.#issuer = issuer;
    this.server = createServer((request, response) => void this.#answer(request, response));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async #answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    this.mostAtOnce = Math.max(this.mostAtOnce, ++this.#atOnce);
    response.on('close', () => this.#atOnce--);
    let body = '';
    for await (const chunk of request) body += chunk;
    const path = request.url ?? '';
    const token = new URLSearchParams(body).get('logout_token') ?? '';
    const { payload, protectedHeader } = await jwtVerify(token, this.#jwks, { issuer: this.#issuer, typ: 'logout+jwt' });
    this.received.push({ path, contentType: request.headers['content-type'], claims: payload, typ: protectedHeader.typ });
    if (this.hanging.has(path)) {
      this.#open.add(response);
      return;
    }
    if (this.slow.has(path)) await sleep(100);
    if (this.redirecting.has(path)) {
      response.writeHead(307, { location: this.redirecting.get(path) });
      response.end();
      return;
    }
    response.statusCode = this.failing.has(path) ? 500 : 200;
    response.end();
  }

  /** The tokens posted to `path` so far. */
  at(path: string): JWTPayload[] {
    return this.received.filter((r) => r.path === path).map((r) => r.claims);
  }

  async close(): Promise<void> {
    for (const response of this.#open) response.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

for (const dialect of DIALECTS) {
  describe(`back-channel logout (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let receiver: Receiver;
    let admin: { id: string; secret: string };
    let counter = 0;
    /** Clients that registered a back-channel logout URI (`/a`, `/b`), and one that did not. */
    let first: { id: string; secret: string };
    let second: { id: string; secret: string };
    let silent: { id: string; secret: string };
    /** A client of the implicit flow (`/implicit`): its ID tokens come from the authorization endpoint. */
    let legacy: { id: string; secret: string };

    const aWebClient = (name: string, backchannelLogoutUri?: string) =>
      server.client({ name, grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], firstParty: true, ...(backchannelLogoutUri && { backchannelLogoutUri }) });

    before(async () => {
      server = await startTestServer(dialect, { config: { implicit: { enabled: true } } });
      receiver = new Receiver(createRemoteJWKSet(new URL(`${server.url}/jwks.json`)), server.url);
      await receiver.start();
      first = await aWebClient('First', `${receiver.url}/a`);
      second = await aWebClient('Second', `${receiver.url}/b`);
      silent = await aWebClient('Silent');
      legacy = await server.client({ name: 'Legacy', grantTypes: ['implicit'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], firstParty: true, backchannelLogoutUri: `${receiver.url}/implicit` });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
    });
    after(async () => {
      await receiver.close();
      await server.close();
    });

    const aUser = () => server.user(`bcl-${++counter}-${dialect}@example.com`, PASSWORD);

    const signedIn = (email: string) => signedInBrowser(server.url, email, PASSWORD);

    /** The code flow for `client` in the browser's session: the tokens it gets. */
    async function authorize(browser: HttpBrowser, client: { id: string; secret: string }): Promise<{ id_token: string; refresh_token: string }> {
      const code = await codeThrough(browser, server.url, client.id, CALLBACK);
      const res = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(client.id, client.secret) } });
      assert.equal(res.status, 200);
      return res.body;
    }

    const adminApi = async (path: string, body?: Record<string, string>, method = 'POST') => {
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const response = await fetch(`${server.url}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token.body.access_token}`, ...(body && { 'content-type': 'application/json' }) },
        ...(body && { body: JSON.stringify(body) }),
      });
      return response.status;
    };

    /** Waits until the deliveries started so far are done (each succeeds or fails within seconds). */
    const delivered = async () => {
      await server.gatehouse.backChannelLogout.settled();
      await server.gatehouse.audit.flush();
    };
    const sidOf = (idToken: string) => decodeJwt(idToken).sid as string;
    /** The Logout Tokens received for `sub` at `path`. */
    const tokensFor = (path: string, sub: string) => receiver.at(path).filter((claims) => claims.sub === sub);

    it('puts the session’s sid in ID tokens, the same for every client of the session and after a refresh, and another in another session', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const fromFirst = await authorize(browser, first);
      const fromSecond = await authorize(browser, second);
      const sid = sidOf(fromFirst.id_token);
      assert.match(sid, /^[0-9a-f]{32}$/);
      assert.equal(sidOf(fromSecond.id_token), sid);
      assert.ok(!Object.values(Object.fromEntries(browser.cookies)).some((cookie) => cookie.includes(sid)), 'the sid is not the cookie');

      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: fromFirst.refresh_token }, { headers: { authorization: basic(first.id, first.secret) } });
      assert.equal(refreshed.status, 200);
      assert.equal(sidOf(refreshed.body.id_token), sid, 'OpenID Connect Core §12.2: a refreshed ID token keeps the claims');

      const other = await authorize(await signedIn(user.email), first);
      assert.notEqual(sidOf(other.id_token), sid);
    });

    it('puts the same sid in the ID tokens the authorization endpoint returns (response_type id_token, and id_token token) as in the code flow’s and the Logout Token', async () => {
      // Gatehouse supports no hybrid response type with a code (discovery lists code, token, id_token and
      // id_token token): these two are every ID token the authorization endpoint returns.
      const user = await aUser();
      const browser = await signedIn(user.email);
      const implicitIdToken = async (responseType: string) => {
        const query = new URLSearchParams({ response_type: responseType, client_id: legacy.id, redirect_uri: CALLBACK, scope: 'openid profile', state: 's', nonce: `n-${responseType}` });
        const answer = await browser.request(`${server.url}/authorize?${query}`);
        const idToken = new URLSearchParams(new URL(answer.location!).hash.slice(1)).get('id_token');
        assert.ok(idToken, `${responseType}: ${answer.location}`);
        return idToken;
      };
      const alone = await implicitIdToken('id_token');
      const withToken = await implicitIdToken('id_token token');
      const code = await authorize(browser, first);
      const sid = sidOf(code.id_token);
      assert.equal(sidOf(alone), sid);
      assert.equal(sidOf(withToken), sid);

      const page = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: alone })}`);
      assert.equal(page.status, 200);
      await delivered();
      assert.deepEqual(tokensFor('/implicit', user.id).map((claims) => [claims.aud, claims.sid]), [[legacy.id, sid]]);
      assert.deepEqual(tokensFor('/a', user.id).map((claims) => claims.sid), [sid]);
    });

    it('sends a Logout Token to an application registered in the developer portal', async () => {
      const developer = await aUser();
      const portal = await signedIn(developer.email);
      const form = await portal.request(`${server.url}/developers/new`);
      const typed = 'https://portal-app.example/backchannel-logout';
      const created = await portal.request(`${server.url}/developers/applications`, {
        form: { csrf: hiddenField(form.text, 'csrf'), form_id: hiddenField(form.text, 'form_id'), name: 'Portal app', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK, backchannel_logout_uri: typed, backchannel_logout_session_required: 'on' },
      });
      assert.equal(created.status, 200, created.text.slice(0, 1000));
      const readonly = (id: string) => new RegExp(`id="${id}" type="text" readonly value="([^"]*)"`).exec(created.text)![1]!;
      const app = { id: readonly('client-id'), secret: readonly('revealed-value') };
      const stored = (await server.gatehouse.storage.clients.find(app.id))!;
      assert.deepEqual([stored.backchannelLogoutUri, stored.backchannelLogoutSessionRequired], [typed, true]);
      // The receiver listens on loopback, where Gatehouse rightly posts nothing for a developer's
      // application (it is Gatehouse's own network, however the URI names it): so the application is
      // handed to the operator in storage, whose applications are posted to wherever they say, and
      // its URI pointed at the receiver.
      await server.gatehouse.storage.clients.update(app.id, { ownerUserId: null, backchannelLogoutUri: `${receiver.url}/portal` }, server.gatehouse.clock());
      server.gatehouse.clients.invalidate(app.id);

      const user = await aUser();
      const browser = await signedIn(user.email);
      const query = new URLSearchParams({ response_type: 'code', client_id: app.id, redirect_uri: CALLBACK, scope: 'openid profile', state: 's' });
      const consent = await browser.follow(`${server.url}/authorize?${query}`, server.url);
      assert.match(consent.text, /name="decision"/, 'a portal application is not first-party: the person consents');
      const answer = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(consent.text, 'csrf'), request: hiddenField(consent.text, 'request'), decision: 'allow' } });
      const code = new URL(answer.location!).searchParams.get('code');
      assert.ok(code, answer.text.slice(0, 300));
      const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(app.id, app.secret) } });
      assert.equal(tokens.status, 200);

      await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.body.id_token })}`);
      await delivered();
      assert.deepEqual(tokensFor('/portal', user.id).map((claims) => [claims.aud, claims.sid]), [[app.id, sidOf(tokens.body.id_token)]]);
    });

    it('says so in discovery', async () => {
      const metadata = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      assert.equal(metadata.backchannel_logout_supported, true);
      assert.equal(metadata.backchannel_logout_session_supported, true);
    });

    it('sends each client of a session ended by RP-initiated sign-out a Logout Token, and nobody else', async () => {
      const user = await aUser();
      const other = await aUser();
      const browser = await signedIn(user.email);
      const tokens = await authorize(browser, first);
      await authorize(browser, second);
      await authorize(browser, silent);
      // Another session of the same person, and another person's, each with a client.
      const otherSession = await signedIn(user.email);
      await authorize(otherSession, first);
      await authorize(await signedIn(other.email), first);

      const page = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.id_token })}`);
      assert.equal(page.status, 200);
      assert.match(page.text, /You are signed out/);
      await delivered();

      const [atFirst] = tokensFor('/a', user.id);
      const [atSecond] = tokensFor('/b', user.id);
      assert.equal(tokensFor('/a', user.id).length, 1, 'only the session that ended');
      assert.equal(tokensFor('/b', user.id).length, 1);
      assert.equal(tokensFor('/a', other.id).length, 0, 'nothing about another person');
      assert.equal(atFirst!.sid, sidOf(tokens.id_token));
      assert.equal(atSecond!.sid, sidOf(tokens.id_token));
      assert.equal(atFirst!.aud, first.id);
      assert.equal(atSecond!.aud, second.id);
      assert.deepEqual(atFirst!.events, { [BACKCHANNEL_LOGOUT_EVENT]: {} });
      assert.equal(atFirst!.nonce, undefined);
      assert.ok(typeof atFirst!.jti === 'string' && atFirst!.jti !== atSecond!.jti);
      assert.ok(atFirst!.exp! - atFirst!.iat! <= 300 && atFirst!.exp! > atFirst!.iat!);
      const received = receiver.received.find((r) => r.claims === atFirst)!;
      assert.equal(received.typ, 'logout+jwt');
      assert.equal(received.contentType, 'application/x-www-form-urlencoded');

      const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'backchannel_logout.delivered' });
      assert.deepEqual(events.map((e) => [e.clientId, e.outcome, e.data.status]).sort(), [[first.id, 'success', 200], [second.id, 'success', 200]].sort());
      assert.ok(!JSON.stringify(events).includes('eyJ'), 'never the token');
    });

    it('tells nobody when the person signs in again in the browser (prompt=login, max_age): their session goes on, under a new cookie; another person signing in there ends it', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const before = await authorize(browser, first);
      const oldCookie = browser.cookies.get('gatehouse_session')!;

      // A second application asks for a fresh sign-in (a step-up): the person types their password again.
      const query = new URLSearchParams({ response_type: 'code', client_id: second.id, redirect_uri: CALLBACK, scope: 'openid', state: 's', prompt: 'login' });
      const login = await browser.follow(`${server.url}/authorize?${query}`, server.url);
      const answer = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), email: user.email, password: PASSWORD } });
      const code = new URL(answer.location!).searchParams.get('code')!;
      const exchanged = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(second.id, second.secret) } });
      assert.equal(exchanged.status, 200);
      await delivered();
      assert.deepEqual(tokensFor('/a', user.id), [], 'the first application is not told its user signed out');
      assert.equal(sidOf(exchanged.body.id_token), sidOf(before.id_token), 'one session, one sid');
      assert.ok((decodeJwt(exchanged.body.id_token).auth_time as number) >= (decodeJwt(before.id_token).auth_time as number));
      assert.notEqual(browser.cookies.get('gatehouse_session'), oldCookie, 'a new cookie (no session fixation)');
      assert.equal(await server.gatehouse.sessions.resolve(oldCookie, server.gatehouse.clock()), undefined, 'the old cookie is worth nothing');

      // The session still answers for both: its end tells both applications, with the one sid.
      const other = await aUser();
      await signedInBrowser(server.url, other.email, PASSWORD, browser);
      await delivered();
      assert.deepEqual(tokensFor('/a', user.id).map((c) => c.sid), [sidOf(before.id_token)]);
      assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sidOf(before.id_token)]);
    });

    it('tells the clients of the sessions the account page ends: this one, and every other', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const hereTokens = await authorize(here, first);
      const elsewhere = await signedIn(user.email);
      const elsewhereTokens = await authorize(elsewhere, second);

      const account = await here.request(`${server.url}/account`);
      const signedOutElsewhere = await here.request(`${server.url}/account/sign-out-elsewhere`, { form: { csrf: hiddenField(account.text, 'csrf') } });
      assert.equal(signedOutElsewhere.status, 303);
      await delivered();
      assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sidOf(elsewhereTokens.id_token)]);
      assert.equal(tokensFor('/a', user.id).length, 0, 'this session goes on');

      // The account page's Sign out button: a confirmed sign-out from Gatehouse's own form.
      const again = await here.request(`${server.url}/account`);
      const signedOut = await here.request(`${server.url}/logout`, { form: { csrf: hiddenField(again.text, 'csrf'), confirm: 'yes' } });
      assert.equal(signedOut.status, 200);
      await delivered();
      assert.deepEqual(tokensFor('/a', user.id).map((c) => c.sid), [sidOf(hereTokens.id_token)]);
    });

    it('tells the clients of one other session the account page signs out, and no other session’s', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      await authorize(here, first);
      const elsewhere = await signedIn(user.email);
      const elsewhereTokens = await authorize(elsewhere, second);
      const sid = sidOf(elsewhereTokens.id_token);

      const account = await here.request(`${server.url}/account`);
      assert.ok(account.text.includes(`name="session" value="${sid}"`), 'its button names it by its sid');
      const signedOut = await here.request(`${server.url}/account/sessions/sign-out`, { form: { csrf: hiddenField(account.text, 'csrf'), session: sid } });
      assert.equal(signedOut.status, 303);
      await delivered();
      assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sid]);
      assert.equal(tokensFor('/a', user.id).length, 0, 'this session goes on');
    });

    it('tells the clients of the one session the admin API ends by its sid, and no other session’s', async () => {
      const user = await aUser();
      const kept = await signedIn(user.email);
      await authorize(kept, first);
      const ended = await signedIn(user.email);
      const sid = sidOf((await authorize(ended, second)).id_token);

      assert.equal(await adminApi(`/users/${user.id}/sessions/${sid}`, undefined, 'DELETE'), 204);
      await delivered();
      assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sid]);
      assert.equal(tokensFor('/a', user.id).length, 0, 'the other session goes on');
    });

    it('tells the clients of the sessions a password change on the account page ends, the one it was changed in too', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const hereTokens = await authorize(here, first);
      const elsewhereTokens = await authorize(await signedIn(user.email), second);

      const form = await here.request(`${server.url}/account/password`);
      const changed = await here.request(`${server.url}/account/password`, {
        form: { csrf: hiddenField(form.text, 'csrf'), current_password: PASSWORD, new_password: 'another long passphrase', confirm_password: 'another long passphrase' },
      });
      assert.equal(changed.status, 303);
      await delivered();
      assert.deepEqual(tokensFor('/a', user.id).map((c) => c.sid), [sidOf(hereTokens.id_token)]);
      assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sidOf(elsewhereTokens.id_token)]);
    });

    for (const [action, path, body, method, status] of [
      ['signs the user out', '/sign-out', undefined, 'POST', 204],
      ['resets the password', '/password', { password: 'a password set by an operator' }, 'POST', 204],
      ['disables the user', '/disable', undefined, 'POST', 200],
      ['deletes the user', '', undefined, 'DELETE', 204],
    ] as const) {
      it(`tells the clients of every session of a user when the admin API ${action}`, async () => {
        const user = await aUser();
        const bystander = await aUser();
        const one = await authorize(await signedIn(user.email), first);
        const two = await authorize(await signedIn(user.email), second);
        await authorize(await signedIn(bystander.email), first);

        assert.equal(await adminApi(`/users/${user.id}${path}`, body, method), status);
        await delivered();
        assert.deepEqual(tokensFor('/a', user.id).map((c) => c.sid), [sidOf(one.id_token)]);
        assert.deepEqual(tokensFor('/b', user.id).map((c) => c.sid), [sidOf(two.id_token)]);
        assert.equal(tokensFor('/a', bystander.id).length, 0);
      });
    }

    it('signs out at once whatever the receivers do: one answering 500 and one that never answers are audited as failed', async () => {
      const failing = await aWebClient('Failing', `${receiver.url}/failing`);
      const hanging = await aWebClient('Hanging', `${receiver.url}/hanging`);
      receiver.failing.add('/failing');
      receiver.hanging.add('/hanging');
      const user = await aUser();
      const browser = await signedIn(user.email);
      const tokens = await authorize(browser, failing);
      await authorize(browser, hanging);
      await authorize(browser, first);

      const started = Date.now();
      const page = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.id_token })}`);
      assert.equal(page.status, 200);
      assert.match(page.text, /You are signed out/);
      assert.ok(Date.now() - started < 1000, `the sign-out took ${Date.now() - started} ms`);
      assert.equal((await browser.request(`${server.url}/account`)).status, 302, 'signed out');

      await delivered();
      const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'backchannel_logout.delivered' });
      const outcome = (clientId: string) => events.filter((e) => e.clientId === clientId).map((e) => [e.outcome, e.data.status ?? e.data.reason]);
      assert.deepEqual(outcome(failing.id), [['failure', 500]]);
      assert.deepEqual(outcome(hanging.id), [['failure', 'no answer in time']]);
      assert.deepEqual(outcome(first.id), [['success', 200]]);
      assert.equal(tokensFor('/hanging', user.id).length, 1, 'it was sent, once');
    });

    it('follows no redirect: a receiver answering 307 gets the Logout Token once, where it was registered, and the delivery is audited as failed', async () => {
      const redirecting = await aWebClient('Redirecting', `${receiver.url}/moved`);
      receiver.redirecting.set('/moved', `${receiver.url}/elsewhere`);
      const user = await aUser();
      const browser = await signedIn(user.email);
      const tokens = await authorize(browser, redirecting);
      assert.match((await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.id_token })}`)).text, /You are signed out/);
      await delivered();
      assert.equal(tokensFor('/moved', user.id).length, 1);
      assert.equal(tokensFor('/elsewhere', user.id).length, 0, 'nothing was posted where the redirect pointed');
      const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'backchannel_logout.delivered' });
      assert.deepEqual(
        events.map((event) => [event.clientId, event.outcome, event.data.status, event.data.reason]),
        [[redirecting.id, 'failure', 307, 'redirect not followed']],
      );
    });

    it('posts a few Logout Tokens at a time when many sessions end at once, and every one of them', async () => {
      const slow = await aWebClient('Slow', `${receiver.url}/slow`);
      receiver.slow.add('/slow');
      receiver.mostAtOnce = 0;
      const user = await aUser();
      // Sessions as sign-ins leave them, each answered for the client: an operator then ends them all.
      const now = server.gatehouse.clock();
      for (let i = 0; i < 40; i++) await server.gatehouse.storage.sessions.addClient(digestOf((await server.gatehouse.sessions.start(user.id, now, { address: '127.0.0.1', userAgent: undefined }))!), slow.id);

      assert.equal(await adminApi(`/users/${user.id}/sign-out`), 204);
      await delivered();
      assert.equal(tokensFor('/slow', user.id).length, 40);
      assert.ok(receiver.mostAtOnce <= BACKCHANNEL_LOGOUT_CONCURRENCY, `${receiver.mostAtOnce} Logout Tokens were being posted at once`);
    });

    it('posts the Logout Tokens of other clients while one client’s receiver hangs on many: it holds no more than a few places at once', async () => {
      const hanging = await aWebClient('Hanging on many', `${receiver.url}/hanging-many`);
      receiver.hanging.add('/hanging-many');
      const user = await aUser();
      const now = server.gatehouse.clock();
      for (let i = 0; i < 10; i++) await server.gatehouse.storage.sessions.addClient(digestOf((await server.gatehouse.sessions.start(user.id, now, { address: '127.0.0.1', userAgent: undefined }))!), hanging.id);
      assert.equal(await adminApi(`/users/${user.id}/sign-out`), 204);

      // Someone else signs out of another application meanwhile.
      const other = await aUser();
      const browser = await signedIn(other.email);
      const tokens = await authorize(browser, first);
      assert.match((await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: tokens.id_token })}`)).text, /You are signed out/);
      await delivered();
      const arrived = receiver.received.findIndex((r) => r.path === '/a' && r.claims.sub === other.id);
      assert.ok(arrived >= 0, 'the other application was told');
      const hangingBefore = receiver.received.slice(0, arrived).filter((r) => r.path === '/hanging-many').length;
      assert.ok(hangingBefore <= BACKCHANNEL_LOGOUT_PER_CLIENT, `${hangingBefore} Logout Tokens to the hanging receiver went before the other application’s`);
      assert.equal(tokensFor('/hanging-many', user.id).length, 10, 'every one of them was posted in the end');
    });

    /** A TCP listener at `host` that records every connection made to it (and closes it). */
    const listening = async (t: TestContext, host: string) => {
      const connections: string[] = [];
      const listener = createTcpServer((socket) => {
        connections.push(socket.remoteAddress ?? '');
        socket.destroy();
      });
      await new Promise<void>((resolve) => listener.listen(0, host, resolve));
      t.after(() => new Promise((resolve) => listener.close(resolve)));
      return { connections, port: (listener.address() as { port: number }).port };
    };
    /** A developer's application whose back-channel logout URI is `uri`, registered as the portal does. */
    const developersApplication = async (name: string, uri: string) => {
      const developer = await aUser();
      const { client } = await createClient(
        server.gatehouse,
        { name, type: 'confidential', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK], firstParty: true, ownerUserId: developer.id, backchannelLogoutUri: uri },
        server.gatehouse.clock(),
        undefined,
        'developer',
      );
      return client;
    };
    /** Ends a session the client was answered through, and checks its delivery was refused as internal. */
    const assertRefusedAsInternal = async (clientId: string) => {
      const user = await aUser();
      await server.gatehouse.storage.sessions.addClient(digestOf((await server.gatehouse.sessions.start(user.id, server.gatehouse.clock(), { address: '127.0.0.1', userAgent: undefined }))!), clientId);
      assert.equal(await adminApi(`/users/${user.id}/sign-out`), 204);
      await delivered();
      const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'backchannel_logout.delivered' });
      assert.deepEqual(
        events.map((event) => [event.clientId, event.outcome, event.data.reason]),
        [[clientId, 'failure', 'the host is, or resolves only to, addresses in Gatehouse’s own network']],
      );
    };

    it('posts nothing into its own network for a developer’s application whose host name resolves there', async (t) => {
      // The server's own host name resolves to an address of its own on most machines (Debian's
      // /etc/hosts: 127.0.1.1; a container's: its private address), as an attacker's DNS name may.
      const name = hostname();
      const addresses = await lookup(name, { all: true }).catch(() => []);
      if (addresses.length === 0 || addresses.some(({ address }) => internalRange(address) === undefined)) {
        t.skip(`${name} does not resolve to internal addresses only here`);
        return;
      }
      const { connections, port } = await listening(t, addresses[0]!.address);
      const uri = `https://${name}:${port}/backchannel-logout`;
      const client = await developersApplication('Resolves inside', uri);
      assert.equal(client.backchannelLogoutUri, uri, 'a name is not resolved at registration');
      await assertRefusedAsInternal(client.id);
      assert.deepEqual(connections, [], 'no connection was made');
    });

    it('posts nothing to a developer’s application whose host name resolves to a multicast address', async (t) => {
      // Debian's and Docker's /etc/hosts name the all-nodes multicast group ff02::1 ip6-allnodes:
      // a name that leads to every host on Gatehouse's own link, as an attacker's DNS name may.
      const name = 'ip6-allnodes';
      const addresses = await lookup(name, { all: true }).catch(() => []);
      if (addresses.length === 0 || addresses.some(({ address }) => address !== 'ff02::1')) {
        t.skip(`${name} does not resolve to ff02::1 only here`);
        return;
      }
      await assertRefusedAsInternal((await developersApplication('Resolves to multicast', `https://${name}:8443/backchannel-logout`)).id);
    });

    it('posts nothing to a developer’s application whose stored URI names an internal IP address, as one registered before its range was counted internal may', async (t) => {
      const { connections, port } = await listening(t, '127.0.0.1');
      const client = await developersApplication('Stored before', 'https://rp.example.com/backchannel-logout');
      // Registration refuses this URI; a row can hold it from before.
      await server.gatehouse.storage.clients.update(client.id, { backchannelLogoutUri: `http://127.0.0.1:${port}/backchannel-logout` }, server.gatehouse.clock());
      await assertRefusedAsInternal(client.id);
      assert.deepEqual(connections, [], 'no connection was made');
    });

    it('sends nothing for a session no client was answered through', async () => {
      const user = await aUser();
      const browser = await signedIn(user.email);
      const account = await browser.request(`${server.url}/account`);
      await browser.request(`${server.url}/logout`, { form: { csrf: hiddenField(account.text, 'csrf'), confirm: 'yes' } });
      await delivered();
      await sleep(10);
      assert.equal(receiver.received.filter((r) => r.claims.sub === user.id).length, 0);
    });
  });

  describe(`back-channel logout with few Logout Tokens allowed to wait (${dialect})`, { timeout: 120_000 }, () => {
    /** Waiting places in all; a client may take a tenth of them (MAX_LOGOUTS_WAITING's share). */
    const WAITING = 20;
    let server: TestServer;
    let receiver: Receiver;
    let admin: { id: string; secret: string };

    before(async () => {
      server = await startTestServer(dialect, { maxLogoutsWaiting: WAITING });
      receiver = new Receiver(createRemoteJWKSet(new URL(`${server.url}/jwks.json`)), server.url);
      await receiver.start();
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
    });
    after(async () => {
      await receiver.close();
      await server.close();
    });

    it('keeps no more Logout Tokens of one client waiting than its share: the others are not sent, audited as failed, and another client’s still go', async () => {
      const aClient = (name: string, path: string) =>
        server.client({ name, grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK], firstParty: true, backchannelLogoutUri: `${receiver.url}${path}` });
      const hanging = await aClient('Hanging', '/hanging');
      const answering = await aClient('Answering', '/answering');
      receiver.hanging.add('/hanging');
      const user = await server.user(`bcl-bound-${dialect}@example.com`, PASSWORD);
      const now = server.gatehouse.clock();
      const sessionThrough = async (clientId: string) =>
        server.gatehouse.storage.sessions.addClient(digestOf((await server.gatehouse.sessions.start(user.id, now, { address: '127.0.0.1', userAgent: undefined }))!), clientId);
      for (let i = 0; i < 12; i++) await sessionThrough(hanging.id);
      await sessionThrough(answering.id);

      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const signOut = await fetch(`${server.url}/admin/v1/users/${user.id}/sign-out`, { method: 'POST', headers: { authorization: `Bearer ${token.body.access_token}` } });
      assert.equal(signOut.status, 204);
      await server.gatehouse.backChannelLogout.settled();
      await server.gatehouse.audit.flush();

      const share = Math.ceil(WAITING / 10);
      const posted = receiver.at('/hanging').length;
      assert.ok(posted <= BACKCHANNEL_LOGOUT_PER_CLIENT + share, `${posted} Logout Tokens were posted to the hanging receiver`);
      assert.equal(receiver.at('/answering').length, 1, 'the other client was told');
      const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'backchannel_logout.delivered' });
      const reasons = events.filter((e) => e.clientId === hanging.id).map((e) => e.data.reason);
      assert.equal(reasons.length, 12, 'each one audited');
      assert.equal(reasons.filter((reason) => reason === 'no answer in time').length, posted);
      assert.equal(reasons.filter((reason) => reason === 'too many Logout Tokens waiting for the client').length, 12 - posted);
    });
  });
}

describe('back-channel logout: name lookups', { timeout: 60_000 }, () => {
  it('looks the receivers’ names up LOOKUP_THREADS at a time, however many deliveries are under way', async (t) => {
    // Each lookup answers after a moment, as a slow DNS server would; getaddrinfo would hold a
    // thread of libuv's pool meanwhile, and every token signature queued behind it.
    let atOnce = 0;
    let mostAtOnce = 0;
    const looked: string[] = [];
    const lookup: NameLookup = (hostname, options, callback) => {
      looked.push(hostname);
      mostAtOnce = Math.max(mostAtOnce, ++atOnce);
      setTimeout(() => {
        atOnce--;
        if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
        else callback(null, '127.0.0.1', 4);
      }, 100);
    };
    const server = await startTestServer('sqlite', { lookup });
    t.after(() => server.close());
    // Nobody listens there: each delivery fails once its name is looked up, which is all this needs.
    const port = await freePort();
    const apps = [];
    for (const i of [1, 2, 3]) {
      apps.push(await server.client({ name: `Named ${i}`, grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK], firstParty: true, backchannelLogoutUri: `https://rp-${i}.example:${port}/logout` }));
    }
    const user = await server.user('named-receivers@example.com', PASSWORD);
    const browser = await signedInBrowser(server.url, user.email, PASSWORD);
    for (const app of apps) {
      const code = await codeThrough(browser, server.url, app.id, CALLBACK, 'openid');
      assert.equal((await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(app.id, app.secret) } })).status, 200);
    }
    const account = await browser.request(`${server.url}/account`);
    await browser.request(`${server.url}/logout`, { form: { csrf: hiddenField(account.text, 'csrf'), confirm: 'yes' } });
    await server.gatehouse.backChannelLogout.settled();

    assert.deepEqual(looked.sort(), ['rp-1.example', 'rp-2.example', 'rp-3.example']);
    assert.equal(mostAtOnce, Math.min(LOOKUP_THREADS, apps.length), `${mostAtOnce} lookups at once`);
  });
});
