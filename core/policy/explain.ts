/**
 * `explain`: the same decision as `decide`, plus why — every rule considered with each of its
 * criteria and whether it matched, and every override with why it did or did not apply. Pure,
 * like decide; `tyrum policy explain` prints `text`.
 */
import { decide, decideForTenant, callValues, criterionMatches, listedCriteria, overrideApplies, overrideLive, type MatchKey, type PolicyCall, type PolicyDecision, type PolicyOverride, type PolicySnapshot, type TenantPolicy } from './decide.js';
import type { PolicyVerdict } from '../../schemas/src/policy.js';

export interface CriterionExplanation {
  key: MatchKey;
  /** The rule's entries for this key. */
  patterns: string[];
  /** The call's values they were compared with. */
  values: string[];
  matched: boolean;
}

export interface RuleExplanation {
  rule_id: string;
  decision: PolicyVerdict;
  description: string | null;
  matched: boolean;
  /** Only the criteria the rule lists; none means the rule matches every call. */
  criteria: CriterionExplanation[];
}

export interface OverrideExplanation {
  override_id: string;
  applies: boolean;
  /** "applies", "revoked", "expired", "other tool", "other arguments", "no arguments hash given". */
  why: string;
}

export interface PolicyExplanation extends PolicyDecision {
  rules: RuleExplanation[];
  overrides: OverrideExplanation[];
  /** Human-readable, multi-line. */
  text: string;
}

const list = (xs: readonly string[]) => (xs.length === 0 ? '(none)' : xs.join(', '));

function overrideWhy(o: PolicyOverride, call: PolicyCall, now: number): string {
  if (overrideApplies(o, call, now)) return 'applies';
  if (o.revoked_at !== null) return 'revoked';
  if (!overrideLive(o, now)) return 'expired';
  if (o.tool_id !== call.tool_id) return 'other tool';
  return typeof call.args_hash === 'string' ? 'other arguments' : 'no arguments hash given';
}

/** Every rule of `bundle`, criterion by criterion, against `call`. */
function ruleExplanations(snapshot: PolicySnapshot, call: PolicyCall): RuleExplanation[] {
  return snapshot.bundle.rules.map((r) => {
    const criteria = listedCriteria(r.match).map(([key, patterns]) => ({
      key,
      patterns: [...patterns],
      values: [...callValues(key, call)],
      matched: criterionMatches(key, patterns, call),
    }));
    return { rule_id: r.id, decision: r.decision, description: r.description ?? null, matched: criteria.every((c) => c.matched), criteria };
  });
}

function overrideExplanations(overrides: readonly PolicyOverride[], call: PolicyCall, now: number): OverrideExplanation[] {
  return overrides.map((o) => {
    const why = overrideWhy(o, call, now);
    return { override_id: o.id, applies: why === 'applies', why };
  });
}

function callLine(call: PolicyCall): string {
  return `call ${call.tool_id}${call.known ? '' : ' (not in the registry)'}: plugin ${call.plugin_id ?? '(none)'}, effect ${call.effect}, risks ${list(call.risks)}, egress ${list(call.egress_hosts)}, secrets ${list(call.secrets)}`;
}

function ruleLines(rules: readonly RuleExplanation[], lines: string[]): void {
  if (rules.length === 0) lines.push('rules: none');
  for (const r of rules) {
    const head = `rule ${r.rule_id} (${r.decision}): ${r.matched ? 'matches' : 'does not match'}`;
    lines.push(r.criteria.length === 0 ? `${head} (empty match: every call)` : head);
    if (r.description !== null) lines.push(`    ${r.description}`);
    for (const c of r.criteria) lines.push(`  - ${c.key} [${c.patterns.join(', ')}] vs ${list(c.values)}: ${c.matched ? 'yes' : 'no'}`);
  }
}

/** Decide `call` as `decide` does and say why, rule by rule. */
export function explain(snapshot: PolicySnapshot, call: PolicyCall, overrides: readonly PolicyOverride[], now: number): PolicyExplanation {
  const result = decide(snapshot, call, overrides, now);
  const rules = ruleExplanations(snapshot, call);
  const ovs = overrideExplanations(overrides, call, now);

  const lines: string[] = [];
  const b = snapshot.bundle;
  lines.push(`policy ${snapshot.id} (mode ${b.mode}, ${b.rules.length} rule${b.rules.length === 1 ? '' : 's'})`);
  lines.push(callLine(call));
  ruleLines(rules, lines);
  for (const o of ovs) lines.push(`override ${o.override_id}: ${o.why}`);
  lines.push(`decision: ${result.decision} (from ${result.source})`);
  for (const reason of result.reasons) lines.push(`  ${reason}`);
  lines.push(`enforced: ${result.enforced}`);
  return { ...result, rules, overrides: ovs, text: lines.join('\n') };
}

/**
 * `decideForTenant` with the reasoning, for a tenant other than the default: its own bundle rule
 * by rule and its own overrides (`tenant.overrides` may include revoked and expired ones: they are
 * listed with why they do not apply). The host's bundle is named by snapshot id and its decision
 * (verdict, source, matched rule ids, as a step records them), never its content.
 */
export function explainForTenant(host: PolicySnapshot, call: PolicyCall, hostOverrides: readonly PolicyOverride[], tenant: TenantPolicy, now: number): PolicyExplanation {
  const live = tenant.overrides.filter((o) => o.revoked_at === null);
  const result = decideForTenant(host, call, hostOverrides, { ...tenant, overrides: live }, now);
  const hostOnly = decide(host, call, hostOverrides, now);
  const rules = tenant.snapshot === null ? [] : ruleExplanations(tenant.snapshot, call);
  const ovs = overrideExplanations(tenant.overrides, call, now);

  const lines: string[] = [];
  const matched = hostOnly.matched.map((m) => m.rule_id);
  lines.push(`host policy ${host.id} (the host's; it applies to every tenant): ${hostOnly.decision} (from ${hostOnly.source}${matched.length > 0 ? `: ${matched.join(', ')}` : ''})`);
  if (tenant.snapshot === null) lines.push(`tenant ${tenant.tenant_id}: no policy bundle of its own`);
  else {
    const b = tenant.snapshot.bundle;
    lines.push(`tenant ${tenant.tenant_id} policy ${tenant.snapshot.id} (mode ${b.mode}, ${b.rules.length} rule${b.rules.length === 1 ? '' : 's'})`);
  }
  lines.push(callLine(call));
  if (tenant.snapshot !== null) ruleLines(rules, lines);
  for (const o of ovs) lines.push(`override ${o.override_id} (tenant ${tenant.tenant_id}'s): ${o.why}`);
  lines.push(`decision: ${result.decision} (from ${result.source}${result.tenant?.decided === true ? `, tenant ${tenant.tenant_id}'s policy` : ''})`);
  for (const reason of result.reasons) lines.push(`  ${reason}`);
  lines.push(`enforced: ${result.enforced}`);
  return { ...result, rules, overrides: ovs, text: lines.join('\n') };
}
