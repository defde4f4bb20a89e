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
  /** Set (to the time it was asked for) once the mail server accepted its mail; null while it is being sent. */
  mailedAt: number | null;
}

export interface EmailVerificationRepository {
  /**
   * Stores a link of `link.userId`, its mail being sent, beside the user's earlier ones, in a
   * transaction that holds the user's row, only while `link.email` is the user's address: the
   * earlier ones keep working until its mail is accepted (markMailed), and for good when it is not
   * (discard). False (nothing stored) when the user is gone, disabled or has another address.
   */
  issue(link: Omit<EmailVerification, 'consumedAt' | 'mailedAt'>): Promise<boolean>;
  /**
   * The mail of the link `digest` was accepted at `now`: marks it mailed and deletes every other
   * link of its user that was mailed, used or not, holding the user's row. Links still being sent
   * stay: of those asked for at once, the one whose mail was accepted last is left. Nothing when the
   * link is gone.
   */
  markMailed(digest: string, now: number): Promise<void>;
  /** The mail of the link `digest` was not sent: deletes it, leaving the user's earlier ones. */
  discard(digest: string): Promise<void>;
  find(digest: string): Promise<EmailVerification | undefined>;
  /**
   * Consumes the link and marks its user's address verified (and `now` as their update time), in one
   * transaction: only while the link is unused and unexpired at `now` (of concurrent redemptions
   * exactly one wins), its user not disabled and their address still the one the link was sent to.
   * The user's id; undefined when it is none of these, and then nothing changed.
   */
  redeem(digest: string, now: number): Promise<string | undefined>;
}
