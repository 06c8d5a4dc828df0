/**
 * Workflows: durable runs of compiled playbooks.
 *
 * A workflow row holds its plan, the step being worked on (`step_idx`) and a record per step. Each
 * step moves on in its own commit, and what a step starts is keyed so that repeating it after a
 * crash finds what was started before instead of starting it again:
 *   - a tool or node step is an engine run submitted with the idempotency key `wf:<id>:<idx>`
 *     (creator `workflow:<id>`), so it travels the one pipeline (contract check, policy,
 *     approvals, sandbox, evidence, audit) and a second submission returns the first run;
 *   - an agent step queues a message in the workflow's own operator conversation for that step,
 *     in the same commit that records the turn on the step;
 *   - an approval gate pauses the workflow in one commit that also records the gate's nonce; the
 *     resume token is an HMAC over (workflow, step, nonce) with a key derived from the home's
 *     secret key, so the database alone cannot forge or reveal one. Using a token inserts the
 *     gate's decision row (primary key workflow + step): a second use finds it and is refused.
 * After a restart the runner picks up every running workflow and continues from its record: a
 * started run or turn is waited for, never started twice; a step not yet started starts.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store, WorkflowRow, WorkflowState, ConversationRow } from '../store/index.js';
import { WORKFLOW_TERMINAL } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import type { Emit, EventLog } from '../execution/events.js';
import type { RunDetail, SubmitInput, RunView } from '../execution/types.js';
import type { ConversationService } from '../conversations/service.js';
import { OPERATOR_CHANNEL } from '../conversations/service.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { conditionHolds, fill, type Plan, type PlanStep, type Scope } from './spec.js';
import { detached } from '../telemetry/context.js';

export type StepState = 'pending' | 'started' | 'succeeded' | 'skipped' | 'failed' | 'cancelled';

/** What the workflow row keeps per step. */
export interface StepRecord {
  state: StepState;
  /** The gate before the step was approved (only for steps with an approval). */
  gate_passed?: boolean;
  run_id?: string;
  conversation_id?: string;
  turn_id?: string;
  started_at?: number;
  finished_at?: number;
}

export interface ErrorJson {
  code: string;
  wire: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface WorkflowView {
  workflow_id: string;
  name: string;
  version: string;
  plan_hash: string;
  state: WorkflowState;
  step_idx: number;
  inputs: Record<string, unknown>;
  steps: Array<{ idx: number; id: string; kind: PlanStep['kind']; tool_id: string | null; state: StepState; run_id: string | null; conversation_id: string | null; turn_id: string | null; output: unknown; started_at: string | null; finished_at: string | null }>;
  /** The gate the workflow waits at (paused only). */
  gate: { step_idx: number; step_id: string; message: string; expires_at: string } | null;
  error: ErrorJson | null;
  created_by: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export interface WorkflowRunnerOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  /** 32 bytes of secret key material the resume tokens' HMAC key is derived from (the home's secret key). */
  secret: Buffer;
  engine: {
    submit(input: SubmitInput): Promise<{ run: RunView }>;
    get(runId: string): RunDetail;
    cancel(runId: string, actor: AuditActor): Promise<RunView>;
    onEvent(listener: (e: { type: string; payload: Record<string, unknown> }) => void): () => void;
  };
  conversations: Pick<ConversationService, 'accept'>;
  now?: () => number;
  /** How often waiting workflows re-check their run or turn at most, besides events (default 2000 ms). */
  pollMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

/** The longest a `workflow.start` result waits for the workflow to pause or finish. */
export const WORKFLOW_POLL_MS_DEFAULT = 2000;
const TOKEN_PREFIX = 'wrt';
/** An agent step's prompt, references filled in, is cut to this many characters (a large tool output would otherwise go whole). */
export const MAX_AGENT_PROMPT_CHARS = 100_000;

const iso = (t: number | null | undefined): string | null => (t === null || t === undefined ? null : new Date(t).toISOString());

export function newWorkflowId(): string {
  return `wf_${randomBytes(8).toString('hex')}`;
}

function errorJson(e: unknown): ErrorJson {
  const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', 'the workflow step failed', undefined, { cause: e });
  return { code: err.code, wire: err.wire, message: err.message, ...(err.details ? { details: err.details } : {}) };
}

function actorName(a: AuditActor): string {
  const r = a as Record<string, unknown>;
  return r.kind === 'token' ? `token:${String(r.id)}` : `${String(r.kind)}:${String(r.id ?? r.user ?? '')}`;
}

/** The conversation an agent step talks in: (operator, workflow:<id>, <step id>). */
export function workflowConversationKey(workflowId: string, stepId: string): { channel: string; account: string; thread: string } {
  return { channel: OPERATOR_CHANNEL, account: `workflow:${workflowId}`, thread: stepId };
}

export class WorkflowRunner {
  private readonly o: WorkflowRunnerOptions;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly key: Buffer;
  private readonly active = new Map<string, Promise<void>>();
  /**
   * Workflows waiting for their step's run or turn, by that run or turn id: an event wakes only
   * the workflows waiting on it (the poll, and stop, wake them all).
   */
  private readonly waiting = new Map<string, Set<() => void>>();
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private started = false;
  /** Waiters for a workflow to leave `running` (workflow.start's wait). */
  private readonly settledWaiters = new Map<string, Set<() => void>>();

  constructor(o: WorkflowRunnerOptions) {
    this.o = o;
    this.store = o.store;
    this.now = o.now ?? Date.now;
    this.key = Buffer.from(hkdfSync('sha256', o.secret, Buffer.alloc(0), 'tyrum/workflow-resume-token/v1', 32));
  }

  /** Picks up every running workflow and watches paused ones for expired gates. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.unsubscribe = this.o.engine.onEvent((e) => {
      if (e.type === 'run.updated') this.wake(e.payload.run_id);
      else if (e.type === 'turn.completed' || e.type === 'turn.failed') this.wake(e.payload.turn_id);
    });
    const poll = (): void => {
      if (this.stopped) return;
      try {
        this.kick();
      } catch (e) {
        // The store is unreachable (TYRUM_ERR_STORE_UNAVAILABLE): a timer must not throw; next poll.
        this.o.log?.('error', 'looking for workflows to run failed', { err: e });
      }
      this.wake();
      this.timer = setTimeout(poll, this.o.pollMs ?? WORKFLOW_POLL_MS_DEFAULT);
      this.timer.unref();
    };
    poll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.wake();
    await Promise.allSettled([...this.active.values()]);
  }

  /** Starts what can run: running workflows not worked on here; fails paused ones whose gate expired. */
  kick(): void {
    // Workflows started here run in no caller's scope (core/telemetry/context.ts).
    detached(() => this.kickNow());
  }

  private kickNow(): void {
    if (this.stopped || !this.started) return;
    const now = this.now();
    for (const wf of this.store.workflows.active()) {
      if (wf.state === 'paused') {
        if (wf.gate_expires_at !== null && wf.gate_expires_at <= now) void this.expireGate(wf).catch((e) => this.o.log?.('error', 'could not expire a workflow gate', { workflow_id: wf.id, err: e }));
        continue;
      }
      if (this.active.has(wf.id)) continue;
      const p = this.run(wf.id)
        .catch((e) => this.o.log?.('error', 'a workflow ended with an unexpected error', { workflow_id: wf.id, err: e }))
        .finally(() => {
          this.active.delete(wf.id);
          this.settled(wf.id);
        });
      this.active.set(wf.id, p);
    }
  }

  /** Creates a workflow from a compiled plan (idempotent per creator and key) and starts it. */
  async create(plan: Plan, createdBy: string, actor: AuditActor, idempotencyKey?: string): Promise<{ workflow: WorkflowRow; existing: boolean }> {
    const r = await this.o.events.commit((emit) => this.createInTx(plan, createdBy, actor, idempotencyKey, emit));
    this.kick();
    return r;
  }

  /**
   * The same inside the caller's transaction (a schedule's fire starts its workflow in the commit
   * that claims the tick); the runner picks it up once that commits.
   */
  createInTx(plan: Plan, createdBy: string, actor: AuditActor, idempotencyKey: string | undefined, emit: Emit): { workflow: WorkflowRow; existing: boolean } {
    const requestHash = plan.plan_hash;
    if (idempotencyKey !== undefined) {
      const prior = this.store.workflows.byIdempotencyKey(createdBy, idempotencyKey);
      if (prior) {
        if (prior.request_hash !== requestHash) throw new TyrumError('TYRUM_ERR_CONFLICT', `idempotency key "${idempotencyKey}" was used for another playbook or other inputs`, { workflow_id: prior.id });
        return { workflow: prior, existing: true };
      }
    }
    const now = this.now();
    const row: WorkflowRow = {
      id: newWorkflowId(),
      name: plan.name,
      version: plan.version,
      plan_hash: plan.plan_hash,
      plan: JSON.stringify(plan),
      state: 'running',
      step_idx: 0,
      steps: JSON.stringify(plan.steps.map((): StepRecord => ({ state: 'pending' }))),
      outputs: '{}',
      gate_nonce: null,
      gate_message: null,
      gate_expires_at: null,
      error: null,
      created_by: createdBy,
      idempotency_key: idempotencyKey ?? null,
      request_hash: requestHash,
      created_at: now,
      updated_at: now,
      finished_at: null,
    };
    this.store.workflows.insert(row);
    this.o.audit.appendInTx('workflow.started', actor, { workflow_id: row.id, name: plan.name, version: plan.version, plan_hash: plan.plan_hash, steps: plan.steps.length });
    emit('workflow.updated', this.event(row));
    this.store.afterCommit(() => this.kick());
    return { workflow: row, existing: false };
  }

  get(id: string): WorkflowRow {
    const wf = this.store.workflows.get(id);
    if (!wf) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no workflow ${id}`, { workflow_id: id });
    return wf;
  }

  /** Resolves once the workflow is no longer running (paused or finished), or after `timeoutMs`. */
  async waitSettled(id: string, timeoutMs: number): Promise<WorkflowRow> {
    const deadline = this.now() + timeoutMs;
    for (;;) {
      const wf = this.get(id);
      const left = deadline - this.now();
      if (wf.state !== 'running' || left <= 0) return wf;
      await new Promise<void>((done) => {
        const set = this.settledWaiters.get(id) ?? new Set();
        const fire = (): void => {
          clearTimeout(t);
          set.delete(fire);
          done();
        };
        const t = setTimeout(fire, Math.min(left, 1000));
        set.add(fire);
        this.settledWaiters.set(id, set);
      });
    }
  }

  /** The resume token of a paused workflow's gate (re-derived; null when it does not wait at one). */
  tokenFor(wf: WorkflowRow): string | null {
    if (wf.state !== 'paused' || wf.gate_nonce === null) return null;
    return `${TOKEN_PREFIX}.${wf.id}.${wf.step_idx}.${wf.gate_nonce}.${this.mac(wf.id, wf.step_idx, wf.gate_nonce)}`;
  }

  /** Decides a gate with its resume token: approve continues the workflow, deny fails it. */
  async resume(token: string, decision: 'approve' | 'deny', actor: AuditActor, reason?: string): Promise<WorkflowRow> {
    const t = this.parseToken(token);
    const wf = this.store.workflows.get(t.id);
    if (!wf) throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_INVALID', 'the resume token names no workflow of this gateway');
    const now = this.now();
    if (this.store.workflows.gate(t.id, t.idx) || wf.state !== 'paused' || wf.step_idx !== t.idx || wf.gate_nonce !== t.nonce) {
      throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_USED', `the workflow ${wf.id} no longer waits at this gate (it is ${wf.state}); a resume token works once`, { workflow_id: wf.id, state: wf.state });
    }
    if (wf.gate_expires_at !== null && wf.gate_expires_at <= now) {
      await this.expireGate(wf);
      throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_EXPIRED', `the resume token expired at ${iso(wf.gate_expires_at)}; the workflow failed at that gate`, { workflow_id: wf.id });
    }
    const out = await this.o.events.commit((emit) => {
      if (this.store.workflows.gate(t.id, t.idx)) throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_USED', 'the resume token was used meanwhile', { workflow_id: wf.id });
      this.store.workflows.insertGate({ workflow_id: wf.id, step_idx: t.idx, nonce: t.nonce, decision: decision === 'approve' ? 'approved' : 'denied', decided_by: actorName(actor), reason: reason ?? null, decided_at: now });
      const plan = JSON.parse(wf.plan) as Plan;
      const step = plan.steps[t.idx]!;
      const records = JSON.parse(wf.steps) as StepRecord[];
      let patch: Partial<WorkflowRow>;
      if (decision === 'approve') {
        records[t.idx] = { ...records[t.idx]!, gate_passed: true };
        patch = { state: 'running', steps: JSON.stringify(records), gate_nonce: null, gate_message: null, gate_expires_at: null, updated_at: now };
      } else {
        records[t.idx] = { ...records[t.idx]!, state: 'cancelled', finished_at: now };
        const err = errorJson(new TyrumError('TYRUM_ERR_APPROVAL_DENIED', `the approval gate of step "${step.id}" was denied${reason ? `: ${reason}` : ''}`, { step_id: step.id }));
        patch = { state: 'failed', steps: JSON.stringify(records), gate_nonce: null, gate_message: null, gate_expires_at: null, error: JSON.stringify(err), updated_at: now, finished_at: now };
      }
      if (!this.store.workflows.update(wf.id, ['paused'], patch)) throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_USED', 'the workflow moved on meanwhile', { workflow_id: wf.id });
      this.o.audit.appendInTx(decision === 'approve' ? 'workflow.resumed' : 'workflow.gate_denied', actor, { workflow_id: wf.id, step_idx: t.idx, step_id: step.id, ...(reason !== undefined ? { reason } : {}) });
      const row = this.store.workflows.get(wf.id)!;
      emit('workflow.updated', this.event(row));
      return row;
    });
    this.kick();
    this.settled(wf.id);
    return out;
  }

  /** Cancels a running or paused workflow (and the run its current step started, if any). */
  async cancel(id: string, actor: AuditActor): Promise<WorkflowRow> {
    const wf = this.get(id);
    if (WORKFLOW_TERMINAL.includes(wf.state)) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `workflow ${id} already ${wf.state}`, { workflow_id: id, state: wf.state });
    const records = JSON.parse(wf.steps) as StepRecord[];
    const current = records[wf.step_idx];
    const out = await this.o.events.commit((emit) => {
      const now = this.now();
      if (current && (current.state === 'pending' || current.state === 'started')) records[wf.step_idx] = { ...current, state: 'cancelled', finished_at: now };
      if (!this.store.workflows.update(id, ['running', 'paused'], { state: 'cancelled', steps: JSON.stringify(records), gate_nonce: null, gate_message: null, gate_expires_at: null, updated_at: now, finished_at: now })) {
        throw new TyrumError('TYRUM_ERR_INVALID_STATE', `workflow ${id} finished meanwhile`, { workflow_id: id });
      }
      this.o.audit.appendInTx('workflow.cancelled', actor, { workflow_id: id, step_idx: wf.step_idx });
      const row = this.store.workflows.get(id)!;
      emit('workflow.updated', this.event(row));
      return row;
    });
    // The step's run is cancelled too (a run already finished is left as it is).
    if (current?.run_id) {
      const run = this.o.engine.get(current.run_id).run;
      if (!['succeeded', 'failed', 'cancelled'].includes(run.state)) await this.o.engine.cancel(current.run_id, actor).catch(() => undefined);
    }
    this.wake();
    this.settled(id);
    return out;
  }

  view(wf: WorkflowRow): WorkflowView {
    const plan = JSON.parse(wf.plan) as Plan;
    const records = JSON.parse(wf.steps) as StepRecord[];
    const outputs = JSON.parse(wf.outputs) as Record<string, unknown>;
    return {
      workflow_id: wf.id,
      name: wf.name,
      version: wf.version,
      plan_hash: wf.plan_hash,
      state: wf.state,
      step_idx: wf.step_idx,
      inputs: plan.inputs,
      steps: plan.steps.map((s, i) => {
        const r = records[i] ?? { state: 'pending' };
        return {
          idx: i,
          id: s.id,
          kind: s.kind,
          tool_id: s.tool_id,
          state: r.state,
          run_id: r.run_id ?? null,
          conversation_id: r.conversation_id ?? null,
          turn_id: r.turn_id ?? null,
          output: Object.hasOwn(outputs, s.id) ? outputs[s.id] : null,
          started_at: iso(r.started_at),
          finished_at: iso(r.finished_at),
        };
      }),
      gate: wf.state === 'paused' ? { step_idx: wf.step_idx, step_id: plan.steps[wf.step_idx]!.id, message: wf.gate_message ?? '', expires_at: iso(wf.gate_expires_at)! } : null,
      error: wf.error === null ? null : (JSON.parse(wf.error) as ErrorJson),
      created_by: wf.created_by,
      created_at: iso(wf.created_at)!,
      updated_at: iso(wf.updated_at)!,
      finished_at: iso(wf.finished_at),
    };
  }

  private event(wf: WorkflowRow): Record<string, unknown> {
    const plan = JSON.parse(wf.plan) as Plan;
    const step = plan.steps[wf.step_idx];
    return {
      workflow_id: wf.id,
      name: wf.name,
      state: wf.state,
      step_idx: wf.step_idx,
      step_id: step?.id ?? null,
      gate: wf.state === 'paused' ? { step_id: step!.id, message: wf.gate_message ?? '', expires_at: iso(wf.gate_expires_at)! } : null,
      error_code: wf.error === null ? null : (JSON.parse(wf.error) as ErrorJson).code,
    };
  }

  private mac(id: string, idx: number, nonce: string): string {
    return createHmac('sha256', this.key).update(`${id}.${idx}.${nonce}`).digest('base64url');
  }

  private parseToken(token: string): { id: string; idx: number; nonce: string } {
    const m = /^wrt\.(wf_[0-9a-f]{16})\.(\d{1,3})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_INVALID', 'this is not a resume token (wrt.<workflow>.<step>.<nonce>.<mac>)');
    const [, id, idx, nonce, mac] = m;
    const want = Buffer.from(this.mac(id!, Number(idx), nonce!));
    const got = Buffer.from(mac!);
    if (want.length !== got.length || !timingSafeEqual(want, got)) throw new TyrumError('TYRUM_ERR_RESUME_TOKEN_INVALID', 'the resume token was not issued by this gateway (or was altered)');
    return { id: id!, idx: Number(idx), nonce: nonce! };
  }

  /** Wakes the workflows waiting on run or turn `id`; every waiting workflow without one. */
  private wake(id?: unknown): void {
    const keys = id === undefined ? [...this.waiting.keys()] : typeof id === 'string' ? [id] : [];
    for (const k of keys) {
      const set = this.waiting.get(k);
      this.waiting.delete(k);
      for (const f of set ?? []) f();
    }
  }

  private settled(id: string): void {
    const set = this.settledWaiters.get(id);
    if (!set) return;
    this.settledWaiters.delete(id);
    for (const f of set) f();
  }

  /** Waits for an event about run or turn `id` (or the poll interval, or stop). */
  private nextWake(id: string): Promise<void> {
    return new Promise((done) => {
      const set = this.waiting.get(id) ?? new Set();
      set.add(done);
      this.waiting.set(id, set);
    });
  }

  private async expireGate(wf: WorkflowRow): Promise<void> {
    await this.o.events.commit((emit) => {
      const now = this.now();
      const cur = this.store.workflows.get(wf.id);
      if (!cur || cur.state !== 'paused' || cur.gate_nonce === null || cur.gate_expires_at === null || cur.gate_expires_at > now) return;
      const plan = JSON.parse(cur.plan) as Plan;
      const step = plan.steps[cur.step_idx]!;
      this.store.workflows.insertGate({ workflow_id: cur.id, step_idx: cur.step_idx, nonce: cur.gate_nonce, decision: 'expired', decided_by: null, reason: null, decided_at: now });
      const records = JSON.parse(cur.steps) as StepRecord[];
      records[cur.step_idx] = { ...records[cur.step_idx]!, state: 'cancelled', finished_at: now };
      const err = errorJson(new TyrumError('TYRUM_ERR_RESUME_TOKEN_EXPIRED', `nobody decided the approval gate of step "${step.id}" before it expired`, { step_id: step.id }));
      this.store.workflows.update(cur.id, ['paused'], { state: 'failed', steps: JSON.stringify(records), gate_nonce: null, gate_message: null, gate_expires_at: null, error: JSON.stringify(err), updated_at: now, finished_at: now });
      this.o.audit.appendInTx('workflow.gate_expired', { kind: 'gateway' }, { workflow_id: cur.id, step_idx: cur.step_idx, step_id: step.id });
      emit('workflow.updated', this.event(this.store.workflows.get(cur.id)!));
    });
    this.settled(wf.id);
  }

  /** Works on one workflow until it pauses, finishes, or the runner stops. */
  private async run(id: string): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const wf = this.store.workflows.get(id);
      if (!wf || wf.state !== 'running') return;
      const plan = JSON.parse(wf.plan) as Plan;
      if (wf.step_idx >= plan.steps.length) {
        await this.finish(wf, 'succeeded', null);
        return;
      }
      try {
        const waited = await this.step(wf, plan);
        if (waited !== 'moved') await this.nextWake(waited.on);
      } catch (e) {
        if (this.stopped) return;
        await this.finish(wf, 'failed', errorJson(e));
        return;
      }
    }
  }

  /** One move of the current step, or the run or turn id it waits on. */
  private async step(wf: WorkflowRow, plan: Plan): Promise<'moved' | { on: string }> {
    const idx = wf.step_idx;
    const step = plan.steps[idx]!;
    const records = JSON.parse(wf.steps) as StepRecord[];
    const rec = records[idx]!;
    const outputs = JSON.parse(wf.outputs) as Record<string, unknown>;
    const scope: Scope = { inputs: plan.inputs, outputs };

    if (rec.state === 'pending') {
      if (step.if && !conditionHolds(step.if, scope)) {
        await this.advance(wf, idx, { ...rec, state: 'skipped', finished_at: this.now() }, null, 'skipped');
        return 'moved';
      }
      if (step.approval && rec.gate_passed !== true) {
        await this.pause(wf, step, fill(step.approval.message, scope, true) as string);
        return 'moved';
      }
      if (step.kind === 'gate') {
        const gate = this.store.workflows.gate(wf.id, idx);
        await this.advance(wf, idx, { ...rec, state: 'succeeded', finished_at: this.now() }, { approved: true, decided_by: gate?.decided_by ?? null, reason: gate?.reason ?? null }, 'succeeded');
        return 'moved';
      }
      if (step.kind === 'tool') {
        const args = fill(step.args ?? {}, scope) as Record<string, unknown>;
        const { run } = await this.o.engine.submit({
          kind: 'tool',
          steps: [{ tool_id: step.tool_id!, args, ...(step.retry?.max_attempts !== undefined ? { max_attempts: step.retry.max_attempts } : {}), ...(step.retry?.timeout_ms !== undefined ? { timeout_ms: step.retry.timeout_ms } : {}), ...(step.postcondition ? { postcondition: step.postcondition } : {}) }],
          idempotency_key: `wf:${wf.id}:${idx}`,
          created_by: `workflow:${wf.id}`,
          actor: { kind: 'workflow', workflow_id: wf.id, step_id: step.id },
        });
        await this.record(wf, idx, { ...rec, state: 'started', run_id: run.id, started_at: this.now() });
        return 'moved';
      }
      // An agent turn in the step's own conversation, queued in the commit that records it.
      const filled = fill(step.prompt!, scope) as string;
      const prompt = filled.length <= MAX_AGENT_PROMPT_CHARS ? filled : `${filled.slice(0, MAX_AGENT_PROMPT_CHARS)}… [cut: ${filled.length - MAX_AGENT_PROMPT_CHARS} more characters]`;
      await this.o.events.commit((emit) => {
        const conv = this.conversationOf(wf, step);
        const { turn_id } = this.o.conversations.accept(conv, prompt, { source: 'workflow', workflow_id: wf.id, name: wf.name, step_id: step.id }, emit);
        this.recordInTx(wf, idx, { ...rec, state: 'started', conversation_id: conv.id, turn_id, started_at: this.now() }, emit);
      });
      return 'moved';
    }

    // Started: wait for what the step started.
    if (step.kind === 'tool') {
      const detail = this.o.engine.get(rec.run_id!);
      const state = detail.run.state;
      if (state === 'succeeded') {
        await this.advance(wf, idx, { ...rec, state: 'succeeded', finished_at: this.now() }, detail.steps[0]?.result ?? null, 'succeeded');
        return 'moved';
      }
      if (state === 'failed' || state === 'cancelled') {
        const err = detail.run.error ?? { code: 'TYRUM_ERR_INTERNAL', wire: 'internal', message: `the run of step "${step.id}" was ${state}` };
        throw new TyrumError(err.code as 'TYRUM_ERR_INTERNAL', `step "${step.id}" ${state === 'cancelled' ? 'was cancelled' : 'failed'}: ${err.message}`, { step_id: step.id, run_id: rec.run_id, ...(err.details ?? {}) });
      }
      return { on: rec.run_id! };
    }
    const turn = this.store.conversations.turn(rec.turn_id!);
    if (turn?.state === 'completed') {
      const last = this.store.conversations.messagesOfTurn(turn.id).filter((m) => m.role === 'assistant').pop();
      await this.advance(wf, idx, { ...rec, state: 'succeeded', finished_at: this.now() }, { text: last?.content ?? '', conversation_id: rec.conversation_id, turn_id: turn.id }, 'succeeded');
      return 'moved';
    }
    if (turn?.state === 'failed') {
      const err = turn.error ? (JSON.parse(turn.error) as ErrorJson) : null;
      throw new TyrumError((err?.code ?? 'TYRUM_ERR_INTERNAL') as 'TYRUM_ERR_INTERNAL', `the agent turn of step "${step.id}" failed${err ? `: ${err.message}` : ''}`, { step_id: step.id, turn_id: turn.id });
    }
    return { on: rec.turn_id! };
  }

  private conversationOf(wf: WorkflowRow, step: PlanStep): ConversationRow {
    const key = workflowConversationKey(wf.id, step.id);
    const found = this.store.conversations.conversationByKey(key.channel, key.account, key.thread);
    if (found) return found;
    const now = this.now();
    const row: ConversationRow = { id: `conv_${randomBytes(8).toString('hex')}`, ...key, title: `workflow ${wf.name}: ${step.id}`, created_by: `workflow:${wf.id}`, created_at: now, updated_at: now };
    this.store.conversations.insertConversation(row);
    return row;
  }

  private recordInTx(wf: WorkflowRow, idx: number, rec: StepRecord, emit: Emit): void {
    const records = JSON.parse(wf.steps) as StepRecord[];
    records[idx] = rec;
    if (!this.store.workflows.update(wf.id, ['running'], { steps: JSON.stringify(records), updated_at: this.now() })) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `workflow ${wf.id} is no longer running`);
    emit('workflow.updated', this.event(this.store.workflows.get(wf.id)!));
  }

  private record(wf: WorkflowRow, idx: number, rec: StepRecord): Promise<void> {
    return this.o.events.commit((emit) => this.recordInTx(wf, idx, rec, emit));
  }

  /** Records the step's end and its output and moves to the next step, in one commit. */
  private advance(wf: WorkflowRow, idx: number, rec: StepRecord, output: unknown, how: 'succeeded' | 'skipped'): Promise<void> {
    const plan = JSON.parse(wf.plan) as Plan;
    return this.o.events.commit((emit) => {
      const records = JSON.parse(wf.steps) as StepRecord[];
      records[idx] = rec;
      const outputs = JSON.parse(wf.outputs) as Record<string, unknown>;
      outputs[plan.steps[idx]!.id] = output ?? null;
      const now = this.now();
      if (!this.store.workflows.update(wf.id, ['running'], { steps: JSON.stringify(records), outputs: JSON.stringify(outputs), step_idx: idx + 1, updated_at: now })) {
        throw new TyrumError('TYRUM_ERR_INVALID_STATE', `workflow ${wf.id} is no longer running`);
      }
      this.o.audit.appendInTx('workflow.step_' + how, { kind: 'workflow', workflow_id: wf.id }, { workflow_id: wf.id, step_idx: idx, step_id: plan.steps[idx]!.id, ...(rec.run_id ? { run_id: rec.run_id } : {}), ...(rec.turn_id ? { turn_id: rec.turn_id } : {}) });
      emit('workflow.updated', this.event(this.store.workflows.get(wf.id)!));
    });
  }

  private async pause(wf: WorkflowRow, step: PlanStep, message: string): Promise<void> {
    const nonce = randomBytes(16).toString('base64url');
    await this.o.events.commit((emit) => {
      const now = this.now();
      const expires = now + step.approval!.expires_in_s * 1000;
      if (!this.store.workflows.update(wf.id, ['running'], { state: 'paused', gate_nonce: nonce, gate_message: message, gate_expires_at: expires, updated_at: now })) {
        throw new TyrumError('TYRUM_ERR_INVALID_STATE', `workflow ${wf.id} is no longer running`);
      }
      this.o.audit.appendInTx('workflow.paused', { kind: 'workflow', workflow_id: wf.id }, { workflow_id: wf.id, step_idx: step.idx, step_id: step.id, message, expires_at: iso(expires) });
      emit('workflow.updated', this.event(this.store.workflows.get(wf.id)!));
    });
  }

  private async finish(wf: WorkflowRow, state: 'succeeded' | 'failed', error: ErrorJson | null): Promise<void> {
    await this.o.events.commit((emit) => {
      const cur = this.store.workflows.get(wf.id)!;
      const now = this.now();
      const records = JSON.parse(cur.steps) as StepRecord[];
      if (state === 'failed' && records[cur.step_idx] && !['succeeded', 'skipped'].includes(records[cur.step_idx]!.state)) records[cur.step_idx] = { ...records[cur.step_idx]!, state: 'failed', finished_at: now };
      if (!this.store.workflows.update(wf.id, ['running'], { state, steps: JSON.stringify(records), error: error === null ? null : JSON.stringify(error), updated_at: now, finished_at: now })) return;
      this.o.audit.appendInTx(`workflow.${state}`, { kind: 'workflow', workflow_id: wf.id }, { workflow_id: wf.id, plan_hash: wf.plan_hash, ...(error ? { error_code: error.code, step_idx: cur.step_idx } : {}) });
      emit('workflow.updated', this.event(this.store.workflows.get(wf.id)!));
    });
  }
}

