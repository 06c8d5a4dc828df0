/**
 * Node pairing: the durable record that lets a node device act, and its state machine.
 *
 *   (none) ──node connects──► awaiting_human ──approve──► approved ──revoke──► revoked
 *                                   └──────────deny─────► denied
 *   approved ──approve──► approved (allowlist, trust level or name replaced)
 *
 * `denied` and `revoked` are final for their row: a later connection of the device starts a new
 * row, `awaiting_human` with an empty allowlist, so reconnecting never restores access. Every
 * transition writes the row, its `pairing.updated` outbox event and the audit entry describing
 * it in one transaction (one commit); racing resolutions are decided by a conditional update,
 * and the loser gets `conflict`. Revoking a pairing revokes its node token in the same
 * transaction; the caller closes the node's sockets (the gateway's revocation watcher does it
 * within a second for a revocation committed by another process).
 *
 * This module decides nothing about dispatch: which node may run which capability is read from
 * the approved rows by the node host.
 */
import { randomBytes } from 'node:crypto';
import { TyrumError } from '../errors/index.js';
import type { AuditLog } from '../audit/log.js';
import type { AuditActor } from '../audit/entry.js';
import type { EventLog, Emit } from '../execution/events.js';
import { canonicalJson } from '../util/canonical-json.js';
import { isLoopback } from '../config/index.js';
import type { PolicyBundle } from '../../schemas/index.js';
import { PAIRING_STATES, type PairingRow, type PairingState, type Store, type TrustLevel } from '../store/index.js';

/** A capability as a node advertised it: id, version and the hash of its definition. */
export interface CapabilityRef {
  id: string;
  version: string;
  definition_hash: string;
}

/** An allowlist entry: the capability pinned to the definition the operator saw, and its effect. */
export interface AllowedCapability extends CapabilityRef {
  /** Run without an approval under the default policy (the operator vouched it changes nothing). */
  read_only: boolean;
}

/** What a connecting node says about itself (connect.init) and where it connects from. */
export interface NodeFacts {
  device_id: string;
  pubkey: string;
  label: string | null;
  platform: string | null;
  version: string | null;
  mode: string | null;
  remote_address: string;
  advertised: CapabilityRef[];
}

/** A pairing as operators see it. */
export interface Pairing {
  pairing_id: string;
  device_id: string;
  state: PairingState;
  trust_level: TrustLevel | null;
  node_name: string | null;
  label: string | null;
  platform: string | null;
  version: string | null;
  mode: string | null;
  remote_address: string;
  advertised: CapabilityRef[];
  capability_allowlist: AllowedCapability[];
  token_id: string | null;
  requested_at: number;
  updated_at: number;
  resolved_at: number | null;
  resolved_by: AuditActor | null;
  reason: string | null;
  credential_delivered_at: number | null;
}

export interface ApproveInput {
  trust_level: TrustLevel;
  /** Capabilities to allow, each one the node advertised; `version` omitted = the advertised one. */
  capability_allowlist: Array<{ id: string; version?: string }>;
  /** Capability ids (of the allowlist) that run as read-only tools. */
  read_only?: string[];
  /** The name tools address this node by (`node.<capability>@<name>`); default from its label. */
  node_name?: string;
  reason?: string;
}

/** Defaults; the config's limits override them. */
export const MAX_PENDING_PAIRINGS_DEFAULT = 100;
export const PAIRING_LIST_DEFAULT_LIMIT = 100;
export const PAIRING_LIST_MAX_LIMIT = 500;
export const PAIRING_REASON_MAX_LENGTH = 1000;
export const NODE_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;

export interface PairingServiceOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  now?: () => number;
  /** How many pairings may wait for an operator at once; a node beyond it is refused. */
  maxPending?: number;
  /** Whether the gateway knows a contract for this capability (only those can be allowed). Default: all. */
  knownCapability?: (id: string, version: string) => boolean;
  /**
   * The policy's answer for a new pairing (an auto-approve rule that matches a local node), or
   * null: it waits for an operator. Default: null.
   */
  autoApprove?: (facts: NodeFacts) => AutoApproval | null;
}

/** A pairing approved by a policy rule instead of an operator. */
export interface AutoApproval {
  rule_id: string;
  snapshot_id: string;
  capabilities: Array<{ id: string; version?: string }>;
  read_only: string[];
}

export class PairingService {
  private readonly store: Store;
  private readonly events: EventLog;
  private readonly audit: AuditLog;
  private readonly now: () => number;
  private readonly maxPending: number;
  private readonly known: (id: string, version: string) => boolean;
  private readonly autoApprove: (facts: NodeFacts) => AutoApproval | null;

  constructor(o: PairingServiceOptions) {
    this.known = o.knownCapability ?? (() => true);
    this.autoApprove = o.autoApprove ?? (() => null);
    this.store = o.store;
    this.events = o.events;
    this.audit = o.audit;
    this.now = o.now ?? Date.now;
    this.maxPending = o.maxPending ?? MAX_PENDING_PAIRINGS_DEFAULT;
  }

  /**
   * A node connected: its live pairing, or a new one awaiting an operator. A pending row is
   * refreshed with what the node says now (no event: nothing was decided). Throws
   * TYRUM_ERR_PAIRING_LIMIT when too many pairings are already waiting.
   */
  request(facts: NodeFacts): { pairing: Pairing; created: boolean } {
    const now = this.now();
    return this.events.transact((emit) => {
      const live = this.store.pairings.live(facts.device_id);
      if (live?.state === 'approved') return { pairing: fromRow(live), created: false };
      if (live) {
        const refreshed = this.store.pairings.transition(live.id, ['awaiting_human'], {
          advertised: canonicalJson(facts.advertised),
          label: facts.label,
          platform: facts.platform,
          version: facts.version,
          mode: facts.mode,
          remote_address: facts.remote_address,
          updated_at: now,
        });
        return { pairing: fromRow(refreshed ?? live), created: false };
      }
      if (this.store.pairings.countAwaiting() >= this.maxPending) {
        throw new TyrumError('TYRUM_ERR_PAIRING_LIMIT', `${this.maxPending} pairings already wait for an operator; deny or approve some first`, { max_pending_pairings: this.maxPending });
      }
      const row: PairingRow = {
        id: `pair_${randomBytes(8).toString('hex')}`,
        device_id: facts.device_id,
        pubkey: facts.pubkey,
        state: 'awaiting_human',
        trust_level: null,
        node_name: null,
        label: facts.label,
        platform: facts.platform,
        version: facts.version,
        mode: facts.mode,
        remote_address: facts.remote_address,
        advertised: canonicalJson(facts.advertised),
        allowlist: '[]',
        token_id: null,
        credential_delivered_at: null,
        requested_at: now,
        updated_at: now,
        resolved_at: null,
        resolved_by: null,
        reason: null,
      };
      this.store.pairings.insert(row);
      this.record(emit, row, 'pairing.requested', { kind: 'device', id: facts.device_id }, {
        remote_address: facts.remote_address,
        label: facts.label,
        platform: facts.platform,
        advertised: facts.advertised.map((c) => `${c.id}@${c.version}`),
      });
      const auto = this.autoApprove(facts);
      if (auto) {
        // The rule's capabilities the node advertised (and the gateway has contracts for).
        const offered = auto.capabilities.filter((c) => facts.advertised.some((a) => a.id === c.id && (c.version === undefined || a.version === c.version) && this.known(a.id, a.version)));
        const approved = this.approveInTx(emit, row, { trust_level: 'local', capability_allowlist: offered, read_only: auto.read_only.filter((id) => offered.some((c) => c.id === id)) }, { kind: 'policy', rule_id: auto.rule_id, snapshot_id: auto.snapshot_id }, 'pairing.auto_approved', now);
        return { pairing: approved, created: true };
      }
      return { pairing: fromRow(row), created: true };
    });
  }

  /**
   * Approve a pending pairing, or change an approved one's allowlist, trust level or name (its
   * token, if delivered, stays). Each allowlisted capability must be one the node advertised; its
   * definition hash is pinned, so a node that later changes the definition must be approved again.
   */
  approve(id: string, input: ApproveInput, actor: AuditActor): Pairing {
    if (input.trust_level !== 'local' && input.trust_level !== 'remote') throw invalid('trust_level must be "local" or "remote"', { trust_level: input.trust_level });
    checkReason(input.reason);
    const now = this.now();
    return this.events.transact((emit) => {
      const row = this.existing(id);
      if (row.state !== 'awaiting_human' && row.state !== 'approved') throw new TyrumError('TYRUM_ERR_INVALID_STATE', `pairing ${id} is ${row.state}; a new connection of the node starts a new pairing`, { pairing_id: id, state: row.state });
      return this.approveInTx(emit, row, input, actor, row.state === 'approved' ? 'pairing.allowlist_changed' : 'pairing.approved', now);
    });
  }

  private approveInTx(emit: Emit, row: PairingRow, input: ApproveInput, actor: AuditActor, auditType: string, now: number): Pairing {
    const id = row.id;
    const allowlist = allowlistFrom(JSON.parse(row.advertised) as CapabilityRef[], input);
    const unknown = allowlist.find((c) => !this.known(c.id, c.version));
    if (unknown) throw new TyrumError('TYRUM_ERR_NODE_CAPABILITY_UNKNOWN', `${unknown.id}@${unknown.version} has no contract this gateway knows, so it cannot be allowed`, { capability: `${unknown.id}@${unknown.version}` });
    let name = input.node_name ?? row.node_name ?? defaultName(row);
    // A default name another node holds falls back to one from the device id.
    if (input.node_name === undefined && row.node_name === null && this.store.pairings.byName(name)) name = `node-${row.device_id.replace(/^dev_/, '').slice(0, 8)}`;
    if (!NODE_NAME_PATTERN.test(name)) throw invalid(`node_name "${name}" must be 2-32 lowercase letters, digits and dashes, starting with a letter`, { node_name: name });
    const taken = this.store.pairings.byName(name);
    if (taken && taken.id !== id) throw new TyrumError('TYRUM_ERR_CONFLICT', `node name "${name}" is taken by pairing ${taken.id}`, { node_name: name, pairing_id: taken.id });
    const updated = this.store.pairings.transition(id, [row.state], {
      state: 'approved',
      trust_level: input.trust_level,
      node_name: name,
      allowlist: canonicalJson(allowlist),
      resolved_at: row.resolved_at ?? now,
      resolved_by: canonicalJson(actor),
      reason: input.reason ?? null,
      updated_at: now,
    });
    if (!updated) throw raced(id);
    this.record(emit, updated, auditType, actor, {
      trust_level: input.trust_level,
      node_name: name,
      capability_allowlist: allowlist.map((c) => `${c.id}@${c.version}${c.read_only ? ' (read-only)' : ''}`),
      ...(input.reason !== undefined ? { reason: input.reason } : {}),
    });
    return fromRow(updated);
  }

  /** Refuse a pending pairing. The node's connections are closed by the caller. */
  deny(id: string, input: { reason?: string }, actor: AuditActor): Pairing {
    checkReason(input.reason);
    return this.resolve(id, 'awaiting_human', 'denied', 'pairing.denied', input.reason, actor);
  }

  /**
   * Withdraw an approved pairing: its node token is revoked in the same transaction. Returns the
   * pairing; `token_id` names the revoked token, whose sockets the caller closes.
   */
  revoke(id: string, input: { reason?: string }, actor: AuditActor): Pairing {
    checkReason(input.reason);
    return this.resolve(id, 'approved', 'revoked', 'pairing.revoked', input.reason, actor);
  }

  /**
   * Tokens were revoked (`tyrum token revoke` or token.revoke, with what they minted): the
   * pairings whose node token is among them are revoked too, in one transaction, so no approved
   * pairing is left holding a dead token. Returns the pairings revoked.
   */
  revokeByTokens(tokenIds: readonly string[], actor: AuditActor): Pairing[] {
    return this.events.transact((emit) => tokenIds.map((id) => this.revokeByTokenInTx(emit, id, actor)).filter((p): p is Pairing => p !== undefined));
  }

  /**
   * The node token `tokenId` was revoked (token.revoke, or its minter's revocation): its pairing,
   * if approved, is revoked with it, inside the caller's transaction.
   */
  revokeByTokenInTx(emit: Emit, tokenId: string, actor: AuditActor): Pairing | undefined {
    const row = this.store.pairings.byToken(tokenId);
    if (!row || row.state !== 'approved') return undefined;
    const updated = this.store.pairings.transition(row.id, ['approved'], { state: 'revoked', resolved_by: canonicalJson(actor), reason: 'its node token was revoked', updated_at: this.now() });
    if (!updated) return undefined;
    this.record(emit, updated, 'pairing.revoked', actor, { reason: 'its node token was revoked', token_id: tokenId });
    return fromRow(updated);
  }

  get(id: string): Pairing {
    return fromRow(this.existing(id));
  }

  /** Newest first. */
  list(query: { state?: PairingState; limit?: number } = {}): Pairing[] {
    if (query.state !== undefined && !PAIRING_STATES.includes(query.state)) throw invalid(`state must be one of ${PAIRING_STATES.join(', ')}`, { state: query.state });
    const limit = query.limit ?? PAIRING_LIST_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) throw invalid('limit must be a positive integer', { limit });
    return this.store.committed.pairings.list(query.state, Math.min(limit, PAIRING_LIST_MAX_LIMIT)).map(fromRow);
  }

  private existing(id: string): PairingRow {
    const row = this.store.pairings.get(id);
    if (!row) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no pairing ${id}`, { pairing_id: id });
    return row;
  }

  private resolve(id: string, from: PairingState, to: PairingState, auditType: string, reason: string | undefined, actor: AuditActor): Pairing {
    const now = this.now();
    return this.events.transact((emit) => {
      const row = this.existing(id);
      if (row.state !== from) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `pairing ${id} is ${row.state}, not ${from}`, { pairing_id: id, state: row.state });
      const updated = this.store.pairings.transition(id, [from], { state: to, resolved_at: now, resolved_by: canonicalJson(actor), reason: reason ?? null, updated_at: now });
      if (!updated) throw raced(id);
      if (to === 'revoked' && updated.token_id !== null) this.store.tokens.revoke(updated.token_id, now);
      this.record(emit, updated, auditType, actor, { ...(reason !== undefined ? { reason } : {}), ...(to === 'revoked' && updated.token_id !== null ? { token_id: updated.token_id } : {}) });
      return fromRow(updated);
    });
  }

  /** The outbox event and the audit entry of a transition, in its transaction. */
  private record(emit: Emit, row: PairingRow, auditType: string, actor: AuditActor, data: Record<string, unknown>): void {
    emit('pairing.updated', pairingEvent(row));
    this.audit.appendInTx(auditType, actor, { pairing_id: row.id, device_id: row.device_id, state: row.state, ...data });
  }
}

/**
 * The active policy bundle's answer for a new pairing: the first `pairing.auto_approve` rule that
 * matches a node connecting from a loopback address (and, if the rule names labels, with one of
 * them). Nothing is auto-approved without such a rule, and never a remote node.
 */
export function policyAutoApprove(store: Store): (facts: NodeFacts) => AutoApproval | null {
  return (facts) => {
    if (!isLoopback(facts.remote_address)) return null;
    const active = store.policy.active();
    const snapshot = active ? store.policy.getSnapshot(active.snapshot_id) : undefined;
    if (!snapshot) return null;
    const bundle = JSON.parse(snapshot.bundle) as PolicyBundle;
    const rule = bundle.pairing?.auto_approve.find((r) => r.labels === undefined || (facts.label !== null && r.labels.includes(facts.label)));
    if (!rule) return null;
    return { rule_id: rule.id, snapshot_id: snapshot.id, capabilities: rule.capabilities, read_only: rule.read_only ?? [] };
  };
}

/** The `pairing.updated` event payload. */
export function pairingEvent(row: PairingRow): Record<string, unknown> {
  return { pairing_id: row.id, device_id: row.device_id, state: row.state, trust_level: row.trust_level, node_name: row.node_name };
}

export function fromRow(r: PairingRow): Pairing {
  return {
    pairing_id: r.id,
    device_id: r.device_id,
    state: r.state,
    trust_level: r.trust_level,
    node_name: r.node_name,
    label: r.label,
    platform: r.platform,
    version: r.version,
    mode: r.mode,
    remote_address: r.remote_address,
    advertised: JSON.parse(r.advertised) as CapabilityRef[],
    capability_allowlist: JSON.parse(r.allowlist) as AllowedCapability[],
    token_id: r.token_id,
    requested_at: r.requested_at,
    updated_at: r.updated_at,
    resolved_at: r.resolved_at,
    resolved_by: r.resolved_by === null ? null : (JSON.parse(r.resolved_by) as AuditActor),
    reason: r.reason,
    credential_delivered_at: r.credential_delivered_at,
  };
}

function allowlistFrom(advertised: CapabilityRef[], input: ApproveInput): AllowedCapability[] {
  if (!Array.isArray(input.capability_allowlist)) throw invalid('capability_allowlist must be an array');
  const readOnly = new Set(input.read_only ?? []);
  const out: AllowedCapability[] = [];
  const seen = new Set<string>();
  for (const want of input.capability_allowlist) {
    const offered = advertised.filter((c) => c.id === want.id);
    const match = want.version === undefined ? offered[0] : offered.find((c) => c.version === want.version);
    if (!match) {
      const what = want.version === undefined ? want.id : `${want.id}@${want.version}`;
      throw new TyrumError('TYRUM_ERR_NODE_CAPABILITY_UNKNOWN', `the node did not advertise ${what} (it advertised: ${advertised.map((c) => `${c.id}@${c.version}`).join(', ') || 'nothing'})`, { capability: what });
    }
    if (seen.has(match.id)) throw invalid(`capability ${match.id} is listed twice`, { capability: match.id });
    seen.add(match.id);
    out.push({ id: match.id, version: match.version, definition_hash: match.definition_hash, read_only: readOnly.has(match.id) });
  }
  const stray = [...readOnly].find((id) => !seen.has(id));
  if (stray !== undefined) throw invalid(`read_only names ${stray}, which is not in the allowlist`, { capability: stray });
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** A name from the node's label ("Dev Laptop" -> dev-laptop), or from its device id. */
function defaultName(row: PairingRow): string {
  const fromLabel = (row.label ?? '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 32).replace(/-+$/, '');
  if (NODE_NAME_PATTERN.test(fromLabel)) return fromLabel;
  return `node-${row.device_id.replace(/^dev_/, '').slice(0, 8)}`;
}

function checkReason(reason: unknown): void {
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > PAIRING_REASON_MAX_LENGTH)) throw invalid(`reason must be a string of at most ${PAIRING_REASON_MAX_LENGTH} characters`);
}

function invalid(message: string, details?: Record<string, unknown>): TyrumError {
  return new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', message, details);
}

function raced(id: string): TyrumError {
  return new TyrumError('TYRUM_ERR_CONFLICT', `pairing ${id} was resolved by someone else meanwhile`, { pairing_id: id });
}
