/**
 * Persistence of schedules and their fires (migration 10). Rows only: when a schedule is due, how a
 * tick is claimed and what a fire starts belong to core/scheduler.
 */
import { prepared, type SqlDb } from './statements.js';

export type ScheduleKind = 'cron' | 'interval' | 'heartbeat';
export type MissedPolicy = 'skip' | 'catch_up_once';
export type ScheduleState = 'active' | 'paused';

export interface ScheduleRow {
  id: string;
  name: string;
  kind: ScheduleKind;
  cron: string | null;
  timezone: string;
  every_ms: number | null;
  /** Interval ticks are anchor_at + k * every_ms. */
  anchor_at: number;
  /** JSON of the target (core/scheduler/types.ts ScheduleTarget). */
  target: string;
  missed_policy: MissedPolicy;
  state: ScheduleState;
  next_fire_at: number | null;
  last_fire_at: number | null;
  fires: number;
  missed: number;
  created_by: string;
  created_at: number;
  updated_at: number;
}

export interface ScheduleFireRow {
  schedule_id: string;
  fire_at: number;
  ticks: number;
  fired_at: number;
  owner: string;
  run_id: string | null;
  conversation_id: string | null;
  message_id: string | null;
  /** The workflow a playbook target started (migration 15). */
  workflow_id: string | null;
  /** JSON {code, message} when the target could not be started. */
  error: string | null;
}

const ADVANCE_SET = `next_fire_at = @next, updated_at = @now, missed = missed + @missed,
  fires = fires + @fired, last_fire_at = CASE WHEN @fired = 1 THEN @now ELSE last_fire_at END`;

export class ScheduleRepo {
  constructor(private readonly db: SqlDb) {}

  insert(r: ScheduleRow): void {
    prepared(
      this.db,
      `INSERT INTO schedules (id, name, kind, cron, timezone, every_ms, anchor_at, target, missed_policy, state, next_fire_at, last_fire_at, fires, missed, created_by, created_at, updated_at)
       VALUES (@id, @name, @kind, @cron, @timezone, @every_ms, @anchor_at, @target, @missed_policy, @state, @next_fire_at, @last_fire_at, @fires, @missed, @created_by, @created_at, @updated_at)`,
    ).run(r);
  }

  get(id: string): ScheduleRow | undefined {
    return prepared(this.db, 'SELECT * FROM schedules WHERE id = ?').get(id) as ScheduleRow | undefined;
  }

  byName(name: string): ScheduleRow | undefined {
    return prepared(this.db, 'SELECT * FROM schedules WHERE name = ?').get(name) as ScheduleRow | undefined;
  }

  list(): ScheduleRow[] {
    return prepared(this.db, 'SELECT * FROM schedules ORDER BY name').all() as ScheduleRow[];
  }

  /**
   * Active schedules whose next tick is at or before `now`, earliest first. A read, not a claim:
   * the claim is `advance`. (On PostgreSQL `advance` locks the row `FOR UPDATE SKIP LOCKED`, so a
   * replica never queues on a row another replica is claiming: it moves on, and that replica wins.)
   */
  due(now: number, limit: number): ScheduleRow[] {
    return prepared(this.db, "SELECT * FROM schedules WHERE state = 'active' AND next_fire_at <= ? ORDER BY next_fire_at, id LIMIT ?").all(now, limit) as ScheduleRow[];
  }

  /** The earliest next tick of any active schedule (null when none). */
  earliest(): number | null {
    const r = prepared(this.db, "SELECT MIN(next_fire_at) AS t FROM schedules WHERE state = 'active'").get() as { t: number | null };
    return r.t;
  }

  /**
   * The claim: moves an active schedule's next tick from `expected` to `next` (null: it never
   * fires again), only if nobody moved it first. True when this caller won the due tick(s).
   */
  advance(id: string, expected: number, next: number | null, fired: boolean, missed: number, now: number): boolean {
    return (
      prepared(this.db, {
        sqlite: `UPDATE schedules SET ${ADVANCE_SET} WHERE id = @id AND state = 'active' AND next_fire_at = @expected`,
        // A row locked by another replica's claim is skipped (not waited for): that claim wins,
        // and if it rolls back the schedule is still due on the next pass.
        postgres: `UPDATE schedules SET ${ADVANCE_SET}
          WHERE id = (SELECT id FROM schedules WHERE id = @id AND state = 'active' AND next_fire_at = @expected FOR UPDATE SKIP LOCKED)`,
      }).run({ id, expected, next, fired: fired ? 1 : 0, missed, now }).changes === 1
    );
  }

  setState(id: string, state: ScheduleState, nextFireAt: number | null, now: number): boolean {
    return prepared(this.db, 'UPDATE schedules SET state = ?, next_fire_at = ?, updated_at = ? WHERE id = ? AND state <> ?').run(state, nextFireAt, now, id, state).changes === 1;
  }

  remove(id: string): boolean {
    return prepared(this.db, 'DELETE FROM schedules WHERE id = ?').run(id).changes === 1;
  }

  /** Records a fire; false when this tick already fired (the unique key). */
  insertFire(f: ScheduleFireRow): boolean {
    return (
      prepared(
        this.db,
        `INSERT INTO schedule_fires (schedule_id, fire_at, ticks, fired_at, owner, run_id, conversation_id, message_id, workflow_id, error)
         VALUES (@schedule_id, @fire_at, @ticks, @fired_at, @owner, @run_id, @conversation_id, @message_id, @workflow_id, @error) ON CONFLICT DO NOTHING`,
      ).run(f).changes === 1
    );
  }

  updateFire(scheduleId: string, fireAt: number, changes: Pick<ScheduleFireRow, 'run_id' | 'conversation_id' | 'message_id' | 'workflow_id' | 'error'>): void {
    prepared(this.db, 'UPDATE schedule_fires SET run_id = @run_id, conversation_id = @conversation_id, message_id = @message_id, workflow_id = @workflow_id, error = @error WHERE schedule_id = @schedule_id AND fire_at = @fire_at').run({ ...changes, schedule_id: scheduleId, fire_at: fireAt });
  }

  /** Fires of a schedule, newest first. */
  fires(scheduleId: string, limit: number): ScheduleFireRow[] {
    return prepared(this.db, 'SELECT * FROM schedule_fires WHERE schedule_id = ? ORDER BY fire_at DESC LIMIT ?').all(scheduleId, limit) as ScheduleFireRow[];
  }
}
