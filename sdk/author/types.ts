/**
 * Type generation for plugin authors (`tyrum plugin types`) and for the gateway's own contracts.
 *
 * From a plugin's manifest:
 * - TypeScript declarations (json-schema-to-typescript) for the config (`PluginConfig`) and for each
 *   tool's input and output (`<Tool>Input`, `<Tool>Output`, PascalCase of the tool id), plus a
 *   `Tools` map from tool id to both;
 * - AssemblyScript classes for the same shapes with `parse<Shape>(json)` / `serialize<Shape>(value)`
 *   functions over the JSON runtime of the AssemblyScript PDK (sdk/pdk/assemblyscript/json.ts), and
 *   `readPluginConfig()` reading the config through Extism's config_get. They cover the common JSON
 *   Schema subset (objects with properties of string, number, integer, boolean, arrays of those and
 *   nested objects); any other construct is refused with its location, never approximated.
 *
 * The gateway's public contracts (schemas/index.ts CONTRACTS) are published the same way, as
 * sdk/types/contracts.d.ts, by scripts/gen-schemas.ts through {@link contractTypes}.
 *
 * This is the only module that imports json-schema-to-typescript. Output is deterministic: fixed
 * banners, no timestamps, schema order preserved.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { compile, type JSONSchema } from 'json-schema-to-typescript';
import { TyrumError } from '../../core/errors/index.js';
import { packageInfo } from '../../core/util/package-info.js';
import { parseManifest } from '../../manifests/manifest.js';
import { eachSubschema } from '../../manifests/json-schema.js';
import { pointer } from '../../manifests/json.js';
import { MANIFEST_FILE } from '../../manifests/limits.js';
import type { PluginManifest } from '../../schemas/index.js';

type Schema = Record<string, unknown>;

/** Where `tyrum plugin types` writes by default, relative to the plugin folder. */
export const DTS_FILE = join('types', 'tyrum.d.ts');
export const ASSEMBLY_DIR = 'assembly';
export const ASSEMBLY_TYPES_FILE = 'tyrum-types.ts';
/** The JSON runtime copied beside the AssemblyScript helpers (unless --pdk names the PDK). */
export const ASSEMBLY_RUNTIME_FILE = 'tyrum-json.ts';
/** The AssemblyScript PDK in this package. */
export const PDK_ASSEMBLYSCRIPT_DIR = join('sdk', 'pdk', 'assemblyscript');

/** The name of the config type in both languages. */
export const CONFIG_TYPE = 'PluginConfig';

/**
 * The config_schema as the plugin sees its config: unknown top-level keys are refused unless the
 * schema sets additionalProperties or patternProperties itself (manifests/config.ts), and defaults
 * are applied, so a top-level property with a default is always present.
 */
export function configView(schema: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(schema);
  if (!Object.hasOwn(copy, 'additionalProperties') && !Object.hasOwn(copy, 'patternProperties')) copy.additionalProperties = false;
  const props = copy.properties;
  if (typeof props === 'object' && props !== null && !Array.isArray(props)) {
    const required = Array.isArray(copy.required) ? [...(copy.required as unknown[])] : [];
    for (const [key, sub] of Object.entries(props)) {
      if (typeof sub === 'object' && sub !== null && Object.hasOwn(sub, 'default') && !required.includes(key)) required.push(key);
    }
    if (required.length > 0) copy.required = required;
  }
  return copy;
}

// --- names ------------------------------------------------------------------------------------------

/** PascalCase of an id or key: `add_note` → `AddNote`, `op.tool.call` → `OpToolCall`. */
export function pascalCase(id: string): string {
  const words = id.split(/[^A-Za-z0-9]+/).filter((w) => w.length > 0);
  const s = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  if (s.length === 0) return 'Field';
  return /^[0-9]/.test(s) ? `T${s}` : s;
}

/** The TypeScript / AssemblyScript type names of a tool's input and output. */
export function toolTypeNames(toolId: string): { input: string; output: string } {
  const p = pascalCase(toolId);
  return { input: `${p}Input`, output: `${p}Output` };
}

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new TyrumError('TYRUM_ERR_MANIFEST_INVALID', message, details);
}

// --- TypeScript (json-schema-to-typescript) -----------------------------------------------------------

const TS_BANNER = '/* eslint-disable */';

/**
 * Prepare a copy of `schema` for json-schema-to-typescript: the root is named `name`; nested titles
 * and definitions get `name` as a prefix, so that types from different schemas never collide in one
 * file; a secret-handle field says so in its comment.
 */
function forTypeScript(schema: Schema, name: string): Schema {
  const copy = structuredClone(schema);
  eachSubschema(copy, (node, at) => {
    if (at.length === 0) return;
    const parent = at[at.length - 2];
    const key = at[at.length - 1];
    if (typeof node.title === 'string') node.title = `${name}${pascalCase(node.title)}`;
    else if ((parent === 'definitions' || parent === '$defs') && typeof key === 'string') node.title = `${name}${pascalCase(key)}`;
    if (node['x-tyrum-secret'] === true) {
      const note = 'The name of a secret handle (x-tyrum-secret), never its value.';
      node.description = typeof node.description === 'string' ? `${node.description}\n\n${note}` : note;
    }
  });
  delete copy.$schema;
  delete copy.$id;
  copy.title = name;
  return copy;
}

async function compileTs(schema: Schema, name: string, label: string): Promise<string> {
  try {
    const ts = await compile(forTypeScript(schema, name) as JSONSchema, name, {
      bannerComment: '',
      additionalProperties: true,
      declareExternallyReferenced: true,
      enableConstEnums: true,
      format: true,
      ignoreMinAndMaxItems: true,
      strictIndexSignatures: false,
      unknownAny: true,
      unreachableDefinitions: false,
      $refOptions: { resolve: { external: false } },
    });
    return ts.trim();
  } catch (e) {
    return invalid(`${label}: json-schema-to-typescript could not compile the schema: ${(e as Error).message || String(e)}`, { field: label });
  }
}

/** Names a TypeScript text exports, in order. */
function exportedNames(ts: string): string[] {
  return [...ts.matchAll(/^export (?:declare )?(?:const enum|enum|interface|type) ([A-Za-z_$][A-Za-z0-9_$]*)/gm)].map((m) => m[1]!);
}

function refuseDuplicates(parts: { label: string; ts: string }[], extra: string[] = []): void {
  const seen = new Map<string, string>();
  for (const name of extra) seen.set(name, 'the generated Tools map');
  for (const p of parts) {
    for (const name of exportedNames(p.ts)) {
      const prev = seen.get(name);
      if (prev !== undefined && prev !== p.label) invalid(`${p.label}: generates a type named ${name}, as does ${prev}; rename a tool or a schema title`, { type: name });
      seen.set(name, p.label);
    }
  }
}

/** A `/** ... *\/` comment body line, safe to embed. */
function commentText(s: string): string {
  return s.replace(/\*\//g, '*\\/');
}

/**
 * TypeScript declarations for a plugin: `PluginConfig` (when the manifest has a config_schema),
 * `<Tool>Input` and `<Tool>Output` for each tool, and the `Tools` map.
 */
export async function manifestTypeScript(manifest: PluginManifest): Promise<string> {
  const parts: { label: string; ts: string }[] = [];
  if (manifest.config_schema !== undefined) {
    parts.push({ label: 'config_schema', ts: await compileTs(configView(manifest.config_schema), CONFIG_TYPE, 'config_schema') });
  }
  const tools = manifest.contributes.tools;
  for (const [i, tool] of tools.entries()) {
    const names = toolTypeNames(tool.id);
    const inLabel = `contributes.tools[${i}].input_schema (tool "${tool.id}")`;
    const outLabel = `contributes.tools[${i}].output_schema (tool "${tool.id}")`;
    parts.push({ label: inLabel, ts: await compileTs(tool.input_schema, names.input, inLabel) });
    parts.push({ label: outLabel, ts: await compileTs(tool.output_schema, names.output, outLabel) });
  }
  refuseDuplicates(parts, ['Tools', 'ToolId']);

  const map = [
    `/** The tools of plugin "${manifest.id}" by id: each one's input (arguments) and output (result). */`,
    'export interface Tools {',
    ...tools.flatMap((t) => {
      const n = toolTypeNames(t.id);
      return [`  /** ${commentText(t.description.split('\n')[0] ?? '')} */`, `  ${t.id}: { input: ${n.input}; output: ${n.output} };`];
    }),
    '}',
    '',
    '/** A tool id of this plugin. */',
    'export type ToolId = keyof Tools;',
  ].join('\n');

  return [
    TS_BANNER,
    `// Generated by \`tyrum plugin types\` from ${MANIFEST_FILE} (plugin "${manifest.id}" ${manifest.version}); do not edit.`,
    '// Types of the plugin\'s config and of each tool\'s input and output, from their JSON Schemas. PluginConfig is',
    '// the config as the plugin receives it: top-level defaults applied (such a property is always present).',
    '',
    ...parts.map((p) => `${p.ts}\n`),
    map,
    '',
  ].join('\n');
}

/** Type names that would shadow TypeScript's globals in a consumer's scope. */
const GLOBAL_TYPE_NAMES = new Set(['Array', 'Boolean', 'Date', 'Error', 'Function', 'Map', 'Number', 'Object', 'Promise', 'Record', 'Set', 'String', 'Symbol']);

/** The TypeScript name of contract `name` in sdk/types/contracts.d.ts: `op.tool.call.payload` → `OpToolCallPayload`. */
export function contractTypeName(name: string): string {
  const p = pascalCase(name);
  return GLOBAL_TYPE_NAMES.has(p) ? `${p}Contract` : p;
}

/**
 * sdk/types/contracts.d.ts: one declaration per published contract (JSON Schema documents as
 * schemas/json/<name>.json holds them), and a `Contracts` map from contract name to type.
 */
export async function contractTypes(documents: Readonly<Record<string, Schema>>, source = 'schemas/index.ts'): Promise<string> {
  const names = Object.keys(documents).sort();
  const parts: { label: string; ts: string }[] = [];
  for (const name of names) parts.push({ label: `contract ${name}`, ts: await compileTs(documents[name]!, contractTypeName(name), `contract ${name}`) });
  refuseDuplicates(parts, ['Contracts', 'ContractName']);
  return [
    TS_BANNER,
    `// Generated by \`npm run gen\` from ${source} (CONTRACTS) with json-schema-to-typescript; do not edit.`,
    '// TypeScript types of the gateway\'s public contracts: the protocol envelopes, every operation\'s payload and',
    '// result, events, the plugin manifest and grant, the gateway config and the policy bundle. The JSON Schemas',
    '// themselves are schemas/json/<name>.json, also served by the gateway at GET /contracts/<name>.json.',
    '',
    ...parts.map((p) => `${p.ts}\n`),
    '/** Every contract\'s type by contract name (schemas/json/<name>.json). */',
    'export interface Contracts {',
    ...names.map((n) => `  ${JSON.stringify(n)}: ${contractTypeName(n)};`),
    '}',
    '',
    '/** A published contract name. */',
    'export type ContractName = keyof Contracts;',
    '',
  ].join('\n');
}

// --- AssemblyScript: the model -------------------------------------------------------------------------

type AsType =
  | { kind: 'string' }
  | { kind: 'integer' }
  | { kind: 'number' }
  | { kind: 'boolean' }
  | { kind: 'array'; items: AsType }
  | { kind: 'object'; cls: AsClass };

interface AsField {
  /** The property name in JSON. */
  json: string;
  /** The field name in AssemblyScript. */
  ident: string;
  /** For optional number, integer and boolean fields: the presence flag. */
  flag: string | null;
  type: AsType;
  required: boolean;
  /** An AssemblyScript literal for the schema's default, when it has a usable one. */
  init: string | null;
  doc: string | null;
}

interface AsClass {
  name: string;
  fields: AsField[];
  /** additionalProperties: false: parsing refuses other keys. */
  closed: boolean;
  doc: string | null;
}

const SUPPORTED_TEXT =
  'the AssemblyScript helpers support objects with "properties" of type string, number, integer or boolean, arrays of those and nested objects';

/** Keywords accepted on any supported node (annotations, or checked by the gateway only). */
const COMMON_KEYWORDS = new Set(['type', 'title', 'description', '$comment', 'default', 'examples', 'readOnly', 'writeOnly', 'deprecated', '$schema', 'definitions', '$defs', 'enum', 'x-tyrum-secret']);
const KEYWORDS_BY_TYPE: Record<string, Set<string>> = {
  string: new Set(['minLength', 'maxLength', 'pattern', 'format', 'contentMediaType', 'contentEncoding']),
  integer: new Set(['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']),
  number: new Set(['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']),
  boolean: new Set(),
  array: new Set(['items', 'minItems', 'maxItems', 'uniqueItems']),
  object: new Set(['properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties']),
};

/** Names that cannot be AssemblyScript class fields (measured with asc 0.28). */
const RESERVED_FIELDS = new Set(['abstract', 'accessor', 'constructor', 'declare', 'override', 'private', 'protected', 'prototype', 'public', 'readonly', 'static', '__proto__']);

function fieldIdent(key: string): string {
  let id = key.replace(/[^A-Za-z0-9_]/g, '_');
  if (id.length === 0 || /^[0-9]/.test(id)) id = `_${id}`;
  if (RESERVED_FIELDS.has(id)) id = `${id}_`;
  return id;
}

function asLiteral(type: AsType, v: unknown): string | null {
  switch (type.kind) {
    case 'string':
      return typeof v === 'string' ? JSON.stringify(v).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029') : null;
    case 'boolean':
      return typeof v === 'boolean' ? String(v) : null;
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : null;
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? (/^-?\d+$/.test(String(v)) ? `${v}.0` : String(v)) : null;
    default:
      return null; // array and object defaults: the field starts empty (null when optional)
  }
}

class AsModel {
  readonly classes: AsClass[] = [];
  private readonly classNames = new Set<string>();

  constructor(private readonly label: string) {}

  private refuse(at: (string | number)[], what: string, keyword?: string): never {
    const where = pointer(at) || '/ (the root)';
    return invalid(`${this.label}: ${where} ${what}; ${SUPPORTED_TEXT} (use --no-assembly to generate only the TypeScript types)`, {
      field: this.label.split(' ')[0],
      at: pointer(at) || '/',
      ...(keyword === undefined ? {} : { keyword }),
    });
  }

  private className(wanted: string): string {
    let name = wanted;
    for (let i = 2; this.classNames.has(name); i++) name = `${wanted}${i}`;
    this.classNames.add(name);
    return name;
  }

  reserve(name: string): void {
    this.classNames.add(name);
  }

  /** The root of a shape: it must be an object. */
  root(schema: Schema, name: string): AsClass {
    if (schema.type !== 'object') this.refuse([], `has type ${JSON.stringify(schema.type ?? null)}, not "object" (the helpers map a schema's root to a class)`);
    const t = this.type(schema, [], name);
    if (t.kind !== 'object') throw new Error('unreachable');
    return t.cls;
  }

  private type(schema: unknown, at: (string | number)[], name: string): AsType {
    if (!isObject(schema)) return this.refuse(at, schema === true ? 'is the schema true (any value)' : 'is not a schema object');
    const type = schema.type;
    if (type === undefined) {
      const keyword = ['$ref', 'oneOf', 'anyOf', 'allOf', 'not', 'if', 'const', 'enum'].find((k) => Object.hasOwn(schema, k));
      if (keyword !== undefined) this.refuse([...at, keyword], `uses "${keyword}"`, keyword);
      this.refuse(at, 'has no "type" (any JSON value)');
    }
    if (Array.isArray(type)) this.refuse([...at, 'type'], `has a list of types ${JSON.stringify(type)} (a union)`, 'type');
    if (typeof type !== 'string' || !Object.hasOwn(KEYWORDS_BY_TYPE, type)) this.refuse([...at, 'type'], `has type ${JSON.stringify(type)}`, 'type');
    const allowed = KEYWORDS_BY_TYPE[type]!;
    for (const k of Object.keys(schema)) {
      if (COMMON_KEYWORDS.has(k) || allowed.has(k)) continue;
      this.refuse([...at, k], `uses "${k}"${Object.keys(KEYWORDS_BY_TYPE).some((t) => KEYWORDS_BY_TYPE[t]!.has(k)) ? ` on a value of type "${type}"` : ''}`, k);
    }
    if (Object.hasOwn(schema, 'enum')) {
      const values = schema.enum;
      const fits = (v: unknown) =>
        type === 'string' ? typeof v === 'string' : type === 'boolean' ? typeof v === 'boolean' : type === 'integer' ? Number.isInteger(v) : type === 'number' ? typeof v === 'number' : false;
      if (!Array.isArray(values) || !values.every(fits)) this.refuse([...at, 'enum'], `has an "enum" with values that are not all of type "${type}"`, 'enum');
    }
    switch (type) {
      case 'string':
      case 'integer':
      case 'number':
      case 'boolean':
        return { kind: type };
      case 'array': {
        const items = schema.items;
        if (items === undefined) this.refuse(at, 'is an array without "items" (items of any type)', 'items');
        if (Array.isArray(items)) this.refuse([...at, 'items'], 'is a tuple ("items" is a list)', 'items');
        return { kind: 'array', items: this.type(items, [...at, 'items'], `${name}Item`) };
      }
      default:
        return { kind: 'object', cls: this.object(schema, at, name) };
    }
  }

  private object(schema: Schema, at: (string | number)[], wanted: string): AsClass {
    const props = schema.properties;
    const additional = schema.additionalProperties;
    if (additional !== undefined && typeof additional !== 'boolean') {
      this.refuse([...at, 'additionalProperties'], 'has "additionalProperties" with a schema (a map)', 'additionalProperties');
    }
    if (props === undefined && additional !== false) this.refuse(at, 'is an object without "properties" (a free-form map)', 'properties');
    if (props !== undefined && !isObject(props)) this.refuse([...at, 'properties'], 'has "properties" that is not an object');
    const required = schema.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) this.refuse([...at, 'required'], 'has "required" that is not a list of names');
    const propMap = (props ?? {}) as Schema;
    for (const r of required as string[]) {
      if (!Object.hasOwn(propMap, r)) this.refuse([...at, 'required'], `requires ${JSON.stringify(r)}, which is not in "properties"`, 'required');
    }
    const cls: AsClass = { name: this.className(wanted), fields: [], closed: additional === false, doc: docOf(schema) };
    this.classes.push(cls);
    const idents = new Set<string>();
    const unique = (id: string) => {
      let u = id;
      while (idents.has(u)) u = `${u}_`;
      idents.add(u);
      return u;
    };
    const entries = Object.entries(propMap);
    // Field names first (in order), then the presence flags, so that a flag never takes a property's name.
    const identsByKey = new Map(entries.map(([key]) => [key, unique(fieldIdent(key))]));
    for (const [key, sub] of entries) {
      const type = this.type(sub, [...at, 'properties', key], `${cls.name}${pascalCase(key)}`);
      const isRequired = (required as string[]).includes(key);
      const scalar = type.kind === 'integer' || type.kind === 'number' || type.kind === 'boolean';
      const ident = identsByKey.get(key)!;
      const def = isObject(sub) && Object.hasOwn(sub, 'default') ? asLiteral(type, sub.default) : null;
      cls.fields.push({ json: key, ident, flag: !isRequired && scalar ? `has_${ident}` : null, type, required: isRequired, init: def, doc: isObject(sub) ? docOf(sub) : null });
    }
    for (const f of cls.fields) if (f.flag !== null) f.flag = unique(f.flag);
    return cls;
  }
}

function docOf(schema: Schema): string | null {
  const parts: string[] = [];
  if (typeof schema.description === 'string' && schema.description.trim().length > 0) parts.push(schema.description.trim());
  else if (typeof schema.title === 'string' && schema.title.trim().length > 0) parts.push(schema.title.trim());
  if (schema['x-tyrum-secret'] === true) parts.push('The name of a secret handle (x-tyrum-secret), never its value.');
  if (Array.isArray(schema.enum)) parts.push(`One of: ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}.`);
  return parts.length > 0 ? parts.join(' ') : null;
}

// --- AssemblyScript: emitting ---------------------------------------------------------------------------

function asTypeName(t: AsType): string {
  switch (t.kind) {
    case 'string':
      return 'string';
    case 'integer':
      return 'i64';
    case 'number':
      return 'f64';
    case 'boolean':
      return 'bool';
    case 'array':
      return `Array<${asTypeName(t.items)}>`;
    default:
      return t.cls.name;
  }
}

/** A function-name-safe spelling of a type: `Array<Array<i64>>` → `Array_Array_i64`. */
function typeKey(t: AsType): string {
  return asTypeName(t).replace(/[<>]/g, '_').replace(/_+/g, '_').replace(/_$/, '');
}

function fieldDefault(f: AsField): string {
  if (f.init !== null) return f.init;
  switch (f.type.kind) {
    case 'string':
      return f.required ? '""' : 'null';
    case 'integer':
      return '0';
    case 'number':
      return '0.0';
    case 'boolean':
      return 'false';
    case 'array':
      return f.required ? `new ${asTypeName(f.type)}(0)` : 'null';
    default:
      return f.required ? `new ${f.type.cls.name}()` : 'null';
  }
}

function fieldType(f: AsField): string {
  const t = asTypeName(f.type);
  const nullable = !f.required && (f.type.kind === 'string' || f.type.kind === 'array' || f.type.kind === 'object');
  return nullable ? `${t} | null` : t;
}

function docLines(doc: string | null, indent: string): string[] {
  if (doc === null) return [];
  const lines = commentText(doc).split('\n');
  if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
  return [`${indent}/**`, ...lines.map((l) => `${indent} * ${l}`.trimEnd()), `${indent} */`];
}

const SCALAR_READ: Record<string, string> = { string: 'jsonReadString', integer: 'jsonReadI64', number: 'jsonReadF64', boolean: 'jsonReadBool' };

class AsEmitter {
  private readonly arrays = new Map<string, AsType & { kind: 'array' }>();

  /** An expression reading JSON value `v` (path: parent + key/index) as type `t`; null-checks follow it. */
  private readExpr(t: AsType, v: string, parent: string, key: string, index: string): string {
    if (t.kind === 'string' || t.kind === 'integer' || t.kind === 'number' || t.kind === 'boolean') return `${SCALAR_READ[t.kind]}(${v}, ${parent}, ${key}, ${index})`;
    const path = index === '-1' ? `jsonPath(${parent}, ${key})` : `jsonItemPath(${parent}, ${index})`;
    if (t.kind === 'array') {
      this.arrays.set(typeKey(t), t);
      return `read_${typeKey(t)}(${v}, ${path})`;
    }
    return `read_${t.cls.name}(${v}, ${path})`;
  }

  /** Statements writing expression `e` of type `t` with JsonWriter `w`. */
  private writeStmt(t: AsType, e: string, what: string): string {
    switch (t.kind) {
      case 'string':
        return `w.string(${e});`;
      case 'integer':
        return `w.int(${e});`;
      case 'number':
        return `w.float(${e}, ${JSON.stringify(what)});`;
      case 'boolean':
        return `w.bool(${e});`;
      case 'array':
        this.arrays.set(typeKey(t), t);
        return `write_${typeKey(t)}(w, ${e});`;
      default:
        return `write_${t.cls.name}(w, ${e});`;
    }
  }

  /** An expression reading a config value `v` (its key `key`, a JSON string literal) as type `t`. */
  configRead(t: AsType, v: string, key: string): string {
    if (t.kind === 'array') {
      this.arrays.set(typeKey(t), t);
      return `read_${typeKey(t)}(${v}, ${key})`;
    }
    if (t.kind === 'object') return `read_${t.cls.name}(${v}, ${key})`;
    return this.readExpr(t, v, '""', key, '-1');
  }

  classDecl(cls: AsClass): string[] {
    const out = [...docLines(cls.doc, ''), `export class ${cls.name} {`];
    for (const f of cls.fields) {
      out.push(...docLines(f.doc, '  '));
      out.push(`  ${f.ident}: ${fieldType(f)} = ${fieldDefault(f)};`);
      if (f.flag !== null) out.push(`  /** True when "${commentText(f.json)}" is present (written by serialize only when true). */`, `  ${f.flag}: bool = false;`);
    }
    out.push('}', '');
    return out;
  }

  readFn(cls: AsClass): string[] {
    const out = [`function read_${cls.name}(v: JsonValue, path: string): ${cls.name} | null {`, '  const o = jsonReadObject(v, path);', '  if (o === null) return null;'];
    if (cls.closed) out.push(`  if (!jsonOnlyKeys(o, [${cls.fields.map((f) => JSON.stringify(f.json)).join(', ')}], path)) return null;`);
    out.push(`  const out = new ${cls.name}();`);
    for (const f of cls.fields) {
      const key = JSON.stringify(f.json);
      const m = `m_${f.ident}`;
      out.push(`  const ${m} = jsonMember(o, ${key}, path, ${f.required});`);
      const read = this.readExpr(f.type, m, 'path', key, '-1');
      const scalar = f.type.kind !== 'array' && f.type.kind !== 'object';
      if (f.required) {
        out.push(`  if (${m} === null) return null;`);
        if (scalar) out.push(`  out.${f.ident} = ${read};`);
        else out.push(`  const r_${f.ident} = ${read};`, `  if (r_${f.ident} === null) return null;`, `  out.${f.ident} = r_${f.ident};`);
      } else {
        out.push(`  if (${m} !== null) {`);
        if (scalar) out.push(`    out.${f.ident} = ${read};`);
        else out.push(`    const r_${f.ident} = ${read};`, `    if (r_${f.ident} === null) return null;`, `    out.${f.ident} = r_${f.ident};`);
        if (f.flag !== null) out.push(`    out.${f.flag} = true;`);
        out.push('  }');
      }
    }
    out.push('  return jsonFailed() ? null : out;', '}', '');
    return out;
  }

  writeFn(cls: AsClass): string[] {
    const out = [`function write_${cls.name}(w: JsonWriter, o: ${cls.name}): void {`, '  w.byte(0x7b);'];
    // With an optional field, commas depend on what is present: count at run time.
    const counted = cls.fields.some((f) => !f.required);
    if (counted) out.push('  let n = 0;');
    let written = 0;
    const sep = (indent: string): string[] => {
      if (counted) return [`${indent}if (n++ > 0) w.byte(0x2c);`];
      return written++ > 0 ? [`${indent}w.byte(0x2c);`] : [];
    };
    for (const f of cls.fields) {
      const key = /^[A-Za-z0-9_.\- ]*$/.test(f.json) ? `w.raw(${JSON.stringify(`${JSON.stringify(f.json)}:`)});` : `w.string(${JSON.stringify(f.json)}).byte(0x3a);`;
      const what = `${cls.name}.${f.ident}`;
      if (f.required) {
        out.push(...sep('  '), `  ${key}`, `  ${this.writeStmt(f.type, `o.${f.ident}`, what)}`);
      } else if (f.flag !== null) {
        out.push(`  if (o.${f.flag}) {`, ...sep('    '), `    ${key}`, `    ${this.writeStmt(f.type, `o.${f.ident}`, what)}`, '  }');
      } else {
        out.push(`  const x_${f.ident} = o.${f.ident};`, `  if (x_${f.ident} !== null) {`, ...sep('    '), `    ${key}`, `    ${this.writeStmt(f.type, `x_${f.ident}`, what)}`, '  }');
      }
    }
    out.push('  w.byte(0x7d);', '}', '');
    return out;
  }

  /** read_/write_ functions for every array type used so far (they may add more: loop until done). */
  arrayFns(): string[] {
    const out: string[] = [];
    const done = new Set<string>();
    for (;;) {
      const next = [...this.arrays.entries()].find(([k]) => !done.has(k));
      if (next === undefined) break;
      const [key, t] = next;
      done.add(key);
      const name = asTypeName(t);
      const item = asTypeName(t.items);
      const scalar = t.items.kind !== 'array' && t.items.kind !== 'object';
      const read = this.readExpr(t.items, 'a.items[i]', 'path', '""', 'i');
      out.push(
        `function read_${key}(v: JsonValue, path: string): ${name} | null {`,
        '  const a = jsonReadArray(v, path);',
        '  if (a === null) return null;',
        `  const out = new ${name}(a.items.length);`,
        '  for (let i = 0; i < a.items.length; i++) {',
        ...(scalar
          ? [`    out[i] = ${read};`, '    if (jsonFailed()) return null;']
          : [`    const r = ${read};`, '    if (r === null) return null;', '    out[i] = r;']),
        '  }',
        '  return out;',
        '}',
        '',
        `function write_${key}(w: JsonWriter, a: ${name}): void {`,
        '  w.byte(0x5b);',
        '  for (let i = 0; i < a.length; i++) {',
        '    if (i > 0) w.byte(0x2c);',
        `    ${this.writeStmt(t.items, 'a[i]', `${item} item`)}`,
        '  }',
        '  w.byte(0x5d);',
        '}',
        '',
      );
    }
    return out;
  }
}

/** A shape of the plugin with its AssemblyScript class. */
interface AsShape {
  cls: AsClass;
  classes: AsClass[];
  what: string;
  role: 'config' | 'input' | 'output';
}

/** Options of {@link manifestAssemblyScript}. */
export interface AssemblyScriptOptions {
  /** Module the JSON runtime is imported from (default `./tyrum-json`, the copy written beside it). */
  runtimeImport?: string;
}

/**
 * The AssemblyScript helpers for a plugin (assembly/tyrum-types.ts). Throws
 * TYRUM_ERR_MANIFEST_INVALID naming the schema and location of any construct it does not support.
 */
export function manifestAssemblyScript(manifest: PluginManifest, opts: AssemblyScriptOptions = {}): string {
  const runtime = opts.runtimeImport ?? `./${ASSEMBLY_RUNTIME_FILE.replace(/\.ts$/, '')}`;
  const shapes: AsShape[] = [];
  const reserved = [CONFIG_TYPE, ...manifest.contributes.tools.flatMap((t) => Object.values(toolTypeNames(t.id)))];
  const allNames = new Map<string, string>();
  const add = (label: string, schema: Schema, name: string, what: string, role: AsShape['role']) => {
    const m = new AsModel(label);
    for (const r of reserved) if (r !== name) m.reserve(r);
    for (const n of allNames.keys()) m.reserve(n);
    const cls = m.root(schema, name);
    for (const c of m.classes) allNames.set(c.name, label);
    shapes.push({ cls, classes: m.classes, what, role });
  };
  if (manifest.config_schema !== undefined) add('config_schema', configView(manifest.config_schema), CONFIG_TYPE, 'the plugin\'s configuration', 'config');
  manifest.contributes.tools.forEach((tool, i) => {
    const n = toolTypeNames(tool.id);
    add(`contributes.tools[${i}].input_schema (tool "${tool.id}")`, tool.input_schema, n.input, `the arguments of tool "${tool.id}"`, 'input');
    add(`contributes.tools[${i}].output_schema (tool "${tool.id}")`, tool.output_schema, n.output, `the result of tool "${tool.id}"`, 'output');
  });

  const em = new AsEmitter();
  const body: string[] = [];
  for (const s of shapes) for (const c of s.classes) body.push(...em.classDecl(c));
  const api: string[] = [];
  for (const s of shapes) {
    const n = s.cls.name;
    api.push(
      `/** Parse ${s.what} from JSON text or UTF-8 bytes${s.role === 'input' ? ' (e.g. Tyrum.input())' : ''}; null when it does not fit (see typesError()). */`,
      `export function parse${n}<T>(json: T): ${n} | null {`,
      '  const v = parseJson<T>(json);',
      '  if (v === null) return null;',
      '  jsonReset();',
      `  return read_${n}(v, "");`,
      '}',
      '',
      `/** ${s.what[0]!.toUpperCase()}${s.what.slice(1)} as UTF-8 JSON bytes${s.role === 'output' ? ' (for Tyrum.outputJson)' : ''}. */`,
      `export function serialize${n}(value: ${n}): Uint8Array {`,
      '  const w = new JsonWriter(256);',
      `  write_${n}(w, value);`,
      '  return w.toBytes();',
      '}',
      '',
    );
  }
  const config = shapes.find((s) => s.cls.name === CONFIG_TYPE);
  if (config !== undefined) api.push(...configReader(config.cls, em));
  const internals: string[] = [];
  for (const s of shapes) for (const c of s.classes) internals.push(...em.readFn(c), ...em.writeFn(c));
  internals.push(...em.arrayFns());

  const imports = [
    'JsonValue',
    'JsonWriter',
    'jsonError',
    'jsonFailed',
    'jsonItemPath',
    'jsonMember',
    'jsonOnlyKeys',
    'jsonPath',
    'jsonReadArray',
    'jsonReadBool',
    'jsonReadF64',
    'jsonReadI64',
    'jsonReadObject',
    'jsonReadString',
    'jsonReset',
    'parseJson',
    ...(config !== undefined ? ['jsonFail'] : []),
  ].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1));
  return [
    '/* eslint-disable */',
    '// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).',
    `// Generated by \`tyrum plugin types\` from ${MANIFEST_FILE} (plugin "${manifest.id}" ${manifest.version}); do not edit.`,
    '//',
    '// AssemblyScript classes for the plugin\'s config and each tool\'s input and output, from their JSON Schemas:',
    '// - parse<Type>(json): JSON text or UTF-8 bytes (e.g. Tyrum.input()) to an instance; null when the',
    '//   document does not fit the type, with the reason (naming the property) in typesError();',
    '// - serialize<Type>(value): an instance to UTF-8 JSON bytes (e.g. for Tyrum.outputJson);',
    ...(config !== undefined ? ['// - readPluginConfig(): the plugin\'s configuration, read key by key through Extism\'s config_get.'] : []),
    '// Types: string → string, integer → i64, number → f64, boolean → bool, array → Array<T>, object → a class.',
    '// An optional string, array or object property is null when absent; an optional integer, number or',
    '// boolean has a has_<name> flag (false when absent; serialize writes the value only when it is true),',
    '// and starts at the schema\'s default, if any. Parsing checks types, required properties and',
    '// additionalProperties: false; the gateway checks the rest of each schema (lengths, ranges, patterns,',
    '// enums) on every call. Properties an open object does not declare are dropped.',
    ...(config !== undefined ? ['import { alloc, config_get, free, length, load_u8, store_u8 } from "@extism/as-pdk/lib/env";'] : []),
    `import { ${imports.join(', ')} } from ${JSON.stringify(runtime)};`,
    '',
    '/** Why the last parse<Type> (or readPluginConfig) returned null. */',
    'export function typesError(): string {',
    '  return jsonError();',
    '}',
    '',
    ...body,
    ...api,
    '// --- internals ---',
    '',
    ...internals,
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd()
    .concat('\n');
}

/** readPluginConfig(): each top-level property through config_get (strings as they are, others as JSON text). */
function configReader(cls: AsClass, em: AsEmitter): string[] {
  const out = [
    '/** The config value under `key` (UTF-8), or null when unset. */',
    'function configText(key: string): string | null {',
    '  const k = String.UTF8.encode(key);',
    '  const kb = Uint8Array.wrap(k);',
    '  const block = alloc(<u64>kb.length);',
    '  for (let i = 0; i < kb.length; i++) store_u8(block + <u64>i, kb[i]);',
    '  const v = config_get(block);',
    '  free(block);',
    '  if (v == 0) return null;',
    '  const n = <i32>length(v);',
    '  const b = new Uint8Array(n);',
    '  for (let i = 0; i < n; i++) b[i] = load_u8(v + <u64>i);',
    '  free(v);',
    '  return String.UTF8.decodeUnsafe(b.dataStart, <usize>n);',
    '}',
    '',
    '/**',
    ' * The plugin\'s configuration (validated by the gateway against config_schema, defaults applied), read',
    ' * through Extism\'s config_get; null when a value does not fit its type (see typesError()).',
    ' */',
    `export function readPluginConfig(): ${cls.name} | null {`,
    '  jsonReset();',
    `  const out = new ${cls.name}();`,
  ];
  for (const f of cls.fields) {
    const key = JSON.stringify(f.json);
    const t = `t_${f.ident}`;
    out.push(`  const ${t} = configText(${key});`);
    if (f.required) out.push(`  if (${t} === null) {`, `    jsonFail(${key}, "is required but not set in the plugin's configuration");`, '    return null;', '  }');
    else out.push(`  if (${t} !== null) {`);
    const ind = f.required ? '  ' : '    ';
    if (f.type.kind === 'string') {
      out.push(`${ind}out.${f.ident} = ${t};`);
    } else {
      const v = `v_${f.ident}`;
      out.push(
        `${ind}const ${v} = parseJson<string>(${t});`,
        `${ind}if (${v} === null) {`,
        `${ind}  const why = jsonError();`,
        `${ind}  jsonReset();`,
        `${ind}  jsonFail(${key}, "is " + why);`,
        `${ind}  return null;`,
        `${ind}}`,
      );
      const read = em.configRead(f.type, v, key);
      if (f.type.kind === 'array' || f.type.kind === 'object') {
        out.push(`${ind}const r_${f.ident} = ${read};`, `${ind}if (r_${f.ident} === null) return null;`, `${ind}out.${f.ident} = r_${f.ident};`);
      } else {
        out.push(`${ind}out.${f.ident} = ${read};`, `${ind}if (jsonFailed()) return null;`);
      }
    }
    if (f.flag !== null) out.push(`${ind}out.${f.flag} = true;`);
    if (!f.required) out.push('  }');
  }
  out.push('  return out;', '}', '');
  return out;
}

// --- the command: files in a plugin folder ---------------------------------------------------------------

/** The source of the AssemblyScript PDK's JSON runtime (copied beside the generated helpers). */
export function assemblyRuntimeSource(): string {
  const file = join(packageInfo().root, PDK_ASSEMBLYSCRIPT_DIR, 'json.ts');
  const text = readFileSync(file, 'utf8');
  const header = [
    '// Copied by `tyrum plugin types` from the Tyrum AssemblyScript PDK (sdk/pdk/assemblyscript/json.ts); do not',
    '// edit: the next `tyrum plugin types` overwrites it.',
  ].join('\n');
  // Keep the lint and type-check pragmas first (they apply from the top of the file).
  const lines = text.split('\n');
  const pragmas = lines.filter((l, i) => i < 2 && (l.startsWith('/* eslint-disable') || l.startsWith('// @ts-nocheck')));
  return [...pragmas, header, ...lines.slice(pragmas.length)].join('\n');
}

/** Options of {@link writePluginTypes}. */
export interface PluginTypesOptions {
  /** Folder of the .d.ts (default <dir>/types). */
  out?: string;
  /**
   * AssemblyScript helpers: 'auto' (default) when the plugin folder has asconfig.json or assembly/,
   * 'never' for TypeScript types only.
   */
  assembly?: 'auto' | 'never';
  /**
   * Import path of the Tyrum AssemblyScript PDK as seen from the assembly folder (e.g.
   * "../vendor/tyrum-pdk"): the helpers import the JSON runtime from `<pdk>/json` instead of a copy.
   */
  pdk?: string;
}

export interface PluginTypesResult {
  manifest: PluginManifest;
  /** Files written, absolute. */
  files: string[];
  /** Why no AssemblyScript helpers were written, when they were not. */
  assemblySkipped: string | null;
}

/** Read and check DIR/tyrum.plugin.json as `tyrum plugin types` does. */
export function readPluginManifest(dir: string): PluginManifest {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no plugin folder ${dir}`, { path: dir });
  const file = join(dir, MANIFEST_FILE);
  if (!existsSync(file)) {
    throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no ${MANIFEST_FILE} in ${dir} (run in a plugin folder, or name one: tyrum plugin types DIR)`, { path: file });
  }
  return parseManifest(new Uint8Array(readFileSync(file)));
}

/**
 * Generate the types of the plugin in `dir` and write them: <dir>/types/tyrum.d.ts (or <out>/tyrum.d.ts)
 * and, for an AssemblyScript plugin, <dir>/assembly/tyrum-types.ts (+ tyrum-json.ts unless `pdk`).
 * Everything is generated before anything is written: a refused schema leaves the folder unchanged.
 */
export async function writePluginTypes(dir: string, opts: PluginTypesOptions = {}): Promise<PluginTypesResult> {
  const root = resolve(dir);
  const manifest = readPluginManifest(root);
  const files = new Map<string, string>();
  const dtsDir = opts.out !== undefined ? resolve(opts.out) : join(root, 'types');
  files.set(join(dtsDir, 'tyrum.d.ts'), await manifestTypeScript(manifest));

  let assemblySkipped: string | null = null;
  const asDir = join(root, ASSEMBLY_DIR);
  const isAssemblyScript = existsSync(join(root, 'asconfig.json')) || (existsSync(asDir) && statSync(asDir).isDirectory());
  if (opts.assembly === 'never') assemblySkipped = 'AssemblyScript helpers not requested (--no-assembly)';
  else if (!isAssemblyScript) assemblySkipped = `no AssemblyScript project in ${root} (no asconfig.json or assembly/): AssemblyScript helpers skipped`;
  else {
    const runtimeImport = opts.pdk !== undefined ? `${opts.pdk.replace(/\/+$/, '')}/json` : undefined;
    files.set(join(asDir, ASSEMBLY_TYPES_FILE), manifestAssemblyScript(manifest, runtimeImport !== undefined ? { runtimeImport } : {}));
    if (opts.pdk === undefined) files.set(join(asDir, ASSEMBLY_RUNTIME_FILE), assemblyRuntimeSource());
  }
  for (const [path, text] of files) {
    mkdirSync(resolve(path, '..'), { recursive: true });
    writeFileSync(path, text);
  }
  return { manifest, files: [...files.keys()], assemblySkipped };
}

/** `path` relative to `from` when inside it. */
export function shownPath(path: string, from: string): string {
  const r = relative(from, path);
  return r.startsWith('..') || r === '' ? path : r;
}
