/** Small encoders shared by identity, tokens and the protocol. */

/** base64url without padding (RFC 4648 §5). */
export function b64url(buf: Uint8Array): string {
  return Buffer.from(buf).toString('base64url');
}

/** Decode base64url (no padding); returns null when the text is not canonical base64url. */
export function fromB64url(text: string): Buffer | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const buf = Buffer.from(text, 'base64url');
  return buf.toString('base64url') === text ? buf : null;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** RFC 4648 base32, lowercase alphabet a-z2-7, no padding. */
export function base32LowerNoPad(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
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
