import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { Storage } from '../storage/repositories.ts';
import type { EndedSession, Session } from '../storage/repositories/sessions.ts';
import type { User } from '../storage/repositories/users.ts';
import type { BackChannelLogout } from './backchannel-logout.ts';
import { createOpaqueToken, digestOf, isWellFormed } from './tokens/opaque.ts';
import { deviceOf } from './user-agents.ts';

export interface ActiveSession {
  session: Session;
  user: User;
}

/** Where a session is signed in from: the client address and the User-Agent header of the request. */
export interface SignInOrigin {
  address: string;
  userAgent: string | undefined;
}

/**
 * How far apart a session's uses are recorded: resolving a session writes only when its recorded
 * last use is older, so a page view costs no write, as GitHub's and Google's lists are to the
 * minute or vaguer. The account page says "last used" to this precision.
 */
export const LAST_USE_PRECISION_SECONDS = 300;

/**
 * A session as the admin API and the command line show it to operators (snake_case, times in ISO
 * 8601): never its digest, which stands for the cookie.
 */
export function describeSession(session: Session) {
  const iso = (epochSeconds: number | null) => (epochSeconds === null ? null : new Date(epochSeconds * 1000).toISOString());
  return {
    sid: session.sid,
    created_at: iso(session.createdAt)!,
    auth_time: iso(session.authTime)!,
    last_used_at: iso(session.lastUsedAt),
    expires_at: iso(session.expiresAt)!,
    address: session.address,
    device: session.device,
  };
}

/** The most sessions the account page, the admin API and the command line list (newest first). */
export const LISTED_SESSIONS = 50;

/** An IPv6 address with a zone id is at most about this long; anything longer is no address. */
const MAX_ADDRESS_LENGTH = 64;

/**
 * The address to store with a session: `request.ip`, which behind a trusted proxy is read from
 * X-Forwarded-For, as the client wrote it. Only an IP address is kept; anything else (a socket
 * path, text a client put in the header) is stored as unknown.
 */
function storedAddress(address: string): string | null {
  return address.length <= MAX_ADDRESS_LENGTH && isIP(address) !== 0 ? address : null;
}

/**
 * Server-side browser sessions: the cookie holds an opaque id, the database its digest, so a
 * session ends everywhere the moment it is deleted (single sign-on across clients, one logout).
 * Every way a session ends goes through here, so that the clients it was answered for are told
 * (Back-Channel Logout 1.0), after it has ended.
 */
export class SessionService {
  #storage: Storage;
  #ttlSeconds: number;
  #logout: BackChannelLogout;

  constructor(storage: Storage, ttlSeconds: number, logout: BackChannelLogout) {
    this.#storage = storage;
    this.#ttlSeconds = ttlSeconds;
    this.#logout = logout;
  }

  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /**
   * Starts a session for a user who just proved their password; returns the cookie value. Its `sid`
   * (Back-Channel Logout 1.0 §2.1) is drawn on its own: ID tokens show it to clients, so it must
   * say nothing of the cookie. Undefined when the user was deleted or disabled since the password
   * was checked (an operator, another instance): there is no one left to sign in.
   */
  async start(userId: string, now: number, origin: SignInOrigin): Promise<string | undefined> {
    const id = createOpaqueToken('ss');
    const sid = randomBytes(16).toString('hex');
    const session = { digest: digestOf(id), sid, userId, authTime: now, createdAt: now, expiresAt: now + this.#ttlSeconds, ...this.#described(origin), lastUsedAt: now };
    return (await this.#storage.sessions.create(session)) ? id : undefined;
  }

  #described(origin: SignInOrigin): { address: string | null; device: string | null } {
    return { address: storedAddress(origin.address), device: deviceOf(origin.userAgent) ?? null };
  }

  /**
   * Signs `userId` in, in a browser whose session cookie is `cookieValue`; returns the new cookie
   * value. The cookie is always new, so an id someone else set or saw is worth nothing after (no
   * session fixation, OWASP's Session Management cheat sheet). A session of that same person goes
   * on under it (SessionRepository.renew), signed in now: a sign-in again that an application asked
   * for (`prompt=login`, `max_age`) signs the person out of no other application, as Keycloak keeps
   * the user session of the same user. Any other session of the browser — another person's — ends.
   * Undefined when the user no longer exists or is disabled (start).
   */
  async signIn(userId: string, cookieValue: string | undefined, now: number, origin: SignInOrigin): Promise<string | undefined> {
    const current = await this.resolve(cookieValue, now);
    if (current?.user.id === userId) {
      const id = createOpaqueToken('ss');
      if (await this.#storage.sessions.renew(current.session.digest, { digest: digestOf(id), authTime: now, expiresAt: now + this.#ttlSeconds, ...this.#described(origin) })) return id;
    } else {
      await this.end(cookieValue);
    }
    return this.start(userId, now, origin);
  }

  /** The live session behind a cookie value, with its user; undefined when absent, expired or the user is disabled. */
  async resolve(cookieValue: string | undefined, now: number): Promise<ActiveSession | undefined> {
    if (!isWellFormed(cookieValue, 'ss')) return undefined;
    const session = await this.#storage.sessions.find(digestOf(cookieValue));
    if (!session || session.expiresAt <= now) return undefined;
    const user = await this.#storage.users.findById(session.userId);
    if (!user || user.disabledAt !== null) return undefined;
    // The row was just read, so a write is made only once its last use is stale (no write per
    // request); instances that read it stale at once write it once between them (recordUse).
    if (session.lastUsedAt === null || session.lastUsedAt <= now - LAST_USE_PRECISION_SECONDS) {
      await this.#storage.sessions.recordUse(session.digest, now, now - LAST_USE_PRECISION_SECONDS + 1);
      return { session: { ...session, lastUsedAt: now }, user };
    }
    return { session, user };
  }

  /** The user's live sessions, newest first, at most LISTED_SESSIONS. */
  listForUser(userId: string, now: number): Promise<Session[]> {
    return this.#storage.sessions.listForUser(userId, now, LISTED_SESSIONS);
  }

  async end(cookieValue: string | undefined): Promise<void> {
    if (!isWellFormed(cookieValue, 'ss')) return;
    const ended = await this.#storage.sessions.delete(digestOf(cookieValue));
    if (ended) this.#logout.notify([ended]);
  }

  /**
   * Ends the session of `userId` whose sid is `sid` (the account page's "Sign out" of one browser),
   * and tells its clients as a sign-out does; false, ending nothing, when that user has no such
   * session (ended already, or another user's).
   */
  async endOne(userId: string, sid: string): Promise<boolean> {
    const ended = await this.#storage.sessions.deleteBySid(userId, sid);
    if (ended) this.#logout.notify([ended]);
    return ended !== undefined;
  }

  /** Ends every session of a user, or every one but the session whose digest is `exceptDigest`; how many ended. */
  async endForUser(userId: string, exceptDigest?: string): Promise<number> {
    const ended = await this.#storage.sessions.deleteForUser(userId, exceptDigest);
    this.#logout.notify(ended);
    return ended.length;
  }

  /** Tells the clients of sessions that ended otherwise (with their user's deletion). */
  ended(sessions: readonly EndedSession[]): void {
    this.#logout.notify(sessions);
  }
}
