import t from 'tap';
import { TyrumConnectionError, TyrumHandshakeError, type CloseInfo, type HandshakeResult } from '../../../sdk/index.js';
import { sleep, waitFor } from './fixtures/fake-gateway.js';
import { rejectionOf, setup } from './fixtures/helpers.js';

t.test('after the gateway terminates the socket the client reconnects with a fresh handshake', async (t) => {
  const { gw, client } = await setup(t);
  const connected: HandshakeResult[] = [];
  const closes: CloseInfo[] = [];
  client.on('connected', (r) => connected.push(r));
  client.on('close', (c) => closes.push(c));
  await client.connect();
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => connected.length === 2, 2000, 'reconnected');
  t.equal(gw.handshakes.length, 2);
  t.ok(gw.handshakes.every((h) => h.proofValid));
  t.not(gw.handshakes[0]!.connection_id, gw.handshakes[1]!.connection_id, 'the proof signs the new connection');
  t.match(closes, [{ code: 1006, willReconnect: true }]);
  t.ok(closes[0]!.error instanceof TyrumConnectionError);
  t.same(await client.request('ping'), { pong: true }, 'usable after reconnecting');
});

t.test('the client keeps retrying with backoff while the gateway is away and reconnects when it returns', async (t) => {
  let refuse = false;
  const { gw, client } = await setup(t, { refuseUpgrade: () => (refuse ? 503 : undefined) });
  const delays: number[] = [];
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  await client.connect();
  refuse = true;
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => delays.length >= 4, 2000, 'several retries');
  t.ok(delays.every((d) => d >= 0 && d <= 40), `delays within [0, maxMs]: ${delays.join(',')}`);
  refuse = false;
  await client.connect();
  t.ok(client.connected);
});

for (const code of [4005, 4006, 4007]) {
  t.test(`the client does not reconnect after the gateway closes the session with ${code}`, async (t) => {
    const { gw, client } = await setup(t);
    const closes: CloseInfo[] = [];
    client.on('close', (c) => closes.push(c));
    await client.connect();
    for (const ws of gw.sockets) ws.close(code, 'terminal');
    await waitFor(() => closes.length === 1);
    t.equal(closes[0]!.code, code);
    t.equal(closes[0]!.willReconnect, false);
    t.equal(closes[0]!.error?.terminal, true);
    await sleep(200); // with 10-40 ms backoff, several attempts would have happened by now
    t.equal(gw.upgrades.length, 1, 'no further upgrade attempts');
    t.notOk(client.connected);
  });

  t.test(`a reconnect attempt answered with close code ${code} during the handshake ends reconnection`, async (t) => {
    const { gw, client } = await setup(t, { closeAtProof: (attempt) => (attempt >= 2 ? code : undefined) });
    const closes: CloseInfo[] = [];
    client.on('close', (c) => closes.push(c));
    await client.connect();
    for (const ws of gw.sockets) ws.terminate();
    await waitFor(() => closes.length === 2, 2000, 'second close');
    t.equal(closes[1]!.willReconnect, false);
    const err = closes[1]!.error;
    t.ok(err instanceof TyrumHandshakeError);
    t.equal(err?.closeCode, code);
    t.equal(err?.terminal, true);
    await sleep(200);
    t.equal(gw.upgrades.length, 2);
  });
}

t.test('an unsupported protocol_rev is closed with 4005 and connect() rejects as terminal', async (t) => {
  const { gw, client } = await setup(t, {}, { protocolRev: 2 });
  const err = await rejectionOf(client.connect());
  t.ok(err instanceof TyrumHandshakeError);
  t.equal((err as TyrumHandshakeError).closeCode, 4005);
  t.equal((err as TyrumHandshakeError).terminal, true);
  t.match((err as Error).message, /unsupported protocol_rev/);
  await sleep(100);
  t.equal(gw.upgrades.length, 1);
});

t.test('a reconnect refused with HTTP 401 at the upgrade is terminal and reports the status', async (t) => {
  const { gw, client } = await setup(t, { refuseUpgrade: (attempt) => (attempt >= 2 ? 401 : undefined) });
  const closes: CloseInfo[] = [];
  let pending: Promise<unknown> | undefined;
  client.on('close', (c) => {
    closes.push(c);
    // A connect() issued while reconnecting settles with the outcome of the reconnection.
    if (closes.length === 1) pending = rejectionOf(client.connect());
  });
  await client.connect();
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => closes.length === 2, 2000, 'refused attempt');
  const err = closes[1]!.error;
  t.ok(err instanceof TyrumHandshakeError);
  t.equal(err?.httpStatus, 401);
  t.equal(err?.terminal, true);
  t.equal(closes[1]!.willReconnect, false);
  t.equal(await pending, err);
  await sleep(200);
  t.equal(gw.upgrades.length, 2, 'no attempt after the 401');
});

for (const status of [400, 401, 403]) {
  t.test(`a first connect refused with HTTP ${status} rejects with TyrumHandshakeError and makes no other attempt`, async (t) => {
    const { gw, client } = await setup(t, { refuseUpgrade: () => status });
    const err = await rejectionOf(client.connect());
    t.ok(err instanceof TyrumHandshakeError);
    t.equal((err as TyrumHandshakeError).httpStatus, status);
    t.match((err as Error).message, new RegExp(`HTTP ${status}`));
    await sleep(100);
    t.equal(gw.upgrades.length, 1);
  });
}

t.test('a wrong token is refused with 401 before any WebSocket frame', async (t) => {
  const { gw, client } = await setup(t, {}, { token: 'wrong-token' });
  const err = await rejectionOf(client.connect());
  t.equal((err as TyrumHandshakeError).httpStatus, 401);
  t.equal(gw.handshakes.length, 0);
});

t.test('with reconnect disabled an abnormal close is final', async (t) => {
  const { gw, client } = await setup(t, {}, { reconnect: false });
  const closes: CloseInfo[] = [];
  client.on('close', (c) => closes.push(c));
  await client.connect();
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => closes.length === 1);
  t.equal(closes[0]!.willReconnect, false);
  await sleep(100);
  t.equal(gw.upgrades.length, 1);
  await client.connect();
  t.ok(client.connected, 'the caller may connect again explicitly');
});

t.test('close() during a reconnect backoff stops further attempts', async (t) => {
  const { gw, client } = await setup(t, {}, { backoff: { initialMs: 150, maxMs: 150, jitter: 'none' } });
  await client.connect();
  const reconnecting: unknown[] = [];
  client.on('reconnecting', (r) => reconnecting.push(r));
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => reconnecting.length === 1);
  await client.close();
  await sleep(250);
  t.equal(gw.upgrades.length, 1);
});

t.test('events already seen before a reconnect are not emitted again after it', async (t) => {
  const { gw, client } = await setup(t);
  const seen: string[] = [];
  client.on('event', (e) => seen.push(e.event_id));
  await client.connect();
  const ev = { event_id: 'e-1', type: 'run.updated', occurred_at: new Date().toISOString(), payload: {} };
  gw.peers[0]!.send(ev);
  await client.request('ping');
  for (const ws of gw.sockets) ws.terminate();
  await waitFor(() => gw.peers.length === 2 && client.connected, 2000, 'reconnect');
  gw.peers[1]!.send(ev);
  gw.peers[1]!.send({ ...ev, event_id: 'e-2' });
  await client.request('ping');
  t.same(seen, ['e-1', 'e-2']);
});

t.test('a gateway that drops every session right after the handshake sees growing reconnect delays', async (t) => {
  const { gw, client } = await setup(t, {}, { backoff: { initialMs: 10, maxMs: 80, jitter: 'none' } });
  const delays: number[] = [];
  client.on('reconnecting', (r) => delays.push(r.delayMs));
  client.on('connected', () => {
    // Play a gateway that accepts and immediately closes with a non-terminal code.
    setImmediate(() => {
      for (const ws of gw.sockets) ws.close(4003, 'protocol violation');
    });
  });
  await client.connect();
  await waitFor(() => delays.length >= 5, 2000, 'five reconnects');
  t.same(delays.slice(0, 5), [10, 20, 40, 80, 80]);
});
