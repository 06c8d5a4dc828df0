/**
 * Plugin archives: a gzip-compressed tar (.tgz) holding tyrum.plugin.json at the root and the
 * module at the manifest's `wasm.path`. Reading is defensive: the archive is a third party's,
 * so it is decompressed with an output cap (gzip bombs), parsed in memory with `tar` (the only
 * importer of it), and every entry is checked before anything touches the disk: no absolute
 * paths, no `..`, no links, devices or FIFOs, no duplicate paths, bounded count and sizes.
 * Writing is deterministic: sorted entries, fixed mode, owner and mtime, fixed gzip header.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { Header, Parser, type ReadEntry } from 'tar';
import { TyrumError } from '../core/errors/index.js';
import { ARCHIVE_MAX_BYTES, ARCHIVE_MAX_ENTRIES, ARCHIVE_MAX_PATH, ARCHIVE_MAX_UNPACKED_BYTES } from './limits.js';

const gunzipAsync = promisify(gunzip);
const gzipAsync = promisify(gzip);

/** A file to put in, or taken out of, an archive. */
export interface ArchiveFile {
  /** Relative path with `/` separators. */
  path: string;
  data: Uint8Array;
}

/** The content of an archive after the checks: its regular files and directories. */
export interface ArchiveContent {
  files: ArchiveFile[];
  directories: string[];
}

const BLOCK = 512;
/** Every entry's mtime: fixed so that packing the same files gives the same bytes. */
const FIXED_MTIME = new Date(0);

function refused(message: string, details: Record<string, unknown> = {}): never {
  throw new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `archive: ${message}`, details);
}

/** Pack `files` into a deterministic .tgz (entries sorted by path, mode 0644, owner 0, mtime 0). */
export async function packArchive(files: readonly ArchiveFile[]): Promise<Buffer> {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const f of sorted) {
    const header = new Header({ path: f.path, mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', size: f.data.byteLength, mtime: FIXED_MTIME, type: 'File' });
    const block = Buffer.alloc(BLOCK);
    if (header.encode(block, 0)) throw new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `archive: path ${JSON.stringify(f.path)} is too long for a tar header`);
    parts.push(block, Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength), Buffer.alloc((BLOCK - (f.data.byteLength % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  const gz = await gzipAsync(Buffer.concat(parts), { level: 9 });
  // Byte 9 of a gzip header names the OS that wrote it; fix it so every platform agrees.
  gz[9] = 3;
  return gz;
}

const TYPE_WORDS: Record<string, string> = {
  SymbolicLink: 'a symbolic link',
  Link: 'a hard link',
  CharacterDevice: 'a character device',
  BlockDevice: 'a block device',
  FIFO: 'a FIFO',
};

/** The checked, normalized path of an entry, or a refusal naming why. */
function entryPath(raw: string): string {
  const shown = JSON.stringify(raw.slice(0, 100));
  if (raw.length > ARCHIVE_MAX_PATH) refused(`entry path ${shown} is longer than ${ARCHIVE_MAX_PATH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(raw)) refused(`entry path ${shown} contains a control character or backslash`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) refused(`entry ${shown} has an absolute path`);
  let p = raw;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/\/+$/, '');
  const segments = p.split('/');
  if (segments.includes('..')) refused(`entry ${shown} escapes the archive ("..")`);
  if (p === '' || p === '.') return '';
  if (segments.some((s) => s === '' || s === '.')) refused(`entry path ${shown} has an empty or "." segment`);
  return p;
}

/**
 * Decompress (when gzip) and parse a tar archive in memory, refusing anything unsafe. Throws
 * TYRUM_ERR_PLUGIN_PACKAGE naming the entry and the cause.
 */
export async function readArchive(bytes: Uint8Array): Promise<ArchiveContent> {
  if (bytes.byteLength > ARCHIVE_MAX_BYTES) refused(`${bytes.byteLength} bytes, above the ${ARCHIVE_MAX_BYTES}-byte limit`);
  let tar: Buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (tar[0] === 0x1f && tar[1] === 0x8b) {
    try {
      tar = await gunzipAsync(tar, { maxOutputLength: ARCHIVE_MAX_UNPACKED_BYTES });
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') refused(`unpacks to more than ${ARCHIVE_MAX_UNPACKED_BYTES} bytes`);
      refused(`not valid gzip (${(e as Error).message})`);
    }
  }
  // A tar stream starts with a ustar header; anything else (including a second layer of
  // compression, which the parser would otherwise inflate without our cap) is refused.
  if (tar.byteLength < BLOCK || tar.toString('latin1', 257, 262) !== 'ustar') refused('not a tar archive (expected a .tgz or .tar with ustar headers)');

  const files: ArchiveFile[] = [];
  const directories: string[] = [];
  const seen = new Set<string>();
  let count = 0;
  let failure: unknown = null;
  let ended = false;

  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      try {
        if (failure !== null) throw failure;
        count++;
        if (count > ARCHIVE_MAX_ENTRIES) refused(`more than ${ARCHIVE_MAX_ENTRIES} entries`);
        const path = entryPath(entry.path);
        const shown = JSON.stringify(path.slice(0, 100));
        const word = TYPE_WORDS[entry.type];
        if (word !== undefined) refused(`entry ${shown} is ${word}; only regular files and directories are allowed`, { entry: path, type: entry.type });
        if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile' && entry.type !== 'Directory') {
          refused(`entry ${shown} has unsupported type ${entry.type}`, { entry: path, type: entry.type });
        }
        if (path === '') {
          if (entry.type !== 'Directory') refused('an entry has an empty path');
          entry.resume();
          return;
        }
        if (seen.has(path)) refused(`entry ${shown} appears twice`, { entry: path });
        seen.add(path);
        if (entry.type === 'Directory') {
          directories.push(path);
          entry.resume();
          return;
        }
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => files.push({ path, data: Buffer.concat(chunks) }));
      } catch (e) {
        failure ??= e;
        entry.resume();
      }
    },
  });
  parser.on('warn', (_code: string, message: unknown) => {
    failure ??= new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `archive: malformed tar (${String(message instanceof Error ? message.message : message).slice(0, 200)})`);
  });
  parser.on('error', (e: unknown) => {
    failure ??= new TyrumError('TYRUM_ERR_PLUGIN_PACKAGE', `archive: malformed tar (${String(e instanceof Error ? e.message : e).slice(0, 200)})`);
  });
  parser.on('end', () => {
    ended = true;
  });
  // Parsing a buffer is synchronous: by the time end() returns, every entry has been seen.
  parser.write(tar);
  parser.end();
  if (failure !== null) throw failure;
  if (!ended) refused('truncated tar stream');
  return { files, directories };
}

/**
 * Write checked archive content under `dest` (an empty directory the caller created):
 * directories 0700, files 0600, never following or replacing anything already there.
 */
export async function writeArchiveContent(content: ArchiveContent, dest: string): Promise<void> {
  for (const d of content.directories) await mkdir(join(dest, d), { recursive: true, mode: 0o700 });
  for (const f of content.files) {
    const target = join(dest, f.path);
    try {
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await writeFile(target, f.data, { flag: 'wx', mode: 0o600 });
    } catch (e) {
      refused(`entry ${JSON.stringify(f.path.slice(0, 100))} could not be extracted (${(e as { code?: string }).code ?? (e as Error).message})`, { entry: f.path });
    }
  }
}
