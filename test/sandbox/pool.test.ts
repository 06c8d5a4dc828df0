import t from 'tap';
import { isTyrumError } from '../../core/errors/index.js';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { loadFixture, NO_INPUT, sha256, str, text, u64, wat } from './helpers.js';

const pool = new SandboxPool({ workers: 2 });
t.teardown(() => pool.close());

const reasonOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => sandboxReason(e) ?? String(e));

t.test('a module whose bytes differ from the lockfile digest is refused naming both digests (D8)', async (t) => {
  const wasm = await wat('pdk');
  const expected = sha256(new Uint8Array([1, 2, 3]));
  const e = await pool.load('tampered', { wasm, expectedSha256: expected, exports: ['greet'] }).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'digest_mismatch');
  t.match((e as Error).message, `expected sha256 ${expected}, got ${sha256(wasm)}`);
  t.equal(await reasonOf(pool.call('tampered', 'greet', NO_INPUT)), 'not_loaded', 'nothing was loaded');
});

t.test('a module importing legacy WASI (wasi_unstable) is refused at load naming the imports (D5)', async (t) => {
  const e = await loadFixture(pool, 'wasi', 'wasi', ['run']).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'module_rejected');
  t.match((e as Error).message, /wasi_unstable\.fd_write.*wasi_unstable\.path_open/);
});

t.test('a start function that traps fails the load cleanly without restarting the worker', async (t) => {
  const before = pool.stats().workers.reduce((n, w) => n + w.restarts, 0);
  const e = await loadFixture(pool, 'bad-start', 'start-trap', ['ok']).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'instantiate_failed');
  t.match((e as Error).message, /plugin failed to start: plugin trapped: unreachable/);
  t.equal(pool.stats().workers.reduce((n, w) => n + w.restarts, 0), before);
});

t.test('keys are unique, validated, and an undeclared export cannot be called', async (t) => {
  await loadFixture(pool, 'dup', 'pdk', ['echo']);
  const e = await loadFixture(pool, 'dup', 'pdk', ['echo']).catch((e: unknown) => e);
  t.ok(isTyrumError(e, 'TYRUM_ERR_CONFLICT'));
  t.equal(await reasonOf(loadFixture(pool, '../etc', 'pdk', ['echo'])), 'invalid_argument');
  t.equal(await reasonOf(pool.call('dup', 'greet', NO_INPUT)), 'not_loaded', 'greet exists in the module but was not declared');
  t.equal(await reasonOf(loadFixture(pool, 'cfg', 'pdk', ['echo'], { config: { n: 1 as unknown as string } })), 'invalid_argument');
  t.equal(await reasonOf(loadFixture(pool, 'lim', 'pdk', ['echo'], { limits: { memoryPages: 70_000 } })), 'invalid_argument');
});

t.test('unload fails queued calls and frees the key', async (t) => {
  await loadFixture(pool, 'gone', 'hostile', ['spin', 'ok'], { limits: { wallMs: 300 } });
  const spin = reasonOf(pool.call('gone', 'spin', NO_INPUT));
  const queued = reasonOf(pool.call('gone', 'ok', NO_INPUT));
  await pool.unload('gone');
  t.equal(await queued, 'not_loaded');
  t.equal(await spin, 'timeout', 'the running call still ends at its budget');
  t.equal(await reasonOf(pool.call('gone', 'ok', NO_INPUT)), 'not_loaded');
  const again = await loadFixture(pool, 'gone', 'hostile', ['ok']);
  t.equal(u64((await pool.call(again.key, 'ok', NO_INPUT)).output), 42);
  await pool.unload('never-loaded');
});

t.test('the log level filters lines and is what get_log_level tells the guest', async (t) => {
  await loadFixture(pool, 'quiet', 'pdk', ['greet'], { config: { greeting: 'Hi' }, logLevel: 'warn' });
  const r = await pool.call('quiet', 'greet', text('you'));
  t.equal(str(r.output), 'Hi, you!');
  t.same(r.logs, [], 'the info line is not kept');
  t.equal(r.usage.logs_dropped, 0, 'filtered lines are not counted as dropped');
});

t.test('a closed pool fails pending work and refuses new work', async (t) => {
  const own = new SandboxPool({ workers: 1 });
  await loadFixture(own, 'p', 'hostile', ['spin', 'ok']);
  const running = reasonOf(own.call('p', 'spin', NO_INPUT));
  const queued = reasonOf(own.call('p', 'ok', NO_INPUT));
  await own.close();
  t.equal(await running, 'closed');
  t.equal(await queued, 'closed');
  t.equal(await reasonOf(own.call('p', 'ok', NO_INPUT)), 'closed');
  t.equal(await reasonOf(loadFixture(own, 'q', 'pdk', ['echo'])), 'closed');
  await own.close();
});

t.test('plugins spread over the workers', async (t) => {
  const own = new SandboxPool({ workers: 2 });
  t.teardown(() => own.close());
  const infos = [];
  for (let i = 0; i < 4; i++) infos.push(await loadFixture(own, `p${i}`, 'pdk', ['echo']));
  t.same(infos.map((i) => i.worker).sort(), [0, 0, 1, 1]);
  t.same(own.stats().workers.map((w) => w.plugins.length), [2, 2]);
});

t.test('options are validated', async (t) => {
  const thrown = (fn: () => unknown) => {
    try {
      fn();
      return 'no error';
    } catch (e) {
      return sandboxReason(e);
    }
  };
  t.equal(thrown(() => new SandboxPool({ workers: 0 })), 'invalid_argument');
  t.equal(thrown(() => new SandboxPool({ defaultLimits: { wallMs: -1 } })), 'invalid_argument');
});
