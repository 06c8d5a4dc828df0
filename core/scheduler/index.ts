/** The scheduler: cron, interval and heartbeat schedules whose fires are claimed by database leases. */
export * from './service.js';
export * from './types.js';
export { parseDuration, formatDuration, nextTicks, dueTicks, ticker, zonedIso, type Timing, type Ticker } from './timing.js';
export { checkZone, parseCron } from './cron.js';
