import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startTestGateway, removeHome, connect, writeTestConfig, TEST_STORE, type RawConn } from '../../helpers/gateway.js';
import { runCli } from '../../helpers/cli.js';

const NOTES = new URL('../../../plugins/notes/build/', import.meta.url).pathname;
const CLI = { kind: 'cli', user: 'test' };

type Invoke = { run_id: string; state: string; output: unknown; error: { code: string; wire: string; message: string } | null; approval_id: string | null; policy: { decision: string; enforced: boolean; snapshot_id: string } | null };
const result = <T>(r: Record<string, unknown>): T => {
  if (r.ok !== true) throw new Error(`request failed: ${JSON.stringify(r.error)}`);
  return r.result as T;
};

async function enableNotes(gw: Awaited<ReturnType<typeof startTestGateway>>): Promise<void> {
  await gw.plugins.install(NOTES, CLI);
  await gw.plugins.grant('notes', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('notes', CLI);
}

async function waitRun(conn: RawConn, runId: string, until: (state: string) => boolean, ms = 5000): Promise<{ run: { state: string }; steps: Array<Record<string, unknown>> }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const d = result<{ run: { state: string }; steps: Array<Record<string, unknown>> }>(await conn.request('run.get', { run_id: runId }));
    if (until(d.run.state) || Date.now() > deadline) return d;
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('a state_changing tool waits for approval; approving resumes exactly that call', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enableNotes(gw);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());

  const read = result<Invoke>(await conn.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} }));
  t.equal(read.state, 'succeeded', 'read_only: allowed by the default policy');
  t.match(read.policy, { decision: 'allow', enforced: true, snapshot_id: /^pol_/ });

  const call = result<Invoke>(await conn.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'Buy milk', body: '2 litres' }, wait_ms: 2000 }));
  t.equal(call.state, 'paused', 'state_changing: waits');
  t.match(call.approval_id, /\S/);
  t.match(call.policy, { decision: 'require_approval', enforced: true });
  const pending = result<{ approvals: Array<{ id: string; tool_id: string; args: unknown; state: string }> }>(await conn.request('approval.list', { state: 'pending' }));
  t.match(pending.approvals, [{ id: call.approval_id, tool_id: 'notes.add_note', args: { title: 'Buy milk' }, state: 'pending' }]);
  t.same(result<{ output: { notes: unknown[] } }>(await conn.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })).output.notes, [], 'nothing ran before approval');

  const resolved = result<{ approval: { state: string } }>(await conn.request('approval.resolve', { approval_id: call.approval_id, decision: 'approved', reason: 'fine' }));
  t.equal(resolved.approval.state, 'approved');
  const done = await waitRun(conn, call.run_id, (s) => s === 'succeeded' || s === 'failed');
  t.equal(done.run.state, 'succeeded');
  t.match(done.steps[0], { state: 'succeeded', approval_id: call.approval_id, policy: { decision: 'require_approval', snapshot_id: /^pol_/ }, result: { title: 'Buy milk' }, attempts: [{ state: 'succeeded' }] }, 'the evidence names the decision, snapshot and approval');
  const again = await conn.request('approval.resolve', { approval_id: call.approval_id, decision: 'denied' });
  t.equal((again.error as { code: string }).code, 'conflict', 'a second resolution loses');

  const events = result<{ events: Array<{ cursor: number; type: string; payload: { run_id?: string; state?: string } }>; next_after: number }>(await conn.request('event.list', { after: 0, limit: 1000 }));
  t.same(events.events.map((e) => e.cursor), Array.from({ length: events.events.length }, (_, i) => i + 1), 'the outbox has no gaps');
  const states = events.events.filter((e) => e.type === 'run.updated' && e.payload.run_id === call.run_id).map((e) => e.payload.state);
  t.same(states.at(-1), 'succeeded');
  t.ok(states.includes('paused'), 'the pause is an event too');
  const later = result<{ events: unknown[]; next_after: number }>(await conn.request('event.list', { after: events.next_after }));
  t.same(later.events, [], 'catching up from the last cursor returns nothing new');
  t.ok(conn.frames.some((f) => f.type === 'run.updated' && f.event_id !== undefined), 'run events were pushed live too');
});

t.test('deny, approve from the CLI, and "always" overrides', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enableNotes(gw);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const add = async (title: string) => result<Invoke>(await conn.request('tool.invoke', { tool_id: 'notes.add_note', args: { title, body: '' }, wait_ms: 1500 }));

  const denied = await add('nope');
  t.equal((await runCli(['approvals', 'deny', denied.approval_id!, '--reason', 'not today', '--home', gw.home])).code, 0);
  const d = await waitRun(conn, denied.run_id, (s) => s === 'failed');
  t.equal(d.run.state, 'failed', 'a denied call fails');

  const viaCli = await add('from the cli');
  const list = await runCli(['approvals', 'list', '--json', '--home', gw.home]);
  t.match(JSON.parse(list.out), { approvals: [{ id: viaCli.approval_id, state: 'pending' }] });
  t.equal((await runCli(['approvals', 'approve', viaCli.approval_id!, '--expires', '1d', '--home', gw.home])).code, 2, '--expires needs --always');
  const ok = await runCli(['approvals', 'approve', viaCli.approval_id!, '--always', '--expires', '30d', '--home', gw.home]);
  t.equal(ok.code, 0, ok.err);
  t.match(ok.out, /override/);
  t.equal((await waitRun(conn, viaCli.run_id, (s) => s === 'succeeded')).run.state, 'succeeded', 'approved from another process: the gateway resumed the run');
  const pushed = conn.frames.filter((f) => f.event_id !== undefined).map((f) => ({ type: f.type, ...(f.payload as { approval_id?: string; run_id?: string; state?: string }) }));
  const cliDecision = pushed.findIndex((e) => e.type === 'approval.updated' && e.approval_id === viaCli.approval_id && e.state === 'approved');
  const resumed = pushed.findIndex((e) => e.type === 'run.updated' && e.run_id === viaCli.run_id && e.state === 'succeeded');
  t.ok(cliDecision >= 0, 'the decision committed by the CLI process was pushed live too');
  t.ok(cliDecision < resumed, 'in outbox order, before the resumed run finished');

  const free = await add('no approval needed now');
  t.equal(free.state, 'succeeded', 'the "always" override lets the same tool through');
  t.match(free.policy, { decision: 'allow' });
  const pol = result<{ overrides: Array<{ id: string; tool_id: string; status: string }> }>(await conn.request('policy.get'));
  const ovr = pol.overrides.find((o) => o.tool_id === 'notes.add_note')!;
  t.equal(ovr.status, 'active');
  t.ok(Date.parse((ovr as unknown as { expires_at: string }).expires_at) > Date.now() + 29 * 86400_000, 'the override expires in 30 days');

  // A deny rule still wins over the override.
  const set = result<{ snapshot_id: string }>(await conn.request('policy.set', { bundle: { policy_version: 1, mode: 'enforce', rules: [{ id: 'no-notes', decision: 'deny', match: { tools: ['notes.add_note'] } }] } }));
  t.match(set.snapshot_id, /^pol_/);
  const blocked = await add('blocked');
  t.equal(blocked.state, 'failed');
  t.equal(blocked.error?.wire, 'policy_denied');
  t.match(blocked.policy, { decision: 'deny', snapshot_id: set.snapshot_id });
  const explain = result<{ decision: string; text: string }>(await conn.request('policy.explain', { tool_id: 'notes.add_note' }));
  t.equal(explain.decision, 'deny');
  t.match(explain.text, /no-notes/);

  // Observe mode: the decision is recorded, not applied.
  result(await conn.request('policy.set', { bundle: { policy_version: 1, mode: 'observe', rules: [{ id: 'no-notes', decision: 'deny', match: { tools: ['notes.add_note'] } }] } }));
  const observed = await add('observed');
  t.equal(observed.state, 'succeeded');
  t.match(observed.policy, { decision: 'deny', enforced: false });
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await conn.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })).output.notes.map((n) => n.title).sort();
  t.same(notes, ['from the cli', 'no approval needed now', 'observed'], 'exactly the approved, overridden and observed calls had an effect');
  t.equal((await runCli(['policy', 'override-revoke', ovr.id, '--home', gw.home])).code, 0);
});

t.test('one idempotency key, one run (B1)', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  await enableNotes(gw);
  const { conn } = await connect(gw);
  t.teardown(() => conn.ws.close());
  const payload = { tool_id: 'notes.list_notes', args: { limit: 5 }, idempotency_key: 'k-1' };
  const all = await Promise.all(Array.from({ length: 10 }, () => conn.request('tool.invoke', payload)));
  const ids = new Set(all.map((r) => result<Invoke>(r).run_id));
  t.equal(ids.size, 1, 'ten concurrent calls, one run');
  const clash = await conn.request('tool.invoke', { ...payload, args: { limit: 6 } });
  t.equal((clash.error as { code: string }).code, 'conflict', 'the same key with other arguments is a conflict');
});

t.test('kill -9 while a run waits for approval, restart, approve: it completes once', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tyrum-kill-'));
  t.teardown(() => removeHome(home));
  // TYRUM_TEST_STORE=postgres: the child gateway and the CLI run on the file's PostgreSQL cluster.
  await writeTestConfig(home);
  const bin = join(import.meta.dirname, '../../../bin/tyrum.js');
  const start = async (): Promise<{ child: ChildProcess; port: number; token: string | null; err: string }> => {
    const child = spawn(process.execPath, [bin, 'start', '--home', home, '--port', '0', '--log-level', 'silent'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 15_000;
    while (!/listening on ws:\/\/127\.0\.0\.1:\d+\/ws[^]*\n {2}tyrum ping /.test(err) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    const port = Number(/127\.0\.0\.1:(\d+)\/ws/.exec(err)?.[1]);
    return { child, port, token: /tyrum_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(err)?.[0] ?? null, err };
  };
  const first = await start();
  t.teardown(() => first.child.kill('SIGKILL'));
  const token = first.token!;
  t.ok(token, `bootstrap token printed (stderr: ${first.err.slice(0, 2000)})`);
  for (const argv of [['plugin', 'install', NOTES], ['plugin', 'grant', 'notes', '--all-requested', '--accept-risk', 'state_changing,storage'], ['plugin', 'enable', 'notes']]) {
    const r = await runCli([...argv, '--home', home]);
    t.equal(r.code, 0, r.err);
  }
  const a = await connect({ port: first.port }, { token });
  const call = result<Invoke>(await a.conn.request('tool.invoke', { tool_id: 'notes.add_note', args: { title: 'survives', body: 'a crash' }, wait_ms: 3000 }));
  t.equal(call.state, 'paused');
  first.child.kill('SIGKILL');
  await new Promise<void>((r) => first.child.once('exit', () => r()));

  const approve = await runCli(['approvals', 'approve', call.approval_id!, '--home', home]);
  t.equal(approve.code, 0, approve.err);
  const second = await start();
  t.teardown(() => second.child.kill('SIGKILL'));
  const b = await connect({ port: second.port }, { token });
  const done = await waitRun(b.conn, call.run_id, (s) => s === 'succeeded' || s === 'failed', 10_000);
  t.equal(done.run.state, 'succeeded', 'the run completed after the restart');
  const notes = result<{ output: { notes: Array<{ title: string }> } }>(await b.conn.request('tool.invoke', { tool_id: 'notes.list_notes', args: {} })).output.notes;
  t.same(notes.map((n) => n.title), ['survives'], 'exactly once');
  const verify = result<{ ok: boolean }>(await b.conn.request('audit.verify'));
  t.equal(verify.ok, true, 'the audit chain verifies after the crash');
  t.equal(existsSync(join(home, 'tyrum.db')), TEST_STORE === 'sqlite', `the state is in ${TEST_STORE}`);
  b.conn.ws.close();
  second.child.kill('SIGTERM');
  await new Promise<void>((r) => second.child.once('exit', () => r()));
});
