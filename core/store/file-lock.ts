/**
 * An exclusive lock that the operating system holds for this process and drops when the process
 * ends, however it ends (exit, crash, SIGKILL, a reboot): SQLite's own file lock (POSIX advisory
 * locks on Linux and macOS, LockFileEx on Windows) on an empty database, taken with BEGIN
 * EXCLUSIVE and never committed. Nothing is written; the file stays empty.
 *
 * Why not a pid file alone: deciding that a pid file is stale and taking it over is two steps,
 * and two processes that both found it stale could both take it (one removes the file the other
 * just created); a pid can also be reused by an unrelated process. The kernel's lock has neither
 * problem. Within one process SQLite shares locks between connections, so a second connection of
 * the same process is refused too.
 *
 * better-sqlite3 stays inside core/store: this module is how the rest of the code gets the lock.
 */
import { chmodSync } from 'node:fs';
import Database from 'better-sqlite3';
import { TyrumError } from '../errors/index.js';

export interface FileLock {
  /** Drops the lock (once). The process ending drops it too. */
  release(): void;
}

/** Takes the lock on `path` (created owner-only if missing), or returns null when another holder has it. */
export function tryFileLock(path: string): FileLock | null {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 0 });
  } catch (e) {
    throw new TyrumError('TYRUM_ERR_HOME', `cannot open the lock file ${path}: ${(e as Error).message}`, undefined, { cause: e });
  }
  try {
    chmodSync(path, 0o600);
    // No journal file: nothing is ever written under this lock.
    db.pragma('journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code === 'SQLITE_BUSY' || (e as { code?: string }).code === 'SQLITE_LOCKED') return null;
    throw new TyrumError('TYRUM_ERR_HOME', `cannot lock ${path}: ${(e as Error).message}`, undefined, { cause: e });
  }
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      if (db.open) db.close();
    },
  };
}
