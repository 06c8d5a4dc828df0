import t from 'tap';
import { startTestGateway, removeHome, connect, open, externalWrite } from '../../helpers/gateway.js';
import { main } from '../../../core/cli/main.js';

t.test('revoking a token closes its sockets within 1 s and refuses new upgrades (F5)', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });

  t.test('revocation over the protocol', async (t) => {
    const { token, record } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    const a = await connect(gw, { token });
    const b = await connect(gw, { token });
    const other = await connect(gw);
    const t0 = Date.now();
    const r = await other.conn.request('token.revoke', { token_id: record.id });
    t.equal(r.ok, true);
    const [ca, cb] = await Promise.all([a.conn.closeCode(10_000), b.conn.closeCode(10_000)]);
    t.equal(ca.code, 4001);
    t.equal(cb.code, 4001);
    t.ok(Date.now() - t0 < 10_000, `closed after ${Date.now() - t0} ms (about 1 s; a hang guard on a loaded machine)`);
    const again = await open(gw, { token });
    t.equal((again as { status: number }).status, 401, 'new upgrades refused');
    t.equal((await other.conn.request('ping')).ok, true, 'other tokens unaffected');
    const twice = await other.conn.request('token.revoke', { token_id: record.id });
    t.equal((twice.error as { code: string }).code, 'invalid_state');
    const unknown = await other.conn.request('token.revoke', { token_id: '0000000000000000' });
    t.equal((unknown.error as { code: string }).code, 'not_found');
    other.conn.ws.close();
  });

  t.test('revocation from the CLI (another database connection) reaches live sockets', async (t) => {
    const { token, record } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
    const a = await connect(gw, { token });
    const out: string[] = [];
    const t0 = Date.now();
    const codeOut = await main(['token', 'revoke', record.id, '--home', gw.home], { out: (s) => out.push(s), err: (s) => out.push(s) });
    t.equal(codeOut, 0, out.join('\n'));
    const closed = await a.conn.closeCode(10_000);
    t.equal(closed.code, 4001);
    t.ok(Date.now() - t0 < 10_000, `closed after ${Date.now() - t0} ms (about 1 s; a hang guard on a loaded machine)`);
    t.equal(((await open(gw, { token })) as { status: number }).status, 401);
  });

  t.test('a token that expires closes its sockets and is refused at the upgrade', async (t) => {
    const { token, record } = await gw.tokens.create({ scopes: ['operator.read'], ttlSeconds: 60, createdBy: 'test' });
    const live = await connect(gw, { token });
    // Move the expiry into the past behind the gateway's back, as time passing would.
    await externalWrite(gw.home, 'UPDATE tokens SET expires_at = ? WHERE id = ?', [Date.now() - 1, record.id]);
    t.equal((await live.conn.closeCode(2000)).code, 4001, 'the open socket is closed');
    t.equal(((await open(gw, { token })) as { status: number }).status, 401);
  });
});
