/**
 * The sandbox: runs third-party Extism plugins under enforced budgets.
 *
 * - {@link SandboxPool}: worker threads running plugins in-process, main-thread timers, restart
 *   on timeout or crash, host services (kv, egress) bridged synchronously to the main thread.
 * - {@link inspectModule}: the load-time checks (digest, validity, import allow-list, exports,
 *   memory cap rewrite), usable on their own (e.g. at install time).
 * - The host ABI (namespaces and functions a plugin may import) is documented in host-abi.ts;
 *   the WASI preview1 compatibility shim in wasi.ts.
 *
 * This module is the only importer of @extism/extism (in worker.ts, never on the main thread).
 */
export { SandboxPool } from './pool.js';
export type {
  CallResult,
  CallUsage,
  EgressHandler,
  EgressRequest,
  EgressResponse,
  HostApi,
  KvStore,
  LoadInfo,
  LoadOptions,
  LogEntry,
  SandboxEvent,
  SandboxPoolOptions,
} from './pool.js';
export { inspectModule } from './inspect.js';
export type { InspectPolicy, ModuleReport } from './inspect.js';
export { DEFAULT_LIMITS } from './limits.js';
export type { CallLimits, SandboxLimits } from './limits.js';
export { SANDBOX_ERROR_CODES, sandboxError, sandboxReason } from './errors.js';
export type { SandboxFailureReason } from './errors.js';
export { EXTISM_NS, TYRUM_NS, EXTISM_KERNEL_FUNCTIONS, TYRUM_HOST_FUNCTIONS, LOG_LEVELS, WASI_NS, WASI_PREVIEW1_FUNCTIONS } from './host-abi.js';
export { WASI_ERRNO } from './wasi.js';
export type { LogLevel } from './host-abi.js';
