/**
 * Device identity (PROTOCOL.md "Handshake"): Ed25519 keys, the device_id derivation and the
 * proof transcript. Pure functions over node:crypto; no I/O.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { base32LowerNoPad, fromB64url } from '../util/encoding.js';

/** dev_ + base32 (lowercase, no padding) of sha256 over the DER SPKI bytes. */
export function deriveDeviceId(spkiDer: Uint8Array): string {
  return 'dev_' + base32LowerNoPad(createHash('sha256').update(spkiDer).digest());
}

/** Device keys parsed recently, by their exact text (a reconnecting device skips the parse and re-export). */
const PARSED_KEYS_MAX = 1024;
const parsedKeys = new Map<string, { key: KeyObject; der: Buffer }>();

/**
 * Parses a base64url DER SPKI Ed25519 public key; null for anything else. Accepted keys are
 * remembered by their text (at most {@link PARSED_KEYS_MAX}, oldest first out): the same text
 * always names the same key, so this is a pure function either way. Refusals are not remembered.
 */
export function parseDevicePubkey(b64: string): { key: KeyObject; der: Buffer } | null {
  const known = parsedKeys.get(b64);
  if (known !== undefined) return known;
  const parsed = parseUncached(b64);
  if (parsed === null) return null;
  if (parsedKeys.size >= PARSED_KEYS_MAX) parsedKeys.delete(parsedKeys.keys().next().value!);
  parsedKeys.set(b64, parsed);
  return parsed;
}

function parseUncached(b64: string): { key: KeyObject; der: Buffer } | null {
  const der = fromB64url(b64);
  if (!der || der.length === 0) return null;
  try {
    const key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') return null;
    // Re-export and compare, so non-canonical encodings of the same key are refused: the
    // device_id must name exactly one byte string.
    const canonical = key.export({ format: 'der', type: 'spki' });
    return canonical.equals(der) ? { key, der } : null;
  } catch {
    return null;
  }
}

export interface TranscriptFields {
  protocol_rev: number;
  role: string;
  device_id: string;
  connection_id: string;
  challenge: string;
}

/** The exact UTF-8 text a device signs; every line ends with "\n". */
export function proofTranscript(f: TranscriptFields): Buffer {
  return Buffer.from(
    `tyrum-connect-proof\nprotocol_rev=${f.protocol_rev}\nrole=${f.role}\ndevice_id=${f.device_id}\nconnection_id=${f.connection_id}\nchallenge=${f.challenge}\n`,
    'utf8',
  );
}

/** Verifies a base64url Ed25519 signature over the transcript. */
export function verifyProof(key: KeyObject, fields: TranscriptFields, proofB64: string): boolean {
  const sig = fromB64url(proofB64);
  if (!sig || sig.length !== 64) return false;
  try {
    return cryptoVerify(null, proofTranscript(fields), key, sig);
  } catch {
    return false;
  }
}
