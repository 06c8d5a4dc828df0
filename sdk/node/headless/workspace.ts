/**
 * Workspace confinement for the headless node (Linux).
 *
 * Security model: every path an agent names is relative to one workspace root, and every object
 * the node reads, lists or replaces must be inside it, even when someone else changes the tree
 * concurrently. Node has no openat(2), so components are opened one at a time through the magic
 * links `/proc/self/fd/<dirFd>/<name>` with O_NOFOLLOW (openat semantics): a symlink anywhere in
 * a path is refused, never followed. The object finally used is checked by its descriptor, not
 * its name: readlink(/proc/self/fd/<fd>) must be the root or under it, and fstat must show the
 * expected type. That catches a symlink or directory swapped in between the check and the use.
 * Reads refuse hard-linked files (nlink > 1: the other name may be outside). Writes never write
 * through an existing inode: they create an O_EXCL temp file, fsync it, rename it over the name
 * through the parent's descriptor and fsync the parent, so a hard link or symlink at the name is
 * replaced and whatever it pointed to is left untouched.
 *
 * Limits: this needs Linux /proc; elsewhere construction throws (no weaker fallback here).
 * Paths are refused, never normalized: `..`, `.` segments, empty segments, backslashes, NUL and
 * absolute paths are errors. A bind mount inside the workspace is inside as far as these checks
 * can tell. Names containing a backslash exist on Linux but cannot be addressed. The checks keep
 * the node's own operations inside; they do not stop other processes (or an allowed shell.exec
 * command, which is confined by its allowlist, not by paths) from touching files outside.
 */
import { randomBytes } from 'node:crypto';
import { constants, realpathSync, openSync, closeSync, fstatSync, type Stats } from 'node:fs';
import { open, readlink, lstat, mkdir, rename, unlink, readdir, type FileHandle } from 'node:fs/promises';

/**
 * The error every capability handler throws; `code` is the wire error code the node answers with.
 * The SDK's one error class for that (TyrumNode answers with its code and details).
 */
export { NodeTaskError as NodeCapabilityError } from '../runtime.js';
import { NodeTaskError as NodeCapabilityError } from '../runtime.js';

/** Test seam: runs after the path walk and checks, right before the final object is opened. */
export interface WorkspaceHooks {
  beforeFinalOpen?: (info: { path: string; op: 'read' | 'write' | 'dir' }) => void | Promise<void>;
}

export interface WorkspaceOptions {
  hooks?: WorkspaceHooks;
}

/** An open, verified directory inside the workspace. Close it when done. */
export interface DirRef {
  /** The path as given (`.` for the root). */
  readonly path: string;
  readonly fd: number;
  /** `/proc/self/fd/<fd>`: a path that names exactly this directory, whatever happens to its name. */
  readonly fdPath: string;
  close(): Promise<void>;
}

/** An open, verified regular file inside the workspace. */
export interface FileRef {
  readonly handle: FileHandle;
  readonly stat: Stats;
}

export interface ExistingFile {
  /** What is at the name: a regular file with one link, a hard-linked file, a symlink or something else. */
  readonly type: 'file' | 'hard_link' | 'symlink' | 'other';
}

const PATH_MAX = 4096;
const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_EXCL } = constants;
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
// O_NONBLOCK: opening a FIFO planted in the workspace must not hang the node (fstat then refuses it).
const READ_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
export const TEMP_PREFIX = '.tyrum-tmp-';

const fdPath = (fd: number) => `/proc/self/fd/${fd}`;

/** Split a workspace path into segments, refusing (never normalizing) anything that could leave the root. */
export function splitWorkspacePath(path: unknown): string[] {
  if (typeof path !== 'string') throw new NodeCapabilityError('invalid_request', 'path must be a string');
  if (path.length === 0) throw new NodeCapabilityError('invalid_request', 'path is empty');
  if (path.length > PATH_MAX) throw new NodeCapabilityError('invalid_request', `path is longer than ${PATH_MAX} characters`);
  if (path.includes('\0')) throw new NodeCapabilityError('forbidden', 'path contains NUL', { reason: 'invalid_path' });
  if (path.includes('\\')) throw new NodeCapabilityError('forbidden', 'path contains a backslash', { reason: 'invalid_path' });
  if (path.startsWith('/')) throw new NodeCapabilityError('forbidden', 'absolute paths are not allowed; paths are relative to the workspace', { reason: 'absolute_path' });
  if (path === '.') return [];
  const segs = path.split('/');
  for (const s of segs) {
    if (s === '') throw new NodeCapabilityError('forbidden', 'path has an empty segment', { reason: 'invalid_path' });
    if (s === '..') throw new NodeCapabilityError('forbidden', 'path has a ".." segment', { reason: 'parent_segment' });
    if (s === '.') throw new NodeCapabilityError('forbidden', 'path has a "." segment', { reason: 'invalid_path' });
  }
  return segs;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code;
}

/** A workspace root and the confinement rules around it. Dispatches on it run one at a time (`exclusive`). */
export class Workspace {
  readonly root: string;
  readonly #rootFd: number;
  readonly #hooks: WorkspaceHooks;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(root: string, options: WorkspaceOptions = {}) {
    if (process.platform !== 'linux') {
      throw new NodeCapabilityError('internal', `workspace confinement needs Linux /proc (this is ${process.platform}); fs and shell capabilities cannot be enabled`, {
        reason: 'platform_unsupported',
        platform: process.platform,
      });
    }
    let real: string;
    try {
      real = realpathSync(root);
    } catch (e) {
      throw new NodeCapabilityError('not_found', `workspace ${root} cannot be resolved (${errno(e) ?? String(e)})`);
    }
    if (real === '/') throw new NodeCapabilityError('forbidden', 'the workspace cannot be /', { reason: 'root_workspace' });
    this.root = real;
    this.#rootFd = openSync(real, O_RDONLY | O_DIRECTORY);
    if (!fstatSync(this.#rootFd).isDirectory()) throw new NodeCapabilityError('invalid_request', `workspace ${real} is not a directory`);
    this.#hooks = options.hooks ?? {};
  }

  /** Release the root descriptor. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#rootFd);
  }

  /** Run `fn` when every earlier exclusive call has finished (one dispatch at a time on this workspace). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Whether a path reported by readlink(/proc/self/fd/N) is the root or under it. */
  #inside(real: string): boolean {
    return real === this.root || real.startsWith(this.root + '/');
  }

  /** Check the object behind a descriptor, not the name it was opened by. */
  async #verifyFd(fd: number, path: string): Promise<void> {
    const real = await readlink(fdPath(fd));
    if (!this.#inside(real)) throw new NodeCapabilityError('forbidden', `${path} resolves outside the workspace`, { reason: 'outside_workspace' });
  }

  /** Open one directory component below `dirFd`, refusing symlinks. */
  async #openDirAt(dirFd: number, seg: string, shown: string): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await open(`${fdPath(dirFd)}/${seg}`, DIR_FLAGS);
    } catch (e) {
      const code = errno(e);
      if (code === 'ENOENT') throw new NodeCapabilityError('not_found', `${shown} does not exist`);
      if (code === 'ELOOP') throw new NodeCapabilityError('forbidden', `symlink in path: ${shown}`, { reason: 'symlink' });
      if (code === 'ENOTDIR') {
        const st = await lstat(`${fdPath(dirFd)}/${seg}`).catch(() => null);
        if (st?.isSymbolicLink()) throw new NodeCapabilityError('forbidden', `symlink in path: ${shown}`, { reason: 'symlink' });
        throw new NodeCapabilityError('invalid_request', `${shown} is not a directory`, { reason: 'not_a_directory' });
      }
      if (code === 'EACCES') throw new NodeCapabilityError('forbidden', `${shown}: permission denied`, { reason: 'permission' });
      throw e;
    }
    return fh;
  }

  /**
   * Walk `segs` from the root and return the last directory's handle (a dup of the root for no
   * segments). With `create`, missing directories are made one at a time relative to their
   * parent's descriptor and opened without following symlinks.
   */
  async #walk(segs: string[], create = false): Promise<FileHandle> {
    let cur = await open(fdPath(this.#rootFd), O_RDONLY | O_DIRECTORY);
    try {
      // The root itself may have been moved since start: then nothing is inside any more.
      await this.#verifyFd(cur.fd, '.');
      for (let i = 0; i < segs.length; i++) {
        const seg = segs[i]!;
        const shown = segs.slice(0, i + 1).join('/');
        if (create) {
          try {
            await mkdir(`${fdPath(cur.fd)}/${seg}`, { mode: 0o755 });
          } catch (e) {
            // EEXIST: something is there already (maybe a symlink); the O_NOFOLLOW open decides.
            if (errno(e) !== 'EEXIST') throw e;
          }
        }
        const next = await this.#openDirAt(cur.fd, seg, shown);
        await cur.close();
        cur = next;
        await this.#verifyFd(cur.fd, shown);
      }
      return cur;
    } catch (e) {
      await cur.close().catch(() => undefined);
      throw e;
    }
  }

  /** Open the directory at `path` (`.` is the root), verified to be inside the workspace. */
  async openDir(path: string): Promise<DirRef> {
    const segs = splitWorkspacePath(path);
    if (segs.length === 0) {
      const fh = await this.#walk([]);
      return dirRef(path, fh);
    }
    const parent = await this.#walk(segs.slice(0, -1));
    try {
      await this.#hooks.beforeFinalOpen?.({ path, op: 'dir' });
      const fh = await this.#openDirAt(parent.fd, segs.at(-1)!, path);
      try {
        await this.#verifyFd(fh.fd, path);
        if (!(await fh.stat()).isDirectory()) throw new NodeCapabilityError('invalid_request', `${path} is not a directory`);
      } catch (e) {
        await fh.close();
        throw e;
      }
      return dirRef(path, fh);
    } finally {
      await parent.close();
    }
  }

  /** Open the regular file at `path` for reading, refusing symlinks, non-regular files and hard links. */
  async openFile(path: string): Promise<FileRef> {
    const segs = splitWorkspacePath(path);
    if (segs.length === 0) throw new NodeCapabilityError('invalid_request', 'the workspace root is a directory, not a file');
    const parent = await this.#walk(segs.slice(0, -1));
    try {
      return await this.openFileAt(parent.fd, segs.at(-1)!, path, true);
    } finally {
      await parent.close();
    }
  }

  /**
   * Open `name` in the verified directory `dirFd` for reading. Refuses symlinks, anything but a
   * regular file, files with more than one link, and any object that turns out to be outside.
   */
  async openFileAt(dirFd: number, name: string, shown: string, hook = false): Promise<FileRef> {
    const at = `${fdPath(dirFd)}/${name}`;
    // Look before opening so a device or FIFO is never opened at all; the fstat below decides.
    const pre = await lstat(at).catch((e: unknown) => {
      if (errno(e) === 'ENOENT') throw new NodeCapabilityError('not_found', `${shown} does not exist`);
      throw e;
    });
    if (pre.isSymbolicLink()) throw new NodeCapabilityError('forbidden', `${shown} is a symlink`, { reason: 'symlink' });
    if (pre.isDirectory()) throw new NodeCapabilityError('invalid_request', `${shown} is a directory`, { reason: 'is_directory' });
    if (!pre.isFile()) throw new NodeCapabilityError('forbidden', `${shown} is not a regular file`, { reason: 'not_regular' });
    if (hook) await this.#hooks.beforeFinalOpen?.({ path: shown, op: 'read' });
    let handle: FileHandle;
    try {
      handle = await open(at, READ_FLAGS);
    } catch (e) {
      const code = errno(e);
      if (code === 'ELOOP') throw new NodeCapabilityError('forbidden', `${shown} is a symlink`, { reason: 'symlink' });
      if (code === 'ENOENT') throw new NodeCapabilityError('not_found', `${shown} does not exist`);
      if (code === 'EACCES') throw new NodeCapabilityError('forbidden', `${shown}: permission denied`, { reason: 'permission' });
      throw e;
    }
    try {
      await this.#verifyFd(handle.fd, shown);
      const stat = await handle.stat();
      if (!stat.isFile()) throw new NodeCapabilityError('forbidden', `${shown} is not a regular file`, { reason: 'not_regular' });
      if (stat.nlink > 1) throw new NodeCapabilityError('forbidden', `hard-linked file: ${shown} has ${stat.nlink} links`, { reason: 'hard_link' });
      return { handle, stat };
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /** lstat of `name` in a verified directory (never follows a symlink). Null when absent. */
  async lstatAt(dirFd: number, name: string): Promise<Stats | null> {
    try {
      return await lstat(`${fdPath(dirFd)}/${name}`);
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw e;
    }
  }

  /** The names in a verified directory. */
  async namesAt(dir: DirRef): Promise<string[]> {
    return readdir(dir.fdPath);
  }

  /**
   * Replace the file at `path` with `data` atomically. `inspect` sees what is there now (a
   * regular file with one link is opened and handed over for its digest) and may throw to refuse
   * (compare-and-swap). The bytes go to a new O_EXCL temp file that is fsynced, renamed over the
   * name through the parent's descriptor (rename replaces a symlink or hard link at the name
   * instead of following it), and the parent is fsynced.
   */
  async replaceFile<T>(
    path: string,
    data: Uint8Array,
    options: { createDirs?: boolean; inspect: (existing: null | (ExistingFile & { file?: FileRef })) => Promise<T> },
  ): Promise<T> {
    const segs = splitWorkspacePath(path);
    if (segs.length === 0) throw new NodeCapabilityError('invalid_request', 'the workspace root is a directory, not a file');
    const name = segs.at(-1)!;
    if (name.startsWith(TEMP_PREFIX)) throw new NodeCapabilityError('forbidden', `names starting with ${TEMP_PREFIX} are reserved`, { reason: 'reserved_name' });
    const parent = await this.#walk(segs.slice(0, -1), options.createDirs === true);
    const parentPath = fdPath(parent.fd);
    try {
      const st = await this.lstatAt(parent.fd, name);
      let inspected: T;
      if (st === null) inspected = await options.inspect(null);
      else if (st.isDirectory()) throw new NodeCapabilityError('invalid_request', `${path} is a directory`, { reason: 'is_directory' });
      else if (st.isSymbolicLink()) inspected = await options.inspect({ type: 'symlink' });
      else if (!st.isFile()) inspected = await options.inspect({ type: 'other' });
      else if (st.nlink > 1) inspected = await options.inspect({ type: 'hard_link' });
      else {
        const file = await this.openFileAt(parent.fd, name, path).catch((e: unknown) => {
          // Changed between the lstat and the open: report it as what it became, never follow.
          if (e instanceof NodeCapabilityError && e.code !== 'internal') return null;
          throw e;
        });
        try {
          inspected = await options.inspect(file === null ? { type: 'other' } : { type: 'file', file });
        } finally {
          await file?.handle.close();
        }
      }
      await this.#hooks.beforeFinalOpen?.({ path, op: 'write' });
      // The parent may have been moved out since the walk: check it again before creating anything in it.
      await this.#verifyFd(parent.fd, path);
      const tmp = TEMP_PREFIX + randomBytes(12).toString('hex');
      const tmpAt = `${parentPath}/${tmp}`;
      const out = await open(tmpAt, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      let renamed = false;
      try {
        await this.#verifyFd(out.fd, path);
        await out.writeFile(data);
        await out.sync();
        await out.close();
        await rename(tmpAt, `${parentPath}/${name}`);
        renamed = true;
      } finally {
        if (!renamed) {
          await out.close().catch(() => undefined);
          await unlink(tmpAt).catch(() => undefined);
        }
      }
      await parent.sync();
      return inspected;
    } finally {
      await parent.close();
    }
  }
}

function dirRef(path: string, fh: FileHandle): DirRef {
  return { path, fd: fh.fd, fdPath: fdPath(fh.fd), close: () => fh.close() };
}
