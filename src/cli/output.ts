import { parseArgs } from 'node:util';
import type { Gatehouse } from '../gatehouse.ts';

/** How a command prints: a table for people, JSON for scripts (`--json`). */
export interface Output {
  json: boolean;
  print(value: unknown, human: () => string): void;
}

export function output(json: boolean): Output {
  return {
    json,
    print(value, human) {
      process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
  };
}

/** Rows of text as aligned columns, each cell printable: a name stored before names were checked neither drives the terminal nor forges a row. */
export function table(cells: string[][]): string {
  if (cells.length === 0) return '';
  const rows = cells.map((r) => r.map(printable));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/**
 * `text` with what a terminal would act on or not show written as escapes (ESC as \u001b): control
 * characters, whose ESC [ … rewrites the screen and whose line break forges a line, and the
 * invisible format characters (bidi overrides, zero-width spaces) that make one text read as another;
 * the zero-width joiners that names in Persian, Indic scripts and emoji hold stay, as names keep them.
 * For text the command line did not make: a client_id someone presented to /token, a name stored
 * before names were checked.
 */
export function printable(text: string): string {
  return text.replace(/(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

export const isoTime = (epochSeconds: number): string => new Date(epochSeconds * 1000).toISOString();

/**
 * A time that may not have come (no expiry, not yet activated): null in `--json`, as the admin API
 * says it, so that scripts can test for it; tables print their own dash.
 */
export const optionalIsoTime = (epochSeconds: number | null): string | null => (epochSeconds === null ? null : isoTime(epochSeconds));

/**
 * A command whose arguments were checked: it runs once the database is open. Every command checks
 * its arguments first and returns one of these, so that a mistake in how it was called is answered
 * before anything is read or created (the data folder, its master secret, the SQLite file).
 */
export type Run = (gatehouse: Gatehouse, out: Output) => Promise<void>;

/** A mistake in how a command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * The arguments of a command that takes no option but `--json`: exactly the `names` given, in order.
 * An unknown option (`client delete ID --dry-run`) or an extra argument is a usage error, never
 * ignored: the command would otherwise do what it was not asked to, or more than was meant.
 */
export function argumentsOf(command: string, args: string[], names: string[]): string[] {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  return exactly(command, positionals, names);
}

/** `positionals` if they are exactly the `names` given, in order; a usage error for one missing or one more. */
export function exactly(command: string, positionals: string[], names: string[]): string[] {
  if (positionals.length < names.length) throw new UsageError(`${command} needs ${names.join(' ')}`);
  if (positionals.length > names.length) throw new UsageError(`${command} takes ${names.length === 0 ? 'no argument' : names.join(' ')}, not also "${positionals[names.length]}"`);
  return positionals;
}
