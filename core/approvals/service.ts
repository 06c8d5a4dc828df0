/**
 * The approval state machine: pending → approved | denied | expired. Terminal states never move.
 *
 * Approval state lives only here, in the approvals table, bound by hash to one call (see
 * binding.ts); nothing a caller puts in a tool's arguments can approve anything. Resolution is
 * one conditional UPDATE (`WHERE state = 'pending' AND expires_at > now`), so of two racing
 * resolutions exactly one matches and the other gets `conflict`. Expiry is applied lazily on
 * read and by `expireDue` (on start and periodically); an expired approval counts as denied.
 * Each transition writes an `approval.updated` event in the same transaction, and a decision
 * on a run's approval requeues that run so the engine applies it.
 */
import { randomUUID } from 'node:crypto';
import type { ApprovalMode, ApprovalRow, ApprovalState, Store } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { EventLog, runEventPayload, type Emit } from '../execution/events.js';
import { argsHash, bindingMismatch, type Binding } from './binding.js';

export const APPROVAL_DEFAULT_TTL_MS = 24 * 60 * 60 * 1000;
export const APPROVAL_MAX_TTL_MS = 30 * 24 * 60 * 60 * 1000;
export const APPROVAL_REASON_MAX_LENGTH = 1000;
export const APPROVALS_LIST_DEFAULT_LIMIT = 100;
export const APPROVALS_LIST_MAX_LIMIT = 1000;

export interface ApprovalServiceOptions {
  store: Store;
  /** Shared with the execution engine so one set of listeners sees every event. */
  events?: EventLog;
  /** When given, every decision, rejected decision and expiry is audited. */
  audit?: AuditLog;
  now?: () => number;
  /** Lifetime of a new approval (default 24 h). */
  defaultTtlMs?: number;
  /** Applied to the arguments shown to the operator (never to what is hashed). */
  redact?: (value: unknown) => unknown;
}

/** What needs approving: one call, and (when it belongs to a run) the step that will make it. */
export interface ApprovalRequest {
  run_id: string | null;
  step_idx: number | null;
  tool_id: string;
  args: Record<string, unknown>;
  definition_hash: string;
  plugin_digest: string;
  requested_by: string;
  ttl_ms?: number;
}

export interface Approval extends Binding {
  id: string;
  run_id: string | null;
  step_idx: number | null;
  tool_id: string;
  /** The arguments as the operator sees them (redacted). */
  args: unknown;
  requested_by: string;
  state: ApprovalState;
  mode: ApprovalMode | null;
  reason: string | null;
  created_at: number;
  expires_at: number;
  resolved_at: number | null;
  resolved_by: AuditActor | null;
  consumed_at: number | null;
}

export interface ResolveInput {
  decision: 'approved' | 'denied';
  reason?: string;
  /** `always` asks the integrator to create a narrow policy override as well (approvals only). */
  mode?: ApprovalMode;
}

export interface ResolveResult {
  approval: Approval;
  /** True for an approval with mode `always`: the caller should create the policy override. */
  create_override: boolean;
}

export interface ApprovalListQuery {
  state?: ApprovalState;
  run_id?: string;
  limit?: number;
  /** An approval id from the previous page. */
  after?: string;
  /** Only this tenant's approvals; absent: every approval. */
  tenant?: string;
}

const STATES: readonly ApprovalState[] = ['pending', 'approved', 'denied', 'expired'];
const SYSTEM_ACTOR: AuditActor = { kind: 'system', component: 'approvals' };

export function approvalFromRow(r: ApprovalRow): Approval {
  return {
    id: r.id,
    run_id: r.run_id,
    step_idx: r.step_idx,
    tool_id: r.tool_id,
    args: JSON.parse(r.args) as unknown,
    args_hash: r.args_hash,
    definition_hash: r.definition_hash,
    plugin_digest: r.plugin_digest,
    requested_by: r.requested_by,
    state: r.state,
    mode: r.mode,
    reason: r.reason,
    created_at: r.created_at,
    expires_at: r.expires_at,
    resolved_at: r.resolved_at,
    resolved_by: r.resolved_by === null ? null : (JSON.parse(r.resolved_by) as AuditActor),
    consumed_at: r.consumed_at,
  };
}

/** The `approval.updated` event payload. */
export function approvalEvent(r: ApprovalRow): Record<string, unknown> {
  return { approval_id: r.id, run_id: r.run_id, step_idx: r.step_idx, tool_id: r.tool_id, state: r.state, mode: r.mode, expires_at: r.expires_at, consumed: r.consumed_at !== null };
}

/** Creates, lists, resolves and expires approvals. One per store per process. */
export class ApprovalService {
  readonly events: EventLog;
  private readonly store: Store;
  private readonly audit: AuditLog | undefined;
  private readonly now: () => number;
  private readonly defaultTtlMs: number;
  private readonly redact: (value: unknown) => unknown;

  constructor(options: ApprovalServiceOptions) {
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.events = options.events ?? new EventLog({ store: options.store, now: this.now });
    this.audit = options.audit;
    this.defaultTtlMs = options.defaultTtlMs ?? APPROVAL_DEFAULT_TTL_MS;
    this.redact = options.redact ?? ((v) => v);
    checkTtl(this.defaultTtlMs);
  }

  /**
   * Inserts a pending approval inside the caller's transaction (the engine pauses the run in
   * the same one). The arguments are hashed here, canonically, so the binding cannot be fed in.
   */
  createInTx(emit: Emit, req: ApprovalRequest): Approval {
    const ttl = req.ttl_ms ?? this.defaultTtlMs;
    checkTtl(ttl);
    const now = this.now();
    const row: ApprovalRow = {
      id: `apr_${randomUUID()}`,
      run_id: req.run_id,
      step_idx: req.step_idx,
      tool_id: req.tool_id,
      args: JSON.stringify(this.redact(req.args) ?? null),
      args_hash: argsHash(req.args),
      definition_hash: req.definition_hash,
      plugin_digest: req.plugin_digest,
      requested_by: req.requested_by,
      state: 'pending',
      mode: null,
      reason: null,
      created_at: now,
      expires_at: now + ttl,
      resolved_at: null,
      resolved_by: null,
      consumed_at: null,
      // The run's tenant: whoever may see the run may see what it waits for, and no one else.
      tenant_id: req.run_id === null ? 'default' : this.store.execution.runTenant(req.run_id),
    };
    this.store.approvals.insert(row);
    emit('approval.updated', approvalEvent(row));
    return approvalFromRow(row);
  }

  /** A standalone approval (not tied to a run step). */
  create(req: ApprovalRequest): Approval {
    const a = this.events.transact((emit) => this.createInTx(emit, req));
    this.auditAppend('approval.requested', { kind: 'principal', id: req.requested_by }, { approval_id: a.id, run_id: a.run_id, step_idx: a.step_idx, tool_id: a.tool_id, args_hash: a.args_hash, expires_at: a.expires_at });
    return a;
  }

  /** The approval, with expiry applied if its time is up. Throws not_found. */
  get(id: string): Approval {
    const a = this.find(id);
    if (!a) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no approval ${id}`, { approval_id: id });
    return a;
  }

  /** Like `get`, but undefined when there is no such approval. */
  find(id: string): Approval | undefined {
    const row = this.store.approvals.get(id);
    if (!row) return undefined;
    if (row.state === 'pending' && row.expires_at <= this.now()) {
      const [expired] = this.expireWhere(this.now(), id);
      if (expired) return expired;
      const again = this.store.approvals.get(id);
      return again ? approvalFromRow(again) : undefined;
    }
    return approvalFromRow(row);
  }

  /** Approvals, newest first, after applying any expiry that is due. */
  list(query: ApprovalListQuery = {}): Approval[] {
    if (query.state !== undefined && !STATES.includes(query.state)) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `state must be one of ${STATES.join(', ')}`, { state: query.state });
    }
    const limit = query.limit ?? APPROVALS_LIST_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit });
    this.expireDue();
    // Committed rows only: an approval requested in the group still open may yet roll back.
    return this.store.committed.approvals
      .list({ state: query.state, runId: query.run_id, limit: Math.min(limit, APPROVALS_LIST_MAX_LIMIT), afterId: query.after, ...(query.tenant !== undefined ? { tenant: query.tenant } : {}) })
      .map(approvalFromRow);
  }

  /**
   * Approve or deny, atomically. The loser of a race gets `conflict`; a decision on an
   * expired approval gets `invalid_state` (and the approval is marked expired if it was not
   * yet). Both rejections are audited.
   */
  resolve(id: string, input: ResolveInput, actor: AuditActor): ResolveResult {
    if (input.decision !== 'approved' && input.decision !== 'denied') {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'decision must be "approved" or "denied"', { decision: input.decision });
    }
    const mode = input.mode ?? 'once';
    if (mode !== 'once' && mode !== 'always') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'mode must be "once" or "always"', { mode });
    if (input.reason !== undefined && (typeof input.reason !== 'string' || input.reason.length > APPROVAL_REASON_MAX_LENGTH)) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `reason must be a string of at most ${APPROVAL_REASON_MAX_LENGTH} characters`);
    }
    const by = canonicalJson(actor);
    const now = this.now();
    type Outcome = { kind: 'won'; row: ApprovalRow } | { kind: 'expired'; row: ApprovalRow; expiredNow: boolean } | { kind: 'conflict'; row: ApprovalRow } | { kind: 'missing' };
    const outcome = this.events.transact<Outcome>((emit) => {
      const won = this.store.approvals.resolve(id, input.decision, mode, input.reason ?? null, by, now);
      if (won) {
        emit('approval.updated', approvalEvent(won));
        this.requeue(emit, won, now);
        return { kind: 'won', row: won };
      }
      const row = this.store.approvals.get(id);
      if (!row) return { kind: 'missing' };
      if (row.state === 'pending') {
        // Still pending yet the update missed: its time is up. Expiry applies now, once.
        const [expired] = this.expireInTx(emit, now, id);
        return { kind: 'expired', row: expired ?? row, expiredNow: expired !== undefined };
      }
      if (row.state === 'expired') return { kind: 'expired', row, expiredNow: false };
      return { kind: 'conflict', row };
    });
    const attempted = { approval_id: id, decision: input.decision, mode };
    switch (outcome.kind) {
      case 'missing':
        throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no approval ${id}`, { approval_id: id });
      case 'won': {
        const a = approvalFromRow(outcome.row);
        this.auditAppend('approval.resolved', actor, { ...attempted, reason: a.reason, run_id: a.run_id, step_idx: a.step_idx, tool_id: a.tool_id, args_hash: a.args_hash, definition_hash: a.definition_hash, plugin_digest: a.plugin_digest });
        return { approval: a, create_override: a.state === 'approved' && mode === 'always' };
      }
      case 'expired':
        if (outcome.expiredNow) this.auditExpired(outcome.row);
        this.auditAppend('approval.resolve_rejected', actor, { ...attempted, reason: 'expired', state: 'expired' });
        throw new TyrumError('TYRUM_ERR_APPROVAL_EXPIRED', `approval ${id} expired at ${new Date(outcome.row.expires_at).toISOString()}`, { approval_id: id, state: 'expired', expires_at: outcome.row.expires_at });
      case 'conflict':
        this.auditAppend('approval.resolve_rejected', actor, { ...attempted, reason: 'conflict', state: outcome.row.state });
        throw new TyrumError('TYRUM_ERR_CONFLICT', `approval ${id} is already ${outcome.row.state}`, { approval_id: id, state: outcome.row.state });
    }
  }

  /** Expires every pending approval whose time is up (once each); returns those it expired. */
  expireDue(now: number = this.now()): Approval[] {
    if (!this.store.approvals.hasDue(now)) return [];
    return this.expireWhere(now);
  }

  /**
   * Single use: marks an approved approval consumed by its step, inside the caller's
   * transaction. False when it is not approved, belongs to another step, or was used already.
   */
  consumeInTx(emit: Emit, id: string, runId: string, stepIdx: number): boolean {
    if (!this.store.approvals.consume(id, runId, stepIdx, this.now())) return false;
    const row = this.store.approvals.get(id);
    if (row) emit('approval.updated', approvalEvent(row));
    return true;
  }

  /** Pending approvals of a cancelled run become denied, inside the caller's transaction. */
  denyForCancelledRunInTx(emit: Emit, runId: string, actor: AuditActor): ApprovalRow[] {
    const rows = this.store.approvals.denyPendingForRun(runId, 'run cancelled', canonicalJson(actor), this.now());
    for (const r of rows) emit('approval.updated', approvalEvent(r));
    return rows;
  }

  private expireWhere(now: number, id?: string): Approval[] {
    const rows = this.events.transact((emit) => this.expireInTx(emit, now, id));
    for (const r of rows) this.auditExpired(r);
    return rows.map(approvalFromRow);
  }

  private expireInTx(emit: Emit, now: number, id?: string): ApprovalRow[] {
    const rows = this.store.approvals.expireDue(now, id);
    for (const r of rows) {
      emit('approval.updated', approvalEvent(r));
      this.requeue(emit, r, now);
    }
    return rows;
  }

  /** A run paused on this approval becomes claimable so the engine applies the outcome. */
  private requeue(emit: Emit, r: ApprovalRow, now: number): void {
    const run = this.store.approvals.requeueRun(r, now);
    if (run) emit('run.updated', runEventPayload(run));
  }

  private auditExpired(r: ApprovalRow): void {
    this.auditAppend('approval.expired', SYSTEM_ACTOR, { approval_id: r.id, run_id: r.run_id, step_idx: r.step_idx, tool_id: r.tool_id, expires_at: r.expires_at });
  }

  private auditAppend(type: string, actor: AuditActor, data: Record<string, unknown>): void {
    this.audit?.append(type, actor, data).catch(() => undefined);
  }
}

/** True when `actual` is exactly what `a` approved. */
export function approvalCovers(a: Binding, actual: Binding): boolean {
  return bindingMismatch(a, actual).length === 0;
}

function checkTtl(ttl: number): void {
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > APPROVAL_MAX_TTL_MS) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `approval ttl must be an integer between 1 ms and ${APPROVAL_MAX_TTL_MS} ms`, { ttl_ms: ttl });
  }
}
