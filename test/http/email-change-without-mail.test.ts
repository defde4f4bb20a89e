import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { HOSTILE_STRINGS } from '../support/hostile-strings.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * Changing one's email address on a service that sends no mail: nothing can be verified, so the
 * address changes at once after the current password, unverified, as sign-up without mail makes an
 * account; another account's address is a plain error on the form, as sign-up's is. And, mail or
 * not, whatever is typed into the form is answered with a page, never a 5xx, and changes nothing.
 */

const PASSWORD = 'correct horse battery staple';

for (const dialect of DIALECTS) {
  describe(`changing one's email address without mail (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let counter = 0;
    let ahead = 0;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => Math.floor(Date.now() / 1000) + ahead, config: { login: { maxFailuresPerAccount: 1000, maxFailuresPerAddress: 100_000, windowSeconds: 900 } } });
    });
    after(() => server?.close());

    const url = (path: string) => `${server.url}${path}`;
    const address = (who: string) => `${who}-${++counter}-${dialect}@example.com`;
    const stored = (id: string) => server.gatehouse.storage.users.findById(id);
    const aUser = async () => {
      ahead += 3600;
      const user = await server.user(address('person'), PASSWORD);
      return { ...user, browser: await signedInBrowser(server.url, user.email, PASSWORD) };
    };
    const ask = async (browser: HttpBrowser, email: string, password = PASSWORD) => {
      const form = await browser.request(url('/account/email'));
      assert.equal(form.status, 200, form.text.slice(0, 300));
      return browser.request(url('/account/email'), { form: { csrf: hiddenField(form.text, 'csrf'), email, current_password: password } });
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    it('changes the address at once after the current password, unverified, keeping the sessions, and records it', async () => {
      const user = await aUser();
      const elsewhere = await signedInBrowser(server.url, user.email, PASSWORD);
      const form = await user.browser.request(url('/account/email'));
      assert.match(form.text, /Your address changes at once/);
      assert.match(form.text, /<label for="new-email">/);
      const next = address('New.Person');
      const answer = await ask(user.browser, `  ${next}  `);
      assert.equal(answer.status, 303, answer.text.slice(0, 300));
      assert.equal(answer.location, '/account?changed=email');
      const changed = (await stored(user.id))!;
      assert.equal(changed.email, next.toLowerCase());
      assert.equal(changed.emailVerified, false);
      assert.equal((await elsewhere.request(url('/account'))).status, 200);
      assert.equal((await signedInBrowser(server.url, next, PASSWORD)).cookies.size > 0, true, 'signs in with the new address');
      const [event] = await eventsOf(user.id, 'user.email_changed');
      assert.deepEqual(event?.data, { by: 'password', address: '127.0.0.1' });
      assert.equal((await new HttpBrowser().request(url('/email/change?token=x'))).status, 404, 'no link page without mail');
    });

    it('says so on the form when another account has the address, and changes nothing', async () => {
      const user = await aUser();
      const holder = await server.user(address('holder'), PASSWORD);
      const answer = await ask(user.browser, holder.email.toUpperCase());
      assert.equal(answer.status, 400);
      assert.match(answer.text, /another account has it/);
      assert.match(answer.text, /aria-invalid="true" aria-describedby="new-email-error"/);
      assert.equal((await stored(user.id))!.email, user.email);
      assert.equal((await stored(holder.id))!.email, holder.email);
    });

    it('refuses a wrong password, a missing one, the address the account has, a form without its CSRF token, and a signed-out browser', async () => {
      const user = await aUser();
      const before = await stored(user.id);
      const wrong = await ask(user.browser, address('other'), 'not the password');
      assert.equal(wrong.status, 400);
      assert.match(wrong.text, /The current password is not right/);
      assert.equal((await ask(user.browser, address('other'), '')).status, 400);
      const same = await ask(user.browser, user.email.toUpperCase());
      assert.equal(same.status, 400);
      assert.match(same.text, /already/);
      const forged = await user.browser.request(url('/account/email'), { form: { csrf: 'forged', email: address('other'), current_password: PASSWORD } });
      assert.equal(forged.status, 403);
      const signedOut = await new HttpBrowser().request(url('/account/email'), { form: { email: address('other'), current_password: PASSWORD } });
      assert.equal(signedOut.status, 303);
      assert.equal(signedOut.location, '/login?next=%2Faccount%2Femail');
      assert.deepEqual(await stored(user.id), before);
    });

    it('answers malformed and hostile addresses with the form, never a 5xx, and changes nothing', async () => {
      const user = await aUser();
      const before = await stored(user.id);
      const users = await countRows(server.database, 'users');
      const malformed = ['', 'no-at-sign', 'two@@example.com', 'ada@example.com.', 'ada@.example.com', 'ＡＤＡ@example.com', 'ada＠evil.example@example.com', 'ada,mallory@evil.example', 'ada<mallory@evil.example>', 'a\u200b@example.com', `${'a'.repeat(65)}@example.com`, `ada@${'b'.repeat(300)}.com`, 'x'.repeat(70_000)];
      for (const email of [...malformed, ...HOSTILE_STRINGS]) {
        const answer = await ask(user.browser, email);
        assert.ok(answer.status < 500, `${JSON.stringify(email.slice(0, 40))}: ${answer.status}`);
        assert.notEqual(answer.status, 303, JSON.stringify(email.slice(0, 40)));
      }
      // Fields sent twice, or not at all, are a page too.
      const form = await user.browser.request(url('/account/email'));
      const twice = await user.browser.request(url('/account/email'), { form: [['csrf', hiddenField(form.text, 'csrf')], ['email', 'a@example.com'], ['email', 'b@example.com'], ['current_password', PASSWORD]] });
      assert.ok(twice.status < 500 && twice.status !== 303, String(twice.status));
      assert.deepEqual(await stored(user.id), before);
      assert.equal(await countRows(server.database, 'users'), users);
    });
  });
}
