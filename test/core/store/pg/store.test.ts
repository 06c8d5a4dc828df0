// The Store's group commit on PostgreSQL (openPgStore): the same unit semantics as on SQLite
// (test/core/store/group-commit.test.ts), with COMMIT acknowledged by the server before any unit
// resolves, and a lost connection failing the whole group.
import t, { type Test } from 'tap';
import { openPgStore, type AuditRow, type Store } from '../../../../core/store/index.js';
import { MIGRATIONS } from '../../../../core/store/migrations.js';
import { PgBridge } from '../../../../core/store/pg/bridge.js';
import type { PgDb } from '../../../../core/store/pg/db.js';
import { prepared } from '../../../../core/store/statements.js';
import { sharedPostgres, skipWithoutPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);

const row = (seq: number): AuditRow => ({ seq, ts: `t${seq}`, type: 'test.event', actor: '{}', data: '{}', prev_hash: `p${seq}`, hash: `h${seq}` });

async function open(t: Test): Promise<{ s: Store; other: PgBridge; seqs: () => number[]; pg: PgDb }> {
  const url = (await cluster()).database();
  const s = openPgStore(url);
  const other = new PgBridge(url);
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
    await other.close();
  });
  // What another connection sees: committed rows only.
  const seqs = () => other.query('SELECT seq FROM audit_entries ORDER BY seq').rows.map((r) => r.seq as number);
  return { s, other, seqs, pg: (s as unknown as { pg: PgDb }).pg };
}

t.test('units of one turn share one COMMIT and resolve only once the server acknowledged it', { skip }, async (t) => {
  const { s, seqs } = await open(t);
  t.equal(s.dialect, 'postgres');
  t.equal(s.schemaVersion(), MIGRATIONS[MIGRATIONS.length - 1]!.version);
  const ps = [1, 2, 3].map((i) => s.commit(() => s.audit.insert(row(i))));
  t.same(seqs(), [], 'nothing is visible to another connection before the group commits');
  await Promise.all(ps);
  t.same(seqs(), [1, 2, 3]);
  t.same(s.commitStats(), { commits: 1, units: 3, syncs: 0 }, 'no fdatasync by the store: the server makes COMMIT durable');
});

t.test('committed reads go through a second connection: never a row of a group still open', { skip }, async (t) => {
  const { s } = await open(t);
  const p = s.commit(() => s.audit.insert(row(1)));
  t.equal(s.committed.audit.count(), 0, 'the group is open');
  t.equal(s.audit.count(), 1, "the writer's own view has it");
  await p;
  t.equal(s.committed.audit.count(), 1);
});

t.test('a unit that throws, or whose statement fails, is rolled back alone', { skip }, async (t) => {
  const { s, seqs } = await open(t);
  const a = s.commit(() => s.audit.insert(row(1)));
  const b = s.commit(() => {
    s.audit.insert(row(2));
    throw new Error('no');
  });
  const c = s.commit(() => {
    s.audit.insert(row(3));
    s.audit.insert(row(1)); // UNIQUE: PostgreSQL aborts the transaction; the unit's savepoint recovers it
  });
  const d = s.commit(() => s.audit.insert(row(4)));
  await t.rejects(b, /no/);
  await t.rejects(c, /UNIQUE/);
  await Promise.all([a, d]);
  t.same(seqs(), [1, 4]);
});

t.test('afterCommit callbacks run in commit order, before any unit of their group resolves; a nested tx rolls back alone', { skip }, async (t) => {
  const { s, seqs } = await open(t);
  const order: string[] = [];
  const p1 = s.commit(() => {
    s.audit.insert(row(1));
    s.afterCommit(() => order.push('g1 cb'));
    t.throws(() =>
      s.tx(() => {
        s.audit.insert(row(2));
        s.afterCommit(() => order.push('dropped'));
        throw new Error('inner');
      }),
    );
    s.tx(() => s.audit.insert(row(3)));
  }).then(() => order.push('g1 resolved'));
  await new Promise((r) => setImmediate(r));
  const p2 = s.commit(() => {
    s.audit.insert(row(4));
    s.afterCommit(() => order.push('g2 cb'));
  }).then(() => order.push('g2 resolved'));
  await Promise.all([p1, p2]);
  t.same(order, ['g1 cb', 'g1 resolved', 'g2 cb', 'g2 resolved'], 'each group settles once its COMMIT is answered, callbacks first, in commit order');
  t.same(seqs(), [1, 3, 4], "the nested tx's writes went with it");
});

t.test('tx returns once committed: another connection reads the row at once', { skip }, async (t) => {
  const { s, seqs } = await open(t);
  const pending = s.commit(() => s.audit.insert(row(1)));
  s.tx(() => s.audit.insert(row(2)));
  t.same(seqs(), [1, 2], 'the group in progress committed with it');
  await pending;
});

t.test('a connection lost during a group fails every unit of it, nothing of it persists, and the next group commits', { skip }, async (t) => {
  const { s, other, seqs, pg } = await open(t);
  await s.commit(() => s.audit.insert(row(1)));
  const pid = pg.bridge.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number;
  const a = s.commit(() => s.audit.insert(row(2)));
  const aFailed = t.rejects(a, { code: 'TYRUM_ERR_STORE_UNAVAILABLE' }, 'the unit committed before the loss fails: its writes are gone');
  // Still in the same turn (the group is open): end the session and wait until it is gone.
  other.query('SELECT pg_terminate_backend($1)', [pid]);
  while (other.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]).rows.length > 0);
  const b = s.commit(() => s.audit.insert(row(3)));
  await t.rejects(b, { code: 'TYRUM_ERR_STORE_UNAVAILABLE' }, 'a unit after the loss fails: it does not run outside the group');
  await aFailed;
  t.same(seqs(), [1]);
  await s.commit(() => s.audit.insert(row(4)));
  t.same(seqs(), [1, 4]);
});

t.test('connections the server ended while idle are reopened: the next group and committed reads just work', { skip }, async (t) => {
  const { s, other, pg } = await open(t);
  await s.commit(() => s.audit.insert(row(1)));
  t.equal(s.committed.audit.count(), 1);
  const reader = (s as unknown as { pgReader: PgDb }).pgReader;
  const pids = [pg, reader].map((d) => d.bridge.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number);
  other.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  while (other.query('SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids]).rows.length > 0);
  await s.commit(() => s.audit.insert(row(2)));
  t.equal(s.committed.audit.count(), 2);
});

t.test('a COMMIT the server refuses rejects every unit of its group, after the groups before it settled; the next group commits', { skip }, async (t) => {
  const { s, seqs, pg } = await open(t);
  pg.exec('CREATE TABLE dfk (id int PRIMARY KEY, ref int REFERENCES dfk (id) DEFERRABLE INITIALLY DEFERRED)');
  const order: string[] = [];
  const g1 = s.commit(() => s.audit.insert(row(1))).then(() => order.push('g1'));
  await new Promise((r) => setImmediate(r));
  // Checked only at COMMIT: a dangling reference.
  const a = s.commit(() => prepared(pg, 'INSERT INTO dfk (id, ref) VALUES (?, ?)').run(1, 99));
  const b = s.commit(() => s.audit.insert(row(2)));
  const failed = Promise.allSettled([a, b]).then((r) => {
    order.push('g2');
    return r;
  });
  const results = await failed;
  await g1;
  t.match(results, [{ status: 'rejected', reason: { message: /FOREIGN KEY/ } }, { status: 'rejected', reason: { message: /FOREIGN KEY/ } }]);
  t.same(order, ['g1', 'g2']);
  await s.commit(() => s.audit.insert(row(3)));
  t.same(seqs(), [1, 3]);
});

t.test('a transaction that failed outside any unit is not acknowledged: COMMIT answered "ROLLBACK" rejects every unit of the group', { skip }, async (t) => {
  const { s, seqs, pg } = await open(t);
  const a = s.commit(() => s.audit.insert(row(1)));
  // A statement of the group's transaction that fails outside a unit's savepoint aborts the
  // whole transaction; PostgreSQL then answers COMMIT with "ROLLBACK" and no error.
  t.throws(() => pg.exec('SELECT 1 / 0'), /division by zero/);
  const b = s.commit(() => s.audit.insert(row(2)));
  const results = await Promise.allSettled([a, b]);
  t.match(results[0], { status: 'rejected', reason: { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: /rolled the transaction back at COMMIT/ } }, 'the unit that ran before is not reported committed');
  t.equal(results[1].status, 'rejected');
  t.same(seqs(), [], 'nothing of the group was kept');
  await s.commit(() => s.audit.insert(row(3)));
  t.same(seqs(), [3], 'the next group commits');
});

t.test('units cost one round trip each beyond their statements: savepoints are set with BEGIN and released with the next unit or COMMIT', { skip }, async (t) => {
  const { s, seqs, pg } = await open(t);
  const sent: string[] = [];
  const query = pg.bridge.query.bind(pg.bridge);
  pg.bridge.query = (text, values, prepare, strict) => {
    sent.push(text.replace(/\s+/g, ' ').slice(0, 40));
    return query(text, values, prepare, strict);
  };
  const ps = [1, 2, 3].map((i) => s.commit(() => s.audit.insert(row(i))));
  const bad = s.commit(() => {
    s.audit.insert(row(4));
    throw new Error('no');
  });
  const last = s.commit(() => s.audit.insert(row(5)));
  await t.rejects(bad, /no/);
  await Promise.all([...ps, last]);
  t.same(seqs(), [1, 2, 3, 5]);
  const kinds = sent.map((q) => (q.startsWith('BEGIN') ? 'BEGIN' : q.startsWith('INSERT INTO audit_entries') ? 'insert' : q));
  t.same(kinds, [
    'BEGIN',
    'insert',
    'RELEASE unit; SAVEPOINT unit',
    'insert',
    'RELEASE unit; SAVEPOINT unit',
    'insert',
    'RELEASE unit; SAVEPOINT unit',
    'insert',
    'ROLLBACK TO unit; RELEASE unit',
    'SAVEPOINT unit',
    'insert',
  ], 'no round trip of its own for a unit that succeeds; COMMIT is posted without waiting');
});

t.test("SQLite-only operations are refused on PostgreSQL, with a coded error", { skip }, async (t) => {
  const { s } = await open(t);
  t.throws(() => s.pragmas(), { code: 'TYRUM_ERR_INTERNAL', message: /SQLite-only/ });
  t.throws(() => s.integrityCheck(), { code: 'TYRUM_ERR_INTERNAL', message: /SQLite-only/ });
});

/** Two stores on one new database, closed at the end of `t`. */
async function twoStores(t: Test): Promise<[Store, Store]> {
  const url = (await cluster()).database();
  const a = openPgStore(url);
  const b = openPgStore(url);
  t.teardown(async () => {
    a.close();
    b.close();
    await Promise.all([a.whenClosed(), b.whenClosed()]);
  });
  return [a, b];
}

t.test('dataVersion changes when another store commits, not when this one does (tyrum_writers)', { skip }, async (t) => {
  const [a, b] = await twoStores(t);
  const v0 = a.dataVersion();
  await a.commit(() => a.audit.insert(row(1)));
  a.tx(() => a.audit.insert(row(2)));
  t.equal(a.dataVersion(), v0, "this store's own commits do not change it");
  const open = b.dataVersion();
  // A transaction of b still open: not visible to a yet.
  const pending = b.commit(() => b.devices.upsert({ device_id: 'dev_x', pubkey: 'p', role: 'client', label: null, platform: null, version: null }, 1));
  t.equal(a.dataVersion(), v0, 'an uncommitted transaction of another store does not change it');
  await pending;
  const v1 = a.dataVersion();
  t.not(v1, v0, "another store's commit changes it");
  t.equal(a.devices.get('dev_x')?.role, 'client', 'and what it committed is visible');
  t.equal(b.dataVersion(), open, "nor does its own commit change b's");
  t.equal(a.dataVersion(), v1, 'nothing committed since: unchanged');
});

t.test('dataVersion is read once per event-loop turn: a commit made meanwhile is seen from the next turn on', { skip }, async (t) => {
  const [a, b] = await twoStores(t);
  const v0 = a.dataVersion();
  // b commits synchronously, within this same turn of a.
  b.tx(() => b.devices.upsert({ device_id: 'dev_turn', pubkey: 'p', role: 'client', label: null, platform: null, version: null }, 1));
  t.equal(a.dataVersion(), v0, 'the same turn: the value read at its start');
  await new Promise((r) => setImmediate(r));
  t.not(a.dataVersion(), v0, 'the next turn reads again and sees the commit');
});

t.test('appends in one group chain onto the entry appended last under the log lock, and a rolled-back unit is forgotten', { skip }, async (t) => {
  const url = (await cluster()).database();
  const s = openPgStore(url);
  t.teardown(async () => {
    s.close();
    await s.whenClosed();
  });
  const append = (tag: string): AuditRow => {
    const head = s.audit.headForAppend();
    const r = { ...row((head?.seq ?? 0) + 1), prev_hash: head?.hash ?? 'genesis', hash: `h-${tag}` };
    s.audit.insert(r);
    return r;
  };
  // One group: three units, the second rolled back after its append.
  const first = s.commit(() => append('a'));
  const second = s.commit(() => {
    append('b');
    throw new Error('unit b fails');
  });
  const third = s.commit(() => append('c'));
  const [, b] = await Promise.allSettled([first, second]);
  t.match(b, { status: 'rejected', reason: { message: 'unit b fails' } });
  const c = await third;
  t.same([c.seq, c.prev_hash], [2, 'h-a'], "the third unit chains onto the first's entry, not the rolled-back one");
  // The next group reads the committed head again (the lock, and what it remembered, went with COMMIT).
  const d = await s.commit(() => append('d'));
  t.same([d.seq, d.prev_hash], [3, 'h-c']);
  t.same(s.audit.iterate ? [...s.audit.iterate()].map((r) => [r.seq, r.prev_hash, r.hash]) : [], [
    [1, 'genesis', 'h-a'],
    [2, 'h-a', 'h-c'],
    [3, 'h-c', 'h-d'],
  ]);
});
