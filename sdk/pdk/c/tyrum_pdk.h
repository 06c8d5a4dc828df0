/*
 * tyrum_pdk.h: a single-header C binding for Tyrum plugins (host API v1, docs/host-api.md).
 *
 * Freestanding: no libc, no other header. Build a plugin with
 *
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -mbulk-memory -o plugin.wasm plugin.c
 *
 * (-mbulk-memory lets the compiler turn copy loops into memory.copy instead of calls to a memcpy
 * that -nostdlib does not provide). Export each tool's function with TYRUM_EXPORT:
 *
 *   #include "tyrum_pdk.h"
 *   TYRUM_EXPORT(hello) int hello(void) {
 *     tyrum_output_str("{\"greeting\":\"hello\"}");
 *     return 0;
 *   }
 *
 * A tool reads its arguments (UTF-8 JSON) with tyrum_input_read, writes its result (UTF-8 JSON) with
 * tyrum_output, and returns 0; on failure it returns tyrum_error("message") (non-zero). Every
 * function here is `static inline`: include the header in as many files as you like.
 *
 * Imports: the Extism kernel (`extism:host/env`) and Tyrum's own functions (`tyrum:host/v1`: log,
 * kv_get, kv_set). Only the functions a plugin calls become imports of its module.
 */
#ifndef TYRUM_PDK_H
#define TYRUM_PDK_H

#ifdef __cplusplus
extern "C" {
#endif

typedef __UINT8_TYPE__ tyrum_u8;
typedef __INT32_TYPE__ tyrum_i32;
typedef __UINT32_TYPE__ tyrum_u32;
typedef __INT64_TYPE__ tyrum_i64;
typedef __UINT64_TYPE__ tyrum_u64;
typedef __SIZE_TYPE__ tyrum_size;

#define TYRUM_EXTISM_IMPORT(name) __attribute__((import_module("extism:host/env"), import_name(#name)))
#define TYRUM_HOST_IMPORT(name) __attribute__((import_module("tyrum:host/v1"), import_name(#name)))
/** Export a tool function under `name` (the manifest's `export`): `TYRUM_EXPORT(search) int search(void)`. */
#define TYRUM_EXPORT(name) __attribute__((export_name(#name)))

/*
 * `{{secret:NAME}}`, the header-value template the gateway replaces with secret NAME's value (only
 * toward the hosts the secret is bound to). A string literal: "Bearer " TYRUM_SECRET("API_TOKEN").
 */
#define TYRUM_SECRET(NAME) "{{secret:" NAME "}}"

/* ---- the Extism kernel (extism:host/env) -------------------------------------------------------- */

TYRUM_EXTISM_IMPORT(alloc) tyrum_u64 extism_alloc(tyrum_u64 length);
TYRUM_EXTISM_IMPORT(free) void extism_free(tyrum_u64 block);
TYRUM_EXTISM_IMPORT(length) tyrum_u64 extism_length(tyrum_u64 block);
TYRUM_EXTISM_IMPORT(load_u8) tyrum_u8 extism_load_u8(tyrum_u64 offset);
TYRUM_EXTISM_IMPORT(load_u64) tyrum_u64 extism_load_u64(tyrum_u64 offset);
TYRUM_EXTISM_IMPORT(store_u8) void extism_store_u8(tyrum_u64 offset, tyrum_u8 value);
TYRUM_EXTISM_IMPORT(store_u64) void extism_store_u64(tyrum_u64 offset, tyrum_u64 value);
TYRUM_EXTISM_IMPORT(input_length) tyrum_u64 extism_input_length(void);
TYRUM_EXTISM_IMPORT(input_load_u8) tyrum_u8 extism_input_load_u8(tyrum_u64 offset);
TYRUM_EXTISM_IMPORT(input_load_u64) tyrum_u64 extism_input_load_u64(tyrum_u64 offset);
TYRUM_EXTISM_IMPORT(output_set) void extism_output_set(tyrum_u64 block, tyrum_u64 length);
TYRUM_EXTISM_IMPORT(error_set) void extism_error_set(tyrum_u64 block);
TYRUM_EXTISM_IMPORT(config_get) tyrum_u64 extism_config_get(tyrum_u64 key);
TYRUM_EXTISM_IMPORT(http_request) tyrum_u64 extism_http_request(tyrum_u64 request, tyrum_u64 body);
TYRUM_EXTISM_IMPORT(http_status_code) tyrum_i32 extism_http_status_code(void);
TYRUM_EXTISM_IMPORT(http_headers) tyrum_u64 extism_http_headers(void);

/* ---- Tyrum host API v1 (tyrum:host/v1) ------------------------------------------------------------ */

TYRUM_HOST_IMPORT(log) void tyrum_host_log(tyrum_i32 level, tyrum_u64 message);
TYRUM_HOST_IMPORT(kv_get) tyrum_u64 tyrum_host_kv_get(tyrum_u64 key);
TYRUM_HOST_IMPORT(kv_set) tyrum_i32 tyrum_host_kv_set(tyrum_u64 key, tyrum_u64 value);

/* ---- memory ---------------------------------------------------------------------------------------- */

/** Length of a NUL-terminated string. */
static inline tyrum_size tyrum_strlen(const char *s) {
  tyrum_size n = 0;
  while (s[n] != 0) n++;
  return n;
}

/** A new kernel block holding `len` bytes at `src` (free it with extism_free unless the host keeps it). */
static inline tyrum_u64 tyrum_block_from(const void *src, tyrum_size len) {
  const tyrum_u8 *p = (const tyrum_u8 *)src;
  tyrum_u64 block = extism_alloc((tyrum_u64)len);
  tyrum_size i = 0;
  for (; i + 8 <= len; i += 8) {
    tyrum_u64 v;
    __builtin_memcpy(&v, p + i, 8);
    extism_store_u64(block + i, v);
  }
  for (; i < len; i++) extism_store_u8(block + i, p[i]);
  return block;
}

/** A new kernel block holding the NUL-terminated string `s` (without the NUL). */
static inline tyrum_u64 tyrum_block_from_str(const char *s) {
  return tyrum_block_from(s, tyrum_strlen(s));
}

/**
 * Copy kernel block `block` into `dst` (at most `cap` bytes) and return the block's full length: a
 * result above `cap` means the copy was cut short.
 */
static inline tyrum_size tyrum_block_read(tyrum_u64 block, void *dst, tyrum_size cap) {
  tyrum_u8 *d = (tyrum_u8 *)dst;
  tyrum_size len = (tyrum_size)extism_length(block);
  tyrum_size n = len < cap ? len : cap;
  tyrum_size i = 0;
  for (; i + 8 <= n; i += 8) {
    tyrum_u64 v = extism_load_u64(block + i);
    __builtin_memcpy(d + i, &v, 8);
  }
  for (; i < n; i++) d[i] = extism_load_u8(block + i);
  return len;
}

/** As tyrum_block_read, then NUL-terminate `dst` when there is room (cap > length). */
static inline tyrum_size tyrum_block_read_str(tyrum_u64 block, char *dst, tyrum_size cap) {
  tyrum_size len = tyrum_block_read(block, dst, cap);
  if (len < cap) dst[len] = 0;
  else if (cap > 0) dst[cap - 1] = 0;
  return len;
}

/* ---- input, output, errors --------------------------------------------------------------------- */

/** Bytes of the call's input (the tool's arguments as UTF-8 JSON). */
static inline tyrum_size tyrum_input_length(void) {
  return (tyrum_size)extism_input_length();
}

/**
 * Copy the call's input into `dst` (at most `cap` bytes) and return its full length (above `cap`:
 * cut short). NUL-terminates `dst` when there is room.
 */
static inline tyrum_size tyrum_input_read(void *dst, tyrum_size cap) {
  tyrum_u8 *d = (tyrum_u8 *)dst;
  tyrum_size len = tyrum_input_length();
  tyrum_size n = len < cap ? len : cap;
  tyrum_size i = 0;
  for (; i + 8 <= n; i += 8) {
    tyrum_u64 v = extism_input_load_u64(i);
    __builtin_memcpy(d + i, &v, 8);
  }
  for (; i < n; i++) d[i] = extism_input_load_u8(i);
  if (len < cap) d[len] = 0;
  return len;
}

/** Set the call's output to `len` bytes at `data` (UTF-8 JSON for a tool). */
static inline void tyrum_output(const void *data, tyrum_size len) {
  extism_output_set(tyrum_block_from(data, len), (tyrum_u64)len);
}

/** Set the call's output to a NUL-terminated string. */
static inline void tyrum_output_str(const char *s) {
  tyrum_output(s, tyrum_strlen(s));
}

/**
 * Report an error; returns 1, the code the export must return: `return tyrum_error("bad input");`.
 * The caller gets a `sandbox_error` (reason plugin_error) carrying the message.
 */
static inline int tyrum_error(const char *message) {
  extism_error_set(tyrum_block_from_str(message));
  return 1;
}

/* ---- logs ---------------------------------------------------------------------------------------- */

enum { TYRUM_LOG_TRACE = 0, TYRUM_LOG_DEBUG = 1, TYRUM_LOG_INFO = 2, TYRUM_LOG_WARN = 3, TYRUM_LOG_ERROR = 4 };

/** Log a line at `level` (TYRUM_LOG_*); at most 100 lines of 2 KiB per call are kept. */
static inline void tyrum_log(int level, const char *message) {
  tyrum_u64 m = tyrum_block_from_str(message);
  tyrum_host_log(level, m);
  extism_free(m);
}

/* ---- config ---------------------------------------------------------------------------------------- */

/**
 * The configuration value under top-level key `key` (strings as they are, other values as JSON text),
 * copied into `dst` (NUL-terminated when it fits). Returns its full length, or -1 when unset.
 */
static inline int tyrum_config_get(const char *key, char *dst, tyrum_size cap) {
  tyrum_u64 k = tyrum_block_from_str(key);
  tyrum_u64 v = extism_config_get(k);
  extism_free(k);
  if (v == 0) return -1;
  int len = (int)tyrum_block_read_str(v, dst, cap);
  extism_free(v);
  return len;
}

/* ---- key-value storage (needs a kv grant) ------------------------------------------------------------ */

/**
 * The value stored under `key`, copied into `dst` (at most `cap` bytes). Returns its full length (above
 * `cap`: cut short), or -1 when there is none.
 */
static inline int tyrum_kv_get(const char *key, void *dst, tyrum_size cap) {
  tyrum_u64 k = tyrum_block_from_str(key);
  tyrum_u64 v = tyrum_host_kv_get(k);
  extism_free(k);
  if (v == 0) return -1;
  int len = (int)tyrum_block_read(v, dst, cap);
  extism_free(v);
  return len;
}

/** Store `len` bytes at `value` under `key`. Returns 0 when stored, 1 when the plugin's quota refused it. */
static inline int tyrum_kv_set(const char *key, const void *value, tyrum_size len) {
  tyrum_u64 k = tyrum_block_from_str(key);
  tyrum_u64 v = tyrum_block_from(value, len);
  int r = tyrum_host_kv_set(k, v);
  extism_free(k);
  extism_free(v);
  return r;
}

/** Delete `key` (absent is fine). Returns 0, or 1 if the store refused. */
static inline int tyrum_kv_delete(const char *key) {
  tyrum_u64 k = tyrum_block_from_str(key);
  int r = tyrum_host_kv_set(k, 0);
  extism_free(k);
  return r;
}

/* ---- building JSON into a buffer ----------------------------------------------------------------------- */

/** A JSON writer over a caller's buffer. Writes past `cap` are dropped and set `overflow`. */
typedef struct {
  char *buf;
  tyrum_size cap;
  tyrum_size len;
  int overflow;
} tyrum_json;

static inline tyrum_json tyrum_json_init(char *buf, tyrum_size cap) {
  tyrum_json j;
  j.buf = buf;
  j.cap = cap;
  j.len = 0;
  j.overflow = 0;
  return j;
}

static inline void tyrum_json_byte(tyrum_json *j, char c) {
  if (j->len < j->cap) j->buf[j->len++] = c;
  else j->overflow = 1;
}

/** Append `s` as it is (punctuation, keys that need no escaping, JSON text). */
static inline void tyrum_json_raw(tyrum_json *j, const char *s) {
  for (tyrum_size i = 0; s[i] != 0; i++) tyrum_json_byte(j, s[i]);
}

/** Append `n` bytes of UTF-8 at `s` as a quoted, escaped JSON string. */
static inline void tyrum_json_strn(tyrum_json *j, const char *s, tyrum_size n) {
  static const char hex[] = "0123456789abcdef";
  tyrum_json_byte(j, '"');
  for (tyrum_size i = 0; i < n; i++) {
    tyrum_u8 c = (tyrum_u8)s[i];
    if (c == '"' || c == '\\') {
      tyrum_json_byte(j, '\\');
      tyrum_json_byte(j, (char)c);
    } else if (c == '\n') {
      tyrum_json_byte(j, '\\');
      tyrum_json_byte(j, 'n');
    } else if (c == '\r') {
      tyrum_json_byte(j, '\\');
      tyrum_json_byte(j, 'r');
    } else if (c == '\t') {
      tyrum_json_byte(j, '\\');
      tyrum_json_byte(j, 't');
    } else if (c < 0x20) {
      tyrum_json_raw(j, "\\u00");
      tyrum_json_byte(j, hex[c >> 4]);
      tyrum_json_byte(j, hex[c & 15]);
    } else {
      tyrum_json_byte(j, (char)c);
    }
  }
  tyrum_json_byte(j, '"');
}

/** Append a NUL-terminated UTF-8 string as a quoted, escaped JSON string. */
static inline void tyrum_json_str(tyrum_json *j, const char *s) {
  tyrum_json_strn(j, s, tyrum_strlen(s));
}

/** Append an integer. */
static inline void tyrum_json_i64(tyrum_json *j, tyrum_i64 v) {
  char digits[20];
  int n = 0;
  tyrum_u64 u = v < 0 ? (tyrum_u64)0 - (tyrum_u64)v : (tyrum_u64)v;
  if (v < 0) tyrum_json_byte(j, '-');
  do {
    digits[n++] = (char)('0' + (int)(u % 10));
    u /= 10;
  } while (u != 0);
  while (n > 0) tyrum_json_byte(j, digits[--n]);
}

static inline void tyrum_json_bool(tyrum_json *j, int v) {
  tyrum_json_raw(j, v ? "true" : "false");
}

/** Set the call's output to what `j` wrote; returns 0, or tyrum_error(...) when it overflowed. */
static inline int tyrum_json_output(const tyrum_json *j) {
  if (j->overflow) return tyrum_error("output: the JSON buffer is too small");
  tyrum_output(j->buf, j->len);
  return 0;
}

/* ---- HTTP through the gateway's checked egress (needs an egress grant) --------------------------- */

/**
 * Write the template `{{secret:NAME}}` for a secret name known only at run time (e.g. a config field
 * marked x-tyrum-secret) into `dst`, NUL-terminated. Returns its length, or -1 when `name` is not a
 * secret handle name ([A-Z][A-Z0-9_]{0,63}; it would be sent literally) or `dst` is too small.
 */
static inline int tyrum_secret(const char *name, char *dst, tyrum_size cap) {
  tyrum_size n = tyrum_strlen(name);
  if (n < 1 || n > 64) return -1;
  for (tyrum_size i = 0; i < n; i++) {
    char c = name[i];
    int upper = c >= 'A' && c <= 'Z';
    if (i == 0 ? !upper : !(upper || (c >= '0' && c <= '9') || c == '_')) return -1;
  }
  tyrum_json j = tyrum_json_init(dst, cap);
  tyrum_json_raw(&j, "{{secret:");
  tyrum_json_raw(&j, name);
  tyrum_json_raw(&j, "}}");
  tyrum_json_byte(&j, 0);
  return j.overflow ? -1 : (int)(j.len - 1);
}

/** A request header; the value may hold TYRUM_SECRET templates. */
typedef struct {
  const char *name;
  const char *value;
} tyrum_header;

/** What tyrum_http_request returns. */
typedef struct {
  /** HTTP status (after redirects, which the gateway follows). */
  int status;
  /** Full body length; the body is copied into the caller's buffer up to its capacity. */
  int length;
} tyrum_http_response;

#ifndef TYRUM_HTTP_DESCRIPTOR_BYTES
/** Largest request descriptor (URL and headers as JSON) tyrum_http_request builds. */
#define TYRUM_HTTP_DESCRIPTOR_BYTES 8192
#endif

/**
 * Make an HTTP request: `method` ("GET", "POST", ...), `url`, `nheaders` headers, an optional body
 * (NULL or `body_len` 0: none). The response body is copied into `out` (at most `cap` bytes); `res`
 * receives the status and the body's full length. Returns 0, or -1 when the request descriptor is
 * larger than TYRUM_HTTP_DESCRIPTOR_BYTES (nothing was sent).
 *
 * A destination or method outside the plugin's effective rights, or a secret template toward a host
 * the secret is not bound to, aborts the call (`capability_denied`): the function does not return.
 */
static inline int tyrum_http_request(const char *method, const char *url, const tyrum_header *headers, int nheaders, const void *body,
                                     tyrum_size body_len, void *out, tyrum_size cap, tyrum_http_response *res) {
  static char descriptor[TYRUM_HTTP_DESCRIPTOR_BYTES];
  tyrum_json j = tyrum_json_init(descriptor, sizeof descriptor);
  tyrum_json_raw(&j, "{\"url\":");
  tyrum_json_str(&j, url);
  tyrum_json_raw(&j, ",\"method\":");
  tyrum_json_str(&j, method);
  if (nheaders > 0) {
    tyrum_json_raw(&j, ",\"headers\":{");
    for (int i = 0; i < nheaders; i++) {
      if (i > 0) tyrum_json_byte(&j, ',');
      tyrum_json_str(&j, headers[i].name);
      tyrum_json_byte(&j, ':');
      tyrum_json_str(&j, headers[i].value);
    }
    tyrum_json_byte(&j, '}');
  }
  tyrum_json_byte(&j, '}');
  if (j.overflow) return -1;
  tyrum_u64 req = tyrum_block_from(descriptor, j.len);
  tyrum_u64 b = body != 0 && body_len > 0 ? tyrum_block_from(body, body_len) : 0;
  tyrum_u64 r = extism_http_request(req, b);
  res->status = extism_http_status_code();
  extism_free(req);
  if (b != 0) extism_free(b);
  if (r == 0) {
    res->length = 0;
  } else {
    res->length = (int)tyrum_block_read(r, out, cap);
    extism_free(r);
  }
  return 0;
}

/** GET `url` with `nheaders` headers; see tyrum_http_request. */
static inline int tyrum_http_get(const char *url, const tyrum_header *headers, int nheaders, void *out, tyrum_size cap, tyrum_http_response *res) {
  return tyrum_http_request("GET", url, headers, nheaders, 0, 0, out, cap, res);
}

#ifdef __cplusplus
}
#endif

#endif /* TYRUM_PDK_H */
