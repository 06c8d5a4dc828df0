/**
 * WAL checkpoints on a worker thread, for a long-running process (the gateway).
 *
 * SQLite checkpoints a WAL database on the connection that commits, in COMMIT, once the log
 * holds `wal_autocheckpoint` pages (1,000 by default): it syncs the log, copies up to 4 MiB of
 * pages into the database file and syncs that, on the thread that called COMMIT. With
 * better-sqlite3 that is the gateway's event loop, a stall every few dozen calls under load.
 *
 * Here a worker thread holds its own connection to the same file and runs
 * `PRAGMA wal_checkpoint(PASSIVE)` whenever the log holds `pages` frames the database file does
 * not (PASSIVE never waits for, nor blocks, the writer or readers). It learns that number by
 * reading the wal-index header at the start of the -shm file (mxFrame at byte 16, nBackfill at
 * byte 96, native byte order: https://www.sqlite.org/walformat.html#the_wal_index_file_format)
 * every `intervalMs`, which costs one 136-byte read.
 *
 * The writer keeps its own automatic checkpoint, at `writerFallbackPages` (10× higher): a safety
 * net if this worker falls behind or dies, and the moment the log is fully checkpointed right
 * after a commit, which SQLite needs to restart the log from its beginning (a log only restarts
 * when a write transaction begins with nothing left to copy; under steady load the worker alone
 * would rarely see that). `journal_size_limit` then truncates a log that grew past it.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * One read-only descriptor of each -shm file per process, never closed: closing any descriptor of
 * a file drops every POSIX lock the process holds on it, and SQLite keeps its WAL locks there.
 */
const SHM_FDS = new Map<string, number>();

function shmFd(path: string): number {
  const key = resolve(`${path}-shm`);
  const held = SHM_FDS.get(key);
  if (held !== undefined) {
    if (fstatSync(held).ino === statSync(key).ino) return held;
    // The last connection of every process closed and SQLite unlinked the file: nothing locks the
    // old inode any more, so its descriptor can go.
    closeSync(held);
  }
  const fd = openSync(key, 'r');
  SHM_FDS.set(key, fd);
  return fd;
}

export interface CheckpointerOptions {
  /** Checkpoint once the log holds this many frames not yet in the database file. Default 1,000 (SQLite's own default). */
  pages?: number;
  /** How often the worker reads the wal-index header. Default 50 ms. */
  intervalMs?: number;
  /** The worker ended without being stopped (it crashed): the caller takes checkpoints back. */
  onDied?: () => void;
}

export const CHECKPOINT_PAGES_DEFAULT = 1000;
export const CHECKPOINT_INTERVAL_MS_DEFAULT = 50;
/** The writer's own automatic checkpoint while a checkpointer runs: a multiple of its threshold. */
export const WRITER_FALLBACK_FACTOR = 10;
/** A log larger than this is truncated back to it when it restarts (bytes). */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export interface Checkpointer {
  /** Whether the worker is running yet, the checkpoints it ran and the frames it copied. */
  stats(): { ready: boolean; checkpoints: number; frames: number; errors: number; lastError: string | null };
  /** Stop the worker (it finishes a checkpoint it is in). */
  stop(): Promise<void>;
}

// CommonJS, evaluated in the worker: no TypeScript loader there, and no path to a compiled file
// that differs between `tsx` runs and dist/.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const Database = require(workerData.module);
const { path, pages, intervalMs, littleEndian } = workerData;
const db = new Database(path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
db.pragma('synchronous = FULL');
db.pragma('wal_autocheckpoint = 0');
const shm = workerData.shmFd;
const buf = Buffer.alloc(136);
const u32 = (o) => (littleEndian ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
let stopped = false;
function tick() {
  if (stopped) return;
  try {
    const n = fs.readSync(shm, buf, 0, 136, 0);
    // Two copies of the header: equal unless a writer is updating it (then wait for the next tick).
    if (n === 136 && buf.compare(buf, 0, 48, 48, 96) === 0) {
      const mxFrame = u32(16);
      const nBackfill = u32(96);
      if (mxFrame >= nBackfill && mxFrame - nBackfill >= pages) {
        const r = db.pragma('wal_checkpoint(PASSIVE)')[0];
        parentPort.postMessage({ kind: 'checkpoint', frames: Math.max(0, r.checkpointed - nBackfill) });
      }
    }
  } catch (e) {
    parentPort.postMessage({ kind: 'error', message: String(e && e.message || e) });
  }
  setTimeout(tick, intervalMs);
}
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  stopped = true;
  try { db.close(); } finally { process.exit(0); }
});
parentPort.postMessage({ kind: 'ready' });
tick();
`;

/**
 * Start a checkpointer for the database at `path` (already open in WAL mode by the caller, which
 * must set its writer's `wal_autocheckpoint` to `pages × WRITER_FALLBACK_FACTOR`). The worker
 * does not keep the process alive.
 */
export function startCheckpointer(path: string, options: CheckpointerOptions = {}): Checkpointer {
  const pages = Math.max(1, Math.floor(options.pages ?? CHECKPOINT_PAGES_DEFAULT));
  const intervalMs = Math.max(1, Math.floor(options.intervalMs ?? CHECKPOINT_INTERVAL_MS_DEFAULT));
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: { module: createRequire(import.meta.url).resolve('better-sqlite3'), path, shmFd: shmFd(path), pages, intervalMs, littleEndian: endianness() === 'LE' },
  });
  worker.unref();
  const counts = { ready: false, checkpoints: 0, frames: 0, errors: 0, lastError: null as string | null };
  worker.on('message', (m: { kind: string; frames?: number; message?: string }) => {
    if (m.kind === 'ready') counts.ready = true;
    else if (m.kind === 'checkpoint') {
      counts.checkpoints += 1;
      counts.frames += m.frames ?? 0;
    } else if (m.kind === 'error') {
      counts.errors += 1;
      counts.lastError = m.message ?? 'unknown';
    }
  });
  // A worker that dies leaves the writer's own automatic checkpoint in charge: note it, go on.
  worker.on('error', (e) => {
    counts.errors += 1;
    counts.lastError = e.message;
  });
  let exited = false;
  let stopping = false;
  const exit = new Promise<void>((done) =>
    worker.once('exit', () => {
      exited = true;
      if (!stopping) options.onDied?.();
      done();
    }),
  );
  return {
    stats: () => ({ ...counts }),
    stop: () => {
      stopping = true;
      // Unref'd while it runs (it must not keep a process alive); ref'd while it stops, so a
      // caller awaiting its exit is not left with an event loop that ends first.
      if (!exited) {
        worker.ref();
        worker.postMessage('stop');
      }
      return exit;
    },
  };
}
