/**
 * The composition root: wires concrete pieces (store, key, audit, tokens, protocol handlers,
 * edge) into a running gateway. The CLI's `start` and the tests use this; nothing else
 * constructs these pieces together.
 */
import { ensureHome, type Config, type ConfigOverrides } from './config/index.js';
import { lockHome } from './config/lock.js';
import type { Store } from './store/index.js';
import type { GatewayKey } from './auth/gateway-key.js';
import { TokenService } from './auth/tokens.js';
import { AuditLog } from './audit/index.js';
import type { SecretStore } from './secrets/index.js';
import { PluginRegistry } from './registry/plugins.js';
import type { PluginHost } from './registry/host.js';
import type { ToolCatalog } from './registry/tools.js';
import { McpRegistry } from './mcp/registry.js';
import type { McpHost } from './mcp/host.js';
import { PolicyService, policyCall } from './policy/index.js';
import { ApprovalService, type ResolveApproval } from './approvals/index.js';
import type { ExecutionEngine, OutboxEvent } from './execution/index.js';
import type { ConversationService, TurnRunner } from './conversations/index.js';
import type { ChannelService } from './channels/index.js';
import type { Scheduler } from './scheduler/index.js';
import type { WorkflowRunner } from './playbooks/runner.js';
import { loadSecretKey } from './secrets/key.js';
import type { ArtifactService } from './artifacts/index.js';
import type { Sweeper } from './retention/index.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { GatewayServer } from './gateway/server.js';
import { packageInfo } from './util/package-info.js';
import { DEFAULT_TENANT, SCOPES } from '../schemas/index.js';
import type { OperationType } from '../schemas/index.js';
import type { Peer } from './protocol/session.js';
import { TyrumError, isTyrumError } from './errors/index.js';
import { openHomeCore, type HomeCore, type OpenHomeOptions } from './home.js';
import { gatewayDoctor } from './doctor/checks.js';
import type { Telemetry } from './telemetry/index.js';

type Handler = (payload: Record<string, unknown>, peer: Peer) => Promise<Record<string, unknown>>;

/** A failed read of other writers' outbox events is retried after this long, doubling per failure… */
export const OUTBOX_READ_RETRY_MIN_MS = 100;
/** …up to this long between tries, until a read succeeds (or the gateway closes). */
export const OUTBOX_READ_RETRY_MAX_MS = 5_000;

export interface StartOptions {
  home: string;
  overrides?: ConfigOverrides;
  /** Pino level, or false for silence (tests). Default 'info'. */
  logLevel?: string | false;
  /** Where log lines (pino JSON, one per line) go; default stdout. */
  logStream?: { write(line: string): void };
  /**
   * Start even though the audit log no longer extends its signed checkpoint (`tyrum start
   * --accept-tampered-audit`): the damage is recorded, signed, in every later checkpoint and
   * reported by `tyrum doctor` and `tyrum audit verify`. Without it such a start is refused.
   */
  acceptTamperedAudit?: boolean;
  /** Where the built operator UI is (default `dist/ui` in the package); a directory without index.html serves none. */
  uiDir?: string;
}

export interface RunningGateway {
  readonly config: Config;
  readonly port: number;
  /** ws://host:port/ws */
  readonly url: string;
  readonly home: string;
  /** The admin token created on first start (shown once), else null. */
  readonly bootstrapToken: string | null;
  readonly store: Store;
  readonly server: GatewayServer;
  readonly audit: AuditLog;
  readonly tokens: TokenService;
  readonly key: GatewayKey;
  readonly plugins: PluginRegistry;
  readonly host: PluginHost;
  /** Every tool the gateway serves: plugin tools and approved MCP tools. */
  readonly tools: ToolCatalog;
  readonly mcp: McpRegistry;
  readonly mcpHost: McpHost;
  readonly secrets: SecretStore;
  readonly engine: ExecutionEngine;
  readonly policy: PolicyService;
  readonly approvals: ApprovalService;
  readonly conversations: ConversationService;
  readonly turns: TurnRunner;
  readonly channels: ChannelService;
  readonly scheduler: Scheduler;
  readonly workflows: WorkflowRunner;
  /** Evidence blobs (core/artifacts): what playbook steps attach and the retention sweeper removes. */
  readonly artifacts: ArtifactService;
  /** Retention (docs/retention.md): sweeps every retention.sweep_interval_ms. */
  readonly sweeper: Sweeper;
  /** Metrics (served at GET /metrics), the tracer when configured, the engine's call observer (docs/observability.md). */
  readonly telemetry: Telemetry;
  close(): Promise<void>;
}

/**
 * The services of a gateway home, without the network edge (CLI commands use this): the core
 * (core/home.ts) plus plugins, policy and MCP servers.
 */
export interface HomeServices extends HomeCore {
  plugins: PluginRegistry;
  policy: PolicyService;
  mcp: McpRegistry;
  /** Resolves an approval; for an approved `always` one, also adds the narrow policy override. */
  resolveApproval: ResolveApproval;
}

export type { ApprovalDecision } from './approvals/decision.js';

export type { OpenHomeOptions, HomeCore } from './home.js';

/**
 * Opens (creating on first use) a gateway home: its core (directory, config, database, key, audit
 * log, tokens, approvals; core/home.ts), then plugins, policy and MCP servers.
 */
export function openHome(home: string, overrides: ConfigOverrides = {}, opts: OpenHomeOptions = {}): HomeServices {
  const core = openHomeCore(home, overrides, opts);
  const { store, audit, secrets, approvals } = core;
  try {
    const plugins = new PluginRegistry({
      store,
      home,
      audit,
      secretExists: (name) => secrets.has(name),
      ...(opts.emit ? { emit: opts.emit } : {}),
      ...(opts.onPluginChange ? { onChange: opts.onPluginChange } : {}),
    });
    const policy = new PolicyService({ store });
    const mcp = new McpRegistry({ store, audit, secrets, home, ...(opts.onMcpChange ? { onChange: opts.onMcpChange } : {}) });
    const resolveApproval: ResolveApproval = async (id, input, actor) => {
      if (input.overrideTtlMs !== undefined && input.mode !== 'always') throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', 'an override expiry applies only to an "always" approval');
      const r = approvals.resolve(id, { decision: input.decision, ...(input.reason !== undefined ? { reason: input.reason } : {}), ...(input.mode !== undefined ? { mode: input.mode } : {}) }, actor);
      if (!r.create_override) return { approval: r.approval, override: null };
      // "always": a narrow override for this exact tool; it never beats a deny and is revocable.
      // The override belongs to the approval's tenant (its run's): another tenant's applies to
      // that tenant's calls only (docs/tenancy.md); the host's, to every call.
      const tenant = store.approvals.get(r.approval.id)?.tenant_id ?? DEFAULT_TENANT;
      const override = policy.addOverride({
        tenant,
        tool_id: r.approval.tool_id,
        created_by: actor.kind === 'token' ? `token:${String(actor.id)}` : `${actor.kind}:${String(actor.user ?? '')}`,
        created_from_approval: r.approval.id,
        ...(input.overrideTtlMs !== undefined ? { expires_at: Date.now() + input.overrideTtlMs } : {}),
      });
      await audit.append('policy.override_added', actor, { override_id: override.id, tool_id: override.tool_id, approval_id: r.approval.id, expires_at: override.expires_at, ...(tenant !== DEFAULT_TENANT ? { tenant } : {}) });
      return { approval: r.approval, override };
    };
    return { ...core, plugins, policy, mcp, resolveApproval };
  } catch (e) {
    store.close();
    throw e;
  }
}

/**
 * What only a running gateway uses: the network edge, protocol handlers, execution engine, sandbox
 * host and MCP machinery. Loaded when a gateway starts, not when this module is imported, so CLI
 * commands that open a home with openHome (plugin, mcp, policy) do not load them.
 */
async function gatewayParts() {
  const [handlers, host, tools, mcpHost, egress, execution, server, endpoint, inflight, nodeRegistry, nodeHost, nodePresence, nodeCluster, conversations, channels, scheduler, playbooks, artifacts, retention, telemetry] = await Promise.all([
    import('./protocol/handlers.js'),
    import('./registry/host.js'),
    import('./registry/tools.js'),
    import('./mcp/host.js'),
    import('./egress/index.js'),
    import('./execution/index.js'),
    import('./gateway/server.js'),
    import('./mcp/endpoint.js'),
    import('./protocol/inflight.js'),
    import('./nodes/registry.js'),
    import('./nodes/host.js'),
    import('./nodes/presence.js'),
    import('./nodes/cluster.js'),
    import('./conversations/index.js'),
    import('./channels/index.js'),
    import('./scheduler/index.js'),
    import('./playbooks/runner.js'),
    import('./artifacts/index.js'),
    import('./retention/index.js'),
    import('./telemetry/index.js'),
  ]);
  (await import('../manifests/json-schema.js')).prepareSchemaValidators();
  return {
    createHandlers: handlers.createHandlers,
    PluginHost: host.PluginHost,
    ToolCatalog: tools.ToolCatalog,
    McpHost: mcpHost.McpHost,
    createEgressHandler: egress.createEgressHandler,
    egressAuditEntry: egress.egressAuditEntry,
    ExecutionEngine: execution.ExecutionEngine,
    GatewayServer: server.GatewayServer,
    UiAssets: server.UiAssets,
    createMcpEndpoint: endpoint.createMcpEndpoint,
    InflightLimiter: inflight.InflightLimiter,
    NodeRegistry: nodeRegistry.NodeRegistry,
    NodeHost: nodeHost.NodeHost,
    PresenceRegistry: nodePresence.PresenceRegistry,
    presenceView: nodePresence.presenceView,
    NodeCluster: nodeCluster.NodeCluster,
    remoteEntry: nodeCluster.remoteEntry,
    conversations,
    channels,
    Scheduler: scheduler.Scheduler,
    WorkflowRunner: playbooks.WorkflowRunner,
    openArtifactService: artifacts.openArtifactService,
    artifactSink: artifacts.artifactSink,
    contentDisposition: artifacts.contentDisposition,
    createSweeper: retention.createSweeper,
    openTelemetry: telemetry.openTelemetry,
  };
}

/**
 * Starts a gateway on `home` and resolves once it is listening. One gateway per home (the lock in
 * core/config/lock.ts); a port in use is TYRUM_ERR_PORT_IN_USE, and whatever had started is
 * stopped again, so a failed start leaves no worker or server process behind.
 */
export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const { createHandlers, PluginHost, ToolCatalog, McpHost, createEgressHandler, egressAuditEntry, ExecutionEngine, GatewayServer, UiAssets, createMcpEndpoint, InflightLimiter, NodeRegistry, NodeHost, PresenceRegistry, presenceView, NodeCluster, remoteEntry, conversations: conv, channels: chan, Scheduler, WorkflowRunner, openArtifactService, artifactSink, contentDisposition, createSweeper, openTelemetry } = await gatewayParts();
  ensureHome(options.home);
  const lock = lockHome(options.home);
  let server: GatewayServer | null = null;
  // PostgreSQL: the outbox notifications (started with the engine, closed first at shutdown).
  let outboxWake: { close(): Promise<void> } | null = null;
  // Stops reading other writers' outbox events (and cancels a pending retry of a failed read).
  let stopReads: (() => void) | null = null;
  // PostgreSQL: this replica in the node connection directory (started with the engine).
  let cluster: { close(): Promise<void> } | null = null;
  let host: PluginHost | null = null;
  let mcpHost: McpHost | null = null;
  // Plugins changed: `pluginId` in this process, or, without it, anything in another process (the
  // CLI). Only the changed plugins are touched: their catalog entries and sandboxes, and the MCP
  // servers they declare. MCP servers and approvals are reconciled at start, after a change from
  // another process (it may have been one of theirs), and when a changed plugin declares servers.
  const reconcile = (pluginId?: string): Promise<unknown> | undefined =>
    host?.reconcile(pluginId).then((changes) => {
      if (!mcpHost) return;
      const declaring = changes.filter((c) => c.mcpServers.length > 0);
      const problems = svc.mcp.syncPluginServers(declaring.map((c) => ({ id: c.id, servers: c.mcpServers })));
      for (const p of problems) server?.app.log.warn(p, 'plugin MCP server not registered');
      if (pluginId !== undefined && !changes.some((c) => c.mcpServers.length > 0 || c.hadMcpServers)) return;
      return mcpHost.reconcile();
    });
  let svc: HomeServices;
  try {
    svc = openHome(options.home, options.overrides, {
      emit: (type, payload) => server?.publish(type, payload),
      onPluginChange: (pluginId) => reconcile(pluginId),
      onMcpChange: () => void mcpHost?.reconcile(),
      tamperedAudit: options.acceptTamperedAudit === true ? 'accept' : 'refuse',
      checkpointer: true,
      onAuditCheckpointError: (e) => server?.app.log.error({ code: e.code, details: e.details }, e.message),
    });
  } catch (e) {
    lock.release();
    throw e;
  }
  const { store, key, audit, tokens, config, secrets, redactor, plugins, policy, approvals, mcp } = svc;
  let bootstrapToken: string | null = null;
  let telemetry: Telemetry | null = null;
  try {
    // Metrics always; traces when telemetry.otlp_endpoint is set (docs/observability.md).
    telemetry = await openTelemetry(config.telemetry, packageInfo().version);
    const metrics = telemetry.metrics;
    store.observe(metrics.storeObserver);
    const egress = createEgressHandler({
      rightsFor: (pluginKey) => host?.rightsFor(pluginKey) ?? null,
      secrets,
      redactor,
      onEgress: (r) => {
        // A hop made is egress.request; a refusal is egress.denied (plugin, method, origin, reason).
        const e = egressAuditEntry(r);
        // A tenant's sandbox's hops are the tenant's entries (the actor names it).
        void audit.append(e.type, { kind: 'plugin', key: r.pluginKey, ...(r.plugin_id !== undefined ? { plugin_id: r.plugin_id } : {}), ...(r.tenant !== undefined ? { tenant: r.tenant } : {}) }, e.data).catch(() => undefined);
      },
    });
    host = new PluginHost({
      store,
      home: options.home,
      registry: plugins,
      audit,
      egress,
      redact: redactor.redactDeep,
      emit: (type, payload, tenant) => server?.publish(type, payload, tenant),
      log: (level, message, data) => server?.app.log[level](data, message),
      sandboxIdleMs: config.limits.sandboxIdleMs,
      maxLiveSandboxes: config.limits.maxLiveSandboxes,
    });
    const pluginHost = host;
    mcpHost = new McpHost({
      registry: mcp,
      audit,
      redact: redactor.redactDeep,
      activePlugins: () => plugins.enabledIds(),
      pluginSecrets: (id) => new Set(pluginHost.enabledPlugin(id)?.effective.secrets.map((s) => s.name) ?? []),
      wasmConnection: (pluginId, name, limits) => pluginHost.mcpConnection(pluginId, name, limits),
      emit: (type, payload, tenant) => server?.publish(type, payload, tenant),
      log: (level, message, data) => server?.app.log[level](data, message),
    });
    // Node connections: pairing requests on connect, credentials delivered once on approval.
    const nodes = new NodeRegistry({
      store,
      pairings: svc.pairings,
      tokens,
      events: approvals.events,
      audit,
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    // Capabilities of approved nodes are tools too (node.<capability>[@<node>]).
    // PostgreSQL replicas: this replica's row and node connections in the shared directory, and
    // the tasks for nodes connected to another replica (core/nodes/cluster.ts). SQLite: one gateway.
    const nodeChannel = store.nodeChannel;
    const nodeCluster =
      nodeChannel !== null
        ? new NodeCluster({
            store,
            channel: nodeChannel,
            connections: nodes,
            onRemoteChange: (change, row) => {
              const entry = remoteEntry(store.pairings.get(row.pairing_id), row, change === 'connected', Date.now());
              server?.publish('presence.upserted', { entry: presenceView(entry) });
              if (change === 'disconnected') server?.publish('presence.pruned', { device_id: row.device_id, role: 'node', reason: 'disconnected' });
            },
            log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
          })
        : null;
    cluster = nodeCluster;
    const tools = new ToolCatalog(host, mcpHost, new NodeHost({ store, connections: nodes, ...(nodeCluster ? { remote: nodeCluster } : {}) }));
    // A run's creator: a token id, channel:<plugin>/<instance> for a channel conversation's turn, or
    // schedule:<id> for a schedule's tool call (and the tool calls of its agent turns), workflow:<id>
    // for a playbook step's tool call.
    /**
     * What a tenant other than the default may call (docs/tenancy.md): a tool of a plugin the host
     * has enabled and the tenant has granted (its own grant; its calls run under it). Nodes and MCP
     * servers are the host's: forbidden. A plugin the tenant has not granted is refused as an
     * ungranted plugin's tool is for the host (not_found).
     */
    const checkTenantTool = (tenant: string, toolId: string): void => {
      if (toolId.startsWith('node.') || toolId.startsWith('mcp.')) {
        if (tools.describe(toolId) === undefined) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`, { tool_id: toolId });
        throw new TyrumError('TYRUM_ERR_FORBIDDEN', `${toolId} is a node or MCP tool of the host; tenant "${tenant}" may call plugin tools only`, { tool_id: toolId });
      }
      pluginHost.checkTenantCall(tenant, toolId);
    };
    /**
     * The policy decision for a call of `toolId` by `tenant`: on the rights of the tenant's own
     * grant (the host's for the host), by the stricter of the host's policy and the tenant's own
     * (docs/tenancy.md). Every call, a turn's offer and POST /mcp's listing decide through it.
     */
    const decideFor = (toolId: string, tenant: string, argsHash: string | null = null) => {
      const d = tools.describe(toolId, tenant);
      return policy.decide(policyCall(toolId, d?.entry, d ? { risks: d.risks, rights: d.rights } : null, argsHash), undefined, tenant);
    };
    /** checkTenantTool as a predicate: whether the tenant may call the tool now. */
    const tenantMayCall = (tenant: string, toolId: string): boolean => {
      try {
        checkTenantTool(tenant, toolId);
        return true;
      } catch {
        return false;
      }
    };
    const actorOf = (createdBy: string) =>
      createdBy.startsWith('channel:') ? { kind: 'channel', channel: createdBy.slice(8) } : createdBy.startsWith('schedule:') ? { kind: 'schedule', schedule_id: createdBy.slice(9) } : createdBy.startsWith('workflow:') ? { kind: 'workflow', workflow_id: createdBy.slice(9) } : { kind: 'token', id: createdBy };
    // Evidence blobs under <home>/artifacts/, attached to the runs whose calls produced them.
    const artifacts = openArtifactService({ store, events: approvals.events, audit, home: options.home, limits: config.limits });
    const engine = new ExecutionEngine({
      store,
      audit,
      artifacts: artifactSink(artifacts),
      owner: `gw-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`,
      approvals,
      resolveTool: (toolId) => {
        // A tool that cannot run says why (a quarantined MCP tool is not merely not found).
        const d = tools.lookup(toolId);
        if (isTyrumError(d)) return d;
        // read_only tools have no external effect to repeat, so a cut-off call may simply run again.
        return { effect: d.entry.effect, definition_hash: d.entry.definition_hash, plugin_digest: d.entry.plugin_digest, idempotent: d.entry.effect === 'read_only' || d.idempotent === true };
      },
      decide: (step) => {
        const p = decideFor(step.tool_id, step.tenant_id, step.args_hash);
        // The engine applies `decision` when `enforced`; observe mode records it but applies allow.
        const observed = p.enforced !== p.decision && p.enforced === 'allow';
        return { decision: observed ? p.decision : p.enforced, enforced: !observed, snapshot_id: p.snapshot_id, mode: p.mode, source: p.source, matched: p.matched, override_id: p.override_id, reasons: p.reasons, ...(p.tenant !== undefined ? { tenant: p.tenant } : {}) };
      },
      execute: (step, ctx) => {
        // Checked again when the call runs: a grant may have changed since the run was accepted.
        // (The run's tenant comes with the call: a run taken at submission is not in the store yet.)
        const tenant = step.tenant_id;
        if (tenant !== DEFAULT_TENANT) checkTenantTool(tenant, step.tool_id);
        // A tenant's call is audited as the tenant's (tool.invoked names it in the actor).
        const actor = tenant === DEFAULT_TENANT ? actorOf(step.created_by) : { ...actorOf(step.created_by), tenant };
        return tools.invoke(step.tool_id, step.args, actor, ctx.signal, tenant);
      },
      redact: redactor.redactDeep,
      log: (level, message, data) => server?.app.log[level](data ?? {}, message),
      calls: telemetry.calls,
    });
    // Durable events are pushed in outbox order, whichever process committed them (an approval
    // resolved from the CLI is written by the CLI process; on PostgreSQL, any replica). Events
    // this process committed are pushed as delivered, with no re-read; a gap in the sequence
    // (another process's commit) is filled from the outbox, and so is everything others
    // committed once we hear of it (`catchUp`: the data_version poll, and on PostgreSQL the
    // outbox notification). Seqs commit in order (on PostgreSQL under the log lock), so reading
    // seq > pushedSeq never passes one that commits later.
    let pushedSeq = engine.events.head();
    let delivered: OutboxEvent[] = [];
    const push = (e: OutboxEvent) => {
      server?.pushEvent(e.event_id, e.type, new Date(e.occurred_at).toISOString(), e.payload, e.tenant_id);
      pushedSeq = e.seq;
    };
    const pump = () => {
      const ours = delivered.sort((a, b) => a.seq - b.seq);
      delivered = [];
      for (const e of ours) {
        if (e.seq <= pushedSeq) continue;
        while (e.seq > pushedSeq + 1) {
          const batch = engine.events.after(pushedSeq, 500).filter((x) => x.seq < e.seq);
          if (batch.length === 0) break;
          batch.forEach(push);
        }
        push(e);
      }
    };
    // Reads wait until every group other connections can read is durable (Store.settled), so
    // no client is pushed an event of ours that a power cut could still take back.
    const catchUp = () => {
      if (readStopped) return;
      const settled = store.settled();
      if (settled) void settled.then(readOthers, () => scheduleReadRetry(new Error('the store did not settle')));
      else readOthers();
    };
    // A failed read (the store reconnecting, say) is retried with backoff until one succeeds: the
    // notification or data_version change that woke us was used up, so the next one may be far
    // off. One retry pending at a time; a read that succeeds, whatever woke it, ends the backoff;
    // close() cancels it.
    let readRetry: NodeJS.Timeout | null = null;
    let readRetryMs = 0;
    let readStopped = false;
    const scheduleReadRetry = (e: unknown) => {
      if (readStopped || readRetry !== null) return;
      readRetryMs = readRetryMs === 0 ? OUTBOX_READ_RETRY_MIN_MS : Math.min(readRetryMs * 2, OUTBOX_READ_RETRY_MAX_MS);
      server?.app.log.warn({ err: e instanceof Error ? e.message : String(e), retry_ms: readRetryMs }, 'reading the outbox for other writers\' events failed; retrying');
      readRetry = setTimeout(() => {
        readRetry = null;
        catchUp();
      }, readRetryMs);
      readRetry.unref();
    };
    const readOthers = () => {
      if (readStopped) return;
      try {
        pump();
        for (;;) {
          const batch = engine.events.after(pushedSeq, 500);
          batch.forEach(push);
          if (batch.length < 500) break;
        }
      } catch (e) {
        scheduleReadRetry(e);
        return;
      }
      readRetryMs = 0;
      if (readRetry !== null) {
        clearTimeout(readRetry);
        readRetry = null;
      }
    };
    stopReads = () => {
      readStopped = true;
      if (readRetry !== null) clearTimeout(readRetry);
      readRetry = null;
    };
    // One pending pump however many events a commit delivered (a call emits ~5).
    engine.onEvent((e) => {
      delivered.push(e);
      if (delivered.length === 1) queueMicrotask(pump);
    });
    // Conversations, agent turns and channels.
    const channelOf = (pluginId: string, channelId: string | null) => {
      let m;
      try {
        m = plugins.get(pluginId).manifest;
      } catch {
        return null; // removed since the channel was added
      }
      const list = m?.contributes.channels ?? [];
      return (channelId === null ? (list.length === 1 ? list[0] : undefined) : list.find((c) => c.id === channelId)) ?? null;
    };
    const secretAccess = { has: (n: string) => secrets.has(n), destinations: (n: string) => secrets.destinations(n), reveal: (n: string) => secrets.reveal(n) };
    const deliverer = new chan.Deliverer({
      store,
      events: engine.events,
      audit,
      contribution: channelOf,
      enabled: (id) => pluginHost.enabledPlugin(id) !== undefined,
      callExport: (id, exp, input) => pluginHost.callChannel(id, exp, input),
      reveal: (n) => secrets.reveal(n),
      destinations: (n) => secrets.destinations(n),
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    const conversations = new conv.ConversationService({ store, events: engine.events, maxPendingMessages: config.limits.maxPendingMessages });
    const backends = new conv.BackendSource(store, secretAccess);
    const turns = new conv.TurnRunner({
      store,
      events: engine.events,
      owner: engine.owner,
      backend: () => backends.current(),
      offeredTools: async (tenant) => {
        const globs = backends.current().settings.tools;
        const out = [];
        for (const t of await tools.list()) {
          if (!globs.some((g) => conv.globMatch(g, t.tool_id))) continue;
          // A tenant's turn is offered only what the tenant may call (the check tool.list and every
          // call of the tenant make): the host's other tools are not shown to its model.
          if (tenant !== DEFAULT_TENANT && !tenantMayCall(tenant, t.tool_id)) continue;
          // Tools the policy denies are not offered to the model (each call is still decided).
          if (decideFor(t.tool_id, tenant).enforced === 'deny') continue;
          out.push({ tool_id: t.tool_id, description: t.description, input_schema: t.input_schema });
        }
        return out;
      },
      engine,
      publish: (type, payload) => server?.publish(type, payload),
      onReply: (c, m) => deliverer.queue(c, m),
      maxConcurrent: config.limits.maxConcurrentTurns,
      onRunChange: (listener) =>
        engine.onEvent((e) => {
          if (e.type === 'run.updated' && typeof e.payload.run_id === 'string') listener(e.payload.run_id);
        }),
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    conversations.onQueued = () => turns.kick();
    const channels = new chan.ChannelService({
      store,
      events: engine.events,
      audit,
      conversations,
      contribution: channelOf,
      enabled: (id) => pluginHost.enabledPlugin(id) !== undefined,
      callExport: (id, exp, input) => pluginHost.callChannel(id, exp, input),
      reveal: (n) => secrets.reveal(n),
      secretExists: (n) => secrets.has(n),
      queueDelivery: (c, m) => deliverer.queue(c, m),
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    // Playbook runs: each step an engine run, an agent turn or an approval gate with a resume token.
    const workflows = new WorkflowRunner({
      store,
      events: engine.events,
      audit,
      secret: loadSecretKey(options.home),
      engine,
      conversations,
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    // Schedules: each due tick claimed in one transaction with the run or message it starts.
    const scheduler = new Scheduler({
      store,
      events: engine.events,
      audit,
      owner: engine.owner,
      engine,
      conversations,
      workflows,
      log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
    });
    // Retention: expired runs, events, fire records (and conversations, when configured) in bounded batches.
    const sweeper = createSweeper({ store, audit, retention: config.retention, deleteArtifactBlob: (id) => artifacts.deleteBlob(id), log: (level, msg, data) => server?.app.log[level](data ?? {}, msg) });
    // Who is connected now (clients and nodes), announced live to operators.
    // A tenant client's presence goes to its tenant's clients only; nodes are the host's.
    const presence = new PresenceRegistry({ emit: (type, payload, tenant) => server?.publish(type, payload, tenant) });
    // presence.list and a pairing's `connected`: on PostgreSQL, the nodes of every live replica.
    const clusterPresence = nodeCluster ? { list: () => nodeCluster.presence(presence.list()) } : presence;
    const clusterNodes = nodeCluster
      ? {
          connected: (deviceId: string) => nodes.connected(deviceId) || nodeCluster.connectedElsewhere(deviceId),
          reconcile: () => nodes.reconcile(),
          reportReady: (...a: Parameters<typeof nodes.reportReady>) => nodes.reportReady(...a),
          evidence: (...a: Parameters<typeof nodes.evidence>) => nodes.evidence(...a),
        }
      : nodes;
    // doctor.run: quick_check and the audit walk on a worker thread (core/doctor/offload.ts), stopped on close.
    const doctor = gatewayDoctor({
      home: svc.paths.home,
      paths: svc.paths,
      store,
      storeSettings: config.store,
      key,
      plugins: () => plugins.list(),
      // Flush first, as audit.verify does, so the chain checked includes what is queued.
      before: () =>
        svc.audit.flush().catch((e: unknown) => {
          if (!isTyrumError(e, 'TYRUM_ERR_AUDIT_TAMPERED')) throw e;
        }),
    });
    const handlers = createHandlers({
      store,
      tokens,
      audit,
      verifier: key,
      checkpointPath: svc.paths.auditCheckpoint,
      onTokenRevoked: (id) => server?.closeToken(id),
      plugins,
      host: tools,
      engine,
      approvals,
      resolveApproval: svc.resolveApproval,
      policy,
      secretHandles: (tenant) => secrets.list(tenant),
      checkTenantTool,
      pairings: svc.pairings,
      nodes: clusterNodes,
      presence: clusterPresence,
      conversations,
      channels,
      workflows,
      artifacts,
      mcp: svc.mcp,
      doctor: doctor.run,
      now: Date.now,
    });
    // One in-flight budget per token, shared by its WebSocket connections and /mcp.
    const inflight = new InflightLimiter(config.limits.maxInflightRequests);
    // One dispatch for WebSocket requests and /mcp. A request first waits until what another
    // process (the CLI) committed is picked up, so an enable followed at once by a call finds the
    // tool; then until every group other connections can already read is durable (Store.settled),
    // and runs at once, so no answer shows a row a power cut could still take back.
    const whenSettled = (h: Handler, payload: Record<string, unknown>, peer: Peer) => {
      const settled = store.settled();
      return settled ? settled.then(() => h(payload, peer)) : h(payload, peer);
    };
    const dispatch = (type: OperationType, payload: Record<string, unknown>, peer: Peer) => {
      const h = (handlers as Partial<Record<OperationType, Handler>>)[type];
      if (!h) throw new TyrumError('TYRUM_ERR_UNSUPPORTED_REQUEST', `no handler for ${type}`);
      const external = server?.syncExternal();
      return external ? external.then(() => whenSettled(h, payload, peer)) : whenSettled(h, payload, peer);
    };
    server = new GatewayServer({
      config,
      inflight,
      store,
      tokens,
      audit,
      version: packageInfo().version,
      keyId: key.keyId,
      logLevel: options.logLevel ?? 'info',
      ...(options.logStream ? { logStream: options.logStream } : {}),
      ui: UiAssets.load(options.uiDir ?? join(packageInfo().root, 'dist', 'ui')),
      // Another process (the CLI) changed the database: pick up plugin and grant changes, push
      // the events it wrote, and let the engine claim runs it requeued (an approval resolved).
      onExternalChange: () => {
        const picked = reconcile();
        catchUp();
        engine.kick();
        // A pairing approved, denied or revoked from the CLI.
        void nodes.reconcile();
        // A channel added or a sender approved from the CLI; a backend set.
        turns.kick();
        deliverer.kick();
        // A schedule added, resumed or removed from the CLI.
        scheduler.kick();
        return picked;
      },
      onPeerReady: (session) => {
        if (session.peer) presence.connected(session.peer);
        nodes.onReady(session);
        const held = nodeCluster ? nodes.heldPairing(session) : undefined;
        if (held !== undefined) nodeCluster!.connected(session, held);
      },
      onPeerClosed: (session, peer) => {
        presence.disconnected(peer);
        nodes.onClosed(session);
        nodeCluster?.disconnected(session.connectionId);
      },
      onPeerSeen: (peer) => presence.seen(peer),
      redact: redactor.redactDeep,
      tenantOf: (payload) => store.committed.outbox.tenantOf(payload),
      handle: dispatch,
      // POST /channels/<plugin>/<instance>/webhook: verified by the host, parsed by the plugin.
      channelWebhook: async (plugin, name, headers, body) => {
        await server?.syncExternal();
        return channels.webhook(plugin, name, headers, body);
      },
      // GET /artifacts/<id>: evidence blobs, streamed to a token that may read them.
      artifacts: {
        readableBy: (id, scopes) => artifacts.readableBy(id, scopes),
        open: (id) => artifacts.open(id),
        contentDisposition,
      },
      // GET /metrics: this gateway's registry, for a token with operator.metrics (or operator.read, admin).
      metrics,
      // POST /mcp: MCP clients use the same dispatch as `handle`, so their calls travel the
      // WebSocket pipeline (contract check, policy, approvals, durable run, audit).
      mcp: createMcpEndpoint({
        handle: dispatch,
        version: packageInfo().version,
        onRunChange: (listener) =>
          engine.onEvent((e) => {
            if (typeof e.payload.run_id === 'string') listener(e.payload.run_id);
          }),
        enforcedPolicy: (toolId, tenant) => decideFor(toolId, tenant).enforced,
        tokenLive: (id) => store.tokens.invalidAmong([id], Date.now()).length === 0,
        audit: (type, actor, data) => void audit.append(type, actor, data).catch(() => undefined),
        emit: (type, payload, tenant) => server?.publish(type, payload, tenant),
        log: (level, msg, data) => server?.app.log[level](data ?? {}, msg),
        inflight,
        socketIdleTimeoutMs: config.limits.httpRequestTimeoutMs,
      }),
    });
    const tampered = audit.tampered();
    if (tampered.length > 0) {
      const last = tampered[tampered.length - 1]!;
      server.app.log.warn(
        { audit_tampered: tampered },
        `the audit log was found tampered with ${tampered.length === 1 ? 'once' : `${tampered.length} times`} and accepted (last on ${last.accepted_at}: ${last.reason}); tyrum audit verify reports it`,
      );
    }
    const edge = server;
    const pool = host.pool;
    metrics.setSources({
      store: () => store.commitStats(),
      storeRoundTrips: () => store.roundTrips(),
      commitQueue: () => store.pendingUnits(),
      sandboxQueue: () => pool.stats().workers.reduce((n, w) => n + w.queued, 0),
      queuedRuns: () => store.committed.execution.countQueued(),
      activeRuns: () => engine.activeRuns,
      pendingApprovals: () => store.committed.approvals.countPending(),
      connections: () => edge.connectionsByRole(),
    });
    const port = await listen(server, config, svc.paths.config);
    // Minted only once the gateway listens, so a start that fails (a port in use) never leaves the
    // home's only admin token unprinted.
    if (!tokens.any()) {
      const created = await tokens.create({ scopes: [...SCOPES], roles: ['client'], label: 'bootstrap admin', createdBy: 'bootstrap' });
      bootstrapToken = created.token;
      await audit.append('token.created', { kind: 'bootstrap' }, { token_id: created.record.id, scopes: created.record.scopes, roles: created.record.roles, label: created.record.label, expires_at: null });
    }
    void reconcile();
    await audit.append('gateway.started', { kind: 'gateway', key_id: key.keyId }, { host: config.host, port, version: packageInfo().version });
    // Last, with nothing after it that can fail: the catch below cannot stop an engine (its timers
    // would then run over the closed store); running.close() does.
    engine.start();
    nodeCluster?.start();
    // PostgreSQL: another replica's (or the CLI's) outbox commit wakes this one at once, instead
    // of at the next data_version poll (REVOCATION_POLL_MS), which stays as the fallback for a
    // lost notification. One look per turn however many notifications arrived.
    let wakeQueued = false;
    outboxWake = store.listenOutbox((e) => {
      if (e === 'lost' || wakeQueued) return;
      wakeQueued = true;
      setImmediate(() => {
        wakeQueued = false;
        try {
          void server?.syncExternal();
        } catch (err) {
          // The store unavailable (a restart, a stall): the data_version poll looks again later.
          server?.app.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'looking for other writers\' changes after a notification failed');
        }
      });
    });
    // Agent turns and channel deliveries run on every replica: a turn is held under a lease and a
    // delivery under a claim (owner, expiry, fencing token), so no two replicas work on one, and
    // a dead or frozen replica's are taken over once they expire.
    turns.start();
    deliverer.start();
    scheduler.start();
    workflows.start();
    sweeper.start();
    const urlHost = config.host.includes(':') ? `[${config.host}]` : config.host;
    const running: RunningGateway = {
      config,
      port,
      url: `${config.tls ? 'wss' : 'ws'}://${urlHost}:${port}/ws`,
      home: options.home,
      bootstrapToken,
      store,
      server,
      audit,
      tokens,
      key,
      plugins,
      host,
      tools,
      mcp,
      mcpHost,
      secrets,
      engine,
      policy,
      approvals,
      conversations,
      turns,
      channels,
      scheduler,
      workflows,
      artifacts,
      sweeper,
      telemetry,
      close: async () => {
        await outboxWake?.close();
        stopReads?.();
        // A sweep in progress ends after its current batch commits.
        await sweeper.stop();
        // No new fires first: a fire's run or message must find the engine and runner still up.
        await scheduler.stop();
        await workflows.stop();
        await turns.stop();
        await deliverer.stop();
        await engine.stop();
        await cluster?.close();
        // A doctor check in flight is stopped (its caller gets a coded error) and its worker's connection closed.
        await doctor.close();
        await server!.close();
        presence.close();
        await mcpHost!.close();
        await host!.close();
        // Flushes the spans still buffered to the OTLP endpoint.
        store.observe(null);
        await telemetry!.close().catch((e: unknown) => server!.app.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'could not flush traces'));
        await audit.append('gateway.stopped', { kind: 'gateway', key_id: key.keyId }, {}).catch(() => undefined);
        try {
          await svc.close();
        } finally {
          lock.release();
        }
      },
    };
    return running;
  } catch (e) {
    await outboxWake?.close().catch(() => undefined);
    stopReads?.();
    await cluster?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
    await mcpHost?.close().catch(() => undefined);
    await host?.close().catch(() => undefined);
    store.observe(null);
    await telemetry?.close().catch(() => undefined);
    await svc.close().catch(() => undefined);
    lock.release();
    throw e;
  }
}

/** Listens; an address in use or not allowed becomes a coded error that says what to do. */
async function listen(server: GatewayServer, config: Config, configFile: string): Promise<number> {
  try {
    return await server.listen();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const where = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`;
    if (code === 'EADDRINUSE') {
      throw new TyrumError('TYRUM_ERR_PORT_IN_USE', `cannot listen on ${where}: the port is in use (another gateway or program); choose another with --port N (e.g. tyrum start --port ${config.port === 65535 ? 8789 : config.port + 1}), or set "port" in ${configFile}`, { host: config.host, port: config.port }, { cause: e });
    }
    if (code === 'EACCES') {
      throw new TyrumError('TYRUM_ERR_PORT_IN_USE', `cannot listen on ${where}: permission denied (ports below 1024 need privileges); choose another with --port N, or set "port" in ${configFile}`, { host: config.host, port: config.port }, { cause: e });
    }
    throw e;
  }
}

