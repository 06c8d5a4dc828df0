/**
 * The durable-execution part of `npm run bench` (issue 4, item 9). Every figure is printed beside
 * a baseline measured in the same run, on the same gateway:
 *
 * 1. Durable tool calls: calls/s and latency (p50/p99) of `tool.invoke` (text-utils.word_count)
 *    over WebSocket through a real gateway at 1, 16 and 64 concurrent clients (one TyrumClient
 *    connection each, closed loop, clients in a child process), beside the same call made without
 *    the engine (`PluginHost.invoke` in-process: no run, no steps, no outbox) and the durable
 *    engine without the WebSocket (`submit` + `wait` in-process), so transport cost and durability
 *    cost show separately. Every durable call is recorded under synchronous=FULL: the pragmas
 *    are read back from the gateway's own connection and the section refuses to run otherwise.
 *    For every cell it also counts, per call, the store transactions, those that wrote (each one
 *    WAL commit, fsynced under synchronous=FULL), the file fsyncs the audit checkpoint makes, and
 *    the milliseconds the event loop spent blocked in them.
 * 2. Group commit: N audit entries through `AuditLog.append` issued concurrently (committed one
 *    transaction per event-loop turn) vs `appendSync` one by one (one transaction and one
 *    checkpoint each), each on a fresh store, with the same counts; the log is verified after each.
 *
 * Scale with environment variables (defaults: about 50 s on an idle 2-core machine, 80 s on a busy one):
 *   BENCH_DURABLE_SECONDS=3             measured seconds per throughput cell (plus a short warm-up)
 *   BENCH_DURABLE_CONCURRENCY=1,16,64   concurrency levels
 *   BENCH_DURABLE_ENGINE=1              0 drops the in-process engine column
 *   BENCH_DURABLE_FANOUT=1              0 drops the extra row with clients that also hold operator.read
 *   BENCH_AUDIT_ENTRIES=2000            entries per group-commit cell; BENCH_AUDIT_CAP_S=5 caps a cell
 *   BENCH_DURABLE_SECTIONS=tools,audit  run only some parts
 * Figures, not assertions: only a wrong tool answer, a failed run or a log that does not verify
 * fails the run.
 */
import fs, { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { openHome, startGateway, type RunningGateway } from '../core/runtime.js';
import { homePaths } from '../core/config/index.js';
import { assertPragmas, openStore, type PragmaReport, type Store } from '../core/store/index.js';
import { verifyAudit, type AuditLog } from '../core/audit/index.js';
import type { Postcondition } from '../core/execution/postcondition.js';
import type { SandboxPool } from '../sandbox/index.js';
import { TyrumClient, type JsonObject } from '../sdk/index.js';
import { closedLoop, sleep, stats, type LoopResult, type Stats, runClientJob } from './util.js';

function envNumber(name: string, def: number, min = 0): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name} must be a number >= ${min} (got ${raw})`);
  return v;
}

function envList(name: string, def: string): number[] {
  return (process.env[name] || def).split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: "${s}" is not a positive integer`);
    return n;
  });
}

const SECONDS = envNumber('BENCH_DURABLE_SECONDS', 3, 0.1);
const LEVELS = envList('BENCH_DURABLE_CONCURRENCY', '1,16,64');
const WITH_ENGINE = process.env.BENCH_DURABLE_ENGINE !== '0';
const WITH_FANOUT = process.env.BENCH_DURABLE_FANOUT !== '0';
const AUDIT_N = Math.floor(envNumber('BENCH_AUDIT_ENTRIES', 2000, 1));
const AUDIT_CAP_MS = envNumber('BENCH_AUDIT_CAP_S', 5, 0.1) * 1000;
const SECTIONS = new Set((process.env.BENCH_DURABLE_SECTIONS || 'tools,audit').split(',').map((s) => s.trim()));
/** Concurrent writers in the closed-loop group-commit cell. */
const AUDIT_WRITERS = 64;

const BUILD_DIR = fileURLToPath(new URL('../plugins/text-utils/build/', import.meta.url));
const PLUGIN = 'text-utils';
const TOOL_ID = `${PLUGIN}.word_count`;
const ARGS = { text: 'The quick brown fox jumps over the lazy dog. Grüße 😀 你好世界\nA second line.' };
const EXPECTED = { words: 18, chars: 72, lines: 2 };
const ACTOR = { kind: 'bench' };

// --- formatting ---

const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'n/a' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 1000 ? `${ms.toFixed(2)} ms` : `${(ms / 1000).toFixed(2)} s`);
const fmtRate = (r: number) => (Number.isFinite(r) ? `${Math.round(r).toLocaleString('en-US')}/s` : 'n/a');
const fmtNum = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
/** a/b, or "1/x" when a < b ("1/6.2" reads better than "0.2×"). */
const rateRatio = (a: number, b: number) => (!Number.isFinite(a / b) || a <= 0 || b <= 0 ? 'n/a' : a >= b ? `${(a / b).toFixed(1)}×` : `1/${(b / a).toFixed(b / a < 10 ? 1 : 0)}`);
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a');

function table(head: string[], rows: string[][]): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

function checkOutput(out: unknown, where: string): void {
  const o = out as { words?: unknown; chars?: unknown; lines?: unknown } | null;
  if (o?.words !== EXPECTED.words || o.chars !== EXPECTED.chars || o.lines !== EXPECTED.lines) {
    throw new Error(`${where}: unexpected output ${JSON.stringify(out)} (want ${JSON.stringify(EXPECTED)})`);
  }
}

/** Throws unless the connection really runs WAL with synchronous=FULL; returns the report line. */
function assertFull(p: PragmaReport, where: string): string {
  try {
    assertPragmas(p);
  } catch (e) {
    throw new Error(`${where}: every commit is not synced (${JSON.stringify(p)}); refusing to bench durability`, { cause: e });
  }
  const sync = p.commit_sync === 'store' ? 'synchronous=1 (NORMAL) + the store fdatasyncs the log before answering' : 'synchronous=2 (FULL)';
  return `journal_mode=${p.journal_mode}, ${sync}, foreign_keys=${p.foreign_keys}`;
}

// --- instrumentation ---

interface ProbeCounts {
  /** Store.tx calls (IMMEDIATE transactions), committed or not. */
  tx: number;
  /** Of those, the ones that changed the database: one WAL commit, fsynced under synchronous=FULL. */
  writeTx: number;
  /** fs.fsyncSync calls from JS (the audit checkpoint: its temp file and its directory). */
  fileFsyncs: number;
  /** Milliseconds spent inside Store.tx (statements + commit + fsync) and in fsyncSync: the event loop is blocked for all of it. */
  blockedMs: number;
}

/**
 * Counts a store's transactions while installed. Whether a transaction wrote is read from a
 * second, read-only connection: its `PRAGMA data_version` changes only when another connection
 * commits a change, i.e. when this transaction appended frames to the WAL (an IMMEDIATE
 * transaction that changed nothing, such as the audit checkpoint's mutex, writes no frame and
 * needs no fsync). `fs.fsyncSync` is wrapped process-wide for the same span.
 */
class TxProbe {
  private c: ProbeCounts = { tx: 0, writeTx: 0, fileFsyncs: 0, blockedMs: 0 };
  private readonly watcher: Store;
  private lastVersion: number;
  private readonly origFsync = fs.fsyncSync;
  private readonly hadOwnTx: boolean;

  constructor(
    private readonly store: Store,
    dbPath: string,
  ) {
    this.watcher = openStore(dbPath, { readonly: true });
    this.lastVersion = this.watcher.dataVersion();
    this.hadOwnTx = Object.prototype.hasOwnProperty.call(store, 'tx');
    const orig = store.tx.bind(store);
    store.tx = <T>(fn: () => T): T => {
      const t0 = performance.now();
      try {
        return orig(fn);
      } finally {
        this.c.blockedMs += performance.now() - t0;
        this.c.tx++;
        const v = this.watcher.dataVersion();
        if (v !== this.lastVersion) {
          this.c.writeTx++;
          this.lastVersion = v;
        }
      }
    };
    const origFsync = this.origFsync;
    fs.fsyncSync = (fd: number) => {
      const t0 = performance.now();
      try {
        origFsync(fd);
      } finally {
        this.c.blockedMs += performance.now() - t0;
        this.c.fileFsyncs++;
      }
    };
    // Named imports of node:fs (core/audit/checkpoint.ts) see the wrapper only after this.
    syncBuiltinESMExports();
  }

  /** Adds counts made outside the probe's window. */
  add(x: ProbeCounts): void {
    this.c.tx += x.tx;
    this.c.writeTx += x.writeTx;
    this.c.fileFsyncs += x.fileFsyncs;
    this.c.blockedMs += x.blockedMs;
  }

  /** Counts since the last take, and start again from zero. */
  take(): ProbeCounts {
    const out = this.c;
    this.c = { tx: 0, writeTx: 0, fileFsyncs: 0, blockedMs: 0 };
    return out;
  }

  uninstall(): void {
    fs.fsyncSync = this.origFsync;
    syncBuiltinESMExports();
    if (!this.hadOwnTx) delete (this.store as { tx?: unknown }).tx;
    this.watcher.close();
  }
}

/** The disk's own cost, for reading the tables: 4 KiB write + fsync of one file, `n` times in a row. */
function fsyncReference(n = 200): Stats {
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-bench-fsync-'));
  try {
    const fd = openSync(join(dir, 'f'), 'w');
    const page = Buffer.alloc(4096, 1);
    const lat: number[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        writeSync(fd, page);
        fs.fsyncSync(fd);
        lat.push(performance.now() - t0);
      }
    } finally {
      closeSync(fd);
    }
    return stats(lat);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let machine = '';

/** Node, CPUs, load, and the disk's fsync cost: the facts every table here depends on. */
function machineFacts(): string {
  const cpu = cpus();
  const f = fsyncReference();
  return (
    `Node ${process.version}, ${cpu.length} CPU${cpu.length === 1 ? '' : 's'} (${cpu[0]?.model.trim() ?? 'unknown'}), ${process.platform}/${process.arch}; ` +
    `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; this disk: 4 KiB write + fsync p50 ${fmtMs(f.p50)}, p99 ${fmtMs(f.p99)} (${f.n} in a row).`
  );
}

async function poolReady(pool: SandboxPool): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (!pool.stats().workers.every((w) => w.ready)) {
    if (performance.now() > deadline) throw new Error('sandbox workers did not become ready in 30 s');
    await sleep(5);
  }
}

/** Runs bench/ws-client.ts in a child process against the gateway and returns what it measured. */
function childLoop(url: string, token: string, concurrency: number, seconds: number): Promise<LoopResult> {
  return runClientJob<LoopResult>({ url, request: { type: 'tool.invoke', payload: { tool_id: TOOL_ID, args: ARGS } }, mode: 'loop', concurrency, seconds }, token);
}

// --- 1: durable tool calls vs the same calls without the engine ---

interface Cell {
  level: number;
  /** Event-loop utilization of the gateway's (this process's) main thread over the cell. */
  elu: number;
  /** Wall time the counts cover (ms). */
  wallMs: number;
  path: 'host' | 'engine' | 'ws' | 'ws-fanout';
  loop: LoopResult;
  /** Calls that completed while the probe counted (warm-up included): the divisor for `counts`. */
  completed: number;
  counts: ProbeCounts;
}

const PATH_NAMES: Record<Cell['path'], string> = {
  host: 'no engine: PluginHost.invoke in-process (baseline)',
  engine: 'durable, no WebSocket: engine submit + wait in-process',
  ws: 'durable: tool.invoke over WebSocket',
  'ws-fanout': 'durable: tool.invoke over WebSocket, clients also hold operator.read',
};

async function toolCalls(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-durable-'));
  let gw: RunningGateway | null = null;
  let probe: TxProbe | null = null;
  const offs: Array<() => void> = [];
  try {
    gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
    const g = gw;
    const pragmaLine = assertFull(g.store.pragmas(), 'gateway store');
    await poolReady(g.host.pool);
    const inst = await g.plugins.install(BUILD_DIR, ACTOR);
    await g.plugins.grant(inst.plugin.id, { allRequested: true }, ACTOR);
    const info = await g.plugins.enable(inst.plugin.id, ACTOR);
    if (info.state !== 'enabled') throw new Error(`${inst.plugin.id} did not enable: ${info.blockers.join('; ')}`);
    if (g.host.describe(TOOL_ID)?.entry.effect !== 'read_only') throw new Error(`${TOOL_ID} is not a read_only tool`);
    // What a tool-calling client holds: operator.write (tool.invoke), no operator.read, so it is not
    // sent every run's events. The fan-out row uses the bootstrap admin token (every scope).
    const writer = await g.tokens.create({ scopes: ['operator.write'], roles: ['client'], label: 'bench durable', createdBy: 'bench' });
    const admin = g.bootstrapToken;
    if (!admin) throw new Error('the fresh gateway home has no bootstrap token');

    // The two in-process paths. engineCall mirrors the tool.invoke handler (core/protocol/handlers.ts).
    let completed = 0;
    const hostCall = async () => {
      const r = await g.host.invoke(TOOL_ID, ARGS, ACTOR);
      checkOutput(r.output, 'PluginHost.invoke');
      completed++;
    };
    const engineCall = async () => {
      g.host.checkCall(TOOL_ID, ARGS);
      const declared = g.host.describe(TOOL_ID)?.entry.postcondition;
      const { run } = await g.engine.submit({ kind: 'tool', steps: [{ tool_id: TOOL_ID, args: ARGS, ...(declared ? { postcondition: declared as Postcondition } : {}) }], created_by: 'bench', actor: ACTOR });
      const d = await g.engine.wait(run.id, 30_000);
      if (d.run.state !== 'succeeded') throw new Error(`engine run ${run.id} ended ${d.run.state}: ${JSON.stringify(d.run.error ?? d.steps[0]?.error ?? null)}`);
      checkOutput(d.steps[0]?.result, 'engine run');
      completed++;
    };
    // WS calls are counted on the gateway side, from the committed run events. Counting starts at
    // the first run of a cell (onFirstRun), after the clients have connected: a new device's
    // handshake writes its record, which is not the cost of a call.
    let wsOk = 0;
    let wsBad = 0;
    let onFirstRun: (() => void) | null = null;
    offs.push(
      g.engine.onEvent((e) => {
        if (e.type !== 'run.updated') return;
        if (e.payload.state === 'queued' && onFirstRun) {
          onFirstRun();
          onFirstRun = null;
        } else if (e.payload.state === 'succeeded') wsOk++;
        else if (e.payload.state === 'failed' || e.payload.state === 'cancelled' || e.payload.state === 'paused') wsBad++;
      }),
    );

    // Correctness once per path before measuring (also loads the module into the sandbox).
    await hostCall();
    await engineCall();
    const c = new TyrumClient({ url: g.url, token: writer.token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
    await c.connect();
    try {
      const r = await c.request<JsonObject>('tool.invoke', { tool_id: TOOL_ID, args: ARGS });
      if (r.state !== 'succeeded') throw new Error(`tool.invoke over WebSocket ended ${String(r.state)}: ${JSON.stringify(r.error ?? null)}`);
      checkOutput(r.output, 'tool.invoke over WebSocket');
    } finally {
      await c.close();
    }

    probe = new TxProbe(g.store, homePaths(home).db);
    const cells: Cell[] = [];
    const inProcess = async (level: number, path: 'host' | 'engine', fn: () => Promise<void>) => {
      completed = 0;
      probe!.take();
      const e0 = performance.eventLoopUtilization();
      const t0 = performance.now();
      const loop = await closedLoop(Array.from({ length: level }, () => fn), SECONDS);
      await g.audit.flush(); // entries queued by the last calls are part of their cost
      const elu = performance.eventLoopUtilization(e0).utilization;
      cells.push({ level, path, elu, wallMs: performance.now() - t0, loop, completed, counts: probe!.take() });
    };
    const overWs = async (level: number, path: 'ws' | 'ws-fanout', token: string) => {
      wsOk = 0;
      wsBad = 0;
      let e0 = performance.eventLoopUtilization();
      let t0 = performance.now();
      // The first run's submit transaction committed just before its event: count it back in.
      onFirstRun = () => {
        probe!.take();
        probe!.add({ tx: 1, writeTx: 1, fileFsyncs: 0, blockedMs: 0 });
        e0 = performance.eventLoopUtilization();
        t0 = performance.now();
      };
      const loop = await childLoop(g.url, token, level, SECONDS);
      onFirstRun = null;
      await g.audit.flush();
      const elu = performance.eventLoopUtilization(e0).utilization;
      if (wsBad > 0) throw new Error(`${wsBad} durable runs over WebSocket did not succeed`);
      cells.push({ level, path, elu, wallMs: performance.now() - t0, loop, completed: wsOk, counts: probe!.take() });
    };
    for (const level of LEVELS) {
      await inProcess(level, 'host', hostCall);
      if (WITH_ENGINE) await inProcess(level, 'engine', engineCall);
      await overWs(level, 'ws', writer.token);
    }
    const top = Math.max(...LEVELS);
    if (WITH_FANOUT && top > 1) await overWs(top, 'ws-fanout', admin);

    // --- print ---
    console.log(`\n### Durable tool calls vs the same calls without the engine\n`);
    console.log(machine);
    console.log(`Gateway store pragmas read back from its connection: **${pragmaLine}**; every durable call below is recorded under them.`);
    console.log(`${TOOL_ID} (read_only, policy default allow), ${JSON.stringify(ARGS).length}-byte args; closed loop, ${SECONDS} s measured per cell after a warm-up.\n`);
    const per = (x: number, cell: Cell) => (cell.completed > 0 ? x / cell.completed : NaN);
    table(
      ['clients', 'path', 'calls/s', 'p50', 'p99', 'calls measured', 'store tx / call', 'WAL commits (fsync) / call', 'checkpoint file fsyncs / call', '**fsyncs / call**', 'event loop blocked in commits / call', 'share of wall time blocked', 'event loop busy (ELU)'],
      cells.map((cell) => {
        const blocked = per(cell.counts.blockedMs, cell);
        return [
          String(cell.level),
          PATH_NAMES[cell.path],
          `**${fmtRate(cell.loop.rate)}**`,
          fmtMs(cell.loop.lat.p50),
          fmtMs(cell.loop.lat.p99),
          String(cell.loop.calls),
          fmtNum(per(cell.counts.tx, cell)),
          fmtNum(per(cell.counts.writeTx, cell)),
          fmtNum(per(cell.counts.fileFsyncs, cell)),
          `**${fmtNum(per(cell.counts.writeTx + cell.counts.fileFsyncs, cell))}**`,
          fmtMs(blocked),
          pct(cell.counts.blockedMs / cell.wallMs),
          pct(cell.elu),
        ];
      }),
    );

    const find = (level: number, path: Cell['path']) => cells.find((x) => x.level === level && x.path === path);
    console.log(`\n#### Ratios (calls/s; p50 latency in brackets)\n`);
    const lat = (a: Stats | undefined, b: Stats | undefined) => (a && b ? `${(a.p50 / b.p50).toFixed(1)}×` : 'n/a');
    table(
      ['clients', 'durable over WS / no engine', ...(WITH_ENGINE ? ['durable in-process / no engine (durability cost)', 'durable over WS / durable in-process (transport cost)'] : [])],
      LEVELS.map((level) => {
        const h = find(level, 'host');
        const e = find(level, 'engine');
        const w = find(level, 'ws');
        const r = (a: Cell | undefined, b: Cell | undefined) => `${a && b ? rateRatio(a.loop.rate, b.loop.rate) : 'n/a'} (${lat(a?.loop.lat, b?.loop.lat)})`;
        return [String(level), r(w, h), ...(WITH_ENGINE ? [r(e, h), r(w, e)] : [])];
      }),
    );
    console.log(`\n- no engine = the tool call itself: schema checks, the sandbox call, output check, redaction and one audit entry`);
    console.log(`  (group-committed); no run, no steps, no attempts, no outbox. Durable = a one-step run: submit (run + step + outbox`);
    console.log(`  event in one transaction), lease claim (one transaction per engine tick, shared by the runs it claims), attempt`);
    console.log(`  started, attempt + step succeeded, run finished (one transaction each), plus audit entries (run.submitted, tool.invoked,`);
    console.log(`  step.finished, run.finished) group-committed with everything else queued in the same event-loop turn.`);
    console.log(`- Counts are per completed call over the whole cell, warm-up included (over WS from the first call, once the clients`);
    console.log(`  have connected). "store tx" counts every Store.tx, including the audit checkpoint's compare-and-rename mutex (an`);
    console.log(`  IMMEDIATE transaction that writes nothing, so no WAL fsync); "WAL commits" are the transactions that changed the`);
    console.log(`  database (each fsyncs the WAL under synchronous=FULL), detected with data_version on a second connection. The signed`);
    console.log(`  audit checkpoint (a temp file and its directory fsynced) is written once per interval (audit_checkpoint_interval_ms,`);
    console.log(`  1 s) or per audit_checkpoint_entries (1,000) entries, not per batch. SQLite's automatic WAL checkpoints (every ~1,000`);
    console.log(`  pages) add a few fsyncs not counted here.`);
    console.log(`- These counts see only what goes through this process's Store.tx and fs.fsyncSync: commits made elsewhere (a`);
    console.log(`  storage worker thread, a connection of its own) are not in them. The fsyncs section counts every fsync and`);
    console.log(`  fdatasync syscall of a real gateway process with strace, and is the figure issue 11's targets are read from.`);
    console.log(`- "blocked" = time inside Store.tx and fsyncSync, all synchronous on the gateway's event loop (better-sqlite3); its`);
    console.log(`  share is of the same span's wall time. ELU = the event loop's utilization over that span (busy, not idle).`);
    console.log(`- The engine executes at most 8 runs at once (its default concurrency), and the sandbox runs one plugin's calls one at a`);
    console.log(`  time on its worker, so beyond a few clients extra callers mostly queue: latency grows, calls/s does not.`);
    console.log(`- WS clients: ${Math.max(...LEVELS)} at most, one TyrumClient connection each (own device key), in a child process`);
    console.log(`  (bench/ws-client.ts) so the client's work does not share the gateway's event loop; they share this machine's CPUs.`);
    console.log(`  They hold an operator.write token (what tool.invoke needs).${WITH_FANOUT && top > 1 ? ` In the last row they hold the admin token, so each also` : ''}`);
    if (WITH_FANOUT && top > 1) console.log(`  receives (operator.read) every run.updated, step.updated and tool.invoked event of every client's call: ~6 × ${top} frames per call.`);
  } finally {
    for (const off of offs) off();
    probe?.uninstall();
    if (gw) await gw.close();
    rmSync(home, { recursive: true, force: true });
  }
}

// --- 2: group commit ---

interface AuditCell {
  name: string;
  entries: number;
  ms: number;
  counts: ProbeCounts;
}

const ENTRY_ACTOR = { kind: 'engine', owner: 'bench' };
/** About the size of the engine's step.finished entry. */
function entryData(i: number): Record<string, unknown> {
  return {
    run_id: `run_00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    step_idx: 0,
    tool_id: TOOL_ID,
    attempt: 1,
    state: 'succeeded',
    error_code: null,
    duration_ms: 0.412,
    policy_decision: 'allow',
    policy_snapshot_id: `pol_${'a'.repeat(64)}`,
    approval_id: null,
    definition_hash: 'b'.repeat(64),
    plugin_digest: 'c'.repeat(64),
  };
}

type AuditWriter = (audit: AuditLog, n: number, deadline: number) => Promise<number>;

const AUDIT_MODES: Array<{ name: string; write: AuditWriter }> = [
  {
    name: 'appendSync, one by one (one transaction + checkpoint per entry)',
    write: async (audit, n, deadline) => {
      let i = 0;
      for (; i < n && (i === 0 || performance.now() < deadline); i++) audit.appendSync('bench.step_finished', ENTRY_ACTOR, entryData(i));
      return i;
    },
  },
  {
    name: 'append, one writer awaiting each entry (nothing to group)',
    write: async (audit, n, deadline) => {
      let i = 0;
      for (; i < n && (i === 0 || performance.now() < deadline); i++) await audit.append('bench.step_finished', ENTRY_ACTOR, entryData(i));
      return i;
    },
  },
  {
    name: `append, ${AUDIT_WRITERS} concurrent writers, each awaiting its entry before the next`,
    write: async (audit, n, deadline) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: AUDIT_WRITERS }, async () => {
          while (next < n && performance.now() < deadline) await audit.append('bench.step_finished', ENTRY_ACTOR, entryData(next++));
        }),
      );
      return next;
    },
  },
  {
    name: 'append, all issued at once (one burst)',
    write: async (audit, n) => {
      await Promise.all(Array.from({ length: n }, (_, i) => audit.append('bench.step_finished', ENTRY_ACTOR, entryData(i))));
      return n;
    },
  },
];

async function groupCommit(): Promise<void> {
  const cells: AuditCell[] = [];
  let pragmaLine = '';
  for (const mode of AUDIT_MODES) {
    const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-audit-'));
    try {
      const svc = openHome(home);
      let probe: TxProbe | null = null;
      try {
        pragmaLine = assertFull(svc.store.pragmas(), 'audit store');
        probe = new TxProbe(svc.store, svc.paths.db);
        const t0 = performance.now();
        const entries = await mode.write(svc.audit, AUDIT_N, t0 + AUDIT_CAP_MS);
        // append signs its checkpoint on an interval; sign the last one inside the measurement.
        await svc.audit.flush();
        const ms = performance.now() - t0;
        cells.push({ name: mode.name, entries, ms, counts: probe.take() });
        probe.uninstall();
        probe = null;
        const v = verifyAudit({ store: svc.store, verifier: svc.key, checkpointPath: svc.paths.auditCheckpoint });
        if (!v.ok || v.entries !== entries || v.checkpoint?.seq !== entries) throw new Error(`audit log after "${mode.name}" does not verify: ${v.reason ?? `${v.entries} entries, checkpoint at ${v.checkpoint?.seq}`}`);
      } finally {
        probe?.uninstall();
        await svc.close();
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }
  const base = cells[0]!;
  const rate = (c: AuditCell) => (c.entries / c.ms) * 1000;
  console.log(`\n### Group commit: audit entries, AuditLog.append vs appendSync\n`);
  console.log(machine);
  console.log(`A fresh gateway home per row, store pragmas **${pragmaLine}**;`);
  console.log(`up to ${AUDIT_N.toLocaleString('en-US')} entries per row (each row capped at ${AUDIT_CAP_MS / 1000} s), ~${JSON.stringify(entryData(0)).length}-byte data each; hash chain and signed checkpoint verified after each row.\n`);
  table(
    ['how', 'entries', 'wall', 'entries/s', 'vs appendSync', 'store tx', 'WAL commits (fsync)', 'entries per commit', 'checkpoint file fsyncs', 'µs blocked per entry'],
    cells.map((c) => [
      c.name,
      c.entries.toLocaleString('en-US'),
      fmtMs(c.ms),
      `**${fmtRate(rate(c))}**`,
      rateRatio(rate(c), rate(base)),
      c.counts.tx.toLocaleString('en-US'),
      c.counts.writeTx.toLocaleString('en-US'),
      fmtNum(c.entries / Math.max(1, c.counts.writeTx), 1),
      c.counts.fileFsyncs.toLocaleString('en-US'),
      ((c.counts.blockedMs / Math.max(1, c.entries)) * 1000).toFixed(0),
    ]),
  );
  console.log(`\nEvery batch is one IMMEDIATE transaction (the entries, chained), one WAL fsync whatever its size. The signed`);
  console.log(`checkpoint (its temp file fsynced, a compare-and-rename under a second IMMEDIATE transaction that writes nothing, and a`);
  console.log(`directory fsync) is written per entry by appendSync (the CLI), but by append only for the log's first entries, once`);
  console.log(`per audit_checkpoint_interval_ms (1 s) or audit_checkpoint_entries (1,000), and on flush (the last one of each row).`);
  console.log(`append groups whatever is queued in one event-loop turn; a lone writer that awaits each entry gets no grouping.`);
  console.log(`(Engine audit entries are never awaited, so under load they group.)`);
}

/** The durable-execution bench section: prints markdown. */
export async function durableBench(): Promise<void> {
  const t0 = performance.now();
  console.log(`\n## Durable execution (issue 4)`);
  machine = machineFacts();
  if (SECTIONS.has('tools')) await toolCalls();
  if (SECTIONS.has('audit')) await groupCommit();
  console.log(`\ndurable section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}
