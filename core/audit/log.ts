/**
 * The append side of the audit log.
 *
 * Appends are group-committed: everything queued during one turn of the event loop is written
 * in a single IMMEDIATE transaction on the next (setImmediate), so a burst costs one fsync
 * rather than one per entry. The chain head is read inside that transaction, which holds the
 * database write lock, so the gateway and a CLI appending to the same file serialize into one
 * chain. After each committed batch a signed checkpoint is written outside the database.
 */
import type { Store } from '../store/index.js';
import { TyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { signCheckpoint, writeCheckpoint, type CheckpointSigner } from './checkpoint.js';
import { GENESIS_HASH, assertActor, assertEntryType, entryFromRow, hashEntry, toJsonObject, type AuditActor, type AuditEntry } from './entry.js';

export interface AuditLogOptions {
  store: Store;
  signer: CheckpointSigner;
  /** Where the signed checkpoint lives; outside the database by design. */
  checkpointPath: string;
  /** Clock for entry and checkpoint timestamps (tests pin it). */
  now?: () => Date;
  /** Applied to actor and data before hashing, so redacted values never reach the log. */
  redact?: (value: unknown) => unknown;
}

/** Query for `audit.list`. */
export interface AuditListQuery {
  /** Only entries with a larger seq (paging cursor). Default 0. */
  after_seq?: number;
  /** At most this many entries; default 100, capped at 1000. */
  limit?: number;
  /** Only entries of this type. */
  type?: string;
}

export const AUDIT_LIST_DEFAULT_LIMIT = 100;
export const AUDIT_LIST_MAX_LIMIT = 1000;

interface Prepared {
  type: string;
  actor: AuditActor;
  data: Record<string, unknown>;
}

interface Pending {
  entry: Prepared;
  resolve: (e: AuditEntry) => void;
  reject: (e: unknown) => void;
}

/** Appends to the hash-chained audit log; one per process per store. */
export class AuditLog {
  private readonly store: Store;
  private readonly signer: CheckpointSigner;
  private readonly checkpointPath: string;
  private readonly now: () => Date;
  private readonly redact: (value: unknown) => unknown;
  private queue: Pending[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  private closed = false;

  constructor(options: AuditLogOptions) {
    this.store = options.store;
    this.signer = options.signer;
    this.checkpointPath = options.checkpointPath;
    this.now = options.now ?? (() => new Date());
    this.redact = options.redact ?? ((v) => v);
  }

  /**
   * Queue an entry; it is committed with everything else queued this tick. Resolves with the
   * committed entry once it and its checkpoint are durable; rejects if either fails. Invalid
   * input rejects at once without affecting other queued entries.
   */
  append(type: string, actor: AuditActor, data: Record<string, unknown> = {}): Promise<AuditEntry> {
    let entry: Prepared;
    try {
      entry = this.prepare(type, actor, data);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject });
      this.scheduled ??= setImmediate(() => this.flushQueue());
    });
  }

  /**
   * Commit one entry now, for short-lived processes such as the CLI that have no later tick to
   * wait for. Entries already queued by `append` go in the same transaction, ahead of it.
   */
  appendSync(type: string, actor: AuditActor, data: Record<string, unknown> = {}): AuditEntry {
    const entry = this.prepare(type, actor, data);
    let result: { ok: true; entry: AuditEntry } | { ok: false; error: unknown } | undefined;
    this.queue.push({ entry, resolve: (e) => (result = { ok: true, entry: e }), reject: (error) => (result = { ok: false, error }) });
    this.flushQueue();
    if (result === undefined) throw new TyrumError('TYRUM_ERR_INTERNAL', 'audit flush finished without settling the entry');
    if (!result.ok) throw result.error;
    return result.entry;
  }

  /** Commit everything queued so far now. Failures are reported through each `append` promise. */
  async flush(): Promise<void> {
    this.flushQueue();
  }

  /** Commit what is queued and refuse further appends. Does not close the shared store. */
  close(): void {
    this.flushQueue();
    this.closed = true;
  }

  /** Entries for `audit.list`. */
  list(query: AuditListQuery = {}): AuditEntry[] {
    return listAudit(this.store, query);
  }

  private prepare(type: string, actor: AuditActor, data: Record<string, unknown>): Prepared {
    if (this.closed) throw new TyrumError('TYRUM_ERR_INVALID_STATE', 'audit log is closed');
    assertEntryType(type);
    // Normalize now rather than at commit, so a caller mutating its object afterwards cannot
    // change what is logged, and a bad value fails only its own append.
    const a = toJsonObject(this.redact(actor), 'actor');
    assertActor(a);
    return { type, actor: a, data: toJsonObject(this.redact(data), 'data') };
  }

  private flushQueue(): void {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    let committed: AuditEntry[];
    try {
      committed = this.store.tx(() => this.insertBatch(batch));
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    const last = committed[committed.length - 1];
    try {
      if (last) this.checkpoint(last);
    } catch (e) {
      const err = new TyrumError(
        'TYRUM_ERR_AUDIT_CHECKPOINT',
        `audit entries committed but the checkpoint at ${this.checkpointPath} could not be written: ${(e as Error).message}`,
        { committed: true, through_seq: last?.seq, checkpoint_path: this.checkpointPath },
        { cause: e },
      );
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const entry = committed[i];
      if (entry) p.resolve(entry);
    });
  }

  /** Runs inside the write transaction: the head read here cannot move under us. */
  private insertBatch(batch: readonly Pending[]): AuditEntry[] {
    const head = this.store.audit.head();
    let seq = head?.seq ?? 0;
    let prev = head?.hash ?? GENESIS_HASH;
    return batch.map(({ entry }) => {
      seq += 1;
      const fields = { seq, ts: this.now().toISOString(), type: entry.type, actor: entry.actor, data: entry.data, prev_hash: prev };
      const hash = hashEntry(fields);
      this.store.audit.insert({ ...fields, actor: canonicalJson(fields.actor), data: canonicalJson(fields.data), hash });
      prev = hash;
      return { ...fields, hash };
    });
  }

  /**
   * Checkpoint `head`, which is committed. Not part of the append transaction because a
   * checkpoint must never name rows that might still roll back. The IMMEDIATE transaction is
   * used only as the cross-process mutex around the checkpoint's compare-and-rename.
   */
  private checkpoint(head: AuditEntry): void {
    const cp = signCheckpoint({ seq: head.seq, head_hash: head.hash, count: head.seq, ts: this.now().toISOString() }, this.signer);
    writeCheckpoint(this.checkpointPath, cp, (fn) => this.store.tx(fn));
  }
}

/** Entries for `audit.list`, oldest first, with `actor` and `data` parsed. */
export function listAudit(store: Store, query: AuditListQuery = {}): AuditEntry[] {
  const afterSeq = query.after_seq ?? 0;
  const limit = query.limit ?? AUDIT_LIST_DEFAULT_LIMIT;
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'after_seq must be a non-negative integer', { after_seq: afterSeq });
  }
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit });
  }
  return store.audit.page(afterSeq, Math.min(limit, AUDIT_LIST_MAX_LIMIT), query.type).map(entryFromRow);
}
