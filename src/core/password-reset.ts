import type { Storage } from '../storage/repositories.ts';
import { normalizeEmail } from '../storage/repositories/users.ts';
import { clientNetwork } from './addresses.ts';
import { checkNewPassword } from './users.ts';
import type { AccountNotices } from './account-notices.ts';
import type { AuditTrail } from './audit.ts';
import type { ClientRegistry } from './clients.ts';
import { findLiveLink, MailDeliveries, sendLink, type EmailedLinkOptions, type IssuedLinks, type LinkKind } from './emailed-links.ts';
import type { Mailer } from './mail.ts';
import { passwordResetMessage } from './password-reset-mail.ts';
import { hashPassword } from './passwords.ts';
import type { SessionService } from './sessions.ts';
import { digestOf } from './tokens/opaque.ts';

export type ResetRequestResult = { outcome: 'accepted' } | { outcome: 'throttled'; retryAfterSeconds: number };
/**
 * `grantsRevoked`: how many grants the account gave that the reset revoked; `applicationsSuspended`:
 * how many of the account's applications lost their credentials (both none when the address was
 * verified before it).
 */
export type ResetResult = { outcome: 'reset'; userId: string; sessionsEnded: number; grantsRevoked: number; applicationsSuspended: number } | { outcome: 'invalid' };

const RESET_LINK: LinkKind = { token: 'pr', path: '/password/reset', compose: passwordResetMessage, auditKind: 'user.password_reset_requested' };

export type PasswordResetOptions = EmailedLinkOptions;

/**
 * "Forgot your password?": a link by email that lets a person set a new password (OWASP's Forgot
 * Password cheat sheet). Off without a Mailer. The link's token is opaque (gate_pr_, 256 bits),
 * stored as its digest only, works once, for `tokenTtlSeconds`, and only until a newer one of its
 * user's was mailed (a newer one whose mail fails leaves it working). Resetting ends every session of the user (the applications signed in through them are
 * told), as an operator's reset does. Grants given to applications stay, unless the account's
 * address was not verified: then the account may have been made by someone who does not own the
 * address, waiting for its owner to take it back this way (pre-account takeover), and what it
 * authorized goes with that person's sessions — every consent and grant, as if withdrawn on the
 * account page — and so do the credentials of the applications the account owns (developer portal):
 * client secrets, API keys and public keys, with every grant given to those applications. The
 * applications stay, for the owner to review and give new credentials. The link was sent to the
 * address, so the address is then verified.
 */
export class PasswordResetService {
  #storage: Storage;
  #sessions: SessionService;
  #clients: ClientRegistry;
  #audit: AuditTrail;
  #notices: AccountNotices;
  #mailer: Mailer | undefined;
  #options: PasswordResetOptions;
  #deliveries: MailDeliveries;

  constructor(
    services: { storage: Storage; sessions: SessionService; clients: ClientRegistry; audit: AuditTrail; accountNotices: AccountNotices },
    mailer: Mailer | undefined,
    options: PasswordResetOptions,
  ) {
    this.#storage = services.storage;
    this.#notices = services.accountNotices;
    this.#sessions = services.sessions;
    this.#clients = services.clients;
    this.#audit = services.audit;
    this.#mailer = mailer;
    this.#options = options;
    this.#deliveries = new MailDeliveries(options.onError);
  }

  /** Whether links can be sent: mail is configured. */
  get enabled(): boolean {
    return this.#mailer !== undefined;
  }

  /** How long a link works, in seconds. */
  get tokenTtlSeconds(): number {
    return this.#options.tokenTtlSeconds;
  }

  /**
   * Asks for a link for the account of `email`, from `address`. The answer never says whether there
   * is such an account, nor takes longer when there is (DESIGN §5): the budgets are those of the
   * address and of the email as typed, and the account is looked up, the link stored and the mail
   * sent only after answering (see settled()). A disabled account gets no link.
   */
  async request(email: string, address: string, now: number): Promise<ResetRequestResult> {
    if (!this.#mailer) throw new Error('password reset by email is off: no mail is configured');
    // The address first: one that is over its budget takes nothing from the account's, so that it
    // cannot keep the account's owner from asking.
    const addressWait = await this.#options.limits.perAddress.take(`address:${clientNetwork(address)}`, now);
    if (addressWait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(addressWait) };
    const normalized = normalizeEmail(email);
    const accountWait = await this.#options.limits.perAccount.take(`account:${normalized}`, now);
    if (accountWait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(accountWait) };
    const mailer = this.#mailer;
    this.#deliveries.start(() => this.#deliver(mailer, normalized, address, now));
    return { outcome: 'accepted' };
  }

  /** Resolves once every link asked for so far has been sent, or has failed. */
  settled(): Promise<void> {
    return this.#deliveries.settled();
  }

  async #deliver(mailer: Mailer, email: string, address: string, now: number): Promise<void> {
    const user = await this.#storage.users.findByEmail(email);
    if (!user || user.disabledAt !== null) return;
    const { issuer, tokenTtlSeconds, queue } = this.#options;
    const resets = this.#storage.passwordResets;
    const links: IssuedLinks = {
      // Only while the account still has the address the mail goes to (the one it was found by):
      // a change of it meanwhile deletes the links of the old one, and must not be followed by one.
      issue: (digest) => resets.issue({ digest, userId: user.id, email: user.email, createdAt: now, expiresAt: now + tokenTtlSeconds }),
      markMailed: (digest) => resets.markMailed(digest, now),
      discard: (digest) => resets.discard(digest),
    };
    await sendLink({ mailer, queue, audit: this.#audit, issuer, ttlSeconds: tokenTtlSeconds }, RESET_LINK, user, links, now, address);
  }

  /** Whether `token` is a link that can reset a password now: well formed, known, unused, unexpired, of a user who is not disabled. */
  async isLive(token: unknown, now: number): Promise<boolean> {
    if (!this.#mailer) return false;
    return (await findLiveLink(token, RESET_LINK, (digest) => this.#storage.passwordResets.find(digest), this.#storage.users, now)) !== undefined;
  }

  /**
   * What the new-password form of the link `token` says: the address of its account, and whether a
   * reset keeps the grants the account gave applications (its address was verified before, see
   * reset). Undefined when the link cannot reset a password now (isLive).
   */
  async linkAccount(token: unknown, now: number): Promise<{ email: string; keepsGrants: boolean } | undefined> {
    if (!this.#mailer) return undefined;
    const link = await findLiveLink(token, RESET_LINK, (digest) => this.#storage.passwordResets.find(digest), this.#storage.users, now);
    return link && { email: link.user.email, keepsGrants: link.user.emailVerified };
  }

  /** Throws a ValidationError when `password` cannot be a user's password (as at sign-up). */
  checkPassword(password: string): void {
    checkNewPassword(password);
  }

  /**
   * Sets `password` (checked as sign-up checks it: ValidationError) with the link `token`: the link
   * is spent and the password set in one transaction, so of two submissions one wins — with an
   * address not verified before, the same transaction verifies it, withdraws what the account
   * authorized and takes back the credentials of its applications, each consent withdrawn, grant
   * revoked and application suspended audited; then every session of the user ends, and the
   * account's address is told that its password changed (AccountNotices).
   */
  async reset(token: unknown, password: string, now: number): Promise<ResetResult> {
    checkNewPassword(password);
    // Checked before the password is hashed: a link that cannot work costs no Argon2id.
    if (!(await this.isLive(token, now))) return { outcome: 'invalid' };
    const redeemed = await this.#storage.passwordResets.redeem(digestOf(token as string), await hashPassword(password), now);
    if (redeemed === undefined) return { outcome: 'invalid' };
    const { userId, withdrawn, applications } = redeemed;
    if (!redeemed.emailWasVerified) {
      this.#audit.record({ at: now, kind: 'user.email_verified', outcome: 'success', clientId: null, userId, data: { by: 'password_reset' } });
    }
    for (const clientId of withdrawn.consents) {
      this.#audit.record({ at: now, kind: 'consent.withdrawn', outcome: 'success', clientId, userId, data: { reason: 'password_reset' } });
    }
    for (const grant of withdrawn.grants) {
      this.#audit.record({ at: now, kind: 'grant.revoked', outcome: 'success', clientId: grant.clientId, userId, data: { grant_id: grant.id, reason: 'password_reset' } });
    }
    for (const application of applications) {
      // At once on this instance; the others' client caches follow within clients.cacheTtlSeconds.
      this.#clients.invalidate(application.clientId);
      this.#audit.record({
        at: now,
        kind: 'client.credentials_revoked',
        outcome: 'success',
        clientId: application.clientId,
        userId,
        data: { reason: 'password_reset', secrets_deleted: application.secretsDeleted, api_keys_revoked: application.apiKeysRevoked.length, keys_removed: application.keysRemoved },
      });
      for (const grant of application.grants) {
        this.#audit.record({ at: now, kind: 'grant.revoked', outcome: 'success', clientId: application.clientId, userId: grant.userId, data: { grant_id: grant.id, reason: 'password_reset' } });
      }
    }
    const sessionsEnded = await this.#sessions.endForUser(userId);
    const user = await this.#storage.users.findById(userId);
    if (user) this.#notices.passwordChanged(user, { via: 'reset_link' }, now);
    return { outcome: 'reset', userId, sessionsEnded, grantsRevoked: withdrawn.grants.length, applicationsSuspended: applications.length };
  }
}
