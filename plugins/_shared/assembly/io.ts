// Call input, output and errors through the Extism kernel, for Tyrum's first-party plugins.
//
// Why not @extism/as-pdk's Host.outputString: it sizes the output by UTF-16 code units instead of
// UTF-8 bytes, so any non-ASCII output is cut short. Everything here works on UTF-8 bytes.
import { Host, Memory } from "@extism/as-pdk";
import { alloc, error_set, output_set, store_u64, store_u8 } from "@extism/as-pdk/lib/env";
import { JsonKind, JsonObject, JsonParser, JsonValue, JsonWriter, JsonString, kindName, quoteForMessage } from "./json";

/** Nesting accepted in tool arguments (flat objects of scalars). */
const ARGS_MAX_DEPTH: i32 = 16;

/** The call's input bytes. */
export function inputBytes(): Uint8Array {
  return Host.input();
}

/** Set the call's output to `len` bytes of `bytes` (copied into kernel memory 8 bytes at a time). */
export function outputBytes(bytes: Uint8Array, len: i32): void {
  const offset = alloc(<u64>len);
  const src = bytes.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= len; i += 8) store_u64(offset + <u64>i, load<u64>(src + <usize>i));
  for (; i < len; i++) store_u8(offset + <u64>i, load<u8>(src + <usize>i));
  output_set(offset, <u64>len);
}

/** Set the call's output to what `w` wrote. */
export function outputJson(w: JsonWriter): i32 {
  outputBytes(w.buf, w.len);
  return 0;
}

/**
 * Report an error through Extism's error_set and return the non-zero code the export must return.
 * The gateway turns it into a coded `plugin_error` carrying this message.
 */
export function fail(message: string): i32 {
  const m = Memory.allocateString(message);
  error_set(m.offset);
  return 1;
}

/** Why the last `argsObject` / `stringArg` returned null. */
export let argsError: string = "";

/**
 * Parse the call's input as a JSON object whose keys are all in `allowed` (the tool's input schema
 * has additionalProperties: false; the plugin enforces it too, so a direct call cannot smuggle keys).
 */
export function argsObject(allowed: string[]): JsonObject | null {
  const p = new JsonParser(inputBytes(), ARGS_MAX_DEPTH, true);
  const v = p.parse();
  if (v === null) {
    argsError = "invalid input: not valid JSON (" + (p.error as string) + ")";
    return null;
  }
  if (v.kind !== JsonKind.Object) {
    argsError = "invalid input: expected a JSON object, got " + kindName(v.kind);
    return null;
  }
  const obj = changetype<JsonObject>(v);
  for (let i = 0; i < obj.keys.length; i++) {
    const k = obj.keys[i];
    if (!allowed.includes(k)) {
      argsError = "invalid input: unknown key " + quoteForMessage(k) + " (allowed: " + allowed.join(", ") + ")";
      return null;
    }
  }
  return obj;
}

/** The required string argument `key`; null (see argsError) when missing or not a string. */
export function stringArg(obj: JsonObject, key: string): string | null {
  const v: JsonValue | null = obj.get(key);
  if (v === null) {
    argsError = 'invalid input: "' + key + '" is required';
    return null;
  }
  if (v.kind !== JsonKind.String) {
    argsError = 'invalid input: "' + key + '" must be a string, got ' + kindName(v.kind);
    return null;
  }
  return changetype<JsonString>(v).value;
}
