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
    const wait = Math.max(await this.#perAccount.blockedFor(account, now), await this.#perAddress.blockedFor(client, now));
    if (wait > 0) return { outcome: 'throttled', retryAfterSeconds: wait };

    const user = email.length <= 320 && password.length <= 1024 ? await this.#storage.users.findByEmail(email) : undefined;
    const valid = await verifyPassword(password, user?.passwordHash ?? (await decoyPasswordHash()));
    if (!user || !valid || user.disabledAt !== null) {
      await Promise.all([this.#perAccount.fail(account, now), this.#perAddress.fail(client, now)]);
      return { outcome: 'invalid' };
    }
    await this.#perAccount.reset(account);
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
