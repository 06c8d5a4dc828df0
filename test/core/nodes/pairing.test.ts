// PairingService (core/nodes/pairing.ts): the pairing state machine, one commit per transition
// with its event and audit entry, races decided once, revocation taking the node token with it.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';
import { AuditLog } from '../../../core/audit/log.js';
import { verifyAudit } from '../../../core/audit/verify.js';
import { EventLog } from '../../../core/execution/events.js';
import { TokenService } from '../../../core/auth/tokens.js';
import { PairingService, policyAutoApprove, type NodeFacts } from '../../../core/nodes/pairing.js';
import { PolicyService } from '../../../core/policy/index.js';
import { makeKeys } from '../execution/fixtures/world.js';

const operator = { kind: 'token', id: 'tok_op' };
const HASH = (c: string) => c.padEnd(64, '0').replace(/[^0-9a-f]/g, 'a').slice(0, 64);
const facts = (over: Partial<NodeFacts> = {}): NodeFacts => ({
  device_id: 'dev_laptop',
  pubkey: 'pk',
  label: 'Dev Laptop',
  platform: 'linux',
  version: '1.0.0',
  mode: 'node',
  remote_address: '127.0.0.1',
  advertised: [
    { id: 'fs.read', version: '1', definition_hash: HASH('a1') },
    { id: 'fs.write', version: '1', definition_hash: HASH('b2') },
  ],
  ...over,
});

function setup(t: Test, maxPending?: number) {
  const dir = t.testdir();
  const store = openStore(join(dir, 'n.db'));
  const keys = makeKeys();
  const checkpointPath = join(dir, 'audit.checkpoint');
  const audit = new AuditLog({ store, signer: keys.signer, verifier: keys.verifier, checkpointPath });
  const events = new EventLog({ store });
  const seen: Array<{ type: string; payload: Record<string, unknown> }> = [];
  events.onEvent((e) => seen.push({ type: e.type, payload: e.payload }));
  const pairings = new PairingService({ store, events, audit, ...(maxPending !== undefined ? { maxPending } : {}) });
  t.teardown(() => {
    audit.close();
    store.close();
  });
  return { store, audit, events, pairings, seen, tokens: new TokenService(store), verify: () => verifyAudit({ store, verifier: keys.verifier, checkpointPath }) };
}

t.test('a node that connects is awaiting_human, once; a reconnect refreshes the same pairing without an event', async (t) => {
  const { pairings, seen, store } = setup(t);
  const first = pairings.request(facts());
  t.equal(first.created, true);
  t.match(first.pairing, { state: 'awaiting_human', capability_allowlist: [], trust_level: null, node_name: null, device_id: 'dev_laptop' });
  t.match(first.pairing.pairing_id, /^pair_[0-9a-f]{16}$/);
  const again = pairings.request(facts({ remote_address: '10.0.0.2', advertised: [{ id: 'fs.read', version: '2', definition_hash: HASH('c3') }] }));
  t.equal(again.created, false);
  t.equal(again.pairing.pairing_id, first.pairing.pairing_id);
  t.match(again.pairing, { remote_address: '10.0.0.2', advertised: [{ id: 'fs.read', version: '2' }] });
  t.same(seen.map((e) => e.type), ['pairing.updated'], 'one event: the request');
  t.match(store.audit.page(0, 100).map((r) => r.type), ['pairing.requested']);
});

t.test('approve pins the advertised definitions, names the node, and audits in the same commit', async (t) => {
  const { pairings, seen, store, verify } = setup(t);
  const { pairing } = pairings.request(facts());
  const before = store.commitStats().commits;
  const approved = pairings.approve(pairing.pairing_id, { trust_level: 'remote', capability_allowlist: [{ id: 'fs.write' }, { id: 'fs.read', version: '1' }], read_only: ['fs.read'] }, operator);
  t.equal(store.commitStats().commits - before, 1, 'one commit: row, event and audit entry');
  t.match(approved, { state: 'approved', trust_level: 'remote', node_name: 'dev-laptop', resolved_by: operator });
  t.same(approved.capability_allowlist, [
    { id: 'fs.read', version: '1', definition_hash: HASH('a1'), read_only: true },
    { id: 'fs.write', version: '1', definition_hash: HASH('b2'), read_only: false },
  ]);
  t.match(seen.at(-1), { type: 'pairing.updated', payload: { pairing_id: pairing.pairing_id, state: 'approved', trust_level: 'remote', node_name: 'dev-laptop' } });
  const entry = store.audit.page(0, 100).find((r) => r.type === 'pairing.approved')!;
  t.match(JSON.parse(entry.data), { pairing_id: pairing.pairing_id, capability_allowlist: ['fs.read@1 (read-only)', 'fs.write@1'] });
  // Approving again changes the allowlist in place.
  const changed = pairings.approve(pairing.pairing_id, { trust_level: 'local', capability_allowlist: [{ id: 'fs.read' }] }, operator);
  t.match(changed, { state: 'approved', trust_level: 'local', node_name: 'dev-laptop', capability_allowlist: [{ id: 'fs.read', read_only: false }] });
  t.ok(store.audit.page(0, 100).some((r) => r.type === 'pairing.allowlist_changed'));
  t.equal(pairings.request(facts()).pairing.state, 'approved', 'a reconnect of an approved node finds its pairing');
  await store.durable();
  t.match(verify(), { ok: true });
});

t.test('approve refuses what the node did not advertise, bad names and taken names', async (t) => {
  const { pairings } = setup(t);
  const { pairing } = pairings.request(facts());
  const id = pairing.pairing_id;
  t.throws(() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [{ id: 'shell.exec' }] }, operator), { code: 'TYRUM_ERR_NODE_CAPABILITY_UNKNOWN', message: /did not advertise shell\.exec \(it advertised: fs\.read@1, fs\.write@1\)/ });
  t.throws(() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [{ id: 'fs.read', version: '9' }] }, operator), { code: 'TYRUM_ERR_NODE_CAPABILITY_UNKNOWN', message: /fs\.read@9/ });
  t.throws(() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [{ id: 'fs.read' }, { id: 'fs.read' }] }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /listed twice/ });
  t.throws(() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [{ id: 'fs.read' }], read_only: ['fs.write'] }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /not in the allowlist/ });
  t.throws(() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [], node_name: 'Bad Name' }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT', message: /node_name/ });
  t.throws(() => pairings.approve(id, { trust_level: 'everywhere' as never, capability_allowlist: [] }, operator), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
  pairings.approve(id, { trust_level: 'remote', capability_allowlist: [], node_name: 'box' }, operator);
  const other = pairings.request(facts({ device_id: 'dev_other', label: null })).pairing;
  t.throws(() => pairings.approve(other.pairing_id, { trust_level: 'remote', capability_allowlist: [], node_name: 'box' }, operator), { code: 'TYRUM_ERR_CONFLICT', message: /taken/ });
  t.match(pairings.approve(other.pairing_id, { trust_level: 'remote', capability_allowlist: [] }, operator), { node_name: 'node-other' }, 'no label: named from the device id');
  t.equal(pairings.get(other.pairing_id).state, 'approved');
  t.throws(() => pairings.get('pair_ffffffffffffffff'), { code: 'TYRUM_ERR_NOT_FOUND' });
});

t.test('deny and revoke are final; a later connection starts a new pairing with an empty allowlist', async (t) => {
  const { pairings, store, tokens } = setup(t);
  const denied = pairings.deny(pairings.request(facts()).pairing.pairing_id, { reason: 'not mine' }, operator);
  t.match(denied, { state: 'denied', reason: 'not mine' });
  t.throws(() => pairings.approve(denied.pairing_id, { trust_level: 'remote', capability_allowlist: [] }, operator), { code: 'TYRUM_ERR_INVALID_STATE', message: /new connection of the node starts a new pairing/ });
  const second = pairings.request(facts()).pairing;
  t.not(second.pairing_id, denied.pairing_id);
  pairings.approve(second.pairing_id, { trust_level: 'remote', capability_allowlist: [{ id: 'fs.read' }] }, operator);
  // The node token minted for it (by the gateway, once delivered) dies with the pairing.
  const { record } = await tokens.create({ kind: 'node', roles: ['node'], scopes: [], deviceId: 'dev_laptop', createdBy: `pairing:${second.pairing_id}` });
  store.tx(() => store.pairings.transition(second.pairing_id, ['approved'], { token_id: record.id }));
  t.throws(() => pairings.deny(second.pairing_id, {}, operator), { code: 'TYRUM_ERR_INVALID_STATE', message: /is approved, not awaiting_human/ });
  const revoked = pairings.revoke(second.pairing_id, {}, operator);
  t.match(revoked, { state: 'revoked', token_id: record.id });
  t.not(store.tokens.get(record.id)!.revoked_at, null, 'its node token is revoked in the same transaction');
  t.throws(() => pairings.revoke(second.pairing_id, {}, operator), { code: 'TYRUM_ERR_INVALID_STATE' });
  const third = pairings.request(facts()).pairing;
  t.match(third, { state: 'awaiting_human', capability_allowlist: [] }, 'reconnecting never restores access');
  t.same(pairings.list().map((p) => p.state), ['awaiting_human', 'revoked', 'denied']);
  t.same(pairings.list({ state: 'denied' }).map((p) => p.pairing_id), [denied.pairing_id]);
  t.throws(() => pairings.list({ state: 'gone' as never }), { code: 'TYRUM_ERR_INVALID_ARGUMENT' });
});

t.test('revoking the node token revokes its pairing in the caller\'s transaction', async (t) => {
  const { pairings, store, tokens, events } = setup(t);
  const p = pairings.request(facts()).pairing;
  pairings.approve(p.pairing_id, { trust_level: 'remote', capability_allowlist: [] }, operator);
  const { record } = await tokens.create({ kind: 'node', roles: ['node'], scopes: [], deviceId: 'dev_laptop', createdBy: 'test' });
  store.tx(() => store.pairings.transition(p.pairing_id, ['approved'], { token_id: record.id }));
  const r = events.transact((emit) => pairings.revokeByTokenInTx(emit, record.id, operator));
  t.match(r, { state: 'revoked', reason: 'its node token was revoked' });
  t.equal(events.transact((emit) => pairings.revokeByTokenInTx(emit, 'nope', operator)), undefined);
});

t.test('racing resolutions: one wins, the other gets conflict or invalid_state', async (t) => {
  const { pairings } = setup(t);
  const id = pairings.request(facts()).pairing.pairing_id;
  const outcomes = [() => pairings.approve(id, { trust_level: 'remote', capability_allowlist: [] }, operator), () => pairings.deny(id, {}, operator)].map((f) => {
    try {
      return f().state;
    } catch (e) {
      return (e as { code: string }).code;
    }
  });
  t.same(outcomes, ['approved', 'TYRUM_ERR_INVALID_STATE']);
});

t.test('at most maxPending pairings wait for an operator', async (t) => {
  const { pairings } = setup(t, 2);
  pairings.request(facts({ device_id: 'dev_1' }));
  pairings.request(facts({ device_id: 'dev_2' }));
  t.throws(() => pairings.request(facts({ device_id: 'dev_3' })), { code: 'TYRUM_ERR_PAIRING_LIMIT' });
  t.equal(pairings.request(facts({ device_id: 'dev_1' })).created, false, 'a waiting node reconnecting is not refused');
});

t.test('policyAutoApprove: a loopback node a rule names, never a remote one, nothing without a rule', async (t) => {
  const { store } = setup(t);
  const decide = policyAutoApprove(store);
  t.equal(decide(facts()), null, 'the default bundle approves nothing');
  const policy = new PolicyService({ store });
  policy.set({ policy_version: 1, mode: 'enforce', rules: [], pairing: { auto_approve: [{ id: 'local-fs', trust_level: 'local', capabilities: [{ id: 'fs.read' }] }] } }, 'test');
  t.match(decide(facts()), { rule_id: 'local-fs', snapshot_id: /^pol_/, capabilities: [{ id: 'fs.read' }], read_only: [] });
  t.equal(decide(facts({ remote_address: '10.0.0.5' })), null, 'a remote node always waits for an operator');
  t.match(decide(facts({ remote_address: '::1' })), { rule_id: 'local-fs' });
});
