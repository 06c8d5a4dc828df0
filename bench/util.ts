/** Small measuring helpers shared by the bench files. */
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ClientJob } from './ws-client.js';

export interface Stats {
  p50: number;
  p99: number;
  mean: number;
  n: number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { p50: q(0.5), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), n: s.length };
}

/**
 * Up to `n` sequential calls after up to 200 warm-up calls; per-call latency in ms. Stops early
 * once `capMs` have passed (the returned `n` says how many were measured).
 */
export async function sequential(n: number, fn: () => Promise<unknown>, capMs = Infinity): Promise<Stats> {
  const warmEnd = performance.now() + capMs / 10;
  for (let i = 0; i < Math.min(200, n) && performance.now() < warmEnd; i++) await fn();
  const out: number[] = [];
  const end = performance.now() + capMs;
  for (let i = 0; i < n && (i === 0 || performance.now() < end); i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return stats(out);
}

export interface LoopResult {
  /** Completed calls per second. */
  rate: number;
  calls: number;
  lat: Stats;
}

/** Closed loop for `seconds` (after a short warm-up): each caller sends its next call when the previous one answers. */
export async function closedLoop(callers: Array<() => Promise<unknown>>, seconds: number): Promise<LoopResult> {
  const run = async (ms: number, lat: number[] | null) => {
    const end = performance.now() + ms;
    let calls = 0;
    const t0 = performance.now();
    await Promise.all(
      callers.map(async (fn) => {
        while (performance.now() < end) {
          const s = performance.now();
          await fn();
          lat?.push(performance.now() - s);
          calls++;
        }
      }),
    );
    return { calls, elapsed: performance.now() - t0 };
  };
  await run(Math.min(500, seconds * 250), null);
  const lat: number[] = [];
  const { calls, elapsed } = await run(seconds * 1000, lat);
  return { rate: (calls / elapsed) * 1000, calls, lat: stats(lat) };
}

// --- shared by the issue 11 measurements: the disk, the load, formatting, and the targets table ---

/** `n` ms as µs, ms or s. */
export const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'n/a' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 1000 ? `${ms.toFixed(2)} ms` : `${(ms / 1000).toFixed(2)} s`);
export const fmtRate = (r: number) => (Number.isFinite(r) ? `${Math.round(r).toLocaleString('en-US')}/s` : 'n/a');
export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
/** How many times `a` is `b`, e.g. "3.2×". */
export const times = (a: number, b: number) => (Number.isFinite(a / b) && a >= 0 && b > 0 ? `${(a / b).toFixed(a / b < 10 ? 2 : 1)}×` : 'n/a');
export const loadAverage = () => loadavg().map((l) => l.toFixed(2)).join(' ');

export function table(head: string[], rows: string[][]): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

export function envNumber(name: string, def: number, min = 0): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name} must be a number >= ${min} (got ${raw})`);
  return v;
}

/**
 * The disk's own cost of one durable write, in `dir` (give it the directory the gateway's database
 * is in: the same file system): a 4 KiB write at the start of one file, then `fdatasync`, `n` times
 * in a row. SQLite commits with fdatasync on Linux.
 */
export function fdatasyncReference(dir: string, n = 200): Stats {
  const file = join(dir, `.bench-fdatasync-${process.pid}`);
  const fd = openSync(file, 'w');
  const page = Buffer.alloc(4096, 1);
  const lat: number[] = [];
  try {
    writeSync(fd, page, 0, page.length, 0);
    fdatasyncSync(fd);
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
      lat.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return stats(lat);
}

/** One line for a section's header: the disk's fdatasync in `dir` and the load now. */
export function diskLine(dir: string): string {
  const f = fdatasyncReference(dir);
  return `this disk (${dir}): 4 KiB write + fdatasync p50 ${fmtMs(f.p50)}, p99 ${fmtMs(f.p99)} (${f.n} in a row); load average ${loadAverage()}`;
}

/**
 * The targets of issue 11, in the order the summary prints them. A section that measures one calls
 * `reportTarget`; the summary (`printTargets`, at the end of `npm run bench`) lists every one,
 * those no section of this run measured included.
 */
export const TARGETS = {
  'fsync.ro.1': { section: 'fsyncs', measure: 'fsyncs per read-only call, sequential (1 client)', target: '≤ 1' },
  'fsync.ro.16': { section: 'fsyncs', measure: 'fsyncs per read-only call, 16 clients', target: '≤ 0.2' },
  'fsync.ro.64': { section: 'fsyncs', measure: 'fsyncs per read-only call, 64 clients', target: '≤ 0.2' },
  'fsync.sc.1': { section: 'fsyncs', measure: 'fsyncs per state-changing call, sequential (1 client)', target: '≤ 2' },
  'fsync.sc.16': { section: 'fsyncs', measure: 'fsyncs per state-changing call, 16 clients', target: '≤ 2' },
  'fsync.sc.64': { section: 'fsyncs', measure: 'fsyncs per state-changing call, 64 clients', target: '≤ 2' },
  'p1.echo': { section: 'mcp', measure: 'P1: sequential p50, tool.invoke over WebSocket, MCP echo', target: '≤ 2× direct' },
  'p1.wasm': { section: 'mcp', measure: 'P1: sequential p50, tool.invoke over WebSocket, WASM tool', target: '≤ 2× direct' },
  'p2.echo': { section: 'mcp', measure: 'P2: sequential p50, /mcp (SDK Streamable HTTP), MCP echo', target: '≤ 2.5× direct' },
  'tput.echo.64': { section: 'mcp', measure: 'calls/s at 64 clients, WebSocket, MCP echo', target: '≥ 0.5× direct' },
  'tput.echo.rise': { section: 'mcp', measure: 'calls/s 1 → 16 → 64 clients, WebSocket, MCP echo', target: 'rising' },
  'tput.wasm.64': { section: 'mcp', measure: 'calls/s at 64 clients, WebSocket, WASM tool', target: '≥ 0.5× direct' },
  'tput.wasm.rise': { section: 'mcp', measure: 'calls/s 1 → 16 → 64 clients, WebSocket, WASM tool', target: 'rising' },
  'tput.mcp.64': { section: 'mcp', measure: 'calls/s at 64 clients, /mcp, MCP echo', target: '≥ 0.5× direct' },
  'tput.mcp.rise': { section: 'mcp', measure: 'calls/s 1 → 16 → 64 clients, /mcp, MCP echo', target: 'rising' },
  'start.first': { section: 'start', measure: 'gateway start → first call, 10 plugins (tyrum start process)', target: '≤ 1 s' },
  'cli.ping': { section: 'cli', measure: 'CLI p50: tyrum ping', target: '≤ 300 ms' },
  'cli.tool_list': { section: 'cli', measure: 'CLI p50: tyrum tool list', target: '≤ 300 ms' },
  'cli.approvals_list': { section: 'cli', measure: 'CLI p50: tyrum approvals list', target: '≤ 300 ms' },
  'plugins.enable': { section: 'plugins', measure: 'enable time per plugin at 1,000 plugins vs at 10', target: '≤ 2× at 10' },
  'plugins.stall.10': { section: 'plugins', measure: 'max event-loop delay, install/enable + first call, 10 plugins', target: '≤ 50 ms' },
  'plugins.stall.100': { section: 'plugins', measure: 'max event-loop delay, install/enable + first call, 100 plugins', target: '≤ 50 ms' },
  'plugins.stall.1000': { section: 'plugins', measure: 'max event-loop delay, install/enable + first call, 1,000 plugins', target: '≤ 50 ms' },
  'plugins.first.10': { section: 'plugins', measure: 'first call after enabling, 10 plugins', target: '≤ 100 ms' },
  'plugins.first.100': { section: 'plugins', measure: 'first call after enabling, 100 plugins', target: '≤ 100 ms' },
  'plugins.first.1000': { section: 'plugins', measure: 'first call after enabling, 1,000 plugins', target: '≤ 100 ms' },
  'plugins.rss.1000': { section: 'plugins', measure: 'RSS, 1,000 plugins enabled and each called once', target: '≤ 1 GiB' },
  'nodes.noop': { section: 'nodes', measure: 'sequential p50, a no-op node capability through the full pipeline vs a WASM plugin tool', target: 'none set (measured)' },
  'channels.inbound': { section: 'channels', measure: 'inbound webhook → turn started, p50 (p99), Telegram plugin, sequential', target: 'none set (measured)' },
  'channels.reply': { section: 'channels', measure: 'turn started → reply handed to the outbox, model time excluded, p50 (p99)', target: 'none set (measured)' },
  'artifacts.write': { section: 'artifacts', measure: 'artifact write MB/s (service put, fsynced) vs raw file write + fsync of the same bytes', target: 'none set (measured)' },
  'artifacts.read': { section: 'artifacts', measure: 'artifact read MB/s (service open, streamed) vs raw file read of the same bytes', target: 'none set (measured)' },
  'scheduler.fires': { section: 'scheduler', measure: 'scheduler fires/s sustained, 1,000 interval schedules all due (claim + run + outbox + audit, one commit each) vs fdatasync and raw SQLite commits', target: 'none set (measured)' },
  'conn.rss': { section: 'connections', measure: 'RSS per idle authenticated WebSocket connection, 10,000 connections', target: 'none set (measured)' },
} as const;
export type TargetKey = keyof typeof TARGETS;

export interface TargetFigure {
  figure: string;
  /** The baseline measured in the same run, with what it is. */
  baseline: string;
  ratio: string;
  /** null: the target has no pass/fail (or it could not be measured). */
  met: boolean | null;
  /** Replaces the measure's name when the run measured something else (e.g. fewer plugins). */
  measure?: string;
  note?: string;
}

const reported = new Map<TargetKey, TargetFigure>();

/** Records a target's figure for the summary (the last report of a key wins). */
export function reportTarget(key: TargetKey, f: TargetFigure): void {
  reported.set(key, f);
}

/** Records why a target has no figure in this run. */
export function skipTarget(key: TargetKey, why: string): void {
  reported.set(key, { figure: `skipped: ${why}`, baseline: '', ratio: '', met: null });
}

/** The summary table of every target; `ran` are the sections this run ran. */
export function printTargets(ran: readonly string[]): void {
  const rows = (Object.keys(TARGETS) as TargetKey[]).map((key) => {
    const t = TARGETS[key];
    const f = reported.get(key);
    if (!f) return [t.measure, ran.includes(t.section) ? 'not measured' : `not run (section ${t.section})`, '', '', t.target, 'n/a'];
    const met = f.met === null ? 'n/a' : f.met ? 'yes' : '**NO**';
    return [f.measure ?? t.measure, `**${f.figure}**${f.note ? ` (${f.note})` : ''}`, f.baseline, f.ratio, t.target, met];
  });
  table(['target', 'figure', 'baseline (same run)', 'ratio', 'target', 'met'], rows);
  const vals = [...reported.values()].filter((f) => f.met !== null);
  console.log(`\n${vals.filter((f) => f.met).length} of ${vals.length} targets with a figure met.`);
}

/**
 * Runs `job` in bench/ws-client.ts in a child process of its own (so what it measures is the
 * gateway's answer time, not the client's share of an event loop), the token in its environment
 * (never argv), and returns the JSON line it printed last.
 */
export async function runClientJob<T>(job: ClientJob, token: string): Promise<T> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./ws-client.ts', import.meta.url))], {
    cwd: fileURLToPath(new URL('../', import.meta.url)),
    env: { ...process.env, BENCH_CLIENT_JOB: JSON.stringify(job), BENCH_CLIENT_TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`bench client process failed (exit ${code}): ${out.slice(0, 500)}`);
  return JSON.parse(line) as T;
}
