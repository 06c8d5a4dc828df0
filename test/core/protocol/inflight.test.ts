import t from 'tap';
import { InflightLimiter } from '../../../core/protocol/inflight.js';

t.test('a token gets max slots; a release gives one back once; tokens do not share', async (t) => {
  const l = new InflightLimiter(2);
  const a1 = l.acquire('a');
  const a2 = l.acquire('a');
  t.ok(a1 && a2);
  t.equal(l.acquire('a'), null, 'the third is refused');
  t.ok(l.acquire('b'), 'another token has its own budget');
  a1!();
  a1!();
  const a3 = l.acquire('a');
  t.ok(a3, 'a released slot is free again');
  t.equal(l.acquire('a'), null, 'releasing twice gave back only one slot');
  a2!();
  a3!();
  t.ok(l.acquire('a') && l.acquire('a'), 'all free again');
});

t.test('max must be a positive integer', async (t) => {
  for (const bad of [0, -1, 1.5, Number.NaN]) t.throws(() => new InflightLimiter(bad), RangeError);
});
