import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { HttpBrowser, hiddenField } from '../support/browser.ts';
import { countRows, createTestDatabase, DIALECTS, tableSnapshots, type TestDatabase } from '../support/databases.ts';
import { basic, post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, type Env, type ServeProcess } from './support.ts';

const NEW_SECRET = 'the-new-master-secret-after-the-change-0123456789';

/**
 * Changing the master secret: GATEHOUSE_SECRET becomes the new secret and GATEHOUSE_SECRET_PREVIOUS
 * the old one, `gatehouse keys reencrypt` stores every key under the new one, and the old one is
 * dropped. On SQLite the old secret is the one generated into secret.key.
 */
for (const dialect of DIALECTS) {
  describe(`changing the master secret (${dialect})`, { timeout: 300_000 }, () => {
    let database: TestDatabase;
    let oldEnv: Env;
    let oldSecret: string;
    let client: { client_id: string; client_secret: string };
    const user = { email: 'ada@example.com', password: 'correct horse battery staple' };
    const servers: ServeProcess[] = [];
    const serve = async (env: Env): Promise<ServeProcess> => {
      const server = await startServe(env);
      servers.push(server);
      return server;
    };

    before(async () => {
      database = await createTestDatabase(dialect);
      oldEnv = { ...databaseEnv(database), GATEHOUSE_DEMO: 'false' };
      client = await cliJson(['client', 'create', '--name', 'Secret change probe', '--scope', 'objects:read'], oldEnv);
      oldSecret = oldEnv.GATEHOUSE_SECRET ?? readFileSync(join(database.dataDir, 'secret.key'), 'utf8').trim();
      await cliJson(['user', 'create', '--email', user.email, '--password', user.password], oldEnv);
      // Keys in every state that holds a private part: active, next, retired, and withdrawn.
      const rotated = await cliJson<{ kid: string; use: string; state: string }[]>(['keys', 'rotate', '--force'], oldEnv);
      const retired = rotated.find((key) => key.use === 'id' && key.state === 'retired')!;
      await cliJson(['keys', 'withdraw', retired.kid], oldEnv);
    });
    after(async () => {
      for (const server of servers) await server.stop();
      await database?.drop();
    });

    const withSecret = (secret: string, previous?: string): Env => ({ ...oldEnv, GATEHOUSE_SECRET: secret, ...(previous === undefined ? {} : { GATEHOUSE_SECRET_PREVIOUS: previous }) });
    const tokenFrom = async (url: string): Promise<string> => {
      const response = await post(`${url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.client_id, client.client_secret) } });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body.access_token as string;
    };
    const jwksOf = async (url: string): Promise<JSONWebKeySet> => (await (await fetch(`${url}/jwks.json`)).json()) as JSONWebKeySet;
    /** A browser holding the sign-in form the server at `url` showed it. */
    const loginFormFrom = async (url: string): Promise<{ browser: HttpBrowser; csrf: string }> => {
      const browser = new HttpBrowser();
      return { browser, csrf: hiddenField((await browser.request(`${url}/login`)).text, 'csrf') };
    };
    const signIn = async (url: string, form: { browser: HttpBrowser; csrf: string }): Promise<number> =>
      (await form.browser.request(`${url}/login`, { form: { csrf: form.csrf, email: user.email, password: user.password } })).status;

    it('keeps every key signing and every token verifying, and forms shown before the change working until the previous secret is dropped', async () => {
      const old = await serve(oldEnv);
      const tokenBefore = await tokenFrom(old.url);
      const signingKid = decodeProtectedHeader(tokenBefore).kid;
      const jwksBefore = await jwksOf(old.url);
      const formsShownBefore = [await loginFormFrom(old.url), await loginFormFrom(old.url)];
      await old.stop();

      // The new secret alone cannot decrypt the keys: start-up and the command stop, and change nothing.
      const snapshots = await tableSnapshots(database);
      try {
        const stored = await snapshots.take();
        for (const [env, reason] of [
          [withSecret(NEW_SECRET), /cannot be decrypted: GATEHOUSE_SECRET is not the secret it was stored under$/],
          [withSecret(NEW_SECRET, 'yet-another-secret-that-was-never-used-0123456789'), /cannot be decrypted: neither GATEHOUSE_SECRET nor any of GATEHOUSE_SECRET_PREVIOUS is the secret it was stored under$/],
        ] as const) {
          for (const args of [['serve'], ['keys', 'reencrypt']]) {
            const refused = await runCli(args, { ...env, PORT: '0' }, 30_000);
            assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stdout}${refused.stderr}`);
            const line = oneLine(refused);
            assert.match(line, reason);
            for (const secret of [oldSecret, NEW_SECRET]) assert.equal(refused.stdout.includes(secret) || line.includes(secret), false, 'no secret is printed');
          }
        }
        assert.equal(await snapshots.take(), stored, 'nothing stored changed');
      } finally {
        await snapshots.close();
      }

      // The new secret with the old one as previous: the same keys sign, the tokens issued before verify.
      const changing = await serve(withSecret(NEW_SECRET, oldSecret));
      assert.equal(decodeProtectedHeader(await tokenFrom(changing.url)).kid, signingKid, 'the key stored under the old secret signs');
      assert.deepEqual(await jwksOf(changing.url), jwksBefore);
      assert.equal(await signIn(changing.url, formsShownBefore[0]!), 303, 'a form shown under the old secret is accepted');
      const formShownDuring = await loginFormFrom(changing.url);
      await changing.stop();

      const rows = await countRows(database, 'signing_keys');
      assert.ok(rows >= 5, `keys in every state: ${rows}`);
      assert.deepEqual(await cliJson(['keys', 'reencrypt'], withSecret(NEW_SECRET, oldSecret)), { reencrypted: rows });
      assert.deepEqual(await cliJson(['keys', 'reencrypt'], withSecret(NEW_SECRET, oldSecret)), { reencrypted: 0 }, 'run again, it changes nothing');
      const tail = await runCli(['audit', 'tail', '--json'], withSecret(NEW_SECRET));
      const events = tail.stdout.trim().split('\n').map((line) => JSON.parse(line) as { kind: string; data: { count?: number } });
      assert.deepEqual(events.filter((event) => event.kind === 'keys.reencrypted').map((event) => event.data.count), [rows], 'recorded once, with the count');

      // The previous secret dropped: the same keys, and the tokens issued under the old secret still verify.
      const changed = await serve(withSecret(NEW_SECRET));
      assert.equal(decodeProtectedHeader(await tokenFrom(changed.url)).kid, signingKid);
      const jwks = await jwksOf(changed.url);
      assert.deepEqual(jwks, jwksBefore, 'the public keys are unchanged');
      const issuedBy = `http://localhost:${old.port}`;
      await jwtVerify(tokenBefore, createLocalJWKSet(jwks), { issuer: issuedBy, audience: issuedBy, typ: 'at+jwt' });
      assert.equal(await signIn(changed.url, formShownDuring), 303, 'a form shown under the new secret is accepted');
      assert.equal(await signIn(changed.url, formsShownBefore[1]!), 403, 'a form shown under the dropped secret is not');
    });
  });
}
