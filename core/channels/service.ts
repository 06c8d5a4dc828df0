/**
 * Channel instances and inbound webhooks. An instance is a configured bot of a channel plugin
 * (`tyrum channel add`); its webhook is `POST /channels/<plugin>/<instance>/webhook`.
 *
 * An inbound webhook is, in this order: matched to its instance; verified by the host with the
 * instance's verification secret (401 and nothing stored when it fails); parsed by the plugin in
 * its sandbox into normalised messages (checked, core/channels/abi.ts); then each message, in one
 * commit: deduplicated by (instance, external id), its sender checked, and either accepted into
 * the chat's conversation (queueing a turn), answered with a pairing code (an unknown sender in a
 * direct chat, when the instance's dm_policy is "pairing"), or ignored. Unknown senders never
 * start a turn.
 */
import { randomInt } from 'node:crypto';
import type { ChannelContribution } from '../../schemas/index.js';
import type { ChannelInstanceRow, ConversationRow, DmPolicy, MessageRow, SenderRow, Store } from '../store/index.js';
import type { EventLog, Emit } from '../execution/events.js';
import type { AuditLog } from '../audit/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { checkInboundResult, type InboundMessage } from './abi.js';
import { verifyWebhook } from './verify.js';
import { messageEvent, newId, type ConversationService } from '../conversations/service.js';

/** How long an inbound message id is remembered for dedupe. */
export const INBOUND_DEDUPE_MS = 14 * 24 * 3_600_000;
/** How long a pairing code stays valid. */
export const PAIRING_CODE_TTL_MS = 60 * 60 * 1000;
/** Unknown senders waiting with a live code per instance; more are ignored until the operator acts. */
export const MAX_PENDING_SENDERS = 50;
const NAME_RE = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;
/** Never shown to a plugin, whatever its manifest lists: signatures, secrets and credentials. */
const HIDDEN_HEADERS = new Set(['x-telegram-bot-api-secret-token', 'x-slack-signature', 'x-slack-request-timestamp', 'x-tyrum-signature', 'x-tyrum-timestamp', 'authorization', 'cookie', 'proxy-authorization']);
const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

export interface ChannelServiceOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  conversations: ConversationService;
  /** The contribution of an installed plugin's channel, or null (no such plugin or channel). */
  contribution(pluginId: string, channelId: string | null): ChannelContribution | null;
  /** Whether the plugin is enabled (its adapter can run). */
  enabled(pluginId: string): boolean;
  /** Calls an export of the enabled plugin (PluginHost.callChannel). */
  callExport(pluginId: string, exportName: string, input: unknown): Promise<unknown>;
  /** A secret handle's value (verification secrets only; never handed to a plugin). */
  reveal(name: string): Buffer;
  secretExists(name: string): boolean;
  /** Queue the delivery of a message to a channel chat (inside the unit). */
  queueDelivery(conversation: ConversationRow, message: MessageRow): void;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

export interface AddInstance {
  plugin: string;
  channel?: string;
  name: string;
  apiBase?: string;
  credentialSecret?: string | null;
  verifySecret: string;
  dmPolicy?: DmPolicy;
  allow?: string[];
}

export interface WebhookAnswer {
  status: number;
  body: unknown;
}

/** The channel label used in conversations and events: `<plugin>/<instance>`. */
export function channelLabel(i: Pick<ChannelInstanceRow, 'plugin_id' | 'name'>): string {
  return `${i.plugin_id}/${i.name}`;
}

/** A verification secret without a trailing line break (`echo "$S" | tyrum secret set ...` adds one). */
export function trimNewline(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && (b[end - 1] === 0x0a || b[end - 1] === 0x0d)) end--;
  return end === b.length ? b : b.subarray(0, end);
}

function pairingCode(): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += CODE_ALPHABET[randomInt(CODE_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

const isoOrNull = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/** A channel instance as `ChannelInfo` on the wire. */
export function channelInfo(r: ChannelInstanceRow, pluginEnabled: boolean): Record<string, unknown> {
  return {
    channel: channelLabel(r),
    plugin_id: r.plugin_id,
    channel_id: r.channel,
    api_base: r.api_base,
    dm_policy: r.dm_policy,
    verify_secret: r.verify_secret,
    credential_secret: r.credential_secret,
    webhook_path: `/channels/${r.plugin_id}/${r.name}/webhook`,
    plugin_enabled: pluginEnabled,
    created_at: new Date(r.created_at).toISOString(),
  };
}

/** A sender as `ChannelSenderInfo` on the wire; a pairing code only while it is valid. */
export function senderInfo(s: SenderRow, now: number): Record<string, unknown> {
  const live = s.state === 'pending' && (s.code_expires_at ?? 0) > now;
  return { sender_id: s.sender_id, state: s.state, name: s.name, code: live ? s.code : null, code_expires_at: live ? isoOrNull(s.code_expires_at) : null, updated_at: new Date(s.updated_at).toISOString() };
}

export class ChannelService {
  private readonly o: ChannelServiceOptions;
  private readonly now: () => number;
  private prunedAt = 0;

  constructor(options: ChannelServiceOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
  }

  /** Adds an instance (a bot) of a plugin's channel. Validates names, URL and secret handles. */
  add(input: AddInstance): ChannelInstanceRow {
    if (!NAME_RE.test(input.name)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `instance name ${JSON.stringify(input.name)} must be 2-32 lower-case letters, digits or dashes, starting with a letter`);
    const contribution = this.o.contribution(input.plugin, input.channel ?? null);
    if (!contribution) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `plugin ${input.plugin} is not installed or contributes no channel${input.channel ? ` named ${input.channel}` : ''} (tyrum plugin install ...)`);
    const apiBase = input.apiBase ?? contribution.outbound.api_base;
    let url: URL;
    try {
      url = new URL(apiBase);
    } catch {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `--api-base ${JSON.stringify(apiBase)} is not a URL`);
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', '--api-base must be an http(s) URL without credentials, query or fragment');
    }
    for (const s of [input.verifySecret, input.credentialSecret]) {
      if (s && !this.o.secretExists(s)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `secret handle ${s} does not exist (tyrum secret set ${s} ...)`);
    }
    if (this.o.store.conversations.instanceByName(input.plugin, input.name)) throw new TyrumError('TYRUM_ERR_CONFLICT', `channel ${input.plugin}/${input.name} already exists`);
    const now = this.now();
    const row: ChannelInstanceRow = {
      id: newId('chan'),
      plugin_id: input.plugin,
      channel: contribution.id,
      name: input.name,
      api_base: url.toString().replace(/\/$/, ''),
      credential_secret: input.credentialSecret ?? null,
      verify_secret: input.verifySecret,
      dm_policy: input.dmPolicy ?? 'pairing',
      created_at: now,
      updated_at: now,
    };
    this.o.store.tx(() => {
      this.o.store.conversations.insertInstance(row);
      for (const sender of input.allow ?? []) this.o.store.conversations.putSender(this.senderRow(row.id, sender, 'allowed', null, now));
    });
    return row;
  }

  instance(label: string): ChannelInstanceRow {
    const [plugin, name] = label.split('/');
    const i = plugin && name ? this.o.store.conversations.instanceByName(plugin, name) : undefined;
    if (!i) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no channel ${label} (tyrum channel list)`);
    return i;
  }

  list(): ChannelInstanceRow[] {
    return this.o.store.conversations.instances();
  }

  /** Whether the instance's plugin is enabled now (its webhook and replies work). */
  pluginEnabled(r: ChannelInstanceRow): boolean {
    return this.o.enabled(r.plugin_id);
  }

  remove(label: string): ChannelInstanceRow {
    const i = this.instance(label);
    this.o.store.tx(() => this.o.store.conversations.deleteInstance(i.id));
    return i;
  }

  senders(label: string): SenderRow[] {
    return this.o.store.conversations.senders(this.instance(label).id);
  }

  /**
   * An operator's decision on a sender, named by sender id or by the pairing code they were sent:
   * allow, deny, or remove (forget). Returns the row after the change.
   */
  async decideSender(label: string, who: string, action: 'allow' | 'deny' | 'remove', actor: Record<string, unknown>): Promise<SenderRow | null> {
    const inst = this.instance(label);
    const repo = this.o.store.conversations;
    const now = this.now();
    const result = await this.o.events.commit((emit) => {
      const byCode = /^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(who.toUpperCase()) ? repo.senderByCode(inst.id, who.toUpperCase()) : undefined;
      if (byCode && byCode.state === 'pending' && (byCode.code_expires_at ?? 0) <= now) throw new TyrumError('TYRUM_ERR_INVALID_STATE', `pairing code ${who} expired; the sender gets a new one when they write again`);
      const existing = byCode ?? repo.sender(inst.id, who);
      if (action === 'remove') {
        if (!existing) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no sender ${who} on ${label}`);
        repo.deleteSender(inst.id, existing.sender_id);
        emit('channel.sender_updated', { channel: label, sender_id: existing.sender_id, name: existing.name, state: 'removed', code: null });
        return null;
      }
      const senderId = existing?.sender_id ?? who;
      const row: SenderRow = { ...this.senderRow(inst.id, senderId, action === 'allow' ? 'allowed' : 'denied', existing?.name ?? null, now), created_at: existing?.created_at ?? now };
      repo.putSender(row);
      emit('channel.sender_updated', { channel: label, sender_id: senderId, name: row.name, state: row.state, code: null });
      return row;
    });
    await this.o.audit.append(`channel.sender_${action === 'allow' ? 'allowed' : action === 'deny' ? 'denied' : 'removed'}`, actor as { kind: string }, { channel: label, sender: who });
    return result;
  }

  private senderRow(instanceId: string, senderId: string, state: SenderRow['state'], name: string | null, now: number): SenderRow {
    return { instance_id: instanceId, sender_id: senderId, state, name, code: null, chat_id: null, code_expires_at: null, created_at: now, updated_at: now };
  }

  /** Handles one inbound webhook (the raw body exactly as received). */
  async webhook(pluginId: string, name: string, headers: Record<string, string | string[] | undefined>, body: Buffer): Promise<WebhookAnswer> {
    const inst = this.o.store.conversations.instanceByName(pluginId, name);
    if (!inst) return { status: 404, body: { error: { code: 'not_found', message: 'no such channel' } } };
    const label = channelLabel(inst);
    const contribution = this.o.contribution(pluginId, inst.channel);
    if (!contribution || !this.o.enabled(pluginId)) return { status: 503, body: { error: { code: 'invalid_state', message: `the plugin of channel ${label} is not enabled` } } };
    let secret: Buffer;
    try {
      secret = trimNewline(this.o.reveal(inst.verify_secret));
    } catch {
      this.o.log?.('error', 'channel verification secret missing', { channel: label, secret: inst.verify_secret });
      return { status: 503, body: { error: { code: 'invalid_state', message: 'the channel cannot verify webhooks (its secret handle is missing)' } } };
    }
    const verdict = verifyWebhook(contribution.verify.scheme, headers, body, secret, this.now(), contribution.verify.replay_window_s);
    secret.fill(0);
    if (!verdict.ok) {
      this.o.log?.('warn', 'channel webhook refused: not authentic', { channel: label, reason: verdict.reason });
      return { status: 401, body: { error: { code: 'unauthorized', message: 'webhook not verified' } } };
    }
    const shown: Record<string, string> = {};
    for (const h of contribution.inbound.headers ?? []) {
      if (HIDDEN_HEADERS.has(h)) continue;
      const v = headers[h];
      if (typeof v === 'string') shown[h] = v;
    }
    let parsed;
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
      parsed = checkInboundResult(await this.o.callExport(pluginId, contribution.inbound.export, { headers: shown, body: text, instance: inst.name }));
    } catch (e) {
      const err = isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_INVALID_REQUEST', 'the webhook body is not UTF-8 text');
      this.o.log?.('warn', 'channel adapter could not parse a webhook', { channel: label, code: err.code, message: err.message });
      await this.o.audit.append('channel.inbound_failed', { kind: 'channel', channel: label }, { code: err.code, message: err.message });
      // An authentic webhook the adapter deterministically cannot use (it reported an error, or its
      // answer breaks the ABI): 200, so the platform does not retry it forever (Telegram would hold
      // back later updates meanwhile); it is audited. A trap, timeout or crash may pass: 500, retried.
      const transient = err.code.startsWith('TYRUM_ERR_SANDBOX') && err.code !== 'TYRUM_ERR_SANDBOX_PLUGIN_ERROR';
      return transient ? { status: 500, body: { error: { code: err.wire, message: 'the channel adapter failed; retry later' } } } : { status: 200, body: { ok: false, ignored: err.code } };
    }
    this.prune();
    for (const m of parsed.messages) {
      try {
        await this.take(inst, label, m);
      } catch (e) {
        if (isTyrumError(e, 'TYRUM_ERR_CONVERSATION_QUEUE_FULL')) {
          this.o.log?.('warn', 'channel message dropped: the conversation queue is full', { channel: label, external_id: m.external_id });
          await this.busy(inst, label, m);
          continue;
        }
        throw e;
      }
    }
    return parsed.respond ?? { status: 200, body: { ok: true } };
  }

  /**
   * Forgets inbound ids older than {@link INBOUND_DEDUPE_MS}, at most hourly and in bounded batches
   * (platforms retry within minutes or hours; kept forever, the table would only grow).
   */
  private prune(): void {
    const now = this.now();
    if (now - this.prunedAt < 3_600_000) return;
    this.prunedAt = now;
    void this.o.store.commit(() => this.o.store.conversations.pruneInbound(now - INBOUND_DEDUPE_MS, 10_000)).catch((e) => this.o.log?.('warn', 'could not prune the inbound dedupe records', { err: e }));
  }

  /** One inbound message, in one commit. */
  private async take(inst: ChannelInstanceRow, label: string, m: InboundMessage): Promise<void> {
    const outcome = await this.o.events.commit((emit) => {
      const repo = this.o.store.conversations;
      const now = this.now();
      // A duplicate delivery of the same message: nothing more happens.
      if (!repo.claimInbound(inst.id, m.external_id, 'received', now)) return 'duplicate';
      const settle = (outcome: 'message' | 'pairing' | 'ignored') => {
        repo.setInboundOutcome(inst.id, m.external_id, outcome);
        return outcome;
      };
      const sender = repo.sender(inst.id, m.sender.id);
      const allowed = sender?.state === 'allowed' || (sender === undefined && m.chat.kind === 'direct' && inst.dm_policy === 'open');
      if (allowed) {
        const conv = this.o.conversations.conversationForChat(label, m.chat.id, m.thread_id, m.sender.name);
        this.o.conversations.accept(conv, m.text, { source: 'channel', channel: label, sender: m.sender, chat: m.chat, verified: true, external_id: m.external_id }, emit);
        return settle('message');
      }
      if (sender?.state === 'denied' || m.chat.kind !== 'direct' || inst.dm_policy !== 'pairing') return settle('ignored');
      return settle(this.pairing(inst, label, m, sender, now, emit));
    });
    if (outcome === 'pairing') await this.o.audit.append('channel.sender_pending', { kind: 'channel', channel: label }, { sender_id: m.sender.id, chat_id: m.chat.id });
  }

  /**
   * The sender learns that a message was not taken (the conversation's queue is full): one notice,
   * not one per dropped message, until a turn takes the waiting messages.
   */
  private async busy(inst: ChannelInstanceRow, label: string, m: InboundMessage): Promise<void> {
    await this.o.events.commit((emit) => {
      const repo = this.o.store.conversations;
      const conv = this.o.conversations.conversationForChat(label, m.chat.id, m.thread_id, m.sender.name);
      const last = repo.lastMessages(conv.id, 1)[0];
      if (last?.role === 'notice' && last.provenance.includes('"queue_full"')) return;
      const now = this.now();
      const notice: Omit<MessageRow, 'seq'> = {
        id: newId('msg'),
        conversation_id: conv.id,
        role: 'notice',
        content: 'I am still working through your earlier messages, so I did not take this one. Please send it again after my answer.',
        tool_calls: null,
        tool_call_id: null,
        run_id: null,
        turn_id: null,
        provenance: JSON.stringify({ source: 'gateway', reason: 'queue_full' }),
        usage: null,
        created_at: now,
      };
      const seq = repo.insertMessage(notice);
      emit('message.created', messageEvent({ ...notice, seq }));
      this.o.queueDelivery(conv, { ...notice, seq });
    });
  }

  /** Inside the unit: an unknown sender in a direct chat gets a pairing code (once per hour), no turn. */
  private pairing(inst: ChannelInstanceRow, label: string, m: InboundMessage, sender: SenderRow | undefined, now: number, emit: Emit): 'pairing' | 'ignored' {
    const repo = this.o.store.conversations;
    if (sender?.state === 'pending' && (sender.code_expires_at ?? 0) > now) return 'ignored'; // the code was sent already
    if (repo.pendingSenders(inst.id, now) >= MAX_PENDING_SENDERS) return 'ignored';
    let code = pairingCode();
    while (repo.senderByCode(inst.id, code)) code = pairingCode();
    const row: SenderRow = { instance_id: inst.id, sender_id: m.sender.id, state: 'pending', name: m.sender.name, code, chat_id: m.chat.id, code_expires_at: now + PAIRING_CODE_TTL_MS, created_at: sender?.created_at ?? now, updated_at: now };
    repo.putSender(row);
    emit('channel.sender_updated', { channel: label, sender_id: m.sender.id, name: m.sender.name, state: 'pending', code });
    const conv = this.o.conversations.conversationForChat(label, m.chat.id, m.thread_id, m.sender.name);
    const notice: Omit<MessageRow, 'seq'> = {
      id: newId('msg'),
      conversation_id: conv.id,
      role: 'notice',
      content: `I don't know you yet. Your pairing code is ${code}. Ask the operator of this agent to approve it (tyrum channel senders ${label} --approve ${code}); the code is valid for an hour.`,
      tool_calls: null,
      tool_call_id: null,
      run_id: null,
      turn_id: null,
      provenance: JSON.stringify({ source: 'gateway', reason: 'pairing' }),
      usage: null,
      created_at: now,
    };
    const seq = repo.insertMessage(notice);
    emit('message.created', messageEvent({ ...notice, seq }));
    this.o.queueDelivery(conv, { ...notice, seq });
    return 'pairing';
  }
}
