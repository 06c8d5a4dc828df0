/**
 * Per-tenant policy (docs/tenancy.md, "Policy"): a tenant's bundle only tightens the host's (the
 * stricter of the two decides), a tenant's override relaxes a require_approval for that tenant's
 * calls only and never a deny, and the host tenant's decisions are exactly as before.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';
import { PolicyService } from '../../../core/policy/service.js';
import { decide, decideForTenant, strongest, type PolicyCall, type PolicyOverride, type PolicySnapshot, type TenantPolicy } from '../../../core/policy/decide.js';
import { explainForTenant } from '../../../core/policy/explain.js';
import { snapshotId } from '../../../core/policy/bundle.js';
import { POLICY_VERDICTS, type PolicyBundle, type PolicyMode, type PolicyVerdict } from '../../../schemas/src/policy.js';

const NOW = 1_700_000_000_000;
const ARGS = 'a'.repeat(64);

const snap = (bundle: PolicyBundle): PolicySnapshot => ({ id: snapshotId(bundle), bundle });
/** A bundle deciding every call `verdict` (by a rule that matches everything). */
const every = (verdict: PolicyVerdict, mode: PolicyMode = 'enforce', id = 'all'): PolicyBundle => ({ policy_version: 1, mode, rules: [{ id, decision: verdict, match: {} }] });
const call = (over: Partial<PolicyCall> = {}): PolicyCall => ({ tool_id: 't.tool', known: true, plugin_id: 't', effect: 'state_changing', risks: [], egress_hosts: [], secrets: [], args_hash: ARGS, ...over });
const ov = (id: string, over: Partial<PolicyOverride> = {}): PolicyOverride => ({ id, tool_id: 't.tool', args_hash: null, expires_at: null, revoked_at: null, ...over });
const tenant = (bundle: PolicyBundle | null, overrides: PolicyOverride[] = []): TenantPolicy => ({ tenant_id: 'acme', snapshot: bundle === null ? null : snap(bundle), overrides });

t.test('the stricter of the host decision and the tenant decision, for every pair', async (t) => {
  for (const h of POLICY_VERDICTS) {
    for (const x of POLICY_VERDICTS) {
      const d = decideForTenant(snap(every(h, 'enforce', 'host-rule')), call(), [], tenant(every(x, 'enforce', 'tenant-rule')), NOW);
      const want = strongest(h, x);
      t.equal(d.decision, want, `host ${h}, tenant ${x}: ${want}`);
      t.equal(d.enforced, want);
      t.equal(d.snapshot_id, snapshotId(every(h, 'enforce', 'host-rule')), "snapshot_id stays the host's");
      t.same(d.matched, [{ rule_id: 'host-rule', decision: h }], "matched stays the host's rules");
      t.match(d.tenant, { tenant_id: 'acme', snapshot_id: snapshotId(every(x, 'enforce', 'tenant-rule')), decision: x, matched: [{ rule_id: 'tenant-rule', decision: x }], decided: POLICY_VERDICTS.indexOf(x) > POLICY_VERDICTS.indexOf(h) });
    }
  }
});

t.test('without a tenant bundle and without a tenant override, the decision is exactly the host one', async (t) => {
  for (const h of POLICY_VERDICTS) {
    const host = snap(every(h));
    const hostOverrides = [ov('ovr_host')];
    const d = decideForTenant(host, call(), hostOverrides, tenant(null), NOW);
    t.same(d, decide(host, call(), hostOverrides, NOW), `host ${h}`);
    t.notOk('tenant' in d, 'no tenant member');
  }
});

t.test("a tenant's override relaxes require_approval for its calls, its own bundle's and the host's, never a deny", async (t) => {
  const own = [ov('ovr_acme')];
  // The host requires approval; the tenant has no bundle: its override allows.
  let d = decideForTenant(snap(every('require_approval')), call(), [], tenant(null, own), NOW);
  t.match(d, { decision: 'allow', source: 'override', override_id: 'ovr_acme', tenant: { override_id: 'ovr_acme', decided: true, snapshot_id: null } });
  // Both require approval: the tenant's override relaxes both.
  d = decideForTenant(snap(every('require_approval')), call(), [], tenant(every('require_approval'), own), NOW);
  t.match(d, { decision: 'allow', tenant: { decision: 'allow', source: 'override', override_id: 'ovr_acme' } });
  // The host allows, the tenant's bundle requires approval: its override allows, and the step says so.
  d = decideForTenant(snap(every('allow')), call(), [], tenant(every('require_approval'), own), NOW);
  t.match(d, { decision: 'allow', source: 'override', override_id: 'ovr_acme', tenant: { decision: 'allow', source: 'override', override_id: 'ovr_acme', decided: true } });
  // The host denies: the override does not help.
  d = decideForTenant(snap(every('deny')), call(), [], tenant(null, own), NOW);
  t.equal(d.decision, 'deny');
  t.notOk('tenant' in d, 'the override took no part');
  // The tenant's bundle denies: neither the tenant's nor the host's override helps.
  d = decideForTenant(snap(every('require_approval')), call(), [ov('ovr_host')], tenant(every('deny'), own), NOW);
  t.match(d, { decision: 'deny', source: 'rule', tenant: { decision: 'deny', decided: true } });
  // Another tool's, a revoked and an expired override do not apply.
  for (const o of [ov('ovr_x', { tool_id: 't.other' }), ov('ovr_x', { revoked_at: NOW - 1 }), ov('ovr_x', { expires_at: NOW })]) {
    t.equal(decideForTenant(snap(every('require_approval')), call(), [], tenant(null, [o]), NOW).decision, 'require_approval');
  }
});

t.test("the host's overrides relax the host's require_approval for every tenant, not a tenant's own requirement", async (t) => {
  const host = [ov('ovr_host')];
  t.equal(decideForTenant(snap(every('require_approval')), call(), host, tenant(null), NOW).decision, 'allow', 'host override, no tenant bundle: allow');
  const d = decideForTenant(snap(every('require_approval')), call(), host, tenant(every('require_approval')), NOW);
  t.match(d, { decision: 'require_approval', tenant: { decision: 'require_approval', decided: true } }, "the tenant's own requirement stands");
  t.equal(decideForTenant(snap(every('allow')), call(), host, tenant(every('require_approval')), NOW).decision, 'require_approval', "a tenant may require approval for what the host allows");
});

t.test('observe mode: each bundle enforces only its own decision; an unknown tool is denied', async (t) => {
  // Host observes a deny, the tenant enforces allow: decision deny recorded, allow enforced.
  let d = decideForTenant(snap(every('deny', 'observe')), call(), [], tenant(every('allow')), NOW);
  t.match(d, { decision: 'deny', enforced: 'allow', mode: 'enforce' });
  // The host observes, the tenant enforces require_approval: enforced require_approval.
  d = decideForTenant(snap(every('deny', 'observe')), call(), [], tenant(every('require_approval')), NOW);
  t.match(d, { decision: 'deny', enforced: 'require_approval' });
  // The tenant observes its deny: the host's allow is enforced.
  d = decideForTenant(snap(every('allow')), call(), [], tenant(every('deny', 'observe')), NOW);
  t.match(d, { decision: 'deny', enforced: 'allow', mode: 'enforce', tenant: { mode: 'observe', decision: 'deny', enforced: 'allow' } });
  // Both observe.
  t.equal(decideForTenant(snap(every('allow', 'observe')), call(), [], tenant(every('deny', 'observe')), NOW).mode, 'observe');
  // Unknown tools: denied whatever either bundle says.
  d = decideForTenant(snap(every('allow')), call({ known: false }), [], tenant(every('allow')), NOW);
  t.match(d, { decision: 'deny', enforced: 'deny', source: 'unknown_tool' });
});

t.test("explainForTenant explains the tenant's rules and overrides, and names the host's bundle by id only", async (t) => {
  const hostBundle: PolicyBundle = { policy_version: 1, mode: 'enforce', rules: [{ id: 'host-secret-rule', description: 'host-private-description', decision: 'allow', match: { tools: ['t.*'] } }] };
  const e = explainForTenant(snap(hostBundle), call(), [], tenant({ policy_version: 1, mode: 'enforce', rules: [{ id: 'acme-review', decision: 'require_approval', match: { tools: ['t.tool'] } }] }, [ov('ovr_old', { revoked_at: NOW - 1 })]), NOW);
  t.match(e, { decision: 'require_approval', tenant: { decided: true } });
  t.same(e.rules.map((r) => [r.rule_id, r.matched]), [['acme-review', true]]);
  t.same(e.overrides, [{ override_id: 'ovr_old', applies: false, why: 'revoked' }]);
  t.match(e.text, `host policy ${snapshotId(hostBundle)}`);
  t.match(e.text, /tenant acme policy pol_/);
  t.notMatch(e.text, 'host-private-description', "the host's rule text is not shown");
});

function setup(t: Test) {
  const store = openStore(join(t.testdir(), 'p.db'));
  t.teardown(() => store.close());
  store.tx(() => {
    store.tenants.insert({ id: 'acme', label: 'acme', created_at: NOW });
    store.tenants.insert({ id: 'globex', label: 'globex', created_at: NOW });
  });
  return { store, policy: new PolicyService({ store, now: () => NOW }) };
}

const REVIEW: PolicyBundle = { policy_version: 1, mode: 'enforce', defaults: { state_changing: 'allow', unknown: 'allow' }, rules: [{ id: 'review', decision: 'require_approval', match: { tools: ['t.tool'] } }] };
const ALLOW_ALL: PolicyBundle = { policy_version: 1, mode: 'enforce', defaults: { state_changing: 'allow' }, rules: [] };

t.test("a tenant's set stores its own bundle: the host's, and other tenants' decisions, are untouched", async (t) => {
  const { store, policy } = setup(t);
  policy.set(ALLOW_ALL, 'host');
  const hostActive = policy.active().id;
  const r = policy.set(REVIEW, 'token:acme', 'policy bundle', 'acme');
  t.match(r, { id: snapshotId(REVIEW), changed: true });
  t.equal(policy.set(REVIEW, 'token:acme', 'policy bundle', 'acme').changed, false, 'idempotent by content');
  t.equal(policy.active().id, hostActive, "the host's active policy did not move");
  t.equal(policy.tenantActive('acme')?.id, snapshotId(REVIEW));
  t.equal(policy.tenantActive('globex'), null, 'globex has no bundle');
  t.equal(policy.history(20).length, 1, "the host's history has its own activation only");
  t.same(policy.history(20, 'acme').map((h) => h.snapshot_id), [snapshotId(REVIEW)]);
  t.same(policy.history(20, 'globex'), []);
  t.equal(policy.decide(call()).decision, 'allow', 'the host tenant: allow');
  t.equal(policy.decide(call(), NOW, 'globex').decision, 'allow', 'another tenant: allow');
  t.match(policy.decide(call(), NOW, 'acme'), { decision: 'require_approval', tenant: { tenant_id: 'acme', decided: true } });
  t.notOk('tenant' in policy.decide(call(), NOW, 'globex'), "a tenant without a bundle or override: the host's decision as it is");
  // The host's snapshot rows are the host's: no tenant snapshot among them.
  t.equal(store.policy.getSnapshot(snapshotId(REVIEW)), undefined);
  t.throws(() => policy.getTenant('globex', snapshotId(REVIEW)), { code: 'TYRUM_ERR_NOT_FOUND' }, "acme's snapshot is not globex's");
});

t.test('a tenant bundle is validated as the host bundle is, and may not carry pairing rules', async (t) => {
  const { policy } = setup(t);
  t.throws(() => policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'x', decision: 'maybe', match: {} }] }, 'a', 'policy bundle', 'acme'), { code: 'TYRUM_ERR_POLICY_INVALID' });
  t.throws(() => policy.set({ policy_version: 1, mode: 'enforce', rules: [], pairing: { auto_approve: [] } }, 'a', 'policy bundle', 'acme'), { code: 'TYRUM_ERR_POLICY_INVALID', message: /pairing rules are the host's/ });
  t.equal(policy.tenantActive('acme'), null, 'nothing was stored');
});

t.test('overrides are per tenant: listed, applied and revoked by their owner only', async (t) => {
  const { policy } = setup(t);
  policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'review', decision: 'require_approval', match: { tools: ['t.tool'] } }] }, 'host');
  const acme = policy.addOverride({ tool_id: 't.tool', created_by: 'token:a', tenant: 'acme' });
  t.same(policy.overrides().map((o) => o.id), [], "the host's list does not show acme's");
  t.same(policy.overrides('acme').map((o) => o.id), [acme.id]);
  t.same(policy.overrides('globex'), []);
  t.equal(policy.decide(call()).decision, 'require_approval', "acme's override does not apply to the host's calls");
  t.equal(policy.decide(call(), NOW, 'globex').decision, 'require_approval', "nor to globex's");
  t.match(policy.decide(call(), NOW, 'acme'), { decision: 'allow', override_id: acme.id, tenant: { override_id: acme.id } });
  t.throws(() => policy.revokeOverride(acme.id), { code: 'TYRUM_ERR_NOT_FOUND' }, "the host cannot revoke acme's (it does not see it)");
  t.throws(() => policy.revokeOverride(acme.id, 'globex'), { code: 'TYRUM_ERR_NOT_FOUND' });
  t.equal(policy.decide(call(), NOW, 'acme').decision, 'allow', 'still in force');
  // A host override applies to every tenant's calls, and acme cannot revoke it.
  const host = policy.addOverride({ tool_id: 't.tool', created_by: 'cli:op' });
  t.equal(policy.decide(call(), NOW, 'globex').decision, 'allow');
  t.throws(() => policy.revokeOverride(host.id, 'acme'), { code: 'TYRUM_ERR_NOT_FOUND' });
  t.same(policy.overrides().map((o) => o.id), [host.id]);
  t.match(policy.revokeOverride(acme.id, 'acme'), { changed: true, override: { status: 'revoked' } });
  t.match(policy.explain(call(), NOW, 'acme').overrides, [{ override_id: acme.id, why: 'revoked' }]);
});
