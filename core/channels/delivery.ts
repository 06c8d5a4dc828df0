/**
 * The delivery outbox: replies to channel chats, sent by the host with retries.
 *
 * A delivery is queued in the commit that stores the reply (a turn's final answer, a failure
 * notice, a pairing code). The worker formats it with the plugin's outbound export (in the
 * sandbox), checks every request (core/channels/abi.ts: the conversation's chat and thread at the
 * manifest's pointers, a path under the API base), injects the bot credential, signs it when the
 * channel says so, and sends the parts in order. Each part sent is committed (`parts_sent`), so a
 * retry or a restart never sends a delivered part again; the one window left is a crash between
 * the platform's answer and that commit, where the part may be sent twice (the platforms have no
 * idempotency key for messages).
 *
 * 429, 5xx and network errors are retried with exponential backoff (honouring Retry-After) up to
 * `maxAttempts`; another 4xx, `ok: false` at the channel's ok pointer, or a refused request ends
 * the delivery `failed`. Either end is a `delivery.receipt` event and an audit entry.
 *
 * Several gateways on one database: a worker sends only what it claimed. The claim is one
 * conditional update of due, unclaimed pending deliveries (on PostgreSQL picked FOR UPDATE SKIP
 * LOCKED): owner, expiry (`claimMs`, renewed before every part is sent) and a token bumped by every
 * claim. Every later write (parts sent, the retry's backoff, the end) is made only under that claim
 * (owner and token), and the retry and the end release it. A claim whose worker died is taken over
 * once it expired: delivery stays at least once, since a part the platform took just before the
 * worker died, or whose claim expired mid-request, is sent again by the next owner. At start a worker
 * makes claimable the claims a previous incarnation left: on SQLite (one gateway per database)
 * every claim, on PostgreSQL those in its own owner's name; the others expire.
 */
import { destinationAllows, urlOrigin } from '../secrets/index.js';
import type { ChannelContribution } from '../../schemas/index.js';
import type { ChannelInstanceRow, ConversationRow, DeliveryRow, MessageRow, Store } from '../store/index.js';
import type { EventLog } from '../execution/events.js';
import type { AuditLog } from '../audit/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { atPointer, checkOutboundResult, outboundHeaders, outboundUrl } from './abi.js';
import { signHmac } from './verify.js';
import { channelLabel, trimNewline } from './service.js';
import { newId, OPERATOR_CHANNEL } from '../conversations/service.js';
import { detached } from '../telemetry/context.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { DeliveryClaim } from '../store/index.js';

export const DELIVERY_MAX_ATTEMPTS_DEFAULT = 10;
export const DELIVERY_BACKOFF_BASE_MS = 1000;
export const DELIVERY_BACKOFF_MAX_MS = 5 * 60_000;
export const DELIVERY_REQUEST_TIMEOUT_MS = 30_000;
/** How long a claim lasts; renewed before each part is sent, so it covers one request and its commit. */
export const DELIVERY_CLAIM_MS_DEFAULT = 2 * 60_000;
const CLAIM_BATCH = 32;
const DEFAULT_TEXT_LIMIT = 4096;
/** Bytes of a platform's answer read (enough for any receipt). */
const MAX_ANSWER_BYTES = 256 * 1024;

export interface DelivererOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  contribution(pluginId: string, channelId: string): ChannelContribution | null;
  enabled(pluginId: string): boolean;
  callExport(pluginId: string, exportName: string, input: unknown): Promise<unknown>;
  reveal(name: string): Buffer;
  /** The origins a secret handle may be sent to. */
  destinations(name: string): string[];
  fetch?: typeof fetch;
  now?: () => number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  /** Who claims deliveries (default: a new id per process). */
  owner?: string;
  /** How long a claim lasts without renewal (default 2 min). */
  claimMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

/** The claim was taken over (it expired) or the delivery ended elsewhere: stop, write nothing. */
class ClaimLost extends Error {}

class Retryable extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | null,
  ) {
    super(message);
  }
}

function retryAfter(h: string | null): number | null {
  if (h === null) return null;
  if (/^[0-9]+$/.test(h.trim())) return Math.min(Number(h.trim()) * 1000, DELIVERY_BACKOFF_MAX_MS);
  const t = Date.parse(h);
  return Number.isNaN(t) ? null : Math.max(0, Math.min(t - Date.now(), DELIVERY_BACKOFF_MAX_MS));
}

export class Deliverer {
  private readonly o: DelivererOptions;
  private readonly now: () => number;
  private readonly inflight = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  private claiming = false;
  private again = false;
  readonly owner: string;
  private readonly claimMs: number;

  constructor(options: DelivererOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    this.owner = options.owner ?? `dlv-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.claimMs = options.claimMs ?? DELIVERY_CLAIM_MS_DEFAULT;
    if (!(this.claimMs > 0)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'delivery claimMs must be positive', { claim_ms: this.claimMs });
  }

  /** Inside a unit: queue the delivery of `message` to its conversation's chat (no-op for operator conversations). */
  queue(conv: ConversationRow, message: MessageRow): void {
    if (conv.channel === OPERATOR_CHANNEL || message.content === null || message.content === '') return;
    const [plugin, name] = conv.channel.split('/');
    const inst = plugin && name ? this.o.store.conversations.instanceByName(plugin, name) : undefined;
    if (!inst) return; // the channel was removed: the conversation is history
    const now = this.now();
    this.o.store.conversations.insertDelivery({
      id: newId('dlv'),
      instance_id: inst.id,
      conversation_id: conv.id,
      message_id: message.id,
      chat_id: conv.account,
      thread_id: conv.thread === '' ? null : conv.thread,
      text: message.content,
      state: 'pending',
      parts_sent: 0,
      receipts: '[]',
      attempts: 0,
      next_attempt_at: now,
      last_error: null,
      created_at: now,
      updated_at: now,
      finished_at: null,
    });
    this.o.store.afterCommit(() => this.kick());
  }

  start(): void {
    this.stopped = false;
    try {
      const store = this.o.store;
      // SQLite has one gateway per database: every claim was left by a previous incarnation.
      store.tx(() => store.conversations.expireDeliveryClaims(store.dialect === 'sqlite' ? null : this.owner, this.now()));
    } catch (e) {
      this.o.log?.('error', 'could not free the delivery claims of a previous incarnation', { err: e });
    }
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.running]);
  }

  /** Send what is due now; schedule the next wake-up. */
  kick(): void {
    // Deliveries and their timers are the gateway's, not the scope of whatever triggered the kick.
    detached(() => {
      try {
        this.kickNow();
      } catch (e) {
        // The store is unreachable (TYRUM_ERR_STORE_UNAVAILABLE on PostgreSQL): kicks run from
        // timers and commit callbacks, which must not throw; look again in a second.
        this.o.log?.('error', 'looking for due deliveries failed', { err: e });
        if (this.stopped) return;
        if (this.timer) clearTimeout(this.timer);
        this.timer = setTimeout(() => this.kick(), 1000);
        this.timer.unref();
      }
    });
  }

  private kickNow(): void {
    if (this.stopped) return;
    if (this.claiming) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const now = this.now();
    // A cheap read first; only when something is due is a claim written.
    if (this.inflight.size >= CLAIM_BATCH || this.o.store.conversations.dueDeliveries(now, 1).length === 0) {
      this.schedule(now);
      return;
    }
    this.claiming = true;
    this.o.store
      .commit(() => this.o.store.conversations.claimDeliveries(this.owner, now, this.claimMs, CLAIM_BATCH - this.inflight.size))
      .then(
        (claimed) => {
          this.claiming = false;
          for (const d of claimed) this.launch(d);
          if (this.again || claimed.length > 0) {
            this.again = false;
            this.kick();
          } else this.schedule(this.now());
        },
        (e: unknown) => {
          this.claiming = false;
          this.o.log?.('warn', 'could not claim deliveries', { err: e });
          this.schedule(this.now());
        },
      );
  }

  private launch(d: DeliveryRow): void {
    // Stopped while claiming: the claim is left to expire (or freed at the next start).
    if (this.stopped || this.inflight.has(d.id)) return;
    this.inflight.add(d.id);
    const p = this.deliver(d, { owner: this.owner, token: d.claim_token })
      .catch((e) => this.o.log?.('error', 'a delivery failed unexpectedly', { delivery_id: d.id, err: e }))
      .finally(() => {
        this.inflight.delete(d.id);
        this.running.delete(p);
        this.kick();
      });
    this.running.add(p);
  }

  /** The next wake-up: when the next delivery is due or a claim expires (at most 1 s while sending). */
  private schedule(now: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const next = this.o.store.conversations.nextDeliveryAt(now);
    if (next !== null && this.inflight.size === 0) {
      this.timer = setTimeout(() => this.kick(), Math.max(10, next - now));
      this.timer.unref();
    } else if (next !== null) {
      this.timer = setTimeout(() => this.kick(), Math.max(10, Math.min(next - now, 1000)));
      this.timer.unref();
    }
  }

  /** Commits `changes` only under `claim`; throws ClaimLost when it is no longer held. */
  private async underClaim(d: DeliveryRow, claim: DeliveryClaim, changes: Parameters<Store['conversations']['updateDelivery']>[1]): Promise<void> {
    if (!(await this.o.store.commit(() => this.o.store.conversations.updateDelivery(d.id, changes, claim)))) throw new ClaimLost(`delivery ${d.id} is no longer claimed by ${claim.owner}`);
  }

  private async deliver(d: DeliveryRow, claim: DeliveryClaim): Promise<void> {
    try {
      await this.attempt(d, claim);
    } catch (e) {
      if (!(e instanceof ClaimLost)) throw e;
      this.o.log?.('warn', 'delivery claim lost; left to its new owner', { delivery_id: d.id, owner: claim.owner, claim_token: claim.token });
    }
  }

  private async attempt(d: DeliveryRow, claim: DeliveryClaim): Promise<void> {
    const inst = this.o.store.conversations.instance(d.instance_id);
    if (!inst) return;
    const contribution = this.o.contribution(inst.plugin_id, inst.channel);
    try {
      if (!contribution || !this.o.enabled(inst.plugin_id)) throw new Retryable(`the plugin of channel ${channelLabel(inst)} is not enabled`, 60_000);
      const requests = checkOutboundResult(
        contribution,
        { text: d.text, chat_id: d.chat_id, thread_id: d.thread_id, text_limit: contribution.text_limit ?? DEFAULT_TEXT_LIMIT },
        await this.o.callExport(inst.plugin_id, contribution.outbound.export, { text: d.text, chat_id: d.chat_id, thread_id: d.thread_id, text_limit: contribution.text_limit ?? DEFAULT_TEXT_LIMIT }),
      );
      let sent = d.parts_sent;
      const receipts = JSON.parse(d.receipts) as string[];
      for (let i = sent; i < requests.length; i++) {
        // The claim is renewed before each part: it covers one request and its commit.
        if (!(await this.o.store.commit(() => this.o.store.conversations.renewDeliveryClaim(d.id, claim, this.now(), this.claimMs)))) throw new ClaimLost(`delivery ${d.id} is no longer claimed by ${claim.owner}`);
        const receipt = await this.send(inst, contribution, requests[i]!);
        if (receipt !== null) receipts.push(receipt);
        sent = i + 1;
        await this.underClaim(d, claim, { parts_sent: sent, receipts: JSON.stringify(receipts), updated_at: this.now() });
      }
      await this.end(d, claim, inst, 'delivered', receipts, d.attempts + 1, null);
    } catch (e) {
      if (e instanceof ClaimLost) throw e;
      const attempts = d.attempts + 1;
      if (e instanceof Retryable && attempts < (this.o.maxAttempts ?? DELIVERY_MAX_ATTEMPTS_DEFAULT)) {
        const base = this.o.backoffBaseMs ?? DELIVERY_BACKOFF_BASE_MS;
        const backoff = Math.min(DELIVERY_BACKOFF_MAX_MS, base * 2 ** (attempts - 1));
        const wait = e.retryAfterMs ?? Math.round(backoff / 2 + Math.random() * (backoff / 2));
        this.o.log?.('warn', 'delivery failed; will retry', { delivery_id: d.id, attempts, retry_in_ms: wait, reason: e.message });
        // The claim is released with the backoff: any worker may take the retry.
        await this.underClaim(d, claim, { attempts, next_attempt_at: this.now() + wait, last_error: e.message.slice(0, 500), updated_at: this.now(), claim_owner: null, claim_expires_at: null });
        return;
      }
      const err = e instanceof Retryable ? new TyrumError('TYRUM_ERR_CHANNEL_DELIVERY', `gave up after ${attempts} attempts: ${e.message}`) : isTyrumError(e) ? e : new TyrumError('TYRUM_ERR_CHANNEL_DELIVERY', String((e as Error)?.message ?? e));
      const latest = this.o.store.conversations.delivery(d.id);
      await this.end(d, claim, inst, 'failed', latest ? (JSON.parse(latest.receipts) as string[]) : [], attempts, err);
    }
  }

  /** Sends one request; the receipt (platform message id) or null. Throws Retryable or a TyrumError. */
  private async send(inst: ChannelInstanceRow, c: ChannelContribution, r: { method: string; path: string; headers: Record<string, string>; body: Record<string, unknown> }): Promise<string | null> {
    let credential: string | null = null;
    const url = outboundUrl(inst.api_base, r.path, null === inst.credential_secret ? null : '\u0000');
    const origin = urlOrigin(url);
    if (inst.credential_secret !== null && (r.path.includes('{{credential}}') || Object.values(r.headers).some((v) => v.includes('{{credential}}')))) {
      // The credential goes only to an origin its handle is bound to.
      if (origin === null || !this.o.destinations(inst.credential_secret).some((dest) => destinationAllows(dest, origin))) {
        throw new TyrumError('TYRUM_ERR_CHANNEL_DESTINATION', `secret ${inst.credential_secret} is not bound to ${url.origin}; bind it with tyrum secret set ${inst.credential_secret} --destinations ${url.origin}`);
      }
      credential = this.o.reveal(inst.credential_secret).toString('utf8');
    }
    const target = outboundUrl(inst.api_base, r.path, credential);
    const body = JSON.stringify(r.body);
    const headers: Record<string, string> = { 'content-type': 'application/json', ...outboundHeaders(r.headers, credential) };
    if (c.outbound.sign === 'hmac_sha256') {
      const secret = trimNewline(this.o.reveal(inst.verify_secret));
      Object.assign(headers, signHmac(secret, body, this.now()));
      secret.fill(0);
    }
    let res: Response;
    try {
      res = await (this.o.fetch ?? fetch)(target, { method: r.method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(DELIVERY_REQUEST_TIMEOUT_MS) });
    } catch (e) {
      // A timeout may come after the platform took the message: the retry may deliver it twice
      // (at least once; the platforms have no idempotency key for messages).
      const why = (e as Error).name === 'TimeoutError' ? 'timed out' : ((e as { cause?: { code?: string } }).cause?.code ?? 'network error');
      throw new Retryable(`the platform could not be reached: ${why}`, null);
    }
    // A platform (or a receiver) may echo the request: never keep the credential in an error.
    const raw = await readCapped(res);
    const text = credential === null || credential === '' ? raw : raw.split(credential).join('[REDACTED]').split(encodeURIComponent(credential)).join('[REDACTED]');
    if (res.status === 429 || res.status >= 500) throw new Retryable(`the platform answered ${res.status}`, retryAfter(res.headers.get('retry-after')));
    if (res.status < 200 || res.status > 299) throw new TyrumError('TYRUM_ERR_CHANNEL_DELIVERY', `the platform refused the reply: HTTP ${res.status} ${text.slice(0, 200)}`);
    let json: unknown = null;
    try {
      json = text === '' ? null : JSON.parse(text);
    } catch {
      json = null;
    }
    if (c.outbound.ok_pointer !== undefined && atPointer(json, c.outbound.ok_pointer) !== true) {
      throw new TyrumError('TYRUM_ERR_CHANNEL_DELIVERY', `the platform refused the reply: ${text.slice(0, 200)}`);
    }
    if (c.outbound.receipt_pointer === undefined) return null;
    const v = atPointer(json, c.outbound.receipt_pointer);
    return typeof v === 'string' || typeof v === 'number' ? String(v) : null;
  }

  private async end(d: DeliveryRow, claim: DeliveryClaim, inst: ChannelInstanceRow, state: 'delivered' | 'failed', receipts: string[], attempts: number, err: TyrumError | null): Promise<void> {
    const label = channelLabel(inst);
    await this.o.events.commit((emit) => {
      const now = this.now();
      const changes = { state, attempts, receipts: JSON.stringify(receipts), last_error: err ? err.message.slice(0, 500) : null, updated_at: now, finished_at: now, claim_owner: null, claim_expires_at: null };
      if (!this.o.store.conversations.updateDelivery(d.id, changes, claim)) throw new ClaimLost(`delivery ${d.id} is no longer claimed by ${claim.owner}`);
      emit('delivery.receipt', { delivery_id: d.id, conversation_id: d.conversation_id, message_id: d.message_id, channel: label, state, receipts, attempts, error_code: err?.code ?? null });
    });
    await this.o.audit.append(state === 'delivered' ? 'channel.delivered' : 'channel.delivery_failed', { kind: 'channel', channel: label }, {
      delivery_id: d.id,
      message_id: d.message_id,
      chat_id: d.chat_id,
      thread_id: d.thread_id,
      receipts,
      attempts,
      ...(err ? { code: err.code, message: err.message } : {}),
    });
    if (err) this.o.log?.('warn', 'a reply could not be delivered', { delivery_id: d.id, channel: label, code: err.code, message: err.message });
  }
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > MAX_ANSWER_BYTES) {
      await reader.cancel();
      break;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
