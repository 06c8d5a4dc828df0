// Node pairing through a real gateway (issue 12; TESTPLAN F5/F6/J4a): an unknown node waits for
// an operator, approval delivers a device-bound node token once, revocation closes the node and
// reconnecting never restores access.
import t from 'tap';
import { gatewayWithAdmin, connect, open, newDevice, RawConn, type TestGateway } from '../../helpers/gateway.js';

const CAPS = [{ id: 'fs.read', version: '1' }, { id: 'fs.write', version: '1' }];

async function enrollment(gw: TestGateway): Promise<string> {
  return (await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'test' })).token;
}

type PairingInfo = { pairing_id: string; state: string; device_id: string; capability_allowlist: unknown[]; credential_delivered_at: string | null; connected: boolean; node_name: string | null };

async function pairings(admin: RawConn, state?: string): Promise<PairingInfo[]> {
  const r = await admin.request('pairing.list', state ? { state } : {});
  if (r.ok !== true) throw new Error(JSON.stringify(r));
  return (r.result as { pairings: PairingInfo[] }).pairings;
}

async function until<T>(f: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('an unknown node waits for an operator; approval delivers its node token once; it reconnects with it', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const enroll = await enrollment(gw);
  const device = newDevice();
  const node = (await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS, label: 'Build Box' })).conn;

  const [waiting] = await until(async () => ((await pairings(admin, 'awaiting_human')).length > 0 ? pairings(admin, 'awaiting_human') : undefined));
  t.match(waiting, { state: 'awaiting_human', device_id: device.device_id, capability_allowlist: [], connected: true, advertised: [{ id: 'fs.read', version: '1' }, { id: 'fs.write', version: '1' }] });
  t.match(await admin.event('pairing.updated'), { payload: { pairing_id: waiting!.pairing_id, state: 'awaiting_human' } }, 'operators see the request live');
  const present = ((await admin.request('presence.list')).result as { entries: Array<{ device_id: string; role: string; label: string | null; mode: string | null; connected: boolean; connected_since: string }> }).entries;
  t.match(present.find((e) => e.role === 'node'), { device_id: device.device_id, label: 'Build Box', mode: 'node', connected: true, connected_since: /^\d{4}-/ }, 'presence lists the node');
  t.ok(present.some((e) => e.role === 'client'), 'and the operator client');
  t.match(await admin.event('presence.upserted'), { payload: { entry: { role: /client|node/, connected: true } } }, 'presence changes are pushed');
  t.match(await node.request('presence.list', {}), { ok: false, error: { code: 'forbidden' } }, 'a node cannot list presence');

  const approved = await admin.request('pairing.approve', { pairing_id: waiting!.pairing_id, trust_level: 'remote', capability_allowlist: [{ id: 'fs.read' }], read_only: ['fs.read'] });
  t.match(approved, { ok: true, result: { pairing: { state: 'approved', node_name: 'build-box', capability_allowlist: [{ id: 'fs.read', version: '1', read_only: true }] } } });
  const cred = await node.incoming('pairing.credential');
  const payload = cred.payload as { token: string; token_id: string; device_id: string; node_name: string; capability_allowlist: unknown[] };
  t.match(payload, { device_id: device.device_id, node_name: 'build-box', capability_allowlist: [{ id: 'fs.read', version: '1' }] });
  node.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  await until(async () => ((await pairings(admin))[0]?.credential_delivered_at ? true : undefined));
  t.match(gw.store.tokens.get(payload.token_id), { kind: 'node', device_id: device.device_id, roles: ['node'], scopes: [] });

  // The node reconnects with its token (the old enrollment connection is replaced).
  const paired = await connect(gw, { token: payload.token, role: 'node', device, capabilities: CAPS });
  t.match(paired.hello, { role: 'node', scopes: [] });
  t.match(await node.closeCode(), { code: 1000, reason: 'replaced by a newer connection' });
  // The enrollment token cannot take the pairing over, even with the device key.
  const again = (await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS })).conn;
  t.match(await again.closeCode(), { code: 4001, reason: /already paired/ });
  // Nor is the node token worth anything on another key.
  const thief = await open(gw, { token: payload.token });
  if (!(thief instanceof RawConn)) throw new Error('upgrade refused');
  const otherKey = newDevice();
  thief.send({ request_id: 'i', type: 'connect.init', payload: { protocol_rev: 1, role: 'node', device: { device_id: otherKey.device_id, pubkey: otherKey.pubkey }, capabilities: [] } });
  t.same(await thief.closeCode(), { code: 4001, reason: 'token is bound to another device' });
  t.equal(paired.conn.closed, null, 'none of this disturbed the paired connection');

  // Revocation: the node is closed within a second; its token is dead; a reconnect starts over.
  const t0 = Date.now();
  const revoked = await admin.request('pairing.revoke', { pairing_id: waiting!.pairing_id, reason: 'lost laptop' });
  t.match(revoked, { ok: true, result: { pairing: { state: 'revoked', reason: 'lost laptop' } } });
  t.equal((await paired.conn.closeCode()).code, 4001);
  t.ok(Date.now() - t0 < 1000, 'closed within a second');
  t.match(await open(gw, { token: payload.token }), { status: 401 }, 'the node token is refused at the upgrade');
  await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS });
  const fresh = await until(async () => (await pairings(admin, 'awaiting_human'))[0]);
  t.not(fresh.pairing_id, waiting!.pairing_id);
  t.same(fresh.capability_allowlist, [], 'reconnecting never restores access');
  const types = gw.store.audit.page(0, 1000).map((r) => r.type);
  for (const ty of ['pairing.requested', 'pairing.approved', 'node.credential_issued', 'node.credential_delivered', 'pairing.revoked']) t.ok(types.includes(ty), `audited: ${ty}`);
});

t.test('a node that does not confirm its credential gets a fresh one next time; the unconfirmed token dies', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const enroll = await enrollment(gw);
  const device = newDevice();
  const node = (await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS })).conn;
  const p = await until(async () => (await pairings(admin, 'awaiting_human'))[0]);
  await admin.request('pairing.approve', { pairing_id: p.pairing_id, trust_level: 'local', capability_allowlist: [] });
  const first = await node.incoming('pairing.credential');
  node.send({ request_id: first.request_id, type: 'pairing.credential', ok: false, error: { code: 'internal', message: 'disk full' } });
  const firstId = (first.payload as { token_id: string }).token_id;
  await until(async () => (gw.store.tokens.get(firstId)?.revoked_at ? true : undefined));
  t.equal(gw.store.pairings.get(p.pairing_id)?.token_id, null);
  t.ok(gw.store.audit.page(0, 1000).some((r) => r.type === 'node.credential_undelivered'));
  const retry = (await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS })).conn;
  const second = await retry.incoming('pairing.credential');
  t.not((second.payload as { token_id: string }).token_id, firstId, 'a new token');
  retry.send({ request_id: second.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  await until(async () => (gw.store.pairings.get(p.pairing_id)?.credential_delivered_at ? true : undefined));
});

t.test('a denied node is closed; pairing operations need the pairing scope and a client', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const enroll = await enrollment(gw);
  const node = (await connect(gw, { token: enroll, role: 'node', capabilities: CAPS })).conn;
  const p = await until(async () => (await pairings(admin, 'awaiting_human'))[0]);
  t.match(await node.request('pairing.list', {}), { ok: false, error: { code: 'forbidden' } }, 'a node cannot list pairings');
  // F6: an unpaired node asking to run capabilities is refused.
  t.match(await node.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'a' } }), { ok: false, error: { code: 'forbidden' } }, 'F6: a node cannot invoke tools');
  t.match(await node.request('task.execute', { dispatch_id: 'x' }), { ok: false, error: { code: 'unsupported_request' } }, 'F6: nor send task.execute');
  t.match(await node.request('capability.ready', { capabilities: CAPS.map((c) => ({ ...c, ready: true })) }), { ok: true, result: { state: 'awaiting_human', dispatchable: [] } }, 'F6: unpaired, nothing is dispatchable');
  t.match(await node.request('pairing.credential', {}), { ok: false, error: { code: 'unsupported_request' } }, 'nor send what the gateway sends');
  t.match(await admin.request('pairing.approve', { pairing_id: p.pairing_id, trust_level: 'remote', capability_allowlist: [{ id: 'shell.exec' }] }), { ok: false, error: { code: 'invalid_request', message: /did not advertise shell\.exec/ } });
  t.match(await admin.request('pairing.deny', { pairing_id: p.pairing_id, reason: 'unknown box' }), { ok: true, result: { pairing: { state: 'denied' } } });
  t.match(await node.closeCode(), { code: 4001, reason: 'pairing denied' });
  t.match(await admin.request('pairing.deny', { pairing_id: p.pairing_id }), { ok: false, error: { code: 'invalid_state' } });
  t.match(await admin.request('pairing.revoke', { pairing_id: 'pair_0000000000000000' }), { ok: false, error: { code: 'not_found' } });
});

t.test('auto-approval only by an explicit policy rule, only for a local node, only what the rule and the node agree on', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const enroll = await enrollment(gw);
  gw.policy.set(
    { policy_version: 1, mode: 'enforce', rules: [], pairing: { auto_approve: [{ id: 'ci-runners', trust_level: 'local', capabilities: [{ id: 'fs.read' }, { id: 'sys.noop' }], read_only: ['fs.read'], labels: ['ci runner'] }] } },
    'test',
  );
  // A label the rule does not name waits for an operator.
  const other = (await connect(gw, { token: enroll, role: 'node', capabilities: CAPS, label: 'laptop' })).conn;
  const waiting = await until(async () => (await pairings(admin, 'awaiting_human'))[0]);
  t.equal(waiting.state, 'awaiting_human');
  other.ws.close();
  // A local node the rule names is approved at once, with the rule's capabilities it advertised.
  const node = (await connect(gw, { token: enroll, role: 'node', capabilities: CAPS, label: 'ci runner' })).conn;
  const cred = await node.incoming('pairing.credential');
  t.match(cred.payload, { trust_level: 'local', node_name: 'ci-runner', capability_allowlist: [{ id: 'fs.read', version: '1' }] });
  node.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const approved = (await pairings(admin, 'approved'))[0]!;
  t.match(approved, { trust_level: 'local', resolved_by: { kind: 'policy', rule_id: 'ci-runners', snapshot_id: /^pol_/ }, capability_allowlist: [{ id: 'fs.read', read_only: true }] });
  t.ok(gw.store.audit.page(0, 1000).some((r) => r.type === 'pairing.auto_approved'), 'audited as approved by policy');
});
