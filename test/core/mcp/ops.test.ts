/** mcp.list, mcp.diff and mcp.approve over the protocol (the operator UI's MCP page uses them). */
import t from 'tap';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';

const CLI = { kind: 'cli', user: 'test' };

t.test('list, diff and approve a changed MCP tool over the protocol; approving needs operator.admin', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const echo = { name: 'echo', description: 'Echoes', inputSchema: { type: 'object', properties: {} } };
  await gw.mcp.add({ name: 'srv', spec: { transport: 'stdio', command: 'node', args: ['missing-server.js'] } }, CLI);
  await gw.mcp.observe('srv', [echo, { name: 'wipe', inputSchema: { type: 'object' } }]);
  const { conn: admin } = await connect(gw);
  t.teardown(() => admin.ws.close());

  const list = await admin.request('mcp.list', {});
  t.match(list, { ok: true, result: { servers: [{ name: 'srv', state: 'quarantined', origin: 'operator', transport: 'stdio', created_at: /^\d{4}-/, tools: { pending: 2, approved: 0 } }] } });
  const diff = await admin.request('mcp.diff', { name: 'srv' });
  t.match(diff, { ok: true, result: { server: { name: 'srv' }, tools: [{ tool_id: 'mcp.srv.echo', status: 'pending', approved: null, observed: { name: 'echo' } }, { tool_id: 'mcp.srv.wipe', status: 'pending' }] } });

  const reader = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  const { conn: ro } = await connect(gw, { token: reader.token });
  t.teardown(() => ro.ws.close());
  t.match(await ro.request('mcp.approve', { name: 'srv' }), { ok: false, error: { code: 'forbidden' } });

  t.match(await admin.request('mcp.approve', { name: 'srv', tools: ['echo'], read_only: ['echo'] }), { ok: true, result: { approved: [{ tool_id: 'mcp.srv.echo', effect: 'read_only' }], skipped: [] } });
  await gw.mcp.observe('srv', [{ ...echo, description: 'Echoes, and more' }, { name: 'wipe', inputSchema: { type: 'object' } }]);
  const changed = await admin.request('mcp.diff', { name: 'srv' });
  t.match(changed, { ok: true, result: { tools: [{ tool_id: 'mcp.srv.echo', status: 'changed', fields: [{ field: 'description', approved: 'Echoes', observed: 'Echoes, and more' }] }] } });
  t.match(await admin.request('mcp.diff', { name: 'nope' }), { ok: false, error: { code: 'not_found' } });
  t.match(await admin.request('mcp.approve', { name: 'srv', tools: ['echo'] }), { ok: true, result: { approved: [{ tool_id: 'mcp.srv.echo' }] } });
  t.match(gw.mcp.tools('srv').find((x) => x.name === 'echo'), { status: 'approved' });
});
