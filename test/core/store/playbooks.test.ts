import t, { type Test } from 'tap';
import type { WorkflowRow } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

const wf = (id: string, over: Partial<WorkflowRow> = {}): WorkflowRow => ({
  id, name: 'pb', version: '1', plan_hash: 'ph', plan: '{}', state: 'running', step_idx: 0, steps: '[]', outputs: '{}', gate_nonce: null, gate_message: null,
  gate_expires_at: null, error: null, created_by: 'u', idempotency_key: null, request_hash: 'rh', created_at: 1, updated_at: 1, finished_at: null, ...over,
});

forEachBackend(t, 'workflows move only from the states the caller expects; a gate is decided once', async (t: Test, { repos: s }) => {
  s.workflows.insert(wf('wf_1', { idempotency_key: 'k' }));
  s.workflows.insert(wf('wf_2', { created_at: 2 }));
  t.throws(() => s.workflows.insert(wf('wf_3', { idempotency_key: 'k' })), /UNIQUE/);
  t.throws(() => s.workflows.insert(wf('wf_4', { state: 'paused' })), /CHECK/, 'a paused workflow has a gate nonce');
  t.same(s.workflows.get('wf_1'), wf('wf_1', { idempotency_key: 'k' }));
  t.equal(s.workflows.byIdempotencyKey('u', 'k')?.id, 'wf_1');
  t.equal(s.workflows.update('wf_1', ['running'], { state: 'paused', gate_nonce: 'n1', updated_at: 3 }), true);
  t.equal(s.workflows.update('wf_1', ['running'], { state: 'failed', updated_at: 4 }), false);
  t.same(s.workflows.active().map((w) => w.id), ['wf_1', 'wf_2']);
  t.same(s.workflows.list(10).map((w) => w.id), ['wf_2', 'wf_1']);
  t.same(s.workflows.list(10, 'paused').map((w) => w.id), ['wf_1']);
  t.same(s.workflows.list(10, undefined, 2).map((w) => w.id), ['wf_1']);
  const gate = { workflow_id: 'wf_1', step_idx: 0, nonce: 'n1', decision: 'approved' as const, decided_by: 'op', reason: null, decided_at: 5 };
  s.workflows.insertGate(gate);
  t.throws(() => s.workflows.insertGate({ ...gate, decision: 'denied' }), /UNIQUE/, 'a resume token is single use');
  t.same(s.workflows.gate('wf_1', 0), gate);
});
