import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import pino from 'pino';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { sendRaw } from '../support/raw-http.ts';
import { basic, post, startTestServer, TEST_SECRET, type TestServer } from '../support/server.ts';
import { resetLinkIn, startMailServer, type ReceivedMail, type TestMailServer } from '../support/smtp.ts';
import { databaseEnv, runCli } from '../cli/support.ts';

/*
 * OWASP ASVS 5 V6.3.7 (4.0 V2.2.3): a person is told by mail when their account's password changed,
 * wherever it was changed (their account page, a reset link, an operator through the admin API or
 * the command line), and the old address is told when the account's email changed, with the new one
 * masked. Over real HTTP, to a real SMTP server. The mail says when, where and what to do, on the
 * configured issuer; it carries no token. A refused change sends nothing; without mail, nothing.
 */

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'a new and better passphrase';
const FROM = 'Gatehouse <no-reply@gatehouse.example>';

for (const dialect of DIALECTS) {
  describe(`notices of account changes (${dialect})`, { timeout: 180_000 }, () => {
    let server: TestServer;
    let mail: TestMailServer;
    let adminToken: string;
    let counter = 0;
    const logged: string[] = [];

    before(async () => {
      mail = await startMailServer();
      const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (logged.push(String(chunk)), done()) }));
      server = await startTestServer(dialect, { logger, env: { GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: FROM } });
      const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials', scope: 'admin:users' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      adminToken = token.body.access_token;
    });
    after(async () => {
      await server?.close();
      await mail?.close();
    });

    const aUser = () => server.user(`notice-${++counter}-${dialect}@example.com`, PASSWORD);
    const mailsTo = (email: string) => mail.received.filter((m) => m.to.includes(email));
    const settled = () => server.gatehouse.accountNotices.settled();
    const adminApi = (method: string, path: string, body?: unknown) =>
      fetch(`${server.url}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const eventsOf = async (userId: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind: 'user.change_notified' });
    };
    /** What every notice has: from the issuer's pages, no token of any kind, and the same in HTML. */
    const assertNotice = (notice: ReceivedMail) => {
      assert.doesNotMatch(notice.raw, /gate_[a-z]+_|token=/, 'no token, nor link that carries one');
      assert.ok(notice.text.includes(`${server.url}/password/forgot`), `the reset page on the issuer:\n${notice.text}`);
      assert.ok(notice.html.includes(`${server.url}/password/forgot`), 'in the HTML too');
      assert.match(notice.text, /\d{2}:\d{2}:\d{2} UTC/, 'says when');
    };

    it('tells the address when the password is changed on the account page', async () => {
      const user = await aUser();
      const browser = await signedInBrowser(server.url, user.email, PASSWORD);
      const form = await browser.request(`${server.url}/account/password`);
      const changed = await browser.request(`${server.url}/account/password`, {
        form: { csrf: hiddenField(form.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD },
      });
      assert.equal(changed.status, 303, changed.text.slice(0, 300));
      await settled();
      const [notice, ...more] = mailsTo(user.email);
      assert.ok(notice, 'a notice');
      assert.equal(more.length, 0);
      assert.match(notice.subject, /password .* was changed/);
      assert.match(notice.text, /on the account page/);
      assert.ok(notice.text.includes(`${server.url}/account`));
      assertNotice(notice);
      assert.doesNotMatch(notice.raw, /passphrase|horse/, 'no password');
      const [event] = await eventsOf(user.id);
      assert.equal(event?.outcome, 'success');
      assert.deepEqual(event.data, { change: 'password' });
    });

    it('sends nothing when the account page refuses the change (wrong current password)', async () => {
      const user = await aUser();
      const browser = await signedInBrowser(server.url, user.email, PASSWORD);
      const form = await browser.request(`${server.url}/account/password`);
      const refused = await browser.request(`${server.url}/account/password`, {
        form: { csrf: hiddenField(form.text, 'csrf'), current_password: 'not the password at all', new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD },
      });
      assert.equal(refused.status, 400);
      const name = await browser.request(`${server.url}/account/name`);
      assert.equal((await browser.request(`${server.url}/account/name`, { form: { csrf: hiddenField(name.text, 'csrf'), name: 'Ada' } })).status, 303);
      await settled();
      assert.equal(mailsTo(user.email).length, 0, 'neither a refused password nor a new name is told');
      assert.equal((await eventsOf(user.id)).length, 0);
    });

    it('tells a verified address when its account is deleted on the account page, and an unverified one nothing', async () => {
      const deleteOwn = async (user: { email: string }, password: string) => {
        const browser = await signedInBrowser(server.url, user.email, PASSWORD);
        const form = await browser.request(`${server.url}/account/delete`);
        return browser.request(`${server.url}/account/delete`, { form: { csrf: hiddenField(form.text, 'csrf'), password, confirm: 'delete' } });
      };
      const verified = await aUser();
      await server.gatehouse.storage.users.update(verified.id, { emailVerified: true }, server.gatehouse.clock());
      assert.equal((await deleteOwn(verified, 'not the password at all')).status, 400);
      await settled();
      assert.equal(mailsTo(verified.email).length, 0, 'a refused deletion is not told');
      const deleted = await deleteOwn(verified, PASSWORD);
      assert.equal(deleted.status, 200, deleted.text.slice(0, 300));
      await settled();
      const [notice, ...more] = mailsTo(verified.email);
      assert.ok(notice, 'a notice');
      assert.equal(more.length, 0);
      assert.match(notice.subject, /account .* was deleted/);
      assert.match(notice.text, /on the account page/);
      assert.match(notice.text, /This cannot be undone/);
      assert.match(notice.text, /\d{2}:\d{2}:\d{2} UTC/, 'says when');
      assert.ok(notice.html.includes('was deleted'));
      assert.doesNotMatch(notice.raw, /gate_[a-z]+_|token=|horse/, 'no token, nor password');
      const [event] = await eventsOf(verified.id);
      assert.deepEqual(event?.data, { change: 'deleted' });

      const unverified = await aUser();
      assert.equal((await deleteOwn(unverified, PASSWORD)).status, 200);
      await settled();
      assert.equal(mailsTo(unverified.email).length, 0, 'an address never proved may be someone else’s');
      assert.equal((await eventsOf(unverified.id)).length, 0);
    });

    it('tells the address when the password is reset with an emailed link', async () => {
      const user = await aUser();
      const browser = new HttpBrowser();
      const forgot = await browser.request(`${server.url}/password/forgot`);
      await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(forgot.text, 'csrf'), email: user.email } });
      await server.gatehouse.passwordResets.settled();
      const link = resetLinkIn(mailsTo(user.email).at(-1)!);
      await browser.request(link);
      const form = await browser.request(`${server.url}/password/reset`);
      const reset = await browser.request(`${server.url}/password/reset`, { form: { csrf: hiddenField(form.text, 'csrf'), new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD } });
      assert.ok(reset.status < 400, `${reset.status} ${reset.text.slice(0, 300)}`);
      await settled();
      const [, notice, ...more] = mailsTo(user.email);
      assert.ok(notice, 'a notice after the link');
      assert.equal(more.length, 0);
      assert.match(notice.text, /with a password reset link/);
      assertNotice(notice);
    });

    it('tells the address when an operator sets the password through the admin API, naming the application, with links on the issuer whatever the Host', async () => {
      const user = await aUser();
      const answer = await sendRaw(server.url, {
        path: `/admin/v1/users/${user.id}/password`,
        headers: { host: 'evil.example', authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(JSON.stringify({ password: NEW_PASSWORD })) },
        body: JSON.stringify({ password: NEW_PASSWORD }),
      });
      assert.equal(answer.status, 204, answer.text);
      await settled();
      const [notice] = mailsTo(user.email);
      assert.ok(notice, 'a notice');
      assert.match(notice.text, /by an operator of this service, through its admin API \(the application “Back office”\)/);
      assertNotice(notice);
      assert.doesNotMatch(notice.raw, /evil\.example/);
    });

    it('tells the old address, and only it, when an operator changes the email; nothing when the change is refused or changes nothing', async () => {
      const user = await aUser();
      const other = await aUser();
      const taken = await adminApi('PATCH', `/users/${user.id}`, { email: other.email });
      assert.equal(taken.status, 409);
      const same = await adminApi('PATCH', `/users/${user.id}`, { email: user.email.toUpperCase(), name: 'Ada' });
      assert.equal(same.status, 200);
      const invalid = await adminApi('PATCH', `/users/${user.id}`, { email: 'not an email' });
      assert.equal(invalid.status, 400);
      await settled();
      assert.equal(mailsTo(user.email).length + mailsTo(other.email).length, 0, 'nothing for a refused change nor one that keeps the email');

      const newEmail = `moved-${counter}-${dialect}@elsewhere.example`;
      const moved = await adminApi('PATCH', `/users/${user.id}`, { email: newEmail });
      assert.equal(moved.status, 200);
      await settled();
      const [notice, ...more] = mailsTo(user.email);
      assert.ok(notice, 'the old address is told');
      assert.equal(more.length, 0);
      assert.equal(mailsTo(newEmail).length, 0, 'the new address is not the one to warn');
      assert.match(notice.subject, /email address .* was changed/);
      assert.ok(notice.text.includes('m***@elsewhere.example'), notice.text);
      assert.ok(!notice.raw.includes(newEmail) && !notice.raw.includes(newEmail.split('@')[0]!), 'the new address masked');
      assert.match(notice.text, /through its admin API/);
      assertNotice(notice);
      const [event] = await eventsOf(user.id);
      assert.deepEqual(event?.data, { change: 'email' });
    });

    it('tells the address when an operator sets the password or changes the email on the command line', async () => {
      const user = await aUser();
      const env = { ...databaseEnv(server.database), GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: server.url, GATEHOUSE_SMTP_URL: mail.url, GATEHOUSE_MAIL_FROM: FROM };
      const set = await runCli(['user', 'set-password', user.email, '--password-stdin'], env, 60_000, `${NEW_PASSWORD}\n`);
      assert.equal(set.code, 0, set.stderr);
      const newEmail = `cli-${counter}-${dialect}@elsewhere.example`;
      const updated = await runCli(['user', 'update', user.id, '--email', newEmail], env);
      assert.equal(updated.code, 0, updated.stderr);
      const [password, email, ...more] = mailsTo(user.email);
      assert.ok(password && email, `two notices: ${mailsTo(user.email).map((m) => m.subject).join(', ')}`);
      assert.equal(more.length, 0);
      assert.match(password.text, /by an operator of this service, on its command line/);
      assert.match(email.text, /c\*\*\*@elsewhere\.example/);
      assertNotice(password);
      assertNotice(email);
      assert.equal(mailsTo(newEmail).length, 0);
    });

    it('makes the change, audited as mail_not_sent and logged without secrets, when the mail server refuses the notice', async () => {
      const user = await aUser();
      mail.refuseLogins = true;
      try {
        const answer = await adminApi('POST', `/users/${user.id}/password`, { password: NEW_PASSWORD });
        assert.equal(answer.status, 204);
        await settled();
      } finally {
        mail.refuseLogins = false;
      }
      assert.equal(mailsTo(user.email).length, 0);
      const [event] = await eventsOf(user.id);
      assert.equal(event?.outcome, 'failure');
      assert.deepEqual(event.data, { change: 'password', reason: 'mail_not_sent' });
      const line = logged.find((l) => l.includes('a notice of an account change could not be sent'));
      assert.ok(line, logged.join(''));
      assert.ok(!line.includes(mail.password) && !line.includes(NEW_PASSWORD));
      const signIn = await post(`${server.url}/login`, {});
      assert.notEqual(signIn.status, 500);
    });
  });
}

describe('notices of account changes without mail settings', { timeout: 60_000 }, () => {
  let server: TestServer;
  let mail: TestMailServer;
  before(async () => {
    mail = await startMailServer();
    server = await startTestServer('sqlite');
  });
  after(async () => {
    await server?.close();
    await mail?.close();
  });

  it('sends nothing, and changes are made as before', async () => {
    const user = await server.user('unmailed@example.com', PASSWORD);
    const browser = await signedInBrowser(server.url, user.email, PASSWORD);
    const form = await browser.request(`${server.url}/account/password`);
    const changed = await browser.request(`${server.url}/account/password`, {
      form: { csrf: hiddenField(form.text, 'csrf'), current_password: PASSWORD, new_password: NEW_PASSWORD, confirm_password: NEW_PASSWORD },
    });
    assert.equal(changed.status, 303);
    assert.equal(server.gatehouse.accountNotices.enabled, false);
    await server.gatehouse.accountNotices.settled();
    await server.gatehouse.audit.flush();
    assert.equal((await server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.change_notified' })).length, 0);
    assert.equal(mail.received.length, 0);
  });
});
