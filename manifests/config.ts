/**
 * A plugin's configuration, checked against its manifest's `config_schema`: defaults applied,
 * unknown keys refused, and secret fields holding only the name of a secret handle that exists
 * and is granted to the plugin. Error messages name fields and handles, never a value.
 */
import type { PluginManifest } from '../schemas/index.js';
import { SECRET_NAME_PATTERN } from '../schemas/index.js';
import { TyrumError } from '../core/errors/index.js';
import { plainJsonProblem, pointer } from './json.js';
import { compileConfigSchema, issuesText, toIssues } from './json-schema.js';
import { CONFIG_MAX_BYTES, SCHEMA_MAX_DEPTH } from './limits.js';
import { SECRET_FIELD_MARKER } from './manifest.js';

/** What config validation needs to know about secret handles. */
export interface SecretLookup {
  /** True when a secret handle of this name exists on the gateway. */
  secretExists(name: string): boolean;
  /** True when the operator granted this handle to the plugin (its effective rights). */
  secretGranted(name: string): boolean;
}

const SECRET_NAME = new RegExp(SECRET_NAME_PATTERN);

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new TyrumError('TYRUM_ERR_PLUGIN_CONFIG_INVALID', message, details);
}

/**
 * The schema actually compiled: the plugin's, with `additionalProperties: false` at the root when
 * the author left it unspecified (unknown top-level keys are refused even then). An explicit
 * `additionalProperties` or `patternProperties` is the author's decision and is kept.
 */
function closed(schema: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(schema);
  if (!Object.hasOwn(copy, 'additionalProperties') && !Object.hasOwn(copy, 'patternProperties')) copy.additionalProperties = false;
  return copy;
}

/** Secret-marked properties reachable through `properties` from the root, as key paths. */
function secretFields(schema: Record<string, unknown>, at: string[] = [], out: string[][] = []): string[][] {
  const props = schema.properties;
  if (typeof props !== 'object' || props === null || Array.isArray(props)) return out;
  for (const [key, sub] of Object.entries(props as Record<string, unknown>)) {
    if (typeof sub !== 'object' || sub === null) continue;
    const s = sub as Record<string, unknown>;
    if (s[SECRET_FIELD_MARKER] === true) out.push([...at, key]);
    else secretFields(s, [...at, key], out);
  }
  return out;
}

/**
 * Check `config` against `manifest.config_schema` and return a copy with the schema's defaults
 * filled in (the input is never modified). Without a config_schema only `{}` is accepted.
 * Throws TYRUM_ERR_PLUGIN_CONFIG_INVALID naming the field (and, for secret fields, the handle
 * when it is a known one; a string that names no handle is never echoed: it may be a value).
 */
export function validatePluginConfig(manifest: Pick<PluginManifest, 'id' | 'config_schema' | 'requests'>, config: unknown, secrets: SecretLookup): Record<string, unknown> {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) invalid(`config for ${manifest.id} must be a JSON object`);
  const shape = plainJsonProblem(config, SCHEMA_MAX_DEPTH);
  if (shape) invalid(`config ${shape.pointer || '/'}: ${shape.message}`, { path: shape.pointer });
  const text = JSON.stringify(config);
  if (Buffer.byteLength(text) > CONFIG_MAX_BYTES) invalid(`config for ${manifest.id} is larger than ${CONFIG_MAX_BYTES} bytes`);
  const copy = JSON.parse(text) as Record<string, unknown>;

  const schema = manifest.config_schema;
  if (schema === undefined) {
    const keys = Object.keys(copy);
    if (keys.length > 0) invalid(`config: ${manifest.id} declares no config_schema, so only {} is accepted (unknown key ${JSON.stringify(keys[0]?.slice(0, 64))})`, { path: '/' + keys[0] });
    return copy;
  }

  const validate = compileConfigSchema(schema, 'config_schema', closed);
  if (!validate(copy)) {
    const issues = toIssues(validate.errors);
    invalid(`config for ${manifest.id} is invalid: ${issuesText(issues)}`, { issues });
  }

  const requested = new Set((manifest.requests?.secrets ?? []).map((s) => s.name));
  for (const path of secretFields(schema)) {
    let v: unknown = copy;
    for (const k of path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined;
    if (v === undefined) continue;
    const field = pointer(path);
    if (typeof v !== 'string' || !SECRET_NAME.test(v)) {
      invalid(`config ${field}: a secret field takes the name of a secret handle (e.g. GITHUB_TOKEN), never a value`, { path: field });
    }
    if (!secrets.secretExists(v)) {
      invalid(`config ${field}: no secret handle by that name exists (create it with \`tyrum secret set <NAME>\`)`, { path: field });
    }
    if (!requested.has(v)) invalid(`config ${field}: secret handle ${v} is not among the secrets ${manifest.id} requests`, { path: field, handle: v });
    if (!secrets.secretGranted(v)) invalid(`config ${field}: secret handle ${v} is not granted to ${manifest.id}`, { path: field, handle: v });
  }
  return copy;
}
