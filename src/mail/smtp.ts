import { createTransport } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import type { Mailer } from '../core/mail.ts';

/**
 * A Mailer over SMTP, through nodemailer: `smtpUrl` is smtp:// (STARTTLS when the server offers it)
 * or smtps:// (TLS from the start), with the user and password in it when the server asks for them.
 * Connections are pooled, and a server that does not answer gives up within seconds instead of
 * nodemailer's minutes, so that mail waiting to go never piles up.
 */
export function smtpMailer({ smtpUrl, from }: { smtpUrl: string; from: string }): Mailer {
  const transport = createTransport({
    url: smtpUrl,
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
