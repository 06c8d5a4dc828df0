// Shared by the tests that race worker processes on one PostgreSQL database (turn leases,
// delivery claims): a fresh database with a store to seed it and a read-only autocommit
// connection to read what the workers committed, and worker children speaking JSON lines on
// stdout (a fixture per test). Everything is stopped at the test's end.
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRepos, openPgStore, type Repos, type Store } from '../../core/store/index.js';
import { openPgDb } from '../../core/store/pg/db.js';
import type { PgCluster } from './postgres.js';

export interface WorkerProcess {
  child: ChildProcess;
  /** The JSON lines it printed, in order (a line that is not JSON as `{ raw }`; a failed exit as `{ exited, stderr }`). */
  seen: Array<Record<string, unknown>>;
  /** How many lines had `key`. */
  count(key: string): number;
  /** Writes a line to its stdin. */
  send(line: string): void;
  err(): string;
}

export interface WorkerDb {
  url: string;
  /** Seeds the database (and writes behind the workers' backs). */
  store: Store;
  /** What the workers committed, through a connection of its own. */
  read: Repos;
  /** Starts `node --import tsx fixture ...args`; killed at the test's end (resumed first, should it be stopped). */
  spawnWorker(fixture: string, args: readonly string[]): WorkerProcess;
}

/** A fresh database of `cluster` for a test racing worker processes on it. */
export async function workerDb(t: Test, cluster: () => Promise<PgCluster>): Promise<WorkerDb> {
  const url = (await cluster()).database();
  const store = openPgStore(url);
  const readerDb = openPgDb(url, { readonly: true, autocommit: true });
  const children: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGCONT');
        c.kill('SIGKILL');
      }
    }
    await readerDb.close();
    store.close();
  });
  const spawnWorker = (fixture: string, args: readonly string[]): WorkerProcess => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    const seen: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        seen.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        seen.push({ raw: l });
      }
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (code !== 0 && code !== null) seen.push({ exited: code, stderr: err });
    });
    return { child, seen, count: (k) => seen.filter((o) => o[k] !== undefined).length, send: (line) => child.stdin!.write(`${line}\n`), err: () => err };
  };
  return { url, store, read: createRepos(readerDb), spawnWorker };
}

/** Polls `pick` every 50 ms until it returns something truthy; throws after `timeoutMs`. */
export async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
