/**
 * Per-tenant policy end to end (docs/tenancy.md, "Policy"): a tenant's bundle tightens the host's
 * for its own calls only; its "always" approval writes an override of its own, for its calls
 * only; policy.get/set/explain/override.revoke answer from the caller's tenant.
 */
import t from 'tap';
import { startTestGateway, removeHome, connect, type RawConn } from '../../helpers/gateway.js';
import { CLI, type Frame, PLUGINS, code, ok, tenantConn } from './helpers.js';
import { installEnabled } from '../registry/helpers.js';

const TOOL = 'text-utils.word_count';

interface Invoked {
  run_id: string;
  state: string;
  approval_id: string | null;
  policy: { decision: string; snapshot_id: string } | null;
}
const invoke = async (c: RawConn, text: string): Promise<Invoked> => ok<Invoked>(await c.request('tool.invoke', { tool_id: TOOL, args: { text }, wait_ms: 3000 }));

async function settle(conn: RawConn, runId: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const r = ok<{ run: { state: string } }>(await conn.request('run.get', { run_id: runId }));
    if (r.run.state === 'succeeded' || r.run.state === 'failed') return r.run.state;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`run ${runId} did not settle`);
}

const REVIEW = { policy_version: 1, mode: 'enforce', defaults: { state_changing: 'allow', unknown: 'allow' }, rules: [{ id: 'acme-reviews-counts', description: 'acme-private-rule-text', decision: 'require_approval', match: { tools: [TOOL] } }] };

t.test("a tenant's bundle requires approval for a tool the host allows; its always-approval lets its own calls run, no one else's", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, `${PLUGINS}text-utils/build`);
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());
  const acme = await tenantConn(gw, 'acme');
  t.teardown(() => acme.ws.close());
  const globex = await tenantConn(gw, 'globex');
  t.teardown(() => globex.ws.close());
  // Each tenant calls text-utils under its own grant (the host's gives a tenant nothing).
  for (const tenant of ['acme', 'globex']) await gw.plugins.grant('text-utils', { allRequested: true }, CLI, tenant);

  const hostBefore = ok<Frame>(await host.request('policy.get', {}));
  t.same(Object.keys(hostBefore).sort(), ['bundle', 'history', 'overrides', 'snapshot_id'], "the host's policy.get answers as before");
  // Before any tenant bundle, every tenant's word count runs as the host's does.
  t.equal((await invoke(acme, 'before')).state, 'succeeded');
  t.match(ok<Frame>(await acme.request('policy.get', {})), { snapshot_id: null, bundle: null, history: [], overrides: [], host_snapshot_id: hostBefore.snapshot_id });

  // Tenant acme requires approval for word counts.
  const set = ok<{ snapshot_id: string; changed: boolean }>(await acme.request('policy.set', { bundle: REVIEW }));
  t.match(set, { snapshot_id: /^pol_/, changed: true });
  t.equal(code(await acme.request('policy.set', { bundle: { ...REVIEW, pairing: { auto_approve: [] } } })), 'invalid_request', 'no pairing rules in a tenant bundle');
  const hostAfter = ok<Frame>(await host.request('policy.get', {}));
  t.same(hostAfter, hostBefore, "the host's policy, history and overrides did not change");
  t.match(ok<Frame>(await acme.request('policy.get', {})), { snapshot_id: set.snapshot_id, bundle: REVIEW, history: [{ snapshot_id: set.snapshot_id }], host_snapshot_id: hostBefore.snapshot_id });
  const gGet = ok<Frame>(await globex.request('policy.get', {}));
  t.match(gGet, { snapshot_id: null, bundle: null, history: [], overrides: [] }, "globex sees none of acme's bundle");

  const explained = ok<{ decision: string; text: string; tenant: { decided: boolean } }>(await acme.request('policy.explain', { tool_id: TOOL, args: { text: 'x' } }));
  t.match(explained, { decision: 'require_approval', tenant: { decided: true, snapshot_id: set.snapshot_id } });
  t.match(explained.text, 'acme-reviews-counts');
  t.match(ok<Frame>(await host.request('policy.explain', { tool_id: TOOL })), { decision: 'allow' });
  t.notOk('tenant' in ok<Frame>(await host.request('policy.explain', { tool_id: TOOL })), "the host's explain has no tenant part");
  t.match(ok<Frame>(await globex.request('policy.explain', { tool_id: TOOL })), { decision: 'allow' });
  t.equal(code(await acme.request('policy.explain', { tool_id: 'nothing.here' })), 'not_found', 'a tenant explains the tools it may call');

  // acme's call waits for approval; the host's and globex's run.
  const waiting = await invoke(acme, 'acme words one');
  t.equal(waiting.state, 'paused');
  t.match(waiting.approval_id, /^apr_/);
  t.equal(waiting.policy?.snapshot_id, hostBefore.snapshot_id, "the step records the host's snapshot as before");
  const step = ok<{ steps: Array<{ policy: { decision: string; detail: { tenant?: Record<string, unknown> } } }> }>(await acme.request('run.get', { run_id: waiting.run_id })).steps[0]!;
  t.match(step.policy, { decision: 'require_approval', detail: { source: 'rule', tenant: { tenant_id: 'acme', snapshot_id: set.snapshot_id, decided: true, matched: [{ rule_id: 'acme-reviews-counts' }] } } }, "the step says acme's bundle decided");
  const hostRun = await invoke(host, 'host words');
  t.equal(hostRun.state, 'succeeded', "the host's call does not wait");
  const hostStep = ok<{ steps: Array<{ policy: { detail: Record<string, unknown> } }> }>(await host.request('run.get', { run_id: hostRun.run_id })).steps[0]!;
  t.notOk('tenant' in hostStep.policy.detail, "the host's step records the decision as before");
  t.equal((await invoke(globex, 'globex words')).state, 'succeeded', "globex's call does not wait");

  // globex sets the same bundle: its calls wait too (its own snapshot, same content-addressed id).
  t.equal(ok<{ snapshot_id: string }>(await globex.request('policy.set', { bundle: REVIEW })).snapshot_id, set.snapshot_id);
  const globexWaiting = await invoke(globex, 'globex words two');
  t.equal(globexWaiting.state, 'paused');

  // acme approves always: an override of acme's.
  const resolved = ok<{ override_id: string | null }>(await acme.request('approval.resolve', { approval_id: waiting.approval_id!, decision: 'approved', mode: 'always' }));
  t.match(resolved.override_id, /^ovr_/);
  const overrideId = resolved.override_id!;
  t.equal(await settle(acme, waiting.run_id), 'succeeded');
  const next = await invoke(acme, 'acme words two');
  t.equal(next.state, 'succeeded', "acme's next call runs without approval");
  const nextStep = ok<{ steps: Array<{ policy: { detail: Record<string, unknown> } }> }>(await acme.request('run.get', { run_id: next.run_id })).steps[0]!;
  t.match(nextStep.policy.detail, { source: 'override', override_id: overrideId, tenant: { override_id: overrideId } });
  const globexNext = await invoke(globex, 'globex words three');
  t.equal(globexNext.state, 'paused', "globex's call still waits: acme's override is acme's");

  // The override is listed and revocable by acme only.
  t.match(ok<{ overrides: Array<{ id: string }> }>(await acme.request('policy.get', {})).overrides, [{ id: overrideId, tool_id: TOOL, status: 'active' }]);
  t.same(ok<{ overrides: unknown[] }>(await host.request('policy.get', {})).overrides, [], "the host's list does not show it");
  t.same(ok<{ overrides: unknown[] }>(await globex.request('policy.get', {})).overrides, []);
  t.equal(code(await globex.request('policy.override.revoke', { override_id: overrideId })), 'not_found', "globex cannot revoke acme's override");
  t.equal(code(await host.request('policy.override.revoke', { override_id: overrideId })), 'not_found', "the host's token cannot either (no token acts across tenants)");
  t.equal((await invoke(acme, 'acme words three')).state, 'succeeded', 'still in force');
  t.match(ok<Frame>(await acme.request('policy.override.revoke', { override_id: overrideId })), { changed: true, override: { id: overrideId, status: 'revoked' } });
  t.equal((await invoke(acme, 'acme words four')).state, 'paused', 'revoked: acme waits again');

  // A tenant bundle's deny refuses the tenant's calls only.
  ok(await acme.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'no-counts', decision: 'deny', match: { tools: [TOOL] } }] } }));
  t.equal(code(await acme.request('tool.invoke', { tool_id: TOOL, args: { text: 'denied' }, wait_ms: 3000 })), undefined, 'answered with a failed run');
  t.equal((await invoke(acme, 'acme denied')).state, 'failed');
  t.equal((await invoke(host, 'host still runs')).state, 'succeeded');

  // Audit: acme's policy changes are acme's entries (the actor names it); the host's list has none.
  const acmeAudit = ok<{ entries: Array<{ type: string; actor: { tenant?: string } }> }>(await acme.request('audit.list', { limit: 1000 })).entries;
  for (const type of ['policy.set', 'policy.override_added', 'policy.override_revoked']) {
    const e = acmeAudit.filter((x) => x.type === type);
    t.ok(e.length > 0 && e.every((x) => x.actor.tenant === 'acme'), `${type} is audited as acme's`);
  }
  const hostAudit = JSON.stringify(ok<Frame>(await host.request('audit.list', { limit: 1000 })));
  t.notOk(hostAudit.includes(overrideId) || hostAudit.includes(set.snapshot_id), "the host's audit view has none of acme's policy entries");
  ok(await host.request('ping'));
  // Pushed frames (events), not the answers to the requests each client made itself.
  const pushed = (c: RawConn) => JSON.stringify(c.frames.filter((f) => f.request_id === undefined));
  const pushedToHost = pushed(host);
  t.ok(pushedToHost.length > 2, 'the host client was pushed events');
  t.notOk(pushedToHost.includes(overrideId) || pushedToHost.includes('acme-reviews-counts'), "nothing of acme's policy was pushed to the host's client");
  t.notOk(pushed(globex).includes(overrideId), "nor to globex's");
});
