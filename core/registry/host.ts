/**
 * Runs enabled plugins: owns the sandbox pool, loads a plugin on its first call (re-verifying
 * its files against the pinned digests), keeps the tool catalog with definition hashes, and
 * reloads or unloads a plugin whenever its digest, effective rights or config change.
 *
 * Deny by default: a tool exists here only if its plugin is installed, granted as required and
 * enabled. Tool calls go through `invoke`, the single road of issue 3's pipeline (contract check,
 * resolve, execute under budget, output check, audit); policy and approvals slot in before
 * execution with the durable engine.
 */
import { createHash } from 'node:crypto';
import type { PluginManifest, RiskFlag } from '../../schemas/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import type { Store } from '../store/index.js';
import type { AuditLog, AuditActor } from '../audit/index.js';
import { SandboxPool, type EgressHandler, type CallUsage, type HostApi, type LogLevel } from '../../sandbox/index.js';
import { loadInstalledPlugin, compilePluginSchema, forgetPluginSchema, toIssues } from '../../manifests/index.js';
import type { ValidateFunction } from 'ajv';
import type { PluginRegistry, EnabledPlugin } from './plugins.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';
import { pluginKv } from './kv.js';
import { checkToolInput, outputMismatch, rawIo, toolInput, toolOutput, type RawIo } from './io.js';
import { WasmMcpConnection, WASM_MCP_EXPORTS } from '../mcp/wasm.js';
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
  input: ValidateFunction;
  output: ValidateFunction;
  /** The declared text/bytes encodings; null is JSON (the default). */
  io: { input: RawIo | null; output: RawIo | null };
  plugin: EnabledPlugin;
}

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
  emit?(type: 'tool.invoked', payload: Record<string, unknown>): void;
  /** Where plugin log lines go (already truncated and rate-limited by the sandbox; redacted here). */
  log?(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string, data: Record<string, unknown>): void;
  workers?: number;
  /** Unload a plugin's sandbox after this long without calls (default 10 min). */
  idleUnloadMs?: number;
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
  private catalog: Map<string, CatalogTool> | null = null;
  private enabledById: Map<string, EnabledPlugin> | null = null;
  /** pool key by plugin id, for plugins currently loaded. */
  /** Loaded sandboxes by plugin id, with the rights they were loaded under (the pool key fingerprints them). */
  private readonly loaded = new Map<string, { key: string; rights: EffectiveRights; lastUsed: number; loading: Promise<void> }>();
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly o: PluginHostOptions) {
    this.pool = new SandboxPool({ workers: o.workers ?? 2 });
    const idle = o.idleUnloadMs ?? 10 * 60_000;
    this.idleTimer = setInterval(() => void this.unloadIdle(idle), Math.min(idle, 60_000));
    this.idleTimer.unref();
  }

  /** The effective rights behind a sandbox pool key (what the checked egress enforces), with the plugin's id. */
  rightsFor(poolKey: string): (EffectiveRights & { plugin_id: string }) | null {
    // Called on every egress request: a lookup in the loaded set, never a registry read.
    for (const [id, l] of this.loaded) if (l.key === poolKey) return { ...l.rights, plugin_id: id };
    return null;
  }

  /** A tool with its plugin's declared risks and effective rights (what policy decides on), or undefined. */
  describe(toolId: string): { entry: ToolEntry; risks: RiskFlag[]; rights: EffectiveRights } | undefined {
    const t = this.getCatalog().get(toolId);
    return t ? { entry: t.entry, risks: [...(t.plugin.manifest.risk ?? [])], rights: t.plugin.effective } : undefined;
  }

  /** Tools of enabled plugins, sorted by id. */
  tools(): Array<Omit<ToolEntry, 'postcondition'>> {
    return [...this.getCatalog().values()].map(({ entry: { postcondition: _pc, ...wire } }) => wire).sort((a, b) => (a.tool_id < b.tool_id ? -1 : 1));
  }

  /**
   * Drops the catalog and unloads sandboxes whose plugin was disabled or removed or whose
   * digest, rights or config changed; they load again on their next call. Resolves with the enabled plugins it read.
   */
  async reconcile(): Promise<EnabledPlugin[]> {
    this.dropCatalog();
    // Read fresh, not cached: a cache filled now could miss a change committed before the next poll.
    const enabled = this.o.registry.enabled();
    const wanted = new Map(enabled.map((p) => [p.record.id, this.poolKey(p)]));
    for (const [id, l] of this.loaded) {
      if (wanted.get(id) === l.key) continue;
      this.loaded.delete(id);
      await l.loading.catch(() => undefined);
      await this.pool.unload(l.key).catch(() => undefined);
    }
    return enabled;
  }

  /**
   * Checks a call before it becomes a run: the tool must be enabled and the arguments must match
   * its input schema (a request error, not a failed run).
   */
  checkCall(toolId: string, args: Record<string, unknown>): void {
    const tool = this.getCatalog().get(toolId);
    if (!tool) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`);
    if (!tool.input(args)) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: toIssues(tool.input.errors) });
    checkToolInput(toolId, tool.io.input, args);
  }

  /** Runs a tool: args checked, executed in the sandbox under its budgets, output checked, audited. */
  async invoke(toolId: string, args: Record<string, unknown>, actor: AuditActor): Promise<InvokeResult> {
    const started = performance.now();
    const tool = this.getCatalog().get(toolId);
    if (!tool) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`);
    const { entry } = tool;
    let usage: CallUsage | undefined;
    /** The log of a call that returned (already sent to the operator's log). */
    let callLogs: ReadonlyArray<PluginLogLine> = [];
    try {
      const argIssues = tool.input(args) ? [] : toIssues(tool.input.errors);
      if (argIssues.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `arguments do not match the input schema of ${toolId}`, { issues: argIssues });
      const input = toolInput(toolId, tool.io.input, args);
      const key = await this.ensureLoaded(tool.plugin);
      const res = await this.pool.call(key, tool.exportName, input);
      usage = res.usage;
      callLogs = res.logs;
      this.pluginLogs(entry, res.logs);
      const output = toolOutput(toolId, tool.io.output, res.output);
      const outIssues = tool.output(output) ? [] : toIssues(tool.output.errors);
      if (outIssues.length > 0) throw new TyrumError('TYRUM_ERR_SANDBOX_PLUGIN_ERROR', outputMismatch(toolId, res.output, output), { reason: 'plugin_error', issues: outIssues });
      const result: InvokeResult = {
        tool_id: toolId,
        output: this.o.redact(output),
        definition_hash: entry.definition_hash,
        plugin_digest: entry.plugin_digest,
        duration_ms: round(performance.now() - started),
        usage: wireUsage(res.usage),
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
        const p = this.enabledPlugin(pluginId);
        if (!p) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `plugin ${pluginId} is not enabled`);
        const key = await this.ensureLoaded(p);
        // The server's call timeout can only tighten the plugin's granted time budget.
        const res = await this.pool.call(key, exportName, input, { wallMs: Math.min(opts.timeoutMs, p.effective.time.timeout_ms) });
        this.pluginLogs({ plugin_id: pluginId, tool_id: `mcp.${serverName}` }, res.logs);
        return res.output;
      },
    });
  }

  /** Enabled plugins, read from the registry once per catalog (manifests are parsed on every read). */
  private enabled(): EnabledPlugin[] {
    this.enabledById ??= new Map(this.o.registry.enabled().map((p) => [p.record.id, p]));
    return [...this.enabledById.values()];
  }

  enabledPlugin(pluginId: string): EnabledPlugin | undefined {
    this.enabled();
    return this.enabledById!.get(pluginId);
  }

  /** Forget the catalog and its compiled schemas (ajv would otherwise keep every version). */
  private dropCatalog(): void {
    this.enabledById = null;
    if (!this.catalog) return;
    for (const t of this.catalog.values()) {
      forgetPluginSchema(t.entry.input_schema);
      forgetPluginSchema(t.entry.output_schema);
    }
    this.catalog = null;
  }

  async close(): Promise<void> {
    this.dropCatalog();
    clearInterval(this.idleTimer);
    await this.pool.close();
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
    this.o.emit?.('tool.invoked', { tool_id: entry.tool_id, ok: err === null, error_code: err?.code ?? null, duration_ms: durationMs, token_id: typeof actor.id === 'string' ? actor.id : actor.kind });
  }

  private poolKey(p: EnabledPlugin): string {
    return `${p.record.id}@${this.o.registry.fingerprint(p)}`;
  }

  private async ensureLoaded(p: EnabledPlugin): Promise<string> {
    const key = this.poolKey(p);
    const cur = this.loaded.get(p.record.id);
    if (cur && cur.key === key) {
      cur.lastUsed = Date.now();
      await cur.loading;
      return key;
    }
    if (cur) {
      this.loaded.delete(p.record.id);
      await this.pool.unload(cur.key).catch(() => undefined);
    }
    const loading = this.load(p, key);
    this.loaded.set(p.record.id, { key, rights: p.effective, lastUsed: Date.now(), loading });
    try {
      await loading;
    } catch (e) {
      this.loaded.delete(p.record.id);
      throw e;
    }
    return key;
  }

  private async load(p: EnabledPlugin, key: string): Promise<void> {
    // Files are re-read and re-verified against the pinned digests on every load (D8).
    const files = await loadInstalledPlugin(this.o.home, p.record.id, p.record.version, { manifestSha256: p.record.manifest_sha256, wasmSha256: p.record.wasm_sha256 });
    const hostApi: HostApi = {};
    if (p.effective.kv) hostApi.kv = pluginKv(this.o.store, p.record.id, p.effective.kv.quota_bytes);
    // Every plugin's http_request goes through the checked egress, granted or not: it refuses what
    // the effective rights do not name (no rules at all: `no_rights`) and audits the refusal.
    if (this.o.egress) hostApi.egress = this.o.egress;
    await this.pool.load(key, {
      wasm: files.wasmBytes,
      expectedSha256: p.record.wasm_sha256,
      exports: [...p.manifest.contributes.tools.map((t) => t.export), ...((p.manifest.contributes.mcp_servers ?? []).some((m) => m.transport === 'wasm') ? WASM_MCP_EXPORTS : [])],
      limits: { memoryPages: p.effective.memory.max_pages, wallMs: p.effective.time.timeout_ms },
      config: extismConfig(p.config),
      hostApi,
    });
  }

  private async unloadIdle(idleMs: number): Promise<void> {
    const now = Date.now();
    for (const [id, l] of this.loaded) {
      if (now - l.lastUsed < idleMs) continue;
      this.loaded.delete(id);
      await l.loading.catch(() => undefined);
      await this.pool.unload(l.key).catch(() => undefined);
    }
  }

  private getCatalog(): Map<string, CatalogTool> {
    if (this.catalog) return this.catalog;
    const catalog = new Map<string, CatalogTool>();
    for (const p of this.enabled()) {
      for (const t of p.manifest.contributes.tools) {
        const toolId = `${p.record.id}.${t.id}`;
        catalog.set(toolId, {
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
          // Schemas were screened for safety at install; compiled once per catalog build.
          input: compilePluginSchema(t.input_schema, `${toolId} input_schema`),
          output: compilePluginSchema(t.output_schema, `${toolId} output_schema`),
          io: { input: rawIo(t.input), output: rawIo(t.output) },
          plugin: p,
        });
      }
    }
    this.catalog = catalog;
    return catalog;
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
