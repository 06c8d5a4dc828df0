// The repositories the governed call uses, against both stores (SQLite and PostgreSQL): the same
// assertions, so the two dialects cannot drift apart.
import t, { type Test } from 'tap';
import type { ApprovalRow, AttemptRow, RunRow, StepRow, TokenRecord } from '../../../core/store/index.js';
import { forEachBackend } from '../../helpers/store-backends.js';

/** Tests whose times are the caller's: on PostgreSQL leases, heartbeats and deadlines use the server's clock. */
const PG_CLOCK = { postgres: 'caller-set times: PostgreSQL measures leases on its own clock (test/core/store/pg/lease-clock.test.ts)' };

function token(id: string, over: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id, label: id, scopes: ['operator.read'], roles: ['client'], kdf: 'scrypt:N=4096,r=8,p=1', salt: Buffer.from([0, 1, 2]), hash: Buffer.from([255, 254]),
    created_at: 1, created_by: null, parent_id: null, expires_at: null, revoked_at: null, last_used_at: null, kind: 'access', device_id: null, single_use: false, ...over,
  };
}

function run(id: string, over: Partial<RunRow> = {}): RunRow {
  return {
    id, kind: 'tool', state: 'queued', created_by: 'u', idempotency_key: null, request_hash: 'h', created_at: 1, updated_at: 1, finished_at: null,
    cancel_requested: 0, pause_reason: null, next_attempt_at: 0, result: null, error: null, lease_owner: null, lease_expires_at: null, fencing_token: 0, ...over,
  };
}

function step(runId: string, idx: number, over: Partial<StepRow> = {}): StepRow {
  return {
    run_id: runId, idx, tool_id: 'echo.say', args: '{}', args_hash: 'ah', idempotency_key: null, state: 'pending', idempotent: 0, max_attempts: null, timeout_ms: 1000,
    postcondition: null, attempts: 0, policy_decision: null, policy_enforced: null, policy_snapshot_id: null, policy_detail: null, approval_id: null,
    definition_hash: null, plugin_digest: null, result: null, error: null, started_at: null, finished_at: null, updated_at: 1, ...over,
  };
}

function approval(id: string, over: Partial<ApprovalRow> = {}): ApprovalRow {
  return {
    id, run_id: null, step_idx: null, tool_id: 'echo.say', args: '{}', args_hash: 'ah', definition_hash: 'dh', plugin_digest: 'pd', requested_by: 'u', state: 'pending',
    mode: null, reason: null, created_at: 1, expires_at: 100, resolved_at: null, resolved_by: null, consumed_at: null, ...over,
  };
}

forEachBackend(t, 'tokens: stored and read back exactly, revoked once, lineage followed', async (t: Test, { repos: s, tx }) => {
  tx(() => {
    s.tokens.insert(token('root'));
    s.tokens.insert(token('child', { parent_id: 'root', created_at: 2, expires_at: 50 }));
    s.tokens.insert(token('grandchild', { parent_id: 'child', created_at: 3 }));
  });
  t.same(s.tokens.get('root'), token('root'));
  t.ok(Buffer.isBuffer(s.tokens.get('root')!.salt), 'salt is a Buffer');
  t.same(s.tokens.list().map((x) => x.id), ['root', 'child', 'grandchild']);
  t.same(s.tokens.descendants('root').sort(), ['child', 'grandchild']);
  t.same(s.tokens.invalidAmong(['root', 'grandchild', 'nope'], 10), ['nope'], 'a token that does not exist is invalid');
  t.same(s.tokens.invalidAmong(['root', 'grandchild'], 60), ['grandchild'], 'a parent that expired ends its children');
  t.equal(s.tokens.lineageLive('grandchild', 10), true);
  t.equal(s.tokens.revoke('child', 20), true);
  t.equal(s.tokens.revoke('child', 21), false, 'revoked once');
  t.equal(s.tokens.lineageLive('grandchild', 10), false);
  s.tokens.touch('root', 30);
  t.equal(s.tokens.get('root')!.last_used_at, 30);
});

forEachBackend(t, 'a single-use token binds to the first device that claims it', async (t: Test, { repos: s }) => {
  s.tokens.insert(token('boot', { kind: 'node_enrollment', single_use: true }));
  t.equal(s.tokens.claimSingleUse('boot', 'dev1', 5), 'claimed');
  t.equal(s.tokens.claimSingleUse('boot', 'dev1', 5), 'same');
  t.equal(s.tokens.claimSingleUse('boot', 'dev2', 5), 'refused');
  t.equal(s.tokens.get('boot')!.single_use, true);
});

forEachBackend(t, 'devices are inserted, then refreshed without losing when they were first seen', async (t: Test, { repos: s }) => {
  s.devices.upsert({ device_id: 'd1', pubkey: 'pk', role: 'client', label: null, platform: 'linux', version: '1' }, 10);
  s.devices.upsert({ device_id: 'd1', pubkey: 'pk', role: 'node', label: 'lab', platform: 'linux', version: '2' }, 20);
  t.same(s.devices.get('d1'), { device_id: 'd1', pubkey: 'pk', role: 'node', label: 'lab', platform: 'linux', version: '2', first_seen_at: 10, last_seen_at: 20 });
  t.equal(s.devices.get('d2'), undefined);
});

forEachBackend(t, 'the audit log pages and iterates in seq order', async (t: Test, { repos: s, tx }) => {
  tx(() => {
    for (let i = 1; i <= 5; i++) s.audit.insert({ seq: i, ts: `t${i}`, type: i % 2 ? 'a.odd' : 'a.even', actor: '{}', data: '{}', prev_hash: `p${i}`, hash: `h${i}` });
  });
  t.equal(s.audit.count(), 5);
  t.equal(s.audit.head()!.seq, 5);
  t.same(s.audit.get(3), { seq: 3, ts: 't3', type: 'a.odd', actor: '{}', data: '{}', prev_hash: 'p3', hash: 'h3' });
  t.same(s.audit.page(1, 2).map((r) => r.seq), [2, 3]);
  t.same(s.audit.page(0, 10, 'a.even').map((r) => r.seq), [2, 4]);
  t.same([...s.audit.iterate()].map((r) => r.seq), [1, 2, 3, 4, 5]);
  t.throws(() => s.audit.insert({ seq: 5, ts: 'x', type: 'x', actor: '{}', data: '{}', prev_hash: 'x', hash: 'x' }), /UNIQUE/);
});

forEachBackend(t, 'plugins: upgrade in place, grants and config and key-value data go with the plugin', async (t: Test, { repos: s }) => {
  const p = { id: 'echo', version: '1.0.0', manifest: '{}', manifest_sha256: 'm', wasm_sha256: 'w', source: '/x', state: 'disabled' as const, installed_at: 1, updated_at: 1 };
  s.plugins.upsert(p);
  s.plugins.upsert({ ...p, version: '1.1.0', installed_at: 5, updated_at: 5 });
  t.same(s.plugins.get('echo'), { ...p, version: '1.1.0', updated_at: 5 }, 'installed_at is kept on upgrade');
  t.equal(s.plugins.setState('echo', 'enabled', 6), true);
  t.throws(() => s.plugins.setState('echo', 'bogus' as never, 7), /CHECK/);
  s.plugins.setGrant({ plugin_id: 'echo', grant_json: '{"a":1}', granted_by: 'op', granted_at: 7 });
  s.plugins.setGrant({ plugin_id: 'echo', grant_json: '{"a":2}', granted_by: 'op', granted_at: 8 });
  t.same(s.plugins.getGrant('echo'), { plugin_id: 'echo', grant_json: '{"a":2}', granted_by: 'op', granted_at: 8, granted_for: null });
  s.plugins.setConfig('echo', '{"k":"v"}', 9);
  t.equal(s.plugins.getConfig('echo'), '{"k":"v"}');
  s.pluginKv.set('echo', 'key', new Uint8Array([1, 2, 3]));
  s.pluginKv.set('echo', 'ké', Buffer.from('value'));
  t.same(s.pluginKv.get('echo', 'key'), Buffer.from([1, 2, 3]));
  t.equal(s.pluginKv.usage('echo'), 3 + 3 + 3 + 5, 'keys counted in bytes (é is two), plus values');
  s.pluginKv.delete('echo', 'key');
  t.equal(s.pluginKv.get('echo', 'key'), undefined);
  t.throws(() => s.pluginKv.set('nope', 'k', new Uint8Array([1])), /FOREIGN KEY/);
  // An upgrade's pending permission diff: the first upgrade's from_version stays, the rest follow the latest.
  s.plugins.setPendingDiff({ plugin_id: 'echo', from_version: '1.0.0', to_version: '1.1.0', diff_json: '[1]', created_at: 10 });
  s.plugins.setPendingDiff({ plugin_id: 'echo', from_version: '1.1.0', to_version: '1.2.0', diff_json: '[1,2]', created_at: 11 });
  t.same(s.plugins.getPendingDiff('echo'), { plugin_id: 'echo', from_version: '1.0.0', to_version: '1.2.0', diff_json: '[1,2]', created_at: 11 });
  t.equal(s.plugins.clearPendingDiff('echo'), true);
  t.equal(s.plugins.clearPendingDiff('echo'), false);
  s.plugins.setPendingDiff({ plugin_id: 'echo', from_version: '1.1.0', to_version: '1.2.0', diff_json: '[]', created_at: 12 });
  t.equal(s.plugins.remove('echo'), true);
  t.equal(s.plugins.getPendingDiff('echo'), undefined, 'the pending diff goes with the plugin');
  t.equal(s.plugins.getGrant('echo'), undefined);
  t.equal(s.plugins.getConfig('echo'), undefined);
  t.equal(s.pluginKv.usage('echo'), 0);
});

forEachBackend(t, 'secrets: bytes round-trip and a rotation replaces the value but keeps created_at', async (t: Test, { repos: s }) => {
  const r = { name: 'api', version: 1, nonce: Buffer.from('n'), ciphertext: Buffer.from([0, 200, 7]), tag: Buffer.from('t'), destinations: '["a.example"]', created_at: 1, rotated_at: 1 };
  s.secrets.put(r);
  s.secrets.put({ ...r, version: 2, ciphertext: Buffer.from([9]), created_at: 5, rotated_at: 5 });
  t.same(s.secrets.get('api'), { ...r, version: 2, ciphertext: Buffer.from([9]), rotated_at: 5 });
  t.same(s.secrets.list().map((x) => x.name), ['api']);
  for (const name of ['b', 'B', 'é', 'Z', 'a_1', 'a1']) s.secrets.put({ ...r, name });
  t.same(s.secrets.list().map((x) => x.name), ['B', 'Z', 'a1', 'a_1', 'api', 'b', 'é'], 'text sorts by bytes on both stores');
  t.equal(s.secrets.remove('api'), true);
  t.equal(s.secrets.remove('api'), false);
});

forEachBackend(t, 'policy: snapshots are immutable, activations numbered, overrides revoked once', async (t: Test, { repos: s, tx }) => {
  t.equal(s.policy.insertSnapshot({ id: 'pol_a', bundle: '{}', created_at: 1, created_by: 'op' }), true);
  t.equal(s.policy.insertSnapshot({ id: 'pol_a', bundle: '{"x":1}', created_at: 2, created_by: 'op' }), false, 'the same id is not replaced');
  t.throws(() => s.policy.insertSnapshot({ id: 'bad', bundle: '{}', created_at: 1, created_by: 'op' }), /CHECK/, 'ids start with pol_');
  t.equal(s.policy.insertSnapshot({ id: 'pol_b', bundle: '{}', created_at: 3, created_by: 'op' }), true);
  const a1 = tx(() => s.policy.activate('pol_a', 10, 'op'));
  const a2 = tx(() => s.policy.activate('pol_b', 11, 'op'));
  t.equal(a2.seq, a1.seq + 1);
  t.same(s.policy.active(), a2);
  t.same(s.policy.activations().map((a) => a.snapshot_id), ['pol_b', 'pol_a']);
  const o = { id: 'ovr_1', tool_id: 'echo.say', args_hash: null, created_by: 'op', created_from_approval: null, created_at: 1, expires_at: null, revoked_at: null };
  s.policy.insertOverride(o);
  t.throws(() => s.policy.insertOverride({ ...o, id: 'ovr_2', tool_id: 'echo.*' }), /CHECK/, 'never a pattern');
  t.same(s.policy.unrevokedForTool('echo.say'), [o]);
  t.equal(s.policy.revokeOverride('ovr_1', 5), true);
  t.equal(s.policy.revokeOverride('ovr_1', 6), false);
  t.same(s.policy.unrevokedForTool('echo.say'), []);
});

forEachBackend(t, "policy per tenant: a tenant's snapshots, activations and overrides are its own; the host's rows read as before", async (t: Test, { repos: s, tx }) => {
  tx(() => {
    s.tenants.insert({ id: 'acme', label: 'acme', created_at: 1 });
    s.tenants.insert({ id: 'globex', label: 'globex', created_at: 1 });
  });
  const snap = { id: 'pol_t', bundle: '{}', created_at: 1, created_by: 'token:a' };
  t.equal(s.policy.insertTenantSnapshot('acme', snap), true);
  t.equal(s.policy.insertTenantSnapshot('acme', { ...snap, bundle: '{"x":1}' }), false, 'content-addressed per tenant');
  t.equal(s.policy.insertTenantSnapshot('globex', snap), true, 'the same content in another tenant is its own row');
  t.throws(() => s.policy.insertTenantSnapshot('default', { ...snap, id: 'pol_d' }), /CHECK/, "the host's bundle is not a tenant snapshot");
  t.same(s.policy.getTenantSnapshot('acme', 'pol_t'), snap);
  t.equal(s.policy.getSnapshot('pol_t'), undefined, "not among the host's snapshots");
  t.equal(s.policy.tenantActive('acme'), undefined);
  const a1 = tx(() => s.policy.activateTenant('acme', 'pol_t', 10, 'token:a'));
  t.same(s.policy.tenantActive('acme'), a1);
  t.equal(s.policy.tenantActive('globex'), undefined);
  t.equal(s.policy.active(), undefined, "the host's active pointer did not move");
  t.throws(() => tx(() => s.policy.activateTenant('acme', 'pol_missing', 11, 'token:a')), /FOREIGN KEY|foreign key/i, 'only a stored snapshot of the tenant');
  t.same(s.policy.tenantActivations('acme').map((a) => a.snapshot_id), ['pol_t']);

  const o = { id: 'ovr_h', tool_id: 'echo.say', args_hash: null, created_by: 'op', created_from_approval: null, created_at: 1, expires_at: null, revoked_at: null };
  const oa = { ...o, id: 'ovr_a', created_by: 'token:a', created_at: 2 };
  tx(() => {
    s.policy.insertOverride(o);
    s.policy.insertOverride(oa, 'acme');
  });
  t.same(s.policy.listOverrides(), [o], "the host's list: its own, row as written");
  t.same(s.policy.listOverrides('acme'), [oa]);
  t.same(s.policy.listOverrides('globex'), []);
  t.same(s.policy.unrevokedForTool('echo.say'), [o]);
  t.same(s.policy.unrevokedForTool('echo.say', 'acme'), [oa]);
  t.equal(s.policy.getOverride('ovr_a'), undefined, "acme's is not the host's");
  t.equal(s.policy.getOverride('ovr_h', 'acme'), undefined, "the host's is not acme's");
  t.equal(s.policy.revokeOverride('ovr_a', 5), false, "the host cannot revoke acme's");
  t.equal(s.policy.revokeOverride('ovr_a', 5, 'globex'), false);
  t.equal(s.policy.revokeOverride('ovr_a', 5, 'acme'), true);
  t.same(s.policy.unrevokedForTool('echo.say', 'acme'), []);
  t.same(s.policy.unrevokedForTool('echo.say'), [o], "the host's untouched");
});

forEachBackend(t, 'runs are claimed oldest first under a lease whose fencing token fences out the previous holder', async (t: Test, { repos: s }) => {
  for (const id of ['r1', 'r2', 'r3']) s.execution.insertRun(run(id));
  s.execution.insertStep(step('r1', 0));
  t.equal(s.execution.hasClaimable(10), true);
  t.same(s.execution.claimable(10, 2), ['r1', 'r2'], 'insertion order');
  const c1 = s.execution.claim('r1', 'w1', 10, 100)!;
  t.match(c1, { state: 'running', lease_owner: 'w1', lease_expires_at: 110, fencing_token: 1 });
  t.equal(s.execution.claim('r1', 'w2', 20, 100), undefined, 'leased');
  const f1 = { owner: 'w1', token: 1 };
  const attempt: AttemptRow = { run_id: 'r1', step_idx: 0, n: 1, state: 'started', owner: 'w1', fencing_token: 1, started_at: 10, finished_at: null, duration_ms: null, usage: null, result: null, error: null, evidence: null };
  t.equal(s.execution.insertAttempt(attempt, f1), true);
  const c2 = s.execution.claim('r1', 'w2', 200, 100)!;
  t.equal(c2.fencing_token, 2, 'the lease expired and was taken over');
  t.equal(s.execution.insertAttempt({ ...attempt, n: 2 }, f1), false, 'the old holder is fenced out');
  t.equal(s.execution.updateStep('r1', 0, { state: 'running', updated_at: 201 }, { fence: f1 }), undefined);
  t.equal(s.execution.updateStep('r1', 0, { state: 'running', updated_at: 201 }, { fence: { owner: 'w2', token: 2 } })?.state, 'running');
  t.same(s.execution.updateAttempt('r1', 0, 1, { state: 'interrupted', finished_at: 202, duration_ms: 1.5 })?.duration_ms, 1.5);
  t.equal(s.execution.renewLease('r1', f1, 899, 100), false);
  t.equal(s.execution.renewLease('r1', { owner: 'w2', token: 2 }, 899, 100), true);
  t.equal(s.execution.expireLeasesOf('w2', 300), 1);
  t.same(s.execution.listRuns({ limit: 2 }).map((r) => r.id), ['r3', 'r2'], 'newest first');
  t.same(s.execution.listRuns({ limit: 5, afterId: 'r2' }).map((r) => r.id), ['r1']);
  t.same(s.execution.updateSteps('r1', { state: 'cancelled', updated_at: 301 }, ['running']).map((x) => x.idx), [0]);
}, PG_CLOCK);

forEachBackend(t, 'approvals resolve once, expire once, and are consumed once', async (t: Test, { repos: s }) => {
  s.execution.insertRun(run('r1', { state: 'paused', pause_reason: 'approval' }));
  s.execution.insertStep(step('r1', 0, { state: 'waiting_approval', approval_id: 'ap1' }));
  s.approvals.insert(approval('ap1', { run_id: 'r1', step_idx: 0 }));
  s.approvals.insert(approval('ap2', { expires_at: 5 }));
  t.equal(s.approvals.hasDue(10), true);
  t.same(s.approvals.expireDue(10).map((a) => a.id), ['ap2']);
  t.same(s.approvals.expireDue(10), [], 'each expires once');
  const resolved = s.approvals.resolve('ap1', 'approved', 'once', null, '{"token":"op"}', 20)!;
  t.match(resolved, { state: 'approved', mode: 'once', resolved_at: 20 });
  t.equal(s.approvals.resolve('ap1', 'denied', 'once', null, 'x', 21), undefined, 'resolved once');
  t.equal(s.approvals.requeueRun(resolved, 22)?.state, 'queued');
  t.equal(s.approvals.consume('ap1', 'r1', 0, 23), true);
  t.equal(s.approvals.consume('ap1', 'r1', 0, 24), false, 'single use');
  t.same(s.approvals.list({ limit: 10 }).map((a) => a.id), ['ap2', 'ap1']);
  t.same(s.approvals.list({ limit: 10, state: 'expired' }).map((a) => a.id), ['ap2']);
});
