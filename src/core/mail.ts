/** A message to one person: a plain-text body and the same in HTML, for mail clients that show either. */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/**
 * Sends mail (src/mail/smtp.ts sends it over SMTP). The core writes messages and hands them here,
 * knowing nothing of how they travel.
 */
export interface Mailer {
  /** Resolves once the mail server accepted the message; rejects with why it did not. */
  send(message: MailMessage): Promise<void>;
  close(): void;
}

/** Text as HTML shows it: what a person typed or a link, never markup. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
