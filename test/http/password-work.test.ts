import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PasswordsBusy, passwordWork } from '../../src/core/passwords.ts';
import { BoundedWork } from '../../src/core/thread-pool.ts';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { DIALECTS } from '../support/databases.ts';
import { sendRaw } from '../support/raw-http.ts';
import { basic, post, startTestServer, type TestServer } from '../support/server.ts';

/*
 * Argon2id runs on libuv's thread pool, which the signature of every token shares. A flood of
 * sign-ins from many addresses, each within its own limits, must not queue so many hashes there that
 * token requests wait behind them: passwords are hashed a few at a time, a bounded number wait, and
 * the rest are answered 503 with Retry-After at once, counting against nothing.
 */

const PASSWORD = 'correct horse battery staple';
const anAddress = (): string => `10.${[...randomBytes(3)].join('.')}`;

/** Holds every place of the process's password work (running and waiting) until release() is called. */
function occupyPasswordWork(): { release(): Promise<void> } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const held = Array.from({ length: passwordWork.concurrency + passwordWork.maxWaiting }, () => passwordWork.run(() => gate));
  return {
    async release() {
      open();
      await Promise.all(held);
    },
  };
}

describe('BoundedWork', () => {
  it('runs at most `concurrency` tasks at once, lets `maxWaiting` wait in order, and refuses the rest with its busy error', async () => {
    const work = new BoundedWork(2, 3, () => new PasswordsBusy());
    const started: number[] = [];
    const releases: Array<() => void> = [];
    const task = (n: number) => () => {
      started.push(n);
      return new Promise<number>((resolve) => releases.push(() => resolve(n)));
    };
    const accepted = [1, 2, 3, 4, 5].map((n) => work.run(task(n)));
    await assert.rejects(work.run(task(6)), PasswordsBusy);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, [1, 2]);
    releases[0]!();
    assert.equal(await accepted[0], 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, [1, 2, 3], 'the first in line, and only one, takes the place freed');
    // A place freed while others wait goes to them, not to a newcomer: 6 waits behind 4 and 5.
    const late = work.run(task(6));
    for (let i = 1; i < 6; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      releases[i]!();
    }
    assert.deepEqual(await Promise.all([...accepted.slice(1), late]), [2, 3, 4, 5, 6]);
    assert.deepEqual(started, [1, 2, 3, 4, 5, 6]);
  });

  it('frees the place of a task that fails', async () => {
    const work = new BoundedWork(1, 0, () => new PasswordsBusy());
    await assert.rejects(work.run(() => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await work.run(async () => 'next'), 'next');
  });
});

for (const dialect of DIALECTS) {
  describe(`passwords when the server has as many to hash as it takes (${dialect})`, { timeout: 120_000 }, () => {
    let server: TestServer;
    let mobile: { id: string; secret: string };
    let machine: { id: string; secret: string };
    let user: { id: string; email: string };
    let adminAuth: string;

    const passwordGrant = (username: string, password: string, address = anAddress()) =>
      post(`${server.url}/token`, { grant_type: 'password', username, password }, { headers: { authorization: basic(mobile.id, mobile.secret), 'x-forwarded-for': address } });
    const failedSignIns = async () => (await server.gatehouse.storage.audit.query({ kind: 'login.failed' })).length;

    before(async () => {
      server = await startTestServer(dialect, { env: { GATEHOUSE_TRUST_PROXY: 'true' }, config: { tokens: { clientCredentialsReuseSeconds: 0 } } });
      mobile = await server.client({ name: 'Mobile app', grantTypes: ['password', 'refresh_token'], scopes: ['objects:read'], firstParty: true });
      machine = await server.client({ name: 'Back end', grantTypes: ['client_credentials'], scopes: ['objects:read'] });
      user = await server.user(`person-${dialect}@example.com`, PASSWORD);
      const admin = await server.client({ name: 'Back office', grantTypes: ['client_credentials'], scopes: ['admin:users'], isAdmin: true });
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(admin.id, admin.secret) } });
      adminAuth = `Bearer ${token.body.access_token}`;
    });
    after(() => server.close());

    it('answers the password grant 503 temporarily_unavailable with Retry-After, counts no failure, and takes the password once there is room', async () => {
      await server.gatehouse.audit.flush();
      const failuresBefore = await failedSignIns();
      const address = anAddress();
      const held = occupyPasswordWork();
      try {
        for (const password of [PASSWORD, 'a wrong password']) {
          const refused = await passwordGrant(user.email, password, address);
          assert.equal(refused.status, 503, JSON.stringify(refused.body));
          assert.equal(refused.body.error, 'temporarily_unavailable');
          assert.equal(refused.headers.get('retry-after'), '1');
        }
      } finally {
        await held.release();
      }
      const granted = await passwordGrant(user.email, PASSWORD, address);
      assert.equal(granted.status, 200, JSON.stringify(granted.body));
      await server.gatehouse.audit.flush();
      assert.equal(await failedSignIns(), failuresBefore, 'a password not checked is no failed sign-in');
    });

    it('shows the sign-in page again with 503 and Retry-After, and signs in once there is room', async () => {
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/login`);
      const submit = () => browser.request(`${server.url}/login`, { form: { csrf: hiddenField(form.text, 'csrf'), email: user.email, password: PASSWORD } });
      const held = occupyPasswordWork();
      try {
        const refused = await submit();
        assert.equal(refused.status, 503);
        assert.equal(refused.headers.get('retry-after'), '1');
        assert.match(refused.text, /could not be checked right now/);
        assert.match(refused.text, /<form[^>]*action="\/login/);
      } finally {
        await held.release();
      }
      assert.equal((await submit()).status, 303);
    });

    it('makes no account at sign-up or through the admin API meanwhile: 503, a readable page or problem, and nothing stored', async () => {
      const users = (await server.gatehouse.storage.users.list()).length;
      const email = `newcomer-${dialect}@example.com`;
      const browser = new HttpBrowser();
      const form = await browser.request(`${server.url}/signup`);
      const held = occupyPasswordWork();
      try {
        const page = await browser.request(`${server.url}/signup`, { form: { csrf: hiddenField(form.text, 'csrf'), email, name: 'Newcomer', password: PASSWORD } });
        assert.equal(page.status, 503);
        assert.ok(page.headers.get('retry-after'));
        assert.match(page.text, /try again/i);
        assert.doesNotMatch(page.text, /PasswordsBusy|at PasswordWork|passwords\.ts/);

        const created = await fetch(`${server.url}/admin/v1/users`, { method: 'POST', headers: { authorization: adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }) });
        assert.equal(created.status, 503);
        assert.equal(created.headers.get('retry-after'), '1');
        assert.equal(((await created.json()) as { status: number }).status, 503);
      } finally {
        await held.release();
      }
      assert.equal((await server.gatehouse.storage.users.list()).length, users);
      assert.equal(await server.gatehouse.storage.users.findByEmail(email), undefined);
    });

    it('keeps signing tokens through a flood of sign-ins from many addresses: the token is answered while most of the flood still waits', async () => {
      const flood = passwordWork.concurrency + passwordWork.maxWaiting + 40;
      let accepted = 0;
      const onConnection = () => (accepted += 1);
      server.app.server.on('connection', onConnection);
      let answered = 0;
      const answers = Array.from({ length: flood }, (_, i) =>
        sendRaw(server.url, {
          path: '/token',
          headers: { authorization: basic(mobile.id, mobile.secret), 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': anAddress() },
          body: new URLSearchParams({ grant_type: 'password', username: `nobody-${i}-${dialect}@example.com`, password: 'a guess' }).toString(),
        }).then((answer) => {
          answered += 1;
          return answer;
        }),
      );
      // Every request of the flood reached the server (a connection each) and the hashes it admitted
      // are under way.
      while (accepted < flood) await new Promise((resolve) => setTimeout(resolve, 5));
      server.app.server.off('connection', onConnection);
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Signed afresh (no reuse of client_credentials tokens in this configuration), on the thread pool.
      const token = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(machine.id, machine.secret) } });
      const outstanding = flood - answered;
      const statuses = (await Promise.all(answers)).map((answer) => answer.status);
      assert.equal(token.status, 200, JSON.stringify(token.body));
      assert.ok(outstanding >= 8, `the token request was answered with ${outstanding} sign-ins of the flood still unanswered`);
      assert.ok(statuses.every((status) => status === 400 || status === 503), `only invalid_grant and 503: ${JSON.stringify(statuses)}`);
      assert.ok(statuses.includes(503), 'a flood larger than the line is partly refused');
    });
  });
}
