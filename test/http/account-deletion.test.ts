import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setUserDisabled } from '../../src/core/users.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * A person deletes their own account from its page (GDPR Art. 17, as Keycloak's account console and
 * Auth0 offer it): with their password again, counted as a sign-in guess, and an explicit
 * confirmation. The deletion is the operator's: sessions, grants and the applications the person
 * registered in the developer portal go with it. A refused request changes nothing.
 */

const PASSWORD = 'correct horse battery staple';
const MAX_FAILURES_PER_ACCOUNT = 3;

for (const dialect of DIALECTS) {
  describe(`a person deleting their own account (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mobile: { id: string; secret: string };
    let counter = 0;

    before(async () => {
      server = await startTestServer(dialect, { config: { login: { maxFailuresPerAccount: MAX_FAILURES_PER_ACCOUNT, maxFailuresPerAddress: 1000, windowSeconds: 900 } } });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'objects:read'], firstParty: true });
    });
    after(() => server.close());

    const aUser = () => server.user(`leaver-${++counter}-${dialect}@example.com`, PASSWORD);
    const signedIn = (email: string) => signedInBrowser(server.url, email, PASSWORD);
    const passwordGrant = (client: { id: string; secret: string }, email: string) =>
      post(`${server.url}/token`, { grant_type: 'password', client_id: client.id, client_secret: client.secret, username: email, password: PASSWORD });
    const refresh = (client: { id: string; secret: string }, token: string) =>
      post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: client.id, client_secret: client.secret, refresh_token: token });
    const clientCredentials = (client: { id: string; secret: string }) =>
      post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'objects:read' }, { headers: { authorization: basic(client.id, client.secret) } });
    /** Posts the deletion form from its page, with that page's CSRF token unless `form` says otherwise. */
    const deleteAccount = async (browser: HttpBrowser, form: Record<string, string> | [string, string][]) => {
      const page = await browser.request(`${server.url}/account/delete`);
      assert.equal(page.status, 200, page.text.slice(0, 300));
      const csrf: [string, string] = ['csrf', hiddenField(page.text, 'csrf')];
      return browser.request(`${server.url}/account/delete`, { form: Array.isArray(form) ? [csrf, ...form] : { [csrf[0]]: csrf[1], ...form } });
    };
    const isSignedIn = async (browser: HttpBrowser) => (await browser.request(`${server.url}/account`)).status === 200;
    const signIn = async (email: string, password = PASSWORD) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };
    const fieldError = (html: string, id: string) => new RegExp(`<p class="field-error" id="${id}-error">([^<]*)<`).exec(html)?.[1];

    it('says what goes with the account, naming the applications the person registered', async () => {
      const plain = await aUser();
      const page = await (await signedIn(plain.email)).request(`${server.url}/account/delete`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get('cache-control'), 'no-store');
      assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      assert.match(page.text, /cannot be undone/);
      assert.match(page.text, /signed out/);
      assert.match(page.text, /access you gave applications is withdrawn/);
      assert.doesNotMatch(page.text, /developer portal/, 'a person with no applications is not told of any');
      assert.match(page.text, /<label for="password">/);
      assert.match(page.text, /<label class="check" for="confirm"><input id="confirm" type="checkbox" name="confirm" value="delete" required/);
      assert.match((await (await signedIn(plain.email)).request(`${server.url}/account`)).text, /href="\/account\/delete"/, 'the account page leads there');

      const developer = await aUser();
      await server.client({ name: 'Dev <tool>', ownerUserId: developer.id });
      await server.client({ name: 'Second tool', ownerUserId: developer.id });
      const listed = await (await signedIn(developer.email)).request(`${server.url}/account/delete`);
      assert.match(listed.text, /The 2 applications you manage in the developer portal, with their client secrets and API keys/);
      assert.match(listed.text, /<strong>Dev &lt;tool&gt;<\/strong>/);
      assert.match(listed.text, /<strong>Second tool<\/strong>/);
    });

    it('deletes the account with its sessions, grants and portal applications, signs the browser out and records it', async () => {
      const developer = await aUser();
      const customer = await aUser();
      const tool = await server.client({ name: 'Dev tool', grantTypes: ['client_credentials', 'password', 'refresh_token'], scopes: ['objects:read'], ownerUserId: developer.id, firstParty: true });
      const mine = await passwordGrant(mobile, developer.email);
      const customers = await passwordGrant(tool, customer.email);
      assert.equal(mine.status, 200);
      assert.equal(customers.status, 200);
      assert.equal((await clientCredentials(tool)).status, 200);
      const here = await signedIn(developer.email);
      const elsewhere = await signedIn(developer.email);

      const deleted = await deleteAccount(here, { password: PASSWORD, confirm: 'delete' });
      assert.equal(deleted.status, 200, deleted.text.slice(0, 500));
      assert.match(deleted.text, /Your account was deleted/);
      assert.match(deleted.text, /nor the application you managed in the developer portal/);
      assert.ok(
        deleted.headers.getSetCookie().some((cookie) => /^gatehouse_session=;/.test(cookie) && /expires=Thu, 01 Jan 1970/i.test(cookie)),
        `the session cookie is cleared: ${deleted.headers.getSetCookie().join(' | ')}`,
      );

      assert.equal(await server.gatehouse.storage.users.findById(developer.id), undefined);
      assert.equal(await isSignedIn(here), false);
      assert.equal(await isSignedIn(elsewhere), false, 'signed out everywhere');
      assert.equal((await signIn(developer.email)).status, 401);
      const refused = await refresh(mobile, mine.body.refresh_token);
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error, 'invalid_grant', 'the refresh token of an application the person used is refused');
      assert.equal((await clientCredentials(tool)).status, 401, 'their application’s secret no longer works');
      assert.equal((await refresh(tool, customers.body.refresh_token)).status, 401, 'nor the access their application held');
      assert.equal(await server.gatehouse.storage.clients.find(tool.id), undefined);
      assert.ok(await server.gatehouse.storage.users.findById(customer.id), 'other people stay');
      assert.equal((await refresh(mobile, (await passwordGrant(mobile, customer.email)).body.refresh_token)).status, 200);

      const [event, ...more] = await eventsOf(developer.id, 'user.deleted');
      assert.equal(more.length, 0);
      assert.equal(event?.outcome, 'success');
      assert.deepEqual(event.data, { by: 'self', client_ids: [tool.id], address: '127.0.0.1' });
      assert.doesNotMatch(JSON.stringify(event), /horse/);
    });

    it('refuses a wrong password with the message on the field, 400, recording it and changing nothing', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const token = await passwordGrant(mobile, user.email);
      const before = await server.gatehouse.storage.users.findById(user.id);
      const refused = await deleteAccount(here, { password: 'not the password', confirm: 'delete' });
      assert.equal(refused.status, 400);
      assert.equal(fieldError(refused.text, 'password'), 'The password is not right.');
      assert.match(refused.text, /<input id="password"[^>]* autofocus aria-invalid="true" aria-describedby="password-error">/);
      assert.match(refused.text, /role="alert">Please correct the fields marked below/);
      assert.doesNotMatch(refused.text, /not the password/);
      assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
      assert.equal(await isSignedIn(here), true);
      assert.equal((await refresh(mobile, token.body.refresh_token)).status, 200);
      const [event] = await eventsOf(user.id, 'user.deletion_failed');
      assert.equal(event?.outcome, 'failure');
      assert.deepEqual(event.data, { address: '127.0.0.1' });
      assert.deepEqual(await eventsOf(user.id, 'user.deleted'), []);
    });

    it('refuses a form without the confirmation, or without a password, before trying the password', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const before = await server.gatehouse.storage.users.findById(user.id);
      const withConfirmation = (...confirm: string[]): [string, string][] => [['password', PASSWORD], ...confirm.map((value): [string, string] => ['confirm', value])];
      for (const form of [withConfirmation(), withConfirmation('yes'), withConfirmation('delete', 'delete')]) {
        const refused = await deleteAccount(here, form);
        const confirm = JSON.stringify(form);
        assert.equal(refused.status, 400, String(confirm));
        assert.equal(fieldError(refused.text, 'confirm'), 'Tick the box to confirm that you want your account deleted.');
        assert.match(refused.text, /<input id="confirm"[^>]* autofocus aria-invalid="true"/);
      }
      const both = await deleteAccount(here, {});
      assert.equal(both.status, 400);
      assert.equal(fieldError(both.text, 'password'), 'Enter your password.');
      assert.ok(fieldError(both.text, 'confirm'));
      assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
      // None of these took an attempt from the account.
      for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) await deleteAccount(here, { password: PASSWORD });
      assert.equal((await signIn(user.email)).status, 303);
      assert.deepEqual(await eventsOf(user.id, 'user.deletion_failed'), []);
    });

    it('refuses a form without its CSRF token, or another browser’s, changing nothing', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const elsewhere = await signedIn(user.email);
      for (const csrf of [undefined, 'x'.repeat(43), hiddenField((await elsewhere.request(`${server.url}/account/delete`)).text, 'csrf')]) {
        const answer = await here.request(`${server.url}/account/delete`, { form: { ...(csrf ? { csrf } : {}), password: PASSWORD, confirm: 'delete' } });
        assert.equal(answer.status, 403);
        assert.match(answer.text, /session expired/);
      }
      assert.ok(await server.gatehouse.storage.users.findById(user.id));
      assert.equal(await isSignedIn(here), true);
      assert.equal(await isSignedIn(elsewhere), true);
    });

    it('counts wrong passwords as sign-in guesses, shared with the password change, and answers 429 with Retry-After past the limit', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const form = await here.request(`${server.url}/account/password`);
      const wrongCurrent = await here.request(`${server.url}/account/password`, {
        form: { csrf: hiddenField(form.text, 'csrf'), current_password: 'a guess', new_password: 'another passphrase', confirm_password: 'another passphrase' },
      });
      assert.equal(wrongCurrent.status, 400);
      for (let i = 1; i < MAX_FAILURES_PER_ACCOUNT; i++) assert.equal((await deleteAccount(here, { password: `guess ${i}`, confirm: 'delete' })).status, 400);
      const throttled = await deleteAccount(here, { password: PASSWORD, confirm: 'delete' });
      assert.equal(throttled.status, 429, throttled.text.slice(0, 300));
      assert.match(throttled.headers.get('retry-after') ?? '', /^\d+$/);
      assert.match(throttled.text, /Too many attempts/);
      assert.ok(await server.gatehouse.storage.users.findById(user.id), 'the right password, throttled, deletes nothing');
      assert.equal((await signIn(user.email)).status, 429, 'the sign-in page shares the budget');
      const [event] = await eventsOf(user.id, 'login.throttled');
      assert.equal(event?.data.via, 'account_page');
    });

    it('deletes nothing for a disabled account, nor one disabled while its password was being checked', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const page = await here.request(`${server.url}/account/delete`);
      await setUserDisabled(server.gatehouse, (await server.gatehouse.storage.users.findById(user.id))!, true, server.gatehouse.clock());
      const posted = await here.request(`${server.url}/account/delete`, { form: { csrf: hiddenField(page.text, 'csrf'), password: PASSWORD, confirm: 'delete' } });
      assert.equal(posted.status, 303);
      assert.equal(posted.location, '/login?next=%2Faccount%2Fdelete');
      assert.ok(await server.gatehouse.storage.users.findById(user.id));

      const raced = await aUser();
      const browser = await signedIn(raced.email);
      const form = await browser.request(`${server.url}/account/delete`);
      const { login } = server.gatehouse;
      const confirmPassword = login.confirmPassword;
      // An operator disables the account after its password is checked, before it is deleted.
      login.confirmPassword = async (...args) => {
        const checked = await confirmPassword.apply(login, args);
        await setUserDisabled(server.gatehouse, (await server.gatehouse.storage.users.findById(raced.id))!, true, server.gatehouse.clock());
        return checked;
      };
      try {
        const refused = await browser.request(`${server.url}/account/delete`, { form: { csrf: hiddenField(form.text, 'csrf'), password: PASSWORD, confirm: 'delete' } });
        assert.equal(refused.status, 400, refused.text.slice(0, 300));
      } finally {
        login.confirmPassword = confirmPassword;
      }
      const kept = await server.gatehouse.storage.users.findById(raced.id);
      assert.ok(kept?.disabledAt, 'the account stays, disabled, for the operator to look into');
      assert.deepEqual(await eventsOf(raced.id, 'user.deleted'), []);
    });

    it('answers any form with a page, never a 5xx, and sends a signed-out person to sign in', async () => {
      const user = await aUser();
      const here = await signedIn(user.email);
      const page = await here.request(`${server.url}/account/delete`);
      const csrf = hiddenField(page.text, 'csrf');
      const forms: [string, string][][] = [
        [['csrf', csrf], ['password', PASSWORD], ['password', PASSWORD], ['confirm', 'delete']],
        [['csrf', csrf], ['csrf', csrf], ['password', PASSWORD], ['confirm', 'delete']],
        [['csrf', csrf], ['password', 'p'.repeat(100_000)], ['confirm', 'delete']],
        [['csrf', csrf], ['password', PASSWORD], ['confirm', 'x'.repeat(100_000)]],
        [['csrf', csrf], ['password', '\u0000'], ['confirm', 'delete']],
        [['csrf', csrf], ['password', 'p'.repeat(2_000_000)], ['confirm', 'delete']],
      ];
      for (const form of forms) {
        const answer = await here.request(`${server.url}/account/delete`, { form });
        assert.ok(answer.status >= 400 && answer.status < 500, `${answer.status} for ${JSON.stringify(form).slice(0, 80)}`);
        assert.match(answer.headers.get('content-type') ?? '', /^text\/html/);
      }
      for (const body of ['', '%', 'password=' + '%FF'.repeat(10)]) {
        const cookie = [...here.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
        const answer = await fetch(`${server.url}/account/delete`, { method: 'POST', body, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, redirect: 'manual' });
        assert.ok(answer.status >= 400 && answer.status < 500, `${answer.status} for ${body}`);
      }
      assert.ok(await server.gatehouse.storage.users.findById(user.id));
      assert.equal(await isSignedIn(here), true);

      const stranger = new HttpBrowser();
      const shown = await stranger.request(`${server.url}/account/delete`);
      assert.equal(shown.status, 302);
      assert.equal(shown.location, '/login?next=%2Faccount%2Fdelete');
      const login = await stranger.request(`${server.url}/login`);
      const posted = await stranger.request(`${server.url}/account/delete`, { form: { csrf: hiddenField(login.text, 'csrf'), password: PASSWORD, confirm: 'delete' } });
      assert.equal(posted.status, 303);
      assert.equal(posted.location, '/login?next=%2Faccount%2Fdelete');
    });
  });
}
