/**
 * TyrumClient: a WebSocket client for the gateway (PROTOCOL.md, protocol major version 1).
 *
 * One object per device session. It authenticates at the HTTP upgrade, runs the
 * connect.init / connect.proof handshake, correlates requests with responses, dedupes pushed
 * events, answers gateway-initiated requests (nodes), and reconnects with jittered backoff
 * after unexpected drops, except when the gateway has said retrying cannot help.
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import WebSocket from 'ws';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { b64url, fromB64url } from './encoding.js';
import {
  TyrumConnectionError,
  TyrumHandshakeError,
  TyrumProtocolError,
  TyrumRemoteError,
  TyrumTimeoutError,
  type WireError,
} from './errors.js';
import { isJsonObject, MAX_ID_LENGTH, parseFrame, type EventFrame, type JsonObject, type RequestFrame, type ResponseFrame } from './frames.js';
import { deviceIdentity, proofTranscript, signProof, UUID_RE, type DeviceIdentity } from './identity.js';
import { LruMap } from './lru.js';

/** The only WebSocket subprotocol of protocol major version 1. */
export const SUBPROTOCOL = 'tyrum-v1';
/** Prefix of the subprotocol entry that carries the token for clients that cannot set headers. */
export const AUTH_SUBPROTOCOL_PREFIX = 'tyrum-auth.';

/**
 * Close codes after which the client does not reconnect on its own. PROTOCOL.md makes
 * 4005-4007 terminal; 4001 (token revoked or not valid for this role/device) is treated the
 * same way because a retry with the same token and key can only fail again, exactly like the
 * HTTP 401 at the upgrade, which is terminal too.
 */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([4001, 4005, 4006, 4007]);
/** HTTP statuses at the upgrade that end reconnection: bad or missing token, origin, protocol. */
export const TERMINAL_HTTP_STATUSES: ReadonlySet<number> = new Set([400, 401, 403]);

const CLOSE_CODE_MEANINGS: Readonly<Record<number, string>> = {
  4001: 'unauthorized',
  4002: 'handshake timeout',
  4003: 'protocol violation',
  4005: 'unsupported protocol_rev',
  4006: 'device_id does not match pubkey',
  4007: 'invalid proof',
  1009: 'frame too large',
  1013: 'slow consumer',
};

/** Wire error codes that mean "try again later" when they answer a handshake step. */
const RETRYABLE_HANDSHAKE_CODES: ReadonlySet<string> = new Set(['rate_limited', 'internal', 'timeout']);

export type Role = 'client' | 'node';

/** A capability a node advertises in `connect.init`. */
export interface Capability {
  id: string;
  version: string;
}

/** What the gateway grants at the end of the handshake. */
export interface HandshakeResult {
  client_id: string;
  device_id: string;
  role: Role;
  /** Scopes from the token's server-side record (never what the client asked for). */
  scopes: string[];
}

/** How the bearer token travels at the upgrade. */
export type AuthVia = 'header' | 'subprotocol';

/** Options of `TyrumClient`; only `token` and `deviceKey` are required. */
export interface TyrumClientOptions {
  /** Gateway WebSocket URL. Default `ws://127.0.0.1:8788/ws`. */
  url?: string;
  /** Access token. Sent at the upgrade only, never in the URL. */
  token: string;
  /** The device's Ed25519 private key (see `loadOrCreateDeviceKey`). */
  deviceKey: KeyObject;
  /** Default `client`. */
  role?: Role;
  /** Default 1. */
  protocolRev?: number;
  /** What a node can do; must be empty for `client`. Default `[]`. */
  capabilities?: Capability[];
  /** Optional human-facing device description shown to operators at pairing. */
  device?: { label?: string; platform?: string; version?: string; mode?: string };
  /** Default timeout of `request()`, in ms. Default 30 000. */
  requestTimeoutMs?: number;
  /** Deadline for upgrade + connect.init + connect.proof, in ms. Default 10 000 (the gateway's). */
  handshakeTimeoutMs?: number;
  /** Reconnect after an unexpected close of an established session. Default true. */
  reconnect?: boolean;
  /** Reconnect backoff; defaults 250 ms, 30 s, full jitter. */
  backoff?: Partial<BackoffOptions>;
  /** `header` (default) sends `Authorization: Bearer`; `subprotocol` offers `tyrum-auth.<b64url>`. */
  authVia?: AuthVia;
  /** Largest frame accepted from or sent to the gateway, in bytes. Default 1 MiB (the gateway's default). */
  maxPayloadBytes?: number;
  /** Interval of WebSocket pings that detect a dead link; 0 disables. Default 30 000. */
  heartbeatMs?: number;
  /** How many recent `event_id`s are remembered for dedupe. Default 1024. */
  eventDedupeSize?: number;
  /**
   * Allow `ws://` to a host that is not loopback. Off by default: the bearer token would
   * cross the network in clear text.
   */
  allowInsecureTransport?: boolean;
}

/** Per-call options of `request()`. */
export interface RequestOptions {
  /** Overrides `requestTimeoutMs` for this call. */
  timeoutMs?: number;
  /** Abort waiting for the response (the gateway may still act on the request). */
  signal?: AbortSignal;
}

/** The answer a node gives to a gateway-initiated request; mirrors the response envelope. */
export type RequestOutcome = { ok: true; result: JsonObject } | { ok: false; error: WireError };

/** Sends the response to a gateway-initiated request. Call it exactly once. */
export type RespondFn = (outcome: RequestOutcome) => void;

/** Payload of the `close` event. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** True when a reconnect attempt has been scheduled. */
  willReconnect: boolean;
  /** Why the connection ended; absent only after `close()`. */
  error?: TyrumConnectionError;
}

/** Event names and listener arguments of `TyrumClient`. */
export interface TyrumClientEvents {
  /** A handshake completed (first connect and every reconnect). */
  connected: [result: HandshakeResult];
  /** A server push, at most once per `event_id` among the last `eventDedupeSize` ids. */
  event: [event: EventFrame];
  /** A gateway-initiated request (e.g. `task.execute` to a node). */
  request: [request: RequestFrame, respond: RespondFn];
  /** A socket closed (including failed connection attempts). */
  close: [info: CloseInfo];
  /** A reconnect attempt is scheduled after `delayMs`. */
  reconnecting: [info: { attempt: number; delayMs: number }];
  /** The gateway sent something that breaks the protocol; the frame was ignored. */
  warning: [error: TyrumProtocolError];
}

type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

interface Conn {
  readonly ws: WebSocket;
  /** Whether this attempt came from `connect()` on an idle client (no retry if it fails). */
  readonly initial: boolean;
  phase: 'handshake' | 'open' | 'closed';
  connectionId?: string;
  httpStatus?: number;
  lastError?: Error;
  /** The decided cause when the handshake was aborted from this side. */
  failure?: TyrumConnectionError;
  /** When the handshake completed (ms since epoch). */
  openedAt?: number;
  deadline?: NodeJS.Timeout;
  heartbeat?: NodeJS.Timeout;
  alive: boolean;
}

interface Pending {
  readonly conn: Conn;
  readonly type: string;
  readonly resolve: (result: JsonObject) => void;
  readonly reject: (error: Error) => void;
  readonly cleanup: () => void;
}

interface Waiter {
  resolve: (r: HandshakeResult) => void;
  reject: (e: Error) => void;
}

/** Remembered answers to gateway-initiated requests, replayed when the gateway resends one. */
const ANSWERED_CACHE_SIZE = 256;
/** Byte budget of those answers (results can be large); a single bigger answer is not kept. */
const ANSWERED_CACHE_BYTES = 8 * 1024 * 1024;
/**
 * Gateway-initiated requests being handled at once. A handler that never calls respond()
 * would otherwise grow this set without bound; beyond it new requests get `rate_limited`.
 */
const MAX_INFLIGHT_INCOMING = 1024;
/**
 * A session must stay up this long before the backoff starts again from its first step.
 * Resetting on every successful handshake would let a gateway that accepts and then drops
 * the connection (e.g. 4003 for a client bug) drive a tight reconnect loop.
 */
const STABLE_SESSION_MS = 10_000;

interface ResolvedOptions {
  url: string;
  token: string;
  deviceKey: KeyObject;
  role: Role;
  protocolRev: number;
  capabilities: Capability[];
  device: { label?: string; platform?: string; version?: string; mode?: string };
  requestTimeoutMs: number;
  handshakeTimeoutMs: number;
  reconnect: boolean;
  backoff: BackoffOptions;
  authVia: AuthVia;
  maxPayloadBytes: number;
  heartbeatMs: number;
  eventDedupeSize: number;
}

/**
 * A connection to a Tyrum gateway.
 *
 * Errors: `request()` rejects with `TyrumRemoteError` when the gateway answers `ok: false`,
 * and with a `TyrumClientError` subclass (`TyrumConnectionError`, `TyrumTimeoutError`,
 * `TyrumProtocolError`) when the failure is local or on the link. After a reconnect, requests
 * that were pending have been rejected; retry them with an `idempotency_key` where they have
 * side effects, and re-read durable state because events may have been missed.
 */
export class TyrumClient extends EventEmitter<TyrumClientEvents> {
  readonly #opts: ResolvedOptions;
  readonly #identity: DeviceIdentity;
  #state: State = 'idle';
  #conn: Conn | undefined;
  #session: HandshakeResult | undefined;
  #waiters: Waiter[] = [];
  #reconnectAttempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  readonly #pending = new Map<string, Pending>();
  readonly #seenEvents: LruMap<string, true>;
  readonly #inflightIncoming = new Set<string>();
  readonly #answered = new LruMap<string, string>(ANSWERED_CACHE_SIZE, {
    maxWeight: ANSWERED_CACHE_BYTES,
    weigh: (text) => Buffer.byteLength(text, 'utf8'),
  });

  constructor(options: TyrumClientOptions) {
    super();
    this.#opts = resolveOptions(options);
    this.#identity = deviceIdentity(this.#opts.deviceKey);
    this.#seenEvents = new LruMap(this.#opts.eventDedupeSize);
  }

  /** This device's `{ device_id, pubkey }`. */
  get identity(): DeviceIdentity {
    return { ...this.#identity };
  }

  /** The current session, or undefined while not connected. */
  get session(): HandshakeResult | undefined {
    return this.#session ? { ...this.#session, scopes: [...this.#session.scopes] } : undefined;
  }

  /** The gateway's `connection_id` of the current session (useful to correlate with its logs). */
  get connectionId(): string | undefined {
    return this.#session ? this.#conn?.connectionId : undefined;
  }

  /** True while a handshake-complete session is open. */
  get connected(): boolean {
    return this.#state === 'open';
  }

  /**
   * Open the connection and complete the handshake. Resolves with the gateway's
   * `{ client_id, device_id, role, scopes }`.
   *
   * A failed first attempt rejects (no automatic retry, so a CLI with a wrong URL or token
   * fails fast); retry by calling `connect()` again. While reconnecting after a drop, the
   * returned promise settles with the outcome of the reconnection.
   */
  connect(): Promise<HandshakeResult> {
    if (this.#state === 'closed') return Promise.reject(new TyrumConnectionError('client was closed', { terminal: true }));
    if (this.#state === 'open' && this.#session) return Promise.resolve(this.session as HandshakeResult);
    const p = new Promise<HandshakeResult>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (this.#state === 'idle') {
      this.#reconnectAttempt = 0;
      this.#startAttempt(true);
    }
    return p;
  }

  /**
   * Send a request and wait for its response's `result`.
   *
   * Rejects with `TyrumRemoteError` for `ok: false`, `TyrumTimeoutError` after the timeout,
   * `TyrumConnectionError` when not connected or when the socket closes first.
   */
  request<R extends JsonObject = JsonObject>(type: string, payload: JsonObject = {}, options: RequestOptions = {}): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (typeof type !== 'string' || type.length === 0 || type.length > MAX_ID_LENGTH) {
        throw new TypeError('request type must be a non-empty string');
      }
      if (type.startsWith('connect.')) throw new TypeError(`${type} is sent by connect(), not request()`);
      if (!isJsonObject(payload)) throw new TypeError('request payload must be a JSON object');
      const timeoutMs = options.timeoutMs ?? this.#opts.requestTimeoutMs;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('timeoutMs must be a positive number');
      if (options.signal?.aborted) {
        reject(options.signal.reason);
        return;
      }
      const conn = this.#conn;
      if (this.#state !== 'open' || !conn || conn.phase !== 'open') {
        reject(new TyrumConnectionError(`not connected (state: ${this.#state})`));
        return;
      }
      this.#send(conn, type, payload, timeoutMs, resolve as (r: JsonObject) => void, reject, options.signal);
    });
  }

  /**
   * Close the connection and stop reconnecting. Pending requests and `connect()` calls reject
   * with `TyrumConnectionError`. The client cannot be reused afterwards.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const err = new TyrumConnectionError('client was closed', { terminal: true });
    this.#rejectWaiters(err);
    const conn = this.#conn;
    if (!conn) return;
    this.#rejectPending(conn, err);
    const ws = conn.ws;
    if (ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000, 'client closing');
      // A gateway that never answers the close frame must not hold the caller; ws's own wait is 30 s.
      const t = setTimeout(() => ws.terminate(), 1000);
      await closed;
      clearTimeout(t);
    } else {
      ws.terminate();
      await closed;
    }
  }

  // --- connection lifecycle ---------------------------------------------------------------

  #startAttempt(initial: boolean): void {
    const o = this.#opts;
    this.#state = this.#state === 'idle' ? 'connecting' : this.#state;
    const protocols = [SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (o.authVia === 'subprotocol') protocols.push(AUTH_SUBPROTOCOL_PREFIX + b64url(Buffer.from(o.token, 'utf8')));
    else headers.authorization = `Bearer ${o.token}`;
    const ws = new WebSocket(o.url, protocols, {
      headers,
      maxPayload: o.maxPayloadBytes,
      handshakeTimeout: o.handshakeTimeoutMs,
      // Redirects would carry the Authorization header to wherever the server points.
      followRedirects: false,
      // Compression mixes secrets with attacker-influenced data in one stream (CRIME-style
      // leaks) and costs memory per connection; frames are small JSON anyway.
      perMessageDeflate: false,
    });
    const conn: Conn = { ws, initial, phase: 'handshake', alive: true };
    this.#conn = conn;
    conn.deadline = setTimeout(() => {
      this.#failHandshake(conn, new TyrumHandshakeError(`handshake did not complete within ${o.handshakeTimeoutMs} ms`));
    }, o.handshakeTimeoutMs);

    ws.on('unexpected-response', (_req, res) => {
      // The gateway refused the upgrade (401 bad token, 403 origin, 400 protocol...). Keep the
      // status for the error; terminate() aborts the request and ends in a 'close' event.
      conn.httpStatus = res.statusCode;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      // Always listened to: an unhandled 'error' on the socket would crash the process.
      conn.lastError = err;
    });
    ws.on('open', () => this.#onOpen(conn));
    ws.on('message', (data, isBinary) => this.#onMessage(conn, data, isBinary));
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('close', (code, reason) => this.#onClose(conn, code, reason.toString('utf8')));
  }

  #onOpen(conn: Conn): void {
    if (conn.ws.protocol !== SUBPROTOCOL) {
      // Echoing the tyrum-auth.* entry puts the token in a response header: refuse, and do not
      // repeat it in the error either (errors end up in logs).
      const selected = conn.ws.protocol.startsWith(AUTH_SUBPROTOCOL_PREFIX)
        ? `${AUTH_SUBPROTOCOL_PREFIX}* (the token)`
        : JSON.stringify(conn.ws.protocol.slice(0, 64));
      this.#failHandshake(conn, new TyrumHandshakeError(`gateway selected subprotocol ${selected}, expected ${SUBPROTOCOL}`, { terminal: true }));
      return;
    }
    const o = this.#opts;
    const device: Record<string, string> = { device_id: this.#identity.device_id, pubkey: this.#identity.pubkey };
    if (o.device.label !== undefined) device.label = o.device.label;
    if (o.device.platform !== undefined) device.platform = o.device.platform;
    if (o.device.version !== undefined) device.version = o.device.version;
    if (o.device.mode !== undefined) device.mode = o.device.mode;
    const init = { protocol_rev: o.protocolRev, role: o.role, device, capabilities: o.capabilities.map((c) => ({ id: c.id, version: c.version })) };
    const fail = (e: Error): void => this.#failHandshake(conn, asHandshakeError(e));
    this.#send(conn, 'connect.init', init, o.handshakeTimeoutMs, (r) => this.#onInitResult(conn, r), fail);
  }

  #onInitResult(conn: Conn, result: JsonObject): void {
    const { connection_id, challenge } = result;
    const challengeBytes = typeof challenge === 'string' ? fromB64url(challenge) : null;
    if (typeof connection_id !== 'string' || !UUID_RE.test(connection_id) || !challengeBytes || challengeBytes.length !== 32) {
      this.#failHandshake(conn, protocolHandshakeError('connect.init result must carry a UUID connection_id and a 32-byte base64url challenge'));
      return;
    }
    conn.connectionId = connection_id;
    const o = this.#opts;
    const transcript = proofTranscript({
      protocol_rev: o.protocolRev,
      role: o.role,
      device_id: this.#identity.device_id,
      connection_id,
      challenge: challenge as string,
    });
    const proof = signProof(o.deviceKey, transcript);
    const fail = (e: Error): void => this.#failHandshake(conn, asHandshakeError(e));
    this.#send(conn, 'connect.proof', { connection_id, proof }, o.handshakeTimeoutMs, (r) => this.#onProofResult(conn, r), fail);
  }

  /** Runs synchronously from the message handler so frames right behind the result see an open session. */
  #onProofResult(conn: Conn, result: JsonObject): void {
    const { client_id, device_id, role, scopes } = result;
    if (
      typeof client_id !== 'string' ||
      device_id !== this.#identity.device_id ||
      role !== this.#opts.role ||
      !Array.isArray(scopes) ||
      !scopes.every((s) => typeof s === 'string')
    ) {
      this.#failHandshake(conn, protocolHandshakeError('connect.proof result does not match this device and role'));
      return;
    }
    if (this.#state === 'closed' || this.#conn !== conn) return;
    clearTimeout(conn.deadline);
    conn.phase = 'open';
    conn.openedAt = Date.now();
    const session: HandshakeResult = { client_id, device_id, role: this.#opts.role, scopes: [...(scopes as string[])] };
    this.#session = session;
    this.#state = 'open';
    this.#startHeartbeat(conn);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve({ ...session, scopes: [...session.scopes] });
    this.emit('connected', { ...session, scopes: [...session.scopes] });
  }

  #failHandshake(conn: Conn, error: TyrumConnectionError): void {
    if (conn.phase !== 'handshake') return;
    conn.failure ??= error;
    // terminate(), not close(): the attempt is over and a half-open peer must not delay it.
    conn.ws.terminate();
  }

  #startHeartbeat(conn: Conn): void {
    const ms = this.#opts.heartbeatMs;
    if (ms <= 0) return;
    conn.heartbeat = setInterval(() => {
      if (!conn.alive) {
        // No pong and no frame for a whole interval: the link is dead even if TCP has not noticed.
        conn.ws.terminate();
        return;
      }
      conn.alive = false;
      try {
        conn.ws.ping();
      } catch {
        // Socket already closing; the close handler takes it from here.
      }
    }, ms);
    // The socket keeps the process alive while it is open; the timer alone must not.
    conn.heartbeat.unref();
  }

  #onClose(conn: Conn, code: number, reason: string): void {
    const wasHandshake = conn.phase === 'handshake';
    conn.phase = 'closed';
    if (conn.openedAt !== undefined && Date.now() - conn.openedAt >= STABLE_SESSION_MS) this.#reconnectAttempt = 0;
    clearTimeout(conn.deadline);
    clearInterval(conn.heartbeat);
    const userClosed = this.#state === 'closed';
    const error = userClosed ? undefined : wasHandshake ? (conn.failure ?? classifyFailure(code, reason, conn)) : dropError(code, reason);
    this.#rejectPending(conn, error ?? new TyrumConnectionError('client was closed', { closeCode: code, closeReason: reason, terminal: true }));
    if (this.#conn === conn) {
      this.#conn = undefined;
      this.#session = undefined;
    }
    const willReconnect = !userClosed && this.#opts.reconnect && !error?.terminal && !(wasHandshake && conn.initial);
    if (!userClosed) this.#state = willReconnect ? 'reconnecting' : 'idle';
    const info: CloseInfo = { code, reason, willReconnect };
    if (error) info.error = error;
    if (!willReconnect && error) this.#rejectWaiters(error);
    this.emit('close', info);
    if (willReconnect && this.#state === 'reconnecting') this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    const attempt = this.#reconnectAttempt++;
    const delayMs = backoffDelay(attempt, this.#opts.backoff);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#state === 'reconnecting') this.#startAttempt(false);
    }, delayMs);
    this.emit('reconnecting', { attempt: attempt + 1, delayMs });
  }

  #rejectWaiters(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
  }

  #rejectPending(conn: Conn, error: Error): void {
    for (const [id, p] of this.#pending) {
      if (p.conn !== conn) continue;
      this.#pending.delete(id);
      p.cleanup();
      p.reject(error);
    }
  }

  // --- outgoing ---------------------------------------------------------------------------

  #send(
    conn: Conn,
    type: string,
    payload: JsonObject,
    timeoutMs: number,
    resolve: (r: JsonObject) => void,
    reject: (e: Error) => void,
    signal?: AbortSignal,
  ): void {
    const request_id = randomUUID();
    let text: string;
    try {
      text = JSON.stringify({ request_id, type, payload });
    } catch (e) {
      reject(new TypeError(`request payload is not serialisable as JSON: ${(e as Error).message}`));
      return;
    }
    // The gateway would close the whole connection (1009) and fail every other request.
    if (Buffer.byteLength(text, 'utf8') > this.#opts.maxPayloadBytes) {
      reject(new RangeError(`${type}: request exceeds ${this.#opts.maxPayloadBytes} bytes`));
      return;
    }
    const onAbort = (): void => {
      if (this.#pending.delete(request_id)) {
        cleanup();
        reject(signal?.reason instanceof Error ? signal.reason : new Error('request aborted'));
      }
    };
    const timer = setTimeout(() => {
      if (this.#pending.delete(request_id)) {
        cleanup();
        reject(new TyrumTimeoutError(type, request_id, timeoutMs));
      }
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#pending.set(request_id, { conn, type, resolve, reject, cleanup });
    conn.ws.send(text, (err) => {
      if (err && this.#pending.delete(request_id)) {
        cleanup();
        reject(new TyrumConnectionError(`${type}: send failed: ${err.message}`, {}, { cause: err }));
      }
    });
  }

  // --- incoming ---------------------------------------------------------------------------

  #onMessage(conn: Conn, data: WebSocket.RawData, isBinary: boolean): void {
    if (conn.phase === 'closed') return;
    conn.alive = true;
    if (isBinary) {
      this.#warn('binary frame from gateway ignored');
      return;
    }
    // binaryType is the default 'nodebuffer', so text frames arrive as one Buffer.
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8');
    const parsed = parseFrame(text);
    switch (parsed.kind) {
      case 'invalid':
        this.#warn(`malformed frame ignored: ${parsed.reason}`);
        return;
      case 'response':
        this.#onResponse(conn, parsed.frame);
        return;
      case 'event':
        if (conn.phase !== 'open') {
          this.#warn(`event ${parsed.frame.type} before the handshake completed ignored`);
          return;
        }
        this.#onEvent(parsed.frame);
        return;
      case 'request':
        if (conn.phase !== 'open') {
          this.#warn(`request ${parsed.frame.type} before the handshake completed ignored`);
          return;
        }
        this.#onIncomingRequest(conn, parsed.frame);
        return;
    }
  }

  #onResponse(conn: Conn, frame: ResponseFrame): void {
    const p = this.#pending.get(frame.request_id);
    if (!p || p.conn !== conn) {
      // Typically a late answer to a request that already timed out.
      this.#warn(`response to unknown request_id ${JSON.stringify(frame.request_id.slice(0, 64))} ignored`);
      return;
    }
    this.#pending.delete(frame.request_id);
    p.cleanup();
    if (frame.type !== p.type) {
      const err = new TyrumProtocolError(`response type ${JSON.stringify(frame.type.slice(0, 64))} does not match request type ${p.type}`);
      this.emit('warning', err);
      p.reject(err);
      return;
    }
    if (frame.ok) p.resolve(frame.result);
    else p.reject(new TyrumRemoteError(frame.error, p.type, frame.request_id));
  }

  #onEvent(frame: EventFrame): void {
    if (this.#seenEvents.has(frame.event_id)) {
      this.#seenEvents.get(frame.event_id); // refresh: a redelivered id stays remembered
      return;
    }
    this.#seenEvents.set(frame.event_id, true);
    this.emit('event', frame);
  }

  #onIncomingRequest(conn: Conn, frame: RequestFrame): void {
    const id = frame.request_id;
    const previous = this.#answered.get(id);
    if (previous !== undefined) {
      // A resend after a reconnect: answer again without running the work twice.
      this.#sendRaw(conn, previous);
      return;
    }
    // Still being handled: its answer goes out on whatever session is open when it is ready.
    if (this.#inflightIncoming.has(id)) return;
    if (this.#inflightIncoming.size >= MAX_INFLIGHT_INCOMING) {
      const error = { code: 'rate_limited', message: `more than ${MAX_INFLIGHT_INCOMING} requests in flight on this client` };
      this.#sendRaw(conn, JSON.stringify(responseEnvelope(id, frame.type, { ok: false, error })));
      return;
    }
    this.#inflightIncoming.add(id);
    let responded = false;
    const respond: RespondFn = (outcome) => {
      if (responded) throw new Error(`respond() already called for request ${id}`);
      const text = JSON.stringify(responseEnvelope(id, frame.type, outcome));
      // Thrown before anything is sent, so the handler can still answer with a smaller error.
      if (Buffer.byteLength(text, 'utf8') > this.#opts.maxPayloadBytes) {
        throw new RangeError(`respond(): response exceeds ${this.#opts.maxPayloadBytes} bytes`);
      }
      responded = true;
      this.#inflightIncoming.delete(id);
      this.#answered.set(id, text);
      const current = this.#conn;
      if (current && current.phase === 'open' && this.#state === 'open') this.#sendRaw(current, text);
    };
    if (this.listenerCount('request') === 0) {
      respond({ ok: false, error: { code: 'unsupported_request', message: `this client does not handle ${frame.type}` } });
      return;
    }
    this.emit('request', { request_id: id, type: frame.type, payload: frame.payload }, respond);
  }

  #sendRaw(conn: Conn, text: string): void {
    conn.ws.send(text, () => {
      // Lost with the socket; the gateway resends the request after reconnecting.
    });
  }

  #warn(message: string): void {
    this.emit('warning', new TyrumProtocolError(message));
  }
}

/** Build and check the response envelope for a gateway-initiated request. */
function responseEnvelope(request_id: string, type: string, outcome: RequestOutcome): ResponseFrame {
  if (!isJsonObject(outcome)) throw new TypeError('respond() needs { ok: true, result } or { ok: false, error }');
  if (outcome.ok === true) {
    if (!isJsonObject(outcome.result)) throw new TypeError('respond(): result must be a JSON object');
    return { request_id, type, ok: true, result: outcome.result };
  }
  if (outcome.ok === false) {
    const e = outcome.error;
    if (!isJsonObject(e) || typeof e.code !== 'string' || e.code.length === 0 || typeof e.message !== 'string') {
      throw new TypeError('respond(): error must be { code: string, message: string, details?: object }');
    }
    if (e.details !== undefined && !isJsonObject(e.details)) throw new TypeError('respond(): error.details must be an object');
    // Copy only the envelope's keys: the gateway rejects unknown ones.
    const error: WireError = { code: e.code, message: e.message };
    if (e.details !== undefined) error.details = e.details;
    return { request_id, type, ok: false, error };
  }
  throw new TypeError('respond(): ok must be true or false');
}

function describeClose(code: number, reason: string): string {
  const meaning = CLOSE_CODE_MEANINGS[code];
  return `closed with code ${code}${meaning ? ` (${meaning})` : ''}${reason ? `: ${reason}` : ''}`;
}

/** Why a connection attempt failed before the handshake completed. */
function classifyFailure(code: number, reason: string, conn: Conn): TyrumConnectionError {
  const status = conn.httpStatus;
  if (status !== undefined) {
    const terminal = TERMINAL_HTTP_STATUSES.has(status);
    const message = `gateway refused the WebSocket upgrade with HTTP ${status}`;
    return terminal
      ? new TyrumHandshakeError(message, { httpStatus: status, terminal })
      : new TyrumConnectionError(message, { httpStatus: status });
  }
  if (code >= 4000 && code < 5000) {
    return new TyrumHandshakeError(`handshake failed: ${describeClose(code, reason)}`, {
      closeCode: code,
      closeReason: reason,
      terminal: TERMINAL_CLOSE_CODES.has(code),
    });
  }
  const cause = conn.lastError;
  return new TyrumConnectionError(
    `cannot connect to gateway: ${cause ? cause.message : describeClose(code, reason)}`,
    { closeCode: code, closeReason: reason },
    cause ? { cause } : undefined,
  );
}

/** Why an established session ended. */
function dropError(code: number, reason: string): TyrumConnectionError {
  return new TyrumConnectionError(`connection ${describeClose(code, reason)}`, {
    closeCode: code,
    closeReason: reason,
    terminal: TERMINAL_CLOSE_CODES.has(code),
  });
}

function protocolHandshakeError(message: string): TyrumHandshakeError {
  // A gateway that speaks a different protocol will not start speaking ours on retry.
  return new TyrumHandshakeError(`handshake failed: ${message}`, { terminal: true });
}

/** Map a failure of connect.init / connect.proof onto a handshake error. */
function asHandshakeError(e: Error): TyrumConnectionError {
  if (e instanceof TyrumRemoteError) {
    return new TyrumHandshakeError(`handshake refused: ${e.message}`, { terminal: !RETRYABLE_HANDSHAKE_CODES.has(e.code) }, e);
  }
  if (e instanceof TyrumTimeoutError) return new TyrumHandshakeError(`handshake timed out: ${e.message}`);
  if (e instanceof TyrumConnectionError) return e;
  return protocolHandshakeError(e.message);
}

function resolveOptions(options: TyrumClientOptions): ResolvedOptions {
  if (!isJsonObject(options)) throw new TypeError('TyrumClient options must be an object');
  const url = options.url ?? 'ws://127.0.0.1:8788/ws';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`invalid gateway URL ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new TypeError('gateway URL must use ws: or wss:');
  if (parsed.username || parsed.password) throw new TypeError('gateway URL must not carry credentials; pass token instead');
  if (parsed.protocol === 'ws:' && !isLoopbackHost(parsed.hostname) && options.allowInsecureTransport !== true) {
    throw new TypeError(`refusing ws:// to non-loopback host ${parsed.hostname}: use wss:// (or set allowInsecureTransport)`);
  }
  const token = options.token;
  // Visible ASCII only: anything else is not a token and could break or inject into the header.
  if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) throw new TypeError('token must be a non-empty string of visible ASCII characters');
  const key = options.deviceKey;
  if (!key || typeof key !== 'object' || (key as KeyObject).type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('deviceKey must be an Ed25519 private KeyObject (see loadOrCreateDeviceKey)');
  }
  const role = options.role ?? 'client';
  if (role !== 'client' && role !== 'node') throw new TypeError('role must be "client" or "node"');
  const protocolRev = options.protocolRev ?? 1;
  if (!Number.isSafeInteger(protocolRev) || protocolRev < 1) throw new TypeError('protocolRev must be a positive integer');
  const capabilities = options.capabilities ?? [];
  if (!Array.isArray(capabilities) || !capabilities.every((c) => isJsonObject(c) && typeof c.id === 'string' && typeof c.version === 'string')) {
    throw new TypeError('capabilities must be an array of { id: string, version: string }');
  }
  if (role === 'client' && capabilities.length > 0) throw new TypeError('only nodes advertise capabilities (role "node")');
  const device = { ...(options.device ?? {}) };
  for (const k of ['label', 'platform', 'version', 'mode'] as const) {
    if (device[k] !== undefined && typeof device[k] !== 'string') throw new TypeError(`device.${k} must be a string`);
  }
  const authVia = options.authVia ?? 'header';
  if (authVia !== 'header' && authVia !== 'subprotocol') throw new TypeError('authVia must be "header" or "subprotocol"');
  const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) };
  if (backoff.jitter !== 'full' && backoff.jitter !== 'none') throw new TypeError('backoff.jitter must be "full" or "none"');
  return Object.freeze({
    url: parsed.toString(),
    token,
    deviceKey: key,
    role,
    protocolRev,
    capabilities: capabilities.map((c) => ({ id: c.id, version: c.version })),
    device,
    requestTimeoutMs: positive(options.requestTimeoutMs, 30_000, 'requestTimeoutMs'),
    handshakeTimeoutMs: positive(options.handshakeTimeoutMs, 10_000, 'handshakeTimeoutMs'),
    reconnect: options.reconnect ?? true,
    backoff: { initialMs: nonNegative(backoff.initialMs, 'backoff.initialMs'), maxMs: nonNegative(backoff.maxMs, 'backoff.maxMs'), jitter: backoff.jitter },
    authVia,
    maxPayloadBytes: positive(options.maxPayloadBytes, 1024 * 1024, 'maxPayloadBytes'),
    heartbeatMs: options.heartbeatMs === 0 ? 0 : positive(options.heartbeatMs, 30_000, 'heartbeatMs'),
    eventDedupeSize: Math.floor(positive(options.eventDedupeSize, 1024, 'eventDedupeSize')),
  });
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a positive number`);
  return v;
}

function nonNegative(v: number, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a non-negative number`);
  return v;
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./i.test(h) || /^::ffff:7f/i.test(h);
  return false;
}
