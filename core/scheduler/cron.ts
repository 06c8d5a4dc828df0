/**
 * Cron expressions: the only module that imports croner (a well-kept parser with IANA time zones
 * and no dependencies). Five fields (minute hour day-of-month month day-of-week), or six with
 * seconds first; nicknames such as `@hourly` and `@daily` too.
 *
 * Daylight saving time, as croner computes it in the schedule's zone: a local time that does not
 * exist (the hour skipped in spring) fires at the first instant after the gap (02:30 → 03:00);
 * a local time that happens twice (the hour repeated in autumn) fires once, at its first
 * occurrence. Schedules with a minute or hour step (`0 * * * *`) fire every real hour.
 */
import { Cron } from 'croner';
import { TyrumError } from '../errors/index.js';

/** A parsed expression bound to its zone. */
export interface CronSpec {
  /** The first tick strictly after `afterMs` (epoch ms), or null when there is none. */
  next(afterMs: number): number | null;
}

/** Throws TYRUM_ERR_SCHEDULE_TIMEZONE unless `zone` is an IANA time zone this Node knows. */
export function checkZone(zone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
  } catch {
    throw new TyrumError('TYRUM_ERR_SCHEDULE_TIMEZONE', `unknown time zone "${zone}": give an IANA zone such as UTC, Europe/Berlin or America/New_York`, { timezone: zone });
  }
}

/**
 * Parses `expression` in `zone`. Throws TYRUM_ERR_SCHEDULE_CRON for an expression croner refuses
 * or one that never fires (e.g. `0 0 31 2 *`), TYRUM_ERR_SCHEDULE_TIMEZONE for an unknown zone.
 */
export function parseCron(expression: string, zone: string): CronSpec {
  checkZone(zone);
  let cron: Cron;
  try {
    // No callback: croner only computes times, it starts no timer.
    cron = new Cron(expression, { timezone: zone });
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_SCHEDULE_CRON', `invalid cron expression "${expression}": ${(e as Error).message.replace(/^CronPattern: /, '')}`, { cron: expression });
  }
  if (cron.nextRun(new Date()) === null) throw new TyrumError('TYRUM_ERR_SCHEDULE_CRON', `cron expression "${expression}" never fires`, { cron: expression });
  return {
    next: (afterMs) => {
      // croner steps in whole seconds and returns the first match at or after the next second.
      const d = cron.nextRun(new Date(afterMs));
      return d === null ? null : d.getTime();
    },
  };
}
