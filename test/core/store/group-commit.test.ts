// Store.commit: units run at once, commit together at the end of the turn, and are answered only
// once durable; a unit that throws is rolled back alone; readers see only what is committed.
import t from 'tap';
import { join } from 'node:path';
import { openStore } from '../../../core/store/index.js';

const row = (seq: number) => ({ seq, ts: 'x', type: 'test.event', actor: '{}', data: '{}', prev_hash: 'p', hash: `h${seq}` });

t.test('units queued in one turn share one commit, and are answered after it', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  const before = s.commitStats();
  const order: string[] = [];
  const units = [1, 2, 3].map((seq) => s.commit(() => s.audit.insert(row(seq))).then(() => order.push(`resolved ${seq}`)));
  t.equal(s.audit.count(), 3, 'the writer sees its units at once');
  t.equal(s.committed.audit.count(), 0, 'readers see nothing of a group still open');
  await Promise.all(units);
  t.equal(s.committed.audit.count(), 3, 'committed together');
  const after = s.commitStats();
  t.equal(after.commits - before.commits, 1, 'one durable commit for three units');
  t.equal(after.units - before.units, 3);
  t.same(order, ['resolved 1', 'resolved 2', 'resolved 3']);
});

t.test('a unit that throws is rolled back alone; its afterCommit callbacks never run', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  const ran: string[] = [];
  const good = s.commit(() => {
    s.audit.insert(row(1));
    s.afterCommit(() => ran.push('good'));
  });
  const bad = s.commit(() => {
    s.audit.insert(row(2));
    s.afterCommit(() => ran.push('bad'));
    throw new Error('refused');
  });
  const also = s.commit(() => s.audit.insert(row(3)));
  await t.rejects(bad, /refused/);
  await good;
  await also;
  t.same(s.committed.audit.page(0, 10).map((r) => r.seq), [1, 3]);
  t.same(ran, ['good']);
  t.throws(() => s.afterCommit(() => undefined), { code: 'TYRUM_ERR_INTERNAL' }, 'outside a unit there is nothing to wait for');
});

t.test('tx commits a group in progress with it, at once, and is durable on return', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  let resolved = false;
  const pending = s.commit(() => s.audit.insert(row(1))).then(() => (resolved = true));
  s.tx(() => s.audit.insert(row(2)));
  t.equal(s.committed.audit.count(), 2, 'both committed when tx returns');
  await pending;
  t.ok(resolved);
  t.throws(() => s.tx(() => s.audit.insert(row(2))), /UNIQUE/, 'a failing tx throws its own error');
  t.equal(s.committed.audit.count(), 2);
});

t.test('durable() waits for the group in progress; a store closed with a group open commits it', async (t) => {
  const path = join(t.testdir(), 'g.db');
  const s = openStore(path);
  const p = s.commit(() => s.audit.insert(row(1)));
  await s.durable();
  t.equal(s.committed.audit.count(), 1);
  await p;
  void s.commit(() => s.audit.insert(row(2)));
  s.close();
  const again = openStore(path);
  t.equal(again.audit.count(), 2, 'close committed the open group');
  again.close();
});

t.test('two stores of one process do not deadlock on each other\'s open group', async (t) => {
  const path = join(t.testdir(), 'g.db');
  const a = openStore(path, { busyTimeoutMs: 200 });
  const b = openStore(path, { busyTimeoutMs: 200 });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const pa = a.commit(() => a.audit.insert(row(1)));
  const pb = b.commit(() => b.audit.insert(row(2)));
  await Promise.all([pa, pb]);
  t.equal(a.committed.audit.count(), 2);
});

t.test('deferred units wait for a unit that needs an answer, or DEFERRED_COMMIT_MS, and commit with it', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  const before = s.commitStats().commits;
  const d1 = s.commit(() => s.audit.insert(row(1)), { deferred: true });
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.equal(s.commitStats().commits, before, 'a turn later: still open, nothing committed');
  t.equal(s.committed.audit.count(), 0);
  const d2 = s.commit(() => s.audit.insert(row(2)), { deferred: true });
  const normal = s.commit(() => s.audit.insert(row(3)));
  await Promise.all([d1, d2, normal]);
  t.equal(s.commitStats().commits, before + 1, 'the deferred writes committed with the next ordinary unit, in one commit');
  t.equal(s.committed.audit.count(), 3);
  const alone = s.commit(() => s.audit.insert(row(4)), { deferred: true });
  await alone;
  t.equal(s.commitStats().commits, before + 2, 'alone, a deferred unit commits after its deadline');
  t.equal(s.committed.audit.count(), 4);
});
