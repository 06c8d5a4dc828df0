/**
 * The MCP part of `npm run bench` (`npm run bench -- mcp` runs only this; so does
 * `node --import tsx bench/mcp.ts`). One MCP tool, side by side in one run, three ways:
 *
 * 1. direct: the official SDK `Client` + `StdioClientTransport` spawning
 *    @modelcontextprotocol/server-everything (`stdio`) and calling its `echo` tool: the baseline.
 * 2. tyrum-ws: the same server declared in a gateway (`McpRegistry.add`), approved with `echo`
 *    read_only so the default policy allows it without a human, called as `mcp.everything.echo`
 *    with `tool.invoke` over WebSocket (TyrumClient, one connection per caller).
 * 3. tyrum-mcp: the same tool through the gateway's own MCP endpoint, the official SDK `Client` +
 *    `StreamableHTTPClientTransport` against `POST /mcp` (one client per caller).
 *
 * Every Tyrum call is a durable run: contract check, policy decision, run/step/attempt rows
 * committed under synchronous=FULL, audit entries, then the call to the server over the gateway's
 * own stdio connection. For each path: sequential latency p50/p99 (after a warm-up) and calls/s in
 * a closed loop at each concurrency level, with ratios against direct. Every client runs in a
 * child process (this file in client mode), so none shares the gateway's event loop; the gateway
 * runs in this process.
 *
 * The figures of issue 11's P1 (WebSocket, echo and the WASM tool), P2 (/mcp) and calls/s
 * targets go to the summary table (bench/util.ts reportTarget).
 *
 * Scale with environment variables (defaults: about 70 s):
 *   BENCH_MCP_CALLS=2000           sequential calls per path, capped by BENCH_MCP_SEQ_CAP_S=3
 *   BENCH_MCP_TPUT_SECONDS=2.5     measured seconds per calls/s cell (plus a 0.5 s warm-up)
 *   BENCH_MCP_CONCURRENCY=1,16,64  concurrency levels
 *   BENCH_MCP_PATHS=direct,ws,wasm,mcp  run only some paths (wasm: tool.invoke over WebSocket of
 *                                  text-utils.word_count, a WASM plugin tool, against the same direct baseline)
 *   BENCH_MCP_LAYERS=1             0 drops the in-process breakdown (McpHost.invoke, engine run)
 * Figures, not assertions: only a wrong answer or a failed call fails the run.
 */
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startGateway, type RunningGateway } from '../core/runtime.js';
import { assertPragmas } from '../core/store/index.js';
import { TyrumClient, type JsonObject } from '../sdk/index.js';
import { closedLoop, reportTarget, sequential, stats, type LoopResult, type Stats, type TargetKey } from './util.js';

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

type PathName = 'direct' | 'ws' | 'wasm' | 'mcp';
const PATH_LABEL: Record<PathName, string> = { direct: 'direct', ws: 'tyrum-ws', wasm: 'tyrum-ws-wasm', mcp: 'tyrum-mcp' };
const PATH_WHAT: Record<PathName, string> = {
  direct: 'SDK Client + StdioClientTransport → server-everything (stdio)',
  ws: 'TyrumClient tool.invoke over WebSocket → gateway → same server (stdio)',
  wasm: 'TyrumClient tool.invoke over WebSocket → gateway → text-utils.word_count (a WASM plugin tool in the sandbox)',
  mcp: 'SDK Client + StreamableHTTPClientTransport → gateway POST /mcp → same server (stdio)',
};

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const SERVER_JS = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const SERVER = 'everything';
const TOOL = 'echo';
const TOOL_ID = `mcp.${SERVER}.${TOOL}`;
const MESSAGE = 'hello from the Tyrum bench';
const EXPECTED_TEXT = `Echo: ${MESSAGE}`;
const ACTOR = { kind: 'bench' };
const WASM_DIR = join(ROOT, 'plugins/text-utils/build');
const WASM_TOOL_ID = 'text-utils.word_count';
const WASM_ARGS = { text: 'The quick brown fox jumps over the lazy dog. Grüße 😀 你好世界\nA second line.' };
const WASM_WORDS = 18;
/** How long a Tyrum call may wait for its run (WS `wait_ms`, /mcp `_meta["tyrum/wait_ms"]`). */
const WAIT_MS = 30_000;
/** A client process that has not answered by then is stopped. */
const CHILD_TIMEOUT_MS = 120_000;

// --- client mode (a child process: this file with BENCH_MCP_CLIENT_JOB set) ---

interface ClientJob {
  path: PathName;
  /** WebSocket URL (ws) or /mcp URL (mcp). */
  url: string;
  serverJs: string;
  n: number;
  capMs: number;
  levels: number[];
  seconds: number;
}

interface ClientResult {
  /** First client: spawn + initialize (direct), handshake (ws), initialize (mcp), ms. */
  connectMs: number;
  seq: Stats;
  loops: Array<{ level: number; result: LoopResult }>;
  /** Every call made, warm-ups included (the gateway should record as many durable runs). */
  calls: number;
  /** How the echo came back (see echoText). */
  shape: 'passthrough' | 'wrapped' | null;
}

/**
 * Checks an echo result; returns how it came back: `passthrough` (the server's own content) or
 * `wrapped` (the server's result as Tyrum output: content[0].text its JSON, structuredContent it).
 */
function echoText(result: unknown, where: string): 'passthrough' | 'wrapped' {
  const r = result as { content?: Array<{ type?: string; text?: string }>; structuredContent?: { content?: Array<{ text?: string }> }; isError?: boolean } | null;
  if (r?.isError !== true) {
    if (r?.content?.[0]?.text === EXPECTED_TEXT) return 'passthrough';
    if (r?.structuredContent?.content?.[0]?.text === EXPECTED_TEXT) return 'wrapped';
  }
  throw new Error(`${where}: unexpected result ${JSON.stringify(result).slice(0, 500)}`);
}

async function clientMain(job: ClientJob, token: string): Promise<ClientResult> {
  const closers: Array<() => Promise<unknown>> = [];
  let calls = 0;
  let shape: ClientResult['shape'] = null;
  try {
    // One call function per caller; `callers(k)` returns k of them (created on first need).
    let callers: (k: number) => Promise<Array<() => Promise<void>>>;
    let connectMs = NaN;
    if (job.path === 'direct') {
      // One server process and one connection, as the gateway has: concurrent callers share it.
      const t0 = performance.now();
      const client = new Client({ name: 'tyrum-bench-direct', version: '1.0.0' });
      await client.connect(new StdioClientTransport({ command: process.execPath, args: [job.serverJs, 'stdio'], stderr: 'ignore' }));
      connectMs = performance.now() - t0;
      closers.push(() => client.close());
      const call = async () => {
        shape = echoText(await client.callTool({ name: TOOL, arguments: { message: MESSAGE } }), 'direct callTool');
        calls++;
      };
      callers = async (k) => Array.from({ length: k }, () => call);
    } else if (job.path === 'ws' || job.path === 'wasm') {
      const pool: Array<() => Promise<void>> = [];
      callers = async (k) => {
        while (pool.length < k) {
          const c = new TyrumClient({ url: job.url, token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
          const t0 = performance.now();
          await c.connect();
          if (pool.length === 0) connectMs = performance.now() - t0;
          closers.push(() => c.close());
          pool.push(async () => {
            const wasm = job.path === 'wasm';
            const r = await c.request<JsonObject>('tool.invoke', { tool_id: wasm ? WASM_TOOL_ID : TOOL_ID, args: wasm ? WASM_ARGS : { message: MESSAGE }, wait_ms: WAIT_MS });
            if (r.state !== 'succeeded') throw new Error(`tool.invoke ended ${String(r.state)}: ${JSON.stringify(r.error ?? null)}`);
            if (!wasm) shape = echoText(r.output, 'tool.invoke over WebSocket');
            else if ((r.output as { words?: unknown } | null)?.words !== WASM_WORDS) throw new Error(`${WASM_TOOL_ID}: unexpected output ${JSON.stringify(r.output)}`);
            calls++;
          });
        }
        return pool.slice(0, k);
      };
    } else {
      const pool: Array<() => Promise<void>> = [];
      callers = async (k) => {
        while (pool.length < k) {
          const client = new Client({ name: 'tyrum-bench-mcp', version: '1.0.0' });
          const t0 = performance.now();
          await client.connect(new StreamableHTTPClientTransport(new URL(job.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
          if (pool.length === 0) connectMs = performance.now() - t0;
          closers.push(() => client.close());
          pool.push(async () => {
            shape = echoText(await client.callTool({ name: TOOL_ID, arguments: { message: MESSAGE }, _meta: { 'tyrum/wait_ms': WAIT_MS } }), 'tools/call on /mcp');
            calls++;
          });
        }
        return pool.slice(0, k);
      };
    }
    const [first] = await callers(1);
    const seq = await sequential(job.n, first!, job.capMs);
    const loops: ClientResult['loops'] = [];
    for (const level of job.levels) loops.push({ level, result: await closedLoop(await callers(level), job.seconds) });
    return { connectMs, seq, loops, calls, shape };
  } finally {
    await Promise.all(closers.map((c) => c().catch(() => undefined)));
  }
}

/** Runs this file in client mode in a child process and returns what it measured. */
async function childClient(job: ClientJob, token: string): Promise<ClientResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF], {
    cwd: ROOT,
    env: { ...process.env, BENCH_MCP_CLIENT_JOB: JSON.stringify(job), BENCH_MCP_CLIENT_TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((res, rej) => {
    child.once('error', rej);
    child.once('exit', (c) => res(c));
  }).finally(() => clearTimeout(timer));
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`bench MCP client (${job.path}) failed (exit ${code}): ${out.slice(0, 500)}`);
  return JSON.parse(line) as ClientResult;
}

// --- formatting ---

const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'n/a' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 1000 ? `${ms.toFixed(2)} ms` : `${(ms / 1000).toFixed(2)} s`);
const fmtRate = (r: number) => (Number.isFinite(r) ? `${Math.round(r).toLocaleString('en-US')}/s` : 'n/a');
/** How many times `a` is `b` (latency: bigger is slower). */
const times = (a: number, b: number) => (Number.isFinite(a / b) && b > 0 ? `${(a / b).toFixed(1)}×` : 'n/a');
/** a/b for rates, "1/x" below 1 ("1/6.2" reads better than "0.2×"). */
const rateRatio = (a: number, b: number) => (!Number.isFinite(a / b) || a <= 0 || b <= 0 ? 'n/a' : a >= b ? `${(a / b).toFixed(1)}×` : `1/${(b / a).toFixed(b / a < 10 ? 1 : 0)}`);

function table(head: string[], rows: string[][]): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

/** 4 KiB write + fsync, `n` in a row, in `dir`: what one synchronous=FULL commit costs at least here. */
function fsyncReference(dir: string, n = 30): Stats {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(4096, 1);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      writeSync(fd, buf, 0, buf.length, 0);
      fsyncSync(fd);
      out.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return stats(out);
}

// --- the gateway side ---

/** Is POST /mcp served? (404 = the endpoint is not there.) */
async function mcpEndpointUp(port: number, token: string): Promise<{ up: boolean; why: string }> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench-probe', version: '1' } } }),
    });
    await r.arrayBuffer();
    return r.status === 404 ? { up: false, why: 'POST /mcp answered 404 (the endpoint is not in this gateway yet)' } : { up: r.ok, why: `POST /mcp answered ${r.status}` };
  } catch (e) {
    return { up: false, why: `POST /mcp failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** Declares, starts and approves server-everything in the gateway; `echo` read_only. */
async function approveEverything(gw: RunningGateway): Promise<void> {
  await gw.mcp.add({ name: SERVER, spec: { transport: 'stdio', command: process.execPath, args: [SERVER_JS, 'stdio'] }, description: 'bench: @modelcontextprotocol/server-everything' }, ACTOR);
  await gw.mcpHost.reconcile(); // an in-process add does not notify the running host; the CLI's does
  await gw.mcpHost.settled(30_000);
  const st = gw.mcpHost.status().find((s) => s.server === SERVER);
  if (st?.state !== 'ready') throw new Error(`MCP server ${SERVER} did not become ready: ${JSON.stringify(st ?? null)}`);
  const r = await gw.mcp.approve(SERVER, { tools: [TOOL], readOnly: [TOOL] }, ACTOR);
  if (r.approved.length !== 1 || r.approved[0]!.effect !== 'read_only') throw new Error(`approving ${TOOL_ID} failed: ${JSON.stringify(r)}`);
  gw.mcpHost.invalidate();
  const d = gw.tools.describe(TOOL_ID);
  if (d?.entry.effect !== 'read_only') throw new Error(`${TOOL_ID} is not served as a read_only tool after approval`);
}

interface PathResult extends ClientResult {
  path: PathName;
  /** Durable runs the gateway finished during this path (Tyrum paths): succeeded / other. */
  runsOk: number;
  runsBad: number;
}

/** Issue 11's targets P1, P2 and calls/s, against direct MCP stdio measured in the same run. */
function reportMcpTargets(direct: PathResult, results: PathResult[], levels: number[]): void {
  const p: Record<'ws' | 'wasm' | 'mcp', { seq: TargetKey; ceiling: number; tput64: TargetKey; rise: TargetKey }> = {
    ws: { seq: 'p1.echo', ceiling: 2, tput64: 'tput.echo.64', rise: 'tput.echo.rise' },
    wasm: { seq: 'p1.wasm', ceiling: 2, tput64: 'tput.wasm.64', rise: 'tput.wasm.rise' },
    mcp: { seq: 'p2.echo', ceiling: 2.5, tput64: 'tput.mcp.64', rise: 'tput.mcp.rise' },
  };
  const rate = (r: PathResult, l: number) => r.loops.find((x) => x.level === l)?.result.rate ?? NaN;
  for (const r of results) {
    if (r.path === 'direct') continue;
    const k = p[r.path];
    const x = r.seq.p50 / direct.seq.p50;
    reportTarget(k.seq, { figure: fmtMs(r.seq.p50), baseline: `direct MCP stdio: ${fmtMs(direct.seq.p50)}`, ratio: times(r.seq.p50, direct.seq.p50), met: x <= k.ceiling });
    if (levels.includes(64)) {
      const t = rate(r, 64) / rate(direct, 64);
      reportTarget(k.tput64, { figure: fmtRate(rate(r, 64)), baseline: `direct MCP stdio: ${fmtRate(rate(direct, 64))}`, ratio: rateRatio(rate(r, 64), rate(direct, 64)), met: t >= 0.5 });
    }
    if ([1, 16, 64].every((l) => levels.includes(l))) {
      const [a, b, c] = [1, 16, 64].map((l) => rate(r, l)) as [number, number, number];
      reportTarget(k.rise, { figure: [a, b, c].map(fmtRate).join(' → '), baseline: `direct: ${[1, 16, 64].map((l) => fmtRate(rate(direct, l))).join(' → ')}`, ratio: `${rateRatio(b, a)}, ${rateRatio(c, b)} per step`, met: b > a && c > b });
    }
  }
}

/** The MCP bench section: prints markdown. */
export async function mcpBench(): Promise<void> {
  const t0 = performance.now();
  const N = Math.floor(envNumber('BENCH_MCP_CALLS', 2000, 1));
  const capMs = envNumber('BENCH_MCP_SEQ_CAP_S', 3, 0.1) * 1000;
  const seconds = envNumber('BENCH_MCP_TPUT_SECONDS', 2.5, 0.1);
  const levels = envList('BENCH_MCP_CONCURRENCY', '1,16,64');
  const wanted = new Set((process.env.BENCH_MCP_PATHS || 'direct,ws,wasm,mcp').split(',').map((s) => s.trim()));
  for (const w of wanted) if (!(w in PATH_LABEL)) throw new Error(`BENCH_MCP_PATHS: unknown path "${w}" (direct, ws, wasm, mcp)`);
  console.log(`\n## MCP: one tool called directly, through Tyrum over WebSocket, and through Tyrum's /mcp`);
  if (!existsSync(SERVER_JS)) {
    console.log(`\nskipped: ${SERVER_JS} is missing (npm install brings @modelcontextprotocol/server-everything)`);
    return;
  }
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-mcp-'));
  let gw: RunningGateway | null = null;
  const offs: Array<() => void> = [];
  try {
    const cpu = cpus();
    const f = fsyncReference(home);
    const machine =
      `Node ${process.version}, ${cpu.length} CPU${cpu.length === 1 ? '' : 's'} (${cpu[0]?.model.trim() ?? 'unknown'}), ${process.platform}/${process.arch}, kernel ${release()}; ` +
      `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; this disk: 4 KiB write + fsync p50 ${fmtMs(f.p50)}, p99 ${fmtMs(f.p99)} (${f.n} in a row).`;

    gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
    const g = gw;
    const p = g.store.pragmas();
    assertPragmas(p); // WAL, every commit synced before it is reported
    await approveEverything(g);
    if (wanted.has('wasm')) {
      const inst = await g.plugins.install(WASM_DIR, ACTOR);
      await g.plugins.grant(inst.plugin.id, { allRequested: true }, ACTOR);
      const info = await g.plugins.enable(inst.plugin.id, ACTOR);
      if (info.state !== 'enabled') throw new Error(`${inst.plugin.id} did not enable: ${info.blockers.join('; ')}`);
    }
    const admin = g.bootstrapToken;
    if (!admin) throw new Error('the fresh gateway home has no bootstrap token');
    // What a tool-calling WS client holds: operator.write (tool.invoke) and no operator.read, so it
    // is not pushed every run's events (the durable section measures that fan-out).
    const writer = await g.tokens.create({ scopes: ['operator.write'], roles: ['client'], label: 'bench mcp', createdBy: 'bench' });
    const endpoint = wanted.has('mcp') ? await mcpEndpointUp(g.port, admin) : { up: false, why: 'not selected (BENCH_MCP_PATHS)' };

    // Gateway-side count of finished durable runs, and one of them to show what a call recorded.
    let runsOk = 0;
    let runsBad = 0;
    const last: { run: string | null } = { run: null };
    offs.push(
      g.engine.onEvent((e) => {
        if (e.type !== 'run.updated') return;
        const state = e.payload.state;
        if (state === 'succeeded') {
          runsOk++;
          if (typeof e.payload.run_id === 'string') last.run = e.payload.run_id;
        } else if (state === 'failed' || state === 'cancelled' || state === 'paused') runsBad++;
      }),
    );

    const base = { serverJs: SERVER_JS, n: N, capMs, levels, seconds };
    const results: PathResult[] = [];
    const skipped: string[] = [];
    const run = async (path: PathName, url: string, token: string) => {
      runsOk = 0;
      runsBad = 0;
      const r = await childClient({ ...base, path, url }, token);
      if (path !== 'direct' && runsBad > 0) throw new Error(`${PATH_LABEL[path]}: ${runsBad} durable runs did not succeed`);
      results.push({ ...r, path, runsOk, runsBad });
    };
    if (wanted.has('direct')) await run('direct', '', '');
    if (wanted.has('ws')) await run('ws', g.url, writer.token);
    if (wanted.has('wasm')) await run('wasm', g.url, writer.token);
    if (endpoint.up) await run('mcp', `http://127.0.0.1:${g.port}/mcp`, admin);
    else if (wanted.has('mcp')) skipped.push(`tyrum-mcp skipped: ${endpoint.why}`);
    const sample = last.run ? g.engine.get(last.run) : null;

    // Where the time goes: the layers behind tool.invoke, called in this (the gateway's) process.
    const layers: Array<{ name: string; seq: Stats }> = [];
    if (process.env.BENCH_MCP_LAYERS !== '0') {
      const args = { message: MESSAGE };
      const hostCall = async () => {
        echoText((await g.mcpHost.invoke(TOOL_ID, args, ACTOR)).output, 'McpHost.invoke');
      };
      // Mirrors the tool.invoke handler (core/protocol/handlers.ts); an MCP tool declares no postcondition.
      const engineCall = async () => {
        g.tools.checkCall(TOOL_ID, args);
        const { run } = await g.engine.submit({ kind: 'tool', steps: [{ tool_id: TOOL_ID, args }], created_by: 'bench', actor: ACTOR });
        const d = await g.engine.wait(run.id, WAIT_MS);
        if (d.run.state !== 'succeeded') throw new Error(`engine run ${run.id} ended ${d.run.state}: ${JSON.stringify(d.run.error ?? d.steps[0]?.error ?? null)}`);
        echoText(d.steps[0]?.result, 'engine run');
      };
      layers.push({ name: 'McpHost.invoke: pinned-schema check, the call over the gateway\'s stdio connection, result checks, redaction, one audit entry (not awaited)', seq: await sequential(N, hostCall, capMs) });
      layers.push({ name: 'engine run (submit + wait), what tool.invoke does behind the protocol: the durable run around McpHost.invoke', seq: await sequential(N, engineCall, capMs) });
      await g.audit.flush();
    }

    // --- print ---
    console.log(`\n${machine}`);
    console.log(`Tool: server-everything \`${TOOL}\` ({message}, ${JSON.stringify({ message: MESSAGE }).length}-byte args); in Tyrum \`${TOOL_ID}\`, approved read_only so the default policy allows it without a human.`);
    console.log(`Gateway store: journal_mode=${p.journal_mode}, synchronous=${p.synchronous} (FULL). Sequential: up to ${N} calls after a warm-up, capped at ${capMs / 1000} s; calls/s: closed loop, ${seconds} s per cell after a 0.5 s warm-up.\n`);
    const find = (path: PathName) => results.find((r) => r.path === path);
    const loopAt = (r: PathResult | undefined, level: number) => r?.loops.find((l) => l.level === level)?.result;
    table(
      ['path', 'what', 'connect (first client)', 'p50', 'p99', 'calls measured', ...levels.map((l) => `calls/s @${l} (p50 / p99 under load)`)],
      results.map((r) => [
        `**${PATH_LABEL[r.path]}**`,
        PATH_WHAT[r.path],
        fmtMs(r.connectMs),
        `**${fmtMs(r.seq.p50)}**`,
        fmtMs(r.seq.p99),
        String(r.seq.n),
        ...levels.map((l) => {
          const x = loopAt(r, l);
          return x ? `**${fmtRate(x.rate)}** (${fmtMs(x.lat.p50)} / ${fmtMs(x.lat.p99)})` : 'n/a';
        }),
      ]),
    );
    const direct = find('direct');
    if (direct) {
      console.log(`\n#### Ratios vs direct\n`);
      for (const r of results) {
        if (r.path === 'direct') continue;
        const name = PATH_LABEL[r.path];
        const parts = [`${name} p50 = ${times(r.seq.p50, direct.seq.p50)} direct`, `p99 = ${times(r.seq.p99, direct.seq.p99)}`];
        for (const l of levels) parts.push(`calls/s @${l} = ${rateRatio(loopAt(r, l)?.rate ?? NaN, loopAt(direct, l)?.rate ?? NaN)} direct`);
        console.log(`- ${parts.join('; ')}`);
      }
      const ws = find('ws');
      const mcp = find('mcp');
      if (ws && mcp) {
        const parts = [`tyrum-mcp p50 = ${times(mcp.seq.p50, ws.seq.p50)} tyrum-ws`, `p99 = ${times(mcp.seq.p99, ws.seq.p99)}`];
        for (const l of levels) parts.push(`calls/s @${l} = ${rateRatio(loopAt(mcp, l)?.rate ?? NaN, loopAt(ws, l)?.rate ?? NaN)} tyrum-ws`);
        console.log(`- ${parts.join('; ')}`);
      }
    }
    if (direct) reportMcpTargets(direct, results, levels);
    for (const s of skipped) console.log(`\n**${s}**`);
    if (layers.length > 0) {
      console.log(`\n#### Where the time goes: the layers behind tool.invoke, in the gateway's process (sequential${direct ? ', vs direct p50' : ''})\n`);
      table(
        ['layer', 'p50', 'p99', 'calls measured', ...(direct ? ['p50 vs direct'] : [])],
        layers.map((l) => [l.name, `**${fmtMs(l.seq.p50)}**`, fmtMs(l.seq.p99), String(l.seq.n), ...(direct ? [times(l.seq.p50, direct.seq.p50)] : [])]),
      );
      console.log(`\nThe caller shares the event loop with the gateway here, so each call also waits out the synchronous commits (audit`);
      console.log(`group commit: a WAL commit plus the signed checkpoint's file and directory fsyncs) that follow the previous answer.`);
    }
    console.log(`\n- Every Tyrum call is a durable run: contract check, policy decision (recorded with the step), run + step + attempt`);
    console.log(`  rows and an outbox event committed in several transactions under synchronous=FULL (each a WAL fsync), audit entries`);
    console.log(`  (run.submitted, tool.invoked, step.finished, run.finished; group-committed), then the call to the server over the`);
    console.log(`  gateway's own stdio connection. Direct is the SDK client talking to the server, nothing else.`);
    const mcpRes = find('mcp');
    if (mcpRes?.shape === 'wrapped') {
      console.log(`- tyrum-mcp answers an MCP tool with Tyrum's output of it: content[0].text is the JSON of the server's result and`);
      console.log(`  structuredContent that result, not the server's own content (echo's text arrives one level down).`);
    }
    for (const r of results) if (r.path !== 'direct') console.log(`- ${PATH_LABEL[r.path]}: ${r.calls.toLocaleString('en-US')} calls made (warm-ups included), ${r.runsOk.toLocaleString('en-US')} durable runs succeeded on the gateway, ${r.runsBad} failed or paused.`);
    if (sample) {
      const st = sample.steps[0];
      console.log(`- One of them: run ${sample.run.id} ${sample.run.state}, step ${st?.tool_id} policy ${st?.policy?.decision ?? 'n/a'} (enforced: ${String(st?.policy?.enforced ?? 'n/a')}), approval ${st?.approval_id ?? 'none'}.`);
    }
    console.log(`- Concurrency: direct runs N calls in flight on one SDK client (one server process, one stdio connection), as the`);
    console.log(`  gateway has one connection to its server; tyrum-ws uses one TyrumClient connection per caller (operator.write token,`);
    console.log(`  so no event fan-out); tyrum-mcp one SDK client per caller (admin token; /mcp is stateless: one HTTP request per call`);
    console.log(`  with a fresh transport on the gateway side). The engine executes at most 8 runs at once (its default).`);
    console.log(`- "connect (first client)": direct = spawn the server + MCP initialize; tyrum-ws = WebSocket handshake (token,`);
    console.log(`  Ed25519 device proof); tyrum-mcp = MCP initialize over HTTP (bearer token). The gateway's own server was started before.`);
    console.log(`- Clients run in child processes (this file in client mode, one per path); the gateway runs in the bench process. All`);
    console.log(`  share this machine's CPUs with the server processes.`);
  } finally {
    for (const off of offs) off();
    if (gw) await gw.close();
    rmSync(home, { recursive: true, force: true });
  }
  console.log(`\nmcp section finished in ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

// --- entry points: client mode, or this section alone ---

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === SELF;
if (isMain && process.env.BENCH_MCP_CLIENT_JOB) {
  try {
    const result = await clientMain(JSON.parse(process.env.BENCH_MCP_CLIENT_JOB) as ClientJob, process.env.BENCH_MCP_CLIENT_TOKEN ?? '');
    await new Promise<void>((r) => process.stdout.write(JSON.stringify(result) + '\n', () => r()));
    process.exit(0);
  } catch (e) {
    process.stderr.write(`bench MCP client: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  }
} else if (isMain) {
  console.log('# Tyrum bench (MCP section only)');
  await mcpBench();
}
