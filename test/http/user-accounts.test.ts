import assert from 'node:assert/strict';
import { argon2Sync, randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { hashPassword } from '../../src/core/passwords.ts';
import { setUserDisabled, signOutUser } from '../../src/core/users.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * User accounts as people and operators make them: an email names one account however it is
 * typed (case, Unicode normalization form, surrounding spaces), and a password is the same password
 * however the keyboard composed it (NIST SP 800-63B §5.1.1.2: normalized with NFKC before hashing).
 */

const nfc = (value: string) => value.normalize('NFC');
const nfd = (value: string) => value.normalize('NFD');

const MAX_FAILURES_PER_ACCOUNT = 3;

for (const dialect of DIALECTS) {
  describe(`user accounts (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let admin: { id: string; secret: string };
    let mobile: { id: string; secret: string };
    let adminAuth: string;

    const passwordGrant = (username: string, password: string) =>
      post(`${server.url}/token`, { grant_type: 'password', client_id: mobile.id, client_secret: mobile.secret, username, password });
    const createUser = async (body: Record<string, unknown>) => {
      const response = await fetch(`${server.url}/admin/v1/users`, { method: 'POST', headers: { authorization: adminAuth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as any };
    };
    const userCount = async () => (await server.gatehouse.storage.users.list()).length;
    const signUp = async (email: string, password: string) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      return browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'New person', password } });
    };
    const signIn = async (email: string, password: string) => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      return browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email, password } });
    };
    /** `email` is refused by the admin API (creating a user, and changing `userId`'s email) and at sign-up. */
    const assertEmailRefused = async (email: string, userId: string) => {
      const password = 'correct horse battery staple';
      const created = await createUser({ email, password });
      assert.equal(created.status, 400, `${JSON.stringify(email)}: ${JSON.stringify(created.body)}`);
      assert.ok(created.body.errors?.some((e: { field: string }) => e.field === 'email'), JSON.stringify(created.body));
      const signedUp = await signUp(email, password);
      assert.equal(signedUp.status, 400, JSON.stringify(email));
      assert.match(signedUp.text, /A valid email address is required/);
      const changed = await fetch(`${server.url}/admin/v1/users/${userId}`, { method: 'PATCH', headers: { authorization: adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ email }) });
      assert.equal(changed.status, 400, JSON.stringify(email));
    };
    /** An account stored with `email` (as one made before a rule refused it could be) signs in, on the page and with the password grant. */
    const assertOldAccountSignsIn = async (email: string, password: string) => {
      const old = await server.gatehouse.storage.users.create(
        { id: crypto.randomUUID(), email, name: '', passwordHash: await hashPassword(password), emailVerified: false, disabledAt: null },
        server.gatehouse.clock(),
      );
      assert.equal((await signIn(old.email, password)).status, 303);
      assert.equal((await passwordGrant(old.email, password)).status, 200);
    };

    before(async () => {
      server = await startTestServer(dialect, { config: { login: { maxFailuresPerAccount: MAX_FAILURES_PER_ACCOUNT, maxFailuresPerAddress: 1000, windowSeconds: 900 } } });
      admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password'], scopes: ['objects:read'], firstParty: true });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      adminAuth = `Bearer ${token.body.access_token}`;
    });
    after(() => server.close());

    describe('emails', () => {
      it('takes the composed and decomposed forms of an email, in any case, for one account', async () => {
        const email = nfc('josé.müller@example.com');
        const password = 'correct horse battery staple';
        const created = await createUser({ email, password });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal(created.body.email, email);
        const users = await userCount();

        const again = await createUser({ email: nfd(email), password });
        assert.equal(again.status, 409, JSON.stringify(again.body));
        const upper = await createUser({ email: nfd(` ${email.toUpperCase()} `), password });
        assert.equal(upper.status, 409, JSON.stringify(upper.body));
        const signedUp = await signUp(nfd(email), password);
        assert.equal(signedUp.status, 400);
        assert.match(signedUp.text, /This email cannot be used to create an account/);
        assert.equal(await userCount(), users, 'no second account that looks the same');

        for (const typed of [nfd(email), nfd(email.toUpperCase()), ` ${nfc(email.toUpperCase())} `]) {
          const token = await passwordGrant(typed, password);
          assert.equal(token.status, 200, `${JSON.stringify(typed)}: ${JSON.stringify(token.body)}`);
          const page = await signIn(typed, password);
          assert.equal(page.status, 303, `${JSON.stringify(typed)}: ${page.text.slice(0, 200)}`);
        }
        assert.equal((await server.gatehouse.storage.users.findByEmail(nfd(email)))?.id, created.body.id);
      });

      it('takes an internationalized domain in its ASCII (xn--) form, as browsers send it, for the Unicode one', async () => {
        const password = 'correct horse battery staple';
        const created = await createUser({ email: 'ana@bücher.example', password });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal((await createUser({ email: 'ana@xn--bcher-kva.example', password })).status, 409);
        assert.equal((await signUp('Ana@XN--BCHER-KVA.example', password)).status, 400);
        assert.equal((await passwordGrant('ana@xn--bcher-kva.example', password)).status, 200);
        assert.equal((await signIn('ana@xn--bcher-kva.example', password)).status, 303);
        const ascii = await createUser({ email: 'ida@xn--bcher-kva.example', password });
        assert.equal(ascii.body.email, 'ida@bücher.example', 'stored in one form');
      });

      it('creates one account of the forms of an email sent at once', async () => {
        const email = nfc('zoë.ångström@example.com');
        const forms = [email, nfd(email), email.toUpperCase(), nfd(email.toUpperCase())];
        const users = await userCount();
        const answers = await Promise.all(forms.flatMap((form) => [form, form]).map((form) => createUser({ email: form, password: 'correct horse battery staple' })));
        assert.deepEqual(answers.map((a) => a.status).sort(), [201, 409, 409, 409, 409, 409, 409, 409], JSON.stringify(answers.map((a) => a.body)));
        assert.equal(await userCount(), users + 1);
      });

      it('counts the failed sign-ins of every form of an email against the one account', async () => {
        const email = nfc('rené.çelik@example.com');
        const password = 'correct horse battery staple';
        assert.equal((await createUser({ email, password })).status, 201);
        for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) assert.equal((await passwordGrant(email, 'not the password')).status, 400);
        const token = await passwordGrant(nfd(email), password);
        assert.equal(token.status, 429, JSON.stringify(token.body));
        const page = await signIn(nfd(email), password);
        assert.equal(page.status, 429, page.text.slice(0, 200));
      });

      it('refuses an email with a control or invisible formatting character, and stores nothing', async () => {
        const users = await userCount();
        for (const email of ['ctrl\u0001@example.com', 'bell@exam\u0007ple.com', 'zero\u200bwidth@example.com', 'admin@example.com\u202egro', 'soft\u00adhyphen@example.com', 'private\ue000@example.com']) {
          const created = await createUser({ email, password: 'correct horse battery staple' });
          assert.equal(created.status, 400, `${JSON.stringify(email)}: ${JSON.stringify(created.body)}`);
          assert.ok(created.body.errors?.some((e: { field: string }) => e.field === 'email'), JSON.stringify(created.body));
          const signedUp = await signUp(email, 'correct horse battery staple');
          assert.equal(signedUp.status, 400, JSON.stringify(email));
          assert.match(signedUp.text, /A valid email address is required/);
        }
        assert.equal(await userCount(), users);
      });

      it('refuses an email with a compatibility character (full-width, mathematical, ligature), which looks like another address or cannot receive its mail, and stores nothing', async () => {
        const password = 'correct horse battery staple';
        const kept = await createUser({ email: `compat-kept-${dialect}@example.com`, password });
        assert.equal(kept.status, 201, JSON.stringify(kept.body));
        const users = await userCount();
        // As typed with an East Asian input method left in full-width mode; a look-alike of ada@example.com;
        // a full-width @ that makes the address read as one at evil.example; a ligature.
        for (const email of ['ＡＤＡ@example.com', '\u{1d41a}\u{1d41d}\u{1d41a}@example.com', 'ada\uff20evil.example@example.com', '\ufb01le@example.com', 'ada@xn--a.\u{1d41e}xample.com']) {
          await assertEmailRefused(email, kept.body.id);
        }
        assert.equal(await userCount(), users);
        assert.equal((await server.gatehouse.storage.users.findById(kept.body.id))!.email, `compat-kept-${dialect}@example.com`);
        // A domain's full-width form is its ASCII one (UTS #46), as the browser sends it.
        const wide = await createUser({ email: `wide-${dialect}@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com`, password });
        assert.equal(wide.status, 201, JSON.stringify(wide.body));
        assert.equal(wide.body.email, `wide-${dialect}@example.com`);

        // Made before the rule (stored as it was then), such an account still signs in.
        await assertOldAccountSignsIn(`ａｄａ-${dialect}@example.com`, password);
      });

      it('refuses an email whose domain has an empty label, such as the trailing dot that names the same mailbox, and stores nothing; an account that has one still signs in', async () => {
        const password = 'correct horse battery staple';
        const kept = await createUser({ email: `dots-${dialect}@example.com`, password });
        assert.equal(kept.status, 201, JSON.stringify(kept.body));
        const users = await userCount();
        for (const email of [`dots-${dialect}@example.com.`, `dots-${dialect}@EXAMPLE.COM.`, `dots-${dialect}@example..com`, `dots-${dialect}@.example.com`, `dots-${dialect}@.`]) {
          await assertEmailRefused(email, kept.body.id);
        }
        assert.equal(await userCount(), users);
        assert.equal((await server.gatehouse.storage.users.findById(kept.body.id))!.email, `dots-${dialect}@example.com`);

        // Made before the rule (stored as it was then), such an account still signs in.
        await assertOldAccountSignsIn(`dotted-${dialect}@example.com.`, password);
      });

      it('refuses an email that a mail header reads as another mailbox, or several, where an account is made or its email changed; an account that has one still signs in', async () => {
        const password = 'correct horse battery staple';
        const headerly = [
          'ada,mallory@evil.example',
          'ada;mallory@evil.example',
          'ada<mallory@evil.example',
          'ada>@evil.example',
          '(ada)mallory@evil.example',
          'ada@evil.example(comment)',
          'ada:mallory@evil.example',
          '"ada"@evil.example',
          'ada\\mallory@evil.example',
          'ada@[127.0.0.1]',
        ];
        const users = await userCount();
        const kept = await createUser({ email: `kept-${dialect}@example.com`, password });
        assert.equal(kept.status, 201, JSON.stringify(kept.body));
        for (const email of headerly) {
          await assertEmailRefused(email, kept.body.id);
        }
        assert.equal(await userCount(), users + 1);
        assert.equal((await server.gatehouse.storage.users.findById(kept.body.id))!.email, `kept-${dialect}@example.com`);
        // Addresses that are loose but mean themselves in a header stay accepted.
        for (const email of [`o'brien+tag-${dialect}@example.com`, `x!#$%&*=?^_\`{|}~-${dialect}@sub.example.com`]) {
          const created = await createUser({ email, password });
          assert.equal(created.status, 201, `${JSON.stringify(email)}: ${JSON.stringify(created.body)}`);
        }

        // Made before the rule (stored as it was then), such an account still signs in.
        await assertOldAccountSignsIn(`ada,mallory-${dialect}@evil.example`, password);
      });
    });

    describe('names', () => {
      // `gatehouse user list` prints names into the operator's terminal, where ESC [ … rewrites the
      // screen and a line break forges a row; a right-to-left override reverses what follows it.
      const hidden = ['Ada\u001b[2J\u001b[Hroot', 'Ada\nnot-a-user@example.com  Mallory  active', 'Ada\u202eretsinimda', 'Ad\u200ba', 'Ada\u0085'];

      it('refuses a name with a control or invisible formatting character wherever it is set, and stores nothing', async () => {
        const password = 'correct horse battery staple';
        const kept = await createUser({ email: `named-${dialect}@example.com`, password, name: 'Ada' });
        assert.equal(kept.status, 201, JSON.stringify(kept.body));
        const users = await userCount();
        for (const name of hidden) {
          const created = await createUser({ email: `hidden-${dialect}@example.com`, password, name });
          assert.equal(created.status, 400, `${JSON.stringify(name)}: ${JSON.stringify(created.body)}`);
          assert.ok(created.body.errors?.some((e: { field: string }) => e.field === 'name'), JSON.stringify(created.body));
          const changed = await fetch(`${server.url}/admin/v1/users/${kept.body.id}`, { method: 'PATCH', headers: { authorization: adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
          assert.equal(changed.status, 400, JSON.stringify(name));
          const browser = new HttpBrowser();
          const form = await browser.request(`${server.url}/signup`);
          const signedUp = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email: `hidden-${dialect}@example.com`, name, password } });
          assert.equal(signedUp.status, 400, JSON.stringify(name));
          assert.match(signedUp.text, /The name contains an invisible or control character/);
        }
        assert.equal(await userCount(), users);
        assert.equal((await server.gatehouse.storage.users.findById(kept.body.id))!.name, 'Ada');
      });

      it('keeps the joiners that Persian, Indic scripts and emoji need, and a name stored before while it is unchanged', async () => {
        const password = 'correct horse battery staple';
        for (const name of ['\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645', '\u0915\u094d\u200d\u0937', '\u{1f469}\u200d\u{1f4bb} Ada']) {
          const created = await createUser({ email: `joined-${[...name].length}-${dialect}@example.com`, password, name });
          assert.equal(created.status, 201, `${JSON.stringify(name)}: ${JSON.stringify(created.body)}`);
          assert.equal(created.body.name, name);
        }
        const old = await server.gatehouse.storage.users.create(
          { id: crypto.randomUUID(), email: `old-name-${dialect}@example.com`, name: hidden[0]!, passwordHash: await hashPassword(password), emailVerified: false, disabledAt: null },
          server.gatehouse.clock(),
        );
        const unchanged = await fetch(`${server.url}/admin/v1/users/${old.id}`, { method: 'PATCH', headers: { authorization: adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ name: hidden[0], email_verified: true }) });
        assert.equal(unchanged.status, 200, await unchanged.text());
      });
    });

    describe('passwords', () => {
      it('accepts a password in any Unicode normalization form of the one it was set with', async () => {
        const email = 'unicode.password@example.com';
        const password = nfc('Kennwort für Zürich ﬁ ２０２４');
        assert.equal((await createUser({ email, password })).status, 201);
        for (const typed of [password, nfd(password), password.normalize('NFKC'), password.normalize('NFKD')]) {
          const token = await passwordGrant(email, typed);
          assert.equal(token.status, 200, `${JSON.stringify(typed)}: ${JSON.stringify(token.body)}`);
        }
        assert.equal((await signIn(email, nfd(password))).status, 303);
        assert.equal((await passwordGrant(email, 'Kennwort fur Zurich fi 2024')).status, 400, 'what normalization keeps apart stays apart');
      });

      it('counts a password’s length in characters, not UTF-16 code units, wherever it is set', async () => {
        const short = '🔑🔒🗝️🔐';
        const users = await userCount();
        const created = await createUser({ email: 'short.emoji@example.com', password: short });
        assert.equal(created.status, 400, JSON.stringify(created.body));
        assert.ok(created.body.errors?.some((e: { field: string }) => e.field === 'password'), JSON.stringify(created.body));
        const signedUp = await signUp('short.emoji@example.com', short);
        assert.equal(signedUp.status, 400);
        assert.match(signedUp.text, /at least 8 characters/);
        assert.equal(await userCount(), users);

        const enough = '🔑🔒🔐🔓🗝🔏🛡🚪';
        assert.equal((await signUp('long.emoji@example.com', enough)).status, 303);
        assert.equal((await createUser({ email: 'long.emoji.admin@example.com', password: enough })).status, 201);
        assert.equal((await passwordGrant('long.emoji@example.com', enough)).status, 200);
      });
      it('counts a password’s length in the form it is hashed in, so that accents typed as combining marks do not count twice', async () => {
        // "éèêëéèêë" as some input methods send it: each letter and its accent, two code points.
        const four = nfd('éèêë');
        assert.equal([...four].length, 8);
        const users = await userCount();
        const created = await createUser({ email: 'four.accents@example.com', password: four });
        assert.equal(created.status, 400, JSON.stringify(created.body));
        assert.ok(created.body.errors?.some((e: { field: string }) => e.field === 'password'), JSON.stringify(created.body));
        const signedUp = await signUp('four.accents@example.com', four);
        assert.equal(signedUp.status, 400);
        assert.match(signedUp.text, /at least 8 characters/);
        assert.equal(await userCount(), users);

        const eight = nfd('éèêëéèêë');
        assert.equal((await createUser({ email: 'eight.accents@example.com', password: eight })).status, 201);
        assert.equal((await passwordGrant('eight.accents@example.com', nfc(eight))).status, 200);
      });
      /** Argon2id of `message` exactly as given, in the PHC format, with the parameters given. */
      const argon2Hash = (message: string, parameters = { memory: 19456, passes: 2, parallelism: 1 }) => {
        const nonce = randomBytes(16);
        const tag = argon2Sync('argon2id', { message, nonce, ...parameters, tagLength: 32 });
        const b64 = (buffer: Buffer) => buffer.toString('base64').replace(/=+$/, '');
        return `$argon2id$v=19$m=${parameters.memory},t=${parameters.passes},p=${parameters.parallelism}$${b64(nonce)}$${b64(tag)}`;
      };

      it('accepts, as typed, a password whose hash was made before passwords were normalized, and hashes it again normalized at that sign-in', async () => {
        const email = 'legacy.password@example.com';
        const password = 'Ｐａｓｓｗｏｒｔ mit Umlaut ü'.normalize('NFD');
        const user = await createUser({ email, password: 'replaced at once' });
        assert.equal(user.status, 201);
        // What the previous version stored: Argon2id of the password as typed, not normalized.
        const legacy = argon2Hash(password);
        await server.gatehouse.storage.users.setPasswordHash(user.body.id, legacy, server.gatehouse.clock());
        const before = (await server.gatehouse.storage.users.findById(user.body.id))!;
        assert.equal((await passwordGrant(email, password.normalize('NFKC'))).status, 400, 'the old hash holds only the form it was made of');

        assert.equal((await signIn(email, password)).status, 303);
        const after = (await server.gatehouse.storage.users.findById(user.body.id))!;
        assert.notEqual(after.passwordHash, legacy, 'hashed again');
        assert.match(after.passwordHash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        assert.equal(after.updatedAt, before.updatedAt, 'the user’s information did not change');
        for (const typed of [password, password.normalize('NFKC'), password.normalize('NFC')]) {
          assert.equal((await passwordGrant(email, typed)).status, 200, `now any form: ${JSON.stringify(typed)}`);
        }
        assert.equal((await server.gatehouse.storage.users.findById(user.body.id))!.passwordHash, after.passwordHash, 'hashed again once');
        assert.equal((await passwordGrant(email, 'not the password')).status, 400);
      });

      it('hashes a password made with other Argon2id parameters again with today’s at sign-in, and keeps a wrong password from changing anything', async () => {
        const email = 'weaker.hash@example.com';
        const password = 'correct horse battery staple';
        const user = await createUser({ email, password: 'replaced at once' });
        const older = argon2Hash(password, { memory: 8192, passes: 3, parallelism: 1 });
        await server.gatehouse.storage.users.setPasswordHash(user.body.id, older, server.gatehouse.clock());
        assert.equal((await passwordGrant(email, 'a wrong password')).status, 400);
        assert.equal((await server.gatehouse.storage.users.findById(user.body.id))!.passwordHash, older, 'a failed sign-in changes nothing');

        assert.equal((await passwordGrant(email, password)).status, 200);
        const rehashed = (await server.gatehouse.storage.users.findById(user.body.id))!.passwordHash;
        assert.match(rehashed, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
        assert.equal((await signIn(email, password)).status, 303);
        assert.equal((await server.gatehouse.storage.users.findById(user.body.id))!.passwordHash, rehashed);
      });
    });

    describe('a user disabled while their password is checked', () => {
      /** The user of `email` is disabled (an operator, another instance) right after sign-in reads them. */
      const disabledOnceRead = (t: TestContext, email: string) => {
        const users = server.gatehouse.storage.users;
        const findByEmail = users.findByEmail.bind(users);
        t.mock.method(users, 'findByEmail', async (typed: string) => {
          const found = await findByEmail(typed);
          if (found?.email === email) await setUserDisabled(server.gatehouse, found, true, server.gatehouse.clock());
          return found;
        });
      };

      it('answers the password grant invalid_grant, as for a wrong password, and stores no grant', async (t) => {
        const lasting = await server.client({ name: 'Mobile app with refresh', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'], firstParty: true });
        const email = 'disabled.during.grant@example.com';
        const user = await server.user(email, 'correct horse battery staple');
        disabledOnceRead(t, email);
        const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: lasting.id, client_secret: lasting.secret, username: email, password: 'correct horse battery staple' });
        assert.equal(token.status, 400, JSON.stringify(token.body));
        assert.deepEqual(token.body, { error: 'invalid_grant', error_description: 'the username or password is wrong' });
        assert.deepEqual(await server.gatehouse.storage.grants.list({ userId: user.id }), []);
      });

      it('answers the sign-in page as for a wrong password, and starts no session that would come back when the user is enabled again', async (t) => {
        const email = 'disabled.during.sign-in@example.com';
        const user = await server.user(email, 'correct horse battery staple');
        disabledOnceRead(t, email);
        const page = await signIn(email, 'correct horse battery staple');
        assert.equal(page.status, 401, page.text.slice(0, 300));
        assert.match(page.text, /The email or password is not right\./);
        assert.equal(page.headers.getSetCookie().some((cookie) => /session/.test(cookie) && !/max-age=0/i.test(cookie)), false);
        t.mock.restoreAll();
        const disabled = (await server.gatehouse.storage.users.findById(user.id))!;
        await setUserDisabled(server.gatehouse, disabled, false, server.gatehouse.clock());
        assert.equal(await signOutUser(server.gatehouse, user.id), 0, 'no session of the disabled user was stored');
      });
    });

    describe('a user deleted while their password is checked', () => {
      /** The user of `email` is deleted (an operator, another instance) right after sign-in reads them. */
      const deletedOnceRead = (t: TestContext, email: string) => {
        const users = server.gatehouse.storage.users;
        const findByEmail = users.findByEmail.bind(users);
        t.mock.method(users, 'findByEmail', async (typed: string) => {
          const found = await findByEmail(typed);
          if (found?.email === email) await users.delete(found.id);
          return found;
        });
      };

      it('answers the password grant invalid_grant, as for an unknown user, and stores no grant', async (t) => {
        const lasting = await server.client({ name: 'Mobile app with refresh', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'], firstParty: true });
        const email = 'deleted.during.grant@example.com';
        await server.user(email, 'correct horse battery staple');
        deletedOnceRead(t, email);
        const token = await post(`${server.url}/token`, { grant_type: 'password', client_id: lasting.id, client_secret: lasting.secret, username: email, password: 'correct horse battery staple' });
        assert.equal(token.status, 400, JSON.stringify(token.body));
        assert.deepEqual(token.body, { error: 'invalid_grant', error_description: 'the username or password is wrong' });
        assert.deepEqual(await server.gatehouse.storage.grants.list({ clientId: lasting.id }), []);
      });

      it('answers the sign-in page as for a wrong password, and starts no session', async (t) => {
        const email = 'deleted.during.sign-in@example.com';
        const user = await server.user(email, 'correct horse battery staple');
        deletedOnceRead(t, email);
        const page = await signIn(email, 'correct horse battery staple');
        assert.equal(page.status, 401, page.text.slice(0, 300));
        assert.match(page.text, /The email or password is not right\./);
        assert.equal(page.headers.getSetCookie().some((cookie) => /session/.test(cookie) && !/max-age=0/i.test(cookie)), false);
        assert.equal(await server.gatehouse.storage.users.findById(user.id), undefined);
      });
    });
  });
}
