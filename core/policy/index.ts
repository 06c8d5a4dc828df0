/**
 * Policy: which tool calls are allowed, need approval, or are denied. `decide` and `explain`
 * are pure; `PolicyService` stores snapshots and overrides; `readBundleFile` loads a bundle.
 */
export { decide, decideForTenant, strongest, ruleMatches, criterionMatches, overrideApplies, overrideLive, BUILTIN_DEFAULTS, MATCH_KEYS } from './decide.js';
export type { PolicyCall, PolicyDecision, PolicyOverride, PolicySnapshot, MatchKey, TenantPolicy, TenantDecision } from './decide.js';
export { explain, explainForTenant } from './explain.js';
export type { PolicyExplanation, RuleExplanation, CriterionExplanation, OverrideExplanation } from './explain.js';
export { globMatch, globProblem } from './glob.js';
export { bundleIssues, parseBundle, snapshotId, defaultBundle, policyDeniedError } from './bundle.js';
export { readBundleFile, POLICY_FILE_MAX_BYTES } from './load.js';
export { PolicyService, SYSTEM_ACTOR } from './service.js';
export type { PolicyServiceOptions, StoredSnapshot, SetResult, PolicyActivation, OverrideInfo, OverrideStatus, AddOverrideInput } from './service.js';
export { policyCall } from './call.js';
