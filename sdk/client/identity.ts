/**
 * Device identity: an Ed25519 key pair whose public half names the device.
 *
 * The gateway recomputes `device_id` from `pubkey` and checks the handshake proof, so the
 * derivations here must match PROTOCOL.md exactly; see "Handshake".
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { b64url, base32LowerNoPad } from './encoding.js';
import type { DeviceIdentity } from './transcript.js';
import { TyrumDeviceKeyError } from './errors.js';

export { proofTranscript, UUID_RE, type DeviceIdentity, type ProofFields } from './transcript.js';

/** PEM files are small; a larger file is not a key and is not worth reading into memory. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

/**
 * Load the device's Ed25519 private key from a PKCS8 PEM file, creating it (mode 0600, parent
 * directories 0700 when created) if it does not exist.
 *
 * An existing file that is group- or world-accessible, not a regular file, or owned by another
 * user is refused rather than silently fixed: a key that others could read may already be
 * copied, and the device it names should be treated as compromised.
 */
export async function loadOrCreateDeviceKey(path: string): Promise<KeyObject> {
  try {
    return await loadDeviceKey(path);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
  try {
    return await createDeviceKey(path);
  } catch (e) {
    // Another process created the key between our read and our exclusive create: use theirs.
    if (isErrno(e, 'EEXIST')) return loadDeviceKey(path);
    throw e;
  }
}

async function loadDeviceKey(path: string): Promise<KeyObject> {
  // O_NOFOLLOW: a key path that is a symlink could point anywhere (even at a file an attacker
  // controls); checking the opened descriptor with fstat avoids a check-then-open race.
  const handle = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0)).catch((e: unknown) => {
    if (isErrno(e, 'ENOENT')) throw e;
    if (isErrno(e, 'ELOOP')) throw new TyrumDeviceKeyError(`device key ${path} is a symlink; refusing to use it`, path);
    throw new TyrumDeviceKeyError(`cannot open device key ${path}: ${(e as Error).message}`, path, { cause: e });
  });
  let pem: string;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new TyrumDeviceKeyError(`device key ${path} is not a regular file`, path);
    // Windows has no POSIX mode bits; the ACL of the user's profile directory protects the file.
    if (process.platform !== 'win32') {
      if ((st.mode & 0o077) !== 0) {
        throw new TyrumDeviceKeyError(
          `device key ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; it must not be ` +
            `readable or writable by group or others (chmod 600 it, or delete it and pair this device again)`,
          path,
        );
      }
      const uid = process.getuid?.();
      if (uid !== undefined && st.uid !== uid) {
        throw new TyrumDeviceKeyError(`device key ${path} is owned by uid ${st.uid}, not by the current user (${uid})`, path);
      }
    }
    if (st.size > MAX_KEY_FILE_BYTES) throw new TyrumDeviceKeyError(`device key ${path} is too large to be a PEM key`, path);
    pem = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new TyrumDeviceKeyError(`device key ${path} is not a valid PEM private key`, path, { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new TyrumDeviceKeyError(`device key ${path} is a ${key.asymmetricKeyType ?? 'unknown'} key; Ed25519 is required`, path);
  }
  return key;
}

async function createDeviceKey(path: string): Promise<KeyObject> {
  // `mode` applies to every directory mkdir creates; existing directories are left alone.
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  // 'wx': never overwrite a key that appeared meanwhile (it may already be paired).
  const handle = await open(path, 'wx', 0o600);
  try {
    // The umask can only remove bits, but set the mode explicitly so it is exactly 0600.
    await handle.chmod(0o600);
    await handle.writeFile(pem, 'utf8');
    // A key lost in a crash would orphan the device's pairing; make it durable before use.
    await handle.sync();
  } finally {
    await handle.close();
  }
  return privateKey;
}

/**
 * Derive `{ device_id, pubkey }` from a device key (private or public Ed25519 KeyObject).
 */
export function deviceIdentity(key: KeyObject): DeviceIdentity {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new TypeError('device key must be Ed25519');
  const der = pub.export({ type: 'spki', format: 'der' });
  return {
    device_id: 'dev_' + base32LowerNoPad(createHash('sha256').update(der).digest()),
    pubkey: b64url(der),
  };
}

/** Sign a proof transcript with the device's Ed25519 private key; returns base64url, no padding. */
export function signProof(key: KeyObject, transcript: string): string {
  // Ed25519 hashes internally, so the algorithm argument must be null.
  return b64url(sign(null, Buffer.from(transcript, 'utf8'), key));
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as NodeJS.ErrnoException).code === code;
}
