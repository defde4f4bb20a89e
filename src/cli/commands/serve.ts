import type { GatehouseConfig } from '../../core/config.ts';
import { createGatehouse } from '../../gatehouse.ts';
import { buildApp } from '../../http/app.ts';
import { describeDemo, seedDemo } from '../demo.ts';

/** Serves Gatehouse until SIGTERM or SIGINT, then finishes the requests in flight and exits. */
export async function serveCommand(config: GatehouseConfig): Promise<void> {
  const gatehouse = await createGatehouse(config);
  const { logger } = gatehouse;
  if (config.secretGeneratedAt) {
    logger.warn(`GATEHOUSE_SECRET is not set: using the secret generated into ${config.secretGeneratedAt}. Set GATEHOUSE_SECRET in production.`);
  }
  const app = buildApp(gatehouse);
  const demo = await seedDemo(gatehouse);
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;

  const lines = [`Gatehouse is listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port} (issuer ${config.issuer})`];
  lines.push(`  database: ${config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `SQLite in ${config.dataDir}`}`);
  lines.push(`  discovery: ${config.issuer}/.well-known/openid-configuration`);
  if (demo) lines.push(describeDemo(config.issuer, demo));
  else lines.push('  the demo clients and user were printed at the first start; `npx gatehouse client list` shows the clients and `npx gatehouse client rotate-secret CLIENT_ID` gives a new secret');
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: finishing requests in flight`);
    await app.close();
    await gatehouse.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
