// The results as a table for people and as JSON for comparing runs over time.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FlowResult } from './flows.ts';
import type { LoadResult } from './load.ts';
import type { MemoryResult } from './memory.ts';
import type { BenchOptions, FlowName } from './options.ts';
import type { SdkResult } from './sdk.ts';
import type { ServerName } from './servers.ts';

export interface ServerResult extends LoadResult {
  server: ServerName;
  /** Requests/s of the server in each round, in the order of the rounds (the figures above are the median round's). */
  rounds?: number[];
  /** Microseconds of the server process's CPU (all threads) per request answered in a round, where /proc tells. */
  cpuMicrosPerRequest?: number;
  /** `cpuMicrosPerRequest` of each round, in the order of the rounds. */
  cpuRounds?: number[];
}

export interface Ratio {
  name: string;
  /**
   * One requests/s divided by the other (Gatehouse's by another server's); null when one of them was
   * not run. Between two servers, the median of the ratios taken within each round.
   */
  value: number | null;
  /** Between two servers, the ratio within each round, in the order of the rounds. */
  rounds?: number[];
  target: number;
  met: boolean | null;
}

export interface Environment {
  node: string;
  cpu: string;
  serverCore: number | null;
  loadCore: number | null;
}

const times = (n: number) => `${n.toFixed(2)}×`;
const percent = (n: number) => `${(n * 100).toFixed(1)} %`;

/**
 * The goals Gatehouse is held to: well ahead of the reference, not far behind bare Fastify, and a
 * refresh on PostgreSQL (which reads and writes the database on every request) not too far behind
 * client_credentials (which touches no database), measured in the same run.
 */
const TARGETS = [
  { name: 'Gatehouse / oidc-provider', of: 'gatehouse', against: 'oidc-provider', target: 6, format: times, onlyWith: undefined },
  { name: 'Gatehouse / floor', of: 'gatehouse', against: 'floor', target: 0.75, format: percent, onlyWith: undefined },
  { name: 'refresh-postgres / client_credentials', of: 'refresh-postgres', against: 'gatehouse', target: 0.25, format: percent, onlyWith: 'refresh-postgres' },
] as const;

/** The middle value; of an even number, the lower of the two in the middle (a value that was measured). */
function median(values: readonly number[]): number {
  return values.toSorted((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;
}

/**
 * The result of the median round (by requests/s) of one server or flow, with its requests/s in every
 * round, and `pick`'s figure of every round where each round has one.
 */
function medianRound<Result extends LoadResult>(measured: readonly Result[], pick: (result: Result) => number | undefined) {
  const rates = measured.map((result) => result.requestsPerSecond);
  const middle = measured.find((result) => result.requestsPerSecond === median(rates))!;
  const figures = measured.flatMap((result) => (pick(result) === undefined ? [] : [pick(result)!]));
  return { middle, rates, figures: figures.length === measured.length ? figures : undefined };
}

/** Each server's result of its median round (by requests/s), with its requests/s and CPU per request in every round. */
export function medianOfRounds(rounds: readonly (readonly ServerResult[])[]): ServerResult[] {
  const names = [...new Set(rounds.flat().map((result) => result.server))];
  return names.map((name) => {
    const measured = rounds.flatMap((round) => round.filter((result) => result.server === name));
    const { middle, rates, figures: cpu } = medianRound(measured, (result) => result.cpuMicrosPerRequest);
    return { ...middle, rounds: rates, ...(cpu && { cpuRounds: cpu }) };
  });
}

/**
 * A flow measured in the servers' rounds: its median round (by requests/s), with its requests/s in
 * every round and the median of its CPU figures.
 */
export function medianFlowRound(measured: readonly FlowResult[]): FlowResult {
  const { middle, rates, figures: cpu } = medianRound(measured, (result) => result.cpuMicrosPerRequest);
  const { figures: databaseCpu } = medianRound(measured, (result) => result.databaseCpuMicrosPerRequest);
  return {
    ...middle,
    rounds: rates,
    ...(cpu && { cpuMicrosPerRequest: median(cpu) }),
    ...(databaseCpu && { databaseCpuMicrosPerRequest: median(databaseCpu) }),
  };
}

/**
 * The ratios of the servers (always) and of the flows (when they were selected: a run of the three
 * servers alone reports exactly what it always did). Two servers are compared within each round,
 * where they ran seconds apart; so is a flow measured in the rounds (`flowRounds`); a flow measured
 * once, against a server's median round.
 */
export function computeRatios(
  rounds: readonly (readonly ServerResult[])[],
  flows: readonly FlowResult[] = [],
  selectedFlows: readonly FlowName[] = [],
  flowRounds: ReadonlyMap<FlowName, readonly FlowResult[]> = new Map(),
): Ratio[] {
  const medians = medianOfRounds(rounds);
  const rate = (name: string) => (medians.find((result) => result.server === name) ?? flows.find((flow) => flow.flow === name))?.requestsPerSecond;
  const isServer = (name: string) => medians.some((result) => result.server === name);
  const inRounds = (name: string) => isServer(name) || flowRounds.get(name as FlowName)?.length === rounds.length;
  const rateInRound = (name: string, index: number) =>
    isServer(name) ? rounds[index]!.find((result) => result.server === name)!.requestsPerSecond : flowRounds.get(name as FlowName)![index]!.requestsPerSecond;
  return TARGETS.filter(({ onlyWith }) => onlyWith === undefined || selectedFlows.includes(onlyWith)).map(({ name, of, against, target }) => {
    if (inRounds(of) && inRounds(against)) {
      const perRound = rounds.map((_, index) => {
        const numerator = rateInRound(of, index);
        const other = rateInRound(against, index);
        return other > 0 ? numerator / other : 0;
      });
      const value = median(perRound);
      return { name, value, rounds: perRound, target, met: value >= target };
    }
    const numerator = rate(of);
    const other = rate(against);
    const value = numerator !== undefined && other !== undefined && other > 0 ? numerator / other : null;
    return { name, value, target, met: value === null ? null : value >= target };
  });
}

export function formatReport(
  results: readonly ServerResult[],
  ratios: readonly Ratio[],
  flows: readonly (FlowResult | SdkResult)[] = [],
  memory?: MemoryResult,
): string {
  const severalRounds = results.some((result) => (result.rounds?.length ?? 0) > 1);
  const roundsColumn = (rates: readonly number[] | undefined) => (severalRounds ? [(rates ?? []).map((rate) => rate.toFixed(0)).join(' ')] : []);
  const flowRows = flows.map((flow) =>
    'opsPerSecond' in flow
      ? [flow.flow, flow.opsPerSecond.toFixed(1), flow.latencyMs.p50.toFixed(3), flow.latencyMs.p99.toFixed(3), '0', ...roundsColumn(undefined)]
      : [
          flow.flow,
          flow.requestsPerSecond.toFixed(1),
          flow.latencyMs.p50.toFixed(3),
          flow.latencyMs.p99.toFixed(3),
          String(flow.totalRequests - (flow.statusCodes[flow.expectedStatus] ?? 0) + (flow.mismatches ?? 0)),
          ...roundsColumn(flow.rounds),
        ],
  );
  // With the flows, not every success is a 2xx (the authorization endpoint answers 302).
  const header = flowRows.length === 0 ? ['server', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx'] : ['flow', 'requests/s', 'p50 ms', 'p99 ms', 'failed'];
  const rows = [
    severalRounds ? [...header, 'requests/s in each round'] : header,
    ...results.map((result) => [
      result.server,
      result.requestsPerSecond.toFixed(1),
      result.latencyMs.p50.toFixed(3),
      result.latencyMs.p99.toFixed(3),
      String(result.non2xx),
      ...roundsColumn(result.rounds),
    ]),
    ...flowRows,
  ];
  const sections: string[][] = [];
  if (rows.length > 1 || memory === undefined) {
    const notes = [
      ...(flows.some((flow) => flow.flow === 'authorization-code') ? ['authorization-code: a 302 to the redirect URI with a code is a success'] : []),
      ...(flows.some((flow) => flow.flow === 'sdk-verify') ? ['sdk-verify: JWT verifications/s in the bench process (no HTTP), latency per verification'] : []),
    ];
    if (severalRounds) notes.unshift('servers: the figures of the median round; ratios between servers: the median of the ratios within each round');
    const flowsInRounds = flows.flatMap((flow) => ('rounds' in flow && flow.rounds !== undefined ? [flow.flow] : []));
    if (flowsInRounds.length > 0) {
      notes.push(`${flowsInRounds.join(', ')}: measured in the servers' rounds, after them; figures of its median round, ratio to client_credentials within each round`);
    }
    const cpu = results.flatMap(({ server, cpuRounds }) => (cpuRounds === undefined ? [] : [`${server} ${median(cpuRounds).toFixed(1)} µs`]));
    if (cpu.length > 0) notes.push(`server CPU per request (median of the rounds): ${cpu.join(', ')}`);
    const flowCpu = flows.flatMap((flow) =>
      'requestsPerSecond' in flow && flow.cpuMicrosPerRequest !== undefined
        ? [`${flow.flow} ${flow.cpuMicrosPerRequest.toFixed(1)} µs${flow.databaseCpuMicrosPerRequest === undefined ? '' : ` + PostgreSQL ${flow.databaseCpuMicrosPerRequest.toFixed(1)} µs`}`]
        : [],
    );
    if (flowCpu.length > 0) notes.push(`flow CPU per request (Gatehouse process, and PostgreSQL's backends where local): ${flowCpu.join(', ')}`);
    sections.push([...alignColumns(rows, [false, true, true, true, true, false]), ...(notes.length > 0 ? ['', ...notes] : [])]);
  }
  if (memory !== undefined) {
    const mb = (value: number) => value.toFixed(1);
    const count = (value: number) => value.toLocaleString('en');
    sections.push(
      alignColumns(
        [
          ['memory (VmRSS of one Gatehouse process)', 'MB'],
          ['idle, empty database', mb(memory.idleMb)],
          [`${count(memory.clients)} clients and ${count(memory.users)} users`, mb(memory.withRowsMb)],
          [`after client_credentials for ${count(memory.loadedClients)} clients`, mb(memory.afterLoadMb)],
          ['peak (VmHWM)', mb(memory.peakMb)],
        ],
        [false, true],
      ),
    );
  }

  const ratioRows = ratios.map((ratio) => {
    const format = TARGETS.find((target) => target.name === ratio.name)!.format;
    const value = ratio.value === null ? 'not run' : format(ratio.value);
    const verdict = ratio.met === null ? '' : ratio.met ? 'met' : 'NOT met';
    const spread = (ratio.rounds?.length ?? 0) > 1 ? `rounds: ${ratio.rounds!.map(format).join(', ')}` : '';
    return [ratio.name, value, `target ≥ ${format(ratio.target)}`, verdict, spread];
  });
  if (memory !== undefined) {
    const highest = Math.max(memory.idleMb, memory.withRowsMb, memory.afterLoadMb);
    ratioRows.push([
      `memory with ${memory.clients.toLocaleString('en')} clients and users`,
      `${highest.toFixed(1)} MB`,
      `target < ${memory.targetMb} MB`,
      memory.met ? 'met' : 'NOT met',
      '',
    ]);
  }
  return [...sections, alignColumns(ratioRows, [false, true, false, false, false])].map((lines) => lines.join('\n')).join('\n\n');
}

export async function writeJsonReport(
  path: string,
  options: BenchOptions,
  environment: Environment,
  results: readonly ServerResult[],
  ratios: readonly Ratio[],
  flows: readonly (FlowResult | SdkResult)[] = [],
  memory?: MemoryResult,
): Promise<void> {
  const report = {
    date: new Date().toISOString(),
    environment,
    options,
    results,
    ratios,
    ...(flows.length > 0 && { flows }),
    ...(memory !== undefined && { memory }),
  };
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
}

function alignColumns(rows: readonly (readonly string[])[], rightAligned: readonly boolean[]): string[] {
  const widths = rightAligned.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows.map((row) =>
    row
      .map((cell, column) => (rightAligned[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd(),
  );
}
