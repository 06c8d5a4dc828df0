/**
 * The operator web UI's static files (built by `npm run build` into dist/ui from ui/), served at
 * `/` on the gateway's own port. The UI is an ordinary protocol client: it talks to the gateway
 * only over /ws, so the HTTP side is files and headers, nothing else.
 *
 * The files are read once, at construction, into memory (a few hundred KiB): requests never touch
 * the file system, so no path a request names can reach outside the build directory. Every answer
 * carries a strict Content-Security-Policy: scripts, styles, images and fonts from this origin
 * only, no inline script or style, no framing, no plugins, no form posts; connections to this
 * origin (and its ws:/wss: twin, for browsers whose 'self' does not cover WebSocket schemes).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** Largest file served; a bigger one is a build mistake, not something to hold in memory. */
const MAX_FILE_BYTES = 8 * 1024 * 1024;
/** A Host header that may be echoed into connect-src: host name or address and port, nothing else. */
const HOST_RE = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

export interface UiFile {
  body: Buffer;
  type: string;
  etag: string;
}

/** The built UI, in memory. `null` from {@link loadUi} when dist/ui does not exist. */
export class UiAssets {
  private constructor(private readonly files: ReadonlyMap<string, UiFile>) {}

  /** Reads every file under `dir` (no symlinks, no dotfiles); null when `dir` has no index.html. */
  static load(dir: string): UiAssets | null {
    if (!existsSync(join(dir, 'index.html'))) return null;
    const files = new Map<string, UiFile>();
    const walk = (abs: string, rel: string) => {
      for (const ent of readdirSync(abs, { withFileTypes: true })) {
        if (ent.name.startsWith('.')) continue;
        const a = join(abs, ent.name);
        const r = rel === '' ? ent.name : `${rel}/${ent.name}`;
        if (ent.isDirectory()) walk(a, r);
        else if (ent.isFile()) {
          const type = TYPES[extname(ent.name).toLowerCase()];
          if (type === undefined || statSync(a).size > MAX_FILE_BYTES) continue;
          const body = readFileSync(a);
          files.set(r, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
        }
      }
    };
    walk(dir, '');
    return new UiAssets(files);
  }

  /** The file a URL path names: `/` is index.html, `/ui/<name>` a built file; undefined otherwise. */
  get(urlPath: string): UiFile | undefined {
    if (urlPath === '/') return this.files.get('index.html');
    if (!urlPath.startsWith('/ui/')) return undefined;
    const rel = urlPath.slice(4);
    return rel === 'index.html' ? undefined : this.files.get(rel);
  }

  get size(): number {
    return this.files.size;
  }
}

/**
 * The Content-Security-Policy of every UI response. `host` is the request's Host header: when it
 * is a plain host[:port] its ws:/wss: origin is allowed too (CSP Level 3 lets 'self' cover the
 * WebSocket scheme, but not every browser implements that); anything else is ignored, so a
 * hostile Host header cannot add a directive.
 */
export function uiContentSecurityPolicy(host: string | undefined, tls: boolean): string {
  const connect = ["'self'"];
  if (host !== undefined && HOST_RE.test(host)) connect.push(`${tls ? 'wss' : 'ws'}://${host}`);
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src ${connect.join(' ')}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Headers every UI response carries (besides its content type and CSP). */
export const UI_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(self)',
};
