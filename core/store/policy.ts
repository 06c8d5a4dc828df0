/**
 * Policy persistence (migration 3): immutable content-addressed snapshots, the single active
 * pointer with its activation history, and "approve always" overrides. Rows only: validation,
 * hashing and decisions belong to core/policy.
 */
import { prepared, type SqlDb } from './statements.js';

/** A stored bundle; `bundle` is its canonical JSON, whose sha256 is the id. */
export interface PolicySnapshotRow {
  id: string;
  bundle: string;
  created_at: number;
  created_by: string;
}

/** One activation: `snapshot_id` became the active policy. */
export interface PolicyActivationRow {
  seq: number;
  snapshot_id: string;
  activated_at: number;
  activated_by: string;
}

export interface PolicyOverrideRow {
  id: string;
  tool_id: string;
  args_hash: string | null;
  created_by: string;
  /** The approval whose `mode: always` created it, if any. */
  created_from_approval: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export class PolicyRepo {
  constructor(private readonly db: SqlDb) {}

  /** Stores a snapshot; false when one with this id already exists (content-addressed, so equal). */
  insertSnapshot(r: PolicySnapshotRow): boolean {
    return prepared(this.db, 'INSERT INTO policy_snapshots (id, bundle, created_at, created_by) VALUES (@id, @bundle, @created_at, @created_by) ON CONFLICT(id) DO NOTHING').run(r).changes === 1;
  }

  getSnapshot(id: string): PolicySnapshotRow | undefined {
    return prepared(this.db, 'SELECT * FROM policy_snapshots WHERE id = ?').get(id) as PolicySnapshotRow | undefined;
  }

  /** The latest activation (the active snapshot), if a policy was ever activated. */
  active(): PolicyActivationRow | undefined {
    return prepared(this.db, 'SELECT h.seq, h.snapshot_id, h.activated_at, h.activated_by FROM policy_active a JOIN policy_activations h ON h.seq = a.activation_seq WHERE a.singleton = 1')
      .get() as PolicyActivationRow | undefined;
  }

  /** Makes `snapshotId` the active policy and records the activation. Call inside `Store.tx`. */
  activate(snapshotId: string, at: number, by: string): PolicyActivationRow {
    const seq = (prepared(this.db, 'INSERT INTO policy_activations (snapshot_id, activated_at, activated_by) VALUES (?, ?, ?) RETURNING seq').get(snapshotId, at, by) as { seq: number }).seq;
    prepared(this.db, 'INSERT INTO policy_active (singleton, activation_seq) VALUES (1, ?) ON CONFLICT(singleton) DO UPDATE SET activation_seq = excluded.activation_seq').run(seq);
    return { seq, snapshot_id: snapshotId, activated_at: at, activated_by: by };
  }

  /** Activations, newest first. */
  activations(limit = 100): PolicyActivationRow[] {
    return prepared(this.db, 'SELECT * FROM policy_activations ORDER BY seq DESC LIMIT ?').all(limit) as PolicyActivationRow[];
  }

  insertOverride(r: PolicyOverrideRow): void {
    prepared(this.db, 
        `INSERT INTO policy_overrides (id, tool_id, args_hash, created_by, created_from_approval, created_at, expires_at, revoked_at)
         VALUES (@id, @tool_id, @args_hash, @created_by, @created_from_approval, @created_at, @expires_at, @revoked_at)`,
      )
      .run(r);
  }

  getOverride(id: string): PolicyOverrideRow | undefined {
    return prepared(this.db, 'SELECT * FROM policy_overrides WHERE id = ?').get(id) as PolicyOverrideRow | undefined;
  }

  /** Every override, oldest first. */
  listOverrides(): PolicyOverrideRow[] {
    return prepared(this.db, 'SELECT * FROM policy_overrides ORDER BY created_at, id').all() as PolicyOverrideRow[];
  }

  /** Overrides naming `toolId` that are not revoked (expiry is the decision's business: it owns the clock input). */
  unrevokedForTool(toolId: string): PolicyOverrideRow[] {
    return prepared(this.db, 'SELECT * FROM policy_overrides WHERE tool_id = ? AND revoked_at IS NULL ORDER BY created_at, id').all(toolId) as PolicyOverrideRow[];
  }

  /** Marks the override revoked; false when it does not exist or was already revoked. */
  revokeOverride(id: string, at: number): boolean {
    return prepared(this.db, 'UPDATE policy_overrides SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id).changes === 1;
  }
}
