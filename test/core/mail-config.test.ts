import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, describeSmtpUrl, loadConfig } from '../../src/core/config.ts';
import { mailFailure } from '../../src/logging.ts';

/*
 * The mail settings (password reset by email): an SMTP URL and the address mail is sent from,
 * validated at start-up without ever repeating the URL, which may hold the SMTP password.
 */

const SECRET = 'test-master-secret-that-is-long-enough-0123456789';
const PASSWORD = 'hunter2-smtp-password';
const load = (env: Record<string, string>, file = {}) => loadConfig({ GATEHOUSE_SECRET: SECRET, GATEHOUSE_DATA_DIR: '/nonexistent/gatehouse', ...env }, file);

describe('mail settings', () => {
  it('are off by default: no SMTP URL, no sender, password reset by email unavailable', () => {
    assert.deepEqual(load({}).mail, { smtpUrl: undefined, from: undefined });
    assert.deepEqual(load({}).passwordReset, { tokenTtlSeconds: 1800, maxRequestsPerAccount: 3, maxRequestsPerAddress: 20, windowSeconds: 3600 });
  });

  it('take GATEHOUSE_SMTP_URL and GATEHOUSE_MAIL_FROM over the file', () => {
    const url = `smtps://mailer:${PASSWORD}@mail.example:465`;
    const config = load({ GATEHOUSE_SMTP_URL: url, GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@example.com>' }, { mail: { smtpUrl: 'smtp://file.example', from: 'file@example.com' } });
    assert.deepEqual(config.mail, { smtpUrl: url, from: 'Gatehouse <no-reply@example.com>' });
    assert.deepEqual(load({}, { mail: { smtpUrl: 'smtp://file.example:587', from: 'file@example.com' } }).mail, { smtpUrl: 'smtp://file.example:587', from: 'file@example.com' });
  });

  for (const [what, env, pattern] of [
    ['a URL of another scheme', { GATEHOUSE_SMTP_URL: `https://mailer:${PASSWORD}@mail.example`, GATEHOUSE_MAIL_FROM: 'a@example.com' }, /GATEHOUSE_SMTP_URL must be an smtp:\/\/ or smtps:\/\/ URL/],
    ['no URL at all', { GATEHOUSE_SMTP_URL: `mailer:${PASSWORD}@mail.example`, GATEHOUSE_MAIL_FROM: 'a@example.com' }, /GATEHOUSE_SMTP_URL must be/],
    ['no sender', { GATEHOUSE_SMTP_URL: `smtp://mailer:${PASSWORD}@mail.example` }, /GATEHOUSE_MAIL_FROM \(or mail.from\) must be set when GATEHOUSE_SMTP_URL is/],
    ['a sender that is no address', { GATEHOUSE_SMTP_URL: `smtp://mailer:${PASSWORD}@mail.example`, GATEHOUSE_MAIL_FROM: 'Gatehouse' }, /GATEHOUSE_MAIL_FROM must be an email address/],
    ['a sender with a line break (a header of its own)', { GATEHOUSE_SMTP_URL: `smtp://mailer:${PASSWORD}@mail.example`, GATEHOUSE_MAIL_FROM: 'Gatehouse\r\nBcc: x@evil.example <a@example.com>' }, /GATEHOUSE_MAIL_FROM must be an email address/],
  ] as const) {
    it(`refuse ${what}, naming the setting and never the URL`, () => {
      assert.throws(() => load(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, pattern);
        assert.equal(error.message.includes(PASSWORD), false, 'the password is never repeated');
        return true;
      });
    });
  }

  it('are shown without the user and password, and a failure to send is logged without them', () => {
    const url = `smtp://mailer:${encodeURIComponent('p@ss word')}@mail.example:587`;
    assert.equal(describeSmtpUrl(url), 'smtp://mail.example:587');
    const failure = Object.assign(new Error(`Invalid login: 535 Authentication failed for mailer (${Buffer.from('\0mailer\0p@ss word').toString('base64')}) p@ss word`), { code: 'EAUTH' });
    const logged = mailFailure(failure, url);
    assert.match(logged, /^EAUTH: Invalid login: 535/);
    assert.equal(logged.includes('p@ss word'), false);
    assert.equal(logged.includes('mailer'), false);
  });
});

describe('email verification settings', () => {
  const MAIL = { GATEHOUSE_SMTP_URL: 'smtp://mail.example:587', GATEHOUSE_MAIL_FROM: 'no-reply@example.com' };

  it('verify the addresses of new accounts by default when mail is set, and not without it', () => {
    assert.equal(load(MAIL).signup.verifyEmail, true);
    assert.equal(load({}).signup.verifyEmail, false);
    assert.equal(load(MAIL, { signup: { verifyEmail: false } }).signup.verifyEmail, false);
    assert.deepEqual(load({}).emailVerification, { tokenTtlSeconds: 86_400, maxRequestsPerAccount: 3, maxRequestsPerAddress: 20, windowSeconds: 3600 });
    assert.equal(load(MAIL, { emailVerification: { tokenTtlSeconds: 3600 } }).emailVerification.tokenTtlSeconds, 3600);
  });

  it('refuse signup.verifyEmail without mail, and a link lifetime out of bounds, naming the setting', () => {
    assert.throws(() => load({}, { signup: { verifyEmail: true } }), /signup\.verifyEmail needs mail: set GATEHOUSE_SMTP_URL/);
    assert.throws(() => load(MAIL, { signup: { verifyEmail: 'yes' } }), /signup\.verifyEmail must be true or false/);
    assert.throws(() => load(MAIL, { emailVerification: { tokenTtlSeconds: 60 } }), /emailVerification\.tokenTtlSeconds/);
  });
});
