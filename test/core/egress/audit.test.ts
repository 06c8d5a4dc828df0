// An egress request the gateway refuses is audited (README, troubleshooting): the entry names the
// plugin, the method, the destination origin and the reason — never a secret value, the path or a
// body. A plugin granted no egress at all is refused by the same checked egress, so it is audited too.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { listAudit } from '../../../core/audit/index.js';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { pluginDir } from '../registry/helpers.js';

const CLI = { kind: 'cli', user: 'test' };

t.test('a refused egress request leaves an egress.denied audit entry with plugin, method, origin and reason', async (t) => {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits += 1;
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;

  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const value = `SECRET-${randomBytes(12).toString('hex')}`;
  gw.secrets.set('API_TOKEN', Buffer.from(value), [`http://127.0.0.1:${port}`]);
  // One plugin granted egress to another port only, one granted no egress at all.
  const dir = t.testdir();
  const granted = await pluginDir(dir, {
    id: 'fetcher',
    wat: 'http',
    tools: [{ id: 'fetch' }],
    requests: { egress: [{ host: '127.0.0.1', scheme: 'http', port: 1, methods: ['GET', 'POST'] }] },
    risk: ['network'],
  });
  const bare = await pluginDir(dir, { id: 'nonet', wat: 'http', tools: [{ id: 'fetch' }] });
  for (const [dir, id] of [
    [granted, 'fetcher'],
    [bare, 'nonet'],
  ] as const) {
    await gw.plugins.install(dir, CLI);
    await gw.plugins.grant(id, { allRequested: true, acceptRisks: id === 'fetcher' ? ['network'] : [] }, CLI);
    await gw.plugins.enable(id, CLI);
  }
  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.close());

  const url = `http://127.0.0.1:${port}/private/path?q=${value}`;
  for (const tool of ['fetcher.fetch', 'nonet.fetch']) {
    const r = await admin.conn.request('tool.invoke', { tool_id: tool, args: { url, method: 'post', headers: { authorization: 'Bearer {{secret:API_TOKEN}}' } } });
    t.equal(r.ok, true, JSON.stringify(r.error));
    t.match(r.result, { state: 'failed', error: { code: 'TYRUM_ERR_SANDBOX_DENIED' } }, `${tool} is refused`);
  }
  t.equal(hits, 0, 'nothing reached the destination');
  await gw.audit.flush();

  const entries = listAudit(gw.store, { type: 'egress.denied', limit: 100 });
  t.equal(entries.length, 2, 'one entry per refused request');
  const [a, b] = entries;
  t.match(a, { type: 'egress.denied', actor: { kind: 'plugin', plugin_id: 'fetcher' }, data: { plugin_id: 'fetcher', method: 'POST', origin: `http://127.0.0.1:${port}`, reason: 'host_not_granted', hop: 0 } });
  t.match(b, { type: 'egress.denied', actor: { kind: 'plugin', plugin_id: 'nonet' }, data: { plugin_id: 'nonet', method: 'POST', origin: `http://127.0.0.1:${port}`, reason: 'no_rights', hop: 0 } });
  const denied = JSON.stringify(entries);
  t.notMatch(denied, value, 'the secret value is never in the entry');
  t.notMatch(denied, '/private/path', 'the entry names the origin, not the path and query');
  t.notMatch(JSON.stringify(listAudit(gw.store, { limit: 1000 })), value, 'nor anywhere in the audit log');
  t.same(listAudit(gw.store, { type: 'egress.request', limit: 100 }), [], 'a refused request is not recorded as a request made');
});
