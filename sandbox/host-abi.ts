/**
 * The import surface a plugin may use: the names that load-time checks allow and the worker serves.
 *
 * Namespaces:
 * - `extism:host/env`: the Extism kernel, exactly as every official PDK imports it (memory blocks,
 *   input/output, config, vars, logs, `http_request`). Served by the SDK, with the budget-relevant
 *   functions (alloc, config, vars, logs, http) replaced by ours.
 * - `tyrum:host/v1`: Tyrum's own host API, version 1. We use our own versioned namespace rather
 *   than Extism's default `extism:host/user` so that the ABI carries its major version (a future
 *   `tyrum:host/v2` can live beside it) and can never collide with functions a PDK or a future
 *   SDK assumes. PDKs name it explicitly: Rust `#[host_fn("tyrum:host/v1")]`, AssemblyScript
 *   `@external("tyrum:host/v1", "kv_get")`, Go `//go:wasmimport tyrum:host/v1 kv_get`.
 * - `env.abort` only: AssemblyScript's runtime imports it; it traps the call with the message.
 *
 * Everything else is refused at load, WASI included: with WASI off a guest has no clock, random,
 * file system or environment, i.e. no ambient capability.
 *
 * Tyrum host API v1 (all addresses are Extism kernel block addresses, i64):
 * - `log(level: i32, message: i64)`: level 0 trace, 1 debug, 2 info, 3 warn, 4 error.
 *   Same sink, truncation and rate limit as Extism's `log_*`.
 * - `kv_get(key: i64) -> i64`: the value stored under the UTF-8 key, or 0 when absent.
 * - `kv_set(key: i64, value: i64) -> i32`: store (value 0 deletes); 0 = ok, 1 = refused by the
 *   store's quota. Using kv without a grant aborts the call (`capability_denied`).
 * - Extism's `http_request(request: i64, body: i64) -> i64` (request = JSON
 *   `{ "url", "method"?, "headers"? }`), `http_status_code() -> i32` and `http_headers() -> i64`
 *   are served by the gateway's checked egress, never by the SDK's own fetch.
 */

/** Extism kernel namespace. */
export const EXTISM_NS = 'extism:host/env';
/** Tyrum host API namespace (v1). */
export const TYRUM_NS = 'tyrum:host/v1';
/** AssemblyScript's runtime namespace; only `abort` is provided. */
export const AS_ENV_NS = 'env';

/** Kernel functions of Extism (as provided by @extism/extism 2.0 and imported by the PDKs). */
export const EXTISM_KERNEL_FUNCTIONS: ReadonlySet<string> = new Set([
  'alloc',
  'free',
  'length',
  'length_unsafe',
  'load_u8',
  'load_u64',
  'store_u8',
  'store_u64',
  'input_offset',
  'input_length',
  'input_load_u8',
  'input_load_u64',
  'output_set',
  'error_set',
  'error_get',
  'config_get',
  'var_get',
  'var_set',
  'http_request',
  'http_status_code',
  'http_headers',
  'log_trace',
  'log_debug',
  'log_info',
  'log_warn',
  'log_error',
  'get_log_level',
]);

/** Tyrum host API v1 functions. */
export const TYRUM_HOST_FUNCTIONS: ReadonlySet<string> = new Set(['log', 'kv_get', 'kv_set']);

/** True when `module.name` is an import the sandbox provides. */
export function isProvidedImport(module: string, name: string): boolean {
  if (module === EXTISM_NS) return EXTISM_KERNEL_FUNCTIONS.has(name);
  if (module === TYRUM_NS) return TYRUM_HOST_FUNCTIONS.has(name);
  if (module === AS_ENV_NS) return name === 'abort';
  return false;
}

/** Log levels, in Extism's priority order (trace = 0 ... error = 4). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
