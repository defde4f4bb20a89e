import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { createClient } from '../../src/core/applications.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { resetLinkIn, startMailServer, verifyLinkIn, type TestMailServer } from '../support/smtp.ts';

/*
 * Account pre-hijacking (Sudhodanan & Paverd, USENIX Security 2022), over real HTTP with a real SMTP
 * server: someone signs up with an address that is not theirs and uses the account before its owner
 * has a say. With email verification on, the developer portal gives such an account no credentials;
 * and the owner's reset through the emailed link takes back the credentials of applications the
 * account holds, with the grants and sessions made before the address was proven.
 */

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a new and better passphrase';
const CALLBACK = 'https://app.example/callback';

for (const dialect of DIALECTS) {
  describe(`pre-account takeover (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let api: { id: string; secret: string };
    let counter = 0;
    /** Seconds the server's clock is ahead of the system's: each test runs in rate-limit windows of its own. */
    let ahead = 0;

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => Math.floor(Date.now() / 1000) + ahead,
        env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' },
        config: { signup: { maxAccountsPerAddress: 0 } },
      });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    const url = (path: string) => `${server.url}${path}`;
    const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email));
    const nextEmail = (who: string) => `${who}-${++counter}-${dialect}@example.com`;

    /** Signs up through the page with PASSWORD; the browser, signed in, once the verification mail has gone. */
    const signUp = async (email: string) => {
      ahead += 3600;
      const browser = new HttpBrowser();
      const form = await browser.request(url('/signup'));
      const answer = await browser.request(url('/signup'), { form: { csrf: hiddenField(form.text, 'csrf'), email, name: '', password: PASSWORD } });
      assert.equal(answer.status, 303, answer.text.slice(0, 300));
      await server.gatehouse.emailVerifications.settled();
      return browser;
    };
    /** Follows the newest verification link to `email` in `browser` (signed in to its account) and confirms. */
    const verifyWithLink = async (email: string, browser: HttpBrowser) => {
      await browser.request(verifyLinkIn(mailsTo(email).at(-1)!));
      const page = await browser.request(url('/email/verify'));
      assert.equal((await browser.request(url('/email/verify'), { form: { csrf: hiddenField(page.text, 'csrf') } })).status, 200);
    };
    /** Asks for a reset link to `email` and sets NEW_PASSWORD with it, in a browser of its own; the answer. */
    const resetWithLink = async (email: string) => {
      ahead += 3600;
      const browser = new HttpBrowser();
      const forgot = await browser.request(url('/password/forgot'));
      await browser.request(url('/password/forgot'), { form: { csrf: hiddenField(forgot.text, 'csrf'), email } });
      await server.gatehouse.passwordResets.settled();
      await browser.request(resetLinkIn(mailsTo(email).at(-1)!));
      const form = await browser.request(url('/password/reset'));
      assert.equal(form.status, 200, form.text.slice(0, 300));
      return browser.request(url('/password/reset'), { form: { csrf: hiddenField(form.text, 'csrf'), new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD } });
    };
    /** A CSRF token of the browser's session, from a page every signed-in person may read. */
    const csrfOf = async (browser: HttpBrowser) => hiddenField((await browser.request(url('/account'))).text, 'csrf');
    /** An application of `ownerUserId`, registered as the portal registers one (an operator may also give one to an account). */
    const applicationOf = async (ownerUserId: string) => {
      const { client, secret } = await createClient(
        server.gatehouse,
        { name: 'Sync tool', type: 'confidential', ownerUserId, redirectUris: [CALLBACK], grantTypes: ['client_credentials', 'authorization_code', 'refresh_token'], scopes: ['openid', 'objects:read'], defaultScopes: ['objects:read'] },
        server.gatehouse.clock(),
        undefined,
        'developer',
      );
      return { id: client.id, secret: secret! };
    };
    const clientCredentials = (id: string, secret: string) => post(url('/token'), { grant_type: 'client_credentials', scope: 'objects:read' }, { headers: { authorization: basic(id, secret) } });
    const introspect = async (token: string) => (await post(url('/introspect'), { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const eventsOf = async (filter: { userId?: string; clientId?: string; kind: string }) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query(filter);
    };
    const credentialsOf = async (clientId: string) => ({
      secrets: (await server.gatehouse.storage.clients.listSecrets(clientId)).length,
      liveKeys: (await server.gatehouse.storage.apiKeys.listForClient(clientId)).filter((key) => key.revokedAt === null).length,
      jwks: (await server.gatehouse.storage.clients.find(clientId))!.jwks,
    });

    const VERIFY_FIRST = /Verify your email address first/;
    const RESEND_FORM = /<form method="post" action="\/email\/resend">/;

    describe('the developer portal of an account whose address is not verified', () => {
      it('shows its pages but registers no application: the form and its post answer a page that asks to verify the address, with a new link at hand', async () => {
        const email = nextEmail('unverified');
        const browser = await signUp(email);
        const account = (await server.gatehouse.storage.users.findByEmail(email))!;
        assert.equal(account.emailVerified, false);

        const list = await browser.request(url('/developers'));
        assert.equal(list.status, 200);
        assert.match(list.text, /Your applications/);
        assert.match(list.text, VERIFY_FIRST);
        assert.match(list.text, RESEND_FORM);
        assert.doesNotMatch(list.text, /href="\/developers\/new"/, 'no button to a form that would be refused');

        const form = await browser.request(url('/developers/new'));
        assert.equal(form.status, 403);
        assert.match(form.text, VERIFY_FIRST);
        assert.match(form.text, RESEND_FORM);
        assert.match(form.text, new RegExp(email.replace(/\./g, '\\.')));

        const clientsBefore = await countRows(server.database, 'clients');
        const secretsBefore = await countRows(server.database, 'client_secrets');
        const created = await browser.request(url('/developers/applications'), {
          form: { csrf: await csrfOf(browser), name: 'Attacker tool', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK, api_key: 'on' },
        });
        assert.equal(created.status, 403, created.text.slice(0, 300));
        assert.match(created.text, VERIFY_FIRST);
        assert.match(created.text, RESEND_FORM);
        assert.doesNotMatch(created.text, /gate_cs_|gate_ak_/);
        assert.equal(await countRows(server.database, 'clients'), clientsBefore);
        assert.equal(await countRows(server.database, 'client_secrets'), secretsBefore);
        assert.deepEqual(await server.gatehouse.storage.clients.listForOwner(account.id), []);

        // The resend form on the page works: it sends a new link to the address.
        const sent = mailsTo(email).length;
        const resent = await browser.request(url('/email/resend'), { form: { csrf: hiddenField(created.text, 'csrf') } });
        assert.equal(resent.status, 303);
        await server.gatehouse.emailVerifications.settled();
        assert.equal(mailsTo(email).length, sent + 1);

        // Once the address is verified, the same form registers the application.
        await verifyWithLink(email, browser);
        const list2 = await browser.request(url('/developers'));
        assert.doesNotMatch(list2.text, VERIFY_FIRST);
        assert.equal((await browser.request(url('/developers/new'))).status, 200);
        const made = await browser.request(url('/developers/applications'), {
          form: { csrf: await csrfOf(browser), name: 'Own tool', description: '', type: 'confidential', base_url: '', redirect_uris: CALLBACK, api_key: 'on' },
        });
        assert.equal(made.status, 200, made.text.slice(0, 300));
        assert.equal((await server.gatehouse.storage.clients.listForOwner(account.id)).length, 1);
      });

      it('adds no client secret, public keys or API key to an application the account holds, but lets it delete and revoke them', async () => {
        const email = nextEmail('holder');
        const browser = await signUp(email);
        const account = (await server.gatehouse.storage.users.findByEmail(email))!;
        const app = await applicationOf(account.id);
        const key = await server.gatehouse.apiKeys.create((await server.gatehouse.storage.clients.find(app.id))!, { name: 'Default' }, server.gatehouse.clock());
        const base = `/developers/applications/${app.id}`;

        const page = await browser.request(url(base));
        assert.equal(page.status, 200, 'the application page is readable');
        assert.match(page.text, /Sync tool/);
        assert.equal((await browser.request(url(`${base}/api-keys`))).status, 200);

        const { publicKey } = await generateKeyPair('ES256', { extractable: true });
        const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig', alg: 'ES256' }] });
        const attempts: [string, Record<string, string>][] = [
          [`${base}/secrets`, { form_id: 'AAAAAAAAAAAAAAAAAAAAAA' }],
          [`${base}/keys`, { jwks }],
          [`${base}/api-keys`, { name: 'Mine', scopes: 'objects:read', expires_on: '' }],
        ];
        for (const [path, fields] of attempts) {
          const answer = await browser.request(url(path), { form: { csrf: await csrfOf(browser), ...fields } });
          assert.equal(answer.status, 403, `${path}: ${answer.text.slice(0, 300)}`);
          assert.match(answer.text, VERIFY_FIRST, path);
          assert.match(answer.text, RESEND_FORM, path);
          assert.doesNotMatch(answer.text, /gate_cs_|gate_ak_/, path);
        }
        assert.deepEqual(await credentialsOf(app.id), { secrets: 1, liveKeys: 1, jwks: null });
        assert.deepEqual(await eventsOf({ clientId: app.id, kind: 'portal.secret.added' }), []);

        // Taking credentials away stays possible.
        const revoked = await browser.request(url(`${base}/api-keys/${key.key.id}/revoke`), { form: { csrf: await csrfOf(browser) } });
        assert.equal(revoked.status, 303, revoked.text.slice(0, 300));
        assert.deepEqual(await credentialsOf(app.id), { secrets: 1, liveKeys: 0, jwks: null });
      });
    });

    describe('a reset through the emailed link of an account whose address was not verified', () => {
      it('takes back the credentials of the applications the account holds: secrets, public keys and API keys stop working, and the grants of their users end', async () => {
        // The attacker signs up with the victim's address and holds an application under it (made
        // while verification was off, or given by an operator), with its secret, public keys and
        // an API key, and a user's grant to it.
        const victim = nextEmail('victim');
        const attacker = await signUp(victim);
        const account = (await server.gatehouse.storage.users.findByEmail(victim))!;
        const app = await applicationOf(account.id);
        const { publicKey } = await generateKeyPair('ES256', { extractable: true });
        await server.gatehouse.storage.clients.update(app.id, { jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'attacker' }] } }, server.gatehouse.clock());
        server.gatehouse.clients.invalidate(app.id);
        const apiKey = await server.gatehouse.apiKeys.create((await server.gatehouse.storage.clients.find(app.id))!, { name: 'Default' }, server.gatehouse.clock());
        const other = await server.user(nextEmail('other'), PASSWORD);
        const otherBrowser = await signedInBrowser(server.url, other.email, PASSWORD);
        const query = new URLSearchParams({ response_type: 'code', client_id: app.id, redirect_uri: CALLBACK, scope: 'openid objects:read', state: 's' });
        let consent = await otherBrowser.follow(url(`/authorize?${query}`), server.url);
        consent = await otherBrowser.follow(url('/consent'), server.url, { form: { csrf: hiddenField(consent.text, 'csrf'), request: hiddenField(consent.text, 'request'), decision: 'allow' } });
        const code = new URL(consent.location!).searchParams.get('code')!;
        const exchanged = await post(url('/token'), { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
        const othersTokens = exchanged.body as { access_token: string; refresh_token: string };
        assert.equal((await clientCredentials(app.id, app.secret)).status, 200);
        assert.equal((await introspect(apiKey.value)).active, true);

        const done = await resetWithLink(victim);
        assert.equal(done.status, 303, done.text.slice(0, 300));
        assert.equal(done.location, '/login?reset=done&developer=suspended');
        const notice = await new HttpBrowser().request(url(done.location));
        assert.match(notice.text, /Applications registered under your account lost their client secrets, public keys and API keys, and the access people had given them: review them in the developer portal and add new ones\./);
        assert.doesNotMatch(notice.text, /Applications that had access to your account/, 'the account itself had authorized none');
        assert.equal((await attacker.request(url('/account'))).status, 302, 'the attacker’s session ended');

        // Nothing the attacker kept reaches the application any more.
        const refused = await clientCredentials(app.id, app.secret);
        assert.equal(refused.status, 401);
        assert.equal(refused.body.error, 'invalid_client');
        assert.deepEqual(await introspect(apiKey.value), { active: false });
        const refreshed = await post(url('/token'), { grant_type: 'refresh_token', refresh_token: othersTokens.refresh_token }, { headers: { authorization: basic(app.id, app.secret) } });
        assert.equal(refreshed.status, 401);
        assert.deepEqual(await introspect(othersTokens.access_token), { active: false }, 'the access token of the grant given to it');
        assert.deepEqual(await credentialsOf(app.id), { secrets: 0, liveKeys: 0, jwks: null });
        const grants = await server.gatehouse.storage.grants.list({ clientId: app.id });
        assert.ok(grants.length > 0 && grants.every((grant) => grant.revokedAt !== null), 'every grant to the application is revoked');
        assert.equal(await server.gatehouse.storage.consents.find(other.id, app.id), undefined, 'its users are asked again');

        // The application stays with the account, for its owner to review and give a new secret.
        const owner = await signedInBrowser(server.url, victim, NEW_PASSWORD);
        const page = await owner.request(url(`/developers/applications/${app.id}`));
        assert.equal(page.status, 200);
        const added = await owner.request(url(`/developers/applications/${app.id}/secrets`), { form: { csrf: hiddenField(page.text, 'csrf'), form_id: 'BBBBBBBBBBBBBBBBBBBBBB' } });
        assert.equal(added.status, 200, added.text.slice(0, 300));

        const suspended = await eventsOf({ clientId: app.id, kind: 'client.credentials_revoked' });
        assert.equal(suspended.length, 1);
        assert.deepEqual(suspended[0]!.data, { reason: 'password_reset', secrets_deleted: 1, api_keys_revoked: 1, keys_removed: true });
        assert.equal(suspended[0]!.userId, account.id);
        const revoked = await eventsOf({ clientId: app.id, kind: 'grant.revoked' });
        assert.deepEqual(revoked.map((event) => [event.userId, event.data.reason]), [[other.id, 'password_reset']]);
        const [reset] = await eventsOf({ userId: account.id, kind: 'user.password_reset' });
        assert.deepEqual(reset?.data, { by: 'email', sessions_ended: 1, grants_revoked: 0, applications_suspended: 1, address: '127.0.0.1' });
      });

      it('is what the address’s owner is offered on following the verification link the account was sent: the link verifies nothing for them, and the reset then takes the account back', async () => {
        // The attacker signs up with the victim's address and password of their own, and keeps a session and a grant.
        const victim = nextEmail('victim');
        const attacker = await signUp(victim);
        const account = (await server.gatehouse.storage.users.findByEmail(victim))!;
        const app = await applicationOf(account.id);

        // The victim receives the verification mail and follows its link, signed in to nothing.
        const owner = new HttpBrowser();
        const followed = await owner.request(verifyLinkIn(mailsTo(victim).at(-1)!));
        assert.equal(followed.status, 303);
        const page = await owner.request(url('/email/verify'));
        assert.equal(page.status, 200);
        assert.match(page.text, /Sign in to confirm your email address/);
        assert.doesNotMatch(page.text, /action="\/email\/verify"/);
        const login = await owner.request(url('/login'));
        const pressed = await owner.request(url('/email/verify'), { form: { csrf: hiddenField(login.text, 'csrf') } });
        assert.equal(pressed.status, 403);
        assert.equal((await server.gatehouse.storage.users.findById(account.id))!.emailVerified, false, 'the account whose password the attacker holds stays unverified');
        assert.deepEqual(await eventsOf({ userId: account.id, kind: 'user.email_verified' }), []);

        // The page's "Did you not create this account? Reset its password" leads to the reset, which takes the account back.
        assert.match(page.text, /Did you not create this account\?/);
        assert.match(page.text, /<a href="\/password\/forgot">Reset its password<\/a>/);
        const done = await resetWithLink(victim);
        assert.equal(done.location, '/login?reset=done&developer=suspended');
        assert.equal((await attacker.request(url('/account'))).status, 302, 'the attacker’s session ended');
        assert.equal((await clientCredentials(app.id, app.secret)).status, 401, 'the application’s secret stopped working');
        assert.equal((await server.gatehouse.storage.users.findById(account.id))!.emailVerified, true, 'the reset proved the address');
      });

      it('leaves the applications of an account whose address was verified before the reset as they are', async () => {
        const email = nextEmail('verified');
        await verifyWithLink(email, await signUp(email));
        const account = (await server.gatehouse.storage.users.findByEmail(email))!;
        const app = await applicationOf(account.id);
        const done = await resetWithLink(email);
        assert.equal(done.location, '/login?reset=done');
        assert.equal((await clientCredentials(app.id, app.secret)).status, 200);
        assert.deepEqual(await credentialsOf(app.id), { secrets: 1, liveKeys: 0, jwks: null });
        assert.deepEqual(await eventsOf({ clientId: app.id, kind: 'client.credentials_revoked' }), []);
      });
    });
  });
}
