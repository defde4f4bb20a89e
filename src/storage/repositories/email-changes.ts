/** An email change link: its token's digest, whose address it changes, from which address to which, and until when it works. */
export interface EmailChange {
  /** SHA-256 of the token in the link. */
  digest: string;
  userId: string;
  /** The address the account had when the change was asked for: the link works only while it still has it. */
  from: string;
  /** The address the link sets, and was sent to. */
  to: string;
  createdAt: number;
  expiresAt: number;
  consumedAt: number | null;
  /** Set (to the time it was asked for) once the mail server accepted its mail; null while it is being sent. */
  mailedAt: number | null;
}

/** A redemption that changed the address: whose, and from which to which. */
export interface EmailChanged {
  userId: string;
  from: string;
  to: string;
}

export interface EmailChangeRepository {
  /**
   * Stores a link of `link.userId`, its mail being sent, beside the user's earlier ones, in a
   * transaction that holds the user's row, only while `link.from` is the user's address: the
   * earlier ones keep working until its mail is accepted (markMailed), and for good when it is not
   * (discard). False (nothing stored) when the user is gone, disabled or has another address, or
   * when `asked.passwordHash`, the hash of the password the change was asked with, is no longer
   * theirs: a new password deletes the links asked for with the old one (UserRepository.
   * setPasswordHash), so one whose password was checked as it changed must not be stored after it.
   */
  issue(link: Omit<EmailChange, 'consumedAt' | 'mailedAt'>, asked: { passwordHash: string }): Promise<boolean>;
  /** As EmailVerificationRepository.markMailed: the newest link mailed replaces the user's others. */
  markMailed(digest: string, now: number): Promise<void>;
  /** The mail of the link `digest` was not sent: deletes it, leaving the user's earlier ones. */
  discard(digest: string): Promise<void>;
  find(digest: string): Promise<EmailChange | undefined>;
  /**
   * Consumes the link and gives its user the address it was sent to, verified (the link proves it
   * is read), with `now` as their update time, in one transaction: only while the link is unused and
   * unexpired at `now` (of concurrent redemptions exactly one wins), its user not disabled and their
   * address still the one it had when the link was asked for. The user's other email change and
   * verification links and every password reset link go with the old address, in the same
   * transaction. 'taken', with nothing changed and the link unspent, when the new address is another
   * user's (normalized); undefined when it is none of the rest, and then nothing changed either.
   */
  redeem(digest: string, now: number): Promise<EmailChanged | 'taken' | undefined>;
}
