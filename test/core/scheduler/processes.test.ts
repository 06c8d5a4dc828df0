/**
 * Two scheduler processes on one database (the "two gateway processes sharing one home
 * (one wins the lease)"). Two `tyrum start` on one home are refused by the home lock
 * (core/config/lock.ts), so this runs two plain scheduler processes (test/core/scheduler/fixtures/
 * scheduler-process.ts: openHomeCore + a Scheduler with an engine that is never started) on the
 * same SQLite file, which is what several gateway replicas on one database do. They race for the
 * same every-1s ticks for ~5 s; then the database must show each tick fired exactly once (unique
 * fire_at per schedule, fires + missed == ticks from the anchor to the last fire), both processes
 * ran passes, every fire names one of them as its owner, and the audit log still verifies.
 * No wall-clock thresholds are asserted (the machine may be loaded).
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { openHomeCore } from '../../../core/home.js';
import { verifyAudit } from '../../../core/audit/index.js';
import { Scheduler } from '../../../core/scheduler/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const script = join(here, 'fixtures', 'scheduler-process.ts');
const RUN_MS = 5000;

interface Report {
  owner: string;
  passes: number;
  claims: number;
}

function runChild(home: string, owner: string, children: ChildProcess[]): Promise<Report> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, home, owner, String(RUN_MS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`${owner} exited with ${code ?? signal}: ${err}`));
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as Report);
      } catch {
        reject(new Error(`${owner} printed no report: ${out} ${err}`));
      }
    });
  });
}

t.test('two scheduler processes on one database fire each every-1s tick exactly once', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-sched-procs-'));
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  });

  let ids: string[];
  {
    const core = openHomeCore(home, {}, {});
    const s = new Scheduler({ store: core.store, events: core.approvals.events, audit: core.audit, owner: 'setup' });
    const actor = { kind: 'cli', user: 'test' };
    ids = [
      (await s.add({ name: 'a', every_ms: 1000, target: { type: 'tool', tool_id: 'echo', args: { n: 1 } } }, actor)).id,
      (await s.add({ name: 'b', every_ms: 1000, target: { type: 'tool', tool_id: 'echo', args: { n: 2 } }, missed: 'catch_up_once' }, actor)).id,
    ];
    await core.close();
  }

  const reports = await Promise.all([runChild(home, 'proc-1', children), runChild(home, 'proc-2', children)]);
  for (const r of reports) t.ok(r.passes > 0, `${r.owner} ran passes (${r.passes} passes, ${r.claims} claims)`);

  const core = openHomeCore(home, {}, {});
  try {
    let claimed = 0;
    for (const id of ids) {
      const row = core.store.schedules.get(id)!;
      const fires = core.store.schedules.fires(id, 10_000);
      t.ok(fires.length > 0, `${row.name} fired`);
      const at = fires.map((f) => f.fire_at);
      t.equal(new Set(at).size, at.length, `${row.name}: no tick fired twice`);
      for (const f of fires) {
        t.equal((f.fire_at - row.anchor_at) % 1000, 0, `${row.name}: fire at a tick`);
        t.ok(f.owner === 'proc-1' || f.owner === 'proc-2', `fire owned by one of the processes (${f.owner})`);
        t.ok(f.run_id, 'fire started its run');
        t.equal(f.error, null);
      }
      const last = Math.max(...at);
      const elapsed = (last - row.anchor_at) / 1000;
      const ticks = fires.reduce((n, f) => n + f.ticks, 0);
      // Each fire covers `ticks` ticks under catch_up_once; under skip a fire is one tick and the
      // skipped ones are counted in `missed`.
      t.equal(row.fires, fires.length, `${row.name}: fires counter == fire rows`);
      t.equal(fires.length + row.missed, elapsed, `${row.name}: fires + missed == ticks from anchor to last fire (${elapsed})`);
      if (row.missed_policy === 'catch_up_once') t.equal(ticks, elapsed, `${row.name}: the fires' ticks cover every tick`);
      t.equal(row.next_fire_at, last + 1000, `${row.name}: next tick is the one after the last fire`);
      claimed += fires.length;
      t.equal(core.store.execution.listRuns({ limit: 10_000 }).filter((r) => r.created_by === `schedule:${id}`).length, fires.length, `${row.name}: one run per fire`);
    }
    t.equal(reports.reduce((n, r) => n + r.claims, 0), claimed, 'the claims the processes report == fire rows');
    const fired = core.store.audit.page(0, 100_000, 'schedule.fired');
    t.equal(fired.length, claimed, 'one schedule.fired audit entry per fire');
    t.equal(verifyAudit({ store: core.store, verifier: core.key, checkpointPath: core.paths.auditCheckpoint }).ok, true, 'audit verify passes');
  } finally {
    await core.close();
  }
});
