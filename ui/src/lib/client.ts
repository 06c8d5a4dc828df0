/**
 * The browser's protocol client: the same wire contract as sdk/client/client.ts (PROTOCOL.md),
 * over the browser's WebSocket and WebCrypto instead of `ws` and node:crypto. The parts that do
 * not touch a platform API are shared with the SDK, not copied: frame parsing and validation
 * (frames.ts), the proof transcript and device-id encoding (transcript.ts), reconnect backoff
 * (backoff.ts), the event dedupe LRU (lru.ts) and the error classes (errors.ts).
 *
 * A browser cannot set an Authorization header on a WebSocket, so the token travels as the
 * offered subprotocol `tyrum-auth.<base64url(token)>` next to `tyrum-v1`; it is never in the URL.
 * A browser also never sees the HTTP status of a refused upgrade (a bad token is just a close
 * with code 1006), so a session that never opened is reported as "could not connect".
 */
import { backoffDelay, DEFAULT_BACKOFF } from '../../../sdk/client/backoff.js';
import { TyrumRemoteError, type WireError } from '../../../sdk/client/errors.js';
import { parseFrame, type EventFrame, type JsonObject, type RequestFrame } from '../../../sdk/client/frames.js';
import { LruMap } from '../../../sdk/client/lru.js';
import { proofTranscript, UUID_RE } from '../../../sdk/client/transcript.js';
import { b64url, signText, type DeviceKey } from './keys.js';

export const PROTOCOL_REV = 1;
/** PROTOCOL.md: 4005-4007 are terminal; 4001 too (the same token and key can only fail again). */
const TERMINAL = new Set([4001, 4005, 4006, 4007]);
const REQUEST_TIMEOUT_MS = 30_000;
/** A session that never completed its handshake this many times in a row is reported as refused. */
const MAX_FAILED_FIRST_ATTEMPTS = 3;

export type Status =
  | { state: 'connecting'; attempt: number }
  | { state: 'open'; deviceId: string; scopes: string[]; role: 'client' | 'node' }
  | { state: 'reconnecting'; delayMs: number; code: number; reason: string }
  | { state: 'closed'; code: number; reason: string; terminal: boolean };

export type RequestHandler = (req: RequestFrame) => Promise<{ ok: true; result: JsonObject } | { ok: false; error: WireError }>;

export interface ClientOptions {
  url: string;
  token: string;
  key: DeviceKey;
  role: 'client' | 'node';
  capabilities?: Array<{ id: string; version: string }>;
  device?: { label?: string; platform?: string; version?: string; mode?: string };
  /** Called with each new server push (deduped by event_id). */
  onEvent?: (e: EventFrame) => void;
  onStatus?: (s: Status) => void;
  /** A handshake completed: `reconnect` is true after the first one (re-read durable state). */
  onConnected?: (reconnect: boolean) => void;
  /** Gateway-initiated requests (nodes: pairing.credential, task.execute). */
  onRequest?: RequestHandler;
}

interface Pending {
  resolve: (r: JsonObject) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  type: string;
}

export class GatewayClient {
  #ws: WebSocket | null = null;
  #open = false;
  #stopped = false;
  #everOpened = false;
  #attempt = 0;
  #failedFirst = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #seq = 0;
  readonly #pending = new Map<string, Pending>();
  readonly #seen = new LruMap<string, true>(2048);
  #status: Status = { state: 'connecting', attempt: 0 };

  constructor(private readonly o: ClientOptions) {}

  get status(): Status {
    return this.#status;
  }

  get deviceId(): string {
    return this.o.key.device_id;
  }

  start(): void {
    this.#stopped = false;
    this.#connect();
  }

  /** Closes for good (no reconnect). */
  stop(reason = 'signed out'): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#ws?.close(1000, reason);
    this.#failPending(new Error('client stopped'));
    this.#setStatus({ state: 'closed', code: 1000, reason, terminal: true });
  }

  /** Sends a request; resolves with its result, rejects with TyrumRemoteError for `ok: false`. */
  request<R = JsonObject>(type: string, payload: JsonObject = {}, timeoutMs = REQUEST_TIMEOUT_MS): Promise<R> {
    const ws = this.#ws;
    if (!ws || !this.#open) return Promise.reject(new Error('not connected to the gateway'));
    const request_id = `ui-${Date.now().toString(36)}-${(++this.#seq).toString(36)}`;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(request_id);
        reject(new Error(`${type} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(request_id, { resolve: resolve as (r: JsonObject) => void, reject, timer, type });
      ws.send(JSON.stringify({ request_id, type, payload }));
    });
  }

  #setStatus(s: Status): void {
    this.#status = s;
    this.o.onStatus?.(s);
  }

  #connect(): void {
    if (this.#stopped) return;
    this.#setStatus({ state: 'connecting', attempt: this.#attempt });
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.o.url, ['tyrum-v1', 'tyrum-auth.' + b64url(new TextEncoder().encode(this.o.token))]);
    } catch (e) {
      this.#setStatus({ state: 'closed', code: 0, reason: `invalid gateway URL: ${(e as Error).message}`, terminal: true });
      return;
    }
    this.#ws = ws;
    let handshake: { connectionId?: string; challenge?: string } = {};
    const initId = `init-${Date.now().toString(36)}`;
    const proofId = `proof-${Date.now().toString(36)}`;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          request_id: initId,
          type: 'connect.init',
          payload: {
            protocol_rev: PROTOCOL_REV,
            role: this.o.role,
            device: { device_id: this.o.key.device_id, pubkey: this.o.key.pubkey, ...(this.o.device ?? {}) },
            capabilities: this.o.role === 'node' ? (this.o.capabilities ?? []) : [],
          },
        }),
      );
    };
    ws.onmessage = (msg) => {
      if (typeof msg.data !== 'string') {
        ws.close(4003, 'binary frame');
        return;
      }
      const parsed = parseFrame(msg.data);
      if (parsed.kind === 'invalid') return;
      if (!this.#open) {
        if (parsed.kind !== 'response') return;
        const f = parsed.frame;
        if (!f.ok) {
          ws.close(1000, 'handshake refused');
          this.#setStatus({ state: 'closed', code: 0, reason: `${f.type} refused: ${f.error.message}`, terminal: true });
          this.#stopped = true;
          return;
        }
        if (f.request_id === initId) {
          const connectionId = f.result.connection_id;
          const challenge = f.result.challenge;
          if (typeof connectionId !== 'string' || !UUID_RE.test(connectionId) || typeof challenge !== 'string') {
            ws.close(4003, 'bad connect.init result');
            return;
          }
          handshake = { connectionId, challenge };
          let transcript: string;
          try {
            transcript = proofTranscript({ protocol_rev: PROTOCOL_REV, role: this.o.role, device_id: this.o.key.device_id, connection_id: connectionId, challenge });
          } catch {
            ws.close(4003, 'bad challenge');
            return;
          }
          void signText(this.o.key, transcript).then((proof) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ request_id: proofId, type: 'connect.proof', payload: { connection_id: handshake.connectionId, proof } }));
          });
          return;
        }
        if (f.request_id === proofId) {
          const scopes = Array.isArray(f.result.scopes) ? f.result.scopes.filter((s): s is string => typeof s === 'string') : [];
          this.#open = true;
          const reconnect = this.#everOpened;
          this.#everOpened = true;
          this.#attempt = 0;
          this.#failedFirst = 0;
          this.#setStatus({ state: 'open', deviceId: this.o.key.device_id, scopes, role: this.o.role });
          this.o.onConnected?.(reconnect);
        }
        return;
      }
      switch (parsed.kind) {
        case 'response': {
          const f = parsed.frame;
          const p = this.#pending.get(f.request_id);
          if (!p) return;
          this.#pending.delete(f.request_id);
          clearTimeout(p.timer);
          if (f.ok) p.resolve(f.result);
          else p.reject(new TyrumRemoteError(f.error, p.type, f.request_id));
          return;
        }
        case 'event': {
          const e = parsed.frame;
          if (this.#seen.get(e.event_id)) return;
          this.#seen.set(e.event_id, true);
          this.o.onEvent?.(e);
          return;
        }
        case 'request': {
          const req = parsed.frame;
          const handler = this.o.onRequest;
          const answer = handler
            ? handler(req).catch((e: unknown) => ({ ok: false as const, error: { code: 'internal', message: String((e as Error).message ?? e).slice(0, 500) } }))
            : Promise.resolve({ ok: false as const, error: { code: 'unsupported_request', message: `this client does not handle ${req.type}` } });
          void answer.then((a) => {
            if (ws.readyState !== WebSocket.OPEN) return;
            ws.send(JSON.stringify(a.ok ? { request_id: req.request_id, type: req.type, ok: true, result: a.result } : { request_id: req.request_id, type: req.type, ok: false, error: a.error }));
          });
          return;
        }
      }
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      const wasOpen = this.#open;
      this.#open = false;
      this.#ws = null;
      this.#failPending(new Error(`connection closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`));
      if (this.#stopped) return;
      if (TERMINAL.has(ev.code)) {
        this.#stopped = true;
        this.#setStatus({ state: 'closed', code: ev.code, reason: ev.reason || 'unauthorized', terminal: true });
        return;
      }
      if (!wasOpen && !this.#everOpened && ++this.#failedFirst >= MAX_FAILED_FIRST_ATTEMPTS) {
        // Browsers hide the upgrade's HTTP status: a refused token looks like any failed connection.
        this.#stopped = true;
        this.#setStatus({ state: 'closed', code: ev.code, reason: 'could not connect: the token was refused, or the gateway is not reachable', terminal: true });
        return;
      }
      const delayMs = backoffDelay(this.#attempt++, { ...DEFAULT_BACKOFF, maxMs: 10_000 });
      this.#setStatus({ state: 'reconnecting', delayMs, code: ev.code, reason: ev.reason });
      this.#timer = setTimeout(() => this.#connect(), delayMs);
    };
  }

  #failPending(err: Error): void {
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.#pending.delete(id);
    }
  }
}

/** The gateway's WebSocket URL for this page's origin. */
export function gatewayWsUrl(loc: Location = location): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/** A remote error's code and message, or the error's message. */
export function errorText(e: unknown): string {
  if (e instanceof TyrumRemoteError) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
