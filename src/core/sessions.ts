import { randomBytes } from 'node:crypto';
import type { Storage } from '../storage/repositories.ts';
import type { EndedSession, Session } from '../storage/repositories/sessions.ts';
import type { User } from '../storage/repositories/users.ts';
import type { BackChannelLogout } from './backchannel-logout.ts';
import { createOpaqueToken, digestOf, isWellFormed } from './tokens/opaque.ts';

export interface ActiveSession {
  session: Session;
  user: User;
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
  async start(userId: string, now: number): Promise<string | undefined> {
    const id = createOpaqueToken('ss');
    const sid = randomBytes(16).toString('hex');
    return (await this.#storage.sessions.create({ digest: digestOf(id), sid, userId, authTime: now, createdAt: now, expiresAt: now + this.#ttlSeconds })) ? id : undefined;
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
  async signIn(userId: string, cookieValue: string | undefined, now: number): Promise<string | undefined> {
    const current = await this.resolve(cookieValue, now);
    if (current?.user.id === userId) {
      const id = createOpaqueToken('ss');
      if (await this.#storage.sessions.renew(current.session.digest, { digest: digestOf(id), authTime: now, expiresAt: now + this.#ttlSeconds })) return id;
    } else {
      await this.end(cookieValue);
    }
    return this.start(userId, now);
  }

  /** The live session behind a cookie value, with its user; undefined when absent, expired or the user is disabled. */
  async resolve(cookieValue: string | undefined, now: number): Promise<ActiveSession | undefined> {
    if (!isWellFormed(cookieValue, 'ss')) return undefined;
    const session = await this.#storage.sessions.find(digestOf(cookieValue));
    if (!session || session.expiresAt <= now) return undefined;
    const user = await this.#storage.users.findById(session.userId);
    if (!user || user.disabledAt !== null) return undefined;
    return { session, user };
  }

  async end(cookieValue: string | undefined): Promise<void> {
    if (!isWellFormed(cookieValue, 'ss')) return;
    const ended = await this.#storage.sessions.delete(digestOf(cookieValue));
    if (ended) this.#logout.notify([ended]);
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
