// http-api: GET JSON from an API the operator granted, authenticated with a secret handle.
//
// The plugin never holds the token. It sends the header `Authorization: Bearer {{secret:<handle>}}`
// through Extism's http_request; Tyrum's egress checks the destination against the grant and fills
// the template in only when the host is one the secret is bound to.
import { Config, Memory } from "@extism/as-pdk";
import { http_request, length } from "@extism/as-pdk/lib/env";
import { argsError, argsObject, fail, outputJson, stringArg } from "../../_shared/assembly/io";
import { JsonParser, JsonWriter } from "../../_shared/assembly/json";

// as-pdk 1.0.0 does not declare it.
@external("extism:host/env", "http_status_code")
declare function http_status_code(): i32;

const DEFAULT_TOKEN_HANDLE = "API_TOKEN";
const MAX_PATH_LENGTH: i32 = 2048;
const MAX_BASE_URL_LENGTH: i32 = 2048;
/** Nesting accepted in a response body before it is reported as not JSON (body: null). */
const BODY_MAX_DEPTH: i32 = 512;

/** {path} -> {status, body}: GET `${base_url}${path}`; body is the parsed JSON, or null. */
export function get_json(): i32 {
  __collect(); // start from a clean heap: the previous call's garbage (a response body) is freed now
  const args = argsObject(["path"]);
  if (args === null) return fail(argsError);
  const path = stringArg(args, "path");
  if (path === null) return fail(argsError);
  const pathProblem = checkPath(path);
  if (pathProblem.length > 0) return fail('invalid input: "path" ' + pathProblem);

  const baseConfig = Config.get("base_url");
  if (baseConfig === null) return fail("configuration: base_url is not set");
  const base = stripTrailingSlashes(baseConfig);
  const baseProblem = checkBaseUrl(base);
  if (baseProblem.length > 0) return fail("configuration: base_url " + baseProblem);

  const handleConfig = Config.get("token_handle");
  const handle = handleConfig === null ? DEFAULT_TOKEN_HANDLE : handleConfig;
  if (!isSecretName(handle)) return fail("configuration: token_handle must be a secret handle name like API_TOKEN ([A-Z][A-Z0-9_]{0,63})");

  const req = new JsonWriter(base.length + path.length + 160);
  req
    .raw('{"url":')
    .string(base + path)
    .raw(',"method":"GET","headers":{"Accept":"application/json","Authorization":')
    .string("Bearer {{secret:" + handle + "}}")
    .raw("}}");
  const reqMem = Memory.allocateBytes(Uint8Array.wrap(req.buf.buffer, 0, req.len));
  const bodyOffset = http_request(reqMem.offset, 0);
  const status = http_status_code();
  reqMem.free();

  let body: Uint8Array;
  if (bodyOffset === 0) {
    body = new Uint8Array(0);
  } else {
    body = new Memory(bodyOffset, length(bodyOffset)).toUint8Array();
  }

  // Pass a valid JSON body through byte for byte (a leading BOM dropped); anything else is null.
  let start = 0;
  if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) start = 3;
  const json = body.subarray(start);
  let valid = false;
  if (!isBlank(json)) {
    const p = new JsonParser(json, BODY_MAX_DEPTH, false);
    valid = p.parse() !== null;
  }

  const out = new JsonWriter((valid ? json.length : 0) + 40);
  out.raw('{"status":').int(status).raw(',"body":');
  if (valid) out.bytes(json, 0, json.length);
  else out.raw("null");
  out.raw("}");
  return outputJson(out);
}

function isBlank(b: Uint8Array): bool {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}

/**
 * Why `path` is refused ("" when fine). It may only extend the configured base URL: it must start
 * with a single "/", and may not name a scheme ("://"), hold a backslash (URL parsers read it as "/"),
 * white space or control characters.
 */
function checkPath(path: string): string {
  if (path.length === 0 || path.charCodeAt(0) !== 0x2f) return 'must start with "/"';
  if (codePoints(path) > MAX_PATH_LENGTH) return "is longer than " + MAX_PATH_LENGTH.toString() + " characters";
  if (path.length > 1 && path.charCodeAt(1) === 0x2f) return 'must not start with "//"';
  if (path.includes("://")) return 'must not contain "://" (the host comes from base_url)';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x5c || (c >= 0x80 && c <= 0x9f)) return "must not contain white space, control characters or backslashes";
  }
  return "";
}

function codePoints(s: string): i32 {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function stripTrailingSlashes(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x2f) end--;
  return s.substring(0, end);
}

/**
 * Why `base` is refused ("" when fine): http(s) scheme, a non-empty host without user info, an
 * optional path, no query, fragment, white space or control characters.
 */
function checkBaseUrl(base: string): string {
  if (base.length > MAX_BASE_URL_LENGTH) return "is too long";
  let rest: i32;
  if (base.startsWith("https://")) rest = 8;
  else if (base.startsWith("http://")) rest = 7;
  else return "must start with https:// or http://";
  let hostEnd = base.indexOf("/", rest);
  if (hostEnd < 0) hostEnd = base.length;
  if (hostEnd === rest) return "has no host";
  for (let i = rest; i < base.length; i++) {
    const c = base.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x5c) return "must not contain white space, control characters or backslashes";
    if (c === 0x3f || c === 0x23) return "must not contain a query or fragment";
    if (c === 0x40 && i < hostEnd) return "must not contain user info";
  }
  return "";
}

/** A secret handle name: [A-Z][A-Z0-9_]{0,63} (so it cannot break out of the {{secret:...}} template). */
function isSecretName(s: string): bool {
  const n = s.length;
  if (n < 1 || n > 64) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    const upper = c >= 0x41 && c <= 0x5a;
    if (i === 0 ? !upper : !(upper || (c >= 0x30 && c <= 0x39) || c === 0x5f)) return false;
  }
  return true;
}
