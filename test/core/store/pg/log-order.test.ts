// Several writers (replicas) appending to the outbox and the audit chain of one PostgreSQL
// database: sequence numbers commit in the order they were taken (a reader at cursor N never
// sees N+1 before N, so it cannot skip N), and two writers never chain onto the same audit head.
// The other writers are processes of their own (a writer blocks its thread while it waits).
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPgStore, type Store } from '../../../../core/store/index.js';
import { spawnFixture, type Child } from '../../execution/fixtures/spawn.js';
import { sharedPostgres, skipWithoutPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
const WRITER = '../../store/pg/fixtures/log-writer.ts';

async function setup(t: Test): Promise<{ url: string; s: Store; go: string }> {
  const url = (await cluster()).database();
  // Migrates the database before the writers start.
  const s = openPgStore(url);
  const dir = mkdtempSync(join(tmpdir(), 'tyrum-logorder-'));
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
    rmSync(dir, { recursive: true, force: true });
  });
  return { url, s, go: join(dir, 'go') };
}

function writer(t: Test, args: string[]): Child {
  const c = spawnFixture(WRITER, args);
  t.teardown(() => void c.proc.kill('SIGKILL'));
  return c;
}

/** Until the second writer committed or waits on a lock (the first writer's). */
async function committedOrWaiting(s: Store, c: Child): Promise<'committed' | 'waiting'> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (c.lines.some((l) => l.startsWith('committed') || l.startsWith('failed'))) return 'committed';
    const n = (s as unknown as { pg: { exec(sql: string): { rows: Array<{ n: number }> } } }).pg.exec('SELECT COUNT(*)::int AS n FROM pg_locks WHERE NOT granted').rows[0]!.n;
    if (n > 0) return 'waiting';
    if (Date.now() > deadline) throw new Error(`the second writer neither committed nor waited: ${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('outbox seqs commit in the order they were taken across writers: a cursor never passes a seq that commits later', { skip }, async (t) => {
  const { url, s, go } = await setup(t);
  const first = writer(t, [url, 'outbox', 'hold', go]);
  const n1 = Number((await first.line((l) => l.startsWith('appended'), 20_000)).split(' ')[1]);
  const second = writer(t, [url, 'outbox', 'append']);
  const state = await committedOrWaiting(s, second);
  const visible = s.committed.outbox.after(0, 100).map((r) => r.seq);
  t.same(visible, [], `while seq ${n1} is uncommitted, no later seq is visible (the second writer ${state})`);
  writeFileSync(go, '');
  const c1 = await first.line((l) => l.startsWith('committed') || l.startsWith('failed'), 20_000);
  const c2 = await second.line((l) => l.startsWith('committed') || l.startsWith('failed'), 20_000);
  t.equal(c1, `committed ${n1}`);
  t.match(c2, /^committed \d+$/);
  const n2 = Number(c2.split(' ')[1]);
  t.ok(n2 > n1, 'the seq taken later commits later');
  t.same(s.committed.outbox.after(0, 100).map((r) => r.seq), [n1, n2]);
  t.equal(s.committed.outbox.after(n1, 100).length, 1, 'a reader at the first seq finds the second');
});

t.test('two writers appending to the audit chain at once chain one after the other (no fork, no seq clash)', { skip }, async (t) => {
  const { url, s, go } = await setup(t);
  const first = writer(t, [url, 'audit', 'hold', go]);
  t.equal(await first.line((l) => l.startsWith('appended'), 20_000), 'appended 1');
  const second = writer(t, [url, 'audit', 'append']);
  await committedOrWaiting(s, second);
  writeFileSync(go, '');
  t.equal(await first.line((l) => l.startsWith('committed') || l.startsWith('failed'), 20_000), 'committed 1');
  t.equal(await second.line((l) => l.startsWith('committed') || l.startsWith('failed'), 20_000), 'committed 2', 'the second writer read the head the first one committed');
  const rows = [...s.committed.audit.page(0, 10)];
  t.same(rows.map((r) => r.seq), [1, 2]);
  t.equal(rows[1]!.prev_hash, rows[0]!.hash, 'entry 2 chains onto entry 1');
});
