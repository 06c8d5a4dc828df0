// Node capabilities as tools through the one pipeline (issue 12; TESTPLAN J3): policy and
// approvals as for any tool, task.execute to the paired node's connection, the contract checked
// on both sides, a disconnect mid-dispatch leaving a non-idempotent step outcome_unknown.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { gatewayWithAdmin, connect, newDevice, type RawConn, type RawDevice, type TestGateway } from '../../helpers/gateway.js';

const CAPS = [{ id: 'fs.read', version: '1' }, { id: 'fs.write', version: '1' }, { id: 'shell.exec', version: '1' }];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
type Answer = { ok: true; result: Record<string, unknown> } | { ok: false; error: Record<string, unknown> } | 'drop' | { stream: Array<Record<string, unknown>>; then: Answer };

/** A node that answers task.execute with `answer` (recording what it was asked). */
function serve(conn: RawConn, answer: (capability: string, args: Record<string, unknown>) => Answer) {
  const asked: Array<{ capability: string; args: Record<string, unknown>; dispatch_id: string }> = [];
  conn.ws.on('message', (d) => {
    const f = JSON.parse(d.toString()) as { request_id?: string; type?: string; payload?: Record<string, unknown>; ok?: boolean };
    if (f.type !== 'task.execute' || f.payload === undefined || 'ok' in f) return;
    const p = f.payload as { capability: string; args: Record<string, unknown>; dispatch_id: string };
    asked.push(p);
    void (async () => {
      let a = answer(p.capability, p.args);
      if (typeof a === 'object' && 'stream' in a) {
        // Streamed evidence first, each acknowledged, then the final answer.
        for (const [seq, evidence] of a.stream.entries()) {
          const ack = await conn.request('attempt.evidence', { dispatch_id: p.dispatch_id, seq, evidence });
          if (ack.ok !== true) throw new Error(JSON.stringify(ack));
        }
        a = a.then;
      }
      if (a === 'drop') return void conn.ws.terminate();
      conn.send({ request_id: f.request_id, type: 'task.execute', ...(a as object) });
    })();
  });
  return asked;
}

/** Enroll, approve and connect a node with its node token; returns its paired connection. */
async function pairedNode(t: Test, gw: TestGateway, admin: RawConn, name: string, allow: { caps: string[]; readOnly: string[] }, device: RawDevice = newDevice()) {
  const enroll = (await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 3600, createdBy: 'test' })).token;
  const waiting = await connect(gw, { token: enroll, role: 'node', device, capabilities: CAPS });
  let pairingId = '';
  for (let i = 0; i < 100 && !pairingId; i++) {
    const list = (await admin.request('pairing.list', { state: 'awaiting_human' })).result as { pairings: Array<{ pairing_id: string; device_id: string }> };
    pairingId = list.pairings.find((p) => p.device_id === device.device_id)?.pairing_id ?? '';
    if (!pairingId) await new Promise((r) => setTimeout(r, 20));
  }
  const ok = await admin.request('pairing.approve', { pairing_id: pairingId, trust_level: 'remote', node_name: name, capability_allowlist: allow.caps.map((id) => ({ id })), read_only: allow.readOnly });
  if (ok.ok !== true) throw new Error(JSON.stringify(ok));
  const cred = await waiting.conn.incoming('pairing.credential');
  waiting.conn.send({ request_id: cred.request_id, type: 'pairing.credential', ok: true, result: { stored: true } });
  const node = await connect(gw, { token: (cred.payload as { token: string }).token, role: 'node', device, capabilities: CAPS });
  t.teardown(() => node.conn.ws.close());
  const ready = await node.conn.request('capability.ready', { capabilities: CAPS.map((c) => ({ ...c, ready: true })) });
  t.match(ready, { ok: true, result: { pairing_id: pairingId, state: 'approved', dispatchable: allow.caps.slice().sort() } }, 'what may be dispatched: allowed and ready');
  return { conn: node.conn, pairingId, device };
}

async function settled(admin: RawConn, runId: string, states = ['succeeded', 'failed', 'paused', 'cancelled']): Promise<Record<string, unknown>> {
  for (let i = 0; i < 300; i++) {
    const r = (await admin.request('run.get', { run_id: runId })).result as { run: { state: string } };
    if (states.includes(r.run.state)) return r as unknown as Record<string, unknown>;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`run ${runId} did not settle`);
}

t.test('node capabilities are tools: read-only runs, state-changing waits for approval, the contract holds both ways', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const node = await pairedNode(t, gw, admin, 'box', { caps: ['fs.read', 'fs.write'], readOnly: ['fs.read'] });
  let writeAnswer: Answer = { ok: true, result: { output: { size: 5, sha256: sha('hello'), created: true } } };
  const asked = serve(node.conn, (cap, args) => {
    if (cap === 'fs.read') return args.path === 'bad-output' ? { ok: true, result: { output: { content: 'x' } } } : { ok: true, result: { output: { content: 'hi', encoding: 'utf8', size: 2, sha256: sha('hi'), truncated: false } } };
    return writeAnswer;
  });

  const tools = ((await admin.request('tool.list')).result as { tools: Array<{ tool_id: string; effect: string; plugin_id: string }> }).tools.filter((x) => x.plugin_id === 'node');
  t.same(tools.map((x) => [x.tool_id, x.effect]).sort(), [['node.fs.read', 'read_only'], ['node.fs.read@box', 'read_only'], ['node.fs.write', 'state_changing'], ['node.fs.write@box', 'state_changing']]);

  const read = await admin.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'a.txt' }, wait_ms: 5000 });
  t.match(read, { ok: true, result: { state: 'succeeded', output: { content: 'hi', sha256: sha('hi') }, policy: { decision: 'allow' } } }, 'read-only: allowed by the default policy');
  t.match(asked[0], { capability: 'fs.read', args: { path: 'a.txt' }, dispatch_id: /^dsp_[0-9a-f]{24}$/ });
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'a.txt' }, wait_ms: 5000 }), { ok: true, result: { state: 'succeeded' } }, 'the short form names the only node that may run it');

  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: '/etc/passwd', bogus: 1 } }), { ok: false, error: { code: 'invalid_request', message: /input schema/ } }, 'arguments are checked against the contract before a run exists');
  const bad = await admin.request('tool.invoke', { tool_id: 'node.fs.read@box', args: { path: 'bad-output' }, wait_ms: 5000 });
  t.match(bad, { ok: true, result: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_OUTPUT_INVALID' } } }, 'an output the contract refuses fails the step');

  writeAnswer = { stream: [{ step: 'started' }], then: writeAnswer };
  const write = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@box', args: { path: 'b.txt', content: 'hello' }, wait_ms: 2000 })).result as { state: string; approval_id: string; run_id: string };
  t.equal(write.state, 'paused', 'state_changing by default: waits for an approval');
  t.equal(asked.filter((a) => a.capability === 'fs.write').length, 0, 'nothing sent before the approval');
  t.match(await admin.request('approval.resolve', { approval_id: write.approval_id, decision: 'approved' }), { ok: true });
  t.match(await settled(admin, write.run_id), { run: { state: 'succeeded' }, steps: [{ result: { size: 5, created: true }, attempts: [{ evidence: { node: 'box', streamed: [{ seq: 0, step: 'started' }] } }] }] });
  t.match(await node.conn.request('attempt.evidence', { dispatch_id: 'dsp_' + '0'.repeat(24), seq: 0, evidence: { x: 1 } }), { ok: false, error: { code: 'not_found' } }, 'evidence for a dispatch not running here is refused');
  t.equal(asked.filter((a) => a.capability === 'fs.write').length, 1, 'sent once, after the approval');

  writeAnswer = { ok: false, error: { code: 'forbidden', message: 'fs.write is not enabled on this node', details: { reason: 'not_enabled' } } } as Answer;
  const refused = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@box', args: { path: 'c.txt', content: 'x' }, wait_ms: 2000 })).result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: refused.approval_id, decision: 'approved' });
  t.match(await settled(admin, refused.run_id), { run: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_REFUSED' } } }, "the node's own consent refusing is a failure, not retried");

  t.match(await admin.request('tool.invoke', { tool_id: 'node.shell.exec@box', args: { argv: ['ls'] } }), { ok: false, error: { code: 'forbidden', message: /not in the allowlist of node box/ } }, 'advertised but not allowed');
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read@nobody', args: { path: 'a' } }), { ok: false, error: { code: 'forbidden', message: /no approved node nobody/ } });

  // Not ready (a local permission, say): nothing is sent, the step says why.
  t.match(await node.conn.request('capability.ready', { capabilities: [{ id: 'fs.read', version: '1', ready: true }, { id: 'fs.write', version: '1', ready: false, reason: 'disk is read-only' }] }), { ok: true, result: { dispatchable: ['fs.read'] } });
  const before = asked.length;
  const blocked = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@box', args: { path: 'z.txt', content: 'x' }, wait_ms: 2000 })).result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: blocked.approval_id, decision: 'approved' });
  t.match(await settled(admin, blocked.run_id), { run: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_NOT_READY', message: /disk is read-only/ } } });
  t.equal(asked.length, before, 'nothing was sent');
  t.match(await node.conn.request('capability.ready', { capabilities: [{ id: 'camera.snap', version: '1', ready: true }] }), { ok: false, error: { code: 'invalid_request', message: /not advertised/ } });
  await node.conn.request('capability.ready', { capabilities: CAPS.map((c) => ({ ...c, ready: true })) });

  // J3: the node's connection drops while it works on a non-idempotent capability.
  writeAnswer = { stream: [{ step: 'opened' }, { step: 'half written' }], then: 'drop' };
  const cut = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@box', args: { path: 'd.txt', content: 'x' }, wait_ms: 2000 })).result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: cut.approval_id, decision: 'approved' });
  const unknown = await settled(admin, cut.run_id, ['paused', 'failed', 'succeeded']);
  t.match(unknown, { run: { state: 'paused', pause_reason: 'outcome_unknown' }, steps: [{ state: 'outcome_unknown', attempts: [{ error: { code: 'TYRUM_ERR_NODE_DISCONNECTED' } }] }] }, 'outcome_unknown: never silently re-sent');
  t.match(unknown, { steps: [{ attempts: [{ error: { details: { streamed_evidence: [{ seq: 0, step: 'opened' }, { seq: 1, step: 'half written' }] } } }] }] }, 'how far the node got is kept with the failure');
  t.equal(asked.filter((a) => a.args.path === 'd.txt').length, 1);

  // Not connected now: nothing is sent, the call fails saying so.
  const offline = await admin.request('tool.invoke', { tool_id: 'node.fs.write@box', args: { path: 'e.txt', content: 'x' }, wait_ms: 2000 });
  const off = offline.result as { approval_id: string; run_id: string };
  await admin.request('approval.resolve', { approval_id: off.approval_id, decision: 'approved' });
  t.match(await settled(admin, off.run_id), { run: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_UNAVAILABLE' } } });
});

t.test('two nodes with one capability: the short form is ambiguous; an approval binds to its node', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const a = await pairedNode(t, gw, admin, 'alpha', { caps: ['fs.write'], readOnly: [] });
  const b = await pairedNode(t, gw, admin, 'beta', { caps: ['fs.write'], readOnly: [] });
  const okWrite = (): Answer => ({ ok: true, result: { output: { size: 1, sha256: sha('x'), created: false } } });
  const askedA = serve(a.conn, okWrite);
  const askedB = serve(b.conn, okWrite);
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.write', args: { path: 'x', content: 'x' } }), { ok: false, error: { code: 'conflict', message: /2 nodes may run fs\.write: name one \(node\.fs\.write@alpha, node\.fs\.write@beta\)/ } });
  const r = (await admin.request('tool.invoke', { tool_id: 'node.fs.write@beta', args: { path: 'x', content: 'x' }, wait_ms: 2000 })).result as { approval_id: string; run_id: string; plugin_digest: string };
  await admin.request('approval.resolve', { approval_id: r.approval_id, decision: 'approved' });
  await settled(admin, r.run_id);
  t.equal(askedA.length, 0, 'alpha was never asked');
  t.equal(askedB.length, 1);
});
