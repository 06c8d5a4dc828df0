/** Public types of the execution engine: what callers submit, inject and read back. */
import type { AuditActor } from '../audit/index.js';
import type { AttemptState, PauseReason, RunKind, RunState, StepState } from '../store/index.js';
import type { Postcondition } from './postcondition.js';
import type { Emit } from './events.js';

export type { AttemptState, PauseReason, RunKind, RunState, StepState, Postcondition };

/** One step of a submission. */
export interface StepInput {
  tool_id: string;
  /** Opaque tool input. Never interpreted by the engine (it cannot carry approval state). */
  args: Record<string, unknown>;
  /** A key the tool honours for deduplication; its presence makes the step idempotent. */
  idempotency_key?: string;
  /** Default 3 for an idempotent step, 1 otherwise. */
  max_attempts?: number;
  /** Per attempt; default the engine's `defaultTimeoutMs`. */
  timeout_ms?: number;
  postcondition?: Postcondition;
}

export interface SubmitInput {
  kind: RunKind;
  steps: StepInput[];
  /** Repeating a key (per creator) returns the original run; a different payload is `conflict`. */
  idempotency_key?: string;
  /** The principal the run belongs to (the idempotency scope), e.g. a token id. */
  created_by: string;
  /** Audit actor for the submission; default `{ kind: 'principal', id: created_by }`. */
  actor?: AuditActor;
  /** The tenant that owns the run (docs/tenancy.md); default 'default'. */
  tenant_id?: string;
}

/** How the gateway resolves a tool id (from the registry); null when no such tool is enabled. */
export interface ResolvedTool {
  effect: 'read_only' | 'state_changing';
  definition_hash: string;
  plugin_digest: string;
  /** True when re-running the tool cannot repeat an external effect (read_only ⇒ true). */
  idempotent: boolean;
}

/** A policy decision (from core/policy, injected). Extra fields are kept as evidence. */
export interface PolicyResult {
  decision: 'allow' | 'require_approval' | 'deny';
  /** False in observe-only mode: recorded but not applied. */
  enforced: boolean;
  snapshot_id: string;
  [key: string]: unknown;
}

/** What `decide` and `execute` are told about the step. */
export interface StepCall {
  run_id: string;
  step_idx: number;
  kind: RunKind;
  created_by: string;
  tool_id: string;
  args: Record<string, unknown>;
  args_hash: string;
  idempotency_key: string | null;
  effect: ResolvedTool['effect'];
  definition_hash: string;
  plugin_digest: string;
  idempotent: boolean;
  /** The approval this call runs under, if any. */
  approval_id: string | null;
  /**
   * The tenant that owns the run (docs/tenancy.md): the submission's, also for a read-only call
   * made before its run is committed (a run taken at submission), else the stored run's.
   */
  tenant_id: string;
}

export interface ExecuteContext {
  /** Aborted on timeout or when the lease is lost; the executor should stop promptly. */
  signal: AbortSignal;
  /** 1-based attempt number. */
  attempt: number;
}

/** What the executor (PluginHost.invoke) returns. */
export interface ExecuteResult {
  output: unknown;
  usage?: Record<string, unknown> | null;
  duration_ms?: number;
  definition_hash?: string;
  plugin_digest?: string;
  /** What the executor reports beside the output (a node's digests, exit code...); kept, redacted, with the attempt. */
  evidence?: Record<string, unknown> | null;
  /**
   * Evidence blobs the tool or node produced (a screenshot, a report): stored in the artifact
   * store, attached to the step's attempt, and referenced from its evidence as `artifacts`.
   */
  artifacts?: ArtifactOutput[];
}

/** One blob an executor reports; the engine hands it to its ArtifactSink. */
export interface ArtifactOutput {
  media_type: string;
  name?: string | null;
  content: Uint8Array;
}

/** What the attempt's evidence says about a stored artifact (never its content). */
export interface ArtifactRef {
  /** 'sha256:' + hex digest of the bytes. */
  artifact_id: string;
  size: number;
  media_type: string;
  name: string | null;
}

/**
 * Where the engine stores the artifacts of a successful call (core/artifacts, injected): the bytes
 * are written first, outside any transaction; the metadata, attachments, events and audit entries
 * are written in the attempt's own commit, so a crash in between leaves only an unreferenced blob.
 */
export interface ArtifactSink {
  /** Validates (media type, caps, quota) and stores the bytes; a coded error stores nothing more. */
  prepare(outputs: readonly ArtifactOutput[]): Promise<ArtifactRef[]>;
  /** Inside the attempt's commit: metadata rows, attachments to the step's attempt, events and audit entries. */
  recordInTx(refs: readonly ArtifactRef[], emit: Emit, target: { run_id: string; step_idx: number; attempt: number; created_by: string; actor: AuditActor }): void;
}

/** A recorded error: stable code, wire code and a redacted message. */
export interface ErrorInfo {
  code: string;
  wire: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface RunView {
  id: string;
  kind: RunKind;
  state: RunState;
  created_by: string;
  idempotency_key: string | null;
  request_hash: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  cancel_requested: boolean;
  /** Why a paused run waits: an approval, or an operator's call on an `outcome_unknown` step. */
  pause_reason: PauseReason | null;
  /** Earliest time a queued retry may run. */
  next_attempt_at: number;
  /** tool: the step's output; workflow: every step's output (null for skipped steps). Redacted. */
  result: unknown;
  error: ErrorInfo | null;
  lease: { owner: string; expires_at: number; fencing_token: number } | null;
}

export interface AttemptView {
  n: number;
  state: AttemptState;
  owner: string;
  fencing_token: number;
  started_at: number;
  finished_at: number | null;
  duration_ms: number | null;
  usage: unknown;
  /** Redacted output (kept as evidence even when a postcondition failed). */
  result: unknown;
  error: ErrorInfo | null;
  /** Redacted evidence the executor reported (a node's file digests, exit code...), or null. */
  evidence: unknown;
}

export interface StepView {
  idx: number;
  tool_id: string;
  /** Redacted. */
  args: unknown;
  args_hash: string;
  idempotency_key: string | null;
  state: StepState;
  idempotent: boolean;
  max_attempts: number | null;
  timeout_ms: number;
  postcondition: Postcondition | null;
  /** Evidence: the policy decision and the snapshot it was made against. */
  policy: { decision: PolicyResult['decision']; enforced: boolean; snapshot_id: string; detail: unknown } | null;
  approval_id: string | null;
  definition_hash: string | null;
  plugin_digest: string | null;
  /** Redacted output of the successful attempt. */
  result: unknown;
  error: ErrorInfo | null;
  /** Of the last attempt. */
  duration_ms: number | null;
  usage: unknown;
  started_at: number | null;
  finished_at: number | null;
  attempts: AttemptView[];
}

export interface RunDetail {
  run: RunView;
  steps: StepView[];
}

export interface RunListQuery {
  state?: RunState;
  /** Default 50, at most 500. */
  limit?: number;
  /** A run id from the previous page (pages go newest first). */
  after?: string;
  /** Only this tenant's runs; absent: every run. */
  tenant?: string;
}

export type UnknownResolution = 'retry' | 'skip' | 'fail';
