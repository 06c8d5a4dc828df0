import t from 'tap';
import { startTestGateway, removeHome, open, connect, newDevice, signTranscript, RawConn } from '../../helpers/gateway.js';

async function raw(gw: { port: number }, opts: Parameters<typeof open>[1] = {}): Promise<RawConn> {
  const c = await open(gw, opts);
  if (!(c instanceof RawConn)) throw new Error(`upgrade refused: ${c.status}`);
  return c;
}

function initPayload(dev = newDevice(), over: Record<string, unknown> = {}) {
  return { protocol_rev: 1, role: 'client', device: { device_id: dev.device_id, pubkey: dev.pubkey }, capabilities: [], ...over };
}

t.test('handshake close codes (PROTOCOL.md)', async (t) => {
  const gw = await startTestGateway({ config: { limits: { handshake_timeout_ms: 400 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });

  t.test('a client written from PROTOCOL.md completes the handshake and pings', async (t) => {
    const { conn, hello, device } = await connect(gw);
    t.equal(hello.device_id, device.device_id);
    t.equal(hello.role, 'client');
    t.same(hello.scopes, ['operator.read', 'operator.write', 'operator.approvals', 'operator.pairing', 'operator.admin', 'operator.metrics']);
    t.match(hello.client_id, /^[0-9a-f-]{36}$/);
    // Written off the handshake path, within PRESENCE_FLUSH_MS (core/gateway/presence.ts).
    for (const deadline = Date.now() + 10_000; gw.store.devices.get(device.device_id) === undefined && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    t.match(gw.store.devices.get(device.device_id), { role: 'client', pubkey: device.pubkey }, 'the device is recorded');
    const pong = await conn.request('ping');
    t.equal(pong.ok, true);
    t.equal((pong.result as { pong: boolean }).pong, true);
    conn.ws.close();
  });

  t.test('no handshake within the deadline closes 4002', async (t) => {
    const c = await raw(gw);
    const closed = await c.closeCode(3000);
    t.equal(closed.code, 4002);
  });

  t.test('a request before the handshake closes 4003', async (t) => {
    const c = await raw(gw);
    const r = await c.request('ping');
    t.notOk(r.ok, 'no response to the early request');
    t.equal((await c.closeCode()).code, 4003);
  });

  t.test('bad JSON as the first frame closes 4003', async (t) => {
    const c = await raw(gw);
    c.send('{"request_id":');
    t.equal((await c.closeCode()).code, 4003);
  });

  t.test('a binary frame closes 4003', async (t) => {
    const c = await raw(gw);
    c.ws.send(Buffer.from(JSON.stringify({ request_id: 'a', type: 'connect.init', payload: initPayload() })), { binary: true });
    t.equal((await c.closeCode()).code, 4003);
  });

  t.test('connect.proof before connect.init closes 4003', async (t) => {
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.proof', payload: { connection_id: '00000000-0000-4000-8000-000000000000', proof: 'A'.repeat(86) } });
    t.equal((await c.closeCode()).code, 4003);
  });

  t.test('an invalid connect.init payload answers invalid_request, then closes 4003', async (t) => {
    const c = await raw(gw);
    const r = await c.request('connect.init', { ...initPayload(), role: 'superuser' });
    t.equal(r.ok, false);
    t.equal((r.error as { code: string }).code, 'invalid_request');
    t.ok(((r.error as { details: { issues: unknown[] } }).details.issues).length > 0);
    t.equal((await c.closeCode()).code, 4003);
  });

  t.test('an unsupported protocol_rev closes 4005', async (t) => {
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.init', payload: initPayload(newDevice(), { protocol_rev: 2 }) });
    const closed = await c.closeCode();
    t.equal(closed.code, 4005);
    t.match(closed.reason, /protocol_rev/);
  });

  t.test('a device_id that does not match the pubkey closes 4006', async (t) => {
    const a = newDevice();
    const b = newDevice();
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.init', payload: { ...initPayload(a), device: { device_id: b.device_id, pubkey: a.pubkey } } });
    t.equal((await c.closeCode()).code, 4006);
  });

  t.test('a pubkey that is not Ed25519 DER SPKI closes 4006', async (t) => {
    const a = newDevice();
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.init', payload: { ...initPayload(a), device: { device_id: a.device_id, pubkey: Buffer.from('not a key at all, really').toString('base64url') } } });
    t.equal((await c.closeCode()).code, 4006);
  });

  t.test('a wrong proof closes 4007', async (t) => {
    const dev = newDevice();
    const c = await raw(gw);
    const init = await c.request('connect.init', initPayload(dev));
    const { connection_id, challenge } = init.result as { connection_id: string; challenge: string };
    // Signed by a different key.
    const proof = signTranscript(newDevice(), { protocol_rev: 1, role: 'client', device_id: dev.device_id, connection_id, challenge });
    c.send({ request_id: 'p', type: 'connect.proof', payload: { connection_id, proof } });
    t.equal((await c.closeCode()).code, 4007);
  });

  t.test('a proof replayed on a new connection closes 4007 (F3)', async (t) => {
    const dev = newDevice();
    const first = await raw(gw);
    const init = await first.request('connect.init', initPayload(dev));
    const { connection_id, challenge } = init.result as { connection_id: string; challenge: string };
    const proof = signTranscript(dev, { protocol_rev: 1, role: 'client', device_id: dev.device_id, connection_id, challenge });
    const ok = await first.request('connect.proof', { connection_id, proof });
    t.equal(ok.ok, true, 'the original proof works once');

    // Replay the captured proof (and its connection_id) on a fresh connection.
    const second = await raw(gw);
    await second.request('connect.init', initPayload(dev));
    second.send({ request_id: 'p', type: 'connect.proof', payload: { connection_id, proof } });
    t.equal((await second.closeCode()).code, 4007);

    // A proof over another connection's challenge, sent with this connection's id.
    const third = await raw(gw);
    const init3 = await third.request('connect.init', initPayload(dev));
    const { connection_id: cid3 } = init3.result as { connection_id: string };
    third.send({ request_id: 'p', type: 'connect.proof', payload: { connection_id: cid3, proof } });
    t.equal((await third.closeCode()).code, 4007);
    first.ws.close();
  });

  t.test('a token not valid for the node role closes 4001', async (t) => {
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.init', payload: initPayload(newDevice(), { role: 'node' }) });
    t.equal((await c.closeCode()).code, 4001);
  });

  t.test('a node token works only on the device it is bound to; on any other key it closes 4001', async (t) => {
    const bound = newDevice();
    const { token } = await gw.tokens.create({ kind: 'node', roles: ['node'], scopes: [], deviceId: bound.device_id, createdBy: 'test' });
    const other = await raw(gw, { token });
    other.send({ request_id: 'a', type: 'connect.init', payload: initPayload(newDevice(), { role: 'node' }) });
    t.same(await other.closeCode(), { code: 4001, reason: 'token is bound to another device' });
    const { conn, hello } = await connect(gw, { token, device: bound, role: 'node' });
    t.match(hello, { device_id: bound.device_id, role: 'node', scopes: [] }, 'the device it was issued to connects');
    conn.ws.close();
  });

  t.test('scopes a client claims are ignored: only the token record counts (F4)', async (t) => {
    const { token } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    const dev = newDevice();
    const c = await raw(gw, { token });
    // Strict schema: a claimed scopes field is refused outright, never honoured.
    const claimed = await c.request('connect.init', { ...initPayload(dev), scopes: ['operator.admin'] });
    t.equal(claimed.ok, false);
    t.equal((claimed.error as { code: string }).code, 'invalid_request');
    t.equal((await c.closeCode()).code, 4003);
    // Claims smuggled into free-text fields change nothing either.
    const { conn, hello } = await connect(gw, { token, device: dev });
    t.same(hello.scopes, ['operator.read']);
    const denied = await conn.request('token.list');
    t.equal((denied.error as { code: string }).code, 'forbidden');
    conn.ws.close();
  });

  t.test('a second connect.init after the handshake is invalid_state, not a new identity', async (t) => {
    const { conn } = await connect(gw);
    const r = await conn.request('connect.init', initPayload());
    t.equal((r.error as { code: string }).code, 'invalid_state');
    t.equal((await conn.request('ping')).ok, true, 'the connection still works');
    conn.ws.close();
  });
});

t.test('failed handshakes are audited at most auth_failure_audit_per_minute times per address; the rest are counted', async (t) => {
  const gw = await startTestGateway({ config: { limits: { auth_failure_audit_per_minute: 2 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  for (let i = 0; i < 5; i++) {
    const a = newDevice();
    const c = await raw(gw);
    c.send({ request_id: 'a', type: 'connect.init', payload: { ...initPayload(a), device: { device_id: newDevice().device_id, pubkey: a.pubkey } } });
    t.equal((await c.closeCode()).code, 4006);
  }
  await gw.audit.flush();
  const { listAudit } = await import('../../../core/audit/index.js');
  const failed = listAudit(gw.store, { type: 'auth.failed' });
  t.equal(failed.length, 2, 'two audited, three suppressed');
  t.same(failed.map((e) => e.data.close_code), [4006, 4006]);
  t.equal((await connect(gw)).hello.role, 'client', 'a good client still connects');
});
