/**
 * Just enough of the WebAssembly binary format to inspect a module's imports, exports and
 * memories without compiling it, and to rewrite its memory maximum.
 *
 * Why rewrite: V8 lets a guest grow its memory up to 4 GiB whatever the SDK is told; the only
 * per-module cap is the module's own declared maximum, which `memory.grow` honours by returning
 * -1. So a module that declares no maximum (the PDK default) or one above the grant has its
 * memory-section limits re-encoded with the cap. Only the memory section changes size; other
 * sections are copied byte for byte (nothing in a module refers to absolute file offsets of
 * sections before the code section, and DWARF offsets are relative to the code section).
 *
 * Callers run `WebAssembly.validate` first; these parsers still bound-check every read and throw
 * {@link WasmFormatError} rather than read past the end.
 */

/** The module is not in a shape this parser understands. */
export class WasmFormatError extends Error {
  override name = 'WasmFormatError';
}

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

/** Parse the import section. */
export function readImports(bytes: Uint8Array, s: Section): ImportEntry[] {
  const r = new Reader(bytes, s.contentStart, s.end);
  const n = r.u32();
  const out: ImportEntry[] = [];
  for (let i = 0; i < n; i++) {
    const module = r.name();
    const name = r.name();
    const kind = kindOf(r.byte());
    switch (kind) {
      case 'function':
        r.u32(); // type index
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
    out.push({ module, name, kind });
  }
  return out;
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
  const header = [SECTION_MEMORY, ...encodeU32(content.length)];
  const out = new Uint8Array(s.start + header.length + content.length + (bytes.length - s.end));
  out.set(bytes.subarray(0, s.start), 0);
  out.set(header, s.start);
  out.set(content, s.start + header.length);
  out.set(bytes.subarray(s.end), s.start + header.length + content.length);
  return out;
}
