import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { focusedField, launchChromium } from '../support/chromium.ts';
import { resetLinkIn, startMailServer, verifyLinkIn, type TestMailServer } from '../support/smtp.ts';

/**
 * Accounts as a person makes and uses them in a real headless Chromium, whose email fields send an
 * internationalized domain name in its ASCII form (xn--…), whatever was typed.
 */

const PASSWORD = 'correct horse battery staple';

for (const dialect of DIALECTS) {
  describe(`user accounts in a browser (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let browser: Browser;

    before(async () => {
      server = await startTestServer(dialect);
      browser = await launchChromium();
    });
    after(async () => {
      await browser?.close();
      await server?.close();
    });

    it('signs in an account with an internationalized domain, created by an operator, with the email as they typed it', async () => {
      await server.user('ana@bücher.example', PASSWORD);
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${server.url}/login`);
        await page.fill('#email', 'ana@bücher.example');
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForURL(/\/account$/), page.click('button[type=submit]')]);
      } finally {
        await context.close();
      }
    });

    it('makes one account of an email with an internationalized domain, in whichever form it arrives', async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${server.url}/signup`);
        await page.fill('#name', 'Ben');
        await page.fill('#email', 'ben@bücher.example');
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForURL(/\/account$/), page.click('button[type=submit]')]);
      } finally {
        await context.close();
      }
      const stored = await server.gatehouse.storage.users.findByEmail('ben@bücher.example');
      assert.ok(stored, 'found by the email as typed');
      await assert.rejects(server.user('BEN@BÜCHER.example', PASSWORD), { name: 'EmailTakenError' });
      await assert.rejects(server.user('ben@xn--bcher-kva.example', PASSWORD), { name: 'EmailTakenError' });
    });
    it('refuses a sign-up with the message next to its field, which takes the focus, and keeps what was typed', async () => {
      await server.user(`taken-${dialect}@example.com`, PASSWORD);
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${server.url}/signup`);
        await page.fill('#name', 'Cleo <b>Developer</b>');
        await page.fill('#email', `cleo-${dialect}@example.com`);
        // minlength stops the form in the browser; a password of 4 emoji (8 UTF-16 units) passes it, and Gatehouse counts characters.
        await page.fill('#password', '😀😀😀😀');
        const [short] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('button[type=submit]')]);
        assert.equal(short.status(), 400);
        assert.deepEqual(await focusedField(page), { id: 'password', description: 'The password must be at least 8 characters long.' });
        assert.equal(await page.inputValue('#name'), 'Cleo <b>Developer</b>');
        assert.equal(await page.inputValue('#email'), `cleo-${dialect}@example.com`);

        await page.fill('#email', `taken-${dialect}@example.com`);
        await page.fill('#password', PASSWORD);
        const [taken] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('button[type=submit]')]);
        assert.equal(taken.status(), 400);
        assert.deepEqual(await focusedField(page), { id: 'email', description: 'This email cannot be used to create an account. If it is yours, sign in instead.' });
        assert.equal(await page.inputValue('#email'), `taken-${dialect}@example.com`);
        assert.equal(await server.gatehouse.storage.users.findByEmail(`cleo-${dialect}@example.com`), undefined);
      } finally {
        await context.close();
      }
    });

    it('refuses a sign-in with the email kept, and the focus on the password to type again', async () => {
      await server.user(`dora-${dialect}@example.com`, PASSWORD);
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${server.url}/login`);
        assert.equal((await focusedField(page)).id, 'email');
        await page.fill('#email', `dora-${dialect}@example.com`);
        await page.fill('#password', 'not the password');
        const [refused] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('button[type=submit]')]);
        assert.equal(refused.status(), 401);
        assert.deepEqual(await focusedField(page), { id: 'password', description: 'The email or password is not right.' });
        assert.equal(await page.inputValue('#email'), `dora-${dialect}@example.com`);
      } finally {
        await context.close();
      }
    });

    it('changes the password by keyboard alone, a wrong current password first, and signs out the other browser', async () => {
      const email = `eve-${dialect}@example.com`;
      const newPassword = 'new pass 24';
      await server.user(email, PASSWORD);
      const signIn = async (context: BrowserContext) => {
        const page = await context.newPage();
        await page.goto(`${server.url}/login?next=/account/password`);
        // Signing in is not what this test is about: filled at once.
        await page.fill('#email', email);
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForURL((url) => url.pathname === '/account/password'), page.keyboard.press('Enter')]);
        return page;
      };
      const here = await browser.newContext();
      const elsewhere = await browser.newContext();
      try {
        const page = await signIn(here);
        const other = await signIn(elsewhere);
        // The form opens with the focus on the current password.
        assert.equal((await focusedField(page)).id, 'current-password');
        const fill = async (current: string) => {
          await page.keyboard.type(current);
          await page.keyboard.press('Tab');
          await page.keyboard.type(newPassword);
          await page.keyboard.press('Tab');
          await page.keyboard.type(newPassword);
          const [answer] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.keyboard.press('Enter')]);
          return answer;
        };
        const refused = await fill('not the password');
        assert.equal(refused.status(), 400);
        await page.waitForSelector('#current-password-error');
        assert.deepEqual(await focusedField(page), { id: 'current-password', description: 'The current password is not right.' });

        const changed = await fill(PASSWORD);
        assert.equal(changed.status(), 303);
        await page.waitForURL((url) => url.pathname === '/account' && url.search === '?changed=password');
        assert.match(await page.textContent('[role=status]') ?? '', /Your password was changed/);

        await other.goto(`${server.url}/account`);
        assert.match(other.url(), /\/login/, 'the other browser is signed out');
        await page.goto(`${server.url}/account`);
        assert.match(page.url(), /\/account$/, 'this one is not');
      } finally {
        await here.close();
        await elsewhere.close();
      }
    });

    it('lists the browsers signed in on the account page and signs the other one out with its button', async () => {
      const email = `gus-${dialect}@example.com`;
      await server.user(email, PASSWORD);
      const here = await browser.newContext();
      const elsewhere = await browser.newContext({ userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0' });
      try {
        const signIn = async (context: BrowserContext) => {
          const page = await context.newPage();
          await page.goto(`${server.url}/login?next=/account`);
          await page.fill('#email', email);
          await page.fill('#password', PASSWORD);
          await Promise.all([page.waitForURL((url) => url.pathname === '/account'), page.keyboard.press('Enter')]);
          return page;
        };
        const other = await signIn(elsewhere);
        const page = await signIn(here);
        const list = page.getByRole('list', { name: 'Browsers signed in to your account' });
        assert.deepEqual(await list.getByRole('listitem').locator('strong').allTextContents(), ['Chrome on Linux This browser', 'Firefox on Linux']);
        // One button, named after the browser it signs out; none for this one.
        const button = list.getByRole('button', { name: /^Sign out Firefox on Linux from 127\.0\.0\.1, signed in / });
        assert.equal(await list.getByRole('button').count(), 1);
        await button.focus();
        await Promise.all([page.waitForURL((url) => url.search === '?signed_out=session'), page.keyboard.press('Enter')]);
        assert.match((await page.textContent('[role=status]')) ?? '', /That browser is signed out/);
        assert.equal(await list.getByRole('listitem').count(), 1);

        await other.goto(`${server.url}/account`);
        assert.match(other.url(), /\/login/, 'the other browser is signed out');
      } finally {
        await here.close();
        await elsewhere.close();
      }
    });

    it('deletes the account from its page, a wrong password first, and is signed out', async () => {
      const email = `fay-${dialect}@example.com`;
      const user = await server.user(email, PASSWORD);
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${server.url}/login`);
        await page.fill('#email', email);
        await page.fill('#password', PASSWORD);
        await Promise.all([page.waitForURL(/\/account$/), page.click('button[type=submit]')]);
        await Promise.all([page.waitForURL((url) => url.pathname === '/account/delete'), page.click('text=Delete your account…')]);
        assert.equal((await focusedField(page)).id, 'password');
        const submit = async (password: string) => {
          await page.fill('#password', password);
          await page.check('#confirm');
          const [answer] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('button.destructive')]);
          return answer;
        };
        const refused = await submit('not the password');
        assert.equal(refused.status(), 400);
        await page.waitForSelector('#password-error');
        assert.deepEqual(await focusedField(page), { id: 'password', description: 'The password is not right.' });

        const deleted = await submit(PASSWORD);
        assert.equal(deleted.status(), 200);
        assert.equal(await page.textContent('h1'), 'Your account was deleted');
        assert.equal(await server.gatehouse.storage.users.findById(user.id), undefined);
        await page.goto(`${server.url}/account`);
        assert.match(page.url(), /\/login/, 'signed out');
      } finally {
        await context.close();
      }
    });
  });
}

describe('links in mails, followed in a browser', { timeout: 180_000 }, () => {
  let server: TestServer;
  let mail: TestMailServer;
  let browser: Browser;

  before(async () => {
    mail = await startMailServer();
    server = await startTestServer('sqlite', { env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' } });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await mail?.close();
  });

  it('resets a forgotten password: from the sign-in page’s link to signed in with the new password, which the old one no longer is', async () => {
    const NEW_PASSWORD = 'a new and better passphrase';
    await server.user('forgetful@example.com', PASSWORD);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}/login`);
      await Promise.all([page.waitForURL(/\/password\/forgot$/), page.click('text=Forgot your password?')]);
      assert.equal((await focusedField(page)).id, 'email');
      await page.fill('#email', 'forgetful@example.com');
      await Promise.all([page.waitForURL(/\/password\/sent$/), page.click('button[type=submit]')]);
      assert.match(await page.textContent('main') ?? '', /If an account with the address forgetful@example\.com exists, we sent a link/);

      await server.gatehouse.passwordResets.settled();
      const link = resetLinkIn(mail.received.at(-1)!);
      await page.goto(link);
      // The token has left the address bar (and so the history) before the form shows.
      assert.equal(page.url(), `${server.url}/password/reset`);
      assert.equal((await focusedField(page)).id, 'new-password');
      await page.fill('#new-password', NEW_PASSWORD);
      await page.fill('#confirm-password', NEW_PASSWORD);
      await Promise.all([page.waitForURL(/\/login\?reset=done$/), page.click('button[type=submit]')]);
      assert.match(await page.textContent('main') ?? '', /Your password was changed/);

      await page.fill('#email', 'forgetful@example.com');
      await page.fill('#password', PASSWORD);
      const [refused] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('button[type=submit]')]);
      assert.equal(refused.status(), 401, 'the old password no longer signs in');
      await page.fill('#password', NEW_PASSWORD);
      await Promise.all([page.waitForURL(/\/account$/), page.click('button[type=submit]')]);
      assert.match(await page.textContent('main') ?? '', /Signed in as forgetful@example\.com/);

      // The link, followed again, offers a new one.
      await page.goto(link);
      assert.match(await page.textContent('h1') ?? '', /This link no longer works/);
    } finally {
      await context.close();
    }
  });


  it('verifies an email address: from sign-up to verified only when the person confirms on the link’s page, which a link preview opening it does not', async () => {
    const email = 'new-person@example.com';
    const verified = async () => (await server.gatehouse.storage.users.findByEmail(email))!.emailVerified;
    const context = await browser.newContext();
    const preview = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}/signup`);
      await page.fill('#email', email);
      await page.fill('#password', PASSWORD);
      await Promise.all([page.waitForURL(/\/account$/), page.click('button[type=submit]')]);
      assert.match(await page.textContent('main') ?? '', /not verified/);
      await server.gatehouse.emailVerifications.settled();
      const link = verifyLinkIn(mail.received.at(-1)!);

      // A mail scanner or link preview opens the link first, signed in to nothing: it is asked to sign
      // in to the account first, with a sign-in that comes back and a reset for who did not make it.
      const scanner = await preview.newPage();
      await scanner.goto(link);
      assert.equal(scanner.url(), `${server.url}/email/verify`);
      assert.equal(await scanner.textContent('h1'), 'Sign in to confirm your email address');
      assert.equal(await scanner.getAttribute('text=Reset its password', 'href'), '/password/forgot');
      assert.equal(await scanner.locator('form[action="/email/verify"]').count(), 0);
      assert.equal(await verified(), false);

      await page.goto(link);
      // The token has left the address bar (and so the history) before the page shows.
      assert.equal(page.url(), `${server.url}/email/verify`);
      assert.equal(await page.textContent('h1'), 'Confirm your email address');
      assert.match(await page.textContent('main') ?? '', /Is new-person@example\.com your email address\?/);
      assert.equal(await verified(), false, 'opening the link verifies nothing');
      const [confirmed] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.click('text=Confirm my email address')]);
      assert.equal(confirmed.status(), 200);
      assert.equal(await page.textContent('h1'), 'Your email address is verified');
      assert.equal(await verified(), true);

      await Promise.all([page.waitForURL(/\/account$/), page.click('text=Go to your account')]);
      assert.doesNotMatch(await page.textContent('main') ?? '', /not verified/);
      assert.match(await page.textContent('main') ?? '', /verified/);

      // The page the preview opened, reloaded now, and the link followed again: both say it is spent.
      await scanner.reload();
      assert.equal(await scanner.textContent('h1'), 'This link no longer works');
      await page.goto(link);
      assert.equal(await page.textContent('h1'), 'This link no longer works');
      assert.match(await page.textContent('main') ?? '', /is verified: there is nothing left to do/);
    } finally {
      await preview.close();
      await context.close();
    }
  });
});
