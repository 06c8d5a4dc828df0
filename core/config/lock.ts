/**
 * One gateway per home: `<home>/gateway.lock` holds the pid of the gateway running on it, taken
 * when it starts and removed when it stops. A second `tyrum start` on the same home is refused
 * (two gateways would serve the same database and audit chain, each believing it owns the runs).
 * A lock whose process is gone (a crash, SIGKILL, a reboot) is stale and taken over. CLI commands
 * that work on the home directly take no lock: they are meant to run beside a gateway.
 */
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { TyrumError } from '../errors/index.js';
import { homePaths } from './index.js';

export interface HomeLock {
  readonly path: string;
  /** Removes the lock file (once; only while it still names this process). */
  release(): void;
}

/** Lock files held by this process, so a second gateway in the same process is refused too. */
const held = new Set<string>();

/** Takes the gateway lock of `home` (which must exist), or throws TYRUM_ERR_HOME_LOCKED naming the holder. */
export function lockHome(home: string): HomeLock {
  const path = homePaths(home).gatewayLock;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(path)) {
      held.add(path);
      let released = false;
      return {
        path,
        release: () => {
          if (released) return;
          released = true;
          held.delete(path);
          if (readHolder(path)?.pid === process.pid) rmSync(path, { force: true });
        },
      };
    }
    const holder = readHolder(path);
    if (holder !== null && (holder.pid === process.pid ? held.has(path) : alive(holder.pid))) {
      throw new TyrumError(
        'TYRUM_ERR_HOME_LOCKED',
        `another gateway (pid ${holder.pid}, started ${holder.started_at ?? 'at an unknown time'}) is running on ${home}; stop it first, or start this one with another --home. If no gateway runs, remove ${path}`,
        { pid: holder.pid, lock: path },
      );
    }
    // Stale: its process is gone (or the file is unreadable); take it over.
    rmSync(path, { force: true });
  }
  throw new TyrumError('TYRUM_ERR_HOME_LOCKED', `could not take ${path}: another gateway is starting on ${home} at the same time`, { lock: path });
}

/** Creates the lock file with its content in one step (a reader never sees it empty); false if it exists. */
function tryCreate(path: string): boolean {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify({ pid: process.pid, started_at: new Date().toISOString() })}\n`, { mode: 0o600 });
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new TyrumError('TYRUM_ERR_HOME', `cannot create ${path}: ${(e as Error).message}`);
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

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
