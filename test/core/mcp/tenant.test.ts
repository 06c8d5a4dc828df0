// POST /mcp for a token of a tenant other than the default (docs/tenancy.md): tools/list offers
// what the tenant's tool.list shows, less what the host's policy denies, without policy.explain
// (a host operation); tools/call makes runs the tenant owns, and a tool the tenant may not call is
// refused with a coded error, as tool.invoke refuses it.
import t, { type Test } from 'tap';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import { RUN_META_KEY, STATUS_TOOL } from '../../../core/mcp/endpoint.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

const PLUGINS = new URL('../../../plugins/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

async function mcpClient(t: Test, gw: TestGateway, token: string): Promise<Client> {
  const client = new Client({ name: 'tyrum-tenant-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gw.port}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  t.teardown(() => client.close());
  return client;
}

t.test("a tenant's token lists and calls its tenant's tools through /mcp", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  for (const id of ['text-utils', 'notes']) {
    await installEnabled(gw.plugins, `${PLUGINS}${id}/build`, id === 'notes' ? NOTES_RISKS : []);
  }
  gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'no-word-count', decision: 'deny', match: { tools: ['text-utils.word_count'] } }] }, 'test');
  gw.store.tx(() => gw.store.tenants.insert({ id: 'acme', label: 'tenant acme', created_at: Date.now() }));
  // The tenant's own grants: text-utils yes, notes no (the host's grant gives a tenant nothing).
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI, 'acme');
  const acme = await gw.tokens.create({ scopes: ['operator.read', 'operator.write'], tenant: 'acme', createdBy: 'cli', label: 'acme mcp' });
  const client = await mcpClient(t, gw, acme.token);

  // tools/list: the tenant's tool.list, less the policy's denials, plus the status tool.
  const ws = (await connect(gw, { token: acme.token })).conn;
  t.teardown(() => ws.ws.close());
  const tenantTools = ((await ws.request('tool.list', {})).result as { tools: Array<{ tool_id: string }> }).tools.map((x) => x.tool_id);
  t.ok(tenantTools.includes('text-utils.word_count') && !tenantTools.some((id) => id.startsWith('notes.')), "tool.list shows the tenant text-utils' tools, not notes, which the tenant has not granted");
  const { tools } = await client.listTools();
  const names = tools.map((x) => x.name).sort();
  t.same(names, [...tenantTools.filter((id) => id !== 'text-utils.word_count'), STATUS_TOOL].sort(), 'the tenant is offered its tools less the denied one, and the status tool');
  t.match(tools.find((x) => x.name === 'text-utils.transform'), { _meta: { 'tyrum/tool': { plugin_id: 'text-utils', policy: 'allow' } } });
  t.notOk(
    gw.store.committed.audit.page(0, 1000).some((e) => e.type === 'authz.denied'),
    'no authorization was denied on the way',
  );

  // tools/call: a run of the tenant.
  const r = (await client.callTool({ name: 'text-utils.transform', arguments: { text: 'Acme Corp', op: 'slug' } })) as CallToolResult;
  t.notOk(r.isError, JSON.stringify(r.content));
  t.same(r.structuredContent, { text: 'acme-corp' });
  const runId = (r._meta as Record<string, { run_id: string }>)[RUN_META_KEY]!.run_id;
  t.equal(gw.store.execution.runTenant(runId), 'acme', 'the run belongs to the tenant');
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());
  t.match(await host.request('run.get', { run_id: runId }), { ok: false, error: { code: 'not_found' } }, "the host does not see the tenant's run");
  const status = (await client.callTool({ name: STATUS_TOOL, arguments: { run_id: runId } })) as CallToolResult;
  t.match(status.structuredContent, { run_id: runId, state: 'succeeded', output: { text: 'acme-corp' } }, 'the status tool reads its own run');

  // A plugin the host granted but the tenant did not: unknown to the tenant, as an ungranted
  // plugin's tool is to the host (not_found), before any run exists.
  await t.rejects(client.callTool({ name: 'notes.list_notes', arguments: {} }), { code: -32602, message: /TYRUM_ERR_NOT_FOUND/, data: { code: 'TYRUM_ERR_NOT_FOUND', wire: 'not_found' } });
  t.same(((await ws.request('run.list', {})).result as { runs: Array<{ id: string }> }).runs.map((x) => x.id), [runId], 'the refused call made no run');
  // A tool the policy denies: the run fails as any caller's would.
  const denied = (await client.callTool({ name: 'text-utils.word_count', arguments: { text: 'a b' } })) as CallToolResult;
  t.equal(denied.isError, true);
  t.match((denied._meta as Record<string, { error: { code: string } }>)[RUN_META_KEY], { state: 'failed', error: { code: 'TYRUM_ERR_POLICY_DENIED' } });

  // A refusal by scope is the tenant's: audited in its view, pushed to its clients, not the host's.
  const reader = await gw.tokens.create({ scopes: ['operator.read'], tenant: 'acme', createdBy: 'cli', label: 'acme reader' });
  const hostEvents: string[] = [];
  host.ws.on('message', (m: Buffer) => {
    const f = JSON.parse(m.toString()) as { type?: string; event_type?: string };
    if (f.type === 'authz.denied' || f.event_type === 'authz.denied') hostEvents.push(m.toString());
  });
  const readerClient = await mcpClient(t, gw, reader.token);
  await t.rejects(readerClient.callTool({ name: 'text-utils.transform', arguments: { text: 'x', op: 'slug' } }), { message: /tool\.invoke/ });
  await gw.audit.flush();
  const acmeDenied = ((await ws.request('audit.list', { limit: 1000 })).result as { entries: Array<{ type: string; actor: { id?: string; tenant?: string } }> }).entries.filter((e) => e.type === 'authz.denied' && e.actor.id === reader.record.id);
  t.match(acmeDenied, [{ actor: { tenant: 'acme' } }], "the refusal is in the tenant's audit view, naming it");
  const hostDenied = ((await host.request('audit.list', { limit: 1000 })).result as { entries: Array<{ type: string; actor: { id?: string } }> }).entries.filter((e) => e.type === 'authz.denied' && e.actor.id === reader.record.id);
  t.same(hostDenied, [], "and not in the host's");
  t.same(hostEvents.filter((e) => e.includes(reader.record.id)), [], "nor pushed to the host's clients");

  // The host's token still needs policy.explain for tools/list and sees the whole catalog.
  const hostClient = await mcpClient(t, gw, gw.adminToken);
  const hostNames = (await hostClient.listTools()).tools.map((x) => x.name);
  t.ok(hostNames.includes('notes.list_notes'), "the host's token is offered the host's tools");

  // The tenant's own bundle (docs/tenancy.md, "Policy") denies a tool: gone from its list only.
  // (policy.set needs operator.admin, which this token lacks: set on the home, as `tyrum policy set --tenant acme`.)
  gw.policy.set({ policy_version: 1, mode: 'enforce', defaults: { state_changing: 'allow' }, rules: [{ id: 'acme-no-transform', decision: 'deny', match: { tools: ['text-utils.transform'] } }] }, 'cli:test', 'policy bundle', 'acme');
  t.notOk((await client.listTools()).tools.some((x) => x.name === 'text-utils.transform'), "the tenant's own deny takes the tool off its list");
  t.ok((await hostClient.listTools()).tools.some((x) => x.name === 'text-utils.transform'), "the host's list keeps it");
});
