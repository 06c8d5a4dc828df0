// examples/status-node: the third-party node pairs with a real gateway, answers in the built-in
// contracts' shape, streams evidence, and its readiness probe stops dispatches.
import t from 'tap';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { TyrumNode, type CredentialStore } from '../../sdk/index.js';
import { statusCapabilities } from '../../examples/status-node/node.js';
import { gatewayWithAdmin } from '../helpers/gateway.js';

class Mem implements CredentialStore {
  t: string | null = null;
  load() {
    return this.t;
  }
  save(x: string) {
    this.t = x;
  }
  clear() {
    this.t = null;
  }
}

t.test('status-node: paired, read through the pipeline with evidence, paused by its probe', async (t) => {
  const { gw, admin: { conn: admin } } = await gatewayWithAdmin(t);
  const pause = join(t.testdir(), 'pause');
  const { token: enroll } = await gw.tokens.create({ kind: 'node_enrollment', roles: ['node'], scopes: [], ttlSeconds: 600, createdBy: 'test' });
  let paired!: () => void;
  const done = new Promise<void>((r) => (paired = r));
  const node = new TyrumNode({
    url: gw.url,
    deviceKey: generateKeyPairSync('ed25519').privateKey,
    enrollmentToken: enroll,
    credentials: new Mem(),
    capabilities: statusCapabilities(pause),
    device: { label: 'status' },
    onStatus: (s) => void (s.state === 'connected' && s.with === 'node_token' && paired()),
  });
  await node.start();
  t.teardown(() => node.stop());
  const list = (await admin.request('pairing.list', { state: 'awaiting_human' })).result as { pairings: Array<{ pairing_id: string }> };
  await admin.request('pairing.approve', { pairing_id: list.pairings[0]!.pairing_id, trust_level: 'local', capability_allowlist: [{ id: 'fs.list' }, { id: 'fs.read' }], read_only: ['fs.list', 'fs.read'] });
  await done;

  const read = await admin.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'status/load' }, wait_ms: 5000 });
  t.match(read, { ok: true, result: { state: 'succeeded', output: { content: /cpus/, encoding: 'utf8' } } });
  const run = (await admin.request('run.get', { run_id: (read.result as { run_id: string }).run_id })).result;
  t.match(run, { steps: [{ attempts: [{ evidence: { node_evidence: { host: String }, streamed: [{ step: 'sampled' }] } }] }] });
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.list', args: {}, wait_ms: 5000 }), { ok: true, result: { state: 'succeeded', output: { entries: [{ name: 'status/load' }, {}, {}] } } });
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'etc/passwd' }, wait_ms: 5000 }), { ok: true, result: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_CAPABILITY_FAILED', message: /no file etc\/passwd/ } } });

  writeFileSync(pause, '');
  await node.refreshReady();
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'status/load' }, wait_ms: 5000 }), { ok: true, result: { state: 'failed', error: { code: 'TYRUM_ERR_NODE_NOT_READY', message: /paused/ } } });
  rmSync(pause);
  await node.refreshReady();
  t.match(await admin.request('tool.invoke', { tool_id: 'node.fs.read', args: { path: 'status/uptime' }, wait_ms: 5000 }), { ok: true, result: { state: 'succeeded' } });
});
