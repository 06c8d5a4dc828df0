/**
 * Sandbox failures as coded TyrumErrors.
 *
 * Every failure carries `details.reason` (a stable {@link SandboxFailureReason}) so callers branch
 * on the cause without parsing messages; each reason has its own registry code (core/errors).
 */
import { TyrumError, type ErrorCode, isTyrumError } from '../core/errors/index.js';

/** Why a load or a call failed. */
export type SandboxFailureReason =
  /** The call or load exceeded its wall-clock budget; the worker was restarted. */
  | 'timeout'
  /** The guest trapped (unreachable, out-of-bounds access, stack overflow, ...). */
  | 'trap'
  /** The worker running the plugin died (uncaught error, out of memory, exit). */
  | 'crash'
  /** The guest reported an error itself through Extism's `error_set`. */
  | 'plugin_error'
  /** The guest's output exceeded `maxOutputBytes`. */
  | 'output_too_large'
  /** The caller's input exceeded `maxInputBytes`. */
  | 'input_too_large'
  /** A per-call budget other than time ran out (see `details.budget`). */
  | 'budget_exceeded'
  /** The guest used a host capability it was not granted, or egress refused a request. */
  | 'capability_denied'
  /** A host service (key-value store, egress) failed while serving the plugin. */
  | 'host_error'
  /** The module failed a load-time check (see `details.check`). */
  | 'module_rejected'
  /** The wasm bytes do not match the expected digest. */
  | 'digest_mismatch'
  /** The module passed the checks but could not be instantiated (e.g. its start function trapped). */
  | 'instantiate_failed'
  /** No plugin is loaded under that key, or the export was not declared. */
  | 'not_loaded'
  /** The pool has been closed. */
  | 'closed'
  /** Invalid options or limits passed by the host. */
  | 'invalid_argument';

/** The registry code of each failure reason (the wire code follows from core/errors). */
export const SANDBOX_ERROR_CODES: Readonly<Record<SandboxFailureReason, ErrorCode>> = {
  timeout: 'TYRUM_ERR_SANDBOX_TIMEOUT',
  trap: 'TYRUM_ERR_SANDBOX_TRAP',
  crash: 'TYRUM_ERR_SANDBOX_CRASH',
  plugin_error: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR',
  output_too_large: 'TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE',
  input_too_large: 'TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE',
  budget_exceeded: 'TYRUM_ERR_SANDBOX_BUDGET',
  capability_denied: 'TYRUM_ERR_SANDBOX_DENIED',
  host_error: 'TYRUM_ERR_SANDBOX_HOST',
  module_rejected: 'TYRUM_ERR_SANDBOX_MODULE_REJECTED',
  digest_mismatch: 'TYRUM_ERR_SANDBOX_DIGEST_MISMATCH',
  instantiate_failed: 'TYRUM_ERR_SANDBOX_INSTANTIATE',
  not_loaded: 'TYRUM_ERR_NOT_FOUND',
  closed: 'TYRUM_ERR_INVALID_STATE',
  invalid_argument: 'TYRUM_ERR_INVALID_ARGUMENT',
};

/** A failure in a form that survives structured cloning between threads. */
export interface SandboxFailure {
  reason: SandboxFailureReason;
  message: string;
  details?: Record<string, unknown>;
}

/** Build the coded error for a sandbox failure. */
export function sandboxError(
  reason: SandboxFailureReason,
  message: string,
  details: Record<string, unknown> = {},
): TyrumError {
  return new TyrumError(SANDBOX_ERROR_CODES[reason], message, { ...details, reason });
}

/** Rebuild the coded error from a failure that crossed a thread boundary. */
export function fromFailure(f: SandboxFailure, extra: Record<string, unknown> = {}): TyrumError {
  return sandboxError(f.reason, f.message, { ...f.details, ...extra });
}

/** The sandbox reason of an error thrown by this module, or undefined for any other error. */
export function sandboxReason(e: unknown): SandboxFailureReason | undefined {
  if (!isTyrumError(e)) return undefined;
  const r = e.details?.['reason'];
  return typeof r === 'string' && r in SANDBOX_ERROR_CODES ? (r as SandboxFailureReason) : undefined;
}
