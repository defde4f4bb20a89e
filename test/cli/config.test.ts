import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { ConfigError, loadConfig } from '../../src/core/config.ts';
import { sweepPolicyOf } from '../../src/core/housekeeping.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../support/databases.ts';
import { basic, post, TEST_SECRET } from '../support/server.ts';
import { cliJson, databaseEnv, oneLine, runCli, startServe, writeConfig, type Env, type ServeProcess } from './support.ts';

const tempDirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-test-'));
  tempDirs.push(dir);
  return dir;
};
after(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('start-up with a bad setting', { timeout: 180_000 }, () => {
  let dir: string;
  /** A port another process listens on. */
  let taken: Server;
  let takenPort: number;
  before(async () => {
    dir = tempDir();
    taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    takenPort = (taken.address() as AddressInfo).port;
  });
  after(() => {
    taken.close();
  });

  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  /** Each case: the environment (on top of a data dir), and what the one line must name. */
  const cases: [string, () => Env, RegExp][] = [
    ['PORT that is not a number', () => ({ PORT: 'abc' }), /PORT .*"abc"/],
    ['PORT out of range', () => ({ PORT: '65536' }), /PORT .*65535/],
    ['GATEHOUSE_METRICS_PORT that is not a number', () => ({ GATEHOUSE_METRICS_PORT: 'metrics' }), /GATEHOUSE_METRICS_PORT .*"metrics"/],
    ['GATEHOUSE_METRICS_PORT the same as PORT', () => ({ PORT: '4321', GATEHOUSE_METRICS_PORT: '4321' }), /GATEHOUSE_METRICS_PORT must differ from PORT/],
    ['GATEHOUSE_ISSUER that is not a URL', () => ({ GATEHOUSE_ISSUER: 'not-a-url' }), /GATEHOUSE_ISSUER .*"not-a-url"/],
    ['GATEHOUSE_ISSUER with a query', () => ({ GATEHOUSE_ISSUER: 'https://auth.example.com/?tenant=1' }), /GATEHOUSE_ISSUER .*query/],
    ['GATEHOUSE_ISSUER with a path', () => ({ GATEHOUSE_ISSUER: 'https://example.com/auth' }), /GATEHOUSE_ISSUER .*without a path .*"https:\/\/example\.com\/auth"/],
    ['DATABASE_URL of another database', () => ({ DATABASE_URL: 'mysql://x', GATEHOUSE_SECRET: TEST_SECRET }), /DATABASE_URL .*postgres:\/\//],
    ['GATEHOUSE_CONFIG naming a missing file', () => ({ GATEHOUSE_CONFIG: join(dir, 'missing.json') }), /GATEHOUSE_CONFIG: .*missing\.json/],
    // V8 quotes the bad text, line breaks and all; the message must stay on one line.
    ['GATEHOUSE_CONFIG with invalid JSON', () => ({ GATEHOUSE_CONFIG: file('invalid.json', '{\n  "scopes": nope\n}\n') }), /GATEHOUSE_CONFIG: .*invalid\.json is not valid JSON/],
    ['GATEHOUSE_CONFIG without scopes', () => ({ GATEHOUSE_CONFIG: file('no-scopes.json', '{"tokens": {}}') }), /GATEHOUSE_CONFIG: .*"scopes"/],
    [
      'an authorization code lifetime over the 10-minute maximum',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { tokens: { authorizationCodeTtlSeconds: 900 } }, 'long-codes.json') }),
      /tokens\.authorizationCodeTtlSeconds .*600/,
    ],
    [
      "a refresh tokens' maximum lifetime shorter than one refresh token's lifetime",
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { tokens: { refreshTokenTtlSeconds: 30 * 86400, refreshTokenMaxLifetimeSeconds: 7 * 86400 } }, 'short-grants.json') }),
      /tokens\.refreshTokenMaxLifetimeSeconds must be 0 \(no bound\) or at least tokens\.refreshTokenTtlSeconds \(2592000\)/,
    ],
    [
      'an unsupported signing algorithm',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { tokens: { accessTokenAlgorithm: 'HS256' } }, 'hs256.json') }),
      /tokens\.accessTokenAlgorithm /,
    ],
    [
      'a key reload interval given as a string',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { keys: { reloadIntervalSeconds: '10' } }, 'string-interval.json') }),
      /keys\.reloadIntervalSeconds /,
    ],
    [
      'a query timeout of 0 (every statement would fail)',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { database: { queryTimeoutSeconds: 0 } }, 'no-query-time.json') }),
      /database\.queryTimeoutSeconds .*0\.1/,
    ],
    // A misspelt setting would leave its default in force, with nothing to say so.
    [
      'a misspelt setting in the configuration file',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { tokens: { accesTokenTtlSeconds: 300 } }, 'misspelt-setting.json') }),
      /GATEHOUSE_CONFIG: .*tokens\.accesTokenTtlSeconds is not a setting/,
    ],
    ['a misspelt section of the configuration file', () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { sesions: { ttlSeconds: 3600 } }, 'misspelt-section.json') }), /GATEHOUSE_CONFIG: .*sesions is not a setting/],
    [
      'a misspelt scope flag',
      () => ({ GATEHOUSE_CONFIG: writeConfig(dir, { scopes: { 'objects:download': { description: 'Download BIM object files', userOnyl: true } } }, 'misspelt-flag.json') }),
      /GATEHOUSE_CONFIG: .*scopes\.objects:download\.userOnyl is not a setting/,
    ],
    ['a section that is not an object', () => ({ GATEHOUSE_CONFIG: file('number-section.json', '{"scopes": {}, "login": 5}') }), /GATEHOUSE_CONFIG: .*login must be an object/],
    ['GATEHOUSE_TRUST_PROXY that is no switch, hop count or address', () => ({ GATEHOUSE_TRUST_PROXY: 'nginx' }), /GATEHOUSE_TRUST_PROXY .*"nginx" is not an IP address/],
    ['GATEHOUSE_TRUST_PROXY with more hops than any deployment has', () => ({ GATEHOUSE_TRUST_PROXY: '11' }), /GATEHOUSE_TRUST_PROXY .*hops from 0 to 10 .*"11"/],
    ['GATEHOUSE_TRUST_PROXY trusting every address', () => ({ GATEHOUSE_TRUST_PROXY: '10.0.0.1, 0.0.0.0/0' }), /GATEHOUSE_TRUST_PROXY .*"0\.0\.0\.0\/0" needs a prefix length from 1 to 32/],
    ['GATEHOUSE_TRUST_PROXY with an empty entry', () => ({ GATEHOUSE_TRUST_PROXY: '10.0.0.1,,::1' }), /GATEHOUSE_TRUST_PROXY .*an entry is empty/],
    ['an unknown GATEHOUSE_LOG_LEVEL', () => ({ GATEHOUSE_LOG_LEVEL: 'loud' }), /GATEHOUSE_LOG_LEVEL .*"loud"/],
    ['GATEHOUSE_SECRET too short', () => ({ GATEHOUSE_SECRET: 'too-short' }), /GATEHOUSE_SECRET .*32 characters/],
    ['GATEHOUSE_SECRET_PREVIOUS too short', () => ({ GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_SECRET_PREVIOUS: 'hunter2-secret-0123456789-abcdefghijklmnop, hunter2-short' }), /^gatehouse: configuration error: GATEHOUSE_SECRET_PREVIOUS: each secret must be at least 32 characters long$/],
    ['GATEHOUSE_SECRET_PREVIOUS with an empty entry', () => ({ GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_SECRET_PREVIOUS: 'hunter2-secret-0123456789-abcdefghijklmnop,' }), /^gatehouse: configuration error: GATEHOUSE_SECRET_PREVIOUS: an entry is empty/],
    [
      'GATEHOUSE_SECRET_PREVIOUS holding GATEHOUSE_SECRET',
      () => ({ GATEHOUSE_SECRET: 'hunter2-secret-0123456789-abcdefghijklmnop', GATEHOUSE_SECRET_PREVIOUS: 'hunter2-secret-0123456789-abcdefghijklmnop' }),
      /^gatehouse: configuration error: GATEHOUSE_SECRET_PREVIOUS holds the current master secret/,
    ],
    ['DATABASE_URL without GATEHOUSE_SECRET', () => ({ DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' }), /GATEHOUSE_SECRET must be set when DATABASE_URL is set/],
    [
      'DATABASE_URL where no database answers',
      () => ({ DATABASE_URL: 'postgres://gatehouse:hunter2-password@127.0.0.1:1/gatehouse', GATEHOUSE_SECRET: TEST_SECRET }),
      /DATABASE_URL: .*ECONNREFUSED/,
    ],
    ['GATEHOUSE_SMTP_URL of another scheme', () => ({ GATEHOUSE_SMTP_URL: 'https://mailer:hunter2-password@mail.example', GATEHOUSE_MAIL_FROM: 'no-reply@example.com' }), /GATEHOUSE_SMTP_URL must be an smtp:\/\/ or smtps:\/\/ URL/],
    ['PORT another process listens on', () => ({ PORT: String(takenPort) }), /^gatehouse: PORT: cannot listen on 127\.0\.0\.1:\d+ .*EADDRINUSE/],
    ['HOST that names no address', () => ({ HOST: 'nowhere.invalid' }), /^gatehouse: HOST: cannot listen on nowhere\.invalid:0 .*ENOTFOUND/],
    ['HOST that is not an address of this machine', () => ({ HOST: '192.0.2.1' }), /^gatehouse: HOST: cannot listen on 192\.0\.2\.1:0 .*EADDRNOTAVAIL/],
    ['GATEHOUSE_DATA_DIR that is a file', () => ({ GATEHOUSE_DATA_DIR: file('a-file', 'not a folder') }), /^gatehouse: configuration error: GATEHOUSE_DATA_DIR: .*a-file.*EEXIST/],
    [
      'GATEHOUSE_DATA_DIR that is a file, with GATEHOUSE_SECRET set',
      () => ({ GATEHOUSE_DATA_DIR: join(file('another-file', 'not a folder'), 'data'), GATEHOUSE_SECRET: TEST_SECRET }),
      /^gatehouse: GATEHOUSE_DATA_DIR: .*another-file.*ENOTDIR/,
    ],
    ['REDIS_URL that is no URL', () => ({ REDIS_URL: 'redis://:hunter2-password@[redis' }), /^gatehouse: configuration error: REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/],
    ['GATEHOUSE_SMTP_URL without GATEHOUSE_MAIL_FROM', () => ({ GATEHOUSE_SMTP_URL: 'smtp://mailer:hunter2-password@mail.example:587' }), /GATEHOUSE_MAIL_FROM \(or mail\.from\) must be set/],
  ];

  for (const [name, env, expected] of cases) {
    it(`stops with one line naming it: ${name}`, async () => {
      const settings = env();
      const result = await runCli(['serve'], { GATEHOUSE_DATA_DIR: join(dir, 'data'), PORT: '0', ...settings }, 30_000);
      assert.equal(result.signal, null, `serve had to be killed: it started despite ${JSON.stringify(settings)}\n${result.stdout}`);
      assert.notEqual(result.code, 0);
      assert.match(oneLine(result), expected);
      assert.equal(result.stdout.includes('listening'), false, result.stdout);
      assert.equal(result.stderr.includes('hunter2'), false, 'a password in DATABASE_URL, REDIS_URL or GATEHOUSE_SMTP_URL, or a master secret, is never printed');
    });
  }

  it('stops with one line naming GATEHOUSE_METRICS_PORT when another process listens on it', async () => {
    const result = await runCli(['serve'], { GATEHOUSE_DATA_DIR: join(dir, 'data'), PORT: '0', GATEHOUSE_METRICS_PORT: String(takenPort) }, 30_000);
    assert.equal(result.code, 1, result.stdout);
    assert.match(oneLine(result), /^gatehouse: GATEHOUSE_METRICS_PORT: cannot listen on 127\.0\.0\.1:\d+ .*EADDRINUSE/);
    assert.equal(result.stdout.includes('Gatehouse is listening'), false, result.stdout);
  });

  it('stops serve --workers 2 the same way, starting no worker, when PostgreSQL does not answer or has no such database', async () => {
    // The primary sets the database up before forking: workers that could only fail are never started.
    const unknownDatabase = new URL(process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
    unknownDatabase.pathname = '/gatehouse_no_such_database';
    for (const [url, expected] of [
      ['postgres://gatehouse:hunter2-password@127.0.0.1:1/gatehouse', /^gatehouse: DATABASE_URL: the database cannot be used \(.*ECONNREFUSED.*\)$/],
      [unknownDatabase.toString(), /^gatehouse: DATABASE_URL: the database cannot be used \(database "gatehouse_no_such_database" does not exist\)$/],
    ] as const) {
      const result = await runCli(['serve', '--workers', '2'], { GATEHOUSE_DATA_DIR: join(dir, 'data'), PORT: '0', DATABASE_URL: url, GATEHOUSE_SECRET: TEST_SECRET }, 30_000);
      assert.equal(result.signal, null, `serve had to be killed\n${result.stdout}`);
      assert.equal(result.code, 1, result.stdout);
      assert.match(oneLine(result), expected);
      assert.equal(result.stdout.includes('listening'), false, result.stdout);
    }
  });

  it('stops the other commands the same way', async () => {
    for (const args of [['migrate'], ['client', 'list'], ['keys', 'list']]) {
      const result = await runCli(args, { GATEHOUSE_DATA_DIR: join(dir, 'data'), PORT: 'abc' }, 30_000);
      assert.equal(result.code, 1, args.join(' '));
      assert.match(oneLine(result), /PORT .*"abc"/);
    }
  });
});

describe('GATEHOUSE_ISSUER', () => {
  const issuer = (value: string) => loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_ISSUER: value }).issuer;

  it('is an origin: a trailing slash is dropped, so that every endpoint in discovery is the issuer and its path', () => {
    assert.equal(issuer('https://auth.example.com'), 'https://auth.example.com');
    assert.equal(issuer('https://auth.example.com/'), 'https://auth.example.com');
    assert.equal(issuer('http://localhost:4000'), 'http://localhost:4000');
  });

  it('is the origin as URLs write it, which clients compare it with: an empty query or fragment, spaces and a line break around it, upper case and the default port are dropped', () => {
    // Kept as written, `https://auth.example.com/?` named the token endpoint `https://auth.example.com/?/token`: the root with a query.
    for (const value of ['https://auth.example.com/?', 'https://auth.example.com#', 'https://auth.example.com/.', ' https://auth.example.com ', 'https://auth.example.com\n', 'HTTPS://Auth.Example.COM:443/']) {
      assert.equal(issuer(value), 'https://auth.example.com', JSON.stringify(value));
    }
    assert.equal(issuer('http://127.0.0.1:4000/?'), 'http://127.0.0.1:4000');
  });

  it('refuses a user name or password, which no endpoint URL may carry', () => {
    // Whatever else is wrong with it: the other refusals quote the value, which would print the password.
    for (const value of ['https://admin:hunter2@auth.example.com', 'https://admin@auth.example.com', 'https://admin:hunter2@auth.example.com/auth', 'https://admin:hunter2@auth.example.com/?tenant=a', 'ftp://admin:hunter2@auth.example.com', 'https://admin:hunter2@auth.example.com:99999', 'https://admin:hunter2@auth example.com', 'https://admin:hunter2@[::1', 'https:\\\\admin:hunter2@auth.example.com:99999', 'https:admin:hunter2@auth.example.com:99999']) {
      assert.throws(() => issuer(value), (error: Error) => error instanceof ConfigError && /^GATEHOUSE_ISSUER .*user name or password/.test(error.message) && !error.message.includes('hunter2'), value);
    }
  });

  it('refuses a path, which nothing would serve the endpoints and the RFC 8414 §3 metadata URL of', () => {
    for (const value of ['https://example.com/auth', 'https://example.com/auth/', 'https://example.com/tenants/a', 'http://localhost:4000/gatehouse']) {
      assert.throws(() => issuer(value), (error: Error) => error instanceof ConfigError && /^GATEHOUSE_ISSUER .*without a path/.test(error.message), value);
    }
  });
});

describe('GATEHOUSE_TRUST_PROXY', () => {
  const trusted = (value: string | undefined) => loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET, ...(value === undefined ? {} : { GATEHOUSE_TRUST_PROXY: value }) }).trustProxy;

  it('trusts no proxy when unset, empty, false or 0', () => {
    for (const value of [undefined, '', 'false', 'NO', '0']) assert.equal(trusted(value), false, String(value));
  });

  it('reads true as one hop, the single reverse proxy in front, never as every hop', () => {
    for (const value of ['true', 'Yes', '1']) assert.deepEqual(trusted(value), { hops: 1 }, value);
    assert.deepEqual(trusted(' 3 '), { hops: 3 });
  });

  it('reads anything else as a list of proxy addresses, ranges and proxy-addr range names', () => {
    assert.deepEqual(trusted('10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1,loopback'), { addresses: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8', '::1', 'loopback'] });
  });

  it('refuses what no proxy-addr list holds, naming the entry', () => {
    const cases: [string, RegExp][] = [
      ['on', /"on" is not an IP address/],
      ['10.0.0.1 10.0.0.2', /"10\.0\.0\.1 10\.0\.0\.2" is not an IP address/],
      ['10.0.0.0/33', /"10\.0\.0\.0\/33" needs a prefix length from 1 to 32/],
      ['::/0', /"::\/0" needs a prefix length from 1 to 128/],
      ['10.0.0.0/255.0.0.0', /needs a prefix length/],
      ['fe80::1%eth0', /"fe80::1%eth0" is not an IP address/],
      ['10.0.0.1,', /an entry is empty/],
      ['-1', /"-1" is not an IP address/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => trusted(value), (error: Error) => error instanceof ConfigError && /^GATEHOUSE_TRUST_PROXY /.test(error.message) && message.test(error.message), value);
    }
  });
});

describe('tokens.refreshTokenMaxLifetimeSeconds', () => {
  const maxLifetime = (tokens: Record<string, unknown>) =>
    loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET }, { tokens }).tokens.refreshTokenMaxLifetimeSeconds;
  const refused = (tokens: Record<string, unknown>, message: RegExp) =>
    assert.throws(() => maxLifetime(tokens), (error: Error) => error instanceof ConfigError && message.test(error.message), JSON.stringify(tokens));

  it('bounds a grant to a year by default', () => {
    assert.equal(maxLifetime({}), 365 * 86400);
  });

  it('reads 0 as no bound, and takes any value from one refresh token lifetime to ten years', () => {
    assert.equal(maxLifetime({ refreshTokenMaxLifetimeSeconds: 0 }), 0);
    assert.equal(maxLifetime({ refreshTokenTtlSeconds: 86400, refreshTokenMaxLifetimeSeconds: 86400 }), 86400);
    assert.equal(maxLifetime({ refreshTokenMaxLifetimeSeconds: 3650 * 86400 }), 3650 * 86400);
  });

  it('refuses a bound out of range, not a number, or shorter than one refresh token lifetime, naming the setting', () => {
    refused({ refreshTokenMaxLifetimeSeconds: 3650 * 86400 + 1 }, /^tokens\.refreshTokenMaxLifetimeSeconds must be a whole number from 0 to 315360000$/);
    refused({ refreshTokenMaxLifetimeSeconds: -1 }, /^tokens\.refreshTokenMaxLifetimeSeconds must be a whole number from 0 to /);
    refused({ refreshTokenMaxLifetimeSeconds: '365d' }, /^tokens\.refreshTokenMaxLifetimeSeconds must be a whole number /);
    refused({ refreshTokenMaxLifetimeSeconds: 60 }, /^tokens\.refreshTokenMaxLifetimeSeconds must be 0 \(no bound\) or at least tokens\.refreshTokenTtlSeconds \(2592000\)$/);
    refused({ refreshTokenTtlSeconds: 365 * 86400, refreshTokenMaxLifetimeSeconds: 364 * 86400 }, /at least tokens\.refreshTokenTtlSeconds \(31536000\)$/);
  });
});

describe('settings counted in whole seconds', () => {
  const load = (file: Record<string, Record<string, unknown>>) => loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET }, file);
  // Each becomes part of an epoch-second time that is stored (in bigint columns on PostgreSQL, which
  // refuse 1750003600.5), signed into a token, or given to Redis as a key's expiry.
  const wholeSeconds: [string, string, number][] = [
    ['tokens', 'accessTokenTtlSeconds', 3600.5],
    ['tokens', 'refreshTokenTtlSeconds', 86400.5],
    ['tokens', 'refreshTokenMaxLifetimeSeconds', 31536000.5],
    ['tokens', 'refreshTokenReuseGraceSeconds', 2.5],
    ['tokens', 'authorizationCodeTtlSeconds', 60.5],
    ['tokens', 'idTokenTtlSeconds', 3600.5],
    ['tokens', 'clientCredentialsReuseSeconds', 2.5],
    ['sessions', 'ttlSeconds', 3600.5],
    ['audit', 'retentionDays', 0.00001],
    ['apiKeys', 'retentionDays', 0.5],
    ['signup', 'windowSeconds', 60.5],
    ['projectTokens', 'maxTtlSeconds', 3600.5],
    ['projectTokens', 'defaultTtlSeconds', 3600.5],
    ['rateLimits', 'windowSeconds', 60.5],
    ['login', 'windowSeconds', 60.5],
    ['passwordReset', 'tokenTtlSeconds', 1800.5],
    ['passwordReset', 'windowSeconds', 3600.5],
    ['emailVerification', 'tokenTtlSeconds', 3600.5],
    ['emailVerification', 'windowSeconds', 3600.5],
  ];

  it('refuses a fraction of a second, naming the setting', () => {
    for (const [section, name, value] of wholeSeconds) {
      assert.throws(
        () => load({ [section]: { [name]: value } }),
        (error: Error) => error instanceof ConfigError && new RegExp(`^${section}\\.${name} must be a whole number from `).test(error.message),
        `${section}.${name}: ${value}`,
      );
    }
  });

  it('takes a fraction where a setting is a delay within the process', () => {
    const config = load({ keys: { reloadIntervalSeconds: 0.5 }, database: { queryTimeoutSeconds: 2.5 }, clients: { cacheTtlSeconds: 0.5 } });
    assert.deepEqual([config.keys.reloadIntervalSeconds, config.database.queryTimeoutSeconds, config.clients.cacheTtlSeconds], [0.5, 2.5, 0.5]);
  });
});

describe('apiKeys.retentionDays', () => {
  const load = (apiKeys?: Record<string, unknown>) => loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET }, apiKeys ? { apiKeys } : {});

  it('keeps revoked and expired API keys 30 days by default, and the sweep deletes them after that; 0 keeps them forever', () => {
    assert.equal(load().apiKeys.retentionDays, 30);
    assert.equal(sweepPolicyOf(load()).apiKeyRetentionSeconds, 30 * 86_400);
    assert.equal(sweepPolicyOf(load({ retentionDays: 0 })).apiKeyRetentionSeconds, 0);
    assert.throws(() => load({ retentionDays: -1 }), /^ConfigError: apiKeys\.retentionDays must be a whole number from 0 to 36500$/);
  });
});

describe('ports set in the environment', () => {
  const load = (env: Env) => loadConfig({ GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SECRET: TEST_SECRET, ...env });

  it('are plain decimal numbers, with spaces around them allowed', () => {
    assert.equal(load({ PORT: '8080' }).port, 8080);
    assert.equal(load({ PORT: ' 0 ' }).port, 0);
    assert.equal(load({ GATEHOUSE_METRICS_PORT: '9464' }).metrics.port, 9464);
  });

  // Number() reads hexadecimal, octal, binary and exponents, a leading + and a trailing ".0": PORT=0x10
  // listened on port 16, and PORT=8e3 on 8000, where the operator meant something else or nothing.
  it('refuse every other way of writing a number, naming the setting and the text', () => {
    for (const name of ['PORT', 'GATEHOUSE_METRICS_PORT']) {
      for (const value of ['0x10', '0o17', '0b101', '8e3', '+8080', '8080.0', '80_80', '١٢٣']) {
        assert.throws(
          () => load({ [name]: value }),
          (error: Error) => error instanceof ConfigError && error.message === `${name} must be an integer from 0 to 65535 (got "${value}")`,
          `${name}=${value}`,
        );
      }
    }
  });
});

describe('password reset and email verification at start-up', { timeout: 120_000 }, () => {
  it('says it is off without a mail server, and shows the mail server without its user and password', async () => {
    const base = { GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_DEMO: 'false' };
    const off = await startServe({ ...base, GATEHOUSE_DATA_DIR: tempDir() });
    try {
      assert.match(off.stdout(), /password reset by email: off \(set GATEHOUSE_SMTP_URL and GATEHOUSE_MAIL_FROM/);
      assert.doesNotMatch(off.stdout(), /email verification/, 'without mail there is nothing to verify with');
    } finally {
      await off.stop();
    }
    const on = await startServe({ ...base, GATEHOUSE_DATA_DIR: tempDir(), GATEHOUSE_SMTP_URL: 'smtp://mailer:hunter2-smtp@127.0.0.1:2525', GATEHOUSE_MAIL_FROM: 'Gatehouse <no-reply@example.com>' });
    try {
      assert.match(on.stdout(), /password reset by email: on, through smtp:\/\/127\.0\.0\.1:2525 from Gatehouse <no-reply@example\.com>/);
      assert.match(on.stdout(), /email verification: on, a link is mailed at sign-up/);
      assert.equal(`${on.stdout()}${on.stderr()}`.includes('hunter2'), false, 'the SMTP password is never printed');
      assert.equal(`${on.stdout()}${on.stderr()}`.includes('mailer'), false, 'nor its user');
    } finally {
      await on.stop();
    }
  });
});

describe('the master secret in embedded mode', { timeout: 180_000 }, () => {
  const servers: ServeProcess[] = [];
  after(async () => {
    for (const server of servers) await server.stop();
  });

  it('is generated into the data dir with mode 0600 and a warning, and reused by the next start', async () => {
    const dataDir = tempDir();
    const env = { GATEHOUSE_DATA_DIR: dataDir };
    const first = await startServe(env);
    servers.push(first);

    const secretPath = join(dataDir, 'secret.key');
    assert.equal(statSync(secretPath).mode & 0o777, 0o600);
    const secret = readFileSync(secretPath, 'utf8').trim();
    assert.ok(secret.length >= 32);
    const warning = first.stdout().split('\n').find((line) => line.includes('GATEHOUSE_SECRET is not set'));
    assert.ok(warning, `a warning about the generated secret:\n${first.stdout()}${first.stderr()}`);
    assert.equal(JSON.parse(warning).level, 40, 'logged at warn level');
    assert.ok(warning.includes(secretPath));
    assert.equal(first.stdout().includes(secret), false, 'the secret itself is never printed');

    const demo = parseDemo(first.stdout());
    const before = await post(`${first.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(demo.application.client_id, demo.application.client_secret) } });
    assert.equal(before.status, 200, JSON.stringify(before.body));
    const kid = decodeProtectedHeader(before.body.access_token).kid;
    await first.stop();

    // The second start decrypts the stored keys with the stored secret: same key, same clients.
    const second = await startServe(env);
    servers.push(second);
    assert.equal(readFileSync(secretPath, 'utf8').trim(), secret);
    assert.ok(second.stdout().includes('GATEHOUSE_SECRET is not set'), 'still warns');
    assert.equal(second.stdout().includes('Demo set-up'), false, 'the demo is created only once');
    assert.ok(second.stdout().includes('printed at the first start'));
    const afterRestart = await post(`${second.url}/token`, { grant_type: 'client_credentials' }, { headers: { authorization: basic(demo.application.client_id, demo.application.client_secret) } });
    assert.equal(afterRestart.status, 200, JSON.stringify(afterRestart.body));
    assert.equal(decodeProtectedHeader(afterRestart.body.access_token).kid, kid, 'the same key signs after the restart');
    const jwks = (await (await fetch(`${second.url}/jwks.json`)).json()) as JSONWebKeySet;
    const issuer = `http://localhost:${second.port}`;
    await jwtVerify(afterRestart.body.access_token, createLocalJWKSet(jwks), { issuer, audience: issuer, typ: 'at+jwt' });
    await second.stop();

    // Another secret cannot decrypt the keys: start-up stops and says which setting to check.
    const wrong = await runCli(['serve'], { ...env, PORT: '0', GATEHOUSE_SECRET: 'another-secret-that-is-also-long-enough-0123456789' }, 30_000);
    assert.equal(wrong.signal, null, 'serve started with the wrong secret');
    assert.notEqual(wrong.code, 0);
    assert.match(oneLine(wrong), /GATEHOUSE_SECRET is not the secret/);
  });

  it('is created owner-only, as are the data folder (0700) and the database (0600), even under a umask that lets others read', async () => {
    const dataDir = join(tempDir(), 'var', 'gatehouse');
    const umask = process.umask(0o022);
    let server: ServeProcess;
    try {
      server = await startServe({ GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_DEMO: 'false' });
      servers.push(server);
    } finally {
      process.umask(umask);
    }
    const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
    assert.equal(mode(dataDir), '700', 'the data folder');
    assert.equal(mode(join(dataDir, 'secret.key')), '600', 'the master secret');
    assert.equal(mode(join(dataDir, 'gatehouse.sqlite')), '600', 'the database');
    // SQLite gives its write-ahead log and shared-memory index the database file's mode.
    for (const name of ['gatehouse.sqlite-wal', 'gatehouse.sqlite-shm']) if (existsSync(join(dataDir, name))) assert.equal(mode(join(dataDir, name)), '600', name);
    await server.stop();
  });

  it('stops start-up, in one line saying how to fix it, when group or others may read secret.key, and changes nothing', async () => {
    const dataDir = tempDir();
    const env = { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_DEMO: 'false' };
    const keys = await cliJson<{ kid: string }[]>(['keys', 'list'], env);
    const secretPath = join(dataDir, 'secret.key');
    const secret = readFileSync(secretPath, 'utf8');
    const database = readFileSync(join(dataDir, 'gatehouse.sqlite'));

    // As a copy restored from a backup without its mode (cp, tar without -p) would be.
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      chmodSync(secretPath, mode);
      for (const args of [['serve'], ['keys', 'list']]) {
        const refused = await runCli(args, { ...env, PORT: '0' }, 30_000);
        assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stdout}${refused.stderr}`);
        assert.equal(
          oneLine(refused),
          `gatehouse: configuration error: ${secretPath} holds the master secret but group or others may access it (mode 0${mode.toString(8)}): restrict it to its owner with chmod 600 ${secretPath}, or set GATEHOUSE_SECRET`,
        );
        assert.equal(oneLine(refused).includes(secret.trim()), false, 'the secret is never printed');
      }
      assert.equal(statSync(secretPath).mode & 0o777, mode, 'the mode is the operator’s to change');
      assert.equal(readFileSync(secretPath, 'utf8'), secret);
      assert.deepEqual(readFileSync(join(dataDir, 'gatehouse.sqlite')), database);
    }

    chmodSync(secretPath, 0o600);
    assert.deepEqual((await cliJson<{ kid: string }[]>(['keys', 'list'], env)).map((k) => k.kid), keys.map((k) => k.kid));
    // GATEHOUSE_SECRET set: the file is not read, so its mode does not matter.
    chmodSync(secretPath, 0o644);
    assert.deepEqual((await cliJson<{ kid: string }[]>(['keys', 'list'], { ...env, GATEHOUSE_SECRET: secret.trim() })).map((k) => k.kid), keys.map((k) => k.kid));
  });

  it('is not generated again beside a database whose keys another secret encrypted: start-up stops and says to restore it', async () => {
    const dataDir = tempDir();
    const env = { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_DEMO: 'false' };
    const keys = await cliJson<{ kid: string }[]>(['keys', 'list'], env);
    const secretPath = join(dataDir, 'secret.key');
    const secret = readFileSync(secretPath, 'utf8');

    // Lost (a data folder restored without it): a new secret could never decrypt the stored keys.
    rmSync(secretPath);
    for (const args of [['serve'], ['keys', 'list']]) {
      const missing = await runCli(args, { ...env, PORT: '0' }, 30_000);
      assert.equal(missing.code, 1, `${args.join(' ')}: ${missing.stdout}${missing.stderr}`);
      const line = oneLine(missing);
      assert.ok(line.includes(`${secretPath} is missing`), line);
      assert.match(line, /restore secret\.key from a backup, or set GATEHOUSE_SECRET/);
      assert.equal(existsSync(secretPath), false, 'no new secret is written beside the database');
    }

    // Replaced by another: the error names the file the secret was read from, not GATEHOUSE_SECRET.
    writeFileSync(secretPath, 'another-secret-that-is-also-long-enough-0123456789\n', { mode: 0o600 });
    const replaced = await runCli(['keys', 'list'], env, 30_000);
    assert.equal(replaced.code, 1);
    assert.ok(oneLine(replaced).includes(`the master secret in ${secretPath} is not the secret it was stored under`), replaced.stderr);

    // Restored: the same keys as before.
    writeFileSync(secretPath, secret, { mode: 0o600 });
    assert.deepEqual((await cliJson<{ kid: string }[]>(['keys', 'list'], env)).map((k) => k.kid), keys.map((k) => k.kid));
  });
});

for (const dialect of DIALECTS) {
  describe(`serve on an empty ${dialect === 'sqlite' ? 'data dir' : 'database'} (npm start)`, { timeout: 180_000 }, () => {
    let database: TestDatabase;
    let server: ServeProcess;

    before(async () => {
      database = await createTestDatabase(dialect);
      server = await startServe(databaseEnv(database));
    });
    after(async () => {
      await server?.stop();
      await database?.drop();
    });

    it('prints the URL, the three demo clients and the demo user with curl commands that work as printed', async () => {
      const stdout = server.stdout();
      const listening = /Gatehouse is listening on (\S+) \(issuer (\S+)\)/.exec(stdout);
      assert.ok(listening, stdout);
      assert.equal(listening[1], server.url);
      const issuer = listening[2]!;
      assert.equal(issuer, `http://localhost:${server.port}`);
      assert.ok(stdout.includes(`${issuer}/.well-known/openid-configuration`));
      assert.ok(stdout.includes(dialect === 'sqlite' ? `SQLite in ${database.dataDir}` : 'PostgreSQL'));

      const demo = parseDemo(stdout);
      assert.equal(demo.user.email, 'demo@example.com');
      const commands = curlCommands(stdout);
      assert.equal(commands.length, 4, stdout);
      const jwks = createLocalJWKSet((await (await fetch(`${server.url}/jwks.json`)).json()) as JSONWebKeySet);
      const verify = (jwt: string) => jwtVerify(jwt, jwks, { issuer, audience: issuer, typ: 'at+jwt' });

      // The demo application: client credentials, with HTTP Basic as printed.
      const application = await runCurl(commands[0]!);
      assert.deepEqual(commands[0]!.user, `${demo.application.client_id}:${demo.application.client_secret}`);
      assert.equal(application.status, 200, JSON.stringify(application.body));
      assert.equal(application.body.scope, 'objects:read');
      assert.equal((await verify(application.body.access_token)).payload.client_id, demo.application.client_id);

      // The back office: an admin client gets only admin scopes.
      const admin = await runCurl(commands[1]!);
      assert.deepEqual(commands[1]!.user, `${demo.admin.client_id}:${demo.admin.client_secret}`);
      assert.equal(admin.status, 200, JSON.stringify(admin.body));
      const adminScopes = String(decodeJwt(admin.body.access_token).scope).split(' ');
      assert.deepEqual(adminScopes.sort(), ['admin:clients', 'admin:tokens', 'admin:users']);

      // The first-party app and the demo user: the password grant as a JSON body to /access_token…
      assert.equal(commands[2]!.url, `${issuer}/access_token`);
      const passwordBody = JSON.parse(commands[2]!.data[0]!);
      assert.deepEqual(passwordBody, {
        grant_type: 'password',
        client_id: demo.firstParty.client_id,
        client_secret: demo.firstParty.client_secret,
        username: demo.user.email,
        password: demo.user.password,
      });
      const signedIn = await runCurl(commands[2]!);
      assert.equal(signedIn.status, 200, JSON.stringify(signedIn.body));
      assert.deepEqual(Object.keys(signedIn.body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type']);
      const user = (await verify(signedIn.body.access_token)).payload.sub;

      // …and the refresh, with the refresh token pasted in where the command says.
      assert.ok(commands[3]!.data[0]!.includes('<refresh_token from above>'));
      const refreshed = await runCurl(commands[3]!, { '<refresh_token from above>': signedIn.body.refresh_token });
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.notEqual(refreshed.body.refresh_token, signedIn.body.refresh_token);
      assert.equal((await verify(refreshed.body.access_token)).payload.sub, user);
    });
  });
}

describe('serve on an empty data dir whose first start fails', { timeout: 120_000 }, () => {
  it('creates the demo set-up only once it can print it: the next start prints it', async () => {
    const dataDir = tempDir();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const failed = await runCli(['serve'], { GATEHOUSE_DATA_DIR: dataDir, PORT: String((taken.address() as AddressInfo).port) }, 30_000);
      assert.equal(failed.code, 1, failed.stdout);
      assert.match(oneLine(failed), /PORT: .*EADDRINUSE/);
    } finally {
      taken.close();
    }
    assert.deepEqual(await cliJson(['client', 'list'], { GATEHOUSE_DATA_DIR: dataDir }), [], 'no demo client was made that nobody saw');

    const server = await startServe({ GATEHOUSE_DATA_DIR: dataDir });
    try {
      assert.equal(parseDemo(server.stdout()).user.email, 'demo@example.com');
    } finally {
      await server.stop();
    }
  });
});

interface Credentials {
  client_id: string;
  client_secret: string;
}

/** Reads the demo set-up the way a newcomer does: by the headings `serve` prints. */
function parseDemo(stdout: string): { application: Credentials; admin: Credentials; firstParty: Credentials; user: { email: string; password: string } } {
  const section = (heading: string): string => {
    const start = stdout.indexOf(heading);
    assert.ok(start >= 0, `"${heading}" is printed:\n${stdout}`);
    return stdout.slice(start);
  };
  const value = (text: string, label: string): string => {
    const match = new RegExp(`^\\s*${label}:\\s+(\\S+)`, 'm').exec(text);
    assert.ok(match, `${label} is printed`);
    return match[1]!;
  };
  const credentials = (heading: string): Credentials => {
    const text = section(heading);
    return { client_id: value(text, 'client_id'), client_secret: value(text, 'client_secret') };
  };
  const userSection = section('Demo user');
  return {
    application: credentials('Demo application'),
    admin: credentials('Demo back office'),
    firstParty: credentials('Demo first-party app'),
    user: { email: value(userSection, 'email'), password: value(userSection, 'password') },
  };
}

interface Curl {
  url: string;
  user: string | undefined;
  headers: Record<string, string>;
  data: string[];
}

/** The curl commands in the output, with line continuations joined, read as curl would. */
function curlCommands(stdout: string): Curl[] {
  const joined = stdout.replace(/\\\n\s*/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('curl '))
    .map((line) => {
      const words = [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      const curl: Curl = { url: '', user: undefined, headers: {}, data: [] };
      for (let i = 1; i < words.length; i++) {
        const word = words[i]!;
        if (word === '-s') continue;
        else if (word === '-u') curl.user = words[++i];
        else if (word === '-d') curl.data.push(words[++i]!);
        else if (word === '-H') {
          const [name, ...rest] = words[++i]!.split(':');
          curl.headers[name!.trim().toLowerCase()] = rest.join(':').trim();
        } else if (/^https?:\/\//.test(word)) curl.url = word;
        else assert.fail(`unexpected curl argument "${word}" in: ${line}`);
      }
      assert.ok(curl.url, `a URL in: ${line}`);
      return curl;
    });
}

/** Sends what curl would send for `curl -s [-u user:pass] [-H header] -d …`: a POST. */
async function runCurl(curl: Curl, replacements: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  let body = curl.data.join('&');
  for (const [placeholder, value] of Object.entries(replacements)) body = body.replaceAll(placeholder, value);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...curl.headers };
  if (curl.user !== undefined) headers.authorization = `Basic ${Buffer.from(curl.user).toString('base64')}`;
  const response = await fetch(curl.url, { method: 'POST', headers, body });
  return { status: response.status, body: await response.json() };
}
