/**
 * The incremental plugin catalog and on-demand sandboxes (issue 11): a lifecycle change of one
 * plugin re-reads and recompiles nothing of the others, start reads no plugin, idle sandboxes are
 * evicted and started again by the next call (plugin state kept, digests checked again), and a
 * sandbox with a call in flight is never evicted.
 */
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestGateway, removeHome, type TestGateway } from '../../helpers/gateway.js';
import { pluginDir, installEnabled } from './helpers.js';

const CLI = { kind: 'cli', user: 'test' };
const TEXT_IN = { type: 'object', properties: { text: { type: 'string' } } };

async function gateway(t: { teardown(fn: () => unknown): void }, opts: { home?: string; config?: Record<string, unknown> } = {}): Promise<TestGateway> {
  const gw = await startTestGateway(opts);
  t.teardown(() => gw.close());
  return gw;
}

const echo = (dir: string, id: string, opts: { version?: string; input?: Record<string, unknown> } = {}) =>
  pluginDir(dir, { id, wat: 'raw-io', tools: [{ id: 'echo', input: opts.input ?? TEXT_IN }], ...(opts.version ? { version: opts.version } : {}) });

/** The counter of the kv fixture after one `incr` (its output: the new value, u64 LE, then kv_set's status). */
async function incr(gw: TestGateway): Promise<number> {
  const r = await gw.host.invoke('counter.incr', {}, CLI);
  return Number(Buffer.from((r.output as { raw: string }).raw, 'base64').readBigUInt64LE(0));
}

async function installCounter(gw: TestGateway, dir: string): Promise<void> {
  const src = await pluginDir(dir, {
    id: 'counter',
    wat: 'kv',
    tools: [{ id: 'incr', effect: 'state_changing', output: { type: 'object', properties: { raw: { type: 'string' } } }, io: { output: { encoding: 'bytes', field: 'raw' } } }],
    requests: { kv: { quota_bytes: 1024 } },
    risk: ['state_changing', 'storage'],
  });
  await gw.plugins.install(src, CLI);
  await gw.plugins.grant('counter', { allRequested: true, acceptRisks: ['state_changing', 'storage'] }, CLI);
  await gw.plugins.enable('counter', CLI);
}

t.test('a lifecycle change of one plugin re-reads and recompiles only that plugin', async (t) => {
  const gw = await gateway(t);
  const dir = t.testdir();
  await installEnabled(gw.plugins, await echo(dir, 'alpha'));
  await installEnabled(gw.plugins, await echo(dir, 'beta'));
  t.same((await gw.host.invoke('alpha.echo', { text: 'a' }, CLI)).output, { text: 'a' });
  t.same((await gw.host.invoke('beta.echo', { text: 'b' }, CLI)).output, { text: 'b' });
  const alpha = gw.host.validatorsOf('alpha.echo')!;
  t.equal(gw.host.validatorsOf('beta.echo')!.input, alpha.input, 'identical schemas of two plugins share one compiled validator');
  const reads = gw.host.entryReads;
  const compiles = gw.host.validators.compiles;

  await installEnabled(gw.plugins, await echo(dir, 'gamma', { input: { type: 'object', required: ['text'] } }));
  t.equal(gw.host.entryReads, reads, 'installing, granting and enabling a plugin reads no plugin until it is used');
  t.equal(gw.host.validators.compiles, compiles, '... and compiles nothing');
  t.same((await gw.host.invoke('gamma.echo', { text: 'g' }, CLI)).output, { text: 'g' });
  t.equal(gw.host.entryReads, reads + 1, 'its first call reads it alone');
  t.equal(gw.host.validators.compiles, compiles + 1, 'and compiles only the schema no other tool has');

  const upgraded = await gw.plugins.install(await echo(dir, 'beta', { version: '1.1.0' }), CLI);
  t.equal(upgraded.action, 'upgraded');
  t.equal(upgraded.plugin.state, 'enabled', 'an upgrade asking for nothing new stays enabled');
  await gw.plugins.grant('beta', { allRequested: true }, CLI);
  t.equal(gw.host.entryReads, reads + 3, 'the upgrade and the grant each re-read beta (in use) and nothing else');
  await gw.plugins.disable('beta', CLI);
  await gw.plugins.enable('beta', CLI);
  await gw.plugins.disable('gamma', CLI);
  await gw.plugins.remove('gamma', CLI);
  t.equal(gw.host.entryReads, reads + 3, 'disable, enable and remove read nothing');
  t.same((await gw.host.invoke('beta.echo', { text: 'b2' }, CLI)).output, { text: 'b2' });
  t.equal(gw.host.entryReads, reads + 4);

  const after = gw.host.validatorsOf('alpha.echo')!;
  t.equal(after.input, alpha.input, "the other plugin's compiled input validator is the same object");
  t.equal(after.output, alpha.output, '... and its output validator');
  t.equal(gw.host.validators.compiles, compiles + 1, 'nothing was recompiled');
  t.equal(gw.host.describe('gamma.echo'), undefined, 'the removed plugin is gone from the catalog');

  // A listing reads every enabled plugin once; after it, a change reads only the changed plugin.
  await installEnabled(gw.plugins, await echo(dir, 'delta'));
  const listed = (await gw.tools.list()).map((x) => x.tool_id);
  t.same(listed, ['alpha.echo', 'beta.echo', 'delta.echo']);
  const afterList = gw.host.entryReads;
  t.same(gw.host.tools().map((x) => x.tool_id), listed, 'a second listing reads nothing');
  await installEnabled(gw.plugins, await echo(dir, 'epsilon'));
  t.equal(gw.host.entryReads, afterList + 1, 'once listed, enabling one plugin reads that plugin only');
  t.same(gw.host.tools().map((x) => x.tool_id), [...listed, 'epsilon.echo']);
  await gw.plugins.disable('delta', CLI);
  t.same(gw.host.tools().map((x) => x.tool_id), ['alpha.echo', 'beta.echo', 'epsilon.echo']);
  t.equal(gw.host.entryReads, afterList + 1);
  t.equal(gw.host.validatorsOf('alpha.echo')!.input, alpha.input);
});

t.test('a change made by another process is found by its stamp and touches only that plugin', async (t) => {
  const gw = await gateway(t);
  const dir = t.testdir();
  await installEnabled(gw.plugins, await echo(dir, 'alpha'));
  await installEnabled(gw.plugins, await echo(dir, 'beta'));
  await gw.host.invoke('alpha.echo', { text: 'a' }, CLI);
  await gw.host.invoke('beta.echo', { text: 'b' }, CLI);
  const alpha = gw.host.validatorsOf('alpha.echo')!;
  const reads = gw.host.entryReads;
  // What the gateway sees of a CLI change: the row changed, no in-process notice.
  t.same(await gw.host.reconcile(), [], 'nothing changed: nothing touched');
  gw.store.plugins.setState('beta', 'disabled', Date.now() + 60_000);
  const changes = await gw.host.reconcile();
  t.same(changes.map((c) => c.id), ['beta'], 'only the changed plugin is reconciled');
  t.equal(gw.host.describe('beta.echo'), undefined, 'disabled elsewhere: its tool is gone');
  t.equal(gw.host.entryReads, reads, 'nothing was read for the others');
  t.equal(gw.host.validatorsOf('alpha.echo')!.input, alpha.input);
  t.notOk(gw.host.liveSandboxes().includes('beta'), "the disabled plugin's sandbox was unloaded");
  t.ok(gw.host.liveSandboxes().includes('alpha'), "the other plugin's sandbox kept running");
});

t.test('start reads no plugin and starts no sandbox; the first call does, after checking its digests', async (t) => {
  const dir = t.testdir();
  const first = await startTestGateway();
  const home = first.home;
  t.teardown(() => removeHome(home));
  for (const id of ['one', 'two', 'three']) await installEnabled(first.plugins, await echo(dir, id));
  await first.close();

  const gw = await gateway(t, { home });
  t.equal(gw.host.entryReads, 0, 'no catalog entry read at start');
  t.equal(gw.host.validators.compiles, 0, 'no schema compiled at start');
  t.same(gw.host.liveSandboxes(), [], 'no sandbox started at start');
  t.same((await gw.host.invoke('two.echo', { text: '2' }, CLI)).output, { text: '2' });
  t.equal(gw.host.entryReads, 1, 'the first call read its plugin alone');
  t.same(gw.host.liveSandboxes(), ['two']);

  // Digests are checked before any code of a plugin runs, on its first call after start.
  const vdir = join(home, 'plugins', 'three', '1.0.0');
  const wasmPath = join(vdir, readdirSync(vdir).find((f) => f.endsWith('.wasm'))!);
  const bytes = readFileSync(wasmPath);
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
  writeFileSync(wasmPath, bytes);
  await t.rejects(gw.host.invoke('three.echo', { text: '3' }, CLI), { message: /[0-9a-f]{64}.*[0-9a-f]{64}/s }, 'a module changed on disk is refused at its first call');
});

t.test('an evicted sandbox starts again on the next call; plugin state survives; digests are checked again', async (t) => {
  const gw = await gateway(t, { config: { limits: { max_live_sandboxes: 1 } } });
  const dir = t.testdir();
  await installCounter(gw, dir);
  await installEnabled(gw.plugins, await echo(dir, 'alpha'));
  t.equal(await incr(gw), 1);
  t.equal(await incr(gw), 2);
  t.same(gw.host.liveSandboxes(), ['counter']);
  t.same((await gw.host.invoke('alpha.echo', { text: 'a' }, CLI)).output, { text: 'a' });
  t.same(gw.host.liveSandboxes(), ['alpha'], 'max_live_sandboxes 1: starting alpha evicted the idle counter');
  t.equal(gw.host.evictions, 1);
  t.equal(await incr(gw), 3, 'the next call started counter again, with its key-value state intact');
  t.same(gw.host.liveSandboxes(), ['counter']);

  t.equal(gw.host.evict('counter'), true, 'an idle sandbox can be evicted');
  t.same(gw.host.liveSandboxes(), []);
  t.equal(await incr(gw), 4);

  // Every start re-verifies the files, so a manifest or module changed while its sandbox was
  // evicted is refused (the manifest's checks are remembered by digest, never its digest).
  t.equal(gw.host.evict('counter'), true);
  const vdir = join(gw.home, 'plugins', 'counter', '1.0.0');
  const manifestPath = join(vdir, 'tyrum.plugin.json');
  const manifest = readFileSync(manifestPath);
  writeFileSync(manifestPath, `${manifest.toString('utf8')} `);
  await t.rejects(incr(gw), { message: /tyrum\.plugin\.json was modified/ });
  writeFileSync(manifestPath, manifest);
  t.equal(await incr(gw), 5, 'restored: it starts again');
  t.equal(gw.host.evict('counter'), true);
  const wasmPath = join(vdir, readdirSync(vdir).find((f) => f.endsWith('.wasm'))!);
  const bytes = readFileSync(wasmPath);
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
  writeFileSync(wasmPath, bytes);
  await t.rejects(incr(gw), { message: /[0-9a-f]{64}.*[0-9a-f]{64}/s });
});

t.test('a sandbox with a call in flight is never evicted, by the limit or when idle', async (t) => {
  // The call is held inside the plugin (its HTTP request waits on this server) until released.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const inFlight = new Promise<void>((r) => (arrived = r));
  const srv = createServer((_req, res) => {
    arrived();
    void released.then(() => res.end(JSON.stringify({ ok: true })));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => srv.close(r)));
  const port = (srv.address() as AddressInfo).port;

  const gw = await gateway(t, { config: { limits: { max_live_sandboxes: 1, sandbox_idle_ms: 20 } } });
  const dir = t.testdir();
  const fetcher = await pluginDir(dir, { id: 'fetcher', wat: 'http', tools: [{ id: 'fetch', input: { type: 'object' }, output: {} }], requests: { egress: [{ host: '*', methods: ['GET'] }] }, risk: ['network'] });
  await gw.plugins.install(fetcher, CLI);
  await gw.plugins.grant('fetcher', { grant: { egress: [{ host: '127.0.0.1', scheme: 'http', port }] }, acceptRisks: ['network'] }, CLI);
  await gw.plugins.enable('fetcher', CLI);
  await installEnabled(gw.plugins, await echo(dir, 'alpha'));

  const call = gw.host.invoke('fetcher.fetch', { url: `http://127.0.0.1:${port}/slow`, method: 'GET', headers: {} }, CLI);
  const guard = setTimeout(() => release(), 10_000);
  t.teardown(() => clearTimeout(guard));
  await inFlight;
  t.equal(gw.host.evict('fetcher'), false, 'eviction refuses a sandbox with a call in flight');
  // Idle sweeps run every 20 ms: ten times over, none takes the busy sandbox.
  await new Promise((r) => setTimeout(r, 200));
  t.ok(gw.host.liveSandboxes().includes('fetcher'), 'the idle sweep left it alone');
  t.same((await gw.host.invoke('alpha.echo', { text: 'a' }, CLI)).output, { text: 'a' }, 'another plugin still starts');
  t.ok(gw.host.liveSandboxes().includes('fetcher'), 'max_live_sandboxes 1: going over the limit rather than evicting the busy one');
  release();
  t.same((await call).output, { ok: true }, 'the call in flight completed with its answer');
  const deadline = Date.now() + 5_000;
  while (gw.host.liveSandboxes().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.same(gw.host.liveSandboxes(), [], 'once idle, both are evicted (sandbox_idle_ms)');
  t.same((await gw.host.invoke('alpha.echo', { text: 'again' }, CLI)).output, { text: 'again' }, 'and start again on demand');
});
