import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { hashPassword } from '../../src/core/passwords.ts';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';
import { startMailServer, verifyLinkIn, type TestMailServer } from '../support/smtp.ts';

/*
 * Email verification, over real HTTP, to a real SMTP server: a new account is sent a link that, once
 * the person signed in to that account confirms on the page it opens, sets email_verified (as
 * userinfo and the ID token then say); opened signed out or signed in to another account it asks to
 * sign in to the account first and verifies nothing; following it changes nothing, so that a mail scanner or a link preview verifies nothing; the
 * link works once, for its lifetime, only for the address it was sent to; the account page shows the
 * state and sends the link again, within limits; without mail (or with signup.verifyEmail off)
 * nothing of it is there.
 */

const PASSWORD = 'correct horse battery staple';
const TTL = 86_400;
const PER_ACCOUNT = 2;
const PER_ADDRESS = 4;

const decodePayload = (jwt: string): Record<string, unknown> => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());

for (const dialect of DIALECTS) {
  describe(`email verification (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let app: { id: string; secret: string };
    let admin: { id: string; secret: string };
    let counter = 0;
    /** Seconds the server's clock is ahead of the system's. */
    let ahead = 0;

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => Math.floor(Date.now() / 1000) + ahead,
        env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' },
        config: {
          signup: { maxAccountsPerAddress: 0 },
          emailVerification: { tokenTtlSeconds: TTL, maxRequestsPerAccount: PER_ACCOUNT, maxRequestsPerAddress: PER_ADDRESS, windowSeconds: 3600 },
        },
      });
      app = await server.client({ name: 'Profile app', grantTypes: ['password'], scopes: ['openid', 'email'], firstParty: true });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    /** Each test starts in a window of its own: the budgets of the address and accounts are fresh. */
    const freshWindow = () => {
      ahead += 3600;
    };
    const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email));
    const lastLinkTo = (email: string) => verifyLinkIn(mailsTo(email).at(-1)!);
    const verified = async (email: string) => (await server.gatehouse.storage.users.findByEmail(email))!.emailVerified;
    /** Signs up through the page; the browser, signed in, once the mail it sends has gone. */
    const signUp = async () => {
      const email = `verify-${++counter}-${dialect}@example.com`;
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      const answer = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'Ada', password: PASSWORD } });
      assert.equal(answer.status, 303, answer.text.slice(0, 500));
      await server.gatehouse.emailVerifications.settled();
      return { email, browser };
    };
    const accountPage = async (browser: HttpBrowser) => browser.request(`${server.url}/account`);
    /** Asks for the link again from the account page; the answer, once any mail it sends has gone. */
    const resend = async (browser: HttpBrowser) => {
      const page = await accountPage(browser);
      const answer = await browser.request(`${server.url}/email/resend`, { form: { csrf: hiddenField(page.text, 'csrf') } });
      await server.gatehouse.emailVerifications.settled();
      return answer;
    };
    /** A browser signed in to the account of `email`, as its owner's is. */
    const ownerOf = (email: string) => signedInBrowser(server.url, email, PASSWORD);
    /** Follows a link (by default in a browser signed in to no account): the redirect that takes its token out of the address, then the page it leads to. */
    const follow = async (link: string, browser = new HttpBrowser()) => {
      const followed = await browser.request(link);
      const page = followed.location ? await browser.request(new URL(followed.location, server.url).toString()) : followed;
      return { followed, page, browser };
    };
    /** Presses the button of the page a link led to: the POST that spends the link. */
    const confirm = async (browser: HttpBrowser, page: { text: string }) => browser.request(`${server.url}/email/verify`, { form: { csrf: hiddenField(page.text, 'csrf') } });
    /** Follows a link in `browser` (signed in to the link's account) and confirms on the page it opens; the answer to the confirmation. */
    const verifyWith = async (link: string, browser: HttpBrowser) => {
      const { page } = await follow(link, browser);
      assert.equal(page.status, 200, page.text.slice(0, 500));
      return confirm(browser, page);
    };
    const SIGN_IN_FIRST = /<h1>Sign in to confirm your email address<\/h1>/;
    const verifiedEvents = async (email: string) => {
      await server.gatehouse.audit.flush();
      const user = (await server.gatehouse.storage.users.findByEmail(email))!;
      return server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.email_verified' });
    };

    it('sends a new account a link that verifies its address once signed in to the account, as userinfo and the ID token then say', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const [message] = mailsTo(email);
      assert.ok(message, 'a mail was sent');
      assert.equal(mailsTo(email).length, 1);
      assert.equal(message.from, 'no-reply@gatehouse.example');
      assert.match(message.subject, /Verify your email address/);
      assert.match(message.text, /within 24 hours/);
      // Whoever did not make the account is sent to a reset, which takes it back, not to the link.
      assert.ok(message.text.includes(`ask for a password reset link at ${server.url}/password/forgot`), message.text);
      const link = verifyLinkIn(message);
      assert.ok(link.startsWith(`${server.url}/email/verify?token=gate_ev_`), link);
      assert.ok(message.html.includes(`href="${link}"`), 'the HTML part links to it too');

      const before = await accountPage(browser);
      assert.match(before.text, /not verified/);
      assert.match(before.text, /action="\/email\/resend"/);
      assert.equal(await verified(email), false);

      // Opened in a browser signed in to no account (the address's owner, who may not have made it): nothing is verified.
      const { followed, page: signIn, browser: follower } = await follow(link);
      assert.equal(followed.status, 303);
      assert.equal(followed.location, '/email/verify');
      assert.equal(followed.headers.get('referrer-policy'), 'no-referrer');
      const cookie = followed.headers.getSetCookie().find((line) => line.startsWith('gatehouse_verify='));
      assert.ok(cookie, 'the link is kept in a cookie');
      assert.match(cookie, /HttpOnly/i);
      assert.equal(signIn.status, 200, signIn.text.slice(0, 500));
      assert.match(signIn.text, SIGN_IN_FIRST);
      assert.ok(signIn.text.includes(`<strong>${email}</strong>`), 'the page names the address');
      assert.match(signIn.text, /href="\/login\?next=%2Femail%2Fverify"/, 'a sign-in that comes back to the link');
      assert.match(signIn.text, /Did you not create this account\?/);
      assert.match(signIn.text, /<a href="\/password\/forgot">Reset its password<\/a>/);
      assert.doesNotMatch(signIn.text, /action="\/email\/verify"|gate_ev_/, 'no button that verifies, and no token');
      assert.equal(signIn.headers.get('referrer-policy'), 'no-referrer');
      const login = await follower.request(`${server.url}/login?next=%2Femail%2Fverify`);
      assert.equal(hiddenField(login.text, 'next'), '/email/verify');
      const refused = await follower.request(`${server.url}/email/verify`, { form: { csrf: hiddenField(login.text, 'csrf') } });
      assert.equal(refused.status, 403, 'a POST with a valid CSRF token verifies nothing');
      assert.match(refused.text, SIGN_IN_FIRST);
      assert.ok(!refused.headers.getSetCookie().some((line) => line.startsWith('gatehouse_verify=;')), 'the link stays in its cookie');
      assert.equal(await verified(email), false);

      // Signing in through the page comes back to the link, which now asks to confirm.
      const signedIn = await follower.request(`${server.url}/login`, { form: { csrf: hiddenField(login.text, 'csrf'), next: '/email/verify', email, password: PASSWORD } });
      assert.equal(signedIn.status, 303, signedIn.text.slice(0, 300));
      assert.equal(signedIn.location, '/email/verify');
      const page = await follower.request(`${server.url}/email/verify`);
      assert.equal(page.status, 200, page.text.slice(0, 500));
      assert.match(page.text, /<h1>Confirm your email address<\/h1>/);
      assert.ok(page.text.includes(`<strong>${email}</strong>`), 'the page names the address');
      assert.match(page.text, /<form method="post" action="\/email\/verify"/);
      assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      assert.equal(await verified(email), false, 'following the link verifies nothing');

      const done = await confirm(follower, page);
      assert.equal(done.status, 200, done.text.slice(0, 500));
      assert.match(done.text, new RegExp(`Your email address <strong>${email.replace(/\./g, '\\.')}</strong> is verified`));
      assert.ok(done.headers.getSetCookie().some((line) => line.startsWith('gatehouse_verify=;')), 'the cookie is cleared');
      assert.equal(await verified(email), true);

      const after = await accountPage(browser);
      assert.match(after.text, /verified/);
      assert.doesNotMatch(after.text, /not verified|action="\/email\/resend"/);

      const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: app.id, client_secret: app.secret, username: email, password: PASSWORD, scope: 'openid email' });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      // With an access token, the email claims are userinfo's (OpenID Connect Core §5.4); the ID token has them only without one (response_type=id_token).
      assert.equal(decodePayload(token.body.id_token as string).email_verified, undefined);
      const userinfo = (await (await fetch(`${server.url}/userinfo`, { headers: { authorization: `Bearer ${token.body.access_token}` } })).json()) as Record<string, unknown>;
      assert.deepEqual([userinfo.email, userinfo.email_verified], [email, true]);

      await server.gatehouse.audit.flush();
      const user = (await server.gatehouse.storage.users.findByEmail(email))!;
      const [event] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.email_verified' });
      assert.equal(event?.outcome, 'success');
      const [sent] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.email_verification_sent' });
      assert.equal(sent?.outcome, 'success');
      assert.doesNotMatch(JSON.stringify([event, sent]), /gate_ev_/);
    });

    it('verifies through the link followed in the browser that is signed in, and says so on the account page', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const done = await verifyWith(lastLinkTo(email), browser);
      assert.equal(done.status, 200);
      assert.match(done.text, /href="\/account"/);
      assert.equal(await verified(email), true);
    });

    it('verifies nothing for a browser signed in to another account: it says so and asks to sign in to the link’s account, and the link then still works', async () => {
      freshWindow();
      const { email, browser: owner } = await signUp();
      const someone = await signUp();
      const link = lastLinkTo(email);
      const { page } = await follow(link, someone.browser);
      assert.equal(page.status, 200, page.text.slice(0, 500));
      assert.match(page.text, SIGN_IN_FIRST);
      assert.ok(page.text.includes(`You are signed in as <strong>${someone.email}</strong>`), 'it names the account the browser is signed in to');
      assert.match(page.text, /href="\/login\?next=%2Femail%2Fverify"/);
      assert.match(page.text, /<a href="\/password\/forgot">Reset its password<\/a>/);
      assert.doesNotMatch(page.text, /action="\/email\/verify"/);
      const refused = await confirm(someone.browser, await someone.browser.request(`${server.url}/account`));
      assert.equal(refused.status, 403);
      assert.match(refused.text, SIGN_IN_FIRST);
      assert.deepEqual([await verified(email), await verified(someone.email)], [false, false]);
      assert.deepEqual(await verifiedEvents(email), []);
      const stored = await server.gatehouse.storage.emailVerifications.find(digestOf(new URL(link).searchParams.get('token')!));
      assert.equal(stored?.consumedAt, null, 'the link is not spent');

      // The same browser, signed in to the link's account through the page, comes back and confirms.
      const login = await someone.browser.request(`${server.url}/login?next=%2Femail%2Fverify`);
      const signedIn = await someone.browser.request(`${server.url}/login`, { form: { csrf: hiddenField(login.text, 'csrf'), next: '/email/verify', email, password: PASSWORD } });
      assert.equal(signedIn.location, '/email/verify');
      const again = await someone.browser.request(`${server.url}/email/verify`);
      assert.match(again.text, /<h1>Confirm your email address<\/h1>/);
      assert.equal((await confirm(someone.browser, again)).status, 200);
      assert.deepEqual([await verified(email), await verified(someone.email)], [true, false]);
      assert.equal((await owner.request(`${server.url}/account`)).status, 200);
    });

    it('verifies nothing on a GET: a link fetched twice (a mail scanner, a link preview) leaves the address unverified and the link working', async () => {
      freshWindow();
      const { email } = await signUp();
      const link = lastLinkTo(email);
      const rows = await countRows(server.database, 'email_verifications');
      for (let i = 0; i < 2; i++) {
        const scanner = await follow(link);
        assert.equal(scanner.page.status, 200);
        assert.match(scanner.page.text, SIGN_IN_FIRST);
        // The page the scanner reaches again, fetched twice more (and by HEAD), with the link in its cookie.
        for (const method of ['GET', 'GET', 'HEAD']) assert.equal((await scanner.browser.request(`${server.url}/email/verify`, { method })).status, 200, method);
      }
      assert.equal(await verified(email), false);
      assert.equal(await countRows(server.database, 'email_verifications'), rows);
      const stored = await server.gatehouse.storage.emailVerifications.find(digestOf(new URL(link).searchParams.get('token')!));
      assert.equal(stored?.consumedAt, null, 'the link is not spent');
      assert.deepEqual(await verifiedEvents(email), []);

      const done = await verifyWith(link, await ownerOf(email));
      assert.equal(done.status, 200, 'the link still works, by POST');
      assert.equal(await verified(email), true);
      assert.equal((await verifiedEvents(email)).length, 1);
    });

    it('refuses a confirmation without the form’s CSRF token (another site’s form), changing nothing; the link then still works', async () => {
      freshWindow();
      const { email, browser: owner } = await signUp();
      const { page, browser } = await follow(lastLinkTo(email), owner);
      assert.equal(page.status, 200);
      for (const form of [{}, { csrf: 'forged' }, { csrf: hiddenField(page.text, 'csrf').slice(0, -1) }] as Record<string, string>[]) {
        const refused = await browser.request(`${server.url}/email/verify`, { method: 'POST', form });
        assert.equal(refused.status, 403, JSON.stringify(form));
        assert.match(refused.text, /nothing was verified/);
        assert.match(refused.text, /<form method="post" action="\/email\/verify"/, 'the button is offered again');
        assert.ok(!refused.headers.getSetCookie().some((line) => line.startsWith('gatehouse_verify=;')), 'the link stays in its cookie');
      }
      // From another site's page the browser sends no cookie of ours (SameSite=Lax): neither the link nor the CSRF cookie.
      const crossSite = await browser.request(`${server.url}/email/verify`, { form: { csrf: hiddenField(page.text, 'csrf') }, crossSite: true });
      assert.equal(crossSite.status, 400);
      assert.match(crossSite.text, /This link no longer works/);
      assert.equal(await verified(email), false);
      assert.deepEqual(await verifiedEvents(email), []);

      // The person, back on the page (the cross-site request gave this browser a new CSRF cookie), confirms.
      const reopened = await browser.request(`${server.url}/email/verify`);
      assert.equal(reopened.status, 200);
      const done = await confirm(browser, reopened);
      assert.equal(done.status, 200);
      assert.equal(await verified(email), true);
    });

    it('refuses a link used, expired, tampered with or junk with a readable page, changing nothing; signed in, it offers a new one', async () => {
      freshWindow();
      const first = await signUp();
      const used = lastLinkTo(first.email);
      const opened = await follow(used, first.browser);
      assert.equal((await confirm(opened.browser, opened.page)).status, 200);
      const again = await follow(used);
      assert.equal(again.page.status, 400);
      assert.match(again.page.text, /This link no longer works/);
      // The page opened before it was used, confirmed again (a second tab, a reload): the link is spent.
      const twice = await confirm(opened.browser, opened.page);
      assert.equal(twice.status, 400);
      assert.match(twice.text, /This link no longer works/);

      const second = await signUp();
      const link = lastLinkTo(second.email);
      const rows = await countRows(server.database, 'email_verifications');
      const last = link.at(-1)!;
      for (const bad of [link.slice(0, -1) + (last === 'A' ? 'B' : 'A'), `${server.url}/email/verify?token=gate_ev_short`, `${server.url}/email/verify?token=a&token=b`, `${server.url}/email/verify`, link.replace('gate_ev_', 'gate_pr_')]) {
        const { followed, page } = await follow(bad);
        const shown = followed.status === 303 ? page : followed;
        assert.equal(shown.status, 400, bad);
        assert.match(shown.text, /This link no longer works/, bad);
        assert.match(shown.text, /sign in/i, 'signed out, it says where to ask for a new one');
      }
      const signedIn = await follow(link.slice(0, -1) + (last === 'A' ? 'B' : 'A'), second.browser);
      assert.equal(signedIn.followed.status, 400);
      assert.match(signedIn.followed.text, /action="\/email\/resend"/, 'signed in, a new link is offered');
      assert.equal(await verified(second.email), false);
      assert.equal(await countRows(server.database, 'email_verifications'), rows);

      // Its page open in two browsers, then the link expires.
      const [reloaded, confirmed] = [await follow(link, await ownerOf(second.email)), await follow(link, second.browser)];
      assert.deepEqual([reloaded.page.status, confirmed.page.status], [200, 200]);
      ahead += TTL;
      const expired = await follow(link);
      assert.equal(expired.followed.status, 400, 'expired');
      const reload = await reloaded.browser.request(`${server.url}/email/verify`);
      assert.equal(reload.status, 400, 'the page, reloaded');
      assert.match(reload.text, /This link no longer works/);
      const late = await confirm(confirmed.browser, confirmed.page);
      assert.equal(late.status, 400, 'confirmed');
      assert.match(late.text, /This link no longer works/);
      assert.equal(await verified(second.email), false);
      assert.equal(await countRows(server.database, 'email_verifications'), rows);
    });

    it('refuses the confirmation of a link replaced by a newer one while its page was open, verifying nothing', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const opened = await follow(lastLinkTo(email), browser);
      assert.equal(opened.page.status, 200);
      assert.equal((await resend(browser)).status, 303);
      const refused = await confirm(opened.browser, opened.page);
      assert.equal(refused.status, 400);
      assert.match(refused.text, /This link no longer works/);
      assert.equal(await verified(email), false);
      assert.equal((await verifyWith(lastLinkTo(email), browser)).status, 200, 'the newer one works');
      assert.equal(await verified(email), true);
    });

    it('voids the links of an address an operator changed through the admin API: they verify nothing', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const link = lastLinkTo(email);
      const opened = await follow(link, browser);
      assert.equal(opened.page.status, 200);
      const user = (await server.gatehouse.storage.users.findByEmail(email))!;
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      const changed = await fetch(`${server.url}/admin/v1/users/${user.id}`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${token.body.access_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ email: `moved.${email}` }),
      });
      assert.equal(changed.status, 200);
      const late = await confirm(opened.browser, opened.page);
      assert.equal(late.status, 400, 'the page opened before the change');
      const { followed } = await follow(link);
      assert.equal(followed.status, 400);
      assert.match(followed.text, /This link no longer works/);
      const stored = (await server.gatehouse.storage.users.findById(user.id))!;
      assert.deepEqual([stored.email, stored.emailVerified], [`moved.${email}`, false]);
      assert.equal(await server.gatehouse.storage.emailVerifications.find('x'), undefined);
    });

    it('voids the links of an account an operator disabled through the admin API: enabled again, they verify nothing', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const link = lastLinkTo(email);
      const opened = await follow(link, browser);
      assert.equal(opened.page.status, 200);
      const user = (await server.gatehouse.storage.users.findByEmail(email))!;
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      for (const action of ['disable', 'enable']) {
        const answer = await fetch(`${server.url}/admin/v1/users/${user.id}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token.body.access_token}` } });
        assert.equal(answer.status, 200, await answer.text());
      }
      const late = await confirm(opened.browser, opened.page);
      assert.equal(late.status, 400, 'the page opened before');
      const { followed } = await follow(link);
      assert.equal(followed.status, 400);
      assert.match(followed.text, /This link no longer works/);
      assert.equal(await verified(email), false);
      assert.equal(await server.gatehouse.storage.emailVerifications.find(digestOf(new URL(link).searchParams.get('token')!)), undefined);
    });

    it('sends the link again from the account page, the earlier one then void, within limits per account and per address (429 with Retry-After)', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const first = lastLinkTo(email);
      const sent = await resend(browser);
      assert.equal(sent.status, 303);
      assert.equal(sent.location, '/account?sent=verification');
      const notice = await browser.request(`${server.url}/account?sent=verification`);
      assert.match(notice.text, new RegExp(`We sent a new link to <strong>${email.replace(/\./g, '\\.')}</strong>`));
      assert.equal(mailsTo(email).length, 2);
      const second = lastLinkTo(email);
      assert.notEqual(second, first);
      assert.equal((await follow(first)).followed.status, 400, 'only the newest link works');

      assert.equal((await resend(browser)).status, 303);
      const refused = await resend(browser);
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers.get('retry-after')) > 0);
      assert.match(refused.text, /Too many links/);
      assert.equal(mailsTo(email).length, 3, 'nothing sent over the limit');

      // Per address: two more accounts from the same address use up its budget of four.
      const other = await signUp();
      assert.equal((await resend(other.browser)).status, 303);
      assert.equal((await resend(other.browser)).status, 429, 'the address is over its budget');
      assert.equal(mailsTo(other.email).length, 2);
    });

    it('mails one address no more links than an account may ask for, however many accounts are made with it: signed up again and again after deleting the account, the sign-up answers alike and mails nothing more', async () => {
      freshWindow();
      // Someone who does not own the address signs up with it, deletes the account (its address was
      // never verified: no notice is sent), signs up again with it: each sign-up is a new account,
      // with budgets of its own, and its mail went to the same mailbox.
      const victim = `victim-${++counter}-${dialect}@example.com`;
      const answers: string[] = [];
      for (let round = 0; round < PER_ACCOUNT + 3; round++) {
        const browser = new HttpBrowser();
        const form = await browser.request(`${server.url}/signup`);
        const answer = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email: victim, name: 'Mallory', password: PASSWORD } });
        assert.equal(answer.status, 303, answer.text.slice(0, 500));
        answers.push(answer.location!);
        await server.gatehouse.emailVerifications.settled();
        const deletion = await browser.request(`${server.url}/account/delete`);
        const deleted = await browser.request(`${server.url}/account/delete`, { form: { csrf: hiddenField(deletion.text, 'csrf'), password: PASSWORD, confirm: 'delete' } });
        assert.equal(deleted.status, 200, deleted.text.slice(0, 500));
      }
      assert.equal(new Set(answers).size, 1, 'every sign-up answers alike, mailed or not');
      await server.gatehouse.accountNotices.settled();
      assert.equal(mailsTo(victim).length, PER_ACCOUNT + 1, 'the sign-up’s link and as many as an account may ask for again, no more');
    });

    it('keeps the earlier link working when the mail server refuses the mail of a newer one, and voids it once a newer one is mailed', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const first = lastLinkTo(email);
      mail.refuseMessages = true;
      try {
        assert.equal((await resend(browser)).status, 303, 'the page answers as ever');
      } finally {
        mail.refuseMessages = false;
      }
      assert.equal(mailsTo(email).length, 1, 'the newer mail was not sent');
      assert.match((await follow(first, browser)).page.text, /<h1>Confirm your email address<\/h1>/, 'the earlier link still works');

      assert.equal((await resend(browser)).status, 303);
      assert.equal(mailsTo(email).length, 2);
      assert.equal((await follow(first)).followed.status, 400, 'the earlier link no longer works once a newer one was mailed');
      assert.equal(await verified(email), false);
      assert.equal((await verifyWith(lastLinkTo(email), browser)).status, 200);
      assert.equal(await verified(email), true);

      // A link whose mail is refused leaves one that is the only link, and it verifies the address.
      const other = await signUp();
      mail.refuseMessages = true;
      try {
        await resend(other.browser);
      } finally {
        mail.refuseMessages = false;
      }
      assert.equal((await verifyWith(lastLinkTo(other.email), other.browser)).status, 200);
      assert.equal(await verified(other.email), true);
    });

    it('mails a link only to the address the account has: one a mail header reads as another mailbox, or as several, gets no mail and stays unverified', async () => {
      freshWindow();
      const n = ++counter;
      // Each is one @ and no space, as sign-up took them before it refused them (an account made then
      // keeps its address); a mail header reads them as someone else's mailbox.
      const crafted = [`ada-${n},attacker-${n}@evil.example`, `ada-${n}<attacker-${n}@evil.example`, `"ada-${n}"attacker-${n}@evil.example`, `(ada-${n})attacker-${n}@evil.example`, `attacker-${n}@evil.example;ada-${n}`];
      const before = mail.received.length;
      for (const email of crafted) {
        await server.gatehouse.storage.users.create(
          { id: crypto.randomUUID(), email, name: 'Mallory', passwordHash: await hashPassword(PASSWORD), emailVerified: false, disabledAt: null },
          server.gatehouse.clock(),
        );
        freshWindow();
        const browser = await signedInBrowser(server.url, email, PASSWORD);
        const answer = await resend(browser);
        assert.equal(answer.status, 303, `${email}: ${answer.text.slice(0, 300)}`);
      }
      assert.deepEqual(
        mail.received.slice(before).map((m) => m.to),
        [],
        'no mail reached a mailbox that is not the address of the account',
      );
      await server.gatehouse.audit.flush();
      for (const email of crafted) {
        const user = (await server.gatehouse.storage.users.findByEmail(email))!;
        assert.equal(user.emailVerified, false, email);
        const [sent] = await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.email_verification_sent' });
        assert.deepEqual([sent?.outcome, sent?.data], ['failure', { reason: 'mail_not_sent' }], email);
      }
      // An ordinary address still gets its link.
      const { email } = await signUp();
      assert.equal(mailsTo(email).length, 1);
    });

    it('sends nothing again once verified, nor without a valid form or signed out', async () => {
      freshWindow();
      const { email, browser } = await signUp();
      const forged = await browser.request(`${server.url}/email/resend`, { form: { csrf: 'forged' } });
      assert.equal(forged.status, 403);
      const signedOut = await new HttpBrowser().request(`${server.url}/email/resend`, { form: { csrf: 'x' } });
      assert.equal(signedOut.status, 303);
      assert.equal(signedOut.location, '/login');
      assert.equal((await verifyWith(lastLinkTo(email), browser)).status, 200);
      const done = await resend(browser);
      assert.equal(done.status, 303);
      assert.equal(done.location, '/account');
      await server.gatehouse.emailVerifications.settled();
      assert.equal(mailsTo(email).length, 1);
    });
  });
}

describe('email verification turned off', { timeout: 60_000 }, () => {
  let mail: TestMailServer;
  const servers: TestServer[] = [];
  before(async () => {
    mail = await startMailServer();
    servers.push(await startTestServer('sqlite'));
    servers.push(await startTestServer('sqlite', { env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'no-reply@gatehouse.example' }, config: { signup: { verifyEmail: false } } }));
  });
  after(async () => {
    for (const server of servers) await server.close();
    await mail?.close();
  });

  it('sends no mail at sign-up, shows no state nor button, and its pages answer a readable 404', async () => {
    for (const server of servers) {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      const email = `off-${servers.indexOf(server)}@example.com`;
      assert.equal((await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password: PASSWORD } })).status, 303);
      await server.gatehouse.emailVerifications.settled();
      const account = await browser.request(`${server.url}/account`);
      assert.equal(account.status, 200);
      assert.doesNotMatch(account.text, /verified|\/email\/resend/);
      for (const path of ['/email/verify', '/email/verify?token=gate_ev_x']) {
        const page = await browser.request(`${server.url}${path}`);
        assert.equal(page.status, 404, path);
        assert.match(page.text, /Email verification is not available/);
      }
      for (const path of ['/email/resend', '/email/verify']) {
        const posted = await browser.request(`${server.url}${path}`, { form: { csrf: hiddenField(account.text, 'csrf') } });
        assert.equal(posted.status, 404, path);
        assert.match(posted.text, /Email verification is not available/, path);
      }
      assert.equal(await countRows(server.database, 'email_verifications'), 0);
    }
    assert.equal(mail.received.length, 0);
  });
});
