/**
 * Checked HTTP egress for plugins: exact-match grants, SSRF address checks with pinned
 * connections, secret injection bound to destinations, re-checked redirects, limits, and
 * redaction of responses. See handler.ts.
 */
export {
  createEgressHandler,
  egressAuditEntry,
  REDIRECT_STATUSES,
  DEFAULT_EGRESS_LIMITS,
  type EgressOptions,
  type EgressLimits,
  type EgressRecord,
  type EgressRights,
  type EgressDenial,
  type EgressAuditEntry,
  type EgressHop,
  type EgressReply,
} from './handler.js';
export { canonicalHost } from '../secrets/destination.js';
export { classifyAddress, parseV6, type AddressClass } from './address.js';
export { parseTemplate, looksLikeTemplate, type TemplatePart, type ParsedTemplate } from './templates.js';
