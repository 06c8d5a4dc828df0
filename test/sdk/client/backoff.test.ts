import fc from 'fast-check';
import t from 'tap';
import { backoffDelay, DEFAULT_BACKOFF } from '../../../sdk/client/backoff.js';

t.test('without jitter the delay doubles from initialMs and stops at maxMs', async (t) => {
  const opts = { initialMs: 250, maxMs: 30_000, jitter: 'none' as const };
  const delays = Array.from({ length: 10 }, (_, i) => backoffDelay(i, opts));
  t.same(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

t.test('the defaults are 250 ms doubling to a 30 s cap with full jitter', async (t) => {
  t.same({ ...DEFAULT_BACKOFF }, { initialMs: 250, maxMs: 30_000, jitter: 'full' });
  t.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 0.999999), 250);
  t.equal(backoffDelay(50, DEFAULT_BACKOFF, () => 0.999999), 30_000);
});

t.test('with full jitter every delay is an integer in [0, cap] and the caps grow with the attempt', async (t) => {
  const opts = { initialMs: 100, maxMs: 5000, jitter: 'full' as const };
  let previousMax = -1;
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(5000, 100 * 2 ** attempt);
    const samples = Array.from({ length: 200 }, () => backoffDelay(attempt, opts));
    const outside = samples.filter((d) => !Number.isInteger(d) || d < 0 || d > cap);
    t.same(outside, [], `attempt ${attempt}: every delay within [0, ${cap}]`);
    const max = Math.max(...samples);
    t.equal(backoffDelay(attempt, opts, () => 0), 0, 'random 0 gives 0');
    t.equal(backoffDelay(attempt, opts, () => 0.9999999), cap, 'random near 1 reaches the cap');
    t.ok(max >= previousMax || cap === 5000, 'observed maximum does not shrink');
    previousMax = max;
  }
});

t.test('any attempt count, settings and random source give a delay within [0, maxMs]', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof(fc.integer({ min: -10, max: 10_000 }), fc.constant(Number.NaN), fc.constant(Number.POSITIVE_INFINITY)),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 10_000_000 }),
      fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constant(Number.NaN), fc.constant(2), fc.constant(-1)),
      fc.constantFrom('full' as const, 'none' as const),
      (attempt, initialMs, maxMs, r, jitter) => {
        const d = backoffDelay(attempt, { initialMs, maxMs, jitter }, () => r);
        const growth = initialMs === 0 ? 0 : initialMs * 2 ** Math.max(0, attempt || 0);
        return Number.isInteger(d) && d >= 0 && d <= maxMs && d <= growth;
      },
    ),
  );
  t.pass('property held');
});
