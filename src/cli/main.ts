#!/usr/bin/env node
import pino from 'pino';
import { ValidationError } from '../core/applications.ts';
import { ConfigError, loadConfig } from '../core/config.ts';
import { createGatehouse, openStorage } from '../gatehouse.ts';
import { EmailTakenError } from '../storage/repositories.ts';
import { apiKeyCommand, apiKeyUsage } from './commands/apikeys.ts';
import { auditCommand, auditUsage } from './commands/audit.ts';
import { clientCommand, clientUsage } from './commands/clients.ts';
import { keysCommand, keysUsage } from './commands/keys.ts';
import { serveCommand, serveUsage } from './commands/serve.ts';
import { userCommand, userUsage } from './commands/users.ts';
import { output, UsageError } from './output.ts';

const usage = `Usage:
${serveUsage}
gatehouse migrate               apply pending database migrations
${clientUsage}
${userUsage}
${apiKeyUsage}
${keysUsage}
${auditUsage}`;

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const config = loadConfig();
  if (command === 'serve') return serveCommand(config, args);
  if (command === 'migrate') {
    const storage = await openStorage(config);
    await storage.close();
    process.stdout.write('migrations applied\n');
    return;
  }
  const handlers = { client: clientCommand, user: userCommand, apikey: apiKeyCommand, keys: keysCommand, audit: auditCommand } as const;
  if (!Object.hasOwn(handlers, command)) throw new UsageError(`unknown command "${command}"`);
  const out = output(args.includes('--json'));
  const gatehouse = await createGatehouse(config, { background: false, logger: pino({ level: 'silent' }) });
  try {
    await handlers[command as keyof typeof handlers](gatehouse, args, out);
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
