/**
 * Runs MCP servers for the gateway and serves their approved tools.
 *
 * Every server that is not disabled is supervised: started (stdio) or reached (HTTP), its tools
 * listed and recorded (`McpRegistry.observe`, which pins and screens), re-listed when it says
 * its list changed and every `relistIntervalMs` in case it does not say, and restarted with
 * exponential backoff when it dies. Quarantined servers run too, so their tools can be reviewed,
 * but nothing of theirs is callable.
 *
 * Tools are served from the *approved* definition, never the live one: what a client sees is
 * what an operator approved. Calls: arguments checked against the pinned input schema, a call
 * timeout, a result size limit, the pinned output schema checked against structuredContent,
 * the result redacted, the call audited.
 */
import { TyrumError, isTyrumError } from '../errors/index.js';
import { compilePluginSchema, forgetPluginSchema, toIssues } from '../../manifests/index.js';
import type { ValidateFunction } from 'ajv';
import type { AuditLog, AuditActor } from '../audit/index.js';
import type { McpServerRow } from '../store/index.js';
import { DEFAULT_TENANT, type McpServerSpec } from '../../schemas/index.js';
import type { ToolEntry } from '../registry/host.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import { connectMcp } from './client.js';
import { McpRegistry, validatorSchema, type ServedMcpTool } from './registry.js';
import type { McpCallResult, McpConnection } from './types.js';
import { detached } from '../telemetry/context.js';

export interface McpHostOptions {
  registry: McpRegistry;
  audit: AuditLog;
  redact: (value: unknown) => unknown;
  /** Ids of enabled plugins (their servers run; others' do not). */
  activePlugins(): ReadonlySet<string>;
  /** Secret handles granted to a plugin (what its declared external servers may use). */
  pluginSecrets(pluginId: string): ReadonlySet<string>;
  /** A connection to a plugin's in-sandbox (wasm) MCP server. */
  wasmConnection(pluginId: string, serverName: string, limits: { timeoutMs: number; maxOutputBytes: number }): McpConnection;
  log?(level: 'debug' | 'info' | 'warn' | 'error', message: string, data: Record<string, unknown>): void;
  /** Live tool.invoked; `tenant` is the acting tenant (the actor's `tenant`), whose clients alone receive it, the default's when absent. */
  emit?(type: 'tool.invoked', payload: Record<string, unknown>, tenant?: string): void;
  connectTimeoutMs?: number;
  relistIntervalMs?: number;
  /** Largest message from a server (also bounds a single tools/list page). Default 4 MiB. */
  maxMessageBytes?: number;
  /** First restart delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export const DEFAULT_CALL_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

interface CatalogTool {
  entry: ToolEntry;
  served: ServedMcpTool;
  input: ValidateFunction;
  output: ValidateFunction | null;
  inputSchema: Record<string, unknown>;
  outputSchema: Record<string, unknown> | null;
}

type SupervisorState = 'starting' | 'ready' | 'backoff' | 'stopped';

/** Keeps one server connected, listed and restarted. */
class Supervisor {
  state: SupervisorState = 'starting';
  conn: McpConnection | null = null;
  restarts = 0;
  lastError: string | null = null;
  serverVersion = '';
  private timer: NodeJS.Timeout | null = null;
  private relistTimer: NodeJS.Timeout | null = null;
  private backoff: number;
  private readyWaiters: Array<() => void> = [];
  private relisting: Promise<void> | null = null;
  private relistAgain = false;

  /** Parsed once: the spec is fixed for a supervisor's life (a changed spec is a new supervisor). */
  readonly spec: McpServerSpec;

  constructor(
    readonly row: McpServerRow,
    private readonly host: McpHost,
    private readonly o: McpHostOptions,
  ) {
    this.backoff = o.minBackoffMs ?? 500;
    this.spec = JSON.parse(row.spec) as McpServerSpec;
  }


  start(): void {
    void this.connect();
  }

  /** Resolves once the server is ready, or after `ms` (then the caller checks `state`). */
  async ready(ms: number): Promise<void> {
    if (this.state === 'ready') return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref();
      this.readyWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    if (this.relistTimer) clearInterval(this.relistTimer);
    const c = this.conn;
    this.conn = null;
    await c?.close().catch(() => undefined);
    this.flushWaiters();
  }

  /** Re-lists the tools (coalesced: one in flight, at most one more queued). */
  relist(): Promise<void> {
    if (this.relisting) {
      this.relistAgain = true;
      return this.relisting;
    }
    this.relisting = (async () => {
      do {
        this.relistAgain = false;
        const c = this.conn;
        if (!c || this.state !== 'ready') return;
        try {
          const defs = await c.listTools({ timeoutMs: this.o.connectTimeoutMs ?? 30_000 });
          const summary = await this.o.registry.observe(this.row.name, defs);
          if (summary.changed.length > 0 || summary.added.length > 0 || summary.removed.length > 0) {
            this.o.log?.('warn', 'MCP server tool list changed', { server: this.row.name, ...summary });
            this.host.invalidate();
          }
        } catch (e) {
          this.o.log?.('warn', 'MCP tools/list failed', { server: this.row.name, err: errText(e) });
        }
      } while (this.relistAgain);
    })().finally(() => {
      this.relisting = null;
    });
    return this.relisting;
  }

  private async connect(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'starting';
    const spec = this.spec;
    const connectTimeoutMs = this.o.connectTimeoutMs ?? 30_000;
    let conn: McpConnection | null = null;
    let closedReason: string | null = null;
    try {
      if (spec.transport === 'wasm') {
        conn = this.o.wasmConnection(this.row.origin.slice('plugin:'.length), this.row.name, { timeoutMs: spec.call_timeout_ms ?? DEFAULT_CALL_TIMEOUT_MS, maxOutputBytes: spec.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES });
      } else {
        const pluginSecrets = this.row.origin.startsWith('plugin:') ? this.o.pluginSecrets(this.row.origin.slice(7)) : null;
        const resolved = this.o.registry.resolve(this.row, pluginSecrets);
        conn = await connectMcp(resolved, { maxMessageBytes: this.o.maxMessageBytes ?? 4 * 1024 * 1024, connectTimeoutMs });
      }
      if (this.stopped()) {
        await conn.close();
        return;
      }
      // Until the connection is ready, its end is reported by the failing listTools below (one
      // failure, one restart); once ready, by `lost`.
      const attempt = conn;
      conn.onClosed((reason) => {
        if (this.conn === attempt) this.lost(reason);
        else closedReason = reason;
      });
      conn.onToolsChanged(() => void this.relist());
      const defs = await conn.listTools({ timeoutMs: connectTimeoutMs });
      if (this.stopped()) {
        await conn.close();
        return;
      }
      this.conn = conn;
      this.serverVersion = String(conn.serverVersion?.() ?? '').slice(0, 64);
      const summary = await this.o.registry.observe(this.row.name, defs);
      this.state = 'ready';
      this.lastError = null;
      this.o.registry.recordHealth(this.row.name, { status: 'ready', tools: defs.length, restarts: this.restarts, refused: summary.refused.length });
      this.host.invalidate();
      this.flushWaiters();
      const every = this.o.relistIntervalMs ?? 60_000;
      if (every > 0 && spec.transport !== 'wasm') {
        this.relistTimer = setInterval(() => void this.relist(), every);
        this.relistTimer.unref();
      }
      // Healthy for a while: the next failure starts the backoff from the bottom again.
      setTimeout(() => {
        if (this.state === 'ready' && this.conn === conn) this.backoff = this.o.minBackoffMs ?? 500;
      }, 30_000).unref();
    } catch (e) {
      await conn?.close().catch(() => undefined);
      // The process's own account (exit, stderr, an oversized message) beats "Connection closed".
      this.fail(closedReason ?? errText(e));
    }
  }

  /** `stop()` may run while a connect is awaiting (TypeScript narrows `state` across awaits). */
  private stopped(): boolean {
    return (this.state as SupervisorState) === 'stopped';
  }

  private lost(reason: string): void {
    if (this.state === 'stopped') return;
    this.conn = null;
    if (this.relistTimer) clearInterval(this.relistTimer);
    this.relistTimer = null;
    this.host.invalidate();
    this.fail(reason);
  }

  private fail(reason: string): void {
    if (this.state === 'stopped') return;
    this.state = 'backoff';
    this.lastError = reason;
    this.restarts++;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.o.maxBackoffMs ?? 60_000);
    this.o.log?.('warn', 'MCP server unavailable; restarting with backoff', { server: this.row.name, reason: String(this.o.redact(reason)), retry_in_ms: delay, restarts: this.restarts });
    this.o.registry.recordHealth(this.row.name, { status: 'backoff', error: String(this.o.redact(reason)), restarts: this.restarts, retry_in_ms: delay });
    this.flushWaiters();
    if (this.timer) clearTimeout(this.timer);
    // The reconnect (and the relist timer it arms) belongs to no call, even when a call saw the failure.
    this.timer = detached(() => setTimeout(() => void this.connect(), delay));
    this.timer.unref();
  }

  private flushWaiters(): void {
    const w = this.readyWaiters;
    this.readyWaiters = [];
    for (const f of w) f();
  }
}

export class McpHost {
  private readonly supervisors = new Map<string, Supervisor>();
  private catalog: Map<string, CatalogTool> | null = null;

  constructor(private readonly o: McpHostOptions) {}

  /** Starts, restarts or stops supervisors to match the registry; drops the catalog. */
  async reconcile(): Promise<void> {
    const active = this.o.activePlugins();
    const wanted = new Map(this.o.registry.runnable(active).map((r) => [r.name, r]));
    for (const [name, sup] of this.supervisors) {
      const w = wanted.get(name);
      if (w && w.spec_digest === sup.row.spec_digest) continue;
      this.supervisors.delete(name);
      await sup.stop();
    }
    for (const [name, row] of wanted) {
      if (this.supervisors.has(name)) continue;
      const sup = new Supervisor(row, this, this.o);
      this.supervisors.set(name, sup);
      sup.start();
    }
    this.invalidate();
  }

  /** Waits until every supervised server is ready or has failed once (tests, `doctor`). */
  async settled(ms = 30_000): Promise<void> {
    await Promise.all([...this.supervisors.values()].map((s) => s.ready(ms)));
  }

  /** Re-lists one server's tools now (used after a CLI change and by tests). */
  async relist(server: string): Promise<void> {
    await this.supervisors.get(server)?.relist();
  }

  /** Live status per supervised server. */
  status(): Array<{ server: string; state: SupervisorState; restarts: number; last_error: string | null }> {
    return [...this.supervisors.values()].map((s) => ({ server: s.row.name, state: s.state, restarts: s.restarts, last_error: s.lastError }));
  }

  invalidate(): void {
    if (!this.catalog) return;
    for (const t of this.catalog.values()) {
      forgetPluginSchema(t.inputSchema);
      if (t.outputSchema) forgetPluginSchema(t.outputSchema);
    }
    this.catalog = null;
  }

  describe(toolId: string): { entry: ToolEntry; risks: []; rights: Pick<EffectiveRights, 'egress' | 'secrets'> } | undefined {
    const t = this.getCatalog().get(toolId);
    if (!t) return undefined;
    return { entry: t.entry, risks: [], rights: t.served.rights };
  }

  tools(): Array<Omit<ToolEntry, 'postcondition'>> {
    return [...this.getCatalog().values()].map(({ entry: { postcondition: _pc, ...wire } }) => wire);
  }

  /** `describe`, or the error a call of the tool fails with ({@link notServed}). */
  lookup(toolId: string): NonNullable<ReturnType<McpHost['describe']>> | TyrumError {
    return this.describe(toolId) ?? this.notServed(toolId);
  }

  /**
   * Why `toolId` is not served: TYRUM_ERR_MCP_QUARANTINED for a tool awaiting review (new, of an
   * unapproved server, or changed since approval), TYRUM_ERR_MCP_SCHEMA_REFUSED for a refused
   * one, TYRUM_ERR_NOT_FOUND when no active server lists it.
   */
  private notServed(toolId: string): TyrumError {
    return this.o.registry.unavailable(toolId, this.o.activePlugins()) ?? new TyrumError('TYRUM_ERR_NOT_FOUND', `no approved MCP tool ${toolId}`, { tool_id: toolId });
  }

  checkCall(toolId: string, args: Record<string, unknown>): void {
    const t = this.getCatalog().get(toolId);
    if (!t) throw this.notServed(toolId);
    if (!t.input(args)) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: toIssues(t.input.errors) });
  }

  /** Calls an approved MCP tool; returns the MCP result (content, structuredContent) redacted. */
  async invoke(toolId: string, args: Record<string, unknown>, actor: AuditActor, signal?: AbortSignal): Promise<{ output: unknown; definition_hash: string; plugin_digest: string; duration_ms: number }> {
    const started = performance.now();
    const t = this.getCatalog().get(toolId);
    if (!t) throw this.notServed(toolId);
    const sup = this.supervisors.get(t.served.server);
    const spec = sup?.spec;
    const timeoutMs = spec?.call_timeout_ms ?? DEFAULT_CALL_TIMEOUT_MS;
    const maxOut = spec?.max_output_bytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    try {
      if (!t.input(args)) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: toIssues(t.input.errors) });
      if (!sup) throw new TyrumError('TYRUM_ERR_MCP_SERVER', `MCP server ${t.served.server} is not running`);
      if (sup.state !== 'ready') await sup.ready(Math.min(timeoutMs, this.o.connectTimeoutMs ?? 30_000));
      const conn = sup.conn;
      // Nothing was sent: safe to retry later (the engine retries only idempotent steps).
      if (sup.state !== 'ready' || !conn) throw new TyrumError('TYRUM_ERR_MCP_SERVER', `MCP server ${t.served.server} is unavailable${sup.lastError ? `: ${sup.lastError}` : ''}`, { retryable: true });
      const res: McpCallResult = await conn.callTool(t.served.name, args, { timeoutMs, ...(signal ? { signal } : {}) });
      const size = Buffer.byteLength(JSON.stringify(res));
      if (size > maxOut) throw new TyrumError('TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE', `${toolId} returned ${size} bytes, above the ${maxOut}-byte limit`);
      const output: Record<string, unknown> = { content: Array.isArray(res.content) ? res.content : [] };
      if (res.structuredContent !== undefined) output.structuredContent = res.structuredContent;
      if (res.isError === true) {
        const text = output.content as Array<Record<string, unknown>>;
        const message = text.map((c) => (c.type === 'text' && typeof c.text === 'string' ? c.text : '')).join('\n').slice(0, 2000);
        throw new TyrumError('TYRUM_ERR_MCP_TOOL_ERROR', `${toolId} reported an error: ${message || '(no text)'}`, { result: output });
      }
      if (t.output && !t.output(res.structuredContent)) {
        throw new TyrumError('TYRUM_ERR_MCP_SERVER', `${toolId} returned structuredContent that does not match its approved outputSchema`, { issues: toIssues(t.output.errors) });
      }
      const duration = round(performance.now() - started);
      this.record(t, actor, duration, null);
      return { output: this.o.redact(output), definition_hash: t.entry.definition_hash, plugin_digest: t.entry.plugin_digest, duration_ms: duration };
    } catch (e) {
      const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `MCP tool ${toolId} failed`, undefined, { cause: e });
      this.record(t, actor, round(performance.now() - started), err);
      throw new TyrumError(err.code, String(this.o.redact(err.message)), err.details ? (this.o.redact(err.details) as Record<string, unknown>) : undefined);
    }
  }

  async close(): Promise<void> {
    const all = [...this.supervisors.values()];
    this.supervisors.clear();
    await Promise.all(all.map((s) => s.stop()));
    this.invalidate();
  }

  private record(t: CatalogTool, actor: AuditActor, durationMs: number, err: TyrumError | null): void {
    this.o.audit
      .append('tool.invoked', actor, {
        tool_id: t.entry.tool_id,
        plugin_id: 'mcp',
        mcp_server: t.served.server,
        server_digest: t.entry.plugin_digest,
        definition_hash: t.entry.definition_hash,
        duration_ms: durationMs,
        outcome: err ? 'error' : 'ok',
        error_code: err?.code ?? null,
      })
      .catch(() => undefined);
    this.o.emit?.('tool.invoked', { tool_id: t.entry.tool_id, ok: err === null, error_code: err?.code ?? null, duration_ms: durationMs, token_id: typeof actor.id === 'string' ? actor.id : actor.kind }, typeof actor.tenant === 'string' ? actor.tenant : DEFAULT_TENANT);
  }

  private getCatalog(): Map<string, CatalogTool> {
    if (this.catalog) return this.catalog;
    const catalog = new Map<string, CatalogTool>();
    for (const s of this.o.registry.served(this.o.activePlugins())) {
      const sup = this.supervisors.get(s.server);
      const inputSchema = validatorSchema(s.definition.inputSchema);
      const outputSchema = s.definition.outputSchema ? validatorSchema(s.definition.outputSchema) : null;
      let input: ValidateFunction;
      let output: ValidateFunction | null;
      try {
        // Screened at registration; compiled once per catalog build.
        input = compilePluginSchema(inputSchema, `${s.tool_id} inputSchema`);
        output = outputSchema ? compilePluginSchema(outputSchema, `${s.tool_id} outputSchema`) : null;
      } catch (e) {
        this.o.log?.('warn', 'MCP tool schema does not compile; not served', { tool_id: s.tool_id, err: errText(e) });
        continue;
      }
      catalog.set(s.tool_id, {
        entry: {
          tool_id: s.tool_id,
          plugin_id: 'mcp',
          plugin_version: sup?.serverVersion ?? '',
          description: typeof s.definition.description === 'string' ? s.definition.description : typeof s.definition.title === 'string' ? s.definition.title : '',
          effect: s.effect,
          input_schema: s.definition.inputSchema,
          output_schema: resultSchema(s.definition.outputSchema),
          definition_hash: s.definition_hash,
          plugin_digest: s.spec_digest,
          postcondition: null,
        },
        served: s,
        input,
        output,
        inputSchema,
        outputSchema,
      });
    }
    this.catalog = catalog;
    return catalog;
  }
}

/** The Tyrum output of an MCP tool: the MCP result's content and structuredContent. */
function resultSchema(outputSchema: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    type: 'object',
    required: ['content'],
    properties: { content: { type: 'array', items: { type: 'object' } }, ...(outputSchema ? { structuredContent: outputSchema } : {}) },
  };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
