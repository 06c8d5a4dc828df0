/**
 * The scheduler: schedules (cron in a time zone, fixed intervals, heartbeats) and their fires.
 *
 * Claim protocol (once per tick, whatever the number of gateways on the database). A schedule row
 * holds `next_fire_at`, its next tick. A claimer reads the due rows, then for each one runs ONE
 * transaction that
 *   1. moves `next_fire_at` on with a conditional UPDATE (`WHERE id = ? AND next_fire_at = <the
 *      value read> AND state = 'active'`): of several claimers that read the same tick exactly one
 *      updates a row, the others see 0 changes and drop the tick;
 *   2. inserts the fire into `schedule_fires`, whose key (schedule_id, fire_at) is unique — a second
 *      guard: the same tick can never be recorded twice;
 *   3. starts the target in the same transaction: the engine run (ExecutionEngine.submitInUnit,
 *      queued, claimed by the engine's worker loop after the commit) or the conversation message
 *      (ConversationService.accept, which queues the turn);
 *   4. writes the `schedule.fired` event (outbox) and the audit entry.
 * A crash before the COMMIT leaves nothing (the tick is still due and fires after the restart); a
 * crash after it leaves everything (the tick has moved on, the run or message exists and is picked
 * up by the engine or the turn runner at start). Nothing is lost or doubled. The run also carries
 * the idempotency key `sched:<schedule id>:<tick ms>` (creator `schedule:<id>`), so even a claimer
 * that somehow got past both guards would get the existing run back rather than a second one.
 *
 * On SQLite, claimers in other processes serialise on the write lock (BEGIN IMMEDIATE) and the
 * conditional UPDATE decides. On Postgres (the scale-out issue) the claim transaction starts with
 * `SELECT ... FROM schedules WHERE state = 'active' AND next_fire_at <= $now ORDER BY next_fire_at
 * LIMIT $n FOR UPDATE SKIP LOCKED`, so replicas split the due schedules instead of queueing behind
 * one row lock; the conditional UPDATE and the unique fire key stay as they are.
 *
 * Missed ticks. When the claimer reaches a schedule, the due ticks are those from `next_fire_at`
 * through now. The last of them fires normally if it is at most `missedAfterMs` (60 s) old — a
 * restart or a slow pass makes a tick late, not missed. Every other due tick is missed, and the
 * schedule's policy decides: `skip` fires nothing for them (they are counted and audited as
 * `schedule.missed`), `catch_up_once` folds them all into one fire (`ticks` says how many), at the
 * last due tick. Either way `next_fire_at` becomes the first tick after now. A paused schedule has
 * no ticks: resuming starts from the next tick after the resume.
 *
 * Heartbeats are interval schedules whose target is an agent turn with a fixed prompt (default
 * "heartbeat: check in") in the heartbeat's own operator conversation. A heartbeat never piles up
 * behind a busy agent: while one of its messages still waits for a turn, a new tick is recorded as
 * served by that message instead of adding another.
 */
import { randomBytes } from 'node:crypto';
import type { ConversationRow, MissedPolicy, ScheduleFireRow, ScheduleKind, ScheduleRow, Store } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import type { Emit, EventLog } from '../execution/events.js';
import type { ExecutionEngine } from '../execution/engine.js';
import type { ConversationService, Provenance } from '../conversations/service.js';
import { OPERATOR_CHANNEL } from '../conversations/service.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { crashPointFromEnv, type CrashPoint } from '../util/crash.js';
import { MAX_ARGS_BYTES, MAX_PLAYBOOK_BYTES, MAX_PROMPT_CHARS, MISSED_AFTER_MS_DEFAULT, SCHEDULER_BATCH, SCHEDULER_POLL_MS_DEFAULT, HEARTBEAT_PROMPT_DEFAULT, type ScheduleTarget } from './types.js';
import { checkZone } from './cron.js';
import { dueTicks, nextTicks, ticker, type Ticker, type Timing } from './timing.js';
import type { WorkflowRunner } from '../playbooks/runner.js';
import { checkPlaybook, compilePlaybook } from '../playbooks/spec.js';
import { detached } from '../telemetry/context.js';

export interface SchedulerOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  /** Who claims (the engine's owner name); recorded with each fire. */
  owner: string;
  /** Starts tool targets. Absent in the CLI, which manages schedules but never fires them. */
  engine?: Pick<ExecutionEngine, 'submitInUnit'>;
  /** Starts agent-turn targets. */
  conversations?: Pick<ConversationService, 'accept'>;
  /** Starts playbook targets. */
  workflows?: Pick<WorkflowRunner, 'createInTx'>;
  now?: () => number;
  /** Longest wait between passes (default SCHEDULER_POLL_MS_DEFAULT); a pass also runs at the earliest next tick. */
  pollMs?: number;
  /** A tick reached later than this is missed (default MISSED_AFTER_MS_DEFAULT). */
  missedAfterMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
  /** TEST ONLY: called at the `schedule_fired` crash point. Default: from TYRUM_TEST_CRASH_AT (off when unset). */
  crashPoint?: (name: CrashPoint) => void;
}

/** What `add` takes (the CLI's flags, checked). */
export interface AddSchedule {
  name: string;
  /** Exactly one of cron, every_ms, heartbeat_ms. */
  cron?: string;
  timezone?: string;
  every_ms?: number;
  heartbeat_ms?: number;
  target?: ScheduleTarget;
  missed?: MissedPolicy;
}

/** One fire (or missed ticks) of a pass. */
export interface FireOutcome {
  schedule_id: string;
  name: string;
  /** The tick fired, or null when the due ticks were all skipped. */
  fire_at: number | null;
  ticks: number;
  /** Ticks counted as missed (skipped, or folded into this fire). */
  missed: number;
  run_id: string | null;
  conversation_id: string | null;
  message_id: string | null;
  workflow_id: string | null;
  error: { code: string; message: string } | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function newScheduleId(): string {
  return `sch_${randomBytes(8).toString('hex')}`;
}

/** The timing of a stored schedule. */
export function timingOf(r: Pick<ScheduleRow, 'kind' | 'cron' | 'timezone' | 'every_ms' | 'anchor_at'>): Timing {
  return r.kind === 'cron' ? { kind: 'cron', cron: r.cron!, timezone: r.timezone } : { kind: 'every', every_ms: r.every_ms!, anchor_at: r.anchor_at };
}

export function targetOf(r: ScheduleRow): ScheduleTarget {
  return JSON.parse(r.target) as ScheduleTarget;
}

/** The conversation of an agent-turn schedule: (operator, schedule:<id>, <id>), created on its first fire. */
export function scheduleConversationKey(scheduleId: string): { channel: string; account: string; thread: string } {
  return { channel: OPERATOR_CHANNEL, account: `schedule:${scheduleId}`, thread: scheduleId };
}

export class Scheduler {
  private readonly o: SchedulerOptions;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly missedAfterMs: number;
  private readonly crash: (name: CrashPoint) => void;
  private readonly tickers = new Map<string, { key: string; ticker: Ticker }>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private started = false;
  private again = false;

  constructor(o: SchedulerOptions) {
    this.o = o;
    this.store = o.store;
    this.now = o.now ?? Date.now;
    this.pollMs = o.pollMs ?? SCHEDULER_POLL_MS_DEFAULT;
    this.missedAfterMs = o.missedAfterMs ?? MISSED_AFTER_MS_DEFAULT;
    this.crash = o.crashPoint ?? crashPointFromEnv();
  }

  // ---------------------------------------------------------------- management

  /** Adds a schedule (active; its first tick is the first after now). */
  async add(input: AddSchedule, actor: AuditActor): Promise<ScheduleRow> {
    if (!NAME.test(input.name)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `schedule name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got "${input.name}"`);
    const kinds = [input.cron !== undefined, input.every_ms !== undefined, input.heartbeat_ms !== undefined].filter(Boolean).length;
    if (kinds !== 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give exactly one of --cron EXPR, --every DURATION, --heartbeat DURATION');
    const kind: ScheduleKind = input.cron !== undefined ? 'cron' : input.every_ms !== undefined ? 'interval' : 'heartbeat';
    const timezone = input.timezone ?? 'UTC';
    checkZone(timezone);
    if (kind !== 'cron' && input.timezone !== undefined && input.timezone !== 'UTC') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--tz applies to --cron only (an interval is the same in every zone)');
    let target = input.target;
    if (kind === 'heartbeat') {
      if (target?.type === 'tool') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a heartbeat starts an agent turn: give --prompt TEXT (or nothing, for the default prompt), not --tool');
      target ??= { type: 'agent_turn', prompt: HEARTBEAT_PROMPT_DEFAULT };
    }
    if (target === undefined) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'give what each fire starts: --tool TOOL_ID --args JSON, or --prompt TEXT');
    checkTarget(target);
    const now = this.now();
    const row: ScheduleRow = {
      id: newScheduleId(),
      name: input.name,
      kind,
      cron: input.cron ?? null,
      timezone,
      every_ms: input.every_ms ?? input.heartbeat_ms ?? null,
      anchor_at: now,
      target: JSON.stringify(target),
      missed_policy: input.missed ?? 'skip',
      state: 'active',
      next_fire_at: null,
      last_fire_at: null,
      fires: 0,
      missed: 0,
      created_by: actorName(actor),
      created_at: now,
      updated_at: now,
    };
    // Parses the expression (coded errors) before anything is written. Interval ticks count from now.
    row.next_fire_at = ticker(timingOf(row)).after(now);
    await this.o.events.commit(() => {
      if (this.store.schedules.byName(row.name)) throw new TyrumError('TYRUM_ERR_CONFLICT', `a schedule named "${row.name}" already exists (tyrum schedule remove ${row.name} first)`, { name: row.name });
      this.store.schedules.insert(row);
      this.o.audit.appendInTx('schedule.added', actor, { schedule_id: row.id, name: row.name, kind, cron: row.cron, timezone, every_ms: row.every_ms, missed_policy: row.missed_policy, target: auditTarget(target), next_fire_at: iso(row.next_fire_at) });
    });
    this.kick();
    return row;
  }

  list(): ScheduleRow[] {
    return this.store.schedules.list();
  }

  get(name: string): ScheduleRow {
    const r = this.store.schedules.byName(name);
    if (!r) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no schedule named "${name}" (tyrum schedule list)`, { name });
    return r;
  }

  /** Pauses a schedule: no ticks until it is resumed. Pausing a paused one is a no-op (false). */
  async pause(name: string, actor: AuditActor): Promise<{ schedule: ScheduleRow; changed: boolean }> {
    return this.setState(name, 'paused', actor);
  }

  /** Resumes a paused schedule from its next tick after now (the paused time is not caught up). */
  async resume(name: string, actor: AuditActor): Promise<{ schedule: ScheduleRow; changed: boolean }> {
    return this.setState(name, 'active', actor);
  }

  private async setState(name: string, state: 'active' | 'paused', actor: AuditActor): Promise<{ schedule: ScheduleRow; changed: boolean }> {
    const out = await this.o.events.commit(() => {
      const r = this.get(name);
      const now = this.now();
      const next = state === 'paused' ? null : this.tickerOf(r).after(now);
      const changed = this.store.schedules.setState(r.id, state, next, now);
      if (changed) this.o.audit.appendInTx(state === 'paused' ? 'schedule.paused' : 'schedule.resumed', actor, { schedule_id: r.id, name: r.name, next_fire_at: iso(next) });
      return { schedule: this.store.schedules.get(r.id)!, changed };
    });
    if (state === 'active') this.kick();
    return out;
  }

  /** Removes a schedule and its fire records (the audit log keeps its history; runs and messages stay). */
  async remove(name: string, actor: AuditActor): Promise<ScheduleRow> {
    return this.o.events.commit(() => {
      const r = this.get(name);
      this.store.schedules.remove(r.id);
      this.o.audit.appendInTx('schedule.removed', actor, { schedule_id: r.id, name: r.name, fires: r.fires });
      return r;
    });
  }

  /** The next `count` ticks of a schedule after now (ticks of a paused one as if resumed now). */
  next(name: string, count: number): number[] {
    const r = this.get(name);
    const from = r.state === 'active' && r.next_fire_at !== null ? r.next_fire_at - 1 : this.now();
    return nextTicks(this.tickerOf(r), from, count);
  }

  fires(name: string, limit: number): ScheduleFireRow[] {
    return this.store.schedules.fires(this.get(name).id, limit);
  }

  // ---------------------------------------------------------------- firing

  /** Starts claiming due ticks (the gateway: after the engine has started). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.kick();
  }

  /** Stops claiming and waits for a pass in progress (before the engine stops). */
  async stop(): Promise<void> {
    this.started = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** Runs a pass soon (a schedule added or resumed, here or by the CLI). */
  kick(): void {
    if (!this.started) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    // The passes and their timers belong to no call (core/telemetry/context.ts).
    this.timer = detached(() => setTimeout(() => void this.loop(), 0));
  }

  private async loop(): Promise<void> {
    this.timer = null;
    if (!this.started) return;
    const p = this.tick().catch((e: unknown) => this.o.log?.('error', 'scheduler pass failed', { error: e instanceof Error ? e.message : String(e) }));
    this.running = p;
    await p;
    this.running = null;
    if (!this.started) return;
    if (this.again) {
      this.again = false;
      return this.kick();
    }
    let wait = this.pollMs;
    try {
      const earliest = this.store.schedules.earliest();
      if (earliest !== null) wait = Math.max(0, Math.min(wait, earliest - this.now()));
    } catch {
      // the store closed under us: the next pass finds out
    }
    this.timer = setTimeout(() => void this.loop(), wait);
    this.timer.unref();
  }

  /**
   * One pass: claims every due schedule (one transaction each) and resolves with what happened.
   * Safe to run concurrently in several processes or instances on one database: each tick is
   * won by one of them.
   */
  async tick(): Promise<FireOutcome[]> {
    const now = this.now();
    const out: FireOutcome[] = [];
    for (const row of this.store.schedules.due(now, SCHEDULER_BATCH)) {
      try {
        const r = await this.claim(row.id, row.next_fire_at!, now);
        if (r) out.push(r);
      } catch (e) {
        this.o.log?.('error', 'schedule claim failed', { schedule_id: row.id, name: row.name, error: e instanceof Error ? e.message : String(e) });
      }
    }
    return out;
  }

  /** The claim transaction of one schedule's due tick(s); null when another claimer won them. */
  private claim(id: string, expected: number, now: number): Promise<FireOutcome | null> {
    return this.o.events.commit((emit) => {
      // Re-read in the claim's transaction: the row may have moved since `due` read it.
      const r = this.store.schedules.get(id);
      if (!r || r.state !== 'active' || r.next_fire_at !== expected) return null;
      const tk = this.tickerOf(r);
      const due = dueTicks(tk, expected, now);
      const onTime = now - due.last <= this.missedAfterMs;
      const fireAt = r.missed_policy === 'catch_up_once' || onTime ? due.last : null;
      const ticks = fireAt === null ? 0 : r.missed_policy === 'catch_up_once' ? due.count : 1;
      const missed = due.count - (fireAt === null ? 0 : 1);
      const next = tk.after(due.last);
      // The claim: exactly one claimer moves next_fire_at off `expected`.
      if (!this.store.schedules.advance(r.id, expected, next ?? null, fireAt !== null, missed, now)) return null;
      const outcome: FireOutcome = { schedule_id: r.id, name: r.name, fire_at: fireAt, ticks, missed, run_id: null, conversation_id: null, message_id: null, workflow_id: null, error: null };
      if (missed > 0 && fireAt === null) {
        this.o.audit.appendInTx('schedule.missed', this.actor(), { schedule_id: r.id, name: r.name, ticks: missed, first: iso(expected), last: iso(due.last), policy: r.missed_policy, next_fire_at: iso(next) });
        return outcome;
      }
      if (fireAt === null) return outcome;
      const fire: ScheduleFireRow = { schedule_id: r.id, fire_at: fireAt, ticks, fired_at: now, owner: this.o.owner, run_id: null, conversation_id: null, message_id: null, workflow_id: null, error: null };
      if (!this.store.schedules.insertFire(fire)) throw new TyrumError('TYRUM_ERR_CONFLICT', `tick ${iso(fireAt)} of schedule ${r.name} already fired`);
      // The target starts in a savepoint: if it cannot start (a bad request, a full conversation),
      // the tick is still used up and the fire recorded with the error, so it is not retried
      // forever. Its events are held until it succeeds. (The starters throw before they write: an
      // audit entry appended inside a savepoint that rolls back would leave its commit callback.)
      const held: Array<[Parameters<Emit>[0], Parameters<Emit>[1]]> = [];
      let coalesced = false;
      try {
        this.store.tx(() => {
          const started = this.startTarget(r, fireAt, ticks, (type, payload) => held.push([type, payload]));
          Object.assign(outcome, started.ids);
          coalesced = started.coalesced;
        });
        for (const [type, payload] of held) emit(type, payload);
      } catch (e) {
        const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INTERNAL', e instanceof Error ? e.message : String(e));
        outcome.error = { code: err.code, message: err.message };
        outcome.run_id = outcome.conversation_id = outcome.message_id = outcome.workflow_id = null;
      }
      this.store.schedules.updateFire(r.id, fireAt, { run_id: outcome.run_id, conversation_id: outcome.conversation_id, message_id: outcome.message_id, workflow_id: outcome.workflow_id, error: outcome.error === null ? null : JSON.stringify(outcome.error) });
      const target = targetOf(r);
      emit('schedule.fired', {
        schedule_id: r.id,
        name: r.name,
        fire_at: iso(fireAt),
        ticks,
        target: target.type,
        run_id: outcome.run_id,
        conversation_id: outcome.conversation_id,
        message_id: outcome.message_id,
        workflow_id: outcome.workflow_id,
        error_code: outcome.error?.code ?? null,
      });
      this.o.audit.appendInTx('schedule.fired', this.actor(), {
        schedule_id: r.id,
        name: r.name,
        fire_at: iso(fireAt),
        ticks,
        missed,
        target: target.type,
        run_id: outcome.run_id,
        conversation_id: outcome.conversation_id,
        message_id: outcome.message_id,
        workflow_id: outcome.workflow_id,
        ...(coalesced ? { coalesced: true } : {}),
        error_code: outcome.error?.code ?? null,
        next_fire_at: iso(next),
      });
      // A kill here loses the whole claim: the tick is still due after a restart and fires then, once.
      this.crash('schedule_fired');
      return outcome;
    });
  }

  /** Starts what a fire starts, inside the claim's transaction. Adding a target type = one more case. */
  private startTarget(r: ScheduleRow, fireAt: number, ticks: number, emit: Emit): { ids: Partial<FireOutcome>; coalesced: boolean } {
    const target = targetOf(r);
    switch (target.type) {
      case 'tool': {
        if (!this.o.engine) throw new TyrumError('TYRUM_ERR_INTERNAL', 'this scheduler has no engine to start tool calls');
        const { run } = this.o.engine.submitInUnit(
          {
            kind: 'tool',
            steps: [{ tool_id: target.tool_id, args: target.args }],
            idempotency_key: `sched:${r.id}:${fireAt}`,
            created_by: `schedule:${r.id}`,
            actor: { kind: 'schedule', schedule_id: r.id, name: r.name, fire_at: iso(fireAt) },
          },
          emit,
        );
        return { ids: { run_id: run.id }, coalesced: false };
      }
      case 'agent_turn': {
        if (!this.o.conversations) throw new TyrumError('TYRUM_ERR_INTERNAL', 'this scheduler has no conversation service to start agent turns');
        const conv = this.conversationOf(r);
        if (r.kind === 'heartbeat') {
          const waiting = this.store.conversations.firstWaiting(conv.id);
          if (waiting) return { ids: { conversation_id: conv.id, message_id: waiting.id }, coalesced: true };
        }
        const prov: Provenance = { source: 'schedule', schedule_id: r.id, name: r.name, kind: r.kind, fire_at: iso(fireAt)!, ticks };
        const { message } = this.o.conversations.accept(conv, target.prompt, prov, emit);
        return { ids: { conversation_id: conv.id, message_id: message.id }, coalesced: false };
      }
      case 'playbook': {
        if (!this.o.workflows) throw new TyrumError('TYRUM_ERR_INTERNAL', 'this scheduler has no workflow runner to start playbooks');
        const plan = compilePlaybook(checkPlaybook(target.playbook), target.inputs);
        const { workflow } = this.o.workflows.createInTx(plan, `schedule:${r.id}`, { kind: 'schedule', schedule_id: r.id, name: r.name, fire_at: iso(fireAt) }, `sched:${r.id}:${fireAt}`, emit);
        return { ids: { workflow_id: workflow.id }, coalesced: false };
      }
    }
  }

  /** The schedule's own operator conversation, created on its first fire. */
  private conversationOf(r: ScheduleRow): ConversationRow {
    const key = scheduleConversationKey(r.id);
    const found = this.store.conversations.conversationByKey(key.channel, key.account, key.thread);
    if (found) return found;
    const now = this.now();
    const row: ConversationRow = { id: `conv_${randomBytes(8).toString('hex')}`, ...key, title: `${r.kind === 'heartbeat' ? 'heartbeat' : 'schedule'} ${r.name}`, created_by: `schedule:${r.id}`, created_at: now, updated_at: now };
    this.store.conversations.insertConversation(row);
    return row;
  }

  private tickerOf(r: ScheduleRow): Ticker {
    const key = `${r.kind}|${r.cron ?? ''}|${r.timezone}|${r.every_ms ?? ''}|${r.anchor_at}`;
    const hit = this.tickers.get(r.id);
    if (hit?.key === key) return hit.ticker;
    const t = ticker(timingOf(r));
    this.tickers.set(r.id, { key, ticker: t });
    return t;
  }

  private actor(): AuditActor {
    return { kind: 'scheduler', owner: this.o.owner };
  }
}

function checkTarget(t: ScheduleTarget): void {
  if (t.type === 'playbook') {
    if (Buffer.byteLength(JSON.stringify([t.playbook, t.inputs])) > MAX_PLAYBOOK_BYTES) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `a schedule's playbook and inputs must be at most ${MAX_PLAYBOOK_BYTES} bytes of JSON`);
    // Checked and compiled now, so a bad playbook or inputs is refused when added, not at every fire.
    compilePlaybook(checkPlaybook(t.playbook), t.inputs);
    return;
  }
  if (t.type === 'tool') {
    if (typeof t.tool_id !== 'string' || t.tool_id.length === 0 || t.tool_id.length > 200) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'a tool id is 1-200 characters');
    if (typeof t.args !== 'object' || t.args === null || Array.isArray(t.args)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--args must be a JSON object');
    if (Buffer.byteLength(JSON.stringify(t.args)) > MAX_ARGS_BYTES) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--args must be at most ${MAX_ARGS_BYTES} bytes of JSON`);
    return;
  }
  if (typeof t.prompt !== 'string' || t.prompt.trim() === '') throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--prompt must not be empty');
  if (t.prompt.length > MAX_PROMPT_CHARS) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--prompt must be at most ${MAX_PROMPT_CHARS} characters`);
}

/** The target as the audit log records it: the tool and a hash-free summary, the prompt's length (not its text). */
function auditTarget(t: ScheduleTarget): Record<string, unknown> {
  if (t.type === 'playbook') return { type: 'playbook', name: t.playbook.name, version: t.playbook.version, plan_hash: compilePlaybook(checkPlaybook(t.playbook), t.inputs).plan_hash };
  return t.type === 'tool' ? { type: 'tool', tool_id: t.tool_id, arg_keys: Object.keys(t.args) } : { type: 'agent_turn', prompt_chars: t.prompt.length };
}

function actorName(a: AuditActor): string {
  return a.kind === 'cli' ? `cli:${String(a.user)}` : a.kind === 'token' ? `token:${String(a.id)}` : a.kind;
}

function iso(t: number | null): string | null {
  return t === null ? null : new Date(t).toISOString();
}
