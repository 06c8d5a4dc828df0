/**
 * One gateway per home. The lock itself is held by the operating system
 * (`<home>/gateway.lock.sqlite`, core/store/file-lock.ts): it is dropped when the gateway's
 * process ends, however it ends, so a crashed gateway never leaves a lock to clean up and two
 * starts racing for a home cannot both win. `<home>/gateway.lock` names the holder (pid, start
 * time) for the refusal's message and for people; it is written once the lock is held and removed
 * on a clean stop, and one left by a crash means nothing.
 *
 * A second `tyrum start` on the same home is refused (two gateways would serve the same database
 * and audit chain, each believing it owns the runs). CLI commands that work on the home directly
 * take no lock: they are meant to run beside a gateway.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { TyrumError } from '../errors/index.js';
import { tryFileLock } from '../store/file-lock.js';
import { homePaths } from './index.js';

export interface HomeLock {
  readonly path: string;
  /** Drops the lock and removes the holder file (once; the file only while it still names this process). */
  release(): void;
}

/** Lock files held by this process, so a second gateway in the same process is refused too. */
const held = new Set<string>();

/** Takes the gateway lock of `home` (which must exist), or throws TYRUM_ERR_HOME_LOCKED naming the holder. */
export function lockHome(home: string): HomeLock {
  const paths = homePaths(home);
  const path = paths.gatewayLock;
  const lock = held.has(path) ? null : tryFileLock(paths.gatewayLockDb);
  if (lock === null) {
    const holder = readHolder(path);
    throw new TyrumError(
      'TYRUM_ERR_HOME_LOCKED',
      holder !== null
        ? `another gateway (pid ${holder.pid}, started ${holder.started_at ?? 'at an unknown time'}) is running on ${home}; stop it first, or start this one with another --home`
        : `another gateway is running on ${home} (or starting); stop it first, or start this one with another --home`,
      { ...(holder !== null ? { pid: holder.pid } : {}), lock: paths.gatewayLockDb },
    );
  }
  held.add(path);
  try {
    writeHolder(path);
  } catch (e) {
    held.delete(path);
    lock.release();
    throw new TyrumError('TYRUM_ERR_HOME', `cannot write ${path}: ${(e as Error).message}`);
  }
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      held.delete(path);
      if (readHolder(path)?.pid === process.pid) rmSync(path, { force: true });
      lock.release();
    },
  };
}

/** Writes the holder file in one step (a reader never sees it half written). */
function writeHolder(path: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify({ pid: process.pid, started_at: new Date().toISOString() })}\n`, { mode: 0o600 });
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readHolder(path: string): { pid: number; started_at?: string } | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as { pid?: unknown; started_at?: unknown };
    if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return null;
    return { pid: v.pid, ...(typeof v.started_at === 'string' ? { started_at: v.started_at } : {}) };
  } catch {
    return null;
  }
}
