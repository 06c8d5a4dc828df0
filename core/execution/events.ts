/**
 * Durable events for runs, steps and approvals.
 *
 * An event is written to the outbox in the same transaction as the change it describes, so a
 * change without its event (or the reverse) can never be committed. Listeners (the gateway's
 * live push) are called only after the commit; a process that dies in between loses nothing,
 * because a client catches up from the outbox with the cursor (`seq`) it holds. Delivery is
 * therefore at least once: clients dedupe by `event_id`, which never changes once written.
 */
import { randomUUID } from 'node:crypto';
import type { RunRow, StepRow, Store } from '../store/index.js';
import { TyrumError } from '../errors/index.js';

export const EXECUTION_EVENT_TYPES = [
  'run.updated',
  'step.updated',
  'approval.updated',
  'pairing.updated',
  'message.created',
  'message.final',
  'turn.started',
  'turn.completed',
  'turn.failed',
  'delivery.receipt',
  'channel.sender_updated',
  'schedule.fired',
  'workflow.updated',
  'artifact.created',
  'artifact.attached',
] as const;
export type ExecutionEventType = (typeof EXECUTION_EVENT_TYPES)[number];

/** One outbox event. `seq` is the catch-up cursor; `event_id` the dedupe key. */
export interface OutboxEvent {
  seq: number;
  event_id: string;
  type: ExecutionEventType;
  payload: Record<string, unknown>;
  /** Epoch milliseconds. */
  occurred_at: number;
  /**
   * The tenant whose clients receive it: that of the run, approval or conversation the payload
   * names ('default' for host-wide objects), decided when it is written (docs/tenancy.md).
   */
  tenant_id: string;
}

/** Writes an event into the transaction in progress. */
export type Emit = (type: ExecutionEventType, payload: Record<string, unknown>) => void;
export type EventListener = (event: OutboxEvent) => void;

export const EVENTS_AFTER_DEFAULT_LIMIT = 100;
export const EVENTS_AFTER_MAX_LIMIT = 1000;

export interface EventLogOptions {
  store: Store;
  now?: () => number;
  /** Where a throwing listener is reported; listeners never break the writer. */
  onListenerError?: (error: unknown) => void;
}

/** The outbox and the in-process listeners; one per store per process, shared by engine and approvals. */
export class EventLog {
  private readonly store: Store;
  private readonly now: () => number;
  private readonly listeners = new Set<EventListener>();
  private readonly onListenerError: (error: unknown) => void;

  constructor(options: EventLogOptions) {
    this.store = options.store;
    this.now = options.now ?? Date.now;
    this.onListenerError = options.onListenerError ?? (() => undefined);
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction; every event it emits is written in that transaction
   * and delivered to listeners after the commit. `beforeDeliver` runs between the two (the
   * crash harness uses it). If `fn` throws nothing is written and nothing is delivered.
   */
  transact<T>(fn: (emit: Emit) => T, beforeDeliver?: () => void): T {
    const written: OutboxEvent[] = [];
    const value = this.store.tx(() => fn((type, payload) => written.push(this.write(type, payload))));
    beforeDeliver?.();
    this.deliver(written);
    return value;
  }

  /**
   * Runs `fn` now as a unit of the store's group commit (Store.commit); every event it emits is
   * written in that unit and delivered to listeners once the group is durable, before the
   * returned promise resolves. `beforeDeliver` runs between the commit and the delivery (the
   * crash harness uses it). If `fn` throws, nothing of it is written or delivered.
   */
  commit<T>(fn: (emit: Emit) => T, beforeDeliver?: () => void): Promise<T> {
    return this.store.commit(() => {
      const written: OutboxEvent[] = [];
      const value = fn((type, payload) => written.push(this.write(type, payload)));
      this.store.afterCommit(() => {
        beforeDeliver?.();
        this.deliver(written);
      });
      return value;
    });
  }

  /** Events with seq > cursor, oldest first: a gap-free catch-up (of one tenant's events, with `tenant`). */
  after(cursor: number, limit = EVENTS_AFTER_DEFAULT_LIMIT, tenant?: string): OutboxEvent[] {
    if (!Number.isSafeInteger(cursor) || cursor < 0) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'cursor must be a non-negative integer', { cursor });
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit });
    return this.store.committed.outbox.after(cursor, Math.min(limit, EVENTS_AFTER_MAX_LIMIT), tenant).map((r) => ({
      seq: r.seq,
      event_id: r.event_id,
      type: r.type as ExecutionEventType,
      payload: JSON.parse(r.payload) as Record<string, unknown>,
      occurred_at: r.occurred_at,
      tenant_id: r.tenant_id ?? 'default',
    }));
  }

  /** The newest seq (0 when empty): where a new subscriber that wants no history starts. */
  head(): number {
    return this.store.committed.outbox.head();
  }

  /** Calls `listener` with every event committed from now on; returns the unsubscribe function. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private write(type: ExecutionEventType, payload: Record<string, unknown>): OutboxEvent {
    const event = { event_id: randomUUID(), type, payload, occurred_at: this.now(), tenant_id: this.store.outbox.tenantOf(payload) };
    const seq = this.store.outbox.append({ ...event, payload: JSON.stringify(payload) });
    return { seq, ...event };
  }

  private deliver(events: readonly OutboxEvent[]): void {
    for (const e of events) {
      for (const l of [...this.listeners]) {
        try {
          l(e);
        } catch (err) {
          this.onListenerError(err);
        }
      }
    }
  }
}

function errorCode(errorJson: string | null): string | null {
  if (errorJson === null) return null;
  const e = JSON.parse(errorJson) as { code?: unknown };
  return typeof e.code === 'string' ? e.code : null;
}

/** The `run.updated` payload: enough for a client to decide whether to fetch the run. */
export function runEventPayload(r: RunRow): Record<string, unknown> {
  return { run_id: r.id, kind: r.kind, state: r.state, pause_reason: r.pause_reason, cancel_requested: r.cancel_requested === 1, error_code: errorCode(r.error) };
}

/** The `step.updated` payload. */
export function stepEventPayload(s: StepRow): Record<string, unknown> {
  return {
    run_id: s.run_id,
    step_idx: s.idx,
    tool_id: s.tool_id,
    state: s.state,
    attempts: s.attempts,
    policy_decision: s.policy_decision,
    approval_id: s.approval_id,
    error_code: errorCode(s.error),
  };
}
