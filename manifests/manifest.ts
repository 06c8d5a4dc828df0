/**
 * Reading a manifest's bytes into a checked {@link PluginManifest}: strict JSON, the contract,
 * then the rules a schema cannot express (semver, host-API compatibility, unique ids, declared
 * risks, safe JSON Schemas). No file system access: see source.ts for that.
 */
import semver from 'semver';
import { HOST_API_VERSION, type PluginManifest, type RiskFlag, type ToolIo } from '../schemas/index.js';
import { patternHazard } from './regex-safety.js';
import { TyrumError } from '../core/errors/index.js';
import { impliedRisks } from './capabilities.js';
import { JsonReadError, pointer, readJson } from './json.js';
import { assertSafeJsonSchema, eachSubschema, issuesText, validateManifestShape } from './json-schema.js';
import { MANIFEST_FILE, MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH } from './limits.js';

/** Options for checking a manifest. */
export interface ManifestOptions {
  /** The host API version to check `engines.tyrum` against (default: this gateway's). */
  hostApiVersion?: string;
}

/** The property marking a config field that holds a secret handle name. */
export const SECRET_FIELD_MARKER = 'x-tyrum-secret';

/** What makes each risk flag required (impliedRisks in capabilities.ts is the rule itself). */
export const RISK_IMPLIED_BY: Readonly<Record<RiskFlag, string | null>> = {
  network: 'requests.egress',
  secrets: 'requests.secrets',
  storage: 'requests.kv',
  state_changing: 'a tool with effect "state_changing"',
  destructive: null,
};

/**
 * Why `v` cannot be a plugin version, or null. Versions are canonical semver (what
 * semver.valid returns unchanged) without build metadata: `1.0.0+a` and `1.0.0+b` have the same
 * precedence, so they could not be told apart as upgrade or downgrade.
 */
export function versionProblem(v: string): string | null {
  if (typeof v === 'string' && /^[^+]*\+/.test(v) && semver.valid(v) !== null) return 'has build metadata ("+..."), which is not allowed: versions must differ in precedence';
  return typeof v === 'string' && semver.valid(v) === v ? null : 'is not a valid semantic version (expected e.g. 1.2.3)';
}

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new TyrumError('TYRUM_ERR_MANIFEST_INVALID', message, details);
}

/** A bounded, quoted rendering of a value from the manifest for an error message. */
const quote = (v: unknown) => JSON.stringify(String(v).slice(0, 80));

/** Freeze a parsed JSON value and everything in it. */
function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Parse and check manifest bytes (the content of tyrum.plugin.json). Returns the manifest,
 * deeply frozen. Throws TYRUM_ERR_MANIFEST_INVALID naming the field or cause, or
 * TYRUM_ERR_PLUGIN_INCOMPATIBLE when `engines.tyrum` excludes the host API version.
 */
/** Every wasm export the manifest names (tools and channel adapters), without repeats. */
export function manifestExports(m: PluginManifest): string[] {
  return [...new Set([...m.contributes.tools.map((t) => t.export), ...(m.contributes.channels ?? []).flatMap((c) => [c.inbound.export, c.outbound.export])])];
}

export function parseManifest(bytes: Uint8Array, opts: ManifestOptions = {}): PluginManifest {
  if (bytes.byteLength > MANIFEST_MAX_BYTES) {
    invalid(`${MANIFEST_FILE} is ${bytes.byteLength} bytes, above the ${MANIFEST_MAX_BYTES}-byte limit`, { size: bytes.byteLength, limit: MANIFEST_MAX_BYTES });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return invalid(`${MANIFEST_FILE} is not valid UTF-8`);
  }
  let value: unknown;
  try {
    value = readJson(text, { maxDepth: MANIFEST_MAX_DEPTH });
  } catch (e) {
    if (e instanceof JsonReadError) invalid(`${MANIFEST_FILE}: ${e.message}`, { line: e.line, column: e.column, path: e.pointer });
    throw e;
  }
  const issues = validateManifestShape(value);
  if (issues.length > 0) invalid(`${MANIFEST_FILE} does not match the manifest schema: ${issuesText(issues)}`, { issues });
  const manifest = value as PluginManifest;
  checkManifestRules(manifest, opts);
  return deepFreeze(manifest);
}

/**
 * The checks a schema cannot express, on a manifest that already conforms to the contract.
 * Exported for manifests built in memory (e.g. by the SDK); {@link parseManifest} runs it.
 */
export function checkManifestRules(m: PluginManifest, opts: ManifestOptions = {}): void {
  const vp = versionProblem(m.version);
  if (vp) invalid(`version: ${quote(m.version)} ${vp}`, { field: 'version' });
  const range = m.engines.tyrum;
  if (semver.validRange(range) === null) {
    invalid(`engines.tyrum: ${quote(range)} is not a valid semver range (expected e.g. ^1.0.0)`, { field: 'engines.tyrum' });
  }
  const host = opts.hostApiVersion ?? HOST_API_VERSION;
  if (!semver.satisfies(host, range)) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INCOMPATIBLE', `engines.tyrum: plugin requires host API ${range}; this gateway provides ${host}`, {
      field: 'engines.tyrum',
      required: range,
      provided: host,
    });
  }
  const segments = m.wasm.path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    invalid(`wasm.path: ${quote(m.wasm.path)} must be a plain relative path (no empty, "." or ".." segments)`, { field: 'wasm.path' });
  }

  // Tool ids of MCP servers are mcp.<server>.<tool>: a plugin named "mcp" would shadow them.
  if (m.id === 'mcp') invalid('id: "mcp" is reserved for MCP server tools (mcp.<server>.<tool>)', { field: 'id' });
  if (m.id === 'node') invalid('id: "node" is reserved for node capabilities (node.<capability>@<node>)', { field: 'id' });
  const servers = new Map<string, number>();
  (m.contributes.mcp_servers ?? []).forEach((srv, i) => {
    const prev = servers.get(srv.name);
    if (prev !== undefined) invalid(`contributes.mcp_servers[${i}].name: duplicate server name ${quote(srv.name)} (also contributes.mcp_servers[${prev}].name)`, { field: `contributes.mcp_servers[${i}].name` });
    servers.set(srv.name, i);
  });

  const channelIds = new Map<string, number>();
  (m.contributes.channels ?? []).forEach((ch, i) => {
    const prev = channelIds.get(ch.id);
    if (prev !== undefined) invalid(`contributes.channels[${i}].id: duplicate channel id ${quote(ch.id)} (also contributes.channels[${prev}].id)`, { field: `contributes.channels[${i}].id` });
    channelIds.set(ch.id, i);
    let base: URL | null = null;
    try {
      base = new URL(ch.outbound.api_base);
    } catch {
      base = null;
    }
    if (base === null || (base.protocol !== 'https:' && base.protocol !== 'http:') || base.username !== '' || base.password !== '') {
      invalid(`contributes.channels[${i}].outbound.api_base: ${quote(ch.outbound.api_base)} is not an http(s) URL without credentials`, { field: `contributes.channels[${i}].outbound.api_base` });
    }
    ch.outbound.paths.forEach((path, j) => {
      const segments = path.split('/').slice(1);
      if (segments.some((seg) => seg === '.' || seg === '..') || path.split('{{credential}}').join('').match(/[{}]/)) {
        invalid(`contributes.channels[${i}].outbound.paths[${j}]: ${quote(path)} may not have "." or ".." segments, or braces other than {{credential}}`, { field: `contributes.channels[${i}].outbound.paths[${j}]` });
      }
    });
  });

  const toolIds = new Map<string, number>();
  m.contributes.tools.forEach((tool, i) => {
    const prev = toolIds.get(tool.id);
    if (prev !== undefined) invalid(`contributes.tools[${i}].id: duplicate tool id ${quote(tool.id)} (also contributes.tools[${prev}].id)`, { field: `contributes.tools[${i}].id` });
    toolIds.set(tool.id, i);
    // A postcondition regex runs on every output: it gets the same ReDoS screen as schema patterns.
    const pc = tool.postcondition;
    if (pc) {
      const given = [pc.exists !== undefined, pc.equals !== undefined, pc.matches !== undefined].filter(Boolean).length;
      if (given !== 1) invalid(`contributes.tools[${i}].postcondition: give exactly one of exists, equals or matches`, { field: `contributes.tools[${i}].postcondition` });
      const hazard = pc.matches !== undefined ? patternHazard(pc.matches) : null;
      if (hazard) invalid(`contributes.tools[${i}].postcondition.matches ${hazard}`, { field: `contributes.tools[${i}].postcondition.matches` });
    }
  });
  const secretNames = new Map<string, number>();
  (m.requests?.secrets ?? []).forEach((s, i) => {
    const prev = secretNames.get(s.name);
    if (prev !== undefined) invalid(`requests.secrets[${i}].name: duplicate secret ${quote(s.name)} (also requests.secrets[${prev}])`, { field: `requests.secrets[${i}].name` });
    secretNames.set(s.name, i);
  });
  const targets = new Map<string, number>();
  (m.requests?.egress ?? []).forEach((r, i) => {
    const scheme = r.scheme ?? 'https';
    const key = `${scheme}://${r.host.toLowerCase()}:${r.port ?? (scheme === 'https' ? 443 : 80)}`;
    const prev = targets.get(key);
    if (prev !== undefined) invalid(`requests.egress[${i}]: duplicate destination ${key} (also requests.egress[${prev}]; list all methods in one rule)`, { field: `requests.egress[${i}]` });
    targets.set(key, i);
  });

  const declared = m.risk ?? [];
  for (const flag of impliedRisks(m)) {
    if (!declared.includes(flag)) {
      const why = RISK_IMPLIED_BY[flag] ?? 'what the plugin requests';
      invalid(`risk: must declare ${quote(flag)} (implied by ${why}); risks are shown to the operator, who must accept each one`, { field: 'risk', missing: flag });
    }
  }

  m.contributes.tools.forEach((tool, i) => {
    const label = `contributes.tools[${i}].input_schema`;
    assertSafeJsonSchema(tool.input_schema, label);
    // Tool arguments are a JSON object on every transport (the protocol, MCP's tools/call).
    if (tool.input_schema.type !== 'object') invalid(`${label}: must have "type": "object" (tool arguments are a JSON object)`, { field: label });
    assertSafeJsonSchema(tool.output_schema, `contributes.tools[${i}].output_schema`);
    if (tool.input) checkToolIo(tool.input, tool.input_schema, `contributes.tools[${i}]`, 'input');
    if (tool.output) checkToolIo(tool.output, tool.output_schema, `contributes.tools[${i}]`, 'output');
  });
  if (m.config_schema !== undefined) checkConfigSchema(m.config_schema);
}

/**
 * A tool's `input` or `output` encoding: "text" and "bytes" name the string property of the
 * schema that carries the raw bytes (for input, a required one: the export always gets it).
 */
function checkToolIo(io: ToolIo, schema: Record<string, unknown>, at: string, which: 'input' | 'output'): void {
  const label = `${at}.${which}.field`;
  if (io.encoding === 'json') {
    if (io.field !== undefined) invalid(`${label}: only allowed with encoding "text" or "bytes"`, { field: label });
    return;
  }
  if (io.field === undefined) invalid(`${label}: required with encoding "${io.encoding}" (the string property that carries the raw bytes)`, { field: label });
  const props = schema.properties;
  const prop = typeof props === 'object' && props !== null && Object.hasOwn(props, io.field) ? (props as Record<string, unknown>)[io.field] : undefined;
  if (typeof prop !== 'object' || prop === null || (prop as Record<string, unknown>).type !== 'string') {
    invalid(`${label}: ${quote(io.field)} is not a declared string property of ${at}.${which}_schema (give it "type": "string" under "properties")`, { field: label });
  }
  if (which === 'input' && !(Array.isArray(schema.required) && schema.required.includes(io.field))) {
    invalid(`${label}: ${quote(io.field)} must be listed in ${at}.input_schema's "required" (the export always receives it)`, { field: label });
  }
}

function checkConfigSchema(schema: Record<string, unknown>): void {
  const label = 'config_schema';
  assertSafeJsonSchema(schema, label);
  if (schema.type !== 'object') invalid(`${label}: must have "type": "object" at the root (a config is a JSON object)`, { field: label });
  eachSubschema(schema, (node, at) => {
    if (!Object.hasOwn(node, SECRET_FIELD_MARKER)) return;
    const where = pointer([...at, SECRET_FIELD_MARKER]);
    const mark = node[SECRET_FIELD_MARKER];
    if (typeof mark !== 'boolean') invalid(`${label}: ${SECRET_FIELD_MARKER} at ${where} must be true or false`, { field: label, at: where });
    if (!mark) return;
    // Only properties reachable through "properties" from the root: that is where
    // validatePluginConfig looks for handle names (never inside combinators or arrays).
    const plain = at.length > 0 && at.every((k, i) => (i % 2 === 0 ? k === 'properties' : true));
    if (!plain) invalid(`${label}: ${SECRET_FIELD_MARKER} at ${where} is only allowed on a property reached through "properties" from the root`, { field: label, at: where });
    if (node.type !== 'string') {
      invalid(`${label}: secret field at ${pointer(at)} must have "type": "string" (it holds the name of a secret handle, never a value)`, { field: label, at: pointer(at) });
    }
  });
}
