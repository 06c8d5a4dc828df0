/**
 * The queries retention needs (core/retention): bounded scans in insertion order, what a removal
 * would take (rows and bytes), and the removals. Rows only: which rows may go, and when, is
 * decided in core/retention. Every scan reads at most `limit` rows past a cursor, so a batch
 * holds the write lock for a bounded time however large the tables are.
 *
 * "Bytes" are the sizes of the values the rows held (text and blob lengths, numbers as their
 * text), not pages returned to the filesystem: SQLite reuses freed pages for new rows.
 */
import { prepared, type SqlDb } from './statements.js';

/** Rows and bytes, of one table or summed over several. */
export interface Footprint {
  rows: number;
  bytes: number;
}

/** A run as the retention scan sees it. `done_at`: finished_at, or updated_at for an old row without one. */
export interface RunScanRow {
  rid: number;
  id: string;
  state: string;
  created_at: number;
  done_at: number;
  idempotency_key: string | null;
}

/** A row of a scan in insertion order (outbox, schedule fires): its key, time and size. */
export interface TimedScanRow {
  rid: number;
  at: number;
  bytes: number;
}

/** A conversation that may go: inactive, with no live turn, waiting message or pending delivery. */
export interface IdleConversation {
  id: string;
  updated_at: number;
}

const BYTES = new WeakMap<SqlDb, Map<string, string>>();

/** One row's size: every column's value length for `table` (built from its schema, so new columns count too). */
function rowBytes(db: SqlDb, table: string): string {
  let cache = BYTES.get(db);
  if (!cache) {
    cache = new Map();
    BYTES.set(db, cache);
  }
  let expr = cache.get(table);
  if (expr === undefined) {
    let cols: string[];
    if (db.dialect === 'sqlite') {
      const names = prepared(db, 'SELECT name FROM pragma_table_info(?) ORDER BY cid').all(table) as Array<{ name: string }>;
      cols = names.map((c) => `COALESCE(LENGTH(CAST("${c.name}" AS BLOB)), 0)`);
    } else {
      // The same measure: bytes of text and bytea values, numbers as their text. The rowid
      // stand-in is not a column in SQLite's sense (core/store/pg/migrations.ts): not counted.
      const names = prepared(
        db,
        "SELECT column_name AS name, data_type AS type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? AND column_name <> 'rowid' ORDER BY ordinal_position",
      ).all(table) as Array<{ name: string; type: string }>;
      cols = names.map((c) => (c.type === 'bytea' || c.type === 'text' ? `COALESCE(octet_length("${c.name}"), 0)` : `COALESCE(octet_length(CAST("${c.name}" AS text)), 0)`));
    }
    expr = `(${cols.join(' + ')})`;
    cache.set(table, expr);
  }
  return expr;
}

export class RetentionRepo {
  constructor(private readonly db: SqlDb) {}

  private footprint(table: string, where: string, ...params: unknown[]): Footprint {
    const r = prepared(this.db, `SELECT COUNT(*) AS rows, COALESCE(SUM(${rowBytes(this.db, table)}), 0) AS bytes FROM ${table} WHERE ${where}`).get(...params) as Footprint;
    return { rows: r.rows, bytes: r.bytes };
  }

  // --- runs ---

  /** Up to `limit` runs after rowid `after`, in insertion order. */
  scanRuns(after: number, limit: number): RunScanRow[] {
    return prepared(
      this.db,
      'SELECT rowid AS rid, id, state, created_at, COALESCE(finished_at, updated_at) AS done_at, idempotency_key FROM runs WHERE rowid > ? ORDER BY rowid LIMIT ?',
    ).all(after, limit) as RunScanRow[];
  }

  /** Ids of agent turns still queued or running (their tool runs are keyed `<turn id>:<call id>`). */
  liveTurnIds(): Set<string> {
    return new Set((prepared(this.db, "SELECT id FROM turns WHERE state IN ('queued', 'running')").all() as Array<{ id: string }>).map((r) => r.id));
  }

  hasPendingApproval(runId: string): boolean {
    return prepared(this.db, "SELECT 1 FROM approvals WHERE run_id = ? AND state = 'pending' LIMIT 1").get(runId) !== undefined;
  }

  /** The run with its steps, attempts and approvals: what removing it takes. */
  runFootprint(runId: string): { runs: Footprint; steps: Footprint; attempts: Footprint; approvals: Footprint } {
    return {
      runs: this.footprint('runs', 'id = ?', runId),
      steps: this.footprint('steps', 'run_id = ?', runId),
      attempts: this.footprint('attempts', 'run_id = ?', runId),
      approvals: this.footprint('approvals', 'run_id = ?', runId),
    };
  }

  /** Removes the run; its steps, attempts and approvals go with it (ON DELETE CASCADE). */
  deleteRun(runId: string): boolean {
    return prepared(this.db, 'DELETE FROM runs WHERE id = ?').run(runId).changes === 1;
  }

  // --- the event outbox ---

  /** Up to `limit` events after seq `after`, oldest first, never the newest event (a client's cursor may point at it). */
  scanOutbox(after: number, limit: number): TimedScanRow[] {
    return prepared(
      this.db,
      `SELECT seq AS rid, occurred_at AS at, ${rowBytes(this.db, 'outbox')} AS bytes
       FROM outbox WHERE seq > ? AND seq < (SELECT MAX(seq) FROM outbox) ORDER BY seq LIMIT ?`,
    ).all(after, limit) as TimedScanRow[];
  }

  /** Removes the events with seq in (after, through]. */
  deleteOutbox(after: number, through: number): number {
    return prepared(this.db, 'DELETE FROM outbox WHERE seq > ? AND seq <= ?').run(after, through).changes;
  }

  // --- schedule fires ---

  /** Up to `limit` fire records after rowid `after`, in insertion (fire) order. */
  scanFires(after: number, limit: number): TimedScanRow[] {
    return prepared(
      this.db,
      `SELECT rowid AS rid, fired_at AS at, ${rowBytes(this.db, 'schedule_fires')} AS bytes
       FROM schedule_fires WHERE rowid > ? ORDER BY rowid LIMIT ?`,
    ).all(after, limit) as TimedScanRow[];
  }

  deleteFires(rids: readonly number[]): number {
    let n = 0;
    for (const rid of rids) n += prepared(this.db, 'DELETE FROM schedule_fires WHERE rowid = ?').run(rid).changes;
    return n;
  }

  // --- conversations ---

  /**
   * Up to `limit` conversations inactive since before `cutoff`, ordered by (updated_at, id) after
   * the cursor, that nothing still needs: no queued or running turn, no user message waiting for
   * one, no pending delivery.
   */
  idleConversations(cutoff: number, after: { updated_at: number; id: string } | null, limit: number): IdleConversation[] {
    return prepared(
      this.db,
      `SELECT c.id, c.updated_at FROM conversations c
       WHERE c.updated_at < @cutoff AND (CAST(@au AS BIGINT) IS NULL OR (c.updated_at, c.id) > (@au, @aid))
         AND NOT EXISTS (SELECT 1 FROM turns WHERE conversation_id = c.id AND state = 'running')
         AND NOT EXISTS (SELECT 1 FROM turns WHERE conversation_id = c.id AND state = 'queued')
         AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = c.id AND role = 'user' AND turn_id IS NULL)
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE conversation_id = c.id AND state = 'pending')
       ORDER BY c.updated_at, c.id LIMIT @limit`,
    ).all({ cutoff, au: after?.updated_at ?? null, aid: after?.id ?? null, limit }) as IdleConversation[];
  }

  /** The conversation with its messages, turns and deliveries. */
  conversationFootprint(id: string): { conversations: Footprint; messages: Footprint; turns: Footprint; deliveries: Footprint } {
    return {
      conversations: this.footprint('conversations', 'id = ?', id),
      messages: this.footprint('messages', 'conversation_id = ?', id),
      turns: this.footprint('turns', 'conversation_id = ?', id),
      deliveries: this.footprint('deliveries', 'conversation_id = ?', id),
    };
  }

  /**
   * Removes up to `limit` rows of the conversation, children first (deliveries, messages, turns),
   * the conversation itself once none are left. Returns what went, per table, and whether the
   * conversation is gone.
   */
  deleteConversationPart(id: string, limit: number): { removed: Record<'deliveries' | 'messages' | 'turns' | 'conversations', Footprint>; done: boolean } {
    const removed = { deliveries: { rows: 0, bytes: 0 }, messages: { rows: 0, bytes: 0 }, turns: { rows: 0, bytes: 0 }, conversations: { rows: 0, bytes: 0 } };
    let left = limit;
    for (const table of ['deliveries', 'messages', 'turns'] as const) {
      if (left <= 0) return { removed, done: false };
      const pick = `rowid IN (SELECT rowid FROM ${table} WHERE conversation_id = ? ORDER BY rowid LIMIT ?)`;
      const f = this.footprint(table, pick, id, left);
      if (f.rows === 0) continue;
      prepared(this.db, `DELETE FROM ${table} WHERE ${pick}`).run(id, left);
      removed[table] = f;
      left -= f.rows;
      if (prepared(this.db, `SELECT 1 FROM ${table} WHERE conversation_id = ? LIMIT 1`).get(id) !== undefined) return { removed, done: false };
    }
    if (left <= 0) return { removed, done: false };
    removed.conversations = this.footprint('conversations', 'id = ?', id);
    prepared(this.db, 'DELETE FROM conversations WHERE id = ?').run(id);
    return { removed, done: true };
  }

  // --- artifacts ---

  /** Up to `limit` artifacts after rowid `after`, in insertion order, with whether any run still holds them. */
  scanArtifacts(after: number, limit: number): Array<{ rid: number; id: string; size: number; created_at: number; attached: number }> {
    return prepared(
      this.db,
      'SELECT rowid AS rid, id, size, created_at, EXISTS (SELECT 1 FROM artifact_attachments a WHERE a.artifact_id = artifacts.id) AS attached FROM artifacts WHERE rowid > ? ORDER BY rowid LIMIT ?',
    ).all(after, limit) as Array<{ rid: number; id: string; size: number; created_at: number; attached: number }>;
  }

  artifactFootprint(id: string): Footprint {
    const a = this.footprint('artifacts', 'id = ?', id);
    const b = this.footprint('artifact_attachments', 'artifact_id = ?', id);
    return { rows: a.rows + b.rows, bytes: a.bytes + b.bytes };
  }

  deleteArtifact(id: string): void {
    prepared(this.db, 'DELETE FROM artifacts WHERE id = ?').run(id);
  }

  // --- workflows ---

  /** Ids of workflows still running or paused (their step runs are keyed `wf:<id>:<idx>`). */
  liveWorkflowIds(): Set<string> {
    return new Set((prepared(this.db, "SELECT id FROM workflows WHERE state IN ('running', 'paused')").all() as Array<{ id: string }>).map((r) => r.id));
  }

  /** Up to `limit` finished workflows after rowid `after`, in insertion order. */
  scanWorkflows(after: number, limit: number): Array<{ rid: number; id: string; state: string; created_at: number; finished_at: number | null }> {
    return prepared(this.db, 'SELECT rowid AS rid, id, state, created_at, finished_at FROM workflows WHERE rowid > ? ORDER BY rowid LIMIT ?').all(after, limit) as Array<{ rid: number; id: string; state: string; created_at: number; finished_at: number | null }>;
  }

  workflowFootprint(id: string): Footprint {
    const a = this.footprint('workflows', 'id = ?', id);
    const b = this.footprint('workflow_gates', 'workflow_id = ?', id);
    return { rows: a.rows + b.rows, bytes: a.bytes + b.bytes };
  }

  deleteWorkflow(id: string): void {
    prepared(this.db, 'DELETE FROM workflows WHERE id = ?').run(id);
  }

  // --- commit counters (PostgreSQL's tyrum_writers, migration 18) ---

  /**
   * Folds the commit counters of writers not bumped since `before` (connections that closed: every
   * CLI run and every restart leaves one row) into the single row `retired`, in the caller's
   * transaction: the rows' sum, which every store's `dataVersion` is read from, does not change
   * (a writer still alive whose row was folded just starts a new row at its next commit; its own
   * view changes once, which costs it one reconcile). Returns the rows folded. SQLite has no such
   * table (its data_version is the file's): 0.
   */
  foldIdleWriters(before: number, now: number): number {
    if (this.db.dialect === 'sqlite') return 0;
    const r = prepared(
      this.db,
      `WITH gone AS (DELETE FROM tyrum_writers WHERE last_at < ? AND writer <> 'retired' RETURNING commits),
       kept AS (
         INSERT INTO tyrum_writers (writer, commits, last_at)
         SELECT 'retired', SUM(commits), CAST(? AS BIGINT) FROM gone HAVING COUNT(*) > 0
         ON CONFLICT (writer) DO UPDATE SET commits = tyrum_writers.commits + excluded.commits, last_at = excluded.last_at
         RETURNING 1
       )
       SELECT (SELECT COUNT(*) FROM gone) AS n, (SELECT COUNT(*) FROM kept) AS k`,
    ).get(before, now) as { n: number; k: number };
    return r.n;
  }
}
