/**
 * What to do after a failed attempt, and how long to wait before the next one.
 *
 * Every failure is classified explicitly ({@link FAILURE_CLASSES}) on two questions:
 * - Can it succeed if made again? Only what depends on something outside the call can: a
 *   worker or connection that died and was restarted, a rate limit, a transient network failure
 *   of egress. A spent budget (time, memory, output, host calls, allocations, egress bytes) is
 *   deterministic: the same call spends it the same way, so it is never retried — a 2 s spinner
 *   costs 2 s, not three times that plus the backoff.
 * - Was it cut off mid-flight? Then its effect may or may not have happened: a non-idempotent
 *   step becomes `outcome_unknown` and the run waits for an operator; a non-idempotent call is
 *   never silently repeated.
 * Codes not in the table are deterministic (bad input, plugin error, denial, postcondition) unless
 * the executor marks the error `details.retryable: true`, which retries an idempotent step.
 */
import { isTyrumError, type ErrorCode } from '../errors/index.js';

export type FailureAction = 'retry' | 'fail' | 'outcome_unknown';

/** How a failure code behaves on retry. */
export interface FailureClass {
  /**
   * `always`: transient and known to fail before any effect (retried even when not idempotent);
   * `if_idempotent`: may succeed on retry; `if_marked`: only when `details.retryable` is true
   * (then like `if_idempotent`); `never`: deterministic, a retry fails the same way.
   */
  retry: 'always' | 'if_idempotent' | 'if_marked' | 'never';
  /** The call was cut off mid-flight: its effect is unknown. */
  cutOff: boolean;
}

const DETERMINISTIC: FailureClass = { retry: 'never', cutOff: false };

/** The explicit classification; a code not listed is `if_marked`, not cut off. */
export const FAILURE_CLASSES: Readonly<Partial<Record<ErrorCode, FailureClass>>> = Object.freeze({
  // Can succeed on retry.
  TYRUM_ERR_RATE_LIMITED: { retry: 'always', cutOff: false },
  TYRUM_ERR_SANDBOX_CRASH: { retry: 'if_idempotent', cutOff: true }, // the worker was restarted
  TYRUM_ERR_MCP_CONNECTION_LOST: { retry: 'if_idempotent', cutOff: true }, // the server is restarted
  TYRUM_ERR_SANDBOX_HOST: { retry: 'if_marked', cutOff: false }, // egress marks its transient network failures
  // Budgets: deterministic. A time budget stops the call mid-flight, so its effect is unknown.
  TYRUM_ERR_SANDBOX_TIMEOUT: { retry: 'never', cutOff: true },
  TYRUM_ERR_TIMEOUT: { retry: 'never', cutOff: true },
  TYRUM_ERR_SANDBOX_BUDGET: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE: DETERMINISTIC,
  // The plugin or module itself (memory exhaustion shows as a trap: memory.grow failed).
  TYRUM_ERR_SANDBOX_TRAP: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_PLUGIN_ERROR: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_DENIED: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_MODULE_REJECTED: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_DIGEST_MISMATCH: DETERMINISTIC,
  TYRUM_ERR_SANDBOX_INSTANTIATE: DETERMINISTIC,
  TYRUM_ERR_POSTCONDITION_FAILED: DETERMINISTIC,
  TYRUM_ERR_POLICY_DENIED: DETERMINISTIC,
  // Nodes. A connection lost mid-dispatch: the node may have acted.
  TYRUM_ERR_NODE_DISCONNECTED: { retry: 'if_idempotent', cutOff: true },
  TYRUM_ERR_NODE_UNAVAILABLE: { retry: 'if_idempotent', cutOff: false }, // nothing was sent
  TYRUM_ERR_NODE_CAPABILITY_FAILED: { retry: 'if_marked', cutOff: false },
  TYRUM_ERR_NODE_NOT_READY: DETERMINISTIC, // nothing was sent; the operator of the node must act
  TYRUM_ERR_NODE_NOT_PAIRED: DETERMINISTIC,
  TYRUM_ERR_NODE_NOT_ALLOWLISTED: DETERMINISTIC,
  TYRUM_ERR_NODE_AMBIGUOUS: DETERMINISTIC,
  TYRUM_ERR_NODE_REFUSED: DETERMINISTIC,
  TYRUM_ERR_NODE_OUTPUT_INVALID: DETERMINISTIC,
  // Artifacts a tool or node reported that cannot be stored: the same output fails the same way.
  TYRUM_ERR_ARTIFACT_TOO_LARGE: DETERMINISTIC,
  TYRUM_ERR_ARTIFACT_QUOTA: DETERMINISTIC,
  TYRUM_ERR_ARTIFACT_MEDIA_TYPE: DETERMINISTIC,
  TYRUM_ERR_ARTIFACT_INVALID: DETERMINISTIC,
  // Another worker took the run over: this one stops, whatever the error says.
  TYRUM_ERR_LEASE_LOST: DETERMINISTIC,
});

/** The class of a failure code (see {@link FAILURE_CLASSES}). */
export function failureClass(code: ErrorCode): FailureClass {
  return FAILURE_CLASSES[code] ?? { retry: 'if_marked', cutOff: false };
}

/** Classifies a failed attempt (before looking at how many attempts are left). */
export function classifyFailure(err: unknown, idempotent: boolean): FailureAction {
  if (!isTyrumError(err)) return 'fail';
  const c = failureClass(err.code);
  if (c.retry === 'always') return 'retry';
  const retryable = c.retry === 'if_idempotent' || (c.retry === 'if_marked' && err.details?.retryable === true);
  if (idempotent) return retryable ? 'retry' : 'fail';
  return c.cutOff ? 'outcome_unknown' : 'fail';
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
