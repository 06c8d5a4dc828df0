/**
 * The embedded browser node ("Embedded local nodes"): a node runtime inside the page, with its own
 * device key (IndexedDB `node`, separate from the operator client's), its own connection
 * (`role: node`, `device.mode: browser-node`) and the ordinary pairing flow. The operator page
 * only starts and stops it and shows its status: it never runs a capability itself, and the node
 * runs only what the gateway dispatches (`task.execute`), each capability behind the browser's own
 * permission prompt.
 *
 * Credentials: until it is paired, the node connects with a short-lived single-use bootstrap
 * token the operator session asked for (`node.bootstrap`); the gateway binds that token to this
 * node's device at its first connection and revokes it once the node has stored its node token
 * (`pairing.credential`). After that the node reconnects with its node token, bound to its key.
 */
import type { JsonObject, RequestFrame } from '../../../sdk/client/frames.js';
import type { WireError } from '../../../sdk/client/errors.js';
import { GatewayClient, gatewayWsUrl, type Status } from './client.js';
import { deleteSecret, getSecret, loadOrCreateDeviceKey, setSecret, type DeviceKey } from './keys.js';

export const BROWSER_CAPABILITIES = [
  { id: 'browser.notify', version: '1' },
  { id: 'browser.location', version: '1' },
] as const;

export type NodeState =
  | { state: 'stopped'; reason?: string }
  | { state: 'starting' }
  | { state: 'awaiting_pairing'; deviceId: string }
  | { state: 'paired'; deviceId: string; nodeName: string | null }
  | { state: 'reconnecting'; deviceId: string }
  | { state: 'failed'; reason: string };

export interface NodeLogEntry {
  at: string;
  text: string;
}

type Answer = { ok: true; result: JsonObject } | { ok: false; error: WireError };

export class BrowserNode {
  #client: GatewayClient | null = null;
  #key: DeviceKey | null = null;
  #state: NodeState = { state: 'stopped' };
  #nodeName: string | null = null;
  readonly log: NodeLogEntry[] = [];

  constructor(
    private readonly getBootstrapToken: () => Promise<string>,
    private readonly onChange: () => void,
  ) {}

  get state(): NodeState {
    return this.#state;
  }

  get deviceId(): string | null {
    return this.#key?.device_id ?? null;
  }

  /** The browser's notification permission: what `browser.notify` readiness follows. */
  static notifyPermission(): NotificationPermission | 'unsupported' {
    return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
  }

  #set(s: NodeState): void {
    this.#state = s;
    this.onChange();
  }

  #note(text: string): void {
    this.log.unshift({ at: new Date().toISOString(), text });
    if (this.log.length > 50) this.log.length = 50;
    this.onChange();
  }

  /** Starts the node: with its node token if it has one, else with a fresh bootstrap token. */
  async start(): Promise<void> {
    if (this.#client) return;
    this.#set({ state: 'starting' });
    try {
      this.#key = await loadOrCreateDeviceKey('node');
      const nodeToken = await getSecret('node-token');
      const token = nodeToken ?? (await this.getBootstrapToken());
      this.#connect(token, nodeToken !== undefined);
    } catch (e) {
      this.#set({ state: 'failed', reason: e instanceof Error ? e.message : String(e) });
    }
  }

  stop(reason = 'stopped by the operator'): void {
    const c = this.#client;
    this.#client = null;
    c?.stop(reason);
    this.#set({ state: 'stopped', reason });
  }

  /** The browser's location permission (the Permissions API; 'prompt' until the user decides). */
  static async locationPermission(): Promise<PermissionState | 'unsupported'> {
    if (typeof navigator === 'undefined' || !('geolocation' in navigator) || !navigator.permissions) return 'unsupported';
    try {
      return (await navigator.permissions.query({ name: 'geolocation' })).state;
    } catch {
      return 'unsupported';
    }
  }

  /** Asks for the location permission (the browser prompts), then re-reports readiness. */
  async requestLocationPermission(): Promise<void> {
    await new Promise<void>((resolve) => navigator.geolocation.getCurrentPosition(() => resolve(), () => resolve(), { timeout: 30_000 }));
    this.#note(`location permission: ${await BrowserNode.locationPermission()}`);
    await this.reportReady();
  }

  /** Asks for the notification permission (a user gesture must call this), then re-reports readiness. */
  async requestNotifyPermission(): Promise<NotificationPermission | 'unsupported'> {
    if (typeof Notification === 'undefined') return 'unsupported';
    const p = await Notification.requestPermission();
    this.#note(`notification permission: ${p}`);
    await this.reportReady();
    return p;
  }

  /** Tells the gateway which capabilities are ready now (a full snapshot). */
  async reportReady(): Promise<void> {
    const c = this.#client;
    if (!c || c.status.state !== 'open') return;
    const notify = BrowserNode.notifyPermission();
    const location = await BrowserNode.locationPermission();
    const capabilities = BROWSER_CAPABILITIES.map((cap) => {
      const [perm, what] = cap.id === 'browser.notify' ? [notify, 'notification'] : [location, 'location'];
      return perm === 'granted' ? { id: cap.id, version: cap.version, ready: true } : { id: cap.id, version: cap.version, ready: false, reason: perm === 'unsupported' ? `this browser has no ${what} API` : `${what} permission is ${perm}` };
    });
    const r = await c.request<{ state: string | null; dispatchable: string[] }>('capability.ready', { capabilities });
    this.#note(`capability.ready sent (pairing ${r.state ?? 'none'}; dispatchable: ${r.dispatchable.join(', ') || 'none'})`);
  }

  #connect(token: string, withNodeToken: boolean): void {
    const key = this.#key!;
    const client: GatewayClient = new GatewayClient({
      url: gatewayWsUrl(),
      token,
      key,
      role: 'node',
      capabilities: BROWSER_CAPABILITIES.map((c) => ({ ...c })),
      device: { label: 'this browser', platform: navigator.platform || 'browser', mode: 'browser-node' },
      onStatus: (s) => this.#onStatus(client, s, withNodeToken),
      onConnected: () => {
        this.#set(withNodeToken ? { state: 'paired', deviceId: key.device_id, nodeName: this.#nodeName } : { state: 'awaiting_pairing', deviceId: key.device_id });
        void this.reportReady().catch((e: unknown) => this.#note(`capability.ready failed: ${e instanceof Error ? e.message : String(e)}`));
      },
      onRequest: (req): Promise<Answer> => this.#onRequest(client, req),
    });
    this.#client = client;
    client.start();
  }

  #onStatus(client: GatewayClient, s: Status, withNodeToken: boolean): void {
    if (client !== this.#client) return;
    if (s.state === 'reconnecting' && this.#key) this.#set({ state: 'reconnecting', deviceId: this.#key.device_id });
    if (s.state !== 'closed') return;
    this.#client = null;
    if (!withNodeToken) {
      // The bootstrap connection ends once the node is paired (its single-use token is revoked):
      // carry on with the node token if one was stored meanwhile.
      void getSecret('node-token').then((t) => {
        if (this.#client !== null) return;
        if (t !== undefined) this.#connect(t, true);
        else this.#set({ state: 'failed', reason: s.reason });
      });
      return;
    }
    if (s.code === 4001) {
      // The pairing was revoked (or the token): it is dead. Starting again asks to be paired anew.
      void deleteSecret('node-token');
      this.#note(`node token refused (${s.reason}): it was deleted; start the node again to pair anew`);
      this.#set({ state: 'stopped', reason: 'the pairing was revoked' });
      return;
    }
    this.#set({ state: 'failed', reason: s.reason });
  }

  async #onRequest(client: GatewayClient, req: RequestFrame): Promise<Answer> {
    if (req.type === 'pairing.credential') {
      const p = req.payload as { token?: unknown; node_name?: unknown };
      if (typeof p.token !== 'string') return { ok: false, error: { code: 'invalid_request', message: 'no token in pairing.credential' } };
      await setSecret('node-token', p.token);
      this.#nodeName = typeof p.node_name === 'string' ? p.node_name : null;
      this.#note(`paired as ${this.#nodeName ?? '(unnamed)'}; node token stored`);
      // Reconnect with the node token once this answer is on its way.
      const token = p.token;
      setTimeout(() => {
        if (client !== this.#client) return;
        this.#client = null;
        client.stop('reconnecting with the node token');
        this.#connect(token, true);
      }, 50);
      return { ok: true, result: { stored: true } };
    }
    if (req.type !== 'task.execute') return { ok: false, error: { code: 'unsupported_request', message: `this node does not handle ${req.type}` } };
    const p = req.payload as { dispatch_id?: unknown; capability?: unknown; args?: unknown };
    if (p.capability === 'browser.location') return this.#locate(p.args, String(p.dispatch_id));
    if (p.capability !== 'browser.notify') return { ok: false, error: { code: 'forbidden', message: `${String(p.capability)} is not offered by this browser node`, details: { reason: 'not_enabled' } } };
    const perm = BrowserNode.notifyPermission();
    if (perm !== 'granted') return { ok: false, error: { code: 'forbidden', message: `notification permission is ${perm}`, details: { reason: 'permission' } } };
    const args = (typeof p.args === 'object' && p.args !== null ? p.args : {}) as { title?: unknown; body?: unknown; tag?: unknown };
    const title = typeof args.title === 'string' ? args.title : '';
    const body = typeof args.body === 'string' ? args.body : undefined;
    const tag = typeof args.tag === 'string' ? args.tag : undefined;
    const n = new Notification(title, { ...(body !== undefined ? { body } : {}), ...(tag !== undefined ? { tag } : {}) });
    const shownAt = new Date().toISOString();
    this.#note(`browser.notify ran (dispatch ${String(p.dispatch_id)}): ${title}`);
    // Closing is the user's; the evidence says what was shown and when.
    void n;
    return { ok: true, result: { output: { shown: true, shown_at: shownAt }, evidence: { permission: perm, title_chars: title.length, body_chars: body?.length ?? 0 } } };
  }

  async #locate(rawArgs: unknown, dispatchId: string): Promise<Answer> {
    const perm = await BrowserNode.locationPermission();
    if (perm !== 'granted') return { ok: false, error: { code: 'forbidden', message: `location permission is ${perm}`, details: { reason: 'permission' } } };
    const args = (typeof rawArgs === 'object' && rawArgs !== null ? rawArgs : {}) as { max_age_ms?: unknown; high_accuracy?: unknown };
    const maximumAge = typeof args.max_age_ms === 'number' ? args.max_age_ms : 0;
    const enableHighAccuracy = args.high_accuracy === true;
    try {
      const pos = await new Promise<GeolocationPosition>((resolve, reject) => navigator.geolocation.getCurrentPosition(resolve, reject, { maximumAge, enableHighAccuracy, timeout: 15_000 }));
      this.#note(`browser.location ran (dispatch ${dispatchId})`);
      return {
        ok: true,
        result: { output: { latitude: pos.coords.latitude, longitude: pos.coords.longitude, accuracy_m: pos.coords.accuracy, at: new Date(pos.timestamp).toISOString() }, evidence: { permission: perm, high_accuracy: enableHighAccuracy, max_age_ms: maximumAge } },
      };
    } catch (e) {
      const err = e as GeolocationPositionError;
      return { ok: false, error: { code: err.code === 1 ? 'forbidden' : err.code === 3 ? 'timeout' : 'internal', message: `the browser gave no position: ${err.message ?? String(e)}` } };
    }
  }
}
