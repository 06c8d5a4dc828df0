/**
 * The store keeps times as epoch milliseconds; the wire speaks ISO-8601. This converts every
 * `*_at` member holding a number (deeply, in plain objects and arrays) to an ISO string, so views
 * built from store rows can be sent as they are. Other members are copied unchanged.
 */
export function isoTimes<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => isoTimes(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = k.endsWith('_at') && typeof v === 'number' && Number.isFinite(v) ? new Date(v).toISOString() : isoTimes(v);
  }
  return out as T;
}
