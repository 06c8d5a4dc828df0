/**
 * Implementations of the operations in the catalog (schemas/src/operations.ts). Every handler
 * receives a payload that has already passed its schema and an authorized peer; a test checks
 * that each non-handshake operation in the catalog has exactly one handler here.
 */
import type { WorkflowRunner } from '../playbooks/runner.js';
import { checkPlaybook, compilePlaybook } from '../playbooks/spec.js';
import type { OperationType } from '../../schemas/index.js';
import { listAudit, verifyAudit, type AuditLog, type CheckpointVerifier } from '../audit/index.js';
import { entryTenant, type AuditActor } from '../audit/entry.js';
import { tenantOf, tokenInfo, type TokenService } from '../auth/tokens.js';
import { DEFAULT_TENANT } from '../../schemas/index.js';
import type { Store, WorkflowRow, WorkflowState } from '../store/index.js';
import type { PluginRegistry } from '../registry/plugins.js';
import type { ToolCatalog, ToolSource } from '../registry/tools.js';
import type { PluginGrant, RiskFlag } from '../../schemas/index.js';
import type { ExecutionEngine, RunDetail, Postcondition } from '../execution/index.js';
import type { ApprovalService, ResolveApproval } from '../approvals/index.js';
import { PolicyService, policyCall } from '../policy/index.js';
import { argsHash } from '../approvals/binding.js';
import { isoTimes } from '../util/iso-times.js';
import type { Peer } from './session.js';
import type { PairingService, Pairing } from '../nodes/pairing.js';
import type { NodeRegistry } from '../nodes/registry.js';
import { presenceView, type PresenceRegistry } from '../nodes/presence.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { conversationInfo, deliveryInfo, messageInfo, turnInfo, type ConversationService } from '../conversations/service.js';
import { channelInfo, senderInfo, type ChannelService } from '../channels/service.js';
import type { ArtifactService, ArtifactInfo } from '../artifacts/service.js';
import type { McpRegistry, McpServerView } from '../mcp/registry.js';
import type { DoctorCheck } from '../doctor/checks.js';

export interface HandlerServices {
  store: Store;
  tokens: TokenService;
  audit: AuditLog;
  verifier: CheckpointVerifier;
  checkpointPath: string;
  /** Called after a token is revoked so its live connections close at once. */
  onTokenRevoked(tokenId: string): void;
  plugins: PluginRegistry;
  /** The tool catalog; `list` reads every enabled plugin without stalling the event loop. */
  host: ToolSource & Pick<ToolCatalog, 'list'>;
  engine: ExecutionEngine;
  approvals: ApprovalService;
  resolveApproval: ResolveApproval;
  policy: PolicyService;
  pairings: PairingService;
  /** The node connections: whether a node is connected; told when pairings change. */
  nodes: Pick<NodeRegistry, 'connected' | 'reconcile' | 'reportReady' | 'evidence'>;
  presence: Pick<PresenceRegistry, 'list'>;
  conversations: ConversationService;
  channels: ChannelService;
  /** Playbook runs (workflow.start with a playbook, workflow.get|list|resume|cancel). */
  workflows: WorkflowRunner;
  /** Artifact metadata and read checks (core/artifacts). */
  artifacts: Pick<ArtifactService, 'get' | 'listForRun' | 'readableBy'>;
  /** MCP servers and their tool approvals (mcp.list, mcp.diff, mcp.approve). */
  mcp: Pick<McpRegistry, 'list' | 'get' | 'diff' | 'approve'>;
  /** `tyrum doctor`'s checks of the gateway's own home (doctor.run; the whole-database reads on a worker thread: core/doctor/offload.ts). */
  /** One at a time; a report is reused for a minute (its `checked_at` says when it was made). */
  doctor(): Promise<{ ok: boolean; checks: DoctorCheck[]; checked_at: string }>;
  /** Secret handles (never values). */
  /** Throws forbidden unless a tenant other than the default may call the tool (docs/tenancy.md). */
  checkTenantTool(tenant: string, toolId: string): void;
  /** A tenant's secret handles (each tenant sees only its own). */
  secretHandles(tenant: string): Array<{ name: string; version: number; destinations: string[]; created_at: number; rotated_at: number }>;
  now(): number;
}

/** The tenant of a stored audit entry (its actor's `tenant`; unparsable: the host's). */
function entryTenantOf(actorJson: string): string {
  try {
    return entryTenant(JSON.parse(actorJson) as AuditActor);
  } catch {
    return DEFAULT_TENANT;
  }
}

/** The peer's tenant: every tenant-owned record a handler reads or changes is scoped by it (docs/tenancy.md). */
const tenant = (peer: Peer): string => tenantOf(peer.token);
/** The audit actor of a peer; one of a tenant other than the default names it (hashed with the entry). */
const actor = (peer: Peer) => ({ kind: 'token', id: peer.token.id, device_id: peer.deviceId, ...(tenant(peer) !== DEFAULT_TENANT ? { tenant: tenant(peer) } : {}) });
const DEFAULT_WAIT_MS = 10_000;
/** Default lifetime of a node.bootstrap token. */
export const NODE_BOOTSTRAP_TTL_SECONDS = 300;

/** A pairing as `PairingInfo` on the wire (with whether the node is connected now). */
export function pairingView(p: Pairing, connected = false): Record<string, unknown> {
  return isoTimes({
    pairing_id: p.pairing_id,
    device_id: p.device_id,
    state: p.state,
    trust_level: p.trust_level,
    node_name: p.node_name,
    label: p.label,
    platform: p.platform,
    version: p.version,
    remote_address: p.remote_address,
    advertised: p.advertised,
    capability_allowlist: p.capability_allowlist,
    requested_at: p.requested_at,
    resolved_at: p.resolved_at,
    resolved_by: p.resolved_by as Record<string, unknown> | null,
    reason: p.reason,
    credential_delivered_at: p.credential_delivered_at,
    connected,
  });
}

/** An artifact on the wire: ISO times and where its bytes download from. */
function artifactView(a: ArtifactInfo): Record<string, unknown> {
  return isoTimes({ ...a, download_path: `/artifacts/${a.artifact_id}` });
}

/** The tool.invoke view of a one-step run. */
function invokeView(d: RunDetail): Record<string, unknown> {
  const step = d.steps[0];
  const usage = step?.usage as Record<string, unknown> | null | undefined;
  return {
    run_id: d.run.id,
    state: d.run.state,
    tool_id: step?.tool_id ?? '',
    output: d.run.state === 'succeeded' ? (step?.result ?? null) : null,
    error: d.run.error ?? step?.error ?? null,
    approval_id: step?.approval_id ?? null,
    policy: step?.policy ? { decision: step.policy.decision, enforced: step.policy.enforced, snapshot_id: step.policy.snapshot_id } : null,
    definition_hash: step?.definition_hash ?? null,
    plugin_digest: step?.plugin_digest ?? null,
    duration_ms: step?.duration_ms ?? null,
    usage: usage && typeof usage === 'object' ? usage : null,
  };
}

type Payload = Record<string, unknown>;
type Handler = (payload: Payload, peer: Peer) => Promise<Record<string, unknown>>;
/** Operations the gateway sends to nodes: a peer sending one is refused by the session, so none has a handler. */
export type ToNodeOperation = 'pairing.credential';
export type Handlers = Record<Exclude<OperationType, 'connect.init' | 'connect.proof' | ToNodeOperation>, Handler>;

/** Builds the handler table over the given services. */
export function createHandlers(s: HandlerServices): Handlers {
  // The resume token is an approval capability: only a caller who may approve sees it.
  const workflowView = (wf: WorkflowRow, peer: Peer): Record<string, unknown> => {
    const v = s.workflows.view(wf) as unknown as Record<string, unknown>;
    const mayApprove = peer.token.scopes.includes('operator.approvals') || peer.token.scopes.includes('operator.admin');
    return { ...v, ...(mayApprove ? { resume_token: s.workflows.tokenFor(wf) } : {}) };
  };
  /** Not found, exactly as an unknown id, for a run of another tenant. */
  const ownRun = (runId: string, peer: Peer): void => {
    if (s.store.committed.execution.runTenant(runId) !== tenant(peer)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
  };
  const ownApproval = (approvalId: string, peer: Peer): void => {
    const a = s.store.committed.approvals.get(approvalId) ?? s.store.approvals.get(approvalId);
    if (a !== undefined && (a.tenant_id ?? DEFAULT_TENANT) !== tenant(peer)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no approval ${approvalId}`, { approval_id: approvalId });
  };
  return {
    ping: async () => ({ pong: true, server_time: new Date(s.now()).toISOString() }),

    'audit.list': async (p, peer) => {
      const q = p as { after_seq?: number; limit?: number; type?: string };
      const entries = listAudit(s.store, { ...q, tenant: tenant(peer) });
      const limit = q.limit ?? 100;
      return { entries, next_after_seq: entries.length === limit ? entries[entries.length - 1]!.seq : null };
    },

    'audit.verify': async (_p, peer) => {
      // Flush first so entries queued by this very session are part of what is verified. A
      // checkpoint that cannot be signed (the log no longer extends the last one) is exactly
      // what the verification below reports, so it is not an error of this request.
      await s.audit.flush().catch((e: unknown) => {
        if (!isTyrumError(e, 'TYRUM_ERR_AUDIT_TAMPERED')) throw e;
      });
      const r = verifyAudit({ store: s.store, verifier: s.verifier, checkpointPath: s.checkpointPath });
      if (tenant(peer) !== DEFAULT_TENANT) {
        // A tenant's view of the one chain: whether it verifies, and its own entries' count and
        // newest hash. The checkpoint and other tenants' entries (which one is bad) are the host's.
        const own = s.store.committed.audit.tenantSummary(tenant(peer));
        const bad = r.first_bad === undefined ? undefined : s.store.committed.audit.get(r.first_bad.seq);
        const badIsOwn = bad !== undefined && entryTenantOf(bad.actor) === tenant(peer);
        return {
          ok: r.ok,
          entries: own.entries,
          head_hash: own.head?.hash ?? null,
          checkpoint_seq: null,
          first_bad_seq: badIsOwn ? r.first_bad!.seq : null,
          reason: r.ok ? null : badIsOwn ? (r.reason ?? null) : 'the audit chain does not verify; the host operator can see where (tyrum audit verify)',
        };
      }
      return {
        ok: r.ok,
        entries: r.entries,
        head_hash: r.entries === 0 ? null : r.head_hash,
        checkpoint_seq: r.checkpoint?.seq ?? null,
        first_bad_seq: r.first_bad?.seq ?? null,
        reason: r.reason ?? null,
      };
    },

    'doctor.run': () => s.doctor(),

    'token.create': async (p, peer) => {
      const q = p as { scopes: string[]; roles?: string[]; label?: string; ttl_seconds?: number };
      const created = await s.tokens.create({
        scopes: q.scopes,
        ...(q.roles !== undefined ? { roles: q.roles } : {}),
        ...(q.label !== undefined ? { label: q.label } : {}),
        ...(q.ttl_seconds !== undefined ? { ttlSeconds: q.ttl_seconds } : {}),
        createdBy: peer.token.id,
        parentId: peer.token.id,
      });
      await s.audit.append('token.created', actor(peer), { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: created.record.expires_at });
      return { token: created.token, info: tokenInfo(created.record) };
    },

    'token.list': async (_p, peer) => ({ tokens: s.tokens.list(tenant(peer)).map(tokenInfo) }),

    'token.revoke': async (p, peer) => {
      const id = (p as { token_id: string }).token_id;
      const { record: rec, descendants } = s.tokens.revoke(id, tenant(peer));
      const by = actor(peer);
      // Every token it minted, directly or not, was revoked with it: one entry each, queued
      // together so they go in one commit rather than one commit after another.
      await Promise.all([
        s.audit.append('token.revoked', by, { token_id: id, descendants }),
        ...descendants.map((d) => s.audit.append('token.revoked', by, { token_id: d, revoked_with: id })),
      ]);
      // A node token revoked here takes its pairing with it.
      s.pairings.revokeByTokens([id, ...descendants], by);
      for (const d of [id, ...descendants]) s.onTokenRevoked(d);
      return { token_id: id, revoked_at: new Date(rec.revoked_at ?? s.now()).toISOString() };
    },

    'attempt.evidence': async (p, peer) => s.nodes.evidence(peer, p as { dispatch_id: string; seq: number; evidence: Record<string, unknown> }),
    'mcp.list': async () => ({ servers: s.mcp.list().map(mcpServerView) }),
    'mcp.diff': async (p) => {
      const q = p as { name: string; all?: boolean };
      const tools = s.mcp.diff(q.name, { all: q.all ?? false });
      return { server: mcpServerView(s.mcp.get(q.name)), tools: tools as unknown as Array<Record<string, unknown>> };
    },
    'mcp.approve': async (p, peer) => {
      const q = p as { name: string; tools?: string[]; read_only?: string[] };
      return s.mcp.approve(q.name, { ...(q.tools !== undefined ? { tools: q.tools } : {}), readOnly: q.read_only ?? [] }, actor(peer));
    },
    'node.bootstrap': async (p, peer) => {
      const q = p as { ttl_seconds?: number; label?: string };
      const { token, record } = await s.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], singleUse: true, ttlSeconds: q.ttl_seconds ?? NODE_BOOTSTRAP_TTL_SECONDS, label: q.label ?? 'node bootstrap', createdBy: peer.token.id });
      await s.audit.append('token.created', actor(peer), { token_id: record.id, kind: record.kind, single_use: true, roles: record.roles, scopes: record.scopes, label: record.label, expires_at: record.expires_at });
      return { token, token_id: record.id, expires_at: new Date(record.expires_at!).toISOString() };
    },
    'presence.list': async () => ({ entries: s.presence.list().map(presenceView) }),
    'capability.ready': async (p, peer) => s.nodes.reportReady(peer, (p as { capabilities: Array<{ id: string; version: string; ready: boolean; reason?: string }> }).capabilities),
    'pairing.list': async (p) => ({ pairings: s.pairings.list(p as { state?: never; limit?: number }).map((x) => pairingView(x, s.nodes.connected(x.device_id))) }),
    'pairing.approve': async (p, peer) => {
      const q = p as { pairing_id: string; trust_level: 'local' | 'remote'; capability_allowlist: Array<{ id: string; version?: string }>; read_only?: string[]; node_name?: string; reason?: string };
      const { pairing_id, ...input } = q;
      const pairing = s.pairings.approve(pairing_id, input, actor(peer));
      // A waiting node gets its credential; the answer does not wait for that.
      void s.nodes.reconcile();
      return { pairing: pairingView(pairing, s.nodes.connected(pairing.device_id)) };
    },
    'pairing.deny': async (p, peer) => {
      const q = p as { pairing_id: string; reason?: string };
      const pairing = s.pairings.deny(q.pairing_id, q.reason !== undefined ? { reason: q.reason } : {}, actor(peer));
      await s.nodes.reconcile();
      return { pairing: pairingView(pairing, s.nodes.connected(pairing.device_id)) };
    },
    'pairing.revoke': async (p, peer) => {
      const q = p as { pairing_id: string; reason?: string };
      const pairing = s.pairings.revoke(q.pairing_id, q.reason !== undefined ? { reason: q.reason } : {}, actor(peer));
      if (pairing.token_id !== null) s.onTokenRevoked(pairing.token_id);
      await s.nodes.reconcile();
      return { pairing: pairingView(pairing, s.nodes.connected(pairing.device_id)) };
    },

    // Another tenant sees each plugin's public facts with its own grant (PluginRegistry.tenantInfo).
    'plugin.list': async (_p, peer) => ({ plugins: s.plugins.list(tenant(peer)) }),
    'plugin.get': async (p, peer) => s.plugins.get((p as { plugin_id: string }).plugin_id, tenant(peer)),
    'plugin.enable': async (p, peer) => ({ plugin: await s.plugins.enable((p as { plugin_id: string }).plugin_id, actor(peer)) }),
    'plugin.disable': async (p, peer) => ({ plugin: await s.plugins.disable((p as { plugin_id: string }).plugin_id, actor(peer)) }),
    'plugin.grant': async (p, peer) => {
      const q = p as { plugin_id: string; grant?: PluginGrant; all_requested?: boolean; accept_risks?: RiskFlag[] };
      const plugin = await s.plugins.grant(
        q.plugin_id,
        { ...(q.grant !== undefined ? { grant: q.grant } : {}), ...(q.all_requested !== undefined ? { allRequested: q.all_requested } : {}), ...(q.accept_risks !== undefined ? { acceptRisks: q.accept_risks } : {}) },
        actor(peer),
        tenant(peer),
      );
      return { plugin };
    },
    'plugin.revoke': async (p, peer) => ({ plugin: await s.plugins.revoke((p as { plugin_id: string }).plugin_id, actor(peer), tenant(peer)) }),

    'tool.list': async (_p, peer) => {
      const all = await s.host.list();
      if (tenant(peer) === DEFAULT_TENANT) return { tools: all };
      // Another tenant sees the tools it may call.
      const callable = all.filter((t) => {
        try {
          s.checkTenantTool(tenant(peer), t.tool_id);
          return true;
        } catch {
          return false;
        }
      });
      return { tools: callable };
    },
    'tool.invoke': async (p, peer) => {
      const q = p as { tool_id: string; args: Record<string, unknown>; idempotency_key?: string; wait_ms?: number };
      if (tenant(peer) !== DEFAULT_TENANT) s.checkTenantTool(tenant(peer), q.tool_id);
      s.host.checkCall(q.tool_id, q.args);
      const declared = s.host.describe(q.tool_id)?.entry.postcondition;
      const { run } = await s.engine.submit({
        kind: 'tool',
        steps: [{ tool_id: q.tool_id, args: q.args, ...(declared ? { postcondition: declared as Postcondition } : {}) }],
        ...(q.idempotency_key !== undefined ? { idempotency_key: q.idempotency_key } : {}),
        created_by: peer.token.id,
        actor: actor(peer),
        tenant_id: tenant(peer),
      }, { runNow: true });
      return invokeView(await s.engine.wait(run.id, q.wait_ms ?? DEFAULT_WAIT_MS));
    },
    'workflow.start': async (p, peer) => {
      if (Object.hasOwn(p, 'playbook')) {
        const r = p as { playbook: Record<string, unknown>; inputs?: Record<string, unknown>; idempotency_key?: string; wait_ms?: number };
        const plan = compilePlaybook(checkPlaybook(r.playbook), r.inputs ?? {});
        // Fail fast on a tool that does not exist (its calls are still decided when they run).
        for (const st of plan.steps) {
          if (st.tool_id !== null && s.host.describe(st.tool_id) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `step "${st.id}" calls ${st.tool_id}, which is not an enabled tool (tyrum tool list)`, { step_id: st.id, tool_id: st.tool_id });
        }
        const { workflow } = await s.workflows.create(plan, peer.token.id, actor(peer), r.idempotency_key);
        return { workflow: workflowView(await s.workflows.waitSettled(workflow.id, r.wait_ms ?? DEFAULT_WAIT_MS), peer) };
      }
      const q = p as { steps: Array<{ tool_id: string; args: Record<string, unknown> }>; idempotency_key?: string; wait_ms?: number };
      for (const step of q.steps) s.host.checkCall(step.tool_id, step.args);
      // A tool's declared postcondition applies in workflows too, unless the step brings its own.
      const steps = q.steps.map((step) => {
        const declared = s.host.describe(step.tool_id)?.entry.postcondition;
        return (step as { postcondition?: unknown }).postcondition === undefined && declared ? { ...step, postcondition: declared as Postcondition } : step;
      });
      const { run } = await s.engine.submit({ kind: 'workflow', steps, ...(q.idempotency_key !== undefined ? { idempotency_key: q.idempotency_key } : {}), created_by: peer.token.id, actor: actor(peer) }, { runNow: true });
      return isoTimes({ ...(await s.engine.wait(run.id, q.wait_ms ?? DEFAULT_WAIT_MS)) });
    },
    'workflow.get': async (p, peer) => ({ workflow: workflowView(s.workflows.get((p as { workflow_id: string }).workflow_id), peer) }),
    'workflow.list': async (p, peer) => {
      const q = p as { state?: WorkflowState; limit?: number; before?: string };
      const rows = s.store.workflows.list(q.limit ?? 50, q.state, q.before !== undefined ? Date.parse(q.before) : undefined);
      return { workflows: rows.map((w) => workflowView(w, peer)) };
    },
    'workflow.resume': async (p, peer) => {
      const q = p as { token: string; decision?: 'approve' | 'deny'; reason?: string; wait_ms?: number };
      const wf = await s.workflows.resume(q.token, q.decision ?? 'approve', actor(peer), q.reason);
      return { workflow: workflowView(await s.workflows.waitSettled(wf.id, q.wait_ms ?? DEFAULT_WAIT_MS), peer) };
    },
    'workflow.cancel': async (p, peer) => ({ workflow: workflowView(await s.workflows.cancel((p as { workflow_id: string }).workflow_id, actor(peer)), peer) }),
    'run.get': async (p, peer) => {
      const id = (p as { run_id: string }).run_id;
      ownRun(id, peer);
      return isoTimes({ ...s.engine.get(id) });
    },
    'run.list': async (p, peer) => {
      const q = p as { state?: never; limit?: number; after?: string };
      // A page cursor naming another tenant's run is refused as an unknown run would be.
      if (q.after !== undefined) ownRun(q.after, peer);
      return { runs: isoTimes(s.engine.list({ ...q, tenant: tenant(peer) })) };
    },
    'run.cancel': async (p, peer) => {
      const id = (p as { run_id: string }).run_id;
      ownRun(id, peer);
      return { run: isoTimes(await s.engine.cancel(id, actor(peer))) };
    },
    'run.resolve': async (p, peer) => {
      const q = p as { run_id: string; step_idx: number; action: 'retry' | 'skip' | 'fail' };
      ownRun(q.run_id, peer);
      return { run: isoTimes(await s.engine.resolveUnknown(q.run_id, q.step_idx, q.action, actor(peer))) };
    },

    'approval.list': async (p, peer) => {
      const q = p as { state?: never; run_id?: string; limit?: number };
      return { approvals: isoTimes(s.approvals.list({ ...q, tenant: tenant(peer) })) };
    },
    'approval.resolve': async (p, peer) => {
      const q = p as { approval_id: string; decision: 'approved' | 'denied'; reason?: string; mode?: 'once' | 'always'; override_ttl_seconds?: number };
      // Scoped: "always" by another tenant writes an override of that tenant's (the approval's), for its calls only.
      ownApproval(q.approval_id, peer);
      const r = await s.resolveApproval(
        q.approval_id,
        { decision: q.decision, ...(q.reason !== undefined ? { reason: q.reason } : {}), ...(q.mode !== undefined ? { mode: q.mode } : {}), ...(q.override_ttl_seconds !== undefined ? { overrideTtlMs: q.override_ttl_seconds * 1000 } : {}) },
        actor(peer),
      );
      s.engine.kick();
      return { approval: isoTimes(r.approval), override_id: r.override?.id ?? null };
    },

    'policy.get': async (_p, peer) => {
      if (tenant(peer) !== DEFAULT_TENANT) {
        // Another tenant's own bundle (null: none, it tightens nothing), history and overrides;
        // the host's bundle, which applies as well, is named by its snapshot id only.
        const own = s.policy.tenantActive(tenant(peer));
        return {
          snapshot_id: own?.id ?? null,
          bundle: (own?.bundle ?? null) as unknown as Record<string, unknown> | null,
          history: isoTimes(s.policy.history(20, tenant(peer))),
          overrides: isoTimes(s.policy.overrides(tenant(peer))) as unknown as Array<Record<string, unknown>>,
          host_snapshot_id: s.policy.active().id,
        };
      }
      const a = s.policy.active();
      return {
        snapshot_id: a.id,
        bundle: a.bundle as unknown as Record<string, unknown>,
        history: isoTimes(s.policy.history(20)),
        overrides: isoTimes(s.policy.overrides()) as unknown as Array<Record<string, unknown>>,
      };
    },
    'policy.set': async (p, peer) => {
      // Another tenant's call sets that tenant's own bundle, never the host's.
      const r = s.policy.set((p as { bundle: unknown }).bundle, `token:${peer.token.id}`, 'policy bundle', tenant(peer));
      await s.audit.append('policy.set', actor(peer), { snapshot_id: r.id, changed: r.changed });
      return { snapshot_id: r.id, changed: r.changed };
    },
    'policy.explain': async (p, peer) => {
      const q = p as { tool_id: string; args?: Record<string, unknown> };
      // Another tenant explains the tools it may call (its tool.list): the others, and what their
      // grants reach, are the host's (not_found or forbidden, as tool.invoke answers).
      if (tenant(peer) !== DEFAULT_TENANT) s.checkTenantTool(tenant(peer), q.tool_id);
      // On the rights of the caller's tenant's own grant, as its calls are decided (never the host's).
      const d = s.host.describe(q.tool_id, tenant(peer));
      const call = policyCall(q.tool_id, d?.entry, d ? { risks: d.risks, rights: d.rights } : null, q.args ? argsHash(q.args) : null);
      const e = s.policy.explain(call, undefined, tenant(peer));
      return {
        decision: e.decision,
        enforced: e.enforced,
        snapshot_id: e.snapshot_id,
        source: e.source,
        matched: e.matched as unknown as Array<Record<string, unknown>>,
        text: e.text,
        ...(e.tenant !== undefined ? { tenant: e.tenant as unknown as Record<string, unknown> } : {}),
      };
    },
    'policy.override.revoke': async (p, peer) => {
      const id = (p as { override_id: string }).override_id;
      // Another tenant's override answers not_found, as an unknown id.
      const r = s.policy.revokeOverride(id, tenant(peer));
      await s.audit.append('policy.override_revoked', actor(peer), { override_id: id, changed: r.changed });
      return { override: isoTimes(r.override) as unknown as Record<string, unknown>, changed: r.changed };
    },

    'event.list': async (p, peer) => {
      const q = p as { after?: number; limit?: number };
      const after = q.after ?? 0;
      const events = s.engine.events.after(after, q.limit ?? 100, tenant(peer)).map((e) => ({ cursor: e.seq, event_id: e.event_id, type: e.type, occurred_at: new Date(e.occurred_at).toISOString(), payload: e.payload }));
      return { events, next_after: events.length > 0 ? events[events.length - 1]!.cursor : after };
    },

    'conversation.create': async (p, peer) => {
      const c = await s.conversations.create((p as { title?: string }).title ?? null, peer.token.id, tenant(peer));
      return { conversation: conversationInfo(c) };
    },
    'conversation.list': async (p, peer) => {
      const q = p as { channel?: string; limit?: number; before?: string };
      const before = q.before === undefined ? undefined : Date.parse(q.before);
      return { conversations: s.conversations.list(q.limit ?? 50, q.channel, before, tenant(peer)).map(conversationInfo) };
    },
    'conversation.get': async (p, peer) => {
      const q = p as { conversation_id: string; limit?: number };
      const c = s.conversations.get(q.conversation_id, tenant(peer));
      const repo = s.store.conversations;
      return {
        conversation: conversationInfo(c),
        messages: repo.lastMessages(c.id, q.limit ?? 100).map(messageInfo),
        turns: repo.turns(c.id, 20).map(turnInfo),
        deliveries: repo.deliveries(c.id, 20).map(deliveryInfo),
      };
    },
    'conversation.send': async (p, peer) => {
      const q = p as { conversation_id: string; text: string; idempotency_key?: string };
      const r = await s.conversations.send(q.conversation_id, q.text, peer.token.id, q.idempotency_key, tenant(peer));
      return { message: messageInfo(r.message), turn_id: r.turn_id, existing: r.existing };
    },
    'channel.list': async () => ({ channels: s.channels.list().map((r) => channelInfo(r, s.channels.pluginEnabled(r))) }),
    'channel.senders': async (p) => {
      const now = s.now();
      return { senders: s.channels.senders((p as { channel: string }).channel).map((x) => senderInfo(x, now)) };
    },
    'channel.sender.decide': async (p, peer) => {
      const q = p as { channel: string; sender: string; action: 'allow' | 'deny' | 'remove' };
      const row = await s.channels.decideSender(q.channel, q.sender, q.action, actor(peer));
      return { sender: row === null ? null : senderInfo(row, s.now()) };
    },
    'artifact.list': async (p, peer) => {
      const q = p as { run_id: string; limit?: number };
      // Not found for an unknown run (or another tenant's), as run.get answers.
      ownRun(q.run_id, peer);
      s.engine.get(q.run_id);
      return { artifacts: s.artifacts.listForRun(q.run_id, q.limit ?? 1000).map((x) => ({ artifact: artifactView(x.artifact), attachment: isoTimes({ ...x.attachment }) })) };
    },
    'artifact.get': async (p, peer) => {
      const id = (p as { artifact_id: string }).artifact_id;
      // An artifact this token may not read answers exactly as an unknown one.
      if (!s.artifacts.readableBy(id, peer.token.scopes, tenant(peer))) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no artifact ${id}`, { artifact_id: id });
      const r = s.artifacts.get(id, tenant(peer));
      return { artifact: artifactView(r.artifact), attachments: r.attachments.map((a) => isoTimes({ ...a })) };
    },
    'secret.list': async (_p, peer) => ({
      secrets: s.secretHandles(tenant(peer)).map((h) => ({ name: h.name, version: h.version, destinations: h.destinations, created_at: new Date(h.created_at).toISOString(), rotated_at: new Date(h.rotated_at).toISOString() })),
    }),
  };
}

/** An MCP server as `McpServerInfo` on the wire (times as ISO-8601). */
function mcpServerView(v: McpServerView): Record<string, unknown> {
  return isoTimes({ ...v } as unknown as Record<string, unknown>);
}
