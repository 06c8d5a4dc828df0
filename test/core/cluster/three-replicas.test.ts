// TESTPLAN M1 with three replicas and a multi-step workflow: the replica a workflow ran on is
// killed with SIGKILL while the workflow waits at a gate between two tool steps; the gate is
// decided on another replica, and the workflow finishes there: every step ran once (one attempt
// each, one note each), and the shared audit chain verifies.
import t from 'tap';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import { clientOf, exited, replicas, result, waitState, type Invoke } from './helpers.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
t.setTimeout(480_000);

interface Wf {
  workflow_id: string;
  state: string;
  resume_token?: string | null;
  steps: Array<{ id: string; state: string; run_id: string | null }>;
}

const PLAYBOOK = {
  name: 'three-steps',
  version: '1.0.0',
  steps: [
    { id: 'first', tool: 'notes.add_note', args: { title: 'first', body: 'before the gate' } },
    { id: 'gate', approval: { message: 'Go on?' } },
    { id: 'last', tool: 'notes.add_note', args: { title: 'last', body: 'after the gate' } },
  ],
};

t.test('kill -9 one of three replicas while its workflow waits between steps: decided on another, it finishes there, no step repeated (M1)', { skip }, async (t) => {
  const { all: [a, b, c], token } = await replicas(t, cluster, 3);
  const onA = await clientOf(t, a!, token);
  // notes.add_note is state_changing: approve it once "always", so the workflow's tool steps run
  // without a human (the gate is the only pause).
  const warm = result<Invoke>(await onA.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'zero', body: 'policy' }, wait_ms: 3000 }, 10_000));
  t.equal(warm.state, 'paused');
  result(await onA.request('approval.resolve', { approval_id: warm.approval_id, decision: 'approved', mode: 'always', reason: 'for the test' }));
  t.equal(await waitState(onA, warm.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded');

  const started = result<{ workflow: Wf }>(await onA.request('workflow.start', { playbook: PLAYBOOK, inputs: {}, wait_ms: 20_000 }, 30_000)).workflow;
  t.equal(started.state, 'paused', 'paused at the gate on A');
  t.same(started.steps.map((s) => s.state), ['succeeded', 'pending', 'pending']);
  const tokenForGate = started.resume_token;
  t.type(tokenForGate, 'string', 'an approver sees the resume token');

  a!.child.kill('SIGKILL');
  await exited(a!);

  const onC = await clientOf(t, c!, token);
  result(await onC.request('workflow.resume', { token: tokenForGate, decision: 'approve', reason: 'A is gone' }, 30_000));
  const deadline = Date.now() + 60_000;
  let wf: Wf;
  for (;;) {
    wf = result<{ workflow: Wf }>(await onC.request('workflow.get', { workflow_id: started.workflow_id })).workflow;
    if (wf.state === 'succeeded' || wf.state === 'failed' || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(wf.state, 'succeeded', 'the surviving replicas finished the workflow A started');
  t.same(wf.steps.map((s) => s.state), ['succeeded', 'succeeded', 'succeeded']);
  for (const s of wf.steps.filter((x) => x.run_id !== null)) {
    const steps = result<{ steps: Array<{ attempts: unknown[]; state: string }> }>(await onC.request('run.get', { run_id: s.run_id })).steps;
    t.same(steps.map((x) => [x.state, x.attempts.length]), [['succeeded', 1]], `step ${s.id}: one attempt, nothing repeated`);
  }
  const onB = await clientOf(t, b!, token);
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await onB.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }, 10_000)).output.notes;
  t.same(notes.map((n) => n.title).sort(), ['first', 'last', 'zero'], 'each note written exactly once');
  const verify = result<{ ok: boolean }>(await onB.request('audit.verify', {}, 10_000));
  t.equal(verify.ok, true, 'the audit chain all three replicas appended to verifies');
});
