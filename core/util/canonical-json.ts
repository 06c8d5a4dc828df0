/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * Used wherever a hash must not depend on key order or whitespace: audit entries, approval
 * bindings, tool-definition hashes. Numbers use ECMAScript serialization (what JSON.stringify
 * does), strings JSON.stringify's escaping, object keys sorted by UTF-16 code units.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
    return JSON.stringify(value);
  }
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) {
    return '[' + value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',') + ']';
  }
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    // Default sort compares UTF-16 code units, which is exactly what RFC 8785 asks for.
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k])).join(',') + '}';
  }
  throw new TypeError(`canonicalJson: unsupported type ${typeof value}`);
}
