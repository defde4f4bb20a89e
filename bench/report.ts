// The results as a table for people and as JSON for comparing runs over time.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { LoadResult } from './load.ts';
import type { BenchOptions } from './options.ts';
import type { ServerName } from './servers.ts';

export interface ServerResult extends LoadResult {
  server: ServerName;
}

export interface Ratio {
  name: string;
  /** Gatehouse's requests/s divided by the other server's; null when one of them was not run. */
  value: number | null;
  target: number;
  met: boolean | null;
}

export interface Environment {
  node: string;
  cpu: string;
  serverCore: number | null;
  loadCore: number | null;
}

/** The goals Gatehouse is held to: well ahead of the reference, not far behind bare Fastify. */
const TARGETS = [
  { name: 'Gatehouse / oidc-provider', against: 'oidc-provider', target: 4, format: (n: number) => `${n.toFixed(2)}×` },
  { name: 'Gatehouse / floor', against: 'floor', target: 0.6, format: (n: number) => `${(n * 100).toFixed(1)} %` },
] as const;

export function computeRatios(results: readonly ServerResult[]): Ratio[] {
  const rate = (name: ServerName) => results.find((result) => result.server === name)?.requestsPerSecond;
  const gatehouse = rate('gatehouse');
  return TARGETS.map(({ name, against, target }) => {
    const other = rate(against);
    const value = gatehouse !== undefined && other !== undefined && other > 0 ? gatehouse / other : null;
    return { name, value, target, met: value === null ? null : value >= target };
  });
}

export function formatReport(results: readonly ServerResult[], ratios: readonly Ratio[]): string {
  const rows = [
    ['server', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx'],
    ...results.map((result) => [
      result.server,
      result.requestsPerSecond.toFixed(1),
      result.latencyMs.p50.toFixed(3),
      result.latencyMs.p99.toFixed(3),
      String(result.non2xx),
    ]),
  ];
  const lines = alignColumns(rows, [false, true, true, true, true]);

  const ratioRows = ratios.map((ratio, index) => {
    const format = TARGETS[index]!.format;
    const value = ratio.value === null ? 'not run' : format(ratio.value);
    const verdict = ratio.met === null ? '' : ratio.met ? 'met' : 'NOT met';
    return [ratio.name, value, `target ≥ ${format(ratio.target)}`, verdict];
  });
  return [...lines, '', ...alignColumns(ratioRows, [false, true, false, false])].join('\n');
}

export async function writeJsonReport(
  path: string,
  options: BenchOptions,
  environment: Environment,
  results: readonly ServerResult[],
  ratios: readonly Ratio[],
): Promise<void> {
  const report = { date: new Date().toISOString(), environment, options, results, ratios };
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
