/**
 * A tenant's agent turn is offered only the tools its tenant may call (docs/tenancy.md): the
 * request the model backend receives (a local OpenAI-shaped server, test/helpers/mock-openai.ts)
 * lists the tenant's tools, never the names or schemas of the host's stateful plugin tools; the
 * host's conversation is offered the whole catalog. A call the model makes anyway to a tool it
 * was not offered is answered as an unknown tool and never runs.
 */
import t from 'tap';
import { SCOPES } from '../../../schemas/index.js';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import { startMockOpenAi, type MockRequest } from '../../helpers/mock-openai.js';
import { setBackend } from '../../../core/conversations/settings.js';
import { functionName } from '../../../core/conversations/turns.js';
import { CLI, PLUGINS, ok } from './helpers.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

async function until<T>(what: string, pick: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The function names a model request offered. */
const offered = (r: MockRequest): string[] => ((r.body as { tools?: Array<{ function: { name: string } }> }).tools ?? []).map((x) => x.function.name).sort();

async function turnEnded(gw: TestGateway, conv: string) {
  return until('the turn to end', () => gw.store.conversations.turns(conv, 1).find((x) => x.state === 'completed' || x.state === 'failed'));
}

t.test("a tenant's turn is offered the tools its tenant may call; the host's turn the whole catalog", async (t) => {
  // First request of each conversation: try the host's stateful tool; then answer.
  const notesList = functionName('notes.list_notes');
  const model = await startMockOpenAi({
    script: (req) => ((req.body as { messages: Array<{ role: string }> }).messages.some((m) => m.role === 'tool') ? { content: 'done' } : { tool_calls: [{ id: 'c1', name: notesList, arguments: '{}' }] }),
  });
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    await model.close();
    removeHome(gw.home);
  });
  for (const id of ['text-utils', 'notes']) {
    await installEnabled(gw.plugins, `${PLUGINS}${id}/build`, id === 'notes' ? NOTES_RISKS : []);
  }
  // notes calls would wait for approval; allow them so the host's call runs at once.
  gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'notes-ok', decision: 'allow', match: { tools: ['notes.*'] } }] }, 'test');
  setBackend(gw.store, gw.secrets, { baseUrl: model.url, model: 'scripted', maxSteps: 3 });
  gw.store.tx(() => gw.store.tenants.insert({ id: 'acme', label: 'tenant acme', created_at: Date.now() }));
  // The tenant's own grants: text-utils yes, notes no (the host's grant gives a tenant nothing).
  await gw.plugins.grant('text-utils', { allRequested: true }, CLI, 'acme');
  const acmeToken = (await gw.tokens.create({ scopes: [...SCOPES], tenant: 'acme', createdBy: 'cli', label: 'acme admin' })).token;
  const a = (await connect(gw, { token: acmeToken })).conn;
  t.teardown(() => a.ws.close());
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());

  const tenantTools = ok<{ tools: Array<{ tool_id: string }> }>(await a.request('tool.list', {})).tools.map((x) => functionName(x.tool_id)).sort();
  const hostTools = ok<{ tools: Array<{ tool_id: string }> }>(await host.request('tool.list', {})).tools.map((x) => functionName(x.tool_id)).sort();
  t.ok(tenantTools.length > 0 && tenantTools.every((n) => n.startsWith('text-utils__')), "the tenant is offered the tools of the plugin it granted only");
  t.ok(hostTools.includes(notesList), 'the host has the stateful notes tools');

  // The tenant's conversation.
  const aConv = ok<{ conversation: { conversation_id: string } }>(await a.request('conversation.create', {})).conversation.conversation_id;
  ok(await a.request('conversation.send', { conversation_id: aConv, text: 'list my notes' }));
  t.equal((await turnEnded(gw, aConv)).state, 'completed');
  const aRequests = model.requests.filter((r) => JSON.stringify(r.body).includes('list my notes'));
  t.ok(aRequests.length >= 1, 'the model was asked');
  for (const r of aRequests) t.same(offered(r), tenantTools, "every model request of the tenant's turn offers exactly the tenant's tools");
  t.notOk(aRequests.some((r) => JSON.stringify((r.body as { tools?: unknown }).tools ?? []).includes('notes')), "no name or schema of the host's notes tools reaches the model");
  const aToolMsg = gw.store.conversations.lastMessages(aConv, 50).find((m) => m.role === 'tool');
  t.match(JSON.parse(aToolMsg?.content ?? '{}'), { ok: false, error: { code: 'TYRUM_ERR_NOT_FOUND' } }, 'a call to a tool the tenant was not offered is answered as unknown');
  t.equal(aToolMsg?.run_id ?? null, null, 'and never became a run');

  // The host's conversation: the whole catalog, and its call runs.
  const hConv = ok<{ conversation: { conversation_id: string } }>(await host.request('conversation.create', {})).conversation.conversation_id;
  ok(await host.request('conversation.send', { conversation_id: hConv, text: 'host lists notes' }));
  t.equal((await turnEnded(gw, hConv)).state, 'completed');
  const hRequests = model.requests.filter((r) => JSON.stringify(r.body).includes('host lists notes'));
  t.ok(hRequests.length >= 1);
  for (const r of hRequests) t.same(offered(r), hostTools, "the host's turn is offered the whole catalog");
  const hToolMsg = gw.store.conversations.lastMessages(hConv, 50).find((m) => m.role === 'tool');
  t.match(JSON.parse(hToolMsg?.content ?? '{}'), { ok: true }, "the host's call of notes.list_notes ran");
});
