import type { Storage } from '../storage/repositories.ts';
import type { User } from '../storage/repositories/users.ts';
import { clientNetwork } from './addresses.ts';
import { checkNewUser, createUser, type UserInput } from './users.ts';
import type { EmailVerificationService } from './email-verification.ts';
import type { RequestLimiter } from './rate-limit/requests.ts';

export type SignupResult = { outcome: 'created'; user: User } | { outcome: 'throttled'; retryAfterSeconds: number };

/**
 * Accounts people create for themselves (`/signup`), limited per client address. Each is a
 * permanent user row, an Argon2id hash and a session, and anybody may ask for one: without a
 * budget, one address created dozens a second. With email verification on, each is sent a link
 * to verify its address (after the answer: the mail server is not waited for).
 */
export class SignupService {
  #storage: Storage;
  #perAddress: RequestLimiter;
  #verifications: EmailVerificationService | undefined;

  /** `verifications`: sends each new account a link to verify its address, when it is enabled. */
  constructor(storage: Storage, limits: { perAddress: RequestLimiter }, verifications?: EmailVerificationService) {
    this.#storage = storage;
    this.#perAddress = limits.perAddress;
    this.#verifications = verifications;
  }

  /**
   * Creates the account, or says how long the address must wait. Input that cannot make an account
   * is refused first (ValidationError) and takes nothing from the budget: a typo in a form is no
   * account. An email that has an account already fails with EmailTakenError, after the budget is taken.
   */
  async signUp(input: UserInput, address: string, now: number): Promise<SignupResult> {
    checkNewUser(input);
    const wait = await this.#perAddress.take(`address:${clientNetwork(address)}`, now);
    if (wait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(wait) };
    const user = await createUser(this.#storage, input, now);
    this.#verifications?.sendTo(user, now);
    return { outcome: 'created', user };
  }
}
