import t from 'tap';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, removeHome, connect } from '../../helpers/gateway.js';
import { MCP_ERR_RATE_LIMITED, MCP_ERR_UNAUTHORIZED, STATUS_TOOL } from '../../../core/mcp/endpoint.js';
import { NOTES, FLAKY, CLI, setup, mcpUrl, mcpClient, text, runMeta, rawInit, postRaw, until, callItem, type RpcAnswer } from './endpoint-fixture.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

t.test('a token revoked while its call waits ends the wait', async (t) => {
  const { gw, token, tokenId } = await setup(t);
  const client = await mcpClient(t, gw, token);
  let revoked = false;
  await t.rejects(
    client.callTool({ name: 'notes.add_note', arguments: { title: 'x', body: '' } }, undefined, {
      onprogress: () => {
        if (revoked) return;
        revoked = true;
        gw.tokens.revoke(tokenId);
      },
    }),
    { code: MCP_ERR_UNAUTHORIZED, message: /TYRUM_ERR_UNAUTHORIZED/ },
  );
});

t.test('closing the gateway answers a waiting call instead of hanging', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  let onWait!: () => void;
  const waiting = new Promise<void>((resolve) => (onWait = resolve));
  const call = client.callTool({ name: 'notes.add_note', arguments: { title: 'x', body: '' } }, undefined, { onprogress: () => onWait() });
  await waiting;
  const started = Date.now();
  await gw.server.close();
  t.ok(Date.now() - started < 5000, 'the server closed promptly');
  const r = (await call) as CallToolResult;
  t.equal(r.isError, true);
  t.match(text(r), /^Approval required/, 'the call answered with what it had: the run id to poll later');
});

t.test('a wait longer than the socket idle timeout survives (SSE keep-alive)', async (t) => {
  const gw = await startTestGateway({ config: { limits: { http_request_timeout_ms: 1000, http_headers_timeout_ms: 1000 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, NOTES, NOTES_RISKS);
  const client = await mcpClient(t, gw, gw.adminToken);
  let timer: NodeJS.Timeout | undefined;
  t.teardown(() => clearTimeout(timer));
  const started = Date.now();
  const r = (await client.callTool({ name: 'notes.add_note', arguments: { title: 'slow', body: '' } }, undefined, {
    onprogress: (p) => {
      const id = /approval (\S+) for run/.exec(p.message ?? '')?.[1];
      if (id !== undefined && timer === undefined) {
        timer = setTimeout(() => {
          gw.approvals.resolve(id, { decision: 'approved' }, CLI);
          gw.engine.kick();
        }, 2500);
      }
    },
  })) as CallToolResult;
  t.ok(Date.now() - started >= 2500, 'the call waited past the idle timeout');
  t.notOk(r.isError, text(r));
  t.match(r.structuredContent, { title: 'slow' });
});

t.test('requests in flight per token are bounded by max_inflight_requests', async (t) => {
  const gw = await startTestGateway({ config: { limits: { max_inflight_requests: 1 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, NOTES, NOTES_RISKS);
  const client = await mcpClient(t, gw, gw.adminToken);
  let approvalId = '';
  let onWait!: () => void;
  const waiting = new Promise<void>((resolve) => (onWait = resolve));
  const call = client.callTool({ name: 'notes.add_note', arguments: { title: 'one', body: '' } }, undefined, {
    onprogress: (p) => {
      approvalId = /approval (\S+) for run/.exec(p.message ?? '')?.[1] ?? approvalId;
      onWait();
    },
  });
  await waiting;
  const second = await mcpClient(t, gw, gw.adminToken);
  t.pass('initialize takes no slot: a client can still connect');
  await t.rejects(second.callTool({ name: 'notes.add_note', arguments: { title: 'two', body: '' } }), {
    code: MCP_ERR_RATE_LIMITED,
    message: /^MCP error -32005: TYRUM_ERR_RATE_LIMITED: more than 1 requests in flight for this token/,
    data: { code: 'TYRUM_ERR_RATE_LIMITED', wire: 'rate_limited' },
  });
  await t.rejects(second.listTools(), { code: MCP_ERR_RATE_LIMITED }, 'tools/list takes a slot too');
  gw.approvals.resolve(approvalId, { decision: 'approved' }, CLI);
  gw.engine.kick();
  t.notOk(((await call) as CallToolResult).isError);
  t.ok((await second.listTools()).tools.length > 0, 'the slot is free again');
});

t.test('a tool imported from an external MCP server is served through /mcp as its server answers it, from the approved definition', async (t) => {
  const { gw, token } = await setup(t);
  const everything = new URL('../../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url).pathname;
  await gw.mcp.add({ name: 'everything', spec: { transport: 'stdio', command: process.execPath, args: [everything, 'stdio'] } }, CLI);
  await gw.mcpHost.reconcile();
  await gw.mcpHost.settled();
  await gw.mcp.approve('everything', { tools: ['echo', 'get-structured-content'], readOnly: ['echo', 'get-structured-content'] }, CLI);
  await gw.mcpHost.reconcile();
  const client = await mcpClient(t, gw, token);
  const { tools } = await client.listTools();
  const echo = tools.find((x) => x.name === 'mcp.everything.echo');
  t.match(echo, { description: 'Echoes back the input string', inputSchema: { type: 'object', required: ['message'] }, annotations: { readOnlyHint: true } });
  t.notOk(tools.some((x) => x.name === 'mcp.everything.get-env'), 'a tool that was not approved is not offered');
  const r = (await client.callTool({ name: 'mcp.everything.echo', arguments: { message: 'hi' } })) as CallToolResult;
  t.notOk(r.isError);
  t.same(r.content, [{ type: 'text', text: 'Echo: hi' }], "the server's content, not a JSON wrapper");
  t.match(runMeta(r), { state: 'succeeded' });
  const listed = tools.find((x) => x.name === 'mcp.everything.get-structured-content');
  const s = (await client.callTool({ name: 'mcp.everything.get-structured-content', arguments: { location: 'New York' } })) as CallToolResult;
  t.notOk(s.isError, 'structured content validates against the outputSchema the client was given');
  t.ok(listed?.outputSchema === undefined || typeof s.structuredContent === 'object');
});

t.test('tyrum_run_status refuses arguments outside its listed inputSchema with a clear tool error', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  for (const args of [{ run_id: 5 }, { run_id: 'run_x', wait_ms: 600_000 }, { run_id: 'run_x', extra: true }, {}]) {
    const r = (await client.callTool({ name: STATUS_TOOL, arguments: args as Record<string, unknown> })) as CallToolResult;
    t.equal(r.isError, true, JSON.stringify(args));
    t.match(text(r), /TYRUM_ERR_INVALID_REQUEST.*tyrum_run_status takes/);
  }
});


t.test('JSON-RPC batch items count against the token\'s in-flight budget, which its WebSocket connections share', async (t) => {
  const gw = await startTestGateway({ config: { limits: { max_inflight_requests: 4 } } });
  t.teardown(async () => {
    // The hanging MCP calls end with their server (else the engine would wait out their timeout).
    await gw.mcpHost.close();
    await gw.close();
    removeHome(gw.home);
  });
  await installEnabled(gw.plugins, NOTES, NOTES_RISKS);
  await gw.mcp.add({ name: 'flaky', spec: { transport: 'stdio', command: process.execPath, args: [FLAKY], call_timeout_ms: 120_000 } }, CLI);
  await gw.mcpHost.reconcile();
  await gw.mcpHost.settled(15_000);
  await gw.mcp.approve('flaky', { tools: ['hang', 'ping'], readOnly: ['hang', 'ping'] }, CLI);
  const { token, record } = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], label: 'shared budget', createdBy: 'test' });
  const other = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], createdBy: 'test' });
  const runsOf = (id: string) => gw.engine.list({ limit: 1000 }).filter((r) => r.created_by === id);

  // WebSocket first: two calls that never answer hold 2 of the token's 4 slots.
  const { conn } = await connect(gw, { token });
  t.teardown(() => conn.ws.close());
  const held = [conn.request('tool.invoke', { tool_id: 'mcp.flaky.hang', args: {}, wait_ms: 60_000 }, 90_000), conn.request('tool.invoke', { tool_id: 'mcp.flaky.hang', args: {}, wait_ms: 60_000 }, 90_000)];
  await until('two hanging runs', () => runsOf(record.id).filter((r) => r.state === 'running').length === 2);

  // Three batches of five calls that wait for an approval, sent at once: 2 slots are left.
  const batches = [0, 1, 2].map((b) => postRaw(gw, token, [1, 2, 3, 4, 5].map((i) => callItem(b * 10 + i, 'notes.add_note', { title: `b${b}i${i}`, body: '' }))));
  const limited = () => batches.flatMap((b) => b.answers).filter((a) => a.error?.code === MCP_ERR_RATE_LIMITED);
  await until('13 batch items refused', () => limited().length >= 13);
  await until('two approvals requested', () => gw.approvals.list({ state: 'pending' }).length === 2);
  t.equal(runsOf(record.id).length, 4, 'runs bounded by the budget: 2 from WebSocket, 2 from the batches');
  t.match(limited()[0], { error: { message: /^TYRUM_ERR_RATE_LIMITED: /, data: { code: 'TYRUM_ERR_RATE_LIMITED', wire: 'rate_limited' } } });
  t.ok(limited().every((a) => typeof a.id === 'number'), 'each refused item is answered under its own id');
  for (const b of batches) t.equal(await b.status, 200, 'a batch is answered item by item, not refused whole');

  // The budget is the token's, whatever the door: a WebSocket request is refused now too.
  const ws = await conn.request('ping', {});
  t.match(ws, { ok: false, error: { code: 'rate_limited' } }, 'WebSocket shares the budget /mcp uses');
  const second = await connect(gw, { token });
  t.teardown(() => second.conn.ws.close());
  t.match(await second.conn.request('ping', {}), { ok: false, error: { code: 'rate_limited' } }, 'a new connection of the same token gets no fresh budget');
  const otherConn = await connect(gw, { token: other.token });
  t.teardown(() => otherConn.conn.ws.close());
  t.match(await otherConn.conn.request('ping', {}), { ok: true }, 'another token has its own budget');

  // Approved, the two running items finish; every item was answered exactly once.
  for (const a of gw.approvals.list({ state: 'pending' })) gw.approvals.resolve(a.id, { decision: 'approved' }, CLI);
  gw.engine.kick();
  await Promise.all(batches.map((b) => b.done));
  const all = batches.flatMap((b) => b.answers);
  t.same(all.map((a) => a.id).sort((x, y) => Number(x) - Number(y)), [1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 21, 22, 23, 24, 25], 'one answer per item');
  t.equal(all.filter((a) => a.result && !a.result.isError).length, 2, 'two calls ran and succeeded');
  t.equal(limited().length, 13);
  t.equal(runsOf(record.id).length, 4, 'nothing else ran');
  t.match(await conn.request('ping', {}), { ok: true }, 'the finished batch items gave their slots back');

  // Their server gone, the hanging calls end and give their slots back.
  await gw.mcpHost.close();
  for (const r of await Promise.all(held)) t.match(r, { ok: true, result: { state: 'failed' } });
  const pings = await Promise.all([1, 2, 3, 4].map(() => conn.request('ping', {})));
  t.ok(pings.every((p) => p.ok === true), 'the whole budget is free again');
});

t.test('a body that is not JSON-RPC gets a JSON-RPC error, never a bare HTTP error page', async (t) => {
  const gw = await startTestGateway({ config: { limits: { http_body_limit_bytes: 4096 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const post = async (body: string | undefined, contentType: string | null) => {
    const headers: Record<string, string> = { accept: 'application/json, text/event-stream', authorization: `Bearer ${gw.adminToken}` };
    if (contentType !== null) headers['content-type'] = contentType;
    const res = await fetch(mcpUrl(gw), { method: 'POST', headers, ...(body !== undefined ? { body } : {}) });
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as RpcAnswer };
  };
  const parse = { jsonrpc: '2.0', id: null, error: { code: -32700, message: /^TYRUM_ERR_INVALID_REQUEST: Parse error/, data: { code: 'TYRUM_ERR_INVALID_REQUEST', wire: 'invalid_request' } } };
  const cases: Array<[string, string | undefined, string | null, number, Record<string, unknown>]> = [
    ['malformed JSON', '{"jsonrpc":"2.0","id":1,"method":', 'application/json', 400, parse],
    ['an empty body', '', 'application/json', 400, parse],
    ['no body at all', undefined, 'application/json', 400, parse],
    ['a body of another type', '<rpc/>', 'application/xml', 415, { jsonrpc: '2.0', id: null, error: { code: -32000, message: /^TYRUM_ERR_INVALID_REQUEST: .*Content-Type must be application\/json/ } }],
    ['a text/plain body', '{}', 'text/plain', 415, { jsonrpc: '2.0', id: null, error: { code: -32000, message: /Content-Type must be application\/json/ } }],
    ['a body over the limit', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(8192) } }), 'application/json', 413, { jsonrpc: '2.0', id: null, error: { code: -32000, message: /^TYRUM_ERR_INVALID_REQUEST: .*4096/ } }],
    ['an empty batch', '[]', 'application/json', 400, { jsonrpc: '2.0', id: null, error: { code: -32600, message: /^TYRUM_ERR_INVALID_REQUEST: Invalid Request: an empty batch/ } }],
  ];
  for (const [what, body, type, status, expected] of cases) {
    const r = await post(body, type);
    t.equal(r.status, status, `${what}: HTTP ${status}`);
    t.match(r.type, /^application\/json/, `${what}: a JSON body`);
    t.match(r.body, expected, `${what}: a JSON-RPC error`);
  }
  const ok = await rawInit(gw, { authorization: `Bearer ${gw.adminToken}` });
  t.equal(ok.status, 200, 'a well-formed request still works');
});
