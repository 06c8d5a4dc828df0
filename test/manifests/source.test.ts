// readPluginSource on directories: the good path, and TESTPLAN E5/D8 — every bad manifest or
// package is refused quickly with a message naming the field or cause.
import t from 'tap';
import { mkdirSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isTyrumError, type ErrorCode } from '../../core/errors/index.js';
import { readPluginSource, WASM_MAX_BYTES } from '../../manifests/index.js';
import { goodManifest, set, sha256, unset, wat, writePlugin, type PluginFiles } from './helpers.js';

t.test('a good plugin directory reads back with its manifest, bytes, digests and module report', async (t) => {
  const dir = await writePlugin(t.testdir());
  const src = await readPluginSource(dir);
  const wasm = await wat('echo');
  t.equal(src.manifest.id, 'echo-tools');
  t.equal(src.wasmSha256, sha256(wasm));
  t.equal(src.manifestSha256, sha256(src.manifestBytes));
  t.same(Buffer.compare(src.wasmBytes, wasm), 0);
  t.same(src.report.exports.map((e) => e.name).sort(), ['echo', 'memory', 'shout']);
  t.ok(Object.isFrozen(src.manifest) && Object.isFrozen(src.manifest.contributes.tools[0]), 'the manifest is deeply frozen');
});

t.test('a module in a subdirectory and a manifest with every optional part are accepted', async (t) => {
  const dir = await writePlugin(t.testdir(), {
    edit: (m) => {
      set(m, 'wasm.path', 'build/out/plugin.wasm');
      m.requests = {
        egress: [{ host: 'api.example.com', methods: ['GET', 'POST'] }],
        secrets: [{ name: 'API_TOKEN', destinations: ['api.example.com'] }],
        kv: { quota_bytes: 1024 },
        memory: { max_pages: 16 },
        time: { timeout_ms: 1000 },
      };
      m.risk = ['network', 'secrets', 'storage', 'destructive'];
      m.config_schema = { type: 'object', properties: { token: { type: 'string', 'x-tyrum-secret': true }, n: { type: 'integer', default: 3 } } };
    },
  });
  const src = await readPluginSource(dir);
  t.equal(src.manifest.wasm.path, 'build/out/plugin.wasm');
  t.equal(src.report.memory?.maxPages, 16, 'a module without a memory maximum is capped at the requested pages');
});

interface BadCase {
  name: string;
  files?: PluginFiles;
  /** Extra setup after the plugin is written (links, sparse files). */
  setup?: (dir: string, outside: string) => void;
  code: ErrorCode;
  message: RegExp;
}

const toolSchema = (i: number, schema: unknown) => (m: Record<string, unknown>) => set(m, `contributes.tools.${i}.input_schema`, schema);
const nested = (depth: number): Record<string, unknown> => {
  let s: Record<string, unknown> = { type: 'string' };
  for (let i = 0; i < depth; i++) s = { type: 'object', properties: { a: s } };
  return s;
};

const CASES: BadCase[] = [
  { name: 'a missing id', files: { edit: (m) => unset(m, 'id') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/id: required field is missing/ },
  { name: 'a missing wasm digest', files: { edit: (m) => unset(m, 'wasm.sha256') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/wasm\/sha256: required field is missing/ },
  { name: 'a missing tool description', files: { edit: (m) => unset(m, 'contributes.tools.1.description') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/contributes\/tools\/1\/description: required field is missing/ },
  { name: 'a version of the wrong type', files: { edit: (m) => set(m, 'version', 100000) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/version: must be string/ },
  { name: 'tools that are not an array', files: { edit: (m) => set(m, 'contributes.tools', {}) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/contributes\/tools: must be array/ },
  { name: 'an unknown top-level key', files: { edit: (m) => set(m, 'permissions', ['all']) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/: unknown key "permissions"/ },
  { name: 'an unknown key in a tool', files: { edit: (m) => set(m, 'contributes.tools.0.exec', 'sh') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/contributes\/tools\/0: unknown key "exec"/ },
  {
    name: 'an unknown key in an egress rule',
    files: { edit: (m) => ((m.requests = { egress: [{ host: 'a.example', wildcard: true }] }), (m.risk = ['network'])) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /\/requests\/egress\/0: unknown key "wildcard"/,
  },
  { name: 'an unknown tool effect', files: { edit: (m) => set(m, 'contributes.tools.0.effect', 'harmless') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/contributes\/tools\/0\/effect: must be equal to one of the allowed values \("read_only", "state_changing"\)/ },
  { name: 'an unsupported manifest_version', files: { edit: (m) => set(m, 'manifest_version', 2) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/manifest_version: must be equal to constant/ },
  { name: 'an id with capitals', files: { edit: (m) => set(m, 'id', 'Echo') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/id: must match pattern/ },
  { name: 'a version that is not semver', files: { edit: (m) => set(m, 'version', '1.0.x') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^version: "1\.0\.x" is not a valid semantic version/ },
  { name: 'a non-canonical version', files: { edit: (m) => set(m, 'version', 'v1.0.0') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^version: "v1\.0\.0" is not a valid semantic version/ },
  { name: 'a version with build metadata', files: { edit: (m) => set(m, 'version', '1.0.0+build.5') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^version: "1\.0\.0\+build\.5" has build metadata/ },
  { name: 'an engines range that is not a range', files: { edit: (m) => set(m, 'engines.tyrum', 'latest please') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^engines\.tyrum: "latest please" is not a valid semver range/ },
  { name: 'an incompatible engines range', files: { edit: (m) => set(m, 'engines.tyrum', '^2.0.0') }, code: 'TYRUM_ERR_PLUGIN_INCOMPATIBLE', message: /plugin requires host API \^2\.0\.0; this gateway provides 1\.0\.0/ },
  { name: 'a wasm path climbing out with ..', files: { edit: (m) => set(m, 'wasm.path', '../outside.wasm') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/wasm\/path: must match pattern/ },
  { name: 'an absolute wasm path', files: { edit: (m) => set(m, 'wasm.path', '/etc/plugin.wasm') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/wasm\/path: must match pattern/ },
  { name: 'a wasm path with an empty segment', files: { edit: (m) => set(m, 'wasm.path', 'build//plugin.wasm') }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^wasm\.path: "build\/\/plugin\.wasm" must be a plain relative path/ },
  {
    name: 'a module that is a symbolic link out of the plugin',
    setup: (dir, outside) => {
      unlinkSync(join(dir, 'plugin.wasm'));
      symlinkSync(join(outside, 'outside.wasm'), join(dir, 'plugin.wasm'));
    },
    code: 'TYRUM_ERR_PLUGIN_PACKAGE',
    message: /wasm\.path "plugin\.wasm": is a symbolic link/,
  },
  {
    name: 'a module under a symlinked directory',
    files: { edit: (m) => set(m, 'wasm.path', 'lib/plugin.wasm') },
    setup: (dir, outside) => {
      // lib/ becomes a link to a directory outside the plugin holding a plugin.wasm.
      writeFileSync(join(outside, 'plugin.wasm'), 'x');
      rmSync(join(dir, 'lib'), { recursive: true });
      symlinkSync(outside, join(dir, 'lib'));
    },
    code: 'TYRUM_ERR_PLUGIN_PACKAGE',
    message: /wasm\.path "lib\/plugin\.wasm": "lib" is a symbolic link/,
  },
  {
    name: 'a manifest that is a symbolic link',
    setup: (dir, outside) => {
      writeFileSync(join(outside, 'm.json'), '{}');
      unlinkSync(join(dir, 'tyrum.plugin.json'));
      symlinkSync(join(outside, 'm.json'), join(dir, 'tyrum.plugin.json'));
    },
    code: 'TYRUM_ERR_PLUGIN_PACKAGE',
    message: /tyrum\.plugin\.json: is a symbolic link/,
  },
  { name: 'a missing module file', setup: (dir) => unlinkSync(join(dir, 'plugin.wasm')), code: 'TYRUM_ERR_PLUGIN_PACKAGE', message: /wasm\.path "plugin\.wasm": file not found/ },
  { name: 'a module above the size cap', setup: (dir) => truncateSync(join(dir, 'plugin.wasm'), WASM_MAX_BYTES + 1), code: 'TYRUM_ERR_PLUGIN_PACKAGE', message: /wasm\.path "plugin\.wasm": file is 67108865 bytes, above the 67108864-byte limit/ },
  { name: 'a manifest above the size cap', files: { raw: '{' + ' '.repeat(300 * 1024) + '}' }, code: 'TYRUM_ERR_PLUGIN_PACKAGE', message: /tyrum\.plugin\.json: file is \d+ bytes, above the 262144-byte limit/ },
  { name: 'a JSON syntax error', files: { raw: '{\n  "id": "x",\n  "name": }\n' }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /unexpected "}" at line 3, column 11 \(\/name\)/ },
  { name: 'a duplicate JSON key', files: { raw: '{"id": "a", "id": "b"}' }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /duplicate key "id" at line 1, column 13/ },
  { name: 'a __proto__ key', files: { raw: '{"contributes": {"__proto__": {"tools": []}}}' }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /key "__proto__" is not allowed at line 1, column 18 \(\/contributes\)/ },
  { name: 'a constructor key deep inside a schema', files: { edit: toolSchema(0, { type: 'object', properties: { constructor: { type: 'string' } } }) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /key "constructor" is not allowed .*\/contributes\/tools\/0\/input_schema\/properties/ },
  { name: 'invalid UTF-8', files: { raw: Buffer.from([0x7b, 0xff, 0x7d]) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /not valid UTF-8/ },
  {
    name: 'duplicate tool ids',
    files: { edit: (m) => set(m, 'contributes.tools.1.id', 'echo') },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.tools\[1\]\.id: duplicate tool id "echo" \(also contributes\.tools\[0\]\.id\)/,
  },
  {
    name: 'a tool export the module lacks',
    files: { edit: (m) => set(m, 'contributes.tools.1.export', 'nope') },
    code: 'TYRUM_ERR_SANDBOX_MODULE_REJECTED',
    message: /^contributes\.tools\[1\]\.export "nope": the module has no such exported function/,
  },
  { name: 'a module that imports WASI', code: 'TYRUM_ERR_SANDBOX_MODULE_REJECTED', message: /wasm\.path "plugin\.wasm": .*WASI is not available/ },
  { name: 'a module whose initial memory is above the cap', code: 'TYRUM_ERR_SANDBOX_MODULE_REJECTED', message: /initial memory is 300 pages, above the cap of 256 pages \(requests\.memory\.max_pages sets the cap\)/ },
  { name: 'a wasm digest that does not match', files: { edit: (m) => set(m, 'wasm.sha256', 'a'.repeat(64)) }, code: 'TYRUM_ERR_PLUGIN_INTEGRITY', message: /^wasm sha256 mismatch: manifest says a{64}, file is [0-9a-f]{64}$/ },
  {
    name: 'an under-declared network risk',
    files: { edit: (m) => (m.requests = { egress: [{ host: 'api.example.com' }] }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^risk: must declare "network" \(implied by requests\.egress\)/,
  },
  {
    name: 'an under-declared state_changing risk',
    files: { edit: (m) => set(m, 'contributes.tools.1.effect', 'state_changing') },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^risk: must declare "state_changing" \(implied by a tool with effect "state_changing"\)/,
  },
  {
    name: 'a duplicate secret request',
    files: { edit: (m) => ((m.requests = { secrets: [{ name: 'A', destinations: ['x.example'] }, { name: 'A', destinations: ['y.example'] }] }), (m.risk = ['secrets'])) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^requests\.secrets\[1\]\.name: duplicate secret "A"/,
  },
  { name: 'a channel without its fields', files: { edit: (m) => set(m, 'contributes.channels', [{}]) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /\/contributes\/channels\/0\/id: required field is missing/ },
  {
    name: 'a channel whose API base carries credentials',
    files: {
      edit: (m) =>
        set(m, 'contributes.channels', [
          { id: 'chat', description: 'd', verify: { scheme: 'hmac_sha256' }, inbound: { export: 'word_count' }, outbound: { export: 'transform', api_base: 'https://user:pw@api.example.com', paths: ['/send'], destination: { chat: '/chat_id' } } },
        ]),
    },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.channels\[0\]\.outbound\.api_base: .* is not an http\(s\) URL without credentials/,
  },
  { name: 'an input schema that is not an object schema', files: { edit: toolSchema(0, { type: 'string' }) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^contributes\.tools\[0\]\.input_schema: must have "type": "object"/ },
  {
    name: 'a 100 KiB input schema',
    files: { edit: toolSchema(1, { type: 'object', description: 'x'.repeat(100 * 1024) }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.tools\[1\]\.input_schema: schema is \d+ bytes serialized, above the 65536-byte limit/,
  },
  { name: 'a schema nested 1000 deep', files: { edit: toolSchema(0, nested(1000)), compact: true }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /nesting deeper than 128 levels at line \d+, column \d+ \(\/contributes\/tools\/0\/input_schema\/properties\/a/ },
  { name: 'a schema nested 40 deep', files: { edit: toolSchema(0, nested(40)) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^contributes\.tools\[0\]\.input_schema: schema nests deeper than 32 levels at \/properties\/a/ },
  {
    name: 'a remote $ref',
    files: { edit: toolSchema(0, { type: 'object', properties: { q: { $ref: 'https://evil.example/schema.json' } } }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.tools\[0\]\.input_schema: \$ref at \/properties\/q\/\$ref is not local/,
  },
  {
    name: 'a catastrophic pattern',
    files: { edit: toolSchema(1, { type: 'object', properties: { q: { type: 'string', pattern: '^(a+)+$' } } }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.tools\[1\]\.input_schema: pattern at \/properties\/q\/pattern has nested quantifiers/,
  },
  {
    name: 'a catastrophic pattern in an output schema',
    files: { edit: (m) => set(m, 'contributes.tools.0.output_schema', { type: 'object', patternProperties: { '^(a|a)*$': {} } }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^contributes\.tools\[0\]\.output_schema: patternProperties key at \/patternProperties\/\^\(a\|a\)\*\$ repeats an alternation whose branches overlap/,
  },
  { name: 'a config schema that is not an object schema', files: { edit: (m) => (m.config_schema = { type: 'array' }) }, code: 'TYRUM_ERR_MANIFEST_INVALID', message: /^config_schema: must have "type": "object"/ },
  {
    name: 'a secret config field that is not a string',
    files: { edit: (m) => (m.config_schema = { type: 'object', properties: { token: { type: 'object', 'x-tyrum-secret': true } } }) },
    code: 'TYRUM_ERR_MANIFEST_INVALID',
    message: /^config_schema: secret field at \/properties\/token must have "type": "string"/,
  },
];

// The WASI and memory cases need their own modules.
const MODULE_FOR: Record<string, string> = { 'a module that imports WASI': 'wasi', 'a module whose initial memory is above the cap': 'big-memory' };

t.test('E5: bad manifests and packages are refused quickly, naming the field or cause', async (t) => {
  t.ok(CASES.length >= 20, `${CASES.length} cases`);
  const root = t.testdir();
  const outside = join(root, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'outside.wasm'), await wat('echo'));
  for (const [i, c] of CASES.entries()) {
    const dir = join(root, `p${i}`);
    const module = MODULE_FOR[c.name];
    await writePlugin(dir, { ...c.files, ...(module ? { wasm: await wat(module) } : {}) });
    c.setup?.(dir, outside);
    const start = performance.now();
    let err: unknown;
    try {
      await readPluginSource(dir);
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - start;
    if (!isTyrumError(err)) {
      t.fail(`${c.name}: expected a TyrumError, got ${String(err)}`);
      continue;
    }
    t.equal(err.code, c.code, `${c.name}: code`);
    t.match(err.message, c.message, `${c.name}: ${err.message.slice(0, 200)}`);
    // A hang guard, not a benchmark: catastrophic work would take far longer than this.
    t.ok(ms < 5000, `${c.name}: refused in ${ms.toFixed(1)} ms`);
  }
});

t.test('schema failures list every issue, not just the first', async (t) => {
  const dir = await writePlugin(t.testdir(), {
    edit: (m) => {
      unset(m, 'name');
      set(m, 'publisher', 7);
      set(m, 'contributes.tools.0.effect', 'maybe');
      set(m, 'extra', true);
    },
  });
  const err = await readPluginSource(dir).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_MANIFEST_INVALID'));
  const msg = (err as Error).message;
  for (const part of ['/name: required field is missing', '/publisher: must be string', '/contributes/tools/0/effect: must be equal to one of the allowed values', '/: unknown key "extra"']) {
    t.ok(msg.includes(part), `names ${part}`);
  }
  t.equal(((err as { details: { issues: unknown[] } }).details.issues).length, 4, 'one issue per problem (union branches collapsed)');
});

t.test('a manifest targeting a host API version can be checked against another one', async (t) => {
  const dir = await writePlugin(t.testdir(), { edit: (m) => set(m, 'engines.tyrum', '^2.1.0') });
  const src = await readPluginSource(dir, { hostApiVersion: '2.3.0' });
  t.equal(src.manifest.engines.tyrum, '^2.1.0');
  const err = await readPluginSource(dir).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_INCOMPATIBLE'));
  t.same((err as { details: unknown }).details, { field: 'engines.tyrum', required: '^2.1.0', provided: '1.0.0' });
});

t.test('a path that does not exist or is a special file is refused as a package problem', async (t) => {
  const err = await readPluginSource(join(t.testdir(), 'nope')).catch((e: unknown) => e);
  t.ok(isTyrumError(err, 'TYRUM_ERR_PLUGIN_PACKAGE'));
  t.match((err as Error).message, /not found/);
  const err2 = await readPluginSource('/dev/null').catch((e: unknown) => e);
  t.ok(isTyrumError(err2, 'TYRUM_ERR_PLUGIN_PACKAGE'));
});

t.test('the good manifest helper is itself valid (guards the table above)', async (t) => {
  const wasm = await wat('echo');
  t.equal((goodManifest(sha256(wasm)).contributes as { tools: unknown[] }).tools.length, 2);
});
