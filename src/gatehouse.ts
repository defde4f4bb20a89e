import pino, { type Logger } from 'pino';
import { createClient } from 'redis';
import { AuditTrail } from './core/audit.ts';
import { BackChannelLogout } from './core/backchannel-logout.ts';
import { ClientRegistry } from './core/clients.ts';
import { ClientAssertions } from './core/client-auth/assertion.ts';
import { systemClock, type Clock } from './core/clock.ts';
import type { GatehouseConfig } from './core/config.ts';
import { ApiKeyService } from './core/api-keys.ts';
import { AuthorizationEndpoint } from './core/authorize/endpoint.ts';
import { withDeadline } from './core/deadline.ts';
import { builtInGrants } from './core/grants/index.ts';
import { idTokenHook } from './core/grants/oidc.ts';
import { sweepExpiredRows, sweepPolicyOf } from './core/housekeeping.ts';
import { LoginService } from './core/login.ts';
import { PasswordResetService } from './core/password-reset.ts';
import { EmailVerificationService } from './core/email-verification.ts';
import { inProcessFailureCounter, redisFailureCounter } from './core/rate-limit/failures.ts';
import { REDIS_UNREACHABLE, RedisLink } from './core/rate-limit/redis-link.ts';
import { inProcessRequestLimiter, redisRequestLimiter } from './core/rate-limit/requests.ts';
import { SessionService } from './core/sessions.ts';
import { SignupService } from './core/signup.ts';
import { idTokenIssuer, type IdTokenIssuer } from './core/tokens/id-token.ts';
import type { GrantServices } from './core/grants/services.ts';
import { ScopePolicy } from './core/scopes.ts';
import { TokenEndpoint } from './core/token-endpoint.ts';
import { accessTokenIssuer } from './core/tokens/jwt.ts';
import { KeyStore } from './core/tokens/keys.ts';
import { ClientTokenReuse } from './core/tokens/reuse.ts';
import type { Storage } from './storage/repositories.ts';
import { createStorage } from './storage/kysely/index.ts';
import { smtpMailer } from './mail/smtp.ts';
import { join } from 'node:path';

/** Everything one Gatehouse instance is made of, wired once; the HTTP app and the CLI use this. */
export interface Gatehouse extends GrantServices {
  tokenEndpoint: TokenEndpoint;
  authorizationEndpoint: AuthorizationEndpoint;
  idTokens: IdTokenIssuer;
  sessions: SessionService;
  /** Tells clients that sessions ended (OpenID Connect Back-Channel Logout 1.0). */
  backChannelLogout: BackChannelLogout;
  signups: SignupService;
  /** "Forgot your password?" by email; off (`enabled` false) without mail settings. */
  passwordResets: PasswordResetService;
  emailVerifications: EmailVerificationService;
  logger: Logger;
  close(): Promise<void>;
}

export interface GatehouseOptions {
  clock?: Clock;
  logger?: Logger;
  /** Background work (key reloads, sweeping); off for one-shot CLI commands. */
  background?: boolean;
}

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

export async function openStorage(config: GatehouseConfig): Promise<Storage> {
  try {
    return await createStorage({ databaseUrl: config.databaseUrl, sqlitePath: join(config.dataDir, 'gatehouse.sqlite'), queryTimeoutMs: config.database.queryTimeoutSeconds * 1000 });
  } catch (error) {
    if (!config.databaseUrl) throw error;
    // Name the setting to check, never its value: the URL may carry a password.
    const { message, code, errors } = error as { message?: string; code?: string; errors?: { message?: string }[] };
    const reason = message || errors?.[0]?.message || code || String(error);
    throw new Error(`DATABASE_URL: the database cannot be used (${reason.replace(/\s+/g, ' ')})`, { cause: error });
  }
}

export async function createGatehouse(config: GatehouseConfig, options: GatehouseOptions = {}): Promise<Gatehouse> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(config.logLevel);
  const storage = await openStorage(config);
  let keys: KeyStore;
  try {
    keys = await KeyStore.open(storage.keys, config, clock());
  } catch (error) {
    await storage.close();
    throw error;
  }
  for (const { use, signing, configured } of keys.algorithmsAwaitingRotation()) {
    logger.warn(
      `${use === 'access' ? 'access tokens' : 'ID tokens'} are signed with ${signing} until the next rotation (gatehouse keys rotate): ` +
        `the configured ${configured} key is published and signs from then on`,
    );
  }

  const audit = new AuditTrail(storage.audit, clock, (error) => logger.error({ err: error }, 'audit events could not be written'));
  const limits = await createLimits(config, logger);
  const clients = new ClientRegistry(storage, config.clients.cacheTtlSeconds);
  const scopes = new ScopePolicy(config.scopes);
  const apiKeys = new ApiKeyService(storage, clients, scopes);
  const services: GrantServices = {
    config,
    clock,
    storage,
    clients,
    clientAssertions: new ClientAssertions(storage.clients, config.issuer),
    scopes,
    accessTokens: accessTokenIssuer(keys, { issuer: config.issuer, audience: config.tokens.audience, ttlSeconds: config.tokens.accessTokenTtlSeconds }),
    clientTokenReuse: new ClientTokenReuse(config.tokens.clientCredentialsReuseSeconds, storage.revocations),
    audit,
    keys,
    apiKeys,
    revocations: storage.revocations,
    login: new LoginService(storage, { perAccount: limits.loginPerAccount, perAddress: limits.loginPerAddress }),
  };
  const idTokens = idTokenIssuer(keys, { issuer: config.issuer, ttlSeconds: config.tokens.idTokenTtlSeconds });
  const backChannelLogout = new BackChannelLogout({ clients: storage.clients, keys, audit, clock, issuer: config.issuer });
  const tokenEndpoint = new TokenEndpoint(services, { authFailures: limits.clientAuthFailures, requests: limits.tokenRequests });
  for (const grant of builtInGrants) tokenEndpoint.register(grant);
  tokenEndpoint.addResponseHook(idTokenHook(idTokens));

  let sweeper: NodeJS.Timeout | undefined;
  if (options.background !== false) {
    const policy = sweepPolicyOf(config);
    keys.startReloading(config.keys.reloadIntervalSeconds, (error) => logger.warn({ err: error }, 'signing keys could not be reloaded'));
    let sweeping = false;
    sweeper = setInterval(() => {
      // A sweep still running when the next is due (a database slow to answer) is not doubled.
      if (sweeping) return;
      sweeping = true;
      sweepExpiredRows(storage, clock(), policy)
        .catch((error) => logger.warn({ err: error }, 'expired rows could not be swept'))
        .finally(() => (sweeping = false));
    }, 60_000);
    sweeper.unref();
  }

  const sessions = new SessionService(storage, config.sessions.ttlSeconds, backChannelLogout);
  const { smtpUrl, from } = config.mail;
  const mailer = smtpUrl && from ? smtpMailer({ smtpUrl, from }) : undefined;
  const passwordResets = new PasswordResetService({ storage, sessions, audit }, mailer, {
    issuer: config.issuer,
    tokenTtlSeconds: config.passwordReset.tokenTtlSeconds,
    limits: { perAccount: limits.passwordResetsPerAccount, perAddress: limits.passwordResetsPerAddress },
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'a password reset link could not be sent'),
  });
  const emailVerifications = new EmailVerificationService({ storage, audit }, mailer, {
    enabled: config.signup.verifyEmail,
    issuer: config.issuer,
    tokenTtlSeconds: config.emailVerification.tokenTtlSeconds,
    limits: { perAccount: limits.emailVerificationsPerAccount, perAddress: limits.emailVerificationsPerAddress },
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'an email verification link could not be sent'),
  });

  return {
    ...services,
    keys,
    tokenEndpoint,
    authorizationEndpoint: new AuthorizationEndpoint({ ...services, idTokens }, { pendingPerAddress: limits.pendingAuthorizations }),
    idTokens,
    sessions,
    backChannelLogout,
    signups: new SignupService(storage, { perAddress: limits.signupsPerAddress }, emailVerifications),
    passwordResets,
    emailVerifications,
    logger,
    async close() {
      clearInterval(sweeper);
      keys.stopReloading();
      // Links asked for before shutdown are sent (each gives up within the SMTP timeouts).
      await passwordResets.settled();
      await emailVerifications.settled();
      mailer?.close();
      // Each delivery gives up after a few seconds; their outcomes go to the audit log below.
      await backChannelLogout.settled();
      await apiKeys.flush().catch((error) => logger.warn({ err: error }, 'API key use times could not be written'));
      await audit.close();
      await limits.close();
      await storage.close();
    },
  };
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

/** How long a Redis command may go unanswered before the limiters count in process instead. */
const REDIS_COMMAND_TIMEOUT_MS = 250;
/** How long start-up waits for a connection to Redis, and shutdown for a clean goodbye. */
const REDIS_CONNECT_WAIT_MS = 2_000;
/** How long the limiters leave Redis alone after a command failed (see RedisLink). */
const REDIS_PAUSE_MS = 5_000;

/**
 * The rate limiters: shared through Redis when REDIS_URL is set, so a client or an attacker meets
 * the same limits on every instance; in process otherwise.
 */
async function createLimits(config: GatehouseConfig, logger: Logger) {
  const { rateLimits: r, login, signup, passwordReset: reset, emailVerification: verification } = config;
  if (!config.redisUrl) {
    return {
      tokenRequests: inProcessRequestLimiter(r.tokenRequestsPerClient, r.windowSeconds),
      clientAuthFailures: inProcessFailureCounter(r.clientAuthFailures, r.windowSeconds),
      pendingAuthorizations: inProcessRequestLimiter(r.authorizationRequestsPerAddress, r.windowSeconds),
      loginPerAccount: inProcessFailureCounter(login.maxFailuresPerAccount, login.windowSeconds),
      loginPerAddress: inProcessFailureCounter(login.maxFailuresPerAddress, login.windowSeconds),
      signupsPerAddress: inProcessRequestLimiter(signup.maxAccountsPerAddress, signup.windowSeconds),
      passwordResetsPerAccount: inProcessRequestLimiter(reset.maxRequestsPerAccount, reset.windowSeconds),
      passwordResetsPerAddress: inProcessRequestLimiter(reset.maxRequestsPerAddress, reset.windowSeconds),
      emailVerificationsPerAccount: inProcessRequestLimiter(verification.maxRequestsPerAccount, verification.windowSeconds),
      emailVerificationsPerAddress: inProcessRequestLimiter(verification.maxRequestsPerAddress, verification.windowSeconds),
      close: async () => {},
    };
  }
  // Warnings are rate limited themselves: one line a minute while Redis is away.
  let lastWarning = 0;
  const warn = (message: string, error: unknown) => {
    if (Date.now() - lastWarning < 60_000) return;
    lastWarning = Date.now();
    logger.warn({ err: error }, message);
  };
  // No offline queue: while Redis is away, commands fail at once (and RedisLink times out those a
  // hung Redis never answers); the limiters count in process meanwhile.
  const redis = createClient({ url: config.redisUrl, disableOfflineQueue: true, socket: { connectTimeout: 2000, reconnectStrategy: (retries) => Math.min(retries * 200, 5000) } });
  redis.on('error', (error) => warn('Redis error', error));
  // Start-up waits a moment for Redis, not for ever: the client goes on connecting on its own, and
  // a connection that fails later is reported through the 'error' event.
  const connecting = redis.connect();
  connecting.catch(() => {});
  await withDeadline(connecting, REDIS_CONNECT_WAIT_MS, `no connection to Redis within ${REDIS_CONNECT_WAIT_MS} ms`).catch((error) => warn(REDIS_UNREACHABLE, error));
  const link = new RedisLink(redis, { timeoutMs: REDIS_COMMAND_TIMEOUT_MS, pauseMs: REDIS_PAUSE_MS }, warn);
  return {
    tokenRequests: redisRequestLimiter(link, 'token', r.tokenRequestsPerClient, r.windowSeconds),
    clientAuthFailures: redisFailureCounter(link, 'client-auth', r.clientAuthFailures, r.windowSeconds),
    pendingAuthorizations: redisRequestLimiter(link, 'authorize-address', r.authorizationRequestsPerAddress, r.windowSeconds),
    loginPerAccount: redisFailureCounter(link, 'login-account', login.maxFailuresPerAccount, login.windowSeconds),
    loginPerAddress: redisFailureCounter(link, 'login-address', login.maxFailuresPerAddress, login.windowSeconds),
    signupsPerAddress: redisRequestLimiter(link, 'signup-address', signup.maxAccountsPerAddress, signup.windowSeconds),
    passwordResetsPerAccount: redisRequestLimiter(link, 'password-reset-account', reset.maxRequestsPerAccount, reset.windowSeconds),
    passwordResetsPerAddress: redisRequestLimiter(link, 'password-reset-address', reset.maxRequestsPerAddress, reset.windowSeconds),
    emailVerificationsPerAccount: redisRequestLimiter(link, 'email-verification-account', verification.maxRequestsPerAccount, verification.windowSeconds),
    emailVerificationsPerAddress: redisRequestLimiter(link, 'email-verification-address', verification.maxRequestsPerAddress, verification.windowSeconds),
    close: async () => {
      // A clean QUIT when Redis answers; one that is down or hangs is not waited for.
      await withDeadline(redis.close(), REDIS_CONNECT_WAIT_MS, 'Redis did not answer QUIT').catch(() => {});
      redis.destroy();
    },
  };
}
