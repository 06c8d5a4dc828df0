import t from 'tap';
import { createSweeper, runsTarget, Sweeper, type RetentionTarget, type SweepReport } from '../../../core/retention/index.js';
import { verifyAudit, listAudit } from '../../../core/audit/index.js';
import { buildConfig } from '../../../core/config/index.js';
import { DAY, NOW, counts, home, runIds, seedConversation, seedEvents, seedRun } from './fixtures.js';

const sweeperOf = (h: ReturnType<typeof home>) => createSweeper({ store: h.store, audit: h.audit, retention: h.config.retention, now: () => NOW });

function category(r: SweepReport, name: string) {
  const c = r.categories.find((x) => x.name === name);
  if (!c) throw new Error(`no category ${name}`);
  return c;
}

t.test('expired terminal runs go with their steps, attempts and approvals; young, unfinished and still-needed runs stay', async (t) => {
  const h = home(t, { runs_days: 30 });
  // Inserted in time order, as a gateway inserts them (the walk ends at the first young run).
  seedRun(h.store, { id: 'old-queued', state: 'queued', createdDaysAgo: 50 });
  seedRun(h.store, { id: 'old-running', state: 'running', createdDaysAgo: 50 });
  seedRun(h.store, { id: 'old-paused', state: 'paused', createdDaysAgo: 50, approval: 'pending' });
  seedRun(h.store, { id: 'old-pending-approval', state: 'failed', createdDaysAgo: 50, approval: 'pending' });
  // An agent turn still running re-submits its tool calls by key after a restart: its runs stay.
  seedConversation(h.store, 'conv_live', 45, 2, 'running');
  seedRun(h.store, { id: 'old-of-live-turn', state: 'succeeded', createdDaysAgo: 45, idempotencyKey: 'turn_conv_live:call_1' });
  seedConversation(h.store, 'conv_done', 45, 2, 'completed');
  seedRun(h.store, { id: 'old-of-done-turn', state: 'succeeded', createdDaysAgo: 45, idempotencyKey: 'turn_conv_done:call_1' });
  seedRun(h.store, { id: 'old-ok', state: 'succeeded', createdDaysAgo: 40, steps: 2, approval: 'approved' });
  seedRun(h.store, { id: 'old-but-ended-lately', state: 'succeeded', createdDaysAgo: 40, endedDaysAgo: 10 });
  seedRun(h.store, { id: 'old-failed', state: 'failed', createdDaysAgo: 35 });
  seedRun(h.store, { id: 'old-cancelled', state: 'cancelled', createdDaysAgo: 31 });
  seedRun(h.store, { id: 'young-ok', state: 'succeeded', createdDaysAgo: 5 });
  seedRun(h.store, { id: 'young-after', state: 'succeeded', createdDaysAgo: 1 });

  const r = await sweeperOf(h).sweep();
  t.same(runIds(h.dir), ['old-but-ended-lately', 'old-of-live-turn', 'old-paused', 'old-pending-approval', 'old-queued', 'old-running', 'young-after', 'young-ok']);
  const runs = category(r, 'runs');
  t.same(runs.detail, { runs: 4, steps: 5, attempts: 5, approvals: 1 }, 'four runs (one with two steps and an approval) and everything of theirs');
  t.equal(runs.rows, 15);
  t.ok(runs.bytes > 0, 'bytes are counted');
  const c = counts(h.dir);
  t.equal(c.steps, 8, 'the kept runs keep their steps');
  t.equal(c.approvals, 2, 'the pending approvals stay');
  t.equal(c.conversations, 2, 'conversations are kept by default');
});

t.test('a dry run changes nothing and reports exactly what the real sweep then removes', async (t) => {
  const h = home(t, { runs_days: 30, events_days: 7, conversations_days: 90, batch_size: 2 });
  for (let i = 0; i < 5; i++) seedRun(h.store, { id: `old-${i}`, state: 'succeeded', createdDaysAgo: 60 - i, steps: 1 + (i % 3) });
  seedRun(h.store, { id: 'young', state: 'succeeded', createdDaysAgo: 3 });
  seedEvents(h.store, [20, 15, 9, 8, 1, 0]);
  seedConversation(h.store, 'conv_a', 120, 5);
  seedConversation(h.store, 'conv_b', 100, 3);
  seedConversation(h.store, 'conv_c', 10, 3);
  const before = counts(h.dir);
  const s = sweeperOf(h);
  const dry = await s.sweep({ dryRun: true });
  t.same(counts(h.dir), before, 'nothing changed, not even the audit log');
  t.equal(dry.dry_run, true);
  t.ok(dry.rows > 0);
  const real = await s.sweep();
  const strip = (r: SweepReport) => r.categories.map((c) => ({ name: c.name, rows: c.rows, bytes: c.bytes, detail: c.detail }));
  t.same(strip(real), strip(dry), 'same rows, bytes and tables per category');
  const after = counts(h.dir);
  t.equal(after.runs, before.runs! - category(real, 'runs').detail.runs!);
  t.equal(after.outbox, 2, 'the events from the last 7 days stay');
  t.equal(after.conversations, 1);
  t.equal(after.messages, 3);
  t.equal(after.turns, 1);
  t.equal(category(real, 'conversations').detail.messages, 8);
});

t.test('each batch is its own short transaction of at most batch_size rows examined', async (t) => {
  const h = home(t, { runs_days: 30, batch_size: 3 });
  for (let i = 0; i < 10; i++) seedRun(h.store, { id: `old-${String(i).padStart(2, '0')}`, state: 'succeeded', createdDaysAgo: 40 });
  seedRun(h.store, { id: 'young', state: 'succeeded', createdDaysAgo: 2 });
  const calls: Array<{ inUnit: boolean; runs: number }> = [];
  const inner = runsTarget(h.store);
  const spy: RetentionTarget = {
    name: 'runs',
    sweep(req) {
      const b = inner.sweep(req);
      calls.push({ inUnit: h.store.inUnit(), runs: b.detail?.runs ?? 0 });
      return b;
    },
  };
  const s = new Sweeper({ store: h.store, audit: h.audit, retention: h.config.retention, now: () => NOW });
  s.register(spy, 30);
  const commits = h.store.commitStats().commits;
  const r = await s.sweep();
  t.same(calls.map((c) => c.runs), [3, 3, 3, 1], 'ten expired runs in batches of three; the fourth batch reaches the young run and stops');
  t.ok(calls.every((c) => c.inUnit), 'every batch ran inside a store unit');
  t.equal(category(r, 'runs').batches, 4);
  // Four batches, each awaited until durable before the next, plus the audit entry: separate commits.
  t.ok(h.store.commitStats().commits - commits >= 5, `each batch committed on its own (${h.store.commitStats().commits - commits} commits)`);
  t.same(runIds(h.dir), ['young']);
});

t.test('stop() lets the batch in progress commit and ends the sweep there', async (t) => {
  const h = home(t, { runs_days: 30, batch_size: 3 });
  for (let i = 0; i < 10; i++) seedRun(h.store, { id: `old-${String(i).padStart(2, '0')}`, state: 'succeeded', createdDaysAgo: 40 });
  const s = sweeperOf(h);
  const p = s.sweep();
  await s.stop();
  const r = await p;
  t.equal(r.interrupted, true);
  t.equal(category(r, 'runs').detail.runs, 3, 'the first batch (already running) committed');
  t.equal(runIds(h.dir).length, 7, 'nothing after it');
  const entry = listAudit(h.store, { type: 'retention.swept' });
  t.equal(entry.length, 1, 'the partial sweep is audited');
  t.match(entry[0]!.data, { rows: category(r, 'runs').rows, interrupted: true });
});

t.test('the outbox loses its oldest events only, never the newest; schedule fire records go with runs_days', async (t) => {
  const h = home(t, { runs_days: 30, events_days: 7, batch_size: 2 });
  seedEvents(h.store, [30, 20, 10, 5, 40]);
  h.store.tx(() => {
    h.store.schedules.insert({ id: 'sch_1', name: 's', kind: 'interval', cron: null, timezone: 'UTC', every_ms: 60_000, anchor_at: 0, target: '{"type":"agent_turn","prompt":"p"}', missed_policy: 'skip', state: 'active', next_fire_at: NOW, last_fire_at: null, fires: 3, missed: 0, created_by: 'cli', created_at: 0, updated_at: 0 });
    for (const d of [50, 31, 29]) h.store.schedules.insertFire({ schedule_id: 'sch_1', fire_at: NOW - d * DAY, ticks: 1, fired_at: NOW - d * DAY, owner: 'o', run_id: null, conversation_id: null, message_id: null, workflow_id: null, error: null });
  });
  const r = await sweeperOf(h).sweep();
  t.equal(category(r, 'events').rows, 3, 'the prefix older than 7 days; the 5-day-old event ends it');
  const left = h.store.outbox.after(0, 10).map((e) => e.event_id);
  t.same(left, ['ev-3-5', 'ev-4-40'], 'the newest event stays however old (a client cursor may point at it)');
  t.equal(category(r, 'schedule_fires').rows, 2);
  t.same(h.store.schedules.fires('sch_1', 10).map((f) => (NOW - f.fire_at) / DAY), [29]);
});

t.test('conversations: kept by default; when set, only idle ones go, children first, never one still in use', async (t) => {
  const keep = home(t, { runs_days: 30 });
  seedConversation(keep.store, 'conv_old', 400, 3);
  const r0 = await sweeperOf(keep).sweep();
  t.match(category(r0, 'conversations'), { days: null, rows: 0, batches: 0 });
  t.equal(counts(keep.dir).conversations, 1);

  const h = home(t, { runs_days: 30, conversations_days: 30, batch_size: 2 });
  seedConversation(h.store, 'conv_long', 60, 7);
  seedConversation(h.store, 'conv_running', 60, 2, 'running');
  seedConversation(h.store, 'conv_queued', 60, 2, 'queued');
  seedConversation(h.store, 'conv_recent', 5, 2);
  const r = await sweeperOf(h).sweep();
  const c = category(r, 'conversations');
  t.same(c.detail, { messages: 7, turns: 1, conversations: 1 });
  t.ok(c.batches >= 5, `nine rows in batches of at most two (${c.batches} batches)`);
  t.same(h.store.conversations.conversations(10).map((x) => x.id).sort(), ['conv_queued', 'conv_recent', 'conv_running']);
});

t.test('after a sweep the audit chain still verifies, and the entry has counts, never content', async (t) => {
  const h = home(t, { runs_days: 30, conversations_days: 30 });
  seedRun(h.store, { id: 'old', state: 'succeeded', createdDaysAgo: 40 });
  seedConversation(h.store, 'conv_x', 60, 2);
  await h.audit.append('test.before', { kind: 'cli' }, { n: 1 });
  const r = await sweeperOf(h).sweep();
  t.ok(r.rows > 0);
  await h.audit.flush();
  const v = verifyAudit({ store: h.store, verifier: h.key, checkpointPath: h.paths.auditCheckpoint });
  t.equal(v.ok, true, v.reason ?? 'verifies');
  const [entry] = listAudit(h.store, { type: 'retention.swept' });
  t.ok(entry);
  t.match(entry!.data, { rows: r.rows, bytes: r.bytes, categories: { runs: { rows: category(r, 'runs').rows, detail: { runs: 1 } } } });
  const text = JSON.stringify(entry);
  t.notMatch(text, /hello|private words/, 'no content of the removed rows');
  // A sweep that removes nothing writes no entry.
  const again = await sweeperOf(h).sweep();
  t.equal(again.rows, 0);
  t.equal(listAudit(h.store, { type: 'retention.swept' }).length, 1);
});

t.test('retention config: defaults, null keeps forever, events may not outlive runs, bad values refused', async (t) => {
  const d = buildConfig('/h', {});
  t.same(d.retention, { runsDays: 30, eventsDays: 7, artifactsDays: 30, conversationsDays: null, sweepIntervalMs: 3_600_000, batchSize: 500 });
  const n = buildConfig('/h', { retention: { runs_days: null, events_days: null, sweep_interval_ms: null, batch_size: 10 } });
  t.match(n.retention, { runsDays: null, eventsDays: null, sweepIntervalMs: null, batchSize: 10 });
  t.throws(() => buildConfig('/h', { retention: { runs_days: 5 } }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /events_days: must be at most runs_days \(5\)/ });
  t.throws(() => buildConfig('/h', { retention: { runs_days: 30, events_days: null } }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /events_days/ });
  t.throws(() => buildConfig('/h', { retention: { runs_days: 0 } }), { code: 'TYRUM_ERR_INVALID_CONFIG', message: /runs_days/ });
  t.throws(() => buildConfig('/h', { retention: { batch_size: 0 } }), { code: 'TYRUM_ERR_INVALID_CONFIG' });
  t.throws(() => buildConfig('/h', { retention: { sweep_interval_ms: 10 } }), { code: 'TYRUM_ERR_INVALID_CONFIG' });
  t.throws(() => buildConfig('/h', { retention: { logs_days: 3 } }), { code: 'TYRUM_ERR_INVALID_CONFIG' }, 'the gateway writes no log files: there is no logs_days');
});

t.test('register refuses a duplicate or badly named category and bad days', async (t) => {
  const h = home(t);
  const s = sweeperOf(h);
  t.same(s.names(), ['runs', 'schedule_fires', 'events', 'conversations', 'workflows'], 'no artifacts target without a blob store');
  const target: RetentionTarget = { name: 'artifacts', sweep: (req) => ({ rows: 0, bytes: 0, cursor: req.cursor, done: true }) };
  s.register(target, 30);
  t.throws(() => s.register(target, 30), { code: 'TYRUM_ERR_CONFLICT' });
  t.throws(() => s.register({ ...target, name: 'Bad Name' }, 30), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => s.register({ ...target, name: 'other' }, 0), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  const r = await s.sweep({ dryRun: true });
  t.match(category(r, 'artifacts'), { days: 30, batches: 1, rows: 0 });
});

t.test('a target that makes no progress is an error, not an endless sweep', async (t) => {
  const h = home(t);
  const s = new Sweeper({ store: h.store, audit: h.audit, retention: h.config.retention, now: () => NOW });
  s.register({ name: 'stuck', sweep: (req) => ({ rows: 0, bytes: 0, cursor: req.cursor, done: false }) }, 1);
  await t.rejects(s.sweep({ dryRun: true }), { code: 'TYRUM_ERR_INTERNAL', message: /stuck made no progress/ });
});
