// Shared helpers for the sandbox tests: WAT fixtures compiled at test time with wabt.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import type { LoadInfo, LoadOptions, SandboxPool } from '../../sandbox/index.js';

const FIXTURES = new URL('../fixtures/wasm/', import.meta.url);

let wabt: ReturnType<typeof wabtInit> | undefined;
const cache = new Map<string, Uint8Array>();

/** sha256 hex of some bytes. */
export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Compile test/fixtures/wasm/<name>.wat to a binary module. */
export async function wat(name: string): Promise<Uint8Array> {
  const hit = cache.get(name);
  if (hit) return hit;
  const w = await (wabt ??= wabtInit());
  const text = readFileSync(new URL(`${name}.wat`, FIXTURES), 'utf8');
  const mod = w.parseWat(`${name}.wat`, text, { exceptions: true });
  try {
    mod.validate();
    const bytes = new Uint8Array(mod.toBinary({}).buffer);
    cache.set(name, bytes);
    return bytes;
  } finally {
    mod.destroy();
  }
}

/** Load fixture `name` into `pool` under `key` with a correct digest. */
export async function loadFixture(
  pool: SandboxPool,
  key: string,
  name: string,
  exports: string[],
  opts: Partial<LoadOptions> = {},
): Promise<LoadInfo> {
  const wasm = await wat(name);
  return pool.load(key, { wasm, expectedSha256: sha256(wasm), exports, ...opts });
}

/** Little-endian u64 at `offset` of an output, as a number. */
export function u64(b: Uint8Array, offset = 0): number {
  return Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(offset, true));
}

export const NO_INPUT = new Uint8Array(0);
export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);
