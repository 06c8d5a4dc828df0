import t, { type Test } from 'tap';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import { listAudit } from '../../../core/audit/index.js';
import { MCP_ERR_FORBIDDEN, MCP_ERR_RATE_LIMITED, MCP_ERR_UNAUTHORIZED, RUN_META_KEY, STATUS_TOOL, WAIT_META_KEY } from '../../../core/mcp/endpoint.js';

const TEXT_UTILS = new URL('../../../plugins/text-utils/build/', import.meta.url).pathname;
const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const FLAKY = new URL('../../fixtures/mcp/flaky-server.mjs', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

type RunMeta = { run_id: string; state: string; approval_id: string | null; error: { code: string } | null };

/** A gateway with text-utils and notes enabled, word_count denied by policy, and a read+write token. */
async function setup(t: Test): Promise<{ gw: TestGateway; token: string; tokenId: string }> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(TEXT_UTILS, CLI);
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
  await gw.plugins.enable('text-utils', CLI);
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
  gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no-word-count', decision: 'deny', match: { tools: ['text-utils.word_count'] } }] }, 'test');
  const { token, record } = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], label: 'mcp client', createdBy: 'test' });
  return { gw, token, tokenId: record.id };
}

const mcpUrl = (gw: TestGateway) => new URL(`http://127.0.0.1:${gw.port}/mcp`);

/** An official SDK client connected to the gateway's /mcp with a bearer token. */
async function mcpClient(t: Test, gw: TestGateway, token: string): Promise<Client> {
  const client = new Client({ name: 'tyrum-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl(gw), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  t.teardown(() => client.close());
  return client;
}

const text = (r: CallToolResult) => (r.content[0] as { type: 'text'; text: string }).text;
const runMeta = (r: CallToolResult) => (r._meta as Record<string, RunMeta>)[RUN_META_KEY]!;

/** A raw MCP initialize POST (for status codes the SDK client hides). */
function rawInit(gw: TestGateway, headers: Record<string, string>, query = ''): Promise<Response> {
  return fetch(`http://127.0.0.1:${gw.port}/mcp${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
}

t.test('tools/list offers the tools policy lets the caller see, with our facts about them', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  t.match(client.getServerVersion(), { name: 'tyrum' });
  const { tools } = await client.listTools();
  const byName = new Map(tools.map((x) => [x.name, x]));
  t.match(byName.get('text-utils.transform'), {
    description: /Transform a text/,
    inputSchema: { type: 'object', required: ['text', 'op'] },
    outputSchema: { type: 'object', required: ['text'] },
    annotations: { readOnlyHint: true },
    _meta: { 'tyrum/tool': { plugin_id: 'text-utils', effect: 'read_only', policy: 'allow', definition_hash: /^[0-9a-f]{64}$/ } },
  });
  t.match(byName.get('notes.add_note'), { annotations: { readOnlyHint: false }, _meta: { 'tyrum/tool': { effect: 'state_changing', policy: 'require_approval' } } });
  t.notOk(byName.has('text-utils.word_count'), 'a tool the policy denies is not offered');
  t.match(byName.get(STATUS_TOOL), { inputSchema: { type: 'object', required: ['run_id'] }, annotations: { readOnlyHint: true } });
});

t.test('tools/call runs a read_only tool through the durable pipeline and audits it', async (t) => {
  const { gw, token, tokenId } = await setup(t);
  const client = await mcpClient(t, gw, token);
  const r = (await client.callTool({ name: 'text-utils.transform', arguments: { text: 'Crème Brûlée!', op: 'slug' } })) as CallToolResult;
  t.notOk(r.isError);
  t.same(r.structuredContent, { text: 'creme-brulee' });
  t.same(JSON.parse(text(r)), { text: 'creme-brulee' });
  t.match(runMeta(r), { run_id: /^run_/, state: 'succeeded', approval_id: null, error: null });
  const run = gw.engine.get(runMeta(r).run_id);
  t.match(run, { run: { created_by: tokenId, state: 'succeeded' }, steps: [{ tool_id: 'text-utils.transform', policy: { decision: 'allow' } }] }, 'a durable run owned by the token');

  await gw.audit.flush();
  t.match(listAudit(gw.store, { type: 'tool.invoked', limit: 1000 }), [{ actor: { kind: 'token', id: tokenId }, data: { tool_id: 'text-utils.transform' } }]);
  t.match(listAudit(gw.store, { type: 'run.submitted', limit: 1000 }), [{ actor: { kind: 'token', id: tokenId, device_id: 'mcp' }, data: { run_id: runMeta(r).run_id } }], 'the actor shows the call came through MCP');

  const denied = (await client.callTool({ name: 'text-utils.word_count', arguments: { text: 'a b' } })) as CallToolResult;
  t.equal(denied.isError, true, 'a hidden (denied) tool called anyway fails through policy');
  t.match(text(denied), /TYRUM_ERR_POLICY_DENIED/);
  t.match(runMeta(denied), { state: 'failed', error: { code: 'TYRUM_ERR_POLICY_DENIED' } });
});

t.test('unknown tools are protocol errors; bad arguments are tool errors; both carry the Tyrum code', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  await t.rejects(client.callTool({ name: 'nope.nothing', arguments: {} }), { code: -32602, message: /^MCP error -32602: TYRUM_ERR_NOT_FOUND: unknown tool nope\.nothing$/, data: { code: 'TYRUM_ERR_NOT_FOUND', wire: 'not_found' } });
  await t.rejects(client.callTool({ name: 'Not A Tool', arguments: {} }), { code: -32602, message: /TYRUM_ERR_NOT_FOUND/ });
  const bad = (await client.callTool({ name: 'text-utils.transform', arguments: { text: 'x', op: 'explode' } })) as CallToolResult;
  t.equal(bad.isError, true);
  t.match(text(bad), /TYRUM_ERR_INVALID_REQUEST .*input schema of text-utils\.transform/);
  await t.rejects(client.callTool({ name: 'text-utils.transform', arguments: { text: 'x', op: 'upper' }, _meta: { [WAIT_META_KEY]: -1 } }), { code: -32602, message: /tyrum\/wait_ms/ });
});

t.test('a call that needs approval says so, and tyrum_run_status gets the result once approved', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  const started = Date.now();
  const r = (await client.callTool({ name: 'notes.add_note', arguments: { title: 'Buy milk', body: '2 litres' }, _meta: { [WAIT_META_KEY]: 300 } })) as CallToolResult;
  t.ok(Date.now() - started < 5000, 'answered at the end of the client wait');
  t.equal(r.isError, true);
  t.notOk(r.structuredContent, 'no structuredContent on an error (the SDK client would check it against the output schema)');
  const meta = runMeta(r);
  t.match(meta, { run_id: /^run_/, state: 'paused', approval_id: /\S/ });
  t.equal(
    text(r),
    `Approval required: approval ${meta.approval_id} for run ${meta.run_id} (notes.add_note); an operator can approve it with \`tyrum approvals approve ${meta.approval_id}\`; call ${STATUS_TOOL} with {"run_id":"${meta.run_id}"} to get the result.`,
  );

  const pending = (await client.callTool({ name: STATUS_TOOL, arguments: { run_id: meta.run_id } })) as CallToolResult;
  t.notOk(pending.isError, 'reporting a pending run is not an error');
  t.match(pending.structuredContent, { run_id: meta.run_id, state: 'paused', approval_id: meta.approval_id, pause_reason: 'approval' });
  t.match(text(pending), /^Approval required/);

  gw.approvals.resolve(meta.approval_id!, { decision: 'approved' }, CLI);
  gw.engine.kick();
  const done = (await client.callTool({ name: STATUS_TOOL, arguments: { run_id: meta.run_id, wait_ms: 10_000 } })) as CallToolResult;
  t.notOk(done.isError);
  t.match(done.structuredContent, { run_id: meta.run_id, tool_id: 'notes.add_note', state: 'succeeded', output: { id: 'n1', title: 'Buy milk', created_seq: 1 } });

  const bad = (await client.callTool({ name: STATUS_TOOL, arguments: { run_id: meta.run_id, wait_ms: 600_000 } })) as CallToolResult;
  t.equal(bad.isError, true);
  t.match(text(bad), /TYRUM_ERR_INVALID_REQUEST/);
});

t.test('a call approved while the client waits completes in the same tools/call, with progress', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  const messages: string[] = [];
  let approved = false;
  const r = (await client.callTool({ name: 'notes.add_note', arguments: { title: 'Call mum', body: '' } }, undefined, {
    timeout: 20_000,
    onprogress: (p) => {
      messages.push(p.message ?? '');
      const id = /approval (\S+) for run/.exec(p.message ?? '')?.[1];
      if (id !== undefined && !approved) {
        approved = true;
        gw.approvals.resolve(id, { decision: 'approved' }, CLI);
        gw.engine.kick();
      }
    },
  })) as CallToolResult;
  t.notOk(r.isError, text(r));
  t.same(r.structuredContent, { id: 'n1', title: 'Call mum', created_seq: 1 });
  t.match(runMeta(r), { state: 'succeeded', approval_id: /\S/ });
  t.match(messages[0], /^Approval required: approval \S+ for run run_/, 'the first progress message names the approval');
});

t.test('a denied approval ends the waiting call with the Tyrum code', async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  const r = (await client.callTool({ name: 'notes.add_note', arguments: { title: 'No', body: '' } }, undefined, {
    onprogress: (p) => {
      const id = /approval (\S+) for run/.exec(p.message ?? '')?.[1];
      if (id !== undefined) {
        gw.approvals.resolve(id, { decision: 'denied', reason: 'not today' }, CLI);
        gw.engine.kick();
      }
    },
  })) as CallToolResult;
  t.equal(r.isError, true);
  t.match(text(r), /^Tool call failed: TYRUM_ERR_APPROVAL_DENIED \(policy_denied\)/);
  t.match(runMeta(r), { state: 'failed', error: { code: 'TYRUM_ERR_APPROVAL_DENIED' } });
});

t.test("another token's run is not visible through tyrum_run_status", async (t) => {
  const { gw, token } = await setup(t);
  const client = await mcpClient(t, gw, token);
  const r = (await client.callTool({ name: 'text-utils.transform', arguments: { text: 'a', op: 'upper' } })) as CallToolResult;
  const runId = runMeta(r).run_id;
  const mine = (await client.callTool({ name: STATUS_TOOL, arguments: { run_id: runId } })) as CallToolResult;
  t.match(mine.structuredContent, { state: 'succeeded', output: { text: 'A' } });

  const other = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], createdBy: 'test' });
  const otherClient = await mcpClient(t, gw, other.token);
  const theirs = (await otherClient.callTool({ name: STATUS_TOOL, arguments: { run_id: runId } })) as CallToolResult;
  const unknown = (await otherClient.callTool({ name: STATUS_TOOL, arguments: { run_id: 'run_doesnotexist' } })) as CallToolResult;
  t.equal(theirs.isError, true);
  t.equal(text(theirs), `Tool call refused: TYRUM_ERR_NOT_FOUND (not_found): no run ${runId}`);
  t.equal(text(unknown), 'Tool call refused: TYRUM_ERR_NOT_FOUND (not_found): no run run_doesnotexist', 'indistinguishable from a run that does not exist');
});

t.test('scopes: a read-only token lists tools but may not call them', async (t) => {
  const { gw } = await setup(t);
  const { token, record } = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  const client = await mcpClient(t, gw, token);
  t.ok((await client.listTools()).tools.some((x) => x.name === 'text-utils.transform'));
  await t.rejects(client.callTool({ name: 'text-utils.transform', arguments: { text: 'a', op: 'upper' } }), {
    code: MCP_ERR_FORBIDDEN,
    message: /^MCP error -32003: TYRUM_ERR_FORBIDDEN: tools\/call needs tool\.invoke, which requires one of: operator\.write$/,
    data: { code: 'TYRUM_ERR_FORBIDDEN', wire: 'forbidden', details: { required_scopes: ['operator.write'] } },
  });
  await gw.audit.flush();
  t.match(listAudit(gw.store, { type: 'authz.denied', limit: 1000 }), [{ actor: { id: record.id }, data: { request_type: 'tool.invoke', mcp_method: 'tools/call', device_id: 'mcp', connection_id: /^mcp-/ } }]);

  const writeOnly = await gw.tokens.create({ scopes: ['operator.write'], createdBy: 'test' });
  const w = await mcpClient(t, gw, writeOnly.token);
  await t.rejects(w.listTools(), { code: MCP_ERR_FORBIDDEN, message: /tools\/list needs tool\.list/ });
  await t.rejects(w.callTool({ name: STATUS_TOOL, arguments: { run_id: 'x' } }), { code: MCP_ERR_FORBIDDEN, message: /needs run\.get/ });
});

t.test('auth at the edge: bearer token only, Origin checked, revocation immediate', async (t) => {
  const { gw, token, tokenId } = await setup(t);
  const none = await rawInit(gw, {});
  t.equal(none.status, 401);
  t.match(none.headers.get('www-authenticate'), /^Bearer/);
  const bogus = await rawInit(gw, { authorization: 'Bearer tyrum_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
  t.equal(bogus.status, 401);
  t.equal((await rawInit(gw, {}, `?access_token=${token}`)).status, 401, 'a token in the query string is refused');
  t.equal((await rawInit(gw, {}, `?token=${token}`)).status, 401);

  const evil = await rawInit(gw, { authorization: `Bearer ${token}`, origin: 'http://evil.example' });
  t.equal(evil.status, 403);
  t.match(await evil.json(), { error: { code: 'forbidden' } });
  const own = await rawInit(gw, { authorization: `Bearer ${token}`, origin: `http://127.0.0.1:${gw.port}` });
  t.equal(own.status, 200, 'the gateway\'s own origin is allowed');
  t.match(await own.text(), /"serverInfo":\{"name":"tyrum"/);

  const node = await gw.tokens.create({ scopes: ['operator.read'], roles: ['node'], createdBy: 'test' });
  const nodeRes = await rawInit(gw, { authorization: `Bearer ${node.token}` });
  t.equal(nodeRes.status, 403, 'a token without the client role');

  for (const method of ['GET', 'DELETE']) {
    const res = await fetch(mcpUrl(gw), { method, headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } });
    t.equal(res.status, 405, `${method} /mcp: stateless, no server-initiated stream`);
    t.equal(res.headers.get('allow'), 'POST');
  }

  const client = await mcpClient(t, gw, token);
  t.ok((await client.listTools()).tools.length > 0);
  gw.tokens.revoke(tokenId);
  await t.rejects(client.listTools(), /401|nauthorized/, 'a revoked token stops working at once');
});

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
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
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
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
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

type RpcAnswer = { jsonrpc: '2.0'; id: number | string | null; result?: CallToolResult; error?: { code: number; message: string; data?: Record<string, unknown> } };

/**
 * POSTs a raw JSON-RPC body to /mcp and collects the answers as they arrive (an SSE stream, or one
 * JSON body): `answers` fills while the stream is open, `done` resolves when it ends.
 */
function postRaw(gw: TestGateway, token: string, body: unknown): { answers: RpcAnswer[]; status: Promise<number>; done: Promise<void> } {
  const answers: RpcAnswer[] = [];
  let status!: (s: number) => void;
  const statusP = new Promise<number>((resolve) => (status = resolve));
  const done = (async () => {
    const res = await fetch(mcpUrl(gw), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    status(res.status);
    if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      const text = await res.text();
      if (text !== '') {
        const parsed = JSON.parse(text) as RpcAnswer | RpcAnswer[];
        answers.push(...(Array.isArray(parsed) ? parsed : [parsed]));
      }
      return;
    }
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (data !== '') answers.push(JSON.parse(data) as RpcAnswer);
      }
    }
  })();
  return { answers, status: statusP, done };
}

/** Polls `fn` until it is truthy, or fails after `ms` (a hang guard, not a timing assertion). */
async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const callItem = (id: number, name: string, args: Record<string, unknown>, waitMs = 60_000) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: { [WAIT_META_KEY]: waitMs } } });

t.test('JSON-RPC batch items count against the token\'s in-flight budget, which its WebSocket connections share', async (t) => {
  const gw = await startTestGateway({ config: { limits: { max_inflight_requests: 4 } } });
  t.teardown(async () => {
    // The hanging MCP calls end with their server (else the engine would wait out their timeout).
    await gw.mcpHost.close();
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
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
