// Server and load generator on separate cores: on a shared core they would steal cycles from each
// other and the numbers would measure the scheduler as much as the server.
import { spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:os';

/** Set in the re-executed bench process, so that it does not re-execute itself again. */
export const PINNED_FLAG = 'BENCH_PINNED';

/** Whether `taskset` exists here and is allowed to bind a process to `core`. */
export function canPinTo(core: number): boolean {
  const probe = spawnSync('taskset', ['-c', String(core), 'true'], { stdio: 'ignore' });
  return probe.status === 0;
}

/** `command args…`, run under `taskset -c core` when a core is given. */
export function pinned(core: number | undefined, command: string, args: readonly string[]): [string, string[]] {
  return core === undefined ? [command, [...args]] : ['taskset', ['-c', String(core), command, ...args]];
}

/**
 * Runs this very script again under `taskset -c core` and mirrors its exit. The terminal sends
 * Ctrl-C to the whole process group; a signal sent to this process alone is passed on, so the
 * pinned process always gets the chance to stop its servers.
 */
export function relaunchPinned(core: number): void {
  const [command, args] = pinned(core, process.execPath, [...process.execArgv, ...process.argv.slice(1)]);
  const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, [PINNED_FLAG]: '1' } });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + (signal ? constants.signals[signal] : 1);
  });
}
