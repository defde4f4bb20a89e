import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { sweepExpiredRows } from '../../src/core/housekeeping.ts';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { migrate, openDatabase } from '../../src/storage/database.ts';
import { createStorage, SWEEP_LOCK } from '../../src/storage/kysely/index.ts';
import type { Storage } from '../../src/storage/repositories.ts';
import type { AuditEvent } from '../../src/storage/repositories/audit.ts';
import type { Client } from '../../src/storage/repositories/clients.ts';
import type { AuthorizationCode } from '../../src/storage/repositories/codes.ts';
import type { Grant } from '../../src/storage/repositories/grants.ts';
import type { SigningKeyRecord } from '../../src/storage/repositories/keys.ts';
import type { RefreshToken } from '../../src/storage/repositories/refresh-tokens.ts';
import type { EndedSession } from '../../src/storage/repositories/sessions.ts';
import type { User } from '../../src/storage/repositories/users.ts';
import { createTestDatabase, DIALECTS, type TestDatabase, type TestDialect } from '../support/databases.ts';
import { aClient, aCode, aGrant, aKey, anEvent, aRefreshToken, aUser, exchangeOf, HOUR, NOW, successorAt, successorOf } from '../support/records.ts';

/** Grants end an hour after their last refresh token goes; audit events are kept. */
const SWEEP = { accessTokenTtlSeconds: HOUR, auditRetentionSeconds: 0 };

/**
 * The storage contract: what every implementation of the repository interfaces promises, checked
 * against each dialect. Times are a frozen clock in epoch seconds (NOW).
 */

interface OpenStorage {
  storage: Storage;
  database: TestDatabase;
}

const storageOptions = (database: TestDatabase) => ({ databaseUrl: database.databaseUrl, sqlitePath: join(database.dataDir, 'gatehouse.sqlite') });

async function openFreshStorage(dialect: TestDialect): Promise<OpenStorage> {
  const database = await createTestDatabase(dialect);
  return { storage: await createStorage(storageOptions(database)), database };
}

async function closeStorage(open: OpenStorage | undefined): Promise<void> {
  if (!open) return;
  try {
    await open.storage.close();
  } finally {
    await open.database.drop();
  }
}

/** A database of its own for every test of the enclosing `describe`: for behaviour that spans a whole table. */
function freshStorageForEachTest(dialect: TestDialect): () => Storage {
  const open = freshDatabaseForEachTest(dialect);
  return () => open().storage;
}

/** As freshStorageForEachTest, with the database under the storage (for a second connection to it). */
function freshDatabaseForEachTest(dialect: TestDialect): () => OpenStorage {
  let open: OpenStorage | undefined;
  beforeEach(async () => {
    open = await openFreshStorage(dialect);
  });
  afterEach(async () => {
    await closeStorage(open);
    open = undefined;
  });
  return () => open!;
}


const kids = (keys: SigningKeyRecord[]) => keys.map((key) => key.kid).sort();

/** Polls `condition` every 20 ms for up to 10 s. */
/**
 * Undoes what the migrations from 008 on did to the schema (indexes, 013's session ids and
 * Back-Channel Logout columns, 015's password reset links, 016's index of codes by session, 017's email
 * verification links, 018's index of codes by user and client, 019's indexes of codes and authorization
 * requests by client, 022's indexes of ended API keys, 023's email change links, 024's sessions'
 * addresses, browsers and last uses, and its index of a user's sessions by start), so that a test
 * can leave a database as an earlier version did and apply them again.
 */
async function undoIndexMigrations(handle: ReturnType<typeof openDatabase>): Promise<void> {
  await handle.db.schema.dropIndex('sessions_user_created').execute();
  await handle.db.schema.createIndex('sessions_user').on('sessions').column('user_id').execute();
  for (const column of ['address', 'device', 'last_used_at']) await handle.db.schema.alterTable('sessions').dropColumn(column).execute();
  await handle.db.schema.dropIndex('authorization_requests_client').execute();
  await handle.db.schema.dropIndex('authorization_codes_client').execute();
  await handle.db.schema.dropIndex('authorization_codes_user_client').execute();
  await handle.db.schema.dropIndex('authorization_codes_sid').execute();
  await handle.db.schema.dropTable('email_changes').execute();
  await handle.db.schema.dropTable('email_verifications').execute();
  await handle.db.schema.dropTable('password_resets').execute();
  await handle.db.schema.dropTable('session_clients').execute();
  for (const [table, column] of [['sessions', 'sid'], ['authorization_codes', 'sid'], ['grants', 'sid'], ['clients', 'backchannel_logout_uri'], ['clients', 'backchannel_logout_session_required']] as const) {
    await handle.db.schema.alterTable(table).dropColumn(column).execute();
  }
  for (const index of ['audit_events_kind', 'users_created', 'clients_created', 'grants_created', 'grants_client_created', 'consents_client', 'grants_user_created', 'grants_revoked_unended', 'grants_unended_created']) await handle.db.schema.dropIndex(index).execute();
  await handle.db.schema.createIndex('grants_client').on('grants').column('client_id').execute();
  await handle.db.schema.createIndex('grants_user').on('grants').columns(['user_id', 'client_id']).execute();
  await handle.db.schema.dropIndex('api_keys_client_created').execute();
  await handle.db.schema.createIndex('api_keys_client').on('api_keys').column('client_id').execute();
  for (const index of ['api_keys_revoked', 'api_keys_expires']) await handle.db.schema.dropIndex(index).execute();
}

async function waitUntil(condition: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 20) {
    if (await condition()) return;
    await sleep(20);
  }
  assert.fail('the condition never became true');
}


/** A client's powers as checked, and each way a concurrent change can have left them by the time of the write. */
const POWERS = { isAdmin: false, scopes: ['objects:read', 'model:read'], allowImpersonation: false, isResourceServer: false };
const POWERS_CHANGED_MEANWHILE = [
  ['made admin meanwhile', { ...POWERS, isAdmin: true }],
  ['allowed to impersonate meanwhile', { ...POWERS, allowImpersonation: true }],
  ['made a resource server meanwhile', { ...POWERS, isResourceServer: true }],
  ['given another scope meanwhile', { ...POWERS, scopes: ['objects:read'] }],
  ['its scopes in another order', { ...POWERS, scopes: ['model:read', 'objects:read'] }],
] as const;
for (const dialect of DIALECTS) {
  describe(`storage contract on ${dialect}`, () => {
    /** One database for the tests whose records are their own (fresh ids); see `freshStorageForEachTest` for the others. */
    let shared: OpenStorage | undefined;
    const storage = () => shared!.storage;

    before(async () => {
      shared = await openFreshStorage(dialect);
    });
    after(async () => {
      await closeStorage(shared);
    });

    /** A client and a user, stored, for the records that reference them. */
    async function aClientAndUser(): Promise<{ clientId: string; userId: string }> {
      const client = await storage().clients.create(aClient(), NOW);
      const user = await storage().users.create(aUser(), NOW);
      return { clientId: client.id, userId: user.id };
    }

    describe('migrations', () => {
      it('applies nothing when the schema is current, and a second storage opens over the first one’s data', async () => {
        const client = await storage().clients.create(aClient(), NOW);

        const handle = openDatabase(storageOptions(shared!.database));
        try {
          assert.deepEqual(await migrate(handle), []);
        } finally {
          await handle.close();
        }

        const second = await createStorage(storageOptions(shared!.database));
        try {
          assert.deepEqual(await second.clients.find(client.id), client);
        } finally {
          await second.close();
        }
      });

      it('reports the migrations it applied to an empty database', async () => {
        const database = await createTestDatabase(dialect);
        try {
          const handle = openDatabase(storageOptions(database));
          try {
            const applied = await migrate(handle);
            assert.equal(applied[0], '001-foundation');
            assert.deepEqual(applied, [...applied].sort(), 'in order of their names');
            assert.deepEqual(await migrate(handle), []);
          } finally {
            await handle.close();
          }
        } finally {
          await database.drop();
        }
      });

      it('stores the emails stored before 007 composed (NFC) with their domain in Unicode, leaving one whose normalized form another account has', async () => {
        const database = await createTestDatabase(dialect);
        try {
          const before = await createStorage(storageOptions(database));
          const lone = await before.users.create(aUser({ email: 'lone@example.com' }), NOW);
          const twin = await before.users.create(aUser({ email: 'twin.zoë@example.com' }), NOW);
          const idn = await before.users.create(aUser({ email: 'idn@example.com' }), NOW);
          await before.close();

          // The database as the version before 007 left it: emails only trimmed and lower-cased.
          const handle = openDatabase(storageOptions(database));
          try {
            await handle.db.updateTable('users').set({ email: 'lone.josé@example.com'.normalize('NFD') }).where('id', '=', lone.id).execute();
            await handle.db.updateTable('users').set({ email: 'idn@xn--bcher-kva.example' }).where('id', '=', idn.id).execute();
            await handle.db
              .insertInto('users')
              .values({ id: randomUUID(), email: 'twin.zoë@example.com'.normalize('NFD'), name: '', password_hash: 'x', email_verified: 0, disabled_at: null, created_at: NOW, updated_at: NOW })
              .execute();
            await sql`delete from kysely_migration where name >= '007-email-forms'`.execute(handle.db);
            await undoIndexMigrations(handle);
            assert.deepEqual(await migrate(handle), ['007-email-forms', '008-audit-kind', '009-list-order', '010-grant-lists', '011-consents-client', '012-user-grants', '013-backchannel-logout', '014-grant-sweep', '015-password-resets', '016-session-codes', '017-email-verifications', '018-user-client-codes', '019-client-deletion', '020-mailed-links', '021-api-key-lists', '022-api-key-sweep', '023-email-changes', '024-session-devices']);
          } finally {
            await handle.close();
          }

          const after = await createStorage(storageOptions(database));
          try {
            assert.equal((await after.users.findById(lone.id))?.email, 'lone.josé@example.com'.normalize('NFC'));
            assert.equal((await after.users.findByEmail('lone.josé@example.com'.normalize('NFD')))?.id, lone.id);
            assert.equal((await after.users.findByEmail('twin.zoë@example.com'.normalize('NFD')))?.id, twin.id, 'the account that had the composed form keeps it');
            assert.equal((await after.users.findById(idn.id))?.email, 'idn@bücher.example');
            assert.equal((await after.users.findByEmail('IDN@xn--bcher-kva.example'))?.id, idn.id);
            const emails = (await after.users.list()).map((user) => user.email).sort();
            assert.deepEqual(emails, ['idn@bücher.example', 'lone.josé@example.com'.normalize('NFC'), 'twin.zoë@example.com'.normalize('NFC'), 'twin.zoë@example.com'.normalize('NFD')].sort());
          } finally {
            await after.close();
          }
        } finally {
          await database.drop();
        }
      });

      it('lets several instances start on one empty database at once', { skip: dialect === 'sqlite' ? 'SQLite is embedded: one process owns the file' : false }, async () => {
        const database = await createTestDatabase(dialect);
        try {
          const instances = await Promise.all([1, 2, 3].map(() => createStorage(storageOptions(database))));
          await Promise.all(instances.map((instance) => instance.ping()));
          await Promise.all(instances.map((instance) => instance.close()));
        } finally {
          await database.drop();
        }
      });

      it('leaves nothing of migrations that fail partway, so the next start applies them whole', async () => {
        // A process killed during its first start (SIGTERM, a crash) stops its migrations the same
        // way: the next start must not meet half of them.
        const database = await createTestDatabase(dialect);
        try {
          const handle = openDatabase(storageOptions(database));
          try {
            // The last table 001 creates is there already: 001 fails after creating the others.
            await handle.db.schema.createTable('audit_events').addColumn('id', 'integer').execute();
            await assert.rejects(migrate(handle), /audit_events/);
            await handle.db.schema.dropTable('audit_events').execute();
            assert.equal((await migrate(handle))[0], '001-foundation');
            assert.deepEqual(await migrate(handle), [], 'every migration is applied');
          } finally {
            await handle.close();
          }
        } finally {
          await database.drop();
        }
      });

      it('gives each grant stored before 006 without a refresh token the end of its longest possible access token', async () => {
        const database = await createTestDatabase(dialect);
        try {
          const before = await createStorage(storageOptions(database));
          const client = await before.clients.create(aClient(), NOW);
          const user = await before.users.create(aUser(), NOW);
          const spent = aGrant(client.id, user.id, { kind: 'implicit' });
          const refreshing = aGrant(client.id, user.id);
          const justMade = aGrant(client.id, user.id, { createdAt: Math.floor(Date.now() / 1000) });
          for (const grant of [spent, refreshing, justMade]) await before.grants.create(grant);
          await before.refreshTokens.insert(aRefreshToken(refreshing));
          await before.close();

          // The database as the version before 006 left it.
          const handle = openDatabase(storageOptions(database));
          try {
            await sql`delete from kysely_migration where name >= '006-grant-expiry'`.execute(handle.db);
            await handle.db.schema.dropIndex('grants_expiry').execute();
            await undoIndexMigrations(handle);
            assert.deepEqual(await migrate(handle), ['006-grant-expiry', '007-email-forms', '008-audit-kind', '009-list-order', '010-grant-lists', '011-consents-client', '012-user-grants', '013-backchannel-logout', '014-grant-sweep', '015-password-resets', '016-session-codes', '017-email-verifications', '018-user-client-codes', '019-client-deletion', '020-mailed-links', '021-api-key-lists', '022-api-key-sweep', '023-email-changes', '024-session-devices']);
          } finally {
            await handle.close();
          }

          const after = await createStorage(storageOptions(database));
          try {
            assert.equal((await after.grants.find(spent.id))?.expiresAt, NOW + 24 * HOUR);
            assert.equal((await after.grants.find(refreshing.id))?.expiresAt, null, 'its refresh tokens end it when they go');
            assert.equal((await after.grants.find(justMade.id))?.expiresAt, null, 'its refresh token may be on its way from an instance of the previous version');
            assert.equal(await after.sweepExpired(NOW + 24 * HOUR + 1, 500, SWEEP), 1);
            assert.equal(await after.grants.find(spent.id), undefined);
          } finally {
            await after.close();
          }
        } finally {
          await database.drop();
        }
      });
    });

    describe('clients', () => {
      it('creates a client and finds it by id, with the creation time', async () => {
        const input = aClient();
        const created = await storage().clients.create(input, NOW);
        assert.deepEqual(created, { ...input, createdAt: NOW, updatedAt: NOW });
        assert.deepEqual(await storage().clients.find(input.id), created);
      });

      it('finds nothing for an unknown id', async () => {
        assert.equal(await storage().clients.find(randomUUID()), undefined);
        assert.equal(await storage().clients.findWithSecrets(randomUUID()), undefined);
      });

      it('lists clients oldest first, every field round-tripping exactly: lists, flags and nulls', async () => {
        const full = aClient({
          name: 'Dashboard',
          description: 'The operator’s single-page app',
          ownerUserId: randomUUID(),
          type: 'public',
          baseUrl: 'https://dashboard.example.com',
          redirectUris: ['https://dashboard.example.com/callback', 'http://127.0.0.1:8080/callback'],
          postLogoutRedirectUris: ['https://dashboard.example.com/'],
          grantTypes: ['authorization_code', 'refresh_token', 'password'],
          scopes: ['openid', 'profile', 'email', 'admin'],
          defaultScopes: ['openid', 'profile'],
          isAdmin: true,
          firstParty: true,
          allowImpersonation: true,
          backchannelLogoutUri: 'https://dashboard.example.com/backchannel-logout?tenant=1',
          backchannelLogoutSessionRequired: true,
        });
        const bare = aClient({ name: 'Bare', description: '', grantTypes: [], scopes: [] });
        await storage().clients.create(bare, NOW + 1);
        await storage().clients.create(full, NOW);

        const listed = (await storage().clients.list()).filter((client) => client.id === full.id || client.id === bare.id);
        assert.deepEqual(listed, [
          { ...full, createdAt: NOW, updatedAt: NOW },
          { ...bare, createdAt: NOW + 1, updatedAt: NOW + 1 },
        ]);
      });

      it('updates only the fields in the patch, and the update time', async () => {
        const input = aClient({ baseUrl: 'https://billing.example.com', redirectUris: ['https://billing.example.com/cb'], firstParty: true });
        await storage().clients.create(input, NOW);

        const updated = await storage().clients.update(input.id, { name: 'Billing v2', baseUrl: null, redirectUris: [], firstParty: false, isAdmin: true }, NOW + 60);

        const expected = { ...input, name: 'Billing v2', baseUrl: null, redirectUris: [], firstParty: false, isAdmin: true, createdAt: NOW, updatedAt: NOW + 60 };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await storage().clients.find(input.id), expected);
      });

      it('updates nothing and returns undefined for an unknown client', async () => {
        assert.equal(await storage().clients.update(randomUUID(), { name: 'Ghost' }, NOW), undefined);
      });

      it('updates a client only while it is as it was read: its powers (admin flag, scopes in order, impersonation and resource-server flags), every other field, and its update time', async () => {
        const input = aClient({ scopes: ['objects:read', 'model:read'], isAdmin: false, allowImpersonation: false, redirectUris: ['https://app.example/cb'] });
        const read = await storage().clients.create(input, NOW);
        const changedMeanwhile: [string, Client][] = [
          ...POWERS_CHANGED_MEANWHILE.map(([label, powers]): [string, Client] => [label, { ...read, ...powers, scopes: [...powers.scopes] }]),
          ['renamed meanwhile', { ...read, name: `${read.name} (old)` }],
          ['given another redirect URI meanwhile', { ...read, redirectUris: ['https://app.example/old'] }],
          ['given keys meanwhile', { ...read, jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'old' }] } }],
          ['given an owner meanwhile', { ...read, ownerUserId: randomUUID() }],
          ['changed meanwhile, however', { ...read, updatedAt: NOW - 1 }],
        ];
        for (const [label, expected] of changedMeanwhile) {
          assert.equal(await storage().clients.update(input.id, { name: 'Refused' }, NOW + 30, expected), undefined, label);
        }
        assert.deepEqual(await storage().clients.find(input.id), read, 'nothing changed');

        const updated = await storage().clients.update(input.id, { name: 'Billing v2', isAdmin: true, scopes: ['admin:clients'] }, NOW + 60, read);
        assert.deepEqual(updated, { ...input, name: 'Billing v2', isAdmin: true, scopes: ['admin:clients'], createdAt: NOW, updatedAt: NOW + 60 });
        assert.equal(await storage().clients.update(input.id, { name: 'Stale' }, NOW + 90, read), undefined, 'the client it was read as is gone');
        assert.equal((await storage().clients.update(input.id, { description: 'Described' }, NOW + 90, updated))?.description, 'Described', 'as read again, it is');
        assert.equal(await storage().clients.update(randomUUID(), { name: 'Ghost' }, NOW, read), undefined);
      });

      it('stores secrets and returns them with the client in one read', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const first = { id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null };
        const second = { id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'wxyz', createdAt: NOW + 1, expiresAt: NOW + 7 * 24 * HOUR };
        await storage().clients.addSecret(second);
        await storage().clients.addSecret(first);

        assert.deepEqual(await storage().clients.listSecrets(client.id), [first, second]);
        const found = await storage().clients.findWithSecrets(client.id);
        assert.deepEqual(found?.client, client);
        assert.deepEqual(
          found?.secrets.sort((a, b) => a.createdAt - b.createdAt),
          [first, second],
        );
      });

      it('returns an empty secret list for a client without secrets', async () => {
        const client = await storage().clients.create(aClient({ type: 'public' }), NOW);
        assert.deepEqual(await storage().clients.findWithSecrets(client.id), { client, secrets: [] });
      });

      it('deletes a secret only through the client it belongs to', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const other = await storage().clients.create(aClient(), NOW);
        const secret = { id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null };
        await storage().clients.addSecret(secret);

        assert.equal(await storage().clients.deleteSecret(other.id, secret.id), false);
        assert.deepEqual(await storage().clients.listSecrets(client.id), [secret]);

        assert.equal(await storage().clients.deleteSecret(client.id, secret.id), true);
        assert.deepEqual(await storage().clients.listSecrets(client.id), []);
        assert.equal(await storage().clients.deleteSecret(client.id, secret.id), false);
      });

      it('deletes a client with its secrets, grants, refresh tokens and codes, leaving other clients’ alone', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const seed = async () => {
          const client = await storage().clients.create(aClient(), NOW);
          const secret = { id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null };
          await storage().clients.addSecret(secret);
          const userGrant = aGrant(client.id, user.id);
          const clientGrant = aGrant(client.id, null);
          await storage().grants.create(userGrant);
          await storage().grants.create(clientGrant);
          const refreshToken = aRefreshToken(userGrant);
          await storage().refreshTokens.insert(refreshToken);
          const code = aCode(client.id, user.id);
          await storage().codes.insert(code);
          return { client, userGrant, clientGrant, refreshToken, code };
        };
        const doomed = await seed();
        const kept = await seed();

        assert.equal(await storage().clients.delete(doomed.client.id), true);

        assert.equal(await storage().clients.find(doomed.client.id), undefined);
        assert.deepEqual(await storage().clients.listSecrets(doomed.client.id), []);
        assert.equal(await storage().grants.find(doomed.userGrant.id), undefined);
        assert.equal(await storage().grants.find(doomed.clientGrant.id), undefined);
        assert.equal(await storage().refreshTokens.find(doomed.refreshToken.digest), undefined);
        assert.deepEqual(await storage().codes.consume(doomed.code.digest, exchangeOf(doomed.code), NOW), { outcome: 'not_found' });

        assert.equal((await storage().clients.findWithSecrets(kept.client.id))?.secrets.length, 1);
        assert.deepEqual(await storage().grants.find(kept.userGrant.id), kept.userGrant);
        assert.deepEqual(await storage().grants.find(kept.clientGrant.id), kept.clientGrant);
        assert.deepEqual((await storage().refreshTokens.find(kept.refreshToken.digest))?.token, kept.refreshToken);
        assert.equal((await storage().codes.consume(kept.code.digest, exchangeOf(kept.code), NOW)).outcome, 'consumed');
        assert.deepEqual(await storage().users.findById(user.id), user);
      });

      it('reports false when deleting a client that does not exist', async () => {
        assert.equal(await storage().clients.delete(randomUUID()), false);
      });

      it('deletes a client, one of its secrets or revokes one of its API keys only while the client has the expected powers', async () => {
        const input = aClient({ scopes: ['objects:read', 'model:read'], isAdmin: false, allowImpersonation: false });
        const client = await storage().clients.create(input, NOW);
        const secret = { id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null };
        await storage().clients.addSecret(secret);
        const key = { id: randomUUID(), clientId: client.id, name: 'Script', digest: digestOf(createOpaqueToken('ak')), prefix: 'gate_ak_', scopes: ['objects:read'], createdAt: NOW, expiresAt: null, revokedAt: null, lastUsedAt: null };
        await storage().apiKeys.create(key);
        for (const [label, expected] of POWERS_CHANGED_MEANWHILE) {
          assert.equal(await storage().apiKeys.revoke(client.id, key.id, NOW + 10, expected), false, label);
          assert.equal(await storage().clients.deleteSecret(client.id, secret.id, expected), false, label);
          assert.equal(await storage().clients.delete(client.id, expected), false, label);
        }
        assert.deepEqual(await storage().clients.find(client.id), client, 'nothing changed');
        assert.deepEqual(await storage().clients.listSecrets(client.id), [secret]);
        assert.deepEqual(await storage().apiKeys.findById(key.id), key);

        assert.equal(await storage().apiKeys.revoke(client.id, key.id, NOW + 10, POWERS), true);
        assert.equal((await storage().apiKeys.findById(key.id))?.revokedAt, NOW + 10);
        assert.equal(await storage().clients.deleteSecret(client.id, secret.id, POWERS), true);
        assert.deepEqual(await storage().clients.listSecrets(client.id), []);
        assert.equal(await storage().clients.delete(client.id, POWERS), true);
        assert.equal(await storage().clients.find(client.id), undefined);
        assert.equal(await storage().clients.delete(client.id, POWERS), false, 'once');
      });

      it('stores a secret or an API key with expected powers only while the client still has them, storing nothing otherwise', async () => {
        const client = await storage().clients.create(aClient({ scopes: ['objects:read', 'model:read'] }), NOW);
        const aSecret = () => ({ id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null });
        const anApiKey = () => ({ id: randomUUID(), clientId: client.id, name: 'Script', digest: digestOf(createOpaqueToken('ak')), prefix: 'gate_ak_', scopes: ['objects:read'], createdAt: NOW, expiresAt: null, revokedAt: null, lastUsedAt: null });
        for (const [label, expected] of POWERS_CHANGED_MEANWHILE) {
          assert.equal(await storage().clients.addSecret(aSecret(), expected), false, label);
          assert.equal(await storage().apiKeys.create(anApiKey(), expected), false, label);
        }
        assert.equal(await storage().clients.addSecret({ ...aSecret(), clientId: randomUUID() }, POWERS), false, 'no such client');
        assert.equal(await storage().apiKeys.create({ ...anApiKey(), clientId: randomUUID() }, POWERS), false, 'no such client');
        assert.deepEqual(await storage().clients.listSecrets(client.id), [], 'no secret stored');
        assert.deepEqual(await storage().apiKeys.listForClient(client.id), [], 'no key stored');
        assert.deepEqual(await storage().clients.find(client.id), client, 'the client is as it was');

        const secret = aSecret();
        const key = anApiKey();
        assert.equal(await storage().clients.addSecret(secret, POWERS), true);
        assert.equal(await storage().apiKeys.create(key, POWERS), true);
        assert.deepEqual(await storage().clients.listSecrets(client.id), [secret]);
        assert.deepEqual(await storage().apiKeys.listForClient(client.id), [key]);
        assert.deepEqual(await storage().clients.find(client.id), client, 'the update time is as it was');
      });

      it('stores a client with a limit only while its owner holds fewer clients', async () => {
        const owner = await storage().users.create(aUser(), NOW);
        await storage().clients.create(aClient({ ownerUserId: owner.id }), NOW);
        const second = await storage().clients.create(aClient({ ownerUserId: owner.id }), NOW, 2);
        assert.equal(second.ownerUserId, owner.id);
        const refused = aClient({ ownerUserId: owner.id });
        await assert.rejects(storage().clients.create(refused, NOW, 2), { code: 'ERR_TOO_MANY_CLIENTS' });
        assert.equal(await storage().clients.find(refused.id), undefined, 'nothing stored');
        assert.equal((await storage().clients.listForOwner(owner.id)).length, 2);
      });

      it('stores an API key with a limit only while the client holds fewer live keys, not counting revoked or expired ones', async () => {
        const client = await storage().clients.create(aClient({ scopes: ['objects:read'] }), NOW);
        const anApiKey = (fields: { expiresAt?: number; revokedAt?: number } = {}) => ({
          id: randomUUID(),
          clientId: client.id,
          name: 'Script',
          digest: digestOf(createOpaqueToken('ak')),
          prefix: 'gate_ak_',
          scopes: ['objects:read'],
          createdAt: NOW,
          expiresAt: fields.expiresAt ?? null,
          revokedAt: fields.revokedAt ?? null,
          lastUsedAt: null,
        });
        await storage().apiKeys.create(anApiKey({ revokedAt: NOW - 5 }));
        await storage().apiKeys.create(anApiKey({ expiresAt: NOW }));
        assert.equal(await storage().apiKeys.create(anApiKey(), undefined, 2), true);
        assert.equal(await storage().apiKeys.create(anApiKey({ expiresAt: NOW + 60 }), undefined, 2), true);
        await assert.rejects(storage().apiKeys.create(anApiKey(), undefined, 2), { code: 'ERR_TOO_MANY_API_KEYS' });
        assert.equal((await storage().apiKeys.listForClient(client.id)).length, 4, 'nothing more stored');
        assert.equal(await storage().apiKeys.create({ ...anApiKey(), clientId: randomUUID() }, undefined, 2), false, 'no such client');
      });

      it('writes to a client, or to one of its credentials, with an expected owner only while the client has that owner', async () => {
        const alice = await storage().users.create(aUser(), NOW);
        const bob = await storage().users.create(aUser(), NOW);
        const client = await storage().clients.create(aClient({ scopes: ['objects:read', 'model:read'], ownerUserId: alice.id }), NOW);
        const orphan = await storage().clients.create(aClient({ scopes: ['objects:read', 'model:read'] }), NOW);
        const aSecret = (clientId: string) => ({ id: randomUUID(), clientId, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null });
        const anApiKey = (clientId: string) => ({ id: randomUUID(), clientId, name: 'Script', digest: digestOf(createOpaqueToken('ak')), prefix: 'gate_ak_', scopes: ['objects:read'], createdAt: NOW, expiresAt: null, revokedAt: null, lastUsedAt: null });
        const secret = aSecret(client.id);
        const key = anApiKey(client.id);
        await storage().clients.addSecret(secret);
        await storage().apiKeys.create(key);

        for (const [label, owner] of [
          ['another owner', bob.id],
          ['no owner', null],
        ] as const) {
          const expected = { ...POWERS, owner };
          assert.equal(await storage().clients.update(client.id, { name: 'Refused' }, NOW + 10, { ...client, ownerUserId: owner }), undefined, label);
          assert.equal(await storage().clients.addSecret(aSecret(client.id), expected), false, label);
          assert.equal(await storage().apiKeys.create(anApiKey(client.id), expected), false, label);
          assert.equal(await storage().apiKeys.revoke(client.id, key.id, NOW + 10, expected), false, label);
          assert.equal(await storage().clients.deleteSecret(client.id, secret.id, expected), false, label);
          assert.equal(await storage().clients.delete(client.id, expected), false, label);
        }
        assert.deepEqual(await storage().clients.find(client.id), client, 'nothing changed');
        assert.deepEqual(await storage().clients.listSecrets(client.id), [secret]);
        assert.deepEqual(await storage().apiKeys.listForClient(client.id), [key]);

        // An expected owner of null is a client without one; an owner left out is not compared.
        assert.equal(await storage().clients.update(orphan.id, { name: 'Refused' }, NOW + 10, { ...orphan, ownerUserId: alice.id }), undefined);
        const operators = await storage().clients.update(orphan.id, { name: 'Operator’s' }, NOW + 10, orphan);
        assert.equal(operators?.name, 'Operator’s');
        assert.equal(await storage().apiKeys.create(anApiKey(orphan.id), { ...POWERS, owner: alice.id }), false);
        assert.equal(await storage().apiKeys.create(anApiKey(orphan.id), POWERS), true);

        const expected = { ...POWERS, owner: alice.id };
        assert.equal((await storage().clients.update(client.id, { name: 'Alice’s' }, NOW + 20, client))?.name, 'Alice’s');
        const added = aSecret(client.id);
        assert.equal(await storage().clients.addSecret(added, expected), true);
        assert.equal(await storage().apiKeys.create(anApiKey(client.id), expected), true);
        assert.equal(await storage().apiKeys.revoke(client.id, key.id, NOW + 30, expected), true);
        assert.equal((await storage().apiKeys.findById(key.id))?.revokedAt, NOW + 30);
        assert.equal(await storage().clients.deleteSecret(client.id, secret.id, expected), true);
        assert.deepEqual(await storage().clients.listSecrets(client.id), [added]);
        assert.equal(await storage().clients.delete(client.id, expected), true);
        assert.equal(await storage().clients.find(client.id), undefined);
      });

      it('lets exactly one of several concurrent deletions of a client through, the client with everything issued to it', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const client = await storage().clients.create(aClient(), NOW);
        for (let i = 0; i < 5; i++) {
          const grant = aGrant(client.id, user.id);
          await storage().grants.create(grant);
          await storage().refreshTokens.insert(aRefreshToken(grant));
        }
        const outcomes = await Promise.all(Array.from({ length: 8 }, () => storage().clients.delete(client.id)));
        assert.equal(outcomes.filter(Boolean).length, 1, JSON.stringify(outcomes));
        assert.equal(await storage().clients.find(client.id), undefined);
        assert.deepEqual(await storage().grants.list({ clientId: client.id }), []);
      });
    });

    describe('users', () => {
      it('creates a user with the email lower-cased and finds them by id', async () => {
        const input = aUser({ email: `Ada.${randomUUID()}@Example.COM`, emailVerified: true });
        const created = await storage().users.create(input, NOW);
        assert.deepEqual(created, { ...input, email: input.email.toLowerCase(), createdAt: NOW, updatedAt: NOW });
        assert.deepEqual(await storage().users.findById(input.id), created);
      });

      it('finds a user by email whatever its case', async () => {
        const local = `grace.${randomUUID()}`;
        const created = await storage().users.create(aUser({ email: `${local}@example.com` }), NOW);
        assert.deepEqual(await storage().users.findByEmail(`${local.toUpperCase()}@EXAMPLE.com`), created);
        assert.equal(await storage().users.findByEmail(`nobody.${randomUUID()}@example.com`), undefined);
      });

      it('refuses a second user whose email differs only in case, with EmailTakenError', async () => {
        const local = `alan.${randomUUID()}`;
        const first = await storage().users.create(aUser({ email: `${local}@example.com` }), NOW);
        const second = aUser({ email: `${local.toUpperCase()}@Example.Com` });

        await assert.rejects(storage().users.create(second, NOW), { name: 'EmailTakenError', code: 'ERR_EMAIL_TAKEN' });
        assert.equal(await storage().users.findById(second.id), undefined);
        assert.deepEqual(await storage().users.findByEmail(first.email), first);
      });

      it('takes the composed and decomposed Unicode forms of an email for one, stored composed (NFC)', async () => {
        const email = `josé.${randomUUID()}@bücher.example`.normalize('NFD');
        const created = await storage().users.create(aUser({ email }), NOW);
        assert.equal(created.email, email.normalize('NFC'));
        assert.deepEqual(await storage().users.findByEmail(email.toUpperCase()), created);
        await assert.rejects(storage().users.create(aUser({ email: email.normalize('NFC') }), NOW), { name: 'EmailTakenError' });
        const raced = `zoë.${randomUUID()}@example.com`;
        const attempts = Array.from({ length: 10 }, (_, i) => aUser({ email: raced.normalize(i % 2 === 0 ? 'NFC' : 'NFD') }));
        const results = await Promise.allSettled(attempts.map((user) => storage().users.create(user, NOW)));
        assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1);
      });

      it('takes an internationalized domain in its ASCII (xn--) and Unicode forms for one, stored in Unicode', async () => {
        const local = `ida.${randomUUID()}`;
        const created = await storage().users.create(aUser({ email: `${local}@XN--BCHER-KVA.example` }), NOW);
        assert.equal(created.email, `${local}@bücher.example`);
        assert.deepEqual(await storage().users.findByEmail(`${local}@BÜCHER.example`), created);
        await assert.rejects(storage().users.create(aUser({ email: `${local}@bücher.example` }), NOW), { name: 'EmailTakenError' });
      });

      it('lets exactly one of several concurrent sign-ups with one email through', async () => {
        const email = `race.${randomUUID()}@example.com`;
        const attempts = Array.from({ length: 10 }, (_, i) => aUser({ email: i % 2 === 0 ? email : email.toUpperCase() }));

        const results = await Promise.allSettled(attempts.map((user) => storage().users.create(user, NOW)));

        assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1);
        for (const result of results) {
          if (result.status === 'rejected') assert.equal((result.reason as { code?: string }).code, 'ERR_EMAIL_TAKEN');
        }
      });

      it('lists users oldest first', async () => {
        const later = await storage().users.create(aUser(), NOW + 5);
        const earlier = await storage().users.create(aUser(), NOW + 4);
        const listed = (await storage().users.list()).filter((user) => user.id === later.id || user.id === earlier.id);
        assert.deepEqual(listed, [earlier, later]);
      });

      it('lists only the user with an email, normalized, when asked for one: none or one, within the page asked for', async () => {
        const local = `zoë.${randomUUID()}`;
        const created = await storage().users.create(aUser({ email: `${local}@bücher.example` }), NOW);
        await storage().users.create(aUser(), NOW);
        for (const typed of [created.email, ` ${local.toUpperCase()}@XN--BCHER-KVA.example `.normalize('NFD')]) {
          assert.deepEqual(await storage().users.list(undefined, { email: typed }), [created], JSON.stringify(typed));
        }
        assert.deepEqual(await storage().users.list({ limit: 1 }, { email: created.email }), [created]);
        assert.deepEqual(await storage().users.list({ limit: 5, after: { createdAt: created.createdAt, id: created.id } }, { email: created.email }), [], 'a page after the user');
        assert.deepEqual(await storage().users.list(undefined, { email: `nobody.${randomUUID()}@example.com` }), []);
      });

      it('updates only the fields given, normalizing the email, and the update time', async () => {
        const user = await storage().users.create(aUser({ name: 'Hedy' }), NOW);
        const email = `Hedy.${randomUUID()}@Example.COM`;
        const updated = await storage().users.update(user.id, { email, emailVerified: true }, NOW + 1);
        assert.deepEqual(updated, { ...user, email: email.toLowerCase(), emailVerified: true, updatedAt: NOW + 1 });
        assert.deepEqual(await storage().users.findById(user.id), updated);
        assert.deepEqual(await storage().users.findByEmail(email), updated);
        assert.equal(await storage().users.findByEmail(user.email), undefined, 'the old email names no one');
        assert.deepEqual(await storage().users.update(user.id, { name: 'Hedy Lamarr' }, NOW + 2), { ...updated, name: 'Hedy Lamarr', updatedAt: NOW + 2 });
        assert.equal(await storage().users.update(randomUUID(), { name: 'Nobody' }, NOW), undefined);
      });

      it('updates a user with an expected email only while they have it, storing nothing otherwise', async () => {
        const user = await storage().users.create(aUser(), NOW);
        assert.equal(await storage().users.update(user.id, { emailVerified: true }, NOW + 1, { email: `other.${randomUUID()}@example.com` }), undefined);
        assert.deepEqual(await storage().users.findById(user.id), user);
        const updated = await storage().users.update(user.id, { emailVerified: true }, NOW + 1, { email: user.email });
        assert.deepEqual(updated, { ...user, emailVerified: true, updatedAt: NOW + 1 });
      });

      it('refuses to give a user another user’s email, in any case or form, with EmailTakenError, storing nothing; their own in another case is theirs', async () => {
        const first = await storage().users.create(aUser({ email: `first.${randomUUID()}@example.com` }), NOW);
        const second = await storage().users.create(aUser(), NOW);
        for (const email of [first.email, ` ${first.email.toUpperCase()}`]) {
          await assert.rejects(storage().users.update(second.id, { name: 'Changed', email }, NOW + 1), { name: 'EmailTakenError', code: 'ERR_EMAIL_TAKEN' });
        }
        assert.deepEqual(await storage().users.findById(second.id), second);
        assert.deepEqual(await storage().users.findByEmail(first.email), first);
        assert.deepEqual(await storage().users.update(first.id, { email: first.email.toUpperCase() }, NOW + 1), { ...first, updatedAt: NOW + 1 });
      });

      it('gives one email to exactly one of several users changed to it at once', async () => {
        const email = `wanted.${randomUUID()}@example.com`;
        const users = await Promise.all(Array.from({ length: 6 }, () => storage().users.create(aUser(), NOW)));
        const results = await Promise.allSettled(users.map((user, i) => storage().users.update(user.id, { email: i % 2 === 0 ? email : email.toUpperCase() }, NOW + 1)));
        assert.equal(results.filter((result) => result.status === 'fulfilled').length, 1);
        for (const result of results) {
          if (result.status === 'rejected') assert.equal((result.reason as { code?: string }).code, 'ERR_EMAIL_TAKEN');
        }
        assert.equal((await storage().users.list(undefined, { email })).length, 1);
      });

      it('disables and re-enables a user, recording the update time', async () => {
        const user = await storage().users.create(aUser(), NOW);

        assert.equal(await storage().users.setDisabled(user.id, NOW + 10, NOW + 10), true);
        assert.deepEqual(await storage().users.findById(user.id), { ...user, disabledAt: NOW + 10, updatedAt: NOW + 10 });

        assert.equal(await storage().users.setDisabled(user.id, null, NOW + 20), true);
        assert.deepEqual(await storage().users.findById(user.id), { ...user, disabledAt: null, updatedAt: NOW + 20 });
      });

      it('changes a password hash', async () => {
        const user = await storage().users.create(aUser(), NOW);
        assert.equal(await storage().users.setPasswordHash(user.id, '$scrypt$new', NOW + 1), true);
        assert.deepEqual(await storage().users.findById(user.id), { ...user, passwordHash: '$scrypt$new', updatedAt: NOW + 1 });
      });

      it('changes a password hash on condition only while it is the one expected', async () => {
        const user = await storage().users.create(aUser(), NOW);
        assert.equal(await storage().users.setPasswordHash(user.id, '$scrypt$new', NOW + 1, 'not the stored hash'), false);
        assert.deepEqual(await storage().users.findById(user.id), user, 'a hash changed meanwhile stays');
        assert.equal(await storage().users.setPasswordHash(user.id, '$scrypt$new', NOW + 1, user.passwordHash), true);
        assert.deepEqual(await storage().users.findById(user.id), { ...user, passwordHash: '$scrypt$new', updatedAt: NOW + 1 });
      });

      it('replaces a password hash with a rehash of it only while it is the one verified, leaving updatedAt', async () => {
        const user = await storage().users.create(aUser(), NOW);
        assert.equal(await storage().users.rehashPassword(user.id, 'not the stored hash', '$argon2id$rehashed'), false);
        assert.deepEqual(await storage().users.findById(user.id), user, 'a hash changed meanwhile stays');
        assert.equal(await storage().users.rehashPassword(user.id, user.passwordHash, '$argon2id$rehashed'), true);
        assert.deepEqual(await storage().users.findById(user.id), { ...user, passwordHash: '$argon2id$rehashed' });
        assert.equal(await storage().users.rehashPassword(randomUUID(), user.passwordHash, '$argon2id$other'), false);
      });

      it('reports false when changing a user that does not exist', async () => {
        assert.equal(await storage().users.setDisabled(randomUUID(), NOW, NOW), false);
        assert.equal(await storage().users.setPasswordHash(randomUUID(), '$scrypt$new', NOW), false);
        assert.equal(await storage().users.delete(randomUUID()), undefined);
      });

      it('deletes a user with their grants, refresh tokens and codes, leaving other users’ and the client alone', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const seed = async () => {
          const user = await storage().users.create(aUser(), NOW);
          const grant = aGrant(client.id, user.id);
          await storage().grants.create(grant);
          const refreshToken = aRefreshToken(grant);
          await storage().refreshTokens.insert(refreshToken);
          const code = aCode(client.id, user.id);
          await storage().codes.insert(code);
          return { user, grant, refreshToken, code };
        };
        const doomed = await seed();
        const kept = await seed();

        assert.deepEqual(await storage().users.delete(doomed.user.id), { clientIds: [], sessions: [] });

        assert.equal(await storage().users.findById(doomed.user.id), undefined);
        assert.equal(await storage().users.findByEmail(doomed.user.email), undefined);
        assert.equal(await storage().grants.find(doomed.grant.id), undefined);
        assert.deepEqual(await storage().grants.list({ userId: doomed.user.id }), []);
        assert.equal(await storage().refreshTokens.find(doomed.refreshToken.digest), undefined);
        assert.deepEqual(await storage().codes.consume(doomed.code.digest, exchangeOf(doomed.code), NOW), { outcome: 'not_found' });

        assert.deepEqual(await storage().users.findById(kept.user.id), kept.user);
        assert.deepEqual(await storage().grants.list({ userId: kept.user.id }), [kept.grant]);
        assert.deepEqual((await storage().refreshTokens.find(kept.refreshToken.digest))?.token, kept.refreshToken);
        assert.equal((await storage().codes.consume(kept.code.digest, exchangeOf(kept.code), NOW)).outcome, 'consumed');
        assert.deepEqual(await storage().clients.find(client.id), client);
      });

      it('deletes the applications a user owns with the user, and everything issued to them, leaving others’ alone', async () => {
        const [developer, other, customer] = await Promise.all([aUser(), aUser(), aUser()].map((user) => storage().users.create(user, NOW)));
        const owned = await Promise.all([1, 2].map(() => storage().clients.create(aClient({ ownerUserId: developer!.id }), NOW)));
        const kept = await storage().clients.create(aClient({ ownerUserId: other!.id }), NOW);
        for (const client of [...owned, kept]) {
          await storage().clients.addSecret({ id: randomUUID(), clientId: client.id, digest: digestOf(createOpaqueToken('cs')), hint: 'abcd', createdAt: NOW, expiresAt: null });
        }
        // Someone else signed in to the developer's application: that grant goes with the application.
        const customerGrant = aGrant(owned[0]!.id, customer!.id);
        await storage().grants.create(customerGrant);
        const customerToken = aRefreshToken(customerGrant);
        await storage().refreshTokens.insert(customerToken);

        const deleted = await storage().users.delete(developer!.id);

        assert.deepEqual(deleted?.clientIds, owned.map((client) => client.id).sort());
        for (const client of owned) {
          assert.equal(await storage().clients.find(client.id), undefined);
          assert.deepEqual(await storage().clients.listSecrets(client.id), []);
        }
        assert.equal(await storage().grants.find(customerGrant.id), undefined);
        assert.equal(await storage().refreshTokens.find(customerToken.digest), undefined);
        assert.deepEqual(await storage().clients.find(kept.id), kept);
        assert.equal((await storage().clients.listSecrets(kept.id)).length, 1);
        assert.deepEqual(await storage().users.findById(customer!.id), customer);
      });

      it('deletes a user who confirmed with their password only while the hash is still that one and they are not disabled', async () => {
        const developer = await storage().users.create(aUser(), NOW);
        const owned = await storage().clients.create(aClient({ ownerUserId: developer.id }), NOW);
        const checked = developer.passwordHash;

        await storage().users.setPasswordHash(developer.id, '$argon2id$set-by-an-operator', NOW);
        assert.equal(await storage().users.delete(developer.id, { passwordHash: checked }), undefined, 'the password changed since it was checked');
        await storage().users.setPasswordHash(developer.id, checked, NOW);
        await storage().users.setDisabled(developer.id, NOW, NOW);
        assert.equal(await storage().users.delete(developer.id, { passwordHash: checked }), undefined, 'disabled since');
        assert.ok(await storage().users.findById(developer.id));
        assert.deepEqual(await storage().clients.find(owned.id), owned, 'their applications stay with them');

        await storage().users.setDisabled(developer.id, null, NOW);
        assert.deepEqual((await storage().users.delete(developer.id, { passwordHash: checked }))?.clientIds, [owned.id]);
        assert.equal(await storage().users.findById(developer.id), undefined);
      });

      it('lets exactly one of several concurrent deletions of a user through, with the applications they own', async () => {
        const developer = await storage().users.create(aUser(), NOW);
        const owned = await Promise.all([1, 2, 3].map(() => storage().clients.create(aClient({ ownerUserId: developer.id }), NOW)));
        const outcomes = await Promise.all([
          ...Array.from({ length: 6 }, () => storage().users.delete(developer.id)),
          // Their applications deleted at the same moment, each on its own.
          ...owned.map((client) => storage().clients.delete(client.id)),
        ]);
        const users = outcomes.slice(0, 6).filter((outcome) => outcome !== undefined);
        assert.equal(users.length, 1, JSON.stringify(outcomes));
        assert.equal(await storage().users.findById(developer.id), undefined);
        for (const client of owned) assert.equal(await storage().clients.find(client.id), undefined);
      });
    });

    describe('sessions', () => {
      const aSession = (userId: string, createdAt = NOW) => ({
        digest: digestOf(createOpaqueToken('ss')),
        sid: randomUUID(),
        userId,
        authTime: createdAt,
        createdAt,
        expiresAt: createdAt + HOUR,
        address: '192.0.2.1',
        device: 'Firefox on Linux',
        lastUsedAt: createdAt,
      });

      it('lists a user’s live sessions newest first, bounded, with where and what they signed in with', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const other = await storage().users.create(aUser(), NOW);
        const sessions = [0, 1, 2, 3].map((i) => aSession(user.id, NOW - 100 + i * 10));
        const expired = { ...aSession(user.id, NOW - 2 * HOUR), expiresAt: NOW };
        const unknown = { ...aSession(user.id, NOW - 200), address: null, device: null, lastUsedAt: null };
        for (const session of [...sessions, expired, unknown, aSession(other.id, NOW)]) await storage().sessions.create(session);

        assert.deepEqual(await storage().sessions.listForUser(user.id, NOW, 50), [...[...sessions].reverse(), unknown], 'newest first, the expired one left out, another user’s never');
        assert.deepEqual(await storage().sessions.listForUser(user.id, NOW, 2), [sessions[3], sessions[2]]);
        assert.deepEqual(await storage().sessions.listForUser(randomUUID(), NOW, 50), []);
      });

      it('records a session’s use only once its last recorded use is older than asked, and nothing for one ended', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const session = aSession(user.id);
        await storage().sessions.create(session);

        await storage().sessions.recordUse(session.digest, NOW + 60, NOW);
        assert.equal((await storage().sessions.find(session.digest))?.lastUsedAt, NOW, 'recorded at NOW, which is not older than NOW');
        await storage().sessions.recordUse(session.digest, NOW + 400, NOW + 1);
        assert.equal((await storage().sessions.find(session.digest))?.lastUsedAt, NOW + 400);
        // Two instances that read it stale at once: one writes, the other finds it fresh.
        await Promise.all([storage().sessions.recordUse(session.digest, NOW + 800, NOW + 401), storage().sessions.recordUse(session.digest, NOW + 801, NOW + 402)]);
        assert.ok([NOW + 800, NOW + 801].includes((await storage().sessions.find(session.digest))!.lastUsedAt!));

        const unknown = { ...aSession(user.id), lastUsedAt: null };
        await storage().sessions.create(unknown);
        await storage().sessions.recordUse(unknown.digest, NOW + 5, NOW);
        assert.equal((await storage().sessions.find(unknown.digest))?.lastUsedAt, NOW + 5, 'an unknown last use is recorded');

        await storage().sessions.delete(session.digest);
        await storage().sessions.recordUse(session.digest, NOW + 2000, NOW + 1999);
        assert.equal(await storage().sessions.find(session.digest), undefined, 'an ended session is not made again');
      });

      it('ends one session of a user by its sid, with its clients, and none of another user’s', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const other = await storage().users.create(aUser(), NOW);
        const client = await storage().clients.create(aClient(), NOW);
        const [ended, kept] = [aSession(user.id), aSession(user.id)];
        const others = aSession(other.id);
        for (const session of [ended, kept, others]) await storage().sessions.create(session);
        await storage().sessions.addClient(ended.digest, client.id);

        assert.equal(await storage().sessions.deleteBySid(user.id, others.sid), undefined, 'another user’s sid ends nothing');
        assert.deepEqual(await storage().sessions.find(others.digest), others);
        assert.deepEqual(await storage().sessions.deleteBySid(user.id, ended.sid), { sid: ended.sid, userId: user.id, clientIds: [client.id] });
        assert.equal(await storage().sessions.find(ended.digest), undefined);
        assert.deepEqual(await storage().sessions.find(kept.digest), kept);
        assert.equal(await storage().sessions.deleteBySid(user.id, ended.sid), undefined, 'ended once');
        assert.equal(await storage().sessions.deleteBySid(user.id, randomUUID()), undefined);
      });

      it('ends every session of a user, or every one but the session kept, leaving other users’ alone', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const other = await storage().users.create(aUser(), NOW);
        const [kept, second, third] = [aSession(user.id), aSession(user.id), aSession(user.id)];
        const others = aSession(other.id);
        for (const session of [kept, second, third, others]) await storage().sessions.create(session);

        const endedSids = async (ended: Promise<EndedSession[]>) => (await ended).map((session) => session.sid).sort();
        assert.deepEqual(await endedSids(storage().sessions.deleteForUser(user.id, kept.digest)), [second.sid, third.sid].sort());
        assert.deepEqual(await storage().sessions.find(kept.digest), kept);
        assert.equal(await storage().sessions.find(second.digest), undefined);
        assert.equal(await storage().sessions.find(third.digest), undefined);
        assert.deepEqual(await storage().sessions.deleteForUser(user.id, kept.digest), [], 'nothing else left');
        // Another user's session is never the one kept: it stays, and so does theirs.
        assert.deepEqual(await endedSids(storage().sessions.deleteForUser(user.id, others.digest)), [kept.sid]);
        assert.equal(await storage().sessions.find(kept.digest), undefined);
        assert.deepEqual(await storage().sessions.find(others.digest), others);

        await storage().sessions.create(aSession(other.id));
        assert.equal((await storage().sessions.deleteForUser(other.id)).length, 2);
        assert.equal(await storage().sessions.find(others.digest), undefined);
        assert.deepEqual(await storage().sessions.deleteForUser(randomUUID()), []);
      });

      it('starts no session, and says so, for a user deleted since they were read', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const live = aSession(user.id);
        assert.equal(await storage().sessions.create(live), true);
        await storage().users.delete(user.id);
        const late = aSession(user.id);
        assert.equal(await storage().sessions.create(late), false);
        assert.equal(await storage().sessions.find(late.digest), undefined);
      });

      it('starts no session, and says so, for a user disabled since they were read, and starts one again once they are enabled', async () => {
        const user = await storage().users.create(aUser(), NOW);
        await storage().users.setDisabled(user.id, NOW + 1, NOW + 1);
        const late = aSession(user.id);
        assert.equal(await storage().sessions.create(late), false);
        assert.equal(await storage().sessions.find(late.digest), undefined);
        await storage().users.setDisabled(user.id, null, NOW + 2);
        const again = aSession(user.id);
        assert.equal(await storage().sessions.create(again), true);
        assert.deepEqual(await storage().sessions.find(again.digest), again);
      });

      it('remembers the clients answered through a session, once each, and names them when it ends', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const [first, second] = [await storage().clients.create(aClient(), NOW), await storage().clients.create(aClient(), NOW)];
        const session = aSession(user.id);
        const other = aSession(user.id);
        for (const s of [session, other]) await storage().sessions.create(s);
        assert.equal(await storage().sessions.addClient(session.digest, first.id), true);
        assert.equal(await storage().sessions.addClient(session.digest, second.id), true);
        assert.equal(await storage().sessions.addClient(session.digest, first.id), true, 'recorded once, however often');
        assert.equal(await storage().sessions.addClient(other.digest, second.id), true);
        // A session that has ended records nothing, and says so.
        assert.equal(await storage().sessions.addClient(digestOf(createOpaqueToken('ss')), first.id), false);

        const ended = await storage().sessions.delete(session.digest);
        assert.deepEqual({ ...ended, clientIds: ended?.clientIds.toSorted() }, { sid: session.sid, userId: user.id, clientIds: [first.id, second.id].sort() });
        assert.equal(await storage().sessions.delete(session.digest), undefined, 'ended once');
        // A session started again with the same digest (it never is) would not inherit the clients.
        await storage().sessions.create(session);
        assert.deepEqual(await storage().sessions.delete(session.digest), { sid: session.sid, userId: user.id, clientIds: [] });
        assert.deepEqual(await storage().sessions.deleteForUser(user.id), [{ sid: other.sid, userId: user.id, clientIds: [second.id] }]);
      });

      it('renews a session under a new digest, with its sid, start and clients, and renews none that has ended', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const client = await storage().clients.create(aClient(), NOW);
        const session = aSession(user.id);
        await storage().sessions.create(session);
        assert.equal(await storage().sessions.addClient(session.digest, client.id), true);

        const renewal = { digest: digestOf(createOpaqueToken('ss')), authTime: NOW + 60, expiresAt: NOW + 60 + HOUR, address: '2001:db8::7', device: 'Safari on iOS' };
        // Signed in again now, from where and with what it signs in again.
        const renewed = { ...session, ...renewal, lastUsedAt: NOW + 60 };
        assert.deepEqual(await storage().sessions.renew(session.digest, renewal), renewed);
        assert.deepEqual(await storage().sessions.find(renewal.digest), renewed);
        assert.equal(await storage().sessions.find(session.digest), undefined, 'the old digest names nothing');
        assert.equal(await storage().sessions.addClient(session.digest, client.id), false, 'nor records anything');
        assert.equal(await storage().sessions.renew(session.digest, { ...renewal, digest: digestOf(createOpaqueToken('ss')) }), undefined, 'renewed once');
        assert.deepEqual(await storage().sessions.delete(renewal.digest), { sid: session.sid, userId: user.id, clientIds: [client.id] });
        assert.equal(await storage().sessions.renew(renewal.digest, { ...renewal, digest: digestOf(createOpaqueToken('ss')) }), undefined, 'nor once ended');
      });

      it('names the sessions a user’s deletion ended, with their clients', async () => {
        const user = await storage().users.create(aUser(), NOW);
        const client = await storage().clients.create(aClient(), NOW);
        const session = aSession(user.id);
        await storage().sessions.create(session);
        await storage().sessions.addClient(session.digest, client.id);
        assert.deepEqual(await storage().users.delete(user.id), { clientIds: [], sessions: [{ sid: session.sid, userId: user.id, clientIds: [client.id] }] });
      });

      it('voids the unexchanged codes of the sessions it ends, and leaves exchanged ones and other sessions’ codes', async () => {
        const { clientId, userId } = await aClientAndUser();
        const [ending, kept] = [aSession(userId), aSession(userId)];
        for (const session of [ending, kept]) await storage().sessions.create(session);
        const unexchanged = aCode(clientId, userId, { sid: ending.sid });
        const exchanged = aCode(clientId, userId, { sid: ending.sid });
        const ofKept = aCode(clientId, userId, { sid: kept.sid });
        for (const code of [unexchanged, exchanged, ofKept]) await storage().codes.insert(code);
        const exchange = exchangeOf(exchanged);
        await storage().codes.consume(exchanged.digest, exchange, NOW);

        assert.equal((await storage().sessions.deleteForUser(userId, kept.digest)).length, 1);
        assert.equal(await storage().codes.find(unexchanged.digest), undefined);
        assert.deepEqual(await storage().codes.consume(unexchanged.digest, exchangeOf(unexchanged), NOW), { outcome: 'not_found' });
        assert.equal((await storage().codes.find(exchanged.digest))?.grantId, exchange.grant.id, 'a reuse still finds the grant to revoke');
        assert.ok(await storage().codes.find(ofKept.digest));
        await storage().sessions.delete(kept.digest);
        assert.equal(await storage().codes.find(ofKept.digest), undefined);
      });

      it('stores a code issued through a session only while the session exists: before its end, and then voided with it, or not at all', async () => {
        const { clientId, userId } = await aClientAndUser();
        const gone = aCode(clientId, userId, { sid: randomUUID() });
        assert.equal(await storage().sessions.addClient(digestOf(createOpaqueToken('ss')), clientId, gone), false);
        assert.equal(await storage().codes.find(gone.digest), undefined, 'nothing stored for a session that has ended');
        for (let round = 0; round < 30; round++) {
          const session = aSession(userId);
          await storage().sessions.create(session);
          const code = aCode(clientId, userId, { sid: session.sid });
          const [recorded, ended] = await Promise.all([storage().sessions.addClient(session.digest, clientId, code), storage().sessions.delete(session.digest)]);
          assert.equal(ended?.sid, session.sid);
          // Stored first, the client is told of the end (its Logout Token) and the code is voided with it.
          // Refused, the client may have been recorded before the end all the same: told of a session
          // it holds nothing of, it finds nothing to end.
          if (recorded) assert.deepEqual(ended?.clientIds, [clientId]);
          else assert.ok(ended?.clientIds.every((id) => id === clientId));
          assert.equal(await storage().codes.find(code.digest), undefined);
        }
      });

      it('either lets a code’s exchange win, its grant stored before the session is reported ended, or voids the code, when both happen at once', async () => {
        const { clientId, userId } = await aClientAndUser();
        for (let round = 0; round < 30; round++) {
          const session = aSession(userId);
          await storage().sessions.create(session);
          const code = aCode(clientId, userId, { sid: session.sid });
          await storage().codes.insert(code);
          const exchange = exchangeOf(code);
          const [consumed, afterEnd] = await Promise.all([
            storage().codes.consume(code.digest, exchange, NOW),
            // What the Logout Token's sender could see once the session is reported ended.
            storage().sessions.delete(session.digest).then(async (ended) => ({
              ended,
              code: await storage().codes.find(code.digest),
              grant: await storage().grants.find(exchange.grant.id),
            })),
          ]);
          assert.equal(afterEnd.ended?.sid, session.sid);
          if (consumed.outcome === 'consumed') {
            assert.deepEqual(afterEnd.grant, exchange.grant, 'the exchange won: its grant exists before the Logout Token is sent');
            assert.equal(afterEnd.code?.consumedAt, NOW);
          } else {
            assert.deepEqual(consumed, { outcome: 'not_found' }, 'the code was voided');
            assert.equal(afterEnd.code, undefined);
            assert.equal(afterEnd.grant, undefined);
          }
        }
      });
    });

    describe('grants', () => {
      it('keeps the session id a grant, and the code it was made from, were authorized in', async () => {
        const { clientId, userId } = await aClientAndUser();
        const code = aCode(clientId, userId, { sid: randomUUID() });
        await storage().codes.insert(code);
        assert.deepEqual(await storage().codes.find(code.digest), code);
        const exchange = exchangeOf(code);
        const grant = { ...exchange.grant, sid: code.sid! };
        assert.equal((await storage().codes.consume(code.digest, { ...exchange, grant }, NOW)).outcome, 'consumed');
        assert.deepEqual(await storage().grants.find(grant.id), grant);
        const token = aRefreshToken(grant);
        await storage().refreshTokens.insert(token);
        assert.deepEqual((await storage().refreshTokens.find(token.digest))?.grant, grant);
      });

      it('creates a grant and finds it, nullable fields included', async () => {
        const { clientId, userId } = await aClientAndUser();
        const forUser = aGrant(clientId, userId, { expiresAt: NOW + 90 * 24 * HOUR });
        const forClient = aGrant(clientId, null);
        await storage().grants.create(forUser);
        await storage().grants.create(forClient);

        assert.deepEqual(await storage().grants.find(forUser.id), forUser);
        assert.deepEqual(await storage().grants.find(forClient.id), forClient);
        assert.equal(await storage().grants.find(randomUUID()), undefined);
      });

      it('stores no grant, and says so, for a user or client deleted since they were read', async () => {
        const { clientId, userId } = await aClientAndUser();
        await storage().users.delete(userId);
        const ofGoneUser = aGrant(clientId, userId);
        assert.equal(await storage().grants.create(ofGoneUser), false);
        assert.equal(await storage().grants.find(ofGoneUser.id), undefined);
        const ofGoneClient = aGrant(randomUUID(), null);
        assert.equal(await storage().grants.create(ofGoneClient), false);
        assert.equal(await storage().grants.find(ofGoneClient.id), undefined);
        const kept = aGrant(clientId, null);
        assert.equal(await storage().grants.create(kept), true);
      });

      it('stores no grant, and says so, for a user disabled since they were read, and stores one again once they are enabled', async () => {
        const { clientId, userId } = await aClientAndUser();
        await storage().users.setDisabled(userId, NOW + 1, NOW + 1);
        const ofDisabledUser = aGrant(clientId, userId);
        assert.equal(await storage().grants.create(ofDisabledUser), false);
        assert.equal(await storage().grants.find(ofDisabledUser.id), undefined);
        await storage().users.setDisabled(userId, null, NOW + 2);
        const withSid = { ...aGrant(clientId, userId), sid: 'a-session-id', authTime: NOW - 5 };
        assert.equal(await storage().grants.create(withSid), true);
        assert.deepEqual(await storage().grants.find(withSid.id), withSid);
      });

      it('revokes a grant once: find shows the revocation time, and a second revocation reports false and keeps it', async () => {
        const { clientId, userId } = await aClientAndUser();
        const grant = aGrant(clientId, userId);
        await storage().grants.create(grant);

        assert.equal(await storage().grants.revoke(grant.id, NOW + 10), true);
        assert.deepEqual(await storage().grants.find(grant.id), { ...grant, revokedAt: NOW + 10 });

        assert.equal(await storage().grants.revoke(grant.id, NOW + 20), false);
        assert.equal((await storage().grants.find(grant.id))?.revokedAt, NOW + 10);
      });

      it('revokes every live grant of a client, and only those, reporting each it revoked with its user', async () => {
        const { clientId, userId } = await aClientAndUser();
        const other = await aClientAndUser();
        const live = aGrant(clientId, userId);
        const ofClientAlone = aGrant(clientId, null);
        const revokedBefore = aGrant(clientId, userId, { revokedAt: NOW - 5 });
        const otherClients = aGrant(other.clientId, other.userId);
        for (const grant of [live, ofClientAlone, revokedBefore, otherClients]) await storage().grants.create(grant);

        const revoked = await storage().grants.revokeForClient(clientId, NOW + 10);
        const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
        assert.deepEqual(revoked.sort(byId), [{ id: live.id, userId }, { id: ofClientAlone.id, userId: null }].sort(byId));
        assert.equal((await storage().grants.find(live.id))?.revokedAt, NOW + 10);
        assert.equal((await storage().grants.find(revokedBefore.id))?.revokedAt, NOW - 5, 'an earlier revocation keeps its time');
        assert.equal((await storage().grants.find(otherClients.id))?.revokedAt, null);
        assert.deepEqual(await storage().grants.revokeForClient(clientId, NOW + 20), []);
      });

      it('reports false when revoking a grant that does not exist', async () => {
        assert.equal(await storage().grants.revoke(randomUUID(), NOW), false);
      });

      it('lists grants newest first, filtered by user and by client, at most the limit asked for', async () => {
        const { clientId, userId } = await aClientAndUser();
        const { clientId: otherClientId } = await aClientAndUser();
        const other = await storage().users.create(aUser(), NOW);
        const older = aGrant(clientId, userId, { createdAt: NOW - 100 });
        const newer = aGrant(clientId, userId, { createdAt: NOW });
        const otherUsers = aGrant(clientId, other.id, { createdAt: NOW - 50 });
        const clientOwn = aGrant(clientId, null, { createdAt: NOW - 200 });
        const otherClients = aGrant(otherClientId, userId, { createdAt: NOW - 10 });
        for (const grant of [older, newer, otherUsers, clientOwn, otherClients]) await storage().grants.create(grant);

        assert.deepEqual(await storage().grants.list({ userId }), [newer, otherClients, older]);
        assert.deepEqual(await storage().grants.list({ clientId }), [newer, otherUsers, older, clientOwn]);
        assert.deepEqual(await storage().grants.list({ userId, clientId }), [newer, older]);
        assert.deepEqual(await storage().grants.list({ clientId, limit: 2 }), [newer, otherUsers]);
        assert.deepEqual(await storage().grants.list({ userId: randomUUID() }), []);
      });

      it('lists a user’s or a client’s grants a page at a time from the last of the page before, each once, however many share a second', async () => {
        const { clientId, userId } = await aClientAndUser();
        const { clientId: otherClientId } = await aClientAndUser();
        const other = await storage().users.create(aUser(), NOW);
        // 23 of the user's grants, 15 of them in one second; others' grants in between, of the same seconds.
        const times = [NOW, ...Array(15).fill(NOW - 10), NOW - 20, NOW - 20, NOW - 30, NOW - 40, NOW - 50, NOW - 60, NOW - 70];
        const users = times.map((createdAt, i) => aGrant(i % 3 === 0 ? otherClientId : clientId, userId, { createdAt }));
        const others = times.map((createdAt) => aGrant(clientId, other.id, { createdAt }));
        for (const grant of [...users, ...others].sort(() => Math.random() - 0.5)) await storage().grants.create(grant);
        const order = (a: Grant, b: Grant) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1);

        const walk = async (filter: { userId?: string; clientId?: string }, limit: number): Promise<Grant[]> => {
          const seen: Grant[] = [];
          // At most as many pages as there are grants, however the list goes wrong.
          for (let page = await storage().grants.list({ ...filter, limit }), pages = 1; page.length > 0 && pages <= 50; pages++) {
            assert.ok(page.length <= limit);
            seen.push(...page);
            const last = page.at(-1)!;
            page = await storage().grants.list({ ...filter, after: { createdAt: last.createdAt, id: last.id }, limit });
          }
          return seen;
        };
        for (const limit of [1, 4, 7, 100]) {
          assert.deepEqual(await walk({ userId }, limit), [...users].sort(order), `the user's, ${limit} a page`);
          assert.deepEqual(await walk({ userId, clientId }, limit), users.filter((g) => g.clientId === clientId).sort(order), `the user's to one client, ${limit} a page`);
          assert.deepEqual(await walk({ clientId }, limit), [...users, ...others].filter((g) => g.clientId === clientId).sort(order), `the client's, ${limit} a page`);
        }

        // Grants made while a walk goes on, newer than it or not, move none of its pages.
        const first = await storage().grants.list({ userId, limit: 5 });
        await storage().grants.create(aGrant(clientId, userId, { createdAt: NOW + 1 }));
        await storage().grants.create(aGrant(clientId, userId, { createdAt: NOW - 10, id: '00000000-0000-4000-8000-000000000000' }));
        const last = first.at(-1)!;
        const rest = await storage().grants.list({ userId, after: { createdAt: last.createdAt, id: last.id }, limit: 100 });
        assert.deepEqual([...first, ...rest].slice(0, users.length), [...users].sort(order));
      });
    });

    describe('refresh tokens', () => {
      async function aLiveToken(): Promise<{ grant: Grant; token: RefreshToken; user: User }> {
        const { clientId, userId } = await aClientAndUser();
        const grant = aGrant(clientId, userId);
        await storage().grants.create(grant);
        const token = aRefreshToken(grant);
        await storage().refreshTokens.insert(token);
        return { grant, token, user: (await storage().users.findById(userId))! };
      }

      it('finds a stored token together with its grant and the grant’s user, in one read', async () => {
        const { grant, token, user } = await aLiveToken();
        assert.deepEqual(await storage().refreshTokens.find(token.digest), { token, grant, user });
        assert.equal(await storage().refreshTokens.find(digestOf(createOpaqueToken('rt'))), undefined);
      });

      it('finds a token of a client’s own grant without a user', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const grant = aGrant(client.id, null);
        await storage().grants.create(grant);
        const token = aRefreshToken(grant);
        await storage().refreshTokens.insert(token);
        assert.deepEqual(await storage().refreshTokens.find(token.digest), { token, grant, user: undefined });
      });

      it('shows a revoked grant and a disabled user through the tokens issued from it', async () => {
        const { grant, token, user } = await aLiveToken();
        await storage().grants.revoke(grant.id, NOW + 5);
        await storage().users.setDisabled(user.id, NOW + 6, NOW + 6);
        const found = await storage().refreshTokens.find(token.digest);
        assert.equal(found?.grant.revokedAt, NOW + 5);
        assert.equal(found?.user?.disabledAt, NOW + 6);
      });

      it('rotates a live token: consumes it, stores the successor and returns the previous token', async () => {
        const { grant, token, user } = await aLiveToken();
        const successorDigest = digestOf(createOpaqueToken('rt'));

        const result = await storage().refreshTokens.rotate(token.digest, successorAt(successorDigest, NOW + 60), NOW + 60);

        assert.deepEqual(result, { outcome: 'rotated', previous: { ...token, consumedAt: NOW + 60 } });
        assert.deepEqual(await storage().refreshTokens.find(token.digest), { token: { ...token, consumedAt: NOW + 60 }, grant, user });
        assert.deepEqual(await storage().refreshTokens.find(successorDigest), { token: successorOf(token, successorDigest, NOW + 60), grant, user });
      });

      it('does not rotate a token whose grant is revoked, and stores nothing', async () => {
        const { grant, token } = await aLiveToken();
        await storage().grants.revoke(grant.id, NOW + 5);
        const successorDigest = digestOf(createOpaqueToken('rt'));

        const result = await storage().refreshTokens.rotate(token.digest, successorAt(successorDigest, NOW + 60), NOW + 60);

        assert.deepEqual(result, { outcome: 'revoked', previous: token, grant: { ...grant, revokedAt: NOW + 5 } });
        assert.equal((await storage().refreshTokens.find(token.digest))?.token.consumedAt, null);
        assert.equal(await storage().refreshTokens.find(successorDigest), undefined);
      });

      it('reports a consumed token presented again as reused, with the first consumption time, and stores nothing', async () => {
        const { grant, token } = await aLiveToken();
        const firstSuccessor = digestOf(createOpaqueToken('rt'));
        const replaySuccessor = digestOf(createOpaqueToken('rt'));
        await storage().refreshTokens.rotate(token.digest, successorAt(firstSuccessor, NOW + 60), NOW + 60);

        const replay = await storage().refreshTokens.rotate(token.digest, successorAt(replaySuccessor, NOW + 120), NOW + 120);

        assert.deepEqual(replay, { outcome: 'reused', previous: { ...token, consumedAt: NOW + 60 }, grant });
        assert.equal(await storage().refreshTokens.find(replaySuccessor), undefined);
        assert.equal((await storage().refreshTokens.find(firstSuccessor))?.token.consumedAt, null);
      });

      it('reports an unknown token as not found, and stores nothing', async () => {
        const successorDigest = digestOf(createOpaqueToken('rt'));
        await aLiveToken();
        const result = await storage().refreshTokens.rotate(digestOf(createOpaqueToken('rt')), successorAt(successorDigest, NOW), NOW);
        assert.deepEqual(result, { outcome: 'not_found' });
        assert.equal(await storage().refreshTokens.find(successorDigest), undefined);
      });

      it('lets exactly one of 20 concurrent rotations of one token win; the others see reuse and store nothing', async () => {
        const { token } = await aLiveToken();
        const successorDigests = Array.from({ length: 20 }, () => digestOf(createOpaqueToken('rt')));

        const results = await Promise.all(
          successorDigests.map((digest) => storage().refreshTokens.rotate(token.digest, successorAt(digest, NOW + 60), NOW + 60)),
        );

        assert.equal(results.filter((result) => result.outcome === 'rotated').length, 1);
        assert.equal(results.filter((result) => result.outcome === 'reused').length, 19);
        const stored = await Promise.all(successorDigests.map((digest) => storage().refreshTokens.find(digest)));
        assert.equal(stored.filter((found) => found !== undefined).length, 1);
        const winner = results.findIndex((result) => result.outcome === 'rotated');
        assert.notEqual(stored[winner], undefined, 'the stored successor is the winner’s');
      });

      it('answers concurrent finds each with its own token, and an unknown one with nothing', async () => {
        const live = await Promise.all(Array.from({ length: 5 }, () => aLiveToken()));
        const unknown = digestOf(createOpaqueToken('rt'));

        const found = await Promise.all([...live.map(({ token }) => storage().refreshTokens.find(token.digest)), storage().refreshTokens.find(unknown)]);

        assert.deepEqual(found, [...live.map(({ token, grant, user }) => ({ token, grant, user })), undefined]);
      });

      it('rotates each token again on its own when its batch deadlocks with another transaction', { skip: dialect !== 'postgres' }, async () => {
        const [first, second] = [await aLiveToken(), await aLiveToken()];
        const successors = [digestOf(createOpaqueToken('rt')), digestOf(createOpaqueToken('rt'))];
        const other = new pg.Client({ connectionString: shared!.database.databaseUrl });
        await other.connect();
        try {
          const deadlocks = async () => Number((await other.query('select deadlocks from pg_stat_database where datname = current_database()')).rows[0].deadlocks);
          const before = await deadlocks();
          // The other transaction waits longest before checking for a deadlock: the batch is the one aborted.
          await other.query(`set deadlock_timeout = '30s'`);
          await other.query('begin');
          await other.query('update refresh_tokens set created_at = created_at where digest = $1', [second.token.digest]);
          const rotations = Promise.all(
            [first, second].map(({ token }, index) => storage().refreshTokens.rotate(token.digest, successorAt(successors[index]!, NOW + 60), NOW + 60)),
          );
          // The batch holds the first token and waits for the second; the other transaction now wants the first.
          await waitUntil(async () => Number((await other.query(`select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0].count) === 1);
          await other.query('update refresh_tokens set created_at = created_at where digest = $1', [first.token.digest]);
          await other.query('commit');

          assert.deepEqual(
            (await rotations).map((result) => result.outcome),
            ['rotated', 'rotated'],
          );
          const stored = await Promise.all(successors.map((digest) => storage().refreshTokens.find(digest)));
          assert.deepEqual(stored.map((found) => found?.token.grantId), [first.grant.id, second.grant.id]);
          await waitUntil(async () => (await deadlocks()) > before);
        } finally {
          await other.end();
        }
      });

      it('rotates concurrent presentations of different tokens each on its own terms', async () => {
        const live = await Promise.all(Array.from({ length: 5 }, () => aLiveToken()));
        const revoked = await aLiveToken();
        await storage().grants.revoke(revoked.grant.id, NOW + 5);
        const consumed = await aLiveToken();
        await storage().refreshTokens.rotate(consumed.token.digest, successorAt(digestOf(createOpaqueToken('rt')), NOW + 30), NOW + 30);
        const presented = [...live.map(({ token }) => token.digest), revoked.token.digest, consumed.token.digest, digestOf(createOpaqueToken('rt'))];
        const successors = presented.map(() => digestOf(createOpaqueToken('rt')));

        const results = await Promise.all(presented.map((digest, index) => storage().refreshTokens.rotate(digest, successorAt(successors[index]!, NOW + 60), NOW + 60)));

        assert.deepEqual(results, [
          ...live.map(({ token }) => ({ outcome: 'rotated', previous: { ...token, consumedAt: NOW + 60 } })),
          { outcome: 'revoked', previous: revoked.token, grant: { ...revoked.grant, revokedAt: NOW + 5 } },
          { outcome: 'reused', previous: { ...consumed.token, consumedAt: NOW + 30 }, grant: consumed.grant },
          { outcome: 'not_found' },
        ]);
        const stored = await Promise.all(successors.map((digest) => storage().refreshTokens.find(digest)));
        assert.deepEqual(
          stored.map((found) => found?.token),
          [...live.map(({ token }, index) => successorOf(token, successors[index]!, NOW + 60)), undefined, undefined, undefined],
        );
      });
    });

    describe('client assertions', () => {
      it('records a jti once per client: a second use is refused, on this or any other client it is new', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const other = await storage().clients.create(aClient(), NOW);
        assert.equal(await storage().clients.recordAssertion(client.id, 'jti-1', NOW + 60), 'recorded');
        assert.equal(await storage().clients.recordAssertion(client.id, 'jti-1', NOW + 60), 'replayed');
        assert.equal(await storage().clients.recordAssertion(other.id, 'jti-1', NOW + 60), 'recorded');
      });

      it('records nothing for a client that is not there, and says so rather than fail', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        assert.equal(await storage().clients.delete(client.id), true);
        assert.equal(await storage().clients.recordAssertion(client.id, 'jti-1', NOW + 60), 'no client');
        assert.equal(await storage().clients.recordAssertion('app_never_registered', 'jti-1', NOW + 60), 'no client');
      });

      it('lets exactly one of 10 concurrent uses of a jti through', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        const results = await Promise.all(Array.from({ length: 10 }, () => storage().clients.recordAssertion(client.id, 'jti-race', NOW + 60)));
        assert.equal(results.filter((result) => result === 'recorded').length, 1);
        assert.equal(results.filter((result) => result === 'replayed').length, 9);
      });

      it('sweeps expired jtis in bounded batches and keeps live ones', async () => {
        const client = await storage().clients.create(aClient(), NOW);
        for (let i = 0; i < 3; i++) await storage().clients.recordAssertion(client.id, `old-${i}`, NOW - 10);
        await storage().clients.recordAssertion(client.id, 'live', NOW + 60);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 2);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 1);
        assert.equal(await storage().clients.recordAssertion(client.id, 'old-0', NOW + 60), 'recorded', 'an expired jti is forgotten');
        assert.equal(await storage().clients.recordAssertion(client.id, 'live', NOW + 60), 'replayed');
      });
    });

    describe('authorization codes', () => {
      async function aStoredCode(): Promise<AuthorizationCode> {
        const { clientId, userId } = await aClientAndUser();
        const code = aCode(clientId, userId);
        await storage().codes.insert(code);
        return code;
      }

      it('consumes a code once, storing the grant made from it and recording it with the access token to come', async () => {
        const code = await aStoredCode();
        const exchange = exchangeOf(code);
        assert.deepEqual(await storage().codes.consume(code.digest, exchange, NOW + 5), {
          outcome: 'consumed',
          code: { ...code, grantId: exchange.grant.id, accessTokenJti: exchange.accessTokenJti, accessTokenExpiresAt: exchange.accessTokenExpiresAt, consumedAt: NOW + 5 },
        });
        assert.deepEqual(await storage().grants.find(exchange.grant.id), exchange.grant);
      });

      it('reports a code presented again as reused, carrying the grant and access token of its first use, and stores no grant', async () => {
        const code = await aStoredCode();
        const first = exchangeOf(code);
        await storage().codes.consume(code.digest, first, NOW + 5);
        const replay = exchangeOf(code);

        assert.deepEqual(await storage().codes.consume(code.digest, replay, NOW + 10), {
          outcome: 'reused',
          code: { ...code, grantId: first.grant.id, accessTokenJti: first.accessTokenJti, accessTokenExpiresAt: first.accessTokenExpiresAt, consumedAt: NOW + 5 },
        });
        assert.equal(await storage().grants.find(replay.grant.id), undefined);
      });

      it('reports the code of a user disabled since it was read as not found, consuming nothing and storing no grant, and consumes it once they are enabled', async () => {
        const code = await aStoredCode();
        await storage().users.setDisabled(code.userId, NOW + 1, NOW + 1);
        const refused = exchangeOf(code);
        assert.deepEqual(await storage().codes.consume(code.digest, refused, NOW + 5), { outcome: 'not_found' });
        assert.equal(await storage().grants.find(refused.grant.id), undefined);
        assert.deepEqual(await storage().codes.find(code.digest), code);
        await storage().users.setDisabled(code.userId, null, NOW + 6);
        assert.equal((await storage().codes.consume(code.digest, exchangeOf(code), NOW + 7)).outcome, 'consumed');
      });

      it('reports an unknown code as not found, and stores no grant', async () => {
        const { clientId, userId } = await aClientAndUser();
        const exchange = exchangeOf(aCode(clientId, userId));
        assert.deepEqual(await storage().codes.consume(digestOf(createOpaqueToken('ac')), exchange, NOW), { outcome: 'not_found' });
        assert.equal(await storage().grants.find(exchange.grant.id), undefined);
      });

      it('round-trips a code without PKCE or nonce', async () => {
        const { clientId, userId } = await aClientAndUser();
        const code = aCode(clientId, userId, { codeChallenge: null, codeChallengeMethod: null, nonce: null, scopes: [] });
        await storage().codes.insert(code);
        const exchange = exchangeOf(code);
        assert.deepEqual(await storage().codes.consume(code.digest, exchange, NOW), {
          outcome: 'consumed',
          code: { ...code, grantId: exchange.grant.id, accessTokenJti: exchange.accessTokenJti, accessTokenExpiresAt: exchange.accessTokenExpiresAt, consumedAt: NOW },
        });
      });

      it('lets exactly one of 20 concurrent exchanges of one code win; the others see reuse with the winner’s grant, already stored', async () => {
        const code = await aStoredCode();
        const exchanges = Array.from({ length: 20 }, () => exchangeOf(code));

        const results = await Promise.all(
          exchanges.map(async (exchange) => {
            const result = await storage().codes.consume(code.digest, exchange, NOW + 5);
            // What a loser revokes must exist the moment it learns of it.
            const grant = result.outcome === 'not_found' ? undefined : await storage().grants.find(result.code.grantId!);
            return { result, grant };
          }),
        );

        const winners = exchanges.filter((_, i) => results[i]!.result.outcome === 'consumed');
        assert.equal(winners.length, 1);
        for (const { result, grant } of results) {
          assert.notEqual(result.outcome, 'not_found');
          if (result.outcome !== 'not_found') {
            assert.equal(result.code.grantId, winners[0]!.grant.id);
            assert.equal(result.code.accessTokenJti, winners[0]!.accessTokenJti);
          }
          assert.deepEqual(grant, winners[0]!.grant);
        }
        const stored = await Promise.all(exchanges.map((exchange) => storage().grants.find(exchange.grant.id)));
        assert.equal(stored.filter((grant) => grant !== undefined).length, 1);
      });
    });

    describe('signing keys', () => {
      const storage = freshStorageForEachTest(dialect);

      it('stores keys and lists them all, oldest first', async () => {
        const active = aKey('access', 'active', { createdAt: NOW - 100 });
        const next = aKey('access', 'next', { createdAt: NOW - 50 });
        const retired = aKey('id', 'retired', { createdAt: NOW - 200, retiredAt: NOW - 100, expiresAt: NOW - 1 });
        await storage().keys.insert(next);
        await storage().keys.insert(active);
        await storage().keys.insert(retired);

        assert.deepEqual(await storage().keys.listAll(), [retired, active, next]);
      });

      it('publishes next, active and retired-but-unexpired keys, and omits retired keys past their expiry', async () => {
        const active = aKey('access', 'active');
        const next = aKey('access', 'next');
        const retiring = aKey('access', 'retired', { retiredAt: NOW - HOUR, expiresAt: NOW + HOUR });
        const expired = aKey('id', 'retired', { retiredAt: NOW - 2 * HOUR, expiresAt: NOW - 1 });
        for (const key of [active, next, retiring, expired]) await storage().keys.insert(key);

        assert.deepEqual(kids(await storage().keys.listPublished(NOW)), kids([active, next, retiring]));
        assert.deepEqual(kids(await storage().keys.listPublished(NOW + HOUR + 1)), kids([active, next]));
      });

      it('rotates one use: next becomes active, active becomes retired until the given time, the new next is published', async () => {
        const active = aKey('access', 'active');
        const next = aKey('access', 'next');
        const idActive = aKey('id', 'active');
        const idNext = aKey('id', 'next');
        for (const key of [active, next, idActive, idNext]) await storage().keys.insert(key);
        const newNext = aKey('access', 'next', { createdAt: NOW });

        assert.equal(await storage().keys.rotate('access', newNext, NOW, NOW + 2 * HOUR), true);

        const byKid = new Map((await storage().keys.listAll()).map((key) => [key.kid, key]));
        assert.equal(byKid.size, 5);
        assert.deepEqual(byKid.get(active.kid), { ...active, state: 'retired', retiredAt: NOW, expiresAt: NOW + 2 * HOUR });
        assert.deepEqual(byKid.get(next.kid), { ...next, state: 'active', activatedAt: NOW });
        assert.deepEqual(byKid.get(newNext.kid), newNext);
        assert.deepEqual(byKid.get(idActive.kid), idActive, 'the other use is untouched');
        assert.deepEqual(byKid.get(idNext.kid), idNext, 'the other use is untouched');
        assert.deepEqual(kids(await storage().keys.listPublished(NOW + HOUR)), kids([active, next, newNext, idActive, idNext]));
        assert.deepEqual(kids(await storage().keys.listPublished(NOW + 2 * HOUR + 1)), kids([next, newNext, idActive, idNext]));
      });

      it('returns false and changes nothing when there is no next key to promote', async () => {
        const active = aKey('access', 'active');
        const idNext = aKey('id', 'next');
        await storage().keys.insert(active);
        await storage().keys.insert(idNext);
        const before = await storage().keys.listAll();

        assert.equal(await storage().keys.rotate('access', aKey('access', 'next', { createdAt: NOW }), NOW, NOW + HOUR), false);

        assert.deepEqual(await storage().keys.listAll(), before);
      });

      it('returns false and changes nothing when the next key was published after the given time', async () => {
        await storage().keys.insert(aKey('access', 'active'));
        const next = aKey('access', 'next', { createdAt: NOW - 30 });
        await storage().keys.insert(next);
        const before = await storage().keys.listAll();

        assert.equal(await storage().keys.rotate('access', aKey('access', 'next', { createdAt: NOW }), NOW, NOW + HOUR, NOW - 31), false);
        assert.deepEqual(await storage().keys.listAll(), before);

        assert.equal(await storage().keys.rotate('access', aKey('access', 'next', { createdAt: NOW }), NOW, NOW + HOUR, NOW - 30), true, 'published at that time is old enough');
        assert.equal((await storage().keys.listAll()).find((key) => key.kid === next.kid)?.state, 'active');
      });

      it('withdraws an active key: unpublished at once, the next key promoted, the new next published', async () => {
        const active = aKey('access', 'active');
        const next = aKey('access', 'next');
        const idActive = aKey('id', 'active');
        for (const key of [active, next, idActive]) await storage().keys.insert(key);
        const newNext = aKey('access', 'next', { createdAt: NOW });

        assert.equal(await storage().keys.withdraw(active.kid, 'active', newNext, NOW), true);

        const byKid = new Map((await storage().keys.listAll()).map((key) => [key.kid, key]));
        assert.deepEqual(byKid.get(active.kid), { ...active, state: 'retired', retiredAt: NOW, expiresAt: NOW });
        assert.deepEqual(byKid.get(next.kid), { ...next, state: 'active', activatedAt: NOW });
        assert.deepEqual(byKid.get(newNext.kid), newNext);
        assert.deepEqual(byKid.get(idActive.kid), idActive, 'the other use is untouched');
        assert.deepEqual(kids(await storage().keys.listPublished(NOW)), kids([next, newNext, idActive]));
      });

      it('withdraws a retired key before its time, and refuses (changing nothing) a key no longer in the state given or no next key to promote', async () => {
        const retired = aKey('access', 'retired', { retiredAt: NOW - HOUR, expiresAt: NOW + HOUR });
        const active = aKey('access', 'active');
        for (const key of [retired, active]) await storage().keys.insert(key);

        assert.equal(await storage().keys.withdraw(retired.kid, 'retired', undefined, NOW), true);
        assert.deepEqual((await storage().keys.listAll()).find((key) => key.kid === retired.kid), { ...retired, expiresAt: NOW });
        assert.deepEqual(kids(await storage().keys.listPublished(NOW)), kids([active]));

        const before = await storage().keys.listAll();
        assert.equal(await storage().keys.withdraw(retired.kid, 'retired', undefined, NOW + 1), false, 'withdrawn already');
        assert.equal(await storage().keys.withdraw(active.kid, 'next', aKey('access', 'next', { createdAt: NOW }), NOW), false, 'not in that state');
        assert.equal(await storage().keys.withdraw(active.kid, 'active', aKey('access', 'next', { createdAt: NOW }), NOW), false, 'no next key to take over');
        assert.deepEqual(await storage().keys.listAll(), before);
      });

      it('keeps one active and one next key when two rotations race, a losing rotation publishing nothing', async () => {
        await storage().keys.insert(aKey('access', 'active'));
        await storage().keys.insert(aKey('access', 'next'));
        const candidates = [aKey('access', 'next', { createdAt: NOW }), aKey('access', 'next', { createdAt: NOW + 1 })];

        // Overlapping rotations: one wins, the other returns false. Rotations that happen not to
        // overlap (SQLite runs them one after the other) both succeed. Either way the key set stays
        // well formed. Two open connections first, so that on PostgreSQL the two do overlap.
        await Promise.all([storage().ping(), storage().ping()]);
        const results = await Promise.all(candidates.map((candidate) => storage().keys.rotate('access', candidate, NOW, NOW + HOUR)));

        assert.ok(results.includes(true));
        const all = await storage().keys.listAll();
        assert.equal(all.filter((key) => key.state === 'active').length, 1);
        assert.equal(all.filter((key) => key.state === 'next').length, 1);
        assert.equal(all.filter((key) => key.state === 'retired').length, results.filter(Boolean).length);
        candidates.forEach((candidate, i) => assert.equal(all.some((key) => key.kid === candidate.kid), results[i], 'a candidate is stored exactly when its rotation won'));
      });

      it('replaces a next key of another algorithm, leaving the active key and the other use alone', async () => {
        const active = aKey('access', 'active');
        const next = aKey('access', 'next');
        const idNext = aKey('id', 'next');
        for (const key of [active, next, idNext]) await storage().keys.insert(key);
        const replacement = aKey('access', 'next', { alg: 'EdDSA', createdAt: NOW });

        assert.equal(await storage().keys.replaceNextOfOtherAlgorithm(replacement), true);

        assert.deepEqual(kids(await storage().keys.listAll()), kids([active, replacement, idNext]));
        assert.deepEqual((await storage().keys.listAll()).find((key) => key.kid === replacement.kid), replacement);
      });

      it('keeps a next key of the same algorithm, or no next key at all, and stores nothing', async () => {
        const next = aKey('access', 'next');
        await storage().keys.insert(next);

        assert.equal(await storage().keys.replaceNextOfOtherAlgorithm(aKey('access', 'next', { alg: next.alg })), false);
        assert.equal(await storage().keys.replaceNextOfOtherAlgorithm(aKey('id', 'next', { alg: 'ES256' })), false);

        assert.deepEqual(await storage().keys.listAll(), [next]);
      });

      it('replaces a next key once when several instances start with a new algorithm at once', async () => {
        await storage().keys.insert(aKey('access', 'next', { alg: 'ES256' }));
        const replacements = [1, 2, 3].map(() => aKey('access', 'next', { alg: 'EdDSA', createdAt: NOW }));
        await Promise.all([storage().ping(), storage().ping(), storage().ping()]);

        const results = await Promise.all(replacements.map((key) => storage().keys.replaceNextOfOtherAlgorithm(key)));

        assert.equal(results.filter(Boolean).length, 1);
        const all = await storage().keys.listAll();
        assert.deepEqual(all.map((key) => key.kid), [replacements[results.indexOf(true)]!.kid]);
      });

      it('rotates to one active and one next key after instances racing at first start published two of each', async () => {
        const actives = [aKey('access', 'active', { createdAt: NOW - 100 }), aKey('access', 'active', { createdAt: NOW - 100 })];
        const nexts = [aKey('access', 'next', { createdAt: NOW - 100 }), aKey('access', 'next', { createdAt: NOW - 100 })];
        for (const key of [...actives, ...nexts]) await storage().keys.insert(key);
        const newNext = aKey('access', 'next', { createdAt: NOW });

        assert.equal(await storage().keys.rotate('access', newNext, NOW, NOW + HOUR), true);

        const all = await storage().keys.listAll();
        assert.equal(all.filter((key) => key.state === 'active').length, 1);
        assert.deepEqual(all.filter((key) => key.state === 'next').map((key) => key.kid), [newNext.kid]);
        assert.ok(all.filter((key) => key.state === 'retired').every((key) => key.retiredAt === NOW && key.expiresAt === NOW + HOUR));
        const promoted = all.find((key) => key.state === 'active')!;
        assert.ok(nexts.some((key) => key.kid === promoted.kid), 'a next key was promoted');
      });
    });

    describe('revoked access tokens', () => {
      it('records a revoked jti, and revoking it again is harmless', async () => {
        const jti = randomUUID();
        assert.equal(await storage().revocations.isJtiRevoked(jti), false);

        await storage().revocations.revokeJti(jti, NOW + HOUR);
        await storage().revocations.revokeJti(jti, NOW + HOUR);

        assert.equal(await storage().revocations.isJtiRevoked(jti), true);
        assert.equal(await storage().revocations.isJtiRevoked(randomUUID()), false);
      });

      it('tells whether any of a token and those it was derived from is revoked, in one read', async () => {
        const [parent, child, grandchild] = [randomUUID(), randomUUID(), randomUUID()];
        assert.equal(await storage().revocations.isAnyJtiRevoked([]), false);
        assert.equal(await storage().revocations.isAnyJtiRevoked([grandchild, child, parent]), false);
        await storage().revocations.revokeJti(parent, NOW + HOUR);
        assert.equal(await storage().revocations.isAnyJtiRevoked([grandchild, child, parent]), true);
        assert.equal(await storage().revocations.isAnyJtiRevoked([parent]), true);
        assert.equal(await storage().revocations.isAnyJtiRevoked([grandchild, child]), false);
      });
    });

    describe('audit events', () => {
      let log: OpenStorage | undefined;
      const audit = () => log!.storage.audit;
      const [c1, c2, u1, u2] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
      const times = (events: AuditEvent[]) => events.map((event) => event.at - NOW);

      before(async () => {
        log = await openFreshStorage(dialect);
        await log.storage.audit.append([
          anEvent({ at: NOW, kind: 'token.issued', clientId: c1, userId: u1, data: { grant: 'password', scopes: ['openid'] } }),
          anEvent({ at: NOW + 10, kind: 'token.refused', outcome: 'failure', clientId: c2, data: { error: 'invalid_grant' } }),
          anEvent({ at: NOW + 20, kind: 'token.issued', clientId: c1, userId: u2 }),
        ]);
        await log.storage.audit.append([]);
        await log.storage.audit.append([
          anEvent({ at: NOW + 30, kind: 'client.created', data: { by: 'cli', nested: { n: 1, ok: true, none: null } } }),
          anEvent({ at: NOW + 40, kind: 'token.issued', clientId: c2, userId: u1 }),
        ]);
        // Buffered on another instance and flushed last, though it happened before most of the above.
        await log.storage.audit.append([anEvent({ at: NOW + 5, kind: 'refresh_token.reused', outcome: 'failure', clientId: c1, userId: u1 })]);
      });
      after(async () => {
        await closeStorage(log);
      });

      it('returns every field as appended, with an id assigned', async () => {
        const events = await audit().query({});
        assert.equal(events.length, 6);
        assert.equal(new Set(events.map((event) => event.id)).size, 6);
        for (const event of events) assert.equal(typeof event.id, 'number');
        const { id: _id, ...created } = events.find((event) => event.kind === 'client.created')!;
        assert.deepEqual(created, anEvent({ at: NOW + 30, kind: 'client.created', data: { by: 'cli', nested: { n: 1, ok: true, none: null } } }));
        const { id: _id2, ...refused } = events.find((event) => event.kind === 'token.refused')!;
        assert.deepEqual(refused, anEvent({ at: NOW + 10, kind: 'token.refused', outcome: 'failure', clientId: c2, data: { error: 'invalid_grant' } }));
      });

      it('lists events newest first by time, even when a later batch carries earlier events', async () => {
        assert.deepEqual(times(await audit().query({})), [40, 30, 20, 10, 5, 0]);
      });

      it('filters on a time window that includes `since` and excludes `until`', async () => {
        assert.deepEqual(times(await audit().query({ since: NOW + 10 })), [40, 30, 20, 10]);
        assert.deepEqual(times(await audit().query({ until: NOW + 10 })), [5, 0]);
        assert.deepEqual(times(await audit().query({ since: NOW + 5, until: NOW + 30 })), [20, 10, 5]);
      });

      it('filters on client, user and kind, alone or together', async () => {
        assert.deepEqual(times(await audit().query({ clientId: c1 })), [20, 5, 0]);
        assert.deepEqual(times(await audit().query({ userId: u1 })), [40, 5, 0]);
        assert.deepEqual(times(await audit().query({ kind: 'token.issued' })), [40, 20, 0]);
        assert.deepEqual(times(await audit().query({ clientId: c1, userId: u1 })), [5, 0]);
        assert.deepEqual(times(await audit().query({ clientId: c2, userId: u1 })), [40]);
        assert.deepEqual(times(await audit().query({ clientId: c1, userId: u1, kind: 'token.issued' })), [0]);
        assert.deepEqual(times(await audit().query({ clientId: c1, since: NOW + 1 })), [20, 5]);
        assert.deepEqual(await audit().query({ clientId: randomUUID() }), []);
      });

      it('returns at most `limit` events, the newest', async () => {
        assert.deepEqual(times(await audit().query({ limit: 2 })), [40, 30]);
        assert.deepEqual(times(await audit().query({ kind: 'token.issued', limit: 1 })), [40]);
      });

      it('lists oldest first when asked, a page at a time from the last event of the page before', async () => {
        assert.deepEqual(times(await audit().query({ oldestFirst: true })), [0, 5, 10, 20, 30, 40]);
        const [first, second] = await audit().query({ since: NOW + 5, oldestFirst: true, limit: 2 });
        assert.deepEqual(times([first!, second!]), [5, 10]);
        assert.deepEqual(times(await audit().query({ since: NOW + 5, oldestFirst: true, after: { at: second!.at, id: second!.id! }, limit: 2 })), [20, 30]);
        assert.deepEqual(times(await audit().query({ clientId: c1, oldestFirst: true, limit: 2 })), [0, 5]);
      });

      it('lists a page at a time from the last event of the page before, each event once, however many share a second, with every filter', async () => {
        const open = await openFreshStorage(dialect);
        try {
          const log = open.storage.audit;
          // 60 events in one second, in batches that land out of time order, among others before and after.
          const [busy, quiet, ada] = [randomUUID(), randomUUID(), randomUUID()];
          const event = (i: number, at: number) =>
            anEvent({ at, kind: i % 4 === 0 ? 'token.refused' : 'token.issued', clientId: i % 3 === 0 ? quiet : busy, userId: i % 2 === 0 ? ada : null, data: { i } });
          let i = 0;
          await log.append(Array.from({ length: 30 }, () => event(i++, NOW)));
          await log.append(Array.from({ length: 10 }, () => event(i++, NOW + 1)));
          await log.append(Array.from({ length: 30 }, () => event(i++, NOW)));
          await log.append(Array.from({ length: 10 }, () => event(i++, NOW - 1)));
          const all = await log.query({ limit: 1000 });
          assert.equal(all.length, 80);
          for (let n = 1; n < all.length; n++) assert.ok(all[n - 1]!.at > all[n]!.at || (all[n - 1]!.at === all[n]!.at && all[n - 1]!.id! > all[n]!.id!), 'newest first, then by id');

          type Filter = Parameters<typeof log.query>[0];
          const walk = async (filter: Filter, limit: number): Promise<AuditEvent[]> => {
            const seen: AuditEvent[] = [];
            for (let page = await log.query({ ...filter, limit }), pages = 1; page.length > 0 && pages <= 100; pages++) {
              assert.ok(page.length <= limit);
              seen.push(...page);
              const last = page.at(-1)!;
              page = await log.query({ ...filter, after: { at: last.at, id: last.id! }, limit });
            }
            return seen;
          };
          const filters: [Filter, (e: AuditEvent) => boolean][] = [
            [{}, () => true],
            [{ until: NOW + 1 }, (e) => e.at < NOW + 1],
            [{ since: NOW, until: NOW + 1 }, (e) => e.at === NOW],
            [{ clientId: busy }, (e) => e.clientId === busy],
            [{ userId: ada }, (e) => e.userId === ada],
            [{ clientId: quiet, userId: ada }, (e) => e.clientId === quiet && e.userId === ada],
            [{ kind: 'token.refused' }, (e) => e.kind === 'token.refused'],
            [{ kind: 'token.issued', clientId: busy, since: NOW }, (e) => e.kind === 'token.issued' && e.clientId === busy && e.at >= NOW],
          ];
          for (const [filter, holds] of filters) {
            for (const limit of [1, 7, 25]) assert.deepEqual(await walk(filter, limit), all.filter(holds), `${JSON.stringify(filter)}, ${limit} a page`);
          }

          // Events written while a walk goes on move none of its pages.
          const first = await log.query({ limit: 35 });
          await log.append([event(i++, NOW + 2), event(i++, NOW)]);
          const last = first.at(-1)!;
          const rest = await log.query({ after: { at: last.at, id: last.id! }, limit: 1000 });
          assert.deepEqual([...first, ...rest], all);
        } finally {
          await closeStorage(open);
        }
      });
    });

    describe('sweeping expired rows', () => {
      const open = freshDatabaseForEachTest(dialect);
      const storage = () => open().storage;

      /** A client and a user in this test's database. */
      async function stored(): Promise<{ clientId: string; userId: string }> {
        const client = await storage().clients.create(aClient(), NOW);
        const user = await storage().users.create(aUser(), NOW);
        return { clientId: client.id, userId: user.id };
      }

      /** Three expired and some live rows of each kind the sweeper cleans. */
      async function seed() {
        const client = await storage().clients.create(aClient(), NOW);
        const user = await storage().users.create(aUser(), NOW);
        const grant = aGrant(client.id, user.id);
        await storage().grants.create(grant);
        const expiredTokens = [1, 2, 3].map((i) => aRefreshToken(grant, { expiresAt: NOW - i }));
        const liveTokens = [aRefreshToken(grant), aRefreshToken(grant, { consumedAt: NOW - 10 })];
        for (const token of [...expiredTokens, ...liveTokens]) await storage().refreshTokens.insert(token);
        const expiredCodes = [1, 2, 3].map((i) => aCode(client.id, user.id, { createdAt: NOW - 120, expiresAt: NOW - i }));
        const liveCode = aCode(client.id, user.id);
        for (const code of [...expiredCodes, liveCode]) await storage().codes.insert(code);
        const expiredJtis = [randomUUID(), randomUUID(), randomUUID()];
        for (const [i, jti] of expiredJtis.entries()) await storage().revocations.revokeJti(jti, NOW - 1 - i);
        const liveJti = randomUUID();
        await storage().revocations.revokeJti(liveJti, NOW + HOUR);
        const expiredKeys = [1, 2, 3].map((i) => aKey('access', 'retired', { retiredAt: NOW - HOUR, expiresAt: NOW - i }));
        const liveKeys = [aKey('access', 'retired', { retiredAt: NOW - HOUR, expiresAt: NOW + HOUR }), aKey('access', 'active'), aKey('access', 'next')];
        for (const key of [...expiredKeys, ...liveKeys]) await storage().keys.insert(key);
        // Grants that ended (an exchange without a refresh token, an implicit authorization), and one that has not yet.
        const endedGrants = [1, 2, 3].map((i) => aGrant(client.id, user.id, { kind: 'implicit', createdAt: NOW - HOUR, expiresAt: NOW - i }));
        const endingGrant = aGrant(client.id, user.id, { kind: 'implicit', expiresAt: NOW + HOUR });
        for (const ended of [...endedGrants, endingGrant]) await storage().grants.create(ended);
        return { grant, expiredTokens, liveTokens, expiredCodes, liveCode, expiredJtis, liveJti, expiredKeys, liveKeys, endedGrants, endingGrant };
      }

      it('deletes expired refresh tokens, codes, revoked jtis, retired keys and ended grants, and leaves live rows alone', async () => {
        const seeded = await seed();

        assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 15);

        for (const token of seeded.expiredTokens) assert.equal(await storage().refreshTokens.find(token.digest), undefined);
        for (const token of seeded.liveTokens) assert.deepEqual((await storage().refreshTokens.find(token.digest))?.token, token);
        for (const code of seeded.expiredCodes) assert.deepEqual(await storage().codes.consume(code.digest, exchangeOf(code), NOW), { outcome: 'not_found' });
        assert.equal((await storage().codes.consume(seeded.liveCode.digest, exchangeOf(seeded.liveCode), NOW)).outcome, 'consumed');
        for (const jti of seeded.expiredJtis) assert.equal(await storage().revocations.isJtiRevoked(jti), false);
        assert.equal(await storage().revocations.isJtiRevoked(seeded.liveJti), true);
        assert.deepEqual(kids(await storage().keys.listAll()), kids(seeded.liveKeys));
        assert.deepEqual(await storage().grants.find(seeded.grant.id), seeded.grant, 'a grant with a live refresh token is kept as it was');
        for (const ended of seeded.endedGrants) assert.equal(await storage().grants.find(ended.id), undefined);
        assert.deepEqual(await storage().grants.find(seeded.endingGrant.id), seeded.endingGrant);
      });

      it('deletes an expired session with the clients it was answered for', async () => {
        const { clientId, userId } = await stored();
        const session = { digest: digestOf(createOpaqueToken('ss')), sid: randomUUID(), userId, authTime: NOW - 2 * HOUR, createdAt: NOW - 2 * HOUR, expiresAt: NOW - 1, address: null, device: null, lastUsedAt: null };
        await storage().sessions.create(session);
        await storage().sessions.addClient(session.digest, clientId);

        assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 1);

        assert.equal(await storage().sessions.find(session.digest), undefined);
        // Made again (it never is), it has no clients: they went with it.
        await storage().sessions.create(session);
        assert.deepEqual(await storage().sessions.delete(session.digest), { sid: session.sid, userId, clientIds: [] });
      });

      it('deletes at most `limit` rows per table in one call', async () => {
        await seed();

        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 10);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 5);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 0);
      });

      it('deletes nothing when nothing has expired', async () => {
        await seed();
        assert.equal(await storage().sweepExpired(NOW - 100, 500, SWEEP), 0);
      });

      it('ends a grant when its last refresh token is swept, and deletes it once the access tokens it issued have expired', async () => {
        const { clientId, userId } = await stored();
        const spent = aGrant(clientId, userId);
        const living = aGrant(clientId, userId);
        const revoked = aGrant(clientId, userId, { revokedAt: NOW - HOUR });
        const unborn = aGrant(clientId, userId, { createdAt: NOW - 5 * HOUR });
        for (const grant of [spent, living, revoked, unborn]) await storage().grants.create(grant);
        for (const token of [
          aRefreshToken(spent, { expiresAt: NOW - 2 }),
          aRefreshToken(spent, { consumedAt: NOW - 3 * HOUR, expiresAt: NOW - 1 }),
          aRefreshToken(living, { expiresAt: NOW - 1 }),
          aRefreshToken(living),
          aRefreshToken(revoked, { expiresAt: NOW - 1 }),
        ]) {
          await storage().refreshTokens.insert(token);
        }

        assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 4);
        assert.equal((await storage().grants.find(spent.id))?.expiresAt, NOW + HOUR, 'its last access token may live an hour more');
        assert.equal((await storage().grants.find(revoked.id))?.expiresAt, NOW + HOUR);
        assert.deepEqual(await storage().grants.find(living.id), living, 'a grant with a live refresh token goes on');
        assert.deepEqual(await storage().grants.find(unborn.id), unborn, 'a grant none of whose refresh tokens was swept is left alone');

        assert.equal(await storage().sweepExpired(NOW + HOUR, 500, SWEEP), 0, 'not before its end has passed');
        assert.equal(await storage().sweepExpired(NOW + HOUR + 1, 500, SWEEP), 2);
        assert.equal(await storage().grants.find(spent.id), undefined);
        assert.equal(await storage().grants.find(revoked.id), undefined);
        assert.deepEqual(await storage().grants.find(living.id), living);
      });

      it('sweeps the refresh tokens of a grant revoked, ended or past its lifetime bound, not only expired ones, in the same bounded batches, and then ends the grant', async () => {
        const DAY = 24 * HOUR;
        const { clientId, userId } = await stored();
        const living = aGrant(clientId, userId, { createdAt: NOW - 2 * DAY + 10 });
        const revoked = aGrant(clientId, userId, { revokedAt: NOW - 10 });
        const ended = aGrant(clientId, userId, { expiresAt: NOW - 1 });
        const old = aGrant(clientId, userId, { createdAt: NOW - 2 * DAY - 1 });
        for (const grant of [living, revoked, ended, old]) await storage().grants.create(grant);
        // A consumed token of a live grant stays until it expires: presented again, it revokes the grant (RFC 9700 §4.14.2).
        const livingTokens = [aRefreshToken(living), aRefreshToken(living, { consumedAt: NOW - DAY })];
        const tokens = new Map([
          [living, [aRefreshToken(living, { expiresAt: NOW - 1 }), ...livingTokens]],
          [revoked, [aRefreshToken(revoked), aRefreshToken(revoked, { consumedAt: NOW - 20 }), aRefreshToken(revoked)]],
          [ended, [aRefreshToken(ended)]],
          [old, [aRefreshToken(old), aRefreshToken(old, { consumedAt: NOW - DAY })]],
        ]);
        for (const token of [...tokens.values()].flat()) await storage().refreshTokens.insert(token);
        const tokensOf = async (grant: typeof living) => {
          let left = 0;
          for (const token of tokens.get(grant)!) if (await storage().refreshTokens.find(token.digest)) left += 1;
          return left;
        };

        // At most 2 refresh tokens a call, whatever made them sweepable (expired first, then those of
        // revoked grants, then of ended ones); the ended grant goes in the call that took its last
        // one. Without a bound, the old grant's tokens stay.
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 2);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 2);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 1 + 1);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 0);
        assert.equal(await tokensOf(revoked), 0);
        assert.equal(await storage().grants.find(ended.id), undefined);
        assert.equal(await tokensOf(old), 2);

        const bounded = { ...SWEEP, refreshTokenMaxLifetimeSeconds: 2 * DAY };
        assert.equal(await storage().sweepExpired(NOW, 1, bounded), 1);
        assert.equal(await storage().sweepExpired(NOW, 1, bounded), 1);
        assert.equal(await storage().sweepExpired(NOW, 1, bounded), 0);
        assert.equal(await tokensOf(old), 0);
        for (const token of livingTokens) assert.deepEqual((await storage().refreshTokens.find(token.digest))?.token, token, 'the unexpired tokens of a live grant stay');
        assert.deepEqual(await storage().grants.find(living.id), living);
        // Left without refresh tokens, each grant ends once the access tokens it issued have expired.
        assert.equal((await storage().grants.find(revoked.id))?.expiresAt, NOW + HOUR);
        assert.equal((await storage().grants.find(old.id))?.expiresAt, NOW + HOUR);
      });

      it('deletes an ended grant only once its refresh tokens are gone, so that no deletion cascades past the batch', async () => {
        const { clientId, userId } = await stored();
        const ended = aGrant(clientId, userId, { expiresAt: NOW - 1 });
        await storage().grants.create(ended);
        const tokens = [aRefreshToken(ended), aRefreshToken(ended, { consumedAt: NOW - HOUR }), aRefreshToken(ended)];
        for (const token of tokens) await storage().refreshTokens.insert(token);

        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 2);
        assert.deepEqual(await storage().grants.find(ended.id), ended);
        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 1 + 1);
        assert.equal(await storage().grants.find(ended.id), undefined);
        for (const token of tokens) assert.equal(await storage().refreshTokens.find(token.digest), undefined);
      });

      it('deletes audit events older than the retention, in batches, and none with a retention of 0', async () => {
        const DAY = 24 * HOUR;
        await storage().audit.append([anEvent({ at: NOW - 3 * DAY }), anEvent({ at: NOW - 2 * DAY - 1 }), anEvent({ at: NOW - 2 * DAY }), anEvent({ at: NOW - DAY })]);
        const keepTwoDays = { ...SWEEP, auditRetentionSeconds: 2 * DAY };

        assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 0, 'kept forever');
        assert.equal(await storage().sweepExpired(NOW, 1, keepTwoDays), 1);
        assert.equal(await storage().sweepExpired(NOW, 1, keepTwoDays), 1);
        assert.equal(await storage().sweepExpired(NOW, 1, keepTwoDays), 0);
        assert.deepEqual((await storage().audit.query({})).map((event) => event.at), [NOW - DAY, NOW - 2 * DAY]);
      });

      it('deletes API keys revoked or expired longer ago than their retention, in batches, and none with a retention of 0', async () => {
        const DAY = 24 * HOUR;
        const { clientId } = await stored();
        const aKeyOf = (fields: { expiresAt?: number; revokedAt?: number }) => ({
          id: randomUUID(),
          clientId,
          name: 'Script',
          digest: digestOf(createOpaqueToken('ak')),
          prefix: 'gate_ak_',
          scopes: ['objects:read'],
          createdAt: NOW - 10 * DAY,
          expiresAt: fields.expiresAt ?? null,
          revokedAt: fields.revokedAt ?? null,
          lastUsedAt: null,
        });
        const gone = [aKeyOf({ revokedAt: NOW - 3 * DAY }), aKeyOf({ revokedAt: NOW - 2 * DAY - 1 }), aKeyOf({ expiresAt: NOW - 2 * DAY - 1 })];
        const kept = [
          aKeyOf({}),
          aKeyOf({ revokedAt: NOW - 2 * DAY }),
          aKeyOf({ revokedAt: NOW - DAY }),
          aKeyOf({ expiresAt: NOW - DAY }),
          aKeyOf({ expiresAt: NOW + DAY }),
        ];
        // Revoked lately, but it had stopped working at its expiry, longer ago than the retention.
        const endedEarly = aKeyOf({ expiresAt: NOW - 5 * DAY, revokedAt: NOW - DAY });
        for (const key of [...gone, ...kept, endedEarly]) assert.equal(await storage().apiKeys.create(key), true);
        const keepTwoDays = { ...SWEEP, apiKeyRetentionSeconds: 2 * DAY };

        assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 0, 'kept forever');
        assert.equal(await storage().sweepExpired(NOW, 2, keepTwoDays), 2);
        assert.equal(await storage().sweepExpired(NOW, 2, keepTwoDays), 2);
        assert.equal(await storage().sweepExpired(NOW, 2, keepTwoDays), 0);
        const left = (await storage().apiKeys.listForClient(clientId)).map((key) => key.id).sort();
        assert.deepEqual(left, kept.map((key) => key.id).sort());
      });

      it('sweeps batch after batch while batches come back full, and no more batches than allowed', async () => {
        const { clientId, userId } = await stored();
        const grant = aGrant(clientId, userId);
        await storage().grants.create(grant);
        const live = aRefreshToken(grant);
        await storage().refreshTokens.insert(live);
        for (let i = 0; i < 23; i++) await storage().refreshTokens.insert(aRefreshToken(grant, { expiresAt: NOW - 1 - i }));

        assert.equal(await sweepExpiredRows(storage(), NOW, SWEEP, 5, 2), 10, 'two batches at most');
        assert.equal(await sweepExpiredRows(storage(), NOW, SWEEP, 5, 20), 13, 'on until a batch is not full');
        assert.equal(await sweepExpiredRows(storage(), NOW, SWEEP, 5, 20), 0);
        assert.deepEqual((await storage().refreshTokens.find(live.digest))?.token, live);
      });

      if (dialect === 'postgres') {
        it('sweeps nothing while another instance sweeps, and everything once it is done', async () => {
          const { clientId, userId } = await stored();
          const grant = aGrant(clientId, userId);
          await storage().grants.create(grant);
          for (const i of [1, 2, 3]) await storage().refreshTokens.insert(aRefreshToken(grant, { expiresAt: NOW - i }));
          await storage().codes.insert(aCode(clientId, userId, { createdAt: NOW - 120, expiresAt: NOW - 1 }));

          // Another instance in the middle of its sweep: it holds the sweep lock in an open transaction.
          const other = new pg.Client({ connectionString: open().database.databaseUrl });
          await other.connect();
          try {
            await other.query('begin');
            await other.query('select pg_advisory_xact_lock($1::bigint)', [SWEEP_LOCK]);
            assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 0);
            assert.equal(await sweepExpiredRows(storage(), NOW, SWEEP), 0);
            await other.query('commit');
          } finally {
            await other.end();
          }
          assert.equal(await storage().sweepExpired(NOW, 500, SWEEP), 4);
        });

        it('lets several instances sweep at once without errors, and every expired row goes', async () => {
          const { clientId, userId } = await stored();
          const grants = Array.from({ length: 20 }, () => aGrant(clientId, userId));
          for (const grant of grants) {
            await storage().grants.create(grant);
            for (const i of [1, 2, 3]) await storage().refreshTokens.insert(aRefreshToken(grant, { expiresAt: NOW - i }));
          }
          const instances = await Promise.all([1, 2, 3].map(() => createStorage(storageOptions(open().database))));
          try {
            const swept = await Promise.all(instances.flatMap((instance) => [1, 2, 3].map(() => sweepExpiredRows(instance, NOW, SWEEP, 7))));
            const leftover = await sweepExpiredRows(storage(), NOW, SWEEP, 7);
            assert.equal(swept.reduce((sum, count) => sum + count, 0) + leftover, 60);
          } finally {
            await Promise.all(instances.map((instance) => instance.close()));
          }
          for (const grant of grants) assert.equal((await storage().grants.find(grant.id))?.expiresAt, NOW + HOUR);
        });

        // PostgreSQL-compatible engines without advisory locks answer the lock function so; here a
        // function of that answer comes before pg_catalog's in the instances' search_path.
        for (const [engine, answer] of [['CockroachDB before its transaction advisory locks', 'undefined_function'], ['YugabyteDB without advisory locks', 'feature_not_supported']] as const) {
          it(`sweeps on every instance where the database has no advisory locks (${engine}: ${answer})`, async () => {
            const { clientId, userId } = await stored();
            const grants = Array.from({ length: 10 }, () => aGrant(clientId, userId));
            for (const grant of grants) {
              await storage().grants.create(grant);
              for (const i of [1, 2, 3]) await storage().refreshTokens.insert(aRefreshToken(grant, { expiresAt: NOW - i }));
            }
            const { databaseUrl } = open().database;
            const setUp = new pg.Client({ connectionString: databaseUrl });
            await setUp.connect();
            try {
              await setUp.query(`create schema no_locks; create function no_locks.pg_try_advisory_xact_lock(bigint) returns boolean language plpgsql
                as $$ begin raise exception 'advisory locks are not supported' using errcode = '${answer}'; end $$`);
            } finally {
              await setUp.end();
            }
            const withoutLocks = new URL(databaseUrl!);
            withoutLocks.searchParams.set('options', '-c search_path=no_locks,pg_catalog,public');
            const probe = new pg.Client({ connectionString: withoutLocks.toString() });
            await probe.connect();
            await assert.rejects(probe.query('select pg_try_advisory_xact_lock($1::bigint)', [SWEEP_LOCK]), { message: 'advisory locks are not supported' });
            await probe.end();

            const instances = await Promise.all([1, 2].map(() => createStorage({ ...storageOptions(open().database), databaseUrl: withoutLocks.toString() })));
            try {
              // Three batches of 7 on one, the rest on the other, each in turn.
              const swept = [];
              for (const instance of [...instances, ...instances]) swept.push(await sweepExpiredRows(instance, NOW, SWEEP, 7, 3));
              assert.deepEqual(swept, [21, 9, 0, 0]);
            } finally {
              await Promise.all(instances.map((instance) => instance.close()));
            }
            for (const grant of grants) assert.equal((await storage().grants.find(grant.id))?.expiresAt, NOW + HOUR);
          });
        }
      }

      it('ends a grant whose refresh tokens are swept over several calls only with the last of them', async () => {
        const { clientId, userId } = await stored();
        const grant = aGrant(clientId, userId);
        await storage().grants.create(grant);
        for (const i of [1, 2, 3]) await storage().refreshTokens.insert(aRefreshToken(grant, { expiresAt: NOW - i }));

        assert.equal(await storage().sweepExpired(NOW, 2, SWEEP), 2);
        assert.equal((await storage().grants.find(grant.id))?.expiresAt, null);
        assert.equal(await storage().sweepExpired(NOW + 10, 2, SWEEP), 1);
        assert.equal((await storage().grants.find(grant.id))?.expiresAt, NOW + 10 + HOUR);
      });
    });

    describe('health', () => {
      it('answers a ping', async () => {
        await storage().ping();
      });

      it('rejects a ping once closed', async () => {
        const closed = await createStorage(storageOptions(shared!.database));
        await closed.close();
        await assert.rejects(closed.ping());
      });

      it('names its dialect', () => {
        assert.equal(storage().dialect, dialect);
      });
    });
  });
}
