/**
 * Small encoders for the client SDK.
 *
 * Copied from core/util/encoding.ts on purpose: the SDK ships to client authors on its own and
 * may depend only on `schemas/`, node built-ins and `ws`, never on the gateway's core. Keep the
 * two copies identical in behaviour (the device_id derivation depends on it).
 */

/** base64url without padding (RFC 4648 §5). */
export function b64url(buf: Uint8Array): string {
  return Buffer.from(buf).toString('base64url');
}

/** Decode base64url (no padding); returns null when the text is not canonical base64url. */
export function fromB64url(text: string): Buffer | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const buf = Buffer.from(text, 'base64url');
  // Round-tripping rejects non-canonical trailing bits, so one value has exactly one spelling.
  return buf.toString('base64url') === text ? buf : null;
}

export { base32LowerNoPad } from './transcript.js';
