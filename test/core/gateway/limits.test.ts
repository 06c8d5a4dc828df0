/**
 * Hostile input and limits against a real gateway on port 0 (TESTPLAN E1, E2, E4, I1, I3).
 * Every fault test also shows progress: after the fault, something still works.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestGateway, removeHome, open, connect, newDevice, RawConn, type TestGateway } from '../../helpers/gateway.js';

async function gateway(t: Test, config?: Record<string, unknown>): Promise<TestGateway> {
  const gw = await startTestGateway(config ? { config } : {});
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  return gw;
}

/** Opens a WebSocket (no handshake) and closes it when the test ends. */
async function raw(t: Test, gw: TestGateway): Promise<RawConn> {
  const c = await open(gw);
  if (!(c instanceof RawConn)) throw new Error(`upgrade refused: ${c.status} ${c.body}`);
  t.teardown(() => c.ws.terminate());
  return c;
}

/** Opens a WebSocket and completes the handshake; closed when the test ends. */
async function ready(t: Test, gw: TestGateway): Promise<RawConn> {
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.terminate());
  return conn;
}

async function pingWorks(t: Test, conn: RawConn, what: string): Promise<void> {
  const res = await conn.request('ping', {}, 3000);
  t.match(res, { ok: true, type: 'ping', result: { pong: true } }, what);
}

/** A fresh connection can still handshake and ping: the gateway is alive and serving. */
async function freshPingWorks(t: Test, gw: TestGateway, what = 'a fresh connection handshakes and pings'): Promise<void> {
  const c = await ready(t, gw);
  await pingWorks(t, c, what);
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: string) => (data += d));
    s.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0), body: data.slice(data.indexOf('\r\n\r\n') + 4) }));
    s.on('error', reject);
    s.setTimeout(3000, () => {
      s.destroy();
      reject(new Error(`GET ${path} timed out`));
    });
  });
}

// ---- E1 ---------------------------------------------------------------------------------------

t.test('E1: a frame over max_frame_bytes closes 1009; the gateway keeps serving and its heap does not balloon', async (t) => {
  const limit = 65536;
  const gw = await gateway(t, { limits: { max_frame_bytes: limit } });
  const bystander = await ready(t, gw);

  // A frame of exactly the limit is still served (JSON whitespace pads it).
  const exact = '{"request_id":"edge","type":"ping","payload":{}}';
  bystander.send(exact + ' '.repeat(limit - Buffer.byteLength(exact)));
  t.match(await bystander.response('edge', 3000), { ok: true, result: { pong: true } }, 'a frame of exactly max_frame_bytes is served');

  const over = await ready(t, gw);
  over.send('{"request_id":"big","type":"ping","payload":{"pad":"' + 'x'.repeat(limit) + '"}}');
  t.equal((await over.closeCode(3000)).code, 1009, 'a frame over the limit closes 1009');
  t.notOk(over.frames.some((f) => f.request_id === 'big'), 'the oversized request is never answered');

  // Many 1 MiB frames on unhandshaken sockets: each is refused from its header, never buffered.
  const heapBefore = process.memoryUsage().heapUsed;
  const big = Buffer.alloc(1024 * 1024, 0x20);
  for (let i = 0; i < 20; i++) {
    const c = await raw(t, gw);
    c.ws.send(big);
    t.equal((await c.closeCode(3000)).code, 1009, `1 MiB frame ${i + 1} closes 1009`);
  }
  const growth = process.memoryUsage().heapUsed - heapBefore;
  t.ok(growth < 64 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024)} KiB for 20 MiB of refused frames (rough bound 64 MiB)`);

  await pingWorks(t, bystander, 'a connection that sent nothing wrong is unaffected');
  await freshPingWorks(t, gw);
});

// ---- E2 ---------------------------------------------------------------------------------------

/** Hostile frames that must each close the connection with 4003, before or after the handshake. */
const HOSTILE: Array<[string, (c: RawConn) => void]> = [
  ['invalid UTF-8 in a text frame (0xff 0xfe)', (c) => c.ws.send(Buffer.from([0xff, 0xfe]), { binary: false })],
  ['an overlong UTF-8 encoding inside a string', (c) => c.ws.send(Buffer.concat([Buffer.from('{"request_id":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('","type":"ping","payload":{}}')]), { binary: false })],
  ['a CESU-8 lone surrogate inside a string', (c) => c.ws.send(Buffer.concat([Buffer.from('{"request_id":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('","type":"ping","payload":{}}')]), { binary: false })],
  ['bad JSON', (c) => c.send('{"request_id":"x","type":"ping","payload":{}')],
  ['a binary frame (even of valid JSON)', (c) => c.ws.send(Buffer.from('{"request_id":"x","type":"ping","payload":{}}'), { binary: true })],
  ['nesting 100 deep (default limit 64)', (c) => c.send(`{"request_id":"x","type":"ping","payload":{"a":${'['.repeat(100)}${']'.repeat(100)}}}`)],
  ['a 10,000-deep array', (c) => c.send('['.repeat(10_000) + ']'.repeat(10_000))],
  [
    'an object with 100,000 keys (default limit 100,000 values)',
    (c) => c.send(`{"request_id":"x","type":"ping","payload":{${Array.from({ length: 100_000 }, (_, i) => `"${i.toString(36)}":0`).join(',')}}}`),
  ],
  ['a __proto__ key in the payload', (c) => c.send('{"request_id":"x","type":"audit.list","payload":{"__proto__":{"polluted":true}}}')],
  ['a constructor key nested in the payload', (c) => c.send('{"request_id":"x","type":"audit.list","payload":{"a":[{"constructor":{"prototype":{"polluted":true}}}]}}')],
  ['a JSON array instead of an envelope', (c) => c.send('[1,2,3]')],
  ['an envelope without a request_id', (c) => c.send('{"type":"ping","payload":{}}')],
  // The close reason quotes the unknown key: it must be cut to 123 bytes, not 123 characters.
  ['a 100-character non-ASCII unknown key and no request_id', (c) => c.send(`{"type":"ping","payload":{},"${'é'.repeat(100)}":1}`)],
  ['an empty request_id on a malformed envelope', (c) => c.send('{"request_id":"","type":"ping","payload":{},"x":1}')],
];

t.test('E2: hostile frames close 4003 before the handshake and after it, with no crash and no prototype pollution', async (t) => {
  const gw = await gateway(t);
  const bystander = await ready(t, gw);
  for (const [name, sendIt] of HOSTILE) {
    const pre = await raw(t, gw);
    sendIt(pre);
    t.equal((await pre.closeCode(3000)).code, 4003, `before the handshake: ${name}`);
    t.same(pre.frames, [], `before the handshake: ${name} gets no response`);

    const post = await ready(t, gw);
    const answered = post.frames.length;
    sendIt(post);
    t.equal((await post.closeCode(3000)).code, 4003, `after the handshake: ${name}`);
    t.equal(post.frames.length, answered, `after the handshake: ${name} gets no response`);
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype was not polluted');
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
  await pingWorks(t, bystander, 'a bystander connection is unaffected by all of it');
  await freshPingWorks(t, gw);
});

t.test('E2: a non-handshake request before the handshake closes 4003', async (t) => {
  const gw = await gateway(t);
  for (const type of ['ping', 'audit.list', 'token.create', 'no.such.op', 'connect.proof']) {
    const c = await raw(t, gw);
    c.send({ request_id: 'early', type, payload: {} });
    t.equal((await c.closeCode(3000)).code, 4003, type);
    t.notOk(c.frames.some((f) => f.ok === true), `${type}: no ok:true response`);
  }
  await freshPingWorks(t, gw);
});

t.test('E2: wrong field types in a known op get invalid_request naming the path, and the connection stays usable', async (t) => {
  const gw = await gateway(t);
  const c = await ready(t, gw);
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ limit: 'x' }, '/limit', /integer/],
    [{ limit: 1.5 }, '/limit', /integer/],
    [{ limit: 1001 }, '/limit', /1000/],
    [{ after_seq: -1 }, '/after_seq', /0/],
    [{ type: 5 }, '/type', /string/],
    [{ limit: null }, '/limit', /integer/],
    [{ nope: true }, '/', /unknown key "nope"/],
  ];
  for (const [payload, path, message] of cases) {
    const res = await c.request('audit.list', payload, 3000);
    t.match(res, { ok: false, type: 'audit.list', error: { code: 'invalid_request', details: { issues: [{ path, message }] } } }, `audit.list ${JSON.stringify(payload)}`);
  }
  const tok = await c.request('token.revoke', { token_id: 42 }, 3000);
  t.match(tok, { ok: false, error: { code: 'invalid_request', details: { issues: [{ path: '/token_id' }] } } }, 'token.revoke with a numeric token_id');
  // A malformed envelope that still carries a usable request_id is answered rather than dropped.
  c.send({ request_id: 'env', type: 'ping', payload: [] });
  t.match(await c.response('env', 3000), { ok: false, error: { code: 'invalid_request', details: { issues: [{ path: '/payload' }] } } }, 'an array payload');
  c.send({ request_id: 'extra', type: 'ping', payload: {}, admin: true });
  t.match(await c.response('extra', 3000), { ok: false, error: { code: 'invalid_request', details: { issues: [{ message: /unknown key "admin"/ }] } } }, 'an unknown envelope key');

  const listed = await c.request('audit.list', { limit: 1 }, 3000);
  t.match(listed, { ok: true, result: { entries: [{ seq: 1 }] } }, 'a valid audit.list still works on the same connection');
  t.equal(c.closed, null, 'the connection was never closed');
});

t.test('E2: an unknown request type gets unsupported_request and the connection stays usable', async (t) => {
  const gw = await gateway(t);
  const c = await ready(t, gw);
  for (const type of ['no.such.op', 'task.execute', 'x']) {
    t.match(await c.request(type, {}, 3000), { ok: false, type, error: { code: 'unsupported_request' } }, type);
  }
  t.match(await c.request('Not A Type!', {}, 3000), { ok: false, error: { code: 'invalid_request', details: { issues: [{ path: '/type' }] } } }, 'a type outside the type grammar is a malformed envelope');
  await pingWorks(t, c, 'ping still works on the same connection');
});

// ---- E4 ---------------------------------------------------------------------------------------

t.test('E4: connections that never finish the handshake are closed 4002 by the deadline; a handshaken one keeps working', async (t) => {
  const gw = await gateway(t, { limits: { handshake_timeout_ms: 300 } });
  const good = await ready(t, gw);
  const started = Date.now();
  const silent = await raw(t, gw);
  const halfway = await raw(t, gw);
  const dev = newDevice();
  const init = await halfway.request('connect.init', { protocol_rev: 1, role: 'client', device: { device_id: dev.device_id, pubkey: dev.pubkey }, capabilities: [] }, 3000);
  t.equal(init.ok, true, 'connect.init succeeded; connect.proof is never sent');

  const [a, b] = await Promise.all([silent.closeCode(5000), halfway.closeCode(5000)]);
  const elapsed = Date.now() - started;
  t.equal(a.code, 4002, 'a connection that sends nothing is closed 4002');
  t.equal(b.code, 4002, 'a connection that stops after connect.init is closed 4002');
  t.ok(elapsed >= 250 && elapsed < 5000, `closed after ${elapsed} ms (deadline 300 ms)`);

  await sleep(200);
  await pingWorks(t, good, 'the handshaken connection, older than the deadline, still works');
  t.equal(good.closed, null);
  await freshPingWorks(t, gw);
});

t.test('E4: slow-header HTTP clients do not stop /healthz or WebSocket clients from being served', async (t) => {
  const gw = await gateway(t, { limits: { http_headers_timeout_ms: 500 } });
  t.equal(gw.server.app.server.headersTimeout, 500, 'http_headers_timeout_ms reaches the HTTP server');

  // Three clients trickle a request line and headers, one header every 100 ms, never finishing.
  const slow: net.Socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  for (const first of ['GET /healthz HTTP/1.1\r\n', 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n', 'GET /heal']) {
    const s = net.connect(gw.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.on('connect', () => s.write(first));
    timers.push(setInterval(() => !s.destroyed && s.write(`X-Slow-${Date.now()}: 1\r\n`), 100));
    slow.push(s);
  }
  t.teardown(() => {
    for (const tm of timers) clearInterval(tm);
    for (const s of slow) s.destroy();
  });

  await sleep(700);
  const health = await httpGet(gw.port, '/healthz');
  t.equal(health.status, 200, '/healthz answers on another connection while slow-header clients hang');
  t.match(JSON.parse(health.body), { status: 'ok' });
  await freshPingWorks(t, gw, 'a WebSocket client handshakes and pings meanwhile');
  // Node enforces headersTimeout only on its connection sweep; the gateway sweeps at half the
  // timeout, so every trickling client is cut off soon after the 500 ms deadline.
  const closedBy = Date.now() + 3000;
  while (slow.some((s) => !s.destroyed && !s.readableEnded) && Date.now() < closedBy) await sleep(50);
  t.ok(slow.every((s) => s.destroyed || s.readableEnded), 'every slow-header client was disconnected within ~2 s of the deadline');
});

// ---- I3 ---------------------------------------------------------------------------------------

t.test('I3: a client that stops reading during a burst is closed 1013 while another client is unaffected', async (t) => {
  const gw = await gateway(t, { limits: { max_queued_bytes: 65536 } });
  // ~1000 entries of ~400 bytes: every audit.list {limit:1000} answer is ~0.5 MB.
  await Promise.all(Array.from({ length: 1000 }, (_, i) => gw.audit.append('test.fill', { kind: 'cli' }, { i, pad: 'x'.repeat(300) })));
  const slow = await ready(t, gw);
  const other = await ready(t, gw);
  t.match(await slow.request('audit.list', { limit: 1 }, 3000), { ok: true }, 'the soon-to-be-slow client works before it stops reading');

  // Server side view of the slow connection: the only in-process signal that the gateway has
  // decided to close it, so the client resumes inside the 2 s close grace (after it, the close
  // frame queued behind the unsent bytes is discarded with the socket and the client sees 1006).
  const live = (gw.server as unknown as { live: Set<{ session: { isClosed: boolean; connectionId: string }; ws: { bufferedAmount: number } }> }).live;
  const before = new Set([...live].filter((l) => !l.session.isClosed));

  slow.ws.pause();
  for (let i = 0; i < 60; i++) slow.send({ request_id: `burst${i}`, type: 'audit.list', payload: { limit: 1000 } });

  const deadline = Date.now() + 8000;
  let closedServerSide = false;
  let pingsDuringBurst = 0;
  while (Date.now() < deadline) {
    const pong = await other.request('ping', {}, 3000);
    if (pong.ok === true) pingsDuringBurst++;
    const open = [...before].filter((l) => !l.session.isClosed);
    if (open.length === before.size - 1) {
      closedServerSide = true;
      break;
    }
    await sleep(20);
  }
  t.ok(closedServerSide, 'the gateway closed exactly one connection (the one not reading)');
  t.ok(pingsDuringBurst > 0, `the other client got ${pingsDuringBurst} pongs during the burst`);
  slow.ws.resume();
  const code = await slow.closeCode(5000);
  t.equal(code.code, 1013, 'the client that stopped reading is closed 1013 (slow consumer)');
  t.ok(slow.frames.filter((f) => typeof f.request_id === 'string' && f.request_id.startsWith('burst')).length < 60, 'it did not get every answer queued up for it');

  await pingWorks(t, other, 'the other client is unaffected after the slow one is gone');
  t.equal(other.closed, null);
  const page = await other.request('audit.list', { limit: 1000 }, 5000);
  t.match(page, { ok: true }, 'the other client can still read a full page');
  t.equal((page.result as { entries: unknown[] }).entries.length, 1000);
});

// ---- I1 ---------------------------------------------------------------------------------------

t.test('I1: 50 concurrent clients handshake and each pings 20 times without an error', async (t) => {
  const gw = await gateway(t);
  const errors: unknown[] = [];
  const heapBefore = process.memoryUsage().heapUsed;
  const clients = await Promise.all(
    Array.from({ length: 50 }, async () => {
      const c = await ready(t, gw);
      c.ws.on('error', (e) => errors.push(e));
      return c;
    }),
  );
  t.equal(gw.server.connections, 50, 'the gateway holds 50 connections');
  const results = await Promise.all(
    clients.map(async (c) => {
      let ok = 0;
      for (let i = 0; i < 20; i++) {
        const res = await c.request('ping', {}, 5000);
        if (res.ok === true && (res.result as { pong?: unknown }).pong === true) ok++;
      }
      return ok;
    }),
  );
  t.same(results, Array(50).fill(20), 'every one of the 1000 pings succeeded');
  t.same(errors, [], 'no socket errors');
  t.ok(clients.every((c) => c.closed === null), 'no client was closed');
  const perConn = (process.memoryUsage().heapUsed - heapBefore) / 50;
  t.ok(perConn < 2 * 1024 * 1024, `heap per connection ~${Math.round(perConn / 1024)} KiB (rough bound 2 MiB, both ends in one process)`);
});
