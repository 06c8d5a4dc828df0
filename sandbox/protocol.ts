/**
 * Messages between the pool (main thread) and a sandbox worker. Everything here is structured-
 * clonable; a `WebAssembly.Module` crosses as-is (compiled once on the main thread).
 */
import type { SandboxFailure } from './errors.js';
import type { LogLevel } from './host-abi.js';
import type { CallLimits } from './limits.js';
import type { WasmModule } from './wasm-api.js';

/** Data a worker receives at start. */
export interface WorkerInit {
  /** The worker's end of the reply channel; read only with `receiveMessageOnPort`. */
  replyPort: import('node:worker_threads').MessagePort;
  /** Int32[0]: sequence number of the last host reply posted by the main thread. */
  flag: SharedArrayBuffer;
}

/** What a plugin was granted, as far as the worker needs to know. */
export interface WorkerGrants {
  kv: boolean;
  http: boolean;
}

export interface LoadMessage {
  type: 'load';
  job: number;
  key: string;
  module: WasmModule;
  config: Record<string, string>;
  maxVarBytes: number;
  logLevel: LogLevel;
  grants: WorkerGrants;
  /** Budget for host calls made by the start function. */
  limits: CallLimits;
}

export interface CallMessage {
  type: 'call';
  job: number;
  key: string;
  fn: string;
  input: Uint8Array;
  limits: CallLimits;
}

export interface UnloadMessage {
  type: 'unload';
  key: string;
}

/** Test hook: make the worker throw an uncaught error (exercises the crash path). */
export interface CrashMessage {
  type: 'crash';
}

export type ToWorker = LoadMessage | CallMessage | UnloadMessage | CrashMessage;

/** One captured log line. */
export interface LogEntry {
  level: LogLevel;
  message: string;
}

/** What a call used, measured in the worker (wall time is added by the pool). */
export interface WorkerUsage {
  host_calls: number;
  alloc_bytes: number;
  egress_bytes: number;
  output_bytes: number;
  /** Linear memory size after the call, in pages (memory never shrinks, so this is the peak). */
  mem_pages: number | null;
  log_lines: number;
  logs_dropped: number;
  logs_truncated: number;
}

export interface ReadyMessage {
  type: 'ready';
}

export interface DoneMessage {
  type: 'done';
  job: number;
  ok: true;
  output: Uint8Array | null;
  usage: WorkerUsage;
  logs: LogEntry[];
}

export interface FailedMessage {
  type: 'done';
  job: number;
  ok: false;
  failure: SandboxFailure;
  usage: WorkerUsage;
  logs: LogEntry[];
}

/** A synchronous host request: the worker blocks until the reply arrives on its reply port. */
export interface HostRequestMessage {
  type: 'host';
  seq: number;
  key: string;
  request: HostRequest;
}

export type HostRequest =
  | { op: 'kv_get'; key: string }
  | { op: 'kv_set'; key: string; value: Uint8Array | null }
  | {
      op: 'http';
      url: string;
      method: string;
      headers: Record<string, string>;
      body: Uint8Array | null;
      maxResponseBytes: number;
    };

export type FromWorker = ReadyMessage | DoneMessage | FailedMessage | HostRequestMessage;

/** The main thread's answer to a host request. */
export type HostReply =
  | { seq: number; ok: true; value: unknown }
  | { seq: number; ok: false; failure: SandboxFailure };
