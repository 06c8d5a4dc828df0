/**
 * Persistence of artifact metadata and attachments (migration 11). Rows only: the bytes live in
 * the artifact store (core/artifacts), and what may be stored, read or removed is decided there.
 */
import { prepared, type SqlDb } from './statements.js';

export interface ArtifactRow {
  /** 'sha256:' + lowercase hex digest of the bytes. */
  id: string;
  size: number;
  media_type: string;
  name: string | null;
  created_at: number;
  created_by: string;
}

export interface ArtifactAttachmentRow {
  id: number;
  artifact_id: string;
  run_id: string;
  step_idx: number | null;
  attempt: number | null;
  kind: 'evidence';
  name: string | null;
  media_type: string;
  attached_at: number;
  attached_by: string;
}

export class ArtifactRepo {
  constructor(private readonly db: SqlDb) {}

  /** Inserts the row unless that content is already known; true when it was new. */
  insert(r: ArtifactRow): boolean {
    return (
      prepared(this.db, 'INSERT INTO artifacts (id, size, media_type, name, created_at, created_by) VALUES (@id, @size, @media_type, @name, @created_at, @created_by) ON CONFLICT (id) DO NOTHING').run(r)
        .changes === 1
    );
  }

  get(id: string): ArtifactRow | undefined {
    return prepared(this.db, 'SELECT * FROM artifacts WHERE id = ?').get(id) as ArtifactRow | undefined;
  }

  /** Bytes of every stored artifact. */
  totalBytes(): number {
    return (prepared(this.db, 'SELECT COALESCE(SUM(size), 0) AS n FROM artifacts').get() as { n: number }).n;
  }

  /** Attaches; false when this exact attachment (run, step, attempt, artifact) exists already. */
  attach(a: Omit<ArtifactAttachmentRow, 'id'>): boolean {
    return (
      prepared(
        this.db,
        `INSERT INTO artifact_attachments (artifact_id, run_id, step_idx, attempt, kind, name, media_type, attached_at, attached_by)
         VALUES (@artifact_id, @run_id, @step_idx, @attempt, @kind, @name, @media_type, @attached_at, @attached_by) ON CONFLICT DO NOTHING`,
      ).run(a).changes === 1
    );
  }

  /** Attachments of an artifact, oldest first. */
  attachments(artifactId: string, limit = 1000): ArtifactAttachmentRow[] {
    return prepared(this.db, 'SELECT * FROM artifact_attachments WHERE artifact_id = ? ORDER BY id LIMIT ?').all(artifactId, limit) as ArtifactAttachmentRow[];
  }

  /** The attachments of a run, in the order they were made. */
  ofRun(runId: string, limit: number): ArtifactAttachmentRow[] {
    return prepared(this.db, 'SELECT * FROM artifact_attachments WHERE run_id = ? ORDER BY id LIMIT ?').all(runId, limit) as ArtifactAttachmentRow[];
  }

  /** True when the artifact is attached to at least one run (attachments go with their runs). */
  /** The attachments of an artifact to runs of one tenant (docs/tenancy.md). */
  attachmentsInTenant(artifactId: string, tenant: string, limit = 1000): ArtifactAttachmentRow[] {
    if (tenant === 'default') {
      return prepared(
        this.db,
        'SELECT t.* FROM artifact_attachments t WHERE t.artifact_id = ? AND NOT EXISTS (SELECT 1 FROM tenant_runs o WHERE o.run_id = t.run_id) ORDER BY t.id LIMIT ?',
      ).all(artifactId, limit) as ArtifactAttachmentRow[];
    }
    return prepared(
      this.db,
      'SELECT t.* FROM artifact_attachments t WHERE t.artifact_id = ? AND t.run_id IN (SELECT run_id FROM tenant_runs WHERE tenant_id = ?) ORDER BY t.id LIMIT ?',
    ).all(artifactId, tenant, limit) as ArtifactAttachmentRow[];
  }

  attached(artifactId: string): boolean {
    return prepared(this.db, 'SELECT 1 FROM artifact_attachments WHERE artifact_id = ? LIMIT 1').get(artifactId) !== undefined;
  }

  /** Artifacts attached to no run, created before `before`, oldest first. */
  unattached(before: number, limit: number): ArtifactRow[] {
    return prepared(
      this.db,
      `SELECT a.* FROM artifacts a WHERE a.created_at < ? AND NOT EXISTS (SELECT 1 FROM artifact_attachments t WHERE t.artifact_id = a.id)
       ORDER BY a.created_at, a.id LIMIT ?`,
    ).all(before, limit) as ArtifactRow[];
  }

  /** Artifacts created before `before`, attached or not, oldest first. */
  olderThan(before: number, limit: number): ArtifactRow[] {
    return prepared(this.db, 'SELECT * FROM artifacts WHERE created_at < ? ORDER BY created_at, id LIMIT ?').all(before, limit) as ArtifactRow[];
  }

  /** Deletes the row (its attachments cascade); false when it was gone already. */
  remove(id: string): boolean {
    return prepared(this.db, 'DELETE FROM artifacts WHERE id = ?').run(id).changes === 1;
  }

  /** Deletes the row only while nothing is attached to it. */
  removeUnattached(id: string): boolean {
    return prepared(this.db, 'DELETE FROM artifacts WHERE id = ? AND NOT EXISTS (SELECT 1 FROM artifact_attachments t WHERE t.artifact_id = ?)').run(id, id).changes === 1;
  }

  /** Which of these ids have a row. */
  known(ids: readonly string[]): Set<string> {
    const out = new Set<string>();
    for (const id of ids) if (prepared(this.db, 'SELECT 1 FROM artifacts WHERE id = ?').get(id) !== undefined) out.add(id);
    return out;
  }
}
