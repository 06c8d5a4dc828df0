/**
 * Artifacts: content-addressed evidence blobs (sha256) stored outside the state store, with size
 * caps, media types, attachments to runs, policy-gated reads (GET /artifacts/:id) and retention
 * sweeps. See docs/artifacts.md.
 *
 * For the playbook runner: `ArtifactService.putAndAttach(input, { run_id, step_idx, by })` stores
 * a step's evidence and attaches it in one commit; `attach` attaches a stored one again.
 * For the retention sweeper: `sweepUnattached`, `sweepOlderThan` and `sweepOrphanBlobs`, each one
 * bounded batch with a dry-run mode returning counts and bytes.
 */
export {
  ArtifactService,
  artifactSink,
  artifactInfo,
  attachmentInfo,
  digestOf,
  ORPHAN_GRACE_MS,
  type ArtifactServiceOptions,
  type ArtifactInput,
  type ArtifactInfo,
  type AttachmentInfo,
  type AttachTarget,
  type SweepOptions,
  type SweepResult,
} from './service.js';
export { FsArtifactStore, type ArtifactStore, type BlobPut, type BlobSource, type BlobStat, type PutOptions } from './store.js';
export { normalizeMediaType, sanitizeName, contentDisposition, MEDIA_TYPE_MAX_LENGTH, NAME_MAX_BYTES } from './names.js';
export { parseInlineArtifacts, extractToolArtifacts, TOOL_ARTIFACTS_KEY, MAX_INLINE_ARTIFACTS } from './inline.js';
export type { ArtifactOutput, ArtifactRef, ArtifactSink } from '../execution/types.js';

import { join } from 'node:path';
import type { Store } from '../store/index.js';
import type { AuditLog } from '../audit/index.js';
import type { EventLog } from '../execution/events.js';
import { ArtifactService as Service } from './service.js';
import { FsArtifactStore as FsStore } from './store.js';

/** The artifact service of a home: the filesystem store under `<home>/artifacts/`, the configured caps. */
export function openArtifactService(o: { store: Store; events: EventLog; audit: AuditLog; home: string; limits: { maxArtifactBytes: number; maxArtifactsTotalBytes: number }; now?: () => number }): Service {
  return new Service({
    store: o.store,
    events: o.events,
    audit: o.audit,
    blobs: new FsStore(join(o.home, 'artifacts')),
    maxBytes: o.limits.maxArtifactBytes,
    maxTotalBytes: o.limits.maxArtifactsTotalBytes,
    ...(o.now ? { now: o.now } : {}),
  });
}
