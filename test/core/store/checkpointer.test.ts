// WAL checkpoints on a worker thread (core/store/checkpointer.ts): the log is copied into the
// database by the worker once it holds `pages` frames, the writer's own checkpoint is a fallback
// ten times higher, and the log still restarts, so it does not grow without bound.
import t from 'tap';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { openStore } from '../../../core/store/index.js';

const row = (seq: number) => ({ seq, ts: 'x', type: 'test.event', actor: '{}', data: 'x'.repeat(3000), prev_hash: 'p', hash: `h${seq}` });

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

t.test('the worker checkpoints the log; the writer only past ten times its threshold', async (t) => {
  const path = join(t.testdir(), 'c.db');
  const s = openStore(path, { checkpointer: { pages: 20, intervalMs: 2 } });
  t.teardown(() => s.close());
  t.ok(await until(() => s.checkpointStats()?.ready === true, 10_000), 'the worker started');
  // The migrations' frames may already have been checkpointed.
  const start = s.checkpointStats()!;
  for (let i = 1; i <= 40; i++) await s.commit(() => s.audit.insert(row(i)));
  t.ok(await until(() => s.checkpointStats()!.checkpoints > start.checkpoints, 10_000), 'the worker ran a checkpoint');
  const st = s.checkpointStats()!;
  t.ok(st.frames - start.frames >= 20, `it copied the pending frames (${st.frames - start.frames})`);
  t.equal(st.errors, 0, st.lastError ?? 'no errors');

  // Many more pages than the fallback: the log restarts instead of growing (each row is ~1 page).
  for (let i = 41; i <= 1500; i++) await s.commit(() => s.audit.insert(row(i)));
  const wal = statSync(`${path}-wal`).size;
  t.ok(wal < 400 * 4096, `the log restarted and stays small (${wal} bytes after ~1,500 pages written)`);
  t.equal(s.committed.audit.count(), 1500);
  t.equal(s.integrityCheck(), 'ok');
});

t.test('without the option SQLite checkpoints in COMMIT as usual', async (t) => {
  const s = openStore(join(t.testdir(), 'c.db'));
  t.teardown(() => s.close());
  t.equal(s.checkpointStats(), null);
});

t.test('a store closed and reopened with a checkpointer keeps every row', async (t) => {
  const path = join(t.testdir(), 'c.db');
  const s = openStore(path, { checkpointer: { pages: 5, intervalMs: 1 } });
  for (let i = 1; i <= 100; i++) s.tx(() => s.audit.insert(row(i)));
  s.close();
  const again = openStore(path, { checkpointer: {} });
  t.teardown(() => again.close());
  t.equal(again.audit.count(), 100);
  t.equal(again.integrityCheck(), 'ok');
});
