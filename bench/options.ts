// Settings from the environment, so that `npm run bench` needs no arguments.
import { SERVER_NAMES } from './servers.ts';
import type { ServerName } from './servers.ts';

export interface BenchOptions {
  durationSeconds: number;
  warmupSeconds: number;
  connections: number;
  servers: ServerName[];
}

export function readOptions(env: NodeJS.ProcessEnv): BenchOptions {
  return {
    durationSeconds: integer(env, 'BENCH_DURATION', 10, 1),
    warmupSeconds: integer(env, 'BENCH_WARMUP', 3, 0),
    connections: integer(env, 'BENCH_CONNECTIONS', 10, 1),
    servers: serverList(env.BENCH_ONLY),
  };
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be a whole number ≥ ${min} (got "${raw}")`);
  }
  return value;
}

/** Keeps the fixed order floor, oidc-provider, gatehouse whatever order BENCH_ONLY lists them in. */
function serverList(raw: string | undefined): ServerName[] {
  if (!raw?.trim()) return [...SERVER_NAMES];
  const wanted = raw.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = wanted.filter((name) => !(SERVER_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY names unknown servers: ${unknown.join(', ')} (known: ${SERVER_NAMES.join(', ')})`);
  }
  return SERVER_NAMES.filter((name) => wanted.includes(name));
}
