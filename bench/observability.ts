/**
 * `npm run bench -- observability` (issue 16, observability): what the metrics cost a governed call.
 * One gateway, one tool (text-utils.word_count over WebSocket, the full pipeline: contract check,
 * policy, sandbox, durable commit), measured in alternating rounds with the instrumentation on (the
 * engine's call observer: stage histograms, outcome counter, the log-field AsyncLocalStorage
 * scopes; the store's COMMIT and fdatasync timers) and off (all detached, the AsyncLocalStorage
 * disabled: on Node 20 an enabled one costs every promise), so load falls on both alike. The
 * figure is calls/s and p50/p99 latency per mode, sequential and at 16 clients, and the ratio
 * on/off, with the load average. The frame counters of the edge stay on in both modes (one counter
 * increment per frame). Then the observer alone, in a tight loop (ns per call: the part of the
 * ratio that is not noise), and what a scrape of GET /metrics costs (p50/p99 of the whole HTTP
 * request) and its size. Tracing stays off here: it is off by default, and its cost is an exporter's.
 *
 *   BENCH_OBS_SECONDS=2   measured seconds per round and mode
 *   BENCH_OBS_ROUNDS=3    rounds (each: on, then off, then off, then on, so neither always goes first)
 *   BENCH_OBS_CLIENTS=16  clients of the concurrent cell
 * Figures, not assertions: only a wrong answer fails the run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { startGateway, type RunningGateway } from '../core/runtime.js';
import { suspendScopes } from '../core/telemetry/index.js';
import { TyrumClient } from '../sdk/index.js';
import { closedLoop, envNumber, fmtMs, fmtRate, loadAverage, stats, table, type LoopResult } from './util.js';

const SECONDS = envNumber('BENCH_OBS_SECONDS', 2, 0.1);
const ROUNDS = Math.max(1, Math.floor(envNumber('BENCH_OBS_ROUNDS', 3, 1)));
const CLIENTS = Math.max(1, Math.floor(envNumber('BENCH_OBS_CLIENTS', 16, 1)));
const WASM_DIR = resolve(fileURLToPath(new URL('../plugins/text-utils/build/', import.meta.url)));
const ACTOR = { kind: 'cli', user: 'bench' };
const ARGS = { text: 'The quick brown fox jumps over the lazy dog.' };

function instrument(gw: RunningGateway, on: boolean): void {
  gw.engine.observe(on ? gw.telemetry.calls : null);
  gw.store.observe(on ? gw.telemetry.metrics.storeObserver : null);
  // Off: no AsyncLocalStorage either (on Node 20 an enabled one costs every promise of the process).
  if (!on) suspendScopes();
}

/** Merges the rounds of one mode: total calls over total measured time; the median of the rounds' p50s, the worst p99. */
function merge(rs: LoopResult[]): { rate: number; p50: number; p99: number; calls: number } {
  const calls = rs.reduce((n, r) => n + r.calls, 0);
  const seconds = rs.reduce((n, r) => n + r.calls / r.rate, 0);
  const p50 = stats(rs.map((r) => r.lat.p50)).p50;
  const p99 = Math.max(...rs.map((r) => r.lat.p99));
  return { rate: calls / seconds, p50, p99, calls };
}

export async function observabilityBench(): Promise<void> {
  console.log('\n## Observability: a governed call with metrics on vs off, and what a scrape costs\n');
  const loadStart = loadAverage();
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-obs-'));
  const gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
  const clients: TyrumClient[] = [];
  try {
    const inst = await gw.plugins.install(WASM_DIR, ACTOR);
    await gw.plugins.grant(inst.plugin.id, { allRequested: true }, ACTOR);
    await gw.plugins.enable(inst.plugin.id, ACTOR);
    const token = gw.bootstrapToken!;
    for (let i = 0; i < CLIENTS; i++) {
      const c = new TyrumClient({ url: gw.url, token, deviceKey: generateKeyPairSync('ed25519').privateKey, reconnect: false, heartbeatMs: 0 });
      await c.connect();
      clients.push(c);
    }
    const call = (c: TyrumClient) => async () => {
      const r = (await c.request('tool.invoke', { tool_id: 'text-utils.word_count', args: ARGS })) as { state?: string; output?: { words?: number } };
      if (r.state !== 'succeeded' || r.output?.words !== 9) throw new Error(`unexpected answer ${JSON.stringify(r)}`);
    };
    const cells: Array<{ name: string; callers: Array<() => Promise<unknown>> }> = [
      { name: 'sequential (1 client)', callers: [call(clients[0]!)] },
      { name: `${CLIENTS} clients`, callers: clients.map(call) },
    ];
    const rows: string[][] = [];
    for (const cell of cells) {
      const on: LoopResult[] = [];
      const off: LoopResult[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of r % 2 === 0 ? [true, false] : [false, true]) {
          instrument(gw, mode);
          (mode ? on : off).push(await closedLoop(cell.callers, SECONDS));
        }
      }
      instrument(gw, true);
      const a = merge(on);
      const b = merge(off);
      rows.push([cell.name, `${fmtRate(b.rate)} (p50 ${fmtMs(b.p50)}, p99 ${fmtMs(b.p99)})`, `${fmtRate(a.rate)} (p50 ${fmtMs(a.p50)}, p99 ${fmtMs(a.p99)})`, `${(a.rate / b.rate).toFixed(3)}×`, `${(a.p50 / b.p50).toFixed(3)}×`]);
    }
    table(['cell', 'metrics off (baseline)', 'metrics on', 'calls/s on/off', 'p50 on/off'], rows);

    // The observer alone, no I/O: what the engine adds to each call (begin, four stages, attempt,
    // policy, end), on the gateway's own registry, so it also shows what the noise above hides.
    const N = 100_000;
    const obs = gw.telemetry.calls;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const rec = obs.begin({ run_id: 'run_bench', step: 0, tool_id: 'text-utils.word_count', kind: 'tool' }, null);
      rec.stage('policy', 0, 0.01);
      rec.attempt(1);
      rec.policy('allow');
      rec.stage('sandbox', 0.01, 0.5);
      rec.stage('commit', 0.5, 2);
      rec.end('succeeded');
    }
    const perCall = ((performance.now() - t0) * 1e6) / N;
    console.log(`\nThe call observer alone (in-process, ${N.toLocaleString('en-US')} calls recorded: begin, policy, sandbox, commit, end): ${perCall.toFixed(0)} ns per call.`);

    // The scrape: the whole HTTP request, as Prometheus makes it, after the calls above filled the histograms.
    const url = `http://127.0.0.1:${gw.port}/metrics`;
    const headers = { authorization: `Bearer ${token}` };
    let bytes = 0;
    const scrapeTimes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const res = await fetch(url, { headers });
      const text = await res.text();
      scrapeTimes.push(performance.now() - t0);
      if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
      bytes = text.length;
    }
    const s = stats(scrapeTimes.slice(20));
    console.log(`\nGET /metrics (operator.read token, ${s.n} scrapes after 20 warm-up): p50 ${fmtMs(s.p50)}, p99 ${fmtMs(s.p99)}, ${bytes.toLocaleString('en-US')} bytes.`);
    console.log(`Rounds: ${ROUNDS} × ${SECONDS} s per mode and cell, alternating (on/off, off/on, ...). Frame counters stay on in both modes. Load average (1, 5, 15 min): ${loadStart} at the start, ${loadAverage()} at the end.`);
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw.close();
    rmSync(home, { recursive: true, force: true });
  }
}
