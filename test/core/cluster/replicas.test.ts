// Several gateway replicas (real `tyrum start` processes, each its own home with the same gateway
// and secret key files) on one PostgreSQL database: the outbox is the backplane (a client on
// replica B sees every event of a run started on A, and a client that reconnects elsewhere
// catches up from its cursor), an approval resolved on B resumes a run held by A, and a run
// whose replica is killed with SIGKILL is finished by another, exactly once.
import t from 'tap';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import { clientOf, eventOn, exited, payloadOf, replicas, result, waitState, type Invoke } from './helpers.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
// Each test starts real gateway processes and CLI commands: well over the default file timeout on a loaded machine.
t.setTimeout(480_000);

t.test('a client on replica B sees every event of a run started on A; approved on B, the run completes once; a client reconnecting to B catches up from its cursor (M3)', { skip }, async (t) => {
  const { all: [a, b], token } = await replicas(t, cluster, 2);
  const onA = await clientOf(t, a!, token);
  const onB = await clientOf(t, b!, token);
  const before = result<{ next_after: number }>(await onA.request('event.list', { after: 0, limit: 1000 })).next_after;
  // Paused for approval on A (a state_changing tool).
  const call = result<Invoke>(await onA.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'across', body: 'replicas' }, wait_ms: 3000 }, 10_000));
  t.equal(call.state, 'paused');
  const approvalOnB = await eventOn(onB, (f) => f.type === 'approval.updated' && payloadOf(f).approval_id === call.approval_id, 'approval.updated for the run started on A');
  t.equal(payloadOf(approvalOnB).state, 'pending', 'B pushed the approval A created');
  await eventOn(onB, (f) => f.type === 'run.updated' && payloadOf(f).run_id === call.run_id, 'run.updated of the run started on A');

  // Resolved on B; the run is held (paused) by A's database rows, and whichever replica claims it finishes it.
  result(await onB.request('approval.resolve', { approval_id: call.approval_id, decision: 'approved', reason: 'from B' }));
  t.equal(await waitState(onA, call.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded', 'the approval given on B resumed the run');
  await eventOn(onB, (f) => f.type === 'run.updated' && payloadOf(f).run_id === call.run_id && payloadOf(f).state === 'succeeded', 'the run succeeding, on B');
  await eventOn(onA, (f) => f.type === 'approval.updated' && payloadOf(f).approval_id === call.approval_id && payloadOf(f).state === 'approved', 'the approval resolved on B, on A');
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await onB.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }, 10_000)).output.notes;
  t.same(notes.map((n) => n.title), ['across'], 'the note was added exactly once');

  // Every durable event A's client saw live since `before`, B's outbox read gives too, in order,
  // and a client that reconnects to B with A's cursor gets exactly what came after it.
  const listed = result<{ events: Array<{ cursor: number; event_id: string; type: string }> }>(await onB.request('event.list', { after: before, limit: 1000 })).events;
  const ofRun = listed.filter((e) => e.type === 'run.updated' || e.type === 'step.updated' || e.type === 'approval.updated');
  t.ok(ofRun.length >= 4, `the run's events are in the shared outbox (${ofRun.length})`);
  const cursors = listed.map((e) => e.cursor);
  t.same(cursors, [...cursors].sort((x, y) => x - y), 'in cursor order');
  const seenOnB = new Set(onB.frames.filter((f) => f.event_id !== undefined).map((f) => f.event_id));
  for (const e of ofRun) t.ok(seenOnB.has(e.event_id), `B's client was pushed ${e.type} ${e.cursor}`);
  const mid = listed[Math.floor(listed.length / 2)]!.cursor;
  const again = await clientOf(t, b!, token);
  const caught = result<{ events: Array<{ cursor: number }> }>(await again.request('event.list', { after: mid, limit: 1000 })).events;
  t.same(caught.map((e) => e.cursor), cursors.filter((c) => c > mid), 'reconnected to B, the client catches up from its cursor');
  const verify = result<{ ok: boolean }>(await onB.request('audit.verify', {}, 10_000));
  t.equal(verify.ok, true, 'the audit chain both replicas appended to verifies');
});

t.test('kill -9 the replica holding a paused run: approved on another replica, the run completes there, once (M1)', { skip }, async (t) => {
  const { all: [a, b], token } = await replicas(t, cluster, 2);
  const onA = await clientOf(t, a!, token);
  const call = result<Invoke>(await onA.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'survivor', body: 'of a kill' }, wait_ms: 3000 }, 10_000));
  t.equal(call.state, 'paused');
  a!.child.kill('SIGKILL');
  await exited(a!);
  const onB = await clientOf(t, b!, token);
  result(await onB.request('approval.resolve', { approval_id: call.approval_id, decision: 'approved', reason: 'A is gone' }));
  t.equal(await waitState(onB, call.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded', 'B finished the run A held');
  const steps = result<{ steps: Array<{ attempts: unknown[]; state: string }> }>(await onB.request('run.get', { run_id: call.run_id })).steps;
  t.same(steps.map((s) => [s.state, s.attempts.length]), [['succeeded', 1]], 'one attempt: nothing repeated');
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await onB.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }, 10_000)).output.notes;
  t.same(notes.map((n) => n.title), ['survivor'], 'the note was added exactly once');
});
