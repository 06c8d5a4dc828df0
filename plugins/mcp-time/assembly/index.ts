// mcp-time: an MCP server that runs inside Tyrum's sandbox, written only against the WASM MCP plugin
// ABI of mcp.run servlets and hyper-mcp (v1) plugins, never against Tyrum's own host API:
//
//   describe(): input ignored; output ListToolsResult JSON  {"tools":[{name, description, inputSchema}]}
//   call():     input CallToolRequest JSON {"params":{"name","arguments"}}; output CallToolResult JSON
//               {"content":[{"type":"text","text":...}],"isError"?:true}
//
// A bad argument is a tool result with isError (the model can read it and retry); a request the module
// cannot serve at all (not JSON, no params.name, an unknown tool) is reported through Extism's
// error_set, as the ecosystem's generated bindings do. The module imports the Extism kernel only
// (not even AssemblyScript's env.abort: see abortCall).
//
// The tools follow the "time" plugin both ecosystems ship, minus reading the clock: a sandbox
// without WASI has none, so every tool is a pure function of its arguments (and of the `utc_offset`
// config value, read with the PDK's Config.get).
import { Config, Host, Memory } from "@extism/as-pdk";
import { error_set } from "@extism/as-pdk/lib/env";
import {
  JsonKind,
  JsonObject,
  JsonParser,
  JsonString,
  JsonWriter,
  jsonError,
  jsonFailed,
  jsonReadI64,
  jsonReset,
  kindName,
  quoteForMessage,
} from "../../_shared/assembly/json";

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the four-digit years both formats can write. */
const MIN_TIME: i64 = -62135596800;
const MAX_TIME: i64 = 253402300799;
/** Longest time string `parse_time` reads (the schema says the same). */
const MAX_TIME_TEXT: i32 = 64;
/** Nesting accepted in a request (arguments are flat). */
const REQUEST_MAX_DEPTH: i32 = 32;
/** The config key holding the default offset of `format_time`. */
const OFFSET_CONFIG_KEY = "utc_offset";

const TIME_ARG =
  '"time":{"type":"integer","minimum":-62135596800,"maximum":253402300799,' +
  '"description":"A Unix timestamp: seconds since 1970-01-01T00:00:00Z (years 1 to 9999)."}';
const READ_ONLY = '"annotations":{"readOnlyHint":true,"openWorldHint":false}';

/** ListToolsResult, written once (ASCII only). */
const TOOLS =
  '{"tools":[' +
  '{"name":"time_offset",' +
  '"description":"Add an offset in seconds to a Unix timestamp (negative goes back) and return the result as a Unix timestamp, RFC 2822 and RFC 3339 text, all in UTC.",' +
  '"inputSchema":{"type":"object","additionalProperties":false,"required":["time","offset"],"properties":{' +
  TIME_ARG +
  ',"offset":{"type":"integer","minimum":-315537897599,"maximum":315537897599,"description":"Seconds to add; e.g. -86400 is one day earlier."}}},' +
  READ_ONLY +
  "}," +
  '{"name":"parse_time",' +
  '"description":"Parse a date and time written in RFC 2822 (\\"Fri, 13 Dec 2024 10:25:48 +0000\\") or RFC 3339 (\\"2024-12-13T10:25:48Z\\") and return it as a Unix timestamp, RFC 2822 and RFC 3339 text, all in UTC. A weekday, if given, must match the date.",' +
  '"inputSchema":{"type":"object","additionalProperties":false,"required":["time"],"properties":{' +
  '"time":{"type":"string","minLength":1,"maxLength":64,"description":"The date and time, with its offset from UTC."}}},' +
  READ_ONLY +
  "}," +
  '{"name":"format_time",' +
  '"description":"Write a Unix timestamp as RFC 3339 and RFC 2822 text at an offset from UTC. Without utc_offset, the server\'s configured utc_offset is used (UTC if none).",' +
  '"inputSchema":{"type":"object","additionalProperties":false,"required":["time"],"properties":{' +
  TIME_ARG +
  ',"utc_offset":{"type":"string","pattern":"^(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$","description":"\\"Z\\" or \\"+HH:MM\\" / \\"-HH:MM\\", e.g. \\"+05:30\\"."}}},' +
  READ_ONLY +
  "}" +
  "]}";

// --- exports ------------------------------------------------------------------------------------

/** ListToolsResult: the tools this server offers. */
export function describe(): i32 {
  __collect();
  Host.output(Uint8Array.wrap(String.UTF8.encode(TOOLS)));
  return 0;
}

/** CallToolRequest -> CallToolResult. */
export function call(): i32 {
  __collect(); // start each call from a clean heap (an instance serves many calls)
  const p = new JsonParser(Host.input(), REQUEST_MAX_DEPTH, true);
  const request = p.parse();
  if (request === null) return fail("invalid request: not valid JSON (" + (p.error as string) + ")");
  if (request.kind !== JsonKind.Object) return fail("invalid request: expected a CallToolRequest object, got " + kindName(request.kind));
  const params = changetype<JsonObject>(request).get("params");
  if (params === null || params.kind !== JsonKind.Object) return fail('invalid request: "params" must be an object');
  const nameValue = changetype<JsonObject>(params).get("name");
  if (nameValue === null || nameValue.kind !== JsonKind.String) return fail('invalid request: "params.name" must be a string');
  const name = changetype<JsonString>(nameValue).value;

  let args = new JsonObject();
  const given = changetype<JsonObject>(params).get("arguments");
  if (given !== null && given.kind !== JsonKind.Null) {
    if (given.kind !== JsonKind.Object) return toolError('"arguments" must be an object, got ' + kindName(given.kind));
    args = changetype<JsonObject>(given);
  }

  if (name == "time_offset") return timeOffset(args);
  if (name == "parse_time") return parseTime(args);
  if (name == "format_time") return formatTime(args);
  return fail("unknown tool " + quoteForMessage(name) + " (tools: time_offset, parse_time, format_time)");
}

// --- tools --------------------------------------------------------------------------------------

/** {time, offset} -> the shifted time in UTC. */
function timeOffset(args: JsonObject): i32 {
  if (!onlyKeys(args, ["time", "offset"])) return toolError(problem);
  const time = timeArg(args);
  if (problem.length > 0) return toolError(problem);
  const offset = intArg(args, "offset");
  if (problem.length > 0) return toolError(problem);
  // Both are within ±3.2e11, so the sum cannot overflow.
  const shifted = time + offset;
  if (shifted < MIN_TIME || shifted > MAX_TIME) {
    return toolError("the result " + shifted.toString() + " is outside years 1 to 9999 (" + MIN_TIME.toString() + " to " + MAX_TIME.toString() + ")");
  }
  return utcResult(shifted);
}

/** {time: RFC 2822 or RFC 3339 text} -> that time in UTC. */
function parseTime(args: JsonObject): i32 {
  if (!onlyKeys(args, ["time"])) return toolError(problem);
  const v = args.get("time");
  if (v === null) return toolError('"time" is required');
  if (v.kind !== JsonKind.String) return toolError('"time" must be a string, got ' + kindName(v.kind));
  const text = changetype<JsonString>(v).value;
  if (text.length > MAX_TIME_TEXT) return toolError('"time" is longer than ' + MAX_TIME_TEXT.toString() + " characters");
  const t = parseDateTime(text);
  if (problem.length > 0) return toolError(quoteForMessage(text) + " " + problem);
  return utcResult(t);
}

/** {time, utc_offset?} -> RFC 3339 and RFC 2822 text at that offset (default: the config value). */
function formatTime(args: JsonObject): i32 {
  if (!onlyKeys(args, ["time", "utc_offset"])) return toolError(problem);
  const time = timeArg(args);
  if (problem.length > 0) return toolError(problem);
  let offsetText = "Z";
  let source = '"utc_offset"';
  const v = args.get("utc_offset");
  if (v !== null) {
    if (v.kind !== JsonKind.String) return toolError('"utc_offset" must be a string, got ' + kindName(v.kind));
    offsetText = changetype<JsonString>(v).value;
  } else {
    const configured = Config.get(OFFSET_CONFIG_KEY);
    if (configured !== null) {
      offsetText = configured;
      source = 'the configured "' + OFFSET_CONFIG_KEY + '"';
    }
  }
  const offset = parseOffset(offsetText);
  if (offset == NO_OFFSET) return toolError(source + " must be \"Z\" or \"+HH:MM\" / \"-HH:MM\" (at most 23:59), got " + quoteForMessage(offsetText));

  const w = new JsonWriter(160);
  w.raw('{"time":"').int(time).raw('","rfc3339":"').raw(rfc3339(time, offset)).raw('","rfc2822":"').raw(rfc2822(time, offset));
  w.raw('","utc_offset":"').raw(offsetName(offset)).raw('"}');
  return textResult(w.toString());
}

// --- results ------------------------------------------------------------------------------------

/** A CallToolResult with the time in UTC as JSON text (as the ecosystem's time plugins answer). */
function utcResult(t: i64): i32 {
  const w = new JsonWriter(160);
  w.raw('{"utc_time":"').int(t).raw('","utc_time_rfc2822":"').raw(rfc2822(t, 0)).raw('","utc_time_rfc3339":"').raw(rfc3339(t, 0)).raw('"}');
  return textResult(w.toString());
}

function textResult(text: string): i32 {
  const w = new JsonWriter(text.length + 48);
  w.raw('{"content":[{"type":"text","text":').string(text).raw("}]}");
  Host.output(w.toBytes());
  return 0;
}

/** A tool-level error: a result the caller (a model) sees, with isError set. */
function toolError(message: string): i32 {
  const w = new JsonWriter(message.length + 64);
  w.raw('{"content":[{"type":"text","text":').string("invalid arguments: " + message).raw('}],"isError":true}');
  Host.output(w.toBytes());
  return 0;
}

/**
 * AssemblyScript's runtime aborts (a failed assertion, an index out of range) through this handler
 * (asconfig.json: `use abort=...`) instead of importing `env.abort`, which only Tyrum provides: the
 * module then needs nothing beyond the Extism kernel, and loads in any Extism host. It reports the
 * message through error_set and traps.
 */
function abortCall(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const where = (fileName !== null ? fileName : "?") + ":" + line.toString() + ":" + column.toString();
  error_set(Memory.allocateString("aborted: " + (message !== null ? message : "(no message)") + " at " + where).offset);
  unreachable();
}

/** A request this server cannot serve: reported through error_set, the call fails. */
function fail(message: string): i32 {
  error_set(Memory.allocateString(message).offset);
  return 1;
}

// --- arguments ----------------------------------------------------------------------------------

/** Why the last argument read or parse failed ("" when it did not). */
let problem: string = "";

function onlyKeys(args: JsonObject, allowed: string[]): bool {
  problem = "";
  for (let i = 0; i < args.keys.length; i++) {
    const k = args.keys[i];
    if (!allowed.includes(k)) {
      problem = "unknown argument " + quoteForMessage(k) + " (allowed: " + allowed.join(", ") + ")";
      return false;
    }
  }
  return true;
}

/** The required integer argument `key` (problem set when missing or not an integer). */
function intArg(args: JsonObject, key: string): i64 {
  problem = "";
  const v = args.get(key);
  if (v === null) {
    problem = '"' + key + '" is required';
    return 0;
  }
  jsonReset();
  const n = jsonReadI64(v, "", key);
  if (jsonFailed()) problem = jsonError();
  return n;
}

/** The required `time` argument, a Unix timestamp within years 1 to 9999. */
function timeArg(args: JsonObject): i64 {
  const t = intArg(args, "time");
  if (problem.length == 0 && (t < MIN_TIME || t > MAX_TIME)) {
    problem = '"time" ' + t.toString() + " is outside years 1 to 9999 (" + MIN_TIME.toString() + " to " + MAX_TIME.toString() + ")";
  }
  return t;
}

// --- calendar (proleptic Gregorian, days since 1970-01-01) -----------------------------------------

const MONTHS: string[] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: string[] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const DAY_NAMES: string[] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

@inline function floorDiv(a: i64, b: i64): i64 {
  const q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

@inline function floorMod(a: i64, b: i64): i64 {
  return a - floorDiv(a, b) * b;
}

function isLeap(y: i64): bool {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

function daysInMonth(y: i64, m: i64): i64 {
  if (m == 2) return isLeap(y) ? 29 : 28;
  return m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31;
}

/** Days from 1970-01-01 to y-m-d (H. Hinnant's days_from_civil). */
function daysFromCivil(year: i64, m: i64, d: i64): i64 {
  const y = m <= 2 ? year - 1 : year;
  const era = floorDiv(y, 400);
  const yoe = y - era * 400;
  const mp = m > 2 ? m - 3 : m + 9;
  const doy = (153 * mp + 2) / 5 + d - 1;
  const doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/** The date of a day number, as year * 10000 + month * 100 + day (civil_from_days). */
function civilFromDays(days: i64): i64 {
  const z = days + 719468;
  const era = floorDiv(z, 146097);
  const doe = z - era * 146097;
  const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const mp = (5 * doy + 2) / 153;
  const d = doy - (153 * mp + 2) / 5 + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return y * 10000 + m * 100 + d;
}

/** 0 = Sunday. */
function weekday(days: i64): i32 {
  return <i32>floorMod(days + 4, 7);
}

function pad(n: i64, width: i32): string {
  let s = n.toString();
  while (s.length < width) s = "0" + s;
  return s;
}

/** `+HH:MM` (or `Z`) for an offset in seconds. */
function offsetName(offset: i64): string {
  if (offset == 0) return "Z";
  const a = offset < 0 ? -offset : offset;
  return (offset < 0 ? "-" : "+") + pad(a / 3600, 2) + ":" + pad((a % 3600) / 60, 2);
}

/** RFC 3339 at `offset` seconds from UTC, e.g. 2024-12-13T12:25:48+02:00. */
function rfc3339(t: i64, offset: i64): string {
  const local = t + offset;
  const days = floorDiv(local, 86400);
  const secs = floorMod(local, 86400);
  const ymd = civilFromDays(days);
  return (
    pad(ymd / 10000, 4) + "-" + pad((ymd / 100) % 100, 2) + "-" + pad(ymd % 100, 2) + "T" +
    pad(secs / 3600, 2) + ":" + pad((secs / 60) % 60, 2) + ":" + pad(secs % 60, 2) + offsetName(offset)
  );
}

/** RFC 2822 at `offset` seconds from UTC, e.g. Fri, 13 Dec 2024 12:25:48 +0200. */
function rfc2822(t: i64, offset: i64): string {
  const local = t + offset;
  const days = floorDiv(local, 86400);
  const secs = floorMod(local, 86400);
  const ymd = civilFromDays(days);
  const a = offset < 0 ? -offset : offset;
  return (
    DAYS[weekday(days)] + ", " + ((ymd % 100).toString()) + " " + MONTHS[<i32>((ymd / 100) % 100) - 1] + " " + pad(ymd / 10000, 4) + " " +
    pad(secs / 3600, 2) + ":" + pad((secs / 60) % 60, 2) + ":" + pad(secs % 60, 2) + " " +
    (offset < 0 ? "-" : "+") + pad(a / 3600, 2) + pad((a % 3600) / 60, 2)
  );
}

// --- parsing --------------------------------------------------------------------------------------

/** parseOffset's answer for text that is not an offset (a real offset is within ±86,340 s). */
const NO_OFFSET: i64 = i64.MIN_VALUE;

/** "Z", "+HH:MM" or "-HH:MM" (at most 23:59) in seconds; NO_OFFSET otherwise. */
function parseOffset(s: string): i64 {
  if (s == "Z" || s == "z") return 0;
  if (s.length != 6 || s.charCodeAt(3) != 0x3a) return NO_OFFSET;
  const sign = s.charCodeAt(0);
  if (sign != 0x2b && sign != 0x2d) return NO_OFFSET;
  const c = new Cursor(s);
  c.i = 1;
  const h = c.digits(2);
  c.i = 4;
  const m = c.digits(2);
  if (h < 0 || m < 0 || h > 23 || m > 59) return NO_OFFSET;
  const secs = <i64>(h * 3600 + m * 60);
  return sign == 0x2d ? -secs : secs;
}

/** A read position in a string. */
class Cursor {
  i: i32 = 0;
  constructor(public s: string) {}

  get done(): bool {
    return this.i >= this.s.length;
  }

  peek(): i32 {
    return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
  }

  /** Exactly `n` ASCII digits as a number, or -1 (position unchanged). */
  digits(n: i32): i32 {
    let v = 0;
    for (let k = 0; k < n; k++) {
      const c = this.i + k < this.s.length ? this.s.charCodeAt(this.i + k) : -1;
      if (c < 0x30 || c > 0x39) return -1;
      v = v * 10 + (c - 0x30);
    }
    this.i += n;
    return v;
  }

  /** Between `min` and `max` ASCII digits as a number, or -1. */
  digitRun(min: i32, max: i32): i32 {
    let n = 0;
    while (n < max && this.i + n < this.s.length) {
      const c = this.s.charCodeAt(this.i + n);
      if (c < 0x30 || c > 0x39) break;
      n++;
    }
    return n < min ? -1 : this.digits(n);
  }

  eat(c: i32): bool {
    if (this.peek() != c) return false;
    this.i++;
    return true;
  }

  /** Skip spaces and tabs; how many. */
  spaces(): i32 {
    let n = 0;
    while (this.peek() == 0x20 || this.peek() == 0x09) {
      this.i++;
      n++;
    }
    return n;
  }

  /** The next run of ASCII letters. */
  word(): string {
    const start = this.i;
    for (;;) {
      const c = this.peek() | 0x20;
      if (c < 0x61 || c > 0x7a) break;
      this.i++;
    }
    return this.s.substring(start, this.i);
  }
}

/** Index of `name` in `names`, ignoring ASCII case; -1 if absent. */
function indexOfName(names: string[], name: string): i32 {
  for (let i = 0; i < names.length; i++) {
    const n = names[i];
    if (n.length != name.length) continue;
    let same = true;
    for (let k = 0; k < n.length; k++) {
      if ((n.charCodeAt(k) | 0x20) != (name.charCodeAt(k) | 0x20)) {
        same = false;
        break;
      }
    }
    if (same) return i;
  }
  return -1;
}

/** Unix seconds of `text` (RFC 3339 when it starts with a four-digit year and "-", else RFC 2822); `problem` on failure. */
function parseDateTime(text: string): i64 {
  problem = "";
  const s = text.trim();
  const c = new Cursor(s);
  const year = c.digits(4);
  if (year >= 0 && c.peek() == 0x2d) return parseRfc3339(c, year);
  return parseRfc2822(new Cursor(s));
}

/** The seconds of a checked date and time at `offset`; `problem` set when a field is out of range. */
function toUnix(year: i32, month: i32, day: i32, h: i32, m: i32, sec: i32, offset: i64): i64 {
  if (year < 1 || year > 9999) {
    problem = "has a year outside 1 to 9999";
    return 0;
  }
  if (month < 1 || month > 12) {
    problem = "has no month " + month.toString();
    return 0;
  }
  if (day < 1 || <i64>day > daysInMonth(year, month)) {
    problem = "names a day that does not exist (" + MONTHS[month - 1] + " " + year.toString() + " has " + daysInMonth(year, month).toString() + " days)";
    return 0;
  }
  // 60 is a leap second: it is read as the first second of the next minute.
  if (h > 23 || m > 59 || sec > 60) {
    problem = "has a time of day out of range";
    return 0;
  }
  const t = daysFromCivil(year, month, day) * 86400 + <i64>(h * 3600 + m * 60 + sec) - offset;
  if (t < MIN_TIME || t > MAX_TIME) {
    problem = "is outside years 1 to 9999 in UTC";
    return 0;
  }
  return t;
}

/** YYYY-MM-DD("T"|"t"|" ")HH:MM:SS[.fraction]("Z"|"z"|±HH:MM); the year is already read. */
function parseRfc3339(c: Cursor, year: i32): i64 {
  const bad = "is not RFC 3339 (expected YYYY-MM-DDTHH:MM:SS with Z or an offset such as +02:00)";
  c.eat(0x2d);
  const month = c.digits(2);
  if (month < 0 || !c.eat(0x2d)) return bad3339(bad);
  const day = c.digits(2);
  if (day < 0) return bad3339(bad);
  const sep = c.peek();
  if (sep != 0x54 && sep != 0x74 && sep != 0x20) return bad3339(bad);
  c.i++;
  const h = c.digits(2);
  if (h < 0 || !c.eat(0x3a)) return bad3339(bad);
  const m = c.digits(2);
  if (m < 0 || !c.eat(0x3a)) return bad3339(bad);
  const sec = c.digits(2);
  if (sec < 0) return bad3339(bad);
  if (c.eat(0x2e) && c.digitRun(1, 9) < 0) return bad3339(bad); // a fraction is read and dropped
  const offset = parseOffset(c.s.substring(c.i));
  if (offset == NO_OFFSET) return bad3339(bad);
  return toUnix(year, month, day, h, m, sec, offset);
}

function bad3339(message: string): i64 {
  problem = message;
  return 0;
}

/** [Www,] D Mon YYYY HH:MM[:SS] (±HHMM | GMT | UT | UTC | Z), as RFC 2822 section 3.3 (spaces may repeat). */
function parseRfc2822(c: Cursor): i64 {
  const bad = "is neither RFC 3339 nor RFC 2822 (expected e.g. \"Fri, 13 Dec 2024 10:25:48 +0000\")";
  let wantDay = -1;
  if (c.peek() > 0x39) {
    wantDay = indexOfName(DAYS, c.word());
    if (wantDay < 0) return bad3339(bad);
    c.spaces();
    if (!c.eat(0x2c)) return bad3339(bad);
    c.spaces();
  }
  const day = c.digitRun(1, 2);
  if (day < 0 || c.spaces() == 0) return bad3339(bad);
  const month = indexOfName(MONTHS, c.word()) + 1;
  if (month == 0 || c.spaces() == 0) return bad3339(bad);
  const year = c.digits(4);
  if (year < 0 || c.spaces() == 0) return bad3339(bad);
  const h = c.digits(2);
  if (h < 0 || !c.eat(0x3a)) return bad3339(bad);
  const m = c.digits(2);
  if (m < 0) return bad3339(bad);
  let sec = 0;
  if (c.eat(0x3a)) {
    sec = c.digits(2);
    if (sec < 0) return bad3339(bad);
  }
  if (c.spaces() == 0) return bad3339(bad);
  let offset: i64 = 0;
  const sign = c.peek();
  if (sign == 0x2b || sign == 0x2d) {
    c.i++;
    const oh = c.digits(2);
    const om = c.digits(2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return bad3339(bad);
    offset = <i64>(oh * 3600 + om * 60);
    if (sign == 0x2d) offset = -offset;
  } else {
    const zone = c.word();
    if (indexOfName(["GMT", "UT", "UTC", "Z"], zone) < 0) return bad3339(bad);
  }
  if (!c.done) return bad3339(bad);
  const t = toUnix(year, month, day, h, m, sec, offset);
  if (problem.length > 0) return 0;
  if (wantDay >= 0) {
    const actual = weekday(daysFromCivil(year, month, day));
    if (actual != wantDay) {
      problem = "names the wrong weekday: " + day.toString() + " " + MONTHS[month - 1] + " " + year.toString() + " is a " + DAY_NAMES[actual];
      return 0;
    }
  }
  return t;
}
