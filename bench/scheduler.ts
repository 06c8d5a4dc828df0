/**
 * `npm run bench -- scheduler`: scheduler fires/s sustained. A real SQLite store in a temp home
 * (openHomeCore), BENCH_SCHEDULES interval schedules (default 1,000, every 1 s) with tool targets,
 * an injected clock moved on one interval before each pass so that every pass finds every schedule
 * due, and `Scheduler.tick()` passes for BENCH_SCHEDULER_S seconds (default 6). Each fire is one
 * claim transaction: the conditional UPDATE of next_fire_at, the schedule_fires row, the engine run
 * (submitInUnit; the engine is never started, so the runs stay queued), the outbox events and the
 * audit entries, committed durably. Reported: fires/s, per-claim latency p50/p99, beside two
 * baselines measured in the same run in the same directory: the disk's own 4 KiB write + fdatasync
 * rate, and raw SQLite single-row INSERT commits/s (WAL, synchronous=FULL). Checked at the end
 * (a failed check throws): fires == schedule_fires rows == runs == schedule.fired audit entries,
 * and no (schedule_id, fire_at) twice.
 *
 *   BENCH_SCHEDULES=1000     schedules
 *   BENCH_SCHEDULER_S=6      seconds of passes
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { openHomeCore } from '../core/home.js';
import { ExecutionEngine } from '../core/execution/engine.js';
import { Scheduler, newScheduleId } from '../core/scheduler/index.js';
import type { ScheduleRow } from '../core/store/index.js';
import { envNumber, fdatasyncReference, fmtMs, fmtRate, loadAverage, reportTarget, stats, table, times } from './util.js';

const SCHEDULES = envNumber('BENCH_SCHEDULES', 1000, 1);
const SECONDS = envNumber('BENCH_SCHEDULER_S', 6, 1);
const EVERY = 1000;

/** Raw SQLite: single-row INSERT commits for `ms` (WAL, synchronous=FULL), in `dir`. */
function sqliteCommits(dir: string, ms: number): number {
  const db = new Database(join(dir, 'raw-commits.db'));
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < ms) {
      ins.run(`row ${n}`);
      n++;
    }
    return n / ((performance.now() - t0) / 1000);
  } finally {
    db.close();
  }
}

export async function schedulerBench(): Promise<void> {
  console.log(`\n## Scheduler: fires/s sustained (${SCHEDULES.toLocaleString('en-US')} interval schedules, all due each pass) vs the disk's fdatasync rate and raw SQLite commits\n`);
  const home = mkdtempSync(join(tmpdir(), 'tyrum-bench-scheduler-'));
  const loadStart = loadAverage();
  const core = openHomeCore(home, {}, {});
  let closed = false;
  try {
    const disk = fdatasyncReference(home);
    const rawCommits = sqliteCommits(home, 2000);
    const owner = 'bench-scheduler';
    const engine = new ExecutionEngine({
      store: core.store,
      audit: core.audit,
      owner,
      approvals: core.approvals,
      resolveTool: () => null,
      decide: () => {
        throw new Error('the bench engine never runs');
      },
      execute: () => Promise.reject(new Error('the bench engine never runs')),
    });
    let clock = Date.now();
    const scheduler = new Scheduler({ store: core.store, events: core.approvals.events, audit: core.audit, owner, engine, now: () => clock });
    // The schedules, in one transaction (not what is measured).
    const anchor = clock;
    await core.approvals.events.commit(() => {
      for (let i = 0; i < SCHEDULES; i++) {
        const row: ScheduleRow = {
          id: newScheduleId(),
          name: `bench-${i}`,
          kind: 'interval',
          cron: null,
          timezone: 'UTC',
          every_ms: EVERY,
          anchor_at: anchor,
          target: JSON.stringify({ type: 'tool', tool_id: 'echo', args: { i } }),
          missed_policy: 'skip',
          state: 'active',
          next_fire_at: anchor + EVERY,
          last_fire_at: null,
          fires: 0,
          missed: 0,
          created_by: 'bench',
          created_at: anchor,
          updated_at: anchor,
        };
        core.store.schedules.insert(row);
      }
    });
    // Per-claim latency: the private claim transaction, timed from outside.
    const inner = scheduler as unknown as { claim: (...a: unknown[]) => Promise<unknown> };
    const claim = inner.claim.bind(scheduler);
    const lat: number[] = [];
    inner.claim = async (...a: unknown[]) => {
      const t0 = performance.now();
      try {
        return await claim(...a);
      } finally {
        lat.push(performance.now() - t0);
      }
    };
    let fires = 0;
    let passes = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < SECONDS * 1000) {
      clock += EVERY;
      // A pass claims at most SCHEDULER_BATCH schedules: pass again at the same instant until none is due.
      for (;;) {
        const out = await scheduler.tick();
        passes++;
        fires += out.filter((o) => o.fire_at !== null).length;
        if (out.length === 0) break;
      }
    }
    const elapsed = (performance.now() - t0) / 1000;
    const rate = fires / elapsed;
    const dbPath = core.paths.db;
    const l = stats(lat);
    await core.close();
    closed = true;

    // Correctness, from the database.
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    let rows: number, distinct: number, runs: number, audited: number;
    try {
      rows = (db.prepare('SELECT count(*) AS n FROM schedule_fires').get() as { n: number }).n;
      distinct = (db.prepare('SELECT count(*) AS n FROM (SELECT DISTINCT schedule_id, fire_at FROM schedule_fires)').get() as { n: number }).n;
      runs = (db.prepare("SELECT count(*) AS n FROM runs WHERE created_by LIKE 'schedule:%'").get() as { n: number }).n;
      audited = (db.prepare("SELECT count(*) AS n FROM audit_entries WHERE type = 'schedule.fired'").get() as { n: number }).n;
    } finally {
      db.close();
    }
    const ok = rows === fires && distinct === rows && runs === fires && audited === fires;
    const diskRate = 1000 / disk.p50;
    table(
      ['measure', 'disk: 4 KiB write + fdatasync (baseline)', 'raw SQLite 1-row commits, WAL, synchronous=FULL (baseline)', 'scheduler', 'ratio (scheduler / fdatasync, / SQLite)'],
      [
        [`fires/s, ${fires.toLocaleString('en-US')} fires in ${elapsed.toFixed(1)} s (${passes} passes); each claim = UPDATE + fire row + run + outbox events + audit entry, one commit`, `${fmtRate(diskRate)} (p50 ${fmtMs(disk.p50)})`, fmtRate(rawCommits), `**${fmtRate(rate)}**`, `${times(rate, diskRate)}, ${times(rate, rawCommits)}`],
        ['per-claim latency p50 / p99', `${fmtMs(disk.p50)} / ${fmtMs(disk.p99)}`, `${fmtMs(1000 / rawCommits)} (mean)`, `${fmtMs(l.p50)} / ${fmtMs(l.p99)}`, ''],
      ],
    );
    console.log(`\nchecked: ${fires} fires reported, ${rows} schedule_fires rows, ${distinct} distinct (schedule_id, fire_at), ${runs} runs, ${audited} schedule.fired audit entries: ${ok ? 'consistent' : '**INCONSISTENT**'}.`);
    console.log(`load average (1, 5, 15 min): ${loadStart} at the start of this section, ${loadAverage()} at its end.`);
    if (!ok) throw new Error('scheduler bench: fires, fire rows, runs and audit entries disagree (or a tick fired twice)');
    reportTarget('scheduler.fires', { figure: `${fmtRate(rate)} (claim p50 ${fmtMs(l.p50)}, p99 ${fmtMs(l.p99)})`, baseline: `fdatasync ${fmtRate(diskRate)}; raw SQLite commits ${fmtRate(rawCommits)}`, ratio: `${times(rate, diskRate)}; ${times(rate, rawCommits)}`, met: null });
  } finally {
    if (!closed) await core.close();
    rmSync(home, { recursive: true, force: true });
  }
}
