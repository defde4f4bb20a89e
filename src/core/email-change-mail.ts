import { maskEmail } from './account-change-mail.ts';
import { lifetimeText } from './emailed-links.ts';
import { escapeHtml, type MailMessage } from './mail.ts';

/**
 * The mails of a change of an account's address asked for on its page: the link to the new address,
 * and, when the new address has an account of its own, the notice that goes there instead.
 */

function message(to: string, subject: string, paragraphs: string[], htmlParagraphs: string[]): MailMessage {
  const html = ['<!doctype html><html><body style="font-family: sans-serif; line-height: 1.5">', ...htmlParagraphs.map((p) => `<p>${p}</p>`), '</body></html>'];
  return { to, subject, text: paragraphs.join('\n\n'), html: html.join('\n') };
}

/**
 * The link that moves the account `from` to the address `to`, sent to `to`: which account (masked:
 * whoever reads the new address learns only that much of the old), on which service, what the link
 * does, and that nothing happens if it is ignored.
 */
export function emailChangeMessage({ to, from, link, issuer, ttlSeconds }: { to: string; from: string; link: string; issuer: string; ttlSeconds: number }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const lifetime = lifetimeText(ttlSeconds);
  const masked = maskEmail(from);
  return message(
    to,
    `Confirm your new email address for ${service}`,
    [
      `Someone signed in to the account ${masked} at ${service} asked to use this address for it instead.`,
      `If it was you, open this link within ${lifetime}, signed in to that account, and confirm. It works once:\n\n${link}`,
      'The account then uses this address, verified, to sign in and for its mail.',
      'If it was not you, ignore this mail: nothing changes, and the link stops working by itself.',
    ],
    [
      `Someone signed in to the account <strong>${escapeHtml(masked)}</strong> at ${escapeHtml(service)} asked to use this address for it instead.`,
      `If it was you, open this link within ${lifetime}, signed in to that account, and confirm. It works once:`,
      `<a href="${escapeHtml(link)}">Confirm your new email address</a>`,
      `<span style="font-size: 0.9em">Or copy this address into your browser: ${escapeHtml(link)}</span>`,
      'The account then uses this address, verified, to sign in and for its mail.',
      'If it was not you, ignore this mail: nothing changes, and the link stops working by itself.',
    ],
  );
}

/**
 * The notice to `to`, the address of an account already, that another account asked to use it: the
 * person who asked may be its owner, with two accounts, waiting for a link that will not come. No
 * link that signs in or changes anything, and nothing of the other account: the mail tells whoever
 * reads the address only what they could learn by asking to sign up with it.
 */
export function emailInUseMessage({ to, issuer }: { to: string; issuer: string }): MailMessage {
  const service = URL.parse(issuer)?.host ?? issuer;
  const login = `${issuer}/login`;
  const forgot = `${issuer}/password/forgot`;
  return message(
    to,
    `Your email address is already used at ${service}`,
    [
      `Someone signed in to another account at ${service} asked to use this address for it. This address has an account of its own already, so nothing was changed.`,
      `If it was you, sign in with this address at ${login} instead (forgot its password? ask for a reset link at ${forgot}).`,
      'If it was not you, there is nothing to do: your account is unchanged.',
    ],
    [
      `Someone signed in to another account at ${escapeHtml(service)} asked to use this address for it. This address has an account of its own already, so nothing was changed.`,
      `If it was you, sign in with this address at <a href="${escapeHtml(login)}">${escapeHtml(login)}</a> instead (forgot its password? ask for a reset link at <a href="${escapeHtml(forgot)}">${escapeHtml(forgot)}</a>).`,
      'If it was not you, there is nothing to do: your account is unchanged.',
    ],
  );
}
