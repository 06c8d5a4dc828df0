// `tyrum plugin build` (sdk/author/build.ts through sdk/author/cli/new-build.ts): a scaffolded
// plugin in each language builds into a directory that readPluginSource accepts (and so does its
// build/), and its hello tool works in the real sandbox, UTF-8 and config included. Every failure
// exits 1 naming its cause: a missing export, a memory maximum above the request, a compiler error
// (verbatim), an import the sandbox does not serve, and setup problems.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import t, { type Test } from 'tap';
import { isTyrumError } from '../../../core/errors/index.js';
import { pluginBuild, pluginNew } from '../../../sdk/author/cli/new-build.js';
import { checkModule, clangEnv, manifestWithDigest, type BuildResult } from '../../../sdk/author/build.js';
import { PLACEHOLDER_SHA256, scaffoldManifest } from '../../../sdk/author/scaffold.js';
import { parseManifest } from '../../../manifests/manifest.js';
import { readPluginSource, sha256Hex } from '../../../manifests/source.js';
import { validatePluginConfig } from '../../../manifests/config.js';
import { SandboxPool } from '../../../sandbox/index.js';
import type { PluginManifest } from '../../../schemas/index.js';
import type { Io } from '../../../core/cli/main.js';
import { skipWithoutClang } from '../../helpers/toolchain.js';

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

/** The C cases need clang and wasm-ld; without them they are skipped with the reason. */
const C = { skip: skipWithoutClang() };

const pool = new SandboxPool({ workers: 1 });
t.teardown(() => pool.close());

/** A new plugin `id` in a fresh test directory. */
async function scaffold(t: Test, id: string, lang: 'assemblyscript' | 'c'): Promise<string> {
  const parent = t.testdir();
  const r = await cli(pluginNew, [id, '--lang', lang, '--dir', parent]);
  if (r.code !== 0) throw new Error(`scaffold failed: ${r.err}`);
  return join(parent, id);
}

const readJson = <T = Record<string, unknown>>(...p: string[]): T => JSON.parse(readFileSync(join(...p), 'utf8')) as T;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b: Uint8Array) => new TextDecoder('utf-8', { fatal: true }).decode(b);
const noSecrets = { secretExists: () => false, secretGranted: () => false };

/** Load the plugin in `dir` as the gateway would (config validated, defaults applied, as strings) and call hello. */
async function hello(key: string, manifest: PluginManifest, wasm: Uint8Array, config: Record<string, unknown>, args: unknown): Promise<unknown> {
  const effective = validatePluginConfig(manifest, config, noSecrets);
  await pool.load(key, {
    wasm,
    expectedSha256: manifest.wasm.sha256,
    exports: manifest.contributes.tools.map((x) => x.export),
    config: Object.fromEntries(Object.entries(effective).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
  });
  try {
    return JSON.parse(dec((await pool.call(key, 'hello', enc(args))).output));
  } finally {
    await pool.unload(key);
  }
}

/** new → build → installable directory and build/, the manifests carrying the digest, and a working hello tool. */
async function newBuildCall(t: Test, lang: 'assemblyscript' | 'c'): Promise<void> {
  const id = lang === 'c' ? 'greeter-c' : 'greeter-as';
  const dir = await scaffold(t, id, lang);
  const before = readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8');
  const r = await cli(pluginBuild, [dir, '--json']);
  t.equal(r.code, 0, r.err);
  const result = JSON.parse(r.out) as BuildResult & { ok: boolean };
  t.equal(result.ok, true);
  t.match(result, { id, version: '0.1.0', lang, wasmPath: 'build/plugin.wasm', sourceManifestChanged: true, tools: [{ id: 'hello', export: 'hello' }] });
  t.match(result.compiler, lang === 'c' ? /clang/ : /^AssemblyScript 0\.28\.\d+$/);
  t.same(result.manifests, ['tyrum.plugin.json', 'build/tyrum.plugin.json']);
  t.equal(result.memory.declaredMaxPages, null, 'no memory maximum: the gateway caps it');
  t.equal(result.memory.capPages, 256);

  const wasm = readFileSync(join(dir, 'build', 'plugin.wasm'));
  const sha = sha256Hex(wasm);
  t.equal(result.sha256, sha);
  t.equal(result.wasmBytes, wasm.byteLength);

  // The plugin directory itself is installable: its manifest now carries the digest, nothing else changed.
  const src = await readPluginSource(dir);
  t.equal(src.wasmSha256, sha, 'readPluginSource accepts the plugin directory');
  t.same(src.manifest.wasm, { path: 'build/plugin.wasm', sha256: sha });
  t.equal(readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8'), before.replace(PLACEHOLDER_SHA256, sha), 'only the digest changed in the source manifest');
  t.same(src.manifest, { ...scaffoldManifest(id), wasm: { path: 'build/plugin.wasm', sha256: sha } });
  // And so is build/, like a first-party plugin's.
  const built = await readPluginSource(join(dir, 'build'));
  t.equal(built.wasmSha256, sha, 'readPluginSource accepts build/');
  t.same(built.manifest, { ...src.manifest, wasm: { path: 'plugin.wasm', sha256: sha } });
  t.same(Object.keys(readJson(dir, 'build', 'tyrum.plugin.json')), Object.keys(readJson(dir, 'tyrum.plugin.json')), 'key order kept');
  t.same(src.report.imports.filter((i) => i.module !== 'extism:host/env' && !(i.module === 'env' && i.name === 'abort')), [], 'imports only the Extism kernel (and env.abort)');

  // It works: UTF-8 in and out, the config default and an override, and the plugin's own check.
  const m = src.manifest;
  t.same(await hello(`${id}-1`, m, wasm, {}, { name: 'Ada' }), { greeting: 'Hello, Ada!' }, 'config default applied');
  t.same(await hello(`${id}-2`, m, wasm, {}, { name: 'Zoë 🌍 "\\ 日本' }), { greeting: 'Hello, Zoë 🌍 "\\ 日本!' }, 'non-ASCII and escapes survive');
  t.same(await hello(`${id}-3`, m, wasm, { greeting: 'Grüß dich' }, { name: 'Ada' }), { greeting: 'Grüß dich, Ada!' }, 'configured greeting');
  await t.rejects(hello(`${id}-4`, m, wasm, {}, { name: '   ' }), /"name" must not be blank/);
  await t.rejects(hello(`${id}-5`, m, wasm, {}, { name: 'Ada', extra: 1 }), /unknown key/);
  await t.rejects(hello(`${id}-6`, m, wasm, {}, {}), /"name" is required/);

  // The scaffold's own test cases hold against the module.
  const cases = readJson<{ tool: string; input: unknown; expect?: unknown; expect_error?: string; config?: Record<string, unknown> }[]>(dir, 'tests', 'hello.test.json');
  for (const [i, c] of cases.entries()) {
    const call = hello(`${id}-case-${i}`, m, wasm, c.config ?? {}, c.input);
    if (c.expect_error !== undefined) await t.rejects(call, { message: new RegExp(c.expect_error) }, `case ${i}`);
    else t.same(await call, c.expect, `case ${i}`);
  }
}

t.test('assemblyscript: new, build, readPluginSource, call', (t) => newBuildCall(t, 'assemblyscript'));
t.test('c: new, build, readPluginSource, call', C, (t) => newBuildCall(t, 'c'));

t.test('c: builds from the current directory by default; a rebuild is reproducible; human output', C, async (t) => {
  const dir = await scaffold(t, 'again', 'c');
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  const first = await cli(pluginBuild, []);
  t.equal(first.code, 0, first.err);
  const sha = sha256Hex(readFileSync(join(dir, 'build', 'plugin.wasm')));
  t.match(first.out, /^Built again 0\.1\.0 with .*clang.* in [\d.]+ s$/m);
  t.ok(first.out.includes(`  module:   build/plugin.wasm`), first.out);
  t.ok(first.out.includes(`sha256 ${sha}`));
  t.match(first.out, /memory: {3}initial \d+ pages, maximum none \(the gateway caps it at 256\) of requests\.memory\.max_pages 256/);
  t.match(first.out, /wasm\.sha256 written to tyrum\.plugin\.json and build\/tyrum\.plugin\.json$/m);
  t.match(first.out, /^next: tyrum plugin test, then/m);
  const second = await cli(pluginBuild, ['.']);
  t.equal(second.code, 0, second.err);
  t.match(second.out, /\(unchanged: same module as before\)/);
  t.equal(readJson<PluginManifest>(dir, 'tyrum.plugin.json').wasm.sha256, sha, 'same digest');
  const help = await cli(pluginBuild, ['--help']);
  t.match(help.out, /^usage: tyrum plugin build \[DIR\] \[--json\]/);
  t.equal((await cli(pluginBuild, ['a', 'b'])).code, 2, 'one DIR at most');
});

t.test('a tool whose export the module lacks fails the build, naming the tool and the export', C, async (t) => {
  const dir = await scaffold(t, 'missing', 'c');
  const manifest = readJson<PluginManifest & { contributes: { tools: Record<string, unknown>[] } }>(dir, 'tyrum.plugin.json');
  manifest.contributes.tools.push({ ...manifest.contributes.tools[0], id: 'goodbye', export: 'say_goodbye' });
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  writeFileSync(join(dir, 'tyrum.plugin.json'), text);
  const r = await cli(pluginBuild, [dir]);
  t.equal(r.code, 1);
  t.match(r.err, /^tyrum plugin build: tool goodbye: export "say_goodbye" not found in the module$/m);
  t.match(r.err, /a tool's function must be a non-static function of that name in src\/\*\.c; the module exports "hello"/);
  t.notMatch(r.err, /tool hello/, 'the tool that is there is not named');
  t.equal(readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8'), text, 'the manifest is left alone');
  t.notOk(existsSync(join(dir, 'build', 'tyrum.plugin.json')), 'no installable build/');
  const json = await cli(pluginBuild, [dir, '--json']);
  t.equal(json.code, 1);
  t.match(JSON.parse(json.out), { ok: false, stage: 'check', error: /tool goodbye: export "say_goodbye" not found in the module/ });
});

t.test('a memory maximum above the request fails the build, naming both numbers', async (t) => {
  const dir = await scaffold(t, 'big-memory', 'assemblyscript');
  const asconfig = readJson<{ options: Record<string, unknown>; targets: { release: Record<string, unknown> } }>(dir, 'asconfig.json');
  asconfig.options.maximumMemory = 512;
  Object.assign(asconfig.targets.release, { optimizeLevel: 0, shrinkLevel: 0 }); // faster, and the memory section is the same
  writeFileSync(join(dir, 'asconfig.json'), JSON.stringify(asconfig, null, 2));
  const manifest = readJson<Record<string, unknown>>(dir, 'tyrum.plugin.json');
  writeFileSync(join(dir, 'tyrum.plugin.json'), JSON.stringify({ ...manifest, requests: { memory: { max_pages: 256 } } }, null, 2));
  const r = await cli(pluginBuild, [dir]);
  t.equal(r.code, 1);
  t.match(r.err, /^tyrum plugin build: memory maximum 512 pages exceeds requests\.memory\.max_pages 256; raise the request to at least 512 or lower the module's maximum \("maximumMemory" in asconfig\.json\)$/m);
  t.notOk(existsSync(join(dir, 'build', 'tyrum.plugin.json')));

  // The same module against other manifests: without a request the default cap applies, and a
  // large enough request passes.
  const wasm = readFileSync(join(dir, 'build', 'plugin.wasm'));
  const base = { ...scaffoldManifest('big-memory') };
  const parse = (m: Record<string, unknown>) => parseManifest(Buffer.from(JSON.stringify(m)));
  t.throws(() => checkModule(parse(base), wasm, 'assemblyscript'), /memory maximum 512 pages exceeds requests\.memory\.max_pages 256 \(the default when requests\.memory is not set\)/);
  t.match(checkModule(parse({ ...base, requests: { memory: { max_pages: 512 } } }), wasm, 'assemblyscript'), { capPages: 512, report: { memory: { declaredMaxPages: 512 } } });
  t.throws(() => checkModule(parse({ ...base, requests: { memory: { max_pages: 1 } } }), new Uint8Array(readFileSync(join(dir, 'build', 'plugin.wasm'))), 'assemblyscript'), /memory maximum 512 pages exceeds requests\.memory\.max_pages 1;/);
});

t.test('compiler errors fail the build with the compiler output verbatim', async (t) => {
  const as = await scaffold(t, 'broken-as', 'assemblyscript');
  writeFileSync(join(as, 'assembly', 'index.ts'), 'export function hello(): i32 {\n  return undefinedThing;\n}\n');
  const a = await cli(pluginBuild, [as]);
  t.equal(a.code, 1);
  t.match(a.err, /^tyrum plugin build: compile failed \(AssemblyScript 0\.28\.\d+\):$/m);
  t.match(a.err, /ERROR TS2304: Cannot find name 'undefinedThing'\./);
  t.match(a.err, /assembly\/index\.ts\(2,10\)/);
  t.equal(readJson<PluginManifest>(as, 'tyrum.plugin.json').wasm.sha256, PLACEHOLDER_SHA256, 'no digest written');
});

t.test('C compiler errors fail the build with clang\'s output verbatim', C, async (t) => {
  const c = await scaffold(t, 'broken-c', 'c');
  writeFileSync(join(c, 'src', 'plugin.c'), '#include "tyrum_pdk.h"\nint32_t hello(void) { return nope; }\n');
  const r = await cli(pluginBuild, [c, '--json']);
  t.equal(r.code, 1);
  t.match(r.err, /^tyrum plugin build: compile failed \(.*clang.*\):$/m);
  t.match(r.err, /src\/plugin\.c:2:30: error: use of undeclared identifier 'nope'/);
  t.match(JSON.parse(r.out), { ok: false, stage: 'compile' });
  t.notOk(existsSync(join(c, 'build', 'plugin.wasm')));
});

t.test('a module importing what the sandbox does not serve fails the build, naming the import', C, async (t) => {
  const dir = await scaffold(t, 'imports', 'c');
  writeFileSync(
    join(dir, 'src', 'extra.c'),
    '#include "tyrum_pdk.h"\n__attribute__((import_module("wasi_unstable"), import_name("fd_write"))) int32_t fd_write(int32_t, int32_t, int32_t, int32_t);\nint32_t sneaky(void) { return fd_write(1, 0, 0, 0); }\n',
  );
  const manifest = readJson<PluginManifest & { contributes: { tools: Record<string, unknown>[] } }>(dir, 'tyrum.plugin.json');
  manifest.contributes.tools.push({ ...manifest.contributes.tools[0], id: 'sneaky', export: 'sneaky' });
  writeFileSync(join(dir, 'tyrum.plugin.json'), JSON.stringify(manifest, null, 2));
  const r = await cli(pluginBuild, [dir]);
  t.equal(r.code, 1);
  t.match(r.err, /module imports what the sandbox does not provide: wasi_unstable\.fd_write \(function\): WASI is not available to plugins/);
});

t.test('setup problems: no manifest, an invalid manifest, nothing or two languages to compile, stub runtime, wasm.path, no clang', async (t) => {
  const empty = t.testdir();
  const none = await cli(pluginBuild, [empty]);
  t.equal(none.code, 1);
  t.match(none.err, /no tyrum\.plugin\.json in .* \(create a plugin with: tyrum plugin new NAME\)/);
  t.match((await cli(pluginBuild, [join(empty, 'nope')])).err, /nope: not a directory/);

  const dir = await scaffold(t, 'setup', 'c');
  const manifestFile = join(dir, 'tyrum.plugin.json');
  const good = readFileSync(manifestFile, 'utf8');
  const manifest = JSON.parse(good) as Record<string, unknown>;
  const withManifest = async (m: Record<string, unknown>) => {
    writeFileSync(manifestFile, JSON.stringify(m));
    return cli(pluginBuild, [dir]);
  };
  const invalid = await withManifest({ ...manifest, publisher: undefined });
  t.equal(invalid.code, 1);
  t.match(invalid.err, /tyrum plugin build: tyrum\.plugin\.json .*\/publisher: required field is missing/);
  const outside = await withManifest({ ...manifest, wasm: { path: 'plugin.wasm', sha256: PLACEHOLDER_SHA256 } });
  t.match(outside.err, /wasm\.path must be inside build\/ \(the build output folder\), e\.g\. "build\/plugin\.wasm"; got "plugin\.wasm"/);
  writeFileSync(manifestFile, good);

  process.env.TYRUM_CLANG = join(empty, 'no-such-clang');
  try {
    const r = await cli(pluginBuild, [dir]);
    t.equal(r.code, 1);
    t.match(r.err, /C compiler ".*no-such-clang" not found: install clang and lld with the wasm32 target \(Debian: apt-get install clang lld\), or set TYRUM_CLANG/);
  } finally {
    delete process.env.TYRUM_CLANG;
  }

  writeFileSync(join(dir, 'asconfig.json'), '{"targets":{"release":{}}}');
  t.match((await cli(pluginBuild, [dir])).err, /cannot tell the language: both asconfig\.json \(AssemblyScript\) and src\/plugin\.c \(C\) are here/);
  const as = await scaffold(t, 'stub', 'assemblyscript');
  writeFileSync(join(as, 'asconfig.json'), JSON.stringify({ entries: ['assembly/index.ts'], targets: { release: {} }, options: { runtime: 'stub' } }));
  t.match((await cli(pluginBuild, [as])).err, /asconfig\.json selects the "stub" runtime, which never frees memory/);
  writeFileSync(join(as, 'asconfig.json'), JSON.stringify({ entries: ['assembly/index.ts'], targets: {} }));
  t.match((await cli(pluginBuild, [as])).err, /asconfig\.json has no "release" target/);

  const bare = t.testdir({ 'tyrum.plugin.json': good });
  t.match((await cli(pluginBuild, [bare])).err, /nothing to compile: no asconfig\.json \(AssemblyScript\) and no src\/\*\.c \(C\)/);
});

t.test('manifestWithDigest changes only the digest, or rewrites the file when that is ambiguous', async (t) => {
  const sha = 'a'.repeat(64);
  const text = '{ "wasm": {"path":"build/plugin.wasm",  "sha256" : "' + PLACEHOLDER_SHA256 + '"}, "x": 1 }';
  t.equal(manifestWithDigest(text, sha), text.replace(PLACEHOLDER_SHA256, sha));
  const ambiguous = JSON.stringify({ wasm: { path: 'build/plugin.wasm', sha256: PLACEHOLDER_SHA256 }, config_schema: { properties: { sha256: { default: 'sha256' }, x: { sha256: 'zzz' } } } });
  const rewritten = manifestWithDigest(ambiguous, sha);
  t.same(JSON.parse(rewritten), { ...(JSON.parse(ambiguous) as object), wasm: { path: 'build/plugin.wasm', sha256: sha } });
  t.match(rewritten, /^\{\n {2}"wasm": \{/);
});

t.test('clang runs without node_modules/.bin on PATH (no wasm-opt picked up by how tyrum was started)', async (t) => {
  const env = clangEnv({ PATH: ['/work/x/node_modules/.bin', '/usr/local/bin', '/a/node_modules/.bin/', '/usr/bin'].join(delimiter), HOME: '/h' });
  t.same(env, { PATH: ['/usr/local/bin', '/usr/bin'].join(delimiter), HOME: '/h' });
});
