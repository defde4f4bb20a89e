import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LAST_USE_PRECISION_SECONDS } from '../../src/core/sessions.ts';
import { digestOf } from '../../src/core/tokens/opaque.ts';
import { HttpBrowser, hiddenField, ProxiedBrowser, signedInBrowser } from '../support/browser.ts';
import { countRows, DIALECTS } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/*
 * The browsers signed in to a person's account, on their account page (Keycloak's device activity,
 * Google's and GitHub's session lists): each with what it signed in with, from where, when, and
 * when last used, this one marked, and any other signed out with its own button, as a sign-out in
 * it would.
 */

const PASSWORD = 'correct horse battery staple';
const FIREFOX_ON_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
const SAFARI_ON_IOS = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1';
const START = 1_900_000_000;

/** The entries of the account page's list of browsers, as text without tags. */
function listedBrowsers(html: string): string[] {
  const list = /<ul class="apps" aria-label="Browsers signed in to your account">([\s\S]*?)<\/ul>/.exec(html)?.[1];
  assert.ok(list, 'no list of browsers on the page');
  return [...list.matchAll(/<li class="app">([\s\S]*?)<\/li>/g)].map((match) => match[1]!.replace(/<input[^>]*value="([^"]*)"[^>]*>/g, '[$1]').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim());
}

for (const dialect of DIALECTS) {
  describe(`the browsers signed in to an account, on its page (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let now = START;
    let counter = 0;

    before(async () => {
      server = await startTestServer(dialect, { clock: () => now, env: { GATEHOUSE_TRUST_PROXY: 'true' } });
    });
    after(() => server.close());

    const aUser = () => server.user(`device-${++counter}-${dialect}@example.com`, PASSWORD);
    const signIn = (email: string, address: string, userAgent: string) => signedInBrowser(server.url, email, PASSWORD, new ProxiedBrowser(address, userAgent));
    const isSignedIn = async (browser: HttpBrowser) => {
      const page = await browser.request(`${server.url}/account`);
      assert.ok(page.status === 200 || page.status === 302, `status ${page.status}`);
      return page.status === 200;
    };
    const sessionOf = (browser: HttpBrowser) => server.gatehouse.storage.sessions.find(digestOf(browser.cookies.get('gatehouse_session')!));
    const sidOf = async (browser: HttpBrowser) => (await sessionOf(browser))!.sid!;
    const signOut = async (browser: HttpBrowser, session: string, csrf?: string) => {
      const page = await browser.request(`${server.url}/account`);
      return browser.request(`${server.url}/account/sessions/sign-out`, { form: { csrf: csrf ?? hiddenField(page.text, 'csrf'), session } });
    };
    const eventsOf = async (userId: string, kind: string) => {
      await server.gatehouse.audit.flush();
      return server.gatehouse.storage.audit.query({ userId, kind });
    };

    it('lists each browser signed in, newest first, with its browser and system, address and times, this one marked', async () => {
      const user = await aUser();
      const laptop = await signIn(user.email, '203.0.113.7', FIREFOX_ON_LINUX);
      now += 120;
      const phone = await signIn(user.email, '2001:db8::42', SAFARI_ON_IOS);

      const page = await phone.request(`${server.url}/account`);
      assert.equal(page.status, 200);
      const laptopSid = await sidOf(laptop);
      assert.deepEqual(listedBrowsers(page.text), [
        `Safari on iOS This browser from 2001:db8::42 Signed in 2030-03-17 17:48 UTC · last used 2030-03-17 17:48 UTC`,
        `Firefox on Linux from 203.0.113.7 Signed in 2030-03-17 17:46 UTC · last used 2030-03-17 17:46 UTC [${hiddenField(page.text, 'csrf')}] [${laptopSid}] Sign out`,
      ]);
      assert.match(page.text, /aria-label="Sign out Firefox on Linux from 203\.0\.113\.7, signed in 2030-03-17 17:46 UTC"/);
      // Neither cookie, nor what is stored of it, is on the page.
      for (const browser of [laptop, phone]) {
        const cookie = browser.cookies.get('gatehouse_session')!;
        assert.ok(!page.text.includes(cookie) && !page.text.includes(digestOf(cookie)));
      }
      assert.ok(!page.text.includes('rv:133.0') && !page.text.includes('Mobile/15E148'), 'the User-Agent header is not shown');
    });

    it('records the last use a few minutes apart at most, not on every request', async () => {
      const user = await aUser();
      const browser = await signIn(user.email, '203.0.113.8', FIREFOX_ON_LINUX);
      const signedInAt = now;
      now += 60;
      assert.ok(await isSignedIn(browser));
      assert.equal((await sessionOf(browser))?.lastUsedAt, signedInAt, 'recently used: nothing written');
      now = signedInAt + LAST_USE_PRECISION_SECONDS;
      assert.ok(await isSignedIn(browser));
      assert.equal((await sessionOf(browser))?.lastUsedAt, now);
      const usedAt = now;
      now += LAST_USE_PRECISION_SECONDS - 1;
      assert.ok(await isSignedIn(browser));
      assert.equal((await sessionOf(browser))?.lastUsedAt, usedAt);
    });

    it('stores a named browser only, and an address only when it is one', async () => {
      const user = await aUser();
      const odd = await signIn(user.email, 'not-an-address', `<script>alert(1)</script> ${'x'.repeat(5000)}`);
      const session = await sessionOf(odd);
      assert.equal(session?.device, null);
      assert.equal(session?.address, null);
      const page = await odd.request(`${server.url}/account`);
      assert.deepEqual(listedBrowsers(page.text).map((entry) => entry.split(' Signed in')[0]), ['Unknown browser This browser from unknown address']);
      assert.ok(!page.text.includes('<script>alert(1)'));
    });

    it('signs another browser out as a sign-out in it would, and records it with the address', async () => {
      const user = await aUser();
      const laptop = await signIn(user.email, '203.0.113.9', FIREFOX_ON_LINUX);
      const phone = await signIn(user.email, '2001:db8::43', SAFARI_ON_IOS);
      const sid = await sidOf(laptop);

      const answer = await signOut(phone, sid);
      assert.equal(answer.status, 303);
      assert.equal(answer.location, '/account?signed_out=session');
      assert.equal(await isSignedIn(laptop), false, 'its cookie no longer works');
      assert.equal(await isSignedIn(phone), true, 'this one stays signed in');
      const page = await phone.request(`${server.url}${answer.location}`);
      assert.match(page.text, /<p class="notice" role="status">That browser is signed out\./);
      assert.equal(listedBrowsers(page.text).length, 1);
      assert.deepEqual(
        (await eventsOf(user.id, 'user.session_signed_out')).map((event) => event.data),
        [{ sid, address: '2001:db8::43' }],
      );

      // Sent again (Back, Reload): it has ended, and nothing else is.
      const again = await signOut(phone, sid);
      assert.equal(again.status, 404);
      assert.match(again.text, /That browser is not signed in/);
      assert.equal(await isSignedIn(phone), true);
    });

    it('changes nothing for another person’s browser, an unknown one, this one, or a form without its token', async () => {
      const user = await aUser();
      const other = await aUser();
      const here = await signIn(user.email, '203.0.113.10', FIREFOX_ON_LINUX);
      const elsewhere = await signIn(user.email, '203.0.113.11', SAFARI_ON_IOS);
      const someoneElse = await signIn(other.email, '203.0.113.12', FIREFOX_ON_LINUX);
      const sessions = await countRows(server.database, 'sessions');

      const theirs = await signOut(here, await sidOf(someoneElse));
      assert.equal(theirs.status, 404, 'told as an unknown one is');
      assert.match(theirs.text, /Nothing was changed/);
      for (const handle of ['0123456789abcdef0123456789abcdef', '', 'x'.repeat(5000)]) {
        const unknown = await signOut(here, handle);
        assert.equal(unknown.status, 404, `"${handle.slice(0, 40)}"`);
      }
      const digest = digestOf(elsewhere.cookies.get('gatehouse_session')!);
      assert.equal((await signOut(here, digest)).status, 404, 'a digest names no browser');

      const current = await signOut(here, await sidOf(here));
      assert.equal(current.status, 400);
      assert.match(current.text, /This is the browser you are using/);
      assert.match(current.text, /Sign out button on your account page/);

      const forged = await signOut(here, await sidOf(elsewhere), 'not-the-token');
      assert.equal(forged.status, 403);
      assert.match(forged.text, /nothing was changed/);

      const signedOut = new ProxiedBrowser('203.0.113.13', FIREFOX_ON_LINUX);
      const form = await signedOut.request(`${server.url}/login`);
      const anonymous = await signedOut.request(`${server.url}/account/sessions/sign-out`, { form: { csrf: hiddenField(form.text, 'csrf'), session: await sidOf(elsewhere) } });
      assert.equal(anonymous.status, 303);
      assert.match(anonymous.location ?? '', /^\/login\?next=/);

      const asked = await here.request(`${server.url}/account/sessions/sign-out`);
      assert.equal(asked.status, 405);
      assert.equal(asked.headers.get('allow'), 'POST');

      assert.equal(await countRows(server.database, 'sessions'), sessions);
      for (const browser of [here, elsewhere, someoneElse]) assert.equal(await isSignedIn(browser), true);
      assert.deepEqual(await eventsOf(user.id, 'user.session_signed_out'), []);
    });

    it('lists at most 50 browsers, and this one always', async () => {
      const user = await aUser();
      const last = { browser: undefined as HttpBrowser | undefined };
      let first: HttpBrowser | undefined;
      for (let i = 0; i < 51; i++) {
        now += 1;
        last.browser = await signIn(user.email, `198.51.100.${i + 1}`, FIREFOX_ON_LINUX);
        first ??= last.browser;
      }
      const page = await last.browser!.request(`${server.url}/account`);
      const listed = listedBrowsers(page.text);
      assert.equal(listed.length, 50);
      assert.match(listed[0]!, /This browser from 198\.51\.100\.51 /);
      assert.match(listed[49]!, /from 198\.51\.100\.2 /, 'the oldest one is left out');

      // The oldest browser still sees itself, marked, above the 50 newer ones.
      const oldest = listedBrowsers((await first!.request(`${server.url}/account`)).text);
      assert.equal(oldest.length, 51);
      assert.match(oldest[0]!, /This browser from 198\.51\.100\.1 /);
    });
  });
}
