// scripts/build-plugins.mjs on fixture plugin folders (in a temporary directory, never plugins/):
// a plugin builds into an installable build/ folder; every problem fails the build loudly, naming
// the plugin and the cause (the compiler's own diagnostics for source errors); nothing is skipped
// without saying so.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BUILD_SCRIPT, ROOT, sha256 } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'tyrum-build-plugins-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const ZEROS = '0'.repeat(64);
const ASCONFIG = { entries: ['assembly/index.ts'], targets: { release: { outFile: 'build/plugin.wasm', optimizeLevel: 3, shrinkLevel: 1 } }, options: { runtime: 'incremental' } };

function manifest(id: string, exports: string[] = ['run']): Record<string, unknown> {
  return {
    manifest_version: 1,
    id,
    name: id,
    version: '1.0.0',
    description: 'fixture',
    publisher: 'Tyrum tests',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: 'build/plugin.wasm', sha256: ZEROS },
    contributes: {
      tools: exports.map((e) => ({ id: e, export: e, description: 'x', input_schema: { type: 'object' }, output_schema: { type: 'object' }, effect: 'read_only' })),
    },
  };
}

interface Fixture {
  manifest?: Record<string, unknown> | null;
  asconfig?: Record<string, unknown> | null;
  source?: string;
  extra?: Record<string, string>;
}

/** A plugins folder holding the given plugin folders. */
function pluginsDir(name: string, plugins: Record<string, Fixture>): string {
  const dir = join(work, name);
  for (const [id, f] of Object.entries(plugins)) {
    const p = join(dir, id);
    mkdirSync(join(p, 'assembly'), { recursive: true });
    if (f.manifest !== null) writeFileSync(join(p, 'tyrum.plugin.json'), JSON.stringify(f.manifest ?? manifest(id)));
    if (f.asconfig !== null) writeFileSync(join(p, 'asconfig.json'), JSON.stringify(f.asconfig ?? ASCONFIG));
    writeFileSync(join(p, 'assembly', 'index.ts'), f.source ?? 'export function run(): i32 {\n  return 0;\n}\n');
    for (const [file, text] of Object.entries(f.extra ?? {})) writeFileSync(join(p, file), text);
  }
  return dir;
}

function build(dir: string, ...ids: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BUILD_SCRIPT, '--dir', dir, ...ids], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

t.test('a plugin builds into an installable build/ folder; shared folders are named, not built', async (t) => {
  const dir = pluginsDir('ok', { good: {} });
  mkdirSync(join(dir, '_lib'));
  const r = await build(dir);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /Building 1 plugin\(s\) \(shared sources: .*_lib\/\)/);
  t.match(r.stdout, /good 1\.0\.0: .*build\/plugin\.wasm [\d,]+ bytes, sha256 [0-9a-f]{64}/);
  t.match(r.stdout, /Built 1 plugin\(s\) with AssemblyScript 0\.28\.\d+ in [\d.]+ s/);
  const wasm = readFileSync(join(dir, 'good', 'build', 'plugin.wasm'));
  const built = JSON.parse(readFileSync(join(dir, 'good', 'build', 'tyrum.plugin.json'), 'utf8')) as Record<string, unknown>;
  t.same(built, { ...manifest('good'), wasm: { path: 'plugin.wasm', sha256: sha256(wasm) } });
  t.same(Object.keys(built), Object.keys(manifest('good')), 'key order kept');
  const again = await build(dir, 'good');
  t.equal(again.code, 0);
  t.equal(sha256(readFileSync(join(dir, 'good', 'build', 'plugin.wasm'))), sha256(wasm), 'the build is reproducible');
});

t.test('every broken plugin fails the build, naming the plugin and the cause; the others still build', async (t) => {
  const plugins: Record<string, Fixture> = {
    // Sorted as the script builds them.
    'a-good': {},
    badjson: { extra: { 'tyrum.plugin.json': '{ nope' } },
    broken: { source: 'export function run(): i32 {\n  return "not a number";\n}\n' },
    digest: { manifest: { ...manifest('digest'), wasm: { path: 'build/plugin.wasm', sha256: 'ab'.repeat(32) } } },
    folder: { manifest: manifest('other') },
    importer: { source: 'declare function secret_sauce(): i32;\nexport function run(): i32 {\n  return secret_sauce();\n}\n' },
    noconf: { asconfig: null },
    noexport: { manifest: manifest('noexport', ['run', 'other']) },
    stubby: { asconfig: { ...ASCONFIG, options: { runtime: 'stub' } } },
    wpath: { manifest: { ...manifest('wpath'), wasm: { path: 'plugin.wasm', sha256: ZEROS } } },
  };
  const dir = pluginsDir('broken', plugins);
  // A stale build/ of a plugin that now fails must not survive the failed build.
  mkdirSync(join(dir, 'broken', 'build'));
  writeFileSync(join(dir, 'broken', 'build', 'plugin.wasm'), 'stale');
  const r = await build(dir);
  t.equal(r.code, 1, 'exit code 1');
  const expected: Array<[string, RegExp]> = [
    ['badjson', /build-plugins: badjson: .*tyrum\.plugin\.json is not valid JSON/],
    ['broken', /build-plugins: broken: AssemblyScript compilation failed: 1 compile error\(s\)\n[\s\S]*ERROR[\s\S]*not a number[\s\S]*assembly\/index\.ts\(2,/],
    ['digest', /build-plugins: digest: the source manifest's wasm\.sha256 must be the placeholder of 64 zeros/],
    ['folder', /build-plugins: folder: manifest id is "other", but the folder is named folder/],
    ['importer', /build-plugins: importer: the module imports what Tyrum's sandbox does not provide: index\.secret_sauce \(function\)/],
    ['noconf', /build-plugins: noconf: .*asconfig\.json is missing/],
    ['noexport', /build-plugins: noexport: the module does not export the tool function\(s\) other/],
    ['stubby', /build-plugins: stubby: asconfig\.json selects the "stub" runtime, which never frees memory/],
    ['wpath', /build-plugins: wpath: the source manifest's wasm\.path must be "build\/plugin\.wasm"/],
  ];
  for (const [id, message] of expected) t.match(r.stderr, message, `${id}: named with its cause`);
  t.match(r.stderr, /build-plugins: 9 of 10 plugin\(s\) failed to build: badjson, broken, digest, folder, importer, noconf, noexport, stubby, wpath/);
  t.match(r.stdout, /a-good 1\.0\.0: .*plugin\.wasm/, 'the good plugin was built anyway');
  t.ok(existsSync(join(dir, 'a-good', 'build', 'tyrum.plugin.json')));
  t.notOk(existsSync(join(dir, 'broken', 'build')), 'no stale output is left beside a failed build');
});

t.test('a folder without a manifest, or an unknown plugin named, stops the build before compiling', async (t) => {
  const stray = await build(pluginsDir('stray', { good: {}, stray: { manifest: null } }));
  t.equal(stray.code, 1);
  t.match(stray.stderr, /build-plugins: stray: .*stray\/ has no tyrum\.plugin\.json \(shared sources belong in a folder whose name starts with "_"\)/);
  t.notOk(existsSync(join(work, 'stray', 'good', 'build')), 'nothing was built');
  // Naming the plugins to build looks at those only (examples/ holds a node example beside them).
  const named = await build(join(work, 'stray'), 'good');
  t.equal(named.code, 0, named.stderr);
  t.ok(existsSync(join(work, 'stray', 'good', 'build', 'plugin.wasm')), 'the named plugin built');
  const unknown = await build(pluginsDir('unknown', { good: {} }), 'nope');
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /build-plugins: nope: no plugin .*nope\/ \(plugins: good\)/);
  const option = await build(pluginsDir('option', {}), '--fast');
  t.equal(option.code, 1);
  t.match(option.stderr, /unknown option --fast/);
});
