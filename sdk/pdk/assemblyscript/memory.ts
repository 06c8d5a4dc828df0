/* eslint-disable @typescript-eslint/ban-ts-comment */
// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).
//
// Copying bytes between the plugin's linear memory and Extism kernel blocks, 8 bytes at a time.
import { alloc, free, input_length, input_load_u64, input_load_u8, length, load_u64, load_u8, store_u64, store_u8 } from "@extism/as-pdk/lib/env";

/** Copy `len` bytes at `src` (linear memory) into a new kernel block. */
export function toBlock(src: usize, len: i32): u64 {
  const offset = alloc(<u64>len);
  let i: i32 = 0;
  for (; i + 8 <= len; i += 8) store_u64(offset + <u64>i, load<u64>(src + <usize>i));
  for (; i < len; i++) store_u8(offset + <u64>i, load<u8>(src + <usize>i));
  return offset;
}

/** A new kernel block holding `bytes`. */
export function bytesToBlock(bytes: Uint8Array): u64 {
  return toBlock(bytes.dataStart, bytes.length);
}

/** A new kernel block holding `s` as UTF-8. */
export function stringToBlock(s: string): u64 {
  const b = String.UTF8.encode(s);
  return toBlock(changetype<usize>(b), b.byteLength);
}

/** The bytes of kernel block `offset` (not freed). */
export function blockToBytes(offset: u64): Uint8Array {
  const n = <i32>length(offset);
  const out = new Uint8Array(n);
  const dst = out.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + <usize>i, load_u64(offset + <u64>i));
  for (; i < n; i++) store<u8>(dst + <usize>i, load_u8(offset + <u64>i));
  return out;
}

/** The bytes of kernel block `offset`, which is then freed. */
export function takeBlock(offset: u64): Uint8Array {
  const out = blockToBytes(offset);
  free(offset);
  return out;
}

/** The call's input bytes. */
export function readInput(): Uint8Array {
  const n = <i32>input_length();
  const out = new Uint8Array(n);
  const dst = out.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + <usize>i, input_load_u64(<u64>i));
  for (; i < n; i++) store<u8>(dst + <usize>i, input_load_u8(<u64>i));
  return out;
}
