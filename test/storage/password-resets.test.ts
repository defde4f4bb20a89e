import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { createStorage } from '../../src/storage/kysely/index.ts';
import type { Storage } from '../../src/storage/repositories.ts';
import type { Withdrawal } from '../../src/storage/repositories/consents.ts';
import type { ApplicationTakenBack } from '../../src/storage/repositories/password-resets.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { aClient, aCode, aGrant, aRefreshToken, aUser, HOUR, NOW } from '../support/records.ts';

/*
 * The storage of "forgot your password?" links (PasswordResetRepository), on each dialect: only the
 * newest link of a user works, a link resets the password once, and never past its expiry, for a
 * disabled user or after the password was set otherwise; on an account whose address was not
 * verified it verifies the address and withdraws every authorization of the account in the same
 * transaction; expired links are swept in bounded batches, and a user's links go with them.
 */

const SWEEP = { accessTokenTtlSeconds: HOUR, auditRetentionSeconds: 0 };
const TTL = 1800;

for (const dialect of DIALECTS) {
  describe(`password reset links on ${dialect}`, () => {
    let database: TestDatabase;
    let storage: Storage;
    before(async () => {
      database = await createTestDatabase(dialect);
      storage = await createStorage({ databaseUrl: database.databaseUrl, sqlitePath: join(database.dataDir, 'gatehouse.sqlite') });
    });
    after(async () => {
      await storage?.close();
      await database?.drop();
    });

    const aStoredUser = async (overrides = {}) => storage.users.create(aUser(overrides), NOW);
    /** Stores a link of `userId`, its mail not yet accepted. */
    const issueUnmailed = async (userId: string, at = NOW) => {
      const digest = digestOf(createOpaqueToken('pr'));
      assert.equal(await storage.passwordResets.issue({ digest, userId, createdAt: at, expiresAt: at + TTL }), true);
      return digest;
    };
    /** Stores a link of `userId` and marks it mailed, as sending it does. */
    const issue = async (userId: string, at = NOW) => {
      const digest = await issueUnmailed(userId, at);
      await storage.passwordResets.markMailed(digest, at);
      return digest;
    };
    const hashOf = async (userId: string) => (await storage.users.findById(userId))!.passwordHash;
    const NOTHING_WITHDRAWN: Withdrawal = { consents: [], grants: [], codes: 0 };
    /** What a redemption that set the password of `user`, verified before or not, says. */
    const redeemed = (user: { id: string }, emailWasVerified = false, withdrawn = NOTHING_WITHDRAWN, applications: ApplicationTakenBack[] = []) => ({ userId: user.id, emailWasVerified, withdrawn, applications });

    /**
     * What `user` authorized: two applications with a consent, a grant with a refresh token and a
     * code not yet exchanged each, and a first-party one with a grant and no consent.
     */
    const authorizations = async (user: { id: string }) => {
      const clients = [];
      for (let i = 0; i < 3; i++) clients.push(await storage.clients.create(aClient({ grantTypes: ['authorization_code', 'refresh_token'] }), NOW));
      const grants = [];
      const codes = [];
      for (const [i, client] of clients.entries()) {
        const grant = aGrant(client.id, user.id, i === 2 ? { kind: 'password' } : {});
        await storage.grants.create(grant);
        const refreshToken = aRefreshToken(grant);
        await storage.refreshTokens.insert(refreshToken);
        grants.push({ grant, refreshToken });
        if (i === 2) continue;
        await storage.consents.save({ userId: user.id, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
        const code = aCode(client.id, user.id, { expiresAt: NOW + HOUR });
        await storage.codes.insert(code);
        codes.push(code);
      }
      return { clients, grants, codes };
    };
    const revokedAt = async (grantId: string) => (await storage.grants.find(grantId))!.revokedAt;

    it('stores only the digest, and redeems it once: the password is set and the link is spent', async () => {
      const user = await aStoredUser();
      const digest = await issue(user.id);
      assert.deepEqual(await storage.passwordResets.find(digest), { digest, userId: user.id, createdAt: NOW, expiresAt: NOW + TTL, consumedAt: null, mailedAt: NOW });
      assert.deepEqual(await storage.passwordResets.redeem(digest, '$new-hash', NOW + 60), redeemed(user));
      const stored = await storage.users.findById(user.id);
      assert.equal(stored!.passwordHash, '$new-hash');
      assert.equal(stored!.updatedAt, NOW + 60);
      assert.equal((await storage.passwordResets.find(digest))!.consumedAt, NOW + 60);
      assert.equal(await storage.passwordResets.redeem(digest, '$another-hash', NOW + 61), undefined, 'a used link');
      assert.equal(await hashOf(user.id), '$new-hash');
    });

    it('lets exactly one of 10 concurrent redemptions of a link set the password', async () => {
      const user = await aStoredUser();
      const digest = await issue(user.id);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => storage.passwordResets.redeem(digest, `$hash-${i}`, NOW + 1)));
      const winners = results.map((result, i) => (result === undefined ? -1 : i)).filter((i) => i >= 0);
      assert.equal(winners.length, 1);
      assert.equal(await hashOf(user.id), `$hash-${winners[0]}`);
    });

    it('on an account whose address was not verified, verifies it and withdraws every authorization of the account with the reset: consents, grants (and so their refresh tokens) and unexchanged codes, of every application', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const { clients, grants, codes } = await authorizations(user);
      const others = await authorizations(other);
      // A grant revoked before stays as it was, and is not counted again.
      const revokedBefore = aGrant(clients[0]!.id, user.id, { revokedAt: NOW - 10 });
      await storage.grants.create(revokedBefore);
      const digest = await issue(user.id);

      const result = await storage.passwordResets.redeem(digest, '$new-hash', NOW + 60);
      assert.ok(result);
      const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
      assert.deepEqual(
        { ...result, withdrawn: { ...result.withdrawn, consents: [...result.withdrawn.consents].sort(), grants: [...result.withdrawn.grants].sort(byId) } },
        redeemed(user, false, {
          consents: [clients[0]!.id, clients[1]!.id].sort(),
          grants: grants.map(({ grant }) => ({ id: grant.id, clientId: grant.clientId })).sort(byId),
          codes: 2,
        }),
      );
      const stored = (await storage.users.findById(user.id))!;
      assert.equal(stored.emailVerified, true, 'the link proved the address');
      assert.equal(stored.passwordHash, '$new-hash');
      for (const { grant, refreshToken } of grants) {
        assert.equal(await revokedAt(grant.id), NOW + 60);
        assert.equal((await storage.refreshTokens.find(refreshToken.digest))!.grant.revokedAt, NOW + 60, 'its refresh token is read with its grant revoked');
      }
      assert.equal(await revokedAt(revokedBefore.id), NOW - 10);
      for (const code of codes) assert.equal(await storage.codes.find(code.digest), undefined);
      assert.deepEqual(await storage.consents.listForUser(user.id), []);

      // Another user's authorizations, to the same kind of applications, stay.
      for (const { grant } of others.grants) assert.equal(await revokedAt(grant.id), null);
      for (const code of others.codes) assert.ok(await storage.codes.find(code.digest));
      assert.equal((await storage.consents.listForUser(other.id)).length, 2);
      assert.equal((await storage.users.findById(other.id))!.emailVerified, false);
    });

    /** An application `ownerUserId` registered, with two secrets, public keys, a live and a revoked API key, and `other`'s consent, grant and code. */
    const application = async (ownerUserId: string, other: { id: string }) => {
      const client = await storage.clients.create(aClient({ ownerUserId, grantTypes: ['authorization_code', 'refresh_token', 'client_credentials'], jwks: { keys: [{ kty: 'EC', kid: 'k' }] } }), NOW);
      for (const id of [randomUUID(), randomUUID()]) await storage.clients.addSecret({ id, clientId: client.id, digest: `d-${id}`, hint: 'gate_cs_x', createdAt: NOW, expiresAt: null });
      const key = (revokedAt: number | null) => ({ id: randomUUID(), clientId: client.id, name: 'k', digest: randomUUID(), prefix: 'gate_ak_x', scopes: ['objects:read'], createdAt: NOW, expiresAt: null, revokedAt, lastUsedAt: null });
      const live = key(null);
      await storage.apiKeys.create(live);
      await storage.apiKeys.create(key(NOW - 5));
      const grant = aGrant(client.id, other.id);
      await storage.grants.create(grant);
      await storage.consents.save({ userId: other.id, clientId: client.id, scopes: ['openid'], createdAt: NOW, updatedAt: NOW });
      const code = aCode(client.id, other.id, { expiresAt: NOW + HOUR });
      await storage.codes.insert(code);
      return { client, live, grant, code };
    };

    it('on an account whose address was not verified, takes back the credentials of the applications it owns, and every grant given to them, in the same transaction', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const owned = await application(user.id, other);
      const othersApplication = await application(other.id, user);
      const digest = await issue(user.id);

      const result = await storage.passwordResets.redeem(digest, '$new-hash', NOW + 60);
      assert.ok(result);
      assert.deepEqual(result.applications, [{ clientId: owned.client.id, secretsDeleted: 2, apiKeysRevoked: [owned.live.id], keysRemoved: true, grants: [{ id: owned.grant.id, userId: other.id }] }]);
      assert.deepEqual(await storage.clients.listSecrets(owned.client.id), []);
      assert.ok((await storage.apiKeys.listForClient(owned.client.id)).every((key) => key.revokedAt !== null));
      assert.equal((await storage.apiKeys.findById(owned.live.id))!.revokedAt, NOW + 60);
      const stored = (await storage.clients.find(owned.client.id))!;
      assert.equal(stored.jwks, null);
      assert.equal(stored.updatedAt, NOW + 60);
      assert.equal(stored.ownerUserId, user.id, 'the application stays with the account');
      assert.equal(await revokedAt(owned.grant.id), NOW + 60);
      assert.equal(await storage.consents.find(other.id, owned.client.id), undefined);
      assert.equal(await storage.codes.find(owned.code.digest), undefined);

      // The application of another account stays as it was: its secrets and keys, and the grant this user gave it is the user's own, withdrawn as such.
      assert.equal((await storage.clients.listSecrets(othersApplication.client.id)).length, 2);
      assert.equal((await storage.apiKeys.findById(othersApplication.live.id))!.revokedAt, null);
      assert.ok((await storage.clients.find(othersApplication.client.id))!.jwks);
      assert.deepEqual(result.withdrawn.grants, [{ id: othersApplication.grant.id, clientId: othersApplication.client.id }]);
    });

    it('on an account whose address was verified, leaves the applications it owns as they are', async () => {
      const user = await aStoredUser({ emailVerified: true });
      const other = await aStoredUser();
      const owned = await application(user.id, other);
      const digest = await issue(user.id);
      assert.deepEqual(await storage.passwordResets.redeem(digest, '$new-hash', NOW + 60), redeemed(user, true));
      assert.equal((await storage.clients.listSecrets(owned.client.id)).length, 2);
      assert.equal((await storage.apiKeys.findById(owned.live.id))!.revokedAt, null);
      assert.equal(await revokedAt(owned.grant.id), null);
      assert.ok(await storage.consents.find(other.id, owned.client.id));
    });

    it('on an account whose address was verified, sets the password and withdraws nothing', async () => {
      const user = await aStoredUser({ emailVerified: true });
      const { grants, codes } = await authorizations(user);
      const digest = await issue(user.id);
      assert.deepEqual(await storage.passwordResets.redeem(digest, '$new-hash', NOW + 60), redeemed(user, true));
      assert.equal(await hashOf(user.id), '$new-hash');
      for (const { grant } of grants) assert.equal(await revokedAt(grant.id), null);
      for (const code of codes) assert.ok(await storage.codes.find(code.digest));
      assert.equal((await storage.consents.listForUser(user.id)).length, 2);
    });

    it('withdraws an unverified account’s authorizations once, for the one of 10 concurrent redemptions that wins', async () => {
      const user = await aStoredUser();
      const { grants } = await authorizations(user);
      const digest = await issue(user.id);
      const results = (await Promise.all(Array.from({ length: 10 }, (_, i) => storage.passwordResets.redeem(digest, `$hash-${i}`, NOW + 1 + i)))).filter((result) => result !== undefined);
      assert.equal(results.length, 1);
      assert.equal(results[0]!.withdrawn.grants.length, grants.length);
      assert.equal((await storage.users.findById(user.id))!.emailVerified, true);
    });

    it('refuses an expired link, an unknown one and one of a disabled user, changing nothing', async () => {
      const user = await aStoredUser();
      const { grants } = await authorizations(user);
      const digest = await issue(user.id);
      assert.equal(await storage.passwordResets.redeem(digest, '$late', NOW + TTL), undefined, 'expired at its expiry');
      assert.equal(await storage.passwordResets.redeem(digestOf(createOpaqueToken('pr')), '$unknown', NOW), undefined);
      const disabled = await aStoredUser();
      const ofDisabled = await issue(disabled.id);
      await storage.users.setDisabled(disabled.id, NOW, NOW);
      assert.equal(await storage.passwordResets.redeem(ofDisabled, '$disabled', NOW + 1), undefined);
      assert.equal(await hashOf(user.id), '$scrypt$placeholder');
      assert.equal(await hashOf(disabled.id), '$scrypt$placeholder');
      assert.equal((await storage.passwordResets.find(digest))!.consumedAt, null);
      assert.equal(await storage.passwordResets.find(ofDisabled), undefined, 'disabling deleted it');
      for (const { grant } of grants) assert.equal(await revokedAt(grant.id), null);
      assert.equal((await storage.consents.listForUser(user.id)).length, 2);
      assert.equal((await storage.users.findById(user.id))!.emailVerified, false);
      assert.equal((await storage.users.findById(disabled.id))!.emailVerified, false);
    });

    it('deletes a user’s links when they are disabled, and stores none for a disabled user: enabled again, the old link resets nothing', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const digest = await issue(user.id);
      const others = await issue(other.id);
      assert.equal(await storage.users.setDisabled(user.id, NOW + 1, NOW + 1), true);
      assert.equal(await storage.passwordResets.find(digest), undefined);
      assert.ok(await storage.passwordResets.find(others), 'another user’s link stays');
      const refused = digestOf(createOpaqueToken('pr'));
      assert.equal(await storage.passwordResets.issue({ digest: refused, userId: user.id, createdAt: NOW + 2, expiresAt: NOW + TTL }), false);
      assert.equal(await storage.passwordResets.find(refused), undefined);
      assert.equal(await storage.users.setDisabled(user.id, null, NOW + 3), true);
      assert.equal(await storage.passwordResets.redeem(digest, '$from-before', NOW + 4), undefined);
      assert.equal(await hashOf(user.id), '$scrypt$placeholder');
      const after = await issue(user.id, NOW + 5);
      assert.deepEqual(await storage.passwordResets.redeem(after, '$after', NOW + 6), redeemed(user), 'a link issued once enabled works');
    });

    it('lets a redemption and a disabling that meet on PostgreSQL take turns instead of deadlocking: the user is disabled, the link spent for nothing', { skip: dialect !== 'postgres' }, async () => {
      const user = await aStoredUser();
      const digest = await issue(user.id);
      const other = new pg.Client({ connectionString: database.databaseUrl });
      await other.connect();
      try {
        // The disabling waits longest before checking for a deadlock: were there one, the redemption would be aborted.
        await other.query(`set deadlock_timeout = '30s'`);
        await other.query('begin');
        // What setDisabled does: the user's row first, then their links.
        await other.query('update users set disabled_at = $2, updated_at = $2 where id = $1', [user.id, NOW + 1]);
        const redemption = storage.passwordResets.redeem(digest, '$raced', NOW + 2);
        await waitUntil(async () => Number((await other.query(`select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0].count) === 1);
        await other.query('delete from password_resets where user_id = $1', [user.id]);
        await other.query('commit');

        assert.equal(await redemption, undefined);
        assert.equal(await hashOf(user.id), '$scrypt$placeholder');
        assert.equal(await storage.passwordResets.find(digest), undefined);
      } finally {
        await other.end();
      }
    });

    it('keeps a user’s mailed links while a newer one is being sent: mailed, it replaces them; discarded, it leaves them working', async () => {
      const user = await aStoredUser();
      const mailed = await issue(user.id);
      const refused = await issueUnmailed(user.id, NOW + 10);
      assert.equal((await storage.passwordResets.find(refused))!.mailedAt, null);
      await storage.passwordResets.discard(refused);
      assert.equal(await storage.passwordResets.find(refused), undefined);
      assert.ok(await storage.passwordResets.find(mailed), 'a link whose mail was refused leaves the earlier one');

      // Two sent at once: the one whose mail is accepted last is left, whichever was asked for first.
      const first = await issueUnmailed(user.id, NOW + 20);
      const second = await issueUnmailed(user.id, NOW + 20);
      assert.ok(await storage.passwordResets.find(mailed), 'the earlier link works while newer ones are being sent');
      await storage.passwordResets.markMailed(second, NOW + 20);
      assert.equal(await storage.passwordResets.find(mailed), undefined);
      assert.ok(await storage.passwordResets.find(first), 'a link still being sent stays');
      await storage.passwordResets.markMailed(first, NOW + 20);
      assert.equal(await storage.passwordResets.find(second), undefined);
      assert.equal(await storage.passwordResets.redeem(second, '$second', NOW + 21), undefined);
      assert.deepEqual(await storage.passwordResets.redeem(first, '$first', NOW + 21), redeemed(user));

      // Marking a link deleted meanwhile (its user's password was set otherwise) deletes nothing.
      const kept = await issue(user.id, NOW + 30);
      const voided = await issueUnmailed(user.id, NOW + 30);
      await storage.passwordResets.discard(voided);
      await storage.passwordResets.markMailed(voided, NOW + 30);
      assert.ok(await storage.passwordResets.find(kept));
    });

    it('keeps only the newest link of a user, however many are issued at once', async () => {
      const user = await aStoredUser();
      const older = await issue(user.id);
      const newer = await issue(user.id, NOW + 10);
      assert.equal(await storage.passwordResets.find(older), undefined);
      assert.equal(await storage.passwordResets.redeem(older, '$older', NOW + 11), undefined);
      assert.deepEqual(await storage.passwordResets.redeem(newer, '$newer', NOW + 11), redeemed(user));

      const raced = await aStoredUser();
      const digests = await Promise.all(Array.from({ length: 8 }, () => issue(raced.id)));
      const left = (await Promise.all(digests.map((digest) => storage.passwordResets.find(digest)))).filter(Boolean);
      assert.equal(left.length, 1, 'one link of eight issued at once is left');
    });

    it('deletes a user’s links whenever their password is set otherwise, and only when it is', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const digest = await issue(user.id);
      const others = await issue(other.id);
      assert.equal(await storage.users.setPasswordHash(user.id, '$changed', NOW + 5, '$not-the-stored-hash'), false);
      assert.ok(await storage.passwordResets.find(digest), 'a change refused leaves the link');
      assert.equal(await storage.users.rehashPassword(user.id, '$scrypt$placeholder', '$rehashed'), true);
      assert.ok(await storage.passwordResets.find(digest), 'the same password hashed anew leaves the link');

      assert.equal(await storage.users.setPasswordHash(user.id, '$changed', NOW + 5), true);
      assert.equal(await storage.passwordResets.find(digest), undefined);
      assert.equal(await storage.passwordResets.redeem(digest, '$from-the-link', NOW + 6), undefined);
      assert.equal(await hashOf(user.id), '$changed');
      assert.ok(await storage.passwordResets.find(others), 'another user’s link stays');
      const later = await issue(user.id, NOW + 10);
      assert.deepEqual(await storage.passwordResets.redeem(later, '$from-a-later-link', NOW + 11), redeemed(user), 'a link asked for after works');
    });

    it('stores no link for an address the user no longer has: one asked for as the address changes is not mailed to the old one', async () => {
      const user = await aStoredUser();
      const asked = user.email;
      // The address changes (an operator, or the account's own email change) between the user's
      // lookup by the old address and the link's issue.
      await storage.users.update(user.id, { email: `moved-${randomUUID()}@example.com` }, NOW + 1);
      const stale = digestOf(createOpaqueToken('pr'));
      assert.equal(await storage.passwordResets.issue({ digest: stale, userId: user.id, email: asked, createdAt: NOW + 2, expiresAt: NOW + 2 + TTL }), false);
      assert.equal(await storage.passwordResets.find(stale), undefined);
      const current = (await storage.users.findById(user.id))!.email;
      const fresh = digestOf(createOpaqueToken('pr'));
      assert.equal(await storage.passwordResets.issue({ digest: fresh, userId: user.id, email: current, createdAt: NOW + 3, expiresAt: NOW + 3 + TTL }), true, 'one for the address it has is stored');
    });

    it('issues nothing for a user who is gone, and a user’s links go with them', async () => {
      assert.equal(await storage.passwordResets.issue({ digest: digestOf(createOpaqueToken('pr')), userId: 'no-such-user', createdAt: NOW, expiresAt: NOW + TTL }), false);
      const user = await aStoredUser();
      const digest = await issue(user.id);
      assert.ok(await storage.users.delete(user.id));
      assert.equal(await storage.passwordResets.find(digest), undefined);
    });

    it('sweeps expired links in bounded batches, used or not, and keeps live ones', async () => {
      const expired = [];
      for (let i = 0; i < 3; i++) expired.push(await issue((await aStoredUser()).id, NOW - 10 * HOUR));
      const live = await issue((await aStoredUser()).id, NOW);
      await storage.passwordResets.redeem(live, '$live', NOW + 1);
      const later = NOW - 10 * HOUR + TTL;
      // Other tables have nothing expired: every row swept is a link.
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 2);
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 1);
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 0);
      for (const digest of expired) assert.equal(await storage.passwordResets.find(digest), undefined);
      assert.ok(await storage.passwordResets.find(live), 'a used link stays until it expires');
    });
  });
}

async function waitUntil(condition: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 20) {
    if (await condition()) return;
    await sleep(20);
  }
  assert.fail('the condition never became true');
}
