/**
 * The sweeper: applies the retention policy (config `retention`, docs/retention.md) to every
 * registered target, in bounded batches.
 *
 * Each batch of a real sweep is one Store unit (Store.commit): the target examines at most
 * `batch_size` rows and removes the expired ones inside that unit, which commits with the group of
 * its turn of the event loop; the sweeper waits until it is durable, then yields to the event loop
 * (setImmediate) before the next batch, so calls and other writers get the write lock between
 * batches. A dry run walks the same batches without a transaction and removes nothing.
 *
 * A real sweep that removed anything appends one `retention.swept` audit entry: per category the
 * rows and bytes removed and the cutoff, never what the rows held. The audit log itself is never
 * swept (archive it: `tyrum audit archive`).
 */
import type { Store } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import type { Retention } from '../config/index.js';
import { TyrumError } from '../errors/index.js';
import type { Cursor, RetentionTarget, SweepBatch } from './types.js';

const DAY_MS = 86_400_000;

export interface SweeperOptions {
  store: Store;
  /** Where real sweeps are recorded. */
  audit: AuditLog;
  /** batch_size and sweep_interval_ms (the days are given per target at `register`). */
  retention: Pick<Retention, 'batchSize' | 'sweepIntervalMs'>;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

/** One category's part of a sweep. */
export interface CategoryReport {
  name: string;
  /** Days kept; null: kept forever (nothing examined). */
  days: number | null;
  /** ISO time: what ended before this went (null when kept forever). */
  cutoff: string | null;
  rows: number;
  bytes: number;
  /** Rows per table, e.g. { runs: 2, steps: 4, attempts: 4 }. */
  detail: Record<string, number>;
  /** Batches (in a real sweep: transactions) it took. */
  batches: number;
}

export interface SweepReport {
  dry_run: boolean;
  started_at: string;
  categories: CategoryReport[];
  rows: number;
  bytes: number;
  /** True when the sweep was stopped (the gateway closing) before every target was done. */
  interrupted: boolean;
}

interface Registered {
  target: RetentionTarget;
  days: number | null;
}

const NAME = /^[a-z][a-z0-9_]{0,63}$/;

export class Sweeper {
  private readonly o: SweeperOptions;
  private readonly now: () => number;
  private readonly targets: Registered[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SweepReport> | null = null;
  private stopping = false;
  private started = false;

  constructor(options: SweeperOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
  }

  /**
   * Adds a category: its rows older than `days` days go in every sweep from now on (null: none
   * go; it is listed as kept).
   */
  register(target: RetentionTarget, days: number | null): void {
    if (!NAME.test(target.name)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `retention target name must be lower case letters, digits and _, got "${target.name}"`);
    if (this.targets.some((t) => t.target.name === target.name)) throw new TyrumError('TYRUM_ERR_CONFLICT', `a retention target named "${target.name}" is already registered`);
    if (days !== null && (!Number.isSafeInteger(days) || days < 1)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `retention days must be a positive integer or null, got ${days}`);
    this.targets.push({ target, days });
  }

  /** Names of the registered categories, in sweep order. */
  names(): string[] {
    return this.targets.map((t) => t.target.name);
  }

  /**
   * One sweep over every category. Concurrent calls share the sweep in progress when it is the
   * same kind (a real sweep never runs twice at once in one process).
   */
  sweep(options: { dryRun?: boolean; actor?: AuditActor } = {}): Promise<SweepReport> {
    const dryRun = options.dryRun === true;
    if (dryRun) return this.run(true, options.actor);
    if (this.running) return this.running;
    const p = this.run(false, options.actor).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  /** Sweeps every `sweep_interval_ms` (the first one interval after start); a no-op when it is null. */
  start(): void {
    if (this.started || this.o.retention.sweepIntervalMs === null) return;
    this.started = true;
    this.stopping = false;
    this.arm();
  }

  /** No more sweeps; waits for a batch in progress to commit (the sweep ends after it). */
  async stop(): Promise<void> {
    this.started = false;
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  private arm(): void {
    const every = this.o.retention.sweepIntervalMs;
    if (!this.started || every === null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sweep({ actor: { kind: 'retention' } })
        .then((r) => {
          if (r.rows > 0) this.o.log?.('info', 'retention sweep', { rows: r.rows, bytes: r.bytes, categories: Object.fromEntries(r.categories.map((c) => [c.name, c.rows])) });
        })
        .catch((e: unknown) => this.o.log?.('error', 'retention sweep failed', { error: e instanceof Error ? e.message : String(e) }))
        .finally(() => this.arm());
    }, every);
    this.timer.unref();
  }

  private async run(dryRun: boolean, actor: AuditActor = { kind: 'retention' }): Promise<SweepReport> {
    const startedAt = this.now();
    const report: SweepReport = { dry_run: dryRun, started_at: new Date(startedAt).toISOString(), categories: [], rows: 0, bytes: 0, interrupted: false };
    const limit = this.o.retention.batchSize;
    for (const { target, days } of this.targets) {
      const cutoff = days === null ? null : startedAt - days * DAY_MS;
      const cat: CategoryReport = { name: target.name, days, cutoff: cutoff === null ? null : new Date(cutoff).toISOString(), rows: 0, bytes: 0, detail: {}, batches: 0 };
      report.categories.push(cat);
      if (cutoff === null) continue;
      let cursor: Cursor = null;
      for (;;) {
        if (!dryRun && this.stopping) {
          report.interrupted = true;
          break;
        }
        const batch = await this.batch(target, { cutoff, limit, dryRun, cursor });
        cat.batches += 1;
        cat.rows += batch.rows;
        cat.bytes += batch.bytes;
        for (const [k, v] of Object.entries(batch.detail ?? {})) cat.detail[k] = (cat.detail[k] ?? 0) + v;
        if (batch.done) break;
        if (batch.rows === 0 && batch.cursor === cursor) {
          throw new TyrumError('TYRUM_ERR_INTERNAL', `retention target ${target.name} made no progress (cursor ${String(cursor)})`);
        }
        cursor = batch.cursor;
        // Let everything else waiting for the event loop (and the write lock) go first.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      report.rows += cat.rows;
      report.bytes += cat.bytes;
      if (report.interrupted) break;
    }
    if (!dryRun && !report.interrupted && this.o.store.dialect === 'postgres') {
      // PostgreSQL's commit counters (tyrum_writers): one row per connection ever opened. Rows
      // idle for a day are folded into one, their sum (hence every store's dataVersion) kept.
      const cutoff = startedAt - DAY_MS;
      const folded = await this.o.store.commit(() => this.o.store.retention.foldIdleWriters(cutoff, startedAt));
      if (folded > 0) this.o.log?.('info', 'retention: idle commit counters folded', { writers: folded });
    }
    if (!dryRun && report.rows > 0) {
      const categories = Object.fromEntries(report.categories.filter((c) => c.days !== null).map((c) => [c.name, { rows: c.rows, bytes: c.bytes, detail: c.detail, cutoff: c.cutoff, batches: c.batches }]));
      await this.o.audit.append('retention.swept', actor, { rows: report.rows, bytes: report.bytes, categories, interrupted: report.interrupted });
    }
    return report;
  }

  private async batch(target: RetentionTarget, req: { cutoff: number; limit: number; dryRun: boolean; cursor: Cursor }): Promise<SweepBatch> {
    const store = this.o.store;
    if (req.dryRun) {
      return target.sweep({ ...req, afterCommit: () => undefined });
    }
    return store.commit(() => target.sweep({ ...req, afterCommit: (fn) => store.afterCommit(fn) }));
  }
}
