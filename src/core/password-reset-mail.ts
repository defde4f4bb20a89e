import { escapeHtml, type MailMessage } from './mail.ts';

/**
 * The mail with a password reset link: who asked (the account's address, on this service), what to
 * do, and what to do if it was not them (OWASP's Forgot Password cheat sheet). No address or device
 * of whoever asked: it would tell the account's owner nothing they can check, and tell an attacker
 * who asked for someone else's link whether the mail arrived.
 */
export function passwordResetMessage({ to, link, issuer, ttlSeconds }: { to: string; link: string; issuer: string; ttlSeconds: number }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const minutes = Math.round(ttlSeconds / 60);
  const lines = [
    `Someone asked to reset the password of the account ${to} at ${service}.`,
    '',
    `To choose a new password, open this link within ${minutes} minutes. It works once:`,
    '',
    link,
    '',
    'Setting a new password signs the account out of every browser; the applications you allowed keep their access.',
    '',
    'If you did not ask for this, ignore this mail: your password stays as it is, and the link stops working by itself. Someone may have typed your address by mistake. If such mails keep coming, tell the operators of this service.',
  ];
  const html = [
    '<!doctype html><html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>Someone asked to reset the password of the account <strong>${escapeHtml(to)}</strong> at ${escapeHtml(service)}.</p>`,
    `<p>To choose a new password, open this link within ${minutes} minutes. It works once:</p>`,
    `<p><a href="${escapeHtml(link)}">Choose a new password</a></p>`,
    `<p style="font-size: 0.9em">Or copy this address into your browser: ${escapeHtml(link)}</p>`,
    '<p>Setting a new password signs the account out of every browser; the applications you allowed keep their access.</p>',
    '<p>If you did not ask for this, ignore this mail: your password stays as it is, and the link stops working by itself. Someone may have typed your address by mistake. If such mails keep coming, tell the operators of this service.</p>',
    '</body></html>',
  ];
  return { to, subject: `Reset your password for ${service}`, text: lines.join('\n'), html: html.join('\n') };
}
