/**
 * The append side of the audit log.
 *
 * Appends are group-committed with everything else the process writes (Store.commit): an
 * entry describing a state change is written by `appendInTx` in the very transaction of that
 * change, and `append` adds a unit of its own to the group of the current turn, so a burst costs
 * one fsync rather than one per entry. The chain head is read inside the transaction, which
 * holds the database write lock, so the gateway and a CLI appending to the same file serialize
 * into one chain, and a unit that rolls back takes its entries with it.
 *
 * A signed checkpoint is written outside the database off the call path: at most
 * `checkpointIntervalMs` after an entry is committed, as soon as `checkpointEntries` entries are
 * committed without one, on `flush` and `close`, and at once for a log's first entries and for
 * `appendSync` (the CLI, a short-lived process). An empty log is anchored at seq 0 before its
 * first entry is committed. Entries appended since the
 * newest checkpoint are covered by the chain only: until the next checkpoint they can be cut off
 * the end of the log undetected; anything at or below the newest checkpoint cannot.
 *
 * The chain must extend the last signed checkpoint: the database must still hold the entry at
 * the checkpoint's seq with the hash the checkpoint names. That is checked before the first
 * commit of each process (and by `checkAnchor` at start-up) and before every checkpoint is
 * signed, so deleting the newest rows and restarting can never get a new checkpoint signed over
 * the shortened chain. An operator may accept a damaged log (`acceptTampered`); the facts are
 * then carried, signed, in every later checkpoint.
 */
import type { Store } from '../store/index.js';
import { TyrumError, isTyrumError } from '../errors/index.js';
import { canonicalJson } from '../util/canonical-json.js';
import { readCheckpoint, signCheckpoint, writeCheckpoint, checkpointText, type Checkpoint, type CheckpointBody, type CheckpointLoad, type CheckpointSigner, type CheckpointVerifier, type TamperRecord } from './checkpoint.js';
import { GENESIS_HASH, assertActor, assertEntryType, entryFromRow, hashEntry, toJsonObject, type AuditActor, type AuditEntry } from './entry.js';
import { DEFAULT_TENANT } from '../../schemas/index.js';
import { detached } from '../telemetry/context.js';

export interface AuditLogOptions {
  store: Store;
  signer: CheckpointSigner;
  /** The public half of `signer`: the previous checkpoint is authenticated before it is extended. */
  verifier: CheckpointVerifier;
  /** Where the signed checkpoint lives; outside the database by design. */
  checkpointPath: string;
  /** Clock for entry and checkpoint timestamps (tests pin it). */
  now?: () => Date;
  /** Applied to actor and data before hashing, so redacted values never reach the log. */
  redact?: (value: unknown) => unknown;
  /** Sign a checkpoint at most this long after an entry is committed. Default 1000. */
  checkpointIntervalMs?: number;
  /** Sign one as soon as this many entries are committed without one. Default 1000. */
  checkpointEntries?: number;
  /** A checkpoint signed off the call path (timer, `close`) failed; the gateway logs it. */
  onCheckpointError?: (error: TyrumError) => void;
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_ENTRIES = 1000;

/** Query for `audit.list`. */
export interface AuditListQuery {
  /** Only entries with a larger seq (paging cursor). Default 0. */
  after_seq?: number;
  /** At most this many entries; default 100, capped at 1000. */
  limit?: number;
  /** Only entries of this type. */
  type?: string;
  /** Only entries of this tenant (an audit.list caller's); absent: every entry. */
  tenant?: string;
}

export const AUDIT_LIST_DEFAULT_LIMIT = 100;
export const AUDIT_LIST_MAX_LIMIT = 1000;

/**
 * Whether the log in the database extends the signed checkpoint. `ok` with a null checkpoint:
 * a new, empty log that has none yet.
 */
export type AnchorCheck =
  | { ok: true; checkpoint: CheckpointBody | null }
  | { ok: false; reason: string; previous: CheckpointBody | null; found: { seq: number; head_hash: string } };

/** How many times a checkpoint is re-read and re-signed when other writers keep replacing it. */
const CHECKPOINT_ATTEMPTS = 10;

interface Prepared {
  type: string;
  actor: AuditActor;
  data: Record<string, unknown>;
}

/** Appends to the hash-chained audit log; one per process per store. */
export class AuditLog {
  private readonly store: Store;
  private readonly signer: CheckpointSigner;
  private readonly verifier: CheckpointVerifier;
  private readonly checkpointPath: string;
  private readonly now: () => Date;
  private readonly redact: (value: unknown) => unknown;
  private readonly checkpointIntervalMs: number;
  private readonly checkpointEntries: number;
  private readonly onCheckpointError: (error: TyrumError) => void;
  /** The newest entry this process committed that no checkpoint covers yet, and how many such entries. */
  private uncheckpointed: { head: AuditEntry; count: number } | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The chain was found to extend the checkpoint in this process (checked once, before the first commit). */
  private anchored = false;
  /**
   * The newest authentic checkpoint this process read or wrote, with its file text. Once set, the
   * file may not vanish or go back below its seq.
   */
  private known: { text: string; body: CheckpointBody } | null = null;

  constructor(options: AuditLogOptions) {
    this.store = options.store;
    this.signer = options.signer;
    this.verifier = options.verifier;
    this.checkpointPath = options.checkpointPath;
    this.now = options.now ?? (() => new Date());
    this.redact = options.redact ?? ((v) => v);
    this.checkpointIntervalMs = positiveInt(options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS, 'checkpointIntervalMs');
    this.checkpointEntries = positiveInt(options.checkpointEntries ?? DEFAULT_CHECKPOINT_ENTRIES, 'checkpointEntries');
    this.onCheckpointError = options.onCheckpointError ?? (() => undefined);
  }

  /**
   * Append an entry as a unit of the current group commit (Store.commit). Resolves with the
   * committed entry once it is durable; the checkpoint follows within `checkpointIntervalMs`
   * (`flush` forces it). Rejects if the commit fails, or a checkpoint signed with the commit
   * (the log's first, or the `checkpointEntries`th entry) fails. Invalid input rejects at once
   * without affecting other entries.
   */
  append(type: string, actor: AuditActor, data: Record<string, unknown> = {}): Promise<AuditEntry> {
    let entry: Prepared;
    try {
      entry = this.prepare(type, actor, data);
    } catch (e) {
      return Promise.reject(e);
    }
    let due = false;
    return this.store
      .commit(() => {
        const committed = this.insert(entry);
        this.store.afterCommit(() => (due = this.noteCommitted(committed)));
        return committed;
      })
      .then((committed) => {
        if (due) this.checkpointPending();
        return committed;
      });
  }

  /**
   * Append an entry inside the caller's unit (Store.commit or Store.tx): it commits, or rolls
   * back, with the state change it describes. A checkpoint it makes due is signed after the
   * commit, off the caller's path (a failure goes to `onCheckpointError`). Throws on invalid
   * input and on a log that does not extend its checkpoint (TYRUM_ERR_AUDIT_TAMPERED).
   */
  appendInTx(type: string, actor: AuditActor, data: Record<string, unknown> = {}): AuditEntry {
    if (!this.store.inUnit()) throw new TyrumError('TYRUM_ERR_INTERNAL', 'appendInTx outside a transaction');
    const committed = this.insert(this.prepare(type, actor, data));
    this.store.afterCommit(() => {
      if (this.noteCommitted(committed)) this.checkpointOffPath();
    });
    return committed;
  }

  /**
   * Commit one entry and checkpoint it now, for short-lived processes such as the CLI that have
   * no later tick to wait for. A group in progress commits with it.
   */
  appendSync(type: string, actor: AuditActor, data: Record<string, unknown> = {}): AuditEntry {
    const entry = this.prepare(type, actor, data);
    const committed = this.store.tx(() => {
      const e = this.insert(entry);
      this.store.afterCommit(() => this.noteCommitted(e));
      return e;
    });
    this.checkpointPending();
    return committed;
  }

  /**
   * Commit everything in progress and sign the checkpoint over it now. Commit failures are
   * reported to each appender; a checkpoint failure rejects this call.
   */
  async flush(): Promise<void> {
    await this.store.durable();
    this.checkpointPending();
  }

  /**
   * Commit what is in progress, sign the checkpoint over it and refuse further appends. Never
   * throws: a checkpoint failure goes to `onCheckpointError`. Does not close the shared store.
   */
  close(): void {
    this.store.flushNow();
    this.checkpointOffPath();
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    this.closed = true;
  }

  /**
   * Check that the log in the database extends the signed checkpoint: the entry at the
   * checkpoint's seq exists and has the hash the checkpoint names. A missing checkpoint is
   * fine only while the log is empty; an unreadable, forged or rolled-back one is not.
   */
  checkAnchor(): AnchorCheck {
    for (let attempt = 0; attempt < CHECKPOINT_ATTEMPTS; attempt++) {
      const { text, load } = this.readAnchor();
      const r = this.judge(load);
      if (!r.ok) return r;
      this.anchored = true;
      if (r.checkpoint !== null) return r;
      // A new, empty log: anchor it before its first entry (a checkpoint at seq 0), so no other
      // process can ever find entries without a checkpoint while the first one is being signed.
      let published: boolean;
      try {
        published = this.publish(signCheckpoint({ seq: 0, head_hash: GENESIS_HASH, count: 0, ts: this.now().toISOString() }, this.signer), text);
      } catch {
        // Unwritable: the first entries' checkpoint reports it (TYRUM_ERR_AUDIT_CHECKPOINT).
        return r;
      }
      if (published) return { ok: true, checkpoint: this.known?.body ?? null };
      // Another process anchored it first: read what it wrote.
    }
    return this.judge(this.readAnchor().load);
  }

  /**
   * The coded error for a failed `checkAnchor`, saying what was found and how to proceed.
   * `details.committed`: found only when signing a checkpoint over entries already committed.
   */
  tamperedError(check: Extract<AnchorCheck, { ok: false }>, details: Record<string, unknown> = {}): TyrumError {
    const refused = details.committed === true ? 'No checkpoint will be signed over it.' : 'Nothing will be appended to it or signed over it.';
    return new TyrumError(
      'TYRUM_ERR_AUDIT_TAMPERED',
      `the audit log does not extend its signed checkpoint: ${check.reason}. ${refused} ` +
        'Inspect it with `tyrum audit verify`; then restore tyrum.db from a backup, or keep the damaged log as evidence and continue with ' +
        '`tyrum start --accept-tampered-audit` (the tampering is then recorded for good in the signed checkpoint and reported by `tyrum doctor` and `tyrum audit verify`)',
      { ...details, reason: check.reason, checkpoint_path: this.checkpointPath, previous_seq: check.previous?.seq ?? null, found_seq: check.found.seq },
    );
  }

  /**
   * The operator accepts the log as it is: sign a checkpoint over the current head that carries
   * what was found, on top of every tampering accepted before, and log the acceptance. Returns
   * null, doing nothing, when the log is intact.
   */
  acceptTampered(actor: AuditActor): TamperRecord | null {
    for (let attempt = 0; attempt < CHECKPOINT_ATTEMPTS; attempt++) {
      const { text, load } = this.readAnchor();
      const check = this.judge(load);
      if (check.ok) {
        this.anchored = true;
        return null;
      }
      const previous = check.previous ? { seq: check.previous.seq, head_hash: check.previous.head_hash, ts: check.previous.ts } : null;
      const record: TamperRecord = { accepted_at: this.now().toISOString(), reason: check.reason, previous, found: check.found };
      const tampered = [...(check.previous?.tampered ?? []), record];
      const cp = signCheckpoint({ seq: check.found.seq, head_hash: check.found.head_hash, count: check.found.seq, ts: record.accepted_at, tampered }, this.signer);
      // The accepted head may lie below the old checkpoint: it is the new anchor all the same.
      if (this.publish(cp, text, true)) {
        this.anchored = true;
        this.appendSync('audit.tampering_accepted', actor, { ...record });
        return record;
      }
    }
    throw new TyrumError('TYRUM_ERR_AUDIT_CHECKPOINT', `the checkpoint at ${this.checkpointPath} kept changing while the tampering was being accepted; try again`);
  }

  /** Tamperings accepted on this log, from the newest checkpoint this process has seen. */
  tampered(): TamperRecord[] {
    return this.known?.body.tampered ?? [];
  }

  /** Entries for `audit.list`. */
  list(query: AuditListQuery = {}): AuditEntry[] {
    return listAudit(this.store, query);
  }

  /**
   * The actor with its tenant: an entry caused by a token of a tenant other than the default
   * names it (`tenant`, hashed with the rest), so the tenant's view of the one chain is part of
   * what the chain protects. The default tenant's entries are unchanged.
   */
  private withTenant(actor: AuditActor, data: Record<string, unknown>): AuditActor {
    if (typeof actor.tenant === 'string') return actor;
    // The acting token's tenant, else that of the run, approval or conversation the entry is about
    // (the engine and the approval expiry act as the system on a tenant's run).
    const byToken = (actor.kind === 'token' || actor.kind === 'principal') && typeof actor.id === 'string' ? this.store.tokens.tenantOf(actor.id) : DEFAULT_TENANT;
    const tenant = byToken !== DEFAULT_TENANT ? byToken : this.store.outbox.tenantOf(data);
    return tenant === DEFAULT_TENANT ? actor : { ...actor, tenant };
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

  /**
   * Insert one entry at the head of the chain; runs inside the write transaction, so the head
   * read here cannot move under us. The first entry of the process checks the anchor first.
   */
  private insert(entry: Prepared): AuditEntry {
    if (!this.anchored) {
      const check = this.checkAnchor();
      if (!check.ok) throw this.tamperedError(check, { committed: false });
    }
    const head = this.store.audit.headForAppend();
    const actor = this.withTenant(entry.actor, entry.data);
    const fields = { seq: (head?.seq ?? 0) + 1, ts: this.now().toISOString(), type: entry.type, actor, data: entry.data, prev_hash: head?.hash ?? GENESIS_HASH };
    const hash = hashEntry(fields);
    this.store.audit.insert({ ...fields, actor: canonicalJson(fields.actor), data: canonicalJson(fields.data), hash });
    if (typeof actor.tenant === 'string' && actor.tenant !== DEFAULT_TENANT) this.store.audit.insertTenant(fields.seq, actor.tenant);
    return { ...fields, hash };
  }

  /**
   * After a commit: `entry` is durable and not yet covered by a checkpoint. True when a
   * checkpoint is due now (a log's first entries, or `checkpointEntries` without one);
   * otherwise the interval timer is armed.
   */
  private noteCommitted(entry: AuditEntry): boolean {
    const count = (this.uncheckpointed?.count ?? 0) + 1;
    if (this.uncheckpointed === null || entry.seq > this.uncheckpointed.head.seq) this.uncheckpointed = { head: entry, count };
    else this.uncheckpointed.count = count;
    if ((this.known?.body.seq ?? 0) === 0 || count >= this.checkpointEntries) return true;
    // Outside the scope of the call whose commit arms it: the checkpoint is the log's, not that call's.
    this.checkpointTimer ??= detached(() =>
      setTimeout(() => {
        this.checkpointTimer = null;
        this.checkpointOffPath();
      }, this.checkpointIntervalMs).unref(),
    );
    return false;
  }

  /** Sign the checkpoint over what this process committed since the last one, if anything. Throws a coded error. */
  private checkpointPending(): void {
    const pending = this.uncheckpointed;
    if (pending === null) return;
    try {
      this.checkpoint(pending.head);
    } catch (e) {
      if (isTyrumError(e, 'TYRUM_ERR_AUDIT_TAMPERED')) throw e;
      throw new TyrumError(
        'TYRUM_ERR_AUDIT_CHECKPOINT',
        `audit entries committed but the checkpoint at ${this.checkpointPath} could not be written: ${(e as Error).message}`,
        { committed: true, through_seq: pending.head.seq, checkpoint_path: this.checkpointPath },
        { cause: e },
      );
    }
    if (this.uncheckpointed === pending) this.uncheckpointed = null;
    if (this.checkpointTimer !== null && this.uncheckpointed === null) {
      clearTimeout(this.checkpointTimer);
      this.checkpointTimer = null;
    }
  }

  /** `checkpointPending` off the call path (the interval timer, `close`): a failure goes to `onCheckpointError`. */
  private checkpointOffPath(): void {
    try {
      this.checkpointPending();
    } catch (e) {
      this.onCheckpointError(e as TyrumError);
    }
  }

  /**
   * Checkpoint `head`, which is committed. Not part of the append transaction because a
   * checkpoint must never name rows that might still roll back. The IMMEDIATE transaction is
   * used only as the cross-process mutex around the checkpoint's compare-and-rename.
   *
   * Signs only over a chain that extends the previous checkpoint, carrying its tamper records;
   * throws TYRUM_ERR_AUDIT_TAMPERED otherwise. Nothing to do when another writer's checkpoint
   * already covers `head`.
   */
  private checkpoint(head: AuditEntry): void {
    for (let attempt = 0; attempt < CHECKPOINT_ATTEMPTS; attempt++) {
      const { text, load } = this.readAnchor();
      const check = this.judge(load);
      if (!check.ok) throw this.tamperedError(check, { committed: true, through_seq: head.seq });
      const prev = check.checkpoint;
      if (prev !== null && prev.seq >= head.seq) return;
      const cp = signCheckpoint({ seq: head.seq, head_hash: head.hash, count: head.seq, ts: this.now().toISOString(), ...(prev?.tampered ? { tampered: prev.tampered } : {}) }, this.signer);
      if (this.publish(cp, text)) return;
    }
    throw new Error('the checkpoint file kept being replaced by other writers');
  }

  /** Write `cp` unless the file changed since it was read as `basedOn`; remember it when written. */
  private publish(cp: Checkpoint, basedOn: string | null, reanchor = false): boolean {
    if (!writeCheckpoint(this.checkpointPath, cp, basedOn, (fn) => this.store.tx(fn))) return false;
    const { signature: _signature, ...body } = cp;
    this.remember(checkpointText(cp), body, reanchor);
    return true;
  }

  /** Read the checkpoint file; a text this process already authenticated is not verified again. */
  private readAnchor(): { text: string | null; load: CheckpointLoad } {
    const r = readCheckpoint(this.checkpointPath, this.verifier, this.known ?? undefined);
    if (r.text !== null && r.load.status === 'ok') this.remember(r.text, r.load.checkpoint);
    return r;
  }

  private remember(text: string, body: CheckpointBody, reanchor = false): void {
    if (!reanchor && this.known !== null && body.seq < this.known.body.seq) return;
    this.known = { text, body };
  }

  /** Does the chain in the database extend the checkpoint as read? */
  private judge(load: CheckpointLoad): AnchorCheck {
    const found = (): { seq: number; head_hash: string } => {
      const head = this.store.audit.head();
      return { seq: head?.seq ?? 0, head_hash: head?.hash ?? GENESIS_HASH };
    };
    const bad = (reason: string, previous: CheckpointBody | null = null): AnchorCheck => ({ ok: false, reason, previous, found: found() });
    const path = this.checkpointPath;
    switch (load.status) {
      case 'missing': {
        if (this.known !== null) return bad(`the signed checkpoint ${path} was deleted (it recorded ${this.known.body.seq} entries)`);
        // Anchored without ever seeing a checkpoint: this process found the log empty and could not
        // write the seq 0 anchor, so its own entries have none yet (reported as a failed write).
        if (this.anchored) return { ok: true, checkpoint: null };
        const head = found();
        if (head.seq > 0) return bad(`there is no signed checkpoint at ${path}, yet the log has entries up to ${head.seq}: it may have been truncated or re-hashed`);
        return { ok: true, checkpoint: null };
      }
      case 'invalid':
        return bad(`the checkpoint cannot be trusted: ${load.reason} (${path})`);
      case 'forged':
        return bad(`the checkpoint signature is invalid: the checkpoint was forged or altered, or was signed by another key (${path})`);
      case 'ok':
        break;
    }
    const cp = load.checkpoint;
    // readAnchor kept the newest seq seen: a lower one is an older checkpoint put back.
    if (this.known !== null && cp.seq < this.known.body.seq) {
      return bad(`the checkpoint went back from entry ${this.known.body.seq} to entry ${cp.seq}: an older checkpoint was put back (${path})`, cp);
    }
    if (cp.seq === 0) return { ok: true, checkpoint: cp };
    const row = this.store.audit.get(cp.seq);
    if (row === undefined) {
      return bad(`log truncated: the signed checkpoint records ${cp.seq} entries, the log ends at entry ${found().seq}`, cp);
    }
    if (row.hash !== cp.head_hash) {
      return bad(`entry ${cp.seq} does not match the signed checkpoint (log rewritten and re-hashed at or before entry ${cp.seq})`, cp);
    }
    return { ok: true, checkpoint: cp };
  }
}

function positiveInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', `${name} must be a positive integer (got ${n})`);
  return n;
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
  return store.committed.audit.page(afterSeq, Math.min(limit, AUDIT_LIST_MAX_LIMIT), query.type, query.tenant).map(entryFromRow);
}
