/**
 * The replica directory, node connections and cross-replica node dispatches (migration 21).
 * Rows only: heartbeats, pruning and the dispatch protocol belong to core/nodes/cluster.ts.
 * Written only by gateways on PostgreSQL (several replicas on one database); SQLite has the
 * tables and never writes them.
 *
 * A dispatch row moves `pending` → `claimed` (by its target replica, a conditional update) →
 * `done` (its result, written only under the claim), or `pending`/`claimed` → `done` with an
 * error when its target replica is pruned as dead.
 *
 * Heartbeats, the dead cutoff and dispatch deadlines are measured with `leaseClock`: on
 * PostgreSQL the server's clock (the `now` arguments are then used only for informational
 * columns such as `updated_at`), so replicas whose clocks disagree agree on who is dead.
 */
import { leaseClock, prepared, type SqlDb } from './statements.js';

export interface ReplicaRow {
  id: string;
  started_at: number;
  heartbeat_at: number;
}

export interface NodeConnectionRow {
  connection_id: string;
  replica_id: string;
  device_id: string;
  pairing_id: string;
  connected_at: number;
}

export type DispatchState = 'pending' | 'claimed' | 'done';

export interface DispatchRow {
  id: string;
  pairing_id: string;
  origin_replica: string;
  target_replica: string;
  /** JSON of the task.execute payload. */
  request: string;
  state: DispatchState;
  /** JSON of the outcome (core/nodes/cluster.ts), once done. */
  result: string | null;
  created_at: number;
  deadline_at: number;
  updated_at: number;
}

export class ClusterRepo {
  /** SQL for "now" in heartbeats and deadlines (see `leaseClock`). */
  private readonly clock: string;

  constructor(private readonly db: SqlDb) {
    this.clock = leaseClock(db);
  }

  /** Inserts or moves this replica's heartbeat. */
  beat(id: string, now: number): void {
    prepared(this.db, `INSERT INTO replicas (id, started_at, heartbeat_at) VALUES (@id, ${this.clock}, ${this.clock}) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`).run({ id, now });
  }

  replicas(): ReplicaRow[] {
    return prepared(this.db, 'SELECT id, started_at, heartbeat_at FROM replicas ORDER BY id').all() as ReplicaRow[];
  }

  /** Replicas whose last heartbeat is more than `deadMs` old. */
  dead(now: number, deadMs: number): ReplicaRow[] {
    return prepared(this.db, `SELECT id, started_at, heartbeat_at FROM replicas WHERE heartbeat_at < ${this.clock} - @dead_ms ORDER BY id`).all({ now, dead_ms: deadMs }) as ReplicaRow[];
  }

  /**
   * Removes a replica (dead, or stopping): its node connections go, and its unfinished dispatches
   * are done with `unsent` (never claimed: nothing was sent) or `unknown` (claimed: the node may have run it). Returns the connections removed and the dispatches failed. Guarded
   * by `deadMs` (its heartbeat more than that old; null: remove unconditionally, a replica removing
   * itself): a replica that beat again meanwhile is left alone.
   */
  remove(id: string, deadMs: number | null, unsent: string, unknown: string, now: number): { removed: boolean; connections: NodeConnectionRow[]; failed: string[] } {
    const gone =
      deadMs === null
        ? prepared(this.db, 'DELETE FROM replicas WHERE id = ?').run(id).changes
        : prepared(this.db, `DELETE FROM replicas WHERE id = @id AND heartbeat_at < ${this.clock} - @dead_ms`).run({ id, now, dead_ms: deadMs }).changes;
    if (gone === 0 && deadMs !== null) return { removed: false, connections: [], failed: [] };
    const connections = prepared(this.db, 'SELECT connection_id, replica_id, device_id, pairing_id, connected_at FROM node_connections WHERE replica_id = ? ORDER BY connection_id').all(id) as NodeConnectionRow[];
    prepared(this.db, 'DELETE FROM node_connections WHERE replica_id = ?').run(id);
    const failed = (prepared(this.db, "SELECT id FROM node_dispatches WHERE target_replica = ? AND state <> 'done' ORDER BY id").all(id) as Array<{ id: string }>).map((r) => r.id);
    prepared(this.db, "UPDATE node_dispatches SET state = 'done', result = ?, updated_at = ? WHERE target_replica = ? AND state = 'pending'").run(unsent, now, id);
    prepared(this.db, "UPDATE node_dispatches SET state = 'done', result = ?, updated_at = ? WHERE target_replica = ? AND state = 'claimed'").run(unknown, now, id);
    return { removed: gone === 1, connections, failed };
  }

  connect(r: NodeConnectionRow): void {
    prepared(this.db, 'INSERT INTO node_connections (connection_id, replica_id, device_id, pairing_id, connected_at) VALUES (@connection_id, @replica_id, @device_id, @pairing_id, @connected_at) ON CONFLICT (connection_id) DO NOTHING').run(r);
  }

  disconnect(connectionId: string): boolean {
    return prepared(this.db, 'DELETE FROM node_connections WHERE connection_id = ?').run(connectionId).changes === 1;
  }

  /** The node connections of live replicas (those with a row), oldest first. */
  connections(): NodeConnectionRow[] {
    return prepared(this.db, 'SELECT c.connection_id, c.replica_id, c.device_id, c.pairing_id, c.connected_at FROM node_connections c JOIN replicas r ON r.id = c.replica_id ORDER BY c.connected_at, c.connection_id').all() as NodeConnectionRow[];
  }

  /** The newest connection holding this pairing on a replica other than `except`, if any. */
  holder(pairingId: string, except: string): NodeConnectionRow | undefined {
    return prepared(this.db, 'SELECT c.connection_id, c.replica_id, c.device_id, c.pairing_id, c.connected_at FROM node_connections c JOIN replicas r ON r.id = c.replica_id WHERE c.pairing_id = ? AND c.replica_id <> ? ORDER BY c.connected_at DESC, c.connection_id DESC LIMIT 1').get(pairingId, except) as NodeConnectionRow | undefined;
  }

  /**
   * A dispatch for `target_replica`, pending; false when its target is no longer a live replica.
   * Its deadline is `deadline_at - created_at` from now by `leaseClock` (the server's on PostgreSQL).
   */
  dispatch(r: Omit<DispatchRow, 'state' | 'result' | 'updated_at'>): boolean {
    const n = prepared(
      this.db,
      `INSERT INTO node_dispatches (id, pairing_id, origin_replica, target_replica, request, state, result, created_at, deadline_at, updated_at)
       SELECT @id, @pairing_id, @origin_replica, @target_replica, @request, 'pending', NULL, @created_at, ${this.clock} + @ttl_ms, @created_at
       WHERE EXISTS (SELECT 1 FROM replicas WHERE id = @target_replica)`,
    ).run({ ...r, now: r.created_at, ttl_ms: r.deadline_at - r.created_at }).changes;
    return n === 1;
  }

  get(id: string): DispatchRow | undefined {
    return prepared(this.db, 'SELECT id, pairing_id, origin_replica, target_replica, request, state, result, created_at, deadline_at, updated_at FROM node_dispatches WHERE id = ?').get(id) as DispatchRow | undefined;
  }

  /** Ids of the pending dispatches addressed to this replica. */
  pendingFor(replicaId: string, limit: number): string[] {
    return (prepared(this.db, "SELECT id FROM node_dispatches WHERE target_replica = ? AND state = 'pending' ORDER BY created_at, id LIMIT ?").all(replicaId, limit) as Array<{ id: string }>).map((r) => r.id);
  }

  /** Claims a pending dispatch addressed to `replicaId`; exactly one claimer wins. */
  claim(id: string, replicaId: string, now: number): DispatchRow | undefined {
    const n = prepared(this.db, "UPDATE node_dispatches SET state = 'claimed', updated_at = ? WHERE id = ? AND target_replica = ? AND state = 'pending'").run(now, id, replicaId).changes;
    return n === 1 ? this.get(id) : undefined;
  }

  /** Writes the result of a dispatch this replica claimed; false when it no longer holds the claim. */
  complete(id: string, replicaId: string, result: string, now: number): boolean {
    return prepared(this.db, "UPDATE node_dispatches SET state = 'done', result = ?, updated_at = ? WHERE id = ? AND target_replica = ? AND state = 'claimed'").run(result, now, id, replicaId).changes === 1;
  }

  /** The origin gave up (timeout, abort): a dispatch not claimed yet is done with `result`; false if already claimed or done. */
  withdraw(id: string, result: string, now: number): boolean {
    return prepared(this.db, "UPDATE node_dispatches SET state = 'done', result = ?, updated_at = ? WHERE id = ? AND state = 'pending'").run(result, now, id).changes === 1;
  }

  /** The origin read the result (or gave up): the row goes. */
  forget(id: string): void {
    prepared(this.db, 'DELETE FROM node_dispatches WHERE id = ?').run(id);
  }

  /** Rows more than `graceMs` past their deadline, whoever wrote them (their origin is gone). */
  sweep(now: number, graceMs: number): number {
    return prepared(this.db, `DELETE FROM node_dispatches WHERE deadline_at < ${this.clock} - @grace_ms`).run({ now, grace_ms: graceMs }).changes;
  }
}
