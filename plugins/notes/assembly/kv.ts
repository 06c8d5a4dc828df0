// Tyrum host API v1 key-value storage (docs/host-api.md): kv_get / kv_set take and return Extism
// kernel block addresses. Keys and values cross as UTF-8 bytes, copied 8 bytes at a time.
import { alloc, free, length, load_u64, load_u8, store_u64, store_u8 } from "@extism/as-pdk/lib/env";

/** The value stored under the UTF-8 key at `key`, as a kernel block; 0 when absent. */
@external("tyrum:host/v1", "kv_get")
declare function kv_get(key: u64): u64;

/** Store the value block under the key (value 0 deletes); 0 = stored, 1 = refused by the quota. */
@external("tyrum:host/v1", "kv_set")
declare function kv_set(key: u64, value: u64): i32;

/** Copy `len` bytes at `src` (linear memory) into a new kernel block. */
function toKernel(src: usize, len: i32): u64 {
  const offset = alloc(<u64>len);
  let i: i32 = 0;
  for (; i + 8 <= len; i += 8) store_u64(offset + <u64>i, load<u64>(src + <usize>i));
  for (; i < len; i++) store_u8(offset + <u64>i, load<u8>(src + <usize>i));
  return offset;
}

function keyBlock(key: string): u64 {
  const b = String.UTF8.encode(key);
  return toKernel(changetype<usize>(b), b.byteLength);
}

/** The value stored under `key`, or null when there is none. */
export function kvGet(key: string): Uint8Array | null {
  const k = keyBlock(key);
  const v = kv_get(k);
  free(k);
  if (v == 0) return null;
  const n = <i32>length(v);
  const out = new Uint8Array(n);
  const dst = out.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + <usize>i, load_u64(v + <u64>i));
  for (; i < n; i++) store<u8>(dst + <usize>i, load_u8(v + <u64>i));
  free(v);
  return out;
}

/**
 * Store the first `len` bytes of `value` under `key` (`len` > 0: an empty block would read as a
 * delete). False when the store refused it (the plugin's quota is full); nothing changed then.
 */
export function kvSet(key: string, value: Uint8Array, len: i32): bool {
  assert(len > 0, "kvSet: empty value");
  const k = keyBlock(key);
  const v = toKernel(value.dataStart, len);
  const r = kv_set(k, v);
  free(k);
  free(v);
  return r == 0;
}

/** Delete `key` (absent is fine). False only if the store refused. */
export function kvDelete(key: string): bool {
  const k = keyBlock(key);
  const r = kv_set(k, 0);
  free(k);
  return r == 0;
}
