// Shared helpers for the manifest tests: WAT fixtures compiled with wabt, plugin directories
// written into tap's per-test directories, and raw tar archives for the hostile-archive cases.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import wabtInit from 'wabt';

const FIXTURES = new URL('../fixtures/plugins/', import.meta.url);

let wabt: ReturnType<typeof wabtInit> | undefined;
const cache = new Map<string, Buffer>();

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Compile test/fixtures/plugins/<name>.wat to a binary module. */
export async function wat(name = 'echo'): Promise<Buffer> {
  const hit = cache.get(name);
  if (hit) return hit;
  const w = await (wabt ??= wabtInit());
  const mod = w.parseWat(`${name}.wat`, readFileSync(new URL(`${name}.wat`, FIXTURES), 'utf8'));
  try {
    mod.validate();
    const bytes = Buffer.from(mod.toBinary({}).buffer);
    cache.set(name, bytes);
    return bytes;
  } finally {
    mod.destroy();
  }
}

/** A manifest that passes every check for a module with digest `wasmSha256` (exports echo, shout). */
export function goodManifest(wasmSha256: string): Record<string, unknown> {
  return {
    manifest_version: 1,
    id: 'echo-tools',
    name: 'Echo tools',
    version: '1.0.0',
    description: 'Echoes its input.',
    publisher: 'Tyrum tests',
    engines: { tyrum: '^1.0.0' },
    wasm: { path: 'plugin.wasm', sha256: wasmSha256 },
    contributes: {
      tools: [
        {
          id: 'echo',
          export: 'echo',
          description: 'Returns its input.',
          input_schema: { type: 'object', properties: { text: { type: 'string', maxLength: 1000 } }, required: ['text'], additionalProperties: false },
          output_schema: { type: 'object', properties: { text: { type: 'string' } } },
          effect: 'read_only',
        },
        {
          id: 'shout',
          export: 'shout',
          description: 'Returns its input in capitals.',
          input_schema: { type: 'object', properties: { text: { type: 'string' } } },
          output_schema: { type: 'object' },
          effect: 'read_only',
        },
      ],
    },
  };
}

export interface PluginFiles {
  /** Edit the good manifest in place before it is written. */
  edit?: (m: Record<string, unknown>) => void;
  /** Write this text as tyrum.plugin.json instead of the (edited) manifest. */
  raw?: string | Buffer;
  /** Module bytes (default: the echo fixture). */
  wasm?: Buffer;
  /** Write the manifest without indentation. */
  compact?: boolean;
}

/** Write a plugin into `dir` (created if needed); returns `dir`. */
export async function writePlugin(dir: string, files: PluginFiles = {}): Promise<string> {
  const wasm = files.wasm ?? (await wat('echo'));
  const m = goodManifest(sha256(wasm));
  files.edit?.(m);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tyrum.plugin.json'), files.raw ?? JSON.stringify(m, null, files.compact ? undefined : 2));
  const path = String((m.wasm as { path?: unknown } | undefined)?.path ?? 'plugin.wasm');
  if (!path.includes('..') && !path.startsWith('/')) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), wasm);
  }
  return dir;
}

/** Set a deep property: path like 'contributes.tools.0.effect'. */
export function set(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = obj as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[keys[keys.length - 1] as string] = value;
}

/** Delete a deep property. */
export function unset(obj: Record<string, unknown>, path: string): void {
  const keys = path.split('.');
  let o = obj as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  delete o[keys[keys.length - 1] as string];
}

/** One entry of a hand-built tar (any type, any path: hostile archives on purpose). */
export interface TarEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  data?: Uint8Array;
  linkpath?: string;
  /** Override the size written in the header (to lie about it). */
  size?: number;
}

/** A tar (gzip-compressed unless `gzip` is false) with exactly `entries`. */
export function tarball(entries: readonly TarEntry[], gzip = true): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'File';
    const data = Buffer.from(e.data ?? new Uint8Array(0));
    const h = new Header({ path: e.path, type, mode: 0o644, uid: 0, gid: 0, size: e.size ?? (type === 'File' ? data.length : 0), mtime: new Date(0), linkpath: e.linkpath, devmaj: 0, devmin: 0 });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    parts.push(block);
    if (type === 'File') parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  const tar = Buffer.concat(parts);
  return gzip ? gzipSync(tar) : tar;
}

/** Time `fn` while measuring the longest gap between 1 ms timer ticks (event-loop blocking). */
export async function measureBlocking<T>(fn: () => Promise<T>): Promise<{ result: T | undefined; error: unknown; elapsedMs: number; maxGapMs: number }> {
  let last = performance.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  // Let the timer start ticking before the work begins.
  await new Promise((r) => setTimeout(r, 5));
  last = performance.now();
  const start = performance.now();
  let result: T | undefined;
  let error: unknown;
  try {
    result = await fn();
  } catch (e) {
    error = e;
  }
  const elapsedMs = performance.now() - start;
  // One more tick so a block at the very end is counted.
  await new Promise((r) => setTimeout(r, 2));
  clearInterval(timer);
  maxGap = Math.max(maxGap, performance.now() - last);
  return { result, error, elapsedMs, maxGapMs: maxGap };
}
