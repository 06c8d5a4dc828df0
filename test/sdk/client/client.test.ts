import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import {
  TyrumClient,
  TyrumClientError,
  TyrumConnectionError,
  TyrumHandshakeError,
  TyrumProtocolError,
  TyrumRemoteError,
  TyrumTimeoutError,
  type EventFrame,
} from '../../../sdk/index.js';
import { expectedTranscript, sleep, waitFor, type Frame, type Peer } from './fixtures/fake-gateway.js';
import { rejectionOf, setup } from './fixtures/helpers.js';

t.test('connect completes the handshake and the gateway verifies the proof over the documented transcript', async (t) => {
  const { gw, client } = await setup(t, { scopes: ['operator.read', 'operator.write'] }, { device: { label: 'laptop', platform: 'linux' } });
  const result = await client.connect();
  t.same(result, { client_id: 'cli_1', device_id: client.identity.device_id, role: 'client', scopes: ['operator.read', 'operator.write'] });
  t.equal(gw.handshakes.length, 1);
  const hs = gw.handshakes[0]!;
  t.ok(hs.proofValid, 'Ed25519 proof verified by the gateway');
  t.equal(hs.device_id, client.identity.device_id, 'device_id recomputed from pubkey matches');
  t.equal(hs.transcript, expectedTranscript({ protocol_rev: 1, role: 'client', device_id: hs.device_id, connection_id: hs.connection_id, challenge: hs.challenge }));
  t.same(hs.init, {
    protocol_rev: 1,
    role: 'client',
    device: { device_id: client.identity.device_id, pubkey: client.identity.pubkey, label: 'laptop', platform: 'linux' },
    capabilities: [],
  });
  t.equal(client.connectionId, hs.connection_id);
  t.ok(client.connected);
  t.same(await client.request('ping'), { pong: true });
});

t.test('by default the token travels in the Authorization header and never in the URL', async (t) => {
  const { gw, client } = await setup(t);
  await client.connect();
  const up = gw.upgrades[0]!;
  t.equal(up.headers.authorization, 'Bearer secret-token');
  t.same(up.protocols, ['tyrum-v1']);
  t.equal(up.url, '/ws');
  t.notMatch(up.url, /secret/);
});

t.test('with authVia subprotocol the client offers tyrum-auth.<base64url(token)> and no header or URL token', async (t) => {
  const { gw, client } = await setup(t, { token: 'tok+/=?é' }, { token: 'tok-with_chars.123', authVia: 'subprotocol' });
  // The fake gateway's expected token differs, so first show the wrong token is refused...
  const err = await rejectionOf(client.connect());
  t.equal((err as TyrumConnectionError).httpStatus, 401);
  const up = gw.upgrades[0]!;
  t.same(up.protocols, ['tyrum-v1', 'tyrum-auth.' + Buffer.from('tok-with_chars.123').toString('base64url')]);
  t.equal(up.headers.authorization, undefined);
  t.notMatch(up.url, /tok/);
});

t.test('a subprotocol-authenticated client completes the handshake and sees only tyrum-v1 selected', async (t) => {
  const { gw, client } = await setup(t, {}, { authVia: 'subprotocol' });
  await client.connect();
  t.equal(gw.upgrades[0]!.headers.authorization, undefined);
  t.match(gw.upgrades[0]!.protocols[1], /^tyrum-auth\.[A-Za-z0-9_-]+$/);
  t.equal(gw.upgrades[0]!.url, '/ws');
  t.same(await client.request('ping'), { pong: true });
});

t.test('concurrent requests are correlated by request_id even when answered in reverse order', async (t) => {
  const held: Array<[Peer, Frame]> = [];
  const { client } = await setup(t, {
    onRequest: (peer, frame) => {
      held.push([peer, frame]);
      if (held.length === 5) {
        for (const [p, f] of held.reverse()) p.send({ request_id: f.request_id, type: f.type, ok: true, result: { n: f.payload?.n } });
      }
    },
  });
  await client.connect();
  const results = await Promise.all([0, 1, 2, 3, 4].map((n) => client.request('echo', { n })));
  t.same(results, [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
  const ids = held.map(([, f]) => f.request_id);
  t.equal(new Set(ids).size, 5, 'distinct request ids');
  for (const id of ids) t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'randomUUID');
});

t.test('a response with ok:false rejects with TyrumRemoteError carrying the wire code and details', async (t) => {
  const { client } = await setup(t);
  await client.connect();
  const err = await rejectionOf(client.request('fail', {}));
  t.ok(err instanceof TyrumRemoteError);
  t.notOk(err instanceof TyrumClientError, 'a wire error is not a local error');
  const e = err as TyrumRemoteError;
  t.equal(e.code, 'forbidden');
  t.equal(e.requestType, 'fail');
  t.same(e.details, { scope: 'operator.admin' });
  t.match(e.message, /needs operator\.admin/);
  t.ok(client.connected, 'a refused request leaves the connection up');
});

t.test('a request without a response rejects with the local TyrumTimeoutError and a late answer is ignored', async (t) => {
  let late: (() => void) | undefined;
  const { client } = await setup(t, {
    onRequest: (peer, f) => {
      late = () => peer.send({ request_id: f.request_id, type: f.type, ok: true, result: {} });
    },
  });
  await client.connect();
  const warnings: Error[] = [];
  client.on('warning', (w) => warnings.push(w));
  const started = Date.now();
  const err = await rejectionOf(client.request('never', {}, { timeoutMs: 100 }));
  t.ok(err instanceof TyrumTimeoutError);
  t.notOk(err instanceof TyrumRemoteError);
  t.equal((err as TyrumTimeoutError).code, 'TYRUM_ERR_TIMEOUT');
  t.ok(Date.now() - started >= 90 && Date.now() - started < 10_000, 'timed out after 100 ms (the upper bound is a hang guard)');
  late?.();
  await waitFor(() => warnings.length > 0, 1000, 'warning');
  t.match(warnings[0]!.message, /unknown request_id/);
  t.ok(client.connected);
});

t.test('pending requests reject with TyrumConnectionError when the socket closes', async (t) => {
  const { gw, client } = await setup(t, {}, { reconnect: false });
  await client.connect();
  const p = rejectionOf(client.request('never'));
  await waitFor(() => gw.sockets.size === 1);
  for (const ws of gw.sockets) ws.close(1011, 'bye');
  const err = await p;
  t.ok(err instanceof TyrumConnectionError);
  t.equal((err as TyrumConnectionError).closeCode, 1011);
  const again = await rejectionOf(client.request('ping'));
  t.ok(again instanceof TyrumConnectionError, 'requests while disconnected fail fast');
});

t.test('events are emitted once per event_id even when the gateway redelivers them', async (t) => {
  const { gw, client } = await setup(t);
  await client.connect();
  const seen: EventFrame[] = [];
  client.on('event', (e) => seen.push(e));
  const peer = gw.peers[0]!;
  const ev = (id: string): object => ({ event_id: id, type: 'run.updated', occurred_at: new Date().toISOString(), payload: { id } });
  for (const id of ['e1', 'e2', 'e1', 'e3', 'e2', 'e1']) peer.send(ev(id));
  // Frames arrive in order, so once the ping is answered every event has been processed.
  await client.request('ping');
  t.same(
    seen.map((e) => e.event_id),
    ['e1', 'e2', 'e3'],
  );
  t.same(seen[0]!.payload, { id: 'e1' });
});

t.test('the event dedupe memory is bounded and forgets the oldest ids first', async (t) => {
  const { gw, client } = await setup(t, {}, { eventDedupeSize: 2 });
  await client.connect();
  const seen: string[] = [];
  client.on('event', (e) => seen.push(e.event_id));
  const peer = gw.peers[0]!;
  for (const id of ['a', 'b', 'c', 'a']) peer.send({ event_id: id, type: 't', occurred_at: new Date().toISOString(), payload: {} });
  await client.request('ping');
  t.same(seen, ['a', 'b', 'c', 'a'], '"a" fell out of a 2-entry window and is delivered again');
});

t.test('malformed frames are flagged as warnings and do not break the connection', async (t) => {
  const { gw, client } = await setup(t);
  await client.connect();
  const warnings: TyrumProtocolError[] = [];
  client.on('warning', (w) => warnings.push(w));
  const events: string[] = [];
  client.on('event', (e) => events.push(e.event_id));
  const ws = gw.peers[0]!.ws;
  ws.send('not json');
  ws.send('[1,2]');
  ws.send(JSON.stringify({ event_id: 'e', type: 't', occurred_at: 'soon', payload: {} }));
  ws.send(JSON.stringify({ request_id: 'nope', type: 'ping', ok: true, result: {}, extra: true }));
  ws.send(Buffer.from([1, 2, 3]), { binary: true });
  await waitFor(() => warnings.length === 5, 1000, 'five warnings');
  t.ok(warnings.every((w) => w instanceof TyrumProtocolError && w.code === 'TYRUM_ERR_PROTOCOL'));
  t.same(events, []);
  t.same(await client.request('ping'), { pong: true }, 'still usable');
});

t.test('a response whose type differs from its request rejects with TyrumProtocolError', async (t) => {
  const { client } = await setup(t, {
    onRequest: (peer, f) => peer.send({ request_id: f.request_id, type: 'other', ok: true, result: {} }),
  });
  await client.connect();
  const err = await rejectionOf(client.request('ping'));
  t.ok(err instanceof TyrumProtocolError);
});

t.test('a node answers a gateway-initiated task.execute with the response envelope', async (t) => {
  const { gw, client } = await setup(t, {}, { role: 'node', capabilities: [{ id: 'shell.exec', version: '1.0.0' }] });
  let runs = 0;
  client.on('request', (req, respond) => {
    runs++;
    t.equal(req.type, 'task.execute');
    if (req.payload.fail) respond({ ok: false, error: { code: 'sandbox_error', message: 'boom', details: { exit: 2 } } });
    else respond({ ok: true, result: { output: `ran ${String(req.payload.cmd)}` } });
  });
  const result = await client.connect();
  t.equal(result.role, 'node');
  t.same(gw.handshakes[0]!.init.capabilities, [{ id: 'shell.exec', version: '1.0.0' }]);
  const peer = gw.peers[0]!;
  peer.send({ request_id: 'g-1', type: 'task.execute', payload: { cmd: 'ls' } });
  peer.send({ request_id: 'g-2', type: 'task.execute', payload: { fail: true } });
  await waitFor(() => peer.responses.length === 2);
  t.same(peer.responses[0], { request_id: 'g-1', type: 'task.execute', ok: true, result: { output: 'ran ls' } });
  t.same(peer.responses[1], { request_id: 'g-2', type: 'task.execute', ok: false, error: { code: 'sandbox_error', message: 'boom', details: { exit: 2 } } });
  // The gateway may resend a request; the node answers from memory without running it again.
  peer.send({ request_id: 'g-1', type: 'task.execute', payload: { cmd: 'ls' } });
  await waitFor(() => peer.responses.length === 3);
  t.same(peer.responses[2], peer.responses[0]);
  t.equal(runs, 2);
});

t.test('respond() refuses a malformed or oversized outcome and a second answer', async (t) => {
  const { gw, client } = await setup(t, {}, { role: 'node' });
  const errors: string[] = [];
  client.on('request', (_req, respond) => {
    try {
      respond({ ok: true, result: [] as unknown as Record<string, unknown> });
    } catch (e) {
      errors.push((e as Error).message);
    }
    try {
      respond({ ok: true, result: { big: 'x'.repeat(2 * 1024 * 1024) } });
    } catch (e) {
      errors.push((e as Error).message);
    }
    respond({ ok: true, result: {} });
    try {
      respond({ ok: true, result: {} });
    } catch (e) {
      errors.push((e as Error).message);
    }
  });
  await client.connect();
  gw.peers[0]!.send({ request_id: 'g', type: 'task.execute', payload: {} });
  await waitFor(() => gw.peers[0]!.responses.length === 1);
  t.equal(errors.length, 3);
  t.match(errors[0], /result must be a JSON object/);
  t.match(errors[1], /exceeds 1048576 bytes/);
  t.match(errors[2], /already called/);
  await sleep(20);
  t.equal(gw.peers[0]!.responses.length, 1, 'exactly one response on the wire');
});

t.test('a client without a request handler answers gateway requests with unsupported_request', async (t) => {
  const { gw, client } = await setup(t);
  await client.connect();
  gw.peers[0]!.send({ request_id: 'g', type: 'task.execute', payload: {} });
  await waitFor(() => gw.peers[0]!.responses.length === 1);
  t.match(gw.peers[0]!.responses[0], { request_id: 'g', type: 'task.execute', ok: false, error: { code: 'unsupported_request' } });
});

t.test('close() rejects pending requests, closes the socket and makes the client unusable', async (t) => {
  const { gw, client } = await setup(t);
  await client.connect();
  const closes: unknown[] = [];
  client.on('close', (c) => closes.push(c));
  const p = rejectionOf(client.request('never'));
  await client.close();
  const err = await p;
  t.ok(err instanceof TyrumConnectionError);
  await waitFor(() => gw.sockets.size === 0, 1000, 'gateway socket closed');
  t.match(closes, [{ code: 1000, willReconnect: false }]);
  t.ok(await rejectionOf(client.connect()) instanceof TyrumConnectionError);
  await client.close(); // idempotent
});

t.test('connect() to a port where nothing listens rejects with TyrumConnectionError and does not retry', async (t) => {
  const { gw } = await setup(t);
  const url = gw.url;
  await gw.close();
  const client = new TyrumClient({ url, token: 't', deviceKey: generateKeyPairSync('ed25519').privateKey });
  t.teardown(() => client.close());
  const reconnecting: unknown[] = [];
  client.on('reconnecting', (r) => reconnecting.push(r));
  const err = await rejectionOf(client.connect());
  t.ok(err instanceof TyrumConnectionError);
  t.match((err as Error).message, /ECONNREFUSED/);
  await sleep(50);
  t.same(reconnecting, []);
});

t.test('invalid options are refused up front, including ws:// to a non-loopback host', async (t) => {
  const deviceKey = generateKeyPairSync('ed25519').privateKey;
  t.throws(() => new TyrumClient({ url: 'ws://gateway.example.com/ws', token: 't', deviceKey }), /non-loopback/);
  t.doesNotThrow(() => new TyrumClient({ url: 'ws://gateway.example.com/ws', token: 't', deviceKey, allowInsecureTransport: true }));
  t.doesNotThrow(() => new TyrumClient({ url: 'wss://gateway.example.com/ws', token: 't', deviceKey }));
  t.doesNotThrow(() => new TyrumClient({ url: 'ws://[::1]:8788/ws', token: 't', deviceKey }));
  t.throws(() => new TyrumClient({ url: 'http://127.0.0.1/ws', token: 't', deviceKey }), /ws: or wss:/);
  t.throws(() => new TyrumClient({ url: 'ws://u:p@127.0.0.1/ws', token: 't', deviceKey }), /credentials/);
  t.throws(() => new TyrumClient({ token: '', deviceKey }), /token/);
  t.throws(() => new TyrumClient({ token: 'a\r\nX-Evil: 1', deviceKey }), /token/);
  t.throws(() => new TyrumClient({ token: 't', deviceKey: generateKeyPairSync('ed25519').publicKey }), /private/);
  t.throws(() => new TyrumClient({ token: 't', deviceKey, capabilities: [{ id: 'x', version: '1' }] }), /only nodes/);
});

t.test('request() validates its arguments and refuses to send handshake types', async (t) => {
  const { client } = await setup(t);
  await client.connect();
  t.ok((await rejectionOf(client.request('connect.init'))) instanceof TypeError);
  t.ok((await rejectionOf(client.request('ping', [] as unknown as Record<string, unknown>))) instanceof TypeError);
  t.ok((await rejectionOf(client.request('echo', { big: 'x'.repeat(2 * 1024 * 1024) }))) instanceof RangeError, 'oversized frame is refused locally');
  t.ok(client.connected, 'and the connection survives');
  const ac = new AbortController();
  const p = client.request('never', {}, { signal: ac.signal });
  ac.abort(new Error('user gave up'));
  t.match(await rejectionOf(p), { message: 'user gave up' });
});

t.test('a gateway that never answers the handshake makes connect() reject after handshakeTimeoutMs', async (t) => {
  const { gw, client } = await setup(t, { stallHandshake: true }, { handshakeTimeoutMs: 200 });
  const started = Date.now();
  const err = await rejectionOf(client.connect());
  t.ok(err instanceof TyrumHandshakeError);
  t.match((err as Error).message, /within 200 ms/);
  t.equal((err as TyrumHandshakeError).terminal, false, 'a slow gateway may recover');
  t.ok(Date.now() - started < 10_000, 'a hang guard');
  await waitFor(() => gw.sockets.size === 0, 1000, 'socket dropped');
});

t.test('a gateway that echoes the tyrum-auth subprotocol is refused so the token is not reflected', async (t) => {
  const { gw, client } = await setup(t, { selectProtocol: (p) => [...p].find((x) => x.startsWith('tyrum-auth.')) ?? false }, { authVia: 'subprotocol' });
  const err = await rejectionOf(client.connect());
  t.ok(err instanceof TyrumHandshakeError);
  t.equal((err as TyrumHandshakeError).terminal, true);
  t.match((err as Error).message, /expected tyrum-v1/);
  t.notMatch((err as Error).message, /tyrum-auth\.[A-Za-z0-9_-]{8}/, 'the error does not print the token either');
  t.equal(gw.handshakes.length, 0, 'no connect.init was sent');
});

t.test('a malformed connect.init result is not signed', async (t) => {
  const bad: Array<(r: { connection_id: string; challenge: string }) => Record<string, unknown>> = [
    (r) => ({ ...r, challenge: r.challenge + '\nrole=node' }),
    (r) => ({ ...r, challenge: Buffer.alloc(16).toString('base64url') }),
    (r) => ({ ...r, connection_id: 'not-a-uuid' }),
    (r) => ({ connection_id: r.connection_id }),
  ];
  for (const initResult of bad) {
    const { gw, client } = await setup(t, { initResult });
    const err = await rejectionOf(client.connect());
    t.ok(err instanceof TyrumHandshakeError);
    t.match((err as Error).message, /connect\.init result/);
    t.equal(gw.handshakes.length, 0, 'no proof reached the gateway');
  }
});

t.test('a dead link that stops answering pings is detected by the heartbeat and reconnected', async (t) => {
  const { gw, client } = await setup(t, { autoPong: false }, { heartbeatMs: 50 });
  const closes: unknown[] = [];
  client.on('close', (c) => closes.push(c));
  await client.connect();
  await waitFor(() => closes.length >= 1 && gw.upgrades.length >= 2, 2000, 'heartbeat reconnect');
  t.match(closes[0], { code: 1006, willReconnect: true });
});

t.test('a node whose handler never answers stays bounded: beyond 1024 open requests it answers rate_limited', async (t) => {
  const { gw, client } = await setup(t, {}, { role: 'node' });
  let received = 0;
  client.on('request', () => {
    received++; // never responds
  });
  await client.connect();
  const peer = gw.peers[0]!;
  for (let i = 0; i < 1030; i++) peer.send({ request_id: `g-${i}`, type: 'task.execute', payload: {} });
  await waitFor(() => peer.responses.length === 6, 2000, 'six refusals');
  t.equal(received, 1024);
  t.ok(peer.responses.every((r) => r.ok === false && r.error?.code === 'rate_limited'));
});
