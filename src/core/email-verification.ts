import type { Storage } from '../storage/repositories.ts';
import type { EmailVerification } from '../storage/repositories/email-verifications.ts';
import type { User } from '../storage/repositories/users.ts';
import { clientNetwork } from './addresses.ts';
import type { AuditTrail } from './audit.ts';
import { emailVerificationMessage } from './email-verification-mail.ts';
import { findLiveLink, MailDeliveries, mailboxHasRoom, sendLink, type EmailedLinkOptions, type IssuedLinks, type LinkKind } from './emailed-links.ts';
import type { Mailer } from './mail.ts';

export type ResendResult = { outcome: 'sent' } | { outcome: 'verified' } | { outcome: 'throttled'; retryAfterSeconds: number };
export type VerifyResult = { outcome: 'verified'; userId: string; email: string } | { outcome: 'invalid' } | { outcome: 'other_account' };
/** What a live link would verify: the address and the account it was sent for. */
export interface VerificationTarget {
  userId: string;
  email: string;
}

const VERIFICATION_LINK: LinkKind = { token: 'ev', path: '/email/verify', compose: emailVerificationMessage, auditKind: 'user.email_verification_sent' };

export interface EmailVerificationOptions extends EmailedLinkOptions {
  /** `signup.verifyEmail`: off, nothing is sent and the links are refused. */
  enabled: boolean;
}

/**
 * Email verification: a link by email that proves a person reads the address of their account,
 * setting OpenID Connect's `email_verified` (Core §5.1), as Keycloak's "Verify email" and Auth0's
 * verification email do. Sent at sign-up and again from the account page; needs a Mailer. The
 * link's token is opaque (gate_ev_, 256 bits), stored as its digest only, works once, for
 * `tokenTtlSeconds`, only until a newer one of its user's was mailed (a newer one whose mail fails
 * leaves it working) and only for the address it was sent to. Unverified users still sign in: the claim says the truth, and a client decides what it needs.
 * A link verifies only for a person signed in to its account: anyone can sign up with an address
 * that is not theirs, knowing the password, and the address's owner, following the link, must not
 * verify the account of someone else (account pre-hijacking, Sudhodanan & Paverd 2022). The owner
 * takes such an account back with a password reset instead, which strips what was made before.
 */
export class EmailVerificationService {
  #storage: Storage;
  #audit: AuditTrail;
  #mailer: Mailer | undefined;
  #options: EmailVerificationOptions;
  #deliveries: MailDeliveries;

  constructor(services: { storage: Storage; audit: AuditTrail }, mailer: Mailer | undefined, options: EmailVerificationOptions) {
    this.#storage = services.storage;
    this.#audit = services.audit;
    this.#mailer = options.enabled ? mailer : undefined;
    this.#options = options;
    this.#deliveries = new MailDeliveries(options.onError);
  }

  /** Whether links are sent: mail is configured and `signup.verifyEmail` is on. */
  get enabled(): boolean {
    return this.#mailer !== undefined;
  }

  /** How long a link works, in seconds. */
  get tokenTtlSeconds(): number {
    return this.#options.tokenTtlSeconds;
  }

  /** Sends `user` a link to their address, after returning (see settled()); nothing when off or already verified. */
  sendTo(user: User, now: number): void {
    const mailer = this.#mailer;
    if (!mailer || user.emailVerified) return;
    this.#deliveries.start(() => this.#deliver(mailer, user, now));
  }

  /**
   * Sends the signed-in `user` a new link, within the budgets of the account and of the client
   * `address` (a link fills someone's mailbox; an address that signs up many accounts does not get
   * to mail them all at will). Nothing is sent to an address verified already.
   */
  async resend(user: User, address: string, now: number): Promise<ResendResult> {
    if (!this.#mailer) throw new Error('email verification is off: no mail is configured, or signup.verifyEmail is false');
    if (user.emailVerified) return { outcome: 'verified' };
    // The address first: one that is over its budget takes nothing from the account's.
    const addressWait = await this.#options.limits.perAddress.take(`address:${clientNetwork(address)}`, now);
    if (addressWait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(addressWait) };
    const accountWait = await this.#options.limits.perAccount.take(`account:${user.id}`, now);
    if (accountWait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(accountWait) };
    this.sendTo(user, now);
    return { outcome: 'sent' };
  }

  /** Resolves once every link asked for so far has been sent, or has failed. */
  settled(): Promise<void> {
    return this.#deliveries.settled();
  }

  async #deliver(mailer: Mailer, user: User, now: number): Promise<void> {
    const { issuer, tokenTtlSeconds, queue, limits } = this.#options;
    if (!(await mailboxHasRoom(limits.perRecipient, user.email, now))) {
      this.#audit.record({ at: now, kind: VERIFICATION_LINK.auditKind, outcome: 'failure', clientId: null, userId: user.id, data: { reason: 'mailbox_over_budget' } });
      return;
    }
    // Stored only while the address is still the user's: one changed meanwhile gets no link.
    const verifications = this.#storage.emailVerifications;
    const links: IssuedLinks = {
      issue: (digest) => verifications.issue({ digest, userId: user.id, email: user.email, createdAt: now, expiresAt: now + tokenTtlSeconds }),
      markMailed: (digest) => verifications.markMailed(digest, now),
      discard: (digest) => verifications.discard(digest),
    };
    await sendLink({ mailer, queue, audit: this.#audit, issuer, ttlSeconds: tokenTtlSeconds }, VERIFICATION_LINK, user, links, now);
  }

  /**
   * Whether `token` is a link that can verify an address now: well formed, known, unused, unexpired,
   * of a user who is not disabled and whose address is still the one it was sent to.
   */
  async isLive(token: unknown, now: number): Promise<boolean> {
    return (await this.#live(token, now)) !== undefined;
  }

  /** The address and account the link `token` would verify, while it can (see isLive); reading it spends nothing. */
  async targetOf(token: unknown, now: number): Promise<VerificationTarget | undefined> {
    const link = await this.#live(token, now);
    return link && { userId: link.userId, email: link.email };
  }

  async #live(token: unknown, now: number): Promise<EmailVerification | undefined> {
    if (!this.#mailer) return undefined;
    const live = await findLiveLink(token, VERIFICATION_LINK, (digest) => this.#storage.emailVerifications.find(digest), this.#storage.users, now);
    return live !== undefined && live.user.email === live.link.email ? live.link : undefined;
  }

  /**
   * Spends the link `token` and marks the address it was sent to verified, in one transaction;
   * audited. Only for `signedInUserId`, the account of the person who confirms: for anyone else
   * (signed out, or signed in to another account) it changes nothing and the link keeps working.
   */
  async verify(token: unknown, signedInUserId: string | undefined, now: number): Promise<VerifyResult> {
    const link = await this.#live(token, now);
    if (!link) return { outcome: 'invalid' };
    if (signedInUserId === undefined || link.userId !== signedInUserId) return { outcome: 'other_account' };
    const userId = await this.#storage.emailVerifications.redeem(link.digest, now);
    if (userId === undefined) return { outcome: 'invalid' };
    this.#audit.record({ at: now, kind: 'user.email_verified', outcome: 'success', clientId: null, userId, data: { by: 'email' } });
    return { outcome: 'verified', userId, email: link.email };
  }
}
