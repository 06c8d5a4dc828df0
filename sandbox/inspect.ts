/**
 * Load-time checks of a plugin module, run on the main thread before anything is instantiated:
 * digest, validity, import allow-list, declared exports and the memory cap (rewritten into the
 * module). Pure and synchronous; no part of the module runs.
 */
import { createHash } from 'node:crypto';
import { sandboxError } from './errors.js';
import { isProvidedImport } from './host-abi.js';
import { Wasm } from './wasm-api.js';
import {
  readExports,
  readImports,
  readMemories,
  readSections,
  replaceMemorySection,
  SECTION_EXPORT,
  SECTION_IMPORT,
  SECTION_MEMORY,
  WasmFormatError,
  type ExportEntry,
  type ImportEntry,
  type MemoryLimits,
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
  if (imp.module.startsWith('wasi_')) {
    return `${what}: WASI is not available to plugins (no file system, clock, random or environment)`;
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

    const fnExports = new Set(exports.filter((e) => e.kind === 'function').map((e) => e.name));
    const missing = policy.exports.filter((name) => !fnExports.has(name));
    if (missing.length > 0) {
      rejected('exports', `module does not export the declared function(s) ${listed(missing)}`, { missing });
    }

    const memories: MemoryLimits[] = memorySec ? readMemories(wasm, memorySec) : [];
    if (memories.length > 1) rejected('memory', `module defines ${memories.length} memories; only one is supported`);
    const mem = memories[0];
    if (mem === undefined || memorySec === undefined) {
      return { sha256, bytes: wasm, imports, exports, memory: null };
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
      bytes,
      imports,
      exports,
      memory: { initialPages: mem.initial, declaredMaxPages: mem.maximum, maxPages, rewritten },
    };
  } catch (e) {
    if (e instanceof WasmFormatError) rejected('format', `module could not be parsed: ${e.message}`);
    throw e;
  }
}
