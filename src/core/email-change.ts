import type { Storage } from '../storage/repositories.ts';
import type { EmailChange } from '../storage/repositories/email-changes.ts';
import { EmailTakenError, type User } from '../storage/repositories/users.ts';
import type { AccountNotices } from './account-notices.ts';
import { clientNetwork } from './addresses.ts';
import type { AuditTrail } from './audit.ts';
import { emailChangeMessage, emailInUseMessage } from './email-change-mail.ts';
import { findLiveLink, MailDeliveries, mailboxHasRoom, sendLink, type EmailedLinkOptions, type IssuedLinks, type LinkKind } from './emailed-links.ts';
import type { LoginService } from './login.ts';
import type { Mailer } from './mail.ts';
import { checkEmail } from './users.ts';

export type EmailChangeRequest =
  /** With mail: a link went to the new address, or a notice to the account that has it already (the page says the same of both). */
  | { outcome: 'sent'; email: string }
  /** Without mail: the address changed at once, unverified. */
  | { outcome: 'changed'; email: string }
  /** The address is the account's already: nothing to do, and no attempt spent. */
  | { outcome: 'same' }
  /** Without mail only: another account has the address (with mail, 'sent'). */
  | { outcome: 'taken' }
  /** The current password is not right. */
  | { outcome: 'invalid' }
  /** `limit`: the budget that is spent (the password's, as LoginService counts it, or the links'). */
  | { outcome: 'throttled'; retryAfterSeconds: number; limit: 'account' | 'address' | 'links' }
  | { outcome: 'busy' };

export type EmailChangeConfirmation = { outcome: 'changed'; from: string; to: string } | { outcome: 'invalid' } | { outcome: 'other_account' } | { outcome: 'taken' };

/** What a live link would do: to which address it moves which account. */
export interface EmailChangeTarget {
  userId: string;
  from: string;
  to: string;
}

/** The page that email change links open. */
export const EMAIL_CHANGE_PATH = '/email/change';

/** An email change link, but for its mail, which names the addresses of each request. */
const CHANGE_LINK = { token: 'ec', path: EMAIL_CHANGE_PATH, auditKind: 'user.email_change_sent' } as const;

/**
 * A signed-in person changes their account's address, as Keycloak's "update email" and Auth0's
 * change-email flow do: they prove their current password first (checked and throttled as on the
 * password page, LoginService.confirmPassword), then, with mail, a link goes to the new address and
 * the address changes only when it is followed and confirmed by the same account: the link names the
 * account and the new address, works once, for `tokenTtlSeconds` (emailVerification's: it verifies
 * an address), only until a newer one is mailed, and only while the account still has the address it
 * was asked from; a password set meanwhile voids it (UserRepository.setPasswordHash). The new
 * address is then verified (the link was read there), and the old one is told (AccountNotices),
 * with no link: that mail may be read by whoever lost the account, or took it.
 *
 * Without mail nothing can be verified, so the address changes at once, unverified, as sign-up
 * without mail makes an account with an unverified address; and another account's address is an
 * error on the form, as sign-up's is.
 *
 * Sessions elsewhere stay, as Keycloak keeps them: the person proved the password in this one, and
 * a new address is not a sign that someone else holds a session, as a changed password is; a
 * person who fears one has "Sign out everywhere else" beside it. Grants stay too; applications
 * see the new address in the next ID token and at userinfo.
 */
export class EmailChangeService {
  #storage: Storage;
  #audit: AuditTrail;
  #login: LoginService;
  #notices: AccountNotices;
  #mailer: Mailer | undefined;
  #options: EmailedLinkOptions;
  #deliveries: MailDeliveries;

  constructor(services: { storage: Storage; audit: AuditTrail; login: LoginService; accountNotices: AccountNotices }, mailer: Mailer | undefined, options: EmailedLinkOptions) {
    this.#storage = services.storage;
    this.#audit = services.audit;
    this.#login = services.login;
    this.#notices = services.accountNotices;
    this.#mailer = mailer;
    this.#options = options;
    this.#deliveries = new MailDeliveries(options.onError);
  }

  /** Whether a change waits for a link to the new address: mail is configured. */
  get byLink(): boolean {
    return this.#mailer !== undefined;
  }

  /** How long a link works, in seconds. */
  get tokenTtlSeconds(): number {
    return this.#options.tokenTtlSeconds;
  }

  /** Resolves once every mail asked for so far has been sent, or has failed. */
  settled(): Promise<void> {
    return this.#deliveries.settled();
  }

  /**
   * The signed-in `user` asks to use `newEmail`, proving `password`. The address is refused as
   * sign-up refuses it (ValidationError) before the password is tried: a typo costs no attempt.
   * With mail, the links' budgets of the account and the client `address` (emailVerification's,
   * shared with the links that verify an address) are taken only once the password is right.
   */
  async request(user: User, input: { newEmail: unknown; password: string }, address: string, now: number): Promise<EmailChangeRequest> {
    const email = checkEmail(input.newEmail);
    if (email === user.email) return { outcome: 'same' };
    const check = await this.#login.confirmPassword(user, input.password, address, now);
    if (check.outcome === 'invalid') return { outcome: 'invalid' };
    if (check.outcome !== 'success') return check;
    const current = check.user;

    const mailer = this.#mailer;
    if (!mailer) {
      try {
        // Only while the address and the password are still the ones confirmed: an operator who
        // reset the password meanwhile (the account is in someone else's hands) has the last word.
        const updated = await this.#storage.users.update(current.id, { email, emailVerified: false }, now, { email: current.email, passwordHash: current.passwordHash });
        if (!updated) return { outcome: 'invalid' };
        this.#audit.record({ at: now, kind: 'user.email_changed', outcome: 'success', clientId: null, userId: current.id, data: { by: 'password', address } });
        return { outcome: 'changed', email: updated.email };
      } catch (error) {
        if (error instanceof EmailTakenError) return { outcome: 'taken' };
        throw error;
      }
    }

    // The address first: one that is over its budget takes nothing from the account's.
    const { perAddress, perAccount } = this.#options.limits;
    const wait = (await perAddress.take(`address:${clientNetwork(address)}`, now)) || (await perAccount.take(`account:${current.id}`, now));
    if (wait > 0) return { outcome: 'throttled', retryAfterSeconds: Math.ceil(wait), limit: 'links' };

    const holder = await this.#storage.users.findByEmail(email);
    // The address is another account's. The page says "we sent a link" all the same: what it said
    // otherwise would tell anyone with an account which addresses have one, which sign-in and the
    // reset page never tell. The address's owner is sent a notice, with no link (OWASP's
    // Authentication cheat sheet does so for a sign-up with a taken address): they may be the one
    // asking, with two accounts, and would wait for a link that never comes. Auth0 and Keycloak
    // refuse such a change on the spot, which tells; the notice costs what a link costs, and is
    // taken from the same budgets, and from that of the mailbox (mailboxHasRoom), so it fills nobody's mailbox.
    if (holder !== undefined) {
      this.#audit.record({ at: now, kind: 'user.email_change_requested', outcome: 'failure', clientId: null, userId: current.id, data: { reason: 'email_in_use', address } });
      this.#deliveries.start(() => this.#sendInUseNotice(mailer, email, holder.id, now));
      return { outcome: 'sent', email };
    }
    this.#audit.record({ at: now, kind: 'user.email_change_requested', outcome: 'success', clientId: null, userId: current.id, data: { address } });
    this.#deliveries.start(() => this.#sendLink(mailer, current, email, now, address));
    return { outcome: 'sent', email };
  }

  async #sendLink(mailer: Mailer, user: User, to: string, now: number, address: string): Promise<void> {
    const { issuer, tokenTtlSeconds, queue, limits } = this.#options;
    if (!(await mailboxHasRoom(limits.perRecipient, to, now))) {
      this.#audit.record({ at: now, kind: CHANGE_LINK.auditKind, outcome: 'failure', clientId: null, userId: user.id, data: { reason: 'mailbox_over_budget', address } });
      return;
    }
    const changes = this.#storage.emailChanges;
    const links: IssuedLinks = {
      // Only while the password is still the one the change was asked with: a new one (by an
      // operator, or a reset by link) voids the links asked for with the old, and this one with them.
      issue: (digest) => changes.issue({ digest, userId: user.id, from: user.email, to, createdAt: now, expiresAt: now + tokenTtlSeconds }, { passwordHash: user.passwordHash }),
      markMailed: (digest) => changes.markMailed(digest, now),
      discard: (digest) => changes.discard(digest),
    };
    const kind: LinkKind = { ...CHANGE_LINK, compose: ({ link, ttlSeconds }) => emailChangeMessage({ to, from: user.email, link, issuer, ttlSeconds }) };
    await sendLink({ mailer, queue, audit: this.#audit, issuer, ttlSeconds: tokenTtlSeconds }, kind, user, links, now, address);
  }

  /** The notice to the account `holderId` that holds the address `to` already; audited under that account. */
  async #sendInUseNotice(mailer: Mailer, to: string, holderId: string, now: number): Promise<void> {
    const audited = (outcome: 'success' | 'failure') =>
      this.#audit.record({ at: now, kind: 'user.change_notified', outcome, clientId: null, userId: holderId, data: outcome === 'success' ? { change: 'email_in_use' } : { change: 'email_in_use', reason: 'mail_not_sent' } });
    const { queue, issuer, limits } = this.#options;
    if (!(await mailboxHasRoom(limits.perRecipient, to, now))) {
      this.#audit.record({ at: now, kind: 'user.change_notified', outcome: 'failure', clientId: null, userId: holderId, data: { change: 'email_in_use', reason: 'mailbox_over_budget' } });
      return;
    }
    if (!queue.enter()) return audited('failure');
    try {
      await mailer.send(emailInUseMessage({ to, issuer }));
    } catch (error) {
      audited('failure');
      throw error;
    } finally {
      queue.leave();
    }
    audited('success');
  }

  /** The account and addresses the link `token` would change, while it can; reading it spends nothing. */
  async targetOf(token: unknown, now: number): Promise<EmailChangeTarget | undefined> {
    const link = await this.#live(token, now);
    return link && { userId: link.userId, from: link.from, to: link.to };
  }

  async #live(token: unknown, now: number): Promise<EmailChange | undefined> {
    if (!this.#mailer) return undefined;
    const live = await findLiveLink(token, CHANGE_LINK, (digest) => this.#storage.emailChanges.find(digest), this.#storage.users, now);
    return live !== undefined && live.user.email === live.link.from ? live.link : undefined;
  }

  /**
   * Spends the link `token` and gives its account the new address, verified, in one transaction;
   * audited (`user.email_changed`, with the client `address`), and the old address told. Only for
   * `signedInUserId`, the account that asked: for anyone else (signed out, or signed in to another
   * account) it changes nothing and the link keeps working, as a verification link does. 'taken'
   * when another account has taken the address since: nothing changes, and the link stays unspent.
   */
  async confirm(token: unknown, signedInUserId: string | undefined, address: string, now: number): Promise<EmailChangeConfirmation> {
    const link = await this.#live(token, now);
    if (!link) return { outcome: 'invalid' };
    if (signedInUserId === undefined || link.userId !== signedInUserId) return { outcome: 'other_account' };
    const changed = await this.#storage.emailChanges.redeem(link.digest, now);
    if (changed === 'taken') return { outcome: 'taken' };
    if (changed === undefined) return { outcome: 'invalid' };
    this.#audit.record({ at: now, kind: 'user.email_changed', outcome: 'success', clientId: null, userId: changed.userId, data: { by: 'email', address } });
    this.#notices.emailChanged(changed.userId, { from: changed.from, to: changed.to }, { via: 'account_page' }, now);
    return { outcome: 'changed', from: changed.from, to: changed.to };
  }
}
