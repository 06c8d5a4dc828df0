/**
 * Redaction of known secret values from logs, audit entries, events, tool outputs and egress
 * responses.
 *
 * A value is searched for as itself and in the encodings it commonly travels in: base64 and
 * base64url (padded, unpadded, and the part that survives inside a longer base64 stream at
 * any byte alignment, e.g. `Basic base64(user:secret)`), hex in both cases, URL encoding (with
 * `%20` or `+`, upper and lower case, and every byte escaped), the JSON-escaped form, and the
 * value lower-cased and upper-cased (header names arrive lower-cased). Each
 * occurrence becomes `[REDACTED:<NAME>]`.
 *
 * The patterns are compiled when the set of values changes, never per call: alternations of
 * literals, longest first, split so that each regex source stays under V8's size limit for
 * optimised matching (about 20 KB; above it one scan became ~25x slower in measurement). A call
 * costs one scan per chunk, roughly one per 25 secrets; a form longer than a chunk is its own
 * plain-literal regex, which V8 runs as a fast substring search.
 */
import { TyrumError } from '../errors/index.js';
import { MIN_SECRET_BYTES, type SecretStore } from './store.js';

/** A value to redact and the handle it belongs to. */
export interface RedactionEntry {
  name: string;
  value: Uint8Array;
  /** The tenant owning the handle; absent: the default tenant. */
  tenant?: string;
}

/**
 * How the redactor refers to a handle: its name for the default tenant's, `<tenant>/<name>` for
 * another tenant's (handle names have no "/"). The label an occurrence becomes names only the
 * handle (`[REDACTED:NAME]`), never its tenant: a value of one tenant found in another tenant's
 * output says nothing of who owns it.
 */
export function secretRef(name: string, tenant?: string): string {
  return tenant === undefined || tenant === 'default' ? name : `${tenant}/${name}`;
}

/** The handle name and tenant of a {@link secretRef}. */
export function parseSecretRef(ref: string): { name: string; tenant: string } {
  const slash = ref.indexOf('/');
  return slash < 0 ? { name: ref, tenant: 'default' } : { name: ref.slice(slash + 1), tenant: ref.slice(0, slash) };
}

/** The label of a reference: the handle's name only. */
function labelOf(ref: string | undefined): string {
  return redactionLabel(ref === undefined ? 'SECRET' : parseSecretRef(ref).name);
}

/** The text that replaces an occurrence of the named secret. */
export function redactionLabel(name: string): string {
  return `[REDACTED:${name}]`;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function utf8OrNull(b: Uint8Array): string | null {
  try {
    return strictUtf8.decode(b);
  } catch {
    return null;
  }
}

/** Escape a string for a RegExp without the `u` flag (code-unit semantics, like the inputs). */
function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/** The part of base64(prefix + value + suffix) that depends only on `value`, for a prefix of `k` bytes. */
function base64Core(value: Buffer, k: number): string {
  const b64 = Buffer.concat([Buffer.alloc(k), value]).toString('base64').replace(/=+$/, '');
  const start = Math.ceil((8 * k) / 6);
  const end = Math.floor((8 * (k + value.length)) / 6);
  return b64.slice(start, end);
}

function percentEveryByte(b: Buffer, upper: boolean): string {
  let out = '';
  for (const byte of b) out += `%${byte.toString(16).padStart(2, '0')}`;
  return upper ? out.toUpperCase() : out;
}

function lowerPercent(s: string): string {
  return s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
}

/** Every textual form of `value` worth looking for (deduplicated, unordered). */
export function encodedForms(value: Uint8Array): string[] {
  const v = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  const forms = new Set<string>();
  const text = utf8OrNull(v);
  if (text !== null) {
    forms.add(text);
    // Case-folded copies: HTTP header names arrive lower-cased, and some systems upper-case.
    forms.add(text.toLowerCase());
    forms.add(text.toUpperCase());
    const uri = encodeURIComponent(text);
    forms.add(uri);
    forms.add(lowerPercent(uri));
    forms.add(uri.replace(/%20/g, '+'));
    const json = JSON.stringify(text).slice(1, -1);
    forms.add(json);
    forms.add(json.replace(/\//g, '\\/'));
    forms.add(json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
    forms.add(JSON.stringify(json).slice(1, -1)); // JSON inside a JSON string
  }
  const b64 = v.toString('base64');
  const b64url = v.toString('base64url');
  forms.add(b64);
  forms.add(b64.replace(/=+$/, ''));
  forms.add(b64url);
  forms.add(`${b64url}${'='.repeat(b64.length - b64.replace(/=+$/, '').length)}`);
  for (const k of [0, 1, 2]) {
    const core = base64Core(v, k);
    forms.add(core);
    forms.add(core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  const hex = v.toString('hex');
  forms.add(hex);
  forms.add(hex.toUpperCase());
  forms.add(percentEveryByte(v, true));
  forms.add(percentEveryByte(v, false));
  forms.delete('');
  return [...forms];
}

/** Largest regex source per chunk, safely below V8's 20 KB optimisation limit. */
const MAX_CHUNK_SOURCE = 16_000;

interface Table {
  /** Scan JS strings (UTF-16 code units). Empty when there is nothing to redact. */
  text: RegExp[];
  /** Scan bytes decoded as latin1 (one char per byte), so binary bodies round-trip exactly. */
  bytes: RegExp[];
  /** Matched text (either form) → handle reference ({@link secretRef}). */
  names: Map<string, string>;
  count: number;
}

function buildTable(entries: readonly RedactionEntry[]): Table {
  const textNames = new Map<string, string>();
  const byteNames = new Map<string, string>();
  const names = new Map<string, string>();
  for (const { name: handle, value, tenant } of entries) {
    const name = secretRef(handle, tenant);
    if (value.byteLength < MIN_SECRET_BYTES) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `secret ${name} is shorter than ${MIN_SECRET_BYTES} bytes and cannot be redacted reliably`, { name });
    }
    const raw = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
    if (!byteNames.has(raw)) byteNames.set(raw, name);
    for (const form of encodedForms(value)) {
      if (!textNames.has(form)) textNames.set(form, name);
      // The UTF-8 bytes of the form, seen through latin1, as they appear in a body.
      const asBytes = Buffer.from(form, 'utf8').toString('latin1');
      if (!byteNames.has(asBytes)) byteNames.set(asBytes, name);
    }
  }
  for (const [k, n] of textNames) if (!names.has(k)) names.set(k, n);
  for (const [k, n] of byteNames) if (!names.has(k)) names.set(k, n);
  const compile = (m: Map<string, string>): RegExp[] => {
    // Longest first: where a full form and its base64 core start at the same place, the whole
    // form is replaced (chunks run in that order too).
    const out: RegExp[] = [];
    let chunk: string[] = [];
    let size = 0;
    for (const alt of [...m.keys()].sort((a, b) => b.length - a.length).map(escapeRe)) {
      if (chunk.length > 0 && size + alt.length + 1 > MAX_CHUNK_SOURCE) {
        out.push(new RegExp(chunk.join('|'), 'g'));
        chunk = [];
        size = 0;
      }
      chunk.push(alt);
      size += alt.length + 1;
    }
    if (chunk.length > 0) out.push(new RegExp(chunk.join('|'), 'g'));
    return out;
  };
  return { text: compile(textNames), bytes: compile(byteNames), names, count: entries.length };
}

/** Things a walk never descends into twice (cycles) and the depth it gives up at. */
const MAX_DEPTH = 200;

/**
 * Redacts known secret values. Build a fixed one from a list of values, or a live one over a
 * SecretStore with `Redactor.fromSecrets`, which rebuilds its patterns when the secrets change
 * (also when another process changed them) and keeps redacting retired values, since a rotated
 * value may still sit in a response, a log line or a buffered event.
 *
 * `redactDeep` is a bound function, usable directly as AuditLog's `redact` option.
 */
export class Redactor {
  #table: Table;
  readonly #source: SecretStore | null;
  #seenRevision = -1;
  /** Live mode: every value seen so far, by name and hex, so rotated-out values stay redacted. */
  readonly #known = new Map<string, RedactionEntry>();

  constructor(entries: Iterable<RedactionEntry> = [], source: SecretStore | null = null) {
    this.#source = source;
    for (const e of entries) this.#known.set(`${secretRef(e.name, e.tenant)}:${Buffer.from(e.value).toString('hex')}`, { name: e.name, value: Buffer.from(e.value), ...(e.tenant !== undefined ? { tenant: e.tenant } : {}) });
    this.#table = buildTable([...this.#known.values()]);
    if (source) this.#refresh();
  }

  /** A redactor that follows `secrets`: current values plus every value it has seen before. */
  static fromSecrets(secrets: SecretStore): Redactor {
    return new Redactor([], secrets);
  }

  /** Number of values redacted (including retired ones in live mode). */
  get size(): number {
    this.#refresh();
    return this.#table.count;
  }

  /** Replace every known secret value (and its encodings) in `s`. */
  redactText(s: string): string {
    const table = this.#current();
    let out = s;
    for (const re of table.text) {
      if (out.length === 0) break;
      out = out.replace(re, (m) => labelOf(table.names.get(m)));
    }
    return out;
  }

  /** Replace every known secret value in a byte buffer; returns the input itself when nothing matched. */
  redactBytes(b: Uint8Array): Uint8Array {
    const table = this.#current();
    if (table.bytes.length === 0 || b.byteLength === 0) return b;
    let out = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
    let hit = false;
    for (const re of table.bytes) {
      out = out.replace(re, (m) => {
        hit = true;
        return labelOf(table.names.get(m));
      });
    }
    return hit ? new Uint8Array(Buffer.from(out, 'latin1')) : b;
  }

  /** References ({@link secretRef}: the name, `<tenant>/<name>` for another tenant's) of the secrets whose values occur in `s` (any form). */
  findInText(s: string): string[] {
    return this.#find(this.#current().text, s);
  }

  /** References ({@link secretRef}) of the secrets whose values occur in `b` (any form). */
  findInBytes(b: Uint8Array): string[] {
    return this.#find(this.#current().bytes, Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1'));
  }

  /**
   * A redacted copy of a JSON-like value: strings and object keys are redacted, arrays and
   * plain objects walked, byte arrays redacted as bytes, numbers whose decimal form is a secret
   * replaced by the label. Errors become `{ name, message, ... }`; cycles become "[Circular]".
   * Other values are returned as they are.
   */
  readonly redactDeep = (value: unknown): unknown => {
    this.#current();
    if (this.#table.text.length === 0) return value;
    return this.#walk(value, new WeakSet<object>(), 0);
  };

  #walk(v: unknown, seen: WeakSet<object>, depth: number): unknown {
    if (typeof v === 'string') return this.redactText(v);
    if (typeof v === 'number' || typeof v === 'bigint') {
      const s = String(v);
      const r = this.redactText(s);
      return r === s ? v : r;
    }
    if (typeof v !== 'object' || v === null) return v;
    if (v instanceof Uint8Array) return this.redactBytes(v);
    if (seen.has(v)) return '[Circular]';
    if (depth >= MAX_DEPTH) return '[Truncated]';
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map((x) => this.#walk(x, seen, depth + 1));
      if (v instanceof Map) return new Map([...v].map(([k, x]) => [this.#walk(k, seen, depth + 1), this.#walk(x, seen, depth + 1)]));
      if (v instanceof Set) return new Set([...v].map((x) => this.#walk(x, seen, depth + 1)));
      if (v instanceof Date) return v;
      const src: Record<string, unknown> = v instanceof Error ? { ...v, name: v.name, message: v.message } : (v as Record<string, unknown>);
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(src)) out[this.redactText(k)] = this.#walk(x, seen, depth + 1);
      return out;
    } finally {
      seen.delete(v); // a shared (not cyclic) sub-object is walked again where it recurs
    }
  }

  #find(res: readonly RegExp[], s: string): string[] {
    const found = new Set<string>();
    if (s.length === 0) return [];
    for (const re of res) for (const m of s.matchAll(re)) found.add(this.#table.names.get(m[0]) ?? 'SECRET');
    return [...found];
  }

  #current(): Table {
    this.#refresh();
    return this.#table;
  }

  #refresh(): void {
    if (this.#source === null) return;
    let rev: number;
    try {
      rev = this.#source.revision();
    } catch (e) {
      // The store is unreachable (TYRUM_ERR_STORE_UNAVAILABLE on PostgreSQL): redact with the
      // secrets known so far (a secret this process cannot read it cannot have in a payload
      // either), and look again next time. Only before the first read is there nothing to use.
      if (this.#seenRevision === -1) throw e;
      return;
    }
    if (rev === this.#seenRevision) return;
    let added = false;
    for (const e of this.#source.values()) {
      const key = `${secretRef(e.name, e.tenant)}:${e.value.toString('hex')}`;
      if (!this.#known.has(key)) {
        this.#known.set(key, e);
        added = true;
      }
    }
    if (added || this.#seenRevision === -1) this.#table = buildTable([...this.#known.values()]);
    this.#seenRevision = rev;
  }
}
