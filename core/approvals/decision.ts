/**
 * How an operator's decision on an approval is handed to the gateway: the composition root
 * (core/runtime.ts) implements `ResolveApproval` (resolve the approval, and for an approved
 * `always` one add the narrow policy override); the protocol handlers and the CLI call it. Declared
 * here, beside the approvals, so neither side imports the other.
 */
import type { AuditActor } from '../audit/index.js';
import type { OverrideInfo } from '../policy/index.js';
import type { Approval } from './service.js';

export interface ApprovalDecision {
  decision: 'approved' | 'denied';
  reason?: string;
  mode?: 'once' | 'always';
  /** With mode `always`: how long the override lasts (default: until revoked). */
  overrideTtlMs?: number;
}

/** Resolves an approval; for an approved `always` one, also adds the narrow policy override. */
export type ResolveApproval = (id: string, input: ApprovalDecision, actor: AuditActor) => Promise<{ approval: Approval; override: OverrideInfo | null }>;
