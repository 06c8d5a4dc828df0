/**
 * One peer connection's protocol state machine, independent of the socket library:
 * awaiting connect.init → awaiting connect.proof → ready. The gateway module adapts a `ws`
 * socket to `Transport`; tests drive it with an in-memory transport.
 *
 * Failures map to PROTOCOL.md close codes: 4002 handshake timeout, 4003 protocol violation,
 * 4005 unsupported revision, 4006 device_id/pubkey mismatch, 4007 invalid proof, 4001 token
 * not valid for this role, 1013 slow consumer.
 */
import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { OPERATIONS, RequestEnvelope, ResponseEnvelope, type OperationType, type Role, type Scope, type EventType } from '../../schemas/index.js';
import { TyrumError, isTyrumError, type WireErrorCode } from '../errors/index.js';
import { authorize, type AuthzDecision } from '../auth/authorize.js';
import { deriveDeviceId, parseDevicePubkey, verifyProof } from '../auth/identity.js';
import type { AuthenticatedToken } from '../auth/tokens.js';
import { decodeFrame, type CodecLimits } from './codec.js';
import { validate } from './validate.js';
import type { InflightLimiter } from './inflight.js';

export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_LARGE: 1009,
  SLOW_CONSUMER: 1013,
  UNAUTHORIZED: 4001,
  HANDSHAKE_TIMEOUT: 4002,
  PROTOCOL_VIOLATION: 4003,
  UNSUPPORTED_REV: 4005,
  DEVICE_MISMATCH: 4006,
  INVALID_PROOF: 4007,
} as const;

/** Protocol revisions this gateway speaks. */
export const SUPPORTED_PROTOCOL_REVS: readonly number[] = [1];

/** What a session needs from the socket. */
export interface Transport {
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Bytes accepted by send() but not yet written to the network. */
  bufferedAmount(): number;
}

export interface SessionLimits extends CodecLimits {
  maxQueuedBytes: number;
  handshakeTimeoutMs: number;
}

/** The authenticated, handshaken peer, as handlers see it. */
export interface Peer {
  connectionId: string;
  clientId: string;
  deviceId: string;
  role: Role;
  token: AuthenticatedToken;
  remoteAddress: string;
  /** The device key (base64url DER SPKI) the peer proved it holds. */
  pubkey: string;
  device: { label: string | null; platform: string | null; version: string | null; mode: string | null };
  /** What a node advertised in connect.init (always empty for clients). */
  capabilities: Array<{ id: string; version: string }>;
}

/** A node's answer to a request the gateway sent it. */
export type PeerAnswer = { ok: true; result: Record<string, unknown> } | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

/** Answers to requests this session never sent (or already gave up on) before it is closed 4003. */
export const MAX_STRAY_RESPONSES = 16;

export type OperationHandler = (payload: Record<string, unknown>, peer: Peer) => Promise<Record<string, unknown>>;

/** Services the session reports to; all must be non-throwing or their errors are contained. */
export interface SessionHooks {
  /** Runs an authorized, schema-valid operation. */
  handle(type: OperationType, payload: Record<string, unknown>, peer: Peer): Promise<Record<string, unknown>>;
  /**
   * Binds a single-use bootstrap token to the device presenting it (the first one claims it; any
   * other device is refused). Without this hook a single-use token is refused outright.
   */
  claimSingleUse?(tokenId: string, deviceId: string): 'claimed' | 'same' | 'refused';
  audit(type: string, actor: Record<string, unknown>, data: Record<string, unknown>): void;
  /** A handshake identity check failed (4001/4006/4007); the hook audits it, rate-limited per address. */
  authFailed(reason: string, closeCode: number): void;
  emit(type: EventType, payload: Record<string, unknown>): void;
  onDeviceSeen(device: { device_id: string; pubkey: string; role: Role; label: string | null; platform: string | null; version: string | null }): void;
  log(level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void;
  /** The handshake completed (nodes: the gateway's node registry takes the session). */
  onReady?(session: Session): void;
  /** A session that was ready closed, from either side (`peer`: who it was). */
  onClosed?(session: Session, peer: Peer): void;
  /** A node answered a request id this session has no pending request for. */
  strayResponse?(peer: Peer, requestId: string): void;
}

type State =
  | { kind: 'awaiting_init' }
  | { kind: 'awaiting_proof'; role: Role; deviceId: string; key: KeyObject; pubkey: string; rev: number; challenge: string; device: { label: string | null; platform: string | null; version: string | null; mode: string | null }; capabilities: Array<{ id: string; version: string }> }
  | { kind: 'ready'; peer: Peer }
  | { kind: 'closed' };

export class Session {
  readonly connectionId = randomUUID();
  private state: State = { kind: 'awaiting_init' };
  private readonly handshakeTimer: NodeJS.Timeout;
  /** Requests this session sent its node peer, by request id. */
  private readonly outbound = new Map<string, { type: string; resolve: (a: PeerAnswer) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }>();
  private strays = 0;

  /**
   * `inflight` is the gateway's per-token budget (`limits.max_inflight_requests`), shared by every
   * connection of the token and by /mcp.
   */
  constructor(
    private readonly transport: Transport,
    readonly token: AuthenticatedToken,
    readonly remoteAddress: string,
    private readonly limits: SessionLimits,
    private readonly hooks: SessionHooks,
    private readonly inflight: InflightLimiter,
  ) {
    this.handshakeTimer = setTimeout(() => this.close(CLOSE.HANDSHAKE_TIMEOUT, 'handshake timeout'), limits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  get isReady(): boolean {
    return this.state.kind === 'ready';
  }

  get isClosed(): boolean {
    return this.state.kind === 'closed';
  }

  /** The peer once the handshake completed. */
  get peer(): Peer | null {
    return this.state.kind === 'ready' ? this.state.peer : null;
  }

  /** Feed one inbound WebSocket message. */
  receive(data: Uint8Array, isBinary: boolean): void {
    if (this.state.kind === 'closed') return;
    const decoded = decodeFrame(data, isBinary, this.limits);
    if (!decoded.ok) {
      this.violation(decoded.reason);
      return;
    }
    const frame = decoded.value;
    // A node answers the requests the gateway sends it (pairing.credential, task.execute). From
    // anyone else, or before the handshake, a response frame is a protocol violation below.
    if (this.state.kind === 'ready' && this.state.peer.role === 'node' && isObject(frame) && 'ok' in frame) {
      this.onAnswer(frame, this.state.peer);
      return;
    }
    const issues = validate(RequestEnvelope, frame);
    if (issues.length > 0) {
      // A frame that is not even a request envelope: answer if we can tell which request it
      // was, otherwise it is a protocol violation. Before the handshake it always is one.
      const rid = isObject(frame) && typeof frame.request_id === 'string' && frame.request_id.length >= 1 && frame.request_id.length <= 128 ? frame.request_id : null;
      if (rid === null || this.state.kind !== 'ready') {
        this.violation(`malformed request envelope: ${issues[0]!.path} ${issues[0]!.message}`);
        return;
      }
      const type = typeof (frame as Record<string, unknown>).type === 'string' ? String((frame as Record<string, unknown>).type).slice(0, 64) : 'unknown';
      this.respondError(rid, type, 'invalid_request', 'malformed request envelope', { issues });
      return;
    }
    const req = frame as { request_id: string; type: string; payload: Record<string, unknown> };
    switch (this.state.kind) {
      case 'awaiting_init':
        this.onInit(req);
        return;
      case 'awaiting_proof':
        this.onProof(req);
        return;
      case 'ready':
        void this.onRequest(req, this.state.peer);
        return;
    }
  }

  /** Push an event (the caller has already checked the audience). */
  sendEvent(eventId: string, type: string, occurredAt: string, payload: Record<string, unknown>): void {
    this.sendEncoded(encodeEvent(eventId, type, occurredAt, payload));
  }

  /**
   * Push an event frame already encoded with `encodeEvent` (the gateway encodes an event once and
   * sends the same text to every connection in its audience). Dropped before the handshake completes.
   */
  sendEncoded(frame: string): void {
    if (this.state.kind !== 'ready') return;
    this.sendText(frame);
  }

  /**
   * Send the node peer a request and wait for its answer (`ok` or an error it reports). Rejects
   * with TYRUM_ERR_NODE_DISCONNECTED when the connection closes first, TYRUM_ERR_TIMEOUT after
   * `timeoutMs`, and at once when the peer is not a ready node.
   */
  request(type: string, payload: Record<string, unknown>, opts: { timeoutMs: number; requestId?: string }): Promise<PeerAnswer> {
    if (this.state.kind !== 'ready' || this.state.peer.role !== 'node') {
      return Promise.reject(new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', `cannot send ${type}: the connection is not a ready node`));
    }
    const requestId = opts.requestId ?? `gw_${randomUUID()}`;
    if (this.outbound.has(requestId)) return Promise.reject(new TyrumError('TYRUM_ERR_CONFLICT', `request ${requestId} is already pending`));
    return new Promise<PeerAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.outbound.delete(requestId);
        reject(new TyrumError('TYRUM_ERR_TIMEOUT', `the node did not answer ${type} within ${opts.timeoutMs} ms`, { request_id: requestId }));
      }, opts.timeoutMs);
      timer.unref();
      this.outbound.set(requestId, { type, resolve, reject, timer });
      this.send({ request_id: requestId, type, payload });
    });
  }

  /** Close with a code; idempotent. */
  close(code: number, reason: string): void {
    if (this.state.kind === 'closed') return;
    const peer = this.state.kind === 'ready' ? this.state.peer : null;
    this.state = { kind: 'closed' };
    clearTimeout(this.handshakeTimer);
    this.transport.close(code, closeReason(reason));
    this.ended(peer, reason);
  }

  /** The socket closed underneath us (peer went away). */
  closedByTransport(): void {
    if (this.state.kind === 'closed') return;
    const peer = this.state.kind === 'ready' ? this.state.peer : null;
    this.state = { kind: 'closed' };
    clearTimeout(this.handshakeTimer);
    this.ended(peer, 'the connection closed');
  }

  /** Requests still waiting for the node fail; the gateway forgets the session. */
  private ended(peer: Peer | null, reason: string): void {
    for (const [id, p] of this.outbound) {
      clearTimeout(p.timer);
      p.reject(new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', `the node's connection closed before it answered ${p.type} (${reason})`, { request_id: id }));
    }
    this.outbound.clear();
    if (peer) this.hooks.onClosed?.(this, peer);
  }

  private onAnswer(frame: Record<string, unknown>, peer: Peer): void {
    const issues = validate(ResponseEnvelope, frame);
    if (issues.length > 0) {
      this.violation(`malformed response envelope: ${issues[0]!.path} ${issues[0]!.message}`);
      return;
    }
    const answer = frame as { request_id: string; type: string } & PeerAnswer;
    const pending = this.outbound.get(answer.request_id);
    if (!pending || pending.type !== answer.type) {
      this.hooks.strayResponse?.(peer, answer.request_id);
      this.strays += 1;
      if (this.strays >= MAX_STRAY_RESPONSES) this.violation(`${MAX_STRAY_RESPONSES} answers to requests that were never sent or already ended`);
      return;
    }
    this.outbound.delete(answer.request_id);
    clearTimeout(pending.timer);
    pending.resolve(answer.ok ? { ok: true, result: answer.result } : { ok: false, error: answer.error });
  }

  private violation(reason: string): void {
    this.hooks.log('warn', 'protocol violation', { connection_id: this.connectionId, reason, remote_address: this.remoteAddress });
    this.close(CLOSE.PROTOCOL_VIOLATION, reason);
  }

  private authFailure(code: number, reason: string): void {
    this.hooks.authFailed(reason, code);
    this.close(code, reason);
  }

  private onInit(req: { request_id: string; type: string; payload: Record<string, unknown> }): void {
    if (req.type !== 'connect.init') {
      this.violation(`expected connect.init, got ${req.type}`);
      return;
    }
    const issues = validate(OPERATIONS['connect.init'].payload, req.payload);
    if (issues.length > 0) {
      this.respondError(req.request_id, req.type, 'invalid_request', 'invalid connect.init payload', { issues });
      this.close(CLOSE.PROTOCOL_VIOLATION, 'invalid connect.init payload');
      return;
    }
    const p = req.payload as { protocol_rev: number; role: Role; device: { device_id: string; pubkey: string; label?: string; platform?: string; version?: string; mode?: string }; capabilities: Array<{ id: string; version: string }> };
    if (!SUPPORTED_PROTOCOL_REVS.includes(p.protocol_rev)) {
      this.close(CLOSE.UNSUPPORTED_REV, `unsupported protocol_rev ${p.protocol_rev}; supported: ${SUPPORTED_PROTOCOL_REVS.join(',')}`);
      return;
    }
    const parsed = parseDevicePubkey(p.device.pubkey);
    if (!parsed) {
      this.authFailure(CLOSE.DEVICE_MISMATCH, 'pubkey is not a canonical Ed25519 DER SPKI key');
      return;
    }
    if (deriveDeviceId(parsed.der) !== p.device.device_id) {
      this.authFailure(CLOSE.DEVICE_MISMATCH, 'device_id does not match pubkey');
      return;
    }
    if (!this.token.roles.includes(p.role)) {
      this.authFailure(CLOSE.UNAUTHORIZED, `token is not valid for role ${p.role}`);
      return;
    }
    // A node token is bound to the device it was issued to: on any other key it is worthless.
    if (this.token.device_id !== null && this.token.device_id !== p.device.device_id) {
      this.authFailure(CLOSE.UNAUTHORIZED, 'token is bound to another device');
      return;
    }
    // A single-use bootstrap token belongs to the first device that connects with it.
    if (this.token.single_use === true) {
      const claim = this.hooks.claimSingleUse?.(this.token.id, p.device.device_id) ?? 'refused';
      if (claim === 'refused') {
        this.authFailure(CLOSE.UNAUTHORIZED, 'single-use bootstrap token already used by another device, revoked or expired');
        return;
      }
      if (claim === 'claimed') this.hooks.audit('token.claimed', { kind: 'token', id: this.token.id }, { token_id: this.token.id, device_id: p.device.device_id, connection_id: this.connectionId });
    }
    const challenge = randomBytes(32).toString('base64url');
    this.state = {
      kind: 'awaiting_proof',
      role: p.role,
      deviceId: p.device.device_id,
      key: parsed.key,
      pubkey: p.device.pubkey,
      rev: p.protocol_rev,
      challenge,
      device: { label: p.device.label ?? null, platform: p.device.platform ?? null, version: p.device.version ?? null, mode: p.device.mode ?? null },
      capabilities: p.role === 'node' ? p.capabilities.map((c) => ({ id: c.id, version: c.version })) : [],
    };
    this.respond(req.request_id, req.type, { connection_id: this.connectionId, challenge });
  }

  private onProof(req: { request_id: string; type: string; payload: Record<string, unknown> }): void {
    const st = this.state;
    if (st.kind !== 'awaiting_proof') return;
    if (req.type !== 'connect.proof') {
      this.violation(`expected connect.proof, got ${req.type}`);
      return;
    }
    const issues = validate(OPERATIONS['connect.proof'].payload, req.payload);
    if (issues.length > 0) {
      this.respondError(req.request_id, req.type, 'invalid_request', 'invalid connect.proof payload', { issues });
      this.close(CLOSE.PROTOCOL_VIOLATION, 'invalid connect.proof payload');
      return;
    }
    const p = req.payload as { connection_id: string; proof: string };
    const fields = { protocol_rev: st.rev, role: st.role, device_id: st.deviceId, connection_id: this.connectionId, challenge: st.challenge };
    if (p.connection_id !== this.connectionId || !verifyProof(st.key, fields, p.proof)) {
      this.authFailure(CLOSE.INVALID_PROOF, 'invalid proof');
      return;
    }
    clearTimeout(this.handshakeTimer);
    const peer: Peer = {
      connectionId: this.connectionId,
      clientId: this.connectionId,
      deviceId: st.deviceId,
      role: st.role,
      token: this.token,
      remoteAddress: this.remoteAddress,
      pubkey: st.pubkey,
      device: st.device,
      capabilities: st.capabilities,
    };
    this.state = { kind: 'ready', peer };
    this.hooks.onDeviceSeen({ device_id: st.deviceId, pubkey: st.pubkey, role: st.role, ...st.device });
    this.hooks.audit('connection.opened', { kind: 'token', id: this.token.id }, { connection_id: this.connectionId, device_id: st.deviceId, role: st.role, remote_address: this.remoteAddress });
    this.respond(req.request_id, req.type, { client_id: peer.clientId, device_id: peer.deviceId, role: peer.role, scopes: [...this.token.scopes] });
    this.hooks.onReady?.(this);
  }

  private async onRequest(req: { request_id: string; type: string; payload: Record<string, unknown> }, peer: Peer): Promise<void> {
    const { request_id: rid, type } = req;
    if (!Object.hasOwn(OPERATIONS, type)) {
      this.respondError(rid, type, 'unsupported_request', `unknown request type "${type}"`);
      return;
    }
    const op = type as OperationType;
    const spec = OPERATIONS[op];
    if ('handshake' in spec) {
      this.respondError(rid, type, 'invalid_state', 'the handshake is already complete');
      return;
    }
    if ('direction' in spec && spec.direction === 'to_node') {
      this.respondError(rid, type, 'unsupported_request', `${type} is sent by the gateway to nodes, not by peers`);
      return;
    }
    const decision = authorize(spec, { scopes: peer.token.scopes, role: peer.role, tenant: peer.token.tenant_id }, op);
    if (!decision.allowed) {
      const { required, audit, event } = denialRecord(type, decision, peer);
      this.hooks.audit('authz.denied', { kind: 'token', id: peer.token.id }, audit);
      this.hooks.emit('authz.denied', event);
      const msg = decision.reason === 'role' ? `role ${peer.role} may not call ${type}` : decision.reason === 'tenant' ? `${type} manages the host and is for the default tenant's tokens only` : `${type} requires one of: ${required.join(', ')}`;
      this.respondError(rid, type, 'forbidden', msg, { required_scopes: required });
      return;
    }
    const issues = validate(spec.payload, req.payload);
    if (issues.length > 0) {
      this.respondError(rid, type, 'invalid_request', `invalid ${type} payload`, { issues });
      return;
    }
    const release = this.inflight.acquire(peer.token.id);
    if (release === null) {
      this.respondError(rid, type, 'rate_limited', `more than ${this.inflight.max} requests in flight for this token (all its connections and /mcp together)`);
      return;
    }
    try {
      const result = await this.hooks.handle(op, req.payload, peer);
      this.respond(rid, type, result);
    } catch (e) {
      if (isTyrumError(e)) {
        this.respondError(rid, type, e.wire, e.message, e.details);
      } else {
        this.hooks.log('error', 'operation failed', { type, error: e instanceof Error ? e.stack : String(e) });
        this.respondError(rid, type, 'internal', 'internal error');
      }
    } finally {
      release();
    }
  }

  private respond(requestId: string, type: string, result: Record<string, unknown>): void {
    this.send({ request_id: requestId, type, ok: true, result });
  }

  private respondError(requestId: string, type: string, code: WireErrorCode, message: string, details?: Record<string, unknown>): void {
    const error: Record<string, unknown> = { code, message };
    if (details !== undefined) error.details = details;
    this.send({ request_id: requestId, type, ok: false, error });
  }

  private send(msg: Record<string, unknown>): void {
    this.sendText(JSON.stringify(msg));
  }

  private sendText(text: string): void {
    if (this.state.kind === 'closed') return;
    // Slow consumer: a peer that does not read must not make us buffer without bound.
    if (this.transport.bufferedAmount() > this.limits.maxQueuedBytes) {
      this.hooks.log('warn', 'slow consumer', { connection_id: this.connectionId, buffered: this.transport.bufferedAmount() });
      this.close(CLOSE.SLOW_CONSUMER, 'slow consumer');
      return;
    }
    this.transport.send(text);
  }
}

/** The wire text of an event envelope. */
export function encodeEvent(eventId: string, type: string, occurredAt: string, payload: Record<string, unknown>): string {
  return JSON.stringify({ event_id: eventId, type, occurred_at: occurredAt, payload });
}

/**
 * A close reason of at most 123 UTF-8 bytes (RFC 6455 §5.5), cut on a character boundary.
 * Reasons can quote peer input (an unknown key, a type name), so the limit must count bytes:
 * `ws` throws on a longer reason.
 */
export function closeReason(s: string): string {
  const buf = Buffer.from(s, 'utf8');
  if (buf.length <= 123) return s;
  let end = 123;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString('utf8');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The evidence of a denied request: the `authz.denied` audit data and event payload. The
 * WebSocket session and the /mcp endpoint record the same shape (`extra` adds to the audit data).
 */
export function denialRecord(type: string, decision: Extract<AuthzDecision, { allowed: false }>, peer: Peer, extra: Record<string, unknown> = {}): { required: Scope[]; audit: Record<string, unknown>; event: Record<string, unknown> } {
  const required = [...decision.required] as Scope[];
  return {
    required,
    audit: { request_type: type, ...extra, reason: decision.reason, required_scopes: required, role: peer.role, device_id: peer.deviceId, connection_id: peer.connectionId },
    event: { request_type: type, client_id: peer.clientId, device_id: peer.deviceId, role: peer.role, token_id: peer.token.id, required_scopes: required },
  };
}
