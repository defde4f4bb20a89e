// Settings from the environment, so that `npm run bench` needs no arguments.
import { SERVER_NAMES } from './servers.ts';
import type { ServerName } from './servers.ts';

/** The Gatehouse flows measured after the client_credentials comparison, in this order. */
export const FLOW_NAMES = [
  'refresh-sqlite',
  'refresh-postgres',
  'authorization-code',
  'introspection',
  'api-key-introspection',
  'sdk-verify',
  'memory',
] as const;
export type FlowName = (typeof FLOW_NAMES)[number];

export interface BenchOptions {
  /** Seconds each flow and the SDK loop are measured. */
  durationSeconds: number;
  warmupSeconds: number;
  connections: number;
  /**
   * How many times the servers are measured, one after the other in each round. A ratio is taken
   * within each round, then the median over the rounds: a machine that speeds up or slows down
   * between rounds moves the servers of a round together, and one bad round cannot decide.
   */
  rounds: number;
  /** Seconds each server is measured in each round: short, so that the servers of a round share the machine's conditions. */
  roundSeconds: number;
  servers: ServerName[];
  flows: FlowName[];
}

export function readOptions(env: NodeJS.ProcessEnv): BenchOptions {
  return {
    durationSeconds: integer(env, 'BENCH_DURATION', 10, 1),
    warmupSeconds: integer(env, 'BENCH_WARMUP', 10, 0),
    connections: integer(env, 'BENCH_CONNECTIONS', 10, 1),
    rounds: integer(env, 'BENCH_ROUNDS', 10, 1),
    roundSeconds: integer(env, 'BENCH_ROUND_SECONDS', 2, 1),
    ...selection(env.BENCH_ONLY),
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

/**
 * Keeps the fixed order (floor, oidc-provider, gatehouse, then the flows) whatever order BENCH_ONLY
 * lists them in; everything when BENCH_ONLY is unset.
 */
function selection(raw: string | undefined): { servers: ServerName[]; flows: FlowName[] } {
  if (!raw?.trim()) return { servers: [...SERVER_NAMES], flows: [...FLOW_NAMES] };
  const known: readonly string[] = [...SERVER_NAMES, ...FLOW_NAMES];
  const wanted = raw.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = wanted.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new Error(`BENCH_ONLY names unknown servers or flows: ${unknown.join(', ')} (known: ${known.join(', ')})`);
  }
  return {
    servers: SERVER_NAMES.filter((name) => wanted.includes(name)),
    flows: FLOW_NAMES.filter((name) => wanted.includes(name)),
  };
}
