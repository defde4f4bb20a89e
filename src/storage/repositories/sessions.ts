import type { AuthorizationCode } from './codes.ts';

export interface Session {
  /** SHA-256 of the session id in the cookie. */
  digest: string;
  /**
   * The OpenID Connect session id (`sid`, Back-Channel Logout 1.0 §2.1): random and not secret,
   * nothing to do with the cookie. Null only for a session an instance older than it started.
   */
  sid: string | null;
  userId: string;
  authTime: number;
  createdAt: number;
  /**
   * Set when the session starts, and only ever moved later (a sign-in again renews it): the codes
   * issued through it expire by then at the latest.
   */
  expiresAt: number;
  /**
   * What the account page shows of it: the client address it signed in from, and a short name of
   * its browser and system (deviceOf, never the User-Agent header itself); null when not known (a
   * session an instance older than them started).
   */
  address: string | null;
  device: string | null;
  /** When it was last used, recorded a few minutes apart at most (recordUse); null as above. */
  lastUsedAt: number | null;
}

/** A session that ended, with the clients the authorization endpoint answered through it. */
export interface EndedSession {
  sid: string | null;
  userId: string;
  clientIds: string[];
}

export interface SessionRepository {
  /**
   * Stores the session; false, storing nothing, when its user no longer exists (deleted since the
   * caller read them) or is disabled at that moment (checked in the same statement as the insert).
   */
  create(session: Session): Promise<boolean>;
  find(digest: string): Promise<Session | undefined>;
  /**
   * Records that the authorization endpoint answers `clientId` through the session, once however
   * often, and stores `code`, issued through it, in the same transaction — only while the session
   * exists: false, with nothing stored, once it has ended. Ending the session waits for this, so a
   * code stored is voided with it and its client told (Back-Channel Logout 1.0 §2.5); the record
   * goes with the session.
   */
  addClient(digest: string, clientId: string, code?: AuthorizationCode): Promise<boolean>;
  /**
   * Moves a live session to a new cookie as its person signs in again: the session `digest` names
   * is stored under `renewal.digest`, with the new sign-in time and end, and keeps its sid, its
   * start and the clients it was answered for (nobody is told of a sign-out, and the codes issued
   * through it stay good). The session as renewed, or undefined, with nothing stored, when it has
   * ended meanwhile.
   */
  renew(digest: string, renewal: { digest: string; authTime: number; expiresAt: number; address: string | null; device: string | null }): Promise<Session | undefined>;
  /**
   * Records that the session was used `at`, only when its last recorded use is older than
   * `staleBefore` (or unknown): of the instances that read it stale at once, one writes. Nothing
   * when it has ended.
   */
  recordUse(digest: string, at: number, staleBefore: number): Promise<void>;
  /** The user's sessions that have not expired at `now`, newest first, at most `limit`. */
  listForUser(userId: string, now: number, limit: number): Promise<Session[]>;
  /** Ends the session; what ended, or undefined when there was none (ended already, or never). */
  delete(digest: string): Promise<EndedSession | undefined>;
  /**
   * Ends the session of `userId` whose sid is `sid`, as delete does; undefined, ending nothing, when
   * that user has none (ended already, never, or another user's).
   */
  deleteBySid(userId: string, sid: string): Promise<EndedSession | undefined>;
  /**
   * Ends every session of a user (password reset), or every one but the session whose digest is
   * `exceptDigest` (the browser in which the user changed their password, or signed out everywhere
   * else). The sessions it ended.
   */
  deleteForUser(userId: string, exceptDigest?: string): Promise<EndedSession[]>;
}
