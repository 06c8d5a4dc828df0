/**
 * Just enough of the WebAssembly binary format to inspect a module's imports, exports, function
 * types and memories without compiling it, to rewrite its memory maximum, and to rename imports
 * and exports (the WASI shim, see inspect.ts).
 *
 * Why rewrite: V8 lets a guest grow its memory up to 4 GiB whatever the SDK is told; the only
 * per-module cap is the module's own declared maximum, which `memory.grow` honours by returning
 * -1. So a module that declares no maximum (the PDK default) or one above the grant has its
 * memory-section limits re-encoded with the cap. A WASI module also has its
 * `wasi_snapshot_preview1` imports and its initialisation exports renamed (see inspect.ts). Only
 * the rewritten sections change size; other sections are copied byte for byte (nothing in a
 * module refers to absolute file offsets of sections before the code section, DWARF offsets are
 * relative to the code section, and the name section refers to functions by index).
 *
 * Callers run `WebAssembly.validate` first; these parsers still bound-check every read and throw
 * {@link WasmFormatError} rather than read past the end.
 */

/** The module is not in a shape this parser understands. */
export class WasmFormatError extends Error {
  override name = 'WasmFormatError';
}

export const SECTION_TYPE = 1;
export const SECTION_IMPORT = 2;
export const SECTION_MEMORY = 5;
export const SECTION_EXPORT = 7;

export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag';
const KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag'];

export interface Section {
  id: number;
  /** Offset of the section id byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset one past the last content byte. */
  end: number;
}

export interface ImportEntry {
  module: string;
  name: string;
  kind: ExternKind;
}

export interface ExportEntry {
  name: string;
  kind: ExternKind;
}

/** A function type: its parameter and result value types (`i32`, `i64`, `f32`, `f64`, `v128`, `ref`). */
export interface FuncType {
  params: string[];
  results: string[];
}

export interface MemoryLimits {
  /** Raw limits flags: bit 0 has-maximum, bit 1 shared, bit 2 memory64. */
  flags: number;
  initial: number;
  maximum: number | null;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A forward-only reader over a byte range. */
class Reader {
  constructor(
    private readonly b: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  byte(): number {
    if (this.pos >= this.end) throw new WasmFormatError(`unexpected end of data at offset ${this.pos}`);
    return this.b[this.pos++] as number;
  }

  /** Unsigned LEB128, up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) {
        if (result > 0xffffffff) throw new WasmFormatError(`LEB128 value out of u32 range at offset ${this.pos}`);
        return result;
      }
      shift += 7;
    }
    throw new WasmFormatError(`LEB128 too long at offset ${this.pos}`);
  }

  /** Unsigned LEB128, up to 64 bits, as a number (exact up to 2^53; larger values saturate). */
  u64(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
    throw new WasmFormatError(`LEB128 too long at offset ${this.pos}`);
  }

  name(): string {
    const len = this.u32();
    if (this.pos + len > this.end) throw new WasmFormatError(`name runs past the end at offset ${this.pos}`);
    const s = utf8.decode(this.b.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }

  limits(): MemoryLimits {
    const flags = this.byte();
    if (flags > 0x07) throw new WasmFormatError(`unknown limits flags 0x${flags.toString(16)}`);
    const wide = (flags & 0x04) !== 0;
    const initial = wide ? this.u64() : this.u32();
    const maximum = (flags & 0x01) !== 0 ? (wide ? this.u64() : this.u32()) : null;
    return { flags, initial, maximum };
  }
}

/** Encode an unsigned 32-bit LEB128. */
export function encodeU32(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a u32: ${n}`);
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Split a module into its sections (after checking the header). */
export function readSections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmFormatError('not a WebAssembly module (bad magic)');
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmFormatError('unsupported WebAssembly binary version (only version 1, core modules)');
  }
  const r = new Reader(bytes, 8, bytes.length);
  const sections: Section[] = [];
  while (!r.done) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end of the module`);
    sections.push({ id, start, contentStart, end });
    r.pos = end;
  }
  return sections;
}

function kindOf(byte: number): ExternKind {
  const k = KINDS[byte];
  if (k === undefined) throw new WasmFormatError(`unknown import/export kind 0x${byte.toString(16)}`);
  return k;
}

/** An import with where it sits in the section (for rewriting) and, for functions, its type index. */
interface ImportRecord extends ImportEntry {
  /** Offset of the entry (its module name's length prefix). */
  start: number;
  /** Offset one past the module name (where the field name's length prefix begins). */
  moduleEnd: number;
  /** Offset one past the entry. */
  end: number;
  typeIndex: number | null;
}

function parseImports(bytes: Uint8Array, s: Section): ImportRecord[] {
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  const out: ImportRecord[] = [];
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    const module = r.name();
    const moduleEnd = r.pos;
    const name = r.name();
    const kind = kindOf(r.byte());
    let typeIndex: number | null = null;
    switch (kind) {
      case 'function':
        typeIndex = r.u32();
        break;
      case 'table':
        r.byte(); // reference type
        r.limits();
        break;
      case 'memory':
        r.limits();
        break;
      case 'global':
        r.byte(); // value type
        r.byte(); // mutability
        break;
      case 'tag':
        r.byte(); // attribute
        r.u32(); // type index
        break;
    }
    out.push({ module, name, kind, start, moduleEnd, end: r.pos, typeIndex });
  }
  return out;
}

/** Parse the import section. */
export function readImports(bytes: Uint8Array, s: Section): ImportEntry[] {
  return parseImports(bytes, s).map(({ module, name, kind }) => ({ module, name, kind }));
}

/** The type index of each function import, in import order (non-functions: null). */
export function readImportTypeIndices(bytes: Uint8Array, s: Section): (number | null)[] {
  return parseImports(bytes, s).map((i) => i.typeIndex);
}

const VALTYPES: Readonly<Record<number, string>> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128' };
/** Abstract heap types written as one byte (reference-types, GC and exception-handling proposals). */
const isShorthandRef = (b: number): boolean => b >= 0x69 && b <= 0x74;

function valType(r: Reader): string {
  const b = r.byte();
  const t = VALTYPES[b];
  if (t !== undefined) return t;
  if (isShorthandRef(b)) return 'ref';
  if (b === 0x63 || b === 0x64) {
    // (ref null? heaptype): heaptype is a one-byte abstract type or an s33 type index.
    const h = r.byte();
    if (!isShorthandRef(h)) {
      let more = h & 0x80;
      for (let i = 0; more !== 0 && i < 5; i++) more = r.byte() & 0x80;
      if (more !== 0) throw new WasmFormatError('heap type index too long');
    }
    return 'ref';
  }
  throw new WasmFormatError(`unknown value type 0x${b.toString(16)}`);
}

function compType(r: Reader): FuncType | null {
  const form = r.byte();
  if (form === 0x60) {
    const params: string[] = [];
    for (let n = r.u32(), i = 0; i < n; i++) params.push(valType(r));
    const results: string[] = [];
    for (let n = r.u32(), i = 0; i < n; i++) results.push(valType(r));
    return { params, results };
  }
  const field = (): void => {
    const b = r.byte();
    if (b !== 0x78 && b !== 0x77) {
      r.pos -= 1;
      valType(r);
    }
    r.byte(); // mutability
  };
  if (form === 0x5f) {
    for (let n = r.u32(), i = 0; i < n; i++) field();
    return null;
  }
  if (form === 0x5e) {
    field();
    return null;
  }
  throw new WasmFormatError(`unknown composite type 0x${form.toString(16)}`);
}

function subType(r: Reader): FuncType | null {
  const b = r.byte();
  if (b === 0x50 || b === 0x4f) {
    for (let n = r.u32(), i = 0; i < n; i++) r.u32(); // supertypes
  } else {
    r.pos -= 1;
  }
  return compType(r);
}

/**
 * Parse the type section: one entry per type index, a {@link FuncType} for function types and
 * null for others (GC struct and array types). Recursive groups contribute one index per member.
 */
export function readTypes(bytes: Uint8Array, s: Section): (FuncType | null)[] {
  const r = new Reader(bytes, s.contentStart, s.end);
  const out: (FuncType | null)[] = [];
  for (let n = r.u32(), i = 0; i < n; i++) {
    if (r.byte() === 0x4e) {
      for (let m = r.u32(), j = 0; j < m; j++) out.push(subType(r));
    } else {
      r.pos -= 1;
      out.push(subType(r));
    }
  }
  return out;
}

function encodeName(name: string): number[] {
  const b = new TextEncoder().encode(name);
  return [...encodeU32(b.length), ...b];
}

/** The content of the import section `s` with every import from module `from` moved to module `to`. */
export function renameImportModule(bytes: Uint8Array, s: Section, from: string, to: string): Uint8Array {
  const imports = parseImports(bytes, s);
  const parts: number[] = encodeU32(imports.length);
  const chunks: Uint8Array[] = [];
  const flush = (): void => {
    chunks.push(Uint8Array.from(parts));
    parts.length = 0;
  };
  for (const imp of imports) {
    if (imp.module === from) {
      parts.push(...encodeName(to));
      flush();
      chunks.push(bytes.subarray(imp.moduleEnd, imp.end));
    } else {
      flush();
      chunks.push(bytes.subarray(imp.start, imp.end));
    }
  }
  flush();
  return concat(chunks);
}

/** The content of the export section `s` with the exports named in `renames` renamed. */
export function renameExports(bytes: Uint8Array, s: Section, renames: ReadonlyMap<string, string>): Uint8Array {
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  const chunks: Uint8Array[] = [Uint8Array.from(encodeU32(n))];
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    const name = r.name();
    const nameEnd = r.pos;
    r.byte(); // kind
    r.u32(); // index
    const to = renames.get(name);
    if (to !== undefined) chunks.push(Uint8Array.from(encodeName(to)), bytes.subarray(nameEnd, r.pos));
    else chunks.push(bytes.subarray(start, r.pos));
  }
  return concat(chunks);
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Return a copy of `bytes` whose section `s` has `content` (same id); other sections are copied unchanged. */
export function replaceSection(bytes: Uint8Array, s: Section, content: Uint8Array): Uint8Array {
  const header = [s.id, ...encodeU32(content.byteLength)];
  return concat([bytes.subarray(0, s.start), Uint8Array.from(header), content, bytes.subarray(s.end)]);
}

/** Parse the export section. */
export function readExports(bytes: Uint8Array, s: Section): ExportEntry[] {
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  const out: ExportEntry[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.name();
    const kind = kindOf(r.byte());
    r.u32(); // index
    out.push({ name, kind });
  }
  return out;
}

/** Parse the memory section (one entry per defined memory). */
export function readMemories(bytes: Uint8Array, s: Section): MemoryLimits[] {
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  const out: MemoryLimits[] = [];
  for (let i = 0; i < n; i++) out.push(r.limits());
  return out;
}

/**
 * Return a copy of `bytes` whose memory section declares exactly `memories` (32-bit, unshared
 * limits only). Sections other than the memory section are copied unchanged.
 */
export function replaceMemorySection(bytes: Uint8Array, s: Section, memories: readonly MemoryLimits[]): Uint8Array {
  const content: number[] = encodeU32(memories.length);
  for (const m of memories) {
    if ((m.flags & ~0x01) !== 0) throw new WasmFormatError('only 32-bit unshared memories can be rewritten');
    if (m.maximum === null) {
      content.push(0x00, ...encodeU32(m.initial));
    } else {
      content.push(0x01, ...encodeU32(m.initial), ...encodeU32(m.maximum));
    }
  }
  return replaceSection(bytes, s, Uint8Array.from(content));
}
