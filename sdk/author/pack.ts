/**
 * The author's shipping steps, as functions the CLI calls:
 *
 * - {@link packToFile}: the plugin directory → one deterministic `<id>-<version>.tgz` (manifest at
 *   the root, module at its `wasm.path`; packPlugin checks everything the gateway checks first);
 * - {@link createKeyFile}: a new Ed25519 publisher key, PKCS#8 PEM, mode 0600, never overwriting;
 * - {@link signArchiveFile}: `ARCHIVE.sig` beside the archive (core/registry/signature.ts has the format).
 */
import { constants as FS } from 'node:fs';
import { chmod, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { TyrumError } from '../../core/errors/index.js';
import { packPlugin, readPluginArchive, sha256Hex, ARCHIVE_MAX_BYTES } from '../../manifests/index.js';
import { SIGNATURE_SUFFIX, type PluginSignature } from '../../core/registry/signature.js';
import { generatePublisherKey, loadPublisherKey, signArchive } from './signing.js';

export interface PackResult {
  id: string;
  version: string;
  publisher: string;
  path: string;
  sha256: string;
  bytes: number;
}

/** Write `bytes` to `path` through a temporary file and a rename (no half-written archive). */
async function writeAtomic(path: string, bytes: Uint8Array | string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${Date.now().toString(36)}-${process.pid}.tmp`);
  try {
    await writeFile(tmp, bytes, { mode, flag: 'wx' });
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${path}: cannot be written (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
}

/**
 * Pack the plugin in `dir` into `out` (default `<id>-<version>.tgz` in `outDir`, itself the
 * current directory by default). Packing the same files always gives the same bytes.
 */
export async function packToFile(dir: string, opts: { out?: string; outDir?: string } = {}): Promise<PackResult> {
  const bytes = await packPlugin(dir);
  // Read back exactly as an install would: the archive is valid by construction, this names what is in it.
  const src = await readPluginArchive(bytes);
  const m = src.manifest;
  const path = resolve(opts.out ?? join(opts.outDir ?? process.cwd(), `${m.id}-${m.version}.tgz`));
  await writeAtomic(path, bytes, 0o644);
  return { id: m.id, version: m.version, publisher: m.publisher, path, sha256: sha256Hex(bytes), bytes: bytes.byteLength };
}

/** Create a publisher key at `path` (PKCS#8 PEM, 0600); refuses to replace an existing file. */
export async function createKeyFile(path: string): Promise<{ path: string; publicKey: string }> {
  const abs = resolve(path);
  const { privateKeyPem, publicKey } = generatePublisherKey();
  let fh;
  try {
    fh = await open(abs, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | (FS.O_NOFOLLOW ?? 0), 0o600);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EEXIST') throw new TyrumError('TYRUM_ERR_CONFLICT', `${path} already exists; refusing to overwrite a key (choose another --out, or remove it yourself)`);
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${path}: cannot create the key file (${code ?? (e as Error).message})`);
  }
  try {
    await fh.writeFile(privateKeyPem);
    await fh.chmod(0o600); // whatever the umask did
  } finally {
    await fh.close();
  }
  return { path: abs, publicKey };
}

export interface SignResult {
  id: string;
  version: string;
  /** The archive's sha256 (what the signature covers). */
  sha256: string;
  signaturePath: string;
  signature: PluginSignature;
  /** True when the key file can be read by group or others. */
  keyTooOpen: boolean;
}

/**
 * Sign the archive at `archivePath` with the key in `keyFile`, writing `ARCHIVE.sig`. The
 * archive is fully checked first (an archive the gateway would refuse is not signed), and the
 * publisher is the one its manifest names.
 */
export async function signArchiveFile(archivePath: string, keyFile: string): Promise<SignResult> {
  const st = await stat(archivePath).catch(() => null);
  if (st === null || !st.isFile()) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${archivePath}: no such archive (make one with tyrum plugin pack)`);
  if (st.size > ARCHIVE_MAX_BYTES) throw new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `${archivePath}: archive is ${st.size} bytes, above the ${ARCHIVE_MAX_BYTES}-byte limit`);
  let keyText: Buffer;
  let keyMode: number;
  try {
    keyMode = (await stat(keyFile)).mode;
    keyText = await readFile(keyFile);
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${keyFile}: cannot read the key (${(e as { code?: string }).code ?? (e as Error).message})`);
  }
  const key = loadPublisherKey(keyText, keyFile);
  const bytes = await readFile(archivePath);
  const src = await readPluginArchive(bytes);
  const signature = signArchive(bytes, src.manifest.publisher, key);
  const signaturePath = `${archivePath}${SIGNATURE_SUFFIX}`;
  await writeAtomic(signaturePath, JSON.stringify(signature, null, 2) + '\n', 0o644);
  return {
    id: src.manifest.id,
    version: src.manifest.version,
    sha256: signature.sha256,
    signaturePath: resolve(signaturePath),
    signature,
    keyTooOpen: (keyMode & 0o077) !== 0,
  };
}
