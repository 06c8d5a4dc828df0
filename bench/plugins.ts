/**
 * The plugin-platform part of `npm run bench` (issue 3, item 11). Every figure is printed beside
 * a baseline measured in the same run:
 *
 * 1. `tool.invoke` latency over WebSocket vs the same module called directly through the sandbox
 *    (`SandboxPool.load` + `call` of the same wasm, export and input in this process), with the
 *    layers in between measured in-process to show where the time goes (`PluginHost.invoke`; the
 *    execution engine's durable run that tool.invoke submits and waits for). WS clients run both
 *    in this process and in a child process. A bare in-process Extism call is not available here:
 *    only sandbox/ may import @extism/extism, so `SandboxPool` direct is the "direct Extism" baseline.
 * 2. Plugin install → first successful call (install from plugins/text-utils/build through the
 *    registry, grant, enable, first `tool.invoke` over WebSocket), median of fresh homes.
 * 3. Calls/s with 1 and 64 concurrent clients (one TyrumClient connection each, closed loop) vs
 *    the same concurrency against `SandboxPool` directly (and the in-process layers), plus the
 *    event frames each connection is pushed per call.
 * 4. Memory: RSS and heap with N enabled plugins (copies of text-utils under distinct ids), before
 *    and after each has been called once (so each is loaded in the sandbox), vs the same modules
 *    loaded into a bare `SandboxPool`; time to install, grant, enable and load them all. Workers
 *    are threads of this process, so `process.memoryUsage().rss` covers the gateway, the sandbox
 *    and the guests' linear memories.
 *
 * Scale with environment variables (defaults keep the whole `npm run bench` near 3 minutes on 2 cores):
 *   BENCH_INVOKES=2000          sequential calls per latency cell, each cell capped by BENCH_SEQ_CAP_S=3
 *   BENCH_TPUT_SECONDS=3        duration of each calls/s cell; BENCH_TPUT_CONCURRENCY=1,64
 *   BENCH_INSTALL_RUNS=5        fresh homes for install → first call
 *   BENCH_MEM_PLUGINS=1000      plugins enabled in the memory section (BENCH_PLUGINS_MAX=100 is the same), measured
 *                               at 10, at BENCH_MEM_CHECKPOINT=100 and at 1,000 on the way
 *   BENCH_MEM_BUDGET_S=150      time budget of the memory section; it reports what it reached
 * At each of those counts the memory section also enables BENCH_PLUGIN_PROBES=3 more plugins one at a
 * time (issue 11's scale targets): the enable alone, the first tool.invoke over WebSocket after it,
 * and the event loop's longest delay (monitorEventLoopDelay) over the step's installs and enables,
 * its first call and the probes.
 *   BENCH_MEM_OPS_INFLIGHT=8    install/grant/enable operations in flight at once
 *   BENCH_PLUGIN_SECTIONS=latency,install,memory   run only some sections
 * Figures, not assertions: only a wrong tool answer (or a failed call) fails the run.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startGateway, type RunningGateway } from '../core/runtime.js';
import { SandboxPool } from '../sandbox/index.js';
import { TyrumClient, type JsonObject } from '../sdk/index.js';
import type { PluginManifest } from '../schemas/index.js';
import { closedLoop, reportTarget, sequential, skipTarget, sleep, stats, type LoopResult, type Stats, runClientJob } from './util.js';
import type { ClientJob } from './ws-client.js';

function envNumber(name: string, def: number, min = 0): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name} must be a number >= ${min} (got ${raw})`);
  return v;
}

const INVOKES = envNumber('BENCH_INVOKES', 2000, 1);
/** Each sequential latency cell stops after this many seconds even if BENCH_INVOKES were not reached. */
const SEQ_CAP_MS = envNumber('BENCH_SEQ_CAP_S', 3, 0.1) * 1000;
const INSTALL_RUNS = envNumber('BENCH_INSTALL_RUNS', 5, 1);
const TPUT_SECONDS = envNumber('BENCH_TPUT_SECONDS', 3, 0.1);
const TPUT_CONCURRENCY = (process.env.BENCH_TPUT_CONCURRENCY ?? '1,64').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_TPUT_CONCURRENCY: "${s}" is not a positive integer`);
  return n;
});
const MEM_PLUGINS = Math.floor(envNumber('BENCH_PLUGINS_MAX', envNumber('BENCH_MEM_PLUGINS', 1000, 1), 1));
const MEM_CHECKPOINT = Math.floor(envNumber('BENCH_MEM_CHECKPOINT', 100, 0));
const MEM_BUDGET_S = envNumber('BENCH_MEM_BUDGET_S', 150, 1);
const PROBES = Math.floor(envNumber('BENCH_PLUGIN_PROBES', 3, 1));
/** Which parts to run: latency (latency + calls/s), install, memory. */
const SECTIONS = new Set((process.env.BENCH_PLUGIN_SECTIONS ?? 'latency,install,memory').split(',').map((x) => x.trim()));
/** Requests in flight while loading the N plugins (one connection). */
const MEM_LOAD_INFLIGHT = 8;
/** Plugins installed, granted and enabled per chunk (the budget is checked between chunks). */
const MEM_CHUNK = 100;
/** Install, grant and enable operations in flight at once in the memory section. */
const MEM_OPS_INFLIGHT = Math.floor(envNumber('BENCH_MEM_OPS_INFLIGHT', 8, 1));

const BUILD_DIR = fileURLToPath(new URL('../plugins/text-utils/build/', import.meta.url));
const ACTOR = { kind: 'bench' };
const TOOL = 'word_count';
const ARGS = { text: 'The quick brown fox jumps over the lazy dog. Grüße 😀 你好世界\nA second line.' };
const EXPECTED = { words: 18, chars: 72, lines: 2 };

// --- helpers ---

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const median = (xs: number[]) => stats(xs).p50;
const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'n/a' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 1000 ? `${ms.toFixed(2)} ms` : `${(ms / 1000).toFixed(2)} s`);
const fmtRate = (r: number) => `${Math.round(r).toLocaleString('en-US')}/s`;
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(1)}×` : 'n/a');
/** a/b for rates below 1: "1/68" reads better than "0.0×". */
const rateRatio = (a: number, b: number) => (!Number.isFinite(a / b) || a <= 0 ? 'n/a' : a >= b ? `${(a / b).toFixed(1)}×` : `1/${(b / a).toFixed(b / a < 10 ? 1 : 0)}`);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const kib = (bytes: number) => (Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(0)} KiB` : 'n/a');

function table(head: string[], rows: Array<Array<string>>): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

/** Memory after a few full GCs of the main isolate (workers collect on their own). */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(30);
  }
  return process.memoryUsage();
}

async function poolReady(pool: SandboxPool): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!pool.stats().workers.every((w) => w.ready)) {
    if (performance.now() > deadline) throw new Error('sandbox workers did not become ready in 30 s');
    await sleep(5);
  }
}

function checkOutput(out: unknown, where: string): void {
  const o = out as { words?: unknown; chars?: unknown; lines?: unknown };
  if (o?.words !== EXPECTED.words || o.chars !== EXPECTED.chars || o.lines !== EXPECTED.lines) {
    throw new Error(`${where}: unexpected output ${JSON.stringify(out)} (want ${JSON.stringify(EXPECTED)})`);
  }
}

export interface Built {
  manifest: PluginManifest;
  manifestText: string;
  wasm: Buffer;
}

export function readBuilt(): Built {
  const manifestText = readFileSync(join(BUILD_DIR, 'tyrum.plugin.json'), 'utf8');
  const manifest = JSON.parse(manifestText) as PluginManifest;
  return { manifest, manifestText, wasm: readFileSync(join(BUILD_DIR, manifest.wasm.path)) };
}

/** A gateway from startGateway on port 0 in a temp home, sandbox workers ready. */
class BenchGateway {
  private readonly clients: TyrumClient[] = [];
  private constructor(
    readonly gw: RunningGateway,
    readonly home: string,
    readonly startMs: number,
  ) {}

  static async start(): Promise<BenchGateway> {
    const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-plugins-'));
    const t0 = performance.now();
    const gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
    await poolReady(gw.host.pool);
    return new BenchGateway(gw, home, performance.now() - t0);
  }

  /** A connected client with a device key of its own. */
  async client(): Promise<TyrumClient> {
    const c = new TyrumClient({
      url: this.gw.url,
      token: this.gw.bootstrapToken!,
      deviceKey: generateKeyPairSync('ed25519').privateKey,
      reconnect: false,
      heartbeatMs: 0,
    });
    await c.connect();
    this.clients.push(c);
    return c;
  }

  /** install (registry API) + grant everything requested + enable. */
  async enable(dir: string): Promise<{ id: string; install: number; grant: number; enable: number }> {
    const t0 = performance.now();
    const r = await this.gw.plugins.install(dir, ACTOR);
    const t1 = performance.now();
    await this.gw.plugins.grant(r.plugin.id, { allRequested: true }, ACTOR);
    const t2 = performance.now();
    const info = await this.gw.plugins.enable(r.plugin.id, ACTOR);
    const t3 = performance.now();
    if (info.state !== 'enabled') throw new Error(`${r.plugin.id} did not enable: ${info.blockers.join('; ')}`);
    return { id: r.plugin.id, install: t1 - t0, grant: t2 - t1, enable: t3 - t2 };
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
    await this.gw.close();
    rmSync(this.home, { recursive: true, force: true });
  }
}


/** Runs bench/ws-client.ts in a child process against `bg` and returns what it measured. */
function childClient<T extends Stats | LoopResult>(bg: BenchGateway, job: Omit<ClientJob, 'url' | 'request'>, pluginId = 'text-utils'): Promise<T> {
  return runClientJob<T>({ ...job, url: bg.gw.url, request: { type: 'tool.invoke', payload: { tool_id: `${pluginId}.${TOOL}`, args: ARGS } } }, bg.gw.bootstrapToken ?? '');
}

/**
 * What the tool.invoke handler does behind the protocol (core/protocol/handlers.ts): check the call,
 * submit a one-step durable run, wait for it. Mirrors the handler; keep the two in step.
 */
async function engineInvoke(gw: RunningGateway, pluginId = 'text-utils'): Promise<unknown> {
  const toolId = `${pluginId}.${TOOL}`;
  gw.host.checkCall(toolId, ARGS);
  const { run } = await gw.engine.submit({ kind: 'tool', steps: [{ tool_id: toolId, args: ARGS }], created_by: 'bench', actor: ACTOR });
  const d = await gw.engine.wait(run.id, 30_000);
  if (d.run.state !== 'succeeded') throw new Error(`engine run ${run.id} ended ${d.run.state}: ${JSON.stringify(d.run.error ?? d.steps[0]?.error ?? null)}`);
  return d.steps[0]?.result;
}

async function invokeWs(c: TyrumClient, pluginId = 'text-utils'): Promise<unknown> {
  const r = await c.request<JsonObject>('tool.invoke', { tool_id: `${pluginId}.${TOOL}`, args: ARGS });
  return r.output;
}

/** The same module in a bare SandboxPool (same limits as the gateway grants it). */
async function directPool(built: Built, limits: { memoryPages: number; wallMs: number }): Promise<{ pool: SandboxPool; call: () => Promise<unknown> }> {
  const pool = new SandboxPool({ workers: 2 });
  await poolReady(pool);
  await pool.load('text-utils', {
    wasm: built.wasm,
    expectedSha256: built.manifest.wasm.sha256,
    exports: built.manifest.contributes.tools.map((t) => t.export),
    limits,
  });
  // What any embedder does at minimum: JSON in, call the export, JSON out.
  const call = async () => JSON.parse(Buffer.from((await pool.call('text-utils', TOOL, Buffer.from(JSON.stringify(ARGS), 'utf8'))).output).toString('utf8')) as unknown;
  return { pool, call };
}

// --- 1 + 3: latency and throughput ---

async function latencyAndThroughput(built: Built): Promise<void> {
  const bg = await BenchGateway.start();
  let direct: Awaited<ReturnType<typeof directPool>> | null = null;
  try {
    const info = await bg.enable(BUILD_DIR);
    const eff = bg.gw.plugins.get(info.id).plugin.effective;
    const limits = { memoryPages: eff.memory.max_pages, wallMs: eff.time.timeout_ms };
    const c = await bg.client();
    checkOutput(await invokeWs(c), 'tool.invoke over WebSocket');
    const hostCall = async () => (await bg.gw.host.invoke(`text-utils.${TOOL}`, ARGS, ACTOR)).output;
    checkOutput(await hostCall(), 'PluginHost.invoke');
    const engineCall = () => engineInvoke(bg.gw);
    checkOutput(await engineCall(), 'ExecutionEngine run');
    direct = await directPool(built, limits);
    checkOutput(await direct.call(), 'SandboxPool.call');
    const d = direct;

    const sDirect = await sequential(INVOKES, d.call, SEQ_CAP_MS);
    const sHost = await sequential(INVOKES, hostCall, SEQ_CAP_MS);
    const sEngine = await sequential(INVOKES, engineCall, SEQ_CAP_MS);
    const sChild = await childClient<Stats>(bg, { mode: 'sequential', n: INVOKES, capMs: SEQ_CAP_MS });
    const sWs = await sequential(INVOKES, () => invokeWs(c), SEQ_CAP_MS);
    const sPing = await sequential(INVOKES, () => c.request('ping', {}), SEQ_CAP_MS);

    console.log(`\n### Plugin tool call latency: tool.invoke over WebSocket vs the same module through the sandbox directly\n`);
    console.log(`text-utils.${TOOL}, ${JSON.stringify(ARGS).length}-byte args, up to ${INVOKES} sequential calls per cell (at most ${SEQ_CAP_MS / 1000} s) after up to 200 warm-up calls, one connection.\n`);
    const lrow = (name: string, k: 'p50' | 'p99' | 'mean') => [
      name,
      fmtMs(sDirect[k]),
      fmtMs(sHost[k]),
      fmtMs(sEngine[k]),
      fmtMs(sChild[k]),
      fmtMs(sWs[k]),
      `${ratio(sChild[k], sDirect[k])} / ${ratio(sWs[k], sDirect[k])}`,
    ];
    table(
      ['measure', 'SandboxPool.call direct (baseline)', 'PluginHost.invoke in-process', 'engine run in-process (submit + wait)', 'tool.invoke over WS, client in a child process', 'tool.invoke over WS, client in this process', 'ratio WS / direct (child / this)'],
      [lrow('p50', 'p50'), lrow('p99', 'p99'), lrow('mean', 'mean'), ['calls measured', ...[sDirect, sHost, sEngine, sChild, sWs].map((x) => String(x.n)), '']],
    );
    console.log(`\n- SandboxPool direct is the "direct Extism" baseline: only sandbox/ may import @extism/extism; the pool runs the same`);
    console.log(`  in-process Extism plugin in a worker thread (one main ↔ worker message round trip per call), JSON in and out.`);
    console.log(`- PluginHost.invoke adds arg and output schema checks, redaction, the tool.invoked event and the audit entry.`);
    console.log(`- The engine run is what tool.invoke does behind the protocol: a durable one-step run (submit, lease claim, policy`);
    console.log(`  decision, PluginHost.invoke, step and run records, outbox events), waited for in-process.`);
    console.log(`- Over WS adds the protocol (framing, session, validation). A client in this process shares the gateway's event loop,`);
    console.log(`  so it also waits out the synchronous commits that follow each answer; the child-process client does not.`);
    console.log(`- For reference, a ping on the same in-process connection: p50 ${fmtMs(sPing.p50)}, p99 ${fmtMs(sPing.p99)}.`);

    // Throughput: one connection per WS caller, closed loop. Connection `c` counts the event
    // frames it is pushed meanwhile (every operator connection gets the same ones).
    const rows: string[][] = [];
    const seen = new Map<string, number>();
    c.on('event', (e) => seen.set(e.type, (seen.get(e.type) ?? 0) + 1));
    const fanout: string[] = [];
    const cell = (r: LoopResult) => `${fmtRate(r.rate)} (p50 ${fmtMs(r.lat.p50)}, p99 ${fmtMs(r.lat.p99)})`;
    for (const n of TPUT_CONCURRENCY) {
      const dir = await closedLoop(Array.from({ length: n }, () => d.call), TPUT_SECONDS);
      const host = await closedLoop(Array.from({ length: n }, () => hostCall), TPUT_SECONDS);
      const eng = await closedLoop(Array.from({ length: n }, () => engineCall), TPUT_SECONDS);
      const child = await childClient<LoopResult>(bg, { mode: 'loop', concurrency: n, seconds: TPUT_SECONDS });
      const clients = [c];
      while (clients.length < n) clients.push(await bg.client());
      seen.clear();
      const ws = await closedLoop(clients.slice(0, n).map((cl) => () => invokeWs(cl)), TPUT_SECONDS);
      const events = [...seen.values()].reduce((a, b) => a + b, 0);
      const calls = seen.get('tool.invoked') ?? 0; // one per call (warm-up included)
      const perCall = calls > 0 ? events / calls : NaN;
      fanout.push(
        `${n} connection${n === 1 ? '' : 's'}: ${perCall.toFixed(1)} event frames per call on each connection (${[...seen].map(([t, k]) => `${t} ${k}`).join(', ')}), ~${Math.round(perCall * n)} frames sent per call`,
      );
      rows.push([String(n), cell(dir), cell(host), cell(eng), cell(child), cell(ws), `${rateRatio(child.rate, dir.rate)} / ${rateRatio(ws.rate, dir.rate)}`]);
    }
    console.log(`\n### Plugin calls per second, closed loop, ${TPUT_SECONDS} s per cell (latency per call under that load)\n`);
    table(
      ['concurrent callers', 'SandboxPool.call direct (baseline)', 'PluginHost.invoke in-process', 'engine run in-process', 'tool.invoke over WS, clients in a child process', 'tool.invoke over WS, clients in this process', 'ratio WS / direct (child / this)'],
      rows,
    );
    console.log(`\nEach WS caller is a TyrumClient connection of its own (own device key) that sends its next call when the previous`);
    console.log(`one answers; direct and in-process callers are concurrent async loops. A plugin is placed on one sandbox worker, so`);
    console.log(`calls to one plugin run one at a time whatever the concurrency (the baseline has the same limit).`);
    console.log(`Events are pushed to every connection whose token may read them (the bench token is an admin token):`);
    for (const f of fanout) console.log(`- ${f}`);
  } finally {
    await direct?.pool.close();
    await bg.close();
  }
}

// --- 2: install → first call ---

async function installToFirstCall(): Promise<void> {
  const phases = { start: [] as number[], install: [] as number[], grant: [] as number[], enable: [] as number[], first: [] as number[], total: [] as number[], second: [] as number[] };
  for (let i = 0; i < INSTALL_RUNS; i++) {
    const bg = await BenchGateway.start();
    try {
      const c = await bg.client();
      const t0 = performance.now();
      const r = await bg.enable(BUILD_DIR);
      const t1 = performance.now();
      checkOutput(await invokeWs(c, r.id), 'first tool.invoke');
      const t2 = performance.now();
      checkOutput(await invokeWs(c, r.id), 'second tool.invoke');
      const t3 = performance.now();
      phases.start.push(bg.startMs);
      phases.install.push(r.install);
      phases.grant.push(r.grant);
      phases.enable.push(r.enable);
      phases.first.push(t2 - t1);
      phases.total.push(t2 - t0);
      phases.second.push(t3 - t2);
    } finally {
      await bg.close();
    }
  }
  console.log(`\n### Plugin install → first successful call (text-utils, fresh home each run, median of ${INSTALL_RUNS})\n`);
  table(
    ['step', 'median', 'min', 'max'],
    [
      ['install from plugins/text-utils/build (registry API: read, verify, copy, lockfile, audit)', phases.install],
      ['grant (all requested)', phases.grant],
      ['enable', phases.enable],
      ['first tool.invoke over WebSocket (loads the module into the sandbox)', phases.first],
      ['**install → first successful call**', phases.total],
      ['second tool.invoke (baseline: module already loaded)', phases.second],
      ['(not counted) gateway start until sandbox workers ready', phases.start],
    ].map(([name, xs]) => [name as string, fmtMs(median(xs as number[])), fmtMs(Math.min(...(xs as number[]))), fmtMs(Math.max(...(xs as number[])))]),
  );
}

// --- 4: memory with many plugins ---

/** N copies of the built plugin under distinct ids (the manifest digest changes; wasm.sha256 stays valid). */
export function makeCopies(built: Built, n: number): { root: string; dirs: string[]; ids: string[] } {
  const root = mkdtempSync(join(tmpdir(), 'tyrum-bench-copies-'));
  const manifest = JSON.parse(built.manifestText) as Record<string, unknown>;
  const dirs: string[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `bench-text-${String(i).padStart(5, '0')}`;
    const dir = join(root, id);
    mkdirSync(dir);
    copyFileSync(join(BUILD_DIR, built.manifest.wasm.path), join(dir, built.manifest.wasm.path));
    writeFileSync(join(dir, 'tyrum.plugin.json'), JSON.stringify({ ...manifest, id }, null, 2));
    dirs.push(dir);
    ids.push(id);
  }
  return { root, dirs, ids };
}

/**
 * Runs `op(i)` for i in [from, to) with `inflight` at a time, in order, taking no new index once
 * `deadline` has passed. Returns the end of the completed prefix and each op's latency.
 */
async function ranged(from: number, to: number, inflight: number, deadline: number, op: (i: number) => Promise<void>): Promise<{ end: number; lat: number[]; wall: number }> {
  let next = from;
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.max(0, Math.min(inflight, to - from)) }, async () => {
      while (next < to && performance.now() <= deadline) {
        const i = next++;
        const s = performance.now();
        await op(i);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { end: next, lat, wall: performance.now() - t0 };
}

/** Baseline: the same modules loaded (and called once) in a bare SandboxPool, no gateway. */
async function bareBaseline(built: Built, ids: string[], stages: number[]): Promise<Map<number, { rss: number; heap: number; ms: number }>> {
  const out = new Map<number, { rss: number; heap: number; ms: number }>();
  const pool = new SandboxPool({ workers: 2 });
  try {
    await poolReady(pool);
    const idle = await settledMemory();
    const t0 = performance.now();
    let loaded = 0;
    for (const target of stages) {
      await ranged(loaded, target, MEM_LOAD_INFLIGHT, Infinity, async (i) => {
        const key = ids[i]!;
        await pool.load(key, { wasm: built.wasm, expectedSha256: built.manifest.wasm.sha256, exports: built.manifest.contributes.tools.map((t) => t.export) });
        const r = await pool.call(key, TOOL, Buffer.from(JSON.stringify(ARGS), 'utf8'));
        checkOutput(JSON.parse(Buffer.from(r.output).toString('utf8')), 'SandboxPool.call');
      });
      loaded = target;
      const ms = performance.now() - t0;
      const m = await settledMemory();
      out.set(target, { rss: m.rss - idle.rss, heap: m.heapUsed - idle.heapUsed, ms });
    }
  } finally {
    await pool.close();
  }
  return out;
}

interface MemStep {
  /** Plugins installed, granted, enabled and loaded (called once) by the end of this step. */
  installed: number;
  granted: number;
  enabled: number;
  loaded: number;
  /** Plugins this step enabled and loaded (the per-plugin divisors). */
  added: number;
  addedLoaded: number;
  enabledMem: NodeJS.MemoryUsage;
  loadedMem: NodeJS.MemoryUsage;
  install: { wall: number; lat: Stats };
  grant: { wall: number; lat: Stats };
  enable: { wall: number; lat: Stats };
  load: { wall: number; lat: Stats };
  firstCall: number;
  firstCallStall: number;
  /** Longest event-loop delay over the step's installs, grants and enables (ms). */
  bulkStall: number;
  probe: Probe;
}

/** Plugins enabled one at a time at a given count: what enabling one more costs there. */
interface Probe {
  at: number;
  enable: number[];
  first: number[];
  second: number[];
  /** Longest event-loop delay over the probes' install, grant, enable and calls (ms). */
  stall: number;
}

async function memory(built: Built, deadline: number): Promise<void> {
  const stages = [...new Set([10, MEM_CHECKPOINT, 1000, MEM_PLUGINS].filter((n) => n > 0 && n <= MEM_PLUGINS))].sort((a, b) => a - b);
  // The bulk steps and the probes take the copies in order; the probes come after each step.
  const copies = makeCopies(built, MEM_PLUGINS + PROBES * stages.length);
  let stopped = '';
  try {
    const bare = await bareBaseline(built, copies.ids, stages);
    const bg = await BenchGateway.start();
    try {
      const c = await bg.client();
      const reg = bg.gw.plugins;
      const hostInvoke = async (id: string) => (await bg.gw.host.invoke(`${id}.${TOOL}`, ARGS, ACTOR)).output;
      const idle = await settledMemory();
      const steps: MemStep[] = [];
      let installed = 0;
      let granted = 0;
      let enabled = 0;
      let loaded = 0;
      // Loading (first call of each) must fit in the budget too: enabling stops early enough to
      // leave time to load what was enabled, estimated from the rate measured so far.
      let loadMsPerPlugin = 40;
      for (const target of stages) {
        const enabledBefore = enabled;
        const loadedBefore = loaded;
        const acc = { install: { wall: 0, lat: [] as number[] }, grant: { wall: 0, lat: [] as number[] }, enable: { wall: 0, lat: [] as number[] } };
        let lastChunkMs = 0;
        const bulkMon = monitorEventLoopDelay({ resolution: 5 });
        bulkMon.enable();
        while (enabled < target) {
          const to = Math.min(target, enabled + MEM_CHUNK);
          if (performance.now() + lastChunkMs * 1.3 + loadMsPerPlugin * (to - loaded) > deadline) break;
          const c0 = performance.now();
          const inst = await ranged(enabled, to, MEM_OPS_INFLIGHT, Infinity, async (i) => {
            await reg.install(copies.dirs[i]!, ACTOR);
          });
          const gr = await ranged(enabled, to, MEM_OPS_INFLIGHT, Infinity, async (i) => {
            await reg.grant(copies.ids[i]!, { allRequested: true }, ACTOR);
          });
          const en = await ranged(enabled, to, MEM_OPS_INFLIGHT, Infinity, async (i) => {
            const info = await reg.enable(copies.ids[i]!, ACTOR);
            if (info.state !== 'enabled') throw new Error(`${info.id} did not enable: ${info.blockers.join('; ')}`);
          });
          for (const [k, r] of [['install', inst], ['grant', gr], ['enable', en]] as const) {
            acc[k].wall += r.wall;
            acc[k].lat.push(...r.lat);
          }
          enabled = installed = granted = to;
          lastChunkMs = performance.now() - c0;
        }
        const inst = { wall: acc.install.wall, lat: acc.install.lat };
        const gr = { wall: acc.grant.wall, lat: acc.grant.lat };
        const en = { wall: acc.enable.wall, lat: acc.enable.lat };
        bulkMon.disable();
        const bulkStall = bulkMon.count > 0 ? bulkMon.max / 1e6 : NaN;
        const enabledMem = await settledMemory();
        // Call each newly enabled plugin once so it is loaded in the sandbox. The first call after
        // a lifecycle change rebuilds the tool catalog: timed alone, with the event loop's longest stall.
        let firstCall = NaN;
        let firstCallStall = NaN;
        const loadT0 = performance.now();
        const loadLat: number[] = [];
        if (loaded < enabled) {
          const h = monitorEventLoopDelay({ resolution: 5 });
          h.enable();
          await sleep(20); // the monitor records a stall only after its first tick
          const t0 = performance.now();
          checkOutput(await hostInvoke(copies.ids[loaded]!), 'PluginHost.invoke');
          firstCall = performance.now() - t0;
          h.disable();
          firstCallStall = h.max / 1e6;
          loaded++;
        }
        const ld = await ranged(loaded, enabled, MEM_LOAD_INFLIGHT, deadline, async (i) => {
          checkOutput(await hostInvoke(copies.ids[i]!), 'PluginHost.invoke');
        });
        loadLat.push(...ld.lat);
        loaded = ld.end;
        const loadWall = performance.now() - loadT0;
        if (loaded > loadedBefore) loadMsPerPlugin = Math.max(loadMsPerPlugin / 4, (loadWall / (loaded - loadedBefore)) * 1.2);
        const loadedMem = await settledMemory();
        // Probes: enable one more plugin at a time at this count, then call it.
        const probe: Probe = { at: enabled, enable: [], first: [], second: [], stall: NaN };
        if (loaded === enabled) {
          const mon = monitorEventLoopDelay({ resolution: 5 });
          mon.enable();
          await sleep(20);
          for (let j = 0; j < PROBES; j++) {
            const i = enabled;
            await reg.install(copies.dirs[i]!, ACTOR);
            await reg.grant(copies.ids[i]!, { allRequested: true }, ACTOR);
            const e0 = performance.now();
            const info = await reg.enable(copies.ids[i]!, ACTOR);
            const e1 = performance.now();
            if (info.state !== 'enabled') throw new Error(`${info.id} did not enable: ${info.blockers.join('; ')}`);
            checkOutput(await invokeWs(c, copies.ids[i]!), 'first tool.invoke after enable');
            const e2 = performance.now();
            checkOutput(await invokeWs(c, copies.ids[i]!), 'second tool.invoke');
            probe.enable.push(e1 - e0);
            probe.first.push(e2 - e1);
            probe.second.push(performance.now() - e2);
            enabled = installed = granted = loaded = i + 1;
          }
          mon.disable();
          probe.stall = mon.max / 1e6;
        }
        steps.push({
          installed,
          granted,
          enabled,
          loaded,
          added: enabled - enabledBefore,
          addedLoaded: loaded - loadedBefore,
          enabledMem,
          loadedMem,
          install: { wall: inst.wall, lat: stats(inst.lat) },
          grant: { wall: gr.wall, lat: stats(gr.lat) },
          enable: { wall: en.wall, lat: stats(en.lat) },
          load: { wall: loadWall, lat: stats(loadLat) },
          firstCall,
          firstCallStall,
          bulkStall,
          probe,
        });
        if (loaded < target) {
          stopped ||= `the time budget (BENCH_MEM_BUDGET_S=${MEM_BUDGET_S}) ran out on the way to ${target}: ${installed} installed, ${granted} granted, ${enabled} enabled, ${loaded} loaded`;
          break;
        }
      }

      // Does a big registry slow a call down? Sequential calls round-robin over the loaded plugins.
      let many: Stats | null = null;
      if (loaded > 0) {
        let k = 0;
        many = await sequential(Math.min(INVOKES, 300), () => invokeWs(c, copies.ids[k++ % loaded]!), SEQ_CAP_MS / 2);
      }
      const workers = bg.gw.host.pool.stats().workers.map((w) => w.plugins.length).join(' + ');

      console.log(`\n### Memory and time with many enabled plugins (copies of text-utils under distinct ids, gateway in this process)\n`);
      let prev = idle;
      const per = steps.map((s) => {
        const n = s.added;
        const l = s.addedLoaded;
        const r = {
          enabledRss: n > 0 ? (s.enabledMem.rss - prev.rss) / n : NaN,
          enabledHeap: n > 0 ? (s.enabledMem.heapUsed - prev.heapUsed) / n : NaN,
          loadedRss: l > 0 ? (s.loadedMem.rss - s.enabledMem.rss) / l : NaN,
          loadedHeap: l > 0 ? (s.loadedMem.heapUsed - s.enabledMem.heapUsed) / l : NaN,
        };
        prev = s.loadedMem;
        return r;
      });
      const bareAt = (i: number) => {
        const b = bare.get(stages[i]!);
        const p = i === 0 ? { rss: 0 } : bare.get(stages[i - 1]!);
        return b && p ? { per: (b.rss - p.rss) / (stages[i]! - (i === 0 ? 0 : stages[i - 1]!)), total: b.rss, ms: b.ms } : null;
      };
      const phase = (x: { wall: number; lat: Stats }) => `${fmtMs(x.wall)} (p50 ${fmtMs(x.lat.p50)}, p99 ${fmtMs(x.lat.p99)})`;
      table(
        ['measure', ...steps.map((s) => `step to ${s.enabled.toLocaleString('en-US')} enabled`)],
        [
          ['plugins installed / granted / enabled / loaded (called once)', ...steps.map((s) => `${s.installed} / ${s.granted} / ${s.enabled} / ${s.loaded}`)],
          ['**RSS, whole process** (target ≤ 1 GiB at 1,000)', ...steps.map((s) => `**${mib(s.loadedMem.rss)}**`)],
          ['RSS, gateway idle with no plugin (baseline)', ...steps.map(() => mib(idle.rss))],
          ['RSS when enabled, before the new ones are called', ...steps.map((s) => mib(s.enabledMem.rss))],
          ['main-thread heap used: idle → enabled → loaded', ...steps.map((s) => `${mib(idle.heapUsed)} → ${mib(s.enabledMem.heapUsed)} → ${mib(s.loadedMem.heapUsed)}`)],
          ['RSS per plugin: enabled, not yet called (RSS noise: can be < 0)', ...per.map((x) => kib(x.enabledRss))],
          ['**RSS per plugin: loaded** (called once)', ...per.map((x) => `**${kib(x.loadedRss)}**`)],
          ['main-thread heap per plugin: enabled / loaded', ...per.map((x) => `${kib(x.enabledHeap)} / ${kib(x.loadedHeap)}`)],
          ['baseline: RSS per module loaded + called in a bare SandboxPool', ...steps.map((_, i) => kib(bareAt(i)?.per ?? NaN))],
          ['baseline: bare SandboxPool RSS growth, cumulative', ...steps.map((_, i) => (bareAt(i) ? mib(bareAt(i)!.total) : 'n/a'))],
          [`time: install, ${MEM_OPS_INFLIGHT} in flight (per op)`, ...steps.map((s) => phase(s.install))],
          [`time: grant, ${MEM_OPS_INFLIGHT} in flight`, ...steps.map((s) => phase(s.grant))],
          [`time: enable, ${MEM_OPS_INFLIGHT} in flight`, ...steps.map((s) => phase(s.enable))],
          ['**time: install + grant + enable this step**', ...steps.map((s) => `**${fmtMs(s.install.wall + s.grant.wall + s.enable.wall)}**`)],
          [`time: first PluginHost.invoke of each new plugin (loads it), ${MEM_LOAD_INFLIGHT} in flight`, ...steps.map((s) => phase(s.load))],
          ['… the first of them alone (the first call after the step\'s lifecycle changes)', ...steps.map((s) => fmtMs(s.firstCall))],
          ['… longest event-loop stall during that first call', ...steps.map((s) => fmtMs(s.firstCallStall))],
          ['baseline: bare SandboxPool load + first call, cumulative', ...steps.map((_, i) => fmtMs(bareAt(i)?.ms ?? NaN))],
          ['longest event-loop stall during the step\'s installs, grants and enables', ...steps.map((s) => fmtMs(s.bulkStall))],
          [`**probe: enable one more plugin, alone** (median of ${PROBES}; max)`, ...steps.map((s) => `**${fmtMs(median(s.probe.enable))}** (${fmtMs(Math.max(...s.probe.enable))}) at ${s.probe.at}`)],
          ['**probe: first tool.invoke over WS after that enable** (median; max)', ...steps.map((s) => `**${fmtMs(median(s.probe.first))}** (${fmtMs(Math.max(...s.probe.first))})`)],
          ['probe: second tool.invoke of the same plugin (baseline)', ...steps.map((s) => fmtMs(median(s.probe.second)))],
          ['**longest event-loop stall over the probes** (install, enable, calls)', ...steps.map((s) => `**${fmtMs(s.probe.stall)}**`)],
        ],
      );
      reportScaleTargets(steps, bare, stages);
      console.log(`\nColumns are successive steps on one gateway: each step installs, grants and enables the next plugins through the`);
      console.log(`registry API, measures, then calls each new one once in-process through PluginHost.invoke (the load path of a`);
      console.log(`tool.invoke, without the per-call durable run, so the budget goes to plugins); "per plugin" = growth over the step /`);
      console.log(`plugins it added. Memory after forced GCs of the main isolate; the sandbox workers (threads of this process, ${workers}`);
      console.log(`plugins) collect on their own. The probe rows enable one more plugin alone at that count, then call it over WebSocket:`);
      console.log(`if a lifecycle change costs O(enabled) rather than O(changed), it shows there as the count grows.`);
      if (many) console.log(`With ${loaded} plugins loaded, sequential tool.invoke over WebSocket round-robin across them: p50 ${fmtMs(many.p50)}, p99 ${fmtMs(many.p99)}.`);
      if (stopped) console.log(`\n**Stopped early:** ${stopped}; the figures are for what was reached.`);
    } finally {
      await bg.close();
    }
  } finally {
    rmSync(copies.root, { recursive: true, force: true });
  }
}

/** Issue 11's scale targets from the memory steps (10 / 100 / 1,000 plugins). */
function reportScaleTargets(steps: MemStep[], bare: Map<number, { rss: number; heap: number; ms: number }>, stages: number[]): void {
  const at = (n: number) => steps.find((s) => s.probe.at === n && s.probe.enable.length > 0);
  const base = at(10);
  const top = steps.at(-1);
  const reachedTop = top && top.probe.enable.length > 0 && top.probe.at === MEM_PLUGINS ? top : undefined;
  if (base && reachedTop && reachedTop !== base) {
    const a = median(reachedTop.probe.enable);
    const b = median(base.probe.enable);
    reportTarget('plugins.enable', {
      measure: MEM_PLUGINS === 1000 ? undefined : `enable time per plugin at ${MEM_PLUGINS.toLocaleString('en-US')} plugins vs at 10 (BENCH_PLUGINS_MAX)`,
      figure: fmtMs(a),
      baseline: `at 10: ${fmtMs(b)}`,
      ratio: ratio(a, b),
      met: a <= 2 * b,
      note: `median of ${PROBES}`,
    });
  }
  for (const n of [10, 100, 1000] as const) {
    const s = at(n);
    if (!s) {
      const why = n > MEM_PLUGINS ? `BENCH_PLUGINS_MAX=${MEM_PLUGINS}` : `not reached within BENCH_MEM_BUDGET_S=${MEM_BUDGET_S}`;
      skipTarget(`plugins.stall.${n}`, why);
      skipTarget(`plugins.first.${n}`, why);
      continue;
    }
    const stall = Math.max(...[s.bulkStall, s.firstCallStall, s.probe.stall].filter((x) => Number.isFinite(x)));
    reportTarget(`plugins.stall.${n}`, { figure: fmtMs(stall), baseline: `monitor resolution 5 ms`, ratio: '', met: stall <= 50, note: `bulk ${fmtMs(s.bulkStall)}, first call ${fmtMs(s.firstCallStall)}, probes ${fmtMs(s.probe.stall)}` });
    const first = median(s.probe.first);
    const second = median(s.probe.second);
    reportTarget(`plugins.first.${n}`, { figure: fmtMs(first), baseline: `second call: ${fmtMs(second)}`, ratio: ratio(first, second), met: first <= 100, note: `median of ${PROBES}, max ${fmtMs(Math.max(...s.probe.first))}` });
  }
  if (top) {
    const b = bare.get(stages.at(-1)!);
    const reached = top.loaded;
    reportTarget('plugins.rss.1000', {
      measure: reached >= 1000 ? undefined : `RSS, ${reached.toLocaleString('en-US')} plugins enabled and each called once (fewer than 1,000)`,
      note: `${reached.toLocaleString('en-US')} plugins, whole process`,
      figure: mib(top.loadedMem.rss),
      baseline: b ? `bare SandboxPool, same modules: +${mib(b.rss)} over idle` : 'n/a',
      ratio: '',
      met: reached >= 1000 ? top.loadedMem.rss <= 2 ** 30 : null,
    });
  }
}

/** Runs every plugin-platform measurement and prints markdown tables. */
export async function pluginBench(): Promise<void> {
  const built = readBuilt();
  console.log(`\n## Plugin platform (text-utils ${built.manifest.version}, ${built.wasm.byteLength.toLocaleString('en-US')}-byte module)`);
  const t0 = performance.now();
  if (SECTIONS.has('latency')) await latencyAndThroughput(built);
  if (SECTIONS.has('install')) await installToFirstCall();
  if (SECTIONS.has('memory')) await memory(built, performance.now() + MEM_BUDGET_S * 1000);
  console.log(`\n(plugin section: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}
