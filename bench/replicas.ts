/**
 * `npm run bench -- replicas`: governed calls per second at 64 concurrent clients on 1, 2 and 3
 * gateway replicas sharing one PostgreSQL database, beside one gateway on SQLite measured in the
 * same run (issue 16, "Done when").
 *
 * Each gateway is a real `tyrum start` process (the built CLI). The first replica's home is
 * prepared as the CLI would (text-utils installed, granted and enabled; a client token); the other
 * replicas' homes are copies of it (same gateway key, secret key, config and plugin files), as
 * docs/deploy.md describes, with their own lock. The 64 clients are split evenly across the
 * replicas, each replica's share in a client process of its own (bench/ws-client.ts), all running
 * the same closed loop of `tool.invoke text-utils.word_count` (a governed call: policy, sandbox,
 * the run committed, audited). PostgreSQL is a throwaway cluster (test/helpers/postgres.ts) on
 * this machine, fsync on; one fresh database per replica count.
 *
 * Printed with the load average and the disk's own fdatasync p50 measured in this run: on a
 * 2-core machine the replicas, the server and the clients share the same cores, so what this shows
 * is the cost of the shared store and its coordination, not horizontal scaling.
 *
 * Scale with environment variables:
 *   BENCH_REPLICA_SECONDS=5      measured seconds per cell (after a short warm-up)
 *   BENCH_REPLICA_CLIENTS=64     concurrent clients (connections) per cell
 *   BENCH_REPLICA_COUNTS=1,2,3   replica counts on PostgreSQL
 * Without PostgreSQL (initdb, pg_ctl, postgres, psql) the section prints why and is skipped.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findPostgres, POSTGRES_MISSING, startPostgres } from '../test/helpers/postgres.js';
import { GatewayProcess, prepareHome, type PreparedHome } from './gateway-process.js';
import { diskLine, envNumber, fmtMs, fmtRate, loadAverage, table, times, type LoopResult, runClientJob } from './util.js';

const SECONDS = envNumber('BENCH_REPLICA_SECONDS', 5, 1);
const CLIENTS = envNumber('BENCH_REPLICA_CLIENTS', 64, 1);
const COUNTS = (process.env.BENCH_REPLICA_COUNTS || '1,2,3').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new Error(`BENCH_REPLICA_COUNTS: "${s}" is not a replica count from 1 to 8`);
  return n;
});
/** The variable the PostgreSQL homes' config names (`store.url_env`): the URL never sits in a file. */
const URL_ENV = 'TYRUM_BENCH_PG_URL';
const CALL = { type: 'tool.invoke', payload: { tool_id: 'text-utils.word_count', args: { text: 'The quick brown fox jumps over the lazy dog.' } } };

interface Cell {
  store: string;
  replicas: number;
  result: LoopResult;
  /** Statements sent to PostgreSQL per governed call, summed over the replicas (null on SQLite). */
  roundTrips: number | null;
}

/** The sum of a metric's samples (all label sets) in one replica's GET /metrics, read with `token`. */
async function scrape(wsUrl: string, token: string, names: readonly string[]): Promise<number[]> {
  const u = new URL(wsUrl);
  u.protocol = 'http:';
  u.pathname = '/metrics';
  const res = await fetch(u, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${text.slice(0, 200)}`);
  return names.map((name) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0),
  );
}

/** One client process holding `concurrency` connections to `url`, in a closed loop. */
function clientProcess(url: string, token: string, concurrency: number): Promise<LoopResult> {
  return runClientJob<LoopResult>({ url, request: CALL, mode: 'loop', concurrency, seconds: SECONDS }, token);
}

/** `n` gateways on copies of `prepared`'s home; CLIENTS connections split evenly across them. */
async function measure(prepared: PreparedHome, n: number, env: NodeJS.ProcessEnv): Promise<{ result: LoopResult; roundTrips: number }> {
  const homes = [prepared.home];
  const copies: string[] = [];
  const gateways: GatewayProcess[] = [];
  try {
    for (let i = 1; i < n; i++) {
      const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-replica-'));
      copies.push(home);
      cpSync(prepared.home, home, { recursive: true, filter: (src) => !/gateway\.lock/.test(src) });
      homes.push(home);
    }
    for (const home of homes) gateways.push(await GatewayProcess.start(home, env, 'warn'));
    const shares = gateways.map((_, i) => Math.floor(CLIENTS / n) + (i < CLIENTS % n ? 1 : 0)).filter((c) => c > 0);
    let results: LoopResult[];
    // Round trips per call over the whole client run (warm-up included), from every replica's metrics.
    const counters = ['tyrum_store_round_trips_total', 'tyrum_tool_calls_total'];
    const before = await Promise.all(gateways.map((g) => scrape(g.url, prepared.operator, counters)));
    try {
      results = await Promise.all(shares.map((c, i) => clientProcess(gateways[i]!.url, prepared.writer, c)));
    } catch (e) {
      // A failed call fails the section: show what the gateways logged (warnings and errors).
      for (const [i, g] of gateways.entries()) console.log(`replica ${i + 1} log (warn and above):\n${g.stderr.slice(-4000)}`);
      throw e;
    }
    const after = await Promise.all(gateways.map((g) => scrape(g.url, prepared.operator, counters)));
    const moved = (k: number) => after.reduce((a, x, i) => a + x[k]! - before[i]![k]!, 0);
    const calls = results.reduce((a, r) => a + r.calls, 0);
    const rate = results.reduce((a, r) => a + r.rate, 0);
    // Latency of the replica with the most clients (the first): the others' are alike.
    return { result: { rate, calls, lat: results[0]!.lat }, roundTrips: moved(1) > 0 ? moved(0) / moved(1) : 0 };
  } finally {
    await Promise.all(gateways.map((g) => g.stop().catch(() => g.child.kill('SIGKILL'))));
    for (const home of copies) rmSync(home, { recursive: true, force: true });
  }
}

export async function replicasBench(): Promise<void> {
  console.log(`\n## Replicas: governed calls/s at ${CLIENTS} clients, 1 gateway on SQLite vs ${COUNTS.join(', ')} replicas on one PostgreSQL`);
  if (findPostgres() === null) {
    console.log(`skipped: ${POSTGRES_MISSING}`);
    return;
  }
  const loadBefore = loadAverage();
  const cells: Cell[] = [];
  const sqlite = await prepareHome({ textUtils: true });
  try {
    console.log(diskLine(sqlite.home));
    cells.push({ store: 'SQLite', replicas: 1, ...(await measure(sqlite, 1, process.env)), roundTrips: null });
  } finally {
    sqlite.cleanup();
  }
  const cluster = await startPostgres();
  const saved = process.env[URL_ENV];
  try {
    for (const n of COUNTS) {
      process.env[URL_ENV] = cluster.database();
      const prepared = await prepareHome({ textUtils: true, config: { store: { kind: 'postgres', url_env: URL_ENV } } });
      try {
        cells.push({ store: 'PostgreSQL', replicas: n, ...(await measure(prepared, n, { ...process.env })) });
      } finally {
        prepared.cleanup();
      }
    }
  } finally {
    if (saved === undefined) delete process.env[URL_ENV];
    else process.env[URL_ENV] = saved;
    cluster.destroy();
  }
  const base = cells[0]!.result.rate;
  table(
    ['store', 'replicas', 'clients', 'calls/s', 'vs SQLite', 'p50', 'p99 (first replica)', 'round trips per call'],
    cells.map((c) => [c.store, String(c.replicas), String(CLIENTS), fmtRate(c.result.rate), times(c.result.rate, base), fmtMs(c.result.lat.p50), fmtMs(c.result.lat.p99), c.roundTrips === null ? 'in-process' : c.roundTrips.toFixed(1)]),
  );
  console.log(`load average: ${loadBefore} before, ${loadAverage()} after; ${SECONDS} s per cell; PostgreSQL on this machine (fsync on, synchronous_commit on)`);
}
