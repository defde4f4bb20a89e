import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { startTestServer, type TestServer } from '../support/server.ts';
import { focusedField, launchChromium } from '../support/chromium.ts';
import { changeLinkIn, startMailServer, type TestMailServer } from '../support/smtp.ts';

/**
 * Changing one's email address as a person does in a real headless Chromium, by keyboard where a
 * form is filled: from the account page to the link in the new mailbox, followed on another
 * device signed in to nothing, where the sign-in comes back to the link's page.
 */

const PASSWORD = 'correct horse battery staple';

describe('changing one’s email address in a browser', { timeout: 120_000 }, () => {
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

  it('asks for the password, a wrong one first with the focus on its field, and changes the address once the link is confirmed on another device', async () => {
    const user = await server.user('old-address@example.com', PASSWORD);
    const next = 'new-address@example.com';
    const here = await browser.newContext();
    const phone = await browser.newContext();
    try {
      const page = await here.newPage();
      await page.goto(`${server.url}/login?next=/account`);
      await page.fill('#email', user.email);
      await page.fill('#password', PASSWORD);
      await Promise.all([page.waitForURL(/\/account$/), page.keyboard.press('Enter')]);
      await Promise.all([page.waitForURL(/\/account\/email$/), page.click('text=Change your email address')]);
      assert.equal((await focusedField(page)).id, 'new-email', 'the form opens with the focus on the new address');

      const fill = async (password: string) => {
        await page.keyboard.press('Control+A');
        await page.keyboard.type(next);
        await page.keyboard.press('Tab');
        await page.keyboard.type(password);
        const [answer] = await Promise.all([page.waitForResponse((response) => response.request().method() === 'POST'), page.keyboard.press('Enter')]);
        return answer;
      };
      assert.equal((await fill('not the password')).status(), 400);
      await page.waitForSelector('#current-password-error');
      assert.deepEqual(await focusedField(page), { id: 'current-password', description: 'The current password is not right.' });
      await page.focus('#new-email');
      assert.equal((await fill(PASSWORD)).status(), 200);
      assert.equal(await page.textContent('h1'), 'Check your new mailbox');
      await server.gatehouse.emailChanges.settled();
      const link = changeLinkIn(mail.received.filter((m) => m.to.includes(next)).at(-1)!);

      // On the phone, signed in to nothing: the page asks to sign in, and comes back to confirm.
      const other = await phone.newPage();
      await other.goto(link);
      assert.equal(other.url(), `${server.url}/email/change`, 'the token has left the address bar');
      assert.equal(await other.textContent('h1'), 'Sign in to confirm your new email address');
      await Promise.all([other.waitForURL(/\/login/), other.click('a.button')]);
      await other.fill('#email', user.email);
      await other.fill('#password', PASSWORD);
      await Promise.all([other.waitForURL(/\/email\/change$/), other.keyboard.press('Enter')]);
      assert.equal(await other.textContent('h1'), 'Confirm your new email address');
      assert.equal((await server.gatehouse.storage.users.findById(user.id))!.email, user.email, 'nothing changed yet');
      await Promise.all([other.waitForURL(/\/account\?changed=email$/), other.click('text=Use my new email address')]);
      assert.match((await other.textContent('[role=status]')) ?? '', /Your email address was changed/);
      assert.match((await other.textContent('main')) ?? '', /new-address@example\.com · verified/);

      await page.goto(`${server.url}/account`);
      assert.match(page.url(), /\/account$/, 'the first browser stays signed in');
    } finally {
      await phone.close();
      await here.close();
    }
  });
});
