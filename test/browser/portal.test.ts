import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { focusedField, launchChromium } from '../support/chromium.ts';

/**
 * The developer portal in a real headless Chromium, as a third-party developer meets it: sign up,
 * register applications, copy credentials off the page, use them, and revoke them again.
 */

const SCREENSHOTS = resolve(dirname(fileURLToPath(import.meta.url)), '../../test-output/screenshots');
const VIEWPORTS = [
  ['phone', { width: 390, height: 844 }],
  ['desktop', { width: 1280, height: 800 }],
] as const;

/** A tiny client application on loopback: its /callback is the registered redirect URI. */
async function startCallbackServer() {
  const arrivals: URLSearchParams[] = [];
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/favicon.ico') return void response.writeHead(204).end();
    if (url.pathname !== '/callback') return void response.writeHead(404).end();
    arrivals.push(url.searchParams);
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Client app</title><h1>Back at the client app</h1>');
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    callback: `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`,
    arrivals,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

describe('developer portal in headless Chromium', () => {
  let server: TestServer;
  let browser: Browser;
  let clientApp: Awaited<ReturnType<typeof startCallbackServer>>;

  before(async () => {
    server = await startTestServer('sqlite');
    clientApp = await startCallbackServer();
    browser = await launchChromium();
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await clientApp?.close();
    await server?.close();
  });

  /** Full-page screenshots of the page as it is now, on a phone and on a desktop (the page is not reloaded). */
  const screenshot = async (page: Page, name: string) => {
    for (const [device, viewport] of VIEWPORTS) {
      await page.setViewportSize(viewport);
      await page.screenshot({ path: join(SCREENSHOTS, `portal-${name}-${device}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  };

  /** Presses the Copy button next to a field and returns what landed on the clipboard. */
  const copy = async (page: Page, fieldLabel: string): Promise<string> => {
    const field = page.getByRole('textbox', { name: fieldLabel, exact: true });
    await page.locator(`button[data-copy="${await field.getAttribute('id')}"]`).click();
    // Runs in the page, where navigator is the browser's (this file is typed for Node).
    const copied = await page.evaluate(() => (navigator as unknown as { clipboard: { readText(): Promise<string> } }).clipboard.readText());
    assert.equal(copied, await field.inputValue(), `the Copy button copies the ${fieldLabel}`);
    return copied;
  };

  const projectToken = (apiKey: string) =>
    post(`${server.url}/projects/p1/access-tokens`, JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }), {
      json: true,
      headers: { authorization: `ApiKey ${apiKey}` },
    });

  it('signs up, registers a confidential and a public application, uses and revokes their credentials', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(15_000);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(`${message.location().url}: ${message.text()}`);
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));

    try {
      // A new developer signs up and finds the portal from their account page.
      await page.goto(`${server.url}/signup`);
      await page.getByLabel('Name').fill('Dana Developer');
      await page.getByLabel('Email').fill('dana@example.com');
      await page.getByLabel('Password').fill('correct horse battery staple');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(`${server.url}/account`);
      await page.getByRole('link', { name: 'developer portal' }).click();
      await page.waitForURL(`${server.url}/developers`);
      await page.getByText('No applications yet.').waitFor();
      await screenshot(page, 'list-empty');

      // A confidential application with a redirect URI.
      await page.getByRole('link', { name: 'New application' }).click();
      await page.getByRole('heading', { name: 'New application' }).waitFor();
      await screenshot(page, 'create-form');
      await page.getByLabel('Name').fill('Model Sync');
      await page.getByLabel(/^Description/).fill('Synchronises IFC models with our document store every night.');
      await page.getByRole('radio', { name: /Confidential/ }).check();
      await page.getByLabel(/^Base URL/).fill('https://sync.example.com');
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('heading', { name: 'Model Sync', level: 1 }).waitFor();
      await page.getByText('it is shown only once').first().waitFor();

      // Client ID, client secret and (ticked by default) an API key: what BIMData's portal hands out.
      const clientId = await copy(page, 'Client ID');
      const clientSecret = await copy(page, 'Client secret');
      const defaultKey = await copy(page, 'API key');
      assert.match(clientId, /^app_/);
      assert.match(clientSecret, /^gate_cs_/);
      assert.match(defaultKey, /^gate_ak_/);
      assert.equal((await projectToken(defaultKey)).status, 201);
      await screenshot(page, 'application-secret');

      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'model:read' }, { headers: { authorization: basic(clientId, clientSecret) } });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      assert.equal(token.body.token_type, 'Bearer');

      // The secret is gone from the application's page once the response that showed it is left.
      await page.goto(`${server.url}/developers/applications/${clientId}`);
      assert.equal(await page.getByRole('textbox', { name: 'Client secret', exact: true }).count(), 0);
      assert.ok(!(await page.content()).includes(clientSecret));

      // Public keys pasted into the page, then a client assertion instead of the secret (RFC 7523).
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      await page.getByLabel(/^Keys to register/).fill(JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'sync-2026' }] }));
      await page.getByRole('button', { name: 'Save keys' }).click();
      await page.getByText('The public keys were saved').waitFor();
      await page.getByText('sync-2026', { exact: true }).waitFor();
      assert.ok(await page.getByRole('button', { name: 'Remove the keys' }).isVisible());
      await screenshot(page, 'public-keys');
      const now = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({ iss: clientId, sub: clientId, aud: `${server.url}/token`, iat: now, exp: now + 60, jti: randomUUID() })
        .setProtectedHeader({ alg: 'ES256', kid: 'sync-2026' })
        .sign(privateKey);
      const signed = await post(`${server.url}/token`, {
        grant_type: 'client_credentials',
        scope: 'model:read',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));

      // An API key, used against Gatehouse, then revoked in the portal.
      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByRole('heading', { name: 'Create an API key' }).waitFor();
      await page.getByLabel('Name').fill('Viewer backend');
      await page.getByRole('checkbox', { name: /model:read/ }).check();
      await page.getByRole('checkbox', { name: /bcf:read/ }).check();
      await page.getByRole('button', { name: 'Create API key' }).click();
      await page.getByText('it is shown only once').waitFor();
      const apiKey = await copy(page, 'API key');
      assert.match(apiKey, /^gate_ak_/);
      await screenshot(page, 'api-key-created');

      const minted = await projectToken(apiKey);
      assert.equal(minted.status, 201, JSON.stringify(minted.body));
      assert.deepEqual(minted.body.scopes, ['model:read']);

      await page.getByRole('button', { name: 'Revoke Viewer backend' }).click();
      await page.getByText('The API key was revoked').waitFor();
      assert.ok(await page.getByText('Revoked', { exact: true }).isVisible());
      await screenshot(page, 'api-keys');
      const refused = await projectToken(apiKey);
      assert.equal(refused.status, 401);
      assert.equal(refused.body.error, 'invalid_token');

      // A public application, and authorization code with PKCE in the same browser.
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Site Tablet');
      await page.getByRole('radio', { name: /Public/ }).check();
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('heading', { name: 'Site Tablet', level: 1 }).waitFor();
      assert.equal(await page.getByRole('textbox', { name: 'Client secret', exact: true }).count(), 0, 'a public application has no secret');
      await screenshot(page, 'application-public');
      const publicClientId = await copy(page, 'Client ID');
      assert.equal(await page.getByRole('link', { name: 'API keys' }).count(), 0, 'no API keys tab');

      const verifier = randomBytes(48).toString('base64url');
      const state = randomBytes(8).toString('hex');
      await page.goto(
        `${server.url}/authorize?${new URLSearchParams({
          response_type: 'code',
          client_id: publicClientId,
          redirect_uri: clientApp.callback,
          scope: 'openid objects:read',
          state,
          code_challenge: createHash('sha256').update(verifier).digest('base64url'),
          code_challenge_method: 'S256',
        })}`,
      );
      await page.waitForURL((url) => url.pathname === '/consent');
      assert.match(await page.getByRole('heading', { level: 1 }).innerText(), /Site Tablet wants to access your account/);
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL((url) => url.href.startsWith(clientApp.callback));
      const arrival = clientApp.arrivals.at(-1)!;
      assert.equal(arrival.get('state'), state);
      const code = arrival.get('code');
      assert.ok(code, 'the callback receives a code');

      const exchanged = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: clientApp.callback, client_id: publicClientId, code_verifier: verifier });
      assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
      assert.ok(exchanged.body.access_token && exchanged.body.refresh_token && exchanged.body.id_token);
      const userinfo = await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${exchanged.body.access_token}` } });
      assert.equal(((await userinfo.json()) as { email?: string }).email, undefined, 'only the scopes asked for');
      assert.equal(userinfo.status, 200);

      // Both applications are listed; the delete confirmation looks right too.
      await page.goto(`${server.url}/developers`);
      assert.equal(await page.locator('.portal-item').count(), 2);
      await screenshot(page, 'list');
      await page.goto(`${server.url}/developers/applications/${clientId}/delete`);
      await page.getByRole('heading', { name: 'Delete Model Sync?' }).waitFor();
      await screenshot(page, 'delete');

      // Nothing so far broke the CSP or threw (the 404 and 400 below are logged by Chromium as a failed load).
      assert.deepEqual(consoleErrors, []);

      // The public application's API keys address, typed in (the tab is not there), says why there are none, with no form.
      assert.equal(await page.getByRole('link', { name: 'API keys' }).count(), 0);
      const noKeys = await page.goto(`${server.url}/developers/applications/${publicClientId}/api-keys`);
      assert.equal(noKeys?.status(), 404);
      await page.getByRole('heading', { name: 'No API keys for a public application' }).waitFor();
      assert.equal(await page.locator('form').count(), 0);
      await screenshot(page, 'public-no-api-keys');
      await page.getByRole('link', { name: 'Back to Site Tablet' }).click();
      await page.getByRole('heading', { name: 'Site Tablet', level: 1 }).waitFor();

      // A form with mistakes shows them next to the fields.
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel(/^Redirect URIs/).fill('http://insecure.example/callback');
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByText('Please correct the fields marked below.').waitFor();
      await screenshot(page, 'create-form-errors');
      console.log(`portal screenshots: ${SCREENSHOTS}`);
    } finally {
      await context.close();
    }
  });
  /** A new browser context with a developer signed up in it. */
  const signedUpDeveloper = async (email: string) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    await page.goto(`${server.url}/signup`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('correct horse battery staple');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(`${server.url}/account`);
    return { context, page };
  };

  const submit = async (page: Page, button: string) => {
    const [response] = await Promise.all([page.waitForResponse((answer) => answer.request().method() === 'POST'), page.getByRole('button', { name: button }).click()]);
    await page.waitForLoadState();
    return response.status();
  };

  it('puts the focus on the first field with an error, described by its message, and keeps what was typed', async () => {
    const { context, page } = await signedUpDeveloper('typos@example.com');
    try {
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('"><img src=x onerror=alert(1)>');
      await page.getByLabel(/^Base URL/).fill('javascript:alert(1)');
      await page.getByLabel(/^Redirect URIs/).fill('https://app.example/callback#done');
      assert.equal(await submit(page, 'Create application'), 400);
      assert.deepEqual(await focusedField(page), { id: 'app-base-url', description: 'The base URL must be an http or https address, such as https://app.example.com.' });
      assert.equal(await page.getByLabel('Name').inputValue(), '"><img src=x onerror=alert(1)>');
      assert.equal(await page.getByLabel(/^Redirect URIs/).inputValue(), 'https://app.example/callback#done');
      assert.match((await page.locator('#app-redirect-uris-error').textContent()) ?? '', /fragment/);

      await page.getByLabel(/^Base URL/).fill('');
      await page.getByLabel(/^Redirect URIs/).fill('http://app.example/callback');
      assert.equal(await submit(page, 'Create application'), 400);
      assert.equal((await focusedField(page)).id, 'app-redirect-uris');

      // Gatehouse's server posts to the back-channel logout URI: nothing on its own host or network.
      await page.getByLabel(/^Redirect URIs/).fill('https://app.example/callback');
      await page.getByLabel(/^Back-channel logout URI/).fill('https://169.254.169.254/latest/meta-data/');
      await page.getByRole('checkbox', { name: /Require the session ID/ }).check();
      assert.equal(await submit(page, 'Create application'), 400);
      const focused = await focusedField(page);
      assert.equal(focused.id, 'app-backchannel-logout-uri');
      assert.match(focused.description ?? '', /must not be on a link-local address/);
      assert.ok(await page.getByRole('checkbox', { name: /Require the session ID/ }).isChecked(), 'the box stays ticked');
      await page.goto(`${server.url}/developers`);
      assert.equal(await page.locator('.portal-item').count(), 0, 'nothing created');

      // A native app's private-use scheme (RFC 8252 §7.1) is taken; then the settings form, and an API key without name or scope.
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Field tablet');
      await page.getByLabel(/^Redirect URIs/).fill('com.example.tablet:/callback');
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('heading', { name: 'Field tablet', level: 1 }).waitFor();
      const path = new URL(page.url()).pathname === '/developers/applications' ? `/developers/applications/${await page.getByRole('textbox', { name: 'Client ID', exact: true }).inputValue()}` : new URL(page.url()).pathname;
      await page.goto(`${server.url}${path}`);
      await page.getByLabel('Name').fill('');
      assert.equal(await submit(page, 'Save changes'), 400);
      assert.deepEqual(await focusedField(page), { id: 'app-name', description: 'Give the application a name.' });

      // Every problem of the key form at once: no name, no scope, no date.
      await page.goto(`${server.url}${path}/api-keys`);
      await page.getByLabel(/^Expires after/).evaluate((input) => ((input as unknown as { type: string; value: string }).type = 'text'));
      await page.getByLabel(/^Expires after/).fill('31/12/2030');
      assert.equal(await submit(page, 'Create API key'), 400);
      assert.deepEqual(await focusedField(page), { id: 'key-name', description: 'An API key needs a name.' });
      assert.deepEqual(await page.locator('.field-error').allTextContents(), ['An API key needs a name.', 'Enter the expiry as a date (YYYY-MM-DD).', 'Choose at least one scope.']);
      await page.getByLabel('Name').fill('Nightly');
      assert.equal(await submit(page, 'Create API key'), 400);
      assert.equal(await page.getByLabel('Name').inputValue(), 'Nightly');
      assert.deepEqual(await page.locator('.field-error').allTextContents(), ['Choose at least one scope.']);
      assert.equal(await page.locator('.key').count(), 1, 'only the key made with the application');
    } finally {
      await context.close();
    }
  });

  /** Signs in again in a second tab of the same browser: the session, and so the CSRF token of every form, is new. */
  const signInAgainInAnotherTab = async (page: Page, email: string) => {
    const tab = await page.context().newPage();
    await tab.goto(`${server.url}/login`);
    await tab.getByLabel('Email').fill(email);
    await tab.getByLabel('Password').fill('correct horse battery staple');
    await tab.getByRole('button', { name: 'Sign in' }).click();
    await tab.waitForURL(`${server.url}/account`);
    await tab.close();
  };

  it('shows a form whose token went stale again as it was filled in, and sent again it works', async () => {
    const { context, page } = await signedUpDeveloper('stale@example.com');
    try {
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Left open');
      await page.getByRole('radio', { name: /Public/ }).check();
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await signInAgainInAnotherTab(page, 'stale@example.com');

      assert.equal(await submit(page, 'Create application'), 403);
      await page.getByText('The form had expired').waitFor();
      assert.equal(await page.getByLabel('Name').inputValue(), 'Left open');
      assert.ok(await page.getByRole('radio', { name: /Public/ }).isChecked());
      assert.equal(await page.getByLabel(/^Redirect URIs/).inputValue(), clientApp.callback);
      assert.ok(!(await server.gatehouse.storage.clients.list()).some((client) => client.name === 'Left open'), 'nothing created');

      // The form shown again is sent with its new token.
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('heading', { name: 'Left open', level: 1 }).waitFor();

      // The API key form too: name, date and scopes as they were chosen.
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Keyed');
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await page.getByRole('checkbox', { name: /Also create an API key/ }).uncheck();
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByLabel('Name').fill('Nightly');
      await page.getByLabel(/^Expires after/).fill('2099-12-31');
      await page.getByRole('checkbox', { name: /model:read/ }).check();
      await signInAgainInAnotherTab(page, 'stale@example.com');
      assert.equal(await submit(page, 'Create API key'), 403);
      await page.getByText('The form had expired').waitFor();
      assert.equal(await page.getByLabel('Name').inputValue(), 'Nightly');
      assert.equal(await page.getByLabel(/^Expires after/).inputValue(), '2099-12-31');
      assert.ok(await page.getByRole('checkbox', { name: /model:read/ }).isChecked());
      assert.equal(await page.locator('.key').count(), 0, 'no key created');
      assert.equal(await submit(page, 'Create API key'), 200);
      await page.getByText('it is shown only once').waitFor();
      assert.equal(await page.locator('.key').count(), 1);
    } finally {
      await context.close();
    }
  });

  it('does not fill in a form for a page of another origin of the same site, whose post carries the session cookie', async () => {
    const { context, page } = await signedUpDeveloper('sibling@example.com');
    // A page on another port of 127.0.0.1: another origin, the same site, so SameSite=Lax sends the session cookie with its post.
    let target = '';
    const sibling: Server = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
        `<!doctype html><title>Sibling</title><form method="post" action="${target}"><input type="hidden" name="csrf" value="${'x'.repeat(43)}"><input type="hidden" name="name" value="Hijacked"><input type="hidden" name="redirect_uris" value="https://evil.example/cb"><button>Go</button></form>`,
      );
    });
    await new Promise<void>((done) => sibling.listen(0, '127.0.0.1', done));
    try {
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Mine');
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await page.getByRole('button', { name: 'Create application' }).click();
      await page.getByRole('heading', { name: 'Mine', level: 1 }).waitFor();
      const clientId = await page.getByRole('textbox', { name: 'Client ID', exact: true }).inputValue();
      target = `${server.url}/developers/applications/${clientId}/settings`;

      await page.goto(`http://127.0.0.1:${(sibling.address() as AddressInfo).port}/`);
      assert.equal(await submit(page, 'Go'), 403);
      await page.getByText('did not come from this site').waitFor();
      assert.equal(await page.locator('form textarea, form input[name="name"]').count(), 0, 'no form filled in with what the other page sent');
      assert.ok(!(await page.content()).includes('evil.example'));
      const client = (await server.gatehouse.storage.clients.find(clientId))!;
      assert.equal(client.name, 'Mine');
      assert.deepEqual(client.redirectUris, [clientApp.callback]);
    } finally {
      await context.close();
      sibling.closeAllConnections();
      await new Promise<void>((done) => sibling.close(() => done()));
    }
  });

  it('makes one application, one secret and one API key of a form sent again with Reload, and does not show their credentials again', async () => {
    const { context, page } = await signedUpDeveloper('reloading@example.com');
    try {
      await page.goto(`${server.url}/developers/new`);
      await page.getByLabel('Name').fill('Reloaded');
      await page.getByLabel(/^Redirect URIs/).fill(clientApp.callback);
      await page.getByRole('button', { name: 'Create application' }).click();
      const secret = await page.getByRole('textbox', { name: 'Client secret', exact: true }).inputValue();
      const key = await page.getByRole('textbox', { name: 'API key', exact: true }).inputValue();

      // Reload posts the form again: the page of the application made the first time, without its credentials.
      await page.reload();
      await page.getByText('This form was sent again').waitFor();
      assert.equal(await page.getByRole('heading', { name: 'Reloaded', level: 1 }).count(), 1);
      assert.equal(await page.getByRole('textbox', { name: 'Client secret', exact: true }).count(), 0);
      const html = await page.content();
      assert.ok(!html.includes(secret) && !html.includes(key));
      assert.equal(await page.locator('.rows .row').count(), 1, 'one secret');
      await page.goto(`${server.url}/developers`);
      assert.equal(await page.locator('.portal-item').count(), 1, 'one application');

      await page.getByRole('link', { name: 'Reloaded' }).click();
      await page.getByRole('button', { name: 'Add a secret' }).click();
      const added = await page.getByRole('textbox', { name: 'New client secret', exact: true }).inputValue();
      await page.reload();
      await page.getByText('This form was sent again').waitFor();
      assert.ok(!(await page.content()).includes(added));
      assert.equal(await page.locator('.rows .row').count(), 2, 'one secret added');

      await page.getByRole('link', { name: 'API keys' }).click();
      await page.getByLabel('Name').fill('Nightly');
      await page.getByRole('checkbox', { name: /model:read/ }).check();
      await page.getByRole('button', { name: 'Create API key' }).click();
      const created = await page.getByRole('textbox', { name: 'API key', exact: true }).inputValue();
      await page.reload();
      await page.getByText('This form was sent again').waitFor();
      assert.ok(!(await page.content()).includes(created));
      assert.equal(await page.locator('.key').count(), 2, 'the default key and one more');
    } finally {
      await context.close();
    }
  });
});
