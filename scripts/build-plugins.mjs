#!/usr/bin/env node
// Builds Tyrum's first-party plugins from source with an npm-only toolchain (AssemblyScript and
// @extism/as-pdk, both devDependencies), run by `npm run build`:
//   node scripts/build-plugins.mjs [--dir <plugins folder>] [id ...]
// (--dir, default plugins/, lets tests build fixtures elsewhere.)
//
// Every plugins/<id>/ holding a tyrum.plugin.json is a plugin; plugins/_<name>/ folders hold shared
// sources (no manifest, never built on their own); any other folder is an error. For each plugin:
//   1. asc compiles it with the plugin's asconfig.json (target "release": optimized; the default
//      `incremental` runtime; the `stub` runtime is refused because it never frees memory, and a
//      plugin instance serves many calls);
//   2. the module is checked: valid wasm, imports only from the Extism kernel (`extism:host/env`),
//      Tyrum's host API (`tyrum:host/v1`) and AssemblyScript's `env.abort` (which Tyrum serves: an
//      abort traps the call with the message and source position; the sandbox's load checks then
//      verify each imported name), and exports every tool's function;
//   3. plugins/<id>/build/ receives plugin.wasm and tyrum.plugin.json: the source manifest with
//      `wasm.path` "plugin.wasm" and `wasm.sha256` the module's real digest.
// So plugins/<id>/build/ is an installable plugin directory (and git-ignored: built wasm is never
// committed). The source manifest keeps "path": "build/plugin.wasm" and a placeholder digest of 64
// zeros on purpose: a digest written into a committed file would go stale with every compiler or
// source change, and the placeholder can never match a real module, so installing the unbuilt source
// directory fails its integrity check instead of loading something stale.
//
// Failures are loud: each broken plugin is reported with its cause (for source errors, the compiler's
// own diagnostics), the other plugins still build, and the script exits non-zero.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const { WebAssembly } = globalThis;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
let PLUGINS = join(ROOT, 'plugins');
const PLACEHOLDER_SHA256 = '0'.repeat(64);
const SOURCE_WASM_PATH = 'build/plugin.wasm';
const ALLOWED_IMPORT_MODULES = new Set(['extism:host/env', 'tyrum:host/v1']);
/** The exports of the WASM MCP plugin ABI (mcp.run servlets, hyper-mcp v1); the same list as WASM_MCP_EXPORTS in core/mcp/wasm.ts. */
const WASM_MCP_EXPORTS = ['call', 'describe'];

class BuildError extends Error {}

/** The AssemblyScript compiler, loaded on first use (a few MB of JavaScript: checks that fail first stay fast). */
let asc = null;
async function compiler() {
  asc ??= (await import('assemblyscript/asc')).default;
  return asc;
}

function fail(id, message) {
  throw new BuildError(`${id}: ${message}`);
}

/** A path as printed: relative to the repository when inside it. */
function shown(file) {
  const rel = relative(ROOT, file);
  return rel.startsWith('..') ? file : rel;
}

function readJson(file, id) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    fail(id, `cannot read ${shown(file)}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(id, `${shown(file)} is not valid JSON: ${e.message}`);
  }
}

/** The plugin folders to build (all, or those named on the command line), and the shared ones. */
function discover(only) {
  const plugins = [];
  const shared = [];
  if (!existsSync(PLUGINS) || !statSync(PLUGINS).isDirectory()) throw new BuildError(`no plugins folder ${shown(PLUGINS)}`);
  for (const name of readdirSync(PLUGINS).sort()) {
    const dir = join(PLUGINS, name);
    if (!statSync(dir).isDirectory()) continue;
    if (name.startsWith('_')) {
      shared.push(name);
      continue;
    }
    // Building named plugins looks at those only: a folder beside them may be something else
    // (examples/ also holds a node example, which is no plugin).
    if (!existsSync(join(dir, 'tyrum.plugin.json'))) {
      if (only.length > 0 && !only.includes(name)) continue;
      fail(name, `${shown(dir)}/ has no tyrum.plugin.json (shared sources belong in a folder whose name starts with "_")`);
    }
    plugins.push(name);
  }
  for (const id of only) if (!plugins.includes(id)) fail(id, `no plugin ${shown(join(PLUGINS, id))}/ (plugins: ${plugins.join(', ') || 'none'})`);
  return { plugins: only.length > 0 ? plugins.filter((p) => only.includes(p)) : plugins, shared };
}

function checkSourceManifest(id, manifest) {
  if (manifest === null || typeof manifest !== 'object' || Array.isArray(manifest)) fail(id, 'tyrum.plugin.json must be a JSON object');
  if (manifest.id !== id) fail(id, `manifest id is ${JSON.stringify(manifest.id)}, but the folder is named ${id}`);
  if (manifest.wasm?.path !== SOURCE_WASM_PATH) {
    fail(id, `the source manifest's wasm.path must be "${SOURCE_WASM_PATH}" (the build output), not ${JSON.stringify(manifest.wasm?.path)}`);
  }
  if (manifest.wasm?.sha256 !== PLACEHOLDER_SHA256) {
    fail(id, 'the source manifest\'s wasm.sha256 must be the placeholder of 64 zeros; the real digest goes only into build/tyrum.plugin.json');
  }
  const tools = manifest.contributes?.tools;
  const servers = manifest.contributes?.mcp_servers;
  const wasmMcp = Array.isArray(servers) && servers.some((s) => s?.transport === 'wasm');
  const channels = Array.isArray(manifest.contributes?.channels) ? manifest.contributes.channels : [];
  if (!Array.isArray(tools) || (tools.length === 0 && !wasmMcp && channels.length === 0)) fail(id, 'the manifest contributes no tools, MCP server or channel');
  // A module that is itself an MCP server (transport "wasm") must export the WASM MCP ABI; a
  // channel adapter its inbound and outbound exports.
  const channelExports = channels.flatMap((c) => [c?.inbound?.export, c?.outbound?.export]).filter((e) => typeof e === 'string');
  return [...new Set([...tools.map((t) => t.export), ...channelExports, ...(wasmMcp ? WASM_MCP_EXPORTS : [])])];
}

function checkAsconfig(id, dir) {
  const file = join(dir, 'asconfig.json');
  if (!existsSync(file)) fail(id, `${shown(file)} is missing`);
  const config = readJson(file, id);
  const runtimes = [config.options?.runtime, config.targets?.release?.runtime];
  if (runtimes.includes('stub')) {
    fail(id, 'asconfig.json selects the "stub" runtime, which never frees memory: a plugin instance serving many calls runs out. Use "incremental".');
  }
  if (!config.targets?.release) fail(id, 'asconfig.json has no "release" target');
}

/** A write-only stream for asc that keeps what it is given. */
function memoryStream() {
  const chunks = [];
  return {
    write(chunk) {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    },
    text: () => chunks.join(''),
  };
}

async function compile(id, dir) {
  const stdout = memoryStream();
  const stderr = memoryStream();
  const argv = ['--baseDir', dir, '--config', 'asconfig.json', '--target', 'release', '--outFile', SOURCE_WASM_PATH, '--noColors'];
  const { error } = await (await compiler()).main(argv, { stdout, stderr });
  const diagnostics = stderr.text().trim();
  if (error) fail(id, `AssemblyScript compilation failed: ${error.message}${diagnostics ? `\n${diagnostics}` : ''}`);
  // Warnings do not fail the build but are never hidden.
  if (diagnostics) process.stderr.write(`${id}: compiler output:\n${diagnostics}\n`);
}

function checkModule(id, wasm, exportsNeeded) {
  if (!WebAssembly.validate(wasm)) fail(id, 'the compiler produced an invalid WebAssembly module');
  const mod = new WebAssembly.Module(wasm);
  const bad = WebAssembly.Module.imports(mod).filter(
    (i) => i.kind !== 'function' || !(ALLOWED_IMPORT_MODULES.has(i.module) || (i.module === 'env' && i.name === 'abort')),
  );
  if (bad.length > 0) {
    fail(id, `the module imports what Tyrum's sandbox does not provide: ${bad.map((i) => `${i.module}.${i.name} (${i.kind})`).join(', ')}`);
  }
  const exported = new Set(WebAssembly.Module.exports(mod).filter((e) => e.kind === 'function').map((e) => e.name));
  const missing = exportsNeeded.filter((e) => !exported.has(e));
  if (missing.length > 0) fail(id, `the module does not export the tool function(s) ${missing.join(', ')} (exported functions must be top-level exports of assembly/index.ts)`);
}

async function buildPlugin(id) {
  const started = performance.now();
  const dir = join(PLUGINS, id);
  const manifest = readJson(join(dir, 'tyrum.plugin.json'), id);
  const exportsNeeded = checkSourceManifest(id, manifest);
  checkAsconfig(id, dir);

  const buildDir = join(dir, 'build');
  rmSync(buildDir, { recursive: true, force: true }); // never leave a stale module beside a new manifest
  await compile(id, dir);
  const wasmFile = join(dir, SOURCE_WASM_PATH);
  if (!existsSync(wasmFile)) fail(id, `the compiler reported success but wrote no ${SOURCE_WASM_PATH}`);
  const wasm = readFileSync(wasmFile);
  checkModule(id, wasm, exportsNeeded);

  const sha256 = createHash('sha256').update(wasm).digest('hex');
  const built = { ...manifest, wasm: { path: 'plugin.wasm', sha256 } };
  writeFileSync(join(buildDir, 'tyrum.plugin.json'), `${JSON.stringify(built, null, 2)}\n`);
  const ms = performance.now() - started;
  console.log(`  ${id} ${manifest.version}: ${shown(wasmFile)} ${wasm.byteLength.toLocaleString('en-US')} bytes, sha256 ${sha256} (${(ms / 1000).toFixed(1)} s)`);
}

async function main() {
  const started = performance.now();
  const args = process.argv.slice(2);
  const at = args.indexOf('--dir');
  if (at >= 0) {
    if (args[at + 1] === undefined) throw new BuildError('--dir needs a folder');
    PLUGINS = resolve(args[at + 1]);
    args.splice(at, 2);
  }
  const unknown = args.find((a) => a.startsWith('-'));
  if (unknown !== undefined) throw new BuildError(`unknown option ${unknown} (usage: build-plugins.mjs [--dir <plugins folder>] [id ...])`);
  const { plugins, shared } = discover(args);
  console.log(`Building ${plugins.length} plugin(s)${shared.length > 0 ? ` (shared sources: ${shared.map((s) => `${shown(join(PLUGINS, s))}/`).join(', ')})` : ''}`);
  // A broken plugin does not stop the others: every failure is printed as it happens, and the build
  // fails at the end if any plugin did.
  const failed = [];
  for (const id of plugins) {
    try {
      await buildPlugin(id);
    } catch (e) {
      if (!(e instanceof BuildError)) throw e;
      console.error(`build-plugins: ${e.message}`);
      failed.push(id);
    }
  }
  const toolchain = asc === null ? '' : ` with AssemblyScript ${asc.version}`;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (failed.length > 0) throw new BuildError(`${failed.length} of ${plugins.length} plugin(s) failed to build: ${failed.join(', ')} (${seconds} s)`);
  console.log(`Built ${plugins.length} plugin(s)${toolchain} in ${seconds} s`);
}

main().catch((e) => {
  console.error(e instanceof BuildError ? `build-plugins: ${e.message}` : e);
  process.exit(1);
});
