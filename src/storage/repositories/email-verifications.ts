/** An email verification link: its token's digest, whose address it verifies, the address it was sent to, and until when it works. */
export interface EmailVerification {
  /** SHA-256 of the token in the link. */
  digest: string;
  userId: string;
  /** The address the link was sent to: it verifies that address, and no other the user has later. */
  email: string;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
}

export interface EmailVerificationRepository {
  /**
   * Stores a link of `link.userId` and deletes every earlier one of the user, in one transaction that
   * holds the user's row, only while `link.email` is the user's address: only the newest link works.
   * False (nothing stored) when the user is gone, disabled or has another address.
   */
  issue(link: Omit<EmailVerification, 'consumedAt'>): Promise<boolean>;
  find(digest: string): Promise<EmailVerification | undefined>;
  /**
   * Consumes the link and marks its user's address verified (and `now` as their update time), in one
   * transaction: only while the link is unused and unexpired at `now` (of concurrent redemptions
   * exactly one wins), its user not disabled and their address still the one the link was sent to.
   * The user's id; undefined when it is none of these, and then nothing changed.
   */
  redeem(digest: string, now: number): Promise<string | undefined>;
}
