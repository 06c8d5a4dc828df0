import t, { type Test } from 'tap';
import type { RunRow } from '../../../core/store/index.js';
import { MIGRATIONS } from '../../../core/store/migrations.js';
import { forEachBackend } from '../../helpers/store-backends.js';

function run(id: string, key: string | null, createdBy = 'u'): RunRow {
  return {
    id, kind: 'tool', state: 'queued', created_by: createdBy, idempotency_key: key, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
    cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0,
  };
}

forEachBackend(t, 'migration 4 creates the execution tables with their constraints', async (t: Test, { repos: s, schemaVersion }) => {
  t.equal(schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version);
  t.equal(s.execution.insertRun(run('r1', 'k')), true);
  t.equal(s.execution.insertRun(run('r2', 'k')), false, 'one run per (creator, idempotency key)');
  t.equal(s.execution.insertRun(run('r3', 'k', 'other')), true, 'the key is per creator');
  t.equal(s.execution.insertRun(run('r4', null)), true);
  t.equal(s.execution.insertRun(run('r5', null)), true, 'runs without a key never collide');
  t.throws(() => s.execution.insertRun({ ...run('r6', null), state: 'bogus' as never }), /CHECK/);
  t.same(s.execution.getRun('r1'), run('r1', 'k'), 'a row reads back as written, with no extra columns');
});

forEachBackend(t, 'the outbox seq only grows and event ids are unique', async (t: Test, { repos: s }) => {
  const a = s.outbox.append({ event_id: 'e1', type: 'run.updated', payload: '{}', occurred_at: 1 });
  const b = s.outbox.append({ event_id: 'e2', type: 'run.updated', payload: '{}', occurred_at: 1 });
  t.equal(b, a + 1);
  t.throws(() => s.outbox.append({ event_id: 'e1', type: 'run.updated', payload: '{}', occurred_at: 1 }), /UNIQUE/);
  t.same(s.outbox.after(a, 10).map((r) => r.event_id), ['e2']);
  t.equal(s.outbox.head(), b);
});

forEachBackend(t, 'conditional updates only touch whitelisted columns', async (t: Test, { repos: s }) => {
  s.execution.insertRun(run('r1', null));
  t.throws(() => s.execution.updateRun('r1', { id: 'r2' } as never), /not an updatable column/);
  t.throws(() => s.execution.updateRun('r1', {}), /empty update/);
  t.equal(s.execution.updateRun('r1', { state: 'running', updated_at: 2 }, { states: ['paused'] }), undefined, 'state condition');
  t.equal(s.execution.updateRun('r1', { state: 'running', updated_at: 2 }, { states: ['queued'] })?.state, 'running');
});
