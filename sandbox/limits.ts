/**
 * Named budgets of the sandbox, with documented defaults.
 *
 * Two kinds: load-time limits fixed when a plugin is loaded (its memory cap is written into the
 * module; the Extism var quota is given to the SDK), and per-call budgets that a call may tighten
 * but never widen (the effective budget is the minimum of the plugin's and the call's).
 */
import { sandboxError } from './errors.js';

/** Everything the sandbox bounds. All sizes in bytes unless the name says otherwise. */
export interface SandboxLimits {
  // --- load-time ---
  /** Linear memory cap in 64 KiB pages; a larger or missing module maximum is rewritten to it. */
  memoryPages: number;
  /** Wall-clock budget for instantiating a plugin (runs its start function), ms. */
  loadMs: number;
  /** Extism vars (`var_set`) held by one plugin instance. */
  maxVarBytes: number;
  /** Size of the wasm module accepted at load. */
  maxModuleBytes: number;
  // --- per call ---
  /** Wall-clock budget of one call, ms; past it the worker is terminated and restarted. */
  wallMs: number;
  /** Input handed to one call. */
  maxInputBytes: number;
  /** Output of one call. */
  maxOutputBytes: number;
  /** Calls to counted host functions (our host API, kernel `alloc`, config/var/log/http). */
  maxHostCalls: number;
  /** Bytes the guest may allocate in Extism kernel memory (`alloc`, config and var reads). */
  maxAllocBytes: number;
  /** Log lines kept per call; more are dropped and counted. */
  maxLogLines: number;
  /** Bytes kept of one log line; longer lines are truncated. */
  maxLogLineBytes: number;
  /** Sustained log lines per second per plugin (token bucket, burst `maxLogLines`). */
  logLinesPerSecond: number;
  /** Bytes sent and received through `http_request` in one call. */
  maxEgressBytes: number;
  /** Key length for the key-value host API. */
  maxKvKeyBytes: number;
  /** Value length for the key-value host API. */
  maxKvValueBytes: number;
}

/** The limits a call may tighten. */
export type CallLimits = Pick<
  SandboxLimits,
  | 'wallMs'
  | 'maxInputBytes'
  | 'maxOutputBytes'
  | 'maxHostCalls'
  | 'maxAllocBytes'
  | 'maxLogLines'
  | 'maxLogLineBytes'
  | 'logLinesPerSecond'
  | 'maxEgressBytes'
  | 'maxKvKeyBytes'
  | 'maxKvValueBytes'
>;

const CALL_LIMIT_KEYS = [
  'wallMs',
  'maxInputBytes',
  'maxOutputBytes',
  'maxHostCalls',
  'maxAllocBytes',
  'maxLogLines',
  'maxLogLineBytes',
  'logLinesPerSecond',
  'maxEgressBytes',
  'maxKvKeyBytes',
  'maxKvValueBytes',
] as const satisfies readonly (keyof CallLimits)[];

const MiB = 1024 * 1024;

/** The defaults: generous for a text or HTTP tool, small enough that 1,000 plugins fit in memory. */
export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  memoryPages: 256, // 16 MiB
  loadMs: 5_000,
  maxVarBytes: 1 * MiB,
  maxModuleBytes: 64 * MiB,
  wallMs: 5_000,
  maxInputBytes: 4 * MiB,
  maxOutputBytes: 4 * MiB,
  maxHostCalls: 10_000,
  maxAllocBytes: 32 * MiB,
  maxLogLines: 100,
  maxLogLineBytes: 2_048,
  logLinesPerSecond: 50,
  maxEgressBytes: 8 * MiB,
  maxKvKeyBytes: 512,
  maxKvValueBytes: 256 * 1024,
});

/** Hard ceilings: a limit above these is a configuration mistake, not a grant. */
const CEILINGS: Readonly<SandboxLimits> = Object.freeze({
  memoryPages: 65_536, // 4 GiB, the wasm32 maximum
  loadMs: 10 * 60_000,
  maxVarBytes: 1024 * MiB,
  maxModuleBytes: 1024 * MiB,
  wallMs: 60 * 60_000,
  maxInputBytes: 1024 * MiB,
  maxOutputBytes: 1024 * MiB,
  maxHostCalls: 1e9,
  maxAllocBytes: 2048 * MiB,
  maxLogLines: 1e6,
  maxLogLineBytes: 1 * MiB,
  logLinesPerSecond: 1e6,
  maxEgressBytes: 2048 * MiB,
  maxKvKeyBytes: 64 * 1024,
  maxKvValueBytes: 256 * MiB,
});

/** Merge `over` onto `base`, validating every given value; returns a frozen copy. */
export function resolveLimits(base: Readonly<SandboxLimits>, over: Partial<SandboxLimits> | undefined): Readonly<SandboxLimits> {
  const out: SandboxLimits = { ...base };
  if (over !== undefined) {
    if (typeof over !== 'object' || over === null) {
      throw sandboxError('invalid_argument', 'limits must be an object');
    }
    for (const [k, v] of Object.entries(over)) {
      if (!(k in CEILINGS)) throw sandboxError('invalid_argument', `unknown sandbox limit "${k}"`, { limit: k });
      if (v === undefined) continue;
      const key = k as keyof SandboxLimits;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > CEILINGS[key]) {
        throw sandboxError('invalid_argument', `sandbox limit ${k} must be an integer in 1..${CEILINGS[key]}, got ${String(v)}`, {
          limit: k,
        });
      }
      out[key] = v;
    }
  }
  return Object.freeze(out);
}

/** The per-call budget: each call limit is the minimum of the plugin's and the call's. */
export function tightenCallLimits(plugin: Readonly<SandboxLimits>, call: Partial<CallLimits> | undefined): CallLimits {
  const checked = resolveLimits(plugin, call);
  const out = {} as CallLimits;
  for (const k of CALL_LIMIT_KEYS) out[k] = Math.min(plugin[k], checked[k]);
  if (call !== undefined) {
    for (const k of Object.keys(call)) {
      if (!(CALL_LIMIT_KEYS as readonly string[]).includes(k)) {
        throw sandboxError('invalid_argument', `sandbox limit ${k} is fixed at load and cannot be set per call`, { limit: k });
      }
    }
  }
  return out;
}
