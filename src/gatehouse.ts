import type { Logger } from 'pino';
import { AuditTrail } from './core/audit.ts';
import { BackChannelLogout, type NameLookup } from './core/backchannel-logout.ts';
import { ClientRegistry } from './core/clients.ts';
import { ClientAssertions } from './core/client-auth/assertion.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { SQLITE_FILE, type GatehouseConfig } from './core/config.ts';
import { ApiKeyService } from './core/api-keys.ts';
import { AuthorizationEndpoint } from './core/authorize/endpoint.ts';
import { builtInGrants } from './core/grants/index.ts';
import { idTokenHook } from './core/grants/oidc.ts';
import { sweepExpiredRows, sweepPolicyOf } from './core/housekeeping.ts';
import { withDeadline } from './core/deadline.ts';
import { MAX_MAILS_WAITING, MailQueue } from './core/emailed-links.ts';
import { AccountNotices } from './core/account-notices.ts';
import { LoginService } from './core/login.ts';
import { PasswordResetService } from './core/password-reset.ts';
import { EmailVerificationService } from './core/email-verification.ts';
import { EmailChangeService } from './core/email-change.ts';
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
import { NewerSchemaError } from './storage/database.ts';
import { smtpMailer } from './mail/smtp.ts';
import { createLogger, mailFailure } from './logging.ts';
import { createLimits } from './rate-limiters.ts';
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
  emailChanges: EmailChangeService;
  /** Mails people when their password or email address changed; off without mail settings. */
  accountNotices: AccountNotices;
  logger: Logger;
  close(): Promise<void>;
}

export interface GatehouseOptions {
  clock?: Clock;
  logger?: Logger;
  /** Background work (key reloads, sweeping); off for one-shot CLI commands. */
  background?: boolean;
  /** A worker of `serve --workers N` whose primary counts the rate limits for all of them (no Redis). */
  limitsCountedByPrimary?: boolean;
  /** How often expired rows are swept, in milliseconds: every minute unless told (tests tell). */
  sweepIntervalMs?: number;
  /** How many mails may wait for the mail server at once (MAX_MAILS_WAITING unless told; tests tell). */
  maxMailsWaiting?: number;
  /** How many Logout Tokens may wait to be posted at once (MAX_LOGOUTS_WAITING unless told; tests tell). */
  maxLogoutsWaiting?: number;
  /** How Logout Token deliveries look names up (dns.lookup unless told; tests tell). */
  lookup?: NameLookup;
}

export async function openStorage(config: GatehouseConfig): Promise<Storage> {
  const sqlitePath = join(config.dataDir, SQLITE_FILE);
  try {
    return await createStorage({ databaseUrl: config.databaseUrl, sqlitePath, queryTimeoutMs: config.database.queryTimeoutSeconds * 1000 });
  } catch (error) {
    // Name the setting to check, never the URL's value: it may carry a password.
    const database = config.databaseUrl ? 'DATABASE_URL: the database' : `GATEHOUSE_DATA_DIR: the database ${sqlitePath}`;
    if (error instanceof NewerSchemaError) {
      const { unknownMigrations: unknown } = error;
      throw new Error(
        `${database} was migrated by a newer release of Gatehouse (it records ${unknown.length === 1 ? 'migration' : 'migrations'} ${unknown.join(', ')}, which this release does not have): run that release or a later one`,
        { cause: error },
      );
    }
    const { message, code, errors } = error as { message?: string; code?: string; errors?: { message?: string }[] };
    const reason = (message || errors?.[0]?.message || code || String(error)).replace(/\s+/g, ' ');
    throw new Error(`${database} cannot be used (${reason})`, { cause: error });
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
  // A previous secret left set after the change still verifies the form tokens made with it, which
  // matters when it was replaced because it leaked: once no key needs it, say so (naming no
  // secret), as nothing else would.
  if (config.previousSecrets.length > 0 && (await keys.countUnderPreviousSecrets()) === 0) {
    logger.warn(
      'GATEHOUSE_SECRET_PREVIOUS is set, but no signing key is stored under a previous master secret (gatehouse keys reencrypt has run): ' +
        'remove it from every instance and restart them; until then it only still accepts the forms of pages shown before the change',
    );
  }
  for (const { use, signing, configured } of keys.algorithmsAwaitingRotation()) {
    logger.warn(
      `${use === 'access' ? 'access tokens' : 'ID tokens'} are signed with ${signing} until the next rotation (gatehouse keys rotate): ` +
        `the configured ${configured} key is published and signs from then on`,
    );
  }

  const audit = new AuditTrail(storage.audit, clock, (error) => logger.error({ err: error }, 'audit events could not be written'));
  const limits = await createLimits(config, logger, { countedByPrimary: options.limitsCountedByPrimary });
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
  const backChannelLogout = new BackChannelLogout({ clients: storage.clients, keys, audit, clock, issuer: config.issuer, maxWaiting: options.maxLogoutsWaiting, lookup: options.lookup });
  const tokenEndpoint = new TokenEndpoint(services, { authFailures: limits.clientAuthFailures, requests: limits.tokenRequests });
  for (const grant of builtInGrants) tokenEndpoint.register(grant);
  tokenEndpoint.addResponseHook(idTokenHook(idTokens));

  let sweeper: NodeJS.Timeout | undefined;
  /** The sweep running now, if any: a shutdown waits for it before it closes the database. */
  let sweep: Promise<void> | undefined;
  const stopSweeping = new AbortController();
  /** Set once the database is closing: a sweep failing then has nothing to tell. */
  let closed = false;
  if (options.background !== false) {
    const policy = sweepPolicyOf(config);
    keys.startReloading(config.keys.reloadIntervalSeconds, (error) => logger.warn({ err: error }, 'signing keys could not be reloaded'));
    sweeper = setInterval(() => {
      // A sweep still running when the next is due (a database slow to answer) is not doubled.
      if (sweep) return;
      sweep = sweepExpiredRows(storage, clock(), policy, undefined, undefined, stopSweeping.signal)
        .then(
          () => undefined,
          // A sweep the shutdown stopped waiting for fails on the closed database: nothing to tell.
          (error) => void (closed || logger.warn({ err: error }, 'expired rows could not be swept')),
        )
        .finally(() => (sweep = undefined));
    }, options.sweepIntervalMs ?? 60_000);
    sweeper.unref();
  }

  const sessions = new SessionService(storage, config.sessions.ttlSeconds, backChannelLogout);
  const { smtpUrl, from } = config.mail;
  const mailer = smtpUrl && from ? smtpMailer({ smtpUrl, from }) : undefined;
  const queue = new MailQueue(options.maxMailsWaiting ?? MAX_MAILS_WAITING, (refused) =>
    logger.warn({ refused }, 'mails were not sent: as many mails as may wait are waiting for the mail server, which is slow or down'),
  );
  const accountNotices = new AccountNotices({ audit }, mailer, {
    issuer: config.issuer,
    queue,
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'a notice of an account change could not be sent'),
  });
  const passwordResets = new PasswordResetService({ storage, sessions, clients, audit, accountNotices }, mailer, {
    issuer: config.issuer,
    tokenTtlSeconds: config.passwordReset.tokenTtlSeconds,
    limits: { perAccount: limits.passwordResetsPerAccount, perAddress: limits.passwordResetsPerAddress },
    queue,
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'a password reset link could not be sent'),
  });
  const emailVerifications = new EmailVerificationService({ storage, audit }, mailer, {
    enabled: config.signup.verifyEmail,
    issuer: config.issuer,
    tokenTtlSeconds: config.emailVerification.tokenTtlSeconds,
    limits: { perAccount: limits.emailVerificationsPerAccount, perAddress: limits.emailVerificationsPerAddress, perRecipient: limits.emailsPerRecipient },
    queue,
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'an email verification link could not be sent'),
  });
  // Its links verify an address, as email verification's do: they live as long, and are taken from
  // the same budgets of an account, a client address and a mailbox.
  const emailChanges = new EmailChangeService({ storage, audit, login: services.login, accountNotices }, mailer, {
    issuer: config.issuer,
    tokenTtlSeconds: config.emailVerification.tokenTtlSeconds,
    limits: { perAccount: limits.emailVerificationsPerAccount, perAddress: limits.emailVerificationsPerAddress, perRecipient: limits.emailsPerRecipient },
    queue,
    onError: (error) => logger.warn({ reason: mailFailure(error, smtpUrl) }, 'an email change link or notice could not be sent'),
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
    emailChanges,
    accountNotices,
    logger,
    async close() {
      clearInterval(sweeper);
      // The sweep in flight ends with the batch it is in, whose statements each end within the
      // query timeout; waited for alongside the rest, and at most that long, before the database closes.
      stopSweeping.abort();
      const waitAtMost = (work: Promise<void>) => withDeadline(work, config.database.queryTimeoutSeconds * 1000, 'not ended in time').then(() => true, () => false);
      const swept = sweep && waitAtMost(sweep);
      // So is the reload of the signing keys in flight: one query, ended within the query timeout.
      const reloaded = waitAtMost(keys.stopReloading());
      // Links asked for and notices of changes made before shutdown are sent (each gives up within the SMTP timeouts).
      await passwordResets.settled();
      await emailVerifications.settled();
      await emailChanges.settled();
      await accountNotices.settled();
      mailer?.close();
      // Each delivery gives up after a few seconds; their outcomes go to the audit log below.
      await backChannelLogout.settled();
      await apiKeys.flush().catch((error) => logger.warn({ err: error }, 'API key use times could not be written'));
      await audit.close();
      await limits.close();
      if (swept && !(await swept)) logger.warn('shutdown: the sweep of expired rows did not end in time, and stops with the database');
      if (!(await reloaded)) logger.warn('shutdown: the reload of the signing keys did not end in time, and stops with the database');
      closed = true;
      await storage.close();
    },
  };
}
