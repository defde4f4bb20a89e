import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ScopeDefinition {
  /** Shown on the consent page. */
  description: string;
  /** Needs a user present: never granted to client credentials or API keys. */
  userOnly: boolean;
  /** Granted only to admin clients; admin clients get only admin scopes. */
  admin: boolean;
  /** May be put into a project (restricted) token. */
  project: boolean;
}

export type SigningAlgorithm = 'ES256' | 'EdDSA' | 'RS256';

export interface TokenSettings {
  accessTokenTtlSeconds: number;
  /** Each refresh token's lifetime, from when it was issued: a rotation starts it again. */
  refreshTokenTtlSeconds: number;
  /**
   * How long a grant's refresh tokens work at most, counted from when the grant was made, however
   * often they rotate (Auth0's absolute lifetime, Keycloak's client session max); 0: no bound.
   */
  refreshTokenMaxLifetimeSeconds: number;
  /** RFC 9700 §4.14.2: a rotated refresh token presented again within this window is not a replay. */
  refreshTokenReuseGraceSeconds: number;
  authorizationCodeTtlSeconds: number;
  idTokenTtlSeconds: number;
  accessTokenAlgorithm: SigningAlgorithm;
  idTokenAlgorithm: SigningAlgorithm;
  /** Identical client-credentials requests within this window get the same token; 0 signs every time. */
  clientCredentialsReuseSeconds: number;
  /** `aud` of access tokens; the issuer when not set. */
  audience: string;
}

/**
 * The proxies in front whose `X-Forwarded-For` and `-Proto` are believed (`GATEHOUSE_TRUST_PROXY`):
 * - `false`: none; the client address is the connection's;
 * - `{ hops }`: every request passes through that many proxies, so the address is the one the
 *   farthest of them appended, the `hops`-th X-Forwarded-For entry from the right; whatever the
 *   client wrote to the left of it is ignored. Safe only when nothing reaches the server but
 *   through those proxies;
 * - `{ addresses }`: only a connection from one of these addresses or ranges is a proxy; its
 *   headers are followed back through further listed proxies to the first address that is not one
 *   (proxy-addr semantics, as in Express and Fastify).
 */
export type TrustedProxies = false | { hops: number } | { addresses: readonly string[] };

export interface GatehouseConfig {
  port: number;
  host: string;
  /**
   * `GET /metrics` on a port (and address) of its own, kept off the public port (as Keycloak's
   * management interface does); on the main port when `port` is unset.
   */
  metrics: { port: number | undefined; host: string };
  issuer: string;
  dataDir: string;
  /** Unset: the embedded SQLite database in the data dir. */
  databaseUrl: string | undefined;
  /**
   * PostgreSQL: how long one statement may go unanswered before the request gets 503 and the
   * connection is dropped (a database that hangs, or a network that drops packets, would otherwise
   * hold requests and connections for as long as TCP takes to give up). Migrations have no limit.
   */
  database: { queryTimeoutSeconds: number };
  /** The master secret that encrypts signing keys at rest. */
  secret: string;
  /**
   * Secrets the master secret replaced (`GATEHOUSE_SECRET_PREVIOUS`): they still decrypt the signing
   * keys stored under them, until `gatehouse keys reencrypt`, and accept the CSRF tokens of pages
   * shown before the change (and find what the portal forms of those pages made, formRecordIds).
   * They never encrypt nor sign anything.
   */
  previousSecrets: string[];
  /** Set when the secret was generated into the data dir rather than given. */
  secretGeneratedAt: string | undefined;
  logLevel: string;
  scopes: Record<string, ScopeDefinition>;
  tokens: TokenSettings;
  clients: { cacheTtlSeconds: number };
  keys: { reloadIntervalSeconds: number };
  sessions: { ttlSeconds: number };
  /** How long audit events are kept before they are swept; 0 keeps them forever. */
  audit: { retentionDays: number };
  /**
   * How long a revoked or expired API key is kept, shown as such in the portal's and the admin API's
   * lists, before it is swept; 0 keeps them forever. Its creation and revocation stay in the audit log.
   */
  apiKeys: { retentionDays: number };
  /** Self-service accounts: whether `/signup` is open, and how many accounts each client address may create per window (0: no limit). */
  signup: {
    enabled: boolean;
    maxAccountsPerAddress: number;
    windowSeconds: number;
    /** Send new accounts a link that verifies their address (needs `mail`; on by default with it). */
    verifyEmail: boolean;
  };
  pkce: { allowPlain: boolean };
  /** The implicit flow (RFC 6749 §4.2) is off unless enabled here and allowed to a client. */
  implicit: { enabled: boolean };
  /** Project (restricted) tokens: the longest `expires_at` allowed, and the lifetime when token exchange names none. */
  projectTokens: { maxTtlSeconds: number; defaultTtlSeconds: number };
  /** Which proxies in front are believed about the client's address and scheme. */
  trustProxy: TrustedProxies;
  login: { maxFailuresPerAccount: number; maxFailuresPerAddress: number; windowSeconds: number };
  /**
   * Outgoing mail, for password reset and email verification links: off while `smtpUrl` is unset.
   * `smtpUrl` may hold the SMTP password: it is a secret, never logged nor printed (describeSmtpUrl
   * shows it without).
   */
  mail: { smtpUrl: string | undefined; from: string | undefined };
  /**
   * "Forgot your password?" (needs `mail`): how long a link works, and how many links may be asked
   * for one email address and from one client address per window.
   */
  passwordReset: { tokenTtlSeconds: number; maxRequestsPerAccount: number; maxRequestsPerAddress: number; windowSeconds: number };
  /**
   * Email verification links (`signup.verifyEmail`): how long a link works, and how many links may be
   * sent again for one account and from one client address per window.
   */
  emailVerification: { tokenTtlSeconds: number; maxRequestsPerAccount: number; maxRequestsPerAddress: number; windowSeconds: number };
  /** Create the demo clients and user on an empty database (off by default when NODE_ENV=production). */
  demo: boolean;
  /** Shared rate-limit counters across instances; in process when unset. */
  redisUrl: string | undefined;
  rateLimits: {
    /** Token requests per authenticated client per window; 0 turns the limit off. */
    tokenRequestsPerClient: number;
    /** Failed client authentications per client id and address per window. */
    clientAuthFailures: number;
    /**
     * Authorization requests left waiting for a person (sign-in or consent), each a stored row, per
     * client address per window; 0 turns the limit off.
     */
    authorizationRequestsPerAddress: number;
    windowSeconds: number;
  };
}

/** A setting that stops start-up; the message names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const defaultConfigFile = resolve(dirname(fileURLToPath(import.meta.url)), '../../config/gatehouse.json');

const MAX_CODE_TTL_SECONDS = 600; // RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED"
/** The embedded database's file in the data folder. */
export const SQLITE_FILE = 'gatehouse.sqlite';
const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

/**
 * Reads the environment and the JSON configuration file, applies defaults and validates every
 * value. `overrides` lets tests and the CLI replace parts of the file's content.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<FileConfig> = {}): GatehouseConfig {
  const port = integerSetting('PORT', env.PORT, 4000, 0, 65535);
  const host = env.HOST?.trim() || '127.0.0.1';
  const issuer = parseIssuer(env.GATEHOUSE_ISSUER ?? `http://localhost:${port}`);
  const metricsPort = env.GATEHOUSE_METRICS_PORT?.trim() ? integerSetting('GATEHOUSE_METRICS_PORT', env.GATEHOUSE_METRICS_PORT, 0, 0, 65535) : undefined;
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) {
    throw new ConfigError(`GATEHOUSE_METRICS_PORT must differ from PORT (both are ${port}): leave it unset to serve /metrics on the main port`);
  }
  const dataDir = resolve(env.GATEHOUSE_DATA_DIR || './data');
  const databaseUrl = parseDatabaseUrl(env.DATABASE_URL);
  const logLevel = env.GATEHOUSE_LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`GATEHOUSE_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }

  const configPath = env.GATEHOUSE_CONFIG ? resolve(env.GATEHOUSE_CONFIG) : defaultConfigFile;
  const file = { ...readConfigFile(configPath, env.GATEHOUSE_CONFIG ? 'GATEHOUSE_CONFIG' : 'the default configuration'), ...overrides };

  const { secret, generatedAt } = resolveSecret(env.GATEHOUSE_SECRET, databaseUrl, dataDir);
  const previousSecrets = parsePreviousSecrets(env.GATEHOUSE_SECRET_PREVIOUS, secret);
  const mail = parseMail(env, file.mail ?? {});
  const verifyEmail = booleanIn('signup.verifyEmail', file.signup?.verifyEmail, mail.smtpUrl !== undefined);
  if (verifyEmail && mail.smtpUrl === undefined) throw new ConfigError('signup.verifyEmail needs mail: set GATEHOUSE_SMTP_URL and GATEHOUSE_MAIL_FROM, or leave it unset');

  return {
    port,
    host,
    metrics: { port: metricsPort, host: env.GATEHOUSE_METRICS_HOST?.trim() || host },
    issuer,
    dataDir,
    databaseUrl,
    secret,
    previousSecrets,
    secretGeneratedAt: generatedAt,
    logLevel,
    scopes: parseScopes(file.scopes),
    tokens: parseTokens(file.tokens ?? {}, issuer),
    clients: { cacheTtlSeconds: numberIn('clients.cacheTtlSeconds', file.clients?.cacheTtlSeconds, 5, 0, 3600) },
    keys: { reloadIntervalSeconds: numberIn('keys.reloadIntervalSeconds', file.keys?.reloadIntervalSeconds, 10, 0.05, 3600) },
    sessions: { ttlSeconds: wholeNumberIn('sessions.ttlSeconds', file.sessions?.ttlSeconds, 14 * 86400, 60, 365 * 86400) },
    audit: { retentionDays: wholeNumberIn('audit.retentionDays', file.audit?.retentionDays, 90, 0, 36_500) },
    apiKeys: { retentionDays: wholeNumberIn('apiKeys.retentionDays', file.apiKeys?.retentionDays, 30, 0, 36_500) },
    database: { queryTimeoutSeconds: numberIn('database.queryTimeoutSeconds', file.database?.queryTimeoutSeconds, 10, 0.1, 3600) },
    signup: {
      enabled: booleanIn('signup.enabled', file.signup?.enabled, true),
      // Room for a team or a class signing up together behind one NAT; a script gets 30 an hour,
      // not dozens a second. (Auth0's suspicious-IP throttling allows a burst of 50 sign-ups, then about two an hour.)
      maxAccountsPerAddress: numberIn('signup.maxAccountsPerAddress', file.signup?.maxAccountsPerAddress, 30, 0, 1e6),
      windowSeconds: wholeNumberIn('signup.windowSeconds', file.signup?.windowSeconds, 3600, 1, 86400),
      verifyEmail,
    },
    pkce: { allowPlain: booleanIn('pkce.allowPlain', file.pkce?.allowPlain, false) },
    implicit: { enabled: booleanIn('implicit.enabled', file.implicit?.enabled, false) },
    projectTokens: {
      maxTtlSeconds: wholeNumberIn('projectTokens.maxTtlSeconds', file.projectTokens?.maxTtlSeconds, 86400, 60, 30 * 86400),
      defaultTtlSeconds: wholeNumberIn('projectTokens.defaultTtlSeconds', file.projectTokens?.defaultTtlSeconds, 3600, 60, 30 * 86400),
    },
    trustProxy: parseTrustedProxies(env.GATEHOUSE_TRUST_PROXY),
    redisUrl: parseRedisUrl(env.REDIS_URL),
    demo: env.GATEHOUSE_DEMO === undefined || env.GATEHOUSE_DEMO.trim() === '' ? env.NODE_ENV !== 'production' : booleanSetting('GATEHOUSE_DEMO', env.GATEHOUSE_DEMO),
    rateLimits: {
      tokenRequestsPerClient: numberIn('rateLimits.tokenRequestsPerClient', file.rateLimits?.tokenRequestsPerClient, 120_000, 0, 1e9),
      clientAuthFailures: numberIn('rateLimits.clientAuthFailures', file.rateLimits?.clientAuthFailures, 50, 1, 1e6),
      // Five a second for a minute on end: far more than the people behind one address start
      // sign-ins (even behind a carrier's NAT), far less than a script that fills the database.
      authorizationRequestsPerAddress: numberIn('rateLimits.authorizationRequestsPerAddress', file.rateLimits?.authorizationRequestsPerAddress, 300, 0, 1e6),
      windowSeconds: wholeNumberIn('rateLimits.windowSeconds', file.rateLimits?.windowSeconds, 60, 1, 3600),
    },
    login: {
      maxFailuresPerAccount: numberIn('login.maxFailuresPerAccount', file.login?.maxFailuresPerAccount, 5, 1, 1000),
      maxFailuresPerAddress: numberIn('login.maxFailuresPerAddress', file.login?.maxFailuresPerAddress, 20, 1, 100000),
      windowSeconds: wholeNumberIn('login.windowSeconds', file.login?.windowSeconds, 900, 1, 86400),
    },
    mail,
    passwordReset: {
      // OWASP's Forgot Password cheat sheet: a reset link is short-lived; 30 minutes leaves time for slow mail.
      tokenTtlSeconds: wholeNumberIn('passwordReset.tokenTtlSeconds', file.passwordReset?.tokenTtlSeconds, 1800, 300, 86400),
      // A person who does not see the mail asks again once or twice; more fills someone's mailbox.
      maxRequestsPerAccount: numberIn('passwordReset.maxRequestsPerAccount', file.passwordReset?.maxRequestsPerAccount, 3, 1, 1000),
      maxRequestsPerAddress: numberIn('passwordReset.maxRequestsPerAddress', file.passwordReset?.maxRequestsPerAddress, 20, 1, 1e6),
      windowSeconds: wholeNumberIn('passwordReset.windowSeconds', file.passwordReset?.windowSeconds, 3600, 60, 86400),
    },
    emailVerification: {
      // A day, as Auth0's verification links: people open such mail later than a reset they asked for.
      tokenTtlSeconds: wholeNumberIn('emailVerification.tokenTtlSeconds', file.emailVerification?.tokenTtlSeconds, 86_400, 300, 30 * 86_400),
      maxRequestsPerAccount: numberIn('emailVerification.maxRequestsPerAccount', file.emailVerification?.maxRequestsPerAccount, 3, 1, 1000),
      maxRequestsPerAddress: numberIn('emailVerification.maxRequestsPerAddress', file.emailVerification?.maxRequestsPerAddress, 20, 1, 1e6),
      windowSeconds: wholeNumberIn('emailVerification.windowSeconds', file.emailVerification?.windowSeconds, 3600, 60, 86400),
    },
  };
}

/** The shape of the JSON configuration file (`GATEHOUSE_CONFIG`). */
export interface FileConfig {
  scopes: Record<string, Partial<ScopeDefinition>>;
  tokens?: Partial<Record<keyof TokenSettings, unknown>>;
  clients?: { cacheTtlSeconds?: unknown };
  keys?: { reloadIntervalSeconds?: unknown };
  sessions?: { ttlSeconds?: unknown };
  audit?: { retentionDays?: unknown };
  apiKeys?: { retentionDays?: unknown };
  database?: { queryTimeoutSeconds?: unknown };
  signup?: { enabled?: unknown; maxAccountsPerAddress?: unknown; windowSeconds?: unknown; verifyEmail?: unknown };
  pkce?: { allowPlain?: unknown };
  implicit?: { enabled?: unknown };
  projectTokens?: { maxTtlSeconds?: unknown; defaultTtlSeconds?: unknown };
  login?: { maxFailuresPerAccount?: unknown; maxFailuresPerAddress?: unknown; windowSeconds?: unknown };
  rateLimits?: { tokenRequestsPerClient?: unknown; clientAuthFailures?: unknown; authorizationRequestsPerAddress?: unknown; windowSeconds?: unknown };
  mail?: { smtpUrl?: unknown; from?: unknown };
  passwordReset?: { tokenTtlSeconds?: unknown; maxRequestsPerAccount?: unknown; maxRequestsPerAddress?: unknown; windowSeconds?: unknown };
  emailVerification?: { tokenTtlSeconds?: unknown; maxRequestsPerAccount?: unknown; maxRequestsPerAddress?: unknown; windowSeconds?: unknown };
}

function readConfigFile(path: string, name: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ConfigError(`${name}: cannot read ${path}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // V8 quotes the offending text, line breaks included: keep the message on one line.
    throw new ConfigError(`${name}: ${path} is not valid JSON (${(error as Error).message.replace(/\s+/g, ' ')})`);
  }
  if (!isObject(parsed) || !isObject(parsed.scopes)) {
    throw new ConfigError(`${name}: ${path} must be a JSON object with a "scopes" object`);
  }
  const unknown = unknownSetting(parsed);
  if (unknown) throw new ConfigError(`${name}: ${path}: ${unknown}`);
  return parsed as unknown as FileConfig;
}

/**
 * The settings of each section of the file. A name that is none of them is a misspelling, which
 * would leave the default in force with nothing to say so (`userOnyl` would let client credentials
 * have a user-only scope): start-up stops instead.
 */
const FILE_SETTINGS: { [S in Exclude<keyof FileConfig, 'scopes'>]-?: readonly (keyof NonNullable<FileConfig[S]>)[] } = {
  tokens: [
    'accessTokenTtlSeconds',
    'refreshTokenTtlSeconds',
    'refreshTokenMaxLifetimeSeconds',
    'refreshTokenReuseGraceSeconds',
    'authorizationCodeTtlSeconds',
    'idTokenTtlSeconds',
    'accessTokenAlgorithm',
    'idTokenAlgorithm',
    'clientCredentialsReuseSeconds',
    'audience',
  ],
  clients: ['cacheTtlSeconds'],
  keys: ['reloadIntervalSeconds'],
  sessions: ['ttlSeconds'],
  audit: ['retentionDays'],
  apiKeys: ['retentionDays'],
  database: ['queryTimeoutSeconds'],
  signup: ['enabled', 'maxAccountsPerAddress', 'windowSeconds', 'verifyEmail'],
  pkce: ['allowPlain'],
  implicit: ['enabled'],
  projectTokens: ['maxTtlSeconds', 'defaultTtlSeconds'],
  login: ['maxFailuresPerAccount', 'maxFailuresPerAddress', 'windowSeconds'],
  rateLimits: ['tokenRequestsPerClient', 'clientAuthFailures', 'authorizationRequestsPerAddress', 'windowSeconds'],
  mail: ['smtpUrl', 'from'],
  passwordReset: ['tokenTtlSeconds', 'maxRequestsPerAccount', 'maxRequestsPerAddress', 'windowSeconds'],
  emailVerification: ['tokenTtlSeconds', 'maxRequestsPerAccount', 'maxRequestsPerAddress', 'windowSeconds'],
};
const SCOPE_FLAGS: readonly (keyof ScopeDefinition)[] = ['description', 'userOnly', 'admin', 'project'];

/** What is wrong with the first name in the file that is no setting; undefined when there is none. */
function unknownSetting(file: Record<string, unknown>): string | undefined {
  const sections: Record<string, readonly string[]> = FILE_SETTINGS;
  const notOneOf = (name: string, known: readonly string[]) => `${name} is not a setting (the settings here: ${known.join(', ')})`;
  for (const [section, value] of Object.entries(file)) {
    if (section === 'scopes') {
      for (const [scope, definition] of Object.entries(value as Record<string, unknown>)) {
        const flag = isObject(definition) ? Object.keys(definition).find((key) => !SCOPE_FLAGS.includes(key as keyof ScopeDefinition)) : undefined;
        if (flag !== undefined) return notOneOf(`scopes.${scope}.${flag}`, SCOPE_FLAGS);
      }
      continue;
    }
    const known = Object.hasOwn(sections, section) ? sections[section]! : undefined;
    if (!known) return notOneOf(section, ['scopes', ...Object.keys(sections)]);
    if (value === null) continue;
    if (!isObject(value)) return `${section} must be an object`;
    const key = Object.keys(value).find((k) => !known.includes(k));
    if (key !== undefined) return notOneOf(`${section}.${key}`, known);
  }
  return undefined;
}

function parseScopes(raw: Record<string, Partial<ScopeDefinition>>): Record<string, ScopeDefinition> {
  const scopes: Record<string, ScopeDefinition> = Object.create(null);
  for (const [name, value] of Object.entries(raw)) {
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(name)) {
      throw new ConfigError(`scopes: "${name}" is not a valid scope name (RFC 6749 §3.3)`);
    }
    if (!isObject(value) || typeof value.description !== 'string') {
      throw new ConfigError(`scopes.${name}.description must be a string`);
    }
    const flag = (key: 'userOnly' | 'admin' | 'project'): boolean => {
      const v = value[key];
      if (v !== undefined && typeof v !== 'boolean') throw new ConfigError(`scopes.${name}.${key} must be true or false`);
      return v ?? false;
    };
    const definition = { description: value.description, userOnly: flag('userOnly'), admin: flag('admin'), project: flag('project') };
    if (definition.admin && definition.userOnly) {
      throw new ConfigError(`scopes.${name}: an admin scope cannot be user-only (admin scopes go to admin clients)`);
    }
    if (definition.admin && definition.project) {
      throw new ConfigError(`scopes.${name}: an admin scope cannot be put into project tokens`);
    }
    scopes[name] = definition;
  }
  return scopes;
}

function parseTokens(raw: Partial<Record<keyof TokenSettings, unknown>>, issuer: string): TokenSettings {
  const algorithm = (key: 'accessTokenAlgorithm' | 'idTokenAlgorithm', fallback: SigningAlgorithm): SigningAlgorithm => {
    const value = raw[key] ?? fallback;
    if (!SIGNING_ALGORITHMS.includes(value as SigningAlgorithm)) {
      throw new ConfigError(`tokens.${key} must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
    }
    return value as SigningAlgorithm;
  };
  const audience = raw.audience ?? issuer;
  if (typeof audience !== 'string' || audience === '') throw new ConfigError('tokens.audience must be a non-empty string');
  const refreshTokenTtlSeconds = wholeNumberIn('tokens.refreshTokenTtlSeconds', raw.refreshTokenTtlSeconds, 30 * 86400, 60, 365 * 86400);
  const refreshTokenMaxLifetimeSeconds = wholeNumberIn('tokens.refreshTokenMaxLifetimeSeconds', raw.refreshTokenMaxLifetimeSeconds, 365 * 86400, 0, 10 * 365 * 86400);
  // A bound shorter than one token's lifetime would make that lifetime a lie from the first token on
  // (Auth0 likewise refuses an idle lifetime over the absolute one).
  if (refreshTokenMaxLifetimeSeconds !== 0 && refreshTokenMaxLifetimeSeconds < refreshTokenTtlSeconds) {
    throw new ConfigError(`tokens.refreshTokenMaxLifetimeSeconds must be 0 (no bound) or at least tokens.refreshTokenTtlSeconds (${refreshTokenTtlSeconds})`);
  }
  return {
    accessTokenTtlSeconds: wholeNumberIn('tokens.accessTokenTtlSeconds', raw.accessTokenTtlSeconds, 3600, 60, 86400),
    refreshTokenTtlSeconds,
    refreshTokenMaxLifetimeSeconds,
    refreshTokenReuseGraceSeconds: wholeNumberIn('tokens.refreshTokenReuseGraceSeconds', raw.refreshTokenReuseGraceSeconds, 0, 0, 60),
    authorizationCodeTtlSeconds: wholeNumberIn('tokens.authorizationCodeTtlSeconds', raw.authorizationCodeTtlSeconds, 600, 10, MAX_CODE_TTL_SECONDS),
    idTokenTtlSeconds: wholeNumberIn('tokens.idTokenTtlSeconds', raw.idTokenTtlSeconds, 3600, 60, 86400),
    clientCredentialsReuseSeconds: wholeNumberIn('tokens.clientCredentialsReuseSeconds', raw.clientCredentialsReuseSeconds, 5, 0, 60),
    accessTokenAlgorithm: algorithm('accessTokenAlgorithm', 'ES256'),
    idTokenAlgorithm: algorithm('idTokenAlgorithm', 'RS256'),
    audience,
  };
}

function resolveSecret(given: string | undefined, databaseUrl: string | undefined, dataDir: string) {
  if (given !== undefined && given !== '') {
    if (given.length < 32) throw new ConfigError('GATEHOUSE_SECRET must be at least 32 characters long');
    return { secret: given, generatedAt: undefined };
  }
  if (databaseUrl) {
    // Several instances share one database: a secret generated on one machine would not reach the others.
    throw new ConfigError('GATEHOUSE_SECRET must be set when DATABASE_URL is set');
  }
  const path = join(dataDir, 'secret.key');
  if (existsSync(path)) {
    refuseSharedSecretFile(path);
    const stored = readFileSync(path, 'utf8').trim();
    if (stored.length < 32) throw new ConfigError(`GATEHOUSE_SECRET: ${path} holds no usable secret`);
    return { secret: stored, generatedAt: path };
  }
  // The database's signing keys are encrypted under the secret it was first used with: a new one
  // could never decrypt them, and written here it would stand in the way of the one restored.
  const database = join(dataDir, SQLITE_FILE);
  if (existsSync(database)) {
    throw new ConfigError(
      `GATEHOUSE_SECRET is not set and ${path} is missing, but ${database} holds signing keys encrypted under the master secret it was first used with: restore secret.key from a backup, or set GATEHOUSE_SECRET to that secret`,
    );
  }
  // Owner-only, as ssh and PostgreSQL keep their private keys and data directory: the folder also
  // holds the database, with every signing key (encrypted under this secret) and account.
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(path, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    throw new ConfigError(`GATEHOUSE_DATA_DIR: the master secret cannot be generated into ${path} (${(error as Error).message})`);
  }
  chmodSync(path, 0o600);
  return { secret: readFileSync(path, 'utf8').trim(), generatedAt: path };
}

/**
 * A comma-separated list, as Ory Hydra's `SECRETS_SYSTEM` (whose first secret encrypts and the others
 * only decrypt). Neither the secrets nor their positions are ever quoted: an error names the setting.
 */
function parsePreviousSecrets(value: string | undefined, secret: string): string[] {
  if (value === undefined || value.trim() === '') return [];
  const secrets = value.split(',').map((entry) => entry.trim());
  if (secrets.includes('')) throw new ConfigError('GATEHOUSE_SECRET_PREVIOUS: an entry is empty (it is a comma-separated list)');
  if (secrets.some((previous) => previous.length < 32)) throw new ConfigError('GATEHOUSE_SECRET_PREVIOUS: each secret must be at least 32 characters long');
  // Most likely the variables were set the wrong way round, or the change not made yet.
  if (secrets.includes(secret)) throw new ConfigError('GATEHOUSE_SECRET_PREVIOUS holds the current master secret: list only the secrets it replaced');
  return secrets;
}

/**
 * With the master secret and a copy of the database anyone can sign tokens every API accepts. As
 * ssh refuses a private key that others may read ("UNPROTECTED PRIVATE KEY FILE") and PostgreSQL a
 * data directory they may enter, start-up stops rather than warns: a warning scrolls by in a log
 * while the secret stays exposed, and the secret cannot be made safe again afterwards, only
 * replaced with every key it encrypted. Written only by this process at 0600, such a mode comes
 * from a copy (a restored backup) or a chmod, which the operator is asked to undo.
 */
function refuseSharedSecretFile(path: string): void {
  if (process.platform === 'win32') return; // no POSIX modes: access is by ACL
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      `${path} holds the master secret but group or others may access it (mode 0${mode.toString(8)}): restrict it to its owner with chmod 600 ${path}, or set GATEHOUSE_SECRET`,
    );
  }
}

const WITHOUT_CREDENTIALS = 'GATEHOUSE_ISSUER must be the origin Gatehouse is served at, without a user name or password';

function parseIssuer(value: string): string {
  // Before any refusal that quotes the value: it holds a password. Read from the text too, as a
  // value the URL parser refuses (a port out of range, a space in the host) is quoted as well.
  if (/^[a-z][a-z0-9+.-]*:[\\/]*[^\\/?#]*@/i.test(value.trim())) throw new ConfigError(WITHOUT_CREDENTIALS);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`GATEHOUSE_ISSUER must be an absolute URL (got "${value}")`);
  }
  if (url.username || url.password) throw new ConfigError(WITHOUT_CREDENTIALS);
  // RFC 8414 §2: the issuer is an https URL with no query or fragment (http allowed for local use).
  if (!['http:', 'https:'].includes(url.protocol) || url.search || url.hash) {
    throw new ConfigError(`GATEHOUSE_ISSUER must be an http(s) URL without query or fragment (got "${value}")`);
  }
  // Every endpoint and page is served at the root of the host (`/token`, `/login`, `/static/…`, the
  // `__Host-` cookie's Path=/): an issuer with a path would name endpoints in discovery, and in
  // RFC 8414 §3 a metadata URL (`/.well-known/oauth-authorization-server/<path>`), that nothing serves.
  if (url.pathname.replace(/\/+$/, '') !== '') {
    throw new ConfigError(`GATEHOUSE_ISSUER must be the origin Gatehouse is served at, without a path (got "${value}")`);
  }
  // The origin as the URL parser writes it, not as given: clients compare the issuer with the URL
  // they discovered it at as parsed (OpenID Connect Discovery §4.3, RFC 8414 §3.3), and endpoints
  // are the issuer and a path, which a `?`, `#` or line break left at its end would swallow.
  return url.origin;
}

function parseDatabaseUrl(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (!/^postgres(ql)?:\/\//.test(value)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// URL (leave it unset for the embedded SQLite database)');
  }
  return value;
}

function parseRedisUrl(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  // Not quoted: the URL may hold the Redis password.
  if (!/^rediss?:\/\//.test(value) || !URL.canParse(value)) throw new ConfigError('REDIS_URL must be a redis:// or rediss:// URL');
  return value;
}

/**
 * `mail.smtpUrl` (`GATEHOUSE_SMTP_URL` wins) and `mail.from` (`GATEHOUSE_MAIL_FROM` wins). Messages
 * never quote the URL: it may hold the SMTP password.
 */
function parseMail(env: Env, file: { smtpUrl?: unknown; from?: unknown }): GatehouseConfig['mail'] {
  const given = env.GATEHOUSE_SMTP_URL?.trim() ? env.GATEHOUSE_SMTP_URL.trim() : file.smtpUrl;
  const name = env.GATEHOUSE_SMTP_URL?.trim() ? 'GATEHOUSE_SMTP_URL' : 'mail.smtpUrl';
  if (given === undefined || given === null || given === '') return { smtpUrl: undefined, from: undefined };
  const url = typeof given === 'string' ? URL.parse(given) : null;
  if (!url || !['smtp:', 'smtps:'].includes(url.protocol) || url.hostname === '') {
    throw new ConfigError(`${name} must be an smtp:// or smtps:// URL with a host, such as smtp://user:password@mail.example:587 (its value is not shown: it may hold a password)`);
  }
  const from = env.GATEHOUSE_MAIL_FROM?.trim() ? env.GATEHOUSE_MAIL_FROM.trim() : file.from;
  const fromName = env.GATEHOUSE_MAIL_FROM?.trim() ? 'GATEHOUSE_MAIL_FROM' : 'mail.from';
  if (from === undefined || from === null || from === '') throw new ConfigError(`GATEHOUSE_MAIL_FROM (or mail.from) must be set when ${name} is: the address mail is sent from, such as "Gatehouse <no-reply@example.com>"`);
  // A line break would let the value write headers of its own (RFC 5322 §2.2).
  if (typeof from !== 'string' || !MAIL_FROM.test(from)) {
    throw new ConfigError(`${fromName} must be an email address, or a name and an address in angle brackets, such as "Gatehouse <no-reply@example.com>"`);
  }
  return { smtpUrl: given as string, from };
}

const MAIL_ADDRESS = '[^\\s@<>"]{1,64}@[^\\s@<>"]{1,255}';
const MAIL_FROM = new RegExp(`^(?:${MAIL_ADDRESS}|[^\\r\\n<>]{0,200}<${MAIL_ADDRESS}>)$`);

/** An SMTP URL as it may be shown (start-up banner, logs): scheme, host and port, never the user or password. */
export function describeSmtpUrl(smtpUrl: string): string {
  const url = URL.parse(smtpUrl);
  return url ? `${url.protocol}//${url.host}` : '(not a URL)';
}

const MAX_PROXY_HOPS = 10;
/** proxy-addr's names for the private ranges. */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * `GATEHOUSE_TRUST_PROXY`: unset or `false` trusts no proxy; `true` one (the usual single reverse
 * proxy); a number that many hops; otherwise a comma-separated list of proxy addresses and ranges.
 * `true` must not mean "every hop", as Fastify's `trustProxy: true` does: the leftmost
 * X-Forwarded-For entry is whatever the client wrote, so every per-address limit could be escaped.
 */
function parseTrustedProxies(value: string | undefined): TrustedProxies {
  const name = 'GATEHOUSE_TRUST_PROXY';
  const text = value?.trim() ?? '';
  if (text === '' || ['false', 'no'].includes(text.toLowerCase())) return false;
  if (['true', 'yes'].includes(text.toLowerCase())) return { hops: 1 };
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops > MAX_PROXY_HOPS) throw new ConfigError(`${name} must be a number of proxy hops from 0 to ${MAX_PROXY_HOPS} (got "${value}")`);
    return hops === 0 ? false : { hops };
  }
  const addresses = text.split(',').map((entry) => entry.trim());
  for (const entry of addresses) {
    const problem = proxyAddressProblem(entry);
    if (problem) {
      throw new ConfigError(
        `${name} must be true, false, a number of proxy hops, or a comma-separated list of proxy addresses and ranges (e.g. 10.0.0.0/8, ::1, loopback): ${problem}`,
      );
    }
  }
  return { addresses };
}

/** Why `entry` is not an address, an address/prefix or a named range of trusted proxies; undefined when it is one. */
function proxyAddressProblem(entry: string): string | undefined {
  if (entry === '') return 'an entry is empty';
  if (PROXY_RANGE_NAMES.includes(entry)) return undefined;
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  // No zone ids (`%eth0`): Node and proxy-addr do not agree on which ones are valid.
  const family = address.includes('%') ? 0 : isIP(address);
  if (family === 0) return `"${entry}" is not an IP address`;
  if (slash === -1) return undefined;
  const prefix = entry.slice(slash + 1);
  const bits = family === 4 ? 32 : 128;
  // A prefix of 0 would trust every address there is.
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) < 1 || Number(prefix) > bits) return `"${entry}" needs a prefix length from 1 to ${bits}`;
  return undefined;
}

/**
 * A number set in the environment, in decimal digits only: Number() also reads "0x10", "0o17",
 * "0b101", "8e3", "+8080" and "8080.0", so PORT=0x10 listened on port 16 where the operator meant
 * something else (and a typo is better refused than read as another port).
 */
function integerSetting(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = /^\d{1,15}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got "${value}")`);
  return n;
}

function numberIn(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a number from ${min} to ${max}`);
  }
  return value;
}

/**
 * A setting counted in whole seconds (or days): it becomes part of an epoch-second time that is
 * stored (PostgreSQL's bigint columns refuse 1750003600.5, where SQLite keeps it), signed into a
 * token (`exp`, `expires_in`) or given to Redis as a key's expiry, which takes whole seconds only.
 */
function wholeNumberIn(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}`);
  }
  return value as number;
}

function booleanIn(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new ConfigError(`${name} must be true or false`);
  return value;
}

function booleanSetting(name: string, value: string | undefined): boolean {
  if (value === undefined || value.trim() === '') return false;
  if (['1', 'true', 'yes'].includes(value.trim().toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(value.trim().toLowerCase())) return false;
  throw new ConfigError(`${name} must be true or false (got "${value}")`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
