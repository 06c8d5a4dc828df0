// github-issues: list and create GitHub issues through GitHub's REST API, authenticated with a
// secret handle (AssemblyScript, Extism ABI).
//
// The plugin never holds the token. Every request carries the header
// `Authorization: Bearer {{secret:<token_handle>}}`; Tyrum's egress checks the destination against
// the operator's grant and fills the template in only when the host is one the secret is bound to.
//
// Everything that goes into a URL is checked here, not only by the manifest's input schemas (a
// plugin must not rely on its caller): `owner` and `repo` may only hold the characters GitHub allows
// in account and repository names, so they can never add a path segment ("a/b", "../x"), a query or
// a fragment to the request.
import { Config } from "@extism/as-pdk";
import { alloc, free, http_request, length, load_u64, load_u8, store_u64, store_u8 } from "@extism/as-pdk/lib/env";
import { argsError, argsObject, fail, outputJson, stringArg } from "../../../plugins/_shared/assembly/io";
import { JsonKind, JsonNumber, JsonObject, JsonParser, JsonString, JsonValue, JsonWriter, kindName } from "../../../plugins/_shared/assembly/json";
import { http_status_code } from "./host";

const DEFAULT_BASE_URL = "https://api.github.com";
const DEFAULT_TOKEN_HANDLE = "GITHUB_TOKEN";
const USER_AGENT = "tyrum-github-issues";
const ACCEPT = "application/vnd.github+json";
const API_VERSION = "2022-11-28";

/** GitHub's limits: account names 39 characters, repository names 100, titles 256, bodies 65,536. */
const MAX_OWNER: i32 = 39;
const MAX_REPO: i32 = 100;
const MAX_TITLE: i32 = 256;
const MAX_BODY: i32 = 65536;
const MAX_PER_PAGE: i32 = 100;
const DEFAULT_PER_PAGE: i32 = 30;
const MAX_PAGE: i32 = 1000;
const MAX_BASE_URL: i32 = 2048;
/** Nesting accepted in a response (an issue object nests a few levels: user, labels, reactions). */
const RESPONSE_MAX_DEPTH: i32 = 128;
/** GitHub's error `message`, as quoted in a plugin error, at most this many characters. */
const MAX_MESSAGE: i32 = 300;

/** Why the last argument or configuration helper returned null (or -1). */
let problem: string = "";

// --- list_issues ---------------------------------------------------------------------------------

const ISSUE_FIELDS: string[] = ["number", "title", "state", "html_url", "pull_request"];

/**
 * {owner, repo, state?, per_page?, page?} -> {issues: [{number, title, state, url, pull_request?}]}
 *
 * GET {base_url}/repos/{owner}/{repo}/issues?state=..&per_page=..[&page=..]. GitHub lists pull
 * requests as issues too; those carry "pull_request": true.
 */
export function list_issues(): i32 {
  __collect(); // start from a clean heap: the previous call's garbage (a response body) is freed now
  const args = argsObject(["owner", "repo", "state", "per_page", "page"]);
  if (args === null) return fail(argsError);
  const repoPath = repositoryPath(args);
  if (repoPath === null) return fail(problem);
  const state = optionalString(args, "state", "open");
  if (state === null) return fail(problem);
  if (state !== "open" && state !== "closed" && state !== "all") return fail('invalid input: "state" must be "open", "closed" or "all"');
  const perPage = optionalInt(args, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE);
  if (perPage < 0) return fail(problem);
  const page = optionalInt(args, "page", 1, 1, MAX_PAGE);
  if (page < 0) return fail(problem);
  const api = apiConfig();
  if (api === null) return fail(problem);

  let path = repoPath + "/issues?state=" + state + "&per_page=" + perPage.toString();
  if (args.has("page")) path += "&page=" + page.toString();
  const res = send(api, "GET", path, null);
  if (res.status < 200 || res.status > 299) return fail(apiError(api, "GET", path, res));

  const body = res.body;
  const check = new JsonParser(body, RESPONSE_MAX_DEPTH, false);
  if (check.parse() === null) return fail(unexpected("GET", path, "the body is not JSON (" + (check.error as string) + ")"));
  const s = new Scanner(body);
  if (s.peek() !== 0x5b) return fail(unexpected("GET", path, "expected a JSON array of issues"));
  s.pos++;

  const out = new JsonWriter(64 + perPage * 192); // about one issue in 192 bytes; grows if needed
  out.raw('{"issues":[');
  let count = 0;
  if (s.peek() === 0x5d) s.pos++;
  else {
    for (;;) {
      if (s.peek() !== 0x7b) return fail(unexpected("GET", path, "an issue is not a JSON object"));
      const f = s.readObject(ISSUE_FIELDS);
      // Keep at most what was asked for, even from a server that ignores per_page.
      if (count < perPage) {
        const number = positiveInt(f[0]);
        if (number <= 0) return fail(unexpected("GET", path, 'an issue has no positive integer "number"'));
        const title = stringValue(f[1]);
        const issueState = stringValue(f[2]);
        const url = stringValue(f[3]);
        if (title === null || issueState === null || url === null) {
          return fail(unexpected("GET", path, 'issue ' + number.toString() + ' lacks a string "title", "state" or "html_url"'));
        }
        if (count > 0) out.raw(",");
        out.raw('{"number":').int(number).raw(',"title":').string(title).raw(',"state":').string(issueState).raw(',"url":').string(url);
        const pr = f[4];
        if (pr !== null && pr.kind !== JsonKind.Null) out.raw(',"pull_request":true');
        out.raw("}");
        count++;
      }
      const c = s.next();
      if (c === 0x5d) break;
      if (c !== 0x2c) return fail(unexpected("GET", path, "malformed array")); // cannot happen: validated above
    }
  }
  out.raw("]}");
  return outputJson(out);
}

// --- create_issue --------------------------------------------------------------------------------

const CREATED_FIELDS: string[] = ["number", "html_url"];

/** {owner, repo, title, body?} -> {number, url}: POST {base_url}/repos/{owner}/{repo}/issues. */
export function create_issue(): i32 {
  __collect();
  const args = argsObject(["owner", "repo", "title", "body"]);
  if (args === null) return fail(argsError);
  const repoPath = repositoryPath(args);
  if (repoPath === null) return fail(problem);
  const title = stringArg(args, "title");
  if (title === null) return fail(argsError);
  const titleChars = codePoints(title);
  if (titleChars < 1 || titleChars > MAX_TITLE) return fail('invalid input: "title" must be 1 to ' + MAX_TITLE.toString() + " characters");
  const body = optionalString(args, "body", "");
  if (body === null) return fail(problem);
  if (codePoints(body) > MAX_BODY) return fail('invalid input: "body" must be at most ' + MAX_BODY.toString() + " characters");
  const api = apiConfig();
  if (api === null) return fail(problem);

  const payload = new JsonWriter(title.length * 3 + body.length * 3 + 32);
  payload.raw('{"title":').string(title);
  if (args.has("body")) payload.raw(',"body":').string(body);
  payload.raw("}");

  const path = repoPath + "/issues";
  const res = send(api, "POST", path, payload);
  if (res.status < 200 || res.status > 299) return fail(apiError(api, "POST", path, res));

  const check = new JsonParser(res.body, RESPONSE_MAX_DEPTH, false);
  if (check.parse() === null) return fail(unexpected("POST", path, "the body is not JSON (" + (check.error as string) + ")"));
  const s = new Scanner(res.body);
  if (s.peek() !== 0x7b) return fail(unexpected("POST", path, "expected a JSON object (the new issue)"));
  const f = s.readObject(CREATED_FIELDS);
  const number = positiveInt(f[0]);
  const url = stringValue(f[1]);
  if (number <= 0 || url === null) return fail(unexpected("POST", path, 'the new issue lacks a positive integer "number" or a string "html_url"'));

  const out = new JsonWriter(url.length * 3 + 48);
  out.raw('{"number":').int(number).raw(',"url":').string(url).raw("}");
  return outputJson(out);
}

// --- arguments -----------------------------------------------------------------------------------

/** "/repos/{owner}/{repo}" from checked arguments; null (see `problem`) when either is refused. */
function repositoryPath(args: JsonObject): string | null {
  const owner = stringArg(args, "owner");
  if (owner === null) {
    problem = argsError;
    return null;
  }
  if (!isOwner(owner)) {
    problem = 'invalid input: "owner" must be a GitHub account name: 1 to ' + MAX_OWNER.toString() + " letters, digits or hyphens, not starting with a hyphen";
    return null;
  }
  const repo = stringArg(args, "repo");
  if (repo === null) {
    problem = argsError;
    return null;
  }
  if (!isRepo(repo)) {
    problem = 'invalid input: "repo" must be a GitHub repository name: 1 to ' + MAX_REPO.toString() + ' letters, digits, ".", "-" or "_", other than "." and ".."';
    return null;
  }
  return "/repos/" + owner + "/" + repo;
}

/** A GitHub user or organization name: [A-Za-z0-9][A-Za-z0-9-]{0,38}. */
function isOwner(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_OWNER) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (isAlnum(c)) continue;
    if (c === 0x2d && i > 0) continue;
    return false;
  }
  return true;
}

/** A GitHub repository name: [A-Za-z0-9._-]{1,100}, except "." and "..". */
function isRepo(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_REPO || s === "." || s === "..") return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (!(isAlnum(c) || c === 0x2e || c === 0x2d || c === 0x5f)) return false;
  }
  return true;
}

function isAlnum(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** The optional string argument `key`, or `fallback` when absent; null (see `problem`) when not a string. */
function optionalString(args: JsonObject, key: string, fallback: string): string | null {
  const v: JsonValue | null = args.get(key);
  if (v === null) return fallback;
  if (v.kind !== JsonKind.String) {
    problem = 'invalid input: "' + key + '" must be a string, got ' + kindName(v.kind);
    return null;
  }
  return changetype<JsonString>(v).value;
}

/** The optional integer argument `key` in [min, max], or `fallback` when absent; -1 (see `problem`) when refused. */
function optionalInt(args: JsonObject, key: string, fallback: i32, min: i32, max: i32): i32 {
  const v: JsonValue | null = args.get(key);
  if (v === null) return fallback;
  const range = 'invalid input: "' + key + '" must be an integer from ' + min.toString() + " to " + max.toString();
  if (v.kind !== JsonKind.Number) {
    problem = range + ", got " + kindName(v.kind);
    return -1;
  }
  const d = changetype<JsonNumber>(v).toF64();
  if (!(d >= <f64>min && d <= <f64>max) || d !== Math.floor(d)) {
    problem = range;
    return -1;
  }
  return <i32>d;
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

// --- configuration -------------------------------------------------------------------------------

class Api {
  constructor(
    public base: string,
    public handle: string,
  ) {}
}

/** base_url (without trailing slashes) and token_handle, checked; null (see `problem`) when refused. */
function apiConfig(): Api | null {
  const baseConfig = Config.get("base_url");
  const base = stripTrailingSlashes(baseConfig === null ? DEFAULT_BASE_URL : baseConfig);
  const baseProblem = checkBaseUrl(base);
  if (baseProblem.length > 0) {
    problem = "configuration: base_url " + baseProblem;
    return null;
  }
  const handleConfig = Config.get("token_handle");
  const handle = handleConfig === null ? DEFAULT_TOKEN_HANDLE : handleConfig;
  if (!isSecretName(handle)) {
    problem = "configuration: token_handle must be a secret handle name like GITHUB_TOKEN ([A-Z][A-Z0-9_]{0,63})";
    return null;
  }
  return new Api(base, handle);
}

function stripTrailingSlashes(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x2f) end--;
  return s.substring(0, end);
}

/**
 * Why `base` is refused ("" when fine): http(s) scheme, a non-empty host without user info, an
 * optional path (GitHub Enterprise Server: https://ghe.example.com/api/v3), no query or fragment,
 * white space or control characters.
 */
function checkBaseUrl(base: string): string {
  if (base.length > MAX_BASE_URL) return "is too long";
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

// --- HTTP ----------------------------------------------------------------------------------------

class Response {
  constructor(
    public status: i32,
    public body: Uint8Array,
  ) {}
}

/** Send `method` `api.base + path` with GitHub's headers and the token template; `payload` is a JSON body. */
function send(api: Api, method: string, path: string, payload: JsonWriter | null): Response {
  const req = new JsonWriter(api.base.length + path.length + 320);
  req
    .raw('{"url":')
    .string(api.base + path)
    .raw(',"method":"')
    .raw(method)
    .raw('","headers":{"Accept":"')
    .raw(ACCEPT)
    .raw('","Authorization":')
    .string("Bearer {{secret:" + api.handle + "}}")
    .raw(',"User-Agent":"')
    .raw(USER_AGENT)
    .raw('","X-GitHub-Api-Version":"')
    .raw(API_VERSION)
    .raw('"');
  if (payload !== null) req.raw(',"Content-Type":"application/json"');
  req.raw("}}");

  const reqBlock = toKernel(req.buf, req.len);
  const bodyBlock: u64 = payload === null ? 0 : toKernel(payload.buf, payload.len);
  const resBlock = http_request(reqBlock, bodyBlock);
  const status = http_status_code();
  free(reqBlock);
  if (bodyBlock !== 0) free(bodyBlock);
  return new Response(status, fromKernel(resBlock));
}

/** Copy the first `len` bytes of `bytes` into a new kernel block, 8 bytes at a time. */
function toKernel(bytes: Uint8Array, len: i32): u64 {
  const offset = alloc(<u64>len);
  const src = bytes.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= len; i += 8) store_u64(offset + <u64>i, load<u64>(src + <usize>i));
  for (; i < len; i++) store_u8(offset + <u64>i, load<u8>(src + <usize>i));
  return offset;
}

/** The bytes of kernel block `block` (freed), empty for 0. */
function fromKernel(block: u64): Uint8Array {
  if (block === 0) return new Uint8Array(0);
  const n = <i32>length(block);
  const out = new Uint8Array(n);
  const dst = out.dataStart;
  let i: i32 = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + <usize>i, load_u64(block + <u64>i));
  for (; i < n; i++) store<u8>(dst + <usize>i, load_u8(block + <u64>i));
  free(block);
  return out;
}

/** The plugin error for a non-2xx answer: the status, GitHub's `message`, and a hint for the usual causes. */
function apiError(api: Api, method: string, path: string, res: Response): string {
  let m = "GitHub API error: HTTP " + res.status.toString() + " for " + method + " " + path;
  const message = githubMessage(res.body);
  if (message !== null) m += ": " + message;
  if (res.status === 401) m += " (check the token stored in the secret handle " + api.handle + ")";
  else if (res.status === 404) m += " (no such repository, or the token cannot see it)";
  return m;
}

/** GitHub's error `message` (one line, cut to MAX_MESSAGE characters), or null when the body has none. */
function githubMessage(body: Uint8Array): string | null {
  if (new JsonParser(body, RESPONSE_MAX_DEPTH, false).parse() === null) return null;
  const s = new Scanner(body);
  if (s.peek() !== 0x7b) return null;
  const message = stringValue(s.readObject(["message"])[0]);
  if (message === null) return null;
  const text = message.length > MAX_MESSAGE ? message.substring(0, MAX_MESSAGE) + "…" : message;
  let clean = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    clean += c < 0x20 || c === 0x7f ? " " : String.fromCharCode(c);
  }
  return clean;
}

function unexpected(method: string, path: string, what: string): string {
  return "unexpected response from GitHub to " + method + " " + path + ": " + what;
}

// --- reading responses ---------------------------------------------------------------------------

/** The string in `v`, or null when `v` is absent or not a string. */
function stringValue(v: JsonValue | null): string | null {
  if (v === null || v.kind !== JsonKind.String) return null;
  return changetype<JsonString>(v).value;
}

/** The positive integer in `v` (at most 15 digits, written without fraction or exponent), else -1. */
function positiveInt(v: JsonValue | null): i64 {
  if (v === null || v.kind !== JsonKind.Number) return -1;
  const text = changetype<JsonNumber>(v).text;
  if (text.length < 1 || text.length > 15 || text.charCodeAt(0) === 0x30) return -1;
  let n: i64 = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + <i64>(c - 0x30);
  }
  return n;
}

/**
 * Walks a document JsonParser has already validated, without building it: GitHub's issue objects
 * carry dozens of fields (user, labels, the issue body, reactions) the tools ignore, and a page of
 * them should not become a DOM in the plugin's small linear memory. Only the fields asked for are
 * parsed, each on its own.
 */
class Scanner {
  pos: i32 = 0;
  constructor(public buf: Uint8Array) {}

  private ws(): void {
    const b = this.buf;
    while (this.pos < b.length) {
      const c = unchecked(b[this.pos]);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.pos++;
    }
  }

  /** The next byte after white space (not consumed), -1 at the end. */
  peek(): i32 {
    this.ws();
    return this.pos < this.buf.length ? <i32>unchecked(this.buf[this.pos]) : -1;
  }

  /** The next byte after white space, consumed. */
  next(): i32 {
    const c = this.peek();
    if (c >= 0) this.pos++;
    return c;
  }

  private skipString(): void {
    const b = this.buf;
    this.pos++; // the opening quote
    while (this.pos < b.length) {
      const c = unchecked(b[this.pos]);
      if (c === 0x5c) this.pos += 2;
      else {
        this.pos++;
        if (c === 0x22) return;
      }
    }
  }

  private skipValue(): void {
    const b = this.buf;
    const c0 = this.peek();
    if (c0 === 0x22) {
      this.skipString();
      return;
    }
    if (c0 !== 0x7b && c0 !== 0x5b) {
      // a number, true, false or null: up to the next delimiter
      while (this.pos < b.length) {
        const c = unchecked(b[this.pos]);
        if (c === 0x2c || c === 0x7d || c === 0x5d || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) return;
        this.pos++;
      }
      return;
    }
    let depth = 0;
    while (this.pos < b.length) {
      const c = unchecked(b[this.pos]);
      if (c === 0x22) {
        this.skipString();
        continue;
      }
      this.pos++;
      if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        depth--;
        if (depth === 0) return;
      }
    }
  }

  /** Parse bytes [start, end) on their own (a valid JSON value, since the document is). */
  private parseRange(start: i32, end: i32): JsonValue | null {
    return new JsonParser(this.buf.subarray(start, end), RESPONSE_MAX_DEPTH, true).parse();
  }

  /**
   * At an object: the values of the keys `names` (null where absent; the last one where a key
   * repeats), leaving the position after the object.
   */
  readObject(names: string[]): Array<JsonValue | null> {
    const found = new Array<JsonValue | null>(names.length);
    this.next(); // {
    if (this.peek() === 0x7d) {
      this.pos++;
      return found;
    }
    let more = true;
    while (more) {
      this.ws();
      const keyStart = this.pos;
      this.skipString();
      const key = this.parseRange(keyStart, this.pos);
      this.next(); // :
      this.ws();
      const valueStart = this.pos;
      this.skipValue();
      if (key !== null && key.kind === JsonKind.String) {
        const at = names.indexOf(changetype<JsonString>(key).value);
        if (at >= 0) found[at] = this.parseRange(valueStart, this.pos);
      }
      more = this.next() === 0x2c; // else the closing }
    }
    return found;
  }
}
