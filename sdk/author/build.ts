/**
 * `tyrum plugin build`: compile a plugin directory, check the module against its manifest the way the
 * gateway will, and write the module's digest into the manifest.
 *
 * 1. The manifest (tyrum.plugin.json) is read and checked first (parseManifest: everything but the
 *    digest); `wasm.path` must be inside build/, the output folder, which is emptied before compiling
 *    (no stale module or manifest survives; after a failed check the new module stays for inspection,
 *    but no manifest names its digest, so nothing installable is left).
 * 2. The language is told by the files: asconfig.json → AssemblyScript; src/*.c → C.
 *    - AssemblyScript: asc, in a child Node process, with the same flags as scripts/build-plugins.mjs
 *      (the `release` target, `--outFile` the manifest's wasm.path; the `stub` runtime is refused).
 *      The flags are duplicated from that script (it exports nothing); keep the two in step. `--path`
 *      adds Tyrum's own node_modules, so `@extism/as-pdk` resolves without an `npm install` in the
 *      plugin.
 *    - C: clang --target=wasm32 -O2 -nostdlib -mbulk-memory -Wl,--no-entry and one
 *      `-Xlinker --export-if-defined=<export>` per tool (not `--export`: with it the linker fails on a
 *      missing function, and we want the same "tool X: export ... not found" message for every
 *      language). clang runs without node_modules/.bin on PATH (see clangEnv).
 *    Compiler output is reported verbatim.
 * 3. The module is checked: the sandbox's load-time inspection (validity, import allow-list), every
 *    tool's export is an exported function, and its memory fits the manifest's request (a declared
 *    maximum above `requests.memory.max_pages`, default 256, is an error naming both numbers; no
 *    maximum is fine: the gateway caps it at load).
 * 4. The digest is written twice: into the source manifest's `wasm.sha256` in place (only that value
 *    changes; the rest of the file is kept byte for byte), so the plugin directory itself is
 *    installable and packable; and into build/tyrum.plugin.json, the same manifest with `wasm.path`
 *    relative to build/, so build/ alone is an installable plugin like the first-party plugins' build
 *    folders. Both are then read back with readPluginSource, as `tyrum plugin install` will.
 *
 * Unlike scripts/build-plugins.mjs (first-party plugins, whose committed source manifests keep a
 * placeholder digest), this writes the real digest into the source manifest: an author's plugin
 * directory is what they test, pack and install.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { PluginManifest } from '../../schemas/index.js';
import { isTyrumError } from '../../core/errors/index.js';
import { inspectModule, type ModuleReport } from '../../sandbox/index.js';
import { manifestExports, parseManifest } from '../../manifests/manifest.js';
import { readPluginSource, sha256Hex } from '../../manifests/source.js';
import { DEFAULT_MEMORY_PAGES } from '../../manifests/capabilities.js';
import { MANIFEST_FILE, WASM_MAX_BYTES } from '../../manifests/limits.js';
import type { PluginLang } from './scaffold.js';

/** Where a build failed: reading the plugin, compiling, checking the module, or reading the result back. */
export type BuildStage = 'setup' | 'manifest' | 'compile' | 'check' | 'verify';

/** A build failure with a message meant for the plugin author (compiler output verbatim). */
export class PluginBuildError extends Error {
  constructor(
    readonly stage: BuildStage,
    message: string,
  ) {
    super(message);
    this.name = 'PluginBuildError';
  }
}

function fail(stage: BuildStage, message: string): never {
  throw new PluginBuildError(stage, message);
}

/** The build output folder; a manifest's wasm.path must be inside it. */
export const BUILD_DIR = 'build';
/** Env variable naming the clang binary (default `clang`). */
export const CLANG_ENV = 'TYRUM_CLANG';

export interface BuildOptions {
  /** The clang binary for C plugins (default: $TYRUM_CLANG or `clang`). */
  clang?: string;
}

export interface BuildResult {
  id: string;
  version: string;
  lang: PluginLang;
  /** The compiler and its version, e.g. "AssemblyScript 0.28.20" or "Debian clang version 14.0.6". */
  compiler: string;
  /** The plugin directory (absolute). */
  dir: string;
  /** The module, relative to `dir` (the manifest's wasm.path). */
  wasmPath: string;
  wasmBytes: number;
  sha256: string;
  /** The manifests that now carry the digest, relative to `dir`. */
  manifests: string[];
  /** Whether the source manifest's digest changed (false: the module is byte-identical to the last build). */
  sourceManifestChanged: boolean;
  tools: { id: string; export: string }[];
  /** Channel adapters and their exports. */
  channels: { id: string; inbound: string; outbound: string }[];
  memory: {
    initialPages: number | null;
    /** The maximum the module declares (null: none; the gateway caps it at load). */
    declaredMaxPages: number | null;
    /** The cap the gateway applies: requests.memory.max_pages or the default. */
    capPages: number;
  };
  /** Compiler warnings (the build succeeded; never hidden). */
  warnings: string;
  ms: number;
}

// --- Language detection ----------------------------------------------------------------------

interface Detected {
  lang: PluginLang;
  /** C sources, relative to the plugin directory. */
  sources: string[];
}

function cSources(root: string): string[] {
  const src = join(root, 'src');
  if (!existsSync(src) || !statSync(src).isDirectory()) return [];
  return readdirSync(src)
    .filter((f) => f.endsWith('.c') && statSync(join(src, f)).isFile())
    .sort()
    .map((f) => `src/${f}`);
}

/** The plugin's language, from its files: asconfig.json (AssemblyScript) or src/*.c (C). */
export function detectLanguage(root: string): Detected {
  const as = existsSync(join(root, 'asconfig.json'));
  const sources = cSources(root);
  if (as && sources.length > 0) fail('setup', `cannot tell the language: both asconfig.json (AssemblyScript) and ${sources.join(', ')} (C) are here`);
  if (as) return { lang: 'assemblyscript', sources: [] };
  if (sources.length > 0) return { lang: 'c', sources };
  return fail('setup', 'nothing to compile: no asconfig.json (AssemblyScript) and no src/*.c (C) in the plugin directory');
}

// --- AssemblyScript ----------------------------------------------------------------------------

/** Tyrum's own node_modules (where assemblyscript and @extism/as-pdk are), for asc's --path. */
export function toolchainNodeModules(): string {
  const pdkPackage = createRequire(import.meta.url).resolve('@extism/as-pdk/package.json');
  return dirname(dirname(dirname(pdkPackage)));
}

/**
 * asc's arguments: the flags scripts/build-plugins.mjs uses (keep in step), plus --path so packages
 * resolve from Tyrum's node_modules when the plugin has none of its own.
 */
export function ascArgs(root: string, outFile: string): string[] {
  return ['--baseDir', root, '--config', 'asconfig.json', '--target', 'release', '--outFile', outFile, '--noColors', '--path', toolchainNodeModules()];
}

function checkAsconfig(root: string): void {
  let config: { options?: { runtime?: unknown }; targets?: { release?: { runtime?: unknown } } };
  try {
    config = JSON.parse(readFileSync(join(root, 'asconfig.json'), 'utf8')) as typeof config;
  } catch (e) {
    return fail('setup', `asconfig.json: ${(e as Error).message}`);
  }
  if (config === null || typeof config !== 'object') fail('setup', 'asconfig.json must be a JSON object');
  if (config.options?.runtime === 'stub' || config.targets?.release?.runtime === 'stub') {
    fail('setup', 'asconfig.json selects the "stub" runtime, which never frees memory: a plugin instance serving many calls runs out. Use "incremental" (the default).');
  }
  if (config.targets?.release === undefined) fail('setup', 'asconfig.json has no "release" target (tyrum plugin build compiles that one)');
}

/**
 * Runs asc in a child Node process (plain node: no TypeScript loader, which would spend many seconds
 * transforming the compiler's 10 MB of JavaScript; and the compiler's memory is returned when it
 * exits). argv: the compiler module's URL, then asc's arguments as JSON. Prints one JSON line.
 */
const ASC_RUNNER = `
const [ascUrl, argsJson] = process.argv.slice(1);
const asc = (await import(ascUrl)).default;
const stream = () => { const chunks = []; return { write(c) { chunks.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8')); }, text: () => chunks.join('') }; };
const stdout = stream();
const stderr = stream();
const { error } = await asc.main(JSON.parse(argsJson), { stdout, stderr });
process.stdout.write('\\n' + JSON.stringify({ error: error ? error.message : null, diagnostics: stderr.text() + stdout.text() }));
`;

/** The AssemblyScript compiler's version, e.g. "0.28.20". */
export function ascVersion(): string {
  return (JSON.parse(readFileSync(join(toolchainNodeModules(), 'assemblyscript', 'package.json'), 'utf8')) as { version: string }).version;
}

async function compileAssemblyScript(root: string, outFile: string): Promise<{ compiler: string; warnings: string }> {
  checkAsconfig(root);
  const compiler = `AssemblyScript ${ascVersion()}`;
  const ascUrl = pathToFileURL(join(toolchainNodeModules(), 'assemblyscript', 'dist', 'asc.js')).href;
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // a test runner's TypeScript loader would slow the compiler down many times over
  const r = await run(process.execPath, ['--input-type=module', '-e', ASC_RUNNER, ascUrl, JSON.stringify(ascArgs(root, outFile))], root, env);
  let result: { error: string | null; diagnostics: string } | undefined;
  try {
    result = JSON.parse(r.stdout.trimEnd().split('\n').pop() ?? '') as typeof result;
  } catch {
    result = undefined;
  }
  if (r.code !== 0 || result === undefined) {
    fail('compile', `compile failed (${compiler}): the compiler process ${r.spawnError?.message ?? `exited with code ${r.code}`}\n${r.stderr.trim()}`);
  }
  const diagnostics = result.diagnostics.trim();
  if (result.error !== null) fail('compile', `compile failed (${compiler}):\n${diagnostics || result.error}`);
  return { compiler, warnings: diagnostics };
}

// --- C -------------------------------------------------------------------------------------------

/** clang's arguments for a C plugin: freestanding wasm32, one --export-if-defined per tool export (sources and output relative to the plugin directory). */
export function clangArgs(sources: readonly string[], exports: readonly string[], outFile: string): string[] {
  return [
    '--target=wasm32',
    '-O2',
    '-nostdlib',
    '-mbulk-memory',
    '-Wall',
    '-Wextra',
    '-Isrc',
    '-Wl,--no-entry',
    // -Xlinker passes the name verbatim (-Wl, would split one containing a comma).
    ...exports.flatMap((e) => ['-Xlinker', `--export-if-defined=${e}`]),
    '-o',
    outFile,
    ...sources,
  ];
}

function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: NodeJS.ErrnoException }> {
  return new Promise((resolvePromise) => {
    execFile(file, args, { cwd, env, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolvePromise({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: unknown };
      if (typeof e.code === 'string') return resolvePromise({ code: null, stdout, stderr, spawnError: e });
      resolvePromise({ code: typeof e.code === 'number' ? e.code : 1, stdout, stderr });
    });
  });
}

/**
 * The environment for clang: PATH without node_modules/.bin folders. With -O2, clang runs `wasm-opt`
 * when it finds one on PATH, and `npm run` / `npx` put binaryen's JavaScript port there: several
 * seconds slower, and a module whose bytes (and digest) depended on how tyrum was started.
 */
export function clangEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const path = (env.PATH ?? '')
    .split(delimiter)
    .filter((p) => !/(^|[\\/])node_modules[\\/]\.bin[\\/]?$/.test(p))
    .join(delimiter);
  return { ...env, PATH: path };
}

async function compileC(root: string, sources: string[], exports: string[], outFile: string, clang: string): Promise<{ compiler: string; warnings: string }> {
  const env = clangEnv();
  const version = await run(clang, ['--version'], root, env);
  if (version.spawnError !== undefined) {
    const why = version.spawnError.code === 'ENOENT' ? 'not found' : version.spawnError.message;
    fail('setup', `C compiler ${JSON.stringify(clang)} ${why}: install clang and lld with the wasm32 target (Debian: apt-get install clang lld), or set ${CLANG_ENV}`);
  }
  const compiler = version.stdout.split('\n')[0]?.trim() || clang;
  mkdirSync(dirname(join(root, outFile)), { recursive: true });
  const r = await run(clang, clangArgs(sources, exports, outFile), root, env);
  const diagnostics = `${r.stdout}${r.stderr}`.trim();
  if (r.code !== 0) fail('compile', `compile failed (${compiler}):\n${diagnostics || r.spawnError?.message || `exit code ${r.code}`}`);
  return { compiler, warnings: diagnostics };
}

// --- Checks --------------------------------------------------------------------------------------

const EXPORT_HINT: Record<PluginLang, string> = {
  assemblyscript: "a tool's function must be a top-level export of assembly/index.ts",
  c: "a tool's function must be a non-static function of that name in src/*.c",
};

/**
 * Check a compiled module against its manifest: the sandbox's load-time inspection (validity,
 * imports), every tool's export, and memory against the request. Every problem is named; throws a
 * PluginBuildError ('check') listing them.
 */
export function checkModule(manifest: PluginManifest, wasm: Uint8Array, lang: PluginLang): { report: ModuleReport; capPages: number } {
  const requested = manifest.requests?.memory?.max_pages;
  const capPages = requested ?? DEFAULT_MEMORY_PAGES;
  let report: ModuleReport;
  try {
    // Exports and memory are checked below, with messages in the manifest's terms; here the cap is
    // the largest possible so only format and imports can fail.
    report = inspectModule(wasm, { expectedSha256: sha256Hex(wasm), exports: [], memoryPages: 65536, maxModuleBytes: WASM_MAX_BYTES });
  } catch (e) {
    if (!isTyrumError(e)) throw e;
    return fail('check', e.message);
  }
  const problems: string[] = [];
  const functions = new Set(report.exports.filter((x) => x.kind === 'function').map((x) => x.name));
  const named = [
    ...manifest.contributes.tools.map((t) => ({ what: `tool ${t.id}`, export: t.export })),
    ...(manifest.contributes.channels ?? []).flatMap((c) => [
      { what: `channel ${c.id} (inbound)`, export: c.inbound.export },
      { what: `channel ${c.id} (outbound)`, export: c.outbound.export },
    ]),
  ];
  const missing = named.filter((t) => !functions.has(t.export));
  for (const t of missing) problems.push(`${t.what}: export ${JSON.stringify(t.export)} not found in the module`);
  if (missing.length > 0) {
    const have = [...functions].sort();
    problems.push(`  (${EXPORT_HINT[lang]}; the module exports ${have.length > 0 ? have.map((n) => JSON.stringify(n)).join(', ') : 'no functions'})`);
  }
  const mem = report.memory;
  const request = `requests.memory.max_pages ${capPages}${requested === undefined ? ' (the default when requests.memory is not set)' : ''}`;
  if (mem !== null && mem.initialPages > capPages) {
    problems.push(`memory: initial ${mem.initialPages} pages exceeds ${request}; raise the request or shrink the module's data and stack`);
  }
  if (mem !== null && mem.declaredMaxPages !== null && mem.declaredMaxPages > capPages) {
    const lower = lang === 'assemblyscript' ? '"maximumMemory" in asconfig.json' : '-Wl,--max-memory';
    problems.push(`memory maximum ${mem.declaredMaxPages} pages exceeds ${request}; raise the request to at least ${mem.declaredMaxPages} or lower the module's maximum (${lower})`);
  }
  if (problems.length > 0) fail('check', problems.join('\n'));
  return { report, capPages };
}

// --- Writing the digest --------------------------------------------------------------------------

/**
 * The manifest text with `wasm.sha256` set to `sha256`: only the digest's characters change when the
 * file has exactly one "sha256" string member; otherwise the file is rewritten (2-space JSON, key order kept).
 */
export function manifestWithDigest(text: string, sha256: string): string {
  const parsed = JSON.parse(text) as { wasm: { sha256: string } };
  const re = /("sha256"\s*:\s*")([^"\\]*)(")/g;
  const matches = [...text.matchAll(re)];
  if (matches.length === 1 && matches[0]?.[2] === parsed.wasm.sha256) {
    const replaced = text.replace(re, `$1${sha256}$3`);
    if ((JSON.parse(replaced) as { wasm: { sha256: string } }).wasm.sha256 === sha256) return replaced;
  }
  return `${JSON.stringify({ ...parsed, wasm: { ...parsed.wasm, sha256 } }, null, 2)}\n`;
}

// --- The build -----------------------------------------------------------------------------------

/**
 * Build the plugin in `dir`: compile, check, write the digest into tyrum.plugin.json and
 * build/tyrum.plugin.json, read both back. Throws a PluginBuildError naming the stage and the cause.
 */
export async function buildPlugin(dir: string, opts: BuildOptions = {}): Promise<BuildResult> {
  const started = performance.now();
  const root = resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) fail('setup', `${dir}: not a directory`);
  const manifestFile = join(root, MANIFEST_FILE);
  if (!existsSync(manifestFile)) fail('setup', `no ${MANIFEST_FILE} in ${root} (create a plugin with: tyrum plugin new NAME)`);
  const manifestBytes = readFileSync(manifestFile);
  let manifest: PluginManifest;
  try {
    manifest = parseManifest(manifestBytes);
  } catch (e) {
    if (!isTyrumError(e)) throw e;
    return fail('manifest', e.message.startsWith(MANIFEST_FILE) ? e.message : `${MANIFEST_FILE}: ${e.message}`);
  }
  const wasmPath = manifest.wasm.path;
  if (!wasmPath.startsWith(`${BUILD_DIR}/`)) {
    fail('manifest', `${MANIFEST_FILE}: wasm.path must be inside ${BUILD_DIR}/ (the build output folder), e.g. "${BUILD_DIR}/plugin.wasm"; got ${JSON.stringify(wasmPath)}`);
  }
  const detected = detectLanguage(root);
  const exports = manifestExports(manifest);

  // Never leave a stale module or manifest beside a new build.
  const buildDir = join(root, BUILD_DIR);
  rmSync(buildDir, { recursive: true, force: true });
  const { compiler, warnings } =
    detected.lang === 'assemblyscript'
      ? await compileAssemblyScript(root, wasmPath)
      : await compileC(root, detected.sources, exports, wasmPath, opts.clang ?? process.env[CLANG_ENV] ?? 'clang');
  const wasmFile = join(root, wasmPath);
  if (!existsSync(wasmFile)) fail('compile', `the compiler (${compiler}) reported success but wrote no ${wasmPath}`);
  const wasm = readFileSync(wasmFile);
  const { report, capPages } = checkModule(manifest, wasm, detected.lang);

  const sha256 = sha256Hex(wasm);
  const sourceText = manifestBytes.toString('utf8');
  const updated = manifestWithDigest(sourceText, sha256);
  const sourceManifestChanged = updated !== sourceText;
  if (sourceManifestChanged) writeFileSync(manifestFile, updated);
  const source = JSON.parse(updated) as Record<string, unknown> & { wasm: Record<string, unknown> };
  const built = { ...source, wasm: { ...source.wasm, path: relative(buildDir, wasmFile).split('\\').join('/'), sha256 } };
  writeFileSync(join(buildDir, MANIFEST_FILE), `${JSON.stringify(built, null, 2)}\n`);

  // Read both back exactly as `tyrum plugin install` will.
  for (const d of [root, buildDir]) {
    try {
      await readPluginSource(d);
    } catch (e) {
      if (!isTyrumError(e)) throw e;
      fail('verify', `${relative(root, join(d, MANIFEST_FILE)) || MANIFEST_FILE} does not read back as an installable plugin: ${e.message}`);
    }
  }

  return {
    id: manifest.id,
    version: manifest.version,
    lang: detected.lang,
    compiler,
    dir: root,
    wasmPath,
    wasmBytes: wasm.byteLength,
    sha256,
    manifests: [MANIFEST_FILE, `${BUILD_DIR}/${MANIFEST_FILE}`],
    sourceManifestChanged,
    tools: manifest.contributes.tools.map((t) => ({ id: t.id, export: t.export })),
    channels: (manifest.contributes.channels ?? []).map((c) => ({ id: c.id, inbound: c.inbound.export, outbound: c.outbound.export })),
    memory: { initialPages: report.memory?.initialPages ?? null, declaredMaxPages: report.memory?.declaredMaxPages ?? null, capPages },
    warnings,
    ms: Math.round(performance.now() - started),
  };
}
