// PostgreSQL's commit counters (tyrum_writers, migration 18) grow by one row per connection ever
// opened. The retention sweep folds the rows not bumped for a day into one `retired` row, in one
// statement of one transaction, keeping their sum: every store's dataVersion is unchanged by the
// fold, and still changes when anyone commits afterwards.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openHomeCore, type HomeCore } from '../../../core/home.js';
import { createSweeper } from '../../../core/retention/index.js';
import { openPgStore, type Store } from '../../../core/store/index.js';
import { PgBridge } from '../../../core/store/pg/bridge.js';
import { sharedPostgres, skipWithoutPostgres } from '../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);
const DAY = 86_400_000;

async function setup(t: Test): Promise<{ h: HomeCore; url: string; raw: PgBridge; rows: () => Map<string, { commits: number; last_at: number }> }> {
  const url = (await cluster()).database();
  const dir = t.testdir();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ store: { kind: 'postgres', url } }));
  const h = openHomeCore(dir);
  const raw = new PgBridge(url);
  t.teardown(async () => {
    h.close();
    await h.store.whenClosed();
    await raw.close();
  });
  const rows = () =>
    new Map(
      raw.query('SELECT writer, commits, last_at FROM tyrum_writers').rows.map((r) => [String(r.writer), { commits: Number(r.commits), last_at: Number(r.last_at) }] as const),
    );
  return { h, url, raw, rows };
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));
const sumOf = (m: Map<string, { commits: number }>) => [...m.values()].reduce((a, r) => a + r.commits, 0);

function openStore(t: Test, url: string): Store {
  const s = openPgStore(url);
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
  });
  return s;
}

t.test('the sweep folds writers idle for a day into one row; the sum and dataVersion are unchanged', { skip }, async (t) => {
  const { h, raw, rows, url } = await setup(t);
  const now = Date.now();
  // Connections that are gone: three idle for two days, one for a day and a minute; one written an hour ago.
  const stale = { 'cli-a': 3, 'cli-b': 5, 'replica-old': 11, 'cli-c': 2 } as Record<string, number>;
  raw.query(
    `INSERT INTO tyrum_writers (writer, commits, last_at) VALUES ('cli-a', 3, $1), ('cli-b', 5, $1), ('replica-old', 11, $1), ('cli-c', 2, $2), ('cli-recent', 7, $3)`,
    [now - 2 * DAY, now - DAY - 60_000, now - 3_600_000],
  );
  const other = openStore(t, url);
  const before = rows();
  // dataVersion is read once per event-loop turn on PostgreSQL: a new turn sees the rows above.
  await nextTurn();
  const homeView = h.store.dataVersion();
  const otherView = other.dataVersion();
  t.equal(homeView, sumOf(before) - (before.get((h.store as unknown as { pg: { writerId: string } }).pg.writerId)?.commits ?? 0));

  const sweeper = createSweeper({ store: h.store, audit: h.audit, retention: h.config.retention, now: () => now });
  await sweeper.sweep();
  const after = rows();
  for (const w of Object.keys(stale)) t.notOk(after.has(w), `${w} folded`);
  t.equal(after.get('retired')?.commits, 21, 'the retired row holds the folded rows\' sum');
  t.equal(after.get('cli-recent')?.commits, 7, 'a writer bumped within the day keeps its row');
  t.equal(h.store.dataVersion(), homeView, "the sweeping store's dataVersion is unchanged by the fold");
  const ownCommits = (m: Map<string, { commits: number }>) => m.get((h.store as unknown as { pg: { writerId: string } }).pg.writerId)?.commits ?? 0;
  t.ok(ownCommits(after) > ownCommits(before), 'the sweep committed through the home store');
  t.equal(other.dataVersion(), otherView + (ownCommits(after) - ownCommits(before)), "another store sees the sweep's own commits and nothing else");
  t.equal(sumOf(after), sumOf(before) + (ownCommits(after) - ownCommits(before)), 'the total moved only by the sweep\'s own commits');

  // A second sweep folds more into the same row, adding to it.
  raw.query(`INSERT INTO tyrum_writers (writer, commits, last_at) VALUES ('cli-d', 4, $1)`, [now - 3 * DAY]);
  await nextTurn();
  const v = h.store.dataVersion();
  await sweeper.sweep();
  t.equal(rows().get('retired')?.commits, 25);
  t.notOk(rows().has('cli-d'));
  t.equal(h.store.dataVersion(), v);
  t.ok(rows().has('cli-recent'));

  // A dry run folds nothing.
  raw.query(`INSERT INTO tyrum_writers (writer, commits, last_at) VALUES ('cli-e', 1, $1)`, [now - 3 * DAY]);
  await sweeper.sweep({ dryRun: true });
  t.ok(rows().has('cli-e'), 'a dry run changes nothing');
});

t.test('a writer still alive whose row was folded starts a new row: its next commit is noticed by others', { skip }, async (t) => {
  const { h, raw, rows, url } = await setup(t);
  const idle = openStore(t, url);
  await idle.commit(() => undefined);
  const idleId = (idle as unknown as { pg: { writerId: string } }).pg.writerId;
  t.equal(rows().get(idleId)?.commits, 1);
  // Make it look idle for two days (a gateway that wrote nothing over a weekend).
  raw.query('UPDATE tyrum_writers SET last_at = $1 WHERE writer = $2', [Date.now() - 2 * DAY, idleId]);
  const sweeper = createSweeper({ store: h.store, audit: h.audit, retention: h.config.retention });
  await sweeper.sweep();
  t.notOk(rows().has(idleId), 'folded');
  t.equal(rows().get('retired')?.commits, 1);
  const v = h.store.dataVersion();
  await idle.commit(() => undefined);
  t.equal(rows().get(idleId)?.commits, 1, 'a new row for the same writer');
  t.equal(h.store.dataVersion(), v + 1, "the home store notices the idle writer's next commit");
});

t.test('on SQLite the sweep has no counters to fold and runs as before', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ store: { kind: 'sqlite' } }));
  const h = openHomeCore(dir);
  t.teardown(() => h.close());
  t.equal(h.store.retention.foldIdleWriters(Date.now(), Date.now()), 0);
  const r = await createSweeper({ store: h.store, audit: h.audit, retention: h.config.retention }).sweep();
  t.equal(r.rows, 0);
});
