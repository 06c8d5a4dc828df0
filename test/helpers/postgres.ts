// A throwaway PostgreSQL cluster for tests of the PostgreSQL state store. Debian's `postgresql`
// package puts its binaries in /usr/lib/postgresql/<major>/bin (not on PATH); a test file starts
// its own cluster there: initdb into a temp dir, the server on a free port bound to 127.0.0.1
// (its unix socket in the temp dir, never the system's), one database per `database()` call,
// and `pg_ctl stop -m fast` in teardown. PostgreSQL refuses to run as root, so as root it runs
// as the `postgres` user. Without PostgreSQL, tests skip with the reason from `skipWithoutPostgres`
// (.ci/run installs it; it never starts the system's service).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPgDb } from '../../core/store/pg/db.js';

export const POSTGRES_MISSING = 'PostgreSQL not found (initdb, pg_ctl, postgres and psql under /usr/lib/postgresql/*/bin): apt-get install postgresql';

interface Bins {
  initdb: string;
  pgCtl: string;
  postgres: string;
  /** The client, to create each test's database (Debian's postgresql-client, a dependency of postgresql). */
  psql: string;
}

let bins: Bins | null | undefined;

/** The newest installed PostgreSQL's initdb, pg_ctl, postgres and psql, or null (a test then skips). */
export function findPostgres(): Bins | null {
  if (bins !== undefined) return bins;
  bins = null;
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const m of majors) {
    const dir = join(root, m, 'bin');
    const b = { initdb: join(dir, 'initdb'), pgCtl: join(dir, 'pg_ctl'), postgres: join(dir, 'postgres'), psql: join(dir, 'psql') };
    if (existsSync(b.initdb) && existsSync(b.pgCtl) && existsSync(b.postgres) && existsSync(b.psql)) {
      bins = b;
      break;
    }
  }
  return bins;
}

/** The reason to skip a PostgreSQL test, or false to run it (the form tap's `skip` option takes). */
export function skipWithoutPostgres(): string | false {
  if (findPostgres() === null) return POSTGRES_MISSING;
  if (isRoot() && postgresUser() === null) return 'PostgreSQL is installed but there is no `postgres` user to run it as (it refuses to run as root)';
  return false;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function postgresUser(): { uid: number; gid: number } | null {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postgres:'));
    if (line === undefined) return null;
    const f = line.split(':');
    return { uid: Number(f[2]), gid: Number(f[3]) };
  } catch {
    return null;
  }
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released for the server to take). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface PgCluster {
  readonly port: number;
  /** The cluster's data directory (tests that corrupt or inspect it). */
  readonly dataDir: string;
  /** The postmaster's pid (tests that kill the server). */
  pid(): number;
  /** Creates a fresh database and returns its connection URL. */
  database(name?: string): string;
  /**
   * A fresh database whose schema is already migrated, and its URL: a copy (`CREATE DATABASE …
   * TEMPLATE`, a file copy) of a template this cluster migrated once, where migrating a new
   * database costs seconds. For tests of anything but the migrations themselves (a gateway's
   * first open then finds the current schema, as a restarted gateway does).
   */
  migratedDatabase(): Promise<string>;
  /** Starts the server again after `stop` or a kill (same data, same port). */
  start(): void;
  /** `pg_ctl stop -m fast`; a no-op when it is not running. */
  stop(): void;
  /**
   * `pg_ctl restart -m fast` (or `start` after a kill) in a child process, without blocking the
   * event loop: a gateway in this process keeps serving (and failing) meanwhile.
   */
  restartAsync(mode?: 'restart' | 'start'): Promise<void>;
  /** Pids of the postmaster and every process it started (backends, checkpointer, …). */
  processes(): number[];
  /** Stops the server and removes the temp dir. */
  destroy(): void;
}

let dbCounter = 0;

/**
 * Start a throwaway cluster. `settings` are extra server settings (`-c name=value`), e.g.
 * `{ synchronous_commit: 'off' }` to test that the store refuses such a server.
 */
export async function startPostgres(settings: Record<string, string> = {}): Promise<PgCluster> {
  const b = findPostgres();
  if (b === null) throw new Error(POSTGRES_MISSING);
  const owner = isRoot() ? postgresUser() : null;
  if (isRoot() && owner === null) throw new Error('no postgres user to run PostgreSQL as');
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-pg-'));
  const dataDir = join(dir, 'data');
  const sockDir = dir;
  if (owner !== null) chownSync(dir, owner.uid, owner.gid);
  const as = owner !== null ? { uid: owner.uid, gid: owner.gid } : {};
  const run = (file: string, args: string[]): void => {
    const r = spawnSync(file, args, { ...as, cwd: dir, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' } });
    if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
  };
  // --no-sync: the cluster is thrown away; the server itself runs with fsync on (the store checks).
  const initdb = ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'];
  // A default collation that does not sort by bytes (ICU en-US, PostgreSQL 15+), so a test
  // catches a column that sorts differently from SQLite; C where ICU is not available.
  try {
    run(b.initdb, [...initdb, '--locale-provider=icu', '--icu-locale=en-US']);
  } catch {
    rmSync(dataDir, { recursive: true, force: true });
    run(b.initdb, initdb);
  }
  const port = await freePort();
  const opts = [`-p ${port}`, `-k ${sockDir}`, "-c listen_addresses=127.0.0.1", ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ');
  let running = false;
  let template: Promise<string> | null = null;
  const cluster: PgCluster = {
    port,
    dataDir,
    pid: () => Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]),
    database: (name) => {
      const db = name ?? `t${process.pid}_${++dbCounter}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`bad database name ${db}`);
      execFileSync(b.psql, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${db}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      return `postgres://postgres@127.0.0.1:${port}/${db}`;
    },
    migratedDatabase: async () => {
      template ??= (async () => {
        const name = `tmpl_${process.pid}`;
        await openPgDb(cluster.database(name)).close();
        return name;
      })();
      const from = await template;
      const db = `t${process.pid}_${++dbCounter}`;
      for (let i = 0; ; i++) {
        try {
          execFileSync(b.psql, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${db} TEMPLATE ${from}`], { stdio: ['ignore', 'ignore', 'pipe'] });
          return `postgres://postgres@127.0.0.1:${port}/${db}`;
        } catch (e) {
          // The template's migrating session may still be ending, or another copy being made
          // (a template has to be free of other sessions): try again shortly.
          if (i >= 100 || !/being accessed by other users/.test(String((e as { stderr?: Buffer }).stderr ?? e))) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    start: () => {
      run(b.pgCtl, ['-D', dataDir, '-o', opts, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start']);
      running = true;
    },
    stop: () => {
      if (!running && !existsSync(join(dataDir, 'postmaster.pid'))) return;
      running = false;
      const r = spawnSync(b.pgCtl, ['-D', dataDir, '-m', 'fast', '-w', 'stop'], { ...as, cwd: dir, encoding: 'utf8' });
      // "not running" (3) after a kill is fine; anything else is reported.
      if (r.status !== 0 && existsSync(join(dataDir, 'postmaster.pid'))) throw new Error(`pg_ctl stop failed: ${r.stderr}`);
    },
    restartAsync: (mode = 'restart') =>
      new Promise<void>((resolve, reject) => {
        const args = ['-D', dataDir, '-o', opts, '-l', join(dir, 'server.log'), '-w', '-t', '30', ...(mode === 'restart' ? ['-m', 'fast'] : []), mode];
        const child = spawn(b.pgCtl, args, { ...as, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' } });
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.once('error', reject);
        child.once('exit', (code) => {
          if (code === 0) {
            running = true;
            resolve();
          } else reject(new Error(`pg_ctl ${mode} failed (${code}): ${err}`));
        });
      }),
    processes: () => {
      const master = cluster.pid();
      const kids = readdirSync('/proc')
        .filter((d) => /^[0-9]+$/.test(d))
        .filter((d) => {
          try {
            // Field 4 of /proc/<pid>/stat is the parent pid (after the parenthesised name).
            const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
            return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === master;
          } catch {
            return false;
          }
        })
        .map(Number);
      return [master, ...kids];
    },
    destroy: () => {
      try {
        cluster.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    cluster.start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  // A test file killed before its teardown (tap's timeout, a crash, SIGKILL) would leave the
  // server running: a detached watchdog stops it and removes the temp dir once this process is
  // gone. It checks /proc rather than `kill -0`, which fails across users (it runs as postgres).
  const watchdog = spawn(
    '/bin/sh',
    ['-c', 'while [ -d "/proc/$1" ]; do sleep 2; done; "$2" -D "$3" -m immediate -w stop >/dev/null 2>&1; rm -rf "$4"', 'pg-watchdog', String(process.pid), b.pgCtl, dataDir, dir],
    { ...as, detached: true, stdio: 'ignore' },
  );
  watchdog.unref();
  const destroy = cluster.destroy;
  cluster.destroy = () => {
    try {
      destroy();
    } finally {
      try {
        if (watchdog.pid !== undefined) process.kill(watchdog.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  return cluster;
}

/**
 * One cluster for a tap test file: started on first use, destroyed at the end of the file.
 * `tap` is the file's root test (its teardown stops the server).
 */
export function sharedPostgres(tap: { teardown: (fn: () => Promise<void>) => void }): () => Promise<PgCluster> {
  let p: Promise<PgCluster> | null = null;
  return () => {
    if (p === null) {
      p = startPostgres();
      const started = p;
      tap.teardown(async () => {
        const c = await started.catch(() => null);
        c?.destroy();
      });
    }
    return p;
  };
}
