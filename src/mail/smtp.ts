import { createTransport } from 'nodemailer';
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
      await transport.sendMail({ to: message.to, subject: message.subject, text: message.text, html: message.html });
    },
    close() {
      transport.close();
    },
  };
}
