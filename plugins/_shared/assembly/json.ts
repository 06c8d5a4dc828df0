// JSON for Tyrum's first-party AssemblyScript plugins: a strict RFC 8259 parser over UTF-8 bytes and
// a writer that produces UTF-8 bytes directly.
//
// AssemblyScript has no exceptions, so the parser records the first error in `error` and unwinds by
// returning null. It can build a small DOM (tool arguments) or only validate (an HTTP response body,
// which is then passed through byte for byte: no number is rounded, no key reordered, and a large body
// costs no DOM in the plugin's small linear memory).

export enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

export class JsonValue {
  constructor(public kind: JsonKind) {}
}

export class JsonBool extends JsonValue {
  constructor(public value: bool) {
    super(JsonKind.Bool);
  }
}

export class JsonNumber extends JsonValue {
  /** The number as written (kept as text: no rounding, and no float parser linked in unless used). */
  constructor(public text: string) {
    super(JsonKind.Number);
  }
  toF64(): f64 {
    return F64.parseFloat(this.text);
  }
}

export class JsonString extends JsonValue {
  constructor(public value: string) {
    super(JsonKind.String);
  }
}

export class JsonArray extends JsonValue {
  items: JsonValue[] = [];
  constructor() {
    super(JsonKind.Array);
  }
}

export class JsonObject extends JsonValue {
  /** Keys in document order. */
  keys: string[] = [];
  private map: Map<string, JsonValue> = new Map<string, JsonValue>();
  constructor() {
    super(JsonKind.Object);
  }
  has(key: string): bool {
    return this.map.has(key);
  }
  /** The value under `key`, or null when absent. */
  get(key: string): JsonValue | null {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  set(key: string, value: JsonValue): void {
    if (!this.map.has(key)) this.keys.push(key);
    this.map.set(key, value);
  }
}

const NULL_VALUE = new JsonValue(JsonKind.Null);

/** A JSON type name for messages ("a string", "an object", ...). */
export function kindName(kind: JsonKind): string {
  switch (kind) {
    case JsonKind.Null:
      return "null";
    case JsonKind.Bool:
      return "a boolean";
    case JsonKind.Number:
      return "a number";
    case JsonKind.String:
      return "a string";
    case JsonKind.Array:
      return "an array";
    default:
      return "an object";
  }
}

/** A strict JSON parser over UTF-8 bytes (RFC 8259: no comments, no trailing commas, valid UTF-8). */
export class JsonParser {
  /** The first error, with its byte offset; null while parsing succeeds. */
  error: string | null = null;
  private pos: i32 = 0;

  /**
   * @param buf      the document
   * @param maxDepth deepest nesting of arrays and objects accepted
   * @param build    false: validate only (every value parses to a shared null placeholder)
   */
  constructor(
    private buf: Uint8Array,
    private maxDepth: i32,
    private build: bool,
  ) {}

  /** Parse one complete document; null on error (see `error`). */
  parse(): JsonValue | null {
    this.skipWs();
    const v = this.value(0);
    if (this.error !== null) return null;
    this.skipWs();
    if (this.pos < this.buf.length) {
      this.fail("unexpected data after the JSON value");
      return null;
    }
    return v;
  }

  private fail(message: string): void {
    if (this.error === null) this.error = message + " at byte " + this.pos.toString();
  }

  @inline private peek(): i32 {
    return this.pos < this.buf.length ? <i32>unchecked(this.buf[this.pos]) : -1;
  }

  private skipWs(): void {
    const b = this.buf;
    const n = b.length;
    while (this.pos < n) {
      const c = unchecked(b[this.pos]);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  private value(depth: i32): JsonValue | null {
    const c = this.peek();
    if (c === 0x7b) return this.object(depth + 1); // {
    if (c === 0x5b) return this.array(depth + 1); // [
    if (c === 0x22) {
      // "
      const s = this.string();
      if (s === null) return null;
      return this.build ? new JsonString(s) : NULL_VALUE;
    }
    if (c === 0x74) return this.literal("true") ? (this.build ? new JsonBool(true) : NULL_VALUE) : null;
    if (c === 0x66) return this.literal("false") ? (this.build ? new JsonBool(false) : NULL_VALUE) : null;
    if (c === 0x6e) return this.literal("null") ? NULL_VALUE : null;
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    this.fail(c < 0 ? "unexpected end of JSON" : "unexpected character");
    return null;
  }

  /** Consume the literal `word`; false (with an error) when something else is there. */
  private literal(word: string): bool {
    const n = word.length;
    if (this.pos + n > this.buf.length) {
      this.fail("unexpected end of JSON");
      return false;
    }
    for (let i = 0; i < n; i++) {
      if (<i32>unchecked(this.buf[this.pos + i]) !== word.charCodeAt(i)) {
        this.fail("invalid literal");
        return false;
      }
    }
    this.pos += n;
    return true;
  }

  private digits(): i32 {
    const start = this.pos;
    while (true) {
      const c = this.peek();
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
    }
    return this.pos - start;
  }

  private number(): JsonValue | null {
    const start = this.pos;
    if (this.peek() === 0x2d) this.pos++;
    const first = this.peek();
    if (first === 0x30) {
      this.pos++;
    } else if (this.digits() === 0) {
      this.fail("invalid number");
      return null;
    }
    if (this.peek() === 0x2e) {
      this.pos++;
      if (this.digits() === 0) {
        this.fail("invalid number");
        return null;
      }
    }
    const e = this.peek();
    if (e === 0x65 || e === 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign === 0x2b || sign === 0x2d) this.pos++;
      if (this.digits() === 0) {
        this.fail("invalid number");
        return null;
      }
    }
    if (!this.build) return NULL_VALUE;
    return new JsonNumber(String.UTF8.decodeUnsafe(this.buf.dataStart + <usize>start, <usize>(this.pos - start)));
  }

  /**
   * A string token (at its opening quote); "" in validate-only mode. A first pass validates it and
   * counts its UTF-16 units, a second decodes it into a string allocated at its exact size (a text of
   * N bytes costs 2N-ish bytes once, not a growing buffer plus a copy).
   */
  private string(): string | null {
    this.pos++; // opening quote
    const start = this.pos;
    const units = this.scanString(0);
    if (units < 0) return null;
    if (!this.build) return "";
    if (units === 0) return "";
    const str = changetype<string>(__new(<usize>units << 1, idof<string>()));
    const end = this.pos;
    this.pos = start;
    this.scanString(changetype<usize>(str));
    this.pos = end;
    return str;
  }

  /**
   * Scan a string's contents through its closing quote, storing its UTF-16 units at `dst` unless it
   * is 0. Returns the number of units, or -1 (with `error` set) when the string is invalid.
   */
  private scanString(dst: usize): i32 {
    const b = this.buf;
    const n = b.length;
    let units = 0;
    while (true) {
      if (this.pos >= n) {
        this.fail("unterminated string");
        return -1;
      }
      const c = <i32>unchecked(b[this.pos]);
      if (c === 0x22) {
        this.pos++;
        return units;
      }
      let cp: i32;
      if (c === 0x5c) {
        cp = this.escape();
      } else if (c < 0x20) {
        this.fail("control character in string");
        return -1;
      } else if (c < 0x80) {
        cp = c;
        this.pos++;
      } else {
        cp = this.utf8(c);
      }
      if (cp < 0) return -1;
      if (cp < 0x10000) {
        if (dst !== 0) store<u16>(dst + (<usize>units << 1), <u16>cp);
        units += 1;
      } else {
        if (dst !== 0) {
          const v = cp - 0x10000;
          store<u16>(dst + (<usize>units << 1), <u16>(0xd800 | (v >> 10)));
          store<u16>(dst + (<usize>(units + 1) << 1), <u16>(0xdc00 | (v & 0x3ff)));
        }
        units += 2;
      }
    }
  }

  /** Decode one multi-byte UTF-8 sequence starting with `c`; -1 (and an error) when invalid. */
  private utf8(c: i32): i32 {
    const b = this.buf;
    let need: i32;
    let cp: i32;
    let min: i32;
    if ((c & 0xe0) === 0xc0) {
      need = 1;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) === 0xe0) {
      need = 2;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) === 0xf0) {
      need = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      this.fail("invalid UTF-8");
      return -1;
    }
    if (this.pos + need >= b.length) {
      this.fail("invalid UTF-8");
      return -1;
    }
    for (let i = 1; i <= need; i++) {
      const d = <i32>unchecked(b[this.pos + i]);
      if ((d & 0xc0) !== 0x80) {
        this.fail("invalid UTF-8");
        return -1;
      }
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      this.fail("invalid UTF-8");
      return -1;
    }
    this.pos += need + 1;
    return cp;
  }

  /** Decode the escape at `pos`; the UTF-16 unit it stands for (a \u escape may be a lone surrogate), or -1. */
  private escape(): i32 {
    const b = this.buf;
    if (this.pos + 1 >= b.length) {
      this.fail("unterminated string");
      return -1;
    }
    const e = <i32>unchecked(b[this.pos + 1]);
    let unit: i32 = -1;
    switch (e) {
      case 0x22:
        unit = 0x22;
        break;
      case 0x5c:
        unit = 0x5c;
        break;
      case 0x2f:
        unit = 0x2f;
        break;
      case 0x62:
        unit = 0x08;
        break;
      case 0x66:
        unit = 0x0c;
        break;
      case 0x6e:
        unit = 0x0a;
        break;
      case 0x72:
        unit = 0x0d;
        break;
      case 0x74:
        unit = 0x09;
        break;
      case 0x75: {
        if (this.pos + 6 > b.length) {
          this.fail("invalid \\u escape");
          return -1;
        }
        let v = 0;
        for (let i = 2; i < 6; i++) {
          const h = hexValue(<i32>unchecked(b[this.pos + i]));
          if (h < 0) {
            this.fail("invalid \\u escape");
            return -1;
          }
          v = (v << 4) | h;
        }
        // A surrogate escape stays one UTF-16 unit: a pair of escapes makes a pair, a lone one (valid
        // JSON) is kept as it is.
        this.pos += 6;
        return v;
      }
      default:
        this.fail("invalid escape");
        return -1;
    }
    this.pos += 2;
    return unit;
  }

  private array(depth: i32): JsonValue | null {
    if (depth > this.maxDepth) {
      this.fail("nesting deeper than " + this.maxDepth.toString());
      return null;
    }
    this.pos++; // [
    const arr = this.build ? new JsonArray() : null;
    this.skipWs();
    if (this.peek() === 0x5d) {
      this.pos++;
      return arr !== null ? arr : NULL_VALUE;
    }
    while (true) {
      this.skipWs();
      const v = this.value(depth);
      if (v === null) return null;
      if (arr !== null) arr.items.push(v);
      this.skipWs();
      const c = this.peek();
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return arr !== null ? arr : NULL_VALUE;
      }
      this.fail("expected ',' or ']'");
      return null;
    }
  }

  private object(depth: i32): JsonValue | null {
    if (depth > this.maxDepth) {
      this.fail("nesting deeper than " + this.maxDepth.toString());
      return null;
    }
    this.pos++; // {
    const obj = this.build ? new JsonObject() : null;
    this.skipWs();
    if (this.peek() === 0x7d) {
      this.pos++;
      return obj !== null ? obj : NULL_VALUE;
    }
    while (true) {
      this.skipWs();
      if (this.peek() !== 0x22) {
        this.fail("expected a string key");
        return null;
      }
      const keyAt = this.pos;
      const key = this.string();
      if (key === null) return null;
      this.skipWs();
      if (this.peek() !== 0x3a) {
        this.fail("expected ':'");
        return null;
      }
      this.pos++;
      this.skipWs();
      const v = this.value(depth);
      if (v === null) return null;
      if (obj !== null) {
        // Duplicate keys would let this parser and the gateway's (last one wins) disagree.
        if (obj.has(key)) {
          this.pos = keyAt;
          this.fail("duplicate key " + quoteForMessage(key));
          return null;
        }
        obj.set(key, v);
      }
      this.skipWs();
      const c = this.peek();
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return obj !== null ? obj : NULL_VALUE;
      }
      this.fail("expected ',' or '}'");
      return null;
    }
  }
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** `s` as a JSON string for an error message, cut to 64 characters. */
export function quoteForMessage(s: string): string {
  const w = new JsonWriter(80);
  w.string(s.length > 64 ? s.substring(0, 64) + "…" : s);
  return String.UTF8.decodeUnsafe(w.buf.dataStart, <usize>w.len);
}

const HEX = "0123456789abcdef";

/** Bytes that `JsonWriter.units` writes for `len` UTF-16 units at `ptr` (exact: the buffer grows once). */
function escapedLength(ptr: usize, len: i32): i32 {
  let bytes = 0;
  for (let i = 0; i < len; i++) {
    const c = <i32>load<u16>(ptr + (<usize>i << 1));
    if (c < 0x80) {
      if (c === 0x22 || c === 0x5c || c === 0x0a || c === 0x0d || c === 0x09) bytes += 2;
      else bytes += c >= 0x20 ? 1 : 6;
    } else if (c < 0x800) {
      bytes += 2;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < len ? <i32>load<u16>(ptr + (<usize>(i + 1) << 1)) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else {
        bytes += 6;
      }
    } else {
      bytes += 3;
    }
  }
  return bytes;
}

/** Bytes `JsonWriter.string(s)` writes for `s`, without the quotes: size a writer before writing. */
export function escapedStringLength(s: string): i32 {
  return escapedLength(changetype<usize>(s), s.length);
}

/** Builds a JSON document as UTF-8 bytes. */
export class JsonWriter {
  buf: Uint8Array;
  len: i32 = 0;
  constructor(capacity: i32 = 256) {
    this.buf = new Uint8Array(max(capacity, 16));
  }

  private ensure(extra: i32): void {
    if (this.len + extra <= this.buf.length) return;
    const cap = max(this.buf.length << 1, this.len + extra);
    const next = new Uint8Array(cap);
    memory.copy(next.dataStart, this.buf.dataStart, <usize>this.len);
    this.buf = next;
  }

  @inline private put(b: i32): void {
    unchecked((this.buf[this.len++] = <u8>b));
  }

  /** Append ASCII text as it is (JSON punctuation, keys known to need no escaping). */
  raw(ascii: string): JsonWriter {
    const n = ascii.length;
    this.ensure(n);
    for (let i = 0; i < n; i++) this.put(ascii.charCodeAt(i));
    return this;
  }

  /** Append bytes [start, end) of `src` as they are (already valid JSON). */
  bytes(src: Uint8Array, start: i32, end: i32): JsonWriter {
    const n = end - start;
    if (n <= 0) return this;
    this.ensure(n);
    memory.copy(this.buf.dataStart + <usize>this.len, src.dataStart + <usize>start, <usize>n);
    this.len += n;
    return this;
  }

  int(v: i64): JsonWriter {
    return this.raw(v.toString());
  }

  /** Append one byte (ASCII that needs no escaping inside or outside a string). */
  byte(b: i32): JsonWriter {
    this.ensure(1);
    this.put(b);
    return this;
  }

  /** Append a double quote: opens or closes a string written in pieces with `units`. */
  quote(): JsonWriter {
    return this.byte(0x22);
  }

  /** Append `s` as a JSON string: quoted, escaped, UTF-8. */
  string(s: string): JsonWriter {
    return this.quote().units(changetype<usize>(s), s.length).quote();
  }

  /**
   * Append `len` UTF-16 units at `ptr` as the escaped UTF-8 contents of a JSON string (no quotes).
   * A lone surrogate becomes a \u escape, so the output is always valid UTF-8; callers writing a
   * string in pieces must not split a surrogate pair between two pieces.
   */
  units(ptr: usize, len: i32): JsonWriter {
    this.ensure(escapedLength(ptr, len));
    for (let i = 0; i < len; i++) {
      const c = <i32>load<u16>(ptr + (<usize>i << 1));
      if (c < 0x80) {
        if (c === 0x22 || c === 0x5c) {
          this.put(0x5c);
          this.put(c);
        } else if (c >= 0x20) {
          this.put(c);
        } else if (c === 0x0a) {
          this.put(0x5c);
          this.put(0x6e);
        } else if (c === 0x0d) {
          this.put(0x5c);
          this.put(0x72);
        } else if (c === 0x09) {
          this.put(0x5c);
          this.put(0x74);
        } else {
          this.hexEscape(c);
        }
      } else if (c < 0x800) {
        this.put(0xc0 | (c >> 6));
        this.put(0x80 | (c & 0x3f));
      } else if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < len ? <i32>load<u16>(ptr + (<usize>(i + 1) << 1)) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          this.put(0xf0 | (cp >> 18));
          this.put(0x80 | ((cp >> 12) & 0x3f));
          this.put(0x80 | ((cp >> 6) & 0x3f));
          this.put(0x80 | (cp & 0x3f));
          i++;
        } else {
          this.hexEscape(c);
        }
      } else {
        this.put(0xe0 | (c >> 12));
        this.put(0x80 | ((c >> 6) & 0x3f));
        this.put(0x80 | (c & 0x3f));
      }
    }
    return this;
  }

  private hexEscape(c: i32): void {
    this.put(0x5c);
    this.put(0x75);
    this.put(HEX.charCodeAt((c >> 12) & 0xf));
    this.put(HEX.charCodeAt((c >> 8) & 0xf));
    this.put(HEX.charCodeAt((c >> 4) & 0xf));
    this.put(HEX.charCodeAt(c & 0xf));
  }
}
