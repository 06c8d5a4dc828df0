/**
 * Policy persistence (migration 3): immutable content-addressed snapshots, the single active
 * pointer with its activation history, and "approve always" overrides. Rows only: validation,
 * hashing and decisions belong to core/policy.
 *
 * Per tenant (migration 23, docs/tenancy.md): a tenant other than the default has its own
 * snapshots and activations (its active bundle is its newest activation), and owns the overrides
 * its "always" approvals wrote (an ownership row beside the override; none: the host's).
 */
import { prepared, type SqlDb } from './statements.js';

const DEFAULT_TENANT = 'default';

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

  /** Stores an override; one of a tenant other than the default gets its ownership row. Call inside `Store.tx`. */
  insertOverride(r: PolicyOverrideRow, tenant: string = DEFAULT_TENANT): void {
    prepared(this.db, 
        `INSERT INTO policy_overrides (id, tool_id, args_hash, created_by, created_from_approval, created_at, expires_at, revoked_at)
         VALUES (@id, @tool_id, @args_hash, @created_by, @created_from_approval, @created_at, @expires_at, @revoked_at)`,
      )
      .run(r);
    if (tenant !== DEFAULT_TENANT) prepared(this.db, 'INSERT INTO tenant_policy_overrides (override_id, tenant_id) VALUES (?, ?)').run(r.id, tenant);
  }

  /** The override, when it is `tenant`'s (another tenant's id reads as no override). */
  getOverride(id: string, tenant: string = DEFAULT_TENANT): PolicyOverrideRow | undefined {
    return prepared(this.db, `SELECT * FROM policy_overrides WHERE id = @id AND ${ownedOverride(tenant)}`).get(named(tenant, { id })) as PolicyOverrideRow | undefined;
  }

  /** Every override of `tenant`, oldest first. */
  listOverrides(tenant: string = DEFAULT_TENANT): PolicyOverrideRow[] {
    return prepared(this.db, `SELECT * FROM policy_overrides WHERE ${ownedOverride(tenant)} ORDER BY created_at, id`).all(...(tenant === DEFAULT_TENANT ? [] : [{ tenant }])) as PolicyOverrideRow[];
  }

  /**
   * `tenant`'s overrides naming `toolId` that are not revoked (expiry is the decision's business:
   * it owns the clock input). The host's (default) are the host's own only.
   */
  unrevokedForTool(toolId: string, tenant: string = DEFAULT_TENANT): PolicyOverrideRow[] {
    return prepared(this.db, `SELECT * FROM policy_overrides WHERE tool_id = @toolId AND revoked_at IS NULL AND ${ownedOverride(tenant)} ORDER BY created_at, id`).all(named(tenant, { toolId })) as PolicyOverrideRow[];
  }

  /** Marks `tenant`'s override revoked; false when it does not exist, is another tenant's, or was already revoked. */
  revokeOverride(id: string, at: number, tenant: string = DEFAULT_TENANT): boolean {
    return prepared(this.db, `UPDATE policy_overrides SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL AND ${ownedOverride(tenant)}`).run(named(tenant, { at, id })).changes === 1;
  }

  /** Stores a snapshot of `tenant`'s own bundle; false when the tenant has it already (content-addressed). */
  insertTenantSnapshot(tenant: string, r: PolicySnapshotRow): boolean {
    return prepared(this.db, 'INSERT INTO tenant_policy_snapshots (tenant_id, id, bundle, created_at, created_by) VALUES (@tenant, @id, @bundle, @created_at, @created_by) ON CONFLICT(tenant_id, id) DO NOTHING').run({ tenant, ...r }).changes === 1;
  }

  getTenantSnapshot(tenant: string, id: string): PolicySnapshotRow | undefined {
    return prepared(this.db, 'SELECT id, bundle, created_at, created_by FROM tenant_policy_snapshots WHERE tenant_id = ? AND id = ?').get(tenant, id) as PolicySnapshotRow | undefined;
  }

  /** `tenant`'s newest activation (its active bundle), if it ever set one. */
  tenantActive(tenant: string): PolicyActivationRow | undefined {
    return prepared(this.db, 'SELECT seq, snapshot_id, activated_at, activated_by FROM tenant_policy_activations WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1').get(tenant) as PolicyActivationRow | undefined;
  }

  /** Makes `snapshotId` `tenant`'s active bundle. Call inside `Store.tx`. */
  activateTenant(tenant: string, snapshotId: string, at: number, by: string): PolicyActivationRow {
    const seq = (prepared(this.db, 'INSERT INTO tenant_policy_activations (tenant_id, snapshot_id, activated_at, activated_by) VALUES (?, ?, ?, ?) RETURNING seq').get(tenant, snapshotId, at, by) as { seq: number }).seq;
    return { seq, snapshot_id: snapshotId, activated_at: at, activated_by: by };
  }

  /** `tenant`'s activations, newest first. */
  tenantActivations(tenant: string, limit = 100): PolicyActivationRow[] {
    return prepared(this.db, 'SELECT seq, snapshot_id, activated_at, activated_by FROM tenant_policy_activations WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?').all(tenant, limit) as PolicyActivationRow[];
  }
}

/** Named parameters, with `@tenant` only where `ownedOverride` names it (PostgreSQL refuses an unused one). */
function named(tenant: string, params: Record<string, unknown>): Record<string, unknown> {
  return tenant === DEFAULT_TENANT ? params : { ...params, tenant };
}

/** The condition that an override row (of `policy_overrides`) is `@tenant`'s: no ownership row means the host's. */
function ownedOverride(tenant: string): string {
  return tenant === DEFAULT_TENANT
    ? 'NOT EXISTS (SELECT 1 FROM tenant_policy_overrides t WHERE t.override_id = policy_overrides.id)'
    : 'id IN (SELECT override_id FROM tenant_policy_overrides WHERE tenant_id = @tenant)';
}
