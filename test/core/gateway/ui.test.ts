/**
 * The operator UI's HTTP side (static files from memory, the CSP and hardening headers) and the
 * node.bootstrap operation (single use, expiry, scope, hashed at rest).
 */
import t from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestGateway, removeHome, connect, open, newDevice, signTranscript, RawConn, tokenSecret } from '../../helpers/gateway.js';
import { uiContentSecurityPolicy, UiAssets } from '../../../core/gateway/ui.js';

function fakeUi(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-ui-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>x</title>');
  writeFileSync(join(dir, 'app.js'), 'console.log(1)');
  writeFileSync(join(dir, '.secret.js'), 'no');
  writeFileSync(join(dir, 'notes.md'), 'unknown type');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'a.css'), 'body{}');
  return dir;
}

t.test('the CSP allows this origin only; a hostile Host header cannot add a directive', async (t) => {
  const csp = uiContentSecurityPolicy('127.0.0.1:8788', false);
  t.match(csp, /^default-src 'self'; script-src 'self'; style-src 'self'/);
  t.match(csp, /connect-src 'self' ws:\/\/127\.0\.0\.1:8788;/);
  t.match(csp, /frame-ancestors 'none'/);
  t.match(uiContentSecurityPolicy('[::1]:9', true), /connect-src 'self' wss:\/\/\[::1\]:9;/);
  const evil = uiContentSecurityPolicy("x; script-src 'unsafe-inline'", false);
  t.notMatch(evil, /unsafe-inline/);
  t.match(evil, /connect-src 'self';/);
  t.match(uiContentSecurityPolicy(undefined, false), /connect-src 'self';/);
});

t.test('UiAssets serves built files only: no dotfiles, unknown types or paths outside', async (t) => {
  const dir = fakeUi();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ui = UiAssets.load(dir)!;
  t.ok(ui.get('/'));
  t.ok(ui.get('/ui/app.js'));
  t.ok(ui.get('/ui/sub/a.css'));
  t.equal(ui.get('/ui/.secret.js'), undefined);
  t.equal(ui.get('/ui/notes.md'), undefined);
  t.equal(ui.get('/ui/../package.json'), undefined);
  t.equal(ui.get('/app.js'), undefined, 'files live under /ui/');
  t.equal(ui.get('/ui/index.html'), undefined, 'the page is served at / only');
  t.equal(UiAssets.load(join(dir, 'sub')), null, 'a directory without index.html is no UI');
});

t.test('GET / and /ui/* carry the CSP and hardening headers; revalidation by etag', async (t) => {
  const dir = fakeUi();
  const gw = await startTestGateway({ uiDir: dir });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${gw.port}`;
  const page = await fetch(`${base}/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  t.match(page.headers.get('content-security-policy'), new RegExp(`^default-src 'self';.*connect-src 'self' ws://127\\.0\\.0\\.1:${gw.port};`));
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  t.equal(page.headers.get('x-frame-options'), 'DENY');
  t.equal(page.headers.get('referrer-policy'), 'no-referrer');
  t.equal(page.headers.get('cache-control'), 'no-cache');
  const etag = page.headers.get('etag')!;
  t.equal((await fetch(`${base}/`, { headers: { 'if-none-match': etag } })).status, 304);
  const js = await fetch(`${base}/ui/app.js`);
  t.equal(js.status, 200);
  t.match(js.headers.get('content-type'), /^text\/javascript/);
  t.equal(await js.text(), 'console.log(1)');
  const missing = await fetch(`${base}/ui/nope.js`);
  t.equal(missing.status, 404);
  t.match(missing.headers.get('content-security-policy'), /default-src 'self'/, 'the 404 carries the CSP too');
  t.equal((await fetch(`${base}/ui/%2e%2e/package.json`)).status, 404);
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'the other routes are untouched');
});

t.test('without a built UI, / says how to build it', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'tyrum-noui-'));
  const gw = await startTestGateway({ uiDir: empty });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
    rmSync(empty, { recursive: true, force: true });
  });
  const r = await fetch(`http://127.0.0.1:${gw.port}/`);
  t.equal(r.status, 404);
  t.match(await r.text(), /npm run build/);
  t.match(r.headers.get('content-security-policy'), /default-src 'self'/);
});

/** Opens a node connection with `token` on `device` and sends connect.init; the close code, or 'open'. */
async function nodeInit(gw: { port: number }, token: string, device = newDevice()): Promise<{ conn: RawConn; outcome: number | 'challenged' }> {
  const conn = await open(gw, { token });
  if (!(conn instanceof RawConn)) throw new Error(`upgrade refused: ${conn.status}`);
  const init = conn.request('connect.init', { protocol_rev: 1, role: 'node', device: { device_id: device.device_id, pubkey: device.pubkey, label: 'n' }, capabilities: [{ id: 'sys.noop', version: '1' }] }).catch(() => null);
  const first = await Promise.race([init, conn.closeCode().then((c) => c.code)]);
  if (typeof first === 'number') return { conn, outcome: first };
  if (first === null || first.ok !== true) return { conn, outcome: (await conn.closeCode()).code };
  const { connection_id, challenge } = first.result as { connection_id: string; challenge: string };
  const proof = await conn.request('connect.proof', { connection_id, proof: signTranscript(device, { protocol_rev: 1, role: 'node', device_id: device.device_id, connection_id, challenge }) });
  if (proof.ok !== true) return { conn, outcome: (await conn.closeCode()).code };
  return { conn, outcome: 'challenged' };
}

t.test('node.bootstrap: scoped, short-lived, hashed at rest, single use, revoked once paired', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const { conn: admin } = await connect(gw);
  t.teardown(() => admin.ws.close());

  // Scope: operator.pairing only.
  const readTok = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], createdBy: 'test' });
  const { conn: reader } = await connect(gw, { token: readTok.token });
  t.teardown(() => reader.ws.close());
  t.match(await reader.request('node.bootstrap', {}), { ok: false, error: { code: 'forbidden' } });
  t.match(await admin.request('node.bootstrap', { ttl_seconds: 59 }), { ok: false, error: { code: 'invalid_request' } });
  t.match(await admin.request('node.bootstrap', { ttl_seconds: 901 }), { ok: false, error: { code: 'invalid_request' } });

  const before = Date.now();
  const r = await admin.request('node.bootstrap', { label: 'phone' });
  t.equal(r.ok, true);
  const { token, token_id, expires_at } = r.result as { token: string; token_id: string; expires_at: string };
  const lifetime = Date.parse(expires_at) - before;
  t.ok(lifetime > 290_000 && lifetime <= 301_000, `default lifetime 5 minutes (${lifetime} ms)`);
  const rec = gw.store.tokens.get(token_id)!;
  t.match(rec, { kind: 'node_enrollment', roles: ['node'], scopes: [], single_use: true, device_id: null, label: 'phone' });
  t.notOk(JSON.stringify({ ...rec, salt: rec.salt.toString('base64url'), hash: rec.hash.toString('base64url') }).includes(tokenSecret(token)), 'only a hash of the secret is stored');
  const audit = (await admin.request('audit.list', { type: 'token.created', limit: 100 })).result as { entries: Array<{ data: { token_id: string; single_use?: boolean } }> };
  t.ok(audit.entries.some((e) => e.data.token_id === token_id && e.data.single_use === true), 'audited');

  // Not an operator credential.
  const asClient = await open(gw, { token });
  if (asClient instanceof RawConn) {
    const d = newDevice();
    void asClient.request('connect.init', { protocol_rev: 1, role: 'client', device: { device_id: d.device_id, pubkey: d.pubkey }, capabilities: [] }).catch(() => null);
    t.equal((await asClient.closeCode()).code, 4001, 'a client connection with it is refused');
  }

  // The first device claims it; another device is refused; the same device may reconnect.
  const device = newDevice();
  const first = await nodeInit(gw, token, device);
  t.equal(first.outcome, 'challenged', 'the first device is let in to ask for pairing');
  t.equal(gw.store.tokens.get(token_id)!.device_id, device.device_id, 'and the token is now bound to it');
  const other = await nodeInit(gw, token);
  t.equal(other.outcome, 4001, 'a second device is refused');
  first.conn.ws.close();
  await first.conn.closeCode();
  const again = await nodeInit(gw, token, device);
  t.equal(again.outcome, 'challenged', 'the claiming device can reconnect before it is paired');

  // Approving the pairing delivers a node token; the bootstrap token is then revoked.
  const pairings = (await admin.request('pairing.list', { state: 'awaiting_human' })).result as { pairings: Array<{ pairing_id: string; device_id: string }> };
  const pairing = pairings.pairings.find((p) => p.device_id === device.device_id)!;
  const credential = again.conn.incoming('pairing.credential');
  t.equal((await admin.request('pairing.approve', { pairing_id: pairing.pairing_id, trust_level: 'local', capability_allowlist: [{ id: 'sys.noop' }] })).ok, true);
  const cred = await credential;
  again.conn.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const deadline = Date.now() + 5000;
  while (gw.store.tokens.get(token_id)!.revoked_at === null && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  t.not(gw.store.tokens.get(token_id)!.revoked_at, null, 'revoked once the node stored its node token');
  const after = await open(gw, { token });
  t.notOk(after instanceof RawConn, 'and refused at the upgrade from then on');
  t.teardown(() => again.conn.ws.close());

  // Expiry: a claim after the token's lifetime is refused.
  const r2 = (await admin.request('node.bootstrap', { ttl_seconds: 60 })).result as { token_id: string };
  t.equal(gw.store.tx(() => gw.store.tokens.claimSingleUse(r2.token_id, device.device_id, Date.now() + 61_000)), 'refused', 'an expired token cannot be claimed');
  t.equal(gw.store.tx(() => gw.store.tokens.claimSingleUse(readTok.record.id, device.device_id, Date.now())), 'refused', 'an ordinary token cannot be claimed');
});
