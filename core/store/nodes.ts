/**
 * Node pairing persistence (migration 7): one row per pairing request of a node device. Rows
 * only: the state machine, audit and events belong to core/nodes.
 *
 * A device has at most one live pairing (`awaiting_human` or `approved`, a unique partial index);
 * `denied` and `revoked` rows are kept as history, and a later connection of the device starts a
 * new row. Transitions are conditional updates (`transition`): of two racing resolutions exactly
 * one changes the row.
 */
import { prepared, type SqlDb } from './statements.js';

export type PairingState = 'awaiting_human' | 'approved' | 'denied' | 'revoked';
export const PAIRING_STATES: readonly PairingState[] = ['awaiting_human', 'approved', 'denied', 'revoked'];
export type TrustLevel = 'local' | 'remote';

export interface PairingRow {
  id: string;
  device_id: string;
  pubkey: string;
  state: PairingState;
  trust_level: TrustLevel | null;
  node_name: string | null;
  label: string | null;
  platform: string | null;
  version: string | null;
  mode: string | null;
  remote_address: string;
  /** JSON array of the capabilities the node advertised at its latest connection. */
  advertised: string;
  /** JSON array of the capabilities the operator allowed. */
  allowlist: string;
  token_id: string | null;
  credential_delivered_at: number | null;
  requested_at: number;
  updated_at: number;
  resolved_at: number | null;
  /** JSON of the actor who resolved it. */
  resolved_by: string | null;
  reason: string | null;
}

/** Columns a transition may set (never id, device_id, pubkey or requested_at). */
export type PairingChange = Partial<Pick<PairingRow, 'state' | 'trust_level' | 'node_name' | 'allowlist' | 'token_id' | 'credential_delivered_at' | 'resolved_at' | 'resolved_by' | 'reason' | 'updated_at' | 'advertised' | 'label' | 'platform' | 'version' | 'mode' | 'remote_address'>>;
const CHANGEABLE = new Set<string>(['state', 'trust_level', 'node_name', 'allowlist', 'token_id', 'credential_delivered_at', 'resolved_at', 'resolved_by', 'reason', 'updated_at', 'advertised', 'label', 'platform', 'version', 'mode', 'remote_address']);

export class NodePairingRepo {
  constructor(private readonly db: SqlDb) {}

  insert(r: PairingRow): void {
    prepared(
      this.db,
      `INSERT INTO node_pairings (id, device_id, pubkey, state, trust_level, node_name, label, platform, version, mode, remote_address, advertised, allowlist,
         token_id, credential_delivered_at, requested_at, updated_at, resolved_at, resolved_by, reason)
       VALUES (@id, @device_id, @pubkey, @state, @trust_level, @node_name, @label, @platform, @version, @mode, @remote_address, @advertised, @allowlist,
         @token_id, @credential_delivered_at, @requested_at, @updated_at, @resolved_at, @resolved_by, @reason)`,
    ).run(r);
  }

  get(id: string): PairingRow | undefined {
    return prepared(this.db, 'SELECT * FROM node_pairings WHERE id = ?').get(id) as PairingRow | undefined;
  }

  /** The device's live pairing (awaiting_human or approved), if any. */
  live(deviceId: string): PairingRow | undefined {
    return prepared(this.db, "SELECT * FROM node_pairings WHERE device_id = ? AND state IN ('awaiting_human', 'approved')").get(deviceId) as PairingRow | undefined;
  }

  /** The approved pairing with this node name, if any. */
  byName(name: string): PairingRow | undefined {
    return prepared(this.db, "SELECT * FROM node_pairings WHERE node_name = ? AND state = 'approved'").get(name) as PairingRow | undefined;
  }

  /** The pairing whose node token this is, if any. */
  byToken(tokenId: string): PairingRow | undefined {
    return prepared(this.db, 'SELECT * FROM node_pairings WHERE token_id = ?').get(tokenId) as PairingRow | undefined;
  }

  /** Newest first; one state, or all. */
  list(state: PairingState | undefined, limit: number): PairingRow[] {
    if (state !== undefined) return prepared(this.db, 'SELECT * FROM node_pairings WHERE state = ? ORDER BY requested_at DESC, id LIMIT ?').all(state, limit) as PairingRow[];
    return prepared(this.db, 'SELECT * FROM node_pairings ORDER BY requested_at DESC, id LIMIT ?').all(limit) as PairingRow[];
  }

  countAwaiting(): number {
    return (prepared(this.db, "SELECT COUNT(*) AS n FROM node_pairings WHERE state = 'awaiting_human'").get() as { n: number }).n;
  }

  /**
   * Apply `set` if the pairing is in one of `from`; returns the updated row, or undefined when it
   * was not (missing, or moved on: the caller lost a race).
   */
  transition(id: string, from: readonly PairingState[], set: PairingChange): PairingRow | undefined {
    const cols = Object.keys(set).filter((k) => CHANGEABLE.has(k));
    if (cols.length === 0 || from.length === 0) return undefined;
    const sql = `UPDATE node_pairings SET ${cols.map((c) => `${c} = @${c}`).join(', ')} WHERE id = @__id AND state IN (${from.map((_, i) => `@__from${i}`).join(', ')})`;
    const params: Record<string, unknown> = { __id: id };
    for (const c of cols) params[c] = (set as Record<string, unknown>)[c];
    from.forEach((f, i) => (params[`__from${i}`] = f));
    if (prepared(this.db, sql).run(params).changes !== 1) return undefined;
    return this.get(id);
  }
}
