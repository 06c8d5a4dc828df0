import t from 'tap';
import { SandboxPool, sandboxReason, type SandboxEvent } from '../../sandbox/index.js';
import { loadFixture, NO_INPUT, str, text, u64 } from './helpers.js';

/** Largest gap between ticks of a 10 ms interval while `p` runs: how long the event loop was blocked. */
async function maxLoopGap<T>(p: Promise<T>): Promise<[T, number]> {
  let last = performance.now();
  let worst = 0;
  const iv = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 10);
  try {
    return [await p, worst];
  } finally {
    clearInterval(iv);
  }
}

t.test('an infinite loop in a call is stopped at its budget while other plugins keep answering (D1)', async (t) => {
  const events: SandboxEvent[] = [];
  const pool = new SandboxPool({ workers: 2, onEvent: (e) => events.push(e) });
  t.teardown(() => pool.close());
  const spinner = await loadFixture(pool, 'spinner', 'hostile', ['spin', 'ok']);
  const other = await loadFixture(pool, 'other', 'pdk', ['echo']);
  t.not(spinner.worker, other.worker, 'the two plugins run on different workers');

  const started = performance.now();
  const spin = pool.call('spinner', 'spin', NO_INPUT, { wallMs: 2000 }).then(
    () => null,
    (e: unknown) => ({ e, at: performance.now() - started }),
  );
  const answers = (async () => {
    let n = 0;
    while (performance.now() - started < 450) {
      const r = await pool.call('other', 'echo', text('ping'));
      if (str(r.output) === 'ping') n += 1;
    }
    return n;
  })();
  const [[failed, answered], gap] = await maxLoopGap(Promise.all([spin, answers]));

  t.ok(failed, 'the spinning call was rejected');
  t.equal(sandboxReason(failed?.e), 'timeout');
  // Not before the budget; the upper bound is a hang guard (a loaded machine can delay the stop).
  t.ok(failed!.at >= 1990 && failed!.at < 10_000, `stopped after ${failed!.at.toFixed(0)} ms (budget 2000)`);
  t.match((failed!.e as Error).message, /exceeded its 2000 ms budget/);
  t.ok(answered >= 1, `the other plugin answered ${answered} calls meanwhile`);
  // A spin on the event loop would block it for the whole 2 s budget; a loaded machine can stall it for a few hundred ms.
  t.ok(gap < 1000, `the event loop was never blocked (worst gap ${gap.toFixed(0)} ms)`);
  t.match(
    events.filter((e) => e.type === 'worker_restart'),
    [{ type: 'worker_restart', worker: spinner.worker, reason: 'timeout', plugin: 'spinner' }],
  );

  const next = await pool.call('spinner', 'ok', NO_INPUT);
  t.equal(u64(next.output), 42, 'the next call to the looping plugin works on a fresh worker');
  t.equal(str((await pool.call('other', 'echo', text('still here'))).output), 'still here');
  t.equal(pool.stats().workers[spinner.worker]?.restarts, 1);
});

t.test('calls queued behind a runaway call on the same worker run after the restart', async (t) => {
  const pool = new SandboxPool({ workers: 1 });
  t.teardown(() => pool.close());
  await loadFixture(pool, 'spinner', 'hostile', ['spin']);
  await loadFixture(pool, 'neighbour', 'pdk', ['echo']);
  const spin = pool.call('spinner', 'spin', NO_INPUT, { wallMs: 300 }).catch((e: unknown) => e);
  const queued = pool.call('neighbour', 'echo', text('after'));
  t.equal(sandboxReason(await spin), 'timeout');
  t.equal(str((await queued).output), 'after', 'the neighbour was reloaded on the new worker and answered');
});

t.test('a call cannot widen the plugin wall-clock budget', async (t) => {
  const pool = new SandboxPool({ workers: 1 });
  t.teardown(() => pool.close());
  await loadFixture(pool, 'spinner', 'hostile', ['spin'], { limits: { wallMs: 300 } });
  const t0 = performance.now();
  const e = await pool.call('spinner', 'spin', NO_INPUT, { wallMs: 60_000 }).catch((e: unknown) => e);
  t.equal(sandboxReason(e), 'timeout');
  t.ok(performance.now() - t0 < 10_000, 'the plugin budget (300 ms) applied, not the 60 s asked for (a hang guard)');
  t.match(e, { details: { limit_ms: 300 } });
});

t.test('a start function that never returns is stopped at loadMs and the pool keeps working (D1)', async (t) => {
  const events: SandboxEvent[] = [];
  const pool = new SandboxPool({ workers: 1, onEvent: (e) => events.push(e) });
  t.teardown(() => pool.close());
  await loadFixture(pool, 'good', 'pdk', ['echo']);

  const t0 = performance.now();
  const [e, gap] = await maxLoopGap(loadFixture(pool, 'looper', 'start-loop', ['ok'], { limits: { loadMs: 2000 } }).catch((e: unknown) => e));
  const elapsed = performance.now() - t0;
  t.equal(sandboxReason(e), 'timeout');
  t.match((e as Error).message, /looper" loading exceeded its 2000 ms budget/);
  t.ok(elapsed < 10_000, `load stopped after ${elapsed.toFixed(0)} ms (a hang guard)`);
  // A start function run on the event loop would block it for the whole 2 s budget.
  t.ok(gap < 1000, `the event loop was never blocked (worst gap ${gap.toFixed(0)} ms)`);

  t.equal(str((await pool.call('good', 'echo', text('ok'))).output), 'ok', 'the plugin sharing the worker was reloaded and answers');
  t.same(pool.stats().workers[0]?.plugins, ['good'], 'the looping module is not kept');
  t.equal(sandboxReason(await pool.call('looper', 'ok', NO_INPUT).catch((e: unknown) => e)), 'not_loaded');
  t.match(
    events.map((e) => e.type),
    ['worker_ready', 'worker_restart', 'worker_ready'],
  );
  t.match(events[1], { type: 'worker_restart', reason: 'timeout', plugin: 'looper' });
  const fresh = await loadFixture(pool, 'looper', 'hostile', ['ok']);
  t.equal(u64((await pool.call(fresh.key, 'ok', NO_INPUT)).output), 42, 'the key can be loaded again with a good module');
});
