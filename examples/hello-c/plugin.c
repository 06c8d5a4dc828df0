/*
 * hello-c: a Tyrum plugin written in C, to show that the host API is language-agnostic.
 *
 * Freestanding C (no libc) compiled by clang for wasm32 and linked by lld; the only imports are the
 * Extism kernel (`extism:host/env`) and Tyrum's key-value functions (`tyrum:host/v1`), both declared
 * by sdk/pdk/c/tyrum_pdk.h. Build: `node build.mjs` (see README.md).
 *
 * Tools (the manifest's `contributes.tools[].export`):
 *   greet  {name} -> {greeting}        "Hello, <name>!"
 *   count  {name} -> {name, count}     how many times count was called for <name>, kept in the
 *                                      plugin's key-value storage under "count:<name>" as ASCII digits
 *
 * Arguments arrive as UTF-8 JSON. The gateway has already checked them against the tool's input
 * schema, but a plugin does not rely on its caller: the small parser below accepts exactly
 * {"name": "<1 to 100 characters, no control characters>"} and refuses anything else with a message.
 */
#include "tyrum_pdk.h"

/** Input accepted, in bytes: {"name": ...} with 100 characters needs far less, even fully escaped. */
#define MAX_INPUT 4096
/** The name's limit in Unicode code points, as the input schema's maxLength counts. */
#define MAX_NAME_CHARS 100
/** 100 code points are at most 400 bytes of UTF-8. */
#define MAX_NAME_BYTES (4 * MAX_NAME_CHARS)
#define KEY_PREFIX "count:"
#define KEY_PREFIX_LEN 6
/** A stored count is at most this many decimal digits (below 2^53, so JSON readers keep it exact). */
#define MAX_COUNT_DIGITS 15

static char input[MAX_INPUT + 1];
static char name[MAX_NAME_BYTES + 1];
static tyrum_size name_len;
static char message[512];
static char out[1024];

/* ---- error messages --------------------------------------------------------------------------- */

/** `return fail("invalid input: ", detail)`: report prefix + detail as the call's error. */
static int fail(const char *prefix, const char *detail) {
  tyrum_json m = tyrum_json_init(message, sizeof message - 1);
  tyrum_json_raw(&m, prefix);
  tyrum_json_raw(&m, detail);
  message[m.len] = 0;
  return tyrum_error(message);
}

/* ---- a strict reader for {"name": "..."} ---------------------------------------------------------- */

typedef struct {
  const tyrum_u8 *s;
  tyrum_size len;
  tyrum_size pos;
} reader;

static void skip_ws(reader *r) {
  while (r->pos < r->len) {
    tyrum_u8 c = r->s[r->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    r->pos++;
  }
}

static int peek(reader *r) {
  skip_ws(r);
  return r->pos < r->len ? r->s[r->pos] : -1;
}

static int hex4(reader *r) {
  if (r->pos + 4 > r->len) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    tyrum_u8 c = r->s[r->pos++];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** Append code point `cp` to dst as UTF-8; 0 when it does not fit. */
static int put_utf8(char *dst, tyrum_size cap, tyrum_size *n, tyrum_u32 cp) {
  tyrum_u8 b[4];
  int k;
  if (cp < 0x80) {
    b[0] = (tyrum_u8)cp;
    k = 1;
  } else if (cp < 0x800) {
    b[0] = (tyrum_u8)(0xc0 | (cp >> 6));
    b[1] = (tyrum_u8)(0x80 | (cp & 0x3f));
    k = 2;
  } else if (cp < 0x10000) {
    b[0] = (tyrum_u8)(0xe0 | (cp >> 12));
    b[1] = (tyrum_u8)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (tyrum_u8)(0x80 | (cp & 0x3f));
    k = 3;
  } else {
    b[0] = (tyrum_u8)(0xf0 | (cp >> 18));
    b[1] = (tyrum_u8)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (tyrum_u8)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (tyrum_u8)(0x80 | (cp & 0x3f));
    k = 4;
  }
  if (*n + (tyrum_size)k > cap) return 0;
  for (int i = 0; i < k; i++) dst[(*n)++] = (char)b[i];
  return 1;
}

/** Decode one UTF-8 sequence of the raw string bytes (strictly: no overlongs, no surrogates); -1 when invalid. */
static tyrum_i32 utf8_next(reader *r) {
  tyrum_u8 c = r->s[r->pos++];
  if (c < 0x80) return c;
  int k;
  tyrum_u32 cp, min;
  if (c >= 0xc2 && c <= 0xdf) k = 1, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) k = 2, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) k = 3, cp = c & 0x07, min = 0x10000;
  else return -1;
  if (r->pos + (tyrum_size)k > r->len) return -1;
  for (int i = 0; i < k; i++) {
    tyrum_u8 d = r->s[r->pos++];
    if ((d & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return (tyrum_i32)cp;
}

/**
 * Read the JSON string at the reader into dst (UTF-8, at most `cap` bytes) and count its code points.
 * Returns NULL, or why the string is refused. `*too_long` is set (and reading goes on) when it does
 * not fit.
 */
static const char *read_string(reader *r, char *dst, tyrum_size cap, tyrum_size *n, tyrum_size *chars, int *too_long, int *control) {
  *n = 0;
  *chars = 0;
  *too_long = 0;
  *control = 0;
  r->pos++; /* the opening quote */
  for (;;) {
    if (r->pos >= r->len) return "not valid JSON (unterminated string)";
    tyrum_u8 c = r->s[r->pos];
    tyrum_i32 cp;
    if (c == '"') {
      r->pos++;
      return 0;
    }
    if (c < 0x20) return "not valid JSON (a control character inside a string)";
    if (c == '\\') {
      r->pos++;
      if (r->pos >= r->len) return "not valid JSON (unterminated string)";
      tyrum_u8 e = r->s[r->pos++];
      switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'u': {
          int hi = hex4(r);
          if (hi < 0) return "not valid JSON (a bad \\u escape)";
          cp = hi;
          if (hi >= 0xdc00 && hi <= 0xdfff) return "not valid Unicode (a lone surrogate)";
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (r->pos + 2 > r->len || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u') return "not valid Unicode (a lone surrogate)";
            r->pos += 2;
            int lo = hex4(r);
            if (lo < 0) return "not valid JSON (a bad \\u escape)";
            if (lo < 0xdc00 || lo > 0xdfff) return "not valid Unicode (a lone surrogate)";
            cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
          }
          break;
        }
        default:
          return "not valid JSON (a bad escape)";
      }
    } else {
      cp = utf8_next(r);
      if (cp < 0) return "not valid UTF-8";
    }
    if (cp < 0x20 || cp == 0x7f) *control = 1;
    (*chars)++;
    if (!*too_long && !put_utf8(dst, cap, n, (tyrum_u32)cp)) *too_long = 1;
  }
}

/** The JSON type of the value starting with byte `c` (not a string), for messages. */
static const char *kind_at(int c) {
  switch (c) {
    case '{': return "an object";
    case '[': return "an array";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return "a number";
  }
}

/**
 * Parse the call's input as {"name": "<string>"} into `name`. Returns 0, or the export's error code
 * (the error is set) when the input is refused.
 */
static int read_name_arg(void) {
  tyrum_size len = tyrum_input_read(input, sizeof input);
  if (len > MAX_INPUT) return fail("invalid input: ", "larger than 4096 bytes");
  reader r = {(const tyrum_u8 *)input, len, 0};
  if (peek(&r) != '{') return fail("invalid input: ", "expected a JSON object");
  r.pos++;
  int have_name = 0;
  if (peek(&r) == '}') {
    r.pos++;
  } else {
    for (;;) {
      if (peek(&r) != '"') return fail("invalid input: ", "not valid JSON (expected a key)");
      static char key[64];
      tyrum_size key_len, key_chars;
      int key_long, key_control;
      const char *bad = read_string(&r, key, sizeof key, &key_len, &key_chars, &key_long, &key_control);
      if (bad != 0) return fail("invalid input: ", bad);
      if (peek(&r) != ':') return fail("invalid input: ", "not valid JSON (expected \":\")");
      r.pos++;
      int is_name = !key_long && key_len == 4 && key[0] == 'n' && key[1] == 'a' && key[2] == 'm' && key[3] == 'e';
      if (!is_name) {
        tyrum_json m = tyrum_json_init(message, sizeof message - 1);
        tyrum_json_raw(&m, "invalid input: unknown key ");
        if (key_long) tyrum_json_raw(&m, "(a long one)");
        else tyrum_json_strn(&m, key, key_len);
        tyrum_json_raw(&m, " (allowed: name)");
        message[m.len] = 0;
        return tyrum_error(message);
      }
      int c = peek(&r);
      if (c != '"') return fail("invalid input: \"name\" must be a string, got ", c < 0 ? "nothing" : kind_at(c));
      tyrum_size chars;
      int too_long, control;
      bad = read_string(&r, name, MAX_NAME_BYTES, &name_len, &chars, &too_long, &control);
      if (bad != 0) return fail("invalid input: \"name\" is ", bad);
      if (too_long || chars < 1 || chars > MAX_NAME_CHARS) return fail("invalid input: ", "\"name\" must be 1 to 100 characters");
      if (control) return fail("invalid input: ", "\"name\" must not contain control characters");
      name[name_len] = 0;
      have_name = 1;
      c = peek(&r);
      r.pos++;
      if (c == '}') break;
      if (c != ',') return fail("invalid input: ", "not valid JSON (expected \",\" or \"}\")");
    }
  }
  if (peek(&r) != -1) return fail("invalid input: ", "not valid JSON (unexpected data after the object)");
  if (!have_name) return fail("invalid input: ", "\"name\" is required");
  return 0;
}

/* ---- tools ----------------------------------------------------------------------------------------- */

/** {name} -> {greeting: "Hello, <name>!"} */
TYRUM_EXPORT(greet) int greet(void) {
  int err = read_name_arg();
  if (err != 0) return err;
  static char greeting[8 + MAX_NAME_BYTES];
  tyrum_json g = tyrum_json_init(greeting, sizeof greeting);
  tyrum_json_raw(&g, "Hello, ");
  for (tyrum_size i = 0; i < name_len; i++) tyrum_json_byte(&g, name[i]);
  tyrum_json_byte(&g, '!');
  tyrum_json j = tyrum_json_init(out, sizeof out);
  tyrum_json_raw(&j, "{\"greeting\":");
  tyrum_json_strn(&j, greeting, g.len);
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}

/** {name} -> {name, count}: one more call for <name>, counted in the plugin's key-value storage. */
TYRUM_EXPORT(count) int count(void) {
  int err = read_name_arg();
  if (err != 0) return err;

  /* "count:" + name, NUL-terminated (read_name_arg refused control characters, NUL included). */
  static char key[KEY_PREFIX_LEN + MAX_NAME_BYTES + 1];
  for (int i = 0; i < KEY_PREFIX_LEN; i++) key[i] = KEY_PREFIX[i];
  for (tyrum_size i = 0; i < name_len; i++) key[KEY_PREFIX_LEN + i] = name[i];
  key[KEY_PREFIX_LEN + name_len] = 0;

  char digits[MAX_COUNT_DIGITS + 1];
  int len = tyrum_kv_get(key, digits, sizeof digits);
  tyrum_i64 n = 0;
  if (len >= 0) {
    if (len < 1 || len > MAX_COUNT_DIGITS) return fail("storage: ", "the count stored for this name is not a number");
    for (int i = 0; i < len; i++) {
      if (digits[i] < '0' || digits[i] > '9') return fail("storage: ", "the count stored for this name is not a number");
      n = n * 10 + (digits[i] - '0');
    }
  }
  if (n >= 999999999999999) return fail("storage: ", "the count for this name cannot grow further");
  n++;

  tyrum_json d = tyrum_json_init(digits, sizeof digits);
  tyrum_json_i64(&d, n);
  if (tyrum_kv_set(key, digits, d.len) != 0) return fail("storage quota exceeded: ", "the count was not saved");

  tyrum_json j = tyrum_json_init(out, sizeof out);
  tyrum_json_raw(&j, "{\"name\":");
  tyrum_json_strn(&j, name, name_len);
  tyrum_json_raw(&j, ",\"count\":");
  tyrum_json_i64(&j, n);
  tyrum_json_byte(&j, '}');
  return tyrum_json_output(&j);
}
