/**
 * Per-tenant plugin grants, key-value state and secrets (docs/tenancy.md, migration 22). A tenant
 * other than the default calls a plugin the host installed and enabled under its own grant, with
 * its own key-value namespace and its own secret handles; the host's grant, state and handles are
 * neither visible to it nor used for it, and its grant gives the host nothing.
 */
import t from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, removeHome, connect, externalQuery, type TestGateway, type RawConn } from '../../helpers/gateway.js';
import { CLI, PLUGINS, code, ok, tenantConn } from './helpers.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

async function gateway(t: { teardown(fn: () => unknown): void }): Promise<TestGateway> {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  return gw;
}

type Invoked = { state: string; output: Record<string, unknown> | null; error: { code?: string; message?: string; details?: Record<string, unknown> } | null; policy: { decision: string } | null };
const invoke = async (c: RawConn, tool_id: string, args: Record<string, unknown>): Promise<Invoked> => ok<Invoked>(await c.request('tool.invoke', { tool_id, args, wait_ms: 10_000 }, 15_000));

t.test('key-value state: the same plugin and key hold the host\'s value for the host and the tenant\'s for the tenant', async (t) => {
  const gw = await gateway(t);
  await installEnabled(gw.plugins, `${PLUGINS}notes/build`, NOTES_RISKS);
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());
  // Policy is the host's: adding notes needs no approval in this test, for anyone.
  ok(await host.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'notes', decision: 'allow', match: { tools: ['notes.*'] } }] } }));
  const acme = await tenantConn(gw, 'acme');
  t.teardown(() => acme.ws.close());
  const beta = await tenantConn(gw, 'beta');
  t.teardown(() => beta.ws.close());

  const hostNote = (await invoke(host, 'notes.add_note', { title: 'host title', body: 'host-private-body' })).output;
  t.match(hostNote, { id: 'n1', created_seq: 1 });

  // The host's grant gives the tenant nothing: refused as an ungranted plugin's tool is for the host.
  t.equal(code(await acme.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })), 'not_found');
  const granted = ok<{ plugin: { grant: unknown; blockers: string[]; effective: { kv: { quota_bytes: number } | null } } }>(
    await acme.request('plugin.grant', { plugin_id: 'notes', grant: { kv: { quota_bytes: 4096 } }, accept_risks: ['state_changing', 'storage'] }),
  ).plugin;
  t.same(granted.blockers, [], 'granted by the tenant and enabled by the host: callable');
  t.equal(granted.effective.kv?.quota_bytes, 4096, "the tenant's own quota");

  t.same((await invoke(acme, 'notes.list_notes', {})).output, { notes: [] }, "the tenant's namespace starts empty");
  const acmeNote = (await invoke(acme, 'notes.add_note', { title: 'acme title', body: 'acme-private-body' })).output;
  t.match(acmeNote, { id: 'n1', created_seq: 1 }, 'the same key (n1) in its own namespace');
  t.match((await invoke(acme, 'notes.get_note', { id: 'n1' })).output, { title: 'acme title', body: 'acme-private-body' });
  t.match((await invoke(host, 'notes.get_note', { id: 'n1' })).output, { title: 'host title', body: 'host-private-body' }, 'the host reads its own value of the same key');
  t.same((await invoke(host, 'notes.list_notes', {})).output, { notes: [{ id: 'n1', title: 'host title' }] });
  t.same(gw.host.liveSandboxes().sort(), ['acme/notes', 'notes'], 'the tenant runs in a sandbox of its own');

  // The quota is the tenant's grant's: 4 KiB, whatever the host granted.
  const big = await invoke(acme, 'notes.add_note', { title: 'big', body: 'x'.repeat(5000) });
  t.not(big.state, 'succeeded', "a write beyond the tenant's quota fails");

  // Another tenant with its own grant sees neither.
  ok(await beta.request('plugin.grant', { plugin_id: 'notes', all_requested: true, accept_risks: ['state_changing', 'storage'] }));
  t.same((await invoke(beta, 'notes.list_notes', {})).output, { notes: [] }, 'tenant beta sees none of acme\'s notes nor the host\'s');
  t.equal((await invoke(beta, 'notes.get_note', { id: 'n1' })).state, 'failed', 'nor its key n1');

  // Where it is stored: the host's rows as before, each tenant's beside them.
  const hostRows = externalQuery(gw.home, 'SELECT key FROM plugin_kv WHERE plugin_id = ? ORDER BY key', ['notes']);
  const tenantRows = externalQuery(gw.home, 'SELECT tenant_id, key FROM tenant_plugin_kv WHERE plugin_id = ? ORDER BY tenant_id, key', ['notes']);
  t.ok(hostRows.length > 0 && tenantRows.length > 0);
  t.ok(tenantRows.every((r) => r.tenant_id === 'acme'), 'only acme has written');
  t.same(tenantRows.map((r) => r.key), hostRows.map((r) => r.key), 'the same keys, in two namespaces');

  // A tenant's revoke withdraws its own grant only; removing the plugin removes every tenant's state.
  ok(await beta.request('plugin.revoke', { plugin_id: 'notes' }));
  t.equal(code(await beta.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })), 'not_found');
  t.equal((await invoke(acme, 'notes.list_notes', {})).state, 'succeeded', "acme's grant is untouched");
  t.equal((await invoke(host, 'notes.list_notes', {})).state, 'succeeded', "the host's is untouched");
  await gw.plugins.remove('notes', CLI);
  t.same(externalQuery(gw.home, 'SELECT COUNT(*) AS n FROM tenant_plugin_kv', []).map((r) => Number(r.n)), [0]);
  t.same(externalQuery(gw.home, 'SELECT COUNT(*) AS n FROM tenant_plugin_grants', []).map((r) => Number(r.n)), [0]);
});

t.test("secrets: a tenant's call injects the tenant's handle, the host's the host's; policy decides on the tenant's grant", async (t) => {
  const HOST_VALUE = `host-token-${Math.random().toString(36).slice(2)}`;
  const ACME_VALUE = `acme-token-${Math.random().toString(36).slice(2)}`;
  const seen: Array<string | undefined> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers.authorization);
    res.setHeader('content-type', 'application/json');
    // A careless API: echoes the credential, and shows both values whoever asks.
    res.end(JSON.stringify({ echoed: req.headers.authorization ?? null, values: [HOST_VALUE, ACME_VALUE] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;
  const grant = { egress: [{ host: '127.0.0.1', scheme: 'http' as const, port }], secrets: [{ name: 'API_TOKEN', destinations: [origin] }] };

  const gw = await gateway(t);
  gw.secrets.set('API_TOKEN', Buffer.from(HOST_VALUE), [origin]);
  gw.secrets.set('HOST_ONLY', Buffer.from('host-only-value'), [origin]);
  await gw.plugins.install(`${PLUGINS}http-api/build`, CLI);
  await gw.plugins.grant('http-api', { grant, acceptRisks: ['network', 'secrets'] }, CLI);
  await gw.plugins.configure('http-api', { base_url: origin }, CLI);
  await gw.plugins.enable('http-api', CLI);
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());
  const acme = await tenantConn(gw, 'acme');
  t.teardown(() => acme.ws.close());
  const beta = await tenantConn(gw, 'beta');
  t.teardown(() => beta.ws.close());
  gw.secrets.set('API_TOKEN', Buffer.from(ACME_VALUE), [origin], { tenant: 'acme' });
  gw.secrets.set('ACME_ONLY', Buffer.from('acme-only-value'), [origin], { tenant: 'acme' });

  // secret.list: each tenant its own handles only.
  const names = async (c: RawConn) => ok<{ secrets: Array<{ name: string }> }>(await c.request('secret.list', {})).secrets.map((s) => s.name);
  t.same(await names(host), ['API_TOKEN', 'HOST_ONLY']);
  t.same(await names(acme), ['ACME_ONLY', 'API_TOKEN']);
  t.same(await names(beta), []);

  for (const c of [acme, beta]) ok(await c.request('plugin.grant', { plugin_id: 'http-api', grant, accept_risks: ['network', 'secrets'] }));

  const hostCall = await invoke(host, 'http-api.get_json', { path: '/v1/items' });
  t.equal(hostCall.state, 'succeeded', JSON.stringify(hostCall.error));
  t.equal(seen.at(-1), `Bearer ${HOST_VALUE}`, "the host's call carried the host's handle");
  const acmeCall = await invoke(acme, 'http-api.get_json', { path: '/v1/items' });
  t.equal(acmeCall.state, 'succeeded', JSON.stringify(acmeCall.error));
  t.equal(seen.at(-1), `Bearer ${ACME_VALUE}`, "the tenant's call carried the tenant's handle of the same name");
  for (const [who, out] of [['host', hostCall], ['acme', acmeCall]] as const) {
    const text = JSON.stringify(out);
    t.notOk(text.includes(HOST_VALUE) || text.includes(ACME_VALUE), `${who}: every tenant's value is redacted from the output`);
    t.match(text, /\[REDACTED:API_TOKEN\]/);
  }

  // Tenant beta has no API_TOKEN: a missing handle, as for the host; the host's is never used.
  const before = seen.length;
  const betaCall = await invoke(beta, 'http-api.get_json', { path: '/v1/items' });
  t.equal(betaCall.state, 'failed');
  t.match(JSON.stringify(betaCall.error), /secret_missing|not set/);
  t.equal(seen.length, before, 'nothing was sent');
  gw.secrets.remove('API_TOKEN');
  const hostMissing = await invoke(host, 'http-api.get_json', { path: '/v1/items' });
  t.equal(hostMissing.state, 'failed');
  t.equal(hostMissing.error?.code, betaCall.error?.code, "the tenant's missing handle fails as the host's does");
  t.equal((await invoke(acme, 'http-api.get_json', { path: '/v1/items' })).state, 'succeeded', "the host's removal leaves acme's handle");
  gw.secrets.set('API_TOKEN', Buffer.from(HOST_VALUE), [origin]);

  // Policy decides a tenant's call on the tenant's grant: acme grants no secret now.
  ok(await acme.request('plugin.grant', { plugin_id: 'http-api', grant: { egress: grant.egress }, accept_risks: ['network', 'secrets'] }));
  ok(await host.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'no-api-token', decision: 'deny', match: { secrets: ['API_TOKEN'] } }] } }));
  t.equal((await invoke(host, 'http-api.get_json', { path: '/v1/items' })).policy?.decision, 'deny', "the host's grant names API_TOKEN: denied");
  t.equal((await invoke(acme, 'http-api.get_json', { path: '/v1/items' })).policy?.decision, 'allow', "acme's grant names no secret: allowed");
  t.equal((await invoke(beta, 'http-api.get_json', { path: '/v1/items' })).policy?.decision, 'deny', "beta's grant names API_TOKEN: denied");
  // policy.explain answers as the calls are decided: on the caller's tenant's grant, never the host's.
  const explained = ok<{ decision: string; text: string }>(await acme.request('policy.explain', { tool_id: 'http-api.get_json' }));
  t.equal(explained.decision, 'allow', "acme's explain: its own grant (no secret)");
  t.match(explained.text, /secrets \(none\)/, "acme's explain shows its grant's secrets (none)");
  t.notMatch(explained.text, /API_TOKEN/, "nor the host's secret handle names");
  t.equal(ok<{ decision: string }>(await host.request('policy.explain', { tool_id: 'http-api.get_json' })).decision, 'deny', "the host's explain: its grant");

  // Egress by a tenant's sandbox is audited as the tenant's.
  await gw.audit.flush();
  const acmeAudit = ok<{ entries: Array<{ type: string }> }>(await acme.request('audit.list', { limit: 1000 })).entries.map((e) => e.type);
  t.ok(acmeAudit.includes('egress.request'), "the tenant's hops are in its audit view");
  t.ok(acmeAudit.includes('plugin.granted'), 'so are its grants');
  t.ok(acmeAudit.includes('tool.invoked'), 'and its calls');
  const hostAudit = ok<{ entries: Array<{ type: string; actor: { tenant?: string } }> }>(await host.request('audit.list', { limit: 1000 })).entries;
  t.ok(hostAudit.every((e) => e.actor.tenant === undefined), "the host's view has none of the tenants' entries");
});
