/**
 * What an artifact's metadata may say: a media type (RFC 6838 type/subtype, optional RFC 9110
 * parameters) and a display name (sanitised to one harmless file name). Both end up in HTTP
 * headers of `GET /artifacts/:id`, so nothing here may carry a line break or a quote unescaped.
 */
import { TyrumError } from '../errors/index.js';

/** RFC 6838 section 4.2 restricted-name. */
const RESTRICTED_NAME = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** RFC 9110 token (a parameter name, or an unquoted value). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 9110 quoted-string, printable ASCII only (no obs-text). */
const QUOTED = /^"(?:[\t !#-[\]-~]|\\[\t !-~])*"$/;

export const MEDIA_TYPE_MAX_LENGTH = 255;
export const NAME_MAX_BYTES = 255;

/**
 * The media type in canonical form (type, subtype and parameter names lower case; no spaces
 * around separators), or TYRUM_ERR_ARTIFACT_MEDIA_TYPE naming what is wrong.
 */
export function normalizeMediaType(value: unknown): string {
  const bad = (why: string) => new TyrumError('TYRUM_ERR_ARTIFACT_MEDIA_TYPE', `media type ${JSON.stringify(typeof value === 'string' ? value.slice(0, 100) : value)} is not valid: ${why}`, { reason: why });
  if (typeof value !== 'string') throw bad('not a string');
  if (value.length === 0 || value.length > MEDIA_TYPE_MAX_LENGTH) throw bad(`length must be 1-${MEDIA_TYPE_MAX_LENGTH}`);
  const [essence, ...params] = value.split(';');
  const slash = essence!.trim().split('/');
  if (slash.length !== 2) throw bad('expected type/subtype');
  const [type, subtype] = slash as [string, string];
  if (!RESTRICTED_NAME.test(type) || !RESTRICTED_NAME.test(subtype)) throw bad('type and subtype must be RFC 6838 names');
  const out = [`${type.toLowerCase()}/${subtype.toLowerCase()}`];
  for (const raw of params) {
    const p = raw.trim();
    const eq = p.indexOf('=');
    if (eq <= 0) throw bad('a parameter must be name=value');
    const name = p.slice(0, eq);
    const v = p.slice(eq + 1);
    if (!TOKEN.test(name)) throw bad('a parameter name must be a token');
    if (!TOKEN.test(v) && !QUOTED.test(v)) throw bad('a parameter value must be a token or a quoted string');
    out.push(`${name.toLowerCase()}=${v}`);
  }
  return out.join('; ');
}

/**
 * A display name reduced to one file name: the last path component, control and path characters
 * replaced, at most NAME_MAX_BYTES of UTF-8; null when nothing usable is left (or none given).
 */
export function sanitizeName(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new TyrumError('TYRUM_ERR_ARTIFACT_INVALID', 'an artifact name must be a string', { reason: 'name' });
  const last = value.split(/[/\\]/).pop() ?? '';
  // Control characters (C0, DEL, C1), quotes and the characters Windows refuses in file names.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
  let name = last.normalize('NFC').replace(/[\u0000-\u001f\u007f-\u009f"*:<>?|\u2028\u2029]/g, '_').trim();
  name = name.replace(/^\.+/, (dots) => '_'.repeat(dots.length));
  while (Buffer.byteLength(name) > NAME_MAX_BYTES) name = [...name].slice(0, -1).join('');
  return name.length === 0 ? null : name;
}

/**
 * `Content-Disposition: attachment` with the name as an ASCII fallback and, when it is not plain
 * ASCII, as RFC 8187 UTF-8 (`filename*`). Without a name: `attachment` alone.
 */
export function contentDisposition(name: string | null, fallback: string): string {
  const n = name ?? fallback;
  const ascii = n.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  if (ascii === n) return `attachment; filename="${ascii}"`;
  const encoded = encodeURIComponent(n).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
