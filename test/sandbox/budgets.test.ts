import t from 'tap';
import { SandboxPool, sandboxReason } from '../../sandbox/index.js';
import { loadFixture, NO_INPUT, str, text, u64 } from './helpers.js';

const pool = new SandboxPool({ workers: 2 });
t.teardown(() => pool.close());

const HOSTILE = ['ok', 'grow', 'grow_big', 'huge_output', 'alloc_huge', 'log_flood', 'host_calls', 'swallow', 'boom'];

t.before(async () => {
  await loadFixture(pool, 'capped', 'hostile', HOSTILE, { limits: { memoryPages: 40 } });
  await loadFixture(pool, 'neighbour', 'pdk', ['echo']);
});

async function failure(p: Promise<unknown>): Promise<Error & { details: Record<string, unknown> }> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: Error & { details: Record<string, unknown> }) => e,
  );
}

t.test('memory.grow fails at the cap for a module that declared no maximum (D2)', async (t) => {
  const r = await pool.call('capped', 'grow', NO_INPUT);
  t.equal(u64(r.output), 40, 'grew page by page up to exactly the 40-page cap');
  t.equal(r.usage.mem_pages_peak, 40);
  const big = await pool.call('capped', 'grow_big', NO_INPUT);
  t.equal(new DataView(big.output.buffer, big.output.byteOffset).getBigInt64(0, true), -1n, 'a 4 GiB grow returns -1');
});

t.test('a declared maximum above the grant is lowered to the grant (D2)', async (t) => {
  const info = await loadFixture(pool, 'max-over', 'mem-max-over', ['grow'], { limits: { memoryPages: 30 } });
  t.match(info.memory, { declaredMaxPages: 1000, maxPages: 30, rewritten: true });
  t.equal(u64((await pool.call('max-over', 'grow', NO_INPUT)).output), 30);
  await pool.unload('max-over');
});

t.test('a module whose initial memory exceeds the grant is refused at load (D2)', async (t) => {
  const e = await failure(loadFixture(pool, 'too-big', 'mem-initial-over', ['run']));
  t.equal(sandboxReason(e), 'module_rejected');
  t.match(e.message, /initial memory is 300 pages, above the cap of 256 pages/);
  t.same(pool.stats().workers.flatMap((w) => w.plugins).includes('too-big'), false);
});

t.test('an output above the limit is a coded error, and the next call works (D3)', async (t) => {
  const e = await failure(pool.call('capped', 'huge_output', NO_INPUT));
  t.equal(sandboxReason(e), 'output_too_large');
  t.match(e.message, /output of 8388608 bytes exceeds the 4194304-byte limit/);
  t.equal(u64((await pool.call('capped', 'ok', NO_INPUT)).output), 42);
  const small = await failure(pool.call('neighbour', 'echo', text('x'.repeat(100)), { maxOutputBytes: 10 }));
  t.equal(sandboxReason(small), 'output_too_large', 'a per-call output limit applies too');
});

t.test('a flood of log lines is truncated, capped per call and rate-limited across calls (D3)', async (t) => {
  const r = await pool.call('capped', 'log_flood', NO_INPUT);
  t.equal(u64(r.output), 1, 'the call itself succeeds');
  t.equal(r.logs.length, 100, 'at most maxLogLines lines are kept');
  t.equal(r.usage.logs_dropped, 900);
  t.equal(r.usage.logs_truncated, 100);
  t.ok(
    r.logs.every((l) => l.message.startsWith('A'.repeat(2048) + '…') && l.message.endsWith('[truncated 2952 bytes]')),
    'every line is cut at maxLogLineBytes and says how much was cut',
  );
  t.same(new Set(r.logs.map((l) => l.level)), new Set(['info', 'warn']), 'Extism log_info and Tyrum log share the sink');
  const again = await pool.call('capped', 'log_flood', NO_INPUT);
  t.ok(again.logs.length < 10, `right after, the rate limit keeps only ${again.logs.length} lines`);
});

t.test('10^6 host calls in one call hit the host-call budget; other plugins are unaffected (D7)', async (t) => {
  const t0 = performance.now();
  const e = await failure(pool.call('capped', 'host_calls', NO_INPUT));
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.match(e.details, { budget: 'host_calls', limit: 10_000 });
  t.ok(performance.now() - t0 < 10_000, `stopped at the budget after ${(performance.now() - t0).toFixed(0)} ms (a hang guard; the details above say it was the budget)`);
  t.equal(str((await pool.call('neighbour', 'echo', text('fine'))).output), 'fine');
  t.equal(u64((await pool.call('capped', 'ok', NO_INPUT)).output), 42);
});

t.test('with a budget that allows them, 10^6 host calls complete', async (t) => {
  await loadFixture(pool, 'chatty', 'hostile', ['host_calls_log'], { limits: { maxHostCalls: 2_000_000 } });
  const r = await pool.call('chatty', 'host_calls_log', NO_INPUT);
  t.equal(u64(r.output), 1_000_000);
  t.equal(r.usage.host_calls, 1_000_001, 'the loop plus the output allocation');
  t.comment(`10^6 host calls took ${r.usage.wall_ms.toFixed(0)} ms`);
  await pool.unload('chatty');
});

t.test('a guest that catches the abort and carries on still fails the call', async (t) => {
  const t0 = performance.now();
  const e = await failure(pool.call('capped', 'swallow', NO_INPUT));
  t.ok(performance.now() - t0 < 10_000, 'rethrowing the abort to a guest that keeps calling does not hang (a hang guard)');
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.equal(u64((await pool.call('capped', 'ok', NO_INPUT)).output), 42);
});

t.test('kernel allocations are bounded per call', async (t) => {
  const e = await failure(pool.call('capped', 'alloc_huge', NO_INPUT));
  t.equal(sandboxReason(e), 'budget_exceeded');
  t.match(e.details, { budget: 'alloc_bytes', requested: 1073741824 });
});

t.test('an input above the limit is refused before it reaches the worker', async (t) => {
  const e = await failure(pool.call('neighbour', 'echo', new Uint8Array(20), { maxInputBytes: 10 }));
  t.equal(sandboxReason(e), 'input_too_large');
});

t.test('load-time limits cannot be set per call, and limits are validated', async (t) => {
  t.equal(sandboxReason(await failure(pool.call('neighbour', 'echo', NO_INPUT, { memoryPages: 1 } as never))), 'invalid_argument');
  t.equal(sandboxReason(await failure(pool.call('neighbour', 'echo', NO_INPUT, { wallMs: 0 }))), 'invalid_argument');
  t.equal(sandboxReason(await failure(pool.call('neighbour', 'echo', NO_INPUT, { wallMs: 1.5 }))), 'invalid_argument');
  t.equal(sandboxReason(await failure(pool.call('neighbour', 'echo', NO_INPUT, { bogus: 1 } as never))), 'invalid_argument');
});
