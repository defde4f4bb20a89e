import { escapeHtml, type MailMessage } from './mail.ts';

/**
 * Where a change to an account's sign-in details was made, as its notice tells it: the person's own
 * account page, a password reset link, or an operator (through the admin API, by one of its admin
 * applications, or on the command line).
 */
export type ChangeSource = { via: 'account_page' } | { via: 'reset_link' } | { via: 'admin_api'; application: string | null } | { via: 'cli' };

/**
 * An address shown so that its owner recognizes it and nobody else learns it: the first character of
 * the mailbox, then `***`, then the domain — `a***@example.com`. The old address is told only that
 * much of the new one: the mail may be read by whoever took the account, or forwarded.
 */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) return '***';
  return `${[...email.slice(0, at)][0]}***${email.slice(at)}`;
}

/** The time of a change as the notice says it: in UTC, which the reader can convert. */
function whenText(at: number): string {
  return new Date(at * 1000).toUTCString().replace('GMT', 'UTC');
}

function sourceText(source: ChangeSource, issuer: string): string {
  switch (source.via) {
    case 'account_page':
      return `on the account page (${issuer}/account), by someone signed in with the password`;
    case 'reset_link':
      return 'with a password reset link sent to this address';
    case 'admin_api':
      return `by an operator of this service, through its admin API${source.application ? ` (the application “${source.application}”)` : ''}`;
    case 'cli':
      return 'by an operator of this service, on its command line';
  }
}

function message(to: string, subject: string, paragraphs: string[], htmlParagraphs: string[]): MailMessage {
  const html = ['<!doctype html><html><body style="font-family: sans-serif; line-height: 1.5">', ...htmlParagraphs.map((p) => `<p>${p}</p>`), '</body></html>'];
  return { to, subject, text: paragraphs.join('\n\n'), html: html.join('\n') };
}

/**
 * The notice that the password of the account at `to` changed (OWASP ASVS 5 V6.3.7): when, where,
 * and what to do if it was not its owner — ask for a reset link on the page built from the issuer
 * (never from a request's Host header, which whoever made the request chose). No link that signs
 * anyone in, no token: the mail proves nothing and gives nothing to whoever reads it.
 */
export function passwordChangedMessage({ to, issuer, at, source }: { to: string; issuer: string; at: number; source: ChangeSource }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const forgot = `${issuer}/password/forgot`;
  const when = whenText(at);
  const where = sourceText(source, issuer);
  return message(
    to,
    `Your password for ${service} was changed`,
    [
      `The password of the account ${to} at ${service} was changed on ${when}, ${where}.`,
      'If you made or asked for this change, there is nothing to do.',
      `If it was not, someone else may know your password: ask for a password reset link at ${forgot} at once, choose a new password with it, and tell the operators of this service.`,
    ],
    [
      `The password of the account <strong>${escapeHtml(to)}</strong> at ${escapeHtml(service)} was changed on ${escapeHtml(when)}, ${escapeHtml(where)}.`,
      'If you made or asked for this change, there is nothing to do.',
      `If it was not, someone else may know your password: ask for a password reset link at <a href="${escapeHtml(forgot)}">${escapeHtml(forgot)}</a> at once, choose a new password with it, and tell the operators of this service.`,
    ],
  );
}

/**
 * The notice to the old address `to` that the account's address is now `newEmail`, shown masked
 * (maskEmail): when, where, and what to do if it was not its owner. Password reset links now go to
 * the new address, and signing in takes it, so the way back is through the operators, then a new
 * password from a reset link.
 */
export function emailChangedMessage({ to, newEmail, issuer, at, source }: { to: string; newEmail: string; issuer: string; at: number; source: ChangeSource }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const masked = maskEmail(newEmail);
  const forgot = `${issuer}/password/forgot`;
  const when = whenText(at);
  const where = sourceText(source, issuer);
  return message(
    to,
    `The email address of your account at ${service} was changed`,
    [
      `The account that used the address ${to} at ${service} uses ${masked} instead since ${when}; the change was made ${where}. This address no longer receives its mail, nor its password reset links.`,
      'If you made or asked for this change, there is nothing to do.',
      `If it was not, tell the operators of this service at once, so that they give the account its address back; then ask for a password reset link at ${forgot} and choose a new password with it.`,
    ],
    [
      `The account that used the address <strong>${escapeHtml(to)}</strong> at ${escapeHtml(service)} uses <strong>${escapeHtml(masked)}</strong> instead since ${escapeHtml(when)}; the change was made ${escapeHtml(where)}. This address no longer receives its mail, nor its password reset links.`,
      'If you made or asked for this change, there is nothing to do.',
      `If it was not, tell the operators of this service at once, so that they give the account its address back; then ask for a password reset link at <a href="${escapeHtml(forgot)}">${escapeHtml(forgot)}</a> and choose a new password with it.`,
    ],
  );
}

/**
 * The notice that the account at `to` was deleted: when, where, and what to do if it was not its
 * owner. Nothing can bring the account back, so there is no link to a reset: the operators are told,
 * who can see in their audit log from which address it was done, and the person may sign up anew.
 */
export function accountDeletedMessage({ to, issuer, at, source }: { to: string; issuer: string; at: number; source: ChangeSource }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const when = whenText(at);
  const where = sourceText(source, issuer);
  const gone = 'Its sessions were ended, the access it gave applications was withdrawn, and the applications it registered in the developer portal were deleted with their secrets and API keys. This cannot be undone.';
  return message(
    to,
    `Your account at ${service} was deleted`,
    [
      `The account ${to} at ${service} was deleted on ${when}, ${where}.`,
      gone,
      'If you deleted it, there is nothing to do.',
      'If you did not, someone else knew your password: tell the operators of this service at once, and change that password wherever else you use it.',
    ],
    [
      `The account <strong>${escapeHtml(to)}</strong> at ${escapeHtml(service)} was deleted on ${escapeHtml(when)}, ${escapeHtml(where)}.`,
      escapeHtml(gone),
      'If you deleted it, there is nothing to do.',
      'If you did not, someone else knew your password: tell the operators of this service at once, and change that password wherever else you use it.',
    ],
  );
}
