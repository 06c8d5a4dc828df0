/**
 * Approvals: durable, single-use records bound to one call's canonical arguments, tool
 * definition and plugin digest; resolved atomically; expiring to denied.
 */
export {
  ApprovalService,
  approvalFromRow,
  approvalCovers,
  APPROVAL_DEFAULT_TTL_MS,
  APPROVAL_MAX_TTL_MS,
  APPROVAL_REASON_MAX_LENGTH,
  APPROVALS_LIST_DEFAULT_LIMIT,
  APPROVALS_LIST_MAX_LIMIT,
  type Approval,
  type ApprovalRequest,
  type ApprovalListQuery,
  type ApprovalServiceOptions,
  type ResolveInput,
  type ResolveResult,
} from './service.js';
export { argsHash, bindingMismatch, BINDING_FIELDS, type Binding } from './binding.js';
export type { ApprovalDecision, ResolveApproval } from './decision.js';
