/** Reconnect delays: exponential growth with "full jitter". */

/** Backoff settings; every field has a default (see `DEFAULT_BACKOFF`). */
export interface BackoffOptions {
  /** Delay cap of the first retry, in ms. */
  initialMs: number;
  /** Upper bound of any delay, in ms. */
  maxMs: number;
  /**
   * `full`: a uniformly random delay in [0, cap] (AWS "full jitter"), so that many clients
   * dropped by one gateway restart do not reconnect in lockstep. `none`: exactly the cap,
   * for tests and single-client setups.
   */
  jitter: 'full' | 'none';
}

/** Defaults: 250 ms doubling up to 30 s, full jitter. */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 250, maxMs: 30_000, jitter: 'full' });

/**
 * Delay before reconnect attempt number `attempt` (0 for the first retry):
 * `cap = min(maxMs, initialMs * 2^attempt)`, then `floor(random() * (cap + 1))` with full
 * jitter or `cap` without. Always an integer in [0, maxMs]. Pure: `random` is injectable.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const initial = nonNegative(options.initialMs);
  const max = nonNegative(options.maxMs);
  const n = attempt > 0 ? Math.floor(attempt) : 0; // NaN and negatives count as the first retry
  // 2 ** n overflows to Infinity for large n, which Math.min then clamps to max
  // (0 * Infinity would be NaN, hence the explicit zero case).
  const cap = initial === 0 ? 0 : Math.floor(Math.min(max, initial * 2 ** n));
  if (options.jitter === 'none') return cap;
  // Clamp in case an injected random() returns 1, NaN or something out of range.
  const raw = random();
  const r = Number.isFinite(raw) ? Math.min(Math.max(raw, 0), 1) : 0;
  return Math.min(cap, Math.floor(r * (cap + 1)));
}

function nonNegative(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}
