// notes: a small note store for Tyrum (AssemblyScript, Extism ABI, Tyrum host API v1 key-value).
//
// Every export reads JSON arguments from the call input, writes a JSON result as UTF-8 bytes and
// returns 0; on bad input, a full quota or unreadable storage it reports a message through Extism's
// error_set and returns 1 (the gateway's coded `plugin_error`). All state is in the gateway's kv
// store, never in the instance (which may be discarded after any call):
//
//   "seq"        the last sequence number handed out, ASCII decimal (ids are "n" + seq, never reused)
//   "note:<id>"  {"title": ..., "created_seq": N}
//   "body:<id>"  the body, as a JSON string (apart, so that list_notes reads titles, not bodies)
//   "index"      JSON array of the ids of the kept notes, oldest first
import { argsError, argsObject, fail, outputJson, stringArg } from "../../_shared/assembly/io";
import { escapedStringLength, JsonArray, JsonKind, JsonNumber, JsonObject, JsonParser, JsonString, JsonValue, JsonWriter, kindName } from "../../_shared/assembly/json";
import { kvDelete, kvGet, kvSet } from "./kv";

/** Limits, in Unicode code points (the input schemas' minLength/maxLength count the same way). */
const MIN_TITLE_CHARS: i32 = 1;
const MAX_TITLE_CHARS: i32 = 200;
const MAX_BODY_CHARS: i32 = 10000;
/** Notes kept at most: bounds the index (about 9 bytes an id) far below the 256 KiB kv value limit. */
const MAX_NOTES: i32 = 10000;
const MAX_LIST: i32 = 100;
/**
 * Index entries list_notes looks at beyond `limit`: ids whose note is gone (an interrupted delete)
 * are skipped, and this bounds the reads (and host calls) they can cost.
 */
const MAX_SKIPPED: i32 = 100;
/** Ids are "n" + 1 to 15 digits (the schemas' pattern ^n[1-9][0-9]{0,14}$). */
const MAX_SEQ: i64 = 999999999999999;

const SEQ_KEY = "seq";
const INDEX_KEY = "index";
const NOTE_PREFIX = "note:";
const BODY_PREFIX = "body:";

const QUOTA_MESSAGE = "storage quota exceeded: the note was not saved; delete notes to free space";

/** Why the last storage read returned null for corrupt data ("" when the data was just absent). */
let storageError: string = "";

// --- add_note -----------------------------------------------------------------------------------

/** {title, body} -> {id, title, created_seq} */
export function add_note(): i32 {
  __collect();
  const args = argsObject(["title", "body"]);
  if (args === null) return fail(argsError);
  const title = stringArg(args, "title");
  if (title === null) return fail(argsError);
  const body = stringArg(args, "body");
  if (body === null) return fail(argsError);
  const titleProblem = lengthProblem("title", title, MIN_TITLE_CHARS, MAX_TITLE_CHARS);
  if (titleProblem.length > 0) return fail(titleProblem);
  const bodyProblem = lengthProblem("body", body, 0, MAX_BODY_CHARS);
  if (bodyProblem.length > 0) return fail(bodyProblem);

  const ids = readIndex();
  if (ids === null) return fail(storageError);
  if (ids.length >= MAX_NOTES) return fail("too many notes: at most " + MAX_NOTES.toString() + " are kept; delete some first");
  const prev = readSeq();
  if (prev < 0) return fail(storageError);
  if (prev >= MAX_SEQ) return fail("storage: note ids are exhausted");
  const seq = prev + 1;
  const id = "n" + seq.toString();

  const note = new JsonWriter(escapedStringLength(title) + 48);
  note.raw('{"title":').string(title).raw(',"created_seq":').int(seq).raw("}");
  const text = new JsonWriter(escapedStringLength(body) + 2);
  text.string(body);

  // Reserve the id, store the body and the note, then list it. A refusal (quota) undoes the earlier
  // steps, so a refused add changes nothing; an interrupted one (a host failure aborts the call)
  // leaves at worst an unused id or an unlisted note.
  if (!writeSeq(seq)) return fail(QUOTA_MESSAGE);
  if (!kvSet(bodyKey(id), text.buf, text.len)) {
    restoreSeq(prev);
    return fail(QUOTA_MESSAGE);
  }
  if (!kvSet(noteKey(id), note.buf, note.len)) {
    kvDelete(bodyKey(id));
    restoreSeq(prev);
    return fail(QUOTA_MESSAGE);
  }
  ids.push(id);
  if (!writeIndex(ids)) {
    kvDelete(noteKey(id));
    kvDelete(bodyKey(id));
    restoreSeq(prev);
    return fail(QUOTA_MESSAGE);
  }

  const w = new JsonWriter(escapedStringLength(title) + 64);
  w.raw('{"id":').string(id).raw(',"title":').string(title).raw(',"created_seq":').int(seq).raw("}");
  return outputJson(w);
}

// --- list_notes ---------------------------------------------------------------------------------

/** {limit?} -> {notes: [{id, title}]}, newest first */
export function list_notes(): i32 {
  __collect();
  const args = argsObject(["limit"]);
  if (args === null) return fail(argsError);
  let limit = MAX_LIST;
  const lv: JsonValue | null = args.get("limit");
  if (lv !== null) {
    if (lv.kind !== JsonKind.Number) return fail('invalid input: "limit" must be an integer, got ' + kindName(lv.kind));
    const v = changetype<JsonNumber>(lv).toF64();
    if (!(v >= 1 && v <= <f64>MAX_LIST && Math.floor(v) == v)) {
      return fail('invalid input: "limit" must be an integer from 1 to ' + MAX_LIST.toString());
    }
    limit = <i32>v;
  }

  const ids = readIndex();
  if (ids === null) return fail(storageError);
  const w = new JsonWriter(1024);
  w.raw('{"notes":[');
  let count = 0;
  let skipped = 0;
  for (let i = ids.length - 1; i >= 0 && count < limit && skipped < MAX_SKIPPED; i--) {
    const id = ids[i];
    const note = readNote(id);
    if (note === null) {
      if (storageError.length > 0) return fail(storageError);
      skipped++; // listed but gone (an interrupted delete; the next delete_note of it finishes)
      continue;
    }
    if (count > 0) w.byte(0x2c);
    w.raw('{"id":').string(id).raw(',"title":').string(note.title).raw("}");
    count++;
  }
  w.raw("]}");
  return outputJson(w);
}

// --- get_note -----------------------------------------------------------------------------------

/** {id} -> {id, title, body} */
export function get_note(): i32 {
  __collect();
  const id = idArg();
  if (id === null) return fail(argsError);
  const note = readNote(id);
  if (note === null) return fail(storageError.length > 0 ? storageError : "no note " + id);
  const body = readBody(id);
  if (body === null) return fail(storageError);
  const w = new JsonWriter(escapedStringLength(note.title) + escapedStringLength(body) + 64);
  w.raw('{"id":').string(id).raw(',"title":').string(note.title).raw(',"body":').string(body).raw("}");
  return outputJson(w);
}

// --- delete_note --------------------------------------------------------------------------------

/** {id} -> {deleted} */
export function delete_note(): i32 {
  __collect();
  const id = idArg();
  if (id === null) return fail(argsError);
  const ids = readIndex();
  if (ids === null) return fail(storageError);
  const at = ids.indexOf(id);
  const stored = kvGet(noteKey(id)) !== null;
  // The note first, then its body, then the index: an interrupted delete leaves a listed id with
  // no note, which list_notes skips and a second delete_note finishes.
  if (stored && !kvDelete(noteKey(id))) return fail("storage: the note could not be deleted");
  if (!kvDelete(bodyKey(id))) return fail("storage: the note could not be deleted");
  if (at >= 0) {
    ids.splice(at, 1);
    if (!writeIndex(ids)) return fail("storage: the note index could not be updated");
  }
  const w = new JsonWriter(32);
  w.raw('{"deleted":').raw(stored || at >= 0 ? "true" : "false").raw("}");
  return outputJson(w);
}

// --- arguments ----------------------------------------------------------------------------------

/** The required "id" argument of get_note and delete_note (the only key allowed). */
function idArg(): string | null {
  const args = argsObject(["id"]);
  if (args === null) return null;
  const id = stringArg(args, "id");
  if (id === null) return null;
  if (!isNoteId(id)) {
    argsError = 'invalid input: "id" must be a note id like "n1" ("n" and a number)';
    return null;
  }
  return id;
}

/** "n" + 1 to 15 digits without a leading zero. */
function isNoteId(s: string): bool {
  const n = s.length;
  if (n < 2 || n > 16 || s.charCodeAt(0) !== 0x6e) return false;
  const first = s.charCodeAt(1);
  if (first < 0x31 || first > 0x39) return false;
  for (let i = 2; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** "" when `s` has `min` to `max` code points, else the error message. */
function lengthProblem(key: string, s: string, min: i32, max: i32): string {
  const chars = codePointCount(s);
  if (chars > max) return 'invalid input: "' + key + '" has ' + chars.toString() + " characters, more than the " + max.toString() + " allowed";
  if (chars < min) return 'invalid input: "' + key + '" must not be empty';
  return "";
}

/** Code points, as JSON Schema's maxLength counts them (a lone surrogate counts as one). */
function codePointCount(s: string): i32 {
  const n = s.length;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}

// --- storage ------------------------------------------------------------------------------------

function noteKey(id: string): string {
  return NOTE_PREFIX + id;
}

function bodyKey(id: string): string {
  return BODY_PREFIX + id;
}

/** The last sequence number handed out (0 before the first note); -1 (see storageError) if corrupt. */
function readSeq(): i64 {
  storageError = "";
  const b = kvGet(SEQ_KEY);
  if (b === null) return 0;
  if (b.length === 0 || b.length > 15) {
    storageError = "storage: the note counter is corrupt";
    return -1;
  }
  let v: i64 = 0;
  for (let i = 0; i < b.length; i++) {
    const c = <i32>b[i];
    if (c < 0x30 || c > 0x39) {
      storageError = "storage: the note counter is corrupt";
      return -1;
    }
    v = v * 10 + <i64>(c - 0x30);
  }
  return v;
}

function writeSeq(seq: i64): bool {
  const digits = String.UTF8.encode(seq.toString());
  return kvSet(SEQ_KEY, Uint8Array.wrap(digits), digits.byteLength);
}

/** Put the counter back after a refused add (the old value is no larger: the quota allows it). */
function restoreSeq(prev: i64): void {
  if (prev === 0) kvDelete(SEQ_KEY);
  else writeSeq(prev);
}

/** The ids of the kept notes, oldest first; null (see storageError) when the index is corrupt. */
function readIndex(): string[] | null {
  storageError = "";
  const ids: string[] = [];
  const b = kvGet(INDEX_KEY);
  if (b === null) return ids;
  const v = new JsonParser(b, 1, true).parse();
  if (v === null || v.kind !== JsonKind.Array) {
    storageError = "storage: the note index is corrupt";
    return null;
  }
  const items = changetype<JsonArray>(v).items;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item.kind !== JsonKind.String || !isNoteId(changetype<JsonString>(item).value)) {
      storageError = "storage: the note index is corrupt";
      return null;
    }
    ids.push(changetype<JsonString>(item).value);
  }
  return ids;
}

function writeIndex(ids: string[]): bool {
  const w = new JsonWriter(ids.length * 20 + 2);
  w.byte(0x5b);
  for (let i = 0; i < ids.length; i++) {
    if (i > 0) w.byte(0x2c);
    w.string(ids[i]);
  }
  w.byte(0x5d);
  return kvSet(INDEX_KEY, w.buf, w.len);
}

class Note {
  constructor(public title: string) {}
}

/** The note stored under `id`; null when there is none, or (storageError set) when it is corrupt. */
function readNote(id: string): Note | null {
  storageError = "";
  const b = kvGet(noteKey(id));
  if (b === null) return null;
  const v = new JsonParser(b, 1, true).parse();
  if (v !== null && v.kind === JsonKind.Object) {
    const o = changetype<JsonObject>(v);
    const title = o.get("title");
    if (title !== null && title.kind === JsonKind.String) return new Note(changetype<JsonString>(title).value);
  }
  storageError = "storage: note " + id + " is corrupt";
  return null;
}

/** The body of note `id`; null (storageError set) when it is missing or corrupt. */
function readBody(id: string): string | null {
  const b = kvGet(bodyKey(id));
  if (b !== null) {
    const v = new JsonParser(b, 0, true).parse();
    if (v !== null && v.kind === JsonKind.String) return changetype<JsonString>(v).value;
  }
  storageError = "storage: note " + id + " is corrupt";
  return null;
}
