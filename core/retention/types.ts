/**
 * The contract between the sweeper and what it sweeps. A target is one category of data (runs,
 * events, schedule fires, conversations; artifacts when core/artifacts registers one) that knows
 * how to remove, or count, one bounded batch of its expired rows.
 */

/** Where a target's previous batch stopped: the target's own key (a rowid, a seq, an encoded pair). Null at the start. */
export type Cursor = string | number | null;

/** One batch, as the sweeper asks for it. */
export interface SweepRequest {
  /** Epoch milliseconds: what ended (or was last active) before this may go. */
  readonly cutoff: number;
  /** Most rows (or items) to examine in this batch; the batch must stay this small. */
  readonly limit: number;
  /**
   * Count only, remove nothing. The counts must add up to exactly what a real sweep from the same
   * state would report: walk the same rows in the same order, skipping the deletes.
   */
  readonly dryRun: boolean;
  /** From the previous batch's `cursor`; null for the first batch. */
  readonly cursor: Cursor;
  /**
   * Real sweeps: `fn` runs once this batch's transaction is durable, and not at all if it rolls
   * back (remove files of rows the batch removed, such as artifact blobs, here). Never called in a
   * dry run.
   */
  afterCommit(fn: () => void): void;
}

/** What one batch removed (or, in a dry run, would remove). */
export interface SweepBatch {
  /** Rows removed, counting every table (a run with its steps, attempts and approvals). */
  rows: number;
  /** Sizes of the values those rows held (and of files removed with them). */
  bytes: number;
  /** Rows per table or kind, for the report (e.g. { runs: 2, steps: 5 }). */
  detail?: Record<string, number>;
  /** Where the next batch starts. */
  cursor: Cursor;
  /** True when this sweep has nothing more to examine in this target. */
  done: boolean;
}

/**
 * One category of data the sweeper removes. `sweep` is synchronous: in a real sweep it runs inside
 * the batch's transaction (a Store unit), so everything it removes commits together, or not at all.
 */
export interface RetentionTarget {
  /** The category as `tyrum gc` and the audit entry name it: lower case, e.g. "artifacts". */
  readonly name: string;
  sweep(req: SweepRequest): SweepBatch;
}
