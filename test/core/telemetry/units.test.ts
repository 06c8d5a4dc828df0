import t from 'tap';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { budgetKind, parseTraceparent, withIncomingTrace, incomingTrace, withLogFields, logFields, GatewayMetrics, callObserver, CALL_OUTCOMES } from '../../../core/telemetry/index.js';

t.test('a failure maps to the budget it ran out of, from its code and details.budget', async (t) => {
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_TIMEOUT', undefined), 'time');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_OUTPUT_TOO_LARGE', undefined), 'output');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_INPUT_TOO_LARGE', undefined), 'input');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'host_calls' }), 'host_calls');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'alloc_bytes' }), 'kernel_memory');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'kernel_blocks' }), 'kernel_memory');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'egress_bytes' }), 'egress');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'kv key' }), 'kv');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_BUDGET', { budget: 'something new' }), 'other', 'an unknown budget is "other", never a new label value');
  t.equal(budgetKind('TYRUM_ERR_SANDBOX_TRAP', undefined), null, 'a trap is not a budget');
  t.equal(budgetKind('TYRUM_ERR_POLICY_DENIED', undefined), null);
});

t.test('traceparent: only a well-formed version-00 value with non-zero ids is a parent', async (t) => {
  t.same(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true });
  t.same(parseTraceparent('00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00'), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: false }, 'case-insensitive; not sampled');
  for (const bad of [undefined, '', 'garbage', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01${'x'.repeat(100)}`]) {
    t.equal(parseTraceparent(bad), null, JSON.stringify(bad)?.slice(0, 60) ?? 'undefined');
  }
});

t.test('the incoming traceparent and the log fields follow the async work of their scope only', async (t) => {
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  t.equal(incomingTrace(), null);
  await withIncomingTrace(tp, async () => {
    await new Promise((r) => setTimeout(r, 1));
    t.equal(incomingTrace(), tp, 'kept across awaits');
  });
  t.equal(incomingTrace(), null, 'gone after the scope');
  withIncomingTrace('not-a-traceparent', () => t.equal(incomingTrace(), null, 'a malformed value is not kept'));
  t.same(logFields(), {});
  await withLogFields({ run_id: 'run_a', step: 0 }, async () => {
    await Promise.resolve();
    t.same(logFields(), { run_id: 'run_a', step: 0 });
    withLogFields({ run_id: 'run_b' }, () => t.same(logFields(), { run_id: 'run_b' }, 'a nested run replaces the fields'));
    // pino merges each line's own fields into what its mixin returns: that must not stick.
    Object.assign(logFields(), { source: 'plugin', plugin_id: 'p' });
    t.same(logFields(), { run_id: 'run_a', step: 0 }, 'a line\'s fields do not leak into the next line');
  });
  Object.assign(logFields(), { leaked: true });
  t.same(logFields(), {}, 'nor outside a scope');
});

t.test('a call record observes each stage once per call, sums repeated commits, and counts its outcome once', async (t) => {
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  const rec = callObserver(m, null).begin({ run_id: 'run_x', step: 2, tool_id: 'p.t', kind: 'tool' }, null);
  t.same(rec.fields, { run_id: 'run_x', step: 2 }, 'no trace ids without a tracer');
  rec.attempt(1);
  t.equal(rec.fields.attempt, 1, 'the attempt joins the log fields');
  rec.stage('policy', 0, 1);
  rec.stage('commit', 10, 12);
  rec.stage('commit', 20, 23);
  rec.end('succeeded');
  rec.end('error');
  const data = await m.registry.getSingleMetric('tyrum_call_stage_duration_seconds')!.get();
  const v = (name: string, stage: string) => data.values.find((x) => (x as { metricName?: string }).metricName === name && x.labels.stage === stage && x.labels.outcome === 'succeeded')?.value;
  t.equal(v('tyrum_call_stage_duration_seconds_count', 'commit'), 1, 'two commits, one observation');
  t.ok(Math.abs(v('tyrum_call_stage_duration_seconds_sum', 'commit')! - 0.005) < 1e-9, 'of their summed time (5 ms)');
  t.equal(v('tyrum_call_stage_duration_seconds_count', 'sandbox') ?? 0, 0, 'a stage not reached is not observed');
  t.equal(v('tyrum_call_stage_duration_seconds_count', 'total'), 1, 'the total is always observed');
  const calls = await m.registry.getSingleMetric('tyrum_tool_calls_total')!.get();
  t.same(calls.values.filter((x) => x.value > 0).map((x) => [x.labels.outcome, x.value]), [['succeeded', 1]], 'the second end is ignored');
});

t.test('a fresh registry exports every tool-call outcome at 0, so a grep for the series finds it before the first call', async (t) => {
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  const lines = (await m.scrape()).split('\n').filter((l) => l.startsWith('tyrum_tool_calls_total'));
  t.same(lines.sort(), CALL_OUTCOMES.map((o) => `tyrum_tool_calls_total{outcome="${o}"} 0`).sort());
});

t.test('the event-loop delay leaves out the 10 ms sampling interval: an idle loop reads about 0, a blocked one the block', async (t) => {
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  const delay = async (q: string) => {
    const line = (await m.scrape()).split('\n').find((l) => l.startsWith(`tyrum_event_loop_delay_seconds{quantile="${q}"}`))!;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  await m.scrape(); // starts a new window
  await new Promise((r) => setTimeout(r, 200));
  const idle = await delay('0.5');
  t.ok(idle >= 0 && idle < 0.005, `idle p50 ${idle} s (the raw histogram reads ~0.0101)`);
  await new Promise((r) => setTimeout(r, 30));
  const until = performance.now() + 60;
  while (performance.now() < until); // block the loop for 60 ms
  await new Promise((r) => setTimeout(r, 30));
  const max = await delay('1');
  t.ok(max > 0.035 && max < 0.2, `after a 60 ms block the maximum reads ${max} s`);
});

t.test('opening and closing gateway metrics again and again in one process leaves no GC observer or event-loop histogram behind', async (t) => {
  // Count the live ones by watching the prototypes every instance shares.
  const histogramProto = Object.getPrototypeOf(monitorEventLoopDelay()) as { enable(): boolean; disable(): boolean };
  const observerProto = PerformanceObserver.prototype as unknown as { observe(o: { entryTypes?: string[] }): void; disconnect(): void };
  const liveHistograms = new Set<object>();
  const gcObservers = new Set<object>();
  const orig = { enable: histogramProto.enable, disable: histogramProto.disable, observe: observerProto.observe, disconnect: observerProto.disconnect };
  histogramProto.enable = function (this: object) {
    liveHistograms.add(this);
    return orig.enable.call(this);
  };
  histogramProto.disable = function (this: object) {
    liveHistograms.delete(this);
    return orig.disable.call(this);
  };
  observerProto.observe = function (this: object, o: { entryTypes?: string[] }) {
    if (o.entryTypes?.includes('gc')) gcObservers.add(this);
    return orig.observe.call(this, o);
  };
  observerProto.disconnect = function (this: object) {
    gcObservers.delete(this);
    return orig.disconnect.call(this);
  };
  t.teardown(() => Object.assign(histogramProto, { enable: orig.enable, disable: orig.disable }) && Object.assign(observerProto, { observe: orig.observe, disconnect: orig.disconnect }));
  const cycle = async () => {
    const m = new GatewayMetrics();
    await m.scrape();
    m.close();
  };
  await cycle(); // the process's own collectors may start here, once
  const before = { histograms: liveHistograms.size, gc: gcObservers.size };
  for (let i = 0; i < 5; i++) await cycle();
  t.same({ histograms: liveHistograms.size, gc: gcObservers.size }, before, 'five more gateways opened and closed: nothing more is running');
  const m = new GatewayMetrics();
  t.teardown(() => m.close());
  t.match(await m.scrape(), /^nodejs_gc_duration_seconds_bucket|^process_cpu_seconds_total \d/m, "prom-client's process metrics are still exported");
});
