/**
 * Presence: who is connected to this gateway now, clients and nodes alike. In memory, per
 * process (the durable inventory of devices is the `devices` table): an entry per (device, role),
 * upserted when a connection completes its handshake and as it keeps answering heartbeats
 * (`last_seen_at`, at most every PRESENCE_SEEN_RESOLUTION_MS), marked disconnected when its last
 * connection closes and pruned PRESENCE_TTL_MS later (a quick reconnect keeps it), or pruned as
 * stale when a connected entry has not been seen for PRESENCE_STALE_MS. Each change is a live
 * `presence.upserted` or `presence.pruned` event for operators.
 *
 * Tenants (docs/tenancy.md): an entry is per tenant too (the tenant of the connection's token; a
 * device key may hold tokens of several tenants), and its events go to that tenant's clients
 * only, so no tenant learns who else is connected. `list()` is every entry (presence.list is a
 * host operation: the host sees who is connected to its edge).
 */
import { DEFAULT_TENANT, type Role } from '../../schemas/index.js';

export const PRESENCE_TTL_MS = 60_000;
export const PRESENCE_SEEN_RESOLUTION_MS = 30_000;
export const PRESENCE_STALE_MS = 180_000;
const SWEEP_MS = 10_000;

export interface PresenceEntry {
  device_id: string;
  role: Role;
  label: string | null;
  mode: string | null;
  platform: string | null;
  version: string | null;
  connected: boolean;
  /** Open connections of this device in this role (a CLI opens several). */
  connections: number;
  connected_since: number;
  last_seen_at: number;
  remote_address: string;
}

export interface PresencePeer {
  connectionId: string;
  deviceId: string;
  role: Role;
  remoteAddress: string;
  device: { label: string | null; platform: string | null; version: string | null; mode?: string | null };
  /** The connection's token: its tenant owns the entry (absent: the default tenant). */
  token?: { tenant_id?: string | undefined };
}

export interface PresenceOptions {
  /** A change of an entry, for the clients of `tenant` (the entry's) only. */
  emit(type: 'presence.upserted' | 'presence.pruned', payload: Record<string, unknown>, tenant: string): void;
  now?: () => number;
  ttlMs?: number;
  staleMs?: number;
}

export class PresenceRegistry {
  private readonly entries = new Map<string, PresenceEntry>();
  /** The tenant of each entry (kept out of the entry: the wire's PresenceEntry has no tenant). */
  private readonly tenants = new Map<string, string>();
  private readonly prunes = new Map<string, NodeJS.Timeout>();
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly staleMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly o: PresenceOptions) {
    this.now = o.now ?? Date.now;
    this.ttlMs = o.ttlMs ?? PRESENCE_TTL_MS;
    this.staleMs = o.staleMs ?? PRESENCE_STALE_MS;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  list(): PresenceEntry[] {
    return [...this.entries.values()].sort((a, b) => a.device_id.localeCompare(b.device_id) || a.role.localeCompare(b.role)).map((e) => ({ ...e }));
  }

  connected(peer: PresencePeer): void {
    const key = keyOf(peer);
    const timer = this.prunes.get(key);
    if (timer) clearTimeout(timer);
    this.prunes.delete(key);
    const now = this.now();
    const prev = this.entries.get(key);
    const entry: PresenceEntry = {
      device_id: peer.deviceId,
      role: peer.role,
      label: peer.device.label,
      mode: peer.device.mode ?? (peer.role === 'node' ? 'node' : null),
      platform: peer.device.platform,
      version: peer.device.version,
      connected: true,
      connections: (prev?.connected ? prev.connections : 0) + 1,
      connected_since: prev?.connected ? prev.connected_since : now,
      last_seen_at: now,
      remote_address: peer.remoteAddress,
    };
    this.entries.set(key, entry);
    this.tenants.set(key, tenantOfPeer(peer));
    this.o.emit('presence.upserted', { entry: presenceView(entry) }, tenantOfPeer(peer));
  }

  /** A heartbeat answered: moves last_seen_at, announced at most every PRESENCE_SEEN_RESOLUTION_MS. */
  seen(peer: PresencePeer): void {
    const e = this.entries.get(keyOf(peer));
    if (!e) return;
    const now = this.now();
    const announce = now - e.last_seen_at >= PRESENCE_SEEN_RESOLUTION_MS;
    e.last_seen_at = now;
    if (announce) this.o.emit('presence.upserted', { entry: presenceView(e) }, tenantOfPeer(peer));
  }

  disconnected(peer: PresencePeer): void {
    const key = keyOf(peer);
    const e = this.entries.get(key);
    if (!e) return;
    e.connections = Math.max(0, e.connections - 1);
    if (e.connections > 0) return;
    e.connected = false;
    this.o.emit('presence.upserted', { entry: presenceView(e) }, tenantOfPeer(peer));
    const timer = setTimeout(() => this.prune(key, 'disconnected'), this.ttlMs);
    timer.unref();
    this.prunes.set(key, timer);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const t of this.prunes.values()) clearTimeout(t);
    this.prunes.clear();
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, e] of this.entries) if (e.connected && now - e.last_seen_at > this.staleMs) this.prune(key, 'stale');
  }

  private prune(key: string, reason: 'disconnected' | 'stale'): void {
    const e = this.entries.get(key);
    this.prunes.delete(key);
    if (!e) return;
    const tenant = this.tenants.get(key) ?? DEFAULT_TENANT;
    this.entries.delete(key);
    this.tenants.delete(key);
    this.o.emit('presence.pruned', { device_id: e.device_id, role: e.role, reason }, tenant);
  }
}

/** An entry as the wire shows it (PresenceEntry: times in ISO-8601). */
export function presenceView(e: PresenceEntry): Record<string, unknown> {
  return { ...e, connected_since: new Date(e.connected_since).toISOString(), last_seen_at: new Date(e.last_seen_at).toISOString() };
}

function tenantOfPeer(peer: PresencePeer): string {
  return peer.token?.tenant_id ?? DEFAULT_TENANT;
}

function keyOf(peer: PresencePeer): string {
  return `${tenantOfPeer(peer)}\u0000${peer.deviceId}\u0000${peer.role}`;
}
