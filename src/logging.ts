import pino, { type Logger } from 'pino';

/** Secrets and tokens never reach the logs, wherever a log line happens to carry them. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  '*.client_secret',
  '*.client_assertion',
  '*.password',
  '*.refresh_token',
  '*.access_token',
  '*.id_token',
  // Authorization codes by where they travel: `*.code` would also hide `err.code` (ECONNREFUSED, …).
  'body.code',
  'query.code',
  'params.code',
  '*.code_verifier',
  '*.secret',
  // The master secrets a change replaced (GATEHOUSE_SECRET_PREVIOUS), should a configuration be logged.
  '*.previousSecrets',
  // The SMTP URL may hold the mail server's password.
  '*.smtpUrl',
];

/** Query parameters whose values never reach the logs: tokens, codes, credentials (and a person's email). */
const SECRET_QUERY_PARAMETERS = new Set([
  'id_token_hint',
  'access_token',
  'refresh_token',
  'id_token',
  'code',
  'code_verifier',
  'client_secret',
  'client_assertion',
  'assertion',
  'subject_token',
  'actor_token',
  'token',
  'password',
  'csrf',
  'login_hint',
]);

/**
 * A request URL as it may be logged: the values of secret query parameters replaced (RP-initiated
 * logout carries an ID token in `id_token_hint`, RFC 6750 §2.3 an access token in `access_token`),
 * and cut at 2,000 characters.
 */
export function loggableUrl(url: string): string {
  const index = url.indexOf('?');
  if (index < 0) return url.slice(0, 2000);
  const query = url
    .slice(index + 1)
    .split('&')
    .map((pair) => {
      const equals = pair.indexOf('=');
      if (equals < 0) return pair;
      let name = pair.slice(0, equals);
      try {
        name = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // kept as sent
      }
      return SECRET_QUERY_PARAMETERS.has(name.trim().toLowerCase()) ? `${pair.slice(0, equals)}=[redacted]` : pair;
    })
    .join('&');
  return `${url.slice(0, index)}?${query}`.slice(0, 2000);
}

/** What a log line says of a request (Fastify's request logging): never its headers or body. */
function requestSummary(request: { method?: string; url?: string; ip?: string; host?: string; socket?: { remoteAddress?: string; remotePort?: number } }) {
  return {
    method: request.method,
    url: typeof request.url === 'string' ? loggableUrl(request.url) : undefined,
    host: request.host,
    remoteAddress: request.ip ?? request.socket?.remoteAddress,
    remotePort: request.socket?.remotePort,
  };
}

/** The logger of an instance: JSON lines on stdout (or `destination`), secrets redacted. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = { level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, serializers: { req: requestSummary } };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * Why mail could not be sent, as the log may say it: the error's code and message, never the
 * user or password of the SMTP URL (nor their base64, as AUTH PLAIN and LOGIN send them), should
 * the mail server or nodemailer repeat them.
 */
export function mailFailure(error: unknown, smtpUrl: string | undefined): string {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  let text = `${typeof code === 'string' ? `${code}: ` : ''}${typeof message === 'string' ? message : String(error)}`.replace(/\s+/g, ' ').slice(0, 500);
  const url = smtpUrl ? URL.parse(smtpUrl) : null;
  for (const part of [url?.username, url?.password]) {
    if (!part) continue;
    let plain = part;
    try {
      plain = decodeURIComponent(part);
    } catch {
      // kept as written
    }
    for (const form of new Set([part, plain, Buffer.from(plain).toString('base64')])) if (form.length >= 3) text = text.replaceAll(form, '[redacted]');
  }
  return text;
}
