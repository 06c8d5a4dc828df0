/**
 * What the log lines of a call carry, kept in an AsyncLocalStorage: the execution engine opens a
 * scope per run (`run_id`) and per attempt (`step`, `attempt`, and with tracing on `trace_id` and
 * `span_id`); the gateway's pino logger merges the current scope into every line it writes
 * (`logFields`, its mixin), so a plugin's log line, an MCP server's or the engine's own written
 * while a call is handled names the call without each caller passing ids along. Ids only: never
 * arguments, results or secrets.
 *
 * The incoming W3C `traceparent` of an HTTP request (POST /mcp) is kept the same way, for the
 * engine to read when that request submits a run it takes at once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** The ids a log line written during a call carries. */
export interface LogFields {
  run_id: string;
  step?: number;
  attempt?: number;
  trace_id?: string;
  span_id?: string;
}

const fields = new AsyncLocalStorage<LogFields | undefined>();
const incoming = new AsyncLocalStorage<string | undefined>();

/** Runs `fn` with `f` as the log fields of everything it does, synchronously or later. */
export function withLogFields<T>(f: LogFields, fn: () => T): T {
  return fields.run(f, fn);
}

/**
 * The fields of the current call, or an empty object outside one (pino's mixin). A fresh object
 * each time: pino merges the line's own fields into what the mixin returns.
 */
export function logFields(): Partial<LogFields> {
  const f = fields.getStore();
  return f === undefined ? {} : { ...f };
}

/** A W3C traceparent header value: version 00, 32-hex trace id, 16-hex parent id, flags. */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The parsed traceparent, or null for anything malformed or all-zero (which the spec says to ignore). */
export function parseTraceparent(value: string | undefined): { traceId: string; spanId: string; sampled: boolean } | null {
  if (value === undefined || value.length > 55) return null;
  const m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return null;
  return { traceId: m[1]!, spanId: m[2]!, sampled: (parseInt(m[3]!, 16) & 1) === 1 };
}

/** Runs `fn` with `traceparent` as the parent of the calls it starts at once (ignored when malformed). */
export function withIncomingTrace<T>(traceparent: string | undefined, fn: () => T): T {
  if (traceparent === undefined || parseTraceparent(traceparent) === null) return fn();
  return incoming.run(traceparent, fn);
}

/** The incoming traceparent of the request being handled, if it sent a valid one. */
export function incomingTrace(): string | null {
  return incoming.getStore() ?? null;
}

/**
 * Runs `fn` outside every call: neither `fn` nor what it starts (a timer, an immediate, an interval,
 * a promise chain, a libuv callback) carries the current log fields or incoming traceparent. For
 * gateway-wide work that whichever call happens to trigger arms (the engine's kick and wake-up, the
 * store's group-commit deadline and sync, the audit checkpoint timer): without it, that work would
 * keep the first caller's scope for as long as it lives and name that call in its log lines.
 *
 * Free when no scope is open (in particular with the stores never used or suspended: nothing is
 * enabled, `fn` is just called).
 */
export function detached<T>(fn: () => T): T {
  if (fields.getStore() === undefined && incoming.getStore() === undefined) return fn();
  // run(undefined) on an enabled store: what `fn` creates copies "no store" into its own context.
  return fields.run(undefined, () => incoming.run(undefined, fn));
}

/**
 * Turns both stores off until their next use (AsyncLocalStorage.disable: on Node 20 an enabled store
 * keeps promise hooks on for the whole process). For the bench's baseline, with the engine's observer
 * detached so nothing opens a scope again.
 */
export function suspendScopes(): void {
  fields.disable();
  incoming.disable();
}
