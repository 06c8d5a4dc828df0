import t from 'tap';
import { explain } from '../../../core/policy/explain.js';
import { decide, type PolicyCall, type PolicyOverride } from '../../../core/policy/decide.js';
import { snapshotId } from '../../../core/policy/bundle.js';
import type { PolicyBundle } from '../../../schemas/src/policy.js';

const NOW = 1_700_000_000_000;
const bundle: PolicyBundle = {
  policy_version: 1,
  mode: 'enforce',
  rules: [
    { id: 'no-prod', description: 'production is off limits', decision: 'deny', match: { egress_hosts: ['*.prod.example.com'] } },
    { id: 'gh-writes', decision: 'require_approval', match: { tools: ['gh.*'], effects: ['state_changing'] } },
    { id: 'gh-reads', decision: 'allow', match: { tools: ['gh.*'], effects: ['read_only'] } },
    { id: 'everything', decision: 'allow', match: {} },
  ],
};
const snapshot = { id: snapshotId(bundle), bundle };
const call: PolicyCall = { tool_id: 'gh.create_issue', known: true, plugin_id: 'gh', effect: 'state_changing', risks: ['network'], egress_hosts: ['api.github.com'], secrets: ['GH_TOKEN'], args_hash: 'a'.repeat(64) };

t.test('explain returns the same decision as decide', async (t) => {
  const overrides: PolicyOverride[] = [{ id: 'ovr_1', tool_id: 'gh.create_issue', args_hash: null, expires_at: null, revoked_at: null }];
  for (const o of [[], overrides]) {
    const { rules: _rules, overrides: _o, text: _text, ...core } = explain(snapshot, call, o, NOW);
    t.same(core, decide(snapshot, call, o, NOW));
  }
});

t.test('the text lists every rule, whether it matched, and each criterion compared', async (t) => {
  const e = explain(snapshot, call, [], NOW);
  for (const r of bundle.rules) t.match(e.text, new RegExp(`^rule ${r.id} \\(${r.decision}\\): `, 'm'), r.id);
  t.match(e.text, /^rule no-prod \(deny\): does not match$/m);
  t.match(e.text, /^ {2}- egress_hosts \[\*\.prod\.example\.com\] vs api\.github\.com: no$/m);
  t.match(e.text, /^ {4}production is off limits$/m, 'a rule description is shown');
  t.match(e.text, /^rule gh-writes \(require_approval\): matches$/m);
  t.match(e.text, /^ {2}- tools \[gh\.\*\] vs gh\.create_issue: yes$/m);
  t.match(e.text, /^ {2}- effects \[state_changing\] vs state_changing: yes$/m);
  t.match(e.text, /^rule gh-reads \(allow\): does not match$/m);
  t.match(e.text, /^ {2}- effects \[read_only\] vs state_changing: no$/m);
  t.match(e.text, /^rule everything \(allow\): matches \(empty match: every call\)$/m);
  t.match(e.text, new RegExp(`^policy ${snapshot.id} \\(mode enforce, 4 rules\\)$`, 'm'));
  t.match(e.text, /^call gh\.create_issue: plugin gh, effect state_changing, risks network, egress api\.github\.com, secrets GH_TOKEN$/m);
  t.match(e.text, /^decision: require_approval \(from rule\)$/m);
  t.match(e.text, /^ {2}require_approval by rule gh-writes$/m);
  t.match(e.text, /^enforced: require_approval$/m);
});

t.test('per-rule structure: matched flags and criteria values', async (t) => {
  const e = explain(snapshot, call, [], NOW);
  t.same(e.rules.map((r) => [r.rule_id, r.matched]), [['no-prod', false], ['gh-writes', true], ['gh-reads', false], ['everything', true]]);
  t.same(e.rules[0]!.criteria, [{ key: 'egress_hosts', patterns: ['*.prod.example.com'], values: ['api.github.com'], matched: false }]);
  t.same(e.rules[3]!.criteria, []);
  t.equal(e.rules[0]!.description, 'production is off limits');
  t.equal(e.rules[1]!.description, null);
});

t.test('every criterion of a rule is shown, even after one already failed', async (t) => {
  const b: PolicyBundle = { policy_version: 1, mode: 'enforce', rules: [{ id: 'r', decision: 'deny', match: { plugins: ['other'], secrets: ['GH_*'] } }] };
  const e = explain({ id: snapshotId(b), bundle: b }, call, [], NOW);
  t.same(e.rules[0]!.criteria.map((c) => [c.key, c.matched]), [['plugins', false], ['secrets', true]]);
});

t.test('each override is listed with why it did or did not apply', async (t) => {
  const ov = (id: string, over: Partial<PolicyOverride>): PolicyOverride => ({ id, tool_id: 'gh.create_issue', args_hash: null, expires_at: null, revoked_at: null, ...over });
  const overrides = [
    ov('ovr_revoked', { revoked_at: NOW - 5 }),
    ov('ovr_expired', { expires_at: NOW }),
    ov('ovr_other_tool', { tool_id: 'gh.close_issue' }),
    ov('ovr_other_args', { args_hash: 'b'.repeat(64) }),
    ov('ovr_live', {}),
  ];
  const e = explain(snapshot, call, overrides, NOW);
  t.same(e.overrides.map((o) => [o.override_id, o.why]), [['ovr_revoked', 'revoked'], ['ovr_expired', 'expired'], ['ovr_other_tool', 'other tool'], ['ovr_other_args', 'other arguments'], ['ovr_live', 'applies']]);
  t.match(e.text, /^override ovr_expired: expired$/m);
  t.match(e.text, /^decision: allow \(from override\)$/m);
  const noHash = explain(snapshot, { ...call, args_hash: null }, [ov('ovr_args', { args_hash: 'b'.repeat(64) })], NOW);
  t.equal(noHash.overrides[0]!.why, 'no arguments hash given');
});

t.test('an unknown tool and an empty bundle are explained too', async (t) => {
  const empty: PolicyBundle = { policy_version: 1, mode: 'observe', rules: [] };
  const e = explain({ id: snapshotId(empty), bundle: empty }, { ...call, known: false, effect: 'unknown', plugin_id: null, risks: [], egress_hosts: [], secrets: [] }, [], NOW);
  t.match(e.text, /\(mode observe, 0 rules\)/);
  t.match(e.text, /^call gh\.create_issue \(not in the registry\): plugin \(none\), effect unknown, risks \(none\), egress \(none\), secrets \(none\)$/m);
  t.match(e.text, /^rules: none$/m);
  t.match(e.text, /unknown tools are always denied/);
  t.match(e.text, /^enforced: deny$/m);
});
