import t from 'tap';
import WebSocket from 'ws';
import { startTestGateway, removeHome, open, connect, RawConn, tokenSecret } from '../../helpers/gateway.js';
import { listAudit } from '../../../core/audit/index.js';

t.test('WebSocket upgrade authentication (F1)', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });

  t.test('an upgrade without a token gets 401 and no WebSocket', async (t) => {
    const r = await open(gw, { token: null });
    t.notOk(r instanceof RawConn);
    t.equal((r as { status: number }).status, 401);
    t.match((r as { body: string }).body, /"code":"unauthorized"/);
  });

  t.test('an upgrade with a bad token gets 401', async (t) => {
    for (const bad of ['nonsense', `tyrum_0123456789abcdef_${'A'.repeat(43)}`, gw.adminToken.slice(0, -1) + (gw.adminToken.endsWith('A') ? 'B' : 'A')]) {
      const r = await open(gw, { token: bad });
      t.equal((r as { status: number }).status, 401, `token ${bad.slice(0, 12)}… refused`);
    }
  });

  t.test('a token in the URL is not accepted', async (t) => {
    const r = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws?token=${encodeURIComponent(gw.adminToken)}`, ['tyrum-v1']);
      ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
      ws.once('error', () => resolve(-1));
    });
    t.equal(r, 401);
  });

  t.test('an upgrade without the tyrum-v1 subprotocol gets 400', async (t) => {
    const r = await open(gw, { protocols: ['tyrum-v2'] });
    t.equal((r as { status: number }).status, 400);
    const none = await open(gw, { protocols: [] });
    t.equal((none as { status: number }).status, 400);
  });

  t.test('an upgrade on another path gets 404', async (t) => {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/other`, ['tyrum-v1'], { headers: { authorization: `Bearer ${gw.adminToken}` } });
      ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => resolve(-1));
    });
    t.equal(status, 404);
  });

  t.test('a browser upgrade from a foreign Origin gets 403; the gateway\'s own origin is allowed', async (t) => {
    const r = await open(gw, { headers: { origin: 'https://evil.example' } });
    t.equal((r as { status: number }).status, 403);
    const ok = await open(gw, { headers: { origin: `http://127.0.0.1:${gw.port}` } });
    t.ok(ok instanceof RawConn, 'own origin upgrades');
    (ok as RawConn).ws.close();
  });

  t.test('the token may come as a tyrum-auth subprotocol, which is never echoed', async (t) => {
    const { conn, hello } = await connect(gw, { authVia: 'subprotocol' });
    t.equal(conn.ws.protocol, 'tyrum-v1', 'the selected subprotocol is exactly tyrum-v1');
    t.equal(hello.role, 'client');
    conn.ws.close();
  });

  t.test('failed upgrades are audited as auth.failed', async (t) => {
    await gw.audit.flush();
    const failures = listAudit(gw.store, { type: 'auth.failed', limit: 1000 });
    t.ok(failures.length >= 3);
    t.ok(failures.every((e) => e.actor.kind === 'anonymous' && e.actor.ip === '127.0.0.1'));
    t.ok(failures.some((e) => e.data.reason === 'origin not allowed'));
    // The presented secret never reaches the audit log.
    const all = JSON.stringify(listAudit(gw.store, { limit: 1000 }));
    t.notOk(all.includes(tokenSecret(gw.adminToken)), 'the token secret is not in the audit log');
  });

  t.test('GET /healthz answers and /contracts serves the JSON Schemas', async (t) => {
    const h = await fetch(`http://127.0.0.1:${gw.port}/healthz`);
    t.equal(h.status, 200);
    t.equal(((await h.json()) as { status: string }).status, 'ok');
    const idx = (await (await fetch(`http://127.0.0.1:${gw.port}/contracts`)).json()) as { contracts: string[] };
    t.ok(idx.contracts.includes('/contracts/envelope.request.json'));
    const env = (await (await fetch(`http://127.0.0.1:${gw.port}/contracts/envelope.request.json`)).json()) as Record<string, unknown>;
    t.equal(env.additionalProperties, false);
    t.same(env.required, ['request_id', 'type', 'payload']);
    const missing = await fetch(`http://127.0.0.1:${gw.port}/contracts/nope.json`);
    t.equal(missing.status, 404);
    const proto = await fetch(`http://127.0.0.1:${gw.port}/contracts/__proto__.json`);
    t.equal(proto.status, 404);
  });
});
