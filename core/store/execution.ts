/**
 * Repositories for durable execution (runs, steps, attempts), approvals and the event outbox.
 *
 * Raw rows only: JSON columns are text, booleans are 0/1. The state machines live in
 * core/execution and core/approvals; this file only knows SQL. Writes that carry a `Fence`
 * check the run's lease owner and fencing token in the statement's own WHERE clause, so a
 * worker that lost its lease cannot overwrite the new owner's work (TESTPLAN A3): the
 * statement simply matches no row.
 */
import { OwnerLookup, RUN_OWNER_SQL, TOKEN_OWNER_SQL } from './owners.js';
import { leaseClock, orderAppends, prepared, type DialectSql, type SqlDb, type SqlStatement } from './statements.js';

export type RunKind = 'tool' | 'workflow';
export type RunState = 'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';
export type PauseReason = 'approval' | 'outcome_unknown';
export type StepState = 'pending' | 'running' | 'waiting_approval' | 'succeeded' | 'failed' | 'outcome_unknown' | 'skipped' | 'cancelled';
export type AttemptState = 'started' | 'succeeded' | 'failed' | 'interrupted';
export type ApprovalState = 'pending' | 'approved' | 'denied' | 'expired';
export type ApprovalMode = 'once' | 'always';

export interface RunRow {
  id: string;
  kind: RunKind;
  state: RunState;
  created_by: string;
  idempotency_key: string | null;
  request_hash: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  cancel_requested: number;
  pause_reason: PauseReason | null;
  /** Not claimable before this time (retry backoff). */
  next_attempt_at: number;
  result: string | null;
  error: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  fencing_token: number;
}

export interface StepRow {
  run_id: string;
  idx: number;
  tool_id: string;
  args: string;
  args_hash: string;
  idempotency_key: string | null;
  state: StepState;
  idempotent: number;
  /** Null until the tool is resolved: the default depends on whether the step is idempotent. */
  max_attempts: number | null;
  timeout_ms: number;
  postcondition: string | null;
  attempts: number;
  policy_decision: string | null;
  policy_enforced: number | null;
  policy_snapshot_id: string | null;
  policy_detail: string | null;
  approval_id: string | null;
  definition_hash: string | null;
  plugin_digest: string | null;
  result: string | null;
  error: string | null;
  started_at: number | null;
  finished_at: number | null;
  updated_at: number;
}

export interface AttemptRow {
  run_id: string;
  step_idx: number;
  n: number;
  state: AttemptState;
  owner: string;
  fencing_token: number;
  started_at: number;
  finished_at: number | null;
  duration_ms: number | null;
  usage: string | null;
  result: string | null;
  error: string | null;
  /** JSON evidence the executor reported (migration 8); null when none. */
  evidence: string | null;
}

export interface ApprovalRow {
  id: string;
  run_id: string | null;
  step_idx: number | null;
  tool_id: string;
  /** Redacted arguments, for the operator to read; the binding is `args_hash`. */
  args: string;
  args_hash: string;
  definition_hash: string;
  plugin_digest: string;
  requested_by: string;
  state: ApprovalState;
  mode: ApprovalMode | null;
  reason: string | null;
  created_at: number;
  expires_at: number;
  resolved_at: number | null;
  /** The resolving actor as JSON. */
  resolved_by: string | null;
  consumed_at: number | null;
  /** The tenant of the run (or caller) that asked for it. Always set on a read row; 'default' when inserted without. */
  tenant_id?: string;
}

export interface OutboxRow {
  seq: number;
  event_id: string;
  type: string;
  payload: string;
  occurred_at: number;
  /** The tenant whose clients receive it (docs/tenancy.md). Always set on a read row; 'default' when inserted without. */
  tenant_id?: string;
}

/** The lease a write is made under: it matches only while the run is still ours. */
export interface Fence {
  owner: string;
  token: number;
}

type Bind = Record<string, string | number | null>;

const RUN_COLUMNS = new Set<string>([
  'state', 'updated_at', 'finished_at', 'cancel_requested', 'pause_reason', 'next_attempt_at', 'result', 'error', 'lease_owner', 'lease_expires_at', 'fencing_token',
]);
const STEP_COLUMNS = new Set<string>([
  'state', 'idempotent', 'max_attempts', 'attempts', 'policy_decision', 'policy_enforced', 'policy_snapshot_id', 'policy_detail', 'approval_id',
  'definition_hash', 'plugin_digest', 'result', 'error', 'started_at', 'finished_at', 'updated_at',
]);
const ATTEMPT_COLUMNS = new Set<string>(['state', 'finished_at', 'duration_ms', 'usage', 'result', 'error', 'evidence']);

const FENCE_SQL = 'EXISTS (SELECT 1 FROM runs AS f WHERE f.id = @w_run AND f.lease_owner = @w_owner AND f.fencing_token = @w_token)';

/** Prepared statements keyed by SQL text (the dynamic updates produce a handful of shapes). */
class Statements {
  constructor(private readonly db: SqlDb) {}
  get(sql: string | DialectSql): SqlStatement {
    return prepared(this.db, sql);
  }
  orderAppends(): void {
    orderAppends(this.db);
  }
}

/** `SET a = @s_a, ...` from the given fields; only whitelisted column names are accepted. */
function setClause(set: Record<string, unknown>, allowed: ReadonlySet<string>, bind: Bind): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(set)) {
    if (v === undefined) continue;
    if (!allowed.has(k)) throw new Error(`not an updatable column: ${k}`);
    parts.push(`${k} = @s_${k}`);
    bind[`s_${k}`] = v as string | number | null;
  }
  if (parts.length === 0) throw new Error('empty update');
  return parts.join(', ');
}

function stateIn(states: readonly string[] | undefined, column: string, bind: Bind): string {
  if (!states || states.length === 0) return '';
  states.forEach((s, i) => (bind[`w_st${i}`] = s));
  return ` AND ${column} IN (${states.map((_, i) => `@w_st${i}`).join(', ')})`;
}

function fence(runId: string, f: Fence | undefined, bind: Bind): string {
  if (!f) return '';
  bind.w_run = runId;
  bind.w_owner = f.owner;
  bind.w_token = f.token;
  return ` AND ${FENCE_SQL}`;
}

/** Which rows a conditional update may touch. */
export interface UpdateCondition<S extends string> {
  /** Only while the run's lease is still this one. */
  fence?: Fence;
  /** Only from one of these states. */
  states?: readonly S[];
}

/** Runs, steps and attempts. */
/** The claim's new lease (see `ExecutionRepo.claim`); `clock` is `leaseClock`'s. */
const claimSet = (clock: string): string => `state = 'running', lease_owner = @owner, lease_expires_at = ${clock} + @lease_ms, fencing_token = fencing_token + 1, updated_at = @now`;
/**
 * A run is claimable: queued or running, due, and its lease free or expired. The backoff
 * (`next_attempt_at`) is the caller's clock (scheduling); the lease is `clock`'s.
 */
const claimable = (clock: string): string => `state IN ('queued', 'running') AND next_attempt_at <= @now AND (lease_owner IS NULL OR lease_expires_at <= ${clock})`;

export class ExecutionRepo {
  private readonly s: Statements;
  /** SQL for "now" in lease expiry (see `leaseClock`). */
  private readonly clock: string;
  /** SQL for a new run's lease expiry (see the constructor). */
  private readonly leaseOnInsert: string;

  constructor(
    private readonly db: SqlDb,
    /** Run → tenant (core/store/owners.ts), shared with the connection's OutboxRepo. */
    private readonly owners = new OwnerLookup(db, RUN_OWNER_SQL),
  ) {
    this.s = new Statements(db);
    this.clock = leaseClock(db);
    // A run leased at submission: on PostgreSQL its expiry is measured on the server's clock like
    // every other lease (the row carries the submitter's; the same length from the server's now),
    // in the INSERT itself (no round trip of its own).
    this.leaseOnInsert = db.dialect === 'postgres' ? `CASE WHEN CAST(@lease_expires_at AS BIGINT) IS NULL THEN NULL ELSE ${this.clock} + (CAST(@lease_expires_at AS BIGINT) - CAST(@updated_at AS BIGINT)) END` : '@lease_expires_at';
  }

  /**
   * Inserts a run unless one with the same (created_by, idempotency_key) exists; true if inserted.
   * A run of a tenant other than the default gets its ownership row in the same statement group.
   */
  insertRun(r: RunRow, tenant = 'default'): boolean {
    const inserted = this.insertRunRow(r);
    if (inserted && tenant !== 'default') this.s.get('INSERT INTO tenant_runs (run_id, tenant_id) VALUES (?, ?)').run(r.id, tenant);
    if (inserted) this.owners.learn(r.id, tenant);
    return inserted;
  }

  /** The tenant that owns a run ('default' for an unknown run: callers check existence themselves). */
  runTenant(id: string): string {
    return this.owners.of(id) ?? 'default';
  }

  private insertRunRow(r: RunRow): boolean {
    return (
      this.s
        .get(
          `INSERT INTO runs (id, kind, state, created_by, idempotency_key, request_hash, created_at, updated_at, finished_at, cancel_requested, pause_reason,
             next_attempt_at, result, error, lease_owner, lease_expires_at, fencing_token)
           VALUES (@id, @kind, @state, @created_by, @idempotency_key, @request_hash, @created_at, @updated_at, @finished_at, @cancel_requested, @pause_reason,
             @next_attempt_at, @result, @error, @lease_owner, ${this.leaseOnInsert}, @fencing_token)
           ON CONFLICT DO NOTHING`,
        )
        .run(r).changes === 1
    );
  }

  insertStep(s: StepRow): void {
    this.s
      .get(
        `INSERT INTO steps (run_id, idx, tool_id, args, args_hash, idempotency_key, state, idempotent, max_attempts, timeout_ms, postcondition, attempts,
           policy_decision, policy_enforced, policy_snapshot_id, policy_detail, approval_id, definition_hash, plugin_digest, result, error, started_at, finished_at, updated_at)
         VALUES (@run_id, @idx, @tool_id, @args, @args_hash, @idempotency_key, @state, @idempotent, @max_attempts, @timeout_ms, @postcondition, @attempts,
           @policy_decision, @policy_enforced, @policy_snapshot_id, @policy_detail, @approval_id, @definition_hash, @plugin_digest, @result, @error, @started_at, @finished_at, @updated_at)`,
      )
      .run(s);
  }

  getRun(id: string): RunRow | undefined {
    return this.s.get('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
  }

  runByKey(createdBy: string, key: string): RunRow | undefined {
    return this.s.get('SELECT * FROM runs WHERE created_by = ? AND idempotency_key = ?').get(createdBy, key) as RunRow | undefined;
  }

  /** Newest first; `afterId` continues a previous page. */
  listRuns(query: { state?: RunState; limit: number; afterId?: string; tenant?: string }): RunRow[] {
    const where: string[] = [];
    const bind: Bind = { limit: query.limit };
    if (query.tenant === 'default') where.push('NOT EXISTS (SELECT 1 FROM tenant_runs t WHERE t.run_id = runs.id)');
    else if (query.tenant !== undefined) {
      where.push('id IN (SELECT run_id FROM tenant_runs WHERE tenant_id = @tenant)');
      bind.tenant = query.tenant;
    }
    if (query.state !== undefined) {
      where.push('state = @state');
      bind.state = query.state;
    }
    if (query.afterId !== undefined) {
      where.push('rowid < (SELECT rowid FROM runs WHERE id = @after)');
      bind.after = query.afterId;
    }
    const sql = `SELECT * FROM runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY rowid DESC LIMIT @limit`;
    return this.s.get(sql).all(bind) as RunRow[];
  }

  steps(runId: string): StepRow[] {
    return this.s.get('SELECT * FROM steps WHERE run_id = ? ORDER BY idx').all(runId) as StepRow[];
  }

  getStep(runId: string, idx: number): StepRow | undefined {
    return this.s.get('SELECT * FROM steps WHERE run_id = ? AND idx = ?').get(runId, idx) as StepRow | undefined;
  }

  attempts(runId: string): AttemptRow[] {
    return this.s.get('SELECT * FROM attempts WHERE run_id = ? ORDER BY step_idx, n').all(runId) as AttemptRow[];
  }

  lastAttempt(runId: string, idx: number): AttemptRow | undefined {
    return this.s.get('SELECT * FROM attempts WHERE run_id = ? AND step_idx = ? ORDER BY n DESC LIMIT 1').get(runId, idx) as AttemptRow | undefined;
  }

  /** True when some run could be claimed now (a cheap read before taking the write lock). */
  /** Runs in state `queued` (waiting for an engine, or for a retry's backoff): one index range count. */
  countQueued(): number {
    return (this.s.get(`SELECT COUNT(*) AS n FROM runs WHERE state = 'queued'`).get() as { n: number }).n;
  }

  hasClaimable(now: number): boolean {
    return this.s.get(`SELECT 1 FROM runs WHERE ${claimable(this.clock)} LIMIT 1`).get({ now }) !== undefined;
  }

  /** Ids of claimable runs, oldest first. */
  claimable(now: number, limit: number): string[] {
    return (
      this.s
        .get(
          `SELECT id FROM runs WHERE ${claimable(this.clock)} ORDER BY next_attempt_at, rowid LIMIT @limit`,
        )
        .all({ now, limit }) as Array<{ id: string }>
    ).map((r) => r.id);
  }

  /**
   * Takes the lease on a claimable run: owner, expiry, and a fencing token one higher than any
   * before, so every earlier holder's writes stop matching. Undefined if no longer claimable.
   */
  claim(id: string, owner: string, now: number, leaseMs: number): RunRow | undefined {
    const set = claimSet(this.clock);
    const cond = claimable(this.clock);
    return this.s
      .get({
        sqlite: `UPDATE runs SET ${set} WHERE id = @id AND ${cond} RETURNING *`,
        // Several replicas claim from one database: a run another replica's open transaction holds
        // (claiming it, or writing it) is skipped rather than waited for; it is not claimable now.
        postgres: `UPDATE runs SET ${set} WHERE id = (SELECT id FROM runs WHERE id = @id AND ${cond} FOR UPDATE SKIP LOCKED) RETURNING *`,
      })
      .get({ id, owner, now, lease_ms: leaseMs }) as RunRow | undefined;
  }

  /** Extends a lease we still hold to `leaseMs` from now; false when it was taken over or released. */
  renewLease(id: string, f: Fence, now: number, leaseMs: number): boolean {
    return (
      this.s
        .get(`UPDATE runs SET lease_expires_at = ${this.clock} + @lease_ms WHERE id = @id AND lease_owner = @owner AND fencing_token = @token`)
        .run({ id, owner: f.owner, token: f.token, now, lease_ms: leaseMs }).changes === 1
    );
  }

  /**
   * Whether the run's lease is held by no one now: no owner, or expired. On PostgreSQL "now" is the
   * server's clock (leases are measured on it), so a replica whose clock runs ahead cannot take a
   * live lease for expired.
   */
  leaseFree(id: string, now: number): boolean {
    return this.s.get(`SELECT 1 FROM runs WHERE id = @id AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ${this.clock})`).get({ id, now }) !== undefined;
  }

  /**
   * Makes leases held under `owner` claimable now. Only for an engine starting up: it holds no
   * lease yet, so any lease in its name was left by a previous incarnation that died.
   */
  expireLeasesOf(owner: string, now: number): number {
    return this.s.get(`UPDATE runs SET lease_expires_at = ${this.clock} WHERE lease_owner = @owner AND lease_expires_at > ${this.clock}`).run({ owner, now }).changes;
  }

  /** Conditional update of a run; the updated row, or undefined when the condition failed. */
  updateRun(id: string, set: Partial<RunRow>, cond: UpdateCondition<RunState> = {}): RunRow | undefined {
    const bind: Bind = { w_id: id };
    let sql = `UPDATE runs SET ${setClause(set, RUN_COLUMNS, bind)} WHERE id = @w_id${stateIn(cond.states, 'state', bind)}`;
    if (cond.fence) {
      sql += ' AND lease_owner = @w_owner AND fencing_token = @w_token';
      bind.w_owner = cond.fence.owner;
      bind.w_token = cond.fence.token;
    }
    return this.s.get(sql + ' RETURNING *').get(bind) as RunRow | undefined;
  }

  /** Conditional update of a step; the updated row, or undefined when the condition failed. */
  updateStep(runId: string, idx: number, set: Partial<StepRow>, cond: UpdateCondition<StepState> = {}): StepRow | undefined {
    const bind: Bind = { w_rid: runId, w_idx: idx };
    const sql = `UPDATE steps SET ${setClause(set, STEP_COLUMNS, bind)} WHERE run_id = @w_rid AND idx = @w_idx${stateIn(cond.states, 'state', bind)}${fence(runId, cond.fence, bind)} RETURNING *`;
    return this.s.get(sql).get(bind) as StepRow | undefined;
  }

  /** Steps of a run still in one of `states`, moved to `set` (e.g. cancelled after a failure). */
  updateSteps(runId: string, set: Partial<StepRow>, states: readonly StepState[], f?: Fence): StepRow[] {
    const bind: Bind = { w_rid: runId };
    const sql = `UPDATE steps SET ${setClause(set, STEP_COLUMNS, bind)} WHERE run_id = @w_rid${stateIn(states, 'state', bind)}${fence(runId, f, bind)} RETURNING *`;
    return (this.s.get(sql).all(bind) as StepRow[]).sort((a, b) => a.idx - b.idx);
  }

  /** Records an attempt as started, only while `f` holds the run's lease. */
  insertAttempt(a: AttemptRow, f: Fence): boolean {
    const bind: Bind = { ...a };
    const cond = fence(a.run_id, f, bind);
    const into = 'INSERT INTO attempts (run_id, step_idx, n, state, owner, fencing_token, started_at, finished_at, duration_ms, usage, result, error, evidence)';
    return (
      this.s
        .get({
          sqlite: `${into} SELECT @run_id, @step_idx, @n, @state, @owner, @fencing_token, @started_at, @finished_at, @duration_ms, @usage, @result, @error, @evidence WHERE 1${cond}`,
          // PostgreSQL types a parameter in a SELECT list as text unless told: each is cast to its column's type.
          postgres: `${into} SELECT CAST(@run_id AS text), CAST(@step_idx AS bigint), CAST(@n AS bigint), CAST(@state AS text), CAST(@owner AS text),
            CAST(@fencing_token AS bigint), CAST(@started_at AS bigint), CAST(@finished_at AS bigint), CAST(@duration_ms AS double precision), CAST(@usage AS text),
            CAST(@result AS text), CAST(@error AS text), CAST(@evidence AS text) WHERE TRUE${cond}`,
        })
        .run(bind).changes === 1
    );
  }

  /** Conditional update of an attempt; the updated row, or undefined when the condition failed. */
  updateAttempt(runId: string, idx: number, n: number, set: Partial<AttemptRow>, cond: UpdateCondition<AttemptState> = {}): AttemptRow | undefined {
    const bind: Bind = { w_rid: runId, w_idx: idx, w_n: n };
    const sql = `UPDATE attempts SET ${setClause(set, ATTEMPT_COLUMNS, bind)} WHERE run_id = @w_rid AND step_idx = @w_idx AND n = @w_n${stateIn(cond.states, 'state', bind)}${fence(runId, cond.fence, bind)} RETURNING *`;
    return this.s.get(sql).get(bind) as AttemptRow | undefined;
  }
}

/** Approval records. Resolution and expiry are single conditional UPDATEs (atomic). */
export class ApprovalRepo {
  private readonly s: Statements;

  constructor(db: SqlDb) {
    this.s = new Statements(db);
  }

  /** Approvals waiting for a decision: one index range count. */
  countPending(): number {
    return (this.s.get(`SELECT COUNT(*) AS n FROM approvals WHERE state = 'pending'`).get() as { n: number }).n;
  }

  insert(a: ApprovalRow): void {
    this.s
      .get(
        `INSERT INTO approvals (id, run_id, step_idx, tool_id, args, args_hash, definition_hash, plugin_digest, requested_by, state, mode, reason,
           created_at, expires_at, resolved_at, resolved_by, consumed_at, tenant_id)
         VALUES (@id, @run_id, @step_idx, @tool_id, @args, @args_hash, @definition_hash, @plugin_digest, @requested_by, @state, @mode, @reason,
           @created_at, @expires_at, @resolved_at, @resolved_by, @consumed_at, @tenant_id)`,
      )
      .run({ ...a, tenant_id: a.tenant_id ?? 'default' });
  }

  get(id: string): ApprovalRow | undefined {
    return this.s.get('SELECT * FROM approvals WHERE id = ?').get(id) as ApprovalRow | undefined;
  }

  /** Newest first; `afterId` continues a previous page. */
  list(query: { state?: ApprovalState; runId?: string; limit: number; afterId?: string; tenant?: string }): ApprovalRow[] {
    const where: string[] = [];
    const bind: Bind = { limit: query.limit };
    if (query.tenant !== undefined) {
      where.push('tenant_id = @tenant');
      bind.tenant = query.tenant;
    }
    if (query.state !== undefined) {
      where.push('state = @state');
      bind.state = query.state;
    }
    if (query.runId !== undefined) {
      where.push('run_id = @run_id');
      bind.run_id = query.runId;
    }
    if (query.afterId !== undefined) {
      where.push('rowid < (SELECT rowid FROM approvals WHERE id = @after)');
      bind.after = query.afterId;
    }
    const sql = `SELECT * FROM approvals ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY rowid DESC LIMIT @limit`;
    return this.s.get(sql).all(bind) as ApprovalRow[];
  }

  /** The pending approval moves to `state` only if it is still pending and not yet expired. */
  resolve(id: string, state: 'approved' | 'denied', mode: ApprovalMode, reason: string | null, resolvedBy: string, now: number): ApprovalRow | undefined {
    return this.s
      .get(
        `UPDATE approvals SET state = @state, mode = @mode, reason = @reason, resolved_by = @by, resolved_at = @now
         WHERE id = @id AND state = 'pending' AND expires_at > @now RETURNING *`,
      )
      .get({ id, state, mode, reason, by: resolvedBy, now }) as ApprovalRow | undefined;
  }

  hasDue(now: number): boolean {
    return this.s.get("SELECT 1 FROM approvals WHERE state = 'pending' AND expires_at <= ? LIMIT 1").get(now) !== undefined;
  }

  /** Marks every pending approval whose time is up as expired; each row moves exactly once. */
  expireDue(now: number, id?: string): ApprovalRow[] {
    if (id !== undefined) {
      return this.s
        .get("UPDATE approvals SET state = 'expired', resolved_at = @now, reason = 'expired' WHERE id = @id AND state = 'pending' AND expires_at <= @now RETURNING *")
        .all({ now, id }) as ApprovalRow[];
    }
    return this.s.get("UPDATE approvals SET state = 'expired', resolved_at = @now, reason = 'expired' WHERE state = 'pending' AND expires_at <= @now RETURNING *").all({ now }) as ApprovalRow[];
  }

  /** Pending approvals of a run, moved to denied (the run was cancelled). */
  denyPendingForRun(runId: string, reason: string, resolvedBy: string, now: number): ApprovalRow[] {
    return this.s
      .get("UPDATE approvals SET state = 'denied', reason = @reason, resolved_by = @by, resolved_at = @now WHERE run_id = @run_id AND state = 'pending' RETURNING *")
      .all({ run_id: runId, reason, by: resolvedBy, now }) as ApprovalRow[];
  }

  /** Single use: true only for the one call that consumes an approved, unconsumed approval for this step. */
  consume(id: string, runId: string, stepIdx: number, now: number): boolean {
    return (
      this.s
        .get("UPDATE approvals SET consumed_at = ? WHERE id = ? AND run_id = ? AND step_idx = ? AND state = 'approved' AND consumed_at IS NULL")
        .run(now, id, runId, stepIdx).changes === 1
    );
  }

  /**
   * After a decision, a run paused on exactly this approval becomes claimable again (the
   * engine then applies the decision). Returns the run when it was requeued.
   */
  requeueRun(a: ApprovalRow, now: number): RunRow | undefined {
    if (a.run_id === null || a.step_idx === null) return undefined;
    return this.s
      .get(
        `UPDATE runs SET state = 'queued', pause_reason = NULL, next_attempt_at = 0, updated_at = @now
         WHERE id = @run_id AND state = 'paused' AND pause_reason = 'approval'
           AND EXISTS (SELECT 1 FROM steps WHERE run_id = @run_id AND idx = @idx AND approval_id = @id AND state = 'waiting_approval')
         RETURNING *`,
      )
      .get({ run_id: a.run_id, idx: a.step_idx, id: a.id, now }) as RunRow | undefined;
  }
}

/** The durable event outbox. `seq` is the cursor clients hold. */
export class OutboxRepo {
  private readonly s: Statements;
  constructor(
    db: SqlDb,
    /** Run → tenant and token → tenant (core/store/owners.ts), shared with the connection's other repositories. */
    private readonly runs = new OwnerLookup(db, RUN_OWNER_SQL),
    private readonly tokens = new OwnerLookup(db, TOKEN_OWNER_SQL),
  ) {
    this.s = new Statements(db);
  }

  append(e: Omit<OutboxRow, 'seq'>): number {
    // PostgreSQL: seq is taken under the log lock, so seqs commit in order and a reader's cursor
    // never passes a seq that commits later (on another replica).
    this.s.orderAppends();
    return (this.s.get('INSERT INTO outbox (event_id, type, payload, occurred_at, tenant_id) VALUES (@event_id, @type, @payload, @occurred_at, @tenant_id) RETURNING seq').get({ ...e, tenant_id: e.tenant_id ?? 'default' }) as { seq: number }).seq;
  }

  /** Events after `seq`, oldest first; only `tenant`'s when given (a client's catch-up). */
  after(seq: number, limit: number, tenant?: string): OutboxRow[] {
    if (tenant !== undefined) return this.s.get('SELECT * FROM outbox WHERE seq > ? AND tenant_id = ? ORDER BY seq LIMIT ?').all(seq, tenant, limit) as OutboxRow[];
    return this.s.get('SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as OutboxRow[];
  }

  /**
   * The tenant owning the object an event payload names (its run, approval or conversation),
   * read in the transaction writing the event; 'default' for events about host-wide objects.
   */
  tenantOf(payload: Record<string, unknown>): string {
    const pick = (sql: string, id: unknown): string | undefined => (typeof id === 'string' ? (this.s.get(sql).get(id) as { tenant_id: string } | undefined)?.tenant_id : undefined);
    // An existing run decides: everything an event names alongside a run (its approval, the
    // conversation whose turn made it, the token that started it) belongs to the run's tenant.
    const run = typeof payload.run_id === 'string' ? this.runs.of(payload.run_id) : undefined;
    if (run !== undefined) return run;
    return (
      pick('SELECT tenant_id FROM approvals WHERE id = ?', payload.approval_id) ??
      pick('SELECT tenant_id FROM conversations WHERE id = ?', payload.conversation_id) ??
      // artifact.created names no run: the creating token's tenant.
      (typeof payload.created_by === 'string' ? this.tokens.of(payload.created_by) : undefined) ??
      'default'
    );
  }

  head(): number {
    return (this.s.get('SELECT COALESCE(MAX(seq), 0) AS n FROM outbox').get() as { n: number }).n;
  }
}
