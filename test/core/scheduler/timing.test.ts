import t from 'tap';
import { dueTicks, nextTicks, parseDuration, formatDuration, ticker, zonedIso, parseCron, checkZone } from '../../../core/scheduler/index.js';
import { isTyrumError } from '../../../core/errors/index.js';

const ms = (iso: string) => Date.parse(iso);
const isoAll = (xs: number[]) => xs.map((x) => new Date(x).toISOString());

t.test('a cron expression ticks in its time zone, across the spring-forward gap', async (t) => {
  const tk = ticker({ kind: 'cron', cron: '30 2 * * *', timezone: 'Europe/Berlin' });
  // 2024-03-31: Berlin skips 02:00-03:00; 02:30 does not exist and fires at 03:00 CEST.
  t.same(isoAll(nextTicks(tk, ms('2024-03-29T12:00:00Z'), 3)), ['2024-03-30T01:30:00.000Z', '2024-03-31T01:00:00.000Z', '2024-04-01T00:30:00.000Z']);
  t.equal(zonedIso(ms('2024-03-31T01:00:00Z'), 'Europe/Berlin'), '2024-03-31T03:00:00+02:00');
  t.equal(zonedIso(ms('2024-03-30T01:30:00Z'), 'Europe/Berlin'), '2024-03-30T02:30:00+01:00');
});

t.test('a cron expression fires once on the repeated autumn hour, and hourly schedules every real hour', async (t) => {
  const daily = ticker({ kind: 'cron', cron: '30 1 * * *', timezone: 'America/New_York' });
  // 2024-11-03 01:30 happens twice in New York (EDT, then EST): one fire, at the first.
  t.same(isoAll(nextTicks(daily, ms('2024-11-02T12:00:00Z'), 2)), ['2024-11-03T05:30:00.000Z', '2024-11-04T06:30:00.000Z']);
  const hourly = ticker({ kind: 'cron', cron: '0 * * * *', timezone: 'America/New_York' });
  const h = nextTicks(hourly, ms('2024-11-03T04:30:00Z'), 3);
  t.same(isoAll(h), ['2024-11-03T05:00:00.000Z', '2024-11-03T06:00:00.000Z', '2024-11-03T07:00:00.000Z']);
  t.same(h.map((x) => zonedIso(x, 'America/New_York')), ['2024-11-03T01:00:00-04:00', '2024-11-03T01:00:00-05:00', '2024-11-03T02:00:00-05:00']);
});

t.test('UTC is the default zone and seconds are allowed as a sixth field', async (t) => {
  const tk = ticker({ kind: 'cron', cron: '*/10 * * * * *', timezone: 'UTC' });
  t.same(isoAll(nextTicks(tk, ms('2024-01-01T00:00:01Z'), 2)), ['2024-01-01T00:00:10.000Z', '2024-01-01T00:00:20.000Z']);
  // Strictly after: a tick is never its own successor.
  t.equal(tk.after(ms('2024-01-01T00:00:10Z')), ms('2024-01-01T00:00:20Z'));
  t.equal(zonedIso(ms('2024-01-01T00:00:10Z'), 'UTC'), '2024-01-01T00:00:10Z');
});

t.test('bad expressions and zones are coded errors', async (t) => {
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return isTyrumError(e) ? e.code : 'not coded';
    }
    return 'no error';
  };
  t.equal(code(() => parseCron('61 * * * *', 'UTC')), 'TYRUM_ERR_SCHEDULE_CRON');
  t.equal(code(() => parseCron('* * *', 'UTC')), 'TYRUM_ERR_SCHEDULE_CRON');
  t.equal(code(() => parseCron('0 0 31 2 *', 'UTC')), 'TYRUM_ERR_SCHEDULE_CRON', 'never fires');
  t.equal(code(() => parseCron('* * * * *', 'Mars/Olympus')), 'TYRUM_ERR_SCHEDULE_TIMEZONE');
  t.equal(code(() => checkZone('Europe/Berlin')), 'no error');
  t.equal(code(() => parseDuration('5x')), 'TYRUM_ERR_INVALID_ARGUMENT');
  t.equal(code(() => parseDuration('0s')), 'TYRUM_ERR_INVALID_ARGUMENT');
  t.equal(code(() => parseDuration('400d')), 'TYRUM_ERR_INVALID_ARGUMENT');
});

t.test('durations and intervals', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('1d'), 86_400_000);
  t.equal(formatDuration(5_400_000), '1h30m');
  const tk = ticker({ kind: 'every', every_ms: 5 * 60_000, anchor_at: ms('2024-01-01T00:00:07Z') });
  t.equal(tk.after(ms('2024-01-01T00:00:00Z')), ms('2024-01-01T00:00:07Z'), 'the anchor is the first tick');
  t.equal(tk.after(ms('2024-01-01T00:00:07Z')), ms('2024-01-01T00:05:07Z'));
  t.equal(tk.after(ms('2024-01-01T01:00:00Z')), ms('2024-01-01T01:00:07Z'));
  // Intervals are real time: a DST change does not move them.
  const dst = ticker({ kind: 'every', every_ms: 3_600_000, anchor_at: ms('2024-03-31T00:00:00Z') });
  t.same(isoAll(nextTicks(dst, ms('2024-03-31T00:00:00Z'), 2)), ['2024-03-31T01:00:00.000Z', '2024-03-31T02:00:00.000Z']);
});

t.test('due ticks are counted from the first through now, with a cap', async (t) => {
  const tk = ticker({ kind: 'every', every_ms: 60_000, anchor_at: 0 });
  t.same(dueTicks(tk, 60_000, 60_500), { count: 1, last: 60_000, capped: false });
  t.same(dueTicks(tk, 60_000, 600_000), { count: 10, last: 600_000, capped: false });
  const capped = dueTicks(tk, 60_000, 60_000 * 50_000, 100);
  t.equal(capped.capped, true);
  t.equal(capped.last, 60_000 * 50_000, 'the last tick is still found past the cap');
  const cron = ticker({ kind: 'cron', cron: '* * * * *', timezone: 'UTC' });
  t.same(dueTicks(cron, ms('2024-01-01T00:00:00Z'), ms('2024-01-01T00:05:30Z')), { count: 6, last: ms('2024-01-01T00:05:00Z'), capped: false });
});
