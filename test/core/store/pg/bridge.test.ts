import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBridge } from '../../../../core/store/pg/bridge.js';
import { freePort, sharedPostgres, skipWithoutPostgres } from '../../../helpers/postgres.js';

const skip = skipWithoutPostgres();
const cluster = sharedPostgres(t);

/** A query that may meet a server still recovering after a crash: retried until it answers. */
async function eventually(b: PgBridge, sql: string): Promise<unknown> {
  for (let i = 0; ; i++) {
    try {
      return b.query(sql).rows;
    } catch (e) {
      if ((e as { code?: string }).code !== 'TYRUM_ERR_STORE_UNAVAILABLE' || i >= 100) throw e;
      await sleep(100);
    }
  }
}

t.test('statements run synchronously, with int8 as numbers and bytea as Buffers', { skip }, async (t) => {
  const b = new PgBridge((await cluster()).database());
  t.teardown(() => b.close());
  const row = b.query('SELECT $1::int8 AS ts, $2::bytea AS blob, count(*) AS n FROM (VALUES (1), (2)) v(x)', [1_733_000_000_000, Buffer.from('hi')]).rows[0]!;
  t.same(row, { ts: 1_733_000_000_000, blob: Buffer.from('hi'), n: 2 });
  t.ok(Buffer.isBuffer(row.blob));
  t.throws(() => b.query("SELECT '9007199254740993'::int8 AS big"), { code: 'TYRUM_ERR_INTERNAL', message: /2\^53/ }, 'a value a JS number cannot hold is refused, not rounded');
  t.throws(() => b.query('SELECT nonsense FROM nowhere'), { name: 'PgSqlError', code: '42P01' });
  t.same(b.query('SELECT 1 AS one').rows, [{ one: 1 }], 'an SQL error leaves the connection usable');
  t.equal(b.generation, 0);
});

t.test("constraint errors read like SQLite's", { skip }, async (t) => {
  const b = new PgBridge((await cluster()).database());
  t.teardown(() => b.close());
  b.query('CREATE TABLE u (id int PRIMARY KEY, v int CHECK (v > 0))');
  b.query('INSERT INTO u VALUES (1, 1)');
  t.throws(() => b.query('INSERT INTO u VALUES ($1, $2)', [1, 1]), { code: '23505', message: /^UNIQUE constraint failed/ });
  t.throws(() => b.query('INSERT INTO u VALUES ($1, $2)', [2, 0]), { code: '23514', message: /^CHECK constraint failed/ });
});

t.test('send does not block and statements run in the order they were posted', { skip }, async (t) => {
  const b = new PgBridge((await cluster()).database());
  t.teardown(() => b.close());
  b.query('CREATE TABLE log (n int)');
  b.query('BEGIN');
  b.query('INSERT INTO log VALUES (1)');
  const commit = b.send('COMMIT');
  // Posted after the COMMIT: runs after it, outside the transaction.
  t.same(b.query('SELECT count(*) AS n FROM log').rows, [{ n: 1 }]);
  const r = await commit;
  t.equal(r.rowCount, 0);
  const sends = [b.send('INSERT INTO log VALUES (2)'), b.send('INSERT INTO log VALUES (3)')];
  t.same(b.query('SELECT array_agg(n ORDER BY n)::text AS ns FROM log').rows, [{ ns: '{1,2,3}' }]);
  await Promise.all(sends);
});

t.test('a server that does not answer in time fails the statement with a coded error, and the next one runs on a new connection', { skip }, async (t) => {
  const b = new PgBridge((await cluster()).database(), { timeoutMs: 1_000 });
  t.teardown(() => b.close());
  const before = b.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid;
  t.throws(() => b.query('SELECT pg_sleep(30)'), { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: /no answer from PostgreSQL .* within 1000 ms/ });
  t.equal(b.generation, 1, 'the connection (and any open transaction) is counted lost');
  const pending = b.send('SELECT pg_sleep(30)');
  await t.rejects(pending, { code: 'TYRUM_ERR_STORE_UNAVAILABLE' }, 'a send that is not answered in time rejects too');
  // Until a new connection answers, statements fail at once (no second wait for a silent server).
  t.throws(() => b.query('SELECT 1'), { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: /reconnecting/ });
  const after = ((await eventually(b, 'SELECT pg_backend_pid() AS pid')) as Array<{ pid: number }>)[0]!.pid;
  t.not(after, before);
});

t.test('a connection killed mid-statement fails that statement, loses the open transaction, and the bridge reconnects', { skip }, async (t) => {
  const url = (await cluster()).database();
  const b = new PgBridge(url);
  const killer = new PgBridge(url);
  t.teardown(async () => {
    await b.close();
    await killer.close();
  });
  b.query('CREATE TABLE k (n int)');
  const pid = b.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number;
  b.query('BEGIN');
  b.query('INSERT INTO k VALUES (1)');
  const inFlight = b.send('SELECT pg_sleep(30)');
  // Wait until the statement is running on the server, then end its session from outside.
  await (async () => {
    for (;;) {
      const r = killer.query("SELECT state FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%'", [pid]).rows;
      if (r.length > 0 && r[0]!.state === 'active') return;
      await sleep(20);
    }
  })();
  killer.query('SELECT pg_terminate_backend($1)', [pid]);
  await t.rejects(inFlight, { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: /connection lost/ });
  t.equal(b.generation, 1);
  t.same(b.query('SELECT count(*) AS n FROM k').rows, [{ n: 0 }], 'the open transaction was rolled back by the server; the next statement reconnected');
});

t.test('a connection dropped while idle fails the next statement instead of running it outside the lost transaction', { skip }, async (t) => {
  const url = (await cluster()).database();
  const b = new PgBridge(url);
  const killer = new PgBridge(url);
  t.teardown(async () => {
    await b.close();
    await killer.close();
  });
  b.query('CREATE TABLE d (n int)');
  const pid = b.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number;
  b.query('BEGIN');
  b.query('INSERT INTO d VALUES (1)');
  killer.query('SELECT pg_terminate_backend($1)', [pid]);
  // Whether or not the worker noticed the drop yet, the outcome is the same.
  await sleep(100);
  t.throws(() => b.query('INSERT INTO d VALUES (2)'), { code: 'TYRUM_ERR_STORE_UNAVAILABLE' });
  t.equal(b.generation, 1);
  t.same(b.query('SELECT count(*) AS n FROM d').rows, [{ n: 0 }], 'neither insert survived: nothing ran in autocommit on a new session');
});

t.test('a statement whose caller has no transaction open (strict = false) just reconnects after an idle drop', { skip }, async (t) => {
  const url = (await cluster()).database();
  const b = new PgBridge(url);
  const killer = new PgBridge(url);
  t.teardown(async () => {
    await b.close();
    await killer.close();
  });
  const pid = b.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number;
  killer.query('SELECT pg_terminate_backend($1)', [pid]);
  while (killer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]).rows.length > 0);
  await sleep(100);
  const again = b.query('SELECT pg_backend_pid() AS pid', [], false, false).rows[0]!.pid;
  t.not(again, pid, 'a new session');
});

t.test('a server that is stopped and started again: statements fail coded meanwhile, then work', { skip }, async (t) => {
  const c = await cluster();
  const b = new PgBridge(c.database(), { connectTimeoutMs: 2_000 });
  t.teardown(() => b.close());
  t.same(b.query('SELECT 1 AS one').rows, [{ one: 1 }]);
  c.stop();
  t.throws(() => b.query('SELECT 1 AS one'), { code: 'TYRUM_ERR_STORE_UNAVAILABLE' });
  t.throws(() => b.query('SELECT 1 AS one'), { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: /cannot connect/ });
  c.start();
  t.same(await eventually(b, 'SELECT 1 AS one'), [{ one: 1 }]);
});

t.test('a server process killed outright (crash recovery) fails the statement coded; the bridge works once the server is back', { skip }, async (t) => {
  const c = await cluster();
  const b = new PgBridge(c.database());
  t.teardown(() => b.close());
  const pid = b.query('SELECT pg_backend_pid() AS pid').rows[0]!.pid as number;
  const inFlight = b.send('SELECT pg_sleep(30)');
  await sleep(200);
  process.kill(pid, 'SIGKILL');
  await t.rejects(inFlight, { code: 'TYRUM_ERR_STORE_UNAVAILABLE' });
  t.same(await eventually(b, 'SELECT 2 AS two'), [{ two: 2 }]);
});

t.test("the connection URL's password never appears in an error", { skip: false }, async (t) => {
  const port = await freePort();
  const b = new PgBridge(`postgres://tyrum:s3cretpw@127.0.0.1:${port}/db`, { connectTimeoutMs: 1_000 });
  t.teardown(() => b.close());
  const e = (() => {
    try {
      b.query('SELECT 1');
    } catch (err) {
      return err as Error;
    }
    return null;
  })();
  t.match(e, { code: 'TYRUM_ERR_STORE_UNAVAILABLE', message: new RegExp(`127\\.0\\.0\\.1:${port}/db`) });
  t.notMatch(e?.message ?? '', /s3cretpw/);
  t.notMatch(JSON.stringify(e), /s3cretpw/);
});
