import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { countRows, DIALECTS } from '../support/databases.ts';
import { codeThrough, HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { sendRaw } from '../support/raw-http.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { updateClient } from '../../src/core/applications.ts';

const CALLBACK = 'https://app.example/callback';

for (const dialect of DIALECTS) {
  describe(`authorization endpoint and code exchange (${dialect})`, () => {
    let server: TestServer;
    let now = Math.floor(Date.now() / 1000);
    /** When set, every reading of the clock moves it on a second (each step of a request falls in a second of its own). */
    let ticking = false;
    let web: { id: string; secret: string };
    let other: { id: string; secret: string };
    let spa: { id: string; secret: string };
    let machine: { id: string; secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery' };

    before(async () => {
      server = await startTestServer(dialect, { clock: () => (ticking ? ++now : now) });
      const scopes = ['openid', 'profile', 'email', 'objects:read', 'objects:download'];
      web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK, 'http://127.0.0.1:8080/native'] });
      other = await server.client({ name: 'Other app', grantTypes: ['authorization_code'], scopes, redirectUris: [CALLBACK] });
      machine = await server.client({ name: 'Machine', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
      spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK] });
      await server.user(user.email, user.password);
    });
    after(() => server.close());

    const authorizeUrl = (params: Record<string, string>) => `${server.url}/authorize?${new URLSearchParams({ response_type: 'code', redirect_uri: CALLBACK, scope: 'openid objects:read', state: 'st-1', ...params })}`;

    /** Signs in and consents in a fresh browser; returns the browser and the callback URL. */
    async function authorize(params: Record<string, string>, browser = new HttpBrowser()): Promise<{ browser: HttpBrowser; callback: URL }> {
      let page = await browser.follow(authorizeUrl(params), server.url);
      if (page.text.includes('name="password"')) {
        page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
      }
      if (page.text.includes('name="decision"')) {
        page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      }
      assert.ok(page.location, `expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 300)}`);
      return { browser, callback: new URL(page.location) };
    }

    const exchange = (code: string, client = web, extra: Record<string, string> = {}) =>
      post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK, ...extra }, client.secret ? { headers: { authorization: basic(client.id, client.secret) } } : {});

    it('returns a code with the state and iss, and exchanges it once for tokens', async () => {
      const { callback } = await authorize({ client_id: web.id });
      assert.equal(callback.origin + callback.pathname, CALLBACK);
      assert.equal(callback.searchParams.get('state'), 'st-1');
      assert.equal(callback.searchParams.get('iss'), server.config.issuer);
      const res = await exchange(callback.searchParams.get('code')!);
      assert.equal(res.status, 200);
      assert.ok(res.body.access_token && res.body.refresh_token && res.body.id_token);
      assert.equal(res.headers.get('cache-control'), 'no-store');
    });

    it('shows an error page and never redirects for an unregistered redirect_uri', async () => {
      const browser = new HttpBrowser();
      for (const redirect of ['https://evil.example/callback', `${CALLBACK}/../evil`, `${CALLBACK}?x=1`, 'https://app.example/callback#frag', 'https://APP.example/callback']) {
        const page = await browser.request(authorizeUrl({ client_id: web.id, redirect_uri: redirect }));
        assert.equal(page.status, 400, redirect);
        assert.equal(page.location, undefined, redirect);
        assert.match(page.text, /not registered/);
      }
    });

    it('shows an error page, and keeps nothing waiting, for an OpenID Connect request without redirect_uri, though the client has one registered URI (OpenID Connect Core §3.1.2.1: REQUIRED); a plain OAuth request may leave it out (RFC 6749 §3.1.2.3)', async () => {
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const withoutRedirectUri = (params: Record<string, string>) => {
        const url = new URL(authorizeUrl({ client_id: other.id, ...params }));
        url.searchParams.delete('redirect_uri');
        return url.toString();
      };
      const waiting = await countRows(server.database, 'authorization_requests');
      for (const scope of ['openid objects:read', 'objects:read openid', 'openid']) {
        for (const prompt of [{}, { prompt: 'none' }] as Record<string, string>[]) {
          const page = await browser.request(withoutRedirectUri({ scope, ...prompt }));
          assert.equal(page.status, 400, scope);
          assert.equal(page.location, undefined, scope);
          assert.match(page.text, /redirect_uri is missing/);
        }
      }
      assert.equal(await countRows(server.database, 'authorization_requests'), waiting, 'no request is kept waiting');
      let oauth = await browser.follow(withoutRedirectUri({ scope: 'objects:read' }), server.url);
      if (oauth.text.includes('name="decision"')) {
        oauth = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(oauth.text, 'csrf'), request: hiddenField(oauth.text, 'request'), decision: 'allow' } });
      }
      assert.ok(oauth.location?.startsWith(`${CALLBACK}?code=`), `a plain OAuth request is answered at the one registered URI, got ${oauth.status}`);
    });

    it('shows an error page for an unknown client', async () => {
      const page = await new HttpBrowser().request(authorizeUrl({ client_id: 'app_unknown' }));
      assert.equal(page.status, 400);
      assert.equal(page.location, undefined);
    });

    it('allows any port on a registered loopback redirect URI (RFC 8252 §7.3)', async () => {
      const { callback } = await authorize({ client_id: web.id, redirect_uri: 'http://127.0.0.1:51234/native' });
      assert.equal(callback.origin, 'http://127.0.0.1:51234');
      const res = await exchange(callback.searchParams.get('code')!, web, { redirect_uri: 'http://127.0.0.1:51234/native' });
      assert.equal(res.status, 200);
    });

    it('keeps the query the redirect URI was registered with as written, adding code, state and iss, which replace parameters of their names (RFC 6749 §3.1.2)', async () => {
      // Not UTF-8 (%E9), a name without "=", an unencoded "/": each reads otherwise once decoded and encoded again.
      const kept = 'tenant=caf%E9&flag&path=/a/b';
      const registered = `${CALLBACK}?${kept}&state=registered&iss=elsewhere`;
      const queried = await server.client({ name: 'Queried app', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [registered] });
      const { browser, callback } = await authorize({ client_id: queried.id, redirect_uri: registered, scope: 'openid' });
      assert.ok(callback.href.startsWith(`${CALLBACK}?${kept}&code=`), callback.href);
      assert.deepEqual([callback.searchParams.getAll('state'), callback.searchParams.getAll('iss')], [['st-1'], [server.config.issuer]]);
      const res = await exchange(callback.searchParams.get('code')!, queried, { redirect_uri: registered });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      // An error goes there the same way; the fragment leaves the query alone.
      const refused = await browser.request(authorizeUrl({ client_id: queried.id, redirect_uri: registered, scope: 'objects:read' }));
      assert.ok(refused.location?.startsWith(`${CALLBACK}?${kept}&error=invalid_scope&`), refused.location);
      assert.deepEqual(new URL(refused.location!).searchParams.getAll('state'), ['st-1']);
      const fragment = await browser.request(authorizeUrl({ client_id: queried.id, redirect_uri: registered, scope: 'objects:read', response_mode: 'fragment' }));
      assert.ok(fragment.location?.startsWith(`${registered}#error=invalid_scope&`), fragment.location);
    });

    it('refuses a reused code and revokes the refresh token issued from its first use', async () => {
      const { callback } = await authorize({ client_id: web.id });
      const code = callback.searchParams.get('code')!;
      const first = await exchange(code);
      assert.equal(first.status, 200);
      const second = await exchange(code);
      assert.equal(second.status, 400);
      assert.equal(second.body.error, 'invalid_grant');
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.body.refresh_token }, { headers: { authorization: basic(web.id, web.secret) } });
      assert.equal(refreshed.body.error, 'invalid_grant');
      const jti = JSON.parse(Buffer.from(first.body.access_token.split('.')[1], 'base64url').toString()).jti;
      assert.ok(await server.gatehouse.storage.revocations.isJtiRevoked(jti), 'the access token from the first use is revoked');
    });

    it('refuses a code presented by another client, without consuming it', async () => {
      const { callback } = await authorize({ client_id: web.id });
      const code = callback.searchParams.get('code')!;
      const stolen = await exchange(code, other);
      assert.equal(stolen.body.error, 'invalid_grant');
      assert.equal((await exchange(code)).status, 200);
    });

    it('refuses an expired code', async () => {
      const { callback } = await authorize({ client_id: web.id });
      now += 601;
      try {
        const res = await exchange(callback.searchParams.get('code')!);
        assert.equal(res.body.error, 'invalid_grant');
        assert.match(res.body.error_description, /expired/);
      } finally {
        now -= 601;
      }
    });

    it('refuses a redirect_uri at the exchange that differs from the authorization request', async () => {
      const { callback } = await authorize({ client_id: web.id });
      const res = await exchange(callback.searchParams.get('code')!, web, { redirect_uri: 'https://app.example/other' });
      assert.equal(res.body.error, 'invalid_grant');
    });

    it('refuses a code sent to a redirect URI the client no longer has, as the operator removed it meanwhile; a code for one it keeps is exchanged', async () => {
      const LOST = 'https://lost.example/callback';
      const moving = await server.client({ name: 'Moving app', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK, LOST] });
      const { callback: toLost } = await authorize({ client_id: moving.id, redirect_uri: LOST });
      const { callback: toKept } = await authorize({ client_id: moving.id });
      // The domain was lost: whoever holds it now received the code meant for the application.
      assert.ok(await updateClient(server.gatehouse, moving.id, { redirectUris: [CALLBACK] }, now));
      const refused = await exchange(toLost.searchParams.get('code')!, moving, { redirect_uri: LOST });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.equal(refused.body.error, 'invalid_grant');
      const kept = await exchange(toKept.searchParams.get('code')!, moving);
      assert.equal(kept.status, 200, JSON.stringify(kept.body));
    });

    it('answers a request that waited for the person by the client as registered now: a redirect URI removed meanwhile gets an error page, a scope removed meanwhile invalid_scope at the redirect URI', async () => {
      const LOST = 'https://lost.example/callback';
      const changing = await server.client({ name: 'Changing app', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK, LOST] });
      /** Signs in for a new request in a fresh browser, up to its consent page. */
      const atConsent = async (params: Record<string, string>) => {
        const browser = new HttpBrowser();
        const login = await browser.follow(authorizeUrl({ client_id: changing.id, ...params }), server.url);
        const consent = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...user } });
        assert.match(consent.text, /name="decision"/);
        return { browser, form: { csrf: hiddenField(consent.text, 'csrf'), request: hiddenField(consent.text, 'request'), decision: 'allow' } };
      };

      const toLost = await atConsent({ redirect_uri: LOST });
      const narrowed = await atConsent({});
      assert.ok(await updateClient(server.gatehouse, changing.id, { redirectUris: [CALLBACK] }, now));
      const refused = await toLost.browser.follow(`${server.url}/consent`, server.url, { form: toLost.form });
      assert.equal(refused.status, 400);
      assert.equal(refused.location, undefined, 'nothing goes to the address the client gave up');

      assert.ok(await updateClient(server.gatehouse, changing.id, { scopes: ['openid'] }, now));
      const answered = await narrowed.browser.follow(`${server.url}/consent`, server.url, { form: narrowed.form });
      const location = new URL(answered.location!);
      assert.equal(location.origin + location.pathname, CALLBACK);
      assert.equal(location.searchParams.get('error'), 'invalid_scope');
      assert.equal(location.searchParams.get('state'), 'st-1');
      assert.equal(location.searchParams.get('iss'), server.config.issuer);
      assert.equal(location.searchParams.get('code'), null);
    });

    it('answers a request without PKCE that waited for the person, its client made public meanwhile, with invalid_request at the redirect URI, as a new one; no code is stored', async () => {
      const going = await server.client({ name: 'Going public', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK] });
      const browser = new HttpBrowser();
      const login = await browser.follow(authorizeUrl({ client_id: going.id }), server.url);
      const consent = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...user } });
      assert.match(consent.text, /name="decision"/);
      assert.ok(await updateClient(server.gatehouse, going.id, { type: 'public' }, now));

      const codes = await countRows(server.database, 'authorization_codes');
      const answered = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(consent.text, 'csrf'), request: hiddenField(consent.text, 'request'), decision: 'allow' } });
      const location = new URL(answered.location!);
      assert.equal(location.origin + location.pathname, CALLBACK);
      assert.equal(location.searchParams.get('error'), 'invalid_request');
      assert.equal(location.searchParams.get('state'), 'st-1');
      assert.equal(location.searchParams.get('code'), null);
      assert.equal(await countRows(server.database, 'authorization_codes'), codes, 'no code is stored');
    });

    it('refuses with invalid_grant the code of a user disabled while it was exchanged, and stores no grant', async (t: TestContext) => {
      const email = `disabled.during.exchange.${dialect}@example.com`;
      const disabled = await server.user(email, 'a long enough password');
      const first = await server.client({ name: 'First-party app', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK], firstParty: true });
      const browser = await signedInBrowser(server.url, email, 'a long enough password');
      const code = await codeThrough(browser, server.url, first.id, CALLBACK, 'openid objects:read');
      // The operator's disabling is stored right after the exchange read the user, before the
      // user's sessions (and the codes issued through them) are ended: another instance, at once.
      const users = server.gatehouse.storage.users;
      const findById = users.findById.bind(users);
      t.mock.method(users, 'findById', async (id: string) => {
        const found = await findById(id);
        if (id === disabled.id && found?.disabledAt === null) await users.setDisabled(id, now, now);
        return found;
      });
      const res = await exchange(code, first);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.deepEqual(res.body, { error: 'invalid_grant', error_description: 'the authorization code is invalid' });
      assert.deepEqual(await server.gatehouse.storage.grants.list({ userId: disabled.id }), []);
    });

    describe('PKCE (RFC 7636)', () => {
      const verifier = () => randomBytes(32).toString('base64url');
      const challenge = (v: string) => createHash('sha256').update(v).digest('base64url');

      it('completes for a public client with S256', async () => {
        const v = verifier();
        const { callback } = await authorize({ client_id: spa.id, code_challenge: challenge(v), code_challenge_method: 'S256' });
        const res = await exchange(callback.searchParams.get('code')!, spa, { client_id: spa.id, code_verifier: v });
        assert.equal(res.status, 200);
        assert.ok(res.body.refresh_token);
      });

      it('refuses a wrong code_verifier', async () => {
        const { callback } = await authorize({ client_id: spa.id, code_challenge: challenge(verifier()), code_challenge_method: 'S256' });
        const res = await exchange(callback.searchParams.get('code')!, spa, { client_id: spa.id, code_verifier: verifier() });
        assert.equal(res.body.error, 'invalid_grant');
      });

      it('refuses a public client without PKCE, at the redirect URI', async () => {
        const page = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id }));
        const location = new URL(page.location!);
        assert.equal(location.searchParams.get('error'), 'invalid_request');
        assert.equal(location.searchParams.get('state'), 'st-1');
        assert.equal(location.searchParams.get('iss'), server.config.issuer);
      });

      it('refuses an S256 challenge that is not a SHA-256 digest in base64url (43 characters), in the response mode asked for, and keeps no request waiting', async () => {
        // RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), unpadded — 43 characters,
        // the last of which holds 4 bits of the digest and 2 zero bits. No verifier hashes to anything else.
        const genuine = challenge(verifier());
        const waiting = await countRows(server.database, 'authorization_requests');
        for (const bad of [genuine.slice(0, 42), `${genuine}A`, verifier() + verifier() + verifier().slice(0, 42), `${genuine.slice(0, 42)}~`, `.${genuine.slice(1)}`, `${genuine.slice(0, 42)}=`, `${genuine}=`, `${genuine.slice(0, 42)}B`, `${genuine.slice(0, 42)}_`, 'x'.repeat(43)]) {
          for (const responseMode of ['query', 'fragment']) {
            const page = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id, code_challenge: bad, code_challenge_method: 'S256', response_mode: responseMode }));
            assert.ok(page.location?.startsWith(CALLBACK), `${bad}: expected a redirect to the client, got ${page.status}`);
            const location = new URL(page.location!);
            const answer = responseMode === 'fragment' ? new URLSearchParams(location.hash.slice(1)) : location.searchParams;
            assert.equal(answer.get('error'), 'invalid_request', bad);
            assert.match(answer.get('error_description')!, /code_challenge/, bad);
            assert.equal(answer.get('state'), 'st-1', bad);
            assert.equal(answer.get('iss'), server.config.issuer, bad);
          }
          const posted = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id, code_challenge: bad, code_challenge_method: 'S256', response_mode: 'form_post' }));
          assert.equal(posted.status, 200, bad);
          assert.match(posted.text, /<form method="post" action="https:\/\/app\.example\/callback" id="form-post"/, bad);
          assert.equal(hiddenField(posted.text, 'error'), 'invalid_request', bad);
        }
        assert.equal(await countRows(server.database, 'authorization_requests'), waiting, 'nothing was stored');
        // Every last character a digest can end with is taken.
        for (const last of 'AEIMQUYcgkosw048') {
          const page = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id, code_challenge: `${genuine.slice(0, 42)}${last}`, code_challenge_method: 'S256' }));
          assert.match(page.location ?? '', /^\/login\?request=/, last);
        }
      });

      it('refuses the plain method unless configured', async () => {
        const page = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id, code_challenge: verifier(), code_challenge_method: 'plain' }));
        assert.equal(new URL(page.location!).searchParams.get('error'), 'invalid_request');
      });

      it('enforces PKCE at the exchange when a confidential client used it', async () => {
        const { callback } = await authorize({ client_id: web.id, code_challenge: challenge(verifier()), code_challenge_method: 'S256' });
        const res = await exchange(callback.searchParams.get('code')!);
        assert.equal(res.body.error, 'invalid_grant');
      });

      it('refuses a code_verifier for a code issued without a challenge (downgrade, RFC 9700 §2.1.1)', async () => {
        const { callback } = await authorize({ client_id: web.id });
        const res = await exchange(callback.searchParams.get('code')!, web, { code_verifier: verifier() });
        assert.equal(res.body.error, 'invalid_grant');
      });
    });

    it('refuses implicit for a client not allowed it (and while the operator has it off)', async () => {
      const page = await new HttpBrowser().request(authorizeUrl({ client_id: web.id, response_type: 'token' }));
      const location = new URL(page.location!);
      const params = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
      assert.equal(params.get('error'), 'unsupported_response_type');
      assert.equal(params.get('state'), 'st-1');
    });

    it('refuses the consent form posted without its CSRF token, and authorizes nothing', async () => {
      const browser = new HttpBrowser();
      let page = await browser.follow(authorizeUrl({ client_id: web.id, scope: 'openid email' }), server.url);
      page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
      assert.match(page.text, /wants to access your account/);
      const request = hiddenField(page.text, 'request');
      const forged = await browser.request(`${server.url}/consent`, { form: { request, decision: 'allow' } });
      assert.equal(forged.status, 403);
      assert.equal(forged.location, undefined);
      const wrong = await browser.request(`${server.url}/consent`, { form: { request, decision: 'allow', csrf: 'x'.repeat(43) } });
      assert.equal(wrong.status, 403);
      const consent = await server.gatehouse.storage.consents.find((await server.gatehouse.storage.users.findByEmail(user.email))!.id, web.id);
      assert.ok(!consent?.scopes.includes('email'), 'nothing was consented');
    });

    it('refuses the login form posted without its CSRF token', async () => {
      const browser = new HttpBrowser();
      await browser.request(`${server.url}/login`);
      const res = await browser.request(`${server.url}/login`, { form: user });
      assert.equal(res.status, 403);
      assert.equal(browser.cookies.has('gatehouse_session'), false);
    });

    it('answers prompt=none without a session with login_required', async () => {
      const page = await new HttpBrowser().request(authorizeUrl({ client_id: web.id, prompt: 'none' }));
      const location = new URL(page.location!);
      assert.equal(location.searchParams.get('error'), 'login_required');
      assert.equal(location.searchParams.get('state'), 'st-1');
    });

    it('answers prompt=none with a session but no consent with consent_required', async () => {
      const { browser } = await authorize({ client_id: web.id });
      const page = await browser.request(authorizeUrl({ client_id: other.id, prompt: 'none' }));
      assert.equal(new URL(page.location!).searchParams.get('error'), 'consent_required');
    });

    it('signs in once for every client (single sign-on) and remembers consent', async () => {
      const { browser } = await authorize({ client_id: web.id });
      const again = await browser.request(authorizeUrl({ client_id: web.id }));
      assert.ok(again.location?.startsWith(CALLBACK), 'no login form, no consent page the second time');
      const page = await browser.follow(authorizeUrl({ client_id: other.id }), server.url);
      assert.match(page.text, /Other app wants to access/, 'another client asks for consent but not for a password');
    });

    it('asks for the password again with prompt=login', async () => {
      const { browser } = await authorize({ client_id: web.id });
      const page = await browser.follow(authorizeUrl({ client_id: web.id, prompt: 'login' }), server.url);
      assert.match(page.text, /name="password"/);
    });

    it('shows the sign-in page for prompt=select_account, where the person may choose another account than the signed-in one (OpenID Connect Core §3.1.2.1)', async () => {
      const other = { email: 'select-account@example.com', password: 'yet another horse battery' };
      const { id: otherId } = await server.user(other.email, other.password);
      const { browser } = await authorize({ client_id: web.id });
      const login = await browser.follow(authorizeUrl({ client_id: web.id, prompt: 'select_account' }), server.url);
      assert.match(login.text, /name="password"/, 'the signed-in account is not chosen for the person');
      let page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...other } });
      if (page.text.includes('name="decision"')) page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      assert.ok(page.location?.startsWith(CALLBACK), `expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 300)}`);
      const res = await exchange(new URL(page.location!).searchParams.get('code')!);
      assert.equal(JSON.parse(Buffer.from(res.body.id_token.split('.')[1], 'base64url').toString()).sub, otherId);
    });

    /**
     * The waiting request `pendingId` asked for a sign-in: the signed-in `browser` is sent to the
     * sign-in page by the consent page and by its form alike; signing in again lets the request go
     * on, and the ID token says when.
     */
    async function expectFreshSignIn(browser: HttpBrowser, pendingId: string): Promise<void> {
      const consentPage = await browser.follow(`${server.url}/consent?request=${pendingId}`, server.url);
      assert.match(consentPage.text, /name="password"/, 'the consent page sends the person to sign in');
      assert.doesNotMatch(consentPage.text, /name="decision"/);
      const answered = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(consentPage.text, 'csrf'), request: pendingId, decision: 'allow' } });
      assert.equal(answered.location, undefined, 'no code goes back to the client');
      assert.match(answered.text, /name="password"/);

      let page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(answered.text, 'csrf'), request: pendingId, ...user } });
      const signedInAt = now;
      if (page.text.includes('name="decision"')) {
        now += 3;
        page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: pendingId, decision: 'allow' } });
      }
      const code = new URL(page.location!).searchParams.get('code')!;
      const res = await exchange(code, other);
      assert.equal(res.status, 200);
      const idToken = JSON.parse(Buffer.from(res.body.id_token.split('.')[1], 'base64url').toString());
      assert.equal(idToken.auth_time, signedInAt);
    }

    for (const params of [{ prompt: 'login' }, { prompt: 'consent login' }, { prompt: 'select_account' }, { max_age: '0' }, { max_age: '0', prompt: 'consent' }] as Record<string, string>[]) {
      it(`never lets the old session skip the sign-in that ${JSON.stringify(params)} asked for by going to the consent page`, async () => {
        const { browser } = await authorize({ client_id: other.id });
        now += 5;
        const login = await browser.follow(authorizeUrl({ client_id: other.id, nonce: 'n-1', ...params }), server.url);
        assert.match(login.text, /name="password"/);
        await expectFreshSignIn(browser, hiddenField(login.text, 'request'));
      });
    }

    it('accepts with max_age=0 the sign-in just made for the request, though the clock moved on a second since', async () => {
      const browser = new HttpBrowser();
      const login = await browser.follow(authorizeUrl({ client_id: web.id, max_age: '0' }), server.url);
      const signedInAt = now;
      ticking = true;
      let page;
      try {
        page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...user } });
      } finally {
        ticking = false;
      }
      if (page.text.includes('name="decision"')) page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      assert.ok(page.location?.startsWith(CALLBACK), `expected a redirect to the client, got ${page.status}: ${page.text.slice(0, 300)}`);
      const res = await exchange(new URL(page.location!).searchParams.get('code')!);
      const idToken = JSON.parse(Buffer.from(res.body.id_token.split('.')[1], 'base64url').toString());
      assert.ok(idToken.auth_time > signedInAt, 'the ID token tells of the sign-in just made');
    });

    it('asks for the password with max_age=0 even when the session signed in within the same second, as prompt=login does (OpenID Connect Core §3.1.2.1)', async () => {
      const { browser } = await authorize({ client_id: other.id });
      // The clock has not moved since that sign-in: the session is zero seconds old.
      const login = await browser.follow(authorizeUrl({ client_id: other.id, max_age: '0' }), server.url);
      assert.equal(login.location, undefined, `no code goes back to the client: ${login.location}`);
      assert.match(login.text, /name="password"/);
      const none = await browser.request(authorizeUrl({ client_id: other.id, max_age: '0', prompt: 'none' }));
      assert.equal(new URL(none.location!).searchParams.get('error'), 'login_required');
      await expectFreshSignIn(browser, hiddenField(login.text, 'request'));
    });

    for (const params of [{ prompt: 'login' }, { max_age: '0' }, { max_age: '3600' }] as Record<string, string>[]) {
      it(`never lets an old session answer a request with ${JSON.stringify(params)} that arrived without the session cookie`, async () => {
        const { browser } = await authorize({ client_id: other.id });
        now += 5;
        // An application's form post carries no SameSite=Lax cookie, and one too large to be sent
        // again as a GET (over 8 KiB) is answered as it came: as if nobody were signed in.
        const posted = await browser.request(`${server.url}/authorize`, {
          form: { response_type: 'code', client_id: other.id, redirect_uri: CALLBACK, scope: 'openid objects:read', state: 'st-1', nonce: 'n-1', padding: 'x'.repeat(9000), ...params },
          crossSite: true,
        });
        assert.match(posted.location ?? '', /^\/login\?request=[A-Za-z0-9_-]{32}$/, 'sent to sign in');
        await expectFreshSignIn(browser, new URL(posted.location!, server.url).searchParams.get('request')!);
      });
    }

    describe('id_token_hint (OpenID Connect Core §3.1.2.1)', () => {
      const grace = { email: 'grace@example.com', password: 'another horse battery' };
      before(() => server.user(grace.email, grace.password));

      /** An ID token this server issued for `email` to `client`, two hours ago (expired: still a fine hint). */
      const idTokenOf = async (email: string, client = web) => {
        const found = (await server.gatehouse.storage.users.findByEmail(email))!;
        return server.gatehouse.idTokens.issue({ user: found, clientId: client.id, scopes: ['openid'], authTime: now - 7200 }, now - 7200);
      };
      const errorOf = (location: string | undefined) => new URL(location!).searchParams.get('error');

      it('answers prompt=none with a code when the hint names the signed-in user, even once the ID token has expired', async () => {
        const { browser } = await authorize({ client_id: web.id });
        const page = await browser.request(authorizeUrl({ client_id: web.id, prompt: 'none', id_token_hint: await idTokenOf(user.email) }));
        const location = new URL(page.location!);
        assert.equal(location.origin + location.pathname, CALLBACK);
        assert.ok(location.searchParams.get('code'), `expected a code, got ${page.location}`);
        assert.equal(location.searchParams.get('state'), 'st-1');
      });

      it('answers prompt=none with login_required when the hint names another user than the signed-in one', async () => {
        const { browser } = await authorize({ client_id: web.id });
        const page = await browser.request(authorizeUrl({ client_id: web.id, prompt: 'none', id_token_hint: await idTokenOf(grace.email) }));
        assert.equal(errorOf(page.location), 'login_required');
        assert.equal(new URL(page.location!).searchParams.get('state'), 'st-1');
      });

      it('asks another signed-in user to sign in as the one the hint names, and answers login_required when someone else signs in', async () => {
        const { browser } = await authorize({ client_id: web.id });
        const hint = await idTokenOf(grace.email);
        let login = await browser.follow(authorizeUrl({ client_id: web.id, id_token_hint: hint }), server.url);
        assert.match(login.text, /name="password"/);
        const consentPage = await browser.follow(`${server.url}/consent?request=${hiddenField(login.text, 'request')}`, server.url);
        assert.match(consentPage.text, /name="password"/, 'the signed-in user cannot answer it on the consent page');

        let page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...user } });
        assert.equal(errorOf(page.location), 'login_required');

        login = await browser.follow(authorizeUrl({ client_id: web.id, id_token_hint: hint }), server.url);
        page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(login.text, 'csrf'), request: hiddenField(login.text, 'request'), ...grace } });
        if (page.text.includes('name="decision"')) page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
        const idToken = (await exchange(new URL(page.location!).searchParams.get('code')!)).body.id_token;
        assert.equal(JSON.parse(Buffer.from(idToken.split('.')[1], 'base64url').toString()).sub, (await server.gatehouse.storage.users.findByEmail(grace.email))!.id);
      });

      it('refuses at the redirect URI with invalid_request a hint that is not an ID token this server issued', async () => {
        const { browser } = await authorize({ client_id: web.id });
        const genuine = await idTokenOf(user.email);
        const [header, payload] = genuine.split('.');
        const accessToken = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).body.access_token;
        assert.equal(typeof accessToken, 'string');
        // A Back-Channel Logout Token is signed with the ID-token key and names the user and the client as an ID token does; it is typed logout+jwt.
        const adaId = (await server.gatehouse.storage.users.findByEmail(user.email))!.id;
        const logoutToken = await server.gatehouse.backChannelLogout.logoutToken({ clientId: web.id, userId: adaId, sid: 'a-session' }, now);
        for (const hint of ['garbage', `${header}.${payload}.${'A'.repeat(342)}`, `${header}.${Buffer.from(JSON.stringify({ sub: 'someone', aud: web.id, iss: server.config.issuer })).toString('base64url')}.${genuine.split('.')[2]}`, accessToken, logoutToken]) {
          const page = await browser.request(authorizeUrl({ client_id: web.id, id_token_hint: hint }));
          const location = new URL(page.location!);
          assert.equal(location.origin + location.pathname, CALLBACK, hint.slice(0, 40));
          assert.equal(location.searchParams.get('error'), 'invalid_request', hint.slice(0, 40));
          assert.equal(location.searchParams.get('state'), 'st-1');
        }
      });

      it('refuses at the redirect URI with invalid_request a hint issued to another client', async () => {
        const { browser } = await authorize({ client_id: web.id });
        const page = await browser.request(authorizeUrl({ client_id: web.id, prompt: 'none', id_token_hint: await idTokenOf(user.email, other) }));
        assert.equal(errorOf(page.location), 'invalid_request');
        assert.match(new URL(page.location!).searchParams.get('error_description') ?? '', /another client/);
      });
    });

    it('answers only for the user whose sub the claims parameter asks for (OpenID Connect Core §3.1.2.2), though it supports no other use of claims', async () => {
      const { browser } = await authorize({ client_id: web.id });
      const adaId = (await server.gatehouse.storage.users.findByEmail(user.email))!.id;
      const asking = (sub: unknown, target = 'id_token') => authorizeUrl({ client_id: web.id, prompt: 'none', claims: JSON.stringify({ [target]: { sub: { value: sub }, email: { essential: true } } }) });
      for (const url of [asking('someone-else'), asking('someone-else', 'userinfo')]) {
        const refused = new URL((await browser.request(url)).location!);
        assert.equal(refused.searchParams.get('error'), 'login_required');
        assert.equal(refused.searchParams.get('state'), 'st-1');
      }
      assert.ok(new URL((await browser.request(asking(adaId))).location!).searchParams.get('code'));
      // Anything else in claims is ignored, as before: a claims parameter it cannot read, a sub without a value.
      for (const claims of ['not json', '{"id_token":{"sub":null}}', '{"id_token":{"sub":{"essential":true}}}', '[1]']) {
        assert.ok(new URL((await browser.request(authorizeUrl({ client_id: web.id, prompt: 'none', claims }))).location!).searchParams.get('code'), claims);
      }
    });

    it('refuses with invalid_request, at the redirect URI, a claims parameter too long to be read, rather than drop the sub it may ask for', async () => {
      const { browser } = await authorize({ client_id: web.id });
      // Over 8,192 characters: a claims request naming someone else, with a long reason for a claim it asks for.
      const claims = JSON.stringify({ id_token: { sub: { value: 'someone-else' }, email: { essential: true, purpose: 'To tell you apart. '.repeat(440) } } });
      assert.ok(claims.length > 8192);
      for (const method of ['GET', 'POST'] as const) {
        const params = { response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-9', prompt: 'none', claims };
        const page = method === 'GET' ? await browser.request(`${server.url}/authorize?${new URLSearchParams(params)}`) : await browser.request(`${server.url}/authorize`, { form: params });
        assert.ok(page.location?.startsWith(CALLBACK), `${method}: ${page.status} ${page.location ?? page.text.slice(0, 300)}`);
        const answer = new URL(page.location!);
        assert.equal(answer.searchParams.get('code'), null, method);
        assert.equal(answer.searchParams.get('error'), 'invalid_request', method);
        assert.equal(answer.searchParams.get('state'), 'st-9', method);
        assert.equal(answer.searchParams.get('iss'), server.config.issuer, method);
      }
    });

    it('refuses a sign-out whose id_token_hint was issued to another client than client_id, and keeps the session', async () => {
      await server.gatehouse.storage.clients.update(other.id, { postLogoutRedirectUris: ['https://other.example/bye'] }, now);
      server.gatehouse.clients.invalidate(other.id);
      const { browser, callback } = await authorize({ client_id: web.id });
      const idToken = (await exchange(callback.searchParams.get('code')!)).body.id_token;
      const page = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: idToken, client_id: other.id, post_logout_redirect_uri: 'https://other.example/bye', state: 'z' })}`);
      assert.equal(page.status, 400);
      assert.equal(page.location, undefined);
      assert.match(page.text, /issued to another application/);
      const account = await browser.request(`${server.url}/account`);
      assert.equal(account.status, 200, 'still signed in');
    });

    it('takes an empty client_id or state at sign-out for one left out, as the authorization endpoint does', async () => {
      const { browser, callback } = await authorize({ client_id: web.id });
      const idToken = (await exchange(callback.searchParams.get('code')!)).body.id_token;
      const page = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: idToken, client_id: '', state: '' })}`);
      assert.equal(page.status, 200, page.text.slice(0, 500));
      assert.match(page.text, /Signed out/);
      const account = await browser.request(`${server.url}/account`);
      assert.equal(account.status, 302, 'signed out');
    });

    it('sets no cookie on static files, which shared caches may keep', async () => {
      const res = await fetch(`${server.url}/static/gatehouse.css`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('cache-control') ?? '', /public/);
      assert.deepEqual(res.headers.getSetCookie(), []);
      const page = await fetch(`${server.url}/login`);
      assert.ok(page.headers.getSetCookie().some((cookie) => cookie.startsWith('gatehouse_csrf=')), 'pages still set the CSRF cookie');
    });

    it('answers request and request_uri, which it does not support, with request_not_supported and request_uri_not_supported (OpenID Connect Core §6), and says so in discovery', async () => {
      const browser = new HttpBrowser();
      for (const [name, value, error] of [
        ['request', 'eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9.', 'request_not_supported'],
        ['request_uri', 'https://app.example/request.jwt', 'request_uri_not_supported'],
        ['request_uri', 'urn:ietf:params:oauth:request_uri:abc', 'request_uri_not_supported'],
      ]) {
        const page = await browser.request(authorizeUrl({ client_id: web.id, [name!]: value! }));
        assert.equal(page.status, 302, name);
        const location = new URL(page.location!);
        assert.equal(location.origin + location.pathname, CALLBACK);
        assert.equal(location.searchParams.get('error'), error);
        assert.equal(location.searchParams.get('state'), 'st-1');
        assert.equal(location.searchParams.get('iss'), server.config.issuer);
      }
      for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
        const metadata = (await (await fetch(`${server.url}${path}`)).json()) as Record<string, unknown>;
        assert.equal(metadata.request_parameter_supported, false, path);
        assert.equal(metadata.request_uri_parameter_supported, false, path);
      }
    });

    it('returns access_denied with the state when the person denies', async () => {
      const browser = new HttpBrowser();
      let page = await browser.follow(authorizeUrl({ client_id: other.id, scope: 'openid profile' }), server.url);
      page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
      page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'deny' } });
      const location = new URL(page.location!);
      assert.equal(location.searchParams.get('error'), 'access_denied');
      assert.equal(location.searchParams.get('state'), 'st-1');
    });

    it('refuses a consent form shown to one person once another has signed in in the same browser, and authorizes nobody', async () => {
      const grace = { email: 'switched-account@example.com', password: 'grace horse battery staple' };
      const { id: graceId } = await server.user(grace.email, grace.password);
      const browser = new HttpBrowser();
      let page = await browser.follow(authorizeUrl({ client_id: other.id, scope: 'openid objects:download' }), server.url);
      page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
      assert.match(page.text, new RegExp(`Signed in as <strong>${user.email}</strong>`));
      const shownToAda = { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' };

      // Another tab: Ada signs out and Grace signs in.
      await signedInBrowser(server.url, grace.email, grace.password, browser);

      const answered = await browser.request(`${server.url}/consent`, { form: shownToAda });
      assert.equal(answered.status, 403, answered.text.slice(0, 300));
      assert.equal(answered.location, undefined, 'no code goes back to the client');
      assert.match(answered.headers.get('content-type') ?? '', /text\/html/);
      assert.equal(await server.gatehouse.storage.consents.find(graceId, other.id), undefined, 'Grace consented to nothing');
      // The request still waits: Grace is shown it, as herself, and decides.
      const again = await browser.follow(`${server.url}/consent?request=${shownToAda.request}`, server.url);
      assert.match(again.text, new RegExp(`Signed in as <strong>${grace.email}</strong>`));
    });

    it('lets only the browser that began a request sign in for it and decide it: another, knowing its id, gets an error page and changes nothing', async () => {
      const mallory = { email: 'mallory-other-browser@example.com', password: 'mallory horse battery staple' };
      const { id: malloryId } = await server.user(mallory.email, mallory.password);
      const victim = new HttpBrowser();
      const started = await victim.follow(authorizeUrl({ client_id: other.id, scope: 'openid objects:read', state: 'victim-state' }), server.url);
      const pendingId = hiddenField(started.text, 'request');

      // The attacker learned the request's id (a shared browser's history, an access log) and uses it in their own browser.
      const attacker = new HttpBrowser();
      const login = await attacker.request(`${server.url}/login`);
      const signedIn = await attacker.request(`${server.url}/login`, { form: { csrf: hiddenField(login.text, 'csrf'), request: pendingId, ...mallory } });
      assert.equal(signedIn.status, 400, signedIn.text.slice(0, 300));
      assert.equal(signedIn.location, undefined, 'no code goes back to the client');
      assert.match(signedIn.text, /started in another browser/);
      assert.equal(attacker.cookies.get('gatehouse_session'), undefined, 'not even signed in');
      // Signed in on their own, the attacker cannot decide the request either.
      await signedInBrowser(server.url, mallory.email, mallory.password, attacker);
      const consent = await attacker.request(`${server.url}/consent?request=${pendingId}`);
      assert.equal(consent.status, 400);
      assert.doesNotMatch(consent.text, /name="decision"/, 'the consent page is not shown');
      const account = await attacker.request(`${server.url}/account`);

      const answered = await attacker.request(`${server.url}/consent`, { form: { csrf: hiddenField(account.text, 'csrf'), request: pendingId, decision: 'allow' } });
      assert.equal(answered.status, 400);
      assert.equal(answered.location, undefined);
      assert.equal(await server.gatehouse.storage.consents.find(malloryId, other.id), undefined, 'nothing was authorized');

      // The request still waits for the browser that began it.
      let page = await victim.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(started.text, 'csrf'), request: pendingId, ...user } });
      // (Ada may have authorized the application before: then no consent page.)
      if (page.text.includes('name="decision"')) {
        page = await victim.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: pendingId, decision: 'allow' } });
      }
      const callback = new URL(page.location!);
      assert.equal(callback.searchParams.get('state'), 'victim-state');
      assert.ok(callback.searchParams.get('code'));
    });

    it('shows the sign-in page of a request, with its application and login_hint, only to the browser that began it', async () => {
      const victim = new HttpBrowser();
      const started = await victim.follow(authorizeUrl({ client_id: other.id, login_hint: 'hinted-person@example.com' }), server.url);
      assert.match(started.text, /value="hinted-person@example.com"/);
      assert.match(started.text, /Other app/);
      const pendingId = hiddenField(started.text, 'request');

      const attacker = new HttpBrowser();
      await attacker.request(`${server.url}/login`);
      for (const page of [
        await attacker.request(`${server.url}/login?request=${pendingId}`),
        // The same page shown again after a form refused for its CSRF token, or left empty.
        await attacker.request(`${server.url}/login`, { form: { request: pendingId, email: 'x@example.com', password: 'x' } }),
      ]) {
        assert.equal(page.status, 400);
        assert.match(page.text, /started in another browser/);
        assert.doesNotMatch(page.text, /hinted-person|Other app/);
      }
    });

    it('shows the sign-in page of a request that expired, not yet swept, without its application or login_hint, to any browser, and says that it expired', async () => {
      const victim = new HttpBrowser();
      const started = await victim.follow(authorizeUrl({ client_id: other.id, login_hint: 'expired-hint@example.com' }), server.url);
      const pendingId = hiddenField(started.text, 'request');
      // A request waits half an hour; the sweep, a minute apart, has not deleted it yet.
      now += 30 * 60 + 1;
      for (const browser of [new HttpBrowser(), victim]) {
        const page = await browser.request(`${server.url}/login?request=${pendingId}`);
        assert.equal(page.status, 200);
        assert.doesNotMatch(page.text, /expired-hint|Other app/);
        assert.doesNotMatch(page.text, /name="request"/, 'a sign-in there leads nowhere near the request');
        // The person is told why the page names no application, and that a sign-in here leads to their account.
        assert.match(page.text, /role="status">This sign-in request has expired or was already answered\. Go back to the application and start again, or sign in here to go to your account\.</);
      }
      // A request answered (taken) reads the same; a plain sign-in page says nothing of a request.
      assert.doesNotMatch((await victim.request(`${server.url}/login`)).text, /expired/);
    });

    it('answers a wrong password without telling whether the email exists', async () => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const csrf = hiddenField(form.text, 'csrf');
      const wrong = await browser.request(`${server.url}/login`, { form: { csrf, email: user.email, password: 'wrong password!' } });
      const unknown = await browser.request(`${server.url}/login`, { form: { csrf, email: 'nobody@example.com', password: 'wrong password!' } });
      assert.equal(wrong.status, 401);
      assert.equal(unknown.status, 401);
      const message = (html: string) => /role="alert">([^<]*)</.exec(html)?.[1];
      assert.equal(message(wrong.text), message(unknown.text));
    });

    it('refuses a state over 4,000 characters with invalid_request at the redirect URI, without the state, and keeps no request waiting', async () => {
      const pkce = { code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'), code_challenge_method: 'S256' };
      const waiting = await countRows(server.database, 'authorization_requests');
      for (const state of ['s'.repeat(4001), 'x'.repeat(60_000)]) {
        const request = { response_type: 'code', client_id: spa.id, redirect_uri: CALLBACK, scope: 'openid', state, ...pkce };
        // A GET within the header limit; a form post too large to be sent again as a GET is answered as it came.
        const page = state.length < 8000 ? await new HttpBrowser().request(authorizeUrl(request)) : await new HttpBrowser().request(`${server.url}/authorize`, { form: request });
        assert.ok(page.location?.startsWith(`${CALLBACK}?`), `expected a redirect to the client, got ${page.status} ${page.location?.slice(0, 100)}`);
        const location = new URL(page.location!);
        assert.equal(location.searchParams.get('error'), 'invalid_request');
        assert.match(location.searchParams.get('error_description')!, /state/);
        assert.equal(location.searchParams.get('state'), null, 'the state that is too long is not sent back');
      }
      // Refused for another reason, a request with an over-long state gets its error without it too.
      const unsupported = await new HttpBrowser().request(authorizeUrl({ client_id: spa.id, response_mode: 'nonsense', state: 's'.repeat(4001), ...pkce }));
      assert.equal(new URL(unsupported.location!).searchParams.get('state'), null);
      assert.equal(await countRows(server.database, 'authorization_requests'), waiting, 'nothing was stored');

      const longest = 'L'.repeat(4000);
      const { callback } = await authorize({ client_id: web.id, state: longest });
      assert.equal(callback.searchParams.get('state'), longest);
    });

    it('keeps each prompt value once, however often the request repeats it', async () => {
      const page = await new HttpBrowser().request(`${server.url}/authorize`, {
        form: { response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid', state: 'st-1', prompt: Array(3000).fill('login consent').join(' ') },
      });
      const pendingId = new URL(page.location!, server.url).searchParams.get('request')!;
      const pending = await server.gatehouse.storage.pendingAuthorizations.find(pendingId);
      assert.deepEqual(pending?.request.prompt, ['login', 'consent']);
    });

    it('refuses a malformed or non-UTF-8 percent-encoding in the request with an error page, never a redirect', async () => {
      const { browser } = await authorize({ client_id: web.id });
      const cookie = [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
      const valid = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid objects:read' }).toString();
      for (const bad of ['state=%ff%fe', 'state=%zz', 'state=a%2', 'state=%C0%AF', 'state=%ED%A0%80', 'nonce=%e9t%e9', `client_id=${web.id}%ff`, 'redirect_uri=https%3A%2F%2Fapp.example%2Fcallback%']) {
        const query = `${valid}&${bad}`;
        for (const request of [
          { method: 'GET', path: `/authorize?${query}`, headers: { cookie } },
          { method: 'POST', path: '/authorize', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(query.length) }, body: query },
          { method: 'POST', path: '/authorize', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(query.length) }, body: query },
        ]) {
          const page = await sendRaw(server.url, request);
          const label = `${request.method} ${bad}${request.headers.cookie ? '' : ' (no cookie)'}`;
          assert.equal(page.status, 400, label);
          assert.equal(page.headers.location, undefined, label);
          assert.match(String(page.headers['content-type']), /^text\/html/, label);
          assert.match(page.text, /not correctly percent-encoded/, label);
          assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/, label);
          assert.equal(page.headers['x-frame-options'], 'DENY', label);
          assert.equal(page.headers['cache-control'], 'no-store', label);
        }
      }
      // Well-formed escapes go back to the client as the characters they encode.
      const page = await browser.request(`${server.url}/authorize?${valid}&state=%C3%A9t%C3%A9%25ff`);
      assert.equal(new URL(page.location!).searchParams.get('state'), 'été%ff');

      // The sign-out endpoint sends state back to the application as well (RP-Initiated Logout §2).
      for (const query of ['state=%ff%fe', `client_id=${web.id}&state=a%2`]) {
        for (const request of [
          { method: 'GET', path: `/logout?${query}`, headers: { cookie } },
          { method: 'POST', path: '/logout', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(query.length) }, body: query },
        ]) {
          const refused = await sendRaw(server.url, request);
          assert.equal(refused.status, 400, `${request.method} /logout ${query}`);
          assert.equal(refused.headers.location, undefined);
          assert.match(refused.text, /not correctly percent-encoded/);
        }
      }
      assert.ok((await browser.request(`${server.url}/account`)).status === 200, 'still signed in');
    });

    it('sends strict security headers on every page', async () => {
      const page = await new HttpBrowser().request(`${server.url}/login`);
      assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      assert.doesNotMatch(page.headers.get('content-security-policy') ?? '', /unsafe-inline/);
      assert.equal(page.headers.get('x-frame-options'), 'DENY');
      assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
      assert.match(page.headers.get('set-cookie') ?? '', /HttpOnly; SameSite=Lax/);
    });
  });
}
