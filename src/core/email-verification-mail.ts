import { lifetimeText } from './emailed-links.ts';
import { escapeHtml, type MailMessage } from './mail.ts';

/**
 * The mail with an email verification link: which account, on which service, what the link does, and
 * what to do if the person made no account: someone may have made it with their address, which a
 * password reset takes back (account pre-hijacking), rather than this link, which would verify it.
 */
export function emailVerificationMessage({ to, link, issuer, ttlSeconds }: { to: string; link: string; issuer: string; ttlSeconds: number }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const lifetime = lifetimeText(ttlSeconds);
  // Built from the issuer, as the link is: never from a request's Host header.
  const forgot = `${issuer}/password/forgot`;
  const lines = [
    `The account ${to} at ${service} uses this address.`,
    '',
    `To confirm that it is yours, open this link within ${lifetime}, sign in to the account if the page asks, and confirm. It works once:`,
    '',
    link,
    '',
    'Applications you sign in to then see that your address is verified.',
    '',
    `If you did not make this account, someone else made it with your address. Do not use this link; to take the account back, ask for a password reset link at ${forgot} and choose a new password with it: what was done under the account before then is undone. Or ignore this mail: the address stays unverified, and the link stops working by itself.`,
  ];
  const html = [
    '<!doctype html><html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>The account <strong>${escapeHtml(to)}</strong> at ${escapeHtml(service)} uses this address.</p>`,
    `<p>To confirm that it is yours, open this link within ${lifetime}, sign in to the account if the page asks, and confirm. It works once:</p>`,
    `<p><a href="${escapeHtml(link)}">Verify your email address</a></p>`,
    `<p style="font-size: 0.9em">Or copy this address into your browser: ${escapeHtml(link)}</p>`,
    '<p>Applications you sign in to then see that your address is verified.</p>',
    `<p>If you did not make this account, someone else made it with your address. Do not use this link; to take the account back, ask for a password reset link at <a href="${escapeHtml(forgot)}">${escapeHtml(forgot)}</a> and choose a new password with it: what was done under the account before then is undone. Or ignore this mail: the address stays unverified, and the link stops working by itself.</p>`,
    '</body></html>',
  ];
  return { to, subject: `Verify your email address for ${service}`, text: lines.join('\n'), html: html.join('\n') };
}
