import t from 'tap';
import { isTyrumError } from '../../../core/errors/index.js';
import { argsHash } from '../../../core/approvals/index.js';
import { setup, eventually, flushAudit } from './fixtures/world.js';

const me = 'tok_alice';

t.test('a tool run executes once and records its evidence: decision, snapshot, hashes, result, duration, usage', async (t) => {
  const env = setup(t);
  const { run, existing } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'kv.read', args: { key: 'a' } }], created_by: me });
  t.equal(existing, false);
  t.equal(run.state, 'queued');
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.same(done.run.result, { value: 42, key: 'a' });
  t.equal(done.run.lease, null, 'a finished run holds no lease');
  const [step] = done.steps;
  t.match(step, {
    state: 'succeeded',
    idempotent: true,
    max_attempts: 3,
    policy: { decision: 'allow', enforced: true, snapshot_id: 'pol_test', detail: { rules: ['rule:allow'] } },
    definition_hash: 'def_kv.read',
    plugin_digest: 'sha256:kv',
    args_hash: argsHash({ key: 'a' }),
    result: { value: 42, key: 'a' },
    duration_ms: 1,
    usage: { host_calls: 1 },
  });
  t.equal(step?.attempts.length, 1);
  t.match(step?.attempts[0], { n: 1, state: 'succeeded', owner: env.engine.owner });
  t.equal(env.world.calls({ run_id: run.id }).length, 1, 'the tool was called exactly once');
  await flushAudit(env.audit);
  const types = env.audit.list({ limit: 100 }).map((e) => e.type);
  t.ok(types.includes('run.submitted') && types.includes('step.finished') && types.includes('run.finished'), 'submission, step and run are audited');
  t.ok(env.verifyAudit().ok);
});

t.test('a workflow runs its steps in order and reports every output', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({
    kind: 'workflow',
    steps: [
      { tool_id: 'echo', args: { n: 1 } },
      { tool_id: 'pay.charge', args: { amount: 5 }, idempotency_key: 'pay-1' },
      { tool_id: 'mail.send', args: { to: 'bob' } },
    ],
    created_by: me,
  });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.same(done.run.result, [{ n: 1 }, { charged: 5, receipt: 'pay-1', replay: false }, { sent: true, to: 'bob', secret: null }]);
  t.same(env.world.calls({ run_id: run.id }).map((c) => c.step_idx), [0, 1, 2]);
  t.same(done.steps.map((s) => s.idempotent), [true, true, false], 'an idempotency key makes a state-changing step idempotent');
  t.same(done.steps.map((s) => s.max_attempts), [3, 3, 1]);
});

t.test('a denied call fails with policy_denied, never runs, and the later steps are cancelled', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'forbidden.op', args: {} }, { tool_id: 'echo', args: {} }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_POLICY_DENIED', wire: 'policy_denied' });
  t.match(done.steps[0], { state: 'failed', policy: { decision: 'deny', snapshot_id: 'pol_test' }, attempts: [] });
  t.equal(done.steps[1]?.state, 'cancelled');
  t.equal(env.world.calls({ run_id: run.id }).length, 0);
  // Progress: the engine still runs other work.
  const ok = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  t.equal((await env.engine.wait(ok.run.id, 5000)).run.state, 'succeeded');
});

t.test('observe-only policy records the decision but does not enforce it', async (t) => {
  const env = setup(t);
  env.world.enforced = false;
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'forbidden.op', args: {} }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.match(done.steps[0]?.policy, { decision: 'deny', enforced: false });
});

t.test('an unknown tool fails the step with not_found', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'no.such', args: {} }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.match(done.run.error, { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('retryable errors of an idempotent step are retried with exponential backoff up to max_attempts', async (t) => {
  const env = setup(t, { backoff: { baseMs: 40, maxMs: 1000 } });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'flaky.read', args: { fail: 2 } }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  const attempts = done.steps[0]!.attempts;
  t.same(attempts.map((a) => a.state), ['failed', 'failed', 'succeeded']);
  t.match(attempts[0]?.error, { code: 'TYRUM_ERR_SANDBOX_CRASH' });
  const gap1 = attempts[1]!.started_at - attempts[0]!.finished_at!;
  const gap2 = attempts[2]!.started_at - attempts[1]!.finished_at!;
  t.ok(gap1 >= 40, `first backoff ${gap1} ms >= 40`);
  t.ok(gap2 >= 80, `second backoff ${gap2} ms >= 80 (doubled)`);

  const exhausted = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'flaky.read', args: { fail: 5 }, max_attempts: 2 }], created_by: me });
  const failed = await env.engine.wait(exhausted.run.id, 5000);
  t.equal(failed.run.state, 'failed');
  t.equal(failed.steps[0]?.attempts.length, 2, 'max_attempts bounds the retries');
});

t.test('a non-retryable error fails at once', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'broken.read', args: {} }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.equal(done.steps[0]?.attempts.length, 1);
  t.match(done.run.error, { code: 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR', message: 'plugin said no' });
});

t.test('a step timeout aborts the call: an idempotent step fails without a retry (a spent budget is deterministic), a non-idempotent one waits for an operator', async (t) => {
  const env = setup(t);
  const started = Date.now();
  const ro = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'slow.read', args: { ms: 5000 }, timeout_ms: 50, max_attempts: 2 }], created_by: me });
  const roDone = await env.engine.wait(ro.run.id, 5000);
  t.ok(Date.now() - started < 3000, 'the timeout cut the call short');
  t.equal(roDone.run.state, 'failed');
  t.same(roDone.steps[0]?.attempts.map((a) => a.error?.code), ['TYRUM_ERR_TIMEOUT'], 'one attempt: the time budget is not retried');
  t.equal(env.world.calls({ run_id: ro.run.id }).length, 1);

  const rw = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'slow.write', args: { ms: 5000 }, timeout_ms: 50 }], created_by: me });
  const rwDone = await env.engine.wait(rw.run.id, 5000);
  t.equal(rwDone.run.state, 'paused');
  t.equal(rwDone.run.pause_reason, 'outcome_unknown');
  t.match(rwDone.steps[0], { state: 'outcome_unknown', error: { code: 'TYRUM_ERR_OUTCOME_UNKNOWN' } });
  t.equal(env.world.calls({ run_id: rw.run.id }).length, 1, 'never silently re-run');
  // The operator says it did not happen: fail it.
  const failed = await env.engine.resolveUnknown(rw.run.id, 0, 'fail', { kind: 'token', id: 'tok_op' });
  t.equal(failed.state, 'failed');
});

t.test('a failed postcondition is never reported as success; the output is kept as evidence', async (t) => {
  const env = setup(t);
  const bad = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { status: 'error' }, postcondition: { path: '/status', equals: 'ok' } }], created_by: me });
  const missing = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {}, postcondition: { path: '/status', exists: true } }], created_by: me });
  const good = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { id: 'abc-123' }, postcondition: { path: '/id', matches: '^abc-[0-9]+$' } }], created_by: me });
  const b = await env.engine.wait(bad.run.id, 5000);
  t.equal(b.run.state, 'failed');
  t.match(b.run.error, { code: 'TYRUM_ERR_POSTCONDITION_FAILED', message: /differs/ });
  t.match(b.steps[0], { state: 'failed', result: null, attempts: [{ state: 'failed', result: { status: 'error' } }] });
  const m = await env.engine.wait(missing.run.id, 5000);
  t.match(m.run.error, { code: 'TYRUM_ERR_POSTCONDITION_FAILED', message: /no value/ });
  t.equal((await env.engine.wait(good.run.id, 5000)).run.state, 'succeeded');
});

t.test('an output that cannot be recorded fails the step instead of passing unrecorded', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'weird.read', args: {}, max_attempts: 1 }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_INTERNAL', message: /could not be recorded/ });
});

t.test('results and errors are redacted before they are stored', async (t) => {
  const env = setup(t, { redact: (v) => JSON.parse(JSON.stringify(v ?? null).replaceAll('hunter2', '[REDACTED]')) });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'mail.send', args: { to: 'x', secret: 'hunter2' } }], created_by: me });
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.steps[0]?.result && (done.steps[0].result as { secret: string }).secret, '[REDACTED]');
  t.equal((done.steps[0]?.args as { secret: string }).secret, '[REDACTED]');
  const raw = JSON.stringify(env.store.execution.attempts(run.id)) + JSON.stringify(env.store.execution.getRun(run.id));
  t.notMatch(raw, /hunter2/, 'the secret is in no stored result');
});

t.test('cancel: a queued run is cancelled at once, a running one at the next safe point', async (t) => {
  const env = setup(t, { start: false });
  const queued = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  const c = await env.engine.cancel(queued.run.id, { kind: 'token', id: 'tok_op' });
  t.equal(c.state, 'cancelled');
  t.equal((await env.engine.cancel(queued.run.id, { kind: 'token', id: 'tok_op' })).state, 'cancelled', 'cancelling twice is harmless');

  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  env.world.beforeCall = async (call) => {
    if (call.step_idx === 0) await gate;
  };
  env.engine.start();
  const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'echo', args: { a: 1 } }, { tool_id: 'mail.send', args: {} }], created_by: me });
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, 'first step in flight');
  const mid = await env.engine.cancel(run.id, { kind: 'token', id: 'tok_op' });
  t.equal(mid.state, 'running');
  t.equal(mid.cancel_requested, true);
  release();
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'cancelled');
  t.same(done.steps.map((s) => s.state), ['succeeded', 'cancelled'], 'the call in flight finished; the next never started');
  t.equal(env.world.calls({ run_id: run.id, step_idx: 1 }).length, 0);
  const finished = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { z: 1 } }], created_by: me });
  await env.engine.wait(finished.run.id, 5000);
  await t.rejects(env.engine.cancel(finished.run.id, { kind: 'cli' }), { code: 'TYRUM_ERR_INVALID_STATE' });
});

t.test('wait returns the current state when the time is up, without polling in a tight loop', async (t) => {
  const env = setup(t);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  env.world.beforeCall = () => gate;
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: me });
  const reads: number[] = [];
  const get = env.store.execution.getRun.bind(env.store.execution);
  env.store.execution.getRun = (id) => {
    if (id === run.id) reads.push(Date.now());
    return get(id);
  };
  const t0 = Date.now();
  const cur = await env.engine.wait(run.id, 150);
  t.ok(Date.now() - t0 >= 140);
  t.equal(cur.run.state, 'running');
  t.ok(reads.length < 10, `few reads while waiting (${reads.length})`);
  release();
  t.equal((await env.engine.wait(run.id, 5000)).run.state, 'succeeded');
});

t.test('list pages through runs newest first and filters by state', async (t) => {
  const env = setup(t, { start: false });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { i } }], created_by: me })).run.id);
  const page1 = env.engine.list({ limit: 3 });
  const page2 = env.engine.list({ limit: 3, after: page1[2]!.id });
  t.same([...page1, ...page2].map((r) => r.id), [...ids].reverse());
  t.equal(env.engine.list({ state: 'succeeded' }).length, 0);
  env.engine.start();
  for (const id of ids) await env.engine.wait(id, 5000);
  t.equal(env.engine.list({ state: 'succeeded' }).length, 5);
  t.throws(() => env.engine.list({ limit: 0 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
});

t.test('malformed submissions are rejected before anything is stored', async (t) => {
  const env = setup(t, { start: false });
  const bad: unknown[] = [
    { kind: 'tool', steps: [], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {} }, { tool_id: 'echo', args: {} }], created_by: me },
    { kind: 'job', steps: [{ tool_id: 'echo', args: {} }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: [] }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: { n: Infinity } }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {}, max_attempts: 0 }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {}, timeout_ms: 1.5 }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {}, approved: true }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {}, postcondition: { path: 'x', exists: true } }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {}, postcondition: { path: '/x', matches: '(' } }], created_by: me },
    { kind: 'tool', steps: [{ tool_id: 'echo', args: {} }], created_by: '' },
  ];
  for (const input of bad) {
    t.throws(() => env.engine.submit(input as never), { code: 'TYRUM_ERR_INVALID_REQUEST' }, JSON.stringify(input));
  }
  t.equal(env.engine.list().length, 0);
});

t.test('get of an unknown run is not_found', async (t) => {
  const env = setup(t, { start: false });
  t.throws(() => env.engine.get('run_nope'), { code: 'TYRUM_ERR_NOT_FOUND' });
  await t.rejects(Promise.resolve().then(() => env.engine.wait('run_nope', 10)), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('stop releases the run at a safe point and another engine finishes it without repeating the done step', async (t) => {
  const env = setup(t);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  env.world.beforeCall = async (call) => {
    if (call.step_idx === 0) await gate;
  };
  const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'echo', args: { a: 1 } }, { tool_id: 'echo', args: { b: 2 } }], created_by: me });
  await eventually(() => env.world.calls({ run_id: run.id }).length === 1, 5000, 'first call');
  const stopping = env.engine.stop();
  release();
  await stopping;
  const after = env.engine.get(run.id);
  t.equal(after.run.state, 'queued', 'released for the next worker');
  t.equal(after.steps[0]?.state, 'succeeded');
  env.world.beforeCall = null;
  const other = env.reopen();
  other.engine.start();
  const done = await other.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.same(env.world.calls({ run_id: run.id }).map((c) => c.step_idx), [0, 1], 'step 0 ran once');
});

t.test('TyrumErrors thrown by submit carry wire codes', async (t) => {
  const env = setup(t, { start: false });
  try {
    await env.engine.submit({ kind: 'tool', steps: [], created_by: me });
    t.fail('should throw');
  } catch (e) {
    t.ok(isTyrumError(e, 'TYRUM_ERR_INVALID_REQUEST'));
    t.equal(isTyrumError(e) && e.wire, 'invalid_request');
  }
});

t.test('a caller still waiting on a run when the engine stops is answered, and its recheck never touches a closed store', async (t) => {
  const env = setup(t, { start: false });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'kv.read', args: { key: 'a' } }], created_by: me });
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => process.off('uncaughtException', onUncaught));
  // The engine never starts, so the run stays queued and the caller would wait the full minute.
  const waiting = env.engine.wait(run.id, 60_000);
  await env.close();
  const settled = await Promise.race([
    waiting.then(
      (d) => ({ ok: true as const, state: d.run.state }),
      (e: unknown) => ({ ok: false as const, e }),
    ),
    new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000)),
  ]);
  t.not(settled, 'hung', 'the waiting caller is answered when the engine stops');
  t.match(settled, { ok: true, state: 'queued' }, 'with the run as it stood');
  // Past the 1 s recheck: a timer left behind would read the closed store and throw.
  await new Promise((r) => setTimeout(r, 1500));
  t.same(uncaught, [], 'no timer fired against the closed store');
});

t.test("the run's tenant reaches the executor from the engine, also for a run taken at once (whose row is written only with its first commit)", async (t) => {
  const env = setup(t);
  await env.store.commit(() => env.store.tenants.insert({ id: 'acme', label: 'Acme', created_at: 1 }));
  const seen: Array<{ where: string; run_id: string; tenant: string }> = [];
  env.world.beforeCall = async (call) => {
    seen.push({ where: 'execute', run_id: call.run_id, tenant: call.tenant_id });
  };
  const now = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { a: 1 } }], created_by: me, tenant_id: 'acme' }, { runNow: true });
  const queued = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { a: 2 } }], created_by: me, tenant_id: 'acme' });
  const host = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'echo', args: { a: 3 } }], created_by: me }, { runNow: true });
  for (const r of [now, queued, host]) t.equal((await env.engine.wait(r.run.id, 5000)).run.state, 'succeeded');
  const of = (id: string) => seen.filter((s) => s.run_id === id).map((s) => `${s.where}:${s.tenant}`);
  t.same(of(now.run.id), ['execute:acme'], 'taken at once: the tenant from the submission, not a store read');
  t.same(of(queued.run.id), ['execute:acme'], 'queued: the tenant from the store');
  t.same(of(host.run.id), ['execute:default']);
  t.equal(env.store.execution.runTenant(now.run.id), 'acme', 'and the stored run is the tenant\'s');
});
