// Playbook runs in a real gateway: steps through the one pipeline, approval gates with single-use
// resume tokens, denial, cancellation, expiry, agent steps against a local Chat Completions server,
// and a restart while a workflow waits.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { startTestGateway, removeHome, connect, type TestGateway } from '../../helpers/gateway.js';
import { startMockOpenAi } from '../../helpers/mock-openai.js';
import { setBackend } from '../../../core/conversations/settings.js';
import { parsePlaybook } from '../../../core/playbooks/spec.js';
import { runCli } from '../../helpers/cli.js';

const PLUGINS = new URL('../../../plugins/', import.meta.url).pathname;
const EXAMPLE = new URL('../../../examples/playbooks/note-with-review.yaml', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

type Conn = Awaited<ReturnType<typeof connect>>['conn'];
interface Wf {
  workflow_id: string;
  state: string;
  step_idx: number;
  plan_hash: string;
  steps: Array<{ id: string; state: string; run_id: string | null; output: unknown; conversation_id: string | null }>;
  gate: { step_id: string; message: string; expires_at: string } | null;
  resume_token?: string | null;
  error: { code: string; message: string } | null;
}

async function until<T>(what: string, pick: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pick();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function enablePlugins(gw: TestGateway, ids: string[]): Promise<void> {
  for (const id of ids) {
    await gw.plugins.install(`${PLUGINS}${id}/build`, CLI);
    await gw.plugins.grant(id, { allRequested: true, acceptRisks: id === 'notes' ? ['state_changing', 'storage'] : [] }, CLI);
    await gw.plugins.enable(id, CLI);
  }
}

async function ok<T>(conn: Conn, type: string, payload: Record<string, unknown>): Promise<T> {
  const r = await conn.request(type, payload, 60_000);
  if (r.ok !== true) throw new Error(`${type} failed: ${JSON.stringify(r.error)}`);
  return r.result as T;
}

const example = () => parsePlaybook(readFileSync(EXAMPLE, 'utf8')) as unknown as Record<string, unknown>;
const getWf = async (conn: Conn, id: string) => (await ok<{ workflow: Wf }>(conn, 'workflow.get', { workflow_id: id })).workflow;

t.test('the example playbook: tool steps, a gate with a single-use resume token, then the policy approval of the state-changing step', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw, ['text-utils', 'notes']);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const events = () => conn.frames.filter((f) => f.event_id !== undefined) as Array<{ type: string; payload: Record<string, unknown> }>;

  const started = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'Release checklist', text: 'Tag, build, sign, publish.' }, wait_ms: 20_000 })).workflow;
  t.equal(started.state, 'paused', 'paused at the gate');
  t.same(started.steps.map((s) => s.state), ['succeeded', 'succeeded', 'pending']);
  t.same(started.steps[0]!.output, { words: 4, chars: 26, lines: 1 }, 'the tool output is kept');
  t.equal(started.gate?.step_id, 'save');
  t.equal(started.gate?.message, 'Save "Release checklist" (4 words, slug release-checklist) as a note?', 'the gate message has its references filled in');
  t.match(started.resume_token, /^wrt\.wf_[0-9a-f]{16}\.2\./, 'an approver sees the resume token');
  const token = started.resume_token!;
  // Each tool step was an ordinary engine run through policy, created by the workflow.
  const run0 = gw.engine.get(started.steps[0]!.run_id!);
  t.equal(run0.run.created_by, `workflow:${started.workflow_id}`);
  t.equal(run0.steps[0]!.policy?.decision, 'allow');

  // The event says where it waits but never carries the token.
  await until('a paused event', () => events().some((e) => e.type === 'workflow.updated' && e.payload.state === 'paused'));
  t.notOk(JSON.stringify(events()).includes(token.split('.')[4]!), 'no event carries the token');

  // A token without operator.approvals neither sees the token nor may resume.
  const reader = await gw.tokens.create({ scopes: ['operator.read'], roles: ['client'], label: 'reader', createdBy: 'test' });
  const { conn: rconn } = await connect(gw, { token: reader.token });
  t.teardown(() => rconn.ws.close());
  const seen = await getWf(rconn, started.workflow_id);
  t.equal(seen.resume_token, undefined, 'a reader does not see the token');
  const refused = await rconn.request('workflow.resume', { token });
  t.equal(refused.ok, false);
  t.equal((refused.error as { code: string }).code, 'forbidden');

  // An altered token is refused.
  const forged = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
  const bad = await conn.request('workflow.resume', { token: forged });
  t.match(bad.error, { code: 'forbidden', details: undefined }, 'an altered token is refused');

  // Approve: the workflow goes on; add_note is state_changing, so the policy asks too.
  const resumed = (await ok<{ workflow: Wf }>(conn, 'workflow.resume', { token, wait_ms: 3000 })).workflow;
  t.equal(resumed.state, 'running');
  const approval = await until('the policy approval of add_note', () => gw.approvals.list({ state: 'pending' })[0]);
  t.equal(approval.tool_id, 'notes.add_note');
  t.same(approval.args, { title: 'Release checklist', body: 'Tag, build, sign, publish.' }, 'the step ran with its references filled in');

  // A second use of the token is refused.
  const again = await conn.request('workflow.resume', { token });
  t.equal(again.ok, false);
  t.match(again.error, { code: 'invalid_state', message: /no longer waits|works once/ });

  await ok(conn, 'approval.resolve', { approval_id: approval.id, decision: 'approved' });
  const done = await until('the workflow succeeded', async () => {
    const w = await getWf(conn, started.workflow_id);
    return w.state === 'succeeded' ? w : null;
  });
  t.same(done.steps.map((s) => s.state), ['succeeded', 'succeeded', 'succeeded']);
  t.match(done.steps[2]!.output, { id: /^n\d+$/, title: 'Release checklist' });

  const types = gw.audit.list({ limit: 500 }).map((e) => e.type);
  for (const x of ['workflow.started', 'workflow.paused', 'workflow.resumed', 'workflow.step_succeeded', 'workflow.succeeded']) t.ok(types.includes(x), `audit has ${x}`);
  t.notOk(JSON.stringify(gw.audit.list({ limit: 500 })).includes(token.split('.')[4]!), 'the audit never holds the token');
  await gw.audit.flush();
  const verify = await runCli(['audit', 'verify', '--home', gw.home]);
  t.equal(verify.code, 0, `the audit chain verifies: ${verify.out}${verify.err}`);
});

t.test('same playbook and inputs give the same plan hash; other inputs another; a skipped step and a denied gate', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw, ['text-utils', 'notes']);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const a = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'x', text: 'one two' } })).workflow;
  const b = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'x', text: 'one two' } })).workflow;
  const c = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'x', text: '' } })).workflow;
  t.equal(a.plan_hash, b.plan_hash);
  t.not(a.plan_hash, c.plan_hash);
  // Empty text: 0 words, so the save step (and its gate) is skipped.
  t.equal(c.state, 'succeeded');
  t.same(c.steps.map((s) => s.state), ['succeeded', 'succeeded', 'skipped']);
  t.equal(gw.approvals.list({ state: 'pending' }).length, 0, 'nothing asked');

  const denied = (await ok<{ workflow: Wf }>(conn, 'workflow.resume', { token: a.resume_token, decision: 'deny', reason: 'not now' })).workflow;
  t.equal(denied.state, 'failed');
  t.match(denied.error, { code: 'TYRUM_ERR_APPROVAL_DENIED', message: /not now/ });
  t.equal(denied.steps[2]!.state, 'cancelled');
  // Cancel the other one while it waits at its gate; its token is dead afterwards.
  const cancelled = (await ok<{ workflow: Wf }>(conn, 'workflow.cancel', { workflow_id: b.workflow_id })).workflow;
  t.equal(cancelled.state, 'cancelled');
  const late = await conn.request('workflow.resume', { token: b.resume_token });
  t.match(late.error, { code: 'invalid_state' });
  const twice = await conn.request('workflow.cancel', { workflow_id: b.workflow_id });
  t.match(twice.error, { code: 'invalid_state' });
  // Idempotent start: the same key returns the same workflow; other inputs with it conflict.
  const k1 = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'k', text: 'a' }, idempotency_key: 'k' })).workflow;
  const k2 = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: example(), inputs: { title: 'k', text: 'a' }, idempotency_key: 'k' })).workflow;
  t.equal(k1.workflow_id, k2.workflow_id);
  const k3 = await conn.request('workflow.start', { playbook: example(), inputs: { title: 'k', text: 'b' }, idempotency_key: 'k' });
  t.match(k3.error, { code: 'conflict' });
  const list = await ok<{ workflows: Wf[] }>(conn, 'workflow.list', { state: 'paused' });
  t.same(list.workflows.map((w) => w.workflow_id), [k1.workflow_id]);
});

t.test('bad playbooks and inputs are refused with coded errors before anything starts', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw, ['text-utils']);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, RegExp]> = [
    ['unknown tool', { name: 'p', version: '1', steps: [{ id: 'a', tool: 'nope.tool' }] }, {}, /not an enabled tool/],
    ['later step referenced', { name: 'p', version: '1', steps: [{ id: 'a', tool: 'text-utils.word_count', args: { text: '${steps.b.output}' } }, { id: 'b', tool: 'text-utils.word_count', args: { text: 'x' } }] }, {}, /does not run before/],
    ['two actions', { name: 'p', version: '1', steps: [{ id: 'a', tool: 'text-utils.word_count', agent: { prompt: 'x' } }] }, {}, /one action/],
    ['undeclared input', { name: 'p', version: '1', inputs: { type: 'object', additionalProperties: false, properties: {} }, steps: [{ id: 'a', tool: 'text-utils.word_count', args: { text: '${inputs.x}' } }] }, {}, /does not declare/],
    ['inputs fail the schema', { name: 'p', version: '1', inputs: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } }, steps: [{ id: 'a', approval: { message: 'ok?' } }] }, { n: 'x' }, /inputs schema/],
    ['unsafe regex', { name: 'p', version: '1', steps: [{ id: 'a', approval: { message: 'ok?' }, if: { value: 'x', matches: '(a+)+$' } }] }, {}, /if\.matches/],
  ];
  for (const [label, playbook, inputs, message] of cases) {
    const r = await conn.request('workflow.start', { playbook, inputs });
    t.equal(r.ok, false, label);
    t.match((r.error as { message: string }).message, message, label);
  }
  t.equal(gw.store.workflows.list(10).length, 0, 'no workflow was created');
});

t.test('an agent step: the turn answers in its own conversation and its text feeds the next step', async (t) => {
  const ai = await startMockOpenAi({ script: () => ({ content: 'three short words' }) });
  t.teardown(() => ai.close());
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw, ['text-utils']);
  setBackend(gw.store, gw.secrets, { baseUrl: ai.url, model: 'scripted' });
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const playbook = {
    name: 'agent-then-count',
    version: '1',
    inputs: { type: 'object', properties: { topic: { type: 'string' } } },
    steps: [
      { id: 'ask', agent: { prompt: 'Say something about ${inputs.topic}' } },
      { id: 'count', tool: 'text-utils.word_count', args: { text: '${steps.ask.output.text}' } },
    ],
  };
  const wf = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook, inputs: { topic: 'rain' }, wait_ms: 20_000 })).workflow;
  t.equal(wf.state, 'succeeded', JSON.stringify(wf.error));
  t.match(wf.steps[0]!.output, { text: 'three short words' });
  t.same(wf.steps[1]!.output, { words: 3, chars: 17, lines: 1 });
  const sent = ai.requests.map((r) => (r.body as { messages: Array<{ role: string; content: string | null }> }).messages.filter((m) => m.role === 'user').map((m) => m.content ?? '').join('\n'));
  t.match(sent[0], /Say something about rain/, 'the prompt had its input filled in');
  const conv = gw.store.conversations.conversation(wf.steps[0]!.conversation_id!);
  t.equal(conv?.account, `workflow:${wf.workflow_id}`, 'the turn ran in the workflow step\'s own conversation');
});

t.test('a gate that expires fails the workflow and its token', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const wf = (await ok<{ workflow: Wf }>(conn, 'workflow.start', { playbook: { name: 'gate', version: '1', steps: [{ id: 'g', approval: { message: 'go?', expires_in_s: 60 } }] } })).workflow;
  t.equal(wf.state, 'paused');
  // Move the expiry into the past (what an hour of waiting would do) and let the runner look.
  gw.store.workflows.update(wf.workflow_id, ['paused'], { gate_expires_at: Date.now() - 1 });
  gw.workflows.kick();
  const failed = await until('the expired gate failed the workflow', async () => {
    const w = await getWf(conn, wf.workflow_id);
    return w.state === 'failed' ? w : null;
  });
  t.match(failed.error, { code: 'TYRUM_ERR_RESUME_TOKEN_EXPIRED' });
  const r = await conn.request('workflow.resume', { token: wf.resume_token });
  t.match(r.error, { code: 'invalid_state' });
});

t.test('a workflow waiting at a gate survives a restart; resuming after it completes the workflow once', async (t) => {
  const first = await startTestGateway();
  const home = first.home;
  t.teardown(() => removeHome(home));
  await enablePlugins(first, ['text-utils']);
  const playbook = {
    name: 'restart',
    version: '1',
    steps: [
      { id: 'a', tool: 'text-utils.word_count', args: { text: 'one' } },
      { id: 'b', approval: { message: 'continue?' }, tool: 'text-utils.transform', args: { text: 'n${steps.a.output.words}', op: 'upper' } },
    ],
  };
  const admin = await first.tokens.create({ scopes: ['operator.admin', 'operator.write', 'operator.approvals', 'operator.read'], roles: ['client'], label: 'admin', createdBy: 'test' });
  const c1 = await connect(first);
  const wf = (await ok<{ workflow: Wf }>(c1.conn, 'workflow.start', { playbook })).workflow;
  t.equal(wf.state, 'paused');
  c1.conn.ws.close();
  await first.close();

  const second = await startTestGateway({ home });
  t.teardown(() => second.close());
  const c2 = await connect(second, { token: admin.token });
  t.teardown(() => c2.conn.ws.close());
  const after = (await ok<{ workflow: Wf }>(c2.conn, 'workflow.resume', { token: wf.resume_token, wait_ms: 20_000 })).workflow;
  t.equal(after.state, 'succeeded');
  t.same(after.steps[1]!.output, { text: 'N1' }, 'a reference inside a string is filled in as text');
  const runs = second.store.execution.listRuns({ limit: 100 }).filter((r) => r.created_by === `workflow:${wf.workflow_id}`);
  t.equal(runs.length, 2, 'one run per tool step, none repeated');
});

t.test('a schedule whose target is a playbook starts one workflow per fire, in the claim that fires it', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enablePlugins(gw, ['text-utils']);
  const playbook = { name: 'tick', version: '1', inputs: { type: 'object', properties: { text: { type: 'string' } } }, steps: [{ id: 'count', tool: 'text-utils.word_count', args: { text: '${inputs.text}' } }] };
  // A bad playbook or inputs is refused when the schedule is added.
  await t.rejects(gw.scheduler.add({ name: 'bad', every_ms: 1000, target: { type: 'playbook', playbook: { ...playbook, steps: [] }, inputs: {} } }, CLI as never), { code: 'TYRUM_ERR_PLAYBOOK_INVALID' });
  await t.rejects(gw.scheduler.add({ name: 'bad2', every_ms: 1000, target: { type: 'playbook', playbook, inputs: { text: 5 } } }, CLI as never), { code: 'TYRUM_ERR_PLAYBOOK_INVALID' });
  const row = await gw.scheduler.add({ name: 'tick', every_ms: 1000, target: { type: 'playbook', playbook, inputs: { text: 'a b c' } } }, CLI as never);
  const fired = await until('two fires that each started a workflow', () => {
    const f = gw.store.schedules.fires(row.id, 10).filter((x) => x.workflow_id !== null);
    return f.length >= 2 ? f : null;
  });
  await gw.scheduler.pause('tick', CLI as never);
  const ids = fired.map((f) => f.workflow_id!);
  t.equal(new Set(ids).size, ids.length, 'one workflow per fire');
  for (const id of ids) {
    const wf = await until(`workflow ${id} finished`, () => {
      const w = gw.store.workflows.get(id);
      return w && w.state !== 'running' ? w : null;
    });
    t.equal(wf.state, 'succeeded');
    t.equal(wf.created_by, `schedule:${row.id}`);
    t.same((JSON.parse(wf.outputs) as Record<string, unknown>).count, { words: 3, chars: 5, lines: 1 });
  }
});
