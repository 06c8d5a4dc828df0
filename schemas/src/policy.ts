/**
 * The policy bundle: the operator's rules for which tool calls are allowed, need a human's
 * approval, or are denied. Every decision is made against a content-addressed snapshot of a
 * bundle (`pol_` + sha256 of its RFC 8785 canonical JSON), and the snapshot id is recorded
 * with the decision.
 *
 * Semantics (implemented by core/policy/decide.ts):
 * - `deny` beats `require_approval` beats `allow`, across every rule that matches;
 * - `defaults` apply only when no rule matches (built in: read_only allow, state_changing
 *   require_approval, unknown deny);
 * - a rule matches when every criterion it lists matches (AND across keys); a criterion
 *   matches when any listed pattern matches any of the call's values (OR within a list);
 *   a rule with an empty `match` matches every call;
 * - patterns are globs whose only special character is `*`, matching any run of characters
 *   (including none, and including "."): `github.*` is every tool of plugin github,
 *   `*.example.com` every subdomain of example.com at any depth (not example.com itself).
 *   `**` is refused: a single `*` already crosses dots.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Strict } from './common.js';
import { RiskFlag } from './manifest.js';

export const POLICY_VERSION = 1;

/** The three outcomes, weakest first: the order is the precedence (a later one wins). */
export const POLICY_VERDICTS = ['allow', 'require_approval', 'deny'] as const;
export type PolicyVerdict = (typeof POLICY_VERDICTS)[number];
export const PolicyVerdict = Type.Union(POLICY_VERDICTS.map((d) => Type.Literal(d)), { description: 'allow, require_approval or deny (deny beats require_approval beats allow).' });

export const POLICY_MODES = ['enforce', 'observe'] as const;
export type PolicyMode = (typeof POLICY_MODES)[number];
export const PolicyMode = Type.Union(POLICY_MODES.map((m) => Type.Literal(m)), {
  description: 'enforce: decisions are applied. observe: decisions are computed and recorded, but every call proceeds (for rolling out a policy).',
});

/** A tool's declared effect; `unknown` for a tool that declares none (e.g. an imported MCP tool). */
export const POLICY_EFFECTS = ['read_only', 'state_changing', 'unknown'] as const;
export type PolicyEffect = (typeof POLICY_EFFECTS)[number];
export const PolicyEffect = Type.Union(POLICY_EFFECTS.map((e) => Type.Literal(e)));

/** Snapshot ids: `pol_` + the full sha256 hex of the bundle's canonical JSON. */
export const POLICY_SNAPSHOT_ID_PATTERN = '^pol_[0-9a-f]{64}$';
export const PolicySnapshotId = Type.String({ pattern: POLICY_SNAPSHOT_ID_PATTERN, description: 'pol_ + sha256 hex of the RFC 8785 canonical JSON of the bundle.' });

export const POLICY_RULE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$';

/**
 * Glob syntax per criterion: the characters of the values it matches, plus `*`; never `**`.
 * Host patterns are lowercase (hosts are matched case-insensitively).
 */
export const POLICY_GLOB_CHARSETS = {
  tools: 'A-Za-z0-9_.@\\-',
  plugins: 'a-z0-9\\-',
  egress_hosts: 'a-z0-9.:\\[\\]\\-',
  secrets: 'A-Z0-9_',
} as const;
export type PolicyGlobKind = keyof typeof POLICY_GLOB_CHARSETS;

/** The JSON Schema pattern for a glob of `kind` (the charset plus `*`, no `**`). */
export function policyGlobPattern(kind: PolicyGlobKind): string {
  return `^(?!.*\\*\\*)[${POLICY_GLOB_CHARSETS[kind]}*]+$`;
}

const MAX_PATTERNS = 100;
const globList = (kind: PolicyGlobKind, description: string) =>
  Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 255, pattern: policyGlobPattern(kind) }), { minItems: 1, maxItems: MAX_PATTERNS, uniqueItems: true, description }));

export const PolicyMatch = Strict(
  {
    tools: globList('tools', 'Tool id globs (<plugin id>.<tool name>), e.g. "github.*", "*.delete_*".'),
    plugins: globList('plugins', 'Plugin id globs.'),
    effects: Type.Optional(Type.Array(PolicyEffect, { minItems: 1, uniqueItems: true, description: 'The tool\'s declared effect.' })),
    risks: Type.Optional(Type.Array(RiskFlag, { minItems: 1, uniqueItems: true, description: 'Matches when the tool\'s plugin declares any of these risk flags.' })),
    egress_hosts: globList('egress_hosts', 'Matches when the tool may reach any host matching one of these globs, e.g. "*.example.com".'),
    secrets: globList('secrets', 'Matches when the tool may use any secret handle matching one of these globs, e.g. "GITHUB_*".'),
  },
  { description: 'Every listed criterion must match (AND); within a list any entry may match (OR). Empty: matches every call.' },
);
export type PolicyMatch = Static<typeof PolicyMatch>;

export const PolicyRule = Strict({
  id: Type.String({ pattern: POLICY_RULE_ID_PATTERN, description: 'Unique in the bundle; reported with every decision the rule takes part in.' }),
  description: Type.Optional(Type.String({ maxLength: 500 })),
  decision: PolicyVerdict,
  match: PolicyMatch,
});
export type PolicyRule = Static<typeof PolicyRule>;

export const PolicyDefaults = Strict(
  {
    read_only: Type.Optional(PolicyVerdict),
    state_changing: Type.Optional(PolicyVerdict),
    unknown: Type.Optional(PolicyVerdict),
  },
  { description: 'Decisions by effect when no rule matches. Built in: read_only allow, state_changing require_approval, unknown deny.' },
);
export type PolicyDefaults = Static<typeof PolicyDefaults>;

/** Nodes paired without an operator: only local ones (a loopback address), only by a rule naming what they may run. */
export const PairingPolicy = Strict(
  {
    auto_approve: Type.Array(
      Strict({
        id: Type.String({ pattern: POLICY_RULE_ID_PATTERN, description: 'Recorded with every pairing it approves.' }),
        trust_level: Type.Literal('local', { description: 'Only local nodes (connecting from a loopback address) can be approved by policy.' }),
        capabilities: Type.Array(Strict({ id: Type.String({ minLength: 1, maxLength: 128 }), version: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })) }), { minItems: 1, maxItems: 256, description: 'The allowlist: what the node advertised of these.' }),
        read_only: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 256 })),
        labels: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 100, description: 'Only nodes whose label is one of these.' })),
      }),
      { maxItems: 20 },
    ),
  },
  { description: 'Pairing rules. Without any, every node waits for an operator.' },
);
export type PairingPolicy = Static<typeof PairingPolicy>;

export const PolicyBundle = Strict(
  {
    $schema: Type.Optional(Type.String({ maxLength: 500 })),
    policy_version: Type.Literal(POLICY_VERSION),
    mode: PolicyMode,
    defaults: Type.Optional(PolicyDefaults),
    rules: Type.Array(PolicyRule, { maxItems: 1000 }),
    pairing: Type.Optional(PairingPolicy),
  },
  { description: 'A versioned policy bundle. Rule ids are unique. A tool the registry does not know is always denied.' },
);
export type PolicyBundle = Static<typeof PolicyBundle>;

/** What made a decision. `unknown_tool`: the tool is not in the registry, which is always a deny. */
export const POLICY_SOURCES = ['rule', 'default', 'override', 'unknown_tool'] as const;
export type PolicySource = (typeof POLICY_SOURCES)[number];

/** The outcome of one policy decision, as recorded with a step's evidence. */
export const PolicyDecision = Strict({
  decision: PolicyVerdict,
  enforced: PolicyVerdict,
  snapshot_id: PolicySnapshotId,
  mode: PolicyMode,
  matched: Type.Array(Strict({ rule_id: Type.String(), decision: PolicyVerdict })),
  source: Type.Union(POLICY_SOURCES.map((s) => Type.Literal(s))),
  override_id: Type.Union([Type.String(), Type.Null()]),
  reasons: Type.Array(Type.String()),
  /**
   * A call of a tenant other than the default whose own policy took part (its bundle, or an
   * override it owns; docs/tenancy.md): what the tenant's part decided. The members above are
   * the combined decision (the stricter of the host's and the tenant's); `snapshot_id` and
   * `matched` stay the host's. Absent otherwise, so the host's decisions read as before.
   */
  tenant: Type.Optional(
    Strict({
      tenant_id: Type.String(),
      /** The tenant's bundle snapshot; null when it has none. */
      snapshot_id: Type.Union([PolicySnapshotId, Type.Null()]),
      decision: Type.Union([PolicyVerdict, Type.Null()]),
      enforced: Type.Union([PolicyVerdict, Type.Null()]),
      mode: Type.Union([PolicyMode, Type.Null()]),
      matched: Type.Array(Strict({ rule_id: Type.String(), decision: PolicyVerdict })),
      source: Type.Union([...POLICY_SOURCES.map((s) => Type.Literal(s)), Type.Null()]),
      /** The tenant's override that took part (relaxing the host's or its own require_approval). */
      override_id: Type.Union([Type.String(), Type.Null()]),
      /** True when the tenant's part made the result: its bundle was stricter, or its override allowed the call. */
      decided: Type.Boolean(),
    }),
  ),
});
export type PolicyDecision = Static<typeof PolicyDecision>;
