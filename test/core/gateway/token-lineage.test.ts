/**
 * Minted tokens over the protocol (token.create): a child can neither outrank (roles) nor outlive
 * (expiry) the token that minted it, and revoking or expiry of a token ends its descendants,
 * closing their open sockets.
 */
import t, { type Test } from 'tap';
import { startTestGateway, removeHome, connect, open, externalWrite, type TestGateway } from '../../helpers/gateway.js';
import { listAudit } from '../../../core/audit/index.js';
import { main } from '../../../core/cli/main.js';

/** Generous: the revocation watcher closes within about a second; the machine is shared. */
const CLOSE_GUARD_MS = 8000;

async function gateway(t: Test): Promise<TestGateway> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  return gw;
}

type Conn = Awaited<ReturnType<typeof connect>>['conn'];

async function mint(conn: Conn, payload: Record<string, unknown>): Promise<{ token: string; id: string }> {
  const r = await conn.request('token.create', payload);
  if (r.ok !== true) throw new Error(`token.create failed: ${JSON.stringify(r)}`);
  const res = r.result as { token: string; info: { token_id: string } };
  return { token: res.token, id: res.info.token_id };
}

const ADMIN = ['operator.read', 'operator.admin'];

t.test('a token with a 60 s lifetime cannot mint one with no expiry or a later one', async (t) => {
  const gw = await gateway(t);
  const short = await gw.tokens.create({ scopes: ADMIN, ttlSeconds: 60, createdBy: 'test' });
  const { conn } = await connect(gw, { token: short.token });
  t.teardown(() => conn.ws.terminate());
  const forever = await conn.request('token.create', { scopes: ['operator.read'] });
  t.match(forever, { ok: false, error: { code: 'forbidden' } }, 'no expiry is refused');
  t.match((forever.error as { message: string }).message, /expire/);
  const later = await conn.request('token.create', { scopes: ['operator.read'], ttl_seconds: 3600 });
  t.match(later, { ok: false, error: { code: 'forbidden' } }, 'a later expiry is refused');
});

t.test('a token with an expiry mints only tokens that expire no later', async (t) => {
  const gw = await gateway(t);
  const hour = await gw.tokens.create({ scopes: ADMIN, ttlSeconds: 3600, createdBy: 'test' });
  const { conn } = await connect(gw, { token: hour.token });
  t.teardown(() => conn.ws.terminate());
  t.match(await conn.request('token.create', { scopes: ['operator.read'] }), { ok: false, error: { code: 'forbidden' } }, 'no expiry is refused');
  t.match(await conn.request('token.create', { scopes: ['operator.read'], ttl_seconds: 7200 }), { ok: false, error: { code: 'forbidden' } }, 'a later expiry is refused');
  const within = await conn.request('token.create', { scopes: ['operator.read'], ttl_seconds: 1800 });
  t.equal(within.ok, true, 'an earlier expiry is allowed');
});

t.test('a client token cannot mint a node token', async (t) => {
  const gw = await gateway(t);
  const client = await gw.tokens.create({ scopes: ADMIN, roles: ['client'], createdBy: 'test' });
  const { conn } = await connect(gw, { token: client.token });
  t.teardown(() => conn.ws.terminate());
  for (const roles of [['node'], ['client', 'node']]) {
    const r = await conn.request('token.create', { scopes: ['operator.read'], roles });
    t.match(r, { ok: false, error: { code: 'forbidden' } }, `roles ${roles.join(',')} refused`);
  }
  t.equal(gw.tokens.list().filter((x) => x.roles.includes('node')).length, 0, 'no node token exists');
});

t.test('revoking a token over the protocol revokes its descendants and closes their sockets, audited', async (t) => {
  const gw = await gateway(t);
  const parent = await gw.tokens.create({ scopes: ADMIN, createdBy: 'test' });
  const p = await connect(gw, { token: parent.token });
  t.teardown(() => p.conn.ws.terminate());
  const child = await mint(p.conn, { scopes: ADMIN });
  const c = await connect(gw, { token: child.token });
  t.teardown(() => c.conn.ws.terminate());
  const grandchild = await mint(c.conn, { scopes: ['operator.read'] });
  const g = await connect(gw, { token: grandchild.token });
  t.teardown(() => g.conn.ws.terminate());

  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.terminate());
  const r = await admin.conn.request('token.revoke', { token_id: parent.record.id });
  t.equal(r.ok, true);
  for (const [name, conn] of [['parent', p.conn], ['child', c.conn], ['grandchild', g.conn]] as const) {
    t.equal((await conn.closeCode(CLOSE_GUARD_MS)).code, 4001, `the ${name}'s socket is closed with 4001`);
  }
  for (const tok of [child.token, grandchild.token]) t.equal(((await open(gw, { token: tok })) as { status: number }).status, 401, 'a descendant is refused at the upgrade');
  t.equal((await admin.conn.request('ping')).ok, true, 'an unrelated token keeps working');

  await gw.audit.flush();
  const revoked = listAudit(gw.store, { type: 'token.revoked', limit: 100 });
  for (const id of [child.id, grandchild.id]) {
    t.ok(
      revoked.some((e) => e.data.token_id === id && e.data.revoked_with === parent.record.id),
      `the revocation of descendant ${id} is audited`,
    );
  }
});

t.test('revoking a token from the CLI closes the sockets of its descendants', async (t) => {
  const gw = await gateway(t);
  const parent = await gw.tokens.create({ scopes: ADMIN, createdBy: 'test' });
  const p = await connect(gw, { token: parent.token });
  t.teardown(() => p.conn.ws.terminate());
  const child = await mint(p.conn, { scopes: ['operator.read'] });
  const c = await connect(gw, { token: child.token });
  t.teardown(() => c.conn.ws.terminate());
  const out: string[] = [];
  const code = await main(['token', 'revoke', parent.record.id, '--home', gw.home], { out: (s) => out.push(s), err: (s) => out.push(s) });
  t.equal(code, 0, out.join('\n'));
  t.equal((await c.conn.closeCode(CLOSE_GUARD_MS)).code, 4001, 'the child\'s socket is closed');
  await gw.audit.flush();
  t.ok(listAudit(gw.store, { type: 'token.revoked', limit: 100 }).some((e) => e.data.token_id === child.id && e.data.revoked_with === parent.record.id), 'audited');
});

t.test('when a token merely expires, its descendants\' sockets are closed and they are refused', async (t) => {
  const gw = await gateway(t);
  const parent = await gw.tokens.create({ scopes: ADMIN, createdBy: 'test' });
  const p = await connect(gw, { token: parent.token });
  t.teardown(() => p.conn.ws.terminate());
  const child = await mint(p.conn, { scopes: ['operator.read'] });
  p.conn.ws.close();
  const c = await connect(gw, { token: child.token });
  t.teardown(() => c.conn.ws.terminate());
  // Move the parent's expiry into the past behind the gateway's back, as time passing would.
  await externalWrite(gw.home, 'UPDATE tokens SET expires_at = ? WHERE id = ?', [Date.now() - 1, parent.record.id]);
  t.equal((await c.conn.closeCode(CLOSE_GUARD_MS)).code, 4001, 'the child\'s socket is closed');
  t.equal(((await open(gw, { token: child.token })) as { status: number }).status, 401, 'the child is refused at the upgrade');
});
