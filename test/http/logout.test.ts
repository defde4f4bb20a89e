import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { DIALECTS } from '../support/databases.ts';
import { codeThrough, HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

const CALLBACK = 'https://app.example/callback';
const SIGNED_OUT = 'https://app.example/signed-out';

/** OpenID Connect RP-Initiated Logout 1.0 at /logout: when Gatehouse signs out at once, when it asks, where it returns. */
for (const dialect of DIALECTS) {
  describe(`sign-out endpoint (${dialect})`, () => {
    let server: TestServer;
    let now = Math.floor(Date.now() / 1000);
    let web: { id: string; secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery' };

    before(async () => {
      // No background reloading: the tests move the clock past a retired key's life and reload the keys themselves.
      server = await startTestServer(dialect, { clock: () => now, background: false });
      // First-party: no consent page, so a signed-in browser gets its code straight away.
      web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'profile'], redirectUris: [CALLBACK], postLogoutRedirectUris: [SIGNED_OUT], firstParty: true });
      await server.user(user.email, user.password);
    });
    after(() => server.close());

    /** Signs in (or reuses the browser's session) and returns the tokens the web app gets. */
    async function signIn(browser?: HttpBrowser): Promise<{ browser: HttpBrowser; tokens: { id_token: string; refresh_token: string; access_token: string } }> {
      if (browser === undefined || !(await isSignedIn(browser))) browser = await signedInBrowser(server.url, user.email, user.password, browser);
      const code = await codeThrough(browser, server.url, web.id, CALLBACK);
      const res = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(web.id, web.secret) } });
      assert.equal(res.status, 200);
      return { browser, tokens: res.body };
    }

    const logoutUrl = (params: Record<string, string>) => `${server.url}/logout?${new URLSearchParams(params)}`;
    const isSignedIn = async (browser: HttpBrowser) => (await browser.request(`${server.url}/account`)).status === 200;

    /** Answers the "Sign out?" page with its own form, as the person's click does. */
    const confirm = (browser: HttpBrowser, page: { text: string }) => {
      const fields = [...page.text.matchAll(/<input type="hidden" name="([^"]+)" value="[^"]*">/g)].map((match) => [match[1]!, hiddenField(page.text, match[1]!)] as [string, string]);
      return browser.request(`${server.url}/logout`, { form: fields });
    };

    it('signs out at once with an ID token of the current session, and returns to the registered address with the state', async () => {
      const { browser, tokens } = await signIn();
      const page = await browser.request(logoutUrl({ id_token_hint: tokens.id_token, post_logout_redirect_uri: SIGNED_OUT, state: 'bye', ui_locales: 'de fr', logout_hint: user.email }));
      assert.equal(page.status, 303);
      assert.equal(page.location, `${SIGNED_OUT}?state=bye`);
      assert.equal(await isSignedIn(browser), false);
    });

    it('keeps the query the post-logout redirect URI was registered with as written, adding the state, which replaces one of its name', async () => {
      const kept = 'tenant=caf%E9&flag&path=/a/b';
      const registered = `${SIGNED_OUT}?${kept}&state=registered`;
      const queried = await server.client({ name: 'Queried app', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [CALLBACK], postLogoutRedirectUris: [registered], firstParty: true });
      const browser = await signedInBrowser(server.url, user.email, user.password);
      const page = await browser.request(logoutUrl({ client_id: queried.id, post_logout_redirect_uri: registered, state: 'bye' }));
      assert.equal(page.status, 200);
      const confirmed = await confirm(browser, page);
      assert.equal(confirmed.location, `${SIGNED_OUT}?${kept}&state=bye`);
      assert.equal(await isSignedIn(browser), false);
    });

    it('asks before signing out on an ID token of the same person from an earlier session, and signs out at once on one refreshed in this session', async () => {
      const { browser, tokens: earlier } = await signIn();
      let page = await browser.request(logoutUrl({ id_token_hint: earlier.id_token }));
      assert.match(page.text, /You are signed out/);
      now += 60;
      await signIn(browser);

      page = await browser.request(logoutUrl({ id_token_hint: earlier.id_token, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
      assert.equal(page.status, 200);
      assert.match(page.text, /Sign out\?/);
      assert.equal(await isSignedIn(browser), true, 'a hint of another session does not sign this one out by itself');
      page = await confirm(browser, page);
      assert.equal(page.location, `${SIGNED_OUT}?state=bye`, 'the hint names the client: confirmed, the person returns to it');
      assert.equal(await isSignedIn(browser), false);

      // An ID token refreshed later still belongs to the session it was first issued in.
      const { tokens: current } = await signIn(browser);
      now += 600;
      const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: current.refresh_token }, { headers: { authorization: basic(web.id, web.secret) } });
      assert.equal(refreshed.status, 200);
      page = await browser.request(logoutUrl({ id_token_hint: refreshed.body.id_token, post_logout_redirect_uri: SIGNED_OUT }));
      assert.equal(page.location, SIGNED_OUT);
      assert.equal(await isSignedIn(browser), false);
    });

    it('asks before signing out on an ID token of the same person from another browser’s session, signed in within the same second', async () => {
      // The clock stands still: both sessions have one auth_time, and only their sid tells them apart.
      const { tokens: elsewhere } = await signIn();
      const { browser } = await signIn();
      const page = await browser.request(logoutUrl({ id_token_hint: elsewhere.id_token, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
      assert.equal(page.status, 200);
      assert.match(page.text, /Sign out\?/);
      assert.equal(await isSignedIn(browser), true, 'a hint of the other browser’s session does not sign this one out by itself');
    });

    it('refuses a parameter sent twice with an error page, never a redirect, and keeps the session (RFC 6749 §3.1)', async () => {
      const { browser, tokens } = await signIn();
      const single: [string, string][] = [['id_token_hint', tokens.id_token], ['client_id', web.id], ['post_logout_redirect_uri', SIGNED_OUT], ['state', 'bye'], ['logout_hint', user.email], ['ui_locales', 'en']];
      for (const [name, value] of single) {
        const query = new URLSearchParams([...single, [name, value]]);
        for (const page of [await browser.request(`${server.url}/logout?${query}`), await browser.request(`${server.url}/logout`, { form: [...query] })]) {
          assert.equal(page.status, 400, name);
          assert.equal(page.location, undefined, name);
          assert.match(page.text, new RegExp(`The parameter ${name} is included more than once`), name);
        }
      }
      assert.equal(await isSignedIn(browser), true);
    });

    it('takes a parameter sent empty for one left out, by GET and by POST, as /authorize and /token do (RFC 6749 §3.1)', async () => {
      const empty = { client_id: '', post_logout_redirect_uri: '', state: '', logout_hint: '', ui_locales: '' };
      for (const method of ['GET', 'POST'] as const) {
        const send = (browser: HttpBrowser, params: Record<string, string>) =>
          method === 'GET' ? browser.request(logoutUrl(params)) : browser.request(`${server.url}/logout`, { form: params });

        // Nowhere to return to: signed out at once, and shown so.
        let { browser, tokens } = await signIn();
        let page = await send(browser, { ...empty, id_token_hint: tokens.id_token });
        assert.equal(page.status, 200, `${method}: ${page.text.slice(0, 300)}`);
        assert.equal(page.location, undefined, method);
        assert.match(page.text, /You are signed out/, method);
        assert.equal(await isSignedIn(browser), false, method);

        // An empty state is none: the address comes back without state=.
        ({ browser, tokens } = await signIn());
        page = await send(browser, { ...empty, id_token_hint: tokens.id_token, post_logout_redirect_uri: SIGNED_OUT });
        assert.equal(page.status, 303, method);
        assert.equal(page.location, SIGNED_OUT, method);

        // An empty hint is no hint: the person is asked, then returned where client_id allows.
        ({ browser } = await signIn());
        page = await send(browser, { ...empty, id_token_hint: '', client_id: web.id, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' });
        assert.equal(page.status, 200, method);
        assert.match(page.text, /Sign out\?/, method);
        assert.equal(await isSignedIn(browser), true, method);
        page = await confirm(browser, page);
        assert.equal(page.location, `${SIGNED_OUT}?state=bye`, method);
      }
    });

    it('refuses a parameter that is not a string (a JSON body) with the error page, never a redirect', async () => {
      for (const state of [{ a: 1 }, 5, null]) {
        const response = await fetch(`${server.url}/logout`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ client_id: web.id, post_logout_redirect_uri: SIGNED_OUT, state }),
          redirect: 'manual',
        });
        assert.equal(response.status, 400, JSON.stringify(state));
        assert.equal(response.headers.get('location'), null);
        assert.match(await response.text(), /The parameter state must be a string/);
      }
    });

    it('lets the person sign out, after confirming, with an ID token whose key has left the JWKS, returning only where client_id names a client', async () => {
      const { browser, tokens } = await signIn();
      const { tokens: second } = await signIn(browser);
      // The key that signed them is retired, then dropped once every token it signed has expired.
      await server.gatehouse.keys.rotate(now, { uses: ['id'], force: true });
      now += 2 * 86_400;
      await server.gatehouse.keys.reload(now);
      const kid = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
      assert.equal(server.gatehouse.keys.publicKey(kid(tokens.id_token)), undefined, 'the key is no longer published');

      // No client can be tied to the address: the person is asked, then signed out without being sent there.
      let page = await browser.request(logoutUrl({ id_token_hint: tokens.id_token, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
      assert.equal(page.status, 200, page.text.slice(0, 500));
      assert.match(page.text, /Sign out\?/);
      assert.equal(await isSignedIn(browser), true, 'asked first');
      page = await confirm(browser, page);
      assert.equal(page.location, undefined);
      assert.match(page.text, /You are signed out/);
      assert.equal(await isSignedIn(browser), false);

      // client_id ties the registered address to the web app.
      await signIn(browser);
      page = await browser.request(logoutUrl({ id_token_hint: second.id_token, client_id: web.id, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
      assert.match(page.text, /Sign out\?/);
      page = await confirm(browser, page);
      assert.equal(page.location, `${SIGNED_OUT}?state=bye`);
      assert.equal(await isSignedIn(browser), false);
    });

    it('takes no other token of its own for an ID token: a Logout Token or an access token of this very session is asked about, and sends nobody to the address', async () => {
      const { browser, tokens } = await signIn();
      const { sid, sub } = decodeJwt(tokens.id_token) as { sid: string; sub: string };
      // Signed with the ID-token key, for this user, this client and this session's sid: only its typ (logout+jwt) tells it from an ID token.
      const logoutToken = await server.gatehouse.backChannelLogout.logoutToken({ clientId: web.id, userId: sub, sid }, now);
      for (const hint of [logoutToken, tokens.access_token]) {
        const page = await browser.request(logoutUrl({ id_token_hint: hint, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
        assert.equal(page.status, 200, `${decodeProtectedHeader(hint).typ}: ${page.status} ${page.location}`);
        assert.equal(page.location, undefined);
        assert.match(page.text, /Sign out\?/);
        assert.doesNotMatch(page.text, /signed-out|bye/, 'the address and state are not carried to the confirmation');
        assert.equal(await isSignedIn(browser), true);
      }
    });

    it('asks before signing out on an ID token it cannot verify, and sends nobody to an address it cannot tie to a client', async () => {
      const { browser, tokens } = await signIn();
      const [header, payload, signature] = tokens.id_token.split('.');
      for (const hint of ['garbage', `${header}.${payload}.${signature!.slice(0, -4)}AAAA`]) {
        const page = await browser.request(logoutUrl({ id_token_hint: hint, post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
        assert.equal(page.status, 200, hint.slice(0, 40));
        assert.equal(page.location, undefined);
        assert.match(page.text, /Sign out\?/);
        assert.doesNotMatch(page.text, /signed-out|bye/, 'the address and state are not carried to the confirmation');
      }
      assert.equal(await isSignedIn(browser), true);
      // Signed out already: nothing to ask, and still no redirect.
      const anonymous = await new HttpBrowser().request(logoutUrl({ id_token_hint: 'garbage', post_logout_redirect_uri: SIGNED_OUT, state: 'bye' }));
      assert.equal(anonymous.status, 200);
      assert.equal(anonymous.location, undefined);
      assert.match(anonymous.text, /You are signed out/);
    });
  });
}
