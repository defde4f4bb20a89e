import { randomUUID } from 'node:crypto';
import type { Storage } from '../storage/repositories.ts';
import { MAX_EMAIL_LENGTH, normalizeEmail, type User, type UserChanges } from '../storage/repositories/users.ts';
import type { AccountNotices, ChangeSource } from './account-notices.ts';
import type { ClientRegistry } from './clients.ts';
import { HIDDEN_IN_NAME } from './client-validation.ts';
import { hashPassword, MAX_PASSWORD_LENGTH, normalizedPassword } from './passwords.ts';
import type { SessionService } from './sessions.ts';
import { ValidationError } from './validation.ts';

export interface UserInput {
  email: string;
  password: string;
  name?: string;
}

// Deliberately loose: one @, something on each side, no spaces. The mailbox decides the rest. Nor
// control, invisible formatting (zero-width, bidirectional overrides, soft hyphens), private-use or
// unassigned characters (\p{C}): no address has them, and they make one email look like another.
// Nor the specials of RFC 5322 §3.2.3 that give an unquoted address another meaning in a mail
// header — , ; : < > ( ) [ ] " \ — so that 'ada,mallory@evil.example' or 'ada<mallory@evil.example'
// cannot be an account's address, whose mail a header would send to mallory@evil.example (the
// mailer refuses such a recipient; see isOneMailbox in src/mail/smtp.ts). Checked where an address
// is set, never at sign-in: an account made with one before still signs in.
const EMAIL = /^[^\s@\p{C},;:<>()[\]"\\]{1,64}@[^\s@\p{C},;:<>()[\]"\\]{1,255}$/u;

/** The longest name of a user, wherever it is set (admin API, command line, sign-up, account page). */
export const MAX_NAME_LENGTH = 200;

/** Throws a ValidationError when `input` cannot make a user, before anything costly (hashing the password) is done. */
export function checkNewUser(input: UserInput): void {
  checkEmail(input.email);
  checkNewPassword(input.password);
  if (input.name !== undefined) checkUserName(input.name);
}

/**
 * The name as stored: trimmed, and at most MAX_NAME_LENGTH characters (it may be empty), with no
 * control or invisible formatting character (HIDDEN_IN_NAME, as for an application's name) unless
 * it is `held`, the name the user has already. Anyone names themselves at sign-up, and the name is
 * printed as it is into the operator's terminal (`gatehouse user list`), where ESC [ … rewrites the
 * screen and a line break forges a row; a right-to-left override reverses what follows the name
 * wherever it is shown, and a zero-width space makes a look-alike of another person's name.
 */
function checkUserName(name: string, held?: string): string {
  const trimmed = name.trim();
  if (trimmed.length > MAX_NAME_LENGTH) throw new ValidationError('name', `the name is longer than ${MAX_NAME_LENGTH} characters`);
  const hidden = trimmed === held ? undefined : HIDDEN_IN_NAME.exec(trimmed)?.[0];
  if (hidden !== undefined) {
    const code = `U+${hidden.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    throw new ValidationError('name', `the name contains an invisible or control character (${code}), which could disguise it where it is shown`);
  }
  return trimmed;
}

/**
 * The email in the form it is stored in (normalizeEmail); a ValidationError when it is none. Nor
 * one holding a compatibility character, which Normalization Form KC would replace (RFC 8264's
 * IdentifierClass disallows them): full-width letters typed with an East Asian input method left in
 * full-width mode, mathematical letters, ligatures, a full-width ＠. "𝐚𝐝𝐚@example.com" or
 * "ＡＤＡ@example.com" would be a second account that looks like ada@example.com, whose mail no
 * mailbox receives, and "ada＠evil.example@example.com" reads as an address at evil.example.
 * Refused, not folded: sign-in compares the stored form, so accounts made with one before still
 * sign in. An internationalized domain's are folded already (UTS #46, in normalizeEmail). Nor one
 * whose domain has an empty label (RFC 5321 §4.1.2: labels joined by dots): "ada@example.com." is
 * delivered to ada@example.com's mailbox, as the trailing dot names the same domain, and would be a
 * second account for it. Nor one longer than MAX_EMAIL_LENGTH as typed, which is not normalized at all.
 */
export function checkEmail(value: unknown): string {
  const email = typeof value === 'string' && value.length <= MAX_EMAIL_LENGTH ? normalizeEmail(value) : '';
  const emptyLabel = email.slice(email.lastIndexOf('@') + 1).split('.').includes('');
  if (!email || !EMAIL.test(email) || email.normalize('NFKC') !== email || emptyLabel) throw new ValidationError('email', 'a valid email address is required');
  return email;
}

export async function createUser(storage: Storage, input: UserInput, now: number): Promise<User> {
  checkNewUser(input);
  const email = normalizeEmail(input.email);
  return storage.users.create(
    { id: randomUUID(), email, name: input.name?.trim() ?? '', passwordHash: await hashPassword(input.password), emailVerified: false, disabledAt: null },
    now,
  );
}

/** A change to a user: any of these; those left out keep their value. */
export interface UserPatch {
  name?: string;
  email?: string;
  emailVerified?: boolean;
}

/** A change to a user lost the race to concurrent changes of their email twice: the caller reads the user again and decides anew. */
export class UserChangedError extends Error {
  override name = 'UserChangedError';
  readonly code = 'ERR_USER_CHANGED';
}

/**
 * Changes a user's name, email or whether their email is verified, validated as on creation.
 * A new email is not verified unless the patch says it is, as Auth0's Management API has it: that
 * an operator (or the user) proved the old address says nothing of the new one. Undefined when
 * there is no such user; EmailTakenError when the email is another user's.
 *
 * Whether the email changes, and so whether it stays verified, is decided on the email read, and
 * written only while the user still has it (UserRepository.update): otherwise a concurrent change
 * came between, and the patch is decided again on the user as it is now, once; if it loses again,
 * UserChangedError. So a verification meant for one address never lands on another. A patch that
 * changes nothing writes nothing, and `updatedAt` stays (OpenID Connect's `updated_at`: when the
 * user's information last changed). A changed email is told to the old address, naming the new one
 * masked and `source` (AccountNotices): the owner of the old one learns that it lost the account.
 */
export async function updateUser(
  services: { storage: Storage; accountNotices: AccountNotices },
  userId: string,
  patch: UserPatch,
  now: number,
  source: ChangeSource,
): Promise<User | undefined> {
  const { storage } = services;
  const email = patch.email === undefined ? undefined : checkEmail(patch.email);
  for (let attempt = 1; ; attempt++) {
    const current = await storage.users.findById(userId);
    if (!current) return undefined;
    const name = patch.name === undefined ? undefined : checkUserName(patch.name, current.name);
    const newEmail = email !== undefined && email !== current.email;
    const emailVerified = patch.emailVerified ?? (newEmail ? false : current.emailVerified);
    const changes: UserChanges = {
      ...(name !== undefined && name !== current.name ? { name } : {}),
      ...(newEmail ? { email } : {}),
      ...(emailVerified !== current.emailVerified ? { emailVerified } : {}),
    };
    if (Object.keys(changes).length === 0) return current;
    const updated = await storage.users.update(userId, changes, now, { email: current.email });
    if (updated) {
      if (newEmail) services.accountNotices.emailChanged(userId, { from: current.email, to: updated.email }, source, now);
      return updated;
    }
    if (attempt === 2) throw new UserChangedError(`the user ${userId} changed meanwhile: read them and try again`);
  }
}

/** What ends a user's sessions, telling the applications answered through them (Back-Channel Logout). */
interface SessionServices {
  storage: Storage;
  sessions: SessionService;
}

/**
 * Signs a user out everywhere: every browser session ends, and the applications answered through
 * them are told (Back-Channel Logout). Their password and grants stay. How many sessions ended.
 */
export function signOutUser(services: SessionServices, userId: string): Promise<number> {
  return services.sessions.endForUser(userId);
}

/**
 * Sets a new password and signs the user out everywhere: a password is reset because it may be
 * known to someone else, who may hold a session too. Grants given to applications stay. The
 * account's address is told, naming `source` (AccountNotices). False when there is no such user.
 */
export async function resetUserPassword(
  services: SessionServices & { accountNotices: AccountNotices },
  userId: string,
  password: string,
  now: number,
  source: ChangeSource,
): Promise<boolean> {
  checkNewPassword(password);
  if (!(await services.storage.users.setPasswordHash(userId, await hashPassword(password), now))) return false;
  await signOutUser(services, userId);
  const user = await services.storage.users.findById(userId);
  if (user) services.accountNotices.passwordChanged(user, source, now);
  return true;
}

/**
 * Disables a user (or enables them again): they cannot sign in, their refresh tokens and access
 * tokens are refused, and so are the applications they registered in the developer portal (see
 * ClientRegistry), until they are enabled. Their sessions end, and the applications answered
 * through them are told (Back-Channel Logout): a session refused only while the user is disabled
 * would come back with them, after its applications were told it had ended. A user disabled
 * already keeps the time it happened.
 */
export async function setUserDisabled(services: { clients: ClientRegistry } & SessionServices, user: User, disabled: boolean, now: number): Promise<void> {
  await services.storage.users.setDisabled(user.id, disabled ? (user.disabledAt ?? now) : null, now);
  if (disabled) await signOutUser(services, user.id);
  for (const client of await services.storage.clients.listForOwner(user.id)) services.clients.invalidate(client.id);
}

/**
 * Deletes a user with their sessions, consents, grants and refresh tokens, and the applications they
 * registered in the developer portal with everything issued to those (UserRepository.delete); the
 * client registry forgets those applications at once, and the applications answered through the
 * sessions are told (Back-Channel Logout). Undefined when there is no such user; with `confirmed`
 * (the user deletes their own account, with the password whose hash it is), also when the password
 * changed or the user was disabled since it was checked.
 */
export async function deleteUser(
  services: { clients: ClientRegistry } & SessionServices,
  userId: string,
  confirmed?: { passwordHash: string },
): Promise<{ clientIds: string[] } | undefined> {
  const deleted = await services.storage.users.delete(userId, confirmed);
  if (!deleted) return undefined;
  for (const clientId of deleted.clientIds) services.clients.invalidate(clientId);
  services.sessions.ended(deleted.sessions);
  return { clientIds: deleted.clientIds };
}

/** Throws a ValidationError when `password` cannot be a user's password: as at sign-up, wherever a password is set. */
export function checkNewPassword(password: unknown): asserts password is string {
  // Characters are code points (NIST SP 800-63B §5.1.1.2), as the admin API's schema counts them: an
  // emoji is one character, not the two UTF-16 units of its .length. The shortest is counted in the
  // form the password is hashed in (normalizedPassword), which is what any way of typing it must
  // match: "éèêë" sent as letters and combining accents is eight code points, but four characters
  // that the four composed ones sign in with. The longest is counted in UTF-16 units as typed, as
  // sign-in counts it (LoginService), so that every password set can be signed in with; and first,
  // so that a longer one is never normalized (MAX_PASSWORD_LENGTH).
  if (typeof password === 'string' && password.length > MAX_PASSWORD_LENGTH) throw new ValidationError('password', `the password is longer than ${MAX_PASSWORD_LENGTH} characters`);
  if (typeof password !== 'string' || [...normalizedPassword(password)].length < 8) throw new ValidationError('password', 'the password must be at least 8 characters long');
}

/** A user as the admin API shows them (snake_case, times in ISO 8601; never the password hash). */
export function describeUser(u: User) {
  const iso = (epochSeconds: number | null) => (epochSeconds === null ? null : new Date(epochSeconds * 1000).toISOString());
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    email_verified: u.emailVerified,
    disabled: u.disabledAt !== null,
    disabled_at: iso(u.disabledAt),
    created_at: iso(u.createdAt),
    updated_at: iso(u.updatedAt),
  };
}
