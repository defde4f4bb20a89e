import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * Accounts as a person makes and uses them in a real headless Chromium, whose email fields send an
 * internationalized domain name in its ASCII form (xn--…), whatever was typed.
 */

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PASSWORD = 'correct horse battery staple';

for (const dialect of DIALECTS) {
  describe(`user accounts in a browser (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let browser: Browser;

    before(async () => {
      server = await startTestServer(dialect);
      browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
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
  });
}
