import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { launchChromium } from '../support/chromium.ts';

/**
 * The browser flows of Gatehouse end to end, in a real headless Chromium: the person signs in,
 * answers the consent page and comes back to a small client application listening on loopback.
 */

const SCREENSHOTS = resolve(dirname(fileURLToPath(import.meta.url)), '../../test-output/screenshots');
const PASSWORD = 'correct horse battery staple';
const VIEWPORTS: ReadonlyArray<readonly [string, BrowserContextOptions]> = [
  ['phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
  ['desktop', { viewport: { width: 1280, height: 800 } }],
];

/** What reached the client application: the query (or a posted form), never the fragment. */
interface Arrival {
  method: string;
  path: string;
  query: URLSearchParams;
}

/** The "client app": a web server on 127.0.0.1 whose /callback is the registered redirect URI. */
async function startClientApp() {
  const arrivals: Arrival[] = [];
  const server = createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/favicon.ico') return void response.writeHead(204).end();
    let body = '';
    for await (const chunk of request) body += chunk;
    if (url.pathname === '/post-form') {
      // The application's own page posting a form to Gatehouse: `action` and the fields come in the query.
      const action = url.searchParams.get('action')!;
      const fields = [...url.searchParams].filter(([name]) => name !== 'action');
      const escape = (value: string) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
      const inputs = fields.map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`).join('');
      return void response
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(`<!doctype html><title>Client app</title><form method="post" action="${escape(action)}">${inputs}</form><script>document.forms[0].submit()</script>`);
    }
    arrivals.push({ method: request.method ?? 'GET', path: url.pathname, query: request.method === 'POST' ? new URLSearchParams(body) : url.searchParams });
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Client app</title><h1>Back at the client app</h1>');
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    /**
     * A page of the application on another site than Gatehouse (localhost, not 127.0.0.1), which
     * posts a form to `action`: the browser sends no SameSite=Lax cookie with such a POST.
     */
    crossSiteForm: (action: string, fields: Record<string, string>) => `${origin.replace('127.0.0.1', 'localhost')}/post-form?${new URLSearchParams({ action, ...fields })}`,
    callback: `${origin}/callback`,
    signedOut: `${origin}/signed-out`,
    arrivals,
    /** The last request that reached `path`. */
    last(path: string): Arrival {
      const arrival = arrivals.findLast((a) => a.path === path);
      assert.ok(arrival, `nothing arrived at ${path}`);
      return arrival;
    },
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

type ClientApp = Awaited<ReturnType<typeof startClientApp>>;

/** A page that remembers its console errors, uncaught errors and the documents it loaded. */
interface WatchedPage {
  page: Page;
  context: BrowserContext;
  consoleErrors: string[];
  documents: { path: string; status: number; headers: Record<string, string> }[];
}

describe('browser flows in headless Chromium', () => {
  let server: TestServer;
  let browser: Browser;
  let clientApp: ClientApp;
  let contexts: BrowserContext[] = [];
  let users = 0;

  before(async () => {
    server = await startTestServer('sqlite', { config: { implicit: { enabled: true } } });
    clientApp = await startClientApp();
    browser = await launchChromium();
  });
  afterEach(async () => {
    for (const context of contexts) await context.close();
    contexts = [];
  });
  after(async () => {
    await browser?.close();
    await clientApp?.close();
    await server?.close();
  });

  /** A fresh browser context (no cookies, no session) with one page in it. */
  const openPage = async (options: BrowserContextOptions = {}): Promise<WatchedPage> => {
    const context = await browser.newContext(options);
    contexts.push(context);
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    const watched: WatchedPage = { page, context, consoleErrors: [], documents: [] };
    page.on('console', (message) => {
      if (message.type() === 'error') watched.consoleErrors.push(`${message.location().url}: ${message.text()}`);
    });
    page.on('pageerror', (error) => watched.consoleErrors.push(`uncaught: ${error.message}`));
    page.on('response', (response) => {
      if (response.request().resourceType() === 'document') {
        watched.documents.push({ path: new URL(response.url()).pathname, status: response.status(), headers: response.headers() });
      }
    });
    return watched;
  };

  /** A person with an account of their own, so one test's consents never help another. */
  const newUser = async () => {
    users += 1;
    const email = `person${users}@example.com`;
    const { id } = await server.user(email, PASSWORD);
    return { id, email };
  };

  const authorizeUrl = (params: Record<string, string>) => `${server.url}/authorize?${new URLSearchParams(params)}`;

  const signIn = async (page: Page, email: string) => {
    await page.getByLabel('Email', { exact: true }).fill(email);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
  };

  const waitForConsent = (page: Page) => page.waitForURL((url) => url.pathname === '/consent');

  /** Waits until the browser is back at `target` and returns the address it landed on. */
  const backAt = async (page: Page, target: string): Promise<URL> => {
    await page.waitForURL((url) => url.href.startsWith(target));
    return new URL(page.url());
  };

  const exchange = (client: { id: string; secret?: string }, code: string, extra: Record<string, string> = {}) =>
    client.secret
      ? post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: clientApp.callback, ...extra }, { headers: { authorization: basic(client.id, client.secret) } })
      : post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: clientApp.callback, client_id: client.id, ...extra });

  const userinfo = async (accessToken: string) => {
    const response = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  // Characters that must survive encoding both ways: the client gets back exactly what it sent.
  const newState = () => `st-${randomBytes(6).toString('hex')} +/=&?é`;

  it('lets a single-page app on another origin read why /userinfo refused its token, from the WWW-Authenticate challenge (RFC 6750 §3)', async () => {
    const { page } = await openPage();
    await page.goto(`${clientApp.origin}/spa`);
    const answer = (await page.evaluate(`fetch(${JSON.stringify(`${server.url}/userinfo`)}, { headers: { authorization: 'Bearer not-a-token' } })
      .then((response) => ({ status: response.status, challenge: response.headers.get('www-authenticate') }))`)) as { status: number; challenge: string | null };
    assert.equal(answer.status, 401);
    assert.match(answer.challenge ?? '', /^Bearer .*error="invalid_token"/, 'the challenge is readable across origins');
  });

  it('runs the Procore authorization code flow: sign in, consent, code and state back, exchange with the secret, call, refresh', async () => {
    const client = await server.client({
      name: 'Procore Sync',
      type: 'confidential',
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['openid', 'profile', 'objects:read', 'objects:download'],
      redirectUris: [clientApp.callback],
    });
    const user = await newUser();
    const { page, context, consoleErrors, documents } = await openPage();
    const state = newState();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid profile objects:read objects:download', state }));
    assert.equal(new URL(page.url()).pathname, '/login');
    await assert.doesNotReject(page.getByText('to continue to Procore Sync').waitFor());
    await signIn(page, user.email);

    await waitForConsent(page);
    assert.match(await page.getByRole('heading', { level: 1 }).innerText(), /Procore Sync wants to access your account/);
    for (const description of ['Sign you in with your Gatehouse account', 'See your name', 'Browse BIM objects and read their metadata', 'Download BIM object files']) {
      assert.ok(await page.getByText(description, { exact: true }).isVisible(), `the consent page lists "${description}"`);
    }
    await page.getByRole('button', { name: 'Allow' }).click();

    const landed = await backAt(page, clientApp.callback);
    const arrival = clientApp.last('/callback');
    const code = arrival.query.get('code');
    assert.ok(code, 'the callback receives a code');
    assert.equal(arrival.query.get('state'), state);
    assert.equal(arrival.query.get('iss'), server.config.issuer);
    assert.equal(landed.searchParams.get('code'), code);

    // The session cookie a browser keeps: not readable by scripts, not sent on cross-site posts.
    const session = (await context.cookies(server.url)).find((c) => c.name === 'gatehouse_session');
    assert.ok(session, 'a session cookie is set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');

    // Both pages the person saw carry the CSP, and nothing on them broke it or threw.
    for (const path of ['/login', '/consent']) {
      const document = documents.find((d) => d.path === path);
      assert.ok(document, `the browser loaded ${path}`);
      assert.match(document.headers['content-security-policy'] ?? '', /script-src 'self'/);
    }
    assert.deepEqual(consoleErrors, []);

    const token = await exchange(client, code);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal(token.body.token_type, 'Bearer');
    assert.equal(token.body.scope, 'openid profile objects:read objects:download');
    assert.ok(token.body.refresh_token);
    assert.ok(token.body.id_token);

    const claims = await userinfo(token.body.access_token);
    assert.equal(claims.status, 200);
    assert.equal(claims.body.sub, user.id);

    const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token.body.refresh_token }, { headers: { authorization: basic(client.id, client.secret) } });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.ok(refreshed.body.access_token);
    assert.notEqual(refreshed.body.refresh_token, token.body.refresh_token);
    assert.equal((await userinfo(refreshed.body.access_token)).body.sub, user.id);
  });

  it('runs the authorization code flow with PKCE (S256) for a public client that has no secret', async () => {
    const client = await server.client({
      name: 'Field Tablet',
      type: 'public',
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['openid', 'objects:read'],
      redirectUris: [clientApp.callback],
    });
    const user = await newUser();
    const { page } = await openPage();
    const verifier = randomBytes(48).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const state = newState();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid objects:read', state, code_challenge: challenge, code_challenge_method: 'S256' }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();
    await backAt(page, clientApp.callback);

    const arrival = clientApp.last('/callback');
    assert.equal(arrival.query.get('state'), state);
    const code = arrival.query.get('code')!;
    assert.ok(code);

    const token = await exchange(client, code, { code_verifier: verifier });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal((await userinfo(token.body.access_token)).body.sub, user.id);

    const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token.body.refresh_token, client_id: client.id });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal((await userinfo(refreshed.body.access_token)).body.sub, user.id);
  });

  it('sends access_denied with the state back to the client when the person clicks Deny', async () => {
    const client = await server.client({ name: 'Nosy Widgets', grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [clientApp.callback] });
    const user = await newUser();
    const { page } = await openPage();
    const state = newState();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'objects:read', state }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Deny' }).click();
    await backAt(page, clientApp.callback);

    const arrival = clientApp.last('/callback');
    assert.equal(arrival.query.get('error'), 'access_denied');
    assert.equal(arrival.query.get('state'), state);
    assert.equal(arrival.query.get('iss'), server.config.issuer);
    assert.equal(arrival.query.get('code'), null);
  });

  it('returns the implicit flow token in the fragment, which never reaches the client server, and the token works', async () => {
    const client = await server.client({ name: 'Model Viewer SPA', type: 'public', grantTypes: ['implicit'], scopes: ['openid', 'objects:read'], redirectUris: [clientApp.callback] });
    const user = await newUser();
    const { page } = await openPage();
    const state = newState();

    await page.goto(authorizeUrl({ response_type: 'token', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid objects:read', state }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();

    const landed = await backAt(page, clientApp.callback);
    const fragment = new URLSearchParams(landed.hash.slice(1));
    const accessToken = fragment.get('access_token');
    assert.ok(accessToken, `a token in the fragment of ${landed.href}`);
    assert.equal(fragment.get('token_type'), 'Bearer');
    assert.equal(fragment.get('state'), state);
    assert.equal(fragment.get('iss'), server.config.issuer);
    assert.ok(Number(fragment.get('expires_in')) > 0);
    assert.equal(landed.search, '', 'nothing in the query string');
    assert.equal(clientApp.last('/callback').query.size, 0, 'the client server saw no token');

    const { payload } = await jwtVerify(accessToken, createRemoteJWKSet(new URL(`${server.url}/jwks.json`)), {
      issuer: server.config.issuer,
      audience: server.config.tokens.audience,
      typ: 'at+jwt',
    });
    assert.equal(payload.sub, user.id);
    assert.equal(payload.client_id, client.id);
    assert.equal((await userinfo(accessToken)).body.sub, user.id);
  });

  it('answers with response_mode=form_post through the self-submitting form, its script allowed by the CSP', async () => {
    const client = await server.client({ name: 'Form Poster', grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [clientApp.callback] });
    const user = await newUser();
    const { page, consoleErrors } = await openPage();
    const state = newState();

    await page.goto(authorizeUrl({ response_type: 'code', response_mode: 'form_post', client_id: client.id, redirect_uri: clientApp.callback, scope: 'objects:read', state }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();
    const landed = await backAt(page, clientApp.callback);

    assert.equal(landed.search, '', 'nothing in the address');
    const arrival = clientApp.last('/callback');
    assert.equal(arrival.method, 'POST');
    assert.equal(arrival.query.get('state'), state);
    assert.equal(arrival.query.get('iss'), server.config.issuer);
    const token = await exchange(client, arrival.query.get('code')!);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.deepEqual(consoleErrors, []);
  });

  it('signs the person in once: a second client completes without another login form', async () => {
    const clientA = await server.client({ name: 'Planner', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [clientApp.callback] });
    const clientB = await server.client({ name: 'Company Portal', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [clientApp.callback], firstParty: true });
    const clientC = await server.client({ name: 'Reporting', grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [clientApp.callback] });
    const user = await newUser();
    const { page, documents } = await openPage();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: clientA.id, redirect_uri: clientApp.callback, scope: 'openid objects:read', state: 'a' }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();
    await backAt(page, clientApp.callback);
    assert.equal(clientApp.last('/callback').query.get('state'), 'a');
    const loginsSoFar = documents.filter((d) => d.path === '/login').length;

    // First party: no login, no consent, straight back with a code.
    await page.goto(authorizeUrl({ response_type: 'code', client_id: clientB.id, redirect_uri: clientApp.callback, scope: 'openid objects:read', state: 'b' }));
    await backAt(page, clientApp.callback);
    const arrival = clientApp.last('/callback');
    assert.equal(arrival.query.get('state'), 'b');
    const token = await exchange(clientB, arrival.query.get('code')!);
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal((await userinfo(token.body.access_token)).body.sub, user.id);

    // Third party: consent is still asked, but not the password.
    await page.goto(authorizeUrl({ response_type: 'code', client_id: clientC.id, redirect_uri: clientApp.callback, scope: 'objects:read', state: 'c' }));
    await waitForConsent(page);
    assert.ok(await page.getByText(`Signed in as ${user.email}`).isVisible());
    await page.getByRole('button', { name: 'Allow' }).click();
    await backAt(page, clientApp.callback);
    assert.ok(clientApp.last('/callback').query.get('code'));

    assert.equal(documents.filter((d) => d.path === '/login').length, loginsSoFar, 'no second login form');
  });

  it('signs out from the account page, after which /authorize asks for the password again', async () => {
    const client = await server.client({ name: 'Company Portal', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [clientApp.callback], firstParty: true });
    const user = await newUser();
    const { page, context } = await openPage();
    const request = authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid', state: 's' });

    await page.goto(request);
    await signIn(page, user.email);
    await backAt(page, clientApp.callback);

    await page.goto(`${server.url}/account`);
    assert.ok(await page.getByText(`Signed in as ${user.email}`).isVisible());
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByRole('heading', { name: 'You are signed out' }).waitFor();
    assert.equal((await context.cookies(server.url)).find((c) => c.name === 'gatehouse_session'), undefined);

    await page.goto(request);
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.ok(await page.getByRole('button', { name: 'Sign in' }).isVisible());
    await page.goto(`${server.url}/account`);
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  /** A person signed in to a first-party client with a registered post-logout URI, and the ID token it got. */
  const signedInWithIdToken = async (name: string) => {
    const client = await server.client({
      name,
      grantTypes: ['authorization_code'],
      scopes: ['openid', 'objects:read'],
      redirectUris: [clientApp.callback],
      postLogoutRedirectUris: [clientApp.signedOut],
      firstParty: true,
    });
    const user = await newUser();
    const watched = await openPage();
    const request = authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid', state: 's' });
    await watched.page.goto(request);
    await signIn(watched.page, user.email);
    await backAt(watched.page, clientApp.callback);
    const token = await exchange(client, clientApp.last('/callback').query.get('code')!);
    assert.ok(token.body.id_token, JSON.stringify(token.body));
    return { ...watched, client, request, idToken: token.body.id_token as string };
  };

  it('signs out at the request of the client (id_token_hint) and returns to its registered post-logout URI with the state', async () => {
    const { page, request, idToken } = await signedInWithIdToken('Company Portal');
    const state = newState();
    await page.goto(`${server.url}/logout?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: clientApp.signedOut, state })}`);
    const landed = await backAt(page, clientApp.signedOut);
    assert.equal(landed.searchParams.get('state'), state);
    assert.equal(clientApp.last('/signed-out').query.get('state'), state);

    await page.goto(request);
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  it('signs out when the client POSTs the sign-out request from its own site, and ends the session on the server', async () => {
    const { page, context, client, idToken } = await signedInWithIdToken('Field Notes');
    const session = (await context.cookies(server.url)).find((c) => c.name === 'gatehouse_session')!;
    assert.ok(session);

    const state = newState();
    await page.goto(clientApp.crossSiteForm(`${server.url}/logout`, { id_token_hint: idToken, client_id: client.id, post_logout_redirect_uri: clientApp.signedOut, state }));
    const landed = await backAt(page, clientApp.signedOut);
    assert.equal(landed.searchParams.get('state'), state);

    // The session is over on the server, not only forgotten by this browser.
    const account = await fetch(`${server.url}/account`, { headers: { cookie: `gatehouse_session=${session.value}` }, redirect: 'manual' });
    assert.equal(account.status, 302);
    assert.match(account.headers.get('location') ?? '', /^\/login/);
  });

  it('answers a POST to /authorize from the client\'s own site with the session the person has (prompt=none gets a code)', async () => {
    const client = await server.client({
      name: 'Site Diary',
      grantTypes: ['authorization_code'],
      scopes: ['openid', 'objects:read'],
      redirectUris: [clientApp.callback],
      firstParty: true,
    });
    const user = await newUser();
    const { page } = await openPage();
    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid', state: 'first' }));
    await signIn(page, user.email);
    await backAt(page, clientApp.callback);

    const state = newState();
    await page.goto(clientApp.crossSiteForm(`${server.url}/authorize`, { response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid', prompt: 'none', state }));
    const landed = await backAt(page, clientApp.callback);
    assert.equal(landed.searchParams.get('error'), null, landed.search);
    assert.equal(landed.searchParams.get('state'), state);
    const token = await exchange(client, landed.searchParams.get('code')!);
    assert.equal(token.status, 200);
  });

  it('keeps a sign-in going on in one tab when another site posts a form to Gatehouse in another (an application’s sign-out or authorization request, or a hostile page)', async () => {
    const client = await server.client({ name: 'Bid Board', grantTypes: ['authorization_code'], scopes: ['openid', 'objects:read'], redirectUris: [clientApp.callback] });
    const other = await server.client({ name: 'Punch List', grantTypes: ['authorization_code'], scopes: ['openid'], redirectUris: [clientApp.callback], firstParty: true });
    const user = await newUser();
    const { page, context } = await openPage();
    const state = newState();
    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid objects:read', state }));
    assert.equal(new URL(page.url()).pathname, '/login');
    const csrf = async () => (await context.cookies(server.url)).find((c) => c.name === 'gatehouse_csrf')?.value;
    const before = await csrf();
    assert.ok(before);

    // Posted from pages of another site, which the browser sends without Gatehouse's SameSite=Lax cookies.
    const tab = await context.newPage();
    for (const [action, fields] of [
      ['/logout', { client_id: other.id, post_logout_redirect_uri: clientApp.signedOut, state: 'bye' }],
      ['/authorize', { response_type: 'code', client_id: other.id, redirect_uri: clientApp.callback, scope: 'openid', state: 'other' }],
      ['/login', { email: user.email, password: 'guessed' }],
      ['/consent', { decision: 'allow' }],
    ] as const) {
      await tab.goto(clientApp.crossSiteForm(`${server.url}${action}`, fields));
      await tab.waitForURL((url) => !url.href.startsWith(clientApp.origin.replace('127.0.0.1', 'localhost')));
      assert.equal(await csrf(), before, `a post to ${action} from another site leaves the browser’s CSRF cookie as it was`);
    }

    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();
    const landed = await backAt(page, clientApp.callback);
    assert.equal(landed.searchParams.get('state'), state);
    assert.ok(landed.searchParams.get('code'));
  });

  it('lists the authorized application on the account page; its Withdraw access button, named after it, removes it and its refresh token stops working', async () => {
    const client = await server.client({
      name: 'Takeoff Estimator',
      grantTypes: ['authorization_code', 'refresh_token'],
      scopes: ['objects:read', 'objects:download'],
      redirectUris: [clientApp.callback],
    });
    const user = await newUser();
    const { page } = await openPage();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'objects:read objects:download', state: 's' }));
    await signIn(page, user.email);
    await waitForConsent(page);
    await page.getByRole('button', { name: 'Allow' }).click();
    await backAt(page, clientApp.callback);
    const token = await exchange(client, clientApp.last('/callback').query.get('code')!);
    assert.ok(token.body.refresh_token, JSON.stringify(token.body));

    await page.goto(`${server.url}/account`);
    const applications = page.getByRole('list', { name: 'Applications you authorized', exact: true });
    const application = applications.getByRole('listitem').filter({ hasText: 'Takeoff Estimator' });
    assert.ok(await application.isVisible());
    assert.ok(await application.getByText('Browse BIM objects and read their metadata').isVisible());
    assert.ok(await application.getByText('Download BIM object files').isVisible());

    // Named after its application: a screen reader listing the page's buttons tells them apart.
    await page.getByRole('button', { name: 'Withdraw access from Takeoff Estimator', exact: true }).click();
    await page.getByRole('status').waitFor();
    assert.match(await page.getByRole('status').innerText(), /Access withdrawn\. The application can no longer renew its access and its access tokens are revoked; an API that checks tokens on its own may accept one until it expires, within 60 minutes\./);
    assert.equal(await applications.count(), 0);
    assert.ok(await page.getByText('You have not authorized any application.').isVisible());

    const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: token.body.refresh_token }, { headers: { authorization: basic(client.id, client.secret) } });
    assert.equal(refreshed.status, 400);
    assert.equal(refreshed.body.error, 'invalid_grant');
  });

  it('enforces the Content-Security-Policy in the browser: no inline script runs on the pages', async () => {
    const client = await server.client({ name: 'Strict Checker', grantTypes: ['authorization_code'], scopes: ['objects:read'], redirectUris: [clientApp.callback] });
    const user = await newUser();
    const { page, consoleErrors, documents } = await openPage();

    await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'objects:read', state: 's' }));
    await signIn(page, user.email);
    await waitForConsent(page);
    assert.deepEqual(consoleErrors, [], 'the login and consent pages load without errors or CSP violations');
    const csp = documents.find((d) => d.path === '/consent')?.headers['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

    // The policy is enforced, and a violation would show up in the console the test listens to.
    const violation = page.waitForEvent('console', (message) => message.type() === 'error' && /Content Security Policy/.test(message.text()));
    const ran = await page.evaluate(`(() => {
      const script = document.createElement('script');
      script.textContent = 'window.__injected = true';
      document.body.append(script);
      return window.__injected === true;
    })()`);
    assert.equal(ran, false);
    await violation;
  });

  it('saves screenshots of the login, consent, account and error pages at a phone and a desktop width', async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const client = await server.client({
      name: 'Procore Sync',
      description: 'Keeps your Procore projects in step with the BIM object library.',
      baseUrl: 'https://sync.example.com',
      grantTypes: ['authorization_code'],
      scopes: ['openid', 'profile', 'objects:read', 'objects:download'],
      redirectUris: [clientApp.callback],
    });
    const user = await newUser();

    for (const [name, options] of VIEWPORTS) {
      const { page } = await openPage(options);
      const shot = (view: string) => page.screenshot({ path: join(SCREENSHOTS, `${view}-${name}.png`), fullPage: true });

      await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: clientApp.callback, scope: 'openid profile objects:read objects:download', state: 's', prompt: 'consent' }));
      await shot('login');
      await signIn(page, user.email);
      await waitForConsent(page);
      await shot('consent');
      await page.getByRole('button', { name: 'Allow' }).click();
      await backAt(page, clientApp.callback);

      await page.goto(`${server.url}/account`);
      await shot('account');

      // An unregistered redirect URI: an error page, and the browser stays here.
      const response = await page.goto(authorizeUrl({ response_type: 'code', client_id: client.id, redirect_uri: 'https://attacker.example/callback', scope: 'objects:read', state: 's' }));
      assert.equal(response?.status(), 400);
      assert.equal(new URL(page.url()).origin, server.url);
      await page.getByRole('heading', { name: 'This request cannot be completed' }).waitFor();
      await shot('error');

      // Nothing sticks out sideways on a narrow screen.
      const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      assert.equal(overflow, 0, `no horizontal scrolling at ${name} width`);
    }
    console.log(`Screenshots of the browser pages: ${SCREENSHOTS}`);
  });
});
