/**
 * JSON Schema handling for plugins, on ajv instances separate from the wire contracts'
 * (core/protocol/validate.ts): plugin schemas are third-party input, compiled with options chosen
 * for that (no `$data`, no remote references, no formats, no async), and must never share a
 * cache or a schema-id namespace with the gateway's own contracts.
 *
 * - {@link validateManifestShape}: the manifest against its TypeBox contract, every issue listed.
 * - {@link assertSafeJsonSchema}: the H2 screen for a schema a plugin (or an MCP server) supplies:
 *   size, depth, local `$ref`s only, no `$id`/`$async`, patterns screened for catastrophic
 *   backtracking, bounded `$ref`/combinator expansion, no quadratic `uniqueItems`, and it must
 *   compile.
 * - {@link compilePluginSchema}: a cached validator for a screened schema (tool args and outputs).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { PluginManifest } from '../schemas/index.js';
import { TyrumError } from '../core/errors/index.js';
import { plainJsonProblem, pointer, pointerToken } from './json.js';
import { patternHazard } from './regex-safety.js';
import { MAX_LISTED_ISSUES, SCHEMA_MAX_BYTES, SCHEMA_MAX_DEPTH, SCHEMA_MAX_EXPANSION, SCHEMA_MAX_UNIQUE_ITEMS } from './limits.js';

/** One schema violation: a JSON pointer into the checked value and what is wrong there. */
export interface SchemaIssue {
  path: string;
  message: string;
}

/**
 * Ajv options shared by every instance that runs plugin-supplied schemas. `strict: false` lets
 * authors use annotations ajv does not know (`x-*`, `examples`); `validateFormats: false` makes
 * `format` an annotation (no format validators are bundled, and an unknown format must not make
 * a schema fail to compile); `$data` stays off so a schema cannot take constraints from the data.
 */
const PLUGIN_AJV_OPTIONS = {
  strict: false,
  logger: false,
  $data: false,
  coerceTypes: false,
  removeAdditional: false,
  validateFormats: false,
  allErrors: false,
} as const;

/** Validates tool arguments and outputs: never changes the data. */
const runtimeAjv = new Ajv({ ...PLUGIN_AJV_OPTIONS, useDefaults: false });
/** Validates plugin configuration: fills in schema defaults (on a copy the caller owns). */
const configAjv = new Ajv({ ...PLUGIN_AJV_OPTIONS, useDefaults: true, allErrors: true });

/**
 * The manifest contract: every issue reported, so an author fixes them in one pass (the input is
 * capped at MANIFEST_MAX_BYTES, which bounds the extra work). The contract is ours, so it is not
 * itself checked against the meta-schema (that costs more than the compile).
 */
const manifestAjv = new Ajv({ allErrors: true, verbose: true, strict: true, validateSchema: false, coerceTypes: false, useDefaults: false, removeAdditional: false, validateFormats: true });

let manifestValidator: ValidateFunction | null = null;

/**
 * Compiles the manifest contract and each instance's meta-schema: tens of milliseconds of
 * event-loop time, which a gateway spends at start (runtime.ts) rather than on its first install.
 * Otherwise it happens on first use, so a CLI command that reads no manifest never pays for it.
 */
export function prepareSchemaValidators(): ValidateFunction {
  if (manifestValidator === null) {
    manifestValidator = manifestAjv.compile(PluginManifest);
    runtimeAjv.validateSchema({});
    configAjv.validateSchema({});
  }
  return manifestValidator;
}

/** Render ajv errors as issues: unions of constants collapsed to one line, capped in number. */
export function toIssues(errors: readonly ErrorObject[] | null | undefined): SchemaIssue[] {
  const list = errors ?? [];
  // A union of literals fails as one error per branch plus the anyOf itself; say it once.
  const enums = list.filter(
    (e) => e.keyword === 'anyOf' && Array.isArray(e.schema) && (e.schema as unknown[]).every((s) => typeof s === 'object' && s !== null && 'const' in s),
  );
  const hidden = (e: ErrorObject) => enums.some((a) => a !== e && e.instancePath === a.instancePath && e.schemaPath.startsWith(a.schemaPath.replace(/\/anyOf$/, '') + '/anyOf/'));
  const out: SchemaIssue[] = [];
  const seen = new Set<string>();
  for (const e of list) {
    if (hidden(e)) continue;
    let path = e.instancePath === '' ? '/' : e.instancePath;
    let message: string;
    if (enums.includes(e)) {
      const values = (e.schema as Array<{ const: unknown }>).map((s) => JSON.stringify(s.const));
      message = `must be equal to one of the allowed values (${values.join(', ')})`;
    } else if (e.keyword === 'required') {
      const missing = String((e.params as { missingProperty?: string }).missingProperty);
      path = e.instancePath + '/' + pointerToken(missing);
      message = 'required field is missing';
    } else if (e.keyword === 'additionalProperties') {
      // Unknown keys are third-party input: quote a bounded prefix only.
      message = `unknown key ${JSON.stringify(String((e.params as { additionalProperty?: string }).additionalProperty).slice(0, 64))}`;
    } else message = e.message ?? e.keyword;
    const k = `${path}: ${message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push({ path, message });
    }
  }
  return out;
}

/** Issues as one line: "path: message; path: message (and N more)". */
export function issuesText(issues: readonly SchemaIssue[]): string {
  const shown = issues.slice(0, MAX_LISTED_ISSUES).map((i) => `${i.path}: ${i.message}`);
  const more = issues.length - shown.length;
  return shown.join('; ') + (more > 0 ? `; and ${more} more` : '');
}

/** Check a parsed manifest against the PluginManifest contract; empty when it conforms. */
export function validateManifestShape(value: unknown): SchemaIssue[] {
  const validator = prepareSchemaValidators();
  return validator(value) ? [] : toIssues(validator.errors);
}

function unsafe(label: string, message: string, at?: string): never {
  throw new TyrumError('TYRUM_ERR_MANIFEST_INVALID', `${label}: ${message}`, { field: label, ...(at === undefined ? {} : { at }) });
}

/** Keywords whose value is a subschema. */
const SUBSCHEMA = ['additionalItems', 'additionalProperties', 'contains', 'propertyNames', 'not', 'if', 'then', 'else', 'unevaluatedItems', 'unevaluatedProperties'];
/** Keywords whose value is an array of subschemas. */
const SUBSCHEMA_ARRAYS = ['allOf', 'anyOf', 'oneOf', 'prefixItems'];
/** Keywords whose value maps names to subschemas. */
const SUBSCHEMA_MAPS = ['properties', 'patternProperties', 'definitions', '$defs', 'dependencies', 'dependentSchemas'];
const DRAFT07 = /^http:\/\/json-schema\.org\/draft-07\/schema#?$/;

/** Visit every subschema of `schema` (depth already bounded by the caller) with its pointer. */
export function eachSubschema(schema: unknown, visit: (node: Record<string, unknown>, at: (string | number)[]) => void, at: (string | number)[] = []): void {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return;
  const node = schema as Record<string, unknown>;
  visit(node, at);
  for (const k of SUBSCHEMA) if (Object.hasOwn(node, k)) eachSubschema(node[k], visit, [...at, k]);
  for (const k of SUBSCHEMA_ARRAYS) {
    const v = node[k];
    if (Object.hasOwn(node, k) && Array.isArray(v)) v.forEach((s, i) => eachSubschema(s, visit, [...at, k, i]));
  }
  for (const k of SUBSCHEMA_MAPS) {
    const v = node[k];
    if (!Object.hasOwn(node, k) || typeof v !== 'object' || v === null || Array.isArray(v)) continue;
    for (const [name, s] of Object.entries(v)) eachSubschema(s, visit, [...at, k, name]);
  }
  const items = node.items;
  if (Object.hasOwn(node, 'items')) {
    if (Array.isArray(items)) items.forEach((s, i) => eachSubschema(s, visit, [...at, 'items', i]));
    else eachSubschema(items, visit, [...at, 'items']);
  }
}

/** Applicators whose subschemas apply to the same value (they do not descend into the data). */
const SAME_VALUE = ['allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else', 'dependencies', 'dependentSchemas', '$ref'];
const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null']);

/** The node a local `$ref` ("#" or "#/a/b") points to, or undefined. */
function resolveLocal(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    let token: string;
    try {
      token = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return undefined;
    }
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, token)) return undefined;
    node = (node as Record<string, unknown>)[token];
  }
  return node;
}

/**
 * How many subschemas validating one value can evaluate, following `$ref`s and same-value
 * applicators (allOf, anyOf, ...). A chain of `allOf: [{$ref: a1}, {$ref: a1}]` doubles at each
 * step, so a few hundred bytes can demand 2^30 evaluations per call; a `$ref` cycle that never
 * descends into the data never ends. Refuses both, naming where.
 */
function checkExpansion(root: Record<string, unknown>, label: string): void {
  const cost = new Map<object, number>();
  const active = new Set<object>();
  const visit = (node: unknown, at: string): number => {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return 1;
    const hit = cost.get(node);
    if (hit !== undefined) return hit;
    if (active.has(node)) unsafe(label, `$ref cycle at ${at} applies a schema to the same value without descending into it (endless validation)`, at);
    active.add(node);
    const n = node as Record<string, unknown>;
    let total = 1;
    for (const k of SAME_VALUE) {
      if (!Object.hasOwn(n, k)) continue;
      const v = n[k];
      const here = `${at === '/' ? '' : at}/${k}`;
      if (k === '$ref') {
        if (typeof v === 'string') total += visit(resolveLocal(root, v), here);
      } else if (Array.isArray(v)) {
        v.forEach((s, i) => (total += visit(s, `${here}/${i}`)));
      } else if (k === 'dependencies' || k === 'dependentSchemas') {
        if (typeof v === 'object' && v !== null) for (const [name, s] of Object.entries(v)) if (!Array.isArray(s)) total += visit(s, `${here}/${name}`);
      } else total += visit(v, here);
      if (total > SCHEMA_MAX_EXPANSION) {
        unsafe(label, `schema at ${at} expands to more than ${SCHEMA_MAX_EXPANSION} subschemas per value through $ref and combinators`, at);
      }
    }
    active.delete(node);
    cost.set(node, total);
    return total;
  };
  eachSubschema(root, (node, at) => void visit(node, pointer(at) || '/'));
}

/**
 * Refuse a JSON Schema a plugin or external server supplies unless it is safe to compile and to
 * run on every call (TESTPLAN H2). Throws TYRUM_ERR_MANIFEST_INVALID whose message starts with
 * `label` and names the location, e.g.
 * `contributes.tools[1].input_schema: pattern at /properties/q/pattern has nested quantifiers`.
 * Every check is bounded by the size and depth caps, which are checked first.
 */
export function assertSafeJsonSchema(schema: unknown, label: string): void {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) unsafe(label, 'must be a JSON Schema object');
  const shape = plainJsonProblem(schema, SCHEMA_MAX_DEPTH);
  if (shape) unsafe(label, `schema ${shape.message} at ${shape.pointer || '/'}`, shape.pointer);
  const size = Buffer.byteLength(JSON.stringify(schema));
  if (size > SCHEMA_MAX_BYTES) unsafe(label, `schema is ${size} bytes serialized, above the ${SCHEMA_MAX_BYTES}-byte limit`);

  eachSubschema(schema, (node, at) => {
    const where = (...k: (string | number)[]) => pointer([...at, ...k]);
    if (Object.hasOwn(node, '$ref')) {
      const ref = node.$ref;
      if (typeof ref !== 'string' || !(ref === '#' || ref.startsWith('#/'))) {
        unsafe(label, `$ref at ${where('$ref')} is not local (only "#/..." references are allowed; schemas are never fetched)`, where('$ref'));
      }
    }
    // An $id would register the schema under a global name in ajv (two plugins could collide)
    // and re-base its $refs; plugin schemas have no use for one.
    if (Object.hasOwn(node, '$id')) unsafe(label, `$id at ${where('$id')} is not allowed (plugin schemas are self-contained)`, where('$id'));
    if (Object.hasOwn(node, '$async')) unsafe(label, `$async at ${where('$async')} is not allowed`);
    if (Object.hasOwn(node, '$schema') && (typeof node.$schema !== 'string' || !DRAFT07.test(node.$schema))) {
      unsafe(label, `$schema at ${where('$schema')} must be the draft-07 URI (http://json-schema.org/draft-07/schema#)`);
    }
    if (Object.hasOwn(node, 'pattern') && typeof node.pattern === 'string') {
      const h = patternHazard(node.pattern);
      if (h) unsafe(label, `pattern at ${where('pattern')} ${h}`, where('pattern'));
    }
    if (node.uniqueItems === true) {
      // Ajv compares non-scalar items pairwise: quadratic in the array length at call time.
      const items = node.items as Record<string, unknown> | undefined;
      const scalar = typeof items === 'object' && items !== null && !Array.isArray(items) && typeof items.type === 'string' && SCALAR_TYPES.has(items.type);
      const max = typeof node.maxItems === 'number' ? node.maxItems : Infinity;
      if (!scalar && max > SCHEMA_MAX_UNIQUE_ITEMS) {
        unsafe(label, `uniqueItems at ${where('uniqueItems')} needs "maxItems" of at most ${SCHEMA_MAX_UNIQUE_ITEMS} unless "items" has a scalar "type" (pairwise comparison is quadratic)`, where('uniqueItems'));
      }
    }
    const pp = node.patternProperties;
    if (Object.hasOwn(node, 'patternProperties') && typeof pp === 'object' && pp !== null) {
      for (const key of Object.keys(pp)) {
        const h = patternHazard(key);
        if (h) unsafe(label, `patternProperties key at ${where('patternProperties', key)} ${h}`, where('patternProperties', key));
      }
    }
  });

  checkExpansion(schema as Record<string, unknown>, label);

  try {
    runtimeAjv.compile(schema as object);
  } catch (e) {
    unsafe(label, `schema does not compile: ${(e as Error).message.slice(0, 300)}`);
  } finally {
    runtimeAjv.removeSchema(schema as object);
  }
}

/**
 * Compiled validators, keyed by the schema's JSON text, not its object: a manifest read again
 * (each sandbox start, each config check) is a new object with the same schema, and ajv keeps
 * every object it compiled in a Map of its own, so keying by identity grew ajv without bound.
 * Keyed by content, each distinct schema is compiled, and held, once.
 */
const runtimeCache = new Map<string, { fn: ValidateFunction; compiled: object }>();
const configCache = new Map<string, { fn: ValidateFunction; compiled: object }>();

/**
 * A validator for a plugin-supplied schema (tool input or output), screened with
 * {@link assertSafeJsonSchema} on first use and cached per schema content. The validator never
 * changes the data; on failure, {@link toIssues}(fn.errors) lists what is wrong.
 */
export function compilePluginSchema(schema: Record<string, unknown>, label = 'schema'): ValidateFunction {
  const key = JSON.stringify(schema);
  let hit = runtimeCache.get(key);
  if (!hit) {
    assertSafeJsonSchema(schema, label);
    // ajv keeps the object it compiles: give it a copy of its own, so the caller's stays collectable.
    const compiled = JSON.parse(key) as object;
    hit = { fn: runtimeAjv.compile(compiled), compiled };
    runtimeCache.set(key, hit);
  }
  return hit.fn;
}

/**
 * A validator that fills defaults into the config it checks (callers pass a copy they own).
 * `prepare` derives the schema actually compiled from the plugin's (see manifests/config.ts);
 * both are cached per original schema content.
 */
export function compileConfigSchema(schema: Record<string, unknown>, label: string, prepare: (s: Record<string, unknown>) => Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  let hit = configCache.get(key);
  if (!hit) {
    assertSafeJsonSchema(schema, label);
    const compiled = prepare(JSON.parse(key) as Record<string, unknown>);
    hit = { fn: configAjv.compile(compiled), compiled };
    configCache.set(key, hit);
  }
  return hit.fn;
}

/**
 * Drop the compiled validators of `schema` (by content). Call it when the plugin that supplied
 * the schema is removed or replaced; another plugin with the same schema compiles it again.
 */
export function forgetPluginSchema(schema: object): void {
  const key = JSON.stringify(schema);
  const run = runtimeCache.get(key);
  if (run) runtimeAjv.removeSchema(run.compiled);
  runtimeCache.delete(key);
  const hit = configCache.get(key);
  if (hit) configAjv.removeSchema(hit.compiled);
  configCache.delete(key);
}

/** How many distinct schemas are compiled now (tests: the caches must not grow with re-reads). */
export function compiledSchemaCount(): { runtime: number; config: number } {
  return { runtime: runtimeCache.size, config: configCache.size };
}
