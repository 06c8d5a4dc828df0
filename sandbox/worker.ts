/**
 * A sandbox worker: runs Extism plugins in-process, one job (load or call) at a time, under the
 * budgets the pool sends with each job. The pool owns the wall-clock timers and terminates this
 * thread when one expires, so nothing here needs to be interruptible.
 *
 * This file and nothing else imports @extism/extism. Host functions run synchronously inside the
 * guest's call; those that need the main thread (kv, http) block on a SharedArrayBuffer flag until
 * the pool has posted the answer on a dedicated port (see `hostRequest`).
 *
 * WASI preview1 is served by Tyrum's shim (wasi.ts), registered under `WASI_SHIM_NS` (the
 * inspector renamed the module's `wasi_snapshot_preview1` imports to it; Extism's own WASI stays
 * off). Extism's host-function API (`CallContext`) only reaches Extism's kernel blocks, never the
 * guest's linear memory, so the shim reads and writes the memory the instance exports
 * (`Loaded.memory`, taken from `plugin.getInstance()` right after instantiation); that is why the
 * WASI initialisation exports are run here, after it is known, rather than by the SDK.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import createPlugin, { type CallContext, type ExtismPluginOptions, type Plugin } from '@extism/extism';
import type { SandboxFailure, SandboxFailureReason } from './errors.js';
import { AS_ENV_NS, EXTISM_NS, LOG_LEVELS, TYRUM_NS, WASI_RENAMED_EXPORTS, WASI_SHIM_NS, type LogLevel } from './host-abi.js';
import type { CallLimits } from './limits.js';
import { LineBuffer, wasiFunctions } from './wasi.js';
import { Wasm, type WasmMemory, type WasmModule } from './wasm-api.js';
import type {
  CallMessage,
  FromWorker,
  HostReply,
  HostRequest,
  LoadMessage,
  LogEntry,
  ToWorker,
  WorkerGrants,
  WorkerInit,
  WorkerUsage,
} from './protocol.js';

if (parentPort === null) throw new Error('sandbox/worker.ts must run in a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;
const replyFlag = new Int32Array(init.flag);

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const OFFSET_MASK = (1n << 48n) - 1n;
/** Longest key accepted by config_get / var_* (Extism keys are short names). */
const MAX_NAME_BYTES = 4096;
/** Longest http_request descriptor (JSON: url, method, headers). */
const MAX_HTTP_REQUEST_JSON = 64 * 1024;
/** Longest message kept from a guest-reported error. */
const MAX_ERROR_MESSAGE = 4096;
/**
 * Kernel blocks the guest may create in one call. The SDK addresses a block as index << 48 in an
 * i64, so past 65,535 blocks addresses would wrap onto earlier blocks.
 */
const MAX_KERNEL_BLOCKS = 60_000;

interface Loaded {
  key: string;
  module: WasmModule;
  config: Record<string, string>;
  maxVarBytes: number;
  logLevel: LogLevel;
  grants: WorkerGrants;
  plugin: Plugin | null;
  memory: WasmMemory | null;
  /** Log token bucket (sustained rate across calls). */
  tokens: number;
  tokensAt: number;
}

/**
 * Thrown through the guest when a host function aborts the call; the cause is in
 * `Activation.abort`. Created without a stack trace: capturing one through wasm frames costs
 * ~0.1 ms, and a guest that catches aborts (wasm exception handling) would make us pay it per
 * host call; the same instance is rethrown for every later host call of the activation.
 */
class GuestAbort extends Error {
  override name = 'GuestAbort';
  static create(message: string): GuestAbort {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new GuestAbort(message);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/** The state of one load or call: budgets used, logs, and the sticky abort reason. */
class Activation {
  hostCalls = 0;
  blocks = 0;
  allocBytes = 0;
  egressBytes = 0;
  logs: LogEntry[] = [];
  logsDropped = 0;
  logsTruncated = 0;
  abort: SandboxFailure | null = null;
  abortError: GuestAbort | null = null;
  output: { ctx: CallContext; addr: bigint; length: number } | null = null;
  httpStatus = 0;
  httpHeaders: Record<string, string> | null = null;
  /** WASI stdout (index 1) and stderr (index 2), line-buffered into the log; created on first write. */
  stdio: (LineBuffer | null)[] = [null, null, null];
  constructor(
    readonly lp: Loaded,
    readonly limits: CallLimits,
  ) {}

  usage(outputBytes: number): WorkerUsage {
    const mem = this.lp.memory;
    return {
      host_calls: this.hostCalls,
      alloc_bytes: this.allocBytes,
      egress_bytes: this.egressBytes,
      output_bytes: outputBytes,
      mem_pages: mem ? mem.buffer.byteLength / 65536 : null,
      log_lines: this.logs.length,
      logs_dropped: this.logsDropped,
      logs_truncated: this.logsTruncated,
    };
  }
}

const plugins = new Map<string, Loaded>();
let current: Activation | null = null;
let seq = 0;

function post(m: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

/** Abort the running guest: record why (sticky: every later host call fails too) and unwind. */
function fail(a: Activation, reason: SandboxFailureReason, message: string, details: Record<string, unknown> = {}): never {
  a.abort ??= { reason, message, details };
  a.abortError ??= GuestAbort.create(a.abort.message);
  throw a.abortError;
}

/** The running activation; throws if none, or if it was already aborted. */
function active(): Activation {
  const a = current;
  if (a === null) throw GuestAbort.create('host function called outside a plugin call');
  if (a.abortError !== null) throw a.abortError;
  return a;
}

/** Rethrow the activation's abort if a host function aborted it (and the guest caught that). */
function throwIfAborted(a: Activation): void {
  if (a.abort !== null) throw GuestAbort.create(a.abort.message);
}

/** Count one host call against the budget. */
function counted(): Activation {
  const a = active();
  a.hostCalls += 1;
  if (a.hostCalls > a.limits.maxHostCalls) {
    fail(a, 'budget_exceeded', `plugin exceeded its budget of ${a.limits.maxHostCalls} host calls`, {
      budget: 'host_calls',
      limit: a.limits.maxHostCalls,
    });
  }
  return a;
}

/** Charge one new kernel block of `n` bytes to the activation's budgets. */
function chargeAlloc(a: Activation, n: number): void {
  a.blocks += 1;
  if (a.blocks > MAX_KERNEL_BLOCKS) {
    fail(a, 'budget_exceeded', `plugin created more than ${MAX_KERNEL_BLOCKS} kernel blocks in one call`, { budget: 'kernel_blocks' });
  }
  if (n > a.limits.maxAllocBytes - a.allocBytes) {
    fail(a, 'budget_exceeded', `plugin exceeded its budget of ${a.limits.maxAllocBytes} bytes of kernel memory`, {
      budget: 'alloc_bytes',
      limit: a.limits.maxAllocBytes,
      requested: n,
    });
  }
  a.allocBytes += n;
}

/** Store bytes in kernel memory on the guest's behalf, charged to its allocation budget. */
function storeCharged(a: Activation, ctx: CallContext, bytes: Uint8Array): bigint {
  chargeAlloc(a, bytes.byteLength);
  return ctx.store(bytes);
}

/** The bytes of the kernel block at `addr` (whole block, as Extism defines it), or null. */
function blockBytes(ctx: CallContext, addr: bigint): Uint8Array | null {
  const out = ctx.read(addr);
  return out === null ? null : out.bytes();
}

function readName(a: Activation, ctx: CallContext, addr: bigint, max: number, what: string): string | null {
  const b = blockBytes(ctx, addr);
  if (b === null) return null;
  if (b.byteLength > max) fail(a, 'budget_exceeded', `${what} is ${b.byteLength} bytes, above the ${max}-byte limit`, { budget: what });
  return decoder.decode(b);
}

const PRIORITY: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

function takeLogToken(a: Activation): boolean {
  const lp = a.lp;
  const now = performance.now();
  lp.tokens = Math.min(a.limits.maxLogLines, lp.tokens + ((now - lp.tokensAt) / 1000) * a.limits.logLinesPerSecond);
  lp.tokensAt = now;
  if (lp.tokens < 1) return false;
  lp.tokens -= 1;
  return true;
}

function logged(a: Activation, level: LogLevel): boolean {
  return PRIORITY[level] >= PRIORITY[a.lp.logLevel];
}

/** Keep a log line (at a level the plugin logs) if the per-call cap and the plugin's rate allow; truncate long lines. */
function emitLog(a: Activation, level: LogLevel, bytes: Uint8Array): void {
  emitLine(a, level, bytes, bytes.byteLength);
}

/** {@link emitLog} for a line of `total` bytes of which `kept` holds at least the first `maxLogLineBytes` (or all). */
function emitLine(a: Activation, level: LogLevel, kept: Uint8Array, total: number): void {
  if (a.logs.length >= a.limits.maxLogLines || !takeLogToken(a)) {
    a.logsDropped += 1;
    return;
  }
  const cap = a.limits.maxLogLineBytes;
  let message: string;
  if (total > cap) {
    message = `${decoder.decode(kept.subarray(0, cap))}… [truncated ${total - cap} bytes]`;
    a.logsTruncated += 1;
  } else {
    message = decoder.decode(kept);
  }
  a.logs.push({ level, message });
}

/** WASI stdout is logged at info, stderr at warn. */
const STDIO_LEVEL = { 1: 'info', 2: 'warn' } as const;

/** Bytes a guest wrote to WASI stdout or stderr: into the log, one entry per line. */
function stdioWrite(a: Activation, fd: 1 | 2, bytes: Uint8Array): void {
  const level = STDIO_LEVEL[fd];
  if (!logged(a, level)) return;
  let lines = a.stdio[fd] ?? null;
  if (lines === null) {
    lines = new LineBuffer(a.limits.maxLogLineBytes, (kept, total) => emitLine(a, level, kept, total));
    a.stdio[fd] = lines;
  }
  lines.write(bytes);
}

/** Log what is left of unfinished stdout/stderr lines (at the end of a load or call). */
function flushStdio(a: Activation): void {
  for (const lines of a.stdio) lines?.flush();
}

function logFromBlock(level: LogLevel) {
  return (ctx: CallContext, addr: bigint): void => {
    const a = counted();
    if (!logged(a, level)) return;
    const b = blockBytes(ctx, addr);
    if (b !== null) emitLog(a, level, b);
  };
}

/**
 * Ask the main thread and block until it answers. The reply is posted on `replyPort` before the
 * flag is bumped, so once the flag moves the message is already queued; `Atomics.wait` returns
 * at once if the flag moved before we started waiting (no lost wake-up).
 */
function hostRequest(a: Activation, request: HostRequest): unknown {
  seq = seq >= 0x7fffffff ? 1 : seq + 1;
  const mine = seq;
  post({ type: 'host', seq: mine, key: a.lp.key, request });
  for (;;) {
    const m = receiveMessageOnPort(init.replyPort);
    if (m !== undefined) {
      const reply = m.message as HostReply;
      if (reply.seq !== mine) continue; // a late answer to an earlier, abandoned request
      if (!reply.ok) fail(a, reply.failure.reason, reply.failure.message, reply.failure.details);
      return reply.value;
    }
    const seen = Atomics.load(replyFlag, 0);
    if (seen !== mine) Atomics.wait(replyFlag, 0, seen, 1000);
  }
}

function requireGrant(a: Activation, grant: keyof WorkerGrants, fn: string): void {
  if (!a.lp.grants[grant]) {
    const what = grant === 'kv' ? 'key-value storage' : 'HTTP egress';
    fail(a, 'capability_denied', `plugin called ${fn} but was not granted ${what}`, { capability: grant });
  }
}

/**
 * The request descriptor of `http_request`, read as Extism's own hosts read it (extism-manifest's
 * `HttpRequest`): `url` (string, required); `method` (string, any case; missing or null is GET);
 * `headers`, or `header` as older PDKs name it (an object of strings; missing or null is none).
 * Other fields are ignored. What the PDKs send: Rust `{"url","headers":{},"method":null}` for
 * `HttpRequest::new(url)`, Go `{"url","method":"GET","headers":null}`.
 */
function parseHttpRequest(a: Activation, json: string): { url: string; method: string; headers: Record<string, string> } {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    fail(a, 'trap', 'http_request: the request descriptor is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(a, 'trap', 'http_request: the request descriptor must be a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o['url'] !== 'string') fail(a, 'trap', 'http_request: "url" must be a string');
  const method = o['method'] ?? 'GET';
  if (typeof method !== 'string' || !/^[A-Za-z]{1,16}$/.test(method)) fail(a, 'trap', 'http_request: "method" must be an HTTP method name or null');
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  const name = o['headers'] !== undefined && o['headers'] !== null ? 'headers' : 'header';
  const h = o[name];
  if (h !== undefined && h !== null) {
    if (typeof h !== 'object' || Array.isArray(h)) fail(a, 'trap', `http_request: "${name}" must be an object of strings`);
    for (const [k, val] of Object.entries(h)) {
      if (typeof val !== 'string') fail(a, 'trap', `http_request: header "${k}" must be a string`);
      headers[k] = val;
    }
  }
  return { url: o['url'], method: method.toUpperCase(), headers };
}

/** Read an AssemblyScript string (UTF-16, byte length at ptr-4) from guest memory, bounded. */
function asString(mem: WasmMemory | null, ptr: number): string {
  if (mem === null || ptr < 4 || ptr >= mem.buffer.byteLength) return '';
  const view = new DataView(mem.buffer);
  const len = Math.min(view.getUint32(ptr - 4, true), 512, mem.buffer.byteLength - ptr) & ~1;
  let s = '';
  for (let i = 0; i < len; i += 2) s += String.fromCharCode(view.getUint16(ptr + i, true));
  return s;
}

/** The host functions handed to the SDK; kernel names here replace the SDK's own. */
const FUNCTIONS: NonNullable<ExtismPluginOptions['functions']> = {
  [EXTISM_NS]: {
    alloc: (_ctx: CallContext, n: bigint): bigint => {
      const a = counted();
      if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) fail(a, 'trap', `alloc: invalid size ${n}`);
      chargeAlloc(a, Number(n));
      return _ctx.alloc(n);
    },
    output_set: (ctx: CallContext, addr: bigint, length: bigint): void => {
      const a = active();
      const len = Number(length);
      if (len > a.limits.maxOutputBytes) {
        fail(a, 'output_too_large', `plugin output of ${len} bytes exceeds the ${a.limits.maxOutputBytes}-byte limit`, {
          limit: a.limits.maxOutputBytes,
          output_bytes: len,
        });
      }
      const b = blockBytes(ctx, addr);
      const offset = Number(addr & OFFSET_MASK);
      if (b === null || length < 0n || offset + len > b.byteLength) fail(a, 'trap', 'output_set: address or length outside any kernel block');
      a.output = { ctx, addr, length: len };
    },
    config_get: (ctx: CallContext, addr: bigint): bigint => {
      const a = counted();
      const key = readName(a, ctx, addr, MAX_NAME_BYTES, 'config key');
      if (key === null || !Object.hasOwn(a.lp.config, key)) return 0n;
      return storeCharged(a, ctx, encoder.encode(a.lp.config[key]));
    },
    var_get: (ctx: CallContext, addr: bigint): bigint => {
      const a = counted();
      const key = readName(a, ctx, addr, MAX_NAME_BYTES, 'var name');
      if (key === null) return 0n;
      const v = ctx.getVariable(key);
      return v === null ? 0n : storeCharged(a, ctx, v.bytes().slice());
    },
    var_set: (ctx: CallContext, addr: bigint, valueAddr: bigint): void => {
      const a = counted();
      const key = readName(a, ctx, addr, MAX_NAME_BYTES, 'var name');
      if (key === null) return;
      if (valueAddr === 0n) {
        ctx.deleteVariable(key);
        return;
      }
      const value = blockBytes(ctx, valueAddr);
      if (value === null) return;
      try {
        ctx.setVariable(key, value.slice());
      } catch {
        fail(a, 'budget_exceeded', `plugin exceeded its ${a.lp.maxVarBytes}-byte budget of Extism vars`, {
          budget: 'var_bytes',
          limit: a.lp.maxVarBytes,
        });
      }
    },
    log_trace: logFromBlock('trace'),
    log_debug: logFromBlock('debug'),
    log_info: logFromBlock('info'),
    log_warn: logFromBlock('warn'),
    log_error: logFromBlock('error'),
    get_log_level: (): number => {
      const a = active();
      return PRIORITY[a.lp.logLevel];
    },
    http_request: (ctx: CallContext, reqAddr: bigint, bodyAddr: bigint): bigint => {
      const a = counted();
      requireGrant(a, 'http', 'http_request');
      const reqBytes = blockBytes(ctx, reqAddr);
      if (reqBytes === null) fail(a, 'trap', 'http_request: bad request address');
      if (reqBytes.byteLength > MAX_HTTP_REQUEST_JSON) fail(a, 'trap', 'http_request: request descriptor too large');
      const req = parseHttpRequest(a, decoder.decode(reqBytes));
      // The Go PDK always passes a body block, empty when the request has none: that is no body.
      const bodyBytes = bodyAddr === 0n ? null : blockBytes(ctx, bodyAddr);
      const body = bodyBytes === null || bodyBytes.byteLength === 0 ? null : bodyBytes.slice();
      const sent = body?.byteLength ?? 0;
      const budget = a.limits.maxEgressBytes;
      if (sent > budget - a.egressBytes) {
        fail(a, 'budget_exceeded', `plugin exceeded its egress budget of ${budget} bytes`, { budget: 'egress_bytes', limit: budget });
      }
      a.egressBytes += sent;
      const res = hostRequest(a, { op: 'http', ...req, body, maxResponseBytes: budget - a.egressBytes }) as {
        status: number;
        headers: Record<string, string>;
        body: Uint8Array;
      };
      if (res.body.byteLength > budget - a.egressBytes) {
        fail(a, 'budget_exceeded', `plugin exceeded its egress budget of ${budget} bytes`, { budget: 'egress_bytes', limit: budget });
      }
      a.egressBytes += res.body.byteLength;
      a.httpStatus = res.status;
      a.httpHeaders = res.headers;
      a.blocks += 1; // the body is charged to the egress budget, not to alloc_bytes
      return ctx.store(res.body);
    },
    http_status_code: (): number => active().httpStatus,
    http_headers: (ctx: CallContext): bigint => {
      const a = counted();
      return a.httpHeaders === null ? 0n : storeCharged(a, ctx, encoder.encode(JSON.stringify(a.httpHeaders)));
    },
  },
  [TYRUM_NS]: {
    log: (ctx: CallContext, level: number, addr: bigint): void => {
      const a = counted();
      const lvl = LOG_LEVELS[Math.max(0, Math.min(4, level | 0))] as LogLevel;
      if (!logged(a, lvl)) return;
      const b = blockBytes(ctx, addr);
      if (b !== null) emitLog(a, lvl, b);
    },
    kv_get: (ctx: CallContext, keyAddr: bigint): bigint => {
      const a = counted();
      requireGrant(a, 'kv', 'kv_get');
      const key = readName(a, ctx, keyAddr, a.limits.maxKvKeyBytes, 'kv key');
      if (key === null) fail(a, 'trap', 'kv_get: bad key address');
      const value = hostRequest(a, { op: 'kv_get', key }) as Uint8Array | null;
      return value === null ? 0n : storeCharged(a, ctx, value);
    },
    kv_set: (ctx: CallContext, keyAddr: bigint, valueAddr: bigint): number => {
      const a = counted();
      requireGrant(a, 'kv', 'kv_set');
      const key = readName(a, ctx, keyAddr, a.limits.maxKvKeyBytes, 'kv key');
      if (key === null) fail(a, 'trap', 'kv_set: bad key address');
      let value: Uint8Array | null = null;
      if (valueAddr !== 0n) {
        const b = blockBytes(ctx, valueAddr);
        if (b === null) fail(a, 'trap', 'kv_set: bad value address');
        if (b.byteLength > a.limits.maxKvValueBytes) {
          fail(a, 'budget_exceeded', `kv value of ${b.byteLength} bytes is above the ${a.limits.maxKvValueBytes}-byte limit`, {
            budget: 'kv_value',
          });
        }
        value = b.slice();
      }
      return hostRequest(a, { op: 'kv_set', key, value }) === true ? 0 : 1;
    },
  },
  [WASI_SHIM_NS]: wasiFunctions<Activation>({
    enter: counted,
    memory: (a, fn) => {
      const mem = a.lp.memory;
      if (mem === null) {
        fail(a, 'trap', `WASI ${fn} needs the module's memory: the module exports none, or called WASI from a start function (before its memory is available)`);
      }
      return mem.buffer;
    },
    stdio: stdioWrite,
    exit: (a, code) =>
      fail(a, 'plugin_error', `plugin exited with code ${code} (WASI proc_exit) instead of returning`, { exit_code: code, wasi: 'proc_exit' }),
    maxSleepMs: (a) => a.limits.wallMs,
  }),
  [AS_ENV_NS]: {
    abort: (_ctx: CallContext, msg: number, file: number, line: number, col: number): never => {
      const a = counted();
      const m = asString(a.lp.memory, msg);
      const f = asString(a.lp.memory, file);
      fail(a, 'trap', `plugin aborted: ${m || '(no message)'} at ${f || '?'}:${line}:${col}`);
    },
  },
};

/** The SDK's own diagnostics (rare: we replace the functions that log) go to the plugin's log. */
function sdkLogger(level: LogLevel) {
  return (...args: unknown[]): void => {
    if (current !== null && logged(current, level)) emitLog(current, level, encoder.encode(`extism: ${args.map(String).join(' ')}`));
  };
}
const LOGGER = {
  trace: sdkLogger('trace'),
  debug: sdkLogger('debug'),
  info: sdkLogger('info'),
  log: sdkLogger('info'),
  warn: sdkLogger('warn'),
  error: sdkLogger('error'),
} as unknown as Console;

function classify(a: Activation, e: unknown): SandboxFailure {
  if (a.abort !== null) return a.abort;
  const message = e instanceof Error ? e.message : String(e);
  const PREFIX = 'Plugin-originated error: ';
  if (message.startsWith(PREFIX)) {
    return { reason: 'plugin_error', message: `plugin reported an error: ${message.slice(PREFIX.length, PREFIX.length + MAX_ERROR_MESSAGE)}` };
  }
  if (e instanceof RangeError && /call stack/i.test(message)) return { reason: 'trap', message: 'plugin trapped: stack overflow' };
  return { reason: 'trap', message: `plugin trapped: ${message.slice(0, MAX_ERROR_MESSAGE)}` };
}

async function discard(lp: Loaded): Promise<void> {
  const p = lp.plugin;
  lp.plugin = null;
  lp.memory = null;
  if (p !== null) await p.close().catch(() => undefined);
}

/** Create a fresh instance of `lp` (runs its start function) under activation `a`. */
async function instantiate(lp: Loaded, a: Activation): Promise<void> {
  current = a;
  try {
    const plugin = await createPlugin(
      { wasm: [{ module: lp.module }] },
      {
        useWasi: false,
        runInWorker: false,
        functions: FUNCTIONS,
        logger: LOGGER,
        logLevel: 'trace',
        memory: { maxVarBytes: lp.maxVarBytes },
      },
    );
    if (a.abort !== null) throw GuestAbort.create(a.abort.message);
    const instance = await plugin.getInstance();
    lp.plugin = plugin;
    const exports = instance.exports as Record<string, unknown>;
    const memory = exports['memory'] instanceof Wasm.Memory ? exports['memory'] : Object.values(exports).find((x) => x instanceof Wasm.Memory);
    lp.memory = (memory as WasmMemory | undefined) ?? null;
    // A WASI module's initialisation, renamed at load so that it runs now that its memory is known:
    // `_initialize` (a reactor's constructors, e.g. TinyGo's and Go's runtime), then `hs_init`.
    for (const name of ['_initialize', 'hs_init']) {
      const init = exports[WASI_RENAMED_EXPORTS.get(name) as string];
      if (typeof init === 'function') (init as () => void)();
      throwIfAborted(a); // the guest swallowed an abort
    }
  } catch (e) {
    await discard(lp);
    const f = classify(a, e);
    throw f.reason === 'trap' ? { ...f, reason: 'instantiate_failed', message: `plugin failed to start: ${f.message}` } : f;
  } finally {
    current = null;
  }
}

async function onLoad(m: LoadMessage): Promise<void> {
  const old = plugins.get(m.key);
  if (old !== undefined) await discard(old);
  const lp: Loaded = {
    key: m.key,
    module: m.module,
    config: Object.assign(Object.create(null) as Record<string, string>, m.config),
    maxVarBytes: m.maxVarBytes,
    logLevel: m.logLevel,
    grants: m.grants,
    plugin: null,
    memory: null,
    tokens: m.limits.maxLogLines,
    tokensAt: performance.now(),
  };
  const a = new Activation(lp, m.limits);
  try {
    await instantiate(lp, a);
    plugins.set(m.key, lp);
    flushStdio(a);
    post({ type: 'done', job: m.job, ok: true, output: null, usage: a.usage(0), logs: a.logs });
  } catch (f) {
    flushStdio(a);
    post({ type: 'done', job: m.job, ok: false, failure: f as SandboxFailure, usage: a.usage(0), logs: a.logs });
  }
}

async function onCall(m: CallMessage): Promise<void> {
  const lp = plugins.get(m.key);
  if (lp === undefined) {
    const usage = { host_calls: 0, alloc_bytes: 0, egress_bytes: 0, output_bytes: 0, mem_pages: null, log_lines: 0, logs_dropped: 0, logs_truncated: 0 };
    post({ type: 'done', job: m.job, ok: false, failure: { reason: 'not_loaded', message: `no plugin loaded as "${m.key}"` }, usage, logs: [] });
    return;
  }
  const a = new Activation(lp, m.limits);
  try {
    // A previous call trapped: start from a fresh instance (the guest's heap may be corrupt).
    if (lp.plugin === null) await instantiate(lp, a);
    const plugin = lp.plugin as Plugin | null;
    if (plugin === null) throw GuestAbort.create('plugin has no instance');
    current = a;
    let sdkOutput;
    try {
      sdkOutput = await plugin.call(m.fn, m.input);
    } finally {
      current = null;
    }
    if (a.abort !== null) throw GuestAbort.create(a.abort.message); // the guest swallowed an abort
    let output: Uint8Array | null = null;
    if (a.output !== null) {
      const block = blockBytes(a.output.ctx, a.output.addr);
      const offset = Number(a.output.addr & OFFSET_MASK);
      output = block === null ? null : block.slice(offset, offset + a.output.length);
    } else if (sdkOutput !== null) {
      output = sdkOutput.bytes().slice();
    }
    const n = output?.byteLength ?? 0;
    if (n > a.limits.maxOutputBytes) {
      a.abort = { reason: 'output_too_large', message: `plugin output of ${n} bytes exceeds the ${a.limits.maxOutputBytes}-byte limit`, details: { limit: a.limits.maxOutputBytes, output_bytes: n } };
      throw GuestAbort.create(a.abort.message);
    }
    flushStdio(a);
    post({ type: 'done', job: m.job, ok: true, output, usage: a.usage(n), logs: a.logs }, output ? [output.buffer as ArrayBuffer] : []);
  } catch (e) {
    const failure = e !== null && typeof e === 'object' && 'reason' in e ? (e as SandboxFailure) : classify(a, e);
    // Anything but a clean guest-reported error leaves the instance suspect: discard it. An exit
    // (WASI proc_exit) unwound the guest mid-call: its runtime is gone too.
    if (failure.reason !== 'plugin_error' || failure.details?.['exit_code'] !== undefined) await discard(lp);
    flushStdio(a);
    post({ type: 'done', job: m.job, ok: false, failure, usage: a.usage(0), logs: a.logs });
  }
}

async function onMessage(m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'load':
      return onLoad(m);
    case 'call':
      return onCall(m);
    case 'unload': {
      const lp = plugins.get(m.key);
      plugins.delete(m.key);
      if (lp !== undefined) await discard(lp);
      return;
    }
    case 'crash':
      return; // handled synchronously below
  }
}

// Jobs are strictly sequential: the pool sends the next one only after this one's 'done'.
port.on('message', (m: ToWorker) => {
  if (m.type === 'crash') throw new Error('sandbox worker crash injected by a test'); // uncaught, on purpose
  void onMessage(m);
});
post({ type: 'ready' });
