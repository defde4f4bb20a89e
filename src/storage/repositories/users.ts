import { domainToUnicode } from 'node:url';
import type { Page } from './page.ts';
import type { EndedSession } from './sessions.ts';

export interface User {
  id: string;
  email: string;
  name: string;
  passwordHash: string;
  emailVerified: boolean;
  disabledAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/**
 * The longest email an account can have, as typed (RFC 5321 §4.5.3.1: 64 characters of local part,
 * @, 255 of domain). A longer one names no account and is never normalized: Unicode normalization
 * (and UTS #46) takes time quadratic in the length of a run of combining marks, and a body of 64 KiB
 * of them held the event loop for a second.
 */
export const MAX_EMAIL_LENGTH = 320;

/**
 * The form an email is stored and compared in, so that every way of typing one address names one
 * account: without surrounding spaces, lower-cased (by JavaScript, so SQLite and PostgreSQL compare
 * alike), in Unicode Normalization Form C (RFC 6532 §3.1), as what looks like "josé" may arrive
 * composed (é) or decomposed (e and a combining accent), depending on the keyboard or the system;
 * and with an internationalized domain name in its Unicode form (UTS #46), as browsers send the
 * email fields of a form with the domain in its ASCII form: "bücher.example" as "xn--bcher-kva.example".
 * A domain that is no valid IDN is kept as it is.
 */
export function normalizeEmail(email: string): string {
  const folded = email.trim().toLowerCase().normalize('NFC');
  const at = folded.lastIndexOf('@');
  if (at < 0) return folded;
  const domain = domainToUnicode(folded.slice(at + 1));
  return domain === '' ? folded : `${folded.slice(0, at + 1)}${domain}`;
}

export interface UserRepository {
  /** Fails with `EmailTakenError` when the email, normalized (normalizeEmail), is registered already. */
  create(user: Omit<User, 'createdAt' | 'updatedAt'>, now: number): Promise<User>;
  findById(id: string): Promise<User | undefined>;
  /** The user whose email is `email` once both are normalized (normalizeEmail). */
  findByEmail(email: string): Promise<User | undefined>;
  /**
   * Every user, oldest first; or one page of them. With `filter.email`, only the user whose email
   * it is once both are normalized (normalizeEmail): none or one, read through the email's unique index.
   */
  list(page?: Page, filter?: { email?: string }): Promise<User[]>;
  /**
   * Writes the fields in `changes` and `now` as the update time; with `expected`, only while the
   * user's email is still `expected.email` (a change decided on the email read must not land on
   * another), and with `expected.passwordHash` also only while that is still the user's password
   * hash and the user is not disabled (a change the user asks for with the password just checked
   * must not land on an account an operator reset or disabled meanwhile, as delete's `confirmed`).
   * The user as stored then; undefined for an unknown user, or one that is not as expected. Fails
   * with `EmailTakenError`, storing nothing, when `changes.email`,
   * normalized, is another user's. A new email voids, in the same transaction, every link mailed to
   * the old one: email verifications sent to another address, every password reset link and every
   * email change link (asked for from the old one).
   */
  update(id: string, changes: UserChanges, now: number, expected?: { email: string; passwordHash?: string }): Promise<User | undefined>;
  /**
   * Disables the user as of `disabledAt` (null: enables them) with `now` as the update time. Disabling
   * deletes every link mailed to them (password resets, email verifications, email changes) in the same
   * transaction, as a password change deletes the resets: a link asked for before would otherwise
   * work again once the user is enabled, in the hands of whoever reads the mail. False for an unknown user.
   */
  setDisabled(id: string, disabledAt: number | null, now: number): Promise<boolean>;
  /**
   * Stores a new password hash and `now` as the update time; with `expected`, only while the stored
   * hash is still `expected`, so that a change decided on the password just checked does not replace
   * one an operator set meanwhile. False for an unknown user, or a hash no longer the one expected.
   * Every password reset and email change link of the user is deleted with the change, in its
   * transaction: a link asked for before the password was set no longer works. Every way a password is set but a link's
   * own redemption goes through here.
   */
  setPasswordHash(id: string, passwordHash: string, now: number, expected?: string): Promise<boolean>;
  /**
   * Replaces the hash `previous` with `next`, the same password hashed as passwords are hashed
   * today, if the user's hash is still `previous` (a password changed meanwhile stays). `updatedAt`
   * stays too: the user's information did not change (OpenID Connect's `updated_at`).
   */
  rehashPassword(id: string, previous: string, next: string): Promise<boolean>;
  /**
   * Deletes the user with their sessions, consents, grants, refresh tokens and codes, and the
   * applications they own (developer portal) with everything issued to those. Undefined for an
   * unknown user, and for one a concurrent deletion took: of two, exactly one deletes. With
   * `confirmed` (a deletion the user asked for, proving the password whose hash it holds), only
   * while the stored hash is still that one and the user is not disabled, decided on the row the
   * deletion claims: an operator who reset the password or disabled the account meanwhile (it may be
   * in someone else's hands) keeps it. Undefined then too.
   */
  delete(id: string, confirmed?: { passwordHash: string }): Promise<{ clientIds: string[]; sessions: EndedSession[] } | undefined>;
}

/** What an operator may change about a user (admin API). */
export type UserChanges = Partial<Pick<User, 'name' | 'email' | 'emailVerified'>>;

export class EmailTakenError extends Error {
  override name = 'EmailTakenError';
  readonly code = 'ERR_EMAIL_TAKEN';
}
