import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestDatabase } from '../support/databases.ts';
import { TEST_SECRET } from '../support/server.ts';

/**
 * The CLI as an operator runs it: a real process on the sources (type stripping), so these tests
 * never depend on a stale build.
 */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'src/cli/main.ts');

export type Env = Record<string, string>;

/**
 * The parent's environment without any Gatehouse setting (nor the variables in `alsoDrop`), so each
 * test says exactly what it sets.
 */
function baseEnv(alsoDrop: readonly string[] = []): Env {
  const env: Env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith('GATEHOUSE_') || ['PORT', 'HOST', 'DATABASE_URL', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS', ...alsoDrop].includes(key)) continue;
    env[key] = value;
  }
  return env;
}

/** The settings a child needs to reach a test database of either dialect. */
export function databaseEnv(database: TestDatabase): Env {
  return database.databaseUrl
    ? { DATABASE_URL: database.databaseUrl, GATEHOUSE_SECRET: TEST_SECRET, GATEHOUSE_DATA_DIR: database.dataDir }
    : { GATEHOUSE_DATA_DIR: database.dataDir };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  /** Variables of the parent's environment not to pass on, besides the Gatehouse settings. */
  dropEnv?: readonly string[];
  /** What the process reads on its standard input (none: no standard input at all). */
  input?: string;
}

/** A `gatehouse ARGS…` child process whose outputs are collected. */
export interface GatehouseProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Has the process exited? */
  exitedAlready(): boolean;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns `gatehouse ARGS…` on the sources with `env` over the parent's environment without its Gatehouse settings. */
export function spawnGatehouse(args: string[], env: Env, options: SpawnOptions = {}): GatehouseProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...baseEnv(options.dropEnv), ...env }, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (options.input !== undefined) child.stdin!.end(options.input);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let hasExited = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      hasExited = true;
      resolve({ code, signal });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exitedAlready: () => hasExited,
    exited,
    async stop(graceMs = 10_000) {
      if (hasExited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * `gatehouse ARGS…` in a child process of its own, which the caller may kill; killed after
 * `timeoutMs`. `result` resolves once it has exited and its outputs are closed. With `onError`,
 * a child that cannot be spawned (or signalled) is reported there.
 */
export function startCli(args: string[], env: Env, options: SpawnOptions & { timeoutMs?: number; onError?: (error: Error) => void } = {}): { child: ChildProcess; result: Promise<CliResult> } {
  const { child, stdout, stderr } = spawnGatehouse(args, env, options);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const { onError } = options;
  if (onError) {
    child.on('error', (error) => {
      clearTimeout(timer);
      onError(error);
    });
  }
  const result = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: stdout(), stderr: stderr() });
    });
  });
  return { child, result };
}

/** Runs `gatehouse ARGS…` to completion (killed after `timeoutMs`). */
export function runCli(args: string[], env: Env, timeoutMs = 60_000, input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    startCli(args, env, { timeoutMs, onError: reject, input }).result.then(resolve);
  });
}

/** Runs a `--json` command that must succeed and returns what it printed, parsed. */
export async function cliJson<T = any>(args: string[], env: Env): Promise<T> {
  const result = await runCli([...args, '--json'], env);
  assert.equal(result.code, 0, `gatehouse ${args.join(' ')} --json exited with ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** The single line a failed command printed, asserting that it is a single line. */
export function oneLine(result: CliResult): string {
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^gatehouse: /);
  return lines[0]!;
}

/** A port nobody listens on right now: the kernel picks one, and it is handed over at once. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Writes a configuration file: the shipped one with `changes` merged into its sections. Returns
 * its path, for GATEHOUSE_CONFIG.
 */
export function writeConfig(dir: string, changes: Record<string, Record<string, unknown>>, name = 'gatehouse.json'): string {
  const shipped = JSON.parse(readFileSync(join(ROOT, 'config/gatehouse.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  for (const [section, values] of Object.entries(changes)) shipped[section] = { ...shipped[section], ...values };
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(shipped, null, 2));
  return path;
}

/** Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface ServeProcess extends GatehouseProcess {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
}

/**
 * Starts `gatehouse serve` on a free port and resolves once `/healthz` answers and the start-up
 * banner is printed. Rejects with the process's output when it exits first.
 */
export async function startServe(env: Env, options: { port?: number; timeoutMs?: number } = {}): Promise<ServeProcess> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const serve: ServeProcess = { ...spawnGatehouse(['serve'], { ...env, PORT: String(port) }), url, port };
  try {
    const outcome = await waitFor(
      'gatehouse serve to answer /healthz',
      async () => {
        if (serve.exitedAlready()) return 'exited';
        const response = await fetch(`${url}/healthz`);
        return response.status === 200 && serve.stdout().includes('Gatehouse is listening') ? 'ready' : undefined;
      },
      options.timeoutMs ?? 60_000,
    );
    if (outcome === 'exited') throw new Error(`it exited with ${(await serve.exited).code}`);
  } catch (error) {
    await serve.stop();
    throw new Error(`gatehouse serve did not start (${(error as Error).message})\nstdout:\n${serve.stdout()}\nstderr:\n${serve.stderr()}`);
  }
  return serve;
}
