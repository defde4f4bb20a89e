import type { Storage } from '../storage/repositories.ts';
import type { AccountNotices } from './account-notices.ts';
import type { User } from '../storage/repositories/users.ts';
import type { ClientRegistry } from './clients.ts';
import { checkNewPassword, deleteUser, updateUser } from './users.ts';
import type { LoginService } from './login.ts';
import { hashPassword } from './passwords.ts';
import type { ActiveSession, SessionService, SignInOrigin } from './sessions.ts';
import { digestOf } from './tokens/opaque.ts';

export { MAX_NAME_LENGTH } from './users.ts';

/**
 * What people change about their own account from its page, signed in: their password, their
 * name, which of their browsers stay signed in, and whether it exists at all (Keycloak's account
 * console: personal info, signing in, device activity, delete account). The operator's
 * counterparts are in users.ts.
 */

export type PasswordChangeResult =
  /** `session`: the cookie value of the session the browser goes on in. */
  | { outcome: 'changed'; session: string; otherSessionsEnded: number }
  /** The current password is not right. */
  | { outcome: 'invalid' }
  /** `limit`: the budget that is spent, the account's or the client address's (LoginService). */
  | { outcome: 'throttled'; retryAfterSeconds: number; limit: 'account' | 'address' }
  | { outcome: 'busy' };

/**
 * Changes the password of the signed-in user, who proves the current one first. The new password
 * is refused as sign-up refuses it (ValidationError) before the current one is checked, so a typo
 * in the new one costs no attempt; the current one is checked as a sign-in is, throttled with it
 * (LoginService.confirmPassword). Then every session of the user ends, and the browser it was
 * changed in goes on in a new one: a password is changed because someone else may know it, and may
 * hold a session too, or have seen this one's id (OWASP's Session Management cheat sheet renews the
 * id). The new session's sign-in time is now: the person just proved their password. Grants given
 * to applications stay, as they do when an operator resets the password; the person withdraws those
 * on the same page. The account's address is told (AccountNotices): whoever changed it may not be
 * its owner, but someone who knew or guessed the password, or found a browser signed in.
 */
export async function changeOwnPassword(
  services: { storage: Storage; login: LoginService; sessions: SessionService; accountNotices: AccountNotices },
  signedIn: ActiveSession,
  passwords: { current: string; next: string },
  origin: SignInOrigin,
  now: number,
): Promise<PasswordChangeResult> {
  checkNewPassword(passwords.next);
  const check = await services.login.confirmPassword(signedIn.user, passwords.current, origin.address, now);
  if (check.outcome !== 'success') return check;
  // Disabled or deleted meanwhile, or the password reset by an operator since it was checked (the
  // one given is then no longer the current one): nothing to change.
  const checked = check.user.passwordHash;
  if (!(await services.storage.users.setPasswordHash(signedIn.user.id, await hashPassword(passwords.next), now, checked))) return { outcome: 'invalid' };
  const session = await services.sessions.start(signedIn.user.id, now, origin);
  // Deleted since the password was set: there is nobody left to go on signed in.
  if (session === undefined) return { outcome: 'invalid' };
  // The session it was changed in ends with the others, and is not counted among them.
  const ended = await services.sessions.endForUser(signedIn.user.id, digestOf(session));
  services.accountNotices.passwordChanged(check.user, { via: 'account_page' }, now);
  return { outcome: 'changed', session, otherSessionsEnded: Math.max(0, ended - 1) };
}

/**
 * Changes the signed-in user's name (OpenID Connect's `name` claim), validated as at sign-up:
 * trimmed, at most 200 characters, and may be left empty. `updatedAt` moves only when the name
 * changes (updateUser). The user as stored then, or undefined when they are gone.
 */
export function changeOwnName(services: { storage: Storage; accountNotices: AccountNotices }, user: User, name: string, now: number): Promise<User | undefined> {
  return updateUser(services, user.id, { name }, now, { via: 'account_page' });
}

/** Ends every session of the signed-in user but this one; how many ended. */
export function signOutOtherSessions(sessions: SessionService, signedIn: ActiveSession): Promise<number> {
  return sessions.endForUser(signedIn.user.id, signedIn.session.digest);
}

/**
 * - `ended`: the session is over, and its applications were told (Back-Channel Logout 1.0), as
 *   when it signs out itself;
 * - `current`: it is the session the request came in, which signs out with the ordinary sign-out
 *   (RP-Initiated Logout's page, which clears the cookie too);
 * - `unknown`: the user has no such live session (it ended meanwhile, it never was, it is another
 *   user's — told apart from none of these, so that the answer says nothing of other people's).
 */
export type SessionSignOutResult = 'ended' | 'current' | 'unknown';

/**
 * Ends one other session of the signed-in user, named by its sid, as Keycloak's account console
 * ends one by its user session id (which is its ID tokens' `sid` too). The sid is random and says
 * nothing of the cookie (SessionService.start), so a page may show it; the session must be the
 * user's own, which the deletion checks in the same statement.
 */
export async function signOutSession(sessions: SessionService, signedIn: ActiveSession, sid: string): Promise<SessionSignOutResult> {
  if (sid === signedIn.session.sid) return 'current';
  return (await sessions.endOne(signedIn.user.id, sid)) ? 'ended' : 'unknown';
}

export type AccountDeletionResult =
  /** `clientIds`: the applications the person had registered in the developer portal, deleted with them. */
  | { outcome: 'deleted'; clientIds: string[] }
  /** The password is not right, or the account changed since it was checked. */
  | { outcome: 'invalid' }
  | { outcome: 'throttled'; retryAfterSeconds: number; limit: 'account' | 'address' }
  | { outcome: 'busy' };

/**
 * Deletes the signed-in user's account, as an operator deletes one (deleteUser: sessions ended and
 * their applications told, grants and their tokens revoked, the applications they registered in the
 * developer portal deleted and forgotten by the client registry), once the person proves their
 * password again: a browser left signed in is not enough to erase someone (Auth0 and Keycloak ask
 * for the password anew). The password is checked as a sign-in is, and throttled with it
 * (LoginService.confirmPassword), so that this form is no way to guess it. The deletion goes through
 * only while the password is still the one checked and the account is not disabled (an operator may
 * have reset or disabled it meanwhile, because it is in someone else's hands). The account's
 * address is told, if it was verified (AccountNotices).
 */
export async function deleteOwnAccount(
  services: { storage: Storage; login: LoginService; sessions: SessionService; clients: ClientRegistry; accountNotices: AccountNotices },
  signedIn: ActiveSession,
  password: string,
  address: string,
  now: number,
): Promise<AccountDeletionResult> {
  const check = await services.login.confirmPassword(signedIn.user, password, address, now);
  if (check.outcome !== 'success') return check;
  const deleted = await deleteUser(services, signedIn.user.id, { passwordHash: check.user.passwordHash });
  if (!deleted) return { outcome: 'invalid' };
  services.accountNotices.accountDeleted(check.user, { via: 'account_page' }, now);
  return { outcome: 'deleted', clientIds: deleted.clientIds };
}
