import type { User } from '../storage/repositories/users.ts';
import { accountDeletedMessage, emailChangedMessage, passwordChangedMessage, type ChangeSource } from './account-change-mail.ts';
import type { AuditTrail } from './audit.ts';
import { MailDeliveries, type MailQueue } from './emailed-links.ts';
import type { Mailer, MailMessage } from './mail.ts';

export type { ChangeSource } from './account-change-mail.ts';

/** The audit event of each notice: a success, or with `reason: 'mail_not_sent'` a failure. */
const AUDIT_KIND = 'user.change_notified';

export interface AccountNoticeOptions {
  issuer: string;
  /** The mails waiting for the mail server, shared with the emailed links. */
  queue: MailQueue;
  /** Why a notice could not be sent (the mail server refused it, or did not answer): for the log. */
  onError: (error: unknown) => void;
}

/**
 * Tells people by mail that their account's sign-in details changed (OWASP ASVS 5 V6.3.7, 4.0
 * V2.2.3): its password, wherever it was set, and its email address, told to the old address; and
 * that they deleted it themselves. Off
 * without a Mailer. Each notice is sent after the change is stored and answered, through the same
 * bounded queue as the emailed links: a mail server slow or down neither delays nor fails the change.
 * A notice that cannot be sent is audited as `mail_not_sent` and logged (without the mail).
 */
export class AccountNotices {
  #audit: AuditTrail;
  #mailer: Mailer | undefined;
  #options: AccountNoticeOptions;
  #deliveries: MailDeliveries;

  constructor(services: { audit: AuditTrail }, mailer: Mailer | undefined, options: AccountNoticeOptions) {
    this.#audit = services.audit;
    this.#mailer = mailer;
    this.#options = options;
    this.#deliveries = new MailDeliveries(options.onError);
  }

  /** Whether notices are sent: mail is configured. */
  get enabled(): boolean {
    return this.#mailer !== undefined;
  }

  /** Tells `user`, at their address, that their password was changed at `now` from `source`. */
  passwordChanged(user: Pick<User, 'id' | 'email'>, source: ChangeSource, now: number): void {
    this.#start(user.id, 'password', now, () => passwordChangedMessage({ to: user.email, issuer: this.#options.issuer, at: now, source }));
  }

  /** Tells the old address `from` of the user `userId` that the account uses `to` now (shown masked). */
  emailChanged(userId: string, { from, to }: { from: string; to: string }, source: ChangeSource, now: number): void {
    this.#start(userId, 'email', now, () => emailChangedMessage({ to: from, newEmail: to, issuer: this.#options.issuer, at: now, source }));
  }

  /**
   * Tells `user`, at their address, that their account was deleted at `now` from `source`; only an
   * address proved to be theirs (`emailVerified`): one never proved may be someone else's, typed by
   * mistake or on purpose at sign-up, whose owner has no account to hear about.
   */
  accountDeleted(user: Pick<User, 'id' | 'email' | 'emailVerified'>, source: ChangeSource, now: number): void {
    if (!user.emailVerified) return;
    this.#start(user.id, 'deleted', now, () => accountDeletedMessage({ to: user.email, issuer: this.#options.issuer, at: now, source }));
  }

  /** Resolves once every notice started so far has been sent, or has failed. */
  settled(): Promise<void> {
    return this.#deliveries.settled();
  }

  #start(userId: string, change: 'password' | 'email' | 'deleted', now: number, compose: () => MailMessage): void {
    const mailer = this.#mailer;
    if (!mailer) return;
    const audited = (outcome: 'success' | 'failure') =>
      this.#audit.record({ at: now, kind: AUDIT_KIND, outcome, clientId: null, userId, data: outcome === 'success' ? { change } : { change, reason: 'mail_not_sent' } });
    this.#deliveries.start(async () => {
      const { queue } = this.#options;
      if (!queue.enter()) return audited('failure');
      try {
        await mailer.send(compose());
      } catch (error) {
        audited('failure');
        throw error;
      } finally {
        queue.leave();
      }
      audited('success');
    });
  }
}
