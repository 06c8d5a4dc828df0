/**
 * A plugin's files in the gateway home: `<home>/plugins/<id>/<version>/` holds the manifest
 * exactly as read (tyrum.plugin.json) and the module at the manifest's `wasm.path`, so an
 * installed version is itself a valid plugin directory. Directories are 0700, files 0600.
 * A version is written to a temporary directory beside it and renamed into place, so a crash
 * never leaves a half-written version; removal renames away first for the same reason.
 *
 * Which versions are installed, enabled and granted is the registry's business (the store);
 * these functions only keep the files and prove, on every load, that they are the ones recorded.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, realpath, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import semver from 'semver';
import { PLUGIN_ID_PATTERN, type PluginManifest } from '../schemas/index.js';
import { TyrumError, isTyrumError } from '../core/errors/index.js';
import { readJson } from './json.js';
import { MANIFEST_FILE, MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH, WASM_MAX_BYTES } from './limits.js';
import { readInside, readPluginDir, sha256Hex, type ExpectedDigests, type PluginSource, type ReadPluginOptions } from './source.js';

/** Where an installed version's files are, and their digests (what a lockfile records). */
export interface InstalledPluginFiles {
  id: string;
  version: string;
  /** `<home>/plugins/<id>/<version>` */
  dir: string;
  manifestPath: string;
  wasmPath: string;
  manifestSha256: string;
  wasmSha256: string;
  /** False when the identical version was already installed (nothing was written). */
  created: boolean;
}

const ID = new RegExp(PLUGIN_ID_PATTERN);

/** The directory holding every version of plugin `id`. */
export function pluginFilesDir(home: string, id: string): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `not a plugin id: ${JSON.stringify(String(id).slice(0, 80))}`);
  return join(home, 'plugins', id);
}

/** The directory of one installed version. */
export function pluginVersionDir(home: string, id: string, version: string): string {
  const base = pluginFilesDir(home, id);
  // Canonical semver only: the version becomes a directory name.
  if (typeof version !== 'string' || semver.valid(version) !== version) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `not a canonical semantic version: ${JSON.stringify(String(version).slice(0, 80))}`);
  }
  return join(base, version);
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return false;
    throw e;
  }
}

/** Write `data` to a new file with mode 0600 and flush it to disk. */
async function writeDurable(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory, so a rename or new entry in it survives a power cut. */
async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Refuse a source object whose parts do not belong together (e.g. assembled by hand). */
function checkConsistent(source: PluginSource): PluginManifest {
  const m = source.manifest;
  if (sha256Hex(source.manifestBytes) !== source.manifestSha256 || sha256Hex(source.wasmBytes) !== source.wasmSha256 || m.wasm.sha256 !== source.wasmSha256) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `plugin source for ${m.id}@${m.version}: bytes do not match their digests`);
  }
  let parsed: Partial<PluginManifest>;
  try {
    parsed = readJson(new TextDecoder('utf-8', { fatal: true }).decode(source.manifestBytes), { maxDepth: MANIFEST_MAX_DEPTH }) as Partial<PluginManifest>;
  } catch {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `plugin source for ${m.id}@${m.version}: manifestBytes is not the manifest`);
  }
  if (parsed.id !== m.id || parsed.version !== m.version || parsed.wasm?.path !== m.wasm.path || parsed.wasm?.sha256 !== m.wasm.sha256) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `plugin source for ${m.id}@${m.version}: manifestBytes and manifest disagree`);
  }
  return m;
}

/**
 * Copy a checked plugin (from {@link readPluginSource}) into `<home>/plugins/<id>/<version>/`.
 * Installing the identical version again is a no-op (`created: false`); the same id and version
 * with different content is refused with TYRUM_ERR_PLUGIN_VERSION_CONFLICT.
 */
export async function installPluginFiles(home: string, source: PluginSource): Promise<InstalledPluginFiles> {
  const m = checkConsistent(source);
  const dir = pluginVersionDir(home, m.id, m.version);
  const base = dirname(dir);
  const result = (created: boolean): InstalledPluginFiles => ({
    id: m.id,
    version: m.version,
    dir,
    manifestPath: join(dir, MANIFEST_FILE),
    wasmPath: join(dir, ...m.wasm.path.split('/')),
    manifestSha256: source.manifestSha256,
    wasmSha256: source.wasmSha256,
    created,
  });

  await mkdir(join(home, 'plugins'), { recursive: true, mode: 0o700 });
  await mkdir(base, { recursive: true, mode: 0o700 });
  if (await exists(dir)) {
    await checkExisting(dir, m, source);
    return result(false);
  }
  // Version directory names never start with '.', so temporaries cannot collide with them.
  const tmp = await mkdtemp(join(base, '.tmp-'));
  try {
    await writeDurable(join(tmp, MANIFEST_FILE), source.manifestBytes);
    const segments = m.wasm.path.split('/');
    if (segments.length > 1) await mkdir(join(tmp, ...segments.slice(0, -1)), { recursive: true, mode: 0o700 });
    await writeDurable(join(tmp, ...segments), source.wasmBytes);
    for (let i = segments.length - 1; i >= 1; i--) await syncDir(join(tmp, ...segments.slice(0, i)));
    await syncDir(tmp);
    try {
      await rename(tmp, dir);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // Someone installed the same version meanwhile: theirs stands if it is identical.
      if (code === 'EEXIST' || code === 'ENOTEMPTY') {
        await checkExisting(dir, m, source);
        return result(false);
      }
      throw e;
    }
    await syncDir(base);
    return result(true);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Refuse unless the version already at `dir` has exactly the digests of `source`. */
async function checkExisting(dir: string, m: PluginManifest, source: PluginSource): Promise<void> {
  const label = `${m.id}@${m.version}`;
  const conflict = (why: string) =>
    new TyrumError('TYRUM_ERR_PLUGIN_VERSION_CONFLICT', `${label} is already installed with different content (${why}); publish it under a new version`, {
      id: m.id,
      version: m.version,
    });
  let manifestSha: string;
  let wasmSha: string;
  try {
    const root = await realpath(dir);
    manifestSha = sha256Hex(await readInside(root, [MANIFEST_FILE], MANIFEST_MAX_BYTES, MANIFEST_FILE));
    wasmSha = sha256Hex(await readInside(root, m.wasm.path.split('/'), WASM_MAX_BYTES, m.wasm.path));
  } catch (e) {
    if (isTyrumError(e)) throw conflict(`the installed copy is unreadable or incomplete: ${e.message}`);
    throw e;
  }
  if (manifestSha !== source.manifestSha256) throw conflict(`manifest sha256 ${manifestSha} installed, ${source.manifestSha256} offered`);
  if (wasmSha !== source.wasmSha256) throw conflict(`wasm sha256 ${wasmSha} installed, ${source.wasmSha256} offered`);
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Re-read an installed version before the gateway loads it, proving both files are the ones
 * recorded at install (`expected`, from the lockfile): a changed file is refused with
 * TYRUM_ERR_PLUGIN_INTEGRITY naming the file, the expected and the actual digest. The manifest
 * is checked again in full, including `engines.tyrum` against this gateway's host API (which may
 * have changed since install), and the module is inspected again.
 */
export async function loadInstalledPlugin(home: string, id: string, version: string, expected: ExpectedDigests, opts: ReadPluginOptions = {}): Promise<PluginSource> {
  const dir = pluginVersionDir(home, id, version);
  const label = `${id}@${version}`;
  if (!SHA256_HEX.test(String(expected?.manifestSha256)) || !SHA256_HEX.test(String(expected?.wasmSha256))) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${label}: expected digests must be 64 lowercase hex digits`);
  }
  let root: string;
  try {
    const st = await lstat(dir);
    if (!st.isDirectory()) throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `${label}: ${dir} is not a directory`);
    root = await realpath(dir);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new TyrumError('TYRUM_ERR_NOT_FOUND', `${label} is not installed (no files at ${dir})`, { id, version });
    throw e;
  }
  const src = await readPluginDir(root, opts, { ...expected, label });
  if (src.manifest.id !== id || src.manifest.version !== version) {
    throw new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', `${label}: the installed manifest names ${src.manifest.id}@${src.manifest.version}`);
  }
  return src;
}

/**
 * Remove the files of plugin `id`: one version, or every version when `version` is omitted.
 * Returns false when there was nothing to remove. The directory is renamed away before it is
 * deleted, so a crash cannot leave a partly deleted version that looks installed.
 */
export async function removePluginFiles(home: string, id: string, version?: string): Promise<boolean> {
  const target = version === undefined ? pluginFilesDir(home, id) : pluginVersionDir(home, id, version);
  if (!(await exists(target))) return false;
  const trash = join(home, 'plugins', `.trash-${randomBytes(8).toString('hex')}`);
  await rename(target, trash);
  await syncDir(dirname(target));
  await rm(trash, { recursive: true, force: true });
  if (version !== undefined) {
    // The last version gone: drop the plugin's directory too (ignored when others remain).
    await rmdir(dirname(target)).catch(() => undefined);
  }
  return true;
}
