/**
 * The policy decision: a pure function of (snapshot, call, overrides, now). No I/O, no clock
 * reads, no randomness, so every decision can be replayed from what was recorded with it.
 *
 * The law, in order:
 * 1. A tool the registry does not know (`known: false`) is denied, whatever the rules say and in
 *    observe mode too: it has no effect, plugin or definition hash to decide on or approve.
 * 2. Every rule is evaluated; the strongest decision among the rules that match wins
 *    (deny > require_approval > allow).
 * 3. Only when no rule matches, the default for the tool's effect applies (bundle `defaults`,
 *    else the built-in read_only allow, state_changing require_approval, unknown deny).
 * 4. A live override for exactly this tool (and, when it names an args hash, exactly these
 *    arguments) turns require_approval into allow. It never turns deny into anything.
 * 5. In observe mode the decision is reported as computed but `enforced` is allow.
 */
import type { RiskFlag } from '../../schemas/src/manifest.js';
import type { PolicyBundle, PolicyDecision, PolicyEffect, PolicyMatch, PolicyRule, PolicyVerdict, PolicyGlobKind } from '../../schemas/src/policy.js';
import { globMatch } from './glob.js';

/** The decision when no rule matches, by effect, unless the bundle's `defaults` say otherwise. */
export const BUILTIN_DEFAULTS: Readonly<Record<PolicyEffect, PolicyVerdict>> = Object.freeze({
  read_only: 'allow',
  state_changing: 'require_approval',
  unknown: 'deny',
});

/** A content-addressed policy snapshot: `id` is `snapshotId(bundle)`. */
export interface PolicySnapshot {
  id: string;
  bundle: PolicyBundle;
}

/** Everything the policy may look at about one tool call. */
export interface PolicyCall {
  tool_id: string;
  /** False when the registry does not know the tool (always denied). */
  known: boolean;
  plugin_id: string | null;
  effect: PolicyEffect;
  /** Risk flags the tool's plugin declares. */
  risks: readonly RiskFlag[];
  /** Hosts the tool may reach (its plugin's effective egress). */
  egress_hosts: readonly string[];
  /** Secret handles the tool may use (its plugin's effective secrets). */
  secrets: readonly string[];
  /** sha256 hex of the canonical arguments; needed for args-bound overrides. */
  args_hash?: string | null;
}

/** A narrow "approve always" for one exact tool id (and optionally one exact args hash). */
export interface PolicyOverride {
  id: string;
  tool_id: string;
  args_hash: string | null;
  expires_at: number | null;
  revoked_at: number | null;
}

export type { PolicyDecision };

const RANK: Record<PolicyVerdict, number> = { allow: 0, require_approval: 1, deny: 2 };

/** The stronger of two decisions (deny > require_approval > allow). */
export function strongest(a: PolicyVerdict, b: PolicyVerdict): PolicyVerdict {
  return RANK[b] > RANK[a] ? b : a;
}

/** The criteria keys, in the order they are evaluated and explained. */
export const MATCH_KEYS = ['tools', 'plugins', 'effects', 'risks', 'egress_hosts', 'secrets'] as const;
export type MatchKey = (typeof MATCH_KEYS)[number];

/** The call's values a criterion is compared against. */
export function callValues(key: MatchKey, call: PolicyCall): readonly string[] {
  switch (key) {
    case 'tools':
      return [call.tool_id];
    case 'plugins':
      return call.plugin_id === null ? [] : [call.plugin_id];
    case 'effects':
      return [call.effect];
    case 'risks':
      return call.risks;
    case 'egress_hosts':
      return call.egress_hosts.map((h) => h.toLowerCase());
    case 'secrets':
      return call.secrets;
  }
}

const GLOB_KEYS: ReadonlySet<MatchKey> = new Set<PolicyGlobKind>(['tools', 'plugins', 'egress_hosts', 'secrets']);

/** Whether one criterion matches: any listed entry matches any of the call's values. */
export function criterionMatches(key: MatchKey, patterns: readonly string[], call: PolicyCall): boolean {
  const values = callValues(key, call);
  if (GLOB_KEYS.has(key)) return patterns.some((p) => values.some((v) => globMatch(p, v)));
  return patterns.some((p) => values.includes(p));
}

/** The criteria a rule lists, as [key, entries] pairs (an absent key is no constraint). */
export function listedCriteria(match: PolicyMatch): Array<[MatchKey, readonly string[]]> {
  const out: Array<[MatchKey, readonly string[]]> = [];
  for (const key of MATCH_KEYS) {
    const list = match[key] as readonly string[] | undefined;
    if (Array.isArray(list)) out.push([key, list]);
  }
  return out;
}

/** Whether `rule` matches `call`: every listed criterion matches (AND), empty match = always. */
export function ruleMatches(rule: PolicyRule, call: PolicyCall): boolean {
  return listedCriteria(rule.match).every(([key, list]) => criterionMatches(key, list, call));
}

/** Whether `o` is in force at `now`: not revoked and not expired (`expires_at` is exclusive). */
export function overrideLive(o: PolicyOverride, now: number): boolean {
  return o.revoked_at === null && (o.expires_at === null || now < o.expires_at);
}

/** Whether a live override applies to `call`: same tool id, and same args hash when it names one. */
export function overrideApplies(o: PolicyOverride, call: PolicyCall, now: number): boolean {
  if (!overrideLive(o, now) || o.tool_id !== call.tool_id) return false;
  return o.args_hash === null || (typeof call.args_hash === 'string' && o.args_hash === call.args_hash);
}

/** Decide `call` against `snapshot`; see the module comment for the law. */
export function decide(snapshot: PolicySnapshot, call: PolicyCall, overrides: readonly PolicyOverride[], now: number): PolicyDecision {
  const { bundle } = snapshot;
  const matched = bundle.rules.filter((r) => ruleMatches(r, call)).map((r) => ({ rule_id: r.id, decision: r.decision }));
  const reasons: string[] = [];
  let decision: PolicyVerdict;
  let source: PolicyDecision['source'];
  let overrideId: string | null = null;

  if (!call.known) {
    decision = 'deny';
    source = 'unknown_tool';
    reasons.push(`tool ${call.tool_id} is not in the registry: unknown tools are always denied`);
  } else if (matched.length > 0) {
    decision = matched.reduce<PolicyVerdict>((d, m) => strongest(d, m.decision), 'allow');
    source = 'rule';
    const by = matched.filter((m) => m.decision === decision).map((m) => m.rule_id);
    reasons.push(`${decision} by rule${by.length > 1 ? 's' : ''} ${by.join(', ')}`);
  } else {
    const configured = bundle.defaults?.[call.effect];
    decision = configured ?? BUILTIN_DEFAULTS[call.effect];
    source = 'default';
    reasons.push(`no rule matches: ${configured === undefined ? 'built-in' : 'bundle'} default for ${call.effect} tools is ${decision}`);
  }

  if (decision === 'require_approval') {
    // An args-bound override is the narrower grant; report it in preference to a tool-wide one.
    const live = overrides.filter((o) => overrideApplies(o, call, now));
    const o = live.find((x) => x.args_hash !== null) ?? live[0];
    if (o !== undefined) {
      decision = 'allow';
      source = 'override';
      overrideId = o.id;
      reasons.push(`override ${o.id} (${o.args_hash === null ? 'any arguments' : 'these arguments'}) allows it without approval`);
    }
  } else if (decision === 'deny' && call.known && overrides.some((o) => overrideApplies(o, call, now))) {
    reasons.push('an override exists for this tool but never beats a deny');
  }

  // Observe mode enforces nothing, except the unknown-tool floor: such a call cannot run at all.
  const observe = bundle.mode === 'observe';
  const enforced: PolicyVerdict = observe && call.known ? 'allow' : decision;
  if (observe) reasons.push(call.known ? `observe mode: ${decision} is recorded, not enforced` : 'observe mode does not apply to unknown tools');

  return { decision, enforced, snapshot_id: snapshot.id, mode: bundle.mode, matched, source, override_id: overrideId, reasons };
}

/** A tenant's own part of a decision: its bundle (none: it tightens nothing) and its overrides. */
export interface TenantPolicy {
  tenant_id: string;
  snapshot: PolicySnapshot | null;
  /** The tenant's overrides: they apply to this tenant's calls only. */
  overrides: readonly PolicyOverride[];
}

/** What the tenant's policy contributed to a decision (recorded as `tenant` on the decision). */
export type TenantDecision = NonNullable<PolicyDecision['tenant']>;

/**
 * Decide a call of a tenant other than the default (docs/tenancy.md, "Policy"). The host's
 * bundle is the ceiling: the host's decision is made as for any call, with the host's overrides,
 * and the tenant's overrides may also relax its require_approval (never a deny). The tenant's
 * bundle, when it has one, decides the call too (its overrides relax its require_approval; the
 * host's do not: the tenant asked for the approval). The result is the stricter of the two
 * (deny > require_approval > allow), for `decision` and for `enforced` alike.
 *
 * Without a tenant bundle and with no tenant override taking part, this is exactly `decide` of
 * the host's snapshot: the same object, with no `tenant` member.
 */
export function decideForTenant(host: PolicySnapshot, call: PolicyCall, hostOverrides: readonly PolicyOverride[], tenant: TenantPolicy, now: number): PolicyDecision {
  const tenantOverrideIds = new Set(tenant.overrides.map((o) => o.id));
  const h = decide(host, call, [...hostOverrides, ...tenant.overrides], now);
  const hostUsedTenantOverride = h.override_id !== null && tenantOverrideIds.has(h.override_id);
  if (tenant.snapshot === null && !hostUsedTenantOverride) return h;
  const t = tenant.snapshot === null ? null : decide(tenant.snapshot, call, tenant.overrides, now);
  const decision = strongest(h.decision, t?.decision ?? 'allow');
  const enforced = strongest(h.enforced, t?.enforced ?? 'allow');
  // The part that made the result: the tenant's when it is stricter (on a tie the host's, the
  // ceiling), or when the tenant's override took it down to the host's decision.
  const byTenant = t !== null && (RANK[t.decision] > RANK[h.decision] || (t.decision === h.decision && t.source === 'override' && h.source !== 'override'));
  const tenantOverride = t?.override_id ?? (hostUsedTenantOverride ? h.override_id : null);
  const reasons = [...h.reasons];
  if (hostUsedTenantOverride) reasons.push(`override ${h.override_id} is tenant ${tenant.tenant_id}'s: it applies to this tenant's calls only`);
  if (t === null) reasons.push(`tenant ${tenant.tenant_id} has no policy bundle of its own`);
  else {
    for (const r of t.reasons) reasons.push(`tenant ${tenant.tenant_id} policy ${t.snapshot_id}: ${r}`);
    reasons.push(`the stricter of the host's ${h.decision} and tenant ${tenant.tenant_id}'s ${t.decision}: ${decision}`);
  }
  const detail: TenantDecision = {
    tenant_id: tenant.tenant_id,
    snapshot_id: t?.snapshot_id ?? null,
    decision: t?.decision ?? null,
    enforced: t?.enforced ?? null,
    mode: t?.mode ?? null,
    matched: t?.matched ?? [],
    source: t?.source ?? null,
    override_id: tenantOverride,
    decided: byTenant || hostUsedTenantOverride,
  };
  return {
    decision,
    enforced,
    snapshot_id: h.snapshot_id,
    // Enforce when either bundle enforces: an observe-mode bundle does not weaken the other's.
    mode: h.mode === 'enforce' || t?.mode === 'enforce' ? 'enforce' : 'observe',
    matched: h.matched,
    source: byTenant ? t!.source : h.source,
    override_id: byTenant ? t!.override_id : h.override_id,
    reasons,
    tenant: detail,
  };
}
