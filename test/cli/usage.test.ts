import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from './support.ts';

describe('a usage error', { timeout: 180_000 }, () => {
  const parent = mkdtempSync(join(tmpdir(), 'gatehouse-usage-'));
  after(() => rmSync(parent, { recursive: true, force: true }));

  const cases = [
    ['frobnicate'],
    ['migrate', 'now'],
    ['serve', '--workers', 'many'],
    ['client', 'frobnicate'],
    ['client', 'create', '--name', 'x', '--bogus'],
    ['client', 'show'],
    ['client', 'update'],
    ['client', 'update', 'app_one'],
    ['client', 'update', 'app_one', '--admin', '--no-admin'],
    ['client', 'update', 'app_one', '--redirect-uri', 'https://app.example/cb', '--no-redirect-uri'],
    ['client', 'update', 'app_one', '--name'],
    ['client', 'update', 'app_one', 'app_two', '--name', 'x'],
    ['client', 'secret'],
    ['client', 'secret', 'frobnicate', 'app_one'],
    ['client', 'secret', 'list'],
    ['client', 'secret', 'add', 'app_one', '--expires-at', 'next week'],
    ['client', 'secret', 'add', 'app_one', '--expires-at', '2001-01-01T00:00:00Z'],
    ['client', 'secret', 'revoke', 'app_one'],
    ['client', 'secret', 'list', 'app_one', '--expires-at', '2099-01-01T00:00:00Z'],
    ['user', 'disable'],
    ['user', 'set-password', 'ada@example.com'],
    ['apikey', 'create', 'app_one'],
    ['apikey', 'create', 'app_one', '--name', 'x', '--expires-at', 'soon'],
    ['keys', 'rotate', 'now'],
    ['keys', 'reencrypt', 'all'],
    ['audit', 'tail', '--limit', 'all'],
    ['grant'],
    ['grant', 'frobnicate'],
    ['grant', 'list', '--limit', '0'],
    ['grant', 'list', '--limit', 'ten'],
    ['grant', 'list', '--user'],
    ['grant', 'list', 'extra'],
    ['grant', 'revoke'],
    ['grant', 'revoke', 'grant_one', 'grant_two'],
    ['grant', 'revoke', 'grant_one', '--user', 'ada@example.com'],
  ];

  it('answers with the message and the usage, exit 2, before the database is opened: nothing is created in the data folder', async () => {
    for (const [i, args] of cases.entries()) {
      const dataDir = join(parent, `data-${i}`);
      const result = await runCli(args, { GATEHOUSE_DATA_DIR: dataDir });
      const what = `gatehouse ${args.join(' ')}`;
      assert.equal(result.code, 2, `${what}: exit ${result.code}\n${result.stderr}`);
      assert.match(result.stderr, /^gatehouse: .+\n\nUsage:\n/, what);
      assert.equal(result.stdout, '', what);
      assert.equal(existsSync(dataDir), false, `${what} created ${dataDir} (the SQLite file or the master secret)`);
    }
  });

  it('lists the new commands in the usage', async () => {
    const help = await runCli(['help'], {});
    assert.equal(help.code, 0);
    for (const line of [
      'gatehouse client update CLIENT_ID',
      'gatehouse client secret list CLIENT_ID',
      'gatehouse client secret add CLIENT_ID [--expires-at ISO]',
      'gatehouse client secret revoke CLIENT_ID SECRET_ID',
      'gatehouse grant list [--user USER_ID|EMAIL] [--client CLIENT_ID] [--limit N]',
      'gatehouse grant revoke GRANT_ID',
    ]) {
      assert.ok(help.stdout.includes(line), `the usage has "${line}"`);
    }
  });
});
