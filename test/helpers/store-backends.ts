// One set of repository tests, run against both state stores: SQLite (a real file in the test's
// dir, through openStore) and PostgreSQL (a database of a throwaway cluster, through openPgDb;
// skipped with the harness's reason when PostgreSQL is not installed). `forEachBackend` declares
// the same test once per backend, named "... (sqlite)" / "... (postgres)". A test whose
// assertions hold on one store only (times the caller sets, where PostgreSQL uses its own clock)
// names why its PostgreSQL half is skipped (`only`).
import { join } from 'node:path';
import { createRepos, openStore, type Repos } from '../../core/store/index.js';
import { openPgDb, pgSchemaVersion, type PgDb } from '../../core/store/pg/db.js';
import { sharedPostgres, skipWithoutPostgres } from './postgres.js';

export interface Backend {
  readonly name: 'sqlite' | 'postgres';
  readonly repos: Repos;
  /** Run `fn` in one transaction: committed if it returns, rolled back if it throws. */
  tx<T>(fn: () => T): T;
  schemaVersion(): number;
}

interface TapLike {
  test(name: string, opts: { skip: string | false }, fn: (t: TestLike) => Promise<void>): unknown;
  teardown(fn: () => unknown): void;
}

interface TestLike {
  testdir(): string;
  teardown(fn: () => unknown): void;
}

function pgTx(db: PgDb): <T>(fn: () => T) => T {
  return <T>(fn: () => T): T => {
    db.exec('BEGIN');
    try {
      const v = fn();
      db.exec('COMMIT');
      return v;
    } catch (e) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // The connection is gone: the server rolled back.
      }
      throw e;
    }
  };
}

/**
 * Declare `name` once per backend on the file's root test `tap`. The PostgreSQL cluster is
 * shared by the file's tests (each gets its own database) and stopped when the file ends.
 */
export function forEachBackend<T extends TestLike>(tap: TapLike, name: string, fn: (t: T, b: Backend) => Promise<void>, only?: { postgres: string }): void {
  const cluster = pgCluster(tap);
  tap.test(`${name} (sqlite)`, { skip: false }, async (t) => {
    const s = openStore(join(t.testdir(), 'store.db'));
    t.teardown(() => s.close());
    await fn(t as T, { name: 'sqlite', repos: s, tx: (f) => s.tx(f), schemaVersion: () => s.schemaVersion() });
  });
  tap.test(`${name} (postgres)`, { skip: only?.postgres ?? skipWithoutPostgres() }, async (t) => {
    const db = openPgDb((await cluster()).database());
    t.teardown(() => db.close());
    await fn(t as T, { name: 'postgres', repos: createRepos(db), tx: pgTx(db), schemaVersion: () => pgSchemaVersion(db) });
  });
}

const CLUSTERS = new WeakMap<object, ReturnType<typeof sharedPostgres>>();

function pgCluster(tap: TapLike): ReturnType<typeof sharedPostgres> {
  let c = CLUSTERS.get(tap);
  if (c === undefined) {
    c = sharedPostgres(tap as { teardown: (fn: () => Promise<void>) => void });
    CLUSTERS.set(tap, c);
  }
  return c;
}
