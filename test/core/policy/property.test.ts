// Property tests of decide over random bundles, calls and overrides.
import t from 'tap';
import fc from 'fast-check';
import { decide, BUILTIN_DEFAULTS, type PolicyCall, type PolicyOverride } from '../../../core/policy/decide.js';
import { explain } from '../../../core/policy/explain.js';
import { bundleIssues, snapshotId } from '../../../core/policy/bundle.js';
import { RISK_FLAGS } from '../../../schemas/src/manifest.js';
import { POLICY_EFFECTS, POLICY_MODES, POLICY_VERDICTS, type PolicyBundle, type PolicyMatch, type PolicyVerdict } from '../../../schemas/src/policy.js';

const NOW = 1_700_000_000_000;
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const TOOLS = ['gh.create_issue', 'gh.list_issues', 'fs.delete_file', 'fs.read_file', 'mcp-x.Weather_get'];
const PLUGINS = ['gh', 'fs', 'mcp-x'];
const HOSTS = ['api.github.com', 'a.b.example.com', 'example.com', 'localhost'];
const SECRETS = ['GH_TOKEN', 'AWS_KEY'];

const some = <T>(xs: readonly T[]) => fc.uniqueArray(fc.constantFrom(...xs), { minLength: 1, maxLength: xs.length });
const subset = <T>(xs: readonly T[]) => fc.uniqueArray(fc.constantFrom(...xs), { maxLength: xs.length });
const verdict = fc.constantFrom(...POLICY_VERDICTS);

const match: fc.Arbitrary<PolicyMatch> = fc.record(
  {
    tools: some(['*', 'gh.*', 'fs.*', '*.delete_*', 'gh.create_issue', '*_issue*', 'fs.read_file', 'mcp-*']),
    plugins: some(['*', 'g*', 'fs', 'mcp-x', 'nope']),
    effects: some(POLICY_EFFECTS),
    risks: some(RISK_FLAGS),
    egress_hosts: some(['*', '*.github.com', '*.example.com', 'example.com', 'local*']),
    secrets: some(['*', 'GH_*', 'AWS_KEY']),
  },
  { requiredKeys: [] },
);

const bundle: fc.Arbitrary<PolicyBundle> = fc
  .record({
    mode: fc.constantFrom(...POLICY_MODES),
    defaults: fc.option(fc.record({ read_only: verdict, state_changing: verdict, unknown: verdict }, { requiredKeys: [] }), { nil: undefined }),
    rules: fc.array(fc.record({ decision: verdict, match }), { maxLength: 6 }),
  })
  .map(({ mode, defaults, rules }) => ({ policy_version: 1 as const, mode, ...(defaults ? { defaults } : {}), rules: rules.map((r, i) => ({ id: `r${i}`, ...r })) }));

const call: fc.Arbitrary<PolicyCall> = fc.record({
  tool_id: fc.constantFrom(...TOOLS),
  known: fc.boolean(),
  plugin_id: fc.option(fc.constantFrom(...PLUGINS), { nil: null }),
  effect: fc.constantFrom(...POLICY_EFFECTS),
  risks: subset(RISK_FLAGS),
  egress_hosts: subset(HOSTS),
  secrets: subset(SECRETS),
  args_hash: fc.constantFrom(A, B, null),
});

const overrides: fc.Arbitrary<PolicyOverride[]> = fc
  .array(
    fc.record({
      tool_id: fc.constantFrom(...TOOLS),
      args_hash: fc.constantFrom(A, B, null),
      expires_at: fc.option(fc.integer({ min: NOW - 10, max: NOW + 10 }), { nil: null }),
      revoked_at: fc.option(fc.integer({ min: NOW - 10, max: NOW }), { nil: null }),
    }),
    { maxLength: 4 },
  )
  .map((os) => os.map((o, i) => ({ id: `ovr_${i}`, ...o })));

/** An independent glob reference: the pattern as an anchored regular expression. */
const globRef = (p: string, v: string) => new RegExp('^' + p.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')).join('.*') + '$', 's').test(v);

function refMatches(m: PolicyMatch, c: PolicyCall): boolean {
  const any = (ps: readonly string[] | undefined, vs: readonly string[], glob: boolean) => ps === undefined || ps.some((p) => vs.some((v) => (glob ? globRef(p, v) : p === v)));
  return (
    any(m.tools, [c.tool_id], true) &&
    any(m.plugins, c.plugin_id === null ? [] : [c.plugin_id], true) &&
    any(m.effects, [c.effect], false) &&
    any(m.risks, c.risks, false) &&
    any(m.egress_hosts, c.egress_hosts, true) &&
    any(m.secrets, c.secrets, true)
  );
}

const rank = (d: PolicyVerdict) => POLICY_VERDICTS.indexOf(d);

t.test('property: for random valid bundles, calls and overrides, decide never throws and the precedence law holds', async (t) => {
  fc.assert(
    fc.property(bundle, call, overrides, fc.integer({ min: NOW - 20, max: NOW + 20 }), (b, c, os, now) => {
      if (bundleIssues(b).length > 0) throw new Error(`generator made an invalid bundle: ${JSON.stringify(bundleIssues(b))}`);
      const d = decide({ id: snapshotId(b), bundle: b }, c, os, now);
      const matched = b.rules.filter((r) => refMatches(r.match, c));
      // matched: exactly the rules that match, in bundle order, with their decisions.
      if (JSON.stringify(d.matched) !== JSON.stringify(matched.map((r) => ({ rule_id: r.id, decision: r.decision })))) return false;
      const strongest = matched.reduce<PolicyVerdict | null>((s, r) => (s === null || rank(r.decision) > rank(s) ? r.decision : s), null);
      const base = strongest ?? b.defaults?.[c.effect] ?? BUILTIN_DEFAULTS[c.effect];
      const applicable = os.filter((o) => o.tool_id === c.tool_id && o.revoked_at === null && (o.expires_at === null || now < o.expires_at) && (o.args_hash === null || o.args_hash === c.args_hash));
      if (!c.known) return d.decision === 'deny' && d.enforced === 'deny' && d.source === 'unknown_tool' && d.override_id === null;
      if (strongest === 'deny' && d.decision !== 'deny') return false; // deny always wins
      if (base === 'deny' && d.source === 'override') return false; // overrides never beat deny
      if (d.source === 'default' && matched.length > 0) return false; // defaults only without matching rules
      if (base === 'require_approval' && applicable.length > 0) {
        if (d.decision !== 'allow' || d.source !== 'override' || !applicable.some((o) => o.id === d.override_id)) return false;
      } else if (d.decision !== base || d.override_id !== null) return false;
      if (d.enforced !== (b.mode === 'observe' ? 'allow' : d.decision)) return false;
      return d.reasons.length > 0 && d.snapshot_id === snapshotId(b);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 random cases hold the law');
});

t.test('property: decide and explain never throw on arbitrary strings in patterns and calls', async (t) => {
  const str = fc.string({ maxLength: 12 });
  const wildMatch = fc.record({ tools: fc.array(str, { maxLength: 3 }), plugins: fc.array(str, { maxLength: 3 }), egress_hosts: fc.array(str, { maxLength: 3 }), secrets: fc.array(str, { maxLength: 3 }) }, { requiredKeys: [] });
  const wild = fc.record({ mode: fc.constantFrom(...POLICY_MODES), rules: fc.array(fc.record({ id: str, decision: verdict, match: wildMatch }), { maxLength: 5 }) });
  fc.assert(
    fc.property(wild, str, fc.array(str, { maxLength: 3 }), fc.boolean(), (w, toolId, hosts, known) => {
      const b = { policy_version: 1 as const, ...w };
      const c: PolicyCall = { tool_id: toolId, known, plugin_id: toolId, effect: 'unknown', risks: [], egress_hosts: hosts, secrets: hosts, args_hash: null };
      const s = { id: 'pol_' + '0'.repeat(64), bundle: b };
      const d = decide(s, c, [], NOW);
      explain(s, c, [], NOW);
      return (POLICY_VERDICTS as readonly string[]).includes(d.decision);
    }),
    { numRuns: 1000 },
  );
  t.pass('no input made decide throw');
});
