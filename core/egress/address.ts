/**
 * Which IP addresses a plugin may reach without an exact-address grant (SSRF defence).
 *
 * IPv4 uses a deny list of the special-purpose ranges (RFC 6890 and successors). IPv6 is an
 * allow list: only global unicast (2000::/3) outside its special blocks is public, and the
 * forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that IPv4
 * address, so `::ffff:127.0.0.1` or `64:ff9b::a9fe:a9fe` is as private as what it wraps.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Why an address is not public; null when it is public. */
export type AddressClass =
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link_local'
  | 'shared'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'documentation'
  | 'unique_local'
  | 'site_local'
  | 'translation'
  | 'invalid';

type V4Range = readonly [a: number, b: number, c: number, d: number, bits: number, cls: AddressClass];

const V4_DENY: readonly V4Range[] = [
  [0, 0, 0, 0, 8, 'unspecified'], // "this network", includes 0.0.0.0
  [10, 0, 0, 0, 8, 'private'],
  [100, 64, 0, 0, 10, 'shared'], // carrier-grade NAT
  [127, 0, 0, 0, 8, 'loopback'],
  [169, 254, 0, 0, 16, 'link_local'], // includes 169.254.169.254, the cloud metadata service
  [172, 16, 0, 0, 12, 'private'],
  [192, 0, 0, 0, 24, 'reserved'], // IETF protocol assignments
  [192, 0, 2, 0, 24, 'documentation'],
  [192, 88, 99, 0, 24, 'reserved'], // 6to4 relay anycast
  [192, 168, 0, 0, 16, 'private'],
  [198, 18, 0, 0, 15, 'reserved'], // benchmarking
  [198, 51, 100, 0, 24, 'documentation'],
  [203, 0, 113, 0, 24, 'documentation'],
  [224, 0, 0, 0, 4, 'multicast'],
  [255, 255, 255, 255, 32, 'broadcast'],
  [240, 0, 0, 0, 4, 'reserved'],
];

function v4ToInt(b: readonly number[]): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

function classifyV4Bytes(b: readonly number[]): AddressClass | null {
  const x = v4ToInt(b);
  for (const [a, bb, c, d, bits, cls] of V4_DENY) {
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    if ((x & mask) >>> 0 === (v4ToInt([a, bb, c, d]) & mask) >>> 0) return cls;
  }
  return null;
}

function parseV4(s: string): number[] | null {
  if (!isIPv4(s)) return null;
  return s.split('.').map(Number);
}

/** The 16 bytes of an IPv6 address (brackets and zone id ignored), or null. */
export function parseV6(input: string): number[] | null {
  let s = input.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (!isIPv6(s)) return null;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    // A trailing dotted quad stands for the last two groups.
    const v4 = parseV4(last);
    if (v4 === null) return null;
    tail = v4;
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const words = tail.length > 0 ? 6 : 8;
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  let w: number[];
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    const left = groups(s.slice(0, dbl));
    const right = groups(s.slice(dbl + 2));
    const fill = words - left.length - right.length;
    if (fill < 0) return null;
    w = [...left, ...new Array<number>(fill).fill(0), ...right];
  } else {
    w = groups(s);
  }
  if (w.length !== words || w.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null;
  const bytes: number[] = [];
  for (const g of w) bytes.push(g >> 8, g & 0xff);
  return [...bytes, ...tail];
}

function prefixMatch(b: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const bit = 7 - (i & 7);
    if (((b[byte]! >> bit) & 1) !== (((prefix[byte] ?? 0) >> bit) & 1)) return false;
  }
  return true;
}

function classifyV6Bytes(b: readonly number[]): AddressClass | null {
  const zeroUpTo = (n: number) => b.slice(0, n).every((x) => x === 0);
  const v4At = (i: number) => b.slice(i, i + 4);
  if (b.every((x) => x === 0)) return 'unspecified';
  if (zeroUpTo(15) && b[15] === 1) return 'loopback';
  // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (SIIT translated): judged by the IPv4 address.
  if (zeroUpTo(10) && b[10] === 0xff && b[11] === 0xff) return classifyV4Bytes(v4At(12));
  if (zeroUpTo(8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return classifyV4Bytes(v4At(12));
  // ::a.b.c.d (deprecated IPv4-compatible)
  if (zeroUpTo(12)) return classifyV4Bytes(v4At(12)) ?? 'reserved';
  // 64:ff9b::/96 NAT64 well-known prefix
  if (prefixMatch(b, [0x00, 0x64, 0xff, 0x9b], 96)) return classifyV4Bytes(v4At(12));
  // 2002::/16 6to4: the IPv4 address follows the prefix
  if (prefixMatch(b, [0x20, 0x02], 16)) return classifyV4Bytes(v4At(2)) ?? null;
  if (prefixMatch(b, [0xff], 8)) return 'multicast';
  if (prefixMatch(b, [0xfe, 0x80], 10)) return 'link_local';
  if (prefixMatch(b, [0xfe, 0xc0], 10)) return 'site_local';
  if (prefixMatch(b, [0xfc], 7)) return 'unique_local';
  if (prefixMatch(b, [0x20, 0x01, 0x0d, 0xb8], 32)) return 'documentation';
  if (prefixMatch(b, [0x3f, 0xff, 0xf0, 0x00], 20)) return 'documentation'; // 3fff::/20
  if (prefixMatch(b, [0x20, 0x01], 23)) return 'reserved'; // IETF protocol assignments (Teredo, benchmarking, ORCHID, ...)
  if (!prefixMatch(b, [0x20], 3)) return prefixMatch(b, [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01], 48) ? 'translation' : 'reserved';
  return null;
}

/** Why `address` (an IPv4 or IPv6 literal, brackets allowed) is not public, or null if it is. */
export function classifyAddress(address: string): AddressClass | null {
  const v4 = parseV4(address);
  if (v4 !== null) return classifyV4Bytes(v4);
  const v6 = parseV6(address);
  if (v6 !== null) return classifyV6Bytes(v6);
  return 'invalid';
}
