/**
 * The repositories' SQL port (`SqlDb`, core/store/statements.ts) on PostgreSQL, through the
 * synchronous bridge, and opening a PostgreSQL database: durability settings checked, schema
 * migrated under an advisory lock.
 *
 * Translation is mechanical and small, and refuses what it cannot do rather than guess:
 * - parameters: `?` (positional) and `@name` (one object of named values; a name may repeat)
 *   become `$n`; a statement mixing the two, or already using `$n`, is refused;
 * - SQL known not to run on PostgreSQL (`rowid` is fine, see below; `json_each`, `json_extract`,
 *   `PRAGMA`, `INSERT OR ...`, `CAST(... AS BLOB)`, `GLOB`, `strftime`, `last_insert_rowid`,
 *   `IFNULL`, `instr`, `group_concat`, `typeof`, `BEGIN IMMEDIATE`, ...) is refused with
 *   TYRUM_ERR_INTERNAL naming the construct: such a statement needs a `{ sqlite, postgres }`
 *   variant in its repository.
 * Results: a column named `rowid` (the stand-in for SQLite's implicit rowid, see
 * core/store/pg/migrations.ts) is dropped, as SQLite leaves it out of `SELECT *`; booleans become
 * 1/0 as SQLite returns them; `lastInsertRowid` does not exist (reading it throws: use RETURNING).
 */
import { randomUUID } from 'node:crypto';
import { TyrumError } from '../../errors/index.js';
import type { Migration } from '../migrations.js';
import type { SqlDb, SqlRunResult, SqlStatement } from '../statements.js';
import { PgBridge, describeUrl, type PgBridgeOptions, type PgResult } from './bridge.js';
import { PG_MIGRATIONS } from './migrations.js';

/** SQLite constructs PostgreSQL does not run; matched outside string literals and comments. */
const UNPORTABLE: ReadonlyArray<[RegExp, string]> = [
  [/\bjson_(each|extract|array|object|group_array|group_object|set|insert|remove|type|valid|quote|patch)\b/i, 'json_* functions'],
  [/\bPRAGMA\b/i, 'PRAGMA'],
  [/\bINSERT\s+OR\b/i, 'INSERT OR ...'],
  [/\bREPLACE\s+INTO\b/i, 'REPLACE INTO'],
  [/\bAS\s+BLOB\b/i, 'CAST(... AS BLOB)'],
  [/\bGLOB\b/i, 'GLOB'],
  [/\b(strftime|julianday|datetime|unixepoch)\s*\(/i, 'SQLite date functions'],
  [/\blast_insert_rowid\s*\(/i, 'last_insert_rowid()'],
  [/\b(ifnull|instr|group_concat|typeof|printf|randomblob|total_changes|changes)\s*\(/i, 'an SQLite-only function'],
  [/\bBEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b/i, 'BEGIN IMMEDIATE/EXCLUSIVE/DEFERRED'],
  [/\bsqlite_\w+/i, 'sqlite_* tables'],
];

export interface Translated {
  text: string;
  /** Named parameters in `$n` order, or null for positional ones. */
  names: string[] | null;
  /** How many positional parameters (when `names` is null). */
  count: number;
}

/** SQLite-flavoured SQL → PostgreSQL's, or a coded refusal (see the header). */
export function translate(sql: string): Translated {
  let out = '';
  let code = '';
  const names: string[] = [];
  let positional = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      let j = i + 1;
      for (; j < n; j++) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) j++;
          else break;
        }
      }
      out += sql.slice(i, j + 1);
      code += ' ';
      i = j + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      i = j === -1 ? n : j;
    } else if (c === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      i = j === -1 ? n : j + 2;
    } else if (c === '?') {
      positional += 1;
      out += `$${positional}`;
      code += ' ';
      i += 1;
    } else if (c === '@' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      let j = i + 1;
      while (j < n && /\w/.test(sql[j]!)) j++;
      const name = sql.slice(i + 1, j);
      let k = names.indexOf(name);
      if (k === -1) k = names.push(name) - 1;
      out += `$${k + 1}`;
      code += ' ';
      i = j;
    } else if (c === '$' && /[0-9]/.test(sql[i + 1] ?? '')) {
      throw refuse(sql, '$n parameters (write ? or @name)');
    } else {
      out += c;
      code += c;
      i += 1;
    }
  }
  if (positional > 0 && names.length > 0) throw refuse(sql, 'both ? and @name parameters');
  for (const [re, what] of UNPORTABLE) if (re.test(code)) throw refuse(sql, what);
  return { text: out, names: names.length > 0 ? names : null, count: positional };
}

function refuse(sql: string, what: string): TyrumError {
  return new TyrumError('TYRUM_ERR_INTERNAL', `SQL not portable to PostgreSQL (${what}); give the statement a { sqlite, postgres } variant: ${sql.replace(/\s+/g, ' ').trim().slice(0, 200)}`);
}

const BOOL = 16;

function bindValue(v: unknown, sql: string): unknown {
  if (v === undefined) throw new TyrumError('TYRUM_ERR_INTERNAL', `an undefined SQL parameter: ${sql.slice(0, 120)}`);
  if (typeof v === 'boolean') throw new TyrumError('TYRUM_ERR_INTERNAL', `a boolean SQL parameter (the schema stores 0/1): ${sql.slice(0, 120)}`);
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) return v.toString();
    return Number(v);
  }
  return v;
}

function rowsOf(r: PgResult): Array<Record<string, unknown>> {
  const bools = r.fields.filter((f) => f.dataTypeID === BOOL).map((f) => f.name);
  const hidden = r.fields.some((f) => f.name === 'rowid');
  if (bools.length === 0 && !hidden) return r.rows;
  for (const row of r.rows) {
    for (const b of bools) if (typeof row[b] === 'boolean') row[b] = row[b] ? 1 : 0;
    if (hidden) delete row.rowid;
  }
  return r.rows;
}

class PgStatement implements SqlStatement {
  private readonly t: Translated;

  constructor(
    private readonly db: PgDb,
    private readonly sql: string,
  ) {
    this.t = translate(sql);
  }

  private values(params: unknown[]): unknown[] {
    if (this.t.names !== null) {
      const obj = params[0];
      if (params.length !== 1 || typeof obj !== 'object' || obj === null || Buffer.isBuffer(obj)) {
        throw new TyrumError('TYRUM_ERR_INTERNAL', `named SQL parameters need one object: ${this.sql.slice(0, 120)}`);
      }
      return this.t.names.map((name) => {
        const v = (obj as Record<string, unknown>)[name];
        if (v === undefined) throw new TyrumError('TYRUM_ERR_INTERNAL', `missing named SQL parameter @${name}: ${this.sql.slice(0, 120)}`);
        return bindValue(v, this.sql);
      });
    }
    if (params.length !== this.t.count) throw new TyrumError('TYRUM_ERR_INTERNAL', `expected ${this.t.count} SQL parameters, got ${params.length}: ${this.sql.slice(0, 120)}`);
    return params.map((v) => bindValue(v, this.sql));
  }

  private exec(params: unknown[]): PgResult {
    const values = this.values(params);
    // Inside the store's transaction, a statement after a lost connection would run on a new
    // session, outside it: refused (the bridge also fails the first statement after a drop).
    if (this.db.txGeneration !== null && this.db.bridge.generation !== this.db.txGeneration) throw this.db.lostTransaction();
    return this.db.bridge.query(this.t.text, values, true, !this.db.autocommit);
  }

  run(...params: unknown[]): SqlRunResult {
    const r = this.exec(params);
    const sql = this.sql;
    return {
      changes: r.rowCount,
      get lastInsertRowid(): number {
        throw new TyrumError('TYRUM_ERR_INTERNAL', `lastInsertRowid does not exist on PostgreSQL (use RETURNING): ${sql.slice(0, 120)}`);
      },
    };
  }

  get(...params: unknown[]): unknown {
    return rowsOf(this.exec(params))[0];
  }

  all(...params: unknown[]): unknown[] {
    return rowsOf(this.exec(params));
  }

  *iterate(...params: unknown[]): IterableIterator<unknown> {
    // The whole result at once: a cursor would hold the connection between steps of the caller.
    yield* rowsOf(this.exec(params));
  }
}

/** A PostgreSQL connection as the repositories' port; also runs raw SQL for the store and migrations. */
export class PgDb implements SqlDb {
  readonly dialect = 'postgres' as const;
  /**
   * The bridge generation the store's open transaction began in, or null outside one: set by the
   * Store at BEGIN, cleared at COMMIT or ROLLBACK.
   */
  txGeneration: number | null = null;

  constructor(
    readonly bridge: PgBridge,
    /** A connection that never opens a transaction (the store's reader): after a drop its statements just reconnect. */
    readonly autocommit = false,
  ) {}

  /** The log lock is held by the open transaction (see `orderAppends`). */
  private appendsOrderedFlag = false;
  /** The audit entry appended last under the lock held now (see SqlDb.rememberAppended). */
  private lastAppended: unknown = null;

  private get appendsOrdered(): boolean {
    return this.appendsOrderedFlag;
  }

  private set appendsOrdered(held: boolean) {
    this.appendsOrderedFlag = held;
    if (!held) this.lastAppended = null;
  }

  rememberAppended(row: unknown): void {
    if (this.appendsOrderedFlag) this.lastAppended = row;
  }

  appendedHead(): unknown {
    return this.appendsOrderedFlag ? this.lastAppended : null;
  }

  /**
   * Before the first outbox or audit append of a transaction: take the cluster-wide log lock
   * (a transaction-scoped advisory lock, released by COMMIT or ROLLBACK), so transactions that
   * append commit one at a time in the order they took their sequence numbers; a reader at
   * cursor N can never see N+1 committed before N. The same round trip queues a notification on
   * the outbox channel, delivered to every listening replica when the transaction commits (and
   * dropped if it rolls back): the backplane's wake-up.
   */
  orderAppends(): void {
    if (this.appendsOrdered) return;
    this.bridge.query(`SELECT pg_advisory_xact_lock(${LOG_LOCK}), pg_notify('${OUTBOX_CHANNEL}', '')`, [], true);
    this.appendsOrdered = true;
  }

  /**
   * The transaction ended, or a savepoint the lock may have been taken in was rolled back (then
   * the lock may be gone with it): the next append takes it again (taking it twice is harmless).
   */
  appendsReleased(): void {
    this.appendsOrdered = false;
  }

  /**
   * This connection's key in tyrum_writers (migration 18): random, so the commits another process
   * or replica makes are told from ours (`othersCommits`).
   */
  readonly writerId = randomUUID();

  /**
   * BEGIN the store's group transaction: nothing can be open before it, so a dropped connection
   * just reconnects. The same round trip bumps this writer's commit counter, which becomes
   * visible to other stores when the transaction commits (their `dataVersion` changes).
   */
  begin(): void {
    this.appendsOrdered = false;
    // The log lock is taken here, first, for every write transaction, not at its first append:
    // so cluster-wide, write transactions run one at a time and always take the log lock before
    // any row lock. Taken at the first append instead, a group that had appended (holding the
    // lock) could wait for a row another replica's unit held while that unit waited for the lock
    // (a deadlock), and per-conversation read-then-write sequences of two replicas (accepting a
    // message while another claims the queued turn; MAX(seq) + 1) could interleave. The lock's
    // notification also tells the other replicas of every commit (their dataVersion wake-up).
    // The id is a UUID (no quote can occur in it); parameters cannot go with several statements.
    // The group's first unit's savepoint is set by the same round trip (see `openUnit`).
    this.bridge.query(
      `BEGIN; SELECT pg_advisory_xact_lock(${LOG_LOCK}), pg_notify('${OUTBOX_CHANNEL}', ''); ` +
        `INSERT INTO tyrum_writers (writer, commits, last_at) VALUES ('${this.writerId}', 1, ${Date.now()}) ` +
        'ON CONFLICT (writer) DO UPDATE SET commits = tyrum_writers.commits + 1, last_at = excluded.last_at; ' +
        `SAVEPOINT ${UNIT}`,
      [],
      false,
      false,
    );
    this.appendsOrdered = true;
    this.unit = 'fresh';
  }

  /**
   * The group transaction's unit savepoint: 'fresh' (set, no statement of a unit ran in it yet),
   * 'done' (the last unit succeeded; its savepoint is left for the next unit or COMMIT to release),
   * 'open' (a unit is running in it) or 'none' (outside a group transaction).
   */
  private unit: 'none' | 'fresh' | 'open' | 'done' = 'none';

  /**
   * A unit of the group begins: it needs a savepoint of its own, so that a throw rolls back this
   * unit only. Round trips are what a governed call costs here (each statement blocks the thread
   * for one), so savepoints are set lazily: the first unit's with the BEGIN, and later ones as
   * `RELEASE unit; SAVEPOINT unit` in one round trip; a successful unit's own RELEASE is not sent
   * (the next unit's statement or the COMMIT, which releases every savepoint, does it).
   */
  openUnit(): void {
    if (this.unit === 'fresh') {
      this.unit = 'open';
      return;
    }
    const text = this.unit === 'done' ? `RELEASE ${UNIT}; SAVEPOINT ${UNIT}` : `SAVEPOINT ${UNIT}`;
    this.unit = 'none';
    this.exec(text);
    this.unit = 'open';
  }

  /** The running unit succeeded: its savepoint stays until the next unit or the COMMIT (no round trip). */
  unitDone(): void {
    this.unit = 'done';
  }

  /** The running unit threw: its writes are rolled back (one round trip) and its savepoint released. */
  unitFailed(): void {
    this.unit = 'none';
    this.exec(`ROLLBACK TO ${UNIT}; RELEASE ${UNIT}`);
    this.appendsReleased();
  }

  /** The group transaction ended (COMMIT or ROLLBACK posted). */
  transactionEnded(): void {
    this.unit = 'none';
    this.appendsReleased();
  }

  /**
   * The number of transactions that writers other than `writerId` began and committed: it
   * changes whenever another process or replica commits (PostgreSQL's stand-in for SQLite's
   * PRAGMA data_version). Run it on a connection outside any transaction (the store's reader).
   */
  othersCommits(writerId: string): number {
    const r = this.bridge.query('SELECT COALESCE(SUM(commits), 0)::bigint AS n FROM tyrum_writers WHERE writer <> $1', [writerId], true, !this.autocommit);
    return Number(r.rows[0]!.n);
  }

  prepare(sql: string): SqlStatement {
    return new PgStatement(this, sql);
  }

  /** The error for statements of a transaction whose connection was lost. */
  lostTransaction(): TyrumError {
    return new TyrumError('TYRUM_ERR_STORE_UNAVAILABLE', 'the connection to PostgreSQL was lost during the transaction: its writes are gone (the server rolled them back)');
  }

  /** ROLLBACK whatever is open, ignoring errors (the connection may be gone: the server rolled back then). */
  rollbackQuietly(): void {
    const began = this.txGeneration;
    this.txGeneration = null;
    this.appendsOrdered = false;
    this.unit = 'none';
    // The connection the transaction began on is gone: the server rolled it back already, and
    // a ROLLBACK now would only wait for a new connection (a stalled server: the whole timeout).
    if (began !== null && began !== this.bridge.generation) return;
    try {
      this.bridge.query('ROLLBACK');
    } catch {
      // Nothing open, or no connection: nothing to roll back.
    }
  }

  /** Raw SQL, no translation (several statements allowed when there are no parameters). */
  exec(sql: string, values: readonly unknown[] = []): PgResult {
    return this.bridge.query(sql, values);
  }

  /** Post raw SQL without blocking (a group's COMMIT); resolves when the server answered. */
  send(sql: string): Promise<PgResult> {
    return this.bridge.send(sql);
  }

  close(): Promise<void> {
    return this.bridge.close();
  }
}

/** The durability settings the store requires, as read back from the server. */
export interface PgSettingsReport {
  synchronous_commit: string;
  fsync: string;
  full_page_writes: string;
}

/**
 * Throws TYRUM_ERR_STORE_PRAGMA unless every commit is durable when acknowledged: fsync on,
 * full_page_writes on, synchronous_commit on (or remote_write/remote_apply, which wait for the
 * local flush too). 'local' is accepted as well (it is 'on' without waiting for standbys);
 * 'off' is refused.
 */
export function assertPgSettings(report: PgSettingsReport): void {
  const bad: string[] = [];
  if (!['on', 'remote_write', 'remote_apply', 'local'].includes(report.synchronous_commit)) bad.push(`synchronous_commit=${report.synchronous_commit} (need on)`);
  if (report.fsync !== 'on') bad.push(`fsync=${report.fsync} (need on)`);
  if (report.full_page_writes !== 'on') bad.push(`full_page_writes=${report.full_page_writes} (need on)`);
  if (bad.length > 0) {
    throw new TyrumError('TYRUM_ERR_STORE_PRAGMA', `refusing to run: PostgreSQL durability settings not in effect: ${bad.join(', ')}`, { settings: report });
  }
}

export function pgSettings(db: PgDb): PgSettingsReport {
  const rows = db.exec("SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'full_page_writes')").rows as Array<{ name: string; setting: string }>;
  const get = (n: string): string => rows.find((r) => r.name === n)?.setting ?? 'unknown';
  return { synchronous_commit: get('synchronous_commit'), fsync: get('fsync'), full_page_writes: get('full_page_writes') };
}

/** The group transaction's unit savepoint (see `PgDb.openUnit`). */
const UNIT = 'unit';

/**
 * The error for a COMMIT the server answered "ROLLBACK": the transaction had failed (a statement
 * in it failed outside any unit's savepoint), so none of its writes were kept.
 */
export function commitRolledBack(): TyrumError {
  return new TyrumError('TYRUM_ERR_STORE_UNAVAILABLE', 'PostgreSQL rolled the transaction back at COMMIT (a statement in it had failed): its writes are not kept');
}

/** The advisory lock key outbox and audit appends run under (see `PgDb.orderAppends`). */
export const LOG_LOCK = 0x7479_726c; // "tyrl"

/** How long a writer session may sit idle inside a transaction before the server ends it (see openPgDb). */
export const WRITER_IDLE_IN_TX_MS = 10_000;


/** The LISTEN/NOTIFY channel a committed outbox append notifies (the backplane's wake-up). */
export const OUTBOX_CHANNEL = 'tyrum_outbox';
/** The channel a node dispatch's writes notify (core/nodes/cluster.ts; no payload: the rows are the truth). */
export const NODES_CHANNEL = 'tyrum_nodes';

/** The advisory lock key migrations run under (any constant shared by every replica). */
const MIGRATION_LOCK = 0x7479_7275; // "tyru"

export function pgSchemaVersion(db: PgDb): number {
  db.exec('CREATE TABLE IF NOT EXISTS tyrum_schema_version (version INTEGER PRIMARY KEY, name TEXT COLLATE "C" NOT NULL, applied_at BIGINT NOT NULL)');
  return Number((db.exec('SELECT COALESCE(MAX(version), 0) AS v FROM tyrum_schema_version').rows[0] as { v: number }).v);
}

/**
 * Apply pending migrations, each in its own transaction holding a transaction-scoped advisory
 * lock: replicas starting together queue on the lock, and each re-reads the version under it, so
 * every migration runs once.
 */
export function migratePg(db: PgDb, migrations: readonly Migration[] = PG_MIGRATIONS): void {
  const latest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  const current = (() => {
    db.exec('BEGIN');
    try {
      db.exec('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const v = pgSchemaVersion(db);
      db.exec('COMMIT');
      return v;
    } catch (e) {
      rollback(db);
      throw e;
    }
  })();
  if (current > latest) {
    throw new TyrumError('TYRUM_ERR_STORE_MIGRATION', `database schema version ${current} is newer than this build supports (${latest}); upgrade tyrum`);
  }
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.exec('BEGIN');
    try {
      db.exec('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const now = Number((db.exec('SELECT COALESCE(MAX(version), 0) AS v FROM tyrum_schema_version').rows[0] as { v: number }).v);
      if (now < m.version) {
        db.exec(m.sql);
        db.exec('INSERT INTO tyrum_schema_version (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
      }
      db.exec('COMMIT');
    } catch (e) {
      rollback(db);
      if (e instanceof TyrumError && e.code === 'TYRUM_ERR_STORE_UNAVAILABLE') throw e;
      throw new TyrumError('TYRUM_ERR_STORE_MIGRATION', `migration ${m.version} (${m.name}) failed: ${(e as Error).message}`, undefined, { cause: e });
    }
  }
}

function rollback(db: PgDb): void {
  try {
    db.exec('ROLLBACK');
  } catch {
    // The connection is gone: the server rolled the transaction back.
  }
}

export interface PgOpenOptions extends PgBridgeOptions {
  /** Skip migrations (a tool that only reads, the store's reader connection). */
  readonly?: boolean;
  /** Never opens a transaction (the store's reader): statements after a drop reconnect. */
  autocommit?: boolean;
}

/** Connect, check durability, migrate. Throws coded errors; the URL's password is never in them. */
export function openPgDb(url: string, options: PgOpenOptions = {}): PgDb {
  // A writer whose process freezes (SIGSTOP, a paused VM) inside a transaction would hold the log
  // lock, and with it every other replica's writes, until it resumed: the server ends such a
  // session once it sat idle in a transaction for WRITER_IDLE_IN_TX_MS (its group then fails with
  // TYRUM_ERR_STORE_UNAVAILABLE; nothing it acknowledged is lost, nothing unacknowledged is kept).
  const writer: Record<string, string> = options.autocommit !== true ? { idle_in_transaction_session_timeout: String(WRITER_IDLE_IN_TX_MS) } : {};
  const db = new PgDb(new PgBridge(url, { ...options, settings: { application_name: 'tyrum', ...writer, ...options.settings } }), options.autocommit === true);
  try {
    assertPgSettings(pgSettings(db));
    if (!options.readonly) migratePg(db);
    return db;
  } catch (e) {
    void db.close();
    if (e instanceof TyrumError) throw e;
    throw new TyrumError('TYRUM_ERR_STORE_MIGRATION', `could not open the PostgreSQL store at ${describeUrl(url)}: ${(e as Error).message}`, undefined, { cause: e });
  }
}
