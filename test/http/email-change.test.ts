import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { post, startTestServer, type TestServer } from '../support/server.ts';
import { changeLinkIn, resetLinkIn, startMailServer, type TestMailServer } from '../support/smtp.ts';

/*
 * A signed-in person changes their account's email address, with mail (Keycloak's "update email",
 * Auth0's change-email flow), over real HTTP to a real SMTP server: the current password first, then
 * a link to the new address that changes it only when the same account confirms it; single use,
 * expiring, void once the address or password changed otherwise. The old address is told, with no
 * link. Another account's address is not told apart on the page.
 */

const PASSWORD = 'correct horse battery staple';
const FROM = 'Gatehouse <no-reply@gatehouse.example>';
const TTL = 86_400;

for (const dialect of DIALECTS) {
  describe(`changing one's email address with mail (${dialect})`, { timeout: 180_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let mobile: { id: string; secret: string };
    let counter = 0;
    /** Seconds the server's clock is ahead of the system's: each test runs in rate-limit windows of its own. */
    let ahead = 0;

    before(async () => {
      mail = await startMailServer();
      server = await startTestServer(dialect, {
        clock: () => Math.floor(Date.now() / 1000) + ahead,
        env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: FROM },
        config: { login: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 900 }, emailVerification: { maxRequestsPerAccount: 3, maxRequestsPerAddress: 1000, windowSeconds: 3600 } },
      });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['openid', 'email', 'profile'], firstParty: true });
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    const url = (path: string) => `${server.url}${path}`;
    const address = (who: string) => `${who}-${++counter}-${dialect}@example.com`;
    const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email));
    const settled = async () => {
      await server.gatehouse.emailChanges.settled();
      await server.gatehouse.accountNotices.settled();
    };
    const aUser = async () => {
      ahead += 3600;
      const user = await server.user(address('person'), PASSWORD);
      return { ...user, browser: await signedInBrowser(server.url, user.email, PASSWORD) };
    };
    const stored = (id: string) => server.gatehouse.storage.users.findById(id);
    /** Posts the change form of `browser`'s account; the answer. */
    const ask = async (browser: HttpBrowser, email: string, password = PASSWORD) => {
      const form = await browser.request(url('/account/email'));
      assert.equal(form.status, 200, form.text.slice(0, 300));
      return browser.request(url('/account/email'), { form: { csrf: hiddenField(form.text, 'csrf'), email, current_password: password } });
    };
    /** Asks for `email` and returns the link mailed to it, in a window of the links' budget of its own. */
    const linkFor = async (browser: HttpBrowser, email: string) => {
      ahead += 3600;
      const answer = await ask(browser, email);
      assert.equal(answer.status, 200, answer.text.slice(0, 300));
      await settled();
      return changeLinkIn(mailsTo(email).at(-1)!);
    };
    /** Follows `link` in `browser` and presses the confirmation button; the answer. */
    const confirm = async (browser: HttpBrowser, link: string) => {
      const followed = await browser.request(link);
      if (followed.status !== 303) return followed;
      assert.equal(followed.location, '/email/change', 'the token leaves the address');
      const page = await browser.request(url('/email/change'));
      if (page.status !== 200 || !page.text.includes('action="/email/change"')) return page;
      return browser.request(url('/email/change'), { form: { csrf: hiddenField(page.text, 'csrf') } });
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    it('sends a link to the new address, changes it only when the account confirms, verified, tells the old address without a link, and keeps sessions', async () => {
      const user = await aUser();
      const elsewhere = await signedInBrowser(server.url, user.email, PASSWORD);
      const token = await post(url('/token'), { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD, scope: 'openid email' });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      const account = await user.browser.request(url('/account'));
      assert.match(account.text, /<a href="\/account\/email">Change your email address<\/a>/);

      const next = address('new');
      const answer = await ask(user.browser, next);
      assert.equal(answer.status, 200);
      assert.match(answer.text, /We sent a link to <strong>[^<]+<\/strong>/);
      await settled();
      assert.equal((await stored(user.id))!.email, user.email, 'nothing changes before the link is followed');
      const [linkMail, ...more] = mailsTo(next);
      assert.ok(linkMail && more.length === 0);
      assert.match(linkMail.text, /p\*\*\*@example\.com/, 'the old address masked');
      assert.ok(!linkMail.text.includes(user.email));

      // A stranger, or a mail scanner, following the link changes nothing and is shown nothing of the account.
      const stranger = new HttpBrowser();
      const strangers = await confirm(stranger, changeLinkIn(linkMail));
      assert.match(strangers.text, /Sign in to confirm your new email address/);
      assert.ok(!strangers.text.includes(user.email) && !strangers.text.includes(next));
      const forced = await stranger.request(url('/email/change'), { form: { csrf: hiddenField((await stranger.request(url('/login'))).text, 'csrf') } });
      assert.equal(forced.status, 403);
      assert.equal((await stored(user.id))!.email, user.email);

      const done = await confirm(user.browser, changeLinkIn(linkMail));
      assert.equal(done.status, 303, done.text.slice(0, 300));
      assert.equal(done.location, '/account?changed=email');
      const changed = (await stored(user.id))!;
      assert.equal(changed.email, next);
      assert.equal(changed.emailVerified, true, 'the link proved the new address');
      assert.match((await user.browser.request(url('/account?changed=email'))).text, /Your email address was changed/);
      assert.equal((await elsewhere.request(url('/account'))).status, 200, 'other sessions stay, as Keycloak keeps them');

      await settled();
      const [notice] = mailsTo(user.email);
      assert.ok(notice, 'the old address is told');
      assert.match(notice.subject, /email address .* was changed/);
      assert.match(notice.text, /n\*\*\*@example\.com/);
      assert.doesNotMatch(notice.raw, /gate_[a-z]+_|token=|\/email\/change/, 'no link that could take the account');

      // Applications see the new address: userinfo with a token issued before, and the next ID token.
      const userinfo = (await (await fetch(url('/userinfo'), { headers: { authorization: `Bearer ${token.body.access_token}` } })).json()) as Record<string, unknown>;
      assert.equal(userinfo.email, next);
      assert.equal(userinfo.email_verified, true);
      const refreshed = await post(url('/token'), { grant_type: 'refresh_token', client_id: mobile.id, client_secret: mobile.secret, refresh_token: token.body.refresh_token });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      // ID tokens here carry the email claims only where no access token reaches userinfo (response_type=id_token), read from the user as it is then.
      assert.equal(decodeJwt(refreshed.body.id_token).sub, user.id);
      const after = (await (await fetch(url('/userinfo'), { headers: { authorization: `Bearer ${refreshed.body.access_token}` } })).json()) as Record<string, unknown>;
      assert.equal(after.email, next);
      assert.equal((await post(url('/token'), { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: next, password: PASSWORD })).status, 200, 'signs in with the new address');
      assert.equal((await post(url('/token'), { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username: user.email, password: PASSWORD })).status, 400, 'not the old one');

      const [event] = await eventsOf(user.id, 'user.email_changed');
      assert.deepEqual(event?.data, { by: 'email', address: '127.0.0.1' });
      assert.deepEqual((await eventsOf(user.id, 'user.email_change_requested'))[0]?.data, { address: '127.0.0.1' });
      assert.ok(!JSON.stringify(await eventsOf(user.id, 'user.email_change_sent')).includes(next), 'the audit trail keeps no address');

      // The link works once.
      const again = await confirm(user.browser, changeLinkIn(linkMail));
      assert.equal(again.status, 400);
      assert.match(again.text, /This link no longer works/);
    });

    it('refuses an expired link, and a link once the address or the password changed otherwise; the newest link replaces the earlier', async () => {
      const user = await aUser();
      const expired = await linkFor(user.browser, address('late'));
      ahead += TTL + 1;
      assert.equal((await confirm(user.browser, expired)).status, 400);

      const first = await linkFor(user.browser, address('first'));
      const secondAddress = address('second');
      const second = await linkFor(user.browser, secondAddress);
      assert.equal((await confirm(user.browser, first)).status, 400, 'replaced by the newer link');
      assert.equal((await confirm(user.browser, second)).status, 303);
      assert.equal((await stored(user.id))!.email, secondAddress);

      // A link asked for before the address changed another way works no more.
      const pending = await linkFor(user.browser, address('pending'));
      const third = await linkFor(user.browser, address('third'));
      await server.gatehouse.storage.users.update(user.id, { email: address('by-operator') }, server.gatehouse.clock());
      assert.equal((await confirm(user.browser, third)).status, 400);
      assert.equal((await confirm(user.browser, pending)).status, 400);

      // Nor one asked for with a password replaced since (whoever knew it must not move the account).
      const other = await aUser();
      const beforeReset = await linkFor(other.browser, address('attacker'));
      await server.gatehouse.storage.users.setPasswordHash(other.id, (await stored(other.id))!.passwordHash, server.gatehouse.clock());
      const refused = await confirm(other.browser, beforeReset);
      assert.equal(refused.status, 400);
      assert.equal((await stored(other.id))!.email, other.email);
    });

    it('takes the account back from whoever asked for a change with its password once its owner resets it with the emailed link', async () => {
      // Someone holds the password (they made the account with another person's address, or
      // guessed it) and asks to move the account to their own address.
      const victim = await aUser();
      const stolen = await linkFor(victim.browser, address('attacker'));
      const owner = new HttpBrowser();
      const forgot = await owner.request(url('/password/forgot'));
      await owner.request(url('/password/forgot'), { form: { csrf: hiddenField(forgot.text, 'csrf'), email: victim.email } });
      await server.gatehouse.passwordResets.settled();
      await owner.request(resetLinkIn(mailsTo(victim.email).at(-1)!));
      const form = await owner.request(url('/password/reset'));
      const reset = await owner.request(url('/password/reset'), { form: { csrf: hiddenField(form.text, 'csrf'), new_password: 'the owner’s own passphrase', confirm_password: 'the owner’s own passphrase' } });
      assert.equal(reset.status, 303, reset.text.slice(0, 300));
      const attacker = await signedInBrowser(server.url, victim.email, 'the owner’s own passphrase');
      assert.equal((await confirm(attacker, stolen)).status, 400, 'the link asked for with the old password is void');
      assert.equal((await stored(victim.id))!.email, victim.email);
    });

    /**
     * Runs `meanwhile` once, right after the next lookup of a user by address and before what
     * follows it (a link's issue), as a request on another instance would; then `during`.
     */
    const betweenLookupAndLink = async (meanwhile: () => Promise<unknown>, during: () => Promise<void>) => {
      const users = server.gatehouse.storage.users;
      const findByEmail = users.findByEmail;
      users.findByEmail = async (email) => {
        users.findByEmail = findByEmail;
        const found = await findByEmail(email);
        await meanwhile();
        return found;
      };
      try {
        await during();
      } finally {
        users.findByEmail = findByEmail;
      }
    };

    it('mails no reset link to the address an account left while the link was asked for', async () => {
      // The owner moves their account away from an address they lost, as someone asks for a reset
      // link at that address: the link must not go there.
      const owner = await aUser();
      const lost = owner.email;
      const next = address('moved');
      const link = await linkFor(owner.browser, next);
      await betweenLookupAndLink(
        async () => assert.equal((await confirm(owner.browser, link)).status, 303),
        async () => {
          const asker = new HttpBrowser();
          const forgot = await asker.request(url('/password/forgot'));
          await asker.request(url('/password/forgot'), { form: { csrf: hiddenField(forgot.text, 'csrf'), email: lost } });
          await server.gatehouse.passwordResets.settled();
        },
      );
      assert.equal((await stored(owner.id))!.email, next);
      assert.deepEqual(mailsTo(lost).filter((m) => m.text.includes('/password/reset?token=')), [], 'no reset link to the address the account left');
    });

    it('mails no link asked for with a password an operator replaced while it was checked', async () => {
      // An operator resets the password of an account in someone else's hands, as that someone
      // asks to move it to their address with the password they knew.
      const victim = await aUser();
      const theirs = address('attacker');
      ahead += 3600;
      await betweenLookupAndLink(
        () => server.gatehouse.storage.users.setPasswordHash(victim.id, '$reset-by-operator', server.gatehouse.clock()),
        async () => {
          assert.equal((await ask(victim.browser, theirs)).status, 200);
          await settled();
        },
      );
      assert.equal(mailsTo(theirs).length, 0, 'no link for the address of whoever knew the old password');
      assert.equal((await stored(victim.id))!.email, victim.email);
    });

    it('answers an address that another account has as any other, mails its owner a notice without a link, and changes nothing', async () => {
      const user = await aUser();
      const holder = await server.user(address('holder'), PASSWORD);
      const free = await ask(user.browser, address('free'));
      await settled();
      const rows = await countRows(server.database, 'email_changes');
      const taken = await ask(user.browser, holder.email);
      assert.equal(taken.status, free.status);
      const shown = (text: string) => text.replace(/<strong>[^<]*@example\.com<\/strong>/g, '').replace(/name="csrf" value="[^"]*"/g, '');
      assert.equal(shown(taken.text), shown(free.text), 'the page does not tell');
      await settled();
      const [notice, ...more] = mailsTo(holder.email);
      assert.ok(notice && more.length === 0);
      assert.match(notice.subject, /already used/);
      assert.doesNotMatch(notice.raw, /gate_[a-z]+_|token=/);
      assert.ok(!notice.raw.includes(user.email), 'nothing of the other account');
      assert.equal((await stored(user.id))!.email, user.email);
      assert.equal((await stored(holder.id))!.email, holder.email);
      assert.equal(await countRows(server.database, 'email_changes'), rows, 'no link stored for it');

      // An address taken between the link and its confirmation: refused, nothing changes.
      const racing = address('racing');
      const link = await linkFor(user.browser, racing);
      await server.user(racing, PASSWORD);
      const refused = await confirm(user.browser, link);
      assert.equal(refused.status, 409);
      assert.equal((await stored(user.id))!.email, user.email);
    });

    it('mails one address no more than an account may ask for, however many accounts ask for it: a link to a free address, a notice to a taken one, and every answer alike', async () => {
      ahead += 3600;
      const free = address('victim');
      const holder = await server.user(address('holder'), PASSWORD);
      // Each account has links of its own to ask for, within its budget; the mailbox they are sent to
      // has one budget, whoever asks.
      const askers = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const user = await server.user(address('asker'), PASSWORD);
          return signedInBrowser(server.url, user.email, PASSWORD);
        }),
      );
      const shown = (text: string) => text.replace(/<strong>[^<]*@example\.com<\/strong>/g, '').replace(/name="csrf" value="[^"]*"/g, '');
      const pages = new Set<string>();
      for (const browser of askers) {
        for (const to of [free, holder.email]) {
          const answer = await ask(browser, to);
          assert.equal(answer.status, 200, answer.text.slice(0, 300));
          pages.add(shown(answer.text));
        }
      }
      assert.equal(pages.size, 1, 'every answer alike, mailed or not');
      await settled();
      assert.equal(mailsTo(free).length, 4, 'as many links as an account may ask for, and one more (the sign-up’s), no more');
      assert.equal(mailsTo(holder.email).length, 4, 'as many notices');
    });

    it('refuses a wrong current password, counted with the password page’s, and limits the links an account asks for', async () => {
      const user = await aUser();
      const sent = mail.received.length;
      const next = address('guessed');
      const wrong = await ask(user.browser, next, 'not the password');
      assert.equal(wrong.status, 400);
      assert.match(wrong.text, /The current password is not right/);
      assert.equal((await eventsOf(user.id, 'user.email_change_failed')).length, 1);
      // The password page's wrong guesses and this page's share one budget.
      for (let i = 0; i < 2; i++) {
        const form = await user.browser.request(url('/account/password'));
        await user.browser.request(url('/account/password'), { form: { csrf: hiddenField(form.text, 'csrf'), current_password: `guess ${i}`, new_password: 'another long passphrase', confirm_password: 'another long passphrase' } });
      }
      const throttled = await ask(user.browser, next);
      assert.equal(throttled.status, 429);
      assert.match(throttled.headers.get('retry-after') ?? '', /^\d+$/);
      await settled();
      assert.equal(mail.received.length, sent, 'nothing mailed');
      assert.equal((await stored(user.id))!.email, user.email);

      const other = await aUser();
      for (let i = 0; i < 3; i++) assert.equal((await ask(other.browser, address('many'))).status, 200);
      const tooMany = await ask(other.browser, address('many'));
      assert.equal(tooMany.status, 429);
      assert.match(tooMany.text, /Too many attempts/);
    });
  });
}
