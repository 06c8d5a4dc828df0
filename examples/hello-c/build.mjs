#!/usr/bin/env node
// Builds examples/hello-c: plugin.c -> build/plugin.wasm with clang and lld (Debian: `apt-get install
// clang lld`), then writes the module's sha256 into tyrum.plugin.json (`wasm.sha256`), so this folder
// is an installable plugin directory: `tyrum plugin install examples/hello-c`.
//
//   node examples/hello-c/build.mjs        (CC=clang-15 node ... to pick another clang)
//
// The compile command, for a build without Node:
//
//   clang --target=wasm32 -O2 -std=c11 -Wall -Wextra -Werror -nostdlib -mbulk-memory \
//     -I ../../sdk/pdk/c -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 \
//     -Wl,--initial-memory=196608 -Wl,--max-memory=196608 -o build/plugin.wasm plugin.c
//   sha256sum build/plugin.wasm     # then put the digest in tyrum.plugin.json by hand
//
// (with no wasm-opt on PATH: see below)
//
// -nostdlib: no libc, no WASI (Tyrum offers WASI preview1 only as a capability-less shim); -Wl,--no-entry: a library of
// exported tool functions, no main; -mbulk-memory: copies compile to memory.copy instead of calls to a
// memcpy nobody provides. The memory is fixed at 3 pages (192 KiB: static buffers and the stack), far
// below the gateway's default cap of 256 pages.
//
// After linking, the module is checked the way the sandbox will load it: valid wasm, only
// `extism:host/env` and `tyrum:host/v1` function imports, and every tool's export present.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const { WebAssembly } = globalThis;
const HERE = dirname(fileURLToPath(import.meta.url));
const PDK = join(HERE, '..', '..', 'sdk', 'pdk', 'c');
const SOURCE = join(HERE, 'plugin.c');
const OUT = join(HERE, 'build', 'plugin.wasm');
const MANIFEST = join(HERE, 'tyrum.plugin.json');
const CC = process.env.CC || 'clang';
const ALLOWED_IMPORT_MODULES = new Set(['extism:host/env', 'tyrum:host/v1']);
const MEMORY_BYTES = 3 * 65536;

function fail(message) {
  console.error(`hello-c: ${message}`);
  process.exit(1);
}

const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
if (manifest.wasm?.path !== 'build/plugin.wasm') fail(`tyrum.plugin.json: wasm.path must be "build/plugin.wasm", not ${JSON.stringify(manifest.wasm?.path)}`);
const exportsNeeded = (manifest.contributes?.tools ?? []).map((t) => t.export);

mkdirSync(dirname(OUT), { recursive: true });
const args = [
  '--target=wasm32',
  '-O2',
  '-std=c11',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-nostdlib',
  '-mbulk-memory',
  '-I',
  PDK,
  '-Wl,--no-entry',
  '-Wl,--strip-all',
  '-Wl,-z,stack-size=65536',
  `-Wl,--initial-memory=${MEMORY_BYTES}`,
  `-Wl,--max-memory=${MEMORY_BYTES}`,
  '-o',
  OUT,
  SOURCE,
];
// clang runs binaryen's wasm-opt after linking whenever it finds one on PATH (npm's binaryen, an
// AssemblyScript dependency, puts one in node_modules/.bin, which npm scripts and npx add to PATH),
// without the feature flags the module needs. Hide it: the module is exactly clang's and lld's output,
// and its digest does not depend on what else is installed.
const PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => d !== '' && !existsSync(join(d, 'wasm-opt')))
  .join(delimiter);
try {
  execFileSync(CC, args, { cwd: HERE, env: { ...process.env, PATH }, stdio: ['ignore', 'inherit', 'inherit'] });
} catch (e) {
  if (e.code === 'ENOENT') fail(`${CC} not found: install clang and lld (Debian/Ubuntu: apt-get install clang lld), or set CC`);
  fail(`${CC} failed (exit ${e.status ?? e.code}); its diagnostics are above`);
}

const wasm = readFileSync(OUT);
if (!WebAssembly.validate(wasm)) fail('the linker produced an invalid WebAssembly module');
const mod = new WebAssembly.Module(wasm);
const bad = WebAssembly.Module.imports(mod).filter((i) => i.kind !== 'function' || !ALLOWED_IMPORT_MODULES.has(i.module));
if (bad.length > 0) fail(`the module imports what Tyrum's sandbox does not provide: ${bad.map((i) => `${i.module}.${i.name} (${i.kind})`).join(', ')}`);
const exported = new Set(WebAssembly.Module.exports(mod).filter((e) => e.kind === 'function').map((e) => e.name));
const missing = exportsNeeded.filter((e) => !exported.has(e));
if (missing.length > 0) fail(`the module does not export the tool function(s) ${missing.join(', ')} (mark them TYRUM_EXPORT(name))`);

// Write the digest in place, keeping the manifest's formatting; the file is left alone when it is
// already right (a rebuild with the same compiler changes nothing).
const sha256 = createHash('sha256').update(wasm).digest('hex');
const text = readFileSync(MANIFEST, 'utf8');
const updated = text.replace(/("sha256"\s*:\s*")[0-9a-f]{64}(")/, `$1${sha256}$2`);
if (JSON.parse(updated).wasm?.sha256 !== sha256) fail('tyrum.plugin.json: could not write wasm.sha256 (expected one "sha256": "<64 hex digits>" entry)');
if (updated !== text) writeFileSync(MANIFEST, updated);
console.log(`  hello-c ${manifest.version}: ${relative(process.cwd(), OUT) || OUT} ${wasm.byteLength.toLocaleString('en-US')} bytes, sha256 ${sha256}${updated !== text ? ' (written to tyrum.plugin.json)' : ''}`);
