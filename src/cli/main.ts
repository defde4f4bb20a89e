#!/usr/bin/env node
import pino from 'pino';
import { ValidationError } from '../core/validation.ts';
import { ConfigError, loadConfig } from '../core/config.ts';
import { createGatehouse, openStorage } from '../gatehouse.ts';
import { EmailTakenError } from '../storage/repositories/users.ts';
import { apiKeyCommand, apiKeyUsage } from './commands/apikeys.ts';
import { auditCommand, auditUsage } from './commands/audit.ts';
import { clientCommand, clientUsage } from './commands/clients.ts';
import { grantCommand, grantUsage } from './commands/grants.ts';
import { keysCommand, keysUsage } from './commands/keys.ts';
import { serveCommand, serveUsage } from './commands/serve.ts';
import { userCommand, userUsage } from './commands/users.ts';
import { argumentsOf, output, UsageError } from './output.ts';

const usage = `Usage:
${serveUsage}
gatehouse migrate               apply pending database migrations
${clientUsage}
${userUsage}
${grantUsage}
${apiKeyUsage}
${keysUsage}
${auditUsage}`;

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  // The arguments are checked before the configuration is read, which may generate a master secret
  // into the data folder, and before the database is opened (or the SQLite file created): a command
  // called wrongly answers at once and leaves everything as it was.
  if (command === 'serve') return serveCommand(args)(loadConfig());
  if (command === 'migrate') {
    argumentsOf('migrate', args, []);
    const storage = await openStorage(loadConfig());
    await storage.close();
    output(args.includes('--json')).print({ migrated: true }, () => 'migrations applied');
    return;
  }
  const handlers = { client: clientCommand, user: userCommand, apikey: apiKeyCommand, keys: keysCommand, audit: auditCommand, grant: grantCommand } as const;
  if (!Object.hasOwn(handlers, command)) throw new UsageError(`unknown command "${command}"`);
  const run = await handlers[command as keyof typeof handlers](args);
  const config = loadConfig();
  const out = output(args.includes('--json'));
  const gatehouse = await createGatehouse(config, { background: false, logger: pino({ level: 'silent' }) });
  try {
    await run(gatehouse, out);
  } finally {
    await gatehouse.close();
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`gatehouse: ${(error as Error).message}\n\n${usage}\n`);
    process.exit(2);
  }
  if (error instanceof ConfigError) process.stderr.write(`gatehouse: configuration error: ${error.message}\n`);
  else if (error instanceof ValidationError) process.stderr.write(`gatehouse: ${error.field}: ${error.message}\n`);
  else if (error instanceof EmailTakenError || error instanceof Error) process.stderr.write(`gatehouse: ${error.message}\n`);
  else process.stderr.write(`gatehouse: ${String(error)}\n`);
  process.exit(1);
});
