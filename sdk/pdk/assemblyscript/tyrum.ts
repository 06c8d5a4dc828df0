/* eslint-disable @typescript-eslint/ban-ts-comment */
// @ts-nocheck -- AssemblyScript (compiled by asc, not tsc).
//
// `Tyrum`: a typed library over Tyrum's host API (docs/host-api.md) for AssemblyScript plugins, on the
// Extism kernel that @extism/as-pdk declares. Every string crosses the boundary as UTF-8 bytes (unlike
// as-pdk 1.0.0's Host.outputString, which cuts non-ASCII output short), and every kernel block this
// library allocates for a request is freed once the host has read it.
import { config_get, error_set, free, http_request, output_set } from "@extism/as-pdk/lib/env";
import { kv_get, kv_set, log as host_log } from "./host";
import { http_headers, http_status_code } from "./kernel";
import { bytesToBlock, readInput, stringToBlock, takeBlock, toBlock } from "./memory";
import { JsonValue, JsonWriter, parseJson } from "./json";

/** Log levels of `tyrum:host/v1.log`. */
export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
}

/** An HTTP response as the gateway's egress returned it (secret values redacted). */
export class HttpResponse {
  constructor(
    /** The status code (after at most 5 redirects). */
    public status: i32,
    /** The body (decompressed by the gateway). */
    public body: Uint8Array,
  ) {}

  /** True for a 2xx status. */
  ok(): bool {
    return this.status >= 200 && this.status <= 299;
  }

  /** The body decoded as UTF-8 text. */
  text(): string {
    return String.UTF8.decodeUnsafe(this.body.dataStart, <usize>this.body.length);
  }

  /** The body parsed as JSON; null when it is not JSON (see `jsonError()`). */
  json(): JsonValue | null {
    return parseJson<Uint8Array>(this.body);
  }
}

/** Secret handle names: what `{{secret:NAME}}` templates accept. */
function isSecretName(name: string): bool {
  const n = name.length;
  if (n < 1 || n > 64) return false;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    const upper = c >= 0x41 && c <= 0x5a;
    if (i === 0 ? !upper : !(upper || (c >= 0x30 && c <= 0x39) || c === 0x5f)) return false;
  }
  return true;
}

function setOutput(src: usize, len: i32): void {
  output_set(toBlock(src, len), <u64>len);
}

/** The Tyrum host API. All members are static: `Tyrum.kvGet("key")`. */
export class Tyrum {
  // --- input, output, errors ------------------------------------------------------------------

  /** The call's input: the tool's arguments as UTF-8 JSON, already checked against its input_schema. */
  static input(): Uint8Array {
    return readInput();
  }

  /** The call's input decoded as UTF-8 text. */
  static inputString(): string {
    const b = readInput();
    return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
  }

  /** The call's input parsed as JSON; null when it is not JSON (see `jsonError()`). */
  static inputJson(): JsonValue | null {
    return parseJson<Uint8Array>(readInput());
  }

  /** Set the call's output to these bytes. */
  static output(bytes: Uint8Array): void {
    setOutput(bytes.dataStart, bytes.length);
  }

  /** Set the call's output to `s` as UTF-8. */
  static outputString(s: string): void {
    const b = String.UTF8.encode(s);
    setOutput(changetype<usize>(b), b.byteLength);
  }

  /**
   * Set the call's output to a JSON document: JSON text (a string), its UTF-8 bytes (a Uint8Array,
   * e.g. from a generated `serialize...` function), what a JsonWriter wrote, or a parsed JsonValue.
   */
  static outputJson<T>(json: T): void {
    if (isString<T>()) {
      Tyrum.outputString(changetype<string>(json));
    } else if (isReference<T>()) {
      // (A nullable argument is only known at run time.)
      if (json instanceof Uint8Array) {
        Tyrum.output(changetype<Uint8Array>(json));
      } else if (json instanceof JsonWriter) {
        const w = changetype<JsonWriter>(json);
        setOutput(w.buf.dataStart, w.len);
      } else if (json instanceof JsonValue) {
        const w = new JsonWriter(256).value(changetype<JsonValue>(json));
        setOutput(w.buf.dataStart, w.len);
      } else {
        abort("Tyrum.outputJson takes a string, a Uint8Array, a JsonWriter or a JsonValue (not null)");
      }
    } else {
      ERROR("Tyrum.outputJson takes a string, a Uint8Array, a JsonWriter or a JsonValue");
    }
  }

  /**
   * Report an error and return the code the export must return: `return Tyrum.fail("...")`. The
   * caller gets a `sandbox_error` (reason `plugin_error`) carrying the message.
   */
  static fail(message: string): i32 {
    error_set(stringToBlock(message));
    return 1;
  }

  // --- logs -----------------------------------------------------------------------------------

  /** Log a line (at most 100 lines of 2 KiB per call are kept; secret values are redacted). */
  static log(level: LogLevel, message: string): void {
    const m = stringToBlock(message);
    host_log(<i32>level, m);
    free(m);
  }

  static trace(message: string): void {
    Tyrum.log(LogLevel.Trace, message);
  }

  static debug(message: string): void {
    Tyrum.log(LogLevel.Debug, message);
  }

  static info(message: string): void {
    Tyrum.log(LogLevel.Info, message);
  }

  static warn(message: string): void {
    Tyrum.log(LogLevel.Warn, message);
  }

  static error(message: string): void {
    Tyrum.log(LogLevel.Error, message);
  }

  // --- config ---------------------------------------------------------------------------------

  /**
   * The configuration value under the top-level key `key` (validated against the manifest's
   * config_schema, defaults applied): strings as they are, other values as JSON text; null when
   * unset. A field marked "x-tyrum-secret" holds a secret handle's name, never its value.
   */
  static config(key: string): string | null {
    const k = stringToBlock(key);
    const v = config_get(k);
    free(k);
    if (v === 0) return null;
    const b = takeBlock(v);
    return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
  }

  // --- key-value storage (needs a kv grant) -----------------------------------------------------

  /** The value stored under `key`, or null when there is none. */
  static kvGet(key: string): Uint8Array | null {
    const k = stringToBlock(key);
    const v = kv_get(k);
    free(k);
    if (v === 0) return null;
    return takeBlock(v);
  }

  /** The value stored under `key` decoded as UTF-8, or null when there is none. */
  static kvGetString(key: string): string | null {
    const b = Tyrum.kvGet(key);
    if (b === null) return null;
    return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
  }

  /**
   * Store `value` under `key` (keys at most 512 bytes, values at most 256 KiB). False when the
   * plugin's quota refused it; nothing changed then.
   */
  static kvSet(key: string, value: Uint8Array): bool {
    const k = stringToBlock(key);
    const v = bytesToBlock(value);
    const r = kv_set(k, v);
    free(k);
    free(v);
    return r === 0;
  }

  /** Store `value` (as UTF-8) under `key`; false when the quota refused it. */
  static kvSetString(key: string, value: string): bool {
    return Tyrum.kvSet(key, Uint8Array.wrap(String.UTF8.encode(value)));
  }

  /** Delete `key` (absent is fine); false only if the store refused. */
  static kvDelete(key: string): bool {
    const k = stringToBlock(key);
    const r = kv_set(k, 0);
    free(k);
    return r === 0;
  }

  // --- HTTP through the gateway's checked egress (needs an egress grant) ------------------------

  /**
   * The header-value template that makes the gateway insert secret `name`: `{{secret:NAME}}`. Put it
   * in a header value, e.g. `"Bearer " + Tyrum.secret("GITHUB_TOKEN")`. The plugin never sees the
   * value; the gateway fills it in only toward the hosts the secret is bound to. Aborts on a name
   * that is not a handle name ([A-Z][A-Z0-9_]{0,63}), which would otherwise be sent literally.
   */
  static secret(name: string): string {
    if (!isSecretName(name)) abort("Tyrum.secret: " + name + " is not a secret handle name ([A-Z][A-Z0-9_]{0,63})");
    return "{{secret:" + name + "}}";
  }

  /**
   * Make an HTTP request. The destination and method must be in the plugin's effective rights, else
   * the call is aborted with `capability_denied` (so is a secret template toward a host the secret is
   * not bound to). Redirects are followed by the gateway; compressed bodies are decoded.
   */
  static httpRequest(url: string, method: string = "GET", headers: Map<string, string> | null = null, body: Uint8Array | null = null): HttpResponse {
    const w = new JsonWriter(url.length + 64);
    w.raw('{"url":').string(url).raw(',"method":').string(method.toUpperCase());
    if (headers !== null) {
      w.raw(',"headers":{');
      const names = headers.keys();
      for (let i = 0; i < names.length; i++) {
        if (i > 0) w.byte(0x2c);
        w.string(names[i]).byte(0x3a).string(headers.get(names[i]));
      }
      w.byte(0x7d);
    }
    w.byte(0x7d);
    const req = toBlock(w.buf.dataStart, w.len);
    const b = body !== null && body.length > 0 ? bytesToBlock(body) : 0;
    const res = http_request(req, b);
    const status = http_status_code();
    free(req);
    if (b !== 0) free(b);
    return new HttpResponse(status, res === 0 ? new Uint8Array(0) : takeBlock(res));
  }

  /** GET `url`. */
  static httpGet(url: string, headers: Map<string, string> | null = null): HttpResponse {
    return Tyrum.httpRequest(url, "GET", headers, null);
  }

  /** The headers of the last response as a JSON object (names in lowercase), or null before any. */
  static httpHeaders(): string | null {
    const h = http_headers();
    if (h === 0) return null;
    const b = takeBlock(h);
    return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
  }
}
