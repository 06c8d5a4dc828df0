/**
 * Conversations and their messages: creating them (an operator client's, or a channel chat's on
 * its first message), taking a message in, and queueing the turn that will answer it.
 *
 * One turn at a time per conversation. A message that arrives while a turn runs waits; the next
 * turn takes every waiting message (so a burst of messages gets one answer, not one each). At
 * most `maxPendingMessages` may wait: beyond that a message is refused with
 * TYRUM_ERR_CONVERSATION_QUEUE_FULL (the overflow policy is "reject the newest"; nothing already
 * accepted is dropped).
 */
import { randomBytes } from 'node:crypto';
import type { ConversationRow, DeliveryRow, MessageRow, Store, TurnRow } from '../store/index.js';
import type { EventLog, Emit } from '../execution/events.js';
import { TyrumError } from '../errors/index.js';

export const MAX_PENDING_MESSAGES_DEFAULT = 20;
export const OPERATOR_CHANNEL = 'operator';

export function newId(prefix: 'conv' | 'msg' | 'turn' | 'dlv' | 'chan'): string {
  return `${prefix}_${randomBytes(8).toString('hex')}`;
}

/** Where a user message came from; carried into the turn (and shown to the model) as provenance. */
export type Provenance =
  | { source: 'operator'; token_id: string; idempotency_key?: string }
  | { source: 'channel'; channel: string; sender: { id: string; name: string | null }; chat: { id: string; kind: 'direct' | 'group' }; verified: boolean; external_id: string }
  /** A schedule's fire (core/scheduler): the prompt an operator configured, sent at `fire_at` (ISO). */
  | { source: 'schedule'; schedule_id: string; name: string; kind: 'cron' | 'interval' | 'heartbeat'; fire_at: string; ticks: number }
  /** An agent step of a workflow (core/playbooks): the step's prompt with its references filled in. */
  | { source: 'workflow'; workflow_id: string; name: string; step_id: string };

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}
export const ZERO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };

export interface StoredToolCall {
  id: string;
  /** The tool the call names, or null when the model named a tool it was not offered. */
  tool_id: string | null;
  /** The function name the model used. */
  name: string;
  arguments: string;
}

export interface ConversationServiceOptions {
  store: Store;
  events: EventLog;
  now?: () => number;
  maxPendingMessages?: number;
  /** A turn was queued (the runner picks it up). */
  onQueued?: () => void;
}

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

export class ConversationService {
  readonly store: Store;
  readonly events: EventLog;
  private readonly now: () => number;
  private readonly maxPending: number;
  onQueued: () => void;

  constructor(o: ConversationServiceOptions) {
    this.store = o.store;
    this.events = o.events;
    this.now = o.now ?? Date.now;
    this.maxPending = o.maxPendingMessages ?? MAX_PENDING_MESSAGES_DEFAULT;
    this.onQueued = o.onQueued ?? (() => undefined);
  }

  /** A new conversation of an operator client. */
  async create(title: string | null, createdBy: string, tenant = 'default'): Promise<ConversationRow> {
    const now = this.now();
    const row: ConversationRow = { id: newId('conv'), channel: OPERATOR_CHANNEL, account: createdBy, thread: newId('conv'), title, created_by: createdBy, created_at: now, updated_at: now, tenant_id: tenant };
    await this.store.commit(() => this.store.conversations.insertConversation(row));
    return row;
  }

  /** The conversation; not_found when it does not exist or (with `tenant`) belongs to another tenant. */
  get(id: string, tenant?: string): ConversationRow {
    const c = this.store.conversations.conversation(id);
    if (!c || (tenant !== undefined && (c.tenant_id ?? 'default') !== tenant)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no conversation ${id}`, { conversation_id: id });
    return c;
  }

  /** Inside a unit: the conversation of a channel chat (and thread), created on first use. */
  conversationForChat(channel: string, chatId: string, threadId: string | null, title: string | null): ConversationRow {
    const thread = threadId ?? '';
    const found = this.store.conversations.conversationByKey(channel, chatId, thread);
    if (found) return found;
    const now = this.now();
    const row: ConversationRow = { id: newId('conv'), channel, account: chatId, thread, title, created_by: `channel:${channel}`, created_at: now, updated_at: now };
    this.store.conversations.insertConversation(row);
    return row;
  }

  /** An operator's message (idempotent per conversation with a key). */
  async send(conversationId: string, text: string, tokenId: string, idempotencyKey?: string, tenant?: string): Promise<{ message: MessageRow; turn_id: string; existing: boolean }> {
    return this.events.commit((emit) => {
      const conv = this.get(conversationId, tenant);
      if (idempotencyKey !== undefined) {
        const prior = this.store.conversations.messageByKey(conv.id, idempotencyKey);
        if (prior) {
          if (prior.content !== text) throw new TyrumError('TYRUM_ERR_CONFLICT', `idempotency key ${idempotencyKey} was used in this conversation for another text`, { conversation_id: conv.id });
          const repo = this.store.conversations;
          // The turn that took it, or the one that will (queued, else the one running now).
          const turnId = prior.turn_id ?? repo.turnIn(conv.id, 'queued')?.id ?? repo.turnIn(conv.id, 'running')?.id ?? repo.turns(conv.id, 1)[0]!.id;
          return { message: prior, turn_id: turnId, existing: true };
        }
      }
      const prov: Provenance = { source: 'operator', token_id: tokenId, ...(idempotencyKey !== undefined ? { idempotency_key: idempotencyKey } : {}) };
      const r = this.accept(conv, text, prov, emit);
      return { ...r, existing: false };
    });
  }

  /**
   * Inside a unit: stores a user message and makes sure a turn is queued to take it. Throws
   * TYRUM_ERR_CONVERSATION_QUEUE_FULL when the conversation already holds its maximum of
   * waiting messages.
   */
  accept(conv: ConversationRow, text: string, provenance: Provenance, emit: Emit): { message: MessageRow; turn_id: string } {
    const repo = this.store.conversations;
    if (repo.waitingCount(conv.id) >= this.maxPending) {
      throw new TyrumError('TYRUM_ERR_CONVERSATION_QUEUE_FULL', `conversation ${conv.id} already has ${this.maxPending} messages waiting for a turn; send again after the agent answers`, { conversation_id: conv.id, max_pending_messages: this.maxPending });
    }
    const now = this.now();
    const msg: Omit<MessageRow, 'seq'> = {
      id: newId('msg'),
      conversation_id: conv.id,
      role: 'user',
      content: text,
      tool_calls: null,
      tool_call_id: null,
      run_id: null,
      turn_id: null,
      provenance: JSON.stringify(provenance),
      usage: null,
      created_at: now,
    };
    const seq = repo.insertMessage(msg);
    repo.touchConversation(conv.id, now);
    let turn = repo.turnIn(conv.id, 'queued');
    if (!turn) {
      turn = { id: newId('turn'), conversation_id: conv.id, state: 'queued', waiting: null, steps: 0, usage: JSON.stringify(ZERO_USAGE), error: null, owner: null, created_at: now, started_at: null, finished_at: null, lease_expires_at: null, fencing_token: 0 };
      repo.insertTurn(turn);
    }
    const message = { ...msg, seq };
    emit('message.created', messageEvent(message));
    this.store.afterCommit(() => this.onQueued());
    return { message, turn_id: turn.id };
  }

  /** Most recently active first; only `tenant`'s with a tenant. */
  list(limit: number, channel?: string, before?: number, tenant?: string): ConversationRow[] {
    return this.store.conversations.conversations(limit, channel, before, tenant);
  }
}

/** The message.created payload. */
export function messageEvent(m: MessageRow): Record<string, unknown> {
  return { conversation_id: m.conversation_id, message_id: m.id, seq: m.seq, role: m.role, turn_id: m.turn_id, content: m.content, tool_call_id: m.tool_call_id, run_id: m.run_id };
}

/** The turn.* payload. */
export function turnEvent(t: TurnRow): Record<string, unknown> {
  const err = t.error === null ? null : (JSON.parse(t.error) as { code?: string });
  return { conversation_id: t.conversation_id, turn_id: t.id, state: t.state, steps: t.steps, usage: JSON.parse(t.usage) as Usage, error_code: err?.code ?? null };
}

export function conversationInfo(c: ConversationRow): Record<string, unknown> {
  return { conversation_id: c.id, channel: c.channel, account: c.account, thread: c.thread === '' || c.channel === OPERATOR_CHANNEL ? null : c.thread, title: c.title, created_by: c.created_by, created_at: iso(c.created_at), updated_at: iso(c.updated_at) };
}

export function messageInfo(m: MessageRow): Record<string, unknown> {
  const calls = m.tool_calls === null ? null : (JSON.parse(m.tool_calls) as StoredToolCall[]).map((c) => ({ id: c.id, tool_id: c.tool_id, arguments: c.arguments }));
  return {
    message_id: m.id,
    seq: m.seq,
    role: m.role,
    content: m.content,
    tool_calls: calls,
    tool_call_id: m.tool_call_id,
    run_id: m.run_id,
    turn_id: m.turn_id,
    provenance: JSON.parse(m.provenance) as Record<string, unknown>,
    usage: m.usage === null ? null : (JSON.parse(m.usage) as Usage),
    created_at: iso(m.created_at),
  };
}

export function turnInfo(t: TurnRow): Record<string, unknown> {
  return {
    turn_id: t.id,
    state: t.state,
    waiting: t.waiting,
    steps: t.steps,
    usage: JSON.parse(t.usage) as Usage,
    error: t.error === null ? null : (JSON.parse(t.error) as Record<string, unknown>),
    created_at: iso(t.created_at),
    started_at: iso(t.started_at),
    finished_at: iso(t.finished_at),
  };
}

export function deliveryInfo(d: DeliveryRow): Record<string, unknown> {
  return {
    delivery_id: d.id,
    message_id: d.message_id,
    state: d.state,
    parts_sent: d.parts_sent,
    attempts: d.attempts,
    receipts: JSON.parse(d.receipts) as string[],
    last_error: d.last_error,
    created_at: iso(d.created_at),
    finished_at: iso(d.finished_at),
  };
}
