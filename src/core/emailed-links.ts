import { normalizeEmail, type User, type UserRepository } from '../storage/repositories/users.ts';
import type { AuditTrail } from './audit.ts';
import type { Mailer, MailMessage } from './mail.ts';
import type { RequestLimiter } from './rate-limit/requests.ts';
import { createOpaqueToken, digestOf, isWellFormed } from './tokens/opaque.ts';

/**
 * What the single-use links Gatehouse sends by email (password reset, email verification, email
 * change) share: the link's address, how its lifetime is told in the mail, the mail sent after
 * answering, sending a link and audited whether it went, and which links still work.
 */

/** The link to `path` on `issuer` carrying `token`, as the mail shows it. */
export function linkWithToken(issuer: string, path: string, token: string): string {
  return `${issuer}${path}?token=${encodeURIComponent(token)}`;
}

/** A link's lifetime as the mail says it: "30 minutes", "24 hours". */
export function lifetimeText(seconds: number): string {
  if (seconds >= 7200 && seconds % 3600 === 0) return `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

/**
 * Mail sent after the answer that asked for it: a person waits for no mail server, and an answer
 * that names no account takes no longer when there is one (DESIGN §5). Failures go to `onError`,
 * for the log; `settled()` waits for what is still going (on shutdown, and in tests).
 */
export class MailDeliveries {
  #pending = new Set<Promise<void>>();
  #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  start(delivery: () => Promise<void>): void {
    const pending = delivery().catch(this.#onError);
    this.#pending.add(pending);
    void pending.finally(() => this.#pending.delete(pending));
  }

  /** Resolves once every delivery started so far has been sent, or has failed. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}

/** How many mails may wait for the mail server at once, of every kind: more are refused, not queued. */
export const MAX_MAILS_WAITING = 2000;
/** A full queue is logged at most this often, with how many mails it refused meanwhile. */
const FULL_QUEUE_LOG_INTERVAL_MS = 60_000;

/**
 * The mails handed to the mail server and not yet accepted or failed, of every kind of link, within a
 * bound. A mail server slow to answer, or down, would otherwise let them pile up in memory as fast as
 * people ask for links: the limits per account and per client address bound each asker, not all of
 * them together. A mail refused for room is reported to `onFull` at most once a minute, with how
 * many were refused since the last report.
 */
export class MailQueue {
  #waiting = 0;
  #capacity: number;
  #onFull: (refused: number) => void;
  #refused = 0;
  #reportedAt = -Infinity;

  constructor(capacity: number, onFull: (refused: number) => void) {
    this.#capacity = capacity;
    this.#onFull = onFull;
  }

  /** Takes a place for one mail; false, with nothing taken, when every place is taken. */
  enter(): boolean {
    if (this.#waiting < this.#capacity) {
      this.#waiting++;
      return true;
    }
    this.#refused++;
    const at = performance.now();
    if (at - this.#reportedAt >= FULL_QUEUE_LOG_INTERVAL_MS) {
      this.#reportedAt = at;
      this.#onFull(this.#refused);
      this.#refused = 0;
    }
    return false;
  }

  /** Gives back the place of a mail sent, or failed. */
  leave(): void {
    this.#waiting--;
  }
}

/** Whether one more mail may go to the mailbox `email` at `now` within `perRecipient` (taking it from the budget when it may). */
export async function mailboxHasRoom(perRecipient: RequestLimiter | undefined, email: string, now: number): Promise<boolean> {
  return perRecipient === undefined || (await perRecipient.take(`mailbox:${normalizeEmail(email)}`, now)) === 0;
}

/** The settings of a kind of link sent by email. */
export interface EmailedLinkOptions {
  issuer: string;
  tokenTtlSeconds: number;
  /**
   * `perRecipient`: the mails one mailbox may be sent, whoever asks for them; taken when a mail is
   * about to go, after answering, so that no answer tells whether it went.
   */
  limits: { perAccount: RequestLimiter; perAddress: RequestLimiter; perRecipient?: RequestLimiter };
  /** The mails waiting for the mail server, shared by every kind of link. */
  queue: MailQueue;
  /** Why a link could not be sent (the mail server refused it, or did not answer): for the log. */
  onError: (error: unknown) => void;
}

/** A kind of link sent by email: its token, the page it opens, its mail, and how its sending is audited. */
export interface LinkKind {
  token: 'pr' | 'ev' | 'ec';
  /** The page on the issuer that the link opens. */
  path: string;
  /** The mail, to the user's address (`to`) unless the kind sends it elsewhere (an email change: to the new address). */
  compose: (mail: { to: string; link: string; issuer: string; ttlSeconds: number }) => MailMessage;
  /** The audit event of each mail, a success or, with `reason: 'mail_not_sent'`, a failure. */
  auditKind: string;
}

/**
 * Where the links of a kind are stored (by their token's digest). `issue` stores a new one beside
 * the user's earlier ones (false when it may not be sent after all); once its mail is accepted,
 * `markMailed` deletes those; when it is not, `discard` deletes the new one.
 */
export interface IssuedLinks {
  issue(digest: string): Promise<boolean>;
  markMailed(digest: string): Promise<void>;
  discard(digest: string): Promise<void>;
}

/**
 * Mints a link of `kind` for `user`, stores it through `links` and mails it to the user's address;
 * audited either way (with the client `address` the link was asked from, where one asked), and a
 * mail not sent rethrown, for the log. The user's earlier links work until the mail server
 * accepted the new one's mail, and are deleted then; a mail the server refused, or
 * could not be given, deletes the new link and leaves the earlier ones working, as Keycloak does, so
 * that a person is never left without a link that works. With no room in `queue`, nothing is stored
 * nor sent: audited as a mail not sent, and logged by the queue. The token is in the mail only,
 * never stored nor logged.
 */
export async function sendLink(
  { mailer, queue, audit, issuer, ttlSeconds }: { mailer: Mailer; queue: MailQueue; audit: AuditTrail; issuer: string; ttlSeconds: number },
  kind: LinkKind,
  user: User,
  links: IssuedLinks,
  now: number,
  address?: string,
): Promise<void> {
  const askedFrom = address === undefined ? {} : { address };
  const notSent = () => audit.record({ at: now, kind: kind.auditKind, outcome: 'failure', clientId: null, userId: user.id, data: { reason: 'mail_not_sent', ...askedFrom } });
  if (!queue.enter()) return notSent();
  try {
    const token = createOpaqueToken(kind.token);
    const digest = digestOf(token);
    if (!(await links.issue(digest))) return;
    const link = linkWithToken(issuer, kind.path, token);
    try {
      await mailer.send(kind.compose({ to: user.email, link, issuer, ttlSeconds }));
    } catch (error) {
      notSent();
      // Were this to fail too, the link is in no mail: nobody can use it, and it is swept once expired.
      await links.discard(digest).catch(() => undefined);
      throw error;
    }
    audit.record({ at: now, kind: kind.auditKind, outcome: 'success', clientId: null, userId: user.id, data: askedFrom });
    await links.markMailed(digest);
  } finally {
    queue.leave();
  }
}

/**
 * The stored link `token` names, with its user, while it can still be used at `now`: well formed (a
 * forged one costs no read), found by `find`, unused, unexpired, and of a user who is not disabled.
 */
export async function findLiveLink<Link extends { userId: string; consumedAt: number | null; expiresAt: number }>(
  token: unknown,
  kind: Pick<LinkKind, 'token'>,
  find: (digest: string) => Promise<Link | undefined>,
  users: UserRepository,
  now: number,
): Promise<{ link: Link; user: User } | undefined> {
  if (!isWellFormed(token, kind.token)) return undefined;
  const link = await find(digestOf(token));
  if (!link || link.consumedAt !== null || link.expiresAt <= now) return undefined;
  const user = await users.findById(link.userId);
  return user !== undefined && user.disabledAt === null ? { link, user } : undefined;
}
