import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { describeSmtpUrl, type GatehouseConfig } from '../../core/config.ts';
import { createGatehouse } from '../../gatehouse.ts';
import { buildApp } from '../../http/app.ts';
import { createMetrics, gatherWorkerMetrics, metricsApp } from '../../http/metrics.ts';
import { countForWorkers } from '../../core/rate-limit/primary-counts.ts';
import { limitsCountedByPrimary } from '../../rate-limiters.ts';
import { describeDemo, seedDemo, type DemoSetup } from '../demo.ts';
import { UsageError } from '../output.ts';
import { SERVER_NODE_OPTIONS } from '../runtime.ts';

export const serveUsage = `gatehouse serve [--workers N]   serve Gatehouse (settings come from the environment; see README)`;

/**
 * Serves Gatehouse until SIGTERM or SIGINT, then finishes the requests in flight and exits.
 * With `--workers N` (default: one per core when NODE_ENV=production) the primary prepares the
 * database once and N worker processes share the port (node:cluster); a worker that dies is
 * replaced.
 */
export function serveCommand(args: string[]): (config: GatehouseConfig) => Promise<void> {
  const { values } = parseArgs({ args, options: { workers: { type: 'string' } } });
  const workers = values.workers === undefined ? (process.env.NODE_ENV === 'production' ? availableParallelism() : 1) : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new UsageError('--workers must be a whole number from 1 to 256');
  return (config) => serve(config, workers);
}

/**
 * Set in the environment of the workers whose primary counts their rate limits (no REDIS_URL): a
 * process started as a cluster worker by anything else (a process manager's cluster mode) counts
 * in process, and waits for no primary that would never answer.
 */
const LIMITS_COUNTED_BY_PRIMARY = 'GATEHOUSE_LIMITS_COUNTED_BY_PRIMARY';

async function serve(config: GatehouseConfig, workers: number): Promise<void> {
  if (cluster.isWorker) return serveOnce(config, { seed: false, announce: false, limitsCountedByPrimary: process.env[LIMITS_COUNTED_BY_PRIMARY] === '1' });
  if (workers === 1) return serveOnce(config, { seed: true, announce: true });

  // Migrations and keys are set up once, before the workers race for them.
  await (await createGatehouse(config, { background: false, logger: pino({ level: 'silent' }) })).close();

  let stopping = false;
  let exitCode = 0;
  // The workers still running, counted here: node:cluster keeps a worker in `cluster.workers`
  // until both its 'exit' and its 'disconnect' have come, in either order, so an emptiness check
  // on 'exit' alone can miss the last one and leave the primary waiting for ever.
  const running = new Set<number>();
  let served = false;
  let quickExits = 0;
  // Without Redis, the primary counts the security limits for every worker: with N workers each
  // counting on its own, an attacker would get N times each of them.
  if (!config.redisUrl) countForWorkers(limitsCountedByPrimary(config));
  const fork = () => {
    const worker = cluster.fork(config.redisUrl ? {} : { [LIMITS_COUNTED_BY_PRIMARY]: '1' });
    const startedAt = Date.now();
    running.add(worker.id);
    worker.on('exit', (code, signal) => {
      running.delete(worker.id);
      if (stopping) {
        if (running.size === 0) process.exit(exitCode);
        return;
      }
      quickExits = Date.now() - startedAt < QUICK_EXIT_MS ? quickExits + 1 : 0;
      if (!served && quickExits >= START_ATTEMPTS) {
        process.stderr.write(`gatehouse: the workers exited ${quickExits} times in a row without ever serving (their errors are above); stopping\n`);
        exitCode = 1;
        return stop();
      }
      const delay = restartDelay(quickExits);
      process.stderr.write(`gatehouse: worker exited (${signal ?? code}); starting another${delay > 0 ? ` in ${delay / 1000} s` : ''}\n`);
      setTimeout(() => stopping || fork(), delay);
    });
  };
  cluster.setupPrimary({ execArgv: [...process.execArgv, ...SERVER_NODE_OPTIONS.filter((option) => !process.execArgv.includes(option))] });
  // A scrape of /metrics reaches one worker, which asks the primary for the sum over all of them;
  // on a metrics port of its own, the primary answers it.
  const gathered = gatherWorkerMetrics();
  const metricsServer = config.metrics.port === undefined ? undefined : metricsApp(gathered, pino({ level: config.logLevel }));
  const metricsPort = metricsServer && (await listenForMetrics(metricsServer, config));
  for (let i = 0; i < workers; i++) fork();
  let listening = 0;
  cluster.on('listening', () => {
    served = true;
    if (++listening !== workers) return;
    // The demo once every worker serves, as in a single process: its secrets are printed this once.
    (config.demo ? seedDemoApart(config) : Promise.resolve(undefined)).then(
      (demo) => announce(config, config.port, demo, metricsPort, `${workers} workers`),
      (error: unknown) => {
        process.stderr.write(`gatehouse: the demo set-up could not be made (${(error as Error).message}); stopping\n`);
        exitCode = 1;
        stop();
      },
    );
  });
  function stop() {
    if (stopping) return;
    stopping = true;
    if (running.size === 0) process.exit(exitCode);
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  }
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** The demo set-up on an empty database, for the primary of `serve --workers N`, which serves nothing itself. */
async function seedDemoApart(config: GatehouseConfig): Promise<DemoSetup | undefined> {
  const gatehouse = await createGatehouse(config, { background: false, logger: pino({ level: 'silent' }) });
  try {
    return await seedDemo(gatehouse);
  } finally {
    await gatehouse.close();
  }
}

/** A worker that exits sooner than this after its start failed to start, or fails again at once. */
const QUICK_EXIT_MS = 10_000;
/**
 * Workers exiting at once in a row, none having ever served, after which the primary stops with an
 * error, as a single process that cannot start does (a port taken, a database refusing the
 * credentials): an orchestrator sees the failure instead of a primary forking for ever.
 */
const START_ATTEMPTS = 5;

/**
 * How long to wait before replacing a worker, after `quickExits` workers in a row exited at once: no
 * wait for one (a worker killed or crashed after serving is replaced at once), then half a second,
 * doubling up to 30 s, so workers that cannot start (a database gone) do not restart in a busy loop.
 */
function restartDelay(quickExits: number): number {
  return quickExits <= 1 ? 0 : Math.min(30_000, 500 * 2 ** (quickExits - 2));
}

async function serveOnce(config: GatehouseConfig, options: { seed: boolean; announce: boolean; limitsCountedByPrimary?: boolean }): Promise<void> {
  const gatehouse = await createGatehouse(config, { limitsCountedByPrimary: options.limitsCountedByPrimary });
  const { logger } = gatehouse;
  if (config.secretGeneratedAt && options.announce) {
    logger.warn(`GATEHOUSE_SECRET is not set: using the secret generated into ${config.secretGeneratedAt}. Set GATEHOUSE_SECRET in production.`);
  }
  // With a metrics port, /metrics is served there: by this process, or by the primary for its workers.
  const metrics = config.metrics.port === undefined ? undefined : createMetrics(gatehouse);
  const app = buildApp(gatehouse, { metrics });
  const metricsServer = metrics && !cluster.isWorker ? metricsApp(() => metrics.registry.metrics(), logger) : undefined;
  await listenAt(app, config.port, config.host, MAIN_ADDRESS);
  const metricsPort = metricsServer && (await listenForMetrics(metricsServer, config));
  // Once nothing is left that can stop the start: the demo's secrets are printed this once, so a
  // set-up made by a start that then failed would never be shown, and the next start would make none.
  const demo = options.seed && config.demo ? await seedDemo(gatehouse) : undefined;
  if (options.announce) announce(config, portOf(app) ?? config.port, demo, metricsPort);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: finishing requests in flight`);
    await Promise.all([app.close(), metricsServer?.close()]);
    await gatehouse.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/** Listens on the metrics port; returns the port (the one the system chose, for 0). */
async function listenForMetrics(server: FastifyInstance, config: GatehouseConfig): Promise<number> {
  await listenAt(server, config.metrics.port!, config.metrics.host, { port: 'GATEHOUSE_METRICS_PORT', host: 'GATEHOUSE_METRICS_HOST' });
  return portOf(server) ?? config.metrics.port!;
}

const MAIN_ADDRESS = { port: 'PORT', host: 'HOST' };

/**
 * Listens, or fails with one line naming the setting to change: the port when it is taken or
 * needs privileges, the address when it names none or none of this machine's.
 */
async function listenAt(server: FastifyInstance, port: number, host: string, settings: { port: string; host: string }): Promise<void> {
  try {
    await server.listen({ port, host });
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    const setting = code === 'EADDRINUSE' || code === 'EACCES' ? settings.port : settings.host;
    throw new Error(`${setting}: cannot listen on ${hostInUrl(host)}:${port} (${message})`, { cause: error });
  }
}

function portOf(app: FastifyInstance): number | undefined {
  const address = app.server.address();
  return typeof address === 'object' && address ? address.port : undefined;
}

const hostInUrl = (host: string) => (host.includes(':') ? `[${host}]` : host);

function announce(config: GatehouseConfig, port: number, demo: DemoSetup | undefined, metricsPort: number | undefined, processes?: string): void {
  const lines = [`Gatehouse is listening on http://${hostInUrl(config.host)}:${port} (issuer ${config.issuer}${processes ? `, ${processes}` : ''})`];
  if (metricsPort !== undefined) lines.push(`  metrics: http://${hostInUrl(config.metrics.host)}:${metricsPort}/metrics (not on the main port)`);
  lines.push(`  database: ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `SQLite in ${config.dataDir}`}`);
  lines.push(`  discovery: ${config.issuer}/.well-known/openid-configuration`);
  lines.push(`  sign in: ${config.issuer}/login   developer portal: ${config.issuer}/developers`);
  // The SMTP URL without its user and password: it is a secret.
  lines.push(
    config.mail.smtpUrl
      ? `  password reset by email: on, through ${describeSmtpUrl(config.mail.smtpUrl)} from ${config.mail.from}`
      : '  password reset by email: off (set GATEHOUSE_SMTP_URL and GATEHOUSE_MAIL_FROM to let people reset a forgotten password)',
  );
  if (config.mail.smtpUrl) lines.push(`  email verification: ${config.signup.verifyEmail ? 'on, a link is mailed at sign-up and from the account page' : 'off (signup.verifyEmail is false)'}`);
  if (demo) lines.push(describeDemo(config.issuer, demo));
  else if (!config.demo) lines.push('  no demo set-up (GATEHOUSE_DEMO is off): create clients and users with `npx gatehouse client create` and `npx gatehouse user create`');
  else lines.push('  the demo clients and user were printed at the first start; `npx gatehouse client list` shows the clients and `npx gatehouse client rotate-secret CLIENT_ID` gives a new secret');
  process.stdout.write(`${lines.join('\n')}\n`);
}
