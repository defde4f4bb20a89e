import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseIsoInstant } from '../../core/instants.ts';
import type { Gatehouse } from '../../gatehouse.ts';
import type { AuditEvent } from '../../storage/repositories/audit.ts';
import { printable, UsageError, type Output, type Run } from '../output.ts';

export const auditUsage = `gatehouse audit tail [--since ISO|--limit N] [--follow] [--json]
                        the latest events, oldest first (default: the last 20; --since: every one since then; --json: one JSON object a line)`;

/** Events are buffered per instance and written in batches: a late one may carry an earlier time. */
const FOLLOW_WINDOW_SECONDS = 30;
const POLL_MS = 1000;
const MAX_EVENTS = 1000;

export function auditCommand(args: string[]): Run {
  const [sub, ...rest] = args;
  if (sub !== 'tail') throw new UsageError(`unknown audit command "${sub ?? ''}"`);
  const { values } = parseArgs({
    args: rest,
    options: { since: { type: 'string' }, limit: { type: 'string' }, follow: { type: 'boolean', default: false }, json: { type: 'boolean' } },
  });
  if (values.since !== undefined && values.limit !== undefined) throw new UsageError('audit tail takes --since or --limit, not both');
  const since = values.since === undefined ? undefined : parseSince(values.since);
  const limit = values.limit === undefined ? 20 : parseLimit(values.limit);
  return (gatehouse, out) => tail(gatehouse, out, { since, limit, follow: values.follow });
}

async function tail(gatehouse: Gatehouse, out: Output, values: { since: number | undefined; limit: number; follow: boolean }): Promise<void> {
  const { since, limit } = values;

  const print = (event: AuditEvent): void => {
    process.stdout.write(`${out.json ? JSON.stringify(describeEvent(event)) : formatEvent(event)}\n`);
  };
  const audit = gatehouse.storage.audit;
  const seen = new Map<number, number>();
  // Only the events the follow loop below can read again, those of its window, need remembering.
  const printOnce = (event: AuditEvent): void => {
    if (event.at >= gatehouse.clock() - 2 * FOLLOW_WINDOW_SECONDS) seen.set(event.id!, event.at);
    print(event);
  };

  if (values.follow) {
    // Whatever is in the window now is history: only the tail below prints any of it.
    for (const event of await audit.query({ since: gatehouse.clock() - FOLLOW_WINDOW_SECONDS, limit: MAX_EVENTS })) seen.set(event.id!, event.at);
  }
  if (since === undefined) {
    for (const event of (await audit.query({ limit })).reverse()) printOnce(event);
  } else {
    // Every event since then, however many (an export, the start of an incident): a page at a time, oldest first.
    for (let page = await audit.query({ since, oldestFirst: true, limit: MAX_EVENTS }); page.length > 0; ) {
      for (const event of page) printOnce(event);
      const last = page.at(-1)!;
      page = page.length < MAX_EVENTS ? [] : await audit.query({ since, oldestFirst: true, after: { at: last.at, id: last.id! }, limit: MAX_EVENTS });
    }
  }
  if (!values.follow) return;

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // A closed pipe (`… | head`) ends the command quietly.
  process.stdout.once('error', onSignal);
  try {
    while (!stop.signal.aborted) {
      await sleep(POLL_MS, undefined, { signal: stop.signal }).catch(() => undefined);
      if (stop.signal.aborted) break;
      const now = gatehouse.clock();
      const events = await audit.query({ since: now - FOLLOW_WINDOW_SECONDS, limit: MAX_EVENTS });
      for (const event of events.reverse()) {
        if (seen.has(event.id!)) continue;
        seen.set(event.id!, event.at);
        print(event);
      }
      for (const [id, at] of seen) if (at < now - 2 * FOLLOW_WINDOW_SECONDS) seen.delete(id);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function parseSince(value: string): number {
  if (/^\d{1,12}$/.test(value)) return Number(value);
  const time = parseIsoInstant(value);
  if (time === undefined) throw new UsageError(`--since must be an ISO 8601 date-time (or epoch seconds), not "${value}"`);
  return time;
}

function parseLimit(value: string): number {
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= MAX_EVENTS)) throw new UsageError(`--limit must be a number from 1 to ${MAX_EVENTS}`);
  return limit;
}

/** The same shape as the admin API's `GET /admin/v1/audit-events`. */
function describeEvent(e: AuditEvent) {
  return { id: e.id, at: new Date(e.at * 1000).toISOString(), kind: e.kind, outcome: e.outcome, client_id: e.clientId, user_id: e.userId, data: e.data };
}

/** One line, whatever the event holds: a refused request's client_id is recorded as presented, by anyone. */
function formatEvent(e: AuditEvent): string {
  const details = Object.keys(e.data).length > 0 ? `  ${JSON.stringify(e.data)}` : '';
  return printable(`${new Date(e.at * 1000).toISOString()}  ${e.kind.padEnd(26)} ${e.outcome.padEnd(7)} client=${e.clientId ?? '-'} user=${e.userId ?? '-'}${details}`);
}
