// `tyrum plugin new` (sdk/author/scaffold.ts through sdk/author/cli/new-build.ts): what a new
// plugin holds in each language, that it stands alone and its manifest, test file and README agree,
// and the refusals (bad name, unknown language, an existing non-empty directory), each with its
// message. Building what it writes is test/sdk/author/build.test.ts.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { Ajv } from 'ajv';
import { isTyrumError } from '../../../core/errors/index.js';
import { pluginNew } from '../../../sdk/author/cli/new-build.js';
import { asToolchainVersions, PLACEHOLDER_SHA256, scaffoldPlugin, templatesDir } from '../../../sdk/author/scaffold.js';
import { parseManifest } from '../../../manifests/manifest.js';
import type { PluginManifest } from '../../../schemas/index.js';
import type { Io } from '../../../core/cli/main.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Run a command function the way core/cli/main.ts does: a thrown TyrumError becomes its exit code and message. */
async function cli(fn: (argv: string[], io: Io) => Promise<number>, argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
  try {
    const code = await fn(argv, io);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } catch (e) {
    if (!isTyrumError(e)) throw e;
    err.push(`tyrum: ${e.message} [${e.code}]`);
    return { code: e.code === 'TYRUM_ERR_INVALID_ARGUMENT' ? 2 : 1, out: out.join('\n'), err: err.join('\n') };
  }
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

const read = (...p: string[]) => readFileSync(join(...p), 'utf8');
const CASE_KEYS = ['tool', 'input', 'expect', 'expect_error', 'config', 'kv', 'http'];

/** What both languages share: the manifest, the test file and the README, consistent with each other. */
function checkCommon(t: Test, dir: string, id: string): void {
  const manifest = parseManifest(readFileSync(join(dir, 'tyrum.plugin.json'))) as PluginManifest;
  t.match(manifest, { manifest_version: 1, id, version: '0.1.0', engines: { tyrum: '^1.0.0' } }, 'the manifest passes the gateway checks');
  t.same(manifest.wasm, { path: 'build/plugin.wasm', sha256: PLACEHOLDER_SHA256 }, 'the module path and a placeholder digest that build fills');
  t.equal(manifest.contributes.tools.length, 1);
  const tool = manifest.contributes.tools[0]!;
  t.match(tool, { id: 'hello', export: 'hello', effect: 'read_only' });
  t.match(tool.input_schema, { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string' } } }, 'strict input schema');
  t.match(tool.output_schema, { type: 'object', additionalProperties: false, required: ['greeting'], properties: { greeting: { type: 'string' } } }, 'strict output schema');
  t.match(manifest.config_schema, { type: 'object', properties: { greeting: { type: 'string', default: 'Hello' } } }, 'one optional config field with a default');
  t.notOk((manifest.config_schema as { required?: unknown }).required, 'the config field is optional');
  t.equal(manifest.requests, undefined, 'asks for nothing');
  t.equal(manifest.risk, undefined, 'declares no risk');

  // The test file: an array of cases with only the documented keys, consistent with the schemas.
  const cases = JSON.parse(read(dir, 'tests', 'hello.test.json')) as Record<string, unknown>[];
  t.ok(Array.isArray(cases) && cases.length >= 3, 'tests/hello.test.json is an array of cases');
  const ajv = new Ajv({ strict: false, useDefaults: true });
  const input = ajv.compile(tool.input_schema);
  const output = ajv.compile(tool.output_schema);
  const config = ajv.compile(manifest.config_schema!);
  for (const [i, c] of cases.entries()) {
    t.same(Object.keys(c).filter((k) => !CASE_KEYS.includes(k)), [], `case ${i} has only the documented keys`);
    t.equal(c.tool, 'hello');
    t.ok(input(c.input), `case ${i}: input satisfies the input schema`);
    t.notOk('expect' in c && 'expect_error' in c, `case ${i}: not both expect and expect_error`);
    if ('expect' in c) t.ok(output(c.expect), `case ${i}: expect satisfies the output schema`);
    if ('config' in c) t.ok(config(c.config), `case ${i}: config satisfies the config schema`);
  }
  t.ok(cases.some((c) => 'expect_error' in c), 'one case expects an error');
  t.ok(cases.some((c) => 'config' in c), 'one case sets config');
  t.ok(cases.some((c) => /[^ -~]/.test(JSON.stringify(c.expect ?? ''))), 'one case has non-ASCII output');

  const readme = read(dir, 'README.md');
  for (const cmd of ['tyrum plugin build', 'tyrum plugin test', 'tyrum plugin pack', 'tyrum plugin install', `tyrum plugin grant ${id}`, `tyrum plugin enable ${id}`, `tyrum tool call ${id}.hello`]) {
    t.ok(readme.includes(cmd), `README shows ${cmd}`);
  }
  t.match(readme, /## Tests: `tests\/\*\.test\.json`/, 'README documents the test format');
  for (const key of CASE_KEYS) t.ok(readme.includes(`| \`${key}\` |`), `README documents the case key ${key}`);

  // Standalone: nothing refers outside the directory, no placeholder is left.
  for (const f of tree(dir)) {
    const text = read(dir, f);
    t.notMatch(text, /\{\{[a-z_]+\}\}/, `${f}: every placeholder is filled`);
    t.notMatch(text, /\.\.\/\.\.\/|_shared\/assembly|plugins\/_shared/, `${f}: no path outside the plugin`);
  }
}

t.test('assemblyscript: manifest, source, asconfig, package.json, a test and a README', async (t) => {
  const parent = t.testdir();
  const r = await cli(pluginNew, ['hello-as', '--dir', parent]);
  t.equal(r.code, 0, r.err);
  const dir = join(parent, 'hello-as');
  const files = ['.gitignore', 'README.md', 'asconfig.json', 'assembly/index.ts', 'assembly/io.ts', 'assembly/json.ts', 'assembly/tsconfig.json', 'package.json', 'tests/hello.test.json', 'tyrum.plugin.json'];
  t.same(tree(dir), files);
  t.match(r.out, /Created hello-as \(AssemblyScript\) in /);
  for (const f of files) t.ok(r.out.includes(`  ${f}`), `lists ${f}`);
  t.match(r.out, /tyrum plugin build/);
  checkCommon(t, dir, 'hello-as');

  const asconfig = JSON.parse(read(dir, 'asconfig.json')) as { entries: string[]; targets: { release: Record<string, unknown> }; options: Record<string, unknown> };
  t.same(asconfig.entries, ['assembly/index.ts']);
  t.equal(asconfig.options.runtime, 'incremental', 'the incremental runtime, never stub');
  t.equal(asconfig.targets.release.outFile, 'build/plugin.wasm');
  const index = read(dir, 'assembly', 'index.ts');
  t.match(index, /export function hello\(\): i32/);
  t.match(index, /from "@extism\/as-pdk"/);
  t.match(index, /from "\.\/io"/, 'the helpers are imported from inside the plugin');
  t.match(index, /__collect\(\)/);
  t.notMatch(index, /outputString\(/, 'never as-pdk\'s outputString (it cuts non-ASCII output short)');
  const pkg = JSON.parse(read(dir, 'package.json')) as { name: string; private: boolean; devDependencies: Record<string, string>; dependencies?: unknown };
  const versions = asToolchainVersions();
  t.same(pkg.devDependencies, { '@extism/as-pdk': versions.asPdk, assemblyscript: versions.assemblyscript }, 'pins the toolchain Tyrum builds with, from the npm registry');
  t.equal(pkg.name, 'hello-as');
  t.equal(pkg.private, true);
  t.equal(pkg.dependencies, undefined);
  t.match(read(dir, '.gitignore'), /^build\/$/m);
});

t.test('c: manifest, src/plugin.c with its own tyrum_pdk.h, a test and a README', async (t) => {
  const parent = t.testdir();
  const r = await cli(pluginNew, ['hello-c', '--lang', 'c', '--dir', parent]);
  t.equal(r.code, 0, r.err);
  const dir = join(parent, 'hello-c');
  t.same(tree(dir), ['.gitignore', 'README.md', 'src/plugin.c', 'src/tyrum_pdk.h', 'tests/hello.test.json', 'tyrum.plugin.json']);
  t.match(r.out, /Created hello-c \(C\) in /);
  checkCommon(t, dir, 'hello-c');
  const header = read(dir, 'src', 'tyrum_pdk.h');
  for (const fn of ['input_length', 'input_load_u8', 'input_load_u64', 'alloc', 'output_set', 'error_set', 'config_get']) {
    t.ok(header.includes(`TYRUM_EXTISM_IMPORT("${fn}")`), `the header imports ${fn}`);
  }
  t.match(header, /__attribute__\(\(import_module\("extism:host\/env"\), import_name\(name\)\)\)/);
  const source = read(dir, 'src', 'plugin.c');
  t.match(source, /#include "tyrum_pdk\.h"/);
  t.match(source, /^int32_t hello\(void\) \{/m, 'the tool is a non-static function named like its export');
  t.match(read(dir, 'README.md'), /clang --target=wasm32 -O2 -nostdlib -mbulk-memory/);
});

t.test('the default directory is the current one; an existing empty directory is used', async (t) => {
  const parent = t.testdir({ empty: {} });
  const cwd = process.cwd();
  process.chdir(parent);
  t.teardown(() => process.chdir(cwd));
  const r = await cli(pluginNew, ['empty', '--lang', 'c']);
  t.equal(r.code, 0, r.err);
  t.ok(existsSync(join(parent, 'empty', 'tyrum.plugin.json')));
  t.match(r.out, /in empty\/:/);
  t.match(r.out, /cd empty\n/);
});

t.test('an existing non-empty directory is refused and left alone', async (t) => {
  const parent = t.testdir({ taken: { 'notes.txt': 'mine' } });
  const r = await cli(pluginNew, ['taken', '--dir', parent]);
  t.equal(r.code, 1);
  t.match(r.err, /taken already exists and is not empty; choose another name or --dir, or remove it \[TYRUM_ERR_CONFLICT\]/);
  t.same(readdirSync(join(parent, 'taken')), ['notes.txt'], 'nothing added');
  t.equal(read(parent, 'taken', 'notes.txt'), 'mine');

  writeFileSync(join(parent, 'file'), 'x');
  const file = await cli(pluginNew, ['file', '--dir', parent]);
  t.equal(file.code, 1);
  t.match(file.err, /file already exists and is not a directory/);
});

t.test('a name that cannot be a manifest id is refused, naming the pattern', async (t) => {
  const parent = t.testdir();
  for (const name of ['Hello', 'a', '1plugin', '-x', 'x-', 'my_plugin', 'my plugin', 'é', `a${'b'.repeat(64)}`, '../up']) {
    const r = await cli(pluginNew, ['--dir', parent, '--', name]);
    t.equal(r.code, 2, name);
    t.ok(r.err.includes(`invalid plugin name ${JSON.stringify(name)}`), `${name}: named`);
    t.ok(r.err.includes('^[a-z][a-z0-9-]{0,62}[a-z0-9]$'), `${name}: the pattern shown`);
  }
  t.same(readdirSync(parent), [], 'nothing created');
  for (const name of ['ab', 'a1', 'hello-world', `a${'b'.repeat(63)}`]) {
    t.equal((await cli(pluginNew, [name, '--dir', parent, '--lang', 'c'])).code, 0, `${name} is fine`);
  }
});

t.test('an unknown --lang, a missing name, extra arguments and unknown flags are usage errors', async (t) => {
  const parent = t.testdir();
  const rust = await cli(pluginNew, ['x1', '--lang', 'rust', '--dir', parent]);
  t.equal(rust.code, 2);
  t.match(rust.err, /unknown --lang "rust" \(known: assemblyscript, c\)/);
  t.throws(() => scaffoldPlugin({ name: 'x1', lang: 'go' as never, parent }), /unknown language "go" \(known: assemblyscript, c\)/);
  const missing = await cli(pluginNew, ['--dir', parent]);
  t.equal(missing.code, 2);
  t.match(missing.err, /missing the plugin NAME\nusage: tyrum plugin new NAME \[--kind tool\|channel\] \[--lang assemblyscript\|c\] \[--dir DIR\]/);
  const extra = await cli(pluginNew, ['x1', 'x2', '--dir', parent]);
  t.equal(extra.code, 2);
  t.match(extra.err, /unexpected argument "x2"/);
  const flag = await cli(pluginNew, ['x1', '--language', 'c']);
  t.equal(flag.code, 2);
  t.match(flag.err, /--language/);
  t.same(readdirSync(parent), [], 'nothing created');
  const help = await cli(pluginNew, ['--help']);
  t.equal(help.code, 0);
  t.match(help.out, /^usage: tyrum plugin new NAME/);
});

t.test("the AssemblyScript helpers are verbatim copies of the project's own (the PDK's JSON runtime, plugins/_shared io)", async (t) => {
  const templates = templatesDir();
  t.equal(read(templates, 'assemblyscript', 'assembly', 'io.ts.tmpl'), read(ROOT, 'plugins', '_shared', 'assembly', 'io.ts'), 'io.ts');
  const dir = join(t.testdir(), 'out');
  t.equal((await cli(pluginNew, ['copycheck', '--dir', dir])).code, 0);
  t.equal(read(dir, 'copycheck', 'assembly', 'json.ts'), read(ROOT, 'sdk', 'pdk', 'assemblyscript', 'json.ts'), 'json.ts is the PDK runtime');
  t.ok(existsSync(join(templates, 'common', 'test-format.md.tmpl')));
});
