import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startMailServer, type TestMailServer } from '../support/smtp.ts';

/*
 * How mail reaches the mail server, over real SMTP: the SMTP user and password never cross the
 * network in clear. A server on another machine that offers no STARTTLS (or one whose offer someone
 * on the path strips) gets no log-in and no mail, unless the operator says in the URL that it may.
 */

const PASSWORD = 'correct horse battery staple';

/** An IPv4 address of this machine that is not loopback: a mail server there is on the network. */
const networkAddress = Object.values(networkInterfaces())
  .flat()
  .find((entry) => entry !== undefined && entry.family === 'IPv4' && !entry.internal)?.address;

describe('mail to a server on the network', { timeout: 60_000, skip: networkAddress === undefined && 'this machine has no address but loopback' }, () => {
  let mail: TestMailServer;
  const servers: TestServer[] = [];
  let counter = 0;

  before(async () => {
    mail = await startMailServer({ host: networkAddress! });
  });
  after(async () => {
    for (const server of servers) await server.close();
    await mail?.close();
  });

  const gatehouseMailingTo = async (smtpUrl: string) => {
    const server = await startTestServer('sqlite', { env: { GATEHOUSE_SMTP_URL: smtpUrl, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@gatehouse.example>' } });
    servers.push(server);
    return server;
  };
  /** Asks for a password reset link for a new account; its address, once the mail has gone or failed. */
  const askForLink = async (server: TestServer) => {
    const { email } = await server.user(`transport-${++counter}@example.com`, PASSWORD);
    const browser = new HttpBrowser();
    const form = await browser.request(`${server.url}/password/forgot`);
    const answer = await browser.request(`${server.url}/password/forgot`, { form: { csrf: hiddenField(form.text, 'csrf'), email } });
    assert.equal(answer.status, 303, answer.text.slice(0, 300));
    assert.equal(answer.location, '/password/sent');
    await server.gatehouse.passwordResets.settled();
    return email;
  };
  const resetAudit = async (server: TestServer, email: string) => {
    await server.gatehouse.audit.flush();
    const user = (await server.gatehouse.storage.users.findByEmail(email))!;
    return server.gatehouse.storage.audit.query({ userId: user.id, kind: 'user.password_reset_requested' });
  };

  it('sends no user and password, and no mail, to a server that offers no STARTTLS; the page answers as ever', async () => {
    const server = await gatehouseMailingTo(mail.url);
    const [logins, received] = [mail.logins, mail.received.length];
    const email = await askForLink(server);
    assert.equal(mail.logins, logins, 'the SMTP password did not cross the network in clear');
    assert.equal(mail.received.length, received, 'nor did the link');
    const [event] = await resetAudit(server, email);
    assert.deepEqual([event?.outcome, event?.data], ['failure', { reason: 'mail_not_sent', address: '127.0.0.1' }]);
  });

  it('sends in clear when the URL says so (requireTLS=false)', async () => {
    const server = await gatehouseMailingTo(`${mail.url}?requireTLS=false`);
    const email = await askForLink(server);
    assert.ok(mail.received.some((m) => m.to.includes(email)), 'the mail went');
    const [event] = await resetAudit(server, email);
    assert.equal(event?.outcome, 'success');
  });
});
