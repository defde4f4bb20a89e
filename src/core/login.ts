import type { Storage } from '../storage/repositories.ts';
import { MAX_EMAIL_LENGTH, normalizeEmail, type User } from '../storage/repositories/users.ts';
import { clientNetwork } from './addresses.ts';
import { MAX_PASSWORD_LENGTH, PasswordsBusy, checkPassword, decoyPasswordHash, hashPassword } from './passwords.ts';
import type { AttemptOutcome, FailureCounter } from './rate-limit/failures.ts';

export type LoginResult =
  | { outcome: 'success'; user: User }
  /**
   * Wrong email, wrong password or disabled account: one answer for all, so emails cannot be probed.
   * `userId` names the account the email is of, if any, for the audit log alone.
   */
  | { outcome: 'invalid'; userId: string | null }
  /** `limit`: the budget that is spent, the account's or the client address's. */
  | { outcome: 'throttled'; retryAfterSeconds: number; limit: 'account' | 'address' }
  /**
   * Not checked, and counted against nothing: the attempts of the account or address ahead of this
   * one did not settle in time (a database that does not answer), or the server has as many
   * passwords to check as it takes at once (PasswordsBusy).
   */
  | { outcome: 'busy' };

/**
 * Email and password sign-in, throttled per account and per client address. Unknown emails cost
 * the same Argon2id verification as known ones. Only as many attempts of an account (or address)
 * are checked at once as it has failures left; the others wait for them, so a burst of guesses
 * meets the limit as a sequence of guesses would.
 */
export class LoginService {
  #storage: Storage;
  #perAccount: FailureCounter;
  #perAddress: FailureCounter;

  constructor(storage: Storage, counters: { perAccount: FailureCounter; perAddress: FailureCounter }) {
    this.#storage = storage;
    this.#perAccount = counters.perAccount;
    this.#perAddress = counters.perAddress;
  }

  async login(email: string, password: string, address: string, now: number): Promise<LoginResult> {
    // Normalized as stored, so every way of typing an email counts against its account's one budget.
    // No account has a longer email than MAX_EMAIL_LENGTH: a longer one is keyed by its first characters,
    // so that a guess costs the counters the same few hundred bytes whatever its length (the sign-in
    // page takes 64 KiB), and inventing ever new ones cannot fill a process's memory.
    const normalized = email.length <= MAX_EMAIL_LENGTH ? normalizeEmail(email) : email.trim().toLowerCase().slice(0, MAX_EMAIL_LENGTH);
    return this.#attempt(normalized, password, address, now, async () => (email.length <= MAX_EMAIL_LENGTH ? this.#storage.users.findByEmail(normalized) : undefined));
  }

  /**
   * Checks the password of a user who is signed in already and asks to change something that needs
   * it (their password): counted against the account and the address as a sign-in is, so that a
   * session in someone else's hands cannot be used to guess the password faster than the sign-in
   * page allows. The user is read again: a password changed meanwhile is the one checked.
   */
  async confirmPassword(user: User, password: string, address: string, now: number): Promise<LoginResult> {
    return this.#attempt(user.email, password, address, now, () => this.#storage.users.findById(user.id));
  }

  /** One attempt at the password of the account of `normalizedEmail`, the user it names read by `findUser` once admitted. */
  async #attempt(normalizedEmail: string, password: string, address: string, now: number, findUser: () => Promise<User | undefined>): Promise<LoginResult> {
    const account = `account:${normalizedEmail}`;
    const client = addressKey(address);
    // Always the account first, then the address: an attempt waiting for a place never holds one
    // that the attempts it waits for need.
    const accountWait = await this.#perAccount.admit(account, now);
    if (accountWait !== 0) return refused(accountWait, 'account');
    let addressWait: number | 'busy';
    try {
      addressWait = await this.#perAddress.admit(client, now);
    } catch (error) {
      await this.#perAccount.settle(account, 'undecided', now);
      throw error;
    }
    if (addressWait !== 0) {
      await this.#perAccount.settle(account, 'withdrawn', now);
      return refused(addressWait, 'address');
    }

    // An attempt that could not be decided (the database did not answer) counts nothing.
    let outcome: AttemptOutcome = 'undecided';
    try {
      // No account has a longer password than MAX_PASSWORD_LENGTH. A longer one is checked against the
      // decoy, cut to that length: it costs the time any wrong password costs, and is never normalized whole.
      const user = password.length <= MAX_PASSWORD_LENGTH ? await findUser() : undefined;
      const { valid, rehash } = await checkPassword(user ? password : password.slice(0, MAX_PASSWORD_LENGTH), user?.passwordHash ?? (await decoyPasswordHash()));
      if (!user || !valid || user.disabledAt !== null) {
        outcome = 'failed';
        return { outcome: 'invalid', userId: user?.id ?? null };
      }
      outcome = 'passed';
      await this.#perAccount.reset(account, now);
      // The user as stored now: a caller may change the password on condition that it is still this one.
      return { outcome: 'success', user: rehash ? await this.#rehash(user, password) : user };
    } catch (error) {
      if (error instanceof PasswordsBusy) return { outcome: 'busy' };
      throw error;
    } finally {
      await Promise.all([this.#perAccount.settle(account, outcome, now), this.#perAddress.settle(client, outcome, now)]);
    }
  }

  /**
   * Stores the password, just verified against an outdated hash, hashed as passwords are hashed
   * today; unless the password was changed meanwhile. Should that fail, the sign-in stands and the
   * next one tries again. The user with the hash stored.
   */
  async #rehash(user: User, password: string): Promise<User> {
    try {
      const passwordHash = await hashPassword(password);
      if (await this.#storage.users.rehashPassword(user.id, user.passwordHash, passwordHash)) return { ...user, passwordHash };
    } catch {
      // The sign-in does not depend on it.
    }
    return user;
  }

  /**
   * Sign-up must say when an email is taken, so it could be used to probe which emails have
   * accounts: each such answer counts as a failed sign-in of the address, and an address over the
   * limit waits before it may sign up (or sign in) again. Seconds to wait, or 0.
   */
  async signupBlockedFor(address: string, now: number): Promise<number> {
    return this.#perAddress.blockedFor(addressKey(address), now);
  }

  async signupRefusedTakenEmail(address: string, now: number): Promise<void> {
    await this.#perAddress.fail(addressKey(address), now);
  }
}

const addressKey = (address: string): string => `address:${clientNetwork(address)}`;

const refused = (wait: number | 'busy', limit: 'account' | 'address'): LoginResult => (wait === 'busy' ? { outcome: 'busy' } : { outcome: 'throttled', retryAfterSeconds: wait, limit });
