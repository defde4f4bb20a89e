import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HttpBrowser, hiddenField, signedInBrowser } from '../support/browser.ts';
import { countRows } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * Unicode normalization (NFC, NFKC, and UTS #46 for a domain) takes time quadratic in the length of
 * a run of combining marks: ICU puts them in canonical order one by one. A 64 KiB body of U+0301 and
 * U+0316 held the event loop — every token request of the process — for about a second. No request
 * may have the server normalize more than the longest email (320) or password (1024) one can have.
 * The longest string normalized while a request is answered is what is asserted: a count, not a time.
 */

const MARKS = `a${'\u0301\u0316'.repeat(5_000)}`;
const LONGEST_EMAIL = 320;
const LONGEST_PASSWORD = 1024;

describe('Unicode normalization of what a request sends', { timeout: 60_000 }, () => {
  let server: TestServer;
  let mobile: { id: string; secret: string };
  const normalize = String.prototype.normalize;
  let longestNormalized = 0;

  before(async () => {
    server = await startTestServer('sqlite');
    mobile = await server.client({ name: 'Trusted mobile app', grantTypes: ['password'], scopes: ['objects:read'] });
    await server.user('ada@example.com', 'correct horse battery staple');
    String.prototype.normalize = function (this: string, form?: 'NFC' | 'NFD' | 'NFKC' | 'NFKD') {
      longestNormalized = Math.max(longestNormalized, this.length);
      return normalize.call(this, form);
    };
  });
  after(async () => {
    String.prototype.normalize = normalize;
    await server?.close();
  });
  beforeEach(() => {
    longestNormalized = 0;
  });

  const submit = async (path: string, form: Record<string, string>, browser = new HttpBrowser()) => {
    const page = await browser.request(`${server.url}${path}`);
    longestNormalized = 0;
    return browser.request(`${server.url}${path}`, { form: { csrf: hiddenField(page.text, 'csrf'), ...form } });
  };

  it('refuses a sign-up with an email of thousands of combining marks without normalizing it, and stores no user', async () => {
    const users = await countRows(server.database, 'users');
    const answer = await submit('/signup', { email: `ada@example.com${MARKS}`, name: 'Ada', password: 'correct horse battery staple' });
    assert.equal(answer.status, 400);
    assert.match(answer.text, /email/i);
    assert.ok(longestNormalized <= LONGEST_EMAIL, `normalized ${longestNormalized} characters`);
    assert.equal(await countRows(server.database, 'users'), users);
  });

  it('refuses a sign-up with a password of thousands of combining marks without normalizing it, and stores no user', async () => {
    const users = await countRows(server.database, 'users');
    const answer = await submit('/signup', { email: 'grace@example.com', name: 'Grace', password: MARKS });
    assert.equal(answer.status, 400);
    assert.match(answer.text, /longer than 1024 characters/);
    assert.ok(longestNormalized <= LONGEST_PASSWORD, `normalized ${longestNormalized} characters`);
    assert.equal(await countRows(server.database, 'users'), users);
  });

  it('answers a sign-in with a password of thousands of combining marks as a wrong password, without normalizing it', async () => {
    for (const email of ['ada@example.com', 'nobody@example.com']) {
      const answer = await submit('/login', { email, password: MARKS });
      assert.equal(answer.status, 401, email);
      assert.match(answer.text, /The email or password is not right/);
      assert.ok(longestNormalized <= LONGEST_PASSWORD, `${email}: normalized ${longestNormalized} characters`);
    }
  });

  it('answers the password grant with such a password invalid_grant, without normalizing it', async () => {
    // The longest parameter the token endpoint reads.
    const password = MARKS.slice(0, 8192);
    const answer = await post(`${server.url}/token`, { grant_type: 'password', username: 'ada@example.com', password }, { headers: { authorization: basic(mobile.id, mobile.secret) } });
    assert.equal(answer.status, 400);
    assert.equal(answer.body.error, 'invalid_grant');
    assert.ok(longestNormalized <= LONGEST_PASSWORD, `normalized ${longestNormalized} characters`);
  });

  it('refuses such a new password, or such a current one, on the account page without normalizing them', async () => {
    const browser = await signedInBrowser(server.url, 'ada@example.com', 'correct horse battery staple');
    const password = await submit('/account/password', { current_password: 'correct horse battery staple', new_password: MARKS, confirm_password: 'a' }, browser);
    assert.equal(password.status, 400);
    assert.ok(longestNormalized <= LONGEST_PASSWORD, `new password: normalized ${longestNormalized} characters`);
    const current = await submit('/account/password', { current_password: MARKS, new_password: 'a new horse battery staple', confirm_password: 'a new horse battery staple' }, browser);
    assert.equal(current.status, 400);
    assert.match(current.text, /The current password is not right/);
    assert.ok(longestNormalized <= LONGEST_PASSWORD, `current password: normalized ${longestNormalized} characters`);
  });

  it('refuses such an email on the account page without normalizing it, and keeps the account\'s', async () => {
    const browser = await signedInBrowser(server.url, 'ada@example.com', 'correct horse battery staple');
    const email = await submit('/account/email', { email: `ada@example.org${MARKS}`, current_password: 'correct horse battery staple' }, browser);
    assert.equal(email.status, 400);
    assert.match(email.text, /Enter a valid email address/);
    assert.ok(longestNormalized <= LONGEST_EMAIL, `email: normalized ${longestNormalized} characters`);
    assert.equal((await server.gatehouse.storage.users.findByEmail('ada@example.com'))?.email, 'ada@example.com');
  });
});
