// Shared helpers for the first-party plugin tests: build on demand, load the built plugin directory
// into a real SandboxPool, and compile the plugin's own JSON Schemas (in an ajv instance of their own:
// core/protocol/validate.ts is for Tyrum's contracts only).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import type { PluginManifest } from '../../schemas/index.js';
import type { KvStore, LoadInfo, LoadOptions, SandboxPool } from '../../sandbox/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PLUGINS = join(ROOT, 'plugins');
export const BUILD_SCRIPT = join(ROOT, 'scripts', 'build-plugins.mjs');

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const name of readdirSync(path)) {
    if (name === 'build' || name.endsWith('.md')) continue;
    newest = Math.max(newest, newestMtime(join(path, name)));
  }
  return newest;
}

/**
 * Build plugin `id` unless plugins/<id>/build/ is there and newer than its sources, the shared
 * sources and the build script (`npm test` builds first; this makes `npx tap test/plugins` work alone
 * and never test a stale module). Each test file builds only its own plugin, so parallel test files
 * never write the same folder.
 */
export function ensureBuilt(id: string): void {
  const wasm = join(PLUGINS, id, 'build', 'plugin.wasm');
  const manifest = join(PLUGINS, id, 'build', 'tyrum.plugin.json');
  if (existsSync(wasm) && existsSync(manifest)) {
    const built = Math.min(statSync(wasm).mtimeMs, statSync(manifest).mtimeMs);
    const sources = Math.max(newestMtime(join(PLUGINS, id)), newestMtime(join(PLUGINS, '_shared')), statSync(BUILD_SCRIPT).mtimeMs);
    if (built >= sources) return;
  }
  execFileSync(process.execPath, [BUILD_SCRIPT, id], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}

export interface BuiltPlugin {
  dir: string;
  manifest: PluginManifest;
  wasm: Uint8Array;
}

/** The installable plugin directory plugins/<id>/build/, read as an installer would. */
export function readBuilt(id: string): BuiltPlugin {
  ensureBuilt(id);
  const dir = join(PLUGINS, id, 'build');
  const manifest = JSON.parse(readFileSync(join(dir, 'tyrum.plugin.json'), 'utf8')) as PluginManifest;
  const wasm = new Uint8Array(readFileSync(join(dir, manifest.wasm.path)));
  return { dir, manifest, wasm };
}

/** The committed source manifest plugins/<id>/tyrum.plugin.json. */
export function readSourceManifest(id: string): PluginManifest {
  return JSON.parse(readFileSync(join(PLUGINS, id, 'tyrum.plugin.json'), 'utf8')) as PluginManifest;
}

/** Load a built plugin the way the gateway will: digest from its manifest, exports from its tools. */
export function loadBuilt(pool: SandboxPool, key: string, plugin: BuiltPlugin, opts: Partial<LoadOptions> = {}): Promise<LoadInfo> {
  return pool.load(key, {
    wasm: plugin.wasm,
    expectedSha256: plugin.manifest.wasm.sha256,
    exports: plugin.manifest.contributes.tools.map((t) => t.export),
    ...opts,
  });
}

/** Ajv for plugin-supplied schemas: strict (our manifests must not carry typos), Tyrum's keyword and formats known. */
export function pluginAjv(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: true, useDefaults: true });
  ajv.addKeyword({ keyword: 'x-tyrum-secret', schemaType: 'boolean' });
  ajv.addFormat('uri', { validate: (s: string) => URL.canParse(s) });
  return ajv;
}

export interface ToolSchemas {
  input: ValidateFunction;
  output: ValidateFunction;
}

/** The compiled input and output schemas of each tool, by tool id. */
export function toolSchemas(manifest: PluginManifest): Map<string, ToolSchemas> {
  const ajv = pluginAjv();
  return new Map(manifest.contributes.tools.map((t) => [t.id, { input: ajv.compile(t.input_schema), output: ajv.compile(t.output_schema) }]));
}

export const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
export const dec = (b: Uint8Array): string => new TextDecoder('utf-8', { fatal: true }).decode(b);

/** A test label for a string: JSON-quoted, with line separators escaped (they would break the TAP stream). */
export const label = (s: string): string =>
  JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * A plugin's kv store in a Map, for a real SandboxPool's host API: usage counts keys plus values, as
 * the gateway's quota does, and a write that would exceed `quota` is refused. Counts gets and sets.
 */
export class MapKv implements KvStore {
  readonly map = new Map<string, Uint8Array>();
  gets = 0;
  sets = 0;
  constructor(readonly quota = Infinity) {}
  used(): number {
    let n = 0;
    for (const [k, v] of this.map) n += Buffer.byteLength(k) + v.byteLength;
    return n;
  }
  get(key: string): Uint8Array | null {
    this.gets++;
    const v = this.map.get(key);
    return v === undefined ? null : new Uint8Array(v);
  }
  set(key: string, value: Uint8Array | null): boolean {
    this.sets++;
    if (value === null) {
      this.map.delete(key);
      return true;
    }
    const old = this.map.get(key);
    const after = this.used() - (old === undefined ? 0 : Buffer.byteLength(key) + old.byteLength) + Buffer.byteLength(key) + value.byteLength;
    if (after > this.quota) return false;
    this.map.set(key, new Uint8Array(value));
    return true;
  }
  /** The value under `key` as text. */
  text(key: string): string | undefined {
    const v = this.map.get(key);
    return v === undefined ? undefined : dec(v);
  }
  /** Stores `value` under `key` directly (no quota, not counted), to seed a test. */
  put(key: string, value: string): void {
    this.map.set(key, enc(value));
  }
  /** The whole store as text, to compare before and after. */
  snapshot(): Record<string, string> {
    return Object.fromEntries([...this.map].map(([k, v]) => [k, dec(v)]));
  }
}
