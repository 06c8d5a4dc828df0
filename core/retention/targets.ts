/**
 * The built-in retention targets: runs, the event outbox, schedule fire records and
 * conversations. Each walks its table in a fixed order from a cursor, examining at most `limit`
 * rows a batch, and decides row by row from what the store says now (inside the batch's
 * transaction in a real sweep), so a row that became needed since the last batch stays.
 */
import type { Footprint, Store } from '../store/index.js';
import type { Cursor, RetentionTarget, SweepBatch, SweepRequest } from './types.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

function add(into: SweepBatch, table: string, f: Footprint): void {
  if (f.rows === 0) return;
  into.rows += f.rows;
  into.bytes += f.bytes;
  into.detail![table] = (into.detail![table] ?? 0) + f.rows;
}

function empty(cursor: Cursor): SweepBatch {
  return { rows: 0, bytes: 0, detail: {}, cursor, done: false };
}

/**
 * One batch over rows in insertion order (rowid cursor) that ends at the first row created at or
 * after the cutoff: nothing inserted after it can have ended before the cutoff. `visit` decides
 * each row and adds what it removes to the batch.
 */
function walkCreated<R extends { rid: number; created_at: number }>(req: SweepRequest, scan: (after: number, limit: number) => R[], visit: (row: R, out: SweepBatch) => void): SweepBatch {
  const after = typeof req.cursor === 'number' ? req.cursor : 0;
  const scanned = scan(after, req.limit);
  const out = empty(after);
  out.done = scanned.length < req.limit;
  for (const r of scanned) {
    if (r.created_at >= req.cutoff) {
      out.done = true;
      break;
    }
    out.cursor = r.rid;
    visit(r, out);
  }
  return out;
}

/** The turn a run was submitted for: agent turns key their tool runs `<turn id>:<call id>`. */
function turnOf(idempotencyKey: string | null): string | null {
  if (idempotencyKey === null || !idempotencyKey.startsWith('turn_')) return null;
  const i = idempotencyKey.indexOf(':');
  return i === -1 ? null : idempotencyKey.slice(0, i);
}

/** The workflow a run was submitted for: playbook steps key their runs `wf:<workflow id>:<step>`. */
function workflowOf(idempotencyKey: string | null): string | null {
  const m = idempotencyKey === null ? null : /^wf:(wf_[0-9a-f]{16}):\d+$/.exec(idempotencyKey);
  return m ? m[1]! : null;
}

/**
 * Runs that ended before the cutoff, with their steps, attempts and approvals (removed by the
 * foreign keys' ON DELETE CASCADE). Never a run that is not terminal (queued, running, paused for
 * an approval or an operator), one with a pending approval, or one a queued or running agent turn
 * submitted: after a restart such a turn re-submits its tool calls by idempotency key and must get
 * the same run back, not run the call again.
 *
 * Runs are walked in insertion order and the walk ends at the first run created at or after the
 * cutoff: nothing inserted after it can have ended before the cutoff.
 */
export function runsTarget(store: Store): RetentionTarget {
  return {
    name: 'runs',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      let live: Set<string> | null = null;
      let liveWorkflows: Set<string> | null = null;
      return walkCreated(req, (after, limit) => repo.scanRuns(after, limit), (r, out) => {
        if (!TERMINAL.has(r.state) || r.done_at >= req.cutoff) return;
        const turn = turnOf(r.idempotency_key);
        if (turn !== null && (live ??= repo.liveTurnIds()).has(turn)) return;
        const wf = workflowOf(r.idempotency_key);
        if (wf !== null && (liveWorkflows ??= repo.liveWorkflowIds()).has(wf)) return;
        if (repo.hasPendingApproval(r.id)) return;
        const f = repo.runFootprint(r.id);
        if (!req.dryRun) repo.deleteRun(r.id);
        for (const [table, fp] of Object.entries(f)) add(out, table, fp);
      });
    },
  };
}

/**
 * Outbox events older than the cutoff, oldest first: a prefix of the log, so a client's cursor
 * never lands in a hole (a client away for longer than events_days finds the oldest kept event
 * and should re-read the runs it cares about). The newest event always stays, so the log's head
 * (where a new subscriber starts) is never lost.
 */
export function eventsTarget(store: Store): RetentionTarget {
  return {
    name: 'events',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      const after = typeof req.cursor === 'number' ? req.cursor : 0;
      const scanned = repo.scanOutbox(after, req.limit);
      const out = empty(after);
      out.done = scanned.length < req.limit;
      let through = after;
      let bytes = 0;
      for (const e of scanned) {
        if (e.at >= req.cutoff) {
          out.done = true;
          break;
        }
        through = e.rid;
        bytes += e.bytes;
      }
      const n = scanned.filter((e) => e.rid <= through).length;
      if (n > 0 && !req.dryRun) repo.deleteOutbox(after, through);
      add(out, 'outbox', { rows: n, bytes });
      out.cursor = through;
      return out;
    },
  };
}

/**
 * Schedule fire records older than the cutoff (runs_days): the history of past ticks. A tick that
 * fired can never fire again whether or not its record stays (the schedule's next_fire_at has moved
 * past it), so an old record is history only; the schedule keeps its counters.
 */
export function scheduleFiresTarget(store: Store): RetentionTarget {
  return {
    name: 'schedule_fires',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      const after = typeof req.cursor === 'number' ? req.cursor : 0;
      const scanned = repo.scanFires(after, req.limit);
      const out = empty(after);
      out.done = scanned.length < req.limit;
      const gone: number[] = [];
      let bytes = 0;
      for (const f of scanned) {
        if (f.at >= req.cutoff) {
          out.done = true;
          break;
        }
        gone.push(f.rid);
        bytes += f.bytes;
        out.cursor = f.rid;
      }
      if (gone.length > 0 && !req.dryRun) repo.deleteFires(gone);
      add(out, 'schedule_fires', { rows: gone.length, bytes });
      return out;
    },
  };
}

/** `<updated_at>:<id>` of the last conversation a batch finished with. */
function conversationCursor(c: Cursor): { updated_at: number; id: string } | null {
  if (typeof c !== 'string') return null;
  const i = c.indexOf(':');
  return { updated_at: Number(c.slice(0, i)), id: c.slice(i + 1) };
}

/**
 * Conversations inactive since before the cutoff (conversations_days; default keep), with their
 * messages, turns and deliveries; never one with a queued or running turn, a message waiting for
 * a turn, or a pending delivery. A long conversation is removed over several batches, at most
 * `limit` rows each, children first; the conversation row goes last.
 */
export function conversationsTarget(store: Store): RetentionTarget {
  return {
    name: 'conversations',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      let after = conversationCursor(req.cursor);
      const out = empty(req.cursor);
      const idle = repo.idleConversations(req.cutoff, after, req.limit);
      if (req.dryRun) {
        for (const c of idle) {
          for (const [table, fp] of Object.entries(repo.conversationFootprint(c.id))) add(out, table, fp);
          after = c;
        }
      } else {
        let left = req.limit;
        for (const c of idle) {
          const { removed, done } = repo.deleteConversationPart(c.id, left);
          for (const [table, fp] of Object.entries(removed)) {
            add(out, table, fp);
            left -= fp.rows;
          }
          // Unfinished: the next batch starts at this conversation again (it is still idle).
          if (!done) {
            out.cursor = after === null ? null : `${after.updated_at}:${after.id}`;
            return out;
          }
          after = c;
          if (left <= 0) break;
        }
      }
      out.cursor = after === null ? null : `${after.updated_at}:${after.id}`;
      out.done = idle.length < req.limit && (req.dryRun || after === null || idle[idle.length - 1]!.id === after.id);
      return out;
    },
  };
}

/**
 * Finished workflows (succeeded, failed, cancelled) that ended before the cutoff, with their gate
 * decisions. A running or paused workflow always stays (and so do the runs of its steps: see
 * runsTarget).
 */
export function workflowsTarget(store: Store): RetentionTarget {
  return {
    name: 'workflows',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      return walkCreated(req, (after, limit) => repo.scanWorkflows(after, limit), (w, out) => {
        if (!TERMINAL.has(w.state) || w.finished_at === null || w.finished_at >= req.cutoff) return;
        const f = repo.workflowFootprint(w.id);
        if (!req.dryRun) repo.deleteWorkflow(w.id);
        add(out, 'workflows', f);
      });
    },
  };
}

/** An artifact no run holds stays this long (a put whose attachment is still being committed). */
export const UNATTACHED_GRACE_MS = 60 * 60 * 1000;

/**
 * Artifacts (core/artifacts) created before the cutoff, and artifacts no run holds any more (their
 * runs were removed) once an hour old: the rows (attachments go with them) in the batch's
 * transaction, the blob files after it commits (`deleteBlob`). Runs that referenced an artifact
 * keep the reference in their evidence; a download then answers 404.
 */
export function artifactsTarget(store: Store, deleteBlob: (id: string) => Promise<void>, now: () => number = Date.now): RetentionTarget {
  return {
    name: 'artifacts',
    sweep(req: SweepRequest): SweepBatch {
      const repo = store.retention;
      const after = typeof req.cursor === 'number' ? req.cursor : 0;
      const scanned = repo.scanArtifacts(after, req.limit);
      const out = empty(after);
      out.done = scanned.length < req.limit;
      const graceCut = now() - UNATTACHED_GRACE_MS;
      for (const a of scanned) {
        out.cursor = a.rid;
        if (!(a.created_at < req.cutoff || (a.attached === 0 && a.created_at < graceCut))) continue;
        const f = repo.artifactFootprint(a.id);
        if (!req.dryRun) {
          repo.deleteArtifact(a.id);
          req.afterCommit(() => void deleteBlob(a.id).catch(() => undefined));
        }
        add(out, 'artifacts', f);
        out.bytes += a.size;
      }
      return out;
    },
  };
}
