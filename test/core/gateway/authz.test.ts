import t from 'tap';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { listAudit } from '../../../core/audit/index.js';
import { OPERATIONS } from '../../../schemas/index.js';
import { createHandlers } from '../../../core/protocol/handlers.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { MCP_ERR_FORBIDDEN } from '../../../core/mcp/endpoint.js';

const code = (r: Record<string, unknown>) => (r.error as { code: string } | undefined)?.code;

t.test('per-method authorization (F2)', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const { token: readToken, record: readRec } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });

  t.test('a read-scoped token calling admin operations gets forbidden, an audit entry and an authz.denied event', async (t) => {
    const admin = await connect(gw);
    const reader = await connect(gw, { token: readToken });
    for (const type of ['token.create', 'token.list', 'token.revoke'] as const) {
      const payload = type === 'token.create' ? { scopes: ['operator.read'] } : type === 'token.revoke' ? { token_id: readRec.id } : {};
      const r = await reader.conn.request(type, payload);
      t.equal(r.ok, false, `${type} refused`);
      t.equal(code(r), 'forbidden');
      t.same((r.error as { details: { required_scopes: string[] } }).details.required_scopes, ['operator.admin']);
    }
    const ev = await admin.conn.event('authz.denied');
    t.equal((ev.payload as { token_id: string }).token_id, readRec.id);
    await gw.audit.flush();
    const denied = listAudit(gw.store, { type: 'authz.denied', limit: 100 });
    t.equal(denied.length, 3);
    t.same(denied.map((e) => e.data.request_type), ['token.create', 'token.list', 'token.revoke']);
    t.ok(denied.every((e) => e.actor.id === readRec.id));
    // Still allowed: what the read scope covers.
    t.equal((await reader.conn.request('audit.list', { limit: 1 })).ok, true);
    t.equal(gw.tokens.list().find((x) => x.id === readRec.id)?.revoked_at, null, 'the forbidden revoke did nothing');
    admin.conn.ws.close();
    reader.conn.ws.close();
  });

  t.test('a token can never mint a token with wider scopes than its own', async (t) => {
    const { token: writer } = await gw.tokens.create({ scopes: ['operator.admin', 'operator.read'], createdBy: 'test' });
    const c = await connect(gw, { token: writer });
    const r = await c.conn.request('token.create', { scopes: ['operator.read', 'operator.approvals'] });
    t.equal(code(r), 'forbidden');
    t.match((r.error as { message: string }).message, /operator\.approvals/);
    const ok = await c.conn.request('token.create', { scopes: ['operator.read'], label: 'narrower', ttl_seconds: 3600 });
    t.equal(ok.ok, true);
    const res = ok.result as { token: string; info: { scopes: string[]; expires_at: string; label: string } };
    t.match(res.token, /^tyrum_[0-9a-f]{16}_/);
    t.same(res.info.scopes, ['operator.read']);
    t.equal(res.info.label, 'narrower');
    t.ok(Date.parse(res.info.expires_at) > Date.now());
    c.conn.ws.close();
  });

  t.test('bad payloads are invalid_request with issues; unknown types are unsupported_request', async (t) => {
    const c = await connect(gw);
    const bad = await c.conn.request('token.create', { scopes: ['operator.root'] });
    t.equal(code(bad), 'invalid_request');
    t.ok(((bad.error as { details: { issues: Array<{ path: string }> } }).details.issues[0]!.path).startsWith('/scopes'));
    const extra = await c.conn.request('ping', { surprise: 1 });
    t.equal(code(extra), 'invalid_request');
    t.match(JSON.stringify(extra.error), /unknown key \\"surprise\\"/);
    const unknown = await c.conn.request('frobnicate.now');
    t.equal(code(unknown), 'unsupported_request');
    c.conn.send({ request_id: 'x1', type: 'ping' });
    const envelope = await c.conn.response('x1');
    t.equal(code(envelope), 'invalid_request', 'an envelope without payload is answered, not ignored');
    t.equal((await c.conn.request('ping')).ok, true, 'the connection survives bad requests');
    c.conn.ws.close();
  });

  t.test('audit.list pages and audit.verify reports a healthy chain', async (t) => {
    const c = await connect(gw);
    const first = await c.conn.request('audit.list', { limit: 2 });
    const r = first.result as { entries: Array<{ seq: number }>; next_after_seq: number };
    t.same(r.entries.map((e) => e.seq), [1, 2]);
    t.equal(r.next_after_seq, 2);
    const next = await c.conn.request('audit.list', { after_seq: 2, limit: 1 });
    t.same((next.result as { entries: Array<{ seq: number }> }).entries.map((e) => e.seq), [3]);
    const v = await c.conn.request('audit.verify');
    t.equal((v.result as { ok: boolean }).ok, true);
    t.ok((v.result as { entries: number }).entries >= 3);
    c.conn.ws.close();
  });
});

t.test('every non-handshake operation a peer may send has exactly one handler', async (t) => {
  const handlers = createHandlers({} as Parameters<typeof createHandlers>[0]);
  const ops = Object.entries(OPERATIONS).filter(([, s]) => !('handshake' in s) && !('direction' in s)).map(([k]) => k).sort();
  t.same(Object.keys(handlers).sort(), ops);
});

t.test('F2: a read-scoped token calling approve, grant or pair operations gets forbidden and an authz.denied audit entry each, over WebSocket and /mcp', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
  const CLI = { kind: 'cli', user: 'test' };
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
  const admin = await connect(gw);
  t.teardown(() => admin.conn.ws.close());
  const paused = (await admin.conn.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'x', body: '' }, wait_ms: 5000 }, 10_000)).result as { run_id: string; state: string; approval_id: string };
  t.equal(paused.state, 'paused', 'a call waits for an approval');
  const grantBefore = JSON.stringify(gw.plugins.get('notes'));

  const { token, record } = await gw.tokens.create({ scopes: ['operator.read'], label: 'reader', createdBy: 'test' });
  const reader = await connect(gw, { token });
  t.teardown(() => reader.conn.ws.close());

  // The row's operations with real payloads, then every other operation the read scope does not
  // cover (pairing.* included): authorization comes before the payload check.
  const named: Record<string, Record<string, unknown>> = {
    'approval.resolve': { approval_id: paused.approval_id, decision: 'approved', mode: 'always' },
    'run.resolve': { run_id: paused.run_id, step_idx: 0, action: 'retry' },
    'plugin.grant': { plugin_id: 'notes', all_requested: true, accept_risks: ['state_changing', 'storage'] },
    'plugin.revoke': { plugin_id: 'notes' },
    'plugin.enable': { plugin_id: 'notes' },
    'plugin.disable': { plugin_id: 'notes' },
  };
  const notRead = Object.entries(OPERATIONS)
    .filter(([, s]) => !('handshake' in s) && s.scopes !== 'any' && !(s.scopes as readonly string[]).includes('operator.read'))
    .map(([k]) => k);
  for (const op of Object.keys(named)) t.ok(notRead.includes(op), `${op} is outside operator.read`);
  const pairing = notRead.filter((k) => k.startsWith('pairing.'));
  t.same(pairing.sort(), ['pairing.approve', 'pairing.deny', 'pairing.list', 'pairing.revoke'], 'the pair operations are in the sweep');

  for (const op of notRead) {
    const r = await reader.conn.request(op, named[op] ?? {});
    const spec = OPERATIONS[op as keyof typeof OPERATIONS] as { scopes: readonly string[] };
    t.match(r, { ok: false, error: { code: 'forbidden', details: { required_scopes: [...spec.scopes] } } }, `${op}: forbidden`);
  }
  await gw.audit.flush();
  const denied = listAudit(gw.store, { type: 'authz.denied', limit: 1000 }).filter((e) => e.actor.id === record.id);
  t.same(denied.map((e) => e.data.request_type), notRead, 'one authz.denied entry per refused operation, in order');
  t.ok(denied.every((e) => e.data.device_id === reader.device.device_id && e.data.reason === 'scope'), 'each names the device and the reason');

  t.match(gw.approvals.get(paused.approval_id), { state: 'pending' }, 'the approval is still pending');
  t.equal(JSON.stringify(gw.plugins.get('notes')), grantBefore, 'the grant and state of the plugin are unchanged');

  // /mcp offers none of these operations; the only thing a reader could try there, a call, is
  // forbidden and audited the same way.
  const mcp = new Client({ name: 'f2', version: '1.0.0' });
  await mcp.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gw.port}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  t.teardown(() => mcp.close());
  const listed = (await mcp.listTools()).tools.map((x) => x.name);
  t.notOk(listed.some((n) => Object.hasOwn(OPERATIONS, n)), 'no protocol operation is offered as an MCP tool');
  for (const name of ['approval.resolve', 'notes.add_note']) {
    await t.rejects(mcp.callTool({ name, arguments: { approval_id: paused.approval_id, decision: 'approved' } }), { code: MCP_ERR_FORBIDDEN, data: { code: 'TYRUM_ERR_FORBIDDEN', wire: 'forbidden' } }, `/mcp tools/call ${name}: forbidden`);
  }
  await gw.audit.flush();
  const viaMcp = listAudit(gw.store, { type: 'authz.denied', limit: 1000 }).filter((e) => e.actor.id === record.id && e.data.mcp_method === 'tools/call');
  t.equal(viaMcp.length, 2, 'both /mcp refusals audited');
  t.ok(viaMcp.every((e) => e.data.request_type === 'tool.invoke' && e.data.device_id === 'mcp'));
  t.match(gw.approvals.get(paused.approval_id), { state: 'pending' }, 'still pending');
});
