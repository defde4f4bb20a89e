import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { createClient, deleteClient, updateClient } from '../../src/core/applications.ts';
import { createGatehouse, type Gatehouse } from '../../src/gatehouse.ts';
import { buildApp } from '../../src/http/app.ts';
import { DIALECTS } from '../support/databases.ts';
import { aClient } from '../support/records.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { basic, freePort, post, startTestServer, type TestServer } from '../support/server.ts';

const PASSWORD = 'correct horse battery';
const CALLBACK = 'https://app.example/callback';

/** The value of a read-only text field (client id, secret shown once, API key shown once). */
function inputValue(html: string, id: string): string {
  const match = new RegExp(`id="${id}" type="text" readonly value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no field ${id} on the page:\n${html.slice(0, 3000)}`);
  return match[1]!.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

type Pairs = [string, string][];

/** The messages shown next to form fields. */
const fieldErrors = (html: string): Record<string, string> =>
  Object.fromEntries([...html.matchAll(/<p class="field-error" id="([^"]+)-error">([^<]*)<\/p>/g)].map((m) => [m[1]!, m[2]!]));

for (const dialect of DIALECTS) {
  describe(`developer portal (${dialect})`, () => {
    let server: TestServer;
    let alice: { id: string; email: string };
    let bob: { id: string; email: string };

    before(async () => {
      server = await startTestServer(dialect);
      alice = await server.user('alice@example.com', PASSWORD);
      bob = await server.user('bob@example.com', PASSWORD);
    });
    after(() => server.close());

    const url = (path: string) => `${server.url}${path}`;

    const signIn = (email: string): Promise<HttpBrowser> => signedInBrowser(server.url, email, PASSWORD);

    /** A CSRF token for this browser, taken from any portal page. */
    async function csrfOf(browser: HttpBrowser): Promise<string> {
      return hiddenField((await browser.request(url('/developers/new'))).text, 'csrf');
    }

    const appForm = (fields: Record<string, string> = {}) => ({ name: 'Sync tool', description: 'Keeps models in sync', type: 'confidential', base_url: 'https://sync.example', redirect_uris: CALLBACK, ...fields });

    /** Creates an application through the portal; returns its id, the secret shown once and the page. */
    async function createApp(browser: HttpBrowser, fields: Record<string, string> | Pairs = appForm()) {
      const csrf = await csrfOf(browser);
      const form: Record<string, string> | Pairs = Array.isArray(fields) ? [['csrf', csrf], ...fields] : { csrf, ...fields };
      const res = await browser.request(url('/developers/applications'), { form });
      assert.equal(res.status, 200, res.text.slice(0, 2000));
      const id = inputValue(res.text, 'client-id');
      const secret = res.text.includes('id="revealed-value"') ? inputValue(res.text, 'revealed-value') : undefined;
      return { id, secret, page: res.text };
    }

    const clientCredentials = (id: string, secret: string) => post(url('/token'), { grant_type: 'client_credentials', scope: 'objects:read' }, { headers: { authorization: basic(id, secret) } });

    const projectToken = (apiKey: string) =>
      post(url('/projects/p1/access-tokens'), JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }), {
        json: true,
        headers: { authorization: `ApiKey ${apiKey}` },
      });

    async function createKey(browser: HttpBrowser, appId: string, fields: Pairs) {
      const csrf = await csrfOf(browser);
      return browser.request(url(`/developers/applications/${appId}/api-keys`), { form: [['csrf', csrf], ...fields] });
    }

    /** The application as `createApp` registered it, with nothing audited since. */
    async function assertUntouched(id: string): Promise<void> {
      const client = (await server.gatehouse.storage.clients.find(id))!;
      assert.equal(client.name, 'Sync tool');
      assert.equal(client.description, 'Keeps models in sync');
      assert.equal(client.baseUrl, 'https://sync.example');
      assert.deepEqual(client.redirectUris, [CALLBACK]);
      assert.deepEqual(await auditKinds(id), ['portal.client.created']);
    }

    /** The public half of a fresh ES256 key, as an attacker would paste it. */
    async function stolenKey(): Promise<JWK> {
      const { publicKey } = await generateKeyPair('ES256', { extractable: true });
      return { ...(await exportJWK(publicKey)), kid: 'attacker' };
    }

    async function auditKinds(clientId: string): Promise<string[]> {
      await server.gatehouse.audit.flush();
      // Newest first from the store; oldest first here, the portal's own events only.
      const events = await server.gatehouse.storage.audit.query({ clientId });
      return events.map((event) => event.kind).filter((kind) => kind.startsWith('portal.')).reverse();
    }

    describe('signing in', () => {
      it('sends a signed-out visitor to sign in, and back to the page they asked for afterwards', async () => {
        const browser = new HttpBrowser();
        const first = await browser.request(url('/developers'));
        assert.equal(first.status, 302);
        assert.equal(first.location, '/login?next=%2Fdevelopers');

        const deep = await browser.request(url('/developers/applications/app_x/api-keys'));
        assert.equal(deep.location, '/login?next=%2Fdevelopers%2Fapplications%2Fapp_x%2Fapi-keys');

        const login = await browser.request(url(first.location));
        assert.equal(hiddenField(login.text, 'next'), '/developers');
        const res = await browser.request(url('/login'), { form: { csrf: hiddenField(login.text, 'csrf'), next: '/developers', email: alice.email, password: PASSWORD } });
        assert.equal(res.status, 303);
        assert.equal(res.location, '/developers');
        const portal = await browser.request(url('/developers'));
        assert.equal(portal.status, 200);
        assert.match(portal.text, /Your applications/);
      });

      it('carries the next page from sign-in to sign-up', async () => {
        const login = await new HttpBrowser().request(url('/login?next=%2Fdevelopers'));
        assert.match(login.text, /href="\/signup\?next=%2Fdevelopers"/);
        const signup = await new HttpBrowser().request(url('/signup?next=%2Fdevelopers'));
        assert.equal(hiddenField(signup.text, 'next'), '/developers');
      });

      it('ignores a next page that is not a local account or portal page (no open redirect)', async () => {
        const unsafe = ['https://evil.example/developers', '//evil.example', '/developers//evil.example', '/\\evil.example', '/developers/../logout', '/developersx', '/logout', 'javascript:alert(1)', '/account\n', ' /account', '/account#x'];
        for (const next of unsafe) {
          const browser = new HttpBrowser();
          const login = await browser.request(url(`/login?next=${encodeURIComponent(next)}`));
          assert.doesNotMatch(login.text, /name="next"/, next);
          const res = await browser.request(url('/login'), { form: { csrf: hiddenField(login.text, 'csrf'), next, email: bob.email, password: PASSWORD } });
          assert.equal(res.status, 303, next);
          assert.equal(res.location, '/account', next);
        }
      });

      it('sends a form posted after the session ended to sign in, then back to the page of the form, and changes nothing', async () => {
        const { id } = await createApp(await signIn(alice.email));
        const base = `/developers/applications/${id}`;
        const record = '0b7f2c1e-9a4d-4e3b-8c6f-2d1e0a9b8c7d';
        const forms: [string, string][] = [
          ['/developers/applications', '/developers/new'],
          [`${base}/settings`, base],
          [`${base}/keys`, base],
          [`${base}/keys/delete`, base],
          [`${base}/secrets`, base],
          [`${base}/secrets/${record}/delete`, base],
          [`${base}/api-keys`, `${base}/api-keys`],
          [`${base}/api-keys/${record}/revoke`, `${base}/api-keys`],
          [`${base}/delete`, `${base}/delete`],
        ];
        for (const [action, page] of forms) {
          const browser = new HttpBrowser();
          const res = await browser.request(url(action), { form: { csrf: 'x'.repeat(43), ...appForm({ name: 'Ghost app' }) } });
          assert.equal(res.status, 303, action);
          assert.equal(res.location, `/login?next=${encodeURIComponent(page)}`, action);
          // Signing in leads to the form's page, shown afresh: nothing posted is sent again.
          const login = await browser.request(url(res.location!));
          const signedIn = await browser.request(url('/login'), { form: { csrf: hiddenField(login.text, 'csrf'), next: hiddenField(login.text, 'next'), email: alice.email, password: PASSWORD } });
          assert.equal(signedIn.location, page, action);
          assert.equal((await browser.request(url(page))).status, 200, action);
        }
        assert.ok(!(await server.gatehouse.storage.clients.list()).some((c) => c.name === 'Ghost app'));
        await assertUntouched(id);
      });

      it('links to the portal from the account page', async () => {
        const browser = await signIn(alice.email);
        assert.match((await browser.request(url('/account'))).text, /href="\/developers"/);
      });

      it('lists an application suspended with its developer on the account page, so that consent to it can be withdrawn', async () => {
        const developer = await server.user(`suspended.${randomUUID()}@example.com`, PASSWORD);
        const app = await server.client({ name: 'Suspended sync tool', grantTypes: ['authorization_code'], redirectUris: [CALLBACK], ownerUserId: developer.id });
        const now = server.gatehouse.clock();
        await server.gatehouse.storage.consents.save({ userId: bob.id, clientId: app.id, scopes: ['openid'], createdAt: now, updatedAt: now });
        await server.gatehouse.storage.users.setDisabled(developer.id, now, now);
        assert.equal(await server.gatehouse.clients.get(app.id), undefined, 'the application is suspended');

        const browser = await signIn(bob.email);
        const account = await browser.request(url('/account'));
        assert.match(account.text, /Suspended sync tool/);
        const res = await browser.request(url('/account/applications/withdraw'), { form: { csrf: hiddenField(account.text, 'csrf'), client_id: app.id } });
        assert.equal(res.status, 303);
        assert.equal(await server.gatehouse.storage.consents.find(bob.id, app.id), undefined);
        assert.doesNotMatch((await browser.request(url('/account'))).text, /Suspended sync tool/);
      });
    });

    describe('applications', () => {
      it('creates a confidential application owned by the person, with fixed grants and the catalogue’s non-admin scopes', async () => {
        const browser = await signIn(alice.email);
        const { id, secret, page } = await createApp(browser);
        assert.ok(secret?.startsWith('gate_cs_'), 'the secret is shown on the response page');
        assert.match(page, /shown only once/);

        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.ownerUserId, alice.id);
        assert.equal(client.type, 'confidential');
        assert.equal(client.name, 'Sync tool');
        assert.equal(client.description, 'Keeps models in sync');
        assert.equal(client.baseUrl, 'https://sync.example');
        assert.deepEqual(client.redirectUris, [CALLBACK]);
        assert.deepEqual(client.grantTypes, ['client_credentials', 'authorization_code', 'refresh_token']);
        const catalogue = server.config.scopes;
        assert.deepEqual(client.scopes, Object.keys(catalogue).filter((s) => !catalogue[s]!.admin));
        assert.deepEqual(client.defaultScopes, Object.keys(catalogue).filter((s) => !catalogue[s]!.admin && !catalogue[s]!.userOnly));

        const token = await clientCredentials(id, secret!);
        assert.equal(token.status, 200, JSON.stringify(token.body));

        const again = await browser.request(url(`/developers/applications/${id}`));
        assert.equal(again.status, 200);
        assert.equal(inputValue(again.text, 'client-id'), id);
        assert.ok(!again.text.includes(secret!), 'the secret is never shown again');
        assert.match(again.text, new RegExp(`••••${secret!.slice(-4)}`));
        assert.deepEqual(await auditKinds(id), ['portal.client.created']);
      });

      it('creates a public application without a secret', async () => {
        const browser = await signIn(alice.email);
        const { id, secret } = await createApp(browser, appForm({ name: 'Field tablet', type: 'public', redirect_uris: `com.example.tablet:/callback\r\nhttp://127.0.0.1:9000/cb\r\n` }));
        assert.equal(secret, undefined);
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.type, 'public');
        assert.deepEqual(client.grantTypes, ['authorization_code', 'refresh_token']);
        assert.deepEqual(client.redirectUris, ['com.example.tablet:/callback', 'http://127.0.0.1:9000/cb']);
        assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(id), []);
      });

      it('hands out an API key with a new confidential application when asked (the BIMData way): shown once beside the secret, working at once', async () => {
        const browser = await signIn(alice.email);
        const form = await browser.request(url('/developers/new'));
        assert.match(form.text, /<input type="checkbox" name="api_key" checked>/, 'offered, and ticked by default');

        const { id, secret, page } = await createApp(browser, appForm({ name: 'Viewer back end', api_key: 'on' }));
        assert.ok(secret?.startsWith('gate_cs_'));
        const apiKey = inputValue(page, 'revealed-api-key');
        assert.match(apiKey, /^gate_ak_/);
        assert.match(page, /Authorization: ApiKey/);
        const [key, ...more] = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.equal(more.length, 0);
        assert.deepEqual(key!.scopes, (await server.gatehouse.storage.clients.find(id))!.defaultScopes);
        assert.equal((await projectToken(apiKey)).status, 201);
        assert.equal((await clientCredentials(id, secret!)).status, 200);
        assert.ok(!(await browser.request(url(`/developers/applications/${id}`))).text.includes(apiKey), 'shown once');

        const withoutKey = await createApp(browser, appForm({ name: 'Token-only back end' }));
        assert.deepEqual(await server.gatehouse.storage.apiKeys.listForClient(withoutKey.id), []);
        const publicApp = await createApp(browser, appForm({ name: 'Browser viewer', type: 'public', api_key: 'on' }));
        assert.deepEqual(await server.gatehouse.storage.apiKeys.listForClient(publicApp.id), [], 'a public application gets no key');
        assert.ok(!publicApp.page.includes('gate_ak_'));
      });

      it('makes one application, one secret and one API key of a form sent twice at once, and shows their credentials on one answer only', async (t) => {
        const developer = await server.user(`twice-${dialect}@example.com`, PASSWORD);
        const browser = await signIn(developer.email);
        const formPage = (await browser.request(url('/developers/new'))).text;
        // Both requests have found nothing made yet when they write: the write waits (up to a second) for the other request's.
        const storage = server.gatehouse.storage;
        for (const [repository, method] of [[storage.clients, 'create'], [storage.clients, 'addSecret'], [storage.apiKeys, 'create']] as const) {
          const writes = repository as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
          const write = writes[method]!.bind(repository);
          let waiting: (() => void) | undefined;
          t.mock.method(writes, method, async (...args: unknown[]) => {
            if (waiting) waiting();
            else await new Promise<void>((arrived) => ((waiting = arrived), setTimeout(arrived, 1000)));
            waiting = undefined;
            return write(...args);
          });
        }
        const sendTwice = (path: string, form: Record<string, string> | Pairs) => Promise.all([browser.request(url(path), { form }), browser.request(url(path), { form })]);
        const oneShown = (answers: { status: number; location?: string | undefined; text: string }[], again: RegExp) => {
          const shown = answers.filter((answer) => answer.status === 200);
          assert.equal(shown.length, 1, answers.map((answer) => `${answer.status} ${answer.location}`).join(', '));
          const other = answers.find((answer) => answer !== shown[0])!;
          assert.equal(other.status, 303);
          assert.match(other.location ?? '', again);
          return shown[0]!.text;
        };

        const created = oneShown(
          await sendTwice('/developers/applications', { ...appForm({ api_key: 'on' }), csrf: hiddenField(formPage, 'csrf'), form_id: hiddenField(formPage, 'form_id') }),
          /^\/developers\/applications\/app_[0-9a-f]{24}\?notice=created-before$/,
        );
        const id = inputValue(created, 'client-id');
        assert.deepEqual((await server.gatehouse.storage.clients.listForOwner(developer.id)).map((client) => client.id), [id]);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 1);
        assert.equal((await server.gatehouse.storage.apiKeys.listForClient(id)).length, 1);
        const again = await browser.request(url(`/developers/applications/${id}?notice=created-before`));
        assert.match(again.text, /This form was sent again/);
        assert.ok(!again.text.includes(inputValue(created, 'revealed-value')) && !again.text.includes('gate_ak_'));

        const appPage = (await browser.request(url(`/developers/applications/${id}`))).text;
        oneShown(await sendTwice(`/developers/applications/${id}/secrets`, { csrf: hiddenField(appPage, 'csrf'), form_id: hiddenField(appPage, 'form_id') }), /\?notice=secret-added-before$/);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 2);

        const keysPage = (await browser.request(url(`/developers/applications/${id}/api-keys`))).text;
        const keyForm: Pairs = [['csrf', hiddenField(keysPage, 'csrf')], ['form_id', hiddenField(keysPage, 'form_id')], ['name', 'Nightly'], ['scopes', 'model:read']];
        oneShown(await sendTwice(`/developers/applications/${id}/api-keys`, keyForm), /\/api-keys\?notice=created-before$/);
        assert.equal((await server.gatehouse.storage.apiKeys.listForClient(id)).length, 2);
        t.mock.restoreAll();
      });

      it('ignores every privileged field posted with the form', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, [
          ...(Object.entries(appForm({ name: 'Sneaky' })) as Pairs),
          ['admin', 'on'], ['is_admin', 'true'], ['isAdmin', 'true'], ['first_party', 'on'], ['firstParty', 'true'],
          ['grant_types', 'password'], ['grant_types', 'implicit'], ['grant_types', 'urn:ietf:params:oauth:grant-type:token-exchange'], ['grantTypes', 'password'],
          ['allow_impersonation', 'on'], ['impersonation', 'on'], ['is_resource_server', 'on'], ['resource_server', 'on'],
          ['scopes', 'admin:clients'], ['default_scopes', 'admin:users'], ['owner_user_id', bob.id], ['id', 'app_chosen'],
        ]);
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.notEqual(id, 'app_chosen');
        assert.equal(client.ownerUserId, alice.id);
        assert.equal(client.isAdmin, false);
        assert.equal(client.firstParty, false);
        assert.equal(client.allowImpersonation, false);
        assert.equal(client.isResourceServer, false);
        assert.deepEqual(client.grantTypes, ['client_credentials', 'authorization_code', 'refresh_token']);
        assert.ok(!client.scopes.some((s) => s.startsWith('admin:')));
        assert.ok(!client.defaultScopes.some((s) => s.startsWith('admin:')));
      });

      it('shows every validation error next to its field, with status 400, and creates nothing', async () => {
        const browser = await signIn(bob.email);
        const before = (await server.gatehouse.storage.clients.listForOwner(bob.id)).length;
        const csrf = await csrfOf(browser);
        const bad = await browser.request(url('/developers/applications'), {
          form: { csrf, name: '', description: 'x'.repeat(1001), type: 'secretive', base_url: 'javascript:alert(1)', redirect_uris: 'http://evil.example/cb' },
        });
        assert.equal(bad.status, 400);
        const errors = fieldErrors(bad.text);
        assert.deepEqual(Object.keys(errors).sort(), ['app-base-url', 'app-description', 'app-name', 'app-redirect-uris', 'app-type']);
        assert.match(errors['app-redirect-uris']!, /must use https/);
        assert.match(bad.text, /aria-invalid="true"/);

        for (const [redirect, message] of [['', /at least one redirect URI/], ['not a url', /not an absolute URL/], ['https://app.example/cb#frag', /fragment/], ['data:text/html,hi', /must use https/]] as const) {
          const res = await browser.request(url('/developers/applications'), { form: { csrf, ...appForm({ redirect_uris: redirect }) } });
          assert.equal(res.status, 400, redirect);
          assert.match(fieldErrors(res.text)['app-redirect-uris'] ?? '', message, redirect);
          assert.equal(hiddenField(res.text, 'csrf'), csrf);
        }

        const kept = await browser.request(url('/developers/applications'), { form: { csrf, ...appForm({ name: '<b>Mine</b>', redirect_uris: 'ftp://x' }) } });
        assert.match(kept.text, /value="&lt;b&gt;Mine&lt;\/b&gt;"/, 'the form keeps what was typed, escaped');
        assert.equal((await server.gatehouse.storage.clients.listForOwner(bob.id)).length, before);
      });

      it('holds at most 100 applications a developer: another is refused with a readable 409 page, also when asked for at once, and nothing is stored until one is deleted', async () => {
        const developer = await server.user(`many-${randomUUID()}@example.com`, PASSWORD);
        for (let n = 0; n < 98; n++) await server.gatehouse.storage.clients.create(aClient({ ownerUserId: developer.id }), server.gatehouse.clock());
        const browser = await signIn(developer.email);
        const csrf = await csrfOf(browser);
        const sent = await Promise.all(Array.from({ length: 4 }, () => browser.request(url('/developers/applications'), { form: { csrf, ...appForm() } })));
        assert.deepEqual(sent.map((answer) => answer.status).sort(), [200, 200, 409, 409]);
        assert.equal((await server.gatehouse.storage.clients.listForOwner(developer.id)).length, 100);
        const refused = sent.find((answer) => answer.status === 409)!;
        assert.match(refused.text, /You can register at most 100 applications/);
        assert.doesNotMatch(refused.text, /id="revealed-value"/, 'no secret shown');
        assert.match(refused.text, /value="Sync tool"/, 'the form keeps what was typed');

        const list = await browser.request(url('/developers'));
        assert.doesNotMatch(list.text, /href="\/developers\/new"/, 'no link to a form that would be refused');
        assert.match(list.text, /delete one you no longer use to register another/);
        const [oldest] = await server.gatehouse.storage.clients.listForOwner(developer.id);
        const confirm = await browser.request(url(`/developers/applications/${oldest!.id}/delete`));
        assert.equal((await browser.request(url(`/developers/applications/${oldest!.id}/delete`), { form: { csrf: hiddenField(confirm.text, 'csrf') } })).status, 303);
        assert.equal((await browser.request(url('/developers/applications'), { form: { csrf, ...appForm() } })).status, 200, 'one may be registered again');
        assert.equal((await server.gatehouse.storage.clients.listForOwner(developer.id)).length, 100);
      });

      it('refuses a name or description with characters that reorder or hide the consent page’s text, and creates or changes nothing', async () => {
        const browser = await signIn(bob.email);
        const before = (await server.gatehouse.storage.clients.listForOwner(bob.id)).length;
        const csrf = await csrfOf(browser);
        // "Trusted App\u202E" would show the consent page's "wants to access your account" reversed.
        const tricks = ['Trusted App\u202E', 'Sync\u2066 tool', 'Sync\u200Btool', 'Sync\u200Ftool', 'Sync\u0007tool', 'Sync\u2028tool', 'Sync\u001B[31mtool', 'Sy\uFEFFnc'];
        for (const name of tricks) {
          const res = await browser.request(url('/developers/applications'), { form: { csrf, ...appForm({ name }) } });
          assert.equal(res.status, 400, JSON.stringify(name));
          assert.match(fieldErrors(res.text)['app-name'] ?? '', /character/, JSON.stringify(name));
        }
        const res = await browser.request(url('/developers/applications'), { form: { csrf, ...appForm({ description: 'Keeps \u202Emodels in sync' }) } });
        assert.equal(res.status, 400);
        assert.match(fieldErrors(res.text)['app-description'] ?? '', /character/);
        assert.equal((await server.gatehouse.storage.clients.listForOwner(bob.id)).length, before, 'nothing was created');

        // What scripts and emoji need is kept: joiners (Persian, emoji sequences), right-to-left text, line breaks in the description.
        const joined = '\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645 \u{1F469}\u200D\u{1F4BB}';
        const { id } = await createApp(browser, appForm({ name: joined, description: 'Line one\r\n\u05E9\u05DC\u05D5\u05DD' }));
        const created = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(created.name, joined);

        const page = await browser.request(url(`/developers/applications/${id}`));
        const changed = await browser.request(url(`/developers/applications/${id}/settings`), {
          form: { csrf: hiddenField(page.text, 'csrf'), name: 'Sync\u202Etool', description: '', base_url: '', redirect_uris: CALLBACK },
        });
        assert.equal(changed.status, 400);
        assert.match(fieldErrors(changed.text)['app-name'] ?? '', /character/);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.name, joined);
      });

      it('lists only the person’s own applications', async () => {
        const alices = await signIn(alice.email);
        const { id } = await createApp(alices, appForm({ name: 'Alice’s viewer' }));
        const bobs = await signIn(bob.email);
        await createApp(bobs, appForm({ name: 'Bob’s exporter' }));

        const aliceList = (await alices.request(url('/developers'))).text;
        assert.match(aliceList, /Alice’s viewer/);
        assert.ok(aliceList.includes(`/developers/applications/${id}`));
        assert.doesNotMatch(aliceList, /Bob’s exporter/);
        const bobList = (await bobs.request(url('/developers'))).text;
        assert.match(bobList, /Bob’s exporter/);
        assert.doesNotMatch(bobList, /Alice’s viewer/);
      });
    });

    describe('ownership', () => {
      it('answers 404 for every page and action on another person’s application, and changes nothing', async () => {
        const alices = await signIn(alice.email);
        const { id, secret } = await createApp(alices);
        const keyPage = await createKey(alices, id, [['name', 'ci'], ['scopes', 'model:read']]);
        const apiKey = inputValue(keyPage.text, 'revealed-value');
        const [key] = await server.gatehouse.storage.apiKeys.listForClient(id);
        const [secretRecord] = await server.gatehouse.storage.clients.listSecrets(id);

        const bobs = await signIn(bob.email);
        const csrf = await csrfOf(bobs);
        const base = `/developers/applications/${id}`;
        for (const path of [base, `${base}/api-keys`, `${base}/delete`, '/developers/applications/app_unknown']) {
          const res = await bobs.request(url(path));
          assert.equal(res.status, 404, path);
          assert.match(res.text, /Application not found|Page not found/, path);
        }
        // No id holds a NUL: refused as a bad request, like every input with one.
        assert.equal((await bobs.request(url('/developers/applications/%00'))).status, 400);
        const actions: [string, Pairs][] = [
          [`${base}/secrets`, [['csrf', csrf]]],
          [`${base}/secrets/${secretRecord!.id}/delete`, [['csrf', csrf]]],
          [`${base}/api-keys`, [['csrf', csrf], ['name', 'stolen'], ['scopes', 'model:read']]],
          [`${base}/api-keys/${key!.id}/revoke`, [['csrf', csrf]]],
          [`${base}/keys`, [['csrf', csrf], ['jwks', JSON.stringify({ keys: [await stolenKey()] })]]],
          [`${base}/keys/delete`, [['csrf', csrf]]],
          [`${base}/delete`, [['csrf', csrf]]],
        ];
        for (const [path, form] of actions) {
          const res = await bobs.request(url(path), { form });
          assert.equal(res.status, 404, path);
          assert.ok(!res.text.includes('gate_'), `${path} reveals no credential`);
        }

        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 1);
        assert.equal((await server.gatehouse.storage.apiKeys.listForClient(id)).length, 1);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.jwks, null);
        assert.equal((await clientCredentials(id, secret!)).status, 200);
        assert.equal((await projectToken(apiKey)).status, 201);
      });

      it('answers 404 for a key or secret of another application of the same person', async () => {
        const browser = await signIn(alice.email);
        const first = await createApp(browser, appForm({ name: 'First' }));
        const second = await createApp(browser, appForm({ name: 'Second' }));
        await createKey(browser, first.id, [['name', 'ci'], ['scopes', 'model:read']]);
        const [key] = await server.gatehouse.storage.apiKeys.listForClient(first.id);
        const [secret] = await server.gatehouse.storage.clients.listSecrets(first.id);
        const csrf = await csrfOf(browser);
        const revoke = await browser.request(url(`/developers/applications/${second.id}/api-keys/${key!.id}/revoke`), { form: { csrf } });
        assert.equal(revoke.status, 404);
        const remove = await browser.request(url(`/developers/applications/${second.id}/secrets/${secret!.id}/delete`), { form: { csrf } });
        assert.equal(remove.status, 404);
        assert.equal((await server.gatehouse.storage.apiKeys.listForClient(first.id))[0]!.revokedAt, null);
      });
    });

    describe('CSRF', () => {
      it('refuses every form posted without a valid CSRF token with 403, and changes nothing, whichever page it came from', async () => {
        const browser = await signIn(alice.email);
        const { id, secret } = await createApp(browser);
        await browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf: await csrfOf(browser) } });
        await createKey(browser, id, [['name', 'ci'], ['scopes', 'model:read']]);
        const [key] = await server.gatehouse.storage.apiKeys.listForClient(id);
        const [oldest] = await server.gatehouse.storage.clients.listSecrets(id);
        const countBefore = (await server.gatehouse.storage.clients.listForOwner(alice.id)).length;
        const base = `/developers/applications/${id}`;

        // A token of another browser is as bad as none: it is bound to this browser's CSRF cookie.
        const othersToken = await csrfOf(await signIn(bob.email));
        for (const csrf of [undefined, '', 'x'.repeat(43), othersToken]) {
          const extra: Pairs = csrf === undefined ? [] : [['csrf', csrf]];
          const actions: [string, Pairs][] = [
            ['/developers/applications', Object.entries(appForm({ name: 'Forged' })) as Pairs],
            [`${base}/secrets`, []],
            [`${base}/secrets/${oldest!.id}/delete`, []],
            [`${base}/api-keys`, [['name', 'forged'], ['scopes', 'model:read']]],
            [`${base}/api-keys/${key!.id}/revoke`, []],
            [`${base}/keys`, [['jwks', JSON.stringify({ keys: [await stolenKey()] })]]],
            [`${base}/keys/delete`, []],
            [`${base}/delete`, []],
          ];
          // From another site's page, or from this site's own (where the form is shown again): refused all the same.
          for (const headers of [{}, { 'sec-fetch-site': 'same-site' }, { 'sec-fetch-site': 'same-origin' }, { origin: server.url }] as Record<string, string>[]) {
            for (const [path, form] of actions) {
              const res = await browser.request(url(path), { form: [...extra, ...form], headers });
              assert.equal(res.status, 403, `${path} with ${csrf} and ${JSON.stringify(headers)}`);
              assert.match(res.text, /nothing was changed/);
            }
          }
        }

        assert.equal((await server.gatehouse.storage.clients.listForOwner(alice.id)).length, countBefore);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 2);
        const keys = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.equal(keys.length, 1);
        assert.equal(keys[0]!.revokedAt, null);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.jwks, null);
        assert.equal((await clientCredentials(id, secret!)).status, 200);
      });
    });

    describe('a form whose CSRF token went stale', () => {
      const FROM_THIS_SITE = { 'sec-fetch-site': 'same-origin' };

      /** Signs in again in the same browser (as in another tab): the session, and so every form's CSRF token, is new. */
      const signInAgain = (browser: HttpBrowser, email: string) => signedInBrowser(server.url, email, PASSWORD, browser);

      it('is shown again as typed, with a fresh token and the reason, and sent again it is stored once', async () => {
        const browser = await signIn(alice.email);
        const stale = await csrfOf(browser);
        await signInAgain(browser, alice.email);
        const typed = appForm({ name: 'Stale <sync>', type: 'public', redirect_uris: `${CALLBACK}\nhttp://127.0.0.1:7000/cb` });
        const before = (await server.gatehouse.storage.clients.listForOwner(alice.id)).length;

        const res = await browser.request(url('/developers/applications'), { form: { csrf: stale, form_id: 'f'.repeat(22), ...typed }, headers: FROM_THIS_SITE });
        assert.equal(res.status, 403);
        assert.match(res.text, /The form had expired/);
        assert.match(res.text, /value="Stale &lt;sync&gt;"/);
        assert.match(res.text, /value="public" checked/);
        assert.match(res.text, /https:\/\/app\.example\/callback\nhttp:\/\/127\.0\.0\.1:7000\/cb<\/textarea>/);
        const fresh = hiddenField(res.text, 'csrf');
        assert.notEqual(fresh, stale);
        assert.equal(fresh, await csrfOf(browser), 'the token of the session as it is now');
        assert.equal((await server.gatehouse.storage.clients.listForOwner(alice.id)).length, before, 'nothing stored');

        const sent = await browser.request(url('/developers/applications'), { form: { csrf: fresh, form_id: hiddenField(res.text, 'form_id'), ...typed } });
        assert.equal(sent.status, 200);
        assert.equal((await server.gatehouse.storage.clients.listForOwner(alice.id)).length, before + 1);
      });

      it('shows the settings, public keys and API key forms again as typed, never a private key, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        const stale = hiddenField(page.text, 'csrf');
        await signInAgain(browser, alice.email);
        const base = `/developers/applications/${id}`;

        const settings = await browser.request(url(`${base}/settings`), { form: { csrf: stale, was: hiddenField(page.text, 'was'), ...appForm({ name: 'Renamed while away' }) }, headers: FROM_THIS_SITE });
        assert.equal(settings.status, 403);
        assert.match(settings.text, /The form had expired/);
        assert.match(settings.text, /id="app-name" name="name" type="text" maxlength="200" required value="Renamed while away"/);
        assert.equal(hiddenField(settings.text, 'was'), hiddenField(page.text, 'was'), 'what the form was filled in with goes along');

        const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const privateJwk = privateKey.export({ format: 'jwk' });
        const pasted = await browser.request(url(`${base}/keys`), { form: { csrf: stale, jwks: JSON.stringify({ keys: [privateJwk] }) }, headers: FROM_THIS_SITE });
        assert.equal(pasted.status, 403);
        assert.match(pasted.text, /id="app-jwks-error">The form had expired/);
        assert.ok(!pasted.text.includes(String(privateJwk.d)), 'a pasted private key is not sent back');
        const publicJwk = await stolenKey();
        const keys = await browser.request(url(`${base}/keys`), { form: { csrf: stale, jwks: JSON.stringify({ keys: [publicJwk] }) }, headers: FROM_THIS_SITE });
        assert.ok(keys.text.includes(String(publicJwk.x)), 'public keys are shown again');

        const key = await browser.request(url(`${base}/api-keys`), {
          form: [['csrf', stale], ['name', 'Nightly'], ['expires_on', '2099-12-31'], ['scopes', 'model:read'], ['scopes', 'bcf:read']],
          headers: FROM_THIS_SITE,
        });
        assert.equal(key.status, 403);
        assert.match(key.text, /The form had expired/);
        assert.match(key.text, /id="key-name" name="name" type="text" maxlength="200" required value="Nightly"/);
        assert.match(key.text, /value="2099-12-31"/);
        assert.deepEqual([...key.text.matchAll(/name="scopes" value="([^"]+)" checked/g)].map((m) => m[1]).sort(), ['bcf:read', 'model:read']);

        for (const button of [`${base}/secrets`, `${base}/keys/delete`, `${base}/delete`]) {
          const res = await browser.request(url(button), { form: { csrf: stale }, headers: FROM_THIS_SITE });
          assert.equal(res.status, 403, button);
          assert.match(res.text, /The form had expired/, button);
        }
        await assertUntouched(id);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 1);
        assert.deepEqual(await server.gatehouse.storage.apiKeys.listForClient(id), []);
      });

      it('is not shown again from another site’s page, even one of the same site that the session cookie goes along with', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        for (const headers of [{ 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:1' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'https://evil.example' }, { origin: 'null' }, {}] as Record<string, string>[]) {
          const res = await browser.request(url(`/developers/applications/${id}/settings`), { form: { csrf: 'x'.repeat(43), ...appForm({ redirect_uris: 'https://evil.example/cb' }) }, headers });
          assert.equal(res.status, 403, JSON.stringify(headers));
          assert.ok(!res.text.includes('evil.example') && !res.text.includes('name="redirect_uris"'), `no form filled in by another site: ${JSON.stringify(headers)}`);
        }
        await assertUntouched(id);
      });
    });

    describe('client secrets', () => {
      it('rotates without downtime: the old secret works until it is deleted, then answers invalid_client', async () => {
        const browser = await signIn(alice.email);
        const { id, secret: first } = await createApp(browser);
        const added = await browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf: await csrfOf(browser) } });
        assert.equal(added.status, 200);
        const second = inputValue(added.text, 'revealed-value');
        assert.notEqual(second, first);
        assert.ok(!added.text.includes(first!), 'the first secret is not shown again');

        assert.equal((await clientCredentials(id, first!)).status, 200);
        assert.equal((await clientCredentials(id, second)).status, 200);

        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.ok(!page.text.includes(second), 'the new secret is not shown again either');
        const secrets = await server.gatehouse.storage.clients.listSecrets(id);
        const old = secrets.find((s) => s.hint === first!.slice(-4))!;
        assert.ok(page.text.includes(`/secrets/${old.id}/delete`), 'each secret can be deleted while another remains');

        const deleted = await browser.request(url(`/developers/applications/${id}/secrets/${old.id}/delete`), { form: { csrf: hiddenField(page.text, 'csrf') } });
        assert.equal(deleted.status, 303);
        assert.equal(deleted.location, `/developers/applications/${id}?notice=secret-deleted`);

        const refused = await clientCredentials(id, first!);
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error, 'invalid_client');
        assert.equal((await clientCredentials(id, second)).status, 200);

        // The last secret stays until another replaces it.
        const [last] = await server.gatehouse.storage.clients.listSecrets(id);
        const lastPage = await browser.request(url(`/developers/applications/${id}`));
        assert.ok(!lastPage.text.includes(`/secrets/${last!.id}/delete`));
        const kept = await browser.request(url(`/developers/applications/${id}/secrets/${last!.id}/delete`), { form: { csrf: hiddenField(lastPage.text, 'csrf') } });
        assert.equal(kept.status, 400);
        assert.match(kept.text, /Add a new secret before you delete the last one/);
        assert.equal((await clientCredentials(id, second)).status, 200);

        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.secret.added', 'portal.secret.deleted']);
      });

      it('holds at most five secrets: a sixth is refused with a readable 409 page, also when asked for all at once, and stores nothing until one is deleted', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const csrf = await csrfOf(browser);
        // Every client authentication compares the secret presented with each one the application holds.
        const sent = await Promise.all(Array.from({ length: 8 }, () => browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf } })));
        assert.deepEqual(sent.map((answer) => answer.status).sort(), [200, 200, 200, 200, 409, 409, 409, 409]);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 5);
        const refused = sent.find((answer) => answer.status === 409)!;
        assert.match(refused.text, /An application holds at most 5 client secrets/);
        assert.doesNotMatch(refused.text, /id="revealed-value"/, 'no secret shown');

        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.doesNotMatch(page.text, /Add a secret<\/button>/, 'no button that would be refused');
        assert.match(page.text, /delete one you no longer use to add another/);
        const [oldest] = await server.gatehouse.storage.clients.listSecrets(id);
        assert.equal((await browser.request(url(`/developers/applications/${id}/secrets/${oldest!.id}/delete`), { form: { csrf } })).status, 303);
        assert.equal((await browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf } })).status, 200, 'one may be added again');
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 5);
      });
    });

    describe('API keys', () => {
      it('shows a key once, lists it, and the key works as `Authorization: ApiKey` until it is revoked in the portal', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const form = await browser.request(url(`/developers/applications/${id}/api-keys`));
        assert.equal(form.status, 200);
        for (const scope of ['objects:read', 'model:read', 'bcf:write']) assert.ok(form.text.includes(`value="${scope}"`), `${scope} can be chosen`);
        for (const scope of ['objects:download', 'openid', 'offline_access', 'admin:clients']) assert.ok(!form.text.includes(`value="${scope}"`), `${scope} cannot be chosen`);

        const created = await createKey(browser, id, [['name', 'Viewer backend'], ['scopes', 'model:read'], ['scopes', 'bcf:read']]);
        assert.equal(created.status, 200, created.text.slice(0, 1000));
        const apiKey = inputValue(created.text, 'revealed-value');
        assert.ok(apiKey.startsWith('gate_ak_'));
        const [key] = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.deepEqual(key!.scopes, ['model:read', 'bcf:read']);
        assert.equal(key!.expiresAt, null);

        const minted = await projectToken(apiKey);
        assert.equal(minted.status, 201, JSON.stringify(minted.body));
        assert.deepEqual(minted.body.scopes, ['model:read']);
        assert.equal(minted.body.project, 'p1');

        const list = await browser.request(url(`/developers/applications/${id}/api-keys`));
        assert.ok(!list.text.includes(apiKey), 'the key is never shown again');
        assert.match(list.text, /Viewer backend/);
        assert.ok(list.text.includes(`${key!.prefix}…`), 'listed by its prefix');
        assert.match(list.text, /status-live">Active/);
        assert.match(list.text, /Last used<\/dt><dd>\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/, 'the last use is shown');

        const revoked = await browser.request(url(`/developers/applications/${id}/api-keys/${key!.id}/revoke`), { form: { csrf: hiddenField(list.text, 'csrf') } });
        assert.equal(revoked.status, 303);
        const refused = await projectToken(apiKey);
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error, 'invalid_token');
        const after = await browser.request(url(revoked.location!));
        assert.match(after.text, /status-dead">Revoked/);
        assert.match(after.text, /The API key was revoked/);

        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.api_key.created', 'portal.api_key.revoked']);
      });

      it('shows "never" for a key not used yet, and keeps an expiry date', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
        const created = await createKey(browser, id, [['name', 'Nightly'], ['scopes', 'objects:read'], ['expires_on', tomorrow]]);
        assert.equal(created.status, 200);
        const [key] = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.equal(key!.expiresAt, Date.parse(`${tomorrow}T00:00:00Z`) / 1000 + 86_400);
        assert.match(created.text, /Last used<\/dt><dd>never/);
      });

      it('refuses scopes the key may not carry, no scope, a past or malformed expiry, and a missing name', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const cases: [Pairs, string, RegExp][] = [
          [[['name', 'k'], ['scopes', 'objects:download']], 'key-scopes', /needs a user/],
          [[['name', 'k'], ['scopes', 'admin:clients']], 'key-scopes', /admin/],
          [[['name', 'k'], ['scopes', 'nonsense']], 'key-scopes', /unknown scope/i],
          [[['name', 'k']], 'key-scopes', /at least one scope/],
          [[['name', 'k'], ['scopes', 'model:read'], ['expires_on', '2000-01-01']], 'key-expiry', /future/],
          [[['name', 'k'], ['scopes', 'model:read'], ['expires_on', '2030-02-30']], 'key-expiry', /YYYY-MM-DD/],
          [[['name', ' '], ['scopes', 'model:read']], 'key-name', /needs a name/],
        ];
        for (const [form, fieldId, message] of cases) {
          const res = await createKey(browser, id, form);
          assert.equal(res.status, 400, JSON.stringify(form));
          assert.match(fieldErrors(res.text)[fieldId] ?? '', message, JSON.stringify(form));
          assert.ok(!res.text.includes('id="revealed-value"'));
        }
        assert.deepEqual(await server.gatehouse.storage.apiKeys.listForClient(id), []);
      });

      it('holds at most 20 live API keys: another is refused with a readable 409 page, also when asked for all at once, and stores nothing until one is revoked', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const csrf = await csrfOf(browser);
        const form = (n: number): Pairs => [['csrf', csrf], ['name', `key ${n}`], ['scopes', 'model:read']];
        const sent = await Promise.all(Array.from({ length: 23 }, (_, n) => browser.request(url(`/developers/applications/${id}/api-keys`), { form: form(n) })));
        assert.deepEqual(
          sent.map((answer) => answer.status).filter((status) => status !== 200),
          [409, 409, 409],
        );
        assert.equal((await server.gatehouse.storage.apiKeys.listForClient(id)).length, 20);
        const refused = sent.find((answer) => answer.status === 409)!;
        assert.match(refused.text, /An application holds at most 20 live API keys/);
        assert.doesNotMatch(refused.text, /id="revealed-value"/, 'no key shown');

        const page = await browser.request(url(`/developers/applications/${id}/api-keys`));
        assert.doesNotMatch(page.text, /Create API key<\/button>/, 'no button that would be refused');
        assert.match(page.text, /revoke one you no longer use to create another/);
        const [oldest] = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.equal((await browser.request(url(`/developers/applications/${id}/api-keys/${oldest!.id}/revoke`), { form: { csrf } })).status, 303);
        assert.equal((await browser.request(url(`/developers/applications/${id}/api-keys`), { form: form(23) })).status, 200, 'one may be created again');
        const keys = await server.gatehouse.storage.apiKeys.listForClient(id);
        assert.equal(keys.filter((key) => key.revokedAt === null).length, 20);
      });

      it('offers no API keys to a public application: its keys address says why, with no form, and refuses a key', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, appForm({ type: 'public' }));
        const page = await browser.request(url(`/developers/applications/${id}/api-keys`));
        assert.equal(page.status, 404);
        assert.match(page.text, /No API keys for a public application/);
        assert.match(page.text, new RegExp(`href="/developers/applications/${id}"`));
        assert.ok(!page.text.includes('<form'), 'no form that would always refuse');
        const res = await createKey(browser, id, [['name', 'k'], ['scopes', 'model:read']]);
        assert.equal(res.status, 404);
        assert.match(res.text, /No API keys for a public application/);
        assert.ok(!res.text.includes('<form'));
        assert.deepEqual(await server.gatehouse.storage.apiKeys.listForClient(id), []);
      });
    });

    describe('public keys (private_key_jwt)', () => {
      const keysOf = (id: string) => `/developers/applications/${id}/keys`;

      /** A client assertion for the token endpoint, as a client library would sign it (RFC 7523 §3). */
      async function assertion(clientId: string, key: CryptoKey, kid: string): Promise<string> {
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ iss: clientId, sub: clientId, aud: url('/token'), iat: now, exp: now + 60, jti: randomUUID() })
          .setProtectedHeader({ alg: 'ES256', kid })
          .sign(key);
      }
      const withAssertion = async (clientId: string, key: CryptoKey, kid: string) =>
        post(url('/token'), {
          grant_type: 'client_credentials',
          scope: 'objects:read',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: await assertion(clientId, key, kid),
        });

      async function keyPair(kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
        const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
        return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
      }

      it('registers pasted public keys, lists them, and the application then authenticates with assertions until they are replaced or removed', async () => {
        const browser = await signIn(alice.email);
        const { id, secret } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.match(page.text, /No public keys are registered/);
        assert.match(page.text, new RegExp(`action="/developers/applications/${id}/keys"`));
        const first = await keyPair('laptop-1');
        assert.equal((await withAssertion(id, first.privateKey, 'laptop-1')).status, 401, 'no key registered yet');

        const saved = await browser.request(url(keysOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), jwks: JSON.stringify({ keys: [first.jwk] }) } });
        assert.equal(saved.status, 303, saved.text.slice(0, 1000));
        assert.equal(saved.location, `/developers/applications/${id}?notice=keys-saved`);
        const shown = await browser.request(url(saved.location!));
        assert.match(shown.text, /The public keys were saved/);
        assert.match(shown.text, /<code>laptop-1<\/code>/);
        assert.ok(shown.text.includes(await calculateJwkThumbprint(first.jwk)), 'the page shows the RFC 7638 thumbprint');
        assert.match(shown.text, /Remove the keys/);

        const issued = await withAssertion(id, first.privateKey, 'laptop-1');
        assert.equal(issued.status, 200, JSON.stringify(issued.body));
        assert.equal((await clientCredentials(id, secret!)).status, 200, 'the secret keeps working beside the keys');

        // Replacing: the new key authenticates, the old one no longer does.
        const second = await keyPair('laptop-2');
        const replaced = await browser.request(url(keysOf(id)), { form: { csrf: hiddenField(shown.text, 'csrf'), jwks: JSON.stringify({ keys: [second.jwk] }) } });
        assert.equal(replaced.status, 303);
        assert.equal((await withAssertion(id, second.privateKey, 'laptop-2')).status, 200);
        const stale = await withAssertion(id, first.privateKey, 'laptop-1');
        assert.equal(stale.status, 401);
        assert.equal(stale.body.error, 'invalid_client');

        const removed = await browser.request(url(`${keysOf(id)}/delete`), { form: { csrf: hiddenField(shown.text, 'csrf') } });
        assert.equal(removed.status, 303);
        assert.equal(removed.location, `/developers/applications/${id}?notice=keys-removed`);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.jwks, null);
        assert.equal((await withAssertion(id, second.privateKey, 'laptop-2')).status, 401);
        assert.match((await browser.request(url(removed.location!))).text, /The public keys were removed[\s\S]*No public keys are registered/);

        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.client.keys_saved', 'portal.client.keys_saved', 'portal.client.keys_removed']);
      });

      it('refuses what is not a set of public signing keys with status 400, shows why next to the field, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const registered = await keyPair('kept');
        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.equal((await browser.request(url(keysOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), jwks: JSON.stringify({ keys: [registered.jwk] }) } })).status, 303);
        const before = (await server.gatehouse.storage.clients.find(id))!.jwks;

        const { privateKey: rsaPrivate } = generateKeyPairSync('rsa', { modulusLength: 1024 });
        const smallRsa = rsaPrivate.export({ format: 'jwk' });
        const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...smallRsaPublic } = smallRsa;
        const privateJwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
        const cases: [string, RegExp][] = [
          ['', /Paste the public keys as a JWK Set/],
          ['   ', /Paste the public keys as a JWK Set/],
          ['{"keys": [', /not valid JSON/i],
          ['null', /must be a JWK Set/i],
          ['42', /must be a JWK Set/i],
          ['"keys"', /must be a JWK Set/i],
          ['[1, 2]', /must be a JWK Set/i],
          ['{"kty": "EC"}', /must be a JWK Set/i],
          ['{"keys": []}', /1 to 10 keys/i],
          [JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), /private or secret key material/i],
          [JSON.stringify({ keys: [privateJwk] }), /private or secret key material/i],
          [JSON.stringify({ keys: [smallRsaPublic] }), /at least 2048 bits/i],
          [JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] }), /not a valid public key/i],
          [JSON.stringify({ keys: [registered.jwk, registered.jwk] }), /used twice/i],
        ];
        for (const [jwks, message] of cases) {
          const res = await browser.request(url(keysOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), jwks } });
          assert.equal(res.status, 400, jwks);
          assert.match(fieldErrors(res.text)['app-jwks'] ?? '', message, jwks);
          assert.match(res.text, /aria-invalid="true" aria-describedby="app-jwks-error"/);
          if ('d' in privateJwk && jwks.includes(String(privateJwk.d))) {
            assert.ok(!res.text.includes(String(privateJwk.d)), 'a pasted private key is not sent back');
          }
        }
        assert.deepEqual((await server.gatehouse.storage.clients.find(id))!.jwks, before);
        assert.equal((await withAssertion(id, registered.privateKey, 'kept')).status, 200);
        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.client.keys_saved']);
      });

      it('offers no keys to a public application and refuses them', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, appForm({ type: 'public' }));
        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.ok(!page.text.includes('Public keys'));
        const { jwk } = await keyPair('spa');
        const res = await browser.request(url(keysOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), jwks: JSON.stringify({ keys: [jwk] }) } });
        assert.equal(res.status, 400);
        assert.match(res.text, /A public application cannot authenticate/);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.jwks, null);
      });

      it('leads a typed-in keys address to the application', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const res = await browser.request(url(keysOf(id)));
        assert.equal(res.status, 302);
        assert.equal(res.location, `/developers/applications/${id}`);
      });
    });

    describe('editing an application', () => {
      const settingsOf = (id: string) => `/developers/applications/${id}/settings`;
      const editForm = (fields: Record<string, string> = {}) => ({ name: 'Sync tool 2', description: 'Now nightly', base_url: 'https://sync2.example', redirect_uris: 'https://app.example/new-callback\r\nhttp://127.0.0.1:9000/cb', ...fields });
      const authorizeUrl = (clientId: string, redirectUri: string) =>
        url(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'openid objects:read', state: 'st-1', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuZGKSWJWM0', code_challenge_method: 'S256' })}`);

      it('changes name, description, base URL and redirect URIs, shows them with a notice, and records an audit event', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.match(page.text, new RegExp(`action="/developers/applications/${id}/settings"`));
        assert.match(page.text, /id="app-name" name="name" type="text" maxlength="200" required value="Sync tool"/);
        assert.match(page.text, /<textarea id="app-redirect-uris"[^>]*>https:\/\/app\.example\/callback<\/textarea>/);
        const before = (await server.gatehouse.storage.clients.find(id))!;

        const res = await browser.request(url(settingsOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), ...editForm() } });
        assert.equal(res.status, 303, res.text.slice(0, 1000));
        assert.equal(res.location, `/developers/applications/${id}?notice=updated`);

        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.name, 'Sync tool 2');
        assert.equal(client.description, 'Now nightly');
        assert.equal(client.baseUrl, 'https://sync2.example');
        assert.deepEqual(client.redirectUris, ['https://app.example/new-callback', 'http://127.0.0.1:9000/cb']);
        assert.equal(client.type, before.type);
        assert.deepEqual(client.grantTypes, before.grantTypes);
        assert.deepEqual(client.scopes, before.scopes);
        assert.deepEqual(client.defaultScopes, before.defaultScopes);
        assert.equal(client.ownerUserId, alice.id);
        assert.equal((await server.gatehouse.storage.clients.listSecrets(id)).length, 1, 'the secrets stay');

        const shown = await browser.request(url(res.location!));
        assert.equal(shown.status, 200);
        assert.match(shown.text, /The application was saved/);
        assert.match(shown.text, /<h1[^>]*>Sync tool 2</);
        assert.match(shown.text, /value="https:\/\/sync2\.example"/);
        assert.ok(shown.text.includes('https://app.example/new-callback\nhttp://127.0.0.1:9000/cb</textarea>'));

        // Clearing the optional fields.
        const cleared = await browser.request(url(settingsOf(id)), { form: { csrf: hiddenField(shown.text, 'csrf'), ...editForm({ description: '', base_url: '' }) } });
        assert.equal(cleared.status, 303);
        const after = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(after.description, '');
        assert.equal(after.baseUrl, null);

        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.client.updated', 'portal.client.updated']);
        await server.gatehouse.audit.flush();
        const [latest] = await server.gatehouse.storage.audit.query({ clientId: id });
        assert.equal(latest!.userId, alice.id);
      });

      it('refuses a post without a valid CSRF token with 403, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const othersToken = await csrfOf(await signIn(bob.email));
        for (const csrf of [undefined, '', 'x'.repeat(43), othersToken]) {
          const form: Pairs = [...(csrf === undefined ? [] : ([['csrf', csrf]] as Pairs)), ...(Object.entries(editForm({ name: 'Forged' })) as Pairs)];
          const res = await browser.request(url(settingsOf(id)), { form });
          assert.equal(res.status, 403, String(csrf));
          assert.match(res.text, /nothing was changed/);
        }
        await assertUntouched(id);
      });

      it('answers 404 for another person’s application, and changes nothing', async () => {
        const alices = await signIn(alice.email);
        const { id } = await createApp(alices);
        const bobs = await signIn(bob.email);
        const res = await bobs.request(url(settingsOf(id)), { form: { csrf: await csrfOf(bobs), ...editForm({ redirect_uris: 'https://evil.example/cb' }) } });
        assert.equal(res.status, 404);
        assert.match(res.text, /Application not found/);
        assert.equal((await bobs.request(url(settingsOf(id)))).status, 404);
        await assertUntouched(id);
      });

      it('ignores every privileged field posted with the form', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, appForm({ type: 'public' }));
        const before = (await server.gatehouse.storage.clients.find(id))!;
        const res = await browser.request(url(settingsOf(id)), {
          form: [
            ['csrf', await csrfOf(browser)],
            ...(Object.entries(editForm({ name: 'Sneaky' })) as Pairs),
            ['type', 'confidential'], ['admin', 'on'], ['is_admin', 'true'], ['isAdmin', 'true'], ['first_party', 'on'], ['firstParty', 'true'],
            ['grant_types', 'password'], ['grant_types', 'client_credentials'], ['grantTypes', 'implicit'],
            ['allow_impersonation', 'on'], ['impersonation', 'on'], ['is_resource_server', 'on'], ['resource_server', 'on'],
            ['scopes', 'admin:clients'], ['default_scopes', 'admin:users'], ['owner_user_id', bob.id], ['ownerUserId', bob.id], ['id', 'app_chosen'],
          ],
        });
        assert.equal(res.status, 303, res.text.slice(0, 1000));
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.name, 'Sneaky');
        assert.equal(client.type, 'public');
        assert.equal(client.ownerUserId, alice.id);
        assert.equal(client.isAdmin, false);
        assert.equal(client.firstParty, false);
        assert.equal(client.allowImpersonation, false);
        assert.equal(client.isResourceServer, false);
        assert.deepEqual(client.grantTypes, before.grantTypes);
        assert.deepEqual(client.scopes, before.scopes);
        assert.deepEqual(client.defaultScopes, before.defaultScopes);
        assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(id), [], 'still public, still no secret');
        assert.equal(await server.gatehouse.storage.clients.find('app_chosen'), undefined);
      });

      it('shows an invalid redirect URI next to its field, with status 400, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const csrf = await csrfOf(browser);
        const cases = [
          ['http://evil.example/cb', /must use https/],
          ['not a url', /not an absolute URL/],
          ['https://app.example/cb#frag', /fragment/],
          ['', /at least one redirect URI/],
        ] as const;
        for (const [redirect, message] of cases) {
          const res = await browser.request(url(settingsOf(id)), { form: { csrf, ...editForm({ redirect_uris: redirect }) } });
          assert.equal(res.status, 400, redirect);
          const errors = fieldErrors(res.text);
          assert.deepEqual(Object.keys(errors), ['app-redirect-uris'], redirect);
          assert.match(errors['app-redirect-uris']!, message, redirect);
          assert.match(res.text, /Please correct the fields marked below/);
          assert.match(res.text, /id="app-name" name="name" type="text" maxlength="200" required value="Sync tool 2"/, 'the form keeps what was typed');
          assert.equal(inputValue(res.text, 'client-id'), id);
        }
        const bad = await browser.request(url(settingsOf(id)), { form: { csrf, name: '', description: 'x'.repeat(1001), base_url: 'javascript:alert(1)', redirect_uris: 'ftp://x' } });
        assert.equal(bad.status, 400);
        assert.deepEqual(Object.keys(fieldErrors(bad.text)).sort(), ['app-base-url', 'app-description', 'app-name', 'app-redirect-uris']);

        await assertUntouched(id);
      });

      it('answers a save that keeps losing the race to an operator’s changes with a readable 409 page that keeps what was typed, and changes nothing', async (t) => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const publicKey = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'typed-key' };
        const keyed = await createApp(browser, appForm({ name: 'Keyed tool' }));
        await server.gatehouse.storage.clients.update(keyed.id, { jwks: { keys: [publicKey] } }, server.gatehouse.clock());
        const csrf = await csrfOf(browser);

        // Every write of the portal meets an operator's change of the application's scopes, made just before it.
        const clients = server.gatehouse.storage.clients;
        const update = clients.update.bind(clients);
        t.mock.method(clients, 'update', async (...args: Parameters<typeof update>) => {
          const current = (await clients.find(args[0]))!;
          await update(args[0], { scopes: current.scopes.includes('model:read') ? current.scopes.filter((scope) => scope !== 'model:read') : [...current.scopes, 'model:read'] }, server.gatehouse.clock());
          return update(...args);
        });
        const settings = await browser.request(url(settingsOf(id)), { form: { csrf, ...editForm() } });
        const keys = await browser.request(url(`/developers/applications/${id}/keys`), { form: { csrf, jwks: JSON.stringify({ keys: [publicKey] }) } });
        const removal = await browser.request(url(`/developers/applications/${keyed.id}/keys/delete`), { form: { csrf } });
        t.mock.restoreAll();

        for (const [label, res] of [['settings', settings], ['keys', keys], ['key removal', removal]] as const) {
          assert.equal(res.status, 409, `${label}: ${res.text.slice(0, 1000)}`);
          assert.match(String(res.headers.get('content-type')), /^text\/html/, label);
          assert.match(res.text, /The application was changed meanwhile, so nothing was saved\. Review it as it is now, and save again\./, label);
          assert.doesNotMatch(res.text, /Something went wrong|ClientChangedError|\n\s+at /, label);
          assert.match(String(res.headers.get('content-security-policy')), /frame-ancestors 'none'/, label);
        }
        assert.match(settings.text, /id="app-name" name="name" type="text" maxlength="200" required value="Sync tool 2"/, 'the form keeps what was typed');
        assert.ok(keys.text.includes('typed-key'), 'the keys field keeps what was pasted');

        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.description, client.baseUrl, client.redirectUris, client.jwks], ['Sync tool', 'Keeps models in sync', 'https://sync.example', [CALLBACK], null], 'nothing was saved');
        assert.deepEqual((await server.gatehouse.storage.clients.find(keyed.id))!.jwks, { keys: [publicKey] }, 'the keys were not removed');
        assert.deepEqual(await auditKinds(id), ['portal.client.created']);

        // Once the operator is done, the same save goes through.
        const again = await browser.request(url(settingsOf(id)), { form: { csrf, ...editForm() } });
        assert.equal(again.status, 303, again.text.slice(0, 1000));
        assert.equal((await server.gatehouse.storage.clients.find(id))!.name, 'Sync tool 2');
      });

      it('writes only the fields typed over, keeping what an operator changed in another field while the form was open', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        const form = { csrf: hiddenField(page.text, 'csrf'), was: hiddenField(page.text, 'was') };

        // While the page is open, an operator adds a redirect URI through the admin API.
        const operator = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:clients'], isAdmin: true });
        const token = (await post(url('/token'), { grant_type: 'client_credentials' }, { headers: { authorization: basic(operator.id, operator.secret) } })).body.access_token;
        const operatorUris = [CALLBACK, 'https://app.example/operator-callback'];
        const patched = await fetch(url(`/admin/v1/clients/${id}`), { method: 'PATCH', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: operatorUris }) });
        assert.equal(patched.status, 200, await patched.text());

        // The developer renames the application: the form still shows the one redirect URI it was filled in with.
        const res = await browser.request(url(settingsOf(id)), { form: { ...form, name: 'Sync tool 2', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: CALLBACK } });
        assert.equal(res.status, 303, res.text.slice(0, 1000));
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.name, 'Sync tool 2');
        assert.deepEqual(client.redirectUris, operatorUris, 'the operator’s redirect URI is kept');
        await server.gatehouse.audit.flush();
        const [latest] = await server.gatehouse.storage.audit.query({ clientId: id, kind: 'portal.client.updated' });
        assert.deepEqual(latest!.data.changed, ['name']);

        // A save that changes nothing writes nothing.
        const shown = await browser.request(url(res.location!));
        const unchanged = await browser.request(url(settingsOf(id)), { form: { csrf: hiddenField(shown.text, 'csrf'), was: hiddenField(shown.text, 'was'), name: 'Sync tool 2', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: operatorUris.join('\r\n') } });
        assert.equal(unchanged.status, 303);
        assert.deepEqual(await auditKinds(id), ['portal.client.created', 'portal.client.updated']);
      });

      it('answers 409, saving nothing, when a field typed over was changed by someone else meanwhile, and saves once the developer has seen it', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        const form = { csrf: hiddenField(page.text, 'csrf'), was: hiddenField(page.text, 'was') };
        await server.gatehouse.storage.clients.update(id, { redirectUris: ['https://app.example/operator-callback'] }, server.gatehouse.clock());

        const typed = { name: 'Sync tool 2', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: 'https://app.example/developer-callback' };
        const res = await browser.request(url(settingsOf(id)), { form: { ...form, ...typed } });
        assert.equal(res.status, 409, res.text.slice(0, 1000));
        assert.match(res.text, /The redirect URIs of the application changed meanwhile, so nothing was saved\. Review the application as it is now, and save again\./);
        assert.ok(res.text.includes('https://app.example/developer-callback</textarea>'), 'the form keeps what was typed');
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.redirectUris], ['Sync tool', ['https://app.example/operator-callback']], 'nothing was saved');

        // The page shown is filled in with the application as it is now: saving it again is a decision.
        const again = await browser.request(url(settingsOf(id)), { form: { csrf: hiddenField(res.text, 'csrf'), was: hiddenField(res.text, 'was'), ...typed } });
        assert.equal(again.status, 303, again.text.slice(0, 1000));
        const saved = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([saved.name, saved.redirectUris], ['Sync tool 2', ['https://app.example/developer-callback']]);
      });

      it('refuses a damaged form with 400, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const csrf = await csrfOf(browser);
        for (const was of ['not base64url json', Buffer.from('{"name": 1}').toString('base64url'), Buffer.from('[]').toString('base64url')]) {
          const res = await browser.request(url(settingsOf(id)), { form: { csrf, was, ...editForm() } });
          assert.equal(res.status, 400, was);
          assert.match(res.text, /The form was damaged, so nothing was saved\. Reload the page and save again\./);
        }
        assert.equal((await server.gatehouse.storage.clients.find(id))!.name, 'Sync tool');
      });

      it('takes effect at /authorize at once: the old redirect URI is refused, the new one leads to sign-in', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, appForm({ type: 'public' }));
        const newCallback = 'https://app.example/new-callback';

        // The client is in the cache before the change.
        const warm = await new HttpBrowser().follow(authorizeUrl(id, CALLBACK), server.url);
        assert.equal(warm.status, 200);
        assert.match(warm.text, /name="password"/);

        const res = await browser.request(url(settingsOf(id)), { form: { csrf: await csrfOf(browser), ...editForm({ redirect_uris: newCallback }) } });
        assert.equal(res.status, 303);

        const old = await new HttpBrowser().request(authorizeUrl(id, CALLBACK));
        assert.equal(old.status, 400);
        assert.equal(old.location, undefined);
        assert.match(old.text, /not registered/);

        const fresh = await new HttpBrowser().follow(authorizeUrl(id, newCallback), server.url);
        assert.equal(fresh.status, 200);
        assert.match(fresh.text, /name="password"/);
      });

      it('saves the other fields of an application holding redirect URIs, a description or a base URL from before today’s rules, keeps those, and checks the ones typed anew', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        // As an operator (admin API, command line) or an earlier version registered them: the core keeps
        // what a client holds, the portal refuses each typed anew (plain http off loopback, over 20 URIs,
        // a description over 1000 characters, a base URL that is not http or https).
        const legacy = 'http://legacy.example/cb';
        const held = {
          redirectUris: [legacy, ...Array.from({ length: 24 }, (_, i) => `https://app.example/cb${i}`)],
          description: 'd'.repeat(1500),
          baseUrl: 'ftp://files.example/',
        };
        await server.gatehouse.storage.clients.update(id, held, server.gatehouse.clock());
        server.gatehouse.clients.invalidate(id);

        const page = await browser.request(url(`/developers/applications/${id}`));
        const shown = { name: 'Sync tool', description: held.description, base_url: held.baseUrl, redirect_uris: held.redirectUris.join('\r\n') };
        const form = { csrf: hiddenField(page.text, 'csrf'), was: hiddenField(page.text, 'was') };
        const renamed = await browser.request(url(settingsOf(id)), { form: { ...form, ...shown, name: 'Sync tool renamed' } });
        assert.equal(renamed.status, 303, JSON.stringify(fieldErrors(renamed.text)));
        let client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.redirectUris, client.description, client.baseUrl], ['Sync tool renamed', held.redirectUris, held.description, held.baseUrl]);

        // A form without `was` (from before it had one) writes every field, the held ones as they are.
        const whole = await browser.request(url(settingsOf(id)), { form: { csrf: form.csrf, ...shown, name: 'Sync tool again' } });
        assert.equal(whole.status, 303, JSON.stringify(fieldErrors(whole.text)));
        client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.redirectUris, client.description, client.baseUrl], ['Sync tool again', held.redirectUris, held.description, held.baseUrl]);

        // Dropping held URIs is a change that adds nothing: saved.
        const fewer = held.redirectUris.slice(1, 21);
        const dropped = await browser.request(url(settingsOf(id)), { form: { csrf: form.csrf, ...shown, name: 'Sync tool again', redirect_uris: fewer.join('\r\n') } });
        assert.equal(dropped.status, 303, JSON.stringify(fieldErrors(dropped.text)));
        assert.deepEqual((await server.gatehouse.storage.clients.find(id))!.redirectUris, fewer);
        const kept = { ...shown, name: 'Sync tool again', redirect_uris: fewer.join('\r\n') };

        const refused: [Record<string, string>, string, RegExp][] = [
          [{ redirect_uris: [...fewer.slice(1), 'http://other.example/cb'].join('\r\n') }, 'app-redirect-uris', /must use https/],
          [{ redirect_uris: [...fewer, 'https://app.example/one-more'].join('\r\n') }, 'app-redirect-uris', /at most 20 redirect URIs/],
          // Dropped, it is no longer held: typed again, it is checked as any other.
          [{ redirect_uris: [...fewer.slice(1), legacy].join('\r\n') }, 'app-redirect-uris', /must use https/],
          [{ description: `${held.description}!` }, 'app-description', /longer than 1000 characters/],
          [{ base_url: 'ftp://other.example/' }, 'app-base-url', /http or https/],
        ];
        const before = JSON.stringify(await server.gatehouse.storage.clients.find(id));
        for (const [typed, fieldId, message] of refused) {
          const res = await browser.request(url(settingsOf(id)), { form: { csrf: form.csrf, ...kept, ...typed } });
          assert.equal(res.status, 400, `${JSON.stringify(typed).slice(0, 100)}: ${res.status}`);
          assert.match(fieldErrors(res.text)[fieldId] ?? '', message, JSON.stringify(fieldErrors(res.text)));
        }
        assert.equal(JSON.stringify(await server.gatehouse.storage.clients.find(id)), before);
      });
    });

    describe('back-channel logout', () => {
      const settingsOf = (id: string) => `/developers/applications/${id}/settings`;
      const LOGOUT_URI = 'https://sync.example/backchannel-logout';
      const uriField = (html: string) => /<input id="app-backchannel-logout-uri"[^>]* value="([^"]*)"/.exec(html)?.[1]?.replace(/&amp;/g, '&');
      const sessionRequired = (html: string) => /<input [^>]*name="backchannel_logout_session_required"[^>]* checked/.test(html);
      /** Every URI the portal refuses, with why: relative, a fragment, not https, or a host on Gatehouse's own network. */
      const REFUSED: [string, RegExp][] = [
        ['/backchannel-logout', /not an absolute URL/],
        ['https://sync.example/logout#frag', /fragment/],
        ['javascript:alert(1)', /must use https/],
        ['http://sync.example/logout', /must use https/],
        ['http://127.0.0.1:8080/logout', /must use https/],
        ['https://127.0.0.1/logout', /loopback address/],
        ['https://127.1.2.3:8443/logout', /loopback address/],
        ['https://2130706433/logout', /loopback address/],
        ['https://0.0.0.0/logout', /this host/],
        ['https://[::1]/logout', /loopback address/],
        ['https://[::]/logout', /this host/],
        ['https://10.0.0.7/logout', /private address/],
        ['https://172.16.4.2/logout', /private address/],
        ['https://192.168.1.20/logout', /private address/],
        ['https://100.64.0.1/logout', /shared address/],
        ['https://169.254.169.254/latest/meta-data/', /link-local address/],
        ['https://[fe80::1]/logout', /link-local address/],
        ['https://[fc00::1]/logout', /unique-local address/],
        ['https://[fd12:3456:789a::1]/logout', /unique-local address/],
        ['https://[::ffff:127.0.0.1]/logout', /loopback address/],
        ['https://[::ffff:10.1.2.3]/logout', /private address/],
        ['https://[::ffff:a9fe:a9fe]/logout', /link-local address/],
        ['https://[64:ff9b::192.168.0.1]/logout', /private address/],
        ['https://192.0.0.192/opc/v1/instance/', /special-purpose address/],
        ['https://198.18.0.1/logout', /special-purpose address/],
        ['https://[64:ff9b:1::a00:7]/logout', /private address/],
        ['https://[64:ff9b:1:1:a:0:100:0]/logout', /special-purpose address/],
        ['https://[::ffff:0:10.0.0.1]/logout', /private address/],
        ['https://[::a9fe:a9fe]/logout', /link-local address/],
        ['https://[2002:a00:1::1]/logout', /private address/],
        ['https://[2002:7f00:1::]:8443/logout', /loopback address/],
        ['https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/logout', /special-purpose address/],
        ['https://224.0.0.251/logout', /multicast address/],
        ['https://[ff02::1]/logout', /multicast address/],
        ['https://255.255.255.255/logout', /reserved address/],
        ['https://192.0.2.10/logout', /documentation address/],
        ['https://[2001:db8::10]/logout', /documentation address/],
        ['https://[100::1]/logout', /reserved address/],
        ['https://localhost/logout', /localhost/],
        ['https://LOCALHOST.:8443/logout', /localhost/],
        ['https://sync.localhost/logout', /localhost/],
      ];

      it('sets the URI and the session requirement on creation, shows them in the settings form, changes and clears them there', async () => {
        const browser = await signIn(alice.email);
        const { id, page } = await createApp(browser, appForm({ backchannel_logout_uri: LOGOUT_URI, backchannel_logout_session_required: 'on' }));
        let client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.backchannelLogoutUri, LOGOUT_URI);
        assert.equal(client.backchannelLogoutSessionRequired, true);
        assert.equal(uriField(page), LOGOUT_URI);
        assert.ok(sessionRequired(page));
        assert.match(page, /Logout Token/, 'the field says what the URI receives');

        const shown = await browser.request(url(`/developers/applications/${id}`));
        assert.equal(uriField(shown.text), LOGOUT_URI);
        assert.ok(sessionRequired(shown.text));
        const form = { csrf: hiddenField(shown.text, 'csrf'), was: hiddenField(shown.text, 'was'), name: 'Sync tool', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: CALLBACK };
        const changed = await browser.request(url(settingsOf(id)), { form: { ...form, backchannel_logout_uri: 'https://sync.example:8443/logout?from=gatehouse' } });
        assert.equal(changed.status, 303, changed.text.slice(0, 1000));
        client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.backchannelLogoutUri, 'https://sync.example:8443/logout?from=gatehouse');
        assert.equal(client.backchannelLogoutSessionRequired, false, 'the box was left unticked');
        const again = await browser.request(url(changed.location!));
        assert.equal(uriField(again.text), 'https://sync.example:8443/logout?from=gatehouse');
        assert.ok(!sessionRequired(again.text));

        const cleared = await browser.request(url(settingsOf(id)), { form: { ...form, csrf: hiddenField(again.text, 'csrf'), was: hiddenField(again.text, 'was'), backchannel_logout_uri: '' } });
        assert.equal(cleared.status, 303, cleared.text.slice(0, 1000));
        client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.backchannelLogoutUri, null);
        assert.equal(client.backchannelLogoutSessionRequired, false);

        await server.gatehouse.audit.flush();
        const updates = await server.gatehouse.storage.audit.query({ clientId: id, kind: 'portal.client.updated' });
        assert.deepEqual(updates.map((event) => event.data.changed).reverse(), [['backchannel_logout_uri', 'backchannel_logout_session_required'], ['backchannel_logout_uri']]);
      });

      it('is the core’s rule for a developer, whatever calls it, while an operator keeps plain http on loopback', async () => {
        const input = { name: 'Core app', type: 'confidential' as const, ownerUserId: alice.id, grantTypes: ['client_credentials'], scopes: ['objects:read'] };
        const now = server.gatehouse.clock();
        for (const uri of ['http://127.0.0.1:9000/logout', 'https://127.0.0.1/logout', 'https://[::ffff:192.168.0.1]/logout', 'https://localhost/logout']) {
          await assert.rejects(createClient(server.gatehouse, { ...input, backchannelLogoutUri: uri }, now, undefined, 'developer'), { code: 'ERR_VALIDATION', field: 'backchannel_logout_uri' }, uri);
        }
        const { client } = await createClient(server.gatehouse, { ...input, backchannelLogoutUri: 'http://127.0.0.1:9000/logout' }, now);
        assert.equal(client.backchannelLogoutUri, 'http://127.0.0.1:9000/logout');
        await assert.rejects(updateClient(server.gatehouse, client.id, { backchannelLogoutUri: 'https://10.0.0.1/logout' }, now, undefined, 'developer'), { field: 'backchannel_logout_uri' });
        const kept = await updateClient(server.gatehouse, client.id, { name: 'Core app 2' }, now, undefined, 'developer');
        assert.equal(kept!.client.backchannelLogoutUri, 'http://127.0.0.1:9000/logout', 'a URI the application holds stays');
        assert.equal((await updateClient(server.gatehouse, client.id, { backchannelLogoutUri: 'https://10.0.0.1/logout' }, now))!.client.backchannelLogoutUri, 'https://10.0.0.1/logout');
        await deleteClient(server.gatehouse, client.id);
      });

      it('makes one application with the URI of a creation form sent again', async () => {
        const developer = await server.user(`bcl-again-${dialect}@example.com`, PASSWORD);
        const browser = await signIn(developer.email);
        const formPage = (await browser.request(url('/developers/new'))).text;
        const form = { ...appForm({ backchannel_logout_uri: LOGOUT_URI }), csrf: hiddenField(formPage, 'csrf'), form_id: hiddenField(formPage, 'form_id') };
        const first = await browser.request(url('/developers/applications'), { form });
        assert.equal(first.status, 200, first.text.slice(0, 1000));
        const second = await browser.request(url('/developers/applications'), { form });
        assert.equal(second.status, 303);
        const clients = await server.gatehouse.storage.clients.listForOwner(developer.id);
        assert.deepEqual(clients.map((client) => client.backchannelLogoutUri), [LOGOUT_URI]);
      });

      it('refuses, on creation, a URI that is not https or names a host on Gatehouse’s own network: the form again with the reason on the field, status 400, nothing created', async () => {
        const browser = await signIn(bob.email);
        const before = (await server.gatehouse.storage.clients.listForOwner(bob.id)).length;
        const csrf = await csrfOf(browser);
        for (const [uri, message] of REFUSED) {
          const res = await browser.request(url('/developers/applications'), { form: { csrf, ...appForm({ backchannel_logout_uri: uri, backchannel_logout_session_required: 'on' }) } });
          assert.equal(res.status, 400, `${uri}: ${res.text.slice(0, 500)}`);
          const errors = fieldErrors(res.text);
          assert.deepEqual(Object.keys(errors), ['app-backchannel-logout-uri'], uri);
          assert.match(errors['app-backchannel-logout-uri']!, message, uri);
          assert.match(res.text, /id="app-backchannel-logout-uri"[^>]* aria-invalid="true" aria-describedby="app-backchannel-logout-uri-error"/, uri);
          assert.equal(uriField(res.text), uri, `${uri}: the form keeps what was typed`);
          assert.ok(sessionRequired(res.text), uri);
        }
        assert.equal((await server.gatehouse.storage.clients.listForOwner(bob.id)).length, before);
      });

      it('refuses the same URIs in the settings form, and changes nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const csrf = await csrfOf(browser);
        for (const [uri, message] of REFUSED) {
          const res = await browser.request(url(settingsOf(id)), { form: { csrf, ...appForm({ backchannel_logout_uri: uri }) } });
          assert.equal(res.status, 400, `${uri}: ${res.text.slice(0, 500)}`);
          const errors = fieldErrors(res.text);
          assert.deepEqual(Object.keys(errors), ['app-backchannel-logout-uri'], uri);
          assert.match(errors['app-backchannel-logout-uri']!, message, uri);
          assert.equal(inputValue(res.text, 'client-id'), id);
        }
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.equal(client.backchannelLogoutUri, null);
        await assertUntouched(id);
      });

      it('keeps a URI an operator registered that the portal would refuse while the developer saves other fields, and refuses it typed anew', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        // Operators are trusted with the server's own network: the admin API takes plain http on loopback.
        const operator = await server.client({ name: 'Operator', grantTypes: ['client_credentials'], scopes: ['admin:clients'], isAdmin: true });
        const token = (await post(url('/token'), { grant_type: 'client_credentials' }, { headers: { authorization: basic(operator.id, operator.secret) } })).body.access_token;
        const operatorUri = 'http://127.0.0.1:9000/backchannel-logout';
        const patched = await fetch(url(`/admin/v1/clients/${id}`), { method: 'PATCH', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ backchannel_logout_uri: operatorUri }) });
        assert.equal(patched.status, 200, await patched.text());

        const page = await browser.request(url(`/developers/applications/${id}`));
        assert.equal(uriField(page.text), operatorUri);
        const form = { csrf: hiddenField(page.text, 'csrf'), was: hiddenField(page.text, 'was'), ...appForm({ name: 'Sync tool 2', backchannel_logout_uri: operatorUri }) };
        const renamed = await browser.request(url(settingsOf(id)), { form });
        assert.equal(renamed.status, 303, renamed.text.slice(0, 1000));
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.backchannelLogoutUri], ['Sync tool 2', operatorUri]);

        const retyped = await browser.request(url(settingsOf(id)), { form: { ...form, backchannel_logout_uri: 'http://127.0.0.1:9001/backchannel-logout' } });
        assert.equal(retyped.status, 400);
        assert.match(fieldErrors(retyped.text)['app-backchannel-logout-uri'] ?? '', /must use https/);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.backchannelLogoutUri, operatorUri);
      });

      it('answers 409 when the URI typed over was changed by someone else meanwhile, and saves nothing', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser);
        const page = await browser.request(url(`/developers/applications/${id}`));
        await server.gatehouse.storage.clients.update(id, { backchannelLogoutUri: 'https://operator.example/logout' }, server.gatehouse.clock());
        const res = await browser.request(url(settingsOf(id)), { form: { csrf: hiddenField(page.text, 'csrf'), was: hiddenField(page.text, 'was'), ...appForm({ backchannel_logout_uri: LOGOUT_URI }) } });
        assert.equal(res.status, 409, res.text.slice(0, 1000));
        assert.match(res.text, /The back-channel logout URI of the application changed meanwhile, so nothing was saved/);
        assert.equal((await server.gatehouse.storage.clients.find(id))!.backchannelLogoutUri, 'https://operator.example/logout');
      });

      it('leaves the fields as they are when a form from before them is saved', async () => {
        const browser = await signIn(alice.email);
        const { id } = await createApp(browser, appForm({ backchannel_logout_uri: LOGOUT_URI, backchannel_logout_session_required: 'on' }));
        const csrf = await csrfOf(browser);
        // The settings form as it was: its `was` knows only the four details, and it posts no back-channel field.
        const was = Buffer.from(JSON.stringify({ name: 'Sync tool', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: CALLBACK })).toString('base64url');
        const old = { name: 'Sync tool 2', description: 'Keeps models in sync', base_url: 'https://sync.example', redirect_uris: CALLBACK };
        for (const form of [{ csrf, was, ...old }, { csrf, ...old, name: 'Sync tool 3' }]) {
          const res = await browser.request(url(settingsOf(id)), { form });
          assert.equal(res.status, 303, res.text.slice(0, 1000));
        }
        const client = (await server.gatehouse.storage.clients.find(id))!;
        assert.deepEqual([client.name, client.backchannelLogoutUri, client.backchannelLogoutSessionRequired], ['Sync tool 3', LOGOUT_URI, true]);
      });
    });

    describe('an operator’s change between the portal’s check and its write', () => {
      /** Each change that takes an application from the portal: afterwards the developer may no longer manage it. */
      const TAKEN_AWAY = [
        // As an operator does it through the admin API, which gives an admin client no owner…
        ['made an admin client', () => ({ isAdmin: true, ownerUserId: null, scopes: ['admin:users'], defaultScopes: ['admin:users'], grantTypes: ['client_credentials'] })],
        // …and as one stored before that rule, still owned: the admin flag alone refuses the write.
        ['made an admin client that keeps its owner', () => ({ isAdmin: true, scopes: ['admin:users'], defaultScopes: ['admin:users'], grantTypes: ['client_credentials'] })],
        ['made a resource server', () => ({ isResourceServer: true })],
        ['allowed to impersonate', () => ({ allowImpersonation: true })],
        ['given to another developer', () => ({ ownerUserId: bob.id })],
      ] as const;

      /**
       * What the portal writes, each with the storage call that makes the write: `prepare` makes what
       * it acts on (a second secret, a key), `post` sends the form.
       */
      const WRITES = [
        {
          name: 'a secret added',
          method: ['clients', 'addSecret'],
          post: (browser: HttpBrowser, id: string, csrf: string) => browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf } }),
        },
        {
          name: 'an API key added',
          method: ['apiKeys', 'create'],
          post: (browser: HttpBrowser, id: string) => createKey(browser, id, [['name', 'Late key'], ['scopes', 'objects:read']]),
        },
        {
          name: 'an API key revoked',
          method: ['apiKeys', 'revoke'],
          prepare: async (browser: HttpBrowser, id: string) => assert.equal((await createKey(browser, id, [['name', 'ci'], ['scopes', 'objects:read']])).status, 200),
          post: async (browser: HttpBrowser, id: string, csrf: string) => {
            const [key] = await server.gatehouse.storage.apiKeys.listForClient(id);
            return browser.request(url(`/developers/applications/${id}/api-keys/${key!.id}/revoke`), { form: { csrf } });
          },
        },
        {
          name: 'a secret removed',
          method: ['clients', 'deleteSecret'],
          prepare: async (browser: HttpBrowser, id: string) => assert.equal((await browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf: await csrfOf(browser) } })).status, 200),
          post: async (browser: HttpBrowser, id: string, csrf: string) => {
            const [oldest] = await server.gatehouse.storage.clients.listSecrets(id);
            return browser.request(url(`/developers/applications/${id}/secrets/${oldest!.id}/delete`), { form: { csrf } });
          },
        },
        {
          name: 'the settings saved',
          method: ['clients', 'update'],
          post: (browser: HttpBrowser, id: string, csrf: string) =>
            browser.request(url(`/developers/applications/${id}/settings`), { form: { csrf, name: 'Renamed', description: 'Changed', base_url: 'https://elsewhere.example', redirect_uris: 'https://elsewhere.example/cb' } }),
        },
        {
          name: 'the application deleted',
          method: ['clients', 'delete'],
          post: (browser: HttpBrowser, id: string, csrf: string) => browser.request(url(`/developers/applications/${id}/delete`), { form: { csrf } }),
        },
      ] as const;

      /** Runs `change` (an operator's, straight to storage) just before each of the first `times` calls of the storage method. */
      function changeBefore(t: TestContext, [repository, method]: readonly [string, string], change: (id: string) => Promise<unknown>, times = Number.POSITIVE_INFINITY): void {
        const target = (server.gatehouse.storage as unknown as Record<string, Record<string, (...args: unknown[]) => Promise<unknown>>>)[repository]!;
        const original = target[method]!.bind(target);
        let calls = 0;
        let changing = false;
        t.mock.method(target, method, async (...args: unknown[]) => {
          // The operator's change may go through the same method (an update): that call is theirs.
          if (!changing && calls++ < times) {
            changing = true;
            await change(typeof args[0] === 'string' ? args[0] : (args[0] as { clientId: string }).clientId).finally(() => (changing = false));
          }
          return original(...args);
        });
      }

      const operatorChange = async (id: string, patch: Parameters<TestServer['gatehouse']['storage']['clients']['update']>[1]) => {
        await server.gatehouse.storage.clients.update(id, patch, server.gatehouse.clock());
        server.gatehouse.clients.invalidate(id);
      };

      /** What the developer's write could have changed: the application's fields, secrets and keys, and the portal's audit events. */
      async function snapshot(id: string) {
        const client = await server.gatehouse.storage.clients.find(id);
        return {
          client: client && { name: client.name, description: client.description, baseUrl: client.baseUrl, redirectUris: client.redirectUris },
          secrets: await server.gatehouse.storage.clients.listSecrets(id),
          keys: await server.gatehouse.storage.apiKeys.listForClient(id),
          audit: await auditKinds(id),
        };
      }

      for (const write of WRITES) {
        for (const [change, patch] of TAKEN_AWAY) {
          it(`does not let ${write.name} land on an application ${change} meanwhile: the 404 page, and nothing stored`, async (t) => {
            const browser = await signIn(alice.email);
            const { id } = await createApp(browser);
            if ('prepare' in write) await write.prepare(browser, id);
            const before = await snapshot(id);
            const csrf = await csrfOf(browser);

            changeBefore(t, write.method, (target) => operatorChange(target, patch()), 1);
            const res = await write.post(browser, id, csrf);
            t.mock.restoreAll();

            assert.equal(res.status, 404, `${res.status}: ${res.text.slice(0, 1000)}`);
            assert.match(String(res.headers.get('content-type')), /^text\/html/);
            assert.match(res.text, /There is no application of yours at this address/);
            assert.doesNotMatch(res.text, /id="revealed-/, 'no credential shown');
            assert.deepEqual(await snapshot(id), before, 'nothing stored');
            const client = (await server.gatehouse.storage.clients.find(id))!;
            assert.deepEqual({ ...client, ...patch() }, client, 'the operator’s change stands');
          });
        }

        it(`lets ${write.name} land after an operator’s change that leaves the application the developer’s, made once just before the write`, async (t) => {
          const browser = await signIn(alice.email);
          const { id } = await createApp(browser);
          if ('prepare' in write) await write.prepare(browser, id);
          const before = await snapshot(id);
          const csrf = await csrfOf(browser);

          changeBefore(t, write.method, (target) => operatorChange(target, { scopes: ['objects:read', 'model:read', 'bcf:read'] }), 1);
          const res = await write.post(browser, id, csrf);
          t.mock.restoreAll();

          assert.ok(res.status === 200 || res.status === 303, `${res.status}: ${res.text.slice(0, 1000)}`);
          const after = await snapshot(id);
          assert.notDeepEqual(after, before, 'the write landed');
          assert.equal(after.audit.length, before.audit.length + 1, 'and was recorded');
          if (after.client) assert.deepEqual((await server.gatehouse.storage.clients.find(id))!.scopes, ['objects:read', 'model:read', 'bcf:read'], 'on the application as the operator left it');
        });

        it(`answers ${write.name} that keeps losing the race to an operator’s changes with a readable 409 page, and stores nothing`, async (t) => {
          const browser = await signIn(alice.email);
          const { id } = await createApp(browser);
          if ('prepare' in write) await write.prepare(browser, id);
          const before = await snapshot(id);
          const csrf = await csrfOf(browser);

          const toggle = async (target: string) => {
            const current = (await server.gatehouse.storage.clients.find(target))!;
            await operatorChange(target, { scopes: current.scopes.includes('bcf:read') ? current.scopes.filter((scope) => scope !== 'bcf:read') : [...current.scopes, 'bcf:read'] });
          };
          changeBefore(t, write.method, toggle);
          const res = await write.post(browser, id, csrf);
          t.mock.restoreAll();

          assert.equal(res.status, 409, `${res.status}: ${res.text.slice(0, 1000)}`);
          assert.match(String(res.headers.get('content-type')), /^text\/html/);
          assert.match(res.text, /The application was changed meanwhile, so (nothing was saved|no secret was added|no API key was created|the API key was not revoked|the secret was not deleted|it was not deleted)\./);
          assert.doesNotMatch(res.text, /Something went wrong|\n\s+at |id="revealed-/);
          assert.deepEqual(await snapshot(id), before, 'nothing stored');
        });
      }
    });

    it('never shows or manages an admin client, even one stored with the developer as its owner', async () => {
      const browser = await signIn(alice.email);
      const { id } = await createApp(browser, appForm({ name: 'Turned back office' }));
      // As stored before an admin client could have no owner.
      await server.gatehouse.storage.clients.update(id, { isAdmin: true, scopes: ['admin:users'], defaultScopes: ['admin:users'], grantTypes: ['client_credentials'] }, server.gatehouse.clock());
      server.gatehouse.clients.invalidate(id);
      const before = await server.gatehouse.storage.clients.listSecrets(id);

      assert.equal((await browser.request(url(`/developers/applications/${id}`))).status, 404);
      const csrf = await csrfOf(browser);
      assert.equal((await browser.request(url(`/developers/applications/${id}/secrets`), { form: { csrf } })).status, 404);
      assert.equal((await createKey(browser, id, [['name', 'ci']])).status, 404);
      assert.deepEqual(await server.gatehouse.storage.clients.listSecrets(id), before, 'no secret added');
      assert.doesNotMatch((await browser.request(url('/developers'))).text, /Turned back office/);
    });

    describe('deleting an application', () => {
      it('asks for confirmation, then deletes it with its secrets and API keys, which stop working', async () => {
        const browser = await signIn(alice.email);
        const { id, secret } = await createApp(browser, appForm({ name: 'Doomed' }));
        const created = await createKey(browser, id, [['name', 'ci'], ['scopes', 'model:read']]);
        const apiKey = inputValue(created.text, 'revealed-value');
        assert.equal((await clientCredentials(id, secret!)).status, 200);
        assert.equal((await projectToken(apiKey)).status, 201);

        const confirm = await browser.request(url(`/developers/applications/${id}/delete`));
        assert.equal(confirm.status, 200);
        assert.match(confirm.text, /Delete Doomed\?/);
        const deleted = await browser.request(url(`/developers/applications/${id}/delete`), { form: { csrf: hiddenField(confirm.text, 'csrf') } });
        assert.equal(deleted.status, 303);
        assert.equal(deleted.location, '/developers?notice=deleted');

        const token = await clientCredentials(id, secret!);
        assert.equal(token.status, 401);
        assert.equal(token.body.error, 'invalid_client');
        assert.equal((await projectToken(apiKey)).status, 401);
        assert.equal((await browser.request(url(`/developers/applications/${id}`))).status, 404);
        const list = await browser.request(url('/developers?notice=deleted'));
        assert.match(list.text, /The application was deleted/);
        assert.doesNotMatch(list.text, /Doomed/);
        assert.ok((await auditKinds(id)).includes('portal.client.deleted'));
      });
    });
  });
}

describe('developer portal, on a catalogue where every application scope needs a user', () => {
  let server: TestServer;
  before(async () => {
    // No scope an API key could hold: the key the creation form offers cannot be made.
    server = await startTestServer('sqlite', {
      config: { scopes: { openid: { description: 'Sign in', userOnly: true }, 'objects:read': { description: 'Browse objects', userOnly: true }, 'admin:clients': { description: 'Manage applications', admin: true } } },
    });
  });
  after(() => server.close());

  it('refuses the new-application form with its API key and stores no application', async () => {
    const carol = await server.user('carol@example.com', PASSWORD);
    const browser = await signedInBrowser(server.url, carol.email, PASSWORD);
    const form = await browser.request(`${server.url}/developers/new`);
    const res = await browser.request(`${server.url}/developers/applications`, {
      form: { csrf: hiddenField(form.text, 'csrf'), name: 'Carol app', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK, api_key: 'on' },
    });
    assert.equal(res.status, 400, res.text.slice(0, 500));
    assert.match(res.text, /API key needs at least one scope/);
    assert.deepEqual((await server.gatehouse.storage.clients.listForOwner(carol.id)).map((c) => c.name), []);
    await server.gatehouse.audit.flush();
    assert.deepEqual(await server.gatehouse.storage.audit.query({ kind: 'portal.client.created' }), []);
  });
});

for (const dialect of DIALECTS) {
  describe(`developer portal: an application deleted, then its creation form sent again (${dialect})`, () => {
    let server: TestServer;
    let ahead = 0;
    before(async () => {
      server = await startTestServer(dialect, { clock: () => Math.floor(Date.now() / 1000) + ahead });
    });
    after(() => server.close());

    it('makes an application of the same id that the deleted one\'s access tokens, and the project tokens minted with them, are not', async () => {
      const dana = await server.user('dana@example.com', PASSWORD);
      const api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
      const browser = await signedInBrowser(server.url, dana.email, PASSWORD);
      const page = (await browser.request(`${server.url}/developers/new`)).text;
      // The page that showed the secret, reloaded: the browser sends the creation form again.
      const form = { csrf: hiddenField(page, 'csrf'), form_id: hiddenField(page, 'form_id'), name: 'Sync tool', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK };
      const created = await browser.request(`${server.url}/developers/applications`, { form });
      const id = inputValue(created.text, 'client-id');
      const secret = inputValue(created.text, 'revealed-value');
      const tokenOf = async (clientSecret: string) => (await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read model:read' }, { headers: { authorization: basic(id, clientSecret) } })).body.access_token as string;
      const leaked = await tokenOf(secret);
      const viewer = (await post(`${server.url}/projects/p1/access-tokens`, JSON.stringify({ expires_at: new Date(Date.now() + 12 * 3600_000).toISOString(), scopes: ['model:read'] }), { json: true, headers: { authorization: `Bearer ${leaked}` } })).body.access_token as string;
      const introspect = async (token: string) => (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body.active as boolean;
      assert.equal(await introspect(viewer), true);

      const confirm = await browser.request(`${server.url}/developers/applications/${id}/delete`);
      assert.equal((await browser.request(`${server.url}/developers/applications/${id}/delete`, { form: { csrf: hiddenField(confirm.text, 'csrf') } })).status, 303);
      assert.equal(await introspect(leaked), false);
      ahead += 120;

      const again = await browser.request(`${server.url}/developers/applications`, { form });
      assert.equal(again.status, 200, again.text.slice(0, 500));
      assert.equal(inputValue(again.text, 'client-id'), id, 'the id derives from the form');
      for (const [what, token] of [['its access token', leaked], ['a project token minted with it', viewer]] as const) {
        assert.equal(await introspect(token), false, what);
        const minted = await post(`${server.url}/projects/p1/access-tokens`, JSON.stringify({ expires_at: new Date(Date.now() + 3600_000).toISOString(), scopes: ['model:read'] }), { json: true, headers: { authorization: `Bearer ${token}` } });
        assert.equal(minted.status, 401, what);
      }
      assert.equal(await introspect(await tokenOf(inputValue(again.text, 'revealed-value'))), true, 'the new application\'s own token');
    });
  });
}

/**
 * While the master secret changes, a form shown before and accepted after (its CSRF token under the
 * previous secret) is sent again from the page that showed what it made: it must find that record,
 * whose id was derived under the previous secret, and make no second one.
 */
for (const dialect of DIALECTS) {
  describe(`developer portal: forms sent again across a change of the master secret (${dialect})`, () => {
    let server: TestServer;
    let changed: { gatehouse: Gatehouse; app: FastifyInstance; url: string } | undefined;
    before(async () => {
      server = await startTestServer(dialect);
      const gatehouse = await createGatehouse({ ...server.config, secret: 'the-new-master-secret-after-the-change-0123456789', previousSecrets: [server.config.secret] }, { background: false, logger: pino({ level: 'silent' }) });
      const app = buildApp(gatehouse);
      const port = await freePort();
      await app.listen({ port, host: '127.0.0.1' });
      changed = { gatehouse, app, url: `http://127.0.0.1:${port}` };
    });
    after(async () => {
      await changed?.app.close();
      await changed?.gatehouse.close();
      await server.close();
    });

    it('finds the application, secret and API key made before the change, and makes none again', async () => {
      const erin = await server.user('erin@example.com', PASSWORD);
      const browser = await signedInBrowser(server.url, erin.email, PASSWORD);
      const storage = server.gatehouse.storage;

      const newPage = (await browser.request(`${server.url}/developers/new`)).text;
      const appForm = { csrf: hiddenField(newPage, 'csrf'), form_id: hiddenField(newPage, 'form_id'), name: 'Sync tool', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK };
      const created = await browser.request(`${server.url}/developers/applications`, { form: appForm });
      assert.equal(created.status, 200);
      const id = inputValue(created.text, 'client-id');
      const again = await browser.request(`${changed!.url}/developers/applications`, { form: appForm });
      assert.equal(again.status, 303, again.text.slice(0, 500));
      assert.equal(again.location, `/developers/applications/${id}?notice=created-before`);
      assert.deepEqual((await storage.clients.listForOwner(erin.id)).map((client) => client.id), [id]);

      const appPage = (await browser.request(`${server.url}/developers/applications/${id}`)).text;
      const secretForm = { csrf: hiddenField(appPage, 'csrf'), form_id: hiddenField(appPage, 'form_id') };
      assert.equal((await browser.request(`${server.url}/developers/applications/${id}/secrets`, { form: secretForm })).status, 200);
      const secretAgain = await browser.request(`${changed!.url}/developers/applications/${id}/secrets`, { form: secretForm });
      assert.equal(secretAgain.status, 303);
      assert.match(secretAgain.location ?? '', /\?notice=secret-added-before$/);
      assert.equal((await storage.clients.listSecrets(id)).length, 2);

      const keysPage = (await browser.request(`${server.url}/developers/applications/${id}/api-keys`)).text;
      const keyForm: Pairs = [['csrf', hiddenField(keysPage, 'csrf')], ['form_id', hiddenField(keysPage, 'form_id')], ['name', 'Nightly'], ['scopes', 'model:read']];
      assert.equal((await browser.request(`${server.url}/developers/applications/${id}/api-keys`, { form: keyForm })).status, 200);
      const keyAgain = await browser.request(`${changed!.url}/developers/applications/${id}/api-keys`, { form: keyForm });
      assert.equal(keyAgain.status, 303);
      assert.match(keyAgain.location ?? '', /\/api-keys\?notice=created-before$/);
      assert.equal((await storage.apiKeys.listForClient(id)).length, 1);
    });
  });
}
