// /mcp reuses its SDK servers across requests (core/mcp/endpoint.ts): sequential requests are
// served by one pooled Server rather than a new one each, and sharing servers never mixes callers:
// concurrent requests of two tokens under the same JSON-RPC id each get their own answer, decided
// by their own token's scopes.
import t, { type Test } from 'tap';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, removeHome } from '../../helpers/gateway.js';
import { MCP_ERR_FORBIDDEN } from '../../../core/mcp/endpoint.js';
import { listAudit } from '../../../core/audit/index.js';

const TEXT_UTILS = new URL('../../../plugins/text-utils/build/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

async function gateway(t: Test) {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await gw.plugins.install(TEXT_UTILS, CLI);
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI);
  await gw.plugins.enable('text-utils', CLI);
  return gw;
}

/** One tools/call POST under JSON-RPC id 1; the answer from the SSE (or JSON) body. */
async function call(port: number, token: string, text: string): Promise<{ id: unknown; result?: CallToolResult; error?: { code: number; message: string } }> {
  const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'text-utils.transform', arguments: { text, op: 'upper' } } }),
  });
  const body = await res.text();
  const json = (res.headers.get('content-type') ?? '').startsWith('text/event-stream')
    ? body
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
        .find((m) => 'result' in m || 'error' in m)
    : (JSON.parse(body) as Record<string, unknown>);
  if (json === undefined) throw new Error(`no answer in ${body}`);
  return json as { id: unknown; result?: CallToolResult; error?: { code: number; message: string } };
}

t.test('sequential requests reuse one SDK server instead of building one per request', async (t) => {
  const gw = await gateway(t);
  const { token } = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], createdBy: 'test' });
  const servers = new Set<Server>();
  let requests = 0;
  const connect = Server.prototype.connect;
  Server.prototype.connect = function (this: Server, ...args: Parameters<Server['connect']>) {
    servers.add(this);
    requests++;
    return connect.apply(this, args);
  };
  t.teardown(() => {
    Server.prototype.connect = connect;
  });
  const client = new Client({ name: 'reuse-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gw.port}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  t.teardown(() => client.close());
  for (let i = 0; i < 6; i++) {
    const r = (await client.callTool({ name: 'text-utils.transform', arguments: { text: `n${i}`, op: 'upper' } })) as CallToolResult;
    t.notOk(r.isError, `call ${i} succeeded`);
  }
  t.ok((await client.listTools()).tools.length > 0);
  t.ok(requests >= 8, `every HTTP request connected a server (${requests})`);
  // A request's server goes back to the pool as soon as its answer is out; allow one spare for a
  // close event that lands after the client's next request.
  t.ok(servers.size <= 2, `${requests} sequential requests were served by ${servers.size} server(s)`);
});

t.test('shared servers keep callers apart: concurrent requests with the same JSON-RPC id, different tokens', async (t) => {
  const gw = await gateway(t);
  const writer = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], createdBy: 'test' });
  const reader = await gw.tokens.create({ scopes: ['operator.read'], createdBy: 'test' });
  for (let round = 0; round < 3; round++) {
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? call(gw.port, writer.token, `w${round}${i}`).then((a) => ({ who: 'writer', i, a })) : call(gw.port, reader.token, `r${round}${i}`).then((a) => ({ who: 'reader', i, a })))),
    );
    for (const { who, i, a } of answers) {
      t.equal(a.id, 1, 'answered under its own id');
      if (who === 'writer') {
        t.notOk(a.error, `round ${round}: the writer's call ${i} ran`);
        t.match(JSON.stringify(a.result?.structuredContent ?? a.result), `W${round}${i}`, 'with its own arguments');
      } else {
        t.equal(a.error?.code, MCP_ERR_FORBIDDEN, `round ${round}: the reader's call ${i} is refused for its own scopes`);
      }
    }
  }
  await gw.audit.flush();
  const denials = listAudit(gw.store, { type: 'authz.denied', limit: 1000 });
  t.equal(denials.length, 9, 'one denial per reader call');
  t.ok(denials.every((d) => (d.actor as { id?: string }).id === reader.record.id), 'each denial is recorded against the reader, never the writer');
});
