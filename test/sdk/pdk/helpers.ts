// Shared helpers for the PDK tests (sdk/pdk): compile a plugin with asc (AssemblyScript) or clang (C),
// and the host services a real SandboxPool serves it: an in-memory key-value store with a quota, and
// an egress handler standing in for the gateway's checked egress (it fills `{{secret:NAME}}` header
// templates only for a granted secret toward a host the secret is bound to, and refuses anything else).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sandboxError, type EgressHandler, type EgressRequest, type KvStore } from '../../../sandbox/index.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PDK_AS = join(ROOT, 'sdk', 'pdk', 'assemblyscript');
export const PDK_C = join(ROOT, 'sdk', 'pdk', 'c');
export const NODE_MODULES = join(ROOT, 'node_modules');

/** The asconfig.json of the first-party plugins (scripts/build-plugins.mjs builds with it). */
export const ASCONFIG = {
  entries: ['assembly/index.ts'],
  targets: { release: { outFile: 'build/plugin.wasm', optimizeLevel: 3, shrinkLevel: 1, noAssert: false } },
  options: { runtime: 'incremental', exportRuntime: false },
};

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
export const dec = (b: Uint8Array): string => new TextDecoder('utf-8', { fatal: true }).decode(b);

/** The import path of the AssemblyScript PDK as seen from `dir` (asc resolves relative paths only). */
export function pdkImport(dir: string): string {
  const rel = relative(dir, PDK_AS).split('\\').join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

/**
 * Compile the AssemblyScript plugin in `dir` (asconfig.json, assembly/index.ts) the way
 * scripts/build-plugins.mjs does: the release target of its asconfig.json. Packages (@extism/as-pdk)
 * resolve from this repository's node_modules. Returns the module; throws with asc's diagnostics.
 */
export async function compileAssemblyScript(dir: string): Promise<Uint8Array> {
  if (!existsSync(join(dir, 'asconfig.json'))) writeFileSync(join(dir, 'asconfig.json'), JSON.stringify(ASCONFIG, null, 2));
  const asc = (await import('assemblyscript/asc')).default;
  const out: string[] = [];
  const stream = { write: (c: string | Uint8Array) => void out.push(typeof c === 'string' ? c : Buffer.from(c).toString('utf8')) };
  const argv = ['--baseDir', dir, '--config', 'asconfig.json', '--target', 'release', '--outFile', 'build/plugin.wasm', '--noColors', '--path', NODE_MODULES];
  const { error } = await asc.main(argv, { stdout: stream, stderr: stream });
  if (error) throw new Error(`asc failed: ${error.message}\n${out.join('')}`);
  return new Uint8Array(readFileSync(join(dir, 'build', 'plugin.wasm')));
}

/** Compile C source `file` with the flags sdk/pdk/c/README.md gives; returns the module. */
export function compileC(file: string, outFile: string): Promise<Uint8Array> {
  mkdirSync(join(outFile, '..'), { recursive: true });
  const args = ['--target=wasm32', '-O2', '-nostdlib', '-Wl,--no-entry', '-mbulk-memory', '-Wall', '-Wextra', '-Werror', '-I', PDK_C, '-o', outFile, file];
  return new Promise((resolve, reject) => {
    execFile('clang', args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`clang failed: ${stderr || err.message}`));
      else resolve(new Uint8Array(readFileSync(outFile)));
    });
  });
}

/** An in-memory key-value store refusing what would take it over `quota` bytes (keys plus values). */
export function memoryKv(quota = Infinity): KvStore & { data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  const used = () => [...data].reduce((n, [k, v]) => n + Buffer.byteLength(k) + v.byteLength, 0);
  return {
    data,
    async get(key) {
      await Promise.resolve();
      return data.get(key) ?? null;
    },
    async set(key, value) {
      await Promise.resolve();
      if (value === null) {
        data.delete(key);
        return true;
      }
      const before = data.get(key);
      const after = used() - (before === undefined ? 0 : Buffer.byteLength(key) + before.byteLength) + Buffer.byteLength(key) + value.byteLength;
      if (after > quota) return false;
      data.set(key, value);
      return true;
    },
  };
}

const TEMPLATE = /\{\{secret:([A-Z][A-Z0-9_]{0,63})\}\}/g;

/** What the stand-in API received: the request after the egress filled in the secrets. */
export interface Received {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | null;
}

/** What the stand-in API answers. */
export interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

/**
 * The gateway's egress, for tests: requests go only to `hosts`; `{{secret:NAME}}` in a header value
 * is replaced by `secrets[NAME].value` when the request's host is one of its `destinations`, and the
 * call is refused (capability_denied) otherwise; templates in the URL or body are refused. The
 * "server" answers with `respond(received)`.
 */
export function testEgress(
  hosts: readonly string[],
  secrets: Record<string, { value: string; destinations: readonly string[] }>,
  respond: (r: Received) => Reply,
): EgressHandler & { seen: EgressRequest[]; received: Received[] } {
  const seen: EgressRequest[] = [];
  const received: Received[] = [];
  const handler = async (req: EgressRequest) => {
    seen.push(req);
    const url = new URL(req.url);
    if (!hosts.includes(url.hostname)) throw sandboxError('capability_denied', `egress to ${url.hostname} is not granted`, { host: url.hostname });
    const body = req.body === null ? null : dec(req.body);
    if (req.url.includes('{{secret:') || (body !== null && body.includes('{{secret:'))) throw sandboxError('capability_denied', 'secret templates are only allowed in header values');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      headers[k] = v.replace(TEMPLATE, (_m, name: string) => {
        const s = secrets[name];
        if (s === undefined || !s.destinations.includes(url.hostname)) {
          throw sandboxError('capability_denied', `secret handle ${name} may not be sent to ${url.hostname}`, { secret: name });
        }
        return s.value;
      });
    }
    const r: Received = { method: req.method, url: req.url, headers, body };
    received.push(r);
    const res = respond(r);
    return { status: res.status, headers: res.headers ?? { 'content-type': 'application/json' }, body: enc(res.body) };
  };
  return Object.assign(handler, { seen, received });
}

/** The ```lang code blocks of a Markdown file. */
export function codeBlocks(markdownFile: string, lang: string): string[] {
  const text = readFileSync(markdownFile, 'utf8');
  return [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}
