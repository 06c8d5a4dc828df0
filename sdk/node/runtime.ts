/**
 * `TyrumNode`: a node on top of the client SDK, so a third party writes a node in a page of code.
 *
 * It connects with `role: "node"` and the capabilities it implements. Without a stored node token
 * it connects with an enrollment token (`tyrum node enroll`) and waits to be paired; when an
 * operator approves, the gateway sends `pairing.credential` once: the node stores the token
 * (`CredentialStore`, 0600 and fsynced for the file one) before it confirms, then reconnects
 * with it. A `task.execute` runs the handler of that capability with the dispatch's deadline as an
 * AbortSignal; a capability this node does not implement or its operator did not enable is
 * refused here (`forbidden`, `details.reason: "not_enabled"`), whatever the gateway asks.
 *
 * Closed 4001 with its node token (the pairing was revoked): the stored token is deleted and, if
 * an enrollment token is at hand, the node asks to be paired again (a new pairing, which starts
 * with an empty allowlist); otherwise it stops.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { TyrumClient, type CloseInfo, type RespondFn } from '../client/client.js';
import type { JsonObject, RequestFrame } from '../client/frames.js';

/** What a capability handler returns: the output its contract describes, and evidence. */
export interface NodeCapabilityResult {
  output: Record<string, unknown>;
  evidence?: Record<string, unknown>;
  /**
   * Evidence blobs (a screenshot, a log file): stored by the gateway as artifacts, attached to the
   * call's run, and referenced from its evidence. `content_base64` (standard base64) or `text`
   * (UTF-8); the whole answer is one frame, so keep them under the gateway's max_frame_bytes.
   */
  artifacts?: Array<{ media_type: string; name?: string; content_base64?: string; text?: string }>;
}

export interface NodeDispatchContext {
  dispatch_id: string;
  /** Aborted at the dispatch's deadline (`timeout_ms`) and when the node stops. */
  signal: AbortSignal;
  /** The dispatch's deadline, in ms from its start. */
  timeout_ms: number;
  /** Stream evidence while the dispatch runs (attempt.evidence); kept even if the dispatch is cut off. */
  evidence(item: Record<string, unknown>): Promise<void>;
}

/** A capability handler may throw this to answer with a wire error code. */
export class NodeTaskError extends Error {
  constructor(
    readonly code: 'forbidden' | 'invalid_request' | 'not_found' | 'conflict' | 'timeout' | 'internal',
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'NodeTaskError';
  }
}

export interface NodeCapability {
  id: string;
  version: string;
  handler: (args: Record<string, unknown>, ctx: NodeDispatchContext) => Promise<NodeCapabilityResult>;
  /**
   * Whether it can run now (a local permission, a device present...): true, or why not. Reported
   * to the gateway (capability.ready) after every connection and on `refreshReady()`. Default: ready.
   */
  ready?: () => Promise<true | string> | true | string;
}

/** Where the node keeps its node token. */
export interface CredentialStore {
  load(): string | null;
  save(token: string): void;
  clear(): void;
}

/** The node token in a file, written 0600 and fsynced (file and directory) before it is confirmed. */
export class FileCredentialStore implements CredentialStore {
  constructor(readonly path: string) {}

  load(): string | null {
    try {
      const t = readFileSync(this.path, 'utf8').trim();
      return t.length > 0 ? t : null;
    } catch {
      return null;
    }
  }

  save(token: string): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${token}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dfd = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  clear(): void {
    rmSync(this.path, { force: true });
  }
}

export type NodeStatus =
  | { state: 'waiting_for_approval' }
  | { state: 'paired'; node_name: string }
  | { state: 'connected'; with: 'node_token' | 'enrollment_token' }
  | { state: 'revoked' }
  | { state: 'stopped'; reason: string };

export interface TyrumNodeOptions {
  url?: string;
  deviceKey: KeyObject;
  /** Used while the node has no node token of its own (and to pair again after a revocation). */
  enrollmentToken?: string;
  credentials: CredentialStore;
  capabilities: NodeCapability[];
  device?: { label?: string; platform?: string; version?: string };
  /** Dispatches run at once up to this many; more are refused as rate limited. Default 4. */
  maxConcurrent?: number;
  onStatus?: (status: NodeStatus) => void;
  /** Passed to the client (e.g. a non-loopback ws:// URL in a lab). */
  allowInsecureTransport?: boolean;
}

export class TyrumNode {
  private client: TyrumClient | null = null;
  private stopped = false;
  private running = 0;
  private readonly inflight = new Set<AbortController>();
  private readonly handlers: Map<string, NodeCapability>;

  constructor(private readonly o: TyrumNodeOptions) {
    this.handlers = new Map(o.capabilities.map((c) => [c.id, c]));
  }

  /** Connect (with the stored node token, else the enrollment token). Resolves once connected. */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(reason = 'stopped'): Promise<void> {
    this.stopped = true;
    for (const c of this.inflight) c.abort(new Error('the node is stopping'));
    const c = this.client;
    this.client = null;
    await c?.close();
    this.o.onStatus?.({ state: 'stopped', reason });
  }

  private async connect(): Promise<void> {
    const stored = this.o.credentials.load();
    const token = stored ?? this.o.enrollmentToken;
    if (token === undefined) throw new NodeTaskError('invalid_request', 'no node token is stored and no enrollment token was given: an operator makes one with tyrum node enroll');
    const client = new TyrumClient({
      ...(this.o.url !== undefined ? { url: this.o.url } : {}),
      token,
      deviceKey: this.o.deviceKey,
      role: 'node',
      capabilities: this.o.capabilities.map((c) => ({ id: c.id, version: c.version })),
      device: { ...(this.o.device ?? {}), mode: 'node' },
      ...(this.o.allowInsecureTransport ? { allowInsecureTransport: true } : {}),
    });
    this.client = client;
    client.on('request', (req, respond) => void this.onRequest(client, req, respond));
    client.on('close', (info) => this.onClose(client, info, stored !== null));
    await client.connect();
    // Readiness first: once 'connected' is reported, the gateway knows what it may dispatch.
    await this.refreshReady();
    this.o.onStatus?.({ state: 'connected', with: stored !== null ? 'node_token' : 'enrollment_token' });
    if (stored === null) this.o.onStatus?.({ state: 'waiting_for_approval' });
  }

  /** Tell the gateway which capabilities are ready now (after a local permission changed, say). */
  async refreshReady(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const capabilities = await Promise.all(
      this.o.capabilities.map(async (c) => {
        let r: true | string;
        try {
          r = c.ready ? await c.ready() : true;
        } catch (e) {
          r = e instanceof Error ? e.message : String(e);
        }
        return r === true ? { id: c.id, version: c.version, ready: true } : { id: c.id, version: c.version, ready: false, reason: r.slice(0, 200) };
      }),
    );
    await client.request('capability.ready', { capabilities });
  }

  private onClose(client: TyrumClient, info: CloseInfo, withNodeToken: boolean): void {
    if (this.stopped || client !== this.client || info.willReconnect) return;
    const refused = info.code === 4001 || info.error?.httpStatus === 401;
    if (refused && withNodeToken) {
      // The pairing was revoked: the token is dead. Ask again if we can.
      this.o.credentials.clear();
      this.o.onStatus?.({ state: 'revoked' });
      if (this.o.enrollmentToken !== undefined) {
        void this.connect().catch((e: unknown) => void this.stop(e instanceof Error ? e.message : String(e)));
        return;
      }
    }
    void this.stop(info.reason || info.error?.message || `closed (${info.code})`);
  }

  private async onRequest(client: TyrumClient, req: RequestFrame, respond: RespondFn): Promise<void> {
    if (req.type === 'pairing.credential') {
      const p = req.payload as { token?: unknown; node_name?: unknown };
      if (typeof p.token !== 'string') return respond({ ok: false, error: { code: 'invalid_request', message: 'no token in pairing.credential' } });
      try {
        this.o.credentials.save(p.token);
      } catch (e) {
        return respond({ ok: false, error: { code: 'internal', message: `could not store the node token: ${e instanceof Error ? e.message : String(e)}` } });
      }
      respond({ ok: true, result: { stored: true } });
      this.o.onStatus?.({ state: 'paired', node_name: typeof p.node_name === 'string' ? p.node_name : '' });
      // Reconnect with the node token (a newer connection replaces this one at the gateway).
      setImmediate(() => {
        if (this.stopped || client !== this.client) return;
        this.client = null;
        void client.close().then(() => this.connect()).catch((e: unknown) => void this.stop(e instanceof Error ? e.message : String(e)));
      });
      return;
    }
    if (req.type !== 'task.execute') return respond({ ok: false, error: { code: 'unsupported_request', message: `this node does not handle ${req.type}` } });
    const p = req.payload as { dispatch_id?: unknown; capability?: unknown; args?: unknown; timeout_ms?: unknown };
    const cap = typeof p.capability === 'string' ? this.handlers.get(p.capability) : undefined;
    if (!cap) return respond({ ok: false, error: { code: 'forbidden', message: `${String(p.capability)} is not enabled on this node`, details: { reason: 'not_enabled' } } });
    if (this.running >= (this.o.maxConcurrent ?? 4)) return respond({ ok: false, error: { code: 'rate_limited', message: 'the node is busy', details: { retryable: true } } });
    const abort = new AbortController();
    const timeoutMs = typeof p.timeout_ms === 'number' && p.timeout_ms > 0 ? p.timeout_ms : 30_000;
    const timer = setTimeout(() => abort.abort(new NodeTaskError('timeout', `no result within ${timeoutMs} ms`)), timeoutMs);
    this.running += 1;
    this.inflight.add(abort);
    try {
      const args = typeof p.args === 'object' && p.args !== null && !Array.isArray(p.args) ? (p.args as Record<string, unknown>) : {};
      let seq = 0;
      const dispatchId = String(p.dispatch_id);
      const evidence = async (item: Record<string, unknown>): Promise<void> => {
        await client.request('attempt.evidence', { dispatch_id: dispatchId, seq: seq++, evidence: item as JsonObject });
      };
      const r = await cap.handler(args, { dispatch_id: dispatchId, signal: abort.signal, timeout_ms: timeoutMs, evidence });
      respond({ ok: true, result: { output: r.output as JsonObject, ...(r.evidence ? { evidence: r.evidence as JsonObject } : {}), ...(r.artifacts && r.artifacts.length > 0 ? { artifacts: r.artifacts } : {}) } });
    } catch (e) {
      // A NodeTaskError answers with its wire code and details; anything else is an internal error.
      const known = e instanceof NodeTaskError;
      respond({ ok: false, error: { code: known ? e.code : 'internal', message: e instanceof Error ? e.message : String(e), ...(known && e.details ? { details: e.details as JsonObject } : {}) } });
    } finally {
      clearTimeout(timer);
      this.running -= 1;
      this.inflight.delete(abort);
    }
  }
}

/** The default state directory's files: the device key and the node token. */
export function nodeStatePaths(dir: string): { deviceKey: string; token: string } {
  return { deviceKey: join(dir, 'device.key'), token: join(dir, 'node-token') };
}
