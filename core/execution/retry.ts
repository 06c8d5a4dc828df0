/**
 * What to do after a failed attempt, and how long to wait before the next one.
 *
 * - Cut off mid-flight (timeout, sandbox worker crash, MCP connection lost): the effect may or may not have
 *   happened. Idempotent step: retry. Otherwise: `outcome_unknown`, the run waits for an
 *   operator; a non-idempotent call is never silently repeated.
 * - Transient and known to be before any effect (rate limited): retry.
 * - An error the executor marks `details.retryable: true`: retry only if idempotent.
 * - Anything else (bad input, plugin error, denial, postcondition): the step fails.
 */
import { isTyrumError } from '../errors/index.js';

const CUT_OFF = new Set<string>(['TYRUM_ERR_TIMEOUT', 'TYRUM_ERR_SANDBOX_TIMEOUT', 'TYRUM_ERR_SANDBOX_CRASH', 'TYRUM_ERR_MCP_CONNECTION_LOST']);
const RETRYABLE_IF_IDEMPOTENT = new Set<string>([...CUT_OFF, 'TYRUM_ERR_SANDBOX_HOST']);
const ALWAYS_RETRYABLE = new Set<string>(['TYRUM_ERR_RATE_LIMITED']);

export type FailureAction = 'retry' | 'fail' | 'outcome_unknown';

/** Classifies a failed attempt (before looking at how many attempts are left). */
export function classifyFailure(err: unknown, idempotent: boolean): FailureAction {
  if (!isTyrumError(err)) return 'fail';
  if (ALWAYS_RETRYABLE.has(err.code)) return 'retry';
  if (CUT_OFF.has(err.code)) return idempotent ? 'retry' : 'outcome_unknown';
  if (RETRYABLE_IF_IDEMPOTENT.has(err.code) || err.details?.retryable === true) return idempotent ? 'retry' : 'fail';
  return 'fail';
}

export interface BackoffOptions {
  /** Delay before the second attempt (default 250 ms); doubles each time. */
  baseMs: number;
  /** Cap on any one delay (default 30 s). */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, maxMs: 30_000 };

/**
 * Exponential backoff after attempt `n` (1-based): base·2^(n-1), capped, with up to 10%
 * jitter so runs failing together do not retry in lockstep.
 */
export function backoffMs(n: number, o: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = Math.min(o.maxMs, o.baseMs * 2 ** Math.max(0, n - 1));
  return Math.round(Math.min(o.maxMs, exp * (1 + 0.1 * random())));
}
