// Child processes for the servers under test: started pinned, their output kept aside (shown only
// when something fails, so a healthy run prints just the results), and always stopped.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pinned } from './pinning.ts';

const OUTPUT_TAIL_CHARS = 20_000;
const STOP_GRACE_MS = 5_000;

export interface ChildOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The core to pin the process to, or undefined to leave it unpinned. */
  core: number | undefined;
}

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** The last part of what the process wrote to stdout and stderr. */
  output(): string;
  /** Resolves once the process has exited, whether stopped or crashed. */
  readonly exited: Promise<void>;
  stop(): Promise<void>;
}

const running = new Set<Child>();

export function startChild(name: string, command: string, args: readonly string[], options: ChildOptions): Child {
  const [file, argv] = pinned(options.core, command, args);
  const child = spawn(file, argv, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });

  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  let hasExited = false;
  const exited = new Promise<void>((resolve) => {
    child.on('error', (error) => {
      keep(Buffer.from(`\n${error.message}\n`));
      hasExited = true;
      resolve();
    });
    child.on('exit', () => {
      hasExited = true;
      resolve();
    });
  });

  const handle: Child = {
    name,
    process: child,
    output: () => output,
    exited,
    async stop() {
      running.delete(handle);
      if (hasExited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(handle);
  void exited.then(() => running.delete(handle));
  return handle;
}

/** Stops every child still running (on error or interrupt). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map((child) => child.stop()));
}

/** Last resort on process exit, where nothing asynchronous runs any more. */
export function killAllChildrenNow(): void {
  for (const child of running) child.process.kill('SIGKILL');
  running.clear();
}

/**
 * Polls `url` until it answers 200. Gives up early when the process dies, with its output, since a
 * crash at start-up is the usual reason a server never becomes ready.
 */
export async function waitUntilReady(child: Child, url: string, init: RequestInit = {}, timeoutMs = 30_000): Promise<void> {
  let died = false;
  void child.exited.then(() => {
    died = true;
  });
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no answer';
  while (Date.now() < deadline) {
    if (died) throw childFailure(child, `${child.name} exited before it was ready`);
    try {
      const response = await fetch(url, { ...init, signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
      lastProblem = `HTTP ${response.status}`;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    await sleep(100);
  }
  throw childFailure(child, `${child.name} was not ready within ${timeoutMs / 1000} s (${url}: ${lastProblem})`);
}

/** An error whose message carries the child's output, so a failure explains itself. */
export function childFailure(child: Child, message: string): Error {
  const output = child.output().trim();
  return new Error(output ? `${message}\n--- ${child.name} output (last part) ---\n${output}` : message);
}

/** A port free at the time of asking; a server started right after will almost always get it. */
export async function findFreePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not determine a free port');
  return address.port;
}

/** Runs a command to completion (unpinned: it is set-up, not measured) and returns its stdout. */
export async function runToCompletion(command: string, args: readonly string[], options: Omit<ChildOptions, 'core'>): Promise<string> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) {
    throw new Error(`${[command, ...args].join(' ')} failed with exit code ${code}\n${stderr}${stdout}`.trim());
  }
  return stdout;
}

/**
 * CPU time a process has used so far, all its threads together, in microseconds: from Linux's
 * /proc/PID/task/TID/schedstat (nanoseconds on the CPU). Undefined where /proc is missing. Time
 * the hypervisor took from a virtual machine is not in it; a host that slows the machine down
 * still lengthens it, so figures compare within a run, like rates.
 */
export function cpuMicros(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  let nanos = 0;
  try {
    for (const thread of readdirSync(`/proc/${pid}/task`)) {
      try {
        nanos += Number(readFileSync(`/proc/${pid}/task/${thread}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // A thread that ended between the listing and the read used no more.
      }
    }
  } catch {
    return undefined;
  }
  return nanos / 1000;
}
