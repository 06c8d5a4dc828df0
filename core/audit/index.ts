/**
 * Tamper-evident audit log: hash-chained, append-only entries in the store, anchored by a
 * signed checkpoint file outside it.
 */
export { AuditLog, listAudit, AUDIT_LIST_DEFAULT_LIMIT, AUDIT_LIST_MAX_LIMIT, type AuditLogOptions, type AuditListQuery, type AnchorCheck } from './log.js';
export { writeAuditArchive, verifyAuditArchive, ARCHIVE_FORMAT, type ArchiveWritten, type ArchiveVerifyResult, type WriteArchiveOptions } from './archive.js';
export { verifyAudit, exportAudit, ChainWalk, type VerifyAuditOptions, type VerifyAuditResult, type AuditFault } from './verify.js';
export { GENESIS_HASH, hashEntry, type AuditActor, type AuditEntry, type HashedFields } from './entry.js';
export {
  loadCheckpoint,
  type Checkpoint,
  type CheckpointBody,
  type CheckpointLoad,
  type CheckpointSigner,
  type CheckpointVerifier,
  type TamperRecord,
} from './checkpoint.js';
