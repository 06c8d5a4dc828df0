/**
 * The policy service: the stored side of policy (snapshots, the active pointer, overrides)
 * around the pure `decide`. This module does the I/O and reads the clock; decide.ts does not.
 */
import { randomBytes } from 'node:crypto';
import type { Store } from '../store/index.js';
import type { PolicyOverrideRow, PolicySnapshotRow } from '../store/policy.js';
import { POLICY_GLOB_CHARSETS, type PolicyBundle } from '../../schemas/src/policy.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { decide, type PolicyCall, type PolicyDecision, type PolicyOverride, type PolicySnapshot } from './decide.js';
import { explain, type PolicyExplanation } from './explain.js';
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
  set(bundle: unknown, actor: string, source = 'policy bundle'): SetResult {
    const valid = parseBundle(bundle, source);
    const text = canonicalJson(valid);
    const id = snapshotIdOfCanonical(text);
    const at = this.now();
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

  /** Activations, newest first. */
  history(limit = 100): PolicyActivation[] {
    return this.store.policy.activations(limit);
  }

  /** Every override with its status now, oldest first. */
  overrides(): OverrideInfo[] {
    const now = this.now();
    return this.store.policy.listOverrides().map((r) => this.info(r, now));
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
    this.store.tx(() => this.store.policy.insertOverride(row));
    return this.info(row, now);
  }

  /**
   * Revokes an override. `changed` is false when it was already revoked (revoking is
   * idempotent); TYRUM_ERR_NOT_FOUND when there is no such override.
   */
  revokeOverride(id: string): { override: OverrideInfo; changed: boolean } {
    const now = this.now();
    const changed = this.store.tx(() => {
      if (this.store.policy.getOverride(id) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no policy override ${id}`, { override_id: id });
      return this.store.policy.revokeOverride(id, now);
    });
    return { override: this.info(this.store.policy.getOverride(id)!, now), changed };
  }

  /** Decides `call` against the active snapshot and the tool's overrides (pure `decide`). */
  decide(call: PolicyCall, now: number = this.now()): PolicyDecision {
    return decide(this.activeSnapshot(), call, this.store.policy.unrevokedForTool(call.tool_id), now);
  }

  /** As `decide`, with the reasoning (for `tyrum policy explain`); lists revoked overrides too. */
  explain(call: PolicyCall, now: number = this.now()): PolicyExplanation {
    const overrides = this.store.policy.listOverrides().filter((o) => o.tool_id === call.tool_id);
    return explain(this.activeSnapshot(), call, overrides, now);
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
