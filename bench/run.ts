/**
 * `npm run bench`: gateway handshake time and request round trip over loopback WebSocket,
 * side by side with a baseline measured in the same run — a bare `ws` server that accepts any
 * connection and echoes — so the table shows what Tyrum's auth, identity proof, validation and
 * authorization cost on top of the transport itself. Then the plugin platform (bench/plugins.ts):
 * tool calls, install → first call, calls/s and memory with many plugins, each beside its
 * baseline. Then durable execution (bench/durable.ts) and MCP (bench/mcp.ts: one MCP tool called
 * directly, through Tyrum over WebSocket and through Tyrum's /mcp), nodes (bench/nodes.ts) and chat
 * channels (bench/channels.ts: Telegram webhook → agent turn → reply delivered, beside a bare
 * node:http POST; figures printed in its own table, not in the targets table). Then the sections that run a
 * real `tyrum start` process (bench/gateway-process.ts): fsyncs per call under strace, gateway
 * start → first call, CLI command time, memory per idle connection. At the end, one table of every
 * target of issue 11 with its figure, the baseline measured in this run, the ratio and whether it
 * is met, under the disk's own fdatasync p50 (in the directory the gateways' homes are made in) and
 * the load average at the start and end of the run. Figures, not assertions: nothing here fails a
 * build (a bench that crashes does).
 *
 * artifacts (bench/artifacts.ts) measures artifact write/read MB/s beside raw file I/O of the same bytes.
 *
 * observability (bench/observability.ts) measures governed calls with the metrics instrumentation on
 * vs off in alternating rounds of the same run (the ratio), and what a GET /metrics scrape costs.
 *
 * scheduler (bench/scheduler.ts) measures scheduler fires/s sustained (every schedule due each pass)
 * beside the disk's fdatasync rate and raw SQLite commits/s (synchronous=FULL).
 *
 * replicas (bench/replicas.ts) measures governed calls/s at 64 clients on 1, 2 and 3 gateway replicas
 * sharing one PostgreSQL, beside one gateway on SQLite in the same run (skipped without PostgreSQL).
 *
 * `npm run bench -- mcp` (or any of gateway, plugins, durable, mcp, nodes, channels, artifacts, scheduler, observability, replicas, fsyncs, start, cli,
 * connections) runs only the sections named.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, freemem, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';
import { startGateway } from '../core/runtime.js';
import { TyrumClient } from '../sdk/index.js';
import { pluginBench } from './plugins.js';
import { durableBench } from './durable.js';
import { mcpBench } from './mcp.js';
import { nodesBench } from './nodes.js';
import { channelsBench } from './channels.js';
import { artifactsBench } from './artifacts.js';
import { schedulerBench } from './scheduler.js';
import { observabilityBench } from './observability.js';
import { replicasBench } from './replicas.js';
import { cliBench, connectionsBench, fsyncBench, startBench } from './gateway-process.js';
import { fdatasyncReference, fmtMs as fmtDur, printTargets } from './util.js';

const SECTIONS = ['gateway', 'plugins', 'durable', 'mcp', 'nodes', 'channels', 'artifacts', 'scheduler', 'observability', 'replicas', 'fsyncs', 'start', 'cli', 'connections'] as const;
const picked = process.argv.slice(2);
for (const p of picked) if (!(SECTIONS as readonly string[]).includes(p)) throw new Error(`unknown bench section "${p}" (sections: ${SECTIONS.join(', ')})`);
const want = (s: (typeof SECTIONS)[number]) => picked.length === 0 || picked.includes(s);

const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 200);
const PINGS = Number(process.env.BENCH_PINGS ?? 5000);

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { median: q(0.5), p99: q(0.99), n: s.length };
}

const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);

async function baseline() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d.toString())));
  const port = (wss.address() as { port: number }).port;
  const connect: number[] = [];
  for (let i = 0; i < HANDSHAKES; i++) {
    const t0 = performance.now();
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise<void>((r, j) => {
      ws.once('open', () => r());
      ws.once('error', j);
    });
    connect.push(performance.now() - t0);
    ws.terminate();
  }
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise<void>((r) => ws.once('open', () => r()));
  const rtt: number[] = [];
  const msg = JSON.stringify({ request_id: 'x', type: 'ping', payload: {} });
  for (let i = 0; i < PINGS; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      ws.once('message', () => r());
      ws.send(msg);
    });
    rtt.push(performance.now() - t0);
  }
  ws.terminate();
  await new Promise<void>((r) => wss.close(() => r()));
  return { connect: stats(connect), rtt: stats(rtt) };
}

async function tyrum() {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-'));
  const gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
  try {
    const token = gw.bootstrapToken!;
    const deviceKey = generateKeyPairSync('ed25519').privateKey;
    const connect: number[] = [];
    for (let i = 0; i < HANDSHAKES; i++) {
      const c = new TyrumClient({ url: gw.url, token, deviceKey, reconnect: false, heartbeatMs: 0 });
      const t0 = performance.now();
      await c.connect();
      connect.push(performance.now() - t0);
      await c.close();
    }
    const c = new TyrumClient({ url: gw.url, token, deviceKey, reconnect: false, heartbeatMs: 0 });
    await c.connect();
    const rtt: number[] = [];
    for (let i = 0; i < PINGS; i++) {
      const t0 = performance.now();
      await c.request('ping', {});
      rtt.push(performance.now() - t0);
    }
    await c.close();
    return { connect: stats(connect), rtt: stats(rtt) };
  } finally {
    await gw.close();
    rmSync(home, { recursive: true, force: true });
  }
}

const started = performance.now();
const loadStart = loadavg().map((l) => l.toFixed(2)).join(' ');
// The disk's own cost of a durable write, where every gateway home of this run is made (tmpdir).
const diskDir = mkdtempSync(join(tmpdir(), 'tyrum-bench-disk-'));
const disk = fdatasyncReference(diskDir, 500);
rmSync(diskDir, { recursive: true, force: true });
const cpu = cpus();
const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
console.log('# Tyrum bench\n');
console.log(`- Node ${process.version} (V8 ${process.versions.v8}), ${process.platform}/${process.arch}, kernel ${release()}`);
console.log(`- ${cpu.length} CPU${cpu.length === 1 ? '' : 's'}: ${cpu[0]?.model.trim() ?? 'unknown'}`);
console.log(`- memory ${gib(totalmem())} (${gib(freemem())} free); load average at start ${loadStart}`);
console.log(`- this disk (${tmpdir()}, where each gateway home of this run is made): 4 KiB write + fdatasync p50 ${fmtDur(disk.p50)}, p99 ${fmtDur(disk.p99)} (${disk.n} in a row)`);
console.log('- everything below is one process on loopback unless a cell says otherwise; figures vary run to run');

if (want('gateway')) {
  const base = await baseline();
  const ty = await tyrum();
  const rows = [
    ['connect → ready (median)', base.connect.median, ty.connect.median],
    ['connect → ready (p99)', base.connect.p99, ty.connect.p99],
    ['request round trip (median)', base.rtt.median, ty.rtt.median],
    ['request round trip (p99)', base.rtt.p99, ty.rtt.p99],
  ] as const;
  console.log(`\n## Gateway handshake and round trip\n\nTyrum gateway vs bare ws echo, loopback, Node ${process.version}; ${HANDSHAKES} handshakes, ${PINGS} sequential requests\n`);
  console.log('| measure | bare ws (baseline) | tyrum | ratio |');
  console.log('|---|---|---|---|');
  for (const [name, b, t] of rows) console.log(`| ${name} | ${fmt(b)} | ${fmt(t)} | ${(t / b).toFixed(1)}× |`);
  console.log('\ntyrum "connect → ready" = HTTP upgrade with token check (scrypt) + connect.init + Ed25519 proof + connect.proof.');
  console.log('baseline "connect → ready" = HTTP upgrade only; its round trip is an echo with no parsing or validation.');
}

if (want('plugins')) await pluginBench();
if (want('durable')) await durableBench();
if (want('mcp')) await mcpBench();
if (want('nodes')) await nodesBench();
if (want('channels')) await channelsBench();
if (want('artifacts')) await artifactsBench();
if (want('scheduler')) await schedulerBench();
if (want('observability')) await observabilityBench();
if (want('replicas')) await replicasBench();
if (want('fsyncs')) await fsyncBench();
if (want('start')) await startBench();
if (want('cli')) await cliBench();
if (want('connections')) await connectionsBench();

const loadEnd = loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(`\n## Targets (issues 11 and 12): summary of this run\n`);
console.log(`Disk: 4 KiB write + fdatasync p50 **${fmtDur(disk.p50)}** (p99 ${fmtDur(disk.p99)}), in ${tmpdir()} where the gateway homes are made. Load average (1, 5, 15 min): **${loadStart}** at the start, **${loadEnd}** at the end; ${cpu.length} CPUs.`);
console.log(`Ratios are figure / baseline; each baseline was measured in this run. "not run" = the section was not selected.\n`);
printTargets(SECTIONS.filter((s) => want(s)));
console.log(`\nbench (after the build) finished in ${((performance.now() - started) / 1000).toFixed(0)} s; load average now ${loadEnd}`);
