/**
 * The MCP server registry: which servers exist, whether an operator approved them, and for
 * every tool the definition it last listed next to the one an operator approved (pinned by the
 * sha256 of its RFC 8785 canonical JSON: name, title, description, both schemas, annotations,
 * everything the server sent). Used by the CLI on the database directly and by the gateway.
 *
 * Rules (MCPProxy-style quarantine, TESTPLAN H1/H2):
 * - a new server is quarantined; nothing of it is served until `approve`;
 * - a tool is served only while its observed hash equals its approved hash; a changed
 *   definition (rug pull) hides it until re-approved, and `diff` shows what changed;
 * - a definition whose schemas fail the hostile-schema screen is refused at registration and
 *   can't be approved; the screen runs tool by tool, yielding to the event loop in between.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { McpServerSpec, MCP_SERVER_NAME_PATTERN, type McpServerContribution } from '../../schemas/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { validate } from '../protocol/validate.js';
import { parseTemplate } from '../egress/templates.js';
import { destinationAllows, originLabel, urlOrigin, type SecretOrigin } from '../secrets/destination.js';
import { assertSafeJsonSchema } from '../../manifests/index.js';
import type { Store, McpServerRow, McpToolRow } from '../store/index.js';
import type { AuditLog, AuditActor } from '../audit/index.js';
import { MCP_TOOL_NAME_RE, type McpToolDefinition } from './types.js';
import type { ResolvedSpec } from './client.js';
import type { EffectiveRights } from '../../manifests/capabilities.js';

/** Largest single tool definition accepted, serialized (description and schemas included). */
export const MAX_DEFINITION_BYTES = 128 * 1024;
const SERVER_NAME_RE = new RegExp(MCP_SERVER_NAME_PATTERN);

export type McpToolStatus = 'approved' | 'pending' | 'changed' | 'refused' | 'removed';

export interface McpToolView {
  tool_id: string;
  name: string;
  status: McpToolStatus;
  effect: 'read_only' | 'state_changing';
  observed_hash: string | null;
  approved_hash: string | null;
  refused: string | null;
  /** The server's own hints, shown to operators; policy never uses them. */
  hints: Record<string, unknown> | null;
  description: string;
}

export interface McpServerView {
  name: string;
  origin: string;
  description: string;
  state: McpServerRow['state'];
  transport: McpServerSpec['transport'];
  spec: McpServerSpec;
  spec_digest: string;
  created_at: number;
  approved_at: number | null;
  approved_by: string | null;
  health: Record<string, unknown> | null;
  tools: Record<McpToolStatus, number>;
}

export interface McpToolDiff {
  tool_id: string;
  name: string;
  status: McpToolStatus;
  refused: string | null;
  /** The approved definition (null if never approved). */
  approved: McpToolDefinition | null;
  /** The definition the server lists now (null if it stopped listing it). */
  observed: McpToolDefinition | null;
  /** Top-level fields that differ, with both values. */
  fields: Array<{ field: string; approved: unknown; observed: unknown }>;
}

/** A tool the gateway may serve right now. */
export interface ServedMcpTool {
  tool_id: string;
  server: string;
  name: string;
  definition: McpToolDefinition;
  definition_hash: string;
  effect: 'read_only' | 'state_changing';
  spec_digest: string;
  /** What policy can match on for this server (see {@link mcpRights}). */
  rights: Pick<EffectiveRights, 'egress' | 'secrets'>;
}

export interface ObserveSummary {
  added: string[];
  changed: string[];
  removed: string[];
  refused: Array<{ name: string; reason: string }>;
}

export interface SecretSource {
  has(name: string): boolean;
  reveal(name: string): Buffer;
  destinations(name: string): string[];
}

export interface McpRegistryOptions {
  store: Store;
  audit: AuditLog;
  secrets: SecretSource;
  home: string;
  now?: () => number;
  /** The environment variables `inherit_env` may pass through (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Called after this process changed servers or approvals (the running gateway reconciles). */
  onChange?: () => void;
}

/** sha256 of the canonical JSON of a whole tool definition. */
export function mcpDefinitionHash(def: McpToolDefinition): string {
  return createHash('sha256').update(canonicalJson(def)).digest('hex');
}

export function mcpToolId(server: string, tool: string): string {
  return `mcp.${server}.${tool}`;
}

/** Splits `mcp.<server>.<tool>`; null when `toolId` is not an MCP tool id. */
export function parseMcpToolId(toolId: string): { server: string; tool: string } | null {
  if (!toolId.startsWith('mcp.')) return null;
  const rest = toolId.slice(4);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) return null;
  return { server: rest.slice(0, dot), tool: rest.slice(dot + 1) };
}

/** sha256 of the canonical spec: what an operator approves when approving a server. */
export function specDigest(spec: McpServerSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}

/**
 * A copy of an MCP schema that the gateway's draft-07 validator can compile: MCP schemas
 * default to JSON Schema 2020-12 and often say so in `$schema`; the keywords tool schemas use
 * (type, properties, required, enum, items, $defs with local $ref, ...) mean the same in both.
 */
export function validatorSchema(schema: Record<string, unknown>): Record<string, unknown> {
  if (typeof schema.$schema === 'string' && /json-schema\.org\/(draft\/2020-12|draft\/2019-09)\/schema/.test(schema.$schema)) {
    const { $schema: _drop, ...rest } = schema;
    return rest;
  }
  return schema;
}

/**
 * Screens one listed definition; returns why it is refused, or null. Bounded work: the size
 * and depth caps are checked before anything walks the schema.
 */
export function screenDefinition(def: McpToolDefinition): string | null {
  const named = toolNameProblem(def.name);
  if (named) return named;
  const shape = shapeProblem(def);
  if (shape) return shape;
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(def));
  } catch {
    return 'definition is not serializable';
  }
  if (size > MAX_DEFINITION_BYTES) return `definition is ${size} bytes serialized, above the ${MAX_DEFINITION_BYTES}-byte limit`;
  try {
    assertSafeJsonSchema(validatorSchema(def.inputSchema), 'inputSchema');
    if (def.outputSchema !== undefined) assertSafeJsonSchema(validatorSchema(def.outputSchema), 'outputSchema');
  } catch (e) {
    if (isTyrumError(e)) return e.message;
    throw e;
  }
  return null;
}

/** Why a listed tool name is unusable (it becomes part of the tool id), or null. */
function toolNameProblem(name: unknown): string | null {
  return typeof name === 'string' && MCP_TOOL_NAME_RE.test(name) ? null : `tool name ${JSON.stringify(String(name).slice(0, 80))} is not allowed (1-128 of A-Z a-z 0-9 _ . -)`;
}

/** Deepest nesting and most values a definition may have before anything recursive touches it. */
const MAX_DEFINITION_DEPTH = 64;
const MAX_DEFINITION_NODES = 100_000;

/** An iterative walk (no recursion, so no stack overflow on hostile nesting), bounded by the caps. */
function shapeProblem(def: unknown): string | null {
  const stack: Array<[unknown, number]> = [[def, 0]];
  let nodes = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (++nodes > MAX_DEFINITION_NODES) return `definition has more than ${MAX_DEFINITION_NODES} values`;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_DEFINITION_DEPTH) return `definition is nested deeper than ${MAX_DEFINITION_DEPTH} levels`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return null;
}

/** The values of a spec that may hold `{{secret:NAME}}` handles, with where they are. */
function templatedValues(spec: McpServerSpec): Array<readonly [string, string]> {
  if (spec.transport === 'stdio') return Object.entries(spec.env ?? {}).map(([k, v]) => [`env.${k}`, v] as const);
  if (spec.transport === 'streamable_http') return Object.entries(spec.headers ?? {}).map(([k, v]) => [`headers.${k}`, v] as const);
  return [];
}

/**
 * What policy can match on for a server's tools: an HTTP server's origin as egress, and the
 * secret handles its spec uses (bound to that origin; a stdio server's have no destination).
 */
export function mcpRights(spec: McpServerSpec): Pick<EffectiveRights, 'egress' | 'secrets'> {
  const names = [...new Set(templatedValues(spec).flatMap(([, v]) => {
    const parsed = parseTemplate(v);
    return parsed.ok ? parsed.secrets : [];
  }))];
  if (spec.transport !== 'streamable_http') return { egress: [], secrets: names.map((n) => ({ name: n, destinations: [] })) };
  const o = serverOrigin(spec.url);
  // A bare-host destination means https on port 443, so any other origin is named in full.
  const destination = o.scheme === 'https' && o.port === 443 ? o.host : originLabel(o);
  return {
    egress: [{ host: o.host, port: o.port, scheme: o.scheme, methods: ['POST', 'GET', 'DELETE'] }],
    secrets: names.map((n) => ({ name: n, destinations: [destination] })),
  };
}

/** The origin of a Streamable HTTP server's url (http or https, by the spec's contract). */
function serverOrigin(url: string): SecretOrigin {
  const o = urlOrigin(new URL(url));
  if (o === null) throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `url: ${JSON.stringify(url.slice(0, 100))} is not an http(s) URL`);
  return o;
}

function statusOf(t: McpToolRow): McpToolStatus {
  if (t.observed === null) return 'removed';
  if (t.refused !== null) return 'refused';
  if (t.approved_hash === null) return 'pending';
  return t.approved_hash === t.observed_hash ? 'approved' : 'changed';
}

export class McpRegistry {
  private readonly now: () => number;

  constructor(private readonly o: McpRegistryOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Declares an operator server; it starts quarantined. */
  async add(input: { name: string; spec: unknown; description?: string }, actor: AuditActor): Promise<McpServerView> {
    const spec = this.checkSpec(input.name, input.spec, 'operator');
    if (this.o.store.mcp.getServer(input.name)) throw new TyrumError('TYRUM_ERR_CONFLICT', `an MCP server named ${input.name} already exists (remove it first)`);
    const at = this.now();
    this.o.store.mcp.insertServer({ name: input.name, origin: 'operator', description: input.description ?? '', spec: canonicalJson(spec), spec_digest: specDigest(spec), state: 'quarantined', created_at: at, updated_at: at });
    await this.o.audit.append('mcp.server_added', actor, { server: input.name, origin: 'operator', transport: spec.transport, spec_digest: specDigest(spec) });
    this.o.onChange?.();
    return this.get(input.name);
  }

  /**
   * Makes the registry match the MCP servers that enabled plugins declare: a new declaration is
   * added quarantined; a changed one goes back to quarantine. Declarations that clash with an
   * existing server of another origin are skipped and reported.
   */
  syncPluginServers(plugins: ReadonlyArray<{ id: string; servers: readonly McpServerContribution[] }>): Array<{ plugin: string; server: string; problem: string }> {
    const problems: Array<{ plugin: string; server: string; problem: string }> = [];
    for (const p of plugins) {
      for (const c of p.servers) {
        const { name, description, ...spec } = c;
        const origin = `plugin:${p.id}`;
        const row = this.o.store.mcp.getServer(name);
        if (row && row.origin !== origin) {
          problems.push({ plugin: p.id, server: name, problem: `the name is taken by ${row.origin}` });
          continue;
        }
        const digest = specDigest(spec as McpServerSpec);
        const at = this.now();
        if (!row) {
          this.o.store.mcp.insertServer({ name, origin, description: description ?? '', spec: canonicalJson(spec), spec_digest: digest, state: 'quarantined', created_at: at, updated_at: at });
          void this.o.audit.append('mcp.server_added', { kind: 'plugin', id: p.id }, { server: name, origin, transport: spec.transport, spec_digest: digest }).catch(() => undefined);
        } else if (row.spec_digest !== digest) {
          this.o.store.mcp.replaceSpec(name, canonicalJson(spec), digest, description ?? '', at);
          void this.o.audit.append('mcp.server_changed', { kind: 'plugin', id: p.id }, { server: name, origin, spec_digest: digest, previous_digest: row.spec_digest }).catch(() => undefined);
        }
      }
    }
    return problems;
  }

  async remove(name: string, actor: AuditActor): Promise<void> {
    const row = this.row(name);
    if (row.origin !== 'operator') throw new TyrumError('TYRUM_ERR_INVALID_STATE', `MCP server ${name} comes from ${row.origin}; disable or remove that plugin instead`);
    this.o.store.mcp.removeServer(name);
    await this.o.audit.append('mcp.server_removed', actor, { server: name, spec_digest: row.spec_digest });
    this.o.onChange?.();
  }

  get(name: string): McpServerView {
    return this.view(this.row(name));
  }

  list(): McpServerView[] {
    return this.o.store.mcp.listServers().map((r) => this.view(r));
  }

  tools(name: string): McpToolView[] {
    this.row(name);
    return this.o.store.mcp.tools(name).map((t) => {
      const def = t.observed ? (JSON.parse(t.observed) as McpToolDefinition) : t.approved ? (JSON.parse(t.approved) as McpToolDefinition) : null;
      return {
        tool_id: mcpToolId(name, t.name),
        name: t.name,
        status: statusOf(t),
        effect: t.effect,
        observed_hash: t.observed_hash,
        approved_hash: t.approved_hash,
        refused: t.refused,
        hints: (def?.annotations as Record<string, unknown> | undefined) ?? null,
        description: typeof def?.description === 'string' ? def.description : '',
      };
    });
  }

  /** What an operator must review: every tool that is not (still) approved, with both definitions. */
  diff(name: string, opts: { all?: boolean } = {}): McpToolDiff[] {
    this.row(name);
    const out: McpToolDiff[] = [];
    for (const t of this.o.store.mcp.tools(name)) {
      const status = statusOf(t);
      if (status === 'approved' && !opts.all) continue;
      const approved = t.approved ? (JSON.parse(t.approved) as McpToolDefinition) : null;
      const observed = t.observed ? (JSON.parse(t.observed) as McpToolDefinition) : null;
      const keys = [...new Set([...Object.keys(approved ?? {}), ...Object.keys(observed ?? {})])].sort();
      const fields = keys
        .filter((k) => canonicalJson(approved?.[k] ?? null) !== canonicalJson(observed?.[k] ?? null))
        .map((k) => ({ field: k, approved: approved?.[k] ?? null, observed: observed?.[k] ?? null }));
      out.push({ tool_id: mcpToolId(name, t.name), name: t.name, status, refused: t.refused, approved, observed, fields });
    }
    return out;
  }

  /**
   * Approves the server and pins the definitions it lists now: every listed tool, or only
   * `tools`. Effects default to state_changing (each call needs an approval under the default
   * policy); `readOnly` names tools the operator vouches have no side effect. Refused tools
   * cannot be approved.
   */
  async approve(name: string, opts: { tools?: readonly string[]; readOnly?: readonly string[] }, actor: AuditActor): Promise<{ approved: Array<{ tool_id: string; definition_hash: string; effect: string }>; skipped: Array<{ name: string; reason: string }> }> {
    const row = this.row(name);
    const rows = this.o.store.mcp.tools(name);
    const byName = new Map(rows.map((t) => [t.name, t]));
    for (const n of [...(opts.tools ?? []), ...(opts.readOnly ?? [])]) {
      if (!byName.has(n)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `MCP server ${name} lists no tool ${n}`);
    }
    const wanted = opts.tools && opts.tools.length > 0 ? new Set(opts.tools) : null;
    const readOnly = new Set(opts.readOnly ?? []);
    const approved: Array<{ tool_id: string; definition_hash: string; effect: string }> = [];
    const skipped: Array<{ name: string; reason: string }> = [];
    const at = this.now();
    const by = actorLabel(actor);
    this.o.store.tx(() => {
      this.o.store.mcp.setState(name, 'approved', at, by);
      for (const t of rows) {
        if (wanted && !wanted.has(t.name)) continue;
        if (t.observed === null) {
          if (wanted) skipped.push({ name: t.name, reason: 'the server no longer lists it' });
          continue;
        }
        if (t.refused !== null) {
          skipped.push({ name: t.name, reason: `refused: ${t.refused}` });
          continue;
        }
        const effect = readOnly.has(t.name) ? 'read_only' : 'state_changing';
        this.o.store.mcp.approveTool(name, t.name, effect, at, by);
        approved.push({ tool_id: mcpToolId(name, t.name), definition_hash: t.observed_hash!, effect });
      }
    });
    await this.o.audit.append('mcp.approved', actor, { server: name, spec_digest: row.spec_digest, tools: approved, skipped });
    this.o.onChange?.();
    return { approved, skipped };
  }

  /**
   * Records what a server lists now. Definitions are screened one at a time with a yield to the
   * event loop in between, so a server listing many large schemas never stalls the gateway.
   */
  async observe(name: string, defs: readonly McpToolDefinition[]): Promise<ObserveSummary> {
    this.row(name);
    const before = new Map(this.o.store.mcp.tools(name).map((t) => [t.name, t]));
    const seen: Array<{ name: string; observed: string; observed_hash: string; refused: string | null }> = [];
    const summary: ObserveSummary = { added: [], changed: [], removed: [], refused: [] };
    const names = new Set<string>();
    for (const def of defs) {
      await new Promise((r) => setImmediate(r));
      // A tool without a usable name can't even be recorded (the name is its key).
      const badName = toolNameProblem(def.name);
      if (badName) {
        summary.refused.push({ name: String(def.name).slice(0, 128), reason: badName });
        continue;
      }
      const toolName = def.name;
      if (names.has(toolName)) {
        summary.refused.push({ name: toolName, reason: 'the server lists this name twice' });
        continue;
      }
      names.add(toolName);
      // Canonical form only for a shape that is safe to walk recursively (else a plain hash).
      const canonical = shapeProblem(def) === null ? canonicalJson(def) : null;
      const hash = createHash('sha256').update(canonical ?? safeStringify(def)).digest('hex');
      const prev = before.get(toolName);
      const fresh = !prev || prev.observed === null || prev.observed_hash !== hash;
      // An unchanged definition keeps its verdict: relisting does not screen (and compile) again.
      const refusedWhy = fresh ? screenDefinition(def) : prev.refused;
      // A refused definition is stored by hash only, never in full (it may be megabytes).
      const text = refusedWhy === null && canonical !== null ? canonical : canonicalJson({ name: toolName, refused: true });
      seen.push({ name: toolName, observed: text, observed_hash: hash, refused: refusedWhy });
      if (refusedWhy !== null && fresh) summary.refused.push({ name: toolName, reason: refusedWhy });
      if (!prev || prev.observed === null) summary.added.push(toolName);
      else if (prev.observed_hash !== hash) summary.changed.push(toolName);
    }
    for (const [n, t] of before) if (!names.has(n) && t.observed !== null) summary.removed.push(n);
    // Re-listing an unchanged server writes nothing.
    if (summary.added.length + summary.changed.length + summary.removed.length > 0) this.o.store.tx(() => this.o.store.mcp.observe(name, seen, this.now()));
    const rugPulls = summary.changed.filter((n) => before.get(n)?.approved_hash !== null && before.get(n)?.approved_hash !== undefined);
    if (summary.added.length + summary.changed.length + summary.removed.length + summary.refused.length > 0) {
      await this.o.audit.append('mcp.tools_observed', { kind: 'mcp_server', server: name }, { server: name, ...summary, quarantined: rugPulls });
    }
    return summary;
  }

  /** Every tool that may be served now: approved server (and, for a plugin's, enabled plugin), pinned hash matching. */
  served(activePlugins: ReadonlySet<string>): ServedMcpTool[] {
    const servers = new Map(this.o.store.mcp.listServers().map((s) => [s.name, s]));
    const rights = new Map<string, ServedMcpTool['rights']>();
    const out: ServedMcpTool[] = [];
    for (const t of this.o.store.mcp.allTools()) {
      const s = servers.get(t.server);
      if (!s || s.state !== 'approved' || !this.originActive(s, activePlugins)) continue;
      if (statusOf(t) !== 'approved') continue;
      if (!rights.has(s.name)) rights.set(s.name, mcpRights(JSON.parse(s.spec) as McpServerSpec));
      out.push({ tool_id: mcpToolId(t.server, t.name), server: t.server, name: t.name, definition: JSON.parse(t.approved!) as McpToolDefinition, definition_hash: t.approved_hash!, effect: t.effect, spec_digest: s.spec_digest, rights: rights.get(s.name)! });
    }
    return out;
  }

  /**
   * Why a tool the gateway knows of is not served: quarantined (its server not approved yet, the
   * tool new and not approved, or its definition changed since approval — a rug pull) or refused
   * at registration. Null when no active server lists such a tool (then it is simply not found)
   * or when it is served.
   */
  unavailable(toolId: string, activePlugins: ReadonlySet<string>): TyrumError | null {
    const id = parseMcpToolId(toolId);
    if (!id) return null;
    const s = this.o.store.mcp.getServer(id.server);
    if (!s || s.state === 'disabled' || !this.originActive(s, activePlugins)) return null;
    const t = this.o.store.mcp.tools(id.server).find((x) => x.name === id.tool);
    if (!t) return null;
    const status = statusOf(t);
    const review = `review it with \`tyrum mcp diff ${id.server}\` and approve it with \`tyrum mcp approve ${id.server} --tool ${id.tool}\``;
    const details = { tool_id: toolId, server: id.server, status };
    if (status === 'removed') return null;
    if (status === 'refused') return new TyrumError('TYRUM_ERR_MCP_SCHEMA_REFUSED', `MCP tool ${toolId} was refused at registration: ${t.refused}`, details);
    if (s.state === 'quarantined') return new TyrumError('TYRUM_ERR_MCP_QUARANTINED', `MCP tool ${toolId} is quarantined: server ${id.server} is not approved yet; ${review.replace(` --tool ${id.tool}`, '')}`, details);
    if (status === 'changed') return new TyrumError('TYRUM_ERR_MCP_QUARANTINED', `MCP tool ${toolId} is quarantined: its definition changed since it was approved; ${review}`, details);
    if (status === 'pending') return new TyrumError('TYRUM_ERR_MCP_QUARANTINED', `MCP tool ${toolId} is quarantined: it is new and not approved yet; ${review}`, details);
    return null;
  }

  /** Servers that should be running: not disabled, and for a plugin's, its plugin enabled. */
  runnable(activePlugins: ReadonlySet<string>): McpServerRow[] {
    return this.o.store.mcp.listServers().filter((s) => s.state !== 'disabled' && this.originActive(s, activePlugins));
  }

  recordHealth(name: string, health: Record<string, unknown>): void {
    if (!this.o.store.mcp.getServer(name)) return;
    this.o.store.mcp.setHealth(name, JSON.stringify({ ...health, at: this.now() }));
  }

  /**
   * The spec with secrets filled in, for starting a stdio server or reaching an HTTP one.
   * `pluginSecrets` (a plugin's server) limits which handles may be used to those granted.
   */
  resolve(row: McpServerRow, pluginSecrets: ReadonlySet<string> | null): ResolvedSpec {
    const spec = JSON.parse(row.spec) as McpServerSpec;
    const fill = (value: string, where: string, origin: SecretOrigin | null): string => {
      const parsed = parseTemplate(value);
      if (!parsed.ok) throw new TyrumError('TYRUM_ERR_INVALID_CONFIG', `${where}: ${parsed.problem}`);
      return parsed.parts
        .map((p) => {
          if ('text' in p) return p.text;
          if (pluginSecrets && !pluginSecrets.has(p.secret)) throw new TyrumError('TYRUM_ERR_SANDBOX_DENIED', `${where}: secret ${p.secret} is not granted to ${row.origin}`);
          if (!this.o.secrets.has(p.secret)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `${where}: secret ${p.secret} does not exist (tyrum secret set ${p.secret})`);
          const dests = this.o.secrets.destinations(p.secret);
          if (origin !== null && dests.length > 0 && !dests.some((d) => destinationAllows(d, origin))) {
            throw new TyrumError('TYRUM_ERR_SANDBOX_DENIED', `${where}: secret ${p.secret} may not be sent to ${originLabel(origin)}`);
          }
          return this.o.secrets.reveal(p.secret).toString('utf8');
        })
        .join('');
    };
    if (spec.transport === 'stdio') {
      const dir = join(this.o.home, 'mcp', row.name);
      mkdirSync(join(dir, 'tmp'), { recursive: true, mode: 0o700 });
      const base = this.o.env ?? process.env;
      const env: Record<string, string> = { PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: dir, TMPDIR: join(dir, 'tmp') };
      for (const n of spec.inherit_env ?? []) {
        if (/^TYRUM/i.test(n)) continue;
        const v = base[n];
        if (v !== undefined) env[n] = v;
      }
      for (const [k, v] of Object.entries(spec.env ?? {})) env[k] = fill(v, `env.${k}`, null);
      return { transport: 'stdio', command: spec.command, args: [...(spec.args ?? [])], env, cwd: dir };
    }
    if (spec.transport === 'streamable_http') {
      // A header secret goes only to its bound origins (a bare-host binding is https on port 443).
      const origin = serverOrigin(spec.url);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(spec.headers ?? {})) headers[k] = fill(v, `headers.${k}`, origin);
      return { transport: 'streamable_http', url: spec.url, headers };
    }
    throw new TyrumError('TYRUM_ERR_INVALID_STATE', `MCP server ${row.name} runs inside its plugin's sandbox`);
  }

  /** Validates a declared spec: contract shape, well-formed secret templates that name existing secrets. */
  checkSpec(name: string, raw: unknown, origin: string): McpServerSpec {
    if (!SERVER_NAME_RE.test(name)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `MCP server name ${JSON.stringify(name.slice(0, 60))} is not allowed (${MCP_SERVER_NAME_PATTERN})`);
    const issues = validate(McpServerSpec, raw);
    if (issues.length > 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `MCP server spec is invalid: ${issues.map((i) => `${i.path || '/'} ${i.message}`).join('; ')}`, { issues });
    const spec = raw as McpServerSpec;
    if (spec.transport === 'wasm' && origin === 'operator') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a wasm MCP server is declared by its plugin manifest, not added by hand');
    for (const [where, v] of templatedValues(spec)) {
      const parsed = parseTemplate(v);
      if (!parsed.ok) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${where}: ${parsed.problem}`);
      for (const s of parsed.secrets) if (!this.o.secrets.has(s)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `${where}: secret ${s} does not exist (set it first: tyrum secret set ${s})`);
    }
    if (spec.transport === 'stdio') {
      const bad = (spec.inherit_env ?? []).find((n) => /^TYRUM/i.test(n));
      if (bad) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `inherit_env: ${bad} is the gateway's own configuration and is never passed to a server`);
    }
    if (spec.transport === 'streamable_http') {
      const u = new URL(spec.url);
      if (u.username || u.password) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'url: credentials in the URL are not allowed; use a header with a secret handle');
    }
    return spec;
  }

  private originActive(s: McpServerRow, activePlugins: ReadonlySet<string>): boolean {
    return s.origin === 'operator' || (s.origin.startsWith('plugin:') && activePlugins.has(s.origin.slice(7)));
  }

  private row(name: string): McpServerRow {
    const r = this.o.store.mcp.getServer(name);
    if (!r) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no MCP server named ${name}`);
    return r;
  }

  private view(r: McpServerRow): McpServerView {
    const counts: Record<McpToolStatus, number> = { approved: 0, pending: 0, changed: 0, refused: 0, removed: 0 };
    for (const t of this.o.store.mcp.tools(r.name)) counts[statusOf(t)]++;
    const spec = JSON.parse(r.spec) as McpServerSpec;
    return {
      name: r.name,
      origin: r.origin,
      description: r.description,
      state: r.state,
      transport: spec.transport,
      spec,
      spec_digest: r.spec_digest,
      created_at: r.created_at,
      approved_at: r.approved_at,
      approved_by: r.approved_by,
      health: r.health ? (JSON.parse(r.health) as Record<string, unknown>) : null,
      tools: counts,
    };
  }
}

function actorLabel(actor: AuditActor): string {
  if (actor.kind === 'token') return `token:${String(actor.id)}`;
  return `${actor.kind}${actor.user !== undefined ? `:${String(actor.user)}` : ''}`;
}

function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null';
  } catch {
    return 'unserializable';
  }
}
