import { isIPv4 } from 'node:net';
import { createTransport } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import type { Mailer } from '../core/mail.ts';

/**
 * A Mailer over SMTP, through nodemailer: `smtpUrl` is smtp:// (STARTTLS when the server offers it)
 * or smtps:// (TLS from the start), with the user and password in it when the server asks for them.
 * Connections are pooled, and a server that does not answer gives up within seconds instead of
 * nodemailer's minutes, so that mail waiting to go never piles up.
 *
 * With a user and password, smtp:// to a server that is not on loopback requires STARTTLS: the
 * server's offer of it travels in clear, and whoever is on the path can strip it, after which
 * nodemailer sent the AUTH exchange (the password, in base64) in clear. `?requireTLS=false` in the
 * URL (nodemailer's own option, which the URL sets) allows that where the operator knows the path.
 */
export function smtpMailer({ smtpUrl, from }: { smtpUrl: string; from: string }): Mailer {
  const transport = createTransport({
    url: smtpUrl,
    requireTLS: sendsPassword(smtpUrl),
    pool: true,
    maxConnections: 2,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
    // nodemailer logs nothing unless told; said here because its debug log would show the AUTH exchange.
    logger: false,
    debug: false,
  }, { from });
  return {
    async send(message) {
      if (!isOneMailbox(message.to)) throw new Error('the recipient is not one mailbox as a mail header reads it: nothing was sent');
      await transport.sendMail({ to: message.to, subject: message.subject, text: message.text, html: message.html });
    },
    close() {
      transport.close();
    },
  };
}

/**
 * Whether a mail header reads `address` as exactly that one mailbox. An account's address is checked
 * loosely (one @, no space), so it may hold what RFC 5322 gives a meaning in a header: a comma or a
 * semicolon separates mailboxes, angle brackets and parentheses set a name apart, quotes join. Given
 * to nodemailer as it is, `ada,mallory@evil.example` went to mallory@evil.example only, and so did
 * `ada<mallory@evil.example>`: its link then verified an address whose owner never received it.
 */
function isOneMailbox(address: string): boolean {
  const parsed = addressparser(address);
  return parsed.length === 1 && parsed[0]!.group === undefined && parsed[0]!.name === '' && parsed[0]!.address === address;
}

/** Whether `smtpUrl` logs in with a user and password, in clear unless STARTTLS protects it, to a server off this machine. */
function sendsPassword(smtpUrl: string): boolean {
  const url = URL.parse(smtpUrl);
  if (!url || url.protocol !== 'smtp:' || (url.username === '' && url.password === '')) return false;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const loopback = host === 'localhost' || host === '::1' || (isIPv4(host) && host.startsWith('127.'));
  return !loopback;
}
