/**
 * Where artifact bytes live: the `ArtifactStore` interface, and its filesystem backend under
 * `<home>/artifacts/`.
 *
 * The interface speaks only of content digests and byte streams, so an S3-compatible backend can
 * implement it (put: a multipart upload to a temporary key while hashing, then a copy to
 * `sha256/<hex>`; open: a ranged GET stream; delete: DeleteObject; list: ListObjectsV2 with a
 * start-after cursor). Metadata (media type, name, attachments) is not the store's business: it
 * lives in the database (core/store/artifacts.ts).
 *
 * The filesystem backend: `<root>/sha256/<first two hex>/<hex>`, directories 0700 and files 0600.
 * A put streams into `<root>/tmp/<random>.part` while hashing and counting, fsyncs it, and renames
 * it to its digest path, then fsyncs the directory: a crash leaves at most a temporary file, never
 * a partial blob under a digest name. Identical content is stored once (a second put only touches
 * the existing file's mtime, which the sweeper reads as "in use now").
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, openSync, fsyncSync, closeSync, statSync } from 'node:fs';
import { open, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { TyrumError } from '../errors/index.js';

/** Bytes for a put: a buffer, or chunks (a readable stream) consumed once. */
export type BlobSource = Uint8Array | AsyncIterable<Uint8Array>;

export interface BlobPut {
  /** Lowercase hex sha256 of the bytes. */
  digest: string;
  size: number;
  /** The content was stored already (deduplicated: nothing new was written). */
  existed: boolean;
}

export interface BlobStat {
  digest: string;
  size: number;
  /** Last write or dedupe touch, epoch ms. */
  mtimeMs: number;
}

export interface PutOptions {
  /** More bytes than this fail with TYRUM_ERR_ARTIFACT_TOO_LARGE; nothing is kept. */
  maxBytes: number;
  /**
   * Called once the bytes are hashed, before they become visible under their digest; a throw
   * aborts the put and nothing is kept (the service checks the total quota here).
   */
  accept?: (digest: string, size: number) => void;
}

/** A content-addressed blob store (filesystem today; the shape an S3-compatible backend fits). */
export interface ArtifactStore {
  put(source: BlobSource, options: PutOptions): Promise<BlobPut>;
  /** A stream of the bytes; TYRUM_ERR_NOT_FOUND when the blob is not stored. */
  open(digest: string): Promise<{ stream: Readable; size: number }>;
  stat(digest: string): Promise<BlobStat | null>;
  /**
   * Removes the blob; false when it was not there. With `keepIfTouchedSince`, a blob written or
   * deduplicated at or after that time (a put in flight that found it) is kept and false returned.
   */
  delete(digest: string, options?: { keepIfTouchedSince?: number }): Promise<boolean>;
  /** Stored blobs in digest order after `after`, at most `limit`. */
  list(options: { after?: string; limit: number }): Promise<BlobStat[]>;
  /** Unfinished temporary uploads older than `before` (a crash mid-put leaves them); removes them unless `dryRun`. */
  sweepTemporary(options: { before: number; limit: number; dryRun: boolean }): Promise<{ count: number; bytes: number }>;
}

const HEX64 = /^[0-9a-f]{64}$/;

function checkDigest(digest: string): void {
  if (!HEX64.test(digest)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a blob digest is 64 lowercase hex characters', { digest: digest.slice(0, 80) });
}

function ioError(what: string, e: unknown): TyrumError {
  return new TyrumError('TYRUM_ERR_ARTIFACT_IO', `artifact store: ${what}: ${(e as Error).message}`, { errno: (e as NodeJS.ErrnoException).code ?? null }, { cause: e });
}

/** fsync a directory so a rename or a new entry in it survives a power cut. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Creates `dir` (0700) if missing; syncs its parent when it was created. */
function ensureDir(dir: string, parent: string): void {
  try {
    statSync(dir);
    return;
  } catch {
    // missing: create below
  }
  mkdirSync(dir, { mode: 0o700, recursive: true });
  syncDir(parent);
}

/** The filesystem backend. */
export class FsArtifactStore implements ArtifactStore {
  private readonly blobs: string;
  private readonly tmp: string;

  constructor(readonly root: string) {
    this.blobs = join(root, 'sha256');
    this.tmp = join(root, 'tmp');
  }

  private path(digest: string): string {
    return join(this.blobs, digest.slice(0, 2), digest);
  }

  private ensureLayout(): void {
    const parent = join(this.root, '..');
    ensureDir(this.root, parent);
    ensureDir(this.blobs, this.root);
    ensureDir(this.tmp, this.root);
  }

  async put(source: BlobSource, options: PutOptions): Promise<BlobPut> {
    try {
      this.ensureLayout();
    } catch (e) {
      throw ioError('cannot create its directories', e);
    }
    const tmp = join(this.tmp, `${randomBytes(12).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    let fh;
    try {
      fh = await open(tmp, 'wx', 0o600);
    } catch (e) {
      throw ioError('cannot create a temporary file', e);
    }
    let keep = false;
    try {
      const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = source instanceof Uint8Array ? [source] : source;
      for await (const chunk of chunks) {
        size += chunk.byteLength;
        if (size > options.maxBytes) {
          throw new TyrumError('TYRUM_ERR_ARTIFACT_TOO_LARGE', `the artifact is larger than ${options.maxBytes} bytes (limits.max_artifact_bytes); nothing was stored`, { max_bytes: options.maxBytes });
        }
        hash.update(chunk);
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      }
      await fh.sync();
      await fh.close();
      fh = null;
      const digest = hash.digest('hex');
      options.accept?.(digest, size);
      const final = this.path(digest);
      const existing = await stat(final).catch(() => null);
      if (existing !== null && existing.size === size) {
        // Deduplicated: mark it in use now, so a concurrent sweep keeps it.
        const now = new Date();
        await utimes(final, now, now);
        return { digest, size, existed: true };
      }
      const shard = join(this.blobs, digest.slice(0, 2));
      ensureDir(shard, this.blobs);
      await rename(tmp, final);
      keep = true;
      syncDir(shard);
      return { digest, size, existed: false };
    } catch (e) {
      if (e instanceof TyrumError) throw e;
      throw ioError('cannot write a blob', e);
    } finally {
      if (fh) await fh.close().catch(() => undefined);
      if (!keep) await unlink(tmp).catch(() => undefined);
    }
  }

  async open(digest: string): Promise<{ stream: Readable; size: number }> {
    checkDigest(digest);
    const path = this.path(digest);
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no blob sha256:${digest}`, { digest });
      throw ioError('cannot open a blob', e);
    }
    try {
      const st = await fh.stat();
      // The stream owns the descriptor from here (closed at its end or when destroyed).
      return { stream: fh.createReadStream({ autoClose: true }), size: st.size };
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw ioError('cannot read a blob', e);
    }
  }

  async stat(digest: string): Promise<BlobStat | null> {
    checkDigest(digest);
    try {
      const st = await stat(this.path(digest));
      return { digest, size: st.size, mtimeMs: st.mtimeMs };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError('cannot stat a blob', e);
    }
  }

  async delete(digest: string, options: { keepIfTouchedSince?: number } = {}): Promise<boolean> {
    checkDigest(digest);
    const path = this.path(digest);
    // Renamed aside first, then looked at: a put that touched the blob before the rename is
    // seen (its mtime), and one after it finds no file and writes the content again.
    const aside = join(this.tmp, `${digest}.${randomBytes(6).toString('hex')}.deleting`);
    try {
      this.ensureLayout();
      await rename(path, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError('cannot remove a blob', e);
    }
    try {
      const st = await stat(aside);
      if (options.keepIfTouchedSince !== undefined && st.mtimeMs >= options.keepIfTouchedSince) {
        const back = await stat(path).catch(() => null);
        if (back === null) await rename(aside, path);
        else await unlink(aside);
        return false;
      }
      await unlink(aside);
      syncDir(join(this.blobs, digest.slice(0, 2)));
      return true;
    } catch (e) {
      throw ioError('cannot remove a blob', e);
    }
  }

  async list(options: { after?: string; limit: number }): Promise<BlobStat[]> {
    const after = options.after ?? '';
    const out: BlobStat[] = [];
    let shards: string[];
    try {
      shards = (await readdir(this.blobs)).filter((s) => /^[0-9a-f]{2}$/.test(s)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('cannot list blobs', e);
    }
    for (const shard of shards) {
      if (shard < after.slice(0, 2)) continue;
      const names = (await readdir(join(this.blobs, shard)).catch(() => [] as string[])).filter((n) => HEX64.test(n) && n > after).sort();
      for (const n of names) {
        const st = await stat(join(this.blobs, shard, n)).catch(() => null);
        if (st === null) continue;
        out.push({ digest: n, size: st.size, mtimeMs: st.mtimeMs });
        if (out.length >= options.limit) return out;
      }
    }
    return out;
  }

  async sweepTemporary(options: { before: number; limit: number; dryRun: boolean }): Promise<{ count: number; bytes: number }> {
    let names: string[];
    try {
      names = (await readdir(this.tmp)).sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { count: 0, bytes: 0 };
      throw ioError('cannot list temporary files', e);
    }
    let count = 0;
    let bytes = 0;
    for (const n of names) {
      if (count >= options.limit) break;
      const p = join(this.tmp, n);
      const st = await stat(p).catch(() => null);
      if (st === null || !st.isFile() || st.mtimeMs >= options.before) continue;
      count++;
      bytes += st.size;
      if (!options.dryRun) await rm(p, { force: true });
    }
    return { count, bytes };
  }
}
