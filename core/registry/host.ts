/**
 * Runs enabled plugins: owns the sandbox pool, loads a plugin on its first call (re-verifying
 * its files against the pinned digests), keeps the tool catalog with definition hashes, and
 * reloads or unloads a plugin whenever its digest, effective rights or config change.
 *
 * The catalog is per plugin and incremental: a plugin's entry is read from the registry on first
 * use (a call, a lookup, a listing) and again only after a change of that plugin, so a lifecycle
 * change costs the same with 10 plugins enabled as with 1,000. Tool schemas compile on first use,
 * shared by content (core/registry/validators.ts). Sandboxes start on a plugin's first call and
 * are evicted when idle (`sandbox_idle_ms`) or when more than `max_live_sandboxes` are live (the
 * least recently used without a call in flight goes); the next call starts the plugin again.
 *
 * Deny by default: a tool exists here only if its plugin is installed, granted as required and
 * enabled. Tool calls go through `invoke`, the single road of issue 3's pipeline (contract check,
 * resolve, execute under budget, output check, audit); policy and approvals slot in before
 * execution with the durable engine.
 */
import { createHash } from 'node:crypto';
import { DEFAULT_TENANT, type PluginManifest, type RiskFlag } from '../../schemas/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import type { Store, PluginRecord } from '../store/index.js';
import type { AuditLog, AuditActor } from '../audit/index.js';
import { SandboxPool, type EgressHandler, type CallResult, type CallUsage, type HostApi, type LogLevel } from '../../sandbox/index.js';
import { loadInstalledPlugin, manifestExports, toIssues } from '../../manifests/index.js';
import type { ValidateFunction } from 'ajv';
import type { McpServerContribution } from '../../schemas/index.js';
import { pluginStamp, type PluginRegistry, type EnabledPlugin } from './plugins.js';
import { ValidatorCache, type SchemaRef } from './validators.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import { pluginKv } from './kv.js';
import { DEFAULT_LIMITS } from '../config/index.js';
import { checkToolInput, outputMismatch, rawIo, toolInput, toolOutput, type RawIo } from './io.js';
import { WasmMcpConnection, WASM_MCP_EXPORTS } from '../mcp/wasm.js';
import { extractToolArtifacts } from '../artifacts/inline.js';
import type { ArtifactOutput } from '../execution/types.js';
import type { McpConnection } from '../mcp/types.js';

/** A tool as the catalog knows it (the wire `ToolInfo`). */
export interface ToolEntry {
  tool_id: string;
  plugin_id: string;
  plugin_version: string;
  description: string;
  effect: 'read_only' | 'state_changing';
  input_schema: Record<string, unknown>;
  output_schema: Record<string, unknown>;
  definition_hash: string;
  plugin_digest: string;
  /** Checked by the engine on every output of the tool (from the manifest). */
  postcondition: PluginManifest['contributes']['tools'][number]['postcondition'] | null;
}

interface CatalogTool {
  entry: ToolEntry;
  exportName: string;
  /** Validators of the input and output schemas, compiled on first use. */
  input: SchemaRef;
  output: SchemaRef;
  /** The declared text/bytes encodings; null is JSON (the default). */
  io: { input: RawIo | null; output: RawIo | null };
  plugin: EnabledPlugin;
}

/** An enabled plugin in the catalog: read from the registry once per change of the plugin. */
interface CatalogPlugin {
  plugin: EnabledPlugin;
  /** The sandbox pool key: the id and a fingerprint of digest, effective rights and config. */
  key: string;
  tools: Map<string, CatalogTool>;
}

/** A sandbox started for a plugin, with the rights it was started under (the pool key fingerprints them). */
interface LiveSandbox {
  pluginId: string;
  key: string;
  rights: EffectiveRights;
  lastUsed: number;
  /** Calls between their start and their answer: a sandbox with calls in flight is never evicted. */
  inflight: number;
  loading: Promise<void>;
}

/** One plugin a reconcile found changed. */
export interface PluginChange {
  id: string;
  /** The MCP servers the plugin declares now (none when disabled or removed). */
  mcpServers: readonly McpServerContribution[];
  /** It declared MCP servers before the change (they may have to stop). */
  hadMcpServers: boolean;
}

/** Reading every plugin for the first listing yields to the event loop after this long. */
const FILL_SLICE_MS = 10;

/** A failed call's log excerpt for the caller: at most this many of its last lines ... */
const LOG_EXCERPT_LINES = 5;
/** ... and at most this many bytes (UTF-8), after redaction. */
const LOG_EXCERPT_BYTES = 1024;

export interface InvokeResult {
  tool_id: string;
  output: unknown;
  definition_hash: string;
  plugin_digest: string;
  duration_ms: number;
  usage: { wall_ms: number; host_calls: number; alloc_bytes: number; egress_bytes: number; output_bytes: number; mem_pages_peak: number; log_lines: number };
  /** Evidence blobs the tool returned under `$artifacts` (taken out of `output`); absent when none. */
  artifacts?: ArtifactOutput[];
}

export interface PluginHostOptions {
  store: Store;
  home: string;
  registry: PluginRegistry;
  audit: AuditLog;
  /** The gateway's checked egress (core/egress); every plugin's http_request goes through it, and it refuses what the plugin's rights do not name. */
  egress: EgressHandler | null;
  /** Redacts known secret values from outputs and logs. */
  redact: (value: unknown) => unknown;
  /** Live tool.invoked; `tenant` is the acting tenant (the actor's `tenant`), whose clients alone receive it, the default's when absent. */
  emit?(type: 'tool.invoked', payload: Record<string, unknown>, tenant?: string): void;
  /** Where plugin log lines go (already truncated and rate-limited by the sandbox; redacted here). */
  log?(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string, data: Record<string, unknown>): void;
  workers?: number;
  /** Evict a plugin's sandbox after this long without calls (`sandbox_idle_ms`). */
  sandboxIdleMs?: number;
  /** Most sandboxes live at once (`max_live_sandboxes`); see {@link PluginHost}. */
  maxLiveSandboxes?: number;
}

/**
 * The hash that pins a tool's definition: its id, description, effect and both schemas, in
 * RFC 8785 canonical form. Approvals bind to it; a changed definition is a different tool.
 */
export function toolDefinitionHash(toolId: string, t: PluginManifest['contributes']['tools'][number]): string {
  // Declared encodings change what the export receives, so they are part of the definition
  // (only when declared: definitions without them keep their hash).
  const io = { ...(rawIo(t.input) ? { input: t.input } : {}), ...(rawIo(t.output) ? { output: t.output } : {}) };
  return createHash('sha256')
    .update(canonicalJson({ name: toolId, description: t.description, effect: t.effect, input_schema: t.input_schema, output_schema: t.output_schema, postcondition: t.postcondition ?? null, ...io }))
    .digest('hex');
}

export class PluginHost {
  readonly pool: SandboxPool;
  /** Compiled tool-schema validators, shared by content (tests read its `compiles`). */
  readonly validators = new ValidatorCache();
  /** Catalog entries read from the registry so far (tests observe that a change re-reads only its plugin). */
  entryReads = 0;
  /** Sandboxes evicted so far (idle, or over `max_live_sandboxes`). */
  evictions = 0;
  /** Enabled plugins read so far, by id. */
  private readonly entries = new Map<string, CatalogPlugin>();
  /** `entries` holds every enabled plugin (a listing read them all; changes keep it so). */
  private complete = false;
  /** A listing is reading every enabled plugin (see {@link readAll}). */
  private filling: Promise<void> | null = null;
  /** The row stamp of every installed plugin as last reconciled; null before the first reconcile. */
  private stamps: Map<string, string> | null = null;
  /** Enabled plugins that declare MCP servers. */
  private readonly mcpDeclarers = new Set<string>();
  /** Live sandboxes by plugin id, and the same by pool key (egress asks by key on every request). */
  private readonly live = new Map<string, LiveSandbox>();
  private readonly liveByKey = new Map<string, LiveSandbox>();
  /** Unloads in progress by pool key: a plugin started again under the same key waits for its unload. */
  private readonly unloading = new Map<string, Promise<void>>();
  private readonly idleMs: number;
  private readonly maxLive: number;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly o: PluginHostOptions) {
    this.pool = new SandboxPool({ workers: o.workers ?? 2 });
    this.idleMs = o.sandboxIdleMs ?? DEFAULT_LIMITS.sandboxIdleMs;
    this.maxLive = o.maxLiveSandboxes ?? DEFAULT_LIMITS.maxLiveSandboxes;
    this.idleTimer = setInterval(() => this.evictIdle(), Math.max(10, Math.min(this.idleMs, 60_000)));
    this.idleTimer.unref();
  }

  /** The effective rights behind a sandbox pool key (what the checked egress enforces), with the plugin's id. */
  rightsFor(poolKey: string): (EffectiveRights & { plugin_id: string }) | null {
    // Called on every egress request: a lookup in the live set, never a registry read.
    const l = this.liveByKey.get(poolKey);
    return l ? { ...l.rights, plugin_id: l.pluginId } : null;
  }

  /** A tool with its plugin's declared risks and effective rights (what policy decides on), or undefined. */
  describe(toolId: string): { entry: ToolEntry; risks: RiskFlag[]; rights: EffectiveRights } | undefined {
    const t = this.tool(toolId);
    return t ? { entry: t.entry, risks: [...(t.plugin.manifest.risk ?? [])], rights: t.plugin.effective } : undefined;
  }

  /**
   * Tools of enabled plugins, sorted by id. The first listing reads every enabled plugin, at once
   * (await {@link readAll} first to spread that over several turns of the event loop); later ones
   * read none.
   */
  tools(): Array<Omit<ToolEntry, 'postcondition'>> {
    if (!this.complete) {
      for (const row of this.o.store.plugins.list()) this.entry(row.id);
      this.complete = true;
    }
    const out: Array<Omit<ToolEntry, 'postcondition'>> = [];
    for (const c of this.entries.values()) for (const { entry: { postcondition: _pc, ...wire } } of c.tools.values()) out.push(wire);
    return out.sort((a, b) => (a.tool_id < b.tool_id ? -1 : 1));
  }

  /** The validators of a tool's input and output schemas (compiled now if not yet), or undefined. */
  validatorsOf(toolId: string): { input: ValidateFunction; output: ValidateFunction } | undefined {
    const t = this.tool(toolId);
    return t ? { input: t.input.validator(), output: t.output.validator() } : undefined;
  }

  /** Live sandboxes (plugin ids), least recently used first. */
  liveSandboxes(): string[] {
    return [...this.live.values()].sort((a, b) => a.lastUsed - b.lastUsed).map((l) => l.pluginId);
  }

  /**
   * Brings the catalog and the sandboxes up to date after lifecycle changes: `pluginId`'s only
   * (a change made in this process names its plugin), or, without it, those whose registry row
   * changed since the last reconcile (another process changed the database: one query over the
   * plugin rows, and only the changed ones are read). A changed plugin's catalog entry is read
   * again; its sandbox is unloaded if the plugin was disabled or removed or its digest, rights or
   * config changed, and starts again on its next call. Resolves with the changed plugins once
   * their sandboxes are unloaded. The first reconcile only records what is installed (and which
   * enabled plugins declare MCP servers, returned as changed): nothing is read per plugin for
   * the catalog until it is used.
   */
  async reconcile(pluginId?: string): Promise<PluginChange[]> {
    const changes: PluginChange[] = [];
    const unloads: Promise<void>[] = [];
    if (this.stamps === null) {
      this.stamps = new Map();
      for (const row of this.o.store.plugins.list()) {
        this.stamps.set(row.id, pluginStamp(row));
        if (row.state !== 'enabled') continue;
        const servers = (JSON.parse(row.manifest) as PluginManifest).contributes.mcp_servers ?? [];
        if (servers.length === 0) continue;
        this.mcpDeclarers.add(row.id);
        changes.push({ id: row.id, mcpServers: servers, hadMcpServers: false });
      }
      if (pluginId === undefined) return changes;
    }
    if (pluginId !== undefined) {
      changes.push(this.changed(pluginId, this.o.store.plugins.get(pluginId), unloads));
    } else {
      const seen = new Set<string>();
      for (const row of this.o.store.plugins.list()) {
        seen.add(row.id);
        if (this.stamps.get(row.id) !== pluginStamp(row)) changes.push(this.changed(row.id, row, unloads));
      }
      for (const id of [...this.stamps.keys()]) if (!seen.has(id)) changes.push(this.changed(id, undefined, unloads));
    }
    await Promise.all(unloads);
    return changes;
  }

  /**
   * Checks a call before it becomes a run: the tool must be enabled and the arguments must match
   * its input schema (a request error, not a failed run).
   */
  checkCall(toolId: string, args: Record<string, unknown>): void {
    const tool = this.tool(toolId);
    if (!tool) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`);
    const input = tool.input.validator();
    if (!input(args)) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: toIssues(input.errors) });
    checkToolInput(toolId, tool.io.input, args);
  }

  /** Runs a tool: args checked, executed in the sandbox under its budgets, output checked, audited. */
  async invoke(toolId: string, args: Record<string, unknown>, actor: AuditActor): Promise<InvokeResult> {
    const started = performance.now();
    const tool = this.tool(toolId);
    if (!tool) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`);
    const { entry } = tool;
    let usage: CallUsage | undefined;
    /** The log of a call that returned (already sent to the operator's log). */
    let callLogs: ReadonlyArray<PluginLogLine> = [];
    try {
      // Both now: a change of the plugin during the call lets go of the catalog's handles.
      const inputCheck = tool.input.validator();
      const outputCheck = tool.output.validator();
      const argIssues = inputCheck(args) ? [] : toIssues(inputCheck.errors);
      if (argIssues.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: argIssues });
      const input = toolInput(toolId, tool.io.input, args);
      const res = await this.call(this.entryFor(tool), tool.exportName, input);
      usage = res.usage;
      callLogs = res.logs;
      this.pluginLogs(entry, res.logs);
      // Artifacts ride out of band: taken out of the output before its schema sees it.
      const { output, artifacts } = extractToolArtifacts(toolOutput(toolId, tool.io.output, res.output), toolId);
      const outIssues = outputCheck(output) ? [] : toIssues(outputCheck.errors);
      if (outIssues.length > 0) throw new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', outputMismatch(toolId, res.output, output), { reason: 'plugin_error', issues: outIssues });
      const result: InvokeResult = {
        tool_id: toolId,
        output: this.o.redact(output),
        definition_hash: entry.definition_hash,
        plugin_digest: entry.plugin_digest,
        duration_ms: round(performance.now() - started),
        usage: wireUsage(res.usage),
        ...(artifacts.length > 0 ? { artifacts } : {}),
      };
      this.record(entry, actor, result.duration_ms, usage, null);
      return result;
    } catch (e) {
      const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `tool ${toolId} failed`, undefined, { cause: e });
      let logs = callLogs;
      if (Array.isArray(err.details?.logs)) {
        logs = err.details.logs as PluginLogLine[];
        this.pluginLogs(entry, logs);
      }
      this.record(entry, actor, round(performance.now() - started), usage, err);
      // Plugin-supplied text (messages, logs) can echo secrets: redact before it leaves. The
      // caller gets the last lines of the plugin's log, which often say why (e.g. a WASI errno).
      let details = err.details ? (this.o.redact(stripLogs(err.details)) as Record<string, unknown>) : undefined;
      const excerpt = this.logExcerpt(logs);
      if (excerpt !== null) details = { ...details, log_excerpt: excerpt };
      throw new TyrumError(err.code, String(this.o.redact(err.message)), details);
    }
  }

  /**
   * A connection to the MCP server a plugin implements inside its sandbox (manifest
   * `contributes.mcp_servers` with transport "wasm"). Each call goes to the plugin's current
   * sandbox, loaded with its current effective rights, under its budgets.
   */
  mcpConnection(pluginId: string, serverName: string, limits: { timeoutMs: number; maxOutputBytes: number }): McpConnection {
    return new WasmMcpConnection({
      serverName,
      maxOutputBytes: limits.maxOutputBytes,
      call: async (exportName, input, opts) => {
        const c = this.entry(pluginId);
        if (!c) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `plugin ${pluginId} is not enabled`);
        // The server's call timeout can only tighten the plugin's granted time budget.
        const res = await this.call(c, exportName, input, { wallMs: Math.min(opts.timeoutMs, c.plugin.effective.time.timeout_ms) });
        this.pluginLogs({ plugin_id: pluginId, tool_id: `mcp.${serverName}` }, res.logs);
        return res.output;
      },
    });
  }

  /**
   * Calls an export of an enabled plugin's channel adapter (manifest `contributes.channels`) in
   * its sandbox, under its budgets: JSON in, JSON out. A plugin error, a trap or output that is
   * not JSON is a TyrumError; plugin text in messages is redacted.
   */
  async callChannel(pluginId: string, exportName: string, input: unknown): Promise<unknown> {
    const c = this.entry(pluginId);
    if (!c) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `plugin ${pluginId} is not enabled`, { plugin_id: pluginId });
    let res: CallResult;
    try {
      res = await this.call(c, exportName, new TextEncoder().encode(JSON.stringify(input)));
    } catch (e) {
      const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', `channel adapter ${pluginId} failed`, undefined, { cause: e });
      if (Array.isArray(err.details?.logs)) this.pluginLogs({ plugin_id: pluginId, tool_id: `channel:${exportName}` }, err.details.logs as PluginLogLine[]);
      throw new TyrumError(err.code, String(this.o.redact(err.message)), err.details ? (this.o.redact(stripLogs(err.details)) as Record<string, unknown>) : undefined);
    }
    this.pluginLogs({ plugin_id: pluginId, tool_id: `channel:${exportName}` }, res.logs);
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(res.output)) as unknown;
    } catch {
      throw new TyrumError('TYRUM_ERR_CHANNEL_ADAPTER', `channel adapter ${pluginId} export ${exportName} did not return JSON`, { plugin_id: pluginId, export: exportName });
    }
  }

  /** An enabled plugin as the catalog holds it (read now if not yet), or undefined. */
  enabledPlugin(pluginId: string): EnabledPlugin | undefined {
    return this.entry(pluginId)?.plugin;
  }

  async close(): Promise<void> {
    for (const id of [...this.entries.keys()]) this.forget(id);
    clearInterval(this.idleTimer);
    await this.pool.close();
  }

  /** A tool of an enabled plugin: the plugin id is the tool id up to its first dot (plugin ids have none). */
  private tool(toolId: string): CatalogTool | undefined {
    const dot = toolId.indexOf('.');
    return dot > 0 ? this.entry(toolId.slice(0, dot))?.tools.get(toolId) : undefined;
  }

  /** The catalog entry of an enabled plugin, read from the registry on first use. */
  private entry(pluginId: string): CatalogPlugin | undefined {
    const cached = this.entries.get(pluginId);
    if (cached || this.complete) return cached;
    const p = this.o.registry.enabledPlugin(pluginId);
    return p ? this.add(p) : undefined;
  }

  /** The entry a catalog tool belongs to (the current one: a change during a call replaced it). */
  private entryFor(tool: CatalogTool): CatalogPlugin {
    const c = this.entries.get(tool.entry.plugin_id);
    return c && c.plugin === tool.plugin ? c : { plugin: tool.plugin, key: this.poolKey(tool.plugin), tools: new Map() };
  }

  /**
   * Reads every enabled plugin not yet in the catalog (before the first listing), yielding to the
   * event loop every {@link FILL_SLICE_MS}, so 1,000 plugins never stall it. A plugin changed
   * meanwhile is read by its reconcile (as once the catalog is complete).
   */
  readAll(): Promise<void> {
    if (this.complete) return Promise.resolve();
    this.filling ??= (async () => {
      try {
        let slice = performance.now();
        for (const { id } of this.o.store.plugins.list()) {
          // Read now, not from the listed row: it may have changed while this yielded.
          this.entry(id);
          if (performance.now() - slice < FILL_SLICE_MS) continue;
          await new Promise<void>((r) => setImmediate(r));
          slice = performance.now();
        }
        this.complete = true;
      } finally {
        this.filling = null;
      }
    })();
    return this.filling;
  }

  private add(p: EnabledPlugin): CatalogPlugin {
    this.entryReads += 1;
    const tools = new Map<string, CatalogTool>();
    for (const t of p.manifest.contributes.tools) {
      const toolId = `${p.record.id}.${t.id}`;
      tools.set(toolId, {
        entry: {
          tool_id: toolId,
          plugin_id: p.record.id,
          plugin_version: p.record.version,
          description: t.description,
          effect: t.effect,
          input_schema: t.input_schema,
          output_schema: t.output_schema,
          definition_hash: toolDefinitionHash(toolId, t),
          plugin_digest: p.record.wasm_sha256,
          postcondition: t.postcondition ?? null,
        },
        exportName: t.export,
        // Schemas were screened for safety at install; compiled on first use, shared by content.
        input: this.validators.acquire(t.input_schema, `${toolId} input_schema`),
        output: this.validators.acquire(t.output_schema, `${toolId} output_schema`),
        io: { input: rawIo(t.input), output: rawIo(t.output) },
        plugin: p,
      });
    }
    const c: CatalogPlugin = { plugin: p, key: this.poolKey(p), tools };
    this.entries.set(p.record.id, c);
    return c;
  }

  /** Drops a plugin's catalog entry and lets go of its validators. */
  private forget(pluginId: string): void {
    const c = this.entries.get(pluginId);
    if (!c) return;
    this.entries.delete(pluginId);
    for (const t of c.tools.values()) {
      this.validators.release(t.input);
      this.validators.release(t.output);
    }
  }

  /** Applies one plugin's change (its row now, undefined if removed); queues the unload of a stale sandbox. */
  private changed(id: string, row: PluginRecord | undefined, unloads: Promise<void>[]): PluginChange {
    if (row) this.stamps!.set(id, pluginStamp(row));
    else this.stamps!.delete(id);
    const hadMcpServers = this.mcpDeclarers.delete(id);
    const wasListed = this.entries.has(id);
    this.forget(id);
    const p = row ? this.o.registry.asEnabled(row) : undefined;
    const servers = p?.manifest.contributes.mcp_servers ?? [];
    if (servers.length > 0) this.mcpDeclarers.add(id);
    // Read again now only if it was in use or a listing holds every plugin; else on first use.
    const c = p && (wasListed || this.complete || this.filling !== null || this.live.has(id)) ? this.add(p) : undefined;
    const l = this.live.get(id);
    if (l && (!p || (c ?? this.add(p)).key !== l.key)) unloads.push(this.stop(l));
    return { id, mcpServers: servers, hadMcpServers };
  }

  private poolKey(p: EnabledPlugin): string {
    return `${p.record.id}@${this.o.registry.fingerprint(p)}`;
  }

  /**
   * Calls an export in the plugin's sandbox, starting it first if it is not live (the files are
   * re-read and re-verified against the pinned digests before any of its code runs). The call
   * counts as in flight from before the start until its answer, so eviction never takes it.
   */
  private async call(c: CatalogPlugin, exportName: string, input: Uint8Array, limits?: { wallMs: number }): Promise<CallResult> {
    const id = c.plugin.record.id;
    let l = this.live.get(id);
    if (l && l.key !== c.key) {
      // Started under other rights or another digest: a change not reconciled yet.
      void this.stop(l);
      l = undefined;
    }
    if (!l) {
      this.makeRoom();
      const fresh: LiveSandbox = { pluginId: id, key: c.key, rights: c.plugin.effective, lastUsed: Date.now(), inflight: 0, loading: this.load(c) };
      this.live.set(id, fresh);
      this.liveByKey.set(fresh.key, fresh);
      fresh.loading.catch(() => {
        if (this.live.get(id) === fresh) this.live.delete(id);
        if (this.liveByKey.get(fresh.key) === fresh) this.liveByKey.delete(fresh.key);
      });
      l = fresh;
    }
    l.inflight += 1;
    l.lastUsed = Date.now();
    try {
      await l.loading;
      return await this.pool.call(l.key, exportName, input, limits);
    } finally {
      l.inflight -= 1;
      l.lastUsed = Date.now();
    }
  }

  private async load(c: CatalogPlugin): Promise<void> {
    const p = c.plugin;
    // An earlier sandbox under the same key is still being unloaded: start after it is gone.
    await this.unloading.get(c.key);
    // Files are re-read and re-verified against the pinned digests on every load (D8).
    const files = await loadInstalledPlugin(this.o.home, p.record.id, p.record.version, { manifestSha256: p.record.manifest_sha256, wasmSha256: p.record.wasm_sha256 });
    const hostApi: HostApi = {};
    if (p.effective.kv) hostApi.kv = pluginKv(this.o.store, p.record.id, p.effective.kv.quota_bytes);
    // Every plugin's http_request goes through the checked egress, granted or not: it refuses what
    // the effective rights do not name (no rules at all: `no_rights`) and audits the refusal.
    if (this.o.egress) hostApi.egress = this.o.egress;
    await this.pool.load(c.key, {
      wasm: files.wasmBytes,
      expectedSha256: p.record.wasm_sha256,
      exports: [...manifestExports(p.manifest), ...((p.manifest.contributes.mcp_servers ?? []).some((m) => m.transport === 'wasm') ? WASM_MCP_EXPORTS : [])],
      limits: { memoryPages: p.effective.memory.max_pages, wallMs: p.effective.time.timeout_ms },
      config: extismConfig(p.config),
      hostApi,
    });
  }

  /** Takes a sandbox out of the live set and unloads it once its start has settled. */
  private stop(l: LiveSandbox): Promise<void> {
    if (this.live.get(l.pluginId) === l) this.live.delete(l.pluginId);
    if (this.liveByKey.get(l.key) === l) this.liveByKey.delete(l.key);
    const done = l.loading
      .catch(() => undefined)
      .then(() => this.pool.unload(l.key))
      .catch(() => undefined)
      .finally(() => {
        if (this.unloading.get(l.key) === done) this.unloading.delete(l.key);
      });
    this.unloading.set(l.key, done);
    return done;
  }

  /** Evicts the sandbox of a plugin (tests; operators use `sandbox_idle_ms`). False if none is live or it has a call in flight. */
  evict(pluginId: string): boolean {
    const l = this.live.get(pluginId);
    if (!l || l.inflight > 0) return false;
    this.evictions += 1;
    void this.stop(l);
    return true;
  }

  /** Before a start: while `max_live_sandboxes` are live, evict the least recently used one without a call in flight. */
  private makeRoom(): void {
    while (this.live.size >= this.maxLive) {
      let lru: LiveSandbox | undefined;
      for (const l of this.live.values()) if (l.inflight === 0 && (!lru || l.lastUsed < lru.lastUsed)) lru = l;
      // Every live sandbox is busy: go over the limit rather than fail or cut a call.
      if (!lru) return;
      this.evict(lru.pluginId);
    }
  }

  private evictIdle(): void {
    const now = Date.now();
    for (const l of [...this.live.values()]) if (l.inflight === 0 && now - l.lastUsed >= this.idleMs) this.evict(l.pluginId);
  }

  /**
   * The last lines of a failed call's plugin log as `level: message` lines, each redacted before
   * it is cut (a cut secret could no longer be recognised), at most LOG_EXCERPT_LINES lines and
   * LOG_EXCERPT_BYTES bytes; null when the plugin logged nothing.
   */
  private logExcerpt(logs: ReadonlyArray<PluginLogLine>): string | null {
    const lines: string[] = [];
    let room = LOG_EXCERPT_BYTES;
    for (let i = logs.length - 1; i >= 0 && lines.length < LOG_EXCERPT_LINES; i--) {
      const l = logs[i] as PluginLogLine;
      if (lines.length > 0) room -= 1; // the newline
      if (room <= 0) break;
      const line = utf8Prefix(`${l.level}: ${String(this.o.redact(l.message))}`, room);
      if (line === '') break;
      lines.unshift(line);
      room -= Buffer.byteLength(line);
    }
    return lines.length > 0 ? lines.join('\n') : null;
  }

  private pluginLogs(entry: Pick<ToolEntry, 'plugin_id' | 'tool_id'>, logs: ReadonlyArray<PluginLogLine>): void {
    if (!this.o.log) return;
    for (const l of logs) this.o.log(l.level, String(this.o.redact(l.message)), { plugin_id: entry.plugin_id, tool_id: entry.tool_id, source: 'plugin' });
  }

  private record(entry: ToolEntry, actor: AuditActor, durationMs: number, usage: CallUsage | undefined, err: TyrumError | null): void {
    const data = {
      tool_id: entry.tool_id,
      plugin_id: entry.plugin_id,
      plugin_version: entry.plugin_version,
      plugin_digest: entry.plugin_digest,
      definition_hash: entry.definition_hash,
      duration_ms: durationMs,
      usage: usage ? wireUsage(usage) : null,
      outcome: err ? 'error' : 'ok',
      error_code: err?.code ?? null,
    };
    this.o.audit.append('tool.invoked', actor, data).catch(() => undefined);
    this.o.emit?.('tool.invoked', { tool_id: entry.tool_id, ok: err === null, error_code: err?.code ?? null, duration_ms: durationMs, token_id: typeof actor.id === 'string' ? actor.id : actor.kind }, typeof actor.tenant === 'string' ? actor.tenant : DEFAULT_TENANT);
  }
}

type PluginLogLine = { level: LogLevel; message: string };

/** `s` cut to at most `max` UTF-8 bytes on a character boundary, marked with "…" when cut. */
function utf8Prefix(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  const mark = '…';
  let out = '';
  let n = Buffer.byteLength(mark);
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return n <= max ? out + mark : '';
}

/** Extism config is string → string: strings pass as-is, anything else as JSON. */
function extismConfig(config: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

function wireUsage(u: CallUsage): InvokeResult['usage'] {
  return { wall_ms: round(u.wall_ms), host_calls: u.host_calls, alloc_bytes: u.alloc_bytes, egress_bytes: u.egress_bytes, output_bytes: u.output_bytes, mem_pages_peak: u.mem_pages_peak ?? 0, log_lines: u.log_lines };
}

/** Plugin log lines are evidence for operators, not for callers. */
function stripLogs(details: Record<string, unknown>): Record<string, unknown> {
  const { logs: _logs, ...rest } = details;
  return rest;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
