// The issue 12 walk-through in one process: a gateway, the headless node (sdk/node/headless) in a
// workspace, the operator pairing it with the CLI, a state-changing write approved and done, then
// revocation: the node is closed and its next call refused until it is paired again.
import t from 'tap';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startHeadlessNode } from '../../../sdk/node/headless/run.js';
import { runCli, cliGateway } from '../../helpers/cli.js';
import { connect } from '../../helpers/gateway.js';
import type { NodeStatus } from '../../../sdk/node/runtime.js';

async function until<T>(f: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('headless node: pair with the CLI, an approved write lands in the workspace, revoke closes it', async (t) => {
  const { gw, H } = await cliGateway(t);
  const dir = t.testdir();
  const workspace = join(dir, 'ws');
  mkdirSync(workspace);
  const enroll = JSON.parse((await runCli(['node', 'enroll', '--json', ...H])).out) as { token: string };
  const seen: NodeStatus[] = [];
  const { node, capabilities } = await startHeadlessNode({ url: gw.url, workspace, stateDir: join(dir, 'state'), enrollmentToken: enroll.token, label: 'dev box', allowExec: ['printf'], onStatus: (s) => seen.push(s) });
  t.teardown(() => node.stop());
  t.same(capabilities, ['fs.list@1', 'fs.read@1', 'fs.search@1', 'sys.noop@1', 'fs.write@1', 'shell.exec@1'], 'shell.exec because its operator named a command');
  t.match(seen, [{ state: 'connected', with: 'enrollment_token' }, { state: 'waiting_for_approval' }]);

  const listed = await until(async () => {
    const r = await runCli(['node', 'list', '--json', ...H]);
    const p = (JSON.parse(r.out) as { pairings: Array<{ pairing_id: string; state: string }> }).pairings[0];
    return p?.state === 'awaiting_human' ? p : undefined;
  });
  const approved = await runCli(['node', 'approve', listed.pairing_id, '--allow', 'fs.read,fs.write,shell.exec', '--read-only', 'fs.read', ...H]);
  t.equal(approved.code, 0, approved.err);
  await until(() => (seen.some((s) => s.state === 'connected' && s.with === 'node_token') ? true : undefined));
  t.equal(statSync(join(dir, 'state', 'node-token')).mode & 0o777, 0o600, 'the node token is stored owner-only');

  const admin = (await connect(gw)).conn;
  t.teardown(() => admin.ws.close());
  const write = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@dev-box', args: { path: 'notes/hello.txt', content: 'hello', create_dirs: true }, wait_ms: 2000 })).result as { state: string; approval_id: string; run_id: string };
  t.equal(write.state, 'paused', 'fs.write waits for an approval');
  t.match(await admin.request('approval.resolve', { approval_id: write.approval_id, decision: 'approved' }), { ok: true });
  const done = await until(async () => {
    const r = (await admin.request('run.get', { run_id: write.run_id })).result as { run: { state: string }; steps: Array<{ result: unknown }> };
    return r.run.state === 'succeeded' || r.run.state === 'failed' ? r : undefined;
  });
  t.match(done, { run: { state: 'succeeded' }, steps: [{ result: { size: 5, created: true } }] });
  t.match(done, { steps: [{ attempts: [{ evidence: { node: 'dev-box', dispatch_id: /^dsp_/, node_evidence: { path: 'notes/hello.txt', before: { exists: false }, after: { size: 5 } } } }] }] }, 'the node evidence is kept with the attempt');
  const human = await runCli(['run', 'get', write.run_id], { TYRUM_TOKEN: gw.adminToken, TYRUM_URL: gw.url });
  t.match(human.out, /evidence: \{"dispatch_id":"dsp_[0-9a-f]+","node":"dev-box".*"before":\{"exists":false/, 'tyrum run get shows it');
  t.equal(readFileSync(join(workspace, 'notes', 'hello.txt'), 'utf8'), 'hello', 'the file is in the workspace');
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read@dev-box', args: { path: 'notes/hello.txt' }, wait_ms: 5000 }), { ok: true, result: { state: 'succeeded', output: { content: 'hello' } } });
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read@dev-box', args: { path: '../escape' }, wait_ms: 5000 }), { ok: true, result: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_REFUSED', message: /node dev-box: / } } }, 'the node refuses a path out of the workspace');

  // shell.exec: argv passed literally, the pid streamed as evidence while it runs.
  const exec = (await admin.request('tool.invoke', { tool_id: 'node.shell.exec@dev-box', args: { argv: ['printf', '%s', 'a; rm -rf $(x)'] }, wait_ms: 2000 })).result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: exec.approval_id, decision: 'approved' });
  const ran = await until(async () => {
    const r = (await admin.request('run.get', { run_id: exec.run_id })).result as { run: { state: string } };
    return r.run.state === 'succeeded' || r.run.state === 'failed' ? r : undefined;
  });
  t.match(ran, { run: { state: 'succeeded' }, steps: [{ result: { exit_code: 0, stdout: 'a; rm -rf $(x)' }, attempts: [{ evidence: { streamed: [{ kind: 'started', pid: Number }] } }] }] });
  const notAllowed = (await admin.request('tool.invoke', { tool_id: 'node.shell.exec@dev-box', args: { argv: ['rm', '-rf', 'notes'] }, wait_ms: 2000 })).result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: notAllowed.approval_id, decision: 'approved' });
  await until(async () => (((await admin.request('run.get', { run_id: notAllowed.run_id })).result as { run: { state: string } }).run.state === 'failed' ? true : undefined));
  t.ok(statSync(join(workspace, 'notes', 'hello.txt')).isFile(), 'a command its operator did not allow is refused on the node');

  const revoked = await runCli(['node', 'revoke', 'dev-box', ...H]);
  t.equal(revoked.code, 0, revoked.err);
  await until(() => (seen.some((s) => s.state === 'revoked') ? true : undefined), 5000);
  // With its enrollment token still valid, the node asks again: a new pairing, nothing allowed.
  const again = await until(async () => {
    const r = await runCli(['node', 'list', '--state', 'awaiting_human', '--json', ...H]);
    return (JSON.parse(r.out) as { pairings: Array<{ pairing_id: string; capability_allowlist: unknown[] }> }).pairings[0];
  });
  t.not(again.pairing_id, listed.pairing_id);
  t.same(again.capability_allowlist, []);
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read@dev-box', args: { path: 'notes/hello.txt' } }), { ok: false, error: { code: 'forbidden', message: /no approved node dev-box/ } }, 'refused until paired again');
});
