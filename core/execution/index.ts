/**
 * Durable execution: runs, steps and attempts in the store; leases with fencing; idempotent
 * submission; retries with backoff; crash recovery that never repeats a completed step nor
 * silently repeats a non-idempotent one; a durable event outbox.
 */
export { ExecutionEngine, RUNS_LIST_DEFAULT_LIMIT, RUNS_LIST_MAX_LIMIT, ENGINE_CONCURRENCY_DEFAULT, READ_ONLY_ACK_MS, type ExecutionEngineOptions, type SubmitOptions } from './engine.js';
export {
  EventLog,
  EXECUTION_EVENT_TYPES,
  EVENTS_AFTER_DEFAULT_LIMIT,
  EVENTS_AFTER_MAX_LIMIT,
  runEventPayload,
  stepEventPayload,
  type Emit,
  type EventListener,
  type EventLogOptions,
  type ExecutionEventType,
  type OutboxEvent,
} from './events.js';
export { CRASH_POINTS, CRASH_ENV, crashPointFromEnv, type CrashPoint } from '../util/crash.js';
export { checkPostcondition, validatePostcondition, resolvePointer, type Postcondition, type PostconditionResult } from './postcondition.js';
export { classifyFailure, failureClass, FAILURE_CLASSES, backoffMs, DEFAULT_BACKOFF, type BackoffOptions, type FailureAction, type FailureClass } from './retry.js';
export { validateSubmit, requestHash, MAX_STEPS, MAX_ARGS_BYTES, MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_MS } from './validate.js';
export type * from './types.js';
