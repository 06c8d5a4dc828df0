// Store.commit: units run at once, commit together at the end of the turn, and are answered only
// once durable; a unit that throws is rolled back alone; readers see only what is committed.
import t from 'tap';
import { join } from 'node:path';
import { readFileSync, statSync } from 'node:fs';
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

t.test('a nested transaction that rolls back takes its afterCommit callbacks with it; the unit keeps its own', async (t) => {
  const s = openStore(join(t.testdir(), 'n.db'));
  t.teardown(() => s.close());
  const ran: string[] = [];
  await s.commit(() => {
    s.audit.insert(row(1));
    s.afterCommit(() => ran.push('outer'));
    try {
      s.tx(() => {
        s.audit.insert(row(2));
        s.afterCommit(() => ran.push('inner, rolled back'));
        throw new Error('inner refused');
      });
    } catch {
      // The unit goes on without the inner writes.
    }
    s.tx(() => s.afterCommit(() => ran.push('inner, kept')));
  });
  t.same(s.committed.audit.page(0, 10).map((r) => r.seq), [1]);
  t.same(ran, ['outer', 'inner, kept']);
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

t.test('an on-disk store syncs the log itself, off the event loop: a committed group is answered only after that sync', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  t.same(s.pragmas(), { journal_mode: 'wal', synchronous: 1, foreign_keys: 1, commit_sync: 'store' }, 'COMMIT does not sync; the store does');
  const order: string[] = [];
  const first = s.commit(() => {
    s.audit.insert(row(1));
    s.afterCommit(() => order.push('after 1'));
  }).then(() => order.push('resolved 1'));
  // The group commits at the end of this turn; this callback runs right after it, in the same
  // phase, before any thread-pool completion can be seen.
  await new Promise((r) => setImmediate(r));
  t.equal(s.committed.audit.count(), 1, 'COMMITted: other connections read it');
  t.same(order, [], 'but nobody is told, and no callback runs, before the log sync ends');
  const second = s.commit(() => s.audit.insert(row(2))).then(() => order.push('resolved 2'));
  const waited = s.durable().then(() => order.push('durable'));
  await Promise.all([first, second, waited]);
  t.same(order, ['after 1', 'resolved 1', 'resolved 2', 'durable'], 'groups settle in commit order');
});

t.test('durable() waits for a group committed but not yet synced', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  let resolved = false;
  void s.commit(() => s.audit.insert(row(1))).then(() => (resolved = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(resolved);
  await s.durable();
  t.ok(resolved, 'durable() settled after the unit it covers');
});

t.test('a failed log sync rejects what it covered and every later write (TYRUM_ERR_STORE_IO)', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  const internals = s as unknown as { walFd: { async: number; sync: number } | null };
  const real = internals.walFd;
  t.teardown(() => {
    internals.walFd = real;
    s.close();
  });
  internals.walFd = { async: 1 << 20, sync: (1 << 20) + 1 }; // not open descriptors: fdatasync fails with EBADF
  await t.rejects(s.commit(() => s.audit.insert(row(1))), { code: 'TYRUM_ERR_STORE_IO', message: /restart the gateway/ });
  await t.rejects(s.commit(() => s.audit.insert(row(2))), { code: 'TYRUM_ERR_STORE_IO' }, 'later writes are refused');
  t.throws(() => s.tx(() => s.audit.insert(row(3))), { code: 'TYRUM_ERR_STORE_IO' });
  t.equal(s.audit.count(), 1, 'nothing after the failure was written');
});

t.test('a read-only store leaves syncing to SQLite', async (t) => {
  const path = join(t.testdir(), 'g.db');
  openStore(path).close();
  const ro = openStore(path, { readonly: true });
  t.teardown(() => ro.close());
  t.equal(ro.pragmas().commit_sync, 'sqlite', 'a read-only store never syncs the log itself');
});

t.test('a callback that commits with tx does not reorder settling: every group\'s callbacks run before the next group\'s', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  t.teardown(() => s.close());
  const order: string[] = [];
  const p1 = s.commit(() => {
    s.audit.insert(row(1));
    s.afterCommit(() => {
      order.push('g1 A');
      s.tx(() => s.audit.insert(row(100)));
    });
    s.afterCommit(() => order.push('g1 B'));
  }).then(() => order.push('g1 resolved'));
  await new Promise((r) => setImmediate(r));
  const p2 = s.commit(() => {
    s.audit.insert(row(2));
    s.afterCommit(() => order.push('g2 cb'));
  }).then(() => order.push('g2 resolved'));
  await Promise.all([p1, p2]);
  t.same(order, ['g1 A', 'g1 B', 'g2 cb', 'g1 resolved', 'g2 resolved']);
  t.equal(s.committed.audit.count(), 3);
});

t.test('after a failed log sync, a group opened before it is rolled back and refused, and durable() rejects', async (t) => {
  const s = openStore(join(t.testdir(), 'g.db'));
  const internals = s as unknown as { walFd: { async: number; sync: number } | null };
  const real = internals.walFd;
  t.teardown(() => {
    internals.walFd = real;
    s.close();
  });
  internals.walFd = { async: 1 << 20, sync: (1 << 20) + 1 };
  const first = s.commit(() => s.audit.insert(row(1)));
  await new Promise((r) => setImmediate(r)); // committed; its sync is on the thread pool
  const opened = s.commit(() => s.audit.insert(row(2)), { deferred: true });
  await t.rejects(first, { code: 'TYRUM_ERR_STORE_IO' });
  await t.rejects(opened, { code: 'TYRUM_ERR_STORE_IO' }, 'the group open at the failure is refused too');
  t.same(s.committed.audit.page(0, 10).map((r) => r.seq), [1], 'and rolled back');
  await t.rejects(s.durable(), { code: 'TYRUM_ERR_STORE_IO' });
});

t.test('closing one of two stores on a file keeps the other\'s SQLite locks (no descriptor of ours closes the -shm file)', { skip: process.platform === 'linux' ? false : 'reads /proc/locks (Linux only)' }, async (t) => {
  const path = join(t.testdir(), 'g.db');
  const a = openStore(path, { checkpointer: { intervalMs: 1 } });
  const b = openStore(path);
  t.teardown(() => b.close());
  await s0(b);
  const ino = statSync(`${path}-shm`).ino;
  const locks = () => readFileSync('/proc/locks', 'utf8').split('\n').filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[4] === String(process.pid) && f[5]?.endsWith(`:${ino}`);
  });
  t.ok(locks().length > 0, 'the process holds locks on -shm while both are open');
  a.close();
  await new Promise((r) => setTimeout(r, 300)); // the checkpoint worker stops
  t.ok(locks().length > 0, 'b still holds its locks after a (and its checkpoint worker) closed');
  await s0(b);
});

/** One committed write through `s`. */
async function s0(s: ReturnType<typeof openStore>): Promise<void> {
  await s.commit(() => s.audit.insert(row(1 + s.audit.count())));
}
