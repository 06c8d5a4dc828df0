/**
 * The durable execution engine: every tool call is a run of one or more steps that survives
 * crashes, is decided by policy, and pauses for a human when it must.
 *
 * Invariants (ARCHITECTURE.md "Durable execution"):
 * - A run is claimed with a lease (owner, expiry, fencing token) in one transaction. Every
 *   write a worker makes under that lease names the token in its WHERE clause, so a worker
 *   whose lease was taken over cannot write anything (TESTPLAN A3).
 * - Every state change, its outbox event and the audit entries describing it commit in the same
 *   transaction, a unit of the store's group commit (Store.commit): units from concurrent runs
 *   that fall in one turn of the event loop share one fsync. A caller is answered only after
 *   its unit is durable.
 * - A call costs one commit per phase: its start (submission, lease, policy decision, attempt
 *   `started`) and its end (attempt, step, run, events, audit). A submission this engine can
 *   run at once is carried into the run's first commit instead of being committed alone; a
 *   read-only step (no external effect) is called before anything of it is written, so its
 *   start is carried into its end commit: a run of one read-only step commits once.
 * - An attempt is committed as `started` before the tool is called. A `started` attempt found
 *   by a later owner was cut off mid-flight: an idempotent step is retried; any other step
 *   becomes `outcome_unknown` and the run waits for an operator. A step that succeeded is never
 *   executed again: execution always begins at the first step that has not succeeded.
 * - Approval state lives only in the approvals table, bound by hash to one call; it is
 *   verified against the step's actual arguments, definition hash and plugin digest just
 *   before the call, and consumed once.
 */
import { randomUUID } from 'node:crypto';
import type { AttemptRow, RunRow, RunState, StepRow, Store } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import { TyrumError, isTyrumError, type ErrorCode } from '../errors/index.js';
import { argsHash, bindingMismatch, type Binding } from '../approvals/binding.js';
import type { ApprovalService } from '../approvals/service.js';
import { EventLog, runEventPayload, stepEventPayload, type Emit, type EventListener } from './events.js';
import { crashPointFromEnv, type CrashPoint } from '../util/crash.js';
import { checkPostcondition, type Postcondition } from './postcondition.js';
import { backoffMs, classifyFailure, DEFAULT_BACKOFF, type BackoffOptions } from './retry.js';
import { requestHash, validateSubmit } from './validate.js';
import type {
  ArtifactRef,
  ArtifactSink,
  AttemptView,
  ErrorInfo,
  ExecuteContext,
  ExecuteResult,
  PolicyResult,
  ResolvedTool,
  RunDetail,
  RunListQuery,
  RunView,
  StepCall,
  StepView,
  SubmitInput,
  UnknownResolution,
} from './types.js';
import { raceAbort } from '../util/abort.js';
import { DEFAULT_TENANT } from '../../schemas/index.js';
import { withLogFields, incomingTrace, detached } from '../telemetry/context.js';
import { guardedObserver, type CallObserver, type CallRecord } from '../telemetry/calls.js';

export interface ExecutionEngineOptions {
  store: Store;
  audit: AuditLog;
  /** Unique per engine instance (e.g. `gw-<hostname>-<pid>-<random>`); leases are held in its name. */
  owner: string;
  approvals: ApprovalService;
  /**
   * The registry lookup: the tool, or the error its step fails with when it cannot run (e.g.
   * TYRUM_ERR_MCP_QUARANTINED for an MCP tool whose definition changed while its call waited for
   * approval); null when no such tool is enabled (not found).
   */
  resolveTool(toolId: string): ResolvedTool | TyrumError | null;
  /** The policy decision (core/policy's decide, bound to the active snapshot by the integrator). */
  decide(step: StepCall): PolicyResult | Promise<PolicyResult>;
  /** Runs the call (PluginHost.invoke). Must honour `signal`. */
  execute(step: StepCall, ctx: ExecuteContext): Promise<ExecuteResult>;
  /** Applied to every recorded result, error and displayed argument. */
  redact?: (value: unknown) => unknown;
  /**
   * Stores the artifacts a successful call reports (ExecuteResult.artifacts) and attaches them to
   * its attempt. Without it, a call that reports artifacts fails (TYRUM_ERR_ARTIFACT_INVALID).
   */
  artifacts?: ArtifactSink;
  now?: () => number;
  /** TEST ONLY: called at each named crash point. Default: from TYRUM_TEST_CRASH_AT (off when unset). */
  crashPoint?: (name: CrashPoint) => void;
  /** Lease length (default 30 s). */
  leaseMs?: number;
  /** How often held leases are renewed (default leaseMs / 3). */
  heartbeatMs?: number;
  /** How often to look for claimable runs, e.g. resumed by another process (default 500 ms). */
  pollMs?: number;
  /** How often due approvals are expired (default 10 s). */
  sweepMs?: number;
  /** Runs executed at once by this engine (default ENGINE_CONCURRENCY_DEFAULT). */
  concurrency?: number;
  /**
   * How long the caller of `submit` may wait for a read-only first step to finish before the
   * run is committed as running and the caller answered (default READ_ONLY_ACK_MS).
   */
  readOnlyAckMs?: number;
  /** Per-attempt timeout when a step names none (default 30 s). */
  defaultTimeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
  /**
   * Told about every governed call (core/telemetry): its policy, sandbox and commit stages and how
   * it ended, for metrics and traces. Without it nothing is timed.
   */
  calls?: CallObserver;
}

/** How `submit` may start the run. */
export interface SubmitOptions {
  /**
   * Take the run in this engine at once if it has a free slot, committing the submission with
   * the run's first step (the protocol's tool.invoke and workflow.start, whose callers wait).
   * Without it the run is committed queued and claimed by the worker loop.
   */
  runNow?: boolean;
}

export const RUNS_LIST_DEFAULT_LIMIT = 50;
/**
 * Runs in flight at once per engine. A run waiting on a tool holds a slot but no CPU; with group
 * commit, more runs in flight means more of them per fsync, so this is sized for concurrent
 * callers rather than for cores.
 */
export const ENGINE_CONCURRENCY_DEFAULT = 64;
/** See ExecutionEngineOptions.readOnlyAckMs. */
export const READ_ONLY_ACK_MS = 100;
export const RUNS_LIST_MAX_LIMIT = 500;
const MAX_ERROR_DETAILS_BYTES = 16 * 1024;

const TERMINAL: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'cancelled']);
const SETTLED: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'cancelled', 'paused']);
const UNFINISHED_STEPS = ['pending', 'waiting_approval', 'running'] as const;

/** Appends an audit entry inside the unit being committed. */
type Audit = (type: string, actor: AuditActor, data: Record<string, unknown>) => void;
type Write = (emit: Emit, audit: Audit) => void;

/** Writes of a run not committed yet, and the callers waiting for them to be (see `unit`). */
interface Carry {
  writes: Write[];
  /** Answered with the run row as committed. */
  waiters: Array<{ resolve: (run: RunRow) => void; reject: (e: unknown) => void }>;
}

interface Claim {
  runId: string;
  fence: { owner: string; token: number };
  /** Set by the heartbeat when renewal found the lease gone, or when a carried commit failed. */
  lost: boolean;
  controller: AbortController | null;
  /** Writes that go into the run's next commit (a submission, a deferred read-only start). */
  carry: Carry | null;
  /** The call being made now, when a CallObserver watches (its commits are timed by `unit`). */
  call?: CallRecord | null;
  /** The W3C traceparent of the request that submitted the run and is waiting for it (its calls' parent). */
  traceparent?: string | null;
  /** The run's tenant, known at submission (a run taken then is not in the store before its first read-only call). */
  tenant?: string;
}

/** Thrown inside a carried submission that lost its idempotency key to a concurrent one. */
class DuplicateSubmission extends Error {}

type Next = 'continue' | 'stop';

/** Fields a step acquires when its tool is resolved and policy has decided. */
type Resolution = Partial<Pick<StepRow, 'idempotent' | 'max_attempts' | 'definition_hash' | 'plugin_digest' | 'policy_decision' | 'policy_enforced' | 'policy_snapshot_id' | 'policy_detail'>>;

function parseJson(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

function leaseLost(runId: string, owner: string): TyrumError {
  return new TyrumError('TYRUM_ERR_LEASE_LOST', `lease on run ${runId} is no longer held by ${owner}; write rejected`, { run_id: runId, owner });
}


/** Runs, steps and attempts: submission, the worker loop, recovery, cancellation, evidence. */
export class ExecutionEngine {
  /** The outbox shared with the approval service: catch-up (`after`) and live listeners. */
  readonly events: EventLog;
  readonly owner: string;
  private readonly o: ExecutionEngineOptions;
  private readonly store: Store;
  private readonly approvals: ApprovalService;
  private readonly now: () => number;
  private readonly redact: (value: unknown) => unknown;
  private readonly crash: (name: CrashPoint) => void;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly pollMs: number;
  private readonly sweepMs: number;
  private readonly concurrency: number;
  private readonly readOnlyAckMs: number;
  private claiming = false;
  private kickAfterClaim = false;
  private readonly defaultTimeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly actor: AuditActor;
  private readonly active = new Map<string, Claim>();
  private readonly tasks = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** The finish callbacks of callers in wait(); stop() answers them before the store can close. */
  private readonly waiters = new Set<() => void>();
  private started = false;
  private stopping = false;
  private calls: CallObserver | null;
  private kickPending = false;

  constructor(options: ExecutionEngineOptions) {
    if (typeof options.owner !== 'string' || options.owner.length === 0 || options.owner.length > 200) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'engine owner must be a non-empty string of at most 200 characters');
    }
    this.o = options;
    this.calls = options.calls ? this.guarded(options.calls) : null;
    this.owner = options.owner;
    this.store = options.store;
    this.approvals = options.approvals;
    this.events = options.approvals.events;
    this.now = options.now ?? Date.now;
    this.redact = options.redact ?? ((v) => v);
    this.crash = options.crashPoint ?? crashPointFromEnv();
    this.leaseMs = positive(options.leaseMs ?? 30_000, 'leaseMs');
    this.heartbeatMs = positive(options.heartbeatMs ?? Math.max(1, Math.floor(this.leaseMs / 3)), 'heartbeatMs');
    this.pollMs = positive(options.pollMs ?? 500, 'pollMs');
    this.sweepMs = positive(options.sweepMs ?? 10_000, 'sweepMs');
    this.concurrency = positive(options.concurrency ?? ENGINE_CONCURRENCY_DEFAULT, 'concurrency');
    this.readOnlyAckMs = positive(options.readOnlyAckMs ?? READ_ONLY_ACK_MS, 'readOnlyAckMs');
    this.defaultTimeoutMs = positive(options.defaultTimeoutMs ?? 30_000, 'defaultTimeoutMs');
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.actor = { kind: 'engine', owner: this.owner };
    // A run requeued in this process (an approval decided, an operator's call) starts at once;
    // changes made by other processes are picked up by the poll.
    this.events.onEvent((e) => {
      if (e.type === 'run.updated' && e.payload.state === 'queued') this.kick();
    });
  }

  // ---------------------------------------------------------------- submission and reads

  /**
   * Accepts a run (and its steps); resolves once it is durable. A repeated idempotency key from
   * the same creator returns the original run (`existing: true`) if the request is the same, and
   * `conflict` otherwise; concurrent duplicates collapse onto one run through the unique index.
   *
   * With `runNow` and a free slot in this engine, the run is taken at once: the submission is carried into
   * the run's first commit (with its lease, policy decision and attempt start), or, for a
   * read-only first step, into the commit of its result — then the run may already be finished
   * when this resolves. A caller waits at most `readOnlyAckMs` for that before the run is
   * committed as running.
   */
  submit(input: SubmitInput, options: SubmitOptions = {}): Promise<{ run: RunView; existing: boolean }> {
    // Bad input and a reused key throw at once; everything else settles the promise.
    validateSubmit(input);
    const hash = requestHash(input);
    const key = input.idempotency_key ?? null;
    if (key !== null) {
      const prior = this.store.execution.runByKey(input.created_by, key);
      if (prior) return this.existing(prior, hash, key);
    }
    return this.accept(input, hash, key, options.runNow === true);
  }

  /**
   * Inside a unit of the store's group commit that the caller owns (`Store.commit`,
   * `EventLog.commit`): accepts a run in that unit, so it commits — or rolls back — with the
   * caller's other writes (the scheduler records a fire and its run in one transaction). The run is
   * queued and claimed by the worker loop after the commit. A repeated idempotency key from the same
   * creator returns the original run (`existing: true`) if the request is the same, and `conflict`
   * otherwise. Events go through `emit`, the audit entry into the same unit.
   */
  submitInUnit(input: SubmitInput, emit: Emit): { run: RunView; existing: boolean } {
    if (!this.store.inUnit()) throw new TyrumError('TYRUM_ERR_INTERNAL', 'submitInUnit outside a unit');
    validateSubmit(input);
    const hash = requestHash(input);
    const key = input.idempotency_key ?? null;
    if (key !== null) {
      const prior = this.store.execution.runByKey(input.created_by, key);
      if (prior) {
        if (prior.request_hash !== hash) throw new TyrumError('TYRUM_ERR_CONFLICT', `idempotency key ${JSON.stringify(key)} was already used for a different request`, { run_id: prior.id, idempotency_key: key });
        return { run: this.runView(prior), existing: true };
      }
    }
    const { row, steps, actor } = this.newRun(input, hash, key);
    if (!this.store.execution.insertRun(row, input.tenant_id)) throw new TyrumError('TYRUM_ERR_INTERNAL', 'run insert was refused but no run holds its idempotency key');
    for (const st of steps) this.store.execution.insertStep(st);
    emit('run.updated', runEventPayload(row));
    this.o.audit.appendInTx('run.submitted', actor, { run_id: row.id, kind: input.kind, idempotency_key: key, request_hash: hash, tools: input.steps.map((x) => x.tool_id) });
    this.store.afterCommit(() => this.kick());
    return { run: this.runView(row), existing: false };
  }

  /** The rows of a new queued run. */
  private newRun(input: SubmitInput, hash: string, key: string | null): { row: RunRow; steps: StepRow[]; actor: AuditActor } {
    const now = this.now();
    const row: RunRow = {
      id: `run_${randomUUID()}`,
      kind: input.kind,
      state: 'queued',
      created_by: input.created_by,
      idempotency_key: key,
      request_hash: hash,
      created_at: now,
      updated_at: now,
      finished_at: null,
      cancel_requested: 0,
      pause_reason: null,
      next_attempt_at: 0,
      result: null,
      error: null,
      lease_owner: null,
      lease_expires_at: null,
      fencing_token: 0,
    };
    const steps: StepRow[] = input.steps.map((s, idx) => ({
      run_id: row.id,
      idx,
      tool_id: s.tool_id,
      args: JSON.stringify(s.args),
      args_hash: argsHash(s.args),
      idempotency_key: s.idempotency_key ?? null,
      state: 'pending',
      idempotent: 0,
      max_attempts: s.max_attempts ?? null,
      timeout_ms: s.timeout_ms ?? this.defaultTimeoutMs,
      postcondition: s.postcondition === undefined ? null : JSON.stringify(s.postcondition),
      attempts: 0,
      policy_decision: null,
      policy_enforced: null,
      policy_snapshot_id: null,
      policy_detail: null,
      approval_id: null,
      definition_hash: null,
      plugin_digest: null,
      result: null,
      error: null,
      started_at: null,
      finished_at: null,
      updated_at: now,
    }));
    return { row, steps, actor: input.actor ?? { kind: 'principal', id: input.created_by } };
  }

  private async accept(input: SubmitInput, hash: string, key: string | null, runNow: boolean): Promise<{ run: RunView; existing: boolean }> {
    const now = this.now();
    const { row, steps, actor } = this.newRun(input, hash, key);
    const take = runNow && this.started && !this.stopping && this.active.size < this.concurrency;
    if (take) Object.assign(row, { state: 'running', lease_owner: this.owner, lease_expires_at: now + this.leaseMs, fencing_token: 1 });
    const write: Write = (emit, audit) => {
      // Lost a race on (created_by, idempotency_key): the index kept the first.
      if (!this.store.execution.insertRun(row, input.tenant_id)) throw new DuplicateSubmission();
      for (const st of steps) this.store.execution.insertStep(st);
      emit('run.updated', runEventPayload(row));
      audit('run.submitted', actor, { run_id: row.id, kind: input.kind, idempotency_key: key, request_hash: hash, tools: input.steps.map((x) => x.tool_id) });
    };
    let committed: RunRow;
    try {
      if (take) {
        committed = await new Promise<RunRow>((resolve, reject) => {
          const claim: Claim = {
            runId: row.id,
            fence: { owner: this.owner, token: 1 },
            lost: false,
            controller: null,
            carry: { writes: [write], waiters: [{ resolve, reject }] },
            traceparent: this.calls ? incomingTrace() : null,
            tenant: input.tenant_id ?? DEFAULT_TENANT,
          };
          this.launch(claim, { run: row, step: steps[0]! });
        });
      } else {
        await this.unit(null, write);
        committed = row;
        this.crash('accepted');
        this.kick();
      }
    } catch (e) {
      if (!(e instanceof DuplicateSubmission)) throw e;
      await this.store.durable();
      const prior = key === null ? undefined : this.store.execution.runByKey(input.created_by, key);
      if (!prior) throw new TyrumError('TYRUM_ERR_INTERNAL', 'run insert was refused but no run holds its idempotency key');
      return this.existing(prior, hash, key);
    }
    return { run: this.runView(committed), existing: false };
  }

  /**
   * The answer to a repeated idempotency key: `conflict` at once for a different request, else
   * the original run once it is durable (it may be in the group still open).
   */
  private existing(prior: RunRow, hash: string, key: string | null): Promise<{ run: RunView; existing: boolean }> {
    if (prior.request_hash !== hash) {
      throw new TyrumError('TYRUM_ERR_CONFLICT', `idempotency key ${JSON.stringify(key)} was already used for a different request`, { run_id: prior.id, idempotency_key: key });
    }
    return this.store.durable().then(() => ({ run: this.runView(this.store.committed.execution.getRun(prior.id) ?? prior), existing: true }));
  }

  /** The run with its steps, attempts and evidence. Throws not_found. */
  get(runId: string): RunDetail {
    const committed = this.store.committed.execution;
    const run = committed.getRun(runId);
    if (!run) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
    const attempts = committed.attempts(runId);
    return {
      run: this.runView(run),
      steps: committed.steps(runId).map((s) => this.stepView(s, attempts.filter((a) => a.step_idx === s.idx))),
    };
  }

  /** Runs, newest first. */
  list(query: RunListQuery = {}): RunView[] {
    const limit = query.limit ?? RUNS_LIST_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit });
    const states: readonly RunState[] = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'];
    if (query.state !== undefined && !states.includes(query.state)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `state must be one of ${states.join(', ')}`);
    return this.store.committed.execution.listRuns({ state: query.state, limit: Math.min(limit, RUNS_LIST_MAX_LIMIT), afterId: query.after, ...(query.tenant !== undefined ? { tenant: query.tenant } : {}) }).map((r) => this.runView(r));
  }

  /**
   * Resolves with the run once it is terminal or paused, or after `timeoutMs` with whatever
   * state it is in. Woken by committed events, not by polling; a slow re-read (1 s) only
   * covers changes committed by another process.
   */
  wait(runId: string, timeoutMs: number): Promise<RunDetail> {
    const current = this.get(runId);
    if (SETTLED.has(current.run.state) || timeoutMs <= 0) return Promise.resolve(current);
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.waiters.delete(finish);
        off();
        clearTimeout(timer);
        clearInterval(recheck);
        try {
          resolve(this.get(runId));
        } catch (e) {
          reject(e);
        }
      };
      this.waiters.add(finish);
      const off = this.events.onEvent((e) => {
        if (e.type === 'run.updated' && e.payload.run_id === runId && SETTLED.has(e.payload.state as RunState)) finish();
      });
      const timer = setTimeout(finish, timeoutMs);
      const recheck = setInterval(() => {
        let r: RunRow | undefined;
        try {
          r = this.store.committed.execution.getRun(runId);
        } catch {
          // The store went away under us (closed without stop()): answer instead of throwing
          // from a timer, which would be an uncaught exception in the gateway.
          return finish();
        }
        if (!r || SETTLED.has(r.state)) finish();
      }, 1000);
      recheck.unref();
    });
  }

  /** Calls `listener` after each commit with the events it wrote (the gateway's live push). */
  onEvent(listener: EventListener): () => void {
    return this.events.onEvent(listener);
  }

  // ---------------------------------------------------------------- operator actions

  /**
   * Records the intent to cancel. A run nobody is executing (paused, or queued without a live
   * lease) is cancelled at once; a running one stops at its next safe point (between steps or
   * before calling a tool). Cancelling a cancelled run returns it; a finished one is invalid_state.
   */
  async cancel(runId: string, actor: AuditActor): Promise<RunView> {
    const now = this.now();
    const out = await this.unit(null, (emit, audit) => {
      const run = this.store.execution.getRun(runId);
      if (!run) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
      if (run.state === 'cancelled') return { row: run, changed: false, immediate: false };
      if (TERMINAL.has(run.state)) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `run ${runId} already ${run.state}`, { run_id: runId, state: run.state });
      // Lease expiry on the store's clock (PostgreSQL: the server's; see leaseClock).
      const free = run.state === 'paused' || run.lease_owner === null || this.store.execution.leaseFree(runId, now);
      if (free) {
        const row = this.cancelInTx(emit, run, null, actor);
        audit('run.cancel_requested', actor, { run_id: runId, immediate: true });
        audit('run.finished', this.actor, { run_id: runId, state: 'cancelled', error_code: null });
        return { row };
      }
      const row = this.store.execution.updateRun(runId, { cancel_requested: 1, updated_at: now });
      if (!row) throw new TyrumError('TYRUM_ERR_INTERNAL', `run ${runId} vanished`);
      emit('run.updated', runEventPayload(row));
      audit('run.cancel_requested', actor, { run_id: runId, immediate: false });
      return { row };
    });
    return this.runView(out.row);
  }

  /**
   * The operator's call on an `outcome_unknown` step: `retry` runs it again (one more
   * attempt), `skip` treats it as done without a result and continues the run, `fail` fails
   * the step and the run. Only for a run paused on that step; anything else is invalid_state.
   */
  async resolveUnknown(runId: string, stepIdx: number, action: UnknownResolution, actor: AuditActor): Promise<RunView> {
    if (action !== 'retry' && action !== 'skip' && action !== 'fail') {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'action must be retry, skip or fail', { action });
    }
    const now = this.now();
    const row = await this.unit(null, (emit, audit) => {
      const run = this.store.execution.getRun(runId);
      if (!run) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
      const step = this.store.execution.getStep(runId, stepIdx);
      if (!step) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `run ${runId} has no step ${stepIdx}`, { run_id: runId, step_idx: stepIdx });
      if (run.state !== 'paused' || run.pause_reason !== 'outcome_unknown' || step.state !== 'outcome_unknown') {
        throw new TyrumError('TYRUM_ERR_INVALID_STATE', `step ${stepIdx} of run ${runId} is not waiting for an operator (run ${run.state}, step ${step.state})`, {
          run_id: runId,
          step_idx: stepIdx,
          run_state: run.state,
          step_state: step.state,
        });
      }
      const only = { states: ['outcome_unknown'] as const };
      if (action === 'fail') {
        const err = this.errorInfo(new TyrumError('TYRUM_ERR_OUTCOME_UNKNOWN', `an operator marked step ${stepIdx} failed after its outcome was unknown`));
        const s = this.required(this.store.execution.updateStep(runId, stepIdx, { state: 'failed', error: JSON.stringify(err), finished_at: now, updated_at: now }, only), runId);
        emit('step.updated', stepEventPayload(s));
        audit('step.operator_resolved', actor, { run_id: runId, step_idx: stepIdx, action });
        const finished = this.finishRunInTx(emit, run, null, 'failed', null, err);
        audit('run.finished', this.actor, { run_id: runId, state: finished.state, error_code: 'TYRUM_ERR_OUTCOME_UNKNOWN' });
        return finished;
      }
      const set =
        action === 'retry'
          ? { state: 'running' as const, max_attempts: Math.max(step.max_attempts ?? 1, step.attempts + 1), updated_at: now }
          : { state: 'skipped' as const, finished_at: now, updated_at: now };
      const s = this.required(this.store.execution.updateStep(runId, stepIdx, set, only), runId);
      emit('step.updated', stepEventPayload(s));
      // A new token, so nothing written under an older lease can land after this decision.
      const r = this.required(
        this.store.execution.updateRun(runId, { state: 'queued', pause_reason: null, next_attempt_at: 0, fencing_token: run.fencing_token + 1, updated_at: now }, { states: ['paused'] }),
        runId,
      );
      emit('run.updated', runEventPayload(r));
      audit('step.operator_resolved', actor, { run_id: runId, step_idx: stepIdx, action });
      return r;
    });
    this.kick();
    return this.runView(row);
  }

  // ---------------------------------------------------------------- worker loop

  /**
   * Starts the worker: applies approval expiry that fell due while the gateway was down,
   * frees leases a previous incarnation with this owner id left, then claims work.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    this.sweep();
    try {
      this.store.tx(() => this.store.execution.expireLeasesOf(this.owner, this.now()));
    } catch (e) {
      this.log('error', 'could not free leases of a previous incarnation', { err: String(e) });
    }
    this.every(this.pollMs, () => this.kick());
    this.every(this.sweepMs, () => this.sweep());
    this.every(this.heartbeatMs, () => this.heartbeat());
    this.kick();
  }

  /**
   * Stops claiming work; runs in flight stop at their next safe point (the current tool call
   * finishes or times out) and release their leases for the next worker. Resolves when done.
   */
  async stop(): Promise<void> {
    // Callers still in wait() are answered with the run as it stands now, while the store is
    // still open; their timers go with them.
    for (const finish of [...this.waiters]) finish();
    if (!this.started) return;
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.tasks]);
    this.started = false;
    this.stopping = false;
  }

  /** Look for claimable work soon (after the current turn). Cheap to call often. */
  kick(): void {
    if (!this.started || this.stopping || this.kickPending) return;
    this.kickPending = true;
    // Outside the caller's scope: the tick claims and launches other runs (core/telemetry/context.ts).
    detached(() =>
      setImmediate(() => {
        this.kickPending = false;
        this.tick();
      }),
    );
  }

  private every(ms: number, fn: () => void): void {
    const t = detached(() => setInterval(fn, ms));
    t.unref();
    this.timers.add(t);
  }

  private wakeAfter(ms: number): void {
    const t = detached(() =>
      setTimeout(() => {
        this.timers.delete(t);
        this.kick();
      }, ms),
    );
    t.unref();
    this.timers.add(t);
  }

  private sweep(): void {
    try {
      this.approvals.expireDue();
    } catch (e) {
      this.log('error', 'approval expiry sweep failed', { err: String(e) });
    }
  }

  private tick(): void {
    if (!this.started || this.stopping) return;
    if (this.claiming) {
      // One claim commit at a time (its slots are counted only once it lands); look again after.
      this.kickAfterClaim = true;
      return;
    }
    const capacity = this.concurrency - this.active.size;
    if (capacity <= 0) return;
    const now = this.now();
    // Only committed runs are candidates (a submission still in the open group is claimed after
    // its commit wakes us). A committed submission may not be synced yet, so its submitter may
    // not have been answered; the claim commits after it, and nothing runs before the claim is
    // durable, which makes the submission durable too.
    let candidates: string[];
    try {
      if (!this.store.committed.execution.hasClaimable(now)) return;
      candidates = this.store.committed.execution.claimable(now, capacity + this.active.size);
    } catch (e) {
      // The store is unreachable (PostgreSQL down or silent: TYRUM_ERR_STORE_UNAVAILABLE): this
      // runs from a timer, where a throw would end the process. The next poll looks again.
      this.log('error', 'looking for claimable runs failed', { err: String(e) });
      return;
    }
    this.claiming = true;
    this.unit(null, (emit) => {
      const out: RunRow[] = [];
      for (const id of candidates) {
        if (out.length >= capacity) break;
        if (this.active.has(id)) continue;
        const row = this.store.execution.claim(id, this.owner, now, this.leaseMs);
        if (!row) continue;
        out.push(row);
        emit('run.updated', runEventPayload(row));
      }
      return out;
    }).then(
      (claimed) => {
        this.claiming = false;
        for (const row of claimed) {
          this.crash('lease_taken');
          this.launch({ runId: row.id, fence: { owner: this.owner, token: row.fencing_token }, lost: false, controller: null, carry: null });
        }
        if (this.kickAfterClaim || claimed.length > 0) {
          this.kickAfterClaim = false;
          this.kick();
        }
      },
      (e: unknown) => {
        this.claiming = false;
        this.log('error', 'claiming runs failed', { err: String(e) });
      },
    );
  }

  /** Drive a claimed run; `first`: a run taken at submission, not in the database yet. */
  private launch(claim: Claim, first?: { run: RunRow; step: StepRow }): void {
    this.active.set(claim.runId, claim);
    // With an observer, every log line written while the run is driven names it. A fresh scope
    // either way: a run claimed from within another run's callbacks, or launched while a request
    // is handled, inherits neither that run's ids nor the request's traceparent (a run taken at
    // submission carries the one it was submitted under on its claim).
    const task = detached(() => (this.calls ? withLogFields({ run_id: claim.runId }, () => this.processRun(claim, first)) : this.processRun(claim, first))).finally(() => {
      this.active.delete(claim.runId);
      this.tasks.delete(task);
      this.kick();
    });
    this.tasks.add(task);
  }

  private heartbeat(): void {
    // A run whose first commit is still carried is not in the database yet: nothing to renew.
    const held = [...this.active.values()].filter((c) => !c.lost && c.carry === null);
    if (held.length === 0) return;
    const now = this.now();
    this.unit(null, () => held.filter((c) => !this.store.execution.renewLease(c.runId, c.fence, now, this.leaseMs))).then(
      (lost) => {
        for (const c of lost) {
          c.lost = true;
          c.controller?.abort(leaseLost(c.runId, this.owner));
        }
      },
      (e: unknown) => this.log('warn', 'lease renewal failed', { err: String(e) }),
    );
  }

  /** Drives one claimed run until it finishes, pauses, waits for a retry, or the lease is gone. */
  private async processRun(claim: Claim, first?: { run: RunRow; step: StepRow }): Promise<void> {
    try {
      if (first && (await this.advance(claim, first.run, first.step)) === 'stop') return;
      for (;;) {
        if (claim.lost) return;
        const run = this.store.execution.getRun(claim.runId);
        if (!run || run.state !== 'running' || run.lease_owner !== this.owner || run.fencing_token !== claim.fence.token) return;
        if (this.stopping) {
          await this.release(claim, run);
          return;
        }
        if (run.cancel_requested === 1) {
          await this.unit(claim, (emit, audit) => {
            this.cancelInTx(emit, run, claim, this.actor);
            audit('run.finished', this.actor, { run_id: run.id, state: 'cancelled', error_code: null });
          });
          return;
        }
        const steps = this.store.execution.steps(run.id);
        const step = steps.find((s) => s.state !== 'succeeded' && s.state !== 'skipped');
        if (!step) {
          await this.unit(claim, (emit, audit) => {
            this.finishRunInTx(emit, run, claim, 'succeeded', runResult(run, steps), null);
            audit('run.finished', this.actor, { run_id: run.id, state: 'succeeded', error_code: null });
          });
          return;
        }
        if ((await this.advance(claim, run, step)) === 'stop') return;
      }
    } catch (e) {
      if (isTyrumError(e, 'TYRUM_ERR_LEASE_LOST')) {
        this.log('warn', 'lease lost; late write rejected', { run_id: claim.runId, owner: this.owner, fencing_token: claim.fence.token });
        return;
      }
      // A carried submission that did not commit: its caller has the error, and there is no run.
      if (claim.lost) return;
      this.log('error', 'run processing failed; retrying later', { run_id: claim.runId, err: e instanceof Error ? e.message : String(e) });
      await this.retryLater(claim, 1000);
    }
  }

  /** One step forward for the first step that has not succeeded. */
  private async advance(claim: Claim, run: RunRow, step: StepRow): Promise<Next> {
    switch (step.state) {
      case 'failed':
        await this.unit(claim, (emit, audit) => {
          this.finishRunInTx(emit, run, claim, 'failed', null, parseJson(step.error) as ErrorInfo | null);
          audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: (parseJson(step.error) as ErrorInfo | null)?.code ?? null });
        });
        return 'stop';
      case 'cancelled':
        await this.unit(claim, (emit) => this.finishRunInTx(emit, run, claim, 'cancelled', null, null));
        return 'stop';
      case 'outcome_unknown':
        await this.unit(claim, (emit) => this.pauseInTx(emit, run, claim, 'outcome_unknown'));
        return 'stop';
      case 'running':
        return this.observed(claim, run, step, () => this.recover(claim, run, step));
      default:
        return this.observed(claim, run, step, () => this.gate(claim, run, step));
    }
  }

  /**
   * Runs one governed call (`fn`: gate or recover) under the observer: its log lines carry the
   * run, step, attempt and trace ids; its stages are timed where they happen and its outcome
   * recorded where it is known (an end not recorded there, a thrown error, counts as `error`).
   */
  private async observed(claim: Claim, run: RunRow, step: StepRow, fn: () => Promise<Next>): Promise<Next> {
    const calls = this.calls;
    if (!calls) return fn();
    const rec = calls.begin({ run_id: run.id, step: step.idx, tool_id: step.tool_id, kind: run.kind }, claim.traceparent ?? null);
    claim.call = rec;
    try {
      return await withLogFields(rec.fields, fn);
    } finally {
      rec.end('error');
      claim.call = null;
    }
  }

  /** Resolve the tool, decide policy, apply approval, then start an attempt. */
  private async gate(claim: Claim, run: RunRow, step: StepRow): Promise<Next> {
    const args = JSON.parse(step.args) as Record<string, unknown>;
    const tool = this.resolveTool(step.tool_id);
    if (isTyrumError(tool)) return this.failStep(claim, run, step, tool, {});
    const idempotent = tool.idempotent || step.idempotency_key !== null;
    // Hash what will actually be sent, not the stored hash: an approval must cover these bytes.
    const call = this.stepCall(claim, run, step, args, tool, idempotent, null);
    let decision: PolicyResult;
    const rec = claim.call ?? null;
    const tp = rec ? performance.now() : 0;
    try {
      decision = checkDecision(await this.o.decide(call));
    } catch (e) {
      return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_INTERNAL', `policy decision failed: ${e instanceof Error ? e.message : String(e)}`), {});
    }
    if (rec) {
      rec.stage('policy', tp, performance.now());
      rec.policy(decision.enforced ? decision.decision : `${decision.decision} (observed)`);
    }
    const { decision: verdict, enforced, snapshot_id, ...detail } = decision;
    const res: Resolution = {
      idempotent: idempotent ? 1 : 0,
      max_attempts: step.max_attempts ?? (idempotent ? 3 : 1),
      definition_hash: tool.definition_hash,
      plugin_digest: tool.plugin_digest,
      policy_decision: verdict,
      policy_enforced: enforced ? 1 : 0,
      policy_snapshot_id: snapshot_id,
      policy_detail: JSON.stringify(this.redact(detail) ?? {}),
    };
    if (enforced && verdict === 'deny') {
      return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_POLICY_DENIED', `policy denies ${step.tool_id}`, { snapshot_id, tool_id: step.tool_id }), res);
    }
    if (!enforced || verdict === 'allow') return this.attempt(claim, run, step, call, res, null);

    // require_approval, enforced.
    if (step.approval_id === null) {
      await this.requestApproval(claim, run, step, call, res);
      claim.call?.end('approval');
      return 'stop';
    }
    const a = this.approvals.find(step.approval_id);
    if (!a) return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_INTERNAL', `approval ${step.approval_id} is missing`), res);
    switch (a.state) {
      case 'pending':
        await this.unit(claim, (emit) => this.pauseInTx(emit, run, claim, 'approval'));
        claim.call?.end('approval');
        return 'stop';
      case 'denied':
        return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_APPROVAL_DENIED', `approval ${a.id} was denied${a.reason ? `: ${a.reason}` : ''}`, { approval_id: a.id }), res);
      case 'expired':
        return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_APPROVAL_EXPIRED', `approval ${a.id} expired before it was used`, { approval_id: a.id, expires_at: a.expires_at }), res);
      case 'approved':
        break;
    }
    const refusal = this.checkApproval(run, step, a, call);
    if (refusal) return this.failStep(claim, run, step, refusal, res);
    if (a.consumed_at !== null) return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_APPROVAL_CONSUMED', `approval ${a.id} was already used`, { approval_id: a.id }), res);
    return this.attempt(claim, run, step, { ...call, approval_id: a.id }, res, a.id);
  }

  /**
   * Null when `a` covers exactly this call; otherwise the error to fail the step with. The
   * mismatch (`details.fields`) is audited by `failStep`, in the commit of the failure.
   */
  private checkApproval(run: RunRow, step: StepRow, a: Binding & { id: string; run_id: string | null; step_idx: number | null }, call: StepCall): TyrumError | null {
    const fields: string[] = bindingMismatch(a, { args_hash: call.args_hash, definition_hash: call.definition_hash, plugin_digest: call.plugin_digest });
    if (a.run_id !== run.id || a.step_idx !== step.idx) fields.push('step');
    if (fields.length === 0) return null;
    return new TyrumError('TYRUM_ERR_APPROVAL_MISMATCH', `approval ${a.id} does not cover this call: ${fields.join(', ')} changed since it was approved`, { approval_id: a.id, fields });
  }

  private async requestApproval(claim: Claim, run: RunRow, step: StepRow, call: StepCall, res: Resolution): Promise<void> {
    const now = this.now();
    await this.unit(claim, (emit, audit) => {
      const a = this.approvals.createInTx(emit, {
        run_id: run.id,
        step_idx: step.idx,
        tool_id: step.tool_id,
        args: call.args,
        definition_hash: call.definition_hash,
        plugin_digest: call.plugin_digest,
        requested_by: run.created_by,
      });
      const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { ...res, state: 'waiting_approval', approval_id: a.id, updated_at: now }, { fence: claim.fence }), claim);
      emit('step.updated', stepEventPayload(s));
      this.pauseInTx(emit, run, claim, 'approval');
      audit('approval.requested', this.actor, { approval_id: a.id, run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, args_hash: a.args_hash, definition_hash: a.definition_hash, plugin_digest: a.plugin_digest, expires_at: a.expires_at });
    }, () => this.crash('waiting_approval'));
  }

  /** Recovery and retries for a step already `running`: its last attempt says what happened. */
  private async recover(claim: Claim, run: RunRow, step: StepRow): Promise<Next> {
    const last = this.store.execution.lastAttempt(run.id, step.idx);
    if (!last) return this.gate(claim, run, step);
    const now = this.now();
    const max = step.max_attempts ?? 1;
    const idempotent = step.idempotent === 1;
    if (last.state === 'succeeded') {
      // Cannot happen (attempt and step commit together); kept so a completed call is never redone.
      await this.unit(claim, (emit) => {
        const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { state: 'succeeded', result: last.result, finished_at: last.finished_at ?? now, updated_at: now }, { fence: claim.fence }), claim);
        emit('step.updated', stepEventPayload(s));
      });
      claim.call?.end('succeeded');
      return 'continue';
    }
    if (last.state === 'started') {
      // Cut off mid-flight by an owner that crashed or lost its lease.
      const interrupted = this.errorInfo(new TyrumError('TYRUM_ERR_STEP_INTERRUPTED', `attempt ${last.n} was cut off mid-flight (owner ${last.owner} stopped)`, { owner: last.owner, fencing_token: last.fencing_token }));
      if (!idempotent || last.n >= max) {
        const unknown = !idempotent;
        await this.unit(claim, (emit, audit) => {
          this.fenced(this.store.execution.updateAttempt(run.id, step.idx, last.n, { state: 'interrupted', finished_at: now, error: JSON.stringify(interrupted) }, { fence: claim.fence, states: ['started'] }), claim);
          if (unknown) this.outcomeUnknownInTx(emit, run, step, claim, interrupted);
          else this.failStepInTx(emit, run, step, claim, interrupted, {});
          audit(unknown ? 'step.outcome_unknown' : 'step.finished', this.actor, { run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, attempt: last.n, state: unknown ? 'outcome_unknown' : 'failed', error_code: interrupted.code });
          if (!unknown) audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: interrupted.code });
        });
        claim.call?.end(unknown ? 'unknown' : 'failed', interrupted);
        return 'stop';
      }
      // The retry below commits this with its own start.
      this.carry(claim, () => {
        this.fenced(this.store.execution.updateAttempt(run.id, step.idx, last.n, { state: 'interrupted', finished_at: now, error: JSON.stringify(interrupted) }, { fence: claim.fence, states: ['started'] }), claim);
      });
    } else if (last.n >= max) {
      const err = (parseJson(last.error) as ErrorInfo | null) ?? this.errorInfo(new TyrumError('TYRUM_ERR_INTERNAL', 'no attempts left'));
      return this.failStep(claim, run, step, err, {});
    }

    // Retry: the tool and any approval are checked again against what will run now.
    const args = JSON.parse(step.args) as Record<string, unknown>;
    const tool = this.resolveTool(step.tool_id);
    if (isTyrumError(tool)) return this.failStep(claim, run, step, tool, {});
    const call = this.stepCall(claim, run, step, args, tool, idempotent, null);
    const res: Resolution = { definition_hash: tool.definition_hash, plugin_digest: tool.plugin_digest };
    let consume: string | null = null;
    if (step.approval_id !== null && step.policy_decision === 'require_approval' && step.policy_enforced === 1) {
      const a = this.approvals.find(step.approval_id);
      if (!a || a.state !== 'approved') {
        return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_APPROVAL_MISMATCH', `approval ${step.approval_id} no longer covers this step (${a?.state ?? 'missing'})`, { approval_id: step.approval_id }), res);
      }
      const refusal = this.checkApproval(run, step, a, call);
      if (refusal) return this.failStep(claim, run, step, refusal, res);
      call.approval_id = a.id;
      if (a.consumed_at === null) consume = a.id;
    }
    return this.attempt(claim, run, step, call, res, consume);
  }

  /**
   * Start an attempt and call the tool. The start (consuming the approval) is committed before
   * the call — except for the read-only first step of a run taken at submission, whose
   * submission and start are carried into the commit of its end: it has no effect to protect,
   * and nobody was answered before that commit, so a crash loses nothing anyone was told about.
   * (A run already in the database keeps its attempt-started record: the evidence a later owner
   * needs after a takeover.)
   */
  private async attempt(claim: Claim, run: RunRow, step: StepRow, call: StepCall, res: Resolution, consumeApproval: string | null): Promise<Next> {
    const n = step.attempts + 1;
    claim.call?.attempt(n);
    const now = this.now();
    const startInTx = (emit: Emit): StepRow => {
      if (consumeApproval !== null && !this.approvals.consumeInTx(emit, consumeApproval, run.id, step.idx)) {
        throw new TyrumError('TYRUM_ERR_APPROVAL_CONSUMED', `approval ${consumeApproval} was already used`, { approval_id: consumeApproval });
      }
      const attempt: AttemptRow = {
        run_id: run.id,
        step_idx: step.idx,
        n,
        state: 'started',
        owner: this.owner,
        fencing_token: claim.fence.token,
        started_at: now,
        finished_at: null,
        duration_ms: null,
        usage: null,
        result: null,
        error: null,
        evidence: null,
      };
      this.fenced(this.store.execution.insertAttempt(attempt, claim.fence) || undefined, claim);
      const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { ...res, state: 'running', attempts: n, started_at: step.started_at ?? now, error: null, updated_at: now }, { fence: claim.fence }), claim);
      emit('step.updated', stepEventPayload(s));
      return s;
    };
    let started: StepRow | null;
    let ackTimer: NodeJS.Timeout | null = null;
    if (call.effect === 'read_only' && consumeApproval === null && claim.carry !== null && claim.carry.waiters.length > 0) {
      // A run taken at submission whose first step is read-only: call first, commit once. Its
      // caller is answered with the run running if the call is slow.
      started = { ...step, ...res, state: 'running', attempts: n, started_at: step.started_at ?? now, error: null, updated_at: now } as StepRow;
      this.carry(claim, (emit) => void startInTx(emit));
      ackTimer = setTimeout(() => {
        if (claim.carry !== null) this.unit(claim, () => undefined).catch(() => undefined);
      }, this.readOnlyAckMs);
    } else {
      try {
        started = await this.unit(claim, (emit) => {
          // Safe point: a cancel recorded while we were deciding stops the run before the call.
          if (this.store.execution.getRun(run.id)?.cancel_requested === 1) return null;
          return startInTx(emit);
        });
      } catch (e) {
        if (isTyrumError(e, 'TYRUM_ERR_APPROVAL_CONSUMED')) return this.failStep(claim, run, step, e, res);
        throw e;
      }
    }
    if (started === null) {
      claim.call?.end('cancelled');
      return 'continue';
    }
    this.crash('step_started');

    const controller = new AbortController();
    claim.controller = controller;
    const timer = setTimeout(
      () => controller.abort(new TyrumError('TYRUM_ERR_TIMEOUT', `step ${step.idx} (${step.tool_id}) did not finish within ${started.timeout_ms} ms`, { timeout_ms: started.timeout_ms })),
      started.timeout_ms,
    );
    const t0 = performance.now();
    let result: ExecuteResult | undefined;
    let error: unknown;
    try {
      result = await raceAbort(
        Promise.resolve().then(() => this.o.execute(call, { signal: controller.signal, attempt: n })),
        controller.signal,
      );
    } catch (e) {
      error = e ?? new Error('execute rejected without a reason');
    } finally {
      clearTimeout(timer);
      if (ackTimer !== null) clearTimeout(ackTimer);
      claim.controller = null;
    }
    const t1 = performance.now();
    claim.call?.stage('sandbox', t0, t1);
    const duration = Math.round((t1 - t0) * 1000) / 1000;
    this.crash('tool_returned');
    if (result !== undefined && error === undefined) return this.succeeded(claim, run, started, n, result, duration);
    return this.attemptFailed(claim, run, started, n, error, duration);
  }

  private async succeeded(claim: Claim, run: RunRow, step: StepRow, n: number, res: ExecuteResult, measuredMs: number): Promise<Next> {
    let refs: ArtifactRef[] = [];
    if (res.artifacts !== undefined && res.artifacts.length > 0) {
      // The bytes are stored before the commit that references them (a crash in between leaves a
      // blob nothing points to, which the retention sweep removes). One that cannot be stored
      // fails the attempt, as an unrecordable output does: evidence that is lost is no evidence.
      try {
        refs = await this.storeArtifacts(step, res.artifacts);
      } catch (e) {
        return this.attemptFailed(claim, run, step, n, e, measuredMs);
      }
    }
    const now = this.now();
    let output: string;
    let usage: string | null;
    let evidence: string | null;
    try {
      output = JSON.stringify(this.redact(res.output) ?? null);
      usage = res.usage === undefined || res.usage === null ? null : JSON.stringify(res.usage);
      const reported = res.evidence === undefined || res.evidence === null ? null : (this.redact(res.evidence) as Record<string, unknown>);
      evidence = refs.length > 0 ? JSON.stringify({ ...(reported ?? {}), artifacts: refs }) : reported === null ? null : JSON.stringify(reported);
    } catch (e) {
      // Unrecordable output cannot be evidence, so it cannot be a success either.
      return this.attemptFailed(claim, run, step, n, new TyrumError('TYRUM_ERR_INTERNAL', `the output of ${step.tool_id} could not be recorded: ${(e as Error).message}`), measuredMs);
    }
    const pc = parseJson(step.postcondition) as Postcondition | null;
    const check = pc ? checkPostcondition(pc, res.output) : { ok: true, reason: '' };
    const duration = typeof res.duration_ms === 'number' && Number.isFinite(res.duration_ms) ? res.duration_ms : measuredMs;
    const hashes = { definition_hash: res.definition_hash ?? step.definition_hash, plugin_digest: res.plugin_digest ?? step.plugin_digest };
    if (!check.ok) {
      // The call happened (its output is kept as evidence) but is not a success.
      const err = this.errorInfo(new TyrumError('TYRUM_ERR_POSTCONDITION_FAILED', `postcondition failed: ${check.reason}`, { postcondition: pc }));
      await this.unit(claim, (emit, audit) => {
        this.fenced(
          this.store.execution.updateAttempt(run.id, step.idx, n, { state: 'failed', finished_at: now, duration_ms: duration, usage, result: output, error: JSON.stringify(err), evidence }, { fence: claim.fence, states: ['started'] }),
          claim,
        );
        this.recordArtifacts(refs, emit, run, step, n);
        this.failStepInTx(emit, run, step, claim, err, hashes);
        this.auditStep(audit, step, n, 'failed', err.code);
        audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
      });
      claim.call?.end('failed', err);
      return 'stop';
    }
    const next = await this.unit(
      claim,
      (emit, audit): Next => {
        this.fenced(
          this.store.execution.updateAttempt(run.id, step.idx, n, { state: 'succeeded', finished_at: now, duration_ms: duration, usage, result: output, error: null, evidence }, { fence: claim.fence, states: ['started'] }),
          claim,
        );
        this.recordArtifacts(refs, emit, run, step, n);
        const s = this.fenced(
          this.store.execution.updateStep(run.id, step.idx, { ...hashes, state: 'succeeded', result: output, error: null, finished_at: now, updated_at: now }, { fence: claim.fence, states: ['running'] }),
          claim,
        );
        emit('step.updated', stepEventPayload(s));
        this.auditStep(audit, s, n, 'succeeded', null, duration);
        // The last step: the run finishes in the same commit, unless a cancel came in meanwhile
        // (the loop then applies it, as between any two steps).
        const current = this.store.execution.getRun(run.id);
        const steps = this.store.execution.steps(run.id);
        if (!current || current.cancel_requested === 1 || steps.some((x) => x.state !== 'succeeded' && x.state !== 'skipped')) return 'continue';
        this.finishRunInTx(emit, current, claim, 'succeeded', runResult(current, steps), null);
        audit('run.finished', this.actor, { run_id: run.id, state: 'succeeded', error_code: null });
        return 'stop';
      },
      () => this.crash('result_saved'),
    );
    claim.call?.end('succeeded');
    return next;
  }

  /**
   * Stores what a call reported as artifacts (the sink validates media types, caps and quota). Bytes
   * holding a known secret value are refused: the redactor cannot rewrite a blob, so it is not kept.
   */
  private async storeArtifacts(step: StepRow, outputs: NonNullable<ExecuteResult['artifacts']>): Promise<ArtifactRef[]> {
    if (!this.o.artifacts) throw new TyrumError('TYRUM_ERR_ARTIFACT_INVALID', `${step.tool_id} reported artifacts, but this gateway has no artifact store`, { tool_id: step.tool_id });
    for (const [i, a] of outputs.entries()) {
      const text = Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength).toString('latin1');
      if (this.redact(text) !== text) throw new TyrumError('TYRUM_ERR_ARTIFACT_INVALID', `artifact ${i} of ${step.tool_id} contains a secret value; it was not stored`, { tool_id: step.tool_id, index: i, reason: 'secret' });
    }
    return this.o.artifacts.prepare(outputs);
  }

  private recordArtifacts(refs: readonly ArtifactRef[], emit: Emit, run: RunRow, step: StepRow, attempt: number): void {
    if (refs.length === 0) return;
    this.o.artifacts!.recordInTx(refs, emit, { run_id: run.id, step_idx: step.idx, attempt, created_by: run.created_by, actor: this.actor });
  }

  private async attemptFailed(claim: Claim, run: RunRow, step: StepRow, n: number, error: unknown, duration: number): Promise<Next> {
    const now = this.now();
    const err = this.errorInfo(error);
    const idempotent = step.idempotent === 1;
    const action = classifyFailure(error, idempotent);
    const max = step.max_attempts ?? 1;
    const attemptSet = { state: 'failed' as const, finished_at: now, duration_ms: duration, error: JSON.stringify(err) };
    const attemptCond = { fence: claim.fence, states: ['started'] as const };
    if (action === 'outcome_unknown') {
      await this.unit(claim, (emit, audit) => {
        this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
        this.outcomeUnknownInTx(emit, run, step, claim, err);
        audit('step.outcome_unknown', this.actor, { run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, attempt: n, error_code: err.code });
      });
      claim.call?.end('unknown', err);
      return 'stop';
    }
    if (action === 'retry' && n < max) {
      const delay = backoffMs(n, this.backoff);
      await this.unit(claim, (emit) => {
        this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
        const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { error: JSON.stringify(err), updated_at: now }, { fence: claim.fence, states: ['running'] }), claim);
        emit('step.updated', stepEventPayload(s));
        const r = this.fenced(
          this.store.execution.updateRun(run.id, { state: 'queued', next_attempt_at: now + delay, lease_owner: null, lease_expires_at: null, updated_at: now }, { fence: claim.fence }),
          claim,
        );
        emit('run.updated', runEventPayload(r));
      });
      claim.call?.end('retry', err);
      this.wakeAfter(delay);
      return 'stop';
    }
    await this.unit(claim, (emit, audit) => {
      this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
      this.failStepInTx(emit, run, step, claim, err, {});
      this.auditStep(audit, step, n, 'failed', err.code, duration);
      audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
    });
    claim.call?.end('failed', err);
    return 'stop';
  }

  // ---------------------------------------------------------------- transitions (inside a transaction)

  /** Fails the step (and so the run) in its own commit. An approval that did not cover the call is audited with it. */
  private async failStep(claim: Claim, run: RunRow, step: StepRow, error: unknown, res: Resolution): Promise<Next> {
    const err = this.errorInfo(error);
    const mismatch = isTyrumError(error, 'TYRUM_ERR_APPROVAL_MISMATCH') && Array.isArray(error.details?.fields) ? error.details : null;
    await this.unit(claim, (emit, audit) => {
      if (mismatch) audit('approval.binding_mismatch', this.actor, { approval_id: mismatch.approval_id, run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, fields: mismatch.fields });
      this.failStepInTx(emit, run, step, claim, err, res);
      this.auditStep(audit, { ...step, ...res }, step.attempts, 'failed', err.code);
      audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
    });
    claim.call?.end(err.code === 'TYRUM_ERR_POLICY_DENIED' ? 'denied' : 'failed', err);
    return 'stop';
  }

  private failStepInTx(emit: Emit, run: RunRow, step: StepRow, claim: Claim, err: ErrorInfo, extra: Partial<StepRow>): void {
    const now = this.now();
    const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { ...extra, state: 'failed', error: JSON.stringify(err), finished_at: now, updated_at: now }, { fence: claim.fence }), claim);
    emit('step.updated', stepEventPayload(s));
    this.finishRunInTx(emit, run, claim, 'failed', null, err);
  }

  private outcomeUnknownInTx(emit: Emit, run: RunRow, step: StepRow, claim: Claim, cause: ErrorInfo): void {
    const now = this.now();
    const err = this.errorInfo(
      new TyrumError('TYRUM_ERR_OUTCOME_UNKNOWN', `step ${step.idx} (${step.tool_id}) was cut off mid-flight and is not idempotent: its effect may or may not have happened; an operator must retry, skip or fail it`, {
        cause: cause.code,
      }),
    );
    const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { state: 'outcome_unknown', error: JSON.stringify(err), updated_at: now }, { fence: claim.fence }), claim);
    emit('step.updated', stepEventPayload(s));
    this.pauseInTx(emit, run, claim, 'outcome_unknown');
  }

  /** Paused: the lease is released; an approval decision or an operator requeues the run. */
  private pauseInTx(emit: Emit, run: RunRow, claim: Claim, reason: 'approval' | 'outcome_unknown'): void {
    const r = this.fenced(
      this.store.execution.updateRun(run.id, { state: 'paused', pause_reason: reason, lease_owner: null, lease_expires_at: null, updated_at: this.now() }, { fence: claim.fence }),
      claim,
    );
    emit('run.updated', runEventPayload(r));
  }

  /**
   * Terminal state for the run; steps that never ran are marked cancelled. With `claim` the
   * writes are fenced; without (operator paths) they require the run not to be held.
   */
  private finishRunInTx(emit: Emit, run: RunRow, claim: Claim | null, state: 'succeeded' | 'failed' | 'cancelled', result: unknown, error: ErrorInfo | null): RunRow {
    const now = this.now();
    if (state !== 'succeeded') {
      const skipped = this.store.execution.updateSteps(run.id, { state: 'cancelled', finished_at: now, updated_at: now }, ['pending', 'waiting_approval'], claim?.fence);
      for (const s of skipped) emit('step.updated', stepEventPayload(s));
    }
    const set: Partial<RunRow> = {
      state,
      pause_reason: null,
      finished_at: now,
      updated_at: now,
      result: state === 'succeeded' ? JSON.stringify(result ?? null) : null,
      error: error === null ? null : JSON.stringify(error),
      lease_owner: null,
      lease_expires_at: null,
    };
    const r = claim
      ? this.fenced(this.store.execution.updateRun(run.id, set, { fence: claim.fence }), claim)
      : this.required(this.store.execution.updateRun(run.id, { ...set, fencing_token: run.fencing_token + 1 }, { states: ['queued', 'running', 'paused'] }), run.id);
    emit('run.updated', runEventPayload(r));
    return r;
  }

  /**
   * Cancels the run now. A step cut off mid-flight (a dead owner's `started` attempt) keeps
   * the truth: `outcome_unknown` if it is not idempotent. Pending approvals become denied.
   */
  private cancelInTx(emit: Emit, run: RunRow, claim: Claim | null, actor: AuditActor): RunRow {
    const now = this.now();
    for (const s of this.store.execution.steps(run.id)) {
      if (!(UNFINISHED_STEPS as readonly string[]).includes(s.state)) continue;
      const last = s.state === 'running' ? this.store.execution.lastAttempt(run.id, s.idx) : undefined;
      if (last?.state === 'started') {
        const err = this.errorInfo(new TyrumError('TYRUM_ERR_STEP_INTERRUPTED', `attempt ${last.n} was cut off mid-flight`));
        this.store.execution.updateAttempt(run.id, s.idx, last.n, { state: 'interrupted', finished_at: now, error: JSON.stringify(err) }, { states: ['started'], fence: claim?.fence });
        if (s.idempotent === 0) {
          const unknown = this.errorInfo(new TyrumError('TYRUM_ERR_OUTCOME_UNKNOWN', `step ${s.idx} (${s.tool_id}) was cut off mid-flight before the run was cancelled; its effect may or may not have happened`));
          const u = this.store.execution.updateStep(run.id, s.idx, { state: 'outcome_unknown', error: JSON.stringify(unknown), updated_at: now }, { fence: claim?.fence });
          if (u) emit('step.updated', stepEventPayload(u));
          continue;
        }
      }
      const c = this.store.execution.updateStep(run.id, s.idx, { state: 'cancelled', finished_at: now, updated_at: now }, { fence: claim?.fence });
      if (c) emit('step.updated', stepEventPayload(c));
    }
    this.approvals.denyForCancelledRunInTx(emit, run.id, actor);
    return this.finishRunInTx(emit, { ...run, cancel_requested: 1 }, claim, 'cancelled', null, null);
  }

  /** Gives the run back (engine stopping): queued, no lease, so the next worker takes it at once. */
  private async release(claim: Claim, run: RunRow): Promise<void> {
    try {
      await this.unit(claim, (emit) => {
        const r = this.fenced(this.store.execution.updateRun(run.id, { state: 'queued', lease_owner: null, lease_expires_at: null, updated_at: this.now() }, { fence: claim.fence }), claim);
        emit('run.updated', runEventPayload(r));
      });
    } catch (e) {
      if (!isTyrumError(e, 'TYRUM_ERR_LEASE_LOST')) this.log('error', 'could not release a run', { run_id: run.id, err: String(e) });
    }
  }

  /** After an unexpected error: release the run with a delay so it is tried again later. */
  private async retryLater(claim: Claim, delayMs: number): Promise<void> {
    try {
      await this.unit(claim, (emit) => {
        const now = this.now();
        const r = this.store.execution.updateRun(claim.runId, { state: 'queued', next_attempt_at: now + delayMs, lease_owner: null, lease_expires_at: null, updated_at: now }, { fence: claim.fence, states: ['running'] });
        if (r) emit('run.updated', runEventPayload(r));
      });
      this.wakeAfter(delayMs);
    } catch (e) {
      this.log('error', 'could not requeue a run after an error', { run_id: claim.runId, err: String(e) });
    }
  }

  // ---------------------------------------------------------------- helpers

  /** A fenced write that matched nothing means the lease is gone: abort the transaction. */
  private fenced<T>(v: T | undefined, claim: Claim): T {
    if (v === undefined) throw leaseLost(claim.runId, this.owner);
    return v;
  }

  private required<T>(v: T | undefined, runId: string): T {
    if (v === undefined) throw new TyrumError('TYRUM_ERR_CONFLICT', `run ${runId} changed concurrently; try again`, { run_id: runId });
    return v;
  }

  /** The tool a step runs, or the error the step fails with (not found unless the lookup says why). */
  private resolveTool(toolId: string): ResolvedTool | TyrumError {
    try {
      const tool = this.o.resolveTool(toolId);
      if (tool !== null) return tool;
    } catch (e) {
      this.log('error', 'resolveTool failed', { tool_id: toolId, err: String(e) });
    }
    return new TyrumError('TYRUM_ERR_NOT_FOUND', `no enabled tool ${toolId}`, { tool_id: toolId });
  }

  private stepCall(claim: Claim, run: RunRow, step: StepRow, args: Record<string, unknown>, tool: ResolvedTool, idempotent: boolean, approvalId: string | null): StepCall {
    return {
      run_id: run.id,
      step_idx: step.idx,
      kind: run.kind,
      created_by: run.created_by,
      tool_id: step.tool_id,
      args,
      args_hash: argsHash(args),
      idempotency_key: step.idempotency_key,
      effect: tool.effect,
      definition_hash: tool.definition_hash,
      plugin_digest: tool.plugin_digest,
      idempotent,
      approval_id: approvalId,
      tenant_id: (claim.tenant ??= this.store.execution.runTenant(run.id)),
    };
  }

  private errorInfo(e: unknown): ErrorInfo {
    if (!isTyrumError(e) && typeof e === 'object' && e !== null && typeof (e as ErrorInfo).code === 'string' && typeof (e as ErrorInfo).wire === 'string' && !(e instanceof Error)) {
      return e as ErrorInfo;
    }
    const te = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', e instanceof Error ? e.message : String(e));
    const info: ErrorInfo = { code: te.code as ErrorCode, wire: te.wire, message: String(this.redact(te.message)) };
    if (te.details) {
      const { logs: _logs, ...rest } = te.details;
      const details = this.redact(rest) as Record<string, unknown>;
      const text = JSON.stringify(details);
      info.details = text !== undefined && text.length <= MAX_ERROR_DETAILS_BYTES ? details : { truncated: true };
    }
    return info;
  }

  /**
   * Runs `fn` as one unit of the store's group commit, after the writes carried by `claim` (its
   * submission, a deferred start), so they commit together; resolves once durable, after the
   * events are delivered and the carried submission's callers answered. The audit entries `fn`
   * appends are in the same transaction. If a unit with carried writes fails, the claim is given
   * up (`lost`): those writes, and possibly the run itself, were never committed.
   */
  private unit<T>(claim: Claim | null, fn: (emit: Emit, audit: Audit) => T, beforeDeliver?: () => void): Promise<T> {
    const rec = claim?.call ?? null;
    if (rec === null) return this.unitUntimed(claim, fn, beforeDeliver);
    // A commit made during a call is its `commit` stage: from the write to its durability.
    const t0 = performance.now();
    return this.unitUntimed(claim, fn, beforeDeliver).finally(() => rec.stage('commit', t0, performance.now()));
  }

  private unitUntimed<T>(claim: Claim | null, fn: (emit: Emit, audit: Audit) => T, beforeDeliver?: () => void): Promise<T> {
    const carry = claim?.carry ?? null;
    if (claim) claim.carry = null;
    let row: RunRow | undefined;
    const audit: Audit = (type, actor, data) => void this.o.audit.appendInTx(type, actor, data);
    const p = this.events.commit((emit) => {
      if (carry) for (const w of carry.writes) w(emit, audit);
      const value = fn(emit, audit);
      if (carry?.waiters.length) row = this.store.execution.getRun(claim!.runId);
      return value;
    }, beforeDeliver);
    if (carry === null) return p;
    return p.then(
      (value) => {
        if (carry.waiters.length > 0) {
          this.crash('accepted');
          for (const w of carry.waiters) w.resolve(row!);
        }
        return value;
      },
      (e: unknown) => {
        claim!.lost = true;
        for (const w of carry.waiters) w.reject(e);
        throw e;
      },
    );
  }

  /** Add `write` to what the run's next commit carries. */
  private carry(claim: Claim, write: Write): void {
    claim.carry ??= { writes: [], waiters: [] };
    claim.carry.writes.push(write);
  }

  private auditStep(audit: Audit, step: StepRow, attempt: number, state: 'succeeded' | 'failed', errorCode: string | null, durationMs?: number): void {
    audit('step.finished', this.actor, {
      run_id: step.run_id,
      step_idx: step.idx,
      tool_id: step.tool_id,
      attempt,
      state,
      error_code: errorCode,
      duration_ms: durationMs ?? null,
      policy_decision: step.policy_decision,
      policy_snapshot_id: step.policy_snapshot_id,
      approval_id: step.approval_id,
      definition_hash: step.definition_hash,
      plugin_digest: step.plugin_digest,
    });
  }

  /** Reports calls from now on to `calls` (null: to nobody; the bench compares the two). */
  observe(calls: CallObserver | null): void {
    this.calls = calls ? this.guarded(calls) : null;
  }

  /** The observer with its throws kept from the calls it watches (core/telemetry/calls.ts). */
  private guarded(calls: CallObserver): CallObserver {
    return guardedObserver(calls, (message, data) => this.log('warn', message, data));
  }

  /** Runs this engine is driving now (claimed and not yet released). */
  get activeRuns(): number {
    return this.active.size;
  }

  private log(level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>): void {
    this.o.log?.(level, message, data);
  }

  private runView(r: RunRow): RunView {
    return {
      id: r.id,
      kind: r.kind,
      state: r.state,
      created_by: r.created_by,
      idempotency_key: r.idempotency_key,
      request_hash: r.request_hash,
      created_at: r.created_at,
      updated_at: r.updated_at,
      finished_at: r.finished_at,
      cancel_requested: r.cancel_requested === 1,
      pause_reason: r.pause_reason,
      next_attempt_at: r.next_attempt_at,
      result: parseJson(r.result),
      error: parseJson(r.error) as ErrorInfo | null,
      lease: r.lease_owner === null ? null : { owner: r.lease_owner, expires_at: r.lease_expires_at ?? 0, fencing_token: r.fencing_token },
    };
  }

  private stepView(s: StepRow, attempts: AttemptRow[]): StepView {
    const views: AttemptView[] = attempts.map((a) => ({
      n: a.n,
      state: a.state,
      owner: a.owner,
      fencing_token: a.fencing_token,
      started_at: a.started_at,
      finished_at: a.finished_at,
      duration_ms: a.duration_ms,
      usage: parseJson(a.usage),
      result: parseJson(a.result),
      error: parseJson(a.error) as ErrorInfo | null,
      evidence: parseJson(a.evidence),
    }));
    const last = views[views.length - 1];
    return {
      idx: s.idx,
      tool_id: s.tool_id,
      args: this.redact(JSON.parse(s.args)),
      args_hash: s.args_hash,
      idempotency_key: s.idempotency_key,
      state: s.state,
      idempotent: s.idempotent === 1,
      max_attempts: s.max_attempts,
      timeout_ms: s.timeout_ms,
      postcondition: parseJson(s.postcondition) as Postcondition | null,
      policy:
        s.policy_decision === null
          ? null
          : { decision: s.policy_decision as PolicyResult['decision'], enforced: s.policy_enforced === 1, snapshot_id: s.policy_snapshot_id ?? '', detail: parseJson(s.policy_detail) },
      approval_id: s.approval_id,
      definition_hash: s.definition_hash,
      plugin_digest: s.plugin_digest,
      result: parseJson(s.result),
      error: parseJson(s.error) as ErrorInfo | null,
      duration_ms: last?.duration_ms ?? null,
      usage: last?.usage ?? null,
      started_at: s.started_at,
      finished_at: s.finished_at,
      attempts: views,
    };
  }
}

function positive(v: number, name: string): number {
  if (!Number.isFinite(v) || v <= 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${name} must be a positive number`, { [name]: v });
  return v;
}

function checkDecision(d: PolicyResult): PolicyResult {
  if (typeof d !== 'object' || d === null || !['allow', 'require_approval', 'deny'].includes(d.decision) || typeof d.enforced !== 'boolean' || typeof d.snapshot_id !== 'string') {
    throw new Error('decide() returned something that is not a decision');
  }
  return d;
}

/** A finished run's result: a tool run's one output, a workflow's outputs in step order. */
function runResult(run: RunRow, steps: readonly StepRow[]): unknown {
  return run.kind === 'tool' ? parseJson(steps[0]?.result ?? null) : steps.map((s) => parseJson(s.result));
}
