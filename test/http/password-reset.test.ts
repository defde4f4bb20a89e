import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { setUserDisabled } from '../../src/core/users.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { resetLinkIn, startMailServer, verifyLinkIn, type TestMailServer } from '../support/smtp.ts';

/*
 * "Forgot your password?": a link by email, over real HTTP, to a real SMTP server. The answer never
 * tells whether an account exists; the link works once, for its lifetime, only while it is the
 * newest; a reset ends every session, and on an account whose address was not verified it takes
 * back every authorization given from the account (pre-account takeover: someone signed up with an
 * address that is not theirs); without mail settings the feature is not there at all.
 */

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a new and better passphrase';
const TTL = 1800;
const PER_ACCOUNT = 3;
const PER_ADDRESS = 12;
const CALLBACK = 'https://app.example/callback';

for (const dialect of DIALECTS) {
  describe(`password reset by email (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let mobile: { id: string; secret: string };
    let admin: { id: string; secret: string };
    /** A third-party application (consent asked), and an API that introspects tokens. */
    let thirdParty: { id: string; secret: string };
    let api: { id: string; secret: string };
    let counter = 0;
    /** Seconds the server's clock is ahead of the system's. */
    let ahead = 0;

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => Math.floor(Date.now() / 1000) + ahead,
        env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' },
        config: { passwordReset: { tokenTtlSeconds: TTL, maxRequestsPerAccount: PER_ACCOUNT, maxRequestsPerAddress: PER_ADDRESS, windowSeconds: 3600 } },
      });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'objects:read'], firstParty: true });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
      thirdParty = await server.client({ name: 'Gallery of Models', grantTypes: ['authorization_code', 'refresh_token'], redirectUris: [CALLBACK], scopes: ['openid', 'objects:read'] });
      api = await server.client({ name: 'Platform API', grantTypes: ['client_credentials'], scopes: ['objects:read'], isResourceServer: true });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    /** Each test starts in a window of its own: the budgets of the address and accounts are fresh. */
    const freshWindow = () => {
      ahead += 3600;
    };
    const aUser = async () => server.user(`reset-${++counter}-${dialect}@example.com`, PASSWORD);
    const signIn = async (email: string, password = PASSWORD) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const answer = await browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
      return { browser, status: answer.status };
    };
    const isSignedIn = async (browser: HttpBrowser) => (await browser.request(`${server.url}/account`)).status === 200;
    /**
     * Asks for a link from the forgot-password page; the answer, once any mail it sends has gone, and
     * the page it redirects to (the forgot-password form again when it does not).
     */
    const askForLink = async (email: string, browser = new HttpBrowser()) => {
      const form = await browser.request(`${server.url}/password/forgot`);
      assert.equal(form.status, 200, form.text.slice(0, 300));
      const answer = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email } });
      await server.gatehouse.passwordResets.settled();
      const page = answer.location ? await browser.request(new URL(answer.location, server.url).toString()) : answer;
      return { ...answer, page };
    };
    const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email));
    const lastLinkTo = (email: string) => resetLinkIn(mailsTo(email).at(-1)!);
    /** Follows a link in a fresh browser to the new-password form; the browser and the form page. */
    const openLink = async (link: string, browser = new HttpBrowser()) => {
      const followed = await browser.request(link);
      return { browser, followed };
    };
    const setPassword = async (browser: HttpBrowser, next: string, confirmation = next) => {
      const form = await browser.request(`${server.url}/password/reset`);
      if (form.status !== 200) return form;
      return browser.request(`${server.url}/password/reset`, { form: { csrf: hiddenField(form.text, 'csrf'), new_password: next, confirm_password: confirmation } });
    };
    const hashOf = async (userId: string) => (await server.gatehouse.storage.users.findById(userId))!.passwordHash;
    /** Signs up through the page as `email`, with PASSWORD; the browser, signed in, once the verification mail has gone. */
    const signUp = async (email: string) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      const answer = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: '', password: PASSWORD } });
      await server.gatehouse.emailVerifications.settled();
      return { browser, answer };
    };
    /**
     * The code flow of the third-party application in the browser's session, consent given on the
     * page when it is asked for: the tokens, and whether consent was asked.
     */
    const authorize = async (browser: HttpBrowser) => {
      const query = new URLSearchParams({ response_type: 'code', client_id: thirdParty.id, redirect_uri: CALLBACK, scope: 'openid objects:read', state: 's' });
      let page = await browser.follow(`${server.url}/authorize?${query}`, server.url);
      const consentAsked = page.text.includes('name="decision"');
      if (consentAsked) {
        page = await browser.follow(`${server.url}/consent`, server.url, { form: { csrf: hiddenField(page.text, 'csrf'), request: hiddenField(page.text, 'request'), decision: 'allow' } });
      }
      const code = page.location === undefined ? null : new URL(page.location).searchParams.get('code');
      assert.ok(code, `a code: ${page.status} ${page.text.slice(0, 300)}`);
      const tokens = await post(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: CALLBACK }, { headers: { authorization: basic(thirdParty.id, thirdParty.secret) } });
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      return { tokens: tokens.body as { access_token: string; refresh_token: string }, consentAsked };
    };
    const passwordGrant = async (email: string) => {
      const tokens = await post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: email, password: PASSWORD });
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      return tokens.body as { access_token: string; refresh_token: string };
    };
    const refresh = (client: { id: string; secret: string }, refreshToken: string) =>
      post(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken }, { headers: { authorization: basic(client.id, client.secret) } });
    const introspect = async (token: string) => (await post(`${server.url}/introspect`, { token }, { headers: { authorization: basic(api.id, api.secret) } })).body as Record<string, unknown>;
    const userinfo = async (accessToken: string) => (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${accessToken}` } })).status;
    /** Asks for a link to `email` and sets NEW_PASSWORD with it, in a browser of its own; the answer. */
    const resetWithLink = async (email: string) => {
      await askForLink(email);
      return setPassword((await openLink(lastLinkTo(email))).browser, NEW_PASSWORD);
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    it('resets the password through the link in the mail: the old one no longer signs in, the new one does, every session ends', async () => {
      freshWindow();
      const user = await aUser();
      const here = await signedInBrowser(server.url, user.email, PASSWORD);
      const elsewhere = await signedInBrowser(server.url, user.email, PASSWORD);

      const login = await new HttpBrowser().request(`${server.url}/login`);
      assert.match(login.text, /<a href="\/password\/forgot">Forgot your password\?<\/a>/);
      const asked = await askForLink(user.email);
      assert.equal(asked.status, 303);
      assert.match(asked.page.text, /If an account with the address <strong>reset-\d+-\w+@example\.com<\/strong> exists, we sent a link/);

      const [message] = mailsTo(user.email);
      assert.ok(message, 'a mail was sent');
      assert.equal(mailsTo(user.email).length, 1);
      assert.equal(message.from, 'no-reply@gatehouse.example');
      assert.match(message.subject, /Reset your password/);
      assert.match(message.text, new RegExp(`the account ${user.email.replace(/\./g, '\\.')} at 127\\.0\\.0\\.1:\\d+`));
      assert.match(message.text, /If you did not ask for this, ignore this mail/);
      const link = resetLinkIn(message);
      assert.ok(link.startsWith(`${server.url}/password/reset?token=gate_pr_`), link);
      assert.ok(message.html.includes(`href="${link}"`), 'the HTML part links to it too');
      const token_ = new URL(link).searchParams.get('token')!;
      assert.equal(await countRows(server.database, 'password_resets'), 1);
      assert.ok(await server.gatehouse.storage.passwordResets.find(digestOf(token_)), 'stored by its digest');

      // The token leaves the address at once: into an HttpOnly cookie, and a redirect without it.
      const { browser, followed } = await openLink(link);
      assert.equal(followed.status, 303);
      assert.equal(followed.location, '/password/reset');
      assert.equal(followed.headers.get('referrer-policy'), 'no-referrer');
      assert.equal(followed.headers.get('cache-control'), 'no-store');
      const cookie = followed.headers.getSetCookie().find((line) => line.startsWith('gatehouse_reset='));
      assert.ok(cookie, 'the link is kept in a cookie');
      assert.match(cookie, /HttpOnly/i);
      assert.match(cookie, /SameSite=Lax/i);
      assert.match(cookie, new RegExp(`Max-Age=${TTL}`));

      const hashBefore = await hashOf(user.id);
      const mismatched = await setPassword(browser, NEW_PASSWORD, 'something else entirely');
      assert.equal(mismatched.status, 400);
      assert.match(mismatched.text, /The new password and its confirmation are not the same\./);
      const short = await setPassword(browser, 'short', 'short');
      assert.equal(short.status, 400);
      assert.match(short.text, /The password must be at least 8 characters long\./);
      assert.equal(await hashOf(user.id), hashBefore);
      assert.equal(await isSignedIn(here), true, 'a refused form changed nothing');

      const done = await setPassword(browser, NEW_PASSWORD);
      assert.equal(done.status, 303, done.text.slice(0, 300));
      assert.equal(done.location, '/login?reset=done');
      assert.ok(done.headers.getSetCookie().some((line) => line.startsWith('gatehouse_reset=;')), 'the cookie is cleared');
      const notice = await browser.request(`${server.url}/login?reset=done`);
      assert.match(notice.text, /Your password was changed, and every browser signed in to your account was signed out\./);
      assert.doesNotMatch(notice.text, /application/i, 'the account had authorized none');

      assert.equal(await isSignedIn(here), false);
      assert.equal(await isSignedIn(elsewhere), false);
      assert.equal((await signIn(user.email, PASSWORD)).status, 401, 'the old password is refused');
      assert.equal((await signIn(user.email, NEW_PASSWORD)).status, 303);
      assert.equal((await server.gatehouse.storage.users.findById(user.id))!.emailVerified, true, 'the link proved the address');

      await server.gatehouse.audit.flush();
      const [event] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.password_reset' });
      assert.ok(event, 'audited');
      assert.deepEqual(event.data, { by: 'email', sessions_ended: 2, grants_revoked: 0, address: '127.0.0.1' });
      const [verified] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.email_verified' });
      assert.deepEqual(verified?.data, { by: 'password_reset' });
      const [requested] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.password_reset_requested' });
      assert.equal(requested?.outcome, 'success');
      assert.doesNotMatch(JSON.stringify([event, requested]), /gate_pr_|passphrase/);
    });

    it('says on the new-password form whether the applications the account authorized keep their access: not when its address was not verified', async () => {
      freshWindow();
      const unverified = await aUser();
      const verified = await aUser();
      await server.gatehouse.storage.users.update(verified.id, { emailVerified: true }, server.gatehouse.clock(), { email: verified.email });
      for (const [user, keeps] of [[unverified, false], [verified, true]] as const) {
        await askForLink(user.email);
        const { browser } = await openLink(lastLinkTo(user.email));
        const form = await browser.request(`${server.url}/password/reset`);
        assert.equal(form.status, 200, form.text.slice(0, 300));
        const refused = await setPassword(browser, NEW_PASSWORD, 'not the same one');
        assert.equal(refused.status, 400);
        for (const page of [form.text, refused.text]) {
          if (keeps) assert.match(page, /Applications you authorized keep their access\./);
          else assert.match(page, /Applications your account authorized lose their access, as its address was not verified: authorize again those you use\./);
        }
      }
    });

    it('names the account on the new-password form, shown or refused, so that a password manager saves the new password for it', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const { browser } = await openLink(lastLinkTo(user.email));
      const form = await browser.request(`${server.url}/password/reset`);
      const refused = await setPassword(browser, NEW_PASSWORD, 'not the same one');
      for (const page of [form.text, refused.text]) {
        const fields = /<form method="post" action="\/password\/reset"[^>]*>(.*?)<\/form>/s.exec(page)?.[1] ?? '';
        assert.match(fields, new RegExp(`<input type="email" autocomplete="username" value="${user.email}" readonly hidden>`));
        assert.match(fields, /autocomplete="new-password"/);
      }
    });

    it('takes an account made with someone else’s address back from its maker: the owner’s reset through the link revokes every grant the maker gave, and withdraws their consents', async () => {
      freshWindow();
      const victim = `victim-${++counter}-${dialect}@example.com`;
      // The attacker signs up with the victim's address (it stays unverified: the link went to the
      // victim, who ignores it), authorizes their own application and a first-party one, and keeps
      // the refresh tokens.
      const attacker = await signUp(victim);
      assert.equal(attacker.answer.status, 303, attacker.answer.text.slice(0, 300));
      const account = (await server.gatehouse.storage.users.findByEmail(victim))!;
      assert.equal(account.emailVerified, false);
      const { tokens: stolen, consentAsked } = await authorize(attacker.browser);
      assert.equal(consentAsked, true);
      const firstParty = await passwordGrant(victim);
      assert.equal((await introspect(stolen.access_token)).active, true);

      // The victim finds the address taken, asks for a link, and sets a password with it.
      const refused = await signUp(victim);
      assert.equal(refused.answer.status, 400);
      assert.match(refused.answer.text, /This email cannot be used to create an account/);
      freshWindow();
      const done = await resetWithLink(victim);
      assert.equal(done.status, 303, done.text.slice(0, 300));
      assert.equal(done.location, '/login?reset=done&applications=withdrawn');
      const notice = await new HttpBrowser().request(`${server.url}${done.location}`);
      assert.match(notice.text, /Your password was changed, and every browser signed in to your account was signed out\./);
      assert.match(notice.text, /Applications that had access to your account can no longer renew it: authorize again those you use\./);

      // Neither application keeps access: refresh tokens refused, access tokens inactive where Gatehouse checks them.
      for (const [client, tokens] of [[thirdParty, stolen], [mobile, firstParty]] as const) {
        const refreshed = await refresh(client, tokens.refresh_token);
        assert.equal(refreshed.status, 400, `refreshing answered ${refreshed.status}`);
        assert.equal(refreshed.body.error, 'invalid_grant');
        assert.deepEqual(await introspect(tokens.access_token), { active: false });
        assert.equal(await userinfo(tokens.access_token), 401);
      }
      assert.equal(await isSignedIn(attacker.browser), false);
      assert.equal((await server.gatehouse.storage.users.findById(account.id))!.emailVerified, true, 'the link proved the address');

      // The consent went with the grants: the account page lists no application, and the
      // application gets nothing from the account again without asking its owner.
      const owner = await signedInBrowser(server.url, victim, NEW_PASSWORD);
      assert.doesNotMatch((await owner.request(`${server.url}/account`)).text, /Gallery of Models/);
      assert.equal((await authorize(owner)).consentAsked, true);

      const revoked = await eventsOf(account.id, 'grant.revoked');
      assert.deepEqual(revoked.map((e) => e.clientId).sort(), [thirdParty.id, mobile.id].sort());
      for (const event of revoked) assert.deepEqual(Object.keys(event.data).sort(), ['grant_id', 'reason']);
      assert.ok(revoked.every((event) => event.data.reason === 'password_reset' && event.outcome === 'success'));
      const withdrawn = await eventsOf(account.id, 'consent.withdrawn');
      assert.deepEqual(withdrawn.map((e) => [e.clientId, e.data]), [[thirdParty.id, { reason: 'password_reset' }]]);
      const [reset] = await eventsOf(account.id, 'user.password_reset');
      assert.deepEqual(reset?.data, { by: 'email', sessions_ended: 1, grants_revoked: 2, address: '127.0.0.1' });
      assert.deepEqual((await eventsOf(account.id, 'user.email_verified')).map((e) => e.data), [{ by: 'password_reset' }]);
    });

    it('keeps the grants of an account whose address was verified before the reset, as an operator’s reset keeps them', async () => {
      freshWindow();
      const email = `verified-${++counter}-${dialect}@example.com`;
      const { browser } = await signUp(email);
      // Verified through the link, followed in the browser signed in to the account.
      const verifying = browser;
      await verifying.request(verifyLinkIn(mailsTo(email).at(-1)!));
      const confirmPage = await verifying.request(`${server.url}/email/verify`);
      assert.equal((await verifying.request(`${server.url}/email/verify`, { form: { csrf: hiddenField(confirmPage.text, 'csrf') } })).status, 200);
      const account = (await server.gatehouse.storage.users.findByEmail(email))!;
      assert.equal(account.emailVerified, true);
      const { tokens } = await authorize(browser);
      const firstParty = await passwordGrant(email);

      const done = await resetWithLink(email);
      assert.equal(done.status, 303, done.text.slice(0, 300));
      assert.equal(done.location, '/login?reset=done');
      assert.equal(await isSignedIn(browser), false, 'the sessions end all the same');
      for (const [client, issued] of [[thirdParty, tokens], [mobile, firstParty]] as const) {
        assert.equal((await introspect(issued.access_token)).active, true);
        assert.equal((await refresh(client, issued.refresh_token)).status, 200, 'the grant stays');
      }
      const owner = await signedInBrowser(server.url, email, NEW_PASSWORD);
      assert.match((await owner.request(`${server.url}/account`)).text, /Gallery of Models/);
      assert.deepEqual(await eventsOf(account.id, 'grant.revoked'), []);
      const [reset] = await eventsOf(account.id, 'user.password_reset');
      assert.deepEqual(reset?.data, { by: 'email', sessions_ended: 1, grants_revoked: 0, address: '127.0.0.1' });
    });

    it('answers an unknown email and a disabled account with the same page as a known one, and sends them nothing', async () => {
      freshWindow();
      const known = await aUser();
      const disabled = await aUser();
      await setUserDisabled(server.gatehouse, (await server.gatehouse.storage.users.findById(disabled.id))!, true, server.gatehouse.clock());
      const before = await countRows(server.database, 'password_resets');
      const sent = mail.received.length;
      const unknownEmail = `nobody-${counter}-${dialect}@example.com`;

      const answers = await Promise.all([known.email, unknownEmail, disabled.email].map(async (email) => {
        const answer = await askForLink(email);
        // The "Check your email" page names the address typed, carried by a cookie of its own.
        const cookies = answer.headers.getSetCookie().map((cookie) => cookie.replace(email, 'EMAIL'));
        return { status: answer.status, location: answer.location, cookies, text: answer.page.text.replace(email, 'EMAIL') };
      }));
      assert.equal(answers[0]!.status, 303);
      assert.deepEqual(answers[1], answers[0], 'an unknown email');
      assert.deepEqual(answers[2], answers[0], 'a disabled account');
      assert.equal(mail.received.length, sent + 1, 'one mail, to the known account');
      assert.equal(mailsTo(known.email).length, 1);
      assert.equal(await countRows(server.database, 'password_resets'), before + 1);
    });

    it('answers the request with a redirect to the "Check your email" page (Post/Redirect/Get): reloading it asks for nothing, and the address is in no URL', async () => {
      freshWindow();
      const user = await aUser();
      const browser = new HttpBrowser();
      const asked = await askForLink(user.email, browser);
      assert.equal(asked.status, 303);
      assert.equal(asked.location, '/password/sent');
      const sent = mail.received.length;
      const links = await countRows(server.database, 'password_resets');
      for (let reload = 0; reload < 2; reload++) {
        const page = await browser.request(new URL(asked.location!, server.url).toString());
        assert.equal(page.status, 200);
        assert.match(page.text, new RegExp(`If an account with the address <strong>${user.email.replace(/\./g, '\\.')}</strong> exists, we sent a link`));
        assert.match(page.text, /The link works once, for 30 minutes/);
        assert.equal(page.headers.get('cache-control'), 'no-store');
      }
      await server.gatehouse.passwordResets.settled();
      assert.equal(mail.received.length, sent, 'reloading sends nothing');
      assert.equal(await countRows(server.database, 'password_resets'), links);
      assert.ok(!asked.location!.includes(encodeURIComponent(user.email)) && !asked.location!.includes(user.email));

      // Opened elsewhere (a shared link, another browser), the page names no address.
      const elsewhere = await new HttpBrowser().request(`${server.url}/password/sent`);
      assert.equal(elsewhere.status, 200);
      assert.match(elsewhere.text, /If an account with the address you typed exists, we sent a link/);
      assert.doesNotMatch(elsewhere.text, /@example\.com/);
    });

    it('answers before the mail is sent: a slow mail server does not tell that the account exists', async () => {
      freshWindow();
      const user = await aUser();
      mail.delayMs = 1500;
      try {
        const browser = new HttpBrowser();
        const form = await browser.request(`${server.url}/password/forgot`);
        const started = performance.now();
        const answer = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email: user.email } });
        const took = performance.now() - started;
        assert.equal(answer.status, 303);
        assert.ok(took < 1000, `answered in ${took} ms, while the mail server took 1500`);
        await server.gatehouse.passwordResets.settled();
        assert.equal(mailsTo(user.email).length, 1, 'sent after answering');
      } finally {
        mail.delayMs = 0;
      }
    });

    it('refuses a link used once already, changing nothing', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const link = lastLinkTo(user.email);
      const first = await openLink(link);
      assert.equal((await setPassword(first.browser, NEW_PASSWORD)).status, 303);
      const hash = await hashOf(user.id);

      const again = await openLink(link);
      assert.equal(again.followed.status, 400);
      assert.match(again.followed.text, /This link no longer works/);
      assert.match(again.followed.text, /<a class="button primary" href="\/password\/forgot">Ask for a new link<\/a>/);
      // The browser that used it, posting the form again with the cookie it still holds.
      const replay = await first.browser.request(`${server.url}/password/reset`, { form: { csrf: 'x', new_password: 'yet another password', confirm_password: 'yet another password' } });
      assert.equal(replay.status, 400);
      assert.match(replay.text, /This link no longer works/);
      assert.equal(await hashOf(user.id), hash);
    });

    it('lets exactly one of two submissions of one link set the password', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const { browser } = await openLink(lastLinkTo(user.email));
      const form = await browser.request(`${server.url}/password/reset`);
      const csrf = hiddenField(form.text, 'csrf');
      const submit = (password: string) => browser.request(`${server.url}/password/reset`, { form: { csrf, new_password: password, confirm_password: password } });
      const answers = await Promise.all([submit('first of two passwords'), submit('second of two passwords')]);
      assert.deepEqual(answers.map((a) => a.status).sort(), [303, 400]);
      const winner = answers[0]!.status === 303 ? 'first of two passwords' : 'second of two passwords';
      const loser = winner.startsWith('first') ? 'second of two passwords' : 'first of two passwords';
      assert.equal((await signIn(user.email, winner)).status, 303);
      assert.equal((await signIn(user.email, loser)).status, 401);
    });

    it('refuses a link past its lifetime, changing nothing', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const link = lastLinkTo(user.email);
      const { browser } = await openLink(link);
      const hash = await hashOf(user.id);
      ahead += TTL;
      const expired = await openLink(link);
      assert.equal(expired.followed.status, 400);
      assert.match(expired.followed.text, /This link no longer works/);
      assert.equal((await setPassword(browser, NEW_PASSWORD)).status, 400, 'nor the form it opened before');
      assert.equal(await hashOf(user.id), hash);
    });

    it('refuses a link once a newer one was asked for, and takes the newer one', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const older = lastLinkTo(user.email);
      await askForLink(user.email);
      const newer = lastLinkTo(user.email);
      assert.notEqual(newer, older);
      const hash = await hashOf(user.id);
      const refused = await openLink(older);
      assert.equal(refused.followed.status, 400);
      assert.equal(await hashOf(user.id), hash);
      assert.equal((await setPassword((await openLink(newer)).browser, NEW_PASSWORD)).status, 303);
    });

    for (const [refusal, refuse] of [
      ['refuses the message', (on: boolean) => void (mail.refuseMessages = on)],
      ['refuses the log-in', (on: boolean) => void (mail.refuseLogins = on)],
    ] as const) {
      it(`keeps the earlier link working when the mail server ${refusal} of a newer one, and voids it once a newer one is mailed`, async () => {
        freshWindow();
        const user = await aUser();
        await askForLink(user.email);
        const earlier = lastLinkTo(user.email);
        const stored = await countRows(server.database, 'password_resets');

        refuse(true);
        try {
          const refused = await askForLink(user.email);
          assert.equal(refused.status, 303, 'the page answers as ever');
        } finally {
          refuse(false);
        }
        assert.equal(mailsTo(user.email).length, 1, 'the newer mail was not sent');
        const [notSent] = await eventsOf(user.id, 'user.password_reset_requested');
        assert.deepEqual([notSent?.outcome, notSent?.data], ['failure', { reason: 'mail_not_sent', address: '127.0.0.1' }]);
        assert.equal(await countRows(server.database, 'password_resets'), stored, 'the link of the mail not sent is not kept');
        const opened = await openLink(earlier);
        assert.equal(opened.followed.status, 303, 'the earlier link still works');

        await askForLink(user.email);
        assert.equal(mailsTo(user.email).length, 2);
        const newer = lastLinkTo(user.email);
        const hash = await hashOf(user.id);
        assert.equal((await openLink(earlier)).followed.status, 400, 'the earlier link no longer works once a newer one was mailed');
        assert.equal((await setPassword(opened.browser, NEW_PASSWORD)).status, 400, 'nor the form it opened before');
        assert.equal(await hashOf(user.id), hash);
        assert.equal((await setPassword((await openLink(newer)).browser, NEW_PASSWORD)).status, 303);
        assert.equal((await signIn(user.email, NEW_PASSWORD)).status, 303);
      });
    }

    it('resets the password with the earlier link when the mail of a newer one could not be sent', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const earlier = lastLinkTo(user.email);
      mail.refuseMessages = true;
      try {
        await askForLink(user.email);
      } finally {
        mail.refuseMessages = false;
      }
      assert.equal(mailsTo(user.email).length, 1);
      assert.equal((await setPassword((await openLink(earlier)).browser, NEW_PASSWORD)).status, 303);
      assert.equal((await signIn(user.email, NEW_PASSWORD)).status, 303);
      assert.equal((await signIn(user.email, PASSWORD)).status, 401);
    });

    for (const [path, change] of [
      [
        'on the account page',
        async (user: { email: string }) => {
          const browser = await signedInBrowser(server.url, user.email, PASSWORD);
          const form = await browser.request(`${server.url}/account/password`);
          const changed = await browser.request(`${server.url}/account/password`, {
            form: { csrf: hiddenField(form.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD },
          });
          assert.equal(changed.status, 303, changed.text.slice(0, 300));
        },
      ],
      [
        'by an operator through the admin API',
        async (user: { id: string }) => {
          const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
          const reset = await fetch(`${server.url}/admin/v1/users/${user.id}/password`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token.body.access_token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ password: 'a password set by an operator' }),
          });
          assert.equal(reset.status, 204);
        },
      ],
    ] as const) {
      it(`refuses a link asked for before the password was changed ${path}, opened or not`, async () => {
        freshWindow();
        const user = await aUser();
        await askForLink(user.email);
        const link = lastLinkTo(user.email);
        const opened = await openLink(link);
        assert.equal(opened.followed.status, 303, 'the link works before the change');
        await change(user);
        const hash = await hashOf(user.id);

        const followed = await openLink(link);
        assert.equal(followed.followed.status, 400);
        assert.match(followed.followed.text, /This link no longer works/);
        assert.equal((await setPassword(opened.browser, 'a password from the old link')).status, 400, 'nor the form it opened before');
        assert.equal(await hashOf(user.id), hash);
        assert.equal(await server.gatehouse.storage.passwordResets.find(digestOf(new URL(link).searchParams.get('token')!)), undefined);

        freshWindow();
        await askForLink(user.email);
        assert.equal((await setPassword((await openLink(lastLinkTo(user.email))).browser, 'a password from a new link')).status, 303, 'a link asked for after works');
      });
    }

    it('refuses a link asked for before an operator disabled the account, once it is enabled again, opened or not', async () => {
      freshWindow();
      const user = await aUser();
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const act = async (action: 'disable' | 'enable') => {
        const answer = await fetch(`${server.url}/admin/v1/users/${user.id}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token.body.access_token}` } });
        assert.equal(answer.status, 200, await answer.text());
      };
      await askForLink(user.email);
      const link = lastLinkTo(user.email);
      const opened = await openLink(link);
      assert.equal(opened.followed.status, 303, 'the link works before');
      await act('disable');
      await act('enable');
      const hash = await hashOf(user.id);

      const followed = await openLink(link);
      assert.equal(followed.followed.status, 400);
      assert.match(followed.followed.text, /This link no longer works/);
      assert.equal((await setPassword(opened.browser, 'a password from before the disabling')).status, 400, 'nor the form it opened before');
      assert.equal(await hashOf(user.id), hash);
      assert.equal(await server.gatehouse.storage.passwordResets.find(digestOf(new URL(link).searchParams.get('token')!)), undefined);

      freshWindow();
      await askForLink(user.email);
      assert.equal((await setPassword((await openLink(lastLinkTo(user.email))).browser, 'a password from a new link')).status, 303, 'a link asked for after works');
    });

    it('refuses a link sent to the address the account had before an operator changed it, opened or not, and a name change leaves a link working', async () => {
      freshWindow();
      const user = await aUser();
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const patch = async (body: Record<string, string>) => {
        const answer = await fetch(`${server.url}/admin/v1/users/${user.id}`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${token.body.access_token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        assert.equal(answer.status, 200, await answer.text());
      };
      await askForLink(user.email);
      const link = lastLinkTo(user.email);
      const opened = await openLink(link);
      assert.equal(opened.followed.status, 303, 'the link works before the change');
      await patch({ name: 'Renamed' });
      assert.equal((await openLink(link)).followed.status, 303, 'a change that leaves the address leaves the link');

      // The old mailbox may be the reason for the change: lost, or someone else's now.
      const newEmail = `moved-${counter}-${dialect}@example.com`;
      await patch({ email: newEmail });
      const hash = await hashOf(user.id);
      const followed = await openLink(link);
      assert.equal(followed.followed.status, 400);
      assert.match(followed.followed.text, /This link no longer works/);
      assert.equal((await setPassword(opened.browser, 'a password from the old mailbox')).status, 400, 'nor the form it opened before');
      assert.equal(await hashOf(user.id), hash);

      freshWindow();
      await askForLink(newEmail);
      assert.equal((await setPassword((await openLink(lastLinkTo(newEmail))).browser, 'a password from the new mailbox')).status, 303, 'a link to the new address works');
    });

    it('refuses a tampered link (its checksum) and a malformed one with the readable page, reading nothing', async () => {
      freshWindow();
      const user = await aUser();
      await askForLink(user.email);
      const link = lastLinkTo(user.email);
      const last = link.at(-1)!;
      const hash = await hashOf(user.id);
      for (const bad of [link.slice(0, -1) + (last === 'A' ? 'B' : 'A'), `${server.url}/password/reset?token=gate_pr_short`, `${server.url}/password/reset?token=a&token=b`, `${server.url}/password/reset`]) {
        const { followed } = await openLink(bad);
        assert.equal(followed.status, 400, bad);
        assert.match(followed.text, /This link no longer works/);
        assert.equal(followed.headers.getSetCookie().some((line) => line.startsWith('gatehouse_reset=gate')), false);
      }
      const forged = new HttpBrowser();
      forged.cookies.set('gatehouse_reset', link.slice(0, -1) + (last === 'A' ? 'B' : 'A'));
      assert.equal((await setPassword(forged, NEW_PASSWORD)).status, 400);
      assert.equal(await hashOf(user.id), hash);
      assert.equal((await openLink(link)).followed.status, 303, 'the real link still works');
    });

    it('limits links per account, whether or not it exists, and per address: 429 with Retry-After', async () => {
      freshWindow();
      const user = await aUser();
      const unknownEmail = `nobody-${counter}-${dialect}@example.com`;
      for (const email of [user.email, unknownEmail]) {
        for (let i = 0; i < PER_ACCOUNT; i++) assert.equal((await askForLink(email)).status, 303);
        const refused = await askForLink(email.toUpperCase());
        assert.equal(refused.status, 429, 'the same account, however its email is typed');
        assert.ok(Number(refused.headers.get('retry-after')) > 0);
        assert.match(refused.text, /Too many links were asked for\. Try again in \d+ minute\(s\)\./);
      }
      assert.equal(mailsTo(user.email).length, PER_ACCOUNT);
      // The address has asked 2 × (PER_ACCOUNT + 1) times so far: a request refused for its account counts against its address.
      for (let i = 2 * (PER_ACCOUNT + 1); i < PER_ADDRESS; i++) assert.equal((await askForLink(`other-${i}-${counter}@example.com`)).status, 303);
      const overAddress = await askForLink(`one-more-${counter}@example.com`);
      assert.equal(overAddress.status, 429);
      assert.ok(Number(overAddress.headers.get('retry-after')) > 0);
    });

    it('refuses a form without its CSRF token, or without an email, sending nothing', async () => {
      freshWindow();
      const user = await aUser();
      const sent = mail.received.length;
      const browser = new HttpBrowser();
      await browser.request(`${server.url}/password/forgot`);
      const forged = await browser.request(`${server.url}/password/forgot`, { form: { csrf: 'not the token', email: user.email } });
      assert.equal(forged.status, 403);
      const empty = await askForLink('');
      assert.equal(empty.status, 400);
      assert.match(empty.text, /Enter the email address of your account\./);
      await server.gatehouse.passwordResets.settled();
      assert.equal(mail.received.length, sent);
    });
  });
}

describe('password reset without mail settings', { timeout: 60_000 }, () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer('sqlite');
  });
  after(() => server?.close());

  it('has no "Forgot your password?" link, and its pages answer a readable 404', async () => {
    const browser = new HttpBrowser();
    const login = await browser.request(`${server.url}/login`);
    assert.equal(login.status, 200);
    assert.doesNotMatch(login.text, /password\/forgot|Forgot your password/);
    const form = await browser.request(`${server.url}/password/forgot`);
    assert.equal(form.status, 404);
    assert.match(form.text, /Password reset is not available/);
    assert.match(form.text, /Ask its operators to reset your password/);
    const posted = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(login.text, 'csrf'), email: 'someone@example.com' } });
    assert.equal(posted.status, 404);
    for (const path of ['/password/sent', '/password/reset', '/password/reset?token=gate_pr_x']) assert.equal((await browser.request(`${server.url}${path}`)).status, 404, path);
    assert.equal((await browser.request(`${server.url}/password/reset`, { form: { csrf: 'x', new_password: 'a long password', confirm_password: 'a long password' } })).status, 404);
    assert.equal(await countRows(server.database, 'password_resets'), 0);
  });
});

for (const dialect of DIALECTS) {
  describe(`links by email while the mail server is slow (${dialect})`, { timeout: 60_000 }, () => {
    const WAITING = 3;
    let server: TestServer;
    let mail: TestMailServer;
    const logged: { level: number; msg: string; refused?: number }[] = [];
    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' },
        config: { passwordReset: { tokenTtlSeconds: TTL, maxRequestsPerAccount: PER_ACCOUNT, maxRequestsPerAddress: 100, windowSeconds: 3600 } },
        logger: pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
        maxMailsWaiting: WAITING,
      });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    const ask = async (email: string) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/password/forgot`);
      const answer = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email } });
      return { status: answer.status, location: answer.location };
    };

    it('keeps no more mails waiting than its bound: the others are refused, audited as not sent, logged once, and the page answers as ever; an earlier link keeps working', async () => {
      const users = await Promise.all(Array.from({ length: WAITING + 3 }, (_, i) => server.user(`queued-${i}-${dialect}@example.com`, PASSWORD)));
      // The last account's link, asked for while the mail server answers at once.
      const last = users.at(-1)!;
      assert.deepEqual(await ask(last.email), { status: 303, location: '/password/sent' });
      await server.gatehouse.passwordResets.settled();
      const earlier = resetLinkIn(mail.received.find((m) => m.to.includes(last.email))!);
      const stored = await countRows(server.database, 'password_resets');

      mail.delayMs = 1500;
      try {
        // The first ones fill the queue (their mails wait 1.5 s each), then the others, the last account among them, ask.
        const answers = await Promise.all(users.slice(0, WAITING).map((user) => ask(user.email)));
        await sleep(300);
        answers.push(...(await Promise.all(users.slice(WAITING).map((user) => ask(user.email)))));
        assert.deepEqual(new Set(answers.map((a) => JSON.stringify(a))), new Set([JSON.stringify({ status: 303, location: '/password/sent' })]), 'every page answers as ever');
        await server.gatehouse.passwordResets.settled();
      } finally {
        mail.delayMs = 0;
      }
      await server.gatehouse.audit.flush();
      const outcomes: string[][] = [];
      for (const user of users) {
        const events = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.password_reset_requested' });
        outcomes.push(events.map((e) => (e.outcome === 'success' ? 'sent' : (e.data as { reason: string }).reason)));
      }
      const all = outcomes.flat();
      assert.equal(mail.received.length, 1 + WAITING, 'as many mails as may wait were sent');
      assert.equal(all.filter((o) => o === 'sent').length, 1 + WAITING, JSON.stringify(outcomes));
      assert.equal(all.filter((o) => o === 'mail_not_sent').length, users.length - WAITING, JSON.stringify(outcomes));
      const warnings = logged.filter((line) => line.level === 40 && /were not sent/.test(line.msg));
      assert.equal(warnings.length, 1, 'logged once');
      assert.equal(warnings[0]!.refused, 1, 'with how many were refused since the last report');
      // Only the newest link of each account is kept: one for each account that was sent one, none for the others.
      assert.equal(await countRows(server.database, 'password_resets'), outcomes.filter((o) => o.includes('sent')).length, 'a refused mail stores no link');
      assert.equal(stored, 1);

      assert.deepEqual([...outcomes.at(-1)!].sort(), ['mail_not_sent', 'sent'], 'the last account’s second mail was refused');
      const followed = await new HttpBrowser().request(earlier);
      assert.equal(followed.status, 303, 'its earlier link still works');
      // Room again once the mail server has caught up.
      assert.deepEqual(await ask(users[0]!.email), { status: 303, location: '/password/sent' });
      await server.gatehouse.passwordResets.settled();
      assert.equal(mail.received.length, 2 + WAITING);
    });
  });
}
