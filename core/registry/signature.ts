/**
 * Publisher signatures for packed plugins: the format, and its verification when a plugin is
 * installed. Making keys and signatures is the author's side (sdk/author/signing.ts).
 *
 * A publisher holds an Ed25519 key (`tyrum plugin keygen`: PKCS#8 PEM, mode 0600) and signs each
 * archive it ships (`tyrum plugin sign`), which writes a detached signature `ARCHIVE.sig` beside
 * it:
 *
 *     { "version": 1, "publisher": "<manifest publisher>", "sha256": "<archive sha256, hex>",
 *       "public_key": "<Ed25519 SPKI DER, base64url>", "signature": "<64 bytes, base64url>" }
 *
 * The signature is Ed25519 over {@link signatureMessage}: the domain line
 * `tyrum-plugin-signature/v1` and a newline, then the RFC 8785 canonical JSON of
 * `{ version, publisher, sha256, public_key }`. The archive's digest binds everything inside it
 * (manifest, module, the module's pinned digest); the publisher and key are bound too, so
 * neither can be swapped without the signature failing.
 *
 * Installing an archive ({@link readPluginForInstall}) looks for `ARCHIVE.sig` next to it. A
 * signature that is present is always checked (digest, Ed25519, publisher equal to the
 * manifest's), trusted publishers configured or not. With trusted publishers configured
 * (`trusted_publishers` in config.json), the archive must be signed, and the signing key must be
 * one a trusted publisher of the manifest's `publisher` name holds.
 */
import { createHash, createPublicKey, verify as edVerify, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import type { TrustedPublisher } from '../config/index.js';
import { ARCHIVE_MAX_BYTES, readPluginArchive, readPluginSource, sha256Hex, type PluginSource } from '../../manifests/index.js';

/** Suffix of the detached signature file written beside an archive. */
export const SIGNATURE_SUFFIX = '.sig';
/** First line of every signed message (domain separation from any other Ed25519 use). */
export const SIGNATURE_DOMAIN = 'tyrum-plugin-signature/v1';
/** Largest signature file read. */
const SIGNATURE_MAX_BYTES = 16 * 1024;

/** The detached signature file's content. */
export interface PluginSignature {
  version: 1;
  /** The manifest's `publisher`, exactly. */
  publisher: string;
  /** sha256 of the archive file, lowercase hex. */
  sha256: string;
  /** The signer's Ed25519 public key, SPKI DER in base64url. */
  public_key: string;
  /** Ed25519 signature over {@link signatureMessage}, base64url. */
  signature: string;
}

/** Why an install was refused (`details.signature` of the error). */
export type SignatureRefusal = 'unsigned' | 'malformed' | 'digest_mismatch' | 'bad_signature' | 'publisher_mismatch' | 'untrusted_key' | 'wrong_publisher_key';

function refused(kind: SignatureRefusal, message: string, details: Record<string, unknown> = {}): TyrumError {
  return new TyrumError('TYRUM_ERR_PLUGIN_INTEGRITY', message, { signature: kind, ...details });
}

/** The bytes an Ed25519 signature covers. */
export function signatureMessage(s: Pick<PluginSignature, 'publisher' | 'sha256' | 'public_key'>): Buffer {
  return Buffer.from(`${SIGNATURE_DOMAIN}\n${canonicalJson({ version: 1, publisher: s.publisher, sha256: s.sha256, public_key: s.public_key })}`, 'utf8');
}

/** The SPKI DER (base64url) of an Ed25519 public key. */
export function encodePublicKey(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64url');
}

/** Parse a base64url SPKI Ed25519 public key, or null when it is not one. */
export function decodePublicKey(b64url: string): KeyObject | null {
  if (!/^[A-Za-z0-9_-]{40,200}$/.test(b64url)) return null;
  try {
    const key = createPublicKey({ key: Buffer.from(b64url, 'base64url'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ed25519' ? key : null;
  } catch {
    return null;
  }
}

const SIG_KEYS = ['version', 'publisher', 'sha256', 'public_key', 'signature'] as const;

/** Parse and shape-check a signature file; throws `malformed` naming the problem. */
export function parseSignature(text: string, label: string): PluginSignature {
  const bad = (why: string) => refused('malformed', `${label}: not a valid plugin signature: ${why}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not a JSON object');
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !(SIG_KEYS as readonly string[]).includes(k));
  if (unknown !== undefined) throw bad(`unknown key ${JSON.stringify(unknown.slice(0, 64))}`);
  if (o.version !== 1) throw bad('"version" must be 1');
  if (typeof o.publisher !== 'string' || o.publisher.length === 0 || o.publisher.length > 100) throw bad('"publisher" must be a string of 1-100 characters');
  if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256)) throw bad('"sha256" must be 64 lowercase hex digits');
  if (typeof o.public_key !== 'string' || decodePublicKey(o.public_key) === null) throw bad('"public_key" must be an Ed25519 public key (SPKI DER, base64url)');
  if (typeof o.signature !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(o.signature)) throw bad('"signature" must be 64 bytes in base64url');
  return { version: 1, publisher: o.publisher, sha256: o.sha256, public_key: o.public_key, signature: o.signature };
}

/**
 * Check that `sig` covers exactly `archive` and verifies under the key it names. This proves
 * integrity and who holds the key, not that the key is trusted (see {@link checkTrust}).
 */
export function verifyArchiveSignature(archive: Uint8Array, sig: PluginSignature, label: string, archiveLabel: string): void {
  const actual = sha256Hex(archive);
  if (actual !== sig.sha256) {
    throw refused(
      'digest_mismatch',
      `${label} does not match ${archiveLabel}: the signature covers sha256 ${sig.sha256}, the archive is ${actual} (the archive changed after signing, or the signature belongs to another archive)`,
      { expected: sig.sha256, actual },
    );
  }
  const key = decodePublicKey(sig.public_key);
  let ok = false;
  try {
    ok = key !== null && edVerify(null, signatureMessage(sig), key, Buffer.from(sig.signature, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) throw refused('bad_signature', `${label}: the signature does not verify under the public key it names (it was altered, or not made with that key)`);
}

function trustedNames(trusted: readonly TrustedPublisher[]): string {
  return [...new Set(trusted.map((t) => t.name))].join(', ');
}

/** Refuses a signature whose key is not held by a trusted publisher of the manifest's name. */
export function checkTrust(pluginId: string, publisher: string, sig: PluginSignature, trusted: readonly TrustedPublisher[]): void {
  if (trusted.length === 0) return;
  const holders = trusted.filter((t) => t.publicKey === sig.public_key);
  if (holders.some((t) => t.name === publisher)) return;
  if (holders.length > 0) {
    throw refused(
      'wrong_publisher_key',
      `plugin ${pluginId} names publisher "${publisher}" but is signed with the key of trusted publisher "${holders[0]!.name}"; a publisher's key is trusted only for its own plugins`,
      { publisher, signer: holders[0]!.name },
    );
  }
  throw refused('untrusted_key', `plugin ${pluginId} is signed by a key this gateway does not trust (${sig.public_key}); this gateway accepts only plugins signed by: ${trustedNames(trusted)}`, {
    publisher,
    public_key: sig.public_key,
  });
}

/** A plugin read for installation, with the signature that vouched for it (null: unsigned). */
export interface SignedPluginSource {
  source: PluginSource;
  signature: PluginSignature | null;
}

async function readSignatureFile(path: string): Promise<string | null> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw refused('malformed', `${path}: not a regular file`);
    size = st.size;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return null;
    throw e;
  }
  if (size > SIGNATURE_MAX_BYTES) throw refused('malformed', `${path}: ${size} bytes, above the ${SIGNATURE_MAX_BYTES}-byte limit of a signature file`);
  return readFile(path, 'utf8');
}

/**
 * Read a plugin for installation from a directory or archive, enforcing signatures: an
 * archive's `ARCHIVE.sig`, when present, must verify (digest, Ed25519, publisher); with
 * `trusted` non-empty, the plugin must be a signed archive whose key a trusted publisher of the
 * manifest's `publisher` name holds. The archive's bytes are read once: what was verified is
 * what is installed. Refusals are TYRUM_ERR_PLUGIN_INTEGRITY with `details.signature`.
 */
export async function readPluginForInstall(path: string, trusted: readonly TrustedPublisher[] = []): Promise<SignedPluginSource> {
  let isFile = false;
  try {
    isFile = (await stat(path)).isFile();
  } catch {
    // readPluginSource words the refusal (not found, not a plugin).
  }
  if (!isFile) {
    const source = await readPluginSource(path);
    if (trusted.length > 0) {
      throw refused(
        'unsigned',
        `plugin ${source.manifest.id} is not signed; this gateway accepts only plugins signed by: ${trustedNames(trusted)} (a directory carries no signature: install the archive made by tyrum plugin pack and tyrum plugin sign)`,
        { trusted: trusted.map((t) => t.name) },
      );
    }
    return { source, signature: null };
  }
  const sigPath = `${path}${SIGNATURE_SUFFIX}`;
  const sigText = await readSignatureFile(sigPath);
  // Read once: the bytes verified are the bytes installed.
  const bytes = await readArchiveFile(path);
  if (sigText === null) {
    const source = await readPluginArchive(bytes);
    if (trusted.length > 0) {
      throw refused('unsigned', `plugin ${source.manifest.id} is not signed; this gateway accepts only plugins signed by: ${trustedNames(trusted)} (expected a signature at ${sigPath})`, {
        trusted: trusted.map((t) => t.name),
      });
    }
    return { source, signature: null };
  }
  const sig = parseSignature(sigText, sigPath);
  // The signature is checked before the archive is unpacked: an unauthenticated archive is never parsed.
  verifyArchiveSignature(bytes, sig, sigPath, basename(path));
  const source = await readPluginArchive(bytes);
  const m = source.manifest;
  if (sig.publisher !== m.publisher) {
    throw refused('publisher_mismatch', `${sigPath}: the signature is for publisher "${sig.publisher}" but plugin ${m.id}'s manifest names publisher "${m.publisher}"`, {
      signed: sig.publisher,
      manifest: m.publisher,
    });
  }
  checkTrust(m.id, m.publisher, sig, trusted);
  return { source, signature: sig };
}

async function readArchiveFile(path: string): Promise<Buffer> {
  const st = await stat(path);
  if (st.size > ARCHIVE_MAX_BYTES) throw new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `${path}: archive is ${st.size} bytes, above the ${ARCHIVE_MAX_BYTES}-byte limit`);
  return readFile(path);
}

/** Short, stable fingerprint of a public key for display. */
export function keyFingerprint(publicKey: string): string {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64url')).digest('hex').slice(0, 16);
}
