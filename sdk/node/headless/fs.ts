/**
 * fs.list, fs.read, fs.write and fs.search over one confined workspace (see workspace.ts for the
 * confinement rules and their limits). Every call runs under the workspace's mutex, so two
 * dispatches on this node never interleave; other processes are covered only by the descriptor
 * checks. Symlinks are listed but never followed; hard-linked files are neither read nor searched
 * (their other name may be outside). Every unbounded thing has a limit, set by the constructor's
 * options (defaults below); each result comes with evidence: digests, sizes, before/after for
 * writes, durations. The node re-checks its arguments rather than trusting the gateway alone.
 */
import { createHash } from 'node:crypto';
import type { FsListOutput, FsReadOutput, FsSearchOutput, FsWriteOutput } from '../../../schemas/src/capabilities.js';
import { NodeCapabilityError, TEMP_PREFIX, type FileRef, type Workspace } from './workspace.js';

export interface FsLimits {
  /** Largest fs.read slice (bytes). */
  maxReadBytes: number;
  /** Largest fs.write content once decoded (bytes). */
  maxWriteBytes: number;
  maxListEntries: number;
  maxSearchResults: number;
  maxSearchFiles: number;
  /** Larger files are skipped by fs.search. */
  maxSearchFileBytes: number;
  /** fs.search stops (truncated) after this long. */
  searchTimeMs: number;
}

export const DEFAULT_FS_LIMITS: Readonly<FsLimits> = Object.freeze({
  maxReadBytes: 512 * 1024,
  maxWriteBytes: 512 * 1024,
  maxListEntries: 1000,
  maxSearchResults: 200,
  maxSearchFiles: 10_000,
  maxSearchFileBytes: 1024 * 1024,
  searchTimeMs: 5_000,
});

/** What a capability handler answers: the output (checked by the gateway against the contract) and evidence. */
export interface CapabilityResult<O = Record<string, unknown>> {
  output: O;
  evidence: Record<string, unknown>;
}

/** Before-evidence of a write: what was at the name. Only a regular file with one link is digested. */
export type WriteBefore =
  | { exists: false }
  | { exists: true; type: 'file'; sha256: string; size: number }
  | { exists: true; type: 'hard_link' | 'symlink' | 'other'; sha256: null; size: null };

const MAX_LINE_TEXT = 500;
const CHUNK = 64 * 1024;

// ---- argument checks (the gateway validates too; the node does not rely on it) ----

function argsObject(args: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new NodeCapabilityError('invalid_request', 'arguments must be an object');
  for (const k of Object.keys(args)) if (!allowed.includes(k)) throw new NodeCapabilityError('invalid_request', `unknown argument ${k}`);
  return args as Record<string, unknown>;
}

function optInt(a: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = a[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new NodeCapabilityError('invalid_request', `${key} must be an integer in [${min}, ${max}]`);
  return v;
}

function optString(a: Record<string, unknown>, key: string): string | undefined {
  const v = a[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new NodeCapabilityError('invalid_request', `${key} must be a string`);
  return v;
}

function reqString(a: Record<string, unknown>, key: string): string {
  const v = optString(a, key);
  if (v === undefined) throw new NodeCapabilityError('invalid_request', `${key} is required`);
  return v;
}

function optEncoding(a: Record<string, unknown>): 'utf8' | 'base64' | undefined {
  const v = a.encoding;
  if (v === undefined || v === 'utf8' || v === 'base64') return v;
  throw new NodeCapabilityError('invalid_request', 'encoding must be utf8 or base64');
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const since = (start: bigint) => Number((process.hrtime.bigint() - start) / 1_000_000n);

/** Read a whole open file in chunks: its digest and size, plus the bytes in [offset, offset + length). */
async function digestAndSlice(file: FileRef, offset: number, length: number): Promise<{ sha256: string; size: number; slice: Buffer }> {
  const hash = createHash('sha256');
  const parts: Buffer[] = [];
  const end = offset + length;
  const buf = Buffer.allocUnsafe(CHUNK);
  let pos = 0;
  for (;;) {
    const { bytesRead } = await file.handle.read(buf, 0, CHUNK, pos);
    if (bytesRead === 0) break;
    const chunk = buf.subarray(0, bytesRead);
    hash.update(chunk);
    const from = Math.max(offset, pos);
    const to = Math.min(end, pos + bytesRead);
    if (to > from) parts.push(Buffer.from(chunk.subarray(from - pos, to - pos)));
    pos += bytesRead;
  }
  return { sha256: hash.digest('hex'), size: pos, slice: Buffer.concat(parts) };
}

/** `*` (not `/`), `**` (anything), `?` (one character but `/`); everything else literal. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });
function isUtf8(data: Uint8Array): boolean {
  try {
    utf8Fatal.decode(data);
    return true;
  } catch {
    return false;
  }
}

/** The four fs capabilities on one workspace. */
export class FsCapabilities {
  readonly limits: Readonly<FsLimits>;

  constructor(
    readonly workspace: Workspace,
    limits: Partial<FsLimits> = {},
  ) {
    this.limits = Object.freeze({ ...DEFAULT_FS_LIMITS, ...limits });
  }

  /** fs.list: one directory, sorted by name, symlinks reported as such. */
  list(args: unknown): Promise<CapabilityResult<FsListOutput>> {
    return this.workspace.exclusive(async () => {
      const start = process.hrtime.bigint();
      const a = argsObject(args, ['path', 'max_entries']);
      const path = optString(a, 'path') ?? '.';
      const max = Math.min(optInt(a, 'max_entries', 1, Number.MAX_SAFE_INTEGER) ?? this.limits.maxListEntries, this.limits.maxListEntries);
      const dir = await this.workspace.openDir(path);
      try {
        const names = (await this.workspace.namesAt(dir)).sort();
        const entries: FsListOutput['entries'] = [];
        for (const name of names) {
          if (entries.length >= max) break;
          const st = await this.workspace.lstatAt(dir.fd, name);
          if (st === null) continue; // removed meanwhile
          const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
          entries.push({ name, type, size: st.size, mtime: st.mtime.toISOString() });
        }
        const truncated = names.length > entries.length && entries.length >= max;
        return { output: { entries, truncated }, evidence: { path, entries: entries.length, duration_ms: since(start) } };
      } finally {
        await dir.close();
      }
    });
  }

  /** fs.read: a slice of a regular file; digest and size of the whole file. */
  read(args: unknown): Promise<CapabilityResult<FsReadOutput>> {
    return this.workspace.exclusive(async () => {
      const start = process.hrtime.bigint();
      const a = argsObject(args, ['path', 'offset', 'length', 'encoding']);
      const path = reqString(a, 'path');
      const offset = optInt(a, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0;
      const length = optInt(a, 'length', 0, this.limits.maxReadBytes) ?? this.limits.maxReadBytes;
      const asked = optEncoding(a);
      const file = await this.workspace.openFile(path);
      let read: Awaited<ReturnType<typeof digestAndSlice>>;
      try {
        read = await digestAndSlice(file, offset, length);
      } finally {
        await file.handle.close();
      }
      const encoding = asked ?? (isUtf8(read.slice) ? 'utf8' : 'base64');
      const content = read.slice.toString(encoding);
      const truncated = offset + read.slice.length < read.size;
      return {
        output: { content, encoding, size: read.size, sha256: read.sha256, truncated },
        evidence: { path, sha256: read.sha256, size: read.size, bytes_returned: read.slice.length, duration_ms: since(start) },
      };
    });
  }

  /** fs.write: atomic replace, with an optional compare-and-swap on the current digest. */
  write(args: unknown): Promise<CapabilityResult<FsWriteOutput>> {
    return this.workspace.exclusive(async () => {
      const start = process.hrtime.bigint();
      const a = argsObject(args, ['path', 'content', 'encoding', 'create_dirs', 'expected_sha256']);
      const path = reqString(a, 'path');
      const content = reqString(a, 'content');
      const encoding = optEncoding(a) ?? 'utf8';
      if (a.create_dirs !== undefined && typeof a.create_dirs !== 'boolean') throw new NodeCapabilityError('invalid_request', 'create_dirs must be a boolean');
      const expected = a.expected_sha256;
      if (expected !== undefined && expected !== null && (typeof expected !== 'string' || !/^[0-9a-f]{64}$/.test(expected))) {
        throw new NodeCapabilityError('invalid_request', 'expected_sha256 must be 64 lowercase hex digits or null');
      }
      if (encoding === 'base64' && (content.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(content))) {
        throw new NodeCapabilityError('invalid_request', 'content is not valid base64');
      }
      const data = Buffer.from(content, encoding);
      if (data.length > this.limits.maxWriteBytes) {
        throw new NodeCapabilityError('invalid_request', `content is ${data.length} bytes; the limit is ${this.limits.maxWriteBytes}`, { reason: 'too_large', limit: this.limits.maxWriteBytes });
      }
      const before = await this.workspace.replaceFile<WriteBefore>(path, data, {
        createDirs: a.create_dirs === true,
        inspect: async (existing) => {
          let before: WriteBefore;
          if (existing === null) before = { exists: false };
          else if (existing.type === 'file' && existing.file) {
            const { sha256, size } = await digestAndSlice(existing.file, 0, 0);
            before = { exists: true, type: 'file', sha256, size };
          } else before = { exists: true, type: existing.type === 'file' ? 'other' : existing.type, sha256: null, size: null };
          if (expected === null && before.exists) throw new NodeCapabilityError('conflict', `${path} already exists`, { reason: 'exists', actual_sha256: before.sha256 });
          const actual = before.exists ? before.sha256 : null;
          if (typeof expected === 'string' && actual !== expected) {
            throw new NodeCapabilityError('conflict', `${path} does not have the expected digest`, { reason: 'digest_mismatch', expected_sha256: expected, actual_sha256: actual });
          }
          return before;
        },
      });
      const after = { sha256: sha256(data), size: data.length };
      return {
        output: { size: after.size, sha256: after.sha256, created: !before.exists },
        evidence: { path, before, after, duration_ms: since(start) },
      };
    });
  }

  /** fs.search: literal text, line by line, through real directories only (breadth first, sorted). */
  search(args: unknown): Promise<CapabilityResult<FsSearchOutput>> {
    return this.workspace.exclusive(async () => {
      const start = process.hrtime.bigint();
      const deadline = Date.now() + this.limits.searchTimeMs;
      const a = argsObject(args, ['query', 'path', 'glob', 'max_results']);
      const query = reqString(a, 'query');
      if (query.length === 0 || query.length > 256) throw new NodeCapabilityError('invalid_request', 'query must be 1 to 256 characters');
      const path = optString(a, 'path') ?? '.';
      const globText = optString(a, 'glob');
      const glob = globText === undefined ? undefined : globToRegExp(globText);
      const globOnName = globText !== undefined && !globText.includes('/');
      const maxResults = Math.min(optInt(a, 'max_results', 1, Number.MAX_SAFE_INTEGER) ?? this.limits.maxSearchResults, this.limits.maxSearchResults);

      const matches: FsSearchOutput['matches'] = [];
      let filesScanned = 0;
      let truncated = false;
      // Fail early (not_found, forbidden) on the starting directory itself.
      const first = await this.workspace.openDir(path);
      const queue: Array<{ rel: string; under: string }> = [];
      let current: { rel: string; under: string; dir: Awaited<ReturnType<Workspace['openDir']>> } | null = { rel: path, under: '', dir: first };
      while (current !== null && !truncated) {
        const { rel, under, dir } = current;
        try {
          for (const name of (await this.workspace.namesAt(dir)).sort()) {
            if (Date.now() > deadline) {
              truncated = true;
              break;
            }
            if (name.startsWith(TEMP_PREFIX)) continue;
            const child = rel === '.' ? name : `${rel}/${name}`;
            const childUnder = under === '' ? name : `${under}/${name}`;
            const st = await this.workspace.lstatAt(dir.fd, name);
            if (st === null) continue;
            if (st.isDirectory()) {
              queue.push({ rel: child, under: childUnder });
              continue;
            }
            if (!st.isFile() || st.nlink > 1 || st.size > this.limits.maxSearchFileBytes) continue;
            if (glob && !glob.test(globOnName ? name : childUnder)) continue;
            if (filesScanned >= this.limits.maxSearchFiles) {
              truncated = true;
              break;
            }
            const file = await this.workspace.openFileAt(dir.fd, name, child).catch((e: unknown) => {
              if (e instanceof NodeCapabilityError) return null; // changed meanwhile, or refused: skip
              throw e;
            });
            if (file === null) continue;
            let data: Buffer;
            try {
              data = (await digestAndSlice(file, 0, this.limits.maxSearchFileBytes)).slice;
            } finally {
              await file.handle.close();
            }
            filesScanned++;
            if (data.subarray(0, 8192).includes(0)) continue; // binary
            const lines = data.toString('utf8').split('\n');
            for (let i = 0; i < lines.length; i++) {
              const line = lines[i]!;
              if (!line.includes(query)) continue;
              if (matches.length >= maxResults) {
                truncated = true;
                break;
              }
              const text = line.endsWith('\r') ? line.slice(0, -1) : line;
              matches.push({ path: child, line: i + 1, text: text.length > MAX_LINE_TEXT ? text.slice(0, MAX_LINE_TEXT) : text });
            }
            if (truncated) break;
          }
        } finally {
          await dir.close();
        }
        current = null;
        while (!truncated && current === null && queue.length > 0) {
          const next = queue.shift()!;
          // A directory that cannot be opened safely (swapped for a symlink, unaddressable name) is skipped.
          const opened = await this.workspace.openDir(next.rel).catch((e: unknown) => {
            if (e instanceof NodeCapabilityError) return null;
            throw e;
          });
          if (opened !== null) current = { ...next, dir: opened };
        }
      }
      return {
        output: { matches, files_scanned: filesScanned, truncated },
        evidence: { path, files_scanned: filesScanned, duration_ms: since(start) },
      };
    });
  }
}
