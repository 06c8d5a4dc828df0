import t from 'tap';
import { setup, eventually, WORLD_STORE } from './fixtures/world.js';

const me = 'tok_alice';

function gate(): { wait: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

t.test('a worker that stalls past its lease loses it: its late write is rejected and the step has one result (A3)', async (t) => {
  const env = setup(t, { start: false });
  const logs: string[] = [];
  // A never renews (its event loop is "frozen" as far as the lease is concerned).
  const a = env.reopen({ owner: 'worker-A', leaseMs: 150, heartbeatMs: 60_000, log: (_l, m) => logs.push(m) });
  const b = env.reopen({ owner: 'worker-B', leaseMs: 150 });
  const stall = gate();
  env.world.beforeCall = async (call, ctx) => {
    if (ctx.attempt === 1) await stall.wait;
  };
  const { run } = await a.engine.submit({ kind: 'tool', steps: [{ tool_id: 'flaky.read', args: {} }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, "A's call");
  b.engine.start();
  const done = await b.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded', 'B took over after the lease expired and finished the run');
  stall.open();
  await eventually(() => logs.includes('lease lost; late write rejected'), 5000, "A's rejected write");

  const final = env.engine.get(run.id);
  t.equal(final.run.state, 'succeeded');
  t.same(final.steps[0]?.result, { ok: true, attempt: 2 }, "the result is B's");
  t.match(final.steps[0]?.attempts, [
    { n: 1, owner: 'worker-A', fencing_token: 1, state: 'interrupted' },
    { n: 2, owner: 'worker-B', fencing_token: 2, state: 'succeeded' },
  ]);
  const succeededEvents = env.events.after(0, 1000).filter((e) => e.type === 'step.updated' && e.payload.state === 'succeeded');
  t.equal(succeededEvents.length, 1, 'one result event for the step');
});

t.test('a stalled worker on a non-idempotent step: the new owner pauses it as outcome_unknown, the stale result is rejected', async (t) => {
  const env = setup(t, { start: false });
  const logs: string[] = [];
  const a = env.reopen({ owner: 'worker-A', leaseMs: 150, heartbeatMs: 60_000, log: (_l, m) => logs.push(m) });
  const b = env.reopen({ owner: 'worker-B', leaseMs: 150 });
  const stall = gate();
  env.world.beforeCall = async () => stall.wait;
  const { run } = await a.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'mail.send', args: { to: 'x' } }, { tool_id: 'echo', args: {} }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, "A's call");
  b.engine.start();
  const paused = await b.engine.wait(run.id, 5000);
  t.equal(paused.run.pause_reason, 'outcome_unknown');
  t.equal(env.world.calls({ run_id: run.id }).length, 1, 'B did not re-send the mail');
  stall.open();
  await eventually(() => logs.includes('lease lost; late write rejected'), 5000, "A's rejected write");
  t.equal(env.engine.get(run.id).steps[0]?.state, 'outcome_unknown', "A's late success did not overwrite the operator's question");
  // The mail did go out (A's call completed), so the operator skips the step; the run continues.
  t.equal(env.world.effects({ run_id: run.id, tool_id: 'mail.send' }).length, 1);
  env.world.beforeCall = null;
  await b.engine.resolveUnknown(run.id, 0, 'skip', { kind: 'token', id: 'tok_op' });
  const done = await b.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.same(done.steps.map((s) => s.state), ['skipped', 'succeeded']);
  t.equal(env.world.effects({ run_id: run.id, tool_id: 'mail.send' }).length, 1, 'exactly one mail');
});

t.test('fenced writes under an old token match nothing', async (t) => {
  const env = setup(t, { start: false });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  const s = env.store;
  const first = s.tx(() => s.execution.claim(run.id, 'A', Date.now(), 0))!;
  t.equal(first.fencing_token, 1);
  const second = s.tx(() => s.execution.claim(run.id, 'B', Date.now(), 60_000))!;
  t.equal(second.fencing_token, 2, 'each claim increments the token');
  const stale = { owner: 'A', token: 1 };
  t.equal(s.execution.updateStep(run.id, 0, { state: 'succeeded', updated_at: 1 }, { fence: stale }), undefined);
  t.equal(s.execution.updateRun(run.id, { state: 'succeeded', updated_at: 1 }, { fence: stale }), undefined);
  t.equal(
    s.execution.insertAttempt({ run_id: run.id, step_idx: 0, n: 1, state: 'started', owner: 'A', fencing_token: 1, started_at: 1, finished_at: null, duration_ms: null, usage: null, result: null, error: null, evidence: null }, stale),
    false,
  );
  t.equal(s.execution.renewLease(run.id, stale, Date.now(), 1000), false);
  t.ok(s.execution.updateStep(run.id, 0, { updated_at: 2 }, { fence: { owner: 'B', token: 2 } }), 'the current holder can write');
  t.equal(s.execution.getRun(run.id)?.lease_owner, 'B');
  t.equal(s.execution.claim(run.id, 'C', Date.now(), 1000), undefined, 'a live lease cannot be claimed');
});

t.test('the heartbeat keeps a long call leased, so no other worker takes it over', async (t) => {
  const env = setup(t, { start: false });
  const a = env.reopen({ owner: 'worker-A', leaseMs: 120 });
  const b = env.reopen({ owner: 'worker-B', leaseMs: 120 });
  const { run } = await a.engine.submit({ kind: 'tool', steps: [{ tool_id: 'slow.write', args: { ms: 600 } }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, 'call started');
  b.engine.start();
  const done = await a.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.equal(env.world.calls({ run_id: run.id }).length, 1);
  t.equal(done.steps[0]?.attempts.length, 1);
  t.equal(done.steps[0]?.attempts[0]?.owner, 'worker-A');
});

t.test('a worker that notices its lease was taken aborts the call in flight', async (t) => {
  const env = setup(t, { start: false });
  const a = env.reopen({ owner: 'worker-A', leaseMs: 5_000, heartbeatMs: 20 });
  let aborted = false;
  env.world.beforeCall = async (_call, ctx) => {
    await new Promise((r) => {
      setTimeout(r, 5000).unref();
      ctx.signal.addEventListener('abort', r);
    });
    aborted = ctx.signal.aborted;
  };
  const { run } = await a.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, 'call started');
  // Another worker takes the run (as if A's lease had run out while it was frozen).
  env.store.tx(() => {
    env.store.execution.updateRun(run.id, { lease_expires_at: 0 });
    env.store.execution.claim(run.id, 'worker-B', Date.now(), 60_000);
  });
  await eventually(() => aborted, 5000, 'abort signal');
  t.ok(aborted);
  t.equal(env.engine.get(run.id).run.lease?.owner, 'worker-B');
});

// Replicas with skewed clocks (the engine's injected `now`): on PostgreSQL leases are measured on
// the server's clock (docs/dev/cluster-leases.md, "Whose clock"). On SQLite (one process, one
// clock) the caller's clock is the lease clock, so these hold on PostgreSQL only.
const skewSkip = WORLD_STORE === 'postgres' ? false : 'leases use the database clock on PostgreSQL only (TYRUM_TEST_STORE=postgres)';
const SKEW = 10 * 60_000;

t.test('a worker whose clock runs 10 min ahead does not take over a live lease', { skip: skewSkip }, async (t) => {
  const env = setup(t, { start: false });
  const a = env.reopen({ owner: 'worker-A', leaseMs: 1_500 });
  const fast = env.reopen({ owner: 'worker-F', leaseMs: 1_500, now: () => Date.now() + SKEW });
  const { run } = await a.engine.submit({ kind: 'tool', steps: [{ tool_id: 'slow.write', args: { ms: 2_500 } }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, 'call started');
  fast.engine.start();
  const done = await a.engine.wait(run.id, 10_000);
  t.equal(done.run.state, 'succeeded');
  t.equal(env.world.calls({ run_id: run.id }).length, 1, 'the step ran once');
  t.match(done.steps[0]?.attempts, [{ n: 1, owner: 'worker-A', fencing_token: 1, state: 'succeeded' }], "A kept its lease through F's looks");
});

t.test('a lease taken by a worker whose clock runs 10 min ahead expires after its length, not 10 min later', { skip: skewSkip }, async (t) => {
  const env = setup(t, { start: false });
  const logs: string[] = [];
  // F never renews (stalled), and its clock is 10 min ahead.
  const f = env.reopen({ owner: 'worker-F', leaseMs: 300, heartbeatMs: 60_000, now: () => Date.now() + SKEW, log: (_l, m) => logs.push(m) });
  const b = env.reopen({ owner: 'worker-B', leaseMs: 300 });
  const stall = gate();
  env.world.beforeCall = async (_call, ctx) => {
    if (ctx.attempt === 1) await stall.wait;
  };
  const { run } = await f.engine.submit({ kind: 'tool', steps: [{ tool_id: 'flaky.read', args: {} }], created_by: me });
  f.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, "F's call");
  b.engine.start();
  const done = await b.engine.wait(run.id, 10_000);
  t.equal(done.run.state, 'succeeded', 'B took the run over once the lease ran out on the server clock');
  stall.open();
  await eventually(() => logs.includes('lease lost; late write rejected'), 5000, "F's rejected write");
  t.match(env.engine.get(run.id).steps[0]?.attempts, [
    { n: 1, owner: 'worker-F', fencing_token: 1, state: 'interrupted' },
    { n: 2, owner: 'worker-B', fencing_token: 2, state: 'succeeded' },
  ]);
});

t.test('a cancel from a worker whose clock runs 10 min ahead does not take a live lease for free: the run is asked to stop, its call finishes', { skip: skewSkip }, async (t) => {
  const env = setup(t, { start: false });
  const a = env.reopen({ owner: 'worker-A', leaseMs: 5_000 });
  const fast = env.reopen({ owner: 'worker-F', leaseMs: 5_000, now: () => Date.now() + SKEW });
  const stall = gate();
  env.world.beforeCall = async () => stall.wait;
  const { run } = await a.engine.submit({ kind: 'tool', steps: [{ tool_id: 'slow.read', args: { ms: 10 } }], created_by: me });
  a.engine.start();
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, "A's call started");
  const asked = await fast.engine.cancel(run.id, { kind: 'principal', id: me });
  t.equal(asked.state, 'running', 'not cancelled at once: A holds a live lease on the server clock');
  t.match(env.engine.get(run.id).steps[0]?.attempts, [{ n: 1, owner: 'worker-A', state: 'started' }], "A's attempt was not cut by F");
  stall.open();
  const done = await a.engine.wait(run.id, 10_000);
  t.equal(done.run.state, 'cancelled', 'A stops the run at its next safe point');
});
