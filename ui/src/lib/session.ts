/**
 * The operator's session: one GatewayClient, the live event bus the pages subscribe to, and the
 * catch-up after a reconnect (event.list from the last cursor seen, so approvals and run changes
 * missed while the socket was down still reach the pages and the badge).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { EventFrame, JsonObject } from '../../../sdk/client/frames.js';
import { LruMap } from '../../../sdk/client/lru.js';
import { GatewayClient, gatewayWsUrl, type Status } from './client.js';
import type { DeviceKey } from './keys.js';

type Listener = (e: EventFrame) => void;

export class OperatorSession {
  readonly client: GatewayClient;
  #listeners = new Set<Listener>();
  #statusListeners = new Set<(s: Status) => void>();
  #reconnectListeners = new Set<() => void>();
  #seen = new LruMap<string, true>(4096);
  /** event.list cursor: every durable event up to it has been delivered to the bus. */
  #cursor = 0;
  #catchingUp: Promise<void> | null = null;

  constructor(token: string, key: DeviceKey) {
    this.client = new GatewayClient({
      url: gatewayWsUrl(),
      token,
      key,
      role: 'client',
      device: { label: 'web UI', platform: navigator.platform || 'browser', mode: 'ui' },
      onEvent: (e) => this.#deliver(e),
      onStatus: (s) => {
        for (const l of this.#statusListeners) l(s);
      },
      onConnected: (reconnect) => {
        void this.#catchUp(reconnect);
      },
    });
  }

  get status(): Status {
    return this.client.status;
  }

  get scopes(): string[] {
    const s = this.client.status;
    return s.state === 'open' ? s.scopes : [];
  }

  can(scope: string): boolean {
    return this.scopes.includes(scope);
  }

  request<R = JsonObject>(type: string, payload: JsonObject = {}, timeoutMs?: number): Promise<R> {
    return this.client.request<R>(type, payload, timeoutMs);
  }

  onEvent(l: Listener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  onStatus(l: (s: Status) => void): () => void {
    this.#statusListeners.add(l);
    return () => this.#statusListeners.delete(l);
  }

  /** Called after every reconnect (pages re-read their durable state). */
  onReconnect(l: () => void): () => void {
    this.#reconnectListeners.add(l);
    return () => this.#reconnectListeners.delete(l);
  }

  #deliver(e: EventFrame): void {
    if (this.#seen.get(e.event_id)) return;
    this.#seen.set(e.event_id, true);
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        console.error('event listener failed', err);
      }
    }
  }

  /**
   * First connection: move the cursor to the end of the durable event log (what happened before
   * is read by the pages themselves). A reconnect: deliver what was missed, then tell the pages
   * to re-read. Without operator.read (e.g. an approvals-only token) there is nothing to catch up.
   */
  #catchUp(reconnect: boolean): Promise<void> {
    const run = async () => {
      if (!this.can('operator.read')) return;
      for (let page = 0; page < 200; page++) {
        const r = await this.request<{ events: Array<{ cursor: number; event_id: string; type: string; occurred_at: string; payload: JsonObject }>; next_after: number }>('event.list', { after: this.#cursor, limit: 1000 });
        if (reconnect) for (const e of r.events) this.#deliver({ event_id: e.event_id, type: e.type, occurred_at: e.occurred_at, payload: e.payload });
        else for (const e of r.events) this.#seen.set(e.event_id, true);
        if (r.next_after <= this.#cursor || r.events.length === 0) break;
        this.#cursor = r.next_after;
      }
      if (reconnect) for (const l of this.#reconnectListeners) l();
    };
    const p = (this.#catchingUp ?? Promise.resolve()).then(run).catch((e: unknown) => console.error('catch-up failed', e));
    this.#catchingUp = p;
    return p;
  }
}

/**
 * Loads data with `load`, again whenever an event whose type starts with one of `prefixes` arrives
 * (coalesced), after a reconnect, and when `deps` change. Returns the data, the error and a reload.
 */
export function useLive<T>(session: OperatorSession, load: () => Promise<T>, prefixes: readonly string[], deps: readonly unknown[] = []): { data: T | undefined; error: string | null; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let cancelled = false;
    loadRef
      .current()
      .then((d) => {
        if (!cancelled) {
          setData(d);
          setError(null);
        }
      })
      .catch((e: unknown) => {
        if (!cancelled) setError(e instanceof Error ? e.message : String(e));
      });
    return () => {
      cancelled = true;
    };
  }, [tick, ...deps]);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const bump = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        setTick((t) => t + 1);
      }, 120);
    };
    const offE = session.onEvent((e) => {
      if (prefixes.some((p) => e.type.startsWith(p))) bump();
    });
    const offR = session.onReconnect(bump);
    return () => {
      offE();
      offR();
      if (timer) clearTimeout(timer);
    };
  }, [session]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}
