/**
 * SandboxPool: the main-thread side of the sandbox.
 *
 * It owns N worker threads, each running plugins in-process (Extism `runInWorker: false`), and
 * every timer. A plugin is placed on one worker at load; that worker runs one job (a load or a
 * call) at a time, the others wait in the worker's queue. When a job overruns its wall-clock
 * budget, or the worker dies, the pool rejects that job with a coded error, terminates the
 * worker, starts a fresh one and reloads the worker's plugins from their compiled modules;
 * queued jobs then run on the new worker. The gateway's event loop never runs guest code, so it
 * is never blocked, and plugins on other workers are not affected at all.
 *
 * Host functions that need the main thread (key-value storage, HTTP egress) arrive as 'host'
 * messages while the worker blocks; the pool answers on the worker's reply port and bumps a
 * shared flag (see sandbox/worker.ts `hostRequest`).
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { TyrumError } from '../core/errors/index.js';
import { fromFailure, sandboxError, sandboxReason, type SandboxFailure } from './errors.js';
import { LOG_LEVELS, type LogLevel } from './host-abi.js';
import { inspectModule, type ModuleReport } from './inspect.js';
import { DEFAULT_LIMITS, resolveLimits, tightenCallLimits, type CallLimits, type SandboxLimits } from './limits.js';
import { Wasm, type WasmModule } from './wasm-api.js';
import type { FromWorker, HostReply, HostRequest, HostRequestMessage, LogEntry, ToWorker, WorkerInit, WorkerUsage } from './protocol.js';

export type { LogEntry } from './protocol.js';

/** Per-plugin key-value storage served to `tyrum:host/v1.kv_get/kv_set` (already scoped to the plugin). */
export interface KvStore {
  get(key: string): Uint8Array | null | Promise<Uint8Array | null>;
  /** Store a value (null deletes). Return false to refuse it (quota): the guest sees 1. */
  set(key: string, value: Uint8Array | null): boolean | void | Promise<boolean | void>;
}

/** An outbound request a plugin made through Extism's `http_request`. */
export interface EgressRequest {
  pluginKey: string;
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  /** The response body may not exceed this (what is left of the call's egress budget). */
  maxResponseBytes: number;
  /** Aborted when the call can no longer use the answer (timeout, crash, pool closed). */
  signal: AbortSignal;
}

export interface EgressResponse {
  status: number;
  headers?: Record<string, string>;
  body?: Uint8Array;
}

/**
 * The gateway's checked egress. Throw to refuse or fail a request; a sandbox error (e.g.
 * `sandboxError('capability_denied', ...)`) keeps its reason, anything else becomes `host_error`.
 */
export type EgressHandler = (req: EgressRequest) => Promise<EgressResponse>;

/** Host services granted to one plugin; an absent service is a capability not granted. */
export interface HostApi {
  kv?: KvStore;
  egress?: EgressHandler;
}

export interface SandboxPoolOptions {
  /** Worker threads (default 2). */
  workers?: number;
  /** Limits for every plugin unless its load options say otherwise. */
  defaultLimits?: Partial<SandboxLimits>;
  /** V8 limits of each worker's JS heap (guest linear memory is capped separately). */
  resourceLimits?: ResourceLimits;
  /** Lifecycle notifications (worker restarts, readiness), e.g. for metrics and audit. */
  onEvent?: (e: SandboxEvent) => void;
}

export type SandboxEvent =
  | { type: 'worker_ready'; worker: number; ms: number }
  | { type: 'worker_restart'; worker: number; reason: 'timeout' | 'crash'; plugin?: string }
  | { type: 'plugin_broken'; plugin: string; error: TyrumError };

export interface LoadOptions {
  /** The module bytes as shipped. */
  wasm: Uint8Array;
  /** Expected sha256 (hex) of `wasm`, from the lockfile. */
  expectedSha256: string;
  /** Function exports callers may invoke; each must exist in the module. */
  exports: readonly string[];
  limits?: Partial<SandboxLimits>;
  /** Values served by Extism's `config_get`. */
  config?: Record<string, string>;
  /** Host services granted to the plugin. */
  hostApi?: HostApi;
  /** Lowest log level kept (default 'info'); also what `get_log_level` reports to the guest. */
  logLevel?: LogLevel;
}

export interface LoadInfo {
  key: string;
  sha256: string;
  /** Index of the worker the plugin runs on. */
  worker: number;
  memory: ModuleReport['memory'];
  imports: string[];
  /** Time to instantiate in the worker, including the start function. */
  load_ms: number;
}

export interface CallUsage extends Omit<WorkerUsage, 'mem_pages'> {
  /** Wall time from dispatch to the worker until its answer. */
  wall_ms: number;
  /** Linear memory after the call in 64 KiB pages (the peak: memory never shrinks); null if unexported. */
  mem_pages_peak: number | null;
}

export interface CallResult {
  output: Uint8Array;
  usage: CallUsage;
  logs: LogEntry[];
}

interface PluginEntry {
  key: string;
  module: WasmModule;
  exports: ReadonlySet<string>;
  limits: Readonly<SandboxLimits>;
  config: Record<string, string>;
  hostApi: HostApi;
  logLevel: LogLevel;
  slot: Slot;
  /** Set when a reload after a worker restart failed; calls fail with it until reloaded. */
  broken: TyrumError | null;
}

interface JobBase {
  id: number;
  entry: PluginEntry;
  reject: (e: TyrumError) => void;
}
interface LoadJob extends JobBase {
  kind: 'load';
  /** A reload after a restart (no caller waiting). */
  internal: boolean;
  resolve: (r: { usage: WorkerUsage; ms: number }) => void;
}
interface CallJob extends JobBase {
  kind: 'call';
  fn: string;
  input: Uint8Array;
  limits: CallLimits;
  resolve: (r: CallResult) => void;
}
type Job = LoadJob | CallJob;

interface Running {
  job: Job;
  timer: NodeJS.Timeout;
  startedAt: number;
}

interface Slot {
  index: number;
  worker: Worker | null;
  /** Bumped on every restart; messages from an older worker are ignored. */
  generation: number;
  ready: boolean;
  spawnedAt: number;
  flag: Int32Array;
  replyPort: MessagePort | null;
  plugins: Set<string>;
  queue: Job[];
  running: Running | null;
  restarts: number;
  spawnFailures: number;
  exited: Promise<void> | null;
  /** Host requests in progress for the current worker; aborted when it is retired. */
  hostRequests: Set<AbortController>;
}

/** Consecutive failed worker starts after which queued jobs are failed instead of retried. */
const MAX_SPAWN_FAILURES = 3;
const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/;

const HERE = import.meta.url;
/** Compiled: worker.js beside this file. From TypeScript sources (tests): a bootstrap that registers tsx. */
const WORKER_URL = HERE.endsWith('.ts') ? new URL('./worker-bootstrap.mjs', HERE) : new URL('./worker.js', HERE);

const DEFAULT_RESOURCE_LIMITS: ResourceLimits = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 };

function exactCopy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b); // a fresh, exactly sized buffer (a view may sit on a larger slab)
}

function toFailure(e: unknown, fallbackReason: SandboxFailure['reason'], prefix: string): SandboxFailure {
  const reason = sandboxReason(e);
  const message = e instanceof Error ? e.message : String(e);
  if (reason !== undefined && e instanceof TyrumError) {
    const { reason: _r, ...details } = e.details ?? {};
    return { reason, message, details };
  }
  return { reason: fallbackReason, message: `${prefix}${message}` };
}

/** A pool of sandbox workers running Extism plugins under enforced budgets. */
export class SandboxPool {
  readonly #slots: Slot[] = [];
  readonly #plugins = new Map<string, PluginEntry>();
  readonly #defaults: Readonly<SandboxLimits>;
  readonly #resourceLimits: ResourceLimits;
  readonly #onEvent: (e: SandboxEvent) => void;
  #nextJob = 1;
  #closed = false;

  constructor(opts: SandboxPoolOptions = {}) {
    const n = opts.workers ?? 2;
    if (!Number.isSafeInteger(n) || n < 1 || n > 64) throw sandboxError('invalid_argument', 'workers must be an integer in 1..64');
    this.#defaults = resolveLimits(DEFAULT_LIMITS, opts.defaultLimits);
    this.#resourceLimits = { ...DEFAULT_RESOURCE_LIMITS, ...opts.resourceLimits };
    this.#onEvent = opts.onEvent ?? (() => undefined);
    for (let i = 0; i < n; i++) {
      const slot: Slot = {
        index: i,
        worker: null,
        generation: 0,
        ready: false,
        spawnedAt: 0,
        flag: new Int32Array(new SharedArrayBuffer(4)),
        replyPort: null,
        plugins: new Set(),
        queue: [],
        running: null,
        restarts: 0,
        spawnFailures: 0,
        exited: null,
        hostRequests: new Set(),
      };
      this.#slots.push(slot);
      this.#spawn(slot);
    }
  }

  /** The limits every plugin starts from. */
  get defaultLimits(): Readonly<SandboxLimits> {
    return this.#defaults;
  }

  /**
   * Check, compile and instantiate a plugin under `key`. Refuses (coded error) a digest mismatch,
   * an invalid module, imports the sandbox does not provide (unknown host functions, WASI beyond
   * the preview1 shim, imported memories/tables), missing exports, or an initial memory above the
   * cap; rewrites a missing or larger memory maximum to the cap. The start function (and a WASI
   * module's `_initialize`) runs under `limits.loadMs`.
   */
  async load(key: string, opts: LoadOptions): Promise<LoadInfo> {
    this.#assertOpen();
    if (typeof key !== 'string' || !KEY_RE.test(key)) {
      throw sandboxError('invalid_argument', 'plugin key must be 1-200 characters of [A-Za-z0-9._:@/-], starting alphanumeric');
    }
    if (this.#plugins.has(key)) throw new TyrumError('TYRUM_ERR_CONFLICT', `a plugin is already loaded as "${key}"`, { key });
    if (opts === null || typeof opts !== 'object') throw sandboxError('invalid_argument', 'load options are required');
    if (!Array.isArray(opts.exports) || opts.exports.some((x) => typeof x !== 'string' || x.length === 0)) {
      throw sandboxError('invalid_argument', 'exports must be a list of export names');
    }
    const logLevel = opts.logLevel ?? 'info';
    if (!LOG_LEVELS.includes(logLevel)) throw sandboxError('invalid_argument', `unknown log level "${String(logLevel)}"`);
    const config = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(opts.config ?? {})) {
      if (typeof v !== 'string') throw sandboxError('invalid_argument', `config value "${k}" must be a string`);
      config[k] = v;
    }
    const limits = resolveLimits(this.#defaults, opts.limits);
    const report = inspectModule(opts.wasm, {
      expectedSha256: opts.expectedSha256,
      exports: opts.exports,
      memoryPages: limits.memoryPages,
      maxModuleBytes: limits.maxModuleBytes,
    });
    let module: WasmModule;
    try {
      module = await Wasm.compile(report.bytes);
    } catch (e) {
      throw sandboxError('module_rejected', `module failed to compile: ${(e as Error).message}`, { check: 'compile' });
    }
    this.#assertOpen();
    if (this.#plugins.has(key)) throw new TyrumError('TYRUM_ERR_CONFLICT', `a plugin is already loaded as "${key}"`, { key });

    const slot = this.#pickSlot();
    const entry: PluginEntry = {
      key,
      module,
      exports: new Set(opts.exports),
      limits,
      config,
      hostApi: { ...opts.hostApi },
      logLevel,
      slot,
      broken: null,
    };
    this.#plugins.set(key, entry);
    slot.plugins.add(key);
    try {
      const r = await new Promise<{ usage: WorkerUsage; ms: number }>((resolve, reject) => {
        this.#enqueue(slot, { kind: 'load', id: this.#nextJob++, entry, internal: false, resolve, reject });
      });
      return {
        key,
        sha256: report.sha256,
        worker: slot.index,
        memory: report.memory,
        imports: report.imports.map((i) => `${i.module}.${i.name}`),
        load_ms: r.ms,
      };
    } catch (e) {
      if (this.#plugins.get(key) === entry) this.#plugins.delete(key);
      slot.plugins.delete(key);
      throw e;
    }
  }

  /**
   * Call `exportName` of plugin `key` with `input`. Rejects with a coded error on timeout, trap,
   * crash, a guest-reported error, an exceeded budget or a denied capability; the plugin's next
   * call then runs on a fresh instance. `limits` can only tighten the plugin's per-call budgets.
   */
  async call(key: string, exportName: string, input: Uint8Array, limits?: Partial<CallLimits>): Promise<CallResult> {
    this.#assertOpen();
    const entry = this.#plugins.get(key);
    if (entry === undefined) throw sandboxError('not_loaded', `no plugin loaded as "${key}"`, { plugin: key });
    if (!entry.exports.has(exportName)) {
      throw sandboxError('not_loaded', `plugin "${key}" declares no export "${exportName}"`, { plugin: key, export: exportName });
    }
    if (entry.broken !== null) throw entry.broken;
    const callLimits = tightenCallLimits(entry.limits, limits);
    if (!(input instanceof Uint8Array)) throw sandboxError('invalid_argument', 'input must be a Uint8Array');
    if (input.byteLength > callLimits.maxInputBytes) {
      throw sandboxError('input_too_large', `input of ${input.byteLength} bytes exceeds the ${callLimits.maxInputBytes}-byte limit`, {
        plugin: key,
        limit: callLimits.maxInputBytes,
      });
    }
    return new Promise<CallResult>((resolve, reject) => {
      this.#enqueue(entry.slot, {
        kind: 'call',
        id: this.#nextJob++,
        entry,
        fn: exportName,
        input: exactCopy(input),
        limits: callLimits,
        resolve,
        reject,
      });
    });
  }

  /** Forget plugin `key`: queued calls fail with `not_loaded`; a running call finishes. */
  async unload(key: string): Promise<void> {
    const entry = this.#plugins.get(key);
    if (entry === undefined) return;
    this.#plugins.delete(key);
    const slot = entry.slot;
    slot.plugins.delete(key);
    const gone = sandboxError('not_loaded', `plugin "${key}" was unloaded`, { plugin: key });
    slot.queue = slot.queue.filter((j) => {
      if (j.entry !== entry) return true;
      j.reject(gone);
      return false;
    });
    if (slot.worker !== null) this.#post(slot, { type: 'unload', key });
  }

  /** Stop every worker; pending and queued jobs fail with `closed`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = sandboxError('closed', 'the sandbox pool was closed');
    const exits: Promise<void>[] = [];
    for (const slot of this.#slots) {
      if (slot.running !== null) {
        clearTimeout(slot.running.timer);
        slot.running.job.reject(closed);
        slot.running = null;
      }
      for (const j of slot.queue) j.reject(closed);
      slot.queue = [];
      this.#retire(slot);
      if (slot.exited !== null) exits.push(slot.exited);
    }
    this.#plugins.clear();
    await Promise.all(exits);
  }

  /** A snapshot for health checks and tests. */
  stats(): { workers: { index: number; ready: boolean; plugins: string[]; queued: number; busy: boolean; restarts: number }[] } {
    return {
      workers: this.#slots.map((s) => ({
        index: s.index,
        ready: s.ready,
        plugins: [...s.plugins],
        queued: s.queue.length,
        busy: s.running !== null,
        restarts: s.restarts,
      })),
    };
  }

  /** @internal Test hook: make worker `index` throw an uncaught error, as a crash would. */
  injectWorkerCrash(index: number): void {
    const slot = this.#slots[index];
    if (slot?.worker) this.#post(slot, { type: 'crash' });
  }

  // --- internals ---

  #assertOpen(): void {
    if (this.#closed) throw sandboxError('closed', 'the sandbox pool is closed');
  }

  #pickSlot(): Slot {
    let best = this.#slots[0] as Slot;
    for (const s of this.#slots) {
      if (s.plugins.size < best.plugins.size || (s.plugins.size === best.plugins.size && s.queue.length < best.queue.length)) best = s;
    }
    return best;
  }

  #post(slot: Slot, m: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker?.postMessage(m, transfer);
  }

  #spawn(slot: Slot): void {
    const { port1, port2 } = new MessageChannel();
    const gen = ++slot.generation;
    Atomics.store(slot.flag, 0, 0);
    const init: WorkerInit = { replyPort: port2, flag: slot.flag.buffer as SharedArrayBuffer };
    const worker = new Worker(WORKER_URL, {
      workerData: init,
      transferList: [port2],
      // The SDK imports node:wasi (unused: WASI is off) and Node warns about it on import.
      execArgv: ['--disable-warning=ExperimentalWarning'],
      env: {},
      resourceLimits: this.#resourceLimits,
      name: `tyrum-sandbox-${slot.index}`,
    });
    slot.worker = worker;
    slot.replyPort = port1;
    slot.ready = false;
    slot.spawnedAt = performance.now();
    slot.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (m: FromWorker) => {
      if (slot.generation === gen) this.#onMessage(slot, gen, m);
    });
    // Own the 'error' listener: an uncaught error in a worker must never reach the process.
    worker.on('error', (e) => {
      if (slot.generation === gen) this.#onWorkerDeath(slot, 'crash', e);
    });
    worker.on('exit', (code) => {
      if (slot.generation === gen) this.#onWorkerDeath(slot, 'crash', new Error(`worker exited with code ${code}`));
    });
  }

  /** Detach and terminate the slot's worker (its late events are ignored). */
  #retire(slot: Slot): void {
    const w = slot.worker;
    slot.generation += 1;
    slot.worker = null;
    slot.ready = false;
    slot.replyPort?.close();
    slot.replyPort = null;
    for (const c of slot.hostRequests) c.abort();
    slot.hostRequests.clear();
    if (w !== null) void w.terminate().catch(() => undefined);
  }

  #enqueue(slot: Slot, job: Job): void {
    slot.queue.push(job);
    if (slot.worker === null && !this.#closed) this.#spawn(slot);
    this.#pump(slot);
  }

  #pump(slot: Slot): void {
    while (!this.#closed && slot.ready && slot.running === null && slot.queue.length > 0) {
      const job = slot.queue.shift() as Job;
      if (job.kind === 'call' && job.entry.broken !== null) {
        job.reject(job.entry.broken);
        continue;
      }
      const budget = job.kind === 'load' ? job.entry.limits.loadMs : job.limits.wallMs;
      const running: Running = {
        job,
        startedAt: performance.now(),
        timer: setTimeout(() => this.#onTimeout(slot, running), budget),
      };
      slot.running = running;
      if (job.kind === 'load') {
        const e = job.entry;
        this.#post(slot, {
          type: 'load',
          job: job.id,
          key: e.key,
          module: e.module,
          config: { ...e.config },
          maxVarBytes: e.limits.maxVarBytes,
          logLevel: e.logLevel,
          grants: { kv: e.hostApi.kv !== undefined, http: e.hostApi.egress !== undefined },
          limits: tightenCallLimits(e.limits, undefined),
        });
      } else {
        this.#post(slot, { type: 'call', job: job.id, key: job.entry.key, fn: job.fn, input: job.input, limits: job.limits }, [
          job.input.buffer as ArrayBuffer,
        ]);
      }
    }
  }

  #onMessage(slot: Slot, gen: number, m: FromWorker): void {
    switch (m.type) {
      case 'ready':
        slot.ready = true;
        slot.spawnFailures = 0;
        this.#onEvent({ type: 'worker_ready', worker: slot.index, ms: performance.now() - slot.spawnedAt });
        this.#pump(slot);
        return;
      case 'host':
        void this.#onHost(slot, gen, m);
        return;
      case 'done': {
        const running = slot.running;
        if (running === null || running.job.id !== m.job) return;
        clearTimeout(running.timer);
        slot.running = null;
        const ms = performance.now() - running.startedAt;
        const job = running.job;
        if (!m.ok) {
          const err = fromFailure(m.failure, { plugin: job.entry.key, ...(job.kind === 'call' ? { export: job.fn } : {}), logs: m.logs });
          if (job.kind === 'load' && job.internal) this.#markBroken(job.entry, err);
          job.reject(err);
        } else if (job.kind === 'load') {
          job.resolve({ usage: m.usage, ms });
        } else {
          const { mem_pages, ...rest } = m.usage;
          job.resolve({ output: m.output ?? new Uint8Array(0), usage: { ...rest, wall_ms: ms, mem_pages_peak: mem_pages }, logs: m.logs });
        }
        this.#pump(slot);
        return;
      }
    }
  }

  #markBroken(entry: PluginEntry, err: TyrumError): void {
    entry.broken = err;
    this.#onEvent({ type: 'plugin_broken', plugin: entry.key, error: err });
  }

  #onTimeout(slot: Slot, running: Running): void {
    if (slot.running !== running) return;
    slot.running = null;
    const job = running.job;
    const ms = Math.round(performance.now() - running.startedAt);
    const limit = job.kind === 'load' ? job.entry.limits.loadMs : job.limits.wallMs;
    const what = job.kind === 'load' ? 'loading' : `call to ${job.fn}`;
    const err = sandboxError('timeout', `plugin "${job.entry.key}" ${what} exceeded its ${limit} ms budget; its worker was restarted`, {
      plugin: job.entry.key,
      ...(job.kind === 'call' ? { export: job.fn } : {}),
      limit_ms: limit,
      wall_ms: ms,
    });
    if (job.kind === 'load') {
      // The module never finished loading here: do not reload it with the others.
      if (job.internal) this.#markBroken(job.entry, err);
      else job.entry.slot.plugins.delete(job.entry.key);
    }
    job.reject(err);
    this.#restart(slot, 'timeout', job.entry.key);
  }

  #onWorkerDeath(slot: Slot, reason: 'crash', cause: unknown): void {
    const running = slot.running;
    slot.running = null;
    if (!slot.ready) slot.spawnFailures += 1;
    if (running !== null) {
      clearTimeout(running.timer);
      const job = running.job;
      const err = sandboxError('crash', `the sandbox worker running plugin "${job.entry.key}" died: ${(cause as Error)?.message ?? String(cause)}`, {
        plugin: job.entry.key,
      });
      if (job.kind === 'load') {
        if (job.internal) this.#markBroken(job.entry, err);
        else job.entry.slot.plugins.delete(job.entry.key);
      }
      job.reject(err);
    }
    if (slot.spawnFailures >= MAX_SPAWN_FAILURES) {
      // The worker cannot even start: fail what waits instead of respawning forever.
      this.#retire(slot);
      const err = sandboxError('crash', `sandbox worker ${slot.index} failed to start ${slot.spawnFailures} times`);
      for (const j of slot.queue) j.reject(err);
      slot.queue = [];
      slot.spawnFailures = 0;
      return;
    }
    this.#restart(slot, reason, running?.job.entry.key);
  }

  /** Replace the slot's worker and queue reloads of its plugins ahead of everything else. */
  #restart(slot: Slot, reason: 'timeout' | 'crash', plugin: string | undefined): void {
    this.#retire(slot);
    slot.restarts += 1;
    this.#onEvent({ type: 'worker_restart', worker: slot.index, reason, ...(plugin !== undefined ? { plugin } : {}) });
    if (this.#closed) return;
    const reloads: LoadJob[] = [];
    for (const key of slot.plugins) {
      const entry = this.#plugins.get(key);
      if (entry === undefined || entry.broken !== null) continue;
      reloads.push({ kind: 'load', id: this.#nextJob++, entry, internal: true, resolve: () => undefined, reject: () => undefined });
    }
    // Reloads queued by an earlier restart that never ran are superseded by these.
    slot.queue = [...reloads, ...slot.queue.filter((j) => !(j.kind === 'load' && j.internal))];
    this.#spawn(slot);
  }

  async #onHost(slot: Slot, gen: number, m: HostRequestMessage): Promise<void> {
    let reply: HostReply;
    const transfer: ArrayBuffer[] = [];
    const abort = new AbortController();
    slot.hostRequests.add(abort);
    try {
      const entry = this.#plugins.get(m.key);
      if (entry === undefined) throw sandboxError('not_loaded', `plugin "${m.key}" is not loaded`);
      const value = await this.#serveHost(entry, m.request, abort.signal);
      if (value instanceof Uint8Array) transfer.push(value.buffer as ArrayBuffer);
      reply = { seq: m.seq, ok: true, value };
    } catch (e) {
      reply = { seq: m.seq, ok: false, failure: toFailure(e, 'host_error', 'host service failed: ') };
    } finally {
      slot.hostRequests.delete(abort);
    }
    if (slot.generation !== gen || slot.replyPort === null) return; // that worker is gone
    slot.replyPort.postMessage(reply, transfer);
    Atomics.store(slot.flag, 0, m.seq);
    Atomics.notify(slot.flag, 0);
  }

  async #serveHost(entry: PluginEntry, req: HostRequest, signal: AbortSignal): Promise<unknown> {
    switch (req.op) {
      case 'kv_get': {
        const kv = entry.hostApi.kv;
        if (kv === undefined) throw sandboxError('capability_denied', 'key-value storage is not granted');
        const v = await kv.get(req.key);
        if (v === null || v === undefined) return null;
        if (!(v instanceof Uint8Array)) throw sandboxError('host_error', 'kv store returned a non-binary value');
        if (v.byteLength > entry.limits.maxKvValueBytes) throw sandboxError('budget_exceeded', 'stored kv value exceeds maxKvValueBytes', { budget: 'kv_value' });
        return exactCopy(v);
      }
      case 'kv_set': {
        const kv = entry.hostApi.kv;
        if (kv === undefined) throw sandboxError('capability_denied', 'key-value storage is not granted');
        return (await kv.set(req.key, req.value)) !== false;
      }
      case 'http': {
        const egress = entry.hostApi.egress;
        if (egress === undefined) throw sandboxError('capability_denied', 'HTTP egress is not granted');
        let res: EgressResponse;
        try {
          res = await egress({
            pluginKey: entry.key,
            url: req.url,
            method: req.method,
            headers: { ...req.headers },
            body: req.body,
            maxResponseBytes: req.maxResponseBytes,
            signal,
          });
        } catch (e) {
          throw sandboxReason(e) !== undefined ? e : sandboxError('host_error', `egress failed: ${(e as Error)?.message ?? String(e)}`);
        }
        const status = res?.status;
        if (!Number.isInteger(status) || status < 100 || status > 999) throw sandboxError('host_error', 'egress returned an invalid status');
        const body = res.body ?? new Uint8Array(0);
        if (!(body instanceof Uint8Array)) throw sandboxError('host_error', 'egress returned a non-binary body');
        if (body.byteLength > req.maxResponseBytes) {
          throw sandboxError('budget_exceeded', `egress response of ${body.byteLength} bytes exceeds the remaining egress budget`, { budget: 'egress_bytes' });
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers ?? {})) if (typeof v === 'string') headers[k] = v;
        return { status, headers, body: exactCopy(body) };
      }
    }
  }
}
