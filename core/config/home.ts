/**
 * Where a gateway home is and what it holds: the default address, the home's paths, and creating
 * it safely. No schema or validator is loaded here, so commands that only need to find the home
 * (the CLI talking to a running gateway) stay cheap; loading and checking config.json is index.ts.
 */
import { existsSync, mkdirSync, statSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { TyrumError } from '../errors/index.js';

export const DEFAULT_PORT = 8788;
export const DEFAULT_HOST = '127.0.0.1';

/** Paths of the files the gateway keeps in its home. */
export function homePaths(home: string) {
  return {
    home,
    config: join(home, 'config.json'),
    db: join(home, 'tyrum.db'),
    gatewayKey: join(home, 'gateway.key'),
    auditCheckpoint: join(home, 'audit.checkpoint.json'),
    clientKey: join(home, 'client-device.key'),
    /** Who holds the gateway lock: the pid and start time of the gateway running on this home (core/config/lock.ts). */
    gatewayLock: join(home, 'gateway.lock'),
    /** The gateway lock itself, held by the operating system for the gateway's process (core/store/file-lock.ts). */
    gatewayLockDb: join(home, 'gateway.lock.sqlite'),
    /** Content-addressed artifact blobs (core/artifacts/fs-store.ts). */
    artifacts: join(home, 'artifacts'),
  };
}

/** --home, else $TYRUM_HOME, else ~/.tyrum. */
export function resolveHome(flag?: string): string {
  return resolve(flag ?? process.env.TYRUM_HOME ?? join(homedir(), '.tyrum'));
}

/** Creates the home (0700) if missing; refuses one that group or others can access. */
export function ensureHome(home: string): void {
  if (!existsSync(home)) mkdirSync(home, { recursive: true, mode: 0o700 });
  const st = statSync(home);
  if (!st.isDirectory()) throw new TyrumError('TYRUM_ERR_HOME', `${home} is not a directory`);
  if ((st.mode & 0o077) !== 0) {
    // A home we just made is 0700; a pre-existing, too-open home is tightened only if we own it.
    if (typeof process.getuid === 'function' && st.uid === process.getuid()) chmodSync(home, 0o700);
    else throw new TyrumError('TYRUM_ERR_HOME', `${home} is accessible by group or others; run: chmod 700 ${home}`);
  }
}
