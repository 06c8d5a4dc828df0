import t from 'tap';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { listAudit } from '../../../core/audit/index.js';
import { MCP_ERR_FORBIDDEN, STATUS_TOOL, WAIT_META_KEY } from '../../../core/mcp/endpoint.js';
import { CLI, setup, mcpUrl, mcpClient, text, runMeta, rawInit } from './endpoint-fixture.js';

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
