/**
 * Verification and export of the audit log.
 *
 * The walk re-derives every hash and link from the stored rows, one row at a time, then checks
 * the result against the signed checkpoint. The chain catches edits, deletions and reordering
 * anywhere; the checkpoint catches what a consistent chain cannot: a dropped tail and a chain
 * re-hashed from an edited entry onwards. Entries appended after the newest checkpoint are
 * covered by the chain only; AuditLog signs one within its interval and entry count, so that
 * window stays short (README, security model).
 *
 * A log an operator accepted as tampered (`tyrum start --accept-tampered-audit`) never verifies
 * again: its checkpoint carries the facts, signed, and they are reported even when the chain
 * since then is sound.
 */
import type { AuditRow, Store } from '../store/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { loadCheckpoint, type CheckpointBody, type CheckpointLoad, type CheckpointVerifier, type TamperRecord } from './checkpoint.js';
import { GENESIS_HASH, entryFromRow, hashEntry, type AuditEntry } from './entry.js';

export interface VerifyAuditOptions {
  /** Where the rows come from: a Store, or anything that iterates its audit rows in seq order (the doctor's worker). */
  store: { audit: { iterate(): Iterable<AuditRow> } };
  verifier: CheckpointVerifier;
  checkpointPath: string;
}

/** The first entry that failed, and why. */
export interface AuditFault {
  seq: number;
  reason: string;
}

export interface VerifyAuditResult {
  ok: boolean;
  /** Rows in the log. */
  entries: number;
  /** Hash of the last row as stored (GENESIS_HASH for an empty log). */
  head_hash: string;
  /** The checkpoint, when present and authentic. */
  checkpoint: CheckpointBody | null;
  /** The first bad entry, when the failure can be pinned to one. */
  first_bad?: AuditFault;
  /** Why verification failed, naming the first bad entry when there is one. */
  reason?: string;
  /** Tamperings an operator accepted, from the authentic checkpoint; the log then never verifies. */
  tampered?: TamperRecord[];
}

/** What went wrong at one row, before it is turned into a message. */
type RowFault =
  | { kind: 'gap'; expected: number; found: number }
  | { kind: 'malformed'; row: AuditRow }
  | { kind: 'edited'; row: AuditRow }
  | { kind: 'link'; row: AuditRow }
  | { kind: 'misplaced'; row: AuditRow }
  | { kind: 'unreadable'; seq: number; reason: string };

/**
 * Verify the chain and the checkpoint. Streams rows in seq order (constant memory); reads the
 * checkpoint first, so a gateway appending concurrently cannot make a healthy log look
 * truncated (a checkpoint is only ever written after its rows are committed).
 */
export function verifyAudit(options: VerifyAuditOptions): VerifyAuditResult {
  const cp = loadCheckpoint(options.checkpointPath, options.verifier);
  const walk = new ChainWalk(cp);
  for (const row of options.store.audit.iterate()) walk.push(row);
  return walk.result(options.checkpointPath);
}

/**
 * The verification walk, row by row: re-derives every hash and link, then judges the result
 * against the checkpoint. The one implementation behind `verifyAudit` (rows from the database)
 * and `verifyAuditArchive` (rows from an archive file, core/audit/archive.ts).
 */
export class ChainWalk {
  private entries = 0;
  private expectedSeq = 1;
  private prev = GENESIS_HASH;
  private fault: RowFault | undefined;
  private hashAtCheckpoint: string | undefined;
  private readonly checkpoint: CheckpointBody | null;

  constructor(private readonly cp: CheckpointLoad) {
    this.checkpoint = cp.status === 'ok' ? cp.checkpoint : null;
  }

  /** The next row, in seq order. */
  push(row: AuditRow): void {
    this.entries += 1;
    if (this.checkpoint && row.seq === this.checkpoint.seq) this.hashAtCheckpoint = row.hash;
    // After the first fault keep walking only to count rows and find the head.
    if (this.fault === undefined) this.fault = checkRow(row, this.expectedSeq, this.prev);
    this.expectedSeq = row.seq + 1;
    this.prev = row.hash;
  }

  /** The next entry could not even be read as one (an archive line that is not an entry). */
  unreadable(reason: string): void {
    this.entries += 1;
    if (this.fault === undefined) this.fault = { kind: 'unreadable', seq: this.expectedSeq, reason };
    this.expectedSeq += 1;
  }

  /**
   * The verdict. `where` names the checkpoint's location in messages. `exact`: entries past the
   * checkpoint are a fault too (an archive is written to end at its checkpoint, so anything after
   * it was appended to the file later, unsigned).
   */
  result(where: string, opts: { exact?: boolean } = {}): VerifyAuditResult {
    const { cp, checkpoint, entries } = this;
    const base = { entries, head_hash: this.prev, checkpoint, ...(checkpoint?.tampered ? { tampered: checkpoint.tampered } : {}) };
    if (this.fault !== undefined) {
      const first_bad = describe(this.fault, entries);
      return { ...base, ok: false, first_bad, reason: `entry ${first_bad.seq}: ${first_bad.reason}` };
    }
    switch (cp.status) {
      case 'missing':
        if (entries === 0) return { ...base, ok: true };
        return { ...base, ok: false, reason: `no signed checkpoint at ${where}: truncation or re-hashing of the log cannot be ruled out` };
      case 'invalid':
        return { ...base, ok: false, reason: `${cp.reason} (${where})` };
      case 'forged':
        return { ...base, ok: false, reason: `checkpoint signature is invalid: the checkpoint was forged or altered, or was signed by another key (${where})` };
      case 'ok':
        break;
    }
    if (entries < cp.checkpoint.seq) {
      const first_bad = { seq: entries + 1, reason: `missing (log truncated: the signed checkpoint records ${cp.checkpoint.seq} entries, the log has ${entries})` };
      return { ...base, ok: false, first_bad, reason: `entry ${first_bad.seq}: ${first_bad.reason}` };
    }
    if (cp.checkpoint.seq > 0 && this.hashAtCheckpoint !== cp.checkpoint.head_hash) {
      const first_bad = {
        seq: cp.checkpoint.seq,
        reason: `hash does not match the signed checkpoint (log rewritten and re-hashed at or before entry ${cp.checkpoint.seq})`,
      };
      return { ...base, ok: false, first_bad, reason: `entry ${first_bad.seq}: ${first_bad.reason}` };
    }
    if (opts.exact === true && entries > cp.checkpoint.seq) {
      const first_bad = { seq: cp.checkpoint.seq + 1, reason: `not covered by the signed checkpoint, which ends at entry ${cp.checkpoint.seq} (entries added after the checkpoint was signed)` };
      return { ...base, ok: false, first_bad, reason: `entry ${first_bad.seq}: ${first_bad.reason}` };
    }
    if (checkpoint?.tampered) return { ...base, ok: false, reason: describeTampered(checkpoint.tampered) };
    return { ...base, ok: true };
  }
}

function describeTampered(records: readonly TamperRecord[]): string {
  const last = records[records.length - 1]!;
  const times = records.length === 1 ? '' : ` (${records.length} times; the last:)`;
  return (
    `the log was tampered with and the operator accepted it${times} on ${last.accepted_at}: ${last.reason}; ` +
    `the log was taken as found at entry ${last.found.seq}. The chain since then verifies against the signed checkpoint, but what was lost or changed before cannot be recovered from it`
  );
}

function checkRow(row: AuditRow, expectedSeq: number, prev: string): RowFault | undefined {
  if (row.seq !== expectedSeq) return { kind: 'gap', expected: expectedSeq, found: row.seq };
  let entry: AuditEntry;
  try {
    entry = entryFromRow(row);
  } catch {
    return { kind: 'malformed', row };
  }
  // The stored text must be exactly what was hashed; a re-serialized (e.g. reformatted)
  // value with the same meaning is still an edit of the row.
  if (canonicalJson(entry.actor) !== row.actor || canonicalJson(entry.data) !== row.data) return { kind: 'malformed', row };
  const linked = row.prev_hash === prev;
  const hashed = hashEntry(entry) === row.hash;
  if (linked && hashed) return undefined;
  if (linked) return { kind: 'edited', row };
  if (hashed) return { kind: 'link', row };
  return { kind: 'misplaced', row };
}

function describe(fault: RowFault, entries: number): AuditFault {
  switch (fault.kind) {
    case 'gap':
      return fault.found > fault.expected
        ? { seq: fault.expected, reason: `missing (entry deleted: the next stored entry is ${fault.found})` }
        : { seq: fault.found, reason: `unexpected sequence number (expected ${fault.expected})` };
    case 'malformed':
      return { seq: fault.row.seq, reason: 'actor or data is not the canonical JSON that was hashed (entry edited)' };
    case 'unreadable':
      return { seq: fault.seq, reason: `unreadable (${fault.reason})` };
    case 'edited':
      return { seq: fault.row.seq, reason: 'hash mismatch (entry edited)' };
    case 'link':
      return { seq: fault.row.seq, reason: `prev_hash does not match the hash of entry ${fault.row.seq - 1} (chain broken: an earlier entry was edited and re-hashed, or entries were replaced)` };
    case 'misplaced': {
      const origin = originalSeq(fault.row, entries);
      return origin === undefined
        ? { seq: fault.row.seq, reason: 'hash mismatch and prev_hash does not link to the previous entry (entry edited or entries reordered)' }
        : { seq: fault.row.seq, reason: `holds the contents of entry ${origin} (entries reordered)` };
    }
  }
}

/**
 * The seq under which this row's contents hash to its stored hash, if any: a row that both
 * fails to link and fails its own hash is usually an intact entry moved to another position.
 * Tries every position once; it runs only on failure and costs about one verification pass.
 */
function originalSeq(row: AuditRow, entries: number): number | undefined {
  const entry = entryFromRow(row);
  for (let seq = 1; seq <= entries; seq++) {
    if (seq !== row.seq && hashEntry({ ...entry, seq }) === row.hash) return seq;
  }
  return undefined;
}

/**
 * The log as JSON Lines: one canonical JSON entry per line, oldest first, for archiving or
 * external verification. Streams from the store, whose connection stays busy until the
 * generator is finished or returned.
 */
export function* exportAudit(store: Store): Generator<string> {
  for (const row of store.audit.iterate()) {
    yield canonicalJson(entryFromRow(row));
  }
}
