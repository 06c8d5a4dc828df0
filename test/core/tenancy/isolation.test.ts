/**
 * TESTPLAN M4: a token of tenant A calls every operation of the registry on the ids of another
 * tenant's objects and gets not_found or forbidden, with none of that tenant's data in any answer
 * or pushed event. The list of operations comes from the registry: an operation added without a
 * case here fails this test. docs/tenancy.md.
 */
import t from 'tap';
import { OPERATIONS, TENANT_OPERATIONS, type OperationType } from '../../../schemas/index.js';
import { startTestGateway, removeHome, connect, newDevice, type TestGateway, type RawConn } from '../../helpers/gateway.js';
import { PLUGINS, code, createTenant, ok } from './helpers.js';
import { installEnabled, NOTES_RISKS } from '../registry/helpers.js';

async function enablePlugins(gw: TestGateway): Promise<void> {
  for (const id of ['text-utils', 'notes']) {
    await installEnabled(gw.plugins, `${PLUGINS}${id}/build`, id === 'notes' ? NOTES_RISKS : []);
  }
}

const newTenant = async (gw: TestGateway, id: string): Promise<string> => (await createTenant(gw, id)).token;

/** The run's state once it settles (paused, or terminal). */
async function settle(conn: RawConn, runId: string, until: (s: string) => boolean): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const r = ok<{ run: { state: string } }>(await conn.request('run.get', { run_id: runId }));
    if (until(r.run.state)) return r.run.state;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`run ${runId} did not settle`);
}

/** Every string of `markers` that is in `value` but not in what the caller itself sent. */
function leaked(value: unknown, markers: readonly string[], sent: unknown = {}): string[] {
  const text = JSON.stringify(value);
  const own = JSON.stringify(sent);
  return markers.filter((m) => text.includes(m) && !own.includes(m));
}

t.test("a token of one tenant calls every operation on another tenant's ids: not_found or forbidden, nothing leaked", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw);
  // Tenant A connects first, so everything the host tenant does below happens while it listens.
  const aToken = await newTenant(gw, 'acme');
  const a = (await connect(gw, { token: aToken })).conn;
  t.teardown(() => a.ws.close());
  const b = (await connect(gw)).conn;
  t.teardown(() => b.ws.close());

  // Objects of every kind in the host (default) tenant.
  const bAdminId = (await gw.tokens.list()).find((x) => x.label !== 'acme admin')!.id;
  const bRead = ok<{ info: { token_id: string } }>(await b.request('token.create', { scopes: ['operator.read'], label: 'b reader' })).info.token_id;
  const paused = ok<{ run_id: string; approval_id: string }>(await b.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'Buy milk', body: 'b-private-note-body' }, wait_ms: 3000 }));
  t.match(paused.approval_id, /^apr_/);
  const counted = ok<{ run_id: string; state: string }>(await b.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'b private words' } }));
  t.equal(counted.state, 'succeeded');
  const conv = ok<{ conversation: { conversation_id: string } }>(await b.request('conversation.create', { title: 'b-conversation-title' })).conversation.conversation_id;
  ok(await b.request('conversation.send', { conversation_id: conv, text: 'b-private-message' }));
  gw.secrets.set('B_SECRET_HANDLE', Buffer.from('b-secret-value'), ['api.example.com']);
  const artifact = await gw.artifacts.putAndAttach({ content: Buffer.from('b-evidence-bytes'), media_type: 'text/plain', name: 'b-evidence.txt' }, { run_id: counted.run_id, by: 'cli' });
  const enroll = (await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'cli' })).token;
  const node = (await connect(gw, { token: enroll, role: 'node', device: newDevice(), capabilities: [{ id: 'fs.read', version: '1' }], label: 'b-node-label' })).conn;
  t.teardown(() => node.ws.close());
  let pairings: Array<{ pairing_id: string; device_id: string }> = [];
  for (let i = 0; i < 100 && pairings.length === 0; i++) {
    pairings = ok<{ pairings: Array<{ pairing_id: string; device_id: string }> }>(await b.request('pairing.list', {})).pairings;
    if (pairings.length === 0) await new Promise((res) => setTimeout(res, 50));
  }
  const pairing = pairings[0]!;
  const wf = ok<{ workflow: { workflow_id: string; resume_token?: string } }>(
    await b.request('workflow.start', { playbook: { name: 'b-workflow', version: '1.0.0', steps: [{ id: 'gate', approval: { message: 'b-gate-message' }, tool: 'text-utils.word_count', args: { text: 'b gated words' } }] }, wait_ms: 3000 }, 10_000),
  ).workflow;
  // The host's policy: a rule (that matches nothing) and an override, neither of them a tenant's to see or change.
  const hostPolicy = gw.policy.set({ policy_version: 1, mode: 'enforce', rules: [{ id: 'b-private-rule', description: 'b-private-policy-text', decision: 'deny', match: { tools: ['nothing.*'] } }] }, 'cli:test').id;
  const hostOverride = gw.policy.addOverride({ tool_id: 'notes.add_note', created_by: 'cli:test' }).id;
  const auditB = ok<{ entries: Array<{ seq: number; hash: string }> }>(await b.request('audit.list', { limit: 1000 })).entries;
  t.ok(auditB.length > 5, 'the host tenant has audit entries');

  const markers = [
    bAdminId,
    bRead,
    paused.run_id,
    paused.approval_id,
    counted.run_id,
    conv,
    'Buy milk',
    'b-private-note-body',
    'b private words',
    'b-conversation-title',
    'b-private-message',
    'B_SECRET_HANDLE',
    'b-secret-value',
    artifact.artifact.artifact_id,
    'b-evidence',
    pairing.pairing_id,
    pairing.device_id,
    'b-node-label',
    wf.workflow_id,
    'b-gate-message',
    'b-private-rule',
    'b-private-policy-text',
    hostOverride,
  ];

  // One case per operation of the registry, on the host tenant's ids where the operation takes one.
  const cases: Record<OperationType, Record<string, unknown>> = {
    'connect.init': { protocol_rev: 1, role: 'client', device: { device_id: pairing.device_id, pubkey: 'x' }, capabilities: [] },
    'connect.proof': { connection_id: '00000000-0000-4000-8000-000000000000', proof: 'x' },
    ping: {},
    'audit.list': { limit: 1000 },
    'audit.verify': {},
    'doctor.run': {},
    'token.create': { scopes: ['operator.read'], label: 'a reader' },
    'token.list': {},
    'token.revoke': { token_id: bRead },
    'plugin.list': {},
    'plugin.get': { plugin_id: 'notes' },
    'plugin.enable': { plugin_id: 'notes' },
    'plugin.disable': { plugin_id: 'notes' },
    'plugin.grant': { plugin_id: 'notes', all_requested: true },
    'plugin.revoke': { plugin_id: 'notes' },
    'tool.list': {},
    'tool.invoke': { tool_id: 'notes.list_notes', args: {} },
    'workflow.start': { steps: [{ tool_id: 'notes.list_notes', args: {} }] },
    'workflow.get': { workflow_id: wf.workflow_id },
    'workflow.list': {},
    'workflow.resume': { token: wf.resume_token ?? 'x' },
    'workflow.cancel': { workflow_id: wf.workflow_id },
    'run.get': { run_id: paused.run_id },
    'run.list': {},
    'run.cancel': { run_id: paused.run_id },
    'run.resolve': { run_id: paused.run_id, step_idx: 0, action: 'fail' },
    'approval.list': {},
    'approval.resolve': { approval_id: paused.approval_id, decision: 'approved' },
    'pairing.list': {},
    'pairing.approve': { pairing_id: pairing.pairing_id, trust_level: 'local', capability_allowlist: [{ id: 'fs.read' }] },
    'pairing.deny': { pairing_id: pairing.pairing_id },
    'pairing.revoke': { pairing_id: pairing.pairing_id },
    'mcp.list': {},
    'mcp.diff': { name: 'b-server' },
    'mcp.approve': { name: 'b-server' },
    'node.bootstrap': {},
    'presence.list': {},
    'capability.ready': { capabilities: [{ id: 'fs.read', version: '1', ready: true }] },
    'attempt.evidence': { dispatch_id: 'd', seq: 1, evidence: {} },
    'pairing.credential': { token: 'x' },
    'policy.get': {},
    'policy.set': { bundle: { policy_version: 1, mode: 'enforce', rules: [] } },
    'policy.explain': { tool_id: 'notes.add_note' },
    'policy.override.revoke': { override_id: 'ovr_x' },
    'event.list': { after: 0, limit: 1000 },
    'conversation.create': { title: 'a conversation' },
    'conversation.list': {},
    'conversation.get': { conversation_id: conv },
    'conversation.send': { conversation_id: conv, text: 'a writes into b' },
    'channel.list': {},
    'channel.senders': { channel: 'telegram/b' },
    'channel.sender.decide': { channel: 'telegram/b', sender: 's', action: 'allow' },
    'artifact.list': { run_id: counted.run_id },
    'artifact.get': { artifact_id: artifact.artifact.artifact_id },
    'secret.list': {},
  };

  for (const op of Object.keys(OPERATIONS) as OperationType[]) {
    const payload = cases[op];
    if (payload === undefined) {
      t.fail(`${op} has no tenancy case: add one here and decide whether it belongs in TENANT_OPERATIONS`);
      continue;
    }
    const spec = OPERATIONS[op] as { handshake?: true; direction?: string };
    const r = await a.request(op, payload, 15_000);
    t.same(leaked(r, markers, payload), [], `${op}: nothing of the host tenant in the answer`);
    // The one chain links each entry to the hash of the one before it (prev_hash), whoever's it
    // is: that hash says nothing of the entry. No entry of the host tenant itself is shown.
    const listed = (r.result as { entries?: unknown } | undefined)?.entries;
    const entries = Array.isArray(listed) ? (listed as Array<{ hash?: string }>) : [];
    t.same(entries.filter((e) => auditB.some((x) => x.hash === e.hash)), [], `${op}: no audit entry of the host tenant`);
    if (spec.handshake) t.equal(code(r), 'invalid_state', `${op}: the handshake is over`);
    else if (spec.direction === 'to_node') t.equal(code(r), 'unsupported_request', `${op}: sent to nodes only`);
    else if (!TENANT_OPERATIONS.has(op)) t.equal(code(r), 'forbidden', `${op}: a host operation is forbidden to another tenant`);
    else if (r.ok === true) t.ok(true, `${op}: answered from tenant acme's own records`);
    else t.ok(['not_found', 'forbidden'].includes(code(r) ?? ''), `${op}: ${code(r)}`);
  }

  // The tenant-scoped operations that take an id answer not_found (never revealing existence).
  for (const [op, payload] of [
    ['run.get', { run_id: paused.run_id }],
    ['run.cancel', { run_id: paused.run_id }],
    ['run.resolve', { run_id: paused.run_id, step_idx: 0, action: 'fail' }],
    ['run.list', { after: paused.run_id }],
    ['approval.resolve', { approval_id: paused.approval_id, decision: 'denied' }],
    ['conversation.get', { conversation_id: conv }],
    ['conversation.send', { conversation_id: conv, text: 'x' }],
    ['token.revoke', { token_id: bAdminId }],
    ['policy.override.revoke', { override_id: hostOverride }],
  ] as const) {
    t.equal(code(await a.request(op, payload)), 'not_found', `${op} on the host tenant's id: not_found`);
  }
  t.equal(code(await a.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })), 'not_found', "the host's grant of notes gives the tenant nothing: refused as an ungranted plugin's tool");
  t.same(ok<{ secrets: unknown[] }>(await a.request('secret.list', {})).secrets, [], "secret.list: none of the host's handles");
  const aNotes = ok<{ plugin: { grant: unknown; state: string; blockers: string[] } }>(await a.request('plugin.get', { plugin_id: 'notes' })).plugin;
  t.match(aNotes, { grant: null, state: 'enabled' }, "plugin.get: the host enabled it; the tenant's own grant (none), not the host's");
  t.ok(aNotes.blockers.some((x) => /not granted/.test(x)));
  t.same(ok<{ approvals: unknown[] }>(await a.request('approval.list', { run_id: paused.run_id })).approvals, [], "approval.list by the host's run id: nothing");

  // The host tenant's objects are untouched by all of that.
  t.equal(ok<{ run: { state: string } }>(await b.request('run.get', { run_id: paused.run_id })).run.state, 'paused');
  t.ok(ok<{ tokens: Array<{ token_id: string; revoked_at: string | null }> }>(await b.request('token.list', {})).tokens.every((x) => x.revoked_at === null), 'no host token was revoked');
  const hostNotes = ok<{ plugin: { state: string; grant: { kv?: unknown } | null } }>(await b.request('plugin.get', { plugin_id: 'notes' })).plugin;
  t.equal(hostNotes.state, 'enabled', 'the plugin is still enabled');
  t.ok(hostNotes.grant?.kv, "the host's grant is untouched by the tenant's grant and revoke");
  // Tenant A's policy.set above set A's own bundle: the host's policy and override are as they were.
  const hostGet = ok<{ snapshot_id: string; overrides: Array<{ id: string; status: string }> }>(await b.request('policy.get', {}));
  t.equal(hostGet.snapshot_id, hostPolicy, "the host's bundle is still active");
  t.same(hostGet.overrides.map((o) => [o.id, o.status]), [[hostOverride, 'active']], "the host's override is still in force, and the only one listed");
  t.match(ok(await a.request('policy.get', {})), { host_snapshot_id: hostPolicy, overrides: [] }, "tenant A's own policy: the host's named by id only");

  // More host activity while tenant A listens: its events go to the host's clients only.
  ok(await b.request('approval.resolve', { approval_id: paused.approval_id, decision: 'approved' }));
  t.equal(await settle(b, paused.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded');
  ok(await a.request('ping'));
  const aEvents = a.frames.filter((f) => f.event_id !== undefined);
  t.same(leaked(aEvents, markers), [], 'no event of the host tenant was pushed to tenant acme');
  t.ok(b.frames.some((f) => f.type === 'run.updated' && (f.payload as { run_id?: string }).run_id === paused.run_id), "the host's own client got its events");
});

t.test("the host tenant sees nothing of another tenant's runs, approvals, conversations, tokens, events and audit entries", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw);
  const b = (await connect(gw)).conn;
  t.teardown(() => b.ws.close());
  // Word counts need approval for everyone (the host's policy applies to every tenant's calls).
  ok(await b.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'count-needs-review', decision: 'require_approval', match: { tools: ['text-utils.word_count'] } }] } }));
  const aToken = await newTenant(gw, 'acme');
  const a = (await connect(gw, { token: aToken })).conn;
  t.teardown(() => a.ws.close());

  t.same(ok<{ tools: Array<{ tool_id: string }> }>(await a.request('tool.list', {})).tools, [], "tool.list offers the tenant no tool of a plugin it has not granted (the host's grants give it nothing)");
  ok(await a.request('plugin.grant', { plugin_id: 'text-utils', all_requested: true }));
  t.ok(ok<{ tools: Array<{ tool_id: string }> }>(await a.request('tool.list', {})).tools.every((x) => x.tool_id.startsWith('text-utils.')), 'once granted, its tools');
  const run = ok<{ run_id: string; approval_id: string; state: string }>(await a.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'acme private words' }, wait_ms: 3000 }));
  t.equal(run.state, 'paused');
  const conv = ok<{ conversation: { conversation_id: string } }>(await a.request('conversation.create', { title: 'acme-conversation-title' })).conversation.conversation_id;
  const child = ok<{ info: { token_id: string } }>(await a.request('token.create', { scopes: ['operator.read'], label: 'acme-child' })).info.token_id;
  t.equal(gw.store.tokens.tenantOf(child), 'acme', 'a minted token stays in its parent tenant');
  t.equal(code(await a.request('token.create', { scopes: ['operator.read'], roles: ['node'] })), 'invalid_request', 'nodes belong to the host: no node role in a tenant');

  const aIds = [run.run_id, run.approval_id, conv, child, 'acme private words', 'acme-conversation-title'];
  for (const [op, payload] of [
    ['run.get', { run_id: run.run_id }],
    ['run.cancel', { run_id: run.run_id }],
    ['approval.resolve', { approval_id: run.approval_id, decision: 'denied' }],
    ['conversation.get', { conversation_id: conv }],
    ['conversation.send', { conversation_id: conv, text: 'host writes into acme' }],
    ['token.revoke', { token_id: child }],
    ['artifact.list', { run_id: run.run_id }],
  ] as const) {
    t.equal(code(await b.request(op, payload)), 'not_found', `the host's ${op} on tenant acme's id: not_found`);
  }
  for (const [op, payload] of [
    ['run.list', {}],
    ['approval.list', {}],
    ['conversation.list', {}],
    ['token.list', {}],
    ['event.list', { after: 0, limit: 1000 }],
    ['audit.list', { limit: 1000 }],
  ] as const) {
    const r = await b.request(op, payload);
    t.equal(r.ok, true, op);
    t.same(leaked(r, aIds), [], `the host's ${op} lists nothing of tenant acme`);
  }

  // Tenant acme sees its own, and its view of the audit chain is its own entries.
  t.same(ok<{ runs: Array<{ id: string }> }>(await a.request('run.list', {})).runs.map((r) => r.id), [run.run_id]);
  t.same(ok<{ approvals: Array<{ id: string }> }>(await a.request('approval.list', {})).approvals.map((x) => x.id), [run.approval_id]);
  const own = ok<{ entries: Array<{ actor: { tenant?: string }; type: string }> }>(await a.request('audit.list', { limit: 1000 })).entries;
  t.ok(own.length >= 3, 'its submissions and token are audited');
  t.ok(own.every((e) => e.actor.tenant === 'acme'), 'every entry it sees names it in the (hashed) actor');
  const verify = ok<{ ok: boolean; entries: number; checkpoint_seq: number | null }>(await a.request('audit.verify', {}));
  t.match(verify, { ok: true, entries: own.length, checkpoint_seq: null }, "the chain verifies; the count is the tenant's own");
  const hostVerify = ok<{ entries: number }>(await b.request('audit.verify', {}));
  t.ok(hostVerify.entries > own.length, 'the host verifies the one whole chain');

  // Approving its own run always resumes it and writes an override of acme's own; the events
  // reach tenant acme and never the host's clients.
  const override = ok<{ override_id: string }>(await a.request('approval.resolve', { approval_id: run.approval_id, decision: 'approved', mode: 'always' })).override_id;
  aIds.push(override);
  t.equal(await settle(a, run.run_id, (s) => s === 'succeeded' || s === 'failed'), 'succeeded');
  t.same(ok<{ overrides: Array<{ id: string }> }>(await a.request('policy.get', {})).overrides.map((o) => o.id), [override], "acme's override is listed to acme");
  t.same(leaked(ok(await b.request('policy.get', {})), aIds), [], "the host's policy.get shows nothing of acme's");
  t.equal(code(await b.request('policy.override.revoke', { override_id: override })), 'not_found', "the host's policy.override.revoke of acme's override: not_found");
  const hostRun = ok<{ state: string }>(await b.request('tool.invoke', { tool_id: 'text-utils.word_count', args: { text: 'host words' }, wait_ms: 3000 }));
  t.equal(hostRun.state, 'paused', "acme's override does not apply to the host's calls");
  ok(await b.request('ping'));
  t.ok(a.frames.some((f) => f.type === 'run.updated' && (f.payload as { run_id?: string }).run_id === run.run_id), "tenant acme got its run's events");
  t.same(leaked(b.frames.filter((f) => f.event_id !== undefined), aIds), [], "no event of tenant acme reached the host's client");
  const aCatchUp = ok<{ events: Array<{ payload: Record<string, unknown> }> }>(await a.request('event.list', { after: 0, limit: 1000 })).events;
  t.ok(aCatchUp.length > 0 && aCatchUp.every((e) => JSON.stringify(e.payload).includes(run.run_id) || JSON.stringify(e.payload).includes(run.approval_id)), "catch-up gives tenant acme its own events only");
});

t.test("plugin grants, key-value state and secrets: a tenant sees and changes only its own; the host's grant and a tenant's give each other nothing", async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw);
  const host = (await connect(gw)).conn;
  t.teardown(() => host.ws.close());
  ok(await host.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'notes', decision: 'allow', match: { tools: ['notes.*'] } }] } }));
  const a = (await connect(gw, { token: await newTenant(gw, 'acme') })).conn;
  t.teardown(() => a.ws.close());
  const b = (await connect(gw, { token: await newTenant(gw, 'beta') })).conn;
  t.teardown(() => b.ws.close());
  const call = async (c: RawConn, tool_id: string, args: Record<string, unknown> = {}) => c.request('tool.invoke', { tool_id, args, wait_ms: 10_000 }, 15_000);
  const toolIds = async (c: RawConn) => ok<{ tools: Array<{ tool_id: string }> }>(await c.request('tool.list', {})).tools.map((x) => x.tool_id);
  const grantOf = async (c: RawConn, id: string) => ok<{ plugin: { grant: Record<string, unknown> | null } }>(await c.request('plugin.get', { plugin_id: id })).plugin.grant;

  // Tenant acme grants notes; beta has granted nothing.
  ok(await a.request('plugin.grant', { plugin_id: 'notes', all_requested: true, accept_risks: ['state_changing', 'storage'] }));
  t.ok((await toolIds(a)).includes('notes.add_note'), 'acme lists the tools it granted');
  t.same(await toolIds(b), [], "beta lists none: acme's grant and the host's give it nothing");
  t.equal(code(await call(b, 'notes.list_notes')), 'not_found', 'beta calling a plugin only acme granted: refused as ungranted');
  t.equal(await grantOf(b, 'notes'), null, "beta does not see acme's grant");
  t.ok(ok<{ plugins: Array<{ grant: unknown }> }>(await b.request('plugin.list', {})).plugins.every((p) => p.grant === null), "beta's plugin.list shows no one else's grant");
  t.same(await grantOf(a, 'notes'), { kv: { quota_bytes: 1048576 }, accept_risks: ['state_changing', 'storage'] }, "acme sees its own grant");

  // Beta's revoke and grant change only beta's grant.
  ok(await b.request('plugin.revoke', { plugin_id: 'notes' }));
  ok(await b.request('plugin.grant', { plugin_id: 'notes', grant: { kv: { quota_bytes: 1024 } }, accept_risks: ['state_changing', 'storage'] }));
  t.same(await grantOf(a, 'notes'), { kv: { quota_bytes: 1048576 }, accept_risks: ['state_changing', 'storage'] }, "acme's grant is unchanged by beta's revoke and grant");
  t.same(await grantOf(b, 'notes'), { kv: { quota_bytes: 1024 }, accept_risks: ['state_changing', 'storage'] });
  t.match(await grantOf(host, 'notes'), { kv: { quota_bytes: 1048576 } }, "the host's grant is unchanged");

  // Key-value state: acme's notes are acme's.
  t.equal(ok<{ state: string }>(await call(a, 'notes.add_note', { title: 'acme-note-title', body: 'acme-note-body' })).state, 'succeeded');
  for (const [who, c] of [['beta', b], ['host', host]] as const) {
    const r = await call(c, 'notes.list_notes');
    t.equal(ok<{ state: string }>(r).state, 'succeeded', who);
    t.notMatch(JSON.stringify(r), /acme-note/, `${who} sees none of acme's notes`);
  }
  t.match(JSON.stringify(await call(a, 'notes.list_notes')), /acme-note-title/);

  // Secrets: each tenant lists its own handles only.
  gw.secrets.set('ACME_KEY', Buffer.from('acme-key-value'), ['api.example.com'], { tenant: 'acme' });
  gw.secrets.set('HOST_KEY', Buffer.from('host-key-value'), ['api.example.com']);
  const handles = async (c: RawConn) => ok<{ secrets: Array<{ name: string }> }>(await c.request('secret.list', {})).secrets.map((x) => x.name);
  t.same(await handles(a), ['ACME_KEY']);
  t.same(await handles(b), []);
  t.same(await handles(host), ['HOST_KEY']);

  // The host disabling the plugin stops every tenant's calls; a host grant without kv gives the
  // host none of a tenant's rights, nor does the tenant's grant widen the host's.
  ok(await host.request('plugin.revoke', { plugin_id: 'notes' }));
  t.equal(code(await call(a, 'notes.list_notes')), 'not_found', 'not enabled by the host: refused for the tenant too');
  t.same(await toolIds(a), [], 'acme lists no tool of a disabled plugin (nor of text-utils, which it did not grant)');
  ok(await host.request('plugin.grant', { plugin_id: 'notes', grant: {}, accept_risks: ['state_changing', 'storage'] }));
  ok(await host.request('plugin.enable', { plugin_id: 'notes' }));
  const hostCall = ok<{ state: string }>(await call(host, 'notes.list_notes'));
  t.not(hostCall.state, 'succeeded', "the host's call has no kv: acme's grant of kv is not the host's");
  const acmeCall = await call(a, 'notes.list_notes');
  t.equal(ok<{ state: string }>(acmeCall).state, 'succeeded', "acme's call runs under acme's grant (kv), not the host's (none)");
  t.match(JSON.stringify(acmeCall), /acme-note-title/, 'and still reads its own state');

  // Grants and revokes by a tenant are audited as the tenant's.
  await gw.audit.flush();
  const aAudit = ok<{ entries: Array<{ type: string; actor: { tenant?: string } }> }>(await a.request('audit.list', { limit: 1000 })).entries;
  t.ok(aAudit.some((e) => e.type === 'plugin.granted' && e.actor.tenant === 'acme'));
  const bAudit = ok<{ entries: Array<{ type: string; actor: { tenant?: string } }> }>(await b.request('audit.list', { limit: 1000 })).entries;
  t.ok(bAudit.some((e) => e.type === 'plugin.revoked' && e.actor.tenant === 'beta'));
});
