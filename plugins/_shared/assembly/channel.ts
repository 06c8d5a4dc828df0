// The channel-adapter ABI (docs/channels.md, core/channels/abi.ts) for Tyrum's first-party channel
// plugins (telegram, slack, webhook): reading the two exports' inputs, reading platform JSON
// leniently, writing normalised messages and outbound requests, and splitting a long reply.
//
// Both exports are pure translators: no network, no storage, no secrets. The host verified the
// webhook before the inbound export sees it, and sends (and authenticates) what the outbound export
// returns, after checking each request's destination.
import { inputBytes } from "./io";
import { JsonBool, JsonKind, JsonNumber, JsonObject, JsonParser, JsonString, JsonValue, JsonWriter, kindName } from "./json";

/** Nesting accepted in webhook bodies (Slack's rich-text blocks nest a few levels). */
const BODY_MAX_DEPTH: i32 = 64;
/** Requests one reply may take (CHANNEL_LIMITS.maxOutboundRequests in core/channels/abi.ts). */
export const MAX_PARTS: i32 = 16;
/** Longest id the host accepts (CHANNEL_LIMITS.maxIdChars). */
const MAX_ID_CHARS: i32 = 256;
/** What ends the last part when a reply needs more than MAX_PARTS messages. */
export const TRUNCATED_MARK = "\n[…truncated]";

/** Why the last read* function returned null. */
export let channelError: string = "";

// --- inputs -------------------------------------------------------------------------------------

/** The inbound export's input: the verified webhook. */
export class InboundInput {
  headers: JsonObject = new JsonObject();
  body: string = "";
  instance: string = "";
}

/** The outbound export's input: one reply to format. */
export class OutboundInput {
  text: string = "";
  chatId: string = "";
  threadId: string | null = null;
  textLimit: i32 = 0;
}

function inputObject(): JsonObject | null {
  const p = new JsonParser(inputBytes(), 8, true);
  const v = p.parse();
  if (v === null) {
    channelError = "invalid input: not valid JSON (" + (p.error as string) + ")";
    return null;
  }
  if (v.kind !== JsonKind.Object) {
    channelError = "invalid input: expected a JSON object, got " + kindName(v.kind);
    return null;
  }
  return changetype<JsonObject>(v);
}

/** `{headers, body, instance}`; null (see channelError) when the host sent something else. */
export function readInboundInput(): InboundInput | null {
  const o = inputObject();
  if (o === null) return null;
  const r = new InboundInput();
  const body = str(o.get("body"));
  if (body === null) {
    channelError = 'invalid input: "body" (the raw webhook body) must be a string';
    return null;
  }
  r.body = body;
  const headers = obj(o.get("headers"));
  if (headers !== null) r.headers = headers;
  const instance = str(o.get("instance"));
  if (instance !== null) r.instance = instance;
  return r;
}

/** `{text, chat_id, thread_id, text_limit}`; null (see channelError) when malformed. */
export function readOutboundInput(): OutboundInput | null {
  const o = inputObject();
  if (o === null) return null;
  const r = new OutboundInput();
  const text = str(o.get("text"));
  if (text === null) {
    channelError = 'invalid input: "text" must be a string';
    return null;
  }
  r.text = text;
  const chat = id(o.get("chat_id"));
  if (chat === null) {
    channelError = 'invalid input: "chat_id" must be a non-empty id';
    return null;
  }
  r.chatId = chat;
  const thread = o.get("thread_id");
  if (thread !== null && thread.kind !== JsonKind.Null) {
    const t = id(thread);
    if (t === null) {
      channelError = 'invalid input: "thread_id" must be an id or null';
      return null;
    }
    r.threadId = t;
  }
  const limit = o.get("text_limit");
  const n = limit === null ? -1 : intOf(limit);
  if (n < 1) {
    channelError = 'invalid input: "text_limit" must be a positive integer';
    return null;
  }
  r.textLimit = n;
  return r;
}

/** The webhook body as JSON; null (see channelError) when it is not JSON. */
export function parseBody(body: string): JsonValue | null {
  const p = new JsonParser(Uint8Array.wrap(String.UTF8.encode(body)), BODY_MAX_DEPTH, true);
  const v = p.parse();
  if (v === null) channelError = "the webhook body is not JSON: " + (p.error as string);
  return v;
}

// --- lenient reads of platform JSON -------------------------------------------------------------
// Platforms add fields and update types all the time: a read of the wrong kind is "absent", never
// an error.

/** `v` as an object, or null. */
export function obj(v: JsonValue | null): JsonObject | null {
  return v !== null && v.kind === JsonKind.Object ? changetype<JsonObject>(v) : null;
}

/** Member `key` of `o` (null when `o` is null or has no such member). */
export function member(o: JsonObject | null, key: string): JsonValue | null {
  return o === null ? null : o.get(key);
}

/** `v` as a string, or null. */
export function str(v: JsonValue | null): string | null {
  return v !== null && v.kind === JsonKind.String ? changetype<JsonString>(v).value : null;
}

/** `v` as a boolean: true only for JSON true. */
export function isTrue(v: JsonValue | null): bool {
  return v !== null && v.kind === JsonKind.Bool && changetype<JsonBool>(v).value;
}

/** True when `s` is a decimal integer as JSON writes one: optional "-", digits, no leading zero. */
export function isIntegerText(s: string): bool {
  const n = s.length;
  const start = n > 0 && s.charCodeAt(0) === 0x2d ? 1 : 0;
  if (n === start) return false;
  if (s.charCodeAt(start) === 0x30 && n > start + 1) return false;
  for (let i = start; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** `v` as a small non-negative integer (text_limit), or -1. */
function intOf(v: JsonValue): i32 {
  if (v.kind !== JsonKind.Number) return -1;
  const t = changetype<JsonNumber>(v).text;
  if (!isIntegerText(t) || t.charCodeAt(0) === 0x2d || t.length > 9) return -1;
  return I32.parseInt(t);
}

/** True when `s` is an id the host accepts: 1 to 256 printable ASCII characters, no space. */
export function isId(s: string): bool {
  const n = s.length;
  if (n < 1 || n > MAX_ID_CHARS) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/**
 * `v` as an id: a string, or an integer number written as its decimal text (Telegram's ids are
 * numbers: no rounding, the text is the JSON's own). Null when absent or not a valid id.
 */
export function id(v: JsonValue | null): string | null {
  if (v === null) return null;
  let s: string;
  if (v.kind === JsonKind.String) s = changetype<JsonString>(v).value;
  else if (v.kind === JsonKind.Number && isIntegerText(changetype<JsonNumber>(v).text)) s = changetype<JsonNumber>(v).text;
  else return null;
  return isId(s) ? s : null;
}

// --- inbound output -----------------------------------------------------------------------------

/** Writes `{"messages":[...], "respond"?: ...}`. */
export class MessagesWriter {
  w: JsonWriter = new JsonWriter(512);
  count: i32 = 0;
  constructor() {
    this.w.raw('{"messages":[');
  }

  add(externalId: string, senderId: string, senderName: string | null, chatId: string, direct: bool, threadId: string | null, text: string): void {
    const w = this.w;
    if (this.count > 0) w.byte(0x2c);
    this.count++;
    w.raw('{"external_id":').string(externalId);
    w.raw(',"sender":{"id":').string(senderId);
    if (senderName !== null && senderName.length > 0) w.raw(',"name":').string(senderName);
    w.raw('},"chat":{"id":').string(chatId).raw(',"kind":').raw(direct ? '"direct"' : '"group"');
    w.raw('},"thread_id":');
    if (threadId === null) w.nullValue();
    else w.string(threadId);
    w.raw(',"text":').string(text).raw("}");
  }

  /** Close the list; `respondBody` (a JSON document), when given, is what the host answers the platform. */
  finish(respondBody: JsonWriter | null = null): JsonWriter {
    this.w.raw("]");
    if (respondBody !== null) this.w.raw(',"respond":{"status":200,"body":').bytes(respondBody.buf, 0, respondBody.len).raw("}");
    this.w.raw("}");
    return this.w;
  }
}

// --- outbound output ----------------------------------------------------------------------------

/**
 * Split `text` into parts of at most `limit` UTF-16 units whose concatenation is `text`: at the
 * last paragraph break, else line break, else space in the second half of each window; else at the
 * limit, moved back so that no surrogate pair, and no emoji sequence (ZWJ, variation selector, skin
 * tone, keycap, flag, combining mark), is cut. At most `maxParts` parts: a longer text loses its end, and the last
 * part ends with TRUNCATED_MARK. Parts that are only white space are dropped (platforms refuse
 * empty messages). An empty text is one empty part.
 */
export function splitText(text: string, limit: i32, maxParts: i32 = MAX_PARTS): string[] {
  const parts = new Array<string>();
  const n = text.length;
  if (n <= limit) {
    parts.push(text);
    return parts;
  }
  let pos = 0;
  while (pos < n) {
    if (n - pos <= limit) {
      pushPart(parts, text.substring(pos));
      break;
    }
    if (parts.length === maxParts - 1) {
      // The last part allowed: what fits, then the mark.
      const room = max(limit - TRUNCATED_MARK.length, 1);
      const cut = cutPoint(text, pos, room);
      parts.push(text.substring(pos, cut) + TRUNCATED_MARK);
      break;
    }
    const cut = cutPoint(text, pos, limit);
    pushPart(parts, text.substring(pos, cut));
    pos = cut;
  }
  if (parts.length === 0) parts.push(text.substring(0, cutPoint(text, 0, limit)));
  return parts;
}

function pushPart(parts: string[], s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      parts.push(s);
      return;
    }
  }
}

/** Where the part starting at `pos` (with more than `limit` units left) ends. */
function cutPoint(s: string, pos: i32, limit: i32): i32 {
  const end = pos + limit; // the part is s[pos, end) at most
  const least = pos + (limit >> 1);
  // A paragraph break, then a line break, then a space: the separator stays at the end of the part.
  let i = s.lastIndexOf("\n\n", end - 2);
  if (i >= least) return i + 2;
  i = s.lastIndexOf("\n", end - 1);
  if (i >= least) return i + 1;
  i = s.lastIndexOf(" ", end - 1);
  if (i >= least) return i + 1;
  // A hard cut: never between the units of a pair, and not inside an emoji sequence if avoidable.
  let cut = end;
  for (let back = 0; back < 32 && cut > pos + 1; back++) {
    if (!joinsPrevious(s, cut)) break;
    cut--;
  }
  if (cut <= pos + 1 || joinsPrevious(s, cut)) {
    cut = end;
    if (isLowAt(s, cut) && isHighAt(s, cut - 1)) cut--;
  }
  return cut;
}

@inline function isHighAt(s: string, i: i32): bool {
  const c = s.charCodeAt(i);
  return c >= 0xd800 && c <= 0xdbff;
}
@inline function isLowAt(s: string, i: i32): bool {
  const c = s.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff;
}

/** True when cutting `s` before unit `i` would separate it from what comes before. */
function joinsPrevious(s: string, i: i32): bool {
  if (i <= 0 || i >= s.length) return false;
  const c = s.charCodeAt(i);
  const prev = s.charCodeAt(i - 1);
  if (c >= 0xdc00 && c <= 0xdfff && prev >= 0xd800 && prev <= 0xdbff) return true; // inside a pair
  if (prev === 0x200d || c === 0x200d) return true; // zero-width joiner
  if (c >= 0xfe00 && c <= 0xfe0f) return true; // variation selectors
  if (c >= 0x0300 && c <= 0x036f) return true; // combining marks
  if (c >= 0x20d0 && c <= 0x20ff) return true; // combining marks for symbols (keycaps)
  // Emoji skin tones U+1F3FB..U+1F3FF: D83C DFFB..DFFF.
  if (c === 0xd83c && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdffb && d <= 0xdfff) return true;
  }
  // A flag is a pair of regional indicators: after an odd run of them, the next one completes it.
  if (isRegionalIndicatorAt(s, i)) {
    let run = 0;
    for (let j = i - 2; j >= 0 && isRegionalIndicatorAt(s, j); j -= 2) run++;
    if ((run & 1) === 1) return true;
  }
  return false;
}

/** True when units i, i+1 of `s` are a regional indicator (U+1F1E6..U+1F1FF: D83C DDE6..DDFF). */
function isRegionalIndicatorAt(s: string, i: i32): bool {
  if (i < 0 || i + 1 >= s.length || s.charCodeAt(i) !== 0xd83c) return false;
  const d = s.charCodeAt(i + 1);
  return d >= 0xdde6 && d <= 0xddff;
}
