// Session: a node peer answers requests the gateway sends it; anything else that looks like an
// answer is refused; closing fails what is still pending.
import t from 'tap';
import { Session, MAX_STRAY_RESPONSES, type SessionHooks, type SessionLimits, type Transport, type Peer } from '../../../core/protocol/session.js';
import { InflightLimiter } from '../../../core/protocol/inflight.js';
import type { AuthenticatedToken } from '../../../core/auth/tokens.js';
import { newDevice, signTranscript } from '../../helpers/gateway.js';

const LIMITS: SessionLimits = { maxFrameBytes: 64 * 1024, maxJsonDepth: 16, maxJsonNodes: 2000, maxQueuedBytes: 1 << 20, handshakeTimeoutMs: 5000 };

class Mem implements Transport {
  readonly sent: Array<Record<string, unknown>> = [];
  readonly closes: Array<{ code: number; reason: string }> = [];
  send(text: string): void {
    this.sent.push(JSON.parse(text) as Record<string, unknown>);
  }
  close(code: number, reason: string): void {
    this.closes.push({ code, reason });
  }
  bufferedAmount(): number {
    return 0;
  }
}

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

// The session's request timers do not hold the process open (a gateway's sockets do); this does, here.
const keepAlive = setInterval(() => undefined, 1000);
t.teardown(() => clearInterval(keepAlive));

/** A session through its handshake as `role`; returns it with its transport and what the hooks saw. */
function handshaken(role: 'client' | 'node') {
  const transport = new Mem();
  const seen = { ready: 0, closed: 0, strays: [] as string[], peer: null as Peer | null };
  const hooks: SessionHooks = {
    handle: async () => ({}),
    audit() {},
    authFailed() {},
    emit() {},
    onDeviceSeen() {},
    log() {},
    onReady: (s) => {
      seen.ready += 1;
      seen.peer = s.peer;
    },
    onClosed: () => void (seen.closed += 1),
    strayResponse: (_p, id) => void seen.strays.push(id),
  };
  const token: AuthenticatedToken = { id: 'fedcba9876543210', label: 'n', scopes: [], roles: [role], expires_at: null, kind: role === 'node' ? 'node_enrollment' : 'access', device_id: null };
  const session = new Session(transport, token, '127.0.0.1', LIMITS, hooks, new InflightLimiter(4));
  const dev = newDevice();
  session.receive(enc({ request_id: 'i', type: 'connect.init', payload: { protocol_rev: 1, role, device: { device_id: dev.device_id, pubkey: dev.pubkey, label: 'box' }, capabilities: role === 'node' ? [{ id: 'fs.read', version: '1' }] : [] } }), false);
  const { connection_id, challenge } = transport.sent[0]!.result as { connection_id: string; challenge: string };
  session.receive(enc({ request_id: 'p', type: 'connect.proof', payload: { connection_id, proof: signTranscript(dev, { protocol_rev: 1, role, device_id: dev.device_id, connection_id, challenge }) } }), false);
  return { session, transport, seen, dev };
}

t.test('the handshake hands over the node peer with what it advertised', async (t) => {
  const { session, seen, dev } = handshaken('node');
  t.ok(session.isReady);
  t.equal(seen.ready, 1);
  t.match(seen.peer, { role: 'node', deviceId: dev.device_id, pubkey: dev.pubkey, device: { label: 'box' }, capabilities: [{ id: 'fs.read', version: '1' }] });
});

t.test('a request to a node resolves with its answer, ok or not', async (t) => {
  const { session, transport } = handshaken('node');
  const p = session.request('pairing.credential', { x: 1 }, { timeoutMs: 5000, requestId: 'r1' });
  t.match(transport.sent.at(-1), { request_id: 'r1', type: 'pairing.credential', payload: { x: 1 } });
  session.receive(enc({ request_id: 'r1', type: 'pairing.credential', ok: true, result: { stored: true } }), false);
  t.same(await p, { ok: true, result: { stored: true } });
  const q = session.request('task.execute', {}, { timeoutMs: 5000, requestId: 'r2' });
  session.receive(enc({ request_id: 'r2', type: 'task.execute', ok: false, error: { code: 'forbidden', message: 'not enabled here', details: { reason: 'not_enabled' } } }), false);
  t.same(await q, { ok: false, error: { code: 'forbidden', message: 'not enabled here', details: { reason: 'not_enabled' } } });
  await t.rejects(session.request('x', {}, { timeoutMs: 20 }), { code: 'TYRUM_ERR_TIMEOUT' }, 'no answer in time');
  t.equal(transport.closes.length, 0);
});

t.test('answers to requests never sent are reported, and too many close the connection 4003', async (t) => {
  const { session, transport, seen } = handshaken('node');
  const p = session.request('task.execute', {}, { timeoutMs: 5000, requestId: 'real' });
  session.receive(enc({ request_id: 'real', type: 'pairing.credential', ok: true, result: {} }), false);
  t.same(seen.strays, ['real'], 'an answer of another type is not taken for the pending request');
  for (let i = 1; i < MAX_STRAY_RESPONSES; i++) session.receive(enc({ request_id: `nope${i}`, type: 'task.execute', ok: true, result: {} }), false);
  t.equal(seen.strays.length, MAX_STRAY_RESPONSES);
  t.match(transport.closes, [{ code: 4003 }]);
  await t.rejects(p, { code: 'TYRUM_ERR_NODE_DISCONNECTED' }, 'closing fails what is pending');
  t.equal(seen.closed, 1);
});

t.test('a malformed answer is a protocol violation', async (t) => {
  const { transport } = handshaken('node');
  const s2 = handshaken('node');
  s2.session.receive(enc({ request_id: 'x', type: 'task.execute', ok: 'yes', result: {} }), false);
  t.match(s2.transport.closes, [{ code: 4003, reason: /malformed response envelope/ }]);
  t.same(transport.closes, []);
});

t.test('from a client an answer-shaped frame is a malformed request, and requests to it are refused', async (t) => {
  const { session, transport, seen } = handshaken('client');
  await t.rejects(session.request('task.execute', {}, { timeoutMs: 1000 }), { code: 'TYRUM_ERR_NODE_DISCONNECTED' });
  session.receive(enc({ request_id: 'a', type: 'ping', ok: true, result: {} }), false);
  t.match(transport.sent.at(-1), { request_id: 'a', ok: false, error: { code: 'invalid_request', message: 'malformed request envelope' } });
  t.same(seen.strays, [], 'never taken for an answer');
});

t.test('a socket that goes away fails pending requests', async (t) => {
  const { session, seen } = handshaken('node');
  const p = session.request('task.execute', {}, { timeoutMs: 5000 });
  session.closedByTransport();
  await t.rejects(p, { code: 'TYRUM_ERR_NODE_DISCONNECTED', message: /closed before it answered task\.execute/ });
  t.equal(seen.closed, 1);
  session.closedByTransport();
  t.equal(seen.closed, 1, 'once');
});
