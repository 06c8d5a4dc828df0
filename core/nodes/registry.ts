/**
 * The node connections of this gateway, and what pairing means for each of them.
 *
 * A node connects with a node-role token. With anything but its own node token (normally an
 * enrollment token from `tyrum node enroll`) the connection only asks to be paired: the gateway
 * creates or refreshes the device's `awaiting_human` pairing, and the connection waits. Once an
 * operator approves it (over the protocol, or from the CLI in another process), the gateway mints
 * the node-scoped token, bound to the device, and sends it to the waiting connection once
 * (`pairing.credential`); the node stores it and reconnects with it. If the node does not confirm,
 * the minted token is revoked and the next enrollment connection gets a fresh one. A pairing
 * whose token was delivered is never re-delivered: an enrollment connection for it is closed
 * 4001 (holding an enrollment token and the device key is not enough to take a pairing over).
 * Denied connections are closed 4001; revoked pairings lose their token, whose sockets the
 * gateway's revocation watcher closes.
 *
 * One connection per node device: a newer one replaces the older (closed 1000).
 */
import { TyrumError, isTyrumError } from '../errors/index.js';
import type { AuditLog } from '../audit/log.js';
import type { EventLog } from '../execution/events.js';
import type { TokenService } from '../auth/tokens.js';
import type { Store } from '../store/index.js';
import type { Peer, Session } from '../protocol/session.js';
import { CLOSE } from '../protocol/session.js';
import type { PairingService, Pairing } from './pairing.js';
import { capabilityRef } from './contracts.js';
import type { NodeConnections } from './host.js';

/** Streamed evidence kept per dispatch, at most. */
export const STREAMED_EVIDENCE_MAX_ITEMS = 64;
export const STREAMED_EVIDENCE_MAX_BYTES = 256 * 1024;

export interface StreamedEvidence {
  items: Array<Record<string, unknown>>;
  bytes: number;
  dropped: number;
}

/** How long a node has to store and confirm its credential. */
export const CREDENTIAL_TIMEOUT_MS = 10_000;

export interface NodeRegistryOptions {
  store: Store;
  pairings: PairingService;
  tokens: TokenService;
  events: EventLog;
  audit: AuditLog;
  log(level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>): void;
  credentialTimeoutMs?: number;
}

interface NodeConnection {
  session: Session;
  /** Evidence streamed for the dispatches this connection runs, by dispatch id. */
  dispatches: Map<string, StreamedEvidence>;
  /** The node's latest capability.ready snapshot: id -> ready or why not. */
  ready: Map<string, { ready: boolean; reason: string | null }>;
  /** The pairing this connection asked for (enrollment connections) or holds (node-token ones). */
  pairingId: string | null;
  delivering: boolean;
}

export class NodeRegistry implements NodeConnections {
  private readonly conns = new Map<string, NodeConnection>();
  private readonly timeoutMs: number;

  constructor(private readonly o: NodeRegistryOptions) {
    this.timeoutMs = o.credentialTimeoutMs ?? CREDENTIAL_TIMEOUT_MS;
  }

  /** True when a connection of this node device is open. */
  connected(deviceId: string): boolean {
    for (const c of this.conns.values()) if (c.session.peer?.deviceId === deviceId) return true;
    return false;
  }

  /** The open connection holding this pairing's node token, if any. */
  paired(pairingId: string): Session | undefined {
    for (const c of this.conns.values()) {
      if (c.pairingId === pairingId && c.session.peer?.token.kind === 'node' && c.session.isReady) return c.session;
    }
    return undefined;
  }

  /**
   * Whether the node reported the capability ready on its paired connection: true, or why not
   * (never reported, reported not ready with its reason, or no such connection).
   */
  readiness(pairingId: string, capability: string): true | string {
    const s = this.paired(pairingId);
    const c = s ? this.conns.get(s.connectionId) : undefined;
    if (!c) return 'not connected';
    const r = c.ready.get(capability);
    if (!r) return 'the node has not reported it ready (capability.ready)';
    return r.ready ? true : (r.reason ?? 'the node reports it not ready');
  }

  /** Collect what the node streams for `dispatchId` (attempt.evidence) until `done`. */
  track(pairingId: string, dispatchId: string): StreamedEvidence & { done(): void } {
    const s = this.paired(pairingId);
    const c = s ? this.conns.get(s.connectionId) : undefined;
    const d: StreamedEvidence = { items: [], bytes: 0, dropped: 0 };
    c?.dispatches.set(dispatchId, d);
    return Object.assign(d, { done: () => void c?.dispatches.delete(dispatchId) });
  }

  /** attempt.evidence from a node, for a dispatch running on this very connection. */
  evidence(peer: Peer, p: { dispatch_id: string; seq: number; evidence: Record<string, unknown> }): { accepted: true } {
    const d = this.conns.get(peer.connectionId)?.dispatches.get(p.dispatch_id);
    if (!d) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no dispatch ${p.dispatch_id} is running on this connection`, { dispatch_id: p.dispatch_id });
    const bytes = Buffer.byteLength(JSON.stringify(p.evidence));
    if (d.items.length >= STREAMED_EVIDENCE_MAX_ITEMS || d.bytes + bytes > STREAMED_EVIDENCE_MAX_BYTES) {
      d.dropped += 1;
      throw new TyrumError('TYRUM_ERR_RATE_LIMITED', `at most ${STREAMED_EVIDENCE_MAX_ITEMS} items or ${STREAMED_EVIDENCE_MAX_BYTES} bytes of evidence per dispatch`, { dispatch_id: p.dispatch_id });
    }
    d.bytes += bytes;
    d.items.push({ seq: p.seq, at: new Date().toISOString(), ...p.evidence });
    return { accepted: true };
  }

  /**
   * capability.ready from a node: a full snapshot for its connection. Only what it advertised
   * may be reported. Answers what the gateway may dispatch to it now.
   */
  reportReady(peer: Peer, caps: Array<{ id: string; version: string; ready: boolean; reason?: string }>): { pairing_id: string | null; state: string | null; dispatchable: string[] } {
    const conn = this.conns.get(peer.connectionId);
    if (!conn) throw new TyrumError('TYRUM_ERR_INVALID_STATE', 'this connection is not a node connection the gateway tracks');
    const unknown = caps.find((c) => !peer.capabilities.some((a) => a.id === c.id && a.version === c.version));
    if (unknown) throw new TyrumError('TYRUM_ERR_INVALID_REQUEST', `${unknown.id}@${unknown.version} was not advertised in connect.init`, { capability: unknown.id });
    conn.ready = new Map(caps.map((c) => [c.id, { ready: c.ready, reason: c.reason ?? null }]));
    const row = conn.pairingId === null ? undefined : this.o.store.pairings.get(conn.pairingId);
    const allowed = row?.state === 'approved' && peer.token.kind === 'node' ? (JSON.parse(row.allowlist) as Array<{ id: string }>).map((a) => a.id) : [];
    return { pairing_id: row?.id ?? null, state: row?.state ?? null, dispatchable: allowed.filter((id) => conn.ready.get(id)?.ready === true).sort() };
  }

  /** A session finished its handshake. Only nodes concern the registry. */
  onReady(session: Session): void {
    const peer = session.peer;
    if (!peer || peer.role !== 'node') return;
    // A newer connection replaces an older one of the device; a connection that only asks to be
    // paired never replaces one that holds the node token.
    for (const other of [...this.conns.values()]) {
      const o = other.session.peer;
      if (o?.deviceId === peer.deviceId && (peer.token.kind === 'node' || o.token.kind !== 'node')) other.session.close(CLOSE.NORMAL, 'replaced by a newer connection');
    }
    const conn: NodeConnection = { session, pairingId: null, delivering: false, ready: new Map(), dispatches: new Map() };
    this.conns.set(session.connectionId, conn);
    if (peer.token.kind === 'node') {
      const pairing = this.o.store.pairings.byToken(peer.token.id);
      if (!pairing || pairing.state !== 'approved' || pairing.device_id !== peer.deviceId) {
        session.close(CLOSE.UNAUTHORIZED, 'this node token belongs to no approved pairing');
        return;
      }
      conn.pairingId = pairing.id;
      // Connecting with the token is proof it arrived, even if the confirmation was lost.
      if (pairing.credential_delivered_at === null) this.o.store.tx(() => this.o.store.pairings.transition(pairing.id, ['approved'], { credential_delivered_at: Date.now() }));
      return;
    }
    try {
      const { pairing } = this.o.pairings.request({
        device_id: peer.deviceId,
        pubkey: peer.pubkey,
        label: peer.device.label,
        platform: peer.device.platform,
        version: peer.device.version,
        mode: 'node',
        remote_address: peer.remoteAddress,
        advertised: peer.capabilities.map(capabilityRef),
      });
      conn.pairingId = pairing.pairing_id;
    } catch (e) {
      this.o.log('warn', 'node pairing request refused', { device_id: peer.deviceId, error: e instanceof Error ? e.message : String(e) });
      session.close(CLOSE.UNAUTHORIZED, isTyrumError(e) && e.code === 'TYRUM_ERR_PAIRING_LIMIT' ? 'too many pairings wait for an operator' : 'pairing request failed');
      return;
    }
    void this.settle(conn);
  }

  /** The pairing whose node token this open connection holds, if it holds one. */
  heldPairing(session: Session): string | undefined {
    const c = this.conns.get(session.connectionId);
    return c && c.pairingId !== null && session.peer?.token.kind === 'node' && session.isReady ? c.pairingId : undefined;
  }

  onClosed(session: Session): void {
    this.conns.delete(session.connectionId);
  }

  /**
   * Pairings changed (here or in another process): deliver credentials to approved nodes that
   * wait for one, close connections whose pairing was denied or revoked.
   */
  async reconcile(): Promise<void> {
    await Promise.all([...this.conns.values()].map((c) => this.settle(c)));
  }

  private async settle(conn: NodeConnection): Promise<void> {
    const peer = conn.session.peer;
    if (!peer || conn.pairingId === null || conn.delivering) return;
    const row = this.o.store.pairings.get(conn.pairingId);
    if (!row) return;
    if (row.state === 'denied') return conn.session.close(CLOSE.UNAUTHORIZED, 'pairing denied');
    if (row.state === 'revoked') return conn.session.close(CLOSE.UNAUTHORIZED, 'pairing revoked');
    if (row.state !== 'approved' || peer.token.kind === 'node') return;
    if (row.credential_delivered_at !== null) {
      return conn.session.close(CLOSE.UNAUTHORIZED, 'already paired: connect with the node token, or ask the operator to revoke and pair again');
    }
    conn.delivering = true;
    try {
      await this.deliver(conn, this.o.pairings.get(row.id));
    } finally {
      conn.delivering = false;
    }
  }

  /** Mint the node token, send it once, and keep it only if the node confirms it stored it. */
  private async deliver(conn: NodeConnection, pairing: Pairing): Promise<void> {
    const { store, tokens, events, audit } = this.o;
    const stale = pairing.token_id;
    const { token, record } = await tokens.create({ kind: 'node', roles: ['node'], scopes: [], deviceId: pairing.device_id, label: `node:${pairing.node_name ?? pairing.device_id}`, createdBy: `pairing:${pairing.pairing_id}` });
    const actor = { kind: 'gateway' };
    const issued = events.transact(() => {
      // A token minted earlier and never confirmed (the gateway stopped mid-delivery) dies now.
      if (stale !== null) store.tokens.revoke(stale, Date.now());
      const updated = store.pairings.transition(pairing.pairing_id, ['approved'], { token_id: record.id, updated_at: Date.now() });
      if (!updated || updated.credential_delivered_at !== null) {
        store.tokens.revoke(record.id, Date.now());
        return false;
      }
      audit.appendInTx('node.credential_issued', actor, { pairing_id: pairing.pairing_id, device_id: pairing.device_id, token_id: record.id });
      return true;
    });
    if (!issued) return;
    let failure: string | null = null;
    try {
      const answer = await conn.session.request(
        'pairing.credential',
        {
          pairing_id: pairing.pairing_id,
          token,
          token_id: record.id,
          device_id: pairing.device_id,
          node_name: pairing.node_name,
          trust_level: pairing.trust_level,
          capability_allowlist: pairing.capability_allowlist.map((c) => ({ id: c.id, version: c.version })),
        },
        { timeoutMs: this.timeoutMs },
      );
      if (!answer.ok) failure = `${answer.error.code}: ${answer.error.message.slice(0, 200)}`;
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
    }
    events.transact(() => {
      if (failure === null) {
        store.pairings.transition(pairing.pairing_id, ['approved'], { credential_delivered_at: Date.now(), updated_at: Date.now() });
        audit.appendInTx('node.credential_delivered', actor, { pairing_id: pairing.pairing_id, device_id: pairing.device_id, token_id: record.id });
        // A single-use bootstrap token has done its job once its device holds a node token.
        const via = conn.session.token;
        if (via.single_use === true && store.tokens.revoke(via.id, Date.now())) audit.appendInTx('token.revoked', actor, { token_id: via.id, reason: 'single-use bootstrap token used' });
        return;
      }
      store.tokens.revoke(record.id, Date.now());
      store.pairings.transition(pairing.pairing_id, ['approved'], { token_id: null, updated_at: Date.now() });
      audit.appendInTx('node.credential_undelivered', actor, { pairing_id: pairing.pairing_id, device_id: pairing.device_id, token_id: record.id, error: failure });
    });
    if (failure !== null) this.o.log('warn', 'node credential not delivered', { pairing_id: pairing.pairing_id, error: failure });
  }
}
