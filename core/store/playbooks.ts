/**
 * Persistence of workflows (playbook runs) and their decided gates (migration 12). Rows only:
 * what a step does and when a workflow moves on belong to core/playbooks.
 */
import { prepared, type SqlDb } from './statements.js';

export type WorkflowState = 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';
export const WORKFLOW_TERMINAL: readonly WorkflowState[] = ['succeeded', 'failed', 'cancelled'];

export interface WorkflowRow {
  id: string;
  name: string;
  version: string;
  plan_hash: string;
  /** JSON of the compiled plan (core/playbooks/spec.ts Plan). */
  plan: string;
  state: WorkflowState;
  step_idx: number;
  /** JSON array of per-step records (core/playbooks/runner.ts StepRecord). */
  steps: string;
  /** JSON object: step id → output. */
  outputs: string;
  gate_nonce: string | null;
  gate_message: string | null;
  gate_expires_at: number | null;
  /** JSON {code, wire, message, details?}. */
  error: string | null;
  created_by: string;
  idempotency_key: string | null;
  request_hash: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export interface WorkflowGateRow {
  workflow_id: string;
  step_idx: number;
  nonce: string;
  decision: 'approved' | 'denied' | 'expired';
  decided_by: string | null;
  reason: string | null;
  decided_at: number;
}

export class WorkflowRepo {
  constructor(private readonly db: SqlDb) {}

  insert(r: WorkflowRow): void {
    prepared(
      this.db,
      `INSERT INTO workflows (id, name, version, plan_hash, plan, state, step_idx, steps, outputs, gate_nonce, gate_message, gate_expires_at, error, created_by, idempotency_key, request_hash, created_at, updated_at, finished_at)
       VALUES (@id, @name, @version, @plan_hash, @plan, @state, @step_idx, @steps, @outputs, @gate_nonce, @gate_message, @gate_expires_at, @error, @created_by, @idempotency_key, @request_hash, @created_at, @updated_at, @finished_at)`,
    ).run(r);
  }

  get(id: string): WorkflowRow | undefined {
    return prepared(this.db, 'SELECT * FROM workflows WHERE id = ?').get(id) as WorkflowRow | undefined;
  }

  byIdempotencyKey(createdBy: string, key: string): WorkflowRow | undefined {
    return prepared(this.db, 'SELECT * FROM workflows WHERE created_by = ? AND idempotency_key = ?').get(createdBy, key) as WorkflowRow | undefined;
  }

  /** Running and paused workflows, oldest first. */
  active(): WorkflowRow[] {
    return prepared(this.db, "SELECT * FROM workflows WHERE state IN ('running', 'paused') ORDER BY created_at, id").all() as WorkflowRow[];
  }

  /** Newest first; `before` is a created_at from the previous page. */
  list(limit: number, state?: WorkflowState, before?: number): WorkflowRow[] {
    return prepared(
      this.db,
      'SELECT * FROM workflows WHERE (CAST(@state AS TEXT) IS NULL OR state = @state) AND (CAST(@before AS BIGINT) IS NULL OR created_at < @before) ORDER BY created_at DESC, id DESC LIMIT @limit',
    ).all({ state: state ?? null, before: before ?? null, limit }) as WorkflowRow[];
  }

  /** Updates a workflow still in one of `from`; false when it was not (another writer moved it). */
  update(id: string, from: readonly WorkflowState[], patch: Partial<Omit<WorkflowRow, 'id'>>): boolean {
    const keys = Object.keys(patch);
    if (keys.length === 0) return false;
    const sets = keys.map((k) => `${k} = @${k}`).join(', ');
    const states = from.map((_, i) => `@s${i}`).join(', ');
    const params: Record<string, unknown> = { ...patch, id };
    from.forEach((s, i) => (params[`s${i}`] = s));
    return prepared(this.db, `UPDATE workflows SET ${sets} WHERE id = @id AND state IN (${states})`).run(params).changes === 1;
  }

  gate(workflowId: string, stepIdx: number): WorkflowGateRow | undefined {
    return prepared(this.db, 'SELECT * FROM workflow_gates WHERE workflow_id = ? AND step_idx = ?').get(workflowId, stepIdx) as WorkflowGateRow | undefined;
  }

  insertGate(r: WorkflowGateRow): void {
    prepared(this.db, 'INSERT INTO workflow_gates (workflow_id, step_idx, nonce, decision, decided_by, reason, decided_at) VALUES (@workflow_id, @step_idx, @nonce, @decision, @decided_by, @reason, @decided_at)').run(r);
  }
}
