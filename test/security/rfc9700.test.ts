import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { createClient, updateClient } from '../../src/core/applications.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * Issue 6, "Abuse": the attacks of RFC 9700 (OAuth 2.0 Security Best Current Practice), one by
 * one. Each test names the attack and fails if the defence is missing: it checks what an attacker
 * would get (a redirect, a token, a changed record), not merely a status code.
 */

const CALLBACK = 'https://app.example/callback';
const LOOPBACK = 'http://127.0.0.1:8080/native';
const LOGGED_OUT = 'https://app.example/logged-out';
const LEGACY_CALLBACK = 'https://legacy.example/callback';

type Client = { id: string; secret: string };

const verifier = (): string => randomBytes(32).toString('base64url');
const challengeOf = (v: string): string => createHash('sha256').update(v).digest('base64url');

/** The parameters of an authorization response, wherever the response mode put them. */
function responseParams(location: string): { query: URLSearchParams; fragment: URLSearchParams } {
  const url = new URL(location);
  return { query: url.searchParams, fragment: new URLSearchParams(url.hash.slice(1)) };
}

/** Every hidden field of the form_post page, HTML-decoded. */
function formPostFields(html: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    fields[match[1]!] = hiddenField(match[0], match[1]!);
  }
  return fields;
}

/** Every table but the audit log, read through a connection of its own (read-only). */
function snapshotOf(server: TestServer): () => Record<string, string[]> {
  return () => {
    const db = new DatabaseSync(join(server.database.dataDir, 'gatehouse.sqlite'), { readOnly: true });
    try {
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'audit_events' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
      return Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM "${table}"`).all().map((row) => JSON.stringify(row)).sort()]));
    } finally {
      db.close();
    }
  };
}

describe('RFC 9700 attacks, one by one', () => {
  let server: TestServer;
  let issuer: string;
  let web: Client;
  let other: Client;
  let spa: Client;
  let legacy: Client;
  let firstParty: Client;
  let machine: Client;
  let resourceServer: Client;
  const user = { email: 'victim@example.com', password: 'correct horse battery staple' };
  const developer = { email: 'developer@example.com', password: 'another long password' };
  let userId: string;
  let developerId: string;
  let snapshot: () => Record<string, string[]>;

  before(async () => {
    server = await startTestServer('sqlite', { config: { implicit: { enabled: true } } });
    issuer = server.config.issuer;
    const scopes = ['openid', 'profile', 'email', 'objects:read'];
    web = await server.client({ name: 'Web app', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK, LOOPBACK], postLogoutRedirectUris: [LOGGED_OUT] });
    other = await server.client({ name: 'Attacker app', baseUrl: 'https://attacker.example/', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK], postLogoutRedirectUris: ['https://attacker.example/bye'] });
    spa = await server.client({ name: 'Single-page app', type: 'public', grantTypes: ['authorization_code', 'refresh_token'], scopes, redirectUris: [CALLBACK] });
    legacy = await server.client({ name: 'Legacy viewer', grantTypes: ['implicit', 'authorization_code'], scopes, redirectUris: [LEGACY_CALLBACK], firstParty: true });
    firstParty = await server.client({ name: 'First party', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'objects:read'] });
    machine = await server.client({ name: 'Machine', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
    resourceServer = await server.client({ name: 'API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    userId = (await server.user(user.email, user.password)).id;
    developerId = (await server.user(developer.email, developer.password)).id;
    snapshot = snapshotOf(server);
  });
  after(() => server?.close());

  const authorizeUrl = (params: Record<string, string>) =>
    `${server.url}/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid objects:read', state: 'st', ...params })}`;

  const signedIn = (account = user): Promise<HttpBrowser> => signedInBrowser(server.url, account.email, account.password);

  /** Runs an authorization request to its end (sign-in and consent as needed); returns the final response. */
  async function authorize(params: Record<string, string>, browser = new HttpBrowser()) {
    let page = await browser.follow(authorizeUrl(params), server.url);
    if (page.text.includes('name="password"')) {
      page = await browser.follow(`${server.url}/login`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), ...user } });
    }
    if (page.text.includes('name="decision"')) {
      page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
    }
    return { browser, page };
  }

  async function codeFor(params: Record<string, string>, browser?: HttpBrowser): Promise<string> {
    const { page } = await authorize(params, browser);
    assert.ok(page.location, `no redirect: ${page.status} ${page.text.slice(0, 300)}`);
    const code = new URL(page.location).searchParams.get('code');
    assert.ok(code, page.location);
    return code;
  }

  const exchange = (client: Client, params: Record<string, string>) =>
    post(`${server.url}/token`, { grant_type: 'authorization_code', redirect_uri: CALLBACK, ...params }, client.secret ? { headers: { authorization: basic(client.id, client.secret) } } : {});

  // --- §4.1 / §4.11: open redirection ----------------------------------------------------------

  describe('open redirect (§4.1, §4.11)', () => {
    const UNREGISTERED = [
      'https://evil.example/callback',
      'https://app.example@evil.example/callback',
      'https://app.example.evil.example/callback',
      'https://evil.example/callback?https://app.example/callback',
      `${CALLBACK}/`,
      `${CALLBACK}/../../evil`,
      `${CALLBACK}%2F..%2Fevil`,
      `${CALLBACK}?next=https://evil.example`,
      `${CALLBACK}#`,
      'HTTPS://APP.EXAMPLE/callback',
      'http://app.example/callback',
      '//evil.example/callback',
      '/callback',
      'javascript:alert(document.domain)//https://app.example/callback',
      'data:text/html,<script>alert(1)</script>',
      'http://127.0.0.1:8080/other',
      'http://127.0.0.1:8080/native/../evil',
      'http://localhost:8080/native',
      'http://[::1]:8080/native',
      'http://user@127.0.0.1:8080/native',
      'http://127.0.0.1.evil.example:8080/native',
      // RFC 8252 §7.3 lets only the port of a loopback URI differ: every other difference is refused
      // as on any other URI, even one the URL parser reads as the registered address.
      'http://127.0.0.1:8080/native#',
      'http://127.0.0.1:8080/native#fragment',
      'http://127.0.0.1:8080/elsewhere/../native',
      'http://127.0.0.1:8080/./native',
      'http://127.0.0.1:8080\\native',
      'http://127.0.0.1:8080/nat\tive',
      'http://127.0.0.1:/native',
      'http://2130706433:8080/native',
      'http://0x7f.0.0.1:8080/native',
      'HTTP://127.0.0.1:8080/native',
      'http:127.0.0.1:8080/native',
      'http://127.0.0.1:8080/native?',
    ];

    it('never redirects to an unregistered redirect_uri, by GET or POST, whatever else is wrong with the request', async () => {
      const browser = await signedIn();
      for (const redirect of UNREGISTERED) {
        const extras: Record<string, string>[] = [{}, { response_type: 'bogus' }, { scope: 'not-a-scope' }, { prompt: 'none' }, { code_challenge_method: 'plain', code_challenge: verifier() }];
        for (const extra of extras) {
          const params: Record<string, string> = { client_id: web.id, redirect_uri: redirect, response_type: 'code', scope: 'openid', state: 's', ...extra };
          const get = await browser.request(`${server.url}/authorize?${new URLSearchParams(params)}`);
          assert.equal(get.location, undefined, `GET redirected to ${get.location} for ${redirect} ${JSON.stringify(extra)}`);
          assert.equal(get.status, 400, redirect);
          assert.match(get.headers.get('content-type') ?? '', /^text\/html/);
          const postRes = await browser.request(`${server.url}/authorize`, { form: params });
          assert.equal(postRes.location, undefined, `POST redirected to ${postRes.location} for ${redirect}`);
          assert.equal(postRes.status, 400);
        }
      }
    });

    it('never redirects for an unknown, missing or duplicated client_id or redirect_uri', async () => {
      const browser = await signedIn();
      const cases = [
        `client_id=app_unknown&redirect_uri=${encodeURIComponent(CALLBACK)}&response_type=code`,
        `redirect_uri=${encodeURIComponent('https://evil.example/cb')}&response_type=code`,
        `client_id=${web.id}&client_id=${other.id}&redirect_uri=${encodeURIComponent(CALLBACK)}&response_type=code`,
        `client_id=${web.id}&redirect_uri=${encodeURIComponent(CALLBACK)}&redirect_uri=${encodeURIComponent('https://evil.example/cb')}&response_type=code`,
        // With two registered URIs, an omitted redirect_uri cannot be guessed.
        `client_id=${web.id}&response_type=code&scope=openid`,
      ];
      for (const query of cases) {
        const res = await browser.request(`${server.url}/authorize?${query}`);
        assert.equal(res.location, undefined, `${query} → ${res.location}`);
        assert.equal(res.status, 400, query);
      }
    });

    it('refuses an unregistered post_logout_redirect_uri without redirecting or signing out, even with a valid id_token_hint', async () => {
      const { browser, page } = await authorize({ client_id: web.id });
      const code = new URL(page.location!).searchParams.get('code')!;
      const idToken = (await exchange(web, { code })).body.id_token as string;
      assert.ok(idToken);
      // attacker.example/bye is registered, but for another client than the ID token's (or the client_id named).
      for (const target of ['https://evil.example/bye', `${LOGGED_OUT}/`, `${LOGGED_OUT}?x=1`, 'https://attacker.example/bye', '//evil.example', 'javascript:alert(1)']) {
        const variants: Record<string, string>[] = [{ id_token_hint: idToken }, { id_token_hint: idToken, client_id: web.id }, { client_id: web.id }, {}];
        for (const params of variants) {
          const res = await browser.request(`${server.url}/logout?${new URLSearchParams({ post_logout_redirect_uri: target, state: 'x', ...params })}`);
          assert.equal(res.location, undefined, `${target} ${JSON.stringify(Object.keys(params))} → ${res.location}`);
          assert.equal(res.status, 400, target);
        }
      }
      // Still signed in: the session was not ended by any of these.
      const account = await browser.request(`${server.url}/account`);
      assert.equal(account.status, 200);
      // The registered address works (the positive control).
      const ok = await browser.request(`${server.url}/logout?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: LOGGED_OUT, state: 'bye' })}`);
      assert.equal(ok.status, 303);
      assert.equal(ok.location, `${LOGGED_OUT}?state=bye`);
    });

    it('never leaves the origin after sign-in or sign-up, whatever `next` says', async () => {
      const EVIL_NEXT = [
        'https://evil.example/',
        '//evil.example/',
        '///evil.example/',
        '/\\evil.example/',
        '\\\\evil.example',
        '/developers//evil.example',
        '/account/..//evil.example',
        '/account@evil.example',
        '/account?x=//evil.example',
        'javascript:alert(1)',
        '/%2F%2Fevil.example',
        '/developers/%2e%2e/%2e%2e//evil.example',
        ' /account',
        '/account\r\nLocation: https://evil.example',
        `http://127.0.0.1:${new URL(server.url).port}@evil.example/`,
      ];
      for (const next of EVIL_NEXT) {
        const browser = new HttpBrowser();
        const form = await browser.request(`${server.url}/login?${new URLSearchParams({ next })}`);
        assert.equal(form.status, 200);
        const carried = form.text.includes('name="next"') ? hiddenField(form.text, 'next') : undefined;
        const res = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), next: carried ?? next, ...user } });
        assert.equal(res.status, 303, next);
        const target = new URL(res.location!, server.url);
        assert.equal(target.origin, server.url, `${JSON.stringify(next)} → ${res.location}`);
        assert.doesNotMatch(res.location!, /evil/, next);
      }
      // Sign-up too.
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup?next=${encodeURIComponent('//evil.example')}`);
      const res = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), next: '//evil.example', email: 'new-next@example.com', name: 'N', password: 'a long enough password' } });
      assert.equal(res.status, 303);
      assert.equal(new URL(res.location!, server.url).origin, server.url);
      // A safe local page is followed (the positive control).
      const good = new HttpBrowser();
      const goodForm = await good.request(`${server.url}/login?next=${encodeURIComponent('/developers/new')}`);
      const goodRes = await good.request(`${server.url}/login`, { form: { csrf: hiddenField(goodForm.text, 'csrf'), next: hiddenField(goodForm.text, 'next'), ...user } });
      assert.equal(goodRes.location, '/developers/new');
    });
  });

  // --- §4.4: mix-up (RFC 9207) -------------------------------------------------------------------

  describe('mix-up (§4.4, RFC 9207)', () => {
    it('advertises authorization_response_iss_parameter_supported and its exact issuer in discovery', async () => {
      for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
        const metadata = (await (await fetch(`${server.url}${path}`)).json()) as Record<string, unknown>;
        assert.equal(metadata.issuer, issuer, path);
        assert.equal(metadata.authorization_response_iss_parameter_supported, true, path);
        assert.equal(metadata.authorization_endpoint, `${issuer}/authorize`);
        assert.equal(metadata.token_endpoint, `${issuer}/token`);
      }
    });

    it('puts iss into every authorization response: codes, errors, denials, prompt=none, implicit, form_post', async () => {
      const browser = await signedIn();
      const onlyIss = (params: URLSearchParams, label: string) => {
        assert.deepEqual(params.getAll('iss'), [issuer], `${label}: ${params}`);
      };
      // Success (query), with an iss in the request that must not be echoed instead.
      const first = await browser.follow(authorizeUrl({ iss: 'https://evil.example', scope: 'openid profile' }), server.url);
      assert.match(first.text, /name="decision"/);
      const consented = await browser.request(`${server.url}/consent`, { form: { csrf: hiddenField(first.text, 'csrf'), request: hiddenField(first.text, 'request'), decision: 'allow' } });
      assert.ok(responseParams(consented.location!).query.get('code'));
      onlyIss(responseParams(consented.location!).query, 'code after consent');
      const again = responseParams((await browser.request(authorizeUrl({ iss: 'https://evil.example', scope: 'openid profile' }))).location!).query;
      assert.ok(again.get('code'));
      onlyIss(again, 'code');
      // Errors after the redirect URI is trusted.
      for (const [label, params] of [
        ['invalid_scope', { scope: 'not-a-scope' }],
        ['unsupported_response_type', { response_type: 'bogus' }],
        ['invalid_request (PKCE plain)', { code_challenge: verifier(), code_challenge_method: 'plain' }],
        ['invalid_request (prompt)', { prompt: 'none login' }],
      ] as const) {
        const res = await browser.request(authorizeUrl(params));
        const { query } = responseParams(res.location!);
        assert.ok(query.get('error'), label);
        onlyIss(query, label);
      }
      // login_required without a session, consent_required without consent.
      onlyIss(responseParams((await new HttpBrowser().request(authorizeUrl({ prompt: 'none' }))).location!).query, 'login_required');
      const consentRequired = responseParams((await browser.request(authorizeUrl({ client_id: other.id, prompt: 'none' }))).location!).query;
      assert.equal(consentRequired.get('error'), 'consent_required');
      onlyIss(consentRequired, 'consent_required');
      // access_denied.
      const deny = await browser.follow(authorizeUrl({ client_id: other.id, scope: 'openid profile' }), server.url);
      const denied = await browser.request(`${server.url}/consent`, { form: { csrf: hiddenField(deny.text, 'csrf'), request: hiddenField(deny.text, 'request'), decision: 'deny' } });
      const deniedParams = responseParams(denied.location!).query;
      assert.equal(deniedParams.get('error'), 'access_denied');
      onlyIss(deniedParams, 'access_denied');
      // Implicit: in the fragment, for tokens and for errors.
      const implicit = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_type: 'token', scope: 'objects:read' }));
      onlyIss(responseParams(implicit.location!).fragment, 'implicit token');
      const implicitError = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_type: 'id_token', scope: 'openid' }));
      assert.equal(responseParams(implicitError.location!).fragment.get('error'), 'invalid_request');
      onlyIss(responseParams(implicitError.location!).fragment, 'implicit error');
      // form_post: a hidden field.
      const formPost = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_mode: 'form_post' }));
      assert.equal(formPostFields(formPost.text).iss, issuer);
      const formPostError = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_mode: 'form_post', scope: 'not-a-scope' }));
      assert.equal(formPostFields(formPostError.text).error, 'invalid_scope');
      assert.equal(formPostFields(formPostError.text).iss, issuer);
    });
  });

  // --- §4.5: authorization code injection --------------------------------------------------------

  describe('code injection (§4.5)', () => {
    it('refuses a public client’s code redeemed by a confidential client, and leaves it redeemable by its owner', async () => {
      const v = verifier();
      const code = await codeFor({ client_id: spa.id, code_challenge: challengeOf(v), code_challenge_method: 'S256' });
      const stolen = await exchange(web, { code, code_verifier: v });
      assert.equal(stolen.body.error, 'invalid_grant');
      assert.equal(stolen.body.access_token, undefined);
      const stolenAsPublic = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: other.id, code, redirect_uri: CALLBACK, code_verifier: v });
      assert.equal(stolenAsPublic.status, 401, 'a confidential client cannot act as public');
      const own = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: spa.id, code, redirect_uri: CALLBACK, code_verifier: v });
      assert.equal(own.status, 200, JSON.stringify(own.body));
    });

    it('refuses a code injected into another client’s callback (the attacker’s client, same redirect URI)', async () => {
      // The attacker authorizes their own client and pastes the code into the victim's callback: the victim's client redeems it.
      const code = await codeFor({ client_id: other.id });
      const injected = await exchange(web, { code });
      assert.equal(injected.body.error, 'invalid_grant');
    });

    it('binds a code to its redirect_uri, loopback port included', async () => {
      const code = await codeFor({ redirect_uri: 'http://127.0.0.1:51234/native' });
      for (const redirect of ['http://127.0.0.1:51235/native', LOOPBACK, CALLBACK, 'http://127.0.0.1:51234/native/']) {
        const res = await exchange(web, { code, redirect_uri: redirect });
        assert.equal(res.body.error, 'invalid_grant', redirect);
      }
      assert.equal((await exchange(web, { code, redirect_uri: 'http://127.0.0.1:51234/native' })).status, 200);
    });

    it('binds a code to its PKCE challenge: an injected code fails with the victim’s verifier', async () => {
      const attackerVerifier = verifier();
      const victimVerifier = verifier();
      const injected = await codeFor({ client_id: spa.id, code_challenge: challengeOf(attackerVerifier), code_challenge_method: 'S256' });
      const res = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: spa.id, code: injected, redirect_uri: CALLBACK, code_verifier: victimVerifier });
      assert.equal(res.body.error, 'invalid_grant');
      assert.match(res.body.error_description, /code_verifier/);
      // The same for a confidential client using PKCE.
      const code = await codeFor({ code_challenge: challengeOf(attackerVerifier), code_challenge_method: 'S256' });
      assert.equal((await exchange(web, { code, code_verifier: victimVerifier })).body.error, 'invalid_grant');
    });
  });

  // --- §4.8: PKCE downgrade ----------------------------------------------------------------------

  describe('PKCE downgrade (§2.1.1, §4.8)', () => {
    it('refuses a code_verifier at the exchange when the authorization request had no code_challenge', async () => {
      const code = await codeFor({});
      const res = await exchange(web, { code, code_verifier: verifier() });
      assert.equal(res.body.error, 'invalid_grant');
      assert.equal(res.body.access_token, undefined);
    });

    it('refuses an exchange without code_verifier when the authorization request had a challenge', async () => {
      const code = await codeFor({ code_challenge: challengeOf(verifier()), code_challenge_method: 'S256' });
      assert.equal((await exchange(web, { code })).body.error, 'invalid_grant');
    });

    it('refuses the plain method by default, also when the method is left out, and advertises S256 only', async () => {
      const browser = await signedIn();
      const downgrades: Record<string, string>[] = [{ code_challenge: verifier(), code_challenge_method: 'plain' }, { code_challenge: verifier() }, { code_challenge: verifier(), code_challenge_method: 's256' }, { code_challenge: verifier(), code_challenge_method: 'S512' }];
      for (const params of downgrades) {
        const res = await browser.request(authorizeUrl({ client_id: spa.id, ...params }));
        const query = responseParams(res.location!).query;
        assert.equal(query.get('error'), 'invalid_request', JSON.stringify(params));
        assert.equal(query.get('code'), null);
      }
      const metadata = (await (await fetch(`${server.url}/.well-known/openid-configuration`)).json()) as { code_challenge_methods_supported: string[] };
      assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    });

    it('makes public clients use PKCE: no code without a challenge', async () => {
      const browser = await signedIn();
      const res = await browser.request(authorizeUrl({ client_id: spa.id }));
      const query = responseParams(res.location!).query;
      assert.equal(query.get('error'), 'invalid_request');
      assert.match(query.get('error_description') ?? '', /code_challenge/);
      assert.equal(query.get('code'), null);
      // A malformed challenge (too short to be S256) is no better.
      const short = await browser.request(authorizeUrl({ client_id: spa.id, code_challenge: 'abc', code_challenge_method: 'S256' }));
      assert.equal(responseParams(short.location!).query.get('error'), 'invalid_request');
    });

    it('makes public clients use PKCE at the exchange too: a code issued without a challenge while the client was confidential is refused once it is public', async () => {
      const going = await server.client({ name: 'Going public', grantTypes: ['authorization_code', 'refresh_token'], scopes: ['openid', 'objects:read'], redirectUris: [CALLBACK] });
      const code = await codeFor({ client_id: going.id });
      await updateClient(server.gatehouse, going.id, { type: 'public' }, server.gatehouse.clock());
      const before = snapshot();
      // Anyone who learns the code now needs nothing else: the client has no secret and the code no challenge.
      const res = await exchange({ id: going.id, secret: '' }, { code, client_id: going.id });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error, 'invalid_grant');
      assert.equal(res.body.access_token, undefined);
      assert.deepEqual(snapshot(), before, 'the code is not used up, nothing is issued');
    });
  });

  // --- §4.14: refresh token replay ---------------------------------------------------------------

  describe('refresh token replay (§4.14)', () => {
    const refresh = (client: Client, refreshToken: string) =>
      post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, ...(client.secret ? {} : { client_id: client.id }) }, client.secret ? { headers: { authorization: basic(client.id, client.secret) } } : {});

    it('rotates the refresh token on every use, and a replayed one revokes the whole family', async () => {
      const first = await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
      const rt1 = first.body.refresh_token as string;
      const second = await refresh(firstParty, rt1);
      assert.equal(second.status, 200);
      const rt2 = second.body.refresh_token as string;
      assert.notEqual(rt2, rt1, 'rotated');
      const third = await refresh(firstParty, rt2);
      const rt3 = third.body.refresh_token as string;
      assert.notEqual(rt3, rt2);
      // The attacker replays a stolen, already rotated token.
      const replay = await refresh(firstParty, rt1);
      assert.equal(replay.body.error, 'invalid_grant');
      // The legitimate client's newest token is dead too: the family is revoked.
      const victim = await refresh(firstParty, rt3);
      assert.equal(victim.body.error, 'invalid_grant');
      const introspection = await post(`${server.url}/introspect`, { token: rt3 }, { headers: { authorization: basic(resourceServer.id, resourceServer.secret) } });
      assert.deepEqual(introspection.body, { active: false });
    });

    it('rotates and revokes the refresh tokens of public clients the same way', async () => {
      const v = verifier();
      const code = await codeFor({ client_id: spa.id, code_challenge: challengeOf(v), code_challenge_method: 'S256' });
      const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: spa.id, code, redirect_uri: CALLBACK, code_verifier: v });
      const rt1 = tokens.body.refresh_token as string;
      const rt2 = (await refresh({ id: spa.id, secret: '' }, rt1)).body.refresh_token as string;
      assert.ok(rt2 && rt2 !== rt1);
      assert.equal((await refresh({ id: spa.id, secret: '' }, rt1)).body.error, 'invalid_grant');
      assert.equal((await refresh({ id: spa.id, secret: '' }, rt2)).body.error, 'invalid_grant');
    });

    it('refuses a refresh token presented by another client, without revoking it for its owner', async () => {
      const issued = await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } });
      const rt = issued.body.refresh_token as string;
      assert.equal((await refresh(web, rt)).body.error, 'invalid_grant');
      assert.equal((await refresh({ id: spa.id, secret: '' }, rt)).body.error, 'invalid_grant');
      assert.equal((await refresh(firstParty, rt)).status, 200);
    });
  });

  // --- §4.16: clickjacking, and §4.2: Referer leakage — the headers of every page ------------------

  /** Every kind of page a person can see, each reached the way a browser would. */
  async function everyPage(): Promise<{ label: string; response: { status: number; headers: Headers; text: string } }[]> {
    const pages: { label: string; response: { status: number; headers: Headers; text: string } }[] = [];
    const add = (label: string, response: { status: number; headers: Headers; text: string }) => pages.push({ label, response });
    const anonymous = new HttpBrowser();
    add('sign-in', await anonymous.request(`${server.url}/login`));
    add('sign-up', await anonymous.request(`${server.url}/signup`));
    add('authorization error', await anonymous.request(authorizeUrl({ redirect_uri: 'https://evil.example/' })));
    add('not found', await anonymous.request(`${server.url}/no-such-page`));
    add('signed out', await anonymous.request(`${server.url}/logout`));
    add('CSRF refusal', await anonymous.request(`${server.url}/login`, { form: { email: 'a@example.com', password: 'x' } }));
    const pending = await anonymous.request(authorizeUrl({ client_id: other.id, scope: 'openid email' }));
    add('sign-in for a request', await anonymous.request(new URL(pending.location!, server.url).toString()));
    const browser = await signedIn();
    const consent = await browser.follow(authorizeUrl({ client_id: other.id, scope: 'openid email profile' }), server.url);
    assert.match(consent.text, /name="decision"/);
    add('consent', consent);
    add('form_post', await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_mode: 'form_post' })));
    add('account', await browser.request(`${server.url}/account`));
    add('sign-out confirmation', await browser.request(`${server.url}/logout`));
    const dev = await signedIn(developer);
    add('portal', await dev.request(`${server.url}/developers`));
    add('portal: new application', await dev.request(`${server.url}/developers/new`));
    const { client } = await createClient(server.gatehouse, { name: 'Dev app', type: 'confidential', ownerUserId: developerId, grantTypes: ['client_credentials'], scopes: ['objects:read'] }, server.gatehouse.clock());
    add('portal: application', await dev.request(`${server.url}/developers/applications/${client.id}`));
    add('portal: API keys', await dev.request(`${server.url}/developers/applications/${client.id}/api-keys`));
    add('portal: delete', await dev.request(`${server.url}/developers/applications/${client.id}/delete`));
    add('portal: secret shown once', await dev.request(`${server.url}/developers/applications/${client.id}/secrets`, { form: { csrf: hiddenField((await dev.request(`${server.url}/developers/applications/${client.id}`)).text, 'csrf') } }));
    add('admin API reference', await dev.request(`${server.url}/admin/v1/docs`));
    return pages;
  }

  describe('clickjacking (§4.16)', () => {
    it("forbids framing every page: CSP frame-ancestors 'none' and X-Frame-Options DENY", async () => {
      const pages = await everyPage();
      assert.ok(pages.length >= 18);
      for (const { label, response } of pages) {
        assert.match(response.headers.get('content-type') ?? '', /^text\/html/, label);
        const csp = response.headers.get('content-security-policy') ?? '';
        assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/, `${label}: ${csp}`);
        assert.equal(response.headers.get('x-frame-options'), 'DENY', label);
        assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, label);
      }
    });

    it('forbids content sniffing on every kind of response: X-Content-Type-Options nosniff', async () => {
      const responses: { label: string; response: { headers: Headers } }[] = (await everyPage()).map(({ label, response }) => ({ label, response }));
      const add = async (label: string, url: string, init?: RequestInit) => responses.push({ label, response: await fetch(`${server.url}${url}`, init) });
      const addPost = async (label: string, url: string, form: Record<string, string>, client: Client) => {
        const response = await post(`${server.url}${url}`, form, { headers: { authorization: basic(client.id, client.secret) } });
        responses.push({ label, response });
        return response.status;
      };
      assert.equal(await addPost('token', '/token', { grant_type: 'client_credentials' }, machine), 200);
      assert.equal(await addPost('token error', '/token', { grant_type: 'client_credentials' }, { ...machine, secret: 'wrong' }), 401);
      await add('token, wrong method', '/token');
      await add('token, unsupported body', '/token', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
      await add('CORS preflight', '/token', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
      await add('discovery', '/.well-known/openid-configuration');
      await add('JWKS', '/jwks.json');
      await add('health', '/healthz');
      await add('userinfo without a token', '/userinfo');
      await addPost('introspection', '/introspect', { token: 'x' }, resourceServer);
      await add('metrics', '/metrics');
      await add('stylesheet', '/static/gatehouse.css');
      await add('admin API without a token', '/admin/v1/clients');
      await add('admin API, unknown route', '/admin/v1/no-such-thing');
      await add('path parameter too long', `/admin/v1/clients/${'a'.repeat(300)}`);
      await add('unknown address, by POST', '/no-such-endpoint', { method: 'POST' });
      assert.ok(responses.length >= 34);
      for (const { label, response } of responses) assert.equal(response.headers.get('x-content-type-options'), 'nosniff', label);
    });
  });

  describe('token leakage through Referer and caches (§4.2, §4.3)', () => {
    it('sends Referrer-Policy no-referrer and Cache-Control no-store on every page', async () => {
      for (const { label, response } of await everyPage()) {
        assert.equal(response.headers.get('referrer-policy'), 'no-referrer', label);
        assert.equal(response.headers.get('cache-control'), 'no-store', label);
        assert.match(response.text, /<meta name="referrer" content="no-referrer">/, label);
      }
    });

    it('links to other sites only with rel="noreferrer"', async () => {
      const dev = await signedIn(developer);
      const appPage = await dev.follow(authorizeUrl({ client_id: other.id, scope: 'openid profile email' }), server.url);
      assert.match(appPage.text, /href="https:\/\/attacker\.example\/"/, 'the consent page links to the application');
      let external = 0;
      for (const { label, response } of [...(await everyPage()), { label: 'consent', response: appPage }]) {
        for (const match of response.text.matchAll(/<a\s[^>]*href="(https?:[^"]*)"[^>]*>/g)) {
          if (new URL(match[1]!.replace(/&amp;/g, '&')).origin === server.url) continue;
          external++;
          assert.match(match[0], /rel="[^"]*noreferrer/, `${label}: ${match[0]}`);
        }
      }
      assert.ok(external >= 1);
    });

    it('answers tokens only in bodies with no-store, never in a URL of ours', async () => {
      const cc = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } });
      assert.equal(cc.headers.get('cache-control'), 'no-store');
      assert.equal(cc.headers.get('pragma'), 'no-cache');
      const v = verifier();
      const { browser, page } = await authorize({ client_id: spa.id, code_challenge: challengeOf(v), code_challenge_method: 'S256' });
      const code = new URL(page.location!).searchParams.get('code')!;
      const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', client_id: spa.id, code, redirect_uri: CALLBACK, code_verifier: v });
      assert.equal(tokens.headers.get('cache-control'), 'no-store');
      // The redirect carries the code only (short-lived, single use, PKCE-bound): no token in the query.
      const query = new URL(page.location!).searchParams;
      assert.deepEqual([...query.keys()].sort(), ['code', 'iss', 'state']);
      const userinfo = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${tokens.body.access_token}` } });
      assert.equal(userinfo.headers.get('cache-control'), 'no-store');
      const introspection = await post(`${server.url}/introspect`, { token: tokens.body.access_token }, { headers: { authorization: basic(resourceServer.id, resourceServer.secret) } });
      assert.equal(introspection.headers.get('cache-control'), 'no-store');
      // The redirects inside our own pages (to sign-in and consent) carry no token or code either.
      const pending = await new HttpBrowser().request(authorizeUrl({ client_id: other.id }));
      assert.match(pending.location!, /^\/login\?request=[A-Za-z0-9_-]{32}$/);
      const consent = await browser.request(authorizeUrl({ client_id: other.id, scope: 'openid email' }));
      assert.match(consent.location!, /^\/consent\?request=[A-Za-z0-9_-]{32}$/);
      // Userinfo refuses a token in the query string (RFC 6750 §2.3 is not offered).
      assert.equal((await fetch(`${server.url}/userinfo?access_token=${encodeURIComponent(tokens.body.access_token)}`)).status, 401);
    });
  });

  // --- §4.4 (CSRF, RFC 6749 §10.12): every form -------------------------------------------------

  describe('CSRF on every form (§4.7)', () => {
    it('puts a CSRF token into every form of ours', async () => {
      let forms = 0;
      for (const { label, response } of await everyPage()) {
        for (const match of response.text.matchAll(/<form\b[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/g)) {
          const action = /action="([^"]*)"/.exec(match[0])?.[1] ?? '';
          if (/^https?:/.test(action) && new URL(action).origin !== server.url) continue; // form_post to the client
          forms++;
          assert.match(match[1]!, /<input type="hidden" name="csrf" value="[A-Za-z0-9_-]{43}">/, `${label}: form ${action} has no CSRF token`);
        }
      }
      assert.ok(forms >= 12, `only ${forms} forms seen`);
    });

    /** Posts a form three ways an attacker could (no token, a token of another browser, a made-up token): each refused with 403, nothing stored changed. */
    async function refusesForgedPosts(browser: HttpBrowser, path: string, fields: Record<string, string>, label: string): Promise<void> {
      const stranger = new HttpBrowser();
      const strangerToken = hiddenField((await stranger.request(`${server.url}/login`)).text, 'csrf');
      const before_ = snapshot();
      for (const csrf of [undefined, strangerToken, 'x'.repeat(43), '']) {
        const res = await browser.request(`${server.url}${path}`, { form: { ...fields, ...(csrf === undefined ? {} : { csrf }) } });
        assert.equal(res.status, 403, `${label} with csrf=${csrf?.slice(0, 8)}: ${res.status} ${res.location ?? ''}`);
        assert.equal(res.location, undefined, label);
        assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      }
      await server.gatehouse.audit.flush();
      assert.deepEqual(snapshot(), before_, `${label}: a forged post changed stored state`);
    }

    it('refuses a forged sign-in (login CSRF): no session is started', async () => {
      const browser = new HttpBrowser();
      await browser.request(`${server.url}/login`);
      await refusesForgedPosts(browser, '/login', { email: user.email, password: user.password }, 'login');
      assert.equal(browser.cookies.has('gatehouse_session'), false);
    });

    it('refuses a forged sign-up: no account is created', async () => {
      const browser = new HttpBrowser();
      await browser.request(`${server.url}/signup`);
      await refusesForgedPosts(browser, '/signup', { email: 'forged@example.com', name: 'F', password: 'a long enough password' }, 'signup');
      assert.equal(await server.gatehouse.storage.users.findByEmail('forged@example.com'), undefined);
    });

    it('never signs a browser in with a session id planted in it (session fixation): sign-in and sign-up start a new session and end the planted one', async () => {
      for (const [path, form] of [
        ['/login', { ...user }],
        ['/signup', { email: `fixated-${randomBytes(4).toString('hex')}@example.com`, name: 'Fixated', password: 'a long enough password' }],
      ] as const) {
        // The attacker's own session, its id put into the victim's browser (a sibling site's cookie, a shared computer).
        const attacker = await signedInBrowser(server.url, developer.email, developer.password);
        const planted = attacker.cookies.get('gatehouse_session')!;
        const victim = new HttpBrowser();
        victim.cookies.set('gatehouse_session', planted);
        const page = await victim.request(`${server.url}${path}`);
        const answer = await victim.request(`${server.url}${path}`, { form: { csrf: hiddenField(page.text, 'csrf'), ...form } });
        assert.equal(answer.status, 303, path);
        const session = victim.cookies.get('gatehouse_session');
        assert.ok(session && session !== planted, `${path}: a new session id`);
        assert.equal((await attacker.request(`${server.url}/account`)).status, 302, `${path}: the planted session has ended, and signs nobody in`);
        assert.match((await victim.request(`${server.url}/account`)).text, new RegExp(form.email), path);
      }
    });

    it('refuses a forged consent: nothing is authorized and the request stays answerable', async () => {
      const browser = await signedIn();
      const page = await browser.follow(authorizeUrl({ client_id: other.id, scope: 'openid email profile objects:read' }), server.url);
      const request = hiddenField(page.text, 'request');
      await refusesForgedPosts(browser, '/consent', { request, decision: 'allow' }, 'consent');
      const real = await browser.request(`${server.url}/consent`, { form: { csrf: hiddenField(page.text, 'csrf'), request, decision: 'deny' } });
      assert.equal(responseParams(real.location!).query.get('error'), 'access_denied');
    });

    it('refuses a forged withdrawal of consent: the grant stays', async () => {
      const { browser } = await authorize({ client_id: web.id, scope: 'openid email' });
      assert.ok(await server.gatehouse.storage.consents.find(userId, web.id));
      await refusesForgedPosts(browser, '/account/applications/withdraw', { client_id: web.id }, 'withdraw');
      assert.ok(await server.gatehouse.storage.consents.find(userId, web.id), 'consent still there');
    });

    it('refuses a forged sign-out confirmation: the session stays', async () => {
      const browser = await signedIn();
      const res = await browser.request(`${server.url}/logout`, { form: { confirm: 'yes' } });
      // An unconfirmed POST shows the confirmation page and signs nobody out.
      assert.notEqual(res.status, 303);
      assert.equal((await browser.request(`${server.url}/account`)).status, 200, 'still signed in');
      for (const csrf of ['x'.repeat(43), hiddenField((await new HttpBrowser().request(`${server.url}/login`)).text, 'csrf')]) {
        await browser.request(`${server.url}/logout`, { form: { confirm: 'yes', csrf } });
        assert.equal((await browser.request(`${server.url}/account`)).status, 200, 'still signed in');
      }
      // The real form signs out (the positive control).
      const confirmation = await browser.request(`${server.url}/logout`);
      await browser.request(`${server.url}/logout`, { form: { confirm: 'yes', csrf: hiddenField(confirmation.text, 'csrf') } });
      assert.equal((await browser.request(`${server.url}/account`)).status, 302);
    });

    it('refuses forged posts to every form of the developer portal', async () => {
      const dev = await signedIn(developer);
      const { client } = await createClient(server.gatehouse, { name: 'Forgery target', type: 'confidential', ownerUserId: developerId, grantTypes: ['client_credentials'], scopes: ['objects:read'] }, server.gatehouse.clock());
      const key = await server.gatehouse.apiKeys.create(client, { name: 'k', scopes: ['objects:read'] }, server.gatehouse.clock());
      const [secret] = await server.gatehouse.storage.clients.listSecrets(client.id);
      const base = `/developers/applications/${client.id}`;
      await refusesForgedPosts(dev, '/developers/applications', { name: 'Forged', type: 'confidential', redirect_uris: 'https://forged.example/cb', base_url: '', description: '' }, 'create application');
      await refusesForgedPosts(dev, `${base}/secrets`, {}, 'add secret');
      await refusesForgedPosts(dev, `${base}/secrets/${secret!.id}/delete`, {}, 'delete secret');
      await refusesForgedPosts(dev, `${base}/api-keys`, { name: 'forged', scopes: 'objects:read', expires_on: '' }, 'create API key');
      await refusesForgedPosts(dev, `${base}/api-keys/${key.key.id}/revoke`, {}, 'revoke API key');
      await refusesForgedPosts(dev, `${base}/delete`, {}, 'delete application');
      assert.ok(await server.gatehouse.storage.clients.find(client.id));
    });

    it('sets its cookies HttpOnly and SameSite=Lax', async () => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const res = await fetch(`${server.url}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
        body: new URLSearchParams({ csrf: hiddenField(form.text, 'csrf'), ...user }),
      });
      const cookies = [...form.headers.getSetCookie(), ...res.headers.getSetCookie()];
      assert.ok(cookies.some((c) => c.startsWith('gatehouse_session=')), 'a session cookie was set');
      for (const cookie of cookies) assert.match(cookie, /; HttpOnly; SameSite=Lax/, cookie);
    });
  });

  // --- access tokens are not client credentials --------------------------------------------------

  describe('access tokens never accepted as client credentials', () => {
    it('refuses a Bearer token, an API key or a refresh token where client authentication is needed', async () => {
      const accessToken = (await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } })).body.access_token as string;
      const machineClient = (await server.gatehouse.storage.clients.find(machine.id))!;
      const apiKey = (await server.gatehouse.apiKeys.create(machineClient, { name: 'not a secret', scopes: ['objects:read'] }, server.gatehouse.clock())).value;
      const refreshToken = (await post(`${server.url}/token`, { grant_type: 'password', username: user.email, password: user.password }, { headers: { authorization: basic(firstParty.id, firstParty.secret) } })).body.refresh_token as string;
      for (const path of ['/token', '/introspect', '/revoke']) {
        const body: Record<string, string> = path === '/token' ? { grant_type: 'client_credentials' } : { token: accessToken };
        const attempts: [string, Record<string, string>, Record<string, string>][] = [
          ['Bearer header', body, { authorization: `Bearer ${accessToken}` }],
          ['ApiKey header', body, { authorization: `ApiKey ${apiKey}` }],
          ['access token as Basic secret', body, { authorization: basic(machine.id, accessToken) }],
          ['access token as client_secret', { ...body, client_id: machine.id, client_secret: accessToken }, {}],
          ['API key as client_secret', { ...body, client_id: machine.id, client_secret: apiKey }, {}],
          ['refresh token as client_secret', { ...body, client_id: firstParty.id, client_secret: refreshToken }, {}],
        ];
        for (const [label, params, headers] of attempts) {
          const res = await post(`${server.url}${path}`, params, { headers });
          assert.equal(res.status, 401, `${path} ${label}: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.error, 'invalid_client', `${path} ${label}`);
          assert.equal(res.body.access_token, undefined);
          assert.equal(res.body.active, undefined);
          if (headers.authorization) assert.ok(res.headers.get('www-authenticate'), `${path} ${label}: WWW-Authenticate`);
        }
      }
      // The token itself was not revoked by any of it.
      const check = await post(`${server.url}/introspect`, { token: accessToken }, { headers: { authorization: basic(resourceServer.id, resourceServer.secret) } });
      assert.equal(check.body.active, true);
    });
  });

  // --- state is echoed exactly -------------------------------------------------------------------

  describe('state echoed exactly (§4.7.1)', () => {
    // An empty state is no state (RFC 6749 §3.1: a parameter without a value is as if omitted): see "No state sent" below.
    const STATES = ['a b', 'a+b', 'a&b=c', '%20%2B', 'ü€😀', '#frag', '<script>"\'', '{"json":[1,2]}', 'x'.repeat(1000), 'line\nbreak', '=='];

    it('returns the state byte for byte in codes, errors, fragments and form_post', async () => {
      const browser = await signedIn();
      await authorize({ client_id: web.id }, browser);
      for (const state of STATES) {
        const code = responseParams((await browser.request(authorizeUrl({ state }))).location!).query;
        assert.ok(code.get('code'));
        assert.deepEqual(code.getAll('state'), [state], `code: ${JSON.stringify(state)}`);
        const error = responseParams((await browser.request(authorizeUrl({ state, scope: 'not-a-scope' }))).location!).query;
        assert.deepEqual(error.getAll('state'), [state], `error: ${JSON.stringify(state)}`);
        const fragment = responseParams((await browser.request(authorizeUrl({ state, client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_type: 'token', scope: 'objects:read' }))).location!).fragment;
        assert.deepEqual(fragment.getAll('state'), [state], `fragment: ${JSON.stringify(state)}`);
        const formPost = await browser.request(authorizeUrl({ state, client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_mode: 'form_post' }));
        assert.equal(formPostFields(formPost.text).state, state, `form_post: ${JSON.stringify(state)}`);
      }
      // After sign-in and consent too (the state waits with the request).
      const { page } = await authorize({ client_id: other.id, state: 'ü&=# x', scope: 'openid profile email objects:read' });
      assert.deepEqual(responseParams(page.location!).query.getAll('state'), ['ü&=# x']);
      // No state sent, none returned; nor for an empty one.
      for (const state of [undefined, '']) {
        const none = new URL((await browser.request(`${server.url}/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid objects:read', ...(state !== undefined && { state }) })}`)).location!);
        assert.ok(none.searchParams.get('code'));
        assert.equal(none.searchParams.has('state'), false, `state ${JSON.stringify(state)}`);
      }
    });

    it('refuses a repeated state at the redirect URI, echoing neither value', async () => {
      const browser = await signedIn();
      for (const [method, mode] of [['GET', 'query'], ['POST', 'query'], ['GET', 'fragment']] as const) {
        const params: [string, string][] = [...new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: CALLBACK, scope: 'openid objects:read', response_mode: mode }), ['state', 'first'], ['state', 'second']];
        const res = method === 'GET' ? await browser.request(`${server.url}/authorize?${new URLSearchParams(params)}`) : await browser.request(`${server.url}/authorize`, { form: params });
        assert.ok(res.location, `${method} ${mode}: ${res.status} ${res.text.slice(0, 200)}`);
        const { query, fragment } = responseParams(res.location);
        const answer = mode === 'query' ? query : fragment;
        assert.equal(answer.get('error'), 'invalid_request');
        assert.equal(answer.get('code'), null);
        assert.deepEqual(answer.getAll('state'), []);
        assert.equal(answer.get('iss'), issuer);
      }
    });
  });

  // --- implicit: never a token in the query --------------------------------------------------------

  describe('no tokens in query strings for implicit (§2.1.2)', () => {
    it('returns access and ID tokens in the fragment only', async () => {
      const browser = await signedIn();
      for (const [responseType, scope] of [['token', 'objects:read'], ['id_token token', 'openid'], ['token id_token', 'openid'], ['id_token', 'openid']] as const) {
        const res = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_type: responseType, scope, nonce: 'n' }));
        const url = new URL(res.location!);
        assert.equal(url.search, '', `${responseType}: ${res.location}`);
        const fragment = new URLSearchParams(url.hash.slice(1));
        assert.ok(fragment.get('access_token') ?? fragment.get('id_token'), responseType);
      }
    });

    it('refuses response_mode=query for tokens, answering in the fragment', async () => {
      const browser = await signedIn();
      for (const responseType of ['token', 'id_token', 'id_token token']) {
        const res = await browser.request(authorizeUrl({ client_id: legacy.id, redirect_uri: LEGACY_CALLBACK, response_type: responseType, response_mode: 'query', scope: 'openid objects:read', nonce: 'n' }));
        const url = new URL(res.location!);
        assert.equal(url.searchParams.get('access_token'), null);
        assert.equal(url.searchParams.get('id_token'), null);
        assert.equal(new URLSearchParams(url.hash.slice(1)).get('error'), 'invalid_request', responseType);
      }
    });

    it('refuses implicit to a client that is not allowed it, even with implicit enabled', async () => {
      const browser = await signedIn();
      const res = await browser.request(authorizeUrl({ response_type: 'token', scope: 'objects:read' }));
      const url = new URL(res.location!);
      assert.equal(url.searchParams.get('access_token'), null);
      const params = new URLSearchParams(url.hash.slice(1) || url.search.slice(1));
      assert.equal(params.get('error'), 'unauthorized_client');
      assert.equal(params.get('access_token'), null);
    });
  });
});
