/**
 * The client address to log and audit. X-Forwarded-For is believed only when the direct peer is
 * a configured trusted proxy, and then only up to the first untrusted hop from the right
 * (TESTPLAN F7): anything a client writes further left is its own claim.
 */
export function clientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trustedProxies: readonly string[]): string {
  const direct = normalize(peer ?? 'unknown');
  if (forwardedFor === undefined || !trustedProxies.map(normalize).includes(direct)) return direct;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((h) => normalize(h.trim()))
    .filter((h) => h.length > 0);
  const trusted = new Set(trustedProxies.map(normalize));
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!trusted.has(hops[i]!)) return hops[i]!;
  }
  return hops[0] ?? direct;
}

function normalize(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
