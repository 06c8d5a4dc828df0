/**
 * The parts of `npm run bench` that run the gateway as users do, a real `tyrum start` process (the
 * built CLI: `node bin/tyrum.js start --home <tmp> --port 0`), on a home prepared beforehand through
 * the registry, token and policy APIs (`openHome`), and measure it from outside through its public
 * endpoints (issue 11, item 8). Each figure is printed beside a baseline measured in the same run.
 *
 * - `fsyncs`: fsync/fdatasync syscalls of the gateway process per call, counted with
 *   `strace -f -y -e trace=fsync,fdatasync` attached to that process (all its threads) only while
 *   the calls of one cell run, at 1, 16 and 64 concurrent clients, for a read-only call
 *   (text-utils.word_count) and a state-changing one (notes.add_note / notes.delete_note in turn,
 *   allowed by a policy override), beside the disk's own fdatasync p50 in the gateway's home.
 *   strace slows every syscall of the traced process, so nothing here is a latency figure.
 * - `start`: spawn of `tyrum start` with 10 plugins installed and enabled → first successful
 *   tool.invoke answered, vs spawning `node -e ''`.
 * - `cli`: `tyrum ping`, `tyrum tool list` and `tyrum approvals list` against that running gateway,
 *   spawn → exit, vs `node -e ''`.
 * - `connections`: RSS of the gateway process per idle authenticated WebSocket connection (TyrumClient
 *   handshakes, each its own device key) at 10,000 connections, vs a bare `ws` server process
 *   holding the same number of plain connections.
 *
 * Scale with environment variables:
 *   BENCH_FSYNC_SECONDS=2        calls per cell under strace, in seconds
 *   BENCH_FSYNC_CONCURRENCY=1,16,64
 *   BENCH_START_RUNS=5           gateway starts measured
 *   BENCH_CLI_RUNS=5             runs of each CLI command (and of the baseline)
 *   BENCH_CONNECTIONS=10000      idle connections held (fewer when the open-file limit is lower)
 * Figures, not assertions: only a wrong answer, a failed call or a process that does not start
 * fails the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { openHome } from '../core/runtime.js';
import { TyrumClient, type JsonObject } from '../sdk/index.js';
import type { RiskFlag } from '../schemas/src/manifest.js';
import { diskLine, envNumber, fdatasyncReference, fmtMs, fmtRate, loadAverage, mib, reportTarget, skipTarget, sleep, stats, table, times, type Stats, type TargetKey } from './util.js';
import { makeCopies, readBuilt } from './plugins.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TYRUM_BIN = join(ROOT, 'bin/tyrum.js');
const TEXT_UTILS = join(ROOT, 'plugins/text-utils/build');
const NOTES = join(ROOT, 'plugins/notes/build');
const ACTOR = { kind: 'bench' };
const ARGS = { text: 'The quick brown fox jumps over the lazy dog. Grüße 😀 你好世界\nA second line.' };
const EXPECTED_WORDS = 18;
const WAIT_MS = 30_000;

function envList(name: string, def: string): number[] {
  return (process.env[name] || def).split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: "${s}" is not a positive integer`);
    return n;
  });
}

// --- a gateway home and a gateway process ---

export interface PreparedHome {
  home: string;
  /** operator.write: what a tool-calling client holds (no operator.read, so no event fan-out). */
  writer: string;
  /** operator.read + operator.write: what the CLI commands use. */
  operator: string;
  /** Plugin ids of the copies installed (`copies` of text-utils). */
  copies: string[];
  cleanup(): void;
}

/**
 * A fresh gateway home, prepared through openHome as the CLI does: `copies` copies of text-utils
 * (one built module, distinct ids), optionally text-utils and notes themselves with the notes
 * tools allowed by policy overrides, two tokens, and `config.json` limits.
 */
export async function prepareHome(o: { copies?: number; textUtils?: boolean; notes?: boolean; limits?: Record<string, number>; config?: Record<string, unknown> }): Promise<PreparedHome> {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-proc-'));
  let copiesRoot: string | null = null;
  const cleanup = () => {
    rmSync(home, { recursive: true, force: true });
    if (copiesRoot) rmSync(copiesRoot, { recursive: true, force: true });
  };
  try {
    if (o.limits || o.config) writeFileSync(join(home, 'config.json'), JSON.stringify({ ...o.config, ...(o.limits ? { limits: o.limits } : {}) }));
    const svc = openHome(home);
    try {
      const dirs: string[] = [];
      let copies: string[] = [];
      if (o.copies) {
        const c = makeCopies(readBuilt(), o.copies);
        copiesRoot = c.root;
        dirs.push(...c.dirs);
        copies = c.ids;
      }
      if (o.textUtils) dirs.push(TEXT_UTILS);
      if (o.notes) dirs.push(NOTES);
      for (const dir of dirs) {
        const r = await svc.plugins.install(dir, ACTOR);
        // What `plugin grant --all-requested --accept-risk <its flags>` does.
        const risk = (JSON.parse(readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8')) as { risk?: RiskFlag[] }).risk ?? [];
        await svc.plugins.grant(r.plugin.id, { allRequested: true, acceptRisks: risk }, ACTOR);
        const info = await svc.plugins.enable(r.plugin.id, ACTOR);
        if (info.state !== 'enabled') throw new Error(`${r.plugin.id} did not enable: ${info.blockers.join('; ')}`);
      }
      if (o.notes) {
        // state_changing tools need an approval by default; a narrow override allows them (as
        // `approvals approve --always` would), so the calls run without a human.
        for (const tool_id of ['notes.add_note', 'notes.delete_note']) await svc.policy.addOverride({ tool_id, created_by: 'bench' });
      }
      const writer = await svc.tokens.create({ scopes: ['operator.write'], roles: ['client'], label: 'bench writer', createdBy: 'bench' });
      const operator = await svc.tokens.create({ scopes: ['operator.read', 'operator.write'], roles: ['client'], label: 'bench operator', createdBy: 'bench' });
      return { home, writer: writer.token, operator: operator.token, copies, cleanup };
    } finally {
      await svc.close();
    }
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** Waits for a child's exit; SIGKILL after `ms`. */
function exited(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** `tyrum start` in a child process (the built CLI), soft open-file limit raised to the hard one. */
export class GatewayProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    /** spawn → the "listening on" line, ms. */
    readonly listenMs: number,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  /** What the process wrote to stderr so far (its log lines at `logLevel`). */
  stderr = '';

  static async start(home: string, env: NodeJS.ProcessEnv = process.env, logLevel = 'silent'): Promise<GatewayProcess> {
    const t0 = performance.now();
    // sh raises the soft limit (allowed up to the hard one) and execs node: the pid is the gateway's.
    const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, TYRUM_BIN, 'start', '--home', home, '--port', '0', '--log-level', logLevel], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`tyrum start printed no "listening on" line within 60 s; stderr:\n${err}`)), 60_000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(e);
      };
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        const m = /listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('error', fail);
      child.once('exit', (code) => fail(new Error(`tyrum start exited (${code}) before listening; stderr:\n${err}`)));
    });
    const gw = new GatewayProcess(child, url, performance.now() - t0);
    gw.stderr = err;
    child.stderr!.on('data', (d: string) => (gw.stderr += d));
    return gw;
  }

  /** Resident set size of the gateway process (bytes), from /proc. */
  rss(): number {
    return procRss(this.pid);
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    const code = await exited(this.child, 15_000);
    if (code !== 0 && code !== null) throw new Error(`tyrum start exited with ${code} on SIGTERM`);
  }
}

function procRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

async function connect(url: string, token: string): Promise<TyrumClient> {
  const c = new TyrumClient({ url, token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
  await c.connect();
  return c;
}

async function wordCount(c: TyrumClient, toolId = 'text-utils.word_count'): Promise<void> {
  const r = await c.request<JsonObject>('tool.invoke', { tool_id: toolId, args: ARGS, wait_ms: WAIT_MS });
  const words = (r.output as { words?: unknown } | null | undefined)?.words;
  if (r.state !== 'succeeded' || words !== EXPECTED_WORDS) throw new Error(`${toolId}: ${String(r.state)} ${JSON.stringify(r.output ?? r.error ?? null)}`);
}

/** Spawns `argv` (node first) and resolves with its wall time, spawn → exit; throws on a non-zero exit. */
async function timedSpawn(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const t0 = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await exited(child, 60_000);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.slice(1).join(' ')} exited with ${code}: ${out.slice(0, 500)}`);
  return ms;
}

const nodeBaseline = () => timedSpawn([process.execPath, '-e', '']);

// --- fsyncs per call (strace) ---

interface SyncCounts {
  fsync: number;
  fdatasync: number;
  /** By the file they were called on: WAL, database, audit checkpoint, a directory, other. */
  byFile: Map<string, number>;
}

/** strace attached to one process and all its threads, counting fsync and fdatasync into a file. */
class Strace {
  private constructor(
    private readonly child: ChildProcess,
    private readonly out: string,
  ) {}

  /** Attaches; throws a SkipError (why) when strace is missing or may not attach. */
  static async attach(pid: number, out: string): Promise<Strace> {
    const child = spawn(straceBin()!, ['-f', '-y', '-e', 'trace=fsync,fdatasync', '-o', out, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new SkipError(`strace did not attach within 10 s: ${err.trim()}`));
      }, 10_000);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        if (/attached/.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new SkipError(`strace could not run: ${e.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new SkipError(`strace exited (${code}) without attaching: ${err.trim().split('\n')[0] ?? ''}`));
      });
    });
    return new Strace(child, out);
  }

  /** Detaches and counts. */
  async stop(home: string): Promise<SyncCounts> {
    this.child.kill('SIGINT');
    await exited(this.child, 15_000);
    const c: SyncCounts = { fsync: 0, fdatasync: 0, byFile: new Map() };
    for (const line of readFileSync(this.out, 'utf8').split('\n')) {
      // "<pid> fdatasync(12</tmp/h/tyrum.db-wal>) = 0" (or "... <unfinished ...>"); "<... resumed>" lines are the same call.
      const m = /\b(fsync|fdatasync)\((\d+)(?:<([^>]*)>)?/.exec(line);
      if (!m) continue;
      c[m[1] as 'fsync' | 'fdatasync']++;
      const path = m[3] ?? '';
      const file = path.endsWith('-wal')
        ? 'WAL'
        : path.endsWith('.db')
          ? 'database'
          : path.includes('checkpoint')
            ? 'audit checkpoint'
            : path === home || path === tmpdir() || !path.slice(path.lastIndexOf('/')).includes('.')
              ? 'directory'
              : `other (${path.slice(path.lastIndexOf('/') + 1)})`;
      c.byFile.set(file, (c.byFile.get(file) ?? 0) + 1);
    }
    rmSync(this.out, { force: true });
    return c;
  }
}

class SkipError extends Error {}

function straceBin(): string | null {
  for (const dir of ['/usr/bin', '/bin', ...(process.env.PATH ?? '').split(delimiter)]) if (dir && existsSync(join(dir, 'strace'))) return join(dir, 'strace');
  return null;
}

/** Runs every caller in a closed loop for `ms`; the number of calls completed (all of them end inside). */
async function timedLoop(callers: Array<() => Promise<void>>, ms: number): Promise<number> {
  const end = performance.now() + ms;
  let calls = 0;
  await Promise.all(
    callers.map(async (fn) => {
      while (performance.now() < end) {
        await fn();
        calls++;
      }
    }),
  );
  return calls;
}

type CallKind = 'read_only' | 'state_changing';
const CALL_WHAT: Record<CallKind, string> = {
  read_only: 'read-only: text-utils.word_count',
  state_changing: 'state-changing: notes.add_note, then notes.delete_note of that note (each a call)',
};

/** A caller for client `c`: each invocation is one tool.invoke. */
function caller(kind: CallKind, c: TyrumClient): () => Promise<void> {
  if (kind === 'read_only') return () => wordCount(c);
  let note: string | null = null;
  return async () => {
    const r = note === null ? await c.request<JsonObject>('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'bench', body: 'a note' }, wait_ms: WAIT_MS }) : await c.request<JsonObject>('tool.invoke', { tool_id: 'notes.delete_note', args: { id: note }, wait_ms: WAIT_MS });
    if (r.state !== 'succeeded') throw new Error(`notes call ${String(r.state)}: ${JSON.stringify(r.error ?? null)}`);
    note = note === null ? String((r.output as { id?: unknown }).id) : null;
  };
}

export async function fsyncBench(): Promise<void> {
  const t0 = performance.now();
  const seconds = envNumber('BENCH_FSYNC_SECONDS', 2, 0.1);
  const levels = envList('BENCH_FSYNC_CONCURRENCY', '1,16,64');
  /** After a cell's last answer, strace stays attached this long: commits that follow answers, and the audit checkpoint's interval (1 s). */
  const settleMs = 1100;
  console.log(`\n## Fsyncs per call: strace on a \`tyrum start\` process`);
  const keys = (kind: CallKind, level: number) => `fsync.${kind === 'read_only' ? 'ro' : 'sc'}.${level}` as TargetKey;
  const bin = straceBin();
  if (!bin) {
    console.log(`\nskipped: strace not found (apt-get install strace)`);
    for (const k of ['ro', 'sc']) for (const l of [1, 16, 64]) skipTarget(`fsync.${k}.${l}` as TargetKey, 'strace not found');
    return;
  }
  const h = await prepareHome({ textUtils: true, notes: true });
  let gw: GatewayProcess | null = null;
  const clients: TyrumClient[] = [];
  try {
    const f = fdatasyncReference(h.home);
    const disk = `this disk (${h.home}, the gateway's home): 4 KiB write + fdatasync p50 ${fmtMs(f.p50)}, p99 ${fmtMs(f.p99)} (${f.n} in a row); load average ${loadAverage()}`;
    gw = await GatewayProcess.start(h.home);
    const g = gw;
    const rows: string[][] = [];
    let skipped = '';
    for (const kind of ['read_only', 'state_changing'] as const) {
      for (const level of levels) {
        while (clients.length < level) clients.push(await connect(g.url, h.writer));
        const callers = clients.slice(0, level).map((c) => caller(kind, c));
        await timedLoop(callers, 300); // warm: modules loaded, devices recorded, notes' storage opened
        await sleep(settleMs); // what the warm-up left to commit is not this cell's
        let trace: Strace;
        try {
          trace = await Strace.attach(g.pid, join(tmpdir(), `tyrum-bench-strace-${process.pid}-${kind}-${level}.txt`));
        } catch (e) {
          if (!(e instanceof SkipError)) throw e;
          skipped = e.message;
          break;
        }
        const tc = performance.now();
        const calls = await timedLoop(callers, seconds * 1000);
        const callMs = performance.now() - tc;
        await sleep(settleMs);
        const n = await trace.stop(h.home);
        const total = n.fsync + n.fdatasync;
        const per = total / calls;
        const ceiling = kind === 'read_only' ? (level === 1 ? 1 : 0.2) : 2;
        if ([1, 16, 64].includes(level)) {
          reportTarget(keys(kind, level), { figure: per.toFixed(2), baseline: `direct MCP stdio: 0; disk fdatasync p50 ${fmtMs(f.p50)}`, ratio: '', met: per <= ceiling, note: `${total} syscalls / ${calls} calls` });
        }
        rows.push([
          String(level),
          CALL_WHAT[kind],
          calls.toLocaleString('en-US'),
          fmtMs(callMs),
          String(n.fdatasync),
          String(n.fsync),
          [...n.byFile].map(([f, k]) => `${f} ${k}`).join(', ') || 'none',
          `**${per.toFixed(2)}**`,
          `≤ ${ceiling}: ${per <= ceiling ? 'met' : '**not met**'}`,
        ]);
      }
      if (skipped) break;
    }
    if (skipped) {
      console.log(`\nskipped: ${skipped}`);
      for (const k of ['ro', 'sc']) for (const l of [1, 16, 64]) skipTarget(`fsync.${k}.${l}` as TargetKey, skipped);
    }
    if (rows.length > 0) {
      console.log(`\n${disk}.`);
      console.log(`strace -f -y -e trace=fsync,fdatasync attached to the gateway process (pid ${g.pid}, every thread) for each cell only: ${seconds} s of calls in a closed loop`);
      console.log(`(one TyrumClient connection per client, operator.write token, in the bench process) and ${settleMs} ms after the last answer.\n`);
      table(['clients', 'call', 'calls in the window', 'calls took (slowed by strace)', 'fdatasync', 'fsync', 'by file', '**fsyncs per call**', 'target'], rows);
      console.log(`\n- Counted: every fsync and fdatasync syscall of the gateway process, any thread, during the window (SQLite's WAL`);
      console.log(`  commits and WAL checkpoints, the signed audit checkpoint's file and directory, anything else), divided by the calls`);
      console.log(`  completed in it. Direct MCP stdio makes none. strace stops the process at every syscall, so calls are slower here`);
      console.log(`  than without it: latency and calls/s are measured in other sections, without strace. Under strace fewer calls`);
      console.log(`  share a commit than they would at full speed, so these counts lean high at 16+ clients.`);
    }
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await gw?.stop();
    h.cleanup();
  }
  console.log(`\nfsyncs section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadAverage()}`);
}

// --- gateway start → first call ---

export async function startBench(): Promise<void> {
  const t0 = performance.now();
  const runs = Math.floor(envNumber('BENCH_START_RUNS', 5, 1));
  const plugins = 10;
  console.log(`\n## Gateway start → first call: \`tyrum start\` with ${plugins} plugins installed and enabled`);
  const h = await prepareHome({ copies: plugins });
  try {
    const disk = diskLine(h.home);
    const x = { base: [] as number[], listen: [] as number[], handshake: [] as number[], first: [] as number[], total: [] as number[] };
    for (let i = 0; i < runs; i++) {
      x.base.push(await nodeBaseline());
      const s = performance.now();
      const gw = await GatewayProcess.start(h.home);
      try {
        const c = await connect(gw.url, h.writer);
        const hs = performance.now();
        await wordCount(c, `${h.copies[i % plugins]}.word_count`);
        const done = performance.now();
        await c.close();
        x.listen.push(gw.listenMs);
        x.handshake.push(hs - s - gw.listenMs);
        x.first.push(done - hs);
        x.total.push(done - s);
      } finally {
        await gw.stop();
      }
    }
    const row = (name: string, xs: number[]) => [name, fmtMs(stats(xs).p50), fmtMs(Math.min(...xs)), fmtMs(Math.max(...xs))];
    console.log(`\n${disk}.`);
    console.log(`${runs} starts of \`node bin/tyrum.js start --home <home> --port 0 --log-level silent\` on one home (${plugins} copies of text-utils, one built module, distinct ids; every start sees the same home), each stopped with SIGTERM before the next; the first call goes to a different plugin each time.\n`);
    table(
      ['measure', 'median', 'min', 'max'],
      [
        row('baseline: spawn `node -e \'\'` → exit', x.base),
        row('spawn → "listening on" printed', x.listen),
        row('… → WebSocket handshake done (new device)', x.handshake),
        row('… → first tool.invoke answered (loads the plugin into the sandbox)', x.first),
        row('**spawn → first call answered**', x.total),
      ],
    );
    const total = stats(x.total).p50;
    const base = stats(x.base).p50;
    reportTarget('start.first', { figure: fmtMs(total), baseline: `spawn node -e '': ${fmtMs(base)}`, ratio: times(total, base), met: total <= 1000, note: `median of ${runs}` });
  } finally {
    h.cleanup();
  }
  console.log(`\nstart section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadAverage()}`);
}

// --- CLI commands ---

export async function cliBench(): Promise<void> {
  const t0 = performance.now();
  const runs = Math.floor(envNumber('BENCH_CLI_RUNS', 5, 1));
  console.log(`\n## CLI command time: \`node bin/tyrum.js ...\` against a running gateway`);
  const h = await prepareHome({ copies: 10 });
  let gw: GatewayProcess | null = null;
  try {
    const disk = diskLine(h.home);
    gw = await GatewayProcess.start(h.home);
    const env = { ...process.env, TYRUM_TOKEN: h.operator, TYRUM_URL: gw.url };
    const commands: Array<{ key: TargetKey; argv: string[] }> = [
      { key: 'cli.ping', argv: ['ping', '--home', h.home] },
      { key: 'cli.tool_list', argv: ['tool', 'list', '--home', h.home] },
      { key: 'cli.approvals_list', argv: ['approvals', 'list', '--home', h.home] },
    ];
    const base: number[] = [];
    const lat = commands.map(() => [] as number[]);
    // Interleaved, so every command and the baseline see the same conditions.
    for (let i = 0; i < runs; i++) {
      base.push(await nodeBaseline());
      for (const [k, c] of commands.entries()) lat[k]!.push(await timedSpawn([process.execPath, TYRUM_BIN, ...c.argv], env));
    }
    const b = stats(base);
    console.log(`\n${disk}.`);
    console.log(`The gateway: \`tyrum start\` (a process of its own) on a home with 10 plugins; each command ${runs} times, spawn → exit, interleaved with the baseline; TYRUM_URL and TYRUM_TOKEN (operator.read + operator.write) in the environment.\n`);
    table(
      ['command', 'p50', 'min', 'max', 'vs `node -e \'\'`'],
      [
        ['baseline: `node -e \'\'`', fmtMs(b.p50), fmtMs(Math.min(...base)), fmtMs(Math.max(...base)), '1×'],
        ...commands.map((c, k) => {
          const s: Stats = stats(lat[k]!);
          reportTarget(c.key, { figure: fmtMs(s.p50), baseline: `node -e '': ${fmtMs(b.p50)}`, ratio: times(s.p50, b.p50), met: s.p50 <= 300, note: `p50 of ${runs}` });
          return [`\`tyrum ${c.argv.filter((a) => a !== h.home && a !== '--home').join(' ')}\``, `**${fmtMs(s.p50)}**`, fmtMs(Math.min(...lat[k]!)), fmtMs(Math.max(...lat[k]!)), times(s.p50, b.p50)];
        }),
      ],
    );
    console.log(`\n- ping and tool list connect (handshake with the home's CLI device key) and ask the gateway; approvals list reads the home.`);
  } finally {
    await gw?.stop();
    h.cleanup();
  }
  console.log(`\ncli section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadAverage()}`);
}

// --- RSS per idle connection ---

/** The soft open-file limit of this process (what `ulimit -n` says in the shell that started it). */
function openFileLimit(): number {
  const m = /^Max open files\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** Opens `n` connections with `inflight` at a time; returns the ones opened, in order. */
async function openMany<T>(n: number, inflight: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inflight, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await open(i);
      }
    }),
  );
  return out;
}

const BARE_SERVER = `
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, backlog: 4096 });
wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d.toString())));
wss.on('listening', () => console.log(JSON.stringify({ port: wss.address().port })));
process.on('SIGTERM', () => process.exit(0));
`;

interface Held {
  n: number;
  before: number;
  after: number;
  connectMs: number;
}

/** A bare ws server in a process of its own, holding `n` plain connections from this process. */
async function bareServer(n: number): Promise<Held> {
  const child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, '-e', BARE_SERVER], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const sockets: WebSocket[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /"port":(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`bare ws server exited (${code})`)));
    });
    const warm = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise<void>((r, j) => warm.once('open', () => r()).once('error', j));
    sockets.push(warm);
    await sleep(1000);
    const before = procRss(child.pid!);
    const t0 = performance.now();
    sockets.push(
      ...(await openMany(n - 1, 64, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}`);
        await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
        return ws;
      })),
    );
    const connectMs = performance.now() - t0;
    await sleep(2000);
    return { n, before, after: procRss(child.pid!), connectMs };
  } finally {
    for (const s of sockets) s.terminate();
    child.kill('SIGTERM');
    await exited(child, 10_000);
  }
}

export async function connectionsBench(): Promise<void> {
  const t0 = performance.now();
  const wanted = Math.floor(envNumber('BENCH_CONNECTIONS', 10_000, 2));
  console.log(`\n## Memory per idle authenticated WebSocket connection`);
  // Clients (this process) and the server (its own process) each hold one descriptor per connection.
  const headroom = 1000;
  const limit = openFileLimit();
  const n = Math.max(2, Math.min(wanted, limit - headroom));
  let limitNote = `open-file limit of this process (ulimit -n) ${limit === Infinity ? 'unlimited' : limit.toLocaleString('en-US')}: enough for ${wanted.toLocaleString('en-US')} connections (the clients here and the server in its own process each need one descriptor per connection, plus ${headroom} spare)`;
  if (n < wanted) {
    limitNote = `**open-file limit (ulimit -n) ${limit.toLocaleString('en-US')} allows only ${n.toLocaleString('en-US')} of the ${wanted.toLocaleString('en-US')} connections asked for; measured at ${n.toLocaleString('en-US')}.** To measure at ${wanted.toLocaleString('en-US')}, raise it in the shell that runs the bench: \`ulimit -n ${wanted + headroom + 5000}\` (above the hard limit \`ulimit -Hn\` needs root or /etc/security/limits.conf), then \`npm run bench -- connections\``;
  }
  const bare = await bareServer(n);
  const h = await prepareHome({ limits: { max_connections: n + 100 } });
  let gw: GatewayProcess | null = null;
  const clients: TyrumClient[] = [];
  try {
    const disk = diskLine(h.home);
    gw = await GatewayProcess.start(h.home);
    const g = gw;
    // One connection first: what the first handshake initialises lazily is not per-connection memory.
    const first = await connect(g.url, h.writer);
    clients.push(first);
    await first.request('ping', {});
    await sleep(1000);
    const before = g.rss();
    const keys = Array.from({ length: n - 1 }, () => generateKeyPairSync('ed25519').privateKey);
    const tc = performance.now();
    clients.push(
      ...(await openMany(n - 1, 64, async (i) => {
        const c = new TyrumClient({ url: g.url, token: h.writer, deviceKey: keys[i]!, reconnect: false, heartbeatMs: 0 });
        await c.connect();
        return c;
      })),
    );
    const connectMs = performance.now() - tc;
    await sleep(2000);
    const after = g.rss();
    await first.request('ping', {}); // still answering with all of them open
    const ty: Held = { n, before, after, connectMs };
    const per = (x: Held) => (x.after - x.before) / (x.n - 1);
    console.log(`\n${disk}.`);
    console.log(`${limitNote}.`);
    console.log(`Each server in a process of its own; RSS from /proc/<pid>/status after one warm connection and again 2 s after the other ${(n - 1).toLocaleString('en-US')} opened (64 handshakes in flight), no forced GC.\n`);
    table(
      ['server', 'connections', 'RSS before', 'RSS after', '**RSS per connection**', 'connections opened per second'],
      [
        ['bare `ws` server (baseline): plain WebSocket connections', n.toLocaleString('en-US'), mib(bare.before), mib(bare.after), `**${(per(bare) / 1024).toFixed(1)} KiB**`, fmtRate(((n - 1) / bare.connectMs) * 1000)],
        ['`tyrum start`: TyrumClient handshakes (token, Ed25519 device proof; each its own device), idle', n.toLocaleString('en-US'), mib(ty.before), mib(ty.after), `**${(per(ty) / 1024).toFixed(1)} KiB**`, fmtRate(((n - 1) / ty.connectMs) * 1000)],
      ],
    );
    reportTarget('conn.rss', {
      measure: n === 10_000 ? undefined : `RSS per idle authenticated WebSocket connection, ${n.toLocaleString('en-US')} connections (open-file limit)`,
      figure: `${(per(ty) / 1024).toFixed(1)} KiB`,
      baseline: `bare ws: ${(per(bare) / 1024).toFixed(1)} KiB`,
      ratio: times(per(ty), per(bare)),
      met: null,
      note: `${mib(ty.after - ty.before)} for ${(n - 1).toLocaleString('en-US')}`,
    });
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await gw?.stop();
    h.cleanup();
  }
  console.log(`\nconnections section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadAverage()}`);
}
