import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { createStorage } from '../../src/storage/kysely/index.ts';
import type { Storage } from '../../src/storage/repositories.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { aUser, HOUR, NOW } from '../support/records.ts';

/*
 * The storage of email verification links (EmailVerificationRepository), on each dialect: a link
 * names the address it was sent to and verifies the user only while that is still their address,
 * once, never past its expiry nor for a disabled user; only the newest link of a user works; a change
 * of the address deletes the user's links; expired links are swept in bounded batches, and a user's
 * links go with them.
 */

const SWEEP = { accessTokenTtlSeconds: HOUR, auditRetentionSeconds: 0 };
const TTL = 86_400;

for (const dialect of DIALECTS) {
  describe(`email verification links on ${dialect}`, () => {
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
    /** Stores a link of `user`, its mail not yet accepted. */
    const issueUnmailed = async (user: { id: string; email: string }, at = NOW) => {
      const digest = digestOf(createOpaqueToken('ev'));
      assert.equal(await storage.emailVerifications.issue({ digest, userId: user.id, email: user.email, createdAt: at, expiresAt: at + TTL }), true);
      return digest;
    };
    /** Stores a link of `user` and marks it mailed, as sending it does. */
    const issue = async (user: { id: string; email: string }, at = NOW) => {
      const digest = await issueUnmailed(user, at);
      await storage.emailVerifications.markMailed(digest, at);
      return digest;
    };
    const verified = async (userId: string) => (await storage.users.findById(userId))!.emailVerified;

    it('stores only the digest with the address, and redeems it once: the address is verified and the link spent', async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      assert.deepEqual(await storage.emailVerifications.find(digest), { digest, userId: user.id, email: user.email, createdAt: NOW, expiresAt: NOW + TTL, consumedAt: null, mailedAt: NOW });
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 60), user.id);
      const stored = (await storage.users.findById(user.id))!;
      assert.equal(stored.emailVerified, true);
      assert.equal(stored.updatedAt, NOW + 60);
      assert.equal((await storage.emailVerifications.find(digest))!.consumedAt, NOW + 60);
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 61), undefined, 'a used link');
    });

    it('lets exactly one of 10 concurrent redemptions of a link win', async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      const results = await Promise.all(Array.from({ length: 10 }, () => storage.emailVerifications.redeem(digest, NOW + 1)));
      assert.equal(results.filter((result) => result === user.id).length, 1);
      assert.equal(await verified(user.id), true);
    });

    it('refuses an expired link, an unknown one and one of a disabled user, changing nothing', async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + TTL), undefined, 'expired at its expiry');
      assert.equal(await storage.emailVerifications.redeem(digestOf(createOpaqueToken('ev')), NOW), undefined);
      const disabled = await aStoredUser();
      const ofDisabled = await issue(disabled);
      await storage.users.setDisabled(disabled.id, NOW, NOW);
      assert.equal(await storage.emailVerifications.redeem(ofDisabled, NOW + 1), undefined);
      assert.equal(await verified(user.id), false);
      assert.equal(await verified(disabled.id), false);
      assert.equal((await storage.emailVerifications.find(digest))!.consumedAt, null);
    });

    it('lets a redemption and a change of the address that meet on PostgreSQL take turns instead of deadlocking: the new address is not verified', { skip: dialect !== 'postgres' }, async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      const other = new pg.Client({ connectionString: database.databaseUrl });
      await other.connect();
      try {
        // The change waits longest before checking for a deadlock: were there one, the redemption would be aborted.
        await other.query(`set deadlock_timeout = '30s'`);
        await other.query('begin');
        // What a change of the address does: the user's row first, then their links.
        await other.query('update users set email = $2, updated_at = $3 where id = $1', [user.id, `new-${user.email}`, NOW + 1]);
        const redemption = storage.emailVerifications.redeem(digest, NOW + 2);
        await waitUntil(async () => Number((await other.query(`select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows[0].count) === 1);
        await other.query('delete from email_verifications where user_id = $1', [user.id]);
        await other.query('commit');

        assert.equal(await redemption, undefined);
        assert.equal(await verified(user.id), false);
        assert.equal(await storage.emailVerifications.find(digest), undefined);
      } finally {
        await other.end();
      }
    });

    it('deletes a user’s links when they are disabled, and stores none for a disabled user: enabled again, the old link verifies nothing', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const digest = await issue(user);
      const others = await issue(other);
      assert.equal(await storage.users.setDisabled(user.id, NOW + 1, NOW + 1), true);
      assert.equal(await storage.emailVerifications.find(digest), undefined);
      assert.ok(await storage.emailVerifications.find(others), 'another user’s link stays');
      const refused = digestOf(createOpaqueToken('ev'));
      assert.equal(await storage.emailVerifications.issue({ digest: refused, userId: user.id, email: user.email, createdAt: NOW + 2, expiresAt: NOW + TTL }), false);
      assert.equal(await storage.emailVerifications.find(refused), undefined);
      assert.equal(await storage.users.setDisabled(user.id, null, NOW + 3), true);
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 4), undefined);
      assert.equal(await verified(user.id), false);
      const after = await issue(user);
      assert.equal(await storage.emailVerifications.redeem(after, NOW + 5), user.id, 'a link issued once enabled works');
    });

    it('stores no link for an address that is no longer the user’s, nor for a user who is gone', async () => {
      const user = await aStoredUser();
      const digest = digestOf(createOpaqueToken('ev'));
      assert.equal(await storage.emailVerifications.issue({ digest, userId: user.id, email: 'someone.else@example.com', createdAt: NOW, expiresAt: NOW + TTL }), false);
      assert.equal(await storage.emailVerifications.find(digest), undefined);
      assert.equal(await storage.emailVerifications.issue({ digest, userId: 'no-such-user', email: user.email, createdAt: NOW, expiresAt: NOW + TTL }), false);
    });

    it('deletes a user’s links when their address changes, and only then: a link sent to the old address verifies nothing', async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      const digest = await issue(user);
      const others = await issue(other);
      await storage.users.update(user.id, { name: 'Ada King' }, NOW + 1);
      assert.ok(await storage.emailVerifications.find(digest), 'another change leaves the link');
      await storage.users.update(user.id, { email: user.email.toUpperCase() }, NOW + 2);
      assert.ok(await storage.emailVerifications.find(digest), 'the same address in other letters is the same address');

      await storage.users.update(user.id, { email: `new.${user.email}` }, NOW + 3);
      assert.equal(await storage.emailVerifications.find(digest), undefined);
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 4), undefined);
      assert.equal(await storage.users.update(user.id, { email: user.email }, NOW + 5).then((u) => u!.email), user.email, 'changed back');
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 6), undefined, 'the old link stays void');
      assert.equal(await verified(user.id), false);
      assert.ok(await storage.emailVerifications.find(others), 'another user’s link stays');
    });

    it('verifies nothing when the address changed between the link’s issue and its redemption, even were the link left', async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      // As an instance that does not delete the links would leave them (the redemption checks the address itself).
      const changed = await storage.users.update(user.id, { email: `moved.${user.email}` }, NOW + 1);
      assert.ok(changed);
      assert.equal(await storage.emailVerifications.redeem(digest, NOW + 2), undefined);
      assert.equal(await verified(user.id), false);
    });

    it('keeps a user’s mailed links while a newer one is being sent: mailed, it replaces them; discarded, it leaves them working', async () => {
      const user = await aStoredUser();
      const mailed = await issue(user);
      const refused = await issueUnmailed(user, NOW + 10);
      assert.equal((await storage.emailVerifications.find(refused))!.mailedAt, null);
      await storage.emailVerifications.discard(refused);
      assert.equal(await storage.emailVerifications.find(refused), undefined);
      assert.ok(await storage.emailVerifications.find(mailed), 'a link whose mail was refused leaves the earlier one');

      const sent = await issueUnmailed(user, NOW + 20);
      assert.ok(await storage.emailVerifications.find(mailed), 'the earlier link works while the newer one is being sent');
      await storage.emailVerifications.markMailed(sent, NOW + 20);
      assert.equal(await storage.emailVerifications.find(mailed), undefined);
      assert.equal(await storage.emailVerifications.redeem(mailed, NOW + 21), undefined);
      assert.equal(await storage.emailVerifications.redeem(sent, NOW + 21), user.id);
    });

    it('keeps only the newest link of a user, however many are issued at once', async () => {
      const user = await aStoredUser();
      const older = await issue(user);
      const newer = await issue(user, NOW + 10);
      assert.equal(await storage.emailVerifications.find(older), undefined);
      assert.equal(await storage.emailVerifications.redeem(older, NOW + 11), undefined);
      assert.equal(await storage.emailVerifications.redeem(newer, NOW + 11), user.id);

      const raced = await aStoredUser();
      const digests = await Promise.all(Array.from({ length: 8 }, () => issue(raced)));
      const left = (await Promise.all(digests.map((digest) => storage.emailVerifications.find(digest)))).filter(Boolean);
      assert.equal(left.length, 1, 'one link of eight issued at once is left');
    });

    it('lets a user’s links go with them', async () => {
      const user = await aStoredUser();
      const digest = await issue(user);
      assert.ok(await storage.users.delete(user.id));
      assert.equal(await storage.emailVerifications.find(digest), undefined);
    });

    it('sweeps expired links in bounded batches, used or not, and keeps live ones', async () => {
      const expired = [];
      for (let i = 0; i < 3; i++) expired.push(await issue(await aStoredUser(), NOW - 10 * TTL));
      const live = await issue(await aStoredUser(), NOW);
      await storage.emailVerifications.redeem(live, NOW + 1);
      const later = NOW - 10 * TTL + TTL;
      // Other tables have nothing expired: every row swept is a link.
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 2);
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 1);
      assert.equal(await storage.sweepExpired(later + 1, 2, SWEEP), 0);
      for (const digest of expired) assert.equal(await storage.emailVerifications.find(digest), undefined);
      assert.ok(await storage.emailVerifications.find(live), 'a used link stays until it expires');
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
