import t from 'tap';
import { SandboxPool, sandboxReason, type SandboxEvent } from '../../sandbox/index.js';
import { loadFixture, NO_INPUT, str, text, u64 } from './helpers.js';

const events: SandboxEvent[] = [];
const pool = new SandboxPool({ workers: 2, onEvent: (e) => events.push(e) });
t.teardown(() => pool.close());

t.test('a plugin built the way the Extism PDKs build runs unchanged: input, config, output, log', async (t) => {
  const info = await loadFixture(pool, 'greeter', 'pdk', ['greet', 'count', 'echo'], { config: { greeting: 'Hello' } });
  t.match(info.memory, { declaredMaxPages: null, rewritten: true }, 'its missing memory maximum was capped, not refused');
  const r = await pool.call('greeter', 'greet', text('wörld'));
  t.equal(str(r.output), 'Hello, wörld!');
  t.same(r.logs, [{ level: 'info', message: 'greet called' }]);
  t.match(r.usage, { output_bytes: 14, log_lines: 1, mem_pages_peak: 1 });
  t.ok(r.usage.wall_ms > 0 && r.usage.host_calls > 0);
  const big = 'x'.repeat(5000);
  t.equal(str((await pool.call('greeter', 'echo', text(big))).output), big, 'inputs and outputs longer than a word round-trip');
  t.equal(str((await pool.call('greeter', 'echo', NO_INPUT)).output), '', 'an empty input gives an empty output');
});

t.test('Extism vars persist across calls of one instance', async (t) => {
  await loadFixture(pool, 'counter', 'pdk', ['count']);
  const seen = [];
  for (let i = 0; i < 3; i++) seen.push(u64((await pool.call('counter', 'count', NO_INPUT)).output));
  t.same(seen, [1, 2, 3]);
});

t.test('many calls do not exhaust the kernel (Extism 1.0.3 failed after ~16k calls without reset)', async (t) => {
  await loadFixture(pool, 'echo', 'pdk', ['echo']);
  const input = text('ping');
  for (let i = 0; i < 20_000; i++) {
    const r = await pool.call('echo', 'echo', input);
    if (str(r.output) !== 'ping') {
      t.fail(`call ${i} returned ${str(r.output)}`);
      return;
    }
  }
  t.pass('20,000 calls answered');
});

t.test('a guest-reported error is a coded plugin_error and keeps the instance', async (t) => {
  await loadFixture(pool, 'unconfigured', 'pdk', ['greet', 'count']);
  t.equal(u64((await pool.call('unconfigured', 'count', NO_INPUT)).output), 1);
  const e = await pool.call('unconfigured', 'greet', text('x')).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'plugin_error');
  t.match((e as Error).message, 'plugin reported an error: no greeting configured');
  t.equal(u64((await pool.call('unconfigured', 'count', NO_INPUT)).output), 2, 'same instance: the var survived');
});

t.test('a trap is a coded error and the next call runs on a fresh instance', async (t) => {
  await loadFixture(pool, 'trapper', 'hostile', ['boom', 'grow', 'ok', 'stack_overflow'], { limits: { memoryPages: 8 } });
  t.equal((await pool.call('trapper', 'grow', NO_INPUT)).usage.mem_pages_peak, 8);
  const e = await pool.call('trapper', 'boom', NO_INPUT).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'trap');
  t.match((e as Error).message, /plugin trapped: unreachable/);
  t.match(e, { details: { plugin: 'trapper', export: 'boom' } });
  const next = await pool.call('trapper', 'ok', NO_INPUT);
  t.equal(u64(next.output), 42);
  t.equal(next.usage.mem_pages_peak, 1, 'memory is back to its initial size: a new instance');

  const so = await pool.call('trapper', 'stack_overflow', NO_INPUT).catch((e: unknown) => e);
  t.equal(sandboxReason(so), 'trap');
  t.match((so as Error).message, /stack overflow/);
  t.equal(u64((await pool.call('trapper', 'ok', NO_INPUT)).output), 42);
});

t.test('a crashed worker does not take the process down; its plugins come back', async (t) => {
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => {
    process.off('uncaughtException', onUncaught);
  });
  const info = await loadFixture(pool, 'survivor', 'pdk', ['echo']);
  const restarted = new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      if (events.some((e) => e.type === 'worker_restart' && e.reason === 'crash' && e.worker === info.worker)) {
        clearInterval(iv);
        resolve();
      }
    }, 5);
  });
  pool.injectWorkerCrash(info.worker);
  await restarted;
  t.equal(str((await pool.call('survivor', 'echo', text('back'))).output), 'back');
  t.same(uncaught, [], 'nothing reached the process');
});

t.test('a call in flight when its worker dies fails with a coded crash error; the next call works', async (t) => {
  await loadFixture(pool, 'inflight', 'hostile', ['ok']);
  const worker = pool.stats().workers.find((w) => w.plugins.includes('inflight'))?.index ?? -1;
  // The worker reads the crash request before the call that follows it, and dies holding the call.
  pool.injectWorkerCrash(worker);
  const e = await pool.call('inflight', 'ok', NO_INPUT).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'crash');
  t.match((e as Error).message, /worker running plugin "inflight" died/);
  t.equal(u64((await pool.call('inflight', 'ok', NO_INPUT)).output), 42);
});
