import t from 'tap';
import { LruMap } from '../../../sdk/client/lru.js';

t.test('the least recently used entry is evicted first and get() refreshes recency', async (t) => {
  const m = new LruMap<string, number>(2);
  m.set('a', 1);
  m.set('b', 2);
  t.equal(m.get('a'), 1);
  m.set('c', 3);
  t.ok(m.has('a'));
  t.notOk(m.has('b'), 'b was the oldest after a was read');
  t.equal(m.size, 2);
});

t.test('a weight budget evicts old entries and refuses a single entry above it', async (t) => {
  const m = new LruMap<string, string>(100, { maxWeight: 10, weigh: (v) => v.length });
  t.ok(m.set('a', 'xxxx'));
  t.ok(m.set('b', 'yyyy'));
  t.ok(m.set('c', 'zzzz'));
  t.notOk(m.has('a'), 'evicted to stay within 10');
  t.ok(m.has('b') && m.has('c'));
  t.notOk(m.set('big', 'x'.repeat(11)));
  t.notOk(m.has('big'));
  t.ok(m.has('b') && m.has('c'), 'a refused entry evicts nothing');
  m.set('b', 'y');
  t.ok(m.set('d', 'wwwww'), 'replacing an entry releases its old weight');
  t.ok(m.has('b') && m.has('c') && m.has('d'));
});

t.test('a non-positive limit is refused', async (t) => {
  t.throws(() => new LruMap(0));
  t.throws(() => new LruMap(1.5));
});
