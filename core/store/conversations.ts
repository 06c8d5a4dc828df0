/**
 * Persistence of conversations, messages, agent turns, the model backend setting, channel
 * instances, their senders, inbound dedupe and the delivery outbox (migration 9). Rows only: the
 * state machines, events and audit belong to core/conversations and core/channels.
 */
import { leaseClock, prepared, type SqlDb } from './statements.js';
import { TyrumError } from '../errors/index.js';

export interface BackendRow {
  name: string;
  kind: 'openai-compatible';
  base_url: string;
  model: string;
  api_key_secret: string | null;
  system_prompt: string | null;
  /** JSON array of tool-id globs. */
  tools: string;
  max_steps: number;
  timeout_ms: number;
  max_retries: number;
  updated_at: number;
}

export type DmPolicy = 'pairing' | 'allowlist' | 'open';

export interface ChannelInstanceRow {
  id: string;
  plugin_id: string;
  channel: string;
  name: string;
  api_base: string;
  credential_secret: string | null;
  verify_secret: string;
  dm_policy: DmPolicy;
  created_at: number;
  updated_at: number;
}

export type SenderState = 'allowed' | 'pending' | 'denied';

export interface SenderRow {
  instance_id: string;
  sender_id: string;
  state: SenderState;
  name: string | null;
  code: string | null;
  chat_id: string | null;
  code_expires_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface ConversationRow {
  id: string;
  channel: string;
  account: string;
  thread: string;
  title: string | null;
  created_by: string;
  created_at: number;
  updated_at: number;
  /** The tenant that owns it, its messages and turns (docs/tenancy.md). Always set on a read row; 'default' when inserted without. */
  tenant_id?: string;
}

export type MessageRole = 'user' | 'assistant' | 'tool' | 'notice';

export interface MessageRow {
  id: string;
  conversation_id: string;
  seq: number;
  role: MessageRole;
  content: string | null;
  tool_calls: string | null;
  tool_call_id: string | null;
  run_id: string | null;
  turn_id: string | null;
  provenance: string;
  usage: string | null;
  created_at: number;
}

export type TurnState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface TurnRow {
  id: string;
  conversation_id: string;
  state: TurnState;
  waiting: string | null;
  steps: number;
  usage: string;
  error: string | null;
  owner: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  /** When the lease of `owner` on a running turn ends (migration 20); null: expired. */
  lease_expires_at: number | null;
  /** Bumped by every claim or take-over; later writes of the turn match it (TurnFence). */
  fencing_token: number;
}

/** A turn as inserted (queued, no lease yet). */
export type NewTurnRow = Omit<TurnRow, 'lease_expires_at' | 'fencing_token'>;

/** The lease a turn's write is made under: it matches only while the turn is still ours. */
export interface TurnFence {
  owner: string;
  token: number;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface DeliveryRow {
  id: string;
  instance_id: string;
  conversation_id: string;
  message_id: string;
  chat_id: string;
  thread_id: string | null;
  text: string;
  state: DeliveryState;
  parts_sent: number;
  receipts: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  /** The worker sending it now (migration 20): a pending delivery with an unexpired claim is being sent. */
  claim_owner: string | null;
  claim_expires_at: number | null;
  /** Bumped by every claim; results are written only while owner and token still match. */
  claim_token: number;
}

/** A delivery as queued (no claim yet). */
export type NewDeliveryRow = Omit<DeliveryRow, 'claim_owner' | 'claim_expires_at' | 'claim_token'>;

/** The claim a delivery's write is made under. */
export interface DeliveryClaim {
  owner: string;
  token: number;
}

function setClause(changes: Record<string, unknown>): string {
  return Object.keys(changes)
    .map((k) => `${k} = @${k}`)
    .join(', ');
}

const TURN_CHANGEABLE = new Set(['state', 'waiting', 'steps', 'usage', 'error', 'owner', 'started_at', 'finished_at', 'lease_expires_at']);
const DELIVERY_CHANGEABLE = new Set(['state', 'parts_sent', 'receipts', 'attempts', 'next_attempt_at', 'last_error', 'updated_at', 'finished_at', 'claim_owner', 'claim_expires_at']);

export class ConversationRepo {
  /** SQL for "now" in turn leases and delivery claims (see `leaseClock`). */
  private readonly clock: string;

  constructor(private readonly db: SqlDb) {
    this.clock = leaseClock(db);
  }

  // --- the model backend ---

  backend(name: string): BackendRow | undefined {
    return prepared(this.db, 'SELECT * FROM agent_backends WHERE name = ?').get(name) as BackendRow | undefined;
  }

  putBackend(r: BackendRow): void {
    prepared(
      this.db,
      `INSERT INTO agent_backends (name, kind, base_url, model, api_key_secret, system_prompt, tools, max_steps, timeout_ms, max_retries, updated_at)
       VALUES (@name, @kind, @base_url, @model, @api_key_secret, @system_prompt, @tools, @max_steps, @timeout_ms, @max_retries, @updated_at)
       ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url, model = excluded.model, api_key_secret = excluded.api_key_secret,
         system_prompt = excluded.system_prompt, tools = excluded.tools, max_steps = excluded.max_steps, timeout_ms = excluded.timeout_ms,
         max_retries = excluded.max_retries, updated_at = excluded.updated_at`,
    ).run(r);
  }

  // --- channel instances and senders ---

  insertInstance(r: ChannelInstanceRow): void {
    prepared(
      this.db,
      `INSERT INTO channel_instances (id, plugin_id, channel, name, api_base, credential_secret, verify_secret, dm_policy, created_at, updated_at)
       VALUES (@id, @plugin_id, @channel, @name, @api_base, @credential_secret, @verify_secret, @dm_policy, @created_at, @updated_at)`,
    ).run(r);
  }

  instance(id: string): ChannelInstanceRow | undefined {
    return prepared(this.db, 'SELECT * FROM channel_instances WHERE id = ?').get(id) as ChannelInstanceRow | undefined;
  }

  instanceByName(pluginId: string, name: string): ChannelInstanceRow | undefined {
    return prepared(this.db, 'SELECT * FROM channel_instances WHERE plugin_id = ? AND name = ?').get(pluginId, name) as ChannelInstanceRow | undefined;
  }

  instances(): ChannelInstanceRow[] {
    return prepared(this.db, 'SELECT * FROM channel_instances ORDER BY plugin_id, name').all() as ChannelInstanceRow[];
  }

  updateInstance(id: string, changes: Partial<Pick<ChannelInstanceRow, 'api_base' | 'credential_secret' | 'verify_secret' | 'dm_policy' | 'updated_at'>>): void {
    if (Object.keys(changes).length === 0) return;
    prepared(this.db, `UPDATE channel_instances SET ${setClause(changes)} WHERE id = @id`).run({ ...changes, id });
  }

  /** Removes the instance with its senders, dedupe records and pending deliveries (its conversations stay as history). */
  deleteInstance(id: string): boolean {
    return prepared(this.db, 'DELETE FROM channel_instances WHERE id = ?').run(id).changes === 1;
  }

  sender(instanceId: string, senderId: string): SenderRow | undefined {
    return prepared(this.db, 'SELECT * FROM channel_senders WHERE instance_id = ? AND sender_id = ?').get(instanceId, senderId) as SenderRow | undefined;
  }

  senderByCode(instanceId: string, code: string): SenderRow | undefined {
    return prepared(this.db, 'SELECT * FROM channel_senders WHERE instance_id = ? AND code = ?').get(instanceId, code) as SenderRow | undefined;
  }

  putSender(r: SenderRow): void {
    prepared(
      this.db,
      `INSERT INTO channel_senders (instance_id, sender_id, state, name, code, chat_id, code_expires_at, created_at, updated_at)
       VALUES (@instance_id, @sender_id, @state, @name, @code, @chat_id, @code_expires_at, @created_at, @updated_at)
       ON CONFLICT (instance_id, sender_id) DO UPDATE SET state = excluded.state, name = excluded.name, code = excluded.code, chat_id = excluded.chat_id,
         code_expires_at = excluded.code_expires_at, updated_at = excluded.updated_at`,
    ).run(r);
  }

  senders(instanceId: string): SenderRow[] {
    return prepared(this.db, 'SELECT * FROM channel_senders WHERE instance_id = ? ORDER BY state, created_at').all(instanceId) as SenderRow[];
  }

  pendingSenders(instanceId: string, now: number): number {
    return (prepared(this.db, "SELECT COUNT(*) AS n FROM channel_senders WHERE instance_id = ? AND state = 'pending' AND code_expires_at > ?").get(instanceId, now) as { n: number }).n;
  }

  deleteSender(instanceId: string, senderId: string): boolean {
    return prepared(this.db, 'DELETE FROM channel_senders WHERE instance_id = ? AND sender_id = ?').run(instanceId, senderId).changes === 1;
  }

  /** Records an inbound message id; false when it was seen before (a duplicate delivery). */
  claimInbound(instanceId: string, externalId: string, outcome: string, now: number): boolean {
    return prepared(this.db, 'INSERT INTO channel_inbound (instance_id, external_id, received_at, outcome) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING').run(instanceId, externalId, now, outcome).changes === 1;
  }

  setInboundOutcome(instanceId: string, externalId: string, outcome: string): void {
    prepared(this.db, 'UPDATE channel_inbound SET outcome = ? WHERE instance_id = ? AND external_id = ?').run(outcome, instanceId, externalId);
  }

  /** Deletes up to `limit` inbound dedupe records received before `before`; returns how many. */
  pruneInbound(before: number, limit: number): number {
    return prepared(this.db, 'DELETE FROM channel_inbound WHERE rowid IN (SELECT rowid FROM channel_inbound WHERE received_at < ? LIMIT ?)').run(before, limit).changes;
  }

  // --- conversations and messages ---

  insertConversation(r: ConversationRow): void {
    prepared(
      this.db,
      `INSERT INTO conversations (id, channel, account, thread, title, created_by, created_at, updated_at, tenant_id)
       VALUES (@id, @channel, @account, @thread, @title, @created_by, @created_at, @updated_at, @tenant_id)`,
    ).run({ ...r, tenant_id: r.tenant_id ?? 'default' });
  }

  conversation(id: string): ConversationRow | undefined {
    return prepared(this.db, 'SELECT * FROM conversations WHERE id = ?').get(id) as ConversationRow | undefined;
  }

  conversationByKey(channel: string, account: string, thread: string): ConversationRow | undefined {
    return prepared(this.db, 'SELECT * FROM conversations WHERE channel = ? AND account = ? AND thread = ?').get(channel, account, thread) as ConversationRow | undefined;
  }

  /** Most recently active first; `before` is an updated_at cursor (exclusive). */
  conversations(limit: number, channel?: string, before?: number, tenant?: string): ConversationRow[] {
    return prepared(
      this.db,
      `SELECT * FROM conversations WHERE (CAST(@channel AS TEXT) IS NULL OR channel = @channel) AND (CAST(@before AS BIGINT) IS NULL OR updated_at < @before)
         AND (CAST(@tenant AS TEXT) IS NULL OR tenant_id = @tenant) ORDER BY updated_at DESC, id DESC LIMIT @limit`,
    ).all({ channel: channel ?? null, before: before ?? null, tenant: tenant ?? null, limit }) as ConversationRow[];
  }

  touchConversation(id: string, now: number): void {
    prepared(this.db, 'UPDATE conversations SET updated_at = ? WHERE id = ?').run(now, id);
  }

  /** Inserts a message at the conversation's next seq; returns that seq. */
  insertMessage(r: Omit<MessageRow, 'seq'>): number {
    const seq = (prepared(this.db, 'SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM messages WHERE conversation_id = ?').get(r.conversation_id) as { seq: number }).seq;
    prepared(
      this.db,
      `INSERT INTO messages (id, conversation_id, seq, role, content, tool_calls, tool_call_id, run_id, turn_id, provenance, usage, created_at)
       VALUES (@id, @conversation_id, @seq, @role, @content, @tool_calls, @tool_call_id, @run_id, @turn_id, @provenance, @usage, @created_at)`,
    ).run({ ...r, seq });
    return seq;
  }

  message(id: string): MessageRow | undefined {
    return prepared(this.db, 'SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
  }

  /** An operator message sent with this idempotency key in the conversation, if any. */
  messageByKey(conversationId: string, key: string): MessageRow | undefined {
    return prepared(this.db, {
      sqlite: "SELECT * FROM messages WHERE conversation_id = ? AND role = 'user' AND json_extract(provenance, '$.idempotency_key') = ?",
      postgres: "SELECT * FROM messages WHERE conversation_id = ? AND role = 'user' AND CAST(provenance AS json) ->> 'idempotency_key' = ?",
    }).get(conversationId, key) as MessageRow | undefined;
  }

  /** The newest `limit` messages, oldest first. */
  lastMessages(conversationId: string, limit: number): MessageRow[] {
    return (prepared(this.db, 'SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?').all(conversationId, limit) as MessageRow[]).reverse();
  }

  /** The newest `limit` messages with a seq below `seq`, oldest first. */
  lastMessagesBefore(conversationId: string, seq: number, limit: number): MessageRow[] {
    return (prepared(this.db, 'SELECT * FROM messages WHERE conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?').all(conversationId, seq, limit) as MessageRow[]).reverse();
  }

  messagesOfTurn(turnId: string): MessageRow[] {
    return prepared(this.db, 'SELECT * FROM messages WHERE turn_id = ? ORDER BY seq').all(turnId) as MessageRow[];
  }

  /** User messages no turn has taken yet. */
  waitingCount(conversationId: string): number {
    return (prepared(this.db, "SELECT COUNT(*) AS n FROM messages WHERE conversation_id = ? AND role = 'user' AND turn_id IS NULL").get(conversationId) as { n: number }).n;
  }

  /** The oldest user message no turn has taken yet. */
  firstWaiting(conversationId: string): MessageRow | undefined {
    return prepared(this.db, "SELECT * FROM messages WHERE conversation_id = ? AND role = 'user' AND turn_id IS NULL ORDER BY seq LIMIT 1").get(conversationId) as MessageRow | undefined;
  }

  /** Gives every waiting user message to `turnId`; returns how many. */
  takeWaiting(conversationId: string, turnId: string): number {
    return prepared(this.db, "UPDATE messages SET turn_id = ? WHERE conversation_id = ? AND role = 'user' AND turn_id IS NULL").run(turnId, conversationId).changes;
  }

  // --- turns ---

  insertTurn(r: NewTurnRow): void {
    prepared(
      this.db,
      `INSERT INTO turns (id, conversation_id, state, waiting, steps, usage, error, owner, created_at, started_at, finished_at)
       VALUES (@id, @conversation_id, @state, @waiting, @steps, @usage, @error, @owner, @created_at, @started_at, @finished_at)`,
    ).run(r);
  }

  turn(id: string): TurnRow | undefined {
    return prepared(this.db, 'SELECT * FROM turns WHERE id = ?').get(id) as TurnRow | undefined;
  }

  turnIn(conversationId: string, state: 'queued' | 'running'): TurnRow | undefined {
    return prepared(this.db, 'SELECT * FROM turns WHERE conversation_id = ? AND state = ?').get(conversationId, state) as TurnRow | undefined;
  }

  /** Queued and running turns, oldest first. */
  activeTurns(): TurnRow[] {
    return prepared(this.db, "SELECT * FROM turns WHERE state IN ('queued', 'running') ORDER BY created_at, id").all() as TurnRow[];
  }

  turns(conversationId: string, limit: number): TurnRow[] {
    return prepared(this.db, 'SELECT * FROM turns WHERE conversation_id = ? ORDER BY created_at DESC, id DESC LIMIT ?').all(conversationId, limit) as TurnRow[];
  }

  /**
   * A conditional update: applies only while the turn is in `from` (and, with `fence`, only while
   * its lease is still that owner's and token's); true when it did.
   */
  updateTurn(id: string, from: readonly TurnState[], changes: Partial<TurnRow>, fence?: TurnFence): boolean {
    for (const k of Object.keys(changes)) if (!TURN_CHANGEABLE.has(k)) throw new TyrumError('TYRUM_ERR_INTERNAL', `turn column ${k} is not changeable`);
    const states = from.map((_, i) => `@from${i}`).join(', ');
    const params: Record<string, unknown> = { ...changes, id };
    from.forEach((s, i) => (params[`from${i}`] = s));
    let guard = '';
    if (fence) {
      guard = ' AND owner = @w_owner AND fencing_token = @w_token';
      params.w_owner = fence.owner;
      params.w_token = fence.token;
    }
    return prepared(this.db, `UPDATE turns SET ${setClause(changes)} WHERE id = @id AND state IN (${states})${guard}`).run(params).changes === 1;
  }

  /**
   * queued → running under a new lease of `owner` (token bumped); undefined when the turn is no
   * longer queued (another runner claimed it).
   */
  claimTurn(id: string, owner: string, now: number, leaseMs: number): TurnRow | undefined {
    return prepared(
      this.db,
      `UPDATE turns SET state = 'running', owner = @owner, started_at = @now, lease_expires_at = ${this.clock} + @lease_ms, fencing_token = fencing_token + 1
       WHERE id = @id AND state = 'queued' RETURNING *`,
    ).get({ id, owner, now, lease_ms: leaseMs }) as TurnRow | undefined;
  }

  /**
   * Takes over a running turn whose lease expired (its runner died or stopped renewing): new
   * owner and expiry, token bumped so the old runner's later writes stop matching. Undefined
   * while the lease is alive, or when the turn is no longer running.
   */
  takeOverTurn(id: string, owner: string, now: number, leaseMs: number): TurnRow | undefined {
    return prepared(
      this.db,
      `UPDATE turns SET owner = @owner, lease_expires_at = ${this.clock} + @lease_ms, fencing_token = fencing_token + 1
       WHERE id = @id AND state = 'running' AND (lease_expires_at IS NULL OR lease_expires_at <= ${this.clock}) RETURNING *`,
    ).get({ id, owner, now, lease_ms: leaseMs }) as TurnRow | undefined;
  }

  /** Extends a turn's lease we still hold to `leaseMs` from now; false when it was taken over or the turn ended. */
  renewTurnLease(id: string, fence: TurnFence, now: number, leaseMs: number): boolean {
    return (
      prepared(this.db, `UPDATE turns SET lease_expires_at = ${this.clock} + @lease_ms WHERE id = @id AND state = 'running' AND owner = @owner AND fencing_token = @token`).run({
        id,
        owner: fence.owner,
        token: fence.token,
        now,
        lease_ms: leaseMs,
      }).changes === 1
    );
  }

  /** True while a lease expiring at `expiresAt` (a turn's, a delivery's claim) is alive by `leaseClock`. */
  leaseAlive(expiresAt: number | null, now: number): boolean {
    if (expiresAt === null) return false;
    if (this.db.dialect === 'sqlite') return expiresAt > now;
    return (prepared(this.db, `SELECT CASE WHEN @at > ${this.clock} THEN 1 ELSE 0 END AS alive`).get({ at: expiresAt }) as { alive: number }).alive === 1;
  }

  /**
   * Makes the leases of running turns claimable now: those of `owner`, or every one when `owner`
   * is null. Only for a runner starting up that holds no lease yet (any lease in its name was left
   * by a previous incarnation; null: the store has no other gateway, SQLite's single writer).
   */
  expireTurnLeases(owner: string | null, now: number): number {
    return prepared(this.db, `UPDATE turns SET lease_expires_at = ${this.clock} WHERE state = 'running' AND (CAST(@owner AS TEXT) IS NULL OR owner = @owner) AND (lease_expires_at IS NULL OR lease_expires_at > ${this.clock})`).run({ owner, now }).changes;
  }

  // --- deliveries ---

  insertDelivery(r: NewDeliveryRow): void {
    prepared(
      this.db,
      `INSERT INTO deliveries (id, instance_id, conversation_id, message_id, chat_id, thread_id, text, state, parts_sent, receipts, attempts, next_attempt_at, last_error, created_at, updated_at, finished_at)
       VALUES (@id, @instance_id, @conversation_id, @message_id, @chat_id, @thread_id, @text, @state, @parts_sent, @receipts, @attempts, @next_attempt_at, @last_error, @created_at, @updated_at, @finished_at)`,
    ).run(r);
  }

  delivery(id: string): DeliveryRow | undefined {
    return prepared(this.db, 'SELECT * FROM deliveries WHERE id = ?').get(id) as DeliveryRow | undefined;
  }

  /** Pending deliveries due now and not claimed (or whose claim expired), oldest first. */
  dueDeliveries(now: number, limit: number): DeliveryRow[] {
    return prepared(
      this.db,
      `SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= @now AND (claim_owner IS NULL OR claim_expires_at <= ${this.clock}) ORDER BY next_attempt_at, id LIMIT @limit`,
    ).all({ now, limit }) as DeliveryRow[];
  }

  /**
   * Claims up to `limit` due deliveries for `owner` for `leaseMs` (pending, claimed:
   * "sending"), token bumped; returns the claimed rows. A row another worker claimed is not
   * returned; one whose claim expired (its worker died mid-send) is taken over, so a delivery is
   * sent at least once. On PostgreSQL the candidates are picked FOR UPDATE SKIP LOCKED, so two
   * workers claiming at once each skip the rows the other's open transaction holds.
   */
  claimDeliveries(owner: string, now: number, leaseMs: number, limit: number): DeliveryRow[] {
    // The backoff (`next_attempt_at`) is the caller's clock (scheduling); the claim is `leaseClock`'s.
    const due = `state = 'pending' AND next_attempt_at <= @now AND (claim_owner IS NULL OR claim_expires_at <= ${this.clock})`;
    const set = `claim_owner = @owner, claim_expires_at = ${this.clock} + @lease_ms, claim_token = claim_token + 1`;
    return prepared(this.db, {
      sqlite: `UPDATE deliveries SET ${set} WHERE id IN (SELECT id FROM deliveries WHERE ${due} ORDER BY next_attempt_at, id LIMIT @limit) AND ${due} RETURNING *`,
      postgres: `UPDATE deliveries SET ${set} WHERE id IN (SELECT id FROM deliveries WHERE ${due} ORDER BY next_attempt_at, id LIMIT @limit FOR UPDATE SKIP LOCKED) AND ${due} RETURNING *`,
    })
      .all({ owner, now, lease_ms: leaseMs, limit })
      .sort((x, y) => (x as DeliveryRow).next_attempt_at - (y as DeliveryRow).next_attempt_at || ((x as DeliveryRow).id < (y as DeliveryRow).id ? -1 : 1)) as DeliveryRow[];
  }

  /** Extends a claim we still hold to `leaseMs` from now; false when it was taken over or the delivery ended. */
  renewDeliveryClaim(id: string, claim: DeliveryClaim, now: number, leaseMs: number): boolean {
    return (
      prepared(this.db, `UPDATE deliveries SET claim_expires_at = ${this.clock} + @lease_ms WHERE id = @id AND state = 'pending' AND claim_owner = @owner AND claim_token = @token`).run({
        id,
        owner: claim.owner,
        token: claim.token,
        now,
        lease_ms: leaseMs,
      }).changes === 1
    );
  }

  /** Makes claims claimable now: those of `owner`, or every one when null (as expireTurnLeases). */
  expireDeliveryClaims(owner: string | null, now: number): number {
    return prepared(this.db, `UPDATE deliveries SET claim_expires_at = ${this.clock} WHERE state = 'pending' AND claim_owner IS NOT NULL AND (CAST(@owner AS TEXT) IS NULL OR claim_owner = @owner) AND claim_expires_at > ${this.clock}`).run({ owner, now }).changes;
  }

  /**
   * When the next pending delivery is due (or its claim expires), or null, on the caller's clock
   * (`now`): a claim's expiry is on the lease clock (PostgreSQL: the server's, see leaseClock), so
   * it is taken relative to that clock's now and added to the caller's, and a replica whose clock
   * is behind does not wait the skew out before taking over a dead replica's claim.
   */
  nextDeliveryAt(now: number = Date.now()): number | null {
    const claimEnds = `(claim_expires_at - ${this.clock} + @now)`;
    return (
      prepared(this.db, `SELECT MIN(CASE WHEN claim_owner IS NOT NULL AND ${claimEnds} > next_attempt_at THEN ${claimEnds} ELSE next_attempt_at END) AS t FROM deliveries WHERE state = 'pending'`).get({ now }) as {
        t: number | null;
      }
    ).t;
  }

  deliveries(conversationId: string, limit: number): DeliveryRow[] {
    return prepared(this.db, 'SELECT * FROM deliveries WHERE conversation_id = ? ORDER BY created_at DESC LIMIT ?').all(conversationId, limit) as DeliveryRow[];
  }

  /**
   * Updates a delivery; with `claim`, only while it is pending under that claim (owner and token):
   * true when it did (without a claim, true when the row exists).
   */
  updateDelivery(id: string, changes: Partial<DeliveryRow>, claim?: DeliveryClaim): boolean {
    for (const k of Object.keys(changes)) if (!DELIVERY_CHANGEABLE.has(k)) throw new TyrumError('TYRUM_ERR_INTERNAL', `delivery column ${k} is not changeable`);
    const params: Record<string, unknown> = { ...changes, id };
    let guard = '';
    if (claim) {
      guard = " AND state = 'pending' AND claim_owner = @w_owner AND claim_token = @w_token";
      params.w_owner = claim.owner;
      params.w_token = claim.token;
    }
    return prepared(this.db, `UPDATE deliveries SET ${setClause(changes)} WHERE id = @id${guard}`).run(params).changes === 1;
  }
}
