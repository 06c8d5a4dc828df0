import t, { type Test } from 'tap';
import type { RunRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const ID = (c: string) => `sha256:${c.repeat(64)}`;
const run = (id: string): RunRow => ({
  id, kind: 'tool', state: 'queued', created_by: 'u', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
  cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0,
});

forEachBackend(t, 'artifacts are stored once per content and attached once per (run, step, attempt)', async (t: Test, { repos: s }) => {
  const a = { id: ID('a'), size: 10, media_type: 'text/plain', name: 'a.txt', created_at: 1, created_by: 'u' };
  t.equal(s.artifacts.insert(a), true);
  t.equal(s.artifacts.insert({ ...a, name: 'other' }), false, 'the first put names it');
  t.same(s.artifacts.get(a.id), a);
  t.throws(() => s.artifacts.insert({ ...a, id: 'sha256:short' }), /CHECK/);
  s.artifacts.insert({ ...a, id: ID('b'), size: 5, created_at: 2 });
  t.equal(s.artifacts.totalBytes(), 15);
  s.execution.insertRun(run('r1'));
  const att = { artifact_id: a.id, run_id: 'r1', step_idx: null, attempt: null, kind: 'evidence' as const, name: null, media_type: 'text/plain', attached_at: 3, attached_by: 'u' };
  t.equal(s.artifacts.attach(att), true);
  t.equal(s.artifacts.attach(att), false, 'a NULL step and attempt still make the attachment unique');
  t.equal(s.artifacts.attach({ ...att, step_idx: 0, attempt: 1 }), true);
  t.same(s.artifacts.ofRun('r1', 10).map((x) => [x.step_idx, x.attempt]), [[null, null], [0, 1]]);
  const ids = s.artifacts.attachments(a.id).map((x) => x.id);
  t.ok(ids[0]! < ids[1]!, 'attachment ids grow (PostgreSQL may skip numbers: a refused insert uses one)');
  t.equal(s.artifacts.attached(a.id), true);
  t.same(s.artifacts.unattached(10, 10).map((x) => x.id), [ID('b')]);
  t.same(s.artifacts.olderThan(10, 10).map((x) => x.id), [a.id, ID('b')]);
  t.equal(s.artifacts.removeUnattached(a.id), false);
  t.same([...s.artifacts.known([a.id, ID('c')])], [a.id]);
  t.equal(s.artifacts.remove(a.id), true);
  t.same(s.artifacts.ofRun('r1', 10), [], 'attachments go with the artifact');
});
