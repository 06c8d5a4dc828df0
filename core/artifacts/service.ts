/**
 * The artifact service: content-addressed evidence blobs with their metadata, attachments to
 * runs, events, audit entries, read checks and retention sweeps.
 *
 * - Bytes go to an `ArtifactStore` (core/artifacts/store.ts) first, outside any transaction; the
 *   metadata row, the attachments, the `artifact.created` / `artifact.attached` events and their
 *   audit entries are then committed together. A crash in between leaves a blob nothing refers
 *   to; `sweepOrphanBlobs` removes those.
 * - The audit log records digest, size, media type and name: never the content.
 * - Who may read an artifact follows `run.get`: a token with `operator.read` reads every run, so
 *   it reads the artifacts attached to any run that exists. An artifact attached to no run is
 *   readable by `operator.admin` only.
 */
import type { Readable } from 'node:stream';
import type { Store, ArtifactRow, ArtifactAttachmentRow } from '../store/index.js';
import type { AuditActor, AuditLog } from '../audit/index.js';
import type { Emit, EventLog } from '../execution/events.js';
import type { ArtifactOutput, ArtifactRef, ArtifactSink } from '../execution/types.js';
import { TyrumError } from '../errors/index.js';
import type { ArtifactStore, BlobSource } from './store.js';
import { normalizeMediaType, sanitizeName } from './names.js';

export interface ArtifactServiceOptions {
  store: Store;
  events: EventLog;
  audit: AuditLog;
  blobs: ArtifactStore;
  /** limits.max_artifact_bytes */
  maxBytes: number;
  /** limits.max_artifacts_total_bytes */
  maxTotalBytes: number;
  now?: () => number;
}

/** Bytes to store, with their media type and an optional display name. */
export interface ArtifactInput {
  content: BlobSource;
  media_type: string;
  name?: string | null;
}

/** Where an artifact is attached. `step_idx`/`attempt` name the step (and attempt) that produced it. */
export interface AttachTarget {
  run_id: string;
  step_idx?: number | null;
  attempt?: number | null;
  /** The name for this attachment; default the artifact's own. */
  name?: string | null;
  /** Default the artifact's own media type. */
  media_type?: string;
  /** Who attaches it (a token id, `playbook:<id>`...): recorded as attached_by. */
  by: string;
}

export interface ArtifactInfo {
  artifact_id: string;
  size: number;
  media_type: string;
  name: string | null;
  created_at: number;
  created_by: string;
}

/** An attachment as ops and events show it: the row without its internal id and artifact id. */
export type AttachmentInfo = Omit<ArtifactAttachmentRow, 'id' | 'artifact_id'>;

/** What a sweep found (dryRun) or removed: counts and bytes, and the ids of this batch. */
export interface SweepResult {
  dry_run: boolean;
  artifacts: number;
  bytes: number;
  ids: string[];
  /** True when the batch was full: call again for more. */
  more: boolean;
}

export interface SweepOptions {
  /** At most this many per call (default 500, at most 10 000). */
  limit?: number;
  /** Count what would go, remove nothing. */
  dryRun?: boolean;
  actor?: AuditActor;
}

const ID = /^sha256:([0-9a-f]{64})$/;
const SWEEP_DEFAULT = 500;
const SWEEP_MAX = 10_000;
/** Blobs and temporary files younger than this are never swept as orphans: a put may be in flight. */
export const ORPHAN_GRACE_MS = 10 * 60_000;
/** A blob touched this recently may belong to a put in flight: row sweeps leave it. */
const IN_FLIGHT_MS = 60_000;
const SYSTEM: AuditActor = { kind: 'artifacts' };

/** The digest of an artifact id, or TYRUM_ERR_NOT_FOUND for anything that is not one. */
export function digestOf(artifactId: string): string {
  const m = ID.exec(artifactId);
  if (!m) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no artifact ${JSON.stringify(artifactId.slice(0, 80))}: ids are sha256:<64 hex>`, { artifact_id: artifactId.slice(0, 80) });
  return m[1]!;
}

export function artifactInfo(r: ArtifactRow): ArtifactInfo {
  return { artifact_id: r.id, size: r.size, media_type: r.media_type, name: r.name, created_at: r.created_at, created_by: r.created_by };
}

export function attachmentInfo(r: ArtifactAttachmentRow): AttachmentInfo {
  return { run_id: r.run_id, step_idx: r.step_idx, attempt: r.attempt, kind: r.kind, name: r.name, media_type: r.media_type, attached_at: r.attached_at, attached_by: r.attached_by };
}

export class ArtifactService {
  readonly blobs: ArtifactStore;
  private readonly o: ArtifactServiceOptions;
  private readonly now: () => number;

  constructor(options: ArtifactServiceOptions) {
    this.o = options;
    this.blobs = options.blobs;
    this.now = options.now ?? Date.now;
  }

  /**
   * Stores the bytes (deduplicated) and checks media type, name, size cap and total quota; no row
   * yet. A coded error (TYRUM_ERR_ARTIFACT_TOO_LARGE, _QUOTA, _MEDIA_TYPE, _INVALID, _IO) leaves
   * nothing stored. Record the returned reference with `recordInTx`, or use `put`.
   */
  async store(input: ArtifactInput): Promise<ArtifactRef> {
    const mediaType = normalizeMediaType(input.media_type);
    const name = sanitizeName(input.name);
    const put = await this.o.blobs.put(input.content, {
      maxBytes: this.o.maxBytes,
      accept: (digest, size) => {
        if (this.o.store.committed.artifacts.get(`sha256:${digest}`) !== undefined) return;
        const total = this.o.store.committed.artifacts.totalBytes();
        if (total + size > this.o.maxTotalBytes) {
          throw new TyrumError('TYRUM_ERR_ARTIFACT_QUOTA', `storing ${size} more bytes would take the artifacts past ${this.o.maxTotalBytes} bytes (limits.max_artifacts_total_bytes; ${total} stored); nothing was stored`, {
            size,
            total_bytes: total,
            max_total_bytes: this.o.maxTotalBytes,
          });
        }
      },
    });
    return { artifact_id: `sha256:${put.digest}`, size: put.size, media_type: mediaType, name };
  }

  /**
   * Inside a unit of the store's group commit (Store.commit / EventLog.commit): the metadata row
   * (when the content is new: `artifact.created`), the attachment when `attach` is given
   * (`artifact.attached`), and their audit entries. The run must exist.
   */
  recordInTx(ref: ArtifactRef, emit: Emit, createdBy: string, actor: AuditActor, attach?: AttachTarget): void {
    const now = this.now();
    const repo = this.o.store.artifacts;
    const row: ArtifactRow = { id: ref.artifact_id, size: ref.size, media_type: ref.media_type, name: ref.name, created_at: now, created_by: createdBy };
    if (repo.insert(row)) {
      emit('artifact.created', { artifact_id: row.id, size: row.size, media_type: row.media_type, name: row.name, created_by: createdBy });
      this.o.audit.appendInTx('artifact.created', actor, { artifact_id: row.id, digest: row.id.slice(7), size: row.size, media_type: row.media_type, name: row.name });
    }
    if (attach) this.attachInTx(ref.artifact_id, attach, emit, actor);
  }

  /** Stores and records an artifact, attached to nothing yet; resolves once durable. */
  async put(input: ArtifactInput, createdBy: string, actor: AuditActor = { kind: 'principal', id: createdBy }): Promise<ArtifactInfo> {
    const ref = await this.store(input);
    await this.o.events.commit((emit) => this.recordInTx(ref, emit, createdBy, actor));
    return this.info(ref.artifact_id);
  }

  /**
   * Stores an artifact and attaches it to a run (and step) in one commit: what a playbook step
   * calls for its evidence. Resolves once durable with the artifact and the attachment.
   */
  async putAndAttach(input: ArtifactInput, target: AttachTarget, actor: AuditActor = { kind: 'principal', id: target.by }): Promise<{ artifact: ArtifactInfo; attachment: AttachmentInfo }> {
    const ref = await this.store(input);
    const attachment = await this.o.events.commit((emit) => {
      this.recordInTx(ref, emit, target.by, actor);
      return this.attachInTx(ref.artifact_id, target, emit, actor);
    });
    return { artifact: this.info(ref.artifact_id), attachment };
  }

  /** Attaches a stored artifact to a run (and step); attaching it there again changes nothing. */
  async attach(artifactId: string, target: AttachTarget, actor: AuditActor = { kind: 'principal', id: target.by }): Promise<AttachmentInfo> {
    return this.o.events.commit((emit) => this.attachInTx(artifactId, target, emit, actor));
  }

  /** `attach` inside a unit the caller owns. */
  attachInTx(artifactId: string, target: AttachTarget, emit: Emit, actor: AuditActor): AttachmentInfo {
    digestOf(artifactId);
    const repo = this.o.store.artifacts;
    const a = repo.get(artifactId);
    if (!a) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no artifact ${artifactId}`, { artifact_id: artifactId });
    if (!this.o.store.execution.getRun(target.run_id)) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no run ${target.run_id}`, { run_id: target.run_id });
    const stepIdx = target.step_idx ?? null;
    const attempt = target.attempt ?? null;
    if (stepIdx !== null && (!Number.isSafeInteger(stepIdx) || stepIdx < 0)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'step_idx must be a non-negative integer', { step_idx: stepIdx });
    if (attempt !== null && (!Number.isSafeInteger(attempt) || attempt < 1)) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'attempt must be a positive integer', { attempt });
    const row: Omit<ArtifactAttachmentRow, 'id'> = {
      artifact_id: artifactId,
      run_id: target.run_id,
      step_idx: stepIdx,
      attempt,
      kind: 'evidence',
      name: target.name === undefined ? a.name : sanitizeName(target.name),
      media_type: target.media_type === undefined ? a.media_type : normalizeMediaType(target.media_type),
      attached_at: this.now(),
      attached_by: target.by,
    };
    if (repo.attach(row)) {
      emit('artifact.attached', { artifact_id: artifactId, run_id: row.run_id, step_idx: row.step_idx, attempt: row.attempt, kind: row.kind, name: row.name, media_type: row.media_type, size: a.size });
      this.o.audit.appendInTx('artifact.attached', actor, { artifact_id: artifactId, digest: artifactId.slice(7), size: a.size, media_type: row.media_type, run_id: row.run_id, step_idx: row.step_idx, attempt: row.attempt, kind: row.kind });
    }
    return { ...row };
  }

  /** Committed metadata; TYRUM_ERR_NOT_FOUND when unknown. */
  info(artifactId: string): ArtifactInfo {
    digestOf(artifactId);
    const r = this.o.store.committed.artifacts.get(artifactId);
    if (!r) throw new TyrumError('TYRUM_ERR_NOT_FOUND', `no artifact ${artifactId}`, { artifact_id: artifactId });
    return artifactInfo(r);
  }

  /** Metadata and attachments (to runs that exist: attachments go with their runs). */
  get(artifactId: string, tenant?: string): { artifact: ArtifactInfo; attachments: AttachmentInfo[] } {
    const artifact = this.info(artifactId);
    const repo = this.o.store.committed.artifacts;
    return { artifact, attachments: (tenant === undefined ? repo.attachments(artifactId) : repo.attachmentsInTenant(artifactId, tenant)).map(attachmentInfo) };
  }

  /** A run's attachments with their artifacts, in attachment order. */
  listForRun(runId: string, limit = 1000): Array<{ artifact: ArtifactInfo; attachment: AttachmentInfo }> {
    return this.o.store.committed.artifacts.ofRun(runId, limit).map((r) => ({ artifact: this.info(r.artifact_id), attachment: attachmentInfo(r) }));
  }

  /**
   * May a token holding `scopes` read this artifact? `operator.read` reads artifacts attached to
   * a run (any run: run.get shows every run to that scope); one attached to no run only
   * `operator.admin`. False also for an unknown artifact, so a caller cannot tell the two apart.
   */
  readableBy(artifactId: string, scopes: readonly string[], tenant = 'default'): boolean {
    if (!ID.test(artifactId)) return false;
    const repo = this.o.store.committed.artifacts;
    if (repo.get(artifactId) === undefined) return false;
    // Evidence of another tenant's runs only is not this tenant's to read (docs/tenancy.md).
    if (repo.attached(artifactId) && repo.attachmentsInTenant(artifactId, tenant, 1).length === 0) return false;
    if (scopes.includes('operator.admin')) return true;
    return scopes.includes('operator.read') && repo.attached(artifactId);
  }

  /** The bytes as a stream, with the metadata. TYRUM_ERR_NOT_FOUND when unknown; _IO when the blob is gone. */
  async open(artifactId: string): Promise<{ info: ArtifactInfo; stream: Readable; size: number }> {
    const info = this.info(artifactId);
    try {
      const { stream, size } = await this.o.blobs.open(digestOf(artifactId));
      return { info, stream, size };
    } catch (e) {
      if (e instanceof TyrumError && e.code === 'TYRUM_ERR_NOT_FOUND') {
        throw new TyrumError('TYRUM_ERR_ARTIFACT_IO', `artifact ${artifactId} is recorded but its blob is missing from the artifact store`, { artifact_id: artifactId }, { cause: e });
      }
      throw e;
    }
  }

  /** Reads the whole artifact into memory (small artifacts, tests); use `open` to stream. */
  async read(artifactId: string): Promise<Buffer> {
    const { stream } = await this.open(artifactId);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  // ---------------------------------------------------------------- retention (core/retention calls these)

  /**
   * Artifacts attached to no run (their runs were deleted, or they were never attached) created
   * before `before` (default: ORPHAN_GRACE_MS ago), oldest first, one bounded batch: removed
   * (row, then blob) unless `dryRun`. A row that gained an attachment meanwhile is kept.
   */
  async sweepUnattached(options: SweepOptions & { before?: number } = {}): Promise<SweepResult> {
    const limit = batch(options.limit);
    const before = options.before ?? this.now() - ORPHAN_GRACE_MS;
    const rows = this.o.store.committed.artifacts.unattached(before, limit);
    return this.remove(rows, limit, options, 'unattached', (id) => this.o.store.artifacts.removeUnattached(id));
  }

  /**
   * Artifacts created before `before`, attached or not (the retention period for artifacts),
   * oldest first, one bounded batch; their attachments go with them. Runs that referenced them
   * keep the reference in their evidence; a download then answers 404.
   */
  async sweepOlderThan(options: SweepOptions & { before: number }): Promise<SweepResult> {
    const limit = batch(options.limit);
    const rows = this.o.store.committed.artifacts.olderThan(options.before, limit);
    return this.remove(rows, limit, options, 'expired', (id) => this.o.store.artifacts.remove(id));
  }

  /**
   * Blobs in the store with no metadata row (a crash between a blob's write and its commit, or a
   * put whose commit failed) and unfinished temporary uploads, both older than `graceMs` (default
   * ORPHAN_GRACE_MS): one bounded batch after `after` (a digest cursor; `next` continues).
   */
  async sweepOrphanBlobs(options: { limit?: number; dryRun?: boolean; graceMs?: number; after?: string } = {}): Promise<{ dry_run: boolean; blobs: number; bytes: number; temporary: number; temporary_bytes: number; next: string | null }> {
    const limit = batch(options.limit);
    const dryRun = options.dryRun === true;
    const cutoff = this.now() - (options.graceMs ?? ORPHAN_GRACE_MS);
    const listed = await this.o.blobs.list({ ...(options.after !== undefined ? { after: options.after } : {}), limit });
    const known = this.o.store.committed.artifacts.known(listed.map((b) => `sha256:${b.digest}`));
    let blobs = 0;
    let bytes = 0;
    for (const b of listed) {
      if (known.has(`sha256:${b.digest}`) || b.mtimeMs >= cutoff) continue;
      if (dryRun) {
        blobs++;
        bytes += b.size;
        continue;
      }
      // Checked again right before: a put may have committed its row since the listing.
      await this.o.store.durable();
      if (this.o.store.artifacts.get(`sha256:${b.digest}`) !== undefined) continue;
      if (await this.o.blobs.delete(b.digest, { keepIfTouchedSince: cutoff })) {
        blobs++;
        bytes += b.size;
      }
    }
    const tmp = await this.o.blobs.sweepTemporary({ before: cutoff, limit, dryRun });
    return { dry_run: dryRun, blobs, bytes, temporary: tmp.count, temporary_bytes: tmp.bytes, next: listed.length === limit ? listed[listed.length - 1]!.digest : null };
  }

  /** Deletes the blob of an artifact whose row is gone (the retention sweeper, after its batch commits); kept if a put touched it within the in-flight window. */
  async deleteBlob(id: string): Promise<void> {
    if (this.o.store.artifacts.get(id) !== undefined) return;
    await this.o.blobs.delete(digestOf(id), { keepIfTouchedSince: this.now() - IN_FLIGHT_MS });
  }

  private async remove(rows: ArtifactRow[], limit: number, options: SweepOptions, reason: string, del: (id: string) => boolean): Promise<SweepResult> {
    const dryRun = options.dryRun === true;
    if (dryRun) return { dry_run: true, artifacts: rows.length, bytes: rows.reduce((n, r) => n + r.size, 0), ids: rows.map((r) => r.id), more: rows.length === limit };
    const actor = options.actor ?? SYSTEM;
    // Rows first, in one commit with their audit entries; then the blobs of the rows that went.
    const removed = await this.o.events.commit(() => {
      const out: ArtifactRow[] = [];
      for (const r of rows) {
        if (!del(r.id)) continue;
        out.push(r);
        this.o.audit.appendInTx('artifact.deleted', actor, { artifact_id: r.id, digest: r.id.slice(7), size: r.size, media_type: r.media_type, reason });
      }
      return out;
    });
    // A put of the same bytes in flight around this sweep touched the blob: it is kept (and, if
    // that put never commits, swept later as an orphan).
    const keepIfTouchedSince = this.now() - IN_FLIGHT_MS;
    for (const r of removed) await this.o.blobs.delete(digestOf(r.id), { keepIfTouchedSince });
    return { dry_run: false, artifacts: removed.length, bytes: removed.reduce((n, r) => n + r.size, 0), ids: removed.map((r) => r.id), more: rows.length === limit };
  }
}

function batch(limit: number | undefined): number {
  const n = limit ?? SWEEP_DEFAULT;
  if (!Number.isSafeInteger(n) || n < 1) throw new TyrumError('TYRUM_ERR_INVALID_ARGUMENT', 'limit must be a positive integer', { limit: n });
  return Math.min(n, SWEEP_MAX);
}

/**
 * The engine's ArtifactSink over the service: each output stored (validated, capped), then its
 * row and its attachment to the step's attempt recorded in the attempt's commit.
 */
export function artifactSink(service: ArtifactService): ArtifactSink {
  return {
    prepare: async (outputs: readonly ArtifactOutput[]) => {
      const refs: ArtifactRef[] = [];
      for (const o of outputs) refs.push(await service.store({ content: o.content, media_type: o.media_type, name: o.name ?? null }));
      return refs;
    },
    recordInTx: (refs, emit, t) => {
      for (const ref of refs) service.recordInTx(ref, emit, t.created_by, t.actor, { run_id: t.run_id, step_idx: t.step_idx, attempt: t.attempt, name: ref.name, media_type: ref.media_type, by: t.created_by });
    },
  };
}
