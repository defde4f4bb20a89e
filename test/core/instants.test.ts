import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIsoInstant } from '../../src/core/instants.ts';

const NOON_UTC = Date.UTC(2026, 11, 6, 12) / 1000;

describe('ISO 8601 instants', () => {
  it('read a date and time with an offset, in the extended and the basic format', () => {
    for (const value of ['2026-12-06T12:00:00Z', '2026-12-06T13:00:00+01:00', '2026-12-06T07:30:00-04:30', '2026-12-06T13:00:00+0100', '20261206T130000+0100', '2026-12-06 12:00:00Z']) {
      assert.equal(parseIsoInstant(value), NOON_UTC, value);
    }
  });

  it('drop a fraction of a second, and take minutes-only and hours-only times', () => {
    assert.equal(parseIsoInstant('2026-12-06T12:00:00.999Z'), NOON_UTC);
    assert.equal(parseIsoInstant('2026-12-06T12:00:00,5Z'), NOON_UTC);
    assert.equal(parseIsoInstant('2026-12-06T12:00Z'), NOON_UTC);
    assert.equal(parseIsoInstant('2026-12-06T12Z'), NOON_UTC);
  });

  it('read a date alone as the start of that day in UTC', () => {
    assert.equal(parseIsoInstant('2026-12-06'), Date.UTC(2026, 11, 6) / 1000);
    assert.equal(parseIsoInstant('20261206'), Date.UTC(2026, 11, 6) / 1000);
  });

  it('read a time without an offset as UTC, whatever the time zone of the server', () => {
    assert.equal(parseIsoInstant('2026-12-06T12:00:00'), NOON_UTC);
    assert.equal(parseIsoInstant('2026-12-06T12:00'), NOON_UTC);
  });

  it('read years before 100 as written, not as 19xx', () => {
    assert.equal(new Date(parseIsoInstant('0099-01-01')! * 1000).getUTCFullYear(), 99);
  });

  it('refuse impossible dates, times and offsets, and anything that is not ISO 8601', () => {
    for (const value of [
      '2026-02-30', '2026-04-31', '2026-13-01', '2026-00-10', '2026-12-00',
      '2026-12-06T24:00', '2026-12-06T12:60', '2026-12-06T12:00:60Z', '2026-12-06T12:00+25:00', '2026-12-06T12:00+01:60',
      '2026-1206', '2026-12-6', '26-12-06', '2026-12-06T', '2026-12-06T12:00:00.Z', '2026-12-06T12:00:00ZZ',
      'Sun, 06 Dec 2026 12:00:00 GMT', '1796558400', 'tomorrow', '', ' 2026-12-06', '2026-12-06\n',
    ]) {
      assert.equal(parseIsoInstant(value), undefined, JSON.stringify(value));
    }
  });
});
