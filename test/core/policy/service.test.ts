import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { writeFileSync, mkdirSync } from 'node:fs';
import { openStore } from '../../../core/store/index.js';
import { PolicyService, SYSTEM_ACTOR } from '../../../core/policy/service.js';
import { readBundleFile, POLICY_FILE_MAX_BYTES } from '../../../core/policy/load.js';
import { defaultBundle, snapshotId } from '../../../core/policy/bundle.js';
import type { PolicyCall } from '../../../core/policy/decide.js';
import type { PolicyBundle } from '../../../schemas/src/policy.js';

const T0 = 1_700_000_000_000;
const ARGS = 'a'.repeat(64);

function setup(t: Test, name = 'p.db') {
  const dir = t.testdir();
  const path = join(dir, name);
  let clock = T0;
  const open = () => {
    const store = openStore(path);
    t.teardown(() => store.close());
    return { store, policy: new PolicyService({ store, now: () => clock }) };
  };
  return { dir, path, open, tick: (ms: number) => (clock += ms), now: () => clock };
}

const call = (over: Partial<PolicyCall> = {}): PolicyCall => ({ tool_id: 'gh.create_issue', known: true, plugin_id: 'gh', effect: 'state_changing', risks: [], egress_hosts: [], secrets: [], args_hash: ARGS, ...over });

const B1: PolicyBundle = { policy_version: 1, mode: 'enforce', rules: [{ id: 'no-fs', decision: 'deny', match: { plugins: ['fs'] } }] };
const B2: PolicyBundle = { policy_version: 1, mode: 'observe', defaults: { state_changing: 'deny' }, rules: [] };

t.test('before any set, the active policy is the built-in default, stored on first use under a stable id', async (t) => {
  const { open } = setup(t);
  const { store, policy } = open();
  t.same(policy.history(), [], 'nothing is written until first use');
  const a = policy.active();
  t.equal(a.id, snapshotId(defaultBundle()));
  t.same(a.bundle, defaultBundle());
  t.equal(a.created_by, SYSTEM_ACTOR);
  t.equal(a.created_at, T0);
  t.same(policy.history(), [{ seq: 1, snapshot_id: a.id, activated_at: T0, activated_by: SYSTEM_ACTOR }]);
  t.same(policy.active(), a, 'a second call finds it');
  t.equal(policy.history().length, 1, 'and writes nothing more');
  t.ok(store.policy.getSnapshot(a.id), 'the default snapshot is a stored row');
});

t.test('two connections that both start without a policy agree on one default activation', async (t) => {
  const { open } = setup(t);
  const one = open();
  const two = open();
  t.equal(one.policy.active().id, two.policy.active().id);
  t.equal(two.policy.history().length, 1);
});

t.test('set validates, stores and activates a snapshot; its content decides from then on', async (t) => {
  const { open, tick } = setup(t);
  const { policy } = open();
  t.equal(policy.decide(call({ tool_id: 'fs.delete_file', plugin_id: 'fs' })).decision, 'require_approval', 'built-in default first');
  tick(1000);
  const s = policy.set(B1, 'token:admin');
  t.equal(s.id, snapshotId(B1));
  t.equal(s.changed, true);
  t.equal(s.created_by, 'token:admin');
  t.equal(s.created_at, T0 + 1000);
  t.equal(policy.active().id, s.id);
  const d = policy.decide(call({ tool_id: 'fs.delete_file', plugin_id: 'fs' }));
  t.equal(d.decision, 'deny');
  t.equal(d.snapshot_id, s.id, 'the decision cites the snapshot');
});

t.test('set is idempotent by content: the same bundle in another key order is the same snapshot and changes nothing', async (t) => {
  const { open, tick } = setup(t);
  const { policy } = open();
  const first = policy.set(B1, 'alice');
  tick(5);
  const reordered = JSON.parse('{"rules":[{"match":{"plugins":["fs"]},"decision":"deny","id":"no-fs"}],"mode":"enforce","policy_version":1}') as unknown;
  const again = policy.set(reordered, 'bob');
  t.equal(again.id, first.id);
  t.equal(again.changed, false);
  t.equal(again.created_by, 'alice', 'the snapshot keeps its first author');
  t.equal(policy.history().length, 1, 'no new activation');
});

t.test('history records every activation, newest first, including a return to an earlier snapshot', async (t) => {
  const { open, tick } = setup(t);
  const { policy } = open();
  const a = policy.set(B1, 'alice');
  tick(1);
  const b = policy.set(B2, 'bob');
  tick(1);
  const c = policy.set(B1, 'carol');
  t.equal(c.changed, true);
  t.same(
    policy.history().map((h) => [h.snapshot_id, h.activated_by, h.activated_at]),
    [
      [a.id, 'carol', T0 + 2],
      [b.id, 'bob', T0 + 1],
      [a.id, 'alice', T0],
    ],
  );
  t.same(policy.history(1).map((h) => h.activated_by), ['carol']);
  t.same(policy.get(b.id).bundle, B2, 'an earlier snapshot stays readable');
});

t.test('an invalid bundle is refused with paths and leaves the active policy alone', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  const before = policy.set(B1, 'alice').id;
  t.throws(() => policy.set({ ...B1, rules: [{ id: 'x', decision: 'deny', match: { tool: ['a'] } }] }, 'bob', 'policy.set'), {
    code: 'TYRUM_ERR_POLICY_INVALID',
    message: /^policy\.set: \/rules\/0\/match: unknown key "tool"/,
  });
  t.throws(() => policy.set({ ...B1, rules: [...B1.rules, ...B1.rules] }, 'bob'), { code: 'TYRUM_ERR_POLICY_INVALID', message: /\/rules\/1\/id: duplicate rule id/ });
  t.throws(() => policy.set({ ...B1, rules: [{ id: 'x', decision: 'deny', match: { tools: ['gh.**'] } }] }, 'bob'), { code: 'TYRUM_ERR_POLICY_INVALID', message: /\/rules\/0\/match\/tools\/0: invalid glob/ });
  t.equal(policy.active().id, before);
  t.equal(policy.history().length, 1);
});

t.test('get of an unknown snapshot is not_found', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  t.throws(() => policy.get('pol_' + '0'.repeat(64)), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('the active policy, its history and overrides survive closing and reopening the database', async (t) => {
  const { open, tick } = setup(t);
  const first = open();
  const s = first.policy.set(B1, 'alice');
  const o = first.policy.addOverride({ tool_id: 'gh.create_issue', created_by: 'alice', created_from_approval: 'apr_1' });
  tick(10);
  first.policy.set(B2, 'bob');
  first.policy.set(B1, 'carol');
  first.store.close();

  const second = open();
  t.equal(second.policy.active().id, s.id);
  t.same(second.policy.active().bundle, B1);
  t.same(second.policy.history().map((h) => h.activated_by), ['carol', 'bob', 'alice']);
  t.same(second.policy.overrides(), [{ ...o, status: 'active' }]);
  const d = second.policy.decide(call());
  t.equal(d.decision, 'allow');
  t.equal(d.override_id, o.id);
});

t.test('a stored snapshot whose content no longer matches its id is refused', async (t) => {
  const { open, path } = setup(t);
  const { store } = open();
  const id = new PolicyService({ store }).set(B1, 'alice').id;
  const raw = new Database(path);
  raw.prepare('UPDATE policy_snapshots SET bundle = ? WHERE id = ?').run(JSON.stringify({ ...B1, rules: [] }), id);
  raw.close();
  const fresh = new PolicyService({ store });
  t.throws(() => fresh.active(), { code: 'TYRUM_ERR_INTERNAL', message: /does not match its content hash/ });
});

t.test('bundles handed out are frozen, so a caller cannot alter the cached policy', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  policy.set(B1, 'alice');
  const a = policy.active();
  t.throws(() => {
    (a.bundle.rules as unknown[]).push({ id: 'evil', decision: 'allow', match: {} });
  });
  t.same(policy.active().bundle, B1);
});

t.test('overrides turn require_approval into allow for one tool until revoked', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  t.equal(policy.decide(call()).decision, 'require_approval');
  const o = policy.addOverride({ tool_id: 'gh.create_issue', created_by: 'alice' });
  t.match(o, { id: /^ovr_[0-9a-f]{32}$/, tool_id: 'gh.create_issue', args_hash: null, expires_at: null, revoked_at: null, created_by: 'alice', created_from_approval: null, created_at: T0, status: 'active' });
  t.match(policy.decide(call()), { decision: 'allow', source: 'override', override_id: o.id });
  t.equal(policy.decide(call({ tool_id: 'gh.close_issue' })).decision, 'require_approval', 'only that tool');
  const r = policy.revokeOverride(o.id);
  t.equal(r.changed, true);
  t.equal(r.override.status, 'revoked');
  t.equal(r.override.revoked_at, T0);
  t.equal(policy.decide(call()).decision, 'require_approval');
  t.equal(policy.revokeOverride(o.id).changed, false, 'revoking again is harmless');
  t.throws(() => policy.revokeOverride('ovr_nope'), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('an args-bound override allows only those arguments', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  policy.addOverride({ tool_id: 'gh.create_issue', args_hash: ARGS, created_by: 'alice' });
  t.equal(policy.decide(call()).decision, 'allow');
  t.equal(policy.decide(call({ args_hash: 'b'.repeat(64) })).decision, 'require_approval');
});

t.test('an override expires on the service clock, and decide accepts an explicit time', async (t) => {
  const { open, tick } = setup(t);
  const { policy } = open();
  const o = policy.addOverride({ tool_id: 'gh.create_issue', expires_at: T0 + 100, created_by: 'alice' });
  t.equal(policy.decide(call()).decision, 'allow');
  t.equal(policy.decide(call(), T0 + 100).decision, 'require_approval', 'explicit now');
  tick(100);
  t.equal(policy.decide(call()).decision, 'require_approval');
  t.same(policy.overrides().map((x) => [x.id, x.status]), [[o.id, 'expired']]);
});

t.test('an override never beats a deny', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no-gh', decision: 'deny', match: { plugins: ['gh'] } }] }, 'alice');
  policy.addOverride({ tool_id: 'gh.create_issue', created_by: 'alice' });
  t.match(policy.decide(call()), { decision: 'deny', source: 'rule', override_id: null });
});

t.test('addOverride refuses patterns and malformed input: overrides are narrow', async (t) => {
  const { open } = setup(t);
  const { policy, store } = open();
  for (const tool_id of ['gh.*', '*', 'gh.create_*']) {
    t.throws(() => policy.addOverride({ tool_id, created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /one exact tool id, not a pattern/ }, tool_id);
  }
  t.throws(() => policy.addOverride({ tool_id: 'gh create', created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /not a tool id/ });
  t.throws(() => policy.addOverride({ tool_id: '', created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  t.throws(() => policy.addOverride({ tool_id: 'gh.x', args_hash: 'XYZ', created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /args_hash/ });
  t.throws(() => policy.addOverride({ tool_id: 'gh.x', expires_at: T0, created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /expires_at/ });
  t.throws(() => policy.addOverride({ tool_id: 'gh.x', expires_at: T0 + 0.5, created_by: 'alice' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /expires_at/ });
  t.throws(() => policy.addOverride({ tool_id: 'gh.x', created_by: '' }), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /created_by/ });
  t.same(policy.overrides(), []);
  // The table refuses a pattern too, whoever writes it.
  t.throws(() => store.policy.insertOverride({ id: 'ovr_x', tool_id: 'gh.*', args_hash: null, created_by: 'x', created_from_approval: null, created_at: T0, expires_at: null, revoked_at: null }), /CHECK constraint/);
});

t.test('overrides are listed oldest first with their status', async (t) => {
  const { open, tick } = setup(t);
  const { policy } = open();
  const a = policy.addOverride({ tool_id: 'gh.a', created_by: 'alice', expires_at: T0 + 5 });
  tick(1);
  const b = policy.addOverride({ tool_id: 'gh.b', created_by: 'alice' });
  tick(1);
  const c = policy.addOverride({ tool_id: 'gh.c', created_by: 'alice' });
  policy.revokeOverride(c.id);
  tick(10);
  t.same(policy.overrides().map((o) => [o.id, o.status]), [[a.id, 'expired'], [b.id, 'active'], [c.id, 'revoked']]);
});

t.test('explain through the service shows the tool\'s overrides, revoked ones included', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  const o = policy.addOverride({ tool_id: 'gh.create_issue', created_by: 'alice' });
  policy.revokeOverride(o.id);
  policy.addOverride({ tool_id: 'gh.other', created_by: 'alice' });
  const e = policy.explain(call());
  t.same(e.overrides, [{ override_id: o.id, applies: false, why: 'revoked' }]);
  t.match(e.text, new RegExp(`^override ${o.id}: revoked$`, 'm'));
  t.equal(e.decision, 'require_approval');
});

t.test('observe mode through the service: the decision is recorded, allow is enforced', async (t) => {
  const { open } = setup(t);
  const { policy } = open();
  policy.set(B2, 'alice');
  t.match(policy.decide(call()), { decision: 'deny', enforced: 'allow', mode: 'observe' });
});

t.test('readBundleFile loads a valid file and names the file and place of every problem', async (t) => {
  const dir = t.testdir();
  const file = (name: string, content: string | Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  t.same(readBundleFile(file('ok.json', JSON.stringify(B1, null, 2))), B1);
  t.same(readBundleFile(file('bom.json', '\uFEFF' + JSON.stringify(B1))), B1, 'a UTF-8 byte order mark is tolerated');
  t.throws(() => readBundleFile(join(dir, 'missing.json')), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /missing\.json: not found/ });
  mkdirSync(join(dir, 'adir'));
  t.throws(() => readBundleFile(join(dir, 'adir')), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /not a regular file/ });
  const syntax = file('syntax.json', '{\n  "policy_version": 1,\n  "mode": "enforce"\n  "rules": []\n}');
  t.throws(() => readBundleFile(syntax), { code: 'TYRUM_ERR_POLICY_INVALID', message: /syntax\.json: .*line 4, column 3/ });
  const dup = file('dup.json', '{"policy_version":1,"mode":"enforce","rules":[{"id":"r","decision":"deny","decision":"allow","match":{}}]}');
  t.throws(() => readBundleFile(dup), { code: 'TYRUM_ERR_POLICY_INVALID', message: /dup\.json: .*duplicate key "decision"/ });
  const invalid = file('invalid.json', JSON.stringify({ ...B1, rules: [{ id: 'r', decision: 'deny', match: { egress_hosts: ['API.example.com'] } }] }));
  t.throws(() => readBundleFile(invalid), { code: 'TYRUM_ERR_POLICY_INVALID', message: /invalid\.json: \/rules\/0\/match\/egress_hosts\/0: invalid glob "API\.example\.com"/ });
  t.throws(() => readBundleFile(file('big.json', ' '.repeat(POLICY_FILE_MAX_BYTES + 1))), { code: 'TYRUM_ERR_POLICY_INVALID', message: /above the 1048576-byte limit/ });
  t.throws(() => readBundleFile(file('latin1.json', Buffer.from([0x7b, 0xff, 0x7d]))), { code: 'TYRUM_ERR_POLICY_INVALID', message: /not valid UTF-8/ });
  t.throws(() => readBundleFile(file('deep.json', '[[[[[[[[[[]]]]]]]]]]')), { code: 'TYRUM_ERR_POLICY_INVALID', message: /nesting deeper than 8/ });
});

t.test('a bundle file goes straight into set', async (t) => {
  const { open, dir } = setup(t);
  const { policy } = open();
  const p = join(dir, 'policy.json');
  writeFileSync(p, JSON.stringify(B1));
  t.equal(policy.set(readBundleFile(p), 'alice', p).id, snapshotId(B1));
});
