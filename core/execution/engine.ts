/**
 * The durable execution engine: every tool call is a run of one or more steps that survives
 * crashes, is decided by policy, and pauses for a human when it must.
 *
 * Invariants (ARCHITECTURE.md "Durable execution"):
 * - A run is claimed with a lease (owner, expiry, fencing token) in one transaction. Every
 *   write a worker makes under that lease names the token in its WHERE clause, so a worker
 *   whose lease was taken over cannot write anything (TESTPLAN A3).
 * - Every state change and its outbox event commit in the same transaction.
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
import { crashPointFromEnv, type CrashPoint } from './crash.js';
import { checkPostcondition, type Postcondition } from './postcondition.js';
import { backoffMs, classifyFailure, DEFAULT_BACKOFF, type BackoffOptions } from './retry.js';
import { requestHash, validateSubmit } from './validate.js';
import type {
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
  /** Runs executed at once by this engine (default 8). */
  concurrency?: number;
  /** Per-attempt timeout when a step names none (default 30 s). */
  defaultTimeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

export const RUNS_LIST_DEFAULT_LIMIT = 50;
export const RUNS_LIST_MAX_LIMIT = 500;
const MAX_ERROR_DETAILS_BYTES = 16 * 1024;

const TERMINAL: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'cancelled']);
const SETTLED: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'cancelled', 'paused']);
const UNFINISHED_STEPS = ['pending', 'waiting_approval', 'running'] as const;

interface Claim {
  runId: string;
  fence: { owner: string; token: number };
  /** Set by the heartbeat when renewal found the lease gone. */
  lost: boolean;
  controller: AbortController | null;
}

type Next = 'continue' | 'stop';

/** Fields a step acquires when its tool is resolved and policy has decided. */
type Resolution = Partial<Pick<StepRow, 'idempotent' | 'max_attempts' | 'definition_hash' | 'plugin_digest' | 'policy_decision' | 'policy_enforced' | 'policy_snapshot_id' | 'policy_detail'>>;

function parseJson(text: string | null): unknown {
  return text === null ? null : (JSON.parse(text) as unknown);
}

function leaseLost(runId: string, owner: string): TyrumError {
  return new TyrumError('TYRUM_ERR_LEASE_LOST', `lease on run ${runId} is no longer held by ${owner}; write rejected`, { run_id: runId, owner });
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
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
  private kickPending = false;

  constructor(options: ExecutionEngineOptions) {
    if (typeof options.owner !== 'string' || options.owner.length === 0 || options.owner.length > 200) {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'engine owner must be a non-empty string of at most 200 characters');
    }
    this.o = options;
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
    this.concurrency = positive(options.concurrency ?? 8, 'concurrency');
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
   * Accepts a run (and its steps) in one transaction. A repeated idempotency key from the same
   * creator returns the original run (`existing: true`) if the request is the same, and
   * `conflict` otherwise; concurrent duplicates collapse onto one run through the unique index.
   */
  submit(input: SubmitInput): { run: RunView; existing: boolean } {
    validateSubmit(input);
    const hash = requestHash(input);
    const now = this.now();
    const key = input.idempotency_key ?? null;
    const out = this.events.transact((emit) => {
      if (key !== null) {
        const prior = this.store.execution.runByKey(input.created_by, key);
        if (prior) return { row: prior, existing: true };
      }
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
      if (!this.store.execution.insertRun(row)) {
        // Lost a race on (created_by, idempotency_key): the index kept the first; return it.
        const prior = key === null ? undefined : this.store.execution.runByKey(input.created_by, key);
        if (!prior) throw new TyrumError('TYRUM_ERR_INTERNAL', 'run insert was refused but no run holds its idempotency key');
        return { row: prior, existing: true };
      }
      input.steps.forEach((s, idx) => {
        this.store.execution.insertStep({
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
        });
      });
      emit('run.updated', runEventPayload(row));
      return { row, existing: false };
    });
    if (out.existing) {
      if (out.row.request_hash !== hash) {
        throw new TyrumError('TYRUM_ERR_CONFLICT', `idempotency key ${JSON.stringify(key)} was already used for a different request`, { run_id: out.row.id, idempotency_key: key });
      }
      return { run: this.runView(out.row), existing: true };
    }
    this.crash('accepted');
    this.audit('run.submitted', input.actor ?? { kind: 'principal', id: input.created_by }, {
      run_id: out.row.id,
      kind: input.kind,
      idempotency_key: key,
      request_hash: hash,
      tools: input.steps.map((s) => s.tool_id),
    });
    this.kick();
    return { run: this.runView(out.row), existing: false };
  }

  /** The run with its steps, attempts and evidence. Throws not_found. */
  get(runId: string): RunDetail {
    const run = this.store.execution.getRun(runId);
    if (!run) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
    const attempts = this.store.execution.attempts(runId);
    return {
      run: this.runView(run),
      steps: this.store.execution.steps(runId).map((s) => this.stepView(s, attempts.filter((a) => a.step_idx === s.idx))),
    };
  }

  /** Runs, newest first. */
  list(query: RunListQuery = {}): RunView[] {
    const limit = query.limit ?? RUNS_LIST_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit });
    const states: readonly RunState[] = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'];
    if (query.state !== undefined && !states.includes(query.state)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `state must be one of ${states.join(', ')}`);
    return this.store.execution.listRuns({ state: query.state, limit: Math.min(limit, RUNS_LIST_MAX_LIMIT), afterId: query.after }).map((r) => this.runView(r));
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
          r = this.store.execution.getRun(runId);
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
  cancel(runId: string, actor: AuditActor): RunView {
    const now = this.now();
    const out = this.events.transact((emit) => {
      const run = this.store.execution.getRun(runId);
      if (!run) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${runId}`, { run_id: runId });
      if (run.state === 'cancelled') return { row: run, changed: false, immediate: false };
      if (TERMINAL.has(run.state)) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `run ${runId} already ${run.state}`, { run_id: runId, state: run.state });
      const free = run.state === 'paused' || run.lease_owner === null || (run.lease_expires_at ?? 0) <= now;
      if (free) return { row: this.cancelInTx(emit, run, null, actor), changed: true, immediate: true };
      const row = this.store.execution.updateRun(runId, { cancel_requested: 1, updated_at: now });
      if (!row) throw new TyrumError('TYRUM_ERR_INTERNAL', `run ${runId} vanished`);
      emit('run.updated', runEventPayload(row));
      return { row, changed: true, immediate: false };
    });
    if (out.changed) {
      this.audit('run.cancel_requested', actor, { run_id: runId, immediate: out.immediate });
      if (out.immediate) this.audit('run.finished', this.actor, { run_id: runId, state: 'cancelled', error_code: null });
    }
    return this.runView(out.row);
  }

  /**
   * The operator's call on an `outcome_unknown` step: `retry` runs it again (one more
   * attempt), `skip` treats it as done without a result and continues the run, `fail` fails
   * the step and the run. Only for a run paused on that step; anything else is invalid_state.
   */
  resolveUnknown(runId: string, stepIdx: number, action: UnknownResolution, actor: AuditActor): RunView {
    if (action !== 'retry' && action !== 'skip' && action !== 'fail') {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'action must be retry, skip or fail', { action });
    }
    const now = this.now();
    const row = this.events.transact((emit) => {
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
        return this.finishRunInTx(emit, run, null, 'failed', null, err);
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
      return r;
    });
    this.audit('step.operator_resolved', actor, { run_id: runId, step_idx: stepIdx, action });
    if (TERMINAL.has(row.state)) this.audit('run.finished', this.actor, { run_id: runId, state: row.state, error_code: 'TYRUM_ERR_OUTCOME_UNKNOWN' });
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
    setImmediate(() => {
      this.kickPending = false;
      this.tick();
    });
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.add(t);
  }

  private wakeAfter(ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.kick();
    }, ms);
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
    const capacity = this.concurrency - this.active.size;
    if (capacity <= 0) return;
    const now = this.now();
    let claimed: RunRow[];
    try {
      if (!this.store.execution.hasClaimable(now)) return;
      claimed = this.events.transact((emit) => {
        const out: RunRow[] = [];
        for (const id of this.store.execution.claimable(now, capacity + this.active.size)) {
          if (out.length >= capacity) break;
          if (this.active.has(id)) continue;
          const row = this.store.execution.claim(id, this.owner, now, this.leaseMs);
          if (!row) continue;
          out.push(row);
          emit('run.updated', runEventPayload(row));
        }
        return out;
      });
    } catch (e) {
      this.log('error', 'claiming runs failed', { err: String(e) });
      return;
    }
    for (const row of claimed) {
      this.crash('lease_taken');
      this.launch(row);
    }
  }

  private launch(row: RunRow): void {
    const claim: Claim = { runId: row.id, fence: { owner: this.owner, token: row.fencing_token }, lost: false, controller: null };
    this.active.set(row.id, claim);
    const task = this.processRun(claim).finally(() => {
      this.active.delete(row.id);
      this.tasks.delete(task);
      this.kick();
    });
    this.tasks.add(task);
  }

  private heartbeat(): void {
    if (this.active.size === 0) return;
    const until = this.now() + this.leaseMs;
    const lost: Claim[] = [];
    try {
      this.store.tx(() => {
        for (const c of this.active.values()) if (!c.lost && !this.store.execution.renewLease(c.runId, c.fence, until)) lost.push(c);
      });
    } catch (e) {
      this.log('warn', 'lease renewal failed', { err: String(e) });
      return;
    }
    for (const c of lost) {
      c.lost = true;
      c.controller?.abort(leaseLost(c.runId, this.owner));
    }
  }

  /** Drives one claimed run until it finishes, pauses, waits for a retry, or the lease is gone. */
  private async processRun(claim: Claim): Promise<void> {
    try {
      for (;;) {
        if (claim.lost) return;
        const run = this.store.execution.getRun(claim.runId);
        if (!run || run.state !== 'running' || run.lease_owner !== this.owner || run.fencing_token !== claim.fence.token) return;
        if (this.stopping) {
          this.release(claim, run);
          return;
        }
        if (run.cancel_requested === 1) {
          this.events.transact((emit) => this.cancelInTx(emit, run, claim, this.actor));
          this.audit('run.finished', this.actor, { run_id: run.id, state: 'cancelled', error_code: null });
          return;
        }
        const steps = this.store.execution.steps(run.id);
        const step = steps.find((s) => s.state !== 'succeeded' && s.state !== 'skipped');
        if (!step) {
          const result = run.kind === 'tool' ? parseJson(steps[0]?.result ?? null) : steps.map((s) => parseJson(s.result));
          this.events.transact((emit) => this.finishRunInTx(emit, run, claim, 'succeeded', result, null));
          this.audit('run.finished', this.actor, { run_id: run.id, state: 'succeeded', error_code: null });
          return;
        }
        if ((await this.advance(claim, run, step)) === 'stop') return;
      }
    } catch (e) {
      if (isTyrumError(e, 'TYRUM_ERR_LEASE_LOST')) {
        this.log('warn', 'lease lost; late write rejected', { run_id: claim.runId, owner: this.owner, fencing_token: claim.fence.token });
        return;
      }
      this.log('error', 'run processing failed; retrying later', { run_id: claim.runId, err: e instanceof Error ? e.message : String(e) });
      this.retryLater(claim, 1000);
    }
  }

  /** One step forward for the first step that has not succeeded. */
  private async advance(claim: Claim, run: RunRow, step: StepRow): Promise<Next> {
    switch (step.state) {
      case 'failed':
        this.events.transact((emit) => this.finishRunInTx(emit, run, claim, 'failed', null, parseJson(step.error) as ErrorInfo | null));
        this.audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: (parseJson(step.error) as ErrorInfo | null)?.code ?? null });
        return 'stop';
      case 'cancelled':
        this.events.transact((emit) => this.finishRunInTx(emit, run, claim, 'cancelled', null, null));
        return 'stop';
      case 'outcome_unknown':
        this.events.transact((emit) => this.pauseInTx(emit, run, claim, 'outcome_unknown'));
        return 'stop';
      case 'running':
        return this.recover(claim, run, step);
      default:
        return this.gate(claim, run, step);
    }
  }

  /** Resolve the tool, decide policy, apply approval, then start an attempt. */
  private async gate(claim: Claim, run: RunRow, step: StepRow): Promise<Next> {
    const args = JSON.parse(step.args) as Record<string, unknown>;
    const tool = this.resolveTool(step.tool_id);
    if (isTyrumError(tool)) return this.failStep(claim, run, step, tool, {});
    const idempotent = tool.idempotent || step.idempotency_key !== null;
    // Hash what will actually be sent, not the stored hash: an approval must cover these bytes.
    const call = this.stepCall(run, step, args, tool, idempotent, null);
    let decision: PolicyResult;
    try {
      decision = checkDecision(await this.o.decide(call));
    } catch (e) {
      return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_INTERNAL', `policy decision failed: ${e instanceof Error ? e.message : String(e)}`), {});
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
      this.requestApproval(claim, run, step, call, res);
      return 'stop';
    }
    const a = this.approvals.find(step.approval_id);
    if (!a) return this.failStep(claim, run, step, new TyrumError('TYRUM_ERR_INTERNAL', `approval ${step.approval_id} is missing`), res);
    switch (a.state) {
      case 'pending':
        this.events.transact((emit) => this.pauseInTx(emit, run, claim, 'approval'));
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

  /** Null when `a` covers exactly this call; otherwise the error to fail the step with (audited). */
  private checkApproval(run: RunRow, step: StepRow, a: Binding & { id: string; run_id: string | null; step_idx: number | null }, call: StepCall): TyrumError | null {
    const fields: string[] = bindingMismatch(a, { args_hash: call.args_hash, definition_hash: call.definition_hash, plugin_digest: call.plugin_digest });
    if (a.run_id !== run.id || a.step_idx !== step.idx) fields.push('step');
    if (fields.length === 0) return null;
    this.audit('approval.binding_mismatch', this.actor, { approval_id: a.id, run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, fields });
    return new TyrumError('TYRUM_ERR_APPROVAL_MISMATCH', `approval ${a.id} does not cover this call: ${fields.join(', ')} changed since it was approved`, { approval_id: a.id, fields });
  }

  private requestApproval(claim: Claim, run: RunRow, step: StepRow, call: StepCall, res: Resolution): void {
    const now = this.now();
    const a = this.events.transact((emit) => {
      const approval = this.approvals.createInTx(emit, {
        run_id: run.id,
        step_idx: step.idx,
        tool_id: step.tool_id,
        args: call.args,
        definition_hash: call.definition_hash,
        plugin_digest: call.plugin_digest,
        requested_by: run.created_by,
      });
      const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { ...res, state: 'waiting_approval', approval_id: approval.id, updated_at: now }, { fence: claim.fence }), claim);
      emit('step.updated', stepEventPayload(s));
      this.pauseInTx(emit, run, claim, 'approval');
      return approval;
    });
    this.crash('waiting_approval');
    this.audit('approval.requested', this.actor, { approval_id: a.id, run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, args_hash: a.args_hash, definition_hash: a.definition_hash, plugin_digest: a.plugin_digest, expires_at: a.expires_at });
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
      this.events.transact((emit) => {
        const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { state: 'succeeded', result: last.result, finished_at: last.finished_at ?? now, updated_at: now }, { fence: claim.fence }), claim);
        emit('step.updated', stepEventPayload(s));
      });
      return 'continue';
    }
    if (last.state === 'started') {
      // Cut off mid-flight by an owner that crashed or lost its lease.
      const interrupted = this.errorInfo(new TyrumError('TYRUM_ERR_STEP_INTERRUPTED', `attempt ${last.n} was cut off mid-flight (owner ${last.owner} stopped)`, { owner: last.owner, fencing_token: last.fencing_token }));
      if (!idempotent || last.n >= max) {
        const unknown = !idempotent;
        this.events.transact((emit) => {
          this.fenced(this.store.execution.updateAttempt(run.id, step.idx, last.n, { state: 'interrupted', finished_at: now, error: JSON.stringify(interrupted) }, { fence: claim.fence, states: ['started'] }), claim);
          if (unknown) this.outcomeUnknownInTx(emit, run, step, claim, interrupted);
          else this.failStepInTx(emit, run, step, claim, interrupted, {});
        });
        this.audit(unknown ? 'step.outcome_unknown' : 'step.finished', this.actor, { run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, attempt: last.n, state: unknown ? 'outcome_unknown' : 'failed', error_code: interrupted.code });
        if (!unknown) this.audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: interrupted.code });
        return 'stop';
      }
      this.events.transact(() => {
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
    const call = this.stepCall(run, step, args, tool, idempotent, null);
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

  /** Commit the attempt as started (consuming the approval), then call the tool. */
  private async attempt(claim: Claim, run: RunRow, step: StepRow, call: StepCall, res: Resolution, consumeApproval: string | null): Promise<Next> {
    const n = step.attempts + 1;
    const now = this.now();
    let started: StepRow | null;
    try {
      started = this.events.transact((emit) => {
        // Safe point: a cancel recorded while we were deciding stops the run before the call.
        if (this.store.execution.getRun(run.id)?.cancel_requested === 1) return null;
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
        };
        this.fenced(this.store.execution.insertAttempt(attempt, claim.fence) || undefined, claim);
        const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { ...res, state: 'running', attempts: n, started_at: step.started_at ?? now, error: null, updated_at: now }, { fence: claim.fence }), claim);
        emit('step.updated', stepEventPayload(s));
        return s;
      });
    } catch (e) {
      if (isTyrumError(e, 'TYRUM_ERR_APPROVAL_CONSUMED')) return this.failStep(claim, run, step, e, res);
      throw e;
    }
    if (started === null) return 'continue';
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
      claim.controller = null;
    }
    const duration = Math.round((performance.now() - t0) * 1000) / 1000;
    this.crash('tool_returned');
    if (result !== undefined && error === undefined) return this.succeeded(claim, run, started, n, result, duration);
    return this.attemptFailed(claim, run, started, n, error, duration);
  }

  private succeeded(claim: Claim, run: RunRow, step: StepRow, n: number, res: ExecuteResult, measuredMs: number): Next {
    const now = this.now();
    let output: string;
    let usage: string | null;
    try {
      output = JSON.stringify(this.redact(res.output) ?? null);
      usage = res.usage === undefined || res.usage === null ? null : JSON.stringify(res.usage);
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
      this.events.transact((emit) => {
        this.fenced(
          this.store.execution.updateAttempt(run.id, step.idx, n, { state: 'failed', finished_at: now, duration_ms: duration, usage, result: output, error: JSON.stringify(err) }, { fence: claim.fence, states: ['started'] }),
          claim,
        );
        this.failStepInTx(emit, run, step, claim, err, hashes);
      });
      this.auditStep(run, step, n, 'failed', err.code);
      this.audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
      return 'stop';
    }
    this.events.transact(
      (emit) => {
        this.fenced(
          this.store.execution.updateAttempt(run.id, step.idx, n, { state: 'succeeded', finished_at: now, duration_ms: duration, usage, result: output, error: null }, { fence: claim.fence, states: ['started'] }),
          claim,
        );
        const s = this.fenced(
          this.store.execution.updateStep(run.id, step.idx, { ...hashes, state: 'succeeded', result: output, error: null, finished_at: now, updated_at: now }, { fence: claim.fence, states: ['running'] }),
          claim,
        );
        emit('step.updated', stepEventPayload(s));
      },
      () => this.crash('result_saved'),
    );
    this.auditStep(run, step, n, 'succeeded', null, duration);
    return 'continue';
  }

  private attemptFailed(claim: Claim, run: RunRow, step: StepRow, n: number, error: unknown, duration: number): Next {
    const now = this.now();
    const err = this.errorInfo(error);
    const idempotent = step.idempotent === 1;
    const action = classifyFailure(error, idempotent);
    const max = step.max_attempts ?? 1;
    const attemptSet = { state: 'failed' as const, finished_at: now, duration_ms: duration, error: JSON.stringify(err) };
    const attemptCond = { fence: claim.fence, states: ['started'] as const };
    if (action === 'outcome_unknown') {
      this.events.transact((emit) => {
        this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
        this.outcomeUnknownInTx(emit, run, step, claim, err);
      });
      this.audit('step.outcome_unknown', this.actor, { run_id: run.id, step_idx: step.idx, tool_id: step.tool_id, attempt: n, error_code: err.code });
      return 'stop';
    }
    if (action === 'retry' && n < max) {
      const delay = backoffMs(n, this.backoff);
      this.events.transact((emit) => {
        this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
        const s = this.fenced(this.store.execution.updateStep(run.id, step.idx, { error: JSON.stringify(err), updated_at: now }, { fence: claim.fence, states: ['running'] }), claim);
        emit('step.updated', stepEventPayload(s));
        const r = this.fenced(
          this.store.execution.updateRun(run.id, { state: 'queued', next_attempt_at: now + delay, lease_owner: null, lease_expires_at: null, updated_at: now }, { fence: claim.fence }),
          claim,
        );
        emit('run.updated', runEventPayload(r));
      });
      this.wakeAfter(delay);
      return 'stop';
    }
    this.events.transact((emit) => {
      this.fenced(this.store.execution.updateAttempt(run.id, step.idx, n, attemptSet, attemptCond), claim);
      this.failStepInTx(emit, run, step, claim, err, {});
    });
    this.auditStep(run, step, n, 'failed', err.code, duration);
    this.audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
    return 'stop';
  }

  // ---------------------------------------------------------------- transitions (inside a transaction)

  /** Fails the step (and so the run) in its own transaction. */
  private failStep(claim: Claim, run: RunRow, step: StepRow, error: unknown, res: Resolution): Next {
    const err = this.errorInfo(error);
    this.events.transact((emit) => this.failStepInTx(emit, run, step, claim, err, res));
    this.auditStep(run, step, step.attempts, 'failed', err.code);
    this.audit('run.finished', this.actor, { run_id: run.id, state: 'failed', error_code: err.code });
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
  private release(claim: Claim, run: RunRow): void {
    try {
      this.events.transact((emit) => {
        const r = this.fenced(this.store.execution.updateRun(run.id, { state: 'queued', lease_owner: null, lease_expires_at: null, updated_at: this.now() }, { fence: claim.fence }), claim);
        emit('run.updated', runEventPayload(r));
      });
    } catch (e) {
      if (!isTyrumError(e, 'TYRUM_ERR_LEASE_LOST')) this.log('error', 'could not release a run', { run_id: run.id, err: String(e) });
    }
  }

  /** After an unexpected error: release the run with a delay so it is tried again later. */
  private retryLater(claim: Claim, delayMs: number): void {
    try {
      this.events.transact((emit) => {
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

  private stepCall(run: RunRow, step: StepRow, args: Record<string, unknown>, tool: ResolvedTool, idempotent: boolean, approvalId: string | null): StepCall {
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

  private audit(type: string, actor: AuditActor, data: Record<string, unknown>): void {
    this.crash('audit_append');
    this.o.audit.append(type, actor, data).catch((e: unknown) => this.log('error', 'audit append failed', { type, err: String(e) }));
  }

  private auditStep(run: RunRow, step: StepRow, attempt: number, state: 'succeeded' | 'failed', errorCode: string | null, durationMs?: number): void {
    this.audit('step.finished', this.actor, {
      run_id: run.id,
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
