// ISO 8601: a calendar date, optionally a time of day (minutes, seconds and a fraction optional) and
// an offset, in the extended (2026-12-06T12:30:00+01:00) or the basic format (20261206T123000+0100).
const ISO_8601 = /^(\d{4})(-?)(\d{2})\2(\d{2})(?:[T ](\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,]\d{1,9})?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/**
 * An instant written in ISO 8601, in epoch seconds (a fraction of a second is dropped); undefined
 * when `value` is not one. A date alone is the start of that day in UTC, and so is a time without
 * an offset: the server's own time zone means nothing to whoever wrote the value. Impossible dates
 * and times (February 30, 24:00, an offset of 25 hours) are not instants.
 */
export function parseIsoInstant(value: string): number | undefined {
  const match = ISO_8601.exec(value);
  if (!match) return undefined;
  const number = (index: number): number => (match[index] === undefined ? 0 : Number(match[index]));
  const [year, month, day, hour, minute, second] = [1, 3, 4, 5, 6, 7].map(number) as [number, number, number, number, number, number];
  const offset = offsetSeconds(match[8]);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59 || offset === undefined) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // Day 31 of a 30-day month rolls over into the next month: not a date.
  if (date.getUTCMonth() !== month - 1) return undefined;
  date.setUTCHours(hour, minute, second);
  return date.getTime() / 1000 - offset;
}

/** The offset from UTC in seconds; undefined when it is out of range. */
function offsetSeconds(offset: string | undefined): number | undefined {
  if (offset === undefined || offset === 'Z') return 0;
  const digits = offset.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (hours > 23 || minutes > 59) return undefined;
  return (offset[0] === '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
}
