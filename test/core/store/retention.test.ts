import t, { type Test } from 'tap';
import type { RunRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const run = (id: string, over: Partial<RunRow> = {}): RunRow => ({
  id, kind: 'tool', state: 'succeeded', created_by: 'u', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 2, finished_at: null,
  cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: '{"ok":true}', error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0, ...over,
});

forEachBackend(t, 'retention scans in insertion order past a cursor and measures what a removal takes, the same on both stores', async (t: Test, { repos: s }) => {
  for (const id of ['r1', 'r2', 'r3']) s.execution.insertRun(run(id));
  const first = s.retention.scanRuns(0, 2);
  t.same(first.map((r) => [r.id, r.done_at]), [['r1', 2], ['r2', 2]], 'done_at falls back to updated_at');
  t.same(s.retention.scanRuns(first[1]!.rid, 10).map((r) => r.id), ['r3']);
  // id 2 + kind 4 + state 9 + created_by 1 + request_hash 1 + created_at 1 + updated_at 1 + cancel_requested 1 + next_attempt_at 1 + result 11 + fencing_token 1
  t.same(s.retention.runFootprint('r1').runs, { rows: 1, bytes: 33 }, 'bytes are value lengths, numbers as text');
  t.equal(s.retention.deleteRun('r1'), true);
  for (let i = 1; i <= 3; i++) s.outbox.append({ event_id: `e${i}`, type: 'run.updated', payload: '{}', occurred_at: i });
  const ev = s.retention.scanOutbox(0, 10);
  t.same(ev.map((e) => e.at), [1, 2], 'never the newest event');
  t.equal(s.retention.deleteOutbox(0, ev[1]!.rid), 2);
  s.schedules.insert({ id: 'sch_a', name: 'a', kind: 'interval', cron: null, timezone: 'UTC', every_ms: 1000, anchor_at: 0, target: '{}', missed_policy: 'skip', state: 'active', next_fire_at: 1, last_fire_at: null, fires: 0, missed: 0, created_by: 'u', created_at: 1, updated_at: 1 });
  for (const at of [1000, 2000]) s.schedules.insertFire({ schedule_id: 'sch_a', fire_at: at, ticks: 1, fired_at: at, owner: 'w', run_id: null, conversation_id: null, message_id: null, workflow_id: null, error: null });
  const fires = s.retention.scanFires(0, 10);
  t.same(fires.map((f) => f.at), [1000, 2000]);
  t.equal(s.retention.deleteFires(fires.map((f) => f.rid)), 2);
  s.artifacts.insert({ id: `sha256:${'a'.repeat(64)}`, size: 3, media_type: 'text/plain', name: null, created_at: 1, created_by: 'u' });
  t.same(s.retention.scanArtifacts(0, 10).map((a) => [a.size, a.attached]), [[3, 0]]);
});

forEachBackend(t, 'an idle conversation is removed in bounded parts, children first', async (t: Test, { repos: s }) => {
  s.conversations.insertConversation({ id: 'conv_1', channel: 'operator', account: 'a', thread: 't', title: null, created_by: 'u', created_at: 1, updated_at: 1 });
  for (const id of ['msg_1', 'msg_2', 'msg_3']) {
    s.conversations.insertMessage({ id, conversation_id: 'conv_1', role: 'assistant', content: 'x', tool_calls: null, tool_call_id: null, run_id: null, turn_id: null, provenance: '{}', usage: null, created_at: 1 });
  }
  t.same(s.retention.idleConversations(10, null, 5), [{ id: 'conv_1', updated_at: 1 }]);
  t.same(s.retention.idleConversations(10, { updated_at: 1, id: 'conv_1' }, 5), [], 'past the cursor');
  const part = s.retention.deleteConversationPart('conv_1', 2);
  t.same([part.removed.messages.rows, part.done], [2, false]);
  const rest = s.retention.deleteConversationPart('conv_1', 5);
  t.same([rest.removed.messages.rows, rest.removed.conversations.rows, rest.done], [1, 1, true]);
  t.equal(s.conversations.conversation('conv_1'), undefined);
});
