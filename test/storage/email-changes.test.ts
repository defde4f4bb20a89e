import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createOpaqueToken, digestOf } from '../../src/core/tokens/opaque.ts';
import { createStorage } from '../../src/storage/kysely/index.ts';
import type { Storage } from '../../src/storage/repositories.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { aUser, HOUR, NOW } from '../support/records.ts';

/*
 * The storage of email change links (EmailChangeRepository), on each dialect: a link moves its user
 * from the address it was asked from to the one it was sent to, verified, once, of concurrent
 * redemptions exactly one; never past its expiry, for a disabled user, or once the address changed;
 * an address another user has leaves everything, the link included, as it was; the links sent to
 * the old address go with it; expired links are swept.
 */

const SWEEP = { accessTokenTtlSeconds: HOUR, auditRetentionSeconds: 0 };
const TTL = 86_400;

for (const dialect of DIALECTS) {
  describe(`email change links on ${dialect}`, () => {
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

    const newAddress = () => `new-${randomUUID()}@example.com`;
    const aStoredUser = async () => storage.users.create(aUser({ id: randomUUID(), email: `user-${randomUUID()}@example.com` }), NOW);
    /** Stores a link of `user` to `to` and marks it mailed, as sending it does. */
    const issue = async (user: { id: string; email: string; passwordHash: string }, to: string, at = NOW) => {
      const digest = digestOf(createOpaqueToken('ec'));
      assert.equal(await storage.emailChanges.issue({ digest, userId: user.id, from: user.email, to, createdAt: at, expiresAt: at + TTL }, { passwordHash: user.passwordHash }), true);
      await storage.emailChanges.markMailed(digest, at);
      return digest;
    };

    it('moves the user to the new address, verified, once of concurrent redemptions, and voids the links of the old address', async () => {
      const user = await aStoredUser();
      const to = newAddress();
      const verification = digestOf(createOpaqueToken('ev'));
      await storage.emailVerifications.issue({ digest: verification, userId: user.id, email: user.email, createdAt: NOW, expiresAt: NOW + TTL });
      const digest = await issue(user, to);
      const results = await Promise.all([1, 2, 3, 4].map(() => storage.emailChanges.redeem(digest, NOW + 60)));
      assert.deepEqual(results.filter((result) => result !== undefined), [{ userId: user.id, from: user.email, to }]);
      const stored = (await storage.users.findById(user.id))!;
      assert.equal(stored.email, to);
      assert.equal(stored.emailVerified, true);
      assert.equal(stored.updatedAt, NOW + 60);
      assert.equal(await storage.emailVerifications.find(verification), undefined);
      assert.equal((await storage.emailChanges.find(digest))!.consumedAt, NOW + 60);
    });

    it('changes nothing past its expiry, for a disabled user, or once the address changed otherwise', async () => {
      const expiring = await aStoredUser();
      assert.equal(await storage.emailChanges.redeem(await issue(expiring, newAddress()), NOW + TTL), undefined);
      const disabled = await aStoredUser();
      const beforeDisabling = await issue(disabled, newAddress());
      await storage.users.setDisabled(disabled.id, NOW, NOW);
      assert.equal(await storage.emailChanges.redeem(beforeDisabling, NOW + 1), undefined);
      const moved = await aStoredUser();
      const stale = await issue(moved, newAddress());
      const elsewhere = newAddress();
      await storage.users.update(moved.id, { email: elsewhere }, NOW + 1);
      assert.equal(await storage.emailChanges.find(stale), undefined, 'deleted with the change');
      assert.equal((await storage.users.findById(moved.id))!.email, elsewhere);
      for (const user of [expiring, disabled]) assert.equal((await storage.users.findById(user.id))!.email, user.email);
    });

    it('answers taken, changing nothing and leaving the link unspent, when another user has the address', async () => {
      const user = await aStoredUser();
      const to = newAddress();
      const digest = await issue(user, to);
      await storage.users.create(aUser({ id: randomUUID(), email: to }), NOW);
      assert.equal(await storage.emailChanges.redeem(digest, NOW + 1), 'taken');
      assert.equal((await storage.users.findById(user.id))!.email, user.email);
      assert.equal((await storage.emailChanges.find(digest))!.consumedAt, null);
    });

    it('stores no link, nor changes the address without one, once the password it was asked with is no longer the user’s', async () => {
      const user = await aStoredUser();
      // An operator resets the password (the account is in someone else's hands) between the check
      // of the password the change was asked with and the link's issue.
      assert.equal(await storage.users.setPasswordHash(user.id, '$reset-by-operator', NOW + 1), true);
      const digest = digestOf(createOpaqueToken('ec'));
      const link = { digest, userId: user.id, from: user.email, to: newAddress(), createdAt: NOW + 2, expiresAt: NOW + 2 + TTL };
      assert.equal(await storage.emailChanges.issue(link, { passwordHash: user.passwordHash }), false);
      assert.equal(await storage.emailChanges.find(digest), undefined);
      // Without mail the address changes at once: only while the password is still the one checked.
      assert.equal(await storage.users.update(user.id, { email: newAddress(), emailVerified: false }, NOW + 3, { email: user.email, passwordHash: user.passwordHash }), undefined);
      assert.equal((await storage.users.findById(user.id))!.email, user.email);
      assert.equal(await storage.emailChanges.issue({ ...link, digest: digestOf(createOpaqueToken('ec')) }, { passwordHash: '$reset-by-operator' }), true, 'asked with the password it has, it is stored');
      const to = newAddress();
      assert.equal((await storage.users.update(user.id, { email: to }, NOW + 4, { email: user.email, passwordHash: '$reset-by-operator' }))?.email, to);
    });

    it('is deleted with a new password, and swept once expired', async () => {
      const user = await aStoredUser();
      const digest = await issue(user, newAddress());
      assert.equal(await storage.users.setPasswordHash(user.id, 'another hash', NOW + 1), true);
      assert.equal(await storage.emailChanges.find(digest), undefined);
      const expired = await issue({ ...user, passwordHash: 'another hash' }, newAddress(), NOW - 2 * TTL);
      await storage.sweepExpired(NOW, 100, SWEEP);
      assert.equal(await storage.emailChanges.find(expired), undefined);
    });
  });
}
