/**
 * The embedded state store: the only module that imports better-sqlite3.
 *
 * Durability is not negotiable: WAL, every commit synced before anyone is told of it (a
 * committed transaction survives a power cut, not just a process crash), foreign keys on.
 * `openStore` asserts the pragmas took effect and refuses to return a store otherwise (TESTPLAN
 * A4). Throughput comes from group commit, not from weaker settings.
 *
 * Commit sync: with synchronous=FULL SQLite fdatasyncs the write-ahead log inside COMMIT, on the
 * calling thread: better-sqlite3 is synchronous, so every socket of the gateway would wait for
 * the disk. An on-disk store therefore runs its writer with synchronous=NORMAL (COMMIT writes
 * the log without syncing; checkpoints still sync the log before and the database after) and
 * fdatasyncs the log itself, through its own descriptor of the -wal file, on libuv's thread
 * pool. That is the same system call FULL makes on the same file, so the guarantee is the same:
 * no unit's promise resolves, no `afterCommit` callback runs (event delivery, audit checkpoint
 * state) and `tx` does not return until a sync that began after its COMMIT has ended. The syncs
 * pipeline with the commits: while one runs, the next groups commit, and the next sync covers
 * them all. The log's directory entry is synced at open, as SQLite does on a new log's first
 * sync. What changes: another connection may read a committed row for the length of one
 * fdatasync before it is durable (a power cut then loses it, and nobody was told it was done).
 * A failed fdatasync rejects the unsynced units and every later write (TYRUM_ERR_STORE_IO): the
 * kernel may have dropped the log's dirty pages, and only a restart recovers safely.
 *
 * The database holds token hashes, encrypted secrets and the audit log: it and its -wal and -shm
 * files are owner-only (0600) whatever the umask.
 *
 * Group commit: `Store.commit(fn)` runs `fn` at once, inside a SAVEPOINT of a transaction that
 * stays open until the end of the current turn of the event loop (setImmediate), and resolves
 * once that transaction is COMMITted and synced. Everything committed in one turn —
 * by concurrent calls, the audit log, the outbox — shares one fsync. A unit that throws is rolled
 * back alone; a COMMIT that fails rejects every unit of the group. Nothing may be acknowledged
 * before its unit's promise resolves. Reads that answer a caller go through `committed`, a
 * read-only connection that sees only committed data (WAL readers do not block the writer), so
 * nobody is shown a row whose group might still roll back.
 *
 * PostgreSQL (openPgStore; in progress, not reachable from the config, see
 * docs/dev/postgres-port.md): the same Store over a `PgDb` (core/store/pg), synchronous through a
 * worker-thread bridge. Units are SAVEPOINTs of one transaction per turn as here; the group's
 * COMMIT is posted without blocking and the group settles, in commit order, when the server
 * acknowledges it (durable: synchronous_commit=on is checked at open); `tx` and `close` COMMIT
 * synchronously. A connection lost during a group fails every unit of it (TYRUM_ERR_STORE_UNAVAILABLE);
 * a COMMIT whose answer is lost leaves its outcome unknown and says so. `committed` reads go
 * through a second connection (committed rows only, as here). The SQLite-only operations (pragmas, WAL sync,
 * checkpoints, data_version, integrity_check) refuse with TYRUM_ERR_INTERNAL.
 */
import { chmodSync, closeSync, fdatasync, fdatasyncSync, fsyncSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { orderAppends, prepared, sqliteDb, type SqlDb, type SqlStatement } from './statements.js';
import { OwnerLookup, RUN_OWNER_SQL, TOKEN_OWNER_SQL } from './owners.js';
import { NODES_CHANNEL, OUTBOX_CHANNEL, PgDb, commitRolledBack, openPgDb, pgSchemaVersion, type PgOpenOptions } from './pg/db.js';
import type { PgListenEvent } from './pg/bridge.js';
import { TyrumError } from '../errors/index.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { crashPointFromEnv, type CrashPoint } from '../util/crash.js';
import { PolicyRepo } from './policy.js';
import { ExecutionRepo, ApprovalRepo, OutboxRepo } from './execution.js';
import { McpRepo } from './mcp.js';
import { NodePairingRepo } from './nodes.js';
import { ClusterRepo } from './cluster.js';
import { ConversationRepo } from './conversations.js';
import { ScheduleRepo } from './schedules.js';
import { WorkflowRepo } from './playbooks.js';
import { ArtifactRepo } from './artifacts.js';
import { RetentionRepo } from './retention.js';
import { CHECKPOINT_PAGES_DEFAULT, WAL_SIZE_LIMIT_BYTES, WRITER_FALLBACK_FACTOR, startCheckpointer, type Checkpointer, type CheckpointerOptions } from './checkpointer.js';
import { detached } from '../telemetry/context.js';

export type { Migration };
export * from './execution.js';
export * from './mcp.js';
export * from './nodes.js';
export * from './cluster.js';
export * from './conversations.js';
export * from './schedules.js';
export * from './playbooks.js';
export * from './artifacts.js';
export * from './retention.js';

/** A token row. `salt`/`hash` are the scrypt material; the token secret is never stored. */
export interface TokenRecord {
  id: string;
  label: string;
  scopes: string[];
  roles: string[];
  /** Key-derivation parameters, e.g. "scrypt:N=4096,r=8,p=1", so they can change later. */
  kdf: string;
  salt: Buffer;
  hash: Buffer;
  created_at: number;
  created_by: string | null;
  /** The token that minted this one (token.create); null for CLI and bootstrap tokens. */
  parent_id: string | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  /** 'access' (clients, operators), 'node_enrollment' (may only ask to be paired), 'node' (a paired node's). */
  kind: TokenKind;
  /**
   * The device a 'node' token is bound to; for a single-use enrollment token, the device that
   * claimed it at its first connection; null otherwise.
   */
  device_id: string | null;
  /** A single-use node bootstrap token (node.bootstrap): one device, revoked once that device is paired. */
  single_use: boolean;
  /**
   * On insert only: the tenant the token acts in (docs/tenancy.md), default 'default'. A read
   * record does not carry it (the row reads back as written): ask `TokenRepo.tenantOf`.
   */
  tenant_id?: string;
}

/** A tenant: the owner of tokens and of what they create (docs/tenancy.md). */
export interface TenantRecord {
  id: string;
  label: string;
  created_at: number;
}

export type TokenKind = 'access' | 'node_enrollment' | 'node';

export interface DeviceRecord {
  device_id: string;
  pubkey: string;
  role: string;
  label: string | null;
  platform: string | null;
  version: string | null;
  first_seen_at: number;
  last_seen_at: number;
}

/** One stored audit entry. `actor` and `data` are JSON text exactly as hashed. */
export interface AuditRow {
  seq: number;
  ts: string;
  type: string;
  actor: string;
  data: string;
  prev_hash: string;
  hash: string;
}

export interface StoreOptions {
  /** Milliseconds a writer waits for another process's lock before SQLITE_BUSY. Default 5000. */
  busyTimeoutMs?: number;
  /** Open read-only (doctor, audit verify on a copy). Skips migrations. */
  readonly?: boolean;
  /**
   * Run WAL checkpoints on a worker thread instead of in COMMIT on this one (core/store/checkpointer.ts).
   * For long-running processes (the gateway); short-lived ones (the CLI) leave it off.
   */
  checkpointer?: CheckpointerOptions;
  /** TEST ONLY: called at the group-commit crash points. Default: from TYRUM_TEST_CRASH_AT (core/util/crash.ts). */
  crashPoint?: (name: CrashPoint) => void;
}

/** The pragmas the gateway requires, as read back from the connection. */
export interface PragmaReport {
  journal_mode: string;
  synchronous: number;
  foreign_keys: number;
  /**
   * Who makes a COMMIT durable: 'sqlite' (synchronous=FULL, SQLite syncs the log inside COMMIT)
   * or 'store' (synchronous=NORMAL, and the store fdatasyncs the log off the event loop before it
   * reports any commit; see "Commit sync" in the header).
   */
  commit_sync: 'sqlite' | 'store';
}

const REQUIRED = { journal_mode: 'wal', synchronous: 2 /* FULL */, foreign_keys: 1 } as const;

/** Open (creating if needed) the SQLite store at `path`, enforce pragmas and migrate. */
export function openStore(path: string, options: StoreOptions = {}): Store {
  const onDisk = !options.readonly && path !== ':memory:' && path !== '' && !path.startsWith('file:');
  // Create the file 0600 before SQLite does (SQLite would apply the umask, typically giving
  // 0644); SQLite then creates -wal and -shm with the database file's mode.
  if (onDisk) createOwnerOnly(path);
  const db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    // journal_mode is a property of the file (set by a writer); synchronous is per connection,
    // and allowed on a read-only one too.
    if (!options.readonly) db.pragma('journal_mode = WAL');
    // Files left wider by an older build (or created by another tool) are tightened.
    if (onDisk) for (const f of [path, `${path}-wal`, `${path}-shm`]) ownerOnly(f);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    const store = new Store(db, options.crashPoint ?? crashPointFromEnv());
    assertPragmas(store.pragmas());
    if (!options.readonly) store.migrate(MIGRATIONS);
    if (onDisk) {
      store.attachReader(openReader(path, options.busyTimeoutMs));
      store.attachWalSync(openWalForSync(db, path));
      if (options.checkpointer) store.attachCheckpointer(path, options.checkpointer);
    }
    return store;
  } catch (e) {
    db.close();
    throw e;
  }
}

/**
 * Open the PostgreSQL store at `url` (durability settings checked, schema migrated: openPgDb) with
 * the same group commit as SQLite's: the group's COMMIT is posted without blocking and its units
 * resolve once the server acknowledged it ("PostgreSQL" in the header). Not reachable from the
 * configuration yet: the gateway does not run on it (docs/dev/postgres-port.md).
 */
export function openPgStore(url: string, options: PgOpenOptions & { crashPoint?: (name: CrashPoint) => void } = {}): Store {
  const store = new Store(openPgDb(url, options), options.crashPoint ?? crashPointFromEnv());
  try {
    // `committed` reads go through a second connection: it sees committed rows only.
    store.attachPgReader(openPgDb(url, { ...options, readonly: true, autocommit: true }));
    return store;
  } catch (e) {
    store.close();
    throw e;
  }
}

/**
 * Create the database file 0600 if it does not exist. An existing file is not opened: closing any
 * descriptor of a file drops every POSIX lock this process holds on it, including SQLite's locks
 * of another connection of this process to the same database.
 */
function createOwnerOnly(path: string): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

/** The read-only connection behind `Store.committed`: it sees what is committed, never a group still open. */
function openReader(path: string, busyTimeoutMs: number | undefined): Database.Database {
  const r = new Database(path, { readonly: true, fileMustExist: true });
  try {
    r.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs ?? 5000))}`);
    r.pragma('foreign_keys = ON');
    return r;
  } catch (e) {
    r.close();
    throw e;
  }
}

/**
 * The descriptor the store fdatasyncs the write-ahead log through (see "Commit sync" in the
 * header), after making the log's directory entry durable (SQLite does that on the first sync of
 * a new log; ours replace its syncs). Null when the log cannot be opened: the connection then
 * stays synchronous=FULL and SQLite syncs in COMMIT, as before.
 */
function openWalForSync(db: Database.Database, path: string): WalFds | null {
  // A read in WAL mode makes sure the log file exists.
  prepared(sqliteDb(db), 'SELECT 1 FROM sqlite_master LIMIT 1').get();
  const fds: number[] = [];
  try {
    // Two descriptors: Linux reports a writeback error once per open file, so a synchronous and
    // a thread-pool sync running at the same time must not share one, or one of them could miss it.
    fds.push(openSync(`${path}-wal`, 'r+'), openSync(`${path}-wal`, 'r+'));
  } catch {
    for (const fd of fds) closeSync(fd);
    return null;
  }
  try {
    fsyncSync(fds[0]!);
    syncDirectory(dirname(path));
  } catch (e) {
    for (const fd of fds) closeSync(fd);
    throw e;
  }
  return { async: fds[0]!, sync: fds[1]! };
}

/** The write-ahead log's descriptors: one for syncs on the thread pool, one for synchronous ones. */
interface WalFds {
  async: number;
  sync: number;
}

/** fsync a directory, so entries created or renamed in it survive a power cut (not on Windows, which cannot open one). */
export function syncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** chmod 0600 a file of ours that group or others can access; absent files and others' files are left alone. */
function ownerOnly(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch {
    return;
  }
  if ((st.mode & 0o077) === 0) return;
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return;
  chmodSync(file, 0o600);
}

/** Throws TYRUM_ERR_STORE_PRAGMA unless every required pragma is in effect. */
export function assertPragmas(report: PragmaReport): void {
  const bad: string[] = [];
  if (report.journal_mode.toLowerCase() !== REQUIRED.journal_mode) bad.push(`journal_mode=${report.journal_mode} (need wal)`);
  const durable = report.synchronous === REQUIRED.synchronous || (report.synchronous === 1 && report.commit_sync === 'store');
  if (!durable) bad.push(`synchronous=${report.synchronous} with commit_sync=${report.commit_sync} (need 2 = FULL, or 1 = NORMAL with the store syncing each commit)`);
  if (report.foreign_keys !== REQUIRED.foreign_keys) bad.push(`foreign_keys=${report.foreign_keys} (need 1)`);
  if (bad.length > 0) {
    throw new TyrumError('TYRUM_ERR_STORE_PRAGMA', `refusing to run: database pragmas not in effect: ${bad.join(', ')}`, { pragmas: report });
  }
}

function parseJsonArray(text: string): string[] {
  const v: unknown = JSON.parse(text);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

interface TokenRow extends Omit<TokenRecord, 'scopes' | 'roles' | 'single_use'> {
  scopes: string;
  roles: string;
  single_use: number;
}

function withoutTenant<T extends { tenant_id?: string }>(r: T): Omit<T, 'tenant_id'> {
  const { tenant_id: _tenant, ...rest } = r;
  return rest;
}

function tokenFromRow(row: TokenRow): TokenRecord {
  return { ...row, scopes: parseJsonArray(row.scopes), roles: parseJsonArray(row.roles), single_use: row.single_use === 1 };
}

/** Token repository. Callers own hashing; this only persists. */
export class TokenRepo {
  private liveStmt: SqlStatement | undefined;
  constructor(
    private readonly db: SqlDb,
    /** Token → tenant (core/store/owners.ts), shared with the connection's OutboxRepo. */
    private readonly owners = new OwnerLookup(db, TOKEN_OWNER_SQL),
  ) {}

  insert(t: TokenRecord): void {
    prepared(this.db, 
        `INSERT INTO tokens (id, label, scopes, roles, kdf, salt, hash, created_at, created_by, parent_id, expires_at, revoked_at, last_used_at, kind, device_id, single_use)
         VALUES (@id, @label, @scopes, @roles, @kdf, @salt, @hash, @created_at, @created_by, @parent_id, @expires_at, @revoked_at, @last_used_at, @kind, @device_id, @single_use)`,
      )
      .run({ ...withoutTenant(t), scopes: JSON.stringify(t.scopes), roles: JSON.stringify(t.roles), single_use: t.single_use ? 1 : 0 });
    if (t.tenant_id !== undefined && t.tenant_id !== 'default') prepared(this.db, 'INSERT INTO tenant_tokens (token_id, tenant_id) VALUES (?, ?)').run(t.id, t.tenant_id);
    this.owners.learn(t.id, t.tenant_id ?? 'default');
  }

  /** The tenant a token acts in ('default' for one with no ownership row, or an unknown id). */
  tenantOf(id: string): string {
    return this.owners.of(id) ?? 'default';
  }

  /**
   * Binds a live single-use token to `deviceId`: 'claimed' when this call bound it, 'same' when it
   * was already bound to that device, 'refused' when it is bound to another, not single-use, or dead.
   */
  claimSingleUse(id: string, deviceId: string, now: number): 'claimed' | 'same' | 'refused' {
    const claimed = prepared(
      this.db,
      `UPDATE tokens SET device_id = ? WHERE id = ? AND single_use = 1 AND device_id IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
    ).run(deviceId, id, now).changes;
    if (claimed === 1) return 'claimed';
    const row = this.get(id);
    return row !== undefined && row.single_use && row.device_id === deviceId && isLiveRow(row, now) ? 'same' : 'refused';
  }

  get(id: string): TokenRecord | undefined {
    const row = prepared(this.db, 'SELECT * FROM tokens WHERE id = ?').get(id) as TokenRow | undefined;
    return row ? tokenFromRow(row) : undefined;
  }

  /** Every token, or only `tenant`'s. */
  list(tenant?: string): TokenRecord[] {
    if (tenant === 'default') return (prepared(this.db, 'SELECT * FROM tokens WHERE NOT EXISTS (SELECT 1 FROM tenant_tokens t WHERE t.token_id = tokens.id) ORDER BY created_at, id').all() as TokenRow[]).map(tokenFromRow);
    if (tenant !== undefined) return (prepared(this.db, 'SELECT * FROM tokens WHERE id IN (SELECT token_id FROM tenant_tokens WHERE tenant_id = ?) ORDER BY created_at, id').all(tenant) as TokenRow[]).map(tokenFromRow);
    return (prepared(this.db, 'SELECT * FROM tokens ORDER BY created_at, id').all() as TokenRow[]).map(tokenFromRow);
  }

  /** Marks the token revoked; returns false when it does not exist or was already revoked. */
  revoke(id: string, at: number): boolean {
    return prepared(this.db, 'UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id).changes === 1;
  }

  touch(id: string, at: number): void {
    prepared(this.db, 'UPDATE tokens SET last_used_at = ? WHERE id = ?').run(at, id);
  }

  /** Ids of every token minted, directly or transitively, by `id`. */
  descendants(id: string): string[] {
    const rows = prepared(this.db, 
        `WITH RECURSIVE d(id) AS (SELECT id FROM tokens WHERE parent_id = ? UNION SELECT t.id FROM tokens t JOIN d ON t.parent_id = d.id)
         SELECT id FROM d`,
      )
      .all(id) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /**
   * True when the token exists and neither it nor any token in its minting chain is revoked or
   * expired at `now` (a child lives only while its parent does).
   */
  lineageLive(id: string, now: number): boolean {
    return this.invalidAmong([id], now).length === 0;
  }

  /**
   * Ids of the given tokens that are revoked or expired at `now`, themselves or through a token up
   * their minting chain (for closing live sockets), or that do not exist. One query for all of
   * them: the revocation watcher asks about every live token once a second.
   */
  invalidAmong(ids: readonly string[], now: number): string[] {
    if (ids.length === 0) return [];
    // Prepared once, on first use (after migrations): run on every upgrade and once a second.
    this.liveStmt ??= prepared(this.db, {
      sqlite: `WITH RECURSIVE chain(root, id, parent_id, dead) AS (
           SELECT id, id, parent_id, revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= @now)
             FROM tokens WHERE id IN (SELECT value FROM json_each(@ids))
           UNION SELECT c.root, t.id, t.parent_id, t.revoked_at IS NOT NULL OR (t.expires_at IS NOT NULL AND t.expires_at <= @now)
             FROM tokens t JOIN chain c ON t.id = c.parent_id)
         SELECT root FROM chain GROUP BY root HAVING max(dead) = 0`,
      postgres: `WITH RECURSIVE chain(root, id, parent_id, dead) AS (
           SELECT id, id, parent_id, revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= @now)
             FROM tokens WHERE id IN (SELECT value FROM json_array_elements_text(CAST(@ids AS json)))
           UNION SELECT c.root, t.id, t.parent_id, t.revoked_at IS NOT NULL OR (t.expires_at IS NOT NULL AND t.expires_at <= @now)
             FROM tokens t JOIN chain c ON t.id = c.parent_id)
         SELECT root FROM chain GROUP BY root HAVING NOT bool_or(dead)`,
    });
    const live = new Set((this.liveStmt.all({ ids: JSON.stringify(ids), now }) as Array<{ root: string }>).map((r) => r.root));
    return ids.filter((id) => !live.has(id));
  }
}

/** Tenants (docs/tenancy.md). Created by the host operator (`tyrum tenant create`), never removed. */
export class TenantRepo {
  constructor(private readonly db: SqlDb) {}

  /** False when a tenant with this id exists already. */
  insert(t: TenantRecord): boolean {
    return prepared(this.db, 'INSERT INTO tenants (id, label, created_at) VALUES (@id, @label, @created_at) ON CONFLICT DO NOTHING').run(t).changes === 1;
  }

  get(id: string): TenantRecord | undefined {
    return prepared(this.db, 'SELECT id, label, created_at FROM tenants WHERE id = ?').get(id) as TenantRecord | undefined;
  }

  list(): TenantRecord[] {
    return prepared(this.db, 'SELECT id, label, created_at FROM tenants ORDER BY created_at, id').all() as TenantRecord[];
  }
}

/** Device repository: identities seen in completed handshakes. */
export class DeviceRepo {
  constructor(private readonly db: SqlDb) {}

  /** Insert or refresh a device after a successful proof. */
  upsert(d: Omit<DeviceRecord, 'first_seen_at' | 'last_seen_at'>, at: number): void {
    prepared(this.db, 
        `INSERT INTO devices (device_id, pubkey, role, label, platform, version, first_seen_at, last_seen_at)
         VALUES (@device_id, @pubkey, @role, @label, @platform, @version, @at, @at)
         ON CONFLICT(device_id) DO UPDATE SET role = excluded.role, label = excluded.label,
           platform = excluded.platform, version = excluded.version, last_seen_at = excluded.last_seen_at`,
      )
      .run({ ...d, at });
  }

  get(deviceId: string): DeviceRecord | undefined {
    return prepared(this.db, 'SELECT * FROM devices WHERE device_id = ?').get(deviceId) as DeviceRecord | undefined;
  }
}

/**
 * The condition selecting one tenant's audit entries: those indexed under it in
 * tenant_audit_entries (their actor names it, hashed with the entry), or, for the default tenant,
 * those not indexed under any. Binds `@tenant` unless the tenant is the default.
 */
function auditTenantWhere(tenant: string): string {
  return tenant === 'default' ? 'NOT EXISTS (SELECT 1 FROM tenant_audit_entries t WHERE t.seq = audit_entries.seq)' : 'seq IN (SELECT seq FROM tenant_audit_entries WHERE tenant_id = @tenant)';
}

/** Audit repository: raw rows. Hashing and chaining belong to core/audit. */
export class AuditRepo {
  constructor(private readonly db: SqlDb) {}

  head(): AuditRow | undefined {
    return prepared(this.db, 'SELECT * FROM audit_entries ORDER BY seq DESC LIMIT 1').get() as AuditRow | undefined;
  }

  /**
   * The head an append chains onto, inside the write transaction. On PostgreSQL the log lock is
   * taken first, so a writer on another replica cannot read the same head (no fork, no seq clash).
   */
  headForAppend(): AuditRow | undefined {
    orderAppends(this.db);
    // PostgreSQL: the entry this transaction appended last under the lock it still holds.
    const appended = this.db.appendedHead?.() as AuditRow | null | undefined;
    return appended ?? this.head();
  }

  insert(row: AuditRow): void {
    prepared(this.db, 'INSERT INTO audit_entries (seq, ts, type, actor, data, prev_hash, hash) VALUES (@seq, @ts, @type, @actor, @data, @prev_hash, @hash)').run(row);
    this.db.rememberAppended?.({ seq: row.seq, ts: row.ts, type: row.type, actor: row.actor, data: row.data, prev_hash: row.prev_hash, hash: row.hash });
  }

  /** Indexes entry `seq` under a tenant other than the default (its actor names the tenant). */
  insertTenant(seq: number, tenant: string): void {
    prepared(this.db, 'INSERT INTO tenant_audit_entries (seq, tenant_id) VALUES (?, ?)').run(seq, tenant);
  }

  count(): number {
    return (prepared(this.db, 'SELECT COUNT(*) AS n FROM audit_entries').get() as { n: number }).n;
  }

  /** How many entries a tenant has, and the newest one's seq and hash (a tenant's verify view). */
  tenantSummary(tenant: string): { entries: number; head: { seq: number; hash: string } | null } {
    const where = auditTenantWhere(tenant);
    const bind = tenant === 'default' ? {} : { tenant };
    const n = (prepared(this.db, `SELECT COUNT(*) AS n FROM audit_entries WHERE ${where}`).get(bind) as { n: number }).n;
    const head = prepared(this.db, `SELECT seq, hash FROM audit_entries WHERE ${where} ORDER BY seq DESC LIMIT 1`).get(bind) as { seq: number; hash: string } | undefined;
    return { entries: Number(n), head: head ?? null };
  }

  get(seq: number): AuditRow | undefined {
    return prepared(this.db, 'SELECT * FROM audit_entries WHERE seq = ?').get(seq) as AuditRow | undefined;
  }

  /** Entries with seq > afterSeq in ascending order, at most `limit`, optionally of one type. */
  page(afterSeq: number, limit: number, type?: string, tenant?: string): AuditRow[] {
    if (tenant !== undefined) {
      const where = auditTenantWhere(tenant);
      return prepared(this.db, `SELECT * FROM audit_entries WHERE ${where} AND seq > @after AND (CAST(@type AS TEXT) IS NULL OR type = @type) ORDER BY seq LIMIT @limit`).all({
        ...(tenant === 'default' ? {} : { tenant }),
        after: afterSeq,
        type: type ?? null,
        limit,
      }) as AuditRow[];
    }
    if (type !== undefined) {
      return prepared(this.db, 'SELECT * FROM audit_entries WHERE seq > ? AND type = ? ORDER BY seq LIMIT ?').all(afterSeq, type, limit) as AuditRow[];
    }
    return prepared(this.db, 'SELECT * FROM audit_entries WHERE seq > ? ORDER BY seq LIMIT ?').all(afterSeq, limit) as AuditRow[];
  }

  /** Every entry in physical order of seq, streamed (verification walks the whole log). */
  *iterate(): IterableIterator<AuditRow> {
    yield* prepared(this.db, 'SELECT * FROM audit_entries ORDER BY seq').iterate() as IterableIterator<AuditRow>;
  }
}

/** An installed plugin. `manifest` is the manifest JSON exactly as installed. */
export interface PluginRecord {
  id: string;
  version: string;
  manifest: string;
  manifest_sha256: string;
  wasm_sha256: string;
  /** Where it was installed from (a directory or archive path), for operators. */
  source: string;
  state: 'disabled' | 'enabled';
  installed_at: number;
  updated_at: number;
}

/** An upgrade's permission diff waiting for the operator's new grant (migration 16): from_version is the version granted (older grants: the version before the first upgrade that asked for more). */
export interface PendingDiffRecord {
  plugin_id: string;
  from_version: string;
  to_version: string;
  diff_json: string;
  created_at: number;
}

export interface GrantRecord {
  plugin_id: string;
  grant_json: string;
  granted_by: string;
  granted_at: number;
  /** JSON {version, requests, risk} of the manifest granted (migration 17; null for older grants). */
  granted_for?: string | null;
}

/** Plugins, their grants and configuration. */
export class PluginRepo {
  constructor(private readonly db: SqlDb) {}

  get(id: string): PluginRecord | undefined {
    return prepared(this.db, 'SELECT * FROM plugins WHERE id = ?').get(id) as PluginRecord | undefined;
  }

  list(): PluginRecord[] {
    return prepared(this.db, 'SELECT * FROM plugins ORDER BY id').all() as PluginRecord[];
  }

  /** Insert a new plugin or replace an installed one's version (an upgrade). */
  upsert(r: PluginRecord): void {
    prepared(this.db, 
        `INSERT INTO plugins (id, version, manifest, manifest_sha256, wasm_sha256, source, state, installed_at, updated_at)
         VALUES (@id, @version, @manifest, @manifest_sha256, @wasm_sha256, @source, @state, @installed_at, @updated_at)
         ON CONFLICT(id) DO UPDATE SET version = excluded.version, manifest = excluded.manifest, manifest_sha256 = excluded.manifest_sha256,
           wasm_sha256 = excluded.wasm_sha256, source = excluded.source, state = excluded.state, updated_at = excluded.updated_at`,
      )
      .run(r);
  }

  setState(id: string, state: PluginRecord['state'], at: number): boolean {
    return prepared(this.db, 'UPDATE plugins SET state = ?, updated_at = ? WHERE id = ?').run(state, at, id).changes === 1;
  }

  /** Removes the plugin with its grant, config and key-value data. */
  remove(id: string): boolean {
    return prepared(this.db, 'DELETE FROM plugins WHERE id = ?').run(id).changes === 1;
  }

  getGrant(id: string): GrantRecord | undefined {
    return prepared(this.db, 'SELECT * FROM plugin_grants WHERE plugin_id = ?').get(id) as GrantRecord | undefined;
  }

  setGrant(g: GrantRecord): void {
    prepared(this.db, 
        `INSERT INTO plugin_grants (plugin_id, grant_json, granted_by, granted_at, granted_for) VALUES (@plugin_id, @grant_json, @granted_by, @granted_at, @granted_for)
         ON CONFLICT(plugin_id) DO UPDATE SET grant_json = excluded.grant_json, granted_by = excluded.granted_by, granted_at = excluded.granted_at, granted_for = excluded.granted_for`,
      )
      .run({ ...g, granted_for: g.granted_for ?? null });
  }

  deleteGrant(id: string): boolean {
    return prepared(this.db, 'DELETE FROM plugin_grants WHERE plugin_id = ?').run(id).changes === 1;
  }

  /** A tenant's own grant of the plugin (a tenant other than the default; migration 22). */
  getTenantGrant(tenant: string, id: string): GrantRecord | undefined {
    return prepared(this.db, 'SELECT plugin_id, grant_json, granted_by, granted_at, granted_for FROM tenant_plugin_grants WHERE tenant_id = ? AND plugin_id = ?').get(tenant, id) as GrantRecord | undefined;
  }

  setTenantGrant(tenant: string, g: GrantRecord): void {
    prepared(this.db, 
        `INSERT INTO tenant_plugin_grants (tenant_id, plugin_id, grant_json, granted_by, granted_at, granted_for) VALUES (@tenant_id, @plugin_id, @grant_json, @granted_by, @granted_at, @granted_for)
         ON CONFLICT(tenant_id, plugin_id) DO UPDATE SET grant_json = excluded.grant_json, granted_by = excluded.granted_by, granted_at = excluded.granted_at, granted_for = excluded.granted_for`,
      )
      .run({ ...g, tenant_id: tenant, granted_for: g.granted_for ?? null });
  }

  deleteTenantGrant(tenant: string, id: string): boolean {
    return prepared(this.db, 'DELETE FROM tenant_plugin_grants WHERE tenant_id = ? AND plugin_id = ?').run(tenant, id).changes === 1;
  }

  getPendingDiff(id: string): PendingDiffRecord | undefined {
    return prepared(this.db, 'SELECT * FROM plugin_pending_diffs WHERE plugin_id = ?').get(id) as PendingDiffRecord | undefined;
  }

  setPendingDiff(r: PendingDiffRecord): void {
    prepared(this.db, 
        `INSERT INTO plugin_pending_diffs (plugin_id, from_version, to_version, diff_json, created_at) VALUES (@plugin_id, @from_version, @to_version, @diff_json, @created_at)
         ON CONFLICT(plugin_id) DO UPDATE SET to_version = excluded.to_version, diff_json = excluded.diff_json, created_at = excluded.created_at`,
      )
      .run(r);
  }

  clearPendingDiff(id: string): boolean {
    return prepared(this.db, 'DELETE FROM plugin_pending_diffs WHERE plugin_id = ?').run(id).changes === 1;
  }

  getConfig(id: string): string | undefined {
    return (prepared(this.db, 'SELECT config_json FROM plugin_config WHERE plugin_id = ?').get(id) as { config_json: string } | undefined)?.config_json;
  }

  setConfig(id: string, configJson: string, at: number): void {
    prepared(this.db, 'INSERT INTO plugin_config (plugin_id, config_json, updated_at) VALUES (?, ?, ?) ON CONFLICT(plugin_id) DO UPDATE SET config_json = excluded.config_json, updated_at = excluded.updated_at')
      .run(id, configJson, at);
  }
}

/**
 * Per-plugin key-value storage (the host API's kv functions): the default tenant's in plugin_kv,
 * another tenant's own namespace in tenant_plugin_kv (migration 22).
 */
export class PluginKvRepo {
  constructor(private readonly db: SqlDb) {}

  get(pluginId: string, key: string, tenant = 'default'): Buffer | undefined {
    if (tenant !== 'default') return (prepared(this.db, 'SELECT value FROM tenant_plugin_kv WHERE tenant_id = ? AND plugin_id = ? AND key = ?').get(tenant, pluginId, key) as { value: Buffer } | undefined)?.value;
    return (prepared(this.db, 'SELECT value FROM plugin_kv WHERE plugin_id = ? AND key = ?').get(pluginId, key) as { value: Buffer } | undefined)?.value;
  }

  set(pluginId: string, key: string, value: Uint8Array, tenant = 'default'): void {
    if (tenant !== 'default') {
      prepared(this.db, 'INSERT INTO tenant_plugin_kv (tenant_id, plugin_id, key, value) VALUES (?, ?, ?, ?) ON CONFLICT(tenant_id, plugin_id, key) DO UPDATE SET value = excluded.value').run(tenant, pluginId, key, Buffer.from(value));
      return;
    }
    prepared(this.db, 'INSERT INTO plugin_kv (plugin_id, key, value) VALUES (?, ?, ?) ON CONFLICT(plugin_id, key) DO UPDATE SET value = excluded.value').run(pluginId, key, Buffer.from(value));
  }

  delete(pluginId: string, key: string, tenant = 'default'): void {
    if (tenant !== 'default') prepared(this.db, 'DELETE FROM tenant_plugin_kv WHERE tenant_id = ? AND plugin_id = ? AND key = ?').run(tenant, pluginId, key);
    else prepared(this.db, 'DELETE FROM plugin_kv WHERE plugin_id = ? AND key = ?').run(pluginId, key);
  }

  /** Bytes used by a plugin in a tenant's namespace: keys plus values. */
  usage(pluginId: string, tenant = 'default'): number {
    if (tenant !== 'default') {
      return (
        prepared(this.db, {
          sqlite: 'SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) AS n FROM tenant_plugin_kv WHERE tenant_id = ? AND plugin_id = ?',
          postgres: 'SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0) AS n FROM tenant_plugin_kv WHERE tenant_id = ? AND plugin_id = ?',
        }).get(tenant, pluginId) as { n: number }
      ).n;
    }
    return (
      prepared(this.db, {
        sqlite: 'SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) AS n FROM plugin_kv WHERE plugin_id = ?',
        postgres: 'SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0) AS n FROM plugin_kv WHERE plugin_id = ?',
      }).get(pluginId) as { n: number }
    ).n;
  }
}

/** An encrypted secret (AES-256-GCM); the value itself is never stored in clear. */
export interface SecretRecord {
  name: string;
  version: number;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  /** JSON array of hosts the value may be sent to. */
  destinations: string;
  created_at: number;
  rotated_at: number;
}

/** Secrets: the default tenant's in `secrets`, another tenant's own handles in tenant_secrets (migration 22). */
export class SecretRepo {
  constructor(private readonly db: SqlDb) {}

  get(name: string, tenant = 'default'): SecretRecord | undefined {
    if (tenant !== 'default') return prepared(this.db, `SELECT ${SECRET_COLUMNS} FROM tenant_secrets WHERE tenant_id = ? AND name = ?`).get(tenant, name) as SecretRecord | undefined;
    return prepared(this.db, 'SELECT * FROM secrets WHERE name = ?').get(name) as SecretRecord | undefined;
  }

  /** One tenant's handles (the default tenant's unless named). */
  list(tenant = 'default'): SecretRecord[] {
    if (tenant !== 'default') return prepared(this.db, `SELECT ${SECRET_COLUMNS} FROM tenant_secrets WHERE tenant_id = ? ORDER BY name`).all(tenant) as SecretRecord[];
    return prepared(this.db, 'SELECT * FROM secrets ORDER BY name').all() as SecretRecord[];
  }

  /** Every tenant's handles, the default tenant's first (redaction must know every value). */
  listAll(): Array<SecretRecord & { tenant_id: string }> {
    const own = this.list().map((r) => ({ ...r, tenant_id: 'default' }));
    const others = prepared(this.db, `SELECT tenant_id, ${SECRET_COLUMNS} FROM tenant_secrets ORDER BY tenant_id, name`).all() as Array<SecretRecord & { tenant_id: string }>;
    return [...own, ...others];
  }

  /** Insert, or replace the value of an existing handle (rotation: version + 1). */
  put(r: SecretRecord, tenant = 'default'): void {
    if (tenant !== 'default') {
      prepared(this.db, 
          `INSERT INTO tenant_secrets (tenant_id, name, version, nonce, ciphertext, tag, destinations, created_at, rotated_at)
           VALUES (@tenant_id, @name, @version, @nonce, @ciphertext, @tag, @destinations, @created_at, @rotated_at)
           ON CONFLICT(tenant_id, name) DO UPDATE SET version = excluded.version, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
             tag = excluded.tag, destinations = excluded.destinations, rotated_at = excluded.rotated_at`,
        )
        .run({ ...r, tenant_id: tenant });
      return;
    }
    prepared(this.db, 
        `INSERT INTO secrets (name, version, nonce, ciphertext, tag, destinations, created_at, rotated_at)
         VALUES (@name, @version, @nonce, @ciphertext, @tag, @destinations, @created_at, @rotated_at)
         ON CONFLICT(name) DO UPDATE SET version = excluded.version, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
           tag = excluded.tag, destinations = excluded.destinations, rotated_at = excluded.rotated_at`,
      )
      .run(r);
  }

  remove(name: string, tenant = 'default'): boolean {
    if (tenant !== 'default') return prepared(this.db, 'DELETE FROM tenant_secrets WHERE tenant_id = ? AND name = ?').run(tenant, name).changes === 1;
    return prepared(this.db, 'DELETE FROM secrets WHERE name = ?').run(name).changes === 1;
  }
}

/** A secret record's columns, as `SELECT * FROM secrets` gives them (tenant_secrets adds tenant_id). */
const SECRET_COLUMNS = 'name, version, nonce, ciphertext, tag, destinations, created_at, rotated_at';

/** Every repository, over one connection (SQLite's or PostgreSQL's). */
export interface Repos {
  readonly tokens: TokenRepo;
  readonly tenants: TenantRepo;
  readonly devices: DeviceRepo;
  readonly audit: AuditRepo;
  readonly plugins: PluginRepo;
  readonly pluginKv: PluginKvRepo;
  readonly secrets: SecretRepo;
  readonly policy: PolicyRepo;
  readonly execution: ExecutionRepo;
  readonly approvals: ApprovalRepo;
  readonly outbox: OutboxRepo;
  readonly mcp: McpRepo;
  readonly pairings: NodePairingRepo;
  readonly conversations: ConversationRepo;
  readonly schedules: ScheduleRepo;
  readonly workflows: WorkflowRepo;
  readonly artifacts: ArtifactRepo;
  readonly retention: RetentionRepo;
  readonly cluster: ClusterRepo;
}

export function createRepos(sql: SqlDb): Repos {
  // Who owns a run or a token never changes: cached once seen, shared by the repositories that ask.
  const runOwners = new OwnerLookup(sql, RUN_OWNER_SQL);
  const tokenOwners = new OwnerLookup(sql, TOKEN_OWNER_SQL);
  return {
    tokens: new TokenRepo(sql, tokenOwners),
    tenants: new TenantRepo(sql),
    devices: new DeviceRepo(sql),
    audit: new AuditRepo(sql),
    plugins: new PluginRepo(sql),
    pluginKv: new PluginKvRepo(sql),
    secrets: new SecretRepo(sql),
    policy: new PolicyRepo(sql),
    execution: new ExecutionRepo(sql, runOwners),
    approvals: new ApprovalRepo(sql),
    outbox: new OutboxRepo(sql, runOwners, tokenOwners),
    mcp: new McpRepo(sql),
    pairings: new NodePairingRepo(sql),
    conversations: new ConversationRepo(sql),
    schedules: new ScheduleRepo(sql),
    workflows: new WorkflowRepo(sql),
    artifacts: new ArtifactRepo(sql),
    retention: new RetentionRepo(sql),
    cluster: new ClusterRepo(sql),
  };
}

/** Repositories over the read-only connection: committed rows only (see the header). */
export interface CommittedView {
  readonly execution: ExecutionRepo;
  readonly approvals: ApprovalRepo;
  readonly outbox: OutboxRepo;
  readonly audit: AuditRepo;
  readonly pairings: NodePairingRepo;
  readonly artifacts: ArtifactRepo;
}

interface Unit {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  value: unknown;
  after: Array<() => void>;
}

interface Group {
  units: Unit[];
  /** Position in commit order, set at COMMIT; settled once a log sync that began after it ends. */
  seq: number;
  /** The end-of-turn commit; null while the group holds only deferred units. */
  scheduled: NodeJS.Immediate | null;
  /** The latest a group of deferred units waits (DEFERRED_COMMIT_MS). */
  deadline: NodeJS.Timeout | null;
  /** PostgreSQL: its COMMIT is posted and not yet answered (it settles only after the answer). */
  pending?: boolean;
  /** PostgreSQL: its COMMIT failed: its units reject with this when the group's turn to settle comes. */
  failed?: unknown;
}

export interface CommitOptions {
  /**
   * Nobody waits on this unit's durability before it is answered (a plugin's key-value write,
   * made during a call whose end is committed later): it does not end the group at the end of
   * the turn, and commits with the next unit that does, or after DEFERRED_COMMIT_MS.
   */
  deferred?: boolean;
}

/**
 * Counters for the bench and the gateway's metrics: how many durable commits, how many units they
 * carried, and how many fdatasyncs of the log the store made, counted as each ends (0 while SQLite
 * syncs in COMMIT itself). A second store implementation reports the same three.
 */
export interface CommitStats {
  commits: number;
  units: number;
  syncs: number;
}

/**
 * Told how long each group COMMIT and each log sync took (seconds), for latency histograms
 * (core/telemetry). Called on the store's path: it must only record.
 */
export interface StoreObserver {
  committed(seconds: number): void;
  synced(seconds: number): void;
}

/**
 * How long writes queued with `{ deferred: true }` may wait for a unit that needs an answer
 * before they commit on their own. The write lock is held meanwhile, so other processes' writers
 * wait up to this long.
 */
export const DEFERRED_COMMIT_MS = 50;

/** Stores of this process with a group commit open (normally one: tests and tools may open more). */
const OPEN_GROUPS = new Set<Store>();


/** PostgreSQL's channel that wakes replicas about node dispatches (`Store.nodeChannel`). */
export interface NodeDispatchChannel {
  /**
   * Calls `onEvent` whenever a transaction that ran `notify` commits (a dispatch written, claimed
   * or answered, in any replica), on a connection of its own: a wake-up only, without a payload;
   * the `node_dispatches` rows are the truth. The caller closes what it gets.
   */
  listen(onEvent: (e: PgListenEvent) => void, retryMs?: number): { close(): Promise<void> };
  /** Inside a unit: wakes every listener when it commits (dropped on rollback). */
  notify(): void;
}
/** An open store. One per process; share it. */
export class Store {
  readonly tokens: TokenRepo;
  readonly tenants: TenantRepo;
  readonly devices: DeviceRepo;
  readonly audit: AuditRepo;
  readonly plugins: PluginRepo;
  readonly pluginKv: PluginKvRepo;
  readonly secrets: SecretRepo;
  readonly policy: PolicyRepo;
  readonly execution: ExecutionRepo;
  readonly approvals: ApprovalRepo;
  readonly outbox: OutboxRepo;
  readonly mcp: McpRepo;
  readonly pairings: NodePairingRepo;
  readonly conversations: ConversationRepo;
  readonly schedules: ScheduleRepo;
  readonly workflows: WorkflowRepo;
  readonly artifacts: ArtifactRepo;
  readonly retention: RetentionRepo;
  /** The replica directory, node connections and cross-replica dispatches (PostgreSQL's replicas). */
  readonly cluster: ClusterRepo;
  /** Committed data only (a read-only connection); the writer's repos when there is no second connection (`:memory:`). */
  committed: CommittedView;
  private reader: Database.Database | null = null;
  /** The writer connection as the repositories' port. */
  private readonly sql: SqlDb;
  private group: Group | null = null;
  /** Callbacks registered by the unit running now (`afterCommit`); null outside a unit. */
  private unitAfter: Array<() => void> | null = null;
  private readonly stats: CommitStats = { commits: 0, units: 0, syncs: 0 };
  private observer: StoreObserver | null = null;
  /** The write-ahead log, fdatasynced by the store (null: SQLite syncs in COMMIT). */
  private walFd: WalFds | null = null;
  /** Groups COMMITted, waiting for a log sync, in commit order. */
  private readonly unsynced: Group[] = [];
  private lastCommitSeq = 0;
  /** Settling is running (callbacks may commit with tx, which settles too: see settleThrough). */
  private settling = false;
  /** Every group up to this seq is durable. */
  private syncedSeq = 0;
  private syncInFlight = false;
  /** The log could not be synced: nothing more is written (see failSync). */
  private syncFailure: TyrumError | null = null;
  private closeWalWhenIdle = false;
  private checkpointer: Checkpointer | null = null;
  /** The checkpoint worker's exit once it was asked to stop (whenClosed waits for it). */
  private checkpointerExit: Promise<void> = Promise.resolve();

  /** The SQLite connection; null on PostgreSQL (see `lite`). */
  private readonly db: Database.Database | null;
  /** The PostgreSQL connection; null on SQLite. */
  private readonly pg: PgDb | null;
  /** PostgreSQL: the bridge's connection generation when the open group began (a change: the group's transaction is gone). */
  private groupGeneration = 0;
  private nestedDepth = 0;

  /** @internal use openStore (SQLite) or openPgStore (PostgreSQL) */
  constructor(
    db: Database.Database | PgDb,
    private readonly crashPoint: (name: CrashPoint) => void = () => undefined,
  ) {
    this.db = db instanceof PgDb ? null : db;
    this.pg = db instanceof PgDb ? db : null;
    this.sql = db instanceof PgDb ? db : sqliteDb(db);
    const r = createRepos(this.sql);
    this.tokens = r.tokens;
    this.tenants = r.tenants;
    this.devices = r.devices;
    this.audit = r.audit;
    this.plugins = r.plugins;
    this.pluginKv = r.pluginKv;
    this.secrets = r.secrets;
    this.policy = r.policy;
    this.execution = r.execution;
    this.approvals = r.approvals;
    this.outbox = r.outbox;
    this.mcp = r.mcp;
    this.pairings = r.pairings;
    this.conversations = r.conversations;
    this.schedules = r.schedules;
    this.workflows = r.workflows;
    this.artifacts = r.artifacts;
    this.committed = { execution: this.execution, approvals: this.approvals, outbox: this.outbox, audit: this.audit, pairings: this.pairings, artifacts: this.artifacts };
    this.retention = r.retention;
    this.cluster = r.cluster;
  }

  /** The SQLite connection, for what only SQLite has (pragmas, its WAL, checkpoints). */
  private lite(): Database.Database {
    if (this.db === null) throw new TyrumError('TYRUM_ERR_INTERNAL', 'not available on the PostgreSQL store (an SQLite-only operation)');
    return this.db;
  }

  /** Which database this store runs on. */
  get dialect(): 'sqlite' | 'postgres' {
    return this.sql.dialect;
  }

  /**
   * PostgreSQL: call `onEvent` whenever a transaction that appended to the outbox or the audit
   * log commits, in this process or any other (replicas, the CLI), on a connection of its own
   * (`listening` after each (re)connect: notifications may have been missed, read the outbox).
   * A wake-up only: the outbox is the truth. Null on SQLite (one host: the data_version poll).
   * The caller closes what it gets.
   */
  listenOutbox(onEvent: (e: PgListenEvent) => void, retryMs?: number): { close(): Promise<void> } | null {
    if (this.pg === null) return null;
    return this.pg.bridge.listen(OUTBOX_CHANNEL, onEvent, retryMs);
  }

  /**
   * The wake-up channel of node dispatches between replicas (core/nodes/cluster.ts): PostgreSQL
   * only; null on SQLite, which has one gateway and nothing to wake. Built once.
   */
  get nodeChannel(): NodeDispatchChannel | null {
    const pg = this.pg;
    if (pg === null) return null;
    this.nodes ??= {
      listen: (onEvent, retryMs) => pg.bridge.listen(NODES_CHANNEL, onEvent, retryMs),
      notify: () => void prepared(this.sql, `SELECT pg_notify('${NODES_CHANNEL}', '')`).get(),
    };
    return this.nodes;
  }

  private nodes: NodeDispatchChannel | undefined;

  /** @internal openPgStore attaches the second connection `committed` reads go through. */
  attachPgReader(reader: PgDb): void {
    this.pgReader = reader;
    this.committed = { execution: new ExecutionRepo(reader), approvals: new ApprovalRepo(reader), outbox: new OutboxRepo(reader), audit: new AuditRepo(reader), pairings: new NodePairingRepo(reader), artifacts: new ArtifactRepo(reader) };
  }

  private pgReader: PgDb | null = null;
  /** PostgreSQL: `dataVersion` read in this event-loop turn (cleared at the next), see dataVersion. */
  private pgDataVersion: number | null = null;

  /** @internal openStore attaches the read-only connection once the schema is migrated. */
  attachReader(reader: Database.Database): void {
    this.reader = reader;
    const r = sqliteDb(reader);
    this.committed = { execution: new ExecutionRepo(r), approvals: new ApprovalRepo(r), outbox: new OutboxRepo(r), audit: new AuditRepo(r), pairings: new NodePairingRepo(r), artifacts: new ArtifactRepo(r) };
  }

  /**
   * @internal openStore hands over the log's descriptor: from here on COMMIT does not sync
   * (synchronous=NORMAL) and the store does, off the event loop, before settling any unit.
   */
  attachWalSync(fd: WalFds | null): void {
    if (fd === null) return;
    this.lite().pragma('synchronous = NORMAL');
    this.walFd = fd;
  }

  /** Starts the checkpoint worker (openStore does, or openHomeCore once the home checks pass); the writer's own checkpoint becomes a rare fallback. */
  attachCheckpointer(path: string, options: CheckpointerOptions): void {
    const pages = Math.max(1, Math.floor(options.pages ?? CHECKPOINT_PAGES_DEFAULT));
    const db = this.lite();
    db.pragma(`wal_autocheckpoint = ${pages * WRITER_FALLBACK_FACTOR}`);
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    this.checkpointer = startCheckpointer(path, {
      ...options,
      pages,
      // A worker that died leaves the writer to checkpoint at the usual threshold again.
      onDied: () => {
        if (db.open) db.pragma(`wal_autocheckpoint = ${pages}`);
      },
    });
  }

  /** What the checkpoint worker did (null when there is none: SQLite checkpoints in COMMIT). */
  checkpointStats(): ReturnType<Checkpointer['stats']> | null {
    return this.checkpointer?.stats() ?? null;
  }

  /**
   * Run `fn` now as one unit of the current group commit; resolves with its value once the
   * group is durable (see the header). If `fn` throws, its writes are rolled back, the others'
   * are not, and the promise rejects with what it threw.
   */
  commit<T>(fn: () => T, options: CommitOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const r = this.runUnit(fn, options.deferred === true);
      if (!r.ok) return reject(r.error);
      this.group!.units.push({ resolve: resolve as (v: unknown) => void, reject, value: r.value, after: r.after });
    });
  }

  /**
   * Inside a unit (or `tx`): `cb` runs after the group commits, before any unit's promise
   * resolves; dropped if the unit rolls back. Outside one, an error: there is nothing to wait for.
   */
  afterCommit(cb: () => void): void {
    if (this.unitAfter === null) throw new TyrumError('TYRUM_ERR_INTERNAL', 'afterCommit outside a transaction');
    this.unitAfter.push(cb);
  }

  /** True while a unit's function runs (callers inside one must not wait for its commit). */
  inUnit(): boolean {
    return this.unitAfter !== null;
  }

  /** Resolves once everything run so far is durable. */
  durable(): Promise<void> {
    // After a failed sync, commit() and settled() both reject with it.
    if (this.group !== null) return this.commit(() => undefined);
    return this.settled() ?? Promise.resolve();
  }

  /**
   * Null when everything other connections can read is durable; otherwise resolves once it is
   * (without committing a group still open: nobody else can read that). Other connections read a
   * group from its COMMIT on, one log sync before it is durable, so a read that answers a caller
   * waits for this first and then reads at once, before another group can commit (groups commit
   * from setImmediate or timers, never from a promise callback; `tx` syncs before it returns).
   */
  settled(): Promise<void> | null {
    if (this.syncFailure !== null) return Promise.reject(this.syncFailure);
    const last = this.unsynced[this.unsynced.length - 1];
    if (last === undefined) return null;
    return new Promise<void>((resolve, reject) => last.units.push({ resolve: resolve as (v: unknown) => void, reject, value: undefined, after: [] }));
  }

  /**
   * Run `fn` in one IMMEDIATE transaction and return when it is durable. A group in progress
   * commits with it, at once. Inside a unit it is a nested savepoint of that unit.
   */
  tx<T>(fn: () => T): T {
    if (this.unitAfter !== null) {
      // A nested savepoint: callbacks it registered go with its writes if it rolls back.
      const after = this.unitAfter;
      const mark = after.length;
      try {
        return this.db !== null ? this.db.transaction(fn)() : this.pgNested(fn);
      } catch (e) {
        after.length = mark;
        throw e;
      }
    }
    const r = this.runUnit(fn);
    if (!r.ok) {
      // Commit what others queued this turn; the error is this caller's alone.
      this.flush(true);
      throw r.error;
    }
    this.group!.units.push({ resolve: () => undefined, reject: () => undefined, value: r.value, after: r.after });
    const failure = this.flush(true);
    if (failure !== null) throw failure;
    return r.value;
  }

  /** Commit the group in progress now and make everything committed durable (tests, shutdown). */
  flushNow(): void {
    this.flush(true);
  }

  commitStats(): CommitStats {
    return { ...this.stats };
  }

  /**
   * Statements this store sent to PostgreSQL, on its writer and `committed`-reader connections:
   * each is a round trip the calling thread blocks for. 0 on SQLite (statements run in-process).
   */
  roundTrips(): number {
    return (this.pg?.bridge.statements ?? 0) + (this.pgReader?.bridge.statements ?? 0);
  }

  /** Units written but not yet durable: those of the open group and of groups waiting for their sync. */
  pendingUnits(): number {
    let n = this.group?.units.length ?? 0;
    for (const g of this.unsynced) n += g.units.length;
    return n;
  }

  /** Reports each COMMIT's and each log sync's duration to `o` (null: to nobody). */
  observe(o: StoreObserver | null): void {
    this.observer = o;
  }

  /** A nested savepoint on PostgreSQL (better-sqlite3's transaction() does this on SQLite). */
  private pgNested<T>(fn: () => T): T {
    const name = `nested_${++this.nestedDepth}`;
    try {
      prepared(this.sql, `SAVEPOINT ${name}`).run();
      let value: T;
      try {
        value = fn();
      } catch (e) {
        prepared(this.sql, `ROLLBACK TO ${name}`).run();
        this.pg?.appendsReleased();
        prepared(this.sql, `RELEASE ${name}`).run();
        throw e;
      }
      prepared(this.sql, `RELEASE ${name}`).run();
      return value;
    } finally {
      this.nestedDepth -= 1;
    }
  }

  private runUnit<T>(fn: () => T, deferred = false): { ok: true; value: T; after: Array<() => void> } | { ok: false; error: unknown } {
    if (this.unitAfter !== null) throw new TyrumError('TYRUM_ERR_INTERNAL', 'Store.commit called inside a unit; use the enclosing unit');
    if (this.syncFailure !== null) return { ok: false, error: this.syncFailure };
    if (this.group === null) {
      // Another connection of this process holding a group open would make BEGIN IMMEDIATE wait
      // for a lock that only this thread can release: commit those first.
      for (const other of OPEN_GROUPS) if (other !== this) other.flush();
      try {
        if (this.pg !== null) this.pg.begin();
        else prepared(this.sql, 'BEGIN IMMEDIATE').run();
      } catch (e) {
        return { ok: false, error: e };
      }
      if (this.pg !== null) {
        this.groupGeneration = this.pg.bridge.generation;
        this.pg.txGeneration = this.groupGeneration;
      }
      const group: Group = { units: [], seq: 0, scheduled: null, deadline: null };
      // The group's timers, and the sync and callbacks they lead to, belong to no call (the first
      // writer's scope would otherwise follow every unit of the group: core/telemetry/context.ts).
      group.deadline = detached(() =>
        setTimeout(() => {
          group.deadline = null;
          if (this.group === group) this.flush();
        }, DEFERRED_COMMIT_MS),
      );
      this.group = group;
      OPEN_GROUPS.add(this);
    }
    const group = this.group;
    if (!deferred && group.scheduled === null) {
      group.scheduled = detached(() =>
        setImmediate(() => {
          group.scheduled = null;
          if (this.group === group) this.flush();
        }),
      );
    }
    const after: Array<() => void> = [];
    this.unitAfter = after;
    try {
      // Each unit is a SAVEPOINT of the open transaction: a throw rolls back this unit only.
      // (PostgreSQL sets and releases them lazily, saving round trips: PgDb.openUnit.)
      if (this.pg !== null) this.pg.openUnit();
      else prepared(this.sql, 'SAVEPOINT unit').run();
      let value: T;
      try {
        value = fn();
      } catch (e) {
        // PostgreSQL: a connection lost meanwhile took the transaction with it; nothing to roll
        // back, and a statement now would wait to reconnect for nothing (the group fails anyway).
        if (this.pg !== null && this.pg.bridge.generation !== this.groupGeneration) return { ok: false, error: e };
        if (this.pg !== null) {
          this.pg.unitFailed();
        } else {
          prepared(this.sql, 'ROLLBACK TO unit').run();
          prepared(this.sql, 'RELEASE unit').run();
        }
        return { ok: false, error: e };
      }
      if (this.pg !== null) this.pg.unitDone();
      else prepared(this.sql, 'RELEASE unit').run();
      return { ok: true, value, after };
    } catch (e) {
      return { ok: false, error: e };
    } finally {
      this.unitAfter = null;
    }
  }

  /**
   * COMMIT the open group. Returns the commit error, if any. Its units settle once the log is
   * synced: at once when SQLite synced in COMMIT or `now` is set (tx, shutdown: fdatasync here,
   * which settles every group committed before it), else when the next sync off the event loop
   * ends. Groups committed earlier are synced and settled even when this COMMIT fails.
   */
  private flush(now = false): unknown {
    const group = this.group;
    let failure: unknown = null;
    if (group !== null) {
      this.group = null;
      OPEN_GROUPS.delete(this);
      if (group.scheduled !== null) clearImmediate(group.scheduled);
      if (group.deadline !== null) clearTimeout(group.deadline);
      try {
        // After a failed sync nothing more is committed: the group is rolled back and refused.
        if (this.syncFailure !== null) throw this.syncFailure;
        this.crashPoint('group_commit_before');
        // PostgreSQL: a connection lost since BEGIN took the group's writes with it; COMMIT on
        // the new session would only warn "no transaction in progress".
        if (this.pg !== null && this.pg.bridge.generation !== this.groupGeneration) throw this.pg.lostTransaction();
        if (this.pg !== null && !now) {
          // PostgreSQL: the COMMIT is posted, not waited for; the group settles when the server
          // acknowledges it (durable: synchronous_commit=on). The worker runs statements in
          // order, so the next group's BEGIN queues behind it.
          this.pg.txGeneration = null;
          this.pg.transactionEnded();
          this.stats.commits += 1;
          this.stats.units += group.units.length;
          group.seq = ++this.lastCommitSeq;
          group.pending = true;
          this.unsynced.push(group);
          const t0 = this.observer ? performance.now() : 0;
          this.pg.bridge.sendNotify('COMMIT', (err, result) => {
            group.pending = false;
            // A transaction that had failed is rolled back by COMMIT, answered "ROLLBACK" with no error.
            if (err === null && result?.command === 'ROLLBACK') err = commitRolledBack();
            // The COMMIT's duration, from posting to the server's answer (it includes the server's WAL flush).
            if (err === null) this.observer?.committed((performance.now() - t0) / 1000);
            if (err !== null) group.failed = commitFailure(err);
            // Never settle inside the statement whose wait took this answer: callbacks may commit.
            queueMicrotask(() => this.settleAcknowledged());
          });
          return failure;
        }
        const t0 = this.observer ? performance.now() : 0;
        if (this.pg !== null) {
          const r = this.pg.exec('COMMIT');
          this.pg.txGeneration = null;
          this.pg.transactionEnded();
          if (r.command === 'ROLLBACK') throw commitRolledBack();
        } else {
          prepared(this.sql, 'COMMIT').run();
        }
        this.observer?.committed((performance.now() - t0) / 1000);
        this.stats.commits += 1;
        this.stats.units += group.units.length;
        group.seq = ++this.lastCommitSeq;
        this.unsynced.push(group);
      } catch (e) {
        if (this.db !== null) {
          if (this.db.inTransaction) this.db.exec('ROLLBACK');
        } else if (this.pg !== null) {
          this.pg.rollbackQuietly();
        }
        for (const u of group.units) u.reject(e);
        failure = e;
      }
    }
    if (this.unsynced.length === 0) return failure;
    if (this.walFd === null) {
      this.crashPoint('group_commit_after');
      this.settleThrough(this.lastCommitSeq);
      return failure;
    }
    if (!now) {
      this.syncWal();
      return failure;
    }
    this.crashPoint('group_commit_written');
    const through = this.lastCommitSeq;
    const t0 = this.observer ? performance.now() : 0;
    try {
      fdatasyncSync(this.walFd.sync);
    } catch (e) {
      this.stats.syncs += 1;
      return this.failSync(e);
    }
    this.stats.syncs += 1;
    this.observer?.synced((performance.now() - t0) / 1000);
    this.crashPoint('group_commit_after');
    this.settleThrough(through);
    return failure;
  }

  /**
   * fdatasync the log on libuv's thread pool, unless a sync is already running (it starts the
   * next one when it ends, covering every group committed meanwhile: the syncs pipeline with the
   * commits, one at a time). A sync covers the groups COMMITted before it began.
   */
  private syncWal(): void {
    if (this.syncInFlight || this.walFd === null || this.unsynced.length === 0 || this.syncFailure !== null) return;
    this.syncInFlight = true;
    this.crashPoint('group_commit_written');
    const through = this.lastCommitSeq;
    const t0 = this.observer ? performance.now() : 0;
    const fd = this.walFd.async;
    // A sync settles every writer's groups: its callback runs in no call's scope.
    detached(() => fdatasync(fd, (err) => {
      this.syncInFlight = false;
      // Counted when it ends, with its timing, so a scrape never sees one without the other.
      this.stats.syncs += 1;
      if (err === null) this.observer?.synced((performance.now() - t0) / 1000);
      // An error is fatal even if a synchronous sync settled the groups meanwhile: it may have
      // been reported to this descriptor only.
      if (err !== null) this.failSync(err);
      if (this.closeWalWhenIdle) return this.closeWal();
      if (err !== null) return;
      this.crashPoint('group_commit_after');
      this.settleThrough(through);
      this.syncWal();
    }));
  }

  /**
   * A failed fdatasync may have dropped the log's dirty pages (the kernel does not keep them for
   * a retry): what was committed since the last good sync may not be on disk, so those units are
   * rejected and the store refuses every later write. Only a restart, which recovers from what
   * is on disk, is safe.
   */
  private failSync(cause: unknown): TyrumError {
    const err =
      this.syncFailure ??
      new TyrumError(
        'TYRUM_ERR_STORE_IO',
        `could not make the database's write-ahead log durable (${cause instanceof Error ? cause.message : String(cause)}); refusing further writes: restart the gateway`,
        undefined,
        { cause },
      );
    this.syncFailure = err;
    for (const g of this.unsynced.splice(0)) for (const u of g.units) u.reject(err);
    this.stopCheckpointer();
    return err;
  }

  /**
   * Settle, in commit order, every group committed at or before `seq`: callbacks first, then
   * answers. A callback that commits with `tx` makes more groups durable; the loop that is
   * already running settles them after the current one, so the order holds.
   */
  private settleThrough(seq: number): void {
    this.syncedSeq = Math.max(this.syncedSeq, seq);
    if (this.settling) return;
    this.settling = true;
    try {
      // A PostgreSQL group whose COMMIT is unanswered stops the walk: later ones wait behind it.
      while (this.unsynced.length > 0 && this.unsynced[0]!.seq <= this.syncedSeq && this.unsynced[0]!.pending !== true) {
        const group = this.unsynced.shift()!;
        if (group.failed !== undefined) {
          for (const u of group.units) u.reject(group.failed);
          continue;
        }
        for (const u of group.units) {
          for (const cb of u.after) {
            try {
              cb();
            } catch (e) {
              // Callbacks are the store's own bookkeeping (event delivery, audit checkpoint state);
              // one that throws must not keep the other units from being told they are durable.
              process.emitWarning(`a commit callback threw: ${e instanceof Error ? e.message : String(e)}`);
            }
          }
        }
        for (const u of group.units) u.resolve(u.value);
      }
    } finally {
      this.settling = false;
    }
  }

  /** PostgreSQL: settle, in commit order, every group whose COMMIT was answered. */
  private settleAcknowledged(): void {
    let through = 0;
    for (const g of this.unsynced) {
      if (g.pending === true) break;
      through = g.seq;
    }
    if (through > 0) this.settleThrough(through);
  }

  private closeWal(): void {
    if (this.walFd === null) return;
    closeSync(this.walFd.async);
    closeSync(this.walFd.sync);
    this.walFd = null;
  }

  pragmas(): PragmaReport {
    const db = this.lite();
    return {
      journal_mode: String(db.pragma('journal_mode', { simple: true })),
      synchronous: Number(db.pragma('synchronous', { simple: true })),
      foreign_keys: Number(db.pragma('foreign_keys', { simple: true })),
      commit_sync: this.walFd === null ? 'sqlite' : 'store',
    };
  }

  /** Result of `PRAGMA integrity_check` ("ok" when healthy). */
  /**
   * SQLite's own consistency check: `full` is `integrity_check`, `quick` is `quick_check` (no
   * index-versus-table cross-check; still reads every page). 'ok', or up to `maxErrors` problems
   * joined by '; '.
   */
  integrityCheck(kind: 'full' | 'quick' = 'full', maxErrors = 100): string {
    const n = Math.max(1, Math.floor(maxErrors));
    const rows = this.lite().pragma(`${kind === 'full' ? 'integrity_check' : 'quick_check'}(${n})`) as Array<Record<string, unknown>>;
    return rows.map((r) => String(Object.values(r)[0])).join('; ');
  }

  /**
   * Changes whenever another connection commits; cheap to poll (used to notice CLI revocations,
   * plugin, grant and secret changes). SQLite: PRAGMA data_version. PostgreSQL: the sum of the
   * other writers' commit counters (tyrum_writers, bumped at every BEGIN), read through the
   * `committed` connection (one round trip); it counts other processes and replicas, not this
   * store's own commits, as on SQLite.
   */
  dataVersion(): number {
    if (this.pg !== null) {
      // One round trip per event-loop turn, not per caller: the redactor and every request ask
      // (about 20 times per governed call, a third of its statements), and within one turn the
      // answer is one instant's anyway. The next turn reads again, so a CLI commit made before a
      // request arrives is still seen by that request.
      if (this.pgDataVersion !== null) return this.pgDataVersion;
      const v = (this.pgReader ?? this.pg).othersCommits(this.pg.writerId);
      this.pgDataVersion = v;
      detached(() => setImmediate(() => (this.pgDataVersion = null)));
      return v;
    }
    this.lite();
    // A prepared statement, not db.pragma (which prepares one per call): the redactor asks per call.
    return Number((prepared(this.sql, 'PRAGMA data_version').get() as { data_version: number }).data_version);
  }

  schemaVersion(): number {
    if (this.pg !== null) return pgSchemaVersion(this.pg);
    return Number(this.lite().pragma('user_version', { simple: true }));
  }

  /** Apply pending migrations, each in its own transaction (SQLite; PostgreSQL's: migratePg at open). */
  migrate(migrations: readonly Migration[]): void {
    const current = this.schemaVersion();
    const latest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
    if (current > latest) {
      throw new TyrumError('TYRUM_ERR_STORE_MIGRATION', `database schema version ${current} is newer than this build supports (${latest}); upgrade tyrum`);
    }
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (m.version <= current) continue;
      try {
        const db = this.lite();
        db.transaction(() => {
          db.exec(m.sql);
          db.pragma(`user_version = ${m.version}`);
        }).immediate();
      } catch (e) {
        throw new TyrumError('TYRUM_ERR_STORE_MIGRATION', `migration ${m.version} (${m.name}) failed: ${(e as Error).message}`, undefined, { cause: e });
      }
    }
  }

  private stopCheckpointer(): void {
    if (this.checkpointer) this.checkpointerExit = this.checkpointer.stop();
    this.checkpointer = null;
  }

  /**
   * Resolves once everything close() started has ended: the checkpoint worker holds its own
   * connection to the database until its thread exits, so a caller that removes or reuses the
   * files (a test's temp dir, a restore) waits for this, not just for close().
   */
  whenClosed(): Promise<void> {
    return Promise.all([this.checkpointerExit, this.pgClosed]).then(() => undefined);
  }

  private pgClosed: Promise<void> = Promise.resolve();
  private closed = false;

  close(): void {
    if (this.pg !== null) {
      if (this.closed) return;
      this.closed = true;
      this.flush(true);
      this.pgClosed = Promise.all([this.pg.close(), this.pgReader?.close()]).then(() => undefined);
      return;
    }
    const db = this.lite();
    if (db.open) {
      this.flush(true);
      db.close();
    }
    this.stopCheckpointer();
    // A sync still running on the thread pool holds the descriptor: it closes it when it ends.
    if (this.syncInFlight) this.closeWalWhenIdle = true;
    else this.closeWal();
    if (this.reader?.open) this.reader.close();
  }
}

/** Why a posted COMMIT failed; a lost connection leaves its outcome unknown, and says so. */
function commitFailure(err: unknown): unknown {
  if (err instanceof TyrumError && err.code === 'TYRUM_ERR_STORE_UNAVAILABLE') {
    return new TyrumError('TYRUM_ERR_STORE_UNAVAILABLE', `PostgreSQL did not acknowledge the COMMIT (${err.message}): the group's writes may or may not be committed`, undefined, { cause: err });
  }
  return err;
}

function isLiveRow(t: TokenRecord, now: number): boolean {
  return t.revoked_at === null && (t.expires_at === null || t.expires_at > now);
}
