// Shared helpers for the examples' tests (examples/*): build an example when its build output is
// missing or older than its sources, read the built plugin the way an installer would, and compile
// the plugin's own JSON Schemas in an ajv of their own.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PluginManifest } from '../../schemas/index.js';
import type { BuiltPlugin } from '../plugins/helpers.js';

// One implementation, shared with the first-party plugin tests.
export { sha256, loadBuilt, pluginAjv, toolSchemas, enc, dec, MapKv, type BuiltPlugin, type ToolSchemas } from '../plugins/helpers.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const EXAMPLES = join(ROOT, 'examples');
export const BUILD_PLUGINS = join(ROOT, 'scripts', 'build-plugins.mjs');

/** The newest modification time under `path`, skipping build output and documentation. */
export function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const name of readdirSync(path)) {
    if (name === 'build' || name.endsWith('.md')) continue;
    newest = Math.max(newest, newestMtime(join(path, name)));
  }
  return newest;
}

/** True when every file in `outputs` exists and is newer than every path in `inputs`. */
export function upToDate(outputs: string[], inputs: string[]): boolean {
  if (!outputs.every((f) => existsSync(f))) return false;
  const built = Math.min(...outputs.map((f) => statSync(f).mtimeMs));
  const sources = Math.max(...inputs.filter((p) => existsSync(p)).map((p) => newestMtime(p)));
  return built >= sources;
}

/**
 * Build the AssemblyScript example `id` (examples/<id>/, the same build as the first-party plugins:
 * `node scripts/build-plugins.mjs --dir examples <id>`) unless its build/ is newer than its sources,
 * the shared plugin sources it imports and the build script. Each test file builds only its own
 * example, so parallel test files never write the same folder.
 */
export function ensureBuiltAs(id: string): void {
  const dir = join(EXAMPLES, id);
  const outputs = [join(dir, 'build', 'plugin.wasm'), join(dir, 'build', 'tyrum.plugin.json')];
  if (upToDate(outputs, [dir, join(ROOT, 'plugins', '_shared'), BUILD_PLUGINS])) return;
  execFileSync(process.execPath, [BUILD_PLUGINS, '--dir', EXAMPLES, id], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}


/** The plugin directory `dir` read as an installer would: its manifest and the module at wasm.path. */
export function readPluginDir(dir: string): BuiltPlugin {
  const manifest = JSON.parse(readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8')) as PluginManifest;
  const wasm = new Uint8Array(readFileSync(join(dir, manifest.wasm.path)));
  return { dir, manifest, wasm };
}


/** A test label for a value: JSON, with line separators escaped (they would break the TAP stream). */
export const label = (v: unknown): string =>
  JSON.stringify(v).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
