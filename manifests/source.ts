/**
 * Reading a plugin from where an author or operator put it: a directory holding
 * tyrum.plugin.json, or a packed archive (see archive.ts). Everything is checked before the
 * gateway records or runs anything: the manifest (manifest.ts), that the module's file stays
 * inside the plugin (no links at all), its size, its digest against the manifest, and the
 * module itself (the sandbox's load-time inspection, with the tools' exports).
 */
import { createHash } from 'node:crypto';
import { constants as FS, type Stats } from 'node:fs';
import { lstat, mkdtemp, open, readFile, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import type { PluginManifest } from '../schemas/index.js';
import { TyrumError, isTyrumError } from '../core/errors/index.js';
import { inspectModule, type ModuleReport } from '../sandbox/index.js';
import { DEFAULT_MEMORY_PAGES } from './capabilities.js';
import { parseManifest, type ManifestOptions } from './manifest.js';
import { packArchive, readArchive, writeArchiveContent } from './archive.js';
import { ARCHIVE_MAX_BYTES, MANIFEST_FILE, MANIFEST_MAX_BYTES, WASM_MAX_BYTES } from './limits.js';

/** A plugin read and checked from a directory or an archive: what installation records. */
export interface PluginSource {
  /** The checked manifest (deeply frozen). */
  manifest: PluginManifest;
  /** The manifest file exactly as read (what `manifestSha256` covers). */
  manifestBytes: Buffer;
  /** sha256 of `manifestBytes`, lowercase hex. */
  manifestSha256: string;
  /** The module exactly as shipped (before any memory-cap rewrite). */
  wasmBytes: Buffer;
  /** sha256 of `wasmBytes`, lowercase hex (equal to the manifest's `wasm.sha256`). */
  wasmSha256: string;
  /** The sandbox's load-time inspection of the module (imports, exports, memory). */
  report: ModuleReport;
}

/** Options for reading a plugin. */
export type ReadPluginOptions = ManifestOptions;

/** Digests a caller already trusts (a lockfile's), checked before anything is parsed. */
export interface ExpectedDigests {
  manifestSha256: string;
  wasmSha256: string;
}

/** sha256 of `b`, lowercase hex. */
export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function packageError(message: string, details: Record<string, unknown> = {}): never {
  throw new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', message, details);
}

/**
 * Read `segments` under `root` as a regular file of at most `maxBytes`. Refuses symbolic links
 * anywhere on the way (each parent is checked with lstat, the file is opened with O_NOFOLLOW),
 * special files (opened non-blocking, so a FIFO cannot hang us), and a resolved path that leaves
 * `root`. `label` names the file in messages.
 */
export async function readInside(root: string, segments: readonly string[], maxBytes: number, label: string): Promise<Buffer> {
  let dir = root;
  for (const seg of segments.slice(0, -1)) {
    dir = join(dir, seg);
    let st: Stats;
    try {
      st = await lstat(dir);
    } catch {
      return packageError(`${label}: directory ${JSON.stringify(seg)} not found`, { field: label });
    }
    if (st.isSymbolicLink()) packageError(`${label}: ${JSON.stringify(seg)} is a symbolic link; links are not allowed in a plugin`, { field: label });
    if (!st.isDirectory()) packageError(`${label}: ${JSON.stringify(seg)} is not a directory`, { field: label });
  }
  const file = join(root, ...segments);
  let fh;
  try {
    fh = await open(file, FS.O_RDONLY | (FS.O_NOFOLLOW ?? 0) | (FS.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') packageError(`${label}: file not found`, { field: label });
    if (code === 'ELOOP') packageError(`${label}: is a symbolic link; links are not allowed in a plugin`, { field: label });
    return packageError(`${label}: cannot be opened (${code ?? (e as Error).message})`, { field: label });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) packageError(`${label}: is not a regular file`, { field: label });
    if (st.size > maxBytes) packageError(`${label}: file is ${st.size} bytes, above the ${maxBytes}-byte limit`, { field: label, size: st.size, limit: maxBytes });
    const real = await realpath(file);
    if (!real.startsWith(root + sep)) packageError(`${label}: resolves outside the plugin directory`, { field: label });
    // Read one byte past the size seen: a file growing under us is refused, not truncated.
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > st.size) packageError(`${label}: file changed while being read`, { field: label });
    }
    return buf.subarray(0, n);
  } finally {
    await fh.close();
  }
}

/** Manifests of installed plugins this process has checked, by digest (see {@link checkedManifest}). */
const checkedManifests = new Map<string, PluginManifest>();
/** At most this many are remembered (the oldest is forgotten first). */
const CHECKED_MANIFESTS_MAX = 1024;

/**
 * {@link parseManifest} for an installed plugin's manifest, remembered by its sha256: a plugin's
 * sandbox starts on every first call after an eviction, and the same bytes checked by the same
 * code give the same (deeply frozen) manifest, so only the digest is computed again. The digest
 * is checked by the caller against the pinned one before this is reached.
 */
function checkedManifest(bytes: Buffer, sha256: string, opts: ReadPluginOptions): PluginManifest {
  const key = `${sha256}|${opts.hostApiVersion ?? ''}`;
  const known = checkedManifests.get(key);
  if (known) return known;
  const manifest = parseManifest(bytes, opts);
  if (checkedManifests.size >= CHECKED_MANIFESTS_MAX) checkedManifests.delete(checkedManifests.keys().next().value as string);
  checkedManifests.set(key, manifest);
  return manifest;
}

/**
 * Read and check the plugin in directory `root` (already resolved by realpath). With `expect`,
 * each file's digest must equal the expected one (tampering since install).
 */
export async function readPluginDir(root: string, opts: ReadPluginOptions, expect?: ExpectedDigests & { label: string }): Promise<PluginSource> {
  const manifestBytes = await readInside(root, [MANIFEST_FILE], MANIFEST_MAX_BYTES, MANIFEST_FILE);
  const manifestSha256 = sha256Hex(manifestBytes);
  if (expect && manifestSha256 !== expect.manifestSha256.toLowerCase()) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `${expect.label}: ${MANIFEST_FILE} was modified: expected sha256 ${expect.manifestSha256.toLowerCase()}, file is ${manifestSha256}`, {
      file: MANIFEST_FILE,
      expected: expect.manifestSha256.toLowerCase(),
      actual: manifestSha256,
    });
  }
  const manifest = expect ? checkedManifest(manifestBytes, manifestSha256, opts) : parseManifest(manifestBytes, opts);
  const wasmLabel = `wasm.path ${JSON.stringify(manifest.wasm.path)}`;
  const wasmBytes = await readInside(root, manifest.wasm.path.split('/'), WASM_MAX_BYTES, wasmLabel);
  const wasmSha256 = sha256Hex(wasmBytes);
  if (expect && wasmSha256 !== expect.wasmSha256.toLowerCase()) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `${expect.label}: wasm ${manifest.wasm.path} was modified: expected sha256 ${expect.wasmSha256.toLowerCase()}, file is ${wasmSha256}`, {
      file: manifest.wasm.path,
      expected: expect.wasmSha256.toLowerCase(),
      actual: wasmSha256,
    });
  }
  if (wasmSha256 !== manifest.wasm.sha256) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `wasm sha256 mismatch: manifest says ${manifest.wasm.sha256}, file is ${wasmSha256}`, {
      field: 'wasm.sha256',
      expected: manifest.wasm.sha256,
      actual: wasmSha256,
    });
  }
  const report = inspect(manifest, wasmBytes, wasmSha256, wasmLabel);
  return { manifest, manifestBytes, manifestSha256, wasmBytes, wasmSha256, report };
}

/** The sandbox's load-time checks, with refusals re-worded to name the manifest field. */
function inspect(manifest: PluginManifest, wasm: Uint8Array, sha256: string, label: string): ModuleReport {
  const exports = [...new Set(manifest.contributes.tools.map((t) => t.export))];
  try {
    return inspectModule(wasm, {
      expectedSha256: sha256,
      exports,
      memoryPages: manifest.requests?.memory?.max_pages ?? DEFAULT_MEMORY_PAGES,
      maxModuleBytes: WASM_MAX_BYTES,
    });
  } catch (e) {
    if (!isTyrumError(e)) throw e;
    const details = e.details ?? {};
    if (details.check === 'exports' && Array.isArray(details.missing)) {
      const missing = details.missing as string[];
      const tools = manifest.contributes.tools.flatMap((t, i) => (missing.includes(t.export) ? [`contributes.tools[${i}].export ${JSON.stringify(t.export)}`] : []));
      throw new TyrumError(e.code, `${tools.join(', ')}: the module has no such exported function`, { ...details, field: tools[0] }, { cause: e });
    }
    const hint = details.check === 'memory' ? ' (requests.memory.max_pages sets the cap)' : '';
    throw new TyrumError(e.code, `${label}: ${e.message}${hint}`, { ...details, field: 'wasm.path' }, { cause: e });
  }
}

/**
 * Read a packed plugin (.tgz or .tar bytes): checked entry by entry, extracted into a private
 * temporary directory, read from there as a directory, and the directory removed.
 */
export async function readPluginArchive(bytes: Uint8Array, opts: ReadPluginOptions = {}): Promise<PluginSource> {
  const content = await readArchive(bytes);
  const tmp = await mkdtemp(join(tmpdir(), 'tyrum-plugin-'));
  try {
    await writeArchiveContent(content, tmp);
    return await readPluginDir(await realpath(tmp), opts);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Read and check a plugin from `path`: a directory containing tyrum.plugin.json, or a packed
 * archive file (.tgz, or an uncompressed .tar). Throws a TyrumError naming the field or cause:
 * TYRUM_ERR_MANIFEST_INVALID (syntax, schema, semver, ids, risks, unsafe schemas),
 * TYRUM_ERR_PLUGIN_INCOMPATIBLE (engines.tyrum), TYRUM_ERR_PLUGIN_PACKAGE (files, links, sizes,
 * archive entries), TYRUM_ERR_PLUGIN_INTEGRITY (wasm digest), TYRUM_ERR_SANDBOX_MODULE_REJECTED
 * (imports, missing exports, memory).
 */
export async function readPluginSource(path: string, opts: ReadPluginOptions = {}): Promise<PluginSource> {
  let root: string;
  let st: Stats;
  try {
    root = await realpath(path);
    st = await stat(root);
  } catch (e) {
    return packageError(`${path}: not found (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
  if (st.isDirectory()) return readPluginDir(root, opts);
  if (!st.isFile()) packageError(`${path}: neither a plugin directory nor an archive file`);
  if (st.size > ARCHIVE_MAX_BYTES) packageError(`${path}: archive is ${st.size} bytes, above the ${ARCHIVE_MAX_BYTES}-byte limit`);
  return readPluginArchive(await readFile(root), opts);
}

/**
 * Pack the plugin in directory `dir` into a deterministic .tgz: the manifest at the root and the
 * module at its `wasm.path`, nothing else. The plugin is fully checked first, so a packed
 * archive always reads back with the same digests.
 */
export async function packPlugin(dir: string, opts: ReadPluginOptions = {}): Promise<Buffer> {
  const root = await realpath(dir);
  if (!(await stat(root)).isDirectory()) packageError(`${dir}: not a plugin directory`);
  const src = await readPluginDir(root, opts);
  return packArchive([
    { path: MANIFEST_FILE, data: src.manifestBytes },
    { path: src.manifest.wasm.path, data: src.wasmBytes },
  ]);
}
