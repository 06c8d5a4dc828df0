/**
 * Rows for the retention tests, written straight through the store's repositories into a real
 * home (SQLite file, gateway key, audit log) in a tap test dir, at chosen times.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { openHomeCore, type HomeCore } from '../../../core/home.js';
import { externalQuery } from '../../helpers/gateway.js';
import type { RunState, Store } from '../../../core/store/index.js';

export const DAY = 86_400_000;
/** The sweeps' "now": a fixed instant, so ages are exact. */
export const NOW = Date.parse('2026-06-01T00:00:00Z');

/** A home in `t`'s test dir with `retention` as its config section; closed at teardown. */
export function home(t: Test, retention: Record<string, unknown> = {}): HomeCore & { dir: string } {
  const dir = t.testdir();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ retention }));
  const core = openHomeCore(dir);
  t.teardown(() => core.close());
  return Object.assign(core, { dir });
}

export interface RunSpec {
  id: string;
  state: RunState;
  /** Days before NOW it was created (and, when terminal, finished: `endedDaysAgo`, default the same). */
  createdDaysAgo: number;
  endedDaysAgo?: number;
  steps?: number;
  idempotencyKey?: string;
  approval?: 'pending' | 'approved';
}

/** A run with `steps` steps, one attempt each, and optionally an approval on its first step. */
export function seedRun(store: Store, r: RunSpec): void {
  const created = NOW - r.createdDaysAgo * DAY;
  const terminal = r.state === 'succeeded' || r.state === 'failed' || r.state === 'cancelled';
  const ended = NOW - (r.endedDaysAgo ?? r.createdDaysAgo) * DAY;
  store.tx(() => {
    store.execution.insertRun({
      id: r.id,
      kind: 'tool',
      state: r.state,
      created_by: 'tok',
      idempotency_key: r.idempotencyKey ?? null,
      request_hash: 'h'.repeat(64),
      created_at: created,
      updated_at: terminal ? ended : created,
      finished_at: terminal ? ended : null,
      cancel_requested: 0,
      pause_reason: r.state === 'paused' ? 'approval' : null,
      next_attempt_at: 0,
      result: terminal ? JSON.stringify({ secret_looking_output: 'the run said hello' }) : null,
      error: null,
      lease_owner: 'o',
      lease_expires_at: null,
      fencing_token: 0,
    });
    for (let i = 0; i < (r.steps ?? 1); i++) {
      store.execution.insertStep({
        run_id: r.id, idx: i, tool_id: 'echo.say', args: '{"text":"hi"}', args_hash: 'a'.repeat(64), idempotency_key: null, state: terminal ? 'succeeded' : 'pending',
        idempotent: 0, max_attempts: 1, timeout_ms: 1000, postcondition: null, attempts: 1, policy_decision: 'allow', policy_enforced: 1, policy_snapshot_id: null,
        policy_detail: null, approval_id: null, definition_hash: null, plugin_digest: null, result: null, error: null, started_at: created, finished_at: terminal ? ended : null, updated_at: created,
      });
      store.execution.insertAttempt(
        { run_id: r.id, step_idx: i, n: 1, state: terminal ? 'succeeded' : 'started', owner: 'o', fencing_token: 0, started_at: created, finished_at: null, duration_ms: null, usage: null, result: null, error: null, evidence: null },
        { owner: 'o', token: 0 },
      );
    }
    if (r.approval) {
      store.approvals.insert({
        id: `apr_${r.id}`, run_id: r.id, step_idx: 0, tool_id: 'echo.say', args: '{}', args_hash: 'a'.repeat(64), definition_hash: 'd', plugin_digest: 'p', requested_by: 'tok',
        state: r.approval, mode: null, reason: null, created_at: created, expires_at: created + DAY, resolved_at: null, resolved_by: null, consumed_at: null,
      });
    }
  });
}

/** `n` outbox events, `daysAgo` old each (in order). */
export function seedEvents(store: Store, daysAgo: number[]): void {
  store.tx(() => {
    daysAgo.forEach((d, i) => store.outbox.append({ event_id: `ev-${i}-${d}`, type: 'run.updated', payload: JSON.stringify({ run_id: `r${i}` }), occurred_at: NOW - d * DAY }));
  });
}

/** A conversation last active `daysAgo` days ago, with `messages` messages and one turn in `turnState`. */
export function seedConversation(store: Store, id: string, daysAgo: number, messages: number, turnState: 'completed' | 'running' | 'queued' = 'completed'): void {
  const at = NOW - daysAgo * DAY;
  store.tx(() => {
    store.conversations.insertConversation({ id, channel: 'operator', account: 'tok', thread: id, title: null, created_by: 'tok', created_at: at, updated_at: at });
    const turn = `turn_${id}`;
    store.conversations.insertTurn({ id: turn, conversation_id: id, state: turnState, waiting: null, steps: 1, usage: '{}', error: null, owner: null, created_at: at, started_at: at, finished_at: turnState === 'completed' ? at : null });
    for (let i = 0; i < messages; i++) {
      store.conversations.insertMessage({ id: `msg_${id}_${i}`, conversation_id: id, role: i % 2 === 0 ? 'user' : 'assistant', content: `private words ${i}`, tool_calls: null, tool_call_id: null, run_id: null, turn_id: turn, provenance: '{"source":"operator"}', usage: null, created_at: at });
    }
  });
}

/** Committed rows in each table, read through a separate connection to the home's database (either store). */
export function counts(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const table of ['runs', 'steps', 'attempts', 'approvals', 'outbox', 'schedule_fires', 'conversations', 'messages', 'turns', 'deliveries', 'audit_entries']) {
    out[table] = Number(externalQuery(dir, `SELECT COUNT(*) AS n FROM ${table}`)[0]!.n);
  }
  return out;
}

/** Ids of the runs left. */
export function runIds(dir: string): string[] {
  return externalQuery(dir, 'SELECT id FROM runs ORDER BY id').map((r) => r.id as string);
}
