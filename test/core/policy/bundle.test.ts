import t from 'tap';
import { bundleIssues, parseBundle, snapshotId, defaultBundle } from '../../../core/policy/bundle.js';
import { validate } from '../../../core/protocol/validate.js';
import { CONTRACTS, contractDocument, PolicyBundle as PolicyBundleSchema, POLICY_SNAPSHOT_ID_PATTERN, type PolicyBundle } from '../../../schemas/index.js';

const base = (over: Record<string, unknown> = {}) => ({ policy_version: 1, mode: 'enforce', rules: [], ...over });
const rule = (over: Record<string, unknown> = {}) => ({ id: 'r1', decision: 'deny', match: {}, ...over });

const FULL: PolicyBundle = {
  $schema: 'https://example.invalid/policy.bundle.json',
  policy_version: 1,
  mode: 'observe',
  defaults: { read_only: 'allow', state_changing: 'require_approval', unknown: 'deny' },
  rules: [
    { id: 'no-prod', description: 'never touch prod', decision: 'deny', match: { egress_hosts: ['*.prod.example.com'] } },
    { id: 'gh-write', decision: 'require_approval', match: { tools: ['gh.*'], plugins: ['gh'], effects: ['state_changing'], risks: ['network'], secrets: ['GH_*'] } },
    { id: 'reads', decision: 'allow', match: { effects: ['read_only', 'unknown'] } },
  ],
};

t.test('a complete bundle using every field is valid', async (t) => {
  t.same(bundleIssues(FULL), []);
  t.equal(parseBundle(FULL), FULL);
  t.same(bundleIssues(defaultBundle()), []);
});

t.test('the bundle is a published contract, policy.bundle', async (t) => {
  t.ok(Object.hasOwn(CONTRACTS, 'policy.bundle'));
  const doc = contractDocument('policy.bundle')!;
  t.equal(doc.$id, 'urn:tyrum:contract:v1:policy.bundle');
  t.equal((doc as { additionalProperties?: boolean }).additionalProperties, false);
});

t.test('invalid bundles are refused with the JSON pointer of the problem', async (t) => {
  const table: Array<[string, unknown, string, RegExp]> = [
    ['not an object', null, '/', /must be object/],
    ['missing rules', { policy_version: 1, mode: 'enforce' }, '/', /required property 'rules'/],
    ['wrong version', base({ policy_version: 2 }), '/policy_version', /must be 1 \(got 2\)/],
    ['bad mode', base({ mode: 'audit' }), '/mode', /one of "enforce", "observe" \(got "audit"\)/],
    ['unknown top-level key', base({ extra: true }), '/', /unknown key "extra"/],
    ['unknown default key', base({ defaults: { write: 'allow' } }), '/defaults', /unknown key "write"/],
    ['bad default', base({ defaults: { unknown: 'maybe' } }), '/defaults/unknown', /one of "allow", "require_approval", "deny"/],
    ['unknown rule key', base({ rules: [rule({ priority: 1 })] }), '/rules/0', /unknown key "priority"/],
    ['unknown match key (a typo)', base({ rules: [rule({ match: { tool: ['x.*'] } })] }), '/rules/0/match', /unknown key "tool"/],
    ['bad decision', base({ rules: [rule({ decision: 'ask' })] }), '/rules/0/decision', /one of "allow", "require_approval", "deny" \(got "ask"\)/],
    ['missing match', base({ rules: [{ id: 'r', decision: 'deny' }] }), '/rules/0', /required property 'match'/],
    ['bad rule id', base({ rules: [rule({ id: 'has space' })] }), '/rules/0/id', /must match pattern/],
    ['empty criterion list', base({ rules: [rule({ match: { tools: [] } })] }), '/rules/0/match/tools', /fewer than 1/],
    ['duplicate pattern', base({ rules: [rule({ match: { tools: ['a.*', 'a.*'] } })] }), '/rules/0/match/tools', /duplicate/],
    ['bad effect', base({ rules: [rule({ match: { effects: ['writes'] } })] }), '/rules/0/match/effects/0', /one of "read_only", "state_changing", "unknown"/],
    ['bad risk', base({ rules: [rule({ match: { risks: ['fire'] } })] }), '/rules/0/match/risks/0', /one of "network", "secrets"/],
    ['"**" glob', base({ rules: [rule(), rule({ id: 'r2', match: { tools: ['gh.**'] } })] }), '/rules/1/match/tools/0', /invalid glob "gh\.\*\*": "\*\*" is not supported/],
    ['glob with a space', base({ rules: [rule({ match: { plugins: ['a b'] } })] }), '/rules/0/match/plugins/0', /invalid glob "a b": invalid character " "/],
    ['upper-case host', base({ rules: [rule({ match: { egress_hosts: ['API.example.com'] } })] }), '/rules/0/match/egress_hosts/0', /host patterns are lowercase/],
    ['lower-case secret', base({ rules: [rule({ match: { secrets: ['gh_*'] } })] }), '/rules/0/match/secrets/0', /invalid character "g"/],
    ['duplicate rule id', base({ rules: [rule(), rule({ decision: 'allow' })] }), '/rules/1/id', /duplicate rule id "r1" \(first at \/rules\/0\/id\)/],
  ];
  for (const [label, value, path, message] of table) {
    const issues = bundleIssues(value);
    t.equal(issues[0]?.path, path, `${label}: path`);
    t.match(issues[0]?.message, message, `${label}: message`);
    t.throws(() => parseBundle(value, 'policy.json'), { code: 'TYRUM_ERR_POLICY_INVALID', message: new RegExp(`^policy\\.json: .*${path.replace(/[/]/g, '\\/')}: `) }, `${label}: error`);
  }
});

t.test('an enum mistake is reported once, not once per choice', async (t) => {
  t.equal(bundleIssues(base({ rules: [rule({ decision: 'ask' })] })).length, 1);
});

t.test('the error carries the issues as structured details', async (t) => {
  try {
    parseBundle(base({ rules: [rule(), rule()] }));
    t.fail('accepted');
  } catch (e) {
    t.same((e as { details: unknown }).details, { issues: [{ path: '/rules/1/id', message: 'duplicate rule id "r1" (first at /rules/0/id)' }] });
  }
});

t.test('values are never coerced: a number where a string belongs is refused', async (t) => {
  t.match(bundleIssues(base({ policy_version: '1' }))[0], { path: '/policy_version' });
  t.match(bundleIssues(base({ rules: [rule({ match: { tools: [1] } })] }))[0], { path: '/rules/0/match/tools/0', message: /must be string/ });
});

t.test('snapshot ids are pol_ + the full sha256 of the canonical JSON', async (t) => {
  const id = snapshotId(FULL);
  t.match(id, new RegExp(POLICY_SNAPSHOT_ID_PATTERN));
  // sha256 of exactly '{"mode":"enforce","policy_version":1,"rules":[]}': pinned, so a change to
  // canonicalization (which would re-key every stored snapshot) cannot pass unnoticed.
  t.equal(snapshotId(defaultBundle()), 'pol_e5185dc92dd5ed58c07e64d1140bc2ac505a5712799f0978df5dd0d5b73d0de8', 'the built-in default has a fixed id');
});

t.test('snapshot ids are stable under key reordering and whitespace', async (t) => {
  const reordered = JSON.parse(
    JSON.stringify({
      rules: FULL.rules.map((r) => ({ match: Object.fromEntries(Object.entries(r.match).reverse()), decision: r.decision, ...(r.description ? { description: r.description } : {}), id: r.id })),
      defaults: { unknown: 'deny', state_changing: 'require_approval', read_only: 'allow' },
      mode: 'observe',
      policy_version: 1,
      $schema: FULL.$schema,
    }),
  ) as PolicyBundle;
  t.not(JSON.stringify(reordered), JSON.stringify(FULL), 'the text differs');
  t.equal(snapshotId(reordered), snapshotId(FULL));
  t.equal(snapshotId(JSON.parse(JSON.stringify(FULL, null, 4)) as PolicyBundle), snapshotId(FULL));
});

t.test('snapshot ids differ for any difference in content', async (t) => {
  const id = snapshotId(FULL);
  const variants: PolicyBundle[] = [
    { ...FULL, mode: 'enforce' },
    { ...FULL, defaults: { ...FULL.defaults, read_only: 'require_approval' } },
    { ...FULL, rules: FULL.rules.slice(1) },
    { ...FULL, rules: [...FULL.rules].reverse() },
    { ...FULL, rules: [{ ...FULL.rules[0]!, decision: 'allow' }, ...FULL.rules.slice(1)] },
    { ...FULL, rules: [{ ...FULL.rules[0]!, match: { egress_hosts: ['*.prod.example.org'] } }, ...FULL.rules.slice(1)] },
    { ...FULL, rules: [{ ...FULL.rules[0]!, description: 'never touch prod!' }, ...FULL.rules.slice(1)] },
  ];
  const ids = new Set(variants.map(snapshotId));
  t.equal(ids.size, variants.length, 'all variants differ from each other');
  t.notOk(ids.has(id), 'and from the original');
});

t.test('the schema itself (as served) validates the same way through ajv', async (t) => {
  t.same(validate(PolicyBundleSchema, FULL), []);
  t.not(validate(PolicyBundleSchema, base({ rules: [rule({ match: { tools: ['a**'] } })] })).length, 0);
});
