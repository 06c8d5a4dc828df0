/**
 * The browser-safe part of the handshake (PROTOCOL.md "Handshake"): the identity shape, the
 * proof transcript and the base32 used by device ids. No Node built-ins: the operator web UI
 * (ui/) imports this module, together with frames.ts, errors.ts, backoff.ts and lru.ts, so the
 * browser client signs exactly the transcript the Node client signs.
 */

/** The identity a device presents in `connect.init`. */
export interface DeviceIdentity {
  /** `dev_` + base32 (lowercase, no padding) of sha256 over the DER SPKI public key. */
  device_id: string;
  /** Ed25519 public key, DER SPKI, base64url without padding. */
  pubkey: string;
}

/** The fields the handshake proof signs, in PROTOCOL.md names. */
export interface ProofFields {
  protocol_rev: number;
  role: 'client' | 'node';
  device_id: string;
  connection_id: string;
  challenge: string;
}

/** RFC 4122 textual form, any version; case-insensitive because UUIDs are. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Build the exact UTF-8 transcript the handshake proof signs (PROTOCOL.md, "Handshake"):
 * six lines, each ending with `\n`.
 *
 * Throws if a field could smuggle extra lines or is not of the documented shape: the
 * challenge and connection_id come from the gateway, and signing attacker-chosen line breaks
 * would let a hostile server obtain a signature over a different transcript.
 */
export function proofTranscript(fields: ProofFields): string {
  const { protocol_rev, role, device_id, connection_id, challenge } = fields;
  if (!Number.isSafeInteger(protocol_rev) || protocol_rev < 1) throw new TypeError('protocol_rev must be a positive integer');
  if (role !== 'client' && role !== 'node') throw new TypeError('role must be "client" or "node"');
  if (!/^dev_[a-z2-7]+$/.test(device_id)) throw new TypeError('device_id must be dev_ followed by base32 (a-z2-7)');
  if (!UUID_RE.test(connection_id)) throw new TypeError('connection_id must be a UUID');
  if (!/^[A-Za-z0-9_-]+$/.test(challenge)) throw new TypeError('challenge must be base64url without padding');
  return (
    'tyrum-connect-proof\n' +
    `protocol_rev=${protocol_rev}\n` +
    `role=${role}\n` +
    `device_id=${device_id}\n` +
    `connection_id=${connection_id}\n` +
    `challenge=${challenge}\n`
  );
}


const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32, lowercase alphabet a-z2-7, no padding (the device_id encoding). */
export function base32LowerNoPad(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
    // Only the low `bits` bits matter; JS bitwise ops truncate to 32 bits, which keeps them.
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}
