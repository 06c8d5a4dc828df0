/**
 * Nodes across gateway replicas on one PostgreSQL database (issue 16, item 2).
 *
 * Each gateway process is a replica with a random id and a row in `replicas`, its heartbeat moved
 * every {@link REPLICA_HEARTBEAT_MS}; a replica whose heartbeat is older than
 * {@link REPLICA_DEAD_BEATS} beats is dead, and the first live replica to notice removes it: its
 * `node_connections` rows go, and its unfinished dispatches are done with a coded failure
 * (TYRUM_ERR_NODE_UNAVAILABLE when nothing was sent, TYRUM_ERR_NODE_DISCONNECTED when it had
 * claimed the task: the outcome is unknown). Every replica writes a row per node connection it
 * holds (on connect, removed on close; re-written with each heartbeat, so a replica that was
 * taken for dead and comes back is listed again), and reads the directory with each heartbeat:
 * presence and `connected` show the nodes of every live replica, and a node gone from another
 * replica's rows is announced as a disconnect is (`presence.upserted` disconnected, then
 * `presence.pruned`).
 *
 * A step on replica A whose node is connected to replica B: A writes a `node_dispatches` row
 * (the task.execute payload, addressed to B, with a deadline) and notifies `tyrum_nodes` (no
 * payload: ids and arguments stay in the database); B claims the row with a conditional update,
 * checks the node (advertised definition, readiness) and sends the task over its socket exactly
 * as a local dispatch does, then writes the answer (or its coded error) under the claim and
 * notifies; A picks it up (the notification, or its poll every {@link DISPATCH_POLL_MS}) and the
 * answer goes through NodeHost's validation as a local one does: it is the node's, hostile.
 */
import { randomBytes } from 'node:crypto';
import { ERROR_CODES, TyrumError, isTyrumError, type ErrorCode as TyrumErrorCode } from '../errors/index.js';
import type { NodeConnectionRow, NodeDispatchChannel, PairingRow, Store } from '../store/index.js';
import type { PeerAnswer, Session } from '../protocol/session.js';
import type { AllowedCapability } from './pairing.js';
import { nodeError, sendToNode, type NodeAnswer, type NodeConnections, type NodeTask, type RemoteNodes } from './host.js';
import type { PresenceEntry } from './presence.js';

/** How often a replica moves its heartbeat and reads the directory. */
export const REPLICA_HEARTBEAT_MS = 2_000;
/** A replica that missed this many heartbeats is dead. */
export const REPLICA_DEAD_BEATS = 3;
/** A waiting dispatch looks at its row this often when no notification came. */
export const DISPATCH_POLL_MS = 1_000;
/** How long past the task's own timeout the origin waits for the holder's answer. */
export const DISPATCH_GRACE_MS = 5_000;
/** A serialized answer larger than this is refused by the holder (the node's answer is hostile). */
export const DISPATCH_RESULT_MAX_BYTES = 16 * 1024 * 1024;

export interface NodeClusterOptions {
  store: Store;
  /** The store's dispatch wake-ups (`Store.nodeChannel`: a NodeCluster exists on PostgreSQL only). */
  channel: NodeDispatchChannel;
  connections: NodeConnections;
  /** This process's replica id (random by default). */
  replicaId?: string;
  heartbeatMs?: number;
  deadBeats?: number;
  pollMs?: number;
  /** A node connection of another replica appeared in the directory, or left it (closed, or its replica pruned). */
  onRemoteChange?(change: 'connected' | 'disconnected', row: NodeConnectionRow): void;
  log(level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void;
  now?: () => number;
}

/** What a holder writes back into a dispatch row. */
type Outcome = { kind: 'answer'; answer: PeerAnswer; streamed: Array<Record<string, unknown>>; dropped: number } | { kind: 'error'; code: TyrumErrorCode; message: string; details: Record<string, unknown> };

export class NodeCluster implements RemoteNodes {
  readonly replicaId: string;
  private readonly heartbeatMs: number;
  private readonly deadMs: number;
  private readonly pollMs: number;
  private readonly now: () => number;
  /** Node connections held here: connection id -> row. */
  private readonly local = new Map<string, NodeConnectionRow>();
  /** Other replicas' node connections as of the last directory read. */
  private remote = new Map<string, NodeConnectionRow>();
  /** Dispatches this replica waits for: id -> wake. */
  private readonly waiting = new Map<string, () => void>();
  /** Dispatches this replica is serving. */
  private readonly serving = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private listener: { close(): Promise<void> } | null = null;
  private looking = false;
  private closed = false;

  constructor(private readonly o: NodeClusterOptions) {
    this.replicaId = o.replicaId ?? `rep_${randomBytes(9).toString('hex')}`;
    this.heartbeatMs = o.heartbeatMs ?? REPLICA_HEARTBEAT_MS;
    this.deadMs = this.heartbeatMs * (o.deadBeats ?? REPLICA_DEAD_BEATS);
    this.pollMs = o.pollMs ?? DISPATCH_POLL_MS;
    this.now = o.now ?? Date.now;
  }

  /** Registers this replica, listens for dispatch notifications and starts the heartbeat. */
  start(): void {
    this.tick();
    this.listener = this.o.channel.listen((e) => {
      if (e !== 'lost') this.wake();
    });
    this.timer = setInterval(() => this.tick(), this.heartbeatMs);
    this.timer.unref();
  }

  /** Stops, and removes this replica's row and connections (its pending dispatches fail at once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.listener?.close();
    try {
      this.o.store.tx(() => {
        this.o.store.cluster.remove(this.replicaId, null, failure('TYRUM_ERR_NODE_UNAVAILABLE', 'the replica holding the node stopped before it sent the task; nothing was sent'), failure('TYRUM_ERR_NODE_DISCONNECTED', 'the replica holding the node stopped while the node worked'), this.now());
        this.o.channel.notify();
      });
    } catch (e) {
      this.o.log('warn', 'could not remove this replica from the directory (the others prune it)', { err: e instanceof Error ? e.message : String(e) });
    }
    for (const wake of this.waiting.values()) wake();
  }

  /** A node connection holding its node token became ready here. */
  connected(session: Session, pairingId: string): void {
    const peer = session.peer;
    if (!peer) return;
    const row: NodeConnectionRow = { connection_id: session.connectionId, replica_id: this.replicaId, device_id: peer.deviceId, pairing_id: pairingId, connected_at: this.now() };
    this.local.set(row.connection_id, row);
    this.write(() => this.o.store.cluster.connect(row));
  }

  /** A node connection closed here. */
  disconnected(connectionId: string): void {
    if (!this.local.delete(connectionId)) return;
    this.write(() => this.o.store.cluster.disconnect(connectionId));
  }

  /** True when a live replica other than this one holds a connection of the device (as of the last directory read). */
  connectedElsewhere(deviceId: string): boolean {
    for (const r of this.remote.values()) if (r.device_id === deviceId) return true;
    return false;
  }

  /** Presence entries for other replicas' node connections (devices with no local entry). */
  presence(localEntries: PresenceEntry[]): PresenceEntry[] {
    const seen = new Set(localEntries.filter((e) => e.connected).map((e) => `${e.device_id}\u0000${e.role}`));
    const byDevice = new Map<string, PresenceEntry>();
    for (const r of this.remote.values()) {
      if (seen.has(`${r.device_id}\u0000node`)) continue;
      const prev = byDevice.get(r.device_id);
      if (prev) {
        prev.connections += 1;
        prev.connected_since = Math.min(prev.connected_since, r.connected_at);
        continue;
      }
      byDevice.set(r.device_id, remoteEntry(this.o.store.pairings.get(r.pairing_id), r, true, this.now()));
    }
    const merged = [...localEntries.filter((e) => !(e.role === 'node' && !e.connected && byDevice.has(e.device_id))), ...byDevice.values()];
    return merged.sort((a, b) => a.device_id.localeCompare(b.device_id) || a.role.localeCompare(b.role));
  }

  holder(pairingId: string): string | undefined {
    return this.o.store.cluster.holder(pairingId, this.replicaId)?.replica_id;
  }

  async send(replica: string, pairing: PairingRow, _allowed: AllowedCapability, task: NodeTask, signal?: AbortSignal): Promise<NodeAnswer> {
    const store = this.o.store;
    const id = task.dispatch_id;
    const created = this.now();
    const waitMs = task.timeout_ms + DISPATCH_GRACE_MS;
    const written = store.tx(() => {
      const ok = store.cluster.dispatch({ id, pairing_id: pairing.id, origin_replica: this.replicaId, target_replica: replica, request: JSON.stringify(task), created_at: created, deadline_at: created + waitMs + this.deadMs });
      if (ok) this.o.channel.notify();
      return ok;
    });
    if (!written) throw nodeError('TYRUM_ERR_NODE_UNAVAILABLE', `node ${pairing.node_name} is not connected (its replica is gone); nothing was sent`, pairing, { failed: 'connected' });
    try {
      const row = await this.waitFor(id, waitMs, signal);
      if (row === undefined) {
        // No answer in time: withdrawn if never claimed (nothing was sent), else the outcome is unknown.
        if (store.tx(() => store.cluster.withdraw(id, failure('TYRUM_ERR_TIMEOUT', 'withdrawn by its origin'), this.now()))) {
          throw nodeError('TYRUM_ERR_NODE_UNAVAILABLE', `replica ${replica} holding node ${pairing.node_name} did not take the task within ${waitMs} ms; nothing was sent`, pairing, { failed: 'connected', dispatch_id: id });
        }
        const late = store.cluster.get(id);
        if (late?.state !== 'done') throw new TyrumError('TYRUM_ERR_TIMEOUT', `node ${pairing.node_name} (on replica ${replica}) did not answer within ${waitMs} ms`, { dispatch_id: id });
        return this.outcome(late.result, pairing);
      }
      return this.outcome(row, pairing);
    } finally {
      try {
        store.tx(() => store.cluster.forget(id));
      } catch {
        // The sweep removes it past its deadline.
      }
    }
  }

  /** Waits until the dispatch is done (its result), or undefined after `ms`; an abort rejects. */
  private waitFor(id: string, ms: number, signal?: AbortSignal): Promise<string | null | undefined> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (v: string | null | undefined, err?: unknown): void => {
        if (settled) return;
        settled = true;
        clearInterval(poll);
        clearTimeout(limit);
        this.waiting.delete(id);
        signal?.removeEventListener('abort', onAbort);
        if (err !== undefined) reject(err);
        else resolve(v);
      };
      const look = (): void => {
        let row;
        try {
          row = this.o.store.cluster.get(id);
        } catch {
          return; // the store unavailable: the poll looks again
        }
        if (row === undefined) finish(undefined, new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', `the dispatch ${id} row is gone; its outcome is unknown`, { dispatch_id: id }));
        else if (row.state === 'done') finish(row.result);
        else if (this.closed) finish(undefined, new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', 'this gateway is stopping; the outcome of the dispatch is unknown', { dispatch_id: id }));
      };
      const onAbort = (): void => {
        try {
          this.o.store.tx(() => this.o.store.cluster.withdraw(id, failure('TYRUM_ERR_NODE_UNAVAILABLE', 'withdrawn by its origin (the call was cancelled); nothing was sent'), this.now()));
        } catch {
          // The row stays until its deadline; the holder's answer is ignored.
        }
        finish(undefined, signal!.reason);
      };
      const poll = setInterval(look, this.pollMs);
      poll.unref();
      const limit = setTimeout(() => finish(undefined), ms);
      limit.unref();
      this.waiting.set(id, look);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      look();
    });
  }

  /** A done row's result as a node answer, or the coded error the holder (or the pruning) wrote. */
  private outcome(result: string | null | undefined, pairing: PairingRow): NodeAnswer {
    const o = parseOutcome(result);
    if (o === undefined) throw new TyrumError('TYRUM_ERR_NODE_DISCONNECTED', `the replica holding node ${pairing.node_name} wrote a result this gateway cannot read; the outcome is unknown`, { pairing_id: pairing.id });
    if (o.kind === 'error') throw new TyrumError(o.code, o.message, o.details);
    return { answer: o.answer, streamed: { items: o.streamed, dropped: o.dropped } };
  }

  /** The heartbeat: beat, prune the dead, read the directory, serve and collect what was missed. */
  private tick(): void {
    if (this.closed) return;
    const store = this.o.store;
    const now = this.now();
    try {
      store.tx(() => {
        store.cluster.beat(this.replicaId, now);
        // Pruned while this process stalled: listed again.
        for (const row of this.local.values()) store.cluster.connect(row);
        // Rows whose origin gave up on them and is gone (a live origin forgets its own).
        store.cluster.sweep(now, this.deadMs);
      });
      for (const dead of store.cluster.dead(now, this.deadMs)) {
        if (dead.id === this.replicaId) continue;
        const r = store.tx(() => {
          const removed = store.cluster.remove(dead.id, this.deadMs, failure('TYRUM_ERR_NODE_UNAVAILABLE', `the replica holding the node (${dead.id}) died before it sent the task; nothing was sent`), failure('TYRUM_ERR_NODE_DISCONNECTED', `the replica holding the node (${dead.id}) died while the node worked; the outcome is unknown`), now);
          if (removed.failed.length > 0) this.o.channel.notify();
          return removed;
        });
        if (r.removed) this.o.log('warn', 'pruned a dead replica', { replica_id: dead.id, node_connections: r.connections.length, dispatches_failed: r.failed.length });
      }
      this.refresh();
    } catch (e) {
      this.o.log('warn', 'replica heartbeat failed (looks again at the next beat)', { err: e instanceof Error ? e.message : String(e) });
    }
    this.wake();
  }

  /** Reads other replicas' node connections and announces what changed. */
  private refresh(): void {
    const next = new Map<string, NodeConnectionRow>();
    for (const r of this.o.store.cluster.connections()) if (r.replica_id !== this.replicaId) next.set(r.connection_id, r);
    const before = this.remote;
    this.remote = next;
    for (const [id, r] of next) if (!before.has(id)) this.o.onRemoteChange?.('connected', r);
    for (const [id, r] of before) if (!next.has(id)) this.o.onRemoteChange?.('disconnected', r);
  }

  /** A notification (or a beat): serve what is addressed here, wake the waiting dispatches. */
  private wake(): void {
    if (this.looking || this.closed) return;
    this.looking = true;
    setImmediate(() => {
      this.looking = false;
      for (const look of [...this.waiting.values()]) look();
      let ids: string[];
      try {
        ids = this.o.store.cluster.pendingFor(this.replicaId, 64);
      } catch {
        return; // the next beat looks again
      }
      for (const id of ids) if (!this.serving.has(id)) void this.serve(id);
    });
  }

  /** Claims a dispatch addressed here, sends it to the node, writes the outcome under the claim. */
  private async serve(id: string): Promise<void> {
    const store = this.o.store;
    this.serving.add(id);
    try {
      const row = store.tx(() => {
        const claimed = store.cluster.claim(id, this.replicaId, this.now());
        if (claimed) this.o.channel.notify();
        return claimed;
      });
      if (!row) return;
      let outcome: Outcome;
      try {
        const { pairing, allowed, task } = this.taskOf(row.id, row.pairing_id, row.request);
        const { answer, streamed } = await sendToNode(this.o.connections, pairing, allowed, task);
        outcome = { kind: 'answer', answer, streamed: streamed.items, dropped: streamed.dropped };
      } catch (e) {
        outcome = isTyrumError(e) ? { kind: 'error', code: e.code, message: e.message, details: e.details ?? {} } : { kind: 'error', code: 'TYRUM_ERR_NODE_DISCONNECTED', message: `sending the task failed: ${e instanceof Error ? e.message : String(e)}`, details: {} };
      }
      let text = JSON.stringify(outcome);
      if (Buffer.byteLength(text) > DISPATCH_RESULT_MAX_BYTES) {
        text = failure('TYRUM_ERR_NODE_OUTPUT_INVALID', `the node's answer is larger than ${DISPATCH_RESULT_MAX_BYTES} bytes`, { dispatch_id: id });
      }
      const written = store.tx(() => {
        const ok = store.cluster.complete(id, this.replicaId, text, this.now());
        if (ok) this.o.channel.notify();
        return ok;
      });
      if (!written) this.o.log('warn', 'a node dispatch was no longer claimed by this replica when its answer came; dropped', { dispatch_id: id });
    } catch (e) {
      this.o.log('warn', 'serving a node dispatch failed', { dispatch_id: id, err: e instanceof Error ? e.message : String(e) });
    } finally {
      this.serving.delete(id);
    }
  }

  /** The pairing, allowed capability and task of a dispatch row (written by another replica: checked again). */
  private taskOf(id: string, pairingId: string, request: string): { pairing: PairingRow; allowed: AllowedCapability; task: NodeTask } {
    const pairing = this.o.store.pairings.get(pairingId);
    if (!pairing || pairing.state !== 'approved') throw new TyrumError('TYRUM_ERR_NODE_NOT_PAIRED', `pairing ${pairingId} is not approved`, { pairing_id: pairingId, failed: 'paired' });
    let task: NodeTask;
    try {
      task = JSON.parse(request) as NodeTask;
    } catch {
      throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `dispatch ${id} carries no readable task`, { dispatch_id: id });
    }
    if (typeof task !== 'object' || task === null || task.dispatch_id !== id || typeof task.capability !== 'string' || typeof task.capability_version !== 'string' || typeof task.args !== 'object' || task.args === null || !Number.isInteger(task.timeout_ms) || task.timeout_ms <= 0) {
      throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `dispatch ${id} carries a malformed task`, { dispatch_id: id });
    }
    const allowed = (JSON.parse(pairing.allowlist) as AllowedCapability[]).find((a) => a.id === task.capability && a.version === task.capability_version);
    if (!allowed) throw nodeError('TYRUM_ERR_NODE_NOT_ALLOWLISTED', `${task.capability}@${task.capability_version} is not in the allowlist of node ${pairing.node_name}`, pairing, { failed: 'allowlisted' });
    return { pairing, allowed, task: { dispatch_id: id, capability: task.capability, capability_version: task.capability_version, args: task.args, timeout_ms: task.timeout_ms } };
  }

  /** A directory write off the handshake path: a failure is logged, and the next beat writes it again. */
  private write(fn: () => unknown): void {
    try {
      this.o.store.tx(fn);
    } catch (e) {
      this.o.log('warn', 'could not update the node connection directory (the next heartbeat does)', { err: e instanceof Error ? e.message : String(e) });
    }
  }
}

function failure(code: TyrumErrorCode, message: string, details: Record<string, unknown> = {}): string {
  return JSON.stringify({ kind: 'error', code, message, details } satisfies Outcome);
}

/** A dispatch result, checked for shape (written by another replica, carrying a node's answer). */
function parseOutcome(text: string | null | undefined): Outcome | undefined {
  if (typeof text !== 'string') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(v)) return undefined;
  if (v.kind === 'error') {
    if (typeof v.code !== 'string' || !Object.hasOwn(ERROR_CODES, v.code) || typeof v.message !== 'string' || !isRecord(v.details)) return undefined;
    return { kind: 'error', code: v.code as TyrumErrorCode, message: v.message.slice(0, 4000), details: v.details };
  }
  if (v.kind !== 'answer' || !isRecord(v.answer) || !Array.isArray(v.streamed) || !v.streamed.every(isRecord) || !Number.isInteger(v.dropped)) return undefined;
  const a = v.answer;
  if (a.ok === true && isRecord(a.result)) return { kind: 'answer', answer: { ok: true, result: a.result }, streamed: v.streamed, dropped: v.dropped as number };
  if (a.ok === false && isRecord(a.error) && typeof a.error.code === 'string' && typeof a.error.message === 'string' && (a.error.details === undefined || isRecord(a.error.details))) {
    const error = { code: a.error.code, message: a.error.message, ...(a.error.details !== undefined ? { details: a.error.details as Record<string, unknown> } : {}) };
    return { kind: 'answer', answer: { ok: false, error }, streamed: v.streamed, dropped: v.dropped as number };
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A presence entry for a node connection of another replica (or its disconnect). */
export function remoteEntry(p: PairingRow | undefined, r: NodeConnectionRow, connected: boolean, now: number): PresenceEntry {
  return {
    device_id: r.device_id,
    role: 'node',
    label: p?.label ?? null,
    mode: p?.mode ?? 'node',
    platform: p?.platform ?? null,
    version: p?.version ?? null,
    connected,
    connections: connected ? 1 : 0,
    connected_since: r.connected_at,
    last_seen_at: now,
    remote_address: p?.remote_address ?? '',
  };
}
