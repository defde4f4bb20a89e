import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { resetUserPassword } from '../../src/core/users.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * What a person changes about their own account from its page: their password (the current one
 * checked and throttled as a sign-in is), their name (OpenID Connect's `name` claim), and which of
 * their browsers stay signed in.
 */

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a new and better passphrase';
const MAX_FAILURES_PER_ACCOUNT = 3;

/** The text of the element a field's aria-describedby names, or undefined when it names none. */
function descriptionOf(html: string, id: string): string | undefined {
  const field = new RegExp(`<input id="${id}"[^>]*>`).exec(html)?.[0];
  assert.ok(field, `no field ${id}`);
  const described = /aria-describedby="([^"]+)"/.exec(field)?.[1];
  return described ? new RegExp(`id="${described}">([^<]*)<`).exec(html)?.[1] : undefined;
}

const autofocused = (html: string): string | undefined => /<input id="([^"]+)"[^>]* autofocus/.exec(html)?.[1];

for (const dialect of DIALECTS) {
  describe(`a person's own account settings (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mobile: { id: string; secret: string };
    let counter = 0;
    /** Seconds the server's clock is ahead of the system's. */
    let ahead = 0;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => Math.floor(Date.now() / 1000) + ahead, config: { login: { maxFailuresPerAccount: MAX_FAILURES_PER_ACCOUNT, maxFailuresPerAddress: 1000, windowSeconds: 900 } } });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'profile', 'objects:read'], firstParty: true });
    });
    after(() => server.close());

    /** A user of their own for each test: failed attempts count against the account. */
    const aUser = async () => server.user(`person-${++counter}-${dialect}@example.com`, PASSWORD);
    const signIn = async (email: string, password = PASSWORD) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const answer = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
      return { browser, answer };
    };
    const signedIn = (email: string) => signedInBrowser(server.url, email, PASSWORD);
    /** Posts `form` from the page at `page` with that page's CSRF token. */
    const submit = async (browser: HttpBrowser, page: string, action: string, form: Record<string, string>) => {
      const shown = await browser.request(`${server.url}${page}`);
      assert.equal(shown.status, 200, shown.text.slice(0, 300));
      return browser.request(`${server.url}${action}`, { form: { csrf: hiddenField(shown.text, 'csrf'), ...form } });
    };
    const changePassword = (browser: HttpBrowser, current: string, next: string, confirmation = next) =>
      submit(browser, '/account/password', '/account/password', { current_password: current, new_password: next, confirm_password: confirmation });
    const isSignedIn = async (browser: HttpBrowser) => {
      const page = await browser.request(`${server.url}/account`);
      assert.ok(page.status === 200 || page.status === 302, `status ${page.status}`);
      return page.status === 200;
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    describe('password', () => {
      it('changes the password with the current one, signs out every other browser and keeps this one, and records it', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        const alsoElsewhere = await signedIn(user.email);
        const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD });
        assert.equal(token.status, 200);

        const page = await here.request(`${server.url}/account/password`);
        assert.equal(page.headers.get('cache-control'), 'no-store');
        assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
        assert.equal(autofocused(page.text), 'current-password');
        const before = here.cookies.get('gatehouse_session');
        const changed = await changePassword(here, PASSWORD, NEW_PASSWORD);
        assert.equal(changed.status, 303, changed.text.slice(0, 300));
        assert.equal(changed.location, '/account?changed=password');
        const account = await here.request(`${server.url}/account?changed=password`);
        assert.equal(account.status, 200);
        assert.match(account.text, /Your password was changed/);

        assert.equal(await isSignedIn(here), true, 'this browser stays signed in');
        // OWASP's Session Management cheat sheet: a new session id after a password change, so one
        // an attacker may have seen (the reason to change a password) is worth nothing.
        assert.ok(here.cookies.get('gatehouse_session') && here.cookies.get('gatehouse_session') !== before, 'in a new session');
        const stolen = new HttpBrowser();
        stolen.cookies.set('gatehouse_session', before!);
        assert.equal(await isSignedIn(stolen), false, 'the session the password was changed in has ended');
        assert.equal(await isSignedIn(elsewhere), false, 'another browser is signed out');
        assert.equal(await isSignedIn(alsoElsewhere), false);
        assert.equal((await signIn(user.email, PASSWORD)).answer.status, 401, 'the old password is refused');
        assert.equal((await signIn(user.email, NEW_PASSWORD)).answer.status, 303);
        const stored = await server.gatehouse.storage.users.findById(user.id);
        assert.match(stored!.passwordHash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        const refreshed = await post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: mobile.id, client_secret: mobile.secret, refresh_token: token.body.refresh_token });
        assert.equal(refreshed.status, 200, 'grants to applications stay, as at a reset by an operator');

        const [event] = await eventsOf(user.id, 'user.password_changed');
        assert.ok(event, 'audited');
        assert.equal(event.outcome, 'success');
        assert.deepEqual(event.data, { other_sessions_ended: 2, address: '127.0.0.1' });
        assert.doesNotMatch(JSON.stringify(event), /passphrase|horse/);
      });

      it('leaves a password an operator set while the current one was being checked, and refuses the change', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const page = await here.request(`${server.url}/account/password`);
        assert.equal(page.status, 200);
        const { login } = server.gatehouse;
        const confirmPassword = login.confirmPassword;
        // The operator's reset lands after the current password is checked, before the new one is written.
        login.confirmPassword = async (...args) => {
          const checked = await confirmPassword.apply(login, args);
          assert.equal(await resetUserPassword(server.gatehouse, user.id, 'the operator chose this one', server.gatehouse.clock(), { via: 'cli' }), true);
          return checked;
        };
        try {
          const refused = await here.request(`${server.url}/account/password`, {
            form: { csrf: hiddenField(page.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD },
          });
          assert.equal(refused.status, 400, refused.text.slice(0, 300));
          assert.equal(descriptionOf(refused.text, 'current-password'), 'The current password is not right.');
        } finally {
          login.confirmPassword = confirmPassword;
        }
        assert.equal((await signIn(user.email, NEW_PASSWORD)).answer.status, 401, "the person's new password did not replace the operator's");
        assert.equal((await signIn(user.email, 'the operator chose this one')).answer.status, 303);
      });

      it('refuses a wrong current password with the message on that field, 400, changing nothing', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);

        const refused = await changePassword(here, 'not the password', NEW_PASSWORD);
        assert.equal(refused.status, 400);
        assert.equal(descriptionOf(refused.text, 'current-password'), 'The current password is not right.');
        assert.equal(autofocused(refused.text), 'current-password');
        assert.doesNotMatch(refused.text, /not the password|better passphrase/, 'no password is sent back');
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
        assert.equal(await isSignedIn(elsewhere), true);
        assert.equal(await isSignedIn(here), true);
        const [event] = await eventsOf(user.id, 'user.password_change_failed');
        assert.equal(event?.outcome, 'failure');
        assert.deepEqual(event?.data, { address: '127.0.0.1' }, 'with the address the guess came from');
      });

      it('refuses a weak new password, or one whose confirmation differs, before trying the current one', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);

        // Four emoji are 8 UTF-16 units, and 4 characters: counted as at sign-up.
        const weak = await changePassword(here, PASSWORD, '😀😀😀😀');
        assert.equal(weak.status, 400);
        assert.equal(descriptionOf(weak.text, 'new-password'), 'The password must be at least 8 characters long.');
        assert.equal(autofocused(weak.text), 'new-password');
        const mismatch = await changePassword(here, PASSWORD, NEW_PASSWORD, `${NEW_PASSWORD}!`);
        assert.equal(mismatch.status, 400);
        assert.equal(descriptionOf(mismatch.text, 'confirm-password'), 'The new password and its confirmation are not the same.');
        assert.equal(descriptionOf(mismatch.text, 'new-password'), undefined);
        const long = await changePassword(here, PASSWORD, 'x'.repeat(1025));
        assert.equal(descriptionOf(long.text, 'new-password'), 'The password is longer than 1024 characters.');
        // Every problem at once, the focus on the first.
        const both = await changePassword(here, '', 'short');
        assert.equal(both.status, 400);
        assert.equal(descriptionOf(both.text, 'current-password'), 'Enter your current password.');
        assert.equal(descriptionOf(both.text, 'new-password'), 'The password must be at least 8 characters long.');
        assert.equal(autofocused(both.text), 'current-password');

        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
        assert.equal(await isSignedIn(elsewhere), true);
        // None of these took an attempt from the account: a sign-in after the limit's worth still works.
        for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) await changePassword(here, PASSWORD, 'short');
        assert.equal((await signIn(user.email)).answer.status, 303);
      });

      it('counts wrong current passwords against the account as sign-in guesses, and answers 429 with Retry-After past the limit', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);
        for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) assert.equal((await changePassword(here, `guess ${i} of many`, NEW_PASSWORD)).status, 400);
        const throttled = await changePassword(here, PASSWORD, NEW_PASSWORD);
        assert.equal(throttled.status, 429, throttled.text.slice(0, 300));
        assert.match(throttled.headers.get('retry-after') ?? '', /^\d+$/);
        assert.match(throttled.text, /Too many attempts/);
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before, 'the right password, throttled, changes nothing');
        assert.equal((await signIn(user.email)).answer.status, 429, 'the sign-in page shares the budget');
        assert.equal((await signIn(user.email, NEW_PASSWORD)).answer.status, 429);
        const stored = await server.gatehouse.storage.users.findById(user.id);
        assert.equal((await server.gatehouse.login.confirmPassword(stored!, PASSWORD, '198.51.100.7', server.gatehouse.clock())).outcome, 'throttled');
      });

      it('counts failed sign-ins against the change of password, and a right current password clears the account’s failures', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT - 1; i++) assert.equal((await signIn(user.email, 'wrong')).answer.status, 401);
        assert.equal((await changePassword(here, PASSWORD, NEW_PASSWORD)).status, 303);
        for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT - 1; i++) assert.equal((await signIn(user.email, 'wrong')).answer.status, 401);
        assert.equal((await signIn(user.email, NEW_PASSWORD)).answer.status, 303, 'the budget started again');
      });

      it('refuses a form without its CSRF token, changing nothing', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);
        for (const csrf of [undefined, 'x'.repeat(43)]) {
          const answer = await here.request(`${server.url}/account/password`, { form: { ...(csrf ? { csrf } : {}), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD } });
          assert.equal(answer.status, 403);
          assert.match(answer.text, /session expired/);
        }
        // A token of another browser's page.
        const other = await elsewhere.request(`${server.url}/account/password`);
        const foreign = await here.request(`${server.url}/account/password`, { form: { csrf: hiddenField(other.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD } });
        assert.equal(foreign.status, 403);
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
        assert.equal(await isSignedIn(elsewhere), true);
      });

      it('sends a signed-out person to sign in, and back to the form', async () => {
        const browser = new HttpBrowser();
        const page = await browser.request(`${server.url}/account/password`);
        assert.equal(page.status, 302);
        assert.equal(page.location, '/login?next=%2Faccount%2Fpassword');
        const form = await browser.request(`${server.url}/login`);
        const posted = await browser.request(`${server.url}/account/password`, { form: { csrf: hiddenField(form.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD } });
        assert.equal(posted.status, 303);
        assert.equal(posted.location, '/login?next=%2Faccount%2Fpassword');
        const login = await browser.request(`${server.url}${page.location}`);
        assert.equal(hiddenField(login.text, 'next'), '/account/password');
      });
    });

    describe('name', () => {
      it('changes the name, which userinfo answers at once, with the update time', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD, scope: 'openid profile' });
        assert.equal(token.status, 200, JSON.stringify(token.body));
        const before = (await server.gatehouse.storage.users.findById(user.id))!;
        ahead += 5;

        const page = await here.request(`${server.url}/account/name`);
        assert.equal(page.status, 200);
        assert.equal(page.headers.get('cache-control'), 'no-store');
        const changed = await submit(here, '/account/name', '/account/name', { name: '  Grace <b>Hopper</b> ' });
        assert.equal(changed.status, 303);
        assert.equal(changed.location, '/account?changed=name');
        const stored = (await server.gatehouse.storage.users.findById(user.id))!;
        assert.equal(stored.name, 'Grace <b>Hopper</b>');
        assert.ok(stored.updatedAt >= before.updatedAt + 5, 'updated_at moves');
        const account = await here.request(`${server.url}/account?changed=name`);
        assert.match(account.text, /Grace &lt;b&gt;Hopper&lt;\/b&gt;/, 'escaped');
        assert.doesNotMatch(account.text, /<b>Hopper/);
        const form = await here.request(`${server.url}/account/name`);
        assert.match(form.text, /value="Grace &lt;b&gt;Hopper&lt;\/b&gt;"/);

        const userinfo = (await (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token.body.access_token}` } })).json()) as Record<string, unknown>;
        assert.equal(userinfo.name, 'Grace <b>Hopper</b>');
        assert.equal(userinfo.updated_at, stored.updatedAt);
        const [event] = await eventsOf(user.id, 'user.name_changed');
        assert.equal(event?.outcome, 'success');
      });

      it('refuses a name over 200 characters with the message on the field, keeping what was typed, changing nothing', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);
        const long = 'N'.repeat(201);
        const refused = await submit(here, '/account/name', '/account/name', { name: long });
        assert.equal(refused.status, 400);
        assert.equal(descriptionOf(refused.text, 'name'), 'The name is longer than 200 characters.');
        assert.match(refused.text, new RegExp(`value="${long}"`));
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
        assert.equal((await submit(here, '/account/name', '/account/name', { name: ` ${'N'.repeat(200)} ` })).status, 303, 'surrounding spaces do not count');
      });

      it('refuses a name with a control or invisible formatting character with the message on the field, changing nothing', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);
        const refused = await submit(here, '/account/name', '/account/name', { name: 'Grace\u202eesraveR' });
        assert.equal(refused.status, 400);
        assert.match(descriptionOf(refused.text, 'name') ?? '', /^The name contains an invisible or control character \(U\+202E\)/);
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);
      });

      it('refuses a form without its CSRF token, and sends a signed-out person to sign in', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const before = await server.gatehouse.storage.users.findById(user.id);
        const refused = await here.request(`${server.url}/account/name`, { form: { name: 'Mallory' } });
        assert.equal(refused.status, 403);
        assert.match(refused.text, /value="Mallory"/);
        assert.deepEqual(await server.gatehouse.storage.users.findById(user.id), before);

        const stranger = new HttpBrowser();
        const form = await stranger.request(`${server.url}/login`);
        const posted = await stranger.request(`${server.url}/account/name`, { form: { csrf: hiddenField(form.text, 'csrf'), name: 'Mallory' } });
        assert.equal(posted.status, 303);
        assert.equal(posted.location, '/login?next=%2Faccount%2Fname');
      });
    });

    describe('applications', () => {
      const refresh = (token: string) => post(`${server.url}/token`, { grant_type: 'refresh_token', client_id: mobile.id, client_secret: mobile.secret, refresh_token: token });

      it('lists a first-party application that holds access without a consent, which the person withdraws there: its refresh tokens stop working', async () => {
        const user = await aUser();
        const someoneElse = await aUser();
        const mine = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD });
        const theirs = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: someoneElse.email, password: PASSWORD });
        assert.equal(mine.status, 200);
        assert.equal(theirs.status, 200);
        const here = await signedIn(user.email);

        const account = await here.request(`${server.url}/account`);
        assert.match(account.text, /<strong>Mobile app<\/strong>/, 'listed, though the person was never asked for consent');
        assert.match(account.text, new RegExp(`name="client_id" value="${mobile.id}"`));
        const withdrawn = await here.request(`${server.url}/account/applications/withdraw`, { form: { csrf: hiddenField(account.text, 'csrf'), client_id: mobile.id } });
        assert.equal(withdrawn.status, 303);
        assert.equal((await refresh(mine.body.refresh_token)).status, 400, 'its refresh token is revoked');
        assert.equal((await refresh(theirs.body.refresh_token)).status, 200, 'another person’s stays');
        assert.doesNotMatch((await here.request(`${server.url}/account`)).text, /<strong>Mobile app<\/strong>/, 'no longer listed');
      });

      it('does not list an application whose access has ended, nor one that impersonates the person', async () => {
        const user = await aUser();
        const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD });
        assert.equal(token.status, 200);
        const grants = await server.gatehouse.storage.grants.list({ userId: user.id });
        for (const grant of grants) await server.gatehouse.storage.grants.revoke(grant.id, server.gatehouse.clock());
        const backOffice = await server.client({ name: 'Support desk', grantTypes: ['client_credentials'], scopes: ['objects:read'], allowImpersonation: true });
        const now = server.gatehouse.clock();
        await server.gatehouse.storage.grants.create({ id: randomUUID(), clientId: backOffice.id, userId: user.id, kind: 'impersonation', scopes: ['objects:read'], authTime: null, createdAt: now, expiresAt: now + 3600, revokedAt: null });
        const account = (await (await signedIn(user.email)).request(`${server.url}/account`)).text;
        assert.doesNotMatch(account, /Mobile app/);
        assert.doesNotMatch(account, /Support desk/);
        assert.match(account, /You have not authorized any application/);
      });
    });

    describe('other browsers', () => {
      it('signs out every other browser of the person and keeps this one, leaving other people’s alone', async () => {
        const user = await aUser();
        const someoneElse = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        const theirs = await signedIn(someoneElse.email);

        const answer = await submit(here, '/account', '/account/sign-out-elsewhere', {});
        assert.equal(answer.status, 303);
        assert.equal(answer.location, '/account?signed_out=elsewhere');
        assert.equal(await isSignedIn(here), true);
        assert.equal(await isSignedIn(elsewhere), false);
        assert.equal(await isSignedIn(theirs), true);
        const account = await here.request(`${server.url}/account?signed_out=elsewhere`);
        assert.match(account.text, /Every other browser that was signed in to your account is signed out/);
        const [event] = await eventsOf(user.id, 'user.signed_out_elsewhere');
        assert.deepEqual(event?.data, { sessions_ended: 1 });
      });

      it('refuses a form without its CSRF token, answers a GET with 405, and sends a signed-out person to sign in', async () => {
        const user = await aUser();
        const here = await signedIn(user.email);
        const elsewhere = await signedIn(user.email);
        assert.equal((await here.request(`${server.url}/account/sign-out-elsewhere`, { form: {} })).status, 403);
        assert.equal(await isSignedIn(elsewhere), true);

        const get = await here.request(`${server.url}/account/sign-out-elsewhere`);
        assert.equal(get.status, 405);
        assert.equal(get.headers.get('allow'), 'POST');
        assert.match(get.headers.get('content-type') ?? '', /^text\/html/);
        assert.equal(await isSignedIn(elsewhere), true);

        const stranger = new HttpBrowser();
        const form = await stranger.request(`${server.url}/login`);
        const posted = await stranger.request(`${server.url}/account/sign-out-elsewhere`, { form: { csrf: hiddenField(form.text, 'csrf') } });
        assert.equal(posted.status, 303);
        assert.equal(posted.location, '/login?next=%2Faccount');
      });
    });
  });
}
