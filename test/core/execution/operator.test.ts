import t from 'tap';
import { setup } from './fixtures/world.js';

const me = 'tok_alice';
const operator = { kind: 'token', id: 'tok_op' };

/** A run left behind by a dead worker: leased by it (expired) with an attempt still 'started'. */
async function abandoned(env: ReturnType<typeof setup>, toolId: string) {
  const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: toolId, args: {} }, { tool_id: 'echo', args: {} }], created_by: me });
  const s = env.store;
  s.tx(() => {
    const claimed = s.execution.claim(run.id, 'dead-worker', Date.now(), 0)!; // expired at once
    const fence = { owner: 'dead-worker', token: claimed.fencing_token };
    s.execution.insertAttempt({ run_id: run.id, step_idx: 0, n: 1, state: 'started', owner: 'dead-worker', fencing_token: fence.token, started_at: 1, finished_at: null, duration_ms: null, usage: null, result: null, error: null, evidence: null }, fence);
    s.execution.updateStep(run.id, 0, { state: 'running', attempts: 1, idempotent: toolId === 'mail.send' ? 0 : 1, max_attempts: toolId === 'mail.send' ? 1 : 3, policy_decision: 'allow', policy_enforced: 1, policy_snapshot_id: 'pol_test', updated_at: 1 }, { fence });
  });
  return run.id;
}

t.test('a dead worker\'s in-flight non-idempotent step becomes outcome_unknown; retry runs it once more', async (t) => {
  const env = setup(t, { start: false });
  const id = await abandoned(env, 'mail.send');
  env.engine.start();
  const paused = await env.engine.wait(id, 5000);
  t.equal(paused.run.pause_reason, 'outcome_unknown');
  t.match(paused.steps[0], { state: 'outcome_unknown', attempts: [{ n: 1, state: 'interrupted', owner: 'dead-worker' }] });
  t.equal(env.world.calls({ run_id: id }).length, 0);
  await t.rejects(env.engine.resolveUnknown(id, 1, 'retry', operator), { code: 'TYRUM_ERR_INVALID_STATE' }, 'only the unknown step');
  await t.rejects(env.engine.resolveUnknown(id, 0, 'maybe' as never, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  await t.rejects(env.engine.resolveUnknown('run_nope', 0, 'retry', operator), { code: 'TYRUM_ERR_NOT_FOUND' });
  await env.engine.resolveUnknown(id, 0, 'retry', operator);
  await t.rejects(env.engine.resolveUnknown(id, 0, 'retry', operator), { code: 'TYRUM_ERR_INVALID_STATE' }, 'decided once');
  const done = await env.engine.wait(id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.match(done.steps[0]?.attempts, [{ n: 1, state: 'interrupted' }, { n: 2, state: 'succeeded' }]);
  t.equal(env.world.effects({ run_id: id, tool_id: 'mail.send' }).length, 1);
});

t.test('a dead worker\'s in-flight idempotent step is retried without asking anyone', async (t) => {
  const env = setup(t, { start: false });
  const id = await abandoned(env, 'kv.read');
  env.engine.start();
  const done = await env.engine.wait(id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.match(done.steps[0]?.attempts, [{ n: 1, state: 'interrupted', error: { code: 'TYRUM_ERR_STEP_INTERRUPTED' } }, { n: 2, state: 'succeeded' }]);
});

t.test('cancelling a run abandoned mid-call keeps the truth: the non-idempotent step stays outcome_unknown', async (t) => {
  const env = setup(t, { start: false });
  const id = await abandoned(env, 'mail.send');
  const c = await env.engine.cancel(id, operator);
  t.equal(c.state, 'cancelled');
  const r = env.engine.get(id);
  t.same(r.steps.map((s) => s.state), ['outcome_unknown', 'cancelled']);
  t.equal(r.steps[0]?.attempts[0]?.state, 'interrupted');
  t.ok(r.run.lease === null);
  // The dead worker's token no longer matches anything.
  t.equal(env.store.execution.updateStep(id, 0, { state: 'succeeded', updated_at: 2 }, { fence: { owner: 'dead-worker', token: 1 } }), undefined);
});

t.test('an operator can skip an unknown step and the run continues, or fail it and the run fails', async (t) => {
  // Both left behind before the engine starts: a running engine would take a fresh run first.
  const env = setup(t, { start: false });
  const a = await abandoned(env, 'mail.send');
  const b = await abandoned(env, 'mail.send');
  env.engine.start();
  await env.engine.wait(a, 5000);
  await env.engine.resolveUnknown(a, 0, 'skip', operator);
  const skipped = await env.engine.wait(a, 5000);
  t.equal(skipped.run.state, 'succeeded');
  t.same(skipped.run.result, [null, {}], 'a skipped step has no result');
  await env.engine.wait(b, 5000);
  const failed = await env.engine.resolveUnknown(b, 0, 'fail', operator);
  t.equal(failed.state, 'failed');
  t.same(env.engine.get(b).steps.map((s) => s.state), ['failed', 'cancelled']);
  t.equal(env.world.calls({ run_id: b }).length, 0);
});
