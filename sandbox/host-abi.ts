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
 * - `wasi_snapshot_preview1`: every WASI preview1 function, served by Tyrum's own capability-less
 *   shim (sandbox/wasi.ts), never by Node's `node:wasi` or Extism's WASI (which stays off). It
 *   exists so that modules built for WASI (Rust `wasm32-wasip1`, TinyGo/Go `wasip1`) load
 *   unchanged; it grants nothing: no file system (no preopened directories), no environment, no
 *   arguments, no sockets; stdout/stderr go to the plugin's log; clocks and random are served.
 *
 * Everything else is refused at load: other WASI namespaces (`wasi_unstable`, preview2 `wasi:*`),
 * unknown preview1 names, and preview1 functions imported with a signature that is not
 * preview1's.
 *
 * Tyrum host API v1 (all addresses are Extism kernel block addresses, i64):
 * - `log(level: i32, message: i64)`: level 0 trace, 1 debug, 2 info, 3 warn, 4 error.
 *   Same sink, truncation and rate limit as Extism's `log_*`.
 * - `kv_get(key: i64) -> i64`: the value stored under the UTF-8 key, or 0 when absent.
 * - `kv_set(key: i64, value: i64) -> i32`: store (value 0 deletes); 0 = ok, 1 = refused by the
 *   store's quota. Using kv without a grant aborts the call (`capability_denied`).
 * - Extism's `http_request(request: i64, body: i64) -> i64` (request = JSON
 *   `{ "url", "method"?, "headers"? }` read as Extism's hosts read it: a missing or null method
 *   is GET, `header` is accepted for `headers`, null headers are none; an empty body block is no
 *   body), `http_status_code() -> i32` and `http_headers() -> i64` are served by the gateway's
 *   checked egress, never by the SDK's own fetch.
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

/** WASI preview1's import namespace, as every WASI toolchain emits it. */
export const WASI_NS = 'wasi_snapshot_preview1';

/**
 * The namespace the sandbox renames `wasi_snapshot_preview1` imports to before compiling (see
 * inspect.ts): Extism 2.0.0-rc13 intercepts the name `wasi_snapshot_preview1` itself and throws
 * ("WASI is not enabled") unless its own `node:wasi`-based WASI is on, so the shim must be
 * reached under another name. A plugin may not import this namespace directly.
 */
export const WASI_SHIM_NS = 'tyrum:wasi/preview1';

/**
 * Exports of a WASI module that the sandbox renames so that the SDK does not run them while it
 * instantiates (before the shim can reach the guest's memory): the worker runs `_initialize`
 * (reactor initialisation) and then `hs_init` itself once the instance exists, as Extism does
 * with WASI on. `_start` (a command's `main`) is never run, as in Extism.
 */
export const WASI_RENAMED_EXPORTS: ReadonlyMap<string, string> = new Map([
  ['_initialize', 'tyrum:wasi/_initialize'],
  ['_start', 'tyrum:wasi/_start'],
  ['hs_init', 'tyrum:wasi/hs_init'],
]);

/**
 * Every WASI preview1 function (the `wasi_snapshot_preview1` witx, 46 functions) with its core
 * wasm signature: parameter types, then `>`, then result types (`i` = i32, `I` = i64).
 */
export const WASI_PREVIEW1_SIGNATURES: ReadonlyMap<string, string> = new Map([
  ['args_get', 'ii>i'],
  ['args_sizes_get', 'ii>i'],
  ['environ_get', 'ii>i'],
  ['environ_sizes_get', 'ii>i'],
  ['clock_res_get', 'ii>i'],
  ['clock_time_get', 'iIi>i'],
  ['fd_advise', 'iIIi>i'],
  ['fd_allocate', 'iII>i'],
  ['fd_close', 'i>i'],
  ['fd_datasync', 'i>i'],
  ['fd_fdstat_get', 'ii>i'],
  ['fd_fdstat_set_flags', 'ii>i'],
  ['fd_fdstat_set_rights', 'iII>i'],
  ['fd_filestat_get', 'ii>i'],
  ['fd_filestat_set_size', 'iI>i'],
  ['fd_filestat_set_times', 'iIIi>i'],
  ['fd_pread', 'iiiIi>i'],
  ['fd_prestat_get', 'ii>i'],
  ['fd_prestat_dir_name', 'iii>i'],
  ['fd_pwrite', 'iiiIi>i'],
  ['fd_read', 'iiii>i'],
  ['fd_readdir', 'iiiIi>i'],
  ['fd_renumber', 'ii>i'],
  ['fd_seek', 'iIii>i'],
  ['fd_sync', 'i>i'],
  ['fd_tell', 'ii>i'],
  ['fd_write', 'iiii>i'],
  ['path_create_directory', 'iii>i'],
  ['path_filestat_get', 'iiiii>i'],
  ['path_filestat_set_times', 'iiiiIIi>i'],
  ['path_link', 'iiiiiii>i'],
  ['path_open', 'iiiiiIIii>i'],
  ['path_readlink', 'iiiiii>i'],
  ['path_remove_directory', 'iii>i'],
  ['path_rename', 'iiiiii>i'],
  ['path_symlink', 'iiiii>i'],
  ['path_unlink_file', 'iii>i'],
  ['poll_oneoff', 'iiii>i'],
  ['proc_exit', 'i>'],
  ['proc_raise', 'i>i'],
  ['sched_yield', '>i'],
  ['random_get', 'ii>i'],
  ['sock_accept', 'iii>i'],
  ['sock_recv', 'iiiiii>i'],
  ['sock_send', 'iiiii>i'],
  ['sock_shutdown', 'ii>i'],
]);

/** The WASI preview1 functions the shim provides (all of them). */
export const WASI_PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set(WASI_PREVIEW1_SIGNATURES.keys());

/** True when `module.name` is an import the sandbox provides. */
export function isProvidedImport(module: string, name: string): boolean {
  if (module === EXTISM_NS) return EXTISM_KERNEL_FUNCTIONS.has(name);
  if (module === TYRUM_NS) return TYRUM_HOST_FUNCTIONS.has(name);
  if (module === AS_ENV_NS) return name === 'abort';
  if (module === WASI_NS) return WASI_PREVIEW1_FUNCTIONS.has(name);
  return false;
}

/** Log levels, in Extism's priority order (trace = 0 ... error = 4). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
