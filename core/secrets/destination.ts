/**
 * Where a secret's value may be sent: an origin (scheme, host, port), never just a host.
 *
 * A destination is written one of two ways, in a handle's binding (`tyrum secret set NAME
 * --destinations ...`) and in a plugin's grant (`tyrum plugin grant ID --secret NAME=...`):
 * - a bare host (`api.github.com`, `127.0.0.1`, `[::1]`): that host over **https, port 443 only**;
 * - an origin (`https://api.example.com:8443`, `http://127.0.0.1:8080`): exactly that scheme, host
 *   and port (the scheme's default port when none is written). No path, query, user info or
 *   wildcard. Plain `http` is only ever allowed by a destination that names `http://`.
 * Bindings stored before origins existed are bare hosts and keep that meaning: https, port 443.
 *
 * The egress handler checks every hop (the request and each redirect) against both the handle's
 * binding and the plugin's grant with {@link destinationAllows}.
 */
import { isIPv6 } from 'node:net';
import { Host } from '../../schemas/src/manifest.js';

/** An exact origin. `host` is canonical as the URL parser writes it (IPv6 in brackets). */
export interface SecretOrigin {
  scheme: 'https' | 'http';
  host: string;
  port: number;
}

const HOST_RE = new RegExp(Host.pattern ?? '^$');
const DEFAULT_PORT = { https: 443, http: 80 } as const;

/** The host as the URL parser writes it (lower case, IPv4 dotted, IPv6 compressed in brackets); null if unusable. */
export function canonicalHost(host: string): string | null {
  const bare = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (bare === '') return null;
  try {
    return new URL(`http://${isIPv6(bare) ? `[${bare}]` : bare}/`).hostname;
  } catch {
    return null;
  }
}

/** {@link canonicalHost} of an exact host name or IP literal (the manifest's Host pattern); null otherwise. */
function canonical(host: string): string | null {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === '' || bare.length > 253) return null;
  return HOST_RE.test(isIPv6(bare) ? `[${bare}]` : bare) ? canonicalHost(bare) : null;
}

/** The origin of an http(s) URL (the scheme's default port when none is written); null for any other scheme. */
export function urlOrigin(url: URL): SecretOrigin | null {
  const scheme = url.protocol === 'https:' ? 'https' : url.protocol === 'http:' ? 'http' : null;
  if (scheme === null) return null;
  return { scheme, host: url.hostname, port: url.port === '' ? DEFAULT_PORT[scheme] : Number(url.port) };
}

/** The origin a destination stands for, or null when it is neither a bare host nor an origin. */
export function parseDestination(raw: string): SecretOrigin | null {
  if (typeof raw !== 'string') return null;
  const s = raw.trim().toLowerCase();
  if (!s.includes('://')) {
    const host = canonical(s);
    return host === null ? null : { scheme: 'https', host, port: 443 };
  }
  const m = /^(https?):\/\/(\[[0-9a-f:.]+\]|[^/:?#@[\]]+)(?::([0-9]{1,5}))?\/?$/.exec(s);
  if (!m) return null;
  const scheme = m[1] as 'https' | 'http';
  const host = canonical(m[2]!);
  const port = m[3] === undefined ? DEFAULT_PORT[scheme] : Number(m[3]);
  if (host === null || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { scheme, host, port };
}

/**
 * The stored form of a destination: a bare host stays a bare host (lower case); an origin is
 * written `scheme://host` plus `:port` when it is not the scheme's default. Null when invalid.
 */
export function normalizeDestination(raw: string): string | null {
  const o = parseDestination(raw);
  if (o === null) return null;
  if (!String(raw).includes('://')) return o.host;
  return o.port === DEFAULT_PORT[o.scheme] ? `${o.scheme}://${o.host}` : `${o.scheme}://${o.host}:${o.port}`;
}

/** `scheme://host:port`, always with the port: how refusals and audit entries name an origin. */
export function originLabel(o: SecretOrigin): string {
  return `${o.scheme}://${o.host}:${o.port}`;
}

/** True when the destination `dest` is exactly the origin `target`. */
export function destinationAllows(dest: string, target: SecretOrigin): boolean {
  const o = parseDestination(dest);
  return o !== null && o.scheme === target.scheme && o.port === target.port && o.host === target.host;
}

/** The host a destination names (for matching a grant against a manifest's requested hosts). */
export function destinationHost(dest: string): string | null {
  return parseDestination(dest)?.host ?? null;
}
