// Node tasks across gateway replicas (real `tyrum start` processes on one PostgreSQL database):
// a node connected to replica B runs the task of a run started on replica A, once, and its answer
// is validated on A as a local node's is; presence on A lists the node B holds. Replica B killed
// with SIGKILL: A prunes it (the node shows gone, and the same events a disconnect emits reach
// A's clients), and a new task for the node fails as node-offline, coded, instead of hanging.
import t from 'tap';
import { createHash } from 'node:crypto';
import { connect, newDevice, type RawConn } from '../../helpers/gateway.js';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';
import { clientOf, newHome, result, startReplica } from './helpers.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
t.setTimeout(480_000);
const CAPS = [{ id: 'fs.read', version: '1' }];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Polls `fn` until it returns something other than undefined (a generous bound: a loaded box). */
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

type Entry = { device_id: string; role: string; connected: boolean };
const presenceOf = async (conn: RawConn, deviceId: string): Promise<Entry | undefined> => result<{ entries: Entry[] }>(await conn.request('presence.list')).entries.find((e) => e.device_id === deviceId && e.role === 'node');
type RunView = { run: { state: string; error: { code: string } | null }; steps: Array<{ result: unknown; attempts: Array<{ evidence: Record<string, unknown> | null; error: { code: string } | null }> }> };
const settled = (conn: RawConn, runId: string) =>
  until(`run ${runId} to settle`, async () => {
    const r = result<RunView>(await conn.request('run.get', { run_id: runId }));
    return ['succeeded', 'failed', 'paused', 'cancelled'].includes(r.run.state) ? r : undefined;
  });

t.test('a node connected to replica B runs the task of a run started on A; B killed: A prunes it and a new task fails as node-offline', { skip }, async (t) => {
  const url = (await cluster()).database();
  const homeA = newHome(t, url);
  const a = await startReplica(t, homeA);
  const token = a.token;
  if (token === null) throw new Error(`no bootstrap token: ${a.err().slice(0, 2000)}`);
  const b = await startReplica(t, newHome(t, url, homeA));
  const onA = await clientOf(t, a, token);
  const onB = await clientOf(t, b, token);

  // Paired and connected on B only.
  const device = newDevice();
  const enroll = result<{ token: string }>(await onB.request('node.bootstrap', {})).token;
  const waiting = await connect({ port: b.port }, { token: enroll, role: 'node', device, capabilities: CAPS });
  t.teardown(() => waiting.conn.ws.close());
  const pairingId = await until('the pairing request', async () => result<{ pairings: Array<{ pairing_id: string; device_id: string }> }>(await onB.request('pairing.list', { state: 'awaiting_human' })).pairings.find((p) => p.device_id === device.device_id)?.pairing_id);
  result(await onB.request('pairing.approve', { pairing_id: pairingId, trust_level: 'remote', node_name: 'box', capability_allowlist: [{ id: 'fs.read' }], read_only: ['fs.read'] }));
  const cred = await waiting.conn.incoming('pairing.credential');
  waiting.conn.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const node = await connect({ port: b.port }, { token: (cred.payload as { token: string }).token, role: 'node', device, capabilities: CAPS });
  t.teardown(() => node.conn.ws.close());
  t.match(await node.conn.request('capability.ready', { capabilities: [{ id: 'fs.read', version: '1', ready: true }] }), { ok: true, result: { dispatchable: ['fs.read'] } });
  const asked: Array<{ args: { path: string }; dispatch_id: string }> = [];
  node.conn.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as { request_id?: string; type?: string; payload?: { args: { path: string }; dispatch_id: string } };
    if (f.type !== 'task.execute' || f.payload === undefined || 'ok' in f) return;
    asked.push(f.payload);
    if (f.payload.args.path === 'slow') return; // still working when B dies
    const output = f.payload.args.path === 'bad-output' ? { content: 'x' } : { content: 'hi', encoding: 'utf8', size: 2, sha256: sha('hi'), truncated: false };
    node.conn.send({ request_id: f.request_id, type: 'task.execute', ok: true, result: { output, evidence: { where: 'B' } } });
  });

  // A lists the node B holds, once its directory read sees it.
  const seen = await until('the node on B in A\'s presence', () => presenceOf(onA, device.device_id));
  t.equal(seen.connected, true, 'presence on A lists the node connected to B');
  t.match(result<{ pairings: Array<{ connected: boolean }> }>(await onA.request('pairing.list', { state: 'approved' })).pairings, [{ connected: true }], "A's pairing list shows it connected");

  // A run started on A: its step's task goes to B's socket, and completes once with the node's result.
  const call = result<{ run_id: string }>(await onA.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'a.txt' }, wait_ms: 100 }, 10_000));
  const done = await settled(onA, call.run_id);
  t.match(done, { run: { state: 'succeeded' }, steps: [{ result: { content: 'hi', sha256: sha('hi') }, attempts: [{ evidence: { node: 'box', pairing_id: pairingId, node_evidence: { where: 'B' } } }] }] }, 'the node on B answered the run started on A');
  t.equal(done.steps[0]!.attempts.length, 1, 'one attempt');
  t.equal(asked.filter((x) => x.args.path === 'a.txt').length, 1, 'the node was asked once');
  t.equal((done.steps[0]!.attempts[0]!.evidence as { dispatch_id: string }).dispatch_id, asked[0]!.dispatch_id, 'the dispatch id A chose is the one the node saw');

  // The node's answer is checked on A as a local node's is.
  const bad = result<{ run_id: string }>(await onA.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'bad-output' }, wait_ms: 100 }, 10_000));
  t.match(await settled(onA, bad.run_id), { run: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_OUTPUT_INVALID' } } }, 'an output the contract refuses fails the step on A');

  // B dies with the node's socket, while the node works on a task of a run on A: A prunes it.
  const slow = result<{ run_id: string }>(await onA.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'slow' }, wait_ms: 100 }, 10_000));
  await until('the slow task to reach the node', async () => (asked.some((x) => x.args.path === 'slow') ? true : undefined));
  b.child.kill('SIGKILL');
  await new Promise((r) => b.child.once('exit', r));
  const gone = await until('A to prune the dead replica\'s node', async () => ((await presenceOf(onA, device.device_id))?.connected === true ? undefined : true));
  t.equal(gone, true, "the node is no longer connected in A's presence");
  t.ok(onA.frames.some((f) => f.type === 'presence.upserted' && (f.payload as { entry: Entry }).entry.device_id === device.device_id && (f.payload as { entry: Entry }).entry.connected === false), 'A announced the node disconnected');
  t.ok(onA.frames.some((f) => f.type === 'presence.pruned' && (f.payload as { device_id: string }).device_id === device.device_id), 'and pruned');
  t.match(result<{ pairings: Array<{ connected: boolean }> }>(await onA.request('pairing.list', { state: 'approved' })).pairings, [{ connected: false }]);
  const cut = await settled(onA, slow.run_id);
  t.match(cut, { steps: [{ attempts: [{ error: { code: 'TYRUM_ERR_NODE_DISCONNECTED' } }] }] }, 'the task in flight on the dead replica ends coded (its outcome unknown), it does not hang');
  t.equal(asked.filter((x) => x.args.path === 'slow').length, 1, 'and is not re-sent through the dead replica');
  const offline = result<{ run_id: string }>(await onA.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'c.txt' }, wait_ms: 100 }, 10_000));
  t.match(await settled(onA, offline.run_id), { run: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_UNAVAILABLE' } } }, 'a new task fails as node-offline, coded');
  t.equal(asked.filter((x) => x.args.path === 'c.txt').length, 0, 'nothing was sent');
});
