/**
 * Load-time checks of a plugin module, run on the main thread before anything is instantiated:
 * digest, validity, import allow-list (WASI preview1 signatures included), declared exports and
 * the memory cap (rewritten into the module). Pure and synchronous; no part of the module runs.
 *
 * A module that imports WASI preview1 is also rewritten for the shim (sandbox/wasi.ts): its
 * `wasi_snapshot_preview1` imports move to {@link WASI_SHIM_NS} (Extism 2.0.0-rc13 refuses the
 * name `wasi_snapshot_preview1` itself while its own WASI is off), and its `_initialize`,
 * `_start` and `hs_init` exports are renamed ({@link WASI_RENAMED_EXPORTS}) so the SDK does not
 * run them before the shim can see the guest's memory; the worker runs `_initialize` and
 * `hs_init` itself. The digest is always that of the bytes as shipped.
 */
import { createHash } from 'node:crypto';
import { sandboxError } from './errors.js';
import { isProvidedImport, WASI_NS, WASI_PREVIEW1_SIGNATURES, WASI_RENAMED_EXPORTS, WASI_SHIM_NS } from './host-abi.js';
import { Wasm } from './wasm-api.js';
import {
  readExports,
  readImports,
  readImportTypeIndices,
  readMemories,
  readSections,
  readTypes,
  renameExports,
  renameImportModule,
  replaceMemorySection,
  replaceSection,
  SECTION_EXPORT,
  SECTION_IMPORT,
  SECTION_MEMORY,
  SECTION_TYPE,
  WasmFormatError,
  type ExportEntry,
  type FuncType,
  type ImportEntry,
  type MemoryLimits,
  type Section,
} from './wasm-binary.js';

/** What a module must satisfy to load. */
export interface InspectPolicy {
  /** Expected sha256 of the module bytes as shipped (lowercase or uppercase hex). */
  expectedSha256: string;
  /** Function exports the manifest declares; each must exist. */
  exports: readonly string[];
  /** Memory cap in 64 KiB pages. */
  memoryPages: number;
  /** Largest module accepted, bytes. */
  maxModuleBytes: number;
}

/** What the checks found, and the bytes to compile (memory maximum possibly rewritten). */
export interface ModuleReport {
  /** sha256 of the bytes as given (hex). */
  sha256: string;
  /** The bytes to compile: the input, or a copy with the memory maximum rewritten. */
  bytes: Uint8Array;
  imports: ImportEntry[];
  exports: ExportEntry[];
  /** The module's own memory, or null when it defines none. */
  memory: {
    initialPages: number;
    /** The maximum the module declared (null: none). */
    declaredMaxPages: number | null;
    /** The maximum in force after the rewrite. */
    maxPages: number;
    rewritten: boolean;
  } | null;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const LIST_MAX = 5;

function listed(items: readonly string[]): string {
  return items.length <= LIST_MAX ? items.join(', ') : `${items.slice(0, LIST_MAX).join(', ')} and ${items.length - LIST_MAX} more`;
}

function rejected(check: string, message: string, details: Record<string, unknown> = {}): never {
  throw sandboxError('module_rejected', message, { check, ...details });
}

/** Why an import is refused, in words an operator or plugin author can act on. */
function refusal(imp: ImportEntry): string {
  const what = `${imp.module}.${imp.name} (${imp.kind})`;
  if (imp.module === WASI_NS) {
    return imp.kind === 'function'
      ? `${what}: not a WASI preview1 function; WASI is not available to plugins beyond the preview1 shim's functions`
      : `${what}: WASI is not available to plugins beyond the preview1 shim's functions (only function imports)`;
  }
  if (imp.module.startsWith('wasi_') || imp.module.startsWith('wasi:')) {
    return `${what}: WASI is not available to plugins under "${imp.module}" (only ${WASI_NS}, as a capability-less shim)`;
  }
  if (imp.kind === 'memory') return `${what}: imported memories are not supported; the module must define its own`;
  if (imp.kind === 'table') return `${what}: imported tables are not supported`;
  if (imp.kind !== 'function') return `${what}: only function imports are supported`;
  return `${what}: neither an Extism kernel function nor a Tyrum host API v1 function`;
}

/**
 * Check a module against `policy` and return what it found plus the bytes to compile.
 * Throws a coded error (`digest_mismatch` or `module_rejected`, with `details.check`) naming the
 * cause: the digests, the offending imports, the missing exports or the memory sizes.
 */
export function inspectModule(wasm: Uint8Array, policy: InspectPolicy): ModuleReport {
  if (!(wasm instanceof Uint8Array)) rejected('format', 'wasm must be a Uint8Array');
  if (wasm.byteLength > policy.maxModuleBytes) {
    rejected('size', `module is ${wasm.byteLength} bytes, above the ${policy.maxModuleBytes}-byte limit`);
  }
  const expected = typeof policy.expectedSha256 === 'string' ? policy.expectedSha256.toLowerCase() : '';
  if (!SHA256_HEX.test(expected)) {
    throw sandboxError('invalid_argument', 'expectedSha256 must be 64 hex digits');
  }
  const sha256 = createHash('sha256').update(wasm).digest('hex');
  if (sha256 !== expected) {
    throw sandboxError('digest_mismatch', `wasm digest mismatch: expected sha256 ${expected}, got ${sha256}`, {
      expected,
      actual: sha256,
    });
  }
  if (!Wasm.validate(wasm)) rejected('validate', 'module is not valid WebAssembly');

  try {
    const sections = readSections(wasm);
    const find = (id: number) => sections.filter((s) => s.id === id);
    const importSec = find(SECTION_IMPORT)[0];
    const exportSec = find(SECTION_EXPORT)[0];
    const memorySec = find(SECTION_MEMORY)[0];
    const imports = importSec ? readImports(wasm, importSec) : [];
    const exports = exportSec ? readExports(wasm, exportSec) : [];

    const bad = imports.filter((i) => i.kind !== 'function' || !isProvidedImport(i.module, i.name));
    if (bad.length > 0) {
      const reasons = bad.map(refusal);
      rejected('imports', `module imports what the sandbox does not provide: ${listed(reasons)}`, {
        imports: bad.map((i) => `${i.module}.${i.name}`),
      });
    }

    const wasi = imports.some((i) => i.module === WASI_NS);
    if (wasi) checkWasiSignatures(wasm, sections, imports);

    const fnExports = new Set(exports.filter((e) => e.kind === 'function').map((e) => e.name));
    const missing = policy.exports.filter((name) => !fnExports.has(name));
    if (missing.length > 0) {
      rejected('exports', `module does not export the declared function(s) ${listed(missing)}`, { missing });
    }
    if (wasi) {
      const reserved = exports.filter((e) => [...WASI_RENAMED_EXPORTS.values()].includes(e.name)).map((e) => e.name);
      if (reserved.length > 0) rejected('exports', `module exports names reserved by the sandbox: ${listed(reserved)}`, { reserved });
      const lifecycle = policy.exports.filter((name) => WASI_RENAMED_EXPORTS.has(name));
      if (lifecycle.length > 0) {
        rejected('exports', `${listed(lifecycle)} of a WASI module cannot be called as a plugin export (the sandbox runs _initialize and hs_init at load; _start never)`, {
          lifecycle,
        });
      }
    }

    const memories: MemoryLimits[] = memorySec ? readMemories(wasm, memorySec) : [];
    if (memories.length > 1) rejected('memory', `module defines ${memories.length} memories; only one is supported`);
    const mem = memories[0];
    if (mem === undefined || memorySec === undefined) {
      return { sha256, bytes: wasi ? shimWasi(wasm) : wasm, imports, exports, memory: null };
    }
    if ((mem.flags & 0x02) !== 0) rejected('memory', 'shared memories are not supported');
    if ((mem.flags & 0x04) !== 0) rejected('memory', '64-bit memories are not supported');
    const cap = policy.memoryPages;
    if (mem.initial > cap) {
      rejected('memory', `module's initial memory is ${mem.initial} pages, above the cap of ${cap} pages`, {
        initial_pages: mem.initial,
        cap_pages: cap,
      });
    }
    const rewritten = mem.maximum === null || mem.maximum > cap;
    const maxPages = rewritten ? cap : (mem.maximum as number);
    const bytes = rewritten ? replaceMemorySection(wasm, memorySec, [{ flags: 0x01, initial: mem.initial, maximum: cap }]) : wasm;
    if (rewritten && !Wasm.validate(bytes)) rejected('memory', 'module is invalid after capping its memory');
    return {
      sha256,
      bytes: wasi ? shimWasi(bytes) : bytes,
      imports,
      exports,
      memory: { initialPages: mem.initial, declaredMaxPages: mem.maximum, maxPages, rewritten },
    };
  } catch (e) {
    if (e instanceof WasmFormatError) rejected('format', `module could not be parsed: ${e.message}`);
    throw e;
  }
}

function typeText(t: FuncType): string {
  return `(${t.params.join(', ')}) -> ${t.results.length === 0 ? '()' : t.results.join(', ')}`;
}

function expectedType(sig: string): FuncType {
  const [params = '', results = ''] = sig.split('>');
  const types = (s: string): string[] => [...s].map((c) => (c === 'I' ? 'i64' : 'i32'));
  return { params: types(params), results: types(results) };
}

/**
 * Refuse WASI preview1 imports whose signature is not preview1's: the shim's functions read their
 * arguments as preview1 defines them, so a module declaring other types would misbehave at run
 * time instead of failing here with the import named.
 */
function checkWasiSignatures(wasm: Uint8Array, sections: readonly Section[], imports: readonly ImportEntry[]): void {
  const importSec = sections.find((s) => s.id === SECTION_IMPORT);
  const typeSec = sections.find((s) => s.id === SECTION_TYPE);
  if (importSec === undefined) return;
  const indices = readImportTypeIndices(wasm, importSec);
  let types: (FuncType | null)[];
  try {
    types = typeSec ? readTypes(wasm, typeSec) : [];
  } catch (e) {
    // A type encoding this parser does not know (a future proposal; the module is valid): the
    // shim's functions still only ever trap on unexpected argument types, so load it unchecked.
    if (e instanceof WasmFormatError) return;
    throw e;
  }
  const wrong: string[] = [];
  const names: string[] = [];
  imports.forEach((imp, i) => {
    const sig = imp.module === WASI_NS && imp.kind === 'function' ? WASI_PREVIEW1_SIGNATURES.get(imp.name) : undefined;
    if (sig === undefined) return;
    const want = expectedType(sig);
    const index = indices[i];
    const got = index === null || index === undefined ? null : types[index];
    if (got === null || got === undefined || typeText(got) !== typeText(want)) {
      wrong.push(`${imp.module}.${imp.name}: declared ${got ? typeText(got) : 'a non-function type'}, WASI preview1 defines ${typeText(want)}`);
      names.push(`${imp.module}.${imp.name}`);
    }
  });
  if (wrong.length > 0) rejected('imports', `module imports WASI functions with the wrong signature: ${listed(wrong)}`, { imports: names });
}

/** Rewrite a WASI module for the shim: imports to {@link WASI_SHIM_NS}, lifecycle exports renamed. */
function shimWasi(bytes: Uint8Array): Uint8Array {
  const find = (id: number): Section | undefined => readSections(bytes).find((s) => s.id === id);
  const importSec = find(SECTION_IMPORT);
  if (importSec !== undefined) bytes = replaceSection(bytes, importSec, renameImportModule(bytes, importSec, WASI_NS, WASI_SHIM_NS));
  const exportSec = find(SECTION_EXPORT);
  if (exportSec !== undefined) bytes = replaceSection(bytes, exportSec, renameExports(bytes, exportSec, WASI_RENAMED_EXPORTS));
  if (!Wasm.validate(bytes)) rejected('imports', 'module is invalid after rewriting its WASI imports');
  return bytes;
}
