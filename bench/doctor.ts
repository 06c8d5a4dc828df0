/**
 * The event-loop stall of the gateway's doctor (docs/ui.md, "doctor.run"): a gateway in a fresh
 * temp home with BENCH_DOCTOR_ENTRIES audit entries (default 100,000), then the longest gap
 * between two turns of its event loop (a 1 ms interval timer) while
 *
 * - "in-process": quick_check and the audit chain walk run on the gateway's own connection, as
 *   doctor.run did before they moved to a worker thread (the same check functions the CLI runs);
 * - "worker": a fresh doctor.run report (gatewayDoctor), its two walks on a worker thread.
 *
 * Each is run BENCH_DOCTOR_ROUNDS times (default 3); prints each round's wall time and max gap,
 * and the load average. Run: `node --import tsx bench/doctor.ts` (sources: the worker registers
 * tsx first) or, for the compiled worker, after `npx tsc -p tsconfig.build.json`:
 * `BENCH_DOCTOR_DIST=1 node --import tsx bench/doctor.ts`. Figures, not assertions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const ENTRIES = Number(process.env.BENCH_DOCTOR_ENTRIES ?? 100_000);
const ROUNDS = Number(process.env.BENCH_DOCTOR_ROUNDS ?? 3);
const root = process.env.BENCH_DOCTOR_DIST === '1' ? '../dist/core' : '../core';
const { startGateway } = (await import(`${root}/runtime.js`)) as typeof import('../core/runtime.js');
const { gatewayDoctor, databaseCheck, auditCheck } = (await import(`${root}/doctor/checks.js`)) as typeof import('../core/doctor/checks.js');
const { homePaths } = (await import(`${root}/config/index.js`)) as typeof import('../core/config/index.js');

/** Runs `fn` while a 1 ms timer measures the longest gap between event-loop turns. */
async function maxGap(fn: () => Promise<unknown> | unknown): Promise<{ wallMs: number; maxGapMs: number }> {
  let last = performance.now();
  let max = 0;
  const timer = setInterval(() => {
    const t = performance.now();
    max = Math.max(max, t - last);
    last = t;
  }, 1);
  await new Promise((r) => setTimeout(r, 20));
  max = 0;
  last = performance.now();
  const start = performance.now();
  await fn();
  const wallMs = performance.now() - start;
  // One more turn, so a stall that ends with fn is counted.
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(timer);
  return { wallMs, maxGapMs: max };
}

const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-doctor-'));
const gw = await startGateway({ home, overrides: { port: 0 }, logLevel: false });
try {
  for (let done = 0; done < ENTRIES; done += 1000) {
    gw.store.tx(() => {
      for (let i = done; i < Math.min(ENTRIES, done + 1000); i++) gw.audit.appendInTx('bench.filler', { kind: 'cli', user: 'bench' }, { i, pad: 'x'.repeat(200) });
    });
  }
  await gw.audit.flush();
  const paths = homePaths(home);
  const line = (name: string, r: { wallMs: number; maxGapMs: number }, ok: boolean) => console.log(`${name.padEnd(11)} wall ${r.wallMs.toFixed(0).padStart(6)} ms   event-loop max gap ${r.maxGapMs.toFixed(0).padStart(6)} ms   ${ok ? 'ok' : 'FAILED'}`);
  console.log(`doctor bench: ${gw.store.audit.count()} audit entries, ${cpus().length} CPUs, ${process.env.BENCH_DOCTOR_DIST === '1' ? 'dist' : 'sources (tsx)'}`);
  for (let round = 0; round < ROUNDS; round++) {
    let ok = false;
    line('in-process', await maxGap(() => {
      const d = databaseCheck(gw.store, 'quick');
      const a = auditCheck(gw.store, gw.key, paths.auditCheckpoint);
      ok = d.status === 'ok' && a.status === 'ok';
    }), ok);
    const doctor = gatewayDoctor({ home, paths, store: gw.store, key: gw.key, plugins: () => gw.plugins.list(), before: () => gw.audit.flush() });
    line('worker', await maxGap(async () => {
      ok = (await doctor.run()).ok;
    }), ok);
    await doctor.close();
  }
  console.log(`load average (1, 5, 15 min): ${loadavg().map((l) => l.toFixed(2)).join(', ')}`);
} finally {
  await gw.close();
  rmSync(home, { recursive: true, force: true });
}
