import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { basic, post } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, ROOT, runCli, startServe, waitFor, writeConfig, type Env, type ServeProcess } from './support.ts';

interface KeyRow {
  kid: string;
  use: 'access' | 'id';
  alg: string;
  state: 'active' | 'next' | 'retired';
  created_at: string;
  activated_at: string;
  retired_at: string;
  published_until: string;
}

/** A retired key must stay published at least as long as the tokens it signed live (shipped configuration). */
const shipped = JSON.parse(readFileSync(join(ROOT, 'config/gatehouse.json'), 'utf8')) as { tokens: Record<string, number> };
const LONGEST_TOKEN_SECONDS = Math.max(shipped.tokens.accessTokenTtlSeconds!, shipped.tokens.idTokenTtlSeconds!);

for (const dialect of DIALECTS) {
  describe(`gatehouse keys rotate against a running server (${dialect})`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;
    let env: Env;
    let client: { client_id: string; client_secret: string };
    let issuer: string;

    before(async () => {
      database = await createTestDatabase(dialect);
      env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { keys: { reloadIntervalSeconds: 0.2 } }) };
      server = await startServe(env);
      env.PORT = String(server.port);
      issuer = `http://localhost:${server.port}`;
      client = await cliJson(['client', 'create', '--name', 'Key rotation probe', '--scope', 'objects:read'], env);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    const token = async (): Promise<string> => {
      const response = await post(`${server.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.client_id, client.client_secret) } });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body.access_token as string;
    };
    const jwks = async (): Promise<JSONWebKeySet> => {
      const response = await fetch(`${server.url}/jwks.json`);
      assert.equal(response.status, 200);
      return (await response.json()) as JSONWebKeySet;
    };
    const verify = (jwt: string, set: JSONWebKeySet) => jwtVerify(jwt, createLocalJWKSet(set), { issuer, audience: issuer, typ: 'at+jwt', algorithms: ['ES256'] });
    const keysOf = (rows: KeyRow[], use: KeyRow['use'], state: KeyRow['state']) => rows.filter((k) => k.use === use && k.state === state);
    const only = (rows: KeyRow[], use: KeyRow['use'], state: KeyRow['state']): KeyRow => {
      const found = keysOf(rows, use, state);
      assert.equal(found.length, 1, `one ${state} ${use} key in ${JSON.stringify(rows)}`);
      return found[0]!;
    };

    /**
     * Rotates with the CLI and waits until the server signs with the key that was `next` and
     * publishes every key the CLI listed. The two uses rotate one after the other, so a reload may
     * fall between them: the server's JWKS is complete only after the following reload.
     */
    const rotateAndWait = async (): Promise<{ before: KeyRow[]; after: KeyRow[]; newToken: string; published: JSONWebKeySet }> => {
      const before = await cliJson<KeyRow[]>(['keys', 'list'], env);
      const next = only(before, 'access', 'next');
      const after = await cliJson<KeyRow[]>(['keys', 'rotate', '--force'], env);
      const newToken = await waitFor('the server to sign with the rotated key', async () => {
        const jwt = await token();
        return decodeProtectedHeader(jwt).kid === next.kid ? jwt : undefined;
      });
      const expected = after.map((k) => k.kid).sort().join(' ');
      const published = await waitFor('the server to publish every key after the rotation', async () => {
        const set = await jwks();
        return set.keys.map((k) => k.kid).sort().join(' ') === expected ? set : undefined;
      });
      return { before, after, newToken, published };
    };

    it('refuses to rotate while the next keys are younger than keys.reloadIntervalSeconds plus the JWKS cache time, changing nothing', async () => {
      const before = await cliJson<KeyRow[]>(['keys', 'list'], env);
      const refused = await runCli(['keys', 'rotate'], env);
      assert.equal(refused.code, 1, oneLine(refused));
      assert.equal(refused.stdout, '');
      assert.match(refused.stderr, /^gatehouse: the next (access|id) key \S+ was published \d+ s ago, and may sign only once resource servers can have fetched it, 61 s after it was published \(keys\.reloadIntervalSeconds plus the JWKS's 60 s cache time\): rotate after \S+Z, or now with --force in an emergency/);
      assert.equal(refused.stderr.trim().split('\n').length, 1, 'one line');
      assert.deepEqual(await cliJson<KeyRow[]>(['keys', 'list'], env), before);
      assert.equal(((await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet).keys.length, 4, 'nothing new published');
    });

    it('keeps tokens signed before a rotation verifiable and signs new ones with the key published as next', async () => {
      const rowsBefore = await cliJson<KeyRow[]>(['keys', 'list'], env);
      const active = only(rowsBefore, 'access', 'active');
      const next = only(rowsBefore, 'access', 'next');
      const idActive = only(rowsBefore, 'id', 'active');
      const idNext = only(rowsBefore, 'id', 'next');

      // The next key is published before it ever signs, so resource servers have it cached in time.
      const jwksBefore = await jwks();
      const publishedBefore = jwksBefore.keys.map((k) => k.kid);
      assert.ok(publishedBefore.includes(next.kid), 'the next access key is published before the rotation');
      assert.ok(publishedBefore.includes(idNext.kid), 'the next ID token key is published before the rotation');

      const oldToken = await token();
      assert.equal(decodeProtectedHeader(oldToken).kid, active.kid);
      await verify(oldToken, jwksBefore);

      const { after: printed, newToken, published: jwksAfter } = await rotateAndWait();
      // What `keys rotate --json` printed: the previous keys retired, the next ones active, new next keys.
      assert.equal(only(printed, 'access', 'active').kid, next.kid);
      assert.equal(only(printed, 'id', 'active').kid, idNext.kid);
      assert.ok(keysOf(printed, 'access', 'retired').some((k) => k.kid === active.kid));
      assert.ok(keysOf(printed, 'id', 'retired').some((k) => k.kid === idActive.kid));
      const newNext = only(printed, 'access', 'next');
      assert.ok(![active.kid, next.kid].includes(newNext.kid));

      const header = decodeProtectedHeader(newToken);
      assert.notEqual(header.kid, active.kid);
      assert.equal(header.kid, next.kid);
      assert.equal(header.typ, 'at+jwt');

      // Resource servers that fetch the JWKS now verify both the old token and the new one.
      const publishedAfter = jwksAfter.keys.map((k) => k.kid).sort();
      assert.deepEqual(publishedAfter, [active.kid, next.kid, newNext.kid, idActive.kid, idNext.kid, only(printed, 'id', 'next').kid].sort());
      const old = await verify(oldToken, jwksAfter);
      assert.equal(old.protectedHeader.kid, active.kid);
      assert.equal(old.payload.client_id, client.client_id);
      const fresh = await verify(newToken, jwksAfter);
      assert.equal(fresh.payload.client_id, client.client_id);
      assert.equal(fresh.payload.scope, 'objects:read');

      // keys list shows the retired keys with the time until which they stay published.
      const listed = await cliJson<KeyRow[]>(['keys', 'list'], env);
      for (const kid of [active.kid, idActive.kid]) {
        const retired = listed.find((k) => k.kid === kid);
        assert.ok(retired, `${kid} is still listed`);
        assert.equal(retired.state, 'retired');
        const retiredAt = Date.parse(retired.retired_at);
        const publishedUntil = Date.parse(retired.published_until);
        assert.ok(Number.isFinite(retiredAt) && Number.isFinite(publishedUntil), JSON.stringify(retired));
        assert.ok(publishedUntil - retiredAt >= LONGEST_TOKEN_SECONDS * 1000, `${kid} stays published until its tokens have expired`);
        assert.ok(publishedUntil - retiredAt <= 366 * 86400 * 1000, `${kid} is not published for ever`);
        assert.ok(Math.abs(retiredAt - Date.now()) < 60_000, 'retired just now');
      }
      assert.equal(listed.find((k) => k.kid === next.kid)?.state, 'active');
    });

    it('withdraws a key: the running server drops it from the JWKS, stops signing with it and refuses its tokens', async () => {
      const signed = await token();
      const leaked = decodeProtectedHeader(signed).kid!;
      const rows = await cliJson<KeyRow[]>(['keys', 'list'], env);
      assert.equal(only(rows, 'access', 'active').kid, leaked);
      const next = only(rows, 'access', 'next');
      const introspect = async (jwt: string) => (await post(`${server.url}/introspect`, { token: jwt }, { headers: { authorization: basic(client.client_id, client.client_secret) } })).body.active as boolean;
      assert.equal(await introspect(signed), true);

      const human = await runCli(['keys', 'withdraw', leaked], env);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, new RegExp(`^withdrawn: ${leaked} left the JWKS and the tokens it signed are refused; the next access key signs now`));
      const listed = await cliJson<KeyRow[]>(['keys', 'list'], env);
      assert.equal(listed.some((k) => k.kid === leaked), false);
      assert.equal(only(listed, 'access', 'active').kid, next.kid);

      await waitFor('the server to drop the withdrawn key', async () => ((await jwks()).keys.some((k) => k.kid === leaked) ? undefined : true));
      assert.equal(await introspect(signed), false, 'its tokens are refused');
      await waitFor('the server to sign with the key that took over', async () => (decodeProtectedHeader(await token()).kid === next.kid ? true : undefined));
      const tail = await runCli(['audit', 'tail', '--limit', '50', '--json'], env);
      const events = tail.stdout.trim().split('\n').map((line) => JSON.parse(line) as { kind: string; data: Record<string, unknown> });
      assert.ok(events.some((e) => e.kind === 'keys.withdrawn' && e.data.kid === leaked && e.data.by === 'cli' && e.data.state === 'active'), JSON.stringify(events));

      const again = await runCli(['keys', 'withdraw', leaked], env);
      assert.equal(again.code, 1);
      assert.equal(again.stderr, `gatehouse: no published signing key has the kid ${leaked}\n`);
    });

    it('keeps every retired key published across further rotations', async () => {
      const firstToken = await token();
      const { newToken: secondToken } = await rotateAndWait();
      const { newToken: thirdToken, after: printed, published: set } = await rotateAndWait();
      const kids = [firstToken, secondToken, thirdToken].map((jwt) => decodeProtectedHeader(jwt).kid);
      assert.equal(new Set(kids).size, 3, 'each rotation signs with a new key');

      for (const jwt of [firstToken, secondToken, thirdToken]) await verify(jwt, set);
      // Three rotations in all: three retired keys of each use, still published, plus active and next.
      assert.equal(keysOf(printed, 'access', 'retired').length, 3);
      assert.equal(keysOf(printed, 'id', 'retired').length, 3);
      assert.equal(set.keys.length, 10);
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`changing the signing algorithm in the configuration (${dialect})`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess | undefined;

    before(async () => {
      database = await createTestDatabase(dialect);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    it('publishes a key of the new algorithm at the next start and signs with it after one rotation', async () => {
      const es256: Env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { keys: { reloadIntervalSeconds: 0.2 } }, 'es256.json') };
      const initial = await cliJson<KeyRow[]>(['keys', 'list'], es256);
      assert.deepEqual(initial.filter((k) => k.use === 'access').map((k) => k.alg), ['ES256', 'ES256']);
      const active = initial.find((k) => k.use === 'access' && k.state === 'active')!;

      const eddsa: Env = {
        ...databaseEnv(database),
        GATEHOUSE_CONFIG: writeConfig(database.dataDir, { keys: { reloadIntervalSeconds: 0.2 }, tokens: { accessTokenAlgorithm: 'EdDSA' } }, 'eddsa.json'),
      };
      server = await startServe(eddsa);
      const env = { ...eddsa, PORT: String(server.port) };
      const client = await cliJson<{ client_id: string; client_secret: string }>(['client', 'create', '--name', 'Algorithm probe', '--scope', 'objects:read'], env);
      const token = async (): Promise<string> => {
        const response = await post(`${server!.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(client.client_id, client.client_secret) } });
        assert.equal(response.status, 200, JSON.stringify(response.body));
        return response.body.access_token as string;
      };
      const jwks = async () => (await (await fetch(`${server!.url}/jwks.json`)).json()) as JSONWebKeySet;
      const issuer = `http://localhost:${server.port}`;
      const verify = (jwt: string, set: JSONWebKeySet, alg: string) => jwtVerify(jwt, createLocalJWKSet(set), { issuer, audience: issuer, typ: 'at+jwt', algorithms: [alg] });

      // Until the rotation the active ES256 key signs; the next key, published already, is EdDSA.
      const started = await cliJson<KeyRow[]>(['keys', 'list'], env);
      const next = started.find((k) => k.use === 'access' && k.state === 'next')!;
      assert.equal(next.alg, 'EdDSA');
      assert.equal(started.find((k) => k.use === 'access' && k.state === 'active')?.kid, active.kid);
      assert.equal(started.filter((k) => k.use === 'access').length, 2, 'the ES256 next key, which never signed, is gone');
      assert.match(server.stdout() + server.stderr(), /access tokens are signed with ES256 until the next rotation \(gatehouse keys rotate\): the configured EdDSA key is published/);
      const before = await token();
      assert.deepEqual(decodeProtectedHeader(before), { alg: 'ES256', kid: active.kid, typ: 'at+jwt' });
      assert.ok((await jwks()).keys.some((k) => k.kid === next.kid && k.alg === 'EdDSA' && k.kty === 'OKP'));

      await cliJson(['keys', 'rotate', '--force'], env);
      const after = await waitFor('the server to sign with the EdDSA key', async () => {
        const jwt = await token();
        return decodeProtectedHeader(jwt).kid === next.kid ? jwt : undefined;
      });
      assert.equal(decodeProtectedHeader(after).alg, 'EdDSA');
      const set = await jwks();
      assert.equal((await verify(after, set, 'EdDSA')).payload.client_id, client.client_id);
      assert.equal((await verify(before, set, 'ES256')).payload.client_id, client.client_id, 'tokens signed before stay verifiable');
      const rotated = await cliJson<KeyRow[]>(['keys', 'list'], env);
      assert.equal(rotated.find((k) => k.use === 'access' && k.state === 'next')?.alg, 'EdDSA');
    });
  });
  describe(`changing the ID-token signing algorithm in the configuration (${dialect})`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess | undefined;

    before(async () => {
      database = await createTestDatabase(dialect);
    });

    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    it('lists in discovery the algorithm ID tokens are signed with, before and after the rotation that switches it (OpenID Connect Discovery §3)', async () => {
      // The first start made RS256 ID-token keys (the shipped default).
      const initial = await cliJson<KeyRow[]>(['keys', 'list'], databaseEnv(database));
      assert.deepEqual(initial.filter((k) => k.use === 'id').map((k) => k.alg), ['RS256', 'RS256']);

      const es256: Env = { ...databaseEnv(database), GATEHOUSE_CONFIG: writeConfig(database.dataDir, { keys: { reloadIntervalSeconds: 0.2 }, tokens: { idTokenAlgorithm: 'ES256' } }) };
      server = await startServe(es256);
      const env = { ...es256, PORT: String(server.port) };
      const client = await cliJson<{ client_id: string; client_secret: string }>(['client', 'create', '--name', 'ID token probe', '--grant', 'password', '--scope', 'openid'], env);
      await cliJson(['user', 'create', '--email', 'alg@example.com', '--password', 'correct horse battery'], env);
      const idTokenAlg = async (): Promise<string> => {
        const response = await post(`${server!.url}/token`, { grant_type: 'password', username: 'alg@example.com', password: 'correct horse battery', scope: 'openid' }, { headers: { authorization: basic(client.client_id, client.client_secret) } });
        assert.equal(response.status, 200, JSON.stringify(response.body));
        return decodeProtectedHeader(response.body.id_token as string).alg!;
      };
      const advertised = async (): Promise<string[]> => ((await (await fetch(`${server!.url}/.well-known/openid-configuration`)).json()) as { id_token_signing_alg_values_supported: string[] }).id_token_signing_alg_values_supported;

      // Until the rotation the active RS256 key signs: a relying party that takes the algorithms from discovery must accept it.
      assert.equal(await idTokenAlg(), 'RS256');
      assert.deepEqual(await advertised(), ['RS256', 'ES256']);

      await cliJson(['keys', 'rotate', '--force'], env);
      await waitFor('the server to sign ID tokens with the ES256 key', async () => ((await idTokenAlg()) === 'ES256' ? true : undefined));
      assert.deepEqual(await advertised(), ['ES256']);
    });
  });
}
