// `tyrum plugin types` (sdk/author/types.ts, sdk/author/cli/types.ts): TypeScript declarations from a
// manifest's schemas (checked with the TypeScript compiler), AssemblyScript helpers that compile with
// asc and round-trip in a real SandboxPool, refusals naming the unsupported construct's location, the
// command's errors, and the gateway's contract types.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import ts from 'typescript';
import { contractTypeName, contractTypes, manifestAssemblyScript, manifestTypeScript, pascalCase, toolTypeNames, writePluginTypes } from '../../../sdk/author/types.js';
import { pluginTypes } from '../../../sdk/author/cli/types.js';
import { isTyrumError } from '../../../core/errors/index.js';
import type { PluginManifest } from '../../../schemas/index.js';
import { SandboxPool, sandboxReason } from '../../../sandbox/index.js';
import { compileAssemblyScript, dec, enc, pdkImport, ROOT, sha256 } from '../pdk/helpers.js';

const work = mkdtempSync(join(tmpdir(), 'tyrum-types-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const ZEROS = '0'.repeat(64);

function manifest(tools: Record<string, { input: Record<string, unknown>; output: Record<string, unknown> }>, config?: Record<string, unknown>): PluginManifest {
  return {
    manifest_version: 1,
    id: 'sample',
    name: 'Sample',
    version: '1.2.3',
    description: 'A sample plugin for type generation.',
    publisher: 'Tyrum tests',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: 'build/plugin.wasm', sha256: ZEROS },
    contributes: {
      tools: Object.entries(tools).map(([id, s]) => ({ id, export: id, description: `The ${id} tool.`, input_schema: s.input, output_schema: s.output, effect: 'read_only' as const })),
    },
    ...(config !== undefined ? { config_schema: config } : {}),
  };
}

const SEARCH_INPUT = {
  type: 'object',
  additionalProperties: false,
  required: ['query'],
  properties: {
    query: { type: 'string', minLength: 1, description: 'What to look for.' },
    limit: { type: 'integer', minimum: 1, maximum: 50, default: 10 },
    tags: { type: 'array', items: { type: 'string' }, maxItems: 3 },
    exact: { type: 'boolean' },
    filter: { type: 'object', properties: { since: { type: 'string', format: 'date' }, min_score: { type: 'number' } }, required: ['min_score'] },
    matrix: { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
    type: { type: 'string', enum: ['issue', 'pr'] },
    static: { type: 'boolean' },
    'odd key-ü': { type: 'string' },
  },
};
const SEARCH_OUTPUT = {
  type: 'object',
  required: ['results', 'total', 'page'],
  properties: {
    page: { type: 'object', additionalProperties: false, required: ['size'], properties: { size: { type: 'integer' }, cursor: { type: 'string' } } },
    results: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'title', 'score', 'labels'],
        properties: { id: { type: 'integer' }, title: { type: 'string' }, score: { type: 'number' }, labels: { type: 'array', items: { type: 'string' } } },
      },
    },
    total: { type: 'integer' },
    next: { type: 'string' },
    echo: { type: 'array', items: { type: 'array', items: { type: 'integer' } } },
  },
};
const CONFIG = {
  type: 'object',
  properties: {
    units: { type: 'string', enum: ['metric', 'imperial'], default: 'metric' },
    api_key: { type: 'string', 'x-tyrum-secret': true, description: 'Secret handle for the API key.' },
    retries: { type: 'integer', default: 3 },
    ratio: { type: 'number' },
    verbose: { type: 'boolean' },
    hosts: { type: 'array', items: { type: 'string' } },
  },
  required: ['api_key'],
};
const SAMPLE = manifest({ search_items: { input: SEARCH_INPUT, output: SEARCH_OUTPUT }, ping: { input: { type: 'object', properties: {}, additionalProperties: false }, output: { type: 'object', properties: { pong: { type: 'boolean' } }, required: ['pong'] } } }, CONFIG);

/** A plugin folder: the manifest, and for an AssemblyScript plugin an assembly/ folder. */
function pluginDir(name: string, m: unknown, opts: { assembly?: boolean } = {}): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  if (m !== undefined) writeFileSync(join(dir, 'tyrum.plugin.json'), typeof m === 'string' ? m : JSON.stringify(m, null, 2));
  if (opts.assembly !== false) mkdirSync(join(dir, 'assembly'), { recursive: true });
  return dir;
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) }, out, err };
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; details: Record<string, unknown> | undefined }> {
  const e = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!isTyrumError(e)) throw new Error(`expected a TyrumError, got ${String(e)}`);
  return { code: e.code, message: e.message, details: e.details };
}

t.test('names: PascalCase of tool ids', async (t) => {
  t.equal(pascalCase('add_note'), 'AddNote');
  t.equal(pascalCase('op.tool.call.payload'), 'OpToolCallPayload');
  t.equal(pascalCase('x2'), 'X2');
  t.same(toolTypeNames('search_items'), { input: 'SearchItemsInput', output: 'SearchItemsOutput' });
  t.equal(contractTypeName('error'), 'ErrorContract', 'never shadows a global type');
  t.equal(contractTypeName('plugin.manifest'), 'PluginManifest');
});

t.test('TypeScript declarations for the config and each tool', async (t) => {
  const dts = await manifestTypeScript(SAMPLE);
  t.equal(await manifestTypeScript(SAMPLE), dts, 'deterministic');
  t.match(dts, /^\/\* eslint-disable \*\/\n\/\/ Generated by `tyrum plugin types` from tyrum\.plugin\.json \(plugin "sample" 1\.2\.3\); do not edit\./);
  t.notMatch(dts, /\d{4}-\d\d-\d\dT/, 'no timestamp');

  const block = (name: string) => {
    const m = new RegExp(`export interface ${name} \\{(\\n[\\s\\S]*?)\\n\\}\\n`).exec(dts);
    if (m === null) throw new Error(`no interface ${name} in:\n${dts}`);
    return m[1]!;
  };
  const cfg = block('PluginConfig');
  t.match(cfg, /\n {2}units: "metric" \| "imperial";/, 'a top-level default makes the field always present');
  t.match(cfg, /\n {2}api_key: string;/);
  t.match(cfg, /x-tyrum-secret/, 'a secret field says it holds a handle name');
  t.match(cfg, /\n {2}retries: number;/);
  t.match(cfg, /\n {2}ratio\?: number;/);
  t.match(cfg, /\n {2}verbose\?: boolean;/);
  t.match(cfg, /\n {2}hosts\?: string\[\];/);
  t.notMatch(cfg, '[k: string]', 'unknown config keys are refused by the gateway: no index signature');

  const input = block('SearchItemsInput');
  t.match(input, /What to look for\./, 'descriptions become comments');
  t.match(input, /\n {2}query: string;/);
  t.match(input, /\n {2}limit\?: number;/, 'an input default does not make the field required');
  t.match(input, /\n {2}tags\?: string\[\];/, 'no tuple unions for maxItems');
  t.match(input, /\n {2}exact\?: boolean;/);
  t.match(input, /\n {2}filter\?: \{\n {4}since\?: string;\n {4}min_score: number;\n {4}\[k: string\]: unknown;\n {2}\};/);
  t.match(input, /\n {2}matrix\?: number\[\]\[\];/);
  t.match(input, /\n {2}type\?: "issue" \| "pr";/);
  t.match(input, /\n {2}"odd key-ü"\?: string;/);
  t.notMatch(input, /\n {2}\[k: string\]/, 'additionalProperties: false');

  const output = block('SearchItemsOutput');
  t.match(output, /\n {2}results: \{\n {4}id: number;\n {4}title: string;\n {4}score: number;\n {4}labels: string\[\];\n {2}\}\[\];/);
  t.match(output, /\n {2}total: number;/);
  t.match(output, /\n {2}next\?: string;/);
  t.match(output, /\n {2}\[k: string\]: unknown;/, 'an open object keeps an index signature');
  t.match(dts, 'export interface PingInput {}');
  t.match(block('PingOutput'), /\n {2}pong: boolean;/);
  t.match(dts, /export interface Tools \{\n[\s\S]*\n {2}search_items: \{ input: SearchItemsInput; output: SearchItemsOutput \};\n[\s\S]*\n {2}ping: \{ input: PingInput; output: PingOutput \};\n\}/);
  t.match(dts, 'export type ToolId = keyof Tools;');
});

t.test('the declarations type-check and mean what the schemas say', async (t) => {
  const dir = pluginDir('tsc-check', SAMPLE, { assembly: false });
  await writePluginTypes(dir);
  writeFileSync(
    join(dir, 'usage.ts'),
    `import type { PluginConfig, SearchItemsInput, Tools, ToolId } from './types/tyrum.js';
export const ok: SearchItemsInput = { query: 'q', limit: 3, tags: ['a'], filter: { min_score: 1, other: true }, type: 'pr' };
// @ts-expect-error query must be a string
export const badType: SearchItemsInput = { query: 1 };
// @ts-expect-error query is required
export const missing: SearchItemsInput = { limit: 1 };
// @ts-expect-error additionalProperties: false
export const extra: SearchItemsInput = { query: 'q', bogus: 1 };
// @ts-expect-error not in the enum
export const badEnum: SearchItemsInput = { query: 'q', type: 'commit' };
export const cfg: PluginConfig = { units: 'metric', api_key: 'API_KEY', retries: 3 };
// @ts-expect-error units has a default: the plugin always receives it
export const cfgMissing: PluginConfig = { api_key: 'API_KEY', retries: 3 };
export const out: Tools['search_items']['output'] = { page: { size: 1 }, results: [{ id: 1, title: 't', score: 0.5, labels: [] }], total: 1 };
export const ids: ToolId[] = ['search_items', 'ping'];
`,
  );
  const program = ts.createProgram([join(dir, 'usage.ts')], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts'],
    types: [],
  });
  const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  t.same(diagnostics, [], 'no errors, and every @ts-expect-error is used');
});

t.test('nested titles and definitions are prefixed: two tools never collide', async (t) => {
  const item = { type: 'object', title: 'Item', properties: { a: { type: 'string' } } };
  const m = manifest({
    one: { input: { type: 'object', properties: { x: item } }, output: { type: 'object', properties: {} } },
    two: { input: { type: 'object', properties: { x: item, y: { $ref: '#/definitions/Thing' } }, definitions: { Thing: { type: 'integer' } } }, output: { type: 'object', properties: {} } },
  });
  const dts = await manifestTypeScript(m);
  t.match(dts, 'export interface OneInputItem {');
  t.match(dts, 'export interface TwoInputItem {');
  t.match(dts, 'export type TwoInputThing = number;');
  t.match(dts, /y\?: TwoInputThing;/);
});

t.test('tyrum plugin types writes types/tyrum.d.ts and the AssemblyScript helpers', async (t) => {
  const dir = pluginDir('cli', SAMPLE);
  const c = capture();
  t.equal(await pluginTypes([dir], c.io), 0);
  t.equal(c.out[0], 'sample 1.2.3: types for 2 tools and the config');
  for (const f of ['types/tyrum.d.ts', 'assembly/tyrum-types.ts', 'assembly/tyrum-json.ts']) {
    t.ok(existsSync(join(dir, f)), f);
    t.ok(c.out.some((l) => l.startsWith('  wrote ') && l.endsWith(f)), `reports ${f}`);
  }
  t.equal(readFileSync(join(dir, 'types/tyrum.d.ts'), 'utf8'), await manifestTypeScript(SAMPLE));
  const runtime = readFileSync(join(dir, 'assembly/tyrum-json.ts'), 'utf8');
  t.match(runtime, /^\/\* eslint-disable @typescript-eslint\/ban-ts-comment \*\/\n\/\/ @ts-nocheck/, 'pragmas stay first');
  t.match(runtime, 'Copied by `tyrum plugin types` from the Tyrum AssemblyScript PDK');
  t.match(runtime, 'export class JsonParser');

  const helpers = readFileSync(join(dir, 'assembly/tyrum-types.ts'), 'utf8');
  t.match(helpers, 'from "./tyrum-json";');
  t.match(helpers, 'export class SearchItemsInput {');
  t.match(helpers, /\n {2}query: string = "";/);
  t.match(helpers, /\n {2}limit: i64 = 10;\n[^\n]*\n {2}has_limit: bool = false;/, 'an optional integer: its default and a presence flag');
  t.match(helpers, /\n {2}tags: Array<string> \| null = null;/);
  t.match(helpers, /\n {2}filter: SearchItemsInputFilter \| null = null;/);
  t.match(helpers, /\n {2}matrix: Array<Array<i64>> \| null = null;/);
  t.match(helpers, /\n {2}static_: bool = false;/, 'a field name AssemblyScript reserves gets a suffix');
  t.match(helpers, /\n {2}odd_key__: string \| null = null;/);
  t.match(helpers, 'export class SearchItemsOutputResultsItem {');
  t.match(helpers, /\n {2}score: f64 = 0\.0;/);
  t.match(helpers, /\n {2}page: SearchItemsOutputPage = new SearchItemsOutputPage\(\);/, 'a required nested object starts empty');
  t.match(helpers, 'export function parseSearchItemsInput<T>(json: T): SearchItemsInput | null {');
  t.match(helpers, 'export function serializeSearchItemsOutput(value: SearchItemsOutput): Uint8Array {');
  t.match(helpers, 'export function readPluginConfig(): PluginConfig | null {');
  t.match(helpers, /\n {2}units: string = "metric";/, 'a config default: always present, so not nullable');
  t.equal(manifestAssemblyScript(SAMPLE), helpers, 'deterministic');

  const again = capture();
  t.equal(await pluginTypes([dir, '--out', join(dir, 'elsewhere'), '--pdk', '../vendor/tyrum-pdk/'], again.io), 0);
  t.ok(existsSync(join(dir, 'elsewhere', 'tyrum.d.ts')), '--out names the folder of the .d.ts');
  t.match(readFileSync(join(dir, 'assembly/tyrum-types.ts'), 'utf8'), 'from "../vendor/tyrum-pdk/json";', '--pdk: the runtime is imported from the PDK');
  t.notOk(again.out.some((l) => l.endsWith('tyrum-json.ts')), 'and not copied');
});

t.test('a plugin without AssemblyScript gets TypeScript types only', async (t) => {
  const dir = pluginDir('c-plugin', SAMPLE, { assembly: false });
  const c = capture();
  t.equal(await pluginTypes([dir], c.io), 0);
  t.ok(existsSync(join(dir, 'types/tyrum.d.ts')));
  t.notOk(existsSync(join(dir, 'assembly')), 'no assembly/ folder created');
  t.match(c.out.join('\n'), 'no AssemblyScript project');

  const as = pluginDir('no-assembly', SAMPLE);
  const c2 = capture();
  t.equal(await pluginTypes([as, '--no-assembly'], c2.io), 0);
  t.notOk(existsSync(join(as, 'assembly/tyrum-types.ts')));
  t.match(c2.out.join('\n'), '--no-assembly');
});

t.test('constructs the AssemblyScript helpers do not support are refused, naming where', async (t) => {
  const tool = (input: Record<string, unknown>, output: Record<string, unknown> = { type: 'object', properties: {} }) => manifest({ pick: { input, output } });
  const obj = (properties: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ type: 'object', properties, ...extra });
  const cases: [string, PluginManifest, RegExp][] = [
    ['oneOf', tool(obj({ filter: { oneOf: [{ type: 'string' }, { type: 'integer' }] } })), /input_schema \(tool "pick"\): \/properties\/filter\/oneOf uses "oneOf"/],
    ['anyOf beside a type', tool(obj({ a: { type: 'string', anyOf: [{ minLength: 1 }] } })), /\/properties\/a\/anyOf uses "anyOf"/],
    ['$ref', tool(obj({ a: { $ref: '#/definitions/A' } }, { definitions: { A: { type: 'string' } } })), /\/properties\/a\/\$ref uses "\$ref"/],
    ['a union of types', tool(obj({ a: { type: ['string', 'null'] } })), /\/properties\/a\/type has a list of types \["string","null"\]/],
    ['null', tool(obj({ a: { type: 'null' } })), /\/properties\/a\/type has type "null"/],
    ['a map', tool(obj({ m: { type: 'object', additionalProperties: { type: 'string' } } })), /\/properties\/m\/additionalProperties has "additionalProperties" with a schema/],
    ['a free-form object', tool(obj({ meta: { type: 'object' } })), /\/properties\/meta is an object without "properties"/],
    ['patternProperties', tool(obj({ m: { type: 'object', properties: {}, patternProperties: { '^x': { type: 'string' } } } })), /\/properties\/m\/patternProperties uses "patternProperties"/],
    ['a tuple', tool(obj({ pair: { type: 'array', items: [{ type: 'string' }, { type: 'integer' }] } })), /\/properties\/pair\/items is a tuple/],
    ['an array of anything', tool(obj({ list: { type: 'array' } })), /\/properties\/list is an array without "items"/],
    ['any value', tool(obj({ v: {} })), /\/properties\/v has no "type"/],
    ['const', tool(obj({ v: { type: 'string', const: 'x' } })), /\/properties\/v\/const uses "const"/],
    ['deep in an array', tool(obj({ rows: { type: 'array', items: { type: 'object', properties: { c: { allOf: [{ type: 'string' }] } } } } })), /\/properties\/rows\/items\/properties\/c\/allOf uses "allOf"/],
    ['a scalar output', tool(obj({}), { type: 'string' }), /output_schema \(tool "pick"\): \/ \(the root\) has type "string", not "object"/],
    ['a keyword of another type', tool(obj({ n: { type: 'integer', minLength: 1 } })), /\/properties\/n\/minLength uses "minLength" on a value of type "integer"/],
  ];
  for (const [name, m, message] of cases) {
    const dir = pluginDir(`refuse-${name.replace(/\W+/g, '-')}`, m);
    const e = await refusal(pluginTypes([dir], capture().io));
    t.equal(e.code, 'TYRUM_ERR_MANIFEST_INVALID', name);
    t.match(e.message, message, name);
    t.match(e.message, 'use --no-assembly to generate only the TypeScript types', `${name}: says what to do`);
    t.notOk(existsSync(join(dir, 'types', 'tyrum.d.ts')), `${name}: nothing written`);
    t.equal(await pluginTypes([dir, '--no-assembly'], capture().io), 0, `${name}: TypeScript types alone are fine`);
  }
  const config = manifest({ pick: { input: obj({}), output: obj({}) } }, obj({ level: { enum: [1, 2] } }));
  t.match((await refusal(pluginTypes([pluginDir('refuse-config', config)], capture().io))).message, /^config_schema: \/properties\/level\/enum uses "enum"/);
});

t.test('command errors: no manifest, a bad schema, bad arguments', async (t) => {
  const none = await refusal(pluginTypes([join(work, 'does-not-exist')], capture().io));
  t.equal(none.code, 'TYRUM_ERR_NOT_FOUND');
  t.match(none.message, 'no plugin folder');

  const empty = pluginDir('empty', undefined);
  const missing = await refusal(pluginTypes([empty], capture().io));
  t.equal(missing.code, 'TYRUM_ERR_NOT_FOUND');
  t.match(missing.message, `no tyrum.plugin.json in ${empty}`);

  const typo = manifest({ pick: { input: { type: 'object', properties: { q: { type: 'strin' } } }, output: { type: 'object' } } });
  const bad = await refusal(pluginTypes([pluginDir('bad-schema', typo)], capture().io));
  t.equal(bad.code, 'TYRUM_ERR_MANIFEST_INVALID');
  t.match(bad.message, /contributes\.tools\[0\]\.input_schema: schema does not compile/);

  const notJson = await refusal(pluginTypes([pluginDir('not-json', '{"id": "x",}')], capture().io));
  t.equal(notJson.code, 'TYRUM_ERR_MANIFEST_INVALID');
  t.match(notJson.message, 'tyrum.plugin.json');

  const nonObjectInput = await refusal(pluginTypes([pluginDir('bad-input', manifest({ pick: { input: { type: 'string' }, output: { type: 'object' } } }))], capture().io));
  t.match(nonObjectInput.message, 'must have "type": "object"');

  const flag = await refusal(pluginTypes(['--bogus'], capture().io));
  t.equal(flag.code, 'TYRUM_ERR_INVALID_ARGUMENT');
  const extra = await refusal(pluginTypes(['a', 'b'], capture().io));
  t.equal(extra.code, 'TYRUM_ERR_INVALID_ARGUMENT');

  const help = capture();
  t.equal(await pluginTypes(['--help'], help.io), 0);
  t.match(help.out.join('\n'), 'usage: tyrum plugin types [DIR] [--out DIR]');
});

t.test('the gateway contracts are published as TypeScript the same way', async (t) => {
  const text = await contractTypes({
    error: { title: 'error', type: 'object', required: ['code'], properties: { code: { type: 'string' } }, additionalProperties: false },
    'op.ping.payload': { $id: 'urn:x', $schema: 'http://json-schema.org/draft-07/schema#', title: 'op.ping.payload', type: 'object', properties: { n: { type: 'integer' } } },
  });
  t.match(text, 'export interface ErrorContract {\n  code: string;\n}');
  t.match(text, 'export interface OpPingPayload {\n  n?: number;\n  [k: string]: unknown;\n}');
  t.match(text, 'export interface Contracts {\n  "error": ErrorContract;\n  "op.ping.payload": OpPingPayload;\n}');
  const published = readFileSync(join(ROOT, 'sdk', 'types', 'contracts.d.ts'), 'utf8');
  t.match(published, '"plugin.manifest": PluginManifest;');
  t.match(published, 'export interface PluginManifest {');
});

// --- the AssemblyScript helpers, compiled and run ----------------------------------------------------

const ROUNDTRIP = (pdk: string) => `
import { Tyrum } from ${JSON.stringify(pdk)};
import {
  parseSearchItemsInput,
  readPluginConfig,
  SearchItemsOutput,
  SearchItemsOutputResultsItem,
  serializePluginConfig,
  serializeSearchItemsInput,
  serializeSearchItemsOutput,
  parsePingInput,
  PingOutput,
  serializePingOutput,
  typesError,
} from "./tyrum-types";

export function search_items(): i32 {
  const input = parseSearchItemsInput(Tyrum.input());
  if (input === null) return Tyrum.fail("invalid input: " + typesError());
  const out = new SearchItemsOutput();
  const tags = input.tags;
  for (let i: i64 = 0; i < input.limit && i < 3; i++) {
    const r = new SearchItemsOutputResultsItem();
    r.id = i + 1;
    r.title = input.query + " #" + (i + 1).toString();
    r.score = 0.5 * <f64>(i + 1);
    if (tags !== null) r.labels = tags;
    out.results.push(r);
  }
  out.total = input.limit;
  out.page.size = out.results.length;
  if (input.exact) out.next = "after-" + input.query;
  const m = input.matrix;
  if (m !== null) out.echo = m;
  Tyrum.outputJson(serializeSearchItemsOutput(out));
  return 0;
}

export function roundtrip(): i32 {
  const input = parseSearchItemsInput(Tyrum.inputString());
  if (input === null) return Tyrum.fail(typesError());
  Tyrum.outputJson(serializeSearchItemsInput(input));
  return 0;
}

export function config(): i32 {
  const c = readPluginConfig();
  if (c === null) return Tyrum.fail(typesError());
  Tyrum.outputJson(serializePluginConfig(c));
  return 0;
}

export function ping(): i32 {
  if (parsePingInput(Tyrum.input()) === null) return Tyrum.fail(typesError());
  const out = new PingOutput();
  out.pong = true;
  Tyrum.outputJson(serializePingOutput(out));
  return 0;
}
`;

t.test('the AssemblyScript helpers compile with asc and round-trip in the sandbox', async (t) => {
  const dir = pluginDir('as-roundtrip', { ...SAMPLE, contributes: { tools: [...SAMPLE.contributes.tools, { ...SAMPLE.contributes.tools[0]!, id: 'roundtrip', export: 'roundtrip' }] } });
  await writePluginTypes(dir);
  writeFileSync(join(dir, 'assembly', 'index.ts'), ROUNDTRIP(pdkImport(join(dir, 'assembly'))));
  const wasm = await compileAssemblyScript(dir);

  const pool = new SandboxPool({ workers: 1 });
  t.teardown(() => pool.close());
  const load = (key: string, config: Record<string, string>) =>
    pool.load(key, { wasm, expectedSha256: sha256(wasm), exports: ['search_items', 'roundtrip', 'config', 'ping'], config });
  await load('types', { units: 'imperial', api_key: 'API_KEY', retries: '5', ratio: '0.25', verbose: 'true', hosts: '["a.example","b.example"]' });
  const call = async (fn: string, input: unknown, key = 'types') => dec((await pool.call(key, fn, typeof input === 'string' ? enc(input) : enc(input))).output);
  const refused = async (fn: string, input: unknown, key = 'types') => {
    const e = await pool.call(key, fn, typeof input === 'string' ? enc(input) : enc(input)).then(
      () => null,
      (e: unknown) => e as Error,
    );
    t.equal(sandboxReason(e), 'plugin_error');
    return e?.message ?? '';
  };

  t.same(JSON.parse(await call('search_items', { query: 'crème 😀', limit: 2, tags: ['x', 'ü'], exact: true, matrix: [[1, 2], [], [-3]] })), {
    results: [
      { id: 1, title: 'crème 😀 #1', score: 0.5, labels: ['x', 'ü'] },
      { id: 2, title: 'crème 😀 #2', score: 1, labels: ['x', 'ü'] },
    ],
    total: 2,
    page: { size: 2 },
    next: 'after-crème 😀',
    echo: [[1, 2], [], [-3]],
  });
  t.same(JSON.parse(await call('search_items', { query: 'q' })).total, 10, 'an absent optional integer holds the schema default');

  const full = { query: 'q"\\', limit: 5, tags: [], exact: false, filter: { since: '2024-01-01', min_score: 0.5 }, matrix: [[9007199254740991]], type: 'pr', static: true, 'odd key-ü': 'ö' };
  t.equal(await call('roundtrip', full), JSON.stringify(full), 'every field written back as read');
  t.equal(await call('roundtrip', { query: 'q' }), '{"query":"q"}', 'absent optional fields stay absent');
  t.equal(await call('roundtrip', '{"query":"q","limit":3.0,"filter":{"min_score":1e2,"extra":[1]}}'), '{"query":"q","limit":3,"filter":{"min_score":100}}', 'integers written as 3.0 are integers; undeclared keys of an open object are dropped');
  t.equal(await call('roundtrip', { query: 'q', limit: 9223372036854775807n.toString() }).catch((e: Error) => e.message), 'plugin reported an error: "limit" must be an integer, got a string');
  t.equal(await call('roundtrip', '{"query":"q","matrix":[[9223372036854775807]]}'), '{"query":"q","matrix":[[9223372036854775807]]}', 'i64 exactly');
  t.equal(await call('ping', {}), '{"pong":true}');

  t.match(await refused('roundtrip', { query: 'q', limit: 'x' }), 'plugin reported an error: "limit" must be an integer, got a string');
  t.match(await refused('roundtrip', { query: 'q', limit: 1.5 }), '"limit" must be an integer, got 1.5');
  t.match(await refused('roundtrip', '{"query":"q","matrix":[[9223372036854775808]]}'), '"matrix[0][0]" is out of the 64-bit integer range');
  t.match(await refused('roundtrip', { query: 'q', tags: ['a', 3] }), '"tags[1]" must be a string, got a number');
  t.match(await refused('roundtrip', { query: 'q', filter: {} }), '"filter.min_score" is required');
  t.match(await refused('roundtrip', { query: 'q', filter: { min_score: null } }), '"filter.min_score" must be a number, got null');
  t.match(await refused('roundtrip', { limit: 1 }), '"query" is required');
  t.match(await refused('roundtrip', { query: 'q', bogus: 1 }), 'the value has an unknown key "bogus" (allowed: query, limit, tags, exact, filter, matrix, type, static, odd key-ü)');
  t.match(await refused('roundtrip', [1]), 'the value must be an object, got an array');
  t.match(await refused('roundtrip', '{"query": '), 'not valid JSON: unexpected end of JSON');
  t.match(await refused('search_items', { query: 7 }), 'invalid input: "query" must be a string, got a number');

  t.same(JSON.parse(await call('config', {})), { units: 'imperial', api_key: 'API_KEY', retries: 5, ratio: 0.25, verbose: true, hosts: ['a.example', 'b.example'] }, 'readPluginConfig: strings as they are, other values from JSON text');
  await load('types-min', { units: 'metric', api_key: 'K', retries: '3' });
  t.same(JSON.parse(await call('config', {}, 'types-min')), { units: 'metric', api_key: 'K', retries: 3 });
  await load('types-bad', { units: 'metric', api_key: 'K', retries: 'many' });
  t.match(await refused('config', {}, 'types-bad'), '"retries" is not valid JSON: unexpected character at byte 0');
  await load('types-missing', { units: 'metric', retries: '3' });
  t.match(await refused('config', {}, 'types-missing'), '"api_key" is required but not set in the plugin\'s configuration');
});
