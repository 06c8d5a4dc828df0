/**
 * When a schedule's ticks fall: a cron expression in a time zone (cron.ts), or a fixed interval
 * counted from an anchor (ticks at anchor + k * every). Pure functions of the schedule row, so the
 * CLI (`schedule next`), the claimer and the tests agree.
 */
import { TyrumError } from '../errors/index.js';
import { parseCron, type CronSpec } from './cron.js';

/** The shortest interval a schedule may have. */
export const MIN_INTERVAL_MS = 1000;
/** The longest interval (a year): longer ones are surely a typo. */
export const MAX_INTERVAL_MS = 366 * 24 * 3600 * 1000;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30s`, `5m`, `1h`, `2d` (also `1h30m`) in milliseconds; TYRUM_ERR_INVALID_ARGUMENT otherwise. */
export function parseDuration(text: string, flag = 'duration'): number {
  const m = /^(?:\d+[dhms])+$/.test(text) ? [...text.matchAll(/(\d+)([dhms])/g)] : null;
  if (!m) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${flag} must be a duration such as 30s, 5m, 1h or 1d, got "${text}"`);
  const ms = m.reduce((sum, [, n, u]) => sum + Number(n) * UNITS[u!]!, 0);
  if (ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${flag} must be between 1s and 366d, got "${text}"`);
  return ms;
}

/** A duration as the CLI shows it: the largest units that divide it (90000 → 1m30s). */
export function formatDuration(ms: number): string {
  let rest = ms;
  let out = '';
  for (const [u, size] of Object.entries(UNITS).sort((a, b) => b[1] - a[1])) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${u}`;
      rest -= n * size;
    }
  }
  return out === '' ? `${ms}ms` : out;
}

/** What decides the ticks of a schedule. */
export type Timing = { kind: 'cron'; cron: string; timezone: string } | { kind: 'every'; every_ms: number; anchor_at: number };

/** Ticks of one schedule. */
export interface Ticker {
  /** The first tick strictly after `t`, or null when there is none. */
  after(t: number): number | null;
}

/** A ticker for `timing`; throws the coded errors of parseCron for a bad expression or zone. */
export function ticker(timing: Timing): Ticker {
  if (timing.kind === 'cron') {
    const spec: CronSpec = parseCron(timing.cron, timing.timezone);
    return { after: (t) => spec.next(t) };
  }
  const { every_ms: every, anchor_at: anchor } = timing;
  return { after: (t) => (t < anchor ? anchor : anchor + (Math.floor((t - anchor) / every) + 1) * every) };
}

/** The next `count` ticks after `t`. */
export function nextTicks(tk: Ticker, t: number, count: number): number[] {
  const out: number[] = [];
  let at: number | null = t;
  while (out.length < count && (at = tk.after(at)) !== null) out.push(at);
  return out;
}

/**
 * The ticks from `first` (itself a tick) through `now`: how many, and the last of them. Counting
 * stops at `cap` (a year of per-second ticks is not walked one by one); `capped` says so.
 */
export function dueTicks(tk: Ticker, first: number, now: number, cap = 10_000): { count: number; last: number; capped: boolean } {
  let count = 1;
  let last = first;
  for (;;) {
    const n = tk.after(last);
    if (n === null || n > now) return { count, last, capped: false };
    if (count >= cap) return { count, last: latestTickAtOrBefore(tk, n, now), capped: true };
    count += 1;
    last = n;
  }
}

/** Past the cap: the last tick at or before `now`, found by walking from a point close to it. */
function latestTickAtOrBefore(tk: Ticker, from: number, now: number): number {
  // Step back from `now` in growing windows until a tick is found in (now - w, now].
  for (let w = 60_000; w < 400 * 86_400_000; w *= 4) {
    let t = tk.after(Math.max(from, now - w) - 1);
    if (t === null || t > now) continue;
    let n: number | null;
    while ((n = tk.after(t)) !== null && n <= now) t = n;
    return t;
  }
  return from;
}

/** `ms` as ISO 8601 local time in `zone`, with its UTC offset: 2024-03-31T03:00:00+02:00. */
export function zonedIso(ms: number, zone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  const local = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour), Number(parts.minute), Number(parts.second));
  const offsetMin = Math.round((local - Math.floor(ms / 1000) * 1000) / 60_000);
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  const off = offsetMin === 0 ? 'Z' : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}${off}`;
}
