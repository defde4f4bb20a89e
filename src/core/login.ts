import type { Storage, User } from '../storage/repositories.ts';
import { decoyPasswordHash, verifyPassword } from './passwords.ts';
import type { FailureCounter } from './rate-limit.ts';

export type LoginResult =
  | { outcome: 'success'; user: User }
  /** Wrong email, wrong password or disabled account: one answer for all, so emails cannot be probed. */
  | { outcome: 'invalid' }
  | { outcome: 'throttled'; retryAfterSeconds: number };

/**
 * Email and password sign-in, throttled per account and per client address. Unknown emails cost
 * the same Argon2id verification as known ones.
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
    const account = `account:${email.trim().toLowerCase()}`;
    const client = addressKey(address);
    // Each attempt is counted as a failure before the (slow, thread-pool) password check, and taken
    // back if it succeeds: concurrent guesses cannot all slip past a check made before any failed.
    const accountWait = await this.#perAccount.attempt(account, now);
    if (accountWait > 0) return { outcome: 'throttled', retryAfterSeconds: accountWait };
    const addressWait = await this.#perAddress.attempt(client, now);
    if (addressWait > 0) {
      await this.#perAccount.forgive(account, now);
      return { outcome: 'throttled', retryAfterSeconds: addressWait };
    }

    const user = email.length <= 320 && password.length <= 1024 ? await this.#storage.users.findByEmail(email) : undefined;
    const valid = await verifyPassword(password, user?.passwordHash ?? (await decoyPasswordHash()));
    if (!user || !valid || user.disabledAt !== null) return { outcome: 'invalid' };
    await Promise.all([this.#perAccount.reset(account), this.#perAddress.forgive(client, now)]);
    return { outcome: 'success', user };
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

const addressKey = (address: string): string => `address:${address}`;
