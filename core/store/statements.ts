/**
 * The port the repositories run SQL through (`SqlDb`), and their prepared-statement cache.
 *
 * Two implementations: SQLite (`sqliteDb`, better-sqlite3's own statements, at no cost: the
 * port is the subset of better-sqlite3's API the repos use) and PostgreSQL (core/store/pg, through
 * the synchronous bridge). Both are synchronous: the store layer is (see core/store/index.ts).
 *
 * Dialect: the repos' SQL is written to run on both where the two accept the same text (most of
 * it: upserts with `excluded`, `ON CONFLICT DO NOTHING`, `RETURNING`, `WITH RECURSIVE`). The
 * PostgreSQL side translates only the mechanical differences (`?` and `@name` parameters to
 * `$n`) and refuses, with a coded error, SQL it knows it cannot run (`rowid`, `json_each`,
 * `PRAGMA`, ...). For those a statement is given per dialect: `{ sqlite, postgres }`.
 *
 * Preparing compiles the SQL, which on the call path cost more than running it (a governed call
 * runs a dozen statements): statements are cached per connection and SQL text. better-sqlite3
 * statements stay valid for the connection's life; none of ours changes a statement's mode
 * (pluck/raw/expand), so sharing one per text is safe.
 */
import type Database from 'better-sqlite3';

export type Dialect = 'sqlite' | 'postgres';

/** What a write reports. `lastInsertRowid` is SQLite's; on PostgreSQL reading it throws (use RETURNING). */
export interface SqlRunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

/** A prepared statement: parameters are positional (`?`) or one object of named ones (`@name`). */
export interface SqlStatement {
  run(...params: unknown[]): SqlRunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

/** A connection the repositories run their SQL on. */
export interface SqlDb {
  readonly dialect: Dialect;
  prepare(sql: string): SqlStatement;
  /**
   * Called before the first append to a sequenced log (outbox, audit chain) in a transaction.
   * PostgreSQL: takes the cluster-wide log lock, so log sequence numbers commit in the order
   * they were taken and the audit chain's head cannot move under a writer on another replica.
   * SQLite has none (BEGIN IMMEDIATE already serializes writers).
   */
  orderAppends?(): void;
  /**
   * PostgreSQL: the audit entry this transaction appended last, kept while it holds the log lock
   * (no other writer can move the head then), so the next append needs no round trip to read it.
   * Forgotten whenever the lock may be gone (commit, rollback, a rolled-back savepoint).
   */
  rememberAppended?(row: unknown): void;
  /** The entry `rememberAppended` kept, or null when none is (then read the head). */
  appendedHead?(): unknown;
}

/** See `SqlDb.orderAppends`; nothing on SQLite. */
export function orderAppends(db: SqlDb): void {
  db.orderAppends?.();
}

/**
 * The PostgreSQL server's wall clock in epoch milliseconds. `clock_timestamp()`, not `now()`:
 * `now()` is the start of the transaction, and a store transaction is a group of units that may
 * have been open for a while (or a long `tx`), so a lease set from it would be shorter than asked
 * and an expiry checked against it late. The uncorrelated sub-select is evaluated once per
 * statement (an InitPlan): one value for every row the statement compares and sets, and usable
 * as an index condition (a volatile call per row is not).
 */
export const PG_CLOCK_MS = '(SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)';

/**
 * The clock leases, claims, replica heartbeats and dispatch deadlines are measured with, as SQL
 * for epoch milliseconds (docs/dev/cluster-leases.md, "Whose clock"). SQLite (one gateway per
 * database): the statement's `@now` parameter, the caller's clock, as before. PostgreSQL
 * (replicas on several hosts whose clocks may disagree): the server's clock; the caller's `@now`
 * is not used for these comparisons, so a replica with a skewed clock can neither take a live
 * lease nor keep a dead one alive.
 */
export function leaseClock(db: SqlDb): string {
  return db.dialect === 'postgres' ? PG_CLOCK_MS : '@now';
}

/** One statement in each dialect, for SQL the two do not share. */
export interface DialectSql {
  sqlite: string;
  postgres: string;
}

const SQLITE = new WeakMap<Database.Database, SqlDb>();

/** The port over a better-sqlite3 connection (one per connection, so the statement cache is shared). */
export function sqliteDb(db: Database.Database): SqlDb {
  let port = SQLITE.get(db);
  if (port === undefined) {
    port = { dialect: 'sqlite', prepare: (sql) => db.prepare(sql) };
    SQLITE.set(db, port);
  }
  return port;
}

const CACHES = new WeakMap<SqlDb, Map<string, SqlStatement>>();

export function prepared(db: SqlDb, sql: string | DialectSql): SqlStatement {
  const text = typeof sql === 'string' ? sql : sql[db.dialect];
  let cache = CACHES.get(db);
  if (!cache) {
    cache = new Map();
    CACHES.set(db, cache);
  }
  let s = cache.get(text);
  if (!s) {
    s = db.prepare(text);
    cache.set(text, s);
  }
  return s;
}
