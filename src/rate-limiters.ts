import type { Logger } from 'pino';
import { createClient } from 'redis';
import type { GatehouseConfig } from './core/config.ts';
import { withDeadline } from './core/deadline.ts';
import { inProcessFailureCounter, redisFailureCounter } from './core/rate-limit/failures.ts';
import type { LimitSetting } from './core/rate-limit/primary-counts.ts';
import { PrimaryLink, primaryFailureCounter, primaryLeasedRequestLimiter, primaryRequestLimiter, type Block } from './core/rate-limit/primary-link.ts';
import { REDIS_UNREACHABLE, RedisLink } from './core/rate-limit/redis-link.ts';
import { inProcessRequestLimiter, redisRequestLimiter } from './core/rate-limit/requests.ts';

/** How long a Redis command may go unanswered before the limiters count in process instead. */
const REDIS_COMMAND_TIMEOUT_MS = 250;
/** How long start-up waits for a connection to Redis, and shutdown for a clean goodbye. */
const REDIS_CONNECT_WAIT_MS = 2_000;
/** How long the limiters leave Redis alone after a command failed (see RedisLink). */
const REDIS_PAUSE_MS = 5_000;

/**
 * The links to verify an address (at sign-up, again from the account page, and to a new address)
 * and the notices that an address is taken that one mailbox may be sent in a window, whoever asks:
 * the sign-up's link and as many as its account may ask for again. The budgets per account and per
 * client address bound each asker, and accounts are cheap: made with someone else's address, deleted
 * and made again, or many of them asking for that address as their new one, they filled its mailbox.
 * (A password reset link is counted by the address it goes to already.)
 */
function mailsPerRecipient(config: GatehouseConfig): number {
  return config.emailVerification.maxRequestsPerAccount + 1;
}

/**
 * The limits a worker of `serve --workers N` leaves to the primary when there is no Redis, by the
 * name the primary counts them under: every one. The token endpoint's budget per client, taken on
 * every token request, is leased from the primary in slices (see limitsCountedByPrimaryFor).
 */
export function limitsCountedByPrimary(config: GatehouseConfig): Record<string, LimitSetting> {
  const { rateLimits: r, login, signup, passwordReset: reset, emailVerification: verification } = config;
  const failures = (limit: number, windowSeconds: number): LimitSetting => ({ kind: 'failures', limit, windowSeconds });
  const requests = (limit: number, windowSeconds: number): LimitSetting => ({ kind: 'requests', limit, windowSeconds });
  return {
    token: { kind: 'leases', limit: r.tokenRequestsPerClient, windowSeconds: r.windowSeconds },
    'client-auth': failures(r.clientAuthFailures, r.windowSeconds),
    'authorize-address': requests(r.authorizationRequestsPerAddress, r.windowSeconds),
    'login-account': failures(login.maxFailuresPerAccount, login.windowSeconds),
    'login-address': failures(login.maxFailuresPerAddress, login.windowSeconds),
    'signup-address': requests(signup.maxAccountsPerAddress, signup.windowSeconds),
    'password-reset-account': requests(reset.maxRequestsPerAccount, reset.windowSeconds),
    'password-reset-address': requests(reset.maxRequestsPerAddress, reset.windowSeconds),
    'email-verification-account': requests(verification.maxRequestsPerAccount, verification.windowSeconds),
    'email-verification-address': requests(verification.maxRequestsPerAddress, verification.windowSeconds),
    'email-recipient': requests(mailsPerRecipient(config), verification.windowSeconds),
  };
}

/**
 * The rate limiters: shared through Redis when REDIS_URL is set, so a client or an attacker meets
 * the same limits on every instance; without Redis, in a worker of `serve --workers N`
 * (`countedByPrimary`), counted by the primary for all the workers; in process otherwise.
 */
export async function createLimits(config: GatehouseConfig, logger: Logger, options: { countedByPrimary?: boolean } = {}) {
  const { rateLimits: r, login, signup, passwordReset: reset, emailVerification: verification } = config;
  if (!config.redisUrl && options.countedByPrimary && process.send) return limitsCountedByPrimaryFor(config, logger);
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
      emailsPerRecipient: inProcessRequestLimiter(mailsPerRecipient(config), verification.windowSeconds),
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
    emailsPerRecipient: redisRequestLimiter(link, 'email-recipient', mailsPerRecipient(config), verification.windowSeconds),
    close: async () => {
      // A clean QUIT when Redis answers; one that is down or hangs is not waited for.
      await withDeadline(redis.close(), REDIS_CONNECT_WAIT_MS, 'Redis did not answer QUIT').catch(() => {});
      redis.destroy();
    },
  };
}

/**
 * The limiters of a worker whose primary counts for every worker (see primary-link.ts). The token
 * endpoint's budget per client is taken on every token request, the hottest path: the worker
 * leases it from the primary a slice at a time (as an instance leases it from Redis), so that most
 * token requests need no round trip, and the workers together grant no more than the one budget.
 */
async function limitsCountedByPrimaryFor(config: GatehouseConfig, logger: Logger) {
  // One line a minute while the primary does not answer.
  let lastWarning = 0;
  const warn = (message: string, error: unknown) => {
    if (Date.now() - lastWarning < 60_000) return;
    lastWarning = Date.now();
    logger.warn({ err: error }, message);
  };
  // With a callback, a channel that closed is reported to it rather than as an 'error' event of
  // the process; the request's deadline then answers for the primary.
  const link = new PrimaryLink((message) => process.send!(message, undefined, undefined, () => {}), warn);
  const onMessage = (message: unknown) => link.receive(message);
  process.on('message', onMessage);
  // The keys blocked before this worker started (it may replace one that died).
  for (const [name, key, until] of (await link.call<Block[]>({ op: 'blocked' })) ?? []) link.block(name, key, until);
  const settings = limitsCountedByPrimary(config);
  const failures = (name: string) => primaryFailureCounter(link, name, settings[name]!.limit, settings[name]!.windowSeconds);
  const requests = (name: string) => primaryRequestLimiter(link, name, settings[name]!.limit, settings[name]!.windowSeconds);
  return {
    tokenRequests: primaryLeasedRequestLimiter(link, 'token', settings.token!.limit, settings.token!.windowSeconds),
    clientAuthFailures: failures('client-auth'),
    pendingAuthorizations: requests('authorize-address'),
    loginPerAccount: failures('login-account'),
    loginPerAddress: failures('login-address'),
    signupsPerAddress: requests('signup-address'),
    passwordResetsPerAccount: requests('password-reset-account'),
    passwordResetsPerAddress: requests('password-reset-address'),
    emailVerificationsPerAccount: requests('email-verification-account'),
    emailVerificationsPerAddress: requests('email-verification-address'),
    emailsPerRecipient: requests('email-recipient'),
    close: async () => {
      process.off('message', onMessage);
      link.close();
    },
  };
}
