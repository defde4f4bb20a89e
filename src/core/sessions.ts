import type { Session, Storage, User } from '../storage/repositories.ts';
import { createOpaqueToken, digestOf, isWellFormed } from './tokens/opaque.ts';

export interface ActiveSession {
  session: Session;
  user: User;
}

/**
 * Server-side browser sessions: the cookie holds an opaque id, the database its digest, so a
 * session ends everywhere the moment it is deleted (single sign-on across clients, one logout).
 */
export class SessionService {
  #storage: Storage;
  #ttlSeconds: number;

  constructor(storage: Storage, ttlSeconds: number) {
    this.#storage = storage;
    this.#ttlSeconds = ttlSeconds;
  }

  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /** Starts a session for a user who just proved their password; returns the cookie value. */
  async start(userId: string, now: number): Promise<string> {
    const id = createOpaqueToken('ss');
    await this.#storage.sessions.create({ digest: digestOf(id), userId, authTime: now, createdAt: now, expiresAt: now + this.#ttlSeconds });
    return id;
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
    if (isWellFormed(cookieValue, 'ss')) await this.#storage.sessions.delete(digestOf(cookieValue));
  }
}
