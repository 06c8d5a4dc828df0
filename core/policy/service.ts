/**
 * The policy service: the stored side of policy (snapshots, the active pointer, overrides)
 * around the pure `decide`. This module does the I/O and reads the clock; decide.ts does not.
 *
 * Tenants (docs/tenancy.md, "Policy"): every method takes the caller's tenant, default the host
 * tenant, whose behaviour is as before tenancy. Another tenant's `set` stores its own bundle,
 * which only tightens the host's; its overrides and history are its own; its calls are decided
 * by `decideForTenant`.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from '../store/index.js';
import type { PolicyOverrideRow, PolicySnapshotRow } from '../store/policy.js';
import { POLICY_GLOB_CHARSETS, type PolicyBundle } from '../../schemas/src/policy.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { DEFAULT_TENANT } from '../../schemas/src/operations.js';
import { decide, decideForTenant, type TenantPolicy, type PolicyCall, type PolicyDecision, type PolicyOverride, type PolicySnapshot } from './decide.js';
import { explain, explainForTenant, type PolicyExplanation } from './explain.js';
import { defaultBundle, parseBundle, snapshotIdOfCanonical } from './bundle.js';

export interface PolicyServiceOptions {
  store: Store;
  /** Clock in epoch milliseconds (tests pass a fake). Default Date.now. */
  now?: () => number;
}

/** A stored snapshot. */
export interface StoredSnapshot extends PolicySnapshot {
  created_at: number;
  created_by: string;
}

/** The snapshot `set` activated; `changed` is false when it was already the active one. */
export interface SetResult extends StoredSnapshot {
  changed: boolean;
}

export interface PolicyActivation {
  seq: number;
  snapshot_id: string;
  activated_at: number;
  activated_by: string;
}

export type OverrideStatus = 'active' | 'expired' | 'revoked';

export interface OverrideInfo extends PolicyOverride {
  created_by: string;
  created_from_approval: string | null;
  created_at: number;
  /** As of the service clock when listed. */
  status: OverrideStatus;
}

export interface AddOverrideInput {
  /** One exact tool id; a pattern is refused. */
  tool_id: string;
  /** Limit the override to exactly these arguments (sha256 hex of their canonical JSON). */
  args_hash?: string | null;
  expires_at?: number | null;
  created_by: string;
  /** The approval resolved with `mode: always` that created it. */
  created_from_approval?: string | null;
  /** The tenant that owns it (default: the host's, which applies to every tenant's calls). */
  tenant?: string;
}

/** Who writes the built-in default snapshot on first use. */
export const SYSTEM_ACTOR = 'system';

const EXACT_TOOL_ID = new RegExp(`^[${POLICY_GLOB_CHARSETS.tools}]{1,255}$`, 'u');
const SHA256_HEX = /^[0-9a-f]{64}$/;
const CACHED_BUNDLES = 16;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

export class PolicyService {
  private readonly store: Store;
  private readonly now: () => number;
  /** Parsed bundles by snapshot id. Snapshots are immutable, so a hit is always current. */
  private readonly bundles = new Map<string, PolicyBundle>();

  constructor(o: PolicyServiceOptions) {
    this.store = o.store;
    this.now = o.now ?? Date.now;
  }

  /**
   * The active snapshot. Before any `set`, the built-in default bundle, written (and activated)
   * on first use so its id is stored like any other and decisions can cite it.
   */
  active(): StoredSnapshot {
    const current = this.store.policy.active();
    if (current !== undefined) return this.get(current.snapshot_id);
    const bundle = defaultBundle();
    const text = canonicalJson(bundle);
    const id = snapshotIdOfCanonical(text);
    const at = this.now();
    this.store.tx(() => {
      // Another process may have won the race since the read above: the IMMEDIATE transaction
      // serializes us, so re-check before activating.
      this.store.policy.insertSnapshot({ id, bundle: text, created_at: at, created_by: SYSTEM_ACTOR });
      if (this.store.policy.active() === undefined) this.store.policy.activate(id, at, SYSTEM_ACTOR);
    });
    return this.get(this.store.policy.active()!.snapshot_id);
  }

  /**
   * Validates `bundle` and makes it the active policy. Content-addressed: the same content (in
   * any key order) is the same snapshot; setting the active one again changes nothing.
   * Throws TYRUM_ERR_POLICY_INVALID naming the offending paths.
   */
  set(bundle: unknown, actor: string, source = 'policy bundle', tenant: string = DEFAULT_TENANT): SetResult {
    const valid = parseBundle(bundle, source);
    const text = canonicalJson(valid);
    const id = snapshotIdOfCanonical(text);
    const at = this.now();
    if (tenant !== DEFAULT_TENANT) {
      // Pairing rules approve the host's nodes: a tenant has none to approve.
      if (valid.pairing !== undefined) {
        throw new TyrumError('TYRUM_ERR_POLICY_INVALID', `${source}: /pairing: pairing rules are the host's; a tenant's bundle decides tool calls only`, { issues: [{ path: '/pairing', message: "pairing rules are the host's" }] });
      }
      const changed = this.store.tx(() => {
        this.store.policy.insertTenantSnapshot(tenant, { id, bundle: text, created_at: at, created_by: actor });
        if (this.store.policy.tenantActive(tenant)?.snapshot_id === id) return false;
        this.store.policy.activateTenant(tenant, id, at, actor);
        return true;
      });
      return { ...this.getTenant(tenant, id), changed };
    }
    const changed = this.store.tx(() => {
      this.store.policy.insertSnapshot({ id, bundle: text, created_at: at, created_by: actor });
      if (this.store.policy.active()?.snapshot_id === id) return false;
      this.store.policy.activate(id, at, actor);
      return true;
    });
    return { ...this.get(id), changed };
  }

  /** A stored snapshot by id; TYRUM_ERR_NOT_FOUND when there is none. */
  get(id: string): StoredSnapshot {
    const row = this.store.policy.getSnapshot(id);
    if (row === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no policy snapshot ${id}`, { snapshot_id: id });
    return { id: row.id, bundle: this.bundleOf(row), created_at: row.created_at, created_by: row.created_by };
  }

  /** A snapshot of `tenant`'s own bundle by id; TYRUM_ERR_NOT_FOUND when the tenant has none such. */
  getTenant(tenant: string, id: string): StoredSnapshot {
    const row = this.store.policy.getTenantSnapshot(tenant, id);
    if (row === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no policy snapshot ${id}`, { snapshot_id: id });
    return { id: row.id, bundle: this.bundleOf(row), created_at: row.created_at, created_by: row.created_by };
  }

  /** `tenant`'s own active bundle (a tenant other than the default), or null when it never set one. */
  tenantActive(tenant: string): StoredSnapshot | null {
    const current = this.store.policy.tenantActive(tenant);
    return current === undefined ? null : this.getTenant(tenant, current.snapshot_id);
  }

  /** Activations, newest first: the host's, or `tenant`'s own bundle's. */
  history(limit = 100, tenant: string = DEFAULT_TENANT): PolicyActivation[] {
    return tenant === DEFAULT_TENANT ? this.store.policy.activations(limit) : this.store.policy.tenantActivations(tenant, limit);
  }

  /** Every override of `tenant` (default: the host's) with its status now, oldest first. */
  overrides(tenant: string = DEFAULT_TENANT): OverrideInfo[] {
    const now = this.now();
    return this.store.policy.listOverrides(tenant).map((r) => this.info(r, now));
  }

  /**
   * Creates a narrow "approve always": one exact tool id (patterns are refused), optionally one
   * exact args hash and an expiry. It turns require_approval into allow; it never beats a deny.
   */
  addOverride(input: AddOverrideInput): OverrideInfo {
    const now = this.now();
    const bad = (message: string) => new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', message, { tool_id: input.tool_id });
    if (typeof input.tool_id !== 'string' || input.tool_id.includes('*')) throw bad(`an override names one exact tool id, not a pattern: ${JSON.stringify(String(input.tool_id).slice(0, 64))}`);
    if (!EXACT_TOOL_ID.test(input.tool_id)) throw bad(`not a tool id: ${JSON.stringify(input.tool_id.slice(0, 64))}`);
    const argsHash = input.args_hash ?? null;
    if (argsHash !== null && !SHA256_HEX.test(argsHash)) throw bad('args_hash must be 64 lowercase hex characters (sha256 of the canonical arguments)');
    const expiresAt = input.expires_at ?? null;
    if (expiresAt !== null && (!Number.isSafeInteger(expiresAt) || expiresAt <= now)) throw bad('expires_at must be a time in the future (epoch milliseconds)');
    if (typeof input.created_by !== 'string' || input.created_by.length === 0) throw bad('created_by is required');
    const row: PolicyOverrideRow = {
      id: 'ovr_' + randomBytes(16).toString('hex'),
      tool_id: input.tool_id,
      args_hash: argsHash,
      created_by: input.created_by,
      created_from_approval: input.created_from_approval ?? null,
      created_at: now,
      expires_at: expiresAt,
      revoked_at: null,
    };
    this.store.tx(() => this.store.policy.insertOverride(row, input.tenant ?? DEFAULT_TENANT));
    return this.info(row, now);
  }

  /**
   * Revokes an override. `changed` is false when it was already revoked (revoking is
   * idempotent); TYRUM_ERR_NOT_FOUND when there is no such override.
   */
  revokeOverride(id: string, tenant: string = DEFAULT_TENANT): { override: OverrideInfo; changed: boolean } {
    const now = this.now();
    const changed = this.store.tx(() => {
      // Another tenant's override is as unknown as a missing one.
      if (this.store.policy.getOverride(id, tenant) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no policy override ${id}`, { override_id: id });
      return this.store.policy.revokeOverride(id, now, tenant);
    });
    return { override: this.info(this.store.policy.getOverride(id, tenant)!, now), changed };
  }

  /**
   * Decides `call` against the active snapshot and the tool's overrides (pure `decide`). For a
   * call of another tenant (`tenant`): the stricter of the host's decision and the tenant's own
   * bundle's, with the tenant's overrides (`decideForTenant`).
   */
  decide(call: PolicyCall, now: number = this.now(), tenant: string = DEFAULT_TENANT): PolicyDecision {
    const host = this.activeSnapshot();
    const hostOverrides = this.store.policy.unrevokedForTool(call.tool_id);
    if (tenant === DEFAULT_TENANT) return decide(host, call, hostOverrides, now);
    return decideForTenant(host, call, hostOverrides, this.tenantPolicy(tenant, this.store.policy.unrevokedForTool(call.tool_id, tenant)), now);
  }

  /** As `decide`, with the reasoning (for `tyrum policy explain`); lists revoked overrides too. */
  explain(call: PolicyCall, now: number = this.now(), tenant: string = DEFAULT_TENANT): PolicyExplanation {
    if (tenant === DEFAULT_TENANT) {
      const overrides = this.store.policy.listOverrides().filter((o) => o.tool_id === call.tool_id);
      return explain(this.activeSnapshot(), call, overrides, now);
    }
    const own = this.store.policy.listOverrides(tenant).filter((o) => o.tool_id === call.tool_id);
    return explainForTenant(this.activeSnapshot(), call, this.store.policy.unrevokedForTool(call.tool_id), this.tenantPolicy(tenant, own), now);
  }

  private tenantPolicy(tenant: string, overrides: readonly PolicyOverride[]): TenantPolicy {
    const current = this.store.policy.tenantActive(tenant);
    const hit = current === undefined ? undefined : this.bundles.get(current.snapshot_id);
    const snapshot = current === undefined ? null : hit !== undefined ? { id: current.snapshot_id, bundle: hit } : this.getTenant(tenant, current.snapshot_id);
    return { tenant_id: tenant, snapshot: snapshot === null ? null : { id: snapshot.id, bundle: snapshot.bundle }, overrides };
  }

  /** The hot path of `decide`: one pointer read, then the cached bundle (snapshots never change). */
  private activeSnapshot(): PolicySnapshot {
    const id = this.store.policy.active()?.snapshot_id;
    const hit = id === undefined ? undefined : this.bundles.get(id);
    return id !== undefined && hit !== undefined ? { id, bundle: hit } : this.active();
  }

  private info(r: PolicyOverrideRow, now: number): OverrideInfo {
    const status: OverrideStatus = r.revoked_at !== null ? 'revoked' : r.expires_at !== null && now >= r.expires_at ? 'expired' : 'active';
    return { ...r, status };
  }

  /** Parses a stored bundle after checking it still hashes to its id (detects an altered row). */
  private bundleOf(row: PolicySnapshotRow): PolicyBundle {
    const hit = this.bundles.get(row.id);
    if (hit !== undefined) return hit;
    if (snapshotIdOfCanonical(row.bundle) !== row.id) {
      throw new TyrumError('TYRUM_ERR_INTERNAL', `policy snapshot ${row.id} does not match its content hash: the database row was altered`, { snapshot_id: row.id });
    }
    // Frozen: the same object is handed to every caller from the cache.
    const bundle = deepFreeze(JSON.parse(row.bundle) as PolicyBundle);
    if (this.bundles.size >= CACHED_BUNDLES) this.bundles.delete(this.bundles.keys().next().value!);
    this.bundles.set(row.id, bundle);
    return bundle;
  }
}
