import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** A message the test mail server accepted, decoded. */
export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  /** The message as it crossed the wire (headers and encoded bodies). */
  raw: string;
}

export interface TestMailServer {
  /** `smtp://user:password@127.0.0.1:port` for GATEHOUSE_SMTP_URL. */
  url: string;
  user: string;
  password: string;
  /** Every message accepted so far, oldest first. */
  received: ReceivedMail[];
  /** How many times a client failed to log in. */
  refusedLogins: number;
  /** How many times a client sent its user and password, accepted or not. */
  logins: number;
  /** Makes each message wait this long before the server accepts it (a slow mail server). */
  delayMs: number;
  /**
   * While true, every log-in fails, as with a wrong password. Set, it also ends the connections open
   * now, as a server restarted with another password would: a client's pooled connection, logged in
   * earlier, must log in again.
   */
  refuseLogins: boolean;
  /** While true, every message is refused once its data is in (550), as a server that rejects it: nothing is kept. */
  refuseMessages: boolean;
  /** How many messages were refused so far (refuseMessages). */
  refusedMessages: number;
  close(): Promise<void>;
}

/**
 * A real SMTP server (smtp-server) on a free port of `host` (loopback unless told) that requires a
 * log-in and keeps what it receives, parsed with mailparser. No STARTTLS (no certificate on a test
 * machine): it takes the log-in in clear, as a server whose STARTTLS someone on the path strips.
 */
export async function startMailServer({ host = '127.0.0.1' }: { host?: string } = {}): Promise<TestMailServer> {
  const user = 'gatehouse-mailer';
  const password = `smtp-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}-secret`;
  const state = { received: [] as ReceivedMail[], refusedLogins: 0, logins: 0, delayMs: 0, refuseLogins: false, refuseMessages: false, refusedMessages: 0 };
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth(auth, _session, callback) {
      state.logins++;
      if (!state.refuseLogins && auth.username === user && auth.password === password) return callback(null, { user });
      state.refusedLogins++;
      return callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', async () => {
        if (state.refuseMessages) {
          state.refusedMessages++;
          return callback(Object.assign(new Error('Message refused by policy'), { responseCode: 550 }));
        }
        const raw = Buffer.concat(chunks);
        const parsed = await simpleParser(raw);
        const mail: ReceivedMail = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          subject: parsed.subject ?? '',
          text: parsed.text ?? '',
          html: typeof parsed.html === 'string' ? parsed.html : '',
          raw: raw.toString('utf8'),
        };
        setTimeout(() => {
          state.received.push(mail);
          callback();
        }, state.delayMs);
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `smtp://${user}:${encodeURIComponent(password)}@${host.includes(':') ? `[${host}]` : host}:${port}`,
    user,
    password,
    get received() {
      return state.received;
    },
    get refusedLogins() {
      return state.refusedLogins;
    },
    get logins() {
      return state.logins;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(value: number) {
      state.delayMs = value;
    },
    get refuseLogins() {
      return state.refuseLogins;
    },
    set refuseLogins(value: boolean) {
      state.refuseLogins = value;
      if (value) for (const connection of (server as unknown as { connections: Set<{ close(): void }> }).connections) connection.close();
    },
    get refuseMessages() {
      return state.refuseMessages;
    },
    set refuseMessages(value: boolean) {
      state.refuseMessages = value;
    },
    get refusedMessages() {
      return state.refusedMessages;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The password reset link in a mail's text. */
export function resetLinkIn(mail: ReceivedMail): string {
  const link = /https?:\/\/\S+\/password\/reset\?token=\S+/.exec(mail.text)?.[0];
  if (!link) throw new Error(`no reset link in the mail:\n${mail.text}`);
  return link;
}

/** The email verification link in a mail's text. */
export function verifyLinkIn(mail: ReceivedMail): string {
  const link = /https?:\/\/\S+\/email\/verify\?token=\S+/.exec(mail.text)?.[0];
  if (!link) throw new Error(`no verification link in the mail:\n${mail.text}`);
  return link;
}

/** The email change link in a mail's text. */
export function changeLinkIn(mail: ReceivedMail): string {
  const link = /https?:\/\/\S+\/email\/change\?token=\S+/.exec(mail.text)?.[0];
  if (!link) throw new Error(`no email change link in the mail:\n${mail.text}`);
  return link;
}
