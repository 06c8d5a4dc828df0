import t from 'tap';
import { decide, strongest, BUILTIN_DEFAULTS, type PolicyCall, type PolicyOverride, type PolicySnapshot } from '../../../core/policy/decide.js';
import { policyCall } from '../../../core/policy/call.js';
import { policyDeniedError, snapshotId } from '../../../core/policy/bundle.js';
import { canonicalJson } from '../../../core/util/canonical-json.js';
import { POLICY_VERDICTS, type PolicyBundle, type PolicyDefaults, type PolicyEffect, type PolicyMode, type PolicyRule, type PolicyVerdict } from '../../../schemas/src/policy.js';

const NOW = 1_700_000_000_000;
const ARGS = 'a'.repeat(64);
const OTHER_ARGS = 'b'.repeat(64);

function snap(bundle: PolicyBundle): PolicySnapshot {
  return { id: snapshotId(bundle), bundle };
}

function call(over: Partial<PolicyCall> = {}): PolicyCall {
  return { tool_id: 't.tool', known: true, plugin_id: 't', effect: 'state_changing', risks: [], egress_hosts: [], secrets: [], args_hash: ARGS, ...over };
}

const ov = (over: Partial<PolicyOverride> = {}): PolicyOverride => ({ id: 'ovr_1', tool_id: 't.tool', args_hash: null, expires_at: null, revoked_at: null, ...over });

// ---------------------------------------------------------------------------------------------
// The exhaustive table. Dimensions: which decisions have a matching rule (each subset of the
// three, in two rule orders, always next to a rule that does not match), the tool's effect,
// known/unknown, the bundle's defaults, the override situation and the mode.

const SUBSETS: PolicyVerdict[][] = [[], ['allow'], ['require_approval'], ['deny'], ['allow', 'require_approval'], ['allow', 'deny'], ['require_approval', 'deny'], ['allow', 'require_approval', 'deny']];
const EFFECTS: PolicyEffect[] = ['read_only', 'state_changing', 'unknown'];
const DEFAULTS: Array<PolicyDefaults | undefined> = [undefined, {}, { read_only: 'deny', state_changing: 'allow', unknown: 'require_approval' }, { read_only: 'require_approval', state_changing: 'require_approval', unknown: 'require_approval' }];
const OVERRIDES = {
  none: [],
  live: [ov()],
  live_for_these_args: [ov({ args_hash: ARGS })],
  live_until_later: [ov({ expires_at: NOW + 1 })],
  for_other_args: [ov({ args_hash: OTHER_ARGS })],
  expired: [ov({ expires_at: NOW })],
  revoked: [ov({ revoked_at: NOW - 1 })],
  for_other_tool: [ov({ tool_id: 't.other' })],
} satisfies Record<string, PolicyOverride[]>;
const APPLIES: ReadonlySet<string> = new Set(['live', 'live_for_these_args', 'live_until_later']);
const MODES: PolicyMode[] = ['enforce', 'observe'];

/** Each decision's matching rule uses a different criterion, so AND/OR plumbing is exercised too. */
const MATCHING: Record<PolicyVerdict, Omit<PolicyRule, 'decision'>> = {
  allow: { id: 'r-allow', match: { plugins: ['t'] } },
  require_approval: { id: 'r-approve', match: { tools: ['t.*'] } },
  deny: { id: 'r-deny', match: {} },
};
const NEVER: PolicyRule = { id: 'r-never', decision: 'deny', match: { tools: ['nothing.*'] } };

interface Case {
  subset: PolicyVerdict[];
  reversed: boolean;
  effect: PolicyEffect;
  known: boolean;
  defaults: PolicyDefaults | undefined;
  override: keyof typeof OVERRIDES;
  mode: PolicyMode;
}

function* cases(): Generator<Case> {
  for (const subset of SUBSETS)
    for (const reversed of [false, true])
      for (const effect of EFFECTS)
        for (const known of [true, false])
          for (const defaults of DEFAULTS)
            for (const override of Object.keys(OVERRIDES) as Array<keyof typeof OVERRIDES>)
              for (const mode of MODES) yield { subset, reversed, effect, known, defaults, override, mode };
}

function bundleFor(c: Case): PolicyBundle {
  const matching = c.subset.map((d) => ({ ...MATCHING[d], decision: d }));
  const rules = c.reversed ? [...matching].reverse() : matching;
  return { policy_version: 1, mode: c.mode, ...(c.defaults ? { defaults: c.defaults } : {}), rules: [NEVER, ...rules] };
}

/** The law, written out independently of the implementation. */
function expected(c: Case, bundle: PolicyBundle) {
  const matched = bundle.rules.filter((r) => r !== NEVER).map((r) => ({ rule_id: r.id, decision: r.decision }));
  let decision: PolicyVerdict;
  let source: string;
  let override_id: string | null = null;
  if (!c.known) {
    decision = 'deny';
    source = 'unknown_tool';
  } else if (c.subset.length > 0) {
    decision = c.subset.includes('deny') ? 'deny' : c.subset.includes('require_approval') ? 'require_approval' : 'allow';
    source = 'rule';
  } else {
    decision = c.defaults?.[c.effect] ?? BUILTIN_DEFAULTS[c.effect];
    source = 'default';
  }
  if (c.known && decision === 'require_approval' && APPLIES.has(c.override)) {
    decision = 'allow';
    source = 'override';
    override_id = 'ovr_1';
  }
  const enforced = c.mode === 'observe' && c.known ? 'allow' : decision;
  return { decision, enforced, source, override_id, matched, mode: c.mode, snapshot_id: snapshotId(bundle) };
}

t.test('the exhaustive table: every combination of matching rules, effect, known, defaults, override and mode decides by the law', async (t) => {
  let n = 0;
  const mismatches: unknown[] = [];
  const laws = { denyWins: 0, overrideNeverBeatsDeny: 0, defaultsOnlyWithoutRules: 0, unknownAlwaysDenied: 0, observeNeverBlocksKnown: 0 };
  for (const c of cases()) {
    n++;
    const bundle = bundleFor(c);
    const got = decide(snap(bundle), call({ effect: c.effect, known: c.known }), OVERRIDES[c.override], NOW);
    const want = expected(c, bundle);
    const { reasons, ...gotCore } = got;
    if (canonicalJson(gotCore) !== canonicalJson(want) || reasons.length === 0) mismatches.push({ case: c, got, want });
    // The laws, asserted directly on the output as well as through the oracle.
    if (c.subset.includes('deny') && got.decision !== 'deny') laws.denyWins++;
    if ((c.subset.includes('deny') || (c.subset.length === 0 && (c.defaults?.[c.effect] ?? BUILTIN_DEFAULTS[c.effect]) === 'deny')) && got.source === 'override') laws.overrideNeverBeatsDeny++;
    if (got.source === 'default' && got.matched.length > 0) laws.defaultsOnlyWithoutRules++;
    if (c.known && got.matched.length === 0 && got.source !== 'default' && got.source !== 'override') laws.defaultsOnlyWithoutRules++;
    if (!c.known && (got.decision !== 'deny' || got.enforced !== 'deny')) laws.unknownAlwaysDenied++;
    if (c.mode === 'observe' && c.known && got.enforced !== 'allow') laws.observeNeverBlocksKnown++;
  }
  t.equal(n, SUBSETS.length * 2 * EFFECTS.length * 2 * DEFAULTS.length * Object.keys(OVERRIDES).length * MODES.length, 'every combination was decided');
  t.same(mismatches.slice(0, 3), [], `${mismatches.length} of ${n} cases differ from the law`);
  t.same(laws, { denyWins: 0, overrideNeverBeatsDeny: 0, defaultsOnlyWithoutRules: 0, unknownAlwaysDenied: 0, observeNeverBlocksKnown: 0 });
});

t.test('strongest orders deny over require_approval over allow, whatever the argument order', async (t) => {
  for (const a of POLICY_VERDICTS)
    for (const b of POLICY_VERDICTS) {
      const want = POLICY_VERDICTS[Math.max(POLICY_VERDICTS.indexOf(a), POLICY_VERDICTS.indexOf(b))];
      t.equal(strongest(a, b), want, `${a} vs ${b}`);
    }
});

t.test('built-in defaults: read_only allow, state_changing require_approval, unknown deny', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [] });
  t.equal(decide(s, call({ effect: 'read_only' }), [], NOW).decision, 'allow');
  t.equal(decide(s, call({ effect: 'state_changing' }), [], NOW).decision, 'require_approval');
  t.equal(decide(s, call({ effect: 'unknown' }), [], NOW).decision, 'deny');
  t.match(decide(s, call({ effect: 'read_only' }), [], NOW).reasons, [/built-in default for read_only tools is allow/]);
});

t.test('a bundle default for one effect leaves the built-in defaults of the others', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', defaults: { read_only: 'require_approval' }, rules: [] });
  t.equal(decide(s, call({ effect: 'read_only' }), [], NOW).decision, 'require_approval');
  t.match(decide(s, call({ effect: 'read_only' }), [], NOW).reasons, [/bundle default/]);
  t.equal(decide(s, call({ effect: 'state_changing' }), [], NOW).decision, 'require_approval');
  t.equal(decide(s, call({ effect: 'unknown' }), [], NOW).decision, 'deny');
});

t.test('a matching allow rule replaces a stricter default (defaults apply only when no rule matches)', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'ok', decision: 'allow', match: { tools: ['t.tool'] } }] });
  const d = decide(s, call({ effect: 'unknown' }), [], NOW);
  t.equal(d.decision, 'allow');
  t.equal(d.source, 'rule');
  t.same(d.matched, [{ rule_id: 'ok', decision: 'allow' }]);
});

t.test('an unknown tool is denied even when an allow rule matches it, and even in observe mode', async (t) => {
  for (const mode of MODES) {
    const s = snap({ policy_version: 1, mode, rules: [{ id: 'all', decision: 'allow', match: {} }] });
    const d = decide(s, call({ known: false, effect: 'unknown' }), [ov()], NOW);
    t.equal(d.decision, 'deny', mode);
    t.equal(d.enforced, 'deny', mode);
    t.equal(d.source, 'unknown_tool');
    t.same(d.matched, [{ rule_id: 'all', decision: 'allow' }], 'the rules it matched are still reported');
    t.match(d.reasons.join('\n'), /not in the registry/);
  }
});

t.test('the decision names every rule with the winning decision in its reasons', async (t) => {
  const s = snap({
    policy_version: 1,
    mode: 'enforce',
    rules: [
      { id: 'a', decision: 'require_approval', match: {} },
      { id: 'b', decision: 'allow', match: {} },
      { id: 'c', decision: 'require_approval', match: { effects: ['state_changing'] } },
    ],
  });
  const d = decide(s, call(), [], NOW);
  t.equal(d.decision, 'require_approval');
  t.same(d.matched.map((m) => m.rule_id), ['a', 'b', 'c'], 'matched rules in bundle order');
  t.match(d.reasons[0], 'require_approval by rules a, c');
});

t.test('match criteria: AND across keys, OR within a list, an empty match matches every call', async (t) => {
  const c = call({ tool_id: 'gh.create_issue', plugin_id: 'gh', effect: 'state_changing', risks: ['network', 'secrets'], egress_hosts: ['api.github.com'], secrets: ['GH_TOKEN'] });
  const table: Array<[PolicyRule['match'], boolean, string]> = [
    [{}, true, 'empty match'],
    [{ tools: ['gh.*'] }, true, 'tool glob'],
    [{ tools: ['other.*', 'gh.create_*'] }, true, 'OR within tools'],
    [{ tools: ['other.*'] }, false, 'no tool glob matches'],
    [{ plugins: ['gh'] }, true, 'plugin'],
    [{ plugins: ['g'] }, false, 'plugin globs match the whole id'],
    [{ effects: ['read_only'] }, false, 'effect'],
    [{ effects: ['read_only', 'state_changing'] }, true, 'OR within effects'],
    [{ risks: ['destructive'] }, false, 'risk not declared'],
    [{ risks: ['destructive', 'secrets'] }, true, 'any listed risk declared'],
    [{ egress_hosts: ['*.github.com'] }, true, 'host glob'],
    [{ egress_hosts: ['github.com'] }, false, 'host exact'],
    [{ secrets: ['GH_*'] }, true, 'secret glob'],
    [{ secrets: ['AWS_*'] }, false, 'secret glob misses'],
    [{ tools: ['gh.*'], effects: ['state_changing'], risks: ['network'], egress_hosts: ['api.github.com'], secrets: ['GH_TOKEN'], plugins: ['gh'] }, true, 'AND: all six criteria match'],
    [{ tools: ['gh.*'], effects: ['read_only'] }, false, 'AND: one criterion fails, the rule does not match'],
    [{ tools: ['gh.*'], secrets: ['AWS_*'] }, false, 'AND: the last criterion fails'],
  ];
  for (const [match, want, label] of table) {
    const d = decide(snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'r', decision: 'deny', match }] }), c, [], NOW);
    t.equal(d.matched.length === 1, want, label);
  }
});

t.test('criteria over lists never match a call with no such values', async (t) => {
  const bare = call({ risks: [], egress_hosts: [], secrets: [], plugin_id: null });
  for (const match of [{ risks: ['network'] }, { egress_hosts: ['*'] }, { secrets: ['*'] }, { plugins: ['*'] }] as PolicyRule['match'][]) {
    const d = decide(snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'r', decision: 'deny', match }] }), bare, [], NOW);
    t.same(d.matched, [], JSON.stringify(match));
  }
});

t.test('egress hosts are compared case-insensitively', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'r', decision: 'deny', match: { egress_hosts: ['api.example.com'] } }] });
  t.equal(decide(s, call({ egress_hosts: ['API.Example.COM'] }), [], NOW).decision, 'deny');
});

t.test('overrides: an args-bound override applies only to those args, and needs an args hash in the call', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [] });
  const bound = [ov({ args_hash: ARGS })];
  t.equal(decide(s, call(), bound, NOW).decision, 'allow');
  t.equal(decide(s, call({ args_hash: OTHER_ARGS }), bound, NOW).decision, 'require_approval');
  t.equal(decide(s, call({ args_hash: null }), bound, NOW).decision, 'require_approval');
  t.equal(decide(s, call({ args_hash: undefined }), bound, NOW).decision, 'require_approval');
  t.equal(decide(s, call({ args_hash: null }), [ov()], NOW).decision, 'allow', 'a tool-wide override needs no args hash');
});

t.test('overrides: expiry is exclusive and judged by the now passed in, not a clock', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [] });
  const o = [ov({ expires_at: NOW })];
  t.equal(decide(s, call(), o, NOW - 1).decision, 'allow');
  t.equal(decide(s, call(), o, NOW).decision, 'require_approval');
  t.equal(decide(s, call(), o, NOW + 1).decision, 'require_approval');
});

t.test('overrides: an args-bound override is reported in preference to a tool-wide one', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [] });
  const d = decide(s, call(), [ov({ id: 'ovr_wide' }), ov({ id: 'ovr_args', args_hash: ARGS })], NOW);
  t.equal(d.override_id, 'ovr_args');
  t.match(d.reasons.join('\n'), /override ovr_args \(these arguments\)/);
});

t.test('overrides: a deny is reported with a note that the override does not beat it', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no', decision: 'deny', match: {} }] });
  const d = decide(s, call(), [ov()], NOW);
  t.equal(d.decision, 'deny');
  t.equal(d.override_id, null);
  t.match(d.reasons.join('\n'), /never beats a deny/);
});

t.test('overrides: an allow stays allow and names no override', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [] });
  const d = decide(s, call({ effect: 'read_only' }), [ov()], NOW);
  t.equal(d.source, 'default');
  t.equal(d.override_id, null);
});

t.test('observe mode reports a deny as computed but enforces allow', async (t) => {
  const s = snap({ policy_version: 1, mode: 'observe', rules: [{ id: 'no', decision: 'deny', match: {} }] });
  const d = decide(s, call(), [], NOW);
  t.equal(d.decision, 'deny');
  t.equal(d.enforced, 'allow');
  t.equal(d.mode, 'observe');
  t.match(d.reasons.join('\n'), /observe mode: deny is recorded, not enforced/);
});

t.test('the decision cites the snapshot it was made against', async (t) => {
  const s = { id: 'pol_' + 'c'.repeat(64), bundle: { policy_version: 1, mode: 'enforce', rules: [] } as PolicyBundle };
  t.equal(decide(s, call(), [], NOW).snapshot_id, s.id);
});

t.test('decide does not modify its inputs', async (t) => {
  const bundle: PolicyBundle = { policy_version: 1, mode: 'enforce', rules: [{ id: 'r', decision: 'require_approval', match: { tools: ['t.*'] } }] };
  const c = call();
  const o = [ov()];
  const before = JSON.stringify([bundle, c, o]);
  decide(snap(bundle), c, o, NOW);
  t.equal(JSON.stringify([bundle, c, o]), before);
});

t.test('policyCall describes a registry tool by its plugin rights and an unknown tool as unknown', async (t) => {
  const known = policyCall(
    'gh.create_issue',
    { plugin_id: 'gh', effect: 'state_changing' },
    {
      risks: ['network', 'secrets', 'network'],
      rights: {
        egress: [
          { host: 'API.github.com', port: 443, scheme: 'https', methods: ['GET'] },
          { host: 'api.github.com', port: 80, scheme: 'http', methods: ['GET'] },
        ],
        secrets: [{ name: 'GH_TOKEN', destinations: ['api.github.com'] }],
      },
    },
    ARGS,
  );
  t.same(known, { tool_id: 'gh.create_issue', known: true, plugin_id: 'gh', effect: 'state_changing', risks: ['network', 'secrets'], egress_hosts: ['api.github.com'], secrets: ['GH_TOKEN'], args_hash: ARGS });
  const unknown = policyCall('ghost.tool', undefined, null);
  t.same(unknown, { tool_id: 'ghost.tool', known: false, plugin_id: 'ghost', effect: 'unknown', risks: [], egress_hosts: [], secrets: [], args_hash: null });
  t.equal(policyCall('nodot', undefined, null).plugin_id, null);
});

t.test('a denied call becomes a TyrumError with wire code policy_denied and the snapshot id', async (t) => {
  const s = snap({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no', decision: 'deny', match: {} }] });
  const e = policyDeniedError('t.tool', decide(s, call(), [], NOW));
  t.equal(e.code, 'TYRUM_ERR_POLICY_DENIED');
  t.equal(e.wire, 'policy_denied');
  t.match(e.message, /policy denies t\.tool: deny by rule no/);
  t.match(e.details, { tool_id: 't.tool', snapshot_id: s.id, source: 'rule', matched: [{ rule_id: 'no', decision: 'deny' }] });
});
