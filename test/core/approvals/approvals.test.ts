import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { argsHash, type Approval } from '../../../core/approvals/index.js';
import { isTyrumError } from '../../../core/errors/index.js';
import { setup, flushAudit, eventually, TOOLS, WORLD_STORE } from '../execution/fixtures/world.js';
import { PgBridge } from '../../../core/store/pg/bridge.js';
import { spawnFixture } from '../execution/fixtures/spawn.js';

const me = 'tok_alice';
const operator = { kind: 'token', id: 'tok_operator' };

function pendingFor(env: ReturnType<typeof setup>, runId: string): Approval {
  const [a] = env.approvals.list({ state: 'pending', run_id: runId });
  if (!a) throw new Error(`no pending approval for ${runId}`);
  return a;
}

t.test('a state-changing call waits for approval; approving resumes exactly that step, which runs once', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({
    kind: 'workflow',
    steps: [
      { tool_id: 'echo', args: { before: true } },
      { tool_id: 'deploy.prod', args: { version: '1.2.3' } },
      { tool_id: 'echo', args: { after: true } },
    ],
    created_by: me,
  });
  const paused = await env.engine.wait(run.id, 5000);
  t.equal(paused.run.state, 'paused');
  t.equal(paused.run.pause_reason, 'approval');
  t.equal(paused.run.lease, null, 'a paused run holds no lease');
  t.same(paused.steps.map((s) => s.state), ['succeeded', 'waiting_approval', 'pending']);
  const a = pendingFor(env, run.id);
  t.match(a, {
    run_id: run.id,
    step_idx: 1,
    tool_id: 'deploy.prod',
    args: { version: '1.2.3' },
    args_hash: argsHash({ version: '1.2.3' }),
    definition_hash: TOOLS['deploy.prod']!.definition_hash,
    plugin_digest: TOOLS['deploy.prod']!.plugin_digest,
    requested_by: me,
    state: 'pending',
    consumed_at: null,
  });
  t.equal(a.expires_at - a.created_at, 60_000, 'the TTL applies');
  t.equal(paused.steps[1]?.approval_id, a.id);
  t.match(paused.steps[1]?.policy, { decision: 'require_approval', snapshot_id: 'pol_test' });
  t.equal(env.world.calls({ run_id: run.id, step_idx: 1 }).length, 0, 'nothing ran before the approval');

  const { approval, create_override } = env.approvals.resolve(a.id, { decision: 'approved', reason: 'looks fine' }, operator);
  t.equal(approval.state, 'approved');
  t.equal(create_override, false);
  t.same(approval.resolved_by, operator);
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'succeeded');
  t.same(env.world.calls({ run_id: run.id }).map((c) => c.step_idx), [0, 1, 2], 'each step ran once, in order');
  t.ok(env.approvals.get(a.id).consumed_at, 'the approval was consumed');
  t.equal(done.steps[1]?.approval_id, a.id, 'the step carries the approval as evidence');

  const approvalEvents = env.events.after(0, 1000).filter((e) => e.type === 'approval.updated' && e.payload.approval_id === a.id);
  t.same(approvalEvents.map((e) => [e.payload.state, e.payload.consumed]), [['pending', false], ['approved', false], ['approved', true]]);
  await flushAudit(env.audit);
  const types = env.audit.list({ limit: 1000 }).map((e) => e.type);
  t.ok(types.includes('approval.requested') && types.includes('approval.resolved'));
  t.ok(env.verifyAudit().ok);
});

t.test('a denied approval fails the step with policy_denied; the tool never runs', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: {} }], created_by: me });
  await env.engine.wait(run.id, 5000);
  env.approvals.resolve(pendingFor(env, run.id).id, { decision: 'denied', reason: 'not today' }, operator);
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_APPROVAL_DENIED', wire: 'policy_denied', message: /not today/ });
  t.equal(env.world.calls({ run_id: run.id }).length, 0);
});

t.test('approving after expiry is invalid_state (expired), the tool never runs, and both are audited (C1)', async (t) => {
  const env = setup(t, { approvalTtlMs: 1000 });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { v: 1 } }], created_by: me });
  await env.engine.wait(run.id, 5000);
  const a = pendingFor(env, run.id);
  env.clock.advance(1500);
  let err: unknown;
  try {
    env.approvals.resolve(a.id, { decision: 'approved' }, operator);
  } catch (e) {
    err = e;
  }
  t.ok(isTyrumError(err, 'TYRUM_ERR_APPROVAL_EXPIRED'), 'expired');
  t.equal(isTyrumError(err) && err.wire, 'invalid_state');
  t.equal(env.approvals.get(a.id).state, 'expired');
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_APPROVAL_EXPIRED' });
  t.equal(env.world.calls({ run_id: run.id }).length, 0, 'the tool never ran');
  t.throws(() => env.approvals.resolve(a.id, { decision: 'approved' }, operator), { code: 'TYRUM_ERR_APPROVAL_EXPIRED' }, 'still expired on a second try');
  await flushAudit(env.audit);
  const entries = env.audit.list({ limit: 1000 });
  t.equal(entries.filter((e) => e.type === 'approval.expired' && e.data.approval_id === a.id).length, 1, 'the expiry is audited once');
  const rejected = entries.filter((e) => e.type === 'approval.resolve_rejected' && e.data.approval_id === a.id);
  t.equal(rejected.length, 2, 'each refused approval is audited');
  t.same(rejected[0]?.actor, operator);
  t.equal(rejected[0]?.data.reason, 'expired');

  // Progress: a fresh request is approved and runs.
  const next = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { v: 2 } }], created_by: me });
  await env.engine.wait(next.run.id, 5000);
  env.approvals.resolve(pendingFor(env, next.run.id).id, { decision: 'approved' }, operator);
  t.equal((await env.engine.wait(next.run.id, 5000)).run.state, 'succeeded');
});

t.test('an approval that expires while the gateway is down is expired once, at restart (C2)', async (t) => {
  const env = setup(t, { approvalTtlMs: 1000 });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: {} }], created_by: me });
  await env.engine.wait(run.id, 5000);
  const a = pendingFor(env, run.id);
  await env.close(); // the gateway goes down
  env.clock.advance(5000); // ... and stays down past the TTL

  const up = env.reopen();
  const before = up.events.head();
  up.engine.start(); // start sweeps due approvals
  t.equal(up.approvals.get(a.id).state, 'expired');
  const done = await up.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_APPROVAL_EXPIRED' });
  t.same(up.approvals.expireDue(), [], 'a second sweep finds nothing');
  await up.close();

  const again = env.reopen(); // and a second restart changes nothing
  again.engine.start();
  t.same(again.approvals.expireDue(), []);
  const expiredEvents = again.events.after(before, 1000).filter((e) => e.type === 'approval.updated' && e.payload.state === 'expired');
  t.equal(expiredEvents.length, 1, 'one expiry event');
  await again.engine.stop();
  await flushAudit(again.audit);
  t.equal(again.audit.list({ limit: 1000 }).filter((e) => e.type === 'approval.expired').length, 1, 'one expiry audit entry');
  t.equal(env.world.calls({ run_id: run.id }).length, 0);
});

t.test('approve and deny racing 100 times on two connections: exactly one wins, the other gets conflict (C3)', async (t) => {
  const env = setup(t, { start: false });
  const other = env.reopen();
  let approvedWins = 0;
  for (let i = 0; i < 100; i++) {
    const a = env.approvals.create({ run_id: null, step_idx: null, tool_id: 'deploy.prod', args: { i }, definition_hash: 'd', plugin_digest: 'p', requested_by: me });
    const racers = [
      () => env.approvals.resolve(a.id, { decision: 'approved' }, { kind: 'token', id: 'tok_a' }),
      () => other.approvals.resolve(a.id, { decision: 'denied' }, { kind: 'token', id: 'tok_b' }),
    ];
    if (i % 2 === 1) racers.reverse();
    const settled = await Promise.allSettled(racers.map((r) => Promise.resolve().then(r)));
    const won = settled.filter((s) => s.status === 'fulfilled');
    const lost = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    t.equal(won.length, 1, `round ${i}: one winner`);
    t.equal(lost.length, 1);
    t.ok(isTyrumError(lost[0]?.reason, 'TYRUM_ERR_CONFLICT'), `round ${i}: the loser gets conflict`);
    const final = env.approvals.get(a.id).state;
    const winner = (won[0] as PromiseFulfilledResult<{ approval: Approval }>).value.approval.state;
    t.equal(final, winner, 'the stored decision is the winner');
    if (final === 'approved') approvedWins++;
  }
  t.ok(approvedWins > 0 && approvedWins < 100, 'both sides won some rounds');
});

// The racing processes (fixtures/resolve-runner.ts) open the SQLite file by path; the race on
// PostgreSQL is covered in-process above and by the multi-replica work (not this fixture).
const TWO_PROCESS_SKIP = WORLD_STORE === 'postgres' ? 'the racing fixture processes open the SQLite file by path (tyrum.db); not ported to PostgreSQL' : false;

t.test('approve and deny racing from two processes over 100 approvals: one winner each (C3)', { skip: TWO_PROCESS_SKIP }, async (t) => {
  const env = setup(t, { start: false });
  const ids = Array.from({ length: 100 }, (_, i) => env.approvals.create({ run_id: null, step_idx: null, tool_id: 'deploy.prod', args: { i }, definition_hash: 'd', plugin_digest: 'p', requested_by: me }).id);
  const idsFile = join(env.dir, 'ids.json');
  writeFileSync(idsFile, JSON.stringify(ids));
  const go = join(env.dir, 'go');
  const kids = (['approved', 'denied'] as const).map((d) => spawnFixture('../../approvals/fixtures/resolve-runner.ts', [env.dbPath, env.checkpointPath, go, d, idsFile], { AUDIT_TEST_KEY: env.keys.pem }));
  await Promise.all(kids.map((k) => k.line((l) => l === 'ready', 60_000)));
  writeFileSync(go, '');
  await Promise.all(kids.map((k) => k.line((l) => l === 'done', 60_000)));
  for (const k of kids) t.equal((await k.exited()).code, 0);
  const results = kids.map((k) => new Map(k.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { id: string; outcome: string }).map((o) => [o.id, o.outcome])));
  let bad = 0;
  for (const id of ids) {
    const outcomes = results.map((m) => m.get(id));
    const winners = outcomes.filter((o) => o === 'won').length;
    const conflicts = outcomes.filter((o) => o === 'TYRUM_ERR_CONFLICT').length;
    const state = env.approvals.get(id).state;
    const expected = outcomes[0] === 'won' ? 'approved' : 'denied';
    if (winners !== 1 || conflicts !== 1 || state !== expected) bad++;
  }
  t.equal(bad, 0, 'every approval has exactly one winner, one conflict, and the winner\'s decision stored');
  t.equal(env.store.integrityCheck(), 'ok');
  t.ok(env.verifyAudit().ok, 'the audit chain written by both processes verifies');
});

t.test('approval state cannot be smuggled in arguments (C4)', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { approved: true, approval_id: 'apr_forged', approval: { state: 'approved' } } }], created_by: me });
  const paused = await env.engine.wait(run.id, 5000);
  t.equal(paused.run.state, 'paused', 'still requires approval');
  t.equal(paused.run.pause_reason, 'approval');
  t.equal(env.world.calls({ run_id: run.id }).length, 0);
  t.not(paused.steps[0]?.approval_id, 'apr_forged');
  t.equal(pendingFor(env, run.id).state, 'pending');
});

t.test('an approval covers only the approved arguments: changed args are refused and the approval is not consumed (C4)', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { target: 'staging' } }], created_by: me });
  await env.engine.wait(run.id, 5000);
  const a = pendingFor(env, run.id);
  // Someone rewrites the stored arguments between approval and execution.
  if (env.pgUrl !== undefined) {
    const raw = new PgBridge(env.pgUrl);
    raw.query('UPDATE steps SET args = $1 WHERE run_id = $2', [JSON.stringify({ target: 'production' }), run.id]);
    await raw.close();
  } else {
    const raw = new Database(env.dbPath);
    raw.prepare('UPDATE steps SET args = ? WHERE run_id = ?').run(JSON.stringify({ target: 'production' }), run.id);
    raw.close();
  }
  env.approvals.resolve(a.id, { decision: 'approved' }, operator);
  const done = await env.engine.wait(run.id, 5000);
  t.equal(done.run.state, 'failed');
  t.match(done.run.error, { code: 'TYRUM_ERR_APPROVAL_MISMATCH', wire: 'approval_required', details: { fields: ['args_hash'] } });
  t.equal(env.world.calls({ run_id: run.id }).length, 0, 'X\' never ran');
  t.equal(env.approvals.get(a.id).consumed_at, null, 'the approval was not used up');
  await flushAudit(env.audit);
  t.ok(env.audit.list({ limit: 1000 }).some((e) => e.type === 'approval.binding_mismatch' && e.data.approval_id === a.id), 'the refusal is audited');
});

t.test('approving X does not let X\' (other args) run; X runs with exactly its args (C4)', async (t) => {
  const env = setup(t);
  const x = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { amount: 10 } }], created_by: me });
  await env.engine.wait(x.run.id, 5000);
  env.approvals.resolve(pendingFor(env, x.run.id).id, { decision: 'approved' }, operator);
  const x2 = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { amount: 10_000 } }], created_by: me });
  t.equal((await env.engine.wait(x.run.id, 5000)).run.state, 'succeeded');
  t.equal((await env.engine.wait(x2.run.id, 5000)).run.state, 'paused', "X' waits for its own approval");
  t.equal(env.world.calls({ run_id: x2.run.id }).length, 0);
  t.not(pendingFor(env, x2.run.id).args_hash, argsHash({ amount: 10 }));
});

t.test('a plugin upgrade after approval (new definition hash or digest) is refused (C4)', async (t) => {
  const env = setup(t);
  for (const field of ['definition_hash', 'plugin_digest'] as const) {
    env.world.overrides.clear();
    const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { field } }], created_by: me });
    await env.engine.wait(run.id, 5000);
    env.world.overrides.set('deploy.prod', { ...TOOLS['deploy.prod']!, [field]: `${field}-v2` });
    env.approvals.resolve(pendingFor(env, run.id).id, { decision: 'approved' }, operator);
    const done = await env.engine.wait(run.id, 5000);
    t.match(done.run.error, { code: 'TYRUM_ERR_APPROVAL_MISMATCH', details: { fields: [field] } }, field);
    t.equal(env.world.calls({ run_id: run.id }).length, 0);
  }
});

t.test('an approval is single use and bound to its step', async (t) => {
  const env = setup(t, { start: false });
  const { run } = await env.engine.submit({ kind: 'workflow', steps: [{ tool_id: 'deploy.prod', args: {} }, { tool_id: 'deploy.prod', args: {} }], created_by: me });
  const a = env.events.transact((emit) => env.approvals.createInTx(emit, { run_id: run.id, step_idx: 0, tool_id: 'deploy.prod', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me }));
  t.equal(env.events.transact((emit) => env.approvals.consumeInTx(emit, a.id, run.id, 0)), false, 'a pending approval cannot be used');
  env.approvals.resolve(a.id, { decision: 'approved' }, operator);
  t.equal(env.events.transact((emit) => env.approvals.consumeInTx(emit, a.id, run.id, 1)), false, 'not for another step with identical args');
  t.equal(env.events.transact((emit) => env.approvals.consumeInTx(emit, a.id, run.id, 0)), true);
  t.equal(env.events.transact((emit) => env.approvals.consumeInTx(emit, a.id, run.id, 0)), false, 'only once');
});

t.test('mode always asks the integrator for a policy override; a denial never does', async (t) => {
  const env = setup(t, { start: false });
  const mk = () => env.approvals.create({ run_id: null, step_idx: null, tool_id: 'deploy.prod', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me });
  const yes = env.approvals.resolve(mk().id, { decision: 'approved', mode: 'always' }, operator);
  t.equal(yes.create_override, true);
  t.equal(yes.approval.mode, 'always');
  const no = env.approvals.resolve(mk().id, { decision: 'denied', mode: 'always' }, operator);
  t.equal(no.create_override, false);
});

t.test('resolve validates its input and names unknown approvals', async (t) => {
  const env = setup(t, { start: false });
  const a = env.approvals.create({ run_id: null, step_idx: null, tool_id: 't', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me });
  t.throws(() => env.approvals.resolve('apr_nope', { decision: 'approved' }, operator), { code: 'TYRUM_ERR_NOT_FOUND' });
  t.throws(() => env.approvals.resolve(a.id, { decision: 'yes' as never }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => env.approvals.resolve(a.id, { decision: 'approved', mode: 'forever' as never }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => env.approvals.resolve(a.id, { decision: 'approved', reason: 'x'.repeat(5000) }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => env.approvals.create({ run_id: null, step_idx: null, tool_id: 't', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me, ttl_ms: 0 }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.equal(env.approvals.get(a.id).state, 'pending', 'nothing changed');
  t.throws(() => env.approvals.get('apr_nope'), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('get and list apply expiry lazily', async (t) => {
  const env = setup(t, { start: false, approvalTtlMs: 1000 });
  const a = env.approvals.create({ run_id: null, step_idx: null, tool_id: 't', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me });
  const b = env.approvals.create({ run_id: null, step_idx: null, tool_id: 't', args: {}, definition_hash: 'd', plugin_digest: 'p', requested_by: me });
  t.equal(env.approvals.list({ state: 'pending' }).length, 2);
  env.clock.advance(1001);
  t.equal(env.approvals.get(a.id).state, 'expired', 'get expires');
  t.same(env.approvals.list({ state: 'pending' }), [], 'list expires');
  t.equal(env.approvals.get(b.id).state, 'expired');
  t.same(env.approvals.list({ state: 'expired' }).map((x) => x.id).sort(), [a.id, b.id].sort());
});

t.test('cancelling a run that waits for approval denies the approval; resolving it later is conflict', async (t) => {
  const env = setup(t);
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: {} }], created_by: me });
  await env.engine.wait(run.id, 5000);
  const a = pendingFor(env, run.id);
  t.equal((await env.engine.cancel(run.id, operator)).state, 'cancelled');
  t.match(env.approvals.get(a.id), { state: 'denied', reason: 'run cancelled' });
  t.throws(() => env.approvals.resolve(a.id, { decision: 'approved' }, operator), { code: 'TYRUM_ERR_CONFLICT' });
  await eventually(() => true);
  t.equal(env.world.calls({ run_id: run.id }).length, 0);
  t.equal(env.engine.get(run.id).steps[0]?.state, 'cancelled');
});

t.test('the arguments an operator sees are redacted; the binding hash is of the real arguments', async (t) => {
  const env = setup(t, { redact: (v) => JSON.parse(JSON.stringify(v ?? null).replaceAll('s3cret', '[REDACTED]')) });
  const { run } = await env.engine.submit({ kind: 'tool', steps: [{ tool_id: 'deploy.prod', args: { token: 's3cret' } }], created_by: me });
  await env.engine.wait(run.id, 5000);
  const a = pendingFor(env, run.id);
  t.same(a.args, { token: '[REDACTED]' });
  t.equal(a.args_hash, argsHash({ token: 's3cret' }));
});
