import type { Withdrawal } from './consents.ts';

/** A "forgot your password?" link: its token's digest, for whom, and until when it works. */
export interface PasswordReset {
  /** SHA-256 of the token in the link. */
  digest: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
  /** Set (to the time it was asked for) once the mail server accepted its mail; null while it is being sent. */
  mailedAt: number | null;
}

/** A reset done: whose, whether their address was verified before it, and what it withdrew. */
export interface RedeemedReset {
  userId: string;
  emailWasVerified: boolean;
  /** Nothing when the address was verified before. */
  withdrawn: Withdrawal;
  /** The applications the account owns whose credentials it took back; none when the address was verified before. */
  applications: ApplicationTakenBack[];
}

/** What a reset took back from an application the account owned (PasswordResetRepository.redeem). */
export interface ApplicationTakenBack {
  clientId: string;
  /** How many client secrets were deleted. */
  secretsDeleted: number;
  /** The API keys revoked (those revoked before are not among them). */
  apiKeysRevoked: string[];
  /** Whether it held public keys for `private_key_jwt`, now removed. */
  keysRemoved: boolean;
  /** The grants of the application revoked, whoever gave them. */
  grants: { id: string; userId: string | null }[];
}

export interface PasswordResetRepository {
  /**
   * Stores a reset of `reset.userId`, its mail being sent, beside the user's earlier ones, in a
   * transaction that holds the user's row: those keep working until its mail is accepted
   * (markMailed), and for good when it is not (discard). False (nothing stored) when the user is
   * gone or disabled, or, with `reset.email` (the address its mail goes to, not stored), no longer
   * has that address: a change of the address deletes the links mailed to the old one, so one
   * looked up by the old address as it changed must not be stored, and mailed there, after it.
   */
  issue(reset: Omit<PasswordReset, 'consumedAt' | 'mailedAt'> & { email?: string }): Promise<boolean>;
  /**
   * The mail of the reset `digest` was accepted at `now`: marks it mailed and deletes every other
   * reset of its user that was mailed, used or not, holding the user's row. Resets still being sent
   * stay: of those asked for at once, on any instance, the one whose mail was accepted last is
   * left. Nothing when the reset is gone.
   */
  markMailed(digest: string, now: number): Promise<void>;
  /** The mail of the reset `digest` was not sent: deletes it, leaving the user's earlier ones. */
  discard(digest: string): Promise<void>;
  find(digest: string): Promise<PasswordReset | undefined>;
  /**
   * Consumes the reset and sets its user's password hash (and `now` as their update time), in one
   * transaction: only while the reset is unused and unexpired at `now` (one conditional `UPDATE …
   * WHERE consumed_at IS NULL`, so of concurrent redemptions exactly one wins) and its user is not
   * disabled. Every email change link of the user is deleted with it. When the user's address was not verified, the same transaction marks it verified (the
   * link was sent to it) and withdraws everything the account authorized, for every client, as a
   * consent's withdrawal does (ConsentRepository.withdraw): consents, unexchanged codes, grants;
   * and takes back the credentials of every application the account owns (developer portal): its
   * client secrets are deleted, its API keys revoked, its public keys removed, and every grant given
   * to it, by anyone, is revoked, with its consents and unexchanged codes. The application stays,
   * for the address's owner to review and give new credentials.
   * Undefined when it is none of these, and then nothing changed.
   */
  redeem(digest: string, passwordHash: string, now: number): Promise<RedeemedReset | undefined>;
}
